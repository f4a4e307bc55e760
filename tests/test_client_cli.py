"""What every client says when it cannot reach the daemon, as a process: one diagnostic
(``clients.cli.no_daemon_text``) and one exit status (``EXIT_NO_DAEMON``), after waiting
``--connect-timeout`` for a daemon still starting, at once where none could ever listen;
a malformed address is a usage error at once, checked by ftraced's own check."""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

from tests.children import REPO, child_env
from tests.test_daemon_process import kill, serving, start_daemon, stop

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
    could listen there (ftraced cannot bind either), so nobody waits the minute."""
    plain = tmp_path / "plain"
    plain.write_text("")
    cases = [(f"unix:{tmp_path}/missing/ftraced.sock", "No such file or directory"),
             (f"unix:{plain}", "Connection refused")]
    for address, reason in cases:
        for process, prog, hint in reaped(runs_for(address, LONG_TIMEOUT, tmp_path / "out")):
            out, err = process.communicate(timeout=DEADLINE)
            assert (process.returncode, out, err) == (
                2, "", unreachable(prog, address, reason, hint)), prog


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
    expected = "expected unix:PATH or HOST:PORT, not 'foo'"
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
