"""One booted kernel: the state ``ftraced`` holds, built from boot options.

``Kernel(BootOptions(...))`` is ``start_kernel()`` for the model: the printk buffer,
vmlinux's symbols, the module loader, the panic/taint state, the failpoints, the
ftrace core with the core kernel's records (``ftrace_init``), and the tracers; the
initcalls that register the filter file's commands run as they come.
``shutdown()`` leaves nothing in /dev/shm.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass

import numpy as np

from kernel_daemon.failpoints import Failpoints, check_site_spec, parse_spec
from kernel_daemon.ftrace.core import FAILPOINT_ERRORS, FAILPOINT_SITES, Ftrace, Race, Variant
from kernel_daemon.ftrace.filter import ftrace_mod_cmd_init
from kernel_daemon.ftrace.module_records import ftrace_module_notify, ftrace_process_locs
from kernel_daemon.ftrace.dispatch import smp_processor_id
from kernel_daemon.ftrace.probe import FtraceProbes
from kernel_daemon.ftrace.profile import FunctionProfiler
from kernel_daemon.ftrace.records import ENTRIES_PER_PAGE, RecordPages
from kernel_daemon.module.address_space import ModuleAddressSpace
from kernel_daemon.module.kallsyms import Kallsyms
from kernel_daemon.module.loader import Module, ModuleLoader
from kernel_daemon.module.vmlinux import DEFAULT_FUNCTIONS, MIN_FUNCTIONS, build_vmlinux
from kernel_daemon.mutex import Mutex
from kernel_daemon.panic import Panic
from kernel_daemon.pid import PidHash
from kernel_daemon.preempt import preempt_count
from kernel_daemon.printk import Printk
from kernel_daemon.shm import new_namespace, reap_stale_segments, unlink_namespace
from kernel_daemon.task import Task, current
from kernel_daemon.teardown import SHUT_DOWN
from kernel_daemon.trace.buffers import TRACE_BUF_SIZE_DEFAULT
from kernel_daemon.trace.ring_buffer import RingBuffer, TraceClock
from kernel_daemon.trace.saved_cmdlines import SavedCmdlines
from kernel_daemon.trace.trace_functions import FunctionTracer, TraceOnOffCommands
from kernel_daemon.trace.trace_stat import StatSession
from kernel_daemon.trace.tracers import Tracing

UTS_RELEASE = "3.6.11+"
#: The shortest switch interval but 0: CPython keeps it in whole microseconds (a shorter one
#: reads back as 0, and acts as one).
MIN_SWITCH_INTERVAL = 1e-6
# Events the function tracer wrote for the current call (an Invoke reports them).
events_written: contextvars.ContextVar[int] = contextvars.ContextVar("events_written", default=0)
UTS_VERSION = "#1 SMP ftrace-sim"


@dataclass(frozen=True)
class BootOptions:
    """The kernel command line of the model (``ftraced`` flags)."""

    variant: str = "fixed"
    races: tuple[str, ...] = ()
    failpoints: tuple[tuple[str, str], ...] = ()
    core_functions: int = DEFAULT_FUNCTIONS
    module_placement: str = "first-fit"
    cpus: int = 4
    seed: int = 0
    # sys.setswitchinterval() for the daemon process; 0 sets CPython's default (5 ms).
    switch_interval: float = 0.0
    # trace_buf_size= (in KB): the per-CPU ring buffer size once tracing first needs it.
    buffer_size_kb: int = TRACE_BUF_SIZE_DEFAULT >> 10

    def __post_init__(self) -> None:
        # A set of windows (kernel.proto BootConfig.races: distinct, in no order): one
        # named twice (``--race X --race X``, races [1, 1]) is open once, and said once.
        object.__setattr__(self, "races", tuple(dict.fromkeys(self.races)))

    def validate(self) -> None:
        """ValueError for a bad option; KeyError (a LookupError) for an unknown failpoint."""
        Variant(self.variant)
        for race in self.races:
            Race(race)
        for name, spec in self.failpoints:
            if name not in FAILPOINT_SITES:
                raise KeyError(f"unknown failpoint {name!r}")
            check_site_spec(name, parse_spec(spec), FAILPOINT_ERRORS.get(name, ()))
        if not 1 <= self.cpus <= 256:
            raise ValueError(f"cpus must be 1..256, not {self.cpus}")
        if not MIN_FUNCTIONS <= self.core_functions <= 2_000_000:
            raise ValueError(f"core-functions must be {MIN_FUNCTIONS}..2000000, "
                             f"not {self.core_functions}")
        if not (self.switch_interval == 0 or MIN_SWITCH_INTERVAL <= self.switch_interval <= 1):
            raise ValueError(f"switch-interval must be 0 (Python's default) or "
                             f"{MIN_SWITCH_INTERVAL:g}..1 seconds, not {self.switch_interval}")
        if self.buffer_size_kb < 1:
            raise ValueError(f"buffer-size-kb must be at least 1, not {self.buffer_size_kb}")


class Kernel:
    def __init__(self, options: BootOptions) -> None:
        options.validate()
        self.options = options
        reap_stale_segments()
        self.boot_ns = time.monotonic_ns()
        self.printk = Printk(self.local_clock)
        self.printk.printk(f"Linux version {UTS_RELEASE} (ftrace-sim) {UTS_VERSION}", level=5)
        vmlinux = build_vmlinux(options.core_functions, options.seed)
        self.kallsyms = Kallsyms(vmlinux)
        # Before the module loader: module_mutex passes a failpoint when contended.
        self.failpoints = Failpoints(options.seed, known=FAILPOINT_SITES,
                                     errors=FAILPOINT_ERRORS)
        for name, spec in options.failpoints:
            self.failpoints.configure(name, spec)
        # Taints are the panic state's, made next (it prints the loader's module list).
        self.modules = ModuleLoader(self.kallsyms,
                                    ModuleAddressSpace(options.module_placement, options.seed),
                                    lambda flag: self.panic.add_taint(flag), self.printk.printk,
                                    self.failpoints)
        self.panic = Panic(self.printk, self.kallsyms.sprint_symbol, self.kallsyms.return_address,
                           self.modules.print_modules, UTS_RELEASE, UTS_VERSION)
        self.namespace = new_namespace()
        # The boot creates the namespace's shared memory as it goes: one that fails
        # half-way (an error, Ctrl-C, SIGTERM made KeyboardInterrupt) leaves no kernel to
        # shut down, so it unlinks what it created itself.
        try:
            # The tasks that have entered this kernel (kernel_daemon.pid); the RPC layer
            # adds each as it comes in.
            self.pid_hash = PidHash()
            self.ftrace = Ftrace(Variant(options.variant),
                                 frozenset(Race(r) for r in options.races),
                                 RecordPages(self.namespace), self.printk, self.panic,
                                 self.failpoints, self.kallsyms.sprint_symbol_no_offset,
                                 self.kallsyms.sprint_symbol, self.kallsyms_lookup_name,
                                 self.pid_hash.find_get_pid, self.symbol_name, FtraceProbes())
            self.ftrace_init(vmlinux)
            ftrace_mod_cmd_init(self.ftrace)
            self.modules.register_module_notifier(self.ftrace_module_notifier)
            self.trace_clock = TraceClock(self.local_clock)
            self.trace_clock_name = "local"
            self.ring_buffer = RingBuffer(self.namespace, options.cpus,
                                          options.buffer_size_kb << 10)
            # tracing_cpumask: CPUs whose events are recorded, and the lock of its writers.
            self.tracing_cpumask = (1 << options.cpus) - 1
            self.tracing_cpumask_update_lock = Mutex()
            self.tracing = Tracing(self.ftrace, self.ring_buffer, self.printk, self.trace_clock)
            self.saved_cmdlines = SavedCmdlines(self.namespace, self.tracing.tracing_is_enabled,
                                                self.ring_buffer.record_is_on)
            self.function_tracer = FunctionTracer(self.ftrace, self.function_trace_event,
                                                  self.function_stack_trace_event,
                                                  self.tracing, self.saved_cmdlines)
            # init_function_trace(): the traceon/traceoff commands, then the tracer.
            TraceOnOffCommands(self.ftrace, self.tracing).init_func_cmd_traceon()
            self.tracing.register_tracer(self.function_tracer)
            # trace_stat.c's all_stat_sessions; ftrace_init_debugfs() registers the profiler's.
            self.all_stat_sessions: list[StatSession] = []
            self.function_profiler = FunctionProfiler(self.ftrace, options.cpus)
            self.function_profiler.ftrace_profile_debugfs(self.all_stat_sessions)
        except BaseException:
            unlink_namespace(self.namespace)
            raise

    def local_clock(self) -> int:
        """``local_clock()``: nanoseconds since boot."""
        return time.monotonic_ns() - self.boot_ns

    def kallsyms_lookup_name(self, name: str) -> int | None:
        symbols = self.kallsyms.lookup_name(name)
        return symbols[0].addr if symbols else None

    def ftrace_init(self, vmlinux: list) -> None:
        """``ftrace_init()``: the core kernel's records, from ``__mcount_loc``."""
        ips = np.fromiter((s.addr for s in vmlinux), dtype=np.uint64, count=len(vmlinux))
        names = np.array([s.name for s in vmlinux])
        # ftrace_dyn_table_alloc(), which 3.6 keeps only for this line: one page more than
        # count / ENTRIES_PER_PAGE, even when that divides exactly (40960: 161 pages).
        # ftrace_allocate_pages() allocates by its own arithmetic and prints nothing.
        pages = len(ips) // ENTRIES_PER_PAGE + 1
        self.printk.printk(f"ftrace: allocating {len(ips)} entries in {pages} pages", level=6)
        ftrace_process_locs(self.ftrace, None, "", ips, names)

    def ftrace_module_notifier(self, state: int, mod: Module) -> None:
        """``ftrace_module_nb``: hands the module's call sites to ftrace."""
        ips = np.fromiter(mod.mcount_locs, dtype=np.uint64)
        names = np.array([s.name for s in mod.symbols]) if mod.symbols else np.array([], dtype=str)
        ftrace_module_notify(self.ftrace, state, mod, mod.name, ips, names)

    def function_trace_context(self) -> tuple[int, Task, int] | None:
        """The context ``function_trace_call()`` takes before ``trace_function()``: this
        CPU (``raw_smp_processor_id()``), the current task, and the flags
        ``tracing_generic_entry_update()`` fills, with the callback's ``pc =
        preempt_count()`` in the high byte (``entry->preempt_count = pc & 0xff``); None on
        a CPU outside ``tracing_cpumask``, whose buffer records nothing."""
        cpu = smp_processor_id()
        if not self.tracing_cpumask >> cpu & 1:
            return None
        task = current()
        # The sched_switch that ran the task saved its comm before it got here, so a
        # reader woken by these events finds it; a full buffer without overwrite drops
        # the events, not the save: the task ran.
        self.saved_cmdlines.tracing_record_cmdline(task.pid, task.comm)
        return cpu, task, (preempt_count() & 0xFF) << 8

    def function_trace_event(self, ip: int, parent_ip: int, count: int) -> None:
        """``trace_function()``: ``count`` events for the current task on this CPU."""
        context = self.function_trace_context()
        if context is None:
            return
        cpu, task, flags = context
        if count == 1:
            written = int(self.ring_buffer.write_function_event(
                cpu, self.trace_clock(), task.pid, ip, parent_ip, flags))
        else:
            written = self.ring_buffer.write_function_events(
                cpu, self.trace_clock.stamps(count), task.pid, ip, parent_ip, flags)
        events_written.set(events_written.get() + written)

    def function_stack_trace_event(self, ip: int, parent_ip: int, count: int,
                                   frames: tuple[int, ...]) -> None:
        """``trace_function()`` then ``__trace_stack()`` of ``frames``, for each of
        ``count`` calls of the current task on this CPU."""
        context = self.function_trace_context()
        if context is None:
            return
        cpu, task, flags = context
        written = self.ring_buffer.write_function_stack_events(
            cpu, self.trace_clock.reserve(2 * count), task.pid, ip, parent_ip, flags, frames,
            count)
        events_written.set(events_written.get() + written)

    def symbol_name(self, ip: int) -> str:
        """The bare name a trace line prints for ``ip`` (no module, no offset).

        3.6's ``seq_print_sym_short()`` prints the buffer ``kallsyms_lookup()`` filled,
        which it empties first: an address no symbol covers prints as nothing. (The
        ``0x%08lx`` fallback is a later kernel's, spec §3.6 [6.13.7].)
        """
        found = self.kallsyms.lookup(ip)
        return found[0].name if found else ""

    def shutdown(self, reason: str = SHUT_DOWN) -> None:
        """The kernel goes away, for ``reason`` (kernel_daemon.teardown: the ENODEV's
        message). Its shared memory first: unlinked, and no segment is created after (a
        call still inside gets ENODEV instead). Then whatever is blocked in it wakes to
        find it gone: trace_pipe readers (ENODEV), dmesg followers, and threads paused
        at failpoints, which carry on against the dead kernel (so a paused module load
        cannot link pages the teardown would miss).
        """
        self.ring_buffer.destroy(reason)
        self.saved_cmdlines.destroy()
        self.ftrace.pages.destroy(reason)
        self.printk.close()
        self.failpoints.release_all()
