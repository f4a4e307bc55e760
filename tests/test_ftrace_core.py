"""The ftrace core in-process: the report's reproducer, its other paths, and the fix."""

from __future__ import annotations

import errno
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.consistency import AnomalyKind, check_consistency
from kernel_daemon.ftrace.filter import ftrace_set_filter, ftrace_set_notrace
from kernel_daemon.ftrace.listing import Listing, ftrace_avail_open
from kernel_daemon.ftrace.ops import FTRACE_OPS_FL_GLOBAL, FtraceOps
from kernel_daemon.ftrace.records import DYN_FTRACE, FTRACE_FL_ENABLED, search_ip
from kernel_daemon.ftrace.register import (ftrace_shutdown, register_ftrace_function,
                                           unregister_ftrace_function)
from kernel_daemon.module.catalog import load_catalog
from kernel_daemon.tracefs.tree import mount
from tests.kernel_helpers import (T, booted, cat, echo, invoke, modprobe, record,
                                  reproducer_until_reload, rmmod, t_show_all, warnings)
from tests.test_race_windows import Step


def test_buggy_reproducer_warns_once_through_ftrace_shutdown_and_kills_ftrace():
    with booted(variant="buggy") as kernel:
        first, second = reproducer_until_reload(kernel)
        assert first == second, "first-fit must reload at the same address"
        assert record(kernel.ftrace, "uinput_release") == (0, False)
        # The model's check sees the latent bug before any WARN.
        [anomaly] = check_consistency(kernel.ftrace)
        assert anomaly.kind is AnomalyKind.MISSING_REFERENCE
        assert (anomaly.function, anomaly.module, anomaly.expected, anomaly.actual) == \
            ("uinput_release", "uinput", 1, 0)
        assert anomaly.ops == ("global_ops",)
        assert warnings(kernel) == []

        echo(kernel, "nop", "current_tracer")
        [warn] = warnings(kernel)
        lines = warn.splitlines()
        assert lines[1].startswith("WARNING: at kernel/trace/ftrace.c:1529 __ftrace_hash_rec_update+0x")
        assert lines[1].endswith("()")
        assert "Modules linked in: uinput" in lines[2]
        assert lines[3].startswith("Pid: 20903, comm: bash Not tainted 3.6.11+ #1")
        trace = [line.split("] ", 1)[1].split("+")[0] for line in lines[5:-1]]
        assert trace == ["warn_slowpath_common", "warn_slowpath_null", "__ftrace_hash_rec_update",
                         "ftrace_shutdown", "unregister_ftrace_function",
                         "tracing_stop_function_trace", "function_trace_reset",
                         "tracing_set_tracer", "tracing_set_trace_write", "vfs_write",
                         "sys_write", "system_call_fastpath"]
        assert kernel.ftrace.ftrace_disabled
        assert "W" in kernel.panic.print_tainted()
        with pytest.raises(KernelError) as exc:
            register_ftrace_function(kernel.ftrace, FtraceOps("late"))
        assert exc.value.errno == errno.ENODEV
        # Nothing of ftrace answers any more.
        with pytest.raises(KernelError):
            ftrace_avail_open(kernel.ftrace, Listing.AVAILABLE)
        assert t_show_all(kernel.ftrace, Listing.ENABLED) == ""


# The report's call trace (8c4f3c3fa968's message) but for its two "?" lines, stale words
# the unwinder found on the stack, which the model's stack does not have.
REPORT_CALL_TRACE = """\
 [<ffffffff8103e5ff>] warn_slowpath_common+0x7f/0xc0
 [<ffffffff8103e65a>] warn_slowpath_null+0x1a/0x20
 [<ffffffff810c2ee3>] __ftrace_hash_rec_update+0x1e3/0x230
 [<ffffffff810c4f28>] ftrace_hash_move+0x28/0x1d0
 [<ffffffff810c68ee>] ftrace_regex_release+0x8e/0x150
 [<ffffffff81149f1e>] __fput+0xae/0x220
 [<ffffffff8114a09e>] ____fput+0xe/0x10
 [<ffffffff8105fa22>] task_work_run+0x72/0x90
 [<ffffffff810028ec>] do_notify_resume+0x6c/0xc0
 [<ffffffff815c0f88>] int_signal+0x12/0x17
"""


def test_the_reports_own_path_prints_the_reports_warning_and_call_trace():
    """The report's WARN came from a filter write after the reload (ftrace_regex_release,
    ftrace_hash_move's disable pass): the model prints its WARNING line and call trace
    address for address, on a kernel of the default size."""
    with booted(variant="buggy", core_functions=40960) as kernel:
        reproducer_until_reload(kernel)
        echo(kernel, "uinput_open", "set_ftrace_filter")
        [warn] = warnings(kernel)
        lines = warn.splitlines()
        assert lines[1] == ("WARNING: at kernel/trace/ftrace.c:1529 "
                            "__ftrace_hash_rec_update+0x1e3/0x230()")
        assert lines[4:-1] == ["Call Trace:", *REPORT_CALL_TRACE.splitlines()]


def test_fixed_reproducer_counts_the_reloaded_record_and_stays_consistent():
    with booted(variant="fixed") as kernel:
        ft = kernel.ftrace
        modprobe(kernel, "uinput")
        assert check_consistency(ft) == []
        echo(kernel, "uinput_release", "set_ftrace_filter")
        assert check_consistency(ft) == []
        echo(kernel, "function", "current_tracer")
        assert check_consistency(ft) == []
        rmmod(kernel, "uinput")
        assert check_consistency(ft) == []
        modprobe(kernel, "uinput")
        assert record(ft, "uinput_release") == (1, True)
        assert check_consistency(ft) == []
        assert t_show_all(ft, Listing.ENABLED) == "uinput_release [uinput] (1)\n"
        echo(kernel, "nop", "current_tracer")
        assert record(ft, "uinput_release") == (0, False)
        assert check_consistency(ft) == []
        assert warnings(kernel) == [] and not ft.ftrace_disabled
        assert t_show_all(ft, Listing.ENABLED) == ""


@pytest.mark.parametrize("variant", ["buggy", "fixed"])
def test_filter_change_after_reload_warns_through_ftrace_regex_release(variant):
    with booted(variant=variant) as kernel:
        reproducer_until_reload(kernel)
        echo(kernel, "uinput_open", "set_ftrace_filter", append=True)
        if variant == "fixed":
            assert warnings(kernel) == [] and check_consistency(kernel.ftrace) == []
            assert record(kernel.ftrace, "uinput_open") == (1, True)
            return
        [warn] = warnings(kernel)
        trace = [line.split("] ", 1)[1].split("+")[0] for line in warn.splitlines()[5:-1]]
        assert trace == ["warn_slowpath_common", "warn_slowpath_null", "__ftrace_hash_rec_update",
                         "ftrace_hash_move", "ftrace_regex_release", "__fput", "____fput",
                         "task_work_run", "do_notify_resume", "int_signal"]
        assert kernel.ftrace.ftrace_disabled
        # ftrace_hash_move() goes on after the WARN of its disable pass (spec §2.3): the
        # new hash is installed and its enable pass counts both functions; ftrace_enabled
        # is 0 by then, so ftrace_regex_release() patches nothing.
        ft = kernel.ftrace
        assert sorted(map(kernel.kallsyms.sprint_symbol_no_offset,
                          ft.global_ops.filter_hash.ips())) == ["uinput_open [uinput]",
                                                                "uinput_release [uinput]"]
        assert record(ft, "uinput_release") == (1, False)
        assert record(ft, "uinput_open") == (1, False)
        # A later filter write: the open refuses (No such device).
        with pytest.raises(KernelError) as exc:
            echo(kernel, "uinput_read", "set_ftrace_filter")
        assert exc.value.errno == errno.ENODEV


@pytest.mark.parametrize("variant", ["buggy", "fixed"])
def test_notrace_half_leaks_a_count_in_buggy_only(variant):
    with booted(variant=variant) as kernel:
        modprobe(kernel, "uinput")
        echo(kernel, "uinput_release", "set_ftrace_notrace")
        echo(kernel, "function", "current_tracer")
        assert record(kernel.ftrace, "uinput_release") == (0, False)
        assert record(kernel.ftrace, "uinput_open") == (1, True)
        rmmod(kernel, "uinput")
        modprobe(kernel, "uinput")
        anomalies = check_consistency(kernel.ftrace)
        if variant == "fixed":
            assert anomalies == []
            assert record(kernel.ftrace, "uinput_release") == (0, False)
        else:
            [leak] = anomalies
            assert leak.kind is AnomalyKind.LEAKED_REFERENCE
            assert (leak.function, leak.expected, leak.actual, leak.enabled) == \
                ("uinput_release", 0, 1, True)
        echo(kernel, "nop", "current_tracer")
        assert warnings(kernel) == []  # 3.6 is silent about a leak


def test_a_reloaded_function_in_both_filter_and_notrace_is_counted_by_no_one():
    """8c4f3c3's ``referenced_filters()`` → ``ops_references_rec()``: a record the ops'
    filter names but its notrace hash also names is not referenced, so the reloaded
    record starts at 0, as ``__ftrace_hash_rec_update`` (filter case: ip in hash and not
    in other) left it before the unload; ``echo nop`` then takes nothing from it."""
    with booted(variant="fixed") as kernel:
        ft = kernel.ftrace
        first = modprobe(kernel, "uinput").module_core
        assert echo(kernel, "uinput_release uinput_open", "set_ftrace_filter") == []
        assert echo(kernel, "uinput_release", "set_ftrace_notrace") == []
        echo(kernel, "function", "current_tracer")
        assert record(ft, "uinput_release") == (0, False)
        assert record(ft, "uinput_open") == (1, True)
        rmmod(kernel, "uinput")
        assert modprobe(kernel, "uinput").module_core == first
        assert record(ft, "uinput_release") == (0, False)
        assert record(ft, "uinput_open") == (1, True)
        assert check_consistency(ft) == []
        echo(kernel, "nop", "current_tracer")
        assert warnings(kernel) == [] and not ft.ftrace_disabled
        assert record(ft, "uinput_release") == (0, False)
        assert record(ft, "uinput_open") == (0, False)
        assert check_consistency(ft) == []


def test_a_disable_pass_over_a_reloaded_group_stops_at_its_first_zero_count():
    """3.6's ``__ftrace_hash_rec_update``, dec case: ``if (FTRACE_WARN_ON(count == 0))
    return;`` comes before ``rec->flags--``. So the records before the first zero count
    are decremented, that record keeps its flags word (0, not decremented below it), and
    the records after it are not visited.

    Buggy variant, a filter of every uinput function: the function tracer, uinput
    reloaded at its address (every record back at 0), then a private ops naming the
    group's first record (count 1). ``echo nop`` disables global_ops' filter: the first
    record goes 1 → 0, the second WARNs at ftrace.c:1529 and stays 0, the rest stay 0."""
    with booted(variant="buggy") as kernel:
        ft = kernel.ftrace
        first = modprobe(kernel, "uinput").module_core
        assert echo(kernel, "uinput_*", "set_ftrace_filter") == []
        echo(kernel, "function", "current_tracer")
        rmmod(kernel, "uinput")
        assert modprobe(kernel, "uinput").module_core == first
        [pg] = [pg for pg in ft.pages.groups if pg.module_name == "uinput"]
        names = [str(name) for name in pg.names]
        assert len(names) > 2 and all(name.startswith("uinput_") for name in names)
        ops = FtraceOps("private_ops")
        ftrace_set_filter(ft, ops, names[0], reset=True)
        register_ftrace_function(ft, ops)
        assert pg.flags.tolist() == [1 | FTRACE_FL_ENABLED] + [0] * (len(names) - 1)

        echo(kernel, "nop", "current_tracer")
        [warn] = warnings(kernel)
        assert warn.splitlines()[1].startswith(
            "WARNING: at kernel/trace/ftrace.c:1529 __ftrace_hash_rec_update+0x")
        assert ft.ftrace_disabled
        # The first record's count went; its ENABLED bit stays, as nothing patches again.
        flags = pg.flags.tolist()
        assert flags[:2] == [FTRACE_FL_ENABLED, 0]
        assert flags[2:] == [0] * (len(names) - 2)


@pytest.mark.parametrize("variant", ["buggy", "fixed"])
def test_reload_at_a_different_address_is_harmless(variant):
    with booted(variant=variant) as kernel:
        first = modprobe(kernel, "uinput").module_core
        echo(kernel, "uinput_release", "set_ftrace_filter")
        echo(kernel, "function", "current_tracer")
        rmmod(kernel, "uinput")
        # Another module takes uinput's hole first.
        filler = next(spec for spec in load_catalog().values()
                      if spec.name != "uinput" and len(spec.functions) >= len(load_catalog()["uinput"].functions))
        kernel.modules.load_module(filler)
        second = modprobe(kernel, "uinput").module_core
        assert second != first
        echo(kernel, "nop", "current_tracer")
        assert warnings(kernel) == []
        assert check_consistency(kernel.ftrace) == []


def test_tracer_ops_own_filter_is_the_second_road_to_the_bug():
    with booted(variant="buggy") as kernel:
        ft = kernel.ftrace
        modprobe(kernel, "uinput")
        ops = FtraceOps("tracer_ops")
        ftrace_set_filter(ft, ops, "uinput_read", reset=True)
        register_ftrace_function(ft, ops)
        assert record(ft, "uinput_read") == (1, True)
        rmmod(kernel, "uinput")
        modprobe(kernel, "uinput")
        [missing] = check_consistency(ft)
        assert missing.ops == ("tracer_ops",)
        unregister_ftrace_function(ft, ops)
        assert len(warnings(kernel)) == 1 and ft.ftrace_disabled


def test_set_filter_api_errors_and_notrace():
    with booted() as kernel:
        ft = kernel.ftrace
        ops = FtraceOps("mine")
        with pytest.raises(KernelError) as exc:
            ftrace_set_filter(ft, ops, "no_such_function_anywhere", reset=True)
        assert exc.value.errno == errno.EINVAL
        ftrace_set_filter(ft, ops, "vfs_*", reset=True)
        ftrace_set_notrace(ft, ops, "vfs_write", reset=True)
        register_ftrace_function(ft, ops)
        assert record(ft, "vfs_write") == (0, False)
        assert record(ft, "vfs_read") == (1, True)
        assert check_consistency(ft) == []
        with pytest.raises(KernelError) as exc:
            register_ftrace_function(ft, ops)
        assert exc.value.errno == errno.EBUSY
        unregister_ftrace_function(ft, ops)
        assert record(ft, "vfs_read") == (0, False)
        assert check_consistency(ft) == []


def warned_at(kernel) -> list[str]:
    """Where each WARNING in dmesg points: "ftrace.c:LINE function"."""
    return [" ".join(warn.splitlines()[1].split()[2:4]).split("+")[0].removeprefix(
        "kernel/trace/") for warn in warnings(kernel)]


def register_twice(kernel) -> None:
    ops = FtraceOps("mine")
    register_ftrace_function(kernel.ftrace, ops)
    with pytest.raises(KernelError):
        register_ftrace_function(kernel.ftrace, ops)


def unregister_unregistered(kernel) -> None:
    with pytest.raises(KernelError):
        unregister_ftrace_function(kernel.ftrace, FtraceOps("mine"))


def register_global_ops(kernel) -> None:
    with pytest.raises(KernelError):
        register_ftrace_function(kernel.ftrace, kernel.ftrace.global_ops)


def unregister_global_ops(kernel) -> None:
    echo(kernel, "function", "current_tracer")  # global_ops is ENABLED while it runs
    with pytest.raises(KernelError):
        unregister_ftrace_function(kernel.ftrace, kernel.ftrace.global_ops)


def unbalanced_shutdown(kernel) -> None:
    with kernel.ftrace.ftrace_lock:
        ftrace_shutdown(kernel.ftrace, FtraceOps("mine"), 0)


def unbalanced_global_shutdown(kernel) -> None:
    ft = kernel.ftrace
    with ft.ftrace_lock:
        ft.ftrace_start_up = 1  # one start-up, but no GLOBAL one
        ftrace_shutdown(ft, FtraceOps("mine", flags=FTRACE_OPS_FL_GLOBAL), 0)


@pytest.mark.parametrize("provoke, where", [
    (register_global_ops, ["ftrace.c:318 __register_ftrace_function"]),
    (register_twice, ["ftrace.c:321 __register_ftrace_function"]),
    (unregister_unregistered, ["ftrace.c:354 __unregister_ftrace_function"]),
    (unregister_global_ops, ["ftrace.c:357 __unregister_ftrace_function"]),
    (unbalanced_shutdown, ["ftrace.c:1959 ftrace_shutdown"]),
    (unbalanced_global_shutdown, ["ftrace.c:1964 ftrace_shutdown",
                                  "ftrace.c:1967 ftrace_shutdown"]),
])
def test_each_warn_prints_its_line_of_3_6_ftrace_c(provoke, where):
    """The lines of New-B/Linux3.6 kernel/trace/ftrace.c (3.6.0; its 1529 is the
    report's), counted in the file as stored."""
    with booted() as kernel:
        provoke(kernel)
        assert warned_at(kernel) == where


@pytest.mark.parametrize("functions, pages", [(4096, 17), (4000, 16), (40960, 161)])
def test_boot_prints_ftrace_dyn_table_allocs_page_count(functions, pages):
    """ftrace_init() -> ftrace_dyn_table_alloc(count), which only prints in 3.6:
    count / ENTRIES_PER_PAGE + 1 pages, one more than ftrace_allocate_pages() needs when
    256 divides the count."""
    with booted(core_functions=functions) as kernel:
        assert (f"] ftrace: allocating {functions} entries in {pages} pages\n"
                in kernel.printk.read())


@pytest.mark.parametrize("variant", ["buggy", "fixed"])
@pytest.mark.parametrize("module", ["uinput", "dummy", ""])
def test_a_one_entry_filter_on_a_groups_last_function_is_counted_and_traced(variant, module):
    """The reviewer's case: ``echo uinput_compat_ioctl > set_ftrace_filter`` names the last
    record of uinput's page group (the highest address), where a lookup that stops one
    record short finds nothing: the listing would read empty and nothing be patched. The
    core kernel's last record is the same edge."""
    with booted(variant=variant) as kernel:
        ft = kernel.ftrace
        if module:
            modprobe(kernel, module)
        [pg] = [pg for pg in ft.pages.groups if pg.module_name == module]
        last = str(pg.names[-1])
        if module == "uinput":
            assert last == "uinput_compat_ioctl"
        line = f"{last} [{module}]" if module else last
        assert echo(kernel, last, "set_ftrace_filter") == []
        assert t_show_all(ft, Listing.FILTER) == f"{line}\n"
        echo(kernel, "function", "current_tracer")
        assert t_show_all(ft, Listing.ENABLED) == f"{line} (1)\n"
        assert record(ft, last, module or None) == (1, True)
        vfs = mount(kernel)
        assert invoke(kernel, last)
        events = [row.split()[4] for row in cat(vfs, f"{T}/trace").splitlines()
                  if not row.startswith("#")]
        assert events == [last]
        assert check_consistency(ft) == [] and warnings(kernel) == []


@given(data=st.data(), ips=st.lists(st.integers(0, 2**64 - 1), max_size=600),
       in_order=st.booleans())
def test_search_ip_answers_as_searchsorted(data, ips, in_order):
    """``search_ip`` (bisect, holding the GIL) is the lower-bound search of NumPy's
    ``searchsorted`` on a group's ip column, whether the ips are in order or not (a freed
    page reads back poisoned; a torn one is half so): the same answer either way."""
    recs = np.zeros(len(ips), dtype=DYN_FTRACE)
    recs["ip"] = sorted(ips) if in_order else ips
    ip = data.draw(st.sampled_from(ips) if ips and data.draw(st.booleans())
                   else st.integers(0, 2**64 - 1))
    assert search_ip(recs["ip"], ip) == int(np.searchsorted(recs["ip"], np.uint64(ip)))


def test_no_callback_runs_while_a_code_update_patches_the_call_sites():
    """ftrace_run_update_code() raises function_trace_stop around arch_ftrace_update_code():
    a function whose site is still patched, called on another CPU while a filter change
    patches (paused in its second pass), reaches ftrace_caller, which returns at its first
    test; once the update is done the callbacks run again."""
    with booted(cpus=2) as k:
        echo(k, "function", "current_tracer")
        k.failpoints.configure("add_update", "1*pause")
        writer = threading.Thread(target=echo, args=(k, "vfs_read", "set_ftrace_filter"))
        writer.start()
        try:
            assert k.failpoints.wait_paused("add_update", 1, timeout=30)
            assert invoke(k, "vfs_write", cpu=1)  # still patched: it enters the trampoline
            assert functions_traced(k) == []
        finally:
            k.failpoints.release("add_update")
            writer.join(30)
        assert not writer.is_alive()
        assert k.ftrace.function_trace_stop == 0
        assert invoke(k, "vfs_read", cpu=1)
        assert functions_traced(k) == ["vfs_read"]


def functions_traced(k) -> list[str]:
    """The functions of the function events in the buffer, oldest first."""
    return [k.symbol_name(ev.ip) for ev in k.ring_buffer.snapshot().events]


def test_two_set_filter_calls_at_once_can_lose_one_change():
    """ftrace_set_regex() copies the hash before ftrace_regex_lock, with no lock, as 3.6
    does: a call that copied while another held the lock (paused in ftrace_hash_move,
    about to install vfs_write) then installs its own copy, without vfs_write."""
    site = "ftrace_hash_move:after_disable"
    with booted() as k:
        ops = FtraceOps("mine")
        k.failpoints.configure(site, "1*pause")
        first = Step(ftrace_set_filter, k.ftrace, ops, "vfs_write", False)
        assert k.failpoints.wait_paused(site, 1, timeout=30)
        second = Step(ftrace_set_filter, k.ftrace, ops, "vfs_read", False)
        assert second.blocked(on=k.ftrace.ftrace_regex_lock)
        k.failpoints.release(site)
        first.finish()
        second.finish()
        assert {k.symbol_name(ip) for ip in ops.filter_hash.ips()} == {"vfs_read"}


def test_set_filter_with_an_empty_pattern_is_einval_and_none_is_no_pattern():
    """3.6's ftrace_set_regex() matches a non-NULL buf of length 0, which no name matches
    (EINVAL, the hash left as it was); NULL with reset empties the hash."""
    with booted() as k:
        ops = FtraceOps("mine")
        ftrace_set_filter(k.ftrace, ops, "vfs_read", False)
        for reset in (False, True):
            with pytest.raises(KernelError) as exc:
                ftrace_set_filter(k.ftrace, ops, "", reset)
            assert exc.value.errno == errno.EINVAL
            assert ops.filter_hash.count == 1
        ftrace_set_filter(k.ftrace, ops, None, True)
        assert ops.filter_hash.count == 0
