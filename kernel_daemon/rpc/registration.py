"""How a servicer goes on the server: the generated ``add_*_to_server`` functions' work,
with what every call of the daemon needs around its method.

Each method counts its calls by full method name (``Kernel.Stats`` ``rpc_counts``), each
streaming method holds one of the daemon's stream slots for its life (common.proto
STREAMS; server reflection's, one of its own few), each unary method but the control
calls a slot of its limit while it runs (DaemonState.unary_slots_of), and a request
message that does not parse fails its call with EINVAL (INVALID_ARGUMENT), where gRPC
Python would answer INTERNAL and print a traceback. The wrappers go on the methods themselves: a
server interceptor would see every service, but it costs a light call some 6% of its rate.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass

from kernel_daemon.errno import KernelError
from kernel_daemon.rpc.state import CallSlots, DaemonState
from kernel_daemon.rpc.status import abort_with_errno

Behaviour = Callable[[Any, grpc.ServicerContext], Any]
HANDLER_KINDS = {(False, False): grpc.unary_unary_rpc_method_handler,
                 (False, True): grpc.unary_stream_rpc_method_handler,
                 (True, False): grpc.stream_unary_rpc_method_handler,
                 (True, True): grpc.stream_stream_rpc_method_handler}


class Malformed:
    """What a request message that does not parse deserializes to."""


MALFORMED = Malformed()


def malformed_error() -> KernelError:
    return KernelError(errno.EINVAL, "a request message that does not parse")


def add_servicer(server: grpc.Server, state: DaemonState, service: ServiceDescriptor,
                 servicer: object, slots: CallSlots | None = None) -> None:
    """Register ``servicer``'s methods of ``service`` on ``server``, as a registered
    method handler each (the fast path the generated code takes) and behind a generic
    handler of the service. Its streams hold ``slots`` (the daemon's stream slots unless
    given)."""
    slots = state.stream_slots if slots is None else slots
    handlers = {method.name: method_handler(state, service, method, servicer, slots)
                for method in service.methods}
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


def method_handler(state: DaemonState, service: ServiceDescriptor, method: MethodDescriptor,
                   servicer: object, slots: CallSlots) -> grpc.RpcMethodHandler:
    full_name = f"/{service.full_name}/{method.name}"
    behaviour = getattr(servicer, method.name)
    behaviour = (parsed_requests if method.client_streaming else parsed_request)(behaviour)
    if method.server_streaming:
        behaviour = holding_a_stream_slot(slots, behaviour)
    elif (unary_slots := state.unary_slots_of(full_name)) is not None:
        behaviour = holding_a_unary_slot(unary_slots, behaviour)
    behaviour = counted(state, full_name, behaviour)
    kind = HANDLER_KINDS[(method.client_streaming, method.server_streaming)]
    return kind(behaviour,
                request_deserializer=parsing(GetMessageClass(method.input_type).FromString),
                response_serializer=GetMessageClass(method.output_type).SerializeToString)


def parsing(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError:
            return MALFORMED
    return deserialize


def parsed_request(behaviour: Behaviour) -> Behaviour:
    def checked(request: Any, context: grpc.ServicerContext) -> Any:
        if request is MALFORMED:
            abort_with_errno(context, malformed_error())
        return behaviour(request, context)
    return checked


def parsed_requests(behaviour: Behaviour) -> Behaviour:
    """A streaming request's messages, each checked as it is read: the reader gets the
    EINVAL of one that does not parse (a Session ends with it; see Tracer.Attach)."""
    def checked(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        return behaviour(each_parsed(requests), context)
    return checked


def each_parsed(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        if request is MALFORMED:
            raise malformed_error()
        yield request


def counted(state: DaemonState, full_name: str, behaviour: Behaviour) -> Behaviour:
    # Returns what the behaviour returns: a response, or a streaming call's iterator.
    lock, counts = state.lock, state.rpc_counts

    def counting(request: Any, context: grpc.ServicerContext) -> Any:
        with lock:
            counts[full_name] += 1
        return behaviour(request, context)
    return counting


def holding_a_unary_slot(slots: CallSlots, behaviour: Behaviour) -> Behaviour:
    take, give_back = slots.take, slots.give_back

    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        if not take():
            abort_with_errno(context, slots.exhausted())
        try:
            return behaviour(request, context)
        finally:
            give_back()
    return unary


def holding_a_stream_slot(slots: CallSlots, behaviour: Behaviour) -> Behaviour:
    def streamed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        if not slots.take():
            abort_with_errno(context, slots.exhausted())
        try:
            responses = behaviour(request, context)
        except BaseException:  # refused before it streams (a request that does not parse)
            slots.give_back()
            raise
        return releasing(slots, responses)
    return streamed


def releasing(slots: CallSlots, responses: Iterator[Any]) -> Iterator[Any]:
    try:
        yield from responses
    finally:
        slots.give_back()
