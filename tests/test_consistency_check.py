"""The model's consistency check (``check_consistency``) against the unload-unlocked race
window: a module's record pages freed without ftrace_lock while the check walks them."""

from __future__ import annotations

import pytest

from kernel_daemon.ftrace import consistency
from kernel_daemon.ftrace.consistency import AnomalyKind, check_consistency
from kernel_daemon.ftrace.records import POISON_FREE_QWORD
from kernel_daemon.task import Task, running_as
from tests.kernel_helpers import booted, echo, modprobe, rmmod
from tests.test_race_windows import Step


def test_a_page_group_freed_under_the_checks_walk_is_a_freed_page_access(monkeypatch):
    """The check holds ftrace_lock, which the race's ftrace_release_mod() does not take:
    ``rmmod dummy`` frees dummy's page group after the walk took the page list and before
    it reads the group. The records then read as the slab poison: the check reported a
    leaked reference of count 0x6b6b6b6b6b6b6b6b at ip 0x6b6b6b6b6b6b6b6b (a stress run,
    seed 5), not the freed page its walk read."""
    with booted(races=("unload-unlocked",), core_functions=2048) as k:
        modprobe(k, "dummy")
        echo(k, "function", "current_tracer")
        group_anomalies = consistency.group_anomalies

        def freed_under_the_walk(ft, pg, enabled_ops):
            if pg.module_name == "dummy" and not pg.freed:
                Step(rmmod, k, "dummy").finish()  # on another task, without ftrace_lock
                assert pg.freed and int(pg.recs["ip"][0]) == POISON_FREE_QWORD
            return group_anomalies(ft, pg, enabled_ops)

        monkeypatch.setattr(consistency, "group_anomalies", freed_under_the_walk)
        with running_as(Task(4242, "ftraced")):
            anomalies = check_consistency(k.ftrace)
        [freed] = anomalies
        assert freed.kind is AnomalyKind.FREED_PAGE_ACCESS and freed.module == "dummy"
        assert freed.function == "check_consistency" and freed.ops == ("ftraced/4242",)
        assert freed.describe() == (f"freed-page access: record page at {freed.ip:#x} of "
                                    "dummy (check_consistency)")
        # The walk after it no longer meets the group: nothing is left to report.
        monkeypatch.undo()
        assert check_consistency(k.ftrace) == []


@pytest.mark.parametrize("race", [True, False])
def test_the_check_reads_no_group_freed_before_it_took_the_lock(race):
    """Unlinked and freed before the walk: the group is not on the list it walks."""
    with booted(races=("unload-unlocked",) if race else (), core_functions=2048) as k:
        modprobe(k, "dummy")
        echo(k, "function", "current_tracer")
        rmmod(k, "dummy")
        assert check_consistency(k.ftrace) == []
