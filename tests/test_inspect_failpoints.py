"""``ftrace-inspect failpoints`` and the waits ftrace-inspect says something about, against
a real ftraced.

- A race window stepped by hand as README "Stepping an interleaving" does it: set, wait,
  list, release, between two ftrace-shell processes (the load-count recipe of
  ``test_race_interleavings.py``); the load-count site's description tells why a filter
  write naming the module's functions cannot be the racing step.
- The daemon's refusals and the usage errors, as the other commands print them; a wait
  that sees nothing pause; Ctrl-C in a wait.
- ``check --locked`` says, after a second, that it waits for ftrace_lock and who is paused;
  the record commands give up on a writer that stays, naming ``--torn``, which reads anyway.
"""

from __future__ import annotations

import re
import signal
import threading

import pytest

from clients.api import Client
from clients.identity import Identity
from ftrace.v1 import kernel_pb2
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.paused_writer import AFTER_DISABLE, ftrace_lock_held
from tests.test_race_interleavings import CORE, ShellProcess
from tests.test_tracer_client import DEADLINE, SMALL, TRACING, Lines, start, wait_until
from tests.test_workload_inspect import inspect_main

LOAD_COUNT = "ftrace_update_code:before_count"
NEXT_PAGE = "__ftrace_hash_rec_update:next_page"
TRACE_TYPES_LOCK = "__mutex_lock_slowpath:trace_types_lock"


def site_row(listing: str, name: str) -> tuple[str, str]:
    """``failpoints list``'s line for ``name`` and its description (the indented lines
    under it, joined)."""
    lines = listing.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[0] == name)
    description = []
    for line in lines[at + 1:]:
        if not line.startswith("    "):
            break
        description.append(line.strip())
    return lines[at], " ".join(description)


def test_failpoints_step_the_load_count_window_between_two_shells(spawn, capsys):
    daemon = spawn(CORE + ["--race", "load-count"])
    address = daemon.address
    assert inspect_main(capsys, "--address", address, "failpoints", "set", LOAD_COUNT,
                        "1*pause") == (0, f"{LOAD_COUNT}=1*pause\n", "")
    paused = ShellProcess(address, "modprobe uinput")
    # The options are taken after the action too.
    status, out, err = inspect_main(capsys, "failpoints", "wait", LOAD_COUNT,
                                    "--address", address, "--timeout", str(DEADLINE))
    assert (status, out, err) == (0, f"{LOAD_COUNT}: paused: bash/{paused.proc.pid}\n", "")
    status, listing, _ = inspect_main(capsys, "--address", address, "failpoints", "list")
    assert status == 0 and listing.startswith("FAILPOINT ")
    row, description = site_row(listing, LOAD_COUNT)
    assert row.split() == [LOAD_COUNT, "off", "1", "1", f"bash/{paused.proc.pid}"]
    assert "before the pages are linked: the module's functions cannot be named in a " \
           "filter yet (EINVAL)" in description
    # What the description says: the filter write fails, the tracer's registration races.
    racing = ShellProcess(address, "echo uinput_dev_event 2>&1 >> set_ftrace_filter; "
                                   "echo function > current_tracer")
    assert racing.finish() == "bash: line 1: echo: write error: Invalid argument\n"
    assert inspect_main(capsys, "--address", address, "failpoints", "release",
                        LOAD_COUNT) == (0, f"{LOAD_COUNT}: released 1\n", "")
    paused.finish()
    with Client(address) as client:
        report = client.check_consistency()
    assert {a.kind for a in report.anomalies} == {kernel_pb2.ANOMALY_KIND_MISSING_REFERENCE}
    assert {a.module for a in report.anomalies} == {"uinput"}


def test_a_tracer_switch_that_finds_trace_types_lock_held_pauses_where_it_waits(
        spawn, capsys):
    """``echo function > current_tracer`` held in its code update holds trace_types_lock:
    ``echo nop > current_tracer``, in another shell, finds it held and passes
    ``__mutex_lock_slowpath:trace_types_lock`` before it sleeps (a pause there shows it
    blocked, as ftrace_lock's does for that lock); released, it switches after the first."""
    daemon = spawn(CORE)
    address = ["--address", daemon.address]
    assert inspect_main(capsys, *address, "failpoints", "set", NEXT_PAGE, "1*pause")[0] == 0
    held = ShellProcess(daemon.address, "echo function > current_tracer")
    assert inspect_main(capsys, *address, "failpoints", "wait", NEXT_PAGE, "--timeout",
                        str(DEADLINE))[0] == 0
    assert inspect_main(capsys, *address, "failpoints", "set", TRACE_TYPES_LOCK,
                        "1*pause") == (0, f"{TRACE_TYPES_LOCK}=1*pause\n", "")
    racing = ShellProcess(daemon.address, "echo nop > current_tracer")
    assert inspect_main(capsys, *address, "failpoints", "wait", TRACE_TYPES_LOCK,
                        "--timeout", str(DEADLINE)) == (
        0, f"{TRACE_TYPES_LOCK}: paused: bash/{racing.proc.pid}\n", "")
    status, listing, _ = inspect_main(capsys, *address, "failpoints", "list")
    row, description = site_row(listing, TRACE_TYPES_LOCK)
    assert status == 0 and row.split()[-1] == f"bash/{racing.proc.pid}"
    assert "trace_types_lock is held by another task, before this one sleeps waiting " \
           "for it" in description
    for site in (TRACE_TYPES_LOCK, NEXT_PAGE):
        assert inspect_main(capsys, *address, "failpoints", "release", site) == (
            0, f"{site}: released 1\n", "")
    held.finish()
    racing.finish()
    with Client(daemon.address) as client:
        assert client.read_file(f"{TRACING}/current_tracer") == b"nop\n"


@pytest.mark.parametrize("pipe", ["trace_pipe", "per_cpu/cpu0/trace_pipe"])
def test_a_trace_pipe_open_waits_for_trace_types_lock_as_3_6_s(spawn, pipe):
    """tracing_open_pipe() sets its iterator up under trace_types_lock: with a tracer
    switch holding it, a reader's open finds it held and sleeps (a pause at
    ``__mutex_lock_slowpath:trace_types_lock`` shows it, by the reader's task); released,
    it reads on (nothing there yet, O_NONBLOCK). It took no lock and never waited."""
    daemon = spawn(CORE)
    with daemon.connect() as client, daemon.connect(Identity(4242, "reader")) as reader:
        client.set_failpoint(NEXT_PAGE, "1*pause")
        held = ShellProcess(daemon.address, "echo function > current_tracer")
        client.wait_failpoint(NEXT_PAGE, 1, timeout=DEADLINE)
        client.set_failpoint(TRACE_TYPES_LOCK, "1*pause")
        read: list[bytes] = []
        racing = threading.Thread(target=lambda: read.append(
            reader.read_file(f"{TRACING}/{pipe}", nonblock=True)))

        racing.start()
        [task] = client.wait_failpoint(TRACE_TYPES_LOCK, 1, timeout=DEADLINE).paused_tasks
        assert (task.comm, task.pid) == ("reader", 4242)
        for site in (TRACE_TYPES_LOCK, NEXT_PAGE):
            assert client.release_failpoint(site) == 1
        racing.join(DEADLINE)
        held.finish()
    assert read == [b""]  # opened, and read: nothing there yet


def test_failpoints_errors_and_a_wait_that_sees_nothing_pause(daemon, capsys):
    address = ["--address", daemon.address]
    assert inspect_main(capsys, *address, "failpoints", "set", "nosuch", "1*pause") == (
        2, "", 'ftrace-inspect: No such file or directory (no failpoint "nosuch")\n')
    status, out, err = inspect_main(capsys, *address, "failpoints", "set", NEXT_PAGE, "1*")
    assert (status, out) == (2, "") and err.startswith(
        'ftrace-inspect: Invalid argument (bad failpoint spec "1*": expected ')
    assert inspect_main(capsys, *address, "failpoints", "release", NEXT_PAGE) == (
        0, f"{NEXT_PAGE}: released 0\n", "")
    # Not armed: said at once, and the wait still runs its course (another client may arm
    # it meanwhile).
    assert inspect_main(capsys, *address, "failpoints", "wait", NEXT_PAGE, "--timeout",
                        "0.2") == (
        1, "", f"ftrace-inspect: {NEXT_PAGE} is not armed: only a thread already on its way "
               f"there can pause (`ftrace-inspect failpoints set {NEXT_PAGE} 1*pause`)\n"
               f"ftrace-inspect: failpoints wait: no thread paused at {NEXT_PAGE} within "
               "0.2 s\n")
    assert inspect_main(capsys, *address, "failpoints", "set", NEXT_PAGE, "off") == (
        0, f"{NEXT_PAGE}=off\n", "")
    for argv, message in [
            (["failpoints", "wait", NEXT_PAGE, "--count", "0"],
             "--count must be at least 1 and at most 4294967295"),
            (["failpoints", "wait", NEXT_PAGE, "--timeout", "nan"],
             "--timeout must be at least 0 (no limit) and at most 4294967"),
            (["failpoints", "release", NEXT_PAGE, "--count", "-1"],
             "--count must be at least 0 and at most 4294967295"),
            (["--no-symbols", "failpoints", "list"],
             "--namespace and --no-symbols are not for failpoints")]:
        with pytest.raises(SystemExit) as exited:
            inspect_main(capsys, *address, *argv)
        assert exited.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1] == f"ftrace-inspect: error: {message}"


def test_ctrl_c_ends_a_failpoint_wait_quietly_and_cancels_it(daemon):
    with daemon.connect() as client:
        client.set_failpoint(NEXT_PAGE, "1*pause")
        waiting = start("clients.inspect", "--address", daemon.address, "failpoints", "wait",
                        NEXT_PAGE)

        def waiters() -> int:
            return next(s.waiters for s in client.list_failpoints() if s.name == NEXT_PAGE)

        wait_until(lambda: waiters() == 1)
        waiting.send_signal(signal.SIGINT)
        out, err = waiting.communicate(timeout=DEADLINE)
        assert (waiting.returncode, out, err) == (130, b"", b"")
        wait_until(lambda: waiters() == 0)
        client.set_failpoint(NEXT_PAGE, "off")


def test_check_locked_says_what_it_waits_for_while_a_thread_holds_ftrace_lock(spawn):
    daemon = spawn(SMALL)
    with daemon.connect() as client, Client(daemon.address, Identity(4242, "bash")) as bash:
        with ftrace_lock_held(client, bash):
            check = start("clients.inspect", "--address", daemon.address, "check", "--locked")
            err = Lines(check.stderr)
            assert err.wait_for("") == (
                "ftrace-inspect: waiting for ftrace_lock (Kernel.CheckConsistency takes it); "
                "the threads paused at failpoints now:")
            assert err.wait_for("") == f"  bash/4242 is paused at {AFTER_DISABLE}:"
            assert err.wait_for("").startswith("    filter change: ")
            assert check.poll() is None  # still waiting
        out, rest = check.communicate(timeout=DEADLINE)
        assert check.returncode == 0, err.rest(rest)
        assert re.fullmatch(rb"check: 2000 records in 1 groups, generation \d+: nothing "
                            rb"found\n", out), out


def test_a_writer_paused_in_the_record_pages_makes_summary_give_up_or_read_torn(
        spawn, capsys):
    """Paused before __ftrace_hash_rec_update's second page: the core's records are
    counted, uinput's not yet. No consistent copy exists until the release; ``--torn``
    shows the half-done update, labelled."""
    daemon = spawn(SMALL)
    address = ["--address", daemon.address]
    with daemon.connect() as client:
        client.load("uinput")
        client.set_failpoint(NEXT_PAGE, "2*pause")
        writer = threading.Thread(target=client.write_file,
                                  args=(f"{TRACING}/current_tracer", "function"))
        writer.start()
        try:
            client.wait_failpoint(NEXT_PAGE, timeout=DEADLINE)
            client.release_failpoint(NEXT_PAGE)
            client.wait_failpoint(NEXT_PAGE, timeout=DEADLINE)
            status, out, err = inspect_main(capsys, *address, "summary")
            torn = inspect_main(capsys, *address, "summary", "--torn")
            records = inspect_main(capsys, *address, "records", "--torn", "--module", "uinput")
        finally:
            client.release_failpoint(NEXT_PAGE)
            writer.join(DEADLINE)
        settled = inspect_main(capsys, *address, "summary", "--torn")
    assert (status, out) == (2, "")
    notice, *paused, gave_up = err.splitlines()
    assert notice == ("ftrace-inspect: waiting for a consistent snapshot: a writer is in the "
                      "record pages; the threads paused at failpoints now:")
    assert re.fullmatch(rf"  \S+/\d+ is paused at {re.escape(NEXT_PAGE)}:", paused[0])
    assert re.fullmatch(r"ftrace-inspect: ftsim\.\d+\.\d+: no consistent snapshot in 5 s: a "
                        r"writer stayed in the record pages \(`summary --torn` reads them "
                        r"as they are\)", gave_up)
    label = ("torn: read while a writer was in the record pages (no consistent snapshot): "
             "counts and flags may be half-updated")
    assert torn[0] == 0 and torn[1].splitlines()[1] == label
    assert re.search(r"^ +0 \[core\] +0x[0-9a-f]{16} +2000 +2000 +0$", torn[1], re.M), torn
    assert re.search(r"^ +1 uinput +0x[0-9a-f]{16} +26 +0 +0$", torn[1], re.M), torn
    assert records[0] == 0 and records[2] == f"ftrace-inspect: {label}\n"
    assert all(" 0x00000000     0 . uinput_" in line
               for line in records[1].splitlines()[1:]), records
    # Once the writer is out, --torn reads a consistent copy and says nothing.
    assert settled[0] == 0 and label not in settled[1]
    assert re.search(r"^ +1 uinput +0x[0-9a-f]{16} +26 +26 +26$", settled[1], re.M), settled
