"""The entries of ``kernel/trace/trace_entries.h`` (3.6), as C lays them out on x86_64,
and the ``events/ftrace/<name>/format`` files that describe them.

``struct trace_entry`` (``include/linux/ftrace_event.h``) starts every entry: 3.6 still has
its ``padding`` int, which ``tracing_generic_entry_update()`` zeroes, so the common fields
take 12 bytes.  ``trace_export.c`` turns each ``FTRACE_ENTRY`` of ``trace_entries.h`` into
an ``ftrace_event_call`` of system ``ftrace`` whose fields (``trace_define_field()``: the
C type's text, the member's name, ``offsetof``, ``sizeof``, ``is_signed_type()``) and
``print_fmt`` (``__stringify`` of ``F_printk()``, macros expanded, ``__entry`` spelt
``REC``) the format file prints, as ``f_show()`` of ``trace_events.c`` does.  The model's
function tracer writes three of them, ``function`` (``struct ftrace_entry``), ``print``
(``struct print_entry``, a ``trace_marker`` write) and ``kernel_stack`` (``struct
stack_entry``, under ``func_stack_trace``); the others are there to be described.

One table of members is the source of the offsets both the format files print and the
packing of the entries uses, so the two cannot disagree.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from kernel_daemon.strings import ULONG_MAX
from kernel_daemon.trace.buffers import (BUF_MAX_DATA_SIZE, FTRACE_STACK_MAX_ENTRIES,
                                         MAX_STACK_FRAMES, STACK_FRAME, TRACE_BPRINT,
                                         TRACE_BRANCH, TRACE_CTX, TRACE_FN, TRACE_GRAPH_ENT,
                                         TRACE_GRAPH_RET, TRACE_MMIO_MAP, TRACE_MMIO_RW,
                                         TRACE_PRINT, TRACE_STACK, TRACE_USER_STACK, TRACE_WAKE,
                                         Event)

# trace_export.c's TRACE_SYSTEM: the system of every call it defines.
TRACE_SYSTEM = "ftrace"

# The C types of these entries on x86_64: sizeof, which is also the alignment, and
# is_signed_type(), ((type)(-1) < (type)0): char is signed on x86, a pointer is not, and
# resource_size_t is a u64 (CONFIG_PHYS_ADDR_T_64BIT).
C_TYPES = {
    "char": (1, True), "unsigned char": (1, False), "unsigned short": (2, False),
    "int": (4, True), "unsigned int": (4, False), "u32": (4, False),
    "unsigned long": (8, False), "unsigned long long": (8, False),
    "resource_size_t": (8, False), "const char *": (8, False),
}


class Field(NamedTuple):
    """``struct ftrace_event_field``: one line of a format file."""

    type: str
    name: str
    offset: int
    size: int
    signed: bool


def align(value: int, to: int) -> int:
    return -(-value // to) * to


#: A member: ``(C type, name)`` for ``__field`` and ``__field_desc``; ``(C type, name,
#: len)`` for ``__array`` (``type item[len]``), or with ``len`` 0 for ``__dynamic_array``
#: (``type item[]``).
Member = tuple[str, str] | tuple[str, str, int]


def c_struct(members: tuple[Member, ...], start: int = 0, start_align: int = 1
             ) -> tuple[tuple[Field, ...], int]:
    """Lay out ``members`` as gcc does on x86_64, after ``start`` bytes of an embedded
    struct aligned to ``start_align``: each at a multiple of its element's size.  An
    ``__array`` is ``"type[len]"`` to ``trace_define_field()``, of ``sizeof`` the array;
    a ``__dynamic_array`` has its bare type and size 0.  A ``__field_desc`` member of a
    nested struct (``ftrace_graph_ret``, ``mmiotrace_rw``) lies where it would unnested:
    each of those structs starts with an 8-byte member and ends the entry.  Returns the
    fields and ``sizeof`` the struct, a multiple of its strictest alignment."""
    fields = []
    offset, strictest = start, start_align
    for ctype, name, *array in members:
        size, signed = C_TYPES[ctype]
        offset = align(offset, size)
        if array:
            fields.append(Field(f"{ctype}[{array[0]}]" if array[0] else ctype, name, offset,
                                size * array[0], signed))
        else:
            fields.append(Field(ctype, name, offset, size, signed))
        offset += fields[-1].size
        strictest = max(strictest, size)
    return tuple(fields), align(offset, strictest)


# struct trace_entry; the format files name its members common_<member>.
TRACE_ENTRY_FIELDS, TRACE_ENTRY_SIZE = c_struct((
    ("unsigned short", "type"),
    ("unsigned char", "flags"),
    ("unsigned char", "preempt_count"),
    ("int", "pid"),
    ("int", "padding"),
))
TRACE_ENTRY_ALIGN = 4  # its ints'
COMMON_FIELDS = tuple(f._replace(name=f"common_{f.name}") for f in TRACE_ENTRY_FIELDS)
assert TRACE_ENTRY_SIZE == 12

_CODES = {(1, False): "B", (2, False): "H", (4, False): "I", (8, False): "Q",
          (1, True): "b", (2, True): "h", (4, True): "i", (8, True): "q"}


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


def ftrace_event(name: str, etype: int, members: tuple[Member, ...], print_fmt: str,
                 reg: bool = False) -> FtraceEventCall:
    fields, size = c_struct(members, TRACE_ENTRY_SIZE, TRACE_ENTRY_ALIGN)
    return FtraceEventCall(name, etype, fields, size, print_fmt, reg)


# IP_FMT of a CONFIG_64BIT kernel, as __stringify() spells kernel_stack's and
# user_stack's F_printk(): the literals one by one, the macro expanded.
_STACK_FMT = ('"\\t=> (" "%016lx" ")\\n\\t=> (" "%016lx" ")\\n\\t=> (" "%016lx" ")\\n" '
              '"\\t=> (" "%016lx" ")\\n\\t=> (" "%016lx" ")\\n\\t=> (" "%016lx" ")\\n" '
              '"\\t=> (" "%016lx" ")\\n\\t=> (" "%016lx" ")\\n", '
              + ", ".join(f"REC->caller[{i}]" for i in range(8)))
FTRACE_CTX_FIELDS: tuple[Member, ...] = (
    ("unsigned int", "prev_pid"), ("unsigned int", "next_pid"),
    ("unsigned int", "next_cpu"), ("unsigned char", "prev_prio"),
    ("unsigned char", "prev_state"), ("unsigned char", "next_prio"),
    ("unsigned char", "next_state"))
_CTX_ARGS = ("REC->prev_pid, REC->prev_prio, REC->prev_state, REC->next_pid, "
             "REC->next_prio, REC->next_state, REC->next_cpu")
# TRACE_FUNC_SIZE + 1 and TRACE_FILE_SIZE + 1: trace_branch's func and file arrays.
TRACE_FUNC_LEN, TRACE_FILE_LEN = 31, 21

# FTRACE_ENTRY_REG(function, ftrace_entry, TRACE_FN, ...).
FUNCTION = ftrace_event("function", TRACE_FN,
                        (("unsigned long", "ip"), ("unsigned long", "parent_ip")),
                        '" %lx <-- %lx", REC->ip, REC->parent_ip', reg=True)
# FTRACE_ENTRY(print, print_entry, TRACE_PRINT, ...): __dynamic_array(char, buf).
PRINT = ftrace_event("print", TRACE_PRINT, (("unsigned long", "ip"), ("char", "buf", 0)),
                     '"%08lx %s", REC->ip, REC->buf')
# FTRACE_ENTRY(kernel_stack, stack_entry, TRACE_STACK, ...): __dynamic_array(unsigned long,
# caller), though its F_printk() prints eight.
KERNEL_STACK = ftrace_event("kernel_stack", TRACE_STACK,
                            (("int", "size"), ("unsigned long", "caller", 0)), _STACK_FMT)
# The FTRACE_ENTRY()s of trace_entries.h, in its order (wakeup is FTRACE_ENTRY_DUP of
# context_switch's struct).
FTRACE_EVENTS = (
    FUNCTION,
    ftrace_event("funcgraph_entry", TRACE_GRAPH_ENT,
                 (("unsigned long", "func"), ("int", "depth")),
                 '"--> %lx (%d)", REC->func, REC->depth'),
    ftrace_event("funcgraph_exit", TRACE_GRAPH_RET,
                 (("unsigned long", "func"), ("unsigned long long", "calltime"),
                  ("unsigned long long", "rettime"), ("unsigned long", "overrun"),
                  ("int", "depth")),
                 '"<-- %lx (%d) (start: %llx  end: %llx) over: %d", REC->func, '
                 'REC->depth, REC->calltime, REC->rettime, REC->depth'),
    ftrace_event("context_switch", TRACE_CTX, FTRACE_CTX_FIELDS,
                 '"%u:%u:%u  ==> %u:%u:%u [%03u]", ' + _CTX_ARGS),
    ftrace_event("wakeup", TRACE_WAKE, FTRACE_CTX_FIELDS,
                 '"%u:%u:%u  ==+ %u:%u:%u [%03u]", ' + _CTX_ARGS),
    KERNEL_STACK,
    ftrace_event("user_stack", TRACE_USER_STACK,
                 (("unsigned int", "tgid"), ("unsigned long", "caller", 8)), _STACK_FMT),
    ftrace_event("bprint", TRACE_BPRINT,
                 (("unsigned long", "ip"), ("const char *", "fmt"), ("u32", "buf", 0)),
                 '"%08lx fmt:%p", REC->ip, REC->fmt'),
    PRINT,
    ftrace_event("mmiotrace_rw", TRACE_MMIO_RW,
                 (("resource_size_t", "phys"), ("unsigned long", "value"),
                  ("unsigned long", "pc"), ("int", "map_id"), ("unsigned char", "opcode"),
                  ("unsigned char", "width")),
                 '"%lx %lx %lx %d %x %x", (unsigned long)REC->phys, REC->value, REC->pc, '
                 'REC->map_id, REC->opcode, REC->width'),
    ftrace_event("mmiotrace_map", TRACE_MMIO_MAP,
                 (("resource_size_t", "phys"), ("unsigned long", "virt"),
                  ("unsigned long", "len"), ("int", "map_id"), ("unsigned char", "opcode")),
                 '"%lx %lx %lx %d %x", (unsigned long)REC->phys, REC->virt, REC->len, '
                 'REC->map_id, REC->opcode'),
    ftrace_event("branch", TRACE_BRANCH,
                 (("unsigned int", "line"), ("char", "func", TRACE_FUNC_LEN),
                  ("char", "file", TRACE_FILE_LEN), ("char", "correct")),
                 '"%u:%s:%s (%u)", REC->line, REC->func, REC->file, REC->correct'),
)
assert (FUNCTION.size, PRINT.size, KERNEL_STACK.size) == (32, 24, 16)
# kernel/trace/trace.h: FTRACE_STACK_ENTRIES, the callers a stack entry has room for at
# least.
FTRACE_STACK_ENTRIES = 8


def header_struct(call: FtraceEventCall) -> struct.Struct:
    """The scalar fields of an entry the model writes, common ones first, each at its
    offset (gaps as pad bytes)."""
    fmt, offset = "<", 0
    for f in (*COMMON_FIELDS, *call.fields):
        if f.size:
            fmt += "x" * (f.offset - offset) + _CODES[f.size, f.signed]
            offset = f.offset + f.size
    return struct.Struct(fmt)


_HEADERS = {call.type: header_struct(call) for call in (FUNCTION, PRINT, KERNEL_STACK)}


def pack_header(call: FtraceEventCall, ev: Event, *values: int) -> bytes:
    """The fixed part of ``ev``'s entry: ``trace_entry`` as ``tracing_generic_entry_update()``
    fills it (``padding`` 0), then the entry's scalar fields: ``values``, or without
    them ``ev``'s of the fields' names."""
    return _HEADERS[call.type].pack(
        ev.type, ev.flags & 0xFF, ev.flags >> 8 & 0xFF, ev.pid, 0,
        *(values or (getattr(ev, f.name) for f in call.fields if f.size)))


def print_entry_size(text_len):  # int or numpy array
    """The bytes ``tracing_mark_write()`` reserves for a marker: ``sizeof(*entry) + cnt +
    2`` (room for a newline and the NUL).  The model keeps the text, newline included, not
    the count written; this is the size of a write that ended with its newline, as
    echo's does (for one that did not, the kernel reserves a byte less)."""
    return PRINT.size + text_len + 2


def stack_entry_callers(frames):  # int or numpy array
    """``entry->size`` of a stack of ``frames`` frames: ``save_stack_trace()`` counts the
    ULONG_MAX it appends while there is room (``FTRACE_STACK_MAX_ENTRIES``)."""
    return frames + (frames < FTRACE_STACK_MAX_ENTRIES)


def stack_entry_size(frames):  # int or numpy array
    """The bytes ``__ftrace_trace_stack()`` reserves for a stack of ``frames`` frames:
    ``sizeof(*entry)`` and ``max(FTRACE_STACK_ENTRIES, nr_entries)`` unsigned longs."""
    return KERNEL_STACK.size + STACK_FRAME.itemsize * np.maximum(FTRACE_STACK_ENTRIES,
                                                                 stack_entry_callers(frames))


assert stack_entry_size(MAX_STACK_FRAMES) <= BUF_MAX_DATA_SIZE < stack_entry_size(
    MAX_STACK_FRAMES + 1)


def pack_entry(ev: Event) -> bytes:
    """The entry ``ev`` was written as: ``ftrace_entry``; ``print_entry`` with its text,
    the NUL and the rest of the reserve zeroed; or ``stack_entry``, its ``size`` and
    callers (the frames, ULONG_MAX if there is room, then the memset's zeros)."""
    if ev.type == TRACE_PRINT:
        reserve = print_entry_size(len(ev.text)) - PRINT.size
        return pack_header(PRINT, ev) + ev.text.ljust(reserve, b"\0")
    if ev.type == TRACE_STACK:
        frames = len(ev.text) // STACK_FRAME.itemsize
        callers = ev.text + ULONG_MAX.to_bytes(8, "little") * (stack_entry_callers(frames)
                                                               - frames)
        reserve = int(stack_entry_size(frames)) - KERNEL_STACK.size
        return (pack_header(KERNEL_STACK, ev, stack_entry_callers(frames))
                + callers.ljust(reserve, b"\0"))
    return pack_header(FUNCTION, ev)


def field_line(f: Field) -> str:
    """One field as ``f_show()`` prints it: a type ``T[N]`` as ``T name[N]``."""
    ctype, bracket, length = f.type.partition("[")
    return (f"\tfield:{ctype} {f.name}{bracket}{length};\toffset:{f.offset};"
            f"\tsize:{f.size};\tsigned:{int(f.signed)};")


def event_format(call: FtraceEventCall) -> str:
    """``events/ftrace/<name>/format``: ``f_show()`` over the header, the common fields, a
    blank line, the event's fields, and the print format."""
    return "\n".join(("name: " + call.name, f"ID: {call.type}", "format:",
                      *map(field_line, COMMON_FIELDS), "", *map(field_line, call.fields), "",
                      "print fmt: " + call.print_fmt)) + "\n"
