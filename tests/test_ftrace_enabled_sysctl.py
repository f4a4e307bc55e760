"""Turning ``/proc/sys/kernel/ftrace_enabled`` back on (``ftrace_enable_sysctl()`` of 3.6
ftrace.c, spec §2.6): the trampoline's function is re-picked from ``ftrace_ops_list``
as it stands, with no ``update_global_ops()``, so ``global_ops`` keeps the function it
had when ftrace was turned off; ``set_ftrace_pid`` changes made meanwhile wait for the
next ``update_ftrace_function()``."""

from __future__ import annotations

import os

from kernel_daemon.task import Task
from kernel_daemon.tracefs.tree import mount
from kernel_daemon.tracefs.vfs import Vfs
from tests.kernel_helpers import BASH, T, booted, cat, echo, invoke, write

APPEND = os.O_WRONLY | os.O_APPEND
SYSCTL = "/proc/sys/kernel/ftrace_enabled"
PID_FILE = f"{T}/set_ftrace_pid"
OTHER = Task(31337, "other")


def traced(vfs: Vfs) -> list[tuple[str, str]]:
    """(TASK-PID, function) of each event in ``trace``, oldest first."""
    lines = [line for line in cat(vfs, f"{T}/trace").splitlines() if not line.startswith("#")]
    return [(line.split()[0], line.split()[4]) for line in lines]


def enter(kernel) -> None:
    """Both tasks have made a system call: their pids exist."""
    for task in (BASH, OTHER):
        kernel.pid_hash.attach_pid(task.pid)


def both_call(kernel) -> None:
    """``other`` calls vfs_write, then ``bash`` calls vfs_read."""
    invoke(kernel, "vfs_write", task=OTHER)
    invoke(kernel, "vfs_read", task=BASH)


def test_a_pid_listed_while_off_is_not_applied_when_turned_back_on():
    with booted(cpus=1) as k:
        vfs = mount(k)
        enter(k)
        echo(k, "function", "current_tracer")
        write(vfs, SYSCTL, b"0\n")
        # ftrace_trace_function is ftrace_stub: ftrace_update_pid_func() does nothing.
        write(vfs, PID_FILE, b"20903\n")
        write(vfs, SYSCTL, b"1\n")
        assert cat(vfs, PID_FILE) == "20903\n"
        both_call(k)
        # global_ops still calls function_trace_call: every task is traced.
        assert traced(vfs) == [("other-31337", "vfs_write"), ("bash-20903", "vfs_read")]
        # Listing 20903 again changes nothing (no update); a new pid re-picks the
        # functions, and the list applies.
        write(vfs, PID_FILE, b"20903\n", APPEND)
        write(vfs, f"{T}/trace", b"")
        both_call(k)
        assert len(traced(vfs)) == 2
        write(vfs, PID_FILE, b"0\n", APPEND)
        write(vfs, f"{T}/trace", b"")
        both_call(k)
        assert traced(vfs) == [("bash-20903", "vfs_read")]


def test_a_pid_list_emptied_while_off_leaves_no_task_traced_when_turned_back_on():
    with booted(cpus=1) as k:
        vfs = mount(k)
        enter(k)
        echo(k, "function", "current_tracer")
        write(vfs, PID_FILE, b"20903\n")
        write(vfs, SYSCTL, b"0\n")
        write(vfs, PID_FILE, b"\n")  # O_TRUNC: ftrace_pid_reset() clears the task flags
        write(vfs, SYSCTL, b"1\n")
        assert cat(vfs, PID_FILE) == "no pid\n"
        both_call(k)
        # global_ops still calls ftrace_pid_func, and no task is flagged any more.
        assert traced(vfs) == []
        write(vfs, PID_FILE, b"\n")  # ftrace_pid_reset() again: now it updates
        both_call(k)
        assert traced(vfs) == [("other-31337", "vfs_write"), ("bash-20903", "vfs_read")]


def test_the_function_tracer_started_while_off_traces_nothing_when_turned_back_on():
    """The commands of 524a38682573's message ("The trace will show that function tracing
    was not active"): global_ops, alone on the list, still has ftrace_stub, the function
    it was given at boot, as update_global_ops() has not run since."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        write(vfs, SYSCTL, b"0\n")
        echo(k, "function", "current_tracer")
        write(vfs, SYSCTL, b"1\n")
        assert not invoke(k, "vfs_write")  # patched, but the trampoline calls ftrace_stub
        assert traced(vfs) == []
        echo(k, "nop", "current_tracer")
        echo(k, "function", "current_tracer")
        assert invoke(k, "vfs_write")
        assert traced(vfs) == [("bash-20903", "vfs_write")]


def test_global_ops_without_a_global_ops_left_calls_ftrace_stub():
    """update_global_ops() with an empty ftrace_global_list takes ftrace_list_end's
    function, ftrace_stub, which a later re-enable installs as it finds it."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        echo(k, "function", "current_tracer")
        echo(k, "nop", "current_tracer")
        write(vfs, SYSCTL, b"0\n")
        echo(k, "function", "current_tracer")
        write(vfs, SYSCTL, b"1\n")
        assert not invoke(k, "vfs_write")
        assert traced(vfs) == []
