"""The tracefs files through the client library against a real ftraced: behaviour,
bad input, and clients that die in the middle of a file."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time

import grpc
import pytest

from clients.api import Client, FileSession
from clients.connection import grpc_target
from clients.errors import FtraceError
from ftrace.v1 import tracefs_pb2, tracefs_pb2_grpc
from tests.children import child_env
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)

T = "/sys/kernel/debug/tracing"


def wait_until(predicate, timeout: float = 30.0) -> None:
    """Poll a condition of the daemon's state until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.02)


def failing(fn, *args, **kwargs) -> FtraceError:
    with pytest.raises(FtraceError) as exc:
        fn(*args, **kwargs)
    return exc.value


@pytest.fixture
def client(daemon):
    with Client(daemon.address) as c:
        yield c


def test_filter_file_semantics_through_the_library(client):
    client.load("uinput")
    assert client.read_file(f"{T}/set_ftrace_filter") == b"#### all functions enabled ####\n"
    # The copy is taken at open and installed at release.
    with client.open(f"{T}/set_ftrace_filter", os.O_WRONLY | os.O_TRUNC) as f:
        assert f.write(b"uinput_open uinput_read\n") == len(b"uinput_open ")
        assert f.write(b"uinput_read\n") == len(b"uinput_read\n")
        assert client.read_file(f"{T}/set_ftrace_filter").startswith(b"#### all")
        err = failing(f.write, b"nosuchfn\n")
        assert err.errno == errno.EINVAL and err.syscall == "write"
        assert f.write(b"uinput_poll\n") == len(b"uinput_poll\n")  # the fd stays open
    assert client.read_file(f"{T}/set_ftrace_filter").decode().splitlines() == [
        "uinput_open [uinput]", "uinput_read [uinput]", "uinput_poll [uinput]"]
    # echo nosuchfn > set_ftrace_filter: EINVAL, and the close installs the empty copy.
    err = failing(client.write_file, f"{T}/set_ftrace_filter", b"nosuchfn\n")
    assert (err.errno, err.errno_name, err.strerror) == (errno.EINVAL, "EINVAL", "Invalid argument")
    assert client.read_file(f"{T}/set_ftrace_filter") == b"#### all functions enabled ####\n"
    client.write_file(f"{T}/set_ftrace_notrace", b"!uinput_* *:mod:uinput\n")
    assert len(client.read_file(f"{T}/set_ftrace_notrace").splitlines()) == 26
    client.write_file(f"{T}/current_tracer", b"function\n")
    assert client.read_file(f"{T}/enabled_functions").count(b"[uinput]") == 0
    client.write_file(f"{T}/set_ftrace_notrace", b"\n")
    assert client.read_file(f"{T}/enabled_functions").count(b"[uinput] (1)") == 26
    listing = client.read_file(f"{T}/available_filter_functions").decode().splitlines()
    assert "uinput_release [uinput]" in listing and "vfs_write" in listing
    assert client.read_file(f"{T}/dyn_ftrace_total_info") == f"{len(listing)} \n".encode()
    assert client.check_consistency().ok


def test_a_write_at_position_0_starts_a_new_token(client):
    """``trace_get_user`` clears the parser at ``*ppos == 0``: a pwrite at 0 drops the
    token an earlier write left unfinished, and leaves the position, so the write after
    it does not. A seek on a file open only for writing puts the position at 1 whatever
    is asked (``ftrace_regex_lseek``), so even ``lseek(fd, 0, SEEK_SET)`` keeps it."""
    with client.open(f"{T}/set_ftrace_filter", os.O_WRONLY | os.O_TRUNC) as f:
        assert f.write(b"io_sch") == 6  # no space: continued by the next write
        assert f.write(b"schedule\n", offset=0) == 9
        assert f.write(b"schedule_t") == 10
        assert f.seek(0) == 1
        assert f.write(b"imeout\n") == 7
    assert client.read_file(f"{T}/set_ftrace_filter").decode().splitlines() == [
        "schedule", "schedule_timeout"]


def test_o_trunc_empties_the_filter_on_any_open_for_writing(client):
    """``ftrace_regex_open()`` resets the copy when the open has FMODE_WRITE and O_TRUNC:
    an O_RDWR open as much as an O_WRONLY one; without O_TRUNC, or with it on an open
    only for reading, the filter stays."""
    filter_file = f"{T}/set_ftrace_filter"
    client.write_file(filter_file, b"schedule\n")
    with client.open(filter_file, os.O_RDONLY | os.O_TRUNC):
        pass
    with client.open(filter_file, os.O_RDWR) as f:
        assert f.write(b"schedule_timeout\n") == 17
    assert client.read_file(filter_file).decode().splitlines() == ["schedule", "schedule_timeout"]
    with client.open(filter_file, os.O_RDWR | os.O_TRUNC) as f:
        assert f.write(b"io_schedule\n") == 12
    assert client.read_file(filter_file).decode().splitlines() == ["io_schedule"]


class RecordingTracefs:
    """The Tracefs stub, recording what each ``Session`` sends and gets back."""

    def __init__(self, stub) -> None:
        self.stub, self.sent, self.received = stub, [], []

    def Session(self, requests):
        def sending():
            for request in requests:
                self.sent.append(request.WhichOneof("op"))
                yield request
        for response in self.stub.Session(sending()):
            self.received.append(response)
            yield response


def test_write_all_is_the_callers_write_loop_in_one_round_trip(client):
    """A filter file takes one token per write(2), and stdio's flush writes the rest
    again: the daemon runs that loop for ``write_all``, each write still its own
    system call, and a failed one leaves what the earlier ones consumed written."""
    client.load("uinput")
    tracefs = RecordingTracefs(client.connection.tracefs)
    with FileSession(tracefs, f"{T}/set_ftrace_filter", os.O_WRONLY | os.O_TRUNC) as f:
        assert f.write_all(b"uinput_open uinput_read uinput_poll\n") == 36
        err = failing(f.write_all, b"uinput_write nosuchfn uinput_ioctl\n")
        assert (err.errno, err.syscall) == (errno.EINVAL, "write")
    assert tracefs.sent == ["open", "write", "write", "close"]
    assert list(tracefs.received[1].write.write_sizes) == [12, 12, 12]
    assert sorted(client.read_file(f"{T}/set_ftrace_filter").decode().splitlines()) == [
        "uinput_open [uinput]", "uinput_poll [uinput]", "uinput_read [uinput]",
        "uinput_write [uinput]"]


def test_traceoff_probe_through_the_daemon(client):
    """``echo 'f:traceoff:1' > set_ftrace_filter``, then running f turns tracing off,
    with no tracer set (spec §3.3.5)."""
    client.load("uinput")
    every = len(client.read_file(f"{T}/available_filter_functions").splitlines())
    assert client.write_file(f"{T}/set_ftrace_filter", b"uinput_open:traceoff:1\n") == 23
    assert client.read_file(f"{T}/set_ftrace_filter") == (
        b"#### all functions enabled ####\nuinput_open [uinput]:traceoff:count=1\n")
    # trace_probe_ops counts in every record, so every site is patched.
    assert len(client.read_file(f"{T}/enabled_functions").splitlines()) == every
    assert client.invoke("vfs_write").patched_calls == 1
    assert client.read_file(f"{T}/tracing_on") == b"1\n"
    assert client.invoke("uinput_open", module="uinput", repeat=2).patched_calls == 2
    assert client.read_file(f"{T}/tracing_on") == b"0\n"
    assert client.read_file(f"{T}/set_ftrace_filter").endswith(b":traceoff:count=0\n")
    assert client.check_consistency().ok
    err = failing(client.write_file, f"{T}/set_ftrace_notrace", b"uinput_open:traceoff\n")
    assert (err.errno, err.syscall) == (errno.EINVAL, "write")
    client.write_file(f"{T}/set_ftrace_filter", b"!uinput_open:traceoff\n", append=True)
    assert client.read_file(f"{T}/set_ftrace_filter") == b"#### all functions enabled ####\n"
    assert client.read_file(f"{T}/enabled_functions") == b""


def test_module_errors_match_the_tools(client):
    client.load("uinput")
    assert client.load("uinput", if_loaded_ok=True).already_loaded  # modprobe: silent
    assert failing(client.load, "uinput").errno == errno.EEXIST  # insmod
    assert failing(client.unload, "dummy").errno == errno.ENOENT  # rmmod
    assert failing(client.load, "no_such_module").errno == errno.ENOENT
    assert failing(client.load, functions=["bad name"], name="mine").errno == errno.EINVAL
    mine = client.load(functions=["my_open", "my_read"], name="mine")
    assert mine.taints == "O" and mine.functions == 2
    modules = client.read_file("/proc/modules").decode()
    assert modules.splitlines()[0].startswith("mine ") and "(O)" in modules
    assert "Tainted: " in client.stats().tainted


def test_bad_input_gets_its_errno_and_the_daemon_keeps_serving(client, daemon):
    cases = [
        (client.read_file, (f"{T}/nope",), errno.ENOENT),
        (client.read_file, (f"{T}/../../../../etc/shadow",), errno.ENOENT),
        (client.read_file, (T,), errno.EISDIR),
        (client.read_file, (f"{T}/trace_marker",), errno.EINVAL),
        (client.write_file, (f"{T}/available_filter_functions", b"x\n"), errno.EINVAL),
        (client.write_file, (f"{T}/set_ftrace_filter", b"a" * (1 << 20)), errno.EINVAL),
        (client.write_file, (f"{T}/set_ftrace_filter", b"\xff\xfe\xc3(\n"), errno.EINVAL),
        (client.write_file, (f"{T}/current_tracer", b"function_graph\n"), errno.EINVAL),
        (client.write_file, (f"{T}/current_tracer", b"\x00" * (1 << 20)), errno.EINVAL),
        (client.write_file, (f"{T}/tracing_on", b"\xff\n"), errno.EINVAL),
        (client.list_dir, (f"{T}/trace",), errno.ENOTDIR),
        (client.read_file, ("x" * 5000,), errno.ENAMETOOLONG),
    ]
    for fn, args, code in cases:
        assert failing(fn, *args).errno == code, (fn.__name__, args[0][:60])
    # Malformed identity metadata: EINVAL before anything runs; missing metadata is fine.
    channel = grpc.insecure_channel(f"unix:{daemon.address.removeprefix('unix:')}")
    stub = tracefs_pb2_grpc.TracefsStub(channel)
    request = tracefs_pb2.ReadFileRequest(path=f"{T}/tracing_on")
    with pytest.raises(grpc.RpcError) as exc:
        stub.ReadFile(request, metadata=(("x-ftrace-pid", "not-a-pid"),))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as exc:
        stub.ReadFile(request, metadata=(("x-ftrace-comm", ""),))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert stub.ReadFile(request).data == b"1\n"
    channel.close()
    assert client.read_file(f"{T}/current_tracer") == b"nop\n"
    assert client.check_consistency().ok


def test_a_flood_of_sessions_opened_and_dropped(client):
    client.load("uinput")
    sessions = []
    for i in range(100):
        f = client.open(f"{T}/set_ftrace_filter", os.O_WRONLY | os.O_APPEND)
        f.write(b"uinput_open\n" if i % 2 else b"uinput_read\n")
        sessions.append(f)
    wait_until(lambda: client.stats().open_files == 100)
    for f in sessions:
        f.cancel()  # the client drops the stream without a close
    wait_until(lambda: client.stats().open_files == 0)
    # Each copy was taken from the empty filter at open; the last release wins.
    assert client.read_file(f"{T}/set_ftrace_filter").decode().splitlines() in (
        ["uinput_open [uinput]"], ["uinput_read [uinput]"])
    assert client.check_consistency().ok
    assert client.read_file(f"{T}/tracing_on") == b"1\n"


HOLDER = """
import os, sys
from clients.api import Client, FileSession
client = Client(sys.argv[1])
f = client.open("/sys/kernel/debug/tracing/set_ftrace_filter", os.O_WRONLY | os.O_TRUNC)
f.write(b"uinput_open\\n")
print("ready", flush=True)
sys.stdin.read()
"""


def test_sigkill_mid_filter_session_releases_like_a_process_exit(client, daemon):
    client.load("uinput")
    client.write_file(f"{T}/set_ftrace_filter", b"uinput_read\n")
    client.write_file(f"{T}/current_tracer", b"function\n")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, daemon.address],
                              env=child_env(), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    assert client.read_file(f"{T}/set_ftrace_filter") == b"uinput_read [uinput]\n"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    # __fput at exit: the O_TRUNC copy holding uinput_open is installed.
    wait_until(lambda: client.stats().open_files == 0)
    assert client.read_file(f"{T}/set_ftrace_filter") == b"uinput_open [uinput]\n"
    assert client.read_file(f"{T}/enabled_functions") == b"uinput_open [uinput] (1)\n"
    assert client.check_consistency().ok


def test_both_mount_points_and_proc(client):
    client.load("dummy")
    for root in ("/sys/kernel/debug/tracing", "/sys/kernel/tracing"):
        names = {e.name for e in client.list_dir(root)}
        assert {"available_filter_functions", "set_ftrace_filter", "set_ftrace_notrace",
                "enabled_functions", "current_tracer", "available_tracers", "trace",
                "trace_pipe", "function_profile_enabled", "trace_stat",
                "tracing_enabled"} <= names
    kallsyms = client.read_file("/proc/kallsyms").decode()
    assert "\t[dummy]" in kallsyms and " T vfs_write\n" in kallsyms
    assert client.stat(f"{T}/set_ftrace_filter").entry.mode == 0o644
    # procfs's directories and sysfs's root are S_IRUGO | S_IXUGO; the others 0755.
    assert {path: client.stat(path).entry.mode for path in (
        "/", "/sys", "/sys/kernel", "/sys/kernel/debug", T, "/proc", "/proc/sys",
        "/proc/sys/kernel")} == {"/": 0o755, "/sys": 0o555, "/sys/kernel": 0o755,
                                 "/sys/kernel/debug": 0o755, T: 0o755, "/proc": 0o555,
                                 "/proc/sys": 0o555, "/proc/sys/kernel": 0o555}
    # A write to a /proc entry without a write method is proc_reg_write()'s EIO; to a
    # tracefs file without one, vfs_write()'s EINVAL.
    for path, expected in (("/proc/modules", errno.EIO), ("/proc/kallsyms", errno.EIO),
                           (f"{T}/available_tracers", errno.EINVAL)):
        assert failing(client.write_file, path, "x\n").errno == expected, path


def test_state_changing_calls_report_when_they_held_ftrace_lock(client, daemon):
    """x-ftrace-lock-acquired (common.proto "LOCK ORDER"): a filter write paused between
    its match and its install, and a modprobe run meanwhile, report acquisitions that
    interleave as the kernel ran them, though the write was invoked first and ended last."""
    site = "ftrace_regex_release:before_lock"
    client.set_failpoint(site, "1*pause")
    before = time.monotonic_ns()
    writer = Client(daemon.address)
    done: list[BaseException | None] = []

    def write() -> None:
        try:
            writer.write_file(f"{T}/set_ftrace_filter", "vfs_write\nsys_write\n")
            done.append(None)
        except BaseException as error:  # reported by the assertion below
            done.append(error)

    thread = threading.Thread(target=write)
    thread.start()
    client.wait_failpoint(site, 1, timeout=30)
    with Client(daemon.address) as loader:
        loader.load("dummy", if_loaded_ok=True)
        loaded = loader.lock_acquired
        failed = failing(loader.unload, "no_such_module")
        assert failed.errno_name == "ENOENT" and loader.lock_acquired == ()
    client.release_failpoint(site)
    thread.join(timeout=30)
    after = time.monotonic_ns()
    assert done == [None]
    # The first and the last: open's copy and the install at release (one match per
    # token between them).
    opened, installed = writer.lock_acquired
    writer.close()
    assert len(loaded) == 1
    assert before < opened < loaded[0] < installed < after

    # A write the kernel refuses still reports the acquisitions it made.
    error = failing(client.write_file, f"{T}/set_ftrace_filter", "nosuchfn\n")
    assert error.errno_name == "EINVAL" and len(client.lock_acquired) == 2
    # A write of thousands of tokens: a trailer of two times, under any client's limit.
    names = client.read_file(f"{T}/available_filter_functions").decode().split()[:3000:2]
    with grpc.insecure_channel(grpc_target(daemon.address)) as channel:  # default options
        response, call = tracefs_pb2_grpc.TracefsStub(channel).WriteFile.with_call(
            tracefs_pb2.WriteFileRequest(path=f"{T}/set_ftrace_filter",
                                         data=" ".join(names).encode() + b"\n"), timeout=60)
    assert response.bytes_written == len(" ".join(names)) + 1
    assert len(dict(call.trailing_metadata())["x-ftrace-lock-acquired"].split()) == 2


def test_stats_count_calls_by_full_method_name(client):
    for _ in range(3):
        client.read_file(f"{T}/tracing_on")
    counts = client.stats().rpc_counts
    assert counts["/ftrace.v1.Tracefs/ReadFile"] == 3
    assert counts["/ftrace.v1.Kernel/Stats"] == 1


def test_the_trace_pipe_stream_ends_at_eof(client):
    """TracePipe's contract: once a read has returned lines, ``echo 0 > tracing_enabled``
    makes the next read EOF (tracing_wait_pipe()), and the call ends with OK rather than
    sending empty chunks until its deadline."""
    client.write_file(f"{T}/set_ftrace_filter", b"vfs_read\n")
    client.write_file(f"{T}/current_tracer", b"function\n")
    client.invoke("vfs_read", "sys_read")
    chunks = client.connection.tracefs.TracePipe(tracefs_pb2.TracePipeRequest(), timeout=30)
    assert b"vfs_read <-sys_read" in next(chunks).data
    client.write_file(f"{T}/tracing_enabled", b"0\n")
    assert [chunk.data for chunk in chunks] == []  # no chunk more, and no deadline error


def test_only_ftrace_lock_is_reported_as_held(client):
    """x-ftrace-lock-acquired names ftrace_lock: 3.6's tracing_cpumask_write() takes
    tracing_cpumask_update_lock and no ftrace_lock, so its write reports none. It reported
    that mutex's acquisition as one of ftrace_lock's. A write of function_profile_enabled
    reports the ftrace_lock its register takes, not ftrace_profile_lock before it."""
    client.write_file(f"{T}/tracing_cpumask", "1\n")
    assert client.lock_acquired == ()
    before = time.monotonic_ns()
    client.write_file(f"{T}/function_profile_enabled", "1\n")
    assert len(client.lock_acquired) == 1 and before < client.lock_acquired[0]
    client.write_file(f"{T}/function_profile_enabled", "0\n")
