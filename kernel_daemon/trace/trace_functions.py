"""The function tracer: ``kernel/trace/trace_functions.c`` (3.6).

Its ops, ``trace_ops``, is GLOBAL: it traces through ``global_ops``' hashes, the ones
``set_ftrace_filter`` / ``set_ftrace_notrace`` edit.  Like the kernel, init and reset
ignore what register/unregister return, so ``echo function > current_tracer``
succeeds on a dead ftrace (spec §2.4, §2.11).
"""

from __future__ import annotations

from collections.abc import Callable

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.core import Ftrace
from kernel_daemon.ftrace.ops import FTRACE_OPS_FL_GLOBAL, FtraceOps
from kernel_daemon.ftrace.register import register_ftrace_function, unregister_ftrace_function
from kernel_daemon.unwind import kernel_function

# function_trace_call(ip, parent_ip, op, count): where the events go is the ring
# buffer's business; the tracer is handed a sink.
TraceSink = Callable[[int, int, int], None]


class FunctionTracer:
    """``struct tracer function_trace``."""

    name = "function"

    def __init__(self, ft: Ftrace, sink: TraceSink) -> None:
        self.ft = ft

        def function_trace_call(ip: int, parent_ip: int, op: FtraceOps | None,
                                count: int = 1) -> None:
            sink(ip, parent_ip, count)

        self.trace_ops = FtraceOps("trace_ops", func=function_trace_call,
                                   flags=FTRACE_OPS_FL_GLOBAL, core_data=True)

    @kernel_function
    def function_trace_init(self) -> None:
        self.tracing_start_function_trace()

    @kernel_function
    def function_trace_reset(self) -> None:
        self.tracing_stop_function_trace()

    @kernel_function
    def tracing_start_function_trace(self) -> None:
        try:
            register_ftrace_function(self.ft, self.trace_ops)
        except KernelError:
            pass  # ignored, as in the kernel

    @kernel_function
    def tracing_stop_function_trace(self) -> None:
        try:
            unregister_ftrace_function(self.ft, self.trace_ops)
        except KernelError:
            pass

    init = function_trace_init
    reset = function_trace_reset
