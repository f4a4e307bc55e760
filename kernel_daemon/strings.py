"""How the kernel reads the text user space writes to it (3.6): ``isspace()``
(lib/ctype.c), ``strim()`` (lib/string.c), ``kstrtoul_from_user()`` (lib/kstrtox.c).

The written bytes are the kernel's ``char``s, copied into a buffer that a NUL ends, so
every C string function stops at the first NUL byte (:func:`c_string`). Python's own
``str.strip()`` and ``str.isdigit()`` differ at the edges: they take Unicode spaces
and digits (``"\\x1c"``, ``"\\x85"``, ``"²"``), where the kernel takes ASCII digits and
the seven bytes of its ``_S`` class.
"""

from __future__ import annotations

import errno

from kernel_daemon.errno import KernelError

#: ``isspace()``: the ``_S`` class of lib/ctype.c's ``_ctype[]``: \\t \\n \\v \\f \\r,
#: the space, and 0xA0 (Latin-1's no-break space, ``_S|_SP`` at 160).
KERNEL_SPACES = b"\t\n\v\f\r \xa0"
#: ULONG_MAX on x86_64.
ULONG_MAX = (1 << 64) - 1
# kstrto_from_user()'s buffer for an unsigned long: "sign, base 2 representation,
# newline, terminator"; at most sizeof(buf) - 1 bytes are copied from user space.
_KSTRTOUL_BUF = 1 + 64 + 1 + 1
_DIGITS = b"0123456789"


def c_string(data: bytes) -> bytes:
    """The bytes a C string function sees in a NUL-terminated copy of ``data``."""
    end = data.find(b"\0")
    return data if end < 0 else data[:end]


def strim(data: bytes) -> bytes:
    """``strim()`` (``strstrip()``): leading and trailing isspace() removed."""
    return c_string(data).strip(KERNEL_SPACES)


def kstrtoul_from_user(data: bytes) -> int:
    """``kstrtoul_from_user(buf, count, 10, &val)``: an optional ``+``, decimal digits,
    an optional newline, nothing else (EINVAL); ERANGE above ULONG_MAX.

    Only the first ``sizeof(buf) - 1`` = 66 bytes are read, as the kernel copies them.
    """
    text = c_string(data[:_KSTRTOUL_BUF - 1])
    if text[:1] == b"+":  # kstrtoull()
        text = text[1:]
    digits = len(text) - len(text.lstrip(_DIGITS))  # _parse_integer()
    if not digits:
        raise KernelError(errno.EINVAL)
    value = int(text[:digits])
    if value > ULONG_MAX:
        raise KernelError(errno.ERANGE)
    rest = text[digits:]
    if rest[:1] == b"\n":
        rest = rest[1:]
    if rest:
        raise KernelError(errno.EINVAL)
    return value
