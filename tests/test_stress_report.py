"""What ftrace-stress says of what it saw: anomalies seen after ftrace_kill(), and the
reproducer's note on the teardown it added. No daemon: the checks' answers are made here."""

from __future__ import annotations

from clients.stress.checker import Anomaly, consistency_anomalies, dmesg_kind
from clients.stress.config import BootSpec, RunConfig
from clients.stress.history import Op
from clients.stress.minimize import Line, Minimizer, Target
from clients.stress.replay import Observation, call_trace
from clients.stress.report import AFTER_KILL, RunResult, WorkerRecord, to_json, to_text
from ftrace.v1 import kernel_pb2

WARN = "WARNING: at kernel/trace/ftrace.c:1529 __ftrace_hash_rec_update+0x1e3/0x230()"
LEAK = ("leaked reference: lo_open [loop] at 0xffffffffa0001000: count 2, expected 1 "
        "(ops: global_ops), patched")
MS = 1_000_000


def trace(*frames: str) -> list[str]:
    """A WARN's report as dmesg prints it, through ``frames`` (callers, innermost first)."""
    return [f"[    8.966689] {WARN}", "[    8.966689] Call Trace:",
            *(f"[    8.966689]  [<ffffffff810c2df4>] {name}+0x24/0x30"
              for name in ("warn_slowpath_common", "warn_slowpath_null",
                           "__ftrace_hash_rec_update", *frames)),
            "[    8.966689] ---[ end trace 322633dc1444389f ]---"]


def check(disabled: bool) -> kernel_pb2.ConsistencyReport:
    return kernel_pb2.ConsistencyReport(ftrace_disabled=disabled, anomalies=[kernel_pb2.Anomaly(
        kind=kernel_pb2.ANOMALY_KIND_LEAKED_REFERENCE, module="loop", function="lo_open",
        message=LEAK)])


def test_an_anomaly_a_check_saw_after_ftrace_kill_is_marked_so(tmp_path):
    """The WARN killed ftrace mid-disable; the check after it finds the counts the aborted
    pass left (a buggy run, seed 7: a leaked reference on 34 loop records, reported as
    a second anomaly with nothing to tell it from one of its own)."""
    [live] = consistency_anomalies(check(False), 1 * MS, 2 * MS)
    assert not live.after_ftrace_kill
    [leak] = consistency_anomalies(check(True), 5 * MS, 6 * MS)
    assert leak.after_ftrace_kill
    warned = Anomaly("dmesg", "WARNING", WARN, 4 * MS, 4 * MS, detail=trace("ftrace_shutdown"))
    result = RunResult(RunConfig(seed=7, out_dir=str(tmp_path),
                                 boot=BootSpec((("--variant", "buggy"),))), ["ftrace-stress"])
    result.start_ns, result.stop_ns, result.start_wall = 0, 10 * MS, 1.0
    result.anomalies = [warned, leak]
    report = to_json(result)
    assert [a["after_ftrace_kill"] for a in report["anomalies"]] == [False, True]
    text = to_text(report, result)
    assert f" 2. 0.006000 s [consistency] {LEAK} (after ftrace_kill())\n    {AFTER_KILL}\n" \
        in text, text
    assert f" 1. 0.004000 s [dmesg] {WARN}\n" in text, text


def test_the_module_a_warn_is_minimized_on_is_one_seen_before_ftrace_kill():
    """The WARN names no module: that of the missing reference it came from, not that of
    the fallout seen after it, though a missing reference too."""
    cause = Anomaly("consistency", "leaked reference", "leaked reference: ...", 1 * MS, 1 * MS,
                    module="dummy")
    fallout = Anomaly("consistency", "missing reference", "missing reference: ...", 5 * MS,
                      5 * MS, module="loop", after_ftrace_kill=True)
    warned = Anomaly("dmesg", "WARNING", WARN, 4 * MS, 4 * MS)
    assert Target.of([cause, warned, fallout]).module == "dummy"


def test_the_note_on_the_teardown_a_script_ends_with_says_what_it_does(tmp_path):
    """The search added the run's teardown as the script's last line: the note says so,
    and that its WARN came through ftrace_shutdown where the run's came through
    ftrace_regex_release (it said the teardown "after" the script made the kernel WARN,
    of a script that ended with it, and nothing of the two paths)."""
    warned = Anomaly("dmesg", "WARNING", WARN, 4 * MS, 4 * MS,
                     detail=trace("ftrace_hash_move", "ftrace_regex_release", "__fput"))
    minimizer = Minimizer(BootSpec((("--variant", "buggy"),)), [], [warned], {},
                          str(tmp_path), 0, max_replays=0)
    teardown = Op("teardown#1", "teardown", "teardown", 999, "write",
                  {"file": "current_tracer", "text": "nop", "append": False}, 9 * MS, 9.0,
                  10 * MS, 10.0, "ok", None, None, [9 * MS])
    shutdown = trace("ftrace_shutdown", "unregister_ftrace_function", "function_trace_reset")
    seen = Observation(reports=[WARN], kinds={("dmesg", "WARNING"): 3},
                       traces={WARN: call_trace(shutdown[1:])})
    note = minimizer._teardown_note([Line("echo nop > current_tracer", teardown)], seen)
    assert note == (
        "cut down, the script left the missing reference, not the WARN; its last line, "
        "the run's teardown (echo nop > current_tracer), added by the search, makes the "
        "kernel WARN through ftrace_shutdown <- unregister_ftrace_function, where the "
        "run's WARN came through ftrace_hash_move <- ftrace_regex_release")


def test_a_check_whose_list_was_cut_counts_the_anomalies_left_out():
    """CheckConsistency lists the first anomalies only when they would not fit a default
    client: those left out (anomaly_count) are said, not lost; with none listed at all,
    the count alone is the anomaly."""
    listed = [kernel_pb2.Anomaly(kind=kernel_pb2.ANOMALY_KIND_MISSING_REFERENCE, module="dummy",
                                 function=f"f{i}", message=f"missing reference: f{i}")
              for i in range(3)]
    report = kernel_pb2.ConsistencyReport(anomalies=listed, anomaly_count=20003,
                                          anomalies_truncated=True)
    [anomaly] = consistency_anomalies(report, 1, 2)
    assert (anomaly.kind, anomaly.module, anomaly.records) == ("missing reference", "dummy", 3)
    assert anomaly.detail[-1] == ("... and 20000 more anomalies the check found but did not "
                                  "list (20003 in all; the answer stops short of 4 MiB)")
    [alone] = consistency_anomalies(
        kernel_pb2.ConsistencyReport(anomaly_count=5, anomalies_truncated=True), 1, 2)
    assert (alone.source, alone.kind, alone.records) == ("consistency", "anomaly", 5)
    assert alone.message.startswith("5 anomalies the check found but did not list")
    assert consistency_anomalies(kernel_pb2.ConsistencyReport(
        anomalies=listed, anomaly_count=3), 1, 2)[0].detail == [a.message for a in listed]


def test_a_run_that_found_an_anomaly_exits_1_though_a_client_also_stalled(tmp_path):
    """Exit status 4 (stalled) says the run found nothing but was not the run asked for;
    an anomaly found outranks it: 1, the outcome "anomaly"."""
    result = RunResult(RunConfig(seed=7, out_dir=str(tmp_path), boot=BootSpec(())),
                       ["ftrace-stress"])
    result.workers = [WorkerRecord("filter-0", "filter", 100, status=0, stalled=True)]
    assert (result.exit_status, result.outcome) == (4, "stalled")
    result.anomalies = [Anomaly("dmesg", "WARNING", WARN, 4 * MS, 4 * MS)]
    assert (result.exit_status, result.outcome) == (1, "anomaly")


def test_a_bug_report_is_kasan_only_when_kasan_says_so():
    """dmesg's "BUG: KASAN: ..." is KASAN's report; any other "BUG:" (an oops) is a BUG."""
    assert dmesg_kind("BUG: KASAN: use-after-free in __ftrace_hash_rec_update") == "KASAN"
    assert dmesg_kind("BUG: unable to handle kernel NULL pointer dereference at "
                      "0000000000000008") == "BUG"
    assert dmesg_kind(WARN) == "WARNING"
