"""Server reflection as a client in another language uses it (grpcurl: look the call up,
then make it), against a real ftraced: the contract's files come with their comments, and
reflection streams neither take the daemon's stream slots nor its unary threads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase)
from grpc_status import rpc_status

from clients.api import RequestQueue
from clients.connection import CHANNEL_OPTIONS, grpc_target
from ftrace.v1 import common_pb2, kernel_pb2, kernel_pb2_grpc
from kernel_daemon.rpc.server import commented_files
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)

DEADLINE = 30


@pytest.fixture
def channel(daemon) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(grpc_target(daemon.address), options=CHANNEL_OPTIONS) as channel:
        yield channel


def comments(file: descriptor_pb2.FileDescriptorProto) -> list[str]:
    return [text for location in file.source_code_info.location
            for text in (location.leading_comments, location.trailing_comments,
                         *location.leading_detached_comments)]


def test_reflection_serves_the_protos_with_their_comments(channel):
    """What `grpcurl describe` shows: the metadata keys, the errno table and the stream
    protocols are comments, so the files must come with their SourceCodeInfo."""
    database = ProtoReflectionDescriptorDatabase(channel)
    tracefs = database.FindFileContainingSymbol("ftrace.v1.Tracefs")
    assert tracefs.name == "ftrace/v1/tracefs.proto"
    common = database.FindFileByName("ftrace/v1/common.proto")  # Tracefs' import came along
    assert any("x-ftrace-pid   decimal pid" in text for text in comments(common))
    assert any("ENODEV      (19)    UNAVAILABLE" in text for text in comments(common))
    # A comment on an element, where grpcurl shows it: ErrnoDetail.message's.
    # (path: message_type = 4, its index, field = 2, its index)
    (message,) = (i for i, m in enumerate(common.message_type) if m.name == "ErrnoDetail")
    field = [f.name for f in common.message_type[message].field].index("message")
    (location,) = (loc for loc in common.source_code_info.location
                   if list(loc.path) == [4, message, 2, field])
    assert "Free-form context from the daemon" in location.leading_comments
    # The descriptors are the generated code's: the same file, less its comments and the
    # fields' json_name (which protoc fills in the set, as a client would compute it).
    served = descriptor_pb2.FileDescriptorProto()
    common_pb2.DESCRIPTOR.CopyToProto(served)
    common.ClearField("source_code_info")
    for message in common.message_type:
        for field in message.field:
            field.ClearField("json_name")
    assert common == served
    # The standard services the set does not hold still resolve.
    assert database.FindFileContainingSymbol("grpc.health.v1.Health").name \
        == "grpc_health/v1/health.proto"


def file_containing_symbol(channel: grpc.Channel,
                           symbol: str) -> reflection_pb2.ServerReflectionResponse:
    """The answer to one raw ``file_containing_symbol`` request, as grpcurl makes it."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    (response,) = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)]),
        timeout=DEADLINE)
    return response


@pytest.mark.parametrize("symbol, name", [
    ("ftrace.v1.Tracer.Invoke", "ftrace/v1/tracer.proto"),  # a method
    ("ftrace.v1.Tracefs.ReadFile", "ftrace/v1/tracefs.proto"),
    ("grpc.health.v1.Health.Check", "grpc_health/v1/health.proto"),  # not in the set
    ("ftrace.v1.OPEN_FLAG_WRONLY", "ftrace/v1/tracefs.proto"),  # an enum value: a
    # sibling of its enum, as protobuf scopes it
    ("ftrace.v1.ErrnoDetail.number", "ftrace/v1/common.proto"),  # a field
    ("google.rpc.Status", "google/rpc/status.proto"),  # common.proto ERRORS: to decode
    # grpc-status-details-bin
])
def test_reflection_finds_the_file_of_any_element(channel, symbol: str, name: str):
    """`grpcurl describe ftrace.v1.Tracer.Invoke` asks for the file containing the
    method, as for a service or a message; the file comes first, with its comments,
    then its imports."""
    response = file_containing_symbol(channel, symbol)
    assert response.WhichOneof("message_response") == "file_descriptor_response", response
    files = [descriptor_pb2.FileDescriptorProto.FromString(data)
             for data in response.file_descriptor_response.file_descriptor_proto]
    assert files[0].name == name
    assert response.original_request.file_containing_symbol == symbol
    if name.startswith("ftrace/"):
        assert comments(files[0])


@pytest.mark.parametrize("symbol", ["ftrace.v1.Tracer.Nosuch", "ftrace.v1",
                                    "ftrace.v1.OpenFlag.OPEN_FLAG_WRONLY"])
def test_reflection_says_not_found_for_no_element(channel, symbol: str):
    """A package is no symbol, nor an enum value named in its enum's scope (C++ and Go
    answer the same)."""
    response = file_containing_symbol(channel, symbol)
    assert response.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_a_daemon_without_its_descriptor_set_says_how_to_make_it(tmp_path: Path):
    with pytest.raises(SystemExit) as info:
        commented_files(tmp_path / "descriptor_set.binpb")
    assert "descriptor_set.binpb is missing: `make gen` writes it" in str(info.value)


def follow_dmesg(channel: grpc.Channel, count: int) -> list[Any]:
    """``count`` DmesgFollow streams, each holding a stream slot (each has answered)."""
    kernel = kernel_pb2_grpc.KernelStub(channel)
    held = []
    for _ in range(count):
        call = kernel.DmesgFollow(kernel_pb2.DmesgFollowRequest(replay=True),
                                  timeout=DEADLINE * 4)
        assert next(call).lines  # the boot's log: the stream is open
        held.append(call)
    return held


def reflection_stream(channel: grpc.Channel) -> tuple[RequestQueue, Any]:
    """An open reflection stream, as grpcurl keeps one while it makes the call it looked up."""
    requests = RequestQueue()
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter(requests), timeout=DEADLINE * 4)
    requests.put(reflection_pb2.ServerReflectionRequest(list_services=""))
    return requests, call


def test_reflection_and_a_unary_call_work_with_every_stream_slot_taken(channel):
    """common.proto STREAMS: with all stream slots taken by DmesgFollow streams, a
    grpcurl-style client still looks its call up and makes it; reflection streams have
    a few threads of their own, so a ninth at once fails with ENFILE, and the unary
    calls keep theirs all the while."""
    kernel = kernel_pb2_grpc.KernelStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    limit = kernel.Stats(kernel_pb2.StatsRequest(), timeout=DEADLINE).max_streams
    followers = follow_dmesg(channel, limit)

    database = ProtoReflectionDescriptorDatabase(channel)
    assert "ftrace.v1.Kernel" in database.get_services()
    assert database.FindFileContainingSymbol("grpc.health.v1.Health")
    assert health.Check(health_pb2.HealthCheckRequest(service="ftrace.v1.Kernel"),
                        timeout=DEADLINE).status == health_pb2.HealthCheckResponse.SERVING

    held = []
    for _ in range(8):
        requests, call = reflection_stream(channel)
        assert "ftrace.v1.Tracefs" in {s.name for s in next(call).list_services_response.service}
        held.append((requests, call))
    requests, refused = reflection_stream(channel)
    with pytest.raises(grpc.RpcError) as info:
        next(refused)
    requests.end()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    detail = common_pb2.ErrnoDetail()
    assert rpc_status.from_call(info.value).details[0].Unpack(detail)
    assert (detail.name, detail.message) == ("ENFILE",
                                             "all 8 reflection streams of the daemon are open")
    stats = kernel.Stats(kernel_pb2.StatsRequest(), timeout=DEADLINE)  # a unary call goes on
    assert (stats.streams, stats.max_streams) == (limit, limit)  # reflection is not counted

    for requests, call in held:
        requests.end()
        assert list(call) == []
    for call in followers:
        call.cancel()
    assert ProtoReflectionDescriptorDatabase(channel).get_services()  # the slots came back
