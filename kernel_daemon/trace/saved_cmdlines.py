"""``saved_cmdlines``: the pid → comm table of ``kernel/trace/trace.c`` (3.6):
``trace_save_cmdline()``, ``trace_find_cmdline()``, ``tracing_saved_cmdlines_read()``, and
``tracing_start_cmdline_record()`` / ``tracing_stop_cmdline_record()`` of
``trace_sched_switch.c``.

Who fills it: the kernel's sched_switch probe, which the function tracer's init registers,
records the tasks switched in and out (``tracing_record_cmdline()``) while recording is on,
whatever the ``record-cmd`` option says (that one is for trace events).  The model has no
scheduler; a task is recorded, while the probe would be registered, when it reaches the
function tracer or writes ``trace_marker`` (it was switched in to run), even if a full
buffer without overwrite drops the event.

Who reads it: ``trace`` and ``trace_pipe`` look each line's comm up when they print it
(``trace_print_context()`` calls ``trace_find_cmdline(entry->pid)``), so an evicted pid
prints ``<...>`` and a reused slot the newer comm.  Readers take ``trace_cmdline_lock``; the
recording path only tries it and skips the save when a reader holds it, as 3.6 does.

The table is published in shared memory (``<namespace>.cmdlines``) under a sequence count,
so ``ftrace-inspect`` reads it as ``crash`` reads ``saved_cmdlines`` from a live kernel.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import numpy as np

from kernel_daemon.shm import ShmSegment
from kernel_daemon.task import TASK_COMM_LEN
from kernel_daemon.trace.trace_output import PID_MAX_DEFAULT

SAVED_CMDLINES = 128
# NO_CMDLINE_MAP: UINT_MAX, what trace_init_cmdlines() fills the maps with.
NO_CMDLINE_MAP = 0xFFFFFFFF
CMDLINES_MAGIC = 0x314C435F4D495354  # "TSIM_CL1"
#: The published copy: map_cmdline_to_pid[] and saved_cmdlines[] under a sequence count
#: (odd while a save is being written).  map_pid_to_cmdline[] is its inverse.
CMDLINES_LAYOUT = np.dtype([
    ("magic", "<u8"),
    ("sequence", "<u8"),
    ("map_cmdline_to_pid", "<u4", (SAVED_CMDLINES,)),
    ("saved_cmdlines", f"S{TASK_COMM_LEN}", (SAVED_CMDLINES,)),
])


def cmdlines_segment_name(namespace: str) -> str:
    return f"{namespace}.cmdlines"


class SavedCmdlines:
    """``map_pid_to_cmdline``, ``map_cmdline_to_pid``, ``saved_cmdlines``, ``cmdline_idx``,
    ``trace_cmdline_lock``, and ``sched_ref`` (the sched_switch probe's users)."""

    def __init__(self, namespace: str, tracing_is_enabled: Callable[[], int],
                 tracing_is_on: Callable[[], bool]) -> None:
        self.tracing_is_enabled = tracing_is_enabled
        self.tracing_is_on = tracing_is_on
        self.map_pid_to_cmdline: dict[int, int] = {}
        self.map_cmdline_to_pid: list[int | None] = [None] * SAVED_CMDLINES
        self.saved_cmdlines = [""] * SAVED_CMDLINES
        self.cmdline_idx = 0
        self.trace_cmdline_lock = threading.Lock()
        self.sched_ref = 0
        self.sched_register_mutex = threading.Lock()
        self.segment = ShmSegment(cmdlines_segment_name(namespace), CMDLINES_LAYOUT.itemsize,
                                  create=True)
        self._published = np.ndarray((), dtype=CMDLINES_LAYOUT, buffer=self.segment.map)
        self._published["map_cmdline_to_pid"] = NO_CMDLINE_MAP
        self._published["magic"] = CMDLINES_MAGIC

    def destroy(self) -> None:
        self.segment.unlink()

    # -- recording ---------------------------------------------------------------------
    def tracing_start_cmdline_record(self) -> None:
        """``tracing_start_cmdline_record()``: the first user registers the probe."""
        with self.sched_register_mutex:
            self.sched_ref += 1

    def tracing_stop_cmdline_record(self) -> None:
        """``tracing_stop_cmdline_record()``: the last user unregisters it."""
        with self.sched_register_mutex:
            self.sched_ref -= 1

    def saved(self, pid: int, comm: str) -> bool:
        """Whether ``pid`` is saved with this comm already: the caller's cheap test."""
        idx = self.map_pid_to_cmdline.get(pid)
        return idx is not None and self.saved_cmdlines[idx] == comm

    def tracing_record_cmdline(self, pid: int, comm: str) -> None:
        """``probe_sched_switch()``'s ``tracing_record_cmdline()`` for a task, if the probe
        is registered (``sched_ref``), ``tracer_enabled`` (``tracing_enabled``) is set and
        ``tracing_is_on()`` (false also while ``trace`` is open for reading:
        ``tracing_stop()``)."""
        if (self.sched_ref and self.tracing_is_enabled() and self.tracing_is_on()
                and not self.saved(pid, comm)):
            self.trace_save_cmdline(pid, comm)

    def trace_save_cmdline(self, pid: int, comm: str) -> None:
        """``trace_save_cmdline()``: pid 0 and pids above PID_MAX_DEFAULT are not saved; a
        new pid takes the next slot round the table (the first is slot 1), evicting its
        pid; a busy lock skips the save ("better luck next time")."""
        if not pid or pid > PID_MAX_DEFAULT:
            return
        if not self.trace_cmdline_lock.acquire(blocking=False):
            return
        try:
            published = self._published
            published["sequence"] += 1
            idx = self.map_pid_to_cmdline.get(pid)
            if idx is None:
                idx = (self.cmdline_idx + 1) % SAVED_CMDLINES
                old = self.map_cmdline_to_pid[idx]
                if old is not None:
                    del self.map_pid_to_cmdline[old]
                self.map_cmdline_to_pid[idx] = pid
                self.map_pid_to_cmdline[pid] = idx
                self.cmdline_idx = idx
                published["map_cmdline_to_pid"][idx] = pid
            self.saved_cmdlines[idx] = comm
            published["saved_cmdlines"][idx] = comm.encode("utf-8", "replace")[:TASK_COMM_LEN]
            published["sequence"] += 1
        finally:
            self.trace_cmdline_lock.release()

    # -- reading -----------------------------------------------------------------------
    def trace_find_cmdline_table(self) -> dict[int, str]:
        """What ``trace_find_cmdline()`` would find for every pid, as ``pid -> comm``: one
        copy under ``trace_cmdline_lock`` for a whole print (3.6 takes the lock per line;
        while ``trace`` is open recording is stopped, so the table cannot change between
        its lines anyway)."""
        with self.trace_cmdline_lock:
            comms = self.saved_cmdlines
            return {pid: comms[idx] for pid, idx in self.map_pid_to_cmdline.items()}

    def tracing_saved_cmdlines_read(self) -> str:
        """``"%d %s\\n"`` for each slot that holds a pid, in slot order."""
        with self.trace_cmdline_lock:
            return "".join(f"{pid} {self.saved_cmdlines[idx]}\n"
                           for idx, pid in enumerate(self.map_cmdline_to_pid)
                           if pid is not None)


class SavedCmdlinesReader:
    """The published table, read from another process: the reader side of the sequence
    count (a copy is kept only if no save was being written and none happened meanwhile).
    Mapped read-only, never unlinked."""

    def __init__(self, namespace: str) -> None:
        self.segment = ShmSegment(cmdlines_segment_name(namespace))
        if self.segment.size < CMDLINES_LAYOUT.itemsize:
            raise ValueError(f"{self.segment.name} is not an ftrace-sim cmdline table")
        self._published = np.ndarray((), dtype=CMDLINES_LAYOUT, buffer=self.segment.map)
        if int(self._published["magic"]) != CMDLINES_MAGIC:
            raise ValueError(f"{self.segment.name} is not an ftrace-sim cmdline table")

    def trace_find_cmdline_table(self, timeout: float = 5.0) -> dict[int, str]:
        """``pid -> comm`` for every saved pid, from one consistent copy."""
        deadline = time.monotonic() + timeout
        while True:
            sequence = int(self._published["sequence"])
            if not sequence & 1:
                copy = self._published.copy()
                if int(self._published["sequence"]) == sequence:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("saved_cmdlines kept changing; no consistent copy")
            os.sched_yield()
        return {int(pid): comm.decode("utf-8", "replace")
                for pid, comm in zip(copy["map_cmdline_to_pid"].tolist(),
                                     copy["saved_cmdlines"].tolist())
                if pid != NO_CMDLINE_MAP}
