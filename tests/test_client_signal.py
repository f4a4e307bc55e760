"""kill(2) of a client's task (``Kernel.Kill``, kernel_daemon.signal): a call in an
interruptible wait is woken with EINTR, one in an uninterruptible section (a wait for
ftrace_lock, which 3.6 takes with mutex_lock()) completes; either answer says the signal
was taken. A task with no call inside the kernel keeps nothing pending.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from typing import Any

import grpc
import pytest

import clients.interrupt
from clients.api import Client, RequestQueue
from clients.interrupt import SignalTaken, interruptible
from clients.identity import Identity
from ftrace.v1 import kernel_pb2, tracefs_pb2
from kernel_daemon.rpc.status import SIGNAL_METADATA_KEY
from kernel_daemon.rpc.tracefs_service import write_until_done
from kernel_daemon.signal import SignalTable, SigPending
from kernel_daemon.tracefs.files import file_release
from kernel_daemon.tracefs.tree import mount
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.kernel_helpers import booted
from tests.paused_writer import AFTER_DISABLE, ftrace_lock_held
from tests.test_daemon_tracefs import wait_until
from tests.test_rpc_read_limits import trace_more_than_an_answer
from tests.test_shell_integration import start_shell
from tests.test_tracer_client import DEADLINE, SMALL, TRACING

SIGINT = 2
#: The task signalled in the daemon-side tests (a client's identity: no process of ours).
PID = 4_000_001
#: A pid no call named: the pid table does not have it.
UNSEEN_PID = 4_000_002


def kill(client: Client, pid: int, sig: int) -> int:
    """Kernel.Kill: the calls the signal reached."""
    return client.connection.kernel.Kill(kernel_pb2.KillRequest(pid=pid, signal=sig)).calls


def task(daemon: Any, comm: str) -> Client:
    """A client of ``daemon`` as task PID, which a first call has put in the pid table."""
    client = daemon.connect(Identity(PID, comm))
    client.stats()
    return client


def kill_error(client: Client, pid: int, sig: int) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        kill(client, pid, sig)
    trailers = dict(raised.value.trailing_metadata())
    return raised.value.code(), trailers["errno"]


def signal_trailer(call: Any) -> str | None:
    return dict(call.trailing_metadata()).get(SIGNAL_METADATA_KEY)


@pytest.mark.parametrize(("pid", "sig", "expected"), [
    (PID, -1, (grpc.StatusCode.INVALID_ARGUMENT, "EINVAL")),
    (PID, 65, (grpc.StatusCode.INVALID_ARGUMENT, "EINVAL")),
    (0, SIGINT, (grpc.StatusCode.INVALID_ARGUMENT, "EINVAL")),
    (-PID, SIGINT, (grpc.StatusCode.INVALID_ARGUMENT, "EINVAL")),
    (UNSEEN_PID, SIGINT, (grpc.StatusCode.NOT_FOUND, "ESRCH")),
    (UNSEEN_PID, 0, (grpc.StatusCode.NOT_FOUND, "ESRCH")),
    (UNSEEN_PID, 65, (grpc.StatusCode.NOT_FOUND, "ESRCH")),
])
def test_kill_errors(daemon, pid, sig, expected):
    """EINVAL for a signal outside 0..64 and a pid that is not a process's; ESRCH for a
    pid no call has named (signal 0 too: it checks that the task exists), before the
    signal is checked (kill_pid_info())."""
    with task(daemon, "signalled") as client:
        assert kill_error(client, pid, sig) == expected


def test_a_task_in_user_space_keeps_nothing_pending(daemon):
    """A task with no call inside the kernel: the signal reaches none (it is the
    process's own to take), signal 0 finds the task, and its next call goes as ever."""
    with task(daemon, "signalled") as client:
        with client.open(f"{TRACING}/tracing_on") as session:
            assert (kill(client, PID, SIGINT), kill(client, PID, 0)) == (0, 0)
            assert session.read() == b"1\n"
        response, call = client.connection.tracefs.WriteFile.with_call(
            tracefs_pb2.WriteFileRequest(path=f"{TRACING}/tracing_on", data=b"1\n"))
        assert (response.bytes_written, signal_trailer(call)) == (2, None)


def call_on_a_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    """``call()`` started on a thread; the list gets its result."""
    answers: list[Any] = []
    thread = threading.Thread(target=lambda: answers.append(call()))
    thread.start()
    return thread, answers


def test_an_open_waiting_for_ftrace_lock_completes_then_the_write_loop_stops(spawn):
    """WriteFile of set_ftrace_filter whose open(2) waits for ftrace_lock, held by a
    writer paused in its release (mutex_lock(): uninterruptible): Kill reaches it and it
    goes on waiting; released, the open completes and the signal ends the write loop
    before its first write(2), as it would kill echo there. The release installs the
    copy O_TRUNC emptied; the answer says the signal was taken."""
    daemon = spawn(SMALL)
    with daemon.connect() as control, task(daemon, "echo") as signalled:
        with ftrace_lock_held(control):
            writer, answers = call_on_a_thread(
                lambda: signalled.connection.tracefs.WriteFile.with_call(
                    tracefs_pb2.WriteFileRequest(path=f"{TRACING}/set_ftrace_filter",
                                                 data=b"schedule\n")))
            wait_until(lambda: kill(control, PID, SIGINT) == 1, DEADLINE)
            assert writer.is_alive()  # the lock is still held: it cannot have answered
        writer.join(DEADLINE)
        (response, call), = answers
        assert (response.bytes_written, signal_trailer(call)) == (0, "2")
        assert b"vfs_read" not in control.read_file(f"{TRACING}/set_ftrace_filter")


class RawSession:
    """A Tracefs.Session made by hand: each answer whole, its ``signal`` too."""

    def __init__(self, client: Client, path: str, flags: int) -> None:
        self.requests = RequestQueue()
        self.responses = client.connection.tracefs.Session(iter(self.requests))
        opened = self.do(tracefs_pb2.FileRequest(
            open=tracefs_pb2.OpenRequest(path=path, flags=flags)))
        assert opened.WhichOneof("result") == "open", opened

    def do(self, request: tracefs_pb2.FileRequest) -> tracefs_pb2.FileResponse:
        self.requests.put(request)
        return next(self.responses)

    def __enter__(self) -> "RawSession":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.responses.cancel()
        self.requests.end()
        self.requests.join()


def test_a_session_write_waiting_for_the_lock_completes_and_says_it_took_the_signal(spawn):
    """A Session's write to set_ftrace_filter (opened before the lock was taken) waits
    behind the paused writer: Kill reaches it, it waits on; released, it writes, and its
    answer has the bytes and the signal. The session's close installs the filter."""
    daemon = spawn(SMALL)
    with daemon.connect() as control, task(daemon, "echo") as signalled:
        with RawSession(signalled, f"{TRACING}/set_ftrace_filter",
                        os.O_WRONLY | os.O_APPEND) as session:
            with ftrace_lock_held(control):
                writer, answers = call_on_a_thread(lambda: session.do(
                    tracefs_pb2.FileRequest(write=tracefs_pb2.WriteRequest(
                        data=b"schedule\n", until_done=True))))
                wait_until(lambda: kill(control, PID, SIGINT) == 1, DEADLINE)
                assert writer.is_alive()
            writer.join(DEADLINE)
            written, = answers
            assert (written.write.bytes_written, written.signal) == (len(b"schedule\n"),
                                                                     SIGINT)
            closed = session.do(tracefs_pb2.FileRequest(close=tracefs_pb2.CloseRequest()))
            assert (closed.WhichOneof("result"), closed.signal) == ("close", 0)
        assert control.read_file(f"{TRACING}/set_ftrace_filter") == b"schedule\n"


def test_a_session_read_of_trace_pipe_is_interrupted_says_so_and_reads_again_after(daemon):
    """A Session's blocking read of trace_pipe: Kill wakes it, the read fails EINTR in
    band with the signal in FileResponse.signal. The signal is taken as the interrupted
    read leaves the kernel: the session's next read is not interrupted, it waits and
    returns what comes (3.6's next read(2) after the handler ran), and close answers."""
    with daemon.connect() as control, task(daemon, "cat") as signalled:
        with RawSession(signalled, f"{TRACING}/trace_pipe", os.O_RDONLY) as session:
            reader, answers = call_on_a_thread(lambda: session.do(
                tracefs_pb2.FileRequest(read=tracefs_pb2.ReadRequest(size=4096))))
            wait_until(lambda: kill(control, PID, SIGINT) == 1, DEADLINE)
            reader.join(DEADLINE)
            read, = answers
            assert (read.WhichOneof("result"), read.error.name, read.signal) == (
                "error", "EINTR", SIGINT)
            control.write_file(f"{TRACING}/trace_marker", b"hello\n")
            again = session.do(tracefs_pb2.FileRequest(read=tracefs_pb2.ReadRequest(size=4096)))
            assert (again.WhichOneof("result"), again.signal) == ("read", 0), again
            assert again.read.data.endswith(b"tracing_mark_write: hello\n")
            closed = session.do(tracefs_pb2.FileRequest(close=tracefs_pb2.CloseRequest()))
            assert (closed.WhichOneof("result"), closed.signal) == ("close", 0)
        wait_until(lambda: control.stats().open_files == 0, DEADLINE)


def test_trace_pipe_ends_with_the_signal_in_its_trailers(daemon):
    """A TracePipe stream, one stay in the kernel from open to end: Kill ends it with OK
    and the signal in its trailers."""
    with daemon.connect() as control, task(daemon, "cat") as signalled:
        stream = signalled.connection.tracefs.TracePipe(tracefs_pb2.TracePipeRequest())
        try:
            wait_until(lambda: kill(control, PID, SIGINT) == 1, DEADLINE)
            assert list(stream) == []
            assert (stream.code(), signal_trailer(stream)) == (grpc.StatusCode.OK, "2")
        finally:
            stream.cancel()
        wait_until(lambda: control.stats().open_files == 0, DEADLINE)


# --- Ctrl-C in ftrace-shell: the first signals the task, a second cancels --------------

KILL = "/ftrace.v1.Kernel/Kill"
#: The shell's file is open (the group's redirection) before the lock is taken; the
#: write, once a line comes, waits behind the paused writer.
ECHO_WHEN_TOLD = f"{{ read line; echo schedule; }} >> {TRACING}/set_ftrace_filter"


def kills(client: Client) -> int:
    return client.stats().rpc_counts[KILL]


def calls_inside(client: Client, pid: int) -> int:
    """The calls of task ``pid`` inside the kernel (kill(pid, 0) counts them); 0 for a
    task that has not called in yet (ESRCH)."""
    try:
        return kill(client, pid, 0)
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return 0


def ctrl_c_while_the_lock_is_held(control: Client, shell: subprocess.Popen,
                                   ctrl_c: int) -> tuple[bytes, bytes]:
    """``ctrl_c`` Ctrl-Cs to ``shell``, whose one call inside the kernel waits for the
    ftrace_lock a paused writer holds (:func:`ftrace_lock_held`): after the first, the
    shell's Kill comes and the call goes on waiting. A second ends the shell with the lock
    still held; with one, the writer is released and the shell ends after it. The
    shell's output."""
    sent = kills(control)
    shell.send_signal(signal.SIGINT)
    wait_until(lambda: kills(control) == sent + 1, DEADLINE)  # the shell's Kill
    assert calls_inside(control, shell.pid) == 1  # still waiting for the lock
    assert shell.poll() is None
    if ctrl_c == 2:
        shell.send_signal(signal.SIGINT)
    else:
        control.release_failpoint(AFTER_DISABLE)
    return shell.communicate(timeout=DEADLINE)


@pytest.mark.parametrize("ctrl_c", [1, 2])
def test_ctrl_c_in_a_write_waiting_for_ftrace_lock(spawn, tmp_path, ctrl_c):
    """``echo schedule`` to set_ftrace_filter waiting for the lock a paused writer holds
    (mutex_lock(): uninterruptible). One Ctrl-C: the shell signals its task and goes on
    waiting; released, the write is done, the file closed (the filter installed) and the
    shell dies of SIGINT. A second Ctrl-C: it cancels and dies of it at once, as before."""
    daemon = spawn(SMALL)
    with daemon.connect() as control:
        shell = start_shell(tmp_path, ["--address", daemon.address, "-c", ECHO_WHEN_TOLD])
        try:
            wait_until(lambda: control.stats().open_files == 1, DEADLINE)
            with ftrace_lock_held(control):
                assert shell.stdin is not None
                shell.stdin.write(b"go\n")
                shell.stdin.flush()
                wait_until(lambda: calls_inside(control, shell.pid) == 1, DEADLINE)
                out, err = ctrl_c_while_the_lock_is_held(control, shell, ctrl_c)
        finally:
            shell.kill()
        assert (shell.returncode, out, err) == (-signal.SIGINT, b"", b"")
        if ctrl_c == 1:  # installed before the shell exited: no wait
            assert control.read_file(f"{TRACING}/set_ftrace_filter") == b"schedule\n"
        wait_until(lambda: control.stats().open_files == 0, DEADLINE)


def test_ctrl_c_in_cat_trace_pipe_signals_the_task_and_dies_of_it_at_once(daemon, tmp_path):
    """``cat trace_pipe`` (an interruptible wait) and Ctrl-C: the shell signals its task,
    the read ends with EINTR at once, the file is closed before the shell dies of SIGINT."""
    with daemon.connect() as control:
        shell = start_shell(tmp_path, ["--address", daemon.address, "-c",
                                       f"cat {TRACING}/trace_pipe"])
        try:
            wait_until(lambda: calls_inside(control, shell.pid) == 1, DEADLINE)
            sent = kills(control)
            shell.send_signal(signal.SIGINT)
            out, err = shell.communicate(timeout=DEADLINE)
        finally:
            shell.kill()
        assert (shell.returncode, out, err) == (-signal.SIGINT, b"", b"")
        assert (kills(control), control.stats().open_files) == (sent + 1, 0)


# --- Ctrl-C in a plain blocking call: Client.write_file, load, unload -------------------

LOAD = "/ftrace.v1.Modules/Load"
CURRENT_TRACER = f"{TRACING}/current_tracer"


@pytest.mark.parametrize("ctrl_c", [1, 2])
def test_ctrl_c_in_insmod_waiting_for_ftrace_lock(spawn, tmp_path, ctrl_c):
    """``insmod uinput`` whose load waits for the lock a paused writer holds
    (ftrace_module_init()'s mutex_lock(): uninterruptible). One Ctrl-C: the shell signals
    its task and goes on waiting; released, the module is loaded before the shell dies
    of SIGINT. A second Ctrl-C: it cancels and dies of it at once, as the first did before."""
    daemon = spawn(SMALL)
    with daemon.connect() as control:
        with ftrace_lock_held(control):
            shell = start_shell(tmp_path, ["--address", daemon.address, "-c", "insmod uinput"])
            try:
                # insmod's calls come one at a time: once Load came, the call inside is it.
                wait_until(lambda: control.stats().rpc_counts[LOAD] == 1
                           and calls_inside(control, shell.pid) == 1, DEADLINE)
                out, err = ctrl_c_while_the_lock_is_held(control, shell, ctrl_c)
            finally:
                shell.kill()
        assert (shell.returncode, out, err) == (-signal.SIGINT, b"", b"")
        if ctrl_c == 1:  # loaded before the shell exited: no wait
            assert "uinput" in [module.name for module in control.list_modules()]


class KillSpy:
    """The client's Kill (``method``: its stub's, or :func:`unserved_kill`), each answer
    recorded as it comes back: the calls the signal reached, or the failure's code."""

    def __init__(self, method: Any) -> None:
        self.method = method
        self.answers: list[int | grpc.StatusCode] = []

    def __call__(self, request: kernel_pb2.KillRequest,
                 timeout: float | None = None) -> kernel_pb2.KillResponse:
        try:
            answer = self.method(request, timeout=timeout)
        except grpc.RpcError as error:
            self.answers.append(error.code())
            raise
        self.answers.append(answer.calls)
        return answer


def unserved_kill(client: Client) -> Any:
    """Kill as a daemon without it answers (UNIMPLEMENTED): a method of Kernel's that no
    daemon serves, on the client's channel."""
    return client.connection.channel.unary_unary(
        "/ftrace.v1.Kernel/Unserved",
        request_serializer=kernel_pb2.KillRequest.SerializeToString,
        response_deserializer=kernel_pb2.KillResponse.FromString)


def ctrl_c_in_the_call(control: Client, kill: KillSpy, ctrl_c: int) -> threading.Thread:
    """A thread giving this process a Ctrl-C once task PID has a call inside the kernel
    (waiting for the lock ``ftrace_lock_held(control)`` holds); once the client's
    ``kill`` answered, a second Ctrl-C (``ctrl_c`` 2), or, the call reached, the lock's
    release. Should the thread fail, it releases the lock too, so that the call cannot
    wait for good."""

    def press() -> None:
        try:
            wait_until(lambda: calls_inside(control, PID) == 1, DEADLINE)
            os.kill(os.getpid(), signal.SIGINT)
            wait_until(lambda: kill.answers, DEADLINE)
            if ctrl_c == 2:
                os.kill(os.getpid(), signal.SIGINT)
        except BaseException:
            control.release_failpoint(AFTER_DISABLE)
            raise
        if ctrl_c == 1 and kill.answers == [1]:
            control.release_failpoint(AFTER_DISABLE)

    thread = threading.Thread(target=press)
    thread.start()
    return thread


@pytest.mark.parametrize("ctrl_c", [1, 2])
def test_ctrl_c_in_write_file_waiting_for_ftrace_lock(spawn, ctrl_c):
    """Client.write_file of ``function`` to current_tracer, whose write(2) waits for the
    lock a paused writer holds (register_ftrace_function()'s mutex_lock()). One Ctrl-C:
    the client signals its task and waits on; released, the write completes (the tracer
    is set) before SignalTaken is raised. A second Ctrl-C: KeyboardInterrupt at once, the
    lock still held, as the first gave before."""
    daemon = spawn(SMALL)
    with daemon.connect() as control, task(daemon, "echo") as signalled:
        kill = signalled.connection.kernel.Kill = KillSpy(signalled.connection.kernel.Kill)
        with ftrace_lock_held(control) as writer:
            presser = ctrl_c_in_the_call(control, kill, ctrl_c)
            try:
                with pytest.raises(KeyboardInterrupt) as raised:
                    signalled.write_file(CURRENT_TRACER, "function\n")
                held = writer.is_alive()  # the paused writer has ftrace_lock still
            finally:
                presser.join(DEADLINE)
        assert kill.answers == [1]  # the first Ctrl-C's Kill reached the waiting write
        if ctrl_c == 1:  # set before the call returned: no wait
            assert raised.type is SignalTaken
            assert control.read_file(CURRENT_TRACER) == b"function\n"
        else:
            assert (raised.type, held) == (KeyboardInterrupt, True)


def test_ctrl_c_in_write_file_of_a_daemon_without_kill_cancels_at_once(spawn):
    """A daemon without Kill: the first Ctrl-C's Kill fails UNIMPLEMENTED, and the
    write waiting for ftrace_lock is cancelled at once, as before Kill."""
    daemon = spawn(SMALL)
    with daemon.connect() as control, task(daemon, "echo") as signalled:
        kill = signalled.connection.kernel.Kill = KillSpy(unserved_kill(signalled))
        with ftrace_lock_held(control) as writer:
            presser = ctrl_c_in_the_call(control, kill, 1)
            try:
                with pytest.raises(KeyboardInterrupt) as raised:
                    signalled.write_file(CURRENT_TRACER, "function\n")
                held = writer.is_alive()
            finally:
                presser.join(DEADLINE)
        assert (raised.type, held, kill.answers) == (
            KeyboardInterrupt, True, [grpc.StatusCode.UNIMPLEMENTED])


# --- Ctrl-C in Client.read_file: what its reads took comes back -------------------------

TRACE_PIPE = f"{TRACING}/trace_pipe"


def ctrl_c_once_the_buffer_is_read(control: Client) -> threading.Thread:
    """A thread giving this process a Ctrl-C once task PID has a call inside the kernel and
    the ring buffer holds no entry: a read took what there was, and the next one waits for
    more (or is about to). Should the thread fail, it gives two, the second cancelling the
    read, so that it cannot wait for good."""

    def press() -> None:
        try:
            wait_until(lambda: calls_inside(control, PID) == 1
                       and control.stats().trace_entries == 0, DEADLINE)
        except BaseException:
            os.kill(os.getpid(), signal.SIGINT)
            raise
        finally:
            os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=press)
    thread.start()
    return thread


def read_file_of_trace_pipe_with_ctrl_c(control: Client,
                                        signalled: Client) -> pytest.ExceptionInfo[Any]:
    """``signalled.read_file(TRACE_PIPE)`` given Ctrl-C once its reads took what the
    buffer held (:func:`ctrl_c_once_the_buffer_is_read`): what it raised."""
    presser = ctrl_c_once_the_buffer_is_read(control)
    try:
        with pytest.raises(KeyboardInterrupt) as raised:
            signalled.read_file(TRACE_PIPE)
    finally:
        presser.join(DEADLINE)
    return raised


@pytest.mark.parametrize("lines", [0, 2])
def test_ctrl_c_in_read_file_of_trace_pipe_returns_what_its_reads_took(daemon, lines):
    """Client.read_file of trace_pipe (cat's reads), waiting for events once its reads
    took the ``lines`` the buffer held. Ctrl-C: the client signals its task, the waiting
    read ends at once, and SignalTaken is raised with the answer, the lines the reads
    before took off the buffer (a cancel would have lost them with the call); with none
    taken, the read failed EINTR and there is no answer. The file is released."""
    with daemon.connect() as control, task(daemon, "cat") as signalled:
        kill = signalled.connection.kernel.Kill = KillSpy(signalled.connection.kernel.Kill)
        for line in range(lines):
            control.write_file(f"{TRACING}/trace_marker", f"line {line}\n")
        raised = read_file_of_trace_pipe_with_ctrl_c(control, signalled)
        assert (raised.type, kill.answers) == (SignalTaken, [1])
        answer = raised.value.answer
        taken = [] if answer is None else re.findall(rb"tracing_mark_write: (.*)\n", answer.data)
        assert taken == [f"line {line}".encode() for line in range(lines)]
        wait_until(lambda: control.stats().open_files == 0, DEADLINE)


def test_ctrl_c_in_read_file_reading_on_returns_all_its_reads_took(spawn):
    """Client.read_file of trace_pipe over an answer's size reads on in a Session, whose
    read, the buffer emptied, waits for more. Ctrl-C: SignalTaken's answer holds every
    line the reads took, the first answer's and the Session's. It held only what the
    Session's last read returned (nothing here), and the 80,000 lines were lost."""
    daemon = spawn(SMALL)
    with daemon.connect() as control:
        traced = trace_more_than_an_answer(control)
        with task(daemon, "cat") as signalled:
            raised = read_file_of_trace_pipe_with_ctrl_c(control, signalled)
    assert raised.type is SignalTaken
    assert (len(raised.value.answer.data.splitlines()), traced) == (80_000, 80_000)


def test_a_second_ctrl_c_while_the_kill_is_sent_would_cancel_the_call():
    """The first Ctrl-C's Kill still under way once the wait returned, SIGINT's handler
    is still the call's (a second Ctrl-C cancels it): not KeyboardInterrupt's, which
    would raise out of the wait for the Kill and skip the settle. Restored after."""
    main = threading.main_thread().ident
    assert main is not None
    in_force: list[Any] = []

    def kill() -> bool:
        # On the signaller thread, once the main thread waits for this Kill to be done.
        wait_until(lambda: sys._current_frames()[main].f_code.co_name == "wait", DEADLINE)
        in_force.append(signal.getsignal(signal.SIGINT))
        return True

    with pytest.raises(SignalTaken):
        interruptible(object(), lambda: signal.raise_signal(signal.SIGINT), kill)
    assert in_force and in_force[0] not in (signal.default_int_handler, None)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class LiveCall:
    """A call whose client is still there (what SigPending asks of grpc's context)."""

    def add_callback(self, callback: Any) -> bool:
        return True

    def is_active(self) -> bool:
        return True


@pytest.mark.parametrize(("session", "writes"), [(True, [len(b"schedule\n")]), (False, [])])
def test_a_session_write_signalled_as_it_enters_makes_its_first_write(session, writes):
    """A signal pending as a Session's write operation enters: its write(2) runs, the loop
    stops after it. WriteFile's loop (open and write in one call) makes none."""
    with booted() as kernel:
        file = mount(kernel).open(f"{TRACING}/set_ftrace_filter", os.O_WRONLY | os.O_TRUNC)
        signals, pending = SignalTable(), SigPending(LiveCall())
        token = signals.enter(PID, pending)
        try:
            assert signals.kill(PID, SIGINT) == 1
            sizes, failure = write_until_done(file, b"schedule\n", session=session)
        finally:
            signals.leave(PID, pending, token)
            file_release(file)
        assert (sizes, failure) == (writes, None)


# --- Ctrl-C in a FileSession operation: the operation's result comes back ---------------

@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each call that clients.interrupt settles had ended: settle() waits for an
    ended call's last events, so on a call still going on (a file session the signal left
    open) it would wait SETTLE_TIMEOUT for nothing."""
    ended: list[bool] = []
    real = clients.interrupt.settle

    def spy(call: Any) -> None:
        ended.append(call.done())
        real(call)

    monkeypatch.setattr(clients.interrupt, "settle", spy)
    return ended


def test_ctrl_c_in_a_session_write_waiting_for_ftrace_lock_returns_what_it_wrote(spawn, settled):
    """A FileSession's write to set_ftrace_filter (open before the lock was taken)
    waiting for the lock a paused writer holds. One Ctrl-C: the client signals its task,
    the write completes once the lock is released, and SignalTaken is raised with its
    WriteResult as the answer (the bytes it took); the session is closed first, so the
    filter is installed when the interrupt comes."""
    daemon = spawn(SMALL)
    with daemon.connect() as control, task(daemon, "echo") as signalled:
        kill = signalled.connection.kernel.Kill = KillSpy(signalled.connection.kernel.Kill)
        session = signalled.open(f"{TRACING}/set_ftrace_filter", os.O_WRONLY | os.O_APPEND)
        with ftrace_lock_held(control):
            presser = ctrl_c_in_the_call(control, kill, 1)
            try:
                with pytest.raises(KeyboardInterrupt) as raised:
                    session.write_all("schedule\n")
            finally:
                presser.join(DEADLINE)
        assert (raised.type, kill.answers) == (SignalTaken, [1])
        assert raised.value.answer.bytes_written == len(b"schedule\n")
        assert all(settled), settled  # the open session was not waited for
        assert control.read_file(f"{TRACING}/set_ftrace_filter") == b"schedule\n"
        assert control.stats().open_files == 0


def test_ctrl_c_in_a_session_read_of_trace_pipe_that_read_nothing_has_no_answer(daemon, settled):
    """A FileSession's read of trace_pipe waiting for events: Ctrl-C signals the task,
    the read fails EINTR (it copied nothing), and SignalTaken is raised with no answer;
    the session is closed."""
    with daemon.connect() as control, task(daemon, "cat") as signalled:
        kill = signalled.connection.kernel.Kill = KillSpy(signalled.connection.kernel.Kill)
        session = signalled.open(TRACE_PIPE)
        presser = ctrl_c_once_the_buffer_is_read(control)
        try:
            with pytest.raises(KeyboardInterrupt) as raised:
                session.read()
        finally:
            presser.join(DEADLINE)
        assert (raised.type, raised.value.answer, kill.answers) == (SignalTaken, None, [1])
        assert all(settled), settled  # the open session was not waited for
        wait_until(lambda: control.stats().open_files == 0, DEADLINE)
