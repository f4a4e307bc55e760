"""The gRPC server: the services, health and reflection, on a unix socket or TCP."""

from __future__ import annotations

import logging
import resource
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
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

#: Connections served at once unless ``ftraced --max-connections`` says otherwise; gRPC
#: closes any beyond them as it accepts them (its ``grpc.max_allowed_incoming_connections``).
MAX_CONNECTIONS = 1024
#: How long the daemon's stop lets the calls still running finish (gRPC's grace) before
#: it cancels them, unless ``ftraced --stop-grace`` says otherwise.
STOP_GRACE = 2.0
#: Descriptors kept for the daemon's own files (its shared-memory segments, one more per
#: loaded module; its log; the lock), beyond one per connection.
FILES_KEPT = 256

log = logging.getLogger("ftraced")


def connections_allowed(max_connections: int) -> int:
    """How many connections the daemon serves at once: ``max_connections``, once its soft
    RLIMIT_NOFILE is raised to leave room for them and :data:`FILES_KEPT`, or fewer when
    the hard limit does not (as Redis does with its ``maxclients``). Without a cap, a
    client that opened connections without end would take the daemon's last descriptor:
    gRPC would then log "File descriptor limit reached" every second, and no other
    client could connect."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + FILES_KEPT
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return max_connections
    allowed = max(1, soft - FILES_KEPT)
    log.warning("serving at most %d connections, not %d: the open-file limit "
                "(RLIMIT_NOFILE) is %d", allowed, max_connections, soft)
    return allowed


def new_grpc_server(max_connections: int = MAX_CONNECTIONS) -> grpc.Server:
    """A sync gRPC server with the daemon's settings: the thread pool, the options, and
    at most ``max_connections`` connections at once.

    The benchmarks' echo server is built with this too, so it is the same server.
    """
    options = SERVER_OPTIONS + (("grpc.max_allowed_incoming_connections", max_connections),)
    return grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_WORKERS,
                                                  thread_name_prefix="syscall"),
                       options=options)


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
#: The contract's files with their comments, which `make gen` writes beside the generated
#: modules (protoc --include_source_info --include_imports --descriptor_set_out).
DESCRIPTOR_SET = Path(kernel_pb2.__file__).with_name("descriptor_set.binpb")


def commented_files(path: Path = DESCRIPTOR_SET) -> dict[str, bytes]:
    """Each file of the descriptor set at ``path``, serialized, by its name. Without it
    reflection would serve the contract stripped of all its meaning (the errno table, the
    metadata keys, the stream protocols live in comments), so a daemon refuses to start:
    raises SystemExit saying how to make it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SystemExit(f"ftraced: {path} is missing: `make gen` writes it, with the "
                         f"comments server reflection serves") from None
    files = descriptor_pb2.FileDescriptorSet.FromString(data).file
    return {file.name: file.SerializeToString() for file in files}


class CommentedReflectionServicer(reflection.ReflectionServicer):
    """grpc_reflection's servicer (what enable_server_reflection() adds), answering with
    the contract's files as ``make gen``'s descriptor set has them: with their comments.

    The file requests (by name, by a symbol) are answered here, through protobuf's public
    DescriptorPool API on the generated modules' pool, as enable_server_reflection()
    looks them up; the others (list_services; the extensions', which the contract has
    none of) go to grpc_reflection's servicer, whose file lookups are private. Each file
    is serialized from the set's copy of the same name: the pool's CopyToProto() leaves
    SourceCodeInfo out under protobuf's upb implementation, even for a pool built from a
    set that has it (so passing such a pool as enable_server_reflection's ``pool`` would
    not do). Files not in the set (the health and reflection protos) go as the pool has
    them.

    A method's name (``ftrace.v1.Tracer.Invoke``, ``grpc.health.v1.Health.Check``) is a
    symbol of its file as for any other element, as the reflection services of protobuf's
    C++ and Go implementations find it: upb's FindFileContainingSymbol() does not know
    methods, so such a name is looked up as a method when it finds nothing.
    """

    def __init__(self, state: DaemonState, service_names: Iterable[str],
                 files: dict[str, bytes]) -> None:
        super().__init__(service_names)
        self.state = state
        self.files = files
        self.pool = descriptor_pool.Default()

    def file_of_symbol(self, name: str) -> FileDescriptor:
        """The file that defines ``name``; KeyError for none."""
        try:
            return self.pool.FindFileContainingSymbol(name)
        except KeyError:
            return self.pool.FindMethodByName(name).containing_service.file

    def file_response(
            self, request: reflection_pb2.ServerReflectionRequest,
            find: Callable[[], FileDescriptor]) -> reflection_pb2.ServerReflectionResponse:
        """The file ``find`` returns, then every file it imports, directly or not; NOT_FOUND
        when it raises KeyError."""
        try:
            first = find()
        except KeyError:
            code, text = grpc.StatusCode.NOT_FOUND.value
            return reflection_pb2.ServerReflectionResponse(
                error_response=reflection_pb2.ErrorResponse(error_code=code, error_message=text),
                original_request=request)
        files: dict[str, FileDescriptor] = {}
        pending = [first]
        while pending:
            file = pending.pop()
            if file.name not in files:
                files[file.name] = file
                pending.extend(file.dependencies)
        return reflection_pb2.ServerReflectionResponse(
            file_descriptor_response=reflection_pb2.FileDescriptorResponse(
                file_descriptor_proto=[self.serialized(file) for file in files.values()]),
            original_request=request)

    def serialized(self, file: FileDescriptor) -> bytes:
        if (commented := self.files.get(file.name)) is not None:
            return commented
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        return proto.SerializeToString()

    def ServerReflectionInfo(
            self, request_iterator: Iterator[reflection_pb2.ServerReflectionRequest],
            context: grpc.ServicerContext) -> Iterator[reflection_pb2.ServerReflectionResponse]:
        # The requests are read as a file session's are: a client that keeps the stream
        # open between questions (as reflection-driven tools do) waits in gRPC, and would
        # hold the daemon's stop for the whole grace; the stop cancels it instead.
        for request in self.state.next_requests(request_iterator, context, None):
            if request.HasField("file_by_filename"):
                yield self.file_response(
                    request, lambda: self.pool.FindFileByName(request.file_by_filename))
            elif request.HasField("file_containing_symbol"):
                yield self.file_response(
                    request, lambda: self.file_of_symbol(request.file_containing_symbol))
            else:
                yield from super().ServerReflectionInfo(iter((request,)), context)


class DaemonHealthServicer(health.HealthServicer):
    """grpc_health's servicer, whose Watch ends at the daemon's stop once it has said
    NOT_SERVING: it has nothing more to say, and waiting in grpc_health's watcher, outside
    the kernel, it would hold the stop for the whole grace (a channel doing client-side
    health checking keeps one open)."""

    def __init__(self) -> None:
        super().__init__()
        self.stopping = False

    def enter_graceful_shutdown(self) -> None:
        # Said before the NOT_SERVING it sends, so that a watcher that has it sees this.
        self.stopping = True
        super().enter_graceful_shutdown()

    def Watch(  # noqa: N802 - the gRPC method's name
            self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext,
            send_response_callback: None = None) -> Iterator[health_pb2.HealthCheckResponse]:
        # Behind the daemon's wrappers (registration.py) it is a blocking handler: the
        # servicer's own watcher, no callback.
        for response in super().Watch(request, context):
            yield response
            if self.stopping and response.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                return


class Daemon:
    """The daemon's server: bound first (a daemon that cannot serve fails before its
    kernel boots), then started with the booted kernel's state."""

    def __init__(self, address: str, max_connections: int = MAX_CONNECTIONS) -> None:
        """Bind ``address``; raises OSError as :class:`Listener` does, SystemExit as
        :func:`commented_files` does."""
        self.commented_files = commented_files()
        self.server = new_grpc_server(connections_allowed(max_connections))
        self.listener = Listener(self.server, address)
        self.address = self.listener.address
        self.state: DaemonState | None = None
        self.health = DaemonHealthServicer()

    def start(self, state: DaemonState) -> None:
        self.state = state
        for service, servicer in SERVICES:
            add_servicer(self.server, state, service, servicer(state))
        add_servicer(self.server, state, HEALTH, self.health)
        # What enable_server_reflection() does, through add_servicer: its streams hold
        # handler threads like any other's, of their own few (state.py).
        add_servicer(self.server, state, REFLECTION, CommentedReflectionServicer(
            state, SERVICE_NAMES + (HEALTH.full_name, reflection.SERVICE_NAME),
            self.commented_files), state.reflection_slots)
        self.server.start()
        for name in ("",) + SERVICE_NAMES:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop serving: end the boot (when one was started) first, so that what waits in
        it ends within the grace, and cancel the file sessions waiting for their
        client's next request (DaemonState.stopping); then release the address. The
        grace is gRPC's: its stop returns once every call has ended and sent its status,
        so an ENODEV the boot's end woke is answered, not cut off."""
        if self.state is not None:
            self.health.enter_graceful_shutdown()
            self.state.stopping()
        self.server.stop(grace).wait()
        self.listener.close()
