"""The Kernel and Modules services against what their contract promises
(proto/ftrace/v1/kernel.proto, modules.proto, common.proto), through a real ftraced:
reboot and the calls bound to a boot, the fields the messages promise, and the errors
the RPCs document."""

from __future__ import annotations

import errno
import glob
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from clients.api import Client, RequestQueue
from clients.errors import FtraceError
from clients.identity import Identity
from ftrace.v1 import kernel_pb2, modules_pb2, modules_pb2_grpc, tracefs_pb2
from kernel_daemon.module.address_space import MODULES_VADDR
from kernel_daemon.module.catalog import load_catalog
from tests.daemon_fixture import in_process, spawn  # noqa: F401  (spawn: a fixture)

PROTO_DIR = Path(__file__).resolve().parent.parent / "proto" / "ftrace" / "v1"
T = "/sys/kernel/debug/tracing"
CORE = ["--core-functions", "2000"]
# Reboots keep the small kernel (a zero field would take the 40,960-function default).
SMALL = {"core_functions": 2000}
# How long a call that should end at once may take; far below the deadlines of the calls
# themselves, so a call that only ends at its deadline fails the test.
PROMPTLY = 30.0
CALL_DEADLINE = 120.0
FILTER_RELEASE = "ftrace_regex_release:before_lock"
LOAD_COUNT = "ftrace_update_code:before_count"


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll a condition of the daemon's state until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.02)


def failpoint(client: Client, name: str) -> kernel_pb2.Failpoint:
    """The site ``name`` as ListFailpoints reports it."""
    (state,) = [fp for fp in client.list_failpoints() if fp.name == name]
    return state


def failing(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> FtraceError:
    with pytest.raises(FtraceError) as exc:
        fn(*args, **kwargs)
    return exc.value


class Background:
    """A call run on a thread of its own; :meth:`outcome` is its result or its error."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._outcome: list[Any] = []
        self.thread = threading.Thread(target=self._run, args=(fn, args), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple) -> None:
        try:
            self._outcome.append(fn(*args))
        except Exception as error:  # the outcome under test
            self._outcome.append(error)

    def outcome(self, timeout: float = PROMPTLY) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the call did not end within {timeout} s"
        return self._outcome[0]


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


def segments_of(pid: int) -> list[str]:
    return sorted(os.path.basename(p) for p in glob.glob(f"/dev/shm/ftsim.{pid}.*"))


def reload_under_a_filter(client: Client) -> None:
    """The report's reproducer up to its last step: uinput reloaded while the function
    tracer traces uinput_release. On a buggy kernel, ``echo nop > current_tracer`` then
    WARNs and kills ftrace."""
    client.load("uinput")
    client.write_file(f"{T}/set_ftrace_filter", "uinput_release\n")
    client.write_file(f"{T}/current_tracer", "function\n")
    client.unload("uinput")
    client.load("uinput")


# --- Reboot -------------------------------------------------------------------------------


def test_reboot_refuses_a_bad_failpoint_and_the_old_kernel_stays(client):
    client.load("uinput")
    boot_id = client.config().boot_id
    unknown = failing(client.reboot, failpoints={"nowhere:at_all": "1*pause"}, **SMALL)
    assert (unknown.errno, unknown.code) == (errno.ENOENT, grpc.StatusCode.NOT_FOUND)
    assert unknown.from_kernel and "nowhere:at_all" in unknown.message
    malformed = failing(client.reboot, failpoints={FILTER_RELEASE: "garbage"}, **SMALL)
    assert (malformed.errno, malformed.code) == (errno.EINVAL, grpc.StatusCode.INVALID_ARGUMENT)
    assert malformed.from_kernel
    # The refused configs booted nothing: the same kernel, its module still loaded.
    assert client.config().boot_id == boot_id
    assert [m.name for m in client.list_modules()] == ["uinput"]
    config = client.reboot(failpoints={FILTER_RELEASE: "1*pause"}, **SMALL)
    assert config.boot_id == boot_id + 1 and dict(config.failpoints) == {FILTER_RELEASE: "1*pause"}
    assert client.list_modules() == []


def test_reboot_zero_fields_take_the_built_in_defaults_not_the_last_boots(spawn):
    daemon = spawn([*CORE, "--switch-interval", "0.0005", "--cpus", "2"])
    with Client(daemon.address) as client:
        assert (client.config().switch_interval, client.config().cpus) == (0.0005, 2)
        config = client.reboot(**SMALL)
        assert (config.switch_interval, config.cpus) == (0.0, 4)  # Python's 0.005, 4 CPUs
        # Past the microseconds CPython counts in (which would read back as 0), negative,
        # over a second, not a number: refused, and the kernel stays.
        for absurd in (5e-324, 1e-7, -0.001, 2.0, 1e308, float("nan"), float("inf")):
            refused = failing(client.reboot, switch_interval=absurd, **SMALL)
            assert (refused.errno, refused.from_kernel) == (errno.EINVAL, True), absurd
        assert client.config().boot_id == config.boot_id
        assert client.reboot(switch_interval=1e-6, **SMALL).switch_interval == 1e-6


def test_a_race_named_twice_is_one_window(spawn):
    """BootConfig.races is a set (distinct values, in no order): a window named twice, at
    a Reboot or on ftraced's command line, is open once and said once. It was said twice."""
    daemon = spawn([*CORE, "--race", "load-count", "--race", "load-count"])
    with Client(daemon.address) as client:
        assert list(client.config().races) == [kernel_pb2.RACE_LOAD_COUNT]
        config = client.reboot(races=["publish-early", "load-count", "publish-early"], **SMALL)
        for races in (config.races, client.config().races):
            assert sorted(races) == [kernel_pb2.RACE_LOAD_COUNT, kernel_pb2.RACE_PUBLISH_EARLY]


def test_reboot_ends_the_calls_bound_to_the_old_boot_with_enodev(client, daemon):
    """A tracer's stream, a trace_pipe reader and a failpoint waiter, all idle in the old
    boot, end with ENODEV as soon as the reboot is done, without waiting for their
    clients' next request or their deadlines; a file session gets ENODEV for its next
    request."""
    session_requests = RequestQueue()
    session = client.connection.tracefs.Session(iter(session_requests), timeout=CALL_DEADLINE)
    session_requests.put(
        tracefs_pb2.FileRequest(open=tracefs_pb2.OpenRequest(path=f"{T}/tracing_on")))
    assert next(session).WhichOneof("result") == "open"

    tracer = client.attach("old-boot", ["schedule"])

    def read_trace_pipe() -> None:
        for _ in client.connection.tracefs.TracePipe(tracefs_pb2.TracePipeRequest(),
                                                     timeout=CALL_DEADLINE):
            pass

    pipe = Background(read_trace_pipe)
    wait_until(lambda: client.stats().open_files == 2)  # the session's file and trace_pipe
    waiter = Background(client.wait_failpoint, FILTER_RELEASE, 1, None)  # no time limit
    # Waiting in the old boot, not merely called: a call entering after the reboot would
    # wait on the new boot's failpoint.
    wait_until(lambda: failpoint(client, FILTER_RELEASE).waiters == 1)

    client.reboot(**SMALL)
    session_requests.put(tracefs_pb2.FileRequest(read=tracefs_pb2.ReadRequest()))
    with pytest.raises(grpc.RpcError) as ended:
        next(session)
    assert errno_of(ended.value) == errno.ENODEV
    assert errno_of(pipe.outcome()) == errno.ENODEV
    waited = waiter.outcome()
    assert (errno_of(waited), FtraceError.from_rpc(ended.value).message, waited.message) == (
        errno.ENODEV, "the kernel rebooted", "the kernel rebooted")
    wait_until(lambda: tracer.ended, PROMPTLY)
    assert failing(tracer.flush).errno == errno.ENODEV
    tracer.cancel()
    session_requests.end()
    wait_until(lambda: client.stats().open_files == 0)
    assert client.list_ops() == [] and client.check_consistency().ok


def test_a_failpoint_waiter_ends_with_enodev_saying_the_daemon_stops(spawn):
    """SIGTERM ends the boot as a reboot does, and the ENODEV a call waiting in it gets
    says so: the daemon is stopping (a retry will not find the kernel back)."""
    daemon = spawn(SMALL)
    with daemon.connect() as client:
        waiter = Background(client.wait_failpoint, FILTER_RELEASE, 1, None)  # no time limit
        wait_until(lambda: failpoint(client, FILTER_RELEASE).waiters == 1)
        daemon.process.terminate()
        waited = waiter.outcome()
    assert (errno_of(waited), waited.message) == (errno.ENODEV, "ftraced is shutting down")
    assert daemon.process.wait(PROMPTLY) == 0


def test_a_module_load_paused_across_a_reboot_leaves_no_shared_memory(spawn):
    """The load has allocated its record pages and not yet linked them (race load-count,
    paused outside ftrace_lock) when the reboot comes: it finishes against the old
    kernel, and the old boot's segments are all gone, its pages among them."""
    daemon = spawn(CORE + ["--race", "load-count", "--failpoint", f"{LOAD_COUNT}=1*pause"])
    with Client(daemon.address) as client, Client(daemon.address) as loader:
        load = Background(loader.load, "uinput")
        client.wait_failpoint(LOAD_COUNT, timeout=PROMPTLY)
        # Loading, with the reference its init holds (module_unload_init()).
        assert [(m.name, m.state, m.refcount) for m in client.list_modules()] == [
            ("uinput", modules_pb2.MODULE_STATE_COMING, 1)]
        old_namespace = client.stats().shm_namespace
        assert f"{old_namespace}.pg1" in segments_of(daemon.pid)  # uinput's pages
        client.reboot(**SMALL)
        assert load.outcome().name == "uinput"
        namespace = client.stats().shm_namespace
        assert namespace != old_namespace
        assert [s for s in segments_of(daemon.pid) if not s.startswith(namespace + ".")] == []
        assert client.list_modules() == []


def test_a_module_load_that_finds_ftrace_killed_leaves_no_shared_memory(spawn):
    """A load that allocated its pages before a WARN killed ftrace returns without
    linking them (ftrace_process_locs under ftrace_disabled); the pages must still go
    with the boot (the fixture checks /dev/shm after the daemon's exit, too)."""
    daemon = spawn(CORE + ["--variant", "buggy", "--race", "load-count"])
    with Client(daemon.address) as client, Client(daemon.address) as loader:
        reload_under_a_filter(client)
        client.set_failpoint(LOAD_COUNT, "1*pause")
        load = Background(loader.load, "tun")
        client.wait_failpoint(LOAD_COUNT, timeout=PROMPTLY)
        client.write_file(f"{T}/current_tracer", "nop\n")
        assert client.stats().ftrace_disabled
        client.release_failpoint(LOAD_COUNT)
        assert load.outcome().name == "tun"
        old_namespace = client.stats().shm_namespace
        # Core, uinput reloaded, and tun's pages, which were never linked.
        assert [s for s in segments_of(daemon.pid) if ".pg" in s] == [
            f"{old_namespace}.pg{group}" for group in (0, 2, 3)]
        client.reboot(**SMALL)
        assert [s for s in segments_of(daemon.pid) if s.startswith(old_namespace + ".")] == []


# --- fields the messages promise ----------------------------------------------------------


def test_list_ops_names_who_registered_each_ops(client, daemon):
    with Client(daemon.address, Identity(777, "ownerproc")) as owner:
        with owner.attach("mine", ["schedule"]):
            client.write_file(f"{T}/current_tracer", "function\n")
            ops = {info.name: info for info in client.list_ops()}
            assert (ops["mine"].owner.pid, ops["mine"].owner.comm) == (777, "ownerproc")
            # The kernel's own ops (the function tracer's) have no owner.
            assert [name for name, info in ops.items() if not info.HasField("owner")] != []
            client.write_file(f"{T}/current_tracer", "nop\n")


def test_dmesg_lines_are_structured(spawn):
    daemon = spawn(CORE + ["--variant", "buggy"])
    with Client(daemon.address) as client:
        boot = client.dmesg_lines()
        assert [(line.seq, line.level) for line in boot.lines] == [(1, 5), (2, 6)]
        assert boot.lines[0].message.startswith("Linux version 3.6.11+")
        assert boot.text == "".join(line.text + "\n" for line in boot.lines)
        with client.dmesg_follow(replay=True) as follow:
            assert next(iter(follow)) == boot.lines[0]
        client.dmesg(clear=True)
        reload_under_a_filter(client)
        client.write_file(f"{T}/current_tracer", "nop\n")  # the report's WARN
        # dmesg -c empties what dmesg shows, not the numbering.
        warn = list(client.dmesg_lines().lines)
        assert [line.seq for line in warn] == list(range(3, 3 + len(warn)))
        assert warn[0].message == "------------[ cut here ]------------"
        assert warn[1].message.startswith("WARNING: at kernel/trace/ftrace.c:1529 ")
        assert {line.level for line in warn} == {4}  # KERN_WARNING
        assert len({line.timestamp_ns for line in warn}) == 1  # one printk
        for line in boot.lines[:] + warn:
            seconds, nanoseconds = divmod(line.timestamp_ns, 1_000_000_000)
            assert line.text == f"[{seconds:5d}.{nanoseconds // 1000:06d}] {line.message}"
        assert warn[0].timestamp_ns > boot.lines[-1].timestamp_ns


def test_failpoints_report_description_evaluations_and_paused_tasks(client, daemon):
    listed = client.list_failpoints()
    assert [fp.name for fp in listed] == sorted(fp.name for fp in listed)
    assert all(fp.description and fp.spec == "" for fp in listed)
    # With a tracer on, installing a filter walks the record pages.
    client.write_file(f"{T}/current_tracer", "function\n")
    before = {fp.name: fp.evaluations for fp in client.list_failpoints()}
    assert client.set_failpoint(FILTER_RELEASE, "1*pause").spec == "1*pause"
    with Client(daemon.address, Identity(4242, "pausedproc")) as writer:
        write = Background(writer.write_file, f"{T}/set_ftrace_filter", "schedule\n")
        paused = client.wait_failpoint(FILTER_RELEASE, timeout=PROMPTLY)
        assert paused.paused == 1 and paused.triggers == 1
        assert [(t.pid, t.comm) for t in paused.paused_tasks] == [(4242, "pausedproc")]
        # "1*pause" ran down: disarmed, which reads as "".
        assert paused.spec == ""
        client.release_failpoint(FILTER_RELEASE)
        assert write.outcome() == len("schedule\n")
    after = {fp.name: fp for fp in client.list_failpoints()}
    assert after[FILTER_RELEASE].evaluations == before[FILTER_RELEASE] + 1
    assert after[FILTER_RELEASE].paused == 0 and not after[FILTER_RELEASE].paused_tasks
    # Installing the filter walked the record pages with no failpoint armed there.
    walk = "__ftrace_hash_rec_update:next_page"
    assert after[walk].evaluations > before[walk] and after[walk].triggers == 0
    assert client.set_failpoint(walk, "yield").spec == "yield"
    assert client.set_failpoint(walk, "off").spec == ""
    client.write_file(f"{T}/current_tracer", "nop\n")


def test_boot_config_reports_the_seed_and_the_buffer_size_it_booted_with(client):
    first = client.config()
    assert first.seed == 0 and first.buffer_size_kb == 1408  # ftraced's defaults
    assert client.read_file(f"{T}/buffer_size_kb") == b"7 (expanded: 1408)\n"
    rebooted = client.reboot(buffer_size_kb=64, **SMALL)
    assert rebooted.buffer_size_kb == 64 and client.config().buffer_size_kb == 64
    # trace_buf_size=: the size the buffer takes when tracing first needs it.
    assert client.read_file(f"{T}/buffer_size_kb") == b"7 (expanded: 64)\n"
    client.write_file(f"{T}/current_tracer", "function\n")
    assert client.read_file(f"{T}/buffer_size_kb") == b"64\n"
    # An unset seed is a fresh random one, reported; a set one is kept.
    seeds = {client.reboot(**SMALL).seed for _ in range(2)}
    assert len(seeds) == 2 and client.config().seed in seeds
    assert client.reboot(seed=5, **SMALL).seed == 5 and client.config().seed == 5


# --- other Kernel RPCs --------------------------------------------------------------------


def test_dump_records_refuses_contradictory_or_malformed_filters(client):
    client.load("uinput")
    for request in (dict(module="uinput", core_only=True), dict(function_glob="["),
                    dict(function_glob="uinput_[rw"), dict(function_glob="*" * 4097)):
        error = failing(client.dump_records, **request)
        assert error.errno == errno.EINVAL and error.from_kernel, request
    assert [r.function for r in client.dump_records(function_glob="uinput_[rw]ead")] == [
        "uinput_read"]
    assert [r.function for r in client.dump_records(function_glob="[!a-z_]*")] == []
    assert len(client.dump_records(module="uinput", function_glob="*" * 4096)) == len(
        client.dump_records(module="uinput"))


def test_dump_records_numbers_pages_along_the_ftrace_pages_list(client):
    """Record.page counts ftrace_pages from the core kernel's first, so a module's first
    page follows the core's last, and (page, index) is each record's place in the list."""
    client.load("uinput")
    client.load("dummy")
    first_page = 0
    for group in (dict(core_only=True), dict(module="uinput"), dict(module="dummy")):
        records = client.dump_records(**group)
        assert [(r.page, r.index) for r in records] == [
            (first_page + i // 256, i % 256) for i in range(len(records))]  # ENTRIES_PER_PAGE
        first_page = records[-1].page + 1  # a group starts a page of its own


def test_wait_failpoint_without_a_timeout_waits_for_the_call_deadline(client, daemon):
    """timeout_ms 0: the wait lasts until the call's deadline, not a fixed 10 s."""
    waiter = Background(client.connection.kernel.WaitFailpoint,
                        kernel_pb2.WaitFailpointRequest(name=FILTER_RELEASE), CALL_DEADLINE)
    # Past the 10 s the daemon used to give up after, the call still waits.
    waiter.thread.join(11.0)
    assert waiter.thread.is_alive()
    client.set_failpoint(FILTER_RELEASE, "1*pause")
    with Client(daemon.address) as writer:
        write = Background(writer.write_file, f"{T}/set_ftrace_filter", "schedule\n")
        assert waiter.outcome().paused == 1
        client.release_failpoint(FILTER_RELEASE)
        write.outcome()


def test_release_failpoint_lets_count_threads_go_oldest_first(spawn):
    # Module loads pause outside every lock (race load-count), so several can wait there.
    daemon = spawn(CORE + ["--race", "load-count"])
    client = Client(daemon.address)
    client.set_failpoint(LOAD_COUNT, "pause")
    loaders = [Client(daemon.address, Identity(500 + i, f"loader{i}")) for i in range(3)]
    loads = []
    for i, (loader, module) in enumerate(zip(loaders, ("uinput", "tun", "loop"))):
        loads.append(Background(loader.load, module))
        client.wait_failpoint(LOAD_COUNT, count=i + 1, timeout=PROMPTLY)
    assert client.release_failpoint(LOAD_COUNT, count=1) == 1
    assert loads[0].outcome().name == "uinput"
    state = failpoint(client, LOAD_COUNT)
    assert [t.pid for t in state.paused_tasks] == [501, 502] and state.paused == 2
    assert loads[1].thread.is_alive() and loads[2].thread.is_alive()
    assert client.release_failpoint(LOAD_COUNT, count=0) == 2
    assert {loads[1].outcome().name, loads[2].outcome().name} == {"tun", "loop"}
    assert client.release_failpoint(LOAD_COUNT, count=3) == 0
    for c in loaders + [client]:
        c.close()


def test_stats_count_warnings_since_boot_whatever_dmesg_c_clears(spawn):
    daemon = spawn(CORE + ["--variant", "buggy"])
    with Client(daemon.address) as client:
        reload_under_a_filter(client)
        client.write_file(f"{T}/current_tracer", "nop\n")  # the report's WARN
        assert client.stats().warnings == 1
        assert "cut here" in client.dmesg(clear=True)
        assert client.dmesg() == "" and client.stats().warnings == 1


def test_a_failpoint_error_at_boot_makes_patching_fail_as_3_6_does(spawn):
    """``--failpoint add_breakpoints=1*error(EFAULT)``: the first call site the function
    tracer enables faults; dmesg has ftrace_bug()'s WARNING and message and x86's report,
    and ftrace is dead (spec §5.2, §2.11)."""
    daemon = spawn(CORE + ["--failpoint", "add_breakpoints=1*error(EFAULT)"])
    with Client(daemon.address) as client:
        assert client.write_file(f"{T}/current_tracer", "function\n") == len("function\n")
        lines = [line.message for line in client.dmesg_lines().lines]
        start = lines.index("------------[ cut here ]------------")
        assert re.fullmatch(r"WARNING: at kernel/trace/ftrace\.c:1578 "
                            r"ftrace_bug\+0x[0-9a-f]+/0x[0-9a-f]+\(\)", lines[start + 1])
        end = next(i for i, line in enumerate(lines) if line.startswith("---[ end trace "))
        # The first record in the walk is the core kernel's first function.
        message, report = lines[end + 1:]
        assert re.fullmatch(r"ftrace faulted on modifying \[<ffffffff81000000>\] "
                            r"do_one_initcall\+0x0/0x[0-9a-f]+", message)
        assert report == "Failed on adding breakpoints (0):"
        stats = client.stats()
        assert stats.ftrace_disabled and stats.warnings == 1
        assert stats.current_tracer == "function"
        dead = failing(client.write_file, f"{T}/set_ftrace_filter", "schedule\n")
        assert (dead.errno, dead.code) == (errno.ENODEV, grpc.StatusCode.UNAVAILABLE)
        state = failpoint(client, "add_breakpoints")
        assert (state.spec, state.evaluations, state.triggers) == ("", 1, 1)


def test_the_error_action_is_refused_where_a_site_cannot_fail_with_it(client):
    for name, spec in [(FILTER_RELEASE, "1*error(EPERM)"), ("add_update", "error(EFAULT)")]:
        refused = failing(client.set_failpoint, name, spec)
        assert (refused.errno, refused.code) == (errno.EINVAL, grpc.StatusCode.INVALID_ARGUMENT)
        assert "cannot fail" in refused.message
    assert client.set_failpoint("add_update", "1*error(EPERM)").spec == "1*error(EPERM)"
    boot_id = client.config().boot_id
    refused = failing(client.reboot, failpoints={"finish_update": "error(EINVAL)"}, **SMALL)
    assert refused.errno == errno.EINVAL and client.config().boot_id == boot_id


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


def test_a_modprobe_whose_module_comes_and_goes_under_it_fails_eexist(tmp_path):
    """modprobe (if_loaded_ok) finds no uinput and loads it; another load of it comes
    first (init_module's EEXIST), and an unload after that, before the module could be
    returned as found: the call fails EEXIST, as init_module did, and uinput is absent.
    It answered with an AttributeError (the module looked up again was None). The two
    others' calls are made inside this one's, at those points of it."""
    with in_process(tmp_path) as (daemon, state):
        modules = state.boot.kernel.modules
        load_module = modules.load_module

        def between_a_load_and_an_unload(spec, *args, **kwargs):
            load_module(spec)
            try:
                return load_module(spec, *args, **kwargs)
            finally:
                modules.delete_module(spec.name)

        modules.load_module = between_a_load_and_an_unload
        with Client(daemon.address) as client:
            error = failing(client.load, "uinput", if_loaded_ok=True)
            listed = client.list_modules()
    assert (error.errno, error.syscall, listed) == (errno.EEXIST, "init_module", [])


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
    # delete_module's name: find_module("") finds nothing, and only the first 55 bytes
    # (MODULE_NAME_LEN - 1), up to a NUL, are read.
    assert failing(client.unload, "").errno == errno.ENOENT
    assert client.unload("", if_absent_ok=True).name == ""
    client.load(name="x" * 55, functions=["g"])
    assert client.unload("x" * 55 + "-and-more").name == "x" * 55
    assert client.unload("m0\0junk").name == "m0"
    for name in ("my-mod", "mdup"):
        client.unload(name)
    assert client.check_consistency().ok


def test_a_module_that_uses_another_through_load_list_unload_and_the_catalog(client):
    """vfat imports fat's exports: the catalog says vfat depends on fat; Load does not
    load fat for it (ENOENT, an Unknown symbol line per import); once fat is there, vfat
    takes a reference on it (used_by, refcount) and fat cannot go first (EAGAIN); vfat's
    unload gives it back. Under the function tracer, then a filter naming functions of
    both, every record stays consistent, the failed load leaving none."""
    catalog = {m.name: m for m in client.catalog()}
    assert {name: list(m.depends) for name, m in catalog.items() if m.depends} == {
        "vfat": ["fat"]}
    client.write_file(f"{T}/current_tracer", "function\n")

    missing = failing(client.load, "vfat")
    assert (missing.errno, missing.code) == (errno.ENOENT, grpc.StatusCode.NOT_FOUND)
    assert missing.message == 'module "vfat" needs symbols no loaded module gives'
    assert missing.from_kernel and client.list_modules() == []
    unknown = [(line.level, line.message) for line in client.dmesg_lines().lines
               if "Unknown symbol" in line.message]
    assert unknown == [(4, f"vfat: Unknown symbol {name} (err 0)")
                       for name in load_catalog()["vfat"].imports]
    assert client.dump_records(module="vfat") == [] and client.check_consistency().ok

    fat = client.load("fat", if_loaded_ok=True)
    vfat = client.load("vfat", if_loaded_ok=True)
    assert (list(fat.used_by), fat.refcount, list(vfat.used_by)) == ([], 0, [])
    assert [(m.name, m.refcount, list(m.used_by)) for m in client.list_modules()] == [
        ("vfat", 0, []), ("fat", 1, ["vfat"])]
    assert re.search(rf"^fat {fat.size} 1 vfat, Live 0x{fat.base:016x}$",
                     client.read_file("/proc/modules").decode(), re.M)
    in_use = failing(client.unload, "fat")
    assert (in_use.errno, in_use.code) == (errno.EAGAIN, grpc.StatusCode.UNAVAILABLE)
    assert in_use.errno_name == "EAGAIN" and in_use.from_kernel
    assert len(client.dump_records(module="vfat")) == vfat.functions
    assert client.check_consistency().ok

    client.write_file(f"{T}/set_ftrace_filter", "fat_scan vfat_lookup\n")
    assert client.check_consistency().ok
    assert client.unload("vfat").name == "vfat"
    assert [(m.name, m.refcount, list(m.used_by)) for m in client.list_modules()] == [
        ("fat", 0, [])]
    assert client.check_consistency().ok
    client.unload("fat")
    assert client.list_modules() == [] and client.check_consistency().ok


def test_a_load_whose_caller_goes_while_it_waits_for_a_module_still_loading_fails(
        client, daemon):
    """vfat's Load waits in resolve_symbol_wait() for fat, paused in its load; its caller
    goes (it cancels the call), which the model takes for the signal that interrupts the
    wait: each symbol gives up at once and fails with EBUSY, before fat is released, and
    vfat is never loaded for nobody."""
    with Client(daemon.address) as loader:
        client.set_failpoint(LOAD_COUNT, "1*pause")
        fat = Background(loader.load, "fat")
        client.wait_failpoint(LOAD_COUNT, timeout=PROMPTLY)
        vfat = client.connection.modules.Load.future(
            modules_pb2.LoadModuleRequest(catalog_name="vfat"))
        # Gone once the daemon has the call (fat's Load was the first), wherever it is.
        wait_until(lambda: client.stats().rpc_counts["/ftrace.v1.Modules/Load"] == 2)
        vfat.cancel()
        with pytest.raises(grpc.FutureCancelledError):
            vfat.result()
        imports = load_catalog()["vfat"].imports
        expected = [line for name in imports for line in (
            (4, "vfat: gave up waiting for init of module fat."),
            (4, f"vfat: Unknown symbol {name} (err -16)"))]

        def vfat_lines() -> list[tuple[int, str]]:
            return [(line.level, line.message) for line in client.dmesg_lines().lines
                    if line.message.startswith("vfat: ")]

        wait_until(lambda: len(vfat_lines()) >= len(expected))
        assert vfat_lines() == expected
        client.release_failpoint(LOAD_COUNT)
        assert fat.outcome().name == "fat"
    assert [(m.name, m.refcount, list(m.used_by)) for m in client.list_modules()] == [
        ("fat", 0, [])]
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
