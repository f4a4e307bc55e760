"""Signals to a task inside the kernel: ``kill(2)`` (``kill_pid_info()``),
``signal_pending(current)``, ``signal_wake_up()``, and the signal's delivery on the way
back to user space (``do_signal()``).

The model's task is a client process, inside the kernel only while one of its calls
runs there (``DaemonState.syscall``; one operation of a file session): each such call is
one thread of the process, with a :class:`SigPending` of its own, listed in the
:class:`SignalTable` while it is inside. ``kill(pid, sig)`` (``Kernel.Kill``) makes the
signal pending for each call of ``pid`` inside the kernel and wakes their interruptible
waits, which then end with EINTR (``-ERESTARTSYS``); a call in an uninterruptible
section (``mutex_lock()`` of ftrace_lock) goes on and completes, and as it leaves the
kernel it takes the signal (:meth:`SignalTable.leave`): its answer says so, and the
process, not the daemon, acts on it. A task with no call inside is in user space,
where the signal is its own to take at once: nothing is left pending in the kernel,
so no later call of the process finds it there.

A client's cancelled call is the same thing seen from the kernel: its process is gone,
as if killed. The wake-ups a wait registers (:meth:`SigPending.wake_on_signal`) run
for both, and :meth:`SigPending.signal_pending` is true for both: one path.

The model's choice, not the kernel's: it cannot know the client's signal mask or
handlers, so every signal sent is taken as one the process neither blocks nor ignores.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Callable

import grpc

#: ``_NSIG``: signals are numbered 1 to 64 (SIGRTMAX); 0 is kill(2)'s null signal.
_NSIG = 64


def valid_signal(sig: int) -> bool:
    """``valid_signal()``, with kill(2)'s null signal 0 (the check without a signal)."""
    return 0 <= sig <= _NSIG


class SigPending:
    """One call's side of ``task_struct``'s signal state while it runs in the kernel:
    ``pending`` (the first signal sent to it), and the wake-ups of its interruptible waits
    (what ``signal_wake_up()`` kicks). Cancellation of the call by its client counts as a
    signal too (:meth:`signal_pending`)."""

    __slots__ = ("context", "signo", "_wakers", "_watching")

    def __init__(self, context: grpc.ServicerContext) -> None:
        self.context = context
        #: The signal pending (0: none): the first one sent; later ones merge into it,
        #: as a standard signal already pending does not queue again.
        self.signo = 0
        self._wakers: list[Callable[[], None]] = []
        self._watching = False  # the cancellation callback is registered

    def signal_pending(self) -> bool:
        """``signal_pending(current)``: a signal was sent, or the client went away."""
        return self.signo != 0 or not self.context.is_active()

    def wake_on_signal(self, wake: Callable[[], None]) -> None:
        """``wake`` wakes an interruptible wait of this call: run when a signal comes, or
        when the client goes away (``context.add_callback``). If either already happened
        it runs now, so that a wait about to start tests ``signal_pending()`` again."""
        self._wakers.append(wake)
        if not self._watching:
            self._watching = True
            # False: the call already ended, and the callback will never run; then
            # signal_pending() says so below.
            self.context.add_callback(self._wake_all)
        if self.signal_pending():
            wake()

    def _wake_all(self) -> None:
        for wake in list(self._wakers):
            wake()


_current: contextvars.ContextVar[SigPending | None] = contextvars.ContextVar(
    "current_sigpending", default=None)


def current_sigpending() -> SigPending:
    """The signal state of the call this thread runs; only inside one (a thread outside
    any call, the idle task's, has no signals to take)."""
    pending = _current.get()
    assert pending is not None, "no call is inside the kernel on this thread"
    return pending


class SignalTable:
    """The calls of each task inside the kernel, by pid: where ``kill(2)`` finds the
    threads of a process to signal (``pid_task()``'s thread group, for the model)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside: dict[int, set[SigPending]] = {}

    def enter(self, pid: int, pending: SigPending) -> contextvars.Token:
        """The call of ``pending`` enters the kernel as task ``pid``. Returns the token
        :meth:`leave` takes."""
        with self._lock:
            self._inside.setdefault(pid, set()).add(pending)
        return _current.set(pending)

    def leave(self, pid: int, pending: SigPending, token: contextvars.Token) -> int:
        """The call leaves the kernel (3.6 x86: ``int_signal`` / ``retint_signal`` ->
        ``do_notify_resume()``): the signal pending for it, if any, is taken now
        (``do_signal()``) and returned (0: none), and no longer pending. Out of the table
        first, so that a reset that raises (a call ended outside its own context) leaves
        no call there for a Kill to count."""
        with self._lock:
            calls = self._inside[pid]
            calls.discard(pending)
            if not calls:
                del self._inside[pid]
            signo, pending.signo = pending.signo, 0
        _current.reset(token)
        return signo

    def kill(self, pid: int, sig: int) -> int:
        """``kill(pid, sig)`` for a task the pid table has, ``sig`` valid: the signal made
        pending for each of its calls inside the kernel, their interruptible waits woken;
        how many there were (0: the task is in user space, where the signal is its own).
        Signal 0 checks only."""
        with self._lock:
            calls = list(self._inside.get(pid, ()))
            if sig:
                for pending in calls:
                    pending.signo = pending.signo or sig
        if sig:
            for pending in calls:
                pending._wake_all()
        return len(calls)
