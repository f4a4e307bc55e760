"""``make demo``: the report's reproducer on a private daemon per variant.

First the kernel before 8c4f3c3fa968: the reload leaves ``uinput_release`` named in
the filter but uncounted, the invocation is not traced, ``echo nop > current_tracer``
WARNs at ``kernel/trace/ftrace.c:1529`` with the call trace of the path taken, and
ftrace is dead.  Then the kernel with the fix: the reloaded function is counted,
patched and traced again, and the tracer stops cleanly.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from clients.spawn import spawn_daemon

# The reproducer, verbatim from shared/spec/upstream-report-8c4f3c3.txt.
REPRODUCER = """\
cd /sys/kernel/debug/tracing
modprobe uinput
echo uinput_release > set_ftrace_filter
echo function > current_tracer
rmmod uinput
modprobe uinput
# check /proc/modules to see if loaded in same addr, otherwise try again
echo nop > current_tracer
"""
# The reproducer up to its last line, a look at the outcome, then that last line.
SCRIPT = REPRODUCER.removesuffix("echo nop > current_tracer\n") + """\
cat /proc/modules
invoke uinput_release __fput
cat enabled_functions
grep uinput_release trace
echo nop > current_tracer
dmesg
echo uinput_open > set_ftrace_filter
"""

BANNERS = {
    "buggy": "3.6 before 8c4f3c3fa968 (--variant buggy): expect the WARN, then ftrace dead",
    "fixed": "3.6 with 8c4f3c3fa968 (--variant fixed): the reloaded function is traced again",
}


def run_variant(variant: str) -> int:
    """The script on the shell's standard input (so errors read ``bash: line N: ...``),
    each line echoed as it is read (``-V``, bash's ``-v``)."""
    print(f"\n{'=' * 78}\n{BANNERS[variant]}\n{'=' * 78}", flush=True)
    with spawn_daemon(["--variant", variant, "--core-functions", "8000"]) as daemon:
        shell = subprocess.run(
            [sys.executable, "-m", "clients.shell", "--address", daemon.address, "-V"],
            input=SCRIPT.encode(), stderr=subprocess.STDOUT, timeout=120)
    return shell.returncode


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m clients.demo", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="It takes no options and starts a daemon of its own per variant.\n"
               "Exit status: 0 when each variant ends as described above, 1 otherwise."
    ).parse_args(argv)
    statuses = [run_variant(variant) for variant in ("buggy", "fixed")]
    # buggy ends with the refused filter write (No such device); fixed ends cleanly.
    return 0 if statuses == [1, 0] else 1


if __name__ == "__main__":
    sys.exit(main())
