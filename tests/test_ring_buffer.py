"""Per-CPU trace ring buffers: overwrite and overrun accounting, consuming and
non-consuming reads, recording on/off, sizes, and the other-process shared-memory reader."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_daemon.errno import KernelError
from kernel_daemon.shm import SHM_DIR, new_namespace, segments_of
from kernel_daemon.trace.buffers import (MAX_MARKER_RECORDS, RB_TEXT_PER_RECORD,
                                         RB_UNEXPANDED_SIZE, TRACE_BUF_SIZE,
                                         TRACE_BUF_SIZE_DEFAULT, TRACE_FN, TRACE_PRINT,
                                         TRACE_STACK, Event, rb_capacity, stack_frames)
from kernel_daemon.trace.reader import RingBufferReader
from kernel_daemon.trace.ring_buffer import RingBuffer, TraceClock
from tests.children import REPO, child_env

UNEXPANDED_CAPACITY = rb_capacity(RB_UNEXPANDED_SIZE)  # 2 pages of 4080 bytes / 64
# Generous bound for blocking calls a test expects to return promptly.
DEADLINE = 10.0


@pytest.fixture
def rb():
    ring = RingBuffer(new_namespace(), nr_cpus=2)
    yield ring
    ring.destroy()
    assert segments_of(ring.namespace) == []


def write_n(ring: RingBuffer, cpu: int, first_ts: int, count: int, pid: int = 100) -> None:
    for ts in range(first_ts, first_ts + count):
        ring.write_function_event(cpu, ts, pid, 0x1000 + ts, 0x2000)


# -- sizes -------------------------------------------------------------------------------

def test_unexpanded_then_expanded_sizes(rb):
    assert not rb.expanded
    assert rb.size_bytes(0) == rb.size_bytes(1) == 8160 and 8160 >> 10 == 7
    assert rb.counters(0).capacity == UNEXPANDED_CAPACITY == 127
    rb.expand()
    assert rb.expanded and rb.size_bytes(0) == rb.size_bytes(1) == TRACE_BUF_SIZE_DEFAULT
    # 1441792 bytes is 354 pages of 4080 bytes.
    assert rb.counters(1).capacity == 354 * 4080 // 64
    segment_size = os.stat(os.path.join(SHM_DIR, f"{rb.namespace}.rb1")).st_size
    assert segment_size == rb.counters(1).capacity * 64


def test_a_resize_keeps_the_events_that_fit(rb):
    """ring_buffer_resize(): growing inserts pages and keeps every event; shrinking removes
    the oldest and counts their events as overruns; the same size changes nothing."""
    rb.resize(4 << 10)
    write_n(rb, 0, 1, 10)
    buffer_id = rb.counters(0).buffer_id
    rb.resize(4 << 10)  # tracing_resize_ring_buffer(): same size, nothing happens
    assert rb.counters(0).buffer_id == buffer_id
    rb.resize(8 << 10)
    assert rb.size_bytes(0) == rb.size_bytes(1) == 8192 and rb.expanded
    assert rb.counters(0).buffer_id == buffer_id + 1
    assert rb.counters(0).capacity == rb_capacity(8192)
    snap = rb.snapshot()
    assert [e.ts for e in snap.events] == list(range(1, 11))
    assert (snap.entries_in_buffer, snap.entries_written) == (10, 10)
    write_n(rb, 0, 11, 140)  # 150 events: more than the 2 pages of 4 KB hold
    assert rb.counters(0).overrun == 0
    rb.resize(4 << 10)
    counters = rb.counters(0)
    assert counters.capacity == rb_capacity(4096) < 150
    assert (counters.entries, counters.overrun) == (150, 150 - counters.capacity)
    assert [e.ts for e in rb.snapshot().events] == list(range(151 - counters.capacity, 151))
    write_n(rb, 0, 151, 1)  # and it goes on from there
    assert rb.snapshot().events[-1].ts == 151


def test_a_read_copies_the_records_of_its_events_only_while_no_event_spans_records(rb):
    """peek(), which consume() and trace_pipe_raw's read take their events from, copies
    ``max_events`` records while every event in the buffer is one record; once a marker
    or a stack is there, enough for ``max_events`` of the longest."""
    write_n(rb, 0, 1, 100)
    cb = rb.cpu_buffers[0]
    recs, starts = cb.peek(5)
    assert len(recs) == len(starts) == 5
    rb.write_function_stack_events(0, 101, 1, 5, 6, 0, (7, 8), 1)
    recs, starts = cb.peek(5)
    assert len(recs) == 100 + 3 and len(starts) == 5  # all of them: fewer than 5 * 74
    assert [e.ts for e in rb.consume(0, max_events=100)] == list(range(1, 101))
    assert [e.ts for e in rb.consume(0, max_events=100)] == [101, 102]
    recs, starts = cb.peek(5)
    assert len(recs) == len(starts) == 0


def test_a_shrink_drops_a_marker_whole_and_a_consumed_event_stays_consumed(rb):
    rb.write_marker(0, 1, 5, b"m" * 500)  # 1 + 9 records
    write_n(rb, 0, 2, 100)
    assert [e.ts for e in rb.consume(0, max_events=1)] == [1]  # the marker, read
    rb.resize(8 << 10)  # 191 records
    write_n(rb, 0, 500, 60)
    assert [e.ts for e in rb.snapshot().events] == [*range(2, 102), *range(500, 560)]
    rb.write_marker(0, 600, 5, b"n" * 500)
    write_n(rb, 0, 601, 2)
    before = rb.counters(0)
    # Down to 127 records: the oldest function events go, the newer marker stays whole.
    rb.resize(0)
    after = rb.counters(0)
    kept = [e.ts for e in rb.snapshot().events]
    assert kept[-3:] == [600, 601, 602] and kept == sorted(kept)
    assert after.head - after.tail == after.capacity == UNEXPANDED_CAPACITY
    assert after.overrun - before.overrun == before.entries_in_buffer - len(kept)
    assert after.read == before.read == 1
    assert rb.snapshot().entries_in_buffer == len(kept)


def test_a_cpu_resized_alone_keeps_the_others(rb):
    """tracing_resize_ring_buffer(size, cpu): that CPU's size only; it marks the buffer
    expanded, so a later tracer set expands nothing."""
    write_n(rb, 0, 1, 10)
    write_n(rb, 1, 100, 10)
    rb.resize(4 << 10, cpu=1)
    assert rb.expanded
    assert (rb.size_bytes(0), rb.size_bytes(1)) == (8160, 4096)
    assert rb.counters(1).capacity == rb_capacity(4096)
    assert rb.counters(0).buffer_id == 1
    assert [e.ts for e in rb.snapshot().events] == [*range(1, 11), *range(100, 110)]
    rb.expand()
    assert (rb.size_bytes(0), rb.size_bytes(1)) == (8160, 4096)


def test_resize_beyond_shared_memory_is_enomem(rb):
    stat = os.statvfs(SHM_DIR)
    with pytest.raises(KernelError) as exc:
        rb.resize(stat.f_bavail * stat.f_frsize)
    assert exc.value.errno == errno.ENOMEM
    assert rb.expanded  # __tracing_resize_ring_buffer() marks it before it tries


def test_a_resize_after_destroy_is_enodev_and_creates_nothing():
    """A buffer_size_kb write of a call still inside a rebooted kernel."""
    ring = RingBuffer(new_namespace(), nr_cpus=2)
    ring.destroy()
    assert segments_of(ring.namespace) == []
    for resize in (lambda: ring.resize(64 << 10), ring.expand):
        with pytest.raises(KernelError) as exc:
            resize()
        assert exc.value.errno == errno.ENODEV
    assert segments_of(ring.namespace) == []


# -- overwrite and overruns -----------------------------------------------------------------

def test_flooding_a_small_buffer_counts_every_overrun(rb):
    write_n(rb, 0, 1, 1000)
    counters = rb.counters(0)
    assert (counters.entries, counters.overrun) == (1000, 1000 - UNEXPANDED_CAPACITY)
    snap = rb.snapshot()
    # get_total_entries(): in buffer / in buffer + overruns.
    assert (snap.entries_in_buffer, snap.entries_written) == (UNEXPANDED_CAPACITY, 1000)
    assert [e.ts for e in snap.events] == list(range(1000 - UNEXPANDED_CAPACITY + 1, 1001))
    assert rb.overruns() == 1000 - UNEXPANDED_CAPACITY


def test_batch_of_a_million_events_overruns_exactly():
    rb = RingBuffer(new_namespace(), nr_cpus=2)
    try:
        rb.expand()
        capacity = rb.counters(1).capacity
        write_n(rb, 1, 1, 5)
        count = 1_000_000
        ts = np.arange(10, 10 + count, dtype=np.uint64)
        ips = np.arange(count, dtype=np.uint64) + 0xFFFFFFFF81000000
        assert rb.write_function_events(1, ts, 42, ips, ips + 1) == count
        counters = rb.counters(1)
        assert counters.entries == count + 5
        assert counters.overrun == count + 5 - capacity
        snap = rb.snapshot(cpu=1)
        assert (snap.entries_in_buffer, snap.entries_written) == (capacity, count + 5)
        kept = snap.events
        assert [e.ts for e in kept] == ts[-capacity:].tolist()
        assert [e.ip for e in kept[:3]] == ips[-capacity:][:3].tolist()
        assert {(e.pid, e.cpu, e.type) for e in kept} == {(42, 1, TRACE_FN)}
    finally:
        rb.destroy()
    assert segments_of(rb.namespace) == []


def test_batches_wrap_around_the_ring(rb):
    capacity = UNEXPANDED_CAPACITY
    written = 0
    for size in (50, 100, 1, 126, 127, 300, 7):
        ts = np.arange(written, written + size, dtype=np.uint64)
        rb.write_function_events(0, ts, np.full(size, 7, dtype=np.int32),
                                 ts + 0x1000, ts + 0x2000, flags=np.full(size, 1))
        written += size
    snap = rb.snapshot()
    assert [e.ts for e in snap.events] == list(range(written - capacity, written))
    assert [e.parent_ip - e.ts for e in snap.events] == [0x2000] * capacity
    assert {e.flags for e in snap.events} == {1}
    assert rb.counters(0).overrun == written - capacity


@settings(max_examples=60, deadline=None)
@given(st.booleans(), st.lists(st.one_of(
    st.tuples(st.just("fn"), st.integers(1, 40)),
    st.tuples(st.just("marker"), st.integers(0, TRACE_BUF_SIZE + 20)),
    st.tuples(st.just("consume"), st.integers(1, 30)),
    # Calls under func_stack_trace: how many, and their stack's frames (7 fill a record;
    # over 506 the stack is more than an event holds).
    st.tuples(st.just("stack"), st.integers(1, 70), st.sampled_from([0, 1, 7, 13, 40, 507])),
), max_size=40))
def test_against_a_reference_ring(overwrite, ops):
    """Whole events are overwritten oldest first, markers and stacks spanning several
    records; without overwrite, an event that does not fit is lost, counted nowhere."""
    rb = RingBuffer(new_namespace(), nr_cpus=1)
    rb.change_overwrite(overwrite)
    try:
        # (ts, records, type) of the reference ring's events.
        live: deque[tuple[int, int, int]] = deque()
        used = overrun = entries = read = 0
        ts = 0

        def put(records: int, etype: int = TRACE_FN) -> bool:
            nonlocal used, overrun, entries
            if not overwrite and used + records > UNEXPANDED_CAPACITY:
                return False
            while used + records > UNEXPANDED_CAPACITY:
                used -= live.popleft()[1]
                overrun += 1
            live.append((ts, records, etype))
            used += records
            entries += 1
            return True

        for op, n, *frames in ops:
            if op == "fn":
                stamps = np.arange(ts + 1, ts + n + 1, dtype=np.uint64)
                written = rb.write_function_events(0, stamps, 1, stamps, stamps)
                kept = 0
                for _ in range(n):
                    ts += 1
                    kept += put(1)
                assert written == kept
            elif op == "stack":
                stack = tuple(range(0x1000, 0x1000 + frames[0]))
                written = rb.write_function_stack_events(0, ts + 1, 1, 5, 6, 0, stack, n)
                kept = 0
                for _ in range(n):
                    ts += 1
                    if not put(1):
                        ts -= 1  # a reserve that fails takes no timestamp
                        continue
                    kept += 1
                    if len(stack) <= 506:  # an entry of at most BUF_MAX_DATA_SIZE
                        ts += 1
                        if put(1 + -(-len(stack) * 8 // RB_TEXT_PER_RECORD), TRACE_STACK):
                            kept += 1
                        else:
                            ts -= 1
                assert written == kept
            elif op == "marker":
                ts += 1
                text = bytes([65 + ts % 26]) * n
                length = min(n, TRACE_BUF_SIZE) + 1  # the newline the kernel appends
                if put(1 + -(-length // RB_TEXT_PER_RECORD), TRACE_PRINT):
                    assert rb.write_marker(0, ts, 1, text) == min(n, TRACE_BUF_SIZE)
                else:
                    with pytest.raises(KernelError) as exc:
                        rb.write_marker(0, ts, 1, text)
                    assert exc.value.errno == errno.EBADF
            else:
                got = rb.consume(0, max_events=n, nonblock=True) if live else []
                want = [live.popleft() for _ in range(min(n, len(live)))]
                used -= sum(r for _, r, _ in want)
                read += len(want)
                assert [(e.ts, e.type) for e in got] == [(t, e) for t, _, e in want]
        counters = rb.counters(0)
        assert (counters.entries, counters.overrun, counters.read) == (entries, overrun, read)
        events = rb.snapshot().events
        assert [(e.ts, e.type) for e in events] == [(t, e) for t, _, e in live]
        assert all(stack_frames(e.text) == list(range(0x1000, 0x1000 + len(e.text) // 8))
                   for e in events if e.type == TRACE_STACK)
    finally:
        rb.destroy()


def test_without_overwrite_a_full_buffer_keeps_the_oldest_and_drops_the_new(rb):
    """ring_buffer_change_overwrite(0): rb_move_tail() fails the reserve instead of
    moving the head; 3.6 counts the lost events nowhere (no dropped counter yet)."""
    rb.change_overwrite(False)
    write_n(rb, 0, 1, UNEXPANDED_CAPACITY + 10)
    assert not rb.write_function_event(0, 999, 1, 1, 2)
    batch = np.arange(2000, 2010, dtype=np.uint64)
    assert rb.write_function_events(0, batch, 1, batch, batch) == 0
    with pytest.raises(KernelError) as exc:
        rb.write_marker(0, 3000, 5, "x")
    assert exc.value.errno == errno.EBADF
    counters = rb.counters(0)
    assert (counters.entries, counters.overrun) == (UNEXPANDED_CAPACITY, 0)
    assert [e.ts for e in rb.snapshot().events] == list(range(1, UNEXPANDED_CAPACITY + 1))
    # Reading makes room: a batch puts in its first events, as many as fit.
    assert len(rb.consume(0, max_events=4, nonblock=True)) == 4
    assert rb.write_function_events(0, batch, np.arange(10), batch, batch) == 4
    assert [(e.ts, e.pid) for e in rb.snapshot().events[-4:]] == [(2000 + i, i)
                                                                 for i in range(4)]
    rb.change_overwrite(True)
    write_n(rb, 0, 4000, 1)
    assert rb.counters(0).overrun == 1
    assert rb.snapshot().events[-1].ts == 4000


# -- markers ------------------------------------------------------------------------------

def test_marker_text_newline_and_limit(rb):
    assert rb.write_marker(0, 1, 5, "hello") == 5
    assert rb.write_marker(0, 2, 5, b"line\n") == 5
    assert rb.write_marker(1, 3, 5, b"") == 0
    long = bytes(range(32, 127)) * 20
    assert rb.write_marker(1, 4, 5, long) == TRACE_BUF_SIZE
    events = rb.snapshot().events
    assert [e.type for e in events] == [TRACE_PRINT] * 4
    assert [e.text for e in events] == [b"hello\n", b"line\n", b"\n", long[:TRACE_BUF_SIZE] + b"\n"]
    # A full-size marker spans the most records a marker takes.
    assert rb.counters(1).head == 2 + MAX_MARKER_RECORDS
    assert rb.snapshot().entries_in_buffer == 4


def test_marker_is_ebadf_while_recording_is_off(rb):
    rb.record_off()
    with pytest.raises(KernelError) as exc:
        rb.write_marker(0, 1, 5, "x")
    assert exc.value.errno == errno.EBADF
    assert rb.counters(0).entries == 0


def test_overwriting_a_marker_drops_it_whole(rb):
    rb.write_marker(0, 1, 5, b"m" * 500)  # 1 + 9 records
    write_n(rb, 0, 2, UNEXPANDED_CAPACITY - 12)
    assert rb.counters(0).overrun == 0
    write_n(rb, 0, 1000, 3)  # needs the first 1 record: the marker goes, all 10 records
    counters = rb.counters(0)
    assert (counters.overrun, counters.entries_in_buffer) == (1, UNEXPANDED_CAPACITY - 12 + 3)
    assert counters.head - counters.tail == UNEXPANDED_CAPACITY - 12 + 3
    assert rb.snapshot().events[0].ts == 2


# -- recording on / off ---------------------------------------------------------------------

def test_tracing_on_off_drops_writes_uncounted(rb):
    assert rb.record_is_on()
    rb.record_off()
    assert not rb.record_is_on()
    assert not rb.write_function_event(0, 1, 1, 1, 2)
    assert rb.write_function_events(0, np.arange(5), 1, np.arange(5), np.arange(5)) == 0
    assert rb.snapshot() == ([], 0, 0)
    rb.record_on()
    assert rb.write_function_event(0, 2, 1, 1, 2)
    assert rb.snapshot().entries_written == 1


def test_record_disable_nests_and_shows_in_tracing_on(rb):
    rb.record_disable()
    rb.record_disable()
    rb.record_enable()
    assert not rb.record_is_on()  # 3.6 reads the whole record_disabled word
    assert not rb.write_function_event(0, 1, 1, 1, 2)
    rb.record_enable()
    assert rb.record_is_on()


# -- non-consuming and consuming reads -------------------------------------------------------

def test_snapshot_merges_cpus_by_timestamp_lower_cpu_first_on_ties(rb):
    for cpu, ts in ((1, 5), (0, 7), (1, 7), (0, 9), (1, 1)):
        rb.write_function_event(cpu, ts, 1, ts, 0)
    # __find_next_entry(): the oldest of the CPUs' next events each time, CPU 0 on a tie;
    # a CPU's own order is kept (a merge, not a sort), so its late ts 1 comes after its 7.
    assert [(e.ts, e.cpu) for e in rb.snapshot().events] == [(5, 1), (7, 0), (7, 1), (1, 1), (9, 0)]


def test_per_cpu_snapshot_keeps_all_cpu_totals(rb):
    write_n(rb, 0, 1, 3)
    write_n(rb, 1, 10, 2)
    snap = rb.snapshot(cpu=1)
    assert [e.ts for e in snap.events] == [10, 11]
    assert (snap.entries_in_buffer, snap.entries_written) == (5, 5)  # get_total_entries()


def test_consumed_events_leave_both_header_counts(rb):
    write_n(rb, 0, 1, 200)  # 73 overruns
    events = rb.consume(max_events=10, nonblock=True)
    assert [e.ts for e in events] == list(range(74, 84))
    snap = rb.snapshot()
    assert (snap.entries_in_buffer, snap.entries_written) == (117, 117 + 73)


def test_consume_reports_lost_events_once(rb):
    write_n(rb, 0, 1, 200)
    first, second = rb.consume(max_events=2, nonblock=True)
    assert (first.lost_events, second.lost_events) == (200 - UNEXPANDED_CAPACITY, 0)
    assert all(e.lost_events == 0 for e in rb.consume(nonblock=True))
    write_n(rb, 0, 1000, UNEXPANDED_CAPACITY + 5)
    assert rb.consume(max_events=1, nonblock=True)[0].lost_events == 5


def test_consume_merges_cpus_and_honours_max_events(rb):
    write_n(rb, 0, 1, 3)
    write_n(rb, 1, 2, 3)  # ts 2..4 on CPU 1; ts 2 and 3 tie with CPU 0
    got = rb.consume(max_events=4, nonblock=True)
    assert [(e.ts, e.cpu) for e in got] == [(1, 0), (2, 0), (2, 1), (3, 0)]
    assert [(e.ts, e.cpu) for e in rb.consume(nonblock=True)] == [(3, 1), (4, 1)]
    assert rb.counters(0).read == 3 and rb.counters(1).read == 3


def test_nonblock_on_empty_is_eagain(rb):
    with pytest.raises(KernelError) as exc:
        rb.consume(nonblock=True)
    assert exc.value.errno == errno.EAGAIN
    write_n(rb, 1, 1, 1)
    with pytest.raises(KernelError):
        rb.consume(cpu=0, nonblock=True)  # per_cpu/cpu0/trace_pipe sees only CPU 0
    assert [e.cpu for e in rb.consume(cpu=1, nonblock=True)] == [1]


def test_blocking_consume_wakes_on_write(rb):
    result: list = []
    reader = threading.Thread(target=lambda: result.append(rb.consume(timeout=DEADLINE)))
    started = time.monotonic()
    reader.start()
    # The write may land before or after the reader blocks; both must return the event.
    rb.write_marker(1, 5, 9, "wake")
    reader.join(DEADLINE)
    assert not reader.is_alive()
    assert [e.text for e in result[0]] == [b"wake\n"]
    assert time.monotonic() - started < DEADLINE


def test_blocking_consume_returns_empty_on_close(rb):
    result: list = []
    entered = threading.Event()

    def read() -> None:
        entered.set()
        result.append(rb.consume(timeout=DEADLINE))

    reader = threading.Thread(target=read)
    reader.start()
    assert entered.wait(DEADLINE)
    rb.close()
    reader.join(DEADLINE)
    assert not reader.is_alive() and result == [[]]
    assert rb.consume(nonblock=True) == []  # closed: EOF, never EAGAIN


def test_a_signal_wakes_a_blocked_consume_with_eintr(rb):
    """signal_wake_up() wakes a reader waiting for data at once (no timeout to run out:
    the wait has none), and it returns EINTR."""
    signalled = threading.Event()
    errors: list[int] = []
    waiting = threading.Event()

    def read() -> None:
        waiting.set()
        try:
            rb.consume(signal_pending=signalled.is_set)
        except KernelError as err:
            errors.append(err.errno)

    reader = threading.Thread(target=read)
    reader.start()
    assert waiting.wait(DEADLINE)
    signalled.set()
    rb.signal_wake_up()
    reader.join(DEADLINE)
    assert not reader.is_alive() and errors == [errno.EINTR]


def test_a_signalled_consume_takes_nothing(rb):
    """A reader with a signal pending finds events there and consumes none of them: they
    stay for the next reader."""
    write_n(rb, 0, 1, 3)
    with pytest.raises(KernelError) as raised:
        rb.consume(nonblock=True, signal_pending=lambda: True)
    assert raised.value.errno == errno.EINTR
    assert [e.ts for e in rb.consume(nonblock=True)] == [1, 2, 3]


def test_blocking_consume_times_out_empty(rb):
    started = time.monotonic()
    assert rb.consume(timeout=0.05) == []
    assert time.monotonic() - started >= 0.05


def test_two_concurrent_consumers_get_each_event_exactly_once():
    rb = RingBuffer(new_namespace(), nr_cpus=4)
    rb.expand()  # 22567 events per CPU: no overwrite in this test
    clock = TraceClock(time.monotonic_ns)
    per_writer = 5000
    collected: list = []
    progress = threading.Condition()

    def consumer() -> None:
        while events := rb.consume(max_events=37):
            with progress:
                collected.extend(events)
                progress.notify_all()

    def writer(cpu: int) -> None:
        for start in range(0, per_writer, 100):
            if start % 200:
                rb.write_function_events(cpu, clock.stamps(100), cpu, np.arange(100),
                                         np.arange(100))
            else:
                for _ in range(100):
                    rb.write_function_event(cpu, clock(), cpu, 1, 2)

    try:
        consumers = [threading.Thread(target=consumer) for _ in range(2)]
        writers = [threading.Thread(target=writer, args=(cpu,)) for cpu in range(4)]
        for thread in consumers + writers:
            thread.start()
        for thread in writers:
            thread.join(DEADLINE * 3)
        total = 4 * per_writer
        with progress:
            assert progress.wait_for(lambda: len(collected) >= total, DEADLINE * 3)
        rb.close()
        for thread in consumers:
            thread.join(DEADLINE)
            assert not thread.is_alive()
        stamps = [e.ts for e in collected]
        assert len(stamps) == total and len(set(stamps)) == total
        assert rb.snapshot() == ([], 0, 0)
        assert sum(rb.counters(cpu).read for cpu in range(4)) == total
    finally:
        rb.destroy()


def test_reset_one_cpu_or_all(rb):
    write_n(rb, 0, 1, 200)
    write_n(rb, 1, 1, 3)
    rb.reset(cpu=1)
    assert rb.snapshot() == (rb.snapshot(cpu=0).events, UNEXPANDED_CAPACITY, 200)
    rb.reset()
    assert rb.snapshot() == ([], 0, 0)
    counters = rb.counters(0)
    assert (counters.entries, counters.overrun, counters.read) == (0, 0, 0)
    write_n(rb, 0, 500, 2)
    assert [e.lost_events for e in rb.consume(nonblock=True)] == [0, 0]


def test_trace_clock_never_repeats_or_goes_back():
    readings = iter([100, 50, 50, 1000])
    clock = TraceClock(lambda: next(readings))
    assert clock() == 100
    assert clock.stamps(3).tolist() == [101, 102, 103]
    assert clock() == 104
    assert clock() == 1000


def test_bad_cpu_is_rejected(rb):
    with pytest.raises(ValueError):
        rb.write_function_event(2, 1, 1, 1, 2)
    with pytest.raises(ValueError):
        rb.consume(cpu=-1, nonblock=True)


# -- the other-process reader -----------------------------------------------------------------

_CHILD = r"""
import json, os, sys
from kernel_daemon.shm import SHM_DIR, segments_of
from kernel_daemon.trace.reader import RingBufferReader
namespace, rounds = sys.argv[1], int(sys.argv[2])
before = segments_of(namespace)
reader = RingBufferReader(namespace)
snaps = []
for _ in range(rounds):
    snap = reader.snapshot()
    snaps.append([[list(e) for e in snap.events], snap.entries_in_buffer, snap.entries_written])
json.dump({"pid": os.getpid(), "nr_cpus": reader.nr_cpus, "snaps": snaps, "before": before,
           "after": segments_of(namespace)}, sys.stdout, default=lambda b: b.hex())
"""


def run_reader(namespace: str, rounds: int = 1) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD, namespace, str(rounds)], cwd=REPO,
                          env=child_env(), capture_output=True, text=True, timeout=120,
                          check=True)
    return json.loads(done.stdout)


def test_reader_in_another_process_matches_and_leaves_shm_alone(rb):
    write_n(rb, 0, 1, 300)
    rb.write_marker(1, 400, 77, "from the shell")
    write_n(rb, 1, 500, 4)
    rb.consume(cpu=1, max_events=1, nonblock=True)
    ours = rb.snapshot()
    ours_before = segments_of(rb.namespace)
    shm_before = set(os.listdir(SHM_DIR))
    child = run_reader(rb.namespace)
    assert child["nr_cpus"] == 2
    events, in_buffer, written = child["snaps"][0]
    assert (in_buffer, written) == (ours.entries_in_buffer, ours.entries_written)
    text = Event._fields.index("text")  # the child dumped each event as a list, text in hex
    assert [tuple(e[:text]) for e in events] == [tuple(e[:text]) for e in ours.events]
    assert [bytes.fromhex(e[text]) for e in events] == [e.text for e in ours.events]
    # Attaching removed nothing, in the child or after it exited, and created nothing.
    assert child["before"] == child["after"] == ours_before == segments_of(rb.namespace)
    assert not [name for name in set(os.listdir(SHM_DIR)) - shm_before
                if name.startswith(f"ftsim.{child['pid']}.")]
    assert rb.snapshot() == ours


def test_reader_snapshots_are_consistent_under_concurrent_writes(rb):
    stop = threading.Event()

    def writer(cpu: int) -> None:
        ts = 1
        while not stop.is_set():
            size = 1 + ts % 50
            stamps = np.arange(ts, ts + size, dtype=np.uint64)
            rb.write_function_events(cpu, stamps, cpu, stamps, stamps)
            ts += size
            if ts % 7 == 0:
                rb.consume(cpu=cpu, max_events=3, nonblock=True)

    writers = [threading.Thread(target=writer, args=(cpu,)) for cpu in range(2)]
    for thread in writers:
        thread.start()
    try:
        child = run_reader(rb.namespace, rounds=200)
    finally:
        stop.set()
        for thread in writers:
            thread.join(DEADLINE)
    for events, in_buffer, written in child["snaps"]:
        assert len(events) == in_buffer <= 2 * UNEXPANDED_CAPACITY
        assert written >= in_buffer
        for cpu in range(2):
            stamps = [e[0] for e in events if e[1] == cpu]
            # One CPU's copy is a run of consecutive writes: no torn or stale records.
            first = stamps[0] if stamps else 0
            assert stamps == list(range(first, first + len(stamps)))
            assert all(e[6] == e[0] for e in events if e[1] == cpu)


def test_reader_follows_a_resize(rb):
    reader = RingBufferReader(rb.namespace)
    write_n(rb, 0, 1, 5)
    assert len(reader.snapshot().events) == 5
    rb.expand()
    write_n(rb, 1, 10, 300)
    snap = reader.snapshot()
    assert [e.ts for e in snap.events] == [*range(1, 6), *range(10, 310)]
    assert snap == rb.snapshot()


def test_reader_rejects_a_non_ring_buffer_namespace():
    with pytest.raises(FileNotFoundError):
        RingBufferReader(new_namespace())


def test_a_resize_that_cannot_get_its_segment_is_enomem_and_changes_nothing(rb, monkeypatch):
    """Out of file descriptors (or /dev/shm full), the new segment cannot be made: 3.6's
    page allocation failing, so ENOMEM, and the CPU keeps its events, its size and a
    segment a reader in another process can map; no writer is left marked in progress."""
    write_n(rb, 0, 1, 10)
    before = rb.counters(0)

    def no_more_files(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr("kernel_daemon.trace.ring_buffer.ShmSegment", no_more_files)
    with pytest.raises(KernelError) as exc:
        rb.resize(4 << 10)
    assert exc.value.errno == errno.ENOMEM
    monkeypatch.undo()
    assert rb.counters(0) == before and rb.size_bytes(0) == 8160
    assert [e.ts for e in RingBufferReader(rb.namespace).snapshot().events] == list(range(1, 11))
    assert segments_of(rb.namespace) == sorted(
        [f"{rb.namespace}.rb0", f"{rb.namespace}.rb1", f"{rb.namespace}.rbdir"])
