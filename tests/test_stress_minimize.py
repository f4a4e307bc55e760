"""The reproducer search on a history written by hand: which order of replay finds it.

The history is one a buggy run of ``ftrace-stress`` left (one shell, one loader): a
filter write matched its records, then a modprobe brought ``dummy`` back at the
address a stale hash entry names, then the write's release moved the new hash in and
the disable of the old one went below zero. Ordered by when each operation first held
ftrace_lock, the write replays before the modprobe and nothing happens; ordered by when
each last held it (the release's hash move), the replay WARNs. A second history, of a
tracer client, orders its filter change by the lock times its stream's answers carry, by
the first and, as for the filter write, by the last; with other clients' sessions beside it,
the WARN's ``Pid:`` line says which session to try first.
"""

from __future__ import annotations

import dataclasses

from clients.stress.checker import Anomaly
from clients.stress.config import BootSpec
from clients.stress.history import Op
from clients.stress import minimize, replay
from clients.stress.minimize import (Minimizer, SearchInput, Target, _Pair, interleaving_steps,
                                     interleaving_verdict)
from clients.stress.replay import Observation, Replayer

WARN = "WARNING: at kernel/trace/ftrace.c:1529 __ftrace_hash_rec_update+0x1e3/0x230()"
MS = 1_000_000
#: The run's WARN, seen at 35 ms, as the load-count tests have it.
WARNED = Anomaly("dmesg", "WARNING", WARN, 35 * MS, 35 * MS)
LOAD_COUNT_BOOT = BootSpec((("--variant", "fixed"), ("--race", "load-count"),
                            ("--core-functions", "2048")))


def op(n: int, kind: str, name: str, args: dict, invoked: int, completed: int,
       lock: list[int]) -> Op:
    value = {"already_loaded": False} if name == "modprobe" else None
    return Op(f"{kind}0#{n}", f"{kind}0", kind, 1000 + n, name, args, invoked * MS,
              float(invoked), completed * MS, float(completed), "ok", None, value,
              [t * MS for t in lock])


def write(n: int, file: str, text: str, invoked: int, completed: int, lock: list[int]) -> Op:
    return op(n, "shell", "write", {"file": file, "text": text, "append": False},
              invoked, completed, lock)


def module(n: int, name: str, module_name: str, invoked: int, lock: int) -> Op:
    return op(n, "loader", name, {"module": module_name}, invoked, lock + 1, [lock])


HISTORY = [
    module(1, "modprobe", "dummy", 5, 10),
    module(2, "modprobe", "loop", 15, 20),
    write(3, "set_ftrace_filter", "dummy_get_stats64", 25, 33, [30, 31, 32]),
    write(4, "current_tracer", "function", 35, 41, [40]),
    module(5, "rmmod", "dummy", 45, 50),
    # Matches at 60 while it writes, moves its hash in at 80 when it is released ...
    write(6, "set_ftrace_filter", "do_lo_send_direct_write", 58, 82, [60, 61, 80]),
    # ... and dummy comes back at its old address in between.
    module(7, "modprobe", "dummy", 65, 70),
    # The run's teardown, after the WARN: ftrace is dead.
    Op("teardown#1", "teardown", "teardown", 999, "write",
       {"file": "current_tracer", "text": "nop", "append": False}, 90 * MS, 90.0, 91 * MS,
       91.0, "error", "ENODEV"),
]


def test_a_filter_write_replays_where_its_release_held_ftrace_lock(tmp_path):
    warned = Anomaly("dmesg", "WARNING", WARN, 81 * MS, 81 * MS)
    boot = BootSpec((("--variant", "buggy"), ("--core-functions", "2048")))
    found = Minimizer(boot, HISTORY, [warned], {}, str(tmp_path), 0, max_replays=20).run()
    assert found.kind == "sequential", found.notes
    first, last = (note for note in found.notes if note.startswith("candidate:"))
    assert first.endswith("no anomaly") and "took ftrace_lock" in first, found.notes
    assert last.endswith("reproduced") and "last held it" in last, found.notes
    # dummy back where the filter's stale entry points, and the filter's hash disabled.
    commands = found.commands
    assert commands.index("rmmod dummy") < commands.index("modprobe dummy", 1), commands
    assert commands[-1].endswith("> current_tracer"), commands
    assert found.target.kind == "WARNING" and found.confirmed, found.confirmation


def test_a_missing_reference_alone_is_the_target_it_shows_not_the_warn_it_may_become():
    seen = Observation(anomalies=[("missing reference: dummy_get_stats64 [dummy]", "dummy", 6)],
                       kinds={("consistency", "missing reference"): 6})
    assert seen.shows("dmesg", "WARNING")  # what it would become once disabled
    target = Target.strongest(seen, 81 * MS)
    assert (target.source, target.kind, target.module) == (
        "consistency", "missing reference", "dummy")


def tracer(n: int, name: str, args: dict, invoked: int, completed: int, lock: list[int]) -> Op:
    return op(n, "tracer", name, {"name": "tracer0.s1", **args}, invoked, completed, lock)


#: The run of a robustness review (seed 2146479862), cut to what matters: a tracer client's
#: set_filter to a dummy function and a rmmod of dummy overlapped; the filter matched and
#: moved its hash in first, but its answer came after the rmmod's. dummy then came back
#: where the entry points, and the unregister WARNed.
TRACER_HISTORY = [
    module(1, "modprobe", "dummy", 5, 10),
    tracer(1, "register", {"filter": ["vfs_read"], "notrace": []}, 15, 21, [17, 20]),
    tracer(2, "set_filter", {"text": "dummy_validate", "reset": True, "notrace": False},
           30, 52, [32, 34]),
    module(2, "rmmod", "dummy", 31, 40),
    module(3, "modprobe", "dummy", 55, 60),
    tracer(3, "unregister", {}, 65, 70, [67]),
    HISTORY[-1],  # the run's teardown
]


def test_a_tracer_filter_change_replays_where_it_held_ftrace_lock(tmp_path):
    """Tracer answers carry when they held ftrace_lock (TracerEvent.lock_acquired_ns): the
    session's candidate keeps the set_filter before the rmmod it overlapped, though the
    rmmod answered first. Ordered by completion, the filter came after the rmmod, matched
    nothing, and 3 of 7 buggy runs found no sequential reproducer."""
    warned = Anomaly("dmesg", "WARNING", WARN, 67 * MS, 67 * MS, ops=["tracer0.s1"])
    boot = BootSpec((("--variant", "buggy"), ("--core-functions", "2048")))
    found = Minimizer(boot, TRACER_HISTORY, [warned], {}, str(tmp_path), 0,
                      max_replays=20).run()
    assert found.kind == "sequential", found.notes
    session = next(note for note in found.notes if "tracer session tracer0.s1" in note)
    assert session.endswith("reproduced"), found.notes
    commands = found.commands
    assert commands.index("echo dummy_validate > set_ftrace_filter") < commands.index(
        "rmmod dummy") < commands.index("modprobe dummy", 1), commands
    assert found.target.kind == "WARNING" and found.confirmed, found.confirmation


#: A tracer session's set_filter, as the filter write of HISTORY: it matches at 60 and moves
#: its hash in at 80, and dummy comes back at its old address in between, so the disable
#: of the old hash (its entry for the unloaded dummy_get_stats64) finds the new record.
SET_FILTER_HISTORY = [
    module(1, "modprobe", "dummy", 5, 10),
    tracer(1, "register", {"filter": ["dummy_get_stats64"], "notrace": []}, 15, 21, [17, 20]),
    module(2, "rmmod", "dummy", 45, 50),
    tracer(2, "set_filter", {"text": "vfs_read", "reset": True, "notrace": False},
           58, 82, [60, 80]),
    module(3, "modprobe", "dummy", 65, 70),
    HISTORY[-1],  # the run's teardown, after the WARN
]


def test_a_tracer_session_replays_where_its_set_filter_last_held_ftrace_lock(tmp_path):
    """The session's first candidate (first holds: the set_filter before the modprobe)
    replays no anomaly; the second (last holds) WARNs. The loaders' operations are in the
    same order by every time, so their candidate is replayed once, not three times."""
    warned = Anomaly("dmesg", "WARNING", WARN, 81 * MS, 81 * MS, ops=["tracer0.s1"])
    boot = BootSpec((("--variant", "buggy"), ("--core-functions", "2048")))
    found = Minimizer(boot, SET_FILTER_HISTORY, [warned], {}, str(tmp_path), 0,
                      max_replays=20).run()
    assert found.kind == "sequential", found.notes
    plain, first, last = (note for note in found.notes if note.startswith("candidate:"))
    assert "loaders' operations in the order they took" in plain, found.notes
    assert "tracer session tracer0.s1" in first and "took ftrace_lock" in first, found.notes
    assert first.endswith("no anomaly"), found.notes
    assert "tracer session tracer0.s1" in last and "last held it" in last, found.notes
    assert last.endswith("reproduced"), found.notes
    # Cut down, the missing reference the modprobe leaves is enough: the teardown WARNs.
    commands = found.commands
    assert commands.index("rmmod dummy") < commands.index("modprobe dummy", 1), commands
    assert commands[-1] == "echo nop > current_tracer", commands
    assert found.target.kind == "WARNING" and found.confirmed, found.confirmation


def decoy_session(n: int, session: str, at: int) -> list[Op]:
    """Another tracer client's session, registered and gone before the WARN."""
    args = {"name": session, "filter": ["vfs_read"], "notrace": []}
    return [Op(f"tracer1#{n}", "tracer1", "tracer", 2000, "register", args, at * MS,
               float(at), (at + 1) * MS, float(at + 1), "ok", None, None, [at * MS]),
            Op(f"tracer1#{n + 1}", "tracer1", "tracer", 2000, "unregister",
               {"name": session}, (at + 2) * MS, float(at + 2), (at + 3) * MS,
               float(at + 3), "ok", None, None, [(at + 2) * MS])]


def test_the_sessions_of_the_task_that_warned_are_tried_first(tmp_path):
    """A WARN names no ops, but its ``Pid:`` line names the task whose hash walk went below
    zero. Three sessions of another client, registered after the guilty one, took every
    session slot, and the run found no reproducer (a buggy run, seed 33)."""
    guilty = [dataclasses.replace(op, pid=1001) if op.kind == "tracer" else op
              for op in TRACER_HISTORY]
    decoys = [*decoy_session(1, "tracer1.s2", 42), *decoy_session(3, "tracer1.s5", 50),
              *decoy_session(5, "tracer1.s6", 61)]
    history = sorted(guilty + decoys, key=lambda op: op.invoke_ns)
    warned = Anomaly("dmesg", "WARNING", WARN, 67 * MS, 67 * MS, detail=[
        f"[    0.067000] {WARN}",
        "[    0.067000] Pid: 1001, comm: ftrace-tracer Not tainted 3.6.11+ #1"])
    boot = BootSpec((("--variant", "buggy"), ("--core-functions", "2048")))
    found = Minimizer(boot, history, [warned], {}, str(tmp_path), 0, max_replays=20).run()
    assert found.kind == "sequential", found.notes
    sessions = [note for note in found.notes if "tracer session" in note]
    assert "tracer session tracer0.s1" in sessions[0] and sessions[0].endswith("reproduced"), \
        found.notes


def test_an_interleaving_that_shows_only_another_anomaly_says_so(tmp_path):
    """load-count: the run WARNed, and the one interleaving its operations give, the
    modprobe held before its count while the function tracer goes off, leaks a
    reference instead. It is given, as one that showed another anomaly, not as a
    reproducer of the run's."""
    history = [write(1, "current_tracer", "function", 5, 11, [10]),
               module(2, "modprobe", "dummy", 20, 30),
               write(3, "current_tracer", "nop", 22, 28, [25])]
    boot = LOAD_COUNT_BOOT
    found = Minimizer(boot, history, [WARNED], {}, str(tmp_path), 0, max_replays=12).run()
    assert found.kind == "interleaving", found.notes
    shown = found.interleaving
    assert shown["verified"] and not shown["reproduces"], shown
    assert shown["held"]["command"] == "modprobe dummy", shown
    assert "leaked reference" in shown["observed"], shown
    assert "the first that showed another one is given" in " ".join(found.notes)
    script = (tmp_path / "repro.sh").read_text()
    assert "the interleaving below showed another anomaly, not the run's." in script, script
    assert "reproduces the anomaly" not in script


#: dummy's references leaked: load-count lost a switch off made while it loaded.
DUMMY_LEAKED = Anomaly("consistency", "leaked reference",
                       "leaked reference: dummy_set_address [dummy] at 0xffffffffa0000000: "
                       "count 1, expected 0 (ops: none), patched", 35 * MS, 35 * MS,
                       module="dummy")


def check_switched_off_after_on(found) -> None:
    """The interleaving that shows the leak: the switch off racing the modprobe, after the
    switch on."""
    shown = found.interleaving
    assert found.kind == "interleaving" and shown["reproduces"], (shown, found.notes)
    assert shown["racing"]["command"] == "echo nop > current_tracer", shown
    assert shown["prefix"] == ["echo function > current_tracer"], shown


def test_an_interleaving_for_a_leak_tries_first_the_update_that_takes_references(tmp_path):
    """load-count loses the update made while a module loads: one that switches the
    function tracer on leaves the module's references missing, one that switches it off
    leaves them leaked. The run leaked one, and both kinds of update overlapped its
    modprobe: the switch off is tried first, after the switch on that came before the
    modprobe, within the few replays a run has left (the search tried the switch on
    first, whose missing reference it gave as "another anomaly", in 2 of 14 runs of the
    outcome table's load-count row)."""
    history = [write(1, "current_tracer", "function", 5, 11, [10]),
               module(2, "modprobe", "dummy", 20, 30),
               write(3, "current_tracer", "function", 21, 23, [22]),
               write(4, "current_tracer", "nop", 24, 26, [25])]
    found = Minimizer(LOAD_COUNT_BOOT, history, [DUMMY_LEAKED], {}, str(tmp_path), 0,
                      max_replays=4).run()
    check_switched_off_after_on(found)


def test_an_interleaving_for_a_leak_starts_from_the_tracer_state_its_update_changed(tmp_path):
    """The outcome table's load-count row, as a run under load had it: the tracer was off
    when dummy's modprobe began, was switched on and, racing it, off, and dummy's
    references leaked. The switch off changes something only with the tracer on: the
    state to replay it from is the one it changed, not the one when the modprobe began
    (from which every replay of the pair switched off a tracer already off, and the
    interleaving went unverified). The switch on held ftrace_lock before the switch off
    but answered after it began: only the lock's order says which came first."""
    history = [module(1, "modprobe", "dummy", 20, 30),
               write(2, "current_tracer", "function", 21, 25, [22]),
               write(3, "current_tracer", "nop", 23, 26, [24])]
    found = Minimizer(LOAD_COUNT_BOOT, history, [DUMMY_LEAKED], {}, str(tmp_path), 0,
                      max_replays=8).run()
    check_switched_off_after_on(found)


#: unload-unlocked, as a run (seed 3) had it: the modprobe of uinput overlapped the switch
#: to the function tracer and ended before the rmmod began; the switch, held in its walk
#: of the record pages, then touched uinput's freed page.
KASAN = "BUG: KASAN: use-after-free in __ftrace_hash_rec_update"
UNLOAD_HISTORY = [
    module(1, "modprobe", "uinput", 5, 30),
    write(2, "current_tracer", "function", 20, 50, [45]),
    module(3, "rmmod", "uinput", 35, 40),
]
UNLOAD_BOOT = BootSpec((("--variant", "fixed"), ("--race", "unload-unlocked"),
                        ("--core-functions", "2048")))


def test_an_interleaving_is_replayed_with_the_module_its_rmmod_unloads_loaded(tmp_path):
    """The setup took only operations completed before the held one began, which the
    modprobe was not: the rmmod found no uinput, and the interleaving was NOT verified."""
    used = Anomaly("dmesg", "KASAN", KASAN, 55 * MS, 55 * MS, module="uinput")
    found = Minimizer(UNLOAD_BOOT, UNLOAD_HISTORY, [used], {}, str(tmp_path), 0,
                      max_replays=8).run()
    shown = found.interleaving
    assert found.kind == "interleaving" and shown["verified"] and shown["reproduces"], (
        shown, found.notes)
    assert shown["prefix"] == ["modprobe uinput"], shown
    assert (shown["held"]["command"], shown["racing"]["command"]) == (
        "echo function > current_tracer", "rmmod uinput"), shown
    assert "use-after-free" in shown["observed"], shown


def test_an_interleaving_not_verified_is_given_with_the_setup_it_needs(tmp_path):
    """No replay left for the interleavings (the two sequential candidates took them):
    the pair is given, not verified, with the modprobe its rmmod needs (it was given with
    no setup at all, a rmmod of a module never loaded)."""
    used = Anomaly("dmesg", "KASAN", KASAN, 55 * MS, 55 * MS, module="uinput")
    found = Minimizer(UNLOAD_BOOT, UNLOAD_HISTORY, [used], {}, str(tmp_path), 0,
                      max_replays=2).run()
    shown = found.interleaving
    assert found.kind == "interleaving" and not shown["verified"], (shown, found.notes)
    assert shown["prefix"] == ["modprobe uinput"], shown
    assert "with the setup the history says it needs, not verified" in " ".join(found.notes)
    script = (tmp_path / "repro.sh").read_text()
    assert "# run, in ftrace-shell: modprobe uinput" in script, script


def test_the_setup_an_interleaving_needs_loads_its_module_once(tmp_path):
    """The review's pair, both operations a rmmod of uinput: one modprobe, where each
    rmmod added its own (only the racing operation of a pair is ever a rmmod)."""
    used = Anomaly("dmesg", "KASAN", KASAN, 55 * MS, 55 * MS, module="uinput")
    history = [*UNLOAD_HISTORY, module(4, "rmmod", "uinput", 36, 41)]
    minimizer = Minimizer(UNLOAD_BOOT, history, [used], {}, str(tmp_path), 0, max_replays=0)
    pair = _Pair("unload-unlocked", history[3], history[2], history)
    assert [line.command for line in minimizer._needed(pair)] == ["modprobe uinput"]


def test_an_interleaving_that_leaves_the_missing_reference_a_warn_comes_from_gets_the_teardown(
        tmp_path):
    """load-count: the run WARNed; the interleaving, the modprobe held before its count
    while the function tracer goes on, leaves the module's references missing, which
    counts as the WARN it becomes, but shows no WARN. The run's teardown after it, echo
    nop > current_tracer, makes the kernel WARN: it is the interleaving's last step, and
    what it is said to show is the WARN (it said "reproduces the anomaly: missing
    reference ..." with no such step, a run of seed 3)."""
    history = [module(1, "modprobe", "dummy", 20, 30),
               write(2, "current_tracer", "function", 22, 28, [25]),
               Op("teardown#1", "teardown", "teardown", 999, "write",
                  {"file": "current_tracer", "text": "nop", "append": False}, 90 * MS, 90.0,
                  91 * MS, 91.0, "ok", None, None, [90 * MS])]
    boot = LOAD_COUNT_BOOT
    found = Minimizer(boot, history, [WARNED], {}, str(tmp_path), 0, max_replays=8).run()
    shown = found.interleaving
    assert found.kind == "interleaving" and shown["reproduces"], (shown, found.notes)
    assert not shown["precedes"] and shown["after"] == ["echo nop > current_tracer"], shown
    assert shown["observed"].startswith("WARNING: at kernel/trace/ftrace.c:1529"), shown
    steps = interleaving_steps(shown, boot)
    assert steps[-2].startswith("then, in shell B: echo nop > current_tracer   (the run's "
                                "teardown"), steps
    assert steps[-1].startswith("on a fresh daemon it reproduces the anomaly: WARNING: at "
                                "kernel/trace/ftrace.c:1529"), steps
    script = (tmp_path / "repro.sh").read_text()
    assert "# then, in shell B: echo nop > current_tracer" in script, script


def test_an_interleaving_that_shows_the_missing_reference_but_no_warn_says_so(tmp_path):
    """As above with no teardown to try: the replay's missing reference is not the run's
    WARN, and the verdict says which anomaly it showed."""
    history = [module(1, "modprobe", "dummy", 20, 30),
               write(2, "current_tracer", "function", 22, 28, [25])]
    boot = LOAD_COUNT_BOOT
    found = Minimizer(boot, history, [WARNED], {}, str(tmp_path), 0, max_replays=8).run()
    shown = found.interleaving
    assert found.kind == "interleaving" and shown["verified"], (shown, found.notes)
    assert shown["precedes"] and not shown["reproduces"] and shown["after"] == [], shown
    assert interleaving_verdict(shown) == ("showed another anomaly, not the run's WARN: the "
                                           "missing reference it comes from")
    assert interleaving_steps(shown, boot)[-1].startswith(
        "on a fresh daemon it showed another anomaly, not the run's WARN: the missing "
        "reference it comes from: missing reference: "), shown
    assert "no replay of it WARNed" in " ".join(found.notes), found.notes


def test_a_freed_page_the_check_read_is_replayed_as_the_interleaving_that_frees_it(tmp_path):
    """unload-unlocked, as a run (seed 5) had it: the consistency check's walk met uinput's
    page group freed under it (it reported a leaked reference of the slab poison, and the
    search found only "another anomaly"). The freed-page access is the target, and the
    interleaving that frees the page under a hash walk shows it again."""
    used = Anomaly("consistency", "freed-page access",
                   "freed-page access: record page at 0xffff88003c0a5000 of uinput "
                   "(check_consistency)", 55 * MS, 55 * MS, module="uinput")
    found = Minimizer(UNLOAD_BOOT, UNLOAD_HISTORY, [used], {}, str(tmp_path), 0,
                      max_replays=8).run()
    shown = found.interleaving
    assert found.kind == "interleaving" and shown["verified"] and shown["reproduces"], (
        shown, found.notes)
    assert (shown["held"]["command"], shown["racing"]["command"]) == (
        "echo function > current_tracer", "rmmod uinput"), shown


def tracer(n: int, name: str, args: dict, invoked: int) -> Op:
    return op(n, "tracer", name, args, invoked, invoked + 1, [invoked])


def test_a_history_shorter_than_the_window_is_searched_whole():
    search = SearchInput(81 * MS)
    for each in HISTORY:
        search.add(each)
    assert search.ops == HISTORY and search.note == ""


def test_the_search_holds_the_window_and_what_the_kernel_may_still_hold_of_the_rest():
    """Before the window, only what the kernel may still hold when it begins: the loads of
    modules still loaded, the last switch of the tracer, the filter's writes since its
    truncation, the live sessions; after the horizon, only the teardown."""
    refused = dataclasses.replace(module(15, "rmmod", "uinput", 27, 28), result="error",
                                  errno="ENOENT")
    history = [
        module(1, "modprobe", "loop", 1, 2),
        module(2, "modprobe", "dummy", 3, 4),
        write(3, "set_ftrace_filter", "dummy_open", 5, 6, [5]),
        module(4, "rmmod", "loop", 6, 7),
        write(5, "set_ftrace_filter", "dummy_close", 8, 9, [8]),
        dataclasses.replace(write(6, "set_ftrace_filter", "dummy_ioctl", 10, 11, [10]),
                            args={"file": "set_ftrace_filter", "text": "dummy_ioctl",
                                  "append": True}),
        write(7, "current_tracer", "function", 12, 13, [12]),
        write(8, "current_tracer", "nop", 14, 15, [14]),
        tracer(9, "register", {"name": "tracer0.s1", "filter": ["a"], "notrace": []}, 16),
        tracer(10, "set_filter", {"name": "tracer0.s1", "text": "b", "reset": False,
                                  "notrace": False}, 18),
        # Refused: the worker cancels the session's stream, which unregisters it.
        dataclasses.replace(tracer(11, "unregister", {"name": "tracer0.s1"}, 20),
                            result="error", errno="EINVAL"),
        tracer(12, "register", {"name": "tracer0.s2", "filter": ["c"], "notrace": []}, 22),
        tracer(13, "set_filter", {"name": "tracer0.s2", "text": "d", "reset": False,
                                  "notrace": False}, 24),
        op(14, "invoker", "invoke", {"function": "dummy_open", "count": 1}, 26, 26, []),
        refused,
        # The window: the last three before the horizon (50 ms).
        op(16, "invoker", "invoke", {"function": "dummy_open", "count": 1}, 30, 30, []),
        write(17, "set_ftrace_notrace", "dummy_open", 32, 33, [32]),
        module(18, "modprobe", "nbd", 34, 35),
        write(19, "current_tracer", "function", 60, 61, [60]),
        HISTORY[-1],  # the teardown
    ]
    search = SearchInput(50 * MS, window=3)
    for each in history:
        search.add(each)
    assert [o.id.partition("#")[2] for o in search.ops] == [
        "2", "5", "6", "8", "12", "13", "16", "17", "18", "1"], search.ops
    assert search.note.startswith("the search holds the last 3 operations invoked before the "
                                  "anomaly was seen; the 15 before them are left out but 6 "), \
        search.note


def test_what_the_search_holds_does_not_grow_with_the_run(monkeypatch):
    """However many operations come before the window, it holds the window and at most
    KEPT_WRITES writes a filter file."""
    monkeypatch.setattr(minimize, "KEPT_WRITES", 4)
    search = SearchInput(10**9 * MS, window=10)
    for n in range(1, 20_001):
        search.add(dataclasses.replace(
            write(n, "set_ftrace_filter", f"f{n}", n, n, [n]),
            args={"file": "set_ftrace_filter", "text": f"f{n}", "append": True}))
    assert len(search.ops) == 14, len(search.ops)
    assert search.note.endswith(", less 19986 writes beyond the last 4 of a file or "
                                "session"), search.note


def test_a_window_that_holds_what_the_anomaly_needs_finds_the_reproducer_the_whole_does(
        tmp_path):
    """The history of the first test after a load and unload of nbd, searched through a
    window of its last five operations: nbd goes, the two loads before the window stand
    for themselves, and the search finds what it finds in the whole history."""
    warned = Anomaly("dmesg", "WARNING", WARN, 81 * MS, 81 * MS)
    search = SearchInput(81 * MS, window=5)
    for each in [module(11, "modprobe", "nbd", 1, 2), module(12, "rmmod", "nbd", 3, 4),
                 *HISTORY]:
        search.add(each)
    assert search.ops == HISTORY
    boot = BootSpec((("--variant", "buggy"), ("--core-functions", "2048")))
    found = Minimizer(boot, search.ops, [warned], {}, str(tmp_path), 0, max_replays=20,
                      window_note=search.note).run()
    assert found.notes[0] == search.note and "the 4 before them" in search.note, found.notes
    assert found.kind == "sequential" and found.confirmed, found.notes
    commands = found.commands
    assert commands.index("rmmod dummy") < commands.index("modprobe dummy", 1), commands


def test_a_module_loaded_and_unloaded_before_the_window_stays_when_a_filter_named_it_between(
        tmp_path):
    """8c4f3c3's history through a window of its last two operations: dummy's load and
    unload fall before it, with the filter write between them that leaves dummy's
    addresses in the hash. The pair stays, so the reload in the window meets them and
    WARNs as in the whole history (handed the write without dummy, the search replayed a
    filter that matched nothing, and found no reproducer)."""
    warned = Anomaly("dmesg", "WARNING", WARN, 81 * MS, 81 * MS)
    search = SearchInput(81 * MS, window=2)
    for each in HISTORY:
        search.add(each)
    assert search.ops == HISTORY, search.ops
    boot = BootSpec((("--variant", "buggy"), ("--core-functions", "2048")))
    found = Minimizer(boot, search.ops, [warned], {}, str(tmp_path), 0, max_replays=20,
                      window_note=search.note).run()
    assert found.kind == "sequential" and found.confirmed, found.notes


# --- replaying an interleaving: whether the racing step could finish -------------------


def test_a_racing_step_that_waits_for_the_held_ones_lock_cannot_finish():
    """No race window: the modprobe held where its records are counted holds ftrace_lock,
    which ``echo function > current_tracer`` needs. The daemon says the racing step waits
    for it (it pauses where a task finds the lock held): no such interleaving."""
    boot = BootSpec((("--variant", "fixed"), ("--core-functions", "2048")))
    with Replayer(boot) as replayer:
        seen = replayer.interleaving([], "modprobe dummy", "echo function > current_tracer",
                                     "ftrace_update_code:before_count", [])
    assert seen is None


def test_a_racing_step_that_waits_for_the_held_ones_trace_types_lock_cannot_finish(
        monkeypatch):
    """The tracer switch held in its code update holds trace_types_lock (and ftrace_lock);
    ``echo nop > current_tracer`` waits for trace_types_lock first. The daemon says so (it
    pauses where a task finds that mutex held): no such interleaving. The safety net is
    put beyond the test's own time limit, so that only the daemon can decide it."""
    monkeypatch.setattr(replay, "STEP_TIMEOUT", 3600.0)
    boot = BootSpec((("--variant", "fixed"), ("--core-functions", "2048")))
    with Replayer(boot) as replayer:
        seen = replayer.interleaving([], "echo function > current_tracer",
                                     "echo nop > current_tracer",
                                     "__ftrace_hash_rec_update:next_page", [])
    assert seen is None


def test_a_racing_step_slower_than_five_seconds_still_finishes():
    """load-count: the modprobe held after its lockless sample holds no lock, and the
    filter write racing it takes 6 s (a sleep where its release waits, as a slow machine
    might). It finishes, and the interleaving comes about; a fixed 5 s limit took it for a
    step waiting on the held one's lock, and the interleaving for one that cannot be."""
    boot = LOAD_COUNT_BOOT.with_failpoint("ftrace_regex_release:before_lock", "1*sleep(6000)")
    with Replayer(boot) as replayer:
        seen = replayer.interleaving([], "modprobe dummy", "echo schedule > set_ftrace_filter",
                                     "ftrace_update_code:before_count", [])
    assert seen is not None
