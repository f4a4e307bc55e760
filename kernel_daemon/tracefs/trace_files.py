"""The trace output and buffer control files of ``kernel/trace/trace.c`` (3.6, spec §3.6).

``trace`` (non-consuming, with the header; O_TRUNC clears), ``trace_pipe``
(consuming, blocking, no header), ``tracing_on``, ``buffer_size_kb``,
``buffer_total_size_kb``, ``trace_marker``, ``trace_clock``, ``tracing_cpumask``, the
``per_cpu/cpuN`` files (``trace``, ``trace_pipe``, ``stats``, ``buffer_size_kb``).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from kernel_daemon.bitmap import bitmap_parse_user, bitmap_scnprintf
from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.dispatch import smp_processor_id
from kernel_daemon.kernel import UTS_RELEASE
from kernel_daemon.strings import kstrtoul_from_user, strim
from kernel_daemon.task import current
from kernel_daemon.teardown import kernel_gone
from kernel_daemon.trace.buffers import RB_EVENT_SIZE, Event
from kernel_daemon.trace.trace_headers import LatencyHeader, trace_header
from kernel_daemon.trace.trace_options import TRACE_ITER_LATENCY_FMT, TRACE_ITER_SYM_OFFSET
from kernel_daemon.trace.trace_output import (TraceIterator, buffer_size_kb,
                                              buffer_total_size_kb, trace_bytes, usecs_text)
from kernel_daemon.tracefs.files import (FMODE_READ, FMODE_WRITE, FileOps, OpenFile,
                                         PposUpdate, SeqText, Show, SimpleFile,
                                         SimpleOpenFile, Store, nonseekable_open, open_fmode,
                                         ppos_add_count, ppos_untouched, seq_open,
                                         simple_read_from_buffer, store_write)
from kernel_daemon.tracefs.llseek import generic_file_llseek, seq_lseek
from kernel_daemon.tracefs.seq_file import SeqRecords, SeqSnapshot, record_ends, single_open
from kernel_daemon.uaccess import UserBuffer

if TYPE_CHECKING:
    from kernel_daemon.kernel import Kernel

# A trace_pipe read returns at most PAGE_SIZE - 1 bytes (its trace_seq holds a page:
# TraceIterator.trace_seq_max() says where each entry may end in it).
TRACE_PIPE_MAX = 4095
# c1ac03af6ed4's line for an entry that fills a trace_seq alone.
LINE_TOO_BIG = "[LINE TOO BIG]\n"
# How often a blocked trace_pipe reader wakes to look at tracing_enabled
# (tracing_wait_pipe()'s end of file); a signal wakes it at once.
WAIT_PIPE_SECONDS = 0.25
TRACE_CLOCKS = ("local", "global", "counter")
# tracing_clock_write()'s char buf[64]: a longer write is EINVAL.
TRACE_CLOCK_BUF = 64
# CONFIG_NR_CPUS of the modelled kernel: an x86_64 build with CONFIG_MAXSMP, which sets it
# to 4096 and selects CONFIG_CPUMASK_OFFSTACK (cpumasks of nr_cpu_ids bits), as the
# distributions that moved cpumasks off the stack built 3.6 (arch/x86/Kconfig; without
# MAXSMP, OFFSTACK needs DEBUG_PER_CPU_MAPS).  It sizes tracing_cpumask_read()'s buffer.
NR_CPUS = 4096


def seq_print_sym(kernel: Kernel, trace_flags: int) -> Callable[[int], str]:
    """The symbol text of ``seq_print_ip_sym()``: ``sprint_symbol()`` with ``sym-offset``
    (``name+0xoff/0xsize``, `` [module]`` for a module's), else the bare name."""
    if trace_flags & TRACE_ITER_SYM_OFFSET:
        return kernel.kallsyms.sprint_symbol
    return kernel.symbol_name


def trace_iterator(kernel: Kernel, lat_fmt: bool, annotate: bool = False) -> TraceIterator:
    """The printing side of a ``trace_iterator`` as ``trace`` and ``trace_pipe`` set it up:
    the flags, symbols and ``saved_cmdlines`` as they are now, ``time_start``."""
    trace_flags = kernel.tracing.trace_flags
    return TraceIterator(seq_print_sym(kernel, trace_flags),
                         kernel.saved_cmdlines.trace_find_cmdline_table(), trace_flags,
                         annotate=annotate, lat_fmt=lat_fmt,
                         time_start=kernel.tracing.time_start)


def trace_records(kernel: Kernel, cpu: int | None, lat_fmt: bool) -> SeqRecords:
    """``trace`` / ``per_cpu/cpuN/trace`` as ``s_show()`` prints it, a record a call: the
    header (``iter->ent == NULL``: the walk's first), then each event's
    ``print_trace_line()``, oldest first (``trace_find_next_entry_inc()``), whatever lines
    it has (a LOST line, a "buffer started" one, a marker's text with newlines in it), each
    task's comm as ``saved_cmdlines`` has it now.  ``lat_fmt``: ``latency-format`` was set
    at open (``TRACE_FILE_LAT_FMT``)."""
    rb = kernel.ring_buffer
    tracing = kernel.tracing
    snap = rb.snapshot(cpu)
    trace_flags = tracing.trace_flags
    latency = (LatencyHeader(UTS_RELEASE, tracing.cpu, not snap.events) if lat_fmt else None)
    header = trace_header(tracing.current_trace.name, snap.entries_in_buffer,
                          snap.entries_written, rb.nr_cpus, kernel.ftrace.ftrace_disabled,
                          trace_flags, latency)
    it = trace_iterator(kernel, lat_fmt, annotate=rb.overruns() > 0)
    return trace_seq_records([header, *it.print_entries(snap.events)])


def trace_seq_records(texts: list[str]) -> SeqRecords:
    """``texts`` as records of bytes (:func:`trace_bytes`), encoded as one: each record's
    end comes from the texts' lengths when no character takes more than a byte (the whole
    is as long in bytes as in characters), which is nearly always; else each is encoded."""
    data = trace_bytes("".join(texts))
    ends = record_ends(texts)
    if len(data) != (int(ends[-1]) if len(ends) else 0):
        return SeqRecords.joined(map(trace_bytes, texts))
    return SeqRecords(data, ends)


def tracing_seek(file: TraceOpenFile, offset: int, whence: int) -> int:
    """``tracing_seek()``: ``seq_lseek()`` when open for reading; otherwise 0, whatever is
    asked, and the position stays where it is (at 0: ``tracing_write_stub()`` moves
    nothing).  Open only for writing, ``trace`` has no seq_file to seek."""
    if file.f_mode & FMODE_READ:
        return seq_lseek(file, offset, whence)
    return 0


class TraceOpenFile(SeqText):
    """An open ``trace``: open for read, tracing stops until it is closed
    (``__tracing_open()`` and ``tracing_release()`` call ``tracing_stop()`` and
    ``tracing_start()`` under ``trace_types_lock``): no function callback runs, and
    nothing is recorded.  The events it shows cannot change while it is open, so its
    records (:func:`trace_records`) are printed when a walk starts at the first
    (:class:`SeqSnapshot`), and a read that starts at a later one takes the record 3.6's
    ``s_start()`` walks to again (``tracing_iter_reset()``, then ``s_next()`` up to
    ``*pos``).  3.6 prints each record as it shows it, with the options, symbols and
    ``saved_cmdlines`` of that read; the model with those of the walk's start."""

    def __init__(self, kernel: Kernel, path: str, flags: int, cpu: int | None) -> None:
        lat_fmt = bool(kernel.tracing.trace_flags & TRACE_ITER_LATENCY_FMT)
        op = SeqSnapshot(lambda: trace_records(kernel, cpu, lat_fmt)).operations()
        super().__init__(path, flags, op, tracing_seek)
        self.kernel = kernel
        self.stopped = bool(self.f_mode & FMODE_READ)
        if self.stopped:
            with kernel.tracing.trace_types_lock:
                kernel.tracing.tracing_stop()

    def write(self, data: UserBuffer) -> int:
        return len(data)  # tracing_write_stub: accepted and ignored, *ppos untouched

    def release(self) -> None:
        if self.stopped:
            self.stopped = False
            with self.kernel.tracing.trace_types_lock:
                self.kernel.tracing.tracing_start()


class TraceFile(FileOps):
    """``tracing_fops``: O_TRUNC on an open with FMODE_WRITE (not one of the access mode
    3, which has neither mode) clears the buffers (``echo > trace``)."""

    mode = 0o644

    def __init__(self, cpu: int | None = None) -> None:
        self.cpu = cpu

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        if flags & os.O_TRUNC and open_fmode(flags) & FMODE_WRITE:
            if self.cpu is None:
                kernel.tracing.tracing_reset_online_cpus()
            else:
                kernel.ring_buffer.reset(self.cpu)  # tracing_reset(): time_start stays
        file = TraceOpenFile(kernel, path, flags, self.cpu)
        if file.f_mode & FMODE_READ:
            seq_open(file)  # __tracing_open()'s __seq_open_private()
        return file


class TracePipeOpenFile(OpenFile):
    """An open ``trace_pipe``: ``tracing_read_pipe()`` (3.6) and its ``iter->seq``.

    A read returns what is left of the last fill if anything is, and nothing else;
    otherwise it fills the seq with whole entries (``print_trace_line()`` each), stopping
    once the seq holds the count or at the first entry that does not fit in its page, and
    returns up to the count, keeping the rest. So a read of a page returns whole lines,
    where a small read splits one. The entry that did not fit stays in the ring buffer, as
    everything after it: closing the file loses none of them.

    An entry that does not fit even in an empty seq (a stack whose text is over a page)
    would never be read: 3.6 loops forever there (the fill leaves the seq empty,
    ``trace_seq_to_user()`` returns -EBUSY, ``goto waitagain`` finds the entry again), at
    full CPU, the reader stuck in ``read()``.  The model does what upstream's c1ac03af6ed4
    ("tracing: Fix infinite loop in tracing_read_pipe on overflowed print_trace_line",
    2022) does instead: the seq keeps what fitted of the entry (``trace_seq_cut``), then
    ``iter->seq.full = 0; trace_seq_puts(&iter->seq, "[LINE TOO BIG]\\n")`` (written if it
    fits), the entry is consumed and the fill ends.  The model never hangs a reader.

    Each fill prints as 3.6's does: a fresh iterator (``iter->idx`` from 1), the flags and
    ``saved_cmdlines`` as they are then; ``latency-format`` as it was at open.  The entry
    being printed is still in 3.6's buffer when ``trace_print_lat_context()`` peeks for the
    next one, so it finds itself: the delay to the next entry is always 0 here.
    """

    def __init__(self, kernel: Kernel, path: str, flags: int, cpu: int | None) -> None:
        super().__init__(path, flags)
        self.kernel = kernel
        self.cpu = cpu
        self.lat_fmt = bool(kernel.tracing.trace_flags & TRACE_ITER_LATENCY_FMT)
        self.seq = b""  # filled, not yet read (trace_seq_to_user's leftover)
        #: ``signal_pending(current)`` of the task reading: the daemon binds its call's
        #: (kernel_daemon.rpc.tracefs_service.watch_client); a reader outside any call
        #: (the kernel's own, a test's) has no signals to take.
        self.signal_pending: Callable[[], bool] = lambda: False
        # iter->pos != 0: a read has found entries (tracing_read_pipe() sets it to -1).
        self.iter_pos = False

    def interrupt(self) -> None:
        """``signal_wake_up()`` of the task blocked in read: its wait tests
        :attr:`signal_pending` again. While that is true the read consumes nothing: a
        wait in ``tracing_wait_pipe()`` returns EINTR, and so does a fill about to take
        an event (:meth:`RingBuffer.consume`'s ``signal_pending``), so no event goes to a
        reader that is gone. Once the signal is taken (or a wake-up came late, for a call
        already out), the next read waits and reads as before."""
        self.kernel.ring_buffer.signal_wake_up()

    def read(self, size: int) -> bytes:
        if not self.seq:
            # tracing_read_pipe(), with no leftover to return, first copies current_trace
            # under trace_types_lock ("to avoid using a global lock all around"): the read
            # waits while a tracer switch holds it. The model's fill needs no copy.
            with self.kernel.tracing.trace_types_lock:
                pass
            self.seq = self._fill(min(size, TRACE_PIPE_MAX))
        chunk, self.seq = self.seq[:size], self.seq[size:]
        return chunk

    def release(self) -> None:
        # tracing_release_pipe(): the tracer's pipe_close (none of 3.6's tracers here have
        # one) under trace_types_lock.
        with self.kernel.tracing.trace_types_lock:
            pass

    def _fill(self, cnt: int) -> bytes:
        """The loop over ``trace_find_next_entry_inc``: whole entries while the seq holds
        fewer than ``cnt`` bytes; an entry that would not fit (``TRACE_TYPE_PARTIAL_LINE``)
        is neither printed nor consumed (``trace_consume()`` follows a whole line), so it
        stays in the buffer for the next read, of this reader or another. Waits only while
        there is nothing at all (``tracing_wait_pipe``)."""
        seq = bytearray()
        it: TraceIterator | None = None
        idx = 0  # iter->idx
        full = False

        def print_fitting(events: list[Event]) -> int:
            """Print the events that fit; how many (the ring buffer consumes those)."""
            nonlocal it, idx, full
            if it is None:
                it = trace_iterator(self.kernel, self.lat_fmt)
            for printed, ev in enumerate(events):
                text = it.print_trace_line(ev, idx + 1, ev.ts)
                entry = trace_bytes(text)
                if len(seq) + len(entry) > it.trace_seq_max(ev):  # TRACE_TYPE_PARTIAL_LINE
                    full = True
                    if seq:
                        return printed  # iter->seq.len = len: printed by a later read
                    # c1ac03af6ed4: save_len == 0, the entry alone is too big.
                    cut = it.trace_seq_cut(ev, text)
                    cut.full = False
                    cut.puts(LINE_TOO_BIG)
                    seq.extend(cut.buffer)
                    return printed + 1  # trace_consume()
                seq.extend(entry)
                idx += 1
                if len(seq) >= cnt:
                    return printed + 1
            return len(events)

        while len(seq) < cnt and not full:
            if not self._consume(block=not seq, cnt=cnt, take=print_fitting):
                break
        return bytes(seq)

    def _consume(self, block: bool, cnt: int, take: Callable[[list[Event]], int]) -> bool:
        """Take the next events off the ring buffer, as many as ``take`` prints; False when
        there are none and the read must not wait."""
        rb = self.kernel.ring_buffer
        nonblock = not block or bool(self.flags & os.O_NONBLOCK)
        while True:
            try:
                events = rb.consume(self.cpu, max_events=max(1, cnt // 48), nonblock=nonblock,
                                    timeout=WAIT_PIPE_SECONDS, take=take,
                                    signal_pending=self.signal_pending)
            except KernelError:  # EAGAIN: the reader's O_NONBLOCK, or a fill under way;
                # EINTR: a signal, which ends a fill under way with the lines it has
                if block:
                    raise
                return False
            if events:
                self.iter_pos = True
                return True
            if rb.closed:
                # No data will ever come: a reader blocked here dies with the old boot;
                # one that already has lines returns them first.
                if block:
                    raise kernel_gone(rb.end_reason)
                return False
            # tracing_wait_pipe(): once a read has found entries, an empty buffer with
            # tracing_enabled at 0 is the end of the file.  3.6 looks after each
            # wait_pipe (the function tracer's polls every 100 ms; nop's sleeps until a
            # trace_wake_up()), the model after each wait above.
            if not self.kernel.tracing.tracer_enabled and self.iter_pos:
                return False


class TracePipeFile(FileOps):
    """``tracing_pipe_fops``."""

    def __init__(self, cpu: int | None = None) -> None:
        self.cpu = cpu

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        # tracing_open_pipe() sets the iterator up under trace_types_lock (the open waits
        # while a tracer switch holds it), and calls nonseekable_open(); tracing_pipe_fops'
        # .llseek is no_llseek (the default).
        with kernel.tracing.trace_types_lock:
            file = TracePipeOpenFile(kernel, path, flags, self.cpu)
            nonseekable_open(file)
        return file


class SingleOpenFile(SeqText):
    """An open ``single_open()`` file with a write method: ``seq_read`` of its one record,
    a write handler and what that handler does to ``*ppos`` (:func:`store_write`)."""

    def __init__(self, path: str, flags: int, show: Callable[[], str],
                 store: Callable[[bytes], int | None], ppos_update: PposUpdate) -> None:
        super().__init__(path, flags, single_open(lambda: trace_bytes(show())), seq_lseek)
        self.store, self.ppos_update = store, ppos_update

    def write(self, data: UserBuffer) -> int:
        return store_write(self, self.store, self.ppos_update, data)


class SingleFile(FileOps):
    """The ``file_operations`` of a :class:`SingleOpenFile` (``trace_clock_fops``,
    ``tracing_iter_fops``): ``seq_read``, ``seq_lseek``, the write handler."""

    mode = 0o644

    def __init__(self, show: Show, store: Store, *, ppos_update: PposUpdate) -> None:
        self.show, self.store = show, store
        self.ppos_update = ppos_update

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        return seq_open(SingleOpenFile(path, flags, lambda: self.show(kernel),
                                       lambda data: self.store(kernel, data),
                                       self.ppos_update))


def tracing_on_show(kernel: Kernel) -> str:
    return f"{int(kernel.ring_buffer.record_is_on())}\n"


def tracing_on_store(kernel: Kernel, data: bytes) -> None:
    """``rb_simple_write``: nonzero turns recording on; then ``(*ppos)++``."""
    if kstrtoul_from_user(data):
        kernel.ring_buffer.record_on()
    else:
        kernel.ring_buffer.record_off()


def cpu_sizes(kernel: Kernel) -> list[int]:
    rb = kernel.ring_buffer
    return [rb.size_bytes(cpu) for cpu in range(rb.nr_cpus)]


def buffer_size_show(kernel: Kernel) -> str:
    """``tracing_entries_read()`` for RING_BUFFER_ALL_CPUS, under ``trace_types_lock``."""
    rb = kernel.ring_buffer
    with kernel.tracing.trace_types_lock:
        return buffer_size_kb(cpu_sizes(kernel), rb.expanded, rb.trace_buf_size)


def buffer_size_store(kernel: Kernel, data: bytes) -> None:
    """``tracing_entries_write``: KB for every CPU; 0 is EINVAL."""
    kernel.tracing.tracing_entries_write(kstrtoul_from_user(data))


def buffer_total_show(kernel: Kernel) -> str:
    """``tracing_total_entries_read()``, under ``trace_types_lock``."""
    rb = kernel.ring_buffer
    with kernel.tracing.trace_types_lock:
        return buffer_total_size_kb(cpu_sizes(kernel), rb.expanded, rb.trace_buf_size)


def cpu_buffer_size_show(kernel: Kernel, cpu: int) -> str:
    """``tracing_entries_read()`` for one CPU, under ``trace_types_lock``."""
    with kernel.tracing.trace_types_lock:
        return f"{kernel.ring_buffer.size_bytes(cpu) >> 10}\n"


def cpu_buffer_size_file(cpu: int) -> SimpleFile:
    """``per_cpu/cpuN/buffer_size_kb``: ``tracing_entries_fops`` made 0444, whose read is
    ``"%lu\n"`` of the CPU's KB (never the ``expanded`` form), and whose write, which root
    can still make, resizes that CPU alone (``tracing_resize_ring_buffer(val, cpu)``)."""
    return SimpleFile(lambda k: cpu_buffer_size_show(k, cpu),
                      lambda k, data: k.tracing.tracing_entries_write(kstrtoul_from_user(data),
                                                                      cpu),
                      ppos_update=ppos_add_count, llseek=generic_file_llseek, mode=0o444)


def tracing_stats_read(kernel: Kernel, cpu: int) -> str:
    """``per_cpu/cpuN/stats``: ``tracing_stats_read()`` of 3.6, line for line.

    ``entries`` is the CPU's events in the buffer (``ring_buffer_entries_cpu``),
    ``overrun`` the overwritten ones.  ``commit overrun`` counts writers that wrapped round
    an uncommitted event (an interrupt storm): the model's writers never nest, so 0.
    ``bytes`` is what the unread events occupy, the model's 64-byte records; ``oldest
    event ts`` see :meth:`RingBuffer.oldest_event_ts`; ``now ts`` is the trace clock.
    """
    rb = kernel.ring_buffer
    counters = rb.counters(cpu)
    oldest = rb.oldest_event_ts(cpu)
    return (f"entries: {counters.entries_in_buffer}\n"
            f"overrun: {counters.overrun}\n"
            f"commit overrun: 0\n"
            f"bytes: {(counters.head - counters.tail) * RB_EVENT_SIZE}\n"
            f"oldest event ts: {usecs_text(oldest)}\n"
            f"now ts: {usecs_text(kernel.trace_clock())}\n")


def trace_clock_show(kernel: Kernel) -> str:
    return " ".join(f"[{c}]" if c == kernel.trace_clock_name else c for c in TRACE_CLOCKS) + "\n"


def trace_clock_store(kernel: Kernel, data: bytes) -> None:
    """``tracing_clock_write``: fewer than 64 bytes (its buffer), ``strstrip()``ped.  The
    model keeps one monotonic clock for all three: the name is remembered and shown, the
    timestamps do not change meaning.  3.6 leaves the buffer's events as they are (a later
    kernel resets the buffer at a clock change, so that one trace does not mix clocks)."""
    if len(data) >= TRACE_CLOCK_BUF:
        raise KernelError(errno.EINVAL)
    name = strim(data).decode("latin-1")
    if name not in TRACE_CLOCKS:
        raise KernelError(errno.EINVAL)
    kernel.trace_clock_name = name


def nr_cpumask_bits(kernel: Kernel) -> int:
    """``nr_cpumask_bits``: ``nr_cpu_ids``, the model's CPU count, as with
    CONFIG_CPUMASK_OFFSTACK=y, which the modelled x86_64 kernel has from CONFIG_MAXSMP
    (see :data:`NR_CPUS`)."""
    return kernel.options.cpus


def cpumask_show(kernel: Kernel) -> str:
    """``tracing_cpumask_read()``: ``cpumask_scnprintf()``, then a newline."""
    return bitmap_scnprintf(kernel.tracing_cpumask, nr_cpumask_bits(kernel)) + "\n"


def cpumask_store(kernel: Kernel, data: bytes) -> None:
    """``tracing_cpumask_write()``: ``cpumask_parse_user()`` of the whole write; the mask
    changes only if it parses (EINVAL, EOVERFLOW).  A CPU leaving the mask has its ring
    buffer's recording disabled (``ring_buffer_record_disable_cpu()``), so nothing is
    recorded there, not even a ``trace_marker`` write (EBADF); one joining it, enabled."""
    new = bitmap_parse_user(data, nr_cpumask_bits(kernel))
    with kernel.tracing_cpumask_update_lock:
        old, kernel.tracing_cpumask = kernel.tracing_cpumask, new
        for cpu in range(kernel.options.cpus):
            if old >> cpu & 1 and not new >> cpu & 1:
                kernel.ring_buffer.record_disable_cpu(cpu)
            elif new >> cpu & 1 and not old >> cpu & 1:
                kernel.ring_buffer.record_enable_cpu(cpu)


class TracingCpumaskOpenFile(SimpleOpenFile):
    """An open ``tracing_cpumask``."""

    def read(self, size: int) -> bytes:
        """``tracing_cpumask_read()``: ``cpumask_scnprintf()`` into the read's count, which
        must leave room for the newline and the NUL after the mask (``count - len < 2``
        is EINVAL, whatever the position), then ``simple_read_from_buffer()`` from all of
        the static ``mask_str[NR_CPUS + 1]``: the mask, its newline, and NULs to the end
        (every read prints a mask of the same length, so nothing else is left there)."""
        data = trace_bytes(self.show())
        if size < len(data) + 1:
            raise KernelError(errno.EINVAL)
        return simple_read_from_buffer(self, size, data.ljust(NR_CPUS + 1, b"\0"))


class TracingCpumaskFile(SimpleFile):
    """``tracing_cpumask_fops``: its write (``tracing_cpumask_write()``) returns the
    count without touching ``*ppos``; ``generic_file_llseek``."""

    open_file = TracingCpumaskOpenFile

    def __init__(self) -> None:
        super().__init__(cpumask_show, cpumask_store, ppos_update=ppos_untouched,
                         llseek=generic_file_llseek)


class TraceMarkerOpenFile(OpenFile):
    def __init__(self, kernel: Kernel, path: str, flags: int) -> None:
        super().__init__(path, flags, generic_file_llseek)  # tracing_mark_fops
        self.kernel = kernel
        # The entry's ip is _THIS_IP_, the address of the statement that stores it, inside
        # tracing_mark_write() after its trace_buffer_lock_reserve() call: the model has
        # no code, so it takes that call's return address (0 without the symbol).
        self.ip = kernel.kallsyms.return_address("tracing_mark_write",
                                                 "trace_buffer_lock_reserve") or 0

    def write(self, data: UserBuffer) -> int:
        """``tracing_mark_write``: EBADF while recording is off (no event reserved);
        ``*fpos += written``, the count it took (at most TRACE_BUF_SIZE)."""
        task = current()
        # The writer was switched in to run: the sched_switch probe saw it, whether its
        # event fits or not (a full buffer without overwrite).
        self.kernel.saved_cmdlines.tracing_record_cmdline(task.pid, task.comm)
        written = self.kernel.ring_buffer.write_marker(
            smp_processor_id(), self.kernel.trace_clock(), task.pid, data, self.ip)
        self.pos += written
        return written


class TraceMarkerFile(FileOps):
    mode = 0o220

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        return TraceMarkerOpenFile(kernel, path, flags)

