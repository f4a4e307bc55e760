"""The header ``trace`` prints before its first entry, byte for byte as 3.6 prints it.

Counterparts in ``kernel/trace/trace.c`` (3.6): ``s_show()`` (``# tracer:``),
``test_ftrace_alive()``, ``trace_default_header()``, ``print_event_info()``,
``print_func_help_header[_irq]()``, and, when the file was opened with ``latency-format``
(``TRACE_FILE_LAT_FMT``), ``print_trace_header()`` and ``print_lat_help_header()``.
``trace_pipe`` prints no header.
"""

from __future__ import annotations

from typing import NamedTuple

from kernel_daemon.trace.trace_options import (TRACE_FLAGS_DEFAULT, TRACE_ITER_CONTEXT_INFO,
                                               TRACE_ITER_IRQ_INFO, TRACE_ITER_VERBOSE)

# print_trace_header()'s "M:" field, from the preemption model.  The report's kernel does
# not say; CONFIG_PREEMPT_VOLUNTARY ("desktop") is the model's choice, the distributions'
# one for 3.6-era kernels.
PREEMPT_MODEL = "desktop"

_CORRUPTED = ("# WARNING: FUNCTION TRACING IS CORRUPTED\n"
              "#          MAY BE MISSING FUNCTION EVENTS\n")
_HELP_IRQ = ("#                              _-----=> irqs-off\n"
             "#                             / _----=> need-resched\n"
             "#                            | / _---=> hardirq/softirq\n"
             "#                            || / _--=> preempt-depth\n"
             "#                            ||| /     delay\n"
             "#           TASK-PID   CPU#  ||||    TIMESTAMP  FUNCTION\n"
             "#              | |       |   ||||       |         |\n")
_HELP = ("#           TASK-PID   CPU#      TIMESTAMP  FUNCTION\n"
         "#              | |       |          |         |\n")
# print_lat_help_header(), trailing blanks included (the "delay" line has one more).
_LAT_HELP = ("#                  _------=> CPU#            \n"
             "#                 / _-----=> irqs-off        \n"
             "#                | / _----=> need-resched    \n"
             "#                || / _---=> hardirq/softirq \n"
             "#                ||| / _--=> preempt-depth   \n"
             "#                |||| /     delay             \n"
             "#  cmd     pid   ||||| time  |   caller      \n"
             "#     \\   /      |||||  \\    |   /           \n")


class LatencyHeader(NamedTuple):
    """What ``print_trace_header()`` reads besides the entry counts, for a ``trace`` opened
    with ``latency-format``: ``UTS_RELEASE``, ``tr->cpu`` (the CPU the function tracer's
    init ran on) and whether ``trace_empty()``."""

    release: str
    cpu: int
    empty: bool


def print_trace_header(tracer_name: str, entries: int, total: int, nr_cpus: int,
                       latency: LatencyHeader) -> str:
    """``print_trace_header()`` for the function and nop tracers.

    ``data = tr->data[tr->cpu]`` is ``global_trace``'s per-CPU data, which only the
    latency tracers' ``__update_max_tr()`` fills (into ``max_tr``): its ``saved_latency``,
    task fields and ``critical_start`` are all zero here, so the task line reads
    ``-0`` and the ``=> started at`` lines are not printed.  SMP: `` #P:%d)``.
    """
    return (f"# {tracer_name} latency trace v1.1.5 on {latency.release}\n"
            f"# {'-' * 68}\n"
            f"# latency: 0 us, #{entries}/{total}, CPU#{latency.cpu} | (M:{PREEMPT_MODEL}"
            f" VP:0, KP:0, SP:0 HP:0 #P:{nr_cpus})\n"
            "#    -----------------\n"
            "#    | task: -0 (uid:0 nice:0 policy:0 rt_prio:0)\n"
            "#    -----------------\n"
            "#\n")


def trace_header(tracer_name: str, entries_in_buffer: int, entries_written: int, nr_cpus: int,
                 corrupted: bool, trace_flags: int = TRACE_FLAGS_DEFAULT,
                 latency: LatencyHeader | None = None) -> str:
    """The header ``s_show()`` prints before the first entry of ``trace``.

    ``corrupted`` (``ftrace_is_dead()``) puts the two WARNING lines right after
    ``# tracer:`` and ``#``.  ``trace_default_header()`` prints the rest only with
    ``context-info``.  Then, for a file opened with ``latency-format`` (``latency`` given):
    nothing if the buffers are empty, else ``print_trace_header()`` and, unless
    ``verbose``, ``print_lat_help_header()``; otherwise, unless ``verbose``, the entries
    line and the column help (``print_func_help_header[_irq]``, as ``irq-info`` says).
    """
    text = f"# tracer: {tracer_name}\n#\n" + (_CORRUPTED if corrupted else "")
    if not trace_flags & TRACE_ITER_CONTEXT_INFO:
        return text
    verbose = trace_flags & TRACE_ITER_VERBOSE
    if latency is not None:
        if latency.empty:
            return text
        return (text + print_trace_header(tracer_name, entries_in_buffer, entries_written,
                                          nr_cpus, latency)
                + ("" if verbose else _LAT_HELP))
    if verbose:
        return text
    return (text + f"# entries-in-buffer/entries-written: {entries_in_buffer}/{entries_written}"
                   f"   #P:{nr_cpus}\n#\n"
            + (_HELP_IRQ if trace_flags & TRACE_ITER_IRQ_INFO else _HELP))
