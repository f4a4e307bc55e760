"""``struct ftrace_hash``: a set of call-site addresses.

Model of the hash of ``kernel/trace/ftrace.c`` (3.6).  Buckets only affect speed in
the kernel, so a Python set serves (spec §1.3), with a sorted NumPy copy for the
vectorised passes over records.  Entries are plain ips: nothing links an entry to a
record, which is why a stale entry survives a module unload.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class FtraceHash:
    __slots__ = ("_ips", "_sorted")

    def __init__(self, ips: Iterable[int] = ()) -> None:
        self._ips: set[int] = set(ips)
        self._sorted: np.ndarray | None = None

    @property
    def count(self) -> int:
        return len(self._ips)

    def empty(self) -> bool:
        """``ftrace_hash_empty()``: NULL or count 0 (3.6 has no FTRACE_HASH_FL_MOD)."""
        return not self._ips

    def lookup_ip(self, ip: int) -> bool:
        """``ftrace_lookup_ip()``."""
        return ip in self._ips

    def add(self, ips: Iterable[int]) -> None:
        """``add_hash_entry()`` for each ip not yet present."""
        self._ips.update(int(ip) for ip in ips)
        self._sorted = None

    def remove(self, ips: Iterable[int]) -> None:
        """``remove_hash_entry()`` for each ip present."""
        self._ips.difference_update(int(ip) for ip in ips)
        self._sorted = None

    def clear(self) -> None:
        """``ftrace_hash_clear()``."""
        self._ips.clear()
        self._sorted = None

    def copy(self) -> FtraceHash:
        """``alloc_and_copy_ftrace_hash()``."""
        return FtraceHash(self._ips)

    def ips(self) -> frozenset[int]:
        return frozenset(self._ips)

    def sorted_ips(self) -> np.ndarray:
        if self._sorted is None:
            self._sorted = np.fromiter(sorted(self._ips), dtype=np.uint64, count=len(self._ips))
        return self._sorted

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
        pos = np.searchsorted(sorted_ips, table)
        inside = pos < len(sorted_ips)
        pos = pos[inside]
        return pos[sorted_ips[pos] == table[inside]]

    def __len__(self) -> int:
        return len(self._ips)

    def __repr__(self) -> str:
        return f"FtraceHash({sorted(hex(ip) for ip in self._ips)})"
