"""One client process of the RPC benchmarks, driven over its stdin/stdout.

``python -m bench.rpc_worker`` writes ``{"ready": true}`` once started, then reads one JSON
command per line and answers one JSON line:

- ``{"op": OP, "target": ADDRESS, "start": T, "duration": D}``: run OP in a loop, as fast
  as it goes, until ``time.monotonic()`` reaches T (warming up), then count the
  operations that complete in [T, T + D]; answers ``{"count": N, "calls": M, "cpu": S}``:
  N counted, M made in all (warm-up included), S seconds of this process's CPU
  (every thread's) while making them (an operation is one call of OP, or one round
  trip of ``attach_md``'s);
- ``{"op": "quit"}``.

OPs: ``read`` (``cat tracing_on``: one ``Tracefs.ReadFile``), ``session`` (``echo
schedule > set_ftrace_filter`` as a file session: open, one write, close), ``unary`` (the
echo server's unary call) and ``pingpong`` (its bidirectional stream: three round trips
and a half-close, as the session's open, write and close).  ``read`` and ``session`` go
through the same plain gRPC client code as ``unary`` and ``pingpong``, with the caller
identity as call metadata; ``unary_md`` and ``pingpong_md`` send the echo server that same
metadata, so that only the server differs; ``read_api`` and ``session_api`` make
ftraced's calls through the client library (``clients.api.Client``).  ``attach_md`` is a
stress tracer's ``Tracer.Attach`` session on the echo's stream, with that metadata: a
round trip for the register, then, unless the register is one of the refused
(``REFUSED``), one per set_filter (as many as ``TracerWorker.step`` makes on average)
and one for the unregister; then the half-close.  Each round trip counts as one
operation, as each of those is one operation of ``ftrace-stress``.

``time.monotonic()`` is CLOCK_MONOTONIC, the same clock in every process, so the workers'
windows line up.  Channels are opened once per target and kept, as a long-lived client
keeps its connection.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Callable

import grpc

from bench.echo_server import PING_PONG, UNARY, Message
from clients.api import Client, RequestQueue
from clients.connection import CHANNEL_OPTIONS, grpc_target
from clients.identity import Identity
from ftrace.v1 import tracefs_pb2

TRACING = "/sys/kernel/debug/tracing"
TRACING_ON = f"{TRACING}/tracing_on"
SET_FTRACE_FILTER = f"{TRACING}/set_ftrace_filter"
FILTER_FUNCTION = b"schedule\n"
READ_FILE = "/ftrace.v1.Tracefs/ReadFile"
SESSION = "/ftrace.v1.Tracefs/Session"
PING_PONGS = 3
PAYLOAD = b"1\n"
#: The chance that a stress tracer's next step on its session is a set_filter, not the
#: unregister (clients/stress/workers.py, TracerWorker.step: rolls below 0.65): 0.65 / 0.35
#: = 1.86 set_filters per session on average (as measured: bench/stress_throughput.py).
SET_FILTER = 0.65
#: The share of a stress tracer's registers the kernel refuses (EINVAL: a pattern that
#: matches no function, mostly one of a module not loaded), each a stream of that one
#: round trip. Not in the tracer's code but in the kernel's state: measured, 43% of the
#: registers of three runs (bench/stress_throughput.py).
REFUSED = 0.43


class Worker:
    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}
        self.channels: dict[str, grpc.Channel] = {}

    def client(self, target: str) -> Client:
        if target not in self.clients:
            self.clients[target] = Client(target, Identity.current("bench"))
        return self.clients[target]

    def channel(self, target: str) -> grpc.Channel:
        if target not in self.channels:
            self.channels[target] = grpc.insecure_channel(grpc_target(target),
                                                          options=list(CHANNEL_OPTIONS))
        return self.channels[target]

    def operation(self, op: str, target: str) -> Callable[[], object]:
        metadata = Identity.current("bench").metadata()
        if op == "read":
            read_file = self.channel(target).unary_unary(
                READ_FILE, request_serializer=tracefs_pb2.ReadFileRequest.SerializeToString,
                response_deserializer=tracefs_pb2.ReadFileResponse.FromString)
            request = tracefs_pb2.ReadFileRequest(path=TRACING_ON)
            return lambda: read_file(request, metadata=metadata)
        if op == "session":
            session_call = self.channel(target).stream_stream(
                SESSION, request_serializer=tracefs_pb2.FileRequest.SerializeToString,
                response_deserializer=tracefs_pb2.FileResponse.FromString)
            messages = (
                tracefs_pb2.FileRequest(open=tracefs_pb2.OpenRequest(
                    path=SET_FTRACE_FILTER, flags=os.O_WRONLY | os.O_TRUNC)),
                tracefs_pb2.FileRequest(write=tracefs_pb2.WriteRequest(data=FILTER_FUNCTION)),
                tracefs_pb2.FileRequest(close=tracefs_pb2.CloseRequest()),
            )

            def session() -> None:
                requests = RequestQueue()
                call = session_call(iter(requests), metadata=metadata)
                for message in messages:
                    requests.put(message)
                    response = next(call)
                    if response.HasField("error"):
                        raise RuntimeError(f"session: {response.error}")
                requests.end()
                for _ in call:
                    pass

            return session
        if op == "read_api":
            client = self.client(target)
            return lambda: client.read_file(TRACING_ON)
        if op == "session_api":
            client = self.client(target)

            def session_api() -> None:
                with client.open(SET_FTRACE_FILTER, os.O_WRONLY | os.O_TRUNC) as file:
                    file.write(FILTER_FUNCTION)

            return session_api
        if op in ("unary", "unary_md"):
            call = self.channel(target).unary_unary(
                UNARY, request_serializer=Message.SerializeToString,
                response_deserializer=Message.FromString)
            message = Message(value=PAYLOAD)
            if op == "unary_md":  # with the caller identity, as ftraced's calls have it
                return lambda: call(message, metadata=metadata)
            return lambda: call(message)
        if op in ("pingpong", "pingpong_md", "attach_md"):
            stream = self.channel(target).stream_stream(
                PING_PONG, request_serializer=Message.SerializeToString,
                response_deserializer=Message.FromString)
            message = Message(value=FILTER_FUNCTION)
            call_metadata = None if op == "pingpong" else metadata

            def pingpong(round_trips: int = PING_PONGS) -> None:
                requests = RequestQueue()
                call = stream(iter(requests), metadata=call_metadata)
                for _ in range(round_trips):
                    requests.put(message)
                    next(call)
                requests.end()
                for _ in call:
                    pass

            if op != "attach_md":
                return pingpong
            rng = random.Random(0)

            def attach() -> int:
                round_trips = 1  # the register
                if rng.random() >= REFUSED:
                    while rng.random() < SET_FILTER:
                        round_trips += 1
                    round_trips += 1  # the unregister
                pingpong(round_trips)
                return round_trips

            return attach
        raise ValueError(f"unknown op {op!r}")

    def run(self, op: str, target: str, start: float, duration: float) -> dict[str, float]:
        fn = self.operation(op, target)
        cpu_start = time.process_time()
        calls = operations(fn())  # connect before the window
        while time.monotonic() < start:
            calls += operations(fn())
        end = start + duration
        count = 0
        while True:
            made = operations(fn())
            calls += made
            if time.monotonic() > end:
                return {"count": count, "calls": calls, "cpu": time.process_time() - cpu_start}
            count += made


def operations(made: object) -> int:
    """The operations one call of an op's function made: one, unless it returned how
    many (``attach_md``: its round trips)."""
    return made if isinstance(made, int) else 1


def main() -> int:
    worker = Worker()
    print(json.dumps({"ready": True}), flush=True)  # imports done: the pool may measure
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            break
        try:
            answer = worker.run(command["op"], command["target"], command["start"],
                                command["duration"])
        except Exception as error:  # reported, not fatal: the runner records the failure
            answer = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
