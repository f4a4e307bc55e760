"""A set_ftrace_filter write paused with ``ftrace_lock`` held (at
``ftrace_hash_move:after_disable``, between the disable and the enable pass): what the
tests of a wait for that lock (Ctrl-C in it, the notice saying what it waits for) stand
behind."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from clients.api import Client
from tests.test_tracer_client import DEADLINE, TRACING

AFTER_DISABLE = "ftrace_hash_move:after_disable"


@contextlib.contextmanager
def ftrace_lock_held(client: Client, writer: Client | None = None) -> Iterator[threading.Thread]:
    """For the ``with`` block, ``writer`` (``client`` if None) writing ``vfs_read`` to
    set_ftrace_filter, paused holding ftrace_lock; ``client`` arms, waits for and releases
    the failpoint. Yields the writing thread, joined after the release."""
    client.set_failpoint(AFTER_DISABLE, "1*pause")
    thread = threading.Thread(target=(writer or client).write_file,
                              args=(f"{TRACING}/set_ftrace_filter", "vfs_read\n"))
    thread.start()
    try:
        client.wait_failpoint(AFTER_DISABLE, timeout=DEADLINE)
        yield thread
    finally:
        client.release_failpoint(AFTER_DISABLE)
        thread.join(DEADLINE)
