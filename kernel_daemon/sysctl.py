"""How a ``/proc/sys`` file of one number takes a write and serves a read:
``proc_dointvec()`` of kernel/sysctl.c (3.6), for a table whose ``maxlen`` is
``sizeof(int)``, and ``proc_doulongvec_minmax()`` for one ``unsigned long`` (the
``tainted`` file's ``proc_taint()``).  A read gets the number and a newline, at offset 0
only.

The written bytes (at most ``PAGE_SIZE - 1`` of them) are copied into a page that a NUL
ends.  Spaces are skipped, one number is read (an optional ``-``, then
``simple_strtoul()`` in base 0: ``0x10`` is 16, ``010`` is 8), a space, tab, newline or
the end of the data must follow it, and the spaces after it are skipped too.  What is
left after that is no error: the write returns only the bytes it consumed, a short
write, and the writer writes the rest again, which is parsed on its own (``"1 junk"``
sets 1, then ``"junk"`` is EINVAL).  There is no range check: the ``unsigned long`` is
cut to a C ``int``.

A NUL byte among the written ones stays in the page and still counts in ``left``, but
every C string function stops at it: ``skip_spaces()`` does not skip it, and it is no
separator after a number.  So ``"1\\0"`` is EINVAL (the NUL follows the digits, with
bytes left), while ``"1\\n\\0"`` sets 1 and consumes 2 bytes, and the rewrite of
``"\\0"`` is EINVAL: no number starts it.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from kernel_daemon.errno import KernelError
from kernel_daemon.strings import simple_strtoul, skip_spaces

if TYPE_CHECKING:
    from kernel_daemon.kernel import Kernel

PAGE_SIZE = 4096
# proc_get_long()'s tmp[TMPBUFLEN]: a number of TMPBUFLEN - 1 bytes fills it, and what
# follows it is unknown, so that long a number is refused.
TMPBUFLEN = 22
#: ``proc_wspace_sep[]``: the bytes that may follow a number.
proc_wspace_sep = b" \t\n"
# A C int on x86_64: 32 bits, two's complement.
INT_BITS = 32
BITS_PER_LONG = 64


def proc_get_long(buf: bytes) -> tuple[int, bool, int]:
    """``proc_get_long(&buf, &size, &val, &neg, proc_wspace_sep, ...)``: a number at the
    start of ``buf``, the rest of the page (``size`` is ``len(buf)``: the caller has
    checked it is not 0).

    Returns (val, neg, how many bytes it read); EINVAL if no digit starts it (after the
    ``-``), if it fills ``tmp``, or if a byte other than a separator follows it.
    """
    size = len(buf)
    # memcpy(tmp, *buf, len); tmp[len] = 0: the number is read from at most
    # TMPBUFLEN - 1 bytes; a NUL among them stops it as the end of tmp does.
    tmp = buf[:TMPBUFLEN - 1]
    neg = tmp[:1] == b"-" and size > 1
    p = int(neg)
    if not tmp[p:p + 1].isdigit():  # bytes.isdigit(): ASCII only, as the kernel's isdigit()
        raise KernelError(errno.EINVAL)
    val, length = simple_strtoul(tmp[p:])
    p += length
    if p == TMPBUFLEN - 1:
        raise KernelError(errno.EINVAL)
    # *p, the byte after the number, is one of tmp's while bytes are left (p < size);
    # a NUL written there is no separator.
    if p < size and tmp[p] not in proc_wspace_sep:
        raise KernelError(errno.EINVAL)
    return val, neg, p


def do_proc_dointvec_conv(neg: bool, lval: int) -> int:
    """``do_proc_dointvec_conv()``, write side: ``*valp = neg ? -lval : lval``, the
    unsigned long cut to a 32-bit two's complement ``int`` as C converts it."""
    value = (-lval if neg else lval) & ((1 << INT_BITS) - 1)
    return value - (1 << INT_BITS) if value >> (INT_BITS - 1) else value


def _proc_write_one(buffer: bytes) -> tuple[int, bool, int] | None:
    """The write side of ``__do_proc_dointvec()`` and ``__do_proc_doulongvec_minmax()``
    for a table of one value: the number written (its magnitude and whether a ``-``
    led it) and ``*lenp``, the bytes the write consumed; None for an empty write
    (``!*lenp``: nothing read, nothing set, 0 returned).

    EINVAL if no number is there (nothing but spaces, or garbage) or it is malformed
    (:func:`proc_get_long`).
    """
    if not buffer:
        return None
    # copy_from_user() of at most PAGE_SIZE - 1 bytes; left is always len(kbuf).
    kbuf = buffer[:PAGE_SIZE - 1]
    kbuf = kbuf[skip_spaces(kbuf):]
    if not kbuf:
        raise KernelError(errno.EINVAL)  # first: no value read
    lval, neg, length = proc_get_long(kbuf)
    kbuf = kbuf[length:]
    kbuf = kbuf[skip_spaces(kbuf):]
    # *lenp -= left: *lenp is the whole count, left only counts the page, so the bytes
    # of a write beyond PAGE_SIZE - 1 count as consumed.
    return lval, neg, len(buffer) - len(kbuf)


def proc_dointvec(buffer: bytes, valp: int) -> tuple[int, int]:
    """``proc_dointvec()``, write side, one ``int``: the value at ``valp`` after a write of
    ``buffer``, and ``*lenp``: the bytes the write consumed, what write(2) returns.
    EINVAL (the value unchanged) as :func:`_proc_write_one`."""
    written = _proc_write_one(buffer)
    if written is None:
        return valp, 0
    lval, neg, count = written
    return do_proc_dointvec_conv(neg, lval), count


def proc_doulongvec_minmax(buffer: bytes, valp: int) -> tuple[int, int]:
    """``proc_doulongvec_minmax()``, write side, one ``unsigned long`` and no bounds: as
    :func:`proc_dointvec`, but a negative number leaves the value as it was and the
    write still succeeds (3.6's ``if (neg) continue;``, which later kernels made
    EINVAL), and the number keeps its 64 bits."""
    written = _proc_write_one(buffer)
    if written is None:
        return valp, 0
    lval, neg, count = written
    return (valp if neg else lval), count


def proc_dointvec_read(valp: int, size: int, pos: int) -> bytes:
    """``proc_dointvec()`` (and ``proc_doulongvec_minmax()``), read side, one value: what
    a read of ``size`` bytes at file offset ``pos`` gets.

    Only a read at offset 0 gets anything (``*ppos && !write`` returns nothing): so ``dd
    bs=1`` reads ``1`` and then end of file, where a seq_file would go on to the newline.
    ``proc_put_long()`` cuts the number to the buffer, and the newline follows only if
    there is room left for it.
    """
    if not size or pos:
        return b""
    text = str(valp).encode()[:size]
    return text + b"\n" if len(text) < size else text


def proc_taint(kernel: Kernel, buffer: bytes) -> int:
    """``proc_taint()``, write side: the number written is a mask whose every bit is
    ``add_taint()``-ed, so taint is only ever added (a 0 changes nothing). Returns the
    bytes consumed. Its ``capable(CAP_SYS_ADMIN)`` test passes: every caller of the
    model is root."""
    tmptaint, count = proc_doulongvec_minmax(buffer, kernel.panic.tainted_mask)
    for i in range(BITS_PER_LONG):
        if (tmptaint >> i) & 1:
            kernel.panic.add_taint(i)
    return count


def proc_taint_read(kernel: Kernel, size: int, pos: int) -> bytes:
    """``proc_taint()``, read side: ``tainted_mask`` in decimal (512, TAINT_WARN's bit,
    after a WARN)."""
    return proc_dointvec_read(kernel.panic.tainted_mask, size, pos)
