"""``per_cpu/cpuN/trace_pipe_raw``: ``tracing_buffers_fops`` of ``kernel/trace/trace.c``
(3.6), the ring buffer's pages as they are, for trace-cmd and other binary readers.

The pages are :mod:`kernel_daemon.trace.ring_buffer_page`'s; this is the file around
them: ``tracing_buffers_open()``, ``tracing_buffers_read()``, ``tracing_buffers_release()``.
``splice_read`` has no counterpart: the model's files are read with read(2) only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel_daemon.trace.buffers import PAGE_SIZE
from kernel_daemon.trace.ring_buffer_page import ring_buffer_read_page
from kernel_daemon.tracefs.files import FileOps, OpenFile, nonseekable_open

if TYPE_CHECKING:
    from kernel_daemon.kernel import Kernel


class TracingBuffersOpenFile(OpenFile):
    """``struct ftrace_buffer_info``: the CPU, the spare page and how much of it the reader
    has had (``read``).

    A read hands out what is left of the spare page if anything is, and nothing else;
    otherwise ``ring_buffer_read_page()`` consumes into it the events that fit in the
    count, and the read returns the page's first ``count`` bytes, at most a page: so a read
    of 4096 gets a whole page, one of 100 the header and the events that fit in 84 bytes,
    and the next reads the rest of that page.  Past the events a page holds what the spare
    page held before (3.6 does not clear it on this path).  An empty buffer, or a count of
    16 bytes or less, reads 0: 3.6 neither waits nor fails with EAGAIN, O_NONBLOCK or not.
    """

    def __init__(self, kernel: Kernel, path: str, flags: int, cpu: int) -> None:
        super().__init__(path, flags)
        self.ring_buffer = kernel.ring_buffer
        self.cpu = cpu
        # ring_buffer_alloc_read_page() at the first read; the model's starts out zeroed.
        self.spare: bytearray | None = None
        # info->read = (unsigned int)-1: "force reading ring buffer for first read".
        self.read_pos = PAGE_SIZE

    def read(self, size: int) -> bytes:
        if not size:
            return b""
        if self.spare is None:
            self.spare = bytearray(PAGE_SIZE)
        if self.read_pos >= PAGE_SIZE:
            if not ring_buffer_read_page(self.ring_buffer, self.spare, size, self.cpu):
                return b""
            self.read_pos = 0
        chunk = bytes(self.spare[self.read_pos:self.read_pos + size])
        self.read_pos += len(chunk)
        self.pos += len(chunk)
        return chunk


class TracingBuffersFile(FileOps):
    """``tracing_buffers_fops``, made 0444 by ``tracing_init_debugfs_percpu()``."""

    def __init__(self, cpu: int) -> None:
        self.cpu = cpu

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        file = TracingBuffersOpenFile(kernel, path, flags, self.cpu)
        # tracing_buffers_open() returns nonseekable_open(); tracing_buffers_fops' .llseek
        # is no_llseek (the default).
        nonseekable_open(file)
        return file
