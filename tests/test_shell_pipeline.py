"""ftrace-shell's pipelines as bash's: every command runs at once, each in a process of
its own joined by pipe(2)s, so ``cat trace_pipe | grep x`` shows each match as the event
comes, a writer whose reader is gone dies of SIGPIPE, and Ctrl-C ends them all."""

from __future__ import annotations

import ctypes
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Callable

import pytest

import clients.shell
from clients.shell import Shell
from clients.shell_pipe import Stage
from clients.shell_runtime import BufferOutput, StandardInput
from tests.children import child_env
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.real_bash import GREP_ENVIRONMENT
from tests.test_shell_integration import TRACING, finish, run_shell, start_shell
from tests.test_shell_parser import assert_as_bash, run
from tests.test_tracer_client import DEADLINE

#: A 100,000-byte word: more than a pipe holds (16 pages), so its writer waits for grep.
HUNDRED_KB = "a=0123456789" + "; a=$a$a$a$a$a$a$a$a$a$a" * 4


@pytest.mark.parametrize("text", [
    # The loop runs until its echo writes into a pipe grep has left: SIGPIPE ends it.
    "while :; do echo y; done | grep -m2 y; echo $?",
    "for i in 1 2 3 4 5; do echo $i; done | grep -m1 .; echo $?",
    # grep waits for the rest: the writer's sleep, then its echo's SIGPIPE, go first.
    "{ echo a; sleep 0.1; echo b; } | grep -m1 a; echo $?",
    # More than a pipe holds goes through as the reader takes it.
    f"{HUNDRED_KB}; echo $a | grep -c 9; for i in 1 2 3; do echo $a; done | grep -c 0",
    # Each command is a subshell: its exit, assignments and break stay in it.
    "{ echo a; exit 3; echo b; } | grep -c .; echo $?",
    "x=1; x=2 | grep .; echo $x; echo a | grep a; for i in 1 2; do break | grep .; echo $i; done",
    # stderr into the pipe, a pipeline inside a pipeline's command, a status inverted.
    "{ echo out; nosuch; } 2>&1 | grep -c .",
    "{ echo a | grep a; echo b; } | grep -c .",
    "! echo a | grep b; echo $?",
    "echo a | grep -q a | grep b; echo $?",
])
def test_pipelines_as_bash_runs_them(text):
    assert_as_bash(text, GREP_ENVIRONMENT)


def test_grep_whose_output_is_dev_null_reads_a_pipe_to_its_end():
    """finalize_input(): grep stops at its first selected line when nothing is printed,
    then reads the rest of a standard input it cannot seek in (drain_input()): the writer
    of more than a pipe holds is not killed by SIGPIPE, and goes on after it."""
    assert_as_bash(f"{HUNDRED_KB}; {{ echo x; echo $a; echo written >&2; }} | grep x >/dev/null;"
                   " echo $?", GREP_ENVIRONMENT)


def test_a_refused_pipeline_runs_none_of_its_commands():
    assert run("echo a | grep a | head; echo $?") == (
        0, "1\n", "bash: line 1: head: ftrace-shell pipes only into grep "
                   "(grep -m N '' gives head -n N)\n")


def _held(client, what: str) -> int:
    """What the daemon holds for its clients: "open_files" or "streams"."""
    return getattr(client.stats(), what)


def _wait_held(client, what: str, count: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while _held(client, what) != count:
        assert time.monotonic() < deadline, f"{what} stayed {_held(client, what)}, not {count}"
        time.sleep(0.01)


@pytest.mark.parametrize("script", [False, True])
@pytest.mark.parametrize("command, what", [
    (f"cat {TRACING}/trace_pipe | grep -c x", "open_files"),
    ("dmesg -w | grep -c zzz", "streams"),
    (f"cat {TRACING}/trace_pipe", "open_files"),
])
def test_ctrl_c_ends_every_command_of_the_pipeline_and_its_calls(daemon, tmp_path, command,
                                                                  what, script):
    """SIGINT while the first command waits on the daemon (a file, a stream) and grep on
    the pipe: once the commands have ended, and the daemon has let go of what they held,
    the shell dies of SIGINT as bash does (a calling loop sees the signal; before, it
    exited 130 and the loop went on)."""
    text = f"{command}; echo never"
    with daemon.connect() as client:
        before = _held(client, what)
        shell = start_shell(tmp_path, ["--address", daemon.address]
                            + ([] if script else ["-c", text]), text if script else None)
        try:
            _wait_held(client, what, before + 1)
            shell.send_signal(signal.SIGINT)
            finish(shell)
        finally:
            shell.kill()
        assert (shell.returncode, shell.out, shell.err) == (-signal.SIGINT, "", "")
        _wait_held(client, what, before)


def test_sigpipe_ends_the_process_that_wrote_not_the_group_around_it():
    """3.6's pipe_write() sends SIGPIPE to current: the grep inside the group dies of it,
    and the group goes on to its next command."""
    assert_as_bash("{ echo first; sleep 0.5; echo a | grep a; echo after >&2; } | grep -m1 .",
                   GREP_ENVIRONMENT)


#: How long HeldStages holds a pipeline's stages: longer than the shell takes to end them,
#: shorter than the wait it gives them after Ctrl-C (DEADLINE in the tests below).
HOLD = 5.0


class HeldStages:
    """The threads of the pipeline stages the shell starts, each held after its last step
    of its own, and the one named ``start`` before its first, until :meth:`release` or
    HOLD has passed: a shell that waits for its stages' threads to end returns after the
    hold, one that waits for less returns with them still there. ``started(thread)`` is
    called after each has started."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, start: str = "",
                 started: Callable[[threading.Thread], None] = lambda thread: None) -> None:
        self.threads: list[threading.Thread] = []
        self._released = threading.Event()
        self._until = time.monotonic() + HOLD
        real_start = threading.Thread.start

        def start_held(thread: threading.Thread) -> None:
            if not thread.name.startswith("pipeline stage"):
                real_start(thread)
                return
            run = thread.run

            def held_run() -> None:
                if thread.name == start:
                    self._hold()
                try:
                    run()
                finally:
                    self._hold()

            thread.run = held_run  # type: ignore[method-assign]
            self.threads.append(thread)
            real_start(thread)
            started(thread)

        monkeypatch.setattr(threading.Thread, "start", start_held)

    def _hold(self) -> None:
        self._released.wait(max(self._until - time.monotonic(), 0))

    def release(self) -> list[threading.Thread]:
        """Let the held threads go on; the stage threads that had not ended (should be
        none)."""
        behind = [thread for thread in threading.enumerate()
                  if thread.name.startswith("pipeline stage")]
        self._released.set()
        return behind

    def assert_over(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Once the shell has returned from a two-stage pipeline: both stages' threads
        were started and neither is left. Releases them and undoes the patches."""
        behind = self.release()
        monkeypatch.undo()
        assert len(self.threads) == 2
        assert not behind


def test_a_pipeline_is_over_when_the_shell_goes_on(daemon, monkeypatch):
    """bash waits for every process of a pipeline before its next command: each stage's
    thread has ended, not only done its command."""
    shell = Shell(daemon.connect(), stdout=BufferOutput(), stderr=BufferOutput())
    held = HeldStages(monkeypatch)
    try:
        shell.feed("echo a | grep -c a")
        held.assert_over(monkeypatch)
    finally:
        held.release()
        shell.client.close()
    assert (shell.status, shell.stdout.getvalue()) == (0, b"1\n")


def test_an_interrupted_interactive_pipeline_is_over_when_the_prompt_comes_back(daemon,
                                                                                 monkeypatch):
    """Ctrl-C at an interactive shell (KeyboardInterrupt in its main thread, which waits
    for the pipeline): by the time the shell takes the next line, every command of the
    pipeline has exited, its thread has ended and its stream is released; none reads on
    behind the prompt."""
    shell = Shell(daemon.connect(), mode="interactive", stdout=BufferOutput(),
                  stderr=BufferOutput())
    client = shell.client
    before = _held(client, "streams")

    main = threading.main_thread().ident
    assert main == threading.get_ident()  # SIGINT's handler runs here

    def interrupt_when_following() -> None:
        _wait_held(client, "streams", before + 1)
        signal.pthread_kill(main, signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_when_following)
    monkeypatch.setattr(clients.shell, "_REAP_SECONDS", DEADLINE)  # HOLD, and more
    held = HeldStages(monkeypatch)
    interrupter.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            shell.feed("dmesg -w | grep -c zzz")
        held.assert_over(monkeypatch)
        _wait_held(client, "streams", before)
    finally:
        held.release()
        interrupter.join()
        client.close()


# --- the shell's own standard input --------------------------------------------------------


def test_the_shells_read_ahead_goes_to_the_command_that_reads_standard_input():
    """What the shell read beyond its command's line is the command's first read (bash
    reads a pipe a byte at a time, so the command reads it from the pipe); what is left
    after the command is the shell's again."""
    read_end, write_end = os.pipe()
    os.write(write_end, b"cat\nfor cat\n")
    standard_input = StandardInput(read_end)
    try:
        lines = standard_input.lines()
        assert next(lines) == b"cat\n"
        assert standard_input.read(Stage()) == b"for cat\n"
        os.write(write_end, b"echo after\nno newline")
        os.close(write_end)
        assert list(lines) == [b"echo after\n", b"no newline"]
    finally:
        os.close(read_end)


@pytest.mark.parametrize("stdin", [b"cat\nfor cat\necho never\n", b"echo a; cat\nb\n",
                                   b"grep -c x | grep .\nx1\nx2\n",
                                   b"grep -m1 x\nx1\nx2\necho after\n"])
def test_commands_read_the_input_after_their_line_as_bashs(daemon, tmp_path, stdin):
    """Commands read from standard input: those reading it take what follows their line,
    the shell goes on after what they left, as bash's."""
    bash = subprocess.run(["/bin/bash"], input=stdin, capture_output=True, timeout=DEADLINE,
                          env=GREP_ENVIRONMENT)
    shell = run_shell(tmp_path, ["--address", daemon.address], stdin=stdin)
    assert (shell.returncode, shell.out, shell.err) == (
        bash.returncode, bash.stdout.decode(), bash.stderr.decode())


@pytest.mark.parametrize("own_daemon", [False, True], ids=["address", "spawn"])
def test_a_closed_standard_input_is_a_failed_read_not_the_shells_own_files(daemon, tmp_path,
                                                                           own_daemon):
    """Started with descriptor 0 closed (``<&-``), whose number the shell's socket to the
    daemon, or the pipe to a ``--spawn`` daemon, may then take (the two then waited on each
    other): a command reading standard input fails with EBADF, as cat's read(2) does under
    bash, and so does GNU cat's close(2) of it at the end."""
    where = ["--spawn", "--core-functions", "2000"] if own_daemon else ["--address",
                                                                          daemon.address]
    closed = subprocess.run(
        [sys.executable, "-c", "import os, sys; os.close(0); os.execv(sys.argv[1], sys.argv[1:])",
         sys.executable, "-m", "clients.shell", *where, "-c",
         "cat; echo $?; cat | grep x; echo $?"],
        cwd=tmp_path, env=child_env(), capture_output=True, timeout=DEADLINE)
    assert (closed.returncode, closed.stdout, closed.stderr) == (
        0, b"1\n1\n",
        b"cat: -: Bad file descriptor\ncat: closing standard input: Bad file descriptor\n" * 2)


#: The regular file given as standard input below: lines, the last without its newline.
_INPUT = b"a\nx1\nb\nx2\nc\nlast"


def _as_bash_with_input(daemon, tmp_path, args: list[str], stdin: bytes,
                        script: str | None = None) -> None:
    """``bash ARGS`` and ``ftrace-shell ARGS`` (``script`` written to script.sh in tmp_path
    first), each with a regular file holding ``stdin`` as its standard input: status,
    stdout and stderr byte for byte."""
    if script is not None:
        (tmp_path / "script.sh").write_text(script)
    (tmp_path / "input").write_bytes(stdin)
    with open(tmp_path / "input", "rb") as file:
        bash = subprocess.run(["bash", *args], executable="/bin/bash", stdin=file,
                              capture_output=True, timeout=DEADLINE, env=GREP_ENVIRONMENT,
                              cwd=tmp_path)
    with open(tmp_path / "input", "rb") as file:
        shell = subprocess.run(
            [sys.executable, "-m", "clients.shell", "--address", daemon.address, *args],
            stdin=file, capture_output=True, timeout=DEADLINE, env=child_env(), cwd=tmp_path)
    assert (shell.returncode, shell.stdout, shell.stderr) == (
        bash.returncode, bash.stdout, bash.stderr)


@pytest.mark.parametrize("command", [
    # -m NUM: the offset set back to just after the last selected line, whatever was read
    # past it (trailing context too), for the next reader.
    "{ grep -m1 x; echo $?; cat; }", "{ grep -m1 -A2 x; cat; }", "{ grep -m2 -c x; cat; }",
    "{ grep -m1 -v x; cat; }", "{ grep -m1 x >/dev/null; cat; }", "{ grep -m1 t; cat; }",
    "{ grep -m1 x - -; cat; }", "{ grep -m1 x | grep -n .; cat; }",
    # Stopped early otherwise (output to /dev/null): the offset at the end.
    "{ grep x >/dev/null; cat; }",
    # None of that with -l or -L (nor -q, which exits), nor after the end.
    "{ grep -l -m1 x; cat; }", "{ grep -L -m1 x; cat; }", "{ grep -q -m1 x; cat; }",
    "{ grep -m5 x; cat; }", "{ grep -m1 zz; cat; }",
])
def test_grep_m_gives_back_what_it_read_past_its_last_line_on_a_regular_file(daemon, tmp_path,
                                                                           command):
    """GNU grep on a standard input it can seek in leaves its offset as finalize_input()
    does (``ftrace-shell -c COMMAND < FILE``)."""
    _as_bash_with_input(daemon, tmp_path, ["-c", command], _INPUT)


@pytest.mark.parametrize("stdin", [b"grep -m1 x\nx1\nx2\necho after\n",
                                   b"echo a; grep -m1 -c x; echo b\nx1\nx2\necho after\n",
                                   b"cat\nfor cat\n"])
def test_commands_read_a_regular_file_after_their_line_as_bashs(daemon, tmp_path, stdin):
    """``ftrace-shell < FILE``: bash reads its commands from a file a buffer at a time and
    seeks back to the end of the line before running one; what grep -m gives back is the
    shell's next line."""
    _as_bash_with_input(daemon, tmp_path, [], stdin)


def test_a_script_s_commands_read_its_regular_file_standard_input(daemon, tmp_path):
    """``ftrace-shell SCRIPT < FILE``: the commands read the file from where the one
    before left it."""
    _as_bash_with_input(daemon, tmp_path, ["script.sh"], _INPUT,
                        script="grep -m1 x; grep -m1 x; cat\n")


@pytest.mark.parametrize("command", [
    "grep x", "grep -c x", "grep -Hc x", "grep -l x", "grep -L x", "grep -q x", "grep -s x",
    "grep x - -", "grep -n x >/dev/null", "grep -f -", "grep x | grep -c .",
])
def test_grep_names_a_closed_standard_input_as_gnu_grep(daemon, tmp_path, command):
    """``grep x <&-``: GNU grep's name for standard input in its messages is "(standard
    input)"; where it cannot be read at all (its fstat() fails), no count and no name is
    printed for it. -f - names it "-"."""
    close_then_run = ("import os, sys; os.close(0); os.execve(sys.argv[1], sys.argv[2:], "
                      "os.environ)")
    runs = [subprocess.run([sys.executable, "-c", close_then_run, *argv], capture_output=True,
                           timeout=DEADLINE, env=env, cwd=tmp_path)
            for argv, env in [(["/bin/bash", "bash", "-c", command], GREP_ENVIRONMENT),
                              ([sys.executable, sys.executable, "-m", "clients.shell",
                                "--address", daemon.address, "-c", command], child_env())]]
    bash, shell = ((done.returncode, done.stdout, done.stderr) for done in runs)
    assert shell == bash


#: Run what follows with the terminal it was given as standard input as its
#: controlling terminal (it leads a session of its own): a ^C typed there is SIGINT
#: to it, the terminal's foreground process group.
_WITH_TERMINAL = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
                  "os.execv(sys.argv[1], sys.argv[1:])")
_PROMPT = rb"root@ftrace-sim:/# "


class Terminal:
    """ftrace-shell at a terminal (a pty): what it shows, what is typed."""

    def __init__(self, tmp_path, args: list[str]) -> None:
        self.master, slave = os.openpty()
        try:
            # HOME: readline's history goes there; TERM: no terminal escapes.
            self.process = subprocess.Popen(
                [sys.executable, "-c", _WITH_TERMINAL, sys.executable, "-m", "clients.shell",
                 *args], stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                cwd=tmp_path, env=child_env(HOME=str(tmp_path), TERM="dumb"))
        finally:
            os.close(slave)
        self.shown = b""

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def until(self, pattern: bytes) -> None:
        """Read what the terminal shows until a match of ``pattern`` after what an earlier
        call matched; fail if the deadline passes first or the shell ends."""
        deadline = time.monotonic() + DEADLINE
        while (found := re.search(pattern, self.shown)) is None:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{pattern!r} not shown before the deadline: {self.shown!r}"
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # EIO: no process has the terminal open any more
                    data = b""
                assert data, f"the shell ended before showing {pattern!r}: {self.shown!r}"
                self.shown += data
        self.shown = self.shown[found.end():]

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        os.close(self.master)


@pytest.mark.parametrize("command", [
    "cat | grep -o yes", "grep yes | grep -o yes", f"cat 2>{TRACING}/trace_marker | grep -o yes",
    # A lone command runs in the shell's main thread, where Ctrl-C is KeyboardInterrupt.
    f"grep -o yes 2>{TRACING}/trace_marker",
])
def test_ctrl_c_ends_commands_reading_the_terminal_and_the_prompt_comes_back(daemon, tmp_path,
                                                                             command):
    """At an interactive prompt, the first command reads what is typed; Ctrl-C (SIGINT to
    the terminal's foreground process group) ends the pipeline, what it held is released,
    and the prompt comes back at once with $? 130, as bash's: no command reads on behind
    it, taking the next line typed."""
    terminal = Terminal(tmp_path, ["--address", daemon.address])
    try:
        with daemon.connect() as client:
            before = _held(client, "open_files")
            terminal.until(_PROMPT)
            terminal.type(command.encode() + b"\n")
            terminal.type(b"say yes\n")
            # grep -o's line (the line typed is echoed or not, as it comes before or after
            # readline gives the terminal back): the first command has read it.
            terminal.until(rb"\nyes\r\n")
            if "trace_marker" in command:
                _wait_held(client, "open_files", before + 1)
            terminal.type(b"\x03")
            terminal.until(rb"\^C\r\n" + _PROMPT)
            terminal.type(b"echo $?\n")
            terminal.until(rb"echo \$\?\r\n130\r\n" + _PROMPT)
            _wait_held(client, "open_files", before)
    finally:
        terminal.close()


@pytest.mark.parametrize("command", ["cat | grep -o yes", "grep -o yes"])
def test_a_sigint_another_thread_of_the_shell_takes_ends_the_command_all_the_same(daemon,
                                                                                 tmp_path,
                                                                                 command):
    """A process-directed SIGINT goes to any thread that does not block it (signal(7)),
    and CPython runs the handler in the main thread only once that thread runs bytecode
    again. Sent to one of the shell's other threads (gRPC's, a pipeline stage's), as the
    kernel may choose, it ends the command all the same and the prompt comes back with
    $? 130: the main thread's wait for the stages, or its poll of the terminal, does not
    outlast it (seen once in CI: ``^C`` and no prompt for 20 s)."""
    tgkill = getattr(ctypes.CDLL(None), "tgkill", None)  # glibc 2.30's wrapper
    if tgkill is None:
        pytest.skip("no tgkill() in this C library")
    terminal = Terminal(tmp_path, ["--address", daemon.address])
    try:
        terminal.until(_PROMPT)
        terminal.type(command.encode() + b"\n")
        terminal.type(b"say yes\n")
        terminal.until(rb"\nyes\r\n")
        pid = terminal.process.pid
        other = min(int(task) for task in os.listdir(f"/proc/{pid}/task") if int(task) != pid)
        assert tgkill(pid, other, signal.SIGINT) == 0, f"tgkill({pid}, {other}) failed"
        terminal.until(_PROMPT)
        terminal.type(b"echo $?\n")
        terminal.until(rb"echo \$\?\r\n130\r\n" + _PROMPT)
    finally:
        terminal.close()


def test_ctrl_c_while_the_pipeline_starts_waits_for_every_stage_started(daemon, monkeypatch):
    """Ctrl-C that comes while a stage's thread starts (a busy machine: the first stage's
    call under way before the next thread has run) is taken once every stage has started,
    so each is waited for. Raised inside that Thread.start(), it left the stage running,
    not counted as started, behind the prompt. The second stage is held from running
    (HeldStages): a shell that waits for it sees it end after the hold, one that does not
    returns with it still held."""
    shell = Shell(daemon.connect(), mode="interactive", stdout=BufferOutput(),
                  stderr=BufferOutput())
    main = threading.main_thread().ident
    assert main == threading.get_ident()  # SIGINT's handler runs here

    def ctrl_c_at_the_second(thread: threading.Thread) -> None:
        if thread.name == "pipeline stage 1":
            signal.pthread_kill(main, signal.SIGINT)  # taken before Thread.start() returns

    monkeypatch.setattr(clients.shell, "_REAP_SECONDS", DEADLINE)  # HOLD, and more
    held = HeldStages(monkeypatch, start="pipeline stage 1", started=ctrl_c_at_the_second)
    try:
        with pytest.raises(KeyboardInterrupt):
            shell.feed("dmesg -w | grep -c zzz")
        held.assert_over(monkeypatch)
    finally:
        held.release()
        shell.client.close()
