"""ftrace-shell's file and general commands: cd, pwd, ls, cat, echo, sleep, true, :, false,
exit, break, continue, return, shift, set, help (grep is clients.shell_grep's; test and [ are
clients.shell_test_builtin's; read is clients.shell_read's). Their output and diagnostics
are those of bash and GNU coreutils, byte for byte where a script could depend on them."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import textwrap
from typing import Iterator

from clients.errors import FtraceError
from clients.shell_pattern import strmatch
from clients.shell_variables import ExpansionError
from clients.shell_runtime import (
    COMMANDS,
    FunctionReturn,
    Invocation,
    ShellExit,
    UnsupportedOption,
    command,
    encode,
    getopt,
    internal_getopt,
    is_closed,
    legal_number,
    parse_options,
)

__all__: list[str] = []  # the commands register themselves in COMMANDS


def read_path(ctx: Invocation, path: str) -> Iterator[bytes]:
    """The contents of a tracefs file, read by read(2)s as cat does (so trace_pipe
    streams); of ``/dev/null``, which the shell's redirections take too and the daemon's
    tree has not, nothing. Raises FtraceError for a failed open or read; the file is
    released. A reader that stops early (``grep -m1``) closes it, as the program does
    (close(2)): its release (``trace``'s restarts tracing) is done when the next command
    runs, where a cancelled session's comes when the daemon gets to it."""
    if ctx.shell.resolve(path) == "/dev/null":
        return
    with ctx.shell.open(path, os.O_RDONLY) as session:
        try:
            yield from session.read_all()
        except GeneratorExit:
            with contextlib.suppress(FtraceError):  # close(2)'s result goes unchecked
                session.close()
            raise


@command("true", "do nothing, successfully", builtin=True)
@command(": [ARG...]", "do nothing, successfully (the arguments are expanded)", builtin=True)
def cmd_true(ctx: Invocation) -> int:
    return 0


@command("false", "do nothing, unsuccessfully", builtin=True)
def cmd_false(ctx: Invocation) -> int:
    return 1


@command("exit [N]", "leave with status N (default: the last one)", builtin=True)
def cmd_exit(ctx: Invocation) -> int:
    """bash's exit_builtin: an interactive shell says ``exit`` on its standard error
    first (a subshell is none)."""
    if ctx.shell.interactive:
        ctx.err("exit")
    raise ShellExit(get_exitstat(ctx))


def no_args(ctx: Invocation, rest: list[str]) -> None:
    """bash's no_args() (builtins/common.c): arguments after a builtin's last one are its
    complaint, then top_level_cleanup() and DISCARD: the rest of the input line is
    dropped, a ``-c`` command ends."""
    if rest:
        raise ExpansionError(f"{ctx.name}: too many arguments", top_level_cleanup=True)


def _skip_dashes(args: list[str]) -> list[str]:
    """The arguments after a first ``--``, as bash's ISOPTION (word, '-') skips it."""
    return args[1:] if args[:1] == ["--"] else args


def get_numeric_arg(ctx: Invocation, fatal: bool) -> int | None:
    """bash's get_numeric_arg (builtins/common.c): the count the arguments give (a
    ``--`` first skipped; none: 1); N not a number is bash's complaint and None, or with
    ``fatal`` its throw_to_top_level() (status | 128; a script ends, a prompt goes on);
    more arguments are :func:`no_args`'."""
    args = _skip_dashes(ctx.args)
    if not args:
        return 1
    count = legal_number(args[0])
    if count is None:
        message = f"{args[0]}: numeric argument required"
        if fatal:
            raise ExpansionError(f"{ctx.name}: {message}", fatal=True,
                                 status=ctx.shell.status | 128)
        ctx.builtin_err(message)
        return None
    no_args(ctx, args[1:])
    return count


def get_exitstat(ctx: Invocation) -> int:
    """bash's get_exitstat (builtins/common.c), exit's and return's status: N & 255 (a
    ``--`` first skipped; none: the last status; N not a number: bash's complaint and
    2, EX_BADUSAGE); more arguments are :func:`no_args`'."""
    args = _skip_dashes(ctx.args)
    if not args:
        return ctx.shell.status
    number = legal_number(args[0])
    if number is None:
        ctx.builtin_err(f"{args[0]}: numeric argument required")
        return 2
    no_args(ctx, args[1:])
    return number & 0xFF


_HELP_COLUMN = 26
#: What help says of bash's builtins and reserved words the shell refuses.
_REFUSED_SUMMARY = "(bash's: not supported by ftrace-shell)"
#: bash's help topics that are no command of the shell's (help.def's list holds its
#: reserved words too): exec and the compound commands, which the shell runs itself, and
#: the reserved words it refuses: (usage, summary).
_OTHER_TOPICS = {
    "exec": ("exec [COMMAND [ARG...]] [REDIRECTION...]",
             "become COMMAND (none: the redirections are the shell's)"),
    "if": ("if LIST; then LIST; [elif LIST; then LIST;]... [else LIST;] fi",
           "run the LIST after the first test LIST that succeeds"),
    "for": ("for NAME [in WORDS...]; do LIST; done", "run LIST for each word, NAME set to it"),
    "while": ("while LIST; do LIST; done", "run LIST while the test LIST succeeds"),
    "until": ("until LIST; do LIST; done", "run LIST until the test LIST succeeds"),
    "case": ("case WORD in [(]PATTERN[|PATTERN]...) LIST ;;... esac",
             "run the LIST of the first PATTERN that matches WORD"),
    "function": ("function NAME { LIST; } or NAME() { LIST; }", "define a function"),
    "{ ... }": ("{ LIST; }", "run LIST as one command"),
    **{name: (name, _REFUSED_SUMMARY)
       for name in ("for ((", "select", "time", "[[ ... ]]", "(( ... ))", "coproc",
                    # bash's topics that are no builtin (compgen -b lists neither): a job
                    # spec (job control), and its text on the shell variables.
                    "%", "variables")},
}


def _topics() -> dict[str, tuple[str, str]]:
    """help's topics by name: (usage, summary)."""
    return {**{name: (spec.usage, spec.summary) for name, spec in COMMANDS.items()},
            **_OTHER_TOPICS}


def _help_line(ctx: Invocation, usage: str, summary: str) -> None:
    # A long usage puts its summary on the next line, to stay within 80 columns.
    if len(usage) >= _HELP_COLUMN:
        usage += "\n" + " " * (_HELP_COLUMN + 2)
    ctx.out(f"  {usage:<{_HELP_COLUMN}}{summary}\n")


@command("help [PATTERN...]", "list the commands (those PATTERN matches)", builtin=True)
def cmd_help(ctx: Invocation) -> int:
    """The shell's help; with PATTERNs, the topics they match as bash 5.2's help matches
    its own (a glob, or, where that matched none, a name's start), each a line: a command's usage and what it does, or,
    for one of bash's the shell refuses (``help eval``), that it refuses it; bash's
    complaint where none matches. Without, the syntax and the commands, and the builtins
    refused."""
    parsed = internal_getopt(ctx, "", "help [-dms] [pattern ...]", unsupported="dms")
    if isinstance(parsed, int):
        return parsed
    _, patterns = parsed
    topics = _topics()
    if patterns:
        # bash's order: each pattern's topics in turn; its second pass, for names the
        # pattern starts, only where its first found none (help read: not readonly).
        names = [name for pattern in patterns for name in (
            [name for name in sorted(topics) if strmatch(pattern, encode(name))]
            or [name for name in sorted(topics) if name.startswith(pattern)])]
        if not names:
            pattern = patterns[-1]  # bash names its last
            ctx.builtin_err(f"no help topics match `{pattern}'.  Try `help help' or "
                            f"`man -k {pattern}' or `info {pattern}'.")
            return 1
        for name in names:
            _help_line(ctx, *topics[name])
        return 0
    ctx.out("ftrace-shell: a small bash for ftraced. Paths are the daemon's:\n"
            "/sys/kernel/debug/tracing, /sys/kernel/tracing, /proc/modules, /proc/kallsyms,\n"
            "/proc/sys/kernel/ftrace_enabled.\n"
            "Syntax: quotes, # comments, ; && || !, > >> 2> N>&M < N< N<&M N<&-, pipes\n"
            "into grep, NAME=VALUE, $NAME ${NAME} ${#NAME} ${NAME:-WORD} (:= :? :+) $? $$\n"
            "$# $0 and $(COMMAND), split on $IFS; if LIST; then LIST; [elif LIST; then\n"
            "LIST;] [else LIST;] fi, while LIST; do LIST; done, until ..., for NAME in\n"
            "WORDS; do LIST; done, case WORD in [(]PATTERN[|PATTERN]...) LIST ;; (;& ;;&)\n"
            "... esac, { LIST; } (with redirections after them: done > FILE, done < FILE);\n"
            "functions NAME() COMPOUND [REDIRECTIONS] and function NAME COMPOUND, with\n"
            "$1... $# $@ $*, return and local; the shell's $1... are its arguments after\n"
            "SCRIPT (-c COMMAND NAME), set -- and shift change them; exec COMMAND [ARG...]\n"
            "and exec REDIRECTION...; no globbing, no brace expansion ({1..3} a{b,c} are\n"
            "refused).\n\n")
    for name in sorted(COMMANDS.keys() | {"exec"}):
        if name == "exec" or COMMANDS[name].run is not cmd_refused:
            _help_line(ctx, *topics[name])
    ctx.out("\n" + textwrap.fill("bash's other builtins are refused: "
                                 + " ".join(REFUSED_BUILTINS) + ".", 80) + "\n")
    return 0


_CD_USAGE = "cd [-L|[-P [-e]] [-@]] [dir]"


@command("cd [-L|-P] [DIR|-]", "change the working directory (start: /; none: $HOME)",
         builtin=True)
def cmd_cd(ctx: Invocation) -> int:
    """bash's cd_builtin. -L and -P are one: the daemon's tree has no symbolic links."""
    shell = ctx.shell
    parsed = internal_getopt(ctx, "LP", _CD_USAGE, unsupported="e@")
    if isinstance(parsed, int):
        return parsed
    _, args = parsed
    if len(args) > 1:
        ctx.builtin_err("too many arguments")
        return 1
    # bash takes `cd ""` for `cd .`: it stays, and OLDPWD becomes the working directory.
    if args:
        arg = args[0]
    else:
        home = shell.variables.get("HOME")
        if home is None:
            ctx.builtin_err("HOME not set")
            return 1
        arg = home
    if arg == "-":
        oldpwd = shell.variables.get("OLDPWD")
        if oldpwd is None:
            ctx.builtin_err("OLDPWD not set")
            return 1
        arg = oldpwd
    try:
        stat = shell.client.stat(shell.resolve(arg or "."))
    except FtraceError as error:
        ctx.builtin_err(f"{arg}: {shell.reason(error)}")
        return 1
    if not stat.entry.is_dir:
        ctx.builtin_err(f"{arg}: Not a directory")
        return 1
    shell.cwd = stat.path
    shell.variables.change_directory(shell.cwd)
    if args == ["-"]:
        ctx.out(arg + "\n")  # as bash, `cd -` prints $OLDPWD as written
    return 0


@command("pwd", "print the working directory", builtin=True)
def cmd_pwd(ctx: Invocation) -> int:
    """bash's pwd_builtin: -L and -P are one (no symbolic links); other arguments are
    ignored, as bash's."""
    parsed = internal_getopt(ctx, "LP", "pwd [-LP]")
    if isinstance(parsed, int):
        return parsed
    ctx.out(ctx.shell.cwd + "\n")
    return 0


_ECHO_ESCAPE = re.compile(
    rb"\\(0[0-7]{0,3}|x[0-9A-Fa-f]{1,2}|u[0-9A-Fa-f]{1,4}|U[0-9A-Fa-f]{1,8}|.)", re.DOTALL)
_ECHO_SIMPLE = {b"a": b"\a", b"b": b"\b", b"e": b"\x1b", b"E": b"\x1b", b"f": b"\f",
                b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v", b"\\": b"\\"}


def _utf8(code: int) -> bytes:
    """bash's u32toutf8: UTF-8's scheme for any value up to 31 bits (a surrogate, one
    beyond U+10FFFF too)."""
    if code < 0x80:
        return bytes([code])
    for length, limit in ((2, 0x800), (3, 0x10000), (4, 0x200000), (5, 0x4000000), (6, 1 << 31)):
        if code < limit:
            break
    tail = [0x80 | (code >> (6 * index)) & 0x3F for index in range(length - 1)]
    lead = (0xFF << (8 - length)) & 0xFF | code >> (6 * (length - 1))
    return bytes([lead, *reversed(tail)])


def _unicode(code: int, utf8: bool) -> bytes:
    """echo -e's \\uHHHH and \\UHHHHHHHH, as bash's u32cconv: ASCII as itself; else
    UTF-8 in a UTF-8 locale, and in another (the C locale) the escape again, in bash's
    spelling. One beyond 31 bits is nothing, as bash's."""
    if code >= 1 << 31:
        return b""
    if code < 0x80 or utf8:
        return _utf8(code)
    return (f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}").encode()


def utf8_locale(ctx: Invocation) -> bool:
    """The shell's LC_CTYPE is UTF-8 (LC_ALL, else LC_CTYPE, else LANG, as bash sets it
    from its variables)."""
    get = ctx.shell.variables.get
    value = get("LC_ALL") or get("LC_CTYPE") or get("LANG") or ""
    return re.search(r"utf-?8", value, re.IGNORECASE) is not None


def _echo_interpret(data: bytes, utf8: bool = False) -> tuple[bytes, bool]:
    """echo -e: (the bytes with escapes interpreted, whether \\c cut the output);
    ``utf8``: the locale's character set is UTF-8 (\\u263a is then its bytes)."""
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
        elif code[:1] in (b"u", b"U") and len(code) > 1:
            out.append(_unicode(int(code[1:], 16), utf8))
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
        data, cut = _echo_interpret(data, utf8_locale(ctx))
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
            ctx.err(f"ls: cannot access '{operand}': {ctx.shell.reason(error)}")
            status = 2
            continue
        if "a" in options:
            entries = [(".", True, stat.entry.mode, 0), ("..", True, 0o755, 0)] + entries
        directories.append((operand, entries))

    # GNU ls lists the files named first, then the directories, each sorted (by their
    # bytes, the C locale's strcmp), after the errors of those it could not access.
    files.sort(key=lambda row: encode(row[0]))
    directories.sort(key=lambda directory: encode(directory[0]))

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


#: GNU cat 9.1's long options, in cat.c's order: a name's letter, or (--help, --version)
#: a name of its own.
_CAT_LONG_OPTIONS = {
    "number-nonblank": "b", "number": "n", "squeeze-blank": "s", "show-nonprinting": "v",
    "show-ends": "E", "show-tabs": "T", "show-all": "A", "help": "help", "version": "version",
}
#: What GNU cat has and ftrace-shell's cat does not: refused, never read as a file name.
_CAT_UNSUPPORTED = {*"AEbestv", "help", "version"}


class _LineNumbers:
    """GNU cat's -n: ``%6d\t`` before each line, counted across all the files; a line a
    read or a file leaves unfinished goes on under its number."""

    def __init__(self) -> None:
        self.count = 0
        self.at_line_start = True

    def __call__(self, data: bytes) -> bytes:
        out = bytearray()
        for line in re.findall(rb"[^\n]*\n|[^\n]+", data):
            if self.at_line_start:
                self.count += 1
                out += b"%6d\t" % self.count
            out += line
            self.at_line_start = line.endswith(b"\n")
        return bytes(out)


@command("cat [-nu] [FILE...]",
         "print files (-n: numbered lines; -u: ignored; trace_pipe streams until Ctrl-C)")
def cmd_cat(ctx: Invocation) -> int:
    """GNU cat: the options first, anywhere before ``--`` (glibc's getopt), a bad or
    unsupported one ending it with status 1 before any file is read (after one refused,
    the usage of the shell's cat, where GNU's points at its --help, refused too); then each
    file, or standard input for none or ``-``, in order; then, having read standard input,
    its close(2), which fails where it is closed (``cat <&-``): GNU's second complaint."""
    operands: list[str] = []
    numbers: _LineNumbers | None = None
    try:
        for letter, value in getopt(ctx, "nu", (), _CAT_LONG_OPTIONS,
                                    unsupported=_CAT_UNSUPPORTED):
            if letter == "?":
                ctx.try_help()
                return 1
            if letter == "n":
                numbers = numbers or _LineNumbers()
            elif not letter:
                operands.append(value)
    except UnsupportedOption:
        ctx.err(f"Usage: {COMMANDS['cat'].usage} (--number: -n)")
        return 1
    status = 0
    for operand in operands or ["-"]:
        try:
            for data in ctx.stdin_reads() if operand == "-" else read_path(ctx, operand):
                ctx.out(numbers(data) if numbers else data)
        except FtraceError as error:
            ctx.err(f"cat: {operand}: {ctx.shell.reason(error)}")
            status = 1
    if "-" in (operands or ["-"]) and is_closed(ctx.stdin):
        ctx.err(f"cat: closing standard input: {os.strerror(errno.EBADF)}")
        return 1
    return status


_SLEEP_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: What a longer sleep is cut to (68 years; a wait refuses more than threading's
#: TIMEOUT_MAX, 292), as coreutils' sleep cuts one its timespec cannot hold: it sleeps
#: until interrupted.
_SLEEP_MAX = float(2**31)


#: What GNU sleep's xstrtod() takes (C's strtod: leading white space, a sign, a decimal
#: or hexadecimal number, inf, infinity, nan), then one unit letter at most.
_SLEEP_INTERVAL = re.compile(
    r"[ \t\n\v\f\r]*([+-]?(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|infinity|inf|nan"
    r"|0x(?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?\d+)?))([smhd]?)",
    re.IGNORECASE | re.ASCII)  # strtod's digits are ASCII's: not Unicode's other digits


def _sleep_interval(arg: str) -> float | None:
    """GNU sleep's reading of one interval: its seconds, None for an invalid one (not a
    number as strtod reads it, a suffix beyond one unit, below 0, nan)."""
    match = _SLEEP_INTERVAL.fullmatch(arg)
    if match is None:
        return None
    number, unit = match.groups()
    hexadecimal = number.lstrip("+-")[:2].lower() == "0x"
    value = float.fromhex(number) if hexadecimal else float(number)
    if not value >= 0:  # negative, or nan
        return None
    return value * _SLEEP_UNITS[unit]


@command("sleep SECONDS[smhd]...", "wait (really) that long")
def cmd_sleep(ctx: Invocation) -> int:
    if not ctx.args:
        ctx.err("sleep: missing operand")
        ctx.try_help()
        return 1
    total = 0.0
    operands = []
    for letter, value in getopt(ctx, ""):  # GNU's: ``sleep -1`` is an invalid option
        if letter == "?":
            ctx.try_help()
            return 1
        operands.append(value)
    for arg in operands:
        seconds = _sleep_interval(arg)
        if seconds is None:
            ctx.err(f"sleep: invalid time interval '{arg}'")
            ctx.try_help()
            return 1
        total += seconds
    ctx.shell.stage.sleep(min(total, _SLEEP_MAX))
    return 0


def _loop_control(ctx: Invocation, counter: str) -> int:
    """bash's break_builtin and continue_builtin: outside a loop (check_loop_level) a
    complaint, and status 0; else the shell's ``counter`` ("breaking" or "continuing")
    becomes N (:func:`get_numeric_arg`, fatal), at most the loops running; N below 1
    breaks out of all, named as the first argument is written (``--`` too)."""
    shell = ctx.shell
    if shell.loop_level == 0:
        ctx.builtin_err("only meaningful in a `for', `while', or `until' loop")
        return 0
    count = get_numeric_arg(ctx, fatal=True)
    assert count is not None  # fatal: a bad N raised
    if count <= 0:
        ctx.builtin_err(f"{ctx.args[0]}: loop count out of range")
        shell.breaking = shell.loop_level
        return 1
    setattr(shell, counter, min(count, shell.loop_level))
    return 0


@command("break [N]", "leave N enclosing for, while or until loops (default 1)", builtin=True)
def cmd_break(ctx: Invocation) -> int:
    return _loop_control(ctx, "breaking")


@command("continue [N]", "next round of the Nth enclosing loop (default 1)",
         builtin=True)
def cmd_continue(ctx: Invocation) -> int:
    return _loop_control(ctx, "continuing")


@command("return [N]", "leave the function running with status N (default: the last one)",
         builtin=True)
def cmd_return(ctx: Invocation) -> int:
    """bash's return_builtin: the status :func:`get_exitstat` reads, then the function
    returns with it; outside one, a complaint and status 2."""
    status = get_exitstat(ctx)
    if not ctx.shell.funcnest:
        ctx.builtin_err("can only `return' from a function or sourced script")
        return 2
    raise FunctionReturn(status)


@command("shift [N]", "drop the first N positional parameters (default 1)", builtin=True)
def cmd_shift(ctx: Invocation) -> int:
    """bash's shift_builtin (builtins/shift.def): N (:func:`get_numeric_arg`, not fatal)
    below 0 is out of range; more than ``$#`` is status 1 with nothing said (bash says
    it only under ``shopt -s shift_verbose``, which the shell has not)."""
    count = get_numeric_arg(ctx, fatal=False)
    if count is None:
        return 1
    shell = ctx.shell
    if count < 0:
        ctx.builtin_err(f"{ctx.args[0]}: shift count out of range")
        return 1
    if count > len(shell.positional):
        return 1
    shell.positional = shell.positional[count:]
    return 0


#: bash's set options (flags.c's shell_flags, and -o), each refused by name: the shell has
#: none of them.
_SET_OPTIONS = "abefhkmnoprtuvxBCEHPT"
_SET_USAGE = "set [-abefhkmnptuvxBCEHPT] [-o option-name] [--] [-] [arg ...]"


@command("set [--] [ARG...]", "make ARG... the positional parameters $1...",
         builtin=True)
def cmd_set(ctx: Invocation) -> int:
    """bash's set_builtin, as far as it sets the positional parameters: the arguments
    after a first ``--`` (none: ``set --`` unsets them all), or from the first argument
    that is no option (``set a -x``); a ``+`` alone before them changes nothing. Its
    options (``set -e``, ``set -o pipefail``, ``set -`` for ``set +xv``) are refused by
    name, a letter bash has not is its invalid option; ``set`` alone, which lists the
    variables and functions, is refused. A refused option ends a shell that is not
    interactive (status 2): the script would run on without what it asked for (``set
    -e``: past the failure it was to stop at)."""
    if not ctx.args:
        ctx.builtin_err("listing the variables and functions is not supported by ftrace-shell")
        return 2

    def refused() -> None:
        if ctx.shell.mode != "interactive":
            raise ShellExit(2)

    # bash's internal_getopt checks the options up to the first operand, "--", or a "-"
    # or "+" alone; the options after a "+" alone are looked at below.
    parsed = internal_getopt(ctx, "", _SET_USAGE, unsupported=_SET_OPTIONS, plus=True,
                             refused=refused)
    if isinstance(parsed, int):
        return parsed
    args = list(ctx.args)
    while args and args[0][:1] in ("-", "+"):
        arg = args.pop(0)
        if arg == "--":
            ctx.shell.positional = tuple(args)
            return 0
        if arg == "-":
            ctx.builtin_err("option '-' is not supported by ftrace-shell")
            refused()
            return 2
        # After a "+" alone: the letters bash's internal_getopt did not look at.
        for letter in arg[1:]:
            if letter in _SET_OPTIONS:
                ctx.builtin_err(f"option '{arg[0]}{letter}' is not supported by ftrace-shell")
                refused()
                return 2
            ctx.builtin_err(f"{arg[0]}{letter}: invalid option")
            ctx.err(f"{ctx.name}: usage: {_SET_USAGE}")
            return 1
    if args:
        ctx.shell.positional = tuple(args)
    return 0


#: bash 5.2's builtins (``compgen -b``) the shell does not have: each refused by name,
#: where "command not found" would have read as bash's own answer. (declare, typeset and
#: type: bash prints a function as it re-creates its text from the parsed commands,
#: which the shell does not.)
REFUSED_BUILTINS = (
    ".", "alias", "bg", "bind", "builtin", "caller", "command", "compgen", "complete",
    "compopt", "declare", "dirs", "disown", "enable", "eval", "fc", "fg", "getopts", "hash",
    "history", "jobs", "kill", "let", "logout", "mapfile", "popd", "printf", "pushd",
    "readarray", "readonly", "shopt", "source", "suspend", "times", "trap", "type",
    "typeset", "ulimit", "umask", "unalias", "wait")


def cmd_refused(ctx: Invocation) -> int:
    """A builtin of bash's the shell does not have (REFUSED_BUILTINS)."""
    ctx.err(f"{ctx.shell.prefix()}: {ctx.name}: not supported by ftrace-shell")
    return 2


for _name in REFUSED_BUILTINS:
    command(_name, _REFUSED_SUMMARY, builtin=True)(cmd_refused)
