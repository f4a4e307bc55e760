"""``ftrace.v1.Tracefs``: files as system calls.

A ``Session`` stream is one open file descriptor of one process: the stream's end,
however it comes (a close, the client's exit, a cancel, a dropped connection), is the
last ``fput`` and runs the file's release, as a process that exits closes its files.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc

from ftrace.v1 import tracefs_pb2 as pb
from ftrace.v1 import tracefs_pb2_grpc
from kernel_daemon.errno import KernelError
from kernel_daemon.rpc.state import MAX_ANSWER, Boot, DaemonState, InKernel
from kernel_daemon.signal import SigPending, current_sigpending
from kernel_daemon.rpc.status import (BYTES_WRITTEN_METADATA_KEY, add_trailing_metadata,
                                      errno_detail, failing_as, translate_kernel_errors)
from kernel_daemon.task import running_as
from kernel_daemon.tracefs.files import (FMODE_PREAD, FMODE_PWRITE, OpenFile, fget_light,
                                         file_llseek, file_read, file_release, file_write)
from kernel_daemon.tracefs.llseek import LLONG_MAX
from kernel_daemon.tracefs.trace_files import TracePipeOpenFile
from kernel_daemon.tracefs.vfs import DirEntry

READ_CHUNK = 4096
#: The most one answer holds of what reads returned (see MAX_ANSWER): after a consuming
#: read (trace_pipe) took what it held, a larger answer would be lost. A page less than
#: MAX_ANSWER leaves room for the answer's other fields. A Session read's count is cut
#: to it, as rw_verify_area() cuts one to MAX_RW_COUNT; a ReadFile stops within a page
#: of it and says ``truncated``.
MAX_READ_ANSWER = MAX_ANSWER - READ_CHUNK
TRACING = "/sys/kernel/debug/tracing"


T = TypeVar("T")


def syscall_of(op: str, request: pb.FileRequest) -> str:
    """The system call a Session's read, write or seek is, as fs/read_write.c names it:
    ``pread64`` / ``pwrite64`` for a read or write at an ``offset``."""
    if op == "seek":
        return "lseek"
    return f"p{op}64" if getattr(request, op).HasField("offset") else op


def at_offset(file: OpenFile, offset: int, fmode: int, call: Callable[[], T]) -> T:
    """``sys_pread64()`` / ``sys_pwrite64()``: ``call`` at ``offset``, the file's own
    position left as it was.  EINVAL for a negative loff_t first, EBADF for an O_PATH
    file (:func:`fget_light`), then ESPIPE without ``fmode`` (FMODE_PREAD, FMODE_PWRITE),
    before the read or write checks anything: ``nonseekable_open()`` cleared both,
    ``seq_open()`` FMODE_PWRITE."""
    if offset > LLONG_MAX:
        raise KernelError(errno.EINVAL)
    if not fget_light(file).f_mode & fmode:
        raise KernelError(errno.ESPIPE)
    saved, file.pos = file.pos, offset
    try:
        return call()
    finally:
        file.pos = saved


def watch_client(file: OpenFile) -> None:
    """Bind a trace_pipe file's reads to the current call's ``signal_pending()`` (a
    signal, or the client gone) and have a signal wake a read blocked in it
    (``signal_wake_up()``, :meth:`TracePipeOpenFile.interrupt`). For a Session the call's
    :class:`SigPending` is the session's, one for all its operations: a signal taken as
    one leaves the kernel is no longer pending for the next read. A file that never
    blocks needs neither."""
    if isinstance(file, TracePipeOpenFile):
        pending = current_sigpending()
        file.signal_pending = pending.signal_pending
        pending.wake_on_signal(file.interrupt)


def write_until_done(file: OpenFile, data: bytes,
                     session: bool = False) -> tuple[list[int], KernelError | None]:
    """The caller's write loop (stdio's flush, a shell's echo), run here to spare a round
    trip per write(2): after a short write, the rest again, while no signal is pending
    (the caller went away, or was signalled: a killed or interrupted echo stops between
    two write(2)s). Returns each write's size and the failure that ended the loop, if one
    did; what the earlier writes consumed stays written.

    WriteFile (open and writes in one call) tests before the first write too: its
    process dies on the way out of open(2). A Session's write operation (``session``)
    is in its first write(2) from the moment it enters the kernel, and that write runs
    to its end whatever comes meanwhile (a filter write has no interruptible wait): it
    tests only after a write."""
    sizes: list[int] = []
    rest = memoryview(data)  # the rest is handed on, not copied: see kernel_daemon/uaccess.py
    pending = current_sigpending()
    while rest and (session and not sizes or not pending.signal_pending()):
        try:
            written = file_write(file, rest)
        except KernelError as err:
            return sizes, err
        if written <= 0:
            break
        sizes.append(written)
        rest = rest[written:]
    return sizes, None


def dir_entry(entry: DirEntry) -> pb.DirEntry:
    return pb.DirEntry(name=entry.name, is_dir=entry.is_dir, mode=entry.mode)


class TracefsService(tracefs_pb2_grpc.TracefsServicer):
    def __init__(self, state: DaemonState) -> None:
        self.state = state

    def _open(self, boot: Boot, path: str, flags: int) -> OpenFile:
        with failing_as("open", path):
            file = boot.vfs.open(path, flags)
        self.state.open_files.add(file)
        return file

    def _release(self, file: OpenFile) -> None:
        try:
            file_release(file)
        finally:
            self.state.open_files.discard(file)

    @translate_kernel_errors
    def Session(self, request_iterator: Iterator[pb.FileRequest],
                context: grpc.ServicerContext) -> Iterator[pb.FileResponse]:
        """One open file: the first request opens it, each later one is answered in
        order, and whatever ends the stream releases it. A protocol error (a request
        with no operation, a first request other than open, a second open) raises its
        EINVAL, which ends the call (translate_kernel_errors) after the release."""
        file: OpenFile | None = None
        boot: Boot = self.state.boot  # the boot the file is open in, once it is
        task = self.state.caller(context)
        # The process's thread in the kernel during each operation (kill(2) finds it
        # there), one SigPending for all: the file's wake-up for a signal is registered
        # once, at the open.
        inside = InKernel(task, self.state.signals, SigPending(context))
        try:
            for seq, request in enumerate(self.state.next_requests(
                    request_iterator, context, lambda: boot.gone()), 1):
                op = request.WhichOneof("op")
                if op is None:
                    raise KernelError(errno.EINVAL, "a request with no operation")
                if (op == "open") != (file is None):
                    raise KernelError(errno.EINVAL, "the first request must be open"
                                      if file is None else "the session already has a file open")
                if op == "open":
                    boot = self.state.boot
                    # The boot fence (DaemonState.caller), against the boot it opens in.
                    self.state.caller(context, boot)
                # The process died with its kernel, or opens in one the daemon's stop
                # ended (DaemonState.syscall): it learns so at this request.
                boot.refuse_if_ended()
                # A failed operation's signal is lost with the call, which ends with its
                # error.
                with inside:
                    if op == "open":
                        file = self._open(boot, request.open.path, request.open.flags)
                        watch_client(file)
                        _, node = boot.vfs.lookup(file.path)
                        response = pb.FileResponse(seq=seq, open=pb.OpenResult(
                            path=file.path, flags=file.flags, mode=node.mode))
                    elif op == "close":
                        assert file is not None
                        closing, file = file, None
                        self._release(closing)
                        response = pb.FileResponse(seq=seq, close=pb.CloseResult(result=0))
                    else:
                        assert file is not None
                        response = self._file_op(boot, seq, file, op, request)
                response.signal = inside.signo
                yield response
                if op == "close":
                    return
        finally:
            if file is not None:
                with running_as(task):
                    self._release(file)

    def _file_op(self, boot: Boot, seq: int, file: OpenFile, op: str,
                 request: pb.FileRequest) -> pb.FileResponse:
        """The answer to one read, write or lseek: its result, or its errno in-band (a
        write loop's with the bytes the writes before the failing one consumed)."""
        written = 0
        try:
            with failing_as(syscall_of(op, request), file.path):
                if op == "read":
                    return pb.FileResponse(seq=seq, read=self._read(file, request.read))
                if op == "write":
                    sizes, failure = self._write(file, request.write)
                    if failure is None:
                        return pb.FileResponse(seq=seq, write=pb.WriteResult(
                            bytes_written=sum(sizes), offset=file.pos,
                            write_sizes=sizes if request.write.until_done else ()))
                    written = sum(sizes)
                    raise failure
                offset = file_llseek(file, request.seek.offset, request.seek.whence)
                return pb.FileResponse(seq=seq, seek=pb.SeekResult(offset=offset))
        except KernelError as err:
            if boot.ended:  # a read the shutdown woke: the process is gone
                raise boot.gone() from None
            return pb.FileResponse(seq=seq, bytes_written=written, error=errno_detail(err))

    @staticmethod
    def _read(file: OpenFile, request: pb.ReadRequest) -> pb.ReadResult:
        """read(2), or pread(2) at ``offset``, of at most MAX_READ_ANSWER bytes."""
        size = min(request.size or READ_CHUNK, MAX_READ_ANSWER)
        if request.HasField("offset"):
            data = at_offset(file, request.offset, FMODE_PREAD, lambda: file_read(file, size))
        else:
            data = file_read(file, size)
        return pb.ReadResult(data=data, eof=not data, offset=file.pos)

    @staticmethod
    def _write(file: OpenFile, request: pb.WriteRequest) -> tuple[list[int], KernelError | None]:
        """write(2), or the caller's loop of them (``until_done``); at ``offset``, pwrite(2).
        Returns each write's size and the failure that ended the loop, if one did; a
        single write's failure is raised (it consumed nothing)."""
        def write() -> tuple[list[int], KernelError | None]:
            if not request.until_done:
                return [file_write(file, request.data)], None
            return write_until_done(file, request.data, session=True)

        if request.HasField("offset"):
            return at_offset(file, request.offset, FMODE_PWRITE, write)
        return write()

    @translate_kernel_errors
    def ReadFile(self, request: pb.ReadFileRequest, context: grpc.ServicerContext) -> pb.ReadFileResponse:
        path = request.path
        flags = os.O_RDONLY | (os.O_NONBLOCK if request.nonblock else 0)
        with self.state.syscall(context) as boot:
            file = self._open(boot, path, flags)
            watch_client(file)
            chunks: list[bytes] = []
            blocks = not request.nonblock and type(file).interrupt is not OpenFile.interrupt
            try:
                with self.state.stream_slots.held() if blocks else contextlib.nullcontext():
                    would_block, truncated = self._read_all(boot, file, path,
                                                            request.max_bytes, chunks)
            finally:
                self._release(file)
            return pb.ReadFileResponse(data=chunks[0] if len(chunks) == 1 else b"".join(chunks),
                                       would_block=would_block, truncated=truncated)

    @staticmethod
    def _read_all(boot: Boot, file: OpenFile, path: str, max_bytes: int,
                  chunks: list[bytes]) -> tuple[bool, bool]:
        """``cat``'s reads into ``chunks``: to EOF, to EAGAIN (O_NONBLOCK only), to
        ``max_bytes`` (0: none), to a read a signal interrupts (EINTR) or the end of
        ``boot`` fails after others returned data, and never past MAX_READ_ANSWER.
        Returns whether a read would have blocked and whether the loop stopped at its
        limit.

        The signal (Kernel.Kill; the caller gone) ends cat as its read returns, and
        what the reads before returned cat has already written out: a consuming read's
        (trace_pipe's, whose lines are off the buffer) is answered, not lost with the
        EINTR. A read that returned nothing fails with it, as read(2) returns -EINTR
        only when it copied nothing (3.6's tracing_wait_pipe(): within one read, a
        wait comes only before anything is consumed).

        The end of the boot (Boot.end: Kernel.Reboot, the daemon's stop) is the same
        to cat. A machine going down kills its processes first (init's SIGTERM, then
        SIGKILL, before reboot(2)): the fatal signal wakes the read waiting in
        tracing_wait_pipe(), which returns -EINTR having copied nothing, and cat dies
        on its way out, its earlier reads written out. Here the woken read fails with
        the ENODEV of a kernel gone (TracePipeOpenFile, once the ring buffer is closed):
        after reads that returned data, the loop ends and those are answered; with
        none, the call fails with that ENODEV. The caller learns that its kernel went
        at its next call, as a Session waiting for its next request does. Only
        trace_pipe's reads are answered so: theirs are off the buffer, where the part
        of another file read before the end would pass for the whole of it (a listing
        whose next read met its kernel's shared memory unlinked), and fails.

        Up to ``max_bytes`` the last read(2) asks for no more than is left: nothing is
        read past it.  Up to MAX_READ_ANSWER every read(2) asks for a page, and the loop
        stops with less than a page of room left: trace_pipe returns whole lines to a
        read of a page (tracing_read_pipe), but a read of less takes a line out of the
        buffer whole and returns its beginning, the rest lost with the release, and a cut
        the caller did not ask for must lose nothing."""
        exact = 0 < max_bytes <= MAX_READ_ANSWER
        limit = max_bytes if exact else MAX_READ_ANSWER
        size = 0
        while size < limit:
            count = min(READ_CHUNK, limit - size)
            if count < READ_CHUNK and not exact:
                break
            try:
                with failing_as("read", path):
                    data = file_read(file, count)
            except KernelError as err:
                if chunks and (err.errno == errno.EINTR
                               or boot.ended and isinstance(file, TracePipeOpenFile)):
                    return False, False
                if err.errno != errno.EAGAIN:  # EAGAIN: only with O_NONBLOCK
                    raise
                return True, False
            if not data:
                return False, False
            chunks.append(data)
            size += len(data)
        return False, True

    @translate_kernel_errors
    def WriteFile(self, request: pb.WriteFileRequest, context: grpc.ServicerContext) -> pb.WriteFileResponse:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if request.append else os.O_TRUNC)
        with self.state.syscall(context, report_locking=True) as boot:
            file = self._open(boot, request.path, flags)
            try:
                sizes, failure = write_until_done(file, request.data)
            finally:
                self._release(file)
            total = sum(sizes)
            if failure is not None:
                add_trailing_metadata(context, ((BYTES_WRITTEN_METADATA_KEY, str(total)),))
                with failing_as("write", request.path):
                    raise failure
            return pb.WriteFileResponse(bytes_written=total, write_sizes=sizes)

    @translate_kernel_errors
    def TracePipe(self, request: pb.TracePipeRequest,
                  context: grpc.ServicerContext) -> Iterator[pb.TracePipeChunk]:
        """``cat trace_pipe``: a blocking, consuming read loop until the client leaves, a
        signal comes (the stream ends with OK and the signal's trailer) or a read returns
        EOF. The whole loop is one stay in the kernel: a signal that comes while the
        client takes a chunk ends the next read."""
        path = (f"{TRACING}/per_cpu/cpu{request.cpu}/trace_pipe" if request.HasField("cpu")
                else f"{TRACING}/trace_pipe")
        flags = os.O_RDONLY | (os.O_NONBLOCK if request.nonblock else 0)
        with self.state.syscall(context) as boot:
            file = self._open(boot, path, flags)
            watch_client(file)
            pending = current_sigpending()
            try:
                while not pending.signal_pending():
                    try:
                        with failing_as("read", path):
                            data = file_read(file, READ_CHUNK)
                    except KernelError as err:
                        if err.errno in (errno.EINTR, errno.EAGAIN):
                            return
                        raise
                    if not data:  # EOF: tracing_wait_pipe()'s end with tracing disabled
                        return
                    yield pb.TracePipeChunk(data=data)
            finally:
                self._release(file)

    @translate_kernel_errors
    def ListDir(self, request: pb.ListDirRequest, context: grpc.ServicerContext) -> pb.ListDirResponse:
        """``ls DIR``: opendir()'s open(O_DIRECTORY), whose errors these are, then
        getdents()."""
        with self.state.syscall(context) as boot:
            with failing_as("open", request.path):
                entries = boot.vfs.list_dir(request.path)
                path, _ = boot.vfs.lookup(request.path)
            return pb.ListDirResponse(path=path, entries=[dir_entry(e) for e in entries])

    @translate_kernel_errors
    def Stat(self, request: pb.StatRequest, context: grpc.ServicerContext) -> pb.StatResponse:
        with self.state.syscall(context) as boot:
            with failing_as("stat", request.path):
                path, _ = boot.vfs.lookup(request.path)
            return pb.StatResponse(path=path, entry=dir_entry(boot.vfs.stat(request.path)))
