"""errno <-> gRPC status: how a kernel error travels over the control plane.

The contract (``proto/ftrace/v1/common.proto``, "ERRORS"): a failed RPC ends with a gRPC
status code mapped from the errno by :data:`ERRNO_TO_CODE`, and carries the errno itself

1. as a ``ftrace.v1.ErrnoDetail`` packed into the ``google.rpc.Status`` details (trailing
   metadata ``grpc-status-details-bin``, the standard rich-error model), and
2. as the trailing metadata key ``errno`` (:data:`ERRNO_METADATA_KEY`) holding the name.

Server side: :func:`abort_with_errno` (or the :func:`translate_kernel_errors` decorator on a
servicer method). Client side (used by ``clients.errors``): :func:`errno_detail_from_call`
and :data:`CODE_TO_ERRNO` for statuses that carry no errno.

Only the synchronous ``grpc.server`` API is supported.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import functools
import inspect
from typing import Any, Callable, Iterable, Iterator, NoReturn, Sequence, TypeVar

import grpc
from google.rpc import status_pb2

from ftrace.v1 import common_pb2
from kernel_daemon.errno import KernelError, errno_from_name, errno_name, strerror

__all__ = [
    "ERRNO_METADATA_KEY",
    "BYTES_WRITTEN_METADATA_KEY",
    "LOCK_ACQUIRED_METADATA_KEY",
    "SIGNAL_METADATA_KEY",
    "STATUS_DETAILS_METADATA_KEY",
    "ERRNO_TO_CODE",
    "CODE_TO_ERRNO",
    "status_code_for_errno",
    "errno_for_status_code",
    "errno_detail",
    "kernel_error_from_detail",
    "status_message",
    "rich_status",
    "abort_with_errno",
    "translate_kernel_errors",
    "failing_as",
    "add_trailing_metadata",
    "errno_detail_from_trailers",
    "errno_detail_from_call",
    "lock_acquisitions_from_trailers",
]

#: Trailing metadata key carrying the errno *name* ("EINVAL") of a failed call.
ERRNO_METADATA_KEY = "errno"
#: Trailing metadata key of a failed ``Tracefs.WriteFile``: bytes written before the failure.
BYTES_WRITTEN_METADATA_KEY = "x-ftrace-bytes-written"
#: Trailing metadata key of a call that changes kernel state (``Tracefs.WriteFile``,
#: ``Modules.Load``, ``Modules.Unload``), failed or not: the CLOCK_MONOTONIC times (ns,
#: space-separated) at which it acquired ftrace_lock, in order (``kernel_daemon.mutex``).
LOCK_ACQUIRED_METADATA_KEY = "x-ftrace-lock-acquired"
#: Trailing metadata key of a call that took a signal (``Kernel.Kill``) on its way out of
#: the kernel, failed or not: the signal's number ("2"). kernel.proto, Kill.
SIGNAL_METADATA_KEY = "x-ftrace-signal"
#: Where gRPC keeps the serialized ``google.rpc.Status`` (same as grpc_status's key).
STATUS_DETAILS_METADATA_KEY = "grpc-status-details-bin"

_C = grpc.StatusCode

#: errno -> gRPC status code. Several errnos share a code; the errno itself travels in the
#: status details. Any errno not listed maps to UNKNOWN.
ERRNO_TO_CODE: dict[int, grpc.StatusCode] = {
    _errno.EPERM: _C.PERMISSION_DENIED,
    _errno.ENOENT: _C.NOT_FOUND,
    _errno.ESRCH: _C.NOT_FOUND,
    _errno.EINTR: _C.CANCELLED,
    _errno.EIO: _C.INTERNAL,
    _errno.ENXIO: _C.NOT_FOUND,
    _errno.E2BIG: _C.OUT_OF_RANGE,
    _errno.ENOEXEC: _C.INVALID_ARGUMENT,
    _errno.EBADF: _C.FAILED_PRECONDITION,
    _errno.EAGAIN: _C.UNAVAILABLE,
    _errno.ENOMEM: _C.RESOURCE_EXHAUSTED,
    _errno.EACCES: _C.PERMISSION_DENIED,
    _errno.EFAULT: _C.INVALID_ARGUMENT,
    _errno.EBUSY: _C.FAILED_PRECONDITION,
    _errno.EEXIST: _C.ALREADY_EXISTS,
    _errno.ENODEV: _C.UNAVAILABLE,
    _errno.ENOTDIR: _C.FAILED_PRECONDITION,
    _errno.EISDIR: _C.FAILED_PRECONDITION,
    _errno.EINVAL: _C.INVALID_ARGUMENT,
    _errno.ENFILE: _C.RESOURCE_EXHAUSTED,
    _errno.ENOTTY: _C.FAILED_PRECONDITION,
    _errno.EFBIG: _C.OUT_OF_RANGE,
    _errno.ENOSPC: _C.RESOURCE_EXHAUSTED,
    _errno.ESPIPE: _C.FAILED_PRECONDITION,
    _errno.EROFS: _C.PERMISSION_DENIED,
    _errno.ERANGE: _C.OUT_OF_RANGE,
    _errno.ENAMETOOLONG: _C.INVALID_ARGUMENT,
    _errno.ENOSYS: _C.UNIMPLEMENTED,
    _errno.ENOTEMPTY: _C.FAILED_PRECONDITION,
    _errno.EOVERFLOW: _C.OUT_OF_RANGE,
    _errno.EOPNOTSUPP: _C.UNIMPLEMENTED,
    _errno.ETIMEDOUT: _C.DEADLINE_EXCEEDED,
    _errno.ECONNREFUSED: _C.UNAVAILABLE,
    _errno.ECANCELED: _C.CANCELLED,
}

#: gRPC status code -> the errno a client assumes when the status carries no errno (it did
#: not come from the kernel model: transport failure, deadline, cancellation, a bug).
#: UNAVAILABLE without an errno means the daemon could not be reached: ECONNREFUSED.
CODE_TO_ERRNO: dict[grpc.StatusCode, int] = {
    _C.CANCELLED: _errno.ECANCELED,
    _C.UNKNOWN: _errno.EIO,
    _C.INVALID_ARGUMENT: _errno.EINVAL,
    _C.DEADLINE_EXCEEDED: _errno.ETIMEDOUT,
    _C.NOT_FOUND: _errno.ENOENT,
    _C.ALREADY_EXISTS: _errno.EEXIST,
    _C.PERMISSION_DENIED: _errno.EPERM,
    _C.RESOURCE_EXHAUSTED: _errno.ENOMEM,
    _C.FAILED_PRECONDITION: _errno.EBUSY,
    _C.ABORTED: _errno.EAGAIN,
    _C.OUT_OF_RANGE: _errno.ERANGE,
    _C.UNIMPLEMENTED: _errno.ENOSYS,
    _C.INTERNAL: _errno.EIO,
    _C.UNAVAILABLE: _errno.ECONNREFUSED,
    _C.DATA_LOSS: _errno.EIO,
    _C.UNAUTHENTICATED: _errno.EACCES,
}

_CODE_BY_VALUE: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def status_code_for_errno(number: int) -> grpc.StatusCode:
    """The gRPC status code an errno travels as (UNKNOWN for unlisted errnos)."""
    return ERRNO_TO_CODE.get(abs(int(number)), _C.UNKNOWN)


def errno_for_status_code(code: grpc.StatusCode) -> int:
    """The errno assumed for a status code that came without an errno (0 for OK)."""
    if code == _C.OK:
        return 0
    return CODE_TO_ERRNO.get(code, _errno.EIO)


# An error's message and path travel in trailing metadata, twice (grpc-message and the
# rich status), under the client's metadata limit (8 KiB by default): texts that echo a
# caller's input (a 100 KB function name) are cut to these many characters.
MESSAGE_MAX = 256
PATH_SHOWN_MAX = 1024


def bounded(text: str, limit: int) -> str:
    """``text``, cut to ``limit`` characters with "..." in place of what was cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def errno_detail(err: KernelError) -> common_pb2.ErrnoDetail:
    """The ``ftrace.v1.ErrnoDetail`` for a kernel error (also used in-band by the streams)."""
    return common_pb2.ErrnoDetail(
        number=err.errno,
        name=err.name,
        strerror=err.strerror,
        message=bounded(err.message, MESSAGE_MAX),
        syscall=err.syscall,
        path=bounded(err.path, PATH_SHOWN_MAX),
    )


def kernel_error_from_detail(detail: common_pb2.ErrnoDetail) -> KernelError:
    """The inverse of :func:`errno_detail`."""
    return KernelError(detail.number, detail.message, syscall=detail.syscall, path=detail.path)


def status_message(err: KernelError) -> str:
    """The status' human-readable text: ``"EINVAL: Invalid argument (why)"``, its message
    cut as ErrnoDetail's is, inside the parentheses (the whole text cut lost the ")")."""
    return err.text(bounded(err.message, MESSAGE_MAX))


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def rich_status(
    err: KernelError,
    extra_metadata: Iterable[tuple[str, str | bytes]] = (),
) -> grpc.Status:
    """A ``grpc.Status`` for ``err``: code, message, google.rpc.Status details with the
    packed ErrnoDetail, the ``errno`` trailing key, and ``extra_metadata``."""
    code = status_code_for_errno(err.errno)
    message = status_message(err)
    rpc_status = status_pb2.Status(code=code.value[0], message=message)
    rpc_status.details.add().Pack(errno_detail(err))
    metadata: list[tuple[str, str | bytes]] = [
        (STATUS_DETAILS_METADATA_KEY, rpc_status.SerializeToString()),
        (ERRNO_METADATA_KEY, err.name),
    ]
    metadata.extend(extra_metadata)
    return _Status(code, message, tuple(metadata))


@contextlib.contextmanager
def failing_as(syscall: str, path: str = "") -> Iterator[None]:
    """A :class:`KernelError` raised inside names ``syscall`` as the system call that
    returned it (ErrnoDetail.syscall), and ``path`` as its file, unless it already names
    them."""
    try:
        yield
    except KernelError as err:
        err.with_context(syscall=syscall, path=path)
        raise


def _trailing_metadata_set(context: grpc.ServicerContext) -> tuple[tuple[str, Any], ...]:
    getter = getattr(context, "trailing_metadata", None)
    if callable(getter):
        try:
            return tuple(getter() or ())
        except Exception:  # pragma: no cover - older grpc or a test double
            pass
    return ()


def add_trailing_metadata(context: grpc.ServicerContext,
                          pairs: Sequence[tuple[str, str | bytes]]) -> None:
    """``context.set_trailing_metadata`` that keeps what was set before (other keys)."""
    ours = {key for key, _ in pairs}
    kept = tuple(item for item in _trailing_metadata_set(context) if item[0] not in ours)
    context.set_trailing_metadata(kept + tuple(pairs))


def abort_with_errno(
    context: grpc.ServicerContext,
    err: KernelError,
    extra_metadata: Iterable[tuple[str, str | bytes]] = (),
) -> NoReturn:
    """End the RPC with ``err``'s rich status. Never returns (``context.abort`` raises).

    Trailing metadata already set on ``context`` is kept (keys this function sets win).
    """
    status = rich_status(err, extra_metadata)
    ours = {key for key, _ in status.trailing_metadata}
    kept = tuple(item for item in _trailing_metadata_set(context) if item[0] not in ours)
    if kept:
        status = _Status(status.code, status.details, tuple(kept) + tuple(status.trailing_metadata))
    context.abort_with_status(status)
    raise AssertionError("context.abort_with_status returned")  # pragma: no cover


F = TypeVar("F", bound=Callable[..., Any])


def translate_kernel_errors(method: F) -> F:
    """Decorator for servicer methods: a :class:`KernelError` raised by the method ends the
    RPC through :func:`abort_with_errno`. Works for unary methods and for generator
    (server-/bidi-streaming) methods; the servicer method's signature is
    ``(self, request_or_iterator, context)``."""

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream_wrapper(self, request, context):
            try:
                yield from method(self, request, context)
            except KernelError as err:
                abort_with_errno(context, err)

        return stream_wrapper  # type: ignore[return-value]

    @functools.wraps(method)
    def unary_wrapper(self, request, context):
        try:
            return method(self, request, context)
        except KernelError as err:
            abort_with_errno(context, err)

    return unary_wrapper  # type: ignore[return-value]


# --- client side -------------------------------------------------------------------------


def _metadata_value(value: str | bytes) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def errno_detail_from_trailers(
    code: grpc.StatusCode | None,
    trailing_metadata: Iterable[tuple[str, str | bytes]] | None,
) -> common_pb2.ErrnoDetail | None:
    """Find the errno a failed call carried: the ErrnoDetail packed in the rich status, else
    one built from the ``errno`` trailing key. None when the status carries neither."""
    by_name: str | None = None
    for key, value in trailing_metadata or ():
        if key == STATUS_DETAILS_METADATA_KEY:
            try:
                rich = status_pb2.Status.FromString(value if isinstance(value, bytes) else value.encode())
            except Exception:
                continue
            for any_detail in rich.details:
                if any_detail.Is(common_pb2.ErrnoDetail.DESCRIPTOR):
                    detail = common_pb2.ErrnoDetail()
                    any_detail.Unpack(detail)
                    if detail.number > 0:
                        if not detail.name:
                            detail.name = errno_name(detail.number)
                        if not detail.strerror:
                            detail.strerror = strerror(detail.number)
                        return detail
        elif key == ERRNO_METADATA_KEY:
            by_name = _metadata_value(value)
    if by_name:
        try:
            number = errno_from_name(by_name)
        except ValueError:
            return None
        return common_pb2.ErrnoDetail(
            number=number, name=errno_name(number), strerror=strerror(number)
        )
    return None


def errno_detail_from_call(call: grpc.Call | grpc.RpcError) -> common_pb2.ErrnoDetail | None:
    """:func:`errno_detail_from_trailers` for a finished call or a ``grpc.RpcError``."""
    try:
        trailers = call.trailing_metadata()  # type: ignore[union-attr]
    except Exception:
        trailers = None
    try:
        code = call.code()  # type: ignore[union-attr]
    except Exception:
        code = None
    return errno_detail_from_trailers(code, trailers)


def lock_acquisitions_from_trailers(
        trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> tuple[int, ...]:
    """The ftrace_lock acquisition times a call reported (:data:`LOCK_ACQUIRED_METADATA_KEY`);
    empty when it reported none."""
    for key, value in trailing_metadata or ():
        if key == LOCK_ACQUIRED_METADATA_KEY:
            try:
                return tuple(int(word) for word in _metadata_value(value).split())
            except ValueError:
                return ()
    return ()
