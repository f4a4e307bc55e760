"""Ctrl-C during a blocking gRPC call: the call is cancelled, and KeyboardInterrupt is
raised afterwards from here, never from inside gRPC. One mechanism, :func:`interruptible`,
for the waits of both kinds of call: a response stream's next message (:class:`Messages`)
and a unary call's answer (:func:`unary_call`); and for their start, :func:`started`.
The plain blocking calls that change kernel state (:func:`blocking_call`) are the
exception: their cancel is still KeyboardInterrupt raised in gRPC's wait.

Python raises KeyboardInterrupt wherever the main thread is when SIGINT's handler runs.
In a response stream's ``next()`` that is inside grpc's ``_channel``, which keeps its
books under two ``threading.Condition``s, the call's and the channel's (cygrpc's), whose
``__enter__``, ``__exit__`` and ``wait()`` are Python code. Raised just after
``__enter__`` took the channel's lock, or just before ``__exit__`` gives it back
(python/cpython#74174), it leaves that lock held by the main thread for good; the thread
sending a session's requests, holding the call's lock, then waits on it, and so does the
channel's spin thread — and the main thread's ``cancel()`` (which makes the daemon release
the file) waits on the call's lock forever. Raised in ``wait()`` between
``_release_save()`` and its ``try``, it leaves the call's lock released under the
``with`` that holds it, which then fails with RuntimeError instead.

A blocking unary call (``stub.Method(request)``, ``with_call``) does take Ctrl-C: it
waits in cygrpc's ``_latent_event``, which polls the call's completion queue in slices of
200 ms and runs the signal handlers between them (``PyErr_CheckSignals``). That point
holds no lock of grpc's, and ``_next_call_event``'s ``on_failure`` cleans up (the fix of
grpc/grpc#19973, a Channel.close() deadlock after such an interrupt); but once the answer
is in, ``_next_call_event`` takes the channel's condition (``with
channel_state.condition``: Python's ``__enter__`` again) and ``_channel._handle_event``
is Python code too, where KeyboardInterrupt leaves the locks as above; and its call
object only comes back with the answer, so nothing can cancel it. Made with ``.future()``
instead (:func:`unary_call`), the call is a ``_MultiThreadedRendezvous``, answered by the
channel's spin thread, whose ``result()`` waits exactly as a stream's ``next()`` does
(``_common.wait`` on the call's condition), and whose ``cancel()`` is the stream's.
That costs the spin thread's hop (``Client._locking_call`` says for which calls it is not
worth it).

This does what the kernel does for a task in an interruptible sleep: a pending signal
wakes the wait, the system call unwinds (``wait_event_interruptible()`` returns
-ERESTARTSYS), and only on the way back to user space is the signal delivered
(``do_signal()``). Here SIGINT's handler, for the time of the wait, only cancels the
call, as grpc's own cancellation example does (examples/python/cancellation,
grpc/grpc#19464): ``cancel()`` takes no lock the interrupted thread could be holding
other than grpc's conditions, RLocks it may take again, and leaves the call consistent.
gRPC then ends the wait with CANCELLED, and KeyboardInterrupt is raised here.

Starting such a call runs grpc's Python code too, and takes its locks: the stub's
``__call__`` or ``future()`` (``_channel.py``) hands the call's operations to
``_channel_managed_call_management``'s ``create``, which under the channel's call lock
has cygrpc make the call (``channel.pyx.pxi``'s ``_call``, under ``with
channel_state.condition``, the channel's ``threading.Condition`` once more), counts it in
``managed_calls`` and, on a channel with no call in flight, starts the spin thread; a call
with a request iterator then starts the thread consuming it (``_consume_request_iterator``).
A SIGINT that comes while cygrpc makes the call (C code: the handler waits for the next
bytecode) raises KeyboardInterrupt as that ``with`` ends, in ``Condition.__exit__`` before
it releases the lock: no call on the channel can start again, and ``Channel.close()``
waits for the lock for good. One that comes while a thread starts
(``Thread.start()`` waits on an Event) leaves a call that is made and running but never
returned: nothing can cancel it, and the daemon keeps its stream (and, for a session,
gRPC its sending thread) until the channel closes. :func:`started` makes a call with
SIGINT only noted, as the kernel leaves a signal pending over a task's uninterruptible
sleep, then cancels it and raises KeyboardInterrupt. Plain blocking calls
(``stub.Method(request)``) start in ``_call`` too, and cannot be helped this way: their
start and their wait are one call of grpc's (``_blocking``), and SIGINT only noted over
the wait would keep Ctrl-C out of it; made with ``.future()`` they would pay the spin
thread's hop (``Client._locking_call`` says for which calls that is not worth it).
:func:`blocking_call` notes only the first Ctrl-C, over both, for the Kill below; the
second raises where it lands, as the first did before Kill.

A call made as a system call of the client's task (a file session's operations, a
trace_pipe stream, the plain blocking calls of :func:`blocking_call`: the callers pass
``kill``) is not cancelled by the first Ctrl-C: its task is signalled instead
(``Kernel.Kill``, kill(2)), as the tty's SIGINT reaches a process blocked in the kernel,
and the wait goes on. An interruptible wait in the daemon ends at once (EINTR); an
uninterruptible one (a write waiting for ftrace_lock, which 3.6 takes with mutex_lock())
completes first, so its effect is in place before the program goes on; then
:class:`SignalTaken` (a KeyboardInterrupt) is raised. A second Ctrl-C
cancels the call outright, the way out of a lock that never frees. ``kill`` runs on a
thread of its own (:class:`_Signaller`): a handler that made a gRPC call itself would run
grpc's Python code inside grpc's, where the main thread may hold its locks. A daemon
without Kill (UNIMPLEMENTED), or a task with no call inside the kernel (the answer came
already, or the call has not reached the daemon yet), gets today's cancel.

A cancelled call is not done with yet: gRPC's threads still take its lock to handle what
the cancel completes, and a program that exits meanwhile can hang in the call's
``__del__``. :func:`settle` waits until they are done with it; the client library settles
every call it ends (and waits for the end of the thread sending a session's requests,
``clients.api.RequestQueue.join``).
"""

from __future__ import annotations

import _signal  # signal's C module: _sigint_cancels says why
import _thread
import queue
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, Callable, Protocol, TypeVar

import grpc

__all__ = ["Kill", "Messages", "SIGNALLER_THREAD", "SignalTaken", "blocking_call",
           "interruptible", "started", "unary_call", "settle", "SETTLE_TIMEOUT"]

T = TypeVar("T")
C = TypeVar("C", bound=grpc.RpcContext)

#: Seconds the end of a call waits for gRPC's threads to let go of it (:func:`settle`,
#: ``RequestQueue.join``): they have only to take its lock once more, a matter of
#: milliseconds; past that, its lock is held for good already (a KeyboardInterrupt that
#: landed inside grpc), and the caller goes on.
SETTLE_TIMEOUT = 5.0


#: SIGINT to the task a call runs as (``Kernel.Kill``): whether it reached a call of the
#: task inside the kernel. False (nothing reached, no Kill in the daemon, a failure)
#: has the call cancelled instead.
Kill = Callable[[], bool]


class SignalTaken(KeyboardInterrupt):
    """Ctrl-C during a call whose task took the signal (``kill``): the call answered, or
    its stream ended, in order; it was not cancelled (a file session is still open).

    ``answer``: the call's answer, None when it failed (EINTR: a read interrupted before
    it read anything): a plain blocking call's response (:func:`blocking_call`), a file
    session operation's result (``FileSession``: a write's WriteResult, a read's
    ReadResult), a response stream's message (:class:`Messages`: ``Client.trace_pipe``'s
    TracePipeChunk, None once the stream ended). What it holds happened, as a killed process's system calls did: the
    lines a read of trace_pipe took off the buffer before the signal are there
    (``Client.read_file``, ``FileSession.read``), for a program that handles SIGINT to
    use; cat, which does not, dies before it writes them (ftrace-shell's cat prints
    nothing of them either)."""

    def __init__(self, answer: Any = None) -> None:
        super().__init__()
        self.answer = answer


class _Signal:
    """One Ctrl-C's signal to a call's task: sent by :class:`_Signaller`, ``done`` once
    sent (and the call cancelled, ``cancelled``, if it reached nothing)."""

    __slots__ = ("kill", "call", "done", "cancelled")

    def __init__(self, kill: Kill, call: grpc.RpcContext) -> None:
        self.kill, self.call = kill, call
        self.done = threading.Event()
        self.cancelled = False


#: The name of :class:`_Signaller`'s thread: one per process, for its life, waiting.
SIGNALLER_THREAD = "ftrace-signaller"


class _Signaller:
    """The thread that sends the signals SIGINT's handler hands it (``SimpleQueue.put``
    may be called from a signal handler). Started outside any handler, before a wait
    that may need it: a thread's start waits on locks of threading's own."""

    def __init__(self) -> None:
        self._signals: queue.SimpleQueue[_Signal] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=SIGNALLER_THREAD)
            self._thread.start()

    def send(self, sig: _Signal) -> None:
        self._signals.put(sig)

    def _run(self) -> None:
        while True:
            sig = self._signals.get()
            try:
                try:
                    reached = sig.kill()
                except Exception:  # noqa: BLE001  (the call is cancelled instead, as before)
                    reached = False
                if not reached:
                    sig.cancelled = True
                    sig.call.cancel()
            finally:
                sig.done.set()  # interruptible() waits for it without a timeout of its own


_signaller = _Signaller()


def _sigint_cancels() -> bool:
    """Whether a wait here may take SIGINT over: only on the main thread (the only one
    with signal handlers), and only while SIGINT raises KeyboardInterrupt
    (``signal.default_int_handler``) — a program that handles SIGINT itself, or ignores
    it, keeps its way.

    SIGINT's handler is read and set here through ``_signal``, the C module ``signal``
    wraps: ``signal.getsignal()`` and ``signal.signal()`` make the handler they return a
    ``Handlers`` member where it is one, which for a function fails, a ValueError raised
    and caught: 5 to 10 µs a call, against 1 µs for ``_signal``'s (measured on the
    development machine, under load), and a wait here changes the handler twice."""
    return (threading.current_thread() is threading.main_thread()
            and _signal.getsignal(signal.SIGINT) is signal.default_int_handler)


def interruptible(call: grpc.RpcContext, wait: Callable[[], T], kill: Kill | None = None) -> T:
    """``wait()``'s result, ``wait`` being a wait for ``call`` (its next message, its
    answer, or all its messages in a loop of the client's own); Ctrl-C meanwhile cancels
    ``call``, then raises KeyboardInterrupt after ``wait()`` returned (even if an answer
    came meanwhile: it is dropped, as the interrupted read's data would be) and the
    cancelled call settled (:func:`settle`). With ``kill``, the first Ctrl-C signals the
    call's task instead and the wait goes on (the module docstring says why); then
    :class:`SignalTaken` is raised with ``wait()``'s result as its answer (None when the
    wait ended in an error or the stream's end), or KeyboardInterrupt if the call was
    cancelled after all (a second Ctrl-C, or a signal that reached nothing). Where SIGINT
    is not ours to take over (:func:`_sigint_cancels`), just ``wait()``."""
    if not _sigint_cancels():
        return wait()
    interrupted = cancelled = False
    sent: _Signal | None = None
    result: Any = None  # wait()'s, once it returned

    def cancel(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted, cancelled
        interrupted = cancelled = True
        call.cancel()
        # From now on a second Ctrl-C raises KeyboardInterrupt where it lands, as
        # before: the way out should this cancel not end the wait. Not before
        # cancel() returns: it takes grpc's locks, where KeyboardInterrupt must not
        # land (a Ctrl-C during it runs this again, and cancel() does nothing).
        _signal.signal(signal.SIGINT, signal.default_int_handler)

    def signal_task(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted, sent
        assert kill is not None
        interrupted = True
        sent = _Signal(kill, call)
        _signaller.send(sent)
        _signal.signal(signal.SIGINT, cancel)  # a second Ctrl-C cancels outright

    if kill is not None:
        _signaller.start()
    _signal.signal(signal.SIGINT, cancel if kill is None else signal_task)
    try:
        try:
            result = wait()
        except Exception:
            if not interrupted:
                raise  # StopIteration too: the stream's end
            # The cancelled call's CANCELLED (FutureCancelledError for a unary call's
            # result()), or the end of a stream the signal ended: the interrupt's doing,
            # which says it instead.
        if sent is not None:
            # The Kill is done with (the program's exit must not cut it), and the call
            # cancelled if it reached nothing. No timeout here: the Kill has its own
            # deadline (Client._kill_sigint), and a wait shorter than it would go on
            # to close a session the signaller may still cancel. Under this call's
            # handler still, so that a Ctrl-C meanwhile cancels (signal_task set
            # ``cancel``) instead of raising here, which would skip the settle below.
            sent.done.wait()
            cancelled = cancelled or sent.cancelled
    finally:
        _signal.signal(signal.SIGINT, signal.default_int_handler)
    if cancelled:
        # What the cancel completes is handled before the program goes on to its exit.
        settle(call)
        raise KeyboardInterrupt
    if interrupted:
        # Not cancelled: the call goes on (a file session stays open until its owner
        # closes it), so there is nothing to settle, and waiting for its end would
        # wait for SETTLE_TIMEOUT.
        raise SignalTaken(result)
    return result


class _Blocked:
    """A plain blocking call (:func:`blocking_call`) as :class:`_Signaller` cancels it,
    when its Kill reached nothing. grpc's ``_blocking`` keeps the call object to itself,
    so its only cancel is the one Ctrl-C made before Kill: KeyboardInterrupt in the main
    thread's wait, where cygrpc's ``_next_call_event`` drops the call
    (``on_failure``: grpc_call_unref() of a call not done cancels it). The signaller has
    SIGINT's handler, :func:`blocking_call`'s, run for that (``interrupt_main``)."""

    __slots__ = ("waiting", "cancelled")

    def __init__(self) -> None:
        self.waiting = True  # the main thread is in the call (with_call() not returned)
        self.cancelled = False  # SIGINT's handler was run to cancel it

    def cancel(self) -> None:
        """On the signaller thread. Not once the call returned, nor after a second
        Ctrl-C: its handler ran, or will run, with this one's."""
        if self.waiting and not self.cancelled:
            _thread.interrupt_main(signal.SIGINT)


def blocking_call(method: Any, request: Any, kill: Kill) -> tuple[Any, grpc.Call]:
    """``method.with_call(request)``, a plain blocking call (no spin thread's hop: what
    ``Client._locking_call`` says it saves), made as a system call of the client's task
    (``kill``). The first Ctrl-C signals the task and the wait goes on, as in
    :func:`interruptible`: SIGINT's handler only hands the Kill to :class:`_Signaller`
    and returns, and cygrpc's ``_latent_event``, which ran it between two of its 200 ms
    polls (``PyErr_CheckSignals``), polls on. Then :class:`SignalTaken` is raised, with
    the answer (its ``answer``; the call's error is dropped, as the interrupted system
    call's return is).
    A second Ctrl-C, or a Kill that reached nothing (no Kill in the daemon, the call not
    in it yet, or answered already), raises KeyboardInterrupt in the wait, as Ctrl-C did
    before Kill (:class:`_Blocked`): the call is cancelled, and KeyboardInterrupt raised
    after the Kill is done with. Where SIGINT is not ours to take over
    (:func:`_sigint_cancels`), just ``with_call``.

    The first handler runs wherever the main thread is (in grpc's Python code, holding
    its locks, too), which is why it raises nothing. The second raises where it lands,
    as Ctrl-C did before: a plain call's start and wait are one call of grpc's, which
    has no call object to cancel instead (the module docstring says where that can go
    wrong). The cost, some 5 µs (the handler set twice, the handlers made), is measured
    in ``Client._locking_call``."""
    if not _sigint_cancels():
        return method.with_call(request)
    blocked = _Blocked()
    sent: _Signal | None = None
    answer: tuple[Any, grpc.Call] | None = None

    def signal_task(signum: int, frame: FrameType | None) -> None:
        nonlocal sent
        sent = _Signal(kill, blocked)
        _signaller.send(sent)
        _signal.signal(signal.SIGINT, cancel)  # a second Ctrl-C cancels outright

    def cancel(signum: int, frame: FrameType | None) -> None:
        blocked.cancelled = True
        if blocked.waiting:
            raise KeyboardInterrupt
        # The answer is in: nothing to cancel; it is dropped (raised after the Kill).

    _signaller.start()
    _signal.signal(signal.SIGINT, signal_task)
    try:
        try:
            answer = method.with_call(request)
        except KeyboardInterrupt:
            if not blocked.cancelled:
                raise  # not ours (SIGTERM's, say: clients.cli)
        except grpc.RpcError:
            if sent is None:
                raise
        finally:
            blocked.waiting = False
        if sent is not None:
            # Under cancel still, which now only notes a Ctrl-C: the signaller's trip
            # for a Kill that reached nothing is handled here, not by KeyboardInterrupt's
            # handler. _signal.signal() below runs a trip still pending (it checks for
            # signals before it sets the handler). The Kill has its own deadline.
            sent.done.wait()
    finally:
        _signal.signal(signal.SIGINT, signal.default_int_handler)
    if sent is not None:
        if blocked.cancelled or sent.cancelled:
            raise KeyboardInterrupt
        raise SignalTaken(None if answer is None else answer[0])
    assert answer is not None
    return answer


class Messages:
    """The messages of a gRPC call's response stream, as iterating ``call`` gives them;
    each one waited for :func:`interruptible`.

    SIGINT's handler is set and restored around each message, not once for the whole
    iteration: between two messages the caller handles the first, and there SIGINT must
    act as it did before (KeyboardInterrupt where it lands, or the program's own
    handler). A handler kept across the caller's code would leave Ctrl-C only cancelling
    the call until the caller asks for the next message, and would outlive an iteration
    the caller abandons (a generator is only closed when collected), where the next
    stream would take it for the program's own. The price: the two ``_signal.signal()``
    calls take some 2 µs, against some 1000 µs for a session's read from the daemon
    (measured on the development machine). A loop that runs no caller code between
    messages waits for all of them in one :func:`interruptible` instead
    (``Client.dump_records``, ``FileSession.close``).
    """

    def __init__(self, call: Any, kill: Kill | None = None) -> None:
        self._call = call
        self._kill = kill  # the call's task to signal on Ctrl-C (interruptible)

    def __iter__(self) -> "Messages":
        return self

    def __next__(self) -> Any:
        return interruptible(self._call, self._call.__next__, self._kill)


class Requests(Protocol):
    """The request side of a bidirectional call (``clients.api.RequestQueue``)."""

    def end(self) -> None:
        """No more requests: gRPC's thread consuming them ends."""

    def join(self) -> None:
        """After :meth:`end`: return when that thread has ended."""


class Noted:
    """Whether a SIGINT came while :func:`sigint_noted` held it."""

    __slots__ = ("interrupted",)

    def __init__(self) -> None:
        self.interrupted = False


@contextmanager
def sigint_noted() -> Iterator[Noted]:
    """For the block, SIGINT is noted (``Noted.interrupted``), not raised: for code that
    KeyboardInterrupt must not cut in two (a call's start, here; a thread's start, whose
    ``Thread.start()`` waits on threading's own event: raised there, the thread runs but
    its starter never learns it). The block decides what a noted Ctrl-C does. Where SIGINT
    is not ours to take over (:func:`_sigint_cancels`), nothing is noted and SIGINT does
    what it did."""
    noted = Noted()
    if not _sigint_cancels():
        yield noted
        return

    def note(signum: int, frame: FrameType | None) -> None:
        noted.interrupted = True

    _signal.signal(signal.SIGINT, note)
    try:
        yield noted
    finally:
        _signal.signal(signal.SIGINT, signal.default_int_handler)


def started(create: Callable[[], C], requests: Requests | None = None) -> C:
    """The call ``create()`` makes (``stub.Method(request)`` for a response stream,
    ``stub.Method.future(request)``, ``stub.Method(requests)`` for a bidirectional one),
    made with SIGINT noted, not raised (the module docstring says what KeyboardInterrupt
    does in there). A Ctrl-C meanwhile cancels the call once it exists (and ends
    ``requests``, after the cancel: gRPC's thread sending them then ends without a
    half-close), still only noted; then, SIGINT raising KeyboardInterrupt again, waits
    until gRPC's threads are done with the call (``requests.join()``, :func:`settle`)
    and raises KeyboardInterrupt. Where SIGINT is not ours to take over
    (:func:`_sigint_cancels`), just ``create()``.

    The cost, two ``_signal.signal()`` calls, some 2 µs here, against 0.5 to 2 ms for the
    start of a call (measured on the development machine under load).

    A Ctrl-C after this returned is the caller's, as one after ``open(2)`` returned is a
    program's: before the caller's ``try`` or ``with`` holds the call, and in the instant
    between SIGINT's handler restored here and the return, KeyboardInterrupt leaves the
    call to the channel's close (as it left a call whose answer had come in
    :func:`interruptible`'s)."""
    with sigint_noted() as noted:
        try:
            call = create()
            if noted.interrupted:
                # Under note still: cancel() takes grpc's locks too.
                call.cancel()
                if requests is not None:
                    requests.end()
        except BaseException as error:
            if noted.interrupted:  # the Ctrl-C is not lost to a start that failed meanwhile
                raise KeyboardInterrupt from error
            raise
    if noted.interrupted:
        if requests is not None:
            requests.join()
        settle(call)
        raise KeyboardInterrupt
    return call


def settle(call: Any) -> None:
    """Wait until gRPC has handled every event of ``call``, which has ended (cancelled,
    or ended by the daemon): after this no thread of gRPC's takes its lock again.

    The channel's spin thread handles each event of a call under the call's lock
    (``_channel._event_handler``: ``with state.condition``), some of them after the call
    ended: cancel() has gRPC complete the operations still due (a pending read, the
    status) afterwards, and ``Channel.close()`` returns once cygrpc took the events off
    its queue (``_close`` waits for ``integrated_call_states`` only), not once they are
    handled. A daemon thread still in there as the interpreter exits is stopped where it
    stands, keeping the lock for good, and the call's ``__del__`` (``_Rendezvous.__del__``:
    ``with self._state.condition``), run by the exit when the call is still referenced,
    waits on it forever. ``_RPCState.due`` holds the operations whose events are still to
    come: empty, seen under the lock, the last event was handled and its thread has let
    go of the lock (it notifies under it). Waited for :func:`interruptible`: a Ctrl-C
    meanwhile must not land inside that lock either, and cancels nothing more. A call
    that is not grpc's (a test's recording stand-in) has nothing to wait for."""
    state = getattr(call, "_state", None)
    if state is None:
        return

    def handled() -> None:
        with state.condition:
            state.condition.wait_for(lambda: not state.due, SETTLE_TIMEOUT)

    interruptible(call, handled)


def unary_call(method: Any, request: Any, *,
               timeout: float | None = None) -> tuple[Any, grpc.Call]:
    """``method.with_call(request, timeout=timeout)``: the answer and the call (for its
    trailing metadata), waited for :func:`interruptible`. For the calls that wait for
    long by their nature (on a failpoint, on ftrace_lock held by a thread paused at one)
    and that a user waits on by hand. A failed call raises its ``grpc.RpcError``.

    Made with ``.future()`` only where SIGINT is ours to take over: a future's answer
    goes through the channel's spin thread, which gRPC starts anew for a call on a
    channel with none in flight."""
    if not _sigint_cancels():
        return method.with_call(request, timeout=timeout)
    future = started(lambda: method.future(request, timeout=timeout))
    answer = interruptible(future, future.result)
    settle(future)  # the answer came with the status, last of its events: nothing to wait
    return answer, future
