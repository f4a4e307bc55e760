"""``/proc/sys/kernel/ftrace_enabled``: ``ftrace_enable_sysctl()`` of
kernel/trace/ftrace.c (3.2/3.6, spec §2.6).

``ftrace_enabled`` is an ``int`` that ``proc_dointvec()`` (kernel_daemon.sysctl) sets to
whatever number is written (``2`` reads back ``2``); only zero or nonzero matters.
Turning it off nops every patched site but keeps the counts; turning it on patches
again from the counts.  After ``ftrace_kill`` both reads and writes are ENODEV, before
anything is parsed.

Turning it on re-picks the trampoline's function from ``ftrace_ops_list`` alone, as 3.6
does, without ``update_global_ops()``: ``global_ops`` keeps the function it had when
turned off, so a ``set_ftrace_pid`` change made meanwhile (which
``ftrace_update_pid_func()`` skips while the function is ``ftrace_stub``) takes effect
only at the next ``update_ftrace_function()``: a register, an unregister or another
``set_ftrace_pid`` write.
"""

from __future__ import annotations

from kernel_daemon.ftrace.core import Ftrace, ftrace_disabled_error
from kernel_daemon.ftrace.ops import ftrace_stub
from kernel_daemon.ftrace.update import (FTRACE_DISABLE_CALLS, FTRACE_UPDATE_CALLS,
                                         ftrace_run_update_code)
from kernel_daemon.sysctl import proc_dointvec, proc_dointvec_read
from kernel_daemon.unwind import kernel_function


@kernel_function
def ftrace_enable_sysctl_read(ft: Ftrace, size: int, pos: int) -> bytes:
    """A read of ``size`` bytes at offset ``pos``: ``proc_dointvec`` prints the int and a
    newline, at offset 0 only."""
    with ft.ftrace_lock:
        if ft.ftrace_disabled:
            raise ftrace_disabled_error()
        return proc_dointvec_read(ft.ftrace_enabled, size, pos)


@kernel_function
def ftrace_enable_sysctl(ft: Ftrace, buffer: bytes) -> int:
    """A write of ``buffer``: returns the bytes ``proc_dointvec`` consumed (``*lenp``),
    fewer than written if a number was followed by more than spaces."""
    with ft.ftrace_lock:
        if ft.ftrace_disabled:
            raise ftrace_disabled_error()
        ft.ftrace_enabled, count = proc_dointvec(buffer, ft.ftrace_enabled)
        if ft.last_ftrace_enabled == bool(ft.ftrace_enabled):
            return count
        ft.last_ftrace_enabled = bool(ft.ftrace_enabled)  # !!ftrace_enabled
        if ft.ftrace_enabled:
            ftrace_startup_sysctl(ft)
            # "we are starting ftrace again": the head ops' function as it is now (no
            # update_global_ops(), and no FTRACE_OPS_FL_DYNAMIC test, unlike
            # update_ftrace_function()); an empty list leaves ftrace_stub.
            ops_list = ft.ftrace_ops_list
            if ops_list:
                ft.ftrace_trace_function = (ops_list[0].func if len(ops_list) == 1
                                            else ft.ftrace_ops_list_func)
            # Spec §2.6: "the handler also restores the trampoline target".  3.6 only
            # assigns ftrace_trace_function here; ftrace_startup_sysctl() ran
            # FTRACE_UPDATE_CALLS without FTRACE_UPDATE_TRACE_FUNC, so the patched
            # ftrace_call keeps its old target until the next update that adds it.
            # Upstream fixed that later, in 524a38682573 ("ftrace: Fix ftrace enable
            # ordering of sysctl ftrace_enabled", Cc stable 2.6.27+); the spec wins here.
            ft.trampoline_target = ft.ftrace_trace_function
        else:
            # ftrace_trace_function = ftrace_stub; ftrace_shutdown_sysctl().
            # The trampoline too: spec §2.6, against 3.6 (no UPDATE_TRACE_FUNC): the spec wins.
            ft.trampoline_target = ft.ftrace_trace_function = ftrace_stub
            if ft.ftrace_start_up:
                ftrace_run_update_code(ft, FTRACE_DISABLE_CALLS)
        return count


def ftrace_startup_sysctl(ft: Ftrace) -> None:
    """``ftrace_startup_sysctl()``: force the next trampoline update, and patch from the
    counts if anything is started; the trampoline's function is not re-picked here.
    Static with one caller, and not in the model's kallsyms: inlined, no frame."""
    if ft.ftrace_disabled:
        return
    ft.saved_ftrace_func = None  # "Force update next time"
    if ft.ftrace_start_up:
        ftrace_run_update_code(ft, FTRACE_UPDATE_CALLS)
