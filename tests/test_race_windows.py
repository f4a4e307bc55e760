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
from kernel_daemon.mutex import Mutex
from tests.kernel_helpers import booted, echo, modprobe, rmmod, warnings


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

    def blocked(self, timeout: float = 30) -> bool:
        """Waiting in ``mutex_lock()`` (the lock it needs is held): True once the thread's
        innermost frame is :meth:`Mutex.acquire`'s, False if it ends first."""
        deadline = time.monotonic() + timeout
        while self.is_alive():
            frame = sys._current_frames().get(self.ident)
            if frame is not None and frame.f_code is Mutex.acquire.__code__:
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
def test_publish_early_window_overwrites_counts_and_then_underflows(race):
    site = "ftrace_update_code:before_publish"
    with booted(races=("publish-early",) if race else (), failpoints=((site, "1*pause"),)) as k:
        interleave(k, site, (modprobe, k, "uinput"), (echo, k, "function", "current_tracer"), race)
        anomalies = check_consistency(k.ftrace)
        if not race:
            assert anomalies == []
            echo(k, "nop", "current_tracer")
            assert warnings(k) == []
            return
        assert anomalies and {a.kind for a in anomalies} == {AnomalyKind.MISSING_REFERENCE}
        # The overwritten counts underflow at the next disable, in the fixed kernel.
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
