"""Registering ops: ``register_ftrace_function`` → ``ftrace_startup``, and back (3.6.5, spec §2.4).

Errors are raised as :class:`KernelError` carrying the errno the C code returns.
"""

from __future__ import annotations

import errno

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.core import (FTRACE_WARN_ON, WARN_ON, WARN_ON_ONCE, Ftrace,
                                       ftrace_disabled_error)
from kernel_daemon.ftrace.ops import (FTRACE_OPS_FL_DYNAMIC, FTRACE_OPS_FL_ENABLED,
                                      FTRACE_OPS_FL_GLOBAL, FtraceOps)
from kernel_daemon.ftrace.rec_update import ftrace_hash_rec_disable, ftrace_hash_rec_enable
from kernel_daemon.ftrace.update import (FTRACE_UPDATE_CALLS, ftrace_startup_enable,
                                         update_ftrace_function)
from kernel_daemon.unwind import kernel_function

# The lines of the checks below in kernel/trace/ftrace.c (which tree: core.py's docstring).
# __register_ftrace_function(): FTRACE_WARN_ON(ops == &global_ops), WARN_ON(ENABLED).
LINE_REGISTER_GLOBAL_OPS = 318
LINE_REGISTER_BUSY = 321
# __unregister_ftrace_function(): WARN_ON(!ENABLED), FTRACE_WARN_ON(ops == &global_ops).
LINE_UNREGISTER_NOT_ENABLED = 354
LINE_UNREGISTER_GLOBAL_OPS = 357
# ftrace_shutdown(): WARN_ON_ONCE(ftrace_start_up < 0), WARN_ON_ONCE(global_start_up < 0),
# WARN_ON_ONCE(!ftrace_start_up).
LINE_SHUTDOWN_START_UP = 1959
LINE_SHUTDOWN_GLOBAL_START_UP = 1964
LINE_SHUTDOWN_STILL_USERS = 1967


def add_ftrace_ops(ops_list: list[FtraceOps], ops: FtraceOps) -> None:
    """``add_ftrace_ops()``: push at the head."""
    ops_list.insert(0, ops)


def remove_ftrace_ops(ops_list: list[FtraceOps], ops: FtraceOps) -> bool:
    """``remove_ftrace_ops()``: False where the kernel returns -1 (not found)."""
    if ops not in ops_list:
        return False
    ops_list.remove(ops)
    return True


@kernel_function
def __register_ftrace_function(ft: Ftrace, ops: FtraceOps) -> None:
    """``__register_ftrace_function()``: put ``ops`` on its list and re-pick the
    trampoline's function; ftrace_lock held.  A GLOBAL ops goes on
    ``ftrace_global_list``, with ``global_ops`` on ``ftrace_ops_list`` for it.  3.6's
    CONTROL ops (perf's) have no user here, so neither its list nor its EINVAL for
    GLOBAL|CONTROL; with ``ftrace_enabled`` 0 the model still publishes the list for
    its lock-free readers (the kernel's list is the one they read)."""
    if ft.ftrace_disabled:
        raise ftrace_disabled_error()
    if FTRACE_WARN_ON(ft, ops is ft.global_ops, LINE_REGISTER_GLOBAL_OPS):
        raise KernelError(errno.EINVAL)
    if ops.flags & FTRACE_OPS_FL_ENABLED:
        WARN_ON(ft, LINE_REGISTER_BUSY)
        raise KernelError(errno.EBUSY)
    if not ops.core_data:
        ops.flags |= FTRACE_OPS_FL_DYNAMIC
    if ops.flags & FTRACE_OPS_FL_GLOBAL:
        # add_ftrace_list_ops(): the first GLOBAL ops brings global_ops onto the list.
        first = not ft.ftrace_global_list
        add_ftrace_ops(ft.ftrace_global_list, ops)
        if first:
            add_ftrace_ops(ft.ftrace_ops_list, ft.global_ops)
        ops.flags |= FTRACE_OPS_FL_ENABLED
    else:
        add_ftrace_ops(ft.ftrace_ops_list, ops)
    if ft.ftrace_enabled:
        update_ftrace_function(ft)
    else:
        ft.publish_ops()


@kernel_function
def __unregister_ftrace_function(ft: Ftrace, ops: FtraceOps) -> None:
    """``__unregister_ftrace_function()``: take ``ops`` off its list and re-pick the
    trampoline's function; ftrace_lock held.  No CONTROL list (see
    ``__register_ftrace_function``), and no ``synchronize_sched()``: see the end."""
    if ft.ftrace_disabled:
        raise ftrace_disabled_error()
    if not ops.flags & FTRACE_OPS_FL_ENABLED:
        WARN_ON(ft, LINE_UNREGISTER_NOT_ENABLED)
        raise KernelError(errno.EBUSY)
    if FTRACE_WARN_ON(ft, ops is ft.global_ops, LINE_UNREGISTER_GLOBAL_OPS):
        raise KernelError(errno.EINVAL)
    if ops.flags & FTRACE_OPS_FL_GLOBAL:
        # remove_ftrace_list_ops(): the last GLOBAL ops takes global_ops off the list.
        found = remove_ftrace_ops(ft.ftrace_global_list, ops)
        if found and not ft.ftrace_global_list:
            found = remove_ftrace_ops(ft.ftrace_ops_list, ft.global_ops)
        if found:
            ops.flags &= ~FTRACE_OPS_FL_ENABLED
    else:
        found = remove_ftrace_ops(ft.ftrace_ops_list, ops)
    if not found:
        raise KernelError(errno.EPERM)  # the C code returns -1, which is -EPERM
    if ft.ftrace_enabled:
        update_ftrace_function(ft)
    else:
        ft.publish_ops()
    # synchronize_sched() for a DYNAMIC ops: readers work on a published tuple, and
    # one that still holds the old tuple may call the ops once more, as on a real CPU.


@kernel_function
def ftrace_startup(ft: Ftrace, ops: FtraceOps, command: int) -> None:
    """``ftrace_startup()``: count the ops' references into the records (a GLOBAL ops
    through ``global_ops``, the first one only) and patch; as 3.6."""
    if ft.ftrace_disabled:
        raise ftrace_disabled_error()
    ft.ftrace_start_up += 1
    command |= FTRACE_UPDATE_CALLS
    hash_enable = True
    if ops.flags & FTRACE_OPS_FL_GLOBAL:
        # ops marked global share the filter hashes of global_ops.
        ops = ft.global_ops
        if ft.global_start_up:
            hash_enable = False
        ft.global_start_up += 1
    ops.flags |= FTRACE_OPS_FL_ENABLED
    if hash_enable:
        ftrace_hash_rec_enable(ft, ops, True)
    ftrace_startup_enable(ft, command)


@kernel_function
def ftrace_shutdown(ft: Ftrace, ops: FtraceOps, command: int) -> None:
    """``ftrace_shutdown()``: drop the ops' references (a GLOBAL ops through
    ``global_ops``, the last one only) and patch; as 3.6, its WARN_ON_ONCEs included."""
    if ft.ftrace_disabled:
        return
    ft.ftrace_start_up -= 1
    WARN_ON_ONCE(ft, ft.ftrace_start_up < 0, LINE_SHUTDOWN_START_UP)
    hash_disable = True
    if ops.flags & FTRACE_OPS_FL_GLOBAL:
        ops = ft.global_ops
        ft.global_start_up -= 1
        WARN_ON_ONCE(ft, ft.global_start_up < 0, LINE_SHUTDOWN_GLOBAL_START_UP)
        if ft.global_start_up:
            WARN_ON_ONCE(ft, not ft.ftrace_start_up, LINE_SHUTDOWN_STILL_USERS)
            hash_disable = False
    if hash_disable:
        # The reproducer's `echo nop > current_tracer` underflows here.
        ftrace_hash_rec_disable(ft, ops, True)
    if ops is not ft.global_ops or not ft.global_start_up:
        ops.flags &= ~FTRACE_OPS_FL_ENABLED
    # 3.6 spells out ftrace_startup_enable()'s body here; the steps are the same.
    ftrace_startup_enable(ft, command | FTRACE_UPDATE_CALLS)


@kernel_function
def register_ftrace_function(ft: Ftrace, ops: FtraceOps) -> None:
    """``register_ftrace_function()``: 3.6.5 returns -ENODEV once ftrace is dead."""
    with ft.ftrace_lock:
        __register_ftrace_function(ft, ops)
        ftrace_startup(ft, ops, 0)


@kernel_function
def unregister_ftrace_function(ft: Ftrace, ops: FtraceOps) -> None:
    """``unregister_ftrace_function()``: after ftrace_kill the ops stays listed and ENABLED."""
    with ft.ftrace_lock:
        __unregister_ftrace_function(ft, ops)
        ftrace_shutdown(ft, ops, 0)
