"""Function records (``struct dyn_ftrace``) and their pages, in POSIX shared memory.

Mirrors the 3.6 layout of ``kernel/trace/ftrace.c`` (the per-module page groups came
in 3.3; see spec §1.2): the core kernel's records form the first group, every module
gets a group of its own, appended at load and unlinked and freed at unload.  Each
group is one shared-memory segment holding ``ENTRIES_PER_PAGE`` records per 4 KiB
page, sorted by address as ``ftrace_process_locs()`` sorts ``__mcount_loc``.

A page directory segment lists the live groups under a generation counter, so another
process can copy a consistent snapshot without ``ftrace_lock`` (``snapshot.py``).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import struct
import threading
from dataclasses import dataclass, field

import numpy as np

from kernel_daemon.shm import ShmSegment
from kernel_daemon.teardown import SHUT_DOWN, kernel_gone

# include/linux/ftrace.h, 3.6: the count lives in the low bits of dyn_ftrace.flags.
FTRACE_FL_ENABLED = 1 << 30
FTRACE_FL_MASK = 0x3 << 30
FTRACE_REF_MAX = (1 << 30) - 1

DYN_FTRACE = np.dtype([("ip", "<u8"), ("flags", "<u8")])  # sizeof == 16 on x86_64
PAGE_SIZE = 4096
ENTRIES_PER_PAGE = PAGE_SIZE // DYN_FTRACE.itemsize  # 256, as in 3.6 on x86_64

# mm/slab.h POISON_FREE: what a freed record page reads back as.
POISON_FREE_QWORD = 0x6B6B6B6B6B6B6B6B


def search_ip(ips: np.ndarray, ip: int) -> int:
    """``np.searchsorted(ips, ip)`` for one address, by ``bisect`` on a buffer view.

    The same lower-bound search as NumPy's (so the same answer even on a poisoned,
    unsorted page), at the same cost, but holding the GIL: ``searchsorted`` releases it
    on every call, and under a busy server each release hands the GIL to another thread
    and waits to get it back. A call (an Invoke, a filter's one entry) needs one search.
    """
    with memoryview(ips) as view:
        return bisect.bisect_left(view, ip)


# Pseudo direct-map addresses for the pages, so a KASAN report can name one.
PAGE_OFFSET = 0xFFFF880000000000

DIR_MAGIC = 0x3244505F4D495354  # "TSIM_PD2"
# magic, generation, writers, nr_groups, max_groups, ftrace_disabled
DIR_HEADER = struct.Struct("<QQQIII")
DIR_ENTRY = struct.Struct("<QQII48s")  # group id, page address, nr records, nr pages, module
DIR_MAX_GROUPS = 4096
DIR_SIZE = DIR_HEADER.size + DIR_MAX_GROUPS * DIR_ENTRY.size


# Sorts after every character a symbol name can hold: "foo" + _LAST_CHAR bounds "foo*".
_LAST_CHAR = "\U0010ffff"


def ftrace_rec_count(flags: np.ndarray) -> np.ndarray:
    """The reference count part of ``dyn_ftrace.flags`` (``flags & ~FTRACE_FL_MASK``)."""
    return flags & np.uint64(~FTRACE_FL_MASK & 0xFFFFFFFFFFFFFFFF)


def patch_mismatches(counts: np.ndarray, patched: np.ndarray, module: bool,
                     ftrace_start_up: int, ftrace_enabled: bool) -> np.ndarray:
    """Which of a page group's records (``module``: a module's) are patched
    (``FTRACE_FL_ENABLED``) where 3.6 cannot leave them so, or not patched where it
    must have: the one rule of the model's check and of ftrace-stress's snapshots.

    While ``ftrace_enabled`` is set and tracing is started, a record is patched exactly
    when its count is not zero: every change of a count then runs the update
    (``ftrace_startup()``, ``ftrace_shutdown()``, a filter installed), a load patches
    its records by count, and the sysctl's turning on ran one. Otherwise the core
    kernel's records are not patched (the last update, the sysctl's turning off or the
    last shutdown, un-patched them all), but a module's may be, whatever its count: its
    load patches by count whenever tracing is started (3.6's ``if (ftrace_start_up &&
    ref)``, 8c4f3c3's ``cnt`` in the same test; no look at ``ftrace_enabled``), and with ``ftrace_enabled`` 0 no update follows the
    count down after it (``ftrace_startup_enable()`` returns first), nor does the
    sysctl's turning on while nothing is started; the next update with both set does.
    """
    if ftrace_enabled and ftrace_start_up:
        return patched != (counts > 0)
    return patched if not module else np.zeros(len(patched), dtype=bool)


@dataclass(eq=False)
class FtracePageGroup:
    """The ``ftrace_page`` list one ``ftrace_process_locs()`` call allocates.

    The kernel chains ``ftrace_page`` structs of ``ENTRIES_PER_PAGE`` records; here
    one group's pages are contiguous in one segment so a pass over a group is one
    vectorised operation.  ``mod`` is None for the core kernel.
    """

    group_id: int
    mod: object | None
    module_name: str
    segment: ShmSegment
    recs: np.ndarray  # structured DYN_FTRACE view into the segment
    names: np.ndarray  # function name per record (the model's kallsyms cache)
    page_addr: int
    freed: bool = False
    # The group's call sites still hold ``call mcount`` as compiled: the state x86's
    # add_break() reads (it compares a site's bytes).  True from allocation until
    # ftrace_update_code() converts the sites; 3.6 holds ftrace_lock from the link to
    # that, so only the publish-early window lets a code update meet such a group, and
    # lets several be unconverted at once (a load in another's window).
    unconverted: bool = True
    ips: np.ndarray = field(init=False)
    flags: np.ndarray = field(init=False)
    # The records' indices in name order, and the names in that order (built at first
    # use); a list, searched by bisect: NumPy's searchsorted releases the GIL per call.
    _name_index: tuple[np.ndarray, list[str]] | None = field(default=None, init=False,
                                                             repr=False)
    # Each record's line in the listings, ``%ps`` and a newline (built at first use).
    _ps_lines: list[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.ips = self.recs["ip"]
        self.flags = self.recs["flags"]

    @property
    def mod_name(self) -> str:
        """``mod->name`` for a module's records, "" for the core kernel's."""
        return self.module_name if self.mod is not None else ""

    def records_named(self, name: str) -> np.ndarray:
        """Indices of the records of function ``name``, in record order: what a full walk
        doing ``kallsyms_lookup`` and ``strcmp`` finds, by binary search in a name index."""
        return self._names_between(name, name, include_high=True)

    def records_prefixed(self, prefix: str) -> np.ndarray:
        """Indices of the records whose name starts with ``prefix`` (``strncmp``, the
        ``foo*`` glob), in record order, by binary search in the name index."""
        return self._names_between(prefix, prefix + _LAST_CHAR, include_high=False)

    def _names_between(self, low: str, high: str, include_high: bool) -> np.ndarray:
        if self._name_index is None:
            order = np.argsort(self.names, kind="stable")
            self._name_index = order, self.names[order].tolist()
        order, sorted_names = self._name_index
        start = bisect.bisect_left(sorted_names, low)
        search_end = bisect.bisect_right if include_high else bisect.bisect_left
        end = search_end(sorted_names, high, start)
        found = order[start:end]
        return np.sort(found) if len(found) > 1 else found

    def ps_lines(self) -> list[bytes]:
        """Each record's ``%ps`` and a newline, what ``t_show()`` prints for it:
        ``sprint_symbol_no_offset()``, the name or ``name [module]``."""
        if self._ps_lines is None:
            suffix = "\n" if self.mod is None else f" [{self.module_name}]\n"
            self._ps_lines = [line.encode() for line in
                              np.strings.add(self.names, suffix).tolist()]
        return self._ps_lines

    @functools.cached_property
    def shortest_ps_line(self) -> int:
        """The length of the shortest of :meth:`ps_lines`: how few bytes a record takes in
        a listing, which bounds how many fit in what is left of a page."""
        return min(map(len, self.ps_lines()))

    @property
    def nr_pages(self) -> int:
        return -(-len(self.recs) // ENTRIES_PER_PAGE)


class RecordPages:
    """Allocation, freeing and publication of record page groups.

    ``ftrace_pages_start`` is the ordered tuple ``groups``; it is replaced, never
    edited, so a walker that took it keeps a valid list while pages are unlinked
    (only the pages themselves can then be freed under it, which is the
    use-after-free the ``unload-unlocked`` race window exposes).
    """

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.groups: tuple[FtracePageGroup, ...] = ()
        self._ids = itertools.count()
        self._next_page_addr = PAGE_OFFSET + 0x3C000000
        self._seq_lock = threading.Lock()  # the spinlock of a seqlock_t
        self._writers = 0
        self._generation = 0
        self._ftrace_disabled = 0
        # Every group's segment until it is freed, linked or not (a load allocates before
        # it links), so that destroy() leaves none behind; and under this lock no segment
        # is created after destroy() (a module load racing a reboot).
        self._segments_lock = threading.Lock()
        self._segments: set[ShmSegment] = set()
        # Why destroy() ran (kernel_daemon.teardown); empty until it has.
        self._end_reason = ""
        self.directory = ShmSegment(f"{namespace}.pagedir", DIR_SIZE, create=True)
        self._publish_header()

    # -- the seqlock writer side ------------------------------------------------
    def write_begin(self) -> None:
        with self._seq_lock:
            self._writers += 1
            self._generation += 1
            self._publish_header()

    def write_end(self) -> None:
        with self._seq_lock:
            self._writers -= 1
            self._generation += 1
            self._publish_header()

    def publish_ftrace_disabled(self) -> None:
        """Show ``ftrace_disabled`` to readers beside the pages, as a debugger reads the
        variable next to ``ftrace_pages_start``: after ``ftrace_kill()`` the records stay
        as the aborted pass left them, and a reader should say so."""
        with self._seq_lock:
            self._ftrace_disabled = 1
            self._publish_header()

    def _publish_header(self) -> None:
        DIR_HEADER.pack_into(self.directory.map, 0, DIR_MAGIC, self._generation,
                             self._writers, len(self.groups), DIR_MAX_GROUPS,
                             self._ftrace_disabled)

    def _publish_directory(self) -> None:
        for slot, group in enumerate(self.groups):
            DIR_ENTRY.pack_into(self.directory.map, DIR_HEADER.size + slot * DIR_ENTRY.size,
                                group.group_id, group.page_addr, len(group.recs),
                                group.nr_pages, group.module_name.encode()[:48])
        self._publish_header()

    # -- ftrace_allocate_pages / linking / freeing --------------------------------
    def allocate(self, mod: object | None, module_name: str, ips: np.ndarray,
                 names: np.ndarray) -> FtracePageGroup:
        """``ftrace_allocate_pages()`` plus the record fill loop of ftrace_process_locs.

        ENODEV after :meth:`destroy`: the kernel this call entered has gone away.
        """
        if len(self.groups) >= DIR_MAX_GROUPS:
            raise MemoryError("page directory full")
        order = np.argsort(ips, kind="stable")
        group_id = next(self._ids)
        nr_pages = -(-len(ips) // ENTRIES_PER_PAGE)
        with self._segments_lock:
            if self._end_reason:
                raise kernel_gone(self._end_reason, "its memory is gone")
            try:
                segment = ShmSegment(f"{self.namespace}.pg{group_id}", nr_pages * PAGE_SIZE,
                                     create=True)
            except OSError as exc:  # EMFILE, ENOSPC: as ftrace_allocate_pages() failing
                raise MemoryError(f"ftrace: FAILED to allocate memory for functions: "
                                  f"{exc.strerror}") from exc
            self._segments.add(segment)
        recs = np.ndarray((len(ips),), dtype=DYN_FTRACE, buffer=segment.map)
        recs["ip"] = ips[order]
        recs["flags"] = 0
        group = FtracePageGroup(group_id, mod, module_name, segment, recs,
                                np.asarray(names)[order], self._next_page_addr)
        self._next_page_addr += nr_pages * PAGE_SIZE
        return group

    def link(self, group: FtracePageGroup) -> None:
        """Append a group at the end of the page list (``ftrace_pages->next = start_pg``)."""
        self.groups = self.groups + (group,)
        self._publish_directory()

    def unlink(self, group: FtracePageGroup) -> None:
        self.groups = tuple(g for g in self.groups if g is not group)
        self._publish_directory()

    def free(self, group: FtracePageGroup) -> None:
        """``free_pages()``: poison the records and drop the segment's name."""
        group.freed = True
        group.recs["ip"] = POISON_FREE_QWORD
        group.recs["flags"] = POISON_FREE_QWORD
        with self._segments_lock:
            group.segment.unlink()
            self._segments.discard(group.segment)

    def destroy(self, reason: str = SHUT_DOWN) -> None:
        """The kernel is going away for ``reason`` (kernel_daemon.teardown): unlink every
        segment not freed yet, and refuse to create more. The page list stays as it is,
        its mappings valid: a call still running on the kernel (a listing's walk, a
        filter's match, an Invoke's record lookup) finishes against the records it had,
        as a unary call inside the old kernel does (kernel_daemon.rpc.state)."""
        with self._segments_lock:
            self._end_reason = reason
            for segment in self._segments:
                segment.unlink()
            self._segments.clear()
        self.directory.unlink()
