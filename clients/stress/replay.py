"""Replaying candidate reproducers, each on a fresh private daemon with the run's boot
options, and looking at what the kernel then shows.

A sequential candidate is run by an ``ftrace-shell`` (the :class:`~clients.shell.Shell`
of ``ftrace-shell``, in this process) as a script; an interleaving by two shells on two
connections, the first held at a failpoint while the second runs. Daemons are started
one ahead, in the background, while the previous replay runs.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
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

_REPORT_LINE = re.compile(r"\] (WARNING: .*|BUG: .*)$", re.MULTILINE)
#: How long an interleaving's first command may take to reach its failpoint, and the
#: second to finish while the first is held: a step that takes longer is waiting for a
#: lock the held one owns, so that interleaving cannot happen.
STEP_TIMEOUT = 5.0
#: One WaitFailpoint call: short, so a first command that finishes without ever reaching
#: the failpoint is noticed soon.
_WAIT_SLICE = 0.2
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class Observation:
    """What a replay left: the log's reports and the consistency check's anomalies."""

    reports: list[str] = field(default_factory=list)  # "WARNING: at ...", "BUG: KASAN: ..."
    anomalies: list[str] = field(default_factory=list)  # the check's messages
    kinds: set[tuple[str, str]] = field(default_factory=set)  # (source, kind)

    def shows(self, source: str, kind: str) -> bool:
        """Whether it shows an anomaly of that kind (an shm anomaly is the check's kind)."""
        return (("consistency" if source == "shm" else source), kind) in self.kinds

    @property
    def any(self) -> bool:
        return bool(self.kinds)

    def summary(self) -> str:
        shown = self.reports[:1] + self.anomalies[:1]
        return "; ".join(shown) if shown else "no anomaly"


def observe(client: Client) -> Observation:
    seen = Observation()
    for message in _REPORT_LINE.findall(client.dmesg()):
        seen.reports.append(message)
        seen.kinds.add(("dmesg", dmesg_kind(message)))
    for anomaly in client.check_consistency().anomalies:
        seen.anomalies.append(anomaly.message)
        seen.kinds.add(("consistency", ANOMALY_KINDS.get(anomaly.kind, "anomaly")))
    return seen


def run_script(client: Client, commands: list[str]) -> None:
    """Run commands as ``ftrace-shell`` runs a script (from the tracing directory)."""
    shell = Shell(client, mode="script", script="repro.sh", stdout=BufferOutput(),
                  stderr=BufferOutput())
    try:
        shell.feed_all([CD_TRACING, *commands])
    except ShellExit:
        pass


class Replayer:
    """Fresh daemons booted with ``boot``, and the replays run on them."""

    def __init__(self, boot: BootSpec) -> None:
        self.boot = boot
        self.replays = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawn")
        self._next: Future[SpawnedDaemon] | None = None

    def _fresh(self) -> SpawnedDaemon:
        future = self._next or self._executor.submit(spawn_daemon, self.boot.argv)
        self._next = self._executor.submit(spawn_daemon, self.boot.argv)
        self.replays += 1
        return future.result()

    def close(self) -> None:
        if self._next is not None:
            self._next.result().stop()
            self._next = None
        self._executor.shutdown()

    def __enter__(self) -> "Replayer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _client(self, daemon: SpawnedDaemon) -> Client:
        return Client(daemon.address, Identity(os.getpid(), "bash"))

    def sequential(self, commands: list[str]) -> Observation:
        """Run the commands one after the other, then observe."""
        with self._fresh() as daemon, self._client(daemon) as client:
            run_script(client, commands)
            return observe(client)

    def interleaving(self, prefix: list[str], held: str, racing: str,
                     site: str) -> Observation | None:
        """Run ``prefix``; then ``held`` until it pauses at ``site``; ``racing`` while it
        is held; release. None when ``held`` never reached ``site``, or ``racing``
        could not finish while ``held`` was paused."""
        with (self._fresh() as daemon, self._client(daemon) as first,
              self._client(daemon) as second):
            run_script(first, prefix)
            first.set_failpoint(site, "1*pause")
            held_step = _Step(first, held)
            if not _paused(second, site, held_step):
                first.set_failpoint(site, "off")
                held_step.join(STEP_TIMEOUT)
                return None
            racing_step = _Step(second, racing)
            racing_step.join(STEP_TIMEOUT)
            finished = not racing_step.is_alive()
            second.release_failpoint(site)
            held_step.join(STEP_TIMEOUT)
            racing_step.join(STEP_TIMEOUT)
            return observe(second) if finished else None


class _Step(threading.Thread):
    """One shell command on a connection of its own, on a thread."""

    def __init__(self, client: Client, command: str) -> None:
        super().__init__(daemon=True, name="replay-step")
        self.client, self.command = client, command
        self.start()

    def run(self) -> None:
        run_script(self.client, [self.command])


def _paused(client: Client, site: str, step: threading.Thread) -> bool:
    """Whether ``step`` is held at ``site``; False when it ended without getting there."""
    waited = 0.0
    while waited < STEP_TIMEOUT:
        try:
            client.wait_failpoint(site, timeout=_WAIT_SLICE)
            return True
        except FtraceError as error:
            if error.errno != errno.ETIMEDOUT:
                raise
        if not step.is_alive():
            return False
        waited += _WAIT_SLICE
    return False


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
