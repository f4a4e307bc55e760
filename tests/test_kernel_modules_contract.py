"""The Kernel and Modules services against what their contract promises
(proto/ftrace/v1/kernel.proto, modules.proto, common.proto), through a real ftraced:
reboot and the calls bound to a boot, the fields the messages promise, and the errors
the RPCs document."""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Any, Callable

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from clients.api import Client
from clients.errors import FtraceError
from ftrace.v1 import modules_pb2, modules_pb2_grpc
from kernel_daemon.module.address_space import MODULES_VADDR
from tests.daemon_fixture import spawn  # noqa: F401  (fixture)

PROTO_DIR = Path(__file__).resolve().parent.parent / "proto" / "ftrace" / "v1"
T = "/sys/kernel/debug/tracing"
CORE = ["--core-functions", "2000"]
# Reboots keep the small kernel (a zero field would take the 40,960-function default).
SMALL = {"core_functions": 2000}


def failing(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> FtraceError:
    with pytest.raises(FtraceError) as exc:
        fn(*args, **kwargs)
    return exc.value


def errno_of(error: Any) -> int | None:
    """The errno a call ended with (raw gRPC or the client library), None if it did not fail."""
    if isinstance(error, grpc.RpcError):
        error = FtraceError.from_rpc(error)
    return error.errno if isinstance(error, FtraceError) else None


@pytest.fixture
def daemon(spawn):
    return spawn(CORE)


@pytest.fixture
def client(daemon):
    with Client(daemon.address) as c:
        yield c


# --- Modules ------------------------------------------------------------------------------


def test_load_seq_tells_a_reload_from_the_load_before(client):
    assert client.load("uinput").load_seq == 1
    assert client.unload("uinput").load_seq == 1
    assert client.load("uinput").load_seq == 2
    assert client.load("tun").load_seq == 3
    assert client.load("uinput", if_loaded_ok=True).load_seq == 2  # nothing was loaded
    assert [(m.name, m.load_seq) for m in client.list_modules()] == [("tun", 3), ("uinput", 2)]
    client.reboot(**SMALL)
    assert client.load("tun").load_seq == 1  # counted per boot


def test_load_placement_is_validated_and_used(client):
    assert failing(client.load, name="m", functions=["f"], placement=9).errno == errno.EINVAL
    assert client.list_modules() == []
    # On a first-fit boot, one load placed at random, and one asked for first fit.
    randomly = client.load(name="m", functions=["f"], placement="random")
    assert randomly.base != MODULES_VADDR
    client.unload("m")
    assert client.load(name="m", functions=["f"], placement="first-fit").base == MODULES_VADDR
    client.unload("m")
    client.reboot(module_placement="random", **SMALL)
    assert client.load(name="m", functions=["f"], placement="first-fit").base == MODULES_VADDR


def test_explicit_modules_as_the_contract_allows_them(client):
    empty = client.load(name="m0", functions=[])
    assert (empty.functions, empty.state) == (0, modules_pb2.MODULE_STATE_LIVE)
    # Static functions of one name in two files: two records.
    twice = client.load(name="mdup", functions=["f", "g", "f"])
    assert twice.functions == 3
    listing = client.read_file(f"{T}/available_filter_functions").decode().splitlines()
    assert listing.count("f [mdup]") == 2
    client.write_file(f"{T}/set_ftrace_filter", "f\n")
    assert client.read_file(f"{T}/set_ftrace_filter") == b"f [mdup]\nf [mdup]\n"
    assert client.load(name="my-mod", functions=["g"]).name == "my-mod"
    assert re.search(r"^my-mod \d+ 0 - Live 0x", client.read_file("/proc/modules").decode(), re.M)
    for bad in ("my.mod", "", "x" * 56):
        assert failing(client.load, name=bad, functions=["g"]).errno == errno.EINVAL
    for if_absent_ok in (False, True):
        assert failing(client.unload, "", if_absent_ok=if_absent_ok).errno == errno.EINVAL
    for name in ("my-mod", "mdup", "m0"):
        client.unload(name)
    assert client.check_consistency().ok


def test_catalog_checks_the_callers_identity_like_every_call(daemon):
    channel = grpc.insecure_channel(f"unix:{daemon.address.removeprefix('unix:')}")
    stub = modules_pb2_grpc.ModulesStub(channel)
    for metadata in ((("x-ftrace-pid", "abc"),), (("x-ftrace-comm", ""),)):
        with pytest.raises(grpc.RpcError) as exc:
            stub.Catalog(modules_pb2.CatalogRequest(), metadata=metadata)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert errno_of(exc.value) == errno.EINVAL
    assert "uinput" in {m.name for m in stub.Catalog(modules_pb2.CatalogRequest()).modules}
    channel.close()


# --- reflection ---------------------------------------------------------------------------


def test_the_reflection_services_documented_are_the_ones_served(daemon):
    """common.proto names, in full, every server reflection service the daemon serves."""
    documented = set(re.findall(r"grpc\.reflection\.\w+\.ServerReflection",
                                (PROTO_DIR / "common.proto").read_text()))
    channel = grpc.insecure_channel(f"unix:{daemon.address.removeprefix('unix:')}")
    served = set()
    # v1 and v1alpha have the same messages, so v1alpha's code can ask either.
    for service in ("grpc.reflection.v1alpha.ServerReflection",
                    "grpc.reflection.v1.ServerReflection"):
        info = channel.stream_stream(
            f"/{service}/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        try:
            (response,) = info(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                               timeout=10)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNIMPLEMENTED
            continue
        names = {s.name for s in response.list_services_response.service}
        assert {"ftrace.v1.Kernel", "ftrace.v1.Modules", "grpc.health.v1.Health"} <= names
        served.add(service)
    channel.close()
    assert documented == served
