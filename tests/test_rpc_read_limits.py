"""Answers a gRPC client with the default limits can take (tracefs.proto, ANSWER SIZE).

Every gRPC stack refuses a received message over 4 MiB unless told otherwise; these
clients are plain stubs on a channel with no options, as a client in another language
has. An answer built larger would fail RESOURCE_EXHAUSTED at the client, and a read of
trace_pipe would have consumed, for nothing, the events it held."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from clients import inspect as ftrace_inspect
from clients.api import Client, RequestQueue
from clients.connection import grpc_target
from clients.spawn import SpawnedDaemon
from ftrace.v1 import (kernel_pb2, kernel_pb2_grpc, tracefs_pb2, tracefs_pb2_grpc, tracer_pb2,
                       tracer_pb2_grpc)
from kernel_daemon.rpc.kernel_service import AnswerRoom, encoded_size
from kernel_daemon.rpc.state import MAX_ANSWER
from kernel_daemon.rpc.tracefs_service import MAX_READ_ANSWER
from kernel_daemon.rpc.tracer_service import MAX_BATCH
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)

T = "/sys/kernel/debug/tracing"
DEADLINE = 60
#: grpc.max_receive_message_length's default, in every gRPC stack.
DEFAULT_RECEIVE_LIMIT = 4 * 1024 * 1024


@pytest.fixture
def default_channel(daemon) -> Iterator[grpc.Channel]:
    """A channel with gRPC's default limits (no CHANNEL_OPTIONS)."""
    with grpc.insecure_channel(grpc_target(daemon.address)) as channel:
        yield channel


def trace_more_than_an_answer(client: Client) -> int:
    """Reboot ``client``'s daemon into a kernel whose ring buffers hold more trace_pipe
    text than one answer: 40,000 calls of the traced ``schedule`` on each of 2 CPUs.
    Returns how many were traced (80,000: the buffers lose none)."""
    client.reboot(core_functions=512, cpus=2, buffer_size_kb=8192)
    client.write_file(f"{T}/set_ftrace_filter", "schedule\n")
    client.write_file(f"{T}/current_tracer", "function\n")
    return sum(client.invoke("schedule", cpu=cpu, repeat=40_000).traced for cpu in (0, 1))


def test_the_answer_limit_fits_a_default_client():
    # The data plus ReadFileResponse's other fields (tag, length, two bools).
    assert MAX_READ_ANSWER + 16 < DEFAULT_RECEIVE_LIMIT


def test_read_file_of_a_full_trace_pipe_fits_and_consumes_only_what_it_answers(
        daemon, default_channel):
    """More than 4 MiB of trace_pipe text: ReadFile answers what fits, truncated, and
    what it did not answer is still there for the next reader: every event traced is
    read exactly once, none cut in two."""
    with daemon.connect() as client:
        traced = trace_more_than_an_answer(client)
    assert traced == 80_000
    tracefs = tracefs_pb2_grpc.TracefsStub(default_channel)
    answer = tracefs.ReadFile(tracefs_pb2.ReadFileRequest(path=f"{T}/trace_pipe", nonblock=True),
                              timeout=DEADLINE)
    assert answer.truncated and not answer.would_block
    assert MAX_READ_ANSWER - 4096 < len(answer.data) <= MAX_READ_ANSWER
    assert answer.data.endswith(b": schedule\n")
    rest = b"".join(chunk.data for chunk in tracefs.TracePipe(
        tracefs_pb2.TracePipeRequest(nonblock=True), timeout=DEADLINE))
    lines = (answer.data + rest).splitlines()
    assert len(lines) == traced
    assert all(line.endswith(b": schedule") for line in lines)


#: The files over 4 MiB at 300,000 core functions, read by one test on one daemon: reading
#: changes nothing a read of the other sees, and the boot is most of the test's time.
BIG_FILES = ("/proc/kallsyms", f"{T}/available_filter_functions")


def test_a_file_over_4_mib_reads_whole_through_the_client_and_capped_through_a_stub(spawn):
    """At 300,000 core functions /proc/kallsyms is 11 MB and available_filter_functions
    5 MB: ReadFile and a Session read of any count answer at most MAX_READ_ANSWER to a
    default client, and Client.read_file still returns the whole file."""
    daemon = spawn(["--core-functions", "300000"])
    for path in BIG_FILES:
        read_over_4_mib(daemon, path)


def read_over_4_mib(daemon: SpawnedDaemon, path: str) -> None:
    """The test above for one file of ``daemon``'s."""
    with daemon.connect() as client:
        with client.open(path) as file:
            whole = b"".join(file.read_all())
        assert len(whole) > 5_000_000, path
        assert client.read_file(path) == whole, path
        assert client.read_file(path, max_bytes=5_000_000) == whole[:5_000_000], path
    with grpc.insecure_channel(grpc_target(daemon.address)) as channel:
        tracefs = tracefs_pb2_grpc.TracefsStub(channel)
        answer = tracefs.ReadFile(tracefs_pb2.ReadFileRequest(path=path), timeout=DEADLINE)
        assert answer.truncated and whole.startswith(answer.data), path
        assert MAX_READ_ANSWER - 4096 < len(answer.data) <= MAX_READ_ANSWER, path
        answer = tracefs.ReadFile(tracefs_pb2.ReadFileRequest(path=path, max_bytes=10**8),
                                  timeout=DEADLINE)
        assert answer.truncated and len(answer.data) <= MAX_READ_ANSWER, path
        requests = RequestQueue()
        answers = tracefs.Session(iter(requests), timeout=DEADLINE)
        requests.put(tracefs_pb2.FileRequest(open=tracefs_pb2.OpenRequest(path=path)))
        assert next(answers).WhichOneof("result") == "open", path
        requests.put(tracefs_pb2.FileRequest(read=tracefs_pb2.ReadRequest(size=2**32 - 1)))
        first = next(answers).read
        requests.put(tracefs_pb2.FileRequest(read=tracefs_pb2.ReadRequest(size=2**32 - 1)))
        second = next(answers).read
        requests.end()
        assert list(answers) == [], path
    # seq_read() returns what its buffer holds, a page here; the count is no limit.
    assert 0 < len(first.data) <= MAX_READ_ANSWER, path
    assert 0 < len(second.data) <= MAX_READ_ANSWER, path
    assert first.data + second.data == whole[:second.offset], path


def test_read_file_continues_a_pipe_from_where_its_answer_ended(daemon):
    """Client.read_file of trace_pipe over an answer's size: the rest is read on in a
    Session (trace_pipe cannot seek: ESPIPE), every event once."""
    with daemon.connect() as client:
        traced = trace_more_than_an_answer(client)
        lines = client.read_file(f"{T}/trace_pipe", nonblock=True).splitlines()
        assert len(lines) == traced == 80_000
        assert client.read_file(f"{T}/trace_pipe", nonblock=True) == b""


def test_a_hit_batch_holds_at_most_max_batch_hits(default_channel):
    """RegisterOps.max_batch above MAX_BATCH is MAX_BATCH: a batch of hits with long
    names could otherwise pass 4 MiB."""
    tracer = tracer_pb2_grpc.TracerStub(default_channel)
    requests = RequestQueue()
    requests.put(tracer_pb2.TracerRequest(register=tracer_pb2.RegisterOps(
        filter=["schedule"], max_batch=1_000_000, max_delay_ms=600_000, queue_limit=1_000_000)))
    events = tracer.Attach(iter(requests), timeout=DEADLINE)
    assert next(events).WhichOneof("event") == "registered"
    calls = MAX_BATCH + 10
    # A window of calls in flight at a time, not one: only how many there were counts.
    for first in range(0, calls, 64):
        window = [tracer.Invoke.future(tracer_pb2.InvokeRequest(function="schedule"),
                                       timeout=DEADLINE) for _ in range(min(64, calls - first))]
        for call in window:
            call.result()
    requests.put(tracer_pb2.TracerRequest(flush=tracer_pb2.FlushHits()))
    requests.put(tracer_pb2.TracerRequest(unregister=tracer_pb2.UnregisterOps()))
    rest = list(events)
    requests.end()
    batches = [len(e.hits.hits) for e in rest if e.WhichOneof("event") == "hits"]
    assert sum(batches) == calls
    assert max(batches) == MAX_BATCH


#: What an AnswerRoom lets its lists take.
ROOM = MAX_ANSWER - AnswerRoom.OTHER_FIELDS


def name_leaving(left: int) -> str:
    """A name that, as OpsInfo.filter's element (a tag, a 4-byte length, the bytes),
    leaves ``left`` bytes of an AnswerRoom."""
    name = "x" * (ROOM - left - 5)
    assert kernel_pb2.OpsInfo(filter=[name]).ByteSize() == ROOM - left
    return name


def test_an_answer_room_counts_each_element_s_tag_and_length():
    """A list filled to within a few bytes of the room encodes to no more than the room:
    a 2-byte name takes 4 (tag, length, bytes), so with 4k + 3 bytes left k more fit."""
    info = kernel_pb2.OpsInfo()
    assert not AnswerRoom().fill(info.filter, [name_leaving(4 * 10 + 3), *["ab"] * 11],
                                 encoded_size)
    assert len(info.filter) == 1 + 10
    assert info.ByteSize() == ROOM - 3


def test_an_answer_room_cuts_the_lists_to_a_prefix():
    """Once an element did not fit, no later one is taken, in this list or the next,
    though it would fit what is left."""
    room, info = AnswerRoom(), kernel_pb2.OpsInfo()
    assert not room.fill(info.filter, [name_leaving(5), "abcd", "a"], encoded_size)
    assert len(info.filter) == 1
    assert not room.fill(info.notrace, ["a"], encoded_size)
    assert not info.notrace


def test_list_ops_with_every_function_in_a_hash_fits_a_default_client(spawn):
    """A filter of every one of 300,000 functions would take 5.7 MB of names: ListOps
    cuts the names within a default client's 4 MiB and says so, the counts whole."""
    daemon = spawn(["--core-functions", "300000"])
    with daemon.connect() as client:
        client.write_file(f"{T}/set_ftrace_filter", "*")
        client.write_file(f"{T}/current_tracer", "function")  # global_ops registered
        filtered = client.read_file(f"{T}/set_ftrace_filter").splitlines()
    with grpc.insecure_channel(grpc_target(daemon.address)) as channel:
        kernel = kernel_pb2_grpc.KernelStub(channel)
        answer = kernel.ListOps(kernel_pb2.ListOpsRequest(include_hashes=True),
                                timeout=DEADLINE)
    (global_ops,) = [ops for ops in answer.ops if ops.name == "global_ops"]
    assert global_ops.filter_count == len(filtered) > 250_000
    assert global_ops.hashes_truncated
    assert 0 < len(global_ops.filter) < len(filtered)
    assert global_ops.filter[:3] == [name.decode() for name in filtered[:3]]
    assert answer.ByteSize() <= DEFAULT_RECEIVE_LIMIT


def test_check_consistency_with_more_anomalies_than_fit_says_how_many(spawn, capsys):
    """The 8c4f3c3 bug over a module of 40,000 functions, all in a filter: after its
    reload every record is a missing reference, 6 MB of anomalies. CheckConsistency lists
    the first ones within a default client's 4 MiB and counts them all; ``ftrace-inspect
    check --locked`` says how many it left out."""
    daemon = spawn(["--variant", "buggy", "--core-functions", "2000"])
    functions = [f"big_fn_{i}" for i in range(40_000)]
    with daemon.connect() as client:
        base = client.load("big", functions).base
        client.write_file(f"{T}/set_ftrace_filter", "big_fn_*")
        client.write_file(f"{T}/current_tracer", "function")
        client.unload("big")
        assert client.load("big", functions).base == base, "first-fit: the same addresses"
    with grpc.insecure_channel(grpc_target(daemon.address)) as channel:
        kernel = kernel_pb2_grpc.KernelStub(channel)
        report = kernel.CheckConsistency(kernel_pb2.CheckConsistencyRequest(), timeout=DEADLINE)
    assert not report.ok and report.anomaly_count == len(functions)
    assert report.anomalies_truncated and 10_000 < len(report.anomalies) < len(functions)
    assert [a.function for a in report.anomalies] == functions[:len(report.anomalies)]
    assert report.ByteSize() <= DEFAULT_RECEIVE_LIMIT
    left_out = len(functions) - len(report.anomalies)

    assert ftrace_inspect.main(["--address", daemon.address, "check", "--locked"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[len(report.anomalies) - 1] == report.anomalies[-1].message
    assert lines[len(report.anomalies)] == (
        f"... and {left_out} more anomalies: Kernel.CheckConsistency's answer stops within "
        f"a default gRPC client's 4 MiB")
    assert lines[-1].endswith(f": {len(functions)} found")


def test_dump_records_with_the_expecting_ops_named_fits_a_default_client(daemon,
                                                                         default_channel):
    """With include_expected each record names the ops that expect its count: 16 ops of
    63-byte names, every one of them on every record, made a chunk of 4096 records
    4.47 MB. Each chunk stays within a default client's 4 MiB, and all records come."""
    with daemon.connect() as client:
        sessions = [client.attach(f"{n:02d}".ljust(63, "x")) for n in range(16)]
        try:
            records = kernel_pb2_grpc.KernelStub(default_channel).DumpRecords(
                kernel_pb2.DumpRecordsRequest(core_only=True, include_expected=True),
                timeout=DEADLINE)
            chunks = list(records)
            assert not client.list_modules()
            total = client.stats().records
        finally:
            for session in sessions:
                session.unregister()
    assert all(chunk.ByteSize() <= DEFAULT_RECEIVE_LIMIT for chunk in chunks)
    assert sum(len(chunk.records) for chunk in chunks) == total
    assert {len(record.ops) for chunk in chunks for record in chunk.records} == {16}
