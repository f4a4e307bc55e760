"""A private, ephemeral ftraced for one run: its own unix socket in a fresh directory.

``spawn_daemon(["--variant", "buggy"])`` (or ``spawn_daemon({"variant": "buggy"})``) starts
``python -m kernel_daemon --listen unix:DIR/ftraced.sock ...``, waits until the gRPC health
service says SERVING, and returns a :class:`SpawnedDaemon`; ``stop()`` (or leaving its
``with`` block) ends it with SIGTERM (SIGKILL if it does not go) and removes the directory.
Used by ``ftrace-shell --spawn``, the demo and the test fixtures.

The daemon does not outlive the process that started it, however that process ends
(SIGKILL included): it holds a pipe's read end (``ftraced --lifeline``) whose write end
only this process has, and when that reads end of file it shuts down as on SIGTERM and
removes the directory itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Mapping, Sequence

import grpc
from grpc_health.v1 import health_pb2

from clients.api import Client
from clients.connection import SOCKET_NAME, Connection
from clients.identity import Identity
from clients.procfs import process_cpu_seconds

__all__ = ["SpawnError", "SpawnedDaemon", "daemon_argv", "spawn_daemon"]

#: The package the daemon runs as (``python -m kernel_daemon``).
DAEMON_MODULE = "kernel_daemon"
#: The repository root: the child imports kernel_daemon from it even without an install.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: sockaddr_un.sun_path holds 107 bytes of path.
_UNIX_PATH_MAX = 107
#: Reconnect quickly while the daemon starts (gRPC's default first backoff is 1 s).
_FAST_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.min_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 100),
)
#: How long one readiness probe blocks before the loop looks at the process again.
_PROBE_SECONDS = 0.2
#: How many times its timeout a start that keeps using a little CPU is waited for, at most,
#: by the wall clock (20: a start at load 20 on 2 cores took some 14 times its CPU).
_WALL_TIMEOUTS = 20


class SpawnError(RuntimeError):
    """The daemon exited or did not become ready; ``log`` holds what it printed."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message + (f"\n--- ftraced log ---\n{log.rstrip()}" if log else ""))
        self.log = log


def daemon_argv(options: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """Daemon command-line options from a list (returned as is) or a mapping.

    Mapping keys are option names with ``_`` for ``-`` (``core_functions=512`` ->
    ``--core-functions 512``); a list or tuple value repeats the option
    (``race=["load-count"]``); a mapping value gives NAME=SPEC pairs
    (``failpoint={"ftrace_update_code:before_count": "1*pause"}``); True gives the bare
    flag; None or False leaves the option out.
    """
    if not isinstance(options, Mapping):
        return [str(option) for option in options]
    argv: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, Mapping):
            for name, spec in value.items():
                argv += [flag, f"{name}={spec}"]
        elif isinstance(value, (list, tuple)):
            for item in value:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(value)]
    return argv


class SpawnedDaemon:
    """A running private daemon. ``address`` is what clients connect to."""

    def __init__(
        self, process: subprocess.Popen, directory: str, address: str, log_path: str | None,
        lifeline: int,
    ) -> None:
        self.process = process
        self.directory = directory
        self.address = address
        self.log_path = log_path
        #: The write end of the daemon's lifeline, closed when the daemon has been stopped.
        self.lifeline = lifeline
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        """What the daemon printed so far ("" when its stderr was inherited)."""
        if self.log_path is None:
            return ""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                return log.read()
        except OSError:
            return ""

    def connect(self, identity: Identity | None = None) -> Client:
        """A :class:`Client` of this daemon."""
        return Client(self.address, identity)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to ``timeout`` s, else SIGKILL; remove the directory.

        Returns the exit status (negative: killed by that signal). Idempotent. A Ctrl-C
        (or a signal made KeyboardInterrupt) during the wait SIGKILLs the daemon, reaps
        it and removes the directory before it goes on: not reaped, the daemon would
        outlive its stopper.
        """
        if self.returncode is not None:
            return self.returncode
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except BaseException as error:  # too slow, or interrupted: reaped either way
                    self.process.kill()
                    self.process.wait()
                    if not isinstance(error, subprocess.TimeoutExpired):
                        raise
        finally:
            if self.process.returncode is not None:  # else a second interrupt: stop() again
                self.returncode = self.process.returncode
                os.close(self.lifeline)
                shutil.rmtree(self.directory, ignore_errors=True)
        return self.returncode

    def __enter__(self) -> "SpawnedDaemon":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SpawnedDaemon(pid={self.pid}, address={self.address!r})"


def _socket_directory(socket_dir: str | None) -> str:
    # The socket path must fit sun_path: fall back to /tmp when $TMPDIR is deep.
    parent = socket_dir or tempfile.gettempdir()
    room = _UNIX_PATH_MAX - len(os.fsencode(SOCKET_NAME)) - len("/ftsim-XXXXXXXX/")
    if socket_dir is None and len(os.fsencode(parent)) > room:
        parent = "/tmp"
    directory = tempfile.mkdtemp(prefix="ftsim-", dir=parent)
    os.chmod(directory, 0o700)
    return directory


def _serving(daemon: SpawnedDaemon, connection: Connection, probe: float) -> bool:
    """One health probe of at most ``probe`` seconds: True once the server says SERVING.

    A unary Check, not Watch: a Watch is a stream, which holds one of the daemon's stream
    slots until the daemon sees it cancelled, after spawn_daemon has returned, so a caller
    counting ``Kernel.Stats.streams`` at once could find the probe's among its own. The
    probe waits for the connection itself (``wait_for_ready``) rather than through
    ``grpc.channel_ready_future``, whose polling thread outlives the wait: closing the
    channel under it made that thread raise "Cannot monitor channel state: Channel
    closed!", a warning in whichever test spawned the daemon. An answer other than
    SERVING is waited out to the probe's end, unless the daemon dies."""
    request = health_pb2.HealthCheckRequest(service="")
    ends = time.monotonic() + probe
    try:
        if connection.health.Check(request, timeout=probe, wait_for_ready=True).status == \
                health_pb2.HealthCheckResponse.SERVING:
            return True
    except grpc.RpcError:
        pass
    try:
        daemon.process.wait(max(0.0, ends - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    return False


def _wait_serving(daemon: SpawnedDaemon, timeout: float) -> None:
    """Block until the daemon's health service says SERVING.

    ``timeout`` bounds the daemon's own work, not the wall clock: the daemon is given up
    on once it has used ``timeout`` seconds of CPU without serving (a start that loops),
    or used none for ``timeout`` seconds (a start that blocks). A start needs about a
    second of CPU, which on a machine with many more runnable processes than cores takes
    longer than any wall-clock bound: with 20 runnable on 2 cores a 2048-function daemon
    served after 14 s, and one of 512 functions was given up on at 30 s, still starting.
    Where ``/proc`` gives no CPU time the daemon counts as using none: ``timeout`` is then
    the wall clock's. A start that only ever uses a little (a thread woken now and then
    while the rest waits) is given up on after :data:`_WALL_TIMEOUTS` timeouts of the
    wall clock all the same.

    Each probe blocks at most _PROBE_SECONDS, so a daemon that dies is seen at once.
    """
    used = process_cpu_seconds(daemon.pid) or 0.0
    idle_since = time.monotonic()
    backstop = idle_since + _WALL_TIMEOUTS * timeout
    with Connection(daemon.address, options=_FAST_RECONNECT) as connection:
        while True:
            if daemon.process.poll() is not None:
                raise SpawnError(
                    f"ftraced exited with status {daemon.process.returncode} while starting",
                    daemon.log_text(),
                )
            now = time.monotonic()
            cpu = process_cpu_seconds(daemon.pid)
            if cpu is not None and cpu > used:
                used, idle_since = cpu, now
            if used >= timeout:
                raise SpawnError(f"ftraced not serving after {timeout:g}s of CPU",
                                 daemon.log_text())
            if now - idle_since >= timeout:
                raise SpawnError(f"ftraced not serving, and using no CPU for {timeout:g}s",
                                 daemon.log_text())
            if now >= backstop:
                raise SpawnError(f"ftraced not serving after {_WALL_TIMEOUTS * timeout:g}s",
                                 daemon.log_text())
            if _serving(daemon, connection, _PROBE_SECONDS):
                return


def spawn_daemon(
    options: Sequence[str] | Mapping[str, Any] = (),
    socket_dir: str | None = None,
    *,
    timeout: float = 30.0,
    verbose: bool = False,
) -> SpawnedDaemon:
    """Start a private daemon and wait until it serves.

    ``options``: daemon options as for :func:`daemon_argv`. ``socket_dir``: where to
    create the daemon's directory (default the temporary directory). ``verbose``: the
    daemon's stderr goes to ours instead of a log file in its directory. Raises
    :class:`SpawnError` (with the daemon's log) if it exits, or is not serving after
    ``timeout`` seconds of its CPU or ``timeout`` seconds in which it used none.
    """
    directory = _socket_directory(socket_dir)
    address = "unix:" + os.path.join(directory, SOCKET_NAME)
    # Not inheritable (PEP 446): no other child of ours holds the write end open.
    lifeline_r, lifeline_w = os.pipe()
    argv = [sys.executable, "-m", DAEMON_MODULE, "--listen", address,
            "--lifeline", str(lifeline_r), "--lifeline-dir", directory, *daemon_argv(options)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (_REPO_ROOT, env.get("PYTHONPATH"))))
    log_path = None if verbose else os.path.join(directory, "ftraced.log")
    try:
        log = None if log_path is None else open(log_path, "wb")
        try:
            # Its own process group: a Ctrl-C meant for an interactive shell must not
            # reach the daemon, which the shell stops itself.
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log if log is not None else subprocess.DEVNULL,
                stderr=log,
                env=env,
                process_group=0,
                pass_fds=(lifeline_r,),
            )
        finally:
            if log is not None:
                log.close()
    except BaseException:
        os.close(lifeline_w)
        shutil.rmtree(directory, ignore_errors=True)
        raise
    finally:
        os.close(lifeline_r)  # the daemon has its own copy
    daemon = SpawnedDaemon(process, directory, address, log_path, lifeline_w)
    try:
        _wait_serving(daemon, timeout)
    except BaseException as error:
        log_text = daemon.log_text()
        daemon.stop()
        if isinstance(error, SpawnError) or not log_text:
            raise
        raise SpawnError(f"ftraced failed to start: {error}", log_text) from error
    return daemon
