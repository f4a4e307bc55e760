"""What ``/proc`` says of a process, for the clients that measure or wait on one
(``spawn_daemon``, ftrace-stress's CPU figures, the benchmarks), and for the clients'
diagnosis of a socket's listener (:func:`clients.connection.socket_listener`)."""

from __future__ import annotations

import os

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
# Fields of /proc/PID/stat after the ")" that ends the command name: state is the
# first, utime the 12th and stime the 13th (proc(5) numbers them 3, 14 and 15).
_UTIME, _STIME = 11, 12


def _stat(pid: int) -> tuple[str, list[bytes]]:
    """``/proc/PID/stat``: the command name (which may hold spaces and parentheses), and
    the fields after the ``)`` that ends it. Raises OSError when the process is gone."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        head, _, rest = stat.read().rpartition(b") ")
    return head.partition(b" (")[2].decode(errors="replace"), rest.split()


def process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of every thread of ``pid`` so far; None when the
    process is gone (or ``/proc`` is not Linux's)."""
    try:
        fields = _stat(pid)[1]
        return (int(fields[_UTIME]) + int(fields[_STIME])) / _TICKS_PER_SECOND
    except (OSError, IndexError, ValueError):
        return None


def process_comm_and_state(pid: int) -> tuple[str, str] | None:
    """``pid``'s command name and its state letter (``R``, ``S``, ``T``...); None when the
    process is gone."""
    try:
        comm, fields = _stat(pid)
    except OSError:
        return None
    return (comm, fields[0].decode()) if fields else None
