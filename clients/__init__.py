"""The ftrace-sim client library and client programs.

- ``clients.connection``: addresses, ``connect()``, the ``Connection`` with typed stubs.
- ``clients.identity``: ``Identity(pid, comm)`` sent as call metadata.
- ``clients.errors``: ``FtraceError`` (the kernel's errno from a failed call).

Client programs (``clients.shell``, ``clients.tracer``, ...) are modules of this package.
"""

from clients.connection import Connection, connect, default_address, resolve_address
from clients.errors import FtraceError, raise_from_rpc, translate_rpc_errors
from clients.identity import Identity

__all__ = [
    "Connection",
    "connect",
    "default_address",
    "resolve_address",
    "FtraceError",
    "raise_from_rpc",
    "translate_rpc_errors",
    "Identity",
]
