"""One stress run from start to report.

:func:`connect` first: the daemon (a private one, or the one at ``--address``) must
answer before the run's directory is touched, so that a run that cannot start leaves an
earlier run's results as they were. The checker first looks at the kernel as the run
finds it: what it showed before is reported apart, not as the run's, and a kernel whose
ftrace is dead already is not stressed. Then the checker's threads and the worker processes
run (the checker holds the record writers still a moment twice a second, for a snapshot of
the kernel at work: :meth:`Run.hold_writers`); this process waits for the first of: an anomaly (of a ``stop_on``
kind, and unless ``keep_going``), the end of the duration, every worker done, the daemon
gone, a worker making no progress for the stall timeout (stuck in a call), and ftrace
killed (:meth:`Run._on_ftrace_killed`: nothing new can be found after it). A worker
that dies on its way is noted, with whether another was still running (the run goes on
without it) or none was (which ends the run); the run is then not clean. Then the run's clients
held at a failpoint's ``pause`` are released (nothing else would: their threads hold
locks the teardown needs), the workers are told to stop (a tracer unregisters its ops),
the function tracer is turned off
(what a user would do next, and what turns a latent count error into the kernel's WARN:
the loaders are held still meanwhile, so that the modules stay where they are), the checks
run once more, the client files are merged into the history (streamed: an operation a
client is held, not the history; but the operations up to the anomaly the minimizer is to
reproduce are kept for it, which for an anomaly late in a long run is most of them:
``--no-minimize`` keeps none), the report is written, the client files go (the history
has what they said), and the minimizer looks for a reproducer, after which the report is
written again.

Waiting is on file descriptors: a pidfd per process, and a pipe the checker's threads
write to when they have something to say; the workers' files, looked at four times a
stall timeout, say whether each made progress meanwhile.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import selectors
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterator

from clients.api import Client
from clients.cli import MAX_WAIT, ConnectError, daemon_lost, error_text, no_daemon_text
from clients.errors import FtraceError
from clients.identity import Identity
from clients.interrupt import SignalTaken
from clients.spawn import SpawnedDaemon, SpawnError, spawn_daemon
from clients.stress import history
from clients.stress.checker import Anomaly, Checker, Reboot
from clients.stress.commands import TRACING_DIR
from clients.stress.config import AUTO_FAILPOINTS, BootSpec, RunConfig
from clients.stress.cpu import CpuMeter, daemon_pid
from clients.stress.history import RESULT_ERROR, RESULT_OK, RESULT_UNKNOWN, Recorder
from clients.stress.minimize import Minimizer, SearchInput, Target
from clients.stress.replay import ReplayRebooted
from clients.stress.report import OpsTally, RunResult, WorkerRecord, write_reports
from clients.stress.workers import WorkerSpec

#: How long stopped workers get to finish their operation and unregister.
STOP_GRACE = 15.0
#: How long the workers get to start and connect.
STARTUP_TIMEOUT = 120.0
#: Core functions offered to the workers' patterns (sampled from available_filter_functions).
CORE_SAMPLE = 64
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: What a run leaves in its directory, besides each worker's stderr (clients/NAME.log); the
#: client files (clients/*.jsonl) are there until the history is merged from them.
RUN_FILES = ("report.json", "report.txt", "history.jsonl", "repro.sh")


#: The files of a daemon of the user's that the run changes and gives back as it found
#: them, in the order they are written back (the tracer last: its start updates the
#: records with the filters in place).
RESTORED_FILES = ("set_ftrace_filter", "set_ftrace_notrace", "current_tracer")


@dataclasses.dataclass(frozen=True)
class FoundState:
    """A daemon of the user's as the run found it (:meth:`Run._restore`)."""

    modules: set[str]
    files: dict[str, bytes]  # RESTORED_FILES, as read


def filter_patterns(listing: bytes) -> bytes:
    """What writes a filter file back to ``listing`` (what reading it gave): each function
    line (``name``, or ``name [module]`` as 3.6's ``%ps`` prints a module's) as a pattern
    selecting that function; not the banner (``#### all functions enabled ####``) nor a
    probe (``func:command[:data]``, which a truncating write leaves in place)."""
    patterns = []
    for line in listing.decode().splitlines():
        if not line or line.startswith("#") or ":" in line:
            continue
        name, _, module = line.partition(" [")
        patterns.append(f"{name}:mod:{module.rstrip(']')}" if module else name)
    # Each ends with a newline, as echo's: 3.6's release matches an unterminated last
    # word as a glob only (ftrace_regex_release), so its :mod: would select nothing.
    return "".join(f"{pattern}\n" for pattern in patterns).encode()


def interrupted(interrupt: KeyboardInterrupt) -> str:
    """"interrupted", and by which signal when the handler that raised it named it
    (SIGTERM: clients.cli.sigterm_interrupts); a SignalTaken's argument is the answer of
    the call its SIGINT reached, no name."""
    named = interrupt.args and not isinstance(interrupt, SignalTaken)
    return f"interrupted by {interrupt.args[0]}" if named else "interrupted"


def make_run_dir(out_dir: str) -> None:
    """Create the run's directory (and its ``clients/``), keeping what is in it. Raises
    OSError when it cannot be made (a run checks that before anything starts)."""
    os.makedirs(os.path.join(out_dir, "clients"), exist_ok=True)


def connect(config: RunConfig, timeout: float) -> tuple[SpawnedDaemon | None, Client]:
    """The run's daemon, answering: the private one booted, or the one at ``--address``
    waited for ``timeout`` seconds as any client waits. Raises ConnectError (a private
    daemon is then stopped)."""
    try:
        spawned = spawn_daemon(config.boot.argv) if config.address is None else None
    except SpawnError as error:
        raise ConnectError(str(error)) from error
    address = spawned.address if spawned else config.address
    with contextlib.ExitStack() as on_failure:
        if spawned is not None:
            on_failure.callback(spawned.stop)
        try:
            client = Client(address, Identity(os.getpid(), "ftrace-stress"), wait=timeout)
        except FtraceError as error:
            raise ConnectError(no_daemon_text(address, error, timeout)) from error
        on_failure.pop_all()
    return spawned, client


def clear_previous_run(out_dir: str) -> None:
    """Remove what an earlier run left in the run's directory (:func:`make_run_dir`): its
    client files would be merged into this run's history, and its repro.sh would outlive
    a clean run. Nothing else in the directory is touched."""
    clients = os.path.join(out_dir, "clients")
    stale = [os.path.join(out_dir, name) for name in RUN_FILES]
    stale += [entry.path for entry in os.scandir(clients)
              if entry.is_file() and entry.name.endswith((".jsonl", ".log"))]
    for path in stale:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


class Progress:
    """One line on a terminal, rewritten in place."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def show(self, text: str) -> None:
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()

    def done(self) -> None:
        self.stream.write("\r\x1b[K")
        self.stream.flush()


class _Worker:
    """A worker process as the orchestrator holds it."""

    def __init__(self, spec: WorkerSpec, out_dir: str, env: dict[str, str]) -> None:
        self.spec = spec
        # Its own process group: a Ctrl-C at the terminal is the orchestrator's to handle.
        with open(os.path.join(out_dir, "clients", f"{spec.name}.log"), "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "clients.stress.worker"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, env=env, process_group=0)
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(dataclasses.asdict(spec)) + "\n").encode())
        self.process.stdin.flush()
        self.pidfd = os.pidfd_open(self.process.pid)
        self.record = WorkerRecord(spec.name, spec.kind, self.process.pid)
        self.cpu = CpuMeter(self.process.pid)
        self.frozen = False

    def tell(self, word: str) -> None:
        """One line to the worker: ``go``, ``hold``, or ``stop`` (which also closes the
        pipe)."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(word.encode() + b"\n")
            self.process.stdin.flush()
            if word == "stop":
                self.process.stdin.close()
        except (BrokenPipeError, ValueError):
            pass  # already gone

    def tell_stop(self) -> None:
        if not self.record.stopped:
            self.record.stopped = True
            self.tell("stop")

    def freeze(self) -> None:
        """SIGSTOP: no more operations until :meth:`thaw` (one in flight completes in the
        daemon all the same)."""
        if not self.frozen:
            self.process.send_signal(signal.SIGSTOP)
            self.frozen = True

    def thaw(self) -> None:
        if self.frozen:
            self.process.send_signal(signal.SIGCONT)
            self.frozen = False

    def stop_cpu_meter(self) -> None:
        self.cpu.stop()
        self.record.cpu_s = self.cpu.spent

    def reap(self) -> None:
        self.stop_cpu_meter()  # exited, not yet reaped: /proc still has its figures
        self.record.status = self.process.wait()
        self.record.exited_ns = time.monotonic_ns()
        if self.record.status == 0:
            self.record.stopped = True  # it did all its operations
        os.close(self.pidfd)
        assert self.process.stdout is not None
        self.process.stdout.close()


@dataclasses.dataclass
class _ProgressWatch:
    """When each running worker was last seen to record an event (each one is a line
    written to its history file, which grows), or the go: file sizes against the monotonic
    clock, which a step of the wall clock (NTP) does not move, where the files' mtimes
    would."""

    go: float = dataclasses.field(default_factory=time.monotonic)
    # Its history file -> (its size, when it was first seen at that size; the go first).
    seen: dict[str, tuple[int, float]] = dataclasses.field(default_factory=dict)

    def quiet_for(self, workers: list["_Worker"]) -> dict["_Worker", float]:
        """Seconds since each of ``workers`` last recorded something, looking at their
        files now."""
        now = time.monotonic()
        quiet = {}
        for worker in workers:
            path = worker.spec.history
            size = os.stat(path).st_size
            last = self.seen.get(path)
            if last is None or last[0] != size:
                self.seen[path] = last = (size, self.go if last is None else now)
            quiet[worker] = now - last[1]
        return quiet


class Run:
    def __init__(self, config: RunConfig, argv: list[str], progress: Progress | None,
                 daemon: tuple[SpawnedDaemon | None, Client]) -> None:
        """``daemon``: what :func:`connect` returned; the run stops (and closes) it."""
        self.config = config
        self.result = RunResult(config, argv)
        self.progress = progress
        self.spawned, self.client = daemon
        self.daemon_pid: int | None = None  # when known: private, or on a unix socket
        self.address = self.client.address
        self.checker: Checker | None = None
        self.workers: list[_Worker] = []
        self.modules: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._lost = ""
        self._reboot: Reboot | None = None  # the daemon's kernel replaced under the run
        # The writers the checker holds for a snapshot (hold_writers); whether they were
        # told to go (a hold before would read as their go) and whether the run has
        # begun to stop: it holds none before the one and after the other (_hold_lock).
        self._hold_lock = threading.Lock()
        self._held: list[_Worker] = []
        self._went = False
        self._stopping = False
        self._armed: list[str] = []  # failpoint sites this run armed on the user's daemon
        self._found: FoundState | None = None  # the user's daemon as the run found it
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._ops_seen: dict[str, tuple[int, int]] = {}  # progress: file -> (offset, count)
        # The daemon's (when its pid is known) and this process's CPU over the operations.
        self._cpu: dict[str, CpuMeter] = {}

    # --- events from the checker's threads -------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def _on_anomaly(self, anomaly: Anomaly) -> None:
        with self._lock:
            self.result.anomalies.append(anomaly)
        self._wake()

    def _on_lost(self, why: str) -> None:
        with self._lock:
            self._lost = self._lost or f"the daemon stopped answering ({why})"
        self._wake()

    def _on_reboot(self, reboot: Reboot) -> None:
        """Someone rebooted the daemon (the run never does): the kernel the run judges is
        gone, so the run stops; what it found before stands (:meth:`_finish`)."""
        with self._lock:
            self._reboot = reboot
        self._wake()

    def _on_ftrace_killed(self, seen_ns: int) -> None:
        """A check found ftrace killed (ftrace_kill(), after a WARN): the run ends, with
        --keep-going too, for nothing new can be found. Every change is refused from
        then on (ENODEV) and no record is patched again; only the operations in flight
        at the kill may still move counts (a filter's release moves its hash in, and
        may WARN again; a change that passed its ftrace_disabled test and waited for
        ftrace_lock goes on), and they end before the checks run once more, after the
        clients stopped (:meth:`_stop`): that check sees all they left."""
        with self._lock:
            self.result.ftrace_killed_ns = seen_ns
        self._wake()

    @contextlib.contextmanager
    def hold_writers(self) -> Iterator[bool]:
        """The clients that write records (all but the invokers) held after their
        operation in progress (``hold``, worker.py) while the checker takes a snapshot:
        the kernel goes quiet in the state they made, tracing on and counts set
        (checker.py, which lets them go within its ``HOLD_MAX``, answered or not: with
        ftrace_lock held for good they would wait on the checker, and look stuck in the
        kernel to the stall watch). Not SIGSTOP: the SIGCONT after it would also go on
        with a client someone else stopped. Yields whether it holds any: none once the
        run is stopping, when :meth:`_end_holds` has let them go."""
        with self._hold_lock:
            if self._went and not self._stopping:
                self._held = [w for w in self._alive() if w.spec.kind != "invoker"
                              and not w.record.stopped]
                for worker in self._held:
                    worker.tell("hold")
            held = bool(self._held)
        try:
            yield held
        finally:
            self._end_holds(stopping=False)

    def _end_holds(self, stopping: bool = True) -> None:
        """Let the held writers go; with ``stopping``, hold none from now on (the stop
        freezes and thaws clients of its own)."""
        with self._hold_lock:
            self._stopping = self._stopping or stopping
            for worker in self._held:
                worker.tell("go")
            self._held = []

    # --- the run ----------------------------------------------------------------

    def execute(self) -> RunResult:
        """The run, into the directory :func:`make_run_dir` made, cleared of an earlier
        run's files first."""
        result = self.result
        try:
            clear_previous_run(self.config.out_dir)
            self._boot()
            # A kernel whose ftrace is dead refuses every change: nothing to stress.
            if not result.ftrace_disabled_before:
                self._start()
                self._wait()
                self._stop()
        except KeyboardInterrupt as interrupt:  # Ctrl-C, or a signal the caller turned into it
            result.error = interrupted(interrupt)
            self._abort()
        except FtraceError as error:
            # A connection lost: one line, without gRPC's words for it.
            result.error = error_text(error, self.client) if daemon_lost(error) else str(error)
            self._abort()
        except (OSError, ValueError) as error:
            result.error = str(error)
            self._abort()
        finally:
            self._finish()
        return result

    def _boot(self) -> None:
        """The daemon as the run finds it (the checker's baseline), made ready for it."""
        config = self.config
        self.checker = Checker(self.address, config.check_interval, self._on_anomaly,
                               self._on_lost, self.hold_writers, self._on_reboot,
                               self._on_ftrace_killed)
        self.checker.baseline()
        self.result.before_run = self.checker.before
        if config.address is not None:
            self._adopt()
            if not self.result.ftrace_disabled_before:
                self._found = self._as_found()
        self.daemon_pid = self.spawned.pid if self.spawned else daemon_pid(self.address)
        self.result.daemon = {"address": self.address, "private": self.spawned is not None,
                              "pid": self.daemon_pid,
                              "shm_namespace": self.checker.shm_namespace,
                              "boot_id": self.checker.boot_id}
        catalog = {m.name: list(m.functions) for m in self.client.catalog()}
        missing = [m for m in config.modules if m not in catalog]
        if missing:
            raise ValueError(f"not in the module catalog: {', '.join(missing)}")
        self.modules = {m: catalog[m] for m in config.modules}

    def _adopt(self) -> None:
        """A daemon of the user's: boot its twins the same way, with the failpoints armed
        on it now; widen its race windows unless it has failpoints armed already (or its
        ftrace is dead: no run). What is armed here, :meth:`_disarm` disarms."""
        boot = BootSpec.from_config(self.client.config(), self.client.list_failpoints())
        if boot.races and not boot.failpoints() and not self.result.ftrace_disabled_before:
            for race in dict.fromkeys(boot.races):
                site, spec = AUTO_FAILPOINTS[race]
                # Noted first: an interrupt after the call must not leave it armed.
                self._armed.append(site)
                self.client.set_failpoint(site, spec)
                boot = boot.with_failpoint(site, spec)
        self.config = self.result.config = dataclasses.replace(
            self.config, boot=boot, auto_failpoints=tuple(
                (site, boot.failpoints()[site]) for site in self._armed))

    def _disarm(self) -> None:
        """Turn off the failpoints :meth:`_adopt` armed (none was armed before it), so that
        the user's daemon is left as it was found (the run's end, an error, SIGINT or
        SIGTERM alike); the report says whether it could."""
        if not self._armed or self._reboot:
            return  # none armed; or armed on a kernel that is gone
        try:
            for site in self._armed:
                self.client.set_failpoint(site, "off")
            self.result.daemon["failpoints_disarmed"] = True
        except FtraceError as error:
            self.result.daemon["failpoints_disarmed"] = False
            self.result.daemon["disarm_error"] = str(error)

    def _as_found(self) -> FoundState:
        """What the run changes on a daemon of the user's, as it is before: the loaded
        modules, the filter files, the tracer."""
        return FoundState({m.name for m in self.client.list_modules()},
                          {name: self.client.read_file(f"{TRACING_DIR}/{name}")
                           for name in RESTORED_FILES})

    def _restore(self) -> None:
        """Leave the user's daemon as the run found it: the modules the run's loaders
        loaded unloaded and those they unloaded loaded again (by name: at another base),
        then each filter file written back (a truncating write of what it listed, a module
        function as ``name:mod:module``; the probes of set_ftrace_filter stay, as such a
        write leaves them: the run makes none), then current_tracer. A kernel whose
        ftrace_kill() ran refuses every write to ftrace's files until reboot: the report
        says what is left changed. Any file that reads back otherwise is named too."""
        found = self._found
        if found is None or self._lost or self._reboot:
            # Rebooted: the kernel the run found is gone. What the clients did on the new
            # one before the run saw the reboot stays, as the README says.
            return
        restored: dict[str, Any] = {"unloaded": [], "loaded": [], "rewritten": [], "left": []}
        self.result.daemon["restored"] = restored
        try:
            loaded = {m.name for m in self.client.list_modules()}
            if self.client.stats().ftrace_disabled:
                restored["left"] = [f"ftrace was killed (ftrace_kill): nothing restored; "
                                    f"modules the run loaded: "
                                    f"{', '.join(sorted(loaded - found.modules)) or 'none'}"]
                return
            for name in sorted(loaded - found.modules):
                self.client.unload(name, if_absent_ok=True)
                restored["unloaded"].append(name)
            for name in sorted(found.modules - loaded):
                self.client.load(name, if_loaded_ok=True)
                restored["loaded"].append(name)
            for name, before in found.files.items():
                path = f"{TRACING_DIR}/{name}"
                if self.client.read_file(path) != before:
                    text = before if name == "current_tracer" else filter_patterns(before)
                    self.client.write_file(path, text or b"\n")  # empty: echo > file
                    restored["rewritten"].append(name)
                    if self.client.read_file(path) != before:
                        restored["left"].append(f"{name} reads otherwise than before the run")
        except FtraceError as error:
            restored["left"].append(f"restoring failed: {error}")

    def _core_sample(self) -> list[str]:
        text = self.client.read_file(f"{TRACING_DIR}/available_filter_functions").decode()
        core = [line for line in text.splitlines() if line and " [" not in line]
        return random.Random(self.config.seed).sample(core, min(CORE_SAMPLE, len(core)))

    def _start(self) -> None:
        config = self.config
        core = self._core_sample()
        assert self.checker is not None
        self.checker.start()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (_REPO_ROOT, env.get("PYTHONPATH"))))
        names = [(kind, i) for kind, n in config.workers.items() for i in range(n)]
        budgets = self._budgets(len(names))
        self.result.start_ns = time.monotonic_ns()
        for (kind, i), budget in zip(names, budgets):
            name = f"{kind}{i}"
            spec = WorkerSpec(name, kind, self.address, config.seed,
                              os.path.join(config.out_dir, "clients", f"{name}.jsonl"),
                              budget, self.modules, core, self.checker.boot_id)
            worker = _Worker(spec, config.out_dir, env)
            self.workers.append(worker)
            self.result.workers.append(worker.record)
        self._await_ready()
        if self._lost or self._reboot:
            return  # no client goes to work on a kernel gone, nor on one not the run's
        # The run starts now, for every worker at once.
        self.result.start_ns = time.monotonic_ns()
        self.result.start_wall = time.time()
        self._cpu["ftrace-stress"] = CpuMeter(os.getpid())
        if self.daemon_pid is not None:
            self._cpu["ftraced"] = CpuMeter(self.daemon_pid)
        for meter in self._cpu.values():
            meter.start()
        for worker in self._alive():
            worker.cpu.start()
            worker.tell("go")
        with self._hold_lock:
            self._went = True

    def _await_ready(self) -> None:
        """Until every worker said ``ready`` (or died on the way), or the daemon is gone
        or rebooted (the checker's threads, started first, say so): the workers still
        starting are then not waited for, and none is told to go (:meth:`_wait` ends the
        run at once)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ, None)
            for worker in self.workers:
                assert worker.process.stdout is not None
                selector.register(worker.process.stdout, selectors.EVENT_READ, worker)
            while len(selector.get_map()) > 1:
                events = selector.select(deadline - time.monotonic())
                if not events:
                    raise TimeoutError(f"clients not ready after {STARTUP_TIMEOUT:g} s")
                for key, _ in events:
                    if key.data is None:
                        os.read(self._wake_r, 4096)
                        continue
                    selector.unregister(key.fileobj)
                    if key.fileobj.readline().strip() != b"ready":  # type: ignore[union-attr]
                        key.data.reap()
                with self._lock:
                    if self._lost or self._reboot:
                        return

    def _budgets(self, count: int) -> list[int | None]:
        if self.config.ops is None:
            return [None] * count
        share, extra = divmod(self.config.ops, count)
        return [share + (i < extra) for i in range(count)]

    def _alive(self) -> list[_Worker]:
        return [w for w in self.workers if w.record.status is None]

    def _wait(self) -> None:
        """Until an anomaly of a stop_on kind (unless keep_going), the deadline, no worker
        left, the daemon gone, or a worker recording nothing for the stall timeout: stuck
        in a call (a thread held at a failpoint, a lock never released) or stopped, it
        would be waited for forever by a run of ``--ops``, and by any run's stop. The run
        then stops as at a deadline, and the stuck workers are named."""
        config = self.config
        stall = config.stall_timeout
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ, None)
        for worker in self._alive():  # a reaped worker's pidfd is closed
            selector.register(worker.pidfd, selectors.EVENT_READ, worker)
        daemon_fd = os.pidfd_open(self.spawned.pid) if self.spawned else None
        if daemon_fd is not None:
            selector.register(daemon_fd, selectors.EVENT_READ, "daemon")
        deadline = (self.result.start_ns + int(config.duration * 1e9)
                    if config.duration is not None else None)
        watch = _ProgressWatch()
        try:
            # The state is looked at before each wait, the wake-ups only end one: the
            # checker may have lost the daemon while the workers started.
            while not self._over(deadline):
                now = time.monotonic_ns()
                timeout = (None if deadline is None
                           else min(max(0.0, (deadline - now) / 1e9), MAX_WAIT))
                quiet = watch.quiet_for(self._alive())
                stuck = [worker for worker, seconds in quiet.items() if seconds >= stall]
                if stuck:
                    for worker in stuck:
                        worker.record.stalled = True
                    break
                # Growth is seen when looked for: look four times a stall timeout.
                timeout = min(MAX_WAIT if timeout is None else timeout,
                              stall - max(quiet.values(), default=0.0), stall / 4)
                if self.progress is not None:
                    timeout = min(timeout, 0.25)
                for key, _ in selector.select(timeout):
                    if key.data is None:
                        os.read(self._wake_r, 4096)
                    elif key.data == "daemon":
                        self._on_lost(f"ftraced exited: {self._daemon_exit()}")
                        selector.unregister(key.fd)
                    else:
                        selector.unregister(key.fd)
                        key.data.reap()
                        key.data.record.others_running = self._others_running()
                self._show_progress()
        finally:
            selector.close()
            if daemon_fd is not None:
                os.close(daemon_fd)
        self.result.stop_ns = time.monotonic_ns()
        self._end_holds()
        self._stop_cpu_meters()
        if self.result.anomalies and not self._lost and not self._reboot:
            for worker in self._loaders():
                worker.freeze()

    def _others_running(self) -> bool:
        """Whether a worker besides the one just reaped still runs: one not reaped yet
        whose pidfd does not say it exited (looked at, not waited for: a reap now would
        lose its CPU figures, read at its reap)."""
        others = self._alive()
        with selectors.DefaultSelector() as selector:
            for other in others:
                selector.register(other.pidfd, selectors.EVENT_READ)
            return len(selector.select(0)) < len(others)

    def _over(self, deadline: int | None) -> bool:
        """Whether :meth:`_wait` is over: the daemon gone, an anomaly to stop at, ftrace
        killed (noted as what ended the run when nothing before did), no worker left, or
        the ``deadline`` (monotonic ns) passed."""
        with self._lock:
            if (self._lost or self._reboot
                    or (self._stopping_anomaly() and not self.config.keep_going)):
                return True
            if self.result.ftrace_killed_ns is not None:
                self.result.ended_at_kill = True
                return True
        return not self._alive() or (deadline is not None
                                     and time.monotonic_ns() >= deadline)

    def _release_paused(self) -> None:
        """Release the run's clients held at a failpoint's ``pause`` (armed on a daemon of
        the user's: the run's own command line refuses it). Nothing else would before they
        are killed, and their threads in the daemon would hold what they hold (ftrace_lock
        at most sites) for good: the teardown would wait on it forever. Each is noted:
        a run that held a client so is not clean. At each site the paused threads go
        oldest first, up to the last of the run's."""
        workers = {worker.process.pid: worker for worker in self.workers}
        for point in self.client.list_failpoints():
            held = [i for i, task in enumerate(point.paused_tasks) if task.pid in workers]
            for i in held:
                workers[point.paused_tasks[i].pid].record.paused_at = point.name
            if held:
                self.client.release_failpoint(point.name, held[-1] + 1)

    def _stop_cpu_meters(self) -> None:
        """Read, at the stop, the CPU of the daemon, of this process and of every worker
        still running (one that exited before was read at its exit)."""
        for worker in self._alive():
            worker.stop_cpu_meter()
        for meter in self._cpu.values():
            meter.stop()

    def _settle_cpu(self, logs: list[history.ClientLog]) -> None:
        """The CPU each party spent from the go to the stop: the daemon, this process,
        the workers by kind. A worker that ended on its own before the stop (its
        operations done) counts to its end event, which it wrote before its exit: the
        exit of a Python process with a gRPC channel costs it about 100 ms, and read
        from /proc at its exit, that would count as the cost of its operations."""
        by_client = {log.client: log for log in logs}
        spent = {party: meter.spent for party, meter in self._cpu.items()
                 if meter.spent is not None}
        for worker in self.workers:
            log = by_client.get(worker.spec.name)
            if (log is not None and log.ended_ns is not None and log.cpu_s is not None
                    and log.ended_ns <= self.result.stop_ns):
                worker.record.cpu_s = round(log.cpu_s, 3)
            if worker.record.cpu_s is not None:
                spent[worker.spec.kind] = spent.get(worker.spec.kind, 0.0) + worker.record.cpu_s
        self.result.cpu = {party: round(seconds, 3) for party, seconds in spent.items()}

    def _stopping_anomaly(self) -> bool:
        return any(self.config.stops(a.kind) for a in self.result.anomalies)

    def _daemon_exit(self) -> str:
        assert self.spawned is not None
        status = self.spawned.process.wait()
        return f"killed by {signal.Signals(-status).name}" if status < 0 else f"status {status}"

    def _stop_workers(self) -> None:
        """Tell every worker to stop; kill those that do not within STOP_GRACE."""
        if not self.result.stop_ns:
            self.result.stop_ns = time.monotonic_ns()
        for worker in self._alive():
            worker.thaw()
            worker.tell_stop()
        self._reap(self.workers)

    def _loaders(self) -> list[_Worker]:
        return [w for w in self._alive() if w.spec.kind == "loader"]

    def _reap(self, workers: list[_Worker]) -> None:
        deadline = time.monotonic() + STOP_GRACE
        with selectors.DefaultSelector() as selector:
            for worker in workers:
                if worker.record.status is None:
                    selector.register(worker.pidfd, selectors.EVENT_READ, worker)
            while selector.get_map() and time.monotonic() < deadline:
                for key, _ in selector.select(deadline - time.monotonic()):
                    selector.unregister(key.fd)
                    key.data.reap()
        for worker in workers:
            if worker.record.status is None:
                worker.process.kill()
                worker.reap()
                worker.record.killed_at_stop = True

    def _abort(self) -> None:
        self._end_holds()
        self._stop_workers()
        if self.checker is not None:
            self.checker.stop()

    def _stop(self) -> None:
        """The loaders are frozen first (SIGSTOP): a count error becomes the kernel's
        WARN when its ops is disabled while its module is still loaded, so the modules
        stay as they are while the others stop (a tracer unregisters) and the function
        tracer is turned off. A client held at a failpoint is released first (its
        operation completes in the daemon). Then the loaders go, and the checks run once
        more. Neither the teardown nor the checks once the daemon rebooted (seen by the
        checker's threads, or by its look at the boot here, every client but the loaders
        stopped): the kernel to turn off and check is gone."""
        assert self.checker is not None
        self.checker.clients_stopping.set()
        for worker in self._loaders():
            worker.freeze()
        if not self._lost:
            self._release_paused()
        others = [w for w in self._alive() if w.spec.kind != "loader"]
        for worker in others:
            worker.tell_stop()
        self._reap(others)
        assert self.checker is not None
        self.checker.stop()
        try:
            if not self._lost and self.checker.confirm_boot():
                self._fence()
                self._teardown()
            self._stop_workers()
            if not self._lost:
                self.checker.final_check()
        except FtraceError as error:
            if error.from_kernel:
                raise
            self._on_lost(error_text(error))

    def _fence(self) -> None:
        """From the run's last look at the kernel on, this process's own calls say they
        were born in the run's boot (the boot fence, Identity.boot_id, as the workers'
        do): a reboot after that look fails the teardown, disarm and restore with ENODEV
        ("the kernel rebooted") instead of letting them act on the new kernel, and the
        report says so. Not before: until then a call failing so would end the run as a
        kernel error where the checker says it is a reboot."""
        if self.checker is not None and self.checker.boot_id:
            self.client.identity = dataclasses.replace(self.client.identity,
                                                       boot_id=self.checker.boot_id)

    def _teardown(self) -> None:
        """``echo nop > current_tracer``, recorded like any client's operation."""
        recorder = Recorder(os.path.join(self.config.out_dir, "clients", "teardown.jsonl"),
                            "teardown", "teardown")
        args = {"file": "current_tracer", "text": "nop", "append": False}
        op_id = recorder.invoke("write", args)
        try:
            self.client.write_file(f"{TRACING_DIR}/current_tracer", "nop\n")
            recorder.complete(op_id, RESULT_OK)
        except FtraceError as error:
            recorder.complete(op_id, RESULT_ERROR if error.from_kernel else RESULT_UNKNOWN,
                              error.errno_name)
            if not error.from_kernel:
                raise
        finally:
            recorder.close()

    def _finish(self) -> None:
        result = self.result
        if self._lost and not result.error:
            result.error = f"{self._lost} mid-run"
        result.daemon["lost"] = self._lost
        # A reboot took the verdict's kernel: with nothing found before it the run has no
        # verdict (an error); an anomaly found before it stands, the reboot said with it.
        result.reboot = self._reboot
        if result.reboot is not None and not result.error and not result.anomalies:
            result.error = result.reboot_text
        # One after the last check (the observers stopped) leaves the verdict, which is of
        # the run's boot, whole; but nothing is disarmed or restored on the new kernel.
        if result.reboot is None and self.checker is not None and not self._lost:
            with contextlib.suppress(FtraceError):
                self.checker.confirm_boot()
            result.reboot = self._reboot
        self._fence()
        self._disarm()  # first: the restore's loads and writes meet no armed failpoint
        self._restore()
        if self.checker is not None:
            result.checks = self.checker.counts
            result.consistency_rate = self.checker.consistency_rate
            result.shm_error = self.checker.shm_error
            self.checker.close()
        result.anomalies.sort(key=lambda a: a.seen_to_ns)
        result.reproducer_note = self._not_searched()
        # What the search needs of the history: the operations invoked before the anomaly
        # it reproduces was seen (the last SEARCH_WINDOW of them, and of those before
        # what the kernel may still hold), and the run's teardown it may end a script
        # with. The rest goes by into history.jsonl and the report's tally.
        search = (None if result.reproducer_note
                  else SearchInput(Target.of(result.anomalies).horizon_ns))
        result.tally = tally = OpsTally(result.stop_ns, result.anomalies)

        def consume(op: history.Op) -> None:
            tally.add(op)
            if search is not None:
                search.add(op)

        result.logs = history.merge(self.config.out_dir, consume)
        self._settle_cpu(result.logs)
        self.client.close()
        if self.spawned is not None:
            status = self.spawned.stop()
            result.daemon["exit_status"] = status
        if search is not None:
            result.reproducer_note = ("the search had not ended when this was written: a "
                                      "report without its result is one of a search that "
                                      "never ended")
        # Written before the search, which may take long: a run killed meanwhile has one.
        write_reports(result)
        history.remove_client_files(self.config.out_dir)
        if search is not None:
            self._minimize(search)
            write_reports(result)
        if self.progress is not None:
            self.progress.done()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _not_searched(self) -> str:
        """Why no reproducer is searched for, or "" when one is."""
        if not self.result.anomalies:
            return "no anomaly, nothing to reproduce"
        if self.result.error:
            return "not searched: the run failed"
        if not self.config.minimize:
            return "not searched (--no-minimize)"
        return ""

    def _minimize(self, search: SearchInput) -> None:
        """The search, over what ``search`` kept of the history up to the anomaly's
        horizon."""
        result = self.result
        result.reproducer_note = ""
        log: Callable[[str], None] = (
            (lambda text: self.progress.show(f"minimizing: {text}"))
            if self.progress is not None else (lambda text: None))
        try:
            result.reproducer = Minimizer(
                self.config.boot, search.ops, result.anomalies, self.modules,
                self.config.out_dir, result.start_ns, self.config.max_replays, log,
                search.note).run()
        except (SpawnError, FtraceError, OSError, subprocess.SubprocessError,
                ReplayRebooted) as error:
            result.reproducer_note = f"the search failed: {error}"
        except KeyboardInterrupt as interrupt:  # Ctrl-C, or a signal the caller turned into it
            # As a run interrupted before is an error, this one is: what it found stands
            # (exit status 2 over 1: it is not the run it was asked for, search and all).
            result.error = f"{interrupted(interrupt)} during the reproducer search"
            result.reproducer_note = "the search was interrupted: no reproducer"

    def _show_progress(self) -> None:
        if self.progress is None:
            return
        done = 0
        for path in history.client_files(self.config.out_dir):
            offset, count = self._ops_seen.get(path, (0, 0))
            with open(path, "rb") as events:
                events.seek(offset)
                data = events.read()
            # Count whole lines only; a line being written is counted next time.
            data = data[: data.rfind(b"\n") + 1]
            count += data.count(b'"ev":"complete"')
            self._ops_seen[path] = (offset + len(data), count)
            done += count
        elapsed = (time.monotonic_ns() - self.result.start_ns) / 1e9
        checks = self.checker.counts if self.checker else {}
        self.progress.show(
            f"{elapsed:7.1f} s  {done} operations ({done / max(elapsed, 1e-9):.0f}/s)  "
            f"checks {checks.get('consistency', 0)}+{checks.get('shm', 0)}  "
            f"anomalies {len(self.result.anomalies)}  clients {len(self._alive())}/"
            f"{len(self.workers)}")

