"""User memory as a write handler sees it (``arch/x86/include/asm/uaccess.h``).

A write(2)'s ``const char __user *ubuf`` is a :data:`UserBuffer`: the handler gets a view
of the caller's bytes, not a copy, and copies what its 3.6 counterpart's
``copy_from_user()`` takes.  The daemon runs a caller's write loop for it
(``write_until_done``), handing the rest of the buffer to the next write(2) after a short
one; were that rest copied each time, a 16 MB write to ``trace_marker``, which takes at
most a kilobyte per write(2), would copy 128 GB.
"""

from __future__ import annotations

UserBuffer = bytes | memoryview


def copy_from_user(ubuf: UserBuffer, n: int | None = None) -> bytes:
    """``copy_from_user()``: the first ``n`` bytes of ``ubuf``, all of them by default."""
    return bytes(ubuf if n is None else ubuf[:n])
