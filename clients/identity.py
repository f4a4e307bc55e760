"""Who a client is, to the kernel model: a pid and a comm, sent as call metadata.

Every call carries ``x-ftrace-pid`` and ``x-ftrace-comm`` (``proto/ftrace/v1/common.proto``,
"CALLER IDENTITY"); the daemon makes them ``current`` for the call, so dmesg's
``Pid: 20903, comm: bash`` and the trace's TASK-PID column show the client.

A client may also say in which boot its task was born (``x-ftrace-boot-id``, the boot
fence): a call of a task whose boot has ended (``Kernel.Reboot`` booted another) is then
refused with the ENODEV of a call that finds its kernel gone, before it does anything.
The model's own, with no kernel counterpart: a real process dies with its kernel, and a
client of the daemon outlives it unless it says where it was born.

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
    "BOOT_ID_METADATA_KEY",
    "TASK_COMM_LEN",
    "PID_MAX_LIMIT",
    "MAX_BOOT_ID",
    "Identity",
    "default_comm",
    "parse_identity_metadata",
    "valid_comm",
]

PID_METADATA_KEY = "x-ftrace-pid"
COMM_METADATA_KEY = "x-ftrace-comm"
BOOT_ID_METADATA_KEY = "x-ftrace-boot-id"
_IDENTITY_KEYS = (PID_METADATA_KEY, COMM_METADATA_KEY, BOOT_ID_METADATA_KEY)
#: include/linux/sched.h: 16 bytes with the NUL, so a comm holds 15.
TASK_COMM_LEN = 16
#: include/linux/threads.h, 64-bit: the largest pid.
PID_MAX_LIMIT = 4 * 1024 * 1024
#: The largest boot id (a uint64, as kernel.proto's boot_id).
MAX_BOOT_ID = (1 << 64) - 1


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
    """A task as the kernel names it: ``Identity(pid, comm)``, and optionally the boot it
    was born in (``boot_id``, the boot fence; None: not said).

    ``Identity()`` is this process: ``os.getpid()`` and :func:`default_comm`. A comm longer
    than 15 bytes is truncated, as ``set_task_comm`` does. Invalid values raise ValueError.

    A ``boot_id`` (a boot's id as ``Kernel.Stats`` and ``GetConfig`` give it) makes every
    call of the task fail with ENODEV ("the kernel rebooted") once that boot has ended,
    before it does anything: the task died with its kernel. The model's own: no kernel
    counterpart, as no process outlives its kernel.
    """

    pid: int = 0
    comm: str = ""
    boot_id: int | None = None

    def __post_init__(self) -> None:
        pid = self.pid if self.pid else os.getpid()
        if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid <= PID_MAX_LIMIT:
            raise ValueError(f"pid must be an int in 1..{PID_MAX_LIMIT}, not {self.pid!r}")
        comm = _truncate_comm(self.comm) if self.comm else default_comm()
        if not valid_comm(comm):
            raise ValueError(f"comm must be printable ASCII, not {self.comm!r}")
        boot_id = self.boot_id
        if boot_id is not None and (isinstance(boot_id, bool) or not isinstance(boot_id, int)
                                    or not 0 < boot_id <= MAX_BOOT_ID):
            raise ValueError(f"boot_id must be None or an int in 1..{MAX_BOOT_ID}, "
                             f"not {boot_id!r}")
        object.__setattr__(self, "pid", pid)
        object.__setattr__(self, "comm", comm)

    @classmethod
    def current(cls, comm: str | None = None) -> "Identity":
        """This process, optionally under another comm (``Identity.current("bash")``)."""
        return cls(os.getpid(), comm or "")

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata naming this task (and its boot, when said)."""
        named = ((PID_METADATA_KEY, str(self.pid)), (COMM_METADATA_KEY, self.comm))
        if self.boot_id is None:
            return named
        return named + ((BOOT_ID_METADATA_KEY, str(self.boot_id)),)

    def __str__(self) -> str:
        return f"{self.comm}-{self.pid}"


def _decimal(key: str, value: str, digits: int, limit: int, what: str) -> int:
    """``value`` as a decimal integer in 1..``limit`` (at most ``digits`` significant
    digits: longer is out of range, and int() of over 4300 digits is refused by Python
    itself), else KernelError(EINVAL)."""
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text.lstrip("0")) > digits:
        raise KernelError(errno.EINVAL, f"{key}: {value[:32]!r} is not a decimal {what} "
                                        f"in 1..{limit}")
    number = int(text)
    if not 0 < number <= limit:
        raise KernelError(errno.EINVAL, f"{key}: {number} out of range 1..{limit}")
    return number


def parse_identity_metadata(
    metadata: Iterable[tuple[str, str | bytes]] | None,
) -> tuple[int | None, str | None, int | None]:
    """Daemon side: read ``(pid, comm, boot_id)`` from a call's invocation metadata.

    A missing key gives None in its place (the daemon substitutes the peer's credentials or
    a default for the first two; no boot id: the call is not fenced). A malformed value
    raises ``KernelError(EINVAL)``: a pid that is not a decimal integer in
    1..PID_MAX_LIMIT, an empty comm, a comm with characters outside printable ASCII, a boot
    id that is not a decimal integer in 1..MAX_BOOT_ID, a key given twice with different
    values. A long comm is truncated. Whether the boot id names a boot that has served is
    the daemon's to say (``DaemonState.caller``).
    """
    pid: int | None = None
    comm: str | None = None
    boot_id: int | None = None
    seen: dict[str, str] = {}
    for key, value in metadata or ():
        key = key.lower()
        if key not in _IDENTITY_KEYS:
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
            pid = _decimal(key, value, 8, PID_MAX_LIMIT, "pid")
        elif key == BOOT_ID_METADATA_KEY:
            boot_id = _decimal(key, value, 20, MAX_BOOT_ID, "boot id")
        else:
            if not valid_comm(value):
                raise KernelError(errno.EINVAL, f"{key}: {value!r} is empty or not printable ASCII")
            comm = _truncate_comm(value)
    return pid, comm, boot_id
