"""Byte-exact 3.6 text of ``trace``, ``trace_pipe``, ``buffer_size_kb`` and
``buffer_total_size_kb`` (spec §3.6, §2.11)."""

from __future__ import annotations

import numpy as np
import pytest

from kernel_daemon.shm import new_namespace
from kernel_daemon.trace.buffers import (TRACE_FLAG_HARDIRQ, TRACE_FLAG_IRQS_NOSUPPORT,
                                         TRACE_FLAG_IRQS_OFF, TRACE_FLAG_NEED_RESCHED,
                                         TRACE_FLAG_SOFTIRQ, TRACE_FN, TRACE_PRINT, Event)
from kernel_daemon.trace.ring_buffer import RingBuffer
from kernel_daemon.trace.trace_options import TRACE_FLAGS_DEFAULT, TRACE_ITER_IRQ_INFO
from kernel_daemon.trace.trace_output import (buffer_size_kb, buffer_total_size_kb,
                                              format_events, format_function_line, ns2usecs,
                                              trace_header, trace_print_lat_fmt)

# The spec's 3.6.5 irq-info block, verbatim.
IRQ_INFO_BLOCK = """\
#                              _-----=> irqs-off
#                             / _----=> need-resched
#                            | / _---=> hardirq/softirq
#                            || / _--=> preempt-depth
#                            ||| /     delay
#           TASK-PID   CPU#  ||||    TIMESTAMP  FUNCTION
#              | |       |   ||||       |         |
"""

SYMBOLS = {0xFFFFFFFF81001000: "hrtimer_init", 0xFFFFFFFF81002000: "copy_process",
           0xFFFFFFFFA0000010: "uinput_release", 0xFFFFFFFF81003000: "__fput"}


def symbolize(ip: int) -> str:
    return SYMBOLS.get(ip, f"0x{ip:08x}")


def fn(ts: int, ip: int, parent_ip: int, cpu: int = 0, pid: int = 4003, comm: str = "bash",
       flags: int = 0, lost: int = 0) -> Event:
    return Event(ts, cpu, pid, comm, TRACE_FN, flags, ip, parent_ip, b"", lost)


# -- header -------------------------------------------------------------------------------

def test_function_header():
    assert trace_header("function", 310629, 766471, 8, corrupted=False) == (
        "# tracer: function\n"
        "#\n"
        "# entries-in-buffer/entries-written: 310629/766471   #P:8\n"
        "#\n" + IRQ_INFO_BLOCK)


def test_corrupted_header_puts_the_warning_before_the_entries_line():
    assert trace_header("function", 0, 0, 4, corrupted=True) == (
        "# tracer: function\n"
        "#\n"
        "# WARNING: FUNCTION TRACING IS CORRUPTED\n"
        "#          MAY BE MISSING FUNCTION EVENTS\n"
        "# entries-in-buffer/entries-written: 0/0   #P:4\n"
        "#\n" + IRQ_INFO_BLOCK)


def test_nop_header_without_irq_info():
    flags = TRACE_FLAGS_DEFAULT & ~TRACE_ITER_IRQ_INFO
    assert trace_header("nop", 1, 2, 1, corrupted=False, trace_flags=flags) == (
        "# tracer: nop\n"
        "#\n"
        "# entries-in-buffer/entries-written: 1/2   #P:1\n"
        "#\n"
        "#           TASK-PID   CPU#      TIMESTAMP  FUNCTION\n"
        "#              | |       |          |         |\n")


# -- lines --------------------------------------------------------------------------------

def test_function_line_3_6():
    line = format_function_line("bash", 4003, 0, 1480_611_794_000, "hrtimer_init", "copy_process")
    assert line == "            bash-4003  [000] ....  1480.611794: hrtimer_init <-copy_process\n"


def test_function_line_without_irq_info():
    # 3.6 keeps the space after "[%03d] " and adds " %5lu": one more than 3.2's example.
    line = format_function_line("bash", 4003, 0, 1480_611_794_000, "hrtimer_init", "copy_process",
                                irq_flags=None)
    assert line == "            bash-4003  [000]   1480.611794: hrtimer_init <-copy_process\n"


def test_function_line_without_parent_and_wide_fields():
    line = format_function_line("kworker/12:1", 123456, 17, 123_456_000_001_499, "f", None, "d.h1")
    assert line == "    kworker/12:1-123456 [017] d.h1 123456.000001: f\n"


@pytest.mark.parametrize(("ns", "text"), [
    (1480_611_793_500, " 1480.611794"),  # ns2usecs() adds 500 ns: rounds half up
    (1480_611_793_499, " 1480.611793"),
    (999_999_500, "    1.000000"),
    (0, "    0.000000"),
])
def test_timestamp_rounds_to_the_microsecond(ns, text):
    assert format_function_line("a", 1, 0, ns, "f", None).split(": ")[0].endswith(text)


def test_ns2usecs():
    assert (ns2usecs(499), ns2usecs(500), ns2usecs(1_499)) == (0, 1, 1)


@pytest.mark.parametrize(("flags", "text"), [
    (0, "...."),
    (TRACE_FLAG_IRQS_OFF, "d..."),
    (TRACE_FLAG_IRQS_NOSUPPORT, "X..."),
    (TRACE_FLAG_IRQS_OFF | TRACE_FLAG_IRQS_NOSUPPORT, "d..."),
    (TRACE_FLAG_NEED_RESCHED, ".N.."),
    (TRACE_FLAG_HARDIRQ, "..h."),
    (TRACE_FLAG_SOFTIRQ, "..s."),
    (TRACE_FLAG_HARDIRQ | TRACE_FLAG_SOFTIRQ, "..H."),
    (1 << 8, "...1"),
    (TRACE_FLAG_IRQS_OFF | 0x1F << 8, "d..1f"),
])
def test_irq_info_flags(flags, text):
    assert trace_print_lat_fmt(flags) == text


# -- format_events ------------------------------------------------------------------------

def test_events_function_and_marker_lines():
    events = [
        fn(1480_611_794_000, 0xFFFFFFFF81001000, 0xFFFFFFFF81002000),
        fn(1480_611_795_000, 0xFFFFFFFFA0000010, 0xFFFFFFFF81003000, cpu=1, pid=20903),
        fn(1480_611_796_000, 0xFFFFFFFF81001000, 0),
        Event(1480_611_797_000, 2, 20903, "bash", TRACE_PRINT, 0, 0, 0, b"hello\n"),
        Event(1480_611_798_000, 2, 20903, "bash", TRACE_PRINT, 0, 0xFFFFFFFF81001000, 0,
              b"cut\0here\n"),
    ]
    assert format_events(events, symbolize) == (
        "            bash-4003  [000] ....  1480.611794: hrtimer_init <-copy_process\n"
        "            bash-20903 [001] ....  1480.611795: uinput_release <-__fput\n"
        "            bash-4003  [000] ....  1480.611796: hrtimer_init\n"
        "            bash-20903 [002] ....  1480.611797: tracing_mark_write: hello\n"
        # "%s" stops at the NUL, newline included; a known ip is printed by name.
        "            bash-20903 [002] ....  1480.611798: hrtimer_init: cut")


def test_events_task_names_follow_trace_find_cmdline():
    events = [fn(1000, 0x10, 0, pid=0, comm="swapper/0"),
              fn(2000, 0x10, 0, pid=32768, comm="bash"),
              fn(3000, 0x10, 0, pid=32769, comm="bash")]
    lines = format_events(events, symbolize).splitlines()
    assert [line[:23] for line in lines] == ["          <idle>-0     ",
                                             "            bash-32768 ",
                                             "           <...>-32769 "]
    assert lines[0].endswith(": 0x00000010")


def test_symbolize_called_once_per_distinct_ip_and_never_for_zero():
    calls: list[int] = []

    def counting(ip: int) -> str:
        calls.append(ip)
        return "f"

    format_events([fn(i, 0x10 + i % 2, i % 3) for i in range(100)], counting)
    assert sorted(calls) == [1, 2, 0x10, 0x11]


def test_lost_events_line_precedes_the_event():
    text = format_events([fn(1000, 0x10, 0, cpu=3, lost=42)], symbolize)
    assert text == ("CPU:3 [LOST 42 EVENTS]\n"
                    "            bash-4003  [003] ....     0.000001: 0x00000010\n")


def test_annotation_skips_the_first_two_entries():
    events = [fn(1, 0x10, 0, cpu=0), fn(2, 0x10, 0, cpu=1), fn(3, 0x10, 0, cpu=0),
              fn(4, 0x10, 0, cpu=2), fn(5, 0x10, 0, cpu=2)]
    lines = format_events(events, symbolize, annotate=True).splitlines()
    assert [line for line in lines if line.startswith("#")] == ["##### CPU 2 buffer started ####"]
    assert lines[3] == "##### CPU 2 buffer started ####"
    assert "#####" not in format_events(events, symbolize)


def test_formats_a_hundred_thousand_events():
    events = [fn(i * 1000, 0xFFFFFFFF81001000 + (i % 500) * 16, 0xFFFFFFFF81002000, cpu=i % 4)
              for i in range(100_000)]
    text = format_events(events, symbolize)
    assert text.count("\n") == 100_000


# -- buffer_size_kb / buffer_total_size_kb --------------------------------------------------

def test_buffer_size_files():
    assert buffer_size_kb([8160] * 4, expanded=False) == "7 (expanded: 1408)\n"
    assert buffer_size_kb([1441792] * 2, expanded=True) == "1408\n"
    assert buffer_size_kb([4 << 10], expanded=True) == "4\n"
    assert buffer_total_size_kb([8160] * 4, expanded=False) == "28 (expanded: 5632)\n"
    assert buffer_total_size_kb([1441792] * 4, expanded=True) == "5632\n"
    # Per-CPU sizes: X when they differ; each CPU's KB summed (each shifted on its own).
    assert buffer_size_kb([4 << 10, 8 << 10], expanded=True) == "X\n"
    assert buffer_total_size_kb([4 << 10, 8 << 10, 1500], expanded=True) == "13\n"
    # tracing_entries_read() refills the size it compares with while it is 0.
    assert buffer_size_kb([0, 0, 8 << 10], expanded=True) == "8\n"
    assert buffer_size_kb([8 << 10, 0], expanded=True) == "X\n"


# -- end to end -----------------------------------------------------------------------------

def test_trace_file_from_a_flooded_ring_buffer():
    rb = RingBuffer(new_namespace(), nr_cpus=2)
    try:
        stamps = np.arange(1, 201, dtype=np.uint64) * 1000
        rb.write_function_events(1, stamps, 20903, "bash", np.full(200, 0xFFFFFFFFA0000010),
                                 np.full(200, 0xFFFFFFFF81003000))
        rb.write_marker(0, 300_000, 20903, "bash", "done")
        snap = rb.snapshot()
        text = (trace_header("function", snap.entries_in_buffer, snap.entries_written,
                             rb.nr_cpus, corrupted=False)
                + format_events(snap.events, symbolize, annotate=rb.overruns() > 0))
        lines = text.splitlines()
        assert lines[2] == "# entries-in-buffer/entries-written: 128/201   #P:2"
        task = "            bash-20903"
        assert lines[11] == f"{task} [001] ....     0.000074: uinput_release <-__fput"
        assert lines[-3] == f"{task} [001] ....     0.000200: uinput_release <-__fput"
        # CPU 0's first entry is the 128th, so it is annotated (the buffers had overruns).
        assert lines[-2:] == ["##### CPU 0 buffer started ####",
                              f"{task} [000] ....     0.000300: tracing_mark_write: done"]
        assert text.endswith("done\n")
    finally:
        rb.destroy()
