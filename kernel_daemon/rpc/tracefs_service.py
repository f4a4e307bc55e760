"""``ftrace.v1.Tracefs``: files as system calls.

A ``Session`` stream is one open file descriptor of one process: the stream's end,
however it comes (a close, the client's exit, a cancel, a dropped connection), is the
last ``fput`` and runs the file's release, as a process that exits closes its files.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import grpc

from ftrace.v1 import tracefs_pb2 as pb
from ftrace.v1 import tracefs_pb2_grpc
from kernel_daemon.errno import KernelError
from kernel_daemon.rpc.state import Boot, BoundRequests, DaemonState
from kernel_daemon.rpc.status import (BYTES_WRITTEN_METADATA_KEY, abort_with_errno,
                                      add_trailing_metadata, errno_detail,
                                      translate_kernel_errors)
from kernel_daemon.task import current, enter_task, leave_task, running_as
from kernel_daemon.tracefs.files import OpenFile, file_read, file_release, file_write
from kernel_daemon.tracefs.vfs import DirEntry

READ_CHUNK = 4096
TRACING = "/sys/kernel/debug/tracing"
# A shell's write loop gives up on a file that keeps accepting nothing.
MAX_WRITE_CALLS = 1 << 20


def for_syscall(err: KernelError, syscall: str, path: str) -> KernelError:
    return KernelError(err.errno, err.message, syscall=syscall, path=path)


def watch_client(context: grpc.ServicerContext, file: OpenFile) -> None:
    """Interrupt a blocked read of ``file`` when the client goes away; a file that never
    blocks (its ``interrupt`` is the default no-op) needs no callback."""
    if type(file).interrupt is not OpenFile.interrupt:
        context.add_callback(file.interrupt)


def dir_entry(entry: DirEntry) -> pb.DirEntry:
    return pb.DirEntry(name=entry.name, is_dir=entry.is_dir, mode=entry.mode)


class TracefsService(tracefs_pb2_grpc.TracefsServicer):
    def __init__(self, state: DaemonState) -> None:
        self.state = state

    def _open(self, boot: Boot, path: str, flags: int) -> OpenFile:
        try:
            file = boot.vfs.open(path, flags)
        except KernelError as err:
            raise for_syscall(err, "open", path) from None
        self.state.open_files.add(file)
        return file

    def _release(self, file: OpenFile) -> None:
        try:
            file_release(file)
        finally:
            self.state.open_files.discard(file)

    def Session(self, request_iterator: Iterator[pb.FileRequest],
                context: grpc.ServicerContext) -> Iterator[pb.FileResponse]:
        file: OpenFile | None = None
        # The open file ties the session to its boot: a reboot ends it with ENODEV.
        requests: BoundRequests[pb.FileRequest] = BoundRequests(request_iterator)
        try:
            task = self.state.caller(context)
            seq = 0
            for request in requests:
                seq += 1
                # ``with running_as(task):`` without its three Python calls per request.
                token = enter_task(task)
                try:
                    op = request.WhichOneof("op")
                    if op == "open":
                        if file is not None:
                            yield pb.FileResponse(seq=seq, error=errno_detail(
                                KernelError(errno.EBUSY, "the session already has a file open")))
                            continue
                        boot = self.state.boot
                        try:
                            file = self._open(boot, request.open.path, request.open.flags)
                        except KernelError as err:
                            abort_with_errno(context, err)
                        requests.bind(boot)
                        watch_client(context, file)
                        _, node = boot.vfs.lookup(file.path)
                        yield pb.FileResponse(seq=seq, open=pb.OpenResult(
                            path=file.path, flags=file.flags, mode=node.mode))
                        continue
                    if file is None:
                        yield pb.FileResponse(seq=seq, error=errno_detail(
                            KernelError(errno.EBADF, "no file is open in this session")))
                        continue
                    if op == "close":
                        closing, file = file, None
                        self._release(closing)
                        yield pb.FileResponse(seq=seq, close=pb.CloseResult(result=0))
                        return
                    try:
                        yield self._file_op(seq, file, op, request)
                    except KernelError as err:
                        yield pb.FileResponse(seq=seq, error=errno_detail(
                            for_syscall(err, op or "", file.path)))
                finally:
                    leave_task(token)
        except KernelError as err:  # malformed identity metadata; the boot ended
            abort_with_errno(context, err)
        finally:
            requests.unbind()
            if file is not None:
                with running_as(task):
                    self._release(file)

    def _file_op(self, seq: int, file: OpenFile, op: str | None,
                 request: pb.FileRequest) -> pb.FileResponse:
        if op == "read":
            if request.read.HasField("offset"):
                file.pos = request.read.offset
            data = file_read(file, request.read.size or READ_CHUNK)
            return pb.FileResponse(seq=seq, read=pb.ReadResult(
                data=data, eof=not data, offset=file.pos))
        if op == "write":
            if request.write.HasField("offset"):
                file.pos = request.write.offset
            written = file_write(file, request.write.data)
            return pb.FileResponse(seq=seq, write=pb.WriteResult(
                bytes_written=written, offset=file.pos))
        if op == "seek":
            # seq_lseek: SEEK_SET and SEEK_CUR only, never before the start.
            whence, offset = request.seek.whence, request.seek.offset
            base = {os.SEEK_SET: 0, os.SEEK_CUR: file.pos}.get(whence)
            if base is None or base + offset < 0:
                raise KernelError(errno.EINVAL)
            file.pos = base + offset
            return pb.FileResponse(seq=seq, seek=pb.SeekResult(offset=file.pos))
        raise KernelError(errno.EINVAL, "empty request")

    @translate_kernel_errors
    def ReadFile(self, request: pb.ReadFileRequest, context: grpc.ServicerContext) -> pb.ReadFileResponse:
        path, max_bytes = request.path, request.max_bytes
        flags = os.O_RDONLY | (os.O_NONBLOCK if request.nonblock else 0)
        with self.state.syscall(context) as boot:
            file = self._open(boot, path, flags)
            watch_client(context, file)
            chunks: list[bytes] = []
            size = 0
            try:
                while not max_bytes or size < max_bytes:
                    try:
                        data = file_read(file, READ_CHUNK)
                    except KernelError as err:
                        if err.errno == errno.EAGAIN and chunks:
                            break
                        raise for_syscall(err, "read", path) from None
                    if not data:
                        break
                    chunks.append(data)
                    size += len(data)
            finally:
                self._release(file)
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            if max_bytes and size > max_bytes:
                return pb.ReadFileResponse(data=data[:max_bytes], truncated=True)
            return pb.ReadFileResponse(data=data)

    @translate_kernel_errors
    def WriteFile(self, request: pb.WriteFileRequest, context: grpc.ServicerContext) -> pb.WriteFileResponse:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if request.append else os.O_TRUNC)
        with self.state.syscall(context, report_locking=True) as boot:
            file = self._open(boot, request.path, flags)
            data, sizes, failure = request.data, [], None
            try:
                # The shell's write loop: a short write is followed by the rest.
                while data and len(sizes) < MAX_WRITE_CALLS:
                    try:
                        written = file_write(file, data)
                    except KernelError as err:
                        failure = for_syscall(err, "write", request.path)
                        break
                    if written <= 0:
                        break
                    sizes.append(written)
                    data = data[written:]
            finally:
                self._release(file)
            total = sum(sizes)
            if failure is not None:
                add_trailing_metadata(context, ((BYTES_WRITTEN_METADATA_KEY, str(total)),))
                raise failure
            return pb.WriteFileResponse(bytes_written=total, write_sizes=sizes)

    @translate_kernel_errors
    def TracePipe(self, request: pb.TracePipeRequest,
                  context: grpc.ServicerContext) -> Iterator[pb.TracePipeChunk]:
        """``cat trace_pipe``: a blocking, consuming read loop until the client leaves."""
        path = (f"{TRACING}/per_cpu/cpu{request.cpu}/trace_pipe" if request.HasField("cpu")
                else f"{TRACING}/trace_pipe")
        flags = os.O_RDONLY | (os.O_NONBLOCK if request.nonblock else 0)
        with self.state.syscall(context) as boot:
            task = current()
            file = self._open(boot, path, flags)
        context.add_callback(file.interrupt)
        try:
            while context.is_active():
                with running_as(task):
                    try:
                        data = file_read(file, READ_CHUNK)
                    except KernelError as err:
                        if err.errno in (errno.EINTR, errno.EAGAIN):
                            return
                        raise for_syscall(err, "read", path) from None
                yield pb.TracePipeChunk(data=data)
        finally:
            with running_as(task):
                self._release(file)

    @translate_kernel_errors
    def ListDir(self, request: pb.ListDirRequest, context: grpc.ServicerContext) -> pb.ListDirResponse:
        with self.state.syscall(context) as boot:
            entries = boot.vfs.list_dir(request.path)
            path, _ = boot.vfs.lookup(request.path)
            return pb.ListDirResponse(path=path, entries=[dir_entry(e) for e in entries])

    @translate_kernel_errors
    def Stat(self, request: pb.StatRequest, context: grpc.ServicerContext) -> pb.StatResponse:
        with self.state.syscall(context) as boot:
            path, _ = boot.vfs.lookup(request.path)
            return pb.StatResponse(path=path, entry=dir_entry(boot.vfs.stat(request.path)))
