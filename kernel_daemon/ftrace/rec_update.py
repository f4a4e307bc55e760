"""Reference counting of records by ops: ``__ftrace_hash_rec_update`` and ``ftrace_hash_move``.

3.6.5 semantics (spec §2.2, §2.3), vectorised per page group: each group is sorted
by address, so a non-"all" pass looks the hash's entries up among the records
(binary search per entry) instead of testing every record against the hash.  The
kernel's order of updates is kept: records change in page order, and the pass stops
at the first record whose count would leave its range, after updating the ones
before it, exactly where the C loop returns.
"""

from __future__ import annotations

import threading

import numpy as np

from kernel_daemon.ftrace.core import FTRACE_WARN_ON, Ftrace
from kernel_daemon.ftrace.hash import FtraceHash
from kernel_daemon.ftrace.ops import FTRACE_OPS_FL_ENABLED, FtraceOps
from kernel_daemon.ftrace.records import FTRACE_FL_MASK, FTRACE_REF_MAX, FtracePageGroup
from kernel_daemon.kasan import kasan_report_freed_page
from kernel_daemon.unwind import kernel_function

# The lines of __ftrace_hash_rec_update()'s two FTRACE_WARN_ON checks (count at
# FTRACE_REF_MAX after the increment; count 0 before the decrement), in
# kernel/trace/ftrace.c (which tree: core.py's docstring).  1529 is also the line the
# report's 3.6.11+ kernel prints (spec §5.1).
FTRACE_REC_OVERFLOW_LINE = 1526
FTRACE_REC_UNDERFLOW_LINE = 1529

_ONE = np.uint64(1)
_COUNT_MASK = np.uint64(~FTRACE_FL_MASK & 0xFFFFFFFFFFFFFFFF)
_NO_INDEX = np.empty(0, dtype=np.intp)
# Above this many matched records, membership in the other hash is tested through a
# mark per record rather than a search per match.
_MARK_MIN_MATCHES = 256

# Scratch buffers for the all-records passes, one per thread and record count: a
# temporary the size of a page group costs an mmap and its page faults each time.
_scratch = threading.local()


def _scratch_counts(n: int) -> np.ndarray:
    buffers = getattr(_scratch, "buffers", None)
    if buffers is None:
        buffers = _scratch.buffers = {}
    buf = buffers.get(n)
    if buf is None:
        if len(buffers) > 8:
            buffers.clear()
        buf = buffers[n] = np.empty(n, dtype=np.uint64)
    return buf


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
    if other.empty() or not len(idx):
        # filter case: "ip not in other" holds; notrace case: "other has count 0" holds.
        return idx
    if len(idx) > _MARK_MIN_MATCHES:
        # Many matches: mark the other hash's records once instead of a binary search
        # into it per match.
        mark = np.zeros(len(pg.ips), dtype=bool)
        mark[other.positions_in(pg.ips)] = True
        in_other = mark[idx]
    else:
        in_other = other.contains(pg.ips[idx])
    return idx[~in_other] if filter_hash else idx[in_other]


def update_counts(ft: Ftrace, idx: np.ndarray, flags: np.ndarray, inc: bool) -> bool:
    """Increment or decrement the counts at ``idx`` in order; False after a WARN."""
    if not len(idx):
        return True
    ft.rec_counts_gen += 1
    if len(idx) == 1:
        # One record: scalar arithmetic, as the C loop does it.
        i = int(idx[0])
        value = int(flags[i])
        count = value & int(_COUNT_MASK)
        if inc:
            flags[i] = value + 1
            if count + 1 == FTRACE_REF_MAX:
                FTRACE_WARN_ON(ft, True, FTRACE_REC_OVERFLOW_LINE)
                return False
            return True
        if count == 0:
            FTRACE_WARN_ON(ft, True, FTRACE_REC_UNDERFLOW_LINE)
            return False
        flags[i] = value - 1
        return True
    values = flags[idx]
    counts = values & _COUNT_MASK
    if inc:
        over = np.flatnonzero(counts == FTRACE_REF_MAX - 1)
        if over.size:
            # The kernel increments, then WARNs on reaching FTRACE_REF_MAX.
            end = over[0] + 1
            flags[idx[:end]] = values[:end] + _ONE
            FTRACE_WARN_ON(ft, True, FTRACE_REC_OVERFLOW_LINE)
            return False
        values += _ONE
    else:
        under = np.flatnonzero(counts == 0)
        if under.size:
            # The decrement at count 0 is not done; later records are left untouched.
            end = under[0]
            flags[idx[:end]] = values[:end] - _ONE
            FTRACE_WARN_ON(ft, True, FTRACE_REC_UNDERFLOW_LINE)
            return False
        values -= _ONE
    flags[idx] = values
    return True


def update_all_counts(ft: Ftrace, flags: np.ndarray, excluded: np.ndarray, inc: bool) -> bool:
    """``update_counts`` over every record of a group but those at ``excluded`` (the
    notrace hash's, ascending): the "all" pass, without an index of every record.

    As in the C loop, a WARN stops the pass at its record: the ones before it are
    updated (and, for an overflow, that one too), the ones after it are not.
    """
    ft.rec_counts_gen += 1
    counts = np.bitwise_and(flags, _COUNT_MASK, out=_scratch_counts(len(flags)))
    if excluded.size:
        # Excluded records never trip the check, whatever their count.
        counts[excluded] = 1
    if inc:
        stop = int(counts.max()) >= FTRACE_REF_MAX - 1
    else:
        stop = int(counts.min()) == 0
    if stop:
        bad = counts == (FTRACE_REF_MAX - 1 if inc else 0)
        first = int(bad.argmax())
        end = first + 1 if inc else first
        where = np.ones(end, dtype=bool)
        where[excluded[excluded < end]] = False
        part = flags[:end]
        if inc:
            np.add(part, _ONE, out=part, where=where)
        else:
            np.subtract(part, _ONE, out=part, where=where)
        FTRACE_WARN_ON(ft, True, FTRACE_REC_OVERFLOW_LINE if inc else FTRACE_REC_UNDERFLOW_LINE)
        return False
    if excluded.size:
        where = np.ones(len(flags), dtype=bool)
        where[excluded] = False
        if inc:
            np.add(flags, _ONE, out=flags, where=where)
        else:
            np.subtract(flags, _ONE, out=flags, where=where)
    elif inc:
        np.add(flags, _ONE, out=flags)
    else:
        np.subtract(flags, _ONE, out=flags)
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
            if all:
                excluded = other.positions_in(pg.ips) if other.count else _NO_INDEX
                if not update_all_counts(ft, pg.flags, excluded, inc):
                    return
                continue
            idx = matching_records(pg, hash, other, all, filter_hash)[: hash.count - count]
            if not update_counts(ft, idx, pg.flags, inc):
                return
            count += len(idx)
            if count == hash.count:
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
