"""ftrace-shell's shell functions against bash 5.2's, byte for byte: ``name() compound
[redirections]`` and ``function name [()] compound`` (bash's function_def, FunctionDef),
called before the builtins as bash's default (non-POSIX) order looks them up, with their
own positional parameters (``$1``..., ``$#``, ``$@``, ``$*``; ``$0`` stays), ``return
[N]``, ``local`` (bash's dynamic scoping), ``unset -f``, the body's redirections made at
each call, recursion (and $FUNCNEST), a definition in a pipeline's process or a command
substitution staying there, and diagnostics naming where bash says the function was
defined. No daemon needed but for the last test."""

from __future__ import annotations

import pytest

from clients.shell_parser import FunctionDef, GroupCommand, Redirect, parse
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.real_bash import GREP_ENVIRONMENT
from tests.test_shell_integration import TRACING, run_shell
from tests.test_shell_parser import assert_as_bash, run


@pytest.mark.parametrize("text", ["f() { echo x; } > out", "function f { echo x; } > out",
                                  "function f ( )\n{ echo x; } > out", "f ()\n\n{ echo x; } >out"])
def test_a_function_definition_parses_into_bashs_node(text):
    (node,) = parse(text)
    (definition,) = node.first.commands
    assert isinstance(definition, FunctionDef)
    assert (definition.name, definition.line, definition.identifier) == ("f", 1, True)
    assert isinstance(definition.command, GroupCommand)
    assert definition.command.redirects == (Redirect(1, ">", "out"),)


@pytest.mark.parametrize("text", [
    # The grammar: both forms, newlines before the body, any compound command as body.
    "f() { echo f; }; f",
    "f ( ) { echo f; }; f",
    "f()\n\n{ echo nl; }\nf",
    "function f { echo F; }; f",
    "function f() { echo F; }; f",
    "function f\n{ echo F; }; f",
    "f() if true; then echo if; fi; f",
    "f() for i in 1 2; do echo $i; done; f",
    "f() while :; do echo w; break; done; f",
    "f() case $1 in a) echo A;; *) echo other;; esac; f a; f b",
    "a-b() { echo ab; }; a-b; 3() { echo three; }; 3",
    "f() { echo one; }; f() { echo two; }; f",
    "x=$(f() { echo in; }; f); echo $x",
    "echo $(function g { echo G; }; g)",
    # Syntax errors and names bash does not take.
    "f() echo x", "function f echo", "function", "function ;", "f() { :; } echo", "f(",
    "f()", "f() {", "function f", "a=1 f() { :; }",
    "'f'() { echo q; }; f", "f$x() { echo q; }; echo $?", "\\f() { :; }; echo $?",
    # Looked up before the builtins (bash's default order), special builtins too.
    "echo() { pwd; }; echo x; echo $?",
    "cd() { echo mycd; }; cd /; exit() { echo noexit $1; }; exit 3; echo $?",
    "true() { false; }; true; echo $?",
    # Positional parameters: the function's own, $0 unchanged, the shell's none.
    "f() { echo $0 $# \"$1\" \"${2-unset}\" ${10} ${#1}; }; f a 'b c'; f; echo $# $1",
    "f() { echo $#; g x; echo $1; }; g() { echo $1 $#; }; f a b",
    "f() { for a in \"$@\" . \"$*\" . $@ . $* . \"x$@y\" \"x$*y\"; do echo \"<$a>\"; done; };"
    " f 'a b' '' c; IFS=:; f 'a b' '' c; IFS=; f 'a b' '' c; unset IFS; f 'a b' c; f",
    "f() { for a; do echo \"<$a>\"; done; }; f 1 '2 3'; for a; do echo never; done",
    "f() { echo ${#@} ${#*} ${@-u} ${*:-e} ${@+set}; }; f a b; f",
    "f() { x=$@; y=$*; echo \"$x|$y\"; IFS=-; y=$*; z=\"$*\"; echo \"$y|$z\"; }; f a b",
    "f() { case $@ in 'a b') echo ab;; esac; }; f a b",
    # return.
    "f() { return 3; echo no; }; f; echo $?",
    "f() { false; return; }; f; echo $?",
    "f() { return 300; }; f; echo $?; g() { return -1; }; g; echo $?",
    "f() { return -- 4; }; f; echo $?",
    "f() { return abc; echo no; }; f; echo $?",
    "f() { return 1 2; echo no; }; f; echo $?",
    "return; echo $?", "return 3; echo $?", "return abc; echo $?",
    "f() { for i in 1 2 3; do [ $i = 2 ] && return 5; echo $i; done; }; f; echo $?;"
    " for j in a b; do f; done; echo $?",
    "f() { { return 4; } | grep x; echo $?; }; f; echo $?",
    "f() { x=$(echo a; return 6; echo b); echo $? $x; }; f",
    "f() { if return 2; then echo then; fi; echo after; }; f; echo $?",
    # Loops: the caller's are not the function's.
    "f() { break; }; for i in 1 2; do f; echo $i; done",
    "f() { continue 2; }; while :; do f; echo $?; break; done",
    # local: dynamic scoping, as bash's.
    "x=g; f() { local x=l; g; echo $x; }; g() { echo $x; x=set; }; f; echo $x",
    "f() { local x; echo ${x-unset}; x=1; }; x=g; f; echo $x",
    "f() { local x=1; unset x; echo ${x-unset}; x=2; }; x=g; f; echo $x",
    "x=1; f() { local x; x=2; g; }; g() { unset x; echo ${x-unset}; }; f; echo $x",
    "f() { local a=1; local a; echo $a; local a=2; echo $a; }; f",
    "f() { local b=2 a=1 zz='x \"y' c; local; }; f",
    "f() { local x=1; g; }; g() { local; }; f",
    "f() { local IFS=:; x=a:b; for i in $x; do echo $i; done; }; f; x=a:b; echo $x",
    "f() { local 1x 'a b=1' =x ok=1; echo $? $ok; }; f",
    "f() { local -z; echo $?; local -- y=1; echo $y; }; f",
    "local x; echo $?",
    "local; echo $?",
    # Prefix assignments are the function's temporary variables.
    "f() { echo \"in:$a\"; a=2; }; a=0; a=1 f; echo \"out:$a\"",
    "f() { local a=3; echo $a; }; a=1 f; echo \"[$a]\"",
    # unset: -f, and a name no variable has.
    "f() { echo f; }; unset f; f; echo $?",
    "f() { echo f; }; f=1; unset f; f; unset f; f; echo $?",
    "f() { echo f; }; unset -v f; f; unset -f f; f; unset -f nosuch; echo $?",
    "a-b() { :; }; unset a-b; echo $?; a-b",
    "export -f nosuch; echo $?; f() { :; }; export -f f; echo $?",
    # Redirections: after the body, made at each call; the call's own too.
    "f() { echo x; echo e >&2; } >&2; f 2>/dev/null; f",
    "f() { echo $1 >&3; } 3>&1; f a; f b",
    "f() { cat <&3; }; f 3</dev/null; echo $?",
    "f() { echo x >&3; }; f; echo $?",
    # A pipeline's process and a command substitution define theirs for themselves.
    "f() { echo f; }; f() { echo in; } | grep x; f; x=$(g() { :; }); g",
    "f() { echo out; }; echo $(f() { echo in; }; f); f",
    "f() { echo a b; }; f | grep -c a",
    # Recursion, and $FUNCNEST.
    "f() { [ ${#1} -ge 50 ] && { echo deep $1; return 7; }; f x$1; }; f x; echo $?",
    "FUNCNEST=3; f() { echo $1; f x$1; echo ret; }; f 1; echo after $?\necho next",
    "FUNCNEST=0; f() { [ ${#1} -ge 5 ] && return; f x$1; }; f; echo $?",
    "FUNCNEST=x; f() { [ ${#1} -ge 5 ] && return; f x$1; }; f; echo $?",
    # Expansion errors inside: bash's DISCARD, named where the function is.
    "f() { echo ${x?unset}; echo no; }; f; echo $?",
    "f() { echo ${1a}; echo no; }; f; echo never\necho next",
])
def test_functions_as_bash(text):
    assert_as_bash(text, GREP_ENVIRONMENT)


_SCRIPT = "f() {\n  nosuch\n}\nf\nfunction g\n{\n  echo g; return 4\n}\ng; echo $?\nreturn\n"


@pytest.mark.parametrize("mode", ["command", "stdin", "script"])
def test_a_functions_diagnostics_name_where_bash_says_it_was_defined(mode):
    """bash names a function's BASH_SOURCE: the script, "main" (standard input) or
    "environment" (-c)."""
    assert_as_bash(_SCRIPT, mode=mode)


@pytest.mark.parametrize("text", ["declare -f", "typeset -f f", "type f"])
def test_printing_a_function_is_refused_by_name(text):
    name = text.split()[0]
    assert run(f"f() {{ :; }}; {text}; echo $?", mode="command") == (
        0, "2\n", f"bash: line 1: {name}: not supported by ftrace-shell\n")


@pytest.mark.parametrize("option", ["-p", "-x", "+r"])
def test_locals_options_are_refused_by_name(option):
    assert run(f"f() {{ local {option} a=1; echo $? ${{a-unset}}; }}; f", mode="command") == (
        0, "2 unset\n",
        f"environment: line 1: local: option '{option}' is not supported by ftrace-shell\n")


def test_recursion_deeper_than_the_shells_limit_is_bashs_funcnest_error():
    """bash recurses until its stack overflows; the shell stops at 2000 calls with
    FUNCNEST's error (and its DISCARD), never a traceback."""
    assert run("f() { f; }; f; echo $?\necho next", mode="command") == (
        0, "next\n", "environment: line 1: f: maximum function nesting level exceeded (2000)\n")


def test_a_functions_redirection_opens_the_file_at_each_call(daemon, tmp_path):
    """The body's ``> FILE`` opens set_ftrace_filter O_TRUNC at each call (each call's
    write replaces the filter), ``>> FILE`` O_APPEND (each adds to it)."""
    script = f"""\
cd {TRACING}
set_filter() {{ echo "$@"; }} > set_ftrace_filter
add_filter() {{ local f; for f; do echo $f; done; }} >> set_ftrace_filter
set_filter vfs_read; set_filter vfs_write; cat set_ftrace_filter
add_filter vfs_read sys_read; cat set_ftrace_filter
"""
    shell = run_shell(tmp_path, ["--address", daemon.address], script)
    assert (shell.returncode, shell.out, shell.err) == (
        0, "vfs_write\nvfs_read\nvfs_write\nsys_read\n", "")
