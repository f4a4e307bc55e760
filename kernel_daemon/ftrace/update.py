"""Code patching: ``ftrace_run_update_code`` → ``ftrace_replace_code`` (3.6.5, spec §2.5).

The model has no text to patch: a call site's state is the ``FTRACE_FL_ENABLED``
bit of its record, which the function-execution path reads.  ``stop_machine()``
is stood in for by ``ftrace_lock`` plus the records' seqlock: CPUs executing
functions read the bit without a lock, as a CPU executes whatever the text holds.
Patching never fails here, so ``ftrace_bug()`` has no caller.
"""

from __future__ import annotations

import numpy as np

from kernel_daemon.ftrace.core import Ftrace
from kernel_daemon.ftrace.ops import FTRACE_OPS_FL_DYNAMIC, ftrace_stub
from kernel_daemon.ftrace.records import FTRACE_FL_ENABLED, FTRACE_REF_MAX
from kernel_daemon.unwind import kernel_function

FTRACE_UPDATE_CALLS = 1 << 0
FTRACE_DISABLE_CALLS = 1 << 1
FTRACE_UPDATE_TRACE_FUNC = 1 << 2
FTRACE_START_FUNC_RET = 1 << 3
FTRACE_STOP_FUNC_RET = 1 << 4

_ENABLED = np.uint64(FTRACE_FL_ENABLED)
# The count and ENABLED bits of dyn_ftrace.flags; the counts stay below ENABLED.
_COUNT_AND_ENABLED = np.uint64(FTRACE_FL_ENABLED | FTRACE_REF_MAX)
_MAX_COUNT = np.uint64(FTRACE_REF_MAX)
_ONE = np.uint64(1)


def ftrace_check_record(flags: np.ndarray, enable: bool) -> np.ndarray:
    """``ftrace_check_record()`` over a page group: the indices of the records whose call
    site must change (FTRACE_UPDATE_MAKE_CALL or FTRACE_UPDATE_MAKE_NOP); every other
    record is FTRACE_UPDATE_IGNORE. A record should call iff enabling and its count is
    not zero."""
    state = flags & _COUNT_AND_ENABLED
    if not enable:
        return np.flatnonzero(state >= _ENABLED)
    # ENABLED with no count left, or counted (1..FTRACE_REF_MAX; 0 wraps) and not ENABLED.
    return np.flatnonzero((state == _ENABLED) | (state - _ONE < _MAX_COUNT))


@kernel_function
def ftrace_replace_code(ft: Ftrace, enable: bool) -> None:
    """``ftrace_replace_code(enable)``: bring every live record to its desired state.

    Only the records ``ftrace_check_record`` names are written, each once (its ENABLED
    bit flipped), as the kernel patches only those call sites: a CPU reading the flags
    without a lock sees each record before or after its change, and a record that keeps
    its state is never written.
    """
    if ft.ftrace_disabled:
        return
    ft.pages.write_begin()
    try:
        for pg in ft.pages.groups:
            update = ftrace_check_record(pg.flags, enable)
            if update.size:
                pg.flags[update] ^= _ENABLED
    finally:
        ft.pages.write_end()


@kernel_function
def __ftrace_modify_code(ft: Ftrace, command: int) -> None:
    """``__ftrace_modify_code()``, the body run under ``stop_machine()``."""
    if command & FTRACE_UPDATE_CALLS:
        ftrace_replace_code(ft, True)
    elif command & FTRACE_DISABLE_CALLS:
        ftrace_replace_code(ft, False)
    if command & FTRACE_UPDATE_TRACE_FUNC:
        # ftrace_update_ftrace_func(): repoint the trampoline's call.
        ft.trampoline_target = ft.ftrace_trace_function


@kernel_function
def ftrace_run_update_code(ft: Ftrace, command: int) -> None:
    """``ftrace_run_update_code()``; text is never read-only here, so no prepare/post."""
    __ftrace_modify_code(ft, command)


def ftrace_startup_enable(ft: Ftrace, command: int) -> None:
    """``ftrace_startup_enable()`` (static inline in 3.6: no frame of its own)."""
    if ft.saved_ftrace_func != ft.ftrace_trace_function:
        ft.saved_ftrace_func = ft.ftrace_trace_function
        command |= FTRACE_UPDATE_TRACE_FUNC
    if not command or not ft.ftrace_enabled:
        return
    ftrace_run_update_code(ft, command)


def update_global_ops(ft: Ftrace) -> None:
    """``update_global_ops()``: ``global_ops`` calls the one GLOBAL ops' function, or
    ``ftrace_global_list_func`` for several; while ``set_ftrace_pid`` lists pids, it calls
    ``ftrace_pid_func``, which calls that function for the listed tasks only."""
    func = (ft.ftrace_global_list[0].func if len(ft.ftrace_global_list) == 1
            else ft.ftrace_global_list_func)
    if ft.ftrace_pids:
        ft.ftrace_pid_function = func  # set_ftrace_pid_function()
        func = ft.ftrace_pid_func
    ft.global_ops.func = func


def update_ftrace_function(ft: Ftrace) -> None:
    """``update_ftrace_function()``: which function the trampoline calls (spec §1.4).

    One non-dynamic ops is called directly, with no hash test at call time; anything
    else goes through ``ftrace_ops_list_func``.  The new list is published for the
    lock-free readers first, as ``add_ftrace_ops`` does with ``rcu_assign_pointer``.
    """
    ops_list = ft.ftrace_ops_list
    update_global_ops(ft)
    ft.publish_ops()
    if not ops_list:
        ft.ftrace_trace_function = ftrace_stub
    elif len(ops_list) == 1 and not ops_list[0].flags & FTRACE_OPS_FL_DYNAMIC:
        ft.ftrace_trace_function = ops_list[0].func
    else:
        ft.ftrace_trace_function = ft.ftrace_ops_list_func


def ftrace_update_pid_func(ft: Ftrace) -> None:
    """``ftrace_update_pid_func()``: re-pick the functions after a ``set_ftrace_pid``
    change.  Nothing to do while the trampoline calls ``ftrace_stub`` (nothing
    registered, ``ftrace_enabled`` 0, ftrace dead): the next ``update_ftrace_function``
    reads the pid list then."""
    if ft.ftrace_trace_function is ftrace_stub:
        return
    update_ftrace_function(ft)
