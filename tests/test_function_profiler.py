"""The function profiler (ftrace.c's CONFIG_FUNCTION_PROFILER, trace_stat.c's files):
``function_profile_enabled`` and ``trace_stat/function<cpu>``, in-process and through a
real daemon."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from clients.stress.checker import Checker, counted_ops
from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.consistency import AnomalyKind, check_consistency
from kernel_daemon.ftrace.core import ftrace_kill
from kernel_daemon.ftrace.dispatch import execute_function, on_cpu
from kernel_daemon.ftrace.ops import FTRACE_OPS_FL_ENABLED
from kernel_daemon.ftrace.profile import PROFILES_PER_PAGE
from kernel_daemon.ftrace.records import FTRACE_FL_ENABLED, ftrace_rec_count
from kernel_daemon.ftrace.snapshot import RecordsReader
from kernel_daemon.kernel import Kernel
from kernel_daemon.module.catalog import module_from_function_list
from kernel_daemon.module.vmlinux import MIN_FUNCTIONS
from kernel_daemon.task import running_as
from kernel_daemon.tracefs.files import file_llseek, file_read, file_release, file_write
from kernel_daemon.tracefs.tree import mount
from kernel_daemon.tracefs.vfs import Vfs
from tests.kernel_helpers import (BASH, T, booted, cat, echo, invoke, modprobe, record, rmmod,
                                  warnings, write)
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.test_shell_integration import run_shell

ENABLED = f"{T}/function_profile_enabled"
HEADER = ("  Function                               Hit\n"
          "  --------                               ---\n")


def profile(vfs: Vfs, on: bool) -> int:
    """``echo 1 > function_profile_enabled`` (or 0), as bash; what write(2) returned."""
    with running_as(BASH):
        return write(vfs, ENABLED, b"1\n" if on else b"0\n")


def stat_file(vfs: Vfs, cpu: int) -> str:
    return cat(vfs, f"{T}/trace_stat/function{cpu}")


def line(name: str, hits: int) -> str:
    return f"  {name:<30}  {hits:>10}\n"


def write_errno(vfs: Vfs, data: bytes) -> int:
    with pytest.raises(KernelError) as exc, running_as(BASH):
        write(vfs, ENABLED, data)
    return exc.value.errno


def all_counts(kernel: Kernel) -> tuple[np.ndarray, np.ndarray]:
    """Every live record's count and patched bit, in page order."""
    flags = np.concatenate([pg.flags for pg in kernel.ftrace.pages.groups])
    return ftrace_rec_count(flags).astype(np.int64), (flags & np.uint64(FTRACE_FL_ENABLED)) != 0


def test_function_profile_enabled_reads_and_writes_as_3_6():
    with booted(cpus=2) as k:
        vfs = mount(k)
        assert vfs.stat(ENABLED).mode == 0o644
        assert [(e.name, e.mode) for e in vfs.list_dir(f"{T}/trace_stat")] == [
            ("function0", 0o644), ("function1", 0o644)]
        assert cat(vfs, ENABLED) == "0\n"
        assert profile(vfs, True) == 2
        assert cat(vfs, ENABLED) == "1\n"
        # kstrtoul_from_user(), base 10: a newline at most after the digits.
        for bad in (b"abc\n", b"0x1\n", b" 1\n", b"1 \n", b"-1\n", b"1\n\n"):
            assert write_errno(vfs, bad) == errno.EINVAL, bad
        assert write_errno(vfs, b"18446744073709551616\n") == errno.ERANGE
        assert cat(vfs, ENABLED) == "1\n"
        with running_as(BASH):
            assert write(vfs, ENABLED, b"0") == 1
            assert cat(vfs, ENABLED) == "0\n"
            assert write(vfs, ENABLED, b"42\n") == 3  # !!val
        assert cat(vfs, ENABLED) == "1\n"
        # simple_read_from_buffer(): by offset; a write moves the position by its count.
        f = vfs.open(ENABLED, os.O_RDWR)
        try:
            assert file_read(f, 1) == b"1"
            assert file_read(f, 10) == b"\n"
            assert file_read(f, 10) == b""
            f.pos = 0
            with running_as(BASH):
                assert file_write(f, b"1\n") == 2
            assert f.pos == 2 and file_read(f, 10) == b""
        finally:
            file_release(f)
        # The stat files have no write method.
        with pytest.raises(KernelError) as exc:
            write(vfs, f"{T}/trace_stat/function0", b"0\n")
        assert exc.value.errno == errno.EINVAL


def test_stat_file_sorts_by_hits_newest_first_among_equals_per_cpu():
    """trace_stat's insert_stat() puts an entry before every one that compares equal: ties
    print in reverse order of each function's first hit on that CPU."""
    with booted(cpus=2) as k:
        vfs = mount(k)
        assert stat_file(vfs, 0) == stat_file(vfs, 1) == HEADER  # never enabled
        profile(vfs, True)
        for name, count, cpu in (("vfs_write", 5, 1), ("vfs_read", 7, 1), ("sys_write", 5, 1),
                                 ("sys_read", 5, 1), ("vfs_read", 3, 0), ("vfs_write", 1, 1)):
            assert invoke(k, name, count=count, cpu=cpu)
        assert stat_file(vfs, 1) == HEADER + (line("vfs_read", 7) + line("vfs_write", 6) +
                                              line("sys_read", 5) + line("sys_write", 5))
        assert stat_file(vfs, 0) == HEADER + line("vfs_read", 3)


def test_stat_line_format_bare_module_names_and_long_counts():
    """``"  %-30.30s  %10lu"`` of kallsyms_lookup()'s name: a module's function without
    ``[module]``, a long name cut at 30; one batch of calls is one addition."""
    long_name = "a_module_function_with_a_name_longer_than_thirty"
    with booted(cpus=1) as k:
        vfs = mount(k)
        profile(vfs, True)
        with running_as(BASH):
            k.modules.load_module(module_from_function_list("mine", [long_name, "mine_open"]))
        modprobe(k, "uinput")
        invoke(k, long_name)
        invoke(k, "uinput_release", count=12_345_678_901)
        assert stat_file(vfs, 0) == HEADER + (
            "  uinput_release                  12345678901\n"
            f"  {long_name[:30]}           1\n")
        # An ip no symbol covers once its module is gone: kallsyms_lookup() leaves "".
        rmmod(k, "uinput")
        assert stat_file(vfs, 0) == HEADER + line("", 12_345_678_901) + line(long_name[:30], 1)


def test_disable_keeps_the_counts_and_enable_resets_them():
    with booted(cpus=2) as k:
        vfs = mount(k)
        profile(vfs, True)
        invoke(k, "vfs_write", count=4, cpu=1)
        profile(vfs, False)
        assert k.ftrace.ftrace_ops_list == []  # nothing left to call: off costs nothing
        assert not invoke(k, "vfs_write", cpu=1)  # the site is a nop again
        assert stat_file(vfs, 1) == HEADER + line("vfs_write", 4)
        assert profile(vfs, False) == 2  # no change: nothing done
        profile(vfs, True)  # ftrace_profile_init_cpu(): ftrace_profile_reset()
        assert stat_file(vfs, 1) == HEADER
        invoke(k, "vfs_read", count=2, cpu=1)
        assert stat_file(vfs, 1) == HEADER + line("vfs_read", 2)
        assert profile(vfs, True) == 2  # already on: no reset
        assert stat_file(vfs, 1) == HEADER + line("vfs_read", 2)


def test_a_reset_after_open_makes_the_read_ebusy_and_the_session_is_shared():
    with booted(cpus=1) as k:
        vfs = mount(k)
        path = f"{T}/trace_stat/function0"
        profile(vfs, True)
        invoke(k, "vfs_write", count=3)
        invoke(k, "vfs_read", count=2)
        f = vfs.open(path, os.O_RDONLY)  # the entries are sorted here
        try:
            profile(vfs, False)
            profile(vfs, True)  # both records zeroed
            # seq_read: the headers, then function_stat_show()'s EBUSY stops the walk.
            assert file_read(f, 4096) == HEADER.encode()
            with pytest.raises(KernelError) as exc:
                file_read(f, 4096)
            assert exc.value.errno == errno.EBUSY
        finally:
            file_release(f)
        # A record reused after the reset shows what it holds now.
        invoke(k, "sys_read", count=9)
        invoke(k, "vfs_read")
        f = vfs.open(path, os.O_RDONLY)
        try:
            profile(vfs, False)
            profile(vfs, True)
            invoke(k, "schedule", count=6)
            assert file_read(f, 4096) == (HEADER + line("schedule", 6)).encode()
            with pytest.raises(KernelError) as exc:
                file_read(f, 4096)
            assert exc.value.errno == errno.EBUSY
        finally:
            file_release(f)
        # One session per file: another open and release empty the tree a reader walks.
        first = vfs.open(path, os.O_RDONLY)
        try:
            assert stat_file(vfs, 0) == HEADER + line("schedule", 6)
            assert file_read(first, 4096) == HEADER.encode()
        finally:
            file_release(first)


def test_a_seek_through_a_failing_stat_show_fails_and_goes_back_to_0():
    """seq_lseek(): traverse() shows the entries again up to the position; a reset's
    EBUSY on the way fails the lseek, and the position and the reading go back to 0. A
    position the failing entry starts at is reached without showing it."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        profile(vfs, True)
        invoke(k, "vfs_write", count=3)
        f = vfs.open(f"{T}/trace_stat/function0", os.O_RDONLY)
        try:
            profile(vfs, False)
            profile(vfs, True)
            assert file_llseek(f, len(HEADER), os.SEEK_SET) == len(HEADER)
            with pytest.raises(KernelError) as exc:
                file_llseek(f, len(HEADER) + 1, os.SEEK_SET)
            assert exc.value.errno == errno.EBUSY
            assert file_llseek(f, 0, os.SEEK_CUR) == 0
            assert file_read(f, 4096) == HEADER.encode()
        finally:
            file_release(f)


def test_a_cpu_profiles_as_many_functions_as_its_pages_hold():
    """Pages from ftrace_update_tot_cnt at the first enable, plus one, of 127 records
    (4080 bytes of 32-byte struct ftrace_profile); allocated once."""
    assert PROFILES_PER_PAGE == 127
    with booted(cpus=1, core_functions=MIN_FUNCTIONS) as k:
        vfs = mount(k)
        ft = k.ftrace
        functions = ft.ftrace_update_tot_cnt
        assert functions == MIN_FUNCTIONS
        profile(vfs, True)
        capacity = (-(-functions // 127) + 1) * 127
        assert capacity == 635  # 5 pages
        with running_as(BASH):
            k.modules.load_module(module_from_function_list(
                "big", [f"big_fn_{i:03}" for i in range(300)]))
        ips = np.concatenate([pg.ips for pg in ft.pages.groups]).tolist()
        assert len(ips) == functions + 300 > capacity
        with running_as(BASH), on_cpu(0):
            for ip in ips:
                assert execute_function(ft, ip, 0)
        lines = stat_file(vfs, 0).splitlines()[2:]
        assert len(lines) == capacity
        # All hit once: newest first, so the last function that found a record leads.
        assert lines[0] == line(k.symbol_name(ips[capacity - 1]), 1).rstrip("\n")
        assert lines[-1] == line(k.symbol_name(ips[0]), 1).rstrip("\n")
        # The pages stay as first allocated, though a re-enable sees more functions now.
        profile(vfs, False)
        profile(vfs, True)
        with running_as(BASH), on_cpu(0):
            for ip in reversed(ips):
                execute_function(ft, ip, 0)
        assert len(stat_file(vfs, 0).splitlines()) == 2 + capacity


def test_the_profiler_ops_counts_in_every_record_and_leaves_none_behind():
    with booted(cpus=2) as k:
        vfs = mount(k)
        ft = k.ftrace
        echo(k, "vfs_write", "set_ftrace_filter")
        echo(k, "function", "current_tracer")
        before, patched_before = all_counts(k)
        assert before.sum() == 1 and patched_before.sum() == 1
        profile(vfs, True)
        ops = k.function_profiler.ftrace_profile_ops
        assert ops in ft.ftrace_ops_list and ops.flags == FTRACE_OPS_FL_ENABLED  # not DYNAMIC
        assert not ops.filter_hash.count and not ops.notrace_hash.count
        during, patched = all_counts(k)
        assert (during == before + 1).all() and patched.all()
        assert check_consistency(ft) == []
        # Traced and profiled through ftrace_ops_list_func: both ops see the call.
        assert invoke(k, "vfs_write", cpu=1) and invoke(k, "vfs_read", cpu=1)
        assert stat_file(vfs, 1) == HEADER + line("vfs_read", 1) + line("vfs_write", 1)
        assert k.ring_buffer.snapshot(None).entries_written == 1
        profile(vfs, False)
        after, patched_after = all_counts(k)
        assert (after == before).all() and (patched_after == patched_before).all()
        assert check_consistency(ft) == [] and warnings(k) == []


@pytest.mark.parametrize("variant", ["buggy", "fixed"])
def test_a_module_loaded_while_profiling_is_counted_in_both_variants(variant):
    """3.6 before 8c4f3c3 gives a new module record the number of enabled ops whose filter
    is empty: the profiler's is, so buggy counts it as fixed does, and patches it."""
    with booted(variant=variant, cpus=1) as k:
        vfs = mount(k)
        ft = k.ftrace
        profile(vfs, True)
        modprobe(k, "uinput")
        uinput = next(pg for pg in ft.pages.groups if pg.module_name == "uinput")
        assert (ftrace_rec_count(uinput.flags) == 1).all()
        assert (uinput.flags & np.uint64(FTRACE_FL_ENABLED)).all()
        assert check_consistency(ft) == []
        assert invoke(k, "uinput_open", count=2)
        assert stat_file(vfs, 0) == HEADER + line("uinput_open", 2)
        rmmod(k, "uinput")
        assert check_consistency(ft) == []
        modprobe(k, "uinput")
        assert record(ft, "uinput_open") == (1, True) and check_consistency(ft) == []
        profile(vfs, False)
        assert record(ft, "uinput_open") == (0, False)
        assert check_consistency(ft) == [] and warnings(k) == []


@pytest.mark.parametrize("variant", ["buggy", "fixed"])
def test_the_profiler_moves_the_reproducers_warn_to_its_own_disable(variant):
    """With the profiler on, the reloaded uinput_release gets the profiler's reference
    only (buggy): the tracer's disable takes it to 0 without a WARN, and the profiler's
    own disable then underflows, through ftrace_profile_write."""
    with booted(variant=variant) as k:
        vfs = mount(k)
        ft = k.ftrace
        profile(vfs, True)
        modprobe(k, "uinput")
        echo(k, "uinput_release", "set_ftrace_filter")
        echo(k, "function", "current_tracer")
        assert record(ft, "uinput_release") == (2, True)
        rmmod(k, "uinput")
        modprobe(k, "uinput")
        echo(k, "nop", "current_tracer")
        assert warnings(k) == []
        if variant == "fixed":
            assert record(ft, "uinput_release") == (1, True)
            assert profile(vfs, False) == 2
            assert check_consistency(ft) == [] and warnings(k) == []
            return
        [anomaly] = check_consistency(ft)
        assert (anomaly.kind, anomaly.function, anomaly.expected, anomaly.actual) == (
            AnomalyKind.MISSING_REFERENCE, "uinput_release", 1, 0)
        assert anomaly.ops == ("ftrace_profile_ops",)
        assert profile(vfs, False) == 2  # unregister_ftrace_profiler() returns nothing
        [warn] = warnings(k)
        trace = [frame.split("] ", 1)[1].split("+")[0] for frame in warn.splitlines()[5:-1]]
        assert warn.splitlines()[1].startswith("WARNING: at kernel/trace/ftrace.c:1529 ")
        assert trace == ["warn_slowpath_common", "warn_slowpath_null", "__ftrace_hash_rec_update",
                         "ftrace_shutdown", "unregister_ftrace_function",
                         "ftrace_profile_write", "vfs_write", "sys_write",
                         "system_call_fastpath"]
        assert ft.ftrace_disabled and cat(vfs, ENABLED) == "0\n"


def test_after_ftrace_kill_an_enable_is_enodev_and_moves_the_position_back():
    with booted(cpus=1) as k:
        vfs = mount(k)
        ft = k.ftrace
        profile(vfs, True)
        invoke(k, "vfs_write", count=3)
        ftrace_kill(ft)
        # The disable goes through; the unregister is refused and the ops stays listed.
        assert profile(vfs, False) == 2 and cat(vfs, ENABLED) == "0\n"
        assert k.function_profiler.ftrace_profile_ops in ft.ftrace_ops_list
        assert stat_file(vfs, 0) == HEADER + line("vfs_write", 3)
        # register_ftrace_function(): -ENODEV in 3.6; the profile was reset before it.
        assert write_errno(vfs, b"1\n") == errno.ENODEV
        assert cat(vfs, ENABLED) == "0\n" and stat_file(vfs, 0) == HEADER
        # *ppos += cnt with cnt = -ENODEV: the position goes to -19, where a read is EINVAL.
        f = vfs.open(ENABLED, os.O_RDWR)
        try:
            with pytest.raises(KernelError) as exc, running_as(BASH):
                file_write(f, b"1\n")
            assert exc.value.errno == errno.ENODEV and f.pos == -errno.ENODEV
            with pytest.raises(KernelError) as exc:
                file_read(f, 10)
            assert exc.value.errno == errno.EINVAL
            # rw_verify_area(): no write there either; lseek(2) reads -19 as ENODEV.
            with pytest.raises(KernelError) as exc, running_as(BASH):
                file_write(f, b"0\n")
            assert exc.value.errno == errno.EINVAL
            with pytest.raises(KernelError) as exc:
                file_llseek(f, 0, os.SEEK_CUR)
            assert exc.value.errno == errno.ENODEV
        finally:
            file_release(f)


# --- through a real daemon ---------------------------------------------------------------


def test_profiling_from_the_shell(daemon, tmp_path):
    script = """cd /sys/kernel/debug/tracing
cat function_profile_enabled
echo 1 > function_profile_enabled
invoke vfs_write -C 1 -c 3
invoke vfs_read -C 1 -c 5
invoke vfs_read -C 0
cat trace_stat/function1
echo 0 > function_profile_enabled
invoke vfs_read -C 1 -c 5
cat function_profile_enabled trace_stat/function1
echo on > function_profile_enabled
ls trace_stat
"""
    shell = run_shell(tmp_path, ["--address", daemon.address], script)
    table = HEADER + line("vfs_read", 5) + line("vfs_write", 3)
    assert shell.out == "0\n" + table + "0\n" + table + "function0\nfunction1\nfunction2\nfunction3\n"
    assert shell.err == "repro.sh: line 11: echo: write error: Invalid argument\n"
    assert shell.returncode == 0


def test_the_profiler_ops_is_listed_and_keeps_every_checker_clean(daemon):
    with daemon.connect() as client:
        client.load("dummy")
        assert client.write_file(ENABLED, b"1\n") == 2
        [ops] = client.list_ops()
        assert (ops.name, ops.flags, ops.enabled, ops.filter_count, ops.notrace_count) == (
            "ftrace_profile_ops", FTRACE_OPS_FL_ENABLED, True, 0, 0)
        assert counted_ops([ops]) == [ops]
        assert client.check_consistency().ok and client.check_consistency().ops_checked == 1
        anomalies: list = []
        checker = Checker(daemon.address, 1.0, anomalies.append, lambda why: None)
        try:
            checker.reader = RecordsReader(client.stats().shm_namespace)
            assert checker.check_snapshot() is True and anomalies == []
            assert checker.counts["shm"] == 1
        finally:
            checker.client.close()
        assert client.invoke("dummy_xmit", module="dummy", cpu=2, repeat=4).patched_calls == 4
        assert client.read_file(f"{T}/trace_stat/function2") == (
            HEADER + line("dummy_xmit", 4)).encode()
        assert client.write_file(ENABLED, b"0\n") == 2
        assert client.list_ops() == [] and client.check_consistency().ok
