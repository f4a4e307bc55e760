"""Tracer selection: ``current_tracer`` / ``available_tracers`` (``kernel/trace/trace.c``, 3.6).

Spec §3.5: writing the current tracer's name is a no-op; otherwise the old tracer's
``reset`` runs, then ``tracer_init`` clears every CPU buffer and calls the new
tracer's ``init``.  Also trace.c's switch of the buffer, ``tracing_on()`` /
``tracing_off()`` / ``tracing_is_on()`` (spec §3.6), which the ``traceon`` /
``traceoff`` probes call; ``tracing_stop()`` / ``tracing_start()``, which stop the
function callbacks and the buffer while ``trace`` is open for reading; and the
deprecated ``tracing_enabled`` (``tracer_enabled``), which stops them until it is set
again.
"""

from __future__ import annotations

import errno
import functools
import threading
from collections.abc import Callable
from typing import Protocol

from kernel_daemon.errno import KernelError, quoted
from kernel_daemon.ftrace.core import WARN_ON_ONCE, WARN_ONCE, Ftrace, ftrace_start, ftrace_stop
from kernel_daemon.mutex import Mutex
from kernel_daemon.strings import KERNEL_SPACES, ULONG_MAX, c_string, kstrtoul_from_user
from kernel_daemon.trace.ring_buffer import RingBuffer
from kernel_daemon.printk import KERN_DEBUG, Printk
from kernel_daemon.trace.trace_options import TRACE_FLAGS_DEFAULT, TracerFlags, TracerOpt
from kernel_daemon.unwind import kernel_function

MAX_TRACER_SIZE = 100
TRACE_C = "kernel/trace/trace.c"
# The lines of the WARNs below in kernel/trace/trace.c (which tree: ftrace/core.py's
# docstring): tracing_start()'s WARN_ON_ONCE(1) on a trace_stop_count below
# zero, and tracing_ctrl_write()'s WARN_ONCE(1, "tracing_enabled is deprecated...").
LINE_TRACING_START_UNDERFLOW = 1000
LINE_TRACING_ENABLED_DEPRECATED = 2969


class Tracer(Protocol):
    name: str
    flags: TracerFlags
    # struct tracer's optional start / stop (NULL when a tracer has none), which
    # tracing_ctrl_write() calls when tracing_enabled turns on / off.
    start: Callable[[], None] | None
    stop: Callable[[], None] | None

    def init(self) -> None: ...

    def reset(self) -> None: ...

    def set_flag(self, old_flags: int, bit: int, set: bool) -> None: ...


# trace_nop.c: its two options, there to show how a tracer's options work.
TRACE_NOP_OPT_ACCEPT = 0x1
TRACE_NOP_OPT_REFUSE = 0x2


class NopTracer:
    """``nop_trace`` (kernel/trace/trace_nop.c): traces nothing; its options
    ``test_nop_accept`` and ``test_nop_refuse`` exist to show the tracer options."""

    name = "nop"
    start = stop = None

    def __init__(self, printk: Printk) -> None:
        self.printk = printk
        self.flags = TracerFlags(0, (TracerOpt("test_nop_accept", TRACE_NOP_OPT_ACCEPT),
                                     TracerOpt("test_nop_refuse", TRACE_NOP_OPT_REFUSE)))

    def init(self) -> None:
        pass

    def reset(self) -> None:
        pass

    @kernel_function
    def nop_set_flag(self, old_flags: int, bit: int, set: bool) -> None:
        """``nop_set_flag()``: accepts ``test_nop_accept``, refuses ``test_nop_refuse``
        (EINVAL), each with its KERN_DEBUG line (3.6's text, its missing space included)."""
        if bit == TRACE_NOP_OPT_ACCEPT:
            self.printk.printk(f"nop_test_accept flag set to {int(set)}: we accept."
                               " Now cat trace_options to see the result", level=KERN_DEBUG)
        elif bit == TRACE_NOP_OPT_REFUSE:
            self.printk.printk(f"nop_test_refuse flag set to {int(set)}: we refuse."
                               "Now cat trace_options to see the result", level=KERN_DEBUG)
            raise KernelError(errno.EINVAL)

    set_flag = nop_set_flag


class Tracing:
    """``trace_types`` and ``current_trace``, under ``trace_types_lock``; the fields of
    ``global_trace`` the output reads: ``cpu`` and ``time_start``; ``tracer_enabled`` and
    ``trace_stop_count``."""

    def __init__(self, ft: Ftrace, ring_buffer: RingBuffer, printk: Printk,
                 clock: Callable[[], int]) -> None:
        self.ft = ft
        self.ring_buffer = ring_buffer
        self.clock = clock
        # global_trace.cpu: set by the function tracer's init, read by print_trace_header().
        self.cpu = 0
        # global_trace.time_start: ftrace_now() at the last tracing_reset_online_cpus();
        # the latency format's times count from it.  0 until then (a static).
        self.time_start = 0
        # A DEFINE_MUTEX: contending for it passes __mutex_lock_slowpath:trace_types_lock.
        self.trace_types_lock = Mutex(slowpath=functools.partial(
            ft.failpoints.fire, "__mutex_lock_slowpath:trace_types_lock"))
        self.nop_trace = NopTracer(printk)
        self.trace_types: list[Tracer] = [self.nop_trace]
        # tracer_alloc_buffers() sets current_trace directly: no option files for nop.
        self.current_trace: Tracer = self.nop_trace
        # tracing_set_tracer()'s static topts: the tracer whose options/ files exist.
        self.topts: Tracer | None = None
        # trace_options (kernel_daemon.trace.trace_options), under trace_types_lock.
        self.trace_flags = TRACE_FLAGS_DEFAULT
        # tracing_thresh and tracing_max_latency, in ns; no latency tracer sets them here.
        self.tracing_thresh = 0
        self.tracing_max_latency = 0
        # What tracing_enabled reads and writes (1 at boot), under trace_types_lock.
        self.tracer_enabled = 1
        # tracing_stop() calls not yet undone by tracing_start(), under tracing_start_lock.
        self.trace_stop_count = 0
        self.tracing_start_lock = threading.Lock()

    def register_tracer(self, tracer: Tracer) -> None:
        """``register_tracer()``: pushed at the head of ``trace_types``."""
        with self.trace_types_lock:
            self.trace_types.insert(0, tracer)

    def tracing_on(self) -> None:
        """``tracing_on()``: ``ring_buffer_record_on(global_trace.buffer)``, what
        ``echo 1 > tracing_on`` does too."""
        self.ring_buffer.record_on()

    def tracing_off(self) -> None:
        """``tracing_off()``: recording stops, the buffer keeps what it has."""
        self.ring_buffer.record_off()

    def tracing_is_on(self) -> bool:
        """``tracing_is_on()``: ``ring_buffer_record_is_on()``, so it is false while the
        ``trace`` file is being read, too."""
        return self.ring_buffer.record_is_on()

    def tracing_is_enabled(self) -> int:
        """``tracing_is_enabled()``: ``tracer_enabled``."""
        return self.tracer_enabled

    @kernel_function
    def tracing_stop(self) -> None:
        """``tracing_stop()``: ``ftrace_stop()``, then the first of nested stops disables
        recording on the global buffer (``ring_buffer_record_disable()``)."""
        ftrace_stop(self.ft)
        with self.tracing_start_lock:
            self.trace_stop_count += 1
            if self.trace_stop_count == 1:
                self.ring_buffer.record_disable()

    @kernel_function
    def tracing_start(self) -> None:
        """``tracing_start()``: the last of nested stops undone enables recording again,
        then ``ftrace_start()``; one too many WARNs once and counts from 0 again.

        3.6 first returns if trace.c's ``tracing_disabled`` is set, which only a failed
        buffer allocation or resize, or ``ftrace_off_permanent()``, sets: never here.
        """
        with self.tracing_start_lock:
            self.trace_stop_count -= 1
            if self.trace_stop_count:
                # "Someone screwed up their debugging"
                if WARN_ON_ONCE(self.ft, self.trace_stop_count < 0,
                                LINE_TRACING_START_UNDERFLOW, TRACE_C):
                    self.trace_stop_count = 0
                return
            self.ring_buffer.record_enable()
            ftrace_start(self.ft)

    def tracing_ctrl_read(self) -> str:
        """What ``tracing_ctrl_read()`` hands ``simple_read_from_buffer()``: ``"%u\\n"``."""
        return f"{self.tracer_enabled}\n"

    @kernel_function
    def tracing_ctrl_write(self, data: bytes) -> int:
        """``tracing_ctrl_write()``: ``kstrtoul_from_user()`` in base 10 (its errno is
        raised), then ``!!val``; under ``trace_types_lock``, a change WARNs once a boot
        that the file is deprecated, then turns tracing on (the current tracer's
        ``start``, then ``tracing_start()``) or off (``tracing_stop()``, then its
        ``stop``).  Returns ``cnt``."""
        val = int(bool(kstrtoul_from_user(data)))
        with self.trace_types_lock:
            if self.tracer_enabled ^ val:
                # Only need to warn if this is used to change the state
                WARN_ONCE(self.ft, True, LINE_TRACING_ENABLED_DEPRECATED,
                          "tracing_enabled is deprecated. Use tracing_on", TRACE_C)
                if val:
                    self.tracer_enabled = 1
                    if self.current_trace.start is not None:
                        self.current_trace.start()
                    self.tracing_start()
                else:
                    self.tracer_enabled = 0
                    self.tracing_stop()
                    if self.current_trace.stop is not None:
                        self.current_trace.stop()
        return len(data)

    def available_tracers(self) -> str:
        return " ".join(t.name for t in self.trace_types) + "\n"

    def tracing_reset_online_cpus(self) -> None:
        """``tracing_reset_online_cpus()``: ``time_start`` is the trace clock now, and every
        CPU's buffer is cleared."""
        self.time_start = self.clock()
        self.ring_buffer.reset()

    def tracing_resize_ring_buffer(self, size: int, cpu: int | None = None) -> None:
        """``tracing_resize_ring_buffer(size, cpu_id)``: ``__tracing_resize_ring_buffer()``
        under ``trace_types_lock``, for a ``buffer_size_kb`` write and ``free_buffer``'s
        release; ``cpu`` None is RING_BUFFER_ALL_CPUS."""
        with self.trace_types_lock:
            self.ring_buffer.resize(size, cpu)

    def tracing_entries_write(self, val: int, cpu: int | None = None) -> None:
        """``tracing_entries_write()`` once ``kstrtoul_from_user()`` gave ``val``, in KB:
        0 is EINVAL, checked before the lock; then ``tracing_resize_ring_buffer()``."""
        if not val:
            raise KernelError(errno.EINVAL, "buffer_size_kb must be at least 1")
        self.tracing_resize_ring_buffer((val << 10) & ULONG_MAX, cpu)  # in an unsigned long

    def tracing_update_buffers(self) -> None:
        """``tracing_update_buffers()``: under ``trace_types_lock``, the buffer grows to
        ``trace_buf_size`` on first use (a ``set_event`` or ``events/*/enable`` write)."""
        with self.trace_types_lock:
            self.ring_buffer.expand()

    @kernel_function
    def tracer_init(self, tracer: Tracer) -> None:
        """``tracer_init()``: every CPU's buffer cleared (``time_start`` taken), then the
        tracer's ``init``, which cannot fail here (3.6 returns its error)."""
        self.tracing_reset_online_cpus()
        tracer.init()

    @kernel_function
    def tracing_set_tracer(self, name: str) -> None:
        """``tracing_set_tracer()``: under ``trace_types_lock``, expand the buffer first
        (an ENOMEM there fails before the name is looked up), then the name, the old
        tracer's ``reset``, ``nop`` in between and ``tracer_init()``.  3.6's
        ``trace_branch_*`` and ``max_tr`` steps have nothing to act on: no branch tracer, no
        tracer that uses ``max_tr``."""
        with self.trace_types_lock:
            # Even for a name that turns out unknown.
            self.ring_buffer.expand()
            tracer = next((t for t in self.trace_types if t.name == name), None)
            if tracer is None:
                # The kernel's EINVAL is bare; the message names the word looked up (after
                # the write's stripping), for the caller, as the filter files' do.
                raise KernelError(errno.EINVAL, f"{quoted(name)} names no tracer")
            if tracer is self.current_trace:
                return
            self.current_trace.reset()
            self.current_trace = self.nop_trace
            # destroy_trace_option_files(topts), then create_trace_option_files(t).
            self.topts = tracer
            self.tracer_init(tracer)
            self.current_trace = tracer

    @kernel_function
    def tracing_set_trace_write(self, data: bytes) -> int:
        """The ``current_tracer`` write: at most MAX_TRACER_SIZE bytes, trailing
        isspace() stripped down to the first byte, which stays; the name ends at a NUL.
        Returns the full count."""
        buf = data[:MAX_TRACER_SIZE]
        end = len(buf)
        while end > 1 and buf[end - 1] in KERNEL_SPACES:
            end -= 1
        self.tracing_set_tracer(c_string(buf[:end]).decode("latin-1"))
        return len(data)
