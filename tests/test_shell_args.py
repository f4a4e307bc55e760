"""ftrace-shell's positional parameters against bash 5.2's, byte for byte (output, error
text, exit status): ``shift [N]`` (bash's shift_builtin), and the arguments bash's
get_numeric_arg, get_exitstat and no_args read for shift, break, continue, exit and
return (``break 1 2``: its complaint, then top_level_cleanup() and DISCARD, which ends a
``-c`` command with status 1 and drops the rest of a script's or standard input's line);
``set [--] ARG...`` (bash's set_builtin, its options refused); the shell's own arguments
(``ftrace-shell -c COMMAND NAME ARG...``, as ``bash -c``). A daemon only for the last."""

from __future__ import annotations

import subprocess

import pytest

from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.real_bash import GREP_ENVIRONMENT
from tests.test_shell_integration import finish, start_shell
from tests.test_shell_parser import assert_as_bash, run

MODES = ["command", "stdin", "script"]


@pytest.mark.parametrize("text", [
    "f() { shift; echo $? $# \"$@\"; shift 2; echo $? $# \"$@\"; shift 0; echo $? $1; }; f a b c d",
    "f() { shift 2; echo $# \"$@\"; }; f a b; f a 'b c' d",
    "f() { shift 5; echo $? $# \"$@\"; shift 3; echo $? $#; }; f a b c",
    # The shell's own: none.
    "shift; echo $?; shift 0; echo $?; shift 1; echo $?",
    # N as legal_number() reads it; a "--" first is skipped, and named when out of range.
    "f() { shift -- 2; echo $? $1; shift --; echo $? $1; shift ' 1 '; echo $? $#; }; f a b c d",
    "f() { shift -1; echo $? $#; shift -- -1; echo $?; }; f a",
    "f() { shift x; echo $? $#; shift ''; echo $?; shift -x; echo $?; }; f a",
    "f() { shift 99999999999999999999; echo $? $#; shift 1x; echo $?; }; f a",
    # A function's own, given back at its end; a subshell's its own.
    "f() { shift; g \"$@\"; echo $# $1; }; g() { shift; echo $# $1; }; f a b c; echo $#",
    "f() { x=$(shift; echo $#); echo $x $#; shift | grep x; echo $# $1; }; f a b",
    "f() { for a; do shift; echo \"$a:$#\"; done; }; f a b c",
    "f() { while [ $# -gt 0 ]; do echo \"<$1>\"; shift; done; }; f a '' 'b c'",
])
def test_shift_as_bash(text):
    assert_as_bash(text, GREP_ENVIRONMENT)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text", [
    "f() { shift 1 2; echo no; }; f a b c; echo $?\necho next $?",
    "f() { x=$(shift 1 2; echo in); echo \"[$x] $?\"; }; f a b\necho next $?",
    "for i in 1 2; do break 1 2; echo in; done; echo after $?\necho next $?",
    "for i in 1 2; do echo $i; continue 1 2; echo in; done; echo $?\necho next $?",
    "for i in 1; do break x 2; done; echo $?\necho next $?",
    "for i in 1; do break -- 0; done; echo $?",
    "exit 1 2; echo $?\necho next $?",
    "exit x y; echo $?",
    "exit -- 3",
    "f() { return 1 2; echo no; }; f; echo $?\necho next $?",
    "f() { return -- 4 5; }; f | grep x; echo $?\necho next $?",
])
def test_too_many_arguments_leave_as_bash(mode, text):
    """bash's no_args(): under ``-c`` the command ends (status 1); elsewhere the rest of
    the line goes; in a command substitution or a pipeline's process, that subshell
    ends."""
    assert_as_bash(text, GREP_ENVIRONMENT, mode=mode)


@pytest.mark.parametrize("text", [
    "set a 'b c' ''; echo $# \"$1\" \"$2\" \"<$3>\"; for a; do echo \"<$a>\"; done",
    "set -- -x a; echo $? $# $1; set --; echo $? $#",
    "set a -x; echo $# $2; set -- a; set -- \"$@\" b; echo $# \"$@\"",
    "set + a b; echo $? $# $1; set +; echo $? $# $1; set + --; echo $? $#",
    "set a b c; shift; echo \"$@\"; shift 2; echo $? $#",
    # A function's own; the shell's again after it; a subshell's its own.
    "f() { set -- x y; echo $# $1; g; echo $1; }; g() { set z; }; set a; f 1 2 3; echo $# $1",
    "set a b; x=$(set c; echo $1); echo $x $1; set c | grep x; echo $1",
    "set a; for i in 1 2; do set -- \"$@\" $i; done; echo \"$@\"",
    # Options bash has not are its invalid option, as before the first operand.
    "set -q; echo $?",
    "set + -q; echo $? $#",
    "set -q a; echo $? $#",
])
def test_set_makes_the_positional_parameters_as_bash(text):
    assert_as_bash(text, GREP_ENVIRONMENT)


@pytest.mark.parametrize("args, refused", [
    (["-e"], "-e"), (["-o", "pipefail"], "-o"), (["+x"], "+x"), (["-eu", "a"], "-e"),
    (["-", "a"], "-"), (["+", "-v"], "-v"), (["-u"], "-u"), (["-x"], "-x"),
])
@pytest.mark.parametrize("mode", [*MODES, "interactive"])
def test_sets_options_are_refused_by_name(args, refused, mode):
    """The shell has none of set's options: each is refused (status 2), and the
    positional parameters stay. Outside interactive mode the refusal ends the shell:
    ``set -e; false; echo third`` ran on past the failure the script asked to stop at."""
    words = " ".join(args)
    status, out, err = run(f"set z; set {words}; echo $? $# $1\necho next", mode=mode,
                           script="s.sh" if mode == "script" else None)
    where = {"interactive": "bash", "script": "s.sh: line 1"}.get(mode, "bash: line 1")
    assert err == f"{where}: set: option '{refused}' is not supported by ftrace-shell\n"
    assert (status, out) == ((0, "2 1 z\nnext\n") if mode == "interactive" else (2, ""))


def test_set_help_is_refused():
    assert run("set z; set --help; echo $? $# $1", mode="command") == (
        0, "2 1 z\n", "bash: line 1: set: option '--help' is not supported by ftrace-shell\n")


def test_set_alone_is_refused():
    """bash's set lists the variables and functions; the shell does not print functions
    (as declare -f), so it is refused."""
    assert run("set; echo $?", mode="command") == (
        0, "2\n",
        "bash: line 1: set: listing the variables and functions is not supported by ftrace-shell\n")


_ARGS_SCRIPT = 'echo "$0" $#; for a; do echo "<$a>"; done; shift; echo "$@"; set --; echo $#\n'
_ARGS = ["-x", "b c", "", "--address"]


@pytest.mark.parametrize("mode", MODES)
def test_the_shells_own_arguments_are_its_positional_parameters_as_bashs(daemon, tmp_path, mode):
    """``ftrace-shell -c COMMAND NAME ARG...``, ``ftrace-shell SCRIPT ARG...`` and
    ``ftrace-shell -s -- ARG...`` against bash's: NAME (the script) is $0, the ARGs $1...,
    an option among them too."""
    (tmp_path / "args.sh").write_text(_ARGS_SCRIPT)
    shell_args, bash_args, stdin = {
        "command": (["-c", _ARGS_SCRIPT, "name", *_ARGS],) * 2 + ("",),
        "script": (["args.sh", *_ARGS], ["args.sh", *_ARGS], ""),
        "stdin": (["-s", "--", *_ARGS], ["-s", "--", *_ARGS], _ARGS_SCRIPT),
    }[mode]
    shell = finish(start_shell(tmp_path, ["--address", daemon.address, *shell_args]), stdin)
    real = subprocess.run(["bash", *bash_args], executable="/bin/bash", cwd=tmp_path,
                          input=stdin, capture_output=True, text=True, env=GREP_ENVIRONMENT, timeout=30)
    assert (shell.returncode, shell.out, shell.err) == (real.returncode, real.stdout, real.stderr)
    assert real.stdout.startswith(("name 4\n<-x>", "args.sh 4\n<-x>", "bash 4\n<-x>"))


#: Words with $@ and $* in them, quoted and not, alone, with an operator, among other
#: expansions and text: the table bash's expand_word_internal() is compared over.
_DOLLAR_AT_WORDS = [
    f"{quote}${{{name}{operator}}}{quote}"
    for quote in ('"', "") for name in "@*"
    for operator in ("", "-d", ":-d", "+s", ":+s", "-", ":-", "+", ":+")
] + [
    '"${#@}"', "${#*}", '"x${@+s}y"', '"${@:+s}${@+t}"', "${*:+s}${*+t}", '"${*+s}${@+t}"',
    '"$@$x"', '"$x$@"', '"${@+s}$x"', '"${@+s}${x-}"', '"$(echo)$@"', '"${x:+q}${@:+s}"',
    '"${@+s}"$x', '"${@+s}"${@+t}', '"$@"${@+s}', '"$@" "${@+s}"', '$x"$@"$x', '"$*$@"',
    # A quoted null in the word keeps its field: "" or '', or a string of its own.
    '"${@+s}"""', "\"$@\"''", '"$@""$x"', '"$x""$@"', '"$@""$@"', '"${@+s}""${x:+q}"',
]
#: No positional parameters, one, one empty, three with an empty one, two empty ones.
_ARGUMENTS = ["", "a", "''", "'a b' '' c", "'' ''"]


@pytest.mark.parametrize("ifs", ["", "IFS=:; ", "IFS=; "])
@pytest.mark.parametrize("word", _DOLLAR_AT_WORDS)
def test_dollar_at_in_a_word_gives_bashs_fields(word, ifs):
    """A quoted $@ that gives no positional parameters gives no field, also under an
    operator (``"${@+set}"``) and beside other expansions that gave nothing; where the
    parameter's own value stands under an operator (``"${@-d}"``), each parameter is a
    field, as ``"$@"``'s are."""
    body = f'x=; {ifs}for a in {word}; do echo "<$a>"; done; echo .'
    assert_as_bash("".join(f"f() {{ {body}; }}; f {args}\n" for args in _ARGUMENTS))


@pytest.mark.parametrize("text", [
    'f() { echo "${@=e}"; echo no; }; f\necho next $?',
    'f() { for a in "${@=e}"; do echo "<$a>"; done; }; f a "b c"',
    'f() { echo "${@?e}"; echo no; }; f\necho never',
    'f() { for a in "${@?e}" "${@:?e}"; do echo "<$a>"; done; }; f "" "b c"',
    'f() { x="${@+s}"; y="$@$x"; case "${@+s}" in "") echo empty;; esac; echo "[$x|$y]"; }; f',
    # A "b" or an "n" of text between two expansions is text.
    'f() { echo "$1b$2" $1b$2 "$1n$2" "a$@b"; }; f A B; f',
])
def test_dollar_at_under_an_operator_as_bash(text):
    assert_as_bash(text, mode="stdin")


@pytest.mark.parametrize("args", [
    # After -c COMMAND, everything is $0, $1...: an option, "--" too (they were taken
    # as the shell's options: "unrecognized arguments", or $0=-x).
    ["-c", 'echo "[$0] [$1] [$2]"', "-x", "y"],
    ["-c", 'echo "[$0] [$1] [$2]"', "--", "-x"],
    ["-c", 'echo "[$0] [$1] [$2]"', "--name", "y"],
    # "-" and "--" end the options: the next is the script (it read standard input).
    ["-", "args.sh", "b"],
    ["--", "args.sh", "-x"],
    ["args.sh", "--name", "b"],
    ["-"],
    ["-s", "a", "-x"],
])
def test_options_end_where_bashs_do(daemon, tmp_path, args):
    (tmp_path / "args.sh").write_text('echo "[$0] [$1] [$2]"\n')
    stdin = 'echo "stdin [$0] [$1] [$2]"\n'
    shell = finish(start_shell(tmp_path, ["--address", daemon.address, *args]), stdin)
    real = subprocess.run(["bash", *args], executable="/bin/bash", cwd=tmp_path,
                          input=stdin, capture_output=True, text=True, env=GREP_ENVIRONMENT, timeout=30)
    assert (shell.returncode, shell.out, shell.err) == (real.returncode, real.stdout, real.stderr)


@pytest.mark.parametrize("home, text", [
    # cd alone goes to $HOME, as bash's (it went to / whatever HOME said).
    ("/sys/kernel", "cd; pwd; cd /; cd ''; echo $?"),
    ("/nonexistent-home", "cd; echo $?; pwd"),
    ("/sys", "unset HOME; cd; echo $?; HOME=/proc; cd; pwd"),
    # -L and -P are options ("too many arguments" before); bash's others refused.
    ("/", "cd -P /sys; pwd; cd -L /proc; pwd; cd -LP -- /sys; pwd; cd -x; echo $?"),
])
def test_cd_as_bash(daemon, tmp_path, home, text):
    environ = {"HOME": home}
    shell = finish(start_shell(tmp_path, ["--address", daemon.address, "-c", text],
                               environ=environ))
    bash_env = {**GREP_ENVIRONMENT, **environ}
    real = subprocess.run(["bash", "-c", text], executable="/bin/bash", cwd="/",
                          capture_output=True, text=True, env=bash_env, timeout=30)
    assert (shell.returncode, shell.out, shell.err) == (real.returncode, real.stdout, real.stderr)


def test_cds_options_bash_has_and_the_shell_not_are_refused():
    assert run("cd -e /; echo $?", mode="command") == (
        0, "2\n", "bash: line 1: cd: option '-e' is not supported by ftrace-shell\n")


def test_a_cluster_of_flags_ending_in_c_takes_the_command(daemon, tmp_path):
    """-Vc COMMAND is -V -c COMMAND, as bash's -vc (after the options ended where bash's
    do, it failed: "argument -c: expected one argument")."""
    shell = finish(start_shell(tmp_path, ["--address", daemon.address, "-Vc",
                                          'echo "[$0] [$1]"', "a", "b"]))
    assert (shell.returncode, shell.out, shell.err) == (0, "[a] [b]\n", 'echo "[$0] [$1]"\n')
