"""``ftrace.v1.Kernel``: dmesg, the consistency check, records, failpoints, boot config."""

from __future__ import annotations

import errno
import fnmatch
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, MutableSequence
from typing import TypeVar

import grpc
import numpy as np

from ftrace.v1 import kernel_pb2 as pb
from ftrace.v1 import kernel_pb2_grpc
from ftrace.v1 import common_pb2, modules_pb2
from kernel_daemon.errno import KernelError, quoted
from kernel_daemon.failpoints import Failpoints
from kernel_daemon.ftrace.consistency import (Anomaly, AnomalyKind, References,
                                               check_consistency, enabled_ops)
from kernel_daemon.ftrace.core import FAILPOINT_SITES
from kernel_daemon.ftrace.module_records import BEFORE_COUNT, OpsHashes, enabled_ops_hashes
from kernel_daemon.ftrace.ops import FTRACE_OPS_FL_ENABLED
from kernel_daemon.ftrace.records import (ENTRIES_PER_PAGE, FTRACE_FL_ENABLED, FtracePageGroup,
                                          ftrace_rec_count)
from kernel_daemon.kernel import BootOptions
from kernel_daemon.printk import LogRecord
from kernel_daemon.rpc.state import MAX_ANSWER, DaemonState
from kernel_daemon.rpc.status import translate_kernel_errors
from kernel_daemon.signal import current_sigpending, valid_signal
from kernel_daemon.task import Task

T = TypeVar("T")

ANOMALY_KINDS = {
    AnomalyKind.MISSING_REFERENCE: pb.ANOMALY_KIND_MISSING_REFERENCE,
    AnomalyKind.LEAKED_REFERENCE: pb.ANOMALY_KIND_LEAKED_REFERENCE,
    AnomalyKind.PATCH_MISMATCH: pb.ANOMALY_KIND_PATCH_MISMATCH,
    AnomalyKind.FREED_PAGE_ACCESS: pb.ANOMALY_KIND_FREED_PAGE_ACCESS,
}
VARIANTS = {"buggy": pb.VARIANT_BUGGY, "fixed": pb.VARIANT_FIXED}
RACES = {"load-count": pb.RACE_LOAD_COUNT, "publish-early": pb.RACE_PUBLISH_EARLY,
         "unload-unlocked": pb.RACE_UNLOAD_UNLOCKED}
PLACEMENTS = {"first-fit": modules_pb2.MODULE_PLACEMENT_FIRST_FIT,
              "random": modules_pb2.MODULE_PLACEMENT_RANDOM}
FOLLOW_POLL_SECONDS = 0.5  # how often a dmesg follower notices its client left
RECORD_CHUNK = 4096
# DumpRecords' function_glob: a page, what one write to set_ftrace_filter could hold.
# Names are at most KSYM_NAME_LEN - 1 bytes; a longer glob only takes the daemon's time.
MAX_FUNCTION_GLOB = 4096
_FL_ENABLED = np.uint64(FTRACE_FL_ENABLED)


def boot_config(options: BootOptions, boot_id: int) -> pb.BootConfig:
    return pb.BootConfig(
        variant=VARIANTS[options.variant], races=[RACES[r] for r in options.races],
        core_functions=options.core_functions, module_placement=PLACEMENTS[options.module_placement],
        cpus=options.cpus, failpoints=dict(options.failpoints), seed=options.seed,
        switch_interval=options.switch_interval, buffer_size_kb=options.buffer_size_kb,
        boot_id=boot_id, release="3.6.11+")


def boot_options(config: pb.BootConfig) -> BootOptions:
    """A reboot's options: fields left at zero take the built-in defaults, an unset seed
    is a fresh random one. Raises KernelError: ENOENT for an unknown failpoint, EINVAL
    for any other bad option."""
    if config.variant == pb.VARIANT_MODERN:  # in the contract, not in the model (kernel.proto)
        raise KernelError(errno.EINVAL, "VARIANT_MODERN (today's kernel) is not modelled yet")
    by_value = {v: k for k, v in VARIANTS.items()}
    try:
        variant = by_value[config.variant] if config.variant else BootOptions.variant
        races = tuple({v: k for k, v in RACES.items()}[r] for r in config.races)
        placement = ({v: k for k, v in PLACEMENTS.items()}[config.module_placement]
                     if config.module_placement else BootOptions.module_placement)
    except KeyError as exc:
        raise KernelError(errno.EINVAL, f"unknown enum value {exc}") from None
    options = BootOptions(
        variant=variant, races=races, failpoints=tuple(sorted(config.failpoints.items())),
        core_functions=config.core_functions or BootOptions.core_functions,
        module_placement=placement, cpus=config.cpus or BootOptions.cpus,
        seed=config.seed if config.HasField("seed") else secrets.randbits(64),
        switch_interval=config.switch_interval,
        buffer_size_kb=config.buffer_size_kb or BootOptions.buffer_size_kb)
    try:
        options.validate()
    except KeyError as exc:
        raise KernelError(errno.ENOENT, exc.args[0]) from None
    except ValueError as exc:
        raise KernelError(errno.EINVAL, str(exc)) from None
    return options


def line_number(seq: int) -> int:
    """The contract numbers lines from 1; printk's sequence numbers start at 0."""
    return seq + 1


def dmesg_line(record: LogRecord) -> pb.DmesgLine:
    return pb.DmesgLine(seq=line_number(record.seq), timestamp_ns=record.ts_nsec,
                        level=record.level, message=record.text, text=record.format())


def glob_is_malformed(pattern: str) -> bool:
    """A '[' that no ']' closes, which fnmatch would quietly take as a literal '['.

    The bracket is scanned as ``fnmatch.translate`` scans it: a leading '!' and a
    leading ']' belong to the set.
    """
    i = pattern.find("[")
    while i >= 0:
        j = i + 1
        if j < len(pattern) and pattern[j] == "!":
            j += 1
        if j < len(pattern) and pattern[j] == "]":
            j += 1
        j = pattern.find("]", j)
        if j < 0:
            return True
        i = pattern.find("[", j + 1)
    return False


def task_message(task: Task) -> common_pb2.Task:
    return common_pb2.Task(pid=task.pid, comm=task.comm)


def anomaly_message(anomaly: Anomaly) -> pb.Anomaly:
    return pb.Anomaly(kind=ANOMALY_KINDS[anomaly.kind], ip=anomaly.ip, function=anomaly.function,
                      module=anomaly.module, expected_count=anomaly.expected,
                      actual_count=anomaly.actual, enabled=anomaly.enabled,
                      ops=list(anomaly.ops), message=anomaly.describe())


def varint_size(value: int) -> int:
    """The bytes of ``value`` as a protobuf varint: seven bits a byte."""
    return max(1, (value.bit_length() + 6) // 7)


class AnswerRoom:
    """What one answer's long lists may take of MAX_ANSWER: past it a default client
    fails RESOURCE_EXHAUSTED on the whole answer, so a list stops within it instead, and
    the answer says so (its counts stay whole). What the lists are cut to is a prefix:
    once an element did not fit, none after it is taken, however small."""

    #: Kept for the answer's other fields (some hundred bytes for each ListOps' ops).
    OTHER_FIELDS = 64 << 10

    def __init__(self) -> None:
        self.left = MAX_ANSWER - self.OTHER_FIELDS

    def fill(self, field: MutableSequence[T], elements: Iterable[T],
             size: Callable[[T], int]) -> bool:
        """Append ``elements`` to the repeated ``field`` while they fit (``size``: an
        element's encoded bytes); False when one did not, and the rest were not taken
        (``elements`` is not read past it: a generator makes only what is sent)."""
        for element in elements:
            if not self.take(size(element)):
                return False
            field.append(element)
        return True

    def take(self, length: int) -> bool:
        """Room for one more element of ``length`` encoded bytes, taken if there is."""
        # A repeated string's or message's element: a tag, a length and its bytes.
        need = 1 + varint_size(length) + length
        if need > self.left:
            self.left = -1
            return False
        self.left -= need
        return True


def encoded_size(text: str) -> int:
    return len(text.encode())


class KernelService(kernel_pb2_grpc.KernelServicer):
    def __init__(self, state: DaemonState) -> None:
        self.state = state

    @translate_kernel_errors
    def Dmesg(self, request: pb.DmesgRequest, context: grpc.ServicerContext) -> pb.DmesgResponse:
        with self.state.syscall(context) as boot:
            records, next_seq = boot.kernel.printk.read_log(request.clear)
            lines = [dmesg_line(record) for record in records]
            return pb.DmesgResponse(text="".join(line.text + "\n" for line in lines), lines=lines,
                                    next_seq=line_number(next_seq))

    @translate_kernel_errors
    def DmesgFollow(self, request: pb.DmesgFollowRequest,
                    context: grpc.ServicerContext) -> Iterator[pb.DmesgLines]:
        with self.state.syscall(context) as boot:
            printk = boot.kernel.printk
        seq = 0 if request.replay else printk.records_since(1 << 62, 0)[1]
        while context.is_active() and not printk.closed:
            records, seq = printk.records_since(seq, FOLLOW_POLL_SECONDS)
            if records:
                yield pb.DmesgLines(lines=[dmesg_line(record) for record in records])

    @translate_kernel_errors
    def CheckConsistency(self, request: pb.CheckConsistencyRequest,
                         context: grpc.ServicerContext) -> pb.ConsistencyReport:
        with self.state.syscall(context) as boot:
            ft = boot.kernel.ftrace
            found = check_consistency(ft)
            report = pb.ConsistencyReport(
                ok=not found, anomaly_count=len(found),
                records_checked=sum(len(pg.ips) for pg in ft.pages.groups),
                ops_checked=sum(1 for ops in ft.ops_snapshot if ops.enabled),
                ftrace_disabled=ft.ftrace_disabled, boot_id=boot.boot_id)
            report.anomalies_truncated = not AnswerRoom().fill(
                report.anomalies, map(anomaly_message, found), pb.Anomaly.ByteSize)
            return report

    @translate_kernel_errors
    def DumpRecords(self, request: pb.DumpRecordsRequest,
                    context: grpc.ServicerContext) -> Iterator[pb.RecordChunk]:
        with self.state.syscall(context) as boot:
            if request.module and request.core_only:
                raise KernelError(errno.EINVAL, "module and core_only exclude each other")
            if len(request.function_glob) > MAX_FUNCTION_GLOB:
                raise KernelError(errno.EINVAL, f"function_glob longer than "
                                                f"{MAX_FUNCTION_GLOB} characters")
            if glob_is_malformed(request.function_glob):
                raise KernelError(errno.EINVAL,
                                  f"malformed glob {quoted(request.function_glob)}: '[' not closed")
            ft = boot.kernel.ftrace

            def wanted(pg: FtracePageGroup) -> bool:
                return not (request.core_only and pg.mod_name
                            or request.module and pg.mod_name != request.module)

            with ft.ftrace_lock:
                # The counts and the hashes they should follow, read at one instant.
                ops_list = enabled_ops(ft)
                groups = [(pg, pg.ips.copy(), pg.flags.copy(),
                           References.of(ops_list, pg.ips)
                           if request.include_expected and wanted(pg) else None)
                          for pg in ft.pages.groups]
        sent = 0
        first_page = 0  # the group's first ftrace_page, counted along ftrace_pages
        for pg, ips, flags, references in groups:
            if not context.is_active():  # the client left: no more work for it
                return
            group_first_page, first_page = first_page, first_page + pg.nr_pages
            if not wanted(pg):
                continue
            mask = np.ones(len(ips), dtype=bool)
            if request.only_nonzero:
                mask &= (ftrace_rec_count(flags) > 0) | ((flags & _FL_ENABLED) != 0)
            if request.function_glob:
                mask &= np.array([fnmatch.fnmatchcase(n, request.function_glob) for n in pg.names])
            expected = references.expected() if references is not None else None
            chunk: list[pb.Record] = []
            room = AnswerRoom()
            for i in np.flatnonzero(mask).tolist():
                if request.limit and sent >= request.limit:
                    break
                f = int(flags[i])
                record = pb.Record(ip=int(ips[i]), flags=f, count=int(ftrace_rec_count(flags[i])),
                                   enabled=bool(f & FTRACE_FL_ENABLED), function=str(pg.names[i]),
                                   module=pg.mod_name, page=group_first_page + i // ENTRIES_PER_PAGE,
                                   index=i % ENTRIES_PER_PAGE)
                if expected is not None:
                    record.expected_count = int(expected[i])
                    record.ops.extend(references.ops(i))
                # With the ops' names (up to MAX_STREAMS of 63 bytes each) a record can
                # be 14 KiB: RECORD_CHUNK of them would pass what a default client takes.
                if len(chunk) == RECORD_CHUNK or not room.take(record.ByteSize()):
                    yield pb.RecordChunk(records=chunk)
                    chunk, room = [], AnswerRoom()
                    room.take(record.ByteSize())
                chunk.append(record)
                sent += 1
            if chunk:
                yield pb.RecordChunk(records=chunk)

    @translate_kernel_errors
    def ListOps(self, request: pb.ListOpsRequest, context: grpc.ServicerContext) -> pb.ListOpsResponse:
        with self.state.syscall(context) as boot:
            ft = boot.kernel.ftrace
            with ft.ftrace_lock:
                listed = [OpsHashes.of(ops) for ops in ft.ftrace_ops_list + ft.ftrace_global_list]
                # Dropped under the lock once counted (module_records.ftrace_process_locs).
                samples = ft.ops_samples if request.include_load_samples else ()
                enabled = enabled_ops_hashes(ft) if request.include_load_samples else []
                paused = ft.failpoints.state(BEFORE_COUNT).paused if samples else ()
                # The state the ops' records are judged by, of the same critical section.
                start_up, sysctl_on, killed = (ft.ftrace_start_up, bool(ft.ftrace_enabled),
                                               ft.ftrace_disabled)
            room = AnswerRoom()
            name = boot.kernel.kallsyms.sprint_symbol_no_offset

            def info(ops: OpsHashes, hashes: bool) -> pb.OpsInfo:
                described = pb.OpsInfo(
                    name=ops.ops.name, id=ops.ops.id, flags=ops.flags,
                    enabled=bool(ops.flags & FTRACE_OPS_FL_ENABLED),
                    filter_count=ops.filter_hash.count, notrace_count=ops.notrace_hash.count,
                    owner=task_message(ops.ops.owner) if ops.ops.owner else None)
                if hashes:
                    for names, hash in ((described.filter, ops.filter_hash),
                                        (described.notrace, ops.notrace_hash)):
                        if not room.fill(names, map(name, sorted(hash.ips())), encoded_size):
                            described.hashes_truncated = True
                return described

            return pb.ListOpsResponse(
                ops=[info(ops, request.include_hashes) for ops in listed],
                load_samples=[pb.LoadSample(module=sample.module_name,
                                            task=task_message(sample.task),
                                            paused=sample.task in paused,
                                            ops=[info(ops, True) for ops in sample.ops])
                              for sample in samples],
                enabled_ops=[info(ops, True) for ops in enabled],
                ftrace_start_up=start_up, ftrace_enabled=sysctl_on, ftrace_disabled=killed)

    @staticmethod
    def _failpoint(fp: Failpoints, name: str) -> pb.Failpoint:
        state = fp.state(name)
        return pb.Failpoint(name=name, spec=state.spec, description=FAILPOINT_SITES[name],
                            evaluations=state.evaluations, triggers=state.triggers,
                            paused=len(state.paused),
                            paused_tasks=[task_message(task) for task in state.paused],
                            waiters=state.waiters)

    @translate_kernel_errors
    def SetFailpoint(self, request: pb.SetFailpointRequest, context: grpc.ServicerContext) -> pb.Failpoint:
        with self.state.syscall(context) as boot:
            try:
                boot.kernel.failpoints.configure(request.name, request.spec)
            except KeyError:
                raise KernelError(errno.ENOENT, f"no failpoint {quoted(request.name)}") from None
            except ValueError as exc:
                raise KernelError(errno.EINVAL, str(exc)) from None
            return self._failpoint(boot.kernel.failpoints, request.name)

    @translate_kernel_errors
    def ReleaseFailpoint(self, request: pb.ReleaseFailpointRequest,
                         context: grpc.ServicerContext) -> pb.ReleaseFailpointResponse:
        with self.state.syscall(context) as boot:
            try:
                released = boot.kernel.failpoints.release(request.name, request.count)
                return pb.ReleaseFailpointResponse(released=released)
            except KeyError:
                raise KernelError(errno.ENOENT, f"no failpoint {quoted(request.name)}") from None

    @translate_kernel_errors
    def ListFailpoints(self, request: pb.ListFailpointsRequest,
                       context: grpc.ServicerContext) -> pb.ListFailpointsResponse:
        with self.state.syscall(context) as boot:
            fp = boot.kernel.failpoints
            return pb.ListFailpointsResponse(failpoints=[self._failpoint(fp, name)
                                                         for name in fp.list()])

    @translate_kernel_errors
    def WaitFailpoint(self, request: pb.WaitFailpointRequest, context: grpc.ServicerContext) -> pb.Failpoint:
        with self.state.syscall(context) as boot, self.state.stream_slots.held():
            fp = boot.kernel.failpoints
            # Never past the call's deadline (time_remaining() is vast without one).
            timeout = context.time_remaining()
            if request.timeout_ms:
                timeout = min(timeout, request.timeout_ms / 1000)
            interrupted = threading.Event()

            def interrupt() -> None:
                interrupted.set()
                fp.wake_waiters()

            current_sigpending().wake_on_signal(interrupt)  # now, if the call is over
            try:
                reached = fp.wait_paused(request.name, request.count or 1,
                                         timeout if timeout <= threading.TIMEOUT_MAX else None,
                                         interrupted)
            except KeyError:
                raise KernelError(errno.ENOENT, f"no failpoint {quoted(request.name)}") from None
            if reached:
                return self._failpoint(fp, request.name)
            if fp.closed:
                raise boot.gone()
            if interrupted.is_set():
                raise KernelError(errno.EINTR, "interrupted by a signal")
            raise KernelError(errno.ETIMEDOUT, f"{request.name}: not enough threads paused")

    @translate_kernel_errors
    def GetConfig(self, request: pb.GetConfigRequest, context: grpc.ServicerContext) -> pb.BootConfig:
        with self.state.syscall(context) as boot:
            return boot_config(boot.kernel.options, boot.boot_id)

    @translate_kernel_errors
    def Stats(self, request: pb.StatsRequest, context: grpc.ServicerContext) -> pb.KernelStats:
        with self.state.syscall(context) as boot:
            kernel, ft = boot.kernel, boot.kernel.ftrace
            rb = kernel.ring_buffer
            entries = sum(rb.counters(cpu).entries_in_buffer for cpu in range(rb.nr_cpus))
            return pb.KernelStats(
                boot_id=boot.boot_id, uptime_seconds=kernel.local_clock() / 1e9,
                ftrace_disabled=ft.ftrace_disabled, ftrace_enabled=ft.ftrace_enabled,
                ftrace_start_up=ft.ftrace_start_up, global_start_up=ft.global_start_up,
                records=sum(len(pg.ips) for pg in ft.pages.groups),
                pages=sum(pg.nr_pages for pg in ft.pages.groups),
                update_tot_cnt=ft.ftrace_update_tot_cnt, ops=len(ft.ops_snapshot),
                modules=len(kernel.modules.modules()),
                current_tracer=kernel.tracing.current_trace.name,
                tainted=kernel.panic.print_tainted(), taint_mask=kernel.panic.tainted_mask,
                warnings=kernel.panic.warn_count,
                open_files=len(self.state.open_files), rpc_counts=dict(self.state.rpc_counts),
                invocations=self.state.invocations, tracing_on=kernel.ring_buffer.record_is_on(),
                trace_entries=entries, trace_written=entries + rb.overruns(),
                trace_overruns=rb.overruns(),
                shm_namespace=kernel.namespace,
                streams=self.state.stream_slots.open,
                max_streams=self.state.stream_slots.limit,
                unary_calls=self.state.unary_slots.open,
                max_unary_calls=self.state.unary_slots.limit)

    @translate_kernel_errors
    def Reboot(self, request: pb.RebootRequest, context: grpc.ServicerContext) -> pb.BootConfig:
        call = self.state.syscall(context)
        with call as entered:
            options = boot_options(request.config)
            # A fenced caller reboots the boot it was born in, or none (DaemonState.reboot).
            boot = self.state.reboot(options, entered if call.fenced else None)
            return boot_config(boot.kernel.options, boot.boot_id)

    @translate_kernel_errors
    def Kill(self, request: pb.KillRequest, context: grpc.ServicerContext) -> pb.KillResponse:
        """``kill(2)`` (``kill_pid_info()``): the signal made pending for the task's calls
        inside the kernel (kernel_daemon.signal). Not a call inside the kernel itself:
        the caller does not signal this call, nor count it. The task is looked up first
        (``pid_task()``, ESRCH), the signal checked after (``group_send_sig_info()`` ->
        ``check_kill_permission()``'s ``valid_signal()``, EINVAL).

        A task with a call inside the kernel exists whichever boot the call entered: the
        signal table is the daemon's, and a call that entered the boot a Reboot has just
        replaced still runs there and takes the signal on its way out (a Ctrl-C's Kill
        landing just after the swap finds it). A task in user space exists if it has
        called into the boot serving (its pid table)."""
        boot = self.state.boot
        self.state.caller(context, boot)  # the caller's identity is checked all the same
        if request.pid <= 0:
            raise KernelError(errno.EINVAL, f"pid {request.pid}: the model has no process groups")
        if not (self.state.signals.kill(request.pid, 0)
                or boot.kernel.pid_hash.find_get_pid(request.pid)):
            raise KernelError(errno.ESRCH, f"no task with pid {request.pid}")
        if not valid_signal(request.signal):
            raise KernelError(errno.EINVAL, f"no signal {request.signal}")
        return pb.KillResponse(calls=self.state.signals.kill(request.pid, request.signal))
