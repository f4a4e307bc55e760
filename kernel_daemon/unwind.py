"""The kernel stack of the current thread of execution, for ``dump_stack()``.

Model of the x86 frame-pointer unwinder (``arch/x86/kernel/dumpstack.c:dump_trace()``):
the kernel walks return addresses on the stack; the model keeps the names of the
kernel functions entered on this thread, so a WARN's "Call Trace:" shows the path
really taken.  Core functions are decorated with :func:`kernel_function`; entry paths
that have no Python counterpart (the syscall entry, a deferred ``fput`` run on return
to user space) are pushed as synthetic frames with :func:`kernel_frames`.

The stack is an immutable tuple in a ContextVar: a push is ``set(stack + (name,))``
and a pop is ``reset(token)``, which stays correct across threads, across copied
contexts (where a shared mutable list would leak frames between them) and when
exceptions propagate.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_stack: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("kernel_stack", default=())
# Bound once: the wrapper runs on every call of a kernel function, so each attribute
# lookup saved there counts.
_get, _set, _reset = _stack.get, _stack.set, _stack.reset


def kernel_function_named(*names: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: the wrapped callable is the kernel function ``names[-1]`` while it runs,
    entered through the others (outermost first).

    For the rare function whose Python name differs from the kernel's, and for the
    entry points that stand for a whole path (``"system_call_fastpath", "sys_read",
    "vfs_read"``): one wrapper pushes every frame, where a :class:`kernel_frames` block
    around the call would cost three more Python calls on each system call.
    """
    pushed = names

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def frame(*args: P.args, **kwargs: P.kwargs) -> R:
            token = _set(_get() + pushed)
            try:
                return fn(*args, **kwargs)
            finally:
                _reset(token)

        return frame

    return decorate


def kernel_function(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator: ``fn`` is a kernel function of the same name, on the stack while it runs."""
    return kernel_function_named(fn.__name__)(fn)


class kernel_frames:  # noqa: N801 - used like the function-style context managers
    """Push synthetic frames, given outermost first, for the duration of the body.

    E.g. ``kernel_frames("system_call_fastpath", "sys_write", "vfs_write")`` for a write
    system call, or ``kernel_frames("int_signal", "do_notify_resume", "task_work_run",
    "____fput", "__fput")`` for the last close of a file, which 3.6 defers to
    ``task_work`` run on the way back to user space.  A class, not a generator: it is
    entered several times per system call.
    """

    __slots__ = ("names", "token")

    def __init__(self, *names: str) -> None:
        self.names = names

    def __enter__(self) -> None:
        self.token = _set(_get() + self.names)

    def __exit__(self, *exc_info: object) -> None:
        _reset(self.token)


def call_trace() -> list[str]:
    """The current stack, innermost first, as ``dump_stack()`` prints it top-down."""
    return list(reversed(_get()))
