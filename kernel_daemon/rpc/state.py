"""What the daemon holds across calls: the booted kernel, its file tree, and counters.

A reboot builds a fresh kernel and swaps it in, then ends the old boot: the processes
of the old boot die with it. Calls bound to it for longer than one system call (an
open file session, a tracer's stream, a trace_pipe reader, a failpoint waiter) end
with ENODEV at once; a unary call already inside the old kernel finishes against it,
or fails with ENODEV where it would need the old boot's shared memory, which is
unlinked. New calls see the new boot.
"""

from __future__ import annotations

import collections
import errno
import gc
import itertools
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from clients.identity import parse_identity_metadata
from kernel_daemon.errno import KernelError
from kernel_daemon.kernel import BootOptions, Kernel
from kernel_daemon.mutex import note_acquisitions, stop_noting
from kernel_daemon.rpc.status import LOCK_ACQUIRED_METADATA_KEY, add_trailing_metadata
from kernel_daemon.task import Task, enter_task, leave_task
from kernel_daemon.tracefs.tree import mount
from kernel_daemon.tracefs.vfs import Vfs

S = TypeVar("S")
R = TypeVar("R")
# A caller that does not say who it is still runs as some process.
ANONYMOUS = Task(1, "grpc-client")
# Distinct callers' metadata remembered at most (the cache starts over past this).
MAX_CACHED_CALLERS = 4096


@dataclass(eq=False)
class Boot:
    """One booted kernel and its file tree, and the calls bound to it (see :meth:`bind`)."""

    boot_id: int
    kernel: Kernel
    vfs: Vfs
    # Set by end(), under _lock, before the callbacks run: a call can test it at any time.
    ended: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _bound: set[Callable[[], None]] = field(default_factory=set, init=False, repr=False)

    def bind(self, on_end: Callable[[], None]) -> None:
        """Tie a call to this boot: ``on_end()`` runs when the boot ends, to wake the call
        so that it ends with ENODEV. Raises KernelError(ENODEV) if it already ended."""
        with self._lock:
            if self.ended:
                raise KernelError(errno.ENODEV, "the kernel rebooted")
            self._bound.add(on_end)

    def unbind(self, on_end: Callable[[], None]) -> None:
        with self._lock:
            self._bound.discard(on_end)

    def end(self) -> None:
        """The boot is over: wake the calls bound to it, then shut the kernel down
        (which also wakes the ones blocked inside it, and unlinks its shared memory)."""
        with self._lock:
            self.ended = True
            bound, self._bound = self._bound, set()
        for on_end in bound:
            on_end()
        self.kernel.shutdown()


class DaemonState:
    def __init__(self, options: BootOptions) -> None:
        self._boot_ids = itertools.count(1)
        self._lock = threading.Lock()
        self.rpc_counts: collections.Counter[str] = collections.Counter()
        # invocation metadata -> the Task it names (see caller()).
        self._callers: dict[tuple, Task] = {}
        # The files open through tracefs calls (set.add and set.discard are atomic, so
        # opens and releases on many handler threads need no lock).
        self.open_files: set[object] = set()
        self.invocations = 0
        self.boot = self._make_boot(options)
        freeze_booted_kernel()

    def _make_boot(self, options: BootOptions) -> Boot:
        kernel = Kernel(options)
        return Boot(next(self._boot_ids), kernel, mount(kernel))

    def reboot(self, options: BootOptions) -> Boot:
        """Boot a kernel with ``options`` and swap it in, then end the old boot. The old
        one serves until the swap, so a kernel that fails to boot replaces nothing."""
        new = self._make_boot(options)
        with self._lock:
            old, self.boot = self.boot, new
        old.end()
        del old
        freeze_booted_kernel()
        return new

    def shutdown(self) -> None:
        self.boot.end()

    def _identify(self, metadata: Any) -> Task:
        """The calling process named by identity metadata not seen before (see caller).

        Malformed metadata raises KernelError(EINVAL) every time, as it is never cached.
        """
        pid, comm = parse_identity_metadata(metadata)
        task = Task(pid if pid is not None else ANONYMOUS.pid, comm or ANONYMOUS.comm)
        if isinstance(metadata, tuple):
            if len(self._callers) >= MAX_CACHED_CALLERS:
                self._callers.clear()
            self._callers[metadata] = task
        return task

    def syscall(self, context: grpc.ServicerContext, report_locking: bool = False) -> Syscall:
        """Enter the kernel as the calling process (``with state.syscall(context) as
        boot:``); yields the boot to work on.

        ``report_locking`` (the unary calls that change kernel state): the times the
        call acquired ftrace_lock go back in its trailing metadata, failed or not.
        Malformed identity metadata raises KernelError(EINVAL) before anything runs.
        """
        return Syscall(self.caller(context), self.boot, context if report_locking else None)

    def caller(self, context: grpc.ServicerContext) -> Task:
        """The calling process, from the call's identity metadata: parsed once per
        distinct metadata (a client sends the same with every call)."""
        metadata = context.invocation_metadata()
        try:
            return self._callers[metadata]
        except (KeyError, TypeError):  # TypeError: metadata that is not a hashable tuple
            return self._identify(metadata)

    def count_invocations(self, calls: int) -> None:
        with self._lock:
            self.invocations += calls


def freeze_booted_kernel() -> None:
    """Move every object alive now out of the cyclic collector's reach (``gc.freeze``).

    A booted kernel is some 80,000 Python objects (symbols, the file tree) that live as
    long as it does; each full collection would walk them all, about 50 ms during which
    every call waits. What a previous boot left behind is collected first.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Syscall:
    """The context of :meth:`DaemonState.syscall`: ``current`` is the caller inside."""

    __slots__ = ("task", "boot", "reply_to", "token", "acquired", "noting")

    def __init__(self, task: Task, boot: Boot,
                 reply_to: grpc.ServicerContext | None = None) -> None:
        self.task = task
        self.boot = boot
        self.reply_to = reply_to  # the call to report ftrace_lock acquisitions to

    def __enter__(self) -> Boot:
        self.token = enter_task(self.task)
        if self.reply_to is not None:
            self.acquired: list[int] = []
            self.noting = note_acquisitions(self.acquired)
        return self.boot

    def __exit__(self, *exc_info: object) -> None:
        leave_task(self.token)
        if self.reply_to is not None:
            stop_noting(self.noting)
            if self.acquired:
                add_trailing_metadata(self.reply_to, ((LOCK_ACQUIRED_METADATA_KEY,
                                                       " ".join(map(str, self.acquired))),))


def counting_calls(state: DaemonState, servicer: S, service: ServiceDescriptor) -> S:
    """``servicer`` with each of ``service``'s methods counting its calls by full method
    name (``Kernel.Stats`` ``rpc_counts``), wrapped on the instance before it is
    registered. A server interceptor would count every service, but it costs a light
    call some 6% of its rate."""
    for method in service.methods:
        behaviour = getattr(servicer, method.name)
        setattr(servicer, method.name,
                _counted(state, f"/{service.full_name}/{method.name}", behaviour))
    return servicer


def _counted(state: DaemonState, full_name: str,
             behaviour: Callable[[Any, grpc.ServicerContext], Any]
             ) -> Callable[[Any, grpc.ServicerContext], Any]:
    # Returns what the behaviour returns: a response, or a streaming call's iterator.
    lock, counts = state._lock, state.rpc_counts

    def counted(request: Any, context: grpc.ServicerContext) -> Any:
        with lock:
            counts[full_name] += 1
        return behaviour(request, context)
    return counted


# What BoundRequests' queue holds besides requests: the stream's end, the boot's end.
_REQUESTS_END = object()
_BOOT_END = object()


class ReaderThreads:
    """Daemon threads that run the request readers of streams, each kept for the next
    stream when its stream ends: starting a thread costs some 150 µs of CPU, a tenth of
    a whole file session (open, read, close). Daemon threads, so that a reader still
    blocked never holds up the daemon's exit."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads done with their job, each about to take another

    def run(self, job: Callable[[], None]) -> None:
        """Run ``job`` on an idle thread, or on a new one if none is idle."""
        with self._lock:
            reuse = self._idle > 0
            if reuse:
                self._idle -= 1
        self._jobs.put(job)
        if not reuse:
            threading.Thread(target=self._work, daemon=True, name="stream-requests").start()

    def _work(self) -> None:
        while True:
            self._jobs.get()()
            with self._lock:
                self._idle += 1


READER_THREADS = ReaderThreads()


class BoundRequests(Generic[R]):
    """The requests of a bidirectional call that :meth:`bind` may tie to a boot.

    Unbound, the handler reads the call itself. Once bound, a reader thread takes over,
    so that a handler waiting for the next request also wakes when that boot ends: its
    process died with the old kernel, and the call ends with ENODEV at once rather than
    at the client's next request.

    Iterating yields the requests until the client half-closes or goes away; after the
    bound boot ended it raises KernelError(ENODEV), also for requests already queued.
    """

    def __init__(self, requests: Iterator[R]) -> None:
        self._requests = requests
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._boot: Boot | None = None

    def _read(self) -> None:
        try:
            for request in self._requests:
                self._queue.put(request)
        except grpc.RpcError:  # the client went away mid-stream
            pass
        finally:
            self._queue.put(_REQUESTS_END)

    def _boot_ended(self) -> None:
        self._queue.put(_BOOT_END)

    def bind(self, boot: Boot) -> None:
        """From now on the call belongs to ``boot`` (ENODEV if it already ended)."""
        boot.bind(self._boot_ended)
        self._boot = boot

    def unbind(self) -> None:
        if self._boot is not None:
            self._boot.unbind(self._boot_ended)
            self._boot = None

    def __iter__(self) -> Iterator[R]:
        try:
            for request in self._requests:
                yield request
                if self._boot is not None:
                    break
            else:
                return
        except grpc.RpcError:  # the client went away mid-stream
            return
        # Bound: read on another thread, and wait for a request or the boot's end.
        READER_THREADS.run(self._read)
        while True:
            item = self._queue.get()
            # The boot's end overtakes requests already queued: the process is gone.
            if item is _BOOT_END or self._boot is not None and self._boot.ended:
                raise KernelError(errno.ENODEV, "the kernel rebooted")
            if item is _REQUESTS_END:
                return
            yield item
