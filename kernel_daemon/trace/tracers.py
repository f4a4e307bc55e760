"""Tracer selection: ``current_tracer`` / ``available_tracers`` (``kernel/trace/trace.c``, 3.6).

Spec §3.5: writing the current tracer's name is a no-op; otherwise the old tracer's
``reset`` runs, then ``tracer_init`` clears every CPU buffer and calls the new
tracer's ``init``.  Also trace.c's switch of the buffer, ``tracing_on()`` /
``tracing_off()`` / ``tracing_is_on()`` (spec §3.6), which the ``traceon`` /
``traceoff`` probes call.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from typing import Protocol

from kernel_daemon.errno import KernelError
from kernel_daemon.strings import KERNEL_SPACES, c_string
from kernel_daemon.trace.ring_buffer import RingBuffer
from kernel_daemon.printk import KERN_DEBUG, Printk
from kernel_daemon.trace.trace_options import TRACE_FLAGS_DEFAULT, TracerFlags, TracerOpt
from kernel_daemon.unwind import kernel_function

MAX_TRACER_SIZE = 100


class Tracer(Protocol):
    name: str
    flags: TracerFlags

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
    """``trace_types`` and ``current_trace``, under ``trace_types_lock``; and the fields of
    ``global_trace`` the output reads: ``cpu`` and ``time_start``."""

    def __init__(self, ring_buffer: RingBuffer, printk: Printk,
                 clock: Callable[[], int]) -> None:
        self.ring_buffer = ring_buffer
        self.clock = clock
        # global_trace.cpu: set by the function tracer's init, read by print_trace_header().
        self.cpu = 0
        # global_trace.time_start: ftrace_now() at the last tracing_reset_online_cpus();
        # the latency format's times count from it.  0 until then (a static).
        self.time_start = 0
        self.trace_types_lock = threading.Lock()
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

    def available_tracers(self) -> str:
        return " ".join(t.name for t in self.trace_types) + "\n"

    def tracing_reset_online_cpus(self) -> None:
        """``tracing_reset_online_cpus()``: ``time_start`` is the trace clock now, and every
        CPU's buffer is cleared."""
        self.time_start = self.clock()
        self.ring_buffer.reset()

    @kernel_function
    def tracer_init(self, tracer: Tracer) -> None:
        self.tracing_reset_online_cpus()
        tracer.init()

    @kernel_function
    def tracing_set_tracer(self, name: str) -> None:
        # 3.6 expands the buffers first, even for a name that turns out unknown.
        self.ring_buffer.expand()
        with self.trace_types_lock:
            tracer = next((t for t in self.trace_types if t.name == name), None)
            if tracer is None:
                raise KernelError(errno.EINVAL)
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
