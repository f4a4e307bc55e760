"""ftrace-shell's input redirections (``< FILE``, ``N< FILE``, ``<&N``, ``<&-``) as
bash's: a tracefs file is opened O_RDONLY and read as ``cat`` reads it, a read(2) at a
time through the daemon (``grep -m1 x < trace_pipe`` returns at its match), and released
when the command ends; on simple and compound commands (``done < FILE``), left to right
with the output redirections.

Compared with bash 5.2 byte for byte: bash runs the same commands in a directory holding
copies of the tracefs files the shell reads. ``read`` (clients.shell_read) reads them
too.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from clients.shell_parser import Redirect, parse
from tests.children import child_env
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.real_bash import GREP_ENVIRONMENT
from tests.test_shell_grep_stream import event, shown_as
from tests.test_shell_integration import TRACING, run_shell
from tests.test_shell_parser import assert_as_bash


# --- parsing --------------------------------------------------------------------------


@pytest.mark.parametrize("text, redirects", [
    ("cat < f", (Redirect(0, "<", "f"),)),
    ("cat <f 3<g", (Redirect(0, "<", "f"), Redirect(3, "<", "g"))),
    ("cat <&3 2<&- 4>&-", (Redirect(0, "<&", "3"), Redirect(2, "<&", "-"),
                           Redirect(4, ">&", "-"))),
    ("cat 3<f <&3 >out", (Redirect(3, "<", "f"), Redirect(0, "<&", "3"),
                          Redirect(1, ">", "out"))),
])
def test_input_redirections_parse_with_their_descriptor(text, redirects):
    (node,) = parse(text)
    assert node.first.commands[0].redirects == redirects


def test_a_compound_command_takes_input_redirections_after_it():
    (node,) = parse("while read -r f; do echo $f; done < set_ftrace_filter 2>/dev/null")
    assert node.first.commands[0].redirects == (Redirect(0, "<", "set_ftrace_filter"),
                                                Redirect(2, ">", "/dev/null"))


@pytest.mark.parametrize("text", ["cat <", "cat < ;", "cat <&", "{ cat; } < | grep x"])
def test_an_input_redirection_without_its_word_is_bashs_syntax_error(text):
    assert_as_bash(text)


# --- what needs no tracefs file --------------------------------------------------------


@pytest.mark.parametrize("text", [
    "cat < /dev/null; echo $?",
    "cat <&5; echo $?",
    "cat <&foo; echo $?",
    'x="a b"; cat < $x; echo $?; cat <&$x; echo $?',
    'x=" 3"; cat <&"$x"; echo $?; cat <&$e; echo $?; cat <&"$e"; echo $?',
    "cat <&99999999999999999999; echo $?; cat 2<&-; echo $?",
    "echo x >&-; echo $?",
    "echo x 3>&1 >&- >&3; echo $?",
    "{ echo a; echo b >&2; } 2>&1 2>&- >/dev/null; echo $?",
    "{ echo in; } < /dev/null; echo $?",
    "echo abc | grep b < /dev/stdin; echo $?; echo abc | grep -c . 3</dev/stdin <&3",
])
def test_descriptors_as_bash_makes_them(text):
    assert_as_bash(text, GREP_ENVIRONMENT)


# --- tracefs files, against bash on copies of them --------------------------------------


#: The tracefs files the scripts below read, copied for bash.
_FILES = ("available_tracers", "available_filter_functions", "set_ftrace_filter")

_SCRIPTS = [
    "grep -c vfs < available_filter_functions; echo $?",
    "grep vfs_read <available_filter_functions",
    # What grep -m gives back on a file it can seek in is the next reader's.
    "{ grep -m2 vfs; echo ==; cat; } < available_filter_functions",
    "for i in 1 2 3; do grep -m1 -n .; done < set_ftrace_filter",
    "if grep -q nop; then echo found; fi < available_tracers",
    "{ cat; cat < available_tracers; } < set_ftrace_filter",
    # read: a line at a time, the rest left for the next reader.
    'while read -r f; do echo "f=$f"; done < set_ftrace_filter; echo $?',
    '{ read a; read -r b c; echo "[$a][$b][$c]"; cat; } < set_ftrace_filter',
    '{ read a; grep -c .; } < available_filter_functions',
    'read -r x < available_tracers; echo "[$x]"; IFS= read -r < available_tracers; echo "$REPLY"',
    # The three together, as scripts write them.
    'while read -r f; do case $f in vfs_*) echo "vfs: $f";; *) echo "other: $f";; esac;'
    ' done < set_ftrace_filter',
    'while read -r t; do case $t in function|nop) echo "$t: known";; esac; done'
    ' < available_tracers; echo $?',
    # The open fails: bash's words, status 1, the command not run; left to right.
    "cat < nosuch; echo $?",
    "{ echo never; } < nosuch; echo $?",
    "cat < available_tracers > /dev/null < nosuch; echo $?",
    "cat < nosuch 2>/dev/null; echo $?",
    "cat 2>/dev/null < nosuch; echo $?",
    # Duplicated descriptors, in their order.
    "cat 3< available_tracers <&3; echo $?",
    "cat <&3 3< available_tracers; echo $?",
    "grep -c . 4<set_ftrace_filter 0<&4; echo $?",
    "grep -c x <&-; echo $?",
    "echo x >&0 < available_tracers; echo $?",
    "{ echo x >&2; } 2< available_tracers; echo $?",
    # A compound command's descriptors 3 and up are its commands'.
    "{ cat <&3; } 3< available_tracers",
    'while read -r f <&3; do echo "f=$f"; done 3< set_ftrace_filter; echo $?',
    "{ grep -m1 vfs <&4; grep -c . <&4; } 4< available_filter_functions",
]


#: What each script of the run of them all ends with: its status on stdout, a mark on stderr.
_ENDED = b'echo "::ended $?::"; echo ::ended:: >&2\n'
_ENDED_OUT = re.compile(rb"^::ended (\d+)::\n", re.MULTILINE)
_ENDED_ERR = re.compile(rb"^::ended::\n", re.MULTILINE)


def each_script(run: subprocess.CompletedProcess) -> list[tuple[int, bytes, bytes]]:
    """The status, stdout and stderr of each of ``_SCRIPTS`` in ``run`` of them all."""
    out = _ENDED_OUT.split(run.stdout)
    err = _ENDED_ERR.split(run.stderr)
    # Every script ran to its end: a mark each, and nothing after the last.
    assert (len(out), len(err), out[-1], err[-1]) == (
        2 * len(_SCRIPTS) + 1, len(_SCRIPTS) + 1, b"", b""), run
    return [(int(status), text, error) for text, status, error in zip(out[::2], out[1::2], err)]


def test_input_redirections_read_tracefs_files_as_bash_reads_files(daemon, tmp_path):
    """Each script as bash runs it: one run of them all for each shell, as a starting
    shell costs far more than every script together; the marks each script ends with
    split both runs script by script. Each shell cds first, so the line numbers in their
    messages are the same."""
    with daemon.connect() as client:
        client.write_file(f"{TRACING}/set_ftrace_filter", "vfs_read\nvfs_write\nsys_read\n")
        copies = tmp_path / "copies"
        copies.mkdir()
        for name in _FILES:
            (copies / name).write_bytes(client.read_file(f"{TRACING}/{name}"))
    scripts = b"".join(script.encode() + b"\n" + _ENDED for script in _SCRIPTS)
    bash = subprocess.run(["bash", "-c", b"cd %s\n%s" % (bytes(copies), scripts)],
                          executable="/bin/bash", cwd=copies, env=GREP_ENVIRONMENT,
                          capture_output=True, timeout=120)
    shell = subprocess.run(
        [sys.executable, "-m", "clients.shell", "--address", daemon.address, "-c",
         b"cd %s\n%s" % (TRACING.encode(), scripts)],
        cwd=tmp_path, env=child_env(), capture_output=True, timeout=120)
    assert (shell.returncode, bash.returncode) == (0, 0), (shell, bash)
    for script, got, expected in zip(_SCRIPTS, each_script(shell), each_script(bash)):
        assert got == expected, script


@pytest.mark.parametrize("reader, out, err", [
    ("grep -m1 -c . < trace", "1\n", ""),
    ("while read -r l; do break; done < trace", "", ""),
    ("grep -c . < trace < nosuch", "", "repro.sh: line 4: nosuch: No such file or directory\n"),
])
def test_the_file_is_released_when_the_command_ends(daemon, tmp_path, reader, out, err):
    """Opened for reading, ``trace`` stops tracing until its release (3.6's
    __tracing_open() and tracing_release()): an event after the command that read it
    (a simple command, a loop, one whose next redirection failed) is traced only if the
    redirection's file was released as the command ended."""
    script = f"""\
cd {TRACING}
echo vfs_read > set_ftrace_filter
echo function > current_tracer
{reader}
invoke vfs_read sys_read
grep -c "bash-$$ .*: vfs_read <-sys_read$" < trace
"""
    shell = run_shell(tmp_path, ["--address", daemon.address], script)
    assert (shell.returncode, shell.out, shell.err) == (
        0, out + "1\n", err)


def test_read_takes_one_line_of_trace_pipe_and_leaves_the_next(daemon, tmp_path):
    """trace_pipe cannot seek (no_llseek): read takes a byte at a time up to its newline,
    and the next event's line is the next reader's."""
    script = (f"cd {TRACING}; read -r comm rest < trace_pipe; echo \"read: $? $comm\";"
              " grep -m1 . < trace_pipe")
    with daemon.connect() as client:
        client.write_file(f"{TRACING}/current_tracer", "function")
        client.invoke("vfs_read", "sys_read", cpu=1, pid=4001, comm="first")
        client.invoke("vfs_read", "sys_read", cpu=1, pid=4002, comm="second")
        shell = run_shell(tmp_path, ["--address", daemon.address, "-c", script])
    assert (shell.returncode, shell.err) == (0, "")
    assert shown_as(shell.out.splitlines(), ["read: 0 first-4001", event("second", 4002)])
