"""ftrace-shell's grep against GNU grep 3.8 (``/usr/bin/grep``, LC_ALL=C): each pattern run
by both on the same lines, status, output and diagnostics byte for byte; and the matcher's
choice (RE2, linear in the line, unless a back-reference needs backtracking)."""

from __future__ import annotations

import contextlib
import curses.ascii
import errno
import os
import pathlib
import re
import shlex
import subprocess
import sys
from typing import Iterator

import pytest

from clients.errors import FtraceError
from clients.shell import Shell
from clients.shell_parser import Command
from clients.shell_pipe import Pipe, PipeReader, PipeWriter, Stage
from clients.shell_regex import RegexError, compile_grep
from clients.shell_runtime import BufferOutput
from tests.children import REPO, child_env

GNU_GREP = "/usr/bin/grep"
#: Words, spaces, the regex syntax's own characters as text, a NUL, bytes above 127, an
#: empty line.
LINES = (b"a b\nfoo_bar baz\nx\\sy\nxsy\nd1\n\\d\nab\nAa\n.\nword-end\n[a\n=\nia\nx\x00y\n"
         b"\xe9t\xe9\n\n*a\n{1}a\na{1}\n(a)\nb|a\n1,2\n:]\nx\ty\nx\x0by\nabab\nABAB\nnt\n")


#: Files both greps read (-f, operands): in a directory GNU grep runs in, and served to
#: ftrace-shell as the daemon serves tracefs files; any other name is missing.
FILES = {"patterns": b"ab\n\\<x\n", "bad-patterns": b"a\n\\(\n[\nb\\{1", "empty": b"",
         "functions": b"schedule\nuinput_open\nuinput_release\n",
         "words": b"uinput_release ab-cd1\n"}


#: A directory both greps are named: it opens, and its read fails (EISDIR).
DIRECTORY = "dir"
#: The bytes a read of a file returns: lines are cut across reads, as trace_pipe's may be.
READ_SIZE = 3


def _reads(data: bytes) -> Iterator[bytes]:
    yield from (data[start:start + READ_SIZE] for start in range(0, len(data), READ_SIZE))


def _directory_reads() -> Iterator[bytes]:
    raise FtraceError(errno.EISDIR, syscall="read")
    yield b""  # a generator: the read fails when it is made, not at the open


class _Files:
    """The daemon's answer to ftrace-shell's reads: the :data:`FILES`, READ_SIZE bytes a
    read, and the :data:`DIRECTORY`."""

    def open(self, path: str, flags: int) -> "_Session":
        name = path.lstrip("/")
        if name == DIRECTORY:
            reads = _directory_reads()
        elif name in FILES:
            reads = _reads(FILES[name])
        else:
            raise FtraceError(errno.ENOENT)  # the kernel's errno, as the daemon says it
        return _Session(reads)


class _Session(contextlib.nullcontext):
    """One of the :class:`_Files` opened: its reads; grep closes it where it stops early
    (-l, -q)."""

    closed = False

    def __init__(self, reads: Iterator[bytes]) -> None:
        super().__init__(self)
        self.read_all = lambda: reads

    def close(self) -> int:
        self.closed = True
        return 0


def piped(data: bytes) -> PipeReader:
    """A pipe holding ``data`` whose writer is gone: grep's standard input."""
    pipe, writer = Pipe(capacity=len(data)), Stage()
    PipeWriter(pipe, writer).write(data)
    pipe.release(reader=False)
    return PipeReader(pipe, Stage())


def ftrace_shell_grep(args: list[str]) -> tuple[int, bytes, bytes]:
    out, err = BufferOutput(), BufferOutput()
    shell = Shell(_Files(), mode="command", stdout=out, stderr=err)  # type: ignore[arg-type]
    status = shell.run_command(Command(("grep", "-n", *args), (), 1), piped(LINES), out)
    return status, out.getvalue(), err.getvalue()


def gnu_grep(args: list[str], directory: pathlib.Path) -> tuple[int, bytes, bytes]:
    # -a: these lines hold a NUL, and ftrace-shell's grep has no binary-file mode.
    for name, data in FILES.items():
        (directory / name).write_bytes(data)
    (directory / DIRECTORY).mkdir(exist_ok=True)
    done = subprocess.run(["grep", "-a", "-n", *args], executable=GNU_GREP, input=LINES,
                          capture_output=True, env={"LC_ALL": "C"}, timeout=30,
                          cwd=directory)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.skipif(not os.access(GNU_GREP, os.X_OK), reason="no GNU grep to compare with")
@pytest.mark.parametrize("command", [
    # GNU's escapes outside a bracket: word and space classes, word boundaries, the line's
    # start and end; and in a bracket, a backslash is a character.
    r"'\<b'", r"-E '\<b'", r"'o\>'", r"'r\> b'", r"-E '\<(foo|a)\>'", r"-E '\<[a-z]+\>'",
    r"-iE '\<AB\>'", r"'\(\<a\)*b'", r"-E '(\<f)+o'", r"-E 'o\<'", r"'\<'", r"'\>'",
    r"'\<a*'", r"-E '\<*a'", r"-E '^\<a'", r"-E 'b\>$'", r"-E 'x|\<(ab)+$'",
    r"'\bb'", r"'\Bo'", r"-c '\b'", r"-c '\B'", r"-E 'a\b*'",
    r"'\w\W\w'", r"'\s'", r"'x\sy'", r"'\S\S\S\S\S'", r"-E '\W'",
    r"'\`a'", '"b\\\'"', r"-E '\`*a'",
    r"'[\s]'", r"-E '[\s]'", r"'[\w]'", r"'[\]'", r"'[a\]'", r"'[\\]'",
    # Any other escaped character is itself: no Perl classes, no C escapes.
    r"'\d'", r"-E '\d'", r"-F '\d'", r"'\n'", r"'\t'", r"-E '\x41'", r"'\%'", r"-E '\]'",
    # -i folds a bracket's set before its complement: -i '[^a]' excludes A too.
    r"-i '[^a]'", r"-ic '^[^b]*$'", r"-iE '^[^[:lower:]]+$'", r"-i '[^[:upper:]]'",
    r"-iv '[^x-z]'", r"-iE '^[^A-Z_]+$'", r"-i '[a]'",
    # "." is any byte, NUL and bytes above 127 too.
    r"'x.y'", r"'t.'", r"'^.$'", r"-c ''",
    # "(?i)" is no flag: "?" at the start of a group repeats nothing (and is warned of).
    r"-E '(?i)a'", r"'(?i)a'", r"-E '*a'", r"-E 'a|*b'", r"-E '{1}a'", r"-E '^*a'",
    r"-E '^**a'", r"-E '(^)*a'", r"-E 'x|?'", r"'^*'", r"'\(*a\)'", r"'x\|*a'",
    r"'\{1\}a'", r"'\+a'", r"-E '(+))'", r"-E '(+)'", r"-E '(^{1})'",
    # Collating symbols and equivalence classes of one character (the C locale's only).
    r"'[[.a.]]'", r"'[[=a=]]'", r"-E '[[.a.]]b'", r"'[[.-.]]'", r"'[[.hyphen.]]'",
    r"'[[=ab=]]'", r"'[[.-.]-a]'", r"'[a-[.c.]]'", r"'[[=a=]-c]'", r"'[[=x'",
    # Brackets, intervals, anchors and groups as GNU reads them, errors included.
    r"'[]a]'", r"'[^]a]'", r"'[a-z-9]'", r"'[a-c-e]'", r"'[[:alpha:]-z]'", r"'[[:alpha:]-]'",
    r"'[:alpha:]'", r"-E '[:a:]x'", r"'[:a:b]'", r"'[a-'", r"'['", r"'[^'", r"'[z-a]'",
    r"-E '[[:foo:]]'", r"'a\{1'", r"'a\{x\}'", r"'a\{1,0\}'", r"-E 'a{1,0}'", r"-E 'a{}'",
    r"-E 'a{1'", r"-E 'a{,2}'", r"-E 'a{,}'", r"-E 'a{99999}'", r"-E '{99999}a'",
    r"-E 'a{32767}'", r"'a\{2\}\{2\}'", r"-E 'a**'", r"'a**'",
    r"'a^b'", r"-E 'a^b'", r"'a$b'", r"'\(^a\)'", r"'\(a$\)'",
    r"-E '(a'", r"-E 'a)'", r"'\(a'", r"'a\)'", r"'a\'", r"'\(a\)\2'", r"'\(a\1\)'",
    r"-E '\2($'", r"-E '(a)\1'", r"-E '(ab)\1'", r"-i '\(ab\)\1'",
    # -w: a match with no word character beside it, or a shorter one from the same place,
    # or a later one; an empty one counts. -x: the whole line.
    r"-w a", r"-w 'a*'", r"-w ''", r"-wc '\<'", r"-wE 'ab|abab'", r"-w 'a\>.'",
    r"-w '\(a\)\1'", r"-wF a.", r"-inw A", r"--word-regexp b",
    r"-x a", r"-x ''", r"-xE 'a|ab'", r"-x '\(ab\)\1'", r"-xF .", r"--line-regexp x",
    # -o: each match, leftmost then longest over the patterns; empty ones are not printed.
    r"-o 'a*'", r"-o ''", r"-oE 'a|ab'", r"-oi ab", r"-oE '\<\w*'", r"-o '\<.'",
    r"-ox '.'", r"-ow 'a\|ab'", r"-ow '\w\+'", r"-owE 'b|b b'", r"-wo '\(a\|ab\)\1'",
    r"--only-matching 'a\+'", r"-e a -e b -o", r"-F -e a -e b -o", r"-wFo a",
    # ... the longest when Python's re matches too (a back-reference, a \< RE2 cannot place).
    r"-oE '\<(a|ab)'", r"-ow '\<\(a\|ab\)'", r"-o '\(a\|ab\)\1*'",
    # GNU's -w search cuts its retry at the shorter end less where -o's search started.
    r"-owE 'uinput_release|ab|ab-cd' words", r"-wE 'ab|ab-cd' words",
    # Several patterns: -e, -f FILE (a line each), repeated ones once; "-f -" drains stdin.
    r"-e a -e b", r"-c -e a -e ''", r"-f patterns", r"-f patterns -o", r"-vc -f empty",
    r"-f empty -e x", r"-f -", r"--regexp=a -c", r"--regexp a -c", r"--file patterns -c",
    r"-e -a",
    # glibc's error for each refused pattern (with its file and line for -f), else dfa.c's
    # warnings for all and its first error.
    r"-e 'a\{1' -e '\('", r"-e '[' -e '['", r"-f bad-patterns", r"-E -f bad-patterns",
    r"-E -e '*a' -e '[' -e 'a{1'", r"-E -e '*x' -e '[:space:]' -e '+y'",
    r"-e ab -f patterns -f bad-patterns",
    # -l, -L, -c, -q and -m, and which wins: -l over -c, -q over all; -c -o counts lines,
    # -v -o prints nothing.
    r"-l a", r"-L a", r"-L zzz", r"-lc a", r"-Lc a", r"-co a", r"-ov a", r"-m 2 a",
    r"-m 1 -c a", r"-m1 -v a", r"-m 0 a", r"-m 0 '['", r"-m -1 -c a", r"--max-count=1 a",
    r"--quiet a", r"--silent zz", r"--files-with-matches a",
    r"--files-without-match a", r"--count --invert-match a", r"--ignore-case --count ab",
    r"--fixed-strings -c .", r"--extended-regexp -c 'a|b'", r"--basic-regexp -c 'a\|b'",
    # Context: -A, -B, -C, "--" between groups (with -A0, and with -o, too), -m's last
    # line's trailing context (a matching line in it is context).
    r"-A1 '^a'", r"-B1 '^a'", r"-C1 '^a'", r"-A0 '^a'", r"-A 1 -B 2 x", r"-C2 word",
    r"-m2 -A1 a", r"-m1 -C1 ab", r"-vn -A1 a", r"-cv -A1 a", r"-C1 -o '^a'",
    r"-A1 -v -o a", r"--after-context=1 '^a'", r"--before-context 1 '^a'",
    r"--context=1 -c '^a'",
    # Files: names before lines (-H, or several files; not -h), a missing one (not with
    # -s), stdin read once.
    r"a - -", r"-H a", r"-c a - -", r"-C1 x - -", r"-l a - -", r"-L z - -",
    r"-hc a - -", r"--with-filename -c a", r"--no-filename a - -",
    r"-s a nosuch", r"--no-messages a nosuch", r"-qs zz nosuch -",
    r"-l a nosuch functions -", r"-A1 -e open -e sched functions - functions",
    r"-C1 -h -e open -e sched functions - functions", r"-m 1 -A5 e functions",
    # A directory: its read fails; what was counted (nothing) is still reported by -c,
    # -l and -L, and the status is 2, unless -q finds a line.
    r"-c a dir", r"-L a dir -", r"-l a dir functions", r"a functions dir -", r"-s -c a dir",
    r"-q a dir -", r"-f dir a",
    # Bad options and arguments: GNU's words, the usage, status 2, at the first one.
    r"-E -F a", r"-F -G a", r"-m x a", r"-m '' a", r"-m 3x a", r"-m ' 3' a",
    r"-A x a", r"-A -1 a", r"-C 1x a", r"--context=x a", r"-m x -Q a", r"-Q -m x a",
    r"-f nosuch a", r"-s -f nosuch a", r"-j a", r"--foo", r"--count=3 a", r"-e",
    r"--regexp", r"--quiet=1 a", r"--ign a", r"--fi a", r"--fixed a", r"",
    # -NUM is --context=NUM: a run of digits in one argument, the last run wins (as -C's
    # number, it yields to -A and -B); leading 0s dropped; 22 digits are too many.
    r"-1 '^=$'", r"-12 -c a", r"-1 -0 '^=$'", r"-1n0 '^=$'", r"-2 -A0 '^=$'",
    r"-A0 -2 '^='", r"-C2 -1 '^=$'", r"-1 -C2 '^=$'", r"-00001 '^=$'", r"-0 -o '^a'",
    r"-1A0 '^=$'", r"-e -1 -c", r"-123456789012345678901 -c a",
    r"-99999999999999999999 -c a", r"-1234567890123456789012 a", r"-0000000000000000000000001 -c a",
    # grep.c's whole long_options[] for prefixes: ambiguity lists GNU's names, in its order;
    # the options ftrace-shell has that only the long form names.
    r"--no a", r"--co a", r"--nu a", r"--bin a", r"--ex a", r"--li a", r"--e a", r"--in a",
    r"--group-separator=XX -A0 '^a'", r"--group-separator XX -A0 '^a'",
    r"--group-separator= -C1 x", r"--group-separator -A0 '^a'", r"--no-gr -C1 x",
    r"--no-group-separator -A0 '^a'", r"--no-group-separator --group-separator=: -B1 '^a'",
    r"--no-group-separator=x a", r"-y -c AB", r"-i --no-ignore-case -c ab",
    r"--no-ignore-case -i -c ab", r"-u -c a", r"--unix -c a", r"-a -c a", r"--text -c a",
    r"-U -c a", r"--binary -c a", r"--line-buffered -n a", r"--line-b -c a",
    # /dev/null is empty, as the shell's redirections take it.
    r"a /dev/null", r"-c a /dev/null -", r"-f /dev/null -c", r"-f /dev/null -e a -c",
    r"-L a /dev/null -",
    # No pattern and no -v, or -m 0: status 1, no file read, unless -L (and not -q).
    r"-c -f empty", r"-f empty nosuch", r"-vx -f empty", r"-L -f empty - nosuch",
    r"-qL -f empty", r"-m0 -L a", r"-m0 -L a - nosuch", r"-m0 -c a nosuch",
])
def test_grep_as_gnu_grep(command, tmp_path):
    args = shlex.split(command)
    gnu_status, gnu_out, gnu_err = gnu_grep(args, tmp_path)
    expected = (gnu_status, gnu_out, gnu_err.replace(GNU_GREP.encode() + b":", b"grep:"))
    assert ftrace_shell_grep(args) == expected


@pytest.mark.parametrize("command, option", [
    ("--color a", "--color"), ("--colo=never a", "--color"), ("--colour=always a", "--colour"),
    ("--null a", "--null"), ("--binary-files=text a", "--binary-files"),
    ("--lab x a", "--label"), ("--help", "--help"), ("--help=1", "--help"),
    ("-r a", "-r"), ("-cZ a", "-Z"), ("-d skip a", "-d"), ("-D", "-D"), ("-P a", "-P"),
])
def test_grep_refuses_what_gnu_grep_has_and_it_does_not(command, option):
    """Not misread (``--colo`` as a prefix of --count, say): refused at once, as a bad
    option is, in GNU's name for it; the usage after, not GNU's pointer at its --help,
    which is refused too."""
    assert ftrace_shell_grep(shlex.split(command)) == (
        2, b"", f"grep: option '{option}' is not supported by ftrace-shell\n"
                "Usage: grep [OPTION]... PATTERNS [FILE]...\n".encode())


@pytest.mark.parametrize("pattern", [b"(a+)+$", b"\\<(a+)+$", b"x|(a+)+\\>$", b"\\<a(a|aa)*c"])
def test_grep_answers_at_once_where_a_backtracking_matcher_never_would(pattern):
    """GNU grep matches with a DFA: ``(a+)+$`` against 40 a's and a "!" is no match, at
    once; a backtracking matcher tries the 2^40 ways to split the a's. In a child, so
    that a hang fails the test at the deadline."""
    script = ("import sys; from clients.shell_regex import compile_grep; "
              "matcher, _ = compile_grep(sys.argv[1].encode(), 'E', False); "
              "print(matcher.search(b'a' * 40 + b'!'))")
    child = subprocess.run([sys.executable, "-c", script, pattern.decode()], cwd=REPO,
                           env=child_env(), capture_output=True, text=True, timeout=60)
    assert (child.stdout, child.stderr) == ("None\n", "")


@pytest.mark.parametrize("pattern, syntax, uses_re2", [
    (b"\\<word\\>", "G", True),
    (b"\\<(foo|bar)+\\>", "E", True),
    (b"[\\s]\\d\\w", "G", True),
    (b"a\\{2000\\}", "G", False),  # beyond RE2's counts
    (b"\\(ab\\)\\1", "G", False),  # a back-reference
])
def test_re2_matches_unless_it_cannot(pattern, syntax, uses_re2):
    matcher, _ = compile_grep(pattern, syntax, False)
    assert (not isinstance(matcher, re.Pattern)) == uses_re2


@pytest.mark.parametrize("name", ["alpha", "digit", "alnum", "upper", "lower", "space",
                                  "blank", "punct", "print", "graph", "cntrl", "xdigit"])
@pytest.mark.parametrize("negated", [False, True])
@pytest.mark.parametrize("back_reference", [b"", b"\\1"])
def test_posix_classes_are_the_c_locales(name, negated, back_reference):
    """Each POSIX class, in a bracket and in a negated one, holds the bytes C's is<name>()
    holds in the C locale (curses.ascii's), as GNU grep 3.8 matches them under LC_ALL=C:
    RE2 matching, and Python's re (for a back-reference)."""
    bracket = b"[^[:%s:]]" % name.encode() if negated else b"[[:%s:]]" % name.encode()
    regex, _ = compile_grep(b"(" + bracket + b")" + back_reference, "E", False)
    is_class = getattr(curses.ascii, "is" + name)
    matched = [byte for byte in range(256) if regex.search(bytes([byte, byte]))]
    assert matched == [byte for byte in range(256) if bool(is_class(byte)) != negated]


@pytest.mark.parametrize("pattern, syntax, message", [
    (b"[[:foo:]]", "E", "Invalid character class name"),  # glibc's REG_ECTYPE
    (b"[[:^alpha:]]", "E", "Invalid character class name"),
    (b"[[:ALPHA:]]", "G", "Invalid character class name"),
    (b"[[:alpha1:]]", "G", "Invalid character class name"),
    (b"a[b[:nope:]c]", "G", "Invalid character class name"),
    (b"([[:ALPHA:]])\\1", "E", "Invalid character class name"),
    (b"[", "G", "Invalid regular expression"),  # nothing in the bracket
    (b"[^", "G", "Invalid regular expression"),
    (b"[a", "G", "Unmatched [, [^, [:, [., or [="),
    (b"a[b-", "G", "Unmatched [, [^, [:, [., or [="),
    (b"\\(", "G", "Unmatched ( or \\("),
    (b"\\)", "G", "Unmatched ) or \\)"),
    (b"a\\", "G", "Trailing backslash"),
    (b"[b-a]", "G", "Invalid range end"),
    (b"\\1", "E", "Invalid back reference"),
    (b"\\(a\\1\\)", "G", "Invalid back reference"),
    (b"a\\{1,0\\}", "G", "Invalid content of \\{\\}"),
    (b"[:space:]", "G", "character class syntax is [[:space:]], not [:space:]"),  # dfa.c's
])
def test_errors_are_gnu_greps(pattern, syntax, message):
    with pytest.raises(RegexError) as caught:
        compile_grep(pattern, syntax, False)
    assert caught.value.message == message
