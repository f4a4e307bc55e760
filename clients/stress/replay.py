"""Replaying candidate reproducers, each on a fresh private daemon with the run's boot
options, and looking at what the kernel then shows.

A sequential candidate is run by an ``ftrace-shell`` (the :class:`~clients.shell.Shell`
of ``ftrace-shell``, in this process) as a script; an interleaving by two shells on two
connections, the first held at a failpoint while the second runs. Daemons are started
one ahead, in the background, while the previous replay runs.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass, field

from clients.api import Client
from clients.errors import FtraceError
from clients.identity import Identity
from clients.shell import Shell
from clients.shell_runtime import BufferOutput, ShellExit
from clients.spawn import SpawnedDaemon, spawn_daemon
from clients.stress.checker import ANOMALY_KINDS, dmesg_kind
from clients.stress.commands import CD_TRACING
from clients.stress.config import BootSpec

_UNDERFLOW = {("consistency", "missing reference"), ("dmesg", "WARNING")}
_REPORT_LINE = re.compile(r"\] (WARNING: .*|BUG: .*)$", re.MULTILINE)
#: A frame of a report's call trace: `` [<ffffffff810c4f28>] ftrace_hash_move+0x28/0x1d0``.
_FRAME = re.compile(r"\] +\[<[0-9a-f]+>\] ([\w.]+)\+0x")
#: The failpoints a task passes when it finds a mutex held, before it sleeps on it
#: (kernel_daemon.mutex): ftrace_lock, and trace_types_lock, which a tracer switch holds
#: through its code update. In an interleaving's replay only the held step can hold them,
#: so a racing step that pauses at one of them cannot finish while the other is held: the
#: daemon says so, where a step slow to finish says nothing. Not module_mutex's: no
#: failpoint sits inside module_mutex (the module notifiers, where ftrace's sites are, run
#: outside it, as in 3.6), so a held step never holds it.
CONTENDED = tuple(f"__mutex_lock_slowpath:{lock}" for lock in ("ftrace_lock", "trace_types_lock"))
#: A safety net, not a verdict: how long a step may take to reach a failpoint, to finish,
#: or to be released. Steps take milliseconds; the longest wait in a step's own path is a
#: modprobe's for a symbol of a module still loading (resolve_symbol_wait(), 30 s), after
#: which it fails and so finishes. A step neither paused nor ended by then counts as one
#: that could not finish: so would one that waits for the held step other than on the
#: locks of :data:`CONTENDED` (ftrace_profile_lock, which no stress command takes).
STEP_TIMEOUT = 60.0
#: One round of WaitFailpoint calls, one a site: short, so a step that finishes without
#: ever reaching the failpoints is noticed soon.
_WAIT_SLICE = 0.2
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ReplayRebooted(Exception):
    """The replay's daemon rebooted under it (someone's ``Kernel.Reboot``): what it showed
    is not of the kernel the commands ran on."""


@dataclass
class Observation:
    """What a replay showed: the log's reports and the consistency check's anomalies,
    each kind with the number of commands run when it was first seen; all of one boot."""

    reports: list[str] = field(default_factory=list)  # "WARNING: at ...", "BUG: KASAN: ..."
    # The check's anomalies: (message, module, after how many commands first seen).
    anomalies: list[tuple[str, str, int]] = field(default_factory=list)
    kinds: dict[tuple[str, str], int] = field(default_factory=dict)  # (source, kind) -> step
    # Each report's call trace, innermost first (a report is the same line whatever the
    # path to it: a WARN in __ftrace_hash_rec_update is reached by every hash walk).
    traces: dict[str, list[str]] = field(default_factory=dict)
    # The boot it is of: the replay's, taken before its first command; look() refuses another.
    boot_id: int = 0

    def first(self, source: str, kind: str) -> int | None:
        """After how many commands it was first seen, or None. An shm anomaly is the
        check's kind; a missing reference and the kernel's WARN are one (the WARN is
        how the kernel sees a missing reference, once its ops is disabled)."""
        wanted = {("consistency" if source == "shm" else source, kind)}
        if wanted & _UNDERFLOW:
            wanted = _UNDERFLOW
        return min((self.kinds[k] for k in wanted if k in self.kinds), default=None)

    def module_at(self, step: int | None) -> str:
        """The module of the first anomaly the check saw by that step ("" for none)."""
        return next((module for _, module, seen in self.anomalies
                     if step is not None and seen <= step), "")

    def shows_exactly(self, source: str, kind: str) -> bool:
        return (source, kind) in self.kinds

    def shows(self, source: str, kind: str) -> bool:
        return self.first(source, kind) is not None

    @property
    def any(self) -> bool:
        return bool(self.kinds)

    def summary(self) -> str:
        shown = self.reports[:1] + [message for message, _, _ in self.anomalies[:1]]
        return "; ".join(shown) if shown else "no anomaly"

    def look(self, client: Client, step: int) -> None:
        """Look at the kernel after ``step`` commands. Raises ReplayRebooted when the
        check's kernel is not the replay's boot; when it is, so was the log's, read
        between the two (boot ids only grow)."""
        log = client.dmesg()
        report = client.check_consistency()
        if report.boot_id != self.boot_id:
            raise ReplayRebooted(f"the replay's daemon rebooted under it (boot {self.boot_id}, "
                                 f"then {report.boot_id}): not the run's doing")
        for match in _REPORT_LINE.finditer(log):
            message = match.group(1)
            if message not in self.reports:
                self.reports.append(message)
                self.kinds.setdefault(("dmesg", dmesg_kind(message)), step)
                self.traces[message] = call_trace(log[match.end():].splitlines()[1:])
        known = {message for message, _, _ in self.anomalies}
        for anomaly in report.anomalies:
            if anomaly.message not in known:
                self.anomalies.append((anomaly.message, anomaly.module, step))
                self.kinds.setdefault(
                    ("consistency", ANOMALY_KINDS.get(anomaly.kind, "anomaly")), step)


def call_trace(lines: list[str]) -> list[str]:
    """The functions of the call trace in a report's lines (its first line left out),
    innermost first, up to the report's end."""
    frames = []
    for line in lines:
        if _REPORT_LINE.search(line) or line.rstrip().endswith("]---"):
            break
        frame = _FRAME.search(line)
        if frame:
            frames.append(frame.group(1))
    return frames


def warn_path(trace: list[str]) -> str:
    """Where a WARN was reached from: the two callers of the function that warned
    (``ftrace_hash_move <- ftrace_regex_release``), "" when the trace has none."""
    callers = [frame for frame in trace if not frame.startswith("warn_slowpath")][1:3]
    return " <- ".join(callers)


def run_script(client: Client, commands: list[str],
               after_each: Callable[[int], None] | None = None) -> None:
    """Run commands as ``ftrace-shell`` runs a script (from the tracing directory);
    ``after_each(n)`` is called once n commands have run."""
    shell = Shell(client, mode="script", script="repro.sh", stdout=BufferOutput(),
                  stderr=BufferOutput())
    try:
        shell.feed(CD_TRACING)
        for step, command in enumerate(commands, 1):
            shell.feed(command)
            if after_each is not None:
                after_each(step)
        shell.finish()
    except ShellExit:
        pass


class Replayer:
    """Fresh daemons booted with ``boot``, and the replays run on them."""

    def __init__(self, boot: BootSpec) -> None:
        self.boot = boot
        self.replays = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawn")
        self._next: Future[SpawnedDaemon] | None = None
        # Every daemon asked for, stopped at close() whatever became of it: one booting,
        # or handed over, when a Ctrl-C or SIGTERM cut the search short would otherwise
        # run on until this process's exit closed its lifeline.
        self._spawned: list[Future[SpawnedDaemon]] = []

    def _spawn(self) -> Future[SpawnedDaemon]:
        future = self._executor.submit(spawn_daemon, self.boot.argv)
        self._spawned.append(future)
        return future

    def _fresh(self) -> SpawnedDaemon:
        future = self._next or self._spawn()
        self._next = self._spawn()
        self.replays += 1
        return future.result()

    def close(self) -> None:
        """Stop every daemon: those not booting yet are not booted; the others, once up
        (SpawnedDaemon.stop() is idempotent: those stopped already stay so)."""
        self._executor.shutdown(cancel_futures=True)
        for future in self._spawned:
            if not future.cancelled() and future.exception() is None:
                future.result().stop()
        self._spawned.clear()
        self._next = None

    def __enter__(self) -> "Replayer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _client(self, daemon: SpawnedDaemon) -> Client:
        return Client(daemon.address, Identity(os.getpid(), "bash"))

    def sequential(self, commands: list[str], each: bool = True) -> Observation:
        """Run the commands one after the other, looking at the kernel after each one
        (``each``) or only at the end."""
        with self._fresh() as daemon, self._client(daemon) as client:
            seen = Observation(boot_id=client.stats().boot_id)
            run_script(client, commands, (lambda step: seen.look(client, step)) if each else None)
            seen.look(client, len(commands))
        return seen

    def interleaving(self, prefix: list[str], held: str, racing: str, site: str,
                     after: list[str]) -> Observation | None:
        """Run ``prefix``; then ``held`` until it pauses at ``site``; ``racing`` while it
        is held; release; once both are done, ``after``. None when ``held`` never reached
        ``site``, or ``racing`` could not finish while ``held`` was paused: the daemon
        shows it waiting for a lock (:data:`CONTENDED`), or it neither finished nor
        waited so within :data:`STEP_TIMEOUT`."""
        with (self._fresh() as daemon, self._client(daemon) as first,
              self._client(daemon) as second):
            seen = Observation(boot_id=first.stats().boot_id)
            run_script(first, prefix)
            first.set_failpoint(site, "1*pause")
            held_step = _Step(first, held)
            if _pauses(second, (site,), held_step) is not True:
                first.set_failpoint(site, "off")
                held_step.join(STEP_TIMEOUT)
                return None
            for lock in CONTENDED:
                second.set_failpoint(lock, "1*pause")
            racing_step = _Step(second, racing)
            contended = _pauses(second, CONTENDED, racing_step)
            boot = self.boot.failpoints()
            # The boot's own spec for each, if any, again ("": disarmed).
            for lock in CONTENDED:
                second.set_failpoint(lock, boot.get(lock, ""))
            if contended:  # it goes on to sleep on the lock, until the held step lets it go
                for lock in CONTENDED:
                    second.release_failpoint(lock)
            second.release_failpoint(site)
            held_step.join(STEP_TIMEOUT)
            racing_step.join(STEP_TIMEOUT)
            if contended is not False:
                return None
            run_script(second, after)
            seen.look(second, 2 + len(after))
            return seen


class _Step(threading.Thread):
    """One shell command on a connection of its own, on a thread."""

    def __init__(self, client: Client, command: str) -> None:
        super().__init__(daemon=True, name="replay-step")
        self.client, self.command = client, command
        self.start()

    def run(self) -> None:
        run_script(self.client, [self.command])


def _pauses(client: Client, sites: tuple[str, ...], step: threading.Thread) -> bool | None:
    """Whether ``step`` pauses at one of ``sites`` (each armed to pause once): True once it
    is paused there, False once it ended without getting there, None if neither within
    :data:`STEP_TIMEOUT`."""
    deadline = time.monotonic() + STEP_TIMEOUT
    in_turn = itertools.cycle(sites)
    while time.monotonic() < deadline:
        try:
            client.wait_failpoint(next(in_turn), timeout=_WAIT_SLICE / len(sites))
            return True
        except FtraceError as error:
            if error.errno != errno.ETIMEDOUT:
                raise
        if not step.is_alive():
            return False
    return None


def confirm_with_shell(script_path: str, boot: BootSpec, expect: str) -> tuple[bool, str]:
    """Run the script as a user would, ``ftrace-shell --spawn BOOT repro.sh``: confirmed
    when it exits 0 (its last command is a grep of dmesg) and printed ``expect``."""
    argv = [sys.executable, "-m", "clients.shell", "--spawn", *boot.argv,
            os.path.basename(script_path)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (_REPO_ROOT, env.get("PYTHONPATH"))))
    env.pop("FTRACED_ADDRESS", None)
    done = subprocess.run(argv, cwd=os.path.dirname(os.path.abspath(script_path)), env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    return done.returncode == 0 and expect in done.stdout, done.stdout + done.stderr
