"""What a client in another language learns from the protos alone, against a real ftraced
over plain gRPC stubs: an ENODEV of a dead ftrace says it is not transient while health
stays SERVING (common.proto HEALTH), a caller without identity metadata runs as the
default task common.proto names, and a variant the contract names but the model does
not have is refused as such."""

from __future__ import annotations

import os
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from clients.api import RequestQueue
from clients.connection import CHANNEL_OPTIONS, grpc_target
from ftrace.v1 import (common_pb2, kernel_pb2, kernel_pb2_grpc, tracefs_pb2, tracefs_pb2_grpc,
                       tracer_pb2, tracer_pb2_grpc)
from kernel_daemon.rpc.server import SERVICE_NAMES
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)

T = "/sys/kernel/debug/tracing"
DEADLINE = 30
FTRACE_DISABLED = "ftrace is disabled: ftrace_kill() ran after a WARN; Kernel.Reboot recovers"


class Stubs:
    def __init__(self, channel: grpc.Channel) -> None:
        self.tracefs = tracefs_pb2_grpc.TracefsStub(channel)
        self.tracer = tracer_pb2_grpc.TracerStub(channel)
        self.kernel = kernel_pb2_grpc.KernelStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)

    def serving(self) -> set[str]:
        """The services, "" among them, whose health is SERVING."""
        return {name for name in ("",) + SERVICE_NAMES
                if self.health.Check(health_pb2.HealthCheckRequest(service=name),
                                     timeout=DEADLINE).status
                == health_pb2.HealthCheckResponse.SERVING}


def stubs_of(address: str) -> Iterator[Stubs]:
    with grpc.insecure_channel(grpc_target(address), options=CHANNEL_OPTIONS) as channel:
        yield Stubs(channel)


@pytest.fixture
def stubs(daemon) -> Iterator[Stubs]:
    yield from stubs_of(daemon.address)


def errno_of(error: grpc.RpcError) -> common_pb2.ErrnoDetail:
    detail = common_pb2.ErrnoDetail()
    assert rpc_status.from_call(error).details[0].Unpack(detail)
    return detail


def failing(method, request) -> tuple[grpc.StatusCode, common_pb2.ErrnoDetail]:
    with pytest.raises(grpc.RpcError) as info:
        method(request, timeout=DEADLINE)
    return info.value.code(), errno_of(info.value)


def test_enodev_of_a_dead_ftrace_says_so_and_health_stays_serving(spawn):
    """common.proto ERRORS and HEALTH: after ftrace_kill() (a failed add_breakpoints
    pass) ftrace's paths fail UNAVAILABLE with an ENODEV whose message says ftrace is
    disabled until a reboot, unary or in-band; the daemon still serves every service,
    so health stays SERVING, and Kernel.Reboot brings ftrace back."""
    daemon = spawn(["--core-functions", "2000", "--failpoint", "add_breakpoints=1*error(EFAULT)"])
    for stubs in stubs_of(daemon.address):
        everything = {""} | set(SERVICE_NAMES)
        requests = RequestQueue()  # a filter file open while ftrace is alive
        session = stubs.tracefs.Session(iter(requests), timeout=DEADLINE)
        requests.put(tracefs_pb2.FileRequest(open=tracefs_pb2.OpenRequest(
            path=f"{T}/set_ftrace_filter", flags=os.O_WRONLY)))
        assert next(session).HasField("open")

        stubs.tracefs.WriteFile(tracefs_pb2.WriteFileRequest(
            path=f"{T}/current_tracer", data=b"function\n"), timeout=DEADLINE)
        assert stubs.kernel.Stats(kernel_pb2.StatsRequest(), timeout=DEADLINE).ftrace_disabled

        for method, request in (
                (stubs.tracefs.WriteFile, tracefs_pb2.WriteFileRequest(
                    path=f"{T}/set_ftrace_filter", data=b"schedule\n")),
                (stubs.tracefs.ReadFile, tracefs_pb2.ReadFileRequest(
                    path=f"{T}/available_filter_functions"))):
            code, detail = failing(method, request)
            assert (code, detail.name, detail.message) \
                == (grpc.StatusCode.UNAVAILABLE, "ENODEV", FTRACE_DISABLED), request
        requests.put(tracefs_pb2.FileRequest(write=tracefs_pb2.WriteRequest(data=b"schedule\n")))
        in_band = next(session).error
        assert (in_band.name, in_band.message) == ("ENODEV", FTRACE_DISABLED)
        requests.end()
        list(session)
        attach = stubs.tracer.Attach(iter([tracer_pb2.TracerRequest(
            register=tracer_pb2.RegisterOps(filter=["schedule"]))]), timeout=DEADLINE)
        with pytest.raises(grpc.RpcError) as info:
            list(attach)
        assert (errno_of(info.value).name, errno_of(info.value).message) \
            == ("ENODEV", FTRACE_DISABLED)
        assert stubs.serving() == everything

        stubs.kernel.Reboot(kernel_pb2.RebootRequest(), timeout=DEADLINE)
        stubs.tracefs.WriteFile(tracefs_pb2.WriteFileRequest(
            path=f"{T}/set_ftrace_filter", data=b"schedule\n"), timeout=DEADLINE)
        assert stubs.serving() == everything


def owners(stubs: Stubs, metadata: tuple[tuple[str, str], ...]) -> common_pb2.Task:
    """The owner ListOps shows of an ops registered by a caller sending ``metadata``."""
    requests = RequestQueue()
    attach = stubs.tracer.Attach(iter(requests), timeout=DEADLINE, metadata=metadata)
    requests.put(tracer_pb2.TracerRequest(register=tracer_pb2.RegisterOps(name="anonymous")))
    assert next(attach).HasField("registered")
    (ops,) = [ops for ops in stubs.kernel.ListOps(kernel_pb2.ListOpsRequest(), timeout=DEADLINE).ops
              if ops.name == "anonymous"]
    requests.end()
    list(attach)
    return ops.owner


def test_a_caller_without_identity_metadata_runs_as_the_default_task(stubs):
    """common.proto CALLER IDENTITY: no x-ftrace-pid is pid PID_MAX_LIMIT (not init's 1),
    no x-ftrace-comm is "grpc-client"; each key is filled in alone."""
    assert owners(stubs, ()) == common_pb2.Task(pid=4194304, comm="grpc-client")
    assert owners(stubs, (("x-ftrace-comm", "bash"),)) == common_pb2.Task(pid=4194304, comm="bash")
    assert owners(stubs, (("x-ftrace-pid", "20903"),)) \
        == common_pb2.Task(pid=20903, comm="grpc-client")


def test_reboot_refuses_variant_modern_as_not_modelled(stubs):
    """kernel.proto Variant: VARIANT_MODERN is in the contract, not in the model yet; the
    refusal says so, where a value the contract lacks is unknown. The old kernel runs on."""
    boot_id = stubs.kernel.GetConfig(kernel_pb2.GetConfigRequest(), timeout=DEADLINE).boot_id
    for variant, message in ((kernel_pb2.VARIANT_MODERN,
                              "VARIANT_MODERN (today's kernel) is not modelled yet"),
                             (9, "unknown enum value 9")):
        code, detail = failing(stubs.kernel.Reboot, kernel_pb2.RebootRequest(
            config=kernel_pb2.BootConfig(variant=variant)))
        assert (code, detail.name, detail.message) \
            == (grpc.StatusCode.INVALID_ARGUMENT, "EINVAL", message)
    assert stubs.kernel.GetConfig(kernel_pb2.GetConfigRequest(), timeout=DEADLINE).boot_id \
        == boot_id
