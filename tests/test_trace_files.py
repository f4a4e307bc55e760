"""The trace files in-process, through the file tree: formats, controls, and the report's
symptom (buggy: named in the filter, not traced) and the fix's side effect (traced)."""

from __future__ import annotations

import errno
import os
import re
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.consistency import AnomalyKind, check_consistency
from kernel_daemon.ftrace.dispatch import execute_function, on_cpu
from kernel_daemon.task import Task, running_as
from kernel_daemon.trace.buffers import rb_capacity
from kernel_daemon.tracefs.files import file_read, file_release, file_write
from kernel_daemon.tracefs.tree import mount
from tests.kernel_helpers import (BASH, T, booted, cat, cat_bytes, echo, invoke, mask_str,
                                 modprobe, reproducer_until_reload, write, write_errno)
from tests.test_race_windows import Step
from tests.test_trace_output import LAT_HELP

HEADER_36 = (
    "# tracer: function\n"
    "#\n"
    "# entries-in-buffer/entries-written: {n}/{m}   #P:{p}\n"
    "#\n"
    "#                              _-----=> irqs-off\n"
    "#                             / _----=> need-resched\n"
    "#                            | / _---=> hardirq/softirq\n"
    "#                            || / _--=> preempt-depth\n"
    "#                            ||| /     delay\n"
    "#           TASK-PID   CPU#  ||||    TIMESTAMP  FUNCTION\n"
    "#              | |       |   ||||       |         |\n")


@pytest.mark.parametrize("variant", ["buggy", "fixed"])
def test_reloaded_function_is_traced_only_with_the_fix(variant):
    with booted(variant=variant) as k:
        vfs = mount(k)
        reproducer_until_reload(k)
        assert cat(vfs, f"{T}/set_ftrace_filter") == "uinput_release [uinput]\n"
        invoke(k, "uinput_release", count=2, cpu=1)
        text = cat(vfs, f"{T}/trace")
        lines = text.splitlines()[11:]
        if variant == "fixed":
            assert text.startswith(HEADER_36.format(n=2, m=2, p=4))
            assert len(lines) == 2
            for line in lines:
                assert line.startswith("            bash-20903 [001] .... ")
                assert line.endswith(": uinput_release <-__fput")
            assert check_consistency(k.ftrace) == []
        else:
            assert text == HEADER_36.format(n=0, m=0, p=4)
            [missing] = check_consistency(k.ftrace)
            assert missing.kind is AnomalyKind.MISSING_REFERENCE
            assert missing.function == "uinput_release"


def test_trace_controls_and_formats():
    with booted(cpus=2) as k:
        vfs = mount(k)
        assert cat(vfs, f"{T}/buffer_size_kb") == "7 (expanded: 1408)\n"
        assert cat(vfs, f"{T}/buffer_total_size_kb") == "14 (expanded: 2816)\n"
        assert cat(vfs, f"{T}/available_tracers") == "function nop\n"
        assert cat(vfs, f"{T}/current_tracer") == "nop\n"
        write(vfs, f"{T}/current_tracer", b"function\n")
        assert cat(vfs, f"{T}/buffer_size_kb") == "1408\n"
        assert cat(vfs, f"{T}/tracing_on") == "1\n"
        invoke(k, "vfs_write", "sys_write", cpu=0)
        invoke(k, "vfs_read", "sys_read", cpu=1)
        marker = Task(4242, "logger")
        with running_as(marker), on_cpu(1):
            assert write(vfs, f"{T}/trace_marker", b"hello world\n") == 12
        per_cpu = cat(vfs, f"{T}/per_cpu/cpu1/trace").splitlines()[11:]
        assert [line.split(": ", 1)[1] for line in per_cpu] == ["vfs_read <-sys_read",
                                                              "tracing_mark_write: hello world"]
        assert per_cpu[1].startswith("          logger-4242  [001] .... ")
        # Writing the current tracer's name is a no-op: the buffer stays.
        write(vfs, f"{T}/current_tracer", b"function\n")
        assert "entries-in-buffer/entries-written: 3/3" in cat(vfs, f"{T}/trace")
        # tracing_on 0: nothing is recorded, and a marker gets EBADF.
        write(vfs, f"{T}/tracing_on", b"0\n")
        assert invoke(k, "vfs_write", "sys_write")  # reaches the tracer, dropped by the buffer
        with pytest.raises(KernelError) as exc:
            write(vfs, f"{T}/trace_marker", b"lost\n")
        assert exc.value.errno == errno.EBADF
        write(vfs, f"{T}/tracing_on", b"1\n")
        with pytest.raises(KernelError) as exc:
            write(vfs, f"{T}/tracing_on", b"yes\n")
        assert exc.value.errno == errno.EINVAL
        # tracing_open() clears only an open with FMODE_WRITE: O_TRUNC on a reader's keeps all.
        kept = cat(vfs, f"{T}/trace")
        file_release(vfs.open(f"{T}/trace", os.O_RDONLY | os.O_TRUNC))
        assert cat(vfs, f"{T}/trace") == kept
        # echo > trace clears every CPU.
        write(vfs, f"{T}/trace", b"\n")
        assert cat(vfs, f"{T}/trace") == HEADER_36.format(n=0, m=0, p=2)
        # The trace clock and cpumask.
        assert cat(vfs, f"{T}/trace_clock") == "[local] global counter\n"
        invoke(k, "vfs_write", cpu=0)
        write(vfs, f"{T}/trace_clock", b"global\n")
        assert cat(vfs, f"{T}/trace_clock") == "local [global] counter\n"
        # 3.6's tracing_clock_write() keeps the events the old clock stamped.
        assert "entries-in-buffer/entries-written: 1/1" in cat(vfs, f"{T}/trace")
        write(vfs, f"{T}/trace", b"\n")
        assert cat(vfs, f"{T}/tracing_cpumask") == mask_str("3\n")
        write(vfs, f"{T}/tracing_cpumask", b"2\n")
        invoke(k, "vfs_write", cpu=0)
        invoke(k, "vfs_write", cpu=1)
        assert "entries-in-buffer/entries-written: 1/1" in cat(vfs, f"{T}/trace")
        # Switching the tracer clears the buffers (tracer_init).
        write(vfs, f"{T}/current_tracer", b"nop\n")
        assert cat(vfs, f"{T}/trace").startswith("# tracer: nop\n#\n# entries-in-buffer/entries-written: 0/0")
        with pytest.raises(KernelError) as exc:
            write(vfs, f"{T}/current_tracer", b"function_graph\n")
        assert exc.value.errno == errno.EINVAL


def test_trace_pipe_consumes_and_small_buffer_overruns_are_exact():
    with booted(cpus=1) as k:
        vfs = mount(k)
        write(vfs, f"{T}/current_tracer", b"function\n")
        write(vfs, f"{T}/buffer_size_kb", b"8\n")
        capacity = k.ring_buffer.counters(0).capacity
        invoke(k, "vfs_write", "sys_write", count=capacity + 100)
        head = cat(vfs, f"{T}/trace").splitlines()[2]
        assert head == f"# entries-in-buffer/entries-written: {capacity}/{capacity + 100}   #P:1"
        assert k.ring_buffer.overruns() == 100
        pipe = cat(vfs, f"{T}/trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        # No header; the overwritten events are announced first, as 3.6 does.
        assert pipe.splitlines()[0] == "CPU:0 [LOST 100 EVENTS]"
        assert pipe.splitlines()[1].endswith("vfs_write <-sys_write")
        f = vfs.open(f"{T}/trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        while True:
            try:
                file_read(f, 4096)
            except KernelError as exc:
                assert exc.errno == errno.EAGAIN
                break
        file_release(f)
        with pytest.raises(KernelError) as exc:
            write(vfs, f"{T}/buffer_size_kb", b"0\n")
        assert exc.value.errno == errno.EINVAL


STATS = re.compile(r"entries: (\d+)\noverrun: (\d+)\ncommit overrun: 0\nbytes: (\d+)\n"
                   r"oldest event ts: (.{5}\.\d{6})\nnow ts: (.{5}\.\d{6})\n")


def stats(vfs, cpu: int) -> tuple[int, int, int, str, float]:
    """(entries, overrun, bytes, oldest ts text, now ts) of per_cpu/cpuN/stats."""
    text = cat(vfs, f"{T}/per_cpu/cpu{cpu}/stats")
    entries, overrun, size, oldest, now = STATS.fullmatch(text).groups()
    return int(entries), int(overrun), int(size), oldest, float(now)


def test_per_cpu_stats_and_buffer_size_kb():
    """tracing_init_debugfs_percpu() of 3.6 also makes stats (tracing_stats_read()) and
    buffer_size_kb, both 0444 (and trace_pipe_raw, tests/test_trace_pipe_raw.py); root can still write the latter, which resizes its CPU."""
    with booted(cpus=2) as k:
        vfs = mount(k)
        entries = vfs.list_dir(f"{T}/per_cpu/cpu1")
        assert {(e.name, e.mode) for e in entries} == {
            ("trace", 0o644), ("trace_pipe", 0o444), ("trace_pipe_raw", 0o444),
            ("stats", 0o444), ("buffer_size_kb", 0o444)}
        assert cat(vfs, f"{T}/per_cpu/cpu0/buffer_size_kb") == "7\n"  # no "(expanded: )"
        assert stats(vfs, 0)[:4] == (0, 0, 0, "    0.000000")
        write(vfs, f"{T}/current_tracer", b"function\n")
        write(vfs, f"{T}/buffer_size_kb", b"8\n")
        assert cat(vfs, f"{T}/per_cpu/cpu1/buffer_size_kb") == "8\n"
        capacity = k.ring_buffer.counters(1).capacity
        invoke(k, "vfs_read", "sys_read", cpu=0)
        invoke(k, "vfs_write", "sys_write", count=capacity + 3, cpu=1)
        entries, overrun, size, oldest, now = stats(vfs, 1)
        assert (entries, overrun, size) == (capacity, 3, capacity * 64)
        first = k.ring_buffer.snapshot(cpu=1).events[0]
        usecs = (first.ts + 500) // 1000
        assert oldest == f"{usecs // 1_000_000:5d}.{usecs % 1_000_000:06d}"
        assert now >= float(oldest)
        assert stats(vfs, 0)[:3] == (1, 0, 64)
        # One CPU grown alone keeps its events and counters; the top file says X.
        assert write(vfs, f"{T}/per_cpu/cpu1/buffer_size_kb", b"16\n") == 3
        assert cat(vfs, f"{T}/per_cpu/cpu1/buffer_size_kb") == "16\n"
        assert cat(vfs, f"{T}/per_cpu/cpu0/buffer_size_kb") == "8\n"
        assert cat(vfs, f"{T}/buffer_size_kb") == "X\n"
        assert cat(vfs, f"{T}/buffer_total_size_kb") == "24\n"
        assert stats(vfs, 1)[:4] == (capacity, 3, capacity * 64, oldest)
        assert stats(vfs, 0)[0] == 1
        # Shrunk back, it keeps the newest that fit; the ones it drops are overruns.
        write(vfs, f"{T}/per_cpu/cpu1/buffer_size_kb", b"4\n")
        kept = k.ring_buffer.counters(1).capacity
        assert stats(vfs, 1)[:3] == (kept, capacity + 3 - kept, kept * 64)
        for path, data in ((f"{T}/per_cpu/cpu0/buffer_size_kb", b"0\n"),
                           (f"{T}/per_cpu/cpu0/buffer_size_kb", b"x\n"),
                           (f"{T}/per_cpu/cpu0/stats", b"1\n")):
            with pytest.raises(KernelError) as exc:
                write(vfs, path, data)
            assert exc.value.errno == errno.EINVAL
        write(vfs, f"{T}/buffer_size_kb", b"16\n")
        assert cat(vfs, f"{T}/buffer_size_kb") == "16\n"


def test_a_trace_pipe_read_returns_whole_lines_and_a_small_read_its_leftover_first():
    """tracing_read_pipe(): a page-sized read stops at the first line that would not fit
    its trace_seq; a smaller read splits a line, and the next read returns only the rest
    of the fill, before any new line."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        write(vfs, f"{T}/current_tracer", b"function\n")
        invoke(k, "vfs_write", "sys_write", count=200)
        f = vfs.open(f"{T}/trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        first = file_read(f, 65536)
        line = len(first.split(b"\n", 1)[0]) + 1
        assert first.endswith(b"\n") and len(first) == 4094 // line * line
        small = file_read(f, 10)
        rest = file_read(f, 65536)
        # The split line is the one after `first`: same fields, its own timestamp.
        assert len(small) == 10 and len(small + rest) == line
        assert re.fullmatch(rb" +bash-\d+ \[000\] \.{4} +\d+\.\d{6}: vfs_write <-sys_write\n",
                            small + rest)
        again = file_read(f, 65536)
        assert len(again) == len(first) and again.endswith(b"\n")
        file_release(f)


def test_lines_that_add_up_to_a_whole_trace_seq_less_its_nul_do_not_fit_it():
    """trace_seq_printf() fails when the text would reach the page's last byte
    (``ret >= PAGE_SIZE - 1 - len``): lines adding to 4094 bytes fill a read; lines adding
    to 4095, one more, leave the last of them for the next read."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        write(vfs, f"{T}/current_tracer", b"function\n")
        invoke(k, "vfs_write", "sys_write")
        with running_as(Task(4242, "logger")):
            write(vfs, f"{T}/trace_marker", b"x\n")
        line, marker = (len(text) + 1 for text in pipe_bytes(vfs).split(b"\n")[:-1])
        for total in (4094, 4095):
            count = (total - 600) // line
            invoke(k, "vfs_write", "sys_write", count=count)
            # The marker's line is ``marker`` bytes for one byte of text: it makes up the rest.
            with running_as(Task(4242, "logger")):
                write(vfs, f"{T}/trace_marker",
                      b"x" * (total - count * line - marker + 1) + b"\n")
            f = vfs.open(f"{T}/trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
            first = file_read(f, 65536)
            assert len(first) == (total if total == 4094 else count * line), total
            file_release(f)
            assert len(first + pipe_bytes(vfs)) == total


def test_hex_lines_end_on_trace_seq_putmem_and_may_fill_the_page_but_its_last_byte():
    """``print_hex_fmt()`` ends an entry with ``SEQ_PUT_FIELD_RET()`` of a newline, a
    ``trace_seq_putmem()``, which fits up to byte PAGE_SIZE - 1 where
    ``trace_seq_printf()`` stops one short: 117 function entries of 35 bytes (no
    context-info) make 4095, one read."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        write(vfs, f"{T}/current_tracer", b"function\n")
        write(vfs, f"{T}/trace_options", b"nocontext-info\n")
        write(vfs, f"{T}/trace_options", b"hex\n")
        invoke(k, "vfs_write", "sys_write", count=118)
        f = vfs.open(f"{T}/trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        first = file_read(f, 65536)
        assert len(first) == 117 * 35 == 4095
        assert len(file_read(f, 65536)) == 35
        file_release(f)


def test_a_trace_pipe_reader_consumes_only_the_lines_it_returned():
    """tracing_read_pipe() calls trace_consume() after each whole line: the entry that
    did not fit, and all after it, stay in the ring buffer, so a reader that closes after
    one read (grep -m1, head) takes nothing it did not return, and a second reader, on
    another CPU's file or the same one, gets each of the rest exactly once."""
    with booted(cpus=2) as k:
        vfs = mount(k)
        write(vfs, f"{T}/current_tracer", b"function\n")
        invoke(k, "vfs_write", "sys_write", count=100, cpu=0)
        invoke(k, "vfs_read", "sys_read", count=100, cpu=1)
        f = vfs.open(f"{T}/trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        first = file_read(f, 65536)
        file_release(f)
        rest = pipe_bytes(vfs, f"{T}/per_cpu/cpu0/trace_pipe") + pipe_bytes(vfs)
        lines = (first + rest).decode().splitlines()
        assert len(first.splitlines()) < 100  # the first read ended mid-way through cpu0's
        assert [sum(name in line for line in lines) for name in ("vfs_write", "vfs_read")] == [
            100, 100]


def test_a_trace_pipe_read_returns_while_writers_overwrite_a_full_buffer():
    """A full buffer in overwrite mode moves its oldest entry at every write; the reader
    consumes what it printed all the same (3.6's reader page keeps writers off it), rather
    than looking again for as long as the writers write."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        write(vfs, f"{T}/current_tracer", b"function\n")
        invoke(k, "vfs_write", "sys_write", count=rb_capacity(k.ring_buffer.size_bytes(0)))
        stop = threading.Event()

        def overwrite() -> None:
            while not stop.is_set():
                invoke(k, "vfs_read", "sys_read", count=64)

        writer = threading.Thread(target=overwrite)
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # the writer runs between any two lines the reader prints
        writer.start()
        try:
            f = vfs.open(f"{T}/trace_pipe", os.O_RDONLY)
            reads = [file_read(f, 65536) for _ in range(3)]
            file_release(f)
        finally:
            stop.set()
            writer.join()
            sys.setswitchinterval(interval)
        assert all(data.endswith(b"\n") for data in reads)


def test_a_parent_no_symbol_covers_prints_as_nothing():
    """3.6's seq_print_sym_short() prints the name kallsyms_lookup() left, "" here."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        write(vfs, f"{T}/current_tracer", b"function\n")
        ip = k.kallsyms.lookup_name("vfs_write")[0].addr
        with running_as(BASH):
            execute_function(k.ftrace, ip, 0x1234)
        assert cat(vfs, f"{T}/trace").splitlines()[-1].endswith(": vfs_write <-")


def test_corrupted_header_after_ftrace_kill():
    with booted(variant="buggy", cpus=1) as k:
        vfs = mount(k)
        reproducer_until_reload(k)
        echo(k, "nop", "current_tracer")
        assert k.ftrace.ftrace_disabled
        text = cat(vfs, f"{T}/trace")
        assert text.startswith("# tracer: nop\n#\n# WARNING: FUNCTION TRACING IS CORRUPTED\n"
                               "#          MAY BE MISSING FUNCTION EVENTS\n"
                               "# entries-in-buffer/entries-written: 0/0   #P:1\n")
        # The function tracer can still be selected; nothing is traced.
        write(vfs, f"{T}/current_tracer", b"function\n")
        assert cat(vfs, f"{T}/current_tracer") == "function\n"
        assert not invoke(k, "vfs_write")
        for path in ("available_filter_functions", "enabled_functions", "set_ftrace_filter"):
            with pytest.raises(KernelError) as exc:
                vfs.open(f"{T}/{path}", os.O_RDONLY)
            assert exc.value.errno == errno.ENODEV


def test_paths_and_modes():
    with booted(cpus=1) as k:
        vfs = mount(k)
        for bad, code in (("/sys/kernel/debug/tracing/nope", errno.ENOENT),
                          (f"{T}/trace/x", errno.ENOTDIR),
                          (f"{T}/tracing_on/", errno.ENOTDIR),
                          (f"{T}/tracing_on/../trace", errno.ENOTDIR),
                          (f"{T}/tracing_on/.", errno.ENOTDIR),
                          ("/sys/kernel/debug/tracing/../../../../etc/passwd", errno.ENOENT),
                          ("", errno.ENOENT),
                          ("sys/kernel/debug/tracing/tracing_on", errno.EINVAL),
                          (f"{T}/tracing_on\0", errno.EINVAL),
                          (f"{T}/{'a' * 256}", errno.ENAMETOOLONG),
                          (f"{T}/{'a' * 256}/x", errno.ENAMETOOLONG),
                          ("/" + "a" * 256, errno.ENAMETOOLONG),
                          # Only a lookup that measures names refuses a long one:
                          # procfs's and sysfs's do not.
                          ("/proc/" + "a" * 256, errno.ENOENT),
                          ("/proc/sys/kernel/" + "a" * 256, errno.ENOENT),
                          ("/sys/" + "a" * 256, errno.ENOENT),
                          (f"{T}/tracing_on/{'a' * 256}", errno.ENOTDIR),
                          ("/" + "a/" * 2048, errno.ENAMETOOLONG)):
            with pytest.raises(KernelError) as exc:
                vfs.open(bad, os.O_RDONLY)
            assert exc.value.errno == code, bad
        assert cat(vfs, "/sys/kernel/tracing/../tracing/current_tracer") == "nop\n"
        assert cat(vfs, f"{T}//./current_tracer") == "nop\n"
        assert vfs.lookup(f"{T}/per_cpu/")[0] == f"{T}/per_cpu"
        # A directory opens for reading, and its reads are EISDIR; for writing it does not.
        d = vfs.open(T, os.O_RDONLY)
        with pytest.raises(KernelError) as exc:
            file_read(d, 4096)
        assert exc.value.errno == errno.EISDIR
        file_release(d)
        for path, flags in ((T, os.O_WRONLY), (f"{T}/tracing_on/", os.O_WRONLY | os.O_CREAT)):
            with pytest.raises(KernelError) as exc:
                vfs.open(path, flags)
            assert exc.value.errno == errno.EISDIR
        with pytest.raises(KernelError) as exc:  # root opens a 0444 file; write has no method
            write(vfs, f"{T}/available_filter_functions", b"x\n")
        assert exc.value.errno == errno.EINVAL
        with pytest.raises(KernelError) as exc:
            cat(vfs, f"{T}/trace_marker")
        assert exc.value.errno == errno.EINVAL
        f = vfs.open(f"{T}/current_tracer", os.O_RDONLY)
        with pytest.raises(KernelError) as exc:
            file_write(f, b"nop\n")
        assert exc.value.errno == errno.EBADF
        file_release(f)
        names = {e.name for e in vfs.list_dir(T)}
        assert {"trace", "trace_pipe", "set_ftrace_filter", "per_cpu", "events",
                "function_profile_enabled", "trace_stat", "tracing_enabled"} <= names
        assert cat(vfs, "/proc/modules") == ""
        modprobe(k, "dummy")
        assert cat(vfs, "/proc/modules").startswith("dummy ")


def test_ftrace_enabled_sysctl_unpatches_and_repatches_keeping_counts():
    with booted(cpus=1) as k:
        vfs = mount(k)
        sysctl = "/proc/sys/kernel/ftrace_enabled"
        assert cat(vfs, sysctl) == "1\n"
        echo(k, "vfs_write", "set_ftrace_filter")
        echo(k, "function", "current_tracer")
        assert invoke(k, "vfs_write")
        write(vfs, sysctl, b"0\n")
        assert cat(vfs, f"{T}/enabled_functions") == "vfs_write (1)\n"  # counts are kept
        assert not invoke(k, "vfs_write")  # but nothing is patched
        assert check_consistency(k.ftrace) == []
        write(vfs, sysctl, b"1\n")
        assert invoke(k, "vfs_write")
        assert check_consistency(k.ftrace) == []
        with pytest.raises(KernelError) as exc:
            write(vfs, sysctl, b"on\n")
        assert exc.value.errno == errno.EINVAL


# --- the output formats, through the files -------------------------------------------------


def pipe_bytes(vfs, path: str = f"{T}/trace_pipe") -> bytes:
    """What a trace_pipe reader gets until the buffer is empty (consuming)."""
    f = vfs.open(path, os.O_RDONLY | os.O_NONBLOCK)
    out = []
    try:
        while True:
            try:
                out.append(file_read(f, 4096))
            except KernelError as exc:
                assert exc.errno == errno.EAGAIN
                return b"".join(out)
    finally:
        file_release(f)


def traced_vfs_write_and_marker(k):
    """function tracer set on CPU 1; vfs_write by bash on CPU 0, then a marker on CPU 1."""
    vfs = mount(k)
    with on_cpu(1):
        write(vfs, f"{T}/current_tracer", b"function\n")
    invoke(k, "vfs_write", "sys_write", cpu=0)
    with running_as(Task(4242, "logger")), on_cpu(1):
        write(vfs, f"{T}/trace_marker", b"hello\n")
    fn, mark = k.ring_buffer.snapshot().events
    return vfs, fn, mark


@pytest.mark.parametrize("option", ["raw", "hex", "bin"])
def test_raw_hex_and_bin_entries_in_trace_and_trace_pipe(option):
    with booted(cpus=2) as k:
        vfs, fn, mark = traced_vfs_write_and_marker(k)
        ip = k.kallsyms.lookup_name("vfs_write")[0].addr
        # The parent's is the return address inside sys_write, the marker's _THIS_IP_ an
        # address inside tracing_mark_write: neither is the function's first byte.
        parent_ip = k.kallsyms.return_address("sys_write", "vfs_write")
        mark_ip = k.kallsyms.return_address("tracing_mark_write", "trace_buffer_lock_reserve")
        for name, addr in ("sys_write", parent_ip), ("tracing_mark_write", mark_ip):
            sym = k.kallsyms.lookup_name(name)[0]
            assert sym.addr < addr < sym.addr + sym.size
        if option == "raw":
            entries = (f"20903 0 {fn.ts} {ip:x} {parent_ip:x}\n"
                       f"4242 1 {mark.ts} # {mark_ip:x} hello\n").encode()
        elif option == "hex":
            entries = (f"000051a7 00000000 {fn.ts:016x} {ip:016x} {parent_ip:016x} \n"
                       f"00001092 00000001 {mark.ts:016x} type: 5\n\n").encode()
        else:
            entries = (bytes.fromhex("a7510000 00000000") + fn.ts.to_bytes(8, "little")
                       + ip.to_bytes(8, "little") + parent_ip.to_bytes(8, "little")
                       + bytes.fromhex("92100000 01000000") + mark.ts.to_bytes(8, "little")
                       + b"type: 5\n")
        write(vfs, f"{T}/trace_options", option.encode() + b"\n")
        # The header stays text; the entries follow it as the option prints them.
        assert cat_bytes(vfs, f"{T}/trace") == HEADER_36.format(n=2, m=2, p=2).encode() + entries
        assert pipe_bytes(vfs) == entries
        write(vfs, f"{T}/trace_options", b"no" + option.encode() + b"\n")
        assert cat(vfs, f"{T}/trace") == HEADER_36.format(n=0, m=0, p=2)


def tasks_of(text: str) -> list[str]:
    """The ``comm-pid`` of each entry line of ``trace`` text."""
    return [line.split(" [", 1)[0].strip() for line in text.splitlines()
            if not line.startswith("#")]


def lat_line(k, ev, comm: str, func: str, next_ts: int) -> str:
    """The latency-format line of ``ev``, from its fields (trace_print_lat_context())."""
    abs_usecs = (ev.ts - k.tracing.time_start + 500) // 1000
    rel_usecs = (next_ts - ev.ts + 500) // 1000
    mark = "!" if rel_usecs > 100 else "+" if rel_usecs > 1 else " "
    return f"{comm:>8}-{ev.pid:<5d} {ev.cpu:3d}.... {abs_usecs:4d}us{mark}: {func}\n"


def test_latency_format_in_trace_and_trace_pipe():
    with booted(cpus=2) as k:
        vfs, fn, mark = traced_vfs_write_and_marker(k)
        opened_before = vfs.open(f"{T}/trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        write(vfs, f"{T}/options/latency-format", b"1\n")
        assert 0 < k.tracing.time_start < fn.ts  # the tracer switch reset the buffers
        lines = (lat_line(k, fn, "bash", "vfs_write <-sys_write", mark.ts)
                 + lat_line(k, mark, "logger", "tracing_mark_write: hello", mark.ts))
        # tr->cpu is the CPU the function tracer's init ran on.
        assert cat(vfs, f"{T}/trace") == (
            "# tracer: function\n"
            "#\n"
            "# function latency trace v1.1.5 on 3.6.11+\n"
            f"# {'-' * 68}\n"
            "# latency: 0 us, #2/2, CPU#1 | (M:desktop VP:0, KP:0, SP:0 HP:0 #P:2)\n"
            "#    -----------------\n"
            "#    | task: -0 (uid:0 nice:0 policy:0 rt_prio:0)\n"
            "#    -----------------\n"
            "#\n" + LAT_HELP + lines)
        # The per-CPU file peeks at its own CPU's next entry only.
        assert cat(vfs, f"{T}/per_cpu/cpu0/trace").endswith(
            lat_line(k, fn, "bash", "vfs_write <-sys_write", fn.ts))
        # latency-format is taken at open; trace_pipe prints no header, and the entry it
        # prints is the one its peek finds: no delay to the next.
        old = file_read(opened_before, 4096).decode().splitlines()
        assert old[0].startswith("            bash-20903 [000] .... ")
        assert old[1].startswith("          logger-4242  [001] .... ")
        file_release(opened_before)
        invoke(k, "vfs_write", "sys_write", cpu=1)
        invoke(k, "vfs_write", "sys_write", cpu=1)
        first, second = k.ring_buffer.snapshot().events
        assert pipe_bytes(vfs) == (lat_line(k, first, "bash", "vfs_write <-sys_write", first.ts)
                                   + lat_line(k, second, "bash", "vfs_write <-sys_write",
                                              second.ts)).encode()
        # Empty buffers: the latency header is not printed at all.
        write(vfs, f"{T}/trace", b"\n")
        assert cat(vfs, f"{T}/trace") == "# tracer: function\n#\n"


def test_trace_lines_take_the_comm_saved_cmdlines_has_when_read():
    """trace_print_context() calls trace_find_cmdline(entry->pid) as it prints: a pid
    evicted from the 128 slots prints <...>, a pid saved again under a new comm prints it
    on its older lines too."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        write(vfs, f"{T}/current_tracer", b"function\n")
        for pid in range(1000, 1130):
            invoke(k, "vfs_write", "sys_write", task=Task(pid, f"t{pid}"))
        assert len(cat(vfs, f"{T}/saved_cmdlines").splitlines()) == 128
        invoke(k, "vfs_write", "sys_write", task=Task(1129, "renamed"))
        tasks = tasks_of(cat(vfs, f"{T}/trace"))
        assert tasks[:3] == ["<...>-1000", "<...>-1001", "t1002-1002"]
        assert tasks[-2:] == ["renamed-1129", "renamed-1129"]
        assert tasks_of(pipe_bytes(vfs).decode()) == tasks


def test_who_is_in_saved_cmdlines_markers_and_the_idle_task():
    """Only the function tracer records cmdlines (its sched_switch probe): a marker written
    under nop prints <...> unless its task was saved before; pid 0 prints <idle>."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        logger = Task(4242, "logger")
        with running_as(logger):
            write(vfs, f"{T}/trace_marker", b"before\n")
        with running_as(Task(0, "swapper/0")):
            write(vfs, f"{T}/trace_marker", b"idle\n")
        assert tasks_of(cat(vfs, f"{T}/trace")) == ["<...>-4242", "<idle>-0"]
        assert cat(vfs, f"{T}/saved_cmdlines") == ""
        write(vfs, f"{T}/current_tracer", b"function\n")
        with running_as(logger):
            write(vfs, f"{T}/trace_marker", b"traced\n")
        write(vfs, f"{T}/current_tracer", b"nop\n")  # the table outlives the tracer
        with running_as(logger):
            write(vfs, f"{T}/trace_marker", b"after\n")
        assert cat(vfs, f"{T}/trace").splitlines()[11].startswith("          logger-4242 ")
        assert cat(vfs, f"{T}/saved_cmdlines") == "4242 logger\n"


def test_a_reader_holding_trace_cmdline_lock_never_blocks_recording():
    """trace_save_cmdline() only tries the lock a reader (trace_find_cmdline) holds: the
    event is recorded and the save skipped; the task's next event saves it, and then
    both lines name it."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        write(vfs, f"{T}/current_tracer", b"function\n")
        with k.saved_cmdlines.trace_cmdline_lock:
            assert invoke(k, "vfs_write", "sys_write", task=Task(777, "first"))
        assert cat(vfs, f"{T}/saved_cmdlines") == ""
        assert cat(vfs, f"{T}/trace").splitlines()[11].lstrip().startswith("<...>-777 ")
        invoke(k, "vfs_write", "sys_write", task=Task(777, "first"))
        lines = cat(vfs, f"{T}/trace").splitlines()[11:]
        assert [line.lstrip().split(" ", 1)[0] for line in lines] == ["first-777", "first-777"]


@pytest.mark.parametrize("count", [1, 3])
def test_a_reader_woken_by_an_event_finds_its_task_saved(monkeypatch, count):
    """The sched_switch that ran a task saved its comm before the task reached the
    function tracer: a trace_pipe reader that prints an event the moment it is in the
    buffer names its task. The model saved the comm after writing the event, so a reader
    scheduled in between (a busy machine) printed ``<...>`` for good: the one event of the
    task was already consumed."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        write(vfs, f"{T}/current_tracer", b"function\n")
        printed: list[bytes] = []

        def and_read_at_once(write_events: Callable[..., Any]) -> Callable[..., Any]:
            def written(*args: Any) -> Any:
                result = write_events(*args)
                printed.append(pipe_bytes(vfs))
                return result
            return written

        for name in ("write_function_event", "write_function_events"):
            monkeypatch.setattr(k.ring_buffer, name,
                                and_read_at_once(getattr(k.ring_buffer, name)))
        invoke(k, "vfs_write", "sys_write", count=count, task=Task(4002, "second"))
        assert tasks_of(b"".join(printed).decode()) == ["second-4002"] * count


def test_a_cpu_out_of_tracing_cpumask_records_nothing_not_even_a_marker():
    """tracing_cpumask_write() disables the ring buffer's recording on a CPU leaving the
    mask (ring_buffer_record_disable_cpu), so tracing_mark_write() finds no room: EBADF."""
    with booted(cpus=2) as k:
        vfs = mount(k)
        write(vfs, f"{T}/current_tracer", b"function\n")
        write(vfs, f"{T}/tracing_cpumask", b"2\n")
        for cpu, expected in ((0, errno.EBADF), (1, None)):
            with on_cpu(cpu):
                if expected is None:
                    assert write(vfs, f"{T}/trace_marker", b"kept\n") == 5
                    continue
                with pytest.raises(KernelError) as exc:
                    write(vfs, f"{T}/trace_marker", b"lost\n")
                assert exc.value.errno == expected
        write(vfs, f"{T}/tracing_cpumask", b"2\n")  # unchanged: nothing nests
        write(vfs, f"{T}/tracing_cpumask", b"3\n")
        with on_cpu(0):
            assert write(vfs, f"{T}/trace_marker", b"back\n") == 5
        markers = [line.rsplit(": ", 1)[1] for line in cat(vfs, f"{T}/trace").splitlines()
                   if "tracing_mark_write" in line]
        assert markers == ["kept", "back"]


def test_buffer_size_kb_is_shifted_to_bytes_in_an_unsigned_long():
    """tracing_entries_write(): val <<= 10 wraps, so 2^54 + 1 KB is 1 KB."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        write(vfs, f"{T}/buffer_size_kb", b"%d\n" % (2 ** 54 + 1))
        assert cat(vfs, f"{T}/buffer_size_kb") == "1\n"
        assert k.ring_buffer.counters(0).capacity == rb_capacity(1024)


@pytest.mark.parametrize("path, data, code", [
    ("buffer_size_kb", None, 0), ("buffer_total_size_kb", None, 0),
    ("per_cpu/cpu0/buffer_size_kb", None, 0), ("buffer_size_kb", b"8\n", 0),
    # No such event: it fails after tracing_update_buffers() expanded the buffer.
    ("set_event", b"sched\n", errno.EINVAL),
    ("free_buffer", b"\n", 0), ("current_tracer", b"function\n", 0)])
def test_the_buffer_sizing_paths_take_trace_types_lock(path, data, code):
    """3.6 reads and resizes the buffer under trace_types_lock (tracing_entries_read,
    tracing_total_entries_read, tracing_resize_ring_buffer, free_buffer's release too,
    tracing_update_buffers and tracing_set_tracer's expansion): with the lock held, each
    waits for it, the buffer not yet expanded; let go, it goes on."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        with k.tracing.trace_types_lock:
            if data is None:
                step = Step(as_bash, cat, vfs, f"{T}/{path}")
            else:
                step = Step(as_bash, written, vfs, f"{T}/{path}", data, code)
            assert step.blocked()
            assert not k.ring_buffer.expanded
        step.finish()
        assert k.ring_buffer.expanded == (data is not None)


def as_bash(fn: Callable[..., Any], *args: Any) -> Any:
    with running_as(BASH):
        return fn(*args)


def written(vfs, path: str, data: bytes, code: int) -> None:
    """write(2) of ``data``, which fails with errno ``code``, or succeeds if it is 0."""
    if code:
        assert write_errno(vfs, path, data) == code
    else:
        write(vfs, path, data)
