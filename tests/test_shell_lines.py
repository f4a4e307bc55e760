"""The line ftrace-shell's diagnostics name for a simple command that backslash-newlines
(or a quoted newline) continue, against bash 5.2's: bash's parser makes the command once
it has read the token after its first word (that word could start a function
definition), so its line is where that token ends; after an assignment or a redirection
first, where that ends. No daemon needed."""

from __future__ import annotations

import pytest

from tests.real_bash import GREP_ENVIRONMENT
from tests.test_shell_parser import assert_as_bash


@pytest.mark.parametrize("text", [
    "nosuch \\\na",
    "nosuch\\\na",
    "nosuch \\\n\\\n a",
    "nosuch \\\na;",
    "nosuch \\\na\n",
    "nosuch \\\na # c\n",
    "echo x; nosuch \\\na\nnosuch2",
    "nosuch \\\na; nosuch3",
    "nosuch a \\\nb \\\nc",
    "nosuch \\\na b",
    "nosuch \"a\nb\" c",
    "nosuch \"a\nb\nc\"",
    "nosuch \\\na && nosuch2 \\\n b",
    "nosuch \\\n > /dev/null",
    "x=1 \\\n nosuch",
    "x=\"a\nb\" nosuch",
    "> /dev/null \\\n nosuch",
    ">\\\n/dev/null nosuch",
    "2>&1 \\\n nosuch",
    "nosuch\n\nnosuch2 \\\n\n",
    "if nosuch \\\n; then :; fi",
    "for i in 1; do nosuch \\\n $i; done",
    "f() { nosuch \\\n a; }; f",
    "echo $(nosuch \\\n a) \\\n b",
    "echo ${a?x} \\\n b",
    # A final backslash-newline continues onto a line that is not there.
    "nosuch \\\n",
    "nosuch \\\n\\\n",
    "x=$(nosuch \\\n)",
    "echo $(nosuch \\\n) \\\n",
])
def test_a_continued_commands_line_is_bashs(text):
    assert_as_bash(text, GREP_ENVIRONMENT)


@pytest.mark.parametrize("mode", ["stdin", "script"])
def test_a_continued_commands_line_is_bashs_in_a_script(mode):
    assert_as_bash("echo a\nnosuch \\\n  b \\\n  c\nnosuch2 x \\\n y\nnosuch3 \\\n", mode=mode)
