"""How the kernel reads the text user space writes to it (3.6): ``isspace()``
(lib/ctype.c), ``skip_spaces()`` and ``strim()`` (lib/string.c), ``hex_to_bin()``
(lib/hexdump.c), ``kstrtoul()``, ``kstrtoul_from_user()`` and ``kstrtol()``
(lib/kstrtox.c) and ``simple_strtoul()`` (lib/vsprintf.c), all on lib/kstrtox.c's
``_parse_integer()``.

The written bytes are the kernel's ``char``s, copied into a buffer that a NUL ends, so
every C string function stops at the first NUL byte (:func:`c_string`). Python's own
``str.strip()`` and ``str.isdigit()`` differ at the edges: they take Unicode spaces
and digits (``"\\x1c"``, ``"\\x85"``, ``"²"``), where the kernel takes ASCII digits and
the seven bytes of its ``_S`` class.
"""

from __future__ import annotations

import errno
import re
from typing import AnyStr

from kernel_daemon.errno import KernelError

#: ``isspace()``: the ``_S`` class of lib/ctype.c's ``_ctype[]``: \\t \\n \\v \\f \\r,
#: the space, and 0xA0 (Latin-1's no-break space, ``_S|_SP`` at 160).
KERNEL_SPACES = b"\t\n\v\f\r \xa0"
#: One isspace() byte, as a regular expression.
ISSPACE_CLASS = b"[" + re.escape(KERNEL_SPACES) + b"]"
_LEADING_SPACES = re.compile(ISSPACE_CLASS + b"*")
#: ULONG_MAX and LONG_MAX on x86_64 (where long is long long).
ULONG_MAX = (1 << 64) - 1
LONG_MAX = (1 << 63) - 1
# kstrto_from_user()'s buffer for an unsigned long: "sign, base 2 representation,
# newline, terminator"; at most sizeof(buf) - 1 bytes are copied from user space.
_KSTRTOUL_BUF = 1 + 64 + 1 + 1
_HEX_DIGITS = b"0123456789abcdef"


def c_string(data: AnyStr) -> AnyStr:
    """What a C string function sees in a NUL-terminated copy of ``data``: the part
    before its first NUL.  A ``str`` is text decoded from the bytes a char each
    (latin-1), as the filter files' tokens are."""
    if isinstance(data, str):
        return data.partition("\0")[0]
    return data.partition(b"\0")[0]


def skip_spaces(data: bytes | memoryview) -> int:
    """``skip_spaces()``: how many isspace() bytes ``data`` starts with (a NUL is not one).
    A match, not ``lstrip()``: that would copy the rest of a write's user buffer."""
    match = _LEADING_SPACES.match(data)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def strim(data: bytes) -> bytes:
    """``strim()`` (``strstrip()``): leading and trailing isspace() removed."""
    return c_string(data).strip(KERNEL_SPACES)


def hex_to_bin(ch: int) -> int:
    """``hex_to_bin()``: the value of an ASCII hex digit, -1 for any other byte (so
    ``hex_to_bin(ch) >= 0`` is the kernel's ``isxdigit()``: ASCII only)."""
    return _HEX_DIGITS.find(bytes((ch,)).lower())


def _parse_integer(s: bytes, base: int) -> tuple[int, int, bool]:
    """``_parse_integer()``: the digits of ``base`` that start the C string ``s``.

    Returns their value modulo 2**64 (the ``unsigned long long`` wraps), how many digits
    there are, and whether the value overflowed (``KSTRTOX_OVERFLOW``).
    """
    res = rv = 0
    for ch in c_string(s):
        val = hex_to_bin(ch)
        if not 0 <= val < base:
            break
        res = res * base + val
        rv += 1
    return res & ULONG_MAX, rv, res > ULONG_MAX


def _kstrtoull(text: bytes, base: int) -> int:
    """``_kstrtoull(s, base)`` of the C string ``text``: digits of ``base``, an optional
    newline, nothing else (EINVAL); ERANGE above ULLONG_MAX. ``base`` is 10, or 0 for
    the base the prefix picks (``_parse_integer_fixup_radix``: ``0x`` hex, ``0`` octal).
    """
    start = 0
    if base == 0:
        start, base = _parse_integer_fixup_radix(text)
    value, digits, overflow = _parse_integer(text[start:], base)
    if overflow:
        raise KernelError(errno.ERANGE)
    if not digits:
        raise KernelError(errno.EINVAL)
    rest = text[start + digits:]
    if rest[:1] == b"\n":
        rest = rest[1:]
    if rest:
        raise KernelError(errno.EINVAL)
    return value


def kstrtoul_from_user(data: bytes) -> int:
    """``kstrtoul_from_user(buf, count, 10, &val)``: :func:`kstrtoul` in base 10 of the
    first ``sizeof(buf) - 1`` = 66 bytes, as many as the kernel copies."""
    return kstrtoul(data[:_KSTRTOUL_BUF - 1], 10)


def kstrtoul(s: bytes, base: int) -> int:
    """``kstrtoul(s, base, &res)`` (3.6's ``strict_strtoul`` is the same function): an
    optional ``+``, then :func:`_kstrtoull`; ERANGE above ULONG_MAX."""
    text = c_string(s)
    if text[:1] == b"+":  # kstrtoull()
        text = text[1:]
    return _kstrtoull(text, base)


def kstrtol(s: bytes, base: int) -> int:
    """``kstrtol(s, base, &res)`` (``strict_strtol`` in 3.6), which is ``kstrtoll`` on
    x86_64: an optional ``-`` or ``+``, then :func:`_kstrtoull`; ERANGE outside ``long``.

    3.6's ``kstrtoll`` rejects ``-0`` too: it tests ``(long long)(-tmp) >= 0`` (ERANGE),
    which later kernels relaxed to ``> 0``.
    """
    s = c_string(s)
    if s[:1] == b"-":
        value = _kstrtoull(s[1:], base)
        if not 0 < value <= LONG_MAX + 1:
            raise KernelError(errno.ERANGE)
        return -value
    value = kstrtoul(s, base)  # kstrtoull() skips a '+'
    if value > LONG_MAX:
        raise KernelError(errno.ERANGE)
    return value


def _parse_integer_fixup_radix(s: bytes) -> tuple[int, int]:
    """``_parse_integer_fixup_radix(s, &base)`` with base 0: ``0x`` (or ``0X``) and a hex
    digit is hex, the prefix skipped; any other leading ``0`` is octal (``0x`` alone
    reads as the octal ``0``); anything else decimal.  Returns (bytes skipped, base)."""
    if s[:1] != b"0":
        return 0, 10
    if s[1:2].lower() == b"x" and len(s) > 2 and hex_to_bin(s[2]) >= 0:
        return 2, 16
    return 0, 8


def simple_strtoul(cp: bytes) -> tuple[int, int]:
    """``simple_strtoul(cp, &endp, 0)``: the number that starts the C string ``cp``, in
    the base its prefix picks; no overflow check, the value wraps modulo 2**64.

    Returns (value, ``endp - cp``: the bytes it read, 0 if ``cp`` starts with no digit).
    """
    start, base = _parse_integer_fixup_radix(cp)
    value, rv, _ = _parse_integer(cp[start:], base)
    return value, start + rv
