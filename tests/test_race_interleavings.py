"""Each race window's bad interleaving, forced step by step between two real client
processes (ftrace-shell) with ``pause`` failpoints driven over gRPC; the same
interleaving on a daemon without the window is clean.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from clients.api import Client
from ftrace.v1 import kernel_pb2
from tests.children import child_env
from tests.daemon_fixture import spawn  # noqa: F401  (fixture)

TRACING = "/sys/kernel/debug/tracing"
CORE = ["--core-functions", "2000"]


class ShellProcess:
    """``ftrace-shell -c COMMAND`` as a separate process."""

    def __init__(self, address: str, command: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clients.shell", "--address", address, "-c",
             f"cd {TRACING}; {command}"],
            env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(self, timeout: float = 60) -> str:
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, err
        return out


#: Passed by a call that finds ftrace_lock held, before it sleeps for it.
SLOWPATH = "__mutex_lock_slowpath:ftrace_lock"


def interleave(client: Client, address: str, site: str, first: str, second: str,
               race: bool) -> None:
    """Process ``first`` pauses at ``site``; process ``second`` runs meanwhile, through
    the window (race) or blocked on ``ftrace_lock``, which it is shown to have found held
    (paused, then let go, at :data:`SLOWPATH`); then ``first`` is released."""
    paused = ShellProcess(address, first)
    client.wait_failpoint(site, 1, timeout=30)
    if not race:
        client.set_failpoint(SLOWPATH, "1*pause")
    running = ShellProcess(address, second)
    if race:
        running.finish()
    else:
        client.wait_failpoint(SLOWPATH, 1, timeout=30)
        client.release_failpoint(SLOWPATH)
    client.release_failpoint(site)
    paused.finish()
    running.finish()


def kinds(report: kernel_pb2.ConsistencyReport) -> set[int]:
    return {a.kind for a in report.anomalies}


@pytest.mark.parametrize("race", [True, False])
def test_load_count(spawn, race):
    site = "ftrace_update_code:before_count"
    daemon = spawn(CORE + (["--race", "load-count"] if race else [])
                   + ["--failpoint", f"{site}=1*pause"])
    with Client(daemon.address) as client:
        interleave(client, daemon.address, site, "modprobe uinput",
                   "echo function > current_tracer", race)
        report = client.check_consistency()
        if race:
            assert kinds(report) == {kernel_pb2.ANOMALY_KIND_MISSING_REFERENCE}
            assert {a.module for a in report.anomalies} == {"uinput"}
        else:
            assert report.ok, report


@pytest.mark.parametrize("race", [True, False])
def test_publish_early(spawn, race):
    """The function tracer's code update in the window meets uinput's sites still
    ``call mcount``: x86's add_breakpoints fails with EINVAL there, and ftrace_bug()
    kills ftrace at that write, after the 2000 core records; the load stores nothing."""
    site = "ftrace_update_code:before_publish"
    daemon = spawn(CORE + (["--race", "publish-early"] if race else [])
                   + ["--failpoint", f"{site}=1*pause"])
    with Client(daemon.address) as client:
        interleave(client, daemon.address, site, "modprobe uinput",
                   "echo function > current_tracer", race)
        report = client.check_consistency()
        ShellProcess(daemon.address, "echo nop > current_tracer").finish()
        dmesg = client.dmesg()
        if race:
            assert report.ok and report.ftrace_disabled, report
            assert "WARNING: at kernel/trace/ftrace.c:1583 ftrace_bug" in dmesg
            assert re.search(r"\] ftrace failed to modify \[<ffffffffa0000000>\] "
                             r"uinput_dev_event\+0x0/0x70 \[uinput\]\n"
                             r"\[[ \d.]+\]  actual: e8(:[0-9a-f]{2}){4}\n"
                             r"\[[ \d.]+\] Failed on adding breakpoints \(2000\):\n", dmesg)
            assert "ftrace.c:1529" not in dmesg
            counts = {(r.count, r.enabled) for r in client.dump_records(module="uinput")}
            assert counts == {(1, False)}
        else:
            assert report.ok, report
            assert "WARNING" not in dmesg


def test_publish_early_without_a_code_update(spawn):
    """With ftrace_enabled 0 the registration in the window counts uinput's records and
    patches nothing; the load then overwrites the counts, and the next disable WARNs."""
    site = "ftrace_update_code:before_publish"
    daemon = spawn(CORE + ["--race", "publish-early", "--failpoint", f"{site}=1*pause"])
    with Client(daemon.address) as client:
        ShellProcess(daemon.address, "echo 0 > /proc/sys/kernel/ftrace_enabled").finish()
        interleave(client, daemon.address, site, "modprobe uinput",
                   "echo function > current_tracer", True)
        report = client.check_consistency()
        assert kinds(report) == {kernel_pb2.ANOMALY_KIND_MISSING_REFERENCE}
        assert {a.module for a in report.anomalies} == {"uinput"}
        ShellProcess(daemon.address, "echo 1 > /proc/sys/kernel/ftrace_enabled; "
                     "echo nop > current_tracer").finish()
        assert "WARNING: at kernel/trace/ftrace.c:1529 __ftrace_hash_rec_update" in client.dmesg()
        assert client.stats().ftrace_disabled


def test_a_load_that_finds_ftrace_killed_in_the_publish_early_window_stores_nothing(spawn):
    """A filter write in the window finds a new record at 0 that the old filter names:
    its disable pass WARNs (ftrace_kill()), and its enable pass, which runs regardless,
    counts the new filter's two functions. The load then stops at its loop's
    ftrace_disabled test: it stores no count and patches no site on a dead ftrace."""
    site = "ftrace_update_code:before_publish"
    daemon = spawn(CORE + ["--race", "publish-early"])
    with Client(daemon.address) as client:
        client.load("uinput")
        ShellProcess(daemon.address, "echo uinput_release > set_ftrace_filter; "
                     "echo function > current_tracer").finish()
        client.unload("uinput")
        client.set_failpoint(site, "1*pause")
        interleave(client, daemon.address, site, "modprobe uinput",
                   "echo uinput_dev_event >> set_ftrace_filter", True)
        assert client.stats().ftrace_disabled
        assert "WARNING: at kernel/trace/ftrace.c:1529" in client.dmesg()
        records = client.dump_records(module="uinput", only_nonzero=True)
        assert {(r.function, r.flags) for r in records} == {("uinput_release", 1),
                                                           ("uinput_dev_event", 1)}


@pytest.mark.parametrize("race", [True, False])
def test_unload_unlocked(spawn, race):
    site = "__ftrace_hash_rec_update:next_page"
    daemon = spawn(CORE + (["--race", "unload-unlocked"] if race else []))
    with Client(daemon.address) as client:
        client.load("uinput")
        client.set_failpoint(site, "1*pause")
        interleave(client, daemon.address, site, "echo function > current_tracer",
                   "rmmod uinput", race)
        report = client.check_consistency()
        if race:
            assert kinds(report) == {kernel_pb2.ANOMALY_KIND_FREED_PAGE_ACCESS}
            assert "BUG: KASAN: use-after-free in __ftrace_hash_rec_update" in client.dmesg()
        else:
            assert report.ok, report
