"""Code patching: ``ftrace_run_update_code`` → ``ftrace_replace_code`` (3.6.5, spec §2.5),
with the x86 arch code that modifies call sites (``arch/x86/kernel/ftrace.c``), and
``ftrace_bug()`` for a modification that fails (spec §5.2).

The model has no text to patch: a call site's state is the ``FTRACE_FL_ENABLED``
bit of its record, which the function-execution path reads.  x86 3.6 patches live
text with int3 breakpoints, without ``stop_machine()``, so each site changes at once as
other CPUs see it; the model stands that in by ``ftrace_lock`` plus the records'
seqlock: CPUs executing functions read the bit without a lock, as a CPU executes
whatever the text holds.

A modification fails where a failpoint's ``error`` action makes it (the sites named
after the x86 functions that fail: ``add_breakpoints``, ``add_update`` and
``finish_update`` here, ``ftrace_make_nop`` and ``ftrace_make_call`` at module load),
and where ``add_break()`` finds a site of a group not yet converted from the ``call
mcount`` it was compiled with (``FtracePageGroup.unconverted``; only the publish-early
window lets a code update reach one).
"""

from __future__ import annotations

import errno

import numpy as np

from kernel_daemon.ftrace.core import FTRACE_WARN_ON_ONCE, Ftrace
from kernel_daemon.ftrace.ops import FTRACE_OPS_FL_DYNAMIC, ftrace_stub
from kernel_daemon.ftrace.records import FTRACE_FL_ENABLED, FTRACE_REF_MAX, FtracePageGroup
from kernel_daemon.printk import DEFAULT_MESSAGE_LOGLEVEL, KERN_INFO, KERN_WARNING
from kernel_daemon.unwind import kernel_function

FTRACE_UPDATE_CALLS = 1 << 0
FTRACE_DISABLE_CALLS = 1 << 1
FTRACE_UPDATE_TRACE_FUNC = 1 << 2
FTRACE_START_FUNC_RET = 1 << 3
FTRACE_STOP_FUNC_RET = 1 << 4

# The FTRACE_WARN_ON_ONCE(1) of each case of ftrace_bug() (-EFAULT, -EINVAL, -EPERM,
# default), in kernel/trace/ftrace.c (which tree: core.py's docstring); 3.2.7 has them
# at 1482/1487/1494/1499 (spec §5.2).
LINE_FTRACE_BUG_EFAULT = 1578
LINE_FTRACE_BUG_EINVAL = 1583
LINE_FTRACE_BUG_EPERM = 1590
LINE_FTRACE_BUG_UNKNOWN = 1595

# x86: a call site is 5 bytes, "call mcount" as compiled, then a nop or "call ftrace_caller".
MCOUNT_INSN_SIZE = 5
# ideal_nops[NOP_ATOMIC5], the nop a site holds while not traced: P6_NOP5_ATOMIC
# ("nopl 0x0(%rax,%rax,1)"), which 3.6's arch_init_ideal_nops() picks on an Intel CPU
# with NOPL; the model's CPU is such a one.
FTRACE_NOP = bytes((0x0F, 0x1F, 0x44, 0x00, 0x00))

# The three passes of x86 ftrace_replace_code(): the failpoint where each can fail, and
# its name in the "Failed on %s (%d):" report.
_PASSES = (("add_breakpoints", "adding breakpoints"),
           ("add_update", "updating code"),
           ("finish_update", "removing breakpoints"))

_ENABLED = np.uint64(FTRACE_FL_ENABLED)
# The count and ENABLED bits of dyn_ftrace.flags; the counts stay below ENABLED.
_COUNT_AND_ENABLED = np.uint64(FTRACE_FL_ENABLED | FTRACE_REF_MAX)
_MAX_COUNT = np.uint64(FTRACE_REF_MAX)
_ONE = np.uint64(1)


def ftrace_call_replace(ip: int, addr: int) -> bytes:
    """x86 ``ftrace_call_replace()``: ``call addr`` at ``ip``, e8 and the rel32 from the
    next instruction."""
    return b"\xe8" + ((addr - (ip + MCOUNT_INSN_SIZE)) & 0xFFFFFFFF).to_bytes(4, "little")


def MCOUNT_ADDR(ft: Ftrace) -> int:  # noqa: N802 - the kernel macro
    """``MCOUNT_ADDR``: ``mcount``, which a site calls as compiled."""
    return ft.kallsyms_lookup_name("mcount") or 0


def FTRACE_ADDR(ft: Ftrace) -> int:  # noqa: N802 - the kernel macro
    """``FTRACE_ADDR``: ``ftrace_caller``, which a traced site calls."""
    return ft.kallsyms_lookup_name("ftrace_caller") or 0


def print_ip_ins(fmt: str, p: bytes) -> str:
    """``print_ip_ins()``: ``fmt``, then the MCOUNT_INSN_SIZE bytes as ``%02x`` joined by
    ``:`` (each a KERN_CONT printk of its own)."""
    return fmt + ":".join(f"{b:02x}" for b in p[:MCOUNT_INSN_SIZE])


@kernel_function
def ftrace_bug(ft: Ftrace, failed: int, ip: int, actual: bytes) -> None:
    """``ftrace_bug(failed, ip)``: report a failed modification of the site at ``ip`` and
    kill ftrace (spec §5.2).  ``failed`` is the kernel's negative errno.

    Each case runs ``FTRACE_WARN_ON_ONCE(1)`` first (a WARNING block the first time
    that line is reached, and ``ftrace_kill()``), then a KERN_INFO line: ``pr_info()``
    without a newline continued by ``print_ip_sym()``'s ``"[<%p>] %pS\\n"``, which 3.6's
    ``vprintk_emit()`` merges into one record.  For -EINVAL, ``print_ip_ins()`` and
    ``printk(KERN_CONT "\\n")`` add a line of KERN_CONT pieces, a record at
    ``default_message_loglevel``.  ``actual`` stands in for the bytes print_ip_ins()
    reads at ``ip``: the model has no text, so it is the instruction the site is
    believed to hold (the one the modification expected there).
    """
    site = f"[<{ip:016x}>] {ft.sprint_symbol(ip)}"
    if failed == -errno.EFAULT:
        FTRACE_WARN_ON_ONCE(ft, True, LINE_FTRACE_BUG_EFAULT)
        ft.printk.printk(f"ftrace faulted on modifying {site}", level=KERN_INFO)
    elif failed == -errno.EINVAL:
        FTRACE_WARN_ON_ONCE(ft, True, LINE_FTRACE_BUG_EINVAL)
        ft.printk.printk(f"ftrace failed to modify {site}", level=KERN_INFO)
        ft.printk.printk(print_ip_ins(" actual: ", actual), level=DEFAULT_MESSAGE_LOGLEVEL)
    elif failed == -errno.EPERM:
        FTRACE_WARN_ON_ONCE(ft, True, LINE_FTRACE_BUG_EPERM)
        ft.printk.printk(f"ftrace faulted on writing {site}", level=KERN_INFO)
    else:
        FTRACE_WARN_ON_ONCE(ft, True, LINE_FTRACE_BUG_UNKNOWN)
        ft.printk.printk(f"ftrace faulted on unknown error {site}", level=KERN_INFO)


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
    """x86 ``ftrace_replace_code(enable)``: bring every record to its desired state.

    Three passes over the records: ``add_breakpoints`` (an int3 on each site that
    changes), ``add_update`` (the rest of the new instruction behind it) and
    ``finish_update`` (``ftrace_update_record()`` flips the record's ENABLED bit, then
    the int3 gives way to the new first byte).  Only the records ``ftrace_check_record``
    names are written, each once, as the kernel patches only those call sites: a CPU
    reading the flags without a lock sees each record before or after its change.

    The first failure stops the pass: ``ftrace_bug()``, then ``"Failed on %s (%d):"``
    at KERN_WARNING with the pass and ``count``, the records the first pass got past
    (every record once it finished), then ``remove_breakpoint()`` on every site.  So a
    failure in the first two passes leaves every flag as it was; one in the third has
    flipped those of the records up to the failing one.  Unlike the generic ``__weak``
    one, the x86 function does not test ``ftrace_disabled``: after ``ftrace_kill()``
    nothing calls it, as ``ftrace_enabled`` is 0.

    The model's site is its flag, with one exception: a record of a group still
    ``unconverted`` holds ``call mcount``, so ``add_break()`` (from ``add_brk_on_nop()``
    or ``add_brk_on_call()``) finds neither the nop nor the call it expects there and
    returns -EINVAL; ``actual`` is that ``call mcount``.  Every such group is checked:
    a load in another's publish-early window leaves several unconverted at once.  That
    is one more cause of the first pass's first failure, beside a failpoint's error:
    whichever record comes first in the walk decides, the failpoint at the same record
    (add_breakpoints' entry) before the check.  (The kernel's text can also differ from the flags after
    a failure, a site whose new bytes went in ahead of its flag; the model does not
    keep that.)
    """
    groups = ft.pages.groups
    updates = [ftrace_check_record(pg.flags, enable) for pg in groups]
    sizes = [len(update) for update in updates]
    unconverted = first_unconverted_change(groups, sizes)
    failed = None
    for site, report in _PASSES:
        if site == "add_breakpoints" and unconverted is not None:
            # The walk gets no further than the unconverted site.
            failed = (ft.failpoints.fire_each(site, unconverted + 1)
                      or (unconverted, errno.EINVAL))
            break
        # One look at the site per pass while it is off: the records are not walked.
        failed = ft.failpoints.fire_each(site, sum(sizes))
        if failed is not None:
            break
    if failed is None:
        flip_enabled(ft, groups, updates, sum(sizes))
        return
    change, error = failed
    # The failing record: its group, its index there, and its place in the walk.
    g = int(np.searchsorted(np.cumsum(sizes), change, side="right"))
    pg = groups[g]
    i = int(updates[g][change - sum(sizes[:g])])
    ip = int(pg.ips[i])
    # What the site held before this update (no flag is flipped yet): as compiled, a
    # nop, or a call.
    if pg.unconverted:
        actual = ftrace_call_replace(ip, MCOUNT_ADDR(ft))
    elif pg.flags[i] & _ENABLED:
        actual = ftrace_call_replace(ip, FTRACE_ADDR(ft))
    else:
        actual = FTRACE_NOP
    count = (sum(len(p.ips) for p in groups[:g]) + i if site == "add_breakpoints"
             else sum(len(p.ips) for p in groups))
    flip_enabled(ft, groups, updates, change + 1 if site == "finish_update" else 0)
    ftrace_bug(ft, -error, ip, actual)
    ft.printk.printk(f"Failed on {report} ({count}):", level=KERN_WARNING)


def first_unconverted_change(groups: tuple[FtracePageGroup, ...],
                             sizes: list[int]) -> int | None:
    """Where in the walk of the records that change (``sizes`` of them in each group)
    the first of a group still ``unconverted`` comes; None when no such record changes."""
    walked = 0
    for pg, size in zip(groups, sizes):
        if pg.unconverted and size:
            return walked
        walked += size
    return None


def flip_enabled(ft: Ftrace, groups: tuple[FtracePageGroup, ...], updates: list[np.ndarray],
                 n: int) -> None:
    """``ftrace_update_record()`` for the first ``n`` records that change, in page order:
    their ENABLED bits flipped, in one write section of the seqlock."""
    ft.pages.write_begin()
    try:
        for pg, update in zip(groups, updates):
            if n <= 0:
                break
            if update.size:
                pg.flags[update[:n]] ^= _ENABLED
            n -= update.size
    finally:
        ft.pages.write_end()


@kernel_function
def ftrace_modify_all_code(ft: Ftrace, command: int) -> None:
    """``ftrace_modify_all_code()``: the call sites, then the trampoline's call."""
    if command & FTRACE_UPDATE_CALLS:
        ftrace_replace_code(ft, True)
    elif command & FTRACE_DISABLE_CALLS:
        ftrace_replace_code(ft, False)
    if command & FTRACE_UPDATE_TRACE_FUNC:
        # ftrace_update_ftrace_func(): repoint the trampoline's call; after a failed
        # replace (ftrace_kill) that is ftrace_stub.
        ft.trampoline_target = ft.ftrace_trace_function


@kernel_function
def arch_ftrace_update_code(ft: Ftrace, command: int) -> None:
    """x86 ``arch_ftrace_update_code()``: ``ftrace_modify_all_code()`` straight away, with
    ``modifying_ftrace_code`` raised for the int3 handler; no ``stop_machine()``."""
    ftrace_modify_all_code(ft, command)


@kernel_function
def ftrace_run_update_code(ft: Ftrace, command: int) -> None:
    """``ftrace_run_update_code()``: ``function_trace_stop`` raised around
    ``arch_ftrace_update_code()``, so no callback runs while call sites change
    (``ftrace_caller`` tests it first); text is never read-only here, so no prepare/post.

    A plain ``++`` / ``--``, as in 3.6, where ``ftrace_stop()`` / ``ftrace_start()``
    set it to 1 / 0 without ``ftrace_lock``: an ``ftrace_stop()`` during an update is
    undone by the ``--``, and an ``ftrace_start()`` leaves it at -1 (nonzero: stopped).
    """
    ft.function_trace_stop += 1
    arch_ftrace_update_code(ft, command)
    ft.function_trace_stop -= 1


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
    ``ftrace_pid_func``, which calls that function for the listed tasks only.

    With no GLOBAL ops it is ``ftrace_list_end``'s function, ``ftrace_stub``: what a
    re-enabling ``ftrace_enabled`` sysctl installs if the function tracer registered
    while it was 0 (sysctl.py)."""
    global_list = ft.ftrace_global_list
    if len(global_list) > 1:
        func = ft.ftrace_global_list_func
    else:
        func = global_list[0].func if global_list else ftrace_stub
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
