"""What ftrace-shell's commands run with: their inputs and outputs, their invocation, the
registry.

A command writes through an :class:`Output`: the terminal, a pipe (into ``grep``),
``/dev/null``, or a tracefs file opened by a redirection; it reads through an
:class:`Input`: the shell's own standard input, the pipe before it, ``/dev/null``, or a
tracefs file opened by an input redirection (``< FILE``). A descriptor used the other way
(``echo x >&0``, ``read a <&1``), or closed (``<&-``), is :data:`BAD_DESCRIPTOR`: its
read(2) and write(2) fail with EBADF, as on a descriptor not open that way. A write into
a tracefs file is
one logical write looped until the file consumed it all (ftrace's filter files take one
token per write(2)), as stdio's flush does; a failed write(2) raises :class:`WriteError`,
which the shell reports as bash does (``bash: echo: write error: Invalid argument``).
"""

from __future__ import annotations

import errno
import io
import os
import re
import string
import threading
from dataclasses import dataclass
from typing import (TYPE_CHECKING, BinaryIO, Callable, Collection, Iterator, NoReturn, Protocol,
                    cast)

from clients.api import READ_CHUNK, FileSession
from clients.errors import FtraceError

if TYPE_CHECKING:
    from clients.shell import Shell
    from clients.shell_pipe import Stage

__all__ = [
    "ShellExit",
    "FunctionReturn",
    "InputError",
    "WriteError",
    "Output",
    "Input",
    "Descriptor",
    "as_input",
    "as_output",
    "is_closed",
    "BAD_DESCRIPTOR",
    "FileInput",
    "NullInput",
    "StreamOutput",
    "NullOutput",
    "BufferOutput",
    "FileOutput",
    "StandardInput",
    "Invocation",
    "CommandSpec",
    "COMMANDS",
    "command",
    "getopt",
    "UnsupportedOption",
    "internal_getopt",
    "parse_options",
    "encode",
    "legal_number",
    "strtoimax",
]


def encode(text: str) -> bytes:
    # Scripts are decoded with surrogateescape, so their non-UTF-8 bytes come back intact.
    return text.encode("utf-8", "surrogateescape")


#: strtoimax()'s number: white space, a sign, decimal digits; and with blanks after it.
_STRTOIMAX = re.compile(r"[ \t\n\v\f\r]*([-+]?[0-9]+)")
_STRTOIMAX_BLANKS = re.compile(r"[ \t\n\v\f\r]*([-+]?[0-9]+)[ \t]*")
INTMAX_MIN, INTMAX_MAX = -(2**63), 2**63 - 1


def strtoimax(text: str, trailing_blanks: bool = False) -> tuple[int, bool] | None:
    """strtoimax() of the whole of ``text`` (and of blanks after the number, with
    ``trailing_blanks``): the number, clamped to intmax_t as strtoimax() leaves one that
    overflows, and whether it did (its ERANGE); None for anything else."""
    match = (_STRTOIMAX_BLANKS if trailing_blanks else _STRTOIMAX).fullmatch(text)
    if match is None:
        return None
    digits = match.group(1)
    # Over 19 digits never fits (and int() refuses thousands of them).
    if len(digits.lstrip("+-").lstrip("0")) > 19:
        return (INTMAX_MIN if digits.startswith("-") else INTMAX_MAX), True
    value = int(digits)
    clamped = max(INTMAX_MIN, min(value, INTMAX_MAX))
    return clamped, clamped != value


def legal_number(text: str) -> int | None:
    """bash's legal_number (general.c): ``text`` as a number that fits intmax_t, else
    None."""
    number = strtoimax(text, trailing_blanks=True)
    return None if number is None or number[1] else number[0]


class ShellExit(Exception):
    """``exit N`` (or a fatal error in a script): the shell ends with ``status``."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class FunctionReturn(Exception):
    """``return [N]`` in a function (bash's longjmp to return_catch): the function ends
    with ``status``; in a pipeline's process or a command substitution, that subshell
    does."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class InputError(Exception):
    """The shell's own read(2) of its commands failed with ``errno`` (a directory as its
    standard input: EISDIR)."""

    def __init__(self, number: int) -> None:
        super().__init__(number)
        self.errno = number


class WriteError(Exception):
    """A write(2) of a command's output failed with ``errno``: the number given, or the
    errno of ``cause``, the failed call's error when the output is a tracefs file (the
    daemon may have gone away)."""

    def __init__(self, failure: int | FtraceError) -> None:
        self.cause: FtraceError | None
        if isinstance(failure, FtraceError):
            self.cause, self.errno = failure, failure.errno
        else:
            self.cause, self.errno = None, failure
        super().__init__(self.errno)


class Output(Protocol):
    """A descriptor open for writing. ``readable`` and ``writable``: the file's
    FMODE_READ and FMODE_WRITE, which vfs_read() and vfs_write() check (EBADF without
    them); each class sets them."""

    readable: bool
    writable: bool

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class Input(Protocol):
    """A descriptor open for reading. ``read``: a read(2) of up to ``size`` bytes by the
    process ``stage`` (b"" at end of file); ``lseek``: lseek(2), the new offset. Both
    raise FtraceError for a failed call (ESPIPE: a pipe's lseek). ``readable`` and
    ``writable``: as :class:`Output`'s."""

    readable: bool
    writable: bool

    def read(self, stage: "Stage", size: int = READ_CHUNK) -> bytes: ...

    def lseek(self, offset: int, whence: int) -> int: ...

    def close(self) -> None: ...


#: What a redirection's file descriptor may be: open for reading or for writing.
Descriptor = Output | Input


class _BadDescriptor:
    """A descriptor that is not open (``<&-``), or not open the way it is used: read(2),
    write(2) and lseek(2) fail with EBADF."""

    readable = writable = False

    def read(self, stage: "Stage", size: int = READ_CHUNK) -> bytes:
        raise FtraceError(errno.EBADF, syscall="read")

    def lseek(self, offset: int, whence: int) -> int:
        raise FtraceError(errno.EBADF, syscall="lseek")

    def write(self, data: bytes) -> None:
        raise WriteError(errno.EBADF)

    def close(self) -> None:
        pass


BAD_DESCRIPTOR = _BadDescriptor()
#: A descriptor open, but not for reading (as_input's of one open for writing only): its
#: read(2) fails as a closed one's, but it is no closed descriptor (:func:`is_closed`).
_WRITE_ONLY = _BadDescriptor()


def as_input(descriptor: Descriptor) -> Input:
    """``descriptor`` as a command reads it: one open for writing only fails (EBADF), as
    vfs_read() fails a file without FMODE_READ. (A flag, not a Protocol isinstance
    check, which costs microseconds on every command.)"""
    if descriptor.readable:
        return cast(Input, descriptor)
    return BAD_DESCRIPTOR if descriptor is BAD_DESCRIPTOR else _WRITE_ONLY


def is_closed(descriptor: Input) -> bool:
    """The descriptor is not open: its close(2) would fail (EBADF)."""
    return descriptor is BAD_DESCRIPTOR or isinstance(descriptor, StandardInput) \
        and descriptor.fd is None


def as_output(descriptor: Descriptor) -> Output:
    """``descriptor`` as a command writes it: one open for reading only fails (EBADF), as
    vfs_write() fails a file without FMODE_WRITE."""
    return cast(Output, descriptor) if descriptor.writable else BAD_DESCRIPTOR


class StreamOutput:
    """One of the shell's own streams (stdout, stderr), flushed at every write so the
    two interleave as the commands wrote them. A write into a pipe whose reader went
    is the writing process's SIGPIPE (the shell's own, ``stage``, unless a process it
    started writes), which Python's ignoring of SIGPIPE turned into EPIPE."""

    readable, writable = False, True

    def __init__(self, stream: BinaryIO, stage: "Stage") -> None:
        self._stream = stream
        self._stage = stage

    def write(self, data: bytes) -> None:
        self.write_by(data, self._stage)

    def write_by(self, data: bytes, stage: "Stage") -> None:
        try:
            self._stream.write(data)
            self._stream.flush()
        except BrokenPipeError:
            stage.sigpipe()
        except OSError as error:
            raise WriteError(error.errno or errno.EIO) from None

    def close(self) -> None:
        """The shell's streams outlive the command."""


class NullOutput:
    """``/dev/null``."""

    readable, writable = False, True

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class BufferOutput:
    """Output collected whole: a command substitution's."""

    readable, writable = False, True

    def __init__(self) -> None:
        self._buffer = io.BytesIO()

    def write(self, data: bytes) -> None:
        self._buffer.write(data)

    def close(self) -> None:
        pass

    def getvalue(self) -> bytes:
        return self._buffer.getvalue()


class FileOutput:
    """A tracefs file opened by a redirection; closing it is the file's release."""

    readable, writable = False, True

    def __init__(self, session: FileSession) -> None:
        self._session = session

    def write(self, data: bytes) -> None:
        try:
            self._session.write_all(data)
        except FtraceError as error:
            raise WriteError(error) from None

    def close(self) -> None:
        try:
            self._session.close()
        except FtraceError:
            pass  # close(2)'s result is not checked by bash, and release cannot fail


class FileInput:
    """A tracefs file opened for reading by a redirection (``< FILE``), read as ``cat``
    reads one: its read(2)s and lseek(2)s are the session's; closing it is the file's
    release."""

    readable, writable = True, False

    def __init__(self, session: FileSession) -> None:
        self._session = session

    def read(self, stage: "Stage", size: int = READ_CHUNK) -> bytes:
        try:
            return self._session.read(size)
        except FtraceError:
            stage.check()  # a signal cancelled the read: the process dies of it
            raise

    def lseek(self, offset: int, whence: int) -> int:
        return self._session.seek(offset, whence)

    def close(self) -> None:
        try:
            self._session.close()
        except FtraceError:
            pass  # close(2)'s result is not checked by bash, and release cannot fail


class NullInput:
    """``/dev/null`` opened for reading: at its end at once."""

    readable, writable = True, False

    def read(self, stage: "Stage", size: int = READ_CHUNK) -> bytes:
        return b""

    def lseek(self, offset: int, whence: int) -> int:
        return 0

    def close(self) -> None:
        pass


def hold_closed(fd: int) -> None:
    """Put /dev/null at the closed standard descriptor ``fd``, so that no file the shell
    opens takes its number (the daemon's socket; the pipe to a ``--spawn`` daemon, whose
    input or output it would become: the two then waited on each other). The shell still
    takes it for closed (its reads and writes fail with EBADF)."""
    null = os.open(os.devnull, os.O_RDONLY)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)
    os.set_inheritable(fd, True)  # a standard descriptor, as the shell's children expect


class StandardInput:
    """The shell's standard input, file descriptor 0, which bash shares with the
    processes it forks: every byte of it is read once, by the shell (its commands, in
    stdin mode) or by one of them (``cat``, ``grep x``).

    bash reads its commands from a pipe a byte at a time, so as to read no further than
    the line; the shell reads them a chunk at a time and keeps here what it read beyond
    the line, which a command's read(2) takes first. From an input it can seek in (a
    regular file), bash reads a buffer at a time and, before a command runs, seeks back to
    the end of the line it took (input.c's sync_buffered_stream()); the shell does so
    before a command's first read(2) or lseek(2), so that the command finds the offset
    there and leaves it where it stops (``grep -m1``). At a terminal readline reads a byte
    at a time, as bash's, and nothing is kept. A command's wait for more is one a signal
    ends (:meth:`Stage.wait_readable`)."""

    readable, writable = True, False

    def __init__(self, fd: int = 0) -> None:
        """Made before the shell opens anything: a descriptor closed then (``<&-``) has
        a number the shell's own files (its socket to the daemon) may take since, which
        are no input of its: it stays closed here (None)."""
        try:
            os.fstat(fd)
        except OSError:
            self.fd: int | None = None
            hold_closed(fd)
        else:
            self.fd = fd
        #: Whether the descriptor can seek: a regular file's can, a pipe's or a
        #: terminal's cannot.
        self._seekable = self.fd is not None and _can_seek(self.fd)
        # Guards _ahead: the shell's line reading and a pipeline stage's reads are in
        # turn, but on different threads.
        self._lock = threading.Lock()
        #: What the shell read of its commands beyond the line it took.
        self._ahead = bytearray()

    def read(self, stage: "Stage", size: int = READ_CHUNK) -> bytes:
        """A read(2) of up to ``size`` bytes by ``stage``'s process: what the shell read
        ahead, else what there is once there is some; b"" at end of file. Raises
        FtraceError for a failed read (a closed descriptor: EBADF), KilledBySignal when
        killed."""
        with self._lock:
            if self._ahead and not self._seekable:
                data = bytes(self._ahead[:size])
                del self._ahead[:size]
                return data
        try:
            self._sync()
            assert self.fd is not None
            stage.wait_readable(self.fd)
            return os.read(self.fd, size)
        except OSError as error:
            raise FtraceError(error.errno or errno.EIO, syscall="read") from None

    def close(self) -> None:
        """The shell's standard input outlives the command."""

    def lseek(self, offset: int, whence: int) -> int:
        """An lseek(2) of descriptor 0 by a command: the new offset, where its next read(2)
        starts. Raises FtraceError: EBADF where it is closed, ESPIPE where it cannot seek
        (a pipe, a terminal)."""
        try:
            self._sync()
            assert self.fd is not None
            return os.lseek(self.fd, offset, whence)
        except OSError as error:
            raise FtraceError(error.errno or errno.EIO, syscall="lseek") from None

    def _sync(self) -> None:
        """Before a command's read(2) or lseek(2): sync_buffered_stream(), the offset set
        back over what the shell read beyond its line, where the descriptor can seek.
        Raises OSError (EBADF where it is closed)."""
        if self.fd is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        with self._lock:
            if self._ahead and self._seekable:
                os.lseek(self.fd, -len(self._ahead), os.SEEK_CUR)
                self._ahead.clear()

    def lines(self) -> Iterator[bytes]:
        """The shell's own reading of its commands: each line with its newline (the last
        one may have none), to the end of the input; what follows a line is left to the
        commands it runs. On the main thread: Ctrl-C ends the wait as KeyboardInterrupt.
        A closed descriptor is an input with no line; a failed read raises InputError."""
        if self.fd is None:
            return
        searched = 0  # how much of _ahead is known to hold no newline
        while True:
            with self._lock:
                end = self._ahead.find(b"\n", searched) + 1
                line = bytes(self._ahead[:end]) if end else None
                del self._ahead[:end]
            if line is not None:
                searched = 0
                yield line
                continue
            try:
                data = os.read(self.fd, READ_CHUNK)
            except OSError as error:
                raise InputError(error.errno or errno.EIO) from None
            if data:
                with self._lock:
                    searched = len(self._ahead)
                    self._ahead += data
                continue
            with self._lock:
                rest = bytes(self._ahead)
                self._ahead.clear()
            if rest:
                yield rest
            return


def _can_seek(fd: int) -> bool:
    """bash's fd_is_seekable() (input.c): lseek(2) to where it is succeeds."""
    try:
        os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        return False
    return True


@dataclass
class Invocation:
    """One command as it runs: its arguments and where its input and output go."""

    shell: "Shell"
    name: str
    args: list[str]
    #: Its file descriptor 0: the shell's standard input, the pipe before it in a
    #: pipeline, or what a redirection made it.
    stdin: Input
    stdout: Output
    stderr: Output

    def out(self, data: bytes | str) -> None:
        self.stdout.write(encode(data) if isinstance(data, str) else data)

    def err(self, message: str) -> None:
        """Print a diagnostic line; a failure to print it is ignored, as in C tools."""
        try:
            self.stderr.write(encode(message + "\n"))
        except WriteError:
            pass

    def try_help(self) -> None:
        """The coreutils' (and grep's) last line after a usage error."""
        self.err(f"Try '{self.name} --help' for more information.")

    def builtin_err(self, message: str) -> None:
        """A diagnostic of a bash builtin: ``bash: cd: /x: No such file or directory``."""
        self.err(f"{self.shell.prefix()}: {self.name}: {message}")

    def stdin_reads(self) -> Iterator[bytes]:
        """The standard input's read(2)s, each as it returns, to its end: a second
        reader (``grep x - -``) finds the end at once, as read(2) there does."""
        stdin, stage = self.stdin, self.shell.stage
        return iter(lambda: stdin.read(stage), b"")

    def stdin_lseek(self, offset: int, whence: int) -> int:
        """lseek(2) of the standard input: the new offset. Raises FtraceError (ESPIPE for
        the pipe before the command, EBADF for a closed descriptor)."""
        return self.stdin.lseek(offset, whence)


@dataclass(frozen=True)
class CommandSpec:
    """A command the shell knows. ``builtin``: a bash builtin, whose diagnostics carry the
    shell's prefix; otherwise it stands for a program (``cat: ...``, ``rmmod: ...``)."""

    name: str
    run: Callable[[Invocation], int]
    builtin: bool
    usage: str
    summary: str


#: Every command, by name (filled by the modules clients.shell imports: clients.shell_builtins,
#: clients.shell_kmod, clients.shell_read...).
COMMANDS: dict[str, CommandSpec] = {}


def command(usage: str, summary: str, *, builtin: bool = False):
    """Register the decorated function as a command; ``usage`` starts with its name."""

    def register(run: Callable[[Invocation], int]) -> Callable[[Invocation], int]:
        name = usage.split()[0]
        COMMANDS[name] = CommandSpec(name, run, builtin, usage, summary)
        return run

    return register


def _long_option(arg: str, long_options: dict[str, str]) -> tuple[str, str] | str:
    """glibc's getopt_long() reading of ``--name[=value]``: (the full name, its letter), or
    its diagnostic for a name that is none, or the prefix of several options' (listed in
    the table's order, as glibc does)."""
    name = arg[2:].partition("=")[0]
    if name in long_options:
        return name, long_options[name]
    candidates = [full for full in long_options if full.startswith(name)]
    if not candidates:
        return f"unrecognized option '{arg}'"
    first, letter = candidates[0], long_options[candidates[0]]
    # Names of the first one's option are no ambiguity, and glibc does not list them.
    others = [full for full in candidates if long_options[full] != letter]
    if not others:
        return first, letter
    return (f"option '{arg}' is ambiguous; possibilities:"
            + "".join(f" '--{full}'" for full in [first] + others))


class UnsupportedOption(Exception):
    """An option :func:`getopt` refused (its program has it, ftrace-shell not), said."""


def _refuse(ctx: Invocation, option: str) -> NoReturn:
    ctx.err(f"{ctx.name}: option '{option}' is not supported by ftrace-shell")
    raise UnsupportedOption(option)


def getopt(
    ctx: Invocation,
    flags: str,
    valued: Collection[str] = "",
    long_options: dict[str, str] | None = None,
    *,
    unsupported: Collection[str] = (),
    digits: bool = False,
) -> Iterator[tuple[str, str]]:
    """glibc's getopt_long() over ``ctx.args``: single-letter options, clustered (``-lv``),
    anywhere before ``--``; those in ``valued`` take a value (``-c 3`` or ``-c3``);
    ``long_options`` maps long names to their letters (``--count``, ``--max-count=3`` or
    ``--max-count 3``, or a prefix of one name: ``--max``), or, for an option with no
    letter, to a name of its own (which ``valued`` holds if it takes a value).

    Yields (letter, value or "") for each option and ("", operand) for each operand, in
    their order; for a bad option, getopt's diagnostic (``ls: invalid option -- 'x'``),
    then ("?", ""), getopt's return for it, and stops. An option in ``unsupported`` (one
    the program has, ftrace-shell not) is refused so, before its value is looked for, and
    :class:`UnsupportedOption` raised: no letter a caller could take for an option (it
    may say what it takes instead).
    With ``digits``, the digits are options, and a run of them in one argument (the
    ``12`` of ``-12n``) is yielded as one: ("#", "12"), as GNU grep's -NUM gathers them.
    """
    args = iter(ctx.args)
    for arg in args:
        if arg == "--":
            yield from (("", operand) for operand in args)
            return
        if not arg.startswith("-") or arg == "-":
            yield "", arg
            continue
        if arg.startswith("--"):
            found = _long_option(arg, long_options or {})
            value: str | None = arg.partition("=")[2]
            if isinstance(found, tuple):
                name, letter = found
                if letter in unsupported:
                    _refuse(ctx, f"--{name}")
                if "=" in arg and letter not in valued:
                    found = f"option '--{name}' doesn't allow an argument"
                elif "=" not in arg and letter in valued:
                    value = next(args, None)
                    if value is None:
                        found = f"option '--{name}' requires an argument"
            if isinstance(found, str):
                ctx.err(f"{ctx.name}: {found}")
                yield "?", ""
                return
            assert value is not None
            yield letter, value
            continue
        letters = arg[1:]
        while letters:
            letter, letters = letters[0], letters[1:]
            if digits and letter in string.digits:
                rest = letters.lstrip(string.digits)
                yield "#", letter + letters[:len(letters) - len(rest)]
                letters = rest
                continue
            if letter in unsupported:
                _refuse(ctx, f"-{letter}")
            if letter in valued:
                value = letters or next(args, None)
                if value is None:
                    ctx.err(f"{ctx.name}: option requires an argument -- '{letter}'")
                    yield "?", ""
                    return
                yield letter, value
                break
            if letter not in flags:
                ctx.err(f"{ctx.name}: invalid option -- '{letter}'")
                yield "?", ""
                return
            yield letter, ""


def internal_getopt(ctx: Invocation, letters: str, usage: str, *, unsupported: str = "",
                    plus: bool = False, refused: Callable[[], None] = lambda: None
                    ) -> tuple[set[str], list[str]] | int:
    """bash's internal_getopt (builtins/bashgetopt.c) as a builtin runs it over
    ``ctx.args``: the options, ``-`` (with ``plus``, ``+`` too) and letters, clustered,
    before the first operand or ``--``: (the letters given, the operands). For a letter
    not in ``letters``, bash's ``-x: invalid option`` and the builtin's ``usage``; for
    one in ``unsupported`` (bash's builtin has it, ftrace-shell not) and for ``--help``
    (every builtin's in bash), the refusal, then ``refused()`` (which may end the
    shell); then the status, 2. (Not :func:`getopt`: glibc's, of the programs, with its
    own words.)"""
    options: set[str] = set()
    operands = list(ctx.args)
    signs = ("-", "+") if plus else ("-",)
    while operands and operands[0].startswith(signs) and len(operands[0]) > 1:
        arg = operands.pop(0)
        if arg == "--":
            break
        if arg == "--help":
            ctx.builtin_err("option '--help' is not supported by ftrace-shell")
            return 2
        for letter in arg[1:]:
            if letter in letters:
                options.add(letter)
            elif letter in unsupported:
                ctx.builtin_err(f"option '{arg[0]}{letter}' is not supported by ftrace-shell")
                refused()
                return 2
            else:
                ctx.builtin_err(f"{arg[0]}{letter}: invalid option")
                ctx.err(f"{ctx.name}: usage: {usage}")
                return 2
    return options, operands


def parse_options(
    ctx: Invocation, flags: str, valued: str = ""
) -> tuple[dict[str, str], list[str]] | None:
    """:func:`getopt` gathered: ({letter: its last value or ""}, operands), or None after
    printing the diagnostic and the usage."""
    options: dict[str, str] = {}
    operands: list[str] = []
    for letter, value in getopt(ctx, flags, valued):
        if letter == "?":
            ctx.err(f"Usage: {COMMANDS[ctx.name].usage}")
            return None
        if letter:
            options[letter] = value
        else:
            operands.append(value)
    return options, operands
