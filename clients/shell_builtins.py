"""ftrace-shell's file and general commands: cd, pwd, ls, cat, echo, grep, sleep, true,
false, exit, help. Their output and diagnostics are those of bash and GNU coreutils/grep,
byte for byte where a script could depend on them."""

from __future__ import annotations

import os
import re
import time
import warnings
from typing import Iterator, Protocol

import re2

from clients.errors import FtraceError
from clients.shell_runtime import (
    COMMANDS,
    Invocation,
    ShellExit,
    command,
    encode,
    parse_options,
)

__all__: list[str] = []  # the commands register themselves in COMMANDS


def read_path(ctx: Invocation, path: str) -> Iterator[bytes]:
    """The contents of a tracefs file, read by read(2)s as cat does (so trace_pipe
    streams). Raises FtraceError for a failed open or read; the file is released."""
    with ctx.shell.client.open(ctx.shell.resolve(path), os.O_RDONLY) as session:
        yield from session.read_all()


@command("true", "do nothing, successfully", builtin=True)
def cmd_true(ctx: Invocation) -> int:
    return 0


@command("false", "do nothing, unsuccessfully", builtin=True)
def cmd_false(ctx: Invocation) -> int:
    return 1


@command("exit [N]", "leave with status N (default: the last one)", builtin=True)
def cmd_exit(ctx: Invocation) -> int:
    if len(ctx.args) > 1:
        ctx.builtin_err("too many arguments")
        return 1
    if not ctx.args:
        raise ShellExit(ctx.shell.status)
    # bash's legal_number: blanks around, a sign, decimal digits, and it must fit intmax_t.
    number = re.fullmatch(r"\s*([-+]?[0-9]+)\s*", ctx.args[0], re.ASCII)
    # Over 19 digits never fits (and int() refuses thousands of them).
    if (number is None or len(number.group(1).lstrip("+-").lstrip("0")) > 19
            or not -(2**63) <= int(number.group(1)) < 2**63):
        ctx.builtin_err(f"{ctx.args[0]}: numeric argument required")
        raise ShellExit(2)
    raise ShellExit(int(number.group(1)) & 0xFF)


_HELP_COLUMN = 26


@command("help", "list the commands", builtin=True)
def cmd_help(ctx: Invocation) -> int:
    ctx.out("ftrace-shell: a small bash for ftraced. Paths are the daemon's:\n"
            "/sys/kernel/debug/tracing, /sys/kernel/tracing, /proc/modules, /proc/kallsyms,\n"
            "/proc/sys/kernel/ftrace_enabled.\n"
            "Syntax: quotes, # comments, ; && ||, > >> 2> N>&M, $? $$, pipes into grep.\n\n")
    for name in sorted(COMMANDS):
        usage, summary = COMMANDS[name].usage, COMMANDS[name].summary
        # A long usage puts its summary on the next line, to stay within 80 columns.
        if len(usage) >= _HELP_COLUMN:
            usage += "\n" + " " * (_HELP_COLUMN + 2)
        ctx.out(f"  {usage:<{_HELP_COLUMN}}{summary}\n")
    return 0


@command("cd [DIR|-]", "change the working directory (start: /)", builtin=True)
def cmd_cd(ctx: Invocation) -> int:
    shell = ctx.shell
    if len(ctx.args) > 1:
        ctx.builtin_err("too many arguments")
        return 1
    # The model has no home directory: plain `cd` goes to the root. bash takes `cd ""`
    # for `cd .`: it stays, and OLDPWD becomes the working directory.
    arg = (ctx.args[0] or ".") if ctx.args else "/"
    if arg == "-":
        if shell.oldpwd is None:
            ctx.builtin_err("OLDPWD not set")
            return 1
        arg = shell.oldpwd
    try:
        stat = shell.client.stat(shell.resolve(arg))
    except FtraceError as error:
        ctx.builtin_err(f"{arg}: {error.strerror}")
        return 1
    if not stat.entry.is_dir:
        ctx.builtin_err(f"{arg}: Not a directory")
        return 1
    shell.oldpwd, shell.cwd = shell.cwd, stat.path
    if ctx.args and ctx.args[0] == "-":
        ctx.out(shell.cwd + "\n")  # as bash, `cd -` prints where it went
    return 0


@command("pwd", "print the working directory", builtin=True)
def cmd_pwd(ctx: Invocation) -> int:
    ctx.out(ctx.shell.cwd + "\n")
    return 0


_ECHO_ESCAPE = re.compile(rb"\\(0[0-7]{0,3}|x[0-9A-Fa-f]{1,2}|.)", re.DOTALL)
_ECHO_SIMPLE = {b"a": b"\a", b"b": b"\b", b"e": b"\x1b", b"E": b"\x1b", b"f": b"\f",
                b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v", b"\\": b"\\"}


def _echo_interpret(data: bytes) -> tuple[bytes, bool]:
    """echo -e: (the bytes with escapes interpreted, whether \\c cut the output)."""
    out: list[bytes] = []
    position = 0
    for match in _ECHO_ESCAPE.finditer(data):
        out.append(data[position:match.start()])
        position = match.end()
        code = match.group(1)
        if code == b"c":
            return b"".join(out), True
        if code[:1] == b"0":
            out.append(bytes([int(code, 8) & 0xFF]))
        elif code[:1] == b"x" and len(code) > 1:
            out.append(bytes([int(code[1:], 16)]))
        else:
            out.append(_ECHO_SIMPLE.get(code, b"\\" + code))
    out.append(data[position:])
    return b"".join(out), False


@command("echo [-neE] [ARG...]", "print the arguments (use > or >> to write a file)",
         builtin=True)
def cmd_echo(ctx: Invocation) -> int:
    args = ctx.args
    newline, escapes = True, False
    # bash: leading words made only of n, e, E after "-" are options; anything else ends them.
    while args and len(args[0]) > 1 and args[0][0] == "-" and set(args[0][1:]) <= set("neE"):
        for letter in args[0][1:]:
            newline = newline and letter != "n"
            escapes = (escapes or letter == "e") and letter != "E"
        args = args[1:]
    data = encode(" ".join(args))
    if escapes:
        data, cut = _echo_interpret(data)
        newline = newline and not cut
    # One write, as bash's echo flushes its buffer once.
    ctx.out(data + b"\n" if newline else data)
    return 0


def _mode_string(is_dir: bool, mode: int) -> str:
    bits = "".join(
        letter if mode & (1 << (8 - index)) else "-" for index, letter in enumerate("rwxrwxrwx")
    )
    return ("d" if is_dir else "-") + bits


@command("ls [-la1] [PATH...]", "list directories (one name a line; -l: modes)")
def cmd_ls(ctx: Invocation) -> int:
    parsed = parse_options(ctx, "la1")
    if parsed is None:
        return 2
    options, operands = parsed
    shell = ctx.shell
    status = 0
    files: list[tuple[str, bool, int, int]] = []
    directories: list[tuple[str, list[tuple[str, bool, int, int]]]] = []
    for operand in operands or ["."]:
        try:
            stat = shell.client.stat(shell.resolve(operand))
            if not stat.entry.is_dir:
                files.append((operand, False, stat.entry.mode, stat.entry.size))
                continue
            entries = [(e.name, e.is_dir, e.mode, e.size)
                       for e in shell.client.list_dir(stat.path)]
        except FtraceError as error:
            ctx.err(f"ls: cannot access '{operand}': {error.strerror}")
            status = 2
            continue
        if "a" in options:
            entries = [(".", True, stat.entry.mode, 0), ("..", True, 0o755, 0)] + entries
        directories.append((operand, entries))

    def listing(rows: list[tuple[str, bool, int, int]]) -> str:
        if "l" not in options:
            return "".join(name + "\n" for name, *_ in rows)
        width = max((len(str(size)) for *_, size in rows), default=1)
        return "".join(f"{_mode_string(is_dir, mode)} 1 root root {size:>{width}} {name}\n"
                       for name, is_dir, mode, size in rows)

    parts = [listing(files)] if files else []
    for name, entries in directories:
        header = f"{name}:\n" if len(files) + len(directories) > 1 else ""
        total = "total 0\n" if "l" in options else ""
        parts.append(header + total + listing(entries))
    ctx.out("\n".join(parts))
    return status


@command("cat [FILE...]", "print files (trace_pipe streams until Ctrl-C)")
def cmd_cat(ctx: Invocation) -> int:
    status = 0
    for operand in ctx.args or ["-"]:
        if operand == "-":
            ctx.out(ctx.read_stdin())
            continue
        try:
            for data in read_path(ctx, operand):
                ctx.out(data)
        except FtraceError as error:
            ctx.err(f"cat: {operand}: {error.strerror}")
            status = 1
    return status


_BRE_SPECIAL = frozenset("|+?(){}")


def _bre_to_python(pattern: str) -> str:
    """A POSIX basic regular expression (GNU flavour) as a Python one: ``\\| \\+ \\? \\( \\)
    \\{ \\}`` are the operators, and ``| + ? ( ) { }`` plain characters."""
    out: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            # A trailing backslash stays one: Python refuses it, as GNU grep does.
            escaped = next(chars, "")
            out.append(escaped if escaped in _BRE_SPECIAL else "\\" + escaped)
        elif char in _BRE_SPECIAL:
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


#: GNU grep's words (glibc's regerror) for the errors Python's re reports, by the start of
#: Python's message; what is not here reads as glibc's catch-all, "Invalid regular
#: expression". (An unterminated "[" is told apart in _regex_error.)
_REGEX_ERRORS = (
    ("missing ), unterminated subpattern", "Unmatched ( or \\("),
    ("unbalanced parenthesis", "Unmatched ) or \\)"),
    ("bad escape (end of pattern)", "Trailing backslash"),
    ("bad character range", "Invalid range end"),
    ("invalid group reference", "Invalid back reference"),
    ("cannot refer to an open group", "Invalid back reference"),
    ("min repeat greater than max repeat", "Invalid content of \\{\\}"),
    (_INVALID_CLASS := "invalid character class", "Invalid character class name"),
)


def _regex_error(error: re.error, pattern: bytes) -> str:
    """The GNU grep diagnostic for ``pattern``, which Python's re refused."""
    if error.msg == "unterminated character set":
        # glibc: a bracket with nothing in it ("[", "[^") is a bad pattern, one with
        # something in it is unmatched.
        inside = pattern[(error.pos or 0) + 1:].removeprefix(b"^")
        return "Unmatched [, [^, [:, [., or [=" if inside else "Invalid regular expression"
    return next((gnu for python, gnu in _REGEX_ERRORS if error.msg.startswith(python)),
                "Invalid regular expression")


class _Matcher(Protocol):
    def search(self, text: bytes) -> object | None: ...


#: What RE2 reads differently from Python's re, by the escape: \s and \S are C's isspace()
#: in Python (and GNU grep), with \v, which RE2's \s lacks. Outside and inside a bracket.
_RE2_SPACES = {b"\\s": (b"[[:space:]]", b"[:space:]"), b"\\S": (b"[[:^space:]]", b"[:^space:]")}
#: A bracket's POSIX class, which RE2 reads as one (as GNU grep does); any name, for an
#: unknown one is an error ("[[:ALPHA:]]", "[[:^alpha:]]").
_POSIX_CLASS = re.compile(rb"\[:[^]:]*:\]")
#: The POSIX classes as Python re's set contents, for the C locale (glibc's ctype tables
#: for bytes 0-127; none of 128-255 is in any class): re reads "[[:alpha:]]" as the set
#: "[:alph" and a "]".
_POSIX_SETS = {
    b"[:alpha:]": rb"a-zA-Z",
    b"[:digit:]": rb"0-9",
    b"[:alnum:]": rb"0-9a-zA-Z",
    b"[:upper:]": rb"A-Z",
    b"[:lower:]": rb"a-z",
    b"[:space:]": rb"\t-\r ",
    b"[:blank:]": rb"\t ",
    b"[:punct:]": rb"!-/:-@\[-`{-~",
    b"[:print:]": rb" -~",
    b"[:graph:]": rb"!-~",
    b"[:cntrl:]": rb"\x00-\x1f\x7f",
    b"[:xdigit:]": rb"0-9A-Fa-f",
}
#: A back-reference, \1 to \9. GNU grep's are one digit: "\12" is group 1, then a "2"
#: (Python's re reads group 12; RE2, which has none, octal 012, a newline).
_BACK_REFERENCE = re.compile(rb"\\[1-9]")
#: After a "{": an interval with no minimum, ``{,N}``, 0 to N for Python's re (and GNU
#: grep), characters for RE2.
_NO_MINIMUM = re.compile(rb",\d*\}")


def _tokens(expression: bytes) -> Iterator[tuple[int, bytes, bool]]:
    """``expression``'s tokens, in Python's re syntax: an escape, a bracket's POSIX class,
    or one character; each with where it starts and whether it is inside a bracket."""
    i, body = 0, -1  # body: where the open bracket's first character is; -1: none open
    while i < len(expression):
        start = i
        if expression[i:i + 1] == b"\\":
            token = expression[i:i + 2]
        else:
            posix = _POSIX_CLASS.match(expression, i) if body >= 0 else None
            token = posix.group() if posix else expression[i:i + 1]
        i += len(token)
        inside = body >= 0
        if not inside and token == b"[":
            body = i + (expression[i:i + 1] == b"^")
        elif inside and token == b"]" and start > body:  # a "]" first in a bracket is
            body = -1  # one of its characters
        yield start, token, inside


def _python_to_re2(expression: bytes) -> bytes | None:
    """``expression``, which Python's re accepted, in RE2's syntax with the same meaning;
    None if it has a back-reference, which RE2 cannot match."""
    out: list[bytes] = []
    for start, token, inside in _tokens(expression):
        if not inside and _BACK_REFERENCE.fullmatch(token):
            return None
        if token in _RE2_SPACES:
            token = _RE2_SPACES[token][inside]
        elif not inside and token == b"{" and _NO_MINIMUM.match(expression, start + 1):
            token = b"{0"
        out.append(token)
    return b"".join(out)


def _grep_to_python(expression: bytes) -> bytes:
    """``expression`` with the meaning GNU grep gives it, for Python's re: a POSIX class
    as the characters it stands for (an unknown one is GNU's error), and a back-reference
    as one digit (``\\12``: group 1, then a "2")."""
    out: list[bytes] = []
    for start, token, inside in _tokens(expression):
        if inside and _POSIX_CLASS.fullmatch(token):
            if token not in _POSIX_SETS:  # "[[:foo:]]", "[[:^alpha:]]": glibc's REG_ECTYPE
                raise re.error(_INVALID_CLASS, expression, start)
            token = _POSIX_SETS[token]
        elif _BACK_REFERENCE.fullmatch(token):
            token = b"(?:" + token + b")"
        out.append(token)
    return b"".join(out)


def _compile_grep(expression: bytes, ignore_case: bool) -> _Matcher:
    """How GNU grep matches: with its DFA (dfa.c), in time linear in the line, and with
    glibc's backtracking regexec only for what a DFA cannot do (back-references). Here RE2
    is the DFA and Python's re the regexec: re checks the pattern first (its errors read as
    GNU grep's, :func:`_regex_error`), and matches what RE2 refuses. A line is bytes, one
    character each (Latin-1 to RE2), as grep reads it in the C locale. Raises re.error,
    whose ``pattern`` is the one re was given."""
    with warnings.catch_warnings():
        # re warns of a "[" inside a bracket ("[[.a.]]", an unknown "[[:x:]]") that it may
        # read it as a nested set one day.
        warnings.simplefilter("ignore", FutureWarning)
        regex = re.compile(_grep_to_python(expression), re.IGNORECASE if ignore_case else 0)
    re2_expression = _python_to_re2(expression)
    if re2_expression is None:
        return regex
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    options.case_sensitive = not ignore_case
    options.log_errors = False
    try:
        return re2.compile(re2_expression, options)
    except re2.error:
        return regex


@command("grep [-vciqnEF] PATTERN [FILE...]",
         "print matching lines (status 1: none)")
def cmd_grep(ctx: Invocation) -> int:
    parsed = parse_options(ctx, "vciqnEF")
    if parsed is None:
        return 2
    options, operands = parsed
    if not operands:
        ctx.err(f"Usage: {COMMANDS['grep'].usage}")
        return 2
    pattern, files = operands[0], operands[1:]
    if "F" in options:
        expression = re.escape(pattern)
    else:
        expression = pattern if "E" in options else _bre_to_python(pattern)
    compiled = encode(expression)
    try:
        regex = _compile_grep(compiled, "i" in options)
    except re.error as error:
        ctx.err(f"grep: {_regex_error(error, error.pattern)}")
        return 2
    selected, errors = False, False
    for name in files or ["-"]:
        try:
            data = ctx.read_stdin() if name == "-" else b"".join(read_path(ctx, name))
        except FtraceError as error:
            ctx.err(f"grep: {name}: {error.strerror}")
            errors = True
            continue
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        prefix = encode(name if name != "-" else "(standard input)") + b":" if len(files) > 1 else b""
        matches = [(number, line) for number, line in enumerate(lines, 1)
                   if (regex.search(line) is None) == ("v" in options)]
        selected = selected or bool(matches)
        if "q" in options:
            if selected:
                return 0
        elif "c" in options:
            ctx.out(prefix + b"%d\n" % len(matches))
        elif matches:
            ctx.out(b"".join(prefix + (b"%d:" % number if "n" in options else b"") + line + b"\n"
                             for number, line in matches))
    return 2 if errors else 0 if selected else 1


_SLEEP_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: What a longer sleep is cut to (68 years; time.sleep refuses more than 292), as
#: coreutils' sleep cuts one its timespec cannot hold: it sleeps until interrupted.
_SLEEP_MAX = float(2**31)


@command("sleep SECONDS[smhd]...", "wait (really) that long")
def cmd_sleep(ctx: Invocation) -> int:
    if not ctx.args:
        ctx.err("sleep: missing operand")
        return 1
    total = 0.0
    for arg in ctx.args:
        match = re.fullmatch(r"(\d+\.?\d*|\.\d+)([smhd]?)", arg)
        if match is None:
            ctx.err(f"sleep: invalid time interval '{arg}'")
            return 1
        total += float(match.group(1)) * _SLEEP_UNITS[match.group(2)]
    time.sleep(min(total, _SLEEP_MAX))
    return 0
