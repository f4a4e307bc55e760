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

from kernel_daemon.errno import KernelError

# An entry of a stat tracer: the kernel's ``void *stat``.
Stat = object


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

    def stat_seq_show_all(self) -> tuple[str, KernelError | None]:
        """The ``seq_read()`` walk from the start: ``stat_headers``, then ``stat_show`` of
        each entry in the tree, under the session's mutex (``stat_seq_start`` to
        ``stat_seq_stop``).  A ``stat_show`` that fails ends the text there; its error is
        what the read after that text returns."""
        ts = self.ts
        with self.stat_mutex:
            out = [ts.stat_headers()]
            for stat in self.stat_root:
                try:
                    out.append(ts.stat_show(stat))
                except KernelError as err:
                    return "".join(out), err
        return "".join(out), None


def register_stat_tracer(all_stat_sessions: list[StatSession], trace: TracerStat) -> None:
    """``register_stat_tracer()``: a session for ``trace``, whose file ``trace_stat/<name>``
    the tracing directory shows (``init_stat_file()``)."""
    all_stat_sessions.append(StatSession(trace))
