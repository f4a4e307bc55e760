"""``set_ftrace_pid``: trace only some tasks (kernel/trace/ftrace.c, 3.6.5; spec §3.6).

``ftrace_pids`` lists the pids written (``ftrace_pid_add``); an open for write with
O_TRUNC empties it (``ftrace_pid_reset``).  While it is not empty ``global_ops`` calls
``ftrace_pid_func`` (``Ftrace.ftrace_pid_func``, beside the list functions as in
ftrace.c), so the function tracer — the GLOBAL ops, with ``set_ftrace_filter``'s
hashes — records only the listed tasks; an ops a module or tracer client registered
is not filtered.  Both changes re-pick the trampoline's function at once
(``ftrace_update_pid_func`` + ``ftrace_startup_enable(0)``).

Nothing here checks ``ftrace_disabled``, as in the kernel: the file works after
``ftrace_kill``, and patches nothing then because ``ftrace_enabled`` is 0 (spec §2.11).
"""

from __future__ import annotations

import errno
import functools

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.core import Ftrace
from kernel_daemon.ftrace.update import ftrace_startup_enable, ftrace_update_pid_func
from kernel_daemon.strings import kstrtol, strim
from kernel_daemon.tracefs.seq_file import SeqOperations
from kernel_daemon.uaccess import UserBuffer, copy_from_user
from kernel_daemon.unwind import kernel_function

# ftrace_pid_write()'s char buf[64]: a write of 64 bytes or more is EINVAL.
FTRACE_PID_BUF = 64
# ftrace_swapper_pid (&init_struct_pid): the idle tasks, which pid 0 stands for.
FTRACE_SWAPPER_PID = 0
# ftrace_pid_add() takes an int: the long that was parsed is cut to 32 bits.
INT_MIN = -(1 << 31)


def int_from_long(val: int) -> int:
    """C's conversion of a ``long`` to ``int`` (gcc: the low 32 bits, two's complement)."""
    return (val - INT_MIN) % (1 << 32) + INT_MIN


def set_ftrace_pid_task(ft: Ftrace, pid: int) -> None:
    """``set_ftrace_pid_task()``: flag the task(s) of ``pid`` for ``ftrace_pid_func`` —
    every CPU's idle task for ``ftrace_swapper_pid``, all of them pid 0 here."""
    ft.tsk_trace_pids = ft.tsk_trace_pids | {pid}


def clear_ftrace_pid_task(ft: Ftrace, pid: int) -> None:
    """``clear_ftrace_pid_task()``: the flag of the task(s) of ``pid`` off again."""
    ft.tsk_trace_pids = ft.tsk_trace_pids - {pid}


@kernel_function
def ftrace_pid_add(ft: Ftrace, p: int) -> None:
    """``ftrace_pid_add()``: list pid ``p`` (0: the idle tasks) at the head, once.

    EINVAL when no task has the pid (``find_get_pid()`` NULL; negative pids never have
    one).  A pid already listed is success, and changes nothing.
    """
    with ft.ftrace_lock:
        if p != FTRACE_SWAPPER_PID and not ft.find_get_pid(p):
            raise KernelError(errno.EINVAL)
        if p in ft.ftrace_pids:
            return
        ft.ftrace_pids.insert(0, p)  # list_add()
        set_ftrace_pid_task(ft, p)
        ftrace_update_pid_func(ft)
        ftrace_startup_enable(ft, 0)


@kernel_function
def ftrace_pid_reset(ft: Ftrace) -> None:
    """``ftrace_pid_reset()``: empty the list, then re-pick the functions (always,
    even when the list was empty already)."""
    with ft.ftrace_lock:
        for pid in ft.ftrace_pids:
            clear_ftrace_pid_task(ft, pid)
        ft.ftrace_pids.clear()
        ftrace_update_pid_func(ft)
        ftrace_startup_enable(ft, 0)


@kernel_function
def ftrace_pid_write(ft: Ftrace, ubuf: UserBuffer) -> int:
    """``ftrace_pid_write()``: one decimal pid per write; returns the bytes taken.

    A write of only spaces returns 1 and changes nothing: ``echo > set_ftrace_pid``
    empties the list through its O_TRUNC open, not through this write.  The rest is
    ``strict_strtol(tmp, 10)`` (kstrtol: EINVAL, ERANGE), then ``ftrace_pid_add``.
    """
    if len(ubuf) >= FTRACE_PID_BUF:
        raise KernelError(errno.EINVAL)
    tmp = strim(copy_from_user(ubuf))
    if not tmp:
        return 1
    ftrace_pid_add(ft, int_from_long(kstrtol(tmp, 10)))
    return len(ubuf)


# fpid_start()'s (void *)1: the one record of an empty list, "no pid".
NO_PID = -1


def fpid_start(ft: Ftrace, pos: int) -> int | None:
    """``fpid_start()``: ftrace_lock taken (``fpid_stop()`` drops it); an empty list read
    from the start is the record ``no pid``, otherwise ``seq_list_start()``: the pid at
    index ``pos`` of the list, newest first (``list_add``).  The record is the index."""
    ft.ftrace_lock.acquire()
    if not ft.ftrace_pids and not pos:
        return NO_PID
    return pos if pos < len(ft.ftrace_pids) else None


def fpid_next(ft: Ftrace, v: int, pos: int) -> tuple[int | None, int]:
    """``fpid_next()``: nothing after ``no pid`` (and the index stays); otherwise
    ``seq_list_next()``."""
    if v == NO_PID:
        return None, pos
    v += 1
    return (v if v < len(ft.ftrace_pids) else None), pos + 1


def fpid_stop(ft: Ftrace, v: int | None) -> None:
    """``fpid_stop()``."""
    ft.ftrace_lock.release()


def fpid_show(ft: Ftrace, v: int) -> bytes:
    """``fpid_show()``: ``no pid``, or one listed pid."""
    if v == NO_PID:
        return b"no pid\n"
    pid = ft.ftrace_pids[v]
    return b"swapper tasks\n" if pid == FTRACE_SWAPPER_PID else b"%d\n" % pid


def ftrace_pid_sops(ft: Ftrace) -> SeqOperations:
    """``ftrace_pid_sops``."""
    return SeqOperations(functools.partial(fpid_start, ft), functools.partial(fpid_next, ft),
                         functools.partial(fpid_stop, ft), functools.partial(fpid_show, ft))
