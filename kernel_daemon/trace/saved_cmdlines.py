"""``saved_cmdlines``: the pid → comm table of ``kernel/trace/trace.c`` (3.6):
``trace_save_cmdline()``, ``trace_find_cmdline()`` and ``tracing_saved_cmdlines_read()``.

The kernel fills it from the sched_switch probe the function tracer starts
(``tracing_start_cmdline_record()``), for the tasks switched in and out, whatever the
``record-cmd`` option says (that one is for trace events); the model has no scheduler, so
a task is saved when it reaches the function tracer while recording is on (see
``Kernel.function_trace_event``).  The lines of ``trace`` keep the comm each event
recorded (``trace_output.trace_find_cmdline``), so an evicted slot does not turn them
into ``<...>``.
"""

from __future__ import annotations

import threading

from kernel_daemon.trace.trace_output import PID_MAX_DEFAULT

SAVED_CMDLINES = 128


class SavedCmdlines:
    """``map_pid_to_cmdline``, ``map_cmdline_to_pid``, ``saved_cmdlines``, ``cmdline_idx``."""

    def __init__(self) -> None:
        self.map_pid_to_cmdline: dict[int, int] = {}
        self.map_cmdline_to_pid: list[int | None] = [None] * SAVED_CMDLINES
        self.saved_cmdlines = [""] * SAVED_CMDLINES
        self.cmdline_idx = 0
        self.trace_cmdline_lock = threading.Lock()

    def saved(self, pid: int, comm: str) -> bool:
        """Whether ``pid`` is saved with this comm already: the caller's cheap test."""
        idx = self.map_pid_to_cmdline.get(pid)
        return idx is not None and self.saved_cmdlines[idx] == comm

    def trace_save_cmdline(self, pid: int, comm: str) -> None:
        """``trace_save_cmdline()``: pid 0 and pids above PID_MAX_DEFAULT are not saved; a
        new pid takes the next slot round the table (the first is slot 1), evicting its
        pid; a busy lock skips the save ("better luck next time")."""
        if not pid or pid > PID_MAX_DEFAULT:
            return
        if not self.trace_cmdline_lock.acquire(blocking=False):
            return
        try:
            idx = self.map_pid_to_cmdline.get(pid)
            if idx is None:
                idx = (self.cmdline_idx + 1) % SAVED_CMDLINES
                old = self.map_cmdline_to_pid[idx]
                if old is not None:
                    del self.map_pid_to_cmdline[old]
                self.map_cmdline_to_pid[idx] = pid
                self.map_pid_to_cmdline[pid] = idx
                self.cmdline_idx = idx
            self.saved_cmdlines[idx] = comm
        finally:
            self.trace_cmdline_lock.release()

    def tracing_saved_cmdlines_read(self) -> str:
        """``"%d %s\\n"`` for each slot that holds a pid, in slot order."""
        with self.trace_cmdline_lock:
            return "".join(f"{pid} {self.saved_cmdlines[idx]}\n"
                           for idx, pid in enumerate(self.map_cmdline_to_pid)
                           if pid is not None)
