"""``set_ftrace_pid`` (3.6, spec §3.6): its write and read rules, in-process; the
function tracer (the GLOBAL ops) traces only the listed tasks while other ops see every
task; it works after ``ftrace_kill``; and the same through a real ftraced."""

from __future__ import annotations

import errno
import os

import pytest

from clients.api import Client
from clients.errors import FtraceError
from clients.identity import Identity
from kernel_daemon.ftrace.dispatch import execute_function
from kernel_daemon.ftrace.filter import ftrace_set_filter
from kernel_daemon.ftrace.ops import FtraceOps
from kernel_daemon.ftrace.register import register_ftrace_function
from kernel_daemon.kernel import Kernel
from kernel_daemon.task import IDLE_TASK, Task, current, running_as
from kernel_daemon.tracefs.files import file_release, file_write
from kernel_daemon.tracefs.tree import mount
from kernel_daemon.tracefs.vfs import Vfs
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.kernel_helpers import (BASH, T, booted, cat, echo, reproducer_until_reload, write,
                                  write_errno)

PID_FILE = f"{T}/set_ftrace_pid"
APPEND = os.O_WRONLY | os.O_APPEND
OTHER = Task(31337, "other")
# Lines of a 3.6 trace header before the first event.
HEADER_LINES = 11


def enter(kernel: Kernel, *tasks: Task) -> None:
    """The tasks make a system call: the kernel knows their pids from then on (the RPC
    layer does this for each caller)."""
    for task in tasks:
        kernel.pid_hash.attach_pid(task.pid)


def run(kernel: Kernel, task: Task, name: str = "vfs_write") -> bool:
    """``task`` calls ``name`` once; True when the call reached the trampoline."""
    ip = kernel.kallsyms.lookup_name(name)[0].addr
    with running_as(task):
        return execute_function(kernel.ftrace, ip, 0)


def traced_pids(vfs: Vfs) -> list[int]:
    """The TASK-PID column's pids of ``trace``, oldest first."""
    lines = cat(vfs, f"{T}/trace").splitlines()[HEADER_LINES:]
    return [int(line.split()[0].rsplit("-", 1)[1]) for line in lines]


def pid_write_errno(vfs: Vfs, data: bytes, flags: int = APPEND) -> int:
    return write_errno(vfs, PID_FILE, data, flags)


def test_file_at_both_mounts_mode_0644_starts_empty():
    with booted(cpus=1) as k:
        vfs = mount(k)
        for mount_point in ("/sys/kernel/debug/tracing", "/sys/kernel/tracing"):
            assert vfs.stat(f"{mount_point}/set_ftrace_pid").mode == 0o644
            assert cat(vfs, f"{mount_point}/set_ftrace_pid") == "no pid\n"


@pytest.mark.parametrize("data, returned, listed", [
    (b"20903\n", 6, "20903\n"),
    (b" \t20903 \n", 9, "20903\n"),  # strstrip()
    (b"+20903", 6, "20903\n"),
    (b"20903\n\n", 7, "20903\n"),
    (b"0\n", 2, "swapper tasks\n"),
    (b"4294988199\n", 11, "20903\n"),  # 2**32 + 20903: ftrace_pid_add() takes an int
    (b"4294967296\n", 11, "swapper tasks\n"),
    (b"1\n", 2, "1\n"), (b"2\n", 2, "2\n"),  # init and kthreadd exist from boot
    (b"\n", 1, "no pid\n"),  # only spaces: 1, whatever the count
    (b" " * 62 + b"\n", 1, "no pid\n"),
    (b"", 1, "no pid\n"),
])
def test_write_accepts(data, returned, listed):
    with booted(cpus=1) as k:
        vfs = mount(k)
        enter(k, BASH)
        assert write(vfs, PID_FILE, data) == returned
        assert cat(vfs, PID_FILE) == listed


@pytest.mark.parametrize("data, err", [
    (b"31337\n", errno.EINVAL),  # no task has the pid (it never entered the kernel)
    (b"-1\n", errno.EINVAL),  # find_get_pid() finds no negative pid
    (b"abc\n", errno.EINVAL), (b"20903x\n", errno.EINVAL), (b"0x10\n", errno.EINVAL),
    (b"20903 0\n", errno.EINVAL),  # one pid per write
    (b" " * 63 + b"\n", errno.EINVAL),  # 64 bytes: more than char buf[64] holds
    (b"-0\n", errno.ERANGE), (b"9223372036854775808\n", errno.ERANGE),
])
def test_write_refuses(data, err):
    with booted(cpus=1) as k:
        vfs = mount(k)
        enter(k, BASH)
        write(vfs, PID_FILE, b"20903\n")
        assert pid_write_errno(vfs, data) == err
        assert cat(vfs, PID_FILE) == "20903\n"


def test_list_is_newest_first_once_each_and_only_o_trunc_empties_it():
    with booted(cpus=1) as k:
        vfs = mount(k)
        enter(k, BASH, OTHER)
        for data in (b"20903\n", b"0\n", b"31337\n", b"20903\n", b"0\n"):
            assert write(vfs, PID_FILE, data, APPEND) == len(data)
        assert cat(vfs, PID_FILE) == "31337\nswapper tasks\n20903\n"
        # A write of spaces alone changes nothing; opening for read changes nothing.
        assert write(vfs, PID_FILE, b"\n", APPEND) == 1
        assert cat(vfs, PID_FILE, os.O_RDWR) == "31337\nswapper tasks\n20903\n"
        # ftrace_pid_open(): a write open with O_TRUNC empties the list, with no write.
        file = vfs.open(PID_FILE, os.O_WRONLY | os.O_TRUNC)
        assert cat(vfs, PID_FILE) == "no pid\n"
        assert file_write(file, b"0\n") == 2
        file_release(file)
        assert cat(vfs, PID_FILE) == "swapper tasks\n"


def test_function_tracer_traces_only_listed_tasks_and_other_ops_every_task():
    with booted(cpus=1) as k:
        vfs = mount(k)
        enter(k, BASH, OTHER)
        write(vfs, f"{T}/current_tracer", b"function\n")
        # The function tracer alone: the trampoline calls global_ops' function directly,
        # and the list takes effect at once.
        write(vfs, PID_FILE, b"20903\n")
        for task in (BASH, OTHER, IDLE_TASK):
            assert run(k, task)
        assert traced_pids(vfs) == [20903]
        # A module's own ops (not GLOBAL): the trampoline goes through the list function,
        # global_ops still filters, the module's ops sees every task.
        seen: list[int] = []
        ops = FtraceOps("module_ops", func=lambda ip, parent_ip, op, count: seen.append(
            current().pid))
        ftrace_set_filter(k.ftrace, ops, "vfs_write", reset=True)
        register_ftrace_function(k.ftrace, ops)
        write(vfs, PID_FILE, b"0\n", APPEND)  # the idle tasks too
        for task in (BASH, OTHER, IDLE_TASK):
            run(k, task)
        assert seen == [20903, 31337, 0]
        assert traced_pids(vfs) == [20903, 20903, 0]
        # echo > set_ftrace_pid: every task is traced again.
        assert write(vfs, PID_FILE, b"\n") == 1
        run(k, OTHER)
        assert traced_pids(vfs) == [20903, 20903, 0, 31337]
        assert seen == [20903, 31337, 0, 31337]


def test_pids_listed_before_the_tracer_starts_filter_it_when_it_does():
    with booted(cpus=1) as k:
        vfs = mount(k)
        enter(k, OTHER)
        write(vfs, PID_FILE, b"31337\n")  # nothing registered: ftrace_update_pid_func waits
        echo(k, "function", "current_tracer")
        run(k, BASH)
        run(k, OTHER)
        assert traced_pids(vfs) == [31337]
        echo(k, "nop", "current_tracer")
        echo(k, "function", "current_tracer")
        run(k, BASH)
        run(k, OTHER)
        assert traced_pids(vfs) == [31337]


def test_set_ftrace_pid_works_after_ftrace_kill():
    with booted(variant="buggy", cpus=1) as k:
        vfs = mount(k)
        reproducer_until_reload(k)
        echo(k, "nop", "current_tracer")  # the WARN: ftrace_kill()
        assert k.ftrace.ftrace_disabled and not k.ftrace.ftrace_enabled
        enter(k, OTHER)
        assert write(vfs, PID_FILE, b"31337\n") == 6
        assert write(vfs, PID_FILE, b"0\n", APPEND) == 2
        assert cat(vfs, PID_FILE) == "swapper tasks\n31337\n"
        assert pid_write_errno(vfs, b"4\n") == errno.EINVAL
        echo(k, "function", "current_tracer")
        assert not run(k, OTHER)  # nothing is patched: ftrace_enabled is 0
        assert write(vfs, PID_FILE, b"\n") == 1
        assert cat(vfs, PID_FILE) == "no pid\n"


def failing(fn, *args, **kwargs) -> FtraceError:
    with pytest.raises(FtraceError) as exc:
        fn(*args, **kwargs)
    return exc.value


def test_daemon_set_ftrace_pid_filters_the_function_tracer_not_a_tracer_client(daemon):
    with (Client(daemon.address, Identity(4100, "sh")) as shell,
          Client(daemon.address, Identity(4200, "tracer")) as tracer):
        assert shell.read_file(PID_FILE) == b"no pid\n"
        err = failing(shell.write_file, PID_FILE, b"4300\n")  # no task 4300 yet
        assert (err.errno, err.syscall) == (errno.EINVAL, "write")
        shell.invoke("vfs_read", pid=4300, comm="worker")  # task 4300 enters the kernel
        assert shell.write_file(PID_FILE, b"4300\n") == 5
        assert shell.write_file(PID_FILE, b"4100\n", append=True) == 5  # the caller itself
        assert shell.read_file(PID_FILE) == b"4100\n4300\n"
        shell.write_file(f"{T}/current_tracer", b"function\n")
        with tracer.attach(name="own", filter=["vfs_write"]) as session:
            traced = {pid: shell.invoke("vfs_write", "sys_write", pid=pid, comm=f"t{pid}").traced
                      for pid in (4100, 4200, 4300, 4400)}
            assert traced == {4100: 1, 4200: 0, 4300: 1, 4400: 0}
            session.flush()
            assert [hit.pid for hit in session.take_hits()] == [4100, 4200, 4300, 4400]
        lines = shell.read_file(f"{T}/trace").decode().splitlines()[HEADER_LINES:]
        assert [line.split()[0] for line in lines] == ["t4100-4100", "t4300-4300"]
        # echo > set_ftrace_pid: the O_TRUNC open empties the list; the write returns 1.
        assert shell.write_file(PID_FILE, b"\n") == 1
        assert shell.read_file(PID_FILE) == b"no pid\n"
        assert shell.invoke("vfs_write", "sys_write", pid=4400).traced == 1
        assert shell.check_consistency().ok


def test_daemon_knows_init_and_kthreadd_from_boot(daemon):
    with Client(daemon.address, Identity(4100, "sh")) as shell:
        assert shell.write_file(PID_FILE, b"1\n") == 2  # echo 1 > set_ftrace_pid
        assert shell.write_file(PID_FILE, b"2\n", append=True) == 2
        assert shell.read_file(PID_FILE) == b"2\n1\n"
        shell.write_file(f"{T}/current_tracer", b"function\n")
        # An Invoke naming pid 1 or 2 without a comm runs as that task.
        for pid in (1, 2, 4100):
            shell.invoke("vfs_write", "sys_write", pid=pid)
        lines = shell.read_file(f"{T}/trace").decode().splitlines()[HEADER_LINES:]
        assert [line.split()[0] for line in lines] == ["init-1", "kthreadd-2"]
        shell.reboot()
        assert shell.write_file(PID_FILE, b"1\n") == 2  # a new boot has them too
