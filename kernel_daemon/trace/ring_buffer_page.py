"""The binary pages of ``per_cpu/cpuN/trace_pipe_raw``: ``struct buffer_data_page`` of
``kernel/trace/ring_buffer.c`` filled with ``struct ring_buffer_event``s, each holding an
entry of :mod:`kernel_daemon.trace.trace_entries`, x86_64 byte for byte; and the
``events/header_page`` and ``events/header_event`` texts that describe them.

3.6's tree in the index has no ring_buffer.c; this follows the 3.4 one
(CarbonROM/android_kernel_lge_mako), whose page and event format, ``ring_buffer_read_page()``
and header texts are those of 3.5 to 3.9 too.

A page is ``u64 time_stamp``, ``local_t commit`` (the bytes of data, with the
``RB_MISSED_*`` flags in its top bits) and ``BUF_PAGE_SIZE`` bytes of events.  An event is
a 32-bit header, ``type_len:5`` then ``time_delta:27``, and a 4-byte aligned payload:
``type_len`` 1..28 is the payload's length in words; 0 puts the length (plus 4) in the next
word, for payloads over 112 bytes; 30 (``RINGBUF_TYPE_TIME_EXTEND``) is a delta too big for
27 bits, its high part in the next word.  An event's timestamp is the page's plus the
deltas of every event up to it.

The model's buffers hold 64-byte records, not pages (:mod:`kernel_daemon.trace.buffers`):
a page is built when it is read, from the oldest unread events of one CPU, which the read
consumes, as ``ring_buffer_read_page()`` consumes what it hands out.  How it lays them out:

* The page's ``time_stamp`` is its first event's timestamp, and that event's delta is 0;
  each later event's delta is from the one before, and one that does not fit in 27 bits
  (134 ms) comes after a TIME_EXTEND holding all of it, with 0 itself
  (``rb_add_time_stamp()``).  3.6's copying read keeps the deltas its writers wrote and
  stamps the page with the reader's ``read_stamp``; the timestamps a decoder computes are
  the same either way.
* An event stamped before the one before it (two writers on one CPU committing in the
  other order) gets delta 0, as ``rb_reserve_next_event()`` gives when ``ts`` is below the
  ``write_stamp``: it reads as the earlier one's time.
* Events go in while they fit in what the read asked for less the page header, at most
  ``BUF_PAGE_SIZE``; the kernel also stops at the end of its reader page, which the
  model does not have.
* Events overwritten since the last read set ``RB_MISSED_EVENTS`` in ``commit``, and their
  number goes after the data when 8 bytes are left (``RB_MISSED_STORED``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

from kernel_daemon.trace.buffers import (BUF_PAGE_SIZE, PAGE_SIZE, STACK_FRAME, TRACE_PRINT,
                                         TRACE_STACK, Event)
from kernel_daemon.trace.ring_buffer import RingBuffer
from kernel_daemon.trace.trace_entries import (FUNCTION, pack_entry, print_entry_size,
                                               stack_entry_size)

# include/linux/ring_buffer.h: enum ring_buffer_type.
RINGBUF_TYPE_DATA_TYPE_LEN_MAX = 28
RINGBUF_TYPE_PADDING = 29
RINGBUF_TYPE_TIME_EXTEND = 30
RINGBUF_TYPE_TIME_STAMP = 31

# ring_buffer.c.
BUF_PAGE_HDR_SIZE = PAGE_SIZE - BUF_PAGE_SIZE  # offsetof(struct buffer_data_page, data)
RB_EVNT_HDR_SIZE = 4  # offsetof(struct ring_buffer_event, array)
RB_ALIGNMENT = 4
RB_MAX_SMALL_DATA = RB_ALIGNMENT * RINGBUF_TYPE_DATA_TYPE_LEN_MAX
RB_LEN_TIME_EXTEND = 8
TS_SHIFT = 27
TS_MASK = (1 << TS_SHIFT) - 1
RB_MISSED_EVENTS = 1 << 31
RB_MISSED_STORED = 1 << 30

_PAGE_HEADER = struct.Struct("<QQ")  # time_stamp, commit (local_t: a long on x86_64)
_WORD = struct.Struct("<I")
_WORDS = struct.Struct("<II")
_MISSED = struct.Struct("<Q")  # unsigned long missed_events


def ring_buffer_print_page_header() -> str:
    """``ring_buffer_print_page_header()``: ``events/header_page``, x86_64's sizes (3.6
    prints ``overwrite`` at ``commit``'s offset, one byte long, as it is)."""
    return ("\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
            "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
            "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
            f"\tfield: char data;\toffset:{BUF_PAGE_HDR_SIZE};\tsize:{BUF_PAGE_SIZE};"
            "\tsigned:1;\n")


def ring_buffer_print_entry_header() -> str:
    """``ring_buffer_print_entry_header()``: ``events/header_event``."""
    return ("# compressed entry header\n"
            "\ttype_len    :    5 bits\n"
            "\ttime_delta  :   27 bits\n"
            "\tarray       :   32 bits\n"
            "\n"
            f"\tpadding     : type == {RINGBUF_TYPE_PADDING}\n"
            f"\ttime_extend : type == {RINGBUF_TYPE_TIME_EXTEND}\n"
            f"\tdata max type_len  == {RINGBUF_TYPE_DATA_TYPE_LEN_MAX}\n")


def rb_calculate_event_length(length):  # int or numpy array
    """``rb_calculate_event_length()``: the bytes a payload of ``length`` takes, header
    (and the length word of a large one) included, 4-byte aligned."""
    length = np.maximum(length, 1)
    length = length + RB_EVNT_HDR_SIZE + np.where(length > RB_MAX_SMALL_DATA, 4, 0)
    return (length + RB_ALIGNMENT - 1) & -RB_ALIGNMENT


# The smallest event: a marker of one character (its newline).
MIN_EVENT_LENGTH = int(rb_calculate_event_length(print_entry_size(1)))
assert MIN_EVENT_LENGTH == 32 < rb_calculate_event_length(FUNCTION.size)


def page_deltas(ts: np.ndarray) -> np.ndarray:
    """Each event's delta from the one before in a page (the first's 0), never negative:
    the clock a writer compares with (``write_stamp``) only moves forward."""
    stamps = np.maximum.accumulate(ts.astype(np.uint64))
    return np.diff(stamps, prepend=stamps[:1])


def page_fit(budget: int) -> Callable[[np.ndarray], int]:
    """How many of the events whose head records are given fit in ``budget`` bytes of a
    page, time extends included (the extend and its event go together or not at all)."""
    def fit(heads: np.ndarray) -> int:
        lens = heads["len"].astype(np.int64)  # a marker's text, a stack's frames: bytes
        payload = np.select((heads["type"] == TRACE_PRINT, heads["type"] == TRACE_STACK),
                            (print_entry_size(lens),
                             stack_entry_size(lens // STACK_FRAME.itemsize)), FUNCTION.size)
        lengths = rb_calculate_event_length(payload)
        lengths += np.where(page_deltas(heads["ts"]) > TS_MASK, RB_LEN_TIME_EXTEND, 0)
        return int(np.searchsorted(np.cumsum(lengths), budget, side="right"))
    return fit


def write_events(page: bytearray, events: list[Event]) -> int:
    """Lay ``events`` out at the start of ``page``'s data; returns the bytes written."""
    pos = BUF_PAGE_HDR_SIZE
    stamp = events[0].ts
    for ev in events:
        delta = max(ev.ts - stamp, 0)
        stamp += delta
        if delta > TS_MASK:
            _WORDS.pack_into(page, pos, RINGBUF_TYPE_TIME_EXTEND | (delta & TS_MASK) << 5,
                             delta >> TS_SHIFT)
            pos += RB_LEN_TIME_EXTEND
            delta = 0
        entry = pack_entry(ev)
        length = int(rb_calculate_event_length(len(entry)))
        if len(entry) > RB_MAX_SMALL_DATA:
            _WORDS.pack_into(page, pos, delta << 5, length - RB_EVNT_HDR_SIZE)
            data = pos + 8
        else:
            _WORD.pack_into(page, pos, (length - RB_EVNT_HDR_SIZE) // RB_ALIGNMENT | delta << 5)
            data = pos + RB_EVNT_HDR_SIZE
        page[data:pos + length] = entry.ljust(pos + length - data, b"\0")
        pos += length
    return pos - BUF_PAGE_HDR_SIZE


def ring_buffer_read_page(rb: RingBuffer, page: bytearray, length: int, cpu: int) -> bool:
    """``ring_buffer_read_page(buffer, &page, len, cpu, 0)``: consume the oldest events of
    ``cpu`` that fit in ``length`` bytes less the header into ``page`` (a ``PAGE_SIZE``
    bytearray, the reader's spare page).  False, leaving the page alone, when ``length``
    holds no more than the header, the buffer is empty, or its next event does not fit.
    The bytes after the data are left as they were, as 3.6's copying read leaves them."""
    if length <= BUF_PAGE_HDR_SIZE:
        return False
    budget = min(length - BUF_PAGE_HDR_SIZE, BUF_PAGE_SIZE)
    events, lost = rb.read_page_events(cpu, page_fit(budget), budget // MIN_EVENT_LENGTH)
    if not events:
        return False
    commit = write_events(page, events)
    flags = 0
    if lost:
        if BUF_PAGE_SIZE - commit >= _MISSED.size:
            _MISSED.pack_into(page, BUF_PAGE_HDR_SIZE + commit, lost)
            flags |= RB_MISSED_STORED
        flags |= RB_MISSED_EVENTS
    _PAGE_HEADER.pack_into(page, 0, events[0].ts, commit | flags)
    return True
