"""``/proc/sys/kernel/ftrace_enabled``: ``ftrace_enable_sysctl()`` of
kernel/trace/ftrace.c (3.2/3.6, spec §2.6).

``ftrace_enabled`` is an ``int`` that ``proc_dointvec()`` (kernel_daemon.sysctl) sets to
whatever number is written (``2`` reads back ``2``); only zero or nonzero matters.
Turning it off nops every patched site but keeps the counts; turning it on patches
again from the counts.  After ``ftrace_kill`` both reads and writes are ENODEV, before
anything is parsed.
"""

from __future__ import annotations

import errno

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.core import Ftrace
from kernel_daemon.ftrace.ops import ftrace_stub
from kernel_daemon.ftrace.update import (FTRACE_DISABLE_CALLS, FTRACE_UPDATE_CALLS,
                                         ftrace_run_update_code, update_ftrace_function)
from kernel_daemon.sysctl import proc_dointvec, proc_dointvec_read
from kernel_daemon.unwind import kernel_function


@kernel_function
def ftrace_enable_sysctl_read(ft: Ftrace, size: int, pos: int) -> bytes:
    """A read of ``size`` bytes at offset ``pos``: ``proc_dointvec`` prints the int and a
    newline, at offset 0 only."""
    with ft.ftrace_lock:
        if ft.ftrace_disabled:
            raise KernelError(errno.ENODEV)
        return proc_dointvec_read(ft.ftrace_enabled, size, pos)


@kernel_function
def ftrace_enable_sysctl(ft: Ftrace, buffer: bytes) -> int:
    """A write of ``buffer``: returns the bytes ``proc_dointvec`` consumed (``*lenp``),
    fewer than written if a number was followed by more than spaces."""
    with ft.ftrace_lock:
        if ft.ftrace_disabled:
            raise KernelError(errno.ENODEV)
        ft.ftrace_enabled, count = proc_dointvec(buffer, ft.ftrace_enabled)
        if ft.last_ftrace_enabled == bool(ft.ftrace_enabled):
            return count
        ft.last_ftrace_enabled = bool(ft.ftrace_enabled)  # !!ftrace_enabled
        if ft.ftrace_enabled:
            # ftrace_startup_sysctl(): force the trampoline update, patch from the counts.
            ft.saved_ftrace_func = None
            update_ftrace_function(ft)
            if ft.ftrace_start_up:
                ftrace_run_update_code(ft, FTRACE_UPDATE_CALLS)
            ft.trampoline_target = ft.ftrace_trace_function
        else:
            # ftrace_trace_function = ftrace_stub; ftrace_shutdown_sysctl()
            ft.trampoline_target = ft.ftrace_trace_function = ftrace_stub
            if ft.ftrace_start_up:
                ftrace_run_update_code(ft, FTRACE_DISABLE_CALLS)
        return count
