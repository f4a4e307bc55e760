"""Ctrl-C during a blocking call of the client library (clients.interrupt): the call is
cancelled first, then KeyboardInterrupt comes out of the client's own code, never out of
gRPC's — in a response stream's wait and in a unary call's alike; the daemon releases what
the call held; the program exits as before (the shell dies of SIGINT, as bash). A
cancelled session leaves no thread of gRPC's behind, and cannot hang its program's exit.

The interrupted programs are child processes of a real ftraced: SIGINT goes to a main
thread, which a pytest worker's must not get.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Callable

import pytest

from clients.api import ATTACH_READER_THREAD, Client
from clients.interrupt import SIGNALLER_THREAD
from tests.children import REPO, child_env
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.paused_writer import ftrace_lock_held
from tests.test_daemon_tracefs import wait_until
from tests.test_shell_grep_stream import Reader
from tests.test_shell_integration import TRACING, start_shell
from tests.test_tracer_client import DEADLINE, SMALL

#: How many times the shell is interrupted: a hang that comes once in tens of runs
#: under load gets its chances.
SHELL_ROUNDS = 20

#: A site no test run passes by: a WaitFailpoint on it waits until cancelled.
QUIET_SITE = "__ftrace_hash_rec_update:next_page"
#: A site where a filter write pauses holding ftrace_lock.
CHECK_CONSISTENCY = "/ftrace.v1.Kernel/CheckConsistency"

#: Sessions cancelled in a row by the thread tests.
CANCELLED_SESSIONS = 10
#: Seconds gRPC's consuming thread is held in the call's lock in _CANCELLED.
CONSUMER_HOLD = 0.3

#: A program blocked in one of the library's waits until SIGINT; it then reports where
#: KeyboardInterrupt came from (every frame of its traceback) and whether SIGINT raises
#: KeyboardInterrupt again, and closes its client (the channel's close() waits for every
#: call to end). "ready" says it is about to wait: from there to the wait no gRPC code
#: runs on its main thread but the unary call's start, which the test lets pass (it
#: waits until the daemon has the call), so a frame of grpc's can only come from the
#: wait itself.
#: With a third argument the session's read raises SIGINT itself, at one of the points
#: of grpc's _next where KeyboardInterrupt leaves a lock wrong (clients.interrupt): as
#: the channel's Condition.__enter__ returns ("enter"), as its __exit__ starts ("exit"),
#: in the call's Condition.wait() just after _release_save() ("wait"). Should it hang
#: all the same, it prints every thread's stack and exits before the test's deadline.
_INTERRUPTED = f"""
import faulthandler
faulthandler.dump_traceback_later({DEADLINE * 0.75}, exit=True)
QUIET_SITE = {QUIET_SITE!r}
""" + """
import inspect, signal, sys, threading, traceback
from clients.api import Client

def sigint_in_grpc(where):
    method = {"enter": "__enter__", "exit": "__exit__", "wait": "wait"}[where]
    code = getattr(threading.Condition, method).__code__
    lines, first = inspect.getsourcelines(threading.Condition.wait)
    released = first + next(i for i, line in enumerate(lines) if "gotit = False" in line)
    armed = True

    def fire():
        nonlocal armed
        armed = False
        sys.settrace(None)
        signal.raise_signal(signal.SIGINT)

    def local(frame, event, arg):
        if armed and (event, where) in (("return", "enter"), ("line", "wait")) and (
                where == "enter" or frame.f_lineno == released):
            fire()
        return local

    def tracer(frame, event, arg):
        caller = frame.f_back
        while caller is not None and caller.f_code.co_name != "_next":
            caller = caller.f_back
        if not armed or frame.f_code is not code or caller is None:
            return None
        call_lock = frame.f_locals["self"] is caller.f_locals["self"]._state.condition
        if call_lock != (where == "wait"):
            return None
        if where == "exit":
            fire()
        return local

    sys.settrace(tracer)

TRACING = "/sys/kernel/debug/tracing"
client = Client(sys.argv[1])
UNARY = {
    "wait_failpoint": lambda: client.wait_failpoint(QUIET_SITE, timeout=None),
    "check_consistency": client.check_consistency,
}
try:
    if sys.argv[2] == "session":
        with client.open(TRACING + "/trace_pipe") as session:
            print("ready", flush=True)
            if len(sys.argv) > 3:
                sigint_in_grpc(sys.argv[3])
            session.read()
    elif sys.argv[2] in UNARY:
        print("ready", flush=True)
        UNARY[sys.argv[2]]()
    else:
        follow = client.trace_pipe if sys.argv[2] == "trace_pipe" else client.dmesg_follow
        with follow() as stream:
            print("ready", flush=True)
            for _ in stream:
                pass
except KeyboardInterrupt as interrupt:
    for frame in traceback.extract_tb(interrupt.__traceback__):
        print("frame", frame.filename)
    print("default handler", signal.getsignal(signal.SIGINT) is signal.default_int_handler)
client.close()
print("closed")
"""


def held(client: Client, kind: str) -> int:
    """What the interrupted call holds in the daemon: files for a file session and
    trace_pipe, streams for dmesg -w, waiters for WaitFailpoint."""
    if kind == "wait_failpoint":
        return next(site.waiters for site in client.list_failpoints()
                    if site.name == QUIET_SITE)
    stats = client.stats()
    return stats.streams if kind == "dmesg_follow" else stats.open_files


def check_interrupted_in_the_client(program: subprocess.Popen, out: bytes,
                                    err: bytes) -> None:
    """The program of ``_INTERRUPTED`` got KeyboardInterrupt without a frame of grpc's in
    its traceback, SIGINT raised it again afterwards, and the client closed."""
    lines = out.decode().splitlines()
    frames = [line.split(" ", 1)[1] for line in lines if line.startswith("frame ")]
    assert (program.returncode, err) == (0, b""), lines
    assert frames, lines
    assert not [name for name in frames if f"{os.sep}grpc{os.sep}" in name], frames
    assert lines[-2:] == ["default handler True", "closed"], lines


@pytest.mark.parametrize("kind", ["session", "trace_pipe", "dmesg_follow",
                                  "wait_failpoint"])
def test_ctrl_c_cancels_the_call_then_raises_from_the_client(daemon, kind):
    """The KeyboardInterrupt comes out of the client library, its traceback without a
    frame of grpc's; afterwards SIGINT raises it again, the channel closes, and the
    daemon has let go of the call's file or stream, or no longer waits for the failpoint.
    A unary call too: a blocking one took KeyboardInterrupt inside grpc's code."""
    with daemon.connect() as client:
        program = subprocess.Popen(
            [sys.executable, "-c", _INTERRUPTED, daemon.address, kind], cwd=REPO,
            env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            shown = Reader(program)
            shown.until(b"ready\n")
            wait_until(lambda: held(client, kind) == 1, DEADLINE)
            program.send_signal(signal.SIGINT)
            out, err = program.communicate(timeout=DEADLINE)
        finally:
            program.kill()
        wait_until(lambda: held(client, kind) == 0, DEADLINE)
    check_interrupted_in_the_client(program, shown.data + out, err)


@pytest.mark.parametrize("where", ["enter", "exit", "wait"])
def test_sigint_where_grpc_holds_its_locks_wrong_cancels_all_the_same(daemon, where):
    """SIGINT at the very points of grpc's wait where KeyboardInterrupt leaves the
    channel's lock held (which hung: cancel() waited for the call's lock, held by the
    thread sending requests, itself waiting for the channel's) or the call's released
    (which failed with RuntimeError): the call is cancelled, KeyboardInterrupt comes out
    of the client, the channel closes and the file is released."""
    with daemon.connect() as client:
        program = subprocess.Popen(
            [sys.executable, "-c", _INTERRUPTED, daemon.address, "session", where],
            cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = program.communicate(timeout=DEADLINE)
        finally:
            program.kill()
        wait_until(lambda: client.stats().open_files == 0, DEADLINE)
    check_interrupted_in_the_client(program, out, err)


def test_ctrl_c_in_cat_trace_pipe_dies_of_it_and_releases_the_file(daemon, tmp_path):
    """``ftrace-shell -c 'cat trace_pipe'`` and Ctrl-C, again and again: each time the
    shell dies of SIGINT within the deadline and the daemon releases trace_pipe."""
    with daemon.connect() as client:
        for _ in range(SHELL_ROUNDS):
            shell = start_shell(tmp_path, ["--address", daemon.address, "-c",
                                           f"cat {TRACING}/trace_pipe"])
            try:
                wait_until(lambda: client.stats().open_files == 1, DEADLINE)
                shell.send_signal(signal.SIGINT)
                out, err = shell.communicate(timeout=DEADLINE)
            finally:
                shell.kill()
            assert (shell.returncode, out, err) == (-signal.SIGINT, b"", b"")
            wait_until(lambda: client.stats().open_files == 0, DEADLINE)


def on_a_thread(call: Callable[[], object]) -> object:
    """``call()`` run on a thread of its own: its result, or what it raised."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as error:  # noqa: BLE001  (handed to the test)
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive(), "the call did not return"
    return outcome[0]


def test_calls_off_the_main_thread_leave_sigint_alone(daemon):
    """A thread other than the main one has no signal handlers to set: its file sessions
    and streams read as on the main thread, and SIGINT's handler stays as it was."""
    handler = signal.getsignal(signal.SIGINT)
    with daemon.connect() as client:

        def session() -> bytes:
            with client.open(f"{TRACING}/tracing_on") as opened:
                return opened.read()

        def stream() -> object:
            with client.trace_pipe(nonblock=True) as pipe:
                return b"".join(pipe)

        assert on_a_thread(session) == b"1\n"
        client.write_file(f"{TRACING}/current_tracer", "function")
        client.invoke("vfs_read", "sys_read", pid=4001, comm="threaded")
        assert b"threaded-4001" in on_a_thread(stream)  # type: ignore[operator]
        assert signal.getsignal(signal.SIGINT) is handler
        wait_until(lambda: client.stats().open_files == 0, DEADLINE)


def test_ctrl_c_in_a_call_waiting_for_ftrace_lock_raises_from_the_client(spawn):
    """CheckConsistency behind a filter write paused holding ftrace_lock: Ctrl-C ends the
    wait as it does a stream's, and the daemon answers the others once the writer goes."""
    daemon = spawn(SMALL)
    with daemon.connect() as client:
        with ftrace_lock_held(client) as writer:
            program = subprocess.Popen(
                [sys.executable, "-c", _INTERRUPTED, daemon.address, "check_consistency"],
                cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                shown = Reader(program)
                shown.until(b"ready\n")
                wait_until(lambda: client.stats().rpc_counts[CHECK_CONSISTENCY] == 1,
                           DEADLINE)
                program.send_signal(signal.SIGINT)
                out, err = program.communicate(timeout=DEADLINE)
            finally:
                program.kill()
        assert not writer.is_alive()
        assert client.check_consistency().ok
    check_interrupted_in_the_client(program, shown.data + out, err)


@pytest.mark.parametrize("session", ["file", "tracer"])
def test_cancelled_sessions_leave_no_thread_behind(daemon, session):
    """cancel() ends the request side too: gRPC's thread sending a session's requests
    would otherwise wait for the next one for good, one thread per Ctrl-C'd read."""
    with daemon.connect() as client:

        def cancelled() -> None:
            if session == "file":
                client.open(f"{TRACING}/trace_pipe").cancel()
            else:
                client.attach(filter=["vfs_read"]).cancel()

        before = set(threading.enumerate())
        for _ in range(CANCELLED_SESSIONS):
            cancelled()
        # Threads of this test's own only (the channel's spin thread ends when no call is
        # left): those of other tests in this process may come and go meanwhile. The
        # signaller's is one per process, not one per session. The tracer sessions'
        # readers are kept for the next session: as many as reads were still ending at
        # once (cancel() does not wait for its read), not one per session.
        wait_until(lambda: not {thread for thread in set(threading.enumerate()) - before
                                if thread.name not in (SIGNALLER_THREAD, ATTACH_READER_THREAD)},
                   DEADLINE)
        assert len([thread for thread in set(threading.enumerate()) - before
                    if thread.name == ATTACH_READER_THREAD]) < CANCELLED_SESSIONS // 2


#: A program whose sessions end with their ``with`` block raising (as a Ctrl-C'd read
#: does) while gRPC's thread consuming their requests is made to stay a while where it
#: holds the call's lock (``with state.condition`` after its loop, where the end of the
#: requests brings it): the threads are gone when the block is left, and the exit, with
#: the calls still referenced (their ``__del__`` takes that lock), does not hang. Should
#: it hang all the same, it prints every thread's stack and exits before the test's
#: deadline.
_CANCELLED = f"""
import faulthandler
faulthandler.dump_traceback_later({DEADLINE * 0.75}, exit=True)
HOLD = {CONSUMER_HOLD}
SESSIONS = {CANCELLED_SESSIONS}
""" + """
import inspect, sys, threading, time
import grpc._channel
from clients.api import Client

lines, first = inspect.getsourcelines(grpc._channel._consume_request_iterator)
after_loop = max(i for i, line in enumerate(lines) if "with state.condition:" in line)
held_line = first + after_loop + 1
consumers = []

def in_the_lock(frame, event, arg):
    if event == "line" and frame.f_lineno == held_line:
        time.sleep(HOLD)  # widens the window: the lock is held meanwhile
    return in_the_lock

def tracer(frame, event, arg):
    if frame.f_code.co_name != "consume_request_iterator":
        return None
    consumers.append(threading.current_thread())
    return in_the_lock

threading.settrace(tracer)
client = Client(sys.argv[1])
class Abandoned(Exception):
    pass

sessions = []
for _ in range(SESSIONS):
    try:
        with client.open("/sys/kernel/debug/tracing/trace_pipe") as session:
            sessions.append(session)
            raise Abandoned
    except Abandoned:
        pass
print("consumers", len(consumers), "alive", sum(t.is_alive() for t in consumers))
client.close()
print("closed", flush=True)
"""


def test_a_cancelled_session_ends_grpcs_sending_thread_and_the_exit_does_not_hang(daemon):
    program = subprocess.run([sys.executable, "-c", _CANCELLED, daemon.address], cwd=REPO,
                             env=child_env(), capture_output=True, timeout=DEADLINE)
    assert (program.returncode, program.stderr) == (0, b""), program.stderr.decode()
    assert program.stdout.decode().splitlines() == [
        f"consumers {CANCELLED_SESSIONS} alive 0", "closed"]


#: A program whose call is interrupted as it starts: SIGINT is raised (by a trace
#: function) at one of the points of gRPC's start of a call where KeyboardInterrupt did
#: harm (clients.interrupt): as cygrpc's ``_call`` leaves the channel's Condition
#: ("channel-lock": its ``__exit__`` had not released the lock, and the next call and
#: the channel's close() waited for good), as the thread consuming a session's requests
#: ("sending-thread") or the channel's spin thread ("spin-thread") has started (the call
#: was made and running, but never returned: the daemon kept its stream until the
#: channel closed). It then reports where KeyboardInterrupt came from, makes another
#: call, says "ready" and waits for a line, so the test sees what the daemon holds while
#: the channel is still open; then closes its client. Should it hang, it prints every
#: thread's stack and exits before the test's deadline.
_STARTING = f"""
import faulthandler
faulthandler.dump_traceback_later({DEADLINE * 0.75}, exit=True)
QUIET_SITE = {QUIET_SITE!r}
""" + """
import signal, sys, threading, traceback
import grpc._channel
from clients.api import Client

POINTS = {
    "channel-lock": (threading.Condition.__exit__, "create", "call"),
    "sending-thread": (threading.Thread.start, "_consume_request_iterator", "return"),
    "spin-thread": (threading.Thread.start, "_run_channel_spin_thread", "return"),
}
function, caller_name, at = POINTS[sys.argv[3]]
armed = True

def tracer(frame, event, arg):
    global armed
    caller = frame.f_back
    if (armed and frame.f_code is function.__code__ and caller is not None
            and caller.f_code.co_name == caller_name
            and caller.f_code.co_filename == grpc._channel.__file__):
        if at == "call":
            armed = False
            signal.raise_signal(signal.SIGINT)
            return None
        return returning
    return None

def returning(frame, event, arg):
    global armed
    if armed and event == "return":
        armed = False
        signal.raise_signal(signal.SIGINT)
    return returning

TRACING = "/sys/kernel/debug/tracing"
client = Client(sys.argv[1])
START = {
    "session": lambda: client.open(TRACING + "/trace_pipe"),
    "trace_pipe": client.trace_pipe,
    "wait_failpoint": lambda: client.wait_failpoint(QUIET_SITE, timeout=None),
}
sys.settrace(tracer)
try:
    START[sys.argv[2]]()
except KeyboardInterrupt as interrupt:
    for frame in traceback.extract_tb(interrupt.__traceback__):
        print("frame", frame.filename)
finally:
    sys.settrace(None)
with client.open(TRACING + "/tracing_on") as session:
    print("next", session.read().decode().strip())
print("ready", flush=True)
sys.stdin.readline()
print("default handler", signal.getsignal(signal.SIGINT) is signal.default_int_handler)
client.close()
print("closed")
"""


def holds_nothing(client: Client) -> bool:
    """The daemon holds no file, stream or failpoint waiter (a client's)."""
    stats = client.stats()
    return (stats.open_files, stats.streams, held(client, "wait_failpoint")) == (0, 0, 0)


@pytest.mark.parametrize(("kind", "where"), [
    ("session", "channel-lock"), ("session", "sending-thread"), ("session", "spin-thread"),
    ("trace_pipe", "channel-lock"), ("trace_pipe", "spin-thread"),
    ("wait_failpoint", "channel-lock"),
])
def test_ctrl_c_as_a_call_starts_cancels_it_then_raises_from_the_client(daemon, kind, where):
    """SIGINT while gRPC starts a file session, a server stream or a long unary call: the
    call is made all the same and cancelled, KeyboardInterrupt comes out of the client,
    the daemon lets go of the call while the program goes on, the next call works and
    the channel closes."""
    with daemon.connect() as client:
        program = subprocess.Popen(
            [sys.executable, "-c", _STARTING, daemon.address, kind, where], cwd=REPO,
            env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        try:
            shown = Reader(program)
            shown.until(b"ready\n")
            wait_until(lambda: holds_nothing(client), DEADLINE)
            out, err = program.communicate(b"\n", timeout=DEADLINE)
        finally:
            program.kill()
    assert "next 1" in (shown.data + out).decode().splitlines()
    check_interrupted_in_the_client(program, shown.data + out, err)
