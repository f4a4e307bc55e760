"""``report.json`` and ``report.txt``: what ran, how fast, what went wrong, and how to see
it again.

Times are seconds since the run started (the first worker's start). For each anomaly the
report lists the operations in flight while the anomaly was observed (invoked before the
observation ended and not completed before it began) and the last ones completed before.
"""

from __future__ import annotations

import heapq
import json
import os
import shlex
import signal
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from clients.stress.checker import FTRACE_DISABLED, HOLD_MAX, Anomaly, Reboot
from clients.stress.commands import op_commands
from clients.stress.config import RunConfig
from clients.stress.cpu import cpu_per_operation
from clients.stress.history import ClientLog, Op
from clients.stress.minimize import Reproducer, interleaving_steps
from clients.stress.workers import EXIT_DAEMON_GONE, EXIT_REBOOTED

#: Operations listed as "just before" an anomaly.
RECENT_OPS = 6
#: Operations listed as in flight, at most.
IN_FLIGHT_OPS = 16
#: The run's outcome by its exit status (``--help`` says what each means).
OUTCOMES = {0: "clean", 1: "anomaly", 2: "error", 3: "tainted", 4: "stalled", 5: "incomplete"}


@dataclass
class WorkerRecord:
    """One worker process and how it ended."""

    name: str
    kind: str
    pid: int
    status: int | None = None  # exit status; negative: killed by that signal
    exited_ns: int | None = None
    stopped: bool = False  # it had been told to stop (or had done its operations)
    killed_at_stop: bool = False  # it did not stop in time and was killed
    stalled: bool = False  # it made no progress for the stall timeout, which ended the run
    # The failpoint its call was held at (a ``pause``) when the run stopped, and released.
    paused_at: str = ""
    cpu_s: float | None = None  # CPU seconds from the go to its end event or the stop
    # Reaped while the clients ran: whether another client was still running then (the
    # run went on), or none was (its exit ended the run); None: reaped at the stop.
    others_running: bool | None = None

    def how(self, exited_s: float | None) -> str:
        """How it ended, ``exited_s`` seconds into the run."""
        if self.status is None:
            return "still running"
        if self.paused_at:
            return (f"held at the failpoint {self.paused_at} (pause), which nothing released:"
                    f" the run released it at the stop; " + (
                        "did not stop in time, killed" if self.killed_at_stop else "then stopped"))
        if self.stalled:
            return "made no progress, so the run ended; " + (
                "did not stop in time, killed" if self.killed_at_stop else "then stopped")
        if self.killed_at_stop:
            return "did not stop in time, killed"
        if self.status == 0:
            return "stopped"
        if self.status == EXIT_DAEMON_GONE:
            return f"lost the daemon at {exited_s:.3f} s"
        if self.status == EXIT_REBOOTED:
            return f"its kernel rebooted: stopped at {exited_s:.3f} s"
        if self.status < 0:
            how = f"killed by {signal.Signals(-self.status).name} at {exited_s:.3f} s"
        else:
            how = (f"exited with status {self.status} at {exited_s:.3f} s "
                   f"(see clients/{self.name}.log)")
        if self.others_running is None or self.stopped:
            return how
        return how + (" (the run went on without it)" if self.others_running
                      else " (no client was left, which ended the run)")


class OpsTally:
    """What the report says of the history, gathered one operation at a time as
    history.merge() streams it: the counts, the table by kind, and around each anomaly
    the operations listed with it. No list of every operation: for a run of millions of
    them the tally holds a few hundred (what the minimizer is handed is the runner's)."""

    def __init__(self, stop_ns: int = 0, anomalies: Sequence[Anomaly] = ()) -> None:
        """``stop_ns``: when the clients were told to stop; an operation invoked before
        it is one of the run's (its duration, rates and CPU figures are all over the go
        to the stop: the teardown, and what a client began before it heard the stop,
        come after), unless its client invoked it as it left (``Op.closing``: a tracer's
        unregister of the ops it still had, which a run of ``--ops`` makes before its
        stop, as its clients stop on their own)."""
        self.stop_ns = stop_ns
        self.total = 0
        self.completed = 0
        self.in_run = 0
        self.in_run_by_client: Counter[str] = Counter()  # each client's share of in_run
        self.first_invoke_ns: int | None = None
        self.by_kind: dict[str, dict[str, Any]] = {}
        # Each anomaly's window -> (the last in flight, a min-heap of the last completed
        # before it as (complete_ns, arrival, op): the latest RECENT_OPS, ties in the
        # order the operations came, as a stable sort of them all would keep).
        self._windows: dict[tuple[int, int], tuple[deque[Op], list[tuple[int, int, Op]]]] = {
            (a.seen_from_ns, a.seen_to_ns): (deque(maxlen=IN_FLIGHT_OPS), [])
            for a in anomalies}

    def add(self, op: Op) -> None:
        """The next operation, in invocation order."""
        self.total += 1
        self.completed += op.completed
        in_run = op.invoke_ns < self.stop_ns and not op.closing
        self.in_run += in_run
        self.in_run_by_client[op.client] += in_run
        if self.first_invoke_ns is None:  # they come in invocation order
            self.first_invoke_ns = op.invoke_ns
        row = self.by_kind.setdefault(op_kind(op), {"count": 0, "in_run": 0, "ok": 0,
                                                    "refused": 0, "no_answer": 0,
                                                    "errnos": Counter()})
        row["count"] += 1
        row["in_run"] += in_run
        if op.ok:
            row["ok"] += 1
        elif op.result == "error":
            row["refused"] += 1
            row["errnos"][op.errno] += 1
        else:
            row["no_answer"] += 1
        for (start, end), (flying, before) in self._windows.items():
            if op.overlaps(start, end):
                flying.append(op)
            if op.complete_ns is not None and op.complete_ns < start:
                item = (op.complete_ns, self.total, op)
                if len(before) < RECENT_OPS:
                    heapq.heappush(before, item)
                else:
                    heapq.heappushpop(before, item)

    def around(self, anomaly: Anomaly) -> tuple[list[Op], list[Op]]:
        """(in flight while it was observed, the last completed before)."""
        flying, before = self._windows.get((anomaly.seen_from_ns, anomaly.seen_to_ns),
                                           (deque(), []))
        return list(flying), [op for _, _, op in sorted(before)]


@dataclass
class RunResult:
    config: RunConfig
    argv: list[str]
    start_ns: int = 0
    start_wall: float | None = None  # when the workers were told to go; None: never
    stop_ns: int = 0  # when the clients were told to stop (or had all ended)
    daemon: dict[str, Any] = field(default_factory=dict)
    anomalies: list[Anomaly] = field(default_factory=list)
    # What the kernel showed before the run started (Checker.baseline): not the run's.
    before_run: list[Anomaly] = field(default_factory=list)
    tally: OpsTally = field(default_factory=OpsTally)  # the history, as the report needs it
    logs: list[ClientLog] = field(default_factory=list)
    workers: list[WorkerRecord] = field(default_factory=list)
    checks: Counter[str] = field(default_factory=Counter)
    consistency_rate: float | None = None  # Checker.consistency_rate
    # CPU seconds from the go to the stop: "ftraced" (when its pid is known: a private
    # daemon, or one on a unix socket), "ftrace-stress" (this process: its checker),
    # and each worker kind's processes together.
    cpu: dict[str, float] = field(default_factory=dict)
    shm_error: str = ""
    error: str = ""  # what made the run fail (exit status 2)
    reboot: Reboot | None = None  # the daemon rebooted under the run (Checker.reboot)
    # When a check of the run first found ftrace killed (Checker.ftrace_killed_ns), and
    # whether that ended the run (nothing before did: Run._on_ftrace_killed).
    ftrace_killed_ns: int | None = None
    ended_at_kill: bool = False
    reproducer: Reproducer | None = None
    reproducer_note: str = ""
    report: dict[str, Any] = field(default_factory=dict)  # report.json, once written

    @property
    def stalled(self) -> list[WorkerRecord]:
        """The workers stuck in a call: one whose lack of progress ended the run, one held
        at a failpoint when it stopped, one that did not stop in time."""
        return [w for w in self.workers if w.stalled or w.paused_at or w.killed_at_stop]

    @property
    def lost(self) -> list[WorkerRecord]:
        """The workers that died on their way (:meth:`is_lost`)."""
        return [w for w in self.workers if self.is_lost(w)]

    def is_lost(self, worker: WorkerRecord) -> bool:
        """It died on its way: killed by a signal the run did not send, or exited with an
        error of its own. One that ended for the daemon gone or its kernel rebooted is
        lost too unless the run's error or reboot says so: a worker takes any failure
        not from the kernel for the daemon gone (a handler's INTERNAL, while the daemon
        still serves the others, too)."""
        if worker.status in (None, 0) or worker.killed_at_stop:
            return False
        if worker.status == EXIT_DAEMON_GONE:
            return not self.error
        if worker.status == EXIT_REBOOTED:
            return self.reboot is None
        return True

    @property
    def exit_status(self) -> int:
        """0 clean; 1 the run found an anomaly; 2 error; 4 stalled: the run found none, but
        a client was stuck in a call (the run is not the run it was asked for); 5
        incomplete: the run found none, but a client died on its way (nor is it); 3
        tainted: the run found none, but the kernel had some before it started (or its
        ftrace was dead already)."""
        if self.error:
            return 2
        if self.anomalies:
            return 1
        if self.stalled:
            return 4
        if self.lost:
            return 5
        return 3 if self.before_run else 0

    @property
    def outcome(self) -> str:
        return OUTCOMES[self.exit_status]

    @property
    def reboot_text(self) -> str:
        """The reboot under the run in one line ("" for none): which boots, when."""
        reboot = self.reboot
        if reboot is None:
            return ""

        def when(ns: int) -> str:
            into = self.seconds_into_run(ns)
            return "before the clients started" if into is None else f"{into:.3f} s into the run"

        booted = "" if reboot.booted_ns is None else f" booted {when(reboot.booted_ns)},"
        return (f"the daemon rebooted during the run (Kernel.Reboot, not the run's): boot "
                f"{reboot.boot_id}, the kernel the run judged, is gone; boot "
                f"{reboot.new_boot_id}{booted} seen {when(reboot.seen_ns)}")

    @property
    def ftrace_disabled_before(self) -> bool:
        """ftrace was killed before the run: the run did not start."""
        return any(anomaly.kind == FTRACE_DISABLED for anomaly in self.before_run)

    def seconds(self, ns: int | None) -> float | None:
        return None if ns is None else round((ns - self.start_ns) / 1e9, 6)

    def seconds_into_run(self, ns: int | None) -> float | None:
        """:meth:`seconds`, or None for a time not known or before the clients started."""
        return None if ns is None or not self.started or ns < self.start_ns else self.seconds(ns)

    @property
    def started(self) -> bool:
        """The workers were told to go (the run failed before, when not)."""
        return self.start_wall is not None

    @property
    def duration(self) -> float:
        return max((self.stop_ns - self.start_ns) / 1e9, 1e-9)

    def per_second(self, count: int) -> float:
        """``count`` operations over the run's duration."""
        return round(count / self.duration, 1)


def op_kind(op: Op) -> str:
    if op.op == "write":
        return f"echo {'>>' if op.args['append'] else '>'} {op.args['file']}"
    return f"tracer {op.op}" if op.kind == "tracer" else op.op


def describe(op: Op) -> str:
    if op.kind == "tracer":
        if op.op == "register":
            return (f"register {op.args['name']} filter={op.args['filter']} "
                    f"notrace={op.args['notrace']}")
        if op.op == "set_filter":
            which = "notrace" if op.args["notrace"] else "filter"
            return (f"{op.args['name']}: set {which} {op.args['text']!r}"
                    f"{' (reset)' if op.args['reset'] else ''}")
        return f"{op.op} {op.args['name']}"
    if op.op == "invoke":
        where = f" [{op.args['module']}]" if op.args["module"] else ""
        return f"invoke {op.args['function']}{where} x{op.args['repeat']}"
    return (op_commands(op) or [op.op])[0]


def outcome_of(op: Op) -> str:
    if op.ok:
        base = op.value.get("base") if op.value else None
        return f"ok at {base}" if base and op.op == "modprobe" else "ok"
    return (op.errno or "?") if op.result == "error" else "no answer"


def op_line(result: RunResult, op: Op) -> str:
    end = result.seconds(op.complete_ns)
    span = f"{result.seconds(op.invoke_ns):.6f}..{'?' if end is None else f'{end:.6f}'}"
    return f"{span} s  {op.client:<9} {describe(op)} -> {outcome_of(op)}"


def per_kind(result: RunResult) -> dict[str, dict[str, Any]]:
    return {kind: {**row, "per_second": result.per_second(row["in_run"]),
                   "errnos": dict(row["errnos"])}
            for kind, row in sorted(result.tally.by_kind.items())}


def worker_json(result: RunResult, worker: WorkerRecord) -> dict[str, Any]:
    log = next((log for log in result.logs if log.client == worker.name), None)
    exited_s = result.seconds(worker.exited_ns)
    return {**asdict(worker), "lost": result.is_lost(worker), "exited_s": exited_s,
            "how": worker.how(exited_s),
            "operations": log.operations if log else 0,
            # Of those, the run's (as the operations' in_run: no closing ones).
            "in_run": result.tally.in_run_by_client[worker.name],
            # Its file ends with its "end" event: nothing was cut short.
            "history_complete": bool(log and log.ended)}


def to_json(result: RunResult) -> dict[str, Any]:
    config = result.config
    anomalies = []
    tally = result.tally
    for anomaly in result.anomalies:
        flying, before = tally.around(anomaly)
        anomalies.append({**asdict(anomaly),
                          "seen_from_s": result.seconds(anomaly.seen_from_ns),
                          "seen_s": result.seconds(anomaly.seen_to_ns),
                          "in_flight": [op_line(result, op) for op in flying],
                          "before": [op_line(result, op) for op in before]})
    first = min((a["seen_s"] for a in anomalies if a["phase"] == "run"), default=None)
    sought = min((a["seen_s"] for a in anomalies
                  if a["phase"] == "run" and config.stops(a["kind"])), default=None)
    repro = result.reproducer
    return {
        "outcome": result.outcome,
        "exit_status": result.exit_status,
        "error": result.error,
        "command": shlex.join(result.argv),
        "seed": config.seed,
        "configuration": {
            "boot": config.boot.argv,
            "boot_command": config.boot.command("ftraced"),
            "address": config.address or result.daemon.get("address"),
            "private_daemon": config.address is None,
            "workers": config.workers,
            "duration_s": config.duration,
            "ops": config.ops,
            "modules": list(config.modules),
            "keep_going": config.keep_going,
            "stop_on": sorted(config.stop_on),
            "check_interval_s": config.check_interval,
            "stall_timeout_s": config.stall_timeout,
            "auto_failpoints": dict(config.auto_failpoints),
        },
        "started_wall": result.start_wall,
        "ran_s": round(result.duration, 3) if result.started else None,
        "daemon": result.daemon,
        # Someone's Kernel.Reboot under the run: the kernel judged, gone (times None when
        # not known, or before the clients started).
        "reboot": None if result.reboot is None else {
            "boot_id": result.reboot.boot_id, "new_boot_id": result.reboot.new_boot_id,
            "booted_s": result.seconds_into_run(result.reboot.booted_ns),
            "seen_s": result.seconds_into_run(result.reboot.seen_ns),
            "text": result.reboot_text},
        # ftrace_kill() first seen by a check of the run (None: not seen), and whether
        # that ended it.
        "ftrace_killed_s": result.seconds_into_run(result.ftrace_killed_ns),
        "ended_at_kill": result.ended_at_kill,
        "operations": {
            "total": tally.total,
            "completed": tally.completed,
            # Invoked from the go to the stop (not a client's closing ones), and their
            # rate over that span (ran_s).
            "in_run": tally.in_run,
            "per_second": result.per_second(tally.in_run),
            "first_s": result.seconds(tally.first_invoke_ns),
            "by_kind": per_kind(result),
        },
        "cpu": {"seconds": result.cpu, "operations": tally.in_run,
                "ms_per_operation": cpu_per_operation(result.cpu, tally.in_run)},
        # "shm": snapshots checked; "shm tracing": of those taken while the clients ran,
        # the ones with tracing started, "shm held" of these taken with the record
        # writers held, "shm nonzero" those with a non-zero count;
        # "shm at stop": taken once the clients were being stopped; "shm held
        # unanswered": held snapshots not answered HOLD_MAX after the writers were
        # held (checker.py).
        "checks": dict(result.checks),
        # CheckConsistency calls per second while the checker ran (check_interval_s asks
        # for more when a check waits long for ftrace_lock).
        "consistency_per_second": result.consistency_rate,
        "shm_check": result.shm_error or "on",
        "workers": [worker_json(result, w) for w in result.workers],
        "time_to_first_anomaly_s": first,
        # The first anomaly of a --stop-on kind (with none given, the first anomaly).
        "time_to_detection_s": sought,
        "anomalies": anomalies,
        # There before the run started, so not the run's: no times, no operations.
        "before_run": [{key: value for key, value in asdict(anomaly).items()
                        if key not in ("seen_from_ns", "seen_to_ns")}
                       for anomaly in result.before_run],
        "reproducer": None if repro is None else {
            "kind": repro.kind,
            "file": "repro.sh",
            "commands": repro.commands,
            # The commands found, as repro.sh's header counts them: not its cd to the
            # tracing directory nor its closing dmesg | grep.
            "command_count": len(repro.commands),
            "candidates": repro.candidates,
            "confirmed": repro.confirmed,
            "confirmation": repro.confirmation,
            "replays": repro.replays,
            "target": asdict(repro.target),
            "interleaving": repro.interleaving,
            "notes": repro.notes,
        },
        "reproducer_note": result.reproducer_note,
    }


def stalled_workers(report: dict[str, Any]) -> list[str]:
    """The workers whose lack of progress ended the run."""
    return [worker["name"] for worker in report["workers"] if worker["stalled"]]


def stall_text(report: dict[str, Any]) -> list[str]:
    """Why a run is stalled, a line per reason (stdout and report.txt alike): the workers
    whose lack of progress ended it, those held at a failpoint at the stop, those that
    did not stop in time."""
    out = []
    stalled = stalled_workers(report)
    if stalled:
        out.append(f"{', '.join(stalled)} made no progress for "
                   f"{report['configuration']['stall_timeout_s']:g} s, which ended the run")
    for worker in report["workers"]:
        if worker["paused_at"]:
            out.append(f"{worker['name']} was held at the failpoint {worker['paused_at']} "
                       "(pause) when the run stopped: nothing released it; the run did")
    killed = [worker["name"] for worker in report["workers"] if worker["killed_at_stop"]]
    if killed:
        out.append(f"{', '.join(killed)} did not stop in time and "
                   f"{'was' if len(killed) == 1 else 'were'} killed")
    return out


def lost_text(report: dict[str, Any]) -> list[str]:
    """The workers that died on their way, a line each (stdout and report.txt alike):
    how, and whether the run went on without it or ended for no client was left."""
    return [f"{worker['name']} {worker['how']}" for worker in report["workers"]
            if worker["lost"]]


def killed_text(report: dict[str, Any]) -> list[str]:
    """ftrace killed during the run, a line (stdout and report.txt alike)."""
    seen = report["ftrace_killed_s"]
    if seen is None:
        return []
    return [f"ftrace_kill() seen at {seen:.3f} s: every change to ftrace refused from then "
            "on (ENODEV), nothing new to find" + (
                "; the run ended there, and checked once more after its clients stopped"
                if report["ended_at_kill"] else "")]


def reboot_text(report: dict[str, Any]) -> list[str]:
    """The reboot under the run, when the error does not say it already (an anomaly
    found before it is the run's verdict, with the reboot beside it)."""
    reboot = report["reboot"]
    return [reboot["text"]] if reboot and reboot["text"] != report["error"] else []


def before_run_text(report: dict[str, Any]) -> list[str]:
    """report.txt's account of what the kernel showed before the run, if anything."""
    before = report["before_run"]
    if not before:
        return []
    out = ["", "Before the run (not the run's: the kernel showed these when it started)"]
    if report["anomalies"]:
        out.append("  The run's own anomalies above may follow from this state.")
    for i, anomaly in enumerate(before, 1):
        out.append(f" {i}. [{anomaly['source']}] {headline(anomaly)}")
        out += [f"      {line}" for line in anomaly["detail"][1:]]
    return out


def ran_text(report: dict[str, Any]) -> str:
    """How long the run ran and how much it did, as stdout and report.txt say it: the
    operations invoked from the go to the stop, over that span."""
    if report["ran_s"] is None:
        return "did not start"
    ops = report["operations"]
    return f"{ops['in_run']} operations in {report['ran_s']} s, {ops['per_second']}/s"


#: What an anomaly seen after ftrace_kill() is, as report.txt says it.
AFTER_KILL = ("seen after ftrace_kill() (ftrace_disabled): nothing updates a record any more; "
              "the counts are what the update the WARN aborted left, likely its fallout")


def headline(anomaly: dict[str, Any]) -> str:
    """The anomaly in one line (a log report's message names its kind already), and
    whether it was seen after ftrace_kill()."""
    if anomaly["message"].startswith(anomaly["kind"]) or anomaly["source"] == "dmesg":
        line = anomaly["message"]
    else:
        line = f"{anomaly['kind']}: {anomaly['message']}"
    return line + (" (after ftrace_kill())" if anomaly["after_ftrace_kill"] else "")


def checks_text(report: dict[str, Any]) -> list[str]:
    """How often each observer looked, and what the shared-memory one saw: a snapshot
    with tracing off or no count set can show little (checker.py's docstring)."""
    checks = report["checks"]
    consistency = checks.get("consistency", 0)
    interval = report["configuration"]["check_interval_s"]
    rate = report["consistency_per_second"]
    rate = (f" ({rate}/s; --check-interval {interval:g} asks for {1 / interval:g}/s)"
            if rate is not None and interval > 0 else "")
    lines = [f"  consistency over RPC: {consistency}{rate}",
             f"  shared-memory snapshots: {checks.get('shm', 0)} checked (+"
             f"{checks.get('shm inconclusive', 0)} taken while records changed, not counted); "
             f"while the clients ran {checks.get('shm tracing', 0)} with tracing started "
             f"({checks.get('shm held', 0)} with the record writers held a moment, "
             f"{checks.get('shm nonzero', 0)} with a non-zero count); "
             f"{checks.get('shm at stop', 0)} once the clients were being stopped",
             f"  dmesg lines: {checks.get('dmesg lines', 0)}"]
    unanswered = checks.get("shm held unanswered", 0)
    if unanswered:  # the writers were let go without the snapshot they were held for
        lines.insert(2, f"  held snapshots not answered {HOLD_MAX:g} s after the writers were "
                        f"held (a ListOps waiting on ftrace_lock, or a daemon that slow): "
                        f"{unanswered}")
    return lines


def to_text(report: dict[str, Any], result: RunResult) -> str:
    out = ["ftrace-stress report", "===================="]
    status = report["outcome"].upper()
    out.append(f"outcome:   {status} (exit status {report['exit_status']})")
    if report["error"]:
        out.append(f"error:     {report['error']}")
    out += [f"rebooted:  {line}" for line in reboot_text(report)]
    out.append(f"command:   {report['command']}")
    out.append("           (re-runs the shells' and invokers' choices; a tracer's and a "
               "loader's follow the kernel's answers,")
    out.append("           which follow how the clients interleaved, as no seed does: an "
               "anomaly's replay is repro.sh)")
    conf = report["configuration"]
    daemon = report["daemon"]
    where = ("private daemon" if conf["private_daemon"] else "daemon") + \
        f" at {conf['address']}" + (f", pid {daemon['pid']}" if daemon.get("pid") else "")
    out.append(f"kernel:    {conf['boot_command']}  ({where})")
    if conf["auto_failpoints"]:
        disarmed = daemon.get("failpoints_disarmed")
        out.append("widened:   " + ", ".join(f"{k}={v}" for k, v in conf["auto_failpoints"].items())
                   + " (chosen for the open race windows" + (
                       "" if disarmed is None else "; disarmed at the end" if disarmed
                       else f"; still armed: disarming failed: {daemon['disarm_error']}")
                   + ")")
    restored = daemon.get("restored")
    if restored is not None:
        done = [f"{what} {', '.join(restored[key])}" for key, what in (
            ("unloaded", "unloaded"), ("loaded", "loaded again"), ("rewritten", "wrote back"))
            if restored[key]]
        done += [f"NOT RESTORED: {left}" for left in restored["left"]]
        out.append("restored:  " + ("; ".join(done) or "nothing the run changed was left changed"))
    out.append(f"seed:      {report['seed']}")
    out.append("clients:   " + ", ".join(f"{n} {k}{'s' * (n != 1)}"
                                          for k, n in conf["workers"].items() if n)
               + f" ({sum(conf['workers'].values())} processes)")
    limit = f"{conf['ops']} operations" if conf["ops"] else f"{conf['duration_s']} s"
    ops = report["operations"]
    after = ops["total"] - ops["in_run"]
    out.append(f"ran:       {ran_text(report)} (limit: {limit})"
               + (f"; {after} more not counted: the tracers' closing unregisters, the "
                  "teardown's, and those begun before the clients heard the stop"
                  if after and report["ran_s"] is not None else ""))
    out += [f"stalled:   {line}" for line in stall_text(report)]
    out += [f"lost:      {line}" for line in lost_text(report)]
    out += [f"killed:    {line}" for line in killed_text(report)]
    # A kill comes with its WARN, an anomaly: only --keep-going and --stop-on need say it.
    stops = ("ftrace_kill() only (--keep-going)" if conf["keep_going"]
             else ", ".join(conf["stop_on"]) + " or ftrace_kill()" if conf["stop_on"]
             else "any anomaly")
    out.append(f"stops at:  {stops}; detected after {report['time_to_detection_s']} s"
               if report["time_to_detection_s"] is not None else f"stops at:  {stops}")
    out += ["", "Operations per kind (per s: those invoked from the go to the stop, over "
            "the run's duration)", f"  {'kind':<28}{'count':>8}{'ok':>8}{'refused':>9}{'per s':>9}"]
    for kind, row in ops["by_kind"].items():
        out.append(f"  {kind:<28}{row['count']:>8}{row['ok']:>8}{row['refused']:>9}"
                   f"{row['per_second']:>9}")
    per_op = report["cpu"]["ms_per_operation"]
    if per_op:
        out += ["", "CPU per operation (ms, from the go to the stop)",
                "  " + ", ".join(f"{party} {ms:.3f}" for party, ms in per_op.items())]
    out += ["", "Checks"] + checks_text(report)
    if result.shm_error:
        out.append(f"  shared-memory check off: {result.shm_error}")
    out += ["", "Clients"]
    for worker in report["workers"]:
        after = worker["operations"] - worker["in_run"]
        out.append(f"  {worker['name']:<9} pid {worker['pid']:<7} {worker['in_run']:>7} "
                   f"operations{f' (+{after} not counted)' if after else ''}, {worker['how']}")
    out += ["", "Anomalies" if report["anomalies"] else "Anomalies: none"]
    for i, anomaly in enumerate(report["anomalies"], 1):
        when = "at teardown, " if anomaly["phase"] == "teardown" else ""
        out.append(f" {i}. {when}{anomaly['seen_s']:.6f} s [{anomaly['source']}] "
                   f"{headline(anomaly)}")
        if anomaly["after_ftrace_kill"]:
            out.append(f"    {AFTER_KILL}")
        if anomaly["records"] > 1:
            out.append(f"    {anomaly['records']} records")
        out.append(f"    observed between {anomaly['seen_from_s']:.6f} s and "
                   f"{anomaly['seen_s']:.6f} s; operations in flight then:")
        out += [f"      {line}" for line in anomaly["in_flight"]] or ["      none"]
        out.append("    completed just before:")
        out += [f"      {line}" for line in anomaly["before"]] or ["      none"]
        if anomaly["detail"][1:] or anomaly["source"] != "dmesg":
            out.append("    detail:")
            out += [f"      {line}" for line in anomaly["detail"]]
    out += before_run_text(report)
    out += ["", "Reproducer"]
    repro = report["reproducer"]
    if repro is None:
        out.append(f"  {report['reproducer_note'] or 'none'}")
    elif repro["kind"] == "sequential":
        out.append(f"  repro.sh: {repro['command_count']} commands, cut down from "
                   f"{repro['candidates']} in {repro['replays']} replays on fresh daemons; "
                   f"{repro['confirmation']}")
        out += [f"    {line}" for line in result.reproducer.script.splitlines()]
    else:
        out.append("  No sequential reproducer was found: replayed one at a time, the "
                   "candidates tried do not show the anomaly (the notes below say which).")
        if not result.config.boot.races:
            # The fixed and buggy kernels lock every path: a sequential cause exists, and
            # overlapping operations may have taken effect in an order the candidates
            # missed (a tracer's operations report no lock time to order them by).
            out.append("  No race window was open, so a sequential cause exists: the "
                       "operations that overlapped took effect in an order none of the "
                       "candidates had; history.jsonl has the whole run.")
        if repro["interleaving"]:
            out.append("  The interleaving to try:")
            out += [f"    {step}" for step in interleaving_steps(repro["interleaving"],
                                                                 result.config.boot)]
            inter = repro["interleaving"]
            out.append(f"  In the run: {inter['held']['client']} {inter['held']['op']} "
                       f"({inter['held']['invoked_s']}..{inter['held']['completed_s']} s) "
                       f"overlapped {inter['racing']['client']} {inter['racing']['op']} "
                       f"({inter['racing']['invoked_s']}..{inter['racing']['completed_s']} s)")
        out.append(f"  ({repro['replays']} replays on fresh daemons)")
    for note in repro["notes"] if repro else []:
        out.append(f"  - {note}")
    return "\n".join(out) + "\n"


def write_reports(result: RunResult) -> None:
    result.report = report = to_json(result)
    for name, text in (("report.json", json.dumps(report, indent=2) + "\n"),
                       ("report.txt", to_text(report, result))):
        path = os.path.join(result.config.out_dir, name)
        with open(path + ".tmp", "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(path + ".tmp", path)
