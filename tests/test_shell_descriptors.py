"""ftrace-shell's descriptors 3 and up, opened by a compound command's redirection and
seen by the commands inside it as bash's (``{ cat <&3; } 3< FILE``, ``while read -r l
<&3; do ...; done 3< FILE``, ``{ echo x >&4; } 4> FILE``): bash makes them the shell
process's own for the compound command's time, so every command in it, a pipeline's
stage and a command substitution inherit them. Compared with bash 5.2 byte for byte; the
tracefs files' cases are in tests/test_shell_input.py. No daemon needed."""

from __future__ import annotations

import pytest

from tests.real_bash import GREP_ENVIRONMENT
from tests.test_shell_parser import assert_as_bash, run


@pytest.mark.parametrize("text", [
    "{ echo x >&4; } 4>&1",
    "{ echo x >&4; } 4> /dev/null; echo $?",
    "{ echo a >&3; echo b >&3; } 3>&1 >/dev/null",
    "if true; then echo y >&3; fi 3>&2",
    "for i in 1 2; do echo $i >&5; done 5>&2",
    "while :; do echo w >&3; break; done 3>&1",
    "case x in x) echo c >&3;; esac 3>&1",
    "{ cat <&3; } 3</dev/null; echo $?",
    "while read -r l <&3; do echo \"[$l]\"; done 3</dev/null; echo $?",
    # Inherited by nested compound commands, pipelines and command substitutions.
    "{ { echo in >&3; }; if :; then echo if >&3; fi; } 3>&1",
    "{ echo x | grep x >&3; } 3>&2",
    "{ echo $(echo sub >&3); } 3>&1",
    # Only while the compound command runs; closed inside, bash's dup2 fails.
    "{ echo x >&3; } 3>&1; echo y >&3; echo $?",
    "{ { echo x >&4; } 4>&-; echo $?; } 4>&1",
    "{ echo x >&3; }; echo $?",
    "{ echo x >&3; } 3<&0; echo $?",
    "{ echo x 3>&2 >&3; echo y >&3; } 3>&1",
    # N>&N is no dup2: no EBADF where N is closed.
    "echo x 3>&3; echo $?; echo y 1>&1",
])
def test_descriptors_of_a_compound_command_are_its_commands(text):
    assert_as_bash(text, GREP_ENVIRONMENT)


@pytest.mark.parametrize("text", [
    # exec without a command: its redirections stay the shell's.
    "exec 3>/dev/null; echo a >&3; echo rc=$?",
    "exec >/dev/null; echo hidden; echo shown >&2",
    "exec 2>&1; nosuch; echo $?",
    "exec 3>&1; echo x >&3; exec 3>&-; echo y >&3; echo $?",
    "exec 4<&0; echo $?; exec 5<&7; echo $?",
    "a=1 exec; echo \"[$a]\"; exec; echo $?",
    # A subshell's own.
    "x=$(exec 2>/dev/null); nosuch",
    "exec >&2 | grep x; echo y",
    # With a command: the shell becomes it (one not found ends it, 127).
    "exec true; echo no",
    "exec false",
    "exec -- true 2>/dev/null; echo no",
    "exec nosuch; echo no",
    # A program, not a function or a builtin that is none (echo is /bin/echo too).
    "f() { echo hi; }; exec f; echo no",
    "exec cd /; echo no",
    "exec echo hi; echo no",
])
def test_exec_as_bash(text):
    assert_as_bash(text, GREP_ENVIRONMENT)


@pytest.mark.parametrize("name", [".", "eval", "printf", "source", "trap", "wait", "kill", "let",
                                  "readonly", "getopts", "command", "builtin", "shopt",
                                  "mapfile", "pushd", "umask", "alias", "declare", "type"])
def test_bashs_other_builtins_are_refused_by_name(name):
    """Not bash's "command not found" (127), which reads as bash's own answer."""
    status, out, err = run(f"{name} x; echo $?", mode="command")
    assert (status, out, err) == (
        0, "2\n", f"bash: line 1: {name}: not supported by ftrace-shell\n")


@pytest.mark.parametrize("text, message", [
    ("exec -a x true", "exec: option '-a' is not supported by ftrace-shell"),
    ("{ exec >/dev/null; }", "exec: its redirections inside a compound command or a "
     "function are not supported by ftrace-shell"),
])
def test_what_exec_does_not_do_is_refused(text, message):
    assert run(f"{text}; echo $?", mode="command") == (0, "2\n", f"bash: line 1: {message}\n")
