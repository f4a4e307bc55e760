"""ftrace-shell's pipelines as bash's: every command runs at once, each in a process of
its own joined by pipe(2)s, so ``cat trace_pipe | grep x`` shows each match as the event
comes, a writer whose reader is gone dies of SIGPIPE, and Ctrl-C ends them all."""

from __future__ import annotations

import signal
import time

import pytest

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


def _open_files(client) -> int:
    return client.stats().open_files


def _wait_open_files(client, count: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while _open_files(client) != count:
        assert time.monotonic() < deadline, f"open files stayed {_open_files(client)}, not {count}"
        time.sleep(0.01)


def test_ctrl_c_ends_every_command_of_the_pipeline_and_releases_trace_pipe(daemon, tmp_path):
    """SIGINT while cat waits on trace_pipe and grep on the pipe: the shell ends with
    status 130, as bash killed by it, and the daemon releases the file."""
    with daemon.connect() as client:
        before = _open_files(client)
        shell = start_shell(tmp_path, ["--address", daemon.address, "-c",
                                       f"cat {TRACING}/trace_pipe | grep -c x; echo never"])
        try:
            _wait_open_files(client, before + 1)
            shell.send_signal(signal.SIGINT)
            finish(shell)
        finally:
            shell.kill()
        assert (shell.returncode, shell.out, shell.err) == (130, "", "")
        _wait_open_files(client, before)
