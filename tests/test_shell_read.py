"""ftrace-shell's ``read [-r] [NAME...]`` against bash 5.2's, byte for byte: the line read
from standard input (a pipe a byte at a time, a regular file a buffer at a time and the
offset set back), backslashes, IFS splitting, the status at the end of the input, and the
diagnostics. No daemon: standard input is a pipe or a file of the test's."""

from __future__ import annotations

import os
import subprocess
import tempfile

import pytest

from clients.shell import Shell
from clients.shell_runtime import BufferOutput, ShellExit, StandardInput
from tests.real_bash import GREP_ENVIRONMENT, bash_path


def _standard_input(data: bytes, seekable: bool, directory: str) -> int:
    """A descriptor holding ``data``: a regular file's, or a pipe's whose writer is gone."""
    if seekable:
        path = os.path.join(directory, "input")
        with open(path, "wb") as file:
            file.write(data)
        return os.open(path, os.O_RDONLY)
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    return read_end


def _ftrace_shell(text: str, fd: int, mode: str) -> tuple[int, bytes, bytes]:
    out, err = BufferOutput(), BufferOutput()
    standard_input = StandardInput(fd)
    shell = Shell(None, mode=mode, stdout=out, stderr=err,  # type: ignore[arg-type]
                  standard_input=standard_input, environ=GREP_ENVIRONMENT)
    try:
        if mode == "command":
            shell.feed_command(text)
        else:
            shell.feed_all(line.decode("utf-8", "surrogateescape")
                           for line in standard_input.lines())
        status = shell.status
    except ShellExit as done:
        status = done.status
    return status, out.getvalue(), err.getvalue()


def assert_reads_as_bash(text: str, data: bytes, seekable: bool, mode: str = "command") -> None:
    """``bash -c TEXT`` (mode "stdin": bash reading TEXT, then DATA, from its standard
    input) and ftrace-shell, each with standard input holding DATA: status, stdout and
    stderr byte for byte."""
    bash = bash_path()
    argv = ["bash", "-c", text] if mode == "command" else ["bash"]
    data = data if mode == "command" else text.encode() + data
    with tempfile.TemporaryDirectory() as directory:
        fd = _standard_input(data, seekable, directory)
        try:
            real = subprocess.run(argv, executable=bash, stdin=fd, capture_output=True,
                                  env=GREP_ENVIRONMENT, cwd="/", timeout=30)
        finally:
            os.close(fd)
        fd = _standard_input(data, seekable, directory)
        try:
            assert _ftrace_shell(text, fd, mode) == (real.returncode, real.stdout, real.stderr)
        finally:
            os.close(fd)


_CASES = [
    ('read a b; echo "[$a][$b]"', b" one two  three \nnext\n"),
    ('read a b c; echo "[$a][$b][$c]"', b"one two\n"),
    ('read; echo "[$REPLY]"', b"  a\\tb \\\n c  \\\\ \n"),
    ('read a; echo "[$a]"', b"  a\\tb \\\n c  \\\\ \\ \n"),
    ('read a b; echo "[$a][$b]"', b"a\\ b c\\ \n"),
    ('read a b; echo "[$a][$b]"', b"a b\\ \n"),
    ('read a b; echo "[$a][$b]"', b"a b c\\ \n"),
    ('read -r a b; echo "[$a][$b]"', b"a\\ b c\\\\ d\\\n"),
    ('read -rr; echo "[$REPLY]"', b"x\\\ny\n"),
    # The end of the input: status 1, a partial line still assigned; then empty.
    ('read a; echo $? "[$a]"; read b; echo $? "[${b-unset}]"', b"partial"),
    ('read a; echo $? "[$a]"', b"ends with a backslash\\"),
    ('read a; echo $? "[$a]"', b"\\"),
    ('x=old; read x; echo $? "[${x-unset}]"', b""),
    ('while read -r f; do echo "f=$f"; done; echo $?', b"a\nb b\n\nlast"),
    ('while read f; do echo "f=$f"; done', b"a\\\nb\nc\n"),
    # NUL bytes are skipped; a quoted one ends the value; CTLESC and CTLNUL bytes stay.
    ('read a; echo "[$a]"', b"a\0b\n"),
    ('read a; echo "[$a]"', b"a\\\0b\n"),
    ('read a b; echo "[$a][$b]"', b"\x01 \x7f x\\\x01\n"),
    # IFS.
    ('IFS=: read x y z; echo "[$x][$y][$z]"', b"a:b::c:\n"),
    ('IFS=: read x y; echo "[$x][$y]"', b"a:b:\n"),
    ('IFS=: read x y; echo "[$x][$y]"', b"a:b::\n"),
    ('IFS=: read x; echo "[$x]"', b"a:\n"),
    ('IFS=" :" read x y z; echo "[$x][$y][$z]"', b" a : b : c : \n"),
    ('IFS=" :" read x y; echo "[$x][$y]"', b"a :: b\n"),
    ('IFS= read x y; echo "[$x][$y]"', b"  a  b  \n"),
    ("IFS=$(echo x); read x y; echo \"[$x][$y]\"", b"axbx\n"),
    ('unset IFS; read x y; echo "[$x][$y]"', b" a\tb \n"),
    ('IFS=": \t"; read x y; echo "[$x][$y]"', b"\t:a\t: b :\t\n"),
    ('read x; echo "[$x]"; echo "$IFS" | grep -c .', b"a\n"),
    # IFS's bytes separate, as in the C locale: a multibyte character is two separators.
    ('IFS=é; read a b c; echo "[$a][$b][$c]"', "aébéc\n".encode()),
    ('IFS=é; read a b; echo "[$a][$b]"', b"a\xc3\xa9b\xc3c\n"),
    # Names, options.
    ("read 1a; echo $?", b"x\n"),
    ('read a 1b c; echo $? "[$a]"', b"x y z\n"),
    ('read a b 1c; echo $? "[$a][$b]"', b"x y z\n"),
    ("read -; echo $?", b"x\n"),
    ('read -- -x; echo $?', b"x\n"),
    ("read -x; echo $?", b"x\n"),
    ("read -r1 a; echo $?", b"x\n"),
    ("read --foo; echo $?", b"x\n"),
    # Descriptor 0 not open for reading.
    ("read a <&-; echo $?", b"x\n"),
    ("read a <&1; echo $?", b"x\n"),
    ("read a < /dev/null; echo $? \"[$a]\"", b"x\n"),
]


@pytest.mark.parametrize("text, data", _CASES)
@pytest.mark.parametrize("seekable", [False, True], ids=["pipe", "file"])
def test_read_as_bash(text, data, seekable):
    assert_reads_as_bash(text, data, seekable)


@pytest.mark.parametrize("text", [
    "read a; cat", "read a; read b; cat", "read -r a b; grep -c .", "read; read; echo $REPLY",
])
@pytest.mark.parametrize("seekable", [False, True], ids=["pipe", "file"])
def test_read_leaves_the_rest_to_the_next_reader(text, seekable):
    """Nothing past the line is taken: a pipe is read a byte at a time; on a file the
    offset is set back to the end of the line."""
    assert_reads_as_bash(text, b"first line\nsecond\nthird\nlast", seekable)


@pytest.mark.parametrize("seekable", [False, True], ids=["pipe", "file"])
def test_read_takes_the_line_after_its_own_from_the_shells_input(seekable):
    """``ftrace-shell < SCRIPT``: read reads the line after the one it is on, and the shell
    goes on after it."""
    assert_reads_as_bash('read a b\nx  y z\necho "[$a][$b]"; read -r\n\\raw\\\n'
                         'echo "$REPLY"; read\n  \\x \\\n y \necho "[$REPLY]"\n', b"",
                         seekable, mode="stdin")


@pytest.mark.parametrize("option", ["-n 3", "-p prompt", "-t1", "-u 0", "-d :", "-a", "-e",
                                    "-s", "-N1", "-rs", "--help"])
def test_options_bash_has_are_refused_not_misread(option):
    with tempfile.TemporaryDirectory() as directory:
        fd = _standard_input(b"x\n", True, directory)
        try:
            status, out, err = _ftrace_shell(f"read {option} a; echo $?", fd, "command")
        finally:
            os.close(fd)
    shown = "--help" if option == "--help" else "-" + option.lstrip("-r")[0]
    assert (status, out, err) == (
        0, b"2\n", b"bash: line 1: read: option '%s' is not supported by ftrace-shell\n"
        % shown.encode())
