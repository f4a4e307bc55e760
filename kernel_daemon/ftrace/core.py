"""The globals of ``kernel/trace/ftrace.c`` (3.6), and ``ftrace_kill`` / ``FTRACE_WARN_ON``.

The algorithms live beside this module, one kernel step per function, written as
module-level functions over an :class:`Ftrace` instance the way the C functions work
on file-scope statics: ``register.py`` (ops registration, startup/shutdown),
``rec_update.py`` (reference counting, ``ftrace_hash_move``), ``update.py``
(patching), ``module_records.py`` (module load and unload), ``filter.py`` (the
filter API and the regex files), ``pid.py`` (``set_ftrace_pid``), ``probe.py``
(function probes, which the ``traceon`` / ``traceoff`` commands register),
``profile.py`` (the function profiler) and ``consistency.py`` (the model's own check).

Versions: the semantics are the spec's [3.6.5].  Every source line number in the model
(the WARNINGs' ``at kernel/trace/ftrace.c:N``, trace.c's, the ``LINE_*`` constants) is
counted in the 3.6.0 tree New-B/Linux3.6 (Makefile ``SUBLEVEL = 0``), the reference at
hand.  The one line the spec gives for 3.6.5, the underflow check at ftrace.c:1529, is
the same line there; the others were not checked against a 3.6.5 tree.
"""

from __future__ import annotations

import enum
import errno
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kernel_daemon import task as task_mod
from kernel_daemon import unwind
from kernel_daemon.errno import KernelError
from kernel_daemon.failpoints import Failpoints
from kernel_daemon.kasan import FreedPageAccess
from kernel_daemon.ftrace.hash import FtraceHash
from kernel_daemon.ftrace.ops import FtraceFunc, FtraceOps, ftrace_ops_test, ftrace_stub
from kernel_daemon.ftrace.records import RecordPages
from kernel_daemon.mutex import Mutex
from kernel_daemon.panic import Panic
from kernel_daemon.preempt import preempt_disable_notrace, preempt_enable_notrace
from kernel_daemon.printk import Printk

if TYPE_CHECKING:
    from kernel_daemon.ftrace.module_records import OpsSample
    from kernel_daemon.ftrace.probe import FtraceProbes

FTRACE_C = "kernel/trace/ftrace.c"

# ``struct ftrace_func_command``'s func: (hash, func, cmd, param, enable), here with the
# kernel first; it raises the errno where the C returns it.
FtraceCommand = Callable[["Ftrace", FtraceHash, str, str, "str | None", bool], None]


class Variant(enum.Enum):
    """Which kernel the instance models (DESIGN "Variants")."""

    BUGGY = "buggy"  # 3.6 before 8c4f3c3fa968 (3.2.53 has the same bug)
    FIXED = "fixed"  # with 8c4f3c3fa968 (3.11, backported as 3.2.54)


class Race(enum.Enum):
    """Race windows: each moves where one path takes ``ftrace_lock`` (DESIGN)."""

    LOAD_COUNT = "load-count"
    PUBLISH_EARLY = "publish-early"
    UNLOAD_UNLOCKED = "unload-unlocked"


# Failpoint sites in the core (and the contention of trace.c's and module.c's mutexes),
# named <function>:<where>, each with where it sits in words (Kernel.ListFailpoints'
# description).
FAILPOINT_SITES: dict[str, str] = {
    "ftrace_update_code:before_count":
        "module load: before the new records' counts are taken from the enabled ops; "
        "without race load-count in ftrace_update_code(), the pages linked, under "
        "ftrace_lock; with it in ftrace_process_locs(), after the lockless ops sample, "
        "without the lock and before the pages are linked: the module's functions "
        "cannot be named in a filter yet (EINVAL), the racing change is one of the "
        "enabled ops (echo function > current_tracer)",
    "ftrace_update_code:before_publish":
        "module load: counts computed, not yet stored in the new records, their call "
        "sites not yet converted from call mcount (with race publish-early, ftrace_lock "
        "is dropped here with the pages already linked: a code update that reaches them "
        "fails, as echo function > current_tracer does)",
    "ftrace_hash_move:after_disable":
        "filter change: the old hash's references dropped, the new hash not yet "
        "installed and counted (ftrace_lock held)",
    "ftrace_release_mod:before_free":
        "module unload: before the module's record pages are unlinked and freed "
        "(under ftrace_lock; without it with race unload-unlocked)",
    "__ftrace_hash_rec_update:next_page":
        "reference counting: before each record page the count update walks",
    "__mutex_lock_slowpath:ftrace_lock":
        "any path: ftrace_lock is held by another task, before this one sleeps waiting "
        "for it (pause here proves a call is blocked on the lock)",
    # trace.c's and module.c's DEFINE_MUTEXes: a call waiting for one says so as one
    # waiting for ftrace_lock does (a replayed interleaving's racing step, clients.stress).
    "__mutex_lock_slowpath:trace_types_lock":
        "current_tracer, trace_options, options/*, tracing_enabled, buffer_size_kb (its "
        "reads and writes, per_cpu's too), buffer_total_size_kb, free_buffer's release, "
        "set_event and events/*/enable writes, opening trace, trace_pipe (its opens, reads "
        "and releases; trace.c): "
        "trace_types_lock is held by another task, before this one sleeps waiting for it "
        "(pause here proves a call is blocked on the lock)",
    "__mutex_lock_slowpath:module_mutex":
        "module load, unload, /proc/modules (module.c): module_mutex is held by another "
        "task, before this one sleeps waiting for it (pause here proves a call is blocked "
        "on the lock)",
    "ftrace_regex_release:before_lock":
        "closing set_ftrace_filter/notrace: the pending token matched, before "
        "ftrace_lock is taken to install the new hash",
    # The sites where a code modification can fail, named after the x86 function whose
    # return value fails (arch/x86/kernel/ftrace.c, 3.6); error(E...) makes it fail.
    "ftrace_make_nop":
        "module load: ftrace_code_disable() turning a new record's call to mcount into a "
        "nop (error(EFAULT|EINVAL|EPERM): ftrace_bug, ftrace killed, the module loads)",
    "ftrace_make_call":
        "module load while tracing: __ftrace_replace_code() patching a new record that "
        "has a count to call (error(EFAULT|EINVAL|EPERM): ftrace_bug, ftrace killed)",
    "add_breakpoints":
        "patching, first pass of ftrace_replace_code(): an int3 put on each call site "
        "that changes (error(EFAULT|EINVAL|EPERM): \"Failed on adding breakpoints\")",
    "add_update":
        "patching, second pass: the new instruction's last 4 bytes written behind each "
        "int3 (error(EPERM): \"Failed on updating code\")",
    "finish_update":
        "patching, third pass: each record's flag updated, its int3 replaced by the new "
        "first byte (error(EPERM): \"Failed on removing breakpoints\")",
}

# The errnos each of those can fail with: reading the old instruction faults (EFAULT,
# probe_kernel_read), it is not the one expected (EINVAL, memcmp), or the write fails
# (EPERM); the second and third passes only write.  Every other site cannot fail.
_MODIFY_ERRORS = frozenset((errno.EFAULT, errno.EINVAL, errno.EPERM))
FAILPOINT_ERRORS: dict[str, frozenset[int]] = {
    "ftrace_make_nop": _MODIFY_ERRORS,
    "ftrace_make_call": _MODIFY_ERRORS,
    "add_breakpoints": _MODIFY_ERRORS,
    "add_update": frozenset((errno.EPERM,)),
    "finish_update": frozenset((errno.EPERM,)),
}


@dataclass(eq=False)
class Ftrace:
    """File-scope state of ftrace.c plus the handles the model needs to print and poke."""

    variant: Variant
    races: frozenset[Race]
    pages: RecordPages
    printk: Printk
    panic: Panic
    failpoints: Failpoints
    # The ip -> "name" lookup for listings (``%ps``), and module lookup for ``:mod:``.
    sprint_symbol_no_offset: Callable[[int], str]
    # ``%pS``: "name+0xoff/0xsize [module]", as ftrace_bug() prints a failed call site.
    sprint_symbol: Callable[[int], str]
    # ``kallsyms_lookup_name()``: where mcount and ftrace_caller are (MCOUNT_ADDR,
    # FTRACE_ADDR), for the instructions a call site holds.
    kallsyms_lookup_name: Callable[[str], int | None]
    # ``find_get_pid()``: whether a task has this pid (kernel_daemon.pid), for set_ftrace_pid.
    find_get_pid: Callable[[int], bool]
    # ``kallsyms_lookup()``: the name it leaves in its buffer for an ip ("" when no
    # symbol covers it), for the probes' unregister walk (Kernel.symbol_name).
    kallsyms_lookup: Callable[[int], str]
    # ``ftrace_func_hash``, ``trace_probe_ops`` and ``ftrace_probe_registered`` (probe.py).
    probes: FtraceProbes

    # The one lock whose acquisitions a system call may ask to have noted (mutex.py);
    # contending for it passes the failpoint __mutex_lock_slowpath:ftrace_lock.
    ftrace_lock: Mutex = field(init=False)
    ftrace_regex_lock: Mutex = field(default_factory=Mutex)
    ftrace_disabled: bool = False
    # The sysctl: an int that keeps any number written to it (proc_dointvec).
    ftrace_enabled: int = 1
    last_ftrace_enabled: bool = True  # !!ftrace_enabled as of the last sysctl write
    ftrace_start_up: int = 0
    global_start_up: int = 0
    ftrace_update_tot_cnt: int = 0
    # Moved on by every change to a record's count (__ftrace_hash_rec_update(), a new
    # page group's counts in ftrace_update_code(); both under ftrace_lock), so
    # enabled_functions' t_start() knows whether the records it selected at the last read
    # still are the ones with a count.  The model's, not 3.6's.
    rec_counts_gen: int = 0
    # 3.6's global_ops has no flags of its own (not GLOBAL: it stands for the GLOBAL ops);
    # ftrace_startup() sets ENABLED on it.
    global_ops: FtraceOps = field(default_factory=lambda: FtraceOps(
        "global_ops", core_data=True))
    # Lists are pushed at the head, as add_ftrace_ops() does; readers take the tuple
    # published in ``ops_snapshot`` (the model's RCU: replaced, never edited).
    ftrace_ops_list: list[FtraceOps] = field(default_factory=list)
    ftrace_global_list: list[FtraceOps] = field(default_factory=list)
    ops_snapshot: tuple[FtraceOps, ...] = ()
    global_snapshot: tuple[FtraceOps, ...] = ()
    # Race load-count: the ops samples of the module loads between their lockless read
    # and the counts they give (module_records.OpsSample; the model's, not 3.6's), oldest
    # first; replaced under ``ops_samples_lock``, never edited, so readers take no lock.
    ops_samples: tuple[OpsSample, ...] = ()
    ops_samples_lock: threading.Lock = field(default_factory=threading.Lock)
    ftrace_trace_function: FtraceFunc = ftrace_stub
    saved_ftrace_func: FtraceFunc | None = None
    # What the patched ``ftrace_call`` site of the trampoline calls right now.
    trampoline_target: FtraceFunc = ftrace_stub
    freed_page_accesses: list[FreedPageAccess] = field(default_factory=list)
    # The WARN_ON_ONCE / WARN_ONCE sites that have printed, as (file, line): each site's
    # static __warned, which only a reboot clears.
    warned_once: set[tuple[str, int]] = field(default_factory=set)
    # ``function_trace_stop``: while set, ftrace_caller returns before calling anything
    # (x86's HAVE_FUNCTION_TRACE_MCOUNT_TEST); ftrace_stop() / ftrace_start() set it to
    # 1 / 0, ftrace_run_update_code() raises it around a code update.
    function_trace_stop: int = 0
    # set_ftrace_pid (pid.py): ``ftrace_pids``, head first as list_add() leaves it, changed
    # under ftrace_lock; a pid of 0 is ftrace_swapper_pid, the idle tasks.
    ftrace_pids: list[int] = field(default_factory=list)
    # The tasks whose TSK_TRACE_FL_TRACE flag set_ftrace_pid_task() set, by pid: the
    # model's Task is immutable and shared, so the flag is kept here, and replaced, never
    # edited, as ftrace_pid_func() reads it with no lock.
    tsk_trace_pids: frozenset[int] = frozenset()
    # What ftrace_pid_func() calls for a traced task: the GLOBAL ops' function.
    ftrace_pid_function: FtraceFunc = ftrace_stub
    # ``ftrace_commands``, by name: what the initcalls register at boot (``mod`` here,
    # ``traceon`` / ``traceoff`` from trace_functions.c); never changed after it, so
    # ftrace_cmd_mutex has nothing to serialise.
    ftrace_commands: dict[str, FtraceCommand] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ftrace_lock = Mutex(slowpath=functools.partial(
            self.failpoints.fire, "__mutex_lock_slowpath:ftrace_lock"), noted=True)

    def publish_ops(self) -> None:
        self.ops_snapshot = tuple(self.ftrace_ops_list)
        self.global_snapshot = tuple(self.ftrace_global_list)

    def ftrace_ops_list_func(self, ip: int, parent_ip: int, op: FtraceOps | None = None,
                             count: int = 1) -> None:
        """``ftrace_ops_list_func()``: test each ops' hashes at call time, lock-free,
        with preemption disabled (dynamic ops are freed after a ``synchronize_sched()``),
        so a callback reached this way runs at preempt depth 1: the function tracer's
        lines then show ``1`` where a direct call shows ``.``."""
        token = preempt_disable_notrace()
        try:
            for ops in self.ops_snapshot:
                if ftrace_ops_test(ops, ip):
                    ops.func(ip, parent_ip, ops, count)
        finally:
            preempt_enable_notrace(token)

    def ftrace_global_list_func(self, ip: int, parent_ip: int, op: FtraceOps | None = None,
                                count: int = 1) -> None:
        """``ftrace_global_list_func()``: call every GLOBAL ops (global_ops' hashes apply)."""
        for ops in self.global_snapshot:
            ops.func(ip, parent_ip, ops, count)

    def ftrace_pid_func(self, ip: int, parent_ip: int, op: FtraceOps | None = None,
                        count: int = 1) -> None:
        """``ftrace_pid_func()``: ``global_ops``' function while ``set_ftrace_pid`` lists
        pids (``update_global_ops``), so only the GLOBAL ops are filtered: the GLOBAL
        function runs for a task whose flag is set, and for no other.

        A method beside the list functions, as ftrace.c defines it beside them: the
        update code installs it, and the set_ftrace_pid code (pid.py) calls the update.
        """
        if task_mod.current().pid not in self.tsk_trace_pids:  # test_tsk_trace_trace()
            return
        self.ftrace_pid_function(ip, parent_ip, op, count)


def ftrace_disabled_error() -> KernelError:
    """The ``-ENODEV`` of a path that refuses because ``ftrace_disabled`` is set. The
    kernel returns it bare; the message is what tells a client that the UNAVAILABLE it
    travels as (common.proto ERRORS) is not a transient one."""
    return KernelError(errno.ENODEV, "ftrace is disabled: ftrace_kill() ran after a WARN; "
                                     "Kernel.Reboot recovers")


def ftrace_kill(ft: Ftrace) -> None:
    """``ftrace_kill()``: silent; disables ftrace until reboot (spec §2.1).

    Call sites stay as they are; the trampoline target becomes ``ftrace_stub``.
    """
    ft.ftrace_disabled = True
    ft.ftrace_enabled = 0
    clear_ftrace_function(ft)
    ft.pages.publish_ftrace_disabled()


def ftrace_stop(ft: Ftrace) -> None:
    """``ftrace_stop()`` (an inline of include/linux/ftrace.h): no callback runs from a
    patched call site until ``ftrace_start()``.  An on/off switch, not a count, and no
    guard: it works on a dead ftrace too, whose trampoline calls ``ftrace_stub`` anyway."""
    ft.function_trace_stop = 1


def ftrace_start(ft: Ftrace) -> None:
    """``ftrace_start()``: the callbacks run again; nothing is re-enabled that
    ``ftrace_kill()`` or a tracer's unregister turned off."""
    ft.function_trace_stop = 0


def clear_ftrace_function(ft: Ftrace) -> None:
    """``clear_ftrace_function()``: every trampoline target variable to ``ftrace_stub``."""
    ft.ftrace_trace_function = ftrace_stub
    # Spec §2.1, against 3.6's x86 (ftrace_call keeps its target): the spec wins.
    ft.trampoline_target = ftrace_stub
    ft.ftrace_pid_function = ftrace_stub


def FTRACE_WARN_ON(ft: Ftrace, cond: bool, line: int) -> bool:  # noqa: N802 - the kernel macro
    """``FTRACE_WARN_ON(cond)``: WARN_ON at ``ftrace.c:line``, then ``ftrace_kill()``.

    ``line`` is the source line of the check, which the WARNING names (counted in the
    3.6.0 tree: see the module's docstring).
    """
    if cond:
        WARN_ON(ft, line)
        ftrace_kill(ft)
    return cond


def WARN_ON(ft: Ftrace, line: int, file: str = FTRACE_C) -> None:  # noqa: N802
    """``WARN_ON(1)`` → ``warn_slowpath_null()``, with the real call trace."""
    ft.panic.warn_slowpath_null(file, line, task_mod.current(), unwind.call_trace())


def _first_warning_at(ft: Ftrace, file: str, line: int) -> bool:
    """The site's static ``__warned``: true the first time only."""
    if (file, line) in ft.warned_once:
        return False
    ft.warned_once.add((file, line))
    return True


def WARN_ON_ONCE(ft: Ftrace, cond: bool, line: int, file: str = FTRACE_C) -> bool:  # noqa: N802
    """``WARN_ON_ONCE(cond)``: the first hit at a site prints; no kill."""
    if cond and _first_warning_at(ft, file, line):
        WARN_ON(ft, line, file)
    return cond


def WARN_ONCE(ft: Ftrace, cond: bool, line: int, message: str,  # noqa: N802
              file: str = FTRACE_C) -> bool:
    """``WARN_ONCE(cond, fmt)``: the first hit at a site prints the WARN with ``message``
    (``warn_slowpath_fmt()``), with the real call trace."""
    if cond and _first_warning_at(ft, file, line):
        ft.panic.warn_slowpath_fmt(file, line, task_mod.current(), unwind.call_trace(), message)
    return cond


def FTRACE_WARN_ON_ONCE(ft: Ftrace, cond: bool, line: int) -> bool:  # noqa: N802
    """``FTRACE_WARN_ON_ONCE(cond)``: WARN_ON_ONCE at ``ftrace.c:line``, then
    ``ftrace_kill()`` every time ``cond`` holds, printed or not (the macro tests
    WARN_ON_ONCE's value, which is ``cond``)."""
    if WARN_ON_ONCE(ft, cond, line):
        ftrace_kill(ft)
    return cond
