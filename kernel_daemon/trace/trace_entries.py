"""The entries the function tracer puts in the ring buffer, as C lays them out on x86_64,
and the ``events/ftrace/<name>/format`` files that describe them (3.6).

``struct trace_entry`` (``include/linux/ftrace_event.h``) starts every entry: 3.6 still has
its ``padding`` int, which ``tracing_generic_entry_update()`` zeroes, so the common fields
take 12 bytes.  ``struct ftrace_entry`` and ``struct print_entry`` are the ``function`` and
``print`` entries of ``kernel/trace/trace_entries.h``: ``trace_export.c`` turns each into
an ``ftrace_event_call`` of system ``ftrace`` whose fields (``trace_define_field()``: the
C type's text, the member's name, ``offsetof``, ``sizeof``, ``is_signed_type()``) and
``print_fmt`` (``__stringify`` of ``F_printk()``, ``__entry`` spelt ``REC``) the format
file prints, as ``f_show()`` of ``trace_events.c`` does.

One table of members is the source of the offsets both the format files print and the
packing of the entries uses, so the two cannot disagree.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from kernel_daemon.trace.buffers import TRACE_FN, TRACE_PRINT, Event


class Field(NamedTuple):
    """``struct ftrace_event_field``: one line of a format file."""

    type: str
    name: str
    offset: int
    size: int
    signed: bool


def is_signed_type(ctype: str) -> bool:
    """``is_signed_type()`` of the types these entries use; ``char`` is signed on x86."""
    return not ctype.startswith("unsigned")


def align(value: int, to: int) -> int:
    return -(-value // to) * to


def c_struct(members: tuple[tuple[str, str, int], ...], start: int = 0, start_align: int = 1
             ) -> tuple[tuple[Field, ...], int]:
    """Lay out ``(C type, name, size)`` members as gcc does on x86_64, after ``start``
    bytes of an embedded struct aligned to ``start_align``: each scalar at a multiple of
    its size, a flexible array (size 0: ``char buf[]``) at the next byte.  Returns the
    fields and ``sizeof`` the struct, a multiple of its strictest alignment."""
    fields = []
    offset, strictest = start, start_align
    for ctype, name, size in members:
        offset = align(offset, size or 1)
        fields.append(Field(ctype, name, offset, size, is_signed_type(ctype)))
        offset += size
        strictest = max(strictest, size)
    return tuple(fields), align(offset, strictest)


# struct trace_entry; the format files name its members common_<member>.
TRACE_ENTRY_FIELDS, TRACE_ENTRY_SIZE = c_struct((
    ("unsigned short", "type", 2),
    ("unsigned char", "flags", 1),
    ("unsigned char", "preempt_count", 1),
    ("int", "pid", 4),
    ("int", "padding", 4),
))
TRACE_ENTRY_ALIGN = 4  # its ints'
COMMON_FIELDS = tuple(f._replace(name=f"common_{f.name}") for f in TRACE_ENTRY_FIELDS)
assert TRACE_ENTRY_SIZE == 12

_CODES = {(1, False): "B", (2, False): "H", (4, False): "I", (8, False): "Q",
          (1, True): "b", (2, True): "h", (4, True): "i", (8, True): "q"}


# trace_export.c's TRACE_SYSTEM: the system of every call it defines.
TRACE_SYSTEM = "ftrace"


class FtraceEventCall(NamedTuple):
    """An ``ftrace_event_call`` of ``trace_export.c``: ``events/ftrace/<name>/``."""

    name: str
    type: int  # call->event.type: the entry's enum trace_type
    fields: tuple[Field, ...]  # after the common ones
    size: int  # sizeof the entry struct
    print_fmt: str
    # class->reg: FTRACE_ENTRY_REG gives one (perf_ftrace_event_register); with it, and
    # CONFIG_PERF_EVENTS, event_create_dir() makes an "id" file.
    reg: bool
    # The scalar fields, common ones first, each at its offset (gaps as pad bytes).
    header: struct.Struct


def ftrace_event(name: str, etype: int, members: tuple[tuple[str, str, int], ...],
                 print_fmt: str, reg: bool = False) -> FtraceEventCall:
    fields, size = c_struct(members, TRACE_ENTRY_SIZE, TRACE_ENTRY_ALIGN)
    fmt, offset = "<", 0
    for f in (*COMMON_FIELDS, *fields):
        if f.size:
            fmt += "x" * (f.offset - offset) + _CODES[f.size, f.signed]
            offset = f.offset + f.size
    return FtraceEventCall(name, etype, fields, size, print_fmt, reg, struct.Struct(fmt))


# FTRACE_ENTRY_REG(function, ftrace_entry, TRACE_FN, ...): F_printk(" %lx <-- %lx", ...).
FUNCTION = ftrace_event("function", TRACE_FN,
                        (("unsigned long", "ip", 8), ("unsigned long", "parent_ip", 8)),
                        '" %lx <-- %lx", REC->ip, REC->parent_ip', reg=True)
# FTRACE_ENTRY(print, print_entry, TRACE_PRINT, ...): __dynamic_array(char, buf), whose
# field the format file shows with the bare type, size 0.
PRINT = ftrace_event("print", TRACE_PRINT,
                     (("unsigned long", "ip", 8), ("char", "buf", 0)),
                     '"%08lx %s", REC->ip, REC->buf')
FTRACE_EVENTS = (FUNCTION, PRINT)
assert (FUNCTION.size, PRINT.size) == (32, 24)


def pack_header(call: FtraceEventCall, ev: Event) -> bytes:
    """The fixed part of ``ev``'s entry: ``trace_entry`` as ``tracing_generic_entry_update()``
    fills it (``padding`` 0), then the entry's scalar fields, named as ``ev``'s."""
    return call.header.pack(ev.type, ev.flags & 0xFF, ev.flags >> 8 & 0xFF, ev.pid, 0,
                            *(getattr(ev, f.name) for f in call.fields if f.size))


def print_entry_size(text_len):  # int or numpy array
    """The bytes ``tracing_mark_write()`` reserves for a marker: ``sizeof(*entry) + cnt +
    2`` (room for a newline and the NUL).  The model keeps the text, newline included, not
    the count written; this is the size of a write that ended with its newline, as
    echo's does (for one that did not, the kernel reserves a byte less)."""
    return PRINT.size + text_len + 2


def pack_entry(ev: Event) -> bytes:
    """The entry ``ev`` was written as: ``ftrace_entry``, or ``print_entry`` with its text,
    the NUL and the rest of the reserve zeroed."""
    if ev.type == TRACE_PRINT:
        reserve = print_entry_size(len(ev.text)) - PRINT.size
        return pack_header(PRINT, ev) + ev.text.ljust(reserve, b"\0")
    return pack_header(FUNCTION, ev)


def field_line(f: Field) -> str:
    """One field as ``f_show()`` prints it (these types have no ``[``: no array part)."""
    return (f"\tfield:{f.type} {f.name};\toffset:{f.offset};\tsize:{f.size};"
            f"\tsigned:{int(f.signed)};")


def event_format(call: FtraceEventCall) -> str:
    """``events/ftrace/<name>/format``: ``f_show()`` over the header, the common fields, a
    blank line, the event's fields, and the print format."""
    return "\n".join(("name: " + call.name, f"ID: {call.type}", "format:",
                      *map(field_line, COMMON_FIELDS), "", *map(field_line, call.fields), "",
                      "print fmt: " + call.print_fmt)) + "\n"
