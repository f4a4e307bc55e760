"""The pid hash of ``kernel/pid.c``: which pid numbers name a task, for ``find_get_pid()``.

The model has no process table: a task exists for it only as the ``current`` of a call
into the kernel (kernel_daemon.task).  ``set_ftrace_pid`` must still tell a pid that
names a task from one that does not (``find_get_pid()`` returns NULL, and the write
fails with EINVAL), so the model keeps a table of its own, which is the model's choice,
not a kernel structure: the tasks every kernel has from boot (init, pid 1, and kthreadd,
pid 2: ``task.BOOT_TASKS``), then the pid of every task that has entered this boot's
kernel, each RPC caller (from its identity metadata) and each task an ``Invoke`` runs
as.  Tasks never exit here, so a pid stays found until reboot; a reboot starts the table
again from the boot tasks, and a process is known to the new kernel from its first call
into it.
"""

from __future__ import annotations

from kernel_daemon.task import BOOT_TASKS


class PidHash:
    """``pid_hash``: the pid numbers of the tasks the kernel has seen, per boot."""

    __slots__ = ("_pids", "attach_pid")

    def __init__(self) -> None:
        self._pids: set[int] = set(BOOT_TASKS)
        # attach_pid(nr): run on every call into the kernel, so it is the set's own
        # method, with no Python function around it.
        self.attach_pid = self._pids.add

    def find_get_pid(self, nr: int) -> bool:
        """``find_get_pid(nr)``: whether a task has pid ``nr``.

        Only positive numbers are hashed: pid 0, the idle tasks', is ``init_struct_pid``,
        which no lookup finds (ftrace names it ``ftrace_swapper_pid`` without one).
        """
        return nr > 0 and nr in self._pids
