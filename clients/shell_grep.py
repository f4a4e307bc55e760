"""ftrace-shell's grep: GNU grep 3.8's options, output and exit statuses in the C locale,
byte for byte (grep.c's main(), grep(), prtext() and print_line_middle(), dfasearch.c's
EGexecute()); its patterns are clients.shell_regex's.

A file is read as grep() reads it, a read(2) at a time (fillbuf()): each line is matched
and printed once the read that ends it returns, so ``grep x trace_pipe`` shows events as
they come; and reading stops where grep() stops: after -m NUM's last selected line and its
trailing context, at the first selected line with -q, -l or -L, or with the output going
to /dev/null. A read that returned more is consumed all the same (trace_pipe's later
events stay unread), except on standard input, which grep leaves as finalize_input()
does: where it can seek (the shell's own, a regular file), -m NUM sets its offset back to
just after the last selected line (``{ grep -m1 x; cat; } < FILE``: cat prints the rest);
stopped early otherwise (output to /dev/null), grep moves it to the end, or reads a pipe
to its end.

A line is selected when one of the patterns matches it (with -w, a match with no word
character beside it; with -x, the whole line), or none does (-v). -o prints each match
of a selected line, as GNU finds it: the leftmost, then longest, over the patterns; with
-w, where the longest is not a word, a shorter one from the same place, or the next.
"""

from __future__ import annotations

import errno
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from clients.errors import FtraceError
from clients.shell_builtins import read_path
from clients.shell_regex import WORD, Matcher, RegexError, compile_grep
from clients.shell_runtime import (
    COMMANDS,
    Invocation,
    NullOutput,
    UnsupportedOption,
    command,
    encode,
    getopt,
    strtoimax,
)

__all__: list[str] = []  # the command registers itself in COMMANDS

_FLAGS = "EFGHLUachilnoqsuvwxy"
#: The options that take a value: letters, and the names of those with no letter.
_VALUED = {*"ABCefm", "GROUP_SEPARATOR_OPTION"}
#: What GNU grep 3.8 has and ftrace-shell's grep does not: refused, never misread.
_UNSUPPORTED = {*"DIPRTVXZbdrz", "BINARY_FILES_OPTION", "COLOR_OPTION",
                "EXCLUDE_DIRECTORY_OPTION", "EXCLUDE_OPTION", "EXCLUDE_FROM_OPTION",
                "INCLUDE_OPTION", "LABEL_OPTION", "show_help"}
#: grep.c's long_options[], in its order (getopt_long lists the names a prefix is
#: ambiguous between in that order, and an unambiguous prefix is the option's, supported
#: or not): a name's letter, or the enum name grep.c gives an option with none.
#: --no-group-separator shares GROUP_SEPARATOR_OPTION in grep.c (its optarg is NULL);
#: no prefix is shared by the two names, so a name of its own changes no ambiguity.
_LONG_OPTIONS = {
    "basic-regexp": "G", "extended-regexp": "E", "fixed-regexp": "F", "fixed-strings": "F",
    "perl-regexp": "P", "after-context": "A", "before-context": "B",
    "binary-files": "BINARY_FILES_OPTION", "byte-offset": "b", "context": "C",
    "color": "COLOR_OPTION", "colour": "COLOR_OPTION", "count": "c", "devices": "D",
    "directories": "d", "exclude": "EXCLUDE_OPTION", "exclude-from": "EXCLUDE_FROM_OPTION",
    "exclude-dir": "EXCLUDE_DIRECTORY_OPTION", "file": "f", "files-with-matches": "l",
    "files-without-match": "L", "group-separator": "GROUP_SEPARATOR_OPTION",
    "help": "show_help", "include": "INCLUDE_OPTION", "ignore-case": "i",
    "no-ignore-case": "NO_IGNORE_CASE_OPTION", "initial-tab": "T", "label": "LABEL_OPTION",
    "line-buffered": "LINE_BUFFERED_OPTION", "line-number": "n", "line-regexp": "x",
    "max-count": "m", "no-filename": "h", "no-group-separator": "NO_GROUP_SEPARATOR",
    "no-messages": "s", "null": "Z", "null-data": "z", "only-matching": "o", "quiet": "q",
    "recursive": "r", "dereference-recursive": "R", "regexp": "e", "invert-match": "v",
    "silent": "q", "text": "a", "binary": "U", "unix-byte-offsets": "u", "version": "V",
    "with-filename": "H", "word-regexp": "w",
}
_STDIN_NAME = "(standard input)"


class _Trouble(Exception):
    """grep's die(): its message printed, it exits with status 2."""


@dataclass
class _Options:
    """What grep.c's main() makes of its arguments."""

    syntax: str = ""  # "G", "E" or "F" once one is chosen
    #: The -e and -f patterns, each with where glibc's error for it names it ("" or
    #: "FILE:LINE: "); None: the first operand is the pattern.
    patterns: list[tuple[bytes, str]] | None = None
    letters: set[str] = field(default_factory=set)
    max_count: int = -1  # -1: no limit
    #: -A, -B, -C's numbers (-1: not given).
    context: dict[str, int] = field(default_factory=lambda: {"A": -1, "B": -1, "C": -1})
    filenames: str = ""  # the last of "H" and "h"
    #: What is printed between groups of lines with context (None: nothing).
    group_separator: bytes | None = b"--"
    list_files: str = ""  # the last of "l" and "L"

    def has(self, letters: str) -> bool:
        return any(letter in self.letters for letter in letters)

    def context_lines(self, letter: str) -> int:
        """-A's or -B's number, else -C's (-1: none given)."""
        return self.context[letter] if self.context[letter] >= 0 else self.context["C"]


def _number(text: str) -> int | None:
    """xstrtoimax()'s reading of ``text`` (clamped as its overflow is), or None."""
    number = strtoimax(text)
    return None if number is None else number[0]


def _option(ctx: Invocation, options: _Options, letter: str, value: str) -> None:
    """One option, as main()'s getopt loop takes it; raises _Trouble for what it dies of."""
    if letter in "EFG":
        if options.syntax and options.syntax != letter:
            raise _Trouble("conflicting matchers specified")
        options.syntax = letter
    elif letter in ("A", "B", "C", "#"):
        if letter == "#":  # -NUM is -C NUM, as get_nondigit_option() gathers it: leading
            # 0s dropped, and past the 21 digits its buffer holds, a "..." that refuses it
            digits = value.lstrip("0") or "0"
            value = digits if len(digits) <= 21 else digits[:21] + "..."
            letter = "C"
        number = _number(value)
        if number is None or number < 0:
            raise _Trouble(f"{value}: invalid context length argument")
        options.context[letter] = number
    elif letter == "m":
        number = _number(value)
        if number is None:
            raise _Trouble("invalid max count")
        options.max_count = number if number >= 0 else -1
    elif letter == "e":  # several patterns, if it holds newlines
        options.patterns = (options.patterns or []) + [
            (pattern, "") for pattern in encode(value).split(b"\n")]
    elif letter == "f":  # a pattern a line
        lines = _pattern_file(ctx, value)
        options.patterns = (options.patterns or []) + [
            (pattern, f"{value}:{number}: ") for number, pattern in enumerate(lines, 1)]
    elif letter in "Hh":
        options.filenames = letter
    elif letter in "lL":
        options.list_files = letter
    elif letter in ("GROUP_SEPARATOR_OPTION", "NO_GROUP_SEPARATOR"):
        options.group_separator = encode(value) if letter == "GROUP_SEPARATOR_OPTION" else None
    elif letter in ("i", "y"):  # -y: -i, "for old-timers"
        options.letters.add("i")
    elif letter == "NO_IGNORE_CASE_OPTION":
        options.letters.discard("i")
    elif letter == "u":
        ctx.err("grep: warning: --unix-byte-offsets (-u) is obsolete")
    # -a: text, as all files are here; -U: none without O_BINARY; --line-buffered: each
    # line is written as it is printed already (the shell's output is flushed per write).
    elif letter not in ("a", "U", "LINE_BUFFERED_OPTION"):
        options.letters.add(letter)


class _Input:
    """A file's reads as grep() makes them, counted as fillbuf() keeps count: how many bytes
    they returned (bufoffset, less the offset they started at) and whether one returned
    the end of the file (ineof)."""

    def __init__(self, reads: Iterator[bytes]) -> None:
        self._reads = reads
        self.total = 0
        self.ineof = False

    def __iter__(self) -> Iterator[bytes]:
        for data in self._reads:
            self.total += len(data)
            yield data
        self.ineof = True


def _reads(ctx: Invocation, name: str) -> Iterator[bytes]:
    """The reads of a file grep is named, a read(2) at a time (see read_path); "-" is
    standard input: the pipe's, as the command before writes it, or the shell's own.
    Raises FtraceError."""
    return ctx.stdin_reads() if name == "-" else read_path(ctx, name)


def _lines(reads: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a file read by ``reads``, each once the read holding its newline has
    returned (as grep()'s buffer does); a last one without its newline at the end."""
    start: list[bytes] = []  # a line's first reads, its newline not read yet
    for data in reads:
        *ended, rest = data.split(b"\n")
        if ended:
            yield b"".join([*start, ended[0]])
            yield from ended[1:]
            start = []
        if rest:
            start.append(rest)
    if start:
        yield b"".join(start)


def _pattern_file(ctx: Invocation, name: str) -> list[bytes]:
    """-f's lines (main() freads the whole file)."""
    try:
        return list(_lines(_reads(ctx, name)))
    except FtraceError as error:
        raise _Trouble(f"{name}: {ctx.shell.reason(error)}") from None


def _usage(ctx: Invocation, try_help: bool = True) -> int:
    """GNU grep's usage line, and its pointer to --help (which the shell refuses: not
    after an option refused)."""
    ctx.err(f"Usage: {COMMANDS['grep'].usage}")
    if try_help:
        ctx.try_help()
    return 2


def _parse(ctx: Invocation) -> tuple[_Options, list[str]] | int:
    """The options and the operands, or the status after grep's diagnostic."""
    options, operands = _Options(), []
    try:
        for letter, value in getopt(ctx, _FLAGS, _VALUED, _LONG_OPTIONS,
                                    unsupported=_UNSUPPORTED, digits=True):
            if letter == "?":  # a bad option
                return _usage(ctx)
            if letter:
                _option(ctx, options, letter, value)
            else:
                operands.append(value)
    except UnsupportedOption:
        return _usage(ctx, try_help=False)
    except _Trouble as trouble:
        ctx.err(f"grep: {trouble}")
        return 2
    if options.patterns is None:
        if not operands:
            return _usage(ctx)
        options.patterns = [(pattern, "") for pattern in encode(operands.pop(0)).split(b"\n")]
    return options, operands


def _compile(ctx: Invocation, options: _Options) -> tuple[list[Matcher], list[Matcher]] | None:
    """The matchers that select lines and (-o) those that find the matches in them, one
    of each per pattern (a repeated one once, as grep 3.8 keeps it); or None after grep's
    diagnostics: glibc's error for each pattern it refuses; if none, dfa.c's warnings for
    all, in order, up to its first error."""
    assert options.patterns is not None
    patterns: dict[bytes, str] = {}
    for pattern, origin in options.patterns:
        patterns.setdefault(pattern, origin)
    whole = "x" if options.has("x") else "w" if options.has("w") else ""
    selectors: list[Matcher] = []
    finders: list[Matcher] = []
    refused: list[str] = []
    warnings: list[str] = []
    dfa_error: str | None = None
    syntax, ignore_case = options.syntax or "G", options.has("i")
    for pattern, origin in patterns.items():
        try:
            selector, warned = compile_grep(pattern, syntax, ignore_case, whole=whole)
            if options.has("o"):  # -w's matches are the pattern's own, retried
                finders.append(compile_grep(pattern, syntax, ignore_case, spans=True,
                                            whole="x" if options.has("x") else "")[0])
        except RegexError as error:
            if not error.from_dfa:
                refused.append(origin + error.message)
            elif dfa_error is None:
                warnings += error.warnings
                dfa_error = error.message
            continue
        if dfa_error is None:
            warnings += warned
        selectors.append(selector)
    for message in refused or [f"warning: {warning}" for warning in warnings]:
        ctx.err(f"grep: {message}")
    if refused or dfa_error is not None:
        if not refused:
            ctx.err(f"grep: {dfa_error}")
        return None
    return selectors, finders


def _is_word(line: bytes, index: int) -> bool:
    return 0 <= index < len(line) and line[index] in WORD


def _word_match(line: bytes, pos: int, matcher: Matcher, start: int, end: int,
                bound: int) -> tuple[int, int] | None:
    """EGexecute()'s -w search from a match at [start, end): while its start is not past
    ``bound``, the match if no word character is beside it, else the longest shorter one
    from the same start (RE2's ``$`` not matching where it is cut), else the next match."""
    while start <= bound:
        if not _is_word(line, start - 1) and not _is_word(line, end):
            return start, end
        shorter = None
        # GNU's re_match() is given the line cut at the shorter end less ``pos`` (the -o
        # search's start), not at the shorter end: after a first match, fewer are tried.
        cut = end - 1 - pos
        if end > start and cut >= start:
            shorter = matcher.match(line, start, cut)
        if shorter is not None and shorter.end() > start:
            end = shorter.end()
            continue
        if start == len(line):
            return None
        found = matcher.search(line, start + 1)
        if found is None:
            return None
        start, end = found.start(), found.end()
    return None


def _leftmost_longest(line: bytes, pos: int, matchers: list[Matcher],
                      words: bool) -> tuple[int, int] | None:
    """EGexecute() from ``pos``: the leftmost, then longest, match of any pattern."""
    best: tuple[int, int] | None = None
    for matcher in matchers:
        found = matcher.search(line, pos)
        if found is None:
            continue
        span: tuple[int, int] | None = (found.start(), found.end())
        if words:
            bound = best[0] if best else len(line) + 1
            span = _word_match(line, pos, matcher, found.start(), found.end(), bound)
        if span is not None and (best is None or span[0] < best[0]
                                 or span[0] == best[0] and span[1] > best[1]):
            best = span
    return best


def _only_matching(line: bytes, matchers: list[Matcher], words: bool) -> Iterator[bytes]:
    """print_line_middle(): each match in the line, left to right; an empty one is skipped
    (the search goes on one byte further)."""
    pos = 0
    while pos <= len(line):
        span = _leftmost_longest(line, pos, matchers, words)
        if span is None:
            return
        start, end = span
        if start == end:
            pos = start + 1
            continue
        yield line[start:end]
        pos = end


@dataclass
class _Grep:
    """One grep run over its files, and what grep.c keeps from one file to the next."""

    ctx: Invocation
    options: _Options
    selectors: list[Matcher]
    finders: list[Matcher]
    with_filenames: bool
    #: Something was printed: the next group of lines, if not adjacent, follows a "--".
    used: bool = False
    #: A file could not be opened or read: the status is 2 (errseen).
    errseen: bool = False
    #: prtext()'s after_last_match, from the file's start: the bytes up to the end of
    #: the last selected line.
    after_last_match: int = 0

    @property
    def done_on_match(self) -> bool:
        """main()'s done_on_match: the first selected line ends the file's reading (-q,
        -l, -L, or output known to go to /dev/null: nothing is printed, so it may)."""
        return (self.options.has("q") or bool(self.options.list_files)
                or isinstance(self.ctx.stdout, NullOutput))

    def suppressible_error(self, name: str, error: FtraceError) -> None:
        """grep.c's suppressible_error(): the message, unless -s; the status will be 2."""
        if not self.options.has("s"):
            self.ctx.err(f"grep: {name}: {self.ctx.shell.reason(error)}")
        self.errseen = True

    def file_lines(self, name: str, reads: Iterable[bytes]) -> Iterator[bytes]:
        """The lines grep() reads of a file; a failed read (fillbuf()'s) is reported and
        ends them, as it ends grep() with the lines before it counted. A failed open
        raises (grepfile(): nothing is printed for the file)."""
        try:
            yield from _lines(reads)
        except FtraceError as error:
            if error.syscall != "read":
                raise
            self.suppressible_error(name, error)

    def selected(self, line: bytes) -> bool:
        return any(matcher.search(line) for matcher in self.selectors) != self.options.has("v")

    def prline(self, label: bytes, number: int, line: bytes, sep: bytes) -> None:
        """A selected (``sep`` ":") or context ("-") line, after its file name and number;
        with -o, each match of a line that matches (a context line, with -v), alone."""
        head = (label + sep if self.with_filenames else b"") + (
            b"%d" % number + sep if self.options.has("n") else b"")
        if not self.options.has("o"):
            self.ctx.out(head + line + b"\n")
        elif (sep == b":") != self.options.has("v"):
            words = self.options.has("w") and not self.options.has("x")
            self.ctx.out(b"".join(head + match + b"\n"
                                  for match in _only_matching(line, self.finders, words)))

    def scan(self, label: bytes, lines: Iterable[bytes]) -> int:
        """grep(): the file's selected lines, each printed as it is read, with its context,
        unless -c or done_on_match; their count. Takes no line past the one where grep()
        stops: -m's last selected line once its trailing context is printed, or with
        done_on_match, the first selected line."""
        options = self.options
        after, before = options.context_lines("A"), options.context_lines("B")
        separators = after >= 0 or before >= 0
        #: The last lines not printed (number, line): a selected line's leading context.
        unprinted: deque[tuple[int, bytes]] = deque(maxlen=max(before, 0))
        lastout: int | None = None  # the number of the last line printed
        pending = count = consumed = 0
        self.after_last_match = 0
        for number, line in enumerate(lines, 1):
            consumed += len(line) + 1
            if count != options.max_count and self.selected(line):
                count += 1
                self.after_last_match = consumed
                if self.done_on_match:
                    break
                if not options.has("c"):
                    first = unprinted[0][0] if unprinted else number
                    if (separators and self.used and first - 1 != lastout
                            and options.group_separator is not None):
                        self.ctx.out(options.group_separator + b"\n")
                    for context in unprinted:
                        self.prline(label, *context, b"-")
                    unprinted.clear()
                    self.prline(label, number, line, b":")
                    lastout, pending, self.used = number, max(after, 0), True
            elif pending:  # trailing context, after -m's last line too
                self.prline(label, number, line, b"-")
                lastout, pending = number, pending - 1
            else:
                unprinted.append((number, line))
            if count == options.max_count and not pending:
                break
        return count

    def grep_file(self, name: str, label: bytes) -> int:
        """grepfile() of a tracefs file: the count of its selected lines. Raises
        FtraceError where it cannot be opened."""
        reads = read_path(self.ctx, name)
        try:
            return self.scan(label, self.file_lines(name, reads))
        finally:
            reads.close()  # where grep() stopped: what it did not read stays unread

    def grep_standard_input(self, label: bytes) -> int:
        """grepdesc() of standard input (``-`` or no file): the count of its selected
        lines, with its offset left as finalize_input() leaves it (unless grep ends at the
        first selected line, -q, or lists files, -l or -L). Raises FtraceError where it
        cannot be read at all (a closed descriptor: EBADF, as its fstat() fails)."""
        name = label.decode("utf-8", "surrogateescape")
        try:  # reset(): where it starts, if it can seek
            start: int | None = self.ctx.stdin_lseek(0, os.SEEK_CUR)
        except FtraceError as error:
            if error.errno != errno.ESPIPE:
                raise
            start = None
        source = _Input(self.ctx.stdin_reads())
        count = self.scan(label, self.file_lines(name, source))
        options = self.options
        if not (options.has("q") and count) and (
                not options.list_files or isinstance(self.ctx.stdout, NullOutput)):
            self.finalize_input(name, source, start, count)
        return count

    def finalize_input(self, name: str, source: _Input, start: int | None,
                       count: int) -> None:
        """finalize_input(): once -m NUM's last line is selected, the offset set back to
        just after it (lseek(2)), so that what grep read past it is the next reader's, where
        the input can seek (``{ grep -m1 x; cat; } < FILE``: cat prints the rest); where
        grep stopped before the end otherwise (output to /dev/null), the offset moved to the
        end, or where it cannot be (a pipe), the rest read and dropped (drain_input())."""
        try:
            if count == self.options.max_count:
                # A last line without its newline ends the file, as its added eol does.
                offset = min(self.after_last_match, source.total)
                if start is not None and offset != source.total:
                    self.ctx.stdin_lseek(start + offset, os.SEEK_SET)
            elif not source.ineof:
                drain = start is None
                if not drain:
                    try:
                        self.ctx.stdin_lseek(0, os.SEEK_END)
                    except FtraceError as error:
                        drain = error.errno != errno.EINVAL  # procfs' (Bug#25180)
                if drain:
                    for _ in source:
                        pass
        except FtraceError as error:
            self.suppressible_error(name, error)


@command("grep [OPTION]... PATTERNS [FILE]...",
         "print matching lines (status 1: none); GNU's -EFGivwxcoqslLhHn, -e PATTERN,"
         " -f FILE, -m NUM, -A/-B/-C NUM, -NUM, --group-separator=SEP,"
         " --no-group-separator, --line-buffered and their long forms")
def cmd_grep(ctx: Invocation) -> int:
    parsed = _parse(ctx)
    if isinstance(parsed, int):
        return parsed
    options, files = parsed
    # main(): where matching cannot succeed (-m 0; no pattern, as -f /dev/null gives,
    # without -v), status 1 without reading a file, unless -L (not overridden by -q).
    cannot_match = options.max_count == 0 or not options.patterns and not options.has("v")
    if cannot_match and (options.list_files != "L" or options.has("q")):
        return 1
    matchers = _compile(ctx, options)
    if matchers is None:
        return 2
    with_filenames = options.filenames == "H" or len(files) > 1 and options.filenames != "h"
    grep = _Grep(ctx, options, *matchers, with_filenames)
    selected = False
    for name in files or ["-"]:
        shown = _STDIN_NAME if name == "-" else name  # input_filename()
        label = encode(shown)
        try:
            count = (grep.grep_standard_input(label) if name == "-"
                     else grep.grep_file(name, label))
        except FtraceError as error:
            grep.suppressible_error(shown, error)
            continue
        selected = selected or count > 0
        if options.has("q"):
            if count:
                return 0  # at once, errors or not
        elif options.list_files:
            if bool(count) == (options.list_files == "l"):
                ctx.out(label + b"\n")
        elif options.has("c"):
            ctx.out((label + b":" if with_filenames else b"") + b"%d\n" % count)
    return 2 if grep.errseen else 0 if selected else 1
