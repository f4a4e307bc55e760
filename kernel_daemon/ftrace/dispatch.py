"""A CPU executing a traceable function: the ``mcount`` call site and the trampoline.

If the site's record is patched (``FTRACE_FL_ENABLED``), the call reaches
``ftrace_caller``, which calls whatever ``ftrace_call`` points at (spec §1.4): one
non-dynamic ops' function directly, with no hash test, or ``ftrace_ops_list_func``,
which tests every ops' hashes on the published list.  No lock is taken, as on a CPU;
an unpatched site costs one flag test.  After ``ftrace_kill`` patched sites reach
``ftrace_stub``.  While ``function_trace_stop`` is set (``ftrace_stop()``, which
``tracing_stop()`` calls, or a code update in progress) ``ftrace_caller`` returns at
its first test, before any callback: the function tracer's, the profiler's, the
probes' and every other ops'.  A batch of calls of a function with probes goes one
call at a time while the probes act (:func:`probed_calls`).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
from collections.abc import Iterator

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.core import Ftrace
from kernel_daemon.ftrace.ops import FtraceFunc, ftrace_stub
from kernel_daemon.ftrace.probe import probes_acted
from kernel_daemon.ftrace.records import FTRACE_FL_ENABLED, FtracePageGroup, search_ip

_cpu: contextvars.ContextVar[int] = contextvars.ContextVar("smp_processor_id", default=0)


def smp_processor_id() -> int:
    return _cpu.get()


@contextlib.contextmanager
def on_cpu(cpu: int) -> Iterator[None]:
    token = _cpu.set(cpu)
    try:
        yield
    finally:
        _cpu.reset(token)


def ftrace_location(ft: Ftrace, ip: int) -> tuple[FtracePageGroup, int] | None:
    """``ftrace_location()``: the live record at ``ip``, by binary search per group."""
    for pg in ft.pages.groups:
        ips = pg.ips
        if not len(ips) or ip < ips[0] or ip > ips[-1]:
            continue
        i = search_ip(ips, ip)
        if i < len(ips) and ips[i] == ip:
            return pg, i
    return None


def execute_function(ft: Ftrace, ip: int, parent_ip: int, count: int = 1) -> bool:
    """Run the call site at ``ip`` ``count`` times; True when the site was patched and
    the calls entered the trampoline.

    An ip with no record is code that is not there (a module that was unloaded):
    EFAULT, as a fetch from an unmapped address faults.
    """
    found = ftrace_location(ft, ip)
    if found is None:
        raise KernelError(errno.EFAULT, f"no function at {ip:#x}")
    pg, i = found
    if not int(pg.flags[i]) & FTRACE_FL_ENABLED or pg.freed:
        return False
    target = ft.trampoline_target
    if target is ftrace_stub:
        return False
    if ft.function_trace_stop:  # ftrace_caller: cmpl $0, function_trace_stop; jne ftrace_stub
        return True
    if count > 1 and ft.probes.probes_at(ip):
        count = probed_calls(target, ip, parent_ip, count)
    target(ip, parent_ip, None, count)
    return True


def probed_calls(target: FtraceFunc, ip: int, parent_ip: int, count: int) -> int:
    """Run calls of a function with probes one at a time, while its probes act; return
    how many calls are left.

    A probe changes what the calls after it do (``tracing_on``, its counter), and other
    ops see that change between two calls (the function tracer records the call before
    a ``traceoff`` probe, not the ones after it).  Once a call's probes do nothing, the
    next calls find the same state, and the rest can go as one batch.
    """
    while count > 1:
        acted = probes_acted.get()
        target(ip, parent_ip, None, 1)
        count -= 1
        if probes_acted.get() == acted:
            break
    return count
