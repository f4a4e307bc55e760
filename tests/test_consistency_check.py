"""The model's consistency check (``check_consistency``): against the unload-unlocked race
window (a module's record pages freed without ftrace_lock while the check walks them),
and independent of the lookups of the code it judges."""

from __future__ import annotations

import errno

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel_daemon.ftrace import consistency, module_records
from kernel_daemon.ftrace.consistency import (AnomalyKind, References, check_consistency,
                                              enabled_ops)
from kernel_daemon.ftrace.hash import FtraceHash
from kernel_daemon.ftrace.records import FTRACE_FL_ENABLED, POISON_FREE_QWORD
from kernel_daemon.ftrace.update import ftrace_bug
from kernel_daemon.task import Task, running_as
from tests.kernel_helpers import BASH, booted, echo, modprobe, rmmod
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


def references_of(ft, module: str, function: str) -> tuple[int, tuple[str, ...]]:
    """The check's expected count of a record and the ops it names for it."""
    [pg] = [pg for pg in ft.pages.groups if pg.module_name == module]
    [i] = np.flatnonzero(pg.names == function)
    references = References.of(enabled_ops(ft), pg.ips)
    return int(references.expected()[i]), references.ops(i)


@pytest.fixture
def no_core_lookup(monkeypatch):
    """The core's own lookups fail if the check calls them: it must not share them."""
    def shared(*args, **kwargs):
        raise AssertionError("the check used a lookup of the code it judges")

    def forbid() -> None:
        for owner, name in [(FtraceHash, "positions_in"), (FtraceHash, "contains"),
                            (FtraceHash, "lookup_ip"), (module_records, "ops_references_recs"),
                            (module_records, "referenced_filters")]:
            monkeypatch.setattr(owner, name, shared)
    return forbid


@pytest.mark.parametrize("variant", ["buggy", "fixed"])
def test_a_one_entry_filter_on_a_groups_last_record_is_expected_there(variant, no_core_lookup):
    """The reviewer's M14: a lookup that misses a one-entry filter's match at the last
    record of a page group (uinput_compat_ioctl). The check's expectation comes from its
    own test of the entries against every record, so such a core is caught: count 0,
    expected 1 (ops: global_ops)."""
    with booted(variant=variant, core_functions=2048) as k:
        modprobe(k, "uinput")
        echo(k, "uinput_compat_ioctl", "set_ftrace_filter")
        echo(k, "function", "current_tracer")
        no_core_lookup()
        assert references_of(k.ftrace, "uinput", "uinput_compat_ioctl") == (1, ("global_ops",))
        assert references_of(k.ftrace, "uinput", "uinput_ioctl") == (0, ())
        assert check_consistency(k.ftrace) == []


def test_a_module_loaded_under_a_notrace_is_expected_without_it(no_core_lookup):
    """The reviewer's M3: the load-time count ignoring notrace. uinput reloaded (same
    address, so the notrace entry names its uinput_open again) while the function tracer
    traces everything but uinput_open: the check expects 0 there, with no ops named,
    whatever the load-time count (``referenced_filters``) says."""
    with booted(variant="fixed", core_functions=2048) as k:
        modprobe(k, "uinput")
        assert echo(k, "uinput_open", "set_ftrace_notrace") == []
        echo(k, "function", "current_tracer")
        rmmod(k, "uinput")
        modprobe(k, "uinput")
        no_core_lookup()
        assert references_of(k.ftrace, "uinput", "uinput_open") == (0, ())
        assert references_of(k.ftrace, "uinput", "uinput_release") == (1, ("global_ops",))
        assert check_consistency(k.ftrace) == []


def test_after_ftrace_bug_the_check_compares_counts_not_patching():
    """``ftrace_kill()`` sets ftrace_enabled to 0 and nothing patches a site again (spec
    §2.1, §2.11): every record the function tracer had patched stays patched while no
    tracing is wanted. ``group_anomalies`` then checks only the counts, which ftrace_bug()
    left right: no anomaly, not a PATCH_MISMATCH per record."""
    with booted() as k:
        echo(k, "function", "current_tracer")
        assert check_consistency(k.ftrace) == []
        with running_as(BASH):
            ftrace_bug(k.ftrace, -errno.EFAULT, int(k.ftrace.pages.groups[0].ips[0]), b"")
        assert k.ftrace.ftrace_disabled and not k.ftrace.ftrace_enabled
        assert ((k.ftrace.pages.groups[0].flags & np.uint64(FTRACE_FL_ENABLED)) != 0).all()
        assert [a.kind for a in check_consistency(k.ftrace)] == []


@given(data=st.data(), base=st.integers(0, 2**63),
       spread=st.sampled_from([2**12, 2**24, 2**40]))
def test_entries_among_names_the_records_a_set_holds(data, base, spread):
    """``entries_among``, whichever way it tests (each entry compared, a table over the
    entries' span, a sort for a span too wide), marks the records that are entries: what
    a walk of every record asking a Python set finds. Entries are some of the records
    (from none to all, across the compare-or-table threshold) and addresses that are not,
    within the records' span or outside it."""
    address = st.integers(base, base + spread)
    count = data.draw(st.sampled_from([1, 5, 40, 300]))
    ips = data.draw(st.lists(address, min_size=count, max_size=count, unique=True))
    strays = data.draw(st.lists(st.one_of(address, st.integers(0, 2**64 - 1)), max_size=40))
    records = np.array(sorted(ips), dtype=np.uint64)
    share = data.draw(st.sampled_from([0.0, 0.03, 0.5, 1.0]))
    rnd = data.draw(st.randoms(use_true_random=False))
    named = [ip for ip in ips if rnd.random() < share]
    entries = np.array(sorted(set(named) | set(strays)), dtype=np.uint64)
    wanted = set(entries.tolist())
    assert consistency.entries_among(records, entries).tolist() == [
        ip in wanted for ip in records.tolist()]
