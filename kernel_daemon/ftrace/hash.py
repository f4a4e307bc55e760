"""``struct ftrace_hash``: a set of call-site addresses.

Model of the hash of ``kernel/trace/ftrace.c`` (3.6).  Buckets only affect speed in
the kernel, so the model keeps the entries as a sorted NumPy array (for the vectorised
passes over records) and/or a Python set (for single lookups and edits), each made
from the other when first needed (spec §1.3).  Entries are plain ips: nothing links an
entry to a record, which is why a stale entry survives a module unload.

Where the model differs from the kernel: ``copy()`` shares the sorted array instead of
copying entries (the array is never changed in place: an edit makes a new one), so
``alloc_and_copy_ftrace_hash`` and ``ftrace_hash_move`` cost O(1) here.
"""

from __future__ import annotations

import array
import weakref
from collections.abc import Iterable

import numpy as np

from kernel_daemon.ftrace.records import search_ip

_EMPTY = np.empty(0, dtype=np.uint64)
_EMPTY.flags.writeable = False

# Functions start 16-byte aligned (vmlinux and modules alike, but for a few asm labels):
# a record array gets a slot table, slot (ip - first) >> 4 -> the first record at or
# after the slot's start, for lookups of large hashes (an entry's record is then found
# in one or two probes instead of a binary search); it is built when first needed and
# lives as long as the array.
_SLOT_SHIFT = np.uint64(4)
# At least this many entries to look up before a slot table is built or used; below it
# binary search is as fast.
_INDEX_MIN_ENTRIES = 256
# No slot table when it would have more than this many slots per record (sparse text).
_INDEX_MAX_SPREAD = 32


class _SlotTable:
    __slots__ = ("fence", "probes")

    def __init__(self, fence: np.ndarray, probes: int) -> None:
        self.fence = fence  # fence[s]: the first record whose slot is >= s
        self.probes = probes  # the most records any slot holds


_indexes: dict[int, tuple[weakref.ref[np.ndarray], np.ndarray | None]] = {}


def _sorted_array(ips: set[int]) -> np.ndarray:
    """The entries of a set as a sorted, read-only uint64 array."""
    if not ips:
        return _EMPTY
    table = np.frombuffer(array.array("Q", ips), dtype=np.uint64)
    table.sort()
    table.flags.writeable = False
    return table


def _slot_table(sorted_ips: np.ndarray) -> _SlotTable | None:
    """The slot table of a record array, or None when its ips spread too thinly."""
    key = id(sorted_ips)
    cached = _indexes.get(key)
    if cached is not None and cached[0]() is sorted_ips:
        return cached[1]
    table = None
    slot = (sorted_ips - sorted_ips[0]) >> _SLOT_SHIFT
    slots = int(slot[-1]) + 1
    if slots <= _INDEX_MAX_SPREAD * len(sorted_ips) and len(sorted_ips) < 2**31:
        per_slot = np.bincount(slot.astype(np.intp), minlength=slots)
        fence = np.zeros(slots + 1, dtype=np.int32)
        np.cumsum(per_slot, out=fence[1:])
        table = _SlotTable(fence, int(per_slot.max()))
    _indexes[key] = (weakref.ref(sorted_ips, lambda _ref: _indexes.pop(key, None)), table)
    return table


def _positions_by_slot(sorted_ips: np.ndarray, table: np.ndarray, slots: _SlotTable
                       ) -> np.ndarray:
    """``positions_in`` through a slot table; every entry of ``table`` lies within the
    records' range."""
    slot = ((table - sorted_ips[0]) >> _SLOT_SHIFT).astype(np.intp)
    pos = slots.fence[slot].astype(np.intp)
    # An empty slot's fence is the next slot's first record, which then does not match;
    # the last slot is never empty, so pos stays within the records.
    found = sorted_ips[pos] == table
    if slots.probes > 1:
        # A slot with several records (an asm label beside a function): probe on.
        end = slots.fence[slot + 1]
        for probe in range(1, slots.probes):
            todo = np.flatnonzero(~found & (pos + probe < end))
            if not todo.size:
                break
            at = pos[todo] + probe
            hit = sorted_ips[at] == table[todo]
            pos[todo[hit]] = at[hit]
            found[todo[hit]] = True
    return pos[found]


class FtraceHash:
    # _ips: the entries as a set, or None until needed; _sorted: as a sorted read-only
    # array, or None until needed.  At least one of them is set; both hold the same.
    __slots__ = ("_ips", "_sorted")

    def __init__(self, ips: Iterable[int] = ()) -> None:
        self._ips: set[int] | None = set(ips)
        self._sorted: np.ndarray | None = None

    @classmethod
    def from_sorted(cls, table: np.ndarray) -> FtraceHash:
        """A hash of the entries of ``table``: unique ips in ascending order."""
        hash = cls.__new__(cls)
        table = np.array(table, dtype=np.uint64)  # a private copy
        table.flags.writeable = False
        hash._ips = None
        hash._sorted = table
        return hash

    def _set(self) -> set[int]:
        ips = self._ips
        if ips is None:
            ips = self._ips = set(self._sorted.tolist())  # type: ignore[union-attr]
        return ips

    @property
    def count(self) -> int:
        ips = self._ips
        return len(ips) if ips is not None else len(self._sorted)  # type: ignore[arg-type]

    def empty(self) -> bool:
        """``ftrace_hash_empty()``: NULL or count 0 (3.6 has no FTRACE_HASH_FL_MOD)."""
        return not self.count

    def lookup_ip(self, ip: int) -> bool:
        """``ftrace_lookup_ip()``."""
        return ip in self._set()

    def add(self, ips: Iterable[int]) -> None:
        """``add_hash_entry()`` for each ip not yet present."""
        self._set().update(int(ip) for ip in ips)
        self._sorted = None

    def remove(self, ips: Iterable[int]) -> None:
        """``remove_hash_entry()`` for each ip present."""
        self._set().difference_update(int(ip) for ip in ips)
        self._sorted = None

    def clear(self) -> None:
        """``ftrace_hash_clear()``."""
        self._ips = set()
        self._sorted = None

    def copy(self) -> FtraceHash:
        """``alloc_and_copy_ftrace_hash()``: shares the (immutable) sorted array."""
        hash = FtraceHash.__new__(FtraceHash)
        hash._ips = None
        hash._sorted = self.sorted_ips()
        return hash

    def ips(self) -> frozenset[int]:
        return frozenset(self._set())

    def sorted_ips(self) -> np.ndarray:
        """The entries in ascending order, as a read-only array."""
        table = self._sorted
        if table is None:
            table = self._sorted = _sorted_array(self._ips)  # type: ignore[arg-type]
        return table

    def contains(self, ips: np.ndarray) -> np.ndarray:
        """Vectorised ``ftrace_lookup_ip`` over an array of ips: a boolean mask."""
        table = self.sorted_ips()
        if not len(table):
            return np.zeros(len(ips), dtype=bool)
        pos = np.searchsorted(table, ips)
        pos[pos == len(table)] = 0
        return table[pos] == ips

    def positions_in(self, sorted_ips: np.ndarray) -> np.ndarray:
        """Indices of the entries found in an address-sorted record array, ascending.

        The lookup goes from the hash into the records (binary search per entry),
        so a small filter costs O(entries * log records), not a full scan.
        """
        table = self.sorted_ips()
        if not len(table) or not len(sorted_ips):
            return np.empty(0, dtype=np.intp)
        if len(table) == 1:
            # One entry (the common `echo func > set_ftrace_filter`): a scalar search.
            ip = int(table[0])
            pos = search_ip(sorted_ips, ip)
            if pos < len(sorted_ips) and sorted_ips[pos] == ip:
                return np.array([pos], dtype=np.intp)
            return np.empty(0, dtype=np.intp)
        # Entries outside the records' range cannot be among them (a core kernel
        # filter against a module's records, or the other way round).
        first, last = sorted_ips[0], sorted_ips[-1]
        if table[-1] < first or table[0] > last:
            return np.empty(0, dtype=np.intp)
        if table[0] < first or table[-1] > last:
            table = table[table.searchsorted(first):table.searchsorted(last, side="right")]
        if len(table) >= _INDEX_MIN_ENTRIES:
            slots = _slot_table(sorted_ips)
            if slots is not None:
                return _positions_by_slot(sorted_ips, table, slots)
        pos = sorted_ips.searchsorted(table)
        return pos[sorted_ips[pos] == table]

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"FtraceHash({sorted(hex(ip) for ip in self._set())})"
