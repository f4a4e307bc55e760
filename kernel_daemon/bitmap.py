"""A bitmap as hex text, the way cpumasks print and parse: ``bitmap_scnprintf()`` and
``__bitmap_parse()`` of lib/bitmap.c (3.6).

The text is comma-separated chunks of 32 bits, most significant first, in hex.  The
bitmap is a Python int of ``nmaskbits`` bits.
"""

from __future__ import annotations

import errno

from kernel_daemon.errno import KernelError
from kernel_daemon.strings import KERNEL_SPACES, hex_to_bin

CHUNKSZ = 32
_COMMA = ord(",")


def bitmap_scnprintf(maskp: int, nmaskbits: int) -> str:
    """``bitmap_scnprintf()``: every chunk zero-padded to its width; the top chunk holds
    only the bits above the last whole 32 (``nmaskbits`` 8: ``01``; 36: ``f,ffffffff``).

    The buffer the kernel prints into is taken to be big enough.
    """
    chunksz = nmaskbits & (CHUNKSZ - 1) or CHUNKSZ
    chunks = []
    top = -(-nmaskbits // CHUNKSZ) * CHUNKSZ - CHUNKSZ  # ALIGN(nmaskbits, CHUNKSZ) - CHUNKSZ
    for i in range(top, -1, -CHUNKSZ):
        val = maskp >> i & ((1 << chunksz) - 1)
        chunks.append(f"{val:0{(chunksz + 3) // 4}x}")
        chunksz = CHUNKSZ
    return ",".join(chunks)


def bitmap_parse_user(ubuf: bytes, nmaskbits: int) -> int:
    """``bitmap_parse_user()``: ``__bitmap_parse(ubuf, ulen, 1, maskp, nmaskbits)``.

    Hex digits in chunks separated by commas; spaces before and after the whole, none
    inside (EINVAL); a NUL ends the text.  EINVAL for any other byte and for an empty
    chunk (``""``, ``"1,,2"``, ``",1"``, ``"1,\\n"``); EOVERFLOW for a chunk above 32
    bits or a value above ``nmaskbits`` bits.  Leading zero chunks are skipped.
    """
    maskp = nchunks = nbits = totaldigits = 0
    c = pos = 0
    while True:  # do { ... } while (buflen && c == ',')
        chunk = ndigits = 0
        # Get the next chunk of the bitmap.
        while pos < len(ubuf):
            old_c, c = c, ubuf[pos]
            pos += 1
            if c in KERNEL_SPACES:
                continue
            # A byte after a space, once there were digits, is embedded whitespace
            # (unless it is the NUL that ends the text).
            if totaldigits and c and old_c in KERNEL_SPACES:
                raise KernelError(errno.EINVAL)
            if c == 0 or c == _COMMA:
                break
            digit = hex_to_bin(c)
            if digit < 0:  # !isxdigit(c)
                raise KernelError(errno.EINVAL)
            # No room in the u32 chunk for 4 more bits (leading zeros take none).
            if chunk >> (CHUNKSZ - 4):
                raise KernelError(errno.EOVERFLOW)
            chunk = chunk << 4 | digit
            ndigits += 1
            totaldigits += 1
        if ndigits == 0:
            raise KernelError(errno.EINVAL)
        # Leading zero chunks add nothing (the C `continue` goes to the loop's test).
        if nchunks or chunk:
            # __bitmap_shift_left() drops bits above nmaskbits; a value that loses any
            # fails the nbits test below, so the int need not be cut.
            maskp = maskp << CHUNKSZ | chunk
            nchunks += 1
            nbits += chunk.bit_length() if nchunks == 1 else CHUNKSZ  # fls(chunk)
            if nbits > nmaskbits:
                raise KernelError(errno.EOVERFLOW)
        if not (pos < len(ubuf) and c == _COMMA):
            return maskp
