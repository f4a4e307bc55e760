"""``seq_read()`` of 3.6 (fs/seq_file.c) in-process: a read fills one page, keeps the record
index it reached and the bytes it did not copy, and the next read starts the file's
``->start()`` again at that index, so what changed between two reads shows in the second;
and ``tracing_cpumask_read()``'s copy of its whole ``mask_str[NR_CPUS + 1]``."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator

import pytest

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.listing import Listing
from kernel_daemon.tracefs.files import OpenFile, file_read, file_release
from kernel_daemon.tracefs.seq_file import (PAGE_SIZE, SeqFile, SeqOperations, SeqSnapshot,
                                             seq_read)
from kernel_daemon.tracefs.trace_files import NR_CPUS
from kernel_daemon.tracefs.tree import mount
from kernel_daemon.tracefs.vfs import Vfs
from kernel_daemon.ftrace.dispatch import on_cpu
from kernel_daemon.task import running_as
from tests.kernel_helpers import (BASH, T, booted, cat_bytes, echo, mask_str, modprobe, rmmod,
                                 t_show_all, write)
from tests.test_seq_snapshot import reads


@contextlib.contextmanager
def opened(vfs: Vfs, path: str) -> Iterator[OpenFile]:
    f = vfs.open(path, os.O_RDONLY)
    try:
        yield f
    finally:
        file_release(f)


def read_exactly(f: OpenFile, count: int) -> bytes:
    """Reads until ``count`` bytes came, none of them asking for more than is left."""
    out = b""
    while len(out) < count:
        chunk = file_read(f, count - len(out))
        assert chunk
        out += chunk
    return out


def read_to_end(f: OpenFile) -> bytes:
    out = []
    while chunk := file_read(f, 1 << 16):
        out.append(chunk)
    return b"".join(out)


def lines(kernel, which: Listing) -> list[bytes]:
    return t_show_all(kernel.ftrace, which).encode().splitlines(keepends=True)


def test_a_read_fills_one_page_of_whole_records():
    """A 64 KB read of available_filter_functions returns one page's worth: the records that
    fit in PAGE_SIZE - 1 bytes (seq_printf() keeps a byte for the NUL), none cut."""
    with booted() as k:
        every = lines(k, Listing.AVAILABLE)
        with opened(mount(k), f"{T}/available_filter_functions") as f:
            first = file_read(f, 1 << 16)
        fit = 0
        while sum(map(len, every[:fit + 1])) < PAGE_SIZE:
            fit += 1
        assert first == b"".join(every[:fit])
        assert PAGE_SIZE - 100 < len(first) < PAGE_SIZE


@pytest.mark.parametrize("size", [1, 7, 50, PAGE_SIZE - 1, 1 << 16])
def test_reads_of_any_size_put_each_listing_together(size):
    """With nothing changing between them, reads of ``size`` bytes (a record cut between two
    reads, a page filled by Fill:) give the listing a single walk prints."""
    with booted(core_functions=1024) as k:
        modprobe(k, "uinput")
        names = k.ftrace.pages.groups[0].names[:300:3].tolist()
        echo(k, " ".join(names), "set_ftrace_filter")
        echo(k, "function", "current_tracer")
        vfs = mount(k)
        for which in Listing:
            with opened(vfs, f"{T}/{which.value}") as f:
                out = []
                while chunk := file_read(f, size):
                    out.append(chunk)
            assert b"".join(out) == b"".join(lines(k, which)), which


def test_a_module_loaded_between_two_reads_shows_in_the_second():
    """Module records come after the core kernel's: a reader half-way through the core
    kernel's records when uinput loads reads uinput's functions at the end."""
    with booted() as k:
        vfs = mount(k)
        with opened(vfs, f"{T}/available_filter_functions") as f:
            first = file_read(f, 1 << 16)
            modprobe(k, "uinput")
            rest = read_to_end(f)
        now = lines(k, Listing.AVAILABLE)
        assert first + rest == b"".join(now)
        assert rest.endswith(b"".join(line for line in now if line.endswith(b"[uinput]\n")))


def test_a_module_unloaded_before_the_index_shifts_the_records_after_it():
    """A reader in uinput's records when dummy (loaded before uinput) goes: the next read
    starts at the same record index of the list without dummy's records, so as many of
    uinput's records as dummy had are never shown."""
    with booted() as k:
        modprobe(k, "dummy")
        modprobe(k, "uinput")
        vfs = mount(k)
        before = lines(k, Listing.AVAILABLE)
        uinput = [i for i, line in enumerate(before) if line.endswith(b"[uinput]\n")]
        index = uinput[2]  # two of uinput's lines read
        with opened(vfs, f"{T}/available_filter_functions") as f:
            head = read_exactly(f, sum(map(len, before[:index])))
            rmmod(k, "dummy")
            rest = read_to_end(f)
        after = lines(k, Listing.AVAILABLE)
        dummy = sum(line.endswith(b"[dummy]\n") for line in before)
        assert head == b"".join(before[:index])
        assert rest == b"".join(after[index:])
        assert rest.count(b"[uinput]") == len(uinput) - 2 - dummy > 0


def test_a_filter_write_between_two_reads_shows_a_record_again():
    """set_ftrace_filter lists b and d; the reader has read b's line when a, before b in
    record order, joins the filter: record index 1 is b again, then d, and a never shows."""
    with booted() as k:
        a, b, c, d = k.ftrace.pages.groups[0].names[:4].tolist()
        assert echo(k, f"{b} {d}", "set_ftrace_filter") == []
        with opened(mount(k), f"{T}/set_ftrace_filter") as f:
            first = file_read(f, len(b) + 1)
            assert echo(k, a, "set_ftrace_filter", append=True) == []
            rest = read_to_end(f)
        assert first == f"{b}\n".encode()
        assert rest == f"{b}\n{d}\n".encode()
        assert lines(k, Listing.FILTER) == [f"{n}\n".encode() for n in (a, b, d)]


def test_the_rest_of_a_cut_record_is_copied_as_it_was_printed():
    """A read that ends inside enabled_functions' line leaves the rest of that line in the
    seq_file's buffer: the next read copies it with the count it was printed with, then
    starts again at the next record, printed as it is then."""
    with booted() as k:
        names = k.ftrace.pages.groups[0].names[:2].tolist()
        echo(k, " ".join(names), "set_ftrace_filter")
        echo(k, "function", "current_tracer")
        with opened(mount(k), f"{T}/enabled_functions") as f:
            first = file_read(f, 3)
            echo(k, " ".join(names), "set_ftrace_notrace")  # both counts go to 0
            rest = read_to_end(f)
        assert first + rest == f"{names[0]} (1)\n".encode()


def test_a_record_larger_than_a_page_doubles_the_buffer_for_the_reads_after():
    """seq_read(): a record that does not fit in m->size doubles it (m->size <<= 1) and is
    printed again; the buffer stays doubled, so later reads fill up to 8191 bytes."""
    records = [b"x" * 5000 + b"\n", b"y" * 3000 + b"\n", b"z" * 3000 + b"\n", b"w\n"]
    m = SeqFile(SeqSnapshot(lambda: records).operations())
    first = seq_read(m, 1 << 20, 0)
    assert first == records[0] + records[1] and m.size == 2 * PAGE_SIZE
    assert seq_read(m, 1 << 20, len(first)) == records[2] + records[3]


def test_tracing_cpumask_reads_its_whole_nr_cpus_plus_one_buffer():
    """tracing_cpumask_read(): simple_read_from_buffer() of mask_str[NR_CPUS + 1], NR_CPUS
    4096 (CONFIG_MAXSMP): the mask, its newline, then NULs to the end of the buffer."""
    with booted(cpus=4) as k:
        with opened(mount(k), f"{T}/tracing_cpumask") as f:
            first = file_read(f, 3)
            rest = read_to_end(f)
        assert NR_CPUS == 4096
        assert first == b"f\n\0" and first + rest == mask_str("f\n").encode()


@pytest.mark.parametrize("offset", [0, 5])
def test_a_start_that_fails_after_taking_its_lock_is_stopped_all_the_same(offset):
    """3.6's seq_read() and traverse() call ->stop() after an ERR_PTR ->start() too: a
    start that fails holding ftrace_lock must not leave it held (read at 0: seq_read's
    fill; at another position: traverse())."""
    lock = threading.Lock()

    def start(pos: int) -> None:
        lock.acquire()
        raise KernelError(errno.ENODEV)

    m = SeqFile(SeqOperations(start, lambda v, pos: (None, pos + 1),
                              lambda v: lock.release(), lambda v: b"x\n"))
    with pytest.raises(KernelError):
        seq_read(m, PAGE_SIZE, offset)
    assert not lock.locked()


def test_proc_modules_reads_the_module_at_its_index_of_the_list_as_it_is_now():
    """m_start(): seq_list_start(&modules, *pos) at each read, the list newest first: a
    reader that read uinput's line (index 0) when fat loads reads index 1 next, uinput's
    line again, then dummy's; fat's never shows."""
    with booted() as k:
        modprobe(k, "dummy")
        modprobe(k, "uinput")
        vfs = mount(k)
        with opened(vfs, "/proc/modules") as f:
            before = read_to_end(f).splitlines(keepends=True)
        with opened(vfs, "/proc/modules") as f:
            first = read_exactly(f, len(before[0]))
            modprobe(k, "fat")
            rest = read_to_end(f)
        assert first.startswith(b"uinput ") and first == before[0]
        assert rest == b"".join(before)


def test_proc_modules_skips_the_module_after_one_unloaded_before_the_index():
    """uinput's line read, uinput goes: index 1 is past the end of [dummy], which the
    reader never sees."""
    with booted() as k:
        modprobe(k, "dummy")
        modprobe(k, "uinput")
        with opened(mount(k), "/proc/modules") as f:
            first = file_read(f, 1 << 16).splitlines(keepends=True)[0]
            f.llseek(len(first), os.SEEK_SET)
            rmmod(k, "uinput")
            rest = read_to_end(f)
        assert first.startswith(b"uinput ") and rest == b""


def test_proc_kallsyms_finds_a_module_symbol_by_its_index_down_the_module_list():
    """update_iter(): past the core's symbols, module_get_kallsym() counts down the list
    as it is at each read, newest first, each module's null symbol (core_symtab[0], shown
    as nothing) included.  A reader at uinput's second symbol when dummy loads reads, at
    the same index, dummy's second symbol, then the rest of dummy's and all of uinput's."""
    with booted() as k:
        modprobe(k, "uinput")
        vfs = mount(k)
        with opened(vfs, "/proc/kallsyms") as f:
            before = read_to_end(f).splitlines(keepends=True)
        core = [line for line in before if b"\t[" not in line]
        with opened(vfs, "/proc/kallsyms") as f:
            head = read_exactly(f, sum(map(len, before[:len(core) + 1])))
            modprobe(k, "dummy")
            rest = read_to_end(f)
        with opened(vfs, "/proc/kallsyms") as f:
            after = read_to_end(f).splitlines(keepends=True)
        dummy = [line for line in after if line.endswith(b"\t[dummy]\n")]
        uinput = [line for line in after if line.endswith(b"\t[uinput]\n")]
        assert after == core + dummy + uinput and len(dummy) > 1
        assert head == b"".join(core) + uinput[0]
        assert rest == b"".join(dummy[1:] + uinput)


@pytest.mark.parametrize("size", [1, 100, PAGE_SIZE - 1, 1 << 16])
def test_proc_kallsyms_run_reads_as_s_next_and_s_show_one_symbol_at_a_time(size):
    """s_run(), a slice of a symbol table's records, leaves each read as one s_next() and
    s_show() per symbol would: the same bytes, index, buffered count and buffer size."""
    with booted() as k:
        modprobe(k, "dummy")
        modprobe(k, "uinput")
        op = k.kallsyms.kallsyms_op()
        one_at_a_time = SeqOperations(op.start, op.next, op.stop, op.show)
        got = reads(op, size)
        assert got == reads(one_at_a_time, size)
        assert b"".join(chunk for chunk, *_ in got).endswith(b"\t[dummy]\n")


def test_a_page_of_trace_ends_before_an_event_it_cannot_hold_whole():
    """s_show() prints one event a record, whatever lines print_trace_line() gives it: a
    page of trace (and of per_cpu/cpu0/trace) that cannot hold a two-line marker's whole
    record ends before it, not between its lines, and the next read starts with it."""
    with booted() as k:
        vfs = mount(k)
        line = b"x" * 540 + b"\n"
        marker = b"a\n" + b"b" * 700 + b"\n"
        with running_as(BASH), on_cpu(0):
            write(vfs, f"{T}/trace_marker", line)
            one = cat_bytes(vfs, f"{T}/trace")
            event = len(one.splitlines(keepends=True)[-1])
            header = len(one) - event
            # The most single-line events after which the marker's first line fits.
            n = (PAGE_SIZE - 1 - header - (event - len(line) + 2)) // event
            for _ in range(n - 1):
                write(vfs, f"{T}/trace_marker", line)
            write(vfs, f"{T}/trace_marker", marker)
        page = header + n * event
        assert page + event - len(line) + len(marker) >= PAGE_SIZE  # the record does not fit
        for path in (f"{T}/trace", f"{T}/per_cpu/cpu0/trace"):
            whole = cat_bytes(vfs, path)
            assert len(whole) == page + event - len(line) + len(marker) and n < 10
            with opened(vfs, path) as f:
                first = file_read(f, 1 << 16)
                rest = read_to_end(f)
            assert first == whole[:page] and rest == whole[page:], path
            assert rest.count(b"\n") == 2 and rest.endswith(b" tracing_mark_write: " + marker)
