"""POSIX shared memory segments owned by one kernel instance.

The model's stand-in for kernel memory that a debugger maps from another process
(crash or drgn on /proc/kcore): record pages and the page directory live in
``shm_open(3)`` segments under ``/dev/shm``.

:mod:`multiprocessing.shared_memory` is not used because CPython 3.11 registers
every segment, even one that is only attached, with the resource tracker, which
unlinks it when the attaching process exits.  Here the creator alone unlinks, and a
segment left behind by a killed daemon is found by the pid in its name and removed
at the next boot (:func:`reap_stale_segments`).
"""

from __future__ import annotations

import itertools
import mmap
import os
import re

import _posixshmem

SHM_DIR = "/dev/shm"
NAME_PREFIX = "ftsim"
_NAME_RE = re.compile(rf"^{NAME_PREFIX}\.(\d+)\.")
#: What :func:`new_namespace` makes.
NAMESPACE_RE = re.compile(rf"{NAME_PREFIX}\.[0-9]+\.[0-9]+")
_instance_ids = itertools.count()


class ShmSegment:
    """One named segment, mapped read-write (owner) or read-only (observer)."""

    def __init__(self, name: str, size: int = 0, create: bool = False) -> None:
        self.name = name
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL if create else os.O_RDONLY
        fd = _posixshmem.shm_open("/" + name, flags, mode=0o600)
        try:
            if create:
                os.ftruncate(fd, size)
            else:
                size = os.fstat(fd).st_size
            access = mmap.ACCESS_WRITE if create else mmap.ACCESS_READ
            # A zero-length mapping is invalid; such a segment is never created.
            self.map = mmap.mmap(fd, size, access=access)
        finally:
            os.close(fd)
        self.size = size
        self.owner = create

    def unlink(self) -> None:
        """Remove the name; live mappings (and numpy views of them) stay valid."""
        shm_unlink(self.name)


def shm_unlink(name: str) -> bool:
    """``shm_unlink(3)`` of ``/dev/shm/NAME``: whether it was there to remove."""
    try:
        _posixshmem.shm_unlink("/" + name)
    except FileNotFoundError:
        return False
    return True


def new_namespace() -> str:
    """A name prefix unique to one kernel instance: ``ftsim.<pid>.<n>``."""
    return f"{NAME_PREFIX}.{os.getpid()}.{next(_instance_ids)}"


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a process that can still use its segments: one that exists
    and is not a zombie (a daemon killed but not yet waited for by its parent, which
    kill(pid, 0) still finds; its segments are as stale as a reaped one's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (comm) S ...": the state follows the last ")", comm may hold one.
            state = stat.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return True  # no /proc to ask: kill()'s answer stands
    return state not in (b"Z", b"X")


def reap_stale_segments() -> list[str]:
    """Unlink segments whose creating daemon no longer exists; return their names."""
    reaped = []
    try:
        names = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return reaped
    for name in names:
        match = _NAME_RE.match(name)
        if match and not _pid_alive(int(match.group(1))) and shm_unlink(name):
            reaped.append(name)
    return reaped


def unlink_namespace(namespace: str) -> None:
    """Unlink every segment of one kernel instance: what a boot that failed half-way
    (an error, Ctrl-C) created, which no kernel object is left to destroy."""
    for name in segments_of(namespace):
        shm_unlink(name)


def segments_of(namespace: str) -> list[str]:
    """Names under ``/dev/shm`` that belong to one kernel instance."""
    try:
        return sorted(n for n in os.listdir(SHM_DIR) if n.startswith(namespace + "."))
    except FileNotFoundError:
        return []
