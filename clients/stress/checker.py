"""Watching the kernel while the clients run: three independent observers.

- ``consistency``: ``Kernel.CheckConsistency`` over RPC, the model's own check under
  ftrace_lock (DESIGN "Checking"), begun every ``interval`` seconds (start to start: a
  check that takes longer, waiting for ftrace_lock behind the clients, delays the next;
  the report says the rate achieved);
- ``shm``: the record pages read straight from shared memory, as ``crash`` reads a live
  kernel, checked against bounds every state between two critical sections obeys:
  each record's count lies between the number of enabled ops that trace every function
  and the number of enabled ops, and a record is patched as 3.6 leaves it (the model's
  check's rule, ``records.patch_mismatches``: exactly when its count is non-zero while
  ftrace_enabled is set and tracing is started; else a core record is not, a module's
  may be, its load having patched it by count with the sysctl 0). A snapshot only counts when it is one such state:
  the page directory's generation and group list are read before ``ListOps`` (which
  takes ftrace_lock, so every critical section begun before it has ended), the records
  are copied after, and nothing was written or linked in between (the copy has that
  generation and those groups). The state the records are judged by (ftrace_start_up,
  ftrace_enabled, ftrace_disabled) is ListOps' too, read with the ops under the lock:
  ``Stats`` reads it without the lock, and asked beside ListOps it may answer from
  inside an update the ListOps preceded (ftrace_shutdown() lowers ftrace_start_up
  before it rewrites the records), a state the records were never in. ``Stats`` says
  only which boot answered.
  A race window that drops the lock mid-operation exposes a state outside the bounds;
  the kernel's locking never does. Under load the two calls take tens of milliseconds
  (ListOps waits for ftrace_lock) while the clients write records every few: a bracket
  is then rarely quiet, and is quiet mostly when tracing is off and the writes leave
  the records alone; a kernel with no counts shows next to nothing, a busy one is where
  a fault shows. So this observer has a thread of its own; while tracing is started it
  tries again at once, and twice a second it holds the clients that write records
  after their operation in progress (the runner's ``hold_writers``; the invokers go on)
  until a bracket holds: the kernel is then quiet in the state they made. They go a
  second after they were held, the kernel's answer in or not: with ftrace_lock held for
  good, the writers would otherwise wait on the checker as long as the checker waits on
  the lock.
  Stats and ListOps are asked together. The run counts the snapshots checked; of those
  taken while the clients ran, the ones with tracing started, of these the ones taken
  with the writers held and the ones with a non-zero count; those taken once the
  clients were being stopped (the kernel quiet, tracing still on); and the held
  snapshots not answered a second after the writers were held (a ListOps waiting on
  ftrace_lock, or a daemon that slow).
- ``dmesg``: ``Kernel.DmesgFollow``; a ``WARNING:`` or ``BUG:`` (KASAN) line is an
  anomaly, with its whole report attached as it arrives.

Before the run (:meth:`Checker.baseline`) the kernel is looked at once, as it was handed
over: ftrace already killed (``ftrace_disabled``), the reports already in the log, the
count errors already there. Those are the kernel's past, not the run's: they go to
``before``, the log is followed from the line after them, and a count error already
there is not reported again by the run. The log is the ring, as ``dmesg -w`` reads it: a
report ``dmesg -c`` cleared from syslog's view is still in it, and still the kernel's
past (the kernel stays tainted by it, and a WARN_ON_ONCE that printed it cannot print it
for the run). Each line of the log is read once; only the run's lines and checks are
counted.

Each anomaly is reported once (per source, kind and module, and the check's first record
or the log's message) through the ``on_anomaly`` callback; ``on_lost`` is called when
the daemon stops answering.

All of it is one boot's: the baseline's (``boot_id``). A ``Kernel.Reboot`` of someone
else's (ftrace-stress reboots no daemon) replaces the kernel the run judges, its counts,
its shared memory (unlinked: a reader attached to it goes on reading the dead boot's
pages) and its log (the follower's stream ends). So every answer that says its boot is
looked at: each snapshot's ``Stats``, each check's report; the follower's stream ending
and a call failing are followed by a ``Stats``; and an anomaly a snapshot shows is
reported only once a ``Stats`` after it shows the same boot (boot ids only grow, so the
ListOps and the copy before it were of that boot too). A new boot seen stops every
observer and is said once through ``on_reboot``, as a :class:`Reboot`; what was found
before it stays found.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Iterable

import grpc
import numpy as np

from clients.api import Client, ServerStream
from clients.cli import error_text
from clients.errors import FtraceError, translate_rpc_errors
from clients.interrupt import interruptible, settle, started
from ftrace.v1 import kernel_pb2
from kernel_daemon.ftrace.ops import FTRACE_OPS_FL_GLOBAL
from kernel_daemon.ftrace.records import patch_mismatches
from kernel_daemon.ftrace.snapshot import RecordsReader, RecordsSnapshot

ANOMALY_KINDS = {
    kernel_pb2.ANOMALY_KIND_MISSING_REFERENCE: "missing reference",
    kernel_pb2.ANOMALY_KIND_LEAKED_REFERENCE: "leaked reference",
    kernel_pb2.ANOMALY_KIND_PATCH_MISMATCH: "patch mismatch",
    kernel_pb2.ANOMALY_KIND_FREED_PAGE_ACCESS: "freed-page access",
}
_REPORT_START = re.compile(r"\] (WARNING: .*|BUG: .*)$")
_REPORT_END = re.compile(r"---\[ end trace [0-9a-f]+ \]---|\] =+$")
_KASAN_MODULE = re.compile(r"record page of module (\S+)")
#: The anomaly (Anomaly.kind) of a kernel whose ftrace was killed before the run.
FTRACE_DISABLED = "ftrace disabled"
#: Snapshot attempts of the final check before it gives up (a write stuck mid-way).
_FINAL_SNAPSHOT_TRIES = 50
#: How long the shared-memory observer waits for a writer to leave before it looks
#: again (the reader's ``cpu_relax()``, long enough not to take a CPU from the clients).
_WRITER_BACKOFF = 0.001
#: While tracing is started, the record writers are held for a snapshot this often...
_HOLD_EVERY = 0.5
#: ...snapshots are begun for at most this long after they were held (their operations
#: in flight completing meanwhile)...
_HOLD_FOR = 0.5
#: ...and the writers go at most this long after they were held, the snapshot's Stats
#: and ListOps answered or not: ftrace_lock held for good (a thread paused at a
#: failpoint, a deadlock) would hold them with it, and they would look stuck in the
#: kernel while they wait on the checker.
HOLD_MAX = 1.0


@dataclass(frozen=True)
class Reboot:
    """The daemon's kernel replaced under the run (``Kernel.Reboot``): the kernel the
    verdict was about is gone."""

    boot_id: int  # the run's boot, as the baseline found it
    new_boot_id: int  # the boot seen instead
    # CLOCK_MONOTONIC ns: when the new boot was first seen, and when it began (a Stats
    # answer's time less its uptime: the old kernel served until it was up; None when
    # no Stats of that boot said it).
    seen_ns: int
    booted_ns: int | None


@dataclass
class Anomaly:
    """Something the kernel must never show, and when it was seen."""

    source: str  # "consistency", "shm", "dmesg"
    kind: str  # "missing reference", ..., "WARNING", "KASAN"
    message: str  # one line
    # The state was observed between these two times (CLOCK_MONOTONIC ns).
    seen_from_ns: int
    seen_to_ns: int
    module: str = ""
    function: str = ""
    ops: list[str] = field(default_factory=list)
    records: int = 1  # records affected
    detail: list[str] = field(default_factory=list)
    # "run"; "teardown": seen after the clients had stopped; "before": there already
    # when the run started (Checker.baseline).
    phase: str = "run"
    # Seen by a check of a kernel whose ftrace_kill() had run (ftrace_disabled): nothing
    # updates a record any more, and the counts are what the update the WARN aborted
    # left, often the WARN's fallout rather than a fault of their own.
    after_ftrace_kill: bool = False

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What makes it new: a log report by its message (the same WARN twice is one)."""
        what = self.message if self.source == "dmesg" else self.function
        return self.source, self.kind, self.module, what


def dmesg_kind(message: str) -> str:
    if message.startswith("WARNING:"):
        return "WARNING"
    return "KASAN" if message.startswith("BUG: KASAN") else "BUG"


def consistency_anomalies(report: kernel_pb2.ConsistencyReport, start: int,
                          end: int) -> list[Anomaly]:
    """One anomaly per kind and module of a failed check, naming its first record; after
    ftrace_kill() when the check says ftrace was dead then. The answer lists the first
    anomalies only when they would not fit a default client (``anomalies_truncated``):
    the ones left out, of kinds and modules unknown, are counted by ``anomaly_count``
    and said in the last group's detail."""
    groups: dict[tuple[str, str], list[kernel_pb2.Anomaly]] = {}
    for found in report.anomalies:
        groups.setdefault((ANOMALY_KINDS.get(found.kind, "anomaly"), found.module), []).append(found)
    unlisted = report.anomaly_count - len(report.anomalies)
    out = []
    for (kind, module), found in groups.items():
        ops = sorted({name for a in found for name in a.ops})
        out.append(Anomaly("consistency", kind, found[0].message, start, end, module,
                           found[0].function, ops, len(found),
                           [a.message for a in found[:8]] +
                           ([f"... and {len(found) - 8} more"] if len(found) > 8 else []),
                           after_ftrace_kill=report.ftrace_disabled))
    if unlisted > 0 and out:
        out[-1].detail.append(f"... and {unlisted} more anomalies the check found but did "
                              f"not list ({report.anomaly_count} in all; the answer stops "
                              "short of 4 MiB)")
    elif unlisted > 0:
        out.append(Anomaly("consistency", "anomaly", f"{unlisted} anomalies the check found "
                           "but did not list (the answer stops short of 4 MiB)", start, end,
                           records=unlisted, after_ftrace_kill=report.ftrace_disabled))
    return out


def counted_ops(ops: list[kernel_pb2.OpsInfo]) -> list[kernel_pb2.OpsInfo]:
    """The enabled ops that hold references: every ops on ftrace_ops_list, global_ops
    among them, but not the GLOBAL ones it stands for (the function tracer's ops uses
    its hashes)."""
    return [o for o in ops if o.enabled and not o.flags & FTRACE_OPS_FL_GLOBAL]


def snapshot_anomalies(snap: RecordsSnapshot, listed: kernel_pb2.ListOpsResponse,
                       start: int, end: int) -> list[Anomaly]:
    """The bounds of the module docstring, over one quiescent snapshot and the ops
    and global state ``ListOps`` read together under ftrace_lock."""
    if listed.ftrace_disabled:
        return []  # after ftrace_kill() the counts are whatever the WARN left
    counted = counted_ops(list(listed.ops))
    lower = sum(1 for o in counted if not o.filter_count and not o.notrace_count)
    upper = len(counted)
    names = ", ".join(o.name for o in counted) or "none"
    # The patches follow the counts (records.patch_mismatches); else a core record is
    # not patched, and a module's may be whatever its count.
    following = listed.ftrace_enabled and listed.ftrace_start_up > 0
    out = []
    for group in snap.groups:
        counts = group.counts.astype(np.int64)
        checks = [("missing reference", counts < lower, f"at least {lower}"),
                  ("leaked reference", counts > upper, f"at most {upper}")]
        mismatched = patch_mismatches(counts, group.enabled, bool(group.module),
                                      listed.ftrace_start_up, listed.ftrace_enabled)
        checks.append(("patch mismatch", mismatched & (counts >= lower) & (counts <= upper),
                       "patched iff count > 0" if following else "not patched"))
        for kind, bad, bound in checks:
            where = np.flatnonzero(bad)
            if not len(where):
                continue
            first = int(where[0])
            module = group.module or "the core kernel"
            message = (f"{kind}: record {int(group.ips[first]):#x} of {module} has count "
                       f"{int(counts[first])}, patched {bool(group.enabled[first])}; "
                       f"expected {bound} (enabled ops: {names})")
            out.append(Anomaly("shm", kind, message, start, end, group.module, "",
                               [o.name for o in counted], len(where),
                               [f"{len(where)} records of {module}"]))
    return out


@dataclass
class _Bracket:
    """A snapshot begun (:meth:`Checker._begin_snapshot`): the records' state and the
    time before it, and the Stats (which boot answers) and ListOps (the ops, and the
    state their records are judged by) asked."""

    state: tuple[int, tuple[int, ...]]  # RecordsReader.quiet_state()'s
    start: int  # CLOCK_MONOTONIC ns
    stats: grpc.Future
    ops: grpc.Future

    def answered_by(self, deadline: float) -> bool:
        """Whether both answers are in by ``deadline`` (``time.monotonic()``), waited
        for until then."""
        for call in (self.stats, self.ops):
            try:
                call.exception(timeout=max(0.0, deadline - time.monotonic()))
            except grpc.FutureTimeoutError:
                return False
        return True


class Checker:
    """The three observers of the module docstring, on threads of their own."""

    def __init__(self, address: str, interval: float, on_anomaly: Callable[[Anomaly], None],
                 on_lost: Callable[[str], None],
                 hold_writers: Callable[[], ContextManager[bool]] | None = None,
                 on_reboot: Callable[[Reboot], None] | None = None,
                 on_ftrace_killed: Callable[[int], None] | None = None) -> None:
        self.client = Client(address)
        self.interval = interval
        self._hold_writers = hold_writers
        self._on_anomaly = on_anomaly
        self._on_lost = on_lost
        self._on_reboot = on_reboot
        self._on_ftrace_killed = on_ftrace_killed
        # When a check of the run first found ftrace killed (CLOCK_MONOTONIC ns).
        self.ftrace_killed_ns: int | None = None
        self._stop = threading.Event()
        # Set by the runner when it begins to stop the clients: the kernel then goes
        # quiet with tracing still on, the moment a bracket holds most easily, so the
        # snapshots after it are counted apart from those of the kernel at work.
        self.clients_stopping = threading.Event()
        self._seen: dict[tuple[str, str, str, str], Anomaly] = {}
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.shm_error = ""
        # CheckConsistency calls per second while its thread ran (set at its end).
        self.consistency_rate: float | None = None
        self.reader: RecordsReader | None = None
        # The boot the run judges and its shared memory (the baseline's; a checker used
        # without one judges the boot of the first answer it looks at); the reboot, once
        # seen.
        self.boot_id = 0
        self.shm_namespace = ""
        self.reboot: Reboot | None = None
        # What the last snapshot attempt saw: tracing started, a writer mid-update.
        self._busy = False
        self._writer_seen = False
        self.phase = "run"
        # What the kernel showed before the run (baseline), and the last log line read.
        self.before: list[Anomaly] = []
        self._log_seq = 0
        self._report: Anomaly | None = None  # the dmesg report being received
        self._follow_stream: ServerStream[kernel_pb2.DmesgLine] | None = None
        self._threads: list[threading.Thread] = []

    def baseline(self) -> None:
        """The kernel as the run finds it (the module docstring), before :meth:`start`.
        Raises FtraceError when the daemon does not answer."""
        stats = self.client.stats()
        self.boot_id, self.shm_namespace = stats.boot_id, stats.shm_namespace
        try:
            self.reader = RecordsReader(stats.shm_namespace)
        except (OSError, ValueError) as error:  # a daemon on another machine
            self.shm_error = f"shared memory {stats.shm_namespace} not readable here: {error}"
        self.phase = "before"
        if stats.ftrace_disabled:
            now = time.monotonic_ns()
            self._report_anomaly(Anomaly(
                "stats", FTRACE_DISABLED, f"{FTRACE_DISABLED} (ftrace_kill()) before the run "
                "started: every change to it fails with ENODEV until the daemon reboots",
                now, now))
        self._read_ring()
        self._report = None
        self.check_consistency()
        for _ in range(_FINAL_SNAPSHOT_TRIES):
            if self.check_snapshot():
                break
        self.phase = "run"

    def start(self) -> None:
        for target, name in ((self._poll, "check"), (self._watch, "shm"),
                             (self._follow, "dmesg")):
            thread = threading.Thread(target=target, name=f"stress-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        # Under the lock the follower opens its stream with: it has opened it (and it is
        # cancelled here), or it will see the stop and open none.
        with self._lock:
            stream = self._follow_stream
        if stream is not None:
            stream.cancel()
        for thread in self._threads:
            thread.join(30)

    def _report_anomaly(self, anomaly: Anomaly) -> Anomaly:
        """Report it unless it is known; returns the one reported first. One there
        before the run goes to ``before``; a count error among those is known to the
        run (it is the same state), a log report is not (the log is read on from the
        line after it, and the same report again is the run's)."""
        anomaly.phase = self.phase
        with self._lock:
            known = self._seen.get(anomaly.key)
            if known is not None:
                return known
            if self.phase != "before" or anomaly.source != "dmesg":
                self._seen[anomaly.key] = anomaly
        if self.phase == "before":
            self.before.append(anomaly)
        else:
            self._on_anomaly(anomaly)
        return anomaly

    # --- the boot ------------------------------------------------------------------

    def _same_boot(self, boot_id: int, answered_ns: int,
                   stats: kernel_pb2.KernelStats | None = None) -> bool:
        """Whether an answer of ``answered_ns`` (``stats``, when it is one) came from the
        run's boot; the first one that did not is the reboot (the module docstring): said
        once, and every observer stops."""
        if boot_id == self.boot_id:
            return True
        with self._lock:
            if not self.boot_id:  # no baseline: this is the boot judged
                self.boot_id = boot_id
        if boot_id == self.boot_id:
            return True
        stats_ns = answered_ns
        if stats is None:  # when the new boot began: its uptime, if it still serves
            with contextlib.suppress(FtraceError):
                stats, stats_ns = self.client.stats(), time.monotonic_ns()
        # The uptime was read before the answer came back, so this over-estimates the
        # boot's moment by the answer's way back: no later than the answer that showed
        # the boot (a run that saw the new boot a few ms into it put its boot after it).
        booted_ns = (min(stats_ns - int(stats.uptime_seconds * 1e9), answered_ns)
                     if stats is not None and stats.boot_id == boot_id else None)
        with self._lock:
            first = self.reboot is None
            if first:
                self.reboot = Reboot(self.boot_id, boot_id, answered_ns, booted_ns)
        if first:
            self._stop.set()
            if self._on_reboot is not None:
                self._on_reboot(self.reboot)
        return False

    def confirm_boot(self) -> bool:
        """Whether the run's boot still serves (``Stats``); False once a reboot was seen.
        Raises FtraceError when the daemon does not answer."""
        if self.reboot is not None:
            return False
        stats = self.client.stats()
        return self._same_boot(stats.boot_id, time.monotonic_ns(), stats)

    def _failed(self, call: str, error: FtraceError) -> None:
        """A call failed: the kernel it was in rebooted (said as such), or the daemon is
        lost."""
        if self._stop.is_set():
            return
        try:
            if not self.confirm_boot():
                return
        except FtraceError:
            pass
        self._on_lost(f"{call}: {error_text(error)}")

    def _killed(self, seen_ns: int) -> None:
        """A check of the run found ftrace_disabled: ftrace_kill() ran (a WARN's). Said
        once through ``on_ftrace_killed``; the baseline's is the kernel's past (a run
        that finds it does not start), the teardown's comes after the run."""
        if self.phase != "run":
            return
        with self._lock:
            first = self.ftrace_killed_ns is None
            if first:
                self.ftrace_killed_ns = seen_ns
        if first and self._on_ftrace_killed is not None:
            self._on_ftrace_killed(seen_ns)

    # --- consistency and shared memory ---------------------------------------------

    def _poll(self) -> None:
        """CheckConsistency begun every ``interval`` (start to start); one that ends
        past the next start is followed at once, with no burst to catch up."""
        began = time.monotonic()
        due, done = began + self.interval, 0
        try:
            while not self._stop.wait(max(0.0, due - time.monotonic())):
                due = max(due + self.interval, time.monotonic())
                self.check_consistency()
                done += 1
        except FtraceError as error:
            self._failed("CheckConsistency", error)
        finally:
            self.consistency_rate = round(done / (time.monotonic() - began), 1)

    def _watch(self) -> None:
        """The shared-memory observer: a snapshot every ``interval``; while tracing is
        started, one that is not conclusive is tried again at once (the module
        docstring), after a writer it found has had a moment to leave."""
        if self.reader is None:
            return
        try:
            wait = self.interval
            held_at = time.monotonic()
            while not self._stop.wait(wait):
                if (self._busy and self._hold_writers is not None
                        and time.monotonic() - held_at >= _HOLD_EVERY):
                    held_at = time.monotonic()
                    self._check_held()
                    wait = self.interval
                elif self.check_snapshot() or not self._busy:
                    wait = self.interval
                else:
                    wait = _WRITER_BACKOFF if self._writer_seen else 0.0
        except FtraceError as error:
            self._failed("Stats/ListOps", error)

    def _count(self, check: str) -> None:
        """One more of the run's checks; the baseline's are not the run's."""
        if self.phase != "before":
            self.counts[check] += 1

    def check_consistency(self) -> None:
        """One ``CheckConsistency``, of the run's boot (its report says which)."""
        start = time.monotonic_ns()
        report = self.client.check_consistency()
        end = time.monotonic_ns()
        if not self._same_boot(report.boot_id, end):
            return
        self._count("consistency")
        if report.ftrace_disabled:
            self._killed(end)
        for anomaly in consistency_anomalies(report, start, end):
            self._report_anomaly(anomaly)

    def _check_held(self) -> None:
        """A snapshot with the record writers held (the runner's ``hold_writers``): the
        kernel as they left it, quiet once their operations in flight complete, which
        a bracket otherwise almost never finds while tracing is started. The writers go
        by ``HOLD_MAX`` all the same: a snapshot the kernel has not answered by then
        (its ListOps waits for ftrace_lock) is counted as such (``shm held unanswered``:
        the lock held that long with the writers still) and waited for with the writers
        going, as any other. Its records are copied, while held, only in what is left
        of ``HOLD_MAX``. A hold tries one snapshot at least, whenever it is let to
        run."""
        assert self._hold_writers is not None
        unanswered: _Bracket | None = None
        with self._hold_writers() as held:
            # Timed from the hold in place, not from asking for it: a slow way in (the
            # hold's lock, a message to each writer, the thread descheduled on a loaded
            # machine) would otherwise spend the time its snapshots get, all of it
            # past _HOLD_FOR.
            held_at = time.monotonic()
            while held and not self._stop.is_set():
                bracket = self._begin_snapshot()
                if bracket is None:
                    self._stop.wait(_WRITER_BACKOFF)
                elif not bracket.answered_by(held_at + HOLD_MAX):
                    unanswered = bracket
                    break
                elif self._end_snapshot(bracket, held_until=held_at + HOLD_MAX):
                    return
                if time.monotonic() >= held_at + _HOLD_FOR:
                    break
        if unanswered is not None:
            self._count("shm held unanswered")
            self._end_snapshot(unanswered)

    def check_snapshot(self) -> bool:
        """One bracketed snapshot check; False when records changed meanwhile. Notes
        whether tracing was started (``_busy``) and a writer was active
        (``_writer_seen``), for :meth:`_watch` to try again."""
        if self.reader is None:
            return True
        bracket = self._begin_snapshot()
        return bracket is not None and self._end_snapshot(bracket)

    def _begin_snapshot(self) -> _Bracket | None:
        """The records' state, then Stats and ListOps asked together (the bracket lasts
        as long as the slower of the two); None while a writer is active."""
        assert self.reader is not None
        start = time.monotonic_ns()
        state = self.reader.quiet_state()
        self._writer_seen = state is None
        if state is None:
            self._count("shm inconclusive")
            return None
        kernel = self.client.connection.kernel
        with translate_rpc_errors():
            # Started and waited for as the client's own calls (clients.interrupt): this
            # runs on the main thread too, before and after the run.
            stats = started(lambda: kernel.Stats.future(kernel_pb2.StatsRequest()))
            try:
                ops = started(lambda: kernel.ListOps.future(kernel_pb2.ListOpsRequest()))
            except BaseException:
                stats.cancel()  # and settled: a call left to its __del__ can hang the exit
                settle(stats)
                raise
        return _Bracket(state, start, stats, ops)

    def _end_snapshot(self, bracket: _Bracket, held_until: float | None = None) -> bool:
        """:meth:`check_snapshot`'s answers waited for, the records copied and checked;
        ``held_until``: taken with the record writers held, who go at that time
        (``time.monotonic()``), and the copy with them."""
        held = held_until is not None
        assert self.reader is not None
        with translate_rpc_errors():
            try:
                listed = interruptible(bracket.ops, bracket.ops.result)
            except BaseException:
                bracket.stats.cancel()  # settled as at the start
                settle(bracket.stats)
                raise
            stats = interruptible(bracket.stats, bracket.stats.result)
        if not self._same_boot(stats.boot_id, time.monotonic_ns(), stats):
            return True  # the run's kernel is gone: nothing to try again
        state, start = bracket.state, bracket.start
        self._busy = listed.ftrace_start_up > 0
        if listed.ftrace_disabled:
            # Stats said the run's boot; the ListOps asked with it may be the next boot's.
            if not self.confirm_boot():
                return True
            self._killed(time.monotonic_ns())
        # Moved already: no copy is needed to know this state is gone.
        if self.reader.quiet_state() != state:
            self._count("shm inconclusive")
            return False
        try:
            snap = self.reader.snapshot(
                timeout=1.0 if held_until is None else max(0.0, held_until - time.monotonic()))
        except (TimeoutError, FileNotFoundError):
            self._count("shm inconclusive")
            return False
        end = time.monotonic_ns()
        if snap.state() != state:
            self._count("shm inconclusive")
            return False
        found = snapshot_anomalies(snap, listed, start, end)
        # Stats said the run's boot; the ListOps asked with it may be the next boot's.
        if found and not self.confirm_boot():
            return True
        self._count("shm")
        if self.clients_stopping.is_set():
            self._count("shm at stop")
        elif (listed.ftrace_start_up > 0 and listed.ftrace_enabled
              and not listed.ftrace_disabled):
            self._count("shm tracing")
            if held:
                self._count("shm held")
            if any(group.counts.any() for group in snap.groups):
                self._count("shm nonzero")
        for anomaly in found:
            self._report_anomaly(anomaly)
        return True

    # --- dmesg ------------------------------------------------------------------

    def _follow(self) -> None:
        try:
            # From the start of the ring, as lines printed since the baseline read it are
            # only there; _read_log() skips those read already.
            with self._lock:
                if self._stop.is_set():
                    return
                self._follow_stream = self.client.dmesg_follow(replay=True)
            self._read_log(self._follow_stream)
            # The stream ends with the boot whose log it follows (kernel.proto).
            if not self._stop.is_set() and self.confirm_boot():
                self._on_lost("DmesgFollow: the log's stream ended")
        except FtraceError as error:
            self._failed("DmesgFollow", error)

    def _read_ring(self) -> None:
        """The ring's lines not read yet, up to its last now: ``Dmesg``'s ``next_seq``
        says where it ends, ``DmesgFollow``'s replay gives its lines from the oldest
        (``Dmesg``'s start at ``clear_seq``, after the lines ``dmesg -c`` cleared)."""
        last = self.client.dmesg_lines().next_seq - 1
        if last > self._log_seq:
            with self.client.dmesg_follow(replay=True) as stream:
                self._read_log(stream, last)

    def _read_log(self, lines: Iterable[kernel_pb2.DmesgLine], last: int | None = None) -> None:
        """The lines after the last one read, up to ``last`` when given (the stream
        goes on); a line dropped from the ring meanwhile ends it too."""
        for line in lines:
            if last is not None and line.seq > last:
                return
            if line.seq > self._log_seq:
                self._log_seq = line.seq
                for text in line.text.splitlines():
                    self._count("dmesg lines")
                    self.dmesg_line(text)
            if line.seq == last:
                return

    def dmesg_line(self, text: str) -> None:
        """One line of the kernel log; a report's first line is an anomaly at once, the
        lines after it its detail."""
        start = _REPORT_START.search(text)
        if start:
            now = time.monotonic_ns()
            message = start.group(1)
            anomaly = Anomaly("dmesg", dmesg_kind(message), message, now, now, detail=[text])
            # Another report with a message reported already is not collected.
            self._report = anomaly if self._report_anomaly(anomaly) is anomaly else None
        elif self._report is not None:
            self._report.detail.append(text)
            module = _KASAN_MODULE.search(text)
            if module:
                self._report.module = module.group(1)
            if _REPORT_END.search(text):
                self._report = None

    def final_check(self) -> None:
        """After the clients stopped (and :meth:`stop`): the checks once more, and the
        log's lines the follower had not delivered yet, a report it was receiving
        continued; none of them once the run's boot is gone (a reboot seen now, if not
        before). Raises FtraceError when the daemon does not answer."""
        self.phase = "teardown"
        if not self.confirm_boot():
            return
        self.check_consistency()
        # The kernel is quiet now: a snapshot fails only while a write is in progress,
        # or forever when a killed client's call is stuck mid-write.
        for _ in range(_FINAL_SNAPSHOT_TRIES):
            if self.check_snapshot():
                break
        if self.reboot is None:
            self._read_ring()

    def close(self) -> None:
        self.client.close()
