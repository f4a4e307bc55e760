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
from kernel_daemon.trace.trace_headers import LatencyHeader, trace_header
from kernel_daemon.trace.trace_options import (TRACE_FLAGS_DEFAULT, TRACE_ITER_BIN,
                                               TRACE_ITER_CONTEXT_INFO, TRACE_ITER_HEX,
                                               TRACE_ITER_IRQ_INFO, TRACE_ITER_PRINTK_MSGONLY,
                                               TRACE_ITER_RAW, TRACE_ITER_VERBOSE)
from kernel_daemon.trace.trace_output import (buffer_size_kb, buffer_total_size_kb,
                                              format_events, ns2usecs,
                                              trace_bytes, trace_print_lat_fmt)

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

# A marker's ip is in tracing_mark_write().
MARK_IP = 0xFFFFFFFF810C0000
SYMBOLS = {0xFFFFFFFF81001000: "hrtimer_init", 0xFFFFFFFF81002000: "copy_process",
           0xFFFFFFFFA0000010: "uinput_release", 0xFFFFFFFF81003000: "__fput",
           MARK_IP: "tracing_mark_write"}


# saved_cmdlines as the trace files look it up.
CMDLINES = {4003: "bash", 20903: "bash"}


def symbolize(ip: int) -> str:
    return SYMBOLS.get(ip, f"0x{ip:08x}")


def fn(ts: int, ip: int, parent_ip: int, cpu: int = 0, pid: int = 4003, flags: int = 0,
       lost: int = 0) -> Event:
    return Event(ts, cpu, pid, TRACE_FN, flags, ip, parent_ip, b"", lost)


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

def function_line(comm: str, pid: int, cpu: int, ts: int, parent_ip: int, flags: int = 0,
                  trace_flags: int = TRACE_FLAGS_DEFAULT) -> str:
    """The ``trace`` line of one function event of hrtimer_init, as the trace files print it."""
    return format_events([fn(ts, 0xFFFFFFFF81001000, parent_ip, cpu, pid, flags)], symbolize,
                         {pid: comm}, trace_flags=trace_flags)


def test_function_line_3_6():
    line = function_line("bash", 4003, 0, 1480_611_794_000, 0xFFFFFFFF81002000)
    assert line == "            bash-4003  [000] ....  1480.611794: hrtimer_init <-copy_process\n"


def test_function_line_without_irq_info():
    # 3.6 keeps the space after "[%03d] " and adds " %5lu": one more than 3.2's example.
    line = function_line("bash", 4003, 0, 1480_611_794_000, 0xFFFFFFFF81002000,
                         trace_flags=TRACE_FLAGS_DEFAULT & ~TRACE_ITER_IRQ_INFO)
    assert line == "            bash-4003  [000]   1480.611794: hrtimer_init <-copy_process\n"


def test_function_line_without_parent_and_wide_fields():
    # A pid above PID_MAX_DEFAULT has no saved comm: trace_find_cmdline() gives "<...>".
    line = function_line("kworker/12:1", 123456, 17, 123_456_000_001_499, 0,
                         TRACE_FLAG_IRQS_OFF | TRACE_FLAG_HARDIRQ | 1 << 8)
    assert line == "           <...>-123456 [017] d.h1 123456.000001: hrtimer_init\n"


@pytest.mark.parametrize(("ns", "text"), [
    (1480_611_793_500, " 1480.611794"),  # ns2usecs() adds 500 ns: rounds half up
    (1480_611_793_499, " 1480.611793"),
    (999_999_500, "    1.000000"),
    (0, "    0.000000"),
])
def test_timestamp_rounds_to_the_microsecond(ns, text):
    assert function_line("a", 1, 0, ns, 0).split(": ")[0].endswith(text)


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
        Event(1480_611_797_000, 2, 20903, TRACE_PRINT, 0, MARK_IP, 0, b"hello\n"),
        Event(1480_611_798_000, 2, 20903, TRACE_PRINT, 0, 0xFFFFFFFF81001000, 0, b"cut\0here\n"),
    ]
    assert format_events(events, symbolize, CMDLINES) == (
        "            bash-4003  [000] ....  1480.611794: hrtimer_init <-copy_process\n"
        "            bash-20903 [001] ....  1480.611795: uinput_release <-__fput\n"
        "            bash-4003  [000] ....  1480.611796: hrtimer_init\n"
        "            bash-20903 [002] ....  1480.611797: tracing_mark_write: hello\n"
        # "%s" stops at the NUL, newline included; a known ip is printed by name.
        "            bash-20903 [002] ....  1480.611798: hrtimer_init: cut")


def test_events_task_names_are_looked_up_when_printed():
    # An entry holds no comm: the name is trace_find_cmdline(entry->pid), the table's now.
    events = [fn(1000, 0x10, 0, pid=0),
              fn(2000, 0x10, 0, pid=32768),
              fn(3000, 0x10, 0, pid=32769),
              fn(4000, 0x10, 0, pid=1000),
              fn(5000, 0x10, 0, pid=1001)]
    cmdlines = {32768: "bash", 32769: "bash", 1001: "new-name"}
    lines = format_events(events, symbolize, cmdlines).splitlines()
    assert [line[:23] for line in lines] == ["          <idle>-0     ",  # pid 0, never saved
                                             "            bash-32768 ",  # PID_MAX_DEFAULT
                                             "           <...>-32769 ",  # above: no slot
                                             "           <...>-1000  ",  # not saved (now)
                                             "        new-name-1001  "]  # the slot's comm now
    assert lines[0].endswith(": 0x00000010")


def test_symbolize_called_once_per_distinct_ip_and_never_for_zero():
    calls: list[int] = []

    def counting(ip: int) -> str:
        calls.append(ip)
        return "f"

    format_events([fn(i, 0x10 + i % 2, i % 3) for i in range(100)], counting, CMDLINES)
    assert sorted(calls) == [1, 2, 0x10, 0x11]


def test_lost_events_line_precedes_the_event():
    text = format_events([fn(1000, 0x10, 0, cpu=3, lost=42)], symbolize, CMDLINES)
    assert text == ("CPU:3 [LOST 42 EVENTS]\n"
                    "            bash-4003  [003] ....     0.000001: 0x00000010\n")


def test_annotation_skips_the_first_two_entries():
    events = [fn(1, 0x10, 0, cpu=0), fn(2, 0x10, 0, cpu=1), fn(3, 0x10, 0, cpu=0),
              fn(4, 0x10, 0, cpu=2), fn(5, 0x10, 0, cpu=2)]
    lines = format_events(events, symbolize, CMDLINES, annotate=True).splitlines()
    assert [line for line in lines if line.startswith("#")] == ["##### CPU 2 buffer started ####"]
    assert lines[3] == "##### CPU 2 buffer started ####"
    assert "#####" not in format_events(events, symbolize, CMDLINES)


def test_formats_a_hundred_thousand_events():
    events = [fn(i * 1000, 0xFFFFFFFF81001000 + (i % 500) * 16, 0xFFFFFFFF81002000, cpu=i % 4)
              for i in range(100_000)]
    text = format_events(events, symbolize, CMDLINES)
    assert text.count("\n") == 100_000


# -- raw, hex, bin (print_raw_fmt, print_hex_fmt, print_bin_fmt) ---------------------------

FN = fn(1480_611_794_123, 0xFFFFFFFF81001000, 0xFFFFFFFF81002000, cpu=1, pid=4003,
        flags=TRACE_FLAG_IRQS_OFF | 2 << 8)
MARK = Event(1480_611_797_456, 2, 20903, TRACE_PRINT, 0, MARK_IP, 0, b"hello\n")


def formatted(flags: int, *events: Event) -> bytes:
    return trace_bytes(format_events(list(events), symbolize, CMDLINES, trace_flags=flags))


def test_raw_lines():
    # print_raw_fmt(): "%d %d %llu " of pid, cpu and the ns; trace_fn_raw()'s "%lx %lx\n";
    # trace_print_raw()'s "# %lx %s" (the marker's ip is the model's 0).
    raw = TRACE_FLAGS_DEFAULT | TRACE_ITER_RAW
    assert formatted(raw, FN, MARK) == (
        f"4003 1 {FN.ts} ffffffff81001000 ffffffff81002000\n"
        f"20903 2 {MARK.ts} # {MARK_IP:x} hello\n").encode()
    assert formatted(raw & ~TRACE_ITER_CONTEXT_INFO, FN) == (
        b"ffffffff81001000 ffffffff81002000\n")


def test_hex_lines():
    # Every field as trace_seq_putmem_hex() prints it: most significant byte first, two
    # lowercase digits a byte, a blank; then print_hex_fmt()'s newline.  A marker has no
    # hex function: trace_nop_print()'s "type: 5\n", then the newline.
    hex_ = TRACE_FLAGS_DEFAULT | TRACE_ITER_HEX
    assert formatted(hex_, FN, MARK) == (
        f"00000fa3 00000001 {FN.ts.to_bytes(8, 'big').hex()} "
        "ffffffff81001000 ffffffff81002000 \n"
        f"000051a7 00000002 {MARK.ts.to_bytes(8, 'big').hex()} type: 5\n\n").encode()
    assert formatted(hex_ & ~TRACE_ITER_CONTEXT_INFO, FN) == (
        b"ffffffff81001000 ffffffff81002000 \n")


def test_bin_entries_are_the_native_fields():
    # SEQ_PUT_FIELD_RET(): int pid, int cpu, u64 ts, unsigned long ip and parent_ip, in
    # x86_64's byte order, nothing between them and no newline.
    bin_ = TRACE_FLAGS_DEFAULT | TRACE_ITER_BIN
    ip = bytes.fromhex("00100081ffffffff")
    parent_ip = bytes.fromhex("00200081ffffffff")
    fn_entry = (bytes.fromhex("a30f0000") + bytes.fromhex("01000000")
                + FN.ts.to_bytes(8, "little") + ip + parent_ip)
    marker_entry = (bytes.fromhex("a7510000") + bytes.fromhex("02000000")
                    + MARK.ts.to_bytes(8, "little") + b"type: 5\n")
    assert formatted(bin_, FN, MARK) == fn_entry + marker_entry
    assert formatted(bin_ & ~TRACE_ITER_CONTEXT_INFO, FN) == ip + parent_ip
    # The LOST line is text whatever the format.
    lost = FN._replace(lost_events=42)
    assert formatted(bin_, lost) == b"CPU:1 [LOST 42 EVENTS]\n" + fn_entry


def test_print_trace_line_dispatch_order():
    everything = TRACE_FLAGS_DEFAULT | TRACE_ITER_BIN | TRACE_ITER_HEX | TRACE_ITER_RAW
    assert formatted(everything, FN) == formatted(TRACE_FLAGS_DEFAULT | TRACE_ITER_BIN, FN)
    assert formatted(everything & ~TRACE_ITER_BIN, FN) == formatted(
        TRACE_FLAGS_DEFAULT | TRACE_ITER_HEX, FN)
    # printk-msg-only (with trace_printk, a default) comes before all of them, for markers.
    msg_only = everything | TRACE_ITER_PRINTK_MSGONLY
    assert formatted(msg_only, MARK) == b"hello\n"


# -- latency-format (TRACE_FILE_LAT_FMT) ------------------------------------------------------

LAT_EVENTS = [fn(1_000_000_000, 0xFFFFFFFF81001000, 0xFFFFFFFF81002000),
              fn(1_000_001_600, 0xFFFFFFFF81001000, 0xFFFFFFFF81002000, cpu=17, pid=12345,
                 flags=TRACE_FLAG_IRQS_OFF | 1 << 8),
              fn(1_000_200_000, 0x10, 0, pid=0)]
LAT_CMDLINES = {4003: "bash", 12345: "kworker/12:1"}
TIME_START = 500_000_000


def test_latency_lines():
    # trace_print_lat_context(): "%8.8s-%-5d %3d", the irq-info flags, then µs since
    # time_start and a mark for the gap to the next entry: "+" above 1 µs, "!" above 100.
    text = format_events(LAT_EVENTS, symbolize, LAT_CMDLINES, lat_fmt=True,
                         time_start=TIME_START)
    assert text == (
        "    bash-4003    0.... 500000us+: hrtimer_init <-copy_process\n"
        "kworker/-12345  17d..1 500002us!: hrtimer_init <-copy_process\n"
        "  <idle>-0       0.... 500200us : 0x00000010\n")


@pytest.mark.parametrize(("gap_us", "mark"), [(1, " "), (2, "+"), (100, "+"), (101, "!")])
def test_latency_mark_is_for_a_gap_above_its_threshold(gap_us, mark):
    # lat_print_timestamp(): rel_usecs > preempt_mark_thresh (100) '!', rel_usecs > 1 '+'.
    events = [fn(TIME_START, 0x10, 0), fn(TIME_START + gap_us * 1000, 0x10, 0)]
    text = format_events(events, symbolize, LAT_CMDLINES, lat_fmt=True, time_start=TIME_START)
    assert text.splitlines()[0] == f"    bash-4003    0....    0us{mark}: 0x00000010"


def test_latency_lines_verbose():
    # "%16s %5d %3d %d %08x %08lx [%08llx] %ld.%03ldms (+%ld.%03ldms): ": comm, pid, cpu,
    # entry flags, preempt count, iter->idx, the time in µs, since time_start, to the next.
    text = format_events(LAT_EVENTS[:2], symbolize, LAT_CMDLINES, lat_fmt=True,
                         time_start=TIME_START,
                         trace_flags=TRACE_FLAGS_DEFAULT | TRACE_ITER_VERBOSE)
    assert text == (
        "            bash  4003   0 0 00000000 00000000 [000f4240] 500.000ms (+0.002ms): "
        "hrtimer_init <-copy_process\n"
        "    kworker/12:1 12345  17 1 00000001 00000001 [000f4242] 500.002ms (+0.000ms): "
        "hrtimer_init <-copy_process\n")


def test_latency_time_before_time_start_wraps_as_the_kernel_computes_it():
    # u64 arithmetic: an entry older than time_start is ~2^64 ns later.
    [line] = format_events(LAT_EVENTS[:1], symbolize, LAT_CMDLINES, lat_fmt=True,
                           time_start=LAT_EVENTS[0].ts + 1_000).splitlines()
    wrapped = ((1 << 64) - 1_000 + 500) // 1000
    assert line.endswith(f" {wrapped}us : hrtimer_init <-copy_process")


LAT_HEADER = (
    "# tracer: function\n"
    "#\n"
    "# function latency trace v1.1.5 on 3.6.11+\n"
    "# --------------------------------------------------------------------\n"
    "# latency: 0 us, #3/5, CPU#1 | (M:desktop VP:0, KP:0, SP:0 HP:0 #P:4)\n"
    "#    -----------------\n"
    "#    | task: -0 (uid:0 nice:0 policy:0 rt_prio:0)\n"
    "#    -----------------\n"
    "#\n")
LAT_HELP = (
    "#                  _------=> CPU#            \n"
    "#                 / _-----=> irqs-off        \n"
    "#                | / _----=> need-resched    \n"
    "#                || / _---=> hardirq/softirq \n"
    "#                ||| / _--=> preempt-depth   \n"
    "#                |||| /     delay             \n"
    "#  cmd     pid   ||||| time  |   caller      \n"
    "#     \\   /      |||||  \\    |   /           \n")


def test_latency_header():
    latency = LatencyHeader("3.6.11+", cpu=1, empty=False)
    assert trace_header("function", 3, 5, 4, corrupted=False, latency=latency) == (
        LAT_HEADER + LAT_HELP)
    verbose = TRACE_FLAGS_DEFAULT | TRACE_ITER_VERBOSE
    assert trace_header("function", 3, 5, 4, False, verbose, latency) == LAT_HEADER
    # trace_empty(): nothing after the tracer's name; no context-info: nothing either.
    assert trace_header("function", 0, 2, 4, False, latency=latency._replace(empty=True)) == (
        "# tracer: function\n#\n")
    no_context = TRACE_FLAGS_DEFAULT & ~TRACE_ITER_CONTEXT_INFO
    assert trace_header("function", 3, 5, 4, False, no_context, latency) == (
        "# tracer: function\n#\n")


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
        rb.write_function_events(1, stamps, 20903, np.full(200, 0xFFFFFFFFA0000010),
                                 np.full(200, 0xFFFFFFFF81003000))
        rb.write_marker(0, 300_000, 20903, "done", MARK_IP)
        snap = rb.snapshot()
        text = (trace_header("function", snap.entries_in_buffer, snap.entries_written,
                             rb.nr_cpus, corrupted=False)
                + format_events(snap.events, symbolize, CMDLINES, annotate=rb.overruns() > 0))
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
