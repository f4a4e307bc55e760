"""Where a run's CPU went: each process's CPU time from the go to its end or the stop.

Read from ``/proc/PID/stat`` (:func:`clients.procfs.process_cpu_seconds`); a process
that has exited keeps its figures there until it is reaped, so a worker is read between
its exit and its reaping.
A worker that ends on its own writes its CPU from the go in its history's end event,
before its exit, and that figure is the one used (see ``Run._settle_cpu``).
Divided by the operations done, these say what one operation cost each party: the
daemon, each kind of client, and the stress process itself (its checker threads).
"""

from __future__ import annotations

import socket
import struct

from clients.connection import unix_socket_path
from clients.procfs import process_cpu_seconds


def daemon_pid(address: str) -> int | None:
    """The pid of the process listening at a unix-socket ``address`` (``SO_PEERCRED``
    of a connection to it: the credentials of whoever called ``listen()``, as our pid
    namespace sees it); None for a TCP address, whose peer may be on another machine,
    or when the socket cannot be reached."""
    path = unix_socket_path(address)
    if not path:
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.connect(path)
            creds = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                     struct.calcsize("3i"))
    except OSError:
        return None
    pid = struct.unpack("3i", creds)[0]
    return pid or None  # 0: the listener lives in a pid namespace we cannot see


class CpuMeter:
    """The CPU one process spends from :meth:`start` to :meth:`stop` (the first stop
    counts: a worker read at its exit is not read again at the run's stop)."""

    __slots__ = ("pid", "_at_start", "spent")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._at_start: float | None = None
        self.spent: float | None = None

    def start(self) -> None:
        self._at_start = process_cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.spent is None and self._at_start is not None:
            now = process_cpu_seconds(self.pid)
            if now is not None:
                self.spent = round(now - self._at_start, 3)


def cpu_per_operation(seconds: dict[str, float], operations: int) -> dict[str, float]:
    """Milliseconds of CPU per operation of each party, and of all of them (``total``)."""
    if not operations:
        return {}
    per_op = {party: round(spent / operations * 1e3, 4) for party, spent in seconds.items()}
    per_op["total"] = round(sum(seconds.values()) / operations * 1e3, 4)
    return per_op
