"""Statistic tracers: ``kernel/trace/trace_stat.c`` (3.6), the ``trace_stat/`` files.

A stat tracer (``struct tracer_stat``) walks its entries with ``stat_start`` /
``stat_next``; each file of ``trace_stat/`` is one ``stat_session``.  Opening the file
sorts the entries into the session's tree (``stat_seq_init``), reading prints the
headers and then each entry in tree order, releasing empties the tree.  The tree is the
session's, not the open file's: every open of the file rebuilds it and every release
empties it, so a reader whose file another process opened and closed meanwhile reads
the headers alone, as in 3.6.

The file operations are ``kernel_daemon.tracefs.stat_files``.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Protocol

# An entry of a stat tracer: the kernel's ``void *stat``.
Stat = object
# SEQ_START_TOKEN: the record before the first entry, the headers.
SEQ_START_TOKEN: Stat = object()


class TracerStat(Protocol):
    """``struct tracer_stat`` (trace_stat.h), with the callbacks one stat tracer sets:
    ``stat_show`` raises the KernelError it returns."""

    name: str

    def stat_start(self) -> Stat | None: ...

    def stat_next(self, prev: Stat, idx: int) -> Stat | None: ...

    def stat_cmp(self, a: Stat, b: Stat) -> int: ...

    def stat_headers(self) -> str: ...

    def stat_show(self, stat: Stat) -> str: ...


@dataclass(eq=False)
class StatSession:
    """``struct stat_session``: one stat tracer, its file, and the entries its last
    open sorted (``stat_root``, in the tree's order)."""

    ts: TracerStat
    stat_root: list[Stat] = field(default_factory=list)
    stat_mutex: threading.Lock = field(default_factory=threading.Lock)

    def reset_stat_session(self) -> None:
        """``reset_stat_session()``: the tree emptied, under the session's mutex."""
        with self.stat_mutex:
            self.stat_root = []

    def stat_seq_init(self) -> None:
        """``stat_seq_init()``: every entry, from ``stat_start`` on, put in the tree by
        ``insert_stat()``.

        ``insert_stat()`` descends left while ``stat_cmp(new, this) >= 0``, so a new
        entry goes before every entry it does not compare below: the in-order walk is
        greatest first, and entries that compare equal come newest first.  That is the
        walk's order reversed, then sorted greatest first by a stable sort.
        """
        ts = self.ts
        with self.stat_mutex:
            walked: list[Stat] = []
            stat = ts.stat_start()
            while stat is not None:
                walked.append(stat)
                stat = ts.stat_next(stat, len(walked))
            self.stat_root = sorted(reversed(walked), key=functools.cmp_to_key(ts.stat_cmp),
                                    reverse=True)

    def stat_seq_start(self, pos: int) -> Stat | None:
        """``stat_seq_start()``: the session's mutex taken (``stat_seq_stop()`` drops it);
        index 0 is the headers (SEQ_START_TOKEN), then the tree's entries in order."""
        self.stat_mutex.acquire()
        return self._stat_at(pos)

    def stat_seq_next(self, p: Stat, pos: int) -> tuple[Stat | None, int]:
        """``stat_seq_next()``: the entry after ``p`` (``rb_next()``), the tree being fixed
        while the mutex is held."""
        return self._stat_at(pos + 1), pos + 1

    def _stat_at(self, pos: int) -> Stat | None:
        if pos == 0:
            return SEQ_START_TOKEN
        return self.stat_root[pos - 1] if pos <= len(self.stat_root) else None

    def stat_seq_stop(self, p: Stat | None) -> None:
        """``stat_seq_stop()``."""
        self.stat_mutex.release()

    def stat_seq_show(self, p: Stat) -> str:
        """``stat_seq_show()``: the headers, or the tracer's ``stat_show`` of an entry,
        which raises the error it returns."""
        if p is SEQ_START_TOKEN:
            return self.ts.stat_headers()
        return self.ts.stat_show(p)


def register_stat_tracer(all_stat_sessions: list[StatSession], trace: TracerStat) -> None:
    """``register_stat_tracer()``: a session for ``trace``, whose file ``trace_stat/<name>``
    the tracing directory shows (``init_stat_file()``)."""
    all_stat_sessions.append(StatSession(trace))
