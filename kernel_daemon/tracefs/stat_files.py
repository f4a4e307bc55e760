"""The files of ``trace_stat/``: ``tracing_stat_fops`` of ``kernel/trace/trace_stat.c`` (3.6).

Open sorts the stat tracer's entries into its session (``tracing_stat_open`` →
``stat_seq_init``), a read is ``seq_read`` over the session (``trace_stat_seq_ops``),
release empties it (``tracing_stat_release``).  There is no write method: root opens the
0644 file for write, and the write is EINVAL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel_daemon.trace.trace_output import trace_bytes
from kernel_daemon.trace.trace_stat import StatSession
from kernel_daemon.tracefs.files import FileOps, OpenFile, SeqText, seq_open
from kernel_daemon.tracefs.seq_file import SeqOperations

if TYPE_CHECKING:
    from kernel_daemon.kernel import Kernel


class TracingStatOpenFile(SeqText):
    """An open stat file.  A ``stat_show`` that fails ends the page before its entry:
    ``seq_read`` returns what came before, and the read after that fails with the
    show's error."""

    def __init__(self, path: str, flags: int, session: StatSession) -> None:
        super().__init__(path, flags, SeqOperations(
            session.stat_seq_start, session.stat_seq_next, session.stat_seq_stop,
            lambda p: trace_bytes(session.stat_seq_show(p))))
        self.session = session

    def release(self) -> None:
        self.session.reset_stat_session()


class TracingStatFile(FileOps):
    """``tracing_stat_fops`` of one session, made by ``init_stat_file()`` with mode 0644."""

    mode = 0o644

    def __init__(self, session: StatSession) -> None:
        self.session = session

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        self.session.stat_seq_init()
        return seq_open(TracingStatOpenFile(path, flags, self.session))
