"""The typed client library: every ftraced RPC as a Python method.

``Client`` wraps a :class:`clients.connection.Connection`. Each method is one RPC (or one
stream), returns the protobuf message (or a list of them, or bytes/str where that is the
whole answer) and raises :class:`clients.errors.FtraceError` carrying the kernel's errno
instead of ``grpc.RpcError``::

    with Client.connect(identity=Identity.current("bash")) as client:
        client.load("uinput", if_loaded_ok=True)
        client.write_file("/sys/kernel/debug/tracing/set_ftrace_filter", "uinput_release\\n")
        with client.open("/sys/kernel/debug/tracing/set_ftrace_filter", os.O_WRONLY) as f:
            f.write(b"uinput_open\\n")          # one write(2)
        print(client.dmesg())

Streams: :meth:`Client.open` (a file session; leaving the ``with`` block releases the file),
:meth:`Client.attach` (an ftrace_ops for the life of a :class:`TracerSession`),
:meth:`Client.trace_pipe` and :meth:`Client.dmesg_follow` (server streams, cancelled when
their ``with`` block ends). Ctrl-C while a file session, a server stream or one of the
inspection calls that wait for long (WaitFailpoint; CheckConsistency, ListOps and
DumpRecords behind ftrace_lock) waits for the daemon, or as such a call starts, cancels the
call, then raises KeyboardInterrupt (:mod:`clients.interrupt`); during a file session's
operation, a trace_pipe stream, :meth:`Client.write_file`, :meth:`Client.load` or
:meth:`Client.unload`, the first Ctrl-C signals the client's task instead (``Kernel.Kill``)
and waits for the answer (a call waiting for ftrace_lock completes first), a second one
cancels.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import signal
import threading
import time
from typing import Any, Callable, Generic, Iterable, Iterator, Mapping, TypeVar

import grpc

from clients.connection import Connection, connect
from clients.errors import FtraceError, translate_rpc_errors
from clients.identity import Identity
from clients.interrupt import (SETTLE_TIMEOUT, Kill, Messages, SignalTaken, blocking_call,
                               interruptible, settle, sigint_noted, started, unary_call)
from ftrace.v1 import kernel_pb2, modules_pb2, tracefs_pb2, tracer_pb2
from kernel_daemon.rpc.readers import StreamReaders
from kernel_daemon.rpc.status import lock_acquisitions_from_trailers

__all__ = [
    "Client",
    "FileSession",
    "TracerSession",
    "ServerStream",
    "RequestQueue",
    "boot_config",
    "READ_CHUNK",
    "ATTACH_READER_THREAD",
]

#: cat's buffer size (coreutils io_blksize: 128 KiB): what one read(2) asks for.
READ_CHUNK = 128 * 1024
#: Hits a TracerSession keeps for take_hits() at most, by default: some 45 MB of them
#: (about 0.7 KB each), as many as the daemon's default queue_limit holds calls.
MAX_KEPT_HITS = 65536

T = TypeVar("T")

#: The name of the threads reading TracerSessions' events (:data:`_ATTACH_READERS`).
ATTACH_READER_THREAD = "ftrace-attach"
#: The threads reading TracerSessions' events, kept for the next session once theirs
#: ended: as many as sessions were ever open at once. A thread started per session was one
#: of the three an attach started (with gRPC's: the one sending its requests, the channel's
#: spin thread), and cost 0.1 to 0.2 ms of CPU (clone3, its stack's mmap and munmap, the
#: start's hand-offs), some 15% of a three-round-trip session (measured under load).
_ATTACH_READERS = StreamReaders(ATTACH_READER_THREAD)


def _stream_ended() -> FtraceError:
    # The server closed a stream without answering a request: not a kernel errno.
    return FtraceError(errno.EIO, "the daemon ended the stream", from_kernel=False)


class RequestQueue:
    """The request side of a bidirectional call: ``put()`` sends, ``end()`` half-closes.

    gRPC pulls from this iterator on a thread of its own (``_channel``'s
    ``_consume_request_iterator``), so requests are queued. That thread waits here for
    the next request until ``end()``: without it, for good, one thread per call.
    ``join()`` waits for it to be gone.
    """

    _END = object()

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # gRPC's consuming thread, known from its first next(), which it makes first.
        self._consumer: threading.Thread | None = None
        self._consuming = threading.Event()

    def put(self, request: Any) -> None:
        self._queue.put(request)

    def end(self) -> None:
        """No more requests: gRPC's consuming thread half-closes the call (if it has not
        ended) and ends."""
        self._queue.put(self._END)

    def join(self) -> None:
        """After :meth:`end`: return when gRPC's consuming thread has ended (or after
        :data:`~clients.interrupt.SETTLE_TIMEOUT` seconds).

        Woken by the end, that thread takes the call's lock once more (to half-close the
        call, or to see it ended) before it ends. Were it still in there as the
        interpreter exits, the exit would hang, as :func:`~clients.interrupt.settle` says
        of the spin thread; after this wait the thread is gone."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        if self._consuming.wait(SETTLE_TIMEOUT) and self._consumer is not None:
            self._consumer.join(max(0.0, deadline - time.monotonic()))

    def __iter__(self) -> "RequestQueue":
        return self

    def __next__(self) -> Any:
        if self._consumer is None:
            self._consumer = threading.current_thread()
            self._consuming.set()
        item = self._queue.get()
        if item is self._END:
            raise StopIteration
        return item


class ServerStream(Generic[T]):
    """A server stream as an iterator of converted items; errors become FtraceError.

    ``cancel()`` (or leaving the ``with`` block) ends the call — for TracePipe that
    releases the file.
    """

    def __init__(self, call: Any, convert: Callable[[Any], Iterable[T]],
                 kill: Kill | None = None) -> None:
        self._call = call
        self._convert = convert
        self._kill = kill  # the call's task to signal on Ctrl-C (clients.interrupt)

    def __iter__(self) -> Iterator[T]:
        with translate_rpc_errors():
            for message in Messages(self._call, self._kill):
                yield from self._convert(message)

    def cancel(self) -> None:
        """End the call, at once (another thread may: a shell's Ctrl-C ending a
        pipeline's stages); leaving the ``with`` block also waits until gRPC is done with
        it (:func:`~clients.interrupt.settle`).

        For TracePipe the cancel is the reader's signal: once the daemon sees it, the
        reader takes no more events (EINTR) and the file is released, within milliseconds,
        but after this returns. The calls this client makes next reach the daemon after
        the cancel (one connection keeps them in order), so the old reader takes none of
        the events they write; a write from another connection can still come first. It
        does not wait for the release, as close(2) would: a cancelled call has no answer
        left to wait for. To have the release done before going on, read trace_pipe in a
        :meth:`Client.open` session (O_NONBLOCK, or once a read has answered) and
        :meth:`FileSession.close` it."""
        self._call.cancel()

    def __enter__(self) -> "ServerStream[T]":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()
        settle(self._call)


class FileSession:
    """An open tracefs file (``Tracefs.Session``): open(2) happened, release has not.

    Each method is one system call; a failed one raises FtraceError and the file stays
    open, as write(2) returning -1 leaves the fd open. ``close()`` releases the file;
    leaving the ``with`` block closes it, or cancels the stream when the block raised
    (an interrupted blocking read cannot be answered first) — either way the daemon
    releases the file.
    """

    def __init__(self, stub: Any, path: str, flags: int, kill: Kill | None = None) -> None:
        self._requests = RequestQueue()
        self._closed = False
        self._call = started(lambda: stub.Session(iter(self._requests)), self._requests)
        try:  # from the call's start: a Ctrl-C anywhere in here still ends it
            # With ``kill``, Ctrl-C during an operation signals the task (clients.interrupt).
            self._responses = Messages(self._call, kill)
            opened: tracefs_pb2.OpenResult = self._do(
                tracefs_pb2.FileRequest(
                    open=tracefs_pb2.OpenRequest(path=_named(path), flags=flags))
            )
        except BaseException:
            self.cancel()  # no file to release (or _do released it already); end the call
            self._ended()
            raise
        #: The canonical path, mode bits and flags the daemon opened.
        self.path: str = opened.path
        self.mode: int = opened.mode
        self.flags: int = opened.flags

    def _do(self, request: tracefs_pb2.FileRequest) -> Any:
        if self._closed:
            raise FtraceError(errno.EBADF, "file session closed", from_kernel=False)
        self._requests.put(request)
        try:
            with translate_rpc_errors():
                response: tracefs_pb2.FileResponse = next(self._responses)
        except StopIteration:
            self._closed = True
            raise _stream_ended() from None
        except SignalTaken as taken:
            # The operation answered after the task took Ctrl-C's signal: the session is
            # in order, and is closed before the interrupt goes on, its release done, as
            # a process killed by the signal has its files closed before its parent
            # sees it exit. The answer goes with the interrupt as this method's result
            # (None for a failed operation: EINTR), as read_file's does.
            if request.WhichOneof("op") != "close":
                with contextlib.suppress(FtraceError):  # ended meanwhile: released too
                    self.close()
            if taken.answer is not None:
                kind = taken.answer.WhichOneof("result")
                taken.answer = None if kind == "error" else getattr(taken.answer, kind)
            raise
        except BaseException:
            # The call failed, or we stopped waiting (Ctrl-C, which cancelled it already):
            # its answer would come out of turn, so the session is over; cancelling makes
            # the daemon release the file.
            self.cancel()
            self._ended()
            raise
        kind = response.WhichOneof("result")
        if kind == "error":
            written = response.bytes_written if request.write.until_done else None
            raise FtraceError.from_detail(response.error, bytes_written=written)
        return getattr(response, kind)

    def read(self, size: int = 4096, offset: int | None = None) -> bytes:
        """read(2) (pread(2) with ``offset``): b"" at end of file."""
        request = tracefs_pb2.ReadRequest(size=size)
        if offset is not None:
            request.offset = offset
        result: tracefs_pb2.ReadResult = self._do(tracefs_pb2.FileRequest(read=request))
        return result.data

    def read_all(self, chunk: int = READ_CHUNK) -> Iterator[bytes]:
        """Read until end of file, yielding each read's data (what cat does)."""
        while data := self.read(chunk):
            yield data

    def write(self, data: bytes | str, offset: int | None = None) -> int:
        """write(2) (pwrite(2) with ``offset``): the bytes consumed, possibly fewer than sent."""
        request = tracefs_pb2.WriteRequest(data=_as_bytes(data))
        if offset is not None:
            request.offset = offset
        result: tracefs_pb2.WriteResult = self._do(tracefs_pb2.FileRequest(write=request))
        return result.bytes_written

    def write_all(self, data: bytes | str) -> int:
        """Write until all of ``data`` is consumed, as stdio's flush loops on short writes.

        ftrace's filter files take one token per write(2), so "a b\\n" takes two; the
        daemon runs the loop (``until_done``), one round trip for all of them. Stops at a
        write returning 0; a failed write raises FtraceError, what the earlier ones
        consumed staying written (its ``bytes_written``). Returns the bytes written.
        """
        request = tracefs_pb2.WriteRequest(data=_as_bytes(data), until_done=True)
        result: tracefs_pb2.WriteResult = self._do(tracefs_pb2.FileRequest(write=request))
        return result.bytes_written

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """lseek(2): the new position."""
        result: tracefs_pb2.SeekResult = self._do(
            tracefs_pb2.FileRequest(seek=tracefs_pb2.SeekRequest(offset=offset, whence=whence))
        )
        return result.offset

    def close(self) -> int:
        """close(2): the file is released now. Returns the release hook's result."""
        if self._closed:
            return 0
        result: tracefs_pb2.CloseResult = self._do(
            tracefs_pb2.FileRequest(close=tracefs_pb2.CloseRequest())
        )
        self._closed = True
        self._requests.end()
        try:
            with translate_rpc_errors():
                # The server ends the call with OK after close: no message comes.
                interruptible(self._call, lambda: list(self._call))
        finally:  # interrupted or failed too: gRPC's threads are done with the call
            self._ended()
        return result.result

    def cancel(self) -> None:
        """End the stream without close: the daemon releases the file as at process exit,
        asynchronously (after this returns, maybe after the next calls ran: a read right
        after may still see what the release would change). :meth:`close` instead, to
        have the release done before going on.

        Returns at once (another thread may cancel: a shell's Ctrl-C ending a pipeline's
        stages); leaving the ``with`` block, or the failed call, also waits until gRPC
        is done with the call (:meth:`_ended`)."""
        self._closed = True
        self._call.cancel()
        self._requests.end()  # after cancel(): gRPC's sending thread ends without a half-close

    def _ended(self) -> None:
        """Wait until gRPC's threads are done with the ended call: the one consuming the
        requests gone (:meth:`RequestQueue.join`), its events handled
        (:func:`~clients.interrupt.settle`); else a program exiting now could hang."""
        self._requests.join()
        settle(self._call)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "FileSession":
        return self

    def __exit__(self, exc_type: type | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.cancel()
            self._ended()


class TracerSession:
    """An ftrace_ops registered for the life of a ``Tracer.Attach`` stream.

    A reader thread (one of :data:`_ATTACH_READERS`, the session's while it is open)
    separates the answers (one per request, in order) from the hit batches that arrive in
    between; :meth:`take_hits` returns the hits received so far, and after
    :meth:`flush` every hit of a callback that ran before it is among them.

    The hits wait for :meth:`take_hits` in a store of ``max_kept`` hits at most, bounded
    as the daemon's queue (``queue_limit``) is: a program that never takes them must not
    grow without limit. When it is full, new hits are dropped and their calls counted
    in :attr:`dropped_here`, as the daemon counts its own in :attr:`dropped`; the hits
    kept are the oldest, and :meth:`flush` and :meth:`unregister` still report the
    daemon's totals, drops here or not.
    """

    def __init__(self, stub: Any, register: tracer_pb2.RegisterOps,
                 on_event: Callable[[], None] | None = None,
                 max_kept: int = MAX_KEPT_HITS) -> None:
        """``on_event`` is called from the reader thread after each event is stored and
        once when the stream ends, so a caller can sleep until there is news.
        ``max_kept``: the hits kept for :meth:`take_hits` at most (at least 1)."""
        if max_kept < 1:
            raise ValueError(f"max_kept must be at least 1, not {max_kept}")
        self._max_kept = max_kept
        self._on_event = on_event or (lambda: None)
        self.ended = False
        # When the last request answered (register first) acquired ftrace_lock
        # (CLOCK_MONOTONIC ns, TracerEvent.lock_acquired_ns; as Client.lock_acquired for
        # the unary calls), failed or not.
        self.lock_acquired: tuple[int, ...] = ()
        self._requests = RequestQueue()
        self._answers: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._hits: list[tracer_pb2.Hit] = []
        self._dropped = 0
        self._dropped_here = 0
        self._done = False
        self._reader: threading.Thread | None = None  # the thread running _read, once it runs
        self._read_done: threading.Event | None = None  # set once _read returned
        self._call = started(lambda: stub.Attach(iter(self._requests)), self._requests)
        try:  # from the call's start: a Ctrl-C anywhere in here still ends it
            with sigint_noted() as noted:  # not cut in two: _ended() waits for the read
                self._read_done = _ATTACH_READERS.start(self._read)
            if noted.interrupted:
                raise KeyboardInterrupt
            self._requests.put(tracer_pb2.TracerRequest(register=register))
            self.registered: tracer_pb2.OpsRegistered = self._answer("registered")
        except BaseException:
            self.cancel()
            self._ended()
            raise

    def _read(self) -> None:
        self._reader = threading.current_thread()
        try:
            for event in self._call:
                if event.WhichOneof("event") == "hits":
                    self._keep(event.hits)
                else:
                    self._answers.put(event)
                self._on_event()
        except grpc.RpcError as error:
            self._answers.put(FtraceError.from_rpc(error))
        finally:
            self._answers.put(None)
            self.ended = True
            self._on_event()

    def _keep(self, batch: tracer_pb2.HitBatch) -> None:
        """Store what fits of a batch; count the calls of the hits that do not."""
        with self._lock:
            room = self._max_kept - len(self._hits)
            self._hits.extend(batch.hits[:room])
            self._dropped_here += sum(hit.count for hit in batch.hits[room:])
            self._dropped += batch.dropped

    def _answer(self, kind: str) -> Any:
        event = self._answers.get()
        if event is None:
            self._answers.put(None)  # keep the end visible to later calls
            raise _stream_ended()
        if isinstance(event, FtraceError):
            self._answers.put(None)
            raise event
        self.lock_acquired = tuple(event.lock_acquired_ns)
        if event.WhichOneof("event") == "error":
            raise FtraceError.from_detail(event.error)
        return getattr(event, kind)

    def _request(self, request: tracer_pb2.TracerRequest, kind: str) -> Any:
        if self._done:
            raise FtraceError(errno.EBADF, "tracer session ended", from_kernel=False)
        self.lock_acquired = ()
        self._requests.put(request)
        return self._answer(kind)

    def set_filter(
        self, text: str, *, reset: bool = False, notrace: bool = False
    ) -> tracer_pb2.FilterUpdated:
        """ftrace_set_filter (ftrace_set_notrace with ``notrace``) on this ops."""
        return self._request(
            tracer_pb2.TracerRequest(
                set_filter=tracer_pb2.SetOpsFilter(text=text, reset=reset, notrace=notrace)
            ),
            "filter_updated",
        )

    def flush(self) -> tracer_pb2.Flushed:
        """Wait until every hit recorded so far has been received."""
        return self._request(tracer_pb2.TracerRequest(flush=tracer_pb2.FlushHits()), "flushed")

    def take_hits(self) -> list[tracer_pb2.Hit]:
        """The hits received since the last call, oldest first."""
        with self._lock:
            hits, self._hits = self._hits, []
        return hits

    @property
    def dropped(self) -> int:
        """Calls whose hits the daemon dropped because this client read too slowly (its
        queue_limit; the ``dropped`` of :meth:`flush` and :meth:`unregister`)."""
        with self._lock:
            return self._dropped

    @property
    def dropped_here(self) -> int:
        """Calls whose hits this session dropped because the caller took them too slowly
        (``max_kept``); the daemon sent them, and counts them as sent."""
        with self._lock:
            return self._dropped_here

    def unregister(self) -> tracer_pb2.Unregistered:
        """unregister_ftrace_function(ops); the stream then ends, also when the daemon
        refuses it (ENODEV once ftrace is dead: the ops stays listed, as in the kernel)."""
        try:
            result = self._request(
                tracer_pb2.TracerRequest(unregister=tracer_pb2.UnregisterOps()), "unregistered"
            )
        except FtraceError:
            self._close()
            raise
        self._close()
        return result

    def _close(self) -> None:
        """After the unregister's answer: no more requests, and the call's end waited for."""
        self._done = True
        self._requests.end()
        self._ended()

    def cancel(self) -> None:
        """End the stream abruptly; the daemon unregisters the ops. Returns at once, as
        FileSession.cancel; leaving the ``with`` block also waits (:meth:`_ended`)."""
        self._done = True
        self._call.cancel()
        self._requests.end()  # as FileSession.cancel

    def _ended(self) -> None:
        """As FileSession._ended, and the read done too: woken by the end, the reader takes
        the call's lock once more."""
        self._requests.join()
        # Not on the reader itself (on_event may end the session), nor for a read never
        # handed over.
        if self._read_done is not None and threading.current_thread() is not self._reader:
            self._read_done.wait(SETTLE_TIMEOUT)
        settle(self._call)

    def __enter__(self) -> "TracerSession":
        return self

    def __exit__(self, exc_type: type | None, *rest: object) -> None:
        if exc_type is None and not self._done:
            self.unregister()
        else:
            self.cancel()
            self._ended()


def _named(name: str) -> str:
    """A path or module name for a request's ``string`` field. A name that is not UTF-8
    (a script's bytes, decoded with surrogateescape) cannot be sent, and names nothing
    the daemon has (its files and modules are all ASCII): ENOENT, what open(2) or
    init_module would say of it."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise FtraceError(errno.ENOENT, f"{name!r}: no such name", path=name) from None
    return name


def _as_bytes(data: bytes | str) -> bytes:
    # surrogateescape: a str decoded that way from a non-UTF-8 script gets its bytes back.
    return data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)


def _enum_value(enum: Any, prefix: str, value: str | int) -> int:
    """"buggy" -> VARIANT_BUGGY, "load-count" -> RACE_LOAD_COUNT; ints pass through."""
    if isinstance(value, int):
        return value
    name = prefix + value.strip().upper().replace("-", "_")
    try:
        return enum.Value(name)
    except ValueError:
        raise ValueError(f"unknown {prefix.rstrip('_').lower()} {value!r}") from None


def boot_config(
    *,
    variant: str | int | None = None,
    races: Iterable[str | int] = (),
    core_functions: int = 0,
    module_placement: str | int | None = None,
    cpus: int = 0,
    failpoints: Mapping[str, str] | None = None,
    seed: int | None = None,
    switch_interval: float = 0.0,
    buffer_size_kb: int = 0,
) -> kernel_pb2.BootConfig:
    """A BootConfig from the daemon's option names and spellings (``variant="buggy"``,
    ``races=["load-count"]``, ``module_placement="first-fit"``); unset fields take the
    daemon's defaults. Unknown names raise ValueError."""
    config = kernel_pb2.BootConfig(
        core_functions=core_functions,
        cpus=cpus,
        switch_interval=switch_interval,
        buffer_size_kb=buffer_size_kb,
        failpoints=dict(failpoints or {}),
    )
    if variant is not None:
        config.variant = _enum_value(kernel_pb2.Variant, "VARIANT_", variant)
    config.races.extend(_enum_value(kernel_pb2.Race, "RACE_", race) for race in races)
    if module_placement is not None:
        config.module_placement = _enum_value(
            modules_pb2.ModulePlacement, "MODULE_PLACEMENT_", module_placement
        )
    if seed is not None:
        config.seed = seed
    return config


class Client:
    """A client of ftraced: typed methods over one :class:`Connection`.

    ``Client(address=None, identity=None)``: address from the argument, else
    ``$FTRACED_ADDRESS``, else the default socket; identity defaults to this process.
    Pass ``connection=`` to wrap an existing connection instead.
    """

    def __init__(
        self,
        address: str | None = None,
        identity: Identity | None = None,
        *,
        wait: float | None = None,
        connection: Connection | None = None,
    ) -> None:
        self.connection = connection or connect(address, identity, wait=wait)
        # When the last write_file/load/unload acquired ftrace_lock (CLOCK_MONOTONIC ns,
        # from its trailing metadata; common.proto "LOCK ORDER"), failed or not.
        self.lock_acquired: tuple[int, ...] = ()

    @classmethod
    def connect(
        cls, address: str | None = None, identity: Identity | None = None, *, wait: float | None = None
    ) -> "Client":
        """Like the constructor; with ``wait`` block until the daemon answers."""
        return cls(address, identity, wait=wait)

    @property
    def address(self) -> str:
        return self.connection.address

    @property
    def identity(self) -> Identity:
        return self.connection.identity

    @identity.setter
    def identity(self, identity: Identity) -> None:
        self.connection.identity = identity

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _kill_sigint(self) -> bool:
        """SIGINT to this client's task (``Kernel.Kill``), what Ctrl-C during one of its
        system calls sends (:class:`~clients.interrupt.Kill`): whether it reached a call
        inside the kernel. False too for a daemon without Kill (UNIMPLEMENTED) or any
        other failure: the call is then cancelled, as before Kill was."""
        try:
            answer = self.connection.kernel.Kill(
                kernel_pb2.KillRequest(pid=self.identity.pid, signal=signal.SIGINT),
                timeout=SETTLE_TIMEOUT)
        except grpc.RpcError:
            return False
        return answer.calls > 0

    # --- Tracefs ------------------------------------------------------------

    def read_file(self, path: str, nonblock: bool = False, max_bytes: int = 0) -> bytes:
        """``cat PATH``: open, read to EOF (or EAGAIN with nonblock, or max_bytes), release.

        One ReadFile call while the file fits one answer (4 MiB less a page: tracefs.proto,
        ANSWER SIZE); a longer one (/proc/kallsyms of a large kernel) is read on in a
        Session from where that answer ended, so all of it comes back. That is a second
        open: a file changing in between reads as one that changed between two of cat's
        read(2)s.

        A plain blocking call, as :meth:`_locking_call`'s, and made as a system call of
        this client's task as they are: the first Ctrl-C signals the task
        (``Kernel.Kill``). A read waiting in the kernel (trace_pipe's, for events) ends
        at once, and :class:`~clients.interrupt.SignalTaken` is raised with the answer,
        whose ``data`` holds what the reads before it returned (3.6's
        tracing_read_pipe() returns -EINTR only when it copied nothing: the lines a
        read takes off the buffer reach the reader), or ``answer`` None when none had
        returned anything; a cancel would lose those lines, which left the buffer with
        the reads. A second Ctrl-C cancels. Every read_file takes that path, not only
        those of trace_pipe: which file blocks, or consumes what it reads (trace_pipe
        with O_NONBLOCK too), the daemon knows, not the path (``per_cpu/cpu0/trace_pipe``,
        ``..``); a signal to a read that does not wait lets it finish, as kill(2) does a
        read(2) of a regular file. What it costs, measured as for
        :meth:`_locking_call`: ReadFiles of tracing_on, 2,000 each way interleaved call
        by call, sixteen runs, both CPUs busy (load 9 to 19): the median call 2 to 4%
        slower than the plain ``ReadFile(request)`` it was (15 to 36 µs of 690 to 910),
        the answer's call object (``with_call``) some 0 to 13 µs of it."""
        with translate_rpc_errors():
            response, _ = blocking_call(
                self.connection.tracefs.ReadFile,
                tracefs_pb2.ReadFileRequest(path=_named(path), nonblock=nonblock,
                                            max_bytes=max_bytes),
                self._kill_sigint)
        if not response.truncated or len(response.data) == max_bytes:
            return response.data
        rest = max_bytes - len(response.data) if max_bytes else 0
        chunks = [response.data]
        try:
            self._read_on(path, nonblock, len(response.data), rest, chunks)
        except SignalTaken as taken:
            # All the reads took goes with the interrupt, the answer's and the
            # Session's, the one the signal ended with them (the Session's open, seek
            # or close the signal met read nothing), as one answer.
            if isinstance(taken.answer, tracefs_pb2.ReadResult):
                chunks.append(taken.answer.data)
            taken.answer = tracefs_pb2.ReadFileResponse(data=b"".join(chunks))
            raise
        return b"".join(chunks)

    def _read_on(self, path: str, nonblock: bool, offset: int, max_bytes: int,
                 chunks: list[bytes]) -> None:
        """The rest of a file ReadFile answered ``offset`` bytes of, into ``chunks``: open
        it again, seek there (ESPIPE: a pipe, whose reads consumed what the answer holds,
        so reading on is reading the rest), read until EOF, EAGAIN with nonblock, or
        ``max_bytes`` (0: no limit). For a pipe, the kernel's end (a reboot, the daemon's
        stop) failing a read ends it too, what was read kept, as ReadFile answers it
        then (tracefs.proto): raising would lose what the reads took off trace_pipe's
        buffer, the first answer's with it. Of another file, the part read would pass
        for the whole: that end raises, as it does before the seek tells which it is."""
        left = max_bytes
        pipe = False
        try:
            with self.open(path, os.O_RDONLY | (os.O_NONBLOCK if nonblock else 0)) as file:
                try:
                    file.seek(offset)
                except FtraceError as error:
                    if error.errno != errno.ESPIPE:
                        raise
                    pipe = True
                while not max_bytes or left:
                    try:
                        data = file.read(min(READ_CHUNK, left) if max_bytes else READ_CHUNK)
                    except FtraceError as error:
                        if nonblock and error.errno == errno.EAGAIN:
                            break
                        raise
                    if not data:
                        break
                    chunks.append(data)
                    left -= len(data)
        except FtraceError as error:
            if not (pipe and error.kernel_gone):
                raise

    def write_file(self, path: str, data: bytes | str, append: bool = False) -> int:
        """``echo DATA > PATH`` (``>>`` with append): open, write all, release.

        Returns the bytes written. A failed write raises its FtraceError (syscall
        "write") after the daemon released the file; a failed open has syscall "open".
        """
        request = tracefs_pb2.WriteFileRequest(path=_named(path), data=_as_bytes(data),
                                               append=append)
        return self._locking_call(self.connection.tracefs.WriteFile, request).bytes_written

    def _locking_call(self, method: Any, request: Any) -> Any:
        """A unary call that changes kernel state; sets :attr:`lock_acquired`.

        A plain blocking call, not :func:`~clients.interrupt.unary_call`, though it can
        wait for long on ftrace_lock (held by a thread paused at a failpoint), as a
        blocking ReadFile can on trace_pipe: these are the calls a workload makes by the
        thousand, and a future's answer goes through the channel's spin thread, started
        anew per call on an idle channel (measured here: some 10 to 30% more per call,
        two to four times as much with both CPUs busy). Made as a system call of this
        client's task (:func:`~clients.interrupt.blocking_call`): the first Ctrl-C
        signals the task (``Kernel.Kill``) and the call goes on, so a load or a write
        waiting for ftrace_lock (mutex_lock(): uninterruptible) completes, then
        :class:`~clients.interrupt.SignalTaken` is raised; a second Ctrl-C cancels it
        where cygrpc's ``_latent_event`` polls for signals, with no lock of grpc's held,
        cleaned up by its ``on_failure`` (grpc/grpc#19973, fixed by #19988); only the
        few bytecodes after the answer came are exposed, as on every call. What that
        costs, measured here with both CPUs busy: WriteFiles of tracing_on, 2,000 each
        way interleaved call by call, eight runs: the median call 1 to 2% slower (10 to
        20 µs of 700 to 1,000)."""
        self.lock_acquired = ()
        try:
            with translate_rpc_errors():
                response, call = blocking_call(method, request, self._kill_sigint)
        except FtraceError as error:
            self.lock_acquired = lock_acquisitions_from_trailers(error.trailing_metadata)
            raise
        self.lock_acquired = lock_acquisitions_from_trailers(call.trailing_metadata())
        return response

    def list_dir(self, path: str) -> list[tracefs_pb2.DirEntry]:
        """The entries of a directory, sorted by name."""
        with translate_rpc_errors():
            response = self.connection.tracefs.ListDir(
                tracefs_pb2.ListDirRequest(path=_named(path)))
        return list(response.entries)

    def stat(self, path: str) -> tracefs_pb2.StatResponse:
        """stat(2): the canonical path and its DirEntry."""
        with translate_rpc_errors():
            return self.connection.tracefs.Stat(tracefs_pb2.StatRequest(path=_named(path)))

    def open(self, path: str, flags: int = os.O_RDONLY) -> FileSession:
        """open(2) with ``os.O_*`` flags (Linux values, as the daemon takes them)."""
        return FileSession(self.connection.tracefs, path, flags, self._kill_sigint)

    def trace_pipe(self, cpu: int | None = None, nonblock: bool = False) -> ServerStream[bytes]:
        """``cat trace_pipe`` (per_cpu/cpuN/trace_pipe with ``cpu``): each read's data."""
        request = tracefs_pb2.TracePipeRequest(nonblock=nonblock)
        if cpu is not None:
            request.cpu = cpu
        call = started(lambda: self.connection.tracefs.TracePipe(request))
        return ServerStream(call, lambda chunk: (chunk.data,), self._kill_sigint)

    # --- Modules ------------------------------------------------------------

    def load(
        self,
        name: str | None = None,
        functions: Iterable[str] | None = None,
        if_loaded_ok: bool = False,
        placement: str | int | None = None,
        args: bytes | str = b"",
    ) -> modules_pb2.ModuleInfo:
        """Load a module: the catalog's ``name``, or with ``functions`` an explicit one.

        ``if_loaded_ok``: modprobe (an already present module is returned, already_loaded
        set); otherwise insmod (EEXIST).  ``args``: the module's parameters, as
        ``init_module(2)`` takes them (``"max_loop=8 max_part=15"``).
        """
        request = modules_pb2.LoadModuleRequest(if_loaded_ok=if_loaded_ok,
                                                args=_as_bytes(args))
        if functions is not None:
            request.explicit.name = _named(name or "")
            request.explicit.functions.extend(functions)
        else:
            request.catalog_name = _named(name or "")
        if placement is not None:
            request.placement = _enum_value(
                modules_pb2.ModulePlacement, "MODULE_PLACEMENT_", placement
            )
        return self._locking_call(self.connection.modules.Load, request)

    def unload(self, name: str, if_absent_ok: bool = False) -> modules_pb2.ModuleInfo:
        """rmmod: the module as it was; with ``if_absent_ok`` an absent one gives name ""."""
        return self._locking_call(
            self.connection.modules.Unload,
            modules_pb2.UnloadModuleRequest(name=_named(name), if_absent_ok=if_absent_ok))

    def list_modules(self) -> list[modules_pb2.ModuleInfo]:
        """The loaded modules, most recently loaded first."""
        with translate_rpc_errors():
            return list(self.connection.modules.List(modules_pb2.ListModulesRequest()).modules)

    def catalog(self) -> list[modules_pb2.CatalogModule]:
        """The modules loadable by name."""
        with translate_rpc_errors():
            return list(self.connection.modules.Catalog(modules_pb2.CatalogRequest()).modules)

    # --- Kernel -------------------------------------------------------------

    def dmesg(self, clear: bool = False) -> str:
        """The kernel log as ``dmesg`` prints it (``dmesg -c`` with clear)."""
        return self.dmesg_lines(clear).text

    def dmesg_lines(self, clear: bool = False) -> kernel_pb2.DmesgResponse:
        """The kernel log, as text and as structured lines."""
        with translate_rpc_errors():
            return self.connection.kernel.Dmesg(kernel_pb2.DmesgRequest(clear=clear))

    def dmesg_follow(self, replay: bool = False) -> ServerStream[kernel_pb2.DmesgLine]:
        """``dmesg -w``: lines as they are printed (those already there first with replay)."""
        request = kernel_pb2.DmesgFollowRequest(replay=replay)
        call = started(lambda: self.connection.kernel.DmesgFollow(request))
        return ServerStream(call, lambda batch: batch.lines)

    def check_consistency(self) -> kernel_pb2.ConsistencyReport:
        """The consistency check, under ftrace_lock (waited for as :meth:`_locking_call`
        waits; ftrace-inspect says after a while what holds it)."""
        with translate_rpc_errors():
            report, _ = unary_call(self.connection.kernel.CheckConsistency,
                                   kernel_pb2.CheckConsistencyRequest())
        return report

    def dump_records(
        self,
        module: str = "",
        core_only: bool = False,
        function_glob: str = "",
        only_nonzero: bool = False,
        limit: int = 0,
        include_expected: bool = False,
    ) -> list[kernel_pb2.Record]:
        """The dyn_ftrace records (one consistent snapshot), filtered; with
        ``include_expected`` each with the count the enabled ops imply and their names."""
        request = kernel_pb2.DumpRecordsRequest(
            module=module,
            core_only=core_only,
            function_glob=function_glob,
            only_nonzero=only_nonzero,
            limit=limit,
            include_expected=include_expected,
        )
        call = started(lambda: self.connection.kernel.DumpRecords(request))
        with translate_rpc_errors():
            # No caller code runs between the messages: one interruptible wait for all.
            return interruptible(call, lambda: [record for chunk in call
                                                for record in chunk.records])

    def list_ops(self, include_hashes: bool = False) -> list[kernel_pb2.OpsInfo]:
        """The registered ops, read under ftrace_lock (waited for as
        :meth:`_locking_call` waits)."""
        with translate_rpc_errors():
            listed, _ = unary_call(self.connection.kernel.ListOps,
                                   kernel_pb2.ListOpsRequest(include_hashes=include_hashes))
        return list(listed.ops)

    def list_load_samples(self) -> kernel_pb2.ListOpsResponse:
        """ListOps with the module loads holding an ops sample (race load-count) and the
        enabled ops now, every hash listed: read under ftrace_lock, as :meth:`list_ops`."""
        with translate_rpc_errors():
            listed, _ = unary_call(self.connection.kernel.ListOps,
                                   kernel_pb2.ListOpsRequest(include_load_samples=True))
        return listed

    def set_failpoint(self, name: str, spec: str) -> kernel_pb2.Failpoint:
        """Arm a failpoint (``"1*pause"``, ``"20%sleep(3)"``); "" or "off" disarms."""
        with translate_rpc_errors():
            return self.connection.kernel.SetFailpoint(
                kernel_pb2.SetFailpointRequest(name=name, spec=spec)
            )

    def release_failpoint(self, name: str, count: int = 0) -> int:
        """Let ``count`` paused threads go (0: all). Returns how many went."""
        with translate_rpc_errors():
            return self.connection.kernel.ReleaseFailpoint(
                kernel_pb2.ReleaseFailpointRequest(name=name, count=count)
            ).released

    def wait_failpoint(
        self, name: str, count: int = 1, timeout: float | None = 10.0
    ) -> kernel_pb2.Failpoint:
        """Block until ``count`` threads are paused at the failpoint; ETIMEDOUT after
        ``timeout`` seconds (None: no limit), ENODEV if the kernel reboots meanwhile."""
        # timeout_ms 0 waits until the call's deadline, and with no timeout it has none;
        # else the call's deadline is a safety net behind the daemon's own timeout.
        request = kernel_pb2.WaitFailpointRequest(
            name=name, count=count,
            timeout_ms=0 if timeout is None else max(1, round(timeout * 1000)))
        with translate_rpc_errors():
            site, _ = unary_call(self.connection.kernel.WaitFailpoint, request,
                                 timeout=None if timeout is None else timeout + 5.0)
        return site

    def list_failpoints(self) -> list[kernel_pb2.Failpoint]:
        with translate_rpc_errors():
            return list(
                self.connection.kernel.ListFailpoints(kernel_pb2.ListFailpointsRequest()).failpoints
            )

    def config(self) -> kernel_pb2.BootConfig:
        """The options this kernel booted with, defaults resolved."""
        with translate_rpc_errors():
            return self.connection.kernel.GetConfig(kernel_pb2.GetConfigRequest())

    def stats(self) -> kernel_pb2.KernelStats:
        with translate_rpc_errors():
            return self.connection.kernel.Stats(kernel_pb2.StatsRequest())

    def reboot(self, config: kernel_pb2.BootConfig | None = None, **options: Any) -> kernel_pb2.BootConfig:
        """Boot a fresh kernel with ``config``, or with :func:`boot_config` ``options``."""
        if config is None:
            config = boot_config(**options)
        elif options:
            raise TypeError("pass either a BootConfig or options, not both")
        with translate_rpc_errors():
            return self.connection.kernel.Reboot(kernel_pb2.RebootRequest(config=config))

    # --- Tracer -------------------------------------------------------------

    def invoke(
        self,
        function: str | None = None,
        parent: str | None = None,
        cpu: int | None = None,
        repeat: int = 1,
        *,
        address: int | None = None,
        module: str = "",
        parent_ip: int = 0,
        parent_module: str = "",
        pid: int | None = None,
        comm: str | None = None,
        callers: Iterable[str] = (),
    ) -> tracer_pb2.InvokeResponse:
        """Execute ``function`` (or the function at ``address``) ``repeat`` times on a CPU,
        as the caller's task unless pid/comm are given, called from ``parent`` (looked up
        in ``parent_module`` when given; the trace shows the return address into it) or
        from the address ``parent_ip``, which ``callers`` (innermost first) called: the
        stack ``func_stack_trace`` records."""
        request = tracer_pb2.InvokeRequest(
            module=module, parent=parent or "", parent_ip=parent_ip, repeat=repeat,
            parent_module=parent_module, callers=callers,
        )
        if address is not None:
            request.address = address
        else:
            request.function = function or ""
        if cpu is not None:
            request.cpu = cpu
        if pid is not None:
            request.pid = pid
        if comm is not None:
            request.comm = comm
        with translate_rpc_errors():
            return self.connection.tracer.Invoke(request)

    def attach(
        self,
        name: str = "",
        filter: Iterable[str] = (),
        notrace: Iterable[str] = (),
        *,
        max_batch: int = 0,
        max_delay_ms: int = 0,
        queue_limit: int = 0,
        on_event: Callable[[], None] | None = None,
        max_kept: int = MAX_KEPT_HITS,
    ) -> TracerSession:
        """Register an ftrace_ops with these filter/notrace patterns, for the session's life.

        ``max_batch``, ``max_delay_ms``, ``queue_limit``: the daemon's batching and queue
        (tracer.proto RegisterOps); ``max_kept``: the hits the session keeps for
        :meth:`TracerSession.take_hits` at most (:class:`TracerSession`)."""
        register = tracer_pb2.RegisterOps(
            name=name,
            filter=list(filter),
            notrace=list(notrace),
            max_batch=max_batch,
            max_delay_ms=max_delay_ms,
            queue_limit=queue_limit,
        )
        return TracerSession(self.connection.tracer, register, on_event, max_kept)
