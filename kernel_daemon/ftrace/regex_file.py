"""``set_ftrace_filter`` / ``set_ftrace_notrace``: ``ftrace_regex_open/write/release`` (3.6.5).

Spec §3.3.1–§3.3.6: a writer edits a private copy of the hash taken at open
(emptied there by O_TRUNC); each ``write(2)`` parses at most one token
(``trace_get_user``); a token that matches nothing fails that write with EINVAL but
leaves the file open; the copy is installed at release, whose errors nobody sees.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass, field
from typing import Protocol

from kernel_daemon.errno import KernelError, quoted
from kernel_daemon.ftrace.core import Ftrace, ftrace_disabled_error
from kernel_daemon.ftrace.filter import (ftrace_filter_reset, ftrace_match_records,
                                         ftrace_process_regex, install_hash)
from kernel_daemon.ftrace.hash import FtraceHash
from kernel_daemon.ftrace.ops import FtraceOps
from kernel_daemon.strings import ISSPACE_CLASS, skip_spaces
from kernel_daemon.uaccess import UserBuffer
from kernel_daemon.unwind import kernel_function

# KSYM_SYMBOL_LEN + 4 on x86_64: sizeof("%s+%#lx/%#lx [%s]") + (KSYM_NAME_LEN - 1)
# + 2 * (BITS_PER_LONG * 3 / 10) + (MODULE_NAME_LEN - 1) + 1 = 18 + 127 + 38 + 55 + 1.
FTRACE_BUFF_MAX = 239 + 4
_SPACE = re.compile(ISSPACE_CLASS)
_WORD_START = 32  # how much of a word too long its EINVAL's message shows


class Ppos(Protocol):
    """``loff_t *ppos``: the position a write is at, which the write moves (the open
    file's, or a pwrite's own)."""

    pos: int


@dataclass
class TraceParser:
    """``struct trace_parser``: the token being assembled across writes."""

    size: int = FTRACE_BUFF_MAX
    buffer: bytearray = field(default_factory=bytearray)
    cont: bool = False

    def clear(self) -> None:
        """``trace_parser_clear()``."""
        self.buffer.clear()
        self.cont = False

    def loaded(self) -> bool:
        return bool(self.buffer)

    def token(self) -> str:
        # Bytes are the kernel's chars; latin-1 maps each byte to one char, so a
        # token with non-ASCII or non-UTF-8 bytes simply names no function.
        return self.buffer.decode("latin-1")


def trace_get_user(parser: TraceParser, data: UserBuffer, pos: int) -> int:
    """``trace_get_user()``: consume at most one token from ``data``; return bytes read,
    which 3.6's adds to ``*ppos`` itself (here the caller does), unless it fails.

    The kernel walks the buffer a byte at a time; here each step is one slice: the
    leading spaces (skipped unless a token is continued), the token, and the one space
    that ends it, which is consumed too. A token longer than the parser holds fails
    with EINVAL once the buffer is full, as the kernel's loop does.

    Only the bytes stored inside 3.6's loop are checked against the size: when a write
    ends inside a token, its last byte is stored after the loop without a check
    (``parser->buffer[parser->idx++] = ch``). So a write may end a token one byte longer
    than a space would allow, and one-byte writes extend it without limit: the kernel
    writes past its kmalloc'd buffer there; the model keeps the bytes and does not model
    the corruption of whatever follows the buffer.
    """
    if pos == 0:
        parser.clear()
    start = 0
    if not parser.cont:
        start = skip_spaces(data)
        if start == len(data):  # only spaces were written
            return start
        parser.buffer.clear()
    space = _SPACE.search(data, start)
    end = space.start() if space is not None else len(data)
    checked = end - start if space is not None else end - start - 1
    room = max(parser.size - 1 - len(parser.buffer), 0)
    if checked > room:
        parser.buffer += data[start:start + room]
        word_start = parser.buffer[:_WORD_START].decode("latin-1")
        raise KernelError(errno.EINVAL, f"a word longer than {parser.size - 1} bytes, "
                                        f"starting {quoted(word_start)}")
    parser.buffer += data[start:end]
    if space is None:
        # The token runs to the end of the buffer: continued by the next write.
        parser.cont = True
        return end
    parser.cont = False
    return end + 1


@dataclass(eq=False)
class FtraceIterator:
    """``struct ftrace_iterator`` for a filter file opened for write."""

    ops: FtraceOps
    filter: bool  # FTRACE_ITER_FILTER, else FTRACE_ITER_NOTRACE
    hash: FtraceHash
    parser: TraceParser = field(default_factory=TraceParser)


@kernel_function
def ftrace_regex_open(ft: Ftrace, ops: FtraceOps, filter: bool, truncate: bool) -> FtraceIterator:
    """``ftrace_regex_open()`` for FMODE_WRITE: copy the live hash, O_TRUNC empties the copy."""
    if ft.ftrace_disabled:
        raise ftrace_disabled_error()
    with ft.ftrace_lock:
        hash = (ops.filter_hash if filter else ops.notrace_hash).copy()
    with ft.ftrace_regex_lock:
        if truncate:
            ftrace_filter_reset(ft, hash)
    return FtraceIterator(ops, filter, hash)


@kernel_function
def ftrace_regex_write(ft: Ftrace, iter: FtraceIterator, data: UserBuffer,
                       ppos: Ppos) -> int:
    """``ftrace_regex_write()``: returns the bytes consumed, or raises the errno.

    ``ppos.pos`` is where the write is (``*ppos``): a write at position 0 (a new ``>``, or
    a ``pwrite`` at 0) drops a token left unfinished by the writes before it, as
    ``trace_get_user`` clears the parser.  ``trace_get_user`` moves it by the bytes read
    before the token is matched, so a token that matches nothing fails the write (EINVAL)
    with the position moved past it; a token too long fails before, and moves nothing.
    """
    if not data:
        return 0
    with ft.ftrace_regex_lock:
        if ft.ftrace_disabled:
            raise ftrace_disabled_error()
        read = trace_get_user(iter.parser, data, ppos.pos)
        ppos.pos += read
        if iter.parser.loaded() and not iter.parser.cont:
            token = iter.parser.token()
            iter.parser.clear()
            ftrace_process_regex(ft, iter.hash, token, iter.filter)
        return read


@kernel_function
def ftrace_regex_release(ft: Ftrace, iter: FtraceIterator) -> None:
    """``ftrace_regex_release()``: match a pending token, then install the copy.

    Runs even after ``ftrace_kill``: the hash is still moved and counted (spec §2.11).
    """
    with ft.ftrace_regex_lock:
        if iter.parser.loaded():
            # 3.6 passes the last token straight to the matcher: no commands here.
            ftrace_match_records(ft, iter.hash, iter.parser.token())
        ft.failpoints.fire("ftrace_regex_release:before_lock")
        with ft.ftrace_lock:
            install_hash(ft, iter.ops, iter.filter, iter.hash)
