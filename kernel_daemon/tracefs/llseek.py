"""The ``.llseek`` methods the tracing files' ``file_operations`` name in 3.6, one function
per kernel function: ``no_llseek()``, ``generic_file_llseek()`` and ``default_llseek()``
(fs/read_write.c), ``seq_lseek()`` (fs/seq_file.c), ``dcache_dir_lseek()`` (fs/libfs.c).

Each takes the open file, the offset and the whence, and returns the new position or
raises the errno the kernel function returns.  ``sys_lseek()`` has already refused a
whence past SEEK_HOLE (:func:`kernel_daemon.tracefs.files.file_llseek`), so every whence
that reaches them is SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA or SEEK_HOLE.

Positions are ``loff_t``: a sum past LLONG_MAX wraps negative in the kernel (which is
built with -fno-strict-overflow), so here a result above LLONG_MAX fails as a negative
one does.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kernel_daemon.errno import KernelError
from kernel_daemon.tracefs.seq_file import traverse

if TYPE_CHECKING:
    from kernel_daemon.tracefs.files import OpenFile, SeqText

# loff_t's largest value: a position beyond it is negative to the kernel.
LLONG_MAX = (1 << 63) - 1
# sys_lseek(): a whence above SEEK_MAX (SEEK_HOLE) is EINVAL.
SEEK_MAX = os.SEEK_HOLE
# The s_maxbytes of every file generic_file_llseek() serves here: alloc_super() sets
# MAX_NON_LFS and debugfs's simple_fill_super() leaves it, so positions stop at 2 GiB - 1.
MAX_NON_LFS = (1 << 31) - 1
# i_size, where SEEK_END counts from and SEEK_DATA/SEEK_HOLE find the end of the data: 0
# for every file here (debugfs_get_inode() and proc_sys_make_inode() leave it, the
# proc_create() entries have size 0), whatever their reads return.
I_SIZE = 0

#: An ``.llseek``: the open file (a :class:`SeqText` for ``seq_lseek``), offset, whence.
Llseek = Callable[[Any, int, int], int]


def no_llseek(file: OpenFile, offset: int, whence: int) -> int:
    """``no_llseek()``: ESPIPE.  What ``vfs_llseek()`` calls for a file that
    ``nonseekable_open()`` made unseekable and for ``file_operations`` without
    ``.llseek`` (``free_buffer``'s), as well as the ``.llseek`` ``trace_pipe`` names."""
    raise KernelError(errno.ESPIPE)


def generic_file_llseek_size(file: OpenFile, offset: int, whence: int, maxsize: int,
                             eof: int) -> int:
    """``generic_file_llseek_size()``: SEEK_END from ``eof``; ``lseek(fd, 0, SEEK_CUR)``
    answers the position without checking or storing it; SEEK_DATA and SEEK_HOLE at or
    past ``eof`` are ENXIO (all of a file is data, with a virtual hole at its end, where
    SEEK_HOLE below ``eof`` goes); the result must be in ``0..maxsize``
    (``lseek_execute()``), else EINVAL."""
    if whence == os.SEEK_END:
        offset += eof
    elif whence == os.SEEK_CUR:
        if offset == 0:
            return file.pos
        offset += file.pos
    elif whence in (os.SEEK_DATA, os.SEEK_HOLE):
        if offset >= eof:
            raise KernelError(errno.ENXIO)
        if whence == os.SEEK_HOLE:
            offset = eof
    if not 0 <= offset <= maxsize:
        raise KernelError(errno.EINVAL)
    file.pos = offset
    return offset


def generic_file_llseek(file: OpenFile, offset: int, whence: int) -> int:
    """``generic_file_llseek()``: ``generic_file_llseek_size()`` with the superblock's
    ``s_maxbytes`` (debugfs's MAX_NON_LFS: a position past 2 GiB - 1 is EINVAL) and
    i_size (0: SEEK_END is SEEK_SET, SEEK_DATA at 0 or later is ENXIO)."""
    return generic_file_llseek_size(file, offset, whence, MAX_NON_LFS, I_SIZE)


def default_llseek(file: OpenFile, offset: int, whence: int) -> int:
    """``default_llseek()``: the arithmetic of ``generic_file_llseek()`` (its own copy in
    the kernel) with no bound but loff_t's: any position up to LLONG_MAX."""
    return generic_file_llseek_size(file, offset, whence, LLONG_MAX, I_SIZE)


def set_or_cur(file: OpenFile, offset: int, whence: int) -> int:
    """The position SEEK_SET or SEEK_CUR asks for, as ``seq_lseek()`` and
    ``dcache_dir_lseek()`` both work it out: any other whence, or a position below 0 (or
    past LLONG_MAX: negative in the kernel), is EINVAL."""
    if whence == os.SEEK_CUR:
        offset += file.pos
    elif whence != os.SEEK_SET:
        raise KernelError(errno.EINVAL)
    if not 0 <= offset <= LLONG_MAX:
        raise KernelError(errno.EINVAL)
    return offset


def seq_lseek(file: SeqText, offset: int, whence: int) -> int:
    """``seq_lseek()``: SEEK_SET and SEEK_CUR only.  A position other than where the
    seq_file's reading stopped (``m->read_pos``) is reached by ``traverse()``, which
    shows the records again from the first; if a show fails on the way, the position
    and the reading go back to 0 and the lseek fails with its error.  A position equal
    to ``m->read_pos`` returns at once without storing it in ``f_pos``: after a pread
    or a write moved one of the two, the lseek answers the position asked for and the
    next read starts where ``f_pos`` still is (later kernels store it)."""
    offset = set_or_cur(file, offset, whence)
    m = file.m
    with m.lock:
        if offset != m.read_pos:
            try:
                traverse(m, offset)
            except KernelError:
                file.pos = m.read_pos = m.index = m.count = 0  # "with extreme prejudice..."
                raise
            m.read_pos = file.pos = offset
    return offset


def dcache_dir_lseek(file: OpenFile, offset: int, whence: int) -> int:
    """``dcache_dir_lseek()``, a debugfs directory's (``simple_dir_operations``): SEEK_SET
    and SEEK_CUR to any position from 0; it also moves the readdir cursor, which the model
    has not (ListDir lists a directory whole)."""
    file.pos = set_or_cur(file, offset, whence)
    return file.pos
