"""The "current" task: who is inside the kernel on this thread of execution.

Model of ``current`` (``get_current()``, ``struct task_struct``'s ``pid`` and ``comm``).
Each gRPC handler thread is a user process inside a system call, so the RPC layer
enters :func:`running_as` with the caller's identity for the duration of the call;
code that runs outside any call (boot, the daemon's own threads) is the idle task.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

# include/linux/sched.h: TASK_COMM_LEN is 16 including the NUL, so comm holds 15 chars.
TASK_COMM_LEN = 16


@dataclass(frozen=True, slots=True)
class Task:
    """The two ``task_struct`` fields user-visible output shows: ``pid`` and ``comm``."""

    pid: int
    comm: str

    def __post_init__(self) -> None:
        # set_task_comm() truncates with strlcpy(), so longer names are cut, not rejected.
        object.__setattr__(self, "comm", self.comm[: TASK_COMM_LEN - 1])


# init_idle() renames the boot CPU's idle task (pid 0) "swapper/0" on SMP kernels,
# and the model's release string says SMP.
IDLE_TASK = Task(0, "swapper/0")
# The tasks every kernel has from boot, by pid: rest_init() starts kernel_init as pid 1,
# which execs /sbin/init, and kthreadd as pid 2, which names itself "kthreadd".
BOOT_TASKS = {task.pid: task for task in (Task(1, "init"), Task(2, "kthreadd"))}

# A ContextVar rather than a thread-local so that the identity also follows a
# context copied into another thread or task; new threads start as the idle task.
_current: contextvars.ContextVar[Task] = contextvars.ContextVar("current_task", default=IDLE_TASK)


# Entering and leaving a task: ``enter_task(task)`` returns the token ``leave_task``
# restores the previous task with. The ContextVar's own methods, so that the paths
# entered on every call (the RPC layer's system-call context, a file session's
# requests) pay no Python call; running_as is the same two steps as a ``with`` block.
enter_task = _current.set
leave_task = _current.reset


def current() -> Task:
    """``current``: the task this thread of execution runs on behalf of."""
    return _current.get()


class running_as:  # noqa: N801 - used like the function-style context managers
    """Run the body as ``task`` (a process entering the kernel), restoring the previous
    task after: ``with running_as(task):``.

    Handler threads are pooled, so the previous value must be restored exactly, even
    when the body raises. A class, not a generator: it is entered on every call.
    """

    __slots__ = ("task", "token")

    def __init__(self, task: Task) -> None:
        self.task = task

    def __enter__(self) -> Task:
        self.token = enter_task(self.task)
        return self.task

    def __exit__(self, *exc_info: object) -> None:
        leave_task(self.token)
