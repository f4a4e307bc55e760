"""ftrace-stress against a daemon someone reboots under it (``Kernel.Reboot``; the run
itself never reboots a daemon): the kernel the verdict is about is gone, so the run stops
and says so. With nothing found before the reboot it is an ERROR (exit status 2); an
anomaly found before it stands (exit status 1), the reboot said beside it. The checker
sees the new boot from whichever observer meets it first, and at its end in any case;
the minimizer's replays see one under them too.

The reboots come at known points: once the run says (its progress line, on a terminal)
that it is under way, or that it has found an anomaly.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pty
import re
import subprocess
import sys
import threading
import time
from types import SimpleNamespace
from typing import Iterator

import pytest

from clients.api import Client
from clients.stress import runner
from clients.stress.checker import Checker, Reboot
from clients.stress.config import BootSpec, RunConfig
from clients.stress.replay import Observation, ReplayRebooted
from clients.spawn import SpawnedDaemon
from ftrace.v1 import kernel_pb2
from tests.children import REPO, child_env
from tests.daemon_fixture import spawn  # noqa: F401  (a fixture)
from tests.test_tracer_client import wait_until

#: A small kernel (its daemons boot fast) and five clients.
CORE = ["--core-functions", "2048"]
CLIENTS = ["--tracers", "1", "--loaders", "2", "--shells", "1", "--invokers", "1"]
#: The runs' --duration: the reboot ends them long before (they ended at it, unaware).
DURATION = 60
#: The progress line: "  12.3 s  456 operations (37/s)  checks 10+4  anomalies 0  clients 5/5".
_PROGRESS = re.compile(r"(\d+) operations \(\d+/s\)  checks (\d+)\+(\d+)  anomalies (\d+)")


class _Run:
    """``python -m clients.stress`` with its stderr on a terminal, so that it shows its
    progress line, which the test waits on."""

    def __init__(self, out: str, *args: str) -> None:
        master, terminal = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "clients.stress", "--out", out, *args], cwd=REPO,
            env=child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=terminal, text=True)
        os.close(terminal)
        self._master = master
        self._shown = ""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        data = b""
        while True:
            try:
                chunk = os.read(self._master, 4096)
            except OSError as error:  # EIO: the terminal's last writer is gone
                assert error.errno == errno.EIO
                break
            if not chunk:
                break
            data = (data + chunk)[-4096:]
            with self._lock:
                self._shown = data.decode(errors="replace")

    def progress(self) -> tuple[int, int, int, int] | None:
        """The last progress line's operations, checks (consistency, shm), anomalies."""
        with self._lock:
            lines = _PROGRESS.findall(self._shown)
        return tuple(int(n) for n in lines[-1]) if lines else None  # type: ignore[return-value]

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        stdout, _ = self.process.communicate(timeout=timeout)
        self._reader.join(10)
        os.close(self._master)
        return self.process.returncode, stdout

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.finish()


@contextlib.contextmanager
def stress(out, *args: str) -> Iterator[_Run]:
    run = _Run(str(out), *args)
    try:
        yield run
    finally:
        run.kill()  # a run the test gave up on does not outlive it


def report(out) -> dict:
    with open(os.path.join(out, "report.json"), encoding="utf-8") as text:
        return json.load(text)


def reboot_same(client: Client) -> int:
    """Kernel.Reboot with the options the daemon booted with; the new boot's id, checked
    to be the old one's plus one."""
    old = client.config()
    new = client.reboot(old).boot_id
    assert new == old.boot_id + 1
    return new


def test_a_reboot_mid_run_ends_it_as_an_error_not_clean(tmp_path, spawn):
    """It was CLEAN (exit 0) at the end of its --duration, the snapshots read from the
    first boot's unlinked memory and its log's stream ended unnoticed."""
    out = tmp_path / "out"
    daemon = spawn(CORE)
    with daemon.connect() as client, stress(out, "--address", daemon.address, "--duration",
                                            str(DURATION), "--seed", "11", "--no-minimize",
                                            *CLIENTS) as run:
        # Under way: operations done, both checks made.
        wait_until(lambda: (shown := run.progress()) and all(shown[:3]), timeout=120)
        new = reboot_same(client)
        status, stdout = run.finish()
    assert status == 2, stdout
    result = report(out)
    assert result["ran_s"] < DURATION, "the run went on after the reboot"
    assert result["outcome"] == "error" and result["anomalies"] == []
    reboot = result["reboot"]
    assert (reboot["boot_id"], reboot["new_boot_id"]) == (new - 1, new)
    assert 0 < reboot["booted_s"] <= reboot["seen_s"] <= result["ran_s"] + 1, reboot
    assert result["error"] == reboot["text"]
    assert re.fullmatch(r"the daemon rebooted during the run \(Kernel\.Reboot, not the run's\): "
                        rf"boot {new - 1}, the kernel the run judged, is gone; boot {new} booted "
                        r"\d+\.\d{3} s into the run, seen \d+\.\d{3} s into the run",
                        reboot["text"]), reboot["text"]
    assert result["daemon"]["boot_id"] == new - 1
    assert "restored" not in result["daemon"]  # nothing of the run's was left to restore
    assert stdout.startswith("ftrace-stress: ERROR (")
    assert f"\n  error: {reboot['text']}\n" in stdout and "rebooted:" not in stdout
    text = (out / "report.txt").read_text()
    assert "outcome:   ERROR (exit status 2)" in text and f"error:     {reboot['text']}" in text


def test_an_anomaly_found_before_the_reboot_stands_with_the_reboot_said(tmp_path, spawn):
    """--keep-going on the buggy kernel: the run says it found an anomaly, then the daemon
    reboots. It was exit 1 too, the reboot unsaid, the run going on for its --duration.
    The checks a minute apart: the log's follower finds the WARN, and the ftrace_kill()
    that comes with it, which a check would find and end the run at (nothing new to find
    after it), is not looked for before the reboot."""
    out = tmp_path / "out"
    daemon = spawn([*CORE, "--variant", "buggy"])
    with daemon.connect() as client, stress(out, "--address", daemon.address, "--duration",
                                            str(DURATION), "--seed", "3", "--no-minimize",
                                            "--keep-going", "--check-interval", "60",
                                            *CLIENTS) as run:
        wait_until(lambda: (shown := run.progress()) and shown[3], timeout=120)
        new = reboot_same(client)
        status, stdout = run.finish()
    assert status == 1, stdout
    result = report(out)
    assert result["ran_s"] < DURATION, "the run went on after the reboot"
    assert result["outcome"] == "anomaly" and result["error"] == ""
    reboot = result["reboot"]
    assert (reboot["boot_id"], reboot["new_boot_id"]) == (new - 1, new)
    # Found before the reboot was seen (the follower may deliver the first boot's log after).
    assert min(a["seen_s"] for a in result["anomalies"]) <= reboot["seen_s"], result
    assert f"\n  rebooted: {reboot['text']}\n" in stdout, stdout
    assert f"\nrebooted:  {reboot['text']}\n" in (out / "report.txt").read_text()


@pytest.fixture
def checker(spawn) -> Iterator[tuple[SpawnedDaemon, Checker, list[Reboot], threading.Event]]:
    """A checker of a daemon's first boot (its baseline taken), the reboots it said."""
    daemon = spawn(CORE)
    said: list[Reboot] = []
    seen = threading.Event()

    def on_reboot(reboot: Reboot) -> None:
        said.append(reboot)
        seen.set()

    # A minute between checks: only what the test calls, or the log's follower, looks.
    checker = Checker(daemon.address, 60.0, lambda anomaly: None, lambda why: None,
                      on_reboot=on_reboot)
    checker.baseline()
    try:
        yield daemon, checker, said, seen
    finally:
        checker.stop()
        checker.close()


def test_the_log_follower_sees_the_reboot(checker):
    """The follower's stream ends with its boot; it ended unnoticed."""
    daemon, watching, said, seen = checker
    watching.start()
    with daemon.connect() as client:
        wait_until(lambda: watching._follow_stream is not None)
        before = time.monotonic_ns()
        new = reboot_same(client)
    assert seen.wait(30), "the follower's stream ended, unnoticed"
    assert [(r.boot_id, r.new_boot_id) for r in said] == [(new - 1, new)]
    assert said[0].booted_ns is not None and before <= said[0].booted_ns <= said[0].seen_ns


def test_a_reboot_is_said_booted_no_later_than_it_was_seen(checker, monkeypatch):
    """The new boot's moment is a Stats answer's arrival less its uptime, and the uptime
    is read before the answer's way back: a way back longer than the boot had been up
    when a check met it put the boot after that check's answer (a run said booted 0.318
    s, seen 0.300 s into it). Here the Stats the check makes then comes back that late."""
    daemon, watching, said, _ = checker
    stats = watching.client.stats

    def late_stats() -> kernel_pb2.KernelStats:
        asked = time.monotonic_ns()
        answer = stats()
        # Back once the answer's time less its uptime is past the asking, and so past
        # the check's answer that showed the new boot.
        wait_until(lambda: time.monotonic_ns() - answer.uptime_seconds * 1e9 > asked)
        return answer

    monkeypatch.setattr(watching.client, "stats", late_stats)
    with daemon.connect() as client:
        before = time.monotonic_ns()
        new = reboot_same(client)
    watching.check_consistency()  # meets the new boot
    assert [(r.boot_id, r.new_boot_id) for r in said] == [(new - 1, new)]
    assert said[0].booted_ns is not None and before <= said[0].booted_ns <= said[0].seen_ns


def test_a_snapshot_of_the_dead_boot_is_not_checked(checker):
    """The reader attached at the baseline reads the first boot's unlinked pages: it was
    checked against the new boot's Stats and counted."""
    daemon, watching, said, _ = checker
    with daemon.connect() as client:
        new = reboot_same(client)
    assert watching.check_snapshot()  # conclusive: nothing to try again
    assert [r.new_boot_id for r in said] == [new]
    assert watching.counts["shm"] == 0
    assert not watching.confirm_boot() and len(said) == 1  # said once


def test_the_final_check_sees_a_reboot_no_observer_saw(checker):
    """At the end, in any case: no check of the new boot is the run's."""
    daemon, watching, said, _ = checker
    with daemon.connect() as client:
        new = reboot_same(client)
    watching.final_check()
    assert [r.new_boot_id for r in said] == [new]
    assert (watching.counts["consistency"], watching.counts["shm"]) == (0, 0)
    assert watching.phase == "teardown"


def test_a_replay_whose_daemon_reboots_shows_nothing(daemon_client):
    """A replay's look at its kernel is of the boot it ran on, or it is no look."""
    with daemon_client() as client:
        seen = Observation(boot_id=client.stats().boot_id)
        seen.look(client, 1)
        new = reboot_same(client)
        with pytest.raises(ReplayRebooted,
                           match=rf"rebooted under it \(boot {new - 1}, then {new}\)"):
            seen.look(client, 2)
    assert not seen.any


@pytest.fixture
def daemon_client(spawn):
    daemon = spawn(CORE)
    return daemon.connect


def starting_worker(read_end: int) -> SimpleNamespace:
    """A worker still starting, as Run's wait for ``ready`` sees it: its standard output
    (the read end of a pipe nobody writes) says nothing yet."""
    return SimpleNamespace(process=SimpleNamespace(stdout=os.fdopen(read_end, "rb")))


def test_a_reboot_seen_while_the_clients_start_tells_none_to_go(tmp_path, spawn, monkeypatch):
    """The checker sees a reboot while the workers are still starting: the wait for their
    ``ready`` ends, and no worker is told to go to work on the new kernel. It waited on
    for every ``ready``, then told them all to go (helper R2: modules loaded on the
    user's rebooted daemon)."""
    monkeypatch.setattr(runner, "STARTUP_TIMEOUT", 10.0)  # the old code's wait, shorter
    daemon = spawn(CORE)
    run = runner.Run(RunConfig(seed=7, out_dir=str(tmp_path), boot=BootSpec(())), [],
                     None, (None, Client(daemon.address)))
    read_end, write_end = os.pipe()
    starting = starting_worker(read_end)
    run.workers.append(starting)  # type: ignore[arg-type]
    try:
        run._on_reboot(Reboot(1, 2, time.monotonic_ns(), None))
        run._await_ready()  # returns: the old code raised TimeoutError after 10 s
    finally:
        starting.process.stdout.close()
        os.close(write_end)
        run.client.close()
    assert not run.result.started


def test_a_reboot_after_the_last_look_leaves_the_new_kernel_as_it_booted(tmp_path, spawn,
                                                                          monkeypatch):
    """A run on a daemon of the user's: the run found ``uinput`` loaded and a filter; its
    clients changed both; the daemon reboots just after the run's last look at it (its
    ``confirm_boot``). The restore's calls carry the run's boot (the boot fence), so they
    fail, and the new kernel stays as it booted: without the fence the restore loaded
    uinput and wrote the filter into it, and the report said all was restored (review R3,
    16 of 16 trials)."""
    daemon = spawn(CORE)
    user = Client(daemon.address)
    run = runner.Run(RunConfig(seed=7, out_dir=str(tmp_path), boot=BootSpec(()),
                               address=daemon.address), [], None, (None, Client(daemon.address)))
    try:
        user.load("uinput")
        user.write_file(f"{runner.TRACING_DIR}/set_ftrace_filter", "schedule\n")
        run._boot()
        # What the run's clients did.
        user.unload("uinput")
        user.write_file(f"{runner.TRACING_DIR}/set_ftrace_filter", "vfs_read\n")
        last_look = run.checker.confirm_boot

        def then_reboot() -> bool:
            same = last_look()
            reboot_same(user)
            return same

        monkeypatch.setattr(run.checker, "confirm_boot", then_reboot)
        run._finish()
        modules = [m.name for m in user.list_modules()]
        listed = user.read_file(f"{runner.TRACING_DIR}/set_ftrace_filter")
    finally:
        user.close()
    assert (modules, listed) == ([], b"#### all functions enabled ####\n")
    (left,) = run.result.daemon["restored"]["left"]
    assert left.startswith("restoring failed: ") and "the kernel rebooted" in left, left
