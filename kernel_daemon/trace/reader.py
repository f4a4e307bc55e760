"""Reading the trace ring buffers from another process, without the CPU locks.

The reader side of each CPU header's seqlock (``read_seqbegin`` / ``read_seqretry``), the
same rule as the record pages' (``kernel_daemon.ftrace.snapshot``): copy the counters and
the live records, and keep the copy only if no writer was active at the start and the
generation did not move.  Segments are mapped read-only and never unlinked, so attaching
leaves ``/dev/shm`` as it was.  What ``ftrace-inspect`` uses, as ``crash``'s ``trace``
extension reads a live kernel's buffers.
"""

from __future__ import annotations

import os
import time

import numpy as np

from kernel_daemon.shm import ShmSegment
from kernel_daemon.trace.buffers import (C_GENERATION, C_WRITERS, DIR_MAGIC, RB_EVENT,
                                         RB_EVENT_SIZE, W_EVENT_SIZE, W_MAGIC, W_NR_CPUS,
                                         CpuCounters, Event, Snapshot, copy_ring, cpu_segment_name,
                                         cpu_words, decode_events, dir_segment_name,
                                         merge_events, total_entries)


class SnapshotRetry(Exception):
    """A writer was active, or the buffer was reallocated, during the copy."""


class RingBufferReader:
    """Attach to a kernel's ring buffers by its shared-memory namespace (``ftsim.<pid>.<n>``)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.directory = ShmSegment(dir_segment_name(namespace))
        self._words = np.frombuffer(self.directory.map, dtype="<u8")
        if self._words[W_MAGIC] != DIR_MAGIC or self._words[W_EVENT_SIZE] != RB_EVENT_SIZE:
            raise ValueError(f"{self.directory.name} is not an ftrace-sim ring buffer directory")
        self.nr_cpus = int(self._words[W_NR_CPUS])
        # cpu -> (buffer_id, mapping) of the data segment last attached.
        self._segments: dict[int, tuple[int, ShmSegment]] = {}

    def _records(self, cpu: int, counters: CpuCounters) -> np.ndarray:
        cached = self._segments.get(cpu)
        if cached is None or cached[0] != counters.buffer_id:
            try:
                segment = ShmSegment(cpu_segment_name(self.namespace, cpu))
            except FileNotFoundError as exc:  # between a resize's unlink and create
                raise SnapshotRetry from exc
            cached = (counters.buffer_id, segment)
            self._segments[cpu] = cached
        segment = cached[1]
        if segment.size < counters.capacity * RB_EVENT_SIZE:
            raise SnapshotRetry  # the name already belongs to a reallocated buffer
        return np.frombuffer(segment.map, dtype=RB_EVENT, count=counters.capacity)

    def try_snapshot_cpu(self, cpu: int, with_events: bool = True
                         ) -> tuple[CpuCounters, list[Event]]:
        """One CPU's counters and (unless not wanted) events, or :class:`SnapshotRetry`."""
        block = cpu_words(self._words, cpu)
        generation = int(block[C_GENERATION])
        if block[C_WRITERS]:
            raise SnapshotRetry
        counters = CpuCounters.from_words(block)
        recs = None
        if with_events:
            try:
                recs = copy_ring(self._records(cpu, counters), counters.tail, counters.head)
            except SnapshotRetry:
                self._segments.pop(cpu, None)
                raise
        if int(block[C_GENERATION]) != generation or block[C_WRITERS]:
            # The mapping may be of a buffer that replaced the one the counters describe.
            self._segments.pop(cpu, None)
            raise SnapshotRetry
        return counters, decode_events(recs) if recs is not None else []

    def snapshot(self, cpu: int | None = None, timeout: float = 5.0) -> Snapshot:
        """A consistent copy of each CPU (each CPU on its own, as the kernel's per-CPU
        iterators read), merged by timestamp, with ``get_total_entries()`` over all CPUs;
        retries until the writers are out of the way or ``timeout`` seconds pass."""
        if cpu is not None and not 0 <= cpu < self.nr_cpus:
            raise ValueError(f"no CPU {cpu}: the ring buffer has {self.nr_cpus}")
        deadline = time.monotonic() + timeout
        counters: list[CpuCounters] = []
        per_cpu: list[list[Event]] = []
        for c in range(self.nr_cpus):
            while True:
                try:
                    cpu_counters, events = self.try_snapshot_cpu(c, cpu in (None, c))
                    break
                except SnapshotRetry:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"CPU {c}'s buffer kept changing; "
                                           "no consistent snapshot") from None
                    os.sched_yield()  # cpu_relax(): let the writer finish
            counters.append(cpu_counters)
            if cpu in (None, c):
                per_cpu.append(events)
        in_buffer, written = total_entries(counters)
        return Snapshot(merge_events(per_cpu), in_buffer, written)
