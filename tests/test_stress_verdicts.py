"""What ftrace-stress tells its user, where a wrong answer would go unnoticed: the
observers' verdicts on a real daemon (an anomaly that is none, a report that is lost),
the outcome and exit status table, and the reproducer search's delta debugging.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from clients.stress.checker import Anomaly
from clients.stress.config import BootSpec, RunConfig
from clients.stress.history import Op
from clients.stress.minimize import ddmin, took_effect
from clients.stress.report import RunResult, WorkerRecord

MS = 1_000_000
WARN = "WARNING: at kernel/trace/ftrace.c:1529 __ftrace_hash_rec_update+0xf4/0x230()"


# --- delta debugging (minimize.ddmin) --------------------------------------------------


def counting(needed: set[int]) -> tuple[Callable[[list[int]], bool],
                                        list[tuple[int, ...]]]:
    """A test that passes when every ``needed`` item is kept, and the lists it was asked
    about (an endless search fails instead of hanging the test)."""
    asked: list[tuple[int, ...]] = []

    def test(items: list[int]) -> bool:
        asked.append(tuple(items))
        assert len(asked) < 10_000, "ddmin does not end"
        return needed <= set(items)
    return test, asked


def test_ddmin_ends_when_every_command_of_a_long_list_is_needed():
    """More commands than ddmin removes one at a time (ONE_BY_ONE), none removable: at one
    command a chunk it cannot split finer and must stop. It went round again, asking
    the same lists, which the minimizer answers from its replay cache and no replay
    budget counts: ftrace-stress hung after the run."""
    test, _ = counting(set(range(17)))
    assert ddmin(list(range(17)), test, lambda: True) == list(range(17))


def test_ddmin_removes_chunks_by_their_complements():
    """Forty commands, two needed: the complement of each chunk is tried, so most
    commands go a chunk at a time (28 tests). Tried alone, the chunks never hold both
    (144 tests, each a replay on a fresh daemon)."""
    test, asked = counting({3, 27})
    assert ddmin(list(range(40)), test, lambda: True) == [3, 27]
    assert len(set(asked)) <= 30, len(set(asked))


def test_a_write_refused_with_enodev_changed_no_filter():
    """After ftrace_kill() every filter write fails with ENODEV at its open: no hash was
    installed, so the operation is no candidate for an interleaving. A write refused
    otherwise (EINVAL) still installed its hash at the release."""
    def write(result: str, errno: str | None, file: str = "set_ftrace_filter") -> Op:
        return Op("shell0#1", "shell0", "shell", 1001, "write",
                  {"file": file, "text": "vfs_read", "append": False}, 1 * MS, 1.0,
                  2 * MS, 2.0, result, errno)
    assert not took_effect(write("error", "ENODEV"))
    assert not took_effect(write("error", "ENODEV", "set_ftrace_notrace"))
    assert took_effect(write("error", "EINVAL"))
    assert not took_effect(write("error", "EINVAL", "current_tracer"))
    assert took_effect(write("ok", None))


# --- the outcome and exit status table (report.RunResult) ------------------------------


@pytest.mark.parametrize("error, found, stalled, before, status, outcome", [
    ("", False, "", False, 0, "clean"),
    ("", True, "", False, 1, "anomaly"),
    # The daemon went away: the run is not the run asked for, whatever it found first.
    ("the daemon stopped answering", True, "", False, 2, "error"),
    ("", False, "stalled", False, 4, "stalled"),
    ("", False, "paused_at", False, 4, "stalled"),
    ("", False, "killed_at_stop", False, 4, "stalled"),
    ("", False, "", True, 3, "tainted"),
    # A run cut short by a stuck client says so before it says the kernel was tainted.
    ("", False, "stalled", True, 4, "stalled"),
    ("", True, "stalled", True, 1, "anomaly"),
])
def test_the_outcome_and_exit_status_of_each_verdict(tmp_path, error, found, stalled, before,
                                                     status, outcome):
    result = RunResult(RunConfig(seed=7, out_dir=str(tmp_path), boot=BootSpec(())),
                       ["ftrace-stress"])
    result.error = error
    if found:
        result.anomalies = [Anomaly("dmesg", "WARNING", WARN, 4 * MS, 4 * MS)]
    if before:
        result.before_run = [Anomaly("dmesg", "WARNING", WARN, 0, 0, phase="before")]
    worker = WorkerRecord("shell0", "shell", 100, status=0)
    if stalled == "paused_at":
        worker.paused_at = "ftrace_update_code:before_count"
    elif stalled:
        setattr(worker, stalled, True)
    result.workers = [worker]
    assert (result.exit_status, result.outcome) == (status, outcome)
