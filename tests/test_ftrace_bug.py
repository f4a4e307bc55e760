"""A code modification that fails: the failpoints' error action, ``ftrace_bug()`` and what
3.6 does after it (spec §2.5, §2.7, §2.11, §5.2), in-process.

dmesg is compared line by line with §5.2's formats: the WARNING block of
``FTRACE_WARN_ON_ONCE(1)`` at the ``ftrace_bug`` line first, then the KERN_INFO line with
``print_ip_sym()``'s ``[<%p>] %pS``, then x86's ``Failed on %s (%d):`` where the patching
passes print it.
"""

from __future__ import annotations

import errno
import re
import struct
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from kernel_daemon.errno import KernelError
from kernel_daemon.failpoints import Failpoints
from kernel_daemon.ftrace.consistency import check_consistency
from kernel_daemon.ftrace.core import ftrace_kill
from kernel_daemon.ftrace.filter import ftrace_set_filter
from kernel_daemon.ftrace.module_records import ftrace_page_sizes
from kernel_daemon.ftrace.ops import FtraceOps, ftrace_stub
from kernel_daemon.ftrace.register import register_ftrace_function
from kernel_daemon.ftrace.records import FTRACE_FL_ENABLED, FTRACE_REF_MAX, ftrace_rec_count
from kernel_daemon.ftrace.regex_file import (ftrace_regex_open, ftrace_regex_release,
                                             ftrace_regex_write)
from kernel_daemon.ftrace.update import ftrace_bug
from kernel_daemon.kernel import BootOptions, Kernel
from kernel_daemon.printk import LogRecord
from kernel_daemon.task import running_as
from tests.kernel_helpers import BASH, booted, echo, modprobe, record, rmmod, warnings
from tests.test_race_windows import Step

# Every record of a kernel booted by booted(): core_functions=4096, no module loaded.
CORE = 4096
FRAMES_TO_CURRENT_TRACER = ["tracing_set_tracer", "tracing_set_trace_write", "vfs_write",
                            "sys_write", "system_call_fastpath"]
ENABLE_FRAMES = ["warn_slowpath_common", "warn_slowpath_null", "ftrace_bug",
                 "ftrace_replace_code", "ftrace_modify_all_code", "arch_ftrace_update_code",
                 "ftrace_run_update_code", "ftrace_startup", "register_ftrace_function",
                 "tracing_start_function_trace", "function_trace_init", "tracer_init",
                 *FRAMES_TO_CURRENT_TRACER]
LOAD_FRAMES = ["warn_slowpath_common", "warn_slowpath_null", "ftrace_bug", "ftrace_update_code",
               "ftrace_process_locs", "ftrace_init_module", "ftrace_module_notify",
               "notifier_call_chain", "__blocking_notifier_call_chain",
               "blocking_notifier_call_chain", "sys_init_module", "system_call_fastpath"]


def after_warning(kernel: Kernel) -> list[LogRecord]:
    """The records printed after the last WARN block's end marker."""
    records = kernel.printk.read_records()
    ends = [i for i, r in enumerate(records) if r.text.startswith("---[ end trace ")]
    return records[ends[-1] + 1:]


def trace_of(warn: str) -> list[str]:
    return [line.split("] ", 1)[1].split("+")[0] for line in warn.splitlines()[5:-1]]


def site(kernel: Kernel, name: str) -> str:
    """``print_ip_sym()`` of a function's record: ``[<%p>] %pS``, its ip the function's."""
    sym = kernel.kallsyms.lookup_name(name)[0]
    module = f" [{sym.module}]" if sym.module else ""
    return f"[<{sym.addr:016x}>] {name}+0x0/{sym.size:#x}{module}"


def call_insn(ip: int, target: int) -> str:
    """The bytes of ``call target`` at ip as print_ip_ins() prints them."""
    return ":".join(f"{b:02x}" for b in struct.pack("<Bi", 0xE8, target - (ip + 5)))


def addr(kernel: Kernel, name: str) -> int:
    return kernel.kallsyms.lookup_name(name)[0].addr


def record_index(kernel: Kernel, name: str, module: str | None = None) -> int:
    """A record's place in the walk of every record (for_ftrace_rec_iter)."""
    before = 0
    for pg in kernel.ftrace.pages.groups:
        hits = np.flatnonzero(pg.names == name)
        if len(hits) and (module is None or pg.module_name == module):
            return before + int(hits[0])
        before += len(pg.ips)
    raise LookupError(name)


def assert_dead(kernel: Kernel) -> None:
    """ftrace_kill(): every later filter write is ENODEV (spec §2.11)."""
    assert kernel.ftrace.ftrace_disabled and not kernel.ftrace.ftrace_enabled
    with pytest.raises(KernelError) as exc:
        echo(kernel, "schedule", "set_ftrace_filter")
    assert exc.value.errno == errno.ENODEV


def test_enabling_a_site_that_faults_reports_it_and_kills_ftrace():
    with booted() as kernel:
        modprobe(kernel, "uinput")
        assert echo(kernel, "uinput_release", "set_ftrace_filter") == []
        kernel.failpoints.configure("add_breakpoints", "1*error(EFAULT)")
        echo(kernel, "function", "current_tracer")

        [warn] = warnings(kernel)
        lines = warn.splitlines()
        assert re.fullmatch(r"WARNING: at kernel/trace/ftrace\.c:1578 "
                            r"ftrace_bug\+0x[0-9a-f]+/0x[0-9a-f]+\(\)", lines[1])
        assert lines[2] == "Modules linked in: uinput"
        assert lines[3] == "Pid: 20903, comm: bash Not tainted 3.6.11+ #1"
        assert trace_of(warn) == ENABLE_FRAMES
        # Then the message, one record (pr_info continued by print_ip_sym), and x86's
        # report: the first pass got past every record before uinput_release's.
        assert [(r.level, r.text) for r in after_warning(kernel)] == [
            (6, f"ftrace faulted on modifying {site(kernel, 'uinput_release')}"),
            (4, f"Failed on adding breakpoints ({record_index(kernel, 'uinput_release')}):"),
        ]
        assert record_index(kernel, "uinput_release") > CORE
        # Counted, not patched: the first pass changes no flag.
        assert record(kernel.ftrace, "uinput_release") == (1, False)
        assert "W" in kernel.panic.print_tainted()
        # The write itself succeeded: the tracer ignores what happened to the patching.
        assert kernel.tracing.current_trace.name == "function"
        # ftrace_kill() pointed the trampoline at the stub: nothing is traced.
        assert kernel.ftrace.trampoline_target is ftrace_stub
        assert_dead(kernel)
        # The counts are right; after ftrace_kill the model checks nothing else.
        assert check_consistency(kernel.ftrace) == []
        state = kernel.failpoints.state("add_breakpoints")
        assert (state.spec, state.evaluations, state.triggers) == ("", 1, 1)
        assert kernel.failpoints.state("add_update").evaluations == 0


def test_a_site_not_as_expected_prints_the_bytes_it_is_believed_to_hold():
    with booted() as kernel:
        # Enabling: the site holds the 5-byte nop.
        kernel.failpoints.configure("add_breakpoints", "1*error(EINVAL)")
        echo(kernel, "function", "current_tracer")
        first = kernel.ftrace.pages.groups[0].names[0]
        assert [(r.level, r.text) for r in after_warning(kernel)] == [
            (6, f"ftrace failed to modify {site(kernel, first)}"),
            (4, " actual: 0f:1f:44:00:00"),
            (4, "Failed on adding breakpoints (0):"),
        ]
        assert warnings(kernel)[0].splitlines()[1].startswith(
            "WARNING: at kernel/trace/ftrace.c:1583 ftrace_bug+0x")
    with booted() as kernel:
        # Disabling: the site holds the call of ftrace_caller.
        echo(kernel, "function", "current_tracer")
        kernel.failpoints.configure("add_breakpoints", "1*error(EINVAL)")
        echo(kernel, "nop", "current_tracer")
        first = kernel.ftrace.pages.groups[0].names[0]
        ip = addr(kernel, first)
        assert [r.text for r in after_warning(kernel)] == [
            f"ftrace failed to modify {site(kernel, first)}",
            f" actual: {call_insn(ip, addr(kernel, 'ftrace_caller'))}",
            "Failed on adding breakpoints (0):",
        ]
        [warn] = warnings(kernel)
        assert trace_of(warn)[2:8] == ["ftrace_bug", "ftrace_replace_code",
                                       "ftrace_modify_all_code", "arch_ftrace_update_code",
                                       "ftrace_run_update_code", "ftrace_shutdown"]
        # The counts went to 0 before the patching, which changed no flag.
        assert record(kernel.ftrace, first) == (0, True)
        assert_dead(kernel)


@pytest.mark.parametrize(("failpoint", "report", "flipped"),
                         [("add_update", "updating code", 0),
                          ("finish_update", "removing breakpoints", 1)])
def test_a_later_pass_that_fails_reports_every_record(failpoint, report, flipped):
    with booted() as kernel:
        kernel.failpoints.configure(failpoint, "1*error(EPERM)")
        echo(kernel, "function", "current_tracer")
        names = kernel.ftrace.pages.groups[0].names
        assert [(r.level, r.text) for r in after_warning(kernel)] == [
            (6, f"ftrace faulted on writing {site(kernel, names[0])}"),
            (4, f"Failed on {report} ({CORE}):"),
        ]
        assert warnings(kernel)[0].splitlines()[1].startswith(
            "WARNING: at kernel/trace/ftrace.c:1590 ftrace_bug+0x")
        # Only the third pass updates flags: up to and including the failing record.
        assert record(kernel.ftrace, names[0]) == (1, bool(flipped))
        assert record(kernel.ftrace, names[1]) == (1, False)
        assert_dead(kernel)


def test_a_failure_in_the_middle_of_a_pass_leaves_the_records_before_it_updated():
    with booted(seed=3) as kernel:
        kernel.failpoints.configure("finish_update", "0.5%error(EPERM)")
        echo(kernel, "function", "current_tracer")
        state = kernel.failpoints.state("finish_update")
        failed = state.evaluations - 1  # every record changes, in page order
        assert 0 < failed < CORE - 1 and state.triggers == 1
        pg = kernel.ftrace.pages.groups[0]
        patched = (pg.flags & np.uint64(FTRACE_FL_ENABLED)) != 0
        assert patched[:failed + 1].all() and not patched[failed + 1:].any()
        assert after_warning(kernel)[0].text == \
            f"ftrace faulted on writing {site(kernel, pg.names[failed])}"


def test_an_unarmed_pass_counts_its_sites_without_walking_the_records(monkeypatch):
    with booted() as kernel:
        fired: list[str] = []
        fire = kernel.failpoints.fire
        monkeypatch.setattr(kernel.failpoints, "fire",
                            lambda name: fired.append(name) or fire(name))
        echo(kernel, "function", "current_tracer")
        assert not {"add_breakpoints", "add_update", "finish_update"} & set(fired)
        for name in ("add_breakpoints", "add_update", "finish_update"):
            state = kernel.failpoints.state(name)
            assert (state.evaluations, state.triggers) == (CORE, 0)
        modprobe(kernel, "uinput")
        assert not {"ftrace_make_nop", "ftrace_make_call"} & set(fired)
        uinput = len(kernel.ftrace.pages.groups[-1].ips)
        assert kernel.failpoints.state("ftrace_make_nop").evaluations == uinput
        assert kernel.failpoints.state("ftrace_make_call").evaluations == uinput
        assert warnings(kernel) == []


def test_a_pass_pauses_at_its_failpoint_before_changing_anything():
    with booted() as kernel:
        kernel.failpoints.configure("add_update", "1*pause")
        writer = threading.Thread(target=echo, args=(kernel, "function", "current_tracer"))
        writer.start()
        try:
            assert kernel.failpoints.wait_paused("add_update", 1, timeout=30)
            assert kernel.failpoints.state("add_update").paused[0].pid == BASH.pid
            assert record(kernel.ftrace, "schedule") == (1, False)
        finally:
            kernel.failpoints.release("add_update")
            writer.join(30)
        assert not writer.is_alive()
        assert record(kernel.ftrace, "schedule") == (1, True)
        assert warnings(kernel) == [] and not kernel.ftrace.ftrace_disabled


def test_a_module_whose_conversion_faults_still_loads_and_ftrace_dies():
    with booted() as kernel:
        echo(kernel, "function", "current_tracer")
        kernel.failpoints.configure("ftrace_make_nop", "1*error(EINVAL)")
        mod = modprobe(kernel, "uinput")
        assert [m.name for m in kernel.modules.modules()] == ["uinput"]
        [warn] = warnings(kernel)
        assert warn.splitlines()[1].startswith(
            "WARNING: at kernel/trace/ftrace.c:1583 ftrace_bug+0x")
        assert warn.splitlines()[2] == "Modules linked in: uinput(+)"
        assert warn.splitlines()[3].startswith("Pid: 20950, comm: modprobe ")
        assert trace_of(warn) == LOAD_FRAMES
        pg = kernel.ftrace.pages.groups[-1]
        first = str(pg.names[0])
        ip = int(pg.ips[0])
        # The site still holds the compiler's call of mcount.
        assert ip == mod.module_core
        assert [(r.level, r.text) for r in after_warning(kernel)] == [
            (6, f"ftrace failed to modify {site(kernel, first)}"),
            (4, f" actual: {call_insn(ip, addr(kernel, 'mcount'))}"),
        ]
        # The failing record has its count, unpatched; the loop never reached the rest.
        assert record(kernel.ftrace, first, "uinput") == (1, False)
        assert not ftrace_rec_count(pg.flags[1:]).any()
        # Failed at record 0 of its only ftrace_page: 0 records converted.
        assert kernel.ftrace.ftrace_update_tot_cnt == CORE
        assert_dead(kernel)


def test_a_module_conversion_that_fails_midway_counts_the_records_converted():
    with booted(seed=1) as kernel:
        echo(kernel, "function", "current_tracer")
        kernel.failpoints.configure("ftrace_make_nop", "10%error(EPERM)")
        modprobe(kernel, "uinput")
        failed = kernel.failpoints.state("ftrace_make_nop").evaluations - 1
        pg = kernel.ftrace.pages.groups[-1]
        assert 0 < failed < len(pg.ips) - 1
        assert after_warning(kernel)[0].text == \
            f"ftrace faulted on writing {site(kernel, str(pg.names[failed]))}"
        patched = (pg.flags & np.uint64(FTRACE_FL_ENABLED)) != 0
        counts = ftrace_rec_count(pg.flags)
        assert patched[:failed].all() and not patched[failed:].any()
        assert (counts[:failed + 1] == 1).all() and not counts[failed + 1:].any()
        # uinput's records fit one ftrace_page: the loop ended, having converted `failed`.
        assert ftrace_page_sizes(len(pg.ips)) == [len(pg.ips)]
        assert kernel.ftrace.ftrace_update_tot_cnt == CORE + failed


def test_a_failure_before_the_last_ftrace_page_adds_nothing_to_the_total():
    # xfs's 2304 records take a 2048-record ftrace_page and a 256-record one.
    assert ftrace_page_sizes(2304) == [2048, 256]
    assert ftrace_page_sizes(274) == [274] and ftrace_page_sizes(700) == [512, 188]
    with booted(seed=1) as kernel:
        kernel.failpoints.configure("ftrace_make_nop", "1%error(EFAULT)")
        modprobe(kernel, "xfs")
        failed = kernel.failpoints.state("ftrace_make_nop").evaluations - 1
        assert 0 < failed < 2048
        assert kernel.ftrace.ftrace_update_tot_cnt == CORE
        assert after_warning(kernel)[0].text.startswith("ftrace faulted on modifying [<")


def test_a_new_record_that_cannot_be_patched_to_call_is_left_enabled():
    with booted() as kernel:
        echo(kernel, "function", "current_tracer")
        kernel.failpoints.configure("ftrace_make_call", "1*error(EFAULT)")
        modprobe(kernel, "uinput")
        pg = kernel.ftrace.pages.groups[-1]
        first = str(pg.names[0])
        assert [(r.level, r.text) for r in after_warning(kernel)] == [
            (6, f"ftrace faulted on modifying {site(kernel, first)}"),
        ]
        assert trace_of(warnings(kernel)[0]) == LOAD_FRAMES
        # __ftrace_replace_code() set ENABLED before ftrace_make_call() failed.
        assert record(kernel.ftrace, first, "uinput") == (1, True)
        assert not ftrace_rec_count(pg.flags[1:]).any()
        # The loop went on to the next record, found ftrace dead and returned -1.
        assert kernel.ftrace.ftrace_update_tot_cnt == CORE
        assert_dead(kernel)


def test_ftrace_bug_warns_once_per_line_and_kills_every_time():
    with booted() as kernel, running_as(BASH):
        ft = kernel.ftrace
        ip = addr(kernel, "schedule")
        ftrace_bug(ft, -errno.ENOMEM, ip, b"")
        assert ft.ftrace_disabled
        ftrace_bug(ft, -errno.ENOMEM, ip, b"")
        ftrace_bug(ft, -errno.EPERM, ip, b"")
        headers = [warn.splitlines()[1] for warn in warnings(kernel)]
        assert [h.split()[2] for h in headers] == ["kernel/trace/ftrace.c:1595",
                                                   "kernel/trace/ftrace.c:1590"]
        assert [r.text for r in after_warning(kernel)] == [
            f"ftrace faulted on writing {site(kernel, 'schedule')}"]
        texts = [r.text for r in kernel.printk.read_records()]
        assert texts.count(f"ftrace faulted on unknown error {site(kernel, 'schedule')}") == 2


def test_the_error_action_only_where_a_modification_can_fail():
    with booted() as kernel:
        fp = kernel.failpoints
        for name, spec in [("ftrace_hash_move:after_disable", "1*error(EPERM)"),
                           ("add_update", "error(EFAULT)"), ("finish_update", "error(EINVAL)"),
                           ("ftrace_make_nop", "error(ENOMEM)")]:
            with pytest.raises(ValueError, match="cannot fail"):
                fp.configure(name, spec)
            assert fp.list()[name] == ""
        # The other actions work at the new sites, and the error at the old ones is refused
        # before boot too.
        for name in ("ftrace_make_nop", "ftrace_make_call", "add_breakpoints", "add_update",
                     "finish_update"):
            fp.configure(name, "20%2*sleep(0)")
            assert fp.list()[name] == "20%2*sleep(0)"
            fp.configure(name, "off")
    with pytest.raises(ValueError, match="cannot fail"):
        BootOptions(failpoints=(("add_update", "error(EINVAL)"),)).validate()
    BootOptions(failpoints=(("add_update", "50%error(EPERM)"),)).validate()
    # A failpoint table with no errors given lets any site fail.
    assert Failpoints(known=("x",)).configure("x", "error(ENOMEM)") is None


def flags_of(kernel: Kernel, name: str, module: str) -> int:
    """The whole ``dyn_ftrace.flags`` word (count and ENABLED) of a module's record."""
    [pg] = [pg for pg in kernel.ftrace.pages.groups if pg.module_name == module]
    [i] = np.flatnonzero(pg.names == name)
    return int(pg.flags[i])


@pytest.mark.parametrize("other_ops", [False, True],
                         ids=["reviewers-witness", "later-record-counted-by-another-ops"])
def test_the_filter_pass_stops_at_its_first_warn_and_leaves_later_groups_alone(other_ops):
    """3.6's ``__ftrace_hash_rec_update`` walks the records with
    ``do_for_each_ftrace_rec`` and ``return``s from inside it when ``FTRACE_WARN_ON``
    (WARN_ON, then ``ftrace_kill()``) fires: one WARNING, and no record after the one
    that tripped it, in its page group or a later one, is touched.

    Buggy variant: uinput then dummy loaded, the filter naming one function of each,
    the function tracer on; both modules reloaded (same addresses) come back with count
    0. ``echo nop`` disables global_ops' filter: uinput_release WARNs, and the pass must
    not go on to dummy's group. In the reviewer's witness dummy_dev_init is at 0 too (a
    pass that carried on would WARN twice); with a private ops naming it, it is at 1 (a
    pass that carried on would take it to 0 without a second WARN)."""
    with booted(variant="buggy") as kernel:
        ft = kernel.ftrace
        loads = [modprobe(kernel, m).module_core for m in ("uinput", "dummy")]
        assert echo(kernel, "uinput_release dummy_dev_init", "set_ftrace_filter") == []
        echo(kernel, "function", "current_tracer")
        for m in ("uinput", "dummy"):
            rmmod(kernel, m)
        assert [modprobe(kernel, m).module_core for m in ("uinput", "dummy")] == loads
        assert [pg.module_name for pg in ft.pages.groups][1:] == ["uinput", "dummy"]
        if other_ops:
            ops = FtraceOps("private_ops")
            ftrace_set_filter(ft, ops, "dummy_dev_init", True)
            register_ftrace_function(ft, ops)
        assert record(ft, "uinput_release", "uinput") == (0, False)
        assert record(ft, "dummy_dev_init", "dummy") == (int(other_ops), other_ops)
        later = flags_of(kernel, "dummy_dev_init", "dummy")
        assert warnings(kernel) == []

        echo(kernel, "nop", "current_tracer")
        warns = warnings(kernel)
        assert len(warns) == 1, warns
        assert warns[0].splitlines()[1].startswith(
            "WARNING: at kernel/trace/ftrace.c:1529 __ftrace_hash_rec_update+0x")
        assert ft.ftrace_disabled
        assert record(ft, "uinput_release", "uinput") == (0, False)
        assert flags_of(kernel, "dummy_dev_init", "dummy") == later


def set_count(kernel: Kernel, name: str, count: int) -> None:
    """Write a core record's count straight into its ``dyn_ftrace.flags`` (ENABLED kept),
    as a debugger would: where no sequence of ops can take it in a test's time."""
    pages = kernel.ftrace.pages
    [pg] = [pg for pg in pages.groups if (pg.names == name).any()]
    [i] = np.flatnonzero(pg.names == name)
    pages.write_begin()
    try:
        pg.flags[i] = (pg.flags[i] & np.uint64(FTRACE_FL_ENABLED)) | np.uint64(count)
        kernel.ftrace.rec_counts_gen += 1
    finally:
        pages.write_end()


REC_UPDATE_WARNING = re.compile(r"WARNING: at kernel/trace/(ftrace\.c:\d+) __ftrace_hash_rec_update\+")


def warned_at_rec_update(kernel: Kernel) -> list[str]:
    """The ftrace.c line of each WARNING in dmesg that ``__ftrace_hash_rec_update`` gave."""
    return [m.group(1) for warn in warnings(kernel)
            if (m := REC_UPDATE_WARNING.match(warn.splitlines()[1]))]


def test_an_increment_to_ftrace_ref_max_warns_and_keeps_the_increment():
    """3.6's ``__ftrace_hash_rec_update``, inc case: ``rec->flags++``, then
    ``FTRACE_WARN_ON((rec->flags & ~FTRACE_FL_MASK) == FTRACE_REF_MAX)`` (ftrace.c:1526)
    and return. A filter naming one record at FTRACE_REF_MAX - 1: ``echo function``
    takes it to FTRACE_REF_MAX, WARNs and kills ftrace; ftrace_startup() then patches
    nothing, as ftrace_enabled is 0."""
    with booted() as kernel:
        set_count(kernel, "schedule", FTRACE_REF_MAX - 1)
        assert echo(kernel, "schedule", "set_ftrace_filter") == []
        echo(kernel, "function", "current_tracer")
        assert warned_at_rec_update(kernel) == ["ftrace.c:1526"]
        assert trace_of(warnings(kernel)[0])[2:5] == [
            "__ftrace_hash_rec_update", "ftrace_startup", "register_ftrace_function"]
        assert record(kernel.ftrace, "schedule") == (FTRACE_REF_MAX, False)
        assert_dead(kernel)


def test_the_all_functions_pass_stops_at_the_record_it_takes_to_ftrace_ref_max():
    """The same check in the pass over every record (an empty filter): the records before
    the one at FTRACE_REF_MAX - 1 are incremented, that one too (then the WARN at
    ftrace.c:1526 and the return), the ones after it are not visited."""
    with booted() as kernel:
        names = [str(name) for name in kernel.ftrace.pages.groups[0].names]
        at = names.index("schedule")
        assert 0 < at < len(names) - 1
        set_count(kernel, "schedule", FTRACE_REF_MAX - 1)
        echo(kernel, "function", "current_tracer")
        assert warned_at_rec_update(kernel) == ["ftrace.c:1526"]
        counts = ftrace_rec_count(kernel.ftrace.pages.groups[0].flags).tolist()
        assert counts[at] == FTRACE_REF_MAX
        assert counts[:at] == [1] * at and counts[at + 1:] == [0] * (len(names) - at - 1)
        assert record(kernel.ftrace, "schedule") == (FTRACE_REF_MAX, False)
        assert_dead(kernel)


def test_a_filter_file_closed_after_ftrace_kill_still_moves_its_hash():
    """3.6's ``ftrace_regex_release()`` does not test ``ftrace_disabled`` (spec §2.11):
    the token left in the parser goes to ``ftrace_match_records()``, whose
    ``match_records()`` finds ftrace disabled under ftrace_lock and adds nothing; then
    ``ftrace_hash_move()`` installs the hash the earlier writes filled, its disable and
    enable passes counting as ever, and ``ftrace_run_update_code()`` is skipped, as
    ftrace_enabled is 0."""
    with booted() as kernel:
        ft = kernel.ftrace
        assert echo(kernel, "schedule", "set_ftrace_filter") == []
        echo(kernel, "function", "current_tracer")
        assert record(ft, "schedule") == (1, True)
        with running_as(BASH):
            iter = ftrace_regex_open(ft, ft.global_ops, True, False)
            ppos = SimpleNamespace(pos=0)
            assert ftrace_regex_write(ft, iter, b"vfs_read\n", ppos) == 9
            # No separator yet: the token stays in the parser.
            assert ftrace_regex_write(ft, iter, b"vfs_write", ppos) == 9
            ftrace_kill(ft)
            ftrace_regex_release(ft, iter)
        assert sorted(map(kernel.kallsyms.sprint_symbol_no_offset,
                          ft.global_ops.filter_hash.ips())) == ["schedule", "vfs_read"]
        assert record(ft, "schedule") == (1, True)
        assert record(ft, "vfs_read") == (1, False)
        assert record(ft, "vfs_write") == (0, False)
        assert warnings(kernel) == []
        assert_dead(kernel)


def test_a_load_that_finds_ftrace_dead_behind_ftrace_lock_still_links_its_pages():
    """ftrace_init_module() tests ftrace_disabled without the lock; ftrace_process_locs()
    then links the pages under it with no second test, and ftrace_update_code() returns
    -1 at the first record: ftrace killed while the load waited for the lock leaves the
    module's records on the list, unconverted, with no count."""
    slowpath = "__mutex_lock_slowpath:ftrace_lock"
    with booted() as kernel:
        total = kernel.ftrace.ftrace_update_tot_cnt
        kernel.failpoints.configure(slowpath, "1*pause")
        with kernel.ftrace.ftrace_lock:
            load = Step(modprobe, kernel, "uinput")
            assert kernel.failpoints.wait_paused(slowpath, 1, timeout=30)
            ftrace_kill(kernel.ftrace)
            kernel.failpoints.release(slowpath)
        load.finish()
        assert kernel.modules.find_module("uinput") is not None
        [uinput] = [pg for pg in kernel.ftrace.pages.groups if pg.module_name == "uinput"]
        assert uinput.unconverted and not uinput.flags.any()
        assert kernel.ftrace.ftrace_update_tot_cnt == total
