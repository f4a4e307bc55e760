"""The seq_file listings of ftrace.c: ``show_ftrace_seq_ops`` (``t_start`` / ``t_next`` /
``t_stop`` / ``t_show``, 3.6.5) over an ``ftrace_iterator``.

Listings are driven by records, in page order, never by hash entries: a stale entry
is not printed (spec §3.3.8).  Names print as ``%ps``, which in 3.6 is
``sprint_symbol_no_offset()``: ``name`` or ``name [module]``.  ``set_ftrace_filter``
(FTRACE_ITER_DO_HASH) then lists the function probes (``t_hash_start`` / ``t_hash_next``
/ ``t_hash_show``).

The iterator keeps, between two reads, what 3.6's keeps: the flags (FTRACE_ITER_HASH once
the probes are reached, FTRACE_ITER_PRINTALL once the banner was), ``pos`` and
``func_pos``, the probe last shown; ``t_start`` walks the records again from
``ftrace_pages_start`` to the index ``seq_read()`` asks for, so a module loaded or a filter
changed between two reads moves what the second one shows.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

import numpy as np

from kernel_daemon.ftrace.core import Ftrace, ftrace_disabled_error
from kernel_daemon.ftrace.probe import (FTRACE_FUNC_HASHSIZE, FTRACE_HASH_BITS, FtraceFuncProbe,
                                        hash_long)
from kernel_daemon.ftrace.records import FtracePageGroup, ftrace_rec_count
from kernel_daemon.tracefs.seq_file import SeqOperations, fitting

# enum of include/linux/ftrace.h: what an ftrace_iterator lists and where it is.
FTRACE_ITER_FILTER = 1 << 0
FTRACE_ITER_NOTRACE = 1 << 1
FTRACE_ITER_PRINTALL = 1 << 2
FTRACE_ITER_DO_HASH = 1 << 3
FTRACE_ITER_HASH = 1 << 4
FTRACE_ITER_ENABLED = 1 << 5


class Listing(enum.Enum):
    AVAILABLE = "available_filter_functions"
    ENABLED = "enabled_functions"
    FILTER = "set_ftrace_filter"
    NOTRACE = "set_ftrace_notrace"


ALL_FUNCTIONS_BANNER = b"#### all functions enabled ####\n"


def enabled_line(line: bytes, count: int) -> bytes:
    """``t_show()``'s line for ``enabled_functions``: the record's ``%ps`` and its count."""
    return b"%s (%d)\n" % (line[:-1], count)


def ftrace_avail_open(ft: Ftrace, which: Listing) -> None:
    """The open checks: ``available_filter_functions`` and ``enabled_functions``
    refuse with ENODEV once ftrace is dead; the filter files check in their own open."""
    if ft.ftrace_disabled and which in (Listing.AVAILABLE, Listing.ENABLED):
        raise ftrace_disabled_error()


# The flags each file's open gives its iterator: ftrace_avail_open(), ftrace_enabled_open(),
# ftrace_filter_open() and ftrace_notrace_open().
_OPEN_FLAGS = {Listing.AVAILABLE: 0, Listing.ENABLED: FTRACE_ITER_ENABLED,
               Listing.FILTER: FTRACE_ITER_FILTER | FTRACE_ITER_DO_HASH,
               Listing.NOTRACE: FTRACE_ITER_NOTRACE}


class FtraceListIterator:
    """The reading side of ``struct ftrace_iterator`` (the writing side is
    :class:`kernel_daemon.ftrace.regex_file.FtraceIterator`) and the ``t_*`` functions
    over it.

    ``pg`` is the position of ``iter->pg`` in ``pages``, ``ftrace_pages_start`` as the
    last ``t_start`` found it (a module's page group is one ``ftrace_page`` here); ``idx``
    counts the records of that group that the flags select and ``t_next`` has passed;
    ``func`` is the record last found, as its group and index.  The selected records of a
    group are found by a vectorised search and kept while what they depend on stays
    (:meth:`_selection_of`).
    """

    def __init__(self, ft: Ftrace, which: Listing) -> None:
        self.ft = ft
        self.ops = ft.global_ops
        self.flags = _OPEN_FLAGS[which]
        self.pos = self.func_pos = 0
        self.pages: tuple[FtracePageGroup, ...] = ()
        self.pg = self.idx = 0
        self.func: tuple[FtracePageGroup, int] | None = None
        self.probe: FtraceFuncProbe | None = None
        self.hidx = 0
        self._selected: dict[int, np.ndarray | None] = {}
        self._selected_of: tuple[object, ...] = ()  # _selection_of() when it was found
        self._sel: np.ndarray | None = None  # selected(pg)
        self._nsel = 0  # how many records of pages[pg] are selected
        self._lines: list[bytes] = []  # pages[pg].ps_lines()

    def show_ftrace_seq_ops(self) -> SeqOperations:
        """``show_ftrace_seq_ops`` over this iterator (the seq_file's ``m->private``)."""
        return SeqOperations(self.t_start, self.t_next, self.t_stop, self.t_show, self.t_run)

    def selected(self, g: int) -> np.ndarray | None:
        """The indices, ascending, of the records of ``pages[g]`` that ``t_next``'s test
        lets through: in the filter (FTRACE_ITER_FILTER), in the notrace hash
        (FTRACE_ITER_NOTRACE), with a count (FTRACE_ITER_ENABLED); None for all of them."""
        if g not in self._selected:
            pg = self.pages[g]
            sel: np.ndarray | None
            if self.flags & FTRACE_ITER_FILTER:
                sel = self.ops.filter_hash.positions_in(pg.ips)
            elif self.flags & FTRACE_ITER_NOTRACE:
                sel = self.ops.notrace_hash.positions_in(pg.ips)
            elif self.flags & FTRACE_ITER_ENABLED:
                sel = np.flatnonzero(ftrace_rec_count(pg.flags))
            else:
                sel = None
            self._selected[g] = sel
        return self._selected[g]

    def _selection_of(self) -> tuple[object, ...]:
        """What :meth:`selected` depends on: the page groups and the hashes, each replaced
        whole when it changes (``ftrace_hash_move()``), and for ``enabled_functions`` the
        records' counts, which change in place (``Ftrace.rec_counts_gen`` says when), so
        the selection is found again only then.  The count alone decides, not
        FTRACE_FL_ENABLED: ``t_next()`` tests ``rec->flags & ~FTRACE_FL_MASK``."""
        ft = self.ft
        if self.flags & FTRACE_ITER_ENABLED:
            return (ft.pages.groups, ft.rec_counts_gen)
        return (ft.pages.groups, self.ops.filter_hash, self.ops.notrace_hash)

    def _enter(self, g: int, idx: int) -> None:
        """``iter->pg`` at group ``g``, ``idx`` of its selected records passed."""
        self.pg, self.idx = g, idx
        self._sel = sel = self.selected(g)
        self._nsel = len(self.pages[g].ips) if sel is None else len(sel)
        self._lines = self.pages[g].ps_lines()

    def t_hash_next(self, pos: int) -> tuple[FtraceListIterator | None, int]:
        """``t_hash_next()``: the probe after ``iter->probe`` in its chain, else the first
        of the next bucket that has one, from ``hidx`` on."""
        pos += 1
        self.pos = pos
        buckets = self.ft.probes.ftrace_func_hash
        hnd = self.probe
        while True:
            if self.hidx >= FTRACE_FUNC_HASHSIZE:
                return None, pos
            bucket = buckets[self.hidx]
            if not bucket:
                self.hidx += 1
                hnd = None
                continue
            if hnd is None:
                hnd = bucket[0]
                break
            hnd = hlist_next(self.ft, hnd)
            if hnd is None:
                self.hidx += 1
                continue
            break
        self.probe = hnd
        return self, pos

    def t_hash_start(self, pos: int) -> FtraceListIterator | None:
        """``t_hash_start()``: the probe at ``pos - func_pos``, counted from the first bucket
        (``iter->probe`` is not reset: a stale one is followed if bucket 0 has probes, as in
        3.6); found, the iterator is in FTRACE_ITER_HASH from then on."""
        if not self.flags & FTRACE_ITER_DO_HASH or self.func_pos > pos:
            return None
        self.hidx = 0
        p: FtraceListIterator | None = None
        l = 0
        while l <= pos - self.func_pos:
            p, l = self.t_hash_next(l)
            if p is None:
                return None
        self.flags |= FTRACE_ITER_HASH
        return p

    def t_next(self, v: object, pos: int) -> tuple[FtraceListIterator | None, int]:
        """``t_next()``: in the probes, the next probe; else the next record the flags
        select (the ``retry:`` loop: on to the next group at the end of one; at the end of
        the last, ``pg`` and ``idx`` stay), and past the last record the probes."""
        if self.ft.ftrace_disabled:
            return None, pos
        flags = self.flags
        if flags & FTRACE_ITER_HASH:
            return self.t_hash_next(pos)
        pos += 1
        self.pos = self.func_pos = pos
        if flags & FTRACE_ITER_PRINTALL:
            return self.t_hash_start(pos), pos
        while self.idx >= self._nsel:
            if self.pg + 1 >= len(self.pages):
                return self.t_hash_start(pos), pos
            self._enter(self.pg + 1, 0)
        i = self.idx
        self.idx = i + 1
        sel = self._sel
        self.func = (self.pages[self.pg], i if sel is None else int(sel[i]))
        return self, pos

    def t_run(self, v: object, pos: int, count: int, size: int,
              m_size: int) -> tuple[bytes, object, int]:
        """What ``t_next()`` and ``t_show()`` give, one call each per record, for the
        records of the current page group that fit in the page (``SeqOperations.run``);
        none in the probes or at the banner, which are left to those calls."""
        flags = self.flags
        if (v is None or flags & (FTRACE_ITER_HASH | FTRACE_ITER_PRINTALL)
                or self.ft.ftrace_disabled):
            return b"", v, pos
        first, sel = self.idx, self._sel
        # No line is shorter than the group's shortest: no more can fit.
        pg = self.pages[self.pg]
        end = min(self._nsel, first + (m_size - count) // pg.shortest_ps_line + 1)
        recs: Sequence[int] = range(first, end) if sel is None else sel[first:end].tolist()
        lines: Iterable[bytes] = map(self._lines.__getitem__, recs)
        if flags & FTRACE_ITER_ENABLED:
            counts = ftrace_rec_count(pg.flags[recs]).tolist()
            lines = map(enabled_line, lines, counts)
        taken = fitting(lines, count, size, m_size)
        if taken:
            self.idx = first + len(taken)
            self.func = (pg, recs[len(taken) - 1])
            pos += len(taken)
            self.pos = self.func_pos = pos
        return b"".join(taken), v, pos

    def _skip(self, n: int) -> int:
        """What the first ``n`` calls of ``t_start``'s walk do when each finds a record:
        ``pg``/``idx`` moved past the first ``n`` selected records (fewer if there are
        not as many), by counting each group's; returns how many were passed."""
        left = n
        for g in range(len(self.pages)):
            self._enter(g, left)
            if left < self._nsel:
                return n
            left -= self._nsel
        if self.pages:
            self.idx = self._nsel
        return n - left

    def reset_iter_read(self) -> None:
        """``reset_iter_read()``: 3.6 clears ``~(FTRACE_ITER_PRINTALL & FTRACE_ITER_HASH)``,
        which is no flag at all, so only the positions go back to 0."""
        self.pos = self.func_pos = 0

    def t_start(self, pos: int) -> FtraceListIterator | None:
        """``t_start()``: ftrace_lock taken (``t_stop()`` drops it).  An empty filter is the
        banner at index 0 (FTRACE_ITER_PRINTALL) and the probes after it; in the probes,
        ``t_hash_start()``; otherwise the walk from ``ftrace_pages_start``, ``t_next()``
        until the index passes ``pos``, and the probes if the records ran out first."""
        ft = self.ft
        ft.ftrace_lock.acquire()
        selection_of = self._selection_of()
        # Compared by identity but the counter (the hashes and groups define no __eq__).
        if selection_of != self._selected_of:
            self._selected.clear()
            self._selected_of = selection_of
        if ft.ftrace_disabled:
            return None
        if pos < self.pos:
            self.reset_iter_read()
        if self.flags & FTRACE_ITER_FILTER and self.ops.filter_hash.empty():
            if pos > 0:
                return self.t_hash_start(pos)
            self.flags |= FTRACE_ITER_PRINTALL
            self.flags &= ~FTRACE_ITER_HASH
            return self
        if self.flags & FTRACE_ITER_HASH:
            return self.t_hash_start(pos)
        self.pages = ft.pages.groups
        self._enter(0, 0)
        # The walk's calls that only step over records are done at once (not with
        # FTRACE_ITER_PRINTALL left set, where its first t_next() goes to the probes).
        l = 0 if self.flags & FTRACE_ITER_PRINTALL else self._skip(pos)
        if l:
            self.pos = self.func_pos = l
        p: FtraceListIterator | None = None
        while l <= pos:
            p, l = self.t_next(p, l)
            if p is None:
                return self.t_hash_start(pos)
        return p

    def t_stop(self, v: object) -> None:
        """``t_stop()``."""
        self.ft.ftrace_lock.release()

    def t_show(self, v: object) -> bytes:
        """``t_show()``: a probe (``t_hash_show()``), the banner, or the record's ``%ps``,
        with its count for ``enabled_functions``."""
        flags = self.flags
        if flags & FTRACE_ITER_HASH:
            probe = self.probe
            assert probe is not None
            return probe.ops.print(probe.ip, probe.ops, probe.data).encode()
        if flags & FTRACE_ITER_PRINTALL:
            return ALL_FUNCTIONS_BANNER
        if self.func is None:
            return b""
        pg, i = self.func
        line = pg.ps_lines()[i]
        if flags & FTRACE_ITER_ENABLED:
            return enabled_line(line, ftrace_rec_count(pg.flags[i]))
        return line


def hlist_next(ft: Ftrace, probe: FtraceFuncProbe) -> FtraceFuncProbe | None:
    """``hnd->next`` of a probe: the one after it in its own chain.  One unregistered
    since the model finds nowhere: None (3.6 follows the freed entry's poisoned pointer)."""
    chain = ft.probes.ftrace_func_hash[hash_long(probe.ip, FTRACE_HASH_BITS)]
    for i, entry in enumerate(chain):
        if entry is probe:
            return chain[i + 1] if i + 1 < len(chain) else None
    return None

