"""The daemon's gRPC layer: servicers translating ``ftrace.v1`` messages into kernel calls.

- ``status``: errno <-> gRPC status (``abort_with_errno``, ``translate_kernel_errors``).
- Servicer modules (one per service of ``proto/ftrace/v1``) live beside it.

This ``__init__`` deliberately imports nothing, so clients can use
``kernel_daemon.rpc.status`` without loading the daemon.
"""
