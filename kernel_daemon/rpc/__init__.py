"""The daemon's gRPC layer: servicers translating ``ftrace.v1`` messages into kernel calls.

- ``status``: errno <-> gRPC status (``abort_with_errno``, ``translate_kernel_errors``).
- ``readers``: threads reading Attach streams, kept for the next stream (both ends).
- Servicer modules (one per service of ``proto/ftrace/v1``) live beside it.

This ``__init__`` deliberately imports nothing, so clients can use
``kernel_daemon.rpc.status`` and ``kernel_daemon.rpc.readers`` without loading the daemon.
"""
