"""What ``/proc`` says of a process, for the clients that measure or wait on one
(``spawn_daemon``, ftrace-stress's CPU figures, the benchmarks)."""

from __future__ import annotations

import os

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
# Fields of /proc/PID/stat after the ")" that ends the command name: state is the
# first, utime the 12th and stime the 13th (proc(5) numbers them 3, 14 and 15).
_UTIME, _STIME = 11, 12


def process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of every thread of ``pid`` so far; None when the
    process is gone (or ``/proc`` is not Linux's)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return (int(fields[_UTIME]) + int(fields[_STIME])) / _TICKS_PER_SECOND
    except (OSError, IndexError, ValueError):
        return None
