"""ftrace-shell's positional parameters against bash 5.2's, byte for byte (output, error
text, exit status): ``shift [N]`` (bash's shift_builtin), and the arguments bash's
get_numeric_arg, get_exitstat and no_args read for shift, break, continue, exit and
return (``break 1 2``: its complaint, then top_level_cleanup() and DISCARD, which ends a
``-c`` command with status 1 and drops the rest of a script's or standard input's line).
No daemon needed."""

from __future__ import annotations

import pytest

from tests.test_shell_input import WITH_GREP
from tests.test_shell_parser import assert_as_bash

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
    assert_as_bash(text, WITH_GREP)


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
    assert_as_bash(text, WITH_GREP, mode=mode)
