"""The boot fence (``x-ftrace-boot-id``, common.proto CALLER IDENTITY): a client that says
its task was born in boot N is refused with ENODEV ("the kernel rebooted") once boot N has
ended, before its call does anything; without the key its calls go on, on the new boot.
A boot id that is 0, not decimal, given twice differently, or of a boot not booted yet is
EINVAL, like a bad pid. ftrace-stress's workers carry the run's boot, so none of them
changes a kernel someone rebooted under the run.
"""

from __future__ import annotations

import errno
import json
import os
import queue
import subprocess
from typing import Any, Callable, Iterator

import grpc
import pytest

from clients.api import Client
from clients.errors import FtraceError, translate_rpc_errors
from clients.identity import Identity, parse_identity_metadata
from clients.stress.workers import EXIT_REBOOTED
from ftrace.v1 import kernel_pb2, tracefs_pb2
from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.listing import ALL_FUNCTIONS_BANNER
from kernel_daemon.teardown import REBOOTED
from tests.daemon_fixture import spawn  # noqa: F401  (a fixture)
from tests.test_daemon_process import DEADLINE, start_daemon, stop
from tests.test_daemon_process import serving as daemon_serving
from tests.test_daemon_process import kill as kill_daemon
from tests.test_stress_reboot import CLIENTS, CORE, DURATION, reboot_same, report, stress
from tests.test_tracer_client import wait_until

T = "/sys/kernel/debug/tracing"
FILTER = f"{T}/set_ftrace_filter"
#: The fenced caller's pid: no other caller of these tests has it.
FENCED_PID = 31337


@pytest.fixture
def rebooted(spawn) -> Iterator[Client]:
    """A client of a daemon rebooted once: its first boot has ended, the next serves
    (:func:`boots`)."""
    with spawn(CORE).connect() as client:
        reboot_same(client)
        yield client


def boots(client: Client) -> tuple[int, int]:
    """The ids of the boot a reboot ended and of the boot serving (one more)."""
    serving = client.stats().boot_id
    return serving - 1, serving


def failing(call: Callable[[], Any]) -> FtraceError:
    with pytest.raises(FtraceError) as info:
        call()
    return info.value


def kill(client: Client, pid: int, signal: int = 0) -> kernel_pb2.KillResponse:
    """kill(2) from ``client``: signal 0 asks whether the task exists (ESRCH if not)."""
    with translate_rpc_errors():
        return client.connection.kernel.Kill(kernel_pb2.KillRequest(pid=pid, signal=signal))


def exists(client: Client, pid: int) -> bool:
    """Whether the task is in the serving boot's pid table (or in its kernel now)."""
    try:
        kill(client, pid)
    except FtraceError as error:
        if error.errno != errno.ESRCH:
            raise
        return False
    return True


def write_with(client: Client, metadata: tuple[tuple[str, str], ...]) -> Any:
    """``echo schedule > set_ftrace_filter`` with extra call metadata."""
    with translate_rpc_errors():
        return client.connection.tracefs.WriteFile(
            tracefs_pb2.WriteFileRequest(path=FILTER, data=b"schedule\n"), metadata=metadata)


def is_gone(error: FtraceError) -> bool:
    """The ENODEV of a call whose kernel rebooted, as a call inside it when it ended gets."""
    return (error.errno, error.message, error.from_kernel) == (errno.ENODEV, REBOOTED, True)


#: Boot ids that are malformed.
MALFORMED = [
    (("x-ftrace-boot-id", "0"),),
    (("x-ftrace-boot-id", "two"),),
    (("x-ftrace-boot-id", "-1"),),
    (("x-ftrace-boot-id", "9" * 30),),
    (("x-ftrace-boot-id", "2"), ("x-ftrace-boot-id", "1")),  # given twice, differently
]


def not_booted(serving: int) -> tuple[tuple[str, str]]:
    """The metadata of a caller born in a boot that has not booted yet."""
    return (("x-ftrace-boot-id", str(serving + 1)),)


def test_the_boot_id_of_a_unary_call(rebooted):
    """Absent or the serving boot: as before. An ended boot: ENODEV, nothing written. No
    boot or a malformed id: EINVAL. (The old daemon ignored the key: every call wrote.)"""
    client = rebooted
    ended, serving = boots(client)
    client.write_file(FILTER, "schedule\n")  # absent
    client.identity = Identity(FENCED_PID, "fenced", boot_id=serving)
    client.write_file(FILTER, "schedule_timeout\n", append=True)  # the serving boot
    assert client.read_file(FILTER).split() == [b"schedule", b"schedule_timeout"]

    client.identity = Identity(FENCED_PID, "fenced", boot_id=ended)
    assert is_gone(failing(lambda: client.write_file(FILTER, "scheduler_tick\n")))
    for metadata in [not_booted(serving), *MALFORMED]:
        error = failing(lambda: write_with(client, metadata))
        assert (error.errno, error.code) == (errno.EINVAL, grpc.StatusCode.INVALID_ARGUMENT), \
            metadata
        assert "x-ftrace-boot-id" in error.message, error.message
    client.identity = Identity()
    assert client.read_file(FILTER).split() == [b"schedule", b"schedule_timeout"]


def test_the_key_as_clients_send_it_and_the_daemon_parses_it():
    """One parser reads all three keys; an Identity sends the boot id only when given."""
    assert Identity(42, "x").metadata() == (("x-ftrace-pid", "42"), ("x-ftrace-comm", "x"))
    assert Identity(42, "x", boot_id=3).metadata() == (
        ("x-ftrace-pid", "42"), ("x-ftrace-comm", "x"), ("x-ftrace-boot-id", "3"))
    assert parse_identity_metadata(Identity(42, "x", boot_id=3).metadata()) == (42, "x", 3)
    assert parse_identity_metadata([("X-Ftrace-Boot-Id", b"007")]) == (None, None, 7)
    assert parse_identity_metadata([("x-ftrace-boot-id", "1")] * 2) == (None, None, 1)
    for metadata in MALFORMED:
        with pytest.raises(KernelError) as info:
            parse_identity_metadata(metadata)
        assert info.value.errno == errno.EINVAL and "x-ftrace-boot-id" in str(info.value)
    for bad in (0, -1, True, "1", 1 << 64):
        with pytest.raises(ValueError):
            Identity(1, "x", boot_id=bad)


def test_the_boot_id_of_a_session(rebooted):
    """Tracefs.Session, the same four cases: refused at its start and open."""
    client = rebooted
    ended, serving = boots(client)
    with client.open(FILTER, os.O_WRONLY | os.O_TRUNC) as file:  # absent
        file.write("schedule\n")
    client.identity = Identity(FENCED_PID, "fenced", boot_id=serving)
    with client.open(FILTER, os.O_WRONLY | os.O_APPEND) as file:  # the serving boot
        file.write("schedule_timeout\n")

    client.identity = Identity(FENCED_PID, "fenced", boot_id=ended)
    assert is_gone(failing(lambda: client.open(FILTER, os.O_WRONLY)))
    for metadata in [not_booted(serving), *MALFORMED]:
        session = client.connection.tracefs.Session(
            iter([tracefs_pb2.FileRequest(open=tracefs_pb2.OpenRequest(path=FILTER,
                                                                         flags=os.O_WRONLY))]),
            metadata=metadata)
        error = failing(lambda: next(iter_translated(session)))
        assert (error.errno, error.code) == (errno.EINVAL, grpc.StatusCode.INVALID_ARGUMENT), \
            metadata
    client.identity = Identity()
    assert client.read_file(FILTER).split() == [b"schedule", b"schedule_timeout"]


def iter_translated(responses: Iterator[Any]) -> Iterator[Any]:
    with translate_rpc_errors():
        yield from responses


def test_a_session_started_before_the_reboot_opens_nothing_after_it(spawn):
    """A fenced Session that entered the first boot (its pid in that boot's table, so its
    start was let in) and sends its open after the reboot: ENODEV, not a file of the next."""
    daemon = spawn(CORE)
    with daemon.connect() as client, daemon.connect(Identity(
            FENCED_PID, "fenced", boot_id=client.stats().boot_id)) as fenced:
        requests: queue.SimpleQueue = queue.SimpleQueue()
        session = fenced.connection.tracefs.Session(iter(requests.get, None))
        try:
            # Its start ran: the caller entered the first boot (DaemonState.caller).
            wait_until(lambda: exists(client, FENCED_PID))
            reboot_same(client)
            requests.put(tracefs_pb2.FileRequest(open=tracefs_pb2.OpenRequest(
                path=FILTER, flags=os.O_WRONLY)))
            assert is_gone(failing(lambda: next(iter_translated(session))))
        finally:
            requests.put(None)
            session.cancel()
        assert client.stats().open_files == 0 and not exists(client, FENCED_PID)


def test_a_reboot_between_two_calls_of_one_client(spawn):
    """With the fence the second call fails with the reboot's ENODEV; without it, it works
    on the new boot (as before)."""
    daemon = spawn(CORE)
    with daemon.connect() as plain, daemon.connect(Identity(FENCED_PID, "fenced")) as fenced:
        fenced.identity = Identity(FENCED_PID, "fenced", boot_id=fenced.stats().boot_id)
        fenced.load("uinput")
        plain.load("fat")
        reboot_same(plain)
        error = failing(lambda: fenced.load("uinput"))
        assert is_gone(error) and error.strerror == "No such device"
        plain.load("fat")
        assert [m.name for m in plain.list_modules()] == ["fat"]


def test_a_restarted_ftraced_refuses_a_task_of_the_old_one_as_rebooted(tmp_path):
    """A fenced client whose channel reconnects, unseen, to a new ftraced on the same socket:
    its task was born in a kernel that is gone, and the new daemon's boot ids begin above
    the old one's (state.first_boot_id), so its calls are refused as after a reboot. With
    ids counted from 1 in each daemon, the new boot 1 took it for one of its own."""
    address = f"unix:{tmp_path / 'ftraced.sock'}"
    first = start_daemon("--listen", address)
    second: subprocess.Popen | None = None
    try:
        daemon_serving(first)
        with Client(address, wait=DEADLINE) as client:
            born = client.stats().boot_id
            client.identity = Identity(FENCED_PID, "fenced", boot_id=born)
            client.write_file(FILTER, "schedule\n")
            stop(first)
            second = start_daemon("--listen", address)
            daemon_serving(second)
            client.connection.wait_ready(DEADLINE)
            assert is_gone(failing(lambda: client.write_file(FILTER, "schedule\n")))
            client.identity = Identity()
            assert client.stats().boot_id > born
            assert client.read_file(FILTER) == ALL_FUNCTIONS_BANNER  # nothing written
        stop(second)
    finally:
        for process in (first, second):
            if process is not None:
                kill_daemon(process)


def test_every_call_of_an_ended_boots_task_is_refused(rebooted):
    """Each way a call reaches the kernel (DaemonState.syscall, Tracefs.Session, the
    tracer's stream, Kill's caller) refuses the task of the ended boot, and the serving
    one is as it was: no module, no ops, no filter, no tracer, and the task is not in its
    pid table."""
    client = rebooted
    before, config = client.read_file(FILTER), client.config()
    ended, serving = boots(client)
    client.identity = Identity(FENCED_PID, "fenced", boot_id=ended)
    calls: list[Callable[[], Any]] = [
        client.stats, client.config, client.dmesg, client.list_modules, client.catalog,
        client.list_ops, client.check_consistency, client.list_failpoints,
        lambda: client.load("uinput"),
        lambda: client.read_file(FILTER),
        lambda: client.write_file(FILTER, "schedule\n"),
        lambda: client.write_file(f"{T}/current_tracer", "function\n"),
        lambda: client.list_dir(T),
        lambda: client.stat(FILTER),
        lambda: client.open(FILTER),
        lambda: client.invoke("schedule"),
        lambda: client.attach("fenced", ["schedule"]).flush(),
        lambda: next(iter(client.trace_pipe(nonblock=True))),
        lambda: next(iter(client.dmesg_follow(replay=True))),
        lambda: kill(client, 1),
        lambda: client.reboot(config),
    ]
    for number, call in enumerate(calls):
        error = failing(call)
        assert is_gone(error), (number, error)
    client.identity = Identity()
    stats = client.stats()
    assert (stats.boot_id, stats.modules, stats.ops, stats.current_tracer) == (
        serving, 0, 0, "nop")
    assert client.read_file(FILTER) == before and client.list_ops() == []
    assert not exists(client, FENCED_PID)


def test_no_stress_worker_changes_the_rebooted_kernel(tmp_path, spawn):
    """ftrace-stress rebooted under (test_stress_reboot): its workers carry the run's boot,
    so each stops at its first call after the reboot. The new boot is as a fresh one: no
    module, no ops, the tracer nop, the filters empty, no worker in its pid table. They
    went on loading modules and writing filters there until the run saw the reboot."""
    out = tmp_path / "out"
    daemon = spawn(CORE)
    with daemon.connect() as client:
        fresh = {file: client.read_file(f"{T}/{file}")
                 for file in ("set_ftrace_filter", "set_ftrace_notrace", "current_tracer")}
        with stress(out, "--address", daemon.address, "--duration", str(DURATION), "--seed",
                    "5", "--no-minimize", *CLIENTS) as run:
            wait_until(lambda: (shown := run.progress()) and all(shown[:3]), timeout=120)
            new = reboot_same(client)
            status, stdout = run.finish()
        assert status == 2, stdout
        result = report(out)
        assert result["error"] == result["reboot"]["text"], result["error"]
        workers = result["workers"]
        assert len(workers) == 5
        assert all(w["status"] in (0, EXIT_REBOOTED) and not w["killed_at_stop"]
                   for w in workers), workers
        stats = client.stats()
        assert (stats.boot_id, stats.modules, stats.ops) == (new, 0, 0), stats
        assert client.list_modules() == [] and client.list_ops() == []
        assert {file: client.read_file(f"{T}/{file}") for file in fresh} == fresh
        assert [w["name"] for w in workers if exists(client, w["pid"])] == []
    # A worker whose call met the reboot stopped at it: that call is its last, once.
    with open(out / "history.jsonl", encoding="utf-8") as lines:
        history = [json.loads(line) for line in lines]
    for worker in workers:
        ops = [op for op in history if op["client"] == worker["name"]]
        gone = [i for i, op in enumerate(ops) if op["errno"] == "ENODEV"]
        assert gone in ([], [len(ops) - 1]), (worker, ops[-3:])
        assert (worker["status"] == EXIT_REBOOTED) == bool(gone), (worker, ops[-3:])
