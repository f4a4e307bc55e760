"""ftrace-shell's pipelines as bash's: every command runs at once, each in a process of
its own joined by pipe(2)s, so ``cat trace_pipe | grep x`` shows each match as the event
comes, a writer whose reader is gone dies of SIGPIPE, and Ctrl-C ends them all."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from clients.shell import Shell
from clients.shell_runtime import BufferOutput
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.test_shell_integration import TRACING, finish, start_shell
from tests.test_shell_parser import BASH_ENVIRONMENT, assert_as_bash, run
from tests.test_tracer_client import DEADLINE

#: Where bash finds grep and sleep to run them: GNU's, which ftrace-shell's are.
WITH_GREP = {**BASH_ENVIRONMENT, "PATH": "/usr/bin:/bin"}
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
    assert_as_bash(text, WITH_GREP)


def test_a_refused_pipeline_runs_none_of_its_commands():
    assert run("echo a | grep a | head; echo $?") == (
        0, "1\n", "bash: line 1: head: ftrace-shell pipes only into grep\n")


def _held(client, what: str) -> int:
    """What the daemon holds for its clients: "open_files" or "streams"."""
    return getattr(client.stats(), what)


def _wait_held(client, what: str, count: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while _held(client, what) != count:
        assert time.monotonic() < deadline, f"{what} stayed {_held(client, what)}, not {count}"
        time.sleep(0.01)


@pytest.mark.parametrize("command, what", [
    (f"cat {TRACING}/trace_pipe | grep -c x", "open_files"),
    ("dmesg -w | grep -c zzz", "streams"),
])
def test_ctrl_c_ends_every_command_of_the_pipeline_and_its_calls(daemon, tmp_path, command,
                                                                  what):
    """SIGINT while the first command waits on the daemon (a file, a stream) and grep on
    the pipe: the shell ends with status 130, as bash killed by it, once the commands
    have, and the daemon lets go of what they held."""
    with daemon.connect() as client:
        before = _held(client, what)
        shell = start_shell(tmp_path, ["--address", daemon.address, "-c",
                                       f"{command}; echo never"])
        try:
            _wait_held(client, what, before + 1)
            shell.send_signal(signal.SIGINT)
            finish(shell)
        finally:
            shell.kill()
        assert (shell.returncode, shell.out, shell.err) == (130, "", "")
        _wait_held(client, what, before)


def test_sigpipe_ends_the_process_that_wrote_not_the_group_around_it():
    """3.6's pipe_write() sends SIGPIPE to current: the grep inside the group dies of it,
    and the group goes on to its next command."""
    assert_as_bash("{ echo first; sleep 0.5; echo a | grep a; echo after >&2; } | grep -m1 .",
                   WITH_GREP)


def test_an_interrupted_interactive_pipeline_is_over_when_the_prompt_comes_back(daemon):
    """Ctrl-C at an interactive shell (KeyboardInterrupt in its main thread, which waits
    for the pipeline): by the time the shell takes the next line, every command of the
    pipeline has exited and its stream is released; none reads on behind the prompt."""
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
    interrupter.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            shell.feed("dmesg -w | grep -c zzz")
    finally:
        interrupter.join()
    try:
        assert not [t for t in threading.enumerate() if t.name.startswith("pipeline stage")]
        _wait_held(client, "streams", before)
    finally:
        client.close()
