"""What ftrace-stress tells its user, where a wrong answer would go unnoticed: the
observers' verdicts on a real daemon (an anomaly that is none, a report that is lost),
the outcome and exit status table, and the reproducer search's delta debugging.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import grpc
import numpy as np
import pytest

from clients.stress.checker import Anomaly, Checker, snapshot_anomalies
from clients.stress.config import BootSpec, RunConfig
from clients.stress.history import Op
from clients.stress.minimize import Target, ddmin, took_effect
from clients.stress.report import OpsTally, RunResult, WorkerRecord
from clients.stress.workers import EXIT_DAEMON_GONE, EXIT_REBOOTED
from ftrace.v1 import kernel_pb2
from kernel_daemon.ftrace.ops import FTRACE_OPS_FL_ENABLED, FTRACE_OPS_FL_GLOBAL
from kernel_daemon.ftrace.records import FTRACE_FL_ENABLED, patch_mismatches
from kernel_daemon.ftrace.snapshot import GroupSnapshot, RecordsReader, RecordsSnapshot
from tests.daemon_fixture import spawn  # noqa: F401  (a fixture)
from tests.test_race_interleavings import ShellProcess, interleave

T = "/sys/kernel/debug/tracing/"
CORE = ["--core-functions", "2048"]
MS = 1_000_000
WARN = "WARNING: at kernel/trace/ftrace.c:1529 __ftrace_hash_rec_update+0x1e3/0x230()"


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


def test_the_reproducer_is_sought_for_a_warning_before_a_kasan_report():
    """The target is the strongest anomaly: a WARN, then a KASAN report, then the first
    of the others, whatever came first."""
    kasan = Anomaly("dmesg", "KASAN", "BUG: KASAN: use-after-free in __ftrace_hash_rec_update",
                    2 * MS, 2 * MS, module="uinput")
    leak = Anomaly("consistency", "leaked reference", "leaked reference: ...", 1 * MS, 1 * MS,
                   module="loop")
    warned = Anomaly("dmesg", "WARNING", WARN, 3 * MS, 3 * MS)
    assert Target.of([leak, kasan, warned]).kind == "WARNING"
    assert Target.of([leak, kasan]).kind == "KASAN"


# --- the outcome and exit status table (report.RunResult) ------------------------------


@pytest.mark.parametrize("error, found, stalled, before, status, outcome", [
    ("", False, "", False, 0, "clean"),
    # A client died on its way (killed, or its own error): not the run asked for either.
    ("", False, "lost", False, 5, "incomplete"),
    ("", False, "crashed", True, 5, "incomplete"),
    ("", True, "lost", False, 1, "anomaly"),
    ("", False, "stalled+lost", False, 4, "stalled"),
    # Its daemon gone under it: when the run's error says so, the worker is not lost;
    # when the daemon served the run on (the worker's failure was not the kernel's), it is.
    ("the daemon stopped answering", False, "daemon gone", False, 2, "error"),
    ("", False, "daemon gone", False, 5, "incomplete"),
    # Its kernel rebooted, and no reboot seen by the run's checks: lost too.
    ("", False, "rebooted", False, 5, "incomplete"),
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
    other = WorkerRecord("shell1", "shell", 101, status=0)
    if stalled == "paused_at":
        worker.paused_at = "ftrace_update_code:before_count"
    elif stalled in ("lost", "stalled+lost"):
        other.status = -9
        worker.stalled = stalled == "stalled+lost"
    elif stalled == "crashed":
        other.status = 1
    elif stalled == "daemon gone":
        other.status = EXIT_DAEMON_GONE
    elif stalled == "rebooted":
        other.status = EXIT_REBOOTED
    elif stalled:
        setattr(worker, stalled, True)
    result.workers = [worker, other]
    assert (result.exit_status, result.outcome) == (status, outcome)


def test_an_operation_that_ended_while_an_anomaly_was_observed_was_in_flight_not_before():
    """Around an anomaly observed from 10 to 20 ms, the report lists as "completed just
    before" only what completed before 10 ms; one that completed at 15 ms was in flight."""
    def write(n: int, invoked: int, completed: int) -> Op:
        return Op(f"shell0#{n}", "shell0", "shell", 1001, "write",
                  {"file": "set_ftrace_filter", "text": "vfs_read", "append": False},
                  invoked * MS, float(invoked), completed * MS, float(completed), "ok")
    seen = Anomaly("consistency", "missing reference", "missing reference: ...", 10 * MS,
                   20 * MS)
    tally = OpsTally(30 * MS, [seen])
    early, during = write(1, 1, 5), write(2, 8, 15)
    for op in (early, during):
        tally.add(op)
    assert tally.around(seen) == ([during], [early])


def test_one_reference_more_than_the_enabled_ops_is_a_leaked_reference():
    """The shared-memory check's upper bound is the number of counted ops (each ops on
    ftrace_ops_list, global_ops among them, not the GLOBAL ones whose hashes are
    global_ops'): a record one above it holds a reference no ops owns. Here two counted
    ops, a third GLOBAL one not counted: the record at 3 is the one anomaly."""
    ops = [kernel_pb2.OpsInfo(name="global_ops", flags=FTRACE_OPS_FL_ENABLED, enabled=True,
                              filter_count=1),
           kernel_pb2.OpsInfo(name="trace_ops", flags=FTRACE_OPS_FL_GLOBAL, enabled=True),
           kernel_pb2.OpsInfo(name="mine", enabled=True, filter_count=1)]
    listed = kernel_pb2.ListOpsResponse(ops=ops, ftrace_enabled=True, ftrace_start_up=2)
    counts = np.array([0, 1, 2, 3, 2], dtype=np.uint64)
    ips = np.arange(5, dtype=np.uint64) * np.uint64(16) + np.uint64(0xFFFFFFFFA0000000)
    flags = counts | np.where(counts > 0, np.uint64(FTRACE_FL_ENABLED), np.uint64(0))
    snap = RecordsSnapshot(7, (GroupSnapshot(3, "uinput", 0xFFFFFFFFA0000000, ips, flags),),
                           False)
    anomalies = snapshot_anomalies(snap, listed, 1 * MS, 2 * MS)
    assert [a.kind for a in anomalies] == ["leaked reference"]
    [leak] = anomalies
    assert (leak.source, leak.kind, leak.module, leak.records, leak.ops) == (
        "shm", "leaked reference", "uinput", 1, ["global_ops", "mine"])
    assert leak.message == ("leaked reference: record 0xffffffffa0000030 of uinput has count 3, "
                            "patched True; expected at most 2 (enabled ops: global_ops, mine)")


# --- the observers, on a real daemon (checker.Checker) ---------------------------------


def snapshot_checked(checker: Checker) -> bool:
    """One conclusive shared-memory snapshot check (a quiet kernel gives one at once)."""
    return any(checker.check_snapshot() for _ in range(50))


def test_a_notrace_only_ops_is_not_expected_on_the_functions_it_leaves_out(spawn):
    """The function tracer with set_ftrace_notrace naming one function and no filter:
    global_ops traces every record but that one, whose count is 0. The shared-memory
    check's lower bound counts only the ops that trace every function; counting one
    whose notrace hash is not empty made a missing reference of a fixed kernel."""
    daemon = spawn(CORE)
    anomalies: list[Anomaly] = []
    checker = Checker(daemon.address, 60.0, anomalies.append, lambda why: None)
    try:
        with daemon.connect() as client:
            function = client.read_file(T + "available_filter_functions").split()[0].decode()
            client.write_file(T + "set_ftrace_notrace", f"{function}\n")
            client.write_file(T + "current_tracer", "function\n")
            checker.reader = RecordsReader(client.stats().shm_namespace)
            assert snapshot_checked(checker)
            assert client.check_consistency().ok
        assert anomalies == []
        assert (checker.counts["shm tracing"], checker.counts["shm nonzero"]) == (1, 1)
    finally:
        checker.close()


def test_two_different_warnings_are_two_anomalies_and_one_again_is_not_new(spawn):
    """tracing_enabled's WARNING (trace.c:2969), then ftrace_bug()'s (ftrace.c:1578): a
    log report is known by its message, so both are the run's anomalies; the first
    printed again is not a new one. (Known by function, as a count error is, every
    report has none, and the second WARN of any run was dropped.)"""
    daemon = spawn(CORE + ["--failpoint", "add_breakpoints=1*error(EFAULT)"])
    anomalies: list[Anomaly] = []
    checker = Checker(daemon.address, 60.0, anomalies.append, lambda why: None)
    try:
        checker.baseline()
        assert checker.before == []
        with daemon.connect() as client:
            client.write_file(T + "tracing_enabled", "0\n")
            client.write_file(T + "current_tracer", "function\n")
            assert client.stats().ftrace_disabled
        checker.final_check()
        warnings = [a for a in anomalies if a.source == "dmesg"]
        assert [(a.kind, a.message.split()[2]) for a in warnings] == [
            ("WARNING", "kernel/trace/trace.c:2969"), ("WARNING", "kernel/trace/ftrace.c:1578")]
        checker.dmesg_line(warnings[0].detail[0])
        assert [a for a in anomalies if a.source == "dmesg"] == warnings
    finally:
        checker.close()


def test_a_kasan_report_names_the_module_whose_record_page_was_freed(spawn):
    """unload-unlocked's interleaving (forced): the hash walk reads uinput's freed record
    page. The report's module is the one its "record page of module" line names: the
    module the reproducer search cuts its candidates down to."""
    daemon = spawn(CORE + ["--race", "unload-unlocked"])
    site = "__ftrace_hash_rec_update:next_page"
    with daemon.connect() as client:
        client.load("uinput")
        client.set_failpoint(site, "1*pause")
        interleave(client, daemon.address, site, "echo function > current_tracer",
                   "rmmod uinput", race=True)
    checker = Checker(daemon.address, 60.0, lambda anomaly: None, lambda why: None)
    try:
        checker.baseline()
        [kasan] = [a for a in checker.before if a.kind == "KASAN"]
        assert kasan.message.startswith("BUG: KASAN: use-after-free in __ftrace_hash_rec_update")
        assert kasan.module == "uinput", kasan.detail
    finally:
        checker.close()


class _StatsAskedLate:
    """``kernel.Stats`` whose ``future`` asks when its answer is first waited for."""

    def __init__(self, stats: grpc.UnaryUnaryMultiCallable) -> None:
        self._stats = stats

    def __call__(self, request: kernel_pb2.StatsRequest, **kwargs: object) -> object:
        return self._stats(request, **kwargs)

    def future(self, request: kernel_pb2.StatsRequest) -> _AskedWhenAwaited:
        return _AskedWhenAwaited(lambda: self._stats.future(request))


class _AskedWhenAwaited:
    """A call's future that asks when its answer is first waited for."""

    def __init__(self, ask: Callable[[], grpc.Future]) -> None:
        self._ask = ask
        self._call: grpc.Future | None = None

    def _asked(self) -> grpc.Future:
        if self._call is None:
            self._call = self._ask()
        return self._call

    def result(self, timeout: float | None = None) -> object:
        return self._asked().result(timeout)

    def exception(self, timeout: float | None = None) -> object:
        return self._asked().exception(timeout)

    def cancel(self) -> bool:
        return self._asked().cancel()


def test_a_snapshot_judges_the_records_by_the_state_read_with_its_ops(spawn):
    """S's interleaving, forced: the snapshot's ListOps answers before an update begins,
    its Stats (which reads the globals without ftrace_lock) from inside it. Here the
    update is ``echo 1 > ftrace_enabled`` with the function tracer counted but not
    patched (started with the sysctl 0): ftrace_enabled is 1 from the sysctl's first
    line, while the records are patched only by the update it runs, held at its first
    pass (add_breakpoints, ftrace_lock held, no record written yet). Judged by Stats'
    ftrace_enabled the quiet records were a patch mismatch on a fixed kernel; judged by
    ListOps' own, read with the ops under the lock, they are as that state leaves
    them."""
    site = "add_breakpoints"
    daemon = spawn(CORE)
    anomalies: list[Anomaly] = []
    checker = Checker(daemon.address, 60.0, anomalies.append, lambda why: None)
    with daemon.connect() as client:
        client.write_file("/proc/sys/kernel/ftrace_enabled", "0\n")
        client.write_file(T + "current_tracer", "function\n")
        checker.reader = RecordsReader(client.stats().shm_namespace)
        real = checker.client.connection.kernel
        sysctl: list[ShellProcess] = []

        def list_ops_then_update(request: kernel_pb2.ListOpsRequest) -> grpc.Future:
            answer = real.ListOps.future(request)
            answer.result()
            client.set_failpoint(site, "1*pause")
            sysctl.append(ShellProcess(daemon.address,
                                       "echo 1 > /proc/sys/kernel/ftrace_enabled"))
            client.wait_failpoint(site, 1, timeout=30)
            return answer

        checker.client.connection.kernel = SimpleNamespace(
            ListOps=SimpleNamespace(future=list_ops_then_update),
            Stats=_StatsAskedLate(real.Stats))
        try:
            assert checker.check_snapshot()
            assert client.stats().ftrace_enabled  # Stats answered from inside the update
        finally:
            checker.client.connection.kernel = real
            client.release_failpoint(site)
            for shell in sysctl:
                shell.finish()
            checker.close()
        assert client.check_consistency().ok
    assert anomalies == []
    assert checker.counts["shm"] == 1


def test_records_a_load_patched_with_ftrace_enabled_0_are_no_patch_mismatch(spawn):
    """With the sysctl 0 and the function tracer started, a load patches its records by
    count (3.6's ``if (ftrace_start_up && cnt)``); the tracer's end lowers their counts
    to 0 and no update runs (ftrace_enabled 0), nor does the sysctl's turning on with
    nothing started: loop's 64 records stay patched, count 0, until the next start
    patches from the counts. The model's check (under ftrace_lock) and the checker's
    snapshot judge each state by one rule; both called some a patch mismatch."""
    daemon = spawn(CORE)
    anomalies: list[Anomaly] = []
    checker = Checker(daemon.address, 60.0, anomalies.append, lambda why: None)
    sysctl = "/proc/sys/kernel/ftrace_enabled"
    try:
        with daemon.connect() as client:
            checker.reader = RecordsReader(client.stats().shm_namespace)
            steps = [(sysctl, "0"), (T + "current_tracer", "function"), None,
                     (T + "current_tracer", "nop"), (sysctl, "1"),
                     (T + "current_tracer", "function")]
            for step in steps:
                if step is None:
                    client.load("loop")
                else:
                    client.write_file(step[0], f"{step[1]}\n")
                assert client.check_consistency().ok, step
                assert snapshot_checked(checker), step
            [loop] = [g for g in checker.reader.snapshot(timeout=1.0).groups
                      if g.module == "loop"]
            assert loop.enabled.all() and loop.counts.all()
        assert anomalies == []
        assert checker.counts["shm"] == len(steps)
    finally:
        checker.close()


@pytest.mark.parametrize("module, start_up, enabled, bad", [
    # Patched exactly when counted while the sysctl is on and tracing started...
    (False, 1, True, [False, True, True, False]),
    (True, 1, True, [False, True, True, False]),
    # ...else never for the core kernel, whatever its count...
    (False, 0, True, [False, False, True, True]),
    (False, 1, False, [False, False, True, True]),
    # ...and either way for a module's (its load patched it by count).
    (True, 0, True, [False, False, False, False]),
    (True, 1, False, [False, False, False, False]),
])
def test_the_patch_rule(module, start_up, enabled, bad):
    """records.patch_mismatches over the four (count, patched) pairs: (0, no), (1, no),
    (0, yes), (1, yes)."""
    counts = np.array([0, 1, 0, 1], dtype=np.uint64)
    patched = np.array([False, False, True, True])
    assert patch_mismatches(counts, patched, module, start_up, enabled).tolist() == bad


def test_an_operation_invoked_as_its_client_left_is_not_one_of_the_runs():
    """OpsTally: of two unregisters invoked before the stop, the one after its tracer's
    "closing" event (Op.closing) is counted in all but not in the run; one invoked after
    the stop is not the run's either."""
    def unregister(n: int, invoked: int, closing: bool = False) -> Op:
        return Op(f"tracer0#{n}", "tracer0", "tracer", 1000, "unregister", {},
                  invoked * MS, float(invoked), invoked * MS + 1, float(invoked), "ok",
                  closing=closing)

    tally = OpsTally(stop_ns=10 * MS)
    for op in (unregister(1, 1), unregister(2, 2, closing=True), unregister(3, 11)):
        tally.add(op)
    assert (tally.total, tally.completed, tally.in_run) == (3, 3, 1)
    assert (tally.by_kind["tracer unregister"]["count"],
            tally.by_kind["tracer unregister"]["in_run"]) == (3, 1)
