"""The trace ring buffers' shared-memory layout, shared by the writer and other-process readers.

Model of the per-CPU buffers of ``kernel/trace/ring_buffer.c`` (3.6) and of the entries
``kernel/trace/trace.h`` puts in them (``struct ftrace_entry``, ``struct print_entry``).
Each starts with ``struct trace_entry`` (``include/linux/ftrace_event.h``: type, flags,
preempt_count, pid, padding), which ``tracing_generic_entry_update()`` of 3.6 trace.c fills: no
task name.  The output looks the pid up in ``saved_cmdlines`` when it prints a line
(``trace_find_cmdline()``).

Simplified from the kernel, on purpose:

* **Fixed-size records.**  The kernel packs variable-length events (a 4-byte header, then
  the entry: 32 bytes for a function event on x86_64) into 4 KiB pages.  Here every record
  is ``RB_EVENT_SIZE`` = 64 bytes, so a buffer of the same ``buffer_size_kb`` holds about
  half as many function events as the kernel's (22567 instead of about 40000 at the
  default 1408 KB).  The byte size is the kernel's: ``nr_pages = DIV_ROUND_UP(size,
  BUF_PAGE_SIZE)``, at least 2 pages, then divided into records.  ``trace_pipe_raw``
  builds the kernel's pages from the records as it reads them
  (:mod:`kernel_daemon.trace.ring_buffer_page`).
* **Markers and stacks span records.**  A ``trace_marker`` write is one ``TRACE_PRINT``
  head record followed by ``RB_TYPE_CONT`` records carrying 56 bytes of text each (the
  kernel's 1024-byte limit needs at most 20 records); a ``TRACE_STACK`` event
  (``func_stack_trace``) is one head record followed by records carrying its frames, 7
  return addresses each (at most 506, what an entry of ``BUF_MAX_DATA_SIZE`` holds: 74
  records).  The
  head's ``len`` is the bytes its continuation records carry.  An event is always
  overwritten or consumed whole.
* **Overwrite is per event.**  The kernel drops the oldest *page* when a writer catches up
  with the reader; here the oldest *event*, so the overrun count is exact per event.

One directory segment (``<namespace>.rbdir``) holds a global header and one header per CPU;
each CPU's records live in ``<namespace>.rb<cpu>``.  Positions (``head``, ``tail``) are
record sequence numbers that only grow until the buffer is reallocated (which changes its
``buffer_id``); a record's slot is ``pos % capacity``.
Each CPU header is guarded by a seqlock (``generation`` + ``writers``) like the record page
directory (``kernel_daemon.ftrace.records``): a reader copies the header and the records and
keeps the copy only if no writer was active and the generation did not move.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from functools import partial
from itertools import repeat
from operator import attrgetter
from typing import NamedTuple

import numpy as np

from kernel_daemon.strings import ULONG_MAX

# enum trace_type, kernel/trace/trace.h (3.6), up to TRACE_USER_STACK.
(TRACE_FN, TRACE_CTX, TRACE_WAKE, TRACE_STACK, TRACE_PRINT, TRACE_BPRINT, TRACE_MMIO_RW,
 TRACE_MMIO_MAP, TRACE_BRANCH, TRACE_GRAPH_RET, TRACE_GRAPH_ENT, TRACE_USER_STACK) = range(1, 13)
# Model only: a record that continues the TRACE_PRINT (text) or TRACE_STACK (frames)
# before it.
RB_TYPE_CONT = 0xFFFF

# enum trace_flag_type (3.6): the low byte of a record's ``flags``; the high byte is
# ``trace_entry.preempt_count``, which the kernel keeps in a byte of its own.
TRACE_FLAG_IRQS_OFF = 0x01
TRACE_FLAG_IRQS_NOSUPPORT = 0x02
TRACE_FLAG_NEED_RESCHED = 0x04
TRACE_FLAG_HARDIRQ = 0x08
TRACE_FLAG_SOFTIRQ = 0x10

PAGE_SIZE = 4096
# BUF_PAGE_SIZE: a data page minus its header (u64 time_stamp + local_t commit).
BUF_PAGE_SIZE = PAGE_SIZE - 16
# ring_buffer.c: BUF_MAX_DATA_SIZE, the largest entry ring_buffer_lock_reserve() takes (a
# page's data less an event's header and its length word).
BUF_MAX_DATA_SIZE = BUF_PAGE_SIZE - 2 * 4
# kernel/trace/trace.c: TRACE_BUF_SIZE_DEFAULT, "16384 * 88 (sizeof(entry))" = 1408 KB.
TRACE_BUF_SIZE_DEFAULT = 1441792
# ring_buffer_alloc(1) before expansion: rounded up to the 2-page minimum (reads as 7 KB).
RB_UNEXPANDED_SIZE = 2 * BUF_PAGE_SIZE
# kernel/trace/trace.h: TRACE_BUF_SIZE, the most a trace_marker write records.
TRACE_BUF_SIZE = 1024

RB_EVENT = np.dtype([
    ("type", "<u2"),
    ("len", "<u2"),  # TRACE_PRINT, TRACE_STACK: bytes in the records that follow
    ("pid", "<i4"),
    ("ts", "<u8"),  # trace clock, ns
    ("ip", "<u8"),
    ("parent_ip", "<u8"),
    ("cpu", "<u2"),
    ("flags", "<u2"),
    ("pad", "V28"),
])
RB_EVENT_SIZE = RB_EVENT.itemsize
# An RB_TYPE_CONT record: everything after the first 8 bytes is text.
RB_TEXT_OFFSET = 8
RB_TEXT = np.dtype([("type", "<u2"), ("len", "<u2"), ("pad", "V4"),
                    ("text", f"S{RB_EVENT_SIZE - RB_TEXT_OFFSET}")])
RB_TEXT_PER_RECORD = RB_EVENT_SIZE - RB_TEXT_OFFSET
# A marker of TRACE_BUF_SIZE bytes plus the newline the kernel may append.
MAX_MARKER_RECORDS = 1 + math.ceil((TRACE_BUF_SIZE + 1) / RB_TEXT_PER_RECORD)
# kernel/trace/trace.c: FTRACE_STACK_MAX_ENTRIES, the frames the per-CPU ftrace_stack holds.
FTRACE_STACK_MAX_ENTRIES = PAGE_SIZE // 8
# A stack's frames, as the records carry them: unsigned longs.
STACK_FRAME = np.dtype("<u8")
# The most frames a stack event holds: struct stack_entry (16 bytes) with its callers, the
# frames and save_stack_trace()'s ULONG_MAX, within BUF_MAX_DATA_SIZE (trace_entries
# asserts it of stack_entry_size()): 506.
MAX_STACK_FRAMES = (BUF_MAX_DATA_SIZE - 16) // STACK_FRAME.itemsize - 1
MAX_STACK_RECORDS = 1 + math.ceil(MAX_STACK_FRAMES * STACK_FRAME.itemsize / RB_TEXT_PER_RECORD)
# The most records one event takes.
MAX_EVENT_RECORDS = max(MAX_MARKER_RECORDS, MAX_STACK_RECORDS)
assert RB_EVENT_SIZE == 64 and RB_TEXT.itemsize == RB_EVENT_SIZE
assert RB_TEXT_PER_RECORD % STACK_FRAME.itemsize == 0  # a frame never straddles records

# The directory segment: u64 words.  Global words first, then one block per CPU.
DIR_MAGIC = 0x3342525F4D495354  # "TSIM_RB3": per-CPU sizes; records without a comm
W_MAGIC, W_NR_CPUS, W_EVENT_SIZE, W_RECORD_DISABLED, W_EXPANDED, W_TRACE_BUF_SIZE = range(6)
DIR_GLOBAL_WORDS = 16
CPU_WORDS = 16
# Per-CPU block (struct ring_buffer_per_cpu's counters):
C_GENERATION, C_WRITERS, C_HEAD, C_TAIL, C_ENTRIES, C_OVERRUN, C_READ, C_CAPACITY, \
    C_BUFFER_ID = range(9)


def dir_segment_name(namespace: str) -> str:
    return f"{namespace}.rbdir"


def cpu_segment_name(namespace: str, cpu: int) -> str:
    return f"{namespace}.rb{cpu}"


def dir_size(nr_cpus: int) -> int:
    return (DIR_GLOBAL_WORDS + nr_cpus * CPU_WORDS) * 8


def cpu_words(words: np.ndarray, cpu: int) -> np.ndarray:
    """The header block of one CPU, a view into the directory's words."""
    base = DIR_GLOBAL_WORDS + cpu * CPU_WORDS
    return words[base:base + CPU_WORDS]


def rb_capacity(size_bytes: int) -> int:
    """Records a per-CPU buffer of ``size_bytes`` holds (``ring_buffer_resize``'s rounding:
    whole ``BUF_PAGE_SIZE`` pages, at least two)."""
    nr_pages = max(2, -(-size_bytes // BUF_PAGE_SIZE))
    return nr_pages * BUF_PAGE_SIZE // RB_EVENT_SIZE


class Event(NamedTuple):
    """One trace entry as an iterator sees it (``struct trace_entry`` + payload).

    No task name, as in the kernel: the output looks ``pid`` up when it prints.  ``flags``
    is ``trace_entry.flags | preempt_count << 8``; ``text`` is a marker's bytes
    (``print_entry.buf``) or a stack's frames (:func:`stack_frames`); ``lost_events`` is
    set, on the first event a consuming read
    returns from a CPU, to the events overwritten there since the previous read.
    """

    ts: int
    cpu: int
    pid: int
    type: int
    flags: int
    ip: int
    parent_ip: int
    text: bytes = b""
    lost_events: int = 0


# tuple.__new__ builds an Event from a row without NamedTuple's Python-level __new__,
# a third of the cost on the snapshot of a full buffer.
_new_event = partial(tuple.__new__, Event)


class Snapshot(NamedTuple):
    """A non-consuming read: events merged by timestamp, and ``get_total_entries()``."""

    events: list[Event]
    entries_in_buffer: int
    entries_written: int


class CpuCounters(NamedTuple):
    """``ring_buffer_per_cpu``'s counters as published in a CPU's header block."""

    head: int  # records ever written since the last reset
    tail: int  # position of the oldest unread record (always an event's first)
    entries: int  # events committed since the last reset (cpu_buffer->entries)
    overrun: int  # events overwritten before being read
    read: int  # events consumed
    capacity: int  # records
    buffer_id: int  # changes when the buffer is reallocated

    @classmethod
    def from_words(cls, block: np.ndarray) -> "CpuCounters":
        return cls(*(int(v) for v in block[C_HEAD:C_BUFFER_ID + 1]))

    @property
    def entries_in_buffer(self) -> int:
        """``ring_buffer_entries_cpu()``: entries - (overrun + read)."""
        return self.entries - self.overrun - self.read


def total_entries(counters: Iterable[CpuCounters]) -> tuple[int, int]:
    """``get_total_entries()`` (trace.c): (entries in buffer, that plus the overruns).

    Consumed events count in neither: after a ``trace_pipe`` read both numbers drop.
    """
    in_buffer = written = 0
    for c in counters:
        in_buffer += c.entries_in_buffer
        written += c.entries_in_buffer + c.overrun
    return in_buffer, written


def copy_ring(recs: np.ndarray, start: int, end: int) -> np.ndarray:
    """The records at positions [start, end), in order, as a contiguous copy."""
    capacity = len(recs)
    first = start % capacity
    count = end - start
    if first + count <= capacity:
        return recs[first:first + count].copy()
    return np.concatenate((recs[first:], recs[:first + count - capacity]))


def spans_records(types: np.ndarray) -> np.ndarray:
    """Which of the head records' ``types`` are events that may take continuation
    records: markers and stacks."""
    return (types == TRACE_PRINT) | (types == TRACE_STACK)


def event_records(heads: np.ndarray) -> np.ndarray:
    """Records each event occupies, from its head record."""
    lens = heads["len"].astype(np.int64)
    return np.where(spans_records(heads["type"]), 1 + -(-lens // RB_TEXT_PER_RECORD), 1)


def stack_frames(text: bytes) -> list[int]:
    """The frames ``trace_stack_print()`` prints of a ``TRACE_STACK`` event's ``text``
    (every frame recorded, as ``trace_pipe_raw`` lays them out): ``stack_entry.caller``
    up to the first ULONG_MAX, the one ``save_stack_trace()`` puts after the last frame
    (not in ``text``) or a frame's own."""
    frames = np.frombuffer(text, dtype=STACK_FRAME)
    stops = np.flatnonzero(frames == ULONG_MAX)
    return frames[:stops[0] if len(stops) else len(frames)].tolist()


def decode_events(recs: np.ndarray, limit: int | None = None) -> list[Event]:
    """Events from contiguous records that start at an event (at most ``limit``; the
    caller copied enough records for them to be whole)."""
    starts = np.flatnonzero(recs["type"] != RB_TYPE_CONT)
    if limit is not None:
        starts = starts[:limit]
    heads = recs[starts]
    ends = starts + event_records(heads)
    count = len(starts)
    texts: list[bytes] = [b""] * count
    # Markers and stacks with frames; a function event's len is 0.
    long_rows = np.flatnonzero(heads["len"])
    if len(long_rows):
        raw = recs.view(np.uint8).reshape(-1, RB_EVENT_SIZE)
        for row in long_rows.tolist():
            text = raw[int(starts[row]) + 1:int(ends[row]), RB_TEXT_OFFSET:].tobytes()
            texts[row] = text[:int(heads["len"][row])]
    rows = zip(heads["ts"].tolist(), heads["cpu"].tolist(), heads["pid"].tolist(),
               heads["type"].tolist(), heads["flags"].tolist(), heads["ip"].tolist(),
               heads["parent_ip"].tolist(), texts, repeat(0, count))
    return list(map(_new_event, rows))


def merge_events(per_cpu: Iterable[list[Event]]) -> list[Event]:
    """``__find_next_entry()``'s order: repeatedly the oldest head among the CPUs, the
    lowest CPU on a tie.  ``per_cpu`` must come in CPU order."""
    lists = [events for events in per_cpu if events]
    if len(lists) == 1:
        return lists[0]
    # heapq.merge breaks ties by input position, i.e. by CPU, as the kernel's strict '<' does.
    return list(heapq.merge(*lists, key=attrgetter("ts")))
