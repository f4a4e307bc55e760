"""Pytest fixtures: a real ftraced per test, on its own unix socket.

Import them into a test module (``from tests.daemon_fixture import daemon, spawn``):

- ``daemon``: a :class:`clients.spawn.SpawnedDaemon` with the default options;
- ``spawn``: a factory, ``spawn(["--variant", "buggy"])`` or ``spawn({"variant": "buggy"})``,
  for daemons with options of the test's choosing (as many as it likes).

Every daemon has a private socket directory, so tests run in parallel under pytest-xdist.
At teardown each daemon is stopped (SIGTERM) and must have exited cleanly, leaving
nothing in /dev/shm (its segments are named ``ftsim.<pid>.*``).
"""

from __future__ import annotations

import glob
from typing import Any, Callable, Iterator, Mapping, Sequence

import pytest

from clients.spawn import SpawnedDaemon, spawn_daemon

__all__ = ["daemon", "spawn"]

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
