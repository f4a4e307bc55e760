"""ftrace-shell's grep reads a file as GNU grep 3.8 does, a read(2) at a time: each line is
printed once the read ending it returns, and reading stops where grep() stops (-m NUM's
last line and its trailing context; the first selected line with -q, -l, -L or output to
/dev/null), so a file that never ends (trace_pipe) is no different from one that does.

First against files served a read at a time (Ctrl-C too), then with a real ftraced:
``grep`` on trace_pipe shows events as they come; ``grep -m1`` returns at the first match,
later events left for the next reader.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import select
import subprocess
import time
from typing import Iterable, Iterator

import pytest

from clients.errors import FtraceError
from clients.shell import Shell
from clients.shell_runtime import COMMANDS, BufferOutput, Invocation, NullOutput, Output
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.test_shell_integration import TRACING, finish, start_shell
from tests.test_tracer_client import DEADLINE

#: More reads than any case below needs: a grep still reading then has not stopped.
READ_LIMIT = 50


class _Stream:
    """The daemon's side of one file, ``/stream``: ``reads`` returned in turn, then a read
    that raises ``end`` if it is given (a failed read, or Ctrl-C while it waits), else the
    end of the file. It counts the reads grep made and notes the file's release, and
    whether grep closed it before the end."""

    def __init__(self, reads: Iterable[bytes], end: BaseException | None = None) -> None:
        self._reads = iter(reads)
        self._end = end
        self.count = 0
        self.released = self.closed = False

    def open(self, path: str, flags: int) -> "_Stream":
        if path != "/stream":
            raise FtraceError(errno.ENOENT, syscall="open")
        return self

    def __enter__(self) -> "_Stream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.released = True

    def close(self) -> int:
        self.closed = True
        return 0

    def read_all(self) -> Iterator[bytes]:
        for data in self._reads:
            self.count += 1
            assert self.count <= READ_LIMIT, "grep read on past where GNU grep stops"
            yield data
        if self._end is not None:
            raise self._end


def endless() -> _Stream:
    """A file that never ends, as trace_pipe: read N returns "x N" and "other"."""
    return _Stream(b"x %d\nother\n" % number for number in itertools.count(1))


def grep(stream: _Stream, args: str, stdout: Output | None = None) -> tuple[int, bytes]:
    """``grep ARGS`` run over ``stream``: its status, and what it wrote to its standard
    output and error, in their order (unless ``stdout`` takes the output)."""
    written = BufferOutput()
    shell = Shell(stream, mode="command", stdout=written, stderr=written)  # type: ignore[arg-type]
    ctx = Invocation(shell, "grep", args.split(), None, stdout or written, written)
    return COMMANDS["grep"].run(ctx), written.getvalue()


@pytest.mark.parametrize("args, reads, expected", [
    # -m NUM: the read holding its last line, and the trailing context's.
    ("-m1 x stream", 1, (0, b"x 1\n")),
    ("-m2 -n x stream", 2, (0, b"1:x 1\n3:x 2\n")),
    ("-m2 -A1 x stream", 2, (0, b"x 1\nother\nx 2\nother\n")),
    ("-m2 -A2 x stream", 3, (0, b"x 1\nother\nx 2\nother\nx 3\n")),
    ("-m1 -c x stream", 1, (0, b"1\n")),
    ("-m1 -v x stream", 1, (0, b"other\n")),
    ("-m3 -o [0-9] stream", 3, (0, b"1\n2\n3\n")),
    # -q, -l, -L: the first selected line.
    ("-q x stream", 1, (0, b"")),
    ("-l x stream", 1, (0, b"stream\n")),
    ("-L x stream", 1, (0, b"")),
    ("-lv x stream", 1, (0, b"stream\n")),
])
def test_grep_stops_reading_a_file_that_never_ends_where_gnu_grep_stops(args, reads, expected):
    stream = endless()
    assert grep(stream, args) == expected
    assert (stream.count, stream.closed, stream.released) == (reads, True, True)


def test_output_to_dev_null_stops_at_the_first_selected_line():
    """main()'s dev_null_output: nothing is printed, so grep stops as -q does (and, with
    -c, counts no further)."""
    for args in ("x stream", "-c x stream"):
        stream = endless()
        assert grep(stream, args, NullOutput()) == (0, b"")
        assert (stream.count, stream.closed, stream.released) == (1, True, True)


def test_lines_cut_across_reads_are_matched_and_printed_whole():
    stream = _Stream([b"ab", b"c\nx", b"", b"\n\nab", b"c"])
    assert grep(stream, "-n -e abc -e ^$ stream") == (0, b"1:abc\n3:\n4:abc\n")
    assert (stream.count, stream.released) == (5, True)


def test_a_failed_read_ends_the_file_after_the_lines_before_it():
    """grep(): fillbuf()'s error is reported where it happens; the lines read before it
    were printed and count (-c, -l, -L report them), and the status is 2."""
    cases = [
        ("x stream", b"x 1\ngrep: stream: Input/output error\n"),
        ("-c x stream", b"grep: stream: Input/output error\n1\n"),
        ("-L zz stream", b"grep: stream: Input/output error\nstream\n"),
        ("-sc x stream", b"1\n"),
    ]
    for args, expected in cases:
        stream = _Stream([b"x 1\noth", b"er\nx 2"], FtraceError(errno.EIO, syscall="read"))
        assert grep(stream, args) == (2, expected)
        assert stream.released


def test_ctrl_c_while_grep_waits_for_a_read_ends_it_after_the_lines_shown():
    """SIGINT while a read waits (KeyboardInterrupt out of it) ends grep at once, as it
    ends cat: the shell then dies of SIGINT. The file is released without a
    close(2), which would wait behind the read the daemon still has."""
    stream = _Stream([b"x 1\nother\n"], KeyboardInterrupt())
    shown = BufferOutput()
    with pytest.raises(KeyboardInterrupt):
        grep(stream, "x stream", shown)
    assert (shown.getvalue(), stream.closed, stream.released) == (b"x 1\n", False, True)


# --- trace_pipe, with a real daemon -------------------------------------------------------


class Reader:
    """A running shell's standard output, read as it comes: what a terminal would show."""

    def __init__(self, shell: subprocess.Popen) -> None:
        self.shell = shell
        self.data = b""

    def until(self, pattern: bytes) -> None:
        """Read until the output holds a match of ``pattern``; fail if the deadline passes
        first, or the shell ends."""
        deadline = time.monotonic() + DEADLINE
        while not re.search(pattern, self.data):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{pattern!r} not shown before the deadline: {self.data!r}"
            ready, _, _ = select.select([self.shell.stdout], [], [], remaining)
            if ready:
                data = os.read(self.shell.stdout.fileno(), 65536)  # type: ignore[union-attr]
                assert data, f"the shell ended before showing {pattern!r}: {self.data!r}"
                self.data += data


def event(comm: str, pid: int, function: str = "vfs_read", parent: str = "sys_read") -> str:
    """A function event's trace_pipe line, as a regular expression."""
    return rf" *{comm}-{pid} +\[\d{{3}}\] \S{{4}} +\d+\.\d{{6}}: {function} <-{parent}"


def shown_as(lines: list[str], patterns: list[str]) -> bool:
    return len(lines) == len(patterns) and all(map(re.fullmatch, patterns, lines))


@pytest.mark.parametrize("command", [
    f"grep vfs_read {TRACING}/trace_pipe",
    f"cat {TRACING}/trace_pipe | grep vfs_read",
    f"grep vfs_read < {TRACING}/trace_pipe",
    f"while grep -m1 vfs_read; do :; done < {TRACING}/trace_pipe",
])
def test_grep_on_trace_pipe_shows_each_event_as_it_comes(daemon, tmp_path, command):
    """The first event's line is shown while grep still waits for more, grep reading the
    file, a pipe from cat (the pipeline's commands run at once), or the file as its
    standard input (``< trace_pipe``, also a loop's: each grep -m1 takes the next). Its
    reading ends as cat's does: at the end of the file, which trace_pipe has (3.6's
    tracing_wait_pipe()) once a reader has had entries and ``tracing_enabled`` is 0."""
    with daemon.connect() as client:
        client.write_file(f"{TRACING}/current_tracer", "function")
        shell = start_shell(tmp_path, ["--address", daemon.address, "-c",
                                       f"{command}; echo grep: $?"])
        try:
            shown = Reader(shell)
            client.invoke("vfs_write", "sys_write", pid=4000, comm="other")
            client.invoke("vfs_read", "sys_read", pid=4001, comm="first")
            shown.until(rb"first-4001 .*\n")
            assert shell.poll() is None, "grep ended instead of waiting for more events"
            client.invoke("vfs_read", "sys_read", pid=4002, comm="second")
            shown.until(rb"second-4002 .*\n")
            client.write_file(f"{TRACING}/tracing_enabled", "0")
            finish(shell)
        finally:
            shell.kill()
    lines = (shown.data.decode() + shell.out).splitlines()
    assert (shell.returncode, shell.err) == (0, "")
    assert shown_as(lines, [event("first", 4001), event("second", 4002), "grep: 0"]), lines


@pytest.mark.parametrize("redirect", ["", "< "])
def test_grep_m1_on_trace_pipe_returns_at_the_first_match_and_later_events_stay(daemon,
                                                                                tmp_path,
                                                                                redirect):
    """grep -m1 stops after the read holding its match: the rest of that read is consumed
    (read(2) returned it, as 3.6's tracing_read_pipe() consumes what it returns), and an
    event traced after it is left for the next reader, ``cat trace_pipe`` (which ends as
    above); the same with the file as their standard input (``< trace_pipe``), which is
    released when grep ends."""
    script = (f"cd {TRACING}; grep -m1 vfs_read {redirect}trace_pipe; echo grep: $?;"
              f" cat {redirect}trace_pipe; echo cat: $?")
    with daemon.connect() as client:
        client.write_file(f"{TRACING}/current_tracer", "function")
        client.invoke("vfs_read", "sys_read", cpu=1, pid=4001, comm="match")
        client.invoke("vfs_write", "sys_write", cpu=1, pid=4002, comm="same-read")
        shell = start_shell(tmp_path, ["--address", daemon.address, "-c", script])
        try:
            shown = Reader(shell)
            shown.until(b"grep: 0\n")
            client.invoke("vfs_read", "sys_read", cpu=1, pid=4003, comm="later")
            shown.until(rb"later-4003 .*\n")
            client.write_file(f"{TRACING}/tracing_enabled", "0")
            finish(shell)
        finally:
            shell.kill()
    lines = (shown.data.decode() + shell.out).splitlines()
    assert (shell.returncode, shell.err) == (0, "")
    assert shown_as(lines, [event("match", 4001), "grep: 0", event("later", 4003),
                            "cat: 0"]), lines
