"""ftrace-shell's descriptors 3 and up, opened by a compound command's redirection and
seen by the commands inside it as bash's (``{ cat <&3; } 3< FILE``, ``while read -r l
<&3; do ...; done 3< FILE``, ``{ echo x >&4; } 4> FILE``): bash makes them the shell
process's own for the compound command's time, so every command in it, a pipeline's
stage and a command substitution inherit them. Compared with bash 5.2 byte for byte; the
tracefs files' cases are in tests/test_shell_input.py. No daemon needed."""

from __future__ import annotations

import pytest

from tests.test_shell_input import WITH_GREP
from tests.test_shell_parser import assert_as_bash


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
    assert_as_bash(text, WITH_GREP)
