"""The kernel log buffer read by ``dmesg``.

Model of ``kernel/printk.c`` (3.6), the record-based log introduced in 3.5: every
message is a ``struct log`` record with a sequence number and a ``local_clock()``
timestamp, stored in a ring of ``__LOG_BUF_LEN`` bytes (``CONFIG_LOG_BUF_SHIFT=17``);
when a new record does not fit, the oldest are dropped.

Two readers, as in the kernel:

* ``syslog(2)`` (plain ``dmesg``, ``dmesg -c``) reads from ``clear_seq``; clearing only
  moves ``clear_seq``, the records stay in the ring.
* ``/dev/kmsg`` (``dmesg -w``) follows by sequence number regardless of ``clear_seq``;
  a reader that fell behind the ring continues at the oldest record.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# sizeof(struct log) in 3.6: u64 ts_nsec, u16 len, u16 text_len, u16 dict_len, and two
# bytes of facility/flags/level bitfields.
_LOG_HEADER_SIZE = 16
# LOG_ALIGN: __alignof__(struct log) on x86_64.
_LOG_ALIGN = 8
# LOG_LINE_MAX (1024 - PREFIX_MAX): vprintk_emit() formats into a buffer of this size.
LOG_LINE_MAX = 992
# include/linux/printk.h: KERN_EMERG .. KERN_DEBUG.
_LOGLEVELS = range(8)
KERN_ERR = 3
KERN_WARNING = 4
KERN_INFO = 6
KERN_DEBUG = 7
# The level of a message that names none (a bare printk(), KERN_CONT pieces that start a
# line): CONFIG_DEFAULT_MESSAGE_LOGLEVEL's default.
DEFAULT_MESSAGE_LOGLEVEL = 4


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One ``struct log``: the model keeps the fields dmesg output depends on.

    ``seq`` counts from 0 at boot, as the kernel's ``log_next_seq`` does.
    """

    seq: int
    ts_nsec: int
    level: int
    text: str

    @property
    def size(self) -> int:
        """Bytes the record occupies in the ring (``log_store()``'s ``size``)."""
        raw = _LOG_HEADER_SIZE + len(self.text.encode())
        return (raw + _LOG_ALIGN - 1) & ~(_LOG_ALIGN - 1)

    def format(self) -> str:
        """``msg_print_text()`` with ``print_time()``: ``"[%5lu.%06lu] %s"``."""
        sec, rem_nsec = divmod(self.ts_nsec, 1_000_000_000)
        return f"[{sec:5d}.{rem_nsec // 1000:06d}] {self.text}"


class Printk:
    """One kernel's log buffer. Thread-safe: one lock, as ``logbuf_lock``."""

    def __init__(self, clock: Callable[[], int], capacity_bytes: int = 1 << 17) -> None:
        """``clock`` returns nanoseconds since boot (``local_clock()``)."""
        self._clock = clock
        self._capacity = capacity_bytes
        self._records: deque[LogRecord] = deque()
        self._used = 0
        self._first_seq = 0
        self._next_seq = 0
        self._clear_seq = 0
        self._closed = False
        self._cond = threading.Condition()

    def printk(self, text: str, level: int = 4) -> None:
        """Log ``text``; each of its lines becomes one record, all with the same timestamp.

        As ``vprintk_emit()``, one trailing newline ends the message rather than adding
        an empty line, and text longer than ``LOG_LINE_MAX`` is cut.
        """
        if level not in _LOGLEVELS:
            raise ValueError(f"printk level must be 0..7, got {level}")
        lines = text.removesuffix("\n").split("\n")
        with self._cond:
            ts = self._clock()
            for line in lines:
                self._log_store(LogRecord(self._next_seq, ts, level, line[:LOG_LINE_MAX]))
            self._cond.notify_all()

    def _log_store(self, record: LogRecord) -> None:
        """``log_store()``: make room by dropping the oldest records, then append."""
        while self._records and self._used + record.size > self._capacity:
            self._used -= self._records.popleft().size
            self._first_seq += 1
        self._records.append(record)
        self._used += record.size
        self._next_seq += 1

    def _records_from(self, seq: int) -> list[LogRecord]:
        start = max(seq, self._first_seq) - self._first_seq
        return list(itertools.islice(self._records, start, None))

    def read_records(self, clear: bool = False) -> list[LogRecord]:
        """``syslog(SYSLOG_ACTION_READ_ALL)``: the records from ``clear_seq`` on;
        ``clear`` is ``dmesg -c``."""
        return self.read_log(clear)[0]

    def read_log(self, clear: bool = False) -> tuple[list[LogRecord], int]:
        """:meth:`read_records` and ``log_next_seq`` (the next record's ``seq``), read
        under one hold of ``logbuf_lock``: where the ring ends, whatever ``clear_seq`` is."""
        with self._cond:
            records = self._records_from(self._clear_seq)
            if clear:
                self._clear_seq = self._next_seq
            return records, self._next_seq

    def read(self, clear: bool = False) -> str:
        """:meth:`read_records` as ``dmesg`` prints them."""
        return "".join(record.format() + "\n" for record in self.read_records(clear))

    def clear(self) -> None:
        """``syslog(SYSLOG_ACTION_CLEAR)`` (``dmesg -C``)."""
        with self._cond:
            self._clear_seq = self._next_seq

    def records_since(self, seq: int, timeout: float | None) -> tuple[list[LogRecord], int]:
        """Follow the log like a ``/dev/kmsg`` reader (``dmesg -w``).

        Blocks until a record with sequence number >= ``seq`` exists, ``timeout``
        seconds pass (``None``: no limit) or :meth:`close` is called.  Returns the
        records and the sequence number to pass next.  Records already dropped from
        the ring are skipped, as ``devkmsg_read()`` does after its ``-EPIPE``.
        """
        with self._cond:
            self._cond.wait_for(
                lambda: self._closed or max(seq, self._first_seq) < self._next_seq, timeout
            )
            records = self._records_from(seq)
            return records, max(seq, self._first_seq) + len(records)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called; followers use it to end their stream."""
        return self._closed

    def close(self) -> None:
        """Wake every follower so it can end (the kernel is going away)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
