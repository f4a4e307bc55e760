"""When a tracer stream's thread wakes to send hits (``TracerSession._next_request``):
for a full batch or for a partial one whose oldest hit is ``max_delay`` old, and not
otherwise. In-process, the session's stream and boot stood in for: what is checked is the
timeout of each wait, which no client can see."""

from __future__ import annotations

import queue
import threading
import time
from types import SimpleNamespace

from ftrace.v1 import tracer_pb2 as pb
from kernel_daemon.rpc.tracer_service import TracerSession
from kernel_daemon.task import Task

DEADLINE = 30.0


class NotedCondition(threading.Condition):
    """A Condition that notes the timeout of each wait begun on it."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: queue.Queue[float | None] = queue.Queue()

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.put(timeout)
        return super().wait(timeout)


def idle_session(max_delay: float) -> TracerSession:
    """A session whose stream sends nothing yet and whose boot goes on."""
    boot = SimpleNamespace(kernel=None, ended=False)
    context = SimpleNamespace(add_callback=lambda callback: True)
    readers = SimpleNamespace(start=lambda read: None)
    session = TracerSession(boot, Task(1, "init"), iter(()), context, readers)
    session.hits.cond = NotedCondition()
    session.max_delay = max_delay
    return session


def test_an_idle_stream_waits_without_a_timeout_until_a_hit_or_request_comes():
    """With no hit queued nothing is due: the wait has no timeout (it woke every
    max_delay, and 200 idle streams with max_delay_ms 1 kept the daemon's CPU busy). A
    hit starts the max_delay of its batch; a request ends the wait."""
    session = idle_session(max_delay=0.001)
    answers: queue.Queue[object] = queue.Queue()
    waiter = threading.Thread(target=lambda: answers.put(session._next_request()))
    waiter.start()
    try:
        assert session.hits.cond.timeouts.get(timeout=DEADLINE) is None
        session.max_delay = 600.0  # the hit's batch is then due in 10 minutes
        before = time.monotonic()
        session.hits.push(pb.Hit(function="vfs_read", count=1))
        timeout = session.hits.cond.timeouts.get(timeout=DEADLINE)
        assert timeout is not None and 0 < timeout <= 600.0
        assert session.hits.oldest is not None and session.hits.oldest >= before
        session._enqueue(pb.TracerRequest(flush=pb.FlushHits()))
        assert answers.get(timeout=DEADLINE).WhichOneof("op") == "flush"
    finally:
        session._enqueue(None)
        waiter.join(DEADLINE)
    assert not waiter.is_alive()


def test_a_partial_batch_is_due_max_delay_after_its_oldest_hit_not_after_the_wait_began():
    """The hit came max_delay ago: nothing to wait for, however recent the wait."""
    session = idle_session(max_delay=600.0)
    session.hits.push(pb.Hit(function="vfs_read", count=1))
    session.hits.oldest -= 600.0
    assert session._next_request() is None  # hits due
    assert session.hits.cond.timeouts.empty()
    batch, dropped = session.hits.take(session.max_batch)
    assert [hit.function for hit in batch] == ["vfs_read"] and dropped == 0
    assert session.hits.oldest is None
