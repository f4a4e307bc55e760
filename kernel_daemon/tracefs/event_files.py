"""The ``events/`` directory of ``kernel/trace/trace_events.c`` (3.6), as far as the model
has events: the ring buffer's formats (``header_page``, ``header_event``) and the ``ftrace``
system's ``function`` and ``print`` entries, which a binary reader of ``trace_pipe_raw``
needs to decode it.

``event_create_dir()`` gives an event an ``id`` file only when its class has a ``reg``
method (with CONFIG_PERF_EVENTS): of these two, ``function`` (``FTRACE_ENTRY_REG``).
Neither has ``enable`` (``TRACE_EVENT_FL_IGNORE_ENABLE``, or no ``reg``).  Not modelled:
each event's ``filter`` and the ``ftrace`` system's ``filter`` and ``enable``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kernel_daemon.trace.ring_buffer_page import (ring_buffer_print_entry_header,
                                                  ring_buffer_print_page_header)
from kernel_daemon.trace.trace_entries import FTRACE_EVENTS, event_format
from kernel_daemon.tracefs.files import FileOps, GeneratedFile, OpenFile, SimpleReadOpenFile
from kernel_daemon.tracefs.llseek import default_llseek
from kernel_daemon.tracefs.vfs import Directory

if TYPE_CHECKING:
    from kernel_daemon.kernel import Kernel


class ShowOnceOpenFile(SimpleReadOpenFile):
    """A read method that prints into a fresh ``trace_seq`` only at position 0 (``if
    (*ppos) return 0;``), then ``simple_read_from_buffer()``: ``show_header()`` and
    ``event_id_read()``.  A first read shorter than the text leaves the rest unread: the
    next one, at a position past 0, reads 0."""

    def __init__(self, path: str, flags: int, show: Callable[[], str]) -> None:
        super().__init__(path, flags, show, default_llseek)

    def read(self, size: int) -> bytes:
        if self.pos:
            return b""
        return super().read(size)


class ShowOnceFile(FileOps):
    """``ftrace_show_header_fops`` / ``ftrace_event_id_fops``: 0444, ``default_llseek``."""

    def __init__(self, show: Callable[[], str]) -> None:
        self.show = show

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        return ShowOnceOpenFile(path, flags, self.show)


def events_directory() -> Directory:
    """``event_trace_init()``'s ring buffer formats, and ``events/ftrace/<event>/`` for
    each entry of :mod:`kernel_daemon.trace.trace_entries`."""
    events = Directory()
    events["header_page"] = ShowOnceFile(ring_buffer_print_page_header)
    events["header_event"] = ShowOnceFile(ring_buffer_print_entry_header)
    ftrace = events["ftrace"] = Directory()
    for call in FTRACE_EVENTS:
        event = ftrace[call.name] = Directory()
        if call.reg:
            event["id"] = ShowOnceFile(lambda text=f"{call.type}\n": text)
        # ftrace_event_format_fops: a seq_file.
        event["format"] = GeneratedFile(lambda k, text=event_format(call): text)
    return events
