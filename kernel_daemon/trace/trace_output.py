"""The text of the trace files, byte for byte as 3.6 prints it (spec §3.6, §2.11).

Counterparts: ``kernel/trace/trace.c`` (``s_show``, ``test_ftrace_alive``,
``print_event_info``, ``print_func_help_header[_irq]``, ``test_cpu_buff_start``,
``print_trace_line``, ``trace_find_cmdline``, ``tracing_entries_read``,
``tracing_total_entries_read``) and ``kernel/trace/trace_output.c``
(``trace_print_context``, ``trace_print_lat_fmt``, ``seq_print_ip_sym``, ``trace_fn_trace``,
``trace_print_print``, ``trace_fn_raw``), as the ``trace_flags`` of
:mod:`kernel_daemon.trace.trace_options` select: ``print-parent``, ``sym-offset``,
``sym-addr``, ``verbose``, ``raw``, ``annotate``, ``printk-msg-only``, ``context-info``,
``irq-info``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from kernel_daemon.trace.buffers import (TRACE_BUF_SIZE_DEFAULT, TRACE_FLAG_HARDIRQ,
                                         TRACE_FLAG_IRQS_NOSUPPORT, TRACE_FLAG_IRQS_OFF,
                                         TRACE_FLAG_NEED_RESCHED, TRACE_FLAG_SOFTIRQ, TRACE_FN,
                                         Event)
from kernel_daemon.trace.trace_options import (TRACE_FLAGS_DEFAULT, TRACE_ITER_ANNOTATE,
                                               TRACE_ITER_CONTEXT_INFO, TRACE_ITER_IRQ_INFO,
                                               TRACE_ITER_PRINT_PARENT, TRACE_ITER_PRINTK,
                                               TRACE_ITER_PRINTK_MSGONLY, TRACE_ITER_RAW,
                                               TRACE_ITER_SYM_ADDR, TRACE_ITER_VERBOSE)

# include/linux/threads.h: map_pid_to_cmdline[] has PID_MAX_DEFAULT + 1 slots.
PID_MAX_DEFAULT = 0x8000
# A marker's entry->ip is _THIS_IP_ in tracing_mark_write().
TRACING_MARK_WRITE = "tracing_mark_write"

_CORRUPTED = ("# WARNING: FUNCTION TRACING IS CORRUPTED\n"
              "#          MAY BE MISSING FUNCTION EVENTS\n")
_HELP_IRQ = ("#                              _-----=> irqs-off\n"
             "#                             / _----=> need-resched\n"
             "#                            | / _---=> hardirq/softirq\n"
             "#                            || / _--=> preempt-depth\n"
             "#                            ||| /     delay\n"
             "#           TASK-PID   CPU#  ||||    TIMESTAMP  FUNCTION\n"
             "#              | |       |   ||||       |         |\n")
_HELP = ("#           TASK-PID   CPU#      TIMESTAMP  FUNCTION\n"
         "#              | |       |          |         |\n")


def ns2usecs(nsec: int) -> int:
    """``ns2usecs()``: rounded to the nearest microsecond (adds 500 ns)."""
    return (nsec + 500) // 1000


def trace_header(tracer_name: str, entries_in_buffer: int, entries_written: int, nr_cpus: int,
                 corrupted: bool, trace_flags: int = TRACE_FLAGS_DEFAULT) -> str:
    """The header ``s_show()`` prints before the first entry of ``trace``.

    ``corrupted`` (``ftrace_is_dead()``) puts the two WARNING lines right after
    ``# tracer:`` and ``#``, before the entries line.  ``trace_default_header()`` prints
    the rest only with ``context-info``, and then, unless ``verbose``, the entries line
    and the column help (``print_func_help_header[_irq]``, as ``irq-info`` says).
    """
    text = f"# tracer: {tracer_name}\n#\n" + (_CORRUPTED if corrupted else "")
    if not trace_flags & TRACE_ITER_CONTEXT_INFO or trace_flags & TRACE_ITER_VERBOSE:
        return text
    return (text + f"# entries-in-buffer/entries-written: {entries_in_buffer}/{entries_written}"
                   f"   #P:{nr_cpus}\n#\n"
            + (_HELP_IRQ if trace_flags & TRACE_ITER_IRQ_INFO else _HELP))


def trace_find_cmdline(pid: int, comm: str) -> str:
    """The task name a line shows for ``pid``.

    The model records each event's comm, so it plays the part of ``saved_cmdlines``; the
    kernel's fixed answers stay: ``<idle>`` for pid 0, ``<XXX>`` for a negative pid and
    ``<...>`` above ``PID_MAX_DEFAULT``, which the cmdline map cannot hold.
    """
    if pid == 0:
        return "<idle>"
    if pid < 0:
        return "<XXX>"
    if pid > PID_MAX_DEFAULT:
        return "<...>"
    return comm


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


def _timestamp(ts_ns: int) -> str:
    secs, usecs = divmod(ns2usecs(ts_ns), 1_000_000)
    return f" {secs:5d}.{usecs:06d}: "


def trace_print_context(comm: str, pid: int, cpu: int, ts_ns: int,
                        irq_flags: str | None = "....") -> str:
    """``"%16s-%-5d [%03d] "``, the irq-info flags (None: option off), ``" %5lu.%06lu: "``."""
    return _context_prefix(comm, pid, cpu, irq_flags) + _timestamp(ts_ns)


def format_function_line(comm: str, pid: int, cpu: int, ts_ns: int, func_name: str,
                         parent_name: str | None, irq_flags: str | None = "....") -> str:
    """A ``TRACE_FN`` line: ``func <-parent``; no parent part when ``parent_name`` is None
    (the kernel omits it for a zero parent ip)."""
    parent = f" <-{parent_name}" if parent_name is not None else ""
    return f"{trace_print_context(comm, pid, cpu, ts_ns, irq_flags)}{func_name}{parent}\n"


def marker_text(text: bytes) -> str:
    """``print_entry.buf`` as ``"%s"`` prints it: up to the first NUL.  The newline is
    already in the buffer (``tracing_mark_write`` appends one when missing).  Decoded with
    ``surrogateescape``: encoding the output the same way gives back the exact bytes."""
    return text.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def format_lost_events(cpu: int, lost: int) -> str:
    """``print_trace_line()``'s line before the first event read after overwritten ones."""
    return f"CPU:{cpu} [LOST {lost} EVENTS]\n"


def format_buffer_started(cpu: int) -> str:
    """``test_cpu_buff_start()``'s annotation."""
    return f"##### CPU {cpu} buffer started ####\n"


def format_events(events: Iterable[Event], symbolize: Callable[[int], str], *,
                  annotate: bool = False, trace_flags: int = TRACE_FLAGS_DEFAULT) -> str:
    """The lines of ``trace`` or ``trace_pipe`` for ``events`` (in output order):
    ``print_trace_line()`` for each, as ``trace_flags`` select.

    ``symbolize(ip)`` is ``seq_print_ip_sym()``'s symbol text: the bare name, or with
    ``sym-offset`` ``sprint_symbol()``'s (the caller picks which), or whatever the caller's
    kallsyms prints for an address it cannot resolve (3.6's ``kallsyms_lookup`` leaves it
    empty); it is called once per distinct ip, and never for ip 0, which prints as ``0``.
    ``sym-addr`` adds `` <%016lx>`` after it.

    ``annotate``: the ``trace`` file when the buffers have had overruns
    (``TRACE_FILE_ANNOTATE``): with the ``annotate`` option, the first event seen from each
    CPU gets a ``##### CPU N buffer started ####`` line, except for the first two entries
    (``iter->idx > 1``).  ``trace_pipe`` never annotates.  An event with ``lost_events``
    gets the LOST line first.

    ``hex`` and ``bin`` are not rendered (``trace_options.NOT_MODELLED``): their lines
    keep this format.
    """
    sym_addr = bool(trace_flags & TRACE_ITER_SYM_ADDR)
    names: dict[int, str] = {0: "0"}
    prefixes: dict[tuple[str, int, int, int], str] = {}
    started: set[int] = set()
    out: list[str] = []
    annotate = annotate and bool(trace_flags & TRACE_ITER_ANNOTATE)
    context = bool(trace_flags & TRACE_ITER_CONTEXT_INFO)
    irq_info = bool(trace_flags & TRACE_ITER_IRQ_INFO)
    parent = bool(trace_flags & TRACE_ITER_PRINT_PARENT)
    raw = bool(trace_flags & TRACE_ITER_RAW)
    msg_only = trace_flags & (TRACE_ITER_PRINTK | TRACE_ITER_PRINTK_MSGONLY) == (
        TRACE_ITER_PRINTK | TRACE_ITER_PRINTK_MSGONLY)

    def name(ip: int) -> str:
        found = names.get(ip)
        if found is None:
            found = names[ip] = symbolize(ip) + (f" <{ip:016x}>" if sym_addr else "")
        return found

    for idx, ev in enumerate(events):
        if ev.lost_events:
            out.append(format_lost_events(ev.cpu, ev.lost_events))
        if ev.type != TRACE_FN and msg_only:
            out.append(marker_text(ev.text))  # trace_print_printk_msg_only()
            continue
        if raw:
            out.append(_raw_line(ev, context))
            continue
        # print_trace_fmt(): test_cpu_buff_start(), the context, the event.
        if annotate and ev.cpu not in started:
            started.add(ev.cpu)
            if idx > 1:
                out.append(format_buffer_started(ev.cpu))
        head = ""
        if context:
            key = (ev.comm, ev.pid, ev.cpu, ev.flags)
            prefix = prefixes.get(key)
            if prefix is None:
                prefix = prefixes[key] = _context_prefix(
                    trace_find_cmdline(ev.pid, ev.comm), ev.pid, ev.cpu,
                    trace_print_lat_fmt(ev.flags) if irq_info else None)
            secs, usecs = divmod((ev.ts + 500) // 1000, 1_000_000)  # ns2usecs(), inlined
            head = f"{prefix} {secs:5d}.{usecs:06d}: "
        if ev.type == TRACE_FN:
            if parent and ev.parent_ip:
                out.append(f"{head}{name(ev.ip)} <-{name(ev.parent_ip)}\n")
            else:
                out.append(f"{head}{name(ev.ip)}\n")
        else:
            # TRACE_PRINT (trace_print_print): "%ps: %s", the text with its own newline.
            func = name(ev.ip) if ev.ip else TRACING_MARK_WRITE
            out.append(f"{head}{func}: {marker_text(ev.text)}")
    return "".join(out)


def _raw_line(ev: Event, context: bool) -> str:
    """``print_raw_fmt()``: ``"%d %d %llu "`` (pid, cpu, ns) with ``context-info``, then
    ``trace_fn_raw()``'s ``"%lx %lx\\n"`` or ``trace_print_raw()``'s ``"# %lx %s"``."""
    head = f"{ev.pid} {ev.cpu} {ev.ts} " if context else ""
    if ev.type == TRACE_FN:
        return f"{head}{ev.ip:x} {ev.parent_ip:x}\n"
    return f"{head}# {ev.ip:x} {marker_text(ev.text)}"


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
