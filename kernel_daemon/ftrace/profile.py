"""The function profiler: the ``CONFIG_FUNCTION_PROFILER`` section of ``kernel/trace/ftrace.c``
(3.6), in a kernel without ``CONFIG_FUNCTION_GRAPH_TRACER``: it counts hits only, no times.

``echo 1 > function_profile_enabled`` sets up every CPU's profile (``ftrace_profile_init``:
the first time, its hash and its pages, sized from ``ftrace_update_tot_cnt``; after that a
reset to zero) and registers ``ftrace_profile_ops``, an ops with empty hashes: it counts
in every record, so every call site is patched, and ``function_profile_call`` counts each
call in the profile of the CPU it runs on.  ``echo 0`` unregisters it; the counts stay
readable in ``trace_stat/function<cpu>``, whose stat tracer (``function_stats``) is
:class:`FunctionStats` (trace_stat.c's side is ``kernel_daemon.trace.trace_stat``).

A CPU's profile holds as many functions as its pages do: one page more than
``ftrace_update_tot_cnt`` needed when it was first enabled.  Functions hit once that is
full are not counted.
"""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass, field

import numpy as np

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.core import Ftrace
from kernel_daemon.ftrace.dispatch import smp_processor_id
from kernel_daemon.ftrace.ops import FtraceOps
from kernel_daemon.ftrace.records import PAGE_SIZE
from kernel_daemon.ftrace.register import register_ftrace_function, unregister_ftrace_function
from kernel_daemon.mutex import Mutex
from kernel_daemon.strings import kstrtoul_from_user
from kernel_daemon.trace.trace_stat import StatSession, register_stat_tracer
from kernel_daemon.unwind import kernel_function

# struct ftrace_profile on x86_64 without the graph tracer's times: an hlist_node (two
# pointers), ip, counter.
FTRACE_PROFILE_SIZE = 16 + 8 + 8
# struct ftrace_profile_page: next, index, then the records.
PROFILE_RECORDS_SIZE = PAGE_SIZE - (8 + 8)
PROFILES_PER_PAGE = PROFILE_RECORDS_SIZE // FTRACE_PROFILE_SIZE  # 127


def _no_records() -> np.ndarray:
    return np.zeros(0, dtype=np.uint64)


def profile_pages(functions: int) -> int:
    """The pages ``ftrace_profile_pages_init()`` chains: the first, then
    ``DIV_ROUND_UP(functions, PROFILES_PER_PAGE)`` more."""
    return 1 + -(-functions // PROFILES_PER_PAGE)


@dataclass(eq=False)
class FtraceProfileStat:
    """``struct ftrace_profile_stat``: one CPU's profile.

    The pages fill in order from the first (``ftrace_profile_alloc``), and a reset
    empties them all, so the chain is one array of its records here (the ip and counter
    of each ``struct ftrace_profile``), of which the first ``index`` are in use; ``hash``
    finds a function's record (the kernel's 1024 hlist buckets, whose number only
    matters for speed), and is None until the CPU's first enable.
    """

    hash: dict[int, int] | None = None
    ip: np.ndarray = field(default_factory=_no_records)
    counter: np.ndarray = field(default_factory=_no_records)
    index: int = 0
    # local_irq_save(): what runs on this CPU runs alone; the model's threads that run
    # "on" one CPU take turns.
    irq: threading.Lock = field(default_factory=threading.Lock)

    def ftrace_profile_reset(self) -> None:
        """``ftrace_profile_reset()``: every record zeroed, the hash emptied."""
        with self.irq:
            self.ip[:self.index] = 0
            self.counter[:self.index] = 0
            self.index = 0
            self.hash = {}

    def ftrace_profile_pages_init(self, functions: int) -> None:
        """``ftrace_profile_pages_init()``: the zeroed pages (its "already allocated"
        test never holds here: it runs at a CPU's first enable only, as in 3.6)."""
        records = profile_pages(functions) * PROFILES_PER_PAGE
        self.ip = np.zeros(records, dtype=np.uint64)
        self.counter = np.zeros(records, dtype=np.uint64)

    def ftrace_profile_alloc(self, ip: int) -> int | None:
        """``ftrace_profile_alloc()``: the next free record for ``ip``, None when the last
        page is full.  Interrupts are off (``irq`` held), so the NMI recheck of the hash
        finds nothing the caller did not."""
        if self.index == len(self.ip):
            return None
        rec = self.index
        self.index += 1
        self.ip[rec] = ip
        self.hash[ip] = rec  # ftrace_add_profile()
        return rec


class FunctionStats:
    """``function_stats``, the ``struct tracer_stat`` each CPU's profile embeds: the
    ``trace_stat/function<cpu>`` file's callbacks.  An entry is a record's index."""

    def __init__(self, profiler: FunctionProfiler, cpu: int) -> None:
        self.profiler = profiler
        self.stat = profiler.ftrace_profile_stats[cpu]
        self.name = f"function{cpu}"

    def function_stat_next(self, rec: int, idx: int) -> int | None:
        """``function_stat_next()``: the next record in use.  (The kernel also skips the
        first record of a following page while its counter is 0, which is the case of an
        unused page only: a record is allocated and counted with interrupts off.)"""
        if idx:
            rec += 1
        return rec if rec < self.stat.index else None

    def function_stat_start(self) -> int | None:
        if self.stat.hash is None:  # no pages yet (stat->start)
            return None
        return self.function_stat_next(0, 0)

    def function_stat_cmp(self, a: int, b: int) -> int:
        """``function_stat_cmp()`` without the graph tracer: by hits."""
        hits_a, hits_b = int(self.stat.counter[a]), int(self.stat.counter[b])
        return (hits_a > hits_b) - (hits_a < hits_b)

    def function_stat_headers(self) -> str:
        return ("  Function                               Hit\n"
                "  --------                               ---\n")

    def function_stat_show(self, rec: int) -> str:
        """``function_stat_show()``: ``"  %-30.30s  %10lu\\n"`` of the name
        ``kallsyms_lookup()`` gives (none for an ip no symbol covers now) and the hits;
        EBUSY for a record a re-enable reset after the file was opened."""
        with self.profiler.ftrace_profile_lock:
            counter = int(self.stat.counter[rec])
            if not counter:
                raise KernelError(errno.EBUSY, "the profile was reset")
            name = self.profiler.ft.kallsyms_lookup(int(self.stat.ip[rec]))
            return f"  {name[:30]:<30}  {counter:>10}\n"

    stat_start = function_stat_start
    stat_next = function_stat_next
    stat_cmp = function_stat_cmp
    stat_headers = function_stat_headers
    stat_show = function_stat_show


class FunctionProfiler:
    """The profiler's statics: ``ftrace_profile_enabled``, ``ftrace_profile_lock``, the
    per-CPU ``ftrace_profile_stats`` and ``ftrace_profile_ops``."""

    def __init__(self, ft: Ftrace, nr_cpus: int) -> None:
        self.ft = ft
        self.ftrace_profile_enabled = 0
        # ftrace_profile_lock: serialises the enable and disable of the profiler.
        self.ftrace_profile_lock = Mutex()
        self.ftrace_profile_stats = [FtraceProfileStat() for _ in range(nr_cpus)]
        # Static, in core kernel data (not DYNAMIC), no hashes: every function.
        self.ftrace_profile_ops = FtraceOps("ftrace_profile_ops", func=self.function_profile_call,
                                            core_data=True)

    def ftrace_profile_init_cpu(self, cpu: int) -> None:
        """``ftrace_profile_init_cpu()``: reset a profile that exists, else make it."""
        stat = self.ftrace_profile_stats[cpu]
        if stat.hash is not None:
            stat.ftrace_profile_reset()
            return
        stat.ftrace_profile_pages_init(self.ft.ftrace_update_tot_cnt)
        stat.hash = {}

    def ftrace_profile_init(self) -> None:
        """``ftrace_profile_init()``: every online CPU (all of the model's)."""
        for cpu in range(len(self.ftrace_profile_stats)):
            self.ftrace_profile_init_cpu(cpu)

    def function_profile_call(self, ip: int, parent_ip: int, op: FtraceOps | None,
                              count: int = 1) -> None:
        """``function_profile_call()``: ``count`` calls of ``ip`` on this CPU, one
        addition to its record's counter."""
        if not self.ftrace_profile_enabled:
            return
        stat = self.ftrace_profile_stats[smp_processor_id()]
        with stat.irq:
            if stat.hash is None or not self.ftrace_profile_enabled:
                return
            rec = stat.hash.get(ip)  # ftrace_find_profiled_func()
            if rec is None:
                rec = stat.ftrace_profile_alloc(ip)
                if rec is None:
                    return
            stat.counter[rec] += np.uint64(count)

    # register_ftrace_profiler() and unregister_ftrace_profiler() are static one-liners
    # the compiler inlines into ftrace_profile_write(): no frames of their own.
    def register_ftrace_profiler(self) -> None:
        register_ftrace_function(self.ft, self.ftrace_profile_ops)

    def unregister_ftrace_profiler(self) -> None:
        """Void in 3.6: an unregister refused (ftrace is dead) leaves the ops listed."""
        try:
            unregister_ftrace_function(self.ft, self.ftrace_profile_ops)
        except KernelError:
            pass

    @kernel_function
    def ftrace_profile_write(self, data: bytes) -> int:
        """``ftrace_profile_write()``: ``kstrtoul_from_user()`` (its errno is raised), then
        ``!!val``; a change enables or disables the profiler under ``ftrace_profile_lock``.

        Returns ``cnt``: the bytes written, or the negative errno of a register that
        failed, which 3.6 puts in ``cnt`` and so also adds to the file position.
        """
        val = int(bool(kstrtoul_from_user(data)))
        cnt = len(data)
        with self.ftrace_profile_lock:
            if self.ftrace_profile_enabled ^ val:
                if val:
                    self.ftrace_profile_init()
                    try:
                        self.register_ftrace_profiler()
                    except KernelError as err:
                        return -err.errno
                    self.ftrace_profile_enabled = 1
                else:
                    self.ftrace_profile_enabled = 0
                    # Its stop_machine() acts as a synchronize_sched().
                    self.unregister_ftrace_profiler()
        return cnt

    def ftrace_profile_read(self) -> str:
        """What ``ftrace_profile_read()`` hands ``simple_read_from_buffer()``: ``"%u\\n"``."""
        return f"{self.ftrace_profile_enabled}\n"

    def ftrace_profile_debugfs(self, all_stat_sessions: list[StatSession]) -> None:
        """``ftrace_profile_debugfs()``: a stat tracer ``function<cpu>`` per possible CPU.
        (``function_profile_enabled`` itself is in ``kernel_daemon.tracefs.tree``.)"""
        for cpu in range(len(self.ftrace_profile_stats)):
            register_stat_tracer(all_stat_sessions, FunctionStats(self, cpu))
