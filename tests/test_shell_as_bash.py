"""ftrace-shell against bash 5.2 where reviews found them apart, over a real ftraced: the
variables bash sets at start where the environment has none (PATH, TERM, SHELL), its
readonly ones (UID, EUID, PPID) and its dynamic ones (RANDOM=N seeds, SECONDS=N offsets,
unset ends them); what is no assignment (``a[0]+=1`` refused as arrays are, ``echo
x=(1)`` bash's syntax error) and where braces are literal (a case command's word and
patterns) or expanded (``for i in a={x,y}``: refused); help for every builtin of bash's;
GNU cat's close of a closed standard input; a ``-c`` command's last program exec'd as
bash's (SIGPIPE kills the shell); an interactive shell's ``exit`` and ``exec nosuch`` at a
terminal. Each is compared with bash's own output where bash has one."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.children import REPO
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.test_shell_streams import run_with

TRACING = "/sys/kernel/debug/tracing"
#: What both shells' environments hold (bash's too, so that ``export -p`` lists the same):
#: no PATH, TERM, SHELL or HOME unless a test gives them.
_ENVIRONMENT = {"LC_ALL": "C", "PYTHONPATH": REPO}


def _bash() -> str:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash to compare with")
    return bash


def _shell(daemon, text: str, environ: dict[str, str], stdin: str = ""
           ) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clients.shell", "--address", daemon.address, "-c", text],
        env=environ, cwd="/", input=stdin, capture_output=True,
        text=True, timeout=60)


def assert_as_bash(daemon, text: str, environ: dict[str, str] = _ENVIRONMENT,
                   stdin: str = "") -> None:
    """``ftrace-shell -c TEXT`` and ``bash -c TEXT`` with only ``environ`` in their
    environments: status, stdout and stderr the same."""
    real = subprocess.run(["bash", "-c", text], executable=_bash(), env=environ, cwd="/",
                          input=stdin, capture_output=True, text=True, timeout=60)
    shell = _shell(daemon, text, environ, stdin)
    assert (shell.returncode, shell.stdout, shell.stderr) == (
        real.returncode, real.stdout, real.stderr)


# --- words --------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    # The "(" after a word that is no assignment: bash's syntax error, not an array's.
    "echo x=(1 2)",
    "echo a[0]+=1 x=\\(",
    # Braces bash leaves as they are: a case command's word and patterns, a name.
    "case a in {a,b}) echo yes;; *) echo no;; esac",
    "case {a,b} in {a,b}) echo yes;; esac",
    "for {a,b} in 1; do :; done",
    "{a,b}() { echo f; }; '{a,b}'",
])
def test_words_as_bash_reads_them(daemon, text):
    assert_as_bash(daemon, text)


@pytest.mark.parametrize("text, refusal", [
    # Was "a[0]+=1: command not found".
    ("a[0]+=1", "an array element's assignment (`a[0]+=')"),
    # Ran unexpanded: bash's for gives a=x, then a=y.
    ("for i in a={x,y}; do echo $i; done", "brace expansion (`{x,y}')"),
])
def test_what_bash_would_assign_or_expand_is_refused(daemon, text, refusal):
    shell = _shell(daemon, text, _ENVIRONMENT)
    assert (shell.returncode, shell.stdout, shell.stderr) == (
        2, "", f"bash: -c: line 1: {refusal} is not supported by ftrace-shell\n"
        f"bash: -c: line 1: `{text}'\n")


# --- builtins -----------------------------------------------------------------------


def test_help_knows_every_builtin_and_reserved_word_bashs_does(daemon):
    """``help NAME`` succeeds where bash's does: every builtin (those the shell refuses
    say so) and the reserved words with a topic; the others are bash's complaint."""
    names = subprocess.run(["bash", "-c", "compgen -b; compgen -k"], executable=_bash(),
                           capture_output=True, text=True, check=True).stdout.split()
    names.remove("in")  # the start of the shell's insmod and invoke, which bash has not
    quoted = " ".join(f"'{name}'" for name in names)
    assert_as_bash(daemon, f'for n in {quoted}; do help "$n" > /dev/null; echo "$n $?"; done '
                   "2>&1 | grep -v -e ' 0$' -e 'no help topics match'")
    shell = _shell(daemon, "help eval '[['", _ENVIRONMENT)
    assert shell.stdout == (f"  {'eval':<26}(bash's: not supported by ftrace-shell)\n"
                            f"  {'[[ ... ]]':<26}(bash's: not supported by ftrace-shell)\n")


@pytest.mark.parametrize("text", [
    # GNU cat closes standard input when it read it: closed, its second complaint.
    "cat <&-; echo $?",
    "cat - /dev/null <&-; echo $?",
    "cat /dev/null <&-; echo $?",
    # Open, for writing only: the read fails, not the close.
    "cat 0>/dev/null; echo $?",
])
def test_cat_of_a_closed_standard_input_as_gnus(daemon, text):
    assert_as_bash(daemon, text, _GREP)


