"""What the daemon holds across calls: the booted kernel, its file tree, and counters.

A reboot builds a fresh kernel and swaps it in, then ends the old boot: the processes
of the old boot die with it. Calls bound to it for longer than one system call (a
tracer's stream, a trace_pipe reader, a failpoint waiter, a file session blocked in a
read) end with ENODEV at once, and a file session waiting for its client's next request
ends with ENODEV at that request (a half-close ends it with OK); a unary call already
inside the old kernel finishes against it, or fails with ENODEV where it would need the
old boot's shared memory, which is unlinked. New calls see the new boot. The daemon's
stop ends its boot the same way, before the server's grace, so that what waits in it
ends within the grace; a call that enters after it finds no new boot, and fails with
the ENODEV of the one shut down. A file session waiting for its client's next request
at the stop is not in the kernel but in gRPC, which only a request, a half-close or the
call's end wakes: its call is cancelled (its client sees gRPC's CANCELLED, not the
ENODEV, which a cancelled call cannot carry), and its file released; a session whose
operation is under way is answered, then ends with the ENODEV where it would wait
(:meth:`DaemonState.stopping`).

A client may say in which boot its task was born (the boot fence, ``x-ftrace-boot-id``,
clients.identity): a call of a task born in a boot that has ended is refused with that
ENODEV as it enters (:meth:`DaemonState.caller`), so that no process of an old boot acts
on a new one. The model's own: a real process dies with its kernel.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import gc
import itertools
import sys
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Iterator
from typing import Any, Callable, NoReturn, TypeVar

import grpc

from clients.identity import BOOT_ID_METADATA_KEY, PID_MAX_LIMIT, parse_identity_metadata
from kernel_daemon.errno import KernelError
from kernel_daemon.kernel import BootOptions, Kernel
from kernel_daemon.mutex import Acquisitions
from kernel_daemon.rpc.status import (LOCK_ACQUIRED_METADATA_KEY, SIGNAL_METADATA_KEY,
                                      add_trailing_metadata)
from kernel_daemon.signal import SignalTable, SigPending
from kernel_daemon.task import Task, enter_task, leave_task
from kernel_daemon.teardown import REBOOTED, SHUT_DOWN, kernel_gone
from kernel_daemon.tracefs.tree import mount
from kernel_daemon.tracefs.vfs import Vfs

#: CPython's switch interval, which the daemon runs at under a boot whose switch_interval is 0
#: (kernel.proto).
PYTHON_SWITCH_INTERVAL = 0.005
# A caller that does not say who it is (no x-ftrace-pid / x-ftrace-comm; gRPC gives a
# server no peer credentials to ask instead) still runs as some process: pid
# PID_MAX_LIMIT, which alloc_pid() never hands out (pids stay below pid_max, at most
# PID_MAX_LIMIT), so it names no client's real process and no task the kernel has from
# boot. Not 1: init's pid would have a WARN blame init and set_ftrace_pid 1 select every
# anonymous caller along with init.
ANONYMOUS = Task(PID_MAX_LIMIT, "grpc-client")
# Distinct callers' metadata remembered at most (the cache starts over past this).
MAX_CACHED_CALLERS = 4096
# The server's handler threads (server.py) are of four kinds, so that no kind can take
# the threads of another (common.proto STREAMS). Every open file session and tracer
# stream holds one for its life, as a process blocked in the kernel holds its task: leave
# room for many (CallSlots)...
MAX_STREAMS = 224
# ...server reflection's streams have a few of their own: a grpcurl-style client holds one
# through the call it looked up, so were they stream slots, a daemon whose slots are all
# taken could not be asked even a unary call that way; and as a client may keep one open
# as long as it likes, were they unary threads, that many idle ones would leave the unary
# calls none. A tool run by hand needs few at once...
MAX_REFLECTION_STREAMS = 8
# ...a unary call holds one while it runs, and may wait in the kernel as long as another
# task holds a lock (mutex_lock() is uninterruptible): 300 writes to set_ftrace_filter
# behind one paused at a failpoint took every thread, and not even the ReleaseFailpoint
# that would have let them go was answered. In the kernel each of them is a task of its
# own, and root's commands still run beside them; here the pool is the limit, so unary
# calls have a limit of their own, far above what any client makes at once (the stress
# runs' and benchmarks' workers: tens). A unary call that can block as long as a stream
# (a read of trace_pipe, WaitFailpoint) holds a stream slot as well (CallSlots.held), so
# the other unary calls keep at least the 32 above MAX_STREAMS...
MAX_UNARY_CALLS = 256
# ...Kernel.Reboot has two of its own: the other way out of a daemon whose unary calls
# all wait in the kernel (the old kernel's end lets its paused threads go, and its mutex
# waiters with them), were a wait to come from no failpoint ReleaseFailpoint could
# release; not a control call, as a boot is a few hundred ms of work...
MAX_REBOOTS = 2
REBOOT = "/ftrace.v1.Kernel/Reboot"
# ...and these are kept for the control calls (CONTROL_CALLS), which none of the limits
# count, and for the calls refused at a limit, which take one only to fail with ENFILE.
THREADS_FOR_CONTROL_CALLS = 32
# Threads are started only when a call finds none idle (ThreadPoolExecutor), so the
# limits cost nothing until calls reach them.
MAX_WORKERS = (MAX_STREAMS + MAX_REFLECTION_STREAMS + MAX_UNARY_CALLS + MAX_REBOOTS
               + THREADS_FOR_CONTROL_CALLS)
#: The unary calls that take no slot: the operator's way into a daemon whose other
#: threads all wait in the kernel (to let them go, to see why). Each of them never waits
#: on a kernel mutex nor for an event: it takes at most a lock no one holds across a wait
#: (the failpoints' lock, the signal table's, logbuf_lock, the ring buffer's per-CPU locks
#: Stats reads the counters under, the health servicer's). Not ListOps nor
#: CheckConsistency (ftrace_lock), nor Reboot (it boots a kernel: a few hundred ms of work,
#: which a client could ask for without end; it has MAX_REBOOTS), nor any call that opens
#: a file (the locks of its open and read).
CONTROL_CALLS = frozenset({
    "/ftrace.v1.Kernel/SetFailpoint", "/ftrace.v1.Kernel/ReleaseFailpoint",
    "/ftrace.v1.Kernel/ListFailpoints", "/ftrace.v1.Kernel/Kill",
    "/ftrace.v1.Kernel/Stats", "/ftrace.v1.Kernel/GetConfig", "/ftrace.v1.Kernel/Dmesg",
    "/grpc.health.v1.Health/Check"})
#: The largest answer a gRPC client takes unless told otherwise
#: (grpc.max_receive_message_length's default, in every gRPC stack): a larger one fails
#: RESOURCE_EXHAUSTED there, so no answer of the daemon's may grow past it.
MAX_ANSWER = 4 << 20

T = TypeVar("T")


@dataclass(eq=False)
class Boot:
    """One booted kernel and its file tree, and the calls bound to it (see :meth:`bind`)."""

    boot_id: int
    kernel: Kernel
    vfs: Vfs
    # Why it ended (kernel_daemon.teardown), the message of the ENODEV its calls end
    # with: set by end(), under _lock, before the callbacks run; empty until then.
    end_reason: str = field(default="", init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _bound: set[Callable[[], None]] = field(default_factory=set, init=False, repr=False)

    @property
    def ended(self) -> bool:
        """Whether :meth:`end` has run: a call can test it at any time."""
        return bool(self.end_reason)

    def bind(self, on_end: Callable[[], None]) -> None:
        """Tie a call to this boot: ``on_end()`` runs when the boot ends, to wake the call
        so that it ends with ENODEV. Raises KernelError(ENODEV) if it already ended."""
        with self._lock:
            if self.ended:
                raise self.gone()
            self._bound.add(on_end)

    def unbind(self, on_end: Callable[[], None]) -> None:
        with self._lock:
            self._bound.discard(on_end)

    def refuse_if_ended(self) -> None:
        """Raise :meth:`gone` once the boot has ended: a call entering it, or a stream's
        next request in it, meets a dead kernel (a call blocked inside is woken by the
        end itself, through :meth:`bind` or the kernel's shutdown)."""
        if self.ended:
            raise self.gone()

    def gone(self) -> KernelError:
        """The ENODEV of a call that finds the boot ended (the process died with its
        kernel), saying why it ended."""
        return kernel_gone(self.end_reason)

    def end(self, reason: str) -> None:
        """The boot is over (``reason``: REBOOTED or SHUT_DOWN): wake the calls bound to
        it, then shut the kernel down (which also wakes the ones blocked inside it, and
        unlinks its shared memory)."""
        with self._lock:
            self.end_reason = reason
            bound, self._bound = self._bound, set()
        for on_end in bound:
            on_end()
        self.kernel.shutdown(reason)


def set_switch_interval(options: BootOptions) -> None:
    """The daemon's sys.setswitchinterval() under a boot with ``options``: a boot option,
    though of the process that runs the kernel, so a reboot sets it again."""
    sys.setswitchinterval(options.switch_interval or PYTHON_SWITCH_INTERVAL)


def first_boot_id() -> int:
    """The id of a daemon's first boot: the wall clock at its start, in microseconds.

    Boot ids only grow (the boot fence judges a caller's boot by their order,
    :meth:`DaemonState._refuse_born_elsewhere`): by one a reboot within a daemon, and a
    daemon started later, on the same socket or another, begins above every id an
    earlier one gave, which would have had to reboot once a microsecond since. So a
    fenced client whose channel reconnects, unseen, to a restarted daemon is told its
    kernel is gone, as after a reboot; ids counted from 1 in each daemon told the new
    daemon's boot 1 from the old one's not at all. (Linux's own boot id,
    /proc/sys/kernel/random/boot_id, is a random UUID: no process outlives its kernel to
    compare two. A wall clock set back between two daemons can start the second below
    the first; a caller of the first then reads as of a boot not booted yet, EINVAL.)"""
    return time.time_ns() // 1000


class DaemonState:
    def __init__(self, options: BootOptions) -> None:
        self._boot_ids = itertools.count(first_boot_id())
        # Guards the boot swap, _stopped, the additions to _waiting (next_requests) and
        # the counters (rpc_counts, which registration.py's wrappers count under it, and
        # invocations).
        self.lock = threading.Lock()
        self._stopped = False  # stopping() ran: no boot is swapped in any more
        # The calls of the file sessions waiting for their client's next request
        # (next_requests), which stopping() cancels.
        self._waiting: set[grpc.ServicerContext] = set()
        self.rpc_counts: collections.Counter[str] = collections.Counter()
        # invocation metadata -> the Task it names and the boot it says the task was
        # born in, None if it does not (see caller()).
        self._callers: dict[tuple, tuple[Task, int | None]] = {}
        # The files open through tracefs calls (set.add and set.discard are atomic, so
        # opens and releases on many handler threads need no lock).
        self.open_files: set[object] = set()
        self.stream_slots = CallSlots(MAX_STREAMS, "streams")
        self.reflection_slots = CallSlots(MAX_REFLECTION_STREAMS, "reflection streams")
        self.unary_slots = CallSlots(MAX_UNARY_CALLS, "unary calls")
        self._reboot_slots = CallSlots(MAX_REBOOTS, "reboots")
        self.invocations = 0
        # The calls of each task inside the kernel, for kill(2) (Kernel.Kill).
        self.signals = SignalTable()
        self.boot = self._number(self._build(options))
        set_switch_interval(options)
        freeze_booted_kernel()

    @staticmethod
    def _build(options: BootOptions) -> tuple[Kernel, Vfs]:
        """A kernel booted with ``options`` and its file tree, not yet serving."""
        kernel = Kernel(options)
        return kernel, mount(kernel)

    def _number(self, built: tuple[Kernel, Vfs]) -> Boot:
        """The boot of a kernel about to serve, with the next boot id: given as it is
        swapped in (under the lock), so that ids grow in the order boots serve, and the
        boot serving has the newest (two reboots at once may finish building in either
        order)."""
        return Boot(next(self._boot_ids), *built)

    def reboot(self, options: BootOptions, replacing: Boot | None = None) -> Boot:
        """Boot a kernel with ``options`` and swap it in, then end the old boot. The old
        one serves until the swap, so a kernel that fails to boot replaces nothing.

        ``replacing``: the boot a fenced caller was born in (:meth:`caller`), the only one
        it may replace. Another reboot may have replaced that boot while this one's
        kernel booted: the caller died with it, and the call fails with its ENODEV
        instead of ending the boot after it (no process of an old boot acts on a new
        one). None (an unfenced caller): the boot serving at the swap is replaced.

        A reboot the daemon's stop overtakes while its kernel boots swaps nothing in:
        that kernel is shut down at once, and the call fails with the ENODEV of a boot
        shut down. The stop ends the boot that serves, and no boot comes after it."""
        built = self._build(options)
        with self.lock:
            if self._stopped:
                gone = SHUT_DOWN
            elif replacing is not None and replacing is not self.boot:
                gone = REBOOTED
            else:
                gone = ""
                new = self._number(built)
                old, self.boot = self.boot, new
                # Under the swap's lock: two reboots at once leave the interval of the
                # boot that serves.
                set_switch_interval(options)
        if gone:
            kernel, _ = built
            kernel.shutdown(gone)
            raise kernel_gone(gone)
        old.end(REBOOTED)
        del old
        freeze_booted_kernel()
        return new

    def stopping(self) -> None:
        """The daemon is stopping: end the boot now, before the server's grace, as a
        reboot ends the old one. What waits in it (a read of trace_pipe, a failpoint
        waiter, a tracer's stream) then ends within the grace with the ENODEV of a boot
        shut down, not with gRPC's cancel at the grace's end; a call still running
        finishes against the dead kernel, or fails with that ENODEV where it needs its
        shared memory. The boot is the last: a reboot under way swaps none in after.

        A file session waiting for its client's next request (:meth:`next_requests`)
        waits in gRPC, not in the kernel: only a request, the client's half-close or the
        call's end wakes it, and it would hold the daemon's exit for the whole grace.
        Its call is cancelled now, as a shutdown kills the processes that hold files:
        its file is released (the session's end), and its client sees gRPC's CANCELLED,
        without the ENODEV, which a cancelled call cannot carry. Each is cancelled alone,
        not by the server's cancel of all calls, which would also cut off the ENODEV
        answers of the calls the boot's end woke before gRPC sent them."""
        with self.lock:
            self._stopped = True
            waiting = list(self._waiting)
        self.boot.end(SHUT_DOWN)
        for context in waiting:
            context.cancel()

    def unary_slots_of(self, full_name: str) -> CallSlots | None:
        """The limit a unary method's calls hold a slot of while they run: Reboot's own,
        none for a control call (CONTROL_CALLS), else the unary calls'."""
        if full_name in CONTROL_CALLS:
            return None
        return self._reboot_slots if full_name == REBOOT else self.unary_slots

    def next_requests(self, requests: Iterator[T], context: grpc.ServicerContext,
                      gone: Callable[[], KernelError] | None) -> Iterator[T]:
        """A file session's ``requests``, its call (``context``) known to be waiting for
        the next one meanwhile, so that the daemon's stop cancels it (:meth:`stopping`).
        Past the stop, the session ends with ``gone()`` (its boot's ENODEV) where it
        would wait for the next: an operation under way at the stop is answered first.
        A stream bound to no boot (server reflection's) passes None: its requests end
        there, as at a half-close.

        No thread: the wait is gRPC's own, in the handler's thread (a reader thread per
        session, to wait on the stop too, cost the daemon a thread hand-off per
        request); what a request costs here is two set updates, one under the lock."""
        lock, waiting = self.lock, self._waiting
        while True:
            with lock:
                if self._stopped:
                    if gone is None:
                        return
                    raise gone()
                waiting.add(context)
            try:
                request = next(requests)
            except StopIteration:
                return
            finally:
                waiting.discard(context)
            yield request

    def _identify(self, metadata: Any) -> tuple[Task, int | None]:
        """The calling process named by identity metadata not seen before, and the boot
        it says it was born in (see caller).

        Malformed metadata raises KernelError(EINVAL) every time, as it is never cached;
        a boot id is cached, and judged at every call against the call's boot (caller).
        """
        pid, comm, born_in = parse_identity_metadata(metadata)
        named = Task(pid if pid is not None else ANONYMOUS.pid, comm or ANONYMOUS.comm), born_in
        if isinstance(metadata, tuple):
            if len(self._callers) >= MAX_CACHED_CALLERS:
                self._callers.clear()
            self._callers[metadata] = named
        return named

    def _refuse_born_elsewhere(self, born_in: int) -> NoReturn:
        """A task born in boot ``born_in`` calls into another boot (the boot fence,
        module docstring). A boot up to the one serving, and not the call's, has ended:
        its processes died with it, and the call gets the ENODEV of a call that finds its
        boot ended. A boot newer than the one serving is none the task can have been born
        in: malformed metadata, EINVAL. The boot serving is read after the call's: a
        client learns a boot's id only from a call that boot served, and ids grow in the
        order boots serve (:meth:`_number`), so it knows of no boot newer than that."""
        newest = self.boot.boot_id
        if born_in > newest:
            raise KernelError(errno.EINVAL, f"{BOOT_ID_METADATA_KEY}: boot {born_in} has not "
                                            f"booted (the newest is {newest})")
        raise kernel_gone(REBOOTED)

    def syscall(self, context: grpc.ServicerContext, report_locking: bool = False) -> Syscall:
        """Enter the kernel as the calling process (``with state.syscall(context) as
        boot:``); yields the boot to work on.

        ``report_locking`` (the unary calls that change kernel state): the times the
        call acquired ftrace_lock go back in its trailing metadata, failed or not. A
        signal the call took (kernel_daemon.signal) goes back there too.
        Malformed identity metadata raises KernelError(EINVAL) before anything runs, and a
        task born in a boot that has ended the ENODEV of that boot (:meth:`caller`).
        A call that finds its boot ended raises that boot's ENODEV (:meth:`Boot.gone`),
        as a call already inside would meet it: after the daemon's stop ended the last
        boot, "ftraced is shutting down" (gRPC takes calls until the server's grace
        begins); a reboot swaps the new boot in before it ends the old, so only a call
        that read the old one just before the swap can find it ended ("the kernel
        rebooted"), as it would have had it entered a moment sooner. The boot is read
        once: the call's pid goes into the table of the boot it works on.
        """
        boot = self.boot
        task, born_in = self._enter(context, boot)
        boot.refuse_if_ended()
        return Syscall(task, boot, context, self.signals, report_locking,
                       fenced=born_in is not None)

    def caller(self, context: grpc.ServicerContext, boot: Boot | None = None) -> Task:
        """The calling process, from the call's identity metadata: parsed once per
        distinct metadata (a client sends the same with every call).

        Every call comes in here, so this is where a process enters the kernel (``boot``'s;
        None: the boot serving): its pid goes into the kernel's pid table for
        ``find_get_pid``, a table of the model's own choosing, as it has no process table
        (kernel_daemon.pid). And where the boot fence is kept: a task that says it was
        born in another boot than ``boot`` enters nothing (:meth:`_refuse_born_elsewhere`:
        ENODEV for a boot that has ended, EINVAL for one that has not booted).
        """
        return self._enter(context, boot)[0]

    def _enter(self, context: grpc.ServicerContext,
               boot: Boot | None = None) -> tuple[Task, int | None]:
        """:meth:`caller`, and the boot the caller says it was born in (None: unfenced)."""
        metadata = context.invocation_metadata()
        try:
            task, born_in = self._callers[metadata]
        except (KeyError, TypeError):  # TypeError: metadata that is not a hashable tuple
            task, born_in = self._identify(metadata)
        boot = boot or self.boot
        if born_in is not None and born_in != boot.boot_id:
            self._refuse_born_elsewhere(born_in)
        boot.kernel.pid_hash.attach_pid(task.pid)
        return task, born_in

    def count_invocations(self, calls: int) -> None:
        with self.lock:
            self.invocations += calls


def freeze_booted_kernel() -> None:
    """Move every object alive now out of the cyclic collector's reach (``gc.freeze``).

    A booted kernel is some 80,000 Python objects (symbols, the file tree) that live as
    long as it does; each full collection would walk them all, about 50 ms during which
    every call waits. What a previous boot left behind is collected first.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class InKernel:
    """One stay of a task's call in the kernel, from its entry (``system_call``) to its
    way out, where a pending signal is taken (``int_signal`` -> ``do_notify_resume()``
    -> ``do_signal()``): ``current`` is the task meanwhile, and ``kill(2)`` finds the
    call (``signals``). :attr:`signo` is the signal it took (0: none). The way out is
    undone whatever raised, so that a Kill never counts a call that is gone. The Session
    loop enters one per operation, with the session's :class:`SigPending`;
    :class:`Syscall` is one for its whole call."""

    __slots__ = ("task", "signals", "pending", "token", "signal_token", "signo")

    def __init__(self, task: Task, signals: SignalTable, pending: SigPending) -> None:
        self.task = task
        self.signals = signals
        self.pending = pending
        self.signo = 0

    def __enter__(self) -> None:
        self.token = enter_task(self.task)
        self.signal_token = self.signals.enter(self.task.pid, self.pending)

    def __exit__(self, *exc_info: object) -> None:
        try:
            leave_task(self.token)
        finally:
            self.signo = self.signals.leave(self.task.pid, self.pending, self.signal_token)


class Syscall(InKernel):
    """The context of :meth:`DaemonState.syscall`: the caller's call in the kernel
    (:class:`InKernel`); a signal it took on the way out is reported in the call's
    trailing metadata (:data:`SIGNAL_METADATA_KEY`)."""

    __slots__ = ("boot", "context", "report_locking", "fenced", "acquired")

    def __init__(self, task: Task, boot: Boot, context: grpc.ServicerContext,
                 signals: SignalTable, report_locking: bool = False,
                 fenced: bool = False) -> None:
        super().__init__(task, signals, SigPending(context))
        self.boot = boot
        self.context = context
        self.report_locking = report_locking  # report ftrace_lock acquisitions too
        self.fenced = fenced  # the caller said it was born in boot (the boot fence)

    def __enter__(self) -> Boot:  # type: ignore[override]
        super().__enter__()
        if self.report_locking:
            self.acquired = Acquisitions().__enter__()
        return self.boot

    def __exit__(self, *exc_info: object) -> None:
        try:
            super().__exit__(*exc_info)
            if self.signo:
                add_trailing_metadata(self.context, ((SIGNAL_METADATA_KEY, str(self.signo)),))
        finally:
            if self.report_locking:
                self.acquired.__exit__(*exc_info)
                if reported := self.acquired.reported():
                    add_trailing_metadata(self.context, (
                        (LOCK_ACQUIRED_METADATA_KEY, " ".join(map(str, reported))),))


class CallSlots:
    """The handler threads the calls of a kind may hold at once (common.proto STREAMS):
    never the :data:`THREADS_FOR_CONTROL_CALLS` of the server's, nor another kind's, so
    that the control calls always find one. ``what`` names the kind in the ENFILE of a
    call past the limit."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.open -= 1

    def exhausted(self) -> KernelError:
        return KernelError(errno.ENFILE, f"all {self.limit} {self.what} of the daemon are open")

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A stream slot for a unary call that may block as long as a stream lives (a
        read of ``trace_pipe``, ``WaitFailpoint``), on top of its unary slot: without
        one, enough of those calls would take every unary slot, and leave every other
        unary call of every client an ENFILE."""
        if not self.take():
            raise self.exhausted()
        try:
            yield
        finally:
            self.give_back()
