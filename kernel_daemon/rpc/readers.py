"""Threads that read one stream at a time each, kept for the next stream once theirs ended.

Both ends of a ``Tracer.Attach`` stream read it on a thread beside the one answering:
ftraced its requests (``tracer_service.TracerSession._read``), the client library its
events (``clients.api.TracerSession._read``). A thread started per stream costs its
process ``pthread_create`` with the GIL held and the thread's exit; stress tracers attach
every few operations. Used by both, so it imports nothing of the daemon's.
"""

from __future__ import annotations

import contextvars
import os
import queue
import threading
import weakref
from collections.abc import Callable

__all__ = ["StreamReaders"]


class StreamReaders:
    """Runs each job handed to :meth:`start` on a thread of its own while it runs: an idle
    one, done with its last job, or a new one when none is idle. There are as many threads
    as jobs ever ran at once; daemon threads, as threads started per stream were: one
    blocked on a stream that never ends holds no exit up."""

    def __init__(self, name: str) -> None:
        self._name = name  # the threads' name
        self._forget_threads()
        # A forked child has none of the threads: its first job must start one, not wait
        # in the queue for an idle thread that stayed in the parent. (Weakly: the hook
        # outlives a pool that is dropped.)
        forget = weakref.WeakMethod(self._forget_threads)
        os.register_at_fork(after_in_child=lambda: (method := forget()) is not None and method())

    def _forget_threads(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = \
            queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads done with their job, taking (or about to take) the next

    def start(self, read: Callable[[], None]) -> threading.Event:
        """Run ``read`` on an idle reader, or on a new one if none is idle. The event is
        set once ``read`` returned and its thread is idle again, so that a job started
        after the wait takes that thread (or once ``read`` raised)."""
        done = threading.Event()
        with self._lock:
            spawn = not self._idle
            if not spawn:
                self._idle -= 1
        if spawn:  # first: a thread that cannot start leaves no job queued for nobody
            threading.Thread(target=self._serve, daemon=True, name=self._name).start()
        self._jobs.put((read, done))
        return done

    def _serve(self) -> None:
        while True:
            read, done = self._jobs.get()
            try:
                # A fresh context for each job, as a new thread would have: nothing one
                # stream's reading set is seen by the next's.
                contextvars.Context().run(read)
            except BaseException:
                done.set()
                raise  # the thread ends, as a thread of its own would have, not idle
            with self._lock:
                self._idle += 1
            done.set()
