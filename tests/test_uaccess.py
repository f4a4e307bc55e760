"""A write method gets a view of the caller's buffer and copies what it takes.

The daemon hands the rest of a caller's buffer to each write(2) of its write loop as a
view (kernel_daemon/uaccess.py).  What a handler keeps after the write returns, the
ring buffer's event or a filter token continued by the next write, must be its own
copy: the caller's memory may change, as a user buffer may after write(2) returns.
"""

from __future__ import annotations

import os

from kernel_daemon.task import Task, running_as
from kernel_daemon.tracefs.files import file_release, file_write
from kernel_daemon.tracefs.tree import mount
from tests.kernel_helpers import T, booted, cat


def test_a_trace_marker_event_is_the_bytes_written_not_the_buffer_later():
    with booted() as kernel:
        vfs = mount(kernel)
        buffer = bytearray(b"hello\n" + b"x" * 3000)
        f = vfs.open(f"{T}/trace_marker", os.O_WRONLY)
        with running_as(Task(4242, "writer")):
            taken = file_write(f, memoryview(buffer))
        file_release(f)
        buffer[:] = b"Z" * len(buffer)
        assert taken == 1024  # TRACE_BUF_SIZE: the loop would hand on the rest
        assert "tracing_mark_write: hello\n" in cat(vfs, f"{T}/trace")
        assert "Z" not in cat(vfs, f"{T}/trace")


def test_a_filter_token_continued_by_the_next_write_keeps_its_first_part():
    with booted() as kernel:
        vfs = mount(kernel)
        buffer = bytearray(b"  sched")
        f = vfs.open(f"{T}/set_ftrace_filter", os.O_WRONLY | os.O_TRUNC)
        view = memoryview(buffer)
        assert file_write(f, view) == 7  # a token up to the buffer's end is continued
        buffer[:] = b"XXXXXXX"
        assert file_write(f, memoryview(b"ule\n")) == 4
        file_release(f)
        assert cat(vfs, f"{T}/set_ftrace_filter") == "schedule\n"
