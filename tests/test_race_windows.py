"""The race windows in-process: each bad interleaving forced step by step with a pause
failpoint, and the same interleaving on the kernel's locking is clean.

(tests/test_race_interleavings.py forces the same interleavings between real client
processes over gRPC.)
"""

from __future__ import annotations

import sys
import threading
import time

import pytest

from kernel_daemon.ftrace.consistency import AnomalyKind, check_consistency
from kernel_daemon.ftrace.update import MCOUNT_ADDR, ftrace_call_replace, print_ip_ins
from kernel_daemon.mutex import Mutex
from kernel_daemon.tracefs.tree import mount
from tests.kernel_helpers import (booted, dmesg, echo, modprobe, record, rmmod, warnings,
                                  write)

SYSCTL = "/proc/sys/kernel/ftrace_enabled"


class Step(threading.Thread):
    """One process's system call, run on a thread of its own."""

    def __init__(self, fn, *args) -> None:
        super().__init__(daemon=True)
        self.fn, self.args, self.error = fn, args, None
        self.start()

    def run(self) -> None:
        try:
            self.fn(*self.args)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self, timeout: float = 30) -> None:
        self.join(timeout)
        assert not self.is_alive(), "step did not finish"
        if self.error:
            raise self.error

    def blocked(self, timeout: float = 30, on: Mutex | None = None) -> bool:
        """Waiting in ``mutex_lock()`` (the lock it needs is held; ``on``'s, if given): True
        once the thread's innermost frame is :meth:`Mutex.acquire`'s, False if it ends
        first."""
        deadline = time.monotonic() + timeout
        while self.is_alive():
            frame = sys._current_frames().get(self.ident)
            if (frame is not None and frame.f_code is Mutex.acquire.__code__
                    and (on is None or frame.f_locals.get("self") is on)):
                return True
            assert time.monotonic() < deadline, "step neither blocked nor finished"
            time.sleep(0.005)
        return False


def interleave(kernel, site: str, first: tuple, second: tuple, race: bool) -> None:
    """``first`` pauses at ``site``; ``second`` runs while it is paused, through the
    window (race) or blocked on ``ftrace_lock`` (no race); then ``first`` goes on."""
    paused = Step(*first)
    assert kernel.failpoints.wait_paused(site, 1, timeout=10)
    running = Step(*second)
    if race:
        running.finish()
    else:
        assert running.blocked()
    kernel.failpoints.release(site)
    paused.finish()
    running.finish()


@pytest.mark.parametrize("race", [True, False])
def test_load_count_window_loses_a_concurrent_enable(race):
    site = "ftrace_update_code:before_count"
    with booted(races=("load-count",) if race else (), failpoints=((site, "1*pause"),)) as k:
        interleave(k, site, (modprobe, k, "uinput"), (echo, k, "function", "current_tracer"), race)
        anomalies = check_consistency(k.ftrace)
        if not race:
            assert anomalies == []
            return
        uinput = len(k.modules.find_module("uinput").symbols)
        assert len(anomalies) == uinput
        assert {a.kind for a in anomalies} == {AnomalyKind.MISSING_REFERENCE}
        assert {a.module for a in anomalies} == {"uinput"}


@pytest.mark.parametrize("race", [True, False])
def test_publish_early_window_kills_ftrace_at_the_code_update_that_meets_it(race):
    """The function tracer registered in the window counts the new records and patches
    them: x86's add_breakpoints finds uinput's first site still ``call mcount``
    (its group ``unconverted``), not the nop it expects, and ftrace_bug(-EINVAL) kills ftrace at
    that write, after every core record (its count). The load then stores nothing."""
    site = "ftrace_update_code:before_publish"
    with booted(races=("publish-early",) if race else (), failpoints=((site, "1*pause"),)) as k:
        interleave(k, site, (modprobe, k, "uinput"), (echo, k, "function", "current_tracer"), race)
        if not race:
            assert check_consistency(k.ftrace) == []
            echo(k, "nop", "current_tracer")
            assert warnings(k) == []
            return
        [warn] = warnings(k)
        assert "WARNING: at kernel/trace/ftrace.c:1583 ftrace_bug" in warn
        assert "tracing_set_trace_write" in warn  # the racing write's, not the load's
        core, uinput = k.ftrace.pages.groups
        ip = int(uinput.ips[0])
        mcount = ftrace_call_replace(ip, MCOUNT_ADDR(k.ftrace))
        assert (f"ftrace failed to modify [<{ip:016x}>] {uinput.names[0]}+0x0/"
                in dmesg(k))
        assert (f"[uinput]\n{print_ip_ins(' actual: ', mcount)}\n"
                f"Failed on adding breakpoints ({len(core.ips)}):\n") in dmesg(k)
        assert k.ftrace.ftrace_disabled
        # The racing registration's counts stay, and no site was patched.
        assert record(k.ftrace, str(uinput.names[0]), "uinput") == (1, False)
        assert record(k.ftrace, "vfs_write") == (1, False)
        assert check_consistency(k.ftrace) == []


def test_publish_early_a_second_load_in_the_window_leaves_the_first_unconverted():
    """Another module loaded in uinput's window links, counts and converts its own
    group; uinput's sites still hold ``call mcount``, so the function tracer's
    add_breakpoints fails at uinput's first site, as add_break() compares the site's
    bytes, whatever group another load converted meanwhile."""
    site = "ftrace_update_code:before_publish"
    with booted(races=("publish-early",), failpoints=((site, "1*pause"),)) as k:
        uinput_load = Step(modprobe, k, "uinput")
        assert k.failpoints.wait_paused(site, 1, timeout=10)
        modprobe(k, "dummy")
        echo(k, "function", "current_tracer")
        k.failpoints.release(site)
        uinput_load.finish()
        core, uinput, _dummy = k.ftrace.pages.groups
        ip = int(uinput.ips[0])
        mcount = ftrace_call_replace(ip, MCOUNT_ADDR(k.ftrace))
        [warn] = warnings(k)
        assert "WARNING: at kernel/trace/ftrace.c:1583 ftrace_bug" in warn
        assert (f"ftrace failed to modify [<{ip:016x}>] {uinput.names[0]}+0x0/"
                in dmesg(k))
        assert (f"[uinput]\n{print_ip_ins(' actual: ', mcount)}\n"
                f"Failed on adding breakpoints ({len(core.ips)}):\n") in dmesg(k)
        assert k.ftrace.ftrace_disabled
        assert check_consistency(k.ftrace) == []


@pytest.mark.parametrize("spec", ["0%error(EPERM)", "1*error(EFAULT)"])
def test_publish_early_the_first_failure_in_the_walk_decides(spec):
    """add_breakpoints' failpoint and the unconverted site are two causes of the first
    pass's failure: a failpoint that never fires is evaluated up to that site and no
    further; one that fires at the first core record decides (EFAULT, count 0)."""
    site = "ftrace_update_code:before_publish"
    with booted(races=("publish-early",),
                failpoints=((site, "1*pause"), ("add_breakpoints", spec))) as k:
        interleave(k, site, (modprobe, k, "uinput"), (echo, k, "function", "current_tracer"), True)
        core, uinput = k.ftrace.pages.groups
        log = dmesg(k)
        if spec.startswith("0%"):
            assert k.failpoints.state("add_breakpoints").evaluations == len(core.ips) + 1
            assert f"Failed on adding breakpoints ({len(core.ips)}):" in log
            assert f"ftrace failed to modify [<{int(uinput.ips[0]):016x}>]" in log
        else:
            assert "Failed on adding breakpoints (0):" in log
            assert f"ftrace faulted on modifying [<{int(core.ips[0]):016x}>]" in log
        assert k.ftrace.ftrace_disabled and len(warnings(k)) == 1


def test_publish_early_window_without_a_code_update_loses_the_counts():
    """With ftrace_enabled 0 the function tracer's registration in the window counts the
    new records and patches nothing: the load then overwrites its counts with the ones
    it computed before (0), a missing reference, which the next disable underflows."""
    site = "ftrace_update_code:before_publish"
    with booted(races=("publish-early",), failpoints=((site, "1*pause"),)) as k:
        vfs = mount(k)
        write(vfs, SYSCTL, b"0\n")
        interleave(k, site, (modprobe, k, "uinput"), (echo, k, "function", "current_tracer"), True)
        anomalies = check_consistency(k.ftrace)
        assert len(anomalies) == len(k.modules.find_module("uinput").symbols)
        assert {(a.kind, a.module) for a in anomalies} == {(AnomalyKind.MISSING_REFERENCE,
                                                             "uinput")}
        assert warnings(k) == []
        assert not any(pg.unconverted for pg in k.ftrace.pages.groups)
        write(vfs, SYSCTL, b"1\n")
        echo(k, "nop", "current_tracer")
        [warn] = warnings(k)
        assert "kernel/trace/ftrace.c:1529 __ftrace_hash_rec_update" in warn
        assert k.ftrace.ftrace_disabled


@pytest.mark.parametrize("race", [True, False])
def test_unload_unlocked_window_frees_pages_under_a_walker(race):
    site = "__ftrace_hash_rec_update:next_page"
    with booted(races=("unload-unlocked",) if race else ()) as k:
        modprobe(k, "uinput")
        k.failpoints.configure(site, "1*pause")
        # The walk pauses before its first page; the unload frees uinput's under it.
        interleave(k, site, (echo, k, "function", "current_tracer"), (rmmod, k, "uinput"), race)
        anomalies = check_consistency(k.ftrace)
        if not race:
            assert anomalies == []
            assert "KASAN" not in k.printk.read()
            return
        [uaf] = anomalies
        assert uaf.kind is AnomalyKind.FREED_PAGE_ACCESS and uaf.module == "uinput"
        assert "BUG: KASAN: use-after-free in __ftrace_hash_rec_update" in k.printk.read()
