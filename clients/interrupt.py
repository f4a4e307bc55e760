"""Ctrl-C during a blocking gRPC call: the call is cancelled, and KeyboardInterrupt is
raised afterwards from here, never from inside gRPC.

Python raises KeyboardInterrupt wherever the main thread is when SIGINT's handler runs.
In a response stream's ``next()`` that is inside grpc's ``_channel``, which keeps its
books under two ``threading.Condition``s, the call's and the channel's (cygrpc's), whose
``__enter__``, ``__exit__`` and ``wait()`` are Python code. Raised just after
``__enter__`` took the channel's lock, or just before ``__exit__`` gives it back
(python/cpython#74174), it leaves that lock held by the main thread for good; the thread
sending a session's requests, holding the call's lock, then waits on it, and so does the
channel's spin thread — and the main thread's ``cancel()`` (which makes the daemon release
the file) waits on the call's lock forever. Raised in ``wait()`` between
``_release_save()`` and its ``try``, it leaves the call's lock released under the
``with`` that holds it, which then fails with RuntimeError instead. (grpc/grpc#19973
was the like of it for unary calls.)

This does what the kernel does for a task in an interruptible sleep: a pending signal
wakes the wait, the system call unwinds (``wait_event_interruptible()`` returns
-ERESTARTSYS), and only on the way back to user space is the signal delivered
(``do_signal()``). Here SIGINT's handler, for the time of the wait, only cancels the
call, as grpc's own cancellation example does (examples/python/cancellation,
grpc/grpc#19464): ``cancel()`` takes no lock the interrupted thread could be holding
other than grpc's conditions, RLocks it may take again, and leaves the call consistent.
gRPC then ends the wait with CANCELLED, and KeyboardInterrupt is raised here.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

__all__ = ["Messages"]


class Messages:
    """The messages of a gRPC call's response stream, as iterating ``call`` gives them;
    Ctrl-C while waiting for one cancels the call, then raises KeyboardInterrupt (even if
    a message came meanwhile: it is dropped, as the interrupted read's data would be).

    Only on the main thread (the only one with signal handlers), and only while SIGINT
    raises KeyboardInterrupt (``signal.default_int_handler``): a program that handles
    SIGINT itself, or ignores it, keeps its way. Between messages — while the caller
    handles one — SIGINT acts as it did before.
    """

    def __init__(self, call: Any) -> None:
        self._call = call

    def __iter__(self) -> "Messages":
        return self

    def __next__(self) -> Any:
        if (threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
            return next(self._call)
        interrupted = False

        def cancel(signum: int, frame: FrameType | None) -> None:
            nonlocal interrupted
            interrupted = True
            self._call.cancel()
            # From now on a second Ctrl-C raises KeyboardInterrupt where it lands, as
            # before: the way out should this cancel not end the wait. Not before
            # cancel() returns: it takes grpc's locks, where KeyboardInterrupt must not
            # land (a Ctrl-C during it runs this again, and cancel() does nothing).
            signal.signal(signal.SIGINT, signal.default_int_handler)

        signal.signal(signal.SIGINT, cancel)
        try:
            message = next(self._call)
        except Exception:
            if not interrupted:
                raise  # StopIteration too: the stream's end
            # The cancelled call's CANCELLED: the interrupt's doing, which says it instead.
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if interrupted:
            raise KeyboardInterrupt
        return message
