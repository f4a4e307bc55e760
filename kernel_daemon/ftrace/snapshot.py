"""Reading the record pages from another process, without ``ftrace_lock``.

The reader side of the page directory's seqlock (``read_seqbegin`` /
``read_seqretry``): copy the directory and every live group, and keep the copy only
if no writer was active at the start and the generation did not move.  Segments are
mapped read-only and never unlinked by the reader, so attaching leaves no trace.
This is what ``ftrace-inspect`` and the stress checker use, as ``crash`` or ``drgn``
read a live kernel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from kernel_daemon.ftrace.records import (DIR_ENTRY, DIR_HEADER, DIR_MAGIC, DYN_FTRACE,
                                          FTRACE_FL_ENABLED, ftrace_rec_count, search_ip)
from kernel_daemon.shm import ShmSegment


@dataclass(frozen=True)
class GroupSnapshot:
    group_id: int
    module: str  # "" for the core kernel
    page_addr: int
    ips: np.ndarray
    flags: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        return ftrace_rec_count(self.flags)

    @property
    def enabled(self) -> np.ndarray:
        return (self.flags & np.uint64(FTRACE_FL_ENABLED)) != 0


@dataclass(frozen=True)
class RecordsSnapshot:
    generation: int
    groups: tuple[GroupSnapshot, ...]
    ftrace_disabled: bool  # ftrace_kill() has run: the records are what it left

    def state(self) -> tuple[int, tuple[int, ...]]:
        """The generation and the groups' ids (compare :meth:`RecordsReader.quiet_state`)."""
        return self.generation, tuple(group.group_id for group in self.groups)

    def find(self, ip: int) -> tuple[GroupSnapshot, int] | None:
        for group in self.groups:
            i = search_ip(group.ips, ip)
            if i < len(group.ips) and group.ips[i] == ip:
                return group, i
        return None


class SnapshotRetry(Exception):
    """A writer was active or the page list changed during the copy."""


class RecordsReader:
    """Attach to a kernel's records by its shared-memory namespace (``ftsim.<pid>.<n>``)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.directory = ShmSegment(f"{namespace}.pagedir")
        self._segments: dict[int, ShmSegment] = {}
        magic = DIR_HEADER.unpack_from(self.directory.map, 0)[0]
        if magic != DIR_MAGIC:
            raise ValueError(f"{namespace}.pagedir is not an ftrace-sim page directory")

    def _header(self) -> tuple[int, int, int, int]:
        """Generation, writers, groups and ftrace_disabled."""
        _, generation, writers, nr_groups, _, disabled = DIR_HEADER.unpack_from(
            self.directory.map, 0)
        return generation, writers, nr_groups, disabled

    def quiet_state(self) -> tuple[int, tuple[int, ...]] | None:
        """``read_seqbegin()`` without the wait: the directory's generation and its
        groups' ids, or None while a writer is active. A snapshot whose
        :meth:`RecordsSnapshot.state` is the same shows the records as they were now.
        The groups count as well as the generation, since linking or unlinking a group
        rewrites the directory, not the generation."""
        generation, writers, nr_groups, _ = self._header()
        if writers:
            return None
        return generation, tuple(self._entry(slot)[0] for slot in range(nr_groups))

    def _entry(self, slot: int) -> tuple[int, int, int, int, bytes]:
        """Directory slot ``slot``: group id, page address, records, pages, module."""
        return DIR_ENTRY.unpack_from(self.directory.map, DIR_HEADER.size + slot * DIR_ENTRY.size)

    def _group(self, slot: int) -> GroupSnapshot:
        group_id, page_addr, nr, _, module = self._entry(slot)
        segment = self._segments.get(group_id)
        if segment is None:
            try:
                segment = ShmSegment(f"{self.namespace}.pg{group_id}")
            except FileNotFoundError as exc:  # freed since the directory was read
                raise SnapshotRetry from exc
            self._segments[group_id] = segment
        recs = np.frombuffer(segment.map, dtype=DYN_FTRACE, count=nr).copy()
        return GroupSnapshot(group_id, module.rstrip(b"\0").decode(), page_addr,
                             recs["ip"], recs["flags"])

    def try_snapshot(self) -> RecordsSnapshot:
        generation, writers, nr_groups, _ = self._header()
        if writers:
            raise SnapshotRetry
        groups = tuple(self._group(slot) for slot in range(nr_groups))
        generation_after, writers, _, disabled = self._header()
        if (generation_after, writers) != (generation, 0):
            raise SnapshotRetry
        live = {g.group_id for g in groups}
        for gone in set(self._segments) - live:
            del self._segments[gone]
        return RecordsSnapshot(generation, groups, bool(disabled))

    def torn_snapshot(self) -> RecordsSnapshot:
        """One copy of the records as they are now, without the seqlock's retry: what
        ``crash`` reads from a live kernel, a writer's half-done update included (a
        writer paused at a failpoint never lets :meth:`snapshot` succeed). A group
        whose pages were freed since the directory was read is left out."""
        generation, _, nr_groups, disabled = self._header()
        groups = []
        for slot in range(nr_groups):
            try:
                groups.append(self._group(slot))
            except SnapshotRetry:
                continue
        return RecordsSnapshot(generation, tuple(groups), bool(disabled))

    def snapshot(self, timeout: float = 5.0) -> RecordsSnapshot:
        """A consistent copy; retries (yielding the CPU, like ``cpu_relax``) until the
        writers are out of the way or the deadline passes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.try_snapshot()
            except SnapshotRetry:
                if time.monotonic() > deadline:
                    raise TimeoutError("records kept changing; no consistent snapshot") from None
                time.sleep(0)
