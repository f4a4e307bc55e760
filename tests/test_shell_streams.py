"""ftrace-shell's own standard output and error as bash's: a write into a pipe whose
reader went is the writer's SIGPIPE, whose default action ends it (the shell itself for a
builtin, a command's process for the others, whose status 141 the shell goes on with);
the caller sees the signal. Against a real ftraced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.children import child_env
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)

TRACING = "/sys/kernel/debug/tracing"


def run_with(daemon, command: str, fd: int, closed: bool,
             program: list[str] | None = None) -> tuple[int, bytes]:
    """``ftrace-shell -c COMMAND`` (``program -c COMMAND``: bash's, say) with ``fd`` (1 or
    2) closed (bash's ``>&-``), or else a pipe nobody reads, the other one captured: (its
    status as subprocess reports it, what the other one got). sh closes the descriptor
    and execs the shell: a preexec_fn would make subprocess fork() this process, whose
    gRPC threads' fork handlers can deadlock the child before it runs anything."""
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    closing = ["/bin/sh", "-c", f'exec "$0" "$@" {fd}>&-'] if closed else []
    write = None
    if not closed:
        read, write = os.pipe()
        os.close(read)  # no reader from the start: its first write gets EPIPE
        streams["stdout" if fd == 1 else "stderr"] = write
    program = program or [sys.executable, "-m", "clients.shell", "--address", daemon.address]
    shell = subprocess.Popen([*closing, *program, "-c", command], env=child_env(),
                             stdin=subprocess.DEVNULL, **streams)
    if write is not None:
        os.close(write)
    try:
        out, err = shell.communicate(timeout=60)
    finally:
        shell.kill()
    return shell.returncode, err if fd == 1 else out


@pytest.mark.parametrize("command, stream, other", [
    # A builtin's write: the shell dies at once (before, it said "write error: Broken
    # pipe" forever, or went on to exit 0).
    ("while :; do echo y; done", 1, b""),
    ("for i in 1 2 3; do echo y; done; echo after >&2", 1, b""),
    ("while :; do help; done", 1, b""),
    ("echo x >&2; echo after", 2, b""),
    # A command's own process dies of it; the shell goes on, and dies at its own write.
    (f"cat {TRACING}/README; echo rc=$? >&2; echo y; echo never >&2", 1, b"rc=141\n"),
    (f"grep -m1 . {TRACING}/README; echo rc=$? >&2; echo y; echo never >&2", 1,
     b"rc=141\n"),
    ("echo a | grep a; echo rc=$? >&2; echo y; echo never >&2", 1, b"rc=141\n"),
])
def test_a_write_without_reader_is_the_writers_sigpipe(daemon, command, stream, other):
    assert run_with(daemon, command, stream, closed=False) == (-signal.SIGPIPE, other)


@pytest.mark.parametrize("command, fd, expected", [
    # bash: a write to the closed descriptor fails (EBADF), the commands still run.
    ("echo hi; echo rc=$? >&2", 1,
     (0, b"bash: line 1: echo: write error: Bad file descriptor\nrc=1\n")),
    (f"cat {TRACING}/README; echo rc=$? >&2", 1,
     (0, b"cat: write error: Bad file descriptor\nrc=1\n")),
    ("echo x >&2; echo y; echo rc=$? >&2", 1,
     (0, b"x\nbash: line 1: echo: write error: Bad file descriptor\nrc=1\n")),
    ("nocmd; echo rc=$?", 2, (0, b"rc=127\n")),
    ("echo x >&2; echo rc=$?", 2, (0, b"rc=1\n")),
    ("ls /", 2, (0, b"proc\nsys\n")),
])
def test_a_closed_stdout_or_stderr_is_bashs_closed_descriptor(daemon, command, fd, expected):
    """Before, a traceback (Python's sys.stdout or sys.stderr was None) and nothing ran."""
    assert run_with(daemon, command, fd, closed=True) == expected


def test_grep_and_ls_write_errors_exit_2_as_gnus(daemon):
    """GNU grep's and ls's status for a failed write is 2 (cat's 1); both were 1."""
    text = (f"ls / >&-; echo $?; grep -m1 . {TRACING}/README >&-; echo $?; "
            f"cat {TRACING}/README >&-; echo $?")
    status, out = run_with(daemon, text, 2, closed=True)
    assert (status, out) == (0, b"2\n2\n1\n")


def test_ls_lists_files_then_directories_each_sorted_as_gnus(daemon):
    """GNU ls sorts its operands (it kept their order)."""
    text = (f"cd {TRACING}; ls current_tracer README per_cpu/cpu1 options/.. per_cpu/cpu0 "
            "nosuch")
    shell = subprocess.run([sys.executable, "-m", "clients.shell", "--address", daemon.address,
                            "-c", text], env=child_env(), capture_output=True, timeout=60)
    cpu0 = subprocess.run([sys.executable, "-m", "clients.shell", "--address", daemon.address,
                           "-c", f"ls {TRACING}/per_cpu/cpu0"], env=child_env(),
                          capture_output=True, timeout=60).stdout
    assert (shell.returncode, shell.stderr) == (
        2, b"ls: cannot access 'nosuch': No such file or directory\n")
    assert shell.stdout.startswith(b"README\ncurrent_tracer\n\noptions/..:\n")
    assert shell.stdout.endswith(b"\n\nper_cpu/cpu0:\n" + cpu0 + b"\nper_cpu/cpu1:\n" + cpu0)
