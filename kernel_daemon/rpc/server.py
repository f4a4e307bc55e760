"""The gRPC server: the services, health and reflection, on a unix socket or TCP."""

from __future__ import annotations

import os
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection

from clients.connection import CHANNEL_OPTIONS, unix_socket_path
from ftrace.v1 import kernel_pb2, modules_pb2, tracefs_pb2, tracer_pb2
from kernel_daemon.rpc.kernel_service import KernelService
from kernel_daemon.rpc.modules_service import ModulesService
from kernel_daemon.rpc.registration import add_servicer
from kernel_daemon.rpc.state import MAX_WORKERS, DaemonState
from kernel_daemon.rpc.tracefs_service import TracefsService
from kernel_daemon.rpc.tracer_service import TracerService

# The channel options of the clients (message size limits), shared by the server.
SERVER_OPTIONS = CHANNEL_OPTIONS


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


class Daemon:
    def __init__(self, state: DaemonState, address: str) -> None:
        self.state = state
        self.address = address
        self.server = new_grpc_server()
        for service, servicer in SERVICES:
            add_servicer(self.server, state, service, servicer(state))
        self.health = health.HealthServicer()
        add_servicer(self.server, state, HEALTH, self.health)
        reflection.enable_server_reflection(
            SERVICE_NAMES + (HEALTH.full_name, reflection.SERVICE_NAME), self.server)
        self.socket_path = unix_socket_path(address)
        if self.socket_path is not None:
            if os.path.exists(self.socket_path):
                os.unlink(self.socket_path)  # left by a daemon that was killed
            # Created 0600 (umask while binding), so only the owner can connect.
            old_umask = os.umask(0o177)
            try:
                self.server.add_insecure_port(f"unix:{self.socket_path}")
            finally:
                os.umask(old_umask)
        else:
            self.server.add_insecure_port(address)

    def start(self) -> None:
        self.server.start()
        for name in ("",) + SERVICE_NAMES:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float = 2.0) -> None:
        self.health.enter_graceful_shutdown()
        # Wake anything blocked inside the kernel so its call can end.
        self.state.boot.kernel.failpoints.release_all()
        self.server.stop(grace).wait()
        self.state.shutdown()
        if self.socket_path is not None and os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
