"""per_cpu/cpuN/trace_pipe_raw and the events/ files that describe it, read as trace-cmd
and libtraceevent read them: the pages are decoded here by a small decoder of the test's
own that takes every offset, size and type number from the text of events/header_page,
events/header_event and events/ftrace/*/format, not from the daemon's code."""

from __future__ import annotations

import errno
import os
import re
from typing import NamedTuple

import pytest

from clients.api import Client
from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.dispatch import on_cpu
from kernel_daemon.task import Task, running_as
from kernel_daemon.tracefs.files import file_read, file_release
from kernel_daemon.tracefs.tree import mount
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.kernel_helpers import BASH, COMMON_FORMAT, T, booted, cat, invoke, write

PAGE_SIZE = 4096
# kbuffer-parse.c's flags in the top bits of a page's commit, which no file describes.
MISSING_EVENTS = 1 << 31
MISSING_STORED = 1 << 30


# -- the decoder ------------------------------------------------------------------------

class FieldDesc(NamedTuple):
    offset: int
    size: int
    signed: bool
    type: str = ""


FIELD = re.compile(r"^\tfield:\s*(.+?)\s+(\w+)(?:\[\d*\])?;\toffset:(\d+);\tsize:(\d+);"
                   r"\tsigned:(\d+);$", re.M)


def parse_fields(text: str) -> dict[str, FieldDesc]:
    return {name: FieldDesc(int(offset), int(size), signed == "1", ctype)
            for ctype, name, offset, size, signed in FIELD.findall(text)}


class EventFormat(NamedTuple):
    name: str
    id: int
    fields: dict[str, FieldDesc]


def parse_format(text: str) -> EventFormat:
    name = re.search(r"^name: (\S+)$", text, re.M).group(1)
    event_id = int(re.search(r"^ID: (\d+)$", text, re.M).group(1))
    return EventFormat(name, event_id, parse_fields(text))


class EntryHeader(NamedTuple):
    type_len_bits: int
    time_delta_bits: int
    padding: int
    time_extend: int
    data_max: int


def parse_header_event(text: str) -> EntryHeader:
    def number(pattern: str) -> int:
        return int(re.search(pattern, text).group(1))
    return EntryHeader(number(r"type_len\s*:\s*(\d+) bits"),
                       number(r"time_delta\s*:\s*(\d+) bits"),
                       number(r"padding\s*: type == (\d+)"),
                       number(r"time_extend\s*: type == (\d+)"),
                       number(r"data max type_len\s*== (\d+)"))


class Formats(NamedTuple):
    page: dict[str, FieldDesc]
    entry: EntryHeader
    events: dict[int, EventFormat]


def value(data: bytes, field: FieldDesc) -> int:
    return int.from_bytes(data[field.offset:field.offset + field.size], "little",
                          signed=field.signed)


class Decoded(NamedTuple):
    name: str
    ts: int
    fields: dict[str, int | bytes]


class Page(NamedTuple):
    events: list[Decoded]
    time_extends: int
    missed: int | None  # None: no events missed; 0: missed, count not stored
    length: int  # bytes of events


def decode_page(page: bytes, formats: Formats) -> Page:
    ts = value(page, formats.page["timestamp"])
    commit = value(page, formats.page["commit"]) & 0xFFFFFFFF
    length = commit & ~(MISSING_EVENTS | MISSING_STORED)
    start = formats.page["data"].offset
    data = page[start:start + length]
    entry = formats.entry
    events, extends, pos = [], 0, 0
    while pos < len(data):
        word = int.from_bytes(data[pos:pos + 4], "little")
        type_len = word & ((1 << entry.type_len_bits) - 1)
        delta = word >> entry.type_len_bits
        array0 = int.from_bytes(data[pos + 4:pos + 8], "little")
        if type_len == entry.padding:
            if not delta:
                break
            pos += 4 + array0
            continue
        if type_len == entry.time_extend:
            ts += delta + (array0 << entry.time_delta_bits)
            extends += 1
            pos += 8
            continue
        assert type_len <= entry.data_max, f"type {type_len} in a page"
        if type_len:
            size, body = type_len * 4, pos + 4
        else:
            size, body = (array0 - 4 + 3) & ~3, pos + 8
        ts += delta
        record = data[body:body + size]
        common_type = next(iter(formats.events.values())).fields["common_type"]
        fmt = formats.events[value(record, common_type)]
        fields: dict[str, int | bytes] = {}
        for name, field in fmt.fields.items():
            if field.size:
                fields[name] = value(record, field)
            elif field.type == "char":  # a string: the rest of the record, up to its NUL
                fields[name] = record[field.offset:].split(b"\0", 1)[0]
            else:  # another dynamic array: the rest of the record
                fields[name] = record[field.offset:]
        events.append(Decoded(fmt.name, ts, fields))
        pos = body + size
    missed = None
    if commit & MISSING_EVENTS:
        missed = (int.from_bytes(page[start + length:start + length + 8], "little")
                  if commit & MISSING_STORED else 0)
    return Page(events, extends, missed, length)


def load_formats(cat_text, names: tuple[str, ...] = ("function", "print")) -> Formats:
    """The decoder's description of the events ``names``, from the files:
    ``cat_text(relative path)``."""
    events = {}
    for name in names:
        fmt = parse_format(cat_text(f"events/ftrace/{name}/format"))
        events[fmt.id] = fmt
    return Formats(parse_fields(cat_text("events/header_page")),
                   parse_header_event(cat_text("events/header_event")), events)


# -- in-process helpers -----------------------------------------------------------------

def formats_of(vfs) -> Formats:
    return load_formats(lambda path: cat(vfs, f"{T}/{path}"))


def raw_read(vfs, cpu: int, size: int = PAGE_SIZE, flags: int = os.O_RDONLY) -> bytes:
    f = vfs.open(f"{T}/per_cpu/cpu{cpu}/trace_pipe_raw", flags)
    try:
        return file_read(f, size)
    finally:
        file_release(f)


LINE = re.compile(r"^ +(\S+)-(\d+) +\[(\d{3})\] .... +(\d+)\.(\d{6}): (.*)$", re.M)


def text_events(vfs, cpu: int) -> list[tuple[int, int, str]]:
    """(pid, µs, what) of each line of per_cpu/cpuN/trace."""
    text = cat(vfs, f"{T}/per_cpu/cpu{cpu}/trace")
    return [(int(pid), int(secs) * 1_000_000 + int(usecs), what)
            for _, pid, _, secs, usecs, what in LINE.findall(text)]


def address(k, name: str) -> int:
    return k.kallsyms.lookup_name(name)[0].addr


def return_address(k, caller: str, callee: str) -> int:
    """The address inside ``caller`` just after its call to ``callee``: never its start."""
    addr = k.kallsyms.return_address(caller, callee)
    assert address(k, caller) < addr < address(k, caller) + k.kallsyms.lookup_name(caller)[0].size
    return addr


def function_tracer(k):
    vfs = mount(k)
    write(vfs, f"{T}/current_tracer", b"function\n")
    return vfs


# -- the files --------------------------------------------------------------------------

FUNCTION_FORMAT = (
    "name: function\n"
    "ID: 1\n"
    + COMMON_FORMAT +
    "\tfield:unsigned long ip;\toffset:16;\tsize:8;\tsigned:0;\n"
    "\tfield:unsigned long parent_ip;\toffset:24;\tsize:8;\tsigned:0;\n"
    "\n"
    'print fmt: " %lx <-- %lx", REC->ip, REC->parent_ip\n')


def test_the_files_read_as_3_6_prints_them_on_x86_64():
    with booted(cpus=2) as k:
        vfs = mount(k)
        assert {(e.name, e.mode) for e in vfs.list_dir(f"{T}/per_cpu/cpu1")} >= {
            ("trace_pipe_raw", 0o444)}
        assert [e.name for e in vfs.list_dir(f"{T}/events")] == [
            "enable", "ftrace", "header_event", "header_page"]
        # function has a reg method (perf), so an id file; print has none.
        assert [e.name for e in vfs.list_dir(f"{T}/events/ftrace/function")] == ["format", "id"]
        assert [e.name for e in vfs.list_dir(f"{T}/events/ftrace/print")] == ["format"]
        assert cat(vfs, f"{T}/events/ftrace/function/id") == "1\n"
        assert cat(vfs, f"{T}/events/ftrace/function/format") == FUNCTION_FORMAT
        assert cat(vfs, f"{T}/events/ftrace/print/format") == FUNCTION_FORMAT.replace(
            "function", "print").replace("ID: 1", "ID: 5").replace(
            "\tfield:unsigned long parent_ip;\toffset:24;\tsize:8;\tsigned:0;",
            "\tfield:char buf;\toffset:24;\tsize:0;\tsigned:1;").replace(
            '" %lx <-- %lx", REC->ip, REC->parent_ip', '"%08lx %s", REC->ip, REC->buf')
        assert cat(vfs, f"{T}/events/header_page") == (
            "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
            "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
            "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
            "\tfield: char data;\toffset:16;\tsize:4080;\tsigned:1;\n")
        assert cat(vfs, f"{T}/events/header_event") == (
            "# compressed entry header\n"
            "\ttype_len    :    5 bits\n"
            "\ttime_delta  :   27 bits\n"
            "\tarray       :   32 bits\n"
            "\n"
            "\tpadding     : type == 29\n"
            "\ttime_extend : type == 30\n"
            "\tdata max type_len  == 28\n")
        # show_header(): only a read at position 0 prints; a short one leaves the rest.
        f = vfs.open(f"{T}/events/header_event", os.O_RDONLY)
        assert file_read(f, 10) == b"# compress"
        assert file_read(f, 4096) == b""
        file_release(f)
        f = vfs.open(f"{T}/per_cpu/cpu0/trace_pipe_raw", os.O_RDONLY)
        with pytest.raises(KernelError) as exc:  # nonseekable_open()
            f.llseek(0, os.SEEK_SET)
        assert exc.value.errno == errno.ESPIPE
        file_release(f)


def test_function_events_decode_to_what_trace_prints_and_are_consumed():
    with booted(cpus=2) as k:
        vfs = function_tracer(k)
        formats = formats_of(vfs)
        invoke(k, "vfs_write", "sys_write", count=3, cpu=1)
        invoke(k, "vfs_read", "sys_read", cpu=1, task=Task(777, "reader"))
        text = text_events(vfs, 1)
        page = raw_read(vfs, 1)
        assert len(page) == PAGE_SIZE
        decoded = decode_page(page, formats)
        assert decoded.missed is None and decoded.time_extends == 0
        assert [(e.name, e.fields["ip"], e.fields["parent_ip"], e.fields["common_pid"])
                for e in decoded.events] == [
            ("function", address(k, "vfs_write"), return_address(k, "sys_write", "vfs_write"),
             BASH.pid)] * 3 + [
            ("function", address(k, "vfs_read"), return_address(k, "sys_read", "vfs_read"), 777)]
        assert {(e.fields["common_flags"], e.fields["common_preempt_count"],
                 e.fields["common_padding"]) for e in decoded.events} == {(0, 0, 0)}
        assert [pid for pid, _, _ in text] == [e.fields["common_pid"] for e in decoded.events]
        for (_, usecs, _), event in zip(text, decoded.events, strict=True):
            assert abs(event.ts / 1000 - usecs) <= 1
        # Consumed: the next read returns nothing, and neither trace_pipe nor trace has them.
        assert raw_read(vfs, 1) == b""
        pipe = vfs.open(f"{T}/per_cpu/cpu1/trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        with pytest.raises(KernelError) as exc:
            file_read(pipe, 4096)
        assert exc.value.errno == errno.EAGAIN
        file_release(pipe)
        assert "entries-in-buffer/entries-written: 0/0" in cat(vfs, f"{T}/trace")


def test_a_short_read_gets_what_fits_then_the_rest_of_the_same_page():
    """tracing_buffers_read(): ring_buffer_read_page() takes the events that fit in the
    count less the page header; the reads after hand out the rest of that page (up to
    PAGE_SIZE) before the ring buffer is read again."""
    with booted(cpus=1) as k:
        vfs = function_tracer(k)
        formats = formats_of(vfs)
        invoke(k, "vfs_write", "sys_write", count=5)
        f = vfs.open(f"{T}/per_cpu/cpu0/trace_pipe_raw", os.O_RDONLY)
        try:
            assert file_read(f, 16) == b""  # no room past the header: nothing read
            first = file_read(f, 100)  # 84 bytes of data: two 36-byte events
            assert len(first) == 100
            assert len(decode_page(first.ljust(PAGE_SIZE, b"\0"), formats).events) == 2
            rest = file_read(f, PAGE_SIZE)
            assert len(rest) == PAGE_SIZE - 100  # the same page's rest, nothing consumed
            assert k.ring_buffer.counters(0).entries_in_buffer == 3
            assert len(decode_page(file_read(f, PAGE_SIZE), formats).events) == 3
            assert file_read(f, PAGE_SIZE) == b""
        finally:
            file_release(f)


def test_markers_as_print_entries_small_and_large():
    with booted(cpus=1) as k:
        vfs = function_tracer(k)
        formats = formats_of(vfs)
        long_text = b"x" * 202 + b"\n"  # over 112 bytes: its length in the next word
        with running_as(Task(4242, "logger")), on_cpu(0):
            write(vfs, f"{T}/trace_marker", b"hello, world!!\n")
            write(vfs, f"{T}/trace_marker", long_text)
        page = decode_page(raw_read(vfs, 0), formats)
        # _THIS_IP_: inside tracing_mark_write, after its trace_buffer_lock_reserve() call.
        ip = return_address(k, "tracing_mark_write", "trace_buffer_lock_reserve")
        assert [(e.name, e.fields["ip"], e.fields["buf"], e.fields["common_pid"])
                for e in page.events] == [("print", ip, b"hello, world!!\n", 4242),
                                          ("print", ip, long_text, 4242)]
        # tracing_mark_write() reserves sizeof(struct print_entry) + cnt + 2 bytes: 41 in
        # 11 words after a 4-byte header; 229 in 58 words after a header and a length word.
        assert page.length == (4 + 44) + (8 + 232)
        with running_as(Task(4242, "logger")), on_cpu(0):
            write(vfs, f"{T}/trace_marker", b"no newline")  # the kernel appends one
        [event] = decode_page(raw_read(vfs, 0), formats).events
        assert event.fields["buf"] == b"no newline\n"


def test_a_gap_over_27_bits_of_nanoseconds_takes_a_time_extend():
    with booted(cpus=1) as k:
        vfs = function_tracer(k)
        formats = formats_of(vfs)
        rb = k.ring_buffer
        base = 5_000_000_000
        stamps = [base, base + 100, base + 100 + (1 << 27), base + 3 * (1 << 32) + 7,
                  base + 3 * (1 << 32) + 8]
        for ts in stamps:
            rb.write_function_event(0, ts, 1, 0xffffffff81000000 + ts % 4096, 0)
        page = decode_page(raw_read(vfs, 0), formats)
        assert [e.ts for e in page.events] == stamps
        assert page.time_extends == 2
        assert page.length == 5 * 36 + 2 * 8


def test_each_cpu_file_reads_its_own_cpu():
    with booted(cpus=2) as k:
        vfs = function_tracer(k)
        formats = formats_of(vfs)
        invoke(k, "vfs_write", "sys_write", count=2, cpu=0)
        invoke(k, "vfs_read", "sys_read", count=3, cpu=1)
        cpu0 = decode_page(raw_read(vfs, 0), formats).events
        assert [e.fields["ip"] for e in cpu0] == [address(k, "vfs_write")] * 2
        # CPU 1's events are still there, for trace and for its own file.
        assert [what for _, _, what in text_events(vfs, 1)] == ["vfs_read <-sys_read"] * 3
        cpu1 = decode_page(raw_read(vfs, 1), formats).events
        assert [e.fields["ip"] for e in cpu1] == [address(k, "vfs_read")] * 3


@pytest.mark.parametrize("flags", [os.O_RDONLY, os.O_RDONLY | os.O_NONBLOCK])
def test_an_empty_buffer_reads_0_bytes_at_once(flags):
    """3.6's tracing_buffers_read() returns 0 when ring_buffer_read_page() finds nothing:
    no EAGAIN with O_NONBLOCK, no waiting without it (later kernels do both)."""
    with booted(cpus=2) as k:
        vfs = function_tracer(k)
        invoke(k, "vfs_write", cpu=1)
        assert raw_read(vfs, 0, flags=flags) == b""
        assert raw_read(vfs, 1, size=0, flags=flags) == b""  # a count of 0 reads nothing
        assert len(raw_read(vfs, 1, flags=flags)) == PAGE_SIZE


def test_overwritten_events_are_flagged_with_their_count():
    with booted(cpus=1) as k:
        vfs = function_tracer(k)
        formats = formats_of(vfs)
        write(vfs, f"{T}/buffer_size_kb", b"4\n")
        capacity = k.ring_buffer.counters(0).capacity
        invoke(k, "vfs_write", "sys_write", count=capacity + 9)
        first = decode_page(raw_read(vfs, 0), formats)
        assert first.missed == 9
        assert len(first.events) == 4080 // 36
        assert decode_page(raw_read(vfs, 0), formats).missed is None


# -- through a daemon -------------------------------------------------------------------

def test_trace_pipe_raw_through_the_daemon_file_session(daemon):
    with Client(daemon.address) as client:
        formats = load_formats(lambda path: client.read_file(f"{T}/{path}").decode())
        client.write_file(f"{T}/current_tracer", "function\n")
        done = client.invoke("vfs_write", "sys_write", cpu=1, repeat=4)
        assert done.traced == 4
        kallsyms = client.read_file("/proc/kallsyms").decode()
        sys_write = int(re.search(r"^([0-9a-f]+) T sys_write$", kallsyms, re.M).group(1), 16)
        # sys_write ends where the next symbol starts (vmlinux's text has no holes).
        after = min(addr for addr in (int(line[:16], 16) for line in kallsyms.splitlines())
                    if addr > sys_write)
        with client.open(f"{T}/per_cpu/cpu1/trace_pipe_raw") as f:
            page = f.read(PAGE_SIZE)
            assert f.read(PAGE_SIZE) == b""
        events = decode_page(page, formats).events
        [(ip, parent_ip)] = {(e.fields["ip"], e.fields["parent_ip"]) for e in events}
        assert len(events) == 4
        # The parent ip is the return address inside sys_write, not its first byte.
        assert ip == done.ip and sys_write < parent_ip < after
        assert client.read_file(f"{T}/per_cpu/cpu1/trace_pipe_raw") == b""
        assert client.read_file(f"{T}/trace_pipe", nonblock=True) == b""
