"""`make demo` runs: the WARN in buggy, the reloaded function traced in fixed."""

from __future__ import annotations

import subprocess
import sys

from clients.demo import SCRIPT
from tests.children import REPO, child_env


def test_demo_shows_the_warn_then_the_fix():
    run = subprocess.run([sys.executable, "-m", "clients.demo"], cwd=REPO, env=child_env(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    buggy, fixed = run.stdout.split("--variant fixed")
    assert "WARNING: at kernel/trace/ftrace.c:1529 __ftrace_hash_rec_update+0x" in buggy
    assert "ftrace_shutdown+0x" in buggy and "comm: bash" in buggy
    line = SCRIPT.splitlines().index("echo uinput_open > set_ftrace_filter") + 1
    assert f"bash: line {line}: set_ftrace_filter: No such device" in buggy
    assert "uinput_release [uinput] (1)" in fixed
    assert "uinput_release <-__fput" in fixed
    assert "WARNING" not in fixed


def test_demo_answers_help_and_refuses_other_arguments():
    """Its own usage at once, not the demo (no daemon started); anything else is a usage
    error (exit status 2)."""
    helped = subprocess.run([sys.executable, "-m", "clients.demo", "--help"], cwd=REPO,
                            env=child_env(), capture_output=True, text=True, timeout=60)
    assert (helped.returncode, helped.stderr) == (0, "")
    assert helped.stdout.startswith("usage: python -m clients.demo [-h]\n")
    refused = subprocess.run([sys.executable, "-m", "clients.demo", "--bogus"], cwd=REPO,
                             env=child_env(), capture_output=True, text=True, timeout=60)
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr.endswith(
        "python -m clients.demo: error: unrecognized arguments: --bogus\n")
