"""ftraced as a process: where it listens (an address in use is refused, never taken), its
one-line errors for bad options, how many clients it serves at once, and a --spawn daemon
that ends with its client however the client ends."""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import platform
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import clients.spawn
from clients.api import Client
from clients.connection import ADDRESS_FORMS
from clients.spawn import SpawnedDaemon
from kernel_daemon.__main__ import MALLOC_ARENAS
from tests.children import REPO, child_env
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)

#: A small kernel: a daemon that gets as far as booting boots quickly.
SMALL = ["--core-functions", "512"]
DEADLINE = 60.0
#: The daemon's log line once it serves: its pid, the address it serves and its shm.
SERVING = re.compile(r"ftraced\[(?P<pid>\d+)\]: serving (?P<address>\S+) .*, shm "
                     r"(?P<namespace>ftsim\.\d+\.\d+)\)$")


def start_daemon(*args: str, nofile: str = "", cwd: str | os.PathLike = REPO) -> subprocess.Popen:
    """ftraced with ``args``, in ``cwd``; ``nofile``: its RLIMIT_NOFILE as prlimit(1) takes
    it, soft:hard."""
    limit = ["prlimit", f"--nofile={nofile}"] if nofile else []
    return subprocess.Popen([*limit, sys.executable, "-m", "kernel_daemon", *SMALL, *args],
                            cwd=cwd, env=child_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def run_daemon(*args: str) -> subprocess.CompletedProcess:
    """A daemon expected to end by itself (it cannot serve): a daemon that serves instead
    fails the test at the deadline."""
    process = start_daemon(*args)
    try:
        _, err = process.communicate(timeout=DEADLINE)
    finally:
        kill(process)
    return subprocess.CompletedProcess(process.args, process.returncode, "", err)


def serving(process: subprocess.Popen) -> re.Match:
    """The daemon's "serving" line, read from its log as it comes."""
    assert process.stderr is not None
    log = []
    for line in process.stderr:
        if match := SERVING.search(line):
            return match
        log.append(line)
    # What it printed says why (a traceback, a fatal error's, a C library's abort).
    raise AssertionError(f"exited with status {process.wait()} before serving:\n"
                         + "".join(log))


def stop(process: subprocess.Popen) -> None:
    """SIGTERM; it must end cleanly and leave no shared memory."""
    process.terminate()
    process.communicate(timeout=DEADLINE)
    assert process.returncode == 0
    assert not glob.glob(f"/dev/shm/ftsim.{process.pid}.*")


def kill(process: subprocess.Popen) -> None:
    """After a test, whatever happened: SIGKILL, and remove what that leaves behind."""
    process.kill()
    process.communicate()
    for segment in glob.glob(f"/dev/shm/ftsim.{process.pid}.*"):
        with contextlib.suppress(FileNotFoundError):  # a boot on another worker reaped it
            os.unlink(segment)


def in_use(address: str) -> str:
    return f"ftraced: cannot listen on {address}: Address already in use\n"


# --- where it listens -------------------------------------------------------------------


def test_a_unix_socket_in_use_is_refused_and_its_daemon_keeps_it(daemon: SpawnedDaemon):
    second = run_daemon("--listen", daemon.address)
    assert (second.returncode, second.stderr) == (1, in_use(daemon.address))
    with Client(daemon.address, wait=DEADLINE) as client:
        assert client.connection.check_health()


def test_a_socket_another_server_answers_on_and_a_plain_file_are_left_alone(tmp_path):
    path = tmp_path / "other.sock"
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(str(path))
        other.listen()
        before = os.stat(path).st_ino
        second = run_daemon("--listen", f"unix:{path}")
        assert (second.returncode, second.stderr) == (1, in_use(f"unix:{path}"))
        assert os.stat(path).st_ino == before
    plain = tmp_path / "plain"
    plain.write_text("mine\n")
    refused = run_daemon("--listen", f"unix:{plain}")
    assert (refused.returncode, refused.stderr) == (
        1, f"ftraced: cannot listen on unix:{plain}: a regular file, not a socket\n")
    assert plain.read_text() == "mine\n"


def unlistenable(directory: Path) -> list[tuple[str, str]]:
    """Addresses in ``directory`` that no daemon could listen at, each with the words
    that say why: a socket's directory that does not exist, a regular file (``plain``,
    which the caller has made), a path through that file, a directory."""
    plain = directory / "plain"
    return [(f"unix:{directory}/missing/ftraced.sock", f"no directory {directory}/missing"),
            (f"unix:{plain}", "a regular file, not a socket"),
            (f"unix:{plain}/ftraced.sock", "Not a directory"),
            (f"unix:{directory}", "a directory, not a socket")]


def test_where_no_daemon_could_listen_it_says_what_the_clients_say(tmp_path):
    """A path no daemon could listen at (test_client_cli's cases): ftraced's reason is the
    clients' ``no ftraced can listen at ADDRESS: REASON``, and it leaves what is there."""
    plain = tmp_path / "plain"
    plain.write_text("mine\n")
    for address, reason in unlistenable(tmp_path):
        refused = run_daemon("--listen", address)
        assert (refused.returncode, refused.stderr) == (
            1, f"ftraced: cannot listen on {address}: {reason}\n"), address
    assert sorted(os.listdir(tmp_path)) == ["plain"] and plain.read_text() == "mine\n"


def test_a_stale_socket_is_replaced_and_everything_is_removed_at_the_end(tmp_path):
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as killed:
        killed.bind(str(path))  # what a server killed with SIGKILL leaves: nobody listens
    process = start_daemon("--listen", f"unix:{path}")
    try:
        assert serving(process)["address"] == f"unix:{path}"
        with Client(f"unix:{path}", wait=DEADLINE) as client:
            assert client.connection.check_health()
        stop(process)
    finally:
        kill(process)
    assert os.listdir(tmp_path) == []  # the socket and its lock file


def test_of_daemons_started_together_on_one_socket_one_serves(tmp_path):
    address = f"unix:{tmp_path / 'both.sock'}"
    processes = [start_daemon("--listen", address) for _ in range(2)]
    try:
        # The daemon's first line: "serving", or that it cannot listen.
        refused = [process.stderr.readline() == in_use(address)  # type: ignore[union-attr]
                   for process in processes]
        assert sorted(refused) == [False, True]
        winner, loser = processes[refused.index(False)], processes[refused.index(True)]
        assert loser.wait(DEADLINE) == 1
        with Client(address, wait=DEADLINE) as client:
            assert client.connection.check_health()
        stop(winner)
    finally:
        for process in processes:
            kill(process)


def test_listen_takes_every_form_its_help_names(tmp_path):
    """``ftraced --help``'s forms of --listen, each serving (the relative ones are the
    absolute ones' shorthand, resolved by the same unix_socket_path())."""
    usage = subprocess.run([sys.executable, "-m", "kernel_daemon", "--help"], cwd=REPO,
                           env=child_env(), capture_output=True, text=True, check=True).stdout
    usage = " ".join(usage.split())
    for form in ("unix:PATH", "unix:///ABS/PATH", "a path beginning with /, ./ or ../",
                 "HOST:PORT", "[::1]:50051", "port 0: a free port"):
        assert form in usage, form
    forms = [str(tmp_path / "bare.sock"), f"unix://{tmp_path / 'uri.sock'}",
             f"unix:{tmp_path / 'plain.sock'}", "localhost:0"]
    if socket.has_ipv6 and os.path.exists("/proc/net/if_inet6"):
        forms.append("[::1]:0")
    # A relative path is the daemon's cwd's: the client, elsewhere, names it absolute.
    relative = {"./rel.sock": tmp_path / "rel.sock",
                f"../{tmp_path.name}/up.sock": tmp_path / "up.sock"}
    for form in [*forms, *relative]:
        process = start_daemon("--listen", form, cwd=tmp_path)
        try:
            address = serving(process)["address"]
            if not form.endswith(":0"):
                assert address == form
            if form in relative:
                address = f"unix:{relative[form]}"
            with Client(address, wait=DEADLINE) as client:
                assert client.connection.check_health()
            stop(process)
        finally:
            kill(process)


def test_a_tcp_port_in_use_is_refused_and_port_0_reports_the_port_bound():
    first = start_daemon("--listen", "127.0.0.1:0")
    try:
        address = serving(first)["address"]
        assert re.fullmatch(r"127\.0\.0\.1:\d+", address) and not address.endswith(":0")
        second = run_daemon("--listen", address)  # gRPC's SO_REUSEPORT would share it
        assert (second.returncode, second.stderr) == (1, in_use(address))
        with Client(address, wait=DEADLINE) as client:
            assert client.connection.check_health()
        stop(first)
    finally:
        kill(first)


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["--listen", "unix:/nonexistent-dir/x.sock"], 1,
         "ftraced: cannot listen on unix:/nonexistent-dir/x.sock: no directory /nonexistent-dir"),
        (["--listen", "unix:/proc/x.sock"], 1,
         "ftraced: cannot listen on unix:/proc/x.sock: No such file or directory"),
        (["--listen", "bogus"], 2,
         f"ftraced: error: --listen: expected {ADDRESS_FORMS}, not 'bogus'"),
        (["--listen", "127.0.0.1:99999"], 2,  # gRPC would listen on 99999 - 65536
         "ftraced: error: --listen: port 99999 out of range (0-65535) in address "
         "'127.0.0.1:99999'"),
        (["--log-level", "bogus"], 2,
         "ftraced: error: argument --log-level: invalid choice: 'BOGUS' (choose from 'DEBUG', "
         "'INFO', 'WARNING', 'ERROR', 'CRITICAL')"),
        (["--lifeline", "999"], 2, "ftraced: error: --lifeline 999: Bad file descriptor"),
        (["--max-connections", "0"], 2,
         "ftraced: error: --max-connections must be at least 1, not 0"),
        (["--stop-grace", "nan"], 2,
         "ftraced: error: --stop-grace must be a number of seconds, not nan"),
    ],
)
def test_bad_options_are_one_line_errors(args, status, message):
    done = run_daemon(*args)
    assert (done.returncode, done.stderr.splitlines()[-1]) == (status, message)
    assert "Traceback" not in done.stderr


# --- how many clients it serves ----------------------------------------------------------

#: A client process that holds one connection: it reads tracing_on at start and at each
#: line of its stdin, printing what it read, and ends at EOF.
HOLDER = """
import sys
from clients.api import Client
client = Client(sys.argv[1], wait=60)
print(client.read_file("/sys/kernel/debug/tracing/tracing_on").decode(), end="", flush=True)
for _ in sys.stdin:
    print(client.read_file("/sys/kernel/debug/tracing/tracing_on").decode(), end="", flush=True)
"""


def shell_reads_tracing_on(address: str, connect_timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clients.shell", "--address", address, "--connect-timeout",
         str(connect_timeout), "-c", "cat /sys/kernel/debug/tracing/tracing_on"],
        cwd=REPO, env=child_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=DEADLINE)


def test_past_max_connections_a_client_is_told_so_and_is_served_once_one_ends(spawn):
    """ftraced --max-connections 2: two client processes hold a connection each; a third
    is closed as it is accepted and says so, rather than a timeout; the two go on, and
    once one of them ends the next client is served."""
    address = spawn(["--max-connections", "2", *SMALL]).address
    holders = [subprocess.Popen([sys.executable, "-c", HOLDER, address], cwd=REPO,
                                env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True) for _ in range(2)]
    try:
        assert [holder.stdout.readline() for holder in holders] == ["1\n", "1\n"]
        refused = shell_reads_tracing_on(address, 1)
        assert (refused.returncode, refused.stdout, refused.stderr) == (2, "", (
            f"ftrace-shell: no ftraced answers at {address} (Connection reset by peer): it "
            "closed every connection as it accepted it, as ftraced does past its "
            "--max-connections\n"))
        holders[0].stdin.write("again\n")
        holders[0].stdin.flush()
        assert holders[0].stdout.readline() == "1\n"
        holders[1].stdin.close()
        assert holders[1].wait(DEADLINE) == 0
        served = shell_reads_tracing_on(address, DEADLINE)
        assert (served.returncode, served.stdout, served.stderr) == (0, "1\n", "")
    finally:
        for holder in holders:
            holder.kill()
            with holder:  # closes its pipes, waits for it
                pass


def test_a_client_whose_connections_end_before_a_word_says_they_were_closed_too():
    """A connection closed as it is accepted meets the close in the client's write
    (EPIPE), its read (ECONNRESET), or, when the close came after the client's first
    bytes were read and before it read, in the end of file: gRPC then says only "Socket
    closed". The client says the same of each (it said "Connection timed out" of the
    last, 3 clients in 60 against ftraced past its --max-connections under load)."""
    with tempfile.TemporaryDirectory(prefix="ftsim-") as directory:
        address = f"unix:{directory}/closes.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(address[5:])
            listener.listen()

            def read_then_close() -> None:
                while True:
                    try:
                        accepted, _ = listener.accept()
                    except OSError:  # the listener closed: the test is over
                        return
                    with accepted:
                        accepted.settimeout(0.2)  # the client has sent all it sends first
                        with contextlib.suppress(OSError):
                            while accepted.recv(4096):
                                pass

            server = threading.Thread(target=read_then_close)
            server.start()
            try:
                refused = shell_reads_tracing_on(address, 1)
            finally:
                listener.shutdown(socket.SHUT_RDWR)
                listener.close()
                server.join()
    assert (refused.returncode, refused.stdout, refused.stderr) == (2, "", (
        f"ftrace-shell: no ftraced answers at {address} (Connection reset by peer): it "
        "closed every connection as it accepted it, as ftraced does past its "
        "--max-connections\n"))


def test_the_connections_served_leave_the_daemon_its_own_descriptors():
    """ftraced --max-connections 1000 under a hard RLIMIT_NOFILE of 300: it raises its soft
    limit to 300 and serves at most 300 - FILES_KEPT (256) = 44 connections, keeping the
    rest for its shared memory, its log and its lock."""
    process = start_daemon("--listen", "127.0.0.1:0", "--max-connections", "1000",
                           nofile="64:300")
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        assert first == (f"ftraced[{process.pid}]: serving at most 44 connections, not 1000: "
                         "the open-file limit (RLIMIT_NOFILE) is 300\n")
        serving(process)
        stop(process)
    finally:
        kill(process)


# --- how long a spawned daemon is waited for ----------------------------------------------


def test_a_spawned_daemon_slowed_by_a_busy_machine_is_waited_for_past_its_timeout(monkeypatch):
    """spawn_daemon's timeout is of the daemon's CPU, not the wall clock: a daemon that
    keeps using a little CPU, as on a machine with many more runnable processes than
    cores, and serves only after its timeout of the wall clock has passed, is waited for
    (it was given up on at the timeout, still starting: "ftraced not serving after 5s").
    The daemon is held stopped from its start until the timeout has passed, while its CPU
    reads as creeping up a millisecond a probe: how much CPU a real start takes does not
    decide the verdict."""
    timeout = 1.0
    popen = subprocess.Popen
    held: list[int] = []
    creeping = itertools.count(step=1e-3)

    def started_stopped(*args, **kwargs) -> subprocess.Popen:
        process = popen(*args, **kwargs)
        os.kill(process.pid, signal.SIGSTOP)
        held.append(process.pid)
        return process

    def cpu_creeping(pid: int) -> float:
        if held and time.monotonic() - began > timeout:
            os.kill(held.pop(), signal.SIGCONT)
        return next(creeping)

    monkeypatch.setattr(clients.spawn.subprocess, "Popen", started_stopped)
    monkeypatch.setattr(clients.spawn, "process_cpu_seconds", cpu_creeping)
    began = time.monotonic()
    try:
        with clients.spawn.spawn_daemon(SMALL, timeout=timeout) as spawned:
            waited = time.monotonic() - began
            with spawned.connect() as client:
                assert client.read_file("/sys/kernel/debug/tracing/tracing_on") == b"1\n"
    finally:
        for pid in held:  # a daemon given up on while held is stopped, and must go on
            os.kill(pid, signal.SIGCONT)
    assert waited > timeout, f"served in {waited:.1f} s, before it was let go"


def never_serving(daemon: SpawnedDaemon, connection: object, probe: float) -> bool:
    """A readiness probe that gets no answer, as from a daemon still starting: it lasts
    its time, or until the daemon dies (spawn's ``_serving`` without the server)."""
    try:
        daemon.process.wait(probe)
    except subprocess.TimeoutExpired:
        pass
    return False


@pytest.mark.parametrize("cpu, timeout, message", [
    (lambda: 0.0, 0.3, "ftraced not serving, and using no CPU for 0.3s"),
    (lambda: 31.0, 30, "ftraced not serving after 30s of CPU"),
    (itertools.count(step=1e-6).__next__, 0.01, "ftraced not serving after 0.2s"),
])
def test_a_spawned_daemon_that_blocks_or_spins_as_it_starts_is_given_up_on(monkeypatch, cpu,
                                                                           timeout, message):
    """A start that uses no CPU for the timeout (blocked), uses the timeout's CPU
    (looping) or keeps using a little (a thread woken now and then) is given up on, with
    the daemon's log, and the daemon stopped. The daemon is never seen serving: a real one
    would serve after half a second of a fast machine, before the 0.3 s case's CPU has stayed
    idle for its timeout."""
    monkeypatch.setattr(clients.spawn, "process_cpu_seconds", lambda pid: cpu())
    monkeypatch.setattr(clients.spawn, "_serving", never_serving)
    with pytest.raises(clients.spawn.SpawnError) as raised:
        clients.spawn.spawn_daemon(SMALL, timeout=timeout)
    assert str(raised.value).splitlines()[0] == message


# --- its memory ----------------------------------------------------------------------------

#: glibc's HEAP_MAX_SIZE on 64-bit: each arena but the main one lives in heaps of this size,
#: mapped at a multiple of it, the part in use read-write and the rest PROT_NONE.
GLIBC_HEAP_SIZE = 64 << 20


def glibc_heaps(pid: int) -> int:
    """How many heaps of glibc's arenas (the main one's aside) ``pid`` has mapped, from
    /proc/PID/smaps: an anonymous read-write mapping at a multiple of
    :data:`GLIBC_HEAP_SIZE` that reaches that size, alone or with the anonymous
    PROT_NONE mapping right after it, both MAP_NORESERVE (VmFlags ``nr``) as glibc's
    new_heap() maps them. Not ``nr``: another mapping that lands at such a multiple by
    chance, as numpy's OpenBLAS's 64 MiB buffer does in about one daemon in 32 (where
    mmap(2) puts it moves with the address-space randomisation)."""
    maps: list[tuple[int, int, str, bool]] = []  # start, end, perms, anonymous and nr
    with open(f"/proc/{pid}/smaps") as lines:
        for line in lines:
            fields = line.split()
            if not fields[0].endswith(":"):  # a mapping's first line, as /proc/PID/maps has it
                start, end = (int(bound, 16) for bound in fields[0].split("-"))
                perms, anonymous = fields[1], len(fields) == 5
            elif fields[0] == "VmFlags:":  # its last
                maps.append((start, end, perms, anonymous and "nr" in fields[1:]))
    heaps = 0
    for (start, end, perms, noreserve), after in zip(maps, maps[1:] + [None]):
        if noreserve and perms == "rw-p" and start % GLIBC_HEAP_SIZE == 0:
            if after is not None and after[0] == end and after[2] == "---p" and after[3]:
                end = after[1]
            heaps += end - start >= GLIBC_HEAP_SIZE
    return heaps


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc arenas")
def test_the_daemon_keeps_its_malloc_to_two_arenas(spawn, monkeypatch):
    """Eight clients calling at once keep gRPC's threads in the daemon allocating together:
    glibc would give them an arena each, up to 8 per core, each keeping what is freed in
    it; the daemon keeps to MALLOC_ARENAS (the main arena and one more, in one heap), as
    MALLOC_ARENA_MAX=2 would (kernel_daemon.__main__.limit_malloc_arenas)."""
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    spawned = spawn(SMALL)
    errors: list[BaseException] = []

    def reads() -> None:
        try:
            with Client(spawned.address, wait=DEADLINE) as client:
                for _ in range(50):
                    client.read_file("/sys/kernel/debug/tracing/tracing_on")
        except BaseException as error:
            errors.append(error)

    clients = [threading.Thread(target=reads) for _ in range(8)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(DEADLINE)
    assert not errors and not any(client.is_alive() for client in clients)
    assert glibc_heaps(spawned.pid) == MALLOC_ARENAS - 1


# --- how it stops ------------------------------------------------------------------------


def test_sigterm_stops_the_daemon_whichever_of_its_threads_the_kernel_hands_it_to():
    """kill(2) with the id of a thread other than the main one hands it that thread: the
    daemon must stop all the same (a main thread blocked on a lock never saw it)."""
    process = start_daemon("--listen", "127.0.0.1:0")
    try:
        serving(process)
        others = [int(tid) for tid in os.listdir(f"/proc/{process.pid}/task")
                  if int(tid) != process.pid]
        assert others
        os.kill(others[-1], signal.SIGTERM)
        process.communicate(timeout=DEADLINE)
        assert process.returncode == 0
        assert not glob.glob(f"/dev/shm/ftsim.{process.pid}.*")
    finally:
        kill(process)


# --- a --spawn daemon ends with its client ----------------------------------------------


#: SIGHUP's default action (the end) in the client, as at a terminal, even when the tests
#: run under ``nohup``: an ignored signal stays ignored across exec, and the client would
#: outlive the hangup a test sends it. Reset by env(1) in the child's exec, not by a
#: ``preexec_fn``, which makes subprocess fork(2) where it would vfork(2) and run Python in
#: the child before its exec: with a channel open in the test's process (idle or not),
#: gRPC's fork handlers restart its threads in the child, and the child's close_fds then
#: closes their epoll descriptor under them; the poller aborts ("epoll_wait error: Bad
#: file descriptor"), and the child dies of SIGABRT before it is the client.
HANGUP_DEFAULT = ["env", "--default-signal=HUP"]


def start_client(argv: list[str], **options: Any) -> subprocess.Popen:
    """``argv`` with SIGHUP at its default, its other ``subprocess.Popen`` options
    ``options``."""
    return subprocess.Popen([*HANGUP_DEFAULT, *argv], **options)


def test_a_client_started_beside_grpc_at_work_gets_to_its_exec(daemon: SpawnedDaemon):
    """The clients the tests start, started while the test's process has calls under way
    on another thread: each runs (a ``preexec_fn`` had some 7 in 100 of them die of
    SIGABRT before their exec, as the ftrace-shell of the test below once did)."""
    with Client(daemon.address, wait=DEADLINE) as client:
        done = threading.Event()

        def calls() -> None:
            while not done.is_set():
                client.stats()

        callers = [threading.Thread(target=calls) for _ in range(2)]
        for caller in callers:
            caller.start()
        statuses = []
        try:
            for _ in range(100):
                child = start_client(["true"], stdin=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
                _, err = child.communicate(timeout=DEADLINE)
                statuses.append((child.returncode, err))
        finally:
            done.set()
            for caller in callers:
                caller.join()
    assert [status for status in statuses if status != (0, b"")] == []


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP])
def test_a_spawned_daemon_ends_with_its_client_however_the_client_ends(tmp_path, signum):
    """ftrace-shell --spawn killed: its daemon shuts down as on SIGTERM, removing its
    shared memory, its socket and the socket's directory (which the client would have)."""
    shell = start_client(
        [sys.executable, "-m", "clients.shell", "--spawn", "--verbose", *SMALL,
         "-c", "echo ready; sleep 60"],
        cwd=tmp_path, env=child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    daemon_pid = None
    try:
        found = serving(shell)  # --verbose: the daemon's log is the shell's stderr
        daemon_pid, directory = int(found["pid"]), os.path.dirname(found["address"][5:])
        assert shell.stdout.readline() == "ready\n"  # type: ignore[union-attr]
        daemon_exit = os.pidfd_open(daemon_pid)
        try:
            shell.send_signal(signum)
            assert shell.wait(DEADLINE) == -signum
            ended, _, _ = select.select([daemon_exit], [], [], DEADLINE)
        finally:
            os.close(daemon_exit)
        assert ended, "the daemon outlived its client"
        daemon_pid = None
        assert not glob.glob(f"/dev/shm/{found['namespace']}.*")
        assert not os.path.exists(directory)
    finally:
        if daemon_pid is not None:  # it outlived the client: stop it, then read to the end
            os.kill(daemon_pid, signal.SIGTERM)
        shell.kill()
        shell.communicate(timeout=DEADLINE)


def test_a_stop_interrupted_while_it_waits_reaps_the_daemon_before_going_on(monkeypatch):
    """A Ctrl-C (or a SIGTERM made KeyboardInterrupt: ftrace-stress's reproducer search)
    landing while SpawnedDaemon.stop() waits for the daemon's exit: the daemon is
    SIGKILLed and reaped, then the interrupt goes on. It went on at once, the daemon left
    to outlive its stopper."""
    spawned = clients.spawn.spawn_daemon(SMALL)
    wait = spawned.process.wait
    waits: list[float | None] = []

    def interrupted_wait(timeout: float | None = None) -> int:
        waits.append(timeout)
        if len(waits) == 1:
            raise KeyboardInterrupt
        return wait(timeout)

    monkeypatch.setattr(spawned.process, "wait", interrupted_wait)
    with pytest.raises(KeyboardInterrupt):
        spawned.stop()
    assert len(waits) == 2 and spawned.stop() == -signal.SIGKILL
    assert not os.path.exists(f"/proc/{spawned.pid}")
    assert not os.path.exists(spawned.directory)
