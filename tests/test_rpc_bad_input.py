"""Bad input over plain gRPC stubs, as a client in any language sends it, against a real
ftraced: each gets the errno the protos promise, in the status or in-band as they say,
and the daemon goes on serving."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_status import rpc_status

from clients.api import RequestQueue
from clients.connection import CHANNEL_OPTIONS, grpc_target
from ftrace.v1 import (common_pb2, kernel_pb2, kernel_pb2_grpc, modules_pb2_grpc, tracefs_pb2,
                       tracefs_pb2_grpc, tracer_pb2, tracer_pb2_grpc)
from kernel_daemon.errno import KernelError
from kernel_daemon.rpc.tracefs_service import watch_client
from kernel_daemon.signal import SignalTable, SigPending
from kernel_daemon.tracefs.files import file_read, file_release
from kernel_daemon.tracefs.tree import mount
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.kernel_helpers import booted

T = "/sys/kernel/debug/tracing"
DEADLINE = 30


class Stubs:
    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.tracefs = tracefs_pb2_grpc.TracefsStub(channel)
        self.tracer = tracer_pb2_grpc.TracerStub(channel)
        self.kernel = kernel_pb2_grpc.KernelStub(channel)
        self.modules = modules_pb2_grpc.ModulesStub(channel)


@pytest.fixture
def stubs(daemon) -> Iterator[Stubs]:
    with grpc.insecure_channel(grpc_target(daemon.address), options=CHANNEL_OPTIONS) as channel:
        yield Stubs(channel)


def errno_of(error: grpc.RpcError) -> common_pb2.ErrnoDetail:
    """The ErrnoDetail a failed call carries in its rich status."""
    detail = common_pb2.ErrnoDetail()
    assert rpc_status.from_call(error).details[0].Unpack(detail)
    return detail


def failing(method, request, **kwargs) -> common_pb2.ErrnoDetail:
    with pytest.raises(grpc.RpcError) as info:
        method(request, timeout=DEADLINE, **kwargs)
    return errno_of(info.value)


def still_consistent(stubs: Stubs) -> bool:
    return stubs.kernel.CheckConsistency(kernel_pb2.CheckConsistencyRequest(),
                                         timeout=DEADLINE).ok


# --- Tracer.Invoke -----------------------------------------------------------------------

@pytest.mark.parametrize("fields, why", [
    ({"repeat": 100_000_001}, "repeat above"),
    ({"repeat": 2**64 - 1}, "repeat above"),
    ({"pid": -7}, "pid -7"),
    ({"pid": 4 * 1024 * 1024 + 1}, "out of range"),
    ({"comm": "bad\x01comm"}, "comm"),
    ({"comm": ""}, "comm"),
])
def test_invoke_refuses_what_its_contract_refuses(stubs, fields, why):
    detail = failing(stubs.tracer.Invoke, tracer_pb2.InvokeRequest(function="schedule", **fields))
    assert detail.name == "EINVAL" and why in detail.message
    # The idle task and the largest pid are tasks; a long comm is cut, as set_task_comm does.
    for pid in (0, 4 * 1024 * 1024):
        stubs.tracer.Invoke(tracer_pb2.InvokeRequest(function="schedule", pid=pid,
                                                     comm="a-comm-longer-than-15"),
                            timeout=DEADLINE)
    stats = stubs.kernel.Stats(kernel_pb2.StatsRequest(), timeout=DEADLINE)
    assert stats.invocations == 2


def test_an_error_quoting_a_huge_argument_stays_small(stubs):
    detail = failing(stubs.tracer.Invoke, tracer_pb2.InvokeRequest(function="a" * 100_000))
    assert detail.name == "ENOENT" and len(detail.message) == 256
    assert detail.message.endswith("...")


# --- Tracer.Attach -----------------------------------------------------------------------

def attach(stubs: Stubs, *requests: tracer_pb2.TracerRequest) -> tuple[list, grpc.RpcError | None]:
    """The events of an Attach stream sent ``requests`` and half-closed, and how it ended."""
    events = []
    call = stubs.tracer.Attach(iter(requests), timeout=DEADLINE)
    try:
        for event in call:
            events.append(event)
    except grpc.RpcError as error:
        return events, error
    return events, None


REGISTER = tracer_pb2.TracerRequest(register=tracer_pb2.RegisterOps(name="t", filter=["schedule"]))
FLUSH = tracer_pb2.TracerRequest(flush=tracer_pb2.FlushHits())


@pytest.mark.parametrize("requests, why", [
    ([tracer_pb2.TracerRequest(register=tracer_pb2.RegisterOps(filter=["nosuch_fn"]))],
     '"nosuch_fn" selects no function'),
    ([tracer_pb2.TracerRequest(register=tracer_pb2.RegisterOps(name="n" * 64))], "ops name"),
    ([FLUSH], "the first request must be register"),
    ([REGISTER, REGISTER], "already registered"),
    ([REGISTER, tracer_pb2.TracerRequest()], "no operation"),
], ids=["no-match", "long-name", "flush-first", "second-register", "empty"])
def test_attach_protocol_errors_end_the_call_and_unregister(stubs, requests, why):
    events, error = attach(stubs, *requests, FLUSH)
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert errno_of(error).name == "EINVAL" and why in errno_of(error).message
    assert [e.WhichOneof("event") for e in events] == ["registered"] * (requests[0] == REGISTER)
    ops = stubs.kernel.ListOps(kernel_pb2.ListOpsRequest(), timeout=DEADLINE).ops
    assert [o.name for o in ops if o.name == "t"] == []
    assert still_consistent(stubs)


def test_a_set_filter_error_is_in_band_and_the_stream_goes_on(stubs):
    events, error = attach(
        stubs, REGISTER,
        tracer_pb2.TracerRequest(set_filter=tracer_pb2.SetOpsFilter(text="nosuch_fn")),
        FLUSH, tracer_pb2.TracerRequest(unregister=tracer_pb2.UnregisterOps()))
    assert error is None
    assert [(e.seq, e.WhichOneof("event")) for e in events] == [
        (1, "registered"), (2, "error"), (3, "flushed"), (4, "unregistered")]
    assert events[1].error.name == "EINVAL"


def test_attach_numbers_answers_by_request_and_hit_batches_zero(stubs):
    """TracerEvent.seq: an answer carries its request's position, a hit batch 0, however
    many batches come between the answers."""
    requests = RequestQueue()
    requests.put(REGISTER)
    events = stubs.tracer.Attach(iter(requests), timeout=DEADLINE)
    registered = next(events)
    for _ in range(3):
        stubs.tracer.Invoke(tracer_pb2.InvokeRequest(function="schedule"), timeout=DEADLINE)
    requests.put(tracer_pb2.TracerRequest(set_filter=tracer_pb2.SetOpsFilter(text="vfs_read")))
    requests.put(FLUSH)
    requests.put(tracer_pb2.TracerRequest(unregister=tracer_pb2.UnregisterOps()))
    rest = list(events)
    requests.end()
    answers = [(e.seq, e.WhichOneof("event")) for e in [registered, *rest]
               if e.WhichOneof("event") != "hits"]
    assert answers == [(1, "registered"), (2, "filter_updated"), (3, "flushed"),
                       (4, "unregistered")]
    batches = [e for e in rest if e.WhichOneof("event") == "hits"]
    assert {e.seq for e in batches} == {0}
    assert sum(len(e.hits.hits) for e in batches) == 3


def test_ops_ids_are_never_reused(stubs):
    """OpsRegistered.id, as ListOps shows it, is new for every ops: Python's id() of an
    ops freed by the last unregister would be given to the next one."""
    ids = []
    for _ in range(20):
        events, error = attach(stubs, REGISTER, tracer_pb2.TracerRequest(
            unregister=tracer_pb2.UnregisterOps()))
        assert error is None
        ids.append(events[0].registered.id)
    assert len(set(ids)) == len(ids)
    requests = RequestQueue()
    requests.put(REGISTER)
    events = stubs.tracer.Attach(iter(requests), timeout=DEADLINE)
    registered = next(events).registered
    listed = stubs.kernel.ListOps(kernel_pb2.ListOpsRequest(), timeout=DEADLINE).ops
    assert [o.id for o in listed if o.name == "t"] == [registered.id]
    assert registered.id not in ids
    requests.end()
    list(events)


def test_a_pattern_longer_than_any_name_is_refused_at_once(stubs):
    """A search longer than every symbol matches nothing: EINVAL (that no name is compared
    with it is test_filter_regex's test_a_search_longer_than_every_name_is_answered_...)."""
    for pattern in ("*" + "a" * 200_000, "a" * 200_000 + "*", "*" + "a" * 200_000 + "*"):
        events, error = attach(stubs, tracer_pb2.TracerRequest(
            register=tracer_pb2.RegisterOps(name="long", filter=[pattern])))
        assert error is not None and errno_of(error).name == "EINVAL"
    assert still_consistent(stubs)


# --- Tracefs.Session ---------------------------------------------------------------------

def session(stubs: Stubs, *requests: tracefs_pb2.FileRequest) -> tuple[list, grpc.RpcError | None]:
    """The answers of a Session stream sent ``requests``, and how it ended."""
    answers = []
    try:
        for answer in stubs.tracefs.Session(iter(requests), timeout=DEADLINE):
            answers.append(answer)
    except grpc.RpcError as error:
        return answers, error
    return answers, None


def open_(path: str, flags: int = os.O_RDONLY) -> tracefs_pb2.FileRequest:
    return tracefs_pb2.FileRequest(open=tracefs_pb2.OpenRequest(path=path, flags=flags))


def read(size: int = 0, **offset: int) -> tracefs_pb2.FileRequest:
    return tracefs_pb2.FileRequest(read=tracefs_pb2.ReadRequest(size=size, **offset))


def write(data: bytes, **offset: int) -> tracefs_pb2.FileRequest:
    return tracefs_pb2.FileRequest(write=tracefs_pb2.WriteRequest(data=data, **offset))


def seek(offset: int, whence: int = os.SEEK_SET) -> tracefs_pb2.FileRequest:
    return tracefs_pb2.FileRequest(seek=tracefs_pb2.SeekRequest(offset=offset, whence=whence))


CLOSE = tracefs_pb2.FileRequest(close=tracefs_pb2.CloseRequest())


def open_files(stubs: Stubs) -> int:
    return stubs.kernel.Stats(kernel_pb2.StatsRequest(), timeout=DEADLINE).open_files


@pytest.mark.parametrize("requests, why", [
    ([read()], "the first request must be open"),
    ([CLOSE], "the first request must be open"),
    ([open_(f"{T}/set_ftrace_filter", os.O_WRONLY | os.O_TRUNC), open_(f"{T}/tracing_on")],
     "already has a file open"),
    ([open_(f"{T}/set_ftrace_filter", os.O_WRONLY | os.O_TRUNC), tracefs_pb2.FileRequest()],
     "no operation"),
], ids=["read-first", "close-first", "second-open", "empty"])
def test_session_protocol_errors_release_the_file_and_end_the_call(stubs, requests, why):
    stubs.tracefs.WriteFile(tracefs_pb2.WriteFileRequest(path=f"{T}/set_ftrace_filter",
                                                         data=b"schedule\n"), timeout=DEADLINE)
    answers, error = session(stubs, *requests, read())
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert errno_of(error).name == "EINVAL" and why in errno_of(error).message
    assert [a.WhichOneof("result") for a in answers] == ["open"] * (len(requests) == 2)
    # Released as at exit: the truncated copy was installed.
    assert open_files(stubs) == 0
    filter_text = stubs.tracefs.ReadFile(tracefs_pb2.ReadFileRequest(
        path=f"{T}/set_ftrace_filter"), timeout=DEADLINE).data
    assert filter_text == (b"schedule\n" if len(requests) == 1 else
                           b"#### all functions enabled ####\n")


def results(answers: list) -> list[str]:
    return [a.error.name if a.HasField("error") else a.WhichOneof("result") for a in answers]


def test_positions_stay_within_loff_t_and_pread_leaves_the_position(stubs):
    """trace_clock's seq_lseek() goes anywhere in loff_t, SEEK_SET and SEEK_CUR only; a
    read there is EINVAL (rw_verify_area(): the count would carry it past loff_t)."""
    big = (1 << 63) - 1
    answers, error = session(
        stubs, open_(f"{T}/trace_clock"), seek(big), seek(1, os.SEEK_CUR),
        seek(-1, os.SEEK_SET), seek(0, os.SEEK_END), read(4, offset=big + 1),
        read(2, offset=1), read(), CLOSE)
    assert error is None
    assert results(answers) == ["open", "seek", "EINVAL", "EINVAL", "EINVAL", "EINVAL",
                                "read", "EINVAL", "close"]
    assert answers[1].seek.offset == big
    pread = answers[6].read
    assert pread.data == b"lo" and pread.offset == big  # pread: the position left alone


def test_a_seek_on_a_filter_file_open_only_for_writing_goes_to_1(stubs):
    """ftrace_regex_lseek(): without FMODE_READ the position becomes 1 whatever is asked,
    so the write after it continues the token ("vfs_" + "read"); with FMODE_READ it is
    seq_lseek."""
    answers, error = session(
        stubs, open_(f"{T}/set_ftrace_filter", os.O_WRONLY | os.O_TRUNC), write(b"vfs_"),
        seek(0), seek(-3), seek(5, os.SEEK_END), write(b"read\n"), CLOSE)
    assert error is None
    assert results(answers) == ["open", "write", "seek", "seek", "seek", "write", "close"]
    assert [a.seek.offset for a in answers[2:5]] == [1, 1, 1]
    assert stubs.tracefs.ReadFile(tracefs_pb2.ReadFileRequest(
        path=f"{T}/set_ftrace_filter"), timeout=DEADLINE).data == b"vfs_read\n"
    answers, error = session(stubs, open_(f"{T}/set_ftrace_filter", os.O_RDWR),
                             seek(3), seek(-1), CLOSE)
    assert error is None and results(answers) == ["open", "seek", "EINVAL", "close"]
    assert answers[1].seek.offset == 3


def test_trace_pipe_is_not_seekable(stubs):
    answers, error = session(stubs, open_(f"{T}/trace_pipe", os.O_RDONLY | os.O_NONBLOCK),
                             seek(0), read(10, offset=0), write(b"x", offset=0), read(10),
                             CLOSE)
    assert error is None
    assert results(answers) == ["open", "ESPIPE", "ESPIPE", "ESPIPE", "EAGAIN", "close"]


def test_a_directory_opens_for_reading_and_reads_are_eisdir(stubs):
    """And its lseek is dcache_dir_lseek(): SEEK_SET and SEEK_CUR only."""
    answers, error = session(stubs, open_(T), read(), seek(5), seek(0, os.SEEK_END), CLOSE)
    assert error is None and results(answers) == ["open", "EISDIR", "seek", "EINVAL", "close"]
    assert answers[1].error.syscall == "read" and answers[2].seek.offset == 5
    answers, error = session(stubs, open_(T, os.O_WRONLY), CLOSE)
    assert answers == [] and error is not None and errno_of(error).name == "EISDIR"


#: (path, flags, errno) of opens that fail, each as 3.6's do_last() and may_open() fail
#: it: the first failing check's errno, in their order.
FAILING_OPENS = [
    # O_CREAT of a name not there: debugfs has no ->create (vfs_create()'s EACCES); the
    # lookups of sysfs and procfs refuse the name first; the walk before it fails first.
    (f"{T}/newfile", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "EACCES"),
    (f"{T}/options/newfile", os.O_WRONLY | os.O_CREAT | os.O_APPEND, "EACCES"),
    ("/sys/kernel/debug/newfile", os.O_CREAT, "EACCES"),
    ("/sys/kernel/tracing/newfile", os.O_CREAT | os.O_EXCL, "EACCES"),
    ("/proc/newfile", os.O_WRONLY | os.O_CREAT, "ENOENT"),
    ("/proc/sys/kernel/newfile", os.O_WRONLY | os.O_CREAT, "ENOENT"),
    ("/sys/kernel/newfile", os.O_CREAT, "ENOENT"),
    # A name longer than NAME_MAX: simple_lookup() refuses it before vfs_create().
    (f"{T}/{'a' * 256}", os.O_WRONLY | os.O_CREAT, "ENAMETOOLONG"),
    ("/proc/" + "a" * 256, os.O_WRONLY | os.O_CREAT, "ENOENT"),
    (f"{T}/nodir/newfile", os.O_WRONLY | os.O_CREAT, "ENOENT"),
    (f"{T}/nodir/newdir/", os.O_CREAT, "ENOENT"),
    (f"{T}/trace/x/", os.O_CREAT, "ENOTDIR"),
    # ... and a last component ending in "/", or ".", before it is looked up.
    (f"{T}/newdir/", os.O_CREAT, "EISDIR"),
    (f"{T}/trace/", os.O_CREAT, "EISDIR"),
    (f"{T}/.", os.O_CREAT | os.O_EXCL, "EISDIR"),
    # An existing name: EEXIST with O_CREAT|O_EXCL, then a directory's EISDIR under
    # O_CREAT, then O_DIRECTORY's ENOTDIR, then may_open()'s MAY_WRITE on a directory.
    (f"{T}/trace", os.O_WRONLY | os.O_CREAT | os.O_EXCL, "EEXIST"),
    (f"{T}/trace", os.O_DIRECTORY | os.O_CREAT | os.O_EXCL, "EEXIST"),
    (f"{T}/options", os.O_CREAT | os.O_EXCL, "EEXIST"),
    (f"{T}/options", os.O_CREAT, "EISDIR"),
    (f"{T}/trace", os.O_DIRECTORY, "ENOTDIR"),
    (f"{T}/trace", os.O_DIRECTORY | os.O_CREAT, "ENOTDIR"),
    (f"{T}/options", os.O_RDONLY | os.O_TRUNC, "EISDIR"),
    (f"{T}/options", os.O_ACCMODE, "EISDIR"),
    # O_PATH keeps O_DIRECTORY and drops O_CREAT; O_DIRECT fails after the open.
    (f"{T}/trace", os.O_PATH | os.O_DIRECTORY, "ENOTDIR"),
    (f"{T}/newfile", os.O_PATH | os.O_CREAT, "ENOENT"),
    (f"{T}/trace", os.O_DIRECT, "EINVAL"),
    (T, os.O_DIRECT, "EINVAL"),
]


def test_opens_fail_as_do_last_checks_the_flags(stubs):
    got = []
    for path, flags, _ in FAILING_OPENS:
        answers, error = session(stubs, open_(path, flags), CLOSE)
        assert error is not None, (path, oct(flags), results(answers))
        got.append((path, flags, errno_of(error).name))
    assert got == FAILING_OPENS
    assert open_files(stubs) == 0


def test_o_direct_fails_after_the_files_own_open_and_its_release(stubs):
    """open_check_o_direct() comes after the open, and fput() releases the file: a filter
    file opened O_WRONLY|O_TRUNC|O_DIRECT installs the copy O_TRUNC emptied."""
    stubs.tracefs.WriteFile(tracefs_pb2.WriteFileRequest(path=f"{T}/set_ftrace_filter",
                                                         data=b"schedule\n"), timeout=DEADLINE)
    answers, error = session(stubs, open_(f"{T}/set_ftrace_filter",
                                          os.O_WRONLY | os.O_TRUNC | os.O_DIRECT), CLOSE)
    assert answers == [] and error is not None and errno_of(error).name == "EINVAL"
    assert stubs.tracefs.ReadFile(tracefs_pb2.ReadFileRequest(
        path=f"{T}/set_ftrace_filter"), timeout=DEADLINE).data == (
        b"#### all functions enabled ####\n")
    assert open_files(stubs) == 0


def test_access_mode_3_opens_a_file_for_neither_reading_nor_writing(stubs):
    """OPEN_FMODE(3) is neither FMODE_READ nor FMODE_WRITE: the file opens, its reads and
    writes are EBADF, its lseek is its own; trace's O_TRUNC clears nothing, as
    tracing_open() clears only for FMODE_WRITE."""
    stubs.tracefs.WriteFile(tracefs_pb2.WriteFileRequest(path=f"{T}/trace_marker",
                                                         data=b"kept\n"), timeout=DEADLINE)
    for path in (f"{T}/trace", f"{T}/current_tracer"):
        answers, error = session(stubs, open_(path, os.O_ACCMODE | os.O_TRUNC), read(),
                                 write(b"nop\n"), seek(0), read(1, offset=0), CLOSE)
        assert error is None
        assert results(answers) == ["open", "EBADF", "EBADF", "seek", "EBADF", "close"], path
    trace = stubs.tracefs.ReadFile(tracefs_pb2.ReadFileRequest(path=f"{T}/trace"),
                                   timeout=DEADLINE).data
    assert b"kept" in trace


def test_the_flags_an_open_answers_are_f_flags_without_the_creation_flags(stubs):
    """do_dentry_open() clears O_CREAT, O_EXCL, O_NOCTTY and O_TRUNC from f_flags once the
    file's own open ran (which O_TRUNC emptied), as F_GETFL shows: OpenResult.flags."""
    kept = os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK
    answers, error = session(stubs, open_(f"{T}/set_ftrace_filter",
                                          kept | os.O_CREAT | os.O_NOCTTY | os.O_TRUNC), CLOSE)
    assert error is None and results(answers) == ["open", "close"]
    assert answers[0].open.flags == kept


def test_o_path_opens_without_the_files_open_and_does_no_io(stubs):
    """O_PATH keeps only O_DIRECTORY, O_NOFOLLOW and itself (here O_WRONLY|O_TRUNC|O_CREAT
    go): set_ftrace_filter's own open never runs, so nothing is emptied at the close;
    read, write, lseek, pread and pwrite are EBADF (fget_light()). A directory opens so
    too, O_DIRECTORY or not."""
    stubs.tracefs.WriteFile(tracefs_pb2.WriteFileRequest(path=f"{T}/set_ftrace_filter",
                                                         data=b"schedule\n"), timeout=DEADLINE)
    flags = os.O_PATH | os.O_WRONLY | os.O_TRUNC | os.O_CREAT
    answers, error = session(stubs, open_(f"{T}/set_ftrace_filter", flags), read(),
                             write(b"x"), seek(0), read(1, offset=0), write(b"x", offset=0),
                             CLOSE)
    assert error is None
    assert results(answers) == ["open"] + ["EBADF"] * 5 + ["close"]
    assert answers[0].open.flags == os.O_PATH
    assert stubs.tracefs.ReadFile(tracefs_pb2.ReadFileRequest(
        path=f"{T}/set_ftrace_filter"), timeout=DEADLINE).data == b"schedule\n"
    for flags in (os.O_PATH, os.O_PATH | os.O_DIRECTORY | os.O_RDWR):
        answers, error = session(stubs, open_(f"{T}/options", flags), read(), CLOSE)
        assert error is None and results(answers) == ["open", "EBADF", "close"]


# --- Tracefs paths and ReadFile -------------------------------------------------------------

@pytest.mark.parametrize("path, name", [
    ("", "ENOENT"),
    ("sys/kernel/debug/tracing/tracing_on", "EINVAL"),
    (f"{T}/tracing_on/", "ENOTDIR"),
    (f"{T}/tracing_on/../trace", "ENOTDIR"),
    (f"{T}/{'a' * 256}", "ENAMETOOLONG"),
    ("/proc/" + "a" * 256, "ENOENT"),
    ("/" + "a" * 5000, "ENAMETOOLONG"),
])
def test_paths_fail_as_a_path_walk_does(stubs, path, name):
    detail = failing(stubs.tracefs.Stat, tracefs_pb2.StatRequest(path=path))
    assert detail.name == name and len(detail.path) <= 1024


def test_readfile_nonblock_and_max_bytes(stubs):
    empty = stubs.tracefs.ReadFile(tracefs_pb2.ReadFileRequest(
        path=f"{T}/trace_pipe", nonblock=True), timeout=DEADLINE)
    assert (empty.data, empty.would_block, empty.truncated) == (b"", True, False)
    whole = stubs.tracefs.ReadFile(tracefs_pb2.ReadFileRequest(
        path=f"{T}/available_filter_functions"), timeout=DEADLINE).data
    for max_bytes in (1, 4096, 5000, len(whole) + 1):
        part = stubs.tracefs.ReadFile(tracefs_pb2.ReadFileRequest(
            path=f"{T}/available_filter_functions", max_bytes=max_bytes), timeout=DEADLINE)
        assert part.data == whole[:max_bytes]
        assert part.truncated == (max_bytes <= len(whole)) and not part.would_block


# --- Streams: a client holding many cannot stall the daemon --------------------------------

def take_every_stream_slot(stubs: Stubs, limit: int) -> list[tuple[RequestQueue, Any]]:
    """``limit`` idle file sessions, each holding a stream slot."""
    held = []
    for _ in range(limit):
        requests = RequestQueue()
        call = stubs.tracefs.Session(iter(requests), timeout=DEADLINE * 4)
        requests.put(open_(f"{T}/tracing_on"))
        assert next(call).HasField("open")
        held.append((requests, call))
    return held


def end_sessions(held: list[tuple[RequestQueue, Any]]) -> None:
    for requests, call in held:
        requests.end()
        for _ in call:
            pass


def test_streams_past_the_limit_get_enfile_and_unary_calls_go_on(stubs):
    """common.proto STREAMS: idle file sessions fill the streaming slots; the next one
    fails at once with ENFILE, while unary calls (Stats, CheckConsistency) still run."""
    limit = stubs.kernel.Stats(kernel_pb2.StatsRequest(), timeout=DEADLINE).max_streams
    held = take_every_stream_slot(stubs, limit)
    answers, error = session(stubs, open_(f"{T}/tracing_on"), CLOSE)
    assert answers == [] and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert errno_of(error).name == "ENFILE"
    stats = stubs.kernel.Stats(kernel_pb2.StatsRequest(), timeout=DEADLINE)
    assert (stats.streams, stats.open_files) == (limit, limit)
    assert still_consistent(stubs)
    end_sessions(held)
    assert session(stubs, open_(f"{T}/tracing_on"), read(), CLOSE)[1] is None
    stats = stubs.kernel.Stats(kernel_pb2.StatsRequest(), timeout=DEADLINE)
    assert (stats.streams, stats.open_files) == (0, 0)


def test_blocking_unary_calls_hold_a_stream_slot(stubs):
    """A ReadFile of trace_pipe and a WaitFailpoint can block as long as a stream lives,
    so each holds a slot: with the slots taken they fail at once with ENFILE, where 256 of
    them used to take every handler thread and leave every later call waiting; a read
    that cannot block (tracing_on, or trace_pipe with nonblock) needs none."""
    def streams() -> int:
        return stubs.kernel.Stats(kernel_pb2.StatsRequest(), timeout=DEADLINE).streams

    pipe = stubs.tracefs.ReadFile.future(
        tracefs_pb2.ReadFileRequest(path=f"{T}/trace_pipe"), timeout=DEADLINE)
    waiter = stubs.kernel.WaitFailpoint.future(
        kernel_pb2.WaitFailpointRequest(name="ftrace_hash_move:after_disable"),
        timeout=DEADLINE)
    deadline = time.monotonic() + DEADLINE
    while streams() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the daemon's own count, not waiting a fixed time
    assert streams() == 2
    pipe.cancel()
    waiter.cancel()
    while streams() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert streams() == 0 and open_files(stubs) == 0

    limit = stubs.kernel.Stats(kernel_pb2.StatsRequest(), timeout=DEADLINE).max_streams
    held = take_every_stream_slot(stubs, limit)
    for method, request in (
            (stubs.tracefs.ReadFile, tracefs_pb2.ReadFileRequest(path=f"{T}/trace_pipe")),
            (stubs.kernel.WaitFailpoint,
             kernel_pb2.WaitFailpointRequest(name="ftrace_hash_move:after_disable"))):
        assert failing(method, request).name == "ENFILE"
    for path, nonblock in ((f"{T}/tracing_on", False), (f"{T}/trace_pipe", True)):
        stubs.tracefs.ReadFile(tracefs_pb2.ReadFileRequest(path=path, nonblock=nonblock),
                               timeout=DEADLINE)
    end_sessions(held)
    assert streams() == 0 and open_files(stubs) == 0


# --- Messages that do not parse -----------------------------------------------------------

# A string field (ReadFileRequest.path, RegisterOps.name, OpenRequest.path) holding bytes
# that are not UTF-8: protobuf refuses to parse it.
NOT_UTF8 = b"\x0a\x02\xff\xfe"


def raw(channel: grpc.Channel, method: str, kind: str):
    return getattr(channel, kind)(method, request_serializer=None, response_deserializer=None)


def test_a_message_that_does_not_parse_is_einval_and_logs_no_traceback(daemon):
    with grpc.insecure_channel(grpc_target(daemon.address)) as channel:
        read_file = raw(channel, "/ftrace.v1.Tracefs/ReadFile", "unary_unary")
        with pytest.raises(grpc.RpcError) as info:
            read_file(NOT_UTF8, timeout=DEADLINE)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert errno_of(info.value).name == "EINVAL"
        # FileRequest.open and TracerRequest.register are field 1 too: the same string
        # one message deeper.
        nested = b"\x0a\x04" + NOT_UTF8
        for method in ("/ftrace.v1.Tracefs/Session", "/ftrace.v1.Tracer/Attach"):
            call = raw(channel, method, "stream_stream")(iter([nested]), timeout=DEADLINE)
            with pytest.raises(grpc.RpcError) as info:
                list(call)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
            assert "does not parse" in errno_of(info.value).message
        stubs = Stubs(channel)
        assert still_consistent(stubs)
        assert stubs.kernel.Stats(kernel_pb2.StatsRequest(), timeout=DEADLINE).streams == 0
    assert "Traceback" not in daemon.log_text()


def test_refused_streams_give_their_slot_back(daemon):
    """A server-streaming call whose request does not parse is refused before it streams:
    its slot is given back (224 of them used to lock every streaming call out)."""
    with grpc.insecure_channel(grpc_target(daemon.address)) as channel:
        stubs = Stubs(channel)
        limit = stubs.kernel.Stats(kernel_pb2.StatsRequest(), timeout=DEADLINE).max_streams
        trace_pipe = raw(channel, "/ftrace.v1.Tracefs/TracePipe", "unary_stream")
        for _ in range(limit + 1):
            with pytest.raises(grpc.RpcError) as info:
                list(trace_pipe(b"\x08\x80", timeout=DEADLINE))  # a varint cut short
            assert errno_of(info.value).name == "EINVAL"
        assert stubs.kernel.Stats(kernel_pb2.StatsRequest(), timeout=DEADLINE).streams == 0


def test_a_session_reading_trace_pipe_ends_with_enodev_at_a_reboot(stubs):
    """kernel.proto Reboot: a session blocked in a read ends at once, not in-band (its
    next request would never come from a `cat` still waiting for that read)."""
    requests = RequestQueue()
    call = stubs.tracefs.Session(iter(requests), timeout=DEADLINE)
    requests.put(open_(f"{T}/trace_pipe"))
    assert next(call).HasField("open")
    requests.put(read())  # blocks: the buffer is empty
    stubs.kernel.Reboot(kernel_pb2.RebootRequest(), timeout=DEADLINE)
    with pytest.raises(grpc.RpcError) as info:
        next(call)
    assert errno_of(info.value).name == "ENODEV"
    requests.end()
    stats = stubs.kernel.Stats(kernel_pb2.StatsRequest(), timeout=DEADLINE)
    assert (stats.streams, stats.open_files) == (0, 0)


def test_a_read_whose_call_ended_before_it_was_watched_is_interrupted_at_once():
    """grpc's add_callback() returns False when the call is already over (cancelled just
    after it began): its callback would never run, so a blocking read must be interrupted
    there and then, or it waits for ever (14 of 300 quickly cancelled trace_pipe reads
    left a reader and its thread behind)."""
    class EndedCall:
        def add_callback(self, callback) -> bool:
            return False

        def is_active(self) -> bool:
            return False

    with booted(core_functions=4096) as kernel:
        pipe = mount(kernel).open(f"{T}/trace_pipe", os.O_RDONLY)
        signals, pending = SignalTable(), SigPending(EndedCall())
        token = signals.enter(1, pending)  # the call inside the kernel, as it opens
        watch_client(pipe)
        signals.leave(1, pending, token)
        with pytest.raises(KernelError) as exc:  # at once, not after the buffer fills
            file_read(pipe, 4096)
        assert exc.value.errno == errno.EINTR
        file_release(pipe)


def test_a_write_whose_caller_went_away_stops_between_two_writes(stubs):
    """WriteFile is the shell's write loop inside the daemon: once the call is over
    (here its deadline), no more write(2)s, as a killed echo makes none; the file is
    released and the writes made so far are installed. 100,000 tokens took minutes."""
    with pytest.raises(grpc.RpcError) as info:
        stubs.tracefs.WriteFile(tracefs_pb2.WriteFileRequest(
            path=f"{T}/set_ftrace_filter", data=b"* " * 100_000), timeout=0.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + DEADLINE
    while open_files(stubs) and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the daemon's own count, not waiting a fixed time
    assert open_files(stubs) == 0
    assert still_consistent(stubs)


def test_a_register_whose_caller_went_away_stops_between_two_patterns(stubs):
    """Attach's register applies its patterns one ftrace_set_filter after the other inside
    the daemon: once the call is over (here its deadline), no more, as for WriteFile's
    writes; nothing was registered, and the stream's thread is free. At about 19 ms a
    '*' (the review's figure for a filter token), 100,000 would take half an hour."""
    requests = RequestQueue()
    call = stubs.tracer.Attach(iter(requests), timeout=0.5)
    requests.put(tracer_pb2.TracerRequest(register=tracer_pb2.RegisterOps(
        name="gone", filter=["*"] * 100_000)))
    with pytest.raises(grpc.RpcError) as info:
        next(call)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    requests.end()

    def streams() -> int:
        return stubs.kernel.Stats(kernel_pb2.StatsRequest(), timeout=DEADLINE).streams
    deadline = time.monotonic() + DEADLINE
    while streams() and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the daemon's own count, not waiting a fixed time
    assert streams() == 0
    listed = stubs.kernel.ListOps(kernel_pb2.ListOpsRequest(), timeout=DEADLINE).ops
    assert "gone" not in {ops.name for ops in listed}
    assert still_consistent(stubs)
