"""The deprecated ``tracing_enabled`` of 3.6's trace.c and the ``tracing_stop()`` /
``tracing_start()`` it shares with an open ``trace``: in-process through the file tree,
and once through a daemon with the shell.

Stopped, 3.6 calls no function callback at all (x86's ``ftrace_caller`` tests
``function_trace_stop`` first) and records nothing; ``echo 1`` runs the current tracer's
``start`` (the function tracer's clears the buffer); the first change of a boot WARNs at
``kernel/trace/trace.c:2969``.
"""

from __future__ import annotations

import errno
import os
import re
import threading

import pytest

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.core import ftrace_kill
from kernel_daemon.ftrace.ops import FtraceOps
from kernel_daemon.ftrace.register import register_ftrace_function
from kernel_daemon.shm import new_namespace
from kernel_daemon.task import Task, running_as
from kernel_daemon.trace.saved_cmdlines import SavedCmdlines
from kernel_daemon.tracefs.files import file_read, file_release, file_write
from kernel_daemon.tracefs.tree import mount
from kernel_daemon.tracefs.vfs import Vfs
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.kernel_helpers import BASH, T, booted, cat, echo, invoke, warnings, write
from tests.test_function_profiler import HEADER, line, profile, stat_file
from tests.test_shell_integration import run_shell
from tests.test_tracer_client import DEADLINE

ENABLED = f"{T}/tracing_enabled"
DEPRECATED = "tracing_enabled is deprecated. Use tracing_on"
WARN_FRAMES = ["warn_slowpath_common", "warn_slowpath_fmt", "tracing_ctrl_write", "vfs_write",
               "sys_write", "system_call_fastpath"]


def tracing_enabled(vfs: Vfs, value: bytes) -> int:
    """``echo VALUE > tracing_enabled`` as bash; what write(2) returned."""
    with running_as(BASH):
        return write(vfs, ENABLED, value)


def write_errno(vfs: Vfs, value: bytes) -> int:
    with pytest.raises(KernelError) as exc:
        tracing_enabled(vfs, value)
    return exc.value.errno


def frames(warn: str) -> list[str]:
    """The function names of a WARN block's Call Trace."""
    return re.findall(r"^ \[<[0-9a-f]{16}>\] (\w+)\+", warn, flags=re.M)


def events(k) -> list[str]:
    """The functions of the function events in the buffer, oldest first."""
    return [k.symbol_name(ev.ip) for ev in k.ring_buffer.snapshot().events]


def test_the_file_reads_tracer_enabled_and_a_write_moves_the_position():
    with booted(cpus=1) as k:
        vfs = mount(k)
        assert vfs.stat(ENABLED).mode == 0o644
        assert cat(vfs, ENABLED) == "1\n"
        f = vfs.open(ENABLED, os.O_RDWR)
        try:
            with running_as(BASH):
                assert file_write(f, b"0\n") == 2
            assert file_read(f, 10) == b""  # *ppos += cnt: past the "0\n" there is to read
            f.llseek(1, os.SEEK_SET)
            assert file_read(f, 10) == b"\n"  # simple_read_from_buffer() from the position
        finally:
            file_release(f)
        assert cat(vfs, ENABLED) == "0\n"


def test_echo_0_warns_once_and_stops_every_callback_and_the_buffer():
    """Stopped: the function tracer, a tracer client's ops, the profiler and a traceoff
    probe all go uncalled, though the site is patched, and nothing is recorded."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        hits: list[int] = []
        register_ftrace_function(k.ftrace, FtraceOps(
            "client", func=lambda ip, parent_ip, op, count: hits.append(count)))
        echo(k, "function", "current_tracer")
        assert echo(k, "vfs_read:traceoff", "set_ftrace_filter", append=True) == []
        profile(vfs, True)
        invoke(k, "vfs_write", count=2)
        assert tracing_enabled(vfs, b"0\n") == 2
        assert cat(vfs, f"{T}/tracing_on") == "0\n"  # the buffer's record_disabled
        assert invoke(k, "vfs_write", count=5) and invoke(k, "vfs_read")  # patched sites
        assert hits == [2]
        assert events(k) == ["vfs_write", "vfs_write"]
        assert stat_file(vfs, 0) == HEADER + line("vfs_write", 2)
        [warn] = warnings(k)
        lines = warn.splitlines()
        assert lines[1].startswith("WARNING: at kernel/trace/trace.c:2969 tracing_ctrl_write+0x")
        assert lines[1].endswith("()")
        assert lines[2:4] == [DEPRECATED, "Modules linked in:"]
        assert lines[4] == "Pid: 20903, comm: bash Not tainted 3.6.11+ #1"
        assert frames(warn) == WARN_FRAMES
        assert k.panic.print_tainted() == "Tainted: G        W   "
        # Back on: the probe never ran, so tracing_on is 1 again; every callback runs.
        tracing_enabled(vfs, b"1\n")
        assert cat(vfs, f"{T}/tracing_on") == "1\n"
        invoke(k, "vfs_write", count=3)
        assert hits == [2, 3]
        assert events(k) == ["vfs_write"] * 3
        invoke(k, "vfs_read")
        assert cat(vfs, f"{T}/tracing_on") == "0\n"  # the probe ran this time


@pytest.mark.parametrize("tracer", ["function", "nop"])
def test_echo_1_runs_the_tracers_start_the_function_tracers_clears_the_buffer(tracer):
    """function_trace_start() is tracing_reset_online_cpus(); nop has no start, so what
    its buffer held stays.  Markers fail while stopped (the buffer's record_disabled)."""
    with booted(cpus=2) as k:
        vfs = mount(k)
        echo(k, tracer, "current_tracer")
        with running_as(BASH):
            write(vfs, f"{T}/trace_marker", b"before\n")
        invoke(k, "vfs_write", cpu=1)
        held = len(k.ring_buffer.snapshot().events)
        tracing_enabled(vfs, b"0\n")
        with pytest.raises(KernelError) as exc, running_as(BASH):
            write(vfs, f"{T}/trace_marker", b"while off\n")
        assert exc.value.errno == errno.EBADF
        time_start = k.tracing.time_start
        tracing_enabled(vfs, b"1\n")
        left = k.ring_buffer.snapshot().events
        if tracer == "function":
            assert left == [] and k.tracing.time_start > time_start
            invoke(k, "vfs_read", cpu=0)
            assert events(k) == ["vfs_read"]
        else:
            assert len(left) == held == 1 and k.tracing.time_start == time_start


def test_only_the_first_change_warns_and_a_write_that_changes_nothing_never_does():
    with booted(cpus=1) as k:
        vfs = mount(k)
        assert tracing_enabled(vfs, b"1\n") == 2  # no change: no WARN
        assert tracing_enabled(vfs, b"17\n") == 3  # !!17 is 1, still no change
        assert warnings(k) == [] and k.panic.print_tainted() == "Not tainted"
        for value in (b"0\n", b"0\n", b"1\n", b"0\n", b"12\n"):
            tracing_enabled(vfs, value)
        assert [w.splitlines()[2] for w in warnings(k)] == [DEPRECATED]
        assert cat(vfs, ENABLED) == "1\n"
        assert k.tracing.trace_stop_count == 0 and not k.ftrace.function_trace_stop


@pytest.mark.parametrize("value, expected", [
    (b"x\n", errno.EINVAL), (b"\n", errno.EINVAL), (b"-1\n", errno.EINVAL),
    (b"0x1\n", errno.EINVAL), (b"18446744073709551616\n", errno.ERANGE)])
def test_bad_input_is_the_kernels_errno_and_changes_nothing(value, expected):
    with booted(cpus=1) as k:
        vfs = mount(k)
        assert write_errno(vfs, value) == expected
        assert cat(vfs, ENABLED) == "1\n" and warnings(k) == []
        assert k.tracing.trace_stop_count == 0 and not k.ftrace.function_trace_stop


def test_an_open_trace_stops_the_callbacks_too_and_nests_with_tracing_enabled():
    """__tracing_open() / tracing_release(): the same tracing_stop() / tracing_start()."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        hits: list[int] = []
        register_ftrace_function(k.ftrace, FtraceOps(
            "client", func=lambda ip, parent_ip, op, count: hits.append(count)))
        reader = vfs.open(f"{T}/trace", os.O_RDONLY)
        assert invoke(k, "vfs_write") and hits == []
        tracing_enabled(vfs, b"0\n")
        file_release(reader)  # the last tracing_start() is not this one
        assert k.tracing.trace_stop_count == 1
        invoke(k, "vfs_write")
        assert hits == [] and cat(vfs, f"{T}/tracing_on") == "0\n"
        reader = vfs.open(f"{T}/per_cpu/cpu0/trace", os.O_RDONLY)
        tracing_enabled(vfs, b"1\n")
        invoke(k, "vfs_write")
        assert hits == []
        file_release(reader)
        invoke(k, "vfs_write", count=4)
        assert hits == [4] and k.tracing.trace_stop_count == 0
        assert cat(vfs, f"{T}/tracing_on") == "1\n"


def test_one_tracing_start_too_many_warns_once_and_counts_from_0():
    """tracing_start()'s WARN_ON_ONCE(1) at trace.c:1000 (no path of the model's can get
    there: the kernel's is a debugging check)."""
    with booted(cpus=1) as k:
        for _ in range(2):
            k.tracing.tracing_start()
            assert k.tracing.trace_stop_count == 0
        [warn] = warnings(k)
        assert warn.splitlines()[1].startswith("WARNING: at kernel/trace/trace.c:1000 "
                                               "tracing_start+0x")
        assert frames(warn)[:3] == ["warn_slowpath_common", "warn_slowpath_null",
                                    "tracing_start"]
        k.tracing.tracing_stop()
        assert not k.ring_buffer.record_is_on()
        k.tracing.tracing_start()
        assert k.ring_buffer.record_is_on() and not k.ftrace.function_trace_stop


def test_a_trace_pipe_reader_that_has_read_gets_eof_once_tracing_enabled_is_0():
    """tracing_wait_pipe(): after a read found entries, an empty buffer with tracer_enabled
    0 ends the file; a reader that has read nothing yet waits on."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        echo(k, "function", "current_tracer")
        pipe = vfs.open(f"{T}/trace_pipe", os.O_RDONLY)
        try:
            invoke(k, "vfs_write")
            assert b" vfs_write <-__fput\n" in file_read(pipe, 4096)
            tracing_enabled(vfs, b"0\n")
            got: list[bytes] = []
            reader = threading.Thread(target=lambda: got.append(file_read(pipe, 4096)))
            reader.start()
            reader.join(DEADLINE)
            assert not reader.is_alive() and got == [b""]
        finally:
            pipe.interrupt()
            file_release(pipe)


def test_tracing_record_cmdline_returns_early_while_tracer_enabled_is_0():
    namespace = new_namespace()
    enabled = [0]
    table = SavedCmdlines(namespace, lambda: enabled[0], lambda: True)
    try:
        table.tracing_start_cmdline_record()
        table.tracing_record_cmdline(1234, "while-off")
        assert table.tracing_saved_cmdlines_read() == ""
        enabled[0] = 1
        table.tracing_record_cmdline(1234, "on")
        assert table.tracing_saved_cmdlines_read() == "1234 on\n"
    finally:
        table.destroy()


def test_a_dead_ftrace_still_stops_and_starts_the_buffer():
    """ftrace_stop() / ftrace_start() have no guard, and tracing_start() tests trace.c's
    tracing_disabled, not ftrace_disabled: after ftrace_kill() the file still works."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        ftrace_kill(k.ftrace)
        tracing_enabled(vfs, b"0\n")
        assert k.ftrace.function_trace_stop and cat(vfs, f"{T}/tracing_on") == "0\n"
        tracing_enabled(vfs, b"1\n")
        assert not k.ftrace.function_trace_stop and cat(vfs, f"{T}/tracing_on") == "1\n"
        with running_as(Task(4242, "logger")):
            write(vfs, f"{T}/trace_marker", b"still here\n")
        assert len(k.ring_buffer.snapshot().events) == 1


def test_through_the_shell_on_a_daemon(daemon, tmp_path):
    """echo 0: one WARN in dmesg, invoke untraced and a tracer client without hits;
    echo 1: the buffer cleared and tracing back; bad input EINVAL; no second WARN."""
    address = ["--address", daemon.address]
    with daemon.connect() as client, client.attach("watch", ["vfs_read"]) as session:
        off = run_shell(tmp_path, address, stdin=(
            f"cd {T}\n"
            "echo function > current_tracer\n"
            "invoke vfs_read sys_read -c 2\n"
            "echo 0 > tracing_enabled\n"
            "cat tracing_enabled tracing_on\n"
            "invoke vfs_read sys_read -c 5\n"
            "grep -c vfs_read trace\n"
            "dmesg\n"))
        assert off.returncode == 0, off.err
        assert off.out.startswith("0\n0\n2\n")
        dmesg = off.out[len("0\n0\n2\n"):]
        assert re.search(r"WARNING: at kernel/trace/trace\.c:2969 tracing_ctrl_write\+0x[0-9a-f]+"
                         rf"/0x[0-9a-f]+\(\)\n\[[ \d.]+\] {DEPRECATED}\n", dmesg)
        assert f"Pid: {off.pid}, comm: bash Not tainted " in dmesg
        assert frames(re.sub(r"^\[[ \d.]+\] ", "", dmesg, flags=re.M)) == WARN_FRAMES
        session.flush()
        assert sum(hit.count for hit in session.take_hits()) == 2

        on = run_shell(tmp_path, address, stdin=(
            f"cd {T}\n"
            "echo 1 > tracing_enabled\n"
            "grep -c vfs_read trace\n"
            "invoke vfs_read sys_read -c 3\n"
            "grep -c vfs_read trace\n"
            "echo 0 > tracing_enabled\n"
            "echo 1 > tracing_enabled\n"
            "echo x > tracing_enabled\n"
            "cat tracing_enabled\n"
            "dmesg | grep -c 'tracing_enabled is deprecated'\n"))
        assert on.out == "0\n3\n1\n1\n"
        assert on.err == "bash: line 8: echo: write error: Invalid argument\n"
        session.flush()
        assert sum(hit.count for hit in session.take_hits()) == 3
