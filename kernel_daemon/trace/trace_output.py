"""The entries of ``trace`` and ``trace_pipe``, byte for byte as 3.6 prints them
(spec §3.6, §2.11).

``print_trace_line()`` of ``kernel/trace/trace.c`` (3.6) and what it dispatches to:
``print_bin_fmt()``, ``print_hex_fmt()``, ``print_raw_fmt()`` or ``print_trace_fmt()``,
as the ``trace_flags`` of :mod:`kernel_daemon.trace.trace_options` select, and the
output functions of ``kernel/trace/trace_output.c`` (``trace_print_context()``,
``trace_print_lat_context()``, ``trace_print_lat_fmt()``, ``seq_print_ip_sym()``) with
each entry type's ``trace_event_functions``: ``TRACE_FN``'s ``trace_fn_trace``,
``trace_fn_raw``, ``trace_fn_hex``, ``trace_fn_bin``, ``TRACE_PRINT``'s
``trace_print_print`` and ``trace_print_raw`` (it has no hex nor binary function, so
``register_ftrace_event()`` gave it ``trace_nop_print``), and ``TRACE_STACK``'s
``trace_stack_print`` (its only one: raw, hex and binary print ``trace_nop_print``).  The header is
:mod:`kernel_daemon.trace.trace_headers`.

The text is a ``str`` holding bytes as ``surrogateescape`` decodes them (a marker's text,
the ``bin`` fields): :func:`trace_bytes` gives back the exact bytes.

An entry is printed into the iterator's ``trace_seq``, a page (:class:`TraceSeq`): only a
stack can be longer than that, and of it the seq holds the pieces that fitted
(:meth:`TraceIterator.trace_seq_cut`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence

from kernel_daemon.trace.buffers import (PAGE_SIZE, TRACE_BUF_SIZE_DEFAULT, TRACE_FLAG_HARDIRQ,
                                         TRACE_FLAG_IRQS_NOSUPPORT, TRACE_FLAG_IRQS_OFF,
                                         TRACE_FLAG_NEED_RESCHED, TRACE_FLAG_SOFTIRQ, TRACE_FN,
                                         TRACE_PRINT, TRACE_STACK, Event, stack_frames)
from kernel_daemon.trace.trace_options import (TRACE_FLAGS_DEFAULT, TRACE_ITER_ANNOTATE,
                                               TRACE_ITER_BIN, TRACE_ITER_CONTEXT_INFO,
                                               TRACE_ITER_HEX, TRACE_ITER_IRQ_INFO,
                                               TRACE_ITER_PRINT_PARENT, TRACE_ITER_PRINTK,
                                               TRACE_ITER_PRINTK_MSGONLY, TRACE_ITER_RAW,
                                               TRACE_ITER_SYM_ADDR, TRACE_ITER_VERBOSE)

# include/linux/threads.h: map_pid_to_cmdline[] has PID_MAX_DEFAULT + 1 slots.
PID_MAX_DEFAULT = 0x8000
# trace_output.c: preempt_mark_thresh, in µs: a bigger gap to the next entry is marked "!".
PREEMPT_MARK_THRESH = 100
USEC_PER_MSEC = 1000
_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1
# SEQ_PUT_FIELD_RET() of x86_64's native fields: int pid, int cpu, u64 ts (print_bin_fmt),
# then unsigned long ip and parent_ip (trace_fn_bin).
_BIN_CONTEXT = struct.Struct("<IIQ")
_BIN_FN = struct.Struct("<QQ")
# trace_output.c (3.6): a trace_seq holds a page; trace_seq_printf() writes a piece only if
# it leaves room for vsnprintf()'s NUL before the last byte (so it ends by byte PAGE_SIZE -
# 2), trace_seq_puts() (and _putc(), _putmem()) if it ends by byte PAGE_SIZE - 1.
TRACE_SEQ_PRINTF_MAX = PAGE_SIZE - 2
TRACE_SEQ_PUTS_MAX = PAGE_SIZE - 1


def trace_bytes(text: str) -> bytes:
    """The bytes of trace text, the ones a read of the file returns."""
    return text.encode("utf-8", "surrogateescape")


def _as_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def ns2usecs(nsec: int) -> int:
    """``ns2usecs()``: rounded to the nearest microsecond (adds 500 ns), in a ``u64``."""
    return (((nsec & _U64) + 500) & _U64) // 1000


def trace_find_cmdline(pid: int, cmdlines: Mapping[int, str]) -> str:
    """``trace_find_cmdline()``: the task name a line shows for ``pid``, looked up when the
    line is printed.

    ``cmdlines`` is ``saved_cmdlines`` as ``pid -> comm`` (a copy taken under
    ``trace_cmdline_lock``, :meth:`~kernel_daemon.trace.saved_cmdlines.SavedCmdlines.
    trace_find_cmdline_table`).  ``<idle>`` for pid 0, ``<XXX>`` for a negative pid, and
    ``<...>`` for a pid above ``PID_MAX_DEFAULT`` or one the table does not hold (never
    saved, or its slot taken by a newer task).
    """
    if pid == 0:
        return "<idle>"
    if pid < 0:
        return "<XXX>"
    if pid > PID_MAX_DEFAULT:
        return "<...>"
    return cmdlines.get(pid, "<...>")


def trace_print_lat_fmt(flags: int) -> str:
    """The 4 irq-info characters from an event's ``flags`` (``preempt_count`` in bits 8-15)."""
    hardirq = flags & TRACE_FLAG_HARDIRQ
    softirq = flags & TRACE_FLAG_SOFTIRQ
    irqs_off = ("d" if flags & TRACE_FLAG_IRQS_OFF
                else "X" if flags & TRACE_FLAG_IRQS_NOSUPPORT else ".")
    need_resched = "N" if flags & TRACE_FLAG_NEED_RESCHED else "."
    hardsoft_irq = ("H" if hardirq and softirq else "h" if hardirq else "s" if softirq else ".")
    preempt_count = (flags >> 8) & 0xFF
    return irqs_off + need_resched + hardsoft_irq + (f"{preempt_count:x}" if preempt_count else ".")


def _context_prefix(comm: str, pid: int, cpu: int, irq_flags: str | None) -> str:
    return f"{comm:>16}-{pid:<5d} [{cpu:03d}] " + (irq_flags or "")


def usecs_text(ns: int) -> str:
    """``"%5lu.%06lu"`` of ``ns2usecs(ns)`` split at the second: a context's timestamp,
    and the ``stats`` file's."""
    secs, usecs = divmod(ns2usecs(ns), 1_000_000)
    return f"{secs:5d}.{usecs:06d}"


def trace_print_context(comm: str, pid: int, cpu: int, ts_ns: int,
                        irq_flags: str | None = "....") -> str:
    """``"%16s-%-5d [%03d] "``, the irq-info flags (None: option off), ``" %5lu.%06lu: "``."""
    return f"{_context_prefix(comm, pid, cpu, irq_flags)} {usecs_text(ts_ns)}: "


def marker_text(text: bytes) -> str:
    """``print_entry.buf`` as ``"%s"`` prints it: up to the first NUL.  The newline is
    already in the buffer (``tracing_mark_write`` appends one when missing)."""
    return _as_text(text.split(b"\0", 1)[0])


def format_lost_events(cpu: int, lost: int) -> str:
    """``print_trace_line()``'s line before the first event read after overwritten ones."""
    return f"CPU:{cpu} [LOST {lost} EVENTS]\n"


def format_buffer_started(cpu: int) -> str:
    """``test_cpu_buff_start()``'s annotation."""
    return f"##### CPU {cpu} buffer started ####\n"


class TraceSeq:
    """``struct trace_seq`` (3.6) being written: a page's ``buffer`` and ``full``.  A piece
    that does not fit writes nothing and sets ``full``, and once ``full`` nothing more is
    written; each write says whether it wrote."""

    def __init__(self, data: bytes = b"") -> None:
        self.buffer = bytearray(data)
        self.full = False

    def printf(self, text: str) -> bool:
        """``trace_seq_printf()`` of ``text``: no room left (``len`` 0) fails without
        setting ``full``, as 3.6's does."""
        data = trace_bytes(text)
        room = TRACE_SEQ_PUTS_MAX - len(self.buffer)
        if self.full or not room:
            return False
        if len(data) >= room:
            self.full = True
            return False
        self.buffer += data
        return True

    def puts(self, text: str) -> bool:
        """``trace_seq_puts()`` of ``text``."""
        data = trace_bytes(text)
        if self.full:
            return False
        if len(data) > TRACE_SEQ_PUTS_MAX - len(self.buffer):
            self.full = True
            return False
        self.buffer += data
        return True


def trace_nop_print(ev: Event) -> str:
    """``trace_nop_print()``: what an entry type without the asked-for output prints."""
    return f"type: {ev.type}\n"


class TraceIterator:
    """The printing side of one ``struct trace_iterator``: ``print_trace_line()`` for one
    entry at a time.

    Fixed for the iterator's life, as in 3.6: ``symbolize``, the ``cmdlines`` looked up,
    the ``trace_flags`` of this print, ``annotate`` (``TRACE_FILE_ANNOTATE``: ``trace``
    after overruns), ``lat_fmt`` (``TRACE_FILE_LAT_FMT``: ``latency-format`` was set when
    the file was opened) and ``time_start`` (``tr->time_start``, the trace clock at the
    last ``tracing_reset_online_cpus()``).

    ``symbolize(ip)`` is ``seq_print_ip_sym()``'s symbol text: the bare name, or with
    ``sym-offset`` ``sprint_symbol()``'s (the caller picks which), or whatever the caller's
    kallsyms prints for an address it cannot resolve (3.6's ``kallsyms_lookup`` leaves it
    empty); it is called once per distinct ip, and never for ip 0, which prints as ``0``.
    ``sym-addr`` adds `` <%016lx>`` after it.
    """

    def __init__(self, symbolize: Callable[[int], str], cmdlines: Mapping[int, str],
                 trace_flags: int = TRACE_FLAGS_DEFAULT, *, annotate: bool = False,
                 lat_fmt: bool = False, time_start: int = 0) -> None:
        self.symbolize = symbolize
        self.cmdlines = cmdlines
        self.sym_addr = bool(trace_flags & TRACE_ITER_SYM_ADDR)
        self.annotate = annotate and bool(trace_flags & TRACE_ITER_ANNOTATE)
        self.context = bool(trace_flags & TRACE_ITER_CONTEXT_INFO)
        self.irq_info = bool(trace_flags & TRACE_ITER_IRQ_INFO)
        self.parent = bool(trace_flags & TRACE_ITER_PRINT_PARENT)
        self.verbose = bool(trace_flags & TRACE_ITER_VERBOSE)
        self.msg_only = trace_flags & (TRACE_ITER_PRINTK | TRACE_ITER_PRINTK_MSGONLY) == (
            TRACE_ITER_PRINTK | TRACE_ITER_PRINTK_MSGONLY)
        self.lat_fmt = lat_fmt
        self.time_start = time_start
        # print_trace_line()'s choice, in its order: bin, then hex, then raw.
        self._print: Callable[[Event, int, int], str] = (
            self.print_bin_fmt if trace_flags & TRACE_ITER_BIN
            else self.print_hex_fmt if trace_flags & TRACE_ITER_HEX
            else self.print_raw_fmt if trace_flags & TRACE_ITER_RAW
            else self.print_trace_fmt)
        # A stack prints trace_stack_print() (else trace_nop_print()): it may be longer
        # than a page.
        self.stack_text = self._print == self.print_trace_fmt
        # The trace_seq byte each entry type's text may end at (trace_seq_max()): its last
        # piece's writer decides, the pieces before it ending earlier.  trace_stack_print()
        # ends on trace_seq_puts(), print_hex_fmt() and trace_fn_bin() on
        # trace_seq_putmem(); every other text on trace_seq_printf().
        puts_types = ((TRACE_FN, TRACE_PRINT, TRACE_STACK) if self._print == self.print_hex_fmt
                      else (TRACE_FN,) if self._print == self.print_bin_fmt
                      else (TRACE_STACK,) if self.stack_text else ())
        self._seq_max = {t: TRACE_SEQ_PUTS_MAX for t in puts_types}
        if self.msg_only:  # printk-msg-only prints a marker with trace_seq_printf()
            self._seq_max.pop(TRACE_PRINT, None)
        self.started: set[int] = set()  # iter->started
        self._names: dict[int, str] = {}
        self._pieces: dict[int, tuple[str, ...]] = {}
        self._prefixes: dict[tuple[int, int, int], str] = {}

    def print_trace_line(self, ev: Event, idx: int, next_ts: int) -> str:
        """``print_trace_line()`` for the entry ``ev``: ``idx`` is ``iter->idx`` and
        ``next_ts`` the timestamp ``trace_find_next_entry()`` peeks at (only the latency
        context reads them).  The LOST line first, if events were overwritten before it;
        a marker alone with ``printk-msg-only``; then the format the flags choose."""
        if ev.type == TRACE_PRINT and self.msg_only:
            text = marker_text(ev.text)  # trace_print_printk_msg_only()
        else:
            text = self._print(ev, idx, next_ts)
        if ev.lost_events:
            return format_lost_events(ev.cpu, ev.lost_events) + text
        return text

    def print_entries(self, events: list[Event]) -> list[str]:
        """``s_show()`` over ``events`` (in output order), one text per entry (a record of
        ``trace``, whatever lines it has): ``print_trace_line()`` for each, ``iter->idx``
        counting from 0, the next entry's timestamp peeked (the last one's own).  Each is
        what ``iter->seq`` holds after it: of a stack longer than a page, what fitted
        (3.6 prints it so, with no newline if it stopped within a line)."""
        last = len(events) - 1
        texts = [self.print_trace_line(ev, idx, events[idx + 1].ts if idx < last else ev.ts)
                 for idx, ev in enumerate(events)]
        if self.stack_text:
            for row, ev in enumerate(events):
                if (ev.type == TRACE_STACK
                        and len(trace_bytes(texts[row])) > self.trace_seq_max(ev)):
                    texts[row] = _as_text(self.trace_seq_cut(ev, texts[row]).buffer)
        return texts

    def trace_seq_max(self, ev: Event) -> int:
        """The last byte of a ``trace_seq`` the whole text of ``ev`` may end at: there
        ``print_trace_line()`` is not ``TRACE_TYPE_PARTIAL_LINE``.  A text that ends later
        does not fit, and one longer than this (only a stack's can be) fits nowhere."""
        return self._seq_max.get(ev.type, TRACE_SEQ_PRINTF_MAX)

    def trace_seq_cut(self, ev: Event, text: str) -> TraceSeq:
        """What ``print_trace_line()`` leaves in an empty ``trace_seq`` of the stack ``ev``
        whose whole text ``text`` is longer than :meth:`trace_seq_max`: what comes before
        the stack (a LOST line, the context: they fit whole at the start of a page), then
        ``trace_stack_print()``'s pieces up to the first that does not fit, with ``full``
        set: ``<stack trace>\n``, and for each frame `` => `` (``trace_seq_puts()``), its
        :meth:`seq_print_ip_sym_pieces` (``trace_seq_printf()`` each) and ``\n``
        (``trace_seq_puts()``).  So the text may stop at the end of a line, after a
        `` => ``, or after a symbol whose `` <addr>`` did not fit."""
        stack = self.trace_stack_print(ev)
        assert ev.type == TRACE_STACK and text.endswith(stack)
        seq = TraceSeq(trace_bytes(text[:len(text) - len(stack)]))
        if seq.puts("<stack trace>\n"):
            for ip in stack_frames(ev.text):
                if not (seq.puts(" => ")
                        and all(seq.printf(piece) for piece in self.seq_print_ip_sym_pieces(ip))
                        and seq.puts("\n")):
                    break
        return seq

    def seq_print_ip_sym_pieces(self, ip: int) -> tuple[str, ...]:
        """``seq_print_ip_sym()``'s ``trace_seq_printf()`` calls for ``ip``: ``0`` for ip 0;
        else the symbol, then with ``sym-addr`` `` <%016lx>``.  Computed once per ip."""
        found = self._pieces.get(ip)
        if found is None:
            found = self._pieces[ip] = (
                ("0",) if not ip
                else (self.symbolize(ip), f" <{ip:016x}>") if self.sym_addr
                else (self.symbolize(ip),))
        return found

    def seq_print_ip_sym(self, ip: int) -> str:
        """The symbol text of ``ip``, computed once per ip (see the class)."""
        found = self._names.get(ip)
        if found is None:
            found = self._names[ip] = "".join(self.seq_print_ip_sym_pieces(ip))
        return found

    # -- print_trace_fmt() ------------------------------------------------------------------
    def print_trace_fmt(self, ev: Event, idx: int, next_ts: int) -> str:
        """``test_cpu_buff_start()`` (the first entry seen of each CPU, after the first two
        of the trace), the context (``trace_print_lat_context()`` for a latency-format
        file), then the event's ``trace`` function."""
        head = ""
        if self.annotate and ev.cpu not in self.started:
            self.started.add(ev.cpu)
            if idx > 1:
                head = format_buffer_started(ev.cpu)
        if self.context:
            if self.lat_fmt:
                head += self.trace_print_lat_context(ev, idx, next_ts)
            else:
                head += self.trace_print_context(ev)
        if ev.type == TRACE_FN:
            # trace_fn_trace()
            if self.parent and ev.parent_ip:
                return (f"{head}{self.seq_print_ip_sym(ev.ip)} "
                        f"<-{self.seq_print_ip_sym(ev.parent_ip)}\n")
            return f"{head}{self.seq_print_ip_sym(ev.ip)}\n"
        if ev.type == TRACE_STACK:
            return head + self.trace_stack_print(ev)
        # trace_print_print(): "%ps: %s", the text with its own newline.
        return f"{head}{self.seq_print_ip_sym(ev.ip)}: {marker_text(ev.text)}"

    def trace_stack_print(self, ev: Event) -> str:
        """``trace_stack_print()``: ``<stack trace>``, then `` => `` and each frame's
        ``seq_print_ip_sym()`` (``sym-offset`` and ``sym-addr`` apply, ``print-parent``
        does not) up to the first ULONG_MAX, ``save_stack_trace()``'s after the last frame
        or a frame's own (:func:`stack_frames`), or the entry's end when the stack filled
        it.  Whole: a trace_seq holds what fits of it (:meth:`trace_seq_cut`)."""
        return "<stack trace>\n" + "".join(f" => {self.seq_print_ip_sym(ip)}\n"
                                           for ip in stack_frames(ev.text))

    def trace_print_context(self, ev: Event) -> str:
        """``trace_print_context()``: the comm looked up now, pid, CPU, irq-info, time."""
        key = (ev.pid, ev.cpu, ev.flags)
        prefix = self._prefixes.get(key)
        if prefix is None:
            prefix = self._prefixes[key] = _context_prefix(
                trace_find_cmdline(ev.pid, self.cmdlines), ev.pid, ev.cpu,
                trace_print_lat_fmt(ev.flags) if self.irq_info else None)
        secs, usecs = divmod((ev.ts + 500) // 1000, 1_000_000)  # ns2usecs(), inlined
        return f"{prefix} {secs:5d}.{usecs:06d}: "

    def trace_print_lat_context(self, ev: Event, idx: int, next_ts: int) -> str:
        """``trace_print_lat_context()``: the time since ``time_start`` and to the next
        entry, in µs.  ``lat_print_generic()`` (``"%8.8s-%-5d %3d"`` and the irq-info
        flags, which it prints whatever ``irq-info`` says) and ``lat_print_timestamp()``
        (``" %4lldus%c: "``, marked ``!`` above ``preempt_mark_thresh``, ``+`` above 1);
        with ``verbose``, one line of raw fields and milliseconds instead."""
        abs_usecs = ns2usecs(ev.ts - self.time_start)
        rel_usecs = ns2usecs(next_ts - ev.ts)
        comm = trace_find_cmdline(ev.pid, self.cmdlines)
        if self.verbose:
            return (f"{comm:>16} {ev.pid:5d} {ev.cpu:3d} {ev.flags & 0xFF:d} "
                    f"{(ev.flags >> 8) & 0xFF:08x} {idx:08x} [{ns2usecs(ev.ts):08x}] "
                    f"{abs_usecs // USEC_PER_MSEC}.{abs_usecs % USEC_PER_MSEC:03d}ms "
                    f"(+{rel_usecs // USEC_PER_MSEC}.{rel_usecs % USEC_PER_MSEC:03d}ms): ")
        mark = "!" if rel_usecs > PREEMPT_MARK_THRESH else "+" if rel_usecs > 1 else " "
        return (f"{comm[:8]:>8}-{ev.pid:<5d} {ev.cpu:3d}{trace_print_lat_fmt(ev.flags)}"
                f" {abs_usecs:4d}us{mark}: ")

    # -- print_raw_fmt(), print_hex_fmt(), print_bin_fmt() ----------------------------------
    def print_raw_fmt(self, ev: Event, idx: int, next_ts: int) -> str:
        """``"%d %d %llu "`` (pid, cpu, ns) with ``context-info``, then ``trace_fn_raw()``'s
        ``"%lx %lx\\n"``, ``trace_print_raw()``'s ``"# %lx %s"``, or for a stack
        ``trace_nop_print()``."""
        head = f"{ev.pid} {ev.cpu} {ev.ts} " if self.context else ""
        if ev.type == TRACE_FN:
            return f"{head}{ev.ip:x} {ev.parent_ip:x}\n"
        if ev.type == TRACE_STACK:
            return head + trace_nop_print(ev)
        return f"{head}# {ev.ip:x} {marker_text(ev.text)}"

    def print_hex_fmt(self, ev: Event, idx: int, next_ts: int) -> str:
        """``SEQ_PUT_HEX_FIELD_RET()`` of pid, cpu and ts with ``context-info``, then
        ``trace_fn_hex()``'s ip and parent_ip (a marker, a stack: ``trace_nop_print()``),
        then a newline byte.  ``trace_seq_putmem_hex()`` prints a field's bytes most significant
        first (little-endian x86_64), two lowercase digits each, and a blank."""
        head = (f"{ev.pid & _U32:08x} {ev.cpu & _U32:08x} {ev.ts & _U64:016x} "
                if self.context else "")
        if ev.type == TRACE_FN:
            return f"{head}{ev.ip:016x} {ev.parent_ip:016x} \n"
        return f"{head}{trace_nop_print(ev)}\n"

    def print_bin_fmt(self, ev: Event, idx: int, next_ts: int) -> str:
        """``SEQ_PUT_FIELD_RET()``: the fields' native bytes, no separator and no newline:
        pid, cpu and ts with ``context-info``, then ``trace_fn_bin()``'s ip and parent_ip
        (a marker, a stack: ``trace_nop_print()``'s text)."""
        head = (_as_text(_BIN_CONTEXT.pack(ev.pid & _U32, ev.cpu & _U32, ev.ts & _U64))
                if self.context else "")
        if ev.type == TRACE_FN:
            return head + _as_text(_BIN_FN.pack(ev.ip, ev.parent_ip))
        return head + trace_nop_print(ev)


def format_events(events: list[Event], symbolize: Callable[[int], str],
                  cmdlines: Mapping[int, str], *, annotate: bool = False,
                  trace_flags: int = TRACE_FLAGS_DEFAULT, lat_fmt: bool = False,
                  time_start: int = 0) -> str:
    """The entries of ``trace`` for ``events``: :meth:`TraceIterator.print_entries` of an
    iterator set up with these arguments."""
    return "".join(TraceIterator(symbolize, cmdlines, trace_flags, annotate=annotate,
                                 lat_fmt=lat_fmt, time_start=time_start).print_entries(events))


def buffer_size_kb(sizes: Sequence[int], expanded: bool,
                   trace_buf_size: int = TRACE_BUF_SIZE_DEFAULT) -> str:
    """``tracing_entries_read()`` of the top-level ``buffer_size_kb``, over the CPUs' sizes
    in bytes: ``"%lu\n"``, ``"%lu (expanded: %lu)\n"`` before expansion, ``"X\n"`` when
    the CPUs differ.  The size compared with is refilled from each CPU while it is 0
    (3.6's "fill in the size from first enabled cpu"), so CPUs of size 0 ahead of the
    first other one make no X."""
    size = 0
    for cpu_size in sizes:
        if size == 0:
            size = cpu_size
        if size != cpu_size:
            return "X\n"
    if expanded:
        return f"{size >> 10}\n"
    return f"{size >> 10} (expanded: {trace_buf_size >> 10})\n"


def buffer_total_size_kb(sizes: Sequence[int], expanded: bool,
                         trace_buf_size: int = TRACE_BUF_SIZE_DEFAULT) -> str:
    """``tracing_total_entries_read()``: each CPU's KB, summed; before expansion also what
    every CPU would hold expanded."""
    total = sum(size >> 10 for size in sizes)
    if expanded:
        return f"{total}\n"
    return f"{total} (expanded: {len(sizes) * (trace_buf_size >> 10)})\n"
