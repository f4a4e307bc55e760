"""The ``file_operations`` of the tracing files: open, read, write, release.

Each class is one kernel fops table (``ftrace_avail_fops``, ``ftrace_filter_fops``,
``set_tracer_fops``, ...).  An :class:`OpenFile` is a ``struct file``: its mode comes
from the open flags, reads and writes move its position, and ``release`` runs once,
at the last close, which 3.6 defers to ``task_work`` on the way back to user space
(the ``__fput`` frames in the report's call trace).

The caller is root, as anyone tracing is: a 0444 file opens for write (root
overrides the mode bits) and the write then fails with EINVAL for want of a write
method, as ``vfs_write`` does.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.core import ftrace_disabled_error
from kernel_daemon.ftrace.listing import FtraceListIterator, Listing, ftrace_avail_open
from kernel_daemon.ftrace.pid import ftrace_pid_reset, ftrace_pid_sops, ftrace_pid_write
from kernel_daemon.ftrace.regex_file import (FtraceIterator, ftrace_regex_open,
                                             ftrace_regex_release, ftrace_regex_write)
from kernel_daemon.trace.trace_output import trace_bytes
from kernel_daemon.tracefs.llseek import (LLONG_MAX, SEEK_MAX, Llseek, default_llseek,
                                          no_llseek, seq_lseek)
from kernel_daemon.tracefs.seq_file import (SeqFile, SeqOperations, SeqRecords, SeqSnapshot,
                                             seq_read)
from kernel_daemon.uaccess import UserBuffer, copy_from_user
from kernel_daemon.unwind import kernel_function_named

if TYPE_CHECKING:
    from kernel_daemon.kernel import Kernel

FMODE_READ = 0x1
FMODE_WRITE = 0x2
FMODE_LSEEK = 0x4  # lseek(2) reaches the file's .llseek; without it, no_llseek()
FMODE_PREAD = 0x8  # pread(2) is allowed; without it, ESPIPE
FMODE_PWRITE = 0x10  # pwrite(2) is allowed; without it, ESPIPE
FMODE_PATH = 0x4000  # opened with O_PATH: no file to read, write or seek (fget_light())

# IS_ERR_VALUE(): a system call's return value in -MAX_ERRNO..-1 is an errno.
MAX_ERRNO = 4095

SYSCALL_OPEN = ("system_call_fastpath", "sys_open", "do_sys_open")
SYSCALL_READ = ("system_call_fastpath", "sys_read", "vfs_read")
SYSCALL_WRITE = ("system_call_fastpath", "sys_write", "vfs_write")
DEFERRED_FPUT = ("int_signal", "do_notify_resume", "task_work_run", "____fput", "__fput")


def open_fmode(flags: int) -> int:
    """``OPEN_FMODE()`` (include/linux/fs.h): O_RDONLY, O_WRONLY, O_RDWR to FMODE_READ,
    FMODE_WRITE, both; the access mode 3 to neither (``(3 + 1) & O_ACCMODE``), a file
    open(2) opens all the same and whose reads and writes are then EBADF."""
    return (flags + 1) & os.O_ACCMODE


class OpenFile:
    """``struct file`` with the default methods of a file that has none.  ``llseek`` is
    its ``file_operations``' ``.llseek``: ``no_llseek()`` when they name none.  ``f_mode``
    is the open mode with FMODE_LSEEK, FMODE_PREAD and FMODE_PWRITE, as
    ``do_dentry_open()`` sets them, until the file's own open takes some away
    (:func:`nonseekable_open`, :func:`seq_open`); for O_PATH, FMODE_PATH alone (and
    this class's methods are ``empty_fops``': the file's own open never ran)."""

    def __init__(self, path: str, flags: int, llseek: Llseek = no_llseek) -> None:
        self.path = path
        self.flags = flags
        self.f_mode = (FMODE_PATH if flags & os.O_PATH else
                       open_fmode(flags) | FMODE_LSEEK | FMODE_PREAD | FMODE_PWRITE)
        self.pos = 0
        self._llseek = llseek

    def read(self, size: int) -> bytes:
        raise KernelError(errno.EINVAL)

    def write(self, data: UserBuffer) -> int:
        raise KernelError(errno.EINVAL)

    def llseek(self, offset: int, whence: int) -> int:
        """``file->f_op->llseek``: the new position."""
        return self._llseek(self, offset, whence)

    def release(self) -> None:
        pass

    def interrupt(self) -> None:
        """A signal to the process blocked in this file (its client went away)."""


def nonseekable_open(file: OpenFile) -> None:
    """``nonseekable_open()`` (fs/open.c): no lseek, pread or pwrite (ESPIPE)."""
    file.f_mode &= ~(FMODE_LSEEK | FMODE_PREAD | FMODE_PWRITE)


#: How a write handler moves ``*ppos`` once it has done its work: the open file (or a
#: pwrite's own position) and the count the handler returns.  Each handler has its own
#: rule; one that fails returns before it, and the position stays.
PposUpdate = Callable[["OpenFile", int], None]


def ppos_add_count(file: OpenFile, cnt: int) -> None:
    """``*ppos += cnt``: most write handlers, just before ``return cnt``."""
    file.pos += cnt


def ppos_increment(file: OpenFile, cnt: int) -> None:
    """``(*ppos)++``: ``rb_simple_write()`` (``tracing_on``), whatever the count."""
    file.pos += 1


def ppos_untouched(file: OpenFile, cnt: int) -> None:
    """The handlers that ``return cnt`` and never touch ``*ppos``:
    ``tracing_cpumask_write()``, ``tracing_max_lat_write()``."""


def store_write(file: OpenFile, store: Callable[[bytes], int | None],
                ppos_update: PposUpdate, data: UserBuffer) -> int:
    """A small control file's write method: ``store`` does the handler's work and returns
    the count (None: all of ``data``), or raises the errno of a handler that returns before
    ``*ppos`` moves; ``ppos_update`` then moves the position as the handler does.  A
    negative count is the write's errno, after the position took it too:
    ``ftrace_profile_write()`` puts a failed register's errno in ``cnt`` before its
    ``*ppos += cnt``."""
    cnt = store(copy_from_user(data))
    if cnt is None:
        cnt = len(data)
    ppos_update(file, cnt)
    if cnt < 0:
        raise KernelError(-cnt)
    return cnt


class FileOps:
    """A file's ``file_operations``: ``mode`` is what ``ls -l`` shows."""

    mode = 0o444

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        raise NotImplementedError


class SeqText(OpenFile):
    """An open ``seq_file``: ``m`` is its ``struct seq_file`` over the file's
    ``seq_operations``, read by ``seq_read()`` and sought by ``seq_lseek()`` (unless the
    fops name another ``.llseek``)."""

    def __init__(self, path: str, flags: int, op: SeqOperations,
                 llseek: Llseek = seq_lseek) -> None:
        super().__init__(path, flags, llseek)
        self.m = SeqFile(op)

    def read(self, size: int) -> bytes:
        data = seq_read(self.m, size, self.pos)
        self.pos += len(data)
        return data


def seq_lines(text: str) -> SeqRecords:
    """The lines of ``text``, each a record of a :class:`SeqSnapshot`: only ``\\n`` ends
    one, as each of these files' ``->show()`` prints one line."""
    return SeqRecords.lines(trace_bytes(text))


def seq_open(file: SeqText) -> SeqText:
    """``seq_open()`` (fs/seq_file.c), which every open of a seq_file calls (also through
    ``single_open()`` and ``__seq_open_private()``): it clears FMODE_PWRITE "for
    historical reasons", so pwrite(2) is ESPIPE on such a file whatever its write method,
    and pread(2) stays.  Returns the file, for its open to return."""
    file.f_mode &= ~FMODE_PWRITE
    return file


class SeqOperationsFile(FileOps):
    """A read-only ``seq_file`` whose open is ``seq_open()`` of the operations
    ``seq_ops(kernel)`` gives: ``seq_read`` and ``seq_lseek``, ``->start()`` at every read
    (``/proc/modules``: ``modules_open()``; ``/proc/kallsyms``: ``kallsyms_open()``, both
    through :class:`ProcSeqOperationsFile`)."""

    #: The open file's class: a /proc entry's is :class:`ProcSeqText`.
    open_file: type[SeqText] = SeqText

    def __init__(self, seq_ops: Callable[[Kernel], SeqOperations]) -> None:
        self.seq_ops = seq_ops

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        return seq_open(self.open_file(path, flags, self.seq_ops(kernel)))


class ProcSeqText(SeqText):
    """An open /proc entry: ``proc_get_inode()`` (fs/proc/inode.c) gives every regular
    entry ``proc_reg_file_ops``, whose ``proc_reg_write()`` returns EIO (``rv = -EIO``)
    when the entry's own fops have no write method, where ``vfs_write()`` would have
    returned EINVAL."""

    def write(self, data: UserBuffer) -> int:
        raise KernelError(errno.EIO)


class ProcSeqOperationsFile(SeqOperationsFile):
    """A read-only /proc seq_file, opened through ``proc_reg_file_ops``
    (:class:`ProcSeqText`): ``/proc/modules``, ``/proc/kallsyms``."""

    open_file = ProcSeqText


class GeneratedFile(SeqOperationsFile):
    """A read-only ``seq_file`` whose text a function of the kernel shows, a line a record,
    printed whole when a walk starts at the first record (:class:`SeqSnapshot`):
    ``seq_read`` and ``seq_lseek``.  Only for a text that cannot change while the file is
    open, where the snapshot reads as 3.6's ``->start()`` finding its record afresh:
    ``available_tracers`` (``t_start()`` walks ``trace_types``, which only boot's
    ``register_tracer()`` calls fill), an event's ``format`` (``f_start()`` over the
    event's fields, fixed when it was defined), ``available_events`` and
    ``printk_formats`` (no module of the model adds an event or a format).  3.6's records
    are a tracer's name, or a part of the format (``f_show()`` prints the three lines of
    its header as one); lines instead show in no read, these texts being shorter than a
    page: every read returns as many of the bytes left as it asks for, wherever the
    records end."""

    def __init__(self, produce: Callable[[Kernel], str]) -> None:
        super().__init__(
            lambda kernel: SeqSnapshot(lambda: seq_lines(produce(kernel))).operations())


def simple_read_from_buffer(file: OpenFile, size: int, data: bytes) -> bytes:
    """``simple_read_from_buffer()`` (fs/libfs.c): ``data`` from the file's position, which
    moves past what was read; EINVAL at a negative position."""
    if file.pos < 0:
        raise KernelError(errno.EINVAL)
    chunk = data[file.pos:file.pos + size]
    file.pos += len(chunk)
    return chunk


#: What a ``simple_read_from_buffer()`` file's read method prints into its buffer.
Show = Callable[["Kernel"], str]
#: A write handler's work: the bytes it consumed, what write(2) returns; None for all of
#: them, as most handlers ``return cnt``.  Fewer is a short write, and the writer writes
#: the rest again.  It raises the errno of a handler that fails.
Store = Callable[["Kernel", bytes], "int | None"]


class SimpleReadOpenFile(OpenFile):
    """An open file whose read method prints its few bytes afresh at every read(2) and
    hands them to ``simple_read_from_buffer()``, which copies from the position: no
    snapshot is kept, so what changed between two reads shows in the second (one byte of
    ``current_tracer``'s ``"function\\n"``, a switch to nop, and the next read gives
    ``"op\\n"``).  ``tracing_set_trace_read()``, ``rb_simple_read()``,
    ``tracing_entries_read()``, ``tracing_readme_read()``, ``tracing_stats_read()``, ..."""

    def __init__(self, path: str, flags: int, show: Callable[[], str], llseek: Llseek) -> None:
        super().__init__(path, flags, llseek)
        self.show = show

    def read(self, size: int) -> bytes:
        return simple_read_from_buffer(self, size, trace_bytes(self.show()))


class SimpleOpenFile(SimpleReadOpenFile):
    """A :class:`SimpleReadOpenFile` with a write method: ``store`` is the handler's work,
    ``ppos_update`` what it does to ``*ppos`` (:func:`store_write`)."""

    def __init__(self, path: str, flags: int, show: Callable[[], str],
                 store: Callable[[bytes], int | None], ppos_update: PposUpdate,
                 llseek: Llseek) -> None:
        super().__init__(path, flags, show, llseek)
        self.store, self.ppos_update = store, ppos_update

    def write(self, data: UserBuffer) -> int:
        return store_write(self, self.store, self.ppos_update, data)


class SimpleReadFile(FileOps):
    """The ``file_operations`` of a read-only :class:`SimpleReadOpenFile`, and their
    ``.llseek``: ``README``, ``saved_cmdlines``, ``buffer_total_size_kb``,
    ``dyn_ftrace_total_info``, ``per_cpu/cpuN/stats``."""

    def __init__(self, show: Show, *, llseek: Llseek) -> None:
        self.show, self.llseek = show, llseek

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        return SimpleReadOpenFile(path, flags, lambda: self.show(kernel), self.llseek)


class SimpleFile(FileOps):
    """The ``file_operations`` of a :class:`SimpleOpenFile`: ``tracing_open_generic()``,
    a read method of ``simple_read_from_buffer()``, a write handler with its ``*ppos``
    update, and an ``.llseek``."""

    open_file: type[SimpleOpenFile] = SimpleOpenFile

    def __init__(self, show: Show, store: Store, *, ppos_update: PposUpdate, llseek: Llseek,
                 mode: int = 0o644) -> None:
        self.show, self.store = show, store
        self.ppos_update, self.llseek = ppos_update, llseek
        self.mode = mode

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        return self.open_file(path, flags, lambda: self.show(kernel),
                              lambda data: self.store(kernel, data), self.ppos_update,
                              self.llseek)


class ProcSysOpenFile(OpenFile):
    """An open file of ``/proc/sys`` (fs/proc/proc_sysctl.c): ``proc_sys_read()`` and
    ``proc_sys_write()`` hand the count and the offset to the entry's ``proc_handler``,
    which decides what an offset means, and which moves it (``*ppos += *lenp``)."""

    def __init__(self, path: str, flags: int, read: Callable[[int, int], bytes],
                 write: Callable[[bytes], int]) -> None:
        super().__init__(path, flags, default_llseek)  # proc_sys_file_operations
        self._read, self._write = read, write

    def read(self, size: int) -> bytes:
        data = self._read(size, self.pos)
        self.pos += len(data)
        return data

    def write(self, data: UserBuffer) -> int:
        count = self._write(copy_from_user(data))
        self.pos += count
        return count


class ProcSysFile(FileOps):
    """A ``ctl_table`` entry: its ``proc_handler``, read and write side."""

    mode = 0o644

    def __init__(self, read: Callable[[Kernel, int, int], bytes],
                 write: Callable[[Kernel, bytes], int]) -> None:
        self.read, self.write = read, write

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        return ProcSysOpenFile(path, flags, lambda size, pos: self.read(kernel, size, pos),
                               lambda data: self.write(kernel, data))


class FtraceListingFile(FileOps):
    """``available_filter_functions`` / ``enabled_functions``: ENODEV once ftrace is dead."""

    def __init__(self, which: Listing) -> None:
        self.which = which

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        ftrace_avail_open(kernel.ftrace, self.which)  # __seq_open_private()
        iter = FtraceListIterator(kernel.ftrace, self.which)
        return seq_open(SeqText(path, flags, iter.show_ftrace_seq_ops()))


# ftrace_filter_write() and ftrace_notrace_write(): each calls ftrace_regex_write().
_REGEX_WRITE = {Listing.FILTER: kernel_function_named("ftrace_filter_write")(ftrace_regex_write),
                Listing.NOTRACE: kernel_function_named("ftrace_notrace_write")(ftrace_regex_write)}


def ftrace_regex_lseek(file: RegexOpenFile, offset: int, whence: int) -> int:
    """``ftrace_regex_lseek()``: ``seq_lseek()`` when open for reading; otherwise the
    position becomes 1 whatever is asked, so the next write goes on with the token a
    write left unfinished (only a write at position 0 clears the parser)."""
    if file.f_mode & FMODE_READ:
        return seq_lseek(file, offset, whence)
    file.pos = 1
    return 1


class RegexOpenFile(SeqText):
    """An open ``set_ftrace_filter`` / ``set_ftrace_notrace``."""

    def __init__(self, kernel: Kernel, path: str, flags: int, which: Listing) -> None:
        super().__init__(path, flags,
                         FtraceListIterator(kernel.ftrace, which).show_ftrace_seq_ops(),
                         ftrace_regex_lseek)
        self.kernel = kernel
        self.which = which
        self.iter: FtraceIterator | None = None

    def write(self, data: UserBuffer) -> int:
        return _REGEX_WRITE[self.which](self.kernel.ftrace, self.iter, data, self)

    def release(self) -> None:
        if self.iter is not None:
            ftrace_regex_release(self.kernel.ftrace, self.iter)


class RegexFile(FileOps):
    """``ftrace_filter_fops`` / ``ftrace_notrace_fops``."""

    mode = 0o644

    def __init__(self, which: Listing) -> None:
        self.which = which

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        ft = kernel.ftrace
        file = RegexOpenFile(kernel, path, flags, self.which)
        if file.f_mode & FMODE_WRITE:
            file.iter = ftrace_regex_open(ft, ft.global_ops, self.which is Listing.FILTER,
                                          bool(flags & os.O_TRUNC))
        elif ft.ftrace_disabled:
            raise ftrace_disabled_error()
        if file.f_mode & FMODE_READ:
            seq_open(file)
        return file


class FtracePidOpenFile(SeqText):
    """An open ``set_ftrace_pid``: reads are ``ftrace_pid_sops``; a write
    (``ftrace_pid_write()``) takes no position and moves none.  Its ``.llseek`` is
    ``seq_lseek``."""

    def __init__(self, kernel: Kernel, path: str, flags: int) -> None:
        # Write-only, 3.6 oopses in seq_lseek() (no seq_file): no oops modelled, it seeks.
        super().__init__(path, flags, ftrace_pid_sops(kernel.ftrace))
        self.kernel = kernel

    def write(self, data: UserBuffer) -> int:
        return ftrace_pid_write(self.kernel.ftrace, data)


class FtracePidFile(FileOps):
    """``ftrace_pid_fops``."""

    mode = 0o644

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        file = FtracePidOpenFile(kernel, path, flags)
        # ftrace_pid_open(): a write open with O_TRUNC (``echo >``) empties the list.
        if file.f_mode & FMODE_WRITE and flags & os.O_TRUNC:
            ftrace_pid_reset(kernel.ftrace)
        if file.f_mode & FMODE_READ:
            seq_open(file)
        return file


def fget_light(file: OpenFile) -> OpenFile:
    """``fget_light()`` (fs/file_table.c), at the start of every system call on a file
    descriptor: a file opened with O_PATH is no file for lseek(2), pread(2) and pwrite(2)
    (EBADF). read(2) and write(2), which the model lets through it, fail it alike, for
    want of FMODE_READ and FMODE_WRITE."""
    if file.f_mode & FMODE_PATH:
        raise KernelError(errno.EBADF)
    return file


@kernel_function_named(*SYSCALL_READ)
def file_read(file: OpenFile, size: int) -> bytes:
    """``vfs_read``: EBADF without FMODE_READ, then :func:`rw_verify_area`."""
    if not file.f_mode & FMODE_READ:
        raise KernelError(errno.EBADF)
    rw_verify_area(file, size)
    return file.read(size)


@kernel_function_named(*SYSCALL_WRITE)
def file_write(file: OpenFile, data: UserBuffer) -> int:
    """``vfs_write``: EBADF without FMODE_WRITE, then :func:`rw_verify_area`."""
    if not file.f_mode & FMODE_WRITE:
        raise KernelError(errno.EBADF)
    rw_verify_area(file, len(data))
    return file.write(data)


def rw_verify_area(file: OpenFile, count: int) -> None:
    """``rw_verify_area()`` (fs/read_write.c), before any read or write method: EINVAL at
    a negative position (where a refused profiler enable leaves ``function_profile_enabled``)
    or one the count would carry past loff_t's LLONG_MAX (a write of 2 bytes to
    ``tracing_on`` after ``lseek(fd, LLONG_MAX, SEEK_SET)``), none of these files having
    FMODE_UNSIGNED_OFFSET.  Its MAX_RW_COUNT clamp and mandatory locks never apply here."""
    if file.pos < 0 or file.pos + count > LLONG_MAX:
        raise KernelError(errno.EINVAL)


def file_llseek(file: OpenFile, offset: int, whence: int) -> int:
    """``sys_lseek()`` → ``vfs_llseek()``: a whence past SEEK_MAX (an unsigned int, so a
    negative one too) is EINVAL before any file sees it; a file ``nonseekable_open()``
    made unseekable (no FMODE_LSEEK) gets ``no_llseek()``; any other, its own
    ``.llseek``.  What it returns is lseek(2)'s result, and one in -MAX_ERRNO..-1 reads
    as an errno in user space: the position -19 a refused profiler enable leaves
    (``ftrace_profile_write()``'s ``*ppos += cnt``) answers ``lseek(fd, 0, SEEK_CUR)``
    with ENODEV. An O_PATH file is EBADF first (:func:`fget_light`)."""
    fget_light(file)
    if not 0 <= whence <= SEEK_MAX:
        raise KernelError(errno.EINVAL)
    if not file.f_mode & FMODE_LSEEK:
        return no_llseek(file, offset, whence)
    pos = file.llseek(offset, whence)
    if -MAX_ERRNO <= pos < 0:
        raise KernelError(-pos)
    return pos


@kernel_function_named(*DEFERRED_FPUT)
def file_release(file: OpenFile) -> None:
    """``__fput``, run from ``task_work`` when the last reference goes."""
    file.release()
