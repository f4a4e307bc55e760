"""Where the daemon listens: binding a gRPC server to ``unix:PATH`` or ``HOST:PORT`` so
that a second daemon on the same address fails with EADDRINUSE instead of taking it over
(gRPC unlinks whatever is at a socket's path, and sets SO_REUSEPORT, by default)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
from typing import Any, Callable, Iterator

import grpc

from clients.connection import grpc_target, host_port, unix_socket_path


def _in_use() -> OSError:
    return OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))


def _lock(path: str) -> int:
    """The descriptor of ``path``, created and locked (flock) until the server releases
    it; EADDRINUSE when another server on the same socket path holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # The server we waited for may have unlinked the file after we opened it: the
            # path is then another file, which a third server could lock. Take that one.
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except BlockingIOError:
            os.close(fd)
            raise _in_use() from None
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _remove_stale_socket(path: str) -> None:
    """Remove the socket a killed server left at ``path``; EADDRINUSE when a server
    answers there, or when the file is not a socket (not ours to remove: bind(2) would
    fail on it the same way)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(mode):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except ConnectionRefusedError:
                os.unlink(path)
                return
    raise _in_use()


@contextlib.contextmanager
def _stderr_discarded() -> Iterator[None]:
    """File descriptor 2 goes to /dev/null: gRPC's core logs a failed bind there itself,
    in lines of its own, beside the one-line error the caller reports."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


#: A socket address gRPC binds, as (family, sockaddr).
SocketAddress = tuple[socket.AddressFamily, Any]


def _add_port(server: grpc.Server, address: str,
              bound: Callable[[], list[SocketAddress]]) -> int:
    """``server.add_insecure_port(address)``, which binds at once. gRPC says only that it
    failed: the OSError raised then is that of plain sockets bound as gRPC binds, to each
    of ``bound()`` (socket.gaierror for a host name that does not resolve)."""
    try:
        with _stderr_discarded():
            port = server.add_insecure_port(address)
    except RuntimeError:  # "Failed to bind to address ..."
        port = 0
    if port:
        return port
    for family, sockaddr in bound():
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            if family != socket.AF_UNIX:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(sockaddr)
        if family == socket.AF_UNIX:
            os.unlink(sockaddr)
    raise OSError(errno.EADDRNOTAVAIL, "gRPC could not bind it")


class Listener:
    """A server's listening address, and what it holds for a unix socket: the socket file,
    and the lock that makes the path its own (``PATH.lock``), which :meth:`close` removes.

    gRPC unlinks whatever is at a unix socket's path before it binds, so two servers
    started on one path would each take it from the other. The lock lets only one bind;
    a server that answers on the path (one that does not lock) is asked first.
    """

    def __init__(self, server: grpc.Server, address: str) -> None:
        """Bind ``server`` to ``address`` (``unix:PATH`` or ``HOST:PORT``). Raises
        ValueError for another form, a port above 65535 or a path too long, and OSError
        when it cannot bind: EADDRINUSE when another server listens there, ENOENT, ..."""
        grpc_target(address)  # the checks of a client's address
        self.socket_path = unix_socket_path(address)
        self._lock_fd: int | None = None
        if self.socket_path is not None:
            self.address = address
            self._bind_unix(server, self.socket_path)
            return
        tcp = host_port(address)
        assert tcp is not None  # grpc_target() refused any other form
        host, port = tcp
        port = _add_port(server, address, lambda: [
            (info[0], info[4]) for info in socket.getaddrinfo(
                host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)])
        # The port bound: another than the address's when that was 0 (any free port).
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _bind_unix(self, server: grpc.Server, path: str) -> None:
        self._lock_fd = _lock(path + ".lock")
        try:
            _remove_stale_socket(path)
            # Created 0600 (umask while binding), so only the owner can connect.
            old_umask = os.umask(0o177)
            try:
                _add_port(server, f"unix:{path}", lambda: [(socket.AF_UNIX, path)])
            finally:
                os.umask(old_umask)
        except BaseException:
            self._release_lock()
            raise

    def _release_lock(self) -> None:
        if self._lock_fd is not None and self.socket_path is not None:
            # Unlinked while still locked: a server that opened it meanwhile sees that.
            os.unlink(self.socket_path + ".lock")
            os.close(self._lock_fd)
            self._lock_fd = None

    def close(self) -> None:
        """Remove the socket file and the lock (the server has stopped). Idempotent."""
        if self._lock_fd is not None and self.socket_path is not None:
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass
        self._release_lock()
