"""What the daemon holds across calls: the booted kernel, its file tree, and counters.

A reboot builds a fresh kernel and swaps it in; calls already inside the old one
finish against it (their process "dies" with the old boot), new calls see the new.
"""

from __future__ import annotations

import collections
import itertools
import threading
from dataclasses import dataclass

import grpc

from clients.identity import parse_identity_metadata
from kernel_daemon import task as task_module
from kernel_daemon.kernel import BootOptions, Kernel
from kernel_daemon.mutex import note_acquisitions, stop_noting
from kernel_daemon.rpc.status import LOCK_ACQUIRED_METADATA_KEY, add_trailing_metadata
from kernel_daemon.task import Task
from kernel_daemon.tracefs.tree import mount
from kernel_daemon.tracefs.vfs import Vfs

# A caller that does not say who it is still runs as some process.
ANONYMOUS = Task(1, "grpc-client")
# Distinct callers' metadata remembered at most (the cache starts over past this).
MAX_CACHED_CALLERS = 4096
# running_as() without the generator: Syscall enters and leaves ``current`` itself.
set_current = task_module._current.set
reset_current = task_module._current.reset


@dataclass(eq=False)
class Boot:
    boot_id: int
    kernel: Kernel
    vfs: Vfs


class DaemonState:
    def __init__(self, options: BootOptions) -> None:
        self._boot_ids = itertools.count(1)
        self._lock = threading.Lock()
        self.rpc_counts: collections.Counter[str] = collections.Counter()
        # invocation metadata -> the Task it names (see caller()).
        self._callers: dict[tuple, Task] = {}
        self.open_files = 0
        self.invocations = 0
        self.boot = self._make_boot(options)

    def _make_boot(self, options: BootOptions) -> Boot:
        kernel = Kernel(options)
        return Boot(next(self._boot_ids), kernel, mount(kernel))

    def reboot(self, options: BootOptions) -> Boot:
        new = self._make_boot(options)
        with self._lock:
            old, self.boot = self.boot, new
        old.kernel.shutdown()
        return new

    def shutdown(self) -> None:
        self.boot.kernel.shutdown()

    def count_file(self, delta: int) -> None:
        with self._lock:
            self.open_files += delta

    def caller(self, context: grpc.ServicerContext) -> Task:
        """The calling process, from the call's identity metadata.

        Parsed once per distinct metadata (a client sends the same with every call);
        malformed metadata raises KernelError(EINVAL) every time, as it is never cached.
        """
        metadata = context.invocation_metadata()
        try:
            return self._callers[metadata]
        except (KeyError, TypeError):  # TypeError: metadata that is not a hashable tuple
            pass
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

    def count_invocations(self, calls: int) -> None:
        with self._lock:
            self.invocations += calls

    def count_rpc(self, method: str) -> None:
        with self._lock:
            self.rpc_counts[method] += 1


class Syscall:
    """The context of :meth:`DaemonState.syscall`: ``current`` is the caller inside."""

    __slots__ = ("task", "boot", "token", "reply_to", "acquired", "noting")

    def __init__(self, task: Task, boot: Boot,
                 reply_to: grpc.ServicerContext | None = None) -> None:
        self.task = task
        self.boot = boot
        self.reply_to = reply_to  # the call to report ftrace_lock acquisitions to
        self.acquired: list[int] = []

    def __enter__(self) -> Boot:
        self.token = set_current(self.task)
        if self.reply_to is not None:
            self.noting = note_acquisitions(self.acquired)
        return self.boot

    def __exit__(self, *exc_info: object) -> None:
        reset_current(self.token)
        if self.reply_to is not None:
            stop_noting(self.noting)
            if self.acquired:
                add_trailing_metadata(self.reply_to, ((LOCK_ACQUIRED_METADATA_KEY,
                                                       " ".join(map(str, self.acquired))),))


class CountingInterceptor(grpc.ServerInterceptor):
    """Counts calls by full method name, for ``Kernel.Stats``."""

    def __init__(self, state: DaemonState) -> None:
        self.state = state

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        self.state.count_rpc(handler_call_details.method)
        return continuation(handler_call_details)
