"""Per-CPU trace ring buffers in POSIX shared memory: ``kernel/trace/ring_buffer.c`` (3.6),
with the buffer-size and reset entry points of ``kernel/trace/trace.c``.

The layout and its simplifications (fixed 64-byte records, markers and stacks over several
records, per-event overwrite) are described in :mod:`kernel_daemon.trace.buffers`.

Concurrency.  The kernel's writers are lockless and per CPU, with preemption disabled;
here each CPU's writers and readers take that CPU's ``lock``, held for one record or one
batch.  A reader of every CPU (``trace_pipe``) takes all the CPU locks in CPU order, so a
merge-and-consume step is atomic and two consumers never return the same event.  Every
change is published under the CPU's seqlock so :mod:`kernel_daemon.trace.reader` can copy a
consistent view from another process without any lock.

Resizing moves a CPU's events into a new segment of the new size: all of them when it
grows, the newest that fit when it shrinks (3.6's ``ring_buffer_resize()`` inserts pages,
or removes the oldest and counts their events as overruns).
"""

from __future__ import annotations

import errno
import heapq
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import islice, repeat

import numpy as np

from kernel_daemon.errno import KernelError
from kernel_daemon.shm import SHM_DIR, ShmSegment
from kernel_daemon.teardown import SHUT_DOWN, kernel_gone
from kernel_daemon.trace.buffers import (
    BUF_MAX_DATA_SIZE, C_BUFFER_ID, C_GENERATION, C_HEAD, C_WRITERS, DIR_MAGIC,
    MAX_EVENT_RECORDS, RB_EVENT, RB_EVENT_SIZE, RB_TEXT, RB_TEXT_OFFSET, RB_TEXT_PER_RECORD,
    RB_TYPE_CONT, RB_UNEXPANDED_SIZE, STACK_FRAME, TRACE_BUF_SIZE, TRACE_BUF_SIZE_DEFAULT,
    TRACE_FN, TRACE_PRINT, TRACE_STACK, W_EVENT_SIZE, W_EXPANDED, W_MAGIC, W_NR_CPUS,
    W_RECORD_DISABLED, W_TRACE_BUF_SIZE,
    CpuCounters, Event, Snapshot, copy_ring, cpu_segment_name, cpu_words, decode_events,
    dir_segment_name, dir_size, event_records, merge_events, rb_capacity, spans_records,
    total_entries)
from kernel_daemon.trace.trace_entries import stack_entry_size
from kernel_daemon.uaccess import UserBuffer, copy_from_user

# ring_buffer.c: RB_BUFFER_OFF, the bit ring_buffer_record_off() sets in record_disabled.
RB_BUFFER_OFF = 1 << 20
_PAD = bytes(RB_EVENT.fields["pad"][0].itemsize)


class TraceClock:
    """The ring buffer's clock (``ring_buffer_set_clock``): ``trace_clock_local`` by default.

    Wraps a nanoseconds-since-boot callable (``Kernel.local_clock``).  The kernel's local
    clock is only monotonic per CPU; this one never goes backwards and never repeats, across
    all CPUs and threads, so the timestamp merge of the CPUs is the order of the writes.
    """

    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock
        self._last = -1
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self._last = max(self._clock(), self._last + 1)
            return self._last

    def stamps(self, count: int) -> np.ndarray:
        """``count`` consecutive timestamps for a batch of events, one nanosecond apart."""
        start = self.reserve(count)
        return np.arange(start, start + count, dtype=np.uint64)

    def reserve(self, count: int) -> int:
        """The first of ``count`` consecutive timestamps taken for a batch of events."""
        with self._lock:
            start = max(self._clock(), self._last + 1)
            self._last = start + count - 1
        return start


class RingBufferPerCpu:
    """``struct ring_buffer_per_cpu``: one CPU's records and counters."""

    def __init__(self, namespace: str, cpu: int, words: np.ndarray, size_bytes: int) -> None:
        self.cpu = cpu
        # global_trace.data[cpu]->entries: the size last asked for, in bytes.
        self.size_bytes = size_bytes
        # cpu_buffer->record_disabled: tracing_cpumask takes a CPU out with it.
        self.record_disabled = 0
        self.name = cpu_segment_name(namespace, cpu)
        # Serialises this CPU's writers and readers (see the module docstring).
        self.lock = threading.Lock()
        self.words = words
        self.generation = 0
        self.buffer_id = 0
        self.segment: ShmSegment | None = None
        self.allocate(rb_capacity(size_bytes))

    def allocate(self, capacity: int) -> None:
        """``rb_allocate_pages()``: a fresh, empty segment."""
        self._install(self._create_segment(capacity), capacity)
        self.head = self.tail = 0
        self.reset()

    def resize(self, capacity: int) -> None:
        """``rb_update_pages()`` (3.5+): ``rb_insert_pages()`` keeps every event;
        ``rb_remove_pages()`` frees the pages after the tail page, the oldest events, each
        counted as an overrun. The counters stay. The model drops whole events, not whole
        pages, and copies what it keeps into a segment of the new size, made first: a
        failure to make it (OSError) changes nothing, as a failed page allocation leaves
        3.6's buffer as it was."""
        segment = self._create_segment(capacity)
        if capacity < self.capacity:
            self.make_room(self.capacity - capacity)
        kept = copy_ring(self.recs, self.tail, self.head)
        self._install(segment, capacity)
        self.recs[:len(kept)] = kept
        self.tail, self.head = 0, len(kept)

    def _create_segment(self, capacity: int) -> ShmSegment:
        """A new segment for this CPU, under a name of its own until it is installed."""
        return ShmSegment(f"{self.name}.new", capacity * RB_EVENT_SIZE, create=True)

    def _install(self, segment: ShmSegment, capacity: int) -> None:
        """Put ``segment`` under this CPU's name in one rename, so a reader in another
        process finds the old segment or the new one, never none (the old one's mapping
        stays valid while its records are copied)."""
        try:
            os.replace(os.path.join(SHM_DIR, segment.name), os.path.join(SHM_DIR, self.name))
        except OSError:
            segment.unlink()
            raise
        segment.name = self.name
        self.segment = segment
        self.recs = np.ndarray((capacity,), dtype=RB_EVENT, buffer=segment.map)
        self.text = self.recs.view(RB_TEXT)
        self.types = self.recs["type"]
        self.capacity = capacity
        self.buffer_id += 1

    def reset(self) -> None:
        """``rb_reset_cpu()``: empty, and every counter back to zero."""
        self.tail = self.head
        self.entries = self.overrun = self.read = self.last_overrun = 0
        # Marker and stack events in the buffer; while there are none no record is
        # RB_TYPE_CONT, and overwriting needs no scan.
        self.long_events = 0

    # -- the seqlock writer side -------------------------------------------------------
    def write_begin(self) -> None:
        self.generation += 1
        self.words[C_WRITERS] = 1
        self.words[C_GENERATION] = self.generation

    def write_end(self) -> None:
        self.words[C_HEAD:C_BUFFER_ID + 1] = (self.head, self.tail, self.entries, self.overrun,
                                              self.read, self.capacity, self.buffer_id)
        self.generation += 1
        self.words[C_GENERATION] = self.generation
        self.words[C_WRITERS] = 0

    # -- state --------------------------------------------------------------------------
    def counters(self) -> CpuCounters:
        return CpuCounters(self.head, self.tail, self.entries, self.overrun, self.read,
                           self.capacity, self.buffer_id)

    @property
    def entries_in_buffer(self) -> int:
        return self.entries - self.overrun - self.read

    @property
    def room(self) -> int:
        """Records that fit before the writer reaches the oldest unread one."""
        return self.capacity - (self.head - self.tail)

    def _type_counts(self, start: int, end: int) -> tuple[int, int]:
        """(continuation records, marker and stack events) among the records at
        [start, end)."""
        types = copy_ring(self.types, start, end)
        return (int(np.count_nonzero(types == RB_TYPE_CONT)),
                int(np.count_nonzero(spans_records(types))))

    def make_room(self, nr_records: int) -> None:
        """Overwrite mode (``rb_handle_head_page``): drop the oldest events until
        ``nr_records`` (at most the capacity) more fit, counting each as an overrun."""
        cut = self.head + nr_records - self.capacity
        if cut <= self.tail:
            return
        if not self.long_events:
            self.overrun += cut - self.tail
            self.tail = cut
            return
        # Every record before the cut that is not a continuation starts a dropped event.
        conts, long_events = self._type_counts(self.tail, cut)
        self.overrun += cut - self.tail - conts
        self.long_events -= long_events
        # An event goes whole: skip the rest of a marker or stack cut in the middle.
        while cut < self.head and self.types[cut % self.capacity] == RB_TYPE_CONT:
            cut += 1
        self.tail = cut

    @property
    def lost_events(self) -> int:
        """``cpu_buffer->lost_events``: the events overwritten since the last read
        (``overrun - last_overrun``), which ``rb_get_reader_page()`` tells once, with the
        next event a read takes."""
        return self.overrun - self.last_overrun

    def peek(self, max_events: int) -> tuple[np.ndarray, np.ndarray]:
        """A copy of the records of the oldest unread events, at most ``max_events`` whole
        ones, and the positions of those events' head records in it.  Under the CPU's
        lock, in the process that writes (:attr:`long_events` is its own count): with no
        marker nor stack in the buffer each event is one record, else ``max_events`` of
        them fit in that many of the longest."""
        per_event = MAX_EVENT_RECORDS if self.long_events else 1
        end = min(self.head, self.tail + max_events * per_event)
        recs = copy_ring(self.recs, self.tail, end)
        return recs, np.flatnonzero(recs["type"] != RB_TYPE_CONT)[:max_events]

    def advance_reader(self, recs: np.ndarray, starts: np.ndarray, count: int) -> None:
        """``rb_advance_reader()`` past the first ``count`` events :meth:`peek` returned;
        the overwritten events are told (:attr:`lost_events`)."""
        heads = recs[starts[:count]]
        self.write_begin()
        self.tail += int(starts[count - 1] + event_records(heads[-1:])[0])
        self.read += count
        self.long_events -= int(np.count_nonzero(spans_records(heads["type"])))
        self.last_overrun = self.overrun
        self.write_end()

    def fill_functions(self, ts: np.ndarray, pid: np.ndarray | int, ips: np.ndarray | int,
                       parent_ips: np.ndarray | int, flags: np.ndarray | int) -> None:
        """Write the last ``min(len(ts), capacity)`` of a batch of function events at head.

        What all the events share is one record copied over the span; then each field
        that differs is written from its array (the timestamps, at least).
        """
        count = len(ts)
        keep = min(count, self.capacity)
        skip = count - keep
        first = (self.head + skip) % self.capacity
        shared = np.zeros((), dtype=RB_EVENT)
        shared["type"] = TRACE_FN
        shared["cpu"] = self.cpu
        columns = {"ts": ts}
        for name, value in (("pid", pid), ("ip", ips), ("parent_ip", parent_ips),
                            ("flags", flags)):
            if isinstance(value, np.ndarray):
                columns[name] = value
            else:
                shared[name] = value
        # Copied as 64-bit words: numpy assigns a structured record field by field.
        shared_words = shared.reshape(1).view(np.uint64)
        done = 0
        while done < keep:
            span = min(keep - done, self.capacity - first)
            part = self.recs[first:first + span]
            lo, hi = skip + done, skip + done + span
            part.view(np.uint64).reshape(span, len(shared_words))[...] = shared_words
            for name, values in columns.items():
                part[name] = values[lo:hi]
            done += span
            first = 0

    def put_records(self, start: int, block: np.ndarray) -> None:
        """Copy ``block`` (at most ``capacity`` records) to the positions from ``start``,
        as 64-bit words (numpy assigns a structured record field by field)."""
        first = start % self.capacity
        span = min(len(block), self.capacity - first)
        words = block.view(np.uint64).reshape(len(block), -1)
        self.recs[first:first + span].view(np.uint64).reshape(span, -1)[...] = words[:span]
        rest = len(block) - span
        if rest:
            self.recs[:rest].view(np.uint64).reshape(rest, -1)[...] = words[span:]


def function_stack_records(cpu: int, pid: int, ip: int, parent_ip: int, flags: int,
                           frames: tuple[int, ...]) -> np.ndarray:
    """The records of one call under ``function_stack_trace_call()``, timestamps to fill:
    its ``TRACE_FN`` event, then its ``TRACE_STACK`` event, whose continuation records
    carry ``frames``."""
    data = np.asarray(frames, dtype=STACK_FRAME).tobytes()
    conts = -(-len(data) // RB_TEXT_PER_RECORD)
    recs = np.zeros(2 + conts, dtype=RB_EVENT)
    recs[:2] = [(TRACE_FN, 0, pid, 0, ip, parent_ip, cpu, flags, _PAD),
                (TRACE_STACK, len(data), pid, 0, 0, 0, cpu, flags, _PAD)]
    if conts:
        text = recs[2:].view(RB_TEXT)
        text["type"] = RB_TYPE_CONT
        text["len"] = np.diff(np.minimum(np.arange(conts + 1) * RB_TEXT_PER_RECORD, len(data)))
        raw = recs[2:].view(np.uint8).reshape(conts, RB_EVENT_SIZE)
        raw[:, RB_TEXT_OFFSET:] = np.frombuffer(
            data.ljust(conts * RB_TEXT_PER_RECORD, b"\0"), dtype=np.uint8).reshape(conts, -1)
    return recs


class RingBuffer:
    """``global_trace.buffer``: the per-CPU ring buffers of one kernel, and their controls.

    Created unexpanded (``ring_buffer_alloc(1)``: 2 pages per CPU, ``buffer_size_kb`` reads
    ``7 (expanded: 1408)``); :meth:`expand` grows it to ``trace_buf_size`` when a tracer
    is first set.  Each CPU has its size (``per_cpu/cpuN/buffer_size_kb``).
    :meth:`destroy` unlinks every segment.
    """

    def __init__(self, namespace: str, nr_cpus: int,
                 trace_buf_size: int = TRACE_BUF_SIZE_DEFAULT) -> None:
        if nr_cpus < 1:
            raise ValueError("a ring buffer needs at least one CPU")
        self.namespace = namespace
        self.nr_cpus = nr_cpus
        self.trace_buf_size = trace_buf_size
        self.expanded = False
        # RB_FL_OVERWRITE: tracer_alloc_buffers() allocates with it, as trace_flags'
        # default has the overwrite option; ring_buffer_change_overwrite() flips it.
        self.overwrite = True
        self._record_disabled = 0
        self._record_lock = threading.Lock()
        self._cond = threading.Condition()
        self._waiters = 0
        # Why close() closed it (kernel_daemon.teardown), the ENODEV of the calls it
        # ends; empty while it is open.
        self.end_reason = ""
        self.directory = ShmSegment(dir_segment_name(namespace), dir_size(nr_cpus), create=True)
        self._words = np.ndarray((dir_size(nr_cpus) // 8,), dtype="<u8", buffer=self.directory.map)
        self._words[W_NR_CPUS] = nr_cpus
        self._words[W_EVENT_SIZE] = RB_EVENT_SIZE
        self._words[W_TRACE_BUF_SIZE] = trace_buf_size
        self.cpu_buffers: list[RingBufferPerCpu] = []
        try:
            for cpu in range(nr_cpus):
                cb = RingBufferPerCpu(namespace, cpu, cpu_words(self._words, cpu),
                                      RB_UNEXPANDED_SIZE)
                self.cpu_buffers.append(cb)
                cb.write_end()
        except BaseException:
            self.destroy()
            raise
        self._publish_globals()
        # Last: a reader that sees the magic sees a complete directory.
        self._words[W_MAGIC] = DIR_MAGIC

    # -- helpers ------------------------------------------------------------------------
    def _cpu(self, cpu: int) -> RingBufferPerCpu:
        if not 0 <= cpu < self.nr_cpus:
            raise ValueError(f"no CPU {cpu}: the ring buffer has {self.nr_cpus}")
        return self.cpu_buffers[cpu]

    def _select(self, cpu: int | None) -> list[RingBufferPerCpu]:
        return self.cpu_buffers if cpu is None else [self._cpu(cpu)]

    @contextmanager
    def _locked(self, cpus: list[RingBufferPerCpu]) -> Iterator[None]:
        """Take CPU locks in CPU order, the one order every multi-CPU path uses."""
        for cb in cpus:
            cb.lock.acquire()
        try:
            yield
        finally:
            for cb in reversed(cpus):
                cb.lock.release()

    def _publish_globals(self) -> None:
        self._words[W_RECORD_DISABLED] = self._record_disabled
        self._words[W_EXPANDED] = int(self.expanded)

    def _wake_readers(self) -> None:
        # A waiter counts itself in before it tests for data, and a writer reads the count
        # after committing: either the writer sees the waiter and wakes it, or the waiter's
        # test sees the data.  No lost wake-up, and no Condition traffic with no reader.
        if self._waiters:
            with self._cond:
                self._cond.notify_all()

    # -- recording on/off -----------------------------------------------------------------
    def record_on(self) -> None:
        """``ring_buffer_record_on()``: what ``echo 1 > tracing_on`` does."""
        with self._record_lock:
            self._record_disabled &= ~RB_BUFFER_OFF
            self._publish_globals()

    def record_off(self) -> None:
        """``ring_buffer_record_off()``: ``echo 0 > tracing_on``; the data stays."""
        with self._record_lock:
            self._record_disabled |= RB_BUFFER_OFF
            self._publish_globals()

    def record_disable(self) -> None:
        """``ring_buffer_record_disable()``: nesting; ``tracing_stop()`` uses it while
        the ``trace`` file is open."""
        with self._record_lock:
            self._record_disabled += 1
            self._publish_globals()

    def record_enable(self) -> None:
        """``ring_buffer_record_enable()``."""
        with self._record_lock:
            self._record_disabled -= 1
            self._publish_globals()

    def record_disable_cpu(self, cpu: int) -> None:
        """``ring_buffer_record_disable_cpu()``: no event reserved on ``cpu`` (nesting)."""
        self._cpu(cpu).record_disabled += 1

    def record_enable_cpu(self, cpu: int) -> None:
        """``ring_buffer_record_enable_cpu()``."""
        self._cpu(cpu).record_disabled -= 1

    def record_is_on(self) -> bool:
        """``ring_buffer_record_is_on()``: what ``tracing_on`` reads; 3.6 tests the whole
        ``record_disabled`` word, so it reads 0 while ``trace`` is being read too."""
        return not self._record_disabled

    def change_overwrite(self, overwrite: bool) -> None:
        """``ring_buffer_change_overwrite()``: what the ``overwrite`` option sets.  Without
        it a full CPU buffer takes no more events (see :meth:`write_function_event`)."""
        self.overwrite = overwrite

    # -- writers ---------------------------------------------------------------------------
    def write_function_event(self, cpu: int, ts: int, pid: int, ip: int, parent_ip: int,
                             flags: int = 0) -> bool:
        """``trace_function()``: one ``TRACE_FN`` entry.  False if recording is off, or if
        the CPU's buffer is full and not in overwrite mode: ``rb_move_tail()`` then fails
        the reserve, and 3.6 counts the lost event nowhere (not in ``entries``, not as
        an overrun).  The kernel stops at a full *page*, the model at a full buffer."""
        if self._record_disabled:
            return False
        cb = self._cpu(cpu)
        with cb.lock:
            if cb.record_disabled or not self.overwrite and not cb.room:
                return False
            cb.write_begin()
            cb.make_room(1)
            cb.recs[cb.head % cb.capacity] = (TRACE_FN, 0, pid, ts, ip, parent_ip, cpu, flags,
                                              _PAD)
            cb.head += 1
            cb.entries += 1
            cb.write_end()
        self._wake_readers()
        return True

    def write_function_events(self, cpu: int, ts: np.ndarray, pid: np.ndarray | int,
                              ips: np.ndarray | int, parent_ips: np.ndarray | int,
                              flags: np.ndarray | int = 0) -> int:
        """A batch of ``TRACE_FN`` entries on one CPU, as if written one by one.

        ``ts`` holds the batch's timestamps, one per event; ``pid``, ``ips``,
        ``parent_ips`` and ``flags`` are arrays of the same length or one value for all.
        Every event counts in ``entries``; those overwritten, even by later events of the
        same batch, count as overruns.  Not in overwrite mode, only the events that fit
        go in, the first ones, and the rest are lost uncounted.  Returns the number
        written (0 when recording is off).
        """
        count = len(ts)
        if count == 0 or self._record_disabled:
            return 0
        cb = self._cpu(cpu)
        with cb.lock:
            if cb.record_disabled:
                return 0
            if not self.overwrite and cb.room < count:
                count = cb.room
                if not count:
                    return 0
                ts, pid, ips, parent_ips, flags = (
                    value[:count] if isinstance(value, np.ndarray) else value
                    for value in (ts, pid, ips, parent_ips, flags))
            cb.write_begin()
            if count >= cb.capacity:
                # Everything in the buffer goes, and all but the batch's last `capacity`.
                cb.overrun += cb.entries_in_buffer + count - cb.capacity
                cb.long_events = 0
                cb.tail = cb.head + count - cb.capacity
            else:
                cb.make_room(count)
            cb.fill_functions(np.asarray(ts), pid, ips, parent_ips, flags)
            cb.head += count
            cb.entries += count
            cb.write_end()
        self._wake_readers()
        return count

    def write_function_stack_events(self, cpu: int, ts: int, pid: int, ip: int, parent_ip: int,
                                    flags: int, frames: tuple[int, ...], count: int) -> int:
        """``count`` calls under ``function_stack_trace_call()`` on one CPU, as if written
        one by one: each call's ``TRACE_FN`` event (``trace_function()``), then its
        ``TRACE_STACK`` event of ``frames`` (``__trace_stack()``); ``ts`` is the first of
        ``2 * count`` timestamps reserved, one per event in that order.  Returns the
        events written.

        A stack whose entry is over ``BUF_MAX_DATA_SIZE`` (more than 506 frames) fails
        ``ring_buffer_lock_reserve()``: the calls write their function events alone.
        Overwrite keeps what writing them one by one keeps: the newest events that fit,
        a whole call's or only its stack, each dropped event an overrun.  Without
        overwrite, the calls that fit whole go in; then, less than a call's room being
        left, each later call's function event while a record is, its stack failing the
        reserve (3.6 counts neither lost event).  As :meth:`write_function_events`,
        every event written counts in ``entries``.
        """
        if count == 0 or self._record_disabled:
            return 0
        cb = self._cpu(cpu)
        unit = function_stack_records(cpu, pid, ip, parent_ip, flags, frames)
        if stack_entry_size(len(frames)) > BUF_MAX_DATA_SIZE:
            unit = unit[:1]
        # The records from each of the unit's events to its end: what a cut keeps of it.
        tails = len(unit) - np.flatnonzero(unit["type"] != RB_TYPE_CONT)
        with cb.lock:
            if cb.record_disabled:
                return 0
            calls, lone = count, 0
            if not self.overwrite:
                calls = min(count, cb.room // len(unit))
                lone = min(count - calls, cb.room - calls * len(unit))
            records = calls * len(unit) + lone
            events = calls * len(tails) + lone
            if not records:
                return 0
            cb.write_begin()
            if records > cb.capacity:  # only with overwrite: the batch's newest that fit
                whole, left = divmod(cb.capacity, len(unit))
                part = tails[tails <= left]
                kept = whole * len(unit) + int(part.max(initial=0))
                kept_events = whole * len(tails) + len(part)
                cb.overrun += cb.entries_in_buffer + events - kept_events
                cb.long_events = 0
                cb.tail = cb.head + records - kept
                block = np.tile(unit, whole + 1)[-kept:]
            else:
                cb.make_room(records)
                kept, kept_events = records, events
                block = np.concatenate((np.tile(unit, calls), np.tile(unit[:1], lone)))
            heads = np.flatnonzero(block["type"] != RB_TYPE_CONT)
            block["ts"][heads] = np.arange(ts + events - kept_events, ts + events,
                                           dtype=np.uint64)
            cb.put_records(cb.head + records - kept, block)
            cb.long_events += int(np.count_nonzero(block["type"] == TRACE_STACK))
            cb.head += records
            cb.entries += events
            cb.write_end()
        self._wake_readers()
        return events

    def write_marker(self, cpu: int, ts: int, pid: int, text: str | UserBuffer, ip: int = 0,
                     flags: int = 0) -> int:
        """``tracing_mark_write()``: a ``TRACE_PRINT`` entry; returns the bytes taken.

        At most ``TRACE_BUF_SIZE`` bytes are kept and a newline is appended if the text does
        not end with one.  ``ip`` is the writer's address (``_THIS_IP_`` in
        ``tracing_mark_write()``).  With recording off, or a full buffer not in overwrite
        mode, the reserve fails and the write returns -EBADF, as in 3.6.
        """
        data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
        taken = min(len(data), TRACE_BUF_SIZE)
        buf = copy_from_user(data, taken)
        if not buf.endswith(b"\n"):
            buf += b"\n"
        if self._record_disabled:
            raise KernelError(errno.EBADF, "ring buffer disabled")
        nr_records = 1 + -(-len(buf) // RB_TEXT_PER_RECORD)
        cb = self._cpu(cpu)
        with cb.lock:
            if cb.record_disabled:
                raise KernelError(errno.EBADF, f"recording disabled on CPU {cpu}")
            if not self.overwrite and cb.room < nr_records:
                raise KernelError(errno.EBADF, "ring buffer full, not in overwrite mode")
            cb.write_begin()
            cb.make_room(nr_records)
            cb.recs[cb.head % cb.capacity] = (TRACE_PRINT, len(buf), pid, ts, ip, 0, cpu, flags,
                                              _PAD)
            for i in range(1, nr_records):
                chunk = buf[(i - 1) * RB_TEXT_PER_RECORD:i * RB_TEXT_PER_RECORD]
                cb.text[(cb.head + i) % cb.capacity] = (RB_TYPE_CONT, len(chunk), b"", chunk)
            cb.head += nr_records
            cb.entries += 1
            cb.long_events += 1
            cb.write_end()
        self._wake_readers()
        return taken

    # -- readers ---------------------------------------------------------------------------
    def consume(self, cpu: int | None = None, max_events: int = 1024,
                timeout: float | None = None, nonblock: bool = False,
                take: Callable[[list[Event]], int] = len,
                signal_pending: Callable[[], bool] = lambda: False) -> list[Event]:
        """The ``trace_pipe`` read: remove and return up to ``max_events`` events, oldest
        first across the selected CPUs (``ring_buffer_consume`` after ``__find_next_entry``),
        or only the first ``take(events)`` of them: ``take`` runs with the CPUs' locks held,
        so a reader prints what it looked at and consumes just what fitted in its page, as
        3.6's ``tracing_read_pipe()`` calls ``trace_consume()`` after each whole line (its
        reader page keeps writers off the entries it is printing; here the locks do).

        Blocks until there is data; returns ``[]`` when ``timeout`` seconds pass first or the
        buffer is closed.  ``nonblock`` (O_NONBLOCK) raises EAGAIN instead of blocking.

        ``signal_pending``: the reader's ``signal_pending(current)``. Once it is true the
        read raises EINTR and consumes nothing: it is tested under the CPUs' locks right
        before an event is taken, and under the wait's condition, so a reader whose
        signal came (:meth:`signal_wake_up`) before an event was written never takes it.
        """
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        cpus = self._select(cpu)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.end_reason:
            events = self._consume_ready(cpus, max_events, take, signal_pending)
            if events is not None:
                return events
            if nonblock:
                raise KernelError(errno.EAGAIN)
            if not self._wait_for_data(cpus, deadline, signal_pending):
                break
        return []

    def signal_wake_up(self) -> None:
        """``signal_wake_up()`` of a reader blocked in :meth:`consume`, whose
        ``signal_pending`` is set before this is called: the waiters are woken to test it
        (all of them, as a writer's wake-up does; the others wait again). No wake-up is
        lost: a waiter counts itself in, then tests ``signal_pending`` under the condition,
        so either this sees the waiter or the waiter sees the signal."""
        self._wake_readers()

    def _wait_for_data(self, cpus: list[RingBufferPerCpu], deadline: float | None,
                       signal_pending: Callable[[], bool]) -> bool:
        """Wait until a selected CPU has data or the buffer closes; False on timeout;
        EINTR once ``signal_pending()``."""
        with self._cond:
            self._waiters += 1
            try:
                while not self.end_reason and all(cb.head == cb.tail for cb in cpus):
                    if signal_pending():
                        raise KernelError(errno.EINTR)
                    if deadline is None:
                        self._cond.wait()
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                self._waiters -= 1

    def _consume_ready(self, cpus: list[RingBufferPerCpu], max_events: int,
                       take: Callable[[list[Event]], int],
                       signal_pending: Callable[[], bool]) -> list[Event] | None:
        """The events taken, or None when there were none; EINTR, nothing taken, once
        ``signal_pending()``."""
        with self._locked(cpus):
            if signal_pending():
                raise KernelError(errno.EINTR)
            peeked = [cb.peek(max_events) for cb in cpus]
            # __find_next_entry(): the oldest next event each time; (ts, index) puts the
            # lower CPU first on a tie.
            order = [index for _, index in islice(heapq.merge(
                *(zip(recs["ts"][starts].tolist(), repeat(index))
                  for index, (recs, starts) in enumerate(peeked))), max_events)]
            if not order:
                return None
            counts = Counter(order)
            per_cpu: list[list[Event]] = []
            for index, (cb, (recs, _)) in enumerate(zip(cpus, peeked)):
                events = decode_events(recs, counts[index]) if counts[index] else []
                if events and cb.lost_events:  # told once, by the read that takes it
                    events[0] = events[0]._replace(lost_events=cb.lost_events)
                per_cpu.append(events)
            events = merge_events(per_cpu)
            taken = take(events)
            for index, count in Counter(order[:taken]).items():
                recs, starts = peeked[index]
                cpus[index].advance_reader(recs, starts, count)
        return events[:taken]

    def read_page_events(self, cpu: int, fit: Callable[[np.ndarray], int],
                         max_events: int) -> tuple[list[Event], int]:
        """The consuming side of ``ring_buffer_read_page()``: remove ``cpu``'s oldest events,
        as many of the first ``max_events`` as ``fit`` (given their head records) says fit
        in the reader's page; return them and the events overwritten since the last read.
        Never waits: ``([], 0)`` when there is nothing, or the next event does not fit (the
        lost events are then told by a later read)."""
        cb = self._cpu(cpu)
        with cb.lock:
            recs, starts = cb.peek(max_events)
            count = fit(recs[starts]) if len(starts) else 0
            if not count:
                return [], 0
            lost = cb.lost_events
            cb.advance_reader(recs, starts, count)
        return decode_events(recs, count), lost

    def snapshot(self, cpu: int | None = None) -> Snapshot:
        """The ``trace`` file's view: a copy of the events (all CPUs, or ``cpu``'s) merged by
        timestamp, and ``get_total_entries()``, which in 3.6 always covers every CPU, also
        for ``per_cpu/cpuN/trace``."""
        wanted = self._select(cpu)
        per_cpu: list[list[Event]] = []
        counters: list[CpuCounters] = []
        for cb in self.cpu_buffers:
            with cb.lock:
                counters.append(cb.counters())
                recs = copy_ring(cb.recs, cb.tail, cb.head) if cb in wanted else None
            if recs is not None:
                per_cpu.append(decode_events(recs))
        in_buffer, written = total_entries(counters)
        return Snapshot(merge_events(per_cpu), in_buffer, written)

    def counters(self, cpu: int) -> CpuCounters:
        cb = self._cpu(cpu)
        with cb.lock:
            return cb.counters()

    def oldest_event_ts(self, cpu: int) -> int:
        """``ring_buffer_oldest_event_ts()``: the timestamp of the oldest event in the
        CPU's buffer, 0 when it holds none.  3.6 reads the ``time_stamp`` of the page the
        reader takes next (its first event's), which a reset or a read leaves as it was;
        the model has no pages."""
        cb = self._cpu(cpu)
        with cb.lock:
            return int(cb.recs["ts"][cb.tail % cb.capacity]) if cb.head != cb.tail else 0

    def overruns(self) -> int:
        """``ring_buffer_overruns()``: all CPUs (``trace`` annotates when nonzero)."""
        return sum(self.counters(cpu).overrun for cpu in range(self.nr_cpus))

    # -- reset / size ------------------------------------------------------------------------
    def reset(self, cpu: int | None = None) -> None:
        """``tracing_reset_online_cpus()`` (``cpu`` None) or ``tracing_reset()``: what
        ``echo > trace`` / ``echo > per_cpu/cpuN/trace`` and ``tracer_init`` do."""
        cpus = self._select(cpu)
        with self._locked(cpus):
            for cb in cpus:
                cb.write_begin()
                cb.reset()
                cb.write_end()

    def size_bytes(self, cpu: int) -> int:
        """``global_trace.data[cpu]->entries``: the size last asked for, in bytes."""
        return self._cpu(cpu).size_bytes

    def resize(self, size_bytes: int, cpu: int | None = None) -> None:
        """``__tracing_resize_ring_buffer(size, cpu)``: ``size_bytes`` for every CPU
        (``cpu`` None, RING_BUFFER_ALL_CPUS) or for one; a CPU whose size changes keeps the
        newest events that fit, and the buffer is marked expanded.  The caller holds
        ``trace_types_lock`` (``Tracing.tracing_resize_ring_buffer``)."""
        self._resize(size_bytes, [cb for cb in self._select(cpu) if cb.size_bytes != size_bytes])

    def expand(self) -> None:
        """``if (!ring_buffer_expanded) __tracing_resize_ring_buffer(trace_buf_size,
        RING_BUFFER_ALL_CPUS)``: grow to ``trace_buf_size`` on first use, the body of
        ``tracing_update_buffers()`` and the first step of ``tracing_set_tracer()``, whose
        ``trace_types_lock`` the caller holds (``Tracing``)."""
        if not self.expanded:
            self._resize(self.trace_buf_size, self.cpu_buffers)

    def _resize(self, size_bytes: int, cpus: list[RingBufferPerCpu]) -> None:
        """``__tracing_resize_ring_buffer()``: the buffer counts as expanded from the start
        ("we can forget about expanding it later"), even if the resize then fails."""
        capacity = rb_capacity(size_bytes)
        need = sum(capacity - cb.capacity for cb in cpus) * RB_EVENT_SIZE
        stat = os.statvfs(SHM_DIR)
        with self._locked(self.cpu_buffers):
            if self.end_reason:  # destroy() ran or waits for these locks: no new segments
                raise kernel_gone(self.end_reason, "its ring buffer is gone")
            self.expanded = True
            self._publish_globals()
            if need > stat.f_bavail * stat.f_frsize:
                # The kernel's page allocations would fail: ring_buffer_resize() gives -ENOMEM.
                raise KernelError(errno.ENOMEM,
                                  f"{size_bytes} bytes per CPU do not fit in {SHM_DIR}")
            for cb in cpus:
                cb.write_begin()
                try:
                    cb.resize(capacity)
                except OSError as exc:  # EMFILE, ENOSPC: the pages cannot be had
                    raise KernelError(errno.ENOMEM, f"ring buffer of CPU {cb.cpu}: "
                                                    f"{exc.strerror}") from exc
                finally:
                    cb.write_end()
                cb.size_bytes = size_bytes

    # -- shutdown ---------------------------------------------------------------------------
    def close(self, reason: str = SHUT_DOWN) -> None:
        """The kernel goes away for ``reason`` (kernel_daemon.teardown): wake every
        blocked reader; reads return ``[]`` from now on."""
        with self._cond:
            self.end_reason = reason
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran: the kernel is going away."""
        return bool(self.end_reason)

    def destroy(self, reason: str = SHUT_DOWN) -> None:
        """Close (for ``reason``), and unlink every segment (mappings stay valid until
        dropped).

        Under the CPU locks, as a resize allocates under them: one already under way
        finishes first, and its segments are unlinked here; a later one sees the buffer
        closed and creates none.
        """
        self.close(reason)
        with self._locked(self.cpu_buffers):
            for cb in self.cpu_buffers:
                if cb.segment is not None:
                    cb.segment.unlink()
        self.directory.unlink()
