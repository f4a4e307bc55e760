"""``trace_options`` and ``options/``: the trace iterator flags of ``kernel/trace/trace.c``
(3.6) and the per-tracer options (``struct tracer_flags``).

``trace_flags`` bit ``i`` is ``trace_options[i]`` ("These must match the bit postions in
trace_iterator_flags").  The flags are read where the kernel reads them: when ``trace`` and
``trace_pipe`` format their text (:mod:`kernel_daemon.trace.trace_output`), never on the
recording path; ``overwrite`` is also handed to the ring buffer when it changes
(:func:`set_tracer_flags`).  Flags whose effect the model has no machinery for (stack
traces, the graph tracer's times, ...) are kept and shown like any other.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kernel_daemon.errno import KernelError
from kernel_daemon.strings import kstrtoul_from_user, strim
from kernel_daemon.unwind import kernel_function

if TYPE_CHECKING:
    from kernel_daemon.trace.tracers import Tracer, Tracing

#: ``trace_options[]``, in bit order.
TRACE_OPTIONS = (
    "print-parent", "sym-offset", "sym-addr", "verbose", "raw", "hex", "bin", "block",
    "stacktrace", "trace_printk", "ftrace_preempt", "branch", "annotate", "userstacktrace",
    "sym-userobj", "printk-msg-only", "context-info", "latency-format", "sleep-time",
    "graph-time", "record-cmd", "overwrite", "disable_on_free", "irq-info",
)

# enum trace_iterator_flags (trace.h).
TRACE_ITER_PRINT_PARENT = 1 << 0
TRACE_ITER_SYM_OFFSET = 1 << 1
TRACE_ITER_SYM_ADDR = 1 << 2
TRACE_ITER_VERBOSE = 1 << 3
TRACE_ITER_RAW = 1 << 4
TRACE_ITER_HEX = 1 << 5
TRACE_ITER_BIN = 1 << 6
TRACE_ITER_BLOCK = 1 << 7
TRACE_ITER_STACKTRACE = 1 << 8
TRACE_ITER_PRINTK = 1 << 9
TRACE_ITER_PREEMPTONLY = 1 << 10
TRACE_ITER_BRANCH = 1 << 11
TRACE_ITER_ANNOTATE = 1 << 12
TRACE_ITER_USERSTACKTRACE = 1 << 13
TRACE_ITER_SYM_USEROBJ = 1 << 14
TRACE_ITER_PRINTK_MSGONLY = 1 << 15
TRACE_ITER_CONTEXT_INFO = 1 << 16
TRACE_ITER_LATENCY_FMT = 1 << 17
TRACE_ITER_SLEEP_TIME = 1 << 18
TRACE_ITER_GRAPH_TIME = 1 << 19
TRACE_ITER_RECORD_CMD = 1 << 20
TRACE_ITER_OVERWRITE = 1 << 21
TRACE_ITER_STOP_ON_FREE = 1 << 22
TRACE_ITER_IRQ_INFO = 1 << 23

#: ``trace_flags``' initial value.
TRACE_FLAGS_DEFAULT = (TRACE_ITER_PRINT_PARENT | TRACE_ITER_PRINTK | TRACE_ITER_ANNOTATE
                       | TRACE_ITER_CONTEXT_INFO | TRACE_ITER_SLEEP_TIME | TRACE_ITER_GRAPH_TIME
                       | TRACE_ITER_RECORD_CMD | TRACE_ITER_OVERWRITE | TRACE_ITER_IRQ_INFO)

# tracing_trace_options_write()'s char buf[64].
TRACE_OPTIONS_BUF = 64
# trace_functions.c: TRACE_FUNC_OPT_STACK and TRACE_FUNC_OPT_PSTORE.
TRACE_FUNC_OPT_STACK = 0x1
TRACE_FUNC_OPT_PSTORE = 0x2


@dataclass(frozen=True)
class TracerOpt:
    """``struct tracer_opt``: a tracer's own option."""

    name: str
    bit: int


@dataclass
class TracerFlags:
    """``struct tracer_flags``: the tracer's option bits and their names."""

    val: int = 0
    opts: tuple[TracerOpt, ...] = field(default_factory=tuple)


def tracing_trace_options_show(tracing: Tracing) -> str:
    """One line per core flag, ``name`` or ``noname``, then the current tracer's options."""
    with tracing.trace_types_lock:
        flags = tracing.trace_flags
        tracer_flags = tracing.current_trace.flags
        lines = [name if flags & (1 << i) else "no" + name
                 for i, name in enumerate(TRACE_OPTIONS)]
        lines += [opt.name if tracer_flags.val & opt.bit else "no" + opt.name
                  for opt in tracer_flags.opts]
    return "".join(line + "\n" for line in lines)


def set_tracer_flags(tracing: Tracing, mask: int, enabled: bool) -> None:
    """``set_tracer_flags()`` (3.6 trace.c), here under ``trace_types_lock``: nothing if
    the flag already is so; ``overwrite`` goes on to ``ring_buffer_change_overwrite()``.

    ``record-cmd`` goes on to ``trace_event_enable_cmd_record()``, which starts or stops
    the cmdline recording of the *enabled trace events* only: the model has none, and the
    function tracer's own recording (``tracing_start_cmdline_record()`` in
    ``function_trace_init()``, the sched_switch probe) does not look at the flag.  So in
    3.6 as here, the flag changes nothing while only the function tracer runs.
    """
    if bool(tracing.trace_flags & mask) == enabled:
        return
    if enabled:
        tracing.trace_flags |= mask
    else:
        tracing.trace_flags &= ~mask
    if mask == TRACE_ITER_OVERWRITE:
        tracing.ring_buffer.change_overwrite(enabled)


@kernel_function
def __set_tracer_option(tracer: Tracer, tracer_flags: TracerFlags, opt: TracerOpt,
                        neg: bool) -> None:
    """``__set_tracer_option()``: ``tracer``'s ``set_flag`` may refuse (its errno); then
    ``opt``'s bit changes in ``tracer_flags``, which the caller names."""
    tracer.set_flag(tracer_flags.val, opt.bit, not neg)
    if neg:
        tracer_flags.val &= ~opt.bit
    else:
        tracer_flags.val |= opt.bit


@kernel_function
def set_tracer_option(tracer: Tracer, cmp: str, neg: bool) -> None:
    """``set_tracer_option()``: a name the current tracer does not have is EINVAL."""
    for opt in tracer.flags.opts:
        if opt.name == cmp:
            __set_tracer_option(tracer, tracer.flags, opt, neg)
            return
    raise KernelError(errno.EINVAL)


@kernel_function
def tracing_trace_options_write(tracing: Tracing, data: bytes) -> int:
    """The ``trace_options`` write: fewer than 64 bytes, ``strstrip()``ped, an optional
    ``no`` prefix, then a core option's exact name or the current tracer's (EINVAL for
    anything else).  Returns the full count."""
    if len(data) >= TRACE_OPTIONS_BUF:
        raise KernelError(errno.EINVAL)
    cmp = strim(data).decode("latin-1")
    neg = cmp.startswith("no")
    if neg:
        cmp = cmp[2:]
    with tracing.trace_types_lock:
        if cmp in TRACE_OPTIONS:
            set_tracer_flags(tracing, 1 << TRACE_OPTIONS.index(cmp), not neg)
        else:
            set_tracer_option(tracing.current_trace, cmp, neg)
    return len(data)


def trace_options_value(data: bytes) -> bool:
    """What ``options/<name>`` takes: ``kstrtoul_from_user()``, then only 0 or 1."""
    val = kstrtoul_from_user(data)
    if val not in (0, 1):
        raise KernelError(errno.EINVAL)
    return bool(val)


def trace_options_core_read(tracing: Tracing, index: int) -> str:
    return "1\n" if tracing.trace_flags & (1 << index) else "0\n"


def trace_options_core_write(tracing: Tracing, index: int, data: bytes) -> None:
    """``trace_options_core_write()``."""
    val = trace_options_value(data)
    with tracing.trace_types_lock:
        set_tracer_flags(tracing, 1 << index, val)


def trace_options_read(flags: TracerFlags, opt: TracerOpt) -> str:
    """``trace_options_read()``: ``topt->flags->val & topt->opt->bit``."""
    return "1\n" if flags.val & opt.bit else "0\n"


@kernel_function
def trace_options_write(tracing: Tracing, flags: TracerFlags, opt: TracerOpt,
                        data: bytes) -> None:
    """``trace_options_write()``: an option file of a tracer, its ``topt->flags`` and
    ``topt->opt``; nothing happens if the value is already the one written, otherwise
    ``__set_tracer_option(current_trace, topt->flags, topt->opt, !val)``.

    A file kept open across a tracer switch: 3.6 frees the trace_option_dentry:
    use-after-free.  The model reads it as if the freed memory were untouched, so the
    current tracer's ``set_flag`` judges the old tracer's bit and the old tracer's flags
    change (its option takes effect when it is next set); a kernel that reused the
    memory would differ.
    """
    val = trace_options_value(data)
    if bool(flags.val & opt.bit) != val:
        with tracing.trace_types_lock:
            __set_tracer_option(tracing.current_trace, flags, opt, not val)
