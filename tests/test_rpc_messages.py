"""What a failed call says, over plain gRPC stubs: the names a message quotes, quoted one
way (``kernel_daemon.errno.quoted``); the reason and context the protos promise; and how
much of a Session write loop went in before it failed."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest
from grpc_status import rpc_status

from clients.api import RequestQueue
from clients.errors import FtraceError
from ftrace.v1 import common_pb2, kernel_pb2, modules_pb2, tracefs_pb2, tracer_pb2
from kernel_daemon.errno import quoted
from kernel_daemon.rpc.status import BYTES_WRITTEN_METADATA_KEY
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.test_rpc_bad_input import stubs  # noqa: F401  (a fixture)

T = "/sys/kernel/debug/tracing"
DEADLINE = 30
PROTO_DIR = Path(__file__).resolve().parent.parent / "proto" / "ftrace" / "v1"


def failing(method, request) -> common_pb2.ErrnoDetail:
    with pytest.raises(grpc.RpcError) as info:
        method(request, timeout=DEADLINE)
    detail = common_pb2.ErrnoDetail()
    assert rpc_status.from_call(info.value).details[0].Unpack(detail)
    return detail


@pytest.mark.parametrize("name, shown", [
    ("foo", '"foo"'),
    ("fo'o", '"fo\'o"'),
    ('a"b\'c', '"a\\"b\'c"'),
    ("a\\b", '"a\\\\b"'),
    ("a\0b", '"a\\000b"'),
    ("t\tn\n\x7f", '"t\\tn\\n\\177"'),
    ("\u2028é", '"\\u2028é"'),
])
def test_quoted_is_c_style(name, shown):
    assert quoted(name) == shown


@pytest.mark.parametrize("name, message", [
    ("fo'o", 'no function "fo\'o"'),
    ('a"b\'c', 'no function "a\\"b\'c"'),
    ("a\0b", 'no function "a\\000b"'),
])
def test_invoke_names_the_function_in_double_quotes(stubs, name, message):
    detail = failing(stubs.tracer.Invoke, tracer_pb2.InvokeRequest(function=name))
    assert (detail.name, detail.message) == ("ENOENT", message)


def test_unload_names_the_module_as_looked_up(stubs):
    """delete_module reads the name up to its NUL: the message names what it looked for."""
    detail = failing(stubs.modules.Unload, modules_pb2.UnloadModuleRequest(name="a\0b"))
    assert (detail.name, detail.message) == ("ENOENT", 'module "a" is not loaded')


def test_load_names_an_unknown_module_quoted(stubs):
    detail = failing(stubs.modules.Load, modules_pb2.LoadModuleRequest(catalog_name="a\x01b"))
    assert (detail.name, detail.message) == ("ENOENT", 'module "a\\001b" not found')


@pytest.mark.parametrize("args, name, message", [
    (b"max_loop=x", "EINVAL", "loop: `x' invalid for parameter `max_loop'"),
    (b"nosuch=1", "ENOENT", "loop: Unknown parameter `nosuch'"),
])
def test_load_with_bad_args_says_why(stubs, args, name, message):
    """The reason is parse_args()'s dmesg line, in the message too."""
    detail = failing(stubs.modules.Load,
                     modules_pb2.LoadModuleRequest(catalog_name="loop", args=args))
    assert (detail.name, detail.message) == (name, message)


def test_module_errors_name_init_module_or_delete_module(stubs):
    """ErrnoDetail.syscall of Modules' errors: the kernel's init_module / delete_module,
    none where no system call was made (modprobe finds no such module; a placement that
    is no ModulePlacement is the request's own error)."""
    modules = stubs.modules
    load, unload = modules.Load, modules.Unload
    Load, Unload = modules_pb2.LoadModuleRequest, modules_pb2.UnloadModuleRequest
    explicit = modules_pb2.ExplicitModule
    modules.Load(Load(catalog_name="uinput"), timeout=DEADLINE)
    modules.Load(Load(catalog_name="fat"), timeout=DEADLINE)
    modules.Load(Load(catalog_name="vfat"), timeout=DEADLINE)
    cases = [
        (load, Load(catalog_name="nosuch"), "ENOENT", ""),
        (load, Load(explicit=explicit(name="m", functions=["f"]), placement=9), "EINVAL", ""),
        (load, Load(catalog_name="loop", args=b"foo=1"), "ENOENT", "init_module"),
        (load, Load(catalog_name="loop", args=b"max_loop=x"), "EINVAL", "init_module"),
        (load, Load(explicit=explicit(name="my.mod", functions=["f"])), "EINVAL",
         "init_module"),
        (load, Load(catalog_name="uinput"), "EEXIST", "init_module"),
        (unload, Unload(name="tun"), "ENOENT", "delete_module"),
        (unload, Unload(name="fat"), "EAGAIN", "delete_module"),  # vfat uses it
    ]
    for method, request, name, syscall in cases:
        detail = failing(method, request)
        assert (detail.name, detail.syscall, detail.path) == (name, syscall, ""), request
    modules.Unload(Unload(name="vfat"), timeout=DEADLINE)
    modules.Unload(Unload(name="fat"), timeout=DEADLINE)
    detail = failing(load, Load(catalog_name="vfat"))  # no fat: "Unknown symbol"
    assert (detail.name, detail.syscall) == ("ENOENT", "init_module")


def test_a_long_message_is_cut_inside_the_status_text_s_parentheses(stubs):
    """The status text (grpc-message) is "NAME: strerror (message)" with the message cut
    as ErrnoDetail's is (256 characters, "..." at the end): the ")" stays. The whole text
    was cut to 256, which lost the ")" and most of the message."""
    with pytest.raises(grpc.RpcError) as info:
        stubs.modules.Load(modules_pb2.LoadModuleRequest(explicit=modules_pb2.ExplicitModule(
            name="m", functions=["x" * 1000])), timeout=DEADLINE)
    detail = common_pb2.ErrnoDetail()
    assert rpc_status.from_call(info.value).details[0].Unpack(detail)
    assert len(detail.message) == 256 and detail.message.endswith("...")
    assert info.value.details() == f"{detail.name}: {detail.strerror} ({detail.message})"


def test_set_filter_in_band_says_what_register_says(stubs):
    register = tracer_pb2.TracerRequest(register=tracer_pb2.RegisterOps(filter=["nosuchfn"]))
    at_register = failing(lambda request, timeout: list(stubs.tracer.Attach(
        iter([request]), timeout=timeout)), register)
    requests = RequestQueue()
    requests.put(tracer_pb2.TracerRequest(register=tracer_pb2.RegisterOps(filter=["schedule"])))
    events = stubs.tracer.Attach(iter(requests), timeout=DEADLINE)
    assert next(events).WhichOneof("event") == "registered"
    requests.put(tracer_pb2.TracerRequest(set_filter=tracer_pb2.SetOpsFilter(text="nosuchfn")))
    in_band = next(events)
    requests.put(tracer_pb2.TracerRequest(unregister=tracer_pb2.UnregisterOps()))
    list(events)
    requests.end()
    assert in_band.WhichOneof("event") == "error"
    assert at_register.message == '"nosuchfn" selects no function'
    assert (in_band.error.name, in_band.error.message) == ("EINVAL", at_register.message)


def test_a_half_closed_attach_sends_the_hits_recorded_before_it_then_ends(stubs):
    """A half-close says no more requests, not no more answers (a Go client's CloseSend(),
    then Recv() to the end): the hits waiting for their batch's time go out, then the call
    ends with OK, the ops unregistered. They were discarded."""
    requests = RequestQueue()
    requests.put(tracer_pb2.TracerRequest(register=tracer_pb2.RegisterOps(
        filter=["vfs_read"], max_delay_ms=600_000)))
    events = stubs.tracer.Attach(iter(requests), timeout=DEADLINE)
    assert next(events).WhichOneof("event") == "registered"
    for _ in range(3):
        stubs.tracer.Invoke(tracer_pb2.InvokeRequest(function="vfs_read"), timeout=DEADLINE)
    requests.end()
    rest = list(events)
    assert [(event.seq, event.WhichOneof("event")) for event in rest] == [(0, "hits")]
    assert [hit.function for hit in rest[0].hits.hits] == ["vfs_read"] * 3
    assert stubs.kernel.ListOps(kernel_pb2.ListOpsRequest(), timeout=DEADLINE).ops == []


@pytest.mark.parametrize("method, request_type, syscall", [
    ("ListDir", tracefs_pb2.ListDirRequest, "open"),
    ("Stat", tracefs_pb2.StatRequest, "stat"),
])
@pytest.mark.parametrize("path, name", [
    (f"{T}/tracing_on/x", "ENOTDIR"),
    (f"{T}/nosuch", "ENOENT"),
    ("relative", "EINVAL"),
])
def test_list_dir_and_stat_errors_carry_path_and_syscall(stubs, method, request_type, syscall,
                                                         path, name):
    detail = failing(getattr(stubs.tracefs, method), request_type(path=path))
    assert (detail.name, detail.syscall, detail.path) == (name, syscall, path)


def test_list_dir_of_a_file_is_enotdir_of_its_open(stubs):
    detail = failing(stubs.tracefs.ListDir, tracefs_pb2.ListDirRequest(path=f"{T}/tracing_on"))
    assert (detail.name, detail.syscall, detail.path) == ("ENOTDIR", "open", f"{T}/tracing_on")


# --- a Session write loop that fails part-way ---------------------------------------------

DATA = b"vfs_write nosuchfn vfs_open "


def test_a_failed_write_loop_says_what_went_in_before(stubs):
    """FileResponse.bytes_written: the part of an until_done write that the write(2)s
    before the failing one consumed, as WriteFile's x-ftrace-bytes-written trailer says."""
    requests = [
        tracefs_pb2.FileRequest(open=tracefs_pb2.OpenRequest(
            path=f"{T}/set_ftrace_filter", flags=os.O_WRONLY | os.O_TRUNC)),
        tracefs_pb2.FileRequest(write=tracefs_pb2.WriteRequest(data=DATA, until_done=True)),
        tracefs_pb2.FileRequest(write=tracefs_pb2.WriteRequest(data=b"nosuchfn ")),
        tracefs_pb2.FileRequest(close=tracefs_pb2.CloseRequest()),
    ]
    answers = list(stubs.tracefs.Session(iter(requests), timeout=DEADLINE))
    loop, single = answers[1], answers[2]
    assert loop.WhichOneof("result") == "error" and loop.error.name == "EINVAL"
    assert loop.error.syscall == "write"
    with pytest.raises(grpc.RpcError) as info:
        stubs.tracefs.WriteFile(tracefs_pb2.WriteFileRequest(
            path=f"{T}/set_ftrace_filter", data=DATA), timeout=DEADLINE)
    trailer = dict(info.value.trailing_metadata())[BYTES_WRITTEN_METADATA_KEY]
    assert loop.bytes_written == int(trailer) == len(b"vfs_write ")
    # A single write(2) that fails consumed nothing.
    assert single.WhichOneof("result") == "error" and single.bytes_written == 0
    filtered = stubs.tracefs.ReadFile(tracefs_pb2.ReadFileRequest(
        path=f"{T}/set_ftrace_filter"), timeout=DEADLINE).data
    assert filtered == b"vfs_write\n"


def test_the_python_client_tells_what_a_failed_write_all_wrote_before(daemon):
    with daemon.connect() as client:
        with client.open(f"{T}/set_ftrace_filter", os.O_WRONLY | os.O_TRUNC) as session:
            with pytest.raises(FtraceError) as info:
                session.write_all(DATA)
            assert (info.value.errno_name, info.value.bytes_written) == (
                "EINVAL", len(b"vfs_write "))
            with pytest.raises(FtraceError) as info:
                session.write(b"nosuchfn ")
            assert info.value.bytes_written is None  # one write(2): no loop to tell of


def dmesg(stubs) -> str:
    return stubs.kernel.Dmesg(kernel_pb2.DmesgRequest(), timeout=DEADLINE).text


@pytest.mark.parametrize("path", [f"{T}/set_ftrace_filter", f"{T}/set_ftrace_notrace"])
def test_a_filter_write_that_fails_says_which_word(stubs, path):
    """ErrnoDetail.message of a filter file's EINVAL names the word, as Tracer's
    set_filter does; nothing else changes: the errno, the bytes the loop consumed, the
    file, dmesg (the kernel's EINVAL is bare, and prints nothing)."""
    before = dmesg(stubs)
    with pytest.raises(grpc.RpcError) as info:
        stubs.tracefs.WriteFile(tracefs_pb2.WriteFileRequest(
            path=path, data=b"vfs_read nosuch vfs_write"), timeout=DEADLINE)
    detail = common_pb2.ErrnoDetail()
    assert rpc_status.from_call(info.value).details[0].Unpack(detail)
    assert (detail.name, detail.syscall, detail.path) == ("EINVAL", "write", path)
    assert detail.message == '"nosuch" selects no function'
    # What a client without google.rpc.Status has (common.proto ERRORS).
    assert info.value.details() == 'EINVAL: Invalid argument ("nosuch" selects no function)'
    assert dict(info.value.trailing_metadata())["errno"] == "EINVAL"
    assert dict(info.value.trailing_metadata())[BYTES_WRITTEN_METADATA_KEY] == str(
        len(b"vfs_read "))
    assert stubs.tracefs.ReadFile(tracefs_pb2.ReadFileRequest(path=path),
                                  timeout=DEADLINE).data == b"vfs_read\n"

    words = [
        (b"no_such_fn", '"no_such_fn" selects no function'),
        (b"vfs_read:nosuchcmd", '"vfs_read:nosuchcmd": no command "nosuchcmd"'),
        (b"vfs_read:mod", '"vfs_read:mod" names no module'),
        (b"vfs_read:mod::x", '"vfs_read:mod::x" names no module'),
        (b"*:mod:nosuchmod", '"*" selects no function of module "nosuchmod"'),
        (b"x" * 300, 'a word longer than 242 bytes, starting "' + "x" * 32 + '"'),
        # traceon's own errnos are bare (kstrtoul's, and set_ftrace_notrace's refusal).
        (b"vfs_read:traceon:abc", '"vfs_read:traceon:abc"'),
        (b"vfs_read:traceon:99999999999999999999999", '"vfs_read:traceon:99999999999999999999999"'),
    ]
    if path.endswith("set_ftrace_notrace"):
        words.append((b"vfs_read:traceon", '"vfs_read:traceon"'))
    errnos = {b"vfs_read:traceon:99999999999999999999999":
              "EINVAL" if path.endswith("set_ftrace_notrace") else "ERANGE"}
    requests = [tracefs_pb2.FileRequest(open=tracefs_pb2.OpenRequest(
        path=path, flags=os.O_WRONLY | os.O_APPEND))]
    requests += [tracefs_pb2.FileRequest(write=tracefs_pb2.WriteRequest(data=word + b" "))
                 for word, _ in words]
    requests.append(tracefs_pb2.FileRequest(close=tracefs_pb2.CloseRequest()))
    answers = list(stubs.tracefs.Session(iter(requests), timeout=DEADLINE))[1:-1]
    assert [(a.error.name, a.error.syscall, a.error.message, a.bytes_written)
            for a in answers] == [(errnos.get(word, "EINVAL"), "write", message, 0)
                                  for word, message in words]
    assert stubs.tracefs.ReadFile(tracefs_pb2.ReadFileRequest(path=path),
                                  timeout=DEADLINE).data == b"vfs_read\n"
    assert dmesg(stubs) == before


@pytest.mark.parametrize("data, word", [
    (b"nosuch\n", "nosuch"),
    (b" function\n", " function"),           # only trailing isspace() is stripped
    (b"function\x1c\n", "function\x1c"),     # \x1c is no isspace() of the kernel's
    (b"\0" * (1 << 20), ""),                 # the name ends at the first NUL
])
def test_a_tracer_write_that_fails_says_which_word(stubs, data, word):
    """ErrnoDetail.message of current_tracer's EINVAL names the word tracing_set_tracer()
    looked up, as a filter file's names its word; the errno, the tracer and dmesg stay
    the kernel's (3.6's EINVAL is bare)."""
    path = f"{T}/current_tracer"
    before = dmesg(stubs)
    detail = failing(stubs.tracefs.WriteFile, tracefs_pb2.WriteFileRequest(path=path, data=data))
    assert (detail.name, detail.syscall, detail.path) == ("EINVAL", "write", path)
    assert detail.message == f"{quoted(word)} names no tracer"
    assert stubs.tracefs.ReadFile(tracefs_pb2.ReadFileRequest(path=path),
                                  timeout=DEADLINE).data == b"nop\n"
    assert dmesg(stubs) == before


# --- a cancelled Session releases its file asynchronously ----------------------------------

def test_the_contract_says_cancel_releases_asynchronously():
    session = (PROTO_DIR / "tracefs.proto").read_text().split("rpc Session(")[0]
    assert "ASYNCHRONOUSLY" in session
    assert "half-close the stream and wait" in session


def test_half_close_and_the_ok_status_come_after_the_release(stubs):
    """The ordering the contract offers instead of cancel: once the call's OK arrived,
    the release (ftrace_regex_release: the filter installed) has run."""
    for i in range(20):
        function = ("vfs_read", "vfs_write")[i % 2]
        requests = [
            tracefs_pb2.FileRequest(open=tracefs_pb2.OpenRequest(
                path=f"{T}/set_ftrace_filter", flags=os.O_WRONLY | os.O_TRUNC)),
            tracefs_pb2.FileRequest(write=tracefs_pb2.WriteRequest(data=function.encode())),
        ]
        answers = list(stubs.tracefs.Session(iter(requests), timeout=DEADLINE))  # half-close
        assert [a.WhichOneof("result") for a in answers] == ["open", "write"]
        assert stubs.tracefs.ReadFile(tracefs_pb2.ReadFileRequest(
            path=f"{T}/set_ftrace_filter"), timeout=DEADLINE).data == f"{function}\n".encode()
