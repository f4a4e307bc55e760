"""Kernel error numbers: the ``-EINVAL`` a kernel path returns, as a Python exception.

A kernel function in the model fails by raising :class:`KernelError` with the errno the
kernel would return (``raise KernelError(errno.EINVAL, f"no function {quoted(name)}")``).
A name a message shows goes through :func:`quoted`, so every message shows names alike.
The RPC layer (``kernel_daemon.rpc.status``) turns it into a gRPC status carrying the errno;
clients turn that back into ``clients.errors.FtraceError``.

Values are Linux's, taken from Python's :mod:`errno` module (the daemon runs on Linux), so
``errno.ENODEV`` here is the kernel's 19.

This module imports nothing but the standard library (``import errno`` below is the standard
module: absolute imports).
"""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "KernelError",
    "errno_name",
    "errno_from_name",
    "strerror",
    "quoted",
]

# errno.errorcode picks one name for aliased values; prefer the names the kernel and
# glibc's documentation use.
_PREFERRED_NAMES: dict[int, str] = {
    _errno.EAGAIN: "EAGAIN",  # == EWOULDBLOCK
    _errno.EDEADLK: "EDEADLK",  # == EDEADLOCK
    _errno.EOPNOTSUPP: "EOPNOTSUPP",  # == ENOTSUP on Linux
}


def errno_name(number: int) -> str:
    """The symbolic name of an errno value: ``errno_name(22) == "EINVAL"``.

    Unknown values give ``"E<number>"`` (``"E999"``), never an exception.
    """
    number = abs(int(number))
    name = _PREFERRED_NAMES.get(number) or _errno.errorcode.get(number)
    return name if name else f"E{number}"


def errno_from_name(name: str) -> int:
    """The errno value of a symbolic name: ``errno_from_name("EINVAL") == 22``.

    Accepts the ``"E<number>"`` form :func:`errno_name` produces for unknown values.
    Raises :class:`ValueError` for anything else.
    """
    name = name.strip().upper()
    value = getattr(_errno, name, None)
    if isinstance(value, int) and name.startswith("E"):
        return value
    if name.startswith("E") and name[1:].isdigit():
        return int(name[1:])
    raise ValueError(f"unknown errno name {name!r}")


def strerror(number: int) -> str:
    """``strerror(3)`` text as glibc prints it: ``strerror(22) == "Invalid argument"``."""
    return os.strerror(abs(int(number)))


# C's escapes: the quote, the backslash, and the control characters with a letter of their own.
_C_ESCAPES = {"\\": "\\\\", '"': '\\"', "\a": "\\a", "\b": "\\b", "\t": "\\t",
              "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r"}


def _c_escape(ch: str) -> str:
    if ch in _C_ESCAPES:
        return _C_ESCAPES[ch]
    if ch.isprintable():
        return ch
    code = ord(ch)
    return f"\\{code:03o}" if code < 0o400 else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def quoted(name: str) -> str:
    """``name`` (a function, module, pattern, failpoint...) as a message shows it: in
    double quotes, with C's escapes for a quote, a backslash and what does not print
    (``"a\\000b"`` for a name holding a NUL), so the message says exactly what was asked
    for and stays one printable line.  The one quoting of the daemon's messages (not
    Python's repr(), whose quotes change with the name's own)."""
    return '"' + "".join(map(_c_escape, name)) + '"'


class KernelError(Exception):
    """A kernel path failed with an errno, like a kernel function returning ``-errno``.

    ``KernelError(errno.EINVAL)`` or ``KernelError(errno.EINVAL, "why")``. Optional keyword
    context travels to the client in ``ftrace.v1.ErrnoDetail``: ``syscall`` ("open",
    "write", ...: which system call returned the error, so a shell can print bash's exact
    message) and ``path``.

    Attributes: ``errno`` (int), ``name`` ("EINVAL"), ``strerror`` ("Invalid argument"),
    ``message`` (str, may be empty), ``syscall``, ``path``.
    """

    def __init__(
        self,
        errno: int,
        message: str | None = None,
        *,
        syscall: str = "",
        path: str = "",
    ) -> None:
        number = int(errno)
        if number < 0:  # accept the kernel's -EINVAL spelling
            number = -number
        if number == 0:
            raise ValueError("KernelError needs a non-zero errno")
        self.errno: int = number
        self.message: str = message or ""
        self.syscall: str = syscall or ""
        self.path: str = path or ""
        super().__init__(number, self.message)

    @property
    def name(self) -> str:
        return errno_name(self.errno)

    @property
    def strerror(self) -> str:
        return strerror(self.errno)

    @classmethod
    def from_name(cls, name: str, message: str | None = None, **kwargs: str) -> "KernelError":
        """``KernelError.from_name("ENODEV")``."""
        return cls(errno_from_name(name), message, **kwargs)

    def with_context(self, *, syscall: str | None = None, path: str | None = None,
                     message: str | None = None) -> "KernelError":
        """Fill in ``syscall``/``path``/``message`` where still empty (returns ``self``,
        for re-raising)."""
        if message and not self.message:
            self.message = message
            self.args = (self.errno, message)
        if syscall and not self.syscall:
            self.syscall = syscall
        if path and not self.path:
            self.path = path
        return self

    def __str__(self) -> str:
        return self.text(self.message)

    def text(self, message: str) -> str:
        """``NAME: strerror``, then `` (message)`` when there is one: the error as the
        daemon's status says it (with its message, or a shorter one)."""
        text = f"{self.name}: {self.strerror}"
        return f"{text} ({message})" if message else text

    def __repr__(self) -> str:
        extra = "".join(
            f", {key}={value!r}"
            for key, value in (("syscall", self.syscall), ("path", self.path))
            if value
        )
        return f"KernelError(errno.{self.name}, {self.message!r}{extra})"

    def __reduce__(self):  # picklable across processes despite keyword-only fields
        return (_rebuild, (self.errno, self.message, self.syscall, self.path))


def _rebuild(number: int, message: str, syscall: str, path: str) -> KernelError:
    return KernelError(number, message, syscall=syscall, path=path)
