"""Connecting to ftraced: the address, the channel, the caller identity, the stubs.

Addresses (``--address``, ``FTRACED_ADDRESS``, ``ftraced --listen``):

- ``unix:PATH`` — a unix socket; PATH absolute or relative to the current directory
- ``unix:///ABS/PATH`` — the same, URI form
- ``/ABS/PATH`` or ``./PATH`` — shorthand for ``unix:PATH``
- ``HOST:PORT`` (``127.0.0.1:50051``, ``localhost:50051``, ``[::1]:50051``) — TCP

Nothing else (:func:`grpc_target` says so): the clients take the addresses the daemon
can listen on, so a malformed one is refused at once rather than tried until the connect
timeout. A port must be 0..65535: gRPC itself would keep only the low 16 bits of a
larger one.

Which address: the explicit argument, else ``$FTRACED_ADDRESS``, else
:func:`default_address` (``unix:$XDG_RUNTIME_DIR/ftraced.sock``, or
``unix:/tmp/ftraced-$UID.sock`` without a runtime directory). The daemon takes its default
listen address from the same function, so the two always agree.

A client waits (``connect(wait=...)``) for a daemon not started yet, never for one that
went away: once a connection of the wait was accepted (or, with ``answered``, another
connection of the program's had an answer), a refusal raises :class:`DaemonLost` at once.

Where a socket takes connections without answering them, :func:`socket_listener` names
the process that listens on it and says whether it is stopped (a daemon stopped with
SIGSTOP) or running (one still booting its kernel: it listens first).

``connect()`` returns a :class:`Connection`: one channel whose every call carries the
caller identity (``x-ftrace-pid``/``x-ftrace-comm``, see ``clients.identity``), and the typed
stubs ``.tracefs``, ``.modules``, ``.kernel``, ``.tracer`` and ``.health``. Stub calls raise
``grpc.RpcError``; convert with ``clients.errors`` (``translate_rpc_errors()``,
``FtraceError.from_rpc``).
"""

from __future__ import annotations

import errno
import os
import re
import socket
import stat
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.errors import FtraceError, translate_rpc_errors
from clients.identity import Identity
from clients.procfs import process_comm_and_state
from ftrace.v1 import kernel_pb2_grpc, modules_pb2_grpc, tracefs_pb2_grpc, tracer_pb2_grpc

__all__ = [
    "ADDRESS_ENV",
    "ADDRESS_FORMS",
    "SOCKET_NAME",
    "MAX_MESSAGE_BYTES",
    "CHANNEL_OPTIONS",
    "default_address",
    "resolve_address",
    "grpc_target",
    "unix_socket_path",
    "host_port",
    "IdentityChannel",
    "Connection",
    "DaemonLost",
    "socket_obstacle",
    "Listener",
    "socket_listener",
    "connect",
]

#: The environment variable every client reads its default address from.
ADDRESS_ENV = "FTRACED_ADDRESS"
#: The address forms, as the refusal of any other, ``ftraced --listen``'s help and the
#: clients' ``--address`` help name them.
ADDRESS_FORMS = ("unix:PATH, unix:///ABS/PATH or a path beginning with /, ./ or ../ (a unix "
                 "socket), or HOST:PORT (TCP: 127.0.0.1:50051, [::1]:50051, localhost:50051)")
#: The socket's file name in the runtime directory.
SOCKET_NAME = "ftraced.sock"
#: Largest message either side sends or accepts (a 1 MiB write fits with room to spare;
#: the daemon should use the same limit).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: Channel (and server) options shared by clients and the daemon.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)
#: sockaddr_un.sun_path holds 108 bytes including the NUL.
_UNIX_PATH_MAX = 107
#: The schemes of gRPC targets, which are no ``HOST:PORT`` (``dns:///host:port``, ...).
_GRPC_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix-abstract:", "vsock:")
#: The largest TCP port.
_PORT_MAX = 65535
#: How often a client waiting for a daemon that is still starting tries again.
_RETRY_INTERVAL = 0.05
#: How long one health check of a wait lasts before the daemon's socket is tried again: a
#: daemon that accepted a connection and then died is noticed within this, not at the
#: end of the wait (gRPC's own wait for readiness retries a refused connection).
_ANSWER_SLICE = 0.25
#: The last part of a wait for an answer, and the least time one attempt gets (a wait
#: shorter than this, ``--connect-timeout 0`` included, lasts this long when nothing
#: answers): its calls do not wait for a connection, so that one fails as soon as the
#: channel's attempt has, with gRPC's last error, which tells a server that closed the
#: connection as it accepted it from one that holds it without answering.
_LAST_ATTEMPT = 1.0


def default_address() -> str:
    """The default daemon address: a unix socket private to the user.

    ``unix:$XDG_RUNTIME_DIR/ftraced.sock`` when ``XDG_RUNTIME_DIR`` names a directory,
    otherwise ``unix:/tmp/ftraced-$UID.sock``.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return "unix:" + os.path.join(runtime, SOCKET_NAME)
    return f"unix:/tmp/ftraced-{os.getuid()}.sock"


def resolve_address(address: str | None = None) -> str:
    """The address to use: ``address`` if given, else ``$FTRACED_ADDRESS``, else the default."""
    if address:
        return address.strip()
    env = os.environ.get(ADDRESS_ENV, "").strip()
    return env or default_address()


def unix_socket_path(address: str) -> str | None:
    """The filesystem path of a unix-socket address, None for a TCP (or other) address.

    ``unix:/run/user/0/ftraced.sock`` -> ``/run/user/0/ftraced.sock``;
    ``unix:///tmp/x.sock`` -> ``/tmp/x.sock``; ``/tmp/x.sock`` -> itself;
    ``unix:rel.sock`` -> ``rel.sock`` (relative to the current directory).
    Raises ValueError for ``unix://relative``.
    """
    address = address.strip()
    if address.startswith("unix://"):
        rest = address[len("unix://"):]
        if not rest.startswith("/"):  # unix://host/... has no meaning for a local socket
            raise ValueError(f"unix URI needs an absolute path (unix:///PATH): {address!r}")
        return rest
    if address.startswith("unix:"):
        return address[len("unix:"):]
    if address.startswith("/") or address.startswith("./") or address.startswith("../"):
        return address
    return None


def host_port(address: str) -> tuple[str, int] | None:
    """The host and port of a ``HOST:PORT`` address: ``127.0.0.1:50051`` ->
    ``("127.0.0.1", 50051)``, ``[::1]:50051`` -> ``("::1", 50051)``. None for any other
    form: a unix socket, a gRPC target with a scheme, a name without a numeric port.

    Raises ValueError for a port above 65535.
    """
    address = address.strip()
    if (unix_socket_path(address) is not None or address.startswith(_GRPC_SCHEMES)
            or "://" in address):
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()):
        return None
    if int(port) > _PORT_MAX:
        raise ValueError(f"port {port} out of range (0-{_PORT_MAX}) in address {address!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def grpc_target(address: str) -> str:
    """The gRPC channel target for an address (see the module docstring for the forms):
    the one check of ``ftraced --listen`` and of every client's address.

    Raises ValueError for an empty address, one of neither form, a port above 65535, or a
    unix socket path longer than ``sun_path`` allows (107 bytes), which gRPC would reject
    with an obscure error.
    """
    address = address.strip()
    if not address:
        raise ValueError("empty daemon address")
    path = unix_socket_path(address)
    if path is None:
        if host_port(address) is None:
            raise ValueError(f"expected {ADDRESS_FORMS}, not {address!r}")
        return address
    if not path:
        raise ValueError(f"no socket path in address {address!r}")
    if len(os.fsencode(path)) > _UNIX_PATH_MAX:
        raise ValueError(
            f"unix socket path too long ({len(os.fsencode(path))} > {_UNIX_PATH_MAX} bytes): {path}"
        )
    return "unix:" + path


def with_identity(metadata: Sequence[tuple[str, Any]] | None,
                  identity: Identity) -> tuple[tuple[str, Any], ...]:
    """``metadata`` plus the identity's keys it does not already have (the caller's win)."""
    ours = identity.metadata()
    if not metadata:
        return ours
    present = {key for key, _ in metadata}
    return tuple(metadata) + tuple(item for item in ours if item[0] not in present)


class _IdentityCall:
    """A multi-callable that sends the connection's identity with every call.

    What a client interceptor would do, without its machinery (which costs a light call
    some 15% of its rate): the metadata is added to the call's own arguments.
    """

    __slots__ = ("_call", "_identity")

    def __init__(self, call: Any, identity: Callable[[], Identity]) -> None:
        self._call = call
        self._identity = identity

    def _send(self, call: Any, request: Any, timeout: float | None,
              metadata: Sequence[tuple[str, Any]] | None, kwargs: dict[str, Any]) -> Any:
        return call(request, timeout, with_identity(metadata, self._identity()), **kwargs)

    def __call__(self, request: Any, timeout: float | None = None,
                 metadata: Sequence[tuple[str, Any]] | None = None, **kwargs: Any) -> Any:
        return self._send(self._call, request, timeout, metadata, kwargs)

    def with_call(self, request: Any, timeout: float | None = None,
                  metadata: Sequence[tuple[str, Any]] | None = None, **kwargs: Any) -> Any:
        return self._send(self._call.with_call, request, timeout, metadata, kwargs)

    def future(self, request: Any, timeout: float | None = None,
               metadata: Sequence[tuple[str, Any]] | None = None, **kwargs: Any) -> Any:
        return self._send(self._call.future, request, timeout, metadata, kwargs)


class IdentityChannel(grpc.Channel):
    """A channel adding ``x-ftrace-pid``/``x-ftrace-comm`` to every call's metadata.

    ``identity`` is read at each call, so a connection's identity can change. Metadata the
    caller passes explicitly wins: a call made with ``metadata=[("x-ftrace-comm",
    "bash")]`` keeps that comm.
    """

    def __init__(self, channel: grpc.Channel, identity: Callable[[], Identity]) -> None:
        self._channel = channel
        self._identity = identity

    def unary_unary(self, *args: Any, **kwargs: Any) -> _IdentityCall:
        return _IdentityCall(self._channel.unary_unary(*args, **kwargs), self._identity)

    def unary_stream(self, *args: Any, **kwargs: Any) -> _IdentityCall:
        return _IdentityCall(self._channel.unary_stream(*args, **kwargs), self._identity)

    def stream_unary(self, *args: Any, **kwargs: Any) -> _IdentityCall:
        return _IdentityCall(self._channel.stream_unary(*args, **kwargs), self._identity)

    def stream_stream(self, *args: Any, **kwargs: Any) -> _IdentityCall:
        return _IdentityCall(self._channel.stream_stream(*args, **kwargs), self._identity)

    def subscribe(self, callback: Callable[[grpc.ChannelConnectivity], None],
                  try_to_connect: bool = False) -> None:
        self._channel.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        self._channel.unsubscribe(callback)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "IdentityChannel":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class DaemonLost(FtraceError):
    """The daemon went away while a client waited for its answer: a connection to it was
    accepted (or had answers) and its socket refuses now (ECONNREFUSED: killed, its
    socket left behind; ENOENT: stopped, its socket removed). Raised at once, where a
    daemon not started yet is waited for (:meth:`Connection.wait_ready`); ``errno`` is
    the refusal's; its status is a lost connection's (UNAVAILABLE), so that
    ``clients.cli.error_text`` words it as any other."""

    def __init__(self, number: int, address: str) -> None:
        super().__init__(number, f"ftraced at {address} went away", from_kernel=False,
                         code=grpc.StatusCode.UNAVAILABLE)
        self.address = address


class Connection:
    """A channel to ftraced with the typed stubs.

    Attributes:
      address: the address as resolved (``unix:...`` or ``host:port``).
      target: the gRPC target string.
      identity: the :class:`Identity` sent with every call (assignable).
      channel: the channel that sends the identity (use it to build other stubs).
      tracefs, modules, kernel, tracer: ``ftrace.v1`` stubs.
      health: the ``grpc.health.v1.Health`` stub.

    Usable as a context manager (closes the channel on exit).
    """

    def __init__(
        self,
        address: str | None = None,
        identity: Identity | None = None,
        *,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.address = resolve_address(address)
        self.target = grpc_target(self.address)
        self.identity = identity if identity is not None else Identity()
        self._raw_channel = grpc.insecure_channel(
            self.target, options=list(CHANNEL_OPTIONS) + list(options)
        )
        self.channel = IdentityChannel(self._raw_channel, lambda: self.identity)
        self.tracefs = tracefs_pb2_grpc.TracefsStub(self.channel)
        self.modules = modules_pb2_grpc.ModulesStub(self.channel)
        self.kernel = kernel_pb2_grpc.KernelStub(self.channel)
        self.tracer = tracer_pb2_grpc.TracerStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self._closed = False

    def wait_ready(self, timeout: float | None = None, *, answered: bool = False) -> None:
        """Block until the daemon answers, for at most ``timeout`` seconds.

        A daemon still starting (``ftraced &`` and a client at once) has no socket yet, or
        one not yet listening: while a connection fails with ENOENT or ECONNREFUSED it is
        tried again until the deadline, then raises ``FtraceError`` (``from_kernel``
        False, ``syscall`` "connect") with that errno. A failure no daemon could end (the
        socket's directory missing, a file that is no socket, EACCES...) raises at once,
        as does a connect that timed out (ETIMEDOUT, ``syscall`` "connect": a TCP address
        dropping SYNs, a unix socket whose backlog is full); an address that accepts but
        does not answer raises ETIMEDOUT (no ``syscall``) at the deadline, or ECONNRESET
        when it closed each connection as it accepted it (ftraced past --max-connections).

        A daemon that went away is not waited for: once a connection was accepted, a
        refusal raises :class:`DaemonLost` at once, and so does any refusal with
        ``answered`` (the caller knows the daemon answered another connection of its own:
        a stress worker started by a run under way).
        """
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout

        def remaining() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        def attempt() -> float | None:
            """The time an attempt gets: what is left, and at least what is left of the
            wait's first _LAST_ATTEMPT seconds."""
            left = remaining()
            return None if left is None else max(left, _LAST_ATTEMPT - (time.monotonic() - started))

        while (refusal := _refusal(self.address, attempt())) is not None:
            if answered and refusal != errno.ETIMEDOUT:
                raise DaemonLost(refusal, self.address)
            left = remaining()
            if left == 0.0 or not _may_come(self.address, refusal):
                raise FtraceError(refusal, f"ftraced at {self.address}", syscall="connect",
                                  from_kernel=False)
            time.sleep(_RETRY_INTERVAL if left is None else min(_RETRY_INTERVAL, left))
        # Accepted: a daemon is there. A health check that waits for the connection,
        # rather than channel_ready_future, whose polling thread would hold up close() by
        # a fraction of a second; in slices, between which the socket is tried again:
        # gRPC's wait would retry a daemon that died meanwhile until the deadline. (A
        # slice is also a deadline gRPC can take: its deadline is time.time() + timeout,
        # which overflows into the past beyond about 7e9 s.) The wait's last part
        # (_LAST_ATTEMPT) is a call that does not wait for the connection, until one
        # failed (then the calls wait again: one that does not would fail at once, again
        # and again): why the wait fails is known by its deadline, not a call after it.
        # A probe that timed out is no refusal: the call has the last word.
        last_failed = closed = False  # closed: the server closed it, as the last part's call told
        while True:
            left = remaining()
            last = not last_failed and left is not None and left <= _LAST_ATTEMPT
            try:
                self.health.Check(health_pb2.HealthCheckRequest(),
                                  timeout=attempt() if last
                                  else _ANSWER_SLICE if left is None
                                  else min(left, _ANSWER_SLICE),
                                  wait_for_ready=not last)
                return
            except grpc.RpcError as error:
                if last and error.code() == grpc.StatusCode.UNAVAILABLE:
                    last_failed, closed = True, _closed_at_once(error)
                elif error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise FtraceError.from_rpc(error) from None
            if (refusal := _refusal(self.address, remaining())) not in (None, errno.ETIMEDOUT):
                raise DaemonLost(refusal, self.address)
            if remaining() == 0.0:
                raise FtraceError(
                    errno.ECONNRESET if closed else errno.ETIMEDOUT,
                    f"ftraced at {self.address} not ready after {timeout}s",
                    from_kernel=False,
                )

    def check_health(self, service: str = "", timeout: float | None = 5.0) -> bool:
        """True when the health service reports SERVING for ``service`` ("" = the server)."""
        with translate_rpc_errors():
            response = self.health.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        return response.status == health_pb2.HealthCheckResponse.SERVING

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._raw_channel.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Connection({self.address!r}, identity={self.identity})"


def _closed_at_once(error: grpc.RpcError) -> bool:
    """Whether a call that did not wait for its connection (UNAVAILABLE) failed because
    the server took the connection and closed it at once, as ftraced does past its
    ``--max-connections``, where a wait for the connection ends only in a timeout.

    How gRPC's last error says so depends on which came first, the close or the
    client's first bytes: a read or write that met the close (ECONNRESET, EPIPE), or,
    when the client had nothing unread on the server's side, the end of file, "Socket
    closed" with no errno (1 client in 20 under load said "Connection timed out" when
    only the errnos counted)."""
    details = error.details() or ""
    numbers = {int(n) for n in re.findall(r"\((\d+)\)", details)}
    return bool(numbers & {errno.ECONNRESET, errno.EPIPE}) or details.endswith(": Socket closed")


def _refusal(address: str, timeout: float | None) -> int | None:
    """The errno of a plain connection to ``address`` that failed (ETIMEDOUT when it
    timed out), None when it was accepted (or the host name does not resolve: gRPC's own
    wait has the last word).

    gRPC retries a failed connection until its deadline, so without this a socket that
    does not exist would be reported, after the whole timeout, as a timeout.
    """
    path = unix_socket_path(address)
    # A timeout of 0 would make the socket non-blocking (EINPROGRESS): the last try of a
    # wait gets as long as any.
    timeout = _RETRY_INTERVAL if timeout == 0.0 else timeout
    try:
        if path is not None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(timeout)
                probe.connect(path)
        else:  # HOST:PORT, the only other form a Connection takes
            socket.create_connection(host_port(address), timeout=timeout).close()
    except socket.gaierror:
        return None
    except TimeoutError:  # socket.timeout has no errno; the kernel's own is ETIMEDOUT
        return errno.ETIMEDOUT
    except OSError as error:
        return error.errno
    return None


#: What a file at a socket's path is, when it is no socket.
_FILE_KINDS = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
               (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"))


def socket_obstacle(address: str) -> str | None:
    """Why no daemon could ever listen at the unix socket ``address`` names, in words
    (``a regular file, not a socket``; ``no directory /tmp/nodir``; ``Not a
    directory``: a file where the path has a directory), or
    None: a socket there (listening or not), a path free in a directory that exists, a
    TCP address. ftraced, which would not replace a file of another kind either, gives
    the same words when it cannot listen there."""
    path = unix_socket_path(address)
    if path is None:
        return None
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        directory = os.path.dirname(path) or "."
        return None if os.path.isdir(directory) else f"no directory {directory}"
    except OSError as error:
        return os.strerror(error.errno)
    if stat.S_ISSOCK(mode):
        return None
    kind = next((kind for test, kind in _FILE_KINDS if test(mode)), "no socket")
    return f"{kind}, not a socket"


#: ``struct ucred`` (pid, uid, gid), what SO_PEERCRED gives.
_UCRED = struct.Struct("iII")
#: The /proc/PID/stat states of a stopped process (fs/proc/array.c, task_state_array):
#: ``T (stopped)`` by a signal (SIGSTOP, SIGTSTP...), ``t (tracing stop)`` by its tracer.
_STOPPED = {"T": "stopped", "t": "stopped by its tracer"}
#: The states of a process that has ended (zombie, dead): its files are closed, so a
#: socket it listened on is held by another process (one it forked) or by none.
_ENDED = ("Z", "X")


@dataclass(frozen=True)
class Listener:
    """The process that listens on a unix socket: its pid, its comm and its state, as
    /proc/PID/stat gives them."""

    pid: int
    comm: str
    state: str

    @property
    def stopped(self) -> str | None:
        """How it is stopped (``stopped``, ``stopped by its tracer``), None when it runs."""
        return _STOPPED.get(self.state)

    def __str__(self) -> str:
        return f"{self.comm}[{self.pid}]"


def socket_listener(address: str) -> Listener | None:
    """The process listening on the unix socket ``address`` names: the pid that comes
    with a connection to it (SO_PEERCRED: the credentials of the process that called
    listen(), which net/unix/af_unix.c's unix_stream_connect() copies to the connecting
    socket before anything accepts it), with its comm and state from /proc/PID/stat.

    The connection is made without waiting (a listener whose backlog is full refuses it:
    EAGAIN) and closed unanswered. None when no pid can be had: a TCP address, a socket
    that does not take the connection, a listener in another pid namespace (pid 0), one
    that has ended (its socket held by a process it forked)."""
    path = unix_socket_path(address)
    if path is None:
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.setblocking(False)
            probe.connect(path)
            pid, _, _ = _UCRED.unpack(probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                       _UCRED.size))
    except OSError:
        return None
    found = process_comm_and_state(pid) if pid > 0 else None
    if found is None or found[1] in _ENDED:
        return None
    return Listener(pid, *found)


def _may_come(address: str, number: int) -> bool:
    """Whether a daemon still starting could end a connection's failure ``number``: its
    socket not made yet (in a directory that exists), or made but not listening yet (a
    socket file, or a TCP port)."""
    return number in (errno.ENOENT, errno.ECONNREFUSED) and socket_obstacle(address) is None


def connect(
    address: str | None = None,
    identity: Identity | None = None,
    *,
    wait: float | None = None,
    answered: bool = False,
    options: Sequence[tuple[str, Any]] = (),
) -> Connection:
    """Open a :class:`Connection` (address: argument > ``$FTRACED_ADDRESS`` > default).

    Channels connect lazily; with ``wait`` (seconds) block until the daemon answers, raising
    ``FtraceError`` otherwise, as :meth:`Connection.wait_ready` does (the channel is then
    closed; ``answered``: a refusal is the daemon gone, not one still starting).
    """
    connection = Connection(address, identity, options=options)
    if wait is not None:
        try:
            connection.wait_ready(wait, answered=answered)
        except BaseException:
            connection.close()
            raise
    return connection
