"""``/proc/sys/kernel/ftrace_enabled``: ``ftrace_enable_sysctl()`` (3.2/3.6, spec §2.6).

Turning it off nops every patched site but keeps the counts; turning it on patches
again from the counts.  After ``ftrace_kill`` both reads and writes are ENODEV.
"""

from __future__ import annotations

import errno

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.core import Ftrace
from kernel_daemon.ftrace.ops import ftrace_stub
from kernel_daemon.ftrace.update import (FTRACE_DISABLE_CALLS, FTRACE_UPDATE_CALLS,
                                         ftrace_run_update_code, update_ftrace_function)
from kernel_daemon.unwind import kernel_function


@kernel_function
def ftrace_enable_sysctl_read(ft: Ftrace) -> str:
    with ft.ftrace_lock:
        if ft.ftrace_disabled:
            raise KernelError(errno.ENODEV)
        return f"{int(ft.ftrace_enabled)}\n"


@kernel_function
def ftrace_enable_sysctl(ft: Ftrace, value: int) -> None:
    """A write; ``proc_dointvec`` has parsed ``value``."""
    with ft.ftrace_lock:
        if ft.ftrace_disabled:
            raise KernelError(errno.ENODEV)
        ft.ftrace_enabled = bool(value)
        if ft.last_ftrace_enabled == ft.ftrace_enabled:
            return
        ft.last_ftrace_enabled = ft.ftrace_enabled
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
