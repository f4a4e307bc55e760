"""ftrace-stress as a user runs it: the outcome table, the reproducers, and runs that lose
their daemon or a client.

The outcome table (README): ``buggy`` -> the WARN is found; ``fixed`` -> clean; ``fixed``
with each race window -> an anomaly is found. The short form runs in the default test
run (one seed each, a few seconds of stress, a small kernel); the long form
(``make stress``, ``-m stress_long``) runs more seeds for longer, and keeps ``fixed`` under
100,000 operations from 16 client processes.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, Iterator, NoReturn

import pytest

from clients.api import Client
from clients.spawn import SpawnedDaemon, spawn_daemon
from clients.stress import minimize
from clients.stress.checker import Checker
from clients.stress.cpu import daemon_pid
from kernel_daemon.ftrace.snapshot import RecordsReader
from tests.children import REPO, child_env
from tests.daemon_fixture import spawn  # noqa: F401  (a fixture)
from tests.test_race_interleavings import interleave
from tests.test_tracer_client import wait_until

#: A small kernel (its daemons boot fast) and six clients: two loaders and two shells
#: cycle modules and filters, one tracer and one invoker around them.
SHORT = ["--core-functions", "2048", "--tracers", "1", "--loaders", "2", "--shells", "2",
         "--invokers", "1"]
RACES = ("load-count", "publish-early", "unload-unlocked")
#: What holds ftrace_lock while a module's records are counted: a loader held there holds
#: every other client that needs the lock too.
LOAD_SITE = "ftrace_update_code:before_count"
#: The load-count row's replay budget: every sequential candidate the search may try (the
#: shells' and loaders' operations in three orders, each of MAX_SESSIONS tracer sessions in
#: two), then each of MAX_PAIRS pairs with its three setups, and the run's teardown after
#: the one that shows the anomaly. A run the machine slows finds the anomaly later, with a
#: longer history and more tracer sessions, so more sequential candidates: with a budget of
#: 10 they could leave the pairs one replay, and the interleaving went unverified (1 run
#: in some 40 under load; the budget used on a quiet machine was 5 to 8).
LOAD_COUNT_REPLAYS = 3 + 2 * minimize.MAX_SESSIONS + 3 * minimize.MAX_PAIRS + 1


def run_stress(out, *args: str, timeout: float = 240) -> tuple[subprocess.CompletedProcess, dict]:
    """``python -m clients.stress --out OUT ARGS``; the process and report.json."""
    done = subprocess.run([sys.executable, "-m", "clients.stress", "--out", str(out), *args],
                          cwd=REPO, env=child_env(), capture_output=True, text=True,
                          timeout=timeout)
    return done, _report(out)


#: The runs started by the test in progress (an xdist worker runs one test at a time).
_started: list[subprocess.Popen] = []


def start_stress(out: str | os.PathLike | None, *args: str) -> subprocess.Popen:
    """``python -m clients.stress [--out OUT] ARGS`` under way; it cannot outlive the test
    (:func:`_no_run_outlives_its_test`)."""
    where = ["--out", str(out)] if out is not None else []
    run = subprocess.Popen([sys.executable, "-m", "clients.stress", *where, *args],
                           cwd=REPO, env=child_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    _started.append(run)
    return run


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test() -> Iterator[None]:
    """A run that a test gave up on (a ``communicate`` that timed out, an assertion that
    failed while it ran) is killed at the test's end rather than left loading the machine
    for the tests after it. Its workers then stop at the end of their standard input, and
    a daemon it spawned at its lifeline's; a worker a test SIGSTOPped is that test's to
    continue."""
    yield
    while _started:
        run = _started.pop()
        if run.poll() is None:
            run.kill()
        run.communicate(timeout=60)


def _report(out) -> dict:
    with open(os.path.join(out, "report.json"), encoding="utf-8") as report:
        return json.load(report)


def history(out) -> list[dict]:
    """history.jsonl, every line of which must be JSON."""
    with open(os.path.join(out, "history.jsonl"), encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def kinds(report: dict) -> set[str]:
    return {anomaly["kind"] for anomaly in report["anomalies"]}


def outcome_args(variant: str, race: str | None, seed: int) -> list[str]:
    args = ["--variant", variant, "--seed", str(seed)]
    if race:
        args += ["--race", race]
    if variant == "buggy":
        # The row is the WARN; a notrace leak (buggy too, but it never becomes a WARN)
        # may be seen first, and the run goes on past it.
        args += ["--stop-on", "warning"]
    # A clean run is one of a given length; an anomaly ends the others early. Two seconds
    # or so: the observer holds the record writers for a snapshot at most every half
    # second once it has seen tracing started, and with the one second 1200 operations
    # took, a loaded machine could let its one chance or two go (no held snapshot, in 1
    # whole-suite run in 10 under load).
    return args + (["--ops", "2400"] if variant == "fixed" and not race else ["--duration", "60"])


def check_outcome(done: subprocess.CompletedProcess, report: dict, variant: str,
                  race: str | None, out) -> None:
    detail = done.stdout + done.stderr
    assert report["error"] == "", detail
    if variant == "fixed" and race is None:
        assert done.returncode == 0, detail
        assert report["outcome"] == "clean" and report["anomalies"] == []
        check_cpu_accounting(report)
        check_workers_counted_to_their_end(report, out)
        check_lock_times(out)
        check_observers(report, out)
        return
    assert done.returncode == 1, detail
    assert report["outcome"] == "anomaly"
    assert report["time_to_detection_s"] is not None
    if variant == "buggy":
        assert "WARNING" in kinds(report), report["anomalies"]
        warn = next(a for a in report["anomalies"] if a["kind"] == "WARNING")
        assert "kernel/trace/ftrace.c:1529 __ftrace_hash_rec_update" in warn["message"]
        # --stop-on warning: the run went on past whatever came before, to the WARN.
        assert report["configuration"]["stop_on"] == ["WARNING"]
        assert warn["phase"] == "run" and report["time_to_detection_s"] == warn["seen_s"]


# --- the outcome table, short form --------------------------------------------------


@pytest.mark.parametrize("variant, race", [("buggy", None), ("fixed", None),
                                           *(("fixed", race) for race in RACES)])
def test_outcome_table(tmp_path, variant, race):
    args = outcome_args(variant, race, seed=1)
    # The buggy row also proves its reproducer, the first race row its interleaving;
    # the others leave the search out to keep the default run short.
    if variant == "buggy":
        # SHORT's tracer stays in: a WARN reached through its own ops replays as its
        # session mapped onto the function tracer, its operations where they held
        # ftrace_lock. One shell and one loader keep the history short, and with it
        # the candidates and their replays.
        args += ["--max-replays", "60", "--shells", "1", "--loaders", "1"]
    elif race == "load-count":
        args += ["--max-replays", str(LOAD_COUNT_REPLAYS)]
    else:
        args.append("--no-minimize")
    done, report = run_stress(tmp_path / "out", *SHORT, *args)
    check_outcome(done, report, variant, race, tmp_path / "out")
    assert all(isinstance(op, dict) for op in history(tmp_path / "out"))
    if variant == "buggy":
        check_buggy_reproducer(tmp_path / "out", report)
    elif race == "load-count":
        check_interleaving(tmp_path / "out", report)


def check_cpu_accounting(report: dict) -> None:
    """Every party's CPU from the go to the stop, each worker's too, and per operation:
    those seconds over the operations the workers did in that span."""
    cpu = report["cpu"]
    kinds = {kind for kind, count in report["configuration"]["workers"].items() if count}
    assert set(cpu["seconds"]) == {"ftraced", "ftrace-stress"} | kinds
    assert all(seconds > 0 for seconds in cpu["seconds"].values()), cpu
    per_worker = [worker["cpu_s"] for worker in report["workers"]]
    assert all(seconds is not None and seconds > 0 for seconds in per_worker), per_worker
    assert sum(per_worker) == pytest.approx(sum(cpu["seconds"][kind] for kind in kinds))
    operations, per_op = cpu["operations"], cpu["ms_per_operation"]
    assert 0 < operations <= report["operations"]["total"]
    assert per_op == pytest.approx({**{party: seconds / operations * 1e3
                                       for party, seconds in cpu["seconds"].items()},
                                    "total": sum(cpu["seconds"].values()) / operations * 1e3},
                                   abs=1e-4)


def test_a_run_replaces_what_an_earlier_run_left_in_its_directory(tmp_path):
    """A second run into the same --out: its history and report are its own (the first
    run's clients are not merged in), and no repro.sh of an earlier anomaly is left."""
    out = tmp_path / "out"
    small = ["--variant", "fixed", "--core-functions", "2048", "--no-minimize",
             "--invokers", "0", "--shells", "0"]
    done, _ = run_stress(out, *small, "--ops", "60", "--tracers", "3", "--loaders", "1")
    assert done.returncode == 0, done.stderr
    (out / "repro.sh").write_text("# from an earlier run\n")
    (out / "notes.txt").write_text("the user's own file\n")
    done, report = run_stress(out, *small, "--ops", "20", "--tracers", "1", "--loaders", "1")
    assert done.returncode == 0, done.stderr
    assert {op["client"] for op in history(out)} <= {"tracer0", "loader0", "teardown"}
    assert report["operations"]["total"] <= 20 + 2  # + the tracer's unregister, teardown
    # The client files are merged into history.jsonl and go; the workers' stderr stays.
    assert sorted(p.name for p in (out / "clients").iterdir()) == ["loader0.log", "tracer0.log"]
    assert not (out / "repro.sh").exists() and (out / "notes.txt").exists()


def test_a_run_of_ops_counts_its_operations_not_the_tracers_closing_unregisters(tmp_path):
    """--ops 240: the clients' 240 operations, each tracer's unregister of the ops it
    still has as it leaves apart (in history.jsonl, "closing"), as the teardown's is. It
    said "242 operations ... (limit: 240 operations)"."""
    out = tmp_path / "out"
    done, report = run_stress(out, *SHORT, "--tracers", "2", "--ops", "240", "--seed", "3",
                              "--no-minimize")
    assert done.returncode == 0, done.stdout + done.stderr
    ops = history(out)
    closing = [op for op in ops if op["closing"]]
    assert closing and all(op["op"] == "unregister" for op in closing), closing
    assert report["operations"]["in_run"] == 240
    assert report["operations"]["total"] == 240 + len(closing) + 1  # and the teardown's
    assert "ftrace-stress: CLEAN (seed 3, 240 operations in " in done.stdout, done.stdout
    assert (f"(limit: 240 operations); {len(closing) + 1} more not counted: the tracers' "
            "closing unregisters, the teardown's") in (out / "report.txt").read_text()
    # Each client's share: its closing unregister apart, as in the total (it said 242
    # in all of report.json's workers).
    workers = report["workers"]
    assert sum(worker["in_run"] for worker in workers) == 240
    text = (out / "report.txt").read_text()
    for worker in workers:
        closed = sum(op["client"] == worker["name"] for op in closing)
        assert worker["operations"] - worker["in_run"] == closed, worker
        # Its whole line: "60 operations" alone is in another client's "160 operations".
        line = (rf"  {re.escape(worker['name'])} +pid {worker['pid']} +{worker['in_run']} "
                "operations" + (rf" \(\+{closed} not counted\)" if closed else "")
                + f", {re.escape(worker['how'])}")
        assert re.search(f"^{line}$", text, re.MULTILINE), (line, text)


def test_a_run_ends_once_ftrace_is_killed(tmp_path):
    """The first code update fails (add_breakpoints), ftrace_bug() WARNs and kills ftrace:
    not an anomaly of the --stop-on kind, but nothing new can be found after it (every
    change refused), so the run ends there and says so. It ran on to its --duration."""
    out = tmp_path / "out"
    done, report = run_stress(out, *SHORT, "--duration", "60", "--seed", "2",
                              "--stop-on", "leaked-reference", "--no-minimize",
                              "--failpoint", "add_breakpoints=1*error(EFAULT)")
    assert done.returncode == 1, done.stdout + done.stderr  # the WARN, found all the same
    assert report["ended_at_kill"] and report["time_to_detection_s"] is None, report
    killed = report["ftrace_killed_s"]
    warn = next(a for a in report["anomalies"] if a["kind"] == "WARNING")
    assert "kernel/trace/ftrace.c:1578" in warn["message"]
    # ran_s has 3 decimals, the moments 6: the run ends within a millisecond of the kill.
    assert round(warn["seen_s"], 3) <= report["ran_s"] and round(killed, 3) <= report["ran_s"] < 60
    line = (f"ftrace_kill() seen at {killed:.3f} s: every change to ftrace refused from then "
            "on (ENODEV), nothing new to find; the run ended there, and checked once more "
            "after its clients stopped\n")
    assert f"  killed: {line}" in done.stdout
    assert f"killed:    {line}" in (out / "report.txt").read_text()


def test_the_rate_is_over_the_duration_stdout_and_report_txt_give(tmp_path):
    """The first module load holds ftrace_lock for 2 s of a 1 s run: the operations it
    holds up end long after the stop. stdout and report.txt give one figure, the
    operations invoked from the go to the stop over that span (the rate was over the
    first invocation to the last answer, 84/s beside "33 operations in 0.068 s")."""
    out = tmp_path / "out"
    done, report = run_stress(out, *SHORT, "--duration", "1", "--seed", "8", "--no-minimize",
                              "--failpoint", f"{LOAD_SITE}=1*sleep(2000)")
    assert done.returncode == 0, done.stdout + done.stderr
    ops, ran_s = report["operations"], report["ran_s"]
    assert 0 < ops["in_run"] < ops["total"], ops  # the teardown's comes after the stop
    assert ops["per_second"] == pytest.approx(ops["in_run"] / ran_s, rel=0.01), (ops, ran_s)
    assert sum(row["per_second"] for row in ops["by_kind"].values()) == pytest.approx(
        ops["per_second"], abs=0.1 * len(ops["by_kind"]))
    ran = f"{ops['in_run']} operations in {ran_s} s, {ops['per_second']}/s"
    assert done.stdout.startswith(f"ftrace-stress: CLEAN (seed 8, {ran})"), done.stdout
    assert f"ran:       {ran} (limit: 1.0 s); " in (out / "report.txt").read_text()


def check_observers(report: dict, out) -> None:
    """The shared-memory observer looked at the kernel at work, not only idle: snapshots
    with tracing on and counts set while the clients ran (with the record writers held a
    moment; by itself a bracket then almost never holds: 37 of 41 snapshots counted were
    of a kernel with tracing off, and an observer reading the wrong bit for
    FTRACE_FL_ENABLED went unseen). The consistency check's rate is reported beside the
    one asked for, and report.txt says a seed is no replay."""
    checks = report["checks"]
    assert checks.get("shm held", 0) >= 1, checks
    assert checks["shm nonzero"] >= 1 and checks["shm tracing"] >= checks["shm nonzero"], checks
    assert checks["shm"] >= checks["shm tracing"] + checks.get("shm at stop", 0), checks
    rate = report["consistency_per_second"]
    assert rate is not None and 0 < rate <= 1 / report["configuration"]["check_interval_s"] + 1
    text = (out / "report.txt").read_text()
    assert f"consistency over RPC: {checks['consistency']} ({rate}/s; --check-interval " \
           f"{report['configuration']['check_interval_s']:g} asks for " in text, text
    assert (f"while the clients ran {checks['shm tracing']} with tracing started "
            f"({checks['shm held']} with the record writers held a moment, "
            f"{checks['shm nonzero']} with a non-zero count)") in text, text
    assert "(re-runs the shells' and invokers' choices; a tracer's and a loader's" in text


def test_a_seed_re_runs_the_shells_and_invokers_choices_as_the_report_says(tmp_path):
    """Two runs of one command line: each shell and invoker makes the same choices, which
    depend on nothing else; a tracer's and a loader's follow the answers too. report.txt
    claimed a seed re-runs each client's choices, the tracers' and loaders' diverging at
    the first answer that differed."""
    runs = []
    for name in ("a", "b"):
        done, report = run_stress(tmp_path / name, *SHORT, "--ops", "240", "--seed", "31",
                                  "--no-minimize")
        assert done.returncode == 0, done.stdout + done.stderr
        choices: dict[str, list] = {}
        for op in history(tmp_path / name):
            if op["kind"] in ("shell", "invoker"):
                choices.setdefault(op["client"], []).append((op["op"], op["args"]))
        runs.append(choices)
    assert runs[0].keys() == {"shell0", "shell1", "invoker0"}
    assert runs[0] == runs[1]
    text = (tmp_path / "a" / "report.txt").read_text()
    assert ("(re-runs the shells' and invokers' choices; a tracer's and a loader's follow "
            "the kernel's answers,\n           which follow how the clients interleaved, as "
            "no seed does: an anomaly's replay is repro.sh)\n") in text


def check_lock_times(out) -> None:
    """What the reproducer orders by: each operation's ftrace_lock acquisitions, inside the
    span the history gives it; a tracer client's register, set_filter and unregister have
    them too (from its stream's answers), else an overlap with a rmmod replays in the
    order they answered."""
    ops = history(out)
    for op in ops:
        if op["lock_ns"]:
            assert op["invoke_ns"] <= op["lock_ns"][0] <= op["lock_ns"][-1] <= op["complete_ns"]
    tracer_changes = [op for op in ops if op["kind"] == "tracer" and op["result"] == "ok"]
    assert tracer_changes and all(op["lock_ns"] for op in tracer_changes), tracer_changes


def check_workers_counted_to_their_end(report: dict, out) -> None:
    """A run of --ops N: every worker did its share and ended on its own, so its CPU is
    the figure of its end event (from the go to its last operation and unregistering),
    not what /proc shows at its exit, which adds the teardown of a Python process. The
    client files are gone once merged into the history: the report has their end events
    (history_complete) and every operation they recorded."""
    ops = history(out)
    for worker in report["workers"]:
        assert worker["history_complete"] and worker["cpu_s"] > 0, worker
        assert worker["operations"] == sum(op["client"] == worker["name"] for op in ops)
    assert not list((out / "clients").glob("*.jsonl"))


def check_buggy_reproducer(out, report: dict) -> None:
    """At most 10 commands, and the WARN again when ftrace-shell runs it on a fresh daemon."""
    repro = report["reproducer"]
    assert repro["kind"] == "sequential", repro["notes"]
    assert repro["confirmed"], repro["confirmation"]
    script = (out / "repro.sh").read_text()
    commands = [line for line in script.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) <= 10, script
    assert script.startswith("# ftrace-shell --spawn --variant buggy ")
    shell = subprocess.run([sys.executable, "-m", "clients.shell", "--spawn", "--variant",
                            "buggy", "repro.sh"], cwd=out, env=child_env(), capture_output=True,
                           text=True, timeout=120)
    assert shell.returncode == 0, shell.stdout + shell.stderr
    assert "WARNING: at kernel/trace/ftrace.c:1529 __ftrace_hash_rec_update" in shell.stdout


def check_interleaving(out, report: dict) -> None:
    """A race: no sequential reproducer, and the interleaving with its failpoint."""
    repro = report["reproducer"]
    assert repro["kind"] == "interleaving", repro["notes"]
    assert any(note.startswith("no sequential reproducer") for note in repro["notes"])
    found = repro["interleaving"]
    assert found["race"] == "load-count" and found["failpoint"] == LOAD_SITE
    assert found["held"]["command"].startswith("modprobe ")
    assert found["verified"] and found["reproduces"], found
    text = (out / "report.txt").read_text()
    assert "No sequential reproducer was found" in text
    assert "No race window was open" not in text
    assert f"{LOAD_SITE}=1*pause" in text
    assert "No sequential reproducer" in (out / "repro.sh").read_text()


# --- the checker ------------------------------------------------------------------------

PUBLISH_SITE = "ftrace_update_code:before_publish"


def test_daemon_pid_is_whoever_listens_on_the_unix_socket(tmp_path):
    path = str(tmp_path / "listening.sock")
    assert daemon_pid(f"unix:{path}") is None  # nobody there yet
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen()
        assert daemon_pid(f"unix:{path}") == os.getpid()
        assert daemon_pid(path) == os.getpid()
    assert daemon_pid("localhost:50051") is None  # TCP: the peer may be another machine


def test_shm_check_does_not_count_a_copy_with_a_module_linked_in_its_bracket():
    """A modprobe links its pages after ListOps answered and holds there, its counts still
    0, while the records are copied: the generation has not moved, but the copy is not one
    state with the ops, so the check is inconclusive, not a missing reference."""
    daemon = spawn_daemon(["--core-functions", "2048", "--failpoint", f"{PUBLISH_SITE}=1*pause"])
    anomalies: list = []
    checker = Checker(daemon.address, 1.0, anomalies.append, lambda why: None)
    try:
        with daemon.connect() as client, daemon.connect() as loader_client:
            # The function tracer with no filter: every record must count at least 1.
            client.write_file("/sys/kernel/debug/tracing/current_tracer", "function\n")
            checker.reader = RecordsReader(client.stats().shm_namespace)
            loader = threading.Thread(target=loader_client.load, args=("dummy",))
            quiet_state = checker.reader.quiet_state
            looks = []

            def link_once_answered():
                """The records' state; the second look of a bracket, once Stats and
                ListOps answered, after the modprobe linked its pages."""
                looks.append(None)
                if len(looks) == 2:
                    loader.start()
                    client.wait_failpoint(PUBLISH_SITE, timeout=60)
                return quiet_state()

            checker.reader.quiet_state = link_once_answered
            assert checker.check_snapshot() is False
            assert anomalies == []
            assert checker.counts["shm inconclusive"] == 1
            client.release_failpoint(PUBLISH_SITE)
            loader.join(60)
            checker.reader.quiet_state = quiet_state
            assert checker.check_snapshot() is True and anomalies == []
    finally:
        checker.client.close()
        daemon.stop()


@pytest.mark.parametrize("way_in", [0.0, 0.6], ids=["prompt", "slow-way-in"])
def test_the_writers_go_when_the_kernel_does_not_answer_the_held_snapshot(way_in: float):
    """ftrace_lock held for good (a modprobe paused at LOAD_SITE): the held snapshot's
    ListOps waits on it, but the writers go a second after they were held all the same,
    and the hold is counted as unanswered; the snapshot is waited for meanwhile, and
    taken once the lock is free. They were held as long as the lock was. A hold whose
    way in took longer than the time its snapshots get (``way_in``: a loaded machine
    descheduling the checker's thread there) still tries one."""
    daemon = spawn_daemon(["--core-functions", "2048", "--failpoint", f"{LOAD_SITE}=1*pause"])
    went = threading.Event()

    @contextlib.contextmanager
    def hold_writers():
        time.sleep(way_in)  # not a synchronisation: the slow way in itself
        try:
            yield True
        finally:
            went.set()

    checker = Checker(daemon.address, 1.0, lambda anomaly: None, lambda why: None,
                      hold_writers)
    try:
        with daemon.connect() as client, daemon.connect() as loader_client:
            checker.baseline()
            loader = threading.Thread(target=loader_client.load, args=("dummy",))
            loader.start()
            client.wait_failpoint(LOAD_SITE, timeout=60)
            held = threading.Thread(target=checker._check_held)
            began = time.monotonic()
            held.start()
            try:
                assert went.wait(30), "the writers were held as long as ftrace_lock"
                took = time.monotonic() - began
                assert held.is_alive()  # its snapshot still waits for the lock
            finally:
                client.release_failpoint(LOAD_SITE)
                held.join(60)
                loader.join(60)
    finally:
        checker.close()
        daemon.stop()
    assert took >= 1.0, took
    assert checker.counts["shm held unanswered"] == 1, checker.counts
    assert not checker.counts["shm held"], checker.counts


# --- losing the daemon, losing a client ----------------------------------------------


def paused_daemon() -> SpawnedDaemon:
    """A daemon whose first module load stops, holding ftrace_lock, until released."""
    return spawn_daemon(["--core-functions", "2048", "--failpoint", f"{LOAD_SITE}=1*pause"])


def test_daemon_killed_mid_run_leaves_history_and_report(tmp_path):
    out = tmp_path / "out"
    daemon = paused_daemon()
    try:
        stress = start_stress(out, "--address", daemon.address, "--duration", "120",
                              "--seed", "3", *SHORT[2:])
        with daemon.connect() as client:
            client.wait_failpoint(LOAD_SITE, timeout=60)  # the run is under way
        os.kill(daemon.pid, signal.SIGKILL)
        stdout, stderr = stress.communicate(timeout=120)
    finally:
        daemon.stop()
        for leftover in glob.glob(f"/dev/shm/ftsim.{daemon.pid}.*"):
            with contextlib.suppress(FileNotFoundError):  # a boot elsewhere reaped it
                os.unlink(leftover)
    assert stress.returncode == 2, stdout + stderr
    report = _report(out)
    assert report["outcome"] == "error"
    assert "daemon stopped answering" in report["error"] and "mid-run" in report["error"]
    assert "daemon stopped answering" in (out / "report.txt").read_text()
    ops = history(out)
    held = [op for op in ops if op["op"] == "modprobe" and op["result"] == "unknown"]
    assert held, "the module load held at the failpoint never answered"
    assert report["operations"]["total"] == len(ops)


def test_daemon_killed_while_the_clients_start_ends_the_run_at_once(tmp_path):
    """Killed once the run has started its workers, before they connect: each worker
    is refused by a daemon the run had answers from, which is the daemon gone, not one
    to wait a minute for; the run does not wait for the rest to start, and ends with
    the daemon lost in one line (not EBADF from a worker already reaped)."""
    out = tmp_path / "out"
    daemon = spawn_daemon(["--core-functions", "2048"])
    try:
        stress = start_stress(out, "--address", daemon.address, "--duration", "120",
                              "--seed", "5", *SHORT[2:])
        wait_until(lambda: (out / "clients" / "tracer0.log").exists())  # workers started
        os.kill(daemon.pid, signal.SIGKILL)
        killed = time.monotonic()
        stdout, stderr = stress.communicate(timeout=120)
        took = time.monotonic() - killed
    finally:
        daemon.stop()
        for leftover in glob.glob(f"/dev/shm/ftsim.{daemon.pid}.*"):
            os.unlink(leftover)
    assert stress.returncode == 2, stdout + stderr
    assert took < 30, f"{took:.1f} s: the workers' connections were waited for"
    report = _report(out)
    assert re.fullmatch(r"the daemon stopped answering \(\S+: Connection refused\) mid-run",
                        report["error"]), report["error"]
    assert report["operations"]["total"] == 0  # no worker was told to go


def test_killed_worker_is_reported_and_the_run_goes_on(tmp_path):
    out = tmp_path / "out"
    daemon = paused_daemon()
    try:
        stress = start_stress(out, "--address", daemon.address, "--ops", "300", "--seed", "4",
                              "--tracers", "1", "--loaders", "1", "--shells", "2",
                              "--invokers", "1")
        with daemon.connect() as client:
            client.wait_failpoint(LOAD_SITE, timeout=60)
            # The loader is the one held at the failpoint: its file names its pid.
            with open(out / "clients" / "loader0.jsonl", encoding="utf-8") as events:
                loader = json.loads(events.readline())["pid"]
            os.kill(loader, signal.SIGKILL)
            client.release_failpoint(LOAD_SITE)
        stdout, stderr = stress.communicate(timeout=180)
    finally:
        status = daemon.stop()
    # Fixed, no race: no anomaly; but not the run asked for, and not clean (it was).
    assert stress.returncode == 5, stdout + stderr
    assert status == 0
    report = _report(out)
    assert report["outcome"] == "incomplete"
    workers = {w["name"]: w for w in report["workers"]}
    assert workers["loader0"]["status"] == -signal.SIGKILL and workers["loader0"]["lost"]
    how = workers["loader0"]["how"]
    assert re.fullmatch(r"killed by SIGKILL at \d+\.\d{3} s \(the run went on without it\)",
                        how), how
    assert stdout.startswith("ftrace-stress: INCOMPLETE (seed 4, "), stdout
    assert f"  lost: loader0 {how}\n" in stdout
    assert f"lost:      loader0 {how}\n" in (out / "report.txt").read_text()
    assert all(w["status"] == 0 for name, w in workers.items() if name != "loader0")
    assert "loader0" in (out / "report.txt").read_text()
    # A daemon the run did not start is found behind its socket, and its CPU metered.
    assert report["daemon"]["pid"] == daemon.pid
    assert report["cpu"]["seconds"]["ftraced"] > 0
    ops = history(out)
    lost = [op for op in ops if op["client"] == "loader0" and op["complete_ns"] is None]
    assert [op["op"] for op in lost] == ["modprobe"]  # in flight when it was killed
    # The others did all their operations (300 shared by 5 clients; a tracer unregisters
    # when it stops), most of them after the kill.
    for name in workers.keys() - {"loader0"}:
        theirs = [op for op in ops if op["client"] == name]
        assert len(theirs) >= 60 and all(op["complete_ns"] for op in theirs), name
    assert sum(op["invoke_ns"] > lost[0]["invoke_ns"] for op in ops) > 120


def test_a_run_whose_clients_all_died_ended_for_it_and_says_so(tmp_path):
    """Every client SIGKILLed: the run ends, as no client is left, long before its
    --duration. It was CLEAN (exit 0), each client "killed ... (the run went on without
    it)"; it is INCOMPLETE, and the last one reaped says its end ended the run."""
    out = tmp_path / "out"
    stress = start_stress(out, "--duration", "300", "--seed", "6", "--no-minimize", *SHORT)
    try:
        deadline = time.monotonic() + 120
        # Until an operation has completed: the clients are at work.
        while not any(b'"ev":"complete"' in path.read_bytes()
                      for path in (out / "clients").glob("*.jsonl")):
            assert_running(stress, out)
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.05)
        for path in (out / "clients").glob("*.jsonl"):
            os.kill(json.loads(path.read_text().splitlines()[0])["pid"], signal.SIGKILL)
        stdout, stderr = stress.communicate(timeout=120)
    finally:
        if stress.poll() is None:
            stress.send_signal(signal.SIGTERM)
            stress.communicate(timeout=120)
    assert stress.returncode == 5, stdout + stderr
    report = _report(out)
    assert (report["outcome"], report["anomalies"]) == ("incomplete", [])
    assert report["ran_s"] < 300
    workers = report["workers"]
    assert all(w["lost"] and w["status"] == -signal.SIGKILL for w in workers), workers
    ended = [w for w in workers if w["how"].endswith(
        " (no client was left, which ended the run)")]
    went_on = [w for w in workers if w["how"].endswith(" (the run went on without it)")]
    assert ended and len(ended) + len(went_on) == len(workers), workers
    assert stdout.startswith("ftrace-stress: INCOMPLETE (seed 6, "), stdout
    assert "outcome:   INCOMPLETE (exit status 5)" in (out / "report.txt").read_text()


def test_a_stopped_worker_ends_a_run_of_ops_after_the_stall_timeout(tmp_path):
    """--ops waits for every worker's share; one SIGSTOPped for good makes no progress, and
    the stall timeout ends the run as a deadline would: the stuck worker is named and
    killed after the stop's grace, and the run is STALLED, not clean (it was, exit 0)."""
    out = tmp_path / "out"
    stress = start_stress(out, "--ops", "300", "--stall-timeout", "5", "--seed", "6",
                          "--no-minimize", *SHORT)
    victim = None
    try:
        deadline = time.monotonic() + 120
        tracer = out / "clients" / "tracer0.jsonl"
        # Until the tracer has completed an operation: the run is under way.
        while not (tracer.exists() and b'"ev":"complete"' in tracer.read_bytes()):
            assert stress.poll() is None and time.monotonic() < deadline, "never started"
            time.sleep(0.05)
        victim = json.loads(tracer.read_text().splitlines()[0])["pid"]
        os.kill(victim, signal.SIGSTOP)
        stdout, stderr = stress.communicate(timeout=120)
    finally:
        if stress.poll() is None:  # it waited for the stopped worker
            if victim is not None:
                os.kill(victim, signal.SIGCONT)
            stress.send_signal(signal.SIGTERM)
            stress.communicate(timeout=120)
    assert stress.returncode == 4, stdout + stderr  # fixed, no race: no anomaly, stalled
    report = _report(out)
    assert (report["outcome"], report["anomalies"]) == ("stalled", [])
    assert report["configuration"]["stall_timeout_s"] == 5
    workers = {w["name"]: w for w in report["workers"]}
    stuck = workers.pop("tracer0")
    assert stuck["stalled"] and stuck["killed_at_stop"] and stuck["status"] == -signal.SIGKILL
    assert stuck["how"] == "made no progress, so the run ended; did not stop in time, killed"
    # The others were not held up by it, and stopped when told.
    assert all(w["status"] == 0 and not w["stalled"] for w in workers.values()), workers
    assert stdout.startswith("ftrace-stress: STALLED (seed 6, "), stdout
    assert "stalled: tracer0 made no progress for 5 s, which ended the run" in stdout
    assert "stalled: tracer0 did not stop in time and was killed" in stdout
    text = (out / "report.txt").read_text()
    assert "outcome:   STALLED (exit status 4)" in text
    assert "stalled:   tracer0 made no progress for 5 s, which ended the run" in text


def test_sigterm_ends_a_run_as_ctrl_c_does(tmp_path):
    """Stopped and reported (exit status 2), its private daemon stopped with it."""
    out = tmp_path / "out"
    stress = start_stress(out, "--duration", "120", "--seed", "5", "--no-minimize", *SHORT)
    deadline = time.monotonic() + 120
    # Until an operation has completed: the daemon is up and the clients are at work.
    while not any(b'"ev":"complete"' in path.read_bytes()
                  for path in (out / "clients").glob("*.jsonl")):
        assert stress.poll() is None and time.monotonic() < deadline, "the run never started"
        time.sleep(0.05)
    stress.send_signal(signal.SIGTERM)
    stdout, stderr = stress.communicate(timeout=120)
    assert stress.returncode == 2, stdout + stderr
    report = _report(out)
    assert (report["outcome"], report["error"]) == ("error", "interrupted by SIGTERM")
    assert report["operations"]["total"] == len(history(out)) > 0
    pid = report["daemon"]["pid"]
    assert report["daemon"]["private"] and report["daemon"]["exit_status"] == 0
    assert not os.path.exists(f"/proc/{pid}") and not glob.glob(f"/dev/shm/ftsim.{pid}.*")


def children(pid: int) -> set[int]:
    """The processes ``pid`` started that still run (its threads' children)."""
    found: set[int] = set()
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        with contextlib.suppress(FileNotFoundError):
            found.update(int(child) for child in open(task).read().split())
    return found


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_reproducer_search_ends_it_as_an_interrupted_run(tmp_path, signum):
    """Sent once the search replays (its report written, a replay daemon running): the
    run ends as one interrupted before does, its summary printed and exit status 2, the
    report saying the search was interrupted; the anomaly found stands. It was a
    traceback (KeyboardInterrupt out of the search), no summary, and the report's "had
    not ended"."""
    out = tmp_path / "out"
    stress = start_stress(out, *SHORT, *outcome_args("buggy", None, seed=1),
                          "--max-replays", "150", "--shells", "1", "--loaders", "1")
    try:
        report = out / "report.txt"
        wait_until(lambda: report.exists() and "the search had not ended" in report.read_text()
                   and children(stress.pid) or assert_running(stress, out), timeout=240)
        replays = children(stress.pid)
        stress.send_signal(signum)
        stdout, stderr = stress.communicate(timeout=120)
    finally:
        if stress.poll() is None:
            stress.kill()
            stress.communicate(timeout=120)
    assert stress.returncode == 2, stdout + stderr
    assert "Traceback" not in stderr, stderr
    by = " by SIGTERM" if signum == signal.SIGTERM else ""
    error = f"interrupted{by} during the reproducer search"
    assert stdout.startswith("ftrace-stress: ERROR (seed 1, "), stdout
    assert f"  error: {error}\n" in stdout
    report = _report(out)
    # The WARN stands, whatever the checks found before it (stdout shows the first three).
    assert any(a["kind"] == "WARNING" and "kernel/trace/ftrace.c:1529" in a["message"]
               for a in report["anomalies"]), report["anomalies"]
    assert (report["outcome"], report["error"]) == ("error", error)
    assert report["reproducer"] is None
    assert report["reproducer_note"] == "the search was interrupted: no reproducer"
    assert "  the search was interrupted: no reproducer\n" in (out / "report.txt").read_text()
    assert not any(os.path.exists(f"/proc/{pid}") for pid in replays)


def test_bad_arguments_are_one_line_errors_before_anything_starts(tmp_path):
    regular = tmp_path / "regular"
    regular.write_text("")
    unused = str(tmp_path / "unused")
    cases = [
        (["--out", "/proc/forbidden"], "ftrace-stress: --out /proc/forbidden: No such file or "
                                       "directory"),
        (["--out", str(regular)], f"ftrace-stress: --out {regular}: Not a directory"),
        (["--out", unused, "--modules", "uinput,nosuchmod"],
         "ftrace-stress: error: --modules: not in the module catalog: nosuchmod"),
        (["--out", unused, "--modules", ""], "ftrace-stress: error: --modules names no module"),
        (["--out", unused, "--max-replays", "-1"],
         "ftrace-stress: error: --max-replays must not be negative"),
        (["--out", unused, "--check-interval", "nan"],
         "ftrace-stress: error: --check-interval must be positive and at most 9223372036"),
        (["--out", unused, "--stall-timeout", "inf"],
         "ftrace-stress: error: --stall-timeout must be positive and at most 9223372036"),
        # Nothing in a run releases a pause: the run hung (the README's example, and the
        # one of --help).
        (["--out", unused, "--failpoint", f"{LOAD_SITE}=1*pause"],
         f"ftrace-stress: error: --failpoint {LOAD_SITE}=1*pause: 'pause' holds a thread "
         "until Kernel.ReleaseFailpoint releases it, and nothing in a run does (the clients "
         "behind it would stall); to widen a race window sleep instead, e.g. --failpoint "
         f"'{LOAD_SITE}=1*sleep(3000)'; to force an interleaving, pause on a daemon of your "
         "own (ftraced) and release it there (ftrace-inspect failpoints release)"),
    ]
    runs = [start_stress(None, "--ops", "5", *args) for args, _ in cases]
    for process, (args, message) in zip(runs, cases):
        stdout, stderr = process.communicate(timeout=60)
        assert (process.returncode, stdout, stderr.splitlines()[-1]) == (2, "", message), args
        assert "Traceback" not in stderr
    assert not os.path.exists(unused)


def held_loader(report: dict) -> dict:
    """The one loader held at LOAD_SITE's pause (the first module load of the run)."""
    [held] = [w for w in report["workers"] if w["paused_at"]]
    assert held["kind"] == "loader" and held["paused_at"] == LOAD_SITE, report["workers"]
    return held


def test_a_pause_nothing_releases_is_released_at_the_stop_and_the_run_is_stalled(tmp_path):
    """A pause armed on the user's daemon holds the first module load, and ftrace_lock, to
    the end of a 2 s run: the run releases it at its stop (its teardown, echo nop >
    current_tracer, needs the lock) and is STALLED. It waited on the lock for good (the
    teardown never returned), and the clients held behind it were killed."""
    out = tmp_path / "out"
    daemon = paused_daemon()
    try:
        done, report = run_stress(out, "--address", daemon.address, "--duration", "2",
                                  "--seed", "4", *SHORT[2:], timeout=120)
    finally:
        daemon.stop()
    assert done.returncode == 4, done.stdout + done.stderr
    assert (report["outcome"], report["error"], report["anomalies"]) == ("stalled", "", [])
    held = held_loader(report)
    assert not held["stalled"] and not held["killed_at_stop"]  # the deadline ended the run
    assert held["how"].startswith(f"held at the failpoint {LOAD_SITE} (pause), which nothing "
                                  "released: the run released it at the stop; ")
    assert not any(w["killed_at_stop"] for w in report["workers"]), report["workers"]
    teardown = [op for op in history(out) if op["client"] == "teardown"]
    assert [op["result"] for op in teardown] == ["ok"], teardown
    line = (f"{held['name']} was held at the failpoint {LOAD_SITE} (pause) when the run "
            "stopped: nothing released it; the run did")
    assert f"  stalled: {line}" in done.stdout
    assert f"stalled:   {line}" in (out / "report.txt").read_text()


def test_a_stall_ends_a_run_of_duration_too(tmp_path):
    """The held load records nothing for --stall-timeout: the run ends then, not at its
    deadline, though an invoker (no lock needed) goes on (a stall timeout was refused with
    --duration, and a held client was only seen at the stop)."""
    out = tmp_path / "out"
    daemon = paused_daemon()
    try:
        done, report = run_stress(out, "--address", daemon.address, "--duration", "300",
                                  "--stall-timeout", "3", "--seed", "4", *SHORT[2:],
                                  timeout=120)
    finally:
        daemon.stop()
    assert done.returncode == 4, done.stdout + done.stderr
    assert report["outcome"] == "stalled" and report["ran_s"] < 60, report["ran_s"]
    held_loader(report)
    # Whose 3 s came first, the held load's or that of a client waiting behind it on
    # ftrace_lock (its call began before the watch first looked), is the machine's: the
    # run ends at the first, and names each worker quiet that long then.
    stalled = {w["name"] for w in report["workers"] if w["stalled"]}
    assert stalled and "invoker0" not in stalled, report["workers"]
    assert "made no progress for 3 s, which ended the run" in done.stdout


#: Where a filter change holds ftrace_lock (and ftrace_regex_lock), its ops' counts taken
#: out: an ops of the user's held there holds every client that needs the lock.
MOVE_SITE = "ftrace_hash_move:after_disable"
#: SHORT's clients that write records, which the checker holds for its snapshots.
WRITERS = ("tracer0", "loader0", "loader1", "shell0", "shell1")


def in_flight_at_stop(report: dict, out) -> dict[str, float]:
    """For each worker with an operation in flight when the run stopped (invoked before,
    answered after or never), how long it had been in flight then (seconds)."""
    stop = report["started_wall"] + report["ran_s"]
    return {op["client"]: stop - op["invoke_wall"] for op in history(out)
            if op["invoke_wall"] < stop and (op["complete_wall"] or stop) >= stop}


def assert_running(stress: subprocess.Popen, out) -> None:
    """Fail, saying what the run reported, if it has ended: a run that finds an anomaly
    stops early, and merges its client files into history.jsonl and removes them, so a
    condition on those files would fail on a missing file and say nothing of why."""
    if stress.poll() is not None:
        fail_with_the_runs_report(stress, out)


def fail_with_the_runs_report(stress: subprocess.Popen, out) -> NoReturn:
    """Fail with how an ended run ended: its exit status, outcome, error and anomalies."""
    try:
        report = _report(out)
    except FileNotFoundError:
        pytest.fail(f"the run ended early (exit status {stress.returncode}), without a "
                    "report.json")
    found = "; ".join(a["message"] for a in report["anomalies"]) or "none"
    pytest.fail(f"the run ended early (exit status {stress.returncode}, outcome "
                f"{report['outcome']}, error {report['error']!r}); its anomalies: {found}")


def writers_held(out, stress: subprocess.Popen) -> Callable[[], bool]:
    """A condition for wait_until: every writer parked by the checker's hold (its file's
    last event ``held``), while the run goes on (an invoker is never held). A run that
    ended fails the test with what it reported (:func:`assert_running`). It was every
    writer's file quiet for 0.2 s, which a hold that ended at its first snapshot never
    was: the wait timed out in 1 loaded whole-suite run in 10."""

    def held() -> bool:
        assert_running(stress, out)
        parked = True
        for name in WRITERS:
            try:
                data = (out / "clients" / f"{name}.jsonl").read_bytes()
            except FileNotFoundError:
                # Removed by a run that is ending: its report follows.
                stress.wait(timeout=120)
                fail_with_the_runs_report(stress, out)
            parked &= b'"ev":"held"' in data.rstrip(b"\n").rpartition(b"\n")[2]
        return parked
    return held


def test_only_the_clients_stuck_in_the_kernel_are_stalled_not_those_the_checker_held(
        tmp_path, spawn):
    """A filter change of the user's own, paused on their daemon, holds ftrace_lock for
    good while the checker holds the run's record writers for a snapshot (its ops keeps
    tracing started and the records changing, so the checker's snapshots rarely hold and
    it holds the writers long). The snapshot's ListOps waits on the lock; the writers go
    after a second all the same, and block on the lock in their next operation. The run
    is STALLED, and the workers named stalled are the ones blocked in a call for the
    stall timeout, not the ones waiting on the checker: those were named too when the
    hold lasted as long as the lock."""
    out = tmp_path / "out"
    daemon = spawn(["--core-functions", "2048"])
    stop = threading.Event()
    with daemon.connect() as client, client.attach("users", ["vfs_read"]) as session:

        def change_filters() -> None:
            while not stop.is_set():
                for function in ("vfs_read", "vfs_write"):
                    session.set_filter(function, reset=True)

        changer = threading.Thread(target=change_filters)
        changer.start()
        stress = start_stress(out, "--address", daemon.address, "--duration", "300",
                              "--stall-timeout", "3", "--seed", "4", "--no-minimize",
                              *SHORT[2:])
        try:
            wait_until(lambda: assert_running(stress, out) or all(
                (out / "clients" / f"{name}.jsonl").exists() for name in WRITERS), timeout=120)
            wait_until(writers_held(out, stress), timeout=60)
            client.set_failpoint(MOVE_SITE, "1*pause")
            client.wait_failpoint(MOVE_SITE, timeout=60)
            # The run stops at its stall: its invoker, held by nothing, ends. The lock is
            # released then, as the user would, for its teardown.
            wait_until(lambda: b'"ev":"end"' in (out / "clients" / "invoker0.jsonl")
                       .read_bytes(), timeout=120)
        except BaseException:
            stress.send_signal(signal.SIGTERM)  # not waited for to its end
            raise
        finally:
            stop.set()
            client.set_failpoint(MOVE_SITE, "off")
            client.release_failpoint(MOVE_SITE)
            stdout, stderr = stress.communicate(timeout=120)
            changer.join(60)
    assert stress.returncode == 4, stdout + stderr
    report = _report(out)
    assert (report["outcome"], report["error"], report["anomalies"]) == ("stalled", "", [])
    stalled = {w["name"] for w in report["workers"] if w["stalled"]}
    blocked = in_flight_at_stop(report, out)
    # Within the millisecond report.json gives the run's length to.
    assert stalled and all(blocked.get(name, 0) >= 3 - 0.01 for name in stalled), (
        stalled, blocked)
    # The hold the lock outlasted (nearly always this one: its snapshots rarely hold) is
    # evidence of its own.
    unanswered = report["checks"].get("shm held unanswered", 0)
    line = (f"held snapshots not answered 1 s after the writers were held (a ListOps "
            f"waiting on ftrace_lock, or a daemon that slow): {unanswered}\n")
    assert (line in (out / "report.txt").read_text()) == (unanswered > 0), unanswered


def test_a_run_that_cannot_start_leaves_the_previous_runs_results(tmp_path):
    """No daemon answers at --address: the diagnostic every client gives, exit status 2,
    and --out as the previous run left it (its report, history, reproducer, client
    files); nothing written, nothing removed."""
    out = tmp_path / "out"
    (out / "clients").mkdir(parents=True)
    previous = {name: f"previous {name}\n" for name in
                ("report.json", "report.txt", "history.jsonl", "repro.sh", "clients/tracer0.jsonl")}
    for name, text in previous.items():
        (out / name).write_text(text)
    address = f"unix:{tmp_path}/nobody.sock"
    done = subprocess.run([sys.executable, "-m", "clients.stress", "--out", str(out),
                           "--address", address, "--duration", "1", "--connect-timeout", "0.5"],
                          cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (
        2, "", f"ftrace-stress: no ftraced answers at {address} (No such file or directory); "
               "start one with `ftraced`\n")
    assert {str(path.relative_to(out)): path.read_text()
            for path in out.rglob("*") if path.is_file()} == previous


# --- a daemon of the user's (--address) ------------------------------------------------

UNLOAD_SITE = "__ftrace_hash_rec_update:next_page"
TRACING_ENABLED = "/sys/kernel/debug/tracing/tracing_enabled"


def test_what_the_kernel_showed_before_the_run_is_not_the_runs(tmp_path, spawn):
    """A use-after-free from before the run (unload-unlocked's interleaving, forced) stays
    in the log and in the counts' check; a run with no loaders cannot unload a module, so
    it finds nothing of its own: TAINTED, exit status 3, the report in "before the run".
    It was this run's anomaly at -1.410 s, "operations in flight then: none", exit 1."""
    out = tmp_path / "out"
    daemon = spawn(["--core-functions", "2048", "--race", "unload-unlocked"])
    with daemon.connect() as client:
        client.load("uinput")
        client.set_failpoint(UNLOAD_SITE, "1*pause")
        interleave(client, daemon.address, UNLOAD_SITE, "echo function > current_tracer",
                   "rmmod uinput", race=True)
        assert "BUG: KASAN: use-after-free" in client.dmesg()
    done, report = run_stress(out, "--address", daemon.address, "--ops", "60", "--seed",
                              "5", "--no-minimize", "--loaders", "0", "--tracers", "1",
                              "--shells", "1", "--invokers", "1")
    assert done.returncode == 3, done.stdout + done.stderr
    assert (report["outcome"], report["anomalies"], report["error"]) == ("tainted", [], "")
    assert report["operations"]["in_run"] >= 60
    before = {(a["source"], a["kind"]) for a in report["before_run"]}
    assert before == {("dmesg", "KASAN"), ("consistency", "freed-page access")}, before
    assert all(a["phase"] == "before" for a in report["before_run"])
    assert ("\n  before the run: BUG: KASAN: use-after-free in __ftrace_hash_rec_update"
            in done.stdout), done.stdout
    assert "\n  the run found no anomaly of its own\n" in done.stdout
    text = (out / "report.txt").read_text()
    assert "outcome:   TAINTED (exit status 3)" in text
    assert "Anomalies: none" in text and "\nBefore the run (not the run's" in text


def test_a_report_dmesg_c_cleared_before_the_run_is_not_the_runs(tmp_path, spawn):
    """``dmesg -c`` empties syslog's view, not the ring the run follows: tracing_enabled's
    WARNING (trace.c:2969) printed before it is the kernel's past, reported before the run
    (the kernel stays tainted by it): TAINTED, exit status 3. It was this run's anomaly at
    -1.58 s, exit 1 (the baseline read syslog's empty view, the follower the ring)."""
    daemon = spawn(["--core-functions", "2048"])
    with daemon.connect() as client:
        client.write_file(TRACING_ENABLED, "0\n")
        client.write_file(TRACING_ENABLED, "1\n")
        cleared = client.dmesg_lines(clear=True)
        assert "WARNING: at kernel/trace/trace.c:2969 " in cleared.text
        after = client.dmesg_lines()
        assert (list(after.lines), after.next_seq) == ([], cleared.lines[-1].seq + 1)
    out = tmp_path / "out"
    done, report = run_stress(out, "--address", daemon.address, "--duration", "2", "--seed", "5",
                              "--no-minimize", *SHORT[2:])
    assert done.returncode == 3, done.stdout + done.stderr
    assert (report["outcome"], report["anomalies"], report["error"]) == ("tainted", [], "")
    [before] = report["before_run"]
    assert (before["kind"], before["phase"]) == ("WARNING", "before")
    assert before["message"].startswith("WARNING: at kernel/trace/trace.c:2969 tracing_ctrl_write")


def test_each_line_of_the_log_is_counted_once(spawn):
    """The follower's lines are not read again by the final check: the dmesg lines
    counted are the lines the log grew by (a buggy daemon's 4 s run: 11 lines, 22
    counted)."""
    daemon = spawn(["--core-functions", "2048"])
    checker = Checker(daemon.address, 60.0, lambda anomaly: None, lambda why: None)
    try:
        with daemon.connect() as client:
            checker.baseline()
            start = client.dmesg_lines().next_seq
            checker.start()
            client.write_file(TRACING_ENABLED, "0\n")  # a WARN
            grown = client.dmesg_lines().next_seq - start
            assert grown > 5
            deadline = time.monotonic() + 60
            while checker.counts["dmesg lines"] < grown:  # the follower has them all
                assert time.monotonic() < deadline, checker.counts
                time.sleep(0.01)
            checker.stop()
            checker.final_check()
            assert checker.counts["dmesg lines"] == grown
    finally:
        checker.stop()
        checker.close()


def test_a_run_on_a_kernel_whose_ftrace_is_dead_does_not_start(tmp_path, spawn):
    """A code modification failed (ftrace_bug(), then ftrace_kill()) before the run: every
    change would fail with ENODEV, so no client starts, and the report says why."""
    out = tmp_path / "out"
    daemon = spawn(["--core-functions", "2048", "--race", "load-count",
                    "--failpoint", "add_breakpoints=1*error(EFAULT)"])
    with daemon.connect() as client:
        client.write_file("/sys/kernel/debug/tracing/current_tracer", "function\n")
        assert client.stats().ftrace_disabled
    done, report = run_stress(out, "--address", daemon.address, "--duration", "5",
                              "--seed", "5")
    with daemon.connect() as client:  # nothing was armed on a dead ftrace
        assert not any(f.spec for f in client.list_failpoints())
    assert done.returncode == 3, done.stdout + done.stderr
    assert (report["outcome"], report["ran_s"], report["workers"]) == ("tainted", None, [])
    # The baseline's checks are not the run's (they were: consistency over RPC: 1; ...).
    assert report["checks"] == {}
    assert [a["kind"] for a in report["before_run"]] == ["ftrace disabled", "WARNING"]
    assert done.stdout.startswith(
        "ftrace-stress: TAINTED (seed 5, did not start)\n"
        "  before the run: ftrace disabled (ftrace_kill()) before the run started: every "
        "change to it fails with ENODEV until the daemon reboots\n"
        "  before the run: WARNING: at kernel/trace/ftrace.c:1578 ftrace_bug"), done.stdout
    assert "--race load-count" in report["configuration"]["boot_command"]


def test_a_run_leaves_the_users_daemon_as_it_found_it(tmp_path, spawn):
    """The modules the run's loaders loaded are unloaded, the one they unloaded is loaded
    again, and the filter files and the tracer read as before the run (after a clean run
    dummy and uinput stayed loaded, the filter files kept a line each and the tracer
    was nop)."""
    out = tmp_path / "out"
    daemon = spawn(["--core-functions", "2048"])
    tracing = "/sys/kernel/debug/tracing"
    files = ("set_ftrace_filter", "set_ftrace_notrace", "current_tracer")
    with daemon.connect() as client:
        client.load("loop")
        core = [line for line in client.read_file(f"{tracing}/available_filter_functions")
                .decode().splitlines() if " [" not in line]
        client.write_file(f"{tracing}/set_ftrace_filter", f"{core[5]} lo_open:mod:loop\n")
        client.write_file(f"{tracing}/set_ftrace_notrace", f"{core[7]}\n")
        client.write_file(f"{tracing}/current_tracer", "function\n")
        before = {name: client.read_file(f"{tracing}/{name}") for name in files}
    assert b"lo_open [loop]" in before["set_ftrace_filter"]
    done, report = run_stress(out, "--address", daemon.address, "--ops", "300", "--seed", "3",
                              "--no-minimize", "--tracers", "1", "--loaders", "2",
                              "--shells", "2", "--invokers", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    with daemon.connect() as client:
        assert {m.name for m in client.list_modules()} == {"loop"}
        assert {name: client.read_file(f"{tracing}/{name}") for name in files} == before
    restored = report["daemon"]["restored"]
    assert restored["left"] == [] and "current_tracer" in restored["rewritten"], restored
    assert "\nrestored:  " in (out / "report.txt").read_text()


def armed(address: str) -> dict[str, str]:
    """The failpoints armed on the daemon at ``address`` now."""
    with Client(address) as client:
        return {point.name: point.spec for point in client.list_failpoints() if point.spec}


def test_the_failpoints_armed_on_the_users_daemon_are_the_runs(tmp_path, spawn):
    """One armed over RPC after the boot is the run's (GetConfig names only the boot's):
    the run arms nothing of its own, and its report's kernel (the replays' boot) has it.
    (Runs took the boot's failpoints from GetConfig alone: they armed
    before_count=50%sleep(3) beside it, and left it armed.)"""
    daemon = spawn(["--core-functions", "2048", "--race", "load-count"])
    with daemon.connect() as client:
        client.set_failpoint(PUBLISH_SITE, "30%sleep(1)")
    done, report = run_stress(tmp_path / "out", "--address", daemon.address, "--ops", "40",
                              "--seed", "7", "--no-minimize", *SHORT[2:])
    assert armed(daemon.address) == {PUBLISH_SITE: "30%sleep(1)"}
    assert done.returncode in (0, 1) and not report["error"], done.stdout + done.stderr
    conf = report["configuration"]
    assert conf["auto_failpoints"] == {}
    assert f"{PUBLISH_SITE}=30%sleep(1)" in conf["boot"]
    assert conf["boot_command"].startswith("ftraced --variant fixed --race load-count "
                                           f"--failpoint '{PUBLISH_SITE}=30%sleep(1)' ")
    assert f"kernel:    {conf['boot_command']}  (daemon at" in (tmp_path / "out" /
                                                              "report.txt").read_text()


def test_the_failpoints_a_run_arms_on_the_users_daemon_are_disarmed_after_it(tmp_path, spawn):
    """With nothing armed the run widens the race window, and disarms it at its end, or
    when SIGTERM ends it: the user's later module loads do not sleep in it. (A daemon
    each: a run may leave ftrace killed, and the next would not start.)"""
    boot = ["--core-functions", "2048", "--race", "load-count"]
    widened = {LOAD_SITE: "50%sleep(3)"}
    daemon = spawn(boot)
    done, report = run_stress(tmp_path / "one", "--address", daemon.address, "--ops", "40",
                              "--seed", "7", "--no-minimize", *SHORT[2:])
    assert done.returncode in (0, 1) and not report["error"], done.stdout + done.stderr
    assert report["configuration"]["auto_failpoints"] == widened
    assert report["daemon"]["failpoints_disarmed"] is True
    assert "(chosen for the open race windows; disarmed at the end)" in (
        tmp_path / "one" / "report.txt").read_text()
    assert armed(daemon.address) == {}
    daemon = spawn(boot)
    out = tmp_path / "two"
    # No anomaly of a kind this race gives ends it: SIGTERM does. The ftrace_kill() of
    # the WARN it may give would too, once a check saw it: they are a minute apart, and
    # the run is disarmed whichever way it ends.
    stress = start_stress(out, "--address", daemon.address, "--duration", "120",
                          "--seed", "8", "--no-minimize", "--stop-on", "kasan",
                          "--check-interval", "60", *SHORT[2:])
    deadline = time.monotonic() + 120
    while stress.poll() is None and (armed(daemon.address) != widened or not any(
            b'"ev":"complete"' in path.read_bytes()
            for path in (out / "clients").glob("*.jsonl"))):
        assert time.monotonic() < deadline, "never started"
        time.sleep(0.05)
    if stress.poll() is None:
        stress.send_signal(signal.SIGTERM)
    stdout, stderr = stress.communicate(timeout=120)
    report = _report(out)
    assert stress.returncode == 2 or report["ended_at_kill"], stdout + stderr
    assert report["daemon"]["failpoints_disarmed"] is True
    assert armed(daemon.address) == {}


# --- the long form: make stress ---------------------------------------------------------


@pytest.mark.stress_long
@pytest.mark.timeout(3600)
def test_fixed_stays_clean_through_100000_operations_from_16_clients(tmp_path):
    done, report = run_stress(
        tmp_path / "out", "--variant", "fixed", "--seed", "100", "--ops", "100000",
        "--tracers", "4", "--loaders", "4", "--shells", "4", "--invokers", "4", timeout=3600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert report["outcome"] == "clean"
    assert len(report["workers"]) == 16 and all(w["status"] == 0 for w in report["workers"])
    completed = sum(1 for op in history(tmp_path / "out")
                    if op["complete_ns"] is not None and op["client"] != "teardown")
    assert completed >= 100_000
    print(f"\nfixed: {completed} operations from 16 clients in {report['ran_s']} s "
          f"({report['operations']['per_second']}/s), {report['checks']}")


@pytest.mark.stress_long
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("seed", [11, 12, 13])
@pytest.mark.parametrize("variant, race", [("buggy", None), ("fixed", None),
                                           *(("fixed", race) for race in RACES)])
def test_outcome_table_long(tmp_path, variant, race, seed):
    args = outcome_args(variant, race, seed)
    if variant == "fixed" and race is None:
        args = [arg if arg != "2400" else "20000" for arg in args]
    done, report = run_stress(tmp_path / "out", "--no-minimize", *args, timeout=1800)
    check_outcome(done, report, variant, race, tmp_path / "out")
