"""Records of modules: created at load (``ftrace_process_locs`` → ``ftrace_update_code``),
freed at unload (``ftrace_release_mod``).  3.6.5, spec §2.7–§2.9.

``ftrace_update_code`` is where the variants differ: before 8c4f3c3fa968 a new
record starts with the number of enabled ops whose filter is empty, and notrace is
ignored; with it, every enabled ops whose hashes reference the record counts too
(``referenced_filters``) and the record is patched at once.

The race windows (DESIGN "Variants and race windows") each move one lock boundary:

* ``load-count``: the ops are sampled before ``ftrace_lock`` is taken;
* ``publish-early``: the pages are linked, the lock dropped, and the counts written
  and the sites converted in a second critical section;
* ``unload-unlocked``: the pages are unlinked and freed without the lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kernel_daemon import task as task_mod
from kernel_daemon.ftrace.core import Ftrace, Race, Variant
from kernel_daemon.ftrace.hash import FtraceHash
from kernel_daemon.ftrace.ops import FTRACE_OPS_FL_ENABLED, FtraceOps
from kernel_daemon.ftrace.records import ENTRIES_PER_PAGE, FTRACE_FL_ENABLED, FtracePageGroup
from kernel_daemon.ftrace.update import (FTRACE_NOP, MCOUNT_ADDR, ftrace_bug,
                                         ftrace_call_replace)
from kernel_daemon.unwind import kernel_function

MODULE_STATE_LIVE = 0
MODULE_STATE_COMING = 1
MODULE_STATE_GOING = 2

#: Where a module load's counts are taken from the enabled ops (race load-count: where
#: the load holds its sample).
BEFORE_COUNT = "ftrace_update_code:before_count"

_ENABLED = np.uint64(FTRACE_FL_ENABLED)


@dataclass(frozen=True)
class OpsHashes:
    """The hashes of one enabled ops, as ``ftrace_update_code`` reads them, with the ops
    and the flags they were read from (what Kernel.ListOps shows of a sample)."""

    ops: FtraceOps
    flags: int
    filter_hash: FtraceHash
    notrace_hash: FtraceHash

    @classmethod
    def of(cls, ops: FtraceOps) -> OpsHashes:
        """The ops' flags and hashes now (``ftrace_hash_move`` replaces a hash, never
        edits it: what is read stays as it was)."""
        return cls(ops, ops.flags, ops.filter_hash, ops.notrace_hash)


def enabled_ops_hashes(ft: Ftrace) -> list[OpsHashes]:
    return [OpsHashes.of(ops) for ops in ft.ftrace_ops_list if ops.flags & FTRACE_OPS_FL_ENABLED]


@dataclass(frozen=True, eq=False)
class OpsSample:
    """A module load's sample of the enabled ops under race load-count: read by
    ``ftrace_process_locs()`` without ``ftrace_lock``, it is what the new records will
    be counted from, whatever the ops are when the lock is taken.

    The model's: 3.6's ``ftrace_update_code()`` reads ``ftrace_ops_list`` with the lock
    held, so no load keeps a sample there. A load's stays in ``Ftrace.ops_samples``
    from the sample until its counts are stored, for Kernel.ListOps to show it beside
    the ops as they are now.
    """

    module_name: str
    task: task_mod.Task
    ops: tuple[OpsHashes, ...]


def take_ops_sample(ft: Ftrace, module_name: str) -> OpsSample:
    """The window's lockless read of the enabled ops, listed as the current task's."""
    sample = OpsSample(module_name, task_mod.current(), tuple(enabled_ops_hashes(ft)))
    with ft.ops_samples_lock:
        ft.ops_samples += (sample,)
    return sample


def drop_ops_sample(ft: Ftrace, sample: OpsSample) -> None:
    with ft.ops_samples_lock:
        ft.ops_samples = tuple(held for held in ft.ops_samples if held is not sample)


def ops_traces_mod(ft: Ftrace, ops: OpsHashes) -> bool:
    """``ops_traces_mod()``: before 8c4f3c3 only the filter is consulted."""
    if ft.variant is Variant.BUGGY:
        return ops.filter_hash.empty()
    return ops.filter_hash.empty() and ops.notrace_hash.empty()


def ops_references_recs(ops: OpsHashes | FtraceOps, ips: np.ndarray) -> np.ndarray:
    """``ops_references_rec()`` over all records, a boolean mask: the ops' filter is empty
    or names the record, and its notrace does not. 3.6's counts follow the same rule:
    ``__ftrace_hash_rec_update`` adds one to each record an enabled ops' filter hash
    selects (all of them when it is empty) but its notrace hash does not name.

    ``ips`` are a page group's, sorted by address: each hash's entries are looked up
    among them, so a filter of a few functions costs a few binary searches, not a test
    of every record.
    """
    notrace = ops.notrace_hash
    if ops.filter_hash.empty():
        refs = np.ones(len(ips), dtype=bool)
        if not notrace.empty():
            refs[notrace.positions_in(ips)] = False
        return refs
    refs = np.zeros(len(ips), dtype=bool)
    idx = ops.filter_hash.positions_in(ips)
    if len(idx) and not notrace.empty():
        idx = idx[~notrace.contains(ips[idx])]
    refs[idx] = True
    return refs


def referenced_filters(ops_list: Sequence[OpsHashes | FtraceOps], ips: np.ndarray) -> np.ndarray:
    """``referenced_filters()`` over all new records: for each record, the number of
    ops (enabled, not tracing everything) that reference it (``ops_references_rec``)."""
    cnt = np.zeros(len(ips), dtype=np.uint64)
    for ops in ops_list:
        cnt += ops_references_recs(ops, ips)
    return cnt


def new_record_counts(ft: Ftrace, ops_list: Sequence[OpsHashes], ips: np.ndarray) -> np.ndarray:
    """The counts ``ftrace_update_code(mod)`` gives new module records, per variant."""
    ref = sum(1 for ops in ops_list if ops_traces_mod(ft, ops))
    cnt = np.full(len(ips), ref, dtype=np.uint64)
    if ft.variant is Variant.FIXED:
        testing = [ops for ops in ops_list if not ops_traces_mod(ft, ops)]
        if testing:
            cnt += referenced_filters(testing, ips)
    return cnt


def ftrace_page_sizes(count: int) -> list[int]:
    """The records of each ``struct ftrace_page`` that ``ftrace_allocate_pages(count)``
    chains: ``ftrace_allocate_records()`` takes the order that fits the rest, less one
    while a whole page of it would stay empty."""
    sizes = []
    while count:
        order = (-(-count // ENTRIES_PER_PAGE) - 1).bit_length()  # get_count_order()
        while ENTRIES_PER_PAGE << order >= count + ENTRIES_PER_PAGE:
            order -= 1
        sizes.append(min(ENTRIES_PER_PAGE << order, count))
        count -= sizes[-1]
    return sizes


def code_modify_failure(ft: Ftrace, calls: np.ndarray) -> tuple[int, str, int] | None:
    """The conversion loop's failpoints: (record, site, errno) of the first
    ``ftrace_make_nop`` or ``ftrace_make_call`` that fails, in the loop's order (each
    record's nop, then its call where ``calls``); None when none does.

    With neither site armed, a load costs one count at each, not a call per record.
    """
    fp = ft.failpoints
    if not (fp.armed("ftrace_make_nop") or fp.armed("ftrace_make_call")):
        fp.passed("ftrace_make_nop", len(calls))
        fp.passed("ftrace_make_call", int(np.count_nonzero(calls)))
        return None
    for i, call in enumerate(calls.tolist()):
        error = fp.fire("ftrace_make_nop")
        if error:
            return i, "ftrace_make_nop", error
        if call and (error := fp.fire("ftrace_make_call")):
            return i, "ftrace_make_call", error
    return None


@kernel_function
def ftrace_update_code(ft: Ftrace, mod: object | None, new_pgs: FtracePageGroup,
                       ops_list: Sequence[OpsHashes] | None) -> None:
    """``ftrace_update_code(mod)``: count and convert the new records; ftrace_lock held.

    ``ops_list`` is the sample of enabled ops to count from; None means read them
    now, under the lock, as the kernel does.  The core kernel's records (mod None)
    start at 0.  ``new_pgs`` stands for 3.6's global ``ftrace_new_pgs``, the pages
    the kernel's loop walks: a parameter here, as the publish-early window lets a
    second load link its own pages before the first converts its.  What the global's
    ``NULL`` told, that the sites no longer hold ``call mcount``, is the group's
    ``unconverted`` flag, cleared where the counts are stored and the sites converted;
    a return on a dead ftrace leaves it set, as the kernel's ``return -1`` leaves
    ``ftrace_new_pgs``.

    A module's records are each converted to a nop (``ftrace_code_disable()`` →
    ``ftrace_make_nop()``) and, if tracing and counted, patched to call
    (``__ftrace_replace_code()`` → ``ftrace_make_call()``).  When one of those fails
    (a failpoint's error; the boot's records are not sites, as a failpoint given at
    start-up would otherwise kill ftrace before anything could use it), the record has
    its count, and its ENABLED bit only if the call was what failed; ``ftrace_bug()``
    kills ftrace; the records after it keep the zeroed page's 0, as the loop breaks
    out of that ``ftrace_page`` and returns -1 at the next record it sees disabled.
    ``ftrace_update_tot_cnt`` then grows only if the loop ended on its own: by the
    records converted, when the failure was in the last ``ftrace_page``.  The module
    still loads: the notifier's result is not looked at.
    """
    if ft.ftrace_disabled:
        return
    ips = new_pgs.ips
    if mod is None:
        cnt = np.zeros(len(ips), dtype=np.uint64)
    else:
        if ops_list is None:
            ft.failpoints.fire(BEFORE_COUNT)
            ops_list = enabled_ops_hashes(ft)
        cnt = new_record_counts(ft, ops_list, ips)
    if mod is not None:
        if Race.PUBLISH_EARLY in ft.races:
            # The window: the pages are already on the list with count 0, their sites
            # still ``call mcount`` (``unconverted``), while the lock is dropped.  A hash
            # update now counts them; if it patches code too, its add_breakpoints pass
            # finds that call where it expects a nop and kills ftrace (update.py), so
            # the load stores nothing below; if not (ftrace_enabled 0), the load
            # overwrites its counts.
            ft.ftrace_lock.release()
            try:
                ft.failpoints.fire("ftrace_update_code:before_publish")
            finally:
                ft.ftrace_lock.acquire()
            if ft.ftrace_disabled:
                # The loop's test at each record (``if (unlikely(ftrace_disabled))
                # return -1;``): a hash update in the window that WARNed stores nothing
                # more here.
                return
        else:
            ft.failpoints.fire("ftrace_update_code:before_publish")
    calls = cnt > 0 if ft.ftrace_start_up else np.zeros(len(cnt), dtype=bool)
    failed = None if mod is None else code_modify_failure(ft, calls)
    ft.pages.write_begin()
    try:
        # p->flags = cnt; then ftrace_code_disable() and, if tracing, patch to call.
        np.bitwise_or(cnt, _ENABLED, out=cnt, where=calls)
        if failed is not None:
            i, site, _ = failed
            cnt[i + 1:] = 0
            if site == "ftrace_make_nop":
                cnt[i] &= ~_ENABLED
        new_pgs.flags[:] = cnt
        new_pgs.unconverted = False
        ft.rec_counts_gen += 1
    finally:
        ft.pages.write_end()
    if failed is None:
        ft.ftrace_update_tot_cnt += len(ips)
        return
    i, site, error = failed
    ip = int(ips[i])
    if site == "ftrace_make_nop":
        ftrace_bug(ft, -error, ip, ftrace_call_replace(ip, MCOUNT_ADDR(ft)))
        if i >= len(ips) - ftrace_page_sizes(len(ips))[-1]:
            ft.ftrace_update_tot_cnt += i
    else:
        ftrace_bug(ft, -error, ip, FTRACE_NOP)
        if i == len(ips) - 1:
            ft.ftrace_update_tot_cnt += len(ips)


@kernel_function
def ftrace_process_locs(ft: Ftrace, mod: object | None, module_name: str,
                        ips: np.ndarray, names: np.ndarray) -> None:
    """``ftrace_process_locs()``: sort the call sites into new pages, link them at the
    end of the list and initialise them, under ``ftrace_lock``.  The kernel notes them
    in ``ftrace_new_pgs`` for ftrace_update_code(); here they are passed to it."""
    if not len(ips):
        return
    new_pgs = ft.pages.allocate(mod, module_name, ips, names)
    sample = None
    if Race.LOAD_COUNT in ft.races and mod is not None:
        # The window: counts will come from this sample, taken without the lock.
        sample = take_ops_sample(ft, module_name)
        ft.failpoints.fire(BEFORE_COUNT)
    with ft.ftrace_lock:
        try:
            ft.pages.link(new_pgs)
            ftrace_update_code(ft, mod, new_pgs, sample.ops if sample else None)
        finally:
            # Under the lock, as ListOps reads the samples: one is listed until the
            # counts it gave are stored.
            if sample is not None:
                drop_ops_sample(ft, sample)


@kernel_function
def ftrace_init_module(ft: Ftrace, mod: object, module_name: str,
                       ips: np.ndarray, names: np.ndarray) -> None:
    """``ftrace_init_module()``: the COMING notifier's work; ``ftrace_disabled`` is
    tested without ``ftrace_lock``, as in 3.6.  The module's call sites come as ``ips``
    (``mod->ftrace_callsites``) with their ``names``, for the model's listings."""
    if ft.ftrace_disabled or not len(ips):
        return
    ftrace_process_locs(ft, mod, module_name, ips, names)


@kernel_function
def ftrace_release_mod(ft: Ftrace, mod: object) -> None:
    """``ftrace_release_mod()``, 3.6: unlink and free the module's page groups.

    The hashes are not touched: their entries for this module's functions stay.
    """
    if Race.UNLOAD_UNLOCKED in ft.races:
        if ft.ftrace_disabled:
            return
        ft.failpoints.fire("ftrace_release_mod:before_free")
        free_module_pages(ft, mod)
        return
    with ft.ftrace_lock:
        if ft.ftrace_disabled:
            return
        ft.failpoints.fire("ftrace_release_mod:before_free")
        free_module_pages(ft, mod)


def free_module_pages(ft: Ftrace, mod: object) -> None:
    """The loop of ``ftrace_release_mod()``: unlink every page group of ``mod`` and
    free it.  3.6 finds a module's pages by ``within_module_core(rec->ip, mod)`` on
    each page's first record; the model's groups know their module.  Also not 3.6's:
    the records' seqlock, for the lock-free readers (records.py)."""
    ft.pages.write_begin()
    try:
        for pg in ft.pages.groups:
            if pg.mod is mod:
                ft.pages.unlink(pg)
                ft.pages.free(pg)
    finally:
        ft.pages.write_end()


@kernel_function
def ftrace_module_notify(ft: Ftrace, state: int, mod: object, module_name: str,
                         ips: np.ndarray, names: np.ndarray) -> None:
    """``ftrace_module_notify()``: the module notifier, priority 0 (3.6)."""
    if state == MODULE_STATE_COMING:
        ftrace_init_module(ft, mod, module_name, ips, names)
    elif state == MODULE_STATE_GOING:
        ftrace_release_mod(ft, mod)
