"""bash 5.2 itself, which the ftrace-shell tests compare the shell with: where it is, and
what it makes of a text (its status, stdout and stderr)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

__all__ = ["GREP_ENVIRONMENT", "bash_path", "run_bash"]

#: Where bash finds GNU grep and cat, which the shell's are.
GREP_ENVIRONMENT = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
#: How ``run_bash`` gives bash its text: ``bash -c TEXT``, on its standard input, or as a
#: script file (its name).
_SCRIPT = "script.sh"


def bash_path() -> str:
    """Where bash is; the test is skipped where there is none to compare with."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash to compare with")
    return bash


def run_bash(text: str, environ: dict[str, str], mode: str = "command",
             stdin: str = "") -> tuple[int, str, str]:
    """bash's (status, stdout, stderr) for ``text`` with only ``environ`` in its
    environment: ``mode`` "command" is ``bash -c TEXT`` (in /), "stdin" bash reading TEXT
    on its standard input (in /), "script" bash running a script file of TEXT
    (``script.sh``, in a directory of its own); ``stdin`` follows on its standard input."""
    argv = {"command": ["bash", "-c", text], "stdin": ["bash"],
            "script": ["bash", _SCRIPT]}[mode]
    with tempfile.TemporaryDirectory() as directory:
        if mode == "script":
            with open(os.path.join(directory, _SCRIPT), "w") as file:
                file.write(text)
        real = subprocess.run(argv, executable=bash_path(), capture_output=True, text=True,
                              cwd=directory if mode == "script" else "/", env=environ,
                              input=(text if mode == "stdin" else "") + stdin, timeout=60)
    return real.returncode, real.stdout, real.stderr
