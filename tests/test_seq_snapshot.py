"""SeqSnapshot's ``run`` (the records that fit found by bisection, given as one slice) reads
as ``seq_read()``'s ``Fill:`` taking the same records one ``next()`` and ``show()`` at a
time: the same bytes in the same read sizes, whatever the size asked, and the seq_file left
as it was (the index reached, the bytes kept in the buffer, its size) after each read; and
SeqRecords.run takes all those records at once, not fewer, which would read alike."""

from __future__ import annotations

import random

import pytest

from kernel_daemon.trace.trace_output import trace_bytes
from kernel_daemon.tracefs.seq_file import (PAGE_SIZE, SeqFile, SeqOperations, SeqRecords,
                                             SeqSnapshot, seq_read)
from kernel_daemon.tracefs.trace_files import trace_seq_records

# Lines of every length from empty to a few hundred bytes, empty records (which Fill: takes
# and the first show of a page skips), and one larger than a page (the buffer doubles).
_rng = random.Random(36)
RECORDS = [b"x" * _rng.randrange(0, 300) + b"\n" for _ in range(60)]
RECORDS[7:7] = [b"", b""]
RECORDS[30:30] = [b"y" * (PAGE_SIZE + 900) + b"\n", b"", b"z\n"]
RECORDS.append(b"")
# And after the first 28, one with which the first page of a read of a page or more would
# hold exactly m->size bytes: Fill: does not take it (seq_printf() keeps a byte for the NUL).
RECORDS[28:28] = [b"w" * (PAGE_SIZE - len(b"".join(RECORDS[:28])) - 1) + b"\n"]


def reads(op: SeqOperations, size: int) -> list[tuple[bytes, int, int, int]]:
    m = SeqFile(op)
    out = []
    while chunk := seq_read(m, size, m.read_pos):
        out.append((chunk, m.index, m.count, m.size))
    return out


#: The read sizes that can read differently: every one up to the largest buffer the
#: reading grows (2 * PAGE_SIZE: RECORDS' one record larger than a page doubles it once),
#: and one far past it. The read size enters ``run`` only through the bytes before a record
#: (``count < size``), and a page of a buffer no larger than the size ends at ``m->size``
#: first (``count + len >= m->size``), so every size from the buffer's up reads alike.
READ_SIZES = [*range(1, 2 * PAGE_SIZE + 1), 1 << 16]


def test_run_reads_as_one_record_at_a_time_for_every_read_size():
    total = b"".join(RECORDS)
    for size in READ_SIZES:
        snapshot = SeqSnapshot(lambda: RECORDS).operations()
        one_at_a_time = SeqSnapshot(lambda: RECORDS).operations()
        one_at_a_time = SeqOperations(one_at_a_time.start, one_at_a_time.next,
                                      one_at_a_time.stop, one_at_a_time.show)
        got = reads(snapshot, size)
        assert got == reads(one_at_a_time, size), size
        assert b"".join(chunk for chunk, *_ in got) == total
    # The largest buffer is the one READ_SIZES reach (RECORDS changed, they may not).
    assert max(m_size for *_, m_size in got) == 2 * PAGE_SIZE
    # RECORDS[28] would end the first page exactly at m->size (RECORDS changed, it may not).
    assert len(b"".join(RECORDS[:29])) == PAGE_SIZE


def fill_takes(records: list[bytes], v: int, count: int, size: int, m_size: int) -> int:
    """How many of the records after ``v`` seq_read()'s ``Fill:`` (fs/seq_file.c) takes into
    a page holding ``count`` bytes, as its loop does it, one record at a time: while
    ``m->count < size``, ``->next()`` and ``->show()``, whose ``seq_printf()`` keeps the
    record if ``m->count + len < m->size`` and otherwise overflows the page, which ends it."""
    taken = 0
    for rec in records[v + 1:]:
        if count >= size or count + len(rec) >= m_size:
            break
        count += len(rec)
        taken += 1
    return taken


#: Records for run's boundaries: empty ones first (kallsyms' null symbol), amid the others
#: and last (as RECORDS end), and lengths 1 to 5, few enough bytes to try every count, read
#: size and m->size up to past the whole text: a record then ends where the page reaches
#: size and m->size, one byte before and after, and a run from every record reaches the last.
SMALL_RECORDS = [b"", b"ab\n", b"", b"\n", b"abc\n", b"a\n", b"", b"abcd\n", b"\n", b""]


def test_run_takes_at_once_every_record_fill_takes():
    """SeqRecords.run takes exactly the records ``Fill:`` would take one at a time, not fewer
    (which would read alike, ``Fill:`` taking the rest one at a time, only slower): for every
    record ``v`` and every ``m->size`` up to past the whole text, every count ``Fill:`` calls
    ``run`` with (the page holds the first record, printed, and fewer than ``size`` and
    ``m->size`` bytes) and every read size up to past ``m->size``: a record that ends the
    page at ``m->size - 1`` (taken) or at ``m->size`` (not), a page that holds ``size``
    bytes before one (no more), and the last record (``run`` stops there)."""
    records = SeqRecords.joined(SMALL_RECORDS)
    for m_size in range(2, len(records.text) + 3):
        for count in range(1, m_size):
            for size in range(count + 1, m_size + 2):
                for v in range(len(SMALL_RECORDS)):
                    n = fill_takes(SMALL_RECORDS, v, count, size, m_size)
                    expected = b"".join(SMALL_RECORDS[v + 1:v + 1 + n]), n
                    assert records.run(v, count, size, m_size) == expected, (v, count, size,
                                                                             m_size)


@pytest.mark.parametrize("text", [b"", b"a\n", b"a\nb", b"\n\nx\n", b"".join(RECORDS) + b"tail"])
def test_a_text_s_lines_are_the_records_splitlines_gives(text):
    """seq_lines()' records, found from the newlines' offsets, are the lines splitlines()
    gives (for text whose only line ends are newlines), one by one and as a SeqSnapshot
    reads them."""
    lines = text.splitlines(keepends=True)
    records = SeqRecords.lines(text)
    assert list(records) == lines
    assert [records[i] for i in range(len(records))] == lines
    for size in (1, 100, PAGE_SIZE, 1 << 16):
        assert (reads(SeqSnapshot(lambda: SeqRecords.lines(text)).operations(), size)
                == reads(SeqSnapshot(lambda: lines).operations(), size))


@pytest.mark.parametrize("texts", [["# header\n", "a\n", "b\nc\n"],
                                   ["# header\n", "\u00e9t\u00e9\n", "\udcff\udcfe\n", "x\n"]])
def test_trace_records_end_where_each_text_s_bytes_end(texts):
    """trace_seq_records() encodes the texts as one and finds each record's end from their
    lengths, or, when a character takes more than a byte (a UTF-8 comm or marker), from
    each one's bytes: the records are the texts' bytes either way."""
    records = trace_seq_records(texts)
    assert list(records) == [trace_bytes(text) for text in texts]
