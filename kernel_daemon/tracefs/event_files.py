"""The files of ``kernel/trace/trace_events.c`` (3.6), as far as the model has events:
``available_events``, ``set_event`` and the ``events/`` directory with the ring buffer's
formats (``header_page``, ``header_event``), ``enable``, and the ``ftrace`` system's
directory: its ``enable`` and an ``id`` and ``format`` for each entry of
``trace_entries.h``, which a binary reader of ``trace_pipe_raw`` needs to decode it.

The model's ``ftrace_events`` list holds only the ``ftrace`` system's calls
(``trace_export.c``), and that file gives every one of them ``.flags =
TRACE_EVENT_FL_IGNORE_ENABLE``: the ftrace system "is for showing formats only".
``__ftrace_set_clr_event()`` skips such a call before it looks at its name, so no event
can be enabled here: ``set_event`` reads empty, and every name written to it, or a 0 or
1 to an ``enable`` file, fails with EINVAL, as 3.6 does for a name that matches nothing.

``event_create_dir()`` gives an event an ``id`` file only when its class has a ``reg``
method (with CONFIG_PERF_EVENTS): of the ftrace system's, ``function``
(``FTRACE_ENTRY_REG``).  None has ``enable`` (``TRACE_EVENT_FL_IGNORE_ENABLE``).  Not
modelled: each event's ``filter`` and the ``ftrace`` system's ``filter``
(``trace_events_filter.c``'s predicates).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.regex_file import TraceParser, trace_get_user
from kernel_daemon.strings import kstrtoul_from_user
from kernel_daemon.trace.ring_buffer_page import (ring_buffer_print_entry_header,
                                                  ring_buffer_print_page_header)
from kernel_daemon.trace.trace_entries import (FTRACE_EVENTS, TRACE_SYSTEM, FtraceEventCall,
                                               event_format)
from kernel_daemon.tracefs.files import (FileOps, GeneratedFile, OpenFile, SeqText,
                                         SimpleReadOpenFile, seq_open)
from kernel_daemon.tracefs.llseek import default_llseek
from kernel_daemon.tracefs.seq_file import SeqSnapshot
from kernel_daemon.tracefs.vfs import Directory
from kernel_daemon.uaccess import UserBuffer, copy_from_user

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


# ftrace_event_write()'s parser holds EVENT_BUF_SIZE + 1 bytes ("128 should be much
# more than enough"): a longer name is trace_get_user()'s EINVAL.
EVENT_BUF_SIZE = 127


def t_show(call: FtraceEventCall) -> str:
    """``t_show()``: ``system:name``, the system left out only for the default
    ``TRACE_SYSTEM``, which the ftrace system's is not."""
    return f"{TRACE_SYSTEM}:{call.name}\n"


def available_events(kernel: Kernel) -> str:
    """``available_events``: ``t_next()`` walks ``ftrace_events`` for the calls whose class
    has a ``reg`` method.  Its comment says the ftrace system's are for showing formats,
    but the test lets ``function`` through (``FTRACE_ENTRY_REG``'s
    ``perf_ftrace_event_register``).  ``list_add()`` put the calls there newest first."""
    return "".join(t_show(call) for call in reversed(FTRACE_EVENTS) if call.reg)


class SetEventOpenFile(SeqText):
    """An open ``set_event``: ``show_set_event_seq_ops`` over the enabled calls, of which
    there are none (module docstring), and ``ftrace_event_write()``."""

    def __init__(self, kernel: Kernel, path: str, flags: int) -> None:
        super().__init__(path, flags, SeqSnapshot(tuple).operations())
        self.kernel = kernel

    def write(self, data: UserBuffer) -> int:
        """``ftrace_event_write()``: ``tracing_update_buffers()`` first (the ring buffer
        is expanded whatever was written), then one name with a fresh parser
        (``trace_get_user()``, which moves ``*ppos`` past it).  A name, ``!name`` to
        clear it, ``system:event``, ``system:*``, ``*:event`` or a bare event or system
        name, goes to ``ftrace_set_clr_event()``, whose ``__ftrace_set_clr_event()``
        finds no call it may enable or disable: EINVAL.  Only spaces return the count."""
        if not data:
            return 0
        self.kernel.tracing.tracing_update_buffers()
        parser = TraceParser(EVENT_BUF_SIZE + 1)
        read = trace_get_user(parser, data, self.pos)
        self.pos += read
        if parser.loaded():
            raise KernelError(errno.EINVAL)
        return read


class SetEventFile(FileOps):
    """``ftrace_set_event_fops``: ``ftrace_event_seq_open()`` calls ``seq_open()`` for
    any mode; its ``ftrace_clear_events()``, for a write open with O_TRUNC, finds no
    enabled event to disable."""

    mode = 0o644

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        return seq_open(SetEventOpenFile(kernel, path, flags))


class SystemEnableOpenFile(SimpleReadOpenFile):
    """An open ``events/enable`` (no system) or ``events/ftrace/enable``:
    ``ftrace_system_enable_fops``; ``subsystem_open()`` finds the ftrace system with
    events."""

    def __init__(self, kernel: Kernel, path: str, flags: int) -> None:
        # system_enable_read(): '0', as every call with a reg method (function, in the
        # ftrace system) is disabled.
        super().__init__(path, flags, lambda: "0\n", default_llseek)
        self.kernel = kernel

    def write(self, data: UserBuffer) -> int:
        """``system_enable_write()``: ``kstrtoul_from_user()``, then
        ``tracing_update_buffers()`` (expanded even when the value is refused), then
        EINVAL for a value other than 0 or 1 with ``*ppos`` unmoved; 0 and 1 go to
        ``__ftrace_set_clr_event()``, which finds no call it may enable or disable: EINVAL,
        after ``*ppos += cnt``."""
        val = kstrtoul_from_user(copy_from_user(data))
        self.kernel.tracing.tracing_update_buffers()
        if val not in (0, 1):
            raise KernelError(errno.EINVAL)
        self.pos += len(data)
        raise KernelError(errno.EINVAL)


class SystemEnableFile(FileOps):
    """``ftrace_system_enable_fops``: 0644, ``default_llseek``."""

    mode = 0o644

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        return SystemEnableOpenFile(kernel, path, flags)


def events_directory() -> Directory:
    """``event_trace_init()``'s ring buffer formats and ``enable``, and
    ``events/ftrace/`` as ``event_subsystem_dir()`` makes it (its ``enable``), with
    ``event_create_dir()``'s ``<event>/`` for each entry of
    :mod:`kernel_daemon.trace.trace_entries`."""
    events = Directory()
    events["header_page"] = ShowOnceFile(ring_buffer_print_page_header)
    events["header_event"] = ShowOnceFile(ring_buffer_print_entry_header)
    events["enable"] = SystemEnableFile()
    ftrace = events[TRACE_SYSTEM] = Directory()
    ftrace["enable"] = SystemEnableFile()
    for call in FTRACE_EVENTS:
        event = ftrace[call.name] = Directory()
        if call.reg:
            event["id"] = ShowOnceFile(lambda text=f"{call.type}\n": text)
        # ftrace_event_format_fops: a seq_file.
        event["format"] = GeneratedFile(lambda k, text=event_format(call): text)
    return events
