"""``struct seq_file`` and its reading: ``seq_read()`` and ``traverse()`` of fs/seq_file.c (3.6).

A seq_file prints records (``->show()``) into a buffer of a page and copies from it.  Between
two read(2) calls it keeps only the index of the record it reached (``m->index``) and the bytes
of the buffer not yet copied (``m->count`` of them from ``m->from``).  The next read copies
those first, then asks the file's ``->start()`` for the record at ``m->index`` again, so a
record added or removed before that index between the two reads shifts what follows (a line
shown twice, or one never shown), as a reader of ``available_filter_functions`` sees when a
module loads while it reads.

The model's buffer holds the printed bytes, not a page of memory: ``size`` is what 3.6 would
have allocated, and a record fits in it as ``seq_printf()`` lets it, with a byte to spare for
the NUL (``m->count + len < m->size``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernel_daemon.errno import KernelError

PAGE_SIZE = 4096


@dataclass(frozen=True)
class SeqOperations:
    """``struct seq_operations``: ``start(pos)`` gives the record at index ``pos`` (None past
    the last) and takes whatever lock ``stop(v)`` drops, which is called once for every
    ``start``, whatever it returned (None after one that raised); ``next(v, pos)`` gives
    the record after ``v`` and its index; ``show(v)`` the bytes it prints, or raises the
    errno of a show that fails.

    ``run``, the model's own and optional, does at once what ``Fill:`` does with the
    records after ``v`` that certainly fit: ``run(v, pos, count, size, m_size)`` returns
    the bytes ``next()`` and ``show()`` would give for them, one after the other in one
    chunk, taken while the page holds fewer than ``size`` bytes before one and fewer than
    ``m_size`` after it, with the last one's ``v`` and index, leaving the iterator as those
    calls would.  It may stop earlier (at the end of a page group, say): ``Fill:`` goes on
    one record at a time.
    """

    start: Callable[[int], Any]
    next: Callable[[Any, int], tuple[Any, int]]
    stop: Callable[[Any], None]
    show: Callable[[Any], bytes]
    run: Callable[[Any, int, int, int, int], tuple[bytes, Any, int]] | None = None


@dataclass(eq=False)
class SeqFile:
    """``struct seq_file``: its ``op`` and the state of its reading."""

    op: SeqOperations
    buf: bytes = b""  # the page last printed; m->count bytes of it from m->from are unread
    size: int = 0  # m->size: 0 until the first read allocates a page
    count: int = 0
    from_: int = 0
    index: int = 0
    read_pos: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def single_start(pos: int) -> Any:
    """``single_start()``: the one record at index 0, nothing after it."""
    return True if pos == 0 else None


def single_next(v: Any, pos: int) -> tuple[Any, int]:
    """``single_next()``."""
    return None, pos + 1


def single_stop(v: Any) -> None:
    """``single_stop()``."""


def single_open(show: Callable[[], bytes]) -> SeqOperations:
    """``single_open()``'s operations: one record, which ``show`` prints whole."""
    return SeqOperations(single_start, single_next, single_stop, lambda v: show())


def record_ends(records: Sequence[Sized]) -> np.ndarray:
    """Where each of ``records`` ends when they are printed one after the other."""
    return np.cumsum(np.fromiter(map(len, records), dtype=np.int64, count=len(records)))


class SeqRecords:
    """Records printed one after the other: their text, and where each ends in it
    (``ends[i]``, numpy), so a run of them is one slice of the text."""

    def __init__(self, text: bytes, ends: np.ndarray) -> None:
        self.text = text
        self.ends = ends

    @classmethod
    def joined(cls, records: Iterable[bytes]) -> SeqRecords:
        """``records`` as one text (already one: as it is)."""
        if isinstance(records, SeqRecords):
            return records
        records = list(records)
        return cls(b"".join(records), record_ends(records))

    @classmethod
    def lines(cls, text: bytes) -> SeqRecords:
        """Each line of ``text`` a record, with its newline (the last one may have none)."""
        ends = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == ord("\n")) + 1
        if not text.endswith(b"\n") and text:
            ends = np.append(ends, len(text))
        return cls(text, ends)

    def run(self, v: int, count: int, size: int, m_size: int) -> tuple[bytes, int]:
        """The records after record ``v`` that ``Fill:`` takes into a page holding ``count``
        bytes (:func:`fitting`), as one slice, and how many they are, found in ``ends``:
        record ``j`` is taken while the page held fewer than ``size`` bytes before it (the
        records from ``v + 1`` to ``j - 1``, ``ends[j - 1] - ends[v]`` bytes, were added)
        and holds fewer than ``m_size`` with it (``ends[j] - ends[v]``); both grow with
        ``j``.  It stops at the last record: what follows it, if the file goes on elsewhere
        (``/proc/kallsyms``' next symbol table), is the caller's to show."""
        ends = self.ends
        base = int(ends[v])
        # How many of ends[v], ends[v + 1], ... (the page before each next record) are
        # below size, the last record having none after it; and how many of
        # ends[v + 1], ... (the page with it) are below m_size.
        before = int(ends[v:-1].searchsorted(size - count + base))
        after = int(ends[v + 1:].searchsorted(m_size - count + base))
        n = min(before, after)
        return (self.text[base:int(ends[v + n])] if n else b""), n

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i: int) -> bytes:
        return self.text[int(self.ends[i - 1]) if i else 0:int(self.ends[i])]

    def __iter__(self) -> Iterator[bytes]:
        text = self.text
        ends = self.ends.tolist()
        return map(text.__getitem__, map(slice, [0, *ends[:-1]], ends))


class SeqSnapshot:
    """The operations of a seq_file whose records the model prints all at once: ``produce``
    gives them when a walk starts at index 0, and a start at a later index takes its record
    from them.  3.6's ``->start()`` finds its record afresh at every read, so this is only
    for files whose records cannot change while they are open: ``available_tracers`` and an
    event's ``format`` (``GeneratedFile``), ``trace`` (tracing stopped while it is open).
    Kept as :class:`SeqRecords`, ``run`` finds the records that fit by bisection and gives
    them as one slice."""

    def __init__(self, produce: Callable[[], Iterable[bytes]]) -> None:
        self.produce = produce
        self.records = SeqRecords(b"", np.zeros(0, dtype=np.int64))

    def start(self, pos: int) -> int | None:
        if pos == 0:
            self.records = SeqRecords.joined(self.produce())
        return pos if pos < len(self.records) else None

    def next(self, v: int, pos: int) -> tuple[int | None, int]:
        pos += 1
        return (pos if pos < len(self.records) else None), pos

    def stop(self, v: int | None) -> None:
        pass

    def show(self, v: int) -> bytes:
        return self.records[v]

    def run(self, v: int, pos: int, count: int, size: int,
            m_size: int) -> tuple[bytes, int, int]:
        chunk, n = self.records.run(v, count, size, m_size)
        return chunk, v + n, pos + n

    def operations(self) -> SeqOperations:
        return SeqOperations(self.start, self.next, self.stop, self.show, self.run)


def fitting(records: Iterable[bytes], count: int, size: int, m_size: int) -> list[bytes]:
    """The first of ``records`` that ``Fill:`` takes into a page holding ``count`` bytes
    (see :class:`SeqOperations`' ``run``)."""
    taken = []
    for rec in records:
        if count >= size:
            break
        count += len(rec)
        if count >= m_size:
            break
        taken.append(rec)
    return taken


def traverse(m: SeqFile, offset: int) -> None:
    """``traverse()``, with its callers' ``while (traverse(m, offset) == -EAGAIN)`` retry:
    the records are shown from the first until the one that holds byte ``offset``, whose
    rest stays in the buffer, and ``m->index`` is that record's; a record that does not fit
    doubles the buffer and the walk starts again.  A show that fails raises its errno
    (``seq_read()`` and ``seq_lseek()`` then reset the reading)."""
    op = m.op
    while True:
        m.count = m.from_ = 0
        index = 0
        if not offset:
            m.index = index
            return
        if not m.size:
            m.size = PAGE_SIZE
        pos = 0
        overflow = False
        p = None
        try:  # ->stop() after every ->start(), even one that failed, as 3.6 calls it
            p = op.start(index)
            while p is not None:
                rec = op.show(p)
                if len(rec) >= m.size:
                    overflow = True
                    break
                if pos + len(rec) > offset:
                    m.buf, m.from_ = rec, offset - pos
                    m.count = len(rec) - m.from_
                    break
                pos += len(rec)
                if pos == offset:
                    index += 1
                    break
                p, index = op.next(p, index)
        finally:
            op.stop(p)
        if not overflow:
            m.index = index
            return
        m.size <<= 1  # -EAGAIN: again with a buffer twice the size


def seq_read_fill(m: SeqFile, size: int) -> bytes:
    """The part of ``seq_read()`` that prints a new page, up to ``size`` bytes of which it
    returns: ``start()`` at ``m->index``, the first record that prints something (an empty
    one moves ``m->index`` past it), in a buffer doubled (``m->size <<= 1``) and the start
    made again while that record does not fit; then ``Fill:``, the records after it while
    fewer than ``size`` bytes are printed and the next one fits in the buffer.  The bytes
    past ``size`` stay buffered (``m->count``, ``m->from``) with ``m->index`` at the record
    they belong to; otherwise ``m->index`` moves past the last record printed.

    A failing ``start()`` or first show raises its errno; one in ``Fill:`` ends the page
    there, and the next read meets it first."""
    op = m.op
    while True:
        pos = m.index
        p = None
        try:  # as in traverse(): ->stop() even after a failed ->start()
            p = op.start(pos)
            while p is not None:
                rec = op.show(p)
                if rec:
                    break
                p, pos = op.next(p, pos)
                m.index = pos
            else:
                m.count = 0
                return b""
            if len(rec) < m.size:
                # Fill: "they want more? let's try to get some more"
                parts, count = [rec], len(rec)
                next_, show, run = op.next, op.show, op.run
                while count < size:
                    if run is not None:
                        chunk, p, pos = run(p, pos, count, size, m.size)
                        if chunk:
                            parts.append(chunk)
                            count += len(chunk)
                            if count >= size:
                                break
                    p, next_pos = next_(p, pos)
                    if p is None:
                        break
                    try:
                        rec = show(p)
                    except KernelError:
                        break
                    if count + len(rec) >= m.size:
                        break
                    parts.append(rec)
                    count += len(rec)
                    pos = next_pos
                break
        finally:
            op.stop(p)
        m.size <<= 1
    page = parts[0] if len(parts) == 1 else b"".join(parts)
    n = min(count, size)
    m.count = count - n
    if m.count:
        m.buf, m.from_ = page, n
    else:
        pos += 1
    m.index = pos
    return page[:n] if m.count else page


def seq_read(m: SeqFile, size: int, ppos: int) -> bytes:
    """``seq_read()``: up to ``size`` bytes at position ``ppos`` (the caller moves its
    ``*ppos`` by what is returned).  A position other than where the reading stopped
    (``m->read_pos``: after a pread, a write or an lseek that moved ``f_pos``) is reached by
    :func:`traverse` first.  The bytes still buffered are copied first; if they do not
    satisfy the read, a page is printed (:func:`seq_read_fill`).  An error is raised only
    when nothing was copied."""
    with m.lock:
        if ppos != m.read_pos:
            try:
                traverse(m, ppos)
            except KernelError:
                m.read_pos = m.index = m.count = 0  # "With prejudice..."
                raise
            m.read_pos = ppos
        if not m.size:
            m.size = PAGE_SIZE
        copied = b""
        if m.count:
            n = min(m.count, size)
            copied = m.buf[m.from_:m.from_ + n]
            m.count -= n
            m.from_ += n
            size -= n
            if not m.count:
                m.index += 1
            if not size:
                m.read_pos += len(copied)
                return copied
        try:
            copied += seq_read_fill(m, size)
        except KernelError:
            if not copied:
                raise
        m.read_pos += len(copied)
        return copied
