"""Who a client is, to the kernel model: a pid and a comm, sent as call metadata.

Every call carries ``x-ftrace-pid`` and ``x-ftrace-comm`` (``proto/ftrace/v1/common.proto``,
"CALLER IDENTITY"); the daemon makes them ``current`` for the call, so dmesg's
``Pid: 20903, comm: bash`` and the trace's TASK-PID column show the client.

The daemon parses the same keys with :func:`parse_identity_metadata`.
"""

from __future__ import annotations

import errno
import os
import sys
from dataclasses import dataclass
from typing import Iterable

from kernel_daemon.errno import KernelError

__all__ = [
    "PID_METADATA_KEY",
    "COMM_METADATA_KEY",
    "TASK_COMM_LEN",
    "PID_MAX_LIMIT",
    "Identity",
    "default_comm",
    "parse_identity_metadata",
    "valid_comm",
]

PID_METADATA_KEY = "x-ftrace-pid"
COMM_METADATA_KEY = "x-ftrace-comm"
#: include/linux/sched.h: 16 bytes with the NUL, so a comm holds 15.
TASK_COMM_LEN = 16
#: include/linux/threads.h, 64-bit: the largest pid.
PID_MAX_LIMIT = 4 * 1024 * 1024


def _truncate_comm(comm: str) -> str:
    # set_task_comm() copies with strlcpy into 16 bytes: cut at 15 bytes. Metadata is
    # ASCII, so bytes and characters agree for every valid comm.
    return comm[: TASK_COMM_LEN - 1]


def valid_comm(comm: str) -> bool:
    """What a comm may be: not empty, printable ASCII (a metadata value, a trace field)."""
    return bool(comm) and all(" " <= ch <= "~" for ch in comm)


def default_comm(argv0: str | None = None) -> str:
    """The comm the kernel gives a process exec'd from ``argv0``: its basename, 15 bytes.

    ``python -c``/an interactive interpreter (argv[0] "" or "-c") gives the interpreter's
    name. Non-ASCII or unprintable characters are replaced with ``?`` (metadata is ASCII).
    """
    if argv0 is None:
        argv0 = sys.argv[0] if sys.argv else ""
    name = os.path.basename(argv0.rstrip("/")) if argv0 not in ("", "-c", "-m") else ""
    if not name:
        name = os.path.basename(sys.executable or "python3") or "python3"
    name = "".join(ch if " " <= ch <= "~" else "?" for ch in name)
    return _truncate_comm(name) or "python3"


@dataclass(frozen=True)
class Identity:
    """A task as the kernel names it: ``Identity(pid, comm)``.

    ``Identity()`` is this process: ``os.getpid()`` and :func:`default_comm`. A comm longer
    than 15 bytes is truncated, as ``set_task_comm`` does. Invalid values raise ValueError.
    """

    pid: int = 0
    comm: str = ""

    def __post_init__(self) -> None:
        pid = self.pid if self.pid else os.getpid()
        if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid <= PID_MAX_LIMIT:
            raise ValueError(f"pid must be an int in 1..{PID_MAX_LIMIT}, not {self.pid!r}")
        comm = _truncate_comm(self.comm) if self.comm else default_comm()
        if not valid_comm(comm):
            raise ValueError(f"comm must be printable ASCII, not {self.comm!r}")
        object.__setattr__(self, "pid", pid)
        object.__setattr__(self, "comm", comm)

    @classmethod
    def current(cls, comm: str | None = None) -> "Identity":
        """This process, optionally under another comm (``Identity.current("bash")``)."""
        return cls(os.getpid(), comm or "")

    def metadata(self) -> tuple[tuple[str, str], tuple[str, str]]:
        """The call metadata naming this task."""
        return ((PID_METADATA_KEY, str(self.pid)), (COMM_METADATA_KEY, self.comm))

    def __str__(self) -> str:
        return f"{self.comm}-{self.pid}"


def parse_identity_metadata(
    metadata: Iterable[tuple[str, str | bytes]] | None,
) -> tuple[int | None, str | None]:
    """Daemon side: read ``(pid, comm)`` from a call's invocation metadata.

    A missing key gives None in its place (the daemon substitutes the peer's credentials or
    a default). A malformed value raises ``KernelError(EINVAL)``: a pid that is not a
    decimal integer in 1..PID_MAX_LIMIT, an empty comm, a comm with characters outside
    printable ASCII, a key given twice with different values. A long comm is truncated.
    """
    pid: int | None = None
    comm: str | None = None
    seen: dict[str, str] = {}
    for key, value in metadata or ():
        key = key.lower()
        if key not in (PID_METADATA_KEY, COMM_METADATA_KEY):
            continue
        if isinstance(value, bytes):
            try:
                value = value.decode("ascii")
            except UnicodeDecodeError:
                raise KernelError(errno.EINVAL, f"{key}: not ASCII") from None
        if key in seen and seen[key] != value:
            raise KernelError(errno.EINVAL, f"{key} given twice")
        seen[key] = value
        if key == PID_METADATA_KEY:
            text = value.strip()
            # Longer than PID_MAX_LIMIT's digits is out of range (and int() of over 4300
            # digits is refused by Python itself).
            if not text.isascii() or not text.isdigit() or len(text.lstrip("0")) > 8:
                raise KernelError(errno.EINVAL, f"{key}: {value[:32]!r} is not a decimal pid "
                                                f"in 1..{PID_MAX_LIMIT}")
            number = int(text)
            if not 0 < number <= PID_MAX_LIMIT:
                raise KernelError(errno.EINVAL, f"{key}: {number} out of range 1..{PID_MAX_LIMIT}")
            pid = number
        else:
            if not valid_comm(value):
                raise KernelError(errno.EINVAL, f"{key}: {value!r} is empty or not printable ASCII")
            comm = _truncate_comm(value)
    return pid, comm
