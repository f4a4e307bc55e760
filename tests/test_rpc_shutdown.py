"""The end of a boot as the calls still on it see it: ENODEV whose message says whether
the kernel rebooted (Kernel.Reboot) or ftraced is shutting down (SIGTERM), from
kernel_daemon.teardown alone, for the calls the RPC layer ends and for those the
kernel's teardown refuses alike; and the daemon's stop ends the calls that wait in the
kernel within its grace, with that ENODEV, not with gRPC's cancel at the grace's end."""

from __future__ import annotations

import errno
import functools
import gc
import glob
import json
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from clients.api import Client
from clients.cli import error_text, gone_text
from clients.identity import BOOT_ID_METADATA_KEY, COMM_METADATA_KEY, PID_METADATA_KEY
from clients.errors import FtraceError
from ftrace.v1 import kernel_pb2, tracefs_pb2
from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.dispatch import execute_function
from kernel_daemon.kernel import BootOptions, Kernel
from kernel_daemon.rpc.kernel_service import KernelService
from kernel_daemon.rpc.state import Boot, DaemonState
from kernel_daemon.rpc.tracefs_service import TracefsService
from kernel_daemon.rpc.status import SIGNAL_METADATA_KEY
from kernel_daemon.teardown import REBOOTED, SHUT_DOWN
from kernel_daemon.tracefs.files import file_read, file_write
from kernel_daemon.tracefs.tree import mount
from tests.children import child_env
from tests.daemon_fixture import spawn  # noqa: F401  (fixture)
from tests.test_client_signal import PID, calls_inside, task
from tests.test_daemon_tracefs import wait_until
from tests.test_rpc_read_limits import trace_more_than_an_answer
from tests.test_tracer_client import DEADLINE, SMALL, TRACING

FILTER_RELEASE = "ftrace_regex_release:before_lock"
LOAD_COUNT = "ftrace_update_code:before_count"
LOCK_WAIT = "__mutex_lock_slowpath:ftrace_lock"
TRACER = "waiting"

#: A client process making one call that waits in the kernel (argv: the daemon's address,
#: the call), then printing how it ended: [errno name, message, whether the daemon's
#: kernel said so (an ErrnoDetail came with the status)], or null if it did not fail.
CALLER = f"""
import json, sys, threading
from clients.api import Client
from clients.identity import COMM_METADATA_KEY, PID_METADATA_KEY
from clients.errors import FtraceError

address, call = sys.argv[1:]
with Client(address) as client:
    try:
        if call == "TracePipe":
            for _ in client.trace_pipe():
                pass
        elif call == "Session":
            with client.open("{TRACING}/trace_pipe") as file:
                file.read()
        elif call == "ReadFile":
            client.read_file("{TRACING}/trace_pipe")
        elif call == "WaitFailpoint":
            client.wait_failpoint("{FILTER_RELEASE}", 1, None)
        elif call == "Attach":
            news = threading.Event()
            tracer = client.attach("{TRACER}", ["schedule"], on_event=news.set)
            while not tracer.ended:
                news.wait()
                news.clear()
            tracer.flush()
        ended = None
    except FtraceError as error:
        ended = [error.errno_name, error.message, error.from_kernel]
print(json.dumps(ended), flush=True)
"""


def waiting(control: Client, caller: subprocess.Popen, call: str) -> bool:
    """Whether ``caller``'s call waits in the kernel (or is about to: it is inside)."""
    if call == "WaitFailpoint":
        (site,) = [fp for fp in control.list_failpoints() if fp.name == FILTER_RELEASE]
        return site.waiters == 1
    if call == "Attach":
        return TRACER in [ops.name for ops in control.list_ops()]
    return calls_inside(control, caller.pid) == 1


CALLS = ("TracePipe", "Session", "ReadFile", "WaitFailpoint", "Attach")


@pytest.mark.parametrize("end, reason", [("Reboot", REBOOTED), ("SIGTERM", SHUT_DOWN)])
def test_the_calls_waiting_in_the_kernel_end_with_enodev_saying_why(spawn, end, reason):
    """Client processes each waiting in the kernel (a trace_pipe reader three ways, a
    failpoint waiter, a tracer's stream): a Kernel.Reboot, or SIGTERM to the daemon,
    ends every call with ENODEV and its ErrnoDetail, the message saying which. For
    SIGTERM that is within the server's grace: gRPC's own end of a call at the grace's
    end ("Cancelling all calls") carries no ErrnoDetail."""
    daemon = spawn(SMALL)
    callers = {call: subprocess.Popen([sys.executable, "-c", CALLER, daemon.address, call],
                                      stdout=subprocess.PIPE, env=child_env())
               for call in CALLS}
    try:
        with daemon.connect() as control:
            for call, caller in callers.items():
                wait_until(lambda: waiting(control, caller, call), DEADLINE)
            if end == "Reboot":
                control.reboot(core_functions=2000)
            else:
                daemon.process.terminate()
            ended = {call: json.loads(caller.communicate(timeout=DEADLINE)[0])
                     for call, caller in callers.items()}
    finally:
        for caller in callers.values():
            caller.kill()
            caller.wait()
    assert ended == {call: ["ENODEV", reason, True] for call in CALLS}
    if end == "SIGTERM":
        assert daemon.process.wait(DEADLINE) == 0


@pytest.mark.parametrize("end", ["Reboot", "SIGTERM"])
def test_a_read_file_of_trace_pipe_the_end_wakes_answers_the_lines_its_reads_took(spawn, end):
    """A ReadFile of trace_pipe whose reads took the two lines the buffer held, the next
    one waiting for more: a Kernel.Reboot, or SIGTERM to the daemon, wakes that read,
    and the call answers the lines, as cat wrote them out before the machine went down
    (a signal's EINTR ends the loop so too). It failed with ENODEV, and the lines were
    lost: off the buffer, and not with the caller."""
    daemon = spawn(SMALL)
    with daemon.connect() as control, task(daemon, "cat") as reader:
        for line in range(2):
            control.write_file(f"{TRACING}/trace_marker", f"line {line}\n")
        with ThreadPoolExecutor(1) as pool:
            read = pool.submit(reader.read_file, f"{TRACING}/trace_pipe")
            wait_until(lambda: calls_inside(control, PID) == 1
                       and control.stats().trace_entries == 0, DEADLINE)
            if end == "Reboot":
                control.reboot(core_functions=2000)
            else:
                daemon.process.terminate()
            answer = outcome(read)
    assert isinstance(answer, bytes), answer
    assert re.findall(rb"tracing_mark_write: (.*)\n", answer) == [b"line 0", b"line 1"]
    if end == "SIGTERM":
        assert daemon.process.wait(DEADLINE) == 0


def test_read_file_reading_a_pipe_on_past_its_answer_returns_all_it_took_at_a_reboot(spawn):
    """Client.read_file of trace_pipe over an answer's size reads the rest on in a
    Session (tests/test_rpc_read_limits.py), whose read, the buffer emptied, waits for
    more: a Kernel.Reboot fails it, and read_file returns every line its reads took, the
    first answer's and the Session's, as ReadFile answers them. It raised the ENODEV,
    and all 80,000 lines were lost with it."""
    daemon = spawn(SMALL)
    with daemon.connect() as control:
        traced = trace_more_than_an_answer(control)
        with task(daemon, "cat") as reader:
            with ThreadPoolExecutor(1) as pool:
                read = pool.submit(reader.read_file, f"{TRACING}/trace_pipe")
                wait_until(lambda: calls_inside(control, PID) == 1
                           and control.stats().trace_entries == 0, DEADLINE)
                control.reboot(core_functions=2000)
                answer = outcome(read)
    assert isinstance(answer, bytes), answer
    assert (len(answer.splitlines()), traced) == (80_000, 80_000)


def test_read_file_reading_on_in_a_file_that_is_no_pipe_raises_at_a_reboot(spawn,
                                                                           monkeypatch):
    """Client.read_file of ``trace`` (a seq file: seekable) over an answer's size reads on
    in a Session from where the answer ended: a Kernel.Reboot between the Session's open
    and its seek fails the seek with the ENODEV, and read_file raises it, as the part read
    would pass for the whole file (of a pipe, what the reads took is returned: above)."""
    daemon = spawn(SMALL)
    with daemon.connect() as control:
        trace_more_than_an_answer(control)
        with daemon.connect() as reader:
            opened = reader.open

            def open_then_reboot(path: str, flags: int = os.O_RDONLY) -> Any:
                file = opened(path, flags)
                control.reboot(core_functions=2000)
                return file

            monkeypatch.setattr(reader, "open", open_then_reboot)
            with pytest.raises(FtraceError) as raised:
                reader.read_file(f"{TRACING}/trace")
    assert raised.value.kernel_gone, raised.value


@pytest.mark.parametrize("name, answered", [("trace_pipe", True),
                                             ("available_filter_functions", False)])
def test_only_the_reads_of_trace_pipe_are_answered_at_their_kernels_end(monkeypatch, name,
                                                                         answered):
    """ReadFile's loop (TracefsService._read_all) when a read after one that returned data
    fails at its kernel's end: trace_pipe's data is answered (off the buffer: cat wrote it
    out before its machine went down); another file's part fails the call with the
    ENODEV, as the part would pass for the whole file. trace_pipe's read meets its ENODEV
    for real (its ring buffer closed); no other file's read meets one today, so the
    other's is raised here."""
    kernel = Kernel(BootOptions(core_functions=2000))
    boot = Boot(1, kernel, mount(kernel))
    first = [b"the first read's data\n"]

    def read(file: Any, count: int) -> bytes:
        if first:
            return first.pop()
        boot.end(REBOOTED)
        if name == "trace_pipe":
            return file_read(file, count)
        raise KernelError(errno.ENODEV, REBOOTED)

    try:
        file = boot.vfs.open(f"{TRACING}/{name}", os.O_RDONLY)
        monkeypatch.setattr("kernel_daemon.rpc.tracefs_service.file_read", read)
        chunks: list[bytes] = []
        read_all = functools.partial(TracefsService._read_all, boot, file, name, 0, chunks)
        if answered:
            assert (read_all(), chunks) == ((False, False), [b"the first read's data\n"])
        else:
            assert refused(read_all) == (errno.ENODEV, REBOOTED)
    finally:
        kernel.shutdown(REBOOTED)


def refused(call: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(KernelError) as raised:
        call()
    return raised.value.errno, raised.value.message


@pytest.mark.parametrize("reason", [REBOOTED, SHUT_DOWN])
def test_what_the_teardown_refuses_says_why_the_kernel_went(reason):
    """Past Kernel.shutdown(reason), what needs the kernel that went says why it went:
    a read of trace_pipe (the ring buffer closed), a resize of the ring buffer (its
    segments unlinked) and a module's record pages (the page directory gone)."""
    kernel = Kernel(BootOptions(core_functions=2000))
    try:
        pipe = mount(kernel).open(f"{TRACING}/trace_pipe", os.O_RDONLY)
    finally:
        kernel.shutdown(reason)
    ips = np.array([0xFFFFFFFFA0000000], dtype=np.uint64)
    assert [refused(lambda: file_read(pipe, 4096)),
            refused(lambda: kernel.ring_buffer.resize(8 << 10)),
            refused(lambda: kernel.ftrace.pages.allocate(None, "m", ips, np.array(["f"])))] == [
        (errno.ENODEV, reason),
        (errno.ENODEV, f"{reason}: its ring buffer is gone"),
        (errno.ENODEV, f"{reason}: its memory is gone")]


def test_a_reboot_the_stop_overtakes_swaps_no_boot_in():
    """A Kernel.Reboot whose kernel is up only once the daemon is stopping (which ended
    the boot serving, before the grace): its kernel is shut down at once, leaving nothing
    in /dev/shm, and the call fails with the ENODEV of a boot shut down. Swapped in, it
    would outlive the stop, its shared memory with it."""
    options = BootOptions(core_functions=2000)
    try:
        state = DaemonState(options)
        serving = state.boot
        state.stopping()
        failure = refused(lambda: state.reboot(options))
    finally:
        gc.unfreeze()  # DaemonState froze this process's objects, as it does the daemon's
    assert (failure, state.boot is serving) == ((errno.ENODEV, SHUT_DOWN), True)
    assert glob.glob(f"/dev/shm/ftsim.{os.getpid()}.*") == []


#: The files whose reads walk the record pages (``t_start()`` under ftrace_lock).
LISTINGS = ("available_filter_functions", "enabled_functions", "set_ftrace_filter",
            "set_ftrace_notrace")


def outcome(future: Future) -> object:
    """A call's answer, or [errno name, message] if it failed."""
    try:
        return future.result(DEADLINE)
    except FtraceError as error:
        return [error.errno_name, error.message]


def behind_a_paused_load(daemon: Any, control: Client, end: str,
                         calls: dict[str, Callable[[], object]]) -> dict[str, object]:
    """Each of ``calls`` entered into the kernel, waiting for the ftrace_lock that a module
    load paused at ftrace_update_code:before_count holds (each paused at
    __mutex_lock_slowpath:ftrace_lock, so it is surely in the kernel), then the kernel
    torn down (``end``: Kernel.Reboot or SIGTERM), which releases them all: how each
    ended (:func:`outcome`)."""
    with ThreadPoolExecutor(len(calls) + 1) as pool:
        control.set_failpoint(LOAD_COUNT, "1*pause")
        load = pool.submit(control.load, "dummy")
        control.wait_failpoint(LOAD_COUNT, timeout=DEADLINE)
        control.set_failpoint(LOCK_WAIT, f"{len(calls)}*pause")
        futures = {name: pool.submit(call) for name, call in calls.items()}
        control.wait_failpoint(LOCK_WAIT, len(calls), timeout=DEADLINE)
        if end == "Reboot":
            control.reboot(core_functions=2000)
        else:
            daemon.process.terminate()
        ended = {name: outcome(future) for name, future in futures.items()}
        outcome(load)
    if end == "SIGTERM":
        assert daemon.process.wait(DEADLINE) == 0
    assert "Traceback" not in daemon.log_text()
    return ended


@pytest.mark.parametrize("end", ["Reboot", "SIGTERM"])
def test_a_listing_read_inside_the_kernel_torn_down_finishes_against_it(spawn, end):
    """Reads of the record listings that entered the kernel before a Kernel.Reboot or
    SIGTERM ended it (:func:`behind_a_paused_load`): each walks the dead kernel's record
    pages, as the kernel's teardown leaves them for the calls still on it. Were the page
    list emptied, t_start()'s walk would fail on it (IndexError: EIO)."""
    daemon = spawn(SMALL)
    with daemon.connect() as control:
        control.write_file(f"{TRACING}/set_ftrace_filter", "vfs_read\n")
        functions = control.read_file(f"{TRACING}/available_filter_functions")
        read = behind_a_paused_load(daemon, control, end, {
            name: functools.partial(control.read_file, f"{TRACING}/{name}")
            for name in LISTINGS})
    listed = read.pop("available_filter_functions")
    assert isinstance(listed, bytes) and listed.startswith(functions), listed[:200]
    assert read == {"enabled_functions": b"", "set_ftrace_filter": b"vfs_read\n",
                    "set_ftrace_notrace": b""}


@pytest.mark.parametrize("end", ["Reboot", "SIGTERM"])
def test_a_filter_write_and_a_check_inside_the_kernel_torn_down_finish_against_it(spawn, end):
    """A set_ftrace_notrace write and a CheckConsistency that entered the kernel before it
    was torn down (:func:`behind_a_paused_load`) find the dead kernel's records: the
    write matches its function, and the check walks every record of that boot. On an
    emptied page list the write failed EINVAL ("selects no function") and the check
    answered ok having checked no record."""
    daemon = spawn(SMALL)
    with daemon.connect() as control:
        before = control.check_consistency()
        ended = behind_a_paused_load(daemon, control, end, {
            "write": functools.partial(control.write_file, f"{TRACING}/set_ftrace_notrace",
                                       "schedule\n"),
            "check": control.check_consistency})
    check = ended["check"]
    assert isinstance(check, kernel_pb2.ConsistencyReport), check
    assert (ended["write"], check.ok, check.boot_id,
            check.records_checked >= before.records_checked > 0) == (
        len("schedule\n"), True, before.boot_id, True)


def test_an_invoke_inside_the_kernel_torn_down_runs_its_call_site():
    """An Invoke's execute_function() on a kernel shut down under it: the call site is
    found in the records the teardown left, and as it was patched for the function
    tracer, the call enters the trampoline, as before. On an emptied page list it faulted (EFAULT,
    "no function at")."""
    kernel = Kernel(BootOptions(core_functions=2000))
    vfs = mount(kernel)
    try:
        for path, data in (("set_ftrace_filter", b"schedule\n"), ("current_tracer", b"function\n")):
            file = vfs.open(f"{TRACING}/{path}", os.O_WRONLY | os.O_TRUNC)
            file_write(file, data)
            file.release()
        (core, *_) = kernel.ftrace.pages.groups
        (schedule,) = core.records_named("schedule")
        ip = int(core.ips[schedule])
        assert execute_function(kernel.ftrace, ip, 0)
    finally:
        kernel.shutdown(REBOOTED)
    assert execute_function(kernel.ftrace, ip, 0)


class CallContext:
    """What DaemonState uses of a call's grpc.ServicerContext: the identity metadata of
    process ``pid``, a client still there, and the trailing metadata set."""

    def __init__(self, pid: int) -> None:
        self.metadata = ((PID_METADATA_KEY, str(pid)), (COMM_METADATA_KEY, "sh"))
        self.trailing: tuple[tuple[str, str], ...] = ()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def is_active(self) -> bool:
        return True

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.trailing

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.trailing = metadata


def test_a_call_that_enters_after_the_stop_fails_with_enodev():
    """The daemon's stop ends the boot before the server stops taking calls (so that what
    waits in it ends within the grace): a unary call that enters the kernel after that
    fails with the ENODEV of the boot shut down, as a Reboot then does, instead of
    running on the dead kernel."""
    try:
        state = DaemonState(BootOptions(core_functions=2000))
        with state.syscall(CallContext(4242)) as boot:
            assert boot is state.boot
        state.stopping()
        failure = refused(lambda: state.syscall(CallContext(4242)))
    finally:
        gc.unfreeze()  # DaemonState froze this process's objects, as it does the daemon's
    assert failure == (errno.ENODEV, SHUT_DOWN)
    assert glob.glob(f"/dev/shm/ftsim.{os.getpid()}.*") == []


def test_a_session_that_opens_after_the_stop_fails_with_enodev():
    """A Tracefs.Session whose open comes after the daemon's stop ended the boot (gRPC
    still takes calls until the server's grace begins) fails with the ENODEV of the boot
    shut down, as a unary call entering then does, instead of opening a file in the dead
    kernel."""
    open_request = tracefs_pb2.FileRequest(open=tracefs_pb2.OpenRequest(
        path=f"{TRACING}/set_ftrace_filter", flags=os.O_RDONLY))
    try:
        state = DaemonState(BootOptions(core_functions=2000))
        session = TracefsService.Session.__wrapped__  # type: ignore[attr-defined]
        state.stopping()
        failure = refused(lambda: list(session(TracefsService(state), iter([open_request]),
                                               CallContext(4242))))
    finally:
        gc.unfreeze()  # DaemonState froze this process's objects, as it does the daemon's
    assert failure == (errno.ENODEV, SHUT_DOWN)
    assert state.open_files == set()


#: A grace far longer than the deadlines the tests wait with: a call that holds the
#: daemon's stop to the grace's end fails them.
LONG_GRACE = ["--stop-grace", "600"]


def test_the_stop_cancels_a_file_session_waiting_for_its_next_request_at_once(spawn):
    """A Tracefs.Session with its file open, its client sending nothing: SIGTERM cancels
    it at once (gRPC's CANCELLED: a cancelled call carries no ErrnoDetail), and the
    daemon exits well within its grace. It held the daemon's stop for the whole grace
    (ftraced took ~2 s to exit), then ended with the server's cancel of all calls. The
    client has its write's answer a moment before the handler waits for the next
    request: a SIGTERM in that moment ends the session with the stop's ENODEV instead
    (where it would wait), as after an operation under way (below)."""
    daemon = spawn(SMALL + LONG_GRACE)
    with daemon.connect() as client:
        file = client.open(f"{TRACING}/set_ftrace_filter", os.O_WRONLY)
        file.write("schedule\n")
        daemon.process.terminate()
        assert daemon.process.wait(DEADLINE) == 0
        with pytest.raises(FtraceError) as ended:
            file.read()
    error = ended.value
    assert (error.code, error.errno_name, error.from_kernel and error.message) in [
        (grpc.StatusCode.CANCELLED, "ECANCELED", False),
        (grpc.StatusCode.UNAVAILABLE, "ENODEV", SHUT_DOWN)]
    # The clients word the cancel as the daemon gone, as its cancel of all calls was.
    assert error_text(error, client) in (gone_text(client.address, error),
                                         f"No such device ({SHUT_DOWN})")
    assert "Traceback" not in daemon.log_text()


def test_the_stop_cancels_an_idle_server_reflection_stream_at_once(spawn):
    """A reflection client that keeps its stream open between questions (as tools driven
    by reflection do): one answered, none after. SIGTERM ends it at once, as an idle file
    session; it held the daemon's stop for the whole grace."""
    daemon = spawn(SMALL + LONG_GRACE)
    requests: queue.SimpleQueue = queue.SimpleQueue()
    with grpc.insecure_channel(daemon.address) as channel:
        stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter(requests.get, None))
        requests.put(reflection_pb2.ServerReflectionRequest(list_services=""))
        assert next(stream).list_services_response.service
        daemon.process.terminate()
        try:
            assert daemon.process.wait(DEADLINE) == 0
            # Cancelled where it waited; or, the stop come before it waited again after
            # its answer, its requests end there, as at a half-close, and so the stream.
            with pytest.raises((grpc.RpcError, StopIteration)) as ended:
                next(stream)
            assert ended.type is StopIteration or ended.value.code() == grpc.StatusCode.CANCELLED
        finally:
            requests.put(None)
    assert "Traceback" not in daemon.log_text()


def test_the_stop_ends_a_health_watch_once_it_said_not_serving(spawn):
    """A Health.Watch (a channel doing client-side health checking keeps one open): at
    SIGTERM it gets NOT_SERVING, then its call ends with OK, at once. It waited in
    grpc_health's watcher to the grace's end, holding the daemon's stop."""
    daemon = spawn(SMALL + LONG_GRACE)
    with grpc.insecure_channel(daemon.address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        daemon.process.terminate()
        assert daemon.process.wait(DEADLINE) == 0
        assert [response.status for response in watch] == [
            health_pb2.HealthCheckResponse.NOT_SERVING]
    assert "Traceback" not in daemon.log_text()


def test_the_stop_answers_a_file_session_s_operation_under_way_then_ends_it(spawn):
    """A Session write waiting for the ftrace_lock a paused module load holds when SIGTERM
    comes (behind_a_paused_load): the write goes on, and is answered, against the dead
    kernel; the session then ends with the stop's ENODEV where it would wait for its
    next request, the daemon exiting within its grace, not at its end."""
    daemon = spawn(SMALL + LONG_GRACE)
    with daemon.connect() as control, daemon.connect() as writer:
        file = writer.open(f"{TRACING}/set_ftrace_notrace", os.O_WRONLY)
        ended = behind_a_paused_load(daemon, control, "SIGTERM",
                                     {"write": functools.partial(file.write, "schedule\n")})
        with pytest.raises(FtraceError) as after:
            file.read()
    assert (ended, after.value.errno_name, after.value.message) == (
        {"write": len("schedule\n")}, "ENODEV", SHUT_DOWN)


class SessionCall(CallContext):
    """A Session's call as its handler sees it: the requests put, read as gRPC's request
    iterator reads them (it raises RpcError once the call is cancelled), and the call's
    cancel; ``waiting`` is set once the handler waits for a request."""

    def __init__(self, pid: int) -> None:
        super().__init__(pid)
        self.requests: queue.SimpleQueue[tracefs_pb2.FileRequest | None] = queue.SimpleQueue()
        self.waiting = threading.Event()
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.requests.put(None)

    def __iter__(self) -> SessionCall:
        return self

    def __next__(self) -> tracefs_pb2.FileRequest:
        self.waiting.set()
        request = self.requests.get()
        self.waiting.clear()
        if request is None:
            raise grpc.RpcError()
        return request


def test_the_stop_releases_the_file_of_a_session_waiting_for_its_next_request():
    """DaemonState.stopping() under a Session whose file is open, its handler waiting for
    the next request: the call is cancelled, which ends the wait (gRPC's RpcError), and
    the session's end releases the file, as a shutdown's kill of its process does."""
    call = SessionCall(4242)
    call.requests.put(tracefs_pb2.FileRequest(open=tracefs_pb2.OpenRequest(
        path=f"{TRACING}/set_ftrace_filter", flags=os.O_WRONLY)))
    try:
        state = DaemonState(BootOptions(core_functions=2000))
        session = TracefsService.Session.__wrapped__(  # type: ignore[attr-defined]
            TracefsService(state), call, call)
        opened = next(session).WhichOneof("result")
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(next, session)
            try:
                assert call.waiting.wait(DEADLINE)
                state.stopping()
                with pytest.raises(grpc.RpcError):
                    waiting.result(DEADLINE)
            finally:
                call.requests.put(None)  # a session still waiting ends (and the pool with it)
    finally:
        gc.unfreeze()  # DaemonState froze this process's objects, as it does the daemon's
    assert (opened, call.cancelled, state.open_files) == ("open", True, set())
    assert glob.glob(f"/dev/shm/ftsim.{os.getpid()}.*") == []


def test_kill_finds_a_task_whose_call_is_inside_the_kernel_a_reboot_replaced():
    """Kernel.Kill of a process whose call entered the kernel just before a Reboot
    replaced it (a Ctrl-C's Kill landing just after the swap): the call is still inside
    the old kernel, so the task is found (the signal table is the daemon's, not the
    boot's) and the call takes the signal on its way out, where the lookup in the new
    boot's pid table alone answered ESRCH. Once the call is out, the task, which has not
    called into the new kernel, is not found."""
    options = BootOptions(core_functions=2000)
    kill = KernelService.Kill.__wrapped__  # type: ignore[attr-defined]
    try:
        state = DaemonState(options)
        service = KernelService(state)
        shell = CallContext(4242)
        with state.syscall(shell) as syscall_boot:
            state.reboot(options)
            found = kill(service, kernel_pb2.KillRequest(pid=4242, signal=2), CallContext(7))
        after = refused(lambda: kill(service, kernel_pb2.KillRequest(pid=4242, signal=2),
                                     CallContext(7)))
        state.stopping()
    finally:
        gc.unfreeze()  # DaemonState froze this process's objects, as it does the daemon's
    assert (syscall_boot.ended, found.calls, shell.trailing) == (
        True, 1, ((SIGNAL_METADATA_KEY, "2"),))
    assert after == (errno.ESRCH, "no task with pid 4242")
    assert glob.glob(f"/dev/shm/ftsim.{os.getpid()}.*") == []


def racing_reboots(monkeypatch,
                   reboot: Callable[[DaemonState], Any]) -> tuple[Any, Any, int, int]:
    """Two ``reboot(state)`` at once on a fresh DaemonState, the first held in its mount
    (its kernel built) until the second has served: each one's answer or KernelError, the
    first boot's id and the boot id serving after them."""
    second_served = threading.Event()
    held = threading.Event()

    def mount_after_the_other(kernel: Kernel):
        if not held.is_set():
            held.set()
            assert second_served.wait(DEADLINE)
        return mount(kernel)

    def answer(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except KernelError as error:
            return error

    try:
        state = DaemonState(BootOptions(core_functions=2000))
        born = state.boot.boot_id
        monkeypatch.setattr("kernel_daemon.rpc.state.mount", mount_after_the_other)
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(answer, lambda: reboot(state))
            assert held.wait(DEADLINE)
            second = answer(lambda: reboot(state))
            second_served.set()
            first_answer = first.result(DEADLINE)
        serving = state.boot.boot_id
        state.stopping()
    finally:
        gc.unfreeze()  # DaemonState froze this process's objects, as it does the daemon's
    assert glob.glob(f"/dev/shm/ftsim.{os.getpid()}.*") == []
    return first_answer, second, born, serving


def test_boot_ids_grow_in_the_order_boots_serve(monkeypatch):
    """Two reboots at once: the one whose kernel is built first is not always the first
    swapped in. The id is given at the swap, so the boot serving always has the newest:
    the stress checker takes a later boot's id for a later boot, and the boot fence's
    EINVAL (a boot that has not booted) is for ids above the one serving."""
    first, second, born, serving = racing_reboots(
        monkeypatch, lambda state: state.reboot(BootOptions(core_functions=2000)))
    assert (second.boot_id, first.boot_id, serving) == (born + 1, born + 2, born + 2)


def test_a_fenced_reboot_replaces_only_the_boot_its_caller_was_born_in(monkeypatch):
    """Two Reboots at once from tasks of boot 1 (the boot fence): the second replaces
    boot 1; the first, whose kernel was still booting, would have ended boot 2 after it,
    a process of an old boot acting on a new one (review R3, 11 of 20 trials). It fails
    with the ENODEV of its caller's boot gone instead, and boot 2 serves on."""
    reboot = KernelService.Reboot.__wrapped__  # type: ignore[attr-defined]

    def fenced_reboot(state: DaemonState) -> Any:
        context = CallContext(4242)
        context.metadata += ((BOOT_ID_METADATA_KEY, str(state.boot.boot_id)),)
        return reboot(KernelService(state), kernel_pb2.RebootRequest(
            config=kernel_pb2.BootConfig(core_functions=2000)), context)

    first, second, born, serving = racing_reboots(monkeypatch, fenced_reboot)
    assert (second.boot_id, serving) == (born + 1, born + 1)
    assert (first.errno, first.message) == (errno.ENODEV, REBOOTED)
