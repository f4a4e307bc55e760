"""``struct mutex`` (kernel/mutex.c), with the moments it was acquired noted for the caller.

A sequential replay of a concurrent run has to put the operations in the order their
critical sections ran. Where two operations overlapped in time, neither their invocation
nor their completion order says which of them held ``ftrace_lock`` first: a ``rmmod``
invoked before a filter write may free its records after the write matched them. The
kernel keeps no such record (lock_stat, ``CONFIG_LOCK_STAT``, counts acquisitions and
hold times, not their order), so the model adds one: while a system call has asked for it
(:class:`Acquisitions`), each ``mutex_lock()`` of ``ftrace_lock`` it does appends the
CLOCK_MONOTONIC time, in nanoseconds, at which the lock was obtained: a clock every process
of the machine shares, so the times compare with the clients' own. Only a mutex made with
``noted=True`` (ftrace_lock) is noted: the report is of ftrace_lock (common.proto "LOCK
ORDER"), and another mutex a call takes on its way (``trace_types_lock``, ``module_mutex``,
``tracing_cpumask_update_lock``, ``ftrace_profile_lock``) must not read as one.
"""

from __future__ import annotations

import contextvars
import threading
import time
from typing import Callable

# A ContextVar, like ``current``: it follows the system call, not the thread.
_noted: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "mutex_acquisitions", default=None)


class Mutex:
    """A sleeping lock: ``with mutex:`` is ``mutex_lock()`` ... ``mutex_unlock()``."""

    __slots__ = ("_lock", "_slowpath", "_noted")

    def __init__(self, slowpath: Callable[[], object] | None = None,
                 noted: bool = False) -> None:
        self._lock = threading.Lock()
        self._slowpath = slowpath
        self._noted = noted  # its acquisitions go into the call's Acquisitions

    def acquire(self) -> None:
        """``mutex_lock()``: the fast path takes a free lock; a held one goes through
        ``__mutex_lock_slowpath()``, which runs ``slowpath`` (if any), then sleeps."""
        if not self._lock.acquire(False):
            if self._slowpath is not None:
                self._slowpath()
            self._lock.acquire()
        if self._noted:
            noted = _noted.get()
            if noted is not None:
                noted.append(time.monotonic_ns())

    def release(self) -> None:
        """``mutex_unlock()``."""
        self._lock.release()

    # ``with mutex:`` is acquire() itself: one Python call less on every mutex_lock().
    __enter__ = acquire

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()


class Acquisitions:
    """The moments a system call acquired ftrace_lock: ``with Acquisitions() as noted:``,
    every Mutex made ``noted`` acquired in this context meanwhile appends its time to
    ``noted.times``."""

    __slots__ = ("times", "_token")

    def __init__(self) -> None:
        self.times: list[int] = []

    def __enter__(self) -> "Acquisitions":
        self._token = _noted.set(self.times)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _noted.reset(self._token)

    def reported(self) -> list[int]:
        """What the system call reports of them (common.proto "LOCK ORDER"): the first
        and the last, one if they are the same, none if it never took a lock. A replay
        orders by these, in a report of fixed size however many tokens a filter write
        took the lock for."""
        return sorted({self.times[0], self.times[-1]}) if self.times else []
