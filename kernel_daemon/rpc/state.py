"""What the daemon holds across calls: the booted kernel, its file tree, and counters.

A reboot builds a fresh kernel and swaps it in; calls already inside the old one
finish against it (their process "dies" with the old boot), new calls see the new.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from clients.identity import parse_identity_metadata
from kernel_daemon.kernel import BootOptions, Kernel
from kernel_daemon.task import Task, running_as
from kernel_daemon.tracefs.tree import mount
from kernel_daemon.tracefs.vfs import Vfs

# A caller that does not say who it is still runs as some process.
ANONYMOUS = Task(1, "grpc-client")


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
        self.open_files = 0
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

    @contextlib.contextmanager
    def syscall(self, context: grpc.ServicerContext) -> Iterator[Boot]:
        """Enter the kernel as the calling process; yields the boot to work on.

        Malformed identity metadata raises KernelError(EINVAL) before anything runs.
        """
        pid, comm = parse_identity_metadata(context.invocation_metadata())
        task = Task(pid if pid is not None else ANONYMOUS.pid, comm or ANONYMOUS.comm)
        with running_as(task):
            yield self.boot

    def count_rpc(self, method: str) -> None:
        with self._lock:
            self.rpc_counts[method] += 1


class CountingInterceptor(grpc.ServerInterceptor):
    """Counts calls by full method name, for ``Kernel.Stats``."""

    def __init__(self, state: DaemonState) -> None:
        self.state = state

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        self.state.count_rpc(handler_call_details.method)
        return continuation(handler_call_details)
