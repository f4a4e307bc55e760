"""The daemon's handler threads (common.proto STREAMS): unary calls waiting in the kernel
take at most their own limit of them, and the control calls are answered all the while,
ReleaseFailpoint first, which lets those waits go on. A reviewer's 300 writes to
set_ftrace_filter behind one paused at a failpoint took every thread of the daemon:
nothing but SIGTERM was answered after that, not even the ReleaseFailpoint.

The scenario is scaled down to a few calls: an ftraced run in this process (the server,
the services and the kernel of ``python -m kernel_daemon``, on a unix socket), its limit
of unary calls and its thread pool made small for the test."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.connection import grpc_target
from clients.identity import COMM_METADATA_KEY, PID_METADATA_KEY
from ftrace.v1 import kernel_pb2, kernel_pb2_grpc, tracefs_pb2, tracefs_pb2_grpc
from kernel_daemon.rpc import server as server_module
from kernel_daemon.rpc import state as state_module
from kernel_daemon.rpc.server import HEALTH, SERVICES
from kernel_daemon.rpc.state import CONTROL_CALLS
from tests.daemon_fixture import in_process
from tests.test_rpc_bad_input import errno_of
from tests.test_rpc_shutdown import FILTER_RELEASE
from tests.test_tracer_client import DEADLINE, TRACING, wait_until

#: The unary calls' limit in these tests...
UNARY_CALLS = 4
#: ...and the server's pool: as many threads again for the rest (the control calls, and
#: the calls refused at the limit), so that on a daemon whose unary calls are not
#: limited, this many calls waiting in the kernel take every thread.
WORKERS = 2 * UNARY_CALLS
WRITER_PID = 4242
WRITER = ((PID_METADATA_KEY, str(WRITER_PID)), (COMM_METADATA_KEY, "writer"))


@pytest.fixture
def channel(tmp_path, monkeypatch) -> Iterator[grpc.Channel]:
    """A channel to an ftraced running in this process with the small limits."""
    monkeypatch.setattr(state_module, "MAX_UNARY_CALLS", UNARY_CALLS)
    monkeypatch.setattr(server_module, "MAX_WORKERS", WORKERS)
    with in_process(tmp_path) as (daemon, _), \
            grpc.insecure_channel(grpc_target(daemon.address)) as channel:
        yield channel


def refusal(future: grpc.Future) -> tuple[grpc.StatusCode, str, str] | None:
    """How a call that has ended failed: its code, errno name and message; None if not."""
    error = future.exception()
    if error is None:
        return None
    detail = errno_of(error)
    return error.code(), detail.name, detail.message


WRITE = tracefs_pb2.WriteFileRequest(path=f"{TRACING}/set_ftrace_filter", data=b"schedule\n")


def wedged(kernel: kernel_pb2_grpc.KernelStub,
           tracefs: tracefs_pb2_grpc.TracefsStub) -> list[grpc.Future]:
    """As many writes to set_ftrace_filter as the pool has threads, behind one paused at
    ftrace_regex_release:before_lock; returned once those past the unary limit ended."""
    kernel.SetFailpoint(kernel_pb2.SetFailpointRequest(name=FILTER_RELEASE, spec="1*pause"),
                        timeout=DEADLINE)
    writes = [tracefs.WriteFile.future(WRITE, timeout=DEADLINE, metadata=WRITER)
              for _ in range(WORKERS)]
    wait_until(lambda: sum(call.done() for call in writes) == WORKERS - UNARY_CALLS, DEADLINE)
    return writes


def test_control_calls_are_answered_while_every_unary_call_waits_in_the_kernel(channel):
    """As many writes to set_ftrace_filter as the pool has threads, one paused at
    ftrace_regex_release:before_lock holding ftrace_regex_lock: the limit's worth of
    them wait in the kernel, the rest fail at once with ENFILE, as does any other call
    that is not a control call; every control call is answered meanwhile, and once
    ReleaseFailpoint let the paused write go, every write that waited completes."""
    kernel = kernel_pb2_grpc.KernelStub(channel)
    tracefs = tracefs_pb2_grpc.TracefsStub(channel)
    writes = wedged(kernel, tracefs)
    full = (grpc.StatusCode.RESOURCE_EXHAUSTED, "ENFILE",
            f"all {UNARY_CALLS} unary calls of the daemon are open")
    assert [refusal(call) for call in writes if call.done()] == [full] * (WORKERS - UNARY_CALLS)
    with pytest.raises(grpc.RpcError) as refused:
        kernel.CheckConsistency(kernel_pb2.CheckConsistencyRequest(), timeout=DEADLINE)
    assert (refused.value.code(), errno_of(refused.value).name) == full[:2]

    # The control calls, each answered while the writes wait.
    (site,) = [fp for fp in kernel.ListFailpoints(kernel_pb2.ListFailpointsRequest(),
                                                  timeout=DEADLINE).failpoints
               if fp.name == FILTER_RELEASE]
    assert (site.paused, site.spec) == (1, "")  # "1*pause" turned itself off as it fired
    assert kernel.Kill(kernel_pb2.KillRequest(pid=WRITER_PID, signal=0),
                       timeout=DEADLINE).calls == UNARY_CALLS  # all inside the kernel
    stats = kernel.Stats(kernel_pb2.StatsRequest(), timeout=DEADLINE)
    assert (stats.unary_calls, stats.max_unary_calls) == (UNARY_CALLS, UNARY_CALLS)
    assert kernel.GetConfig(kernel_pb2.GetConfigRequest(), timeout=DEADLINE).core_functions == 2000
    kernel.Dmesg(kernel_pb2.DmesgRequest(), timeout=DEADLINE)
    kernel.SetFailpoint(kernel_pb2.SetFailpointRequest(name=FILTER_RELEASE, spec="off"),
                        timeout=DEADLINE)
    assert health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=DEADLINE).status == \
        health_pb2.HealthCheckResponse.SERVING

    assert kernel.ReleaseFailpoint(kernel_pb2.ReleaseFailpointRequest(name=FILTER_RELEASE),
                                   timeout=DEADLINE).released == 1
    waited = [call for call in writes if refusal(call) is None]
    assert [call.result().bytes_written for call in waited] == [len(WRITE.data)] * UNARY_CALLS
    assert kernel.Stats(kernel_pb2.StatsRequest(), timeout=DEADLINE).unary_calls == 0
    assert tracefs.ReadFile(tracefs_pb2.ReadFileRequest(path=f"{TRACING}/set_ftrace_filter"),
                            timeout=DEADLINE).data == b"schedule\n"


def test_a_reboot_is_answered_while_every_unary_call_waits_in_the_kernel(channel):
    """Reboot has threads of its own: the other way out of the same wait. The old
    kernel's end lets the paused write go, and the writes behind it with it, against the
    kernel they entered; the new boot serves."""
    kernel = kernel_pb2_grpc.KernelStub(channel)
    tracefs = tracefs_pb2_grpc.TracefsStub(channel)
    born = kernel.Stats(kernel_pb2.StatsRequest(), timeout=DEADLINE).boot_id
    writes = wedged(kernel, tracefs)
    config = kernel.Reboot(kernel_pb2.RebootRequest(
        config=kernel_pb2.BootConfig(core_functions=2000)), timeout=DEADLINE)
    assert config.boot_id == born + 1
    # Each ends at once: answered, ENFILE, or its kernel gone; none waits to its deadline.
    assert grpc.StatusCode.DEADLINE_EXCEEDED not in {call.code() for call in writes}
    stats = kernel.Stats(kernel_pb2.StatsRequest(), timeout=DEADLINE)
    assert (stats.boot_id, stats.unary_calls) == (born + 1, 0)


def test_the_control_calls_are_unary_calls_the_daemon_serves():
    """A name in CONTROL_CALLS that is no unary method of the daemon's (a typo, a method
    renamed or made streaming) would leave the call it meant limited, unseen."""
    unary = {f"/{service.full_name}/{method.name}"
             for service in (*(service for service, _ in SERVICES), HEALTH)
             for method in service.methods
             if not (method.client_streaming or method.server_streaming)}
    assert CONTROL_CALLS <= unary
