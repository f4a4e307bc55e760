"""The model's own check, stronger than the kernel's WARN (DESIGN "Checking").

Under ``ftrace_lock``, recompute for every live record the number of enabled ops on
``ftrace_ops_list`` whose hashes select it, and compare with its count; compare
``FTRACE_FL_ENABLED`` with what 3.6 leaves (``records.patch_mismatches``: "count > 0"
while tracing is started and the ``ftrace_enabled`` sysctl on).  It has no kernel
counterpart: it sees the reported bug right after the reload, before any WARN.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass

import numpy as np

from kernel_daemon import task as task_mod
from kernel_daemon.ftrace.core import Ftrace
from kernel_daemon.ftrace.ops import FTRACE_OPS_FL_ENABLED, FtraceOps
from kernel_daemon.ftrace.records import (FTRACE_FL_ENABLED, FtracePageGroup, ftrace_rec_count,
                                          patch_mismatches)


class AnomalyKind(enum.Enum):
    MISSING_REFERENCE = "missing reference"  # count lower than the ops selecting it
    LEAKED_REFERENCE = "leaked reference"  # count higher than the ops selecting it
    PATCH_MISMATCH = "patch mismatch"  # ENABLED where 3.6 cannot leave it: records.patch_mismatches
    FREED_PAGE_ACCESS = "freed-page access"  # a walk reached a freed record page


@dataclass(frozen=True)
class Anomaly:
    kind: AnomalyKind
    ip: int
    function: str
    module: str  # "" for the core kernel
    expected: int
    actual: int
    enabled: bool
    ops: tuple[str, ...]  # the ops selecting the record (or, for a freed page, the task)

    def describe(self) -> str:
        where = f"{self.function} [{self.module}]" if self.module else self.function
        if self.kind is AnomalyKind.FREED_PAGE_ACCESS:
            return f"{self.kind.value}: record page at {self.ip:#x} of {self.module} ({self.function})"
        return (f"{self.kind.value}: {where} at {self.ip:#x}: count {self.actual}, "
                f"expected {self.expected} (ops: {', '.join(self.ops) or 'none'}), "
                f"{'patched' if self.enabled else 'not patched'}")


def enabled_ops(ft: Ftrace) -> list[FtraceOps]:
    """The ops whose references the records hold: those on ``ftrace_ops_list`` with
    ``FTRACE_OPS_FL_ENABLED`` (``__ftrace_hash_rec_update`` returns at once for any other;
    a GLOBAL ops' references are ``global_ops``'). Called under ``ftrace_lock``."""
    return [ops for ops in ft.ftrace_ops_list if ops.flags & FTRACE_OPS_FL_ENABLED]


# The largest address span (bytes) whose membership table ``np.isin`` may build: a table
# costs a byte per address and is the fast way to test a page group's records against a
# hash of tens of thousands of entries; a wider group is sorted instead.
_TABLE_MAX_SPAN = 64 << 20
# Up to this many entries, each is compared with every record instead: a table spans the
# entries' addresses, a few MB for two functions far apart in the core kernel, and cost
# 0.3 to 1 ms a hash where the comparisons cost some 20 us an entry (40,960 records).
_COMPARE_MAX_ENTRIES = 16


def entries_among(ips: np.ndarray, entries: np.ndarray) -> np.ndarray:
    """Which of a page group's records (``ips``, sorted by address) a hash's ``entries``
    name, as a boolean mask. Every record is tested against the entries within the
    group's span (``np.isin``: a membership table over the span, or a sort when it is too
    wide; a few entries, each compared with every record), not looked up one entry at a
    time as the core's ``positions_in`` does."""
    if not len(entries) or not len(ips):
        return np.zeros(len(ips), dtype=bool)
    low, high = ips[0], ips[-1]
    entries = entries[(entries >= low) & (entries <= high)]
    if not len(entries):
        return np.zeros(len(ips), dtype=bool)
    if len(entries) <= _COMPARE_MAX_ENTRIES:
        among = ips == entries[0]
        for entry in entries[1:]:
            among |= ips == entry
        return among
    if int(high - low) > _TABLE_MAX_SPAN:
        return np.isin(ips, entries, kind="sort")
    return np.isin((ips - low).astype(np.int64), (entries - low).astype(np.int64),
                   kind="table")


@dataclass(frozen=True)
class References:
    """Which enabled ops reference each record of a page group: the accounting the
    records' counts should follow, by the rule of 3.6's ``__ftrace_hash_rec_update``
    (an empty filter selects every record, a filter its entries; the notrace hash takes
    its entries out).

    The one source of both a record's expected count and the names of the ops behind it.
    It shares no lookup with the code it judges: neither ``FtraceHash.positions_in`` nor
    ``contains`` (which the passes, the load-time count and the listings use), nor
    ``ops_references_recs``; the hashes' entries are tested against every record
    (:func:`entries_among`), so a lookup that misses a record cannot hide it here too.
    """

    names: tuple[str, ...]  # the ops', in ftrace_ops_list order
    selects: np.ndarray  # bool, one row per record, one column per ops

    @classmethod
    def of(cls, ops_list: list[FtraceOps], ips: np.ndarray) -> References:
        """Read under ``ftrace_lock``, with the records: ``ops_list`` are the enabled ops
        (:func:`enabled_ops`), ``ips`` a page group's."""
        # Column-major: each ops' column is written whole, and expected()'s sum across a
        # row reads columns; row-major, that sum over a core kernel's 40,960 records and
        # 2 to 8 ops took 2 to 3 ms (numpy's short inner axis), under ftrace_lock, on
        # every check (ftrace-stress's checker asks some 20 a second), against 0.1-0.25.
        selects = np.ones((len(ips), len(ops_list)), dtype=bool, order="F")
        for column, ops in enumerate(ops_list):
            filter_entries = ops.filter_hash.sorted_ips()
            if len(filter_entries):
                selects[:, column] = entries_among(ips, filter_entries)
            selects[:, column] &= ~entries_among(ips, ops.notrace_hash.sorted_ips())
        return cls(tuple(ops.name for ops in ops_list), selects)

    def expected(self) -> np.ndarray:
        """Each record's expected count: how many of the ops reference it."""
        return self.selects.sum(axis=1, dtype=np.int64)

    def ops(self, record: int) -> tuple[str, ...]:
        """The names of the ops that reference the record'th record."""
        return tuple(itertools.compress(self.names, self.selects[record]))


def group_anomalies(ft: Ftrace, pg: FtracePageGroup, ops_list: list[FtraceOps]) -> list[Anomaly]:
    """The anomalies of one page group: each record's count against the enabled ops
    that reference it (:class:`References`)."""
    references = References.of(ops_list, pg.ips)
    expected = references.expected()
    actual = ftrace_rec_count(pg.flags).astype(np.int64)
    patched = (pg.flags & np.uint64(FTRACE_FL_ENABLED)) != 0
    count_bad = expected != actual
    # After ftrace_kill nothing is patched or unpatched again; only counts are checked.
    patch_bad = (patch_mismatches(actual, patched, pg.mod is not None, ft.ftrace_start_up,
                                  bool(ft.ftrace_enabled))
                 & ~count_bad & (not ft.ftrace_disabled))
    anomalies = []
    for i in np.flatnonzero(count_bad | patch_bad).tolist():
        if count_bad[i]:
            kind = (AnomalyKind.MISSING_REFERENCE if actual[i] < expected[i]
                    else AnomalyKind.LEAKED_REFERENCE)
        else:
            kind = AnomalyKind.PATCH_MISMATCH
        anomalies.append(Anomaly(
            kind, int(pg.ips[i]), str(pg.names[i]), pg.mod_name,
            int(expected[i]), int(actual[i]), bool(patched[i]), references.ops(i)))
    return anomalies


def check_consistency(ft: Ftrace) -> list[Anomaly]:
    """Every anomaly of the live records, plus every freed-page access seen so far.

    Under ``ftrace_lock`` no page group on the list is freed, unless a race window frees
    one without the lock (``unload-unlocked``): the walk then reads the slab poison, which
    is no count. A group found freed once its records were read is reported as what the
    walk did, a read of a freed page (the kernel's own walks, racing the same free, print
    KASAN's report), and its poisoned records are not compared with anything. ``free()``
    marks a group freed before it poisons it, so a read that saw poison sees the mark.
    """
    with ft.ftrace_lock:
        ops_list = enabled_ops(ft)
        anomalies = []
        for pg in ft.pages.groups:
            found = group_anomalies(ft, pg, ops_list)
            if pg.freed:
                current = task_mod.current()
                found = [Anomaly(AnomalyKind.FREED_PAGE_ACCESS, pg.page_addr,
                                 check_consistency.__name__, pg.module_name, 0, 0, False,
                                 (f"{current.comm}/{current.pid}",))]
            anomalies += found
    anomalies += [Anomaly(AnomalyKind.FREED_PAGE_ACCESS, access.page_addr, access.function,
                          access.module, 0, 0, False, (f"{access.task.comm}/{access.task.pid}",))
                  for access in ft.freed_page_accesses]
    return anomalies
