"""ftrace-shell's language without a daemon: tokenizing, parsing, and the exit-status rules
(run with commands that need no daemon: echo, true, false, exit, pwd)."""

from __future__ import annotations

import os

import pytest

from clients.shell import Shell, check_binary_file
from clients.shell_builtins import _echo_interpret
from clients.shell_parser import (
    QUOTED_NULL,
    AndOr,
    Command,
    Incomplete,
    Pipeline,
    Redirect,
    ShellSyntaxError,
    parse,
    tokenize,
)
from clients.shell_runtime import BufferOutput, ShellExit
from tests.real_bash import GREP_ENVIRONMENT, run_bash


def words(text: str) -> list[str]:
    """The words' texts, a quoted null's marker ('' or "") taken out."""
    return [token.text.replace(QUOTED_NULL, "") for token in tokenize(text)
            if token.kind == "word"]


def single(text: str) -> Command:
    """The one command ``text`` parses to."""
    (node,) = parse(text)
    assert node.rest == ()
    (command,) = node.first.commands
    return command


# --- tokenizing ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("echo a  b\tc", ["echo", "a", "b", "c"]),
        ("echo 'a b' \"c d\"", ["echo", "a b", "c d"]),
        ("echo a'b'\"c\"d", ["echo", "abcd"]),
        ("echo 'it''s'", ["echo", "its"]),
        ("echo \"it's\" 'say \"hi\"'", ["echo", "it's", 'say "hi"']),
        (r"echo a\ b \'c\' \\", ["echo", "a b", "'c'", "\\"]),
        (r'echo "a\"b" "c\d" "e\\f" "\$"', ["echo", 'a"b', r"c\d", r"e\f", "$"]),
        (r"echo 'a\nb'", ["echo", r"a\nb"]),
        ("echo ''", ["echo", ""]),
        ("echo \"\" x", ["echo", "", "x"]),
        ("echo uinput* '*' !x", ["echo", "uinput*", "*", "!x"]),
        ("echo 'uinput_release:mod:uinput'", ["echo", "uinput_release:mod:uinput"]),
        ("echo $ a$ $/ \"$\" \\$a '$a'", ["echo", "$", "a$", "$/", "$", "$a", "$a"]),
        ("echo '$(ls)' '`' \\` \"\\`\"", ["echo", "$(ls)", "`", "`", "`"]),  # quoted: plain
    ],
)
def test_words_and_quotes(text, expected):
    assert words(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("echo a # a comment", ["echo", "a"]),
        ("# only a comment", []),
        ("   # indented comment", []),
        ("echo a#b", ["echo", "a#b"]),
        ("echo '# not a comment'", ["echo", "# not a comment"]),
        ('echo "#x" #y', ["echo", "#x"]),
        ("echo a;# comment after ;", ["echo", "a"]),
        (r"echo \#x", ["echo", "#x"]),
    ],
)
def test_comments(text, expected):
    assert words(text) == expected


def test_the_reports_comment_line_is_nothing():
    assert parse("# check /proc/modules to see if loaded in same addr, otherwise try again\n") == []


def test_backslash_newline_continues_the_line():
    assert words("echo a \\\nb") == ["echo", "a", "b"]
    assert words("echo ab\\\ncd") == ["echo", "abcd"]
    assert words('echo "a\\\nb"') == ["echo", "ab"]
    assert words("echo 'a\\\nb'") == ["echo", "a\\\nb"]  # no escapes in single quotes


def test_tokens_carry_their_line():
    tokens = tokenize("echo a\n\necho 'x\ny' z\n", line=10)
    assert [(t.kind, t.text, t.line) for t in tokens] == [
        ("word", "echo", 10), ("word", "a", 10), ("newline", "\n", 10),
        ("newline", "\n", 11),
        ("word", "echo", 12), ("word", "x\ny", 12), ("word", "z", 13), ("newline", "\n", 13),
    ]


# --- lists, and-or, pipelines --------------------------------------------------------


def test_semicolons_and_newlines_separate_commands():
    program = parse("echo a; echo b\necho c;\n\n")
    assert [node.first.commands[0].words for node in program] == [
        ("echo", "a"), ("echo", "b"), ("echo", "c"),
    ]
    assert [node.first.commands[0].line for node in program] == [1, 1, 2]


def test_and_or_lists_are_flat_and_ordered():
    (node,) = parse("true && echo a || echo b && echo c")
    assert node.first.commands[0].words == ("true",)
    assert [(op, p.commands[0].words) for op, p in node.rest] == [
        ("&&", ("echo", "a")), ("||", ("echo", "b")), ("&&", ("echo", "c")),
    ]


def test_operators_need_no_spaces():
    (first, second) = parse("echo a&&echo b;echo c||echo d")
    assert first.first.commands[0].words == ("echo", "a")
    assert first.rest[0][0] == "&&"
    assert second.rest[0][0] == "||"


def test_pipeline_into_grep():
    (node,) = parse("cat available_filter_functions | grep uinput")
    assert node == AndOr(Pipeline((
        Command(("cat", "available_filter_functions"), (), 1),
        Command(("grep", "uinput"), (), 1),
    )))


def test_and_or_and_pipe_continue_on_the_next_line():
    (node,) = parse("cat f |\n\n grep x &&\n echo y")
    assert [c.words[0] for c in node.first.commands] == ["cat", "grep"]
    assert node.rest[0][1].commands[0].line == 4


# --- redirections --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, redirects, command_words",
    [
        ("echo x > f", (Redirect(1, ">", "f"),), ("echo", "x")),
        ("echo x >f", (Redirect(1, ">", "f"),), ("echo", "x")),
        ("echo x >> f", (Redirect(1, ">>", "f"),), ("echo", "x")),
        ("echo x>>f", (Redirect(1, ">>", "f"),), ("echo", "x")),
        ("echo x >| f", (Redirect(1, ">", "f"),), ("echo", "x")),
        ("> f echo x", (Redirect(1, ">", "f"),), ("echo", "x")),
        ("cat f 2>/dev/null", (Redirect(2, ">", "/dev/null"),), ("cat", "f")),
        ("cat f 2> /dev/null > g", (Redirect(2, ">", "/dev/null"), Redirect(1, ">", "g")), ("cat", "f")),
        ("echo x 2>&1", (Redirect(2, ">&", "1"),), ("echo", "x")),
        ("echo x >&2", (Redirect(1, ">&", "2"),), ("echo", "x")),
        ("echo x > 'a file'", (Redirect(1, ">", "a file"),), ("echo", "x")),
        ("echo a2>f", (Redirect(1, ">", "f"),), ("echo", "a2")),  # only a lone number is an fd
        ("echo '2'>f", (Redirect(1, ">", "f"),), ("echo", "2")),  # a quoted one is a word
        ("echo 2 >f", (Redirect(1, ">", "f"),), ("echo", "2")),
        ("echo x \u00b2>f", (Redirect(1, ">", "f"),), ("echo", "x", "\u00b2")),  # not ASCII
        ("echo x 2147483648>f", (Redirect(1, ">", "f"),), ("echo", "x", "2147483648")),
        ("echo x 2147483647>f", (Redirect(2147483647, ">", "f"),), ("echo", "x")),
        ("> f", (Redirect(1, ">", "f"),), ()),
    ],
)
def test_redirections(text, redirects, command_words):
    command = single(text)
    assert command.redirects == redirects
    assert command.words == command_words


def test_the_reproducer_parses_as_written():
    script = (  # verbatim from the report (shared/spec/upstream-report-8c4f3c3.txt)
        "cd /sys/kernel/debug/tracing\n"
        "modprobe uinput\n"
        "echo uinput_release > set_ftrace_filter\n"
        "echo function > current_tracer\n"
        "rmmod uinput\n"
        "modprobe uinput\n"
        "# check /proc/modules to see if loaded in same addr, otherwise try again\n"
        "echo nop > current_tracer\n"
    )
    commands = [node.first.commands[0] for node in parse(script)]
    assert [(c.words, c.redirects, c.line) for c in commands] == [
        (("cd", "/sys/kernel/debug/tracing"), (), 1),
        (("modprobe", "uinput"), (), 2),
        (("echo", "uinput_release"), (Redirect(1, ">", "set_ftrace_filter"),), 3),
        (("echo", "function"), (Redirect(1, ">", "current_tracer"),), 4),
        (("rmmod", "uinput"), (), 5),
        (("modprobe", "uinput"), (), 6),
        (("echo", "nop"), (Redirect(1, ">", "current_tracer"),), 8),
    ]


# --- parameters ------------------------------------------------------------------------


def test_status_and_pid_parameters_expand_when_run():
    status, out, _ = run('false; echo $? "$?" \'$?\' $$ x$?y \\$?')
    assert (status, out) == (0, f"1 1 $? {os.getpid()} x1y $?\n")


# --- syntax errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message, line",
    [
        ("echo a ;;", "syntax error near unexpected token `;;'", 1),
        ("; echo a", "syntax error near unexpected token `;'", 1),
        ("echo a && && b", "syntax error near unexpected token `&&'", 1),
        ("echo a\n| grep x", "syntax error near unexpected token `|'", 2),
        ("echo >", "syntax error near unexpected token `newline'", 1),
        ("echo > ;", "syntax error near unexpected token `;'", 1),
        # bash 5.2's too: after one word, "(" starts a function definition, "name ( )".
        ("echo (x)", "syntax error near unexpected token `x'", 1),
        ("echo (", "syntax error near unexpected token `newline'", 1),
        ("echo x (y)", "syntax error near unexpected token `('", 1),
        ("a=1 (x)", "syntax error near unexpected token `('", 1),  # no function's name
        ("'if' (x)", "syntax error near unexpected token `x'", 1),  # quoted: a name
        # A reserved word starting a command: refused, or (closing one) bash's error.
        ("time (x)", "a timed pipeline (`time') is not supported by ftrace-shell", 1),
        # Brace expansion, which bash makes before any other (it made i={1..3} of
        # ``for i in {1..3}``); none in an assignment; quoted or expanded text shown "...".
        ("for i in {1..3}; do :; done",
         "brace expansion (`{1..3}') is not supported by ftrace-shell", 1),
        ("echo a{,}", "brace expansion (`{,}') is not supported by ftrace-shell", 1),
        ("echo {a..c..2}", "brace expansion (`{a..c..2}') is not supported by ftrace-shell", 1),
        ("echo\necho {\"a\",$x}",
         "brace expansion (`{...,...}') is not supported by ftrace-shell", 2),
        ("echo a={x,y}", "brace expansion (`{x,y}') is not supported by ftrace-shell", 1),
        # Not a background job (`&'): bash's &> and |&.
        ("echo y &> /dev/null",
         "redirecting stdout and stderr at once (`&>') is not supported by ftrace-shell", 1),
        ("{ echo y; } &>>/dev/null",
         "redirecting stdout and stderr at once (`&>>') is not supported by ftrace-shell", 1),
        ("echo y |& grep y",
         "piping stdout and stderr at once (`|&') is not supported by ftrace-shell", 1),
        # Assignments bash makes and the shell not (they were "command not found").
        ("a+=y", "an appending assignment (`a+=') is not supported by ftrace-shell", 1),
        ("x=1 a+=b true", "an appending assignment (`a+=') is not supported by ftrace-shell", 1),
        ("export a+=b", "an appending assignment (`a+=') is not supported by ftrace-shell", 1),
        ("a[0]=1", "an array element's assignment (`a[0]=') is not supported by ftrace-shell",
         1),
        ("local a[$i]=1",
         "an array element's assignment (`a[...]=') is not supported by ftrace-shell", 1),
        ("a=(1 2)", "an array assignment (`a=(') is not supported by ftrace-shell", 1),
        ("export a={x,y}", "brace expansion (`{x,y}') is not supported by ftrace-shell", 1),
        ("! (x)", "a subshell (`(') is not supported by ftrace-shell", 1),
        ("function f ( ) (x)", "a subshell (`(') is not supported by ftrace-shell", 1),
        ("if (true); then echo a; fi", "a subshell (`(') is not supported by ftrace-shell", 1),
        ("for ((i = 0; i < 2; i++)); do :; done",
         "an arithmetic for loop (`for ((') is not supported by ftrace-shell", 1),
        ("select i in a; do :; done", "a select command (`select') is not supported by ftrace-shell", 1),
        ("echo a; { echo b; } <<< f", "a here-string (`<<<') is not supported by ftrace-shell",
         1),
        ("[[ -n a ]]", "a conditional command (`[[') is not supported by ftrace-shell", 1),
        ("coproc cat", "a coprocess (`coproc') is not supported by ftrace-shell", 1),
        ("fi", "syntax error near unexpected token `fi'", 1),
        ("echo a; done", "syntax error near unexpected token `done'", 1),
        ("echo a\n}", "syntax error near unexpected token `}'", 2),
        ("echo a || then", "syntax error near unexpected token `then'", 1),
        ("f() [[ x ]]", "a conditional command (`[[') is not supported by ftrace-shell", 1),
        ("echo a\nf ( ) ((1))", "an arithmetic command (`((') is not supported by ftrace-shell", 2),
        ("(echo x)", "a subshell (`(') is not supported by ftrace-shell", 1),
        ("while ((i < 3)); do :; done",
         "an arithmetic command (`((') is not supported by ftrace-shell", 1),
        ("echo a;(echo x)", "a subshell (`(') is not supported by ftrace-shell", 1),
        ("echo a &&\n (echo x)", "a subshell (`(') is not supported by ftrace-shell", 2),
        ("echo $(ls; (x))", "a subshell (`(') is not supported by ftrace-shell", 1),
        ('echo\necho "a$(echo `ls`)"', "command substitution (``') is not supported by ftrace-shell", 2),
        ("echo $((1+1))", "arithmetic expansion (`$((') is not supported by ftrace-shell", 1),
        ("echo `ls`", "command substitution (``') is not supported by ftrace-shell", 1),
        ('echo "`ls`"', "command substitution (``') is not supported by ftrace-shell", 1),
        ("cat << EOF", "a here-document (`<<') is not supported by ftrace-shell", 1),
        ("cat <<< word", "a here-string (`<<<') is not supported by ftrace-shell", 1),
        ("cat <> f", "opening a file for reading and writing (`<>') is not supported by "
         "ftrace-shell", 1),
        ("cat 3<>f", "opening a file for reading and writing (`<>') is not supported by "
         "ftrace-shell", 1),
        ("cat <&3-", "`<&3-': only <&N (a file descriptor) and <&- are supported by "
         "ftrace-shell", 1),
        ("sleep 5 &", "a background job (`&') is not supported by ftrace-shell", 1),
        ("echo >&f", "`>&f': only >&N (a file descriptor) and >&- are supported by ftrace-shell", 1),
        ("echo >&$fd", "`>&$fd': only >&N (a file descriptor) and >&- are supported by ftrace-shell", 1),
        # Parameters: what the shell does not expand is refused, never printed as written.
        ("echo ${a%b}", "a parameter expansion operator (`${a%b}') is not supported by "
         "ftrace-shell", 1),
        ("echo ${a:1}", "a parameter expansion operator (`${a:1}') is not supported by "
         "ftrace-shell", 1),
        ('echo ${a:-"b c"}', "quoting or an expansion in a parameter expansion's word "
         "(`${a:-\"b c\"}') is not supported by ftrace-shell", 1),
        ("echo ${a=$b}", "quoting or an expansion in a parameter expansion's word "
         "(`${a=$b}') is not supported by ftrace-shell", 1),
        ("echo ${#a[0]}", "a parameter expansion operator (`${#a[0]}') is not supported by "
         "ftrace-shell", 1),
        ("echo ~", "tilde expansion (`~') is not supported by ftrace-shell", 1),
        ("cd ~/x", "tilde expansion (`~') is not supported by ftrace-shell", 1),
        ("PATH=/bin:~/bin", "tilde expansion (`~') is not supported by ftrace-shell", 1),
        ("echo ${#-}", "the special parameter (`$-') is not supported by ftrace-shell", 1),
        ("echo ${!a}", "an indirect expansion (`${!a}') is not supported by ftrace-shell", 1),
        ("echo $-", "the special parameter (`$-') is not supported by ftrace-shell", 1),
        ('echo "$!"', "the special parameter (`$!') is not supported by ftrace-shell", 1),
        ("echo ${!}", "the special parameter (`$!') is not supported by ftrace-shell", 1),
        ("echo $'a\\tb'", "ANSI-C quoting (`$'') is not supported by ftrace-shell", 1),
    ],
)
def test_syntax_errors(text, message, line):
    with pytest.raises(ShellSyntaxError) as caught:
        parse(text)
    assert not isinstance(caught.value, Incomplete)
    assert (caught.value.message, caught.value.line) == (message, line)


@pytest.mark.parametrize(
    "text",
    [
        # Closing reserved words starting a command: bash's syntax error, status 2.
        "fi", "then", "else", "elif", "do", "done", "in", "esac", "}", "]]", "fi x",
        "echo a; fi", "echo a ;fi", "echo a && done", "echo a | }", "echo a\nesac",
        # Reserved words elsewhere are words: an argument, quoted, or not a command's
        # first word (after an assignment or a redirection).
        "echo if then fi done }", "'fi'", "\\fi", 'f""i', "{a", "}a", "'[['", "'{'",
        ">/dev/null if true", "2>/dev/null fi",
    ],
)
def test_reserved_words_where_bash_reads_them(text):
    assert_as_bash(text)


@pytest.mark.parametrize(
    "text, message",
    [
        ("echo 'abc", "unexpected EOF while looking for matching `''"),
        ('echo "abc', "unexpected EOF while looking for matching `\"'"),
        ("echo a &&", "syntax error: unexpected end of file"),
        ("echo a ||\n", "syntax error: unexpected end of file"),
        ("cat f |", "syntax error: unexpected end of file"),
        ("echo a \\\n", "syntax error: unexpected end of file"),
    ],
)
def test_incomplete_input_asks_for_more(text, message):
    with pytest.raises(Incomplete) as caught:
        parse(text)
    assert caught.value.message == message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("echo a \\\n", ["echo", "a"]),  # continues onto nothing
        ("echo a\\\n", ["echo", "a"]),
        ("echo a\\", ["echo", "a\\"]),  # the very last character: a -c command's
        ("echo a \\", ["echo", "a", "\\"]),
    ],
)
def test_a_final_backslash_at_the_end_of_input_is_no_syntax_error(text, expected):
    (node,) = parse(text, at_eof=True)
    assert list(node.first.commands[0].words) == expected


def test_what_the_end_of_input_leaves_open_is_still_a_syntax_error():
    for text in ("echo a &&\n", "echo 'a\\\n"):
        with pytest.raises(Incomplete):
            parse(text, at_eof=True)


# --- helpers of the builtins ----------------------------------------------------------------


@pytest.mark.parametrize(
    "data, expected",
    [
        (rb"a\tb\n", (b"a\tb\n", False)),
        (rb"\x41\0101\\", (b"AA\\", False)),
        (rb"keep \q", (b"keep \\q", False)),
        (rb"stop\cnot this", (b"stop", True)),
    ],
)
def test_echo_escapes(data, expected):
    assert _echo_interpret(data) == expected


# --- exit status rules (no daemon needed) ------------------------------------------------------


#: The environment both shells get where they are compared.
BASH_ENVIRONMENT = {"PATH": "/nonexistent", "LC_ALL": "C"}


def run(text: str, mode: str = "stdin", script: str | None = None,
        environ: dict[str, str] = BASH_ENVIRONMENT) -> tuple[int, str, str]:
    """Run ``text`` in a daemon-less shell: (exit status, stdout, stderr)."""
    out, err = BufferOutput(), BufferOutput()
    shell = Shell(None, mode=mode, script=script, stdout=out, stderr=err,  # type: ignore[arg-type]
                  environ=environ)
    try:
        if mode == "command":
            shell.feed_command(text)
        else:
            shell.feed_all(text.splitlines())
        status = shell.status
    except ShellExit as done:
        status = done.status
    return status, out.getvalue().decode(), err.getvalue().decode()


def assert_as_bash(text: str, environ: dict[str, str] = BASH_ENVIRONMENT,
                   mode: str = "command") -> None:
    """ftrace-shell against bash 5.2 (``bash -c TEXT``; ``mode`` "stdin": TEXT its
    standard input; "script": a script file holding TEXT): status, stdout and stderr
    byte for byte."""
    real = run_bash(text, environ, mode)
    assert run(text, mode=mode, script="script.sh" if mode == "script" else None,
               environ=environ) == real


@pytest.mark.parametrize("text", [
    # GNU's xstrtod: strtod's forms, then one unit (they were "invalid time interval").
    "sleep 1e-9 0x1p-30 +0.0 ' 0' 0.s 0x.0m .0e+5h 0X0P0d; echo $?",
    "sleep -1; echo $?", "sleep -- -1; echo $?", "sleep nan; echo $?", "sleep 1e; echo $?",
    "sleep 0ss; echo $?", "sleep '0 '; echo $?", "sleep 0x; echo $?", "sleep; echo $?",
])
def test_sleep_reads_intervals_as_gnu_sleep(text):
    assert_as_bash(text, GREP_ENVIRONMENT)


def test_sleep_takes_only_ascii_digits_as_strtod():
    """An Arabic-Indic one (U+0661) is no digit of strtod's (it slept a second)."""
    status, out, err = run("sleep \u0661; echo $?", mode="command")
    assert (status, out) == (0, "1\n") and err.startswith("sleep: invalid time interval ")


@pytest.mark.parametrize("text", [
    # help's topics as bash's: none matching is its complaint, 1 (it listed everything).
    "help nosuch; echo $?; help -x; echo $?; help nosuch other; echo $?",
    # pwd's options as bash's: -L and -P; another letter is invalid; operands ignored.
    "pwd -x; echo $?; pwd extra; echo $?; pwd -L; pwd -P; pwd -LP --; echo $?",
])
def test_help_and_pwd_arguments_as_bash(text):
    assert_as_bash(text)


def test_lsmod_takes_no_argument_as_kmods():
    assert run("lsmod x; echo $?", mode="command") == (0, "1\n", "Usage: lsmod\n")


@pytest.mark.parametrize("locale", ["C", "C.UTF-8"])
def test_echo_unicode_escapes_as_bash(locale):
    """\\u and \\U: UTF-8 in a UTF-8 locale, the escape again in the C locale's (they
    were left as written)."""
    assert_as_bash('echo -e "\\u263a \\u41 \\U1F600 \\u \\uZ \\u00e9x" \'\\U000000e9\'; '
                   'echo -e "a\\Uffffffffb"; LC_ALL=C; echo -e "\\u263a" "a\\Uffffffffb"',
                   {**BASH_ENVIRONMENT, "LC_ALL": locale})


@pytest.mark.parametrize(
    "text, status, stdout",
    [
        ("true", 0, ""),
        ("false", 1, ""),
        ("false; true", 0, ""),
        ("true; false", 1, ""),
        ("true && echo a", 0, "a\n"),
        ("false && echo a", 1, ""),
        ("false || echo b", 0, "b\n"),
        ("true || echo b", 0, ""),
        ("false && echo a || echo b", 0, "b\n"),
        ("true || echo a && echo b", 0, "b\n"),
        ("false; echo $?; echo $?", 0, "1\n0\n"),
        ("false || echo $?", 0, "1\n"),
        ("nosuchcommand; echo $?", 0, "127\n"),
        ("exit 3; echo never", 3, ""),
        ("exit 300", 44, ""),
        ("false; exit", 1, ""),
        ("false || exit", 1, ""),
        ("true && exit 5 || exit 6", 5, ""),
        ("exit abc", 2, ""),
        ("exit 99999999999999999999999", 2, ""),  # beyond intmax_t: not a number to bash
        ("exit 9223372036854775807", 255, ""),
        ("exit -9223372036854775808", 0, ""),
        ("exit ' +7 '", 7, ""),
        ("exit 1_0", 2, ""),
        ("exit ''", 2, ""),
        # bash's no_args(): the rest of the line is dropped, the next one runs.
        ("exit 1 2; echo dropped", 1, ""),
        ("exit 1 2; echo dropped\necho next $?", 0, "next 1\n"),
        ("", 0, ""),
        ("# nothing", 0, ""),
    ],
)
def test_exit_status_rules(text, status, stdout):
    got_status, got_stdout, _ = run(text)
    assert (got_status, got_stdout) == (status, stdout)


def test_echo_options_and_builtin_output():
    status, out, _ = run("echo -n a; echo -e 'b\\tc'; echo -ne 'x\\n'; echo -- -n; echo -x; "
                         "echo -nE 'd\\n'; echo; pwd")
    assert (status, out) == (0, "ab\tc\nx\n-- -n\n-x\nd\\n\n/\n")


def test_stdin_and_command_diagnostics_name_the_line_as_bash_does():
    assert run("true\nnosuchcommand")[1:] == (
        "", "bash: line 2: nosuchcommand: command not found\n")
    assert run("exit abc")[2] == "bash: line 1: exit: abc: numeric argument required\n"
    assert run("true\nexit 1 2", mode="command")[2] == "bash: line 2: exit: too many arguments\n"
    assert run("exit 99999999999999999999999", mode="command")[2] == (
        "bash: line 1: exit: 99999999999999999999999: numeric argument required\n")


def test_interactive_diagnostics_name_no_line():
    err = BufferOutput()
    shell = Shell(None, mode="interactive",  # type: ignore[arg-type]
                  stdout=BufferOutput(), stderr=err)
    shell.feed("true")
    shell.feed("nosuchcommand")
    assert err.getvalue() == b"bash: nosuchcommand: command not found\n"


@pytest.mark.parametrize(
    "text, mode, stdout",
    [
        ("echo a\\", "command", "a\\\n"),  # bash -c 'echo a\': the backslash stays
        ("echo a \\", "command", "a \\\n"),
        ("echo a\\\n", "command", "a\n"),  # a backslash-newline continues onto nothing
        ("echo a\\", "stdin", "a\n"),  # bash ends standard input with a newline
        ("echo a \\", "script", "a\n"),
    ],
)
def test_a_backslash_ending_the_input_as_bash_reads_it(text, mode, stdout):
    assert run(text, mode, "s.sh") == (0, stdout, "")


def test_script_diagnostics_name_the_script_and_line():
    status, _, err = run("true\n\nnosuchcommand\n", mode="script", script="repro.sh")
    assert (status, err) == (127, "repro.sh: line 3: nosuchcommand: command not found\n")


def test_syntax_error_stops_a_script_after_the_lines_before_it():
    status, out, err = run("echo a\necho b ;;\necho c\n", mode="script", script="s.sh")
    assert (status, out) == (2, "a\n")
    assert err == ("s.sh: line 2: syntax error near unexpected token `;;'\n"
                   "s.sh: line 2: `echo b ;;'\n")


def test_syntax_error_forms_of_stdin_and_dash_c():
    assert run("echo b ;;")[2] == ("bash: line 1: syntax error near unexpected token `;;'\n"
                                   "bash: line 1: `echo b ;;'\n")
    assert run("true\necho a &&")[2] == "bash: line 3: syntax error: unexpected end of file\n"
    assert run("echo b ;;", mode="command")[2] == (
        "bash: -c: line 1: syntax error near unexpected token `;;'\n"
        "bash: -c: line 1: `echo b ;;'\n"
    )


def test_unterminated_quote_at_end_of_script():
    status, out, err = run("echo a\necho \"b\n", mode="script", script="s2.sh")
    assert (status, out, err) == (2, "a\n", "s2.sh: line 2: unexpected EOF while looking for matching `\"'\n")


def test_interactive_syntax_errors_do_not_end_the_shell():
    out, err = BufferOutput(), BufferOutput()
    shell = Shell(None, mode="interactive", stdout=out, stderr=err)  # type: ignore[arg-type]
    shell.feed("echo a ;;")
    assert shell.status == 2
    shell.feed("echo 'multi")
    assert shell.pending
    shell.feed("line'")
    assert not shell.pending and shell.status == 0
    assert out.getvalue() == b"multi\nline\n"
    assert err.getvalue() == b"bash: syntax error near unexpected token `;;'\n"


def test_pipes_only_into_grep():
    """The refusal of head (by its name or its path) says what does its work; tail's
    last lines grep does not give (the status unchanged)."""
    status, _, err = run("echo a | head")
    assert (status, err) == (1, "bash: line 1: head: ftrace-shell pipes only into grep "
                                "(grep -m N '' gives head -n N)\n")
    assert run("echo a | /usr/bin/head -n 1")[::2] == (
        1, "bash: line 1: /usr/bin/head: ftrace-shell pipes only into grep "
           "(grep -m N '' gives head -n N)\n")
    assert run("echo a | tail -n 1")[::2] == (
        1, "bash: line 1: tail: ftrace-shell pipes only into grep\n")
    assert run("echo a | sort")[::2] == (
        1, "bash: line 1: sort: ftrace-shell pipes only into grep\n")
    assert run("echo a | grep -m 1 ''")[:2] == (0, "a\n")


def test_a_long_option_a_command_lacks_is_getopts_unrecognized_one():
    """glibc's getopt_long() words (as GNU ls's), not "invalid option -- '-'" for its
    first letter, then the command's usage."""
    assert run("ls --all", mode="command") == (
        2, "", "ls: unrecognized option '--all'\nUsage: ls [-la1] [PATH...]\n")


def test_the_command_a_pipe_runs_is_what_its_words_expand_to():
    assert run("g=grep; h='head -1'; echo abc | $g b; echo x | $h")[1:] == (
        "abc\n", "bash: line 1: head: ftrace-shell pipes only into grep "
                  "(grep -m N '' gives head -n N)\n")


def test_pipe_into_grep_and_its_status():
    assert run("echo uinput_release | grep uinput")[:2] == (0, "uinput_release\n")
    assert run("echo uinput_release | grep -c nothing")[:2] == (1, "0\n")
    assert run("echo -e 'a\\nb\\nab' | grep -v a")[:2] == (0, "b\n")
    assert run("echo -e 'a\\nB' | grep -i b | grep -q B")[:2] == (0, "")
    assert run("echo 'a(b' | grep -E 'a(b'")[0] == 2  # unbalanced group in ERE
    assert run("echo 'a(b' | grep 'a(b'")[:2] == (0, "a(b\n")  # literal ( in BRE


@pytest.mark.parametrize(
    "script, status, out",
    [
        # GNU grep 3.8 (LC_ALL=C), each one.
        ("echo a | grep '[[:alpha:]]'", 0, "a\n"),  # a POSIX class, not a set and a "]"
        ("echo ':]' | grep '[[:alpha:]]'", 1, ""),
        ("echo | grep -c '\\B'", 0, "1\n"),  # an empty line has no word boundary
        ("echo -e 'x\\vy' | grep -c 'x\\sy'", 0, "1\n"),  # \s is isspace(): \v too
        ("echo b | grep -E 'a{,2}b'", 0, "b\n"),  # {,N}: 0 to N
        ("echo b | grep 'a\\{,2\\}b'", 0, "b\n"),
        ("echo 'a{,2}b' | grep -c '[{,2}]b'", 0, "1\n"),
        ("echo abab | grep '\\(ab\\)\\1'", 0, "abab\n"),  # back-references still match
        ("echo abac | grep -E '(ab)\\1'", 1, ""),
        ("echo ABAB | grep -i '\\(ab\\)\\1'", 0, "ABAB\n"),
        # A back-reference is matched by Python's re.
        ("echo aa | grep -E '([[:alpha:]])\\1'", 0, "aa\n"),
        ("echo '::' | grep -cE '([[:alpha:]])\\1'", 1, "0\n"),
        ("echo 'x  y' | grep -E '([^[:alnum:]])\\1'", 0, "x  y\n"),
        ("echo AA1 | grep -iE '([[:lower:]])\\1'", 0, "AA1\n"),
        # A back-reference is one digit: "\12" is group 1, then a "2".
        ("echo aa2 | grep -E '(a)\\12'", 0, "aa2\n"),
        ("echo aa22 | grep '^\\(a\\)\\12*$'", 0, "aa22\n"),
        ("echo abcdefghijkla2 | grep -E '(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)(l)\\12'", 0,
         "abcdefghijkla2\n"),
        ("echo abcdefghijkll | grep -cE '(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)(l)\\12'", 1, "0\n"),
    ],
)
def test_grep_matches_as_gnu_grep(script, status, out):
    assert run(script)[:2] == (status, out)


@pytest.mark.parametrize(
    "sample, binary",
    [  # as bash 5.2 runs each as a script
        (b"ec\0ho hi\n", True),
        (b"echo hi\n\0\n", False),  # only the first line is looked at
        (b"#!/bin/sh\necho \0 hi\n", True),  # the first two, after a #! line
        (b"#!/bin/sh\necho a\n\0\n", False),
        (b"a" * 79 + b"\0", True),
        (b"\x7fELFecho hi\n", True),
        (b"\x7fEL", False),
        (b"\x80\x81 echo hi\n", False),  # not text, but no NUL
    ],
)
def test_binary_script_files_as_bash_tells_them(sample, binary):
    assert check_binary_file(sample) == binary


def test_redirection_to_dev_null_and_fd_duplication():
    assert run("echo a > /dev/null; echo b 2>/dev/null")[1] == "b\n"
    assert run("nosuchcommand 2>/dev/null; echo $?")[1:] == ("127\n", "")
    assert run("echo err >&2")[1:] == ("", "err\n")
    assert run("nosuchcommand 2>&1")[1:] == ("bash: line 1: nosuchcommand: command not found\n",
                                             "")
    assert run("echo x >&7")[2] == "bash: line 1: 7: Bad file descriptor\n"


def test_a_long_quoted_word_is_parsed_once_it_can_end(monkeypatch):
    """Inside a quote only a line holding that quote can end the command, so the pending
    lines are parsed again only then: 20,000 lines inside an open quote were parsed
    20,000 times (quadratic: over a minute), where bash reads on."""
    import clients.shell

    calls = []
    real_parse = clients.shell.parse
    monkeypatch.setattr(clients.shell, "parse",
                        lambda *args, **kwargs: calls.append(1) or real_parse(*args, **kwargs))
    body = ["line"] * 20_000
    status, out, err = run("\n".join(['echo "start', *body, 'end"', "echo 'a", *body, "b'"]))
    assert (status, err) == (0, "")
    assert out == "\n".join(["start", *body, "end", "a", *body, "b"]) + "\n"
    assert len(calls) == 4
    status, out, err = run("\n".join(['echo "open', *body[:3]]))
    assert status == 2 and "unexpected EOF while looking for matching" in err


def test_a_long_compound_command_is_parsed_once_its_closing_word_can_end_it(monkeypatch):
    """Inside an open compound command only a line with the closing word of the outermost
    one can end it (3,000 lines in a loop were parsed 3,000 times: over four minutes);
    interactively each line is parsed, for bash reports a syntax error at its line."""
    import clients.shell

    calls = []
    real_parse = clients.shell.parse
    monkeypatch.setattr(clients.shell, "parse",
                        lambda *args, **kwargs: calls.append(1) or real_parse(*args, **kwargs))
    body = ["  true"] * 20_000
    status, out, err = run("\n".join(["if true; then", "for i in a b; do", *body, "done",
                                       *body, "fi", "echo end $i"]))
    assert (status, out, err) == (0, "end b\n", "")
    assert len(calls) == 3  # at the start, at "done", at "fi"
    calls.clear()
    status, out, err = run("for i in a; do\n  fi\n  echo no\ndone", mode="interactive")
    assert (status, out) == (2, "no\n")  # the line after the error is a command of its own
    assert err == ("bash: syntax error near unexpected token `fi'\n"
                   "bash: syntax error near unexpected token `done'\n")
    assert len(calls) == 4


# --- variables -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # Assignments: alone they stay, before a command they are its own.
        "a=1; echo $a", "a=1 b=$a; echo $a$b", "a=1 b=2 c=3; echo $c$b$a $?", "a=b=c; echo $a",
        'a=1 true; echo "[$a]"', "a=1 echo $a", "a=1 exit 3", "a=1 >/dev/null; echo $a",
        "a=$b c; echo $? \"[$a]\"", '"a"=1', "a\\=1", "1a=2", "a=1 b= c; echo $?",
        # export and unset with prefix assignments: bash's temporary_env.
        "a=1 export a; echo $a", 'a=1; a=2 unset a; echo "[$a]"', 'a=1 unset a; echo "[$a]"',
        # The environment is where the variables start; IFS is not taken from it.
        'echo $PATH ${PATH} "$LC_ALL" ${#PATH}',
        # Expansion: unset is empty, unquoted empty removes the word, quoted stays one.
        'echo $unset x "$unset" y', 'a="x  y"; echo $a; echo "$a"; echo [$a]',
        'a="  x  "; echo [$a]', 'a="-n x"; echo $a', 'echo "" x \'\' "$u" $u', 'echo $"x  y"',
        'echo ${a}b $ab "$a"b a~ "~" \\~ x:~ a="~"', "a=x; echo $a.$a/${a}_", "echo $1a ${1}0 $10",
        # Field splitting on IFS.
        'IFS=:; a=":a::b:"; echo $a', 'IFS=" :"; a="a : : b"; echo $a', 'IFS=; a="x y"; echo $a',
        'IFS=x; unset IFS; a="x:y z"; echo $a', 'IFS=:; a=x:y; echo $a "$a" x$a',
        # The special parameters: no positional ones under -c without arguments.
        'echo $0 $# "$@" "$*" $1 ${10} ${##} ${#?} ${#@} "a$@b"; echo "$@" x',
        # Not assignments: words as written.
        "echo a+=b a[0]=1 \"a\"+=b; a=b+=c; echo $a; a'b'+=c; echo $?",
        # What bash's brace expansion leaves as written.
        'echo "{a,b}" \\{a,b} {} {a} {a..9} {1..} ${x:-{a,b}}; x={a,b} y={1..2}; echo $x $y',
        # Diagnostics: bash's words; a bad substitution drops the rest of the line.
        'f="a b"; echo > $f; echo $?', "f=; echo >$f; echo $?",
        "echo ${a b}; echo next", "echo ${1a}", "echo ${a", "x; echo ${a",
        # bash names the word as written (in double quotes: their text; an assignment: its
        # value) where a bad substitution is.
        "echo a${}b", "echo 'q'a${1a}b", 'echo x"a${}b"y', 'echo x"${}"y', "x${}=1", "a=${}",
        "a=x${a b} true", "export a=x${}", "echo > x${}", 'echo \\$x${}', "echo x${}y${a b}",
        "echo ${u?m}${}",
        # The operators -, =, ?, + (with ":": an empty value counts as unset).
        'a=; echo [${a-d}] [${a:-d}] [${a=e}] [${a:=f}] $a', "echo ${a:=x  y} \"$a\"",
        'echo ${a:-x   y} "${a:-x   y}" ${a:-}x ${a-x}}', "a=1; echo ${a:+x  y} ${b:+z} ${a+w}",
        'echo ${?:-x} ${#:-y} ${@:-z} ${@-z} ${*-y} "${@-x}" ${1-w} ${#-v} ${?=u}',
        "T=${T:-/sys/kernel/debug/tracing}; echo $T", "echo ${1:=x}; echo next",
        "echo ${a:?}; echo next", "echo ${a?}", "echo ${a:?no a here}", "a=; echo ${a?}x ${a:?}",
        "echo ${1:?}", "echo ${#a:-x}", 'echo "${#a%x}"',
        # The builtins.
        'export a=1 b; unset a; echo "[$a]"', "export 1a=2 -p; echo $?", "export -x",
        "export -f a; echo $?", "unset -x a", "unset -v 1a; unset 1a a=1; echo $?",
        'a="x y" export b=$a; echo "$b"', "export a=1; export -n a; echo $a", "local a=1",
        "local; echo $?", "export a=1; a=2 export; export -n a; export",
        "a='x\"y\\z$`'; export a b; c=1 d=2 export d; export -p",
        # What bash sets at start: PWD (the shell's working directory), OLDPWD, SHLVL.
        'echo $PWD "[$OLDPWD]" $SHLVL; cd -',
    ],
)
def test_variables_as_bash_reads_them(text):
    assert_as_bash(text)


@pytest.mark.parametrize("mode", ["command", "stdin", "script"])
@pytest.mark.parametrize("text", [
    'f() { echo $0 $FUNCNAME; g; }; g() { echo $FUNCNAME; }; f; echo "[$FUNCNAME]"',
    "echo $LINENO\n\nf() {\n echo $LINENO\n}\nf; echo $LINENO",
    "echo $UID $EUID; FUNCNAME=x; echo \"[$FUNCNAME]\"; LINENO=; echo $LINENO",
    'r=$RANDOM; [ "$r" -ge 0 ] && [ "$r" -lt 32768 ] && [ "$SECONDS" -ge 0 ] && echo ok',
])
def test_bashs_automatic_variables_as_bash(text, mode):
    """Before, each expanded to nothing."""
    assert_as_bash(text, mode=mode)


@pytest.mark.parametrize("name", ["BASH_VERSION", "BASHPID", "HOSTNAME", "OPTIND",
                                  "EPOCHSECONDS", "BASH", "_", "PS4"])
def test_bashs_other_automatic_variables_are_refused(name):
    """Not an empty value bash would not give; one the user set is theirs."""
    assert run(f"echo ${name}; echo no\necho $?; {name}=x; echo ${{{name}}}", mode="stdin") == (
        0, "2\nx\n", f"bash: line 1: ${name}: bash's variable is not supported by ftrace-shell\n")


def test_ppid_is_the_shells_parent():
    assert run("echo $PPID") == (0, f"{os.getppid()}\n", "")


def test_the_environment_is_imported_as_bash_imports_it():
    """Not IFS, nor PWD; SHLVL one more (OLDPWD: see test_shell_integration, it is looked
    up on the daemon)."""
    assert_as_bash("a=x:y; echo $a $B; export -p",
                   {**BASH_ENVIRONMENT, "IFS": ":", "B": "1 2", "PWD": "/nonexistent",
                    "SHLVL": "5", "1a": "x", "C": "x\ty\x01z\x1b\\'"})


@pytest.mark.parametrize("level", ["-5", " 3", "+2", "\n4\t", "4\n", "998", "999", "x", "",
                                   "4294967296", "2147483647", "-9223372036854775808",
                                   "9223372036854775808"])
def test_shlvl_as_bash_adjusts_it(level):
    assert_as_bash('echo "[$SHLVL]"', {**BASH_ENVIRONMENT, "SHLVL": level})


def test_export_p_quotes_each_byte_as_bash_in_the_c_locale():
    """A byte of 0x80 or above is not printable in the C locale: ``$'\\ooo'`` each one
    (of U+2028's UTF-8, of a byte that is no UTF-8), and DEL."""
    assert_as_bash("export -p", {**BASH_ENVIRONMENT, "D": "caf\u00e9",
                                 "E": "x\u2028y\udcff\x7f\"$"})


def test_dollar_zero_is_the_scripts_name_or_the_shells():
    assert run("echo $0", mode="script", script="s.sh")[1] == "s.sh\n"
    assert run("echo $0")[1] == "bash\n"


def test_a_bad_substitution_does_not_end_an_interactive_shell():
    status, out, err = run("echo ${a b}; echo rest of the line\necho $?", mode="interactive")
    assert (status, out, err) == (0, "1\n", "bash: ${a b}: bad substitution\n")


@pytest.mark.parametrize("mode", ["command", "stdin", "script"])
@pytest.mark.parametrize(
    "text",
    [
        # A bad substitution drops the rest of the input line; the shell goes on.
        "echo ${1a}\necho next $?", "echo ${a b}; echo same\necho next $?",
        "echo a &&\necho ${1a}; echo b\necho c $?", "echo ${1:=x}; echo same\necho next $?",
        # ${} is one too, not a quoted null ('' or "").
        'echo ${}\necho "${}"; echo same\necho $? "" \'\' x',
        # ${a?} ends the shell: status 1, 127 under -c.
        "echo ${u?x}; echo same\necho next", "a=; echo ${a:?}\necho next",
    ],
)
def test_expansion_errors_end_the_line_or_the_shell_as_bash(text, mode):
    assert_as_bash(text, mode=mode)


@pytest.mark.parametrize(
    "text",
    [
        # Each command of a pipeline is a subshell: its assignments, export, unset stay.
        'echo ${a=1} | grep -c ${a-unset}; echo "rc=$? a=[$a]"', "export b=2 | grep x; echo [$b]",
        "a=1 | grep x; unset PATH | grep x; b=1; unset b | grep x; echo $a $PATH $b",
        # ... and its exit and its expansion errors.
        "exit 3 | grep -c x; echo after $?", "echo x | grep ${1a}; echo after $?",
        "echo ${u?m} | grep -c x; echo after $?", "echo x | grep ${u?m}; echo after $?",
        # A later command expanding to no name runs nothing; "" is not found.
        "echo x | $u; echo after $?", 'echo x | "$u"; echo after $?',
    ],
)
def test_pipeline_commands_run_in_subshells_as_bash(text):
    assert_as_bash(text, GREP_ENVIRONMENT)


def test_a_fatal_expansion_in_a_pipeline_of_standard_input_leaves_1():
    assert_as_bash("echo x | grep ${u?m}; echo after $?", GREP_ENVIRONMENT, mode="stdin")


@pytest.mark.parametrize("mode", ["command", "stdin", "script"])
@pytest.mark.parametrize("text", ['echo "${a', "echo ${a", 'echo "x${a}y${b\n', 'echo "${a\n}'])
def test_an_unterminated_brace_in_quotes_names_what_bash_names(text, mode):
    assert_as_bash(text, mode=mode)


@pytest.mark.parametrize("text", ['exit " \n5 \t"', 'a="5\n"\nexit "$a"', "exit ' -0 '"])
def test_exit_reads_its_number_as_bash_legal_number(text):
    """strtoimax skips any white space before the number; after it only blanks may come."""
    assert_as_bash(text)


# --- command substitution, test, compound commands -----------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # Unquoted: split on IFS; in double quotes: one field; trailing newlines go.
        "echo $(echo a   b) x$(echo)y", 'echo "$(echo a   b)" "[$(echo -e \'a\\n\\n\\n\')]"',
        'echo "[$(echo -e \'\\na\\nb\\n\')]" [$(echo -n)] "[$(echo -n)]"',
        'a=$(echo "1  2"); echo "$a" $a', "IFS=:; echo $(echo a:b) \"$(echo a:b)\"",
        "echo $(echo $(echo in)) \"$(echo \"a  b\")\" $(echo ')') $( echo x )y",
        "echo $(echo a\necho b) $(\n# comment )\necho c)", "$(echo echo) hi", "echo $()x",
        # Its status: a command without a name takes the last substitution's.
        "a=$(false); echo $?", "a=$(true) b=$(false); echo $?", "a=$(exit 3) b=1; echo $?",
        "$(false); echo $?", "a=$(false) true; echo $?", "false; a=$(echo $?); echo $a $?",
        "echo $(false) $?", "$(exit 4) >/dev/null; echo $?",
        # A subshell: its assignments, cd, exit and loop control stay in it.
        'x=$(a=1; export b=2; echo $a; exit 2; echo no); echo "[$x] $? [$a] [$b]"',
        "for i in 1 2; do echo $(break) $i; done",
        # Errors inside it.
        "echo $(nosuch) $?", "echo $(echo ${1a}); echo next $?", "echo $(echo ${u?m}) next $?",
        "echo $(echo a", "echo $(a &&) x", "echo $(fi)", "echo $(echo a;;)", 'echo "$(echo a"',
        "echo > $(echo /dev/null) x; echo $?", "echo $(echo a; echo b >&2)",
    ],
)
def test_command_substitution_as_bash(text):
    assert_as_bash(text)


@pytest.mark.parametrize(
    "text",
    [
        # Strings.
        "[ a = a ]", "[ a = b ]", "[ a == a ]", "[ a != b ]", "test a \\< b", "test b \\> a",
        "[ -n '' ]", "[ -z '' ]", "[ -n x ]", "[ -z x ]", "[ ]", "[ x ]", "[ '' ]", "test",
        "test -n", "[ -z ]", "[ ! x ]", "[ ! '' ]", "[ ! ]", "[ ! ! x ]", "[ -v PATH ]",
        "[ -v nosuch ]", "test = =", "test -n = -n", "test ! = x",
        # Integers: bash's legal_number, or "integer expression expected".
        "[ 1 -eq 1 ]", "[ 01 -eq 1 ]", "[ ' 2 ' -gt 1 ]", "[ -1 -lt 0 ]", "[ 2 -le 1 ]",
        "[ 1 -ge 1 ]", "[ 1 -ne 1 ]", "[ a -eq 1 ]", "[ 1 -lt x ]", "[ '' -eq 0 ]",
        "[ 9223372036854775808 -gt 1 ]", "[ 1 -eq ]",
        # Files: the daemon's tree; "" names none.
        "[ -e '' ]", "[ -f '' ]", "[ -d '' ]", "[ -s '' ]", "[ -r '' ]", "test -t",
        # ! -a -o ( ), more than four arguments.
        "[ a = a -a b = c ]", "[ 1 -eq 1 -o x ]", "[ -n a -a -z '' ]", "[ a -o '' ]",
        "[ '' -a a ]", "[ ! a = b ]", "[ \\( a = a \\) ]", "[ \\( a \\) ]", "[ \\( '' \\) ]",
        "[ ! \\( a = b \\) -a x ]", "[ \\( a = a -o x ]", "[ \\( a = a x \\) ]",
        "[ x -a ! '' -o '' ]", "[ a = a -a ]",
        # Errors: status 2.
        "[ a", "[", "[ a ] ]", "test a b", "test a b c", "test a b c d", "test a b c d e",
        "test -q a", "test -eq 1", "test a =~ a", "[ -n a b ]", "[ \\( ]", "test \\( a = a",
    ],
)
def test_test_and_bracket_as_bash(text):
    assert_as_bash(text + "; echo $?")


@pytest.mark.parametrize(
    "text",
    [
        # if.
        "if true; then echo y; fi", "if false; then echo y; fi; echo $?",
        "if false; then echo y; else echo n; fi", "if false; then :; elif true; then echo e; fi",
        "if false; then :; elif false; then :; else echo e2; fi; echo $?",
        "if false; then :; elif false; then :; fi; echo $?", "if ! false; then echo n; fi",
        "if true; then false; fi; echo $?", "if if true; then false; fi; then :; else echo x; fi",
        "if [ a = a ] && [ b = b ]; then echo both; fi", "if true; then if false; then :; "
        "else echo inner; fi; fi", "if true\nthen\necho a\nfi", "if true; then { echo g; }; fi",
        "if true; then echo a; fi > /dev/null; echo $?", "if true; then echo x; fi >&2",
        "if true; then echo x; fi > $u; echo $?",
        # while and until.
        "i=; while [ \"$i\" != xxx ]; do i=x$i; echo $i; done",
        "i=; until [ \"$i\" = xx ]; do i=x$i; done; echo $i $?",
        "while false; do :; done; echo $?", "while true; do break; done; echo $?",
        "i=; while i=x$i; [ $i != xxx ]; do echo $i; done",
        "while true; do while true; do break 2; done; echo no; done; echo $?",
        # for.
        "for i in a b c; do echo $i; done", "for i in; do echo $i; done; echo $?",
        'for i in "a b" c; do echo "[$i]"; done', 'v="1 2"; for i in $v x$v; do echo $i; done',
        "for i; do echo $i; done; echo $?", "for i do echo x; done", "for i in a; do :; done; echo $i",
        "for 1 in a; do echo x; done; echo $?",
        "for 'i' in a; do echo x; done; for $x in a; do :; done; for ${}x in a; do :; done", "for i in a b; do echo $i; done > /dev/null; echo $?",
        "for i in a\ndo echo $i\ndone", "for i\nin a b\ndo echo $i; done", "for i in if fi; do echo $i; done",
        "for i in a b; do false; done; echo $?", "for i in $(echo 1 2); do echo $i; done",
        # break and continue.
        "for i in 1 2 3; do for j in a b; do [ $j = b ] && continue 2; echo $i$j; done; done",
        "for i in 1 2 3; do [ $i = 2 ] && continue; echo $i; done",
        "for i in 1 2; do for j in 1 2; do break 5; done; echo no; done; echo $?",
        "for i in 1 2; do break 0; echo no; done; echo $?", "for i in 1 2; do continue -1; done",
        "for i in 1 2; do break x; echo no; done; echo after", "for i in 1; do break -- 1; done",
        "false; for i in 1; do break x; done", "for i in 1; do false; continue x; done",
        "break; echo $?", "continue 2; echo $?", "for i in 1; do echo $i; done; break",
        "i=; while true; do i=x$i; [ $i = xxx ] && break; continue; echo no; done; echo $i",
        "for i in 1 2; do echo $i; break | grep -c x; done",
        # Groups and negation.
        "{ echo a; echo b; } > /dev/null; echo $?", "{ false; }; echo $?", "{ echo a; }; { echo b\n}",
        "! true; echo $?", "! false; echo $?", "! ! true; echo $?", "! { false; }; echo $?",
        "{ { echo nested; } }", "if true; then { echo x; } fi",
        # An expansion error inside reports to the stderr in effect there.
        "{ echo ${1a}; echo same; } 2>/dev/null; echo next $?",
        "for i in a; do echo ${u?x}; done 2>/dev/null; echo next",
        "for i in a; do break 1 2; done 2>/dev/null; echo next",
        "for i in ${1a}; do :; done 2>/dev/null; echo n",
        "if true; then echo ${1a}; fi 2>&1 >/dev/null; echo n",
        # Syntax errors, with bash's line.
        "if true; then echo; fi fi", "if true; then", "for i in a b", "while true; do echo",
        "{ echo;", "{ }", "if then fi", "for 1", "for i in a; echo; done",
        "if true; then echo; else fi", "echo a\nif true\nthen\nfi", "while; do :; done",
        "until true; done", "for i in a b; do :; done done", "{ echo a; } x", "!", "! ;",
        "for", "for i in a b;", "if true; then echo\nelse\n", "for i a",
        "{ echo a; } }", "for i in a b; do echo $i; done | grep b",
    ],
)
def test_compound_commands_as_bash(text):
    assert_as_bash(text, GREP_ENVIRONMENT)


@pytest.mark.parametrize("mode", ["stdin", "script"])
@pytest.mark.parametrize(
    "text",
    [
        "for i in 1 2\ndo\n  echo $i\ndone\necho after",
        "if true\nthen\n  nosuch\nfi\necho $?",
        "i=\nwhile true; do\n  i=x$i\n  echo $i\n  [ $i = xx ] && break\ndone\necho after",
        "echo start\nfor i in a b; do\n  echo $i\n  fi\ndone\necho never",
        "echo start\nif true; then\n  echo open\n",
        "a=$(echo one\necho two)\necho \"$a\"",
        "for i in 1 2; do\n  echo ${1a}\n  echo same\ndone\necho next $?",
        "while :; do\n break\ndone; echo $?",
    ],
)
def test_multi_line_compound_commands_as_bash(text, mode):
    assert_as_bash(text, GREP_ENVIRONMENT, mode=mode)


def test_an_interactive_loop_waits_for_its_done():
    out, err = BufferOutput(), BufferOutput()
    shell = Shell(None, mode="interactive", stdout=out, stderr=err,  # type: ignore[arg-type]
                  environ=BASH_ENVIRONMENT)
    for line, pending in (("for i in a b", True), ("do echo $i", True), ("done", False)):
        shell.feed(line)
        assert shell.pending == pending
    assert out.getvalue() == b"a\nb\n"
