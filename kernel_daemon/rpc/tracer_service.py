"""``ftrace.v1.Tracer``: tracer clients' own ops, and CPUs executing functions.

An ``Attach`` stream is a kernel module that registered an ``ftrace_ops`` of its
own (``register_ftrace_function`` + ``ftrace_set_filter``); the stream's end, for
whatever reason, unregisters it, as a module's exit would.  ``Invoke`` runs a call
site as a CPU does.
"""

from __future__ import annotations

import contextlib
import errno
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc

from clients.identity import PID_MAX_LIMIT, valid_comm
from ftrace.v1 import tracer_pb2 as pb
from ftrace.v1 import tracer_pb2_grpc
from kernel_daemon.errno import KernelError, quoted
from kernel_daemon.ftrace.dispatch import execute_function, on_cpu, smp_processor_id
from kernel_daemon.ftrace.filter import ftrace_set_filter, ftrace_set_notrace
from kernel_daemon.ftrace.ops import FtraceOps
from kernel_daemon.ftrace.register import register_ftrace_function, unregister_ftrace_function
from kernel_daemon.kernel import Kernel, events_written
from kernel_daemon.module.kallsyms import return_address_in
from kernel_daemon.module.symbols import Symbol
from kernel_daemon.mutex import Acquisitions
from kernel_daemon.rpc.readers import StreamReaders
from kernel_daemon.rpc.state import Boot, DaemonState
from kernel_daemon.rpc.status import errno_detail, translate_kernel_errors
from kernel_daemon.task import BOOT_TASKS, Task, current, running_as
from kernel_daemon.trace.buffers import FTRACE_STACK_MAX_ENTRIES
from kernel_daemon.trace.trace_functions import callers_stack

DEFAULT_MAX_BATCH = 1024
# Hits per batch at most, whatever max_batch asks: a Hit takes at most about 400 bytes
# (two 127-byte symbol names, a 55-byte module name, a comm, six numbers), so a batch
# stays under the 4 MiB a gRPC client accepts by default (a larger one fails its stream
# RESOURCE_EXHAUSTED, the hits in it lost).
MAX_BATCH = 8192
DEFAULT_MAX_DELAY_MS = 50
DEFAULT_QUEUE_LIMIT = 65536
OPS_NAME_MAX = 63
#: What an ops name may hold besides its length: printable ASCII but the space and the
#: comma. The name is one field of line-oriented listings (``ftrace-inspect ops``, its
#: NAME column before OWNER; ``records --expected``, names joined by commas in its OPS
#: column; dmesg and CheckConsistency lines): a space, a tab, a newline or a comma in it
#: would split their fields or forge lines. A kernel interface refuses a name it cannot
#: hold with EINVAL, and so does Tracer.Attach.
OPS_NAME_CHARACTERS = frozenset(chr(c) for c in range(0x21, 0x7F)) - {","}
# Executions of one Invoke at most: the counters it adds to stay far from 2**64.
MAX_REPEAT = 100_000_000


def invoking_task(request: pb.InvokeRequest, caller: Task) -> Task:
    """The task an Invoke runs as: the caller, with the pid and comm the request names
    checked as identity metadata is (pid 0 is allowed here: the idle task).  A pid of a
    task the kernel has from boot, named without a comm, is that task (``init-1``)."""
    pid = request.pid if request.HasField("pid") else caller.pid
    if request.HasField("comm"):
        comm = request.comm
    elif request.HasField("pid") and pid in BOOT_TASKS:
        comm = BOOT_TASKS[pid].comm
    else:
        comm = caller.comm
    if not 0 <= pid <= PID_MAX_LIMIT:
        raise KernelError(errno.EINVAL, f"pid {pid} out of range 0..{PID_MAX_LIMIT}")
    if not valid_comm(comm):
        raise KernelError(errno.EINVAL, "comm is empty or not printable ASCII")
    return Task(pid, comm)


def resolve_function(kernel: Kernel, name: str, module: str = "") -> Symbol:
    """``kallsyms_lookup_name``, optionally within one module (``module`` "" = any)."""
    symbols = [s for s in kernel.kallsyms.lookup_name(name)
               if not module or (s.module or "") == module]
    if not symbols:
        raise KernelError(errno.ENOENT, f"no function {quoted(name)}"
                                        + (f" in module {quoted(module)}" if module else ""))
    return symbols[0]


def invoked_symbol(kernel: Kernel, ip: int) -> Symbol:
    """The function the code at ``ip`` belongs to; EFAULT, as ``execute_function`` says
    for code that is not there, when none does (its module was unloaded)."""
    found = kernel.kallsyms.lookup(ip)
    if found is None:
        raise KernelError(errno.EFAULT, f"no function at {ip:#x}")
    return found[0]


def invoked_parent_ip(kernel: Kernel, request: pb.InvokeRequest, ip: int) -> int:
    """The ``parent_ip`` the tracer sees for an Invoke of the function at ``ip``: an
    address given is the caller's, kept as it is; a caller given by name is the return
    address into it just after its call to that function (what ``ftrace_caller`` reads
    from the traced function's frame, never the caller's first byte); neither, 0."""
    if request.parent_ip or not request.parent:
        return request.parent_ip
    try:
        parent = resolve_function(kernel, request.parent, request.parent_module)
    except KernelError:
        # Code that is not there faults before its caller matters: a function of a
        # module unloaded under the call is EFAULT, though its caller (of the same
        # module, say) went first.
        invoked_symbol(kernel, ip)
        raise
    return return_address_in(parent, invoked_symbol(kernel, ip).name)


def invoked_callers(kernel: Kernel, request: pb.InvokeRequest, parent_ip: int) -> tuple[int, ...]:
    """The return addresses an Invoke's ``callers`` stand for, innermost first: each
    inside its caller just after the call to the one before it (the first's, to the
    parent: the function ``parent_ip`` is in), the names looked up as ``parent`` is
    (ENOENT for none). EINVAL for callers without a parent, or for more than the stack
    holds besides the parent's frame; EFAULT when ``parent_ip`` is in no function."""
    if not request.callers:
        return ()
    if not parent_ip:
        raise KernelError(errno.EINVAL, "callers without a parent")
    if len(request.callers) >= FTRACE_STACK_MAX_ENTRIES:
        raise KernelError(errno.EINVAL, f"more than {FTRACE_STACK_MAX_ENTRIES - 1} callers")
    previous = invoked_symbol(kernel, parent_ip).name
    addresses = []
    for name in request.callers:
        addresses.append(return_address_in(resolve_function(kernel, name), previous))
        previous = name
    return tuple(addresses)


@dataclass(eq=False)
class HitQueue:
    """Hits of one tracer client's ops, taken by its stream in batches."""

    limit: int
    cond: threading.Condition = field(default_factory=threading.Condition)
    hits: list[pb.Hit] = field(default_factory=list)
    # When the oldest hit queued came (time.monotonic()); None: none queued. A partial
    # batch is due max_delay after it, and with none queued nothing is due.
    oldest: float | None = None
    queued_calls: int = 0
    dropped: int = 0
    sent: int = 0
    dropped_total: int = 0

    def push(self, hit: pb.Hit) -> None:
        """Queue the hit's calls that fit under the limit and count the rest dropped: a
        hit of more calls than there is room for (an Invoke's ``repeat`` above the
        limit, even into an empty queue) keeps what fits, not nothing."""
        with self.cond:
            room = self.limit - self.queued_calls
            if hit.count > room:
                self.dropped += hit.count - max(room, 0)
                hit.count = max(room, 0)
            if hit.count:
                if not self.hits:
                    self.oldest = time.monotonic()
                self.hits.append(hit)
                self.queued_calls += hit.count
            self.cond.notify_all()

    def take(self, max_batch: int) -> tuple[list[pb.Hit], int]:
        batch, self.hits = self.hits[:max_batch], self.hits[max_batch:]
        if not self.hits:
            # Those left, past a full batch, keep the time of the oldest taken: due
            # early rather than late.
            self.oldest = None
        calls = sum(h.count for h in batch)
        self.queued_calls -= calls
        self.sent += calls
        dropped, self.dropped = self.dropped, 0
        self.dropped_total += dropped
        return batch, dropped


class TracerService(tracer_pb2_grpc.TracerServicer):
    def __init__(self, state: DaemonState) -> None:
        self.state = state
        # A thread started per stream cost the daemon some 0.7 ms of CPU per stream, a
        # quarter of a whole attach, register and unregister.
        self.readers = StreamReaders("tracer-requests")

    @translate_kernel_errors
    def Invoke(self, request: pb.InvokeRequest, context: grpc.ServicerContext) -> pb.InvokeResponse:
        with self.state.syscall(context) as boot:
            kernel = boot.kernel
            caller = current()
            target = request.WhichOneof("target")
            if target == "function":
                ip = resolve_function(kernel, request.function, request.module).addr
            elif target == "address":
                ip = request.address
            else:
                raise KernelError(errno.EINVAL, "no function or address to invoke")
            task = invoking_task(request, caller)
            if request.HasField("pid"):
                # The model's pid table (kernel_daemon.pid): a task named here exists from
                # now on (the caller itself went in as it entered: DaemonState.caller).
                kernel.pid_hash.attach_pid(task.pid)
            cpu = request.cpu if request.HasField("cpu") else task.pid % kernel.options.cpus
            if cpu >= kernel.options.cpus:
                raise KernelError(errno.EINVAL, f"no cpu {cpu}")
            if request.repeat > MAX_REPEAT:
                raise KernelError(errno.EINVAL, f"repeat above {MAX_REPEAT:,}")
            repeat = request.repeat or 1
            # After the request's own checks: a bad cpu is EINVAL whether a parent is
            # named or not (the parent's lookup can fault on the function's code).
            parent_ip = invoked_parent_ip(kernel, request, ip)
            stack = invoked_callers(kernel, request, parent_ip)
            token = events_written.set(0)
            # Only an Invoke with callers sets them: the common call pays nothing.
            stack_token = callers_stack.set(stack) if stack else None
            try:
                with running_as(task), on_cpu(cpu):
                    patched = execute_function(kernel.ftrace, ip, parent_ip, repeat)
                traced = events_written.get()
            finally:
                events_written.reset(token)
                if stack_token is not None:
                    callers_stack.reset(stack_token)
            self.state.count_invocations(repeat)
            found = kernel.kallsyms.lookup(ip)
            symbol = found[0] if found else None
            return pb.InvokeResponse(ip=ip, function=symbol.name if symbol else "",
                                     module=(symbol.module or "") if symbol else "",
                                     calls=repeat, patched_calls=repeat if patched else 0,
                                     traced=traced)

    @translate_kernel_errors
    def Attach(self, request_iterator: Iterator[pb.TracerRequest],
               context: grpc.ServicerContext) -> Iterator[pb.TracerEvent]:
        with self.state.syscall(context) as boot:
            owner = current()
        session = TracerSession(boot, owner, request_iterator, context, self.readers)
        yield from session.run()


class TracerSession:
    """One Attach stream: reads requests on a thread of ``readers``, emits events here.

    The stream is bound to the boot it attached to: when that boot ends, :meth:`run`
    raises KernelError(ENODEV).
    """

    def __init__(self, boot: Boot, owner: Task, requests: Iterator[pb.TracerRequest],
                 context: grpc.ServicerContext, readers: StreamReaders) -> None:
        self.boot = boot
        self.kernel = boot.kernel
        self.owner = owner
        self.context = context
        self.requests: queue.Queue[pb.TracerRequest | KernelError | None] = queue.Queue()
        self.ops: FtraceOps | None = None
        self.hits = HitQueue(DEFAULT_QUEUE_LIMIT)
        self.max_batch = DEFAULT_MAX_BATCH
        self.max_delay = DEFAULT_MAX_DELAY_MS / 1000
        self.seq = 0  # the position of the request being answered
        context.add_callback(self._wake_on_end)
        readers.start(lambda: self._read(requests))

    def _read(self, requests: Iterator[pb.TracerRequest]) -> None:
        try:
            for request in requests:
                self._enqueue(request)
        except KernelError as err:  # a request that does not parse: the call ends with it
            self._enqueue(err)
        except Exception:  # the client went away mid-stream
            pass
        self._enqueue(None)

    def _enqueue(self, request: pb.TracerRequest | KernelError | None) -> None:
        self.requests.put(request)
        with self.hits.cond:
            self.hits.cond.notify_all()

    def _wake_on_end(self) -> None:
        self._enqueue(None)

    def _wake(self) -> None:
        """The boot ended: a wait in :meth:`_next_request` looks again."""
        with self.hits.cond:
            self.hits.cond.notify_all()

    def _event(self, **kwargs: object) -> pb.TracerEvent:
        """The answer to the request being answered, numbered by its position."""
        return pb.TracerEvent(seq=self.seq, **kwargs)

    def _hit_func(self, ip: int, parent_ip: int, op: FtraceOps | None, count: int = 1) -> None:
        task = current()
        found = self.kernel.kallsyms.lookup(ip)
        parent = self.kernel.kallsyms.lookup(parent_ip) if parent_ip else None
        self.hits.push(pb.Hit(
            ip=ip, parent_ip=parent_ip, function=found[0].name if found else "",
            module=(found[0].module or "") if found else "", parent=parent[0].name if parent else "",
            cpu=smp_processor_id(), pid=task.pid, comm=task.comm,
            timestamp_ns=self.kernel.local_clock(), count=count))

    def run(self) -> Iterator[pb.TracerEvent]:
        """Answer the requests in order. A failed register or a protocol error raises
        its KernelError, which ends the call with that errno; whatever ends the stream,
        the ops is unregistered, as a module's exit would."""
        self.boot.bind(self._wake)
        try:
            while True:
                request = self._next_request()
                self.boot.refuse_if_ended()
                if request is None:
                    if not self.context.is_active():
                        return
                    yield from self._batches(force=False)
                    continue
                if request is STREAM_END:
                    # A half-close says no more requests, not no more answers: the hits
                    # recorded so far go out, as before an unregister's answer.
                    yield from self._batches(force=True)
                    return
                op = self._checked_op(request)
                self.seq += 1
                with running_as(self.owner):
                    if op in ("flush", "unregister"):
                        yield from self._batches(force=True)
                    yield self._noting_locks(op, request)
                if op == "unregister":
                    return
        finally:
            self.boot.unbind(self._wake)
            # A stream that ended otherwise than by `unregister` has nobody to tell that
            # ftrace is dead (ENODEV).
            with contextlib.suppress(KernelError):
                self._unregister()

    def _noting_locks(self, op: str, request: pb.TracerRequest) -> pb.TracerEvent:
        """:meth:`_answer`, with when it acquired ftrace_lock (TracerEvent.lock_acquired_ns):
        noted as for a unary call that changes ftrace's state (DaemonState.syscall)."""
        with Acquisitions() as acquired:
            event = self._answer(op, request)
        event.lock_acquired_ns.extend(acquired.reported())
        return event

    def _answer(self, op: str, request: pb.TracerRequest) -> pb.TracerEvent:
        """The answer to one request (the hits it must follow already sent)."""
        if op == "register":
            return self._register(request.register)
        if op == "set_filter":
            try:
                return self._set_filter(request.set_filter)
            except KernelError as err:  # in-band: the ops stays as it was
                return self._event(error=errno_detail(err))
        if op == "flush":
            return self._event(flushed=pb.Flushed(hits=self.hits.sent,
                                                  dropped=self.hits.dropped_total))
        self._unregister()
        return self._event(unregistered=pb.Unregistered(hits=self.hits.sent,
                                                        dropped=self.hits.dropped_total))

    def _checked_op(self, request: pb.TracerRequest) -> str:
        """The request's operation, if the protocol allows it here: register first and
        only then, and every request names an operation."""
        op = request.WhichOneof("op")
        if op is None:
            raise KernelError(errno.EINVAL, "a request with no operation")
        if (op == "register") != (self.ops is None):
            raise KernelError(errno.EINVAL, "this stream already registered an ops"
                              if self.ops is not None else "the first request must be register")
        return op

    def _next_request(self) -> pb.TracerRequest | None | object:
        """The next request, or None when hits are due: a full batch, or the oldest
        max_delay old; raises the EINVAL of a request that did not parse.

        With no hit queued the wait has no timeout: a request, a hit, the stream's end
        (:meth:`_enqueue`, the call's callback) or the boot's (:meth:`_wake`) wakes it.
        An idle stream woke every max_delay, and 200 of them with max_delay_ms 1 kept
        the daemon's CPU busy."""
        with self.hits.cond:
            while (self.requests.empty() and len(self.hits.hits) < self.max_batch
                   and not self.boot.ended):
                if self.hits.oldest is None:
                    self.hits.cond.wait()
                    continue
                remaining = self.hits.oldest + self.max_delay - time.monotonic()
                if remaining <= 0:
                    break
                self.hits.cond.wait(remaining)
        try:
            request = self.requests.get_nowait()
        except queue.Empty:
            return None
        if isinstance(request, KernelError):
            raise request
        return STREAM_END if request is None else request

    def _batches(self, force: bool) -> Iterator[pb.TracerEvent]:
        while True:
            with self.hits.cond:
                if not self.hits.hits and not (force and self.hits.dropped):
                    return
                batch, dropped = self.hits.take(self.max_batch)
            yield pb.TracerEvent(hits=pb.HitBatch(hits=batch, dropped=dropped))  # seq 0

    def _register(self, reg: pb.RegisterOps) -> pb.TracerEvent:
        """A module's init: ``ftrace_set_filter`` / ``ftrace_set_notrace`` for each
        pattern on a new ops, then ``register_ftrace_function``; EINTR, with nothing
        registered, once the caller is gone (its answer would reach nobody)."""
        ft = self.kernel.ftrace
        self.max_batch = min(reg.max_batch or DEFAULT_MAX_BATCH, MAX_BATCH)
        self.max_delay = (reg.max_delay_ms or DEFAULT_MAX_DELAY_MS) / 1000
        self.hits.limit = reg.queue_limit or DEFAULT_QUEUE_LIMIT
        name = reg.name or f"tracer-{self.owner.pid}"
        if len(name.encode()) > OPS_NAME_MAX:
            raise KernelError(errno.EINVAL, f"ops name longer than {OPS_NAME_MAX} bytes")
        if not OPS_NAME_CHARACTERS.issuperset(name):
            raise KernelError(errno.EINVAL, f"ops name {quoted(name)}: printable ASCII "
                                            "only, no space or comma")
        ops = FtraceOps(name, func=self._hit_func, owner=self.owner)
        for setter, patterns in ((ftrace_set_filter, reg.filter),
                                 (ftrace_set_notrace, reg.notrace)):
            for i, pattern in enumerate(patterns):
                if not self.context.is_active():
                    # The caller is gone (deadline, cancel, death): the other patterns
                    # would be work for nobody (each a walk of every record), and the
                    # ops, not registered yet, goes with the stream.
                    raise KernelError(errno.EINTR, "the caller is gone")
                setter(ft, ops, pattern, reset=i == 0)
        register_ftrace_function(ft, ops)
        self.ops = ops
        return self._event(registered=pb.OpsRegistered(
            name=ops.name, id=ops.id, filter_count=ops.filter_hash.count,
            notrace_count=ops.notrace_hash.count))

    def _set_filter(self, change: pb.SetOpsFilter) -> pb.TracerEvent:
        """``ftrace_set_filter`` (``ftrace_set_notrace``) on the registered ops."""
        assert self.ops is not None
        setter = ftrace_set_notrace if change.notrace else ftrace_set_filter
        setter(self.kernel.ftrace, self.ops, change.text or None, change.reset)
        return self._event(filter_updated=pb.FilterUpdated(
            filter_count=self.ops.filter_hash.count, notrace_count=self.ops.notrace_hash.count))

    def _unregister(self) -> None:
        """``unregister_ftrace_function()`` of the stream's ops, once. Once ftrace is dead it
        fails with ENODEV and the ops stays listed and ENABLED, as in the kernel."""
        ops, self.ops = self.ops, None
        if ops is None:
            return
        with running_as(self.owner):
            unregister_ftrace_function(self.kernel.ftrace, ops)


STREAM_END = object()
