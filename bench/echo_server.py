"""The RPC baseline: a bare gRPC echo server with ftraced's server settings.

``python -m bench.echo_server --listen unix:PATH|HOST:PORT`` serves ``bench.Echo``:

- ``Unary``: a unary call answering its request (a ``BytesValue``);
- ``PingPong``: a bidirectional stream answering each request as it comes.

The server is built by :func:`kernel_daemon.rpc.server.new_grpc_server`, the function
ftraced builds its own with (same thread pool, same options), and bound as ftraced binds
(:class:`kernel_daemon.rpc.listener.Listener`), with no health or reflection service and no
work behind the calls.  It prints ``ready`` once serving and stops on SIGTERM or when
its stdin closes.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator

import grpc
from google.protobuf import wrappers_pb2

from kernel_daemon.rpc.listener import Listener
from kernel_daemon.rpc.server import new_grpc_server

SERVICE = "bench.Echo"
UNARY = f"/{SERVICE}/Unary"
PING_PONG = f"/{SERVICE}/PingPong"
Message = wrappers_pb2.BytesValue


def unary(request: Message, context: grpc.ServicerContext) -> Message:
    return request


def ping_pong(requests: Iterator[Message], context: grpc.ServicerContext) -> Iterator[Message]:
    for request in requests:
        yield request


def handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Unary": grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=Message.FromString,
            response_serializer=Message.SerializeToString),
        "PingPong": grpc.stream_stream_rpc_method_handler(
            ping_pong, request_deserializer=Message.FromString,
            response_serializer=Message.SerializeToString),
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.echo_server")
    parser.add_argument("--listen", required=True)
    args = parser.parse_args(argv)
    server = new_grpc_server()
    server.add_generic_rpc_handlers((handler(),))
    listener = Listener(server, args.listen)
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def watch_stdin() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print("ready", flush=True)
    stop.wait()
    server.stop(0.5).wait()
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
