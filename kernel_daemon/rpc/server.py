"""The gRPC server: the services, health and reflection, on a unix socket or TCP."""

from __future__ import annotations

from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

from clients.connection import CHANNEL_OPTIONS
from ftrace.v1 import kernel_pb2, modules_pb2, tracefs_pb2, tracer_pb2
from kernel_daemon.rpc.kernel_service import KernelService
from kernel_daemon.rpc.listener import Listener
from kernel_daemon.rpc.modules_service import ModulesService
from kernel_daemon.rpc.registration import add_servicer
from kernel_daemon.rpc.state import MAX_WORKERS, DaemonState
from kernel_daemon.rpc.tracefs_service import TracefsService
from kernel_daemon.rpc.tracer_service import TracerService

# The channel options of the clients (message size limits), shared by the server, and no
# SO_REUSEPORT, which gRPC sets by default: a second server on the same TCP port would
# share it (the kernel spreading connections between the two) instead of failing to bind.
SERVER_OPTIONS = CHANNEL_OPTIONS + (("grpc.so_reuseport", 0),)


def new_grpc_server() -> grpc.Server:
    """A sync gRPC server with the daemon's settings: the thread pool and the options.

    The benchmarks' echo server is built with this too, so it is the same server.
    """
    return grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_WORKERS,
                                                  thread_name_prefix="syscall"),
                       options=SERVER_OPTIONS)


# (the service, its servicer)
SERVICES = (
    (tracefs_pb2.DESCRIPTOR.services_by_name["Tracefs"], TracefsService),
    (modules_pb2.DESCRIPTOR.services_by_name["Modules"], ModulesService),
    (kernel_pb2.DESCRIPTOR.services_by_name["Kernel"], KernelService),
    (tracer_pb2.DESCRIPTOR.services_by_name["Tracer"], TracerService),
)
SERVICE_NAMES = tuple(service.full_name for service, _ in SERVICES)
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]
REFLECTION = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]


class Daemon:
    """The daemon's server: bound first (a daemon that cannot serve fails before its
    kernel boots), then started with the booted kernel's state."""

    def __init__(self, address: str) -> None:
        """Bind ``address``; raises OSError as :class:`Listener` does."""
        self.server = new_grpc_server()
        self.listener = Listener(self.server, address)
        self.address = self.listener.address
        self.state: DaemonState | None = None
        self.health = health.HealthServicer()

    def start(self, state: DaemonState) -> None:
        self.state = state
        for service, servicer in SERVICES:
            add_servicer(self.server, state, service, servicer(state))
        add_servicer(self.server, state, HEALTH, self.health)
        # What enable_server_reflection() does, through add_servicer: its streams hold
        # handler threads like any other's, so they take stream slots too.
        add_servicer(self.server, state, REFLECTION, reflection.ReflectionServicer(
            SERVICE_NAMES + (HEALTH.full_name, reflection.SERVICE_NAME)))
        self.server.start()
        for name in ("",) + SERVICE_NAMES:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float = 2.0) -> None:
        """Stop serving, shut the kernel down (when it was started), release the address."""
        if self.state is not None:
            self.health.enter_graceful_shutdown()
            # Wake anything blocked inside the kernel so its call can end.
            self.state.boot.kernel.failpoints.release_all()
        self.server.stop(grace).wait()
        if self.state is not None:
            self.state.shutdown()
        self.listener.close()
