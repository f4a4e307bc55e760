"""What every client says when it cannot reach the daemon, as a process: one diagnostic
(``clients.cli.no_daemon_text``) and one exit status (``EXIT_NO_DAEMON``), after waiting
``--connect-timeout`` for a daemon still starting, at once where none could ever listen;
a malformed address is a usage error at once, checked by ftraced's own check. A daemon
killed while a client waits on it is told at once (``clients.cli.gone_text``)."""

from __future__ import annotations

import contextlib
import errno
import glob
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

import clients.connection as connection_module
from clients.api import Client
from clients.cli import no_daemon_text
from clients.connection import ADDRESS_FORMS
from clients.errors import FtraceError
from clients.spawn import spawn_daemon
from tests.children import REPO, child_env
from tests.paused_writer import AFTER_DISABLE
from tests.test_daemon_process import kill, serving, start_daemon, stop, unlistenable
from tests.test_race_interleavings import ShellProcess
from tests.test_tracer_client import SMALL, TRACING, Lines, wait_until

#: Far longer than any test here takes: a client that waited for it fails the test.
LONG_TIMEOUT = "60"
DEADLINE = 45.0
SPAWN_HINT = ", or use --spawn"
#: (module, program, the words after the address, its other way to a daemon)
CLIENTS = [("clients.shell", "ftrace-shell", ["-c", "true"], SPAWN_HINT),
           ("clients.tracer", "ftrace-tracer", [], SPAWN_HINT),
           ("clients.workload", "ftrace-workload", [], SPAWN_HINT),
           ("clients.modload", "ftrace-modload", [], SPAWN_HINT),
           ("clients.inspect", "ftrace-inspect", ["summary"], "")]
#: ftrace-stress takes no $FTRACED_ADDRESS: without --address it starts its own daemon.
STRESS = ("clients.stress", "ftrace-stress", ["--duration", "1"], "")


def start(module: str, args: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO,
                            env=child_env(**env), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def unreachable(prog: str, address: str, reason: str, hint: str) -> str:
    return (f"{prog}: no ftraced answers at {address} ({reason}); start one with "
            f"`ftraced`{hint}\n")


def reaped(runs: list[tuple[subprocess.Popen, str, str]]
           ) -> Iterator[tuple[subprocess.Popen, str, str]]:
    """Each run in turn; when the caller stops early (a failed assertion), the runs not
    yet looked at are killed rather than left waiting out their minute."""
    try:
        yield from runs
    finally:
        for process, _, _ in runs:
            if process.poll() is None:
                process.kill()
                process.communicate()


def runs_for(address: str, timeout: str, out) -> list[tuple[subprocess.Popen, str, str]]:
    """Every client started at ``address`` (``$FTRACED_ADDRESS``'s, ftrace-stress's
    ``--address``, with ``--out OUT``), all at once: (process, program, hint)."""
    runs = [(start(module, ["--connect-timeout", timeout, *words], FTRACED_ADDRESS=address),
             prog, hint) for module, prog, words, hint in CLIENTS]
    module, prog, words, hint = STRESS
    runs.append((start(module, ["--address", address, "--connect-timeout", timeout,
                                "--out", str(out), *words]), prog, hint))
    return runs


def test_no_daemon_answering_is_told_alike_by_every_client_after_the_timeout(tmp_path):
    """No socket there yet, and a port nobody listens on: what a daemon still starting
    looks like, so each client waits its --connect-timeout, then says the same."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))  # nobody listens on it, and nobody else takes it
        cases = [(f"unix:{tmp_path}/none.sock", "No such file or directory"),
                 (f"127.0.0.1:{bound.getsockname()[1]}", "Connection refused")]
        for address, reason in cases:
            started = time.monotonic()
            for process, prog, hint in reaped(runs_for(address, "0.5", tmp_path / "out")):
                out, err = process.communicate(timeout=DEADLINE)
                assert (process.returncode, out, err) == (
                    2, "", unreachable(prog, address, reason, hint)), prog
            assert time.monotonic() - started >= 0.5


def test_where_no_daemon_could_listen_every_client_says_so_at_once(tmp_path):
    """A socket's directory that does not exist, a file that is no socket: no daemon
    could listen there (ftraced cannot bind either), so nobody waits the minute, and
    the words say what is wrong there, with no advice to start a daemon."""
    (tmp_path / "plain").write_text("")
    for address, reason in unlistenable(tmp_path):
        for process, prog, _ in reaped(runs_for(address, LONG_TIMEOUT, tmp_path / "out")):
            out, err = process.communicate(timeout=DEADLINE)
            assert (process.returncode, out, err) == (
                2, "", f"{prog}: no ftraced can listen at {address}: {reason}\n"), prog


#: A listener that never accepts, in a process of its own (ftraced while it boots its
#: kernel: it listens first): says so once it listens, and ends with its standard input.
MUTE_LISTENER = """
import socket, sys
with socket.socket(socket.AF_UNIX) as mute:
    mute.bind(sys.argv[1])
    mute.listen()
    print("listening", flush=True)
    sys.stdin.read()
"""


def comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as file:
        return file.read().rstrip("\n")


def test_a_stopped_daemon_is_told_stopped_by_every_client(tmp_path):
    """A daemon stopped with SIGSTOP: its socket takes connections (the kernel queues
    them) and nothing answers. The listener's pid comes with the connection and its
    state says stopped, so each client says that, with no advice to start one (it would
    find the address in use) nor to wait longer."""
    address = f"unix:{tmp_path}/ftraced.sock"
    daemon = start_daemon("--listen", address)
    try:
        serving(daemon)
        os.kill(daemon.pid, signal.SIGSTOP)
        _, status = os.waitpid(daemon.pid, os.WUNTRACED)  # returns once it is stopped
        assert os.WIFSTOPPED(status)
        for process, prog, _ in reaped(runs_for(address, "0.5", tmp_path / "out")):
            out, err = process.communicate(timeout=DEADLINE)
            assert (process.returncode, out, err) == (
                2, "", f"{prog}: no ftraced answers at {address} (Connection timed out): it "
                       "takes connections and does not answer them: "
                       f"{comm(daemon.pid)}[{daemon.pid}] is stopped\n"), prog
        os.kill(daemon.pid, signal.SIGCONT)
        stop(daemon)
    finally:
        kill(daemon)


def test_a_listener_still_starting_is_told_as_such_by_every_client(tmp_path):
    """A socket whose listener runs and has not answered: what ftraced is while it
    boots its kernel (a big --core-functions, a busy machine). Not "stopped": each
    client names the listener and says that a longer --connect-timeout waits for it."""
    path = tmp_path / "booting.sock"
    address = f"unix:{path}"
    listener = subprocess.Popen([sys.executable, "-c", MUTE_LISTENER, str(path)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline() == "listening\n"
        for process, prog, _ in reaped(runs_for(address, "0.5", tmp_path / "out")):
            out, err = process.communicate(timeout=DEADLINE)
            assert (process.returncode, out, err) == (
                2, "", f"{prog}: no ftraced answers at {address} (Connection timed out): "
                       f"{comm(listener.pid)}[{listener.pid}] takes connections and has not "
                       "answered in the 0.5 s of --connect-timeout: still starting (booting "
                       "its kernel) or too busy; a longer --connect-timeout waits for it\n"
            ), prog
    finally:
        listener.kill()
        listener.communicate()


def test_a_tcp_listener_that_does_not_answer_is_told_both_ways():
    """A TCP port that takes connections and does not answer: no pid comes with the
    connection, so the words name both a daemon stopped and one still starting."""
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        address = f"127.0.0.1:{mute.getsockname()[1]}"
        with pytest.raises(FtraceError) as info:
            Client(address, wait=0.5)
    assert no_daemon_text(address, info.value, 0.5) == (
        f"no ftraced answers at {address} (Connection timed out): it takes connections and "
        "has not answered in the 0.5 s of --connect-timeout: stopped, or still starting "
        "(booting its kernel) or too busy, which a longer --connect-timeout waits for")


def test_a_connect_that_times_out_is_told_as_such():
    """A TCP port whose accept queue is full drops SYNs, as a firewall may: the connect
    itself times out, which is said as such, not as a socket that takes connections."""
    with socket.socket() as full, socket.socket() as queued:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        queued.connect(full.getsockname())  # the one connection a backlog of 0 holds
        address = f"127.0.0.1:{full.getsockname()[1]}"
        with pytest.raises(FtraceError) as info:
            Client(address, wait=0.5)
    assert (info.value.errno, info.value.syscall) == (errno.ETIMEDOUT, "connect")
    assert no_daemon_text(address, info.value, 0.5) == (
        f"no ftraced answers at {address} (Connection timed out)")


def test_a_wait_for_an_answer_ends_at_its_deadline(tmp_path, monkeypatch):
    """The wait's last second asks why nothing answers (a server that closes its
    connections, or one that holds them) within the wait: --connect-timeout 2 against a
    socket that never answers ended after 3 s, the diagnosis's second after it. Every
    health check the wait makes is given a timeout that ends by the wait's deadline:
    counted from the earliest moment it can have been computed (the previous check's
    return) it ends by the latest the deadline can be (the wait's length after its first
    connect), a bound no load can break, where a margin on how long the wait took can be
    overrun by a loaded machine."""
    real_stub = connection_module.health_pb2_grpc.HealthStub
    real_refusal = connection_module._refusal
    connects: list[float] = []
    returns: list[float] = []
    timeouts: list[float] = []

    def recording_refusal(*args, **kwargs):
        connects.append(time.monotonic())
        return real_refusal(*args, **kwargs)

    class RecordingHealth:
        def __init__(self, channel) -> None:
            self._stub = real_stub(channel)

        def Check(self, request, timeout=None, wait_for_ready=None):
            timeouts.append(timeout)
            try:
                return self._stub.Check(request, timeout=timeout,
                                        wait_for_ready=wait_for_ready)
            finally:
                returns.append(time.monotonic())

    monkeypatch.setattr(connection_module.health_pb2_grpc, "HealthStub", RecordingHealth)
    monkeypatch.setattr(connection_module, "_refusal", recording_refusal)
    wait = 2.0
    with socket.socket(socket.AF_UNIX) as mute:
        mute.bind(str(tmp_path / "mute.sock"))
        mute.listen()
        started = time.monotonic()
        with pytest.raises(FtraceError) as info:
            Client(f"unix:{tmp_path}/mute.sock", wait=wait)
        took = time.monotonic() - started
    assert info.value.errno == errno.ETIMEDOUT
    assert took >= wait
    assert timeouts and len(returns) == len(timeouts)
    deadline_at_latest = connects[0] + wait
    assert [(round(after - connects[0], 3), timeout)
            for after, timeout in zip([connects[0], *returns], timeouts)
            if after + timeout > deadline_at_latest] == []


def test_a_connect_timeout_of_0_is_one_attempt_that_can_succeed():
    """--connect-timeout 0, one attempt: it reached a daemon that answers (the attempt
    had no time at all: every client said the daemon did not answer)."""
    daemon = spawn_daemon(SMALL)
    try:
        for _ in range(3):
            with Client(daemon.address, wait=0) as client:
                assert client.stats().boot_id
        shell = start("clients.shell", ["--address", daemon.address, "--connect-timeout", "0",
                                        "-c", f"cat {TRACING}/tracing_on"])
        assert shell.communicate(timeout=DEADLINE) == ("1\n", "")
        assert shell.returncode == 0
    finally:
        daemon.stop()


def test_a_client_started_with_its_daemon_waits_for_it(tmp_path):
    """The README's ``ftraced & ftrace-shell`` pasted at once: the shell starts first and
    finds no socket (the daemon makes it after loading and binding), and waits."""
    address = f"unix:{tmp_path}/ftraced.sock"
    shell = start("clients.shell", ["--address", address, "--connect-timeout", LONG_TIMEOUT,
                                    "-c", "cat /sys/kernel/debug/tracing/tracing_on"])
    daemon = start_daemon("--listen", address)
    try:
        out, err = shell.communicate(timeout=DEADLINE + 15)
        assert (shell.returncode, out, err) == (0, "1\n", "")
        serving(daemon)
        stop(daemon)
    finally:
        kill(daemon)


def test_a_malformed_address_is_a_usage_error_at_once(tmp_path):
    """Checked as ``ftraced --listen`` checks it, before any wait: --address for every
    client, $FTRACED_ADDRESS for those that read it."""
    expected = f"expected {ADDRESS_FORMS}, not 'foo'"
    stress = (*STRESS[:2], ["--out", str(tmp_path / "out"), *STRESS[2]], "")
    runs = [(start(module, ["--address", "foo", "--connect-timeout", LONG_TIMEOUT, *words]),
             prog, f"argument --address: {expected}")
            for module, prog, words, _ in [*CLIENTS, stress]]
    runs += [(start(module, ["--connect-timeout", LONG_TIMEOUT, *words], FTRACED_ADDRESS="foo"),
              prog, f"FTRACED_ADDRESS: {expected}") for module, prog, words, _ in CLIENTS]
    for process, prog, message in reaped(runs):
        out, err = process.communicate(timeout=DEADLINE)
        assert (process.returncode, out, err.splitlines()[-1]) == (
            2, "", f"{prog}: error: {message}"), prog
        assert err.startswith(f"usage: {prog} ")


def test_a_connect_timeout_no_wait_can_take_is_a_usage_error_at_once(tmp_path):
    """--connect-timeout, every client's: below 0, NaN (which compares false, so a wait
    for it would never end) or past the longest wait (inf overflowed the socket probe's
    timeout: a traceback) is refused before any connection is tried."""
    stress = (*STRESS[:2], ["--out", str(tmp_path / "out"), *STRESS[2]], "")
    runs = [(start(module, ["--address", "unix:/nonexistent/ftraced.sock",
                            f"--connect-timeout={timeout}", *words]), prog, timeout)
            for (module, prog, words, _), timeout in zip([*CLIENTS, stress],
                                                          itertools.cycle(("-1", "nan", "inf")))]
    for process, prog, _ in reaped(runs):
        out, err = process.communicate(timeout=DEADLINE)
        assert (process.returncode, out, err.splitlines()[-1]) == (
            2, "", f"{prog}: error: argument --connect-timeout: must be at least 0 and at "
                   "most 9223372036"), prog


def test_daemon_options_ftraced_refuses_are_a_usage_error_before_any_daemon_starts():
    """ftrace-shell's daemon options (before its script) and ftrace-tracer's (after
    --spawn) are checked by the same code, as ftraced would check them."""
    runs = [("clients.shell", ["--spawn", "--core-functions", "1", "-c", "true"]),
            ("clients.tracer", ["-f", "x", "--spawn", "--core-functions", "1"])]
    for module, args in runs:
        process = start(module, args)
        out, err = process.communicate(timeout=DEADLINE)
        assert process.returncode == 2 and out == "", (module, err)
        assert err.splitlines()[-1].endswith(
            "--spawn: error: core-functions must be 453..2000000, not 1"), (module, err)


# --- a daemon that goes away in the middle of a client's wait --------------------------

#: What holds ftrace_lock for the waits that need it: a filter write paused at the
#: failpoint, by a process of its own (it fails with the daemon, as the client does).
LOCK_HOLDER = f"echo vfs_read > {TRACING}/set_ftrace_filter"


def in_call(method: str) -> Callable[[Client, Lines], bool]:
    """The client's ``method`` reached the daemon (and waits there)."""
    return lambda client, _: client.stats().rpc_counts[method] > 0


def said(text: str) -> Callable[[Client, Lines], bool]:
    """The client said ``text`` on stderr: it is in the wait that follows the line."""
    return lambda _, stderr: bool(stderr.wait_for(text))


def file_open(client: Client, _: Lines) -> bool:
    """The client's cat has trace_pipe open (and blocks in its read)."""
    return client.stats().open_files > 0


#: How a client says the daemon went away, after its own words (the address filled in).
GONE = "ftraced at {} went away (Connection refused)"

#: (what, the client's arguments after --address, whether ftrace_lock is held, when it
#: waits, its exit status, its last line on stderr)
WAITS = [
    ("inspect failpoints wait", ["clients.inspect", "failpoints", "wait", AFTER_DISABLE],
     False, in_call("/ftrace.v1.Kernel/WaitFailpoint"), 2, "ftrace-inspect: " + GONE),
    ("inspect ops", ["clients.inspect", "ops"], True, said("waiting for ftrace_lock"), 2,
     "ftrace-inspect: " + GONE),
    ("inspect check --locked", ["clients.inspect", "check", "--locked"], True,
     said("waiting for ftrace_lock"), 2, "ftrace-inspect: " + GONE),
    ("tracer registering", ["clients.tracer", "-f", "vfs_*"], True,
     in_call("/ftrace.v1.Tracer/Attach"), 1, "ftrace-tracer: register: " + GONE),
    ("tracer tracing", ["clients.tracer", "--name", "mine", "-f", "vfs_*"], False,
     said("ops mine registered"), 1, "ftrace-tracer: mine: " + GONE),
    ("shell dmesg -w", ["clients.shell", "-c", "echo following >&2; dmesg -w"], False,
     said("following"), 1, "dmesg: " + GONE),
    # A file's error is bash's (the command, the file), with the daemon gone where the
    # errno would read as the kernel's (the refusal's); the status the command's own for
    # an error: the pipeline's grep's (it read no line), grep's trouble.
    ("shell trace_pipe | grep", ["clients.shell", "-c", f"cat {TRACING}/trace_pipe | grep x"],
     False, file_open, 1, f"cat: {TRACING}/trace_pipe: " + GONE),
    ("shell cat trace_pipe", ["clients.shell", "-c", f"cat {TRACING}/trace_pipe"],
     False, file_open, 1, f"cat: {TRACING}/trace_pipe: " + GONE),
    ("shell grep trace_pipe", ["clients.shell", "-c", f"grep x {TRACING}/trace_pipe"],
     False, file_open, 2, f"grep: {TRACING}/trace_pipe: " + GONE),
    # The write waits for ftrace_lock (the holder's file is the other one open).
    ("shell echo > current_tracer", ["clients.shell", "-c",
                                     f"echo function > {TRACING}/current_tracer"],
     True, lambda client, _: client.stats().open_files > 1, 1,
     "bash: line 1: echo: write error: " + GONE),
]


@pytest.mark.parametrize("what, argv, lock, waiting, status, last", WAITS,
                         ids=[case[0] for case in WAITS])
def test_a_daemon_killed_during_a_wait_is_told_at_once_in_one_line(
        what, argv, lock, waiting, status, last):
    """SIGKILL leaves the socket behind, refusing, as a daemon about to listen would;
    but this one had answered, so the client says at once that it went away, and exits
    with its status for an error, not, after its --connect-timeout, that no daemon
    answers (and to start one)."""
    daemon = spawn_daemon(SMALL)
    holder = None
    try:
        with daemon.connect() as client:
            if lock:
                client.set_failpoint(AFTER_DISABLE, "1*pause")
                holder = ShellProcess(daemon.address, LOCK_HOLDER)
                client.wait_failpoint(AFTER_DISABLE, timeout=DEADLINE)
            module, *words = argv
            waiter = start(module, ["--address", daemon.address, "--connect-timeout",
                                    LONG_TIMEOUT, *words])
            stderr = Lines(waiter.stderr)
            wait_until(lambda: waiting(client, stderr))
        os.kill(daemon.pid, signal.SIGKILL)
        killed = time.monotonic()
        _, err = waiter.communicate(timeout=DEADLINE)
        took = time.monotonic() - killed
    finally:
        daemon.stop()
        if holder is not None:
            holder.proc.kill()
            holder.proc.communicate()
        for segment in glob.glob(f"/dev/shm/ftsim.{daemon.pid}.*"):
            with contextlib.suppress(FileNotFoundError):  # another's reaping got there first
                os.unlink(segment)
    assert took < float(LONG_TIMEOUT) / 4, f"{what}: {took:.1f} s"
    assert (waiter.returncode, stderr.rest(err.encode()).splitlines()[-1]) == (
        status, last.format(daemon.address)), what
