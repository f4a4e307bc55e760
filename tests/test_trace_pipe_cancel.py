"""A cancelled ``cat trace_pipe`` consumes nothing more: its reader, woken by the cancel as
a blocked ``tracing_wait_pipe()`` is by a signal, returns EINTR without taking an event,
so what is written after the cancel is there for the next reader."""

from __future__ import annotations

import threading

from clients.api import Client
from clients.errors import FtraceError
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.test_tracer_client import DEADLINE, TRACING

# Each round is a race the old reader (alive for up to 0.25 s after the cancel, taking
# any event written meanwhile) lost about four times in five.
ROUNDS = 50


def function_tracer_on_vfs_read(client: Client) -> None:
    client.write_file(f"{TRACING}/set_ftrace_filter", "vfs_read\n")
    client.write_file(f"{TRACING}/current_tracer", "function")


def test_events_written_after_a_cancel_stay_for_the_next_reader(daemon):
    client = daemon.connect()
    function_tracer_on_vfs_read(client)
    for round_ in range(ROUNDS):
        client.trace_pipe().cancel()
        client.invoke("vfs_read", "sys_read", repeat=3)
        left = b"".join(client.trace_pipe(nonblock=True))
        assert left.count(b"vfs_read <-sys_read") == 3, f"round {round_}: {left!r}"


def test_the_next_trace_pipe_gets_the_next_event(daemon):
    client = daemon.connect()
    function_tracer_on_vfs_read(client)
    for round_ in range(ROUNDS):
        client.trace_pipe().cancel()
        with client.trace_pipe() as pipe:
            chunks = iter(pipe)
            got: list[bytes] = []

            def read_one() -> None:
                try:
                    got.append(next(chunks))
                except FtraceError:  # the cancel below, after a failed wait
                    pass

            reader = threading.Thread(target=read_one)
            reader.start()
            client.invoke("vfs_read", "sys_read")
            reader.join(DEADLINE)
            pipe.cancel()
            reader.join(DEADLINE)
        assert got and b"vfs_read <-sys_read" in got[0], f"round {round_}: no event came"
