"""Reference counting of records by ops: ``__ftrace_hash_rec_update`` and ``ftrace_hash_move``.

3.6.5 semantics (spec §2.2, §2.3), vectorised per page group: each group is sorted
by address, so a non-"all" pass looks the hash's entries up among the records
(binary search per entry) instead of testing every record against the hash.  The
kernel's order of updates is kept: records change in page order, and the pass stops
at the first record whose count would leave its range, after updating the ones
before it, exactly where the C loop returns.
"""

from __future__ import annotations

import numpy as np

from kernel_daemon.ftrace.core import FTRACE_WARN_ON, Ftrace
from kernel_daemon.ftrace.hash import FtraceHash
from kernel_daemon.ftrace.ops import FTRACE_OPS_FL_ENABLED, FtraceOps
from kernel_daemon.ftrace.records import FTRACE_REF_MAX, FtracePageGroup, ftrace_rec_count
from kernel_daemon.kasan import kasan_report_freed_page
from kernel_daemon.unwind import kernel_function

# Source lines of the two checks in 3.6.5 kernel/trace/ftrace.c.  1529 is the
# underflow the report quotes; the overflow check sits three lines above it, as in
# 3.2.7 (1383/1386): unverified against 3.6.5 itself.
FTRACE_REC_OVERFLOW_LINE = 1526
FTRACE_REC_UNDERFLOW_LINE = 1529

_ONE = np.uint64(1)


def matching_records(pg: FtracePageGroup, hash: FtraceHash, other: FtraceHash,
                     all: bool, filter_hash: bool) -> np.ndarray:
    """Indices, ascending, of the records of ``pg`` that one pass of
    ``__ftrace_hash_rec_update`` selects (spec §2.2 step 3)."""
    if all:
        mask = np.ones(len(pg.ips), dtype=bool)
        if not other.empty():
            mask[other.positions_in(pg.ips)] = False
        return np.flatnonzero(mask)
    idx = hash.positions_in(pg.ips)
    if other.empty():
        # filter case: "ip not in other" holds; notrace case: "other has count 0" holds.
        return idx
    in_other = other.contains(pg.ips[idx])
    return idx[~in_other] if filter_hash else idx[in_other]


def update_counts(ft: Ftrace, idx: np.ndarray, flags: np.ndarray, inc: bool) -> bool:
    """Increment or decrement the counts at ``idx`` in order; False after a WARN."""
    counts = ftrace_rec_count(flags[idx])
    if inc:
        over = np.flatnonzero(counts + _ONE == FTRACE_REF_MAX)
        if over.size:
            # The kernel increments, then WARNs on reaching FTRACE_REF_MAX.
            flags[idx[: over[0] + 1]] += _ONE
            FTRACE_WARN_ON(ft, True, FTRACE_REC_OVERFLOW_LINE)
            return False
        flags[idx] += _ONE
        return True
    under = np.flatnonzero(counts == 0)
    if under.size:
        # The decrement at count 0 is not done; later records are left untouched.
        flags[idx[: under[0]]] -= _ONE
        FTRACE_WARN_ON(ft, True, FTRACE_REC_UNDERFLOW_LINE)
        return False
    flags[idx] -= _ONE
    return True


@kernel_function
def __ftrace_hash_rec_update(ft: Ftrace, ops: FtraceOps, filter_hash: bool, inc: bool) -> None:
    """``__ftrace_hash_rec_update(ops, filter_hash, inc)``, 3.6.5."""
    if not ops.flags & FTRACE_OPS_FL_ENABLED:
        return
    if filter_hash:
        hash, other = ops.filter_hash, ops.notrace_hash
        all = hash.empty()
    else:
        # Adding a function to notrace removes a tracer from the record.
        inc = not inc
        hash, other = ops.notrace_hash, ops.filter_hash
        if hash.empty():
            return
        all = False
    count = 0
    ft.pages.write_begin()
    try:
        # The walk follows the page list as it was when the pass began (pg->next).
        for pg in ft.pages.groups:
            ft.failpoints.fire("__ftrace_hash_rec_update:next_page")
            if pg.freed:
                kasan_report_freed_page(ft, pg)
                continue
            idx = matching_records(pg, hash, other, all, filter_hash)
            if not all:
                idx = idx[: hash.count - count]
            if not update_counts(ft, idx, pg.flags, inc):
                return
            count += len(idx)
            if not all and count == hash.count:
                return
    finally:
        ft.pages.write_end()


# ftrace_hash_rec_{disable,enable} are static one-liners the compiler inlines: the
# report's call trace goes from ftrace_hash_move straight to __ftrace_hash_rec_update,
# so they push no frame.
def ftrace_hash_rec_disable(ft: Ftrace, ops: FtraceOps, filter_hash: bool) -> None:
    __ftrace_hash_rec_update(ft, ops, filter_hash, False)


def ftrace_hash_rec_enable(ft: Ftrace, ops: FtraceOps, filter_hash: bool) -> None:
    __ftrace_hash_rec_update(ft, ops, filter_hash, True)


@kernel_function
def ftrace_hash_move(ft: Ftrace, ops: FtraceOps, enable: bool, src: FtraceHash) -> None:
    """``ftrace_hash_move(ops, enable, dst, src)``, 3.6.5 (spec §2.3); ftrace_lock held.

    ``enable`` selects the filter hash (1) or the notrace hash (0) as ``dst``.  After
    a WARN in the disable pass the new hash is still installed and counted.
    """
    ftrace_hash_rec_disable(ft, ops, enable)
    ft.failpoints.fire("ftrace_hash_move:after_disable")
    # An empty source installs EMPTY_HASH; otherwise the entries move to a new hash.
    new = FtraceHash() if src.empty() else src.copy()
    if enable:
        ops.filter_hash = new
    else:
        ops.notrace_hash = new
    ftrace_hash_rec_enable(ft, ops, enable)
