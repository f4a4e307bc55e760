"""Client-side errors: the kernel's errno, recovered from a failed gRPC call.

``FtraceError`` is what every client API raises when the daemon answers with an error. It
carries the errno the kernel model returned, read from (in order):

1. the ``ftrace.v1.ErrnoDetail`` packed in the call's rich status (``google.rpc.Status``);
2. the ``errno`` trailing metadata key;
3. failing both (the error did not come from the kernel model: daemon unreachable, deadline,
   cancellation), an errno inferred from the status code — ``from_kernel`` is then False.

A shell prints ``f"bash: echo: write error: {e.strerror}"``.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import functools
from typing import Any, Callable, Iterator, NoReturn, TypeVar

import grpc

from ftrace.v1 import common_pb2
from kernel_daemon.errno import errno_name, strerror
from kernel_daemon.rpc.status import (
    BYTES_WRITTEN_METADATA_KEY,
    errno_detail_from_call,
    errno_for_status_code,
)
from kernel_daemon.teardown import REBOOTED, SHUT_DOWN

__all__ = [
    "FtraceError",
    "raise_from_rpc",
    "translate_rpc_errors",
    "wrap_rpc_errors",
]


class FtraceError(Exception):
    """A control-plane call failed with an errno.

    Attributes:
      errno: int, e.g. 22.
      errno_name: "EINVAL".
      strerror: "Invalid argument" (``os.strerror``).
      message: the daemon's free-form context ("" if none).
      syscall: the modelled system call that failed ("open", "write", ...; "" if none).
      path: the file involved ("" if none).
      code: the ``grpc.StatusCode`` (None when not built from a call).
      details: the status' text (None when not built from a call).
      from_kernel: True when the daemon said which errno (ErrnoDetail or ``errno`` key),
        False when it was inferred from the status code.
      trailing_metadata: the call's trailing metadata (tuple of pairs; empty if none).
    """

    def __init__(
        self,
        errno: int,
        message: str = "",
        *,
        syscall: str = "",
        path: str = "",
        code: grpc.StatusCode | None = None,
        details: str | None = None,
        from_kernel: bool = True,
        trailing_metadata: tuple = (),
        bytes_written: int | None = None,
    ) -> None:
        self.errno: int = abs(int(errno))
        self.message: str = message or ""
        self.syscall: str = syscall or ""
        self.path: str = path or ""
        self.code = code
        self.details = details
        self.from_kernel = from_kernel
        self.trailing_metadata = tuple(trailing_metadata or ())
        self._bytes_written = bytes_written
        super().__init__(self.errno, self.message)

    @property
    def errno_name(self) -> str:
        return errno_name(self.errno)

    @property
    def strerror(self) -> str:
        return strerror(self.errno)

    def metadata_value(self, key: str) -> str | None:
        """A trailing metadata value of the failed call, e.g. ``"x-ftrace-bytes-written"``."""
        for k, v in self.trailing_metadata:
            if k == key:
                return v.decode("ascii", "replace") if isinstance(v, bytes) else str(v)
        return None

    @property
    def kernel_gone(self) -> str | None:
        """Why the call's kernel went away, when that failed it: :data:`REBOOTED`
        (Kernel.Reboot) or :data:`SHUT_DOWN` (the daemon's stop), as the daemon's ENODEV
        says (kernel_daemon.teardown.kernel_gone); None for any other failure."""
        if self.errno == _errno.ENODEV and self.from_kernel:
            for reason in (REBOOTED, SHUT_DOWN):
                if self.message.startswith(reason):
                    return reason
        return None

    @property
    def bytes_written(self) -> int | None:
        """For a failed ``Tracefs.WriteFile``, or a Session write loop
        (``FileSession.write_all``): bytes written before the failing write."""
        if self._bytes_written is not None:
            return self._bytes_written
        value = self.metadata_value(BYTES_WRITTEN_METADATA_KEY)
        return int(value) if value is not None and value.isdigit() else None

    @classmethod
    def from_detail(cls, detail: common_pb2.ErrnoDetail, **kwargs: Any) -> "FtraceError":
        """From an ``ErrnoDetail`` (the in-band errors of Tracefs.Session / Tracer.Attach)."""
        return cls(
            detail.number,
            detail.message,
            syscall=detail.syscall,
            path=detail.path,
            **kwargs,
        )

    @classmethod
    def from_rpc(cls, error: grpc.RpcError) -> "FtraceError":
        """From a failed call (a ``grpc.RpcError``, which is also a ``grpc.Call``)."""
        try:
            code = error.code()  # type: ignore[attr-defined]
        except Exception:
            code = grpc.StatusCode.UNKNOWN
        try:
            details = error.details()  # type: ignore[attr-defined]
        except Exception:
            details = None
        try:
            trailers = tuple(error.trailing_metadata() or ())  # type: ignore[attr-defined]
        except Exception:
            trailers = ()
        detail = errno_detail_from_call(error)
        if detail is not None:
            return cls.from_detail(detail, code=code, details=details, trailing_metadata=trailers)
        number = errno_for_status_code(code) if code is not None else 0
        if number == 0:  # an RpcError with code OK should not exist; treat as EIO
            number = _errno.EIO
        return cls(
            number,
            details or "",
            code=code,
            details=details,
            from_kernel=False,
            trailing_metadata=trailers,
        )

    def __str__(self) -> str:
        text = f"{self.errno_name}: {self.strerror}"
        if self.message and self.message != self.strerror:
            text += f" ({self.message})"
        return text

    def __repr__(self) -> str:
        return (
            f"FtraceError({self.errno_name}, {self.message!r}, syscall={self.syscall!r}, "
            f"path={self.path!r}, code={self.code}, from_kernel={self.from_kernel})"
        )

    def __reduce__(self):
        return (
            _rebuild,
            (self.errno, self.message, self.syscall, self.path, self.from_kernel),
        )


def _rebuild(errno: int, message: str, syscall: str, path: str, from_kernel: bool) -> FtraceError:
    return FtraceError(errno, message, syscall=syscall, path=path, from_kernel=from_kernel)


def raise_from_rpc(error: grpc.RpcError) -> NoReturn:
    """Raise the :class:`FtraceError` for a failed call, chained to it."""
    raise FtraceError.from_rpc(error) from error


@contextlib.contextmanager
def translate_rpc_errors() -> Iterator[None]:
    """``with translate_rpc_errors(): stub.Call(...)`` — RpcError becomes FtraceError.

    Also covers iterating a response stream inside the block.
    """
    try:
        yield
    except grpc.RpcError as error:
        raise_from_rpc(error)


F = TypeVar("F", bound=Callable[..., Any])


def wrap_rpc_errors(function: F) -> F:
    """Decorator form of :func:`translate_rpc_errors` (for plain, non-generator functions)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with translate_rpc_errors():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
