"""The control-plane contract: generated code, services and RPCs, documentation, and the
errno <-> gRPC status mapping end to end over a real gRPC server on a unix socket."""

from __future__ import annotations

import errno
import importlib
import os
import re
import socket
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.rpc import status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from clients import connection as connection_module
from clients.connection import (
    ADDRESS_ENV,
    ADDRESS_FORMS,
    Connection,
    DaemonLost,
    connect,
    default_address,
    grpc_target,
    host_port,
    resolve_address,
    unix_socket_path,
)
from clients.errors import FtraceError, raise_from_rpc, translate_rpc_errors
from clients.identity import (
    COMM_METADATA_KEY,
    PID_METADATA_KEY,
    Identity,
    default_comm,
    parse_identity_metadata,
)
from ftrace.v1 import (
    common_pb2,
    kernel_pb2,
    kernel_pb2_grpc,
    modules_pb2,
    tracefs_pb2,
    tracefs_pb2_grpc,
    tracer_pb2,
)
from kernel_daemon.errno import KernelError, errno_from_name, errno_name
from kernel_daemon.rpc import status as rpc_errors
from kernel_daemon.rpc.status import (
    BYTES_WRITTEN_METADATA_KEY,
    CODE_TO_ERRNO,
    ERRNO_METADATA_KEY,
    ERRNO_TO_CODE,
    abort_with_errno,
    translate_kernel_errors,
)

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto" / "ftrace" / "v1"
PROTO_FILES = sorted(PROTO_DIR.glob("*.proto"))
GENERATED = ["common", "tracefs", "modules", "kernel", "tracer"]
#: A client's wait for a daemon that a test expects to end long before it.
WAIT = 30.0

# --- generated code and services ---------------------------------------------------------

U, S = False, True  # client_streaming / server_streaming flags
EXPECTED_SERVICES: dict[str, dict[str, tuple[bool, bool, str, str]]] = {
    "ftrace.v1.Tracefs": {
        "Session": (S, S, "FileRequest", "FileResponse"),
        "ReadFile": (U, U, "ReadFileRequest", "ReadFileResponse"),
        "WriteFile": (U, U, "WriteFileRequest", "WriteFileResponse"),
        "ListDir": (U, U, "ListDirRequest", "ListDirResponse"),
        "Stat": (U, U, "StatRequest", "StatResponse"),
        "TracePipe": (U, S, "TracePipeRequest", "TracePipeChunk"),
    },
    "ftrace.v1.Modules": {
        "Load": (U, U, "LoadModuleRequest", "ModuleInfo"),
        "Unload": (U, U, "UnloadModuleRequest", "ModuleInfo"),
        "List": (U, U, "ListModulesRequest", "ListModulesResponse"),
        "Catalog": (U, U, "CatalogRequest", "CatalogResponse"),
    },
    "ftrace.v1.Kernel": {
        "Dmesg": (U, U, "DmesgRequest", "DmesgResponse"),
        "DmesgFollow": (U, S, "DmesgFollowRequest", "DmesgLines"),
        "CheckConsistency": (U, U, "CheckConsistencyRequest", "ConsistencyReport"),
        "DumpRecords": (U, S, "DumpRecordsRequest", "RecordChunk"),
        "ListOps": (U, U, "ListOpsRequest", "ListOpsResponse"),
        "SetFailpoint": (U, U, "SetFailpointRequest", "Failpoint"),
        "ReleaseFailpoint": (U, U, "ReleaseFailpointRequest", "ReleaseFailpointResponse"),
        "ListFailpoints": (U, U, "ListFailpointsRequest", "ListFailpointsResponse"),
        "WaitFailpoint": (U, U, "WaitFailpointRequest", "Failpoint"),
        "GetConfig": (U, U, "GetConfigRequest", "BootConfig"),
        "Stats": (U, U, "StatsRequest", "KernelStats"),
        "Reboot": (U, U, "RebootRequest", "BootConfig"),
        "Kill": (U, U, "KillRequest", "KillResponse"),
    },
    "ftrace.v1.Tracer": {
        "Attach": (S, S, "TracerRequest", "TracerEvent"),
        "Invoke": (U, U, "InvokeRequest", "InvokeResponse"),
    },
}


@pytest.mark.parametrize("name", GENERATED)
def test_generated_modules_import(name):
    pb2 = importlib.import_module(f"ftrace.v1.{name}_pb2")
    importlib.import_module(f"ftrace.v1.{name}_pb2_grpc")
    assert pb2.DESCRIPTOR.package == "ftrace.v1"
    assert pb2.DESCRIPTOR.name == f"ftrace/v1/{name}.proto"
    # generated, never hand-edited: the .pyi stubs are produced alongside
    assert (Path(pb2.__file__).with_suffix(".pyi")).exists()


def _all_services():
    services = {}
    for name in GENERATED:
        pb2 = importlib.import_module(f"ftrace.v1.{name}_pb2")
        for service in pb2.DESCRIPTOR.services_by_name.values():
            services[service.full_name] = service
    return services


def test_exactly_the_documented_services():
    assert set(_all_services()) == set(EXPECTED_SERVICES)


@pytest.mark.parametrize("service_name", sorted(EXPECTED_SERVICES))
def test_service_rpcs(service_name):
    service = _all_services()[service_name]
    expected = EXPECTED_SERVICES[service_name]
    assert set(service.methods_by_name) == set(expected)
    for method_name, (client_streaming, server_streaming, req, resp) in expected.items():
        method = service.methods_by_name[method_name]
        assert method.client_streaming is client_streaming, method_name
        assert method.server_streaming is server_streaming, method_name
        assert method.input_type.full_name == f"ftrace.v1.{req}", method_name
        assert method.output_type.full_name == f"ftrace.v1.{resp}", method_name


def test_stubs_and_servicers_exist():
    for service_name, methods in EXPECTED_SERVICES.items():
        short = service_name.rsplit(".", 1)[1]
        module = importlib.import_module(f"ftrace.v1.{short.lower()}_pb2_grpc")
        stub_class = getattr(module, f"{short}Stub")
        servicer_class = getattr(module, f"{short}Servicer")
        assert callable(getattr(module, f"add_{short}Servicer_to_server"))
        for method_name in methods:
            assert hasattr(servicer_class, method_name)
        stub = stub_class(grpc.insecure_channel("unix:/nonexistent-ftrace-test.sock"))
        for method_name in methods:
            assert hasattr(stub, method_name)


def test_key_message_fields():
    def fields(message):
        return set(message.DESCRIPTOR.fields_by_name)

    assert {"number", "name", "strerror", "message", "syscall", "path"} <= fields(common_pb2.ErrnoDetail)
    assert {"open", "read", "write", "seek", "close"} <= fields(tracefs_pb2.FileRequest)
    assert {"seq", "open", "read", "write", "seek", "close", "error"} <= fields(tracefs_pb2.FileResponse)
    assert {"path", "data", "append"} <= fields(tracefs_pb2.WriteFileRequest)
    assert {"catalog_name", "explicit", "if_loaded_ok", "placement"} <= fields(modules_pb2.LoadModuleRequest)
    assert {"name", "base", "size", "functions", "state", "taints", "used_by"} <= fields(
        modules_pb2.ModuleInfo)
    assert {"name", "functions", "size", "depends"} <= fields(modules_pb2.CatalogModule)
    assert {
        "kind", "ip", "function", "module", "expected_count", "actual_count", "enabled", "ops", "message",
    } <= fields(kernel_pb2.Anomaly)
    assert {"ip", "flags", "count", "enabled", "function", "module"} <= fields(kernel_pb2.Record)
    assert {
        "variant", "races", "core_functions", "module_placement", "cpus", "failpoints", "seed",
        "switch_interval",
    } <= fields(kernel_pb2.BootConfig)
    assert {"ftrace_disabled", "ftrace_enabled", "ftrace_start_up", "global_start_up", "records",
            "pages", "ops", "tainted", "uptime_seconds", "rpc_counts"} <= fields(kernel_pb2.KernelStats)
    assert {"register", "set_filter", "flush", "unregister"} <= fields(tracer_pb2.TracerRequest)
    assert {"function", "address", "parent", "cpu", "pid", "comm", "repeat"} <= fields(tracer_pb2.InvokeRequest)
    kinds = {v.name for v in kernel_pb2.AnomalyKind.DESCRIPTOR.values}
    assert {"ANOMALY_KIND_MISSING_REFERENCE", "ANOMALY_KIND_LEAKED_REFERENCE",
            "ANOMALY_KIND_PATCH_MISMATCH", "ANOMALY_KIND_FREED_PAGE_ACCESS"} <= kinds


def test_open_flags_are_linux_values():
    assert tracefs_pb2.OPEN_FLAG_RDONLY == os.O_RDONLY == 0
    assert tracefs_pb2.OPEN_FLAG_WRONLY == os.O_WRONLY == 0o1
    assert tracefs_pb2.OPEN_FLAG_RDWR == os.O_RDWR == 0o2
    assert tracefs_pb2.OPEN_FLAG_CREAT == os.O_CREAT == 0o100
    assert tracefs_pb2.OPEN_FLAG_TRUNC == os.O_TRUNC == 0o1000
    assert tracefs_pb2.OPEN_FLAG_APPEND == os.O_APPEND == 0o2000
    assert tracefs_pb2.OPEN_FLAG_NONBLOCK == os.O_NONBLOCK == 0o4000
    assert tracefs_pb2.OPEN_FLAG_EXCL == os.O_EXCL == 0o200
    assert tracefs_pb2.OPEN_FLAG_DIRECT == os.O_DIRECT == 0o40000
    assert tracefs_pb2.OPEN_FLAG_DIRECTORY == os.O_DIRECTORY == 0o200000
    assert tracefs_pb2.OPEN_FLAG_PATH == os.O_PATH == 0o10000000
    assert (tracefs_pb2.WHENCE_SET, tracefs_pb2.WHENCE_CUR, tracefs_pb2.WHENCE_END) == (
        os.SEEK_SET, os.SEEK_CUR, os.SEEK_END,
    )


# --- documentation ------------------------------------------------------------------------


def _rpc_comment_blocks():
    """(file, rpc name, the // comment block right above it) for every rpc."""
    for path in PROTO_FILES:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            match = re.match(r"\s*rpc\s+(\w+)\s*\(", line)
            if not match:
                continue
            j = i - 1
            block = []
            while j >= 0 and lines[j].strip().startswith("//"):
                block.insert(0, lines[j].strip()[2:].strip())
                j -= 1
            yield path.name, match.group(1), "\n".join(block)


def test_every_rpc_is_documented_with_its_errors():
    seen = set()
    for filename, rpc, comment in _rpc_comment_blocks():
        seen.add(rpc)
        assert len(comment) >= 40, f"{filename}: rpc {rpc} lacks a comment"
        names = set(re.findall(r"\bE[A-Z0-9]{2,}\b", comment))
        assert names or "Never fails" in comment, f"{filename}: rpc {rpc} names no errno"
    assert seen == {m for methods in EXPECTED_SERVICES.values() for m in methods}


def test_every_errno_named_in_the_protos_exists():
    for path in PROTO_FILES:
        comments = "\n".join(
            line.split("//", 1)[1] for line in path.read_text().splitlines() if "//" in line
        )
        for name in set(re.findall(r"\bE[A-Z0-9]{2,}\b", comments)):
            if name in {"EOF", "ERROR", "ERRORS"}:  # words, not errnos
                continue
            assert isinstance(getattr(errno, name, None), int), f"{path.name}: unknown errno {name}"


def test_documented_errno_table_is_the_code():
    text = (PROTO_DIR / "common.proto").read_text()
    table = dict(
        (name, code)
        for name, code in re.findall(r"^//\s+(E[A-Z0-9]+)\s*\(\s*\d+\)\s+([A-Z_]+)", text, re.M)
    )
    assert table, "no errno table in common.proto"
    assert {errno_from_name(n): grpc.StatusCode[c] for n, c in table.items()} == ERRNO_TO_CODE
    for name, code in table.items():  # the numbers in the table are Linux's
        number = int(re.search(rf"//\s+{name}\s*\(\s*(\d+)\)", text).group(1))
        assert number == getattr(errno, name)
    fallback = dict(re.findall(r"([A-Z_]+)→(E[A-Z]+)", text))
    assert {grpc.StatusCode[c]: errno_from_name(e) for c, e in fallback.items()} == CODE_TO_ERRNO


def test_design_mapping_holds():
    design = {
        errno.EINVAL: grpc.StatusCode.INVALID_ARGUMENT,
        errno.ENOENT: grpc.StatusCode.NOT_FOUND,
        errno.EEXIST: grpc.StatusCode.ALREADY_EXISTS,
        errno.EBUSY: grpc.StatusCode.FAILED_PRECONDITION,
        errno.ENODEV: grpc.StatusCode.UNAVAILABLE,
        errno.ENOMEM: grpc.StatusCode.RESOURCE_EXHAUSTED,
        errno.EPERM: grpc.StatusCode.PERMISSION_DENIED,
    }
    for number, code in design.items():
        assert rpc_errors.status_code_for_errno(number) == code
    assert rpc_errors.status_code_for_errno(errno.ENOLINK) == grpc.StatusCode.UNKNOWN
    assert set(CODE_TO_ERRNO) == set(grpc.StatusCode) - {grpc.StatusCode.OK}
    assert rpc_errors.errno_for_status_code(grpc.StatusCode.OK) == 0


# --- KernelError, identity, addresses ------------------------------------------------------


def test_kernel_error():
    err = KernelError(errno.EINVAL, "no function matches 'foo'", syscall="write", path="/x")
    assert (err.errno, err.name, err.strerror) == (22, "EINVAL", "Invalid argument")
    assert err.message == "no function matches 'foo'"
    assert str(err) == "EINVAL: Invalid argument (no function matches 'foo')"
    assert KernelError(-errno.ENODEV).errno == errno.ENODEV
    assert KernelError.from_name("ENODEV").strerror == "No such device"
    with pytest.raises(ValueError):
        KernelError(0)
    import pickle

    again = pickle.loads(pickle.dumps(err))
    assert (again.errno, again.message, again.syscall, again.path) == (22, err.message, "write", "/x")
    assert errno_name(errno.EAGAIN) == "EAGAIN" and errno_name(9999) == "E9999"
    assert errno_from_name("E9999") == 9999 and errno_from_name("einval") == 22
    with pytest.raises(ValueError):
        errno_from_name("NOPE")


def test_identity_defaults_and_limits():
    me = Identity()
    assert me.pid == os.getpid() and 0 < len(me.comm) <= 15
    assert Identity(42, "bash").metadata() == ((PID_METADATA_KEY, "42"), (COMM_METADATA_KEY, "bash"))
    assert Identity(42, "a" * 40).comm == "a" * 15
    assert Identity.current("bash").comm == "bash"
    assert default_comm("/usr/bin/ftrace-shell") == "ftrace-shell"
    assert default_comm("/x/a-very-long-program-name") == "a-very-long-pro"
    for bad in (dict(pid=-1), dict(pid=5_000_000), dict(pid=1, comm="tab\there")):
        with pytest.raises(ValueError):
            Identity(**bad)


def test_parse_identity_metadata():
    assert parse_identity_metadata([]) == (None, None, None)
    assert parse_identity_metadata([("x-ftrace-pid", "20903"), ("x-ftrace-comm", "bash")]) == (20903, "bash", None)
    assert parse_identity_metadata([("x-ftrace-pid", "000000000042")]) == (42, None, None)
    assert parse_identity_metadata([("x-ftrace-comm", "c" * 20), ("other", "x")]) == (None, "c" * 15, None)
    for bad in (
        [("x-ftrace-pid", "abc")],
        [("x-ftrace-pid", "0")],
        [("x-ftrace-pid", "-5")],
        [("x-ftrace-pid", "4194305")],
        [("x-ftrace-pid", "9" * 5000)],  # past int()'s own digit limit
        [("x-ftrace-comm", "")],
        [("x-ftrace-comm", "a\x01b")],
        [("x-ftrace-pid", "1"), ("x-ftrace-pid", "2")],
    ):
        with pytest.raises(KernelError) as info:
            parse_identity_metadata(bad)
        assert info.value.errno == errno.EINVAL


def test_addresses(monkeypatch, tmp_path):
    monkeypatch.delenv(ADDRESS_ENV, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert default_address() == f"unix:{tmp_path}/ftraced.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_address() == f"unix:/tmp/ftraced-{os.getuid()}.sock"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))
    assert default_address() == f"unix:/tmp/ftraced-{os.getuid()}.sock"
    assert resolve_address() == default_address()
    monkeypatch.setenv(ADDRESS_ENV, "127.0.0.1:7000")
    assert resolve_address() == "127.0.0.1:7000"
    assert resolve_address("unix:/a.sock") == "unix:/a.sock"
    assert grpc_target("unix:///tmp/a.sock") == "unix:/tmp/a.sock"
    assert grpc_target("/tmp/a.sock") == "unix:/tmp/a.sock"
    assert grpc_target("unix:rel.sock") == "unix:rel.sock"
    assert grpc_target("localhost:50051") == "localhost:50051"
    assert grpc_target("[::1]:50051") == "[::1]:50051"
    assert unix_socket_path("unix:/run/x.sock") == "/run/x.sock"
    assert unix_socket_path("127.0.0.1:1") is None
    with pytest.raises(ValueError):
        grpc_target("unix:/" + "x" * 200)
    with pytest.raises(ValueError):
        grpc_target("")
    with pytest.raises(ValueError):
        grpc_target("unix://host/path")
    assert host_port("[::1]:50051") == ("::1", 50051)
    assert host_port("localhost:0") == ("localhost", 0)
    assert host_port("unix:/a:1") is None and host_port("dns:///h:1") is None
    assert host_port("bogus") is None
    # gRPC would keep the low 16 bits (99999 -> 34463): a port above 65535 is refused.
    with pytest.raises(ValueError, match="port 99999 out of range"):
        grpc_target("127.0.0.1:99999")
    # Only the forms ftraced listens on: anything else is refused, not tried until a timeout.
    for address in ("foo", "localhost", "dns:///localhost:50051", "host:port"):
        with pytest.raises(ValueError) as info:
            grpc_target(address)
        assert str(info.value) == f"expected {ADDRESS_FORMS}, not {address!r}"


# --- the round trip over a real server -------------------------------------------------------

ERRNOS = sorted(ERRNO_TO_CODE) + [errno.ENOLINK]  # ENOLINK: unlisted -> UNKNOWN
TEST_ERRNO_KEY = "x-test-errno"


def _metadata(context):
    return {key: value for key, value in context.invocation_metadata()}


class _Kernel(kernel_pb2_grpc.KernelServicer):
    def GetConfig(self, request, context):
        md = _metadata(context)
        number = int(md[TEST_ERRNO_KEY])
        abort_with_errno(
            context,
            KernelError(number, f"test {errno_name(number)}", syscall="write", path="/sys/x"),
        )

    def Stats(self, request, context):
        # echoes the caller identity back
        pid, comm, _ = parse_identity_metadata(context.invocation_metadata())
        return kernel_pb2.KernelStats(current_tracer=f"{comm}:{pid}")

    @translate_kernel_errors
    def CheckConsistency(self, request, context):
        raise KernelError(errno.EBUSY, "decorated")

    def Dmesg(self, request, context):
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "plain abort, no errno")

    def ListOps(self, request, context):
        context.set_trailing_metadata(((ERRNO_METADATA_KEY, "ENODEV"),))
        context.abort(grpc.StatusCode.UNAVAILABLE, "errno key only")

    @translate_kernel_errors
    def DmesgFollow(self, request, context):
        yield kernel_pb2.DmesgLines(lines=[kernel_pb2.DmesgLine(seq=1, text="first")])
        raise KernelError(errno.ENODEV, "rebooted")


class _Tracefs(tracefs_pb2_grpc.TracefsServicer):
    @translate_kernel_errors
    def Session(self, request_iterator, context):
        pid, comm, _ = parse_identity_metadata(context.invocation_metadata())
        for seq, request in enumerate(request_iterator, 1):
            if request.HasField("open"):
                yield tracefs_pb2.FileResponse(
                    seq=seq, open=tracefs_pb2.OpenResult(path=f"{comm}:{pid}")
                )
            elif request.HasField("write"):
                err = KernelError(errno.EINVAL, "in-band", syscall="write")
                yield tracefs_pb2.FileResponse(seq=seq, error=rpc_errors.errno_detail(err))
            elif request.HasField("close"):
                yield tracefs_pb2.FileResponse(seq=seq, close=tracefs_pb2.CloseResult())
                return
            else:
                raise KernelError(errno.EINVAL, "protocol error")

    def WriteFile(self, request, context):
        context.set_trailing_metadata(((BYTES_WRITTEN_METADATA_KEY, "2"),))
        abort_with_errno(context, KernelError(errno.EINVAL, syscall="write", path=request.path))


@pytest.fixture(scope="module")
def server_address(tmp_path_factory):
    socket_path = tmp_path_factory.mktemp("rpc") / "s.sock"
    address = f"unix:{socket_path}"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    kernel_pb2_grpc.add_KernelServicer_to_server(_Kernel(), server)
    tracefs_pb2_grpc.add_TracefsServicer_to_server(_Tracefs(), server)
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    assert server.add_insecure_port(address) != 0
    server.start()
    yield address
    server.stop(grace=None).wait()


@pytest.fixture(scope="module")
def shared_conn(server_address):
    with connect(server_address, Identity(20903, "bash"), wait=10) as connection:
        yield connection


@pytest.fixture
def conn(shared_conn):
    shared_conn.identity = Identity(20903, "bash")
    return shared_conn


@pytest.mark.parametrize("number", ERRNOS, ids=[errno_name(n) for n in ERRNOS])
def test_errno_round_trip(conn, number):
    with pytest.raises(grpc.RpcError) as info:
        conn.kernel.GetConfig(kernel_pb2.GetConfigRequest(), metadata=[(TEST_ERRNO_KEY, str(number))])
    rpc_error = info.value
    assert rpc_error.code() == rpc_errors.status_code_for_errno(number)
    assert dict(rpc_error.trailing_metadata())[ERRNO_METADATA_KEY] == errno_name(number)

    # any language: the standard rich status decodes, and holds the ErrnoDetail
    rich = rpc_status.from_call(rpc_error)
    assert isinstance(rich, status_pb2.Status)
    detail = common_pb2.ErrnoDetail()
    assert rich.details[0].Unpack(detail)
    assert (detail.number, detail.name, detail.strerror) == (number, errno_name(number), os.strerror(number))

    error = FtraceError.from_rpc(rpc_error)
    assert error.errno == number
    assert error.errno_name == errno_name(number)
    assert error.strerror == os.strerror(number)
    assert error.message == f"test {errno_name(number)}"
    assert (error.syscall, error.path) == ("write", "/sys/x")
    assert error.code == rpc_errors.status_code_for_errno(number)
    assert error.from_kernel is True

    with pytest.raises(FtraceError) as converted:
        with translate_rpc_errors():
            conn.kernel.GetConfig(kernel_pb2.GetConfigRequest(), metadata=[(TEST_ERRNO_KEY, str(number))])
    assert converted.value.errno == number
    assert isinstance(converted.value.__cause__, grpc.RpcError)


def test_decorated_unary_and_raise_from_rpc(conn):
    with pytest.raises(FtraceError) as info:
        try:
            conn.kernel.CheckConsistency(kernel_pb2.CheckConsistencyRequest())
        except grpc.RpcError as e:
            raise_from_rpc(e)
    assert info.value.errno == errno.EBUSY and info.value.message == "decorated"
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_errno_key_without_rich_status(conn):
    with pytest.raises(FtraceError) as info, translate_rpc_errors():
        conn.kernel.ListOps(kernel_pb2.ListOpsRequest())
    assert info.value.errno == errno.ENODEV and info.value.from_kernel


def test_plain_status_falls_back_to_the_code(conn):
    with pytest.raises(FtraceError) as info, translate_rpc_errors():
        conn.kernel.Dmesg(kernel_pb2.DmesgRequest())
    assert info.value.errno == errno.EPERM
    assert info.value.from_kernel is False
    assert info.value.message == "plain abort, no errno"


def test_server_stream_error_after_data(conn):
    received = []
    with pytest.raises(FtraceError) as info, translate_rpc_errors():
        for chunk in conn.kernel.DmesgFollow(kernel_pb2.DmesgFollowRequest()):
            received.append(chunk)
    assert [c.lines[0].text for c in received] == ["first"]
    assert info.value.errno == errno.ENODEV and info.value.message == "rebooted"


def test_write_file_extra_trailers_are_kept(conn):
    with pytest.raises(FtraceError) as info, translate_rpc_errors():
        conn.tracefs.WriteFile(tracefs_pb2.WriteFileRequest(path="/p", data=b"a nosuch\n"))
    assert info.value.errno == errno.EINVAL
    assert (info.value.syscall, info.value.path) == ("write", "/p")
    assert info.value.bytes_written == 2


def test_identity_metadata_reaches_the_server(conn):
    assert conn.kernel.Stats(kernel_pb2.StatsRequest()).current_tracer == "bash:20903"
    # explicit metadata wins over the connection's identity
    response = conn.kernel.Stats(kernel_pb2.StatsRequest(), metadata=[(COMM_METADATA_KEY, "insmod")])
    assert response.current_tracer == "insmod:20903"
    conn.identity = Identity(7, "modprobe")
    assert conn.kernel.Stats(kernel_pb2.StatsRequest()).current_tracer == "modprobe:7"


def test_bidi_session_in_band_errors(conn):
    requests = [
        tracefs_pb2.FileRequest(open=tracefs_pb2.OpenRequest(path="/f", flags=os.O_WRONLY | os.O_TRUNC)),
        tracefs_pb2.FileRequest(write=tracefs_pb2.WriteRequest(data=b"nosuch\n")),
        tracefs_pb2.FileRequest(close=tracefs_pb2.CloseRequest()),
    ]
    responses = list(conn.tracefs.Session(iter(requests)))
    assert [r.seq for r in responses] == [1, 2, 3]
    assert responses[0].open.path == "bash:20903"  # identity on a bidi stream too
    assert responses[1].WhichOneof("result") == "error"
    error = FtraceError.from_detail(responses[1].error)
    assert (error.errno, error.syscall, error.strerror) == (errno.EINVAL, "write", "Invalid argument")
    assert responses[2].WhichOneof("result") == "close"
    # a protocol error ends the stream with an errno status
    with pytest.raises(FtraceError) as info, translate_rpc_errors():
        list(conn.tracefs.Session(iter([tracefs_pb2.FileRequest()])))
    assert info.value.errno == errno.EINVAL and info.value.message == "protocol error"


def test_malformed_identity_is_einval(conn):
    with pytest.raises(FtraceError) as info, translate_rpc_errors():
        list(conn.tracefs.Session(iter([tracefs_pb2.FileRequest()]), metadata=[(PID_METADATA_KEY, "x")]))
    assert info.value.errno == errno.EINVAL


def test_health(conn):
    assert conn.check_health()


def test_unreachable_daemon(tmp_path):
    address = f"unix:{tmp_path}/nobody.sock"
    with Connection(address) as connection:
        with pytest.raises(FtraceError) as info, translate_rpc_errors():
            connection.kernel.Stats(kernel_pb2.StatsRequest(), timeout=5)
        assert info.value.errno == errno.ECONNREFUSED and not info.value.from_kernel
    with pytest.raises(FtraceError):
        connect(address, wait=0.1)


def test_waiting_for_a_daemon_no_daemon_could_answer_fails_at_once_with_the_reason(tmp_path):
    """Not after the whole timeout: where no daemon could listen, the socket's directory
    missing or a file that is no socket there (ftraced would not replace it either)."""
    plain = tmp_path / "plain"
    plain.write_text("")
    for address, number in [(f"unix:{tmp_path}/missing/nobody.sock", errno.ENOENT),
                            (f"unix:{plain}", errno.ECONNREFUSED)]:
        started = time.monotonic()
        with pytest.raises(FtraceError) as info:
            connect(address, wait=60)
        assert time.monotonic() - started < 30
        assert (info.value.errno, info.value.message, info.value.from_kernel) == (
            number, f"ftraced at {address}", False)


def test_waiting_for_a_daemon_still_starting_lasts_the_timeout_then_gives_the_reason(tmp_path):
    """A socket not there yet, a socket or a port nobody listens on yet: what a daemon
    still starting looks like, tried until the deadline; then the last errno, not "timed
    out". An address that accepts but never answers is ETIMEDOUT."""
    with socket.socket() as bound, socket.socket(socket.AF_UNIX) as unbound, \
            socket.socket(socket.AF_UNIX) as mute:
        bound.bind(("127.0.0.1", 0))  # bound, not listening: nobody can connect
        unbound.bind(str(tmp_path / "left.sock"))  # what a killed daemon leaves
        mute.bind(str(tmp_path / "mute.sock"))
        mute.listen()  # accepts connections, never speaks gRPC
        cases = [(f"unix:{tmp_path}/nobody.sock", errno.ENOENT),
                 (f"unix:{tmp_path}/left.sock", errno.ECONNREFUSED),
                 (f"127.0.0.1:{bound.getsockname()[1]}", errno.ECONNREFUSED),
                 (f"unix:{tmp_path}/mute.sock", errno.ETIMEDOUT)]
        for address, number in cases:
            started = time.monotonic()
            with pytest.raises(FtraceError) as info:
                connect(address, wait=0.5)
            assert time.monotonic() - started >= 0.5, address
            assert (info.value.errno, info.value.from_kernel) == (number, False)


def test_a_wait_past_grpcs_longest_deadline_is_a_wait_in_slices(tmp_path, monkeypatch):
    """gRPC's deadline is time.time() + timeout, which overflows into the past beyond
    about 7e9 s: --connect-timeout 9e9 failed at once. The health check that waits for
    the daemon is made in slices of at most _ANSWER_SLICE (the socket tried between
    them), each far below that."""
    asked = []

    class RecordingHealth:
        def __init__(self, channel) -> None:
            pass

        def Check(self, request, timeout=None, wait_for_ready=None):
            asked.append(timeout)
            return health_pb2.HealthCheckResponse(
                status=health_pb2.HealthCheckResponse.SERVING)

    monkeypatch.setattr(connection_module.health_pb2_grpc, "HealthStub", RecordingHealth)
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(tmp_path / "d.sock"))
        listening.listen()
        for wait in (9e9, 60.0):
            connect(f"unix:{tmp_path}/d.sock", wait=wait).close()
    assert asked == [connection_module._ANSWER_SLICE] * 2


def test_a_daemon_that_went_away_during_the_wait_is_not_waited_for(tmp_path):
    """A connection accepted, then the listener gone, its socket left behind (a daemon
    killed as it started): DaemonLost at once, with the refusal's errno, not ETIMEDOUT
    (nor a retry for a daemon still starting) at the end of the wait."""
    path = str(tmp_path / "d.sock")
    failed: list[BaseException] = []

    def wait() -> None:
        try:
            connect(f"unix:{path}", wait=WAIT).close()
        except BaseException as error:  # noqa: BLE001  (handed to the test's thread)
            failed.append(error)

    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(path)
        listening.listen()
        listening.settimeout(WAIT)
        waiting = threading.Thread(target=wait)
        started = time.monotonic()
        waiting.start()
        accepted, _ = listening.accept()  # the wait's first connection
        accepted.close()
    waiting.join(WAIT)
    assert time.monotonic() - started < WAIT / 2
    [error] = failed
    assert isinstance(error, DaemonLost)
    assert (error.errno, error.message, error.from_kernel) == (
        errno.ECONNREFUSED, f"ftraced at unix:{path} went away", False)


def test_a_daemon_that_answered_is_not_waited_for_when_it_refuses(tmp_path):
    """``answered``: the caller had the daemon's answers on another connection (a stress
    worker of a run under way), so a socket left behind (SIGKILL) or removed (SIGTERM)
    is the daemon gone, said at once; without it, the same is waited for as a daemon
    still starting (test_waiting_for_a_daemon_still_starting_...)."""
    with socket.socket(socket.AF_UNIX) as left:
        left.bind(str(tmp_path / "left.sock"))
        for address, number in [(f"unix:{tmp_path}/left.sock", errno.ECONNREFUSED),
                                (f"unix:{tmp_path}/removed.sock", errno.ENOENT)]:
            started = time.monotonic()
            with pytest.raises(DaemonLost) as info:
                connect(address, wait=WAIT, answered=True)
            assert time.monotonic() - started < WAIT / 2, address
            assert info.value.errno == number, address


def test_waiting_for_a_daemon_finds_it_when_it_comes(tmp_path, monkeypatch):
    """``ftraced & ftrace-shell``: the client looks before the daemon made its socket. The
    server starts once the client has been refused (ENOENT), and the wait ends then."""
    address = f"unix:{tmp_path}/late.sock"
    refused = threading.Event()
    probe = connection_module._refusal

    def noting_refusal(*args):
        number = probe(*args)
        if number is not None:
            refused.set()
        return number

    monkeypatch.setattr(connection_module, "_refusal", noting_refusal)
    with futures.ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(connect, address, wait=60)
        assert refused.wait(timeout=30)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
        assert server.add_insecure_port(address) != 0
        server.start()
        try:
            with waiting.result(timeout=30) as connection:
                assert connection.check_health()
        finally:
            server.stop(grace=None).wait()
