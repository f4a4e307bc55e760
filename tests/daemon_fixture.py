"""Pytest fixtures: a real ftraced per test, on its own unix socket.

Import them into a test module (``from tests.daemon_fixture import daemon, spawn``):

- ``daemon``: a :class:`clients.spawn.SpawnedDaemon` with the default options;
- ``spawn``: a factory, ``spawn(["--variant", "buggy"])`` or ``spawn({"variant": "buggy"})``,
  for daemons with options of the test's choosing (as many as it likes);
- :func:`in_process`: an ftraced run in the test's own process, for a test that reaches
  into its kernel between the calls it makes over the socket.

Every daemon has a private socket directory, so tests run in parallel under pytest-xdist.
At teardown each daemon is stopped (SIGTERM) and must have exited cleanly, leaving
nothing in /dev/shm (its segments are named ``ftsim.<pid>.*``).
"""

from __future__ import annotations

import contextlib
import gc
import glob
import os
from typing import Any, Callable, Iterator, Mapping, Sequence

import pytest

from clients.spawn import SpawnedDaemon, spawn_daemon
from kernel_daemon.kernel import BootOptions
from kernel_daemon.rpc.server import Daemon
from kernel_daemon.rpc.state import DaemonState

__all__ = ["daemon", "in_process", "spawn"]

DaemonOptions = Sequence[str] | Mapping[str, Any]


def _stop_and_check(spawned: SpawnedDaemon) -> None:
    log = spawned.log_text()  # read before stop() removes the directory
    status = spawned.stop()
    leftovers = glob.glob(f"/dev/shm/ftsim.{spawned.pid}.*")
    assert status == 0, f"ftraced exited with status {status}\n{log}"
    assert not leftovers, f"ftraced left shared memory behind: {leftovers}"


@pytest.fixture
def spawn() -> Iterator[Callable[..., SpawnedDaemon]]:
    """A factory of private daemons; all of them are stopped and checked after the test."""
    started: list[SpawnedDaemon] = []

    def factory(options: DaemonOptions = (), **kwargs: Any) -> SpawnedDaemon:
        spawned = spawn_daemon(options, **kwargs)
        started.append(spawned)
        return spawned

    yield factory
    errors = []
    for spawned in started:
        try:
            _stop_and_check(spawned)
        except AssertionError as error:
            errors.append(str(error))
    assert not errors, "\n".join(errors)


@pytest.fixture
def daemon(spawn: Callable[..., SpawnedDaemon]) -> SpawnedDaemon:
    """A private daemon with the default options (variant fixed)."""
    return spawn()


@contextlib.contextmanager
def in_process(directory: str | os.PathLike[str]) -> Iterator[tuple[Daemon, DaemonState]]:
    """The server, the services and the kernel of ``python -m kernel_daemon`` (a small
    kernel), run in this process on a unix socket in ``directory``: the daemon, and its
    state (``state.boot.kernel``). Stopped at the end, leaving nothing in /dev/shm."""
    daemon = Daemon(f"unix:{directory}/ftraced.sock")
    try:
        state = DaemonState(BootOptions(core_functions=2000))
        daemon.start(state)
        yield daemon, state
    finally:
        daemon.stop()
        gc.unfreeze()  # DaemonState froze this process's objects, as it does the daemon's
    assert glob.glob(f"/dev/shm/ftsim.{os.getpid()}.*") == []
