"""The function tracer: ``kernel/trace/trace_functions.c`` (3.6).

Its ops, ``trace_ops``, is GLOBAL: it traces through ``global_ops``' hashes, the ones
``set_ftrace_filter`` / ``set_ftrace_notrace`` edit.  Like the kernel, init and reset
ignore what register/unregister return, so ``echo function > current_tracer``
succeeds on a dead ftrace (spec §2.4, §2.11).

The same file registers the ``traceon`` / ``traceoff`` commands of ``set_ftrace_filter``
(spec §3.3.5): ``<func-glob>:traceoff[:<count>]`` puts a function probe on every
matching function that turns tracing off when hit, whichever tracer is current.
"""

from __future__ import annotations

import contextvars
import errno
from collections.abc import Callable

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.core import Ftrace
from kernel_daemon.ftrace.dispatch import smp_processor_id
from kernel_daemon.ftrace.filter import register_ftrace_command
from kernel_daemon.ftrace.hash import FtraceHash
from kernel_daemon.ftrace.ops import FTRACE_OPS_FL_GLOBAL, FtraceOps
from kernel_daemon.ftrace.probe import (FtraceFuncProbe, FtraceProbeOps,
                                        register_ftrace_function_probe,
                                        unregister_ftrace_function_probe_func)
from kernel_daemon.ftrace.register import register_ftrace_function, unregister_ftrace_function
from kernel_daemon.strings import kstrtoul
from kernel_daemon.trace.saved_cmdlines import SavedCmdlines
from kernel_daemon.trace.trace_options import (TRACE_FUNC_OPT_PSTORE, TRACE_FUNC_OPT_STACK,
                                               TracerFlags, TracerOpt)
from kernel_daemon.trace.tracers import Tracing
from kernel_daemon.unwind import kernel_function

# function_trace_call(ip, parent_ip, op, count): where the events go is the ring
# buffer's business; the tracer is handed a sink.
TraceSink = Callable[[int, int, int], None]
# function_stack_trace_call's: (ip, parent_ip, count, the stack's frames).
StackTraceSink = Callable[[int, int, int, tuple[int, ...]], None]

#: The return addresses above the parent's on the stack of the call being executed,
#: innermost first: each inside a caller of the parent, just after its call to the
#: frame below (an Invoke's ``callers``). The model has no real stack to walk: this is
#: the caller's description of it, set for the call (not :mod:`kernel_daemon.unwind`,
#: which is the model's own kernel-function stack, for ``dump_stack()``).
callers_stack: contextvars.ContextVar[tuple[int, ...]] = contextvars.ContextVar(
    "callers_stack", default=())


def call_stack(parent_ip: int) -> tuple[int, ...]:
    """The frames ``save_stack_trace()`` finds for a traced call, innermost first.

    The model's choice, unverified against 3.6: the stack starts at the traced
    function's return address (``parent_ip``, the address the line's ``<-`` names), then
    the parent's callers' (:data:`callers_stack`). 3.6 skips 5 frames, its comment
    counting ``ftrace_list_func``, which a lone ops' call does not pass through
    (``ftrace_caller`` calls it directly), so which frame a live 3.6 shows first is not
    settled here; the model has none of the tracer's frames, and starts where the call
    came from, the one frame every caller can name. No parent (``parent_ip`` 0): no
    frame at all.
    """
    return (parent_ip, *callers_stack.get()) if parent_ip else ()


class FunctionTracer:
    """``struct tracer function_trace``."""

    name = "function"

    def __init__(self, ft: Ftrace, sink: TraceSink, stack_sink: StackTraceSink,
                 tracing: Tracing, cmdlines: SavedCmdlines) -> None:
        self.ft = ft
        self.tracing = tracing
        self.cmdlines = cmdlines

        def function_trace_call(ip: int, parent_ip: int, op: FtraceOps | None,
                                count: int = 1) -> None:
            """``function_trace_call()``: one event per call, ``count`` calls at once.
            3.6 first returns while ``ftrace_function_enabled`` is 0 (around the
            register and from before the unregister); the model has no such flag."""
            sink(ip, parent_ip, count)

        def function_stack_trace_call(ip: int, parent_ip: int, op: FtraceOps | None,
                                      count: int = 1) -> None:
            """``function_stack_trace_call()``: for each call, ``trace_function()`` then
            ``__trace_stack(tr, flags, 5, pc)``, the stack event after the function's
            (:func:`call_stack` says which frames); ``count`` calls at once."""
            stack_sink(ip, parent_ip, count, call_stack(parent_ip))

        self.trace_ops = FtraceOps("trace_ops", func=function_trace_call,
                                   flags=FTRACE_OPS_FL_GLOBAL, core_data=True)
        self.trace_stack_ops = FtraceOps("trace_stack_ops", func=function_stack_trace_call,
                                         flags=FTRACE_OPS_FL_GLOBAL, core_data=True)
        # func_flags: func_stack_trace, off.
        self.flags = TracerFlags(0, (TracerOpt("func_stack_trace", TRACE_FUNC_OPT_STACK),))

    def registered_ops(self) -> FtraceOps:
        """The ops the tracer runs with: trace_stack_ops while func_stack_trace is set."""
        return self.trace_stack_ops if self.flags.val & TRACE_FUNC_OPT_STACK else self.trace_ops

    @kernel_function
    def func_set_flag(self, old_flags: int, bit: int, set: bool) -> None:
        """``func_set_flag()``: ``func_stack_trace`` is the only option; the
        ``TRACE_FUNC_OPT_PSTORE`` bit is accepted and does nothing (its option is
        CONFIG_PSTORE_FTRACE's, not modelled), any other bit is EINVAL.  A change swaps
        ``trace_ops`` and ``trace_stack_ops``: unregister one, register the other, so a
        disable and an enable pass run over the records (the disable pass WARNs in the
        buggy kernel, as ``echo nop > current_tracer`` would)."""
        if bit == TRACE_FUNC_OPT_PSTORE:
            return
        if bit != TRACE_FUNC_OPT_STACK:
            raise KernelError(errno.EINVAL)
        if set == bool(self.flags.val & TRACE_FUNC_OPT_STACK):
            return  # already so
        old, new = ((self.trace_ops, self.trace_stack_ops) if set
                    else (self.trace_stack_ops, self.trace_ops))
        ignoring_errors(unregister_ftrace_function, self.ft, old)
        ignoring_errors(register_ftrace_function, self.ft, new)

    @kernel_function
    def function_trace_init(self) -> None:
        """``function_trace_init()``: ``tr->cpu = get_cpu()`` (the CPU the latency header
        names), cmdline recording, then the ops."""
        self.tracing.cpu = smp_processor_id()
        self.cmdlines.tracing_start_cmdline_record()
        self.tracing_start_function_trace()

    @kernel_function
    def function_trace_reset(self) -> None:
        """``function_trace_reset()``: the ops unregistered, then cmdline recording
        stopped; as 3.6."""
        self.tracing_stop_function_trace()
        self.cmdlines.tracing_stop_cmdline_record()

    @kernel_function
    def function_trace_start(self) -> None:
        """``function_trace_start()``, its ``start``: ``echo 1 > tracing_enabled`` clears
        every CPU's buffer (``tracing_reset_online_cpus()``)."""
        self.tracing.tracing_reset_online_cpus()

    @kernel_function
    def tracing_start_function_trace(self) -> None:
        """``tracing_start_function_trace()``: register ``trace_ops`` (or the stack
        variant), its result ignored.  3.6 sets ``ftrace_function_enabled`` to 0 before
        and to 1 after; the model has no such flag (``function_trace_call``)."""
        ignoring_errors(register_ftrace_function, self.ft, self.registered_ops())

    @kernel_function
    def tracing_stop_function_trace(self) -> None:
        """``tracing_stop_function_trace()``: unregister the ops, its result ignored.
        3.6 sets ``ftrace_function_enabled`` to 0 first; the model has no such flag."""
        ignoring_errors(unregister_ftrace_function, self.ft, self.registered_ops())

    init = function_trace_init
    reset = function_trace_reset
    start = function_trace_start
    stop = None  # function_trace has no .stop
    set_flag = func_set_flag


def ignoring_errors(call: Callable[[Ftrace, FtraceOps], None], ft: Ftrace,
                    ops: FtraceOps) -> None:
    """(Un)register ``ops`` as the function tracer does: whatever it returns is ignored
    (spec §2.4, §2.11)."""
    try:
        call(ft, ops)
    except KernelError:
        pass


def to_long(value: int) -> int:
    """``value`` as a C ``long`` (64-bit, two's complement) holds it."""
    return (value + (1 << 63)) % (1 << 64) - (1 << 63)


def use_count(entry: FtraceFuncProbe) -> bool:
    """The counter traceon and traceoff keep in their data: 0 is spent, -1 unlimited,
    anything else goes down by one.  False when spent."""
    if not entry.data:
        return False
    if entry.data != -1:
        entry.data = to_long(entry.data - 1)
    return True


class TraceOnOffCommands:
    """The ``traceon`` / ``traceoff`` commands: their probe ops and the callback
    ``set_ftrace_filter`` runs for them.  The probes switch this kernel's buffer."""

    def __init__(self, ft: Ftrace, tracing: Tracing) -> None:
        self.ft = ft
        self.tracing = tracing
        self.traceon_probe_ops = FtraceProbeOps(self.ftrace_traceon,
                                                self.ftrace_trace_onoff_print)
        self.traceoff_probe_ops = FtraceProbeOps(self.ftrace_traceoff,
                                                 self.ftrace_trace_onoff_print)

    def ftrace_traceon(self, ip: int, parent_ip: int, entry: FtraceFuncProbe) -> bool:
        """``ftrace_traceon()``: tracing back on, if it is off and the count allows."""
        if self.tracing.tracing_is_on() or not use_count(entry):
            return False
        self.tracing.tracing_on()
        return True

    def ftrace_traceoff(self, ip: int, parent_ip: int, entry: FtraceFuncProbe) -> bool:
        """``ftrace_traceoff()``: tracing off, if it is on and the count allows."""
        if not self.tracing.tracing_is_on() or not use_count(entry):
            return False
        self.tracing.tracing_off()
        return True

    def ftrace_trace_onoff_print(self, ip: int, ops: FtraceProbeOps, data: int) -> str:
        """``ftrace_trace_onoff_print()``: ``<func>:traceon`` or ``<func>:traceoff``, then
        ``:unlimited`` or ``:count=<what is left>``."""
        command = "traceon" if ops is self.traceon_probe_ops else "traceoff"
        count = "unlimited" if data == -1 else f"count={data}"
        return f"{self.ft.sprint_symbol_no_offset(ip)}:{command}:{count}\n"

    def probe_ops(self, cmd: str) -> FtraceProbeOps:
        # Both commands share the callback, which tells them apart by name.
        return self.traceon_probe_ops if cmd == "traceon" else self.traceoff_probe_ops

    @kernel_function
    def ftrace_trace_onoff_unreg(self, glob: str, cmd: str, param: str | None) -> None:
        """``ftrace_trace_onoff_unreg()``: the command's probes on ``glob`` go, whatever
        their count; it always succeeds."""
        unregister_ftrace_function_probe_func(self.ft, glob, self.probe_ops(cmd))

    @kernel_function
    def ftrace_trace_onoff_callback(self, ft: Ftrace, hash: FtraceHash, glob: str, cmd: str,
                                    param: str | None, enable: bool) -> None:
        """``ftrace_trace_onoff_callback()``: ``<glob>:<cmd>[:<count>]`` registers probes,
        ``!<glob>:<cmd>`` unregisters them.

        Probes are no filter: ``hash`` is left alone, and ``set_ftrace_notrace``
        refuses the commands (EINVAL).  The count is read by ``strict_strtoul`` in base
        0 (EINVAL, or ERANGE, for a bad one); no count, or an empty one, is unlimited.
        A glob that names no function registers nothing and still succeeds.
        """
        if not enable:
            raise KernelError(errno.EINVAL)
        if glob.startswith("!"):
            self.ftrace_trace_onoff_unreg(glob[1:], cmd, param)
            return
        count = -1
        if param is not None:
            number = param.split(":", 1)[0]
            if number:
                # The count lives in the probe's void *data: a long.
                count = to_long(kstrtoul(number.encode("latin-1"), 0))
        register_ftrace_function_probe(ft, glob, self.probe_ops(cmd), count)

    def init_func_cmd_traceon(self) -> None:
        """``init_func_cmd_traceon()``, from the initcall ``init_function_trace()``."""
        register_ftrace_command(self.ft, "traceoff", self.ftrace_trace_onoff_callback)
        register_ftrace_command(self.ft, "traceon", self.ftrace_trace_onoff_callback)
