"""kernel_daemon.rpc.readers.StreamReaders: the reader threads both ends of Tracer.Attach keep."""

from __future__ import annotations

import os
import threading

from kernel_daemon.rpc.readers import StreamReaders

DEADLINE = 30


def test_a_forked_child_starts_its_own_reader():
    """The pool's idle thread stayed in the parent: a child's job starts a thread of the
    child's, where it waited in the queue for good."""
    readers = StreamReaders("test-readers")
    readers.start(lambda: None).wait(DEADLINE)  # one idle thread, in the parent
    answer_r, answer_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only os._exit() leaves it, whatever happens
        try:
            ran = threading.Event()
            readers.start(ran.set)
            os.write(answer_w, b"ran" if ran.wait(DEADLINE) else b"never ran")
        finally:
            os._exit(0)
    os.close(answer_w)
    try:
        with os.fdopen(answer_r, "rb") as answer:
            assert answer.read() == b"ran"
    finally:
        os.waitpid(pid, 0)
    ran = threading.Event()
    readers.start(ran.set)
    assert ran.wait(DEADLINE)
