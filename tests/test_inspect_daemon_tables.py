"""``ftrace-inspect ops`` and ``ftrace-inspect stats`` against a real ftraced: what a
script checks between its steps, in text and in JSON; a tracer process killed with
SIGKILL leaves the listing as it was before it came; an ops line comes apart into its
fields (a name is one word, the daemon refuses others; the owner, last, may hold
spaces); ``ops --samples`` shows the ops sample a module load paused in the load-count
window holds beside the ops a filter write changed since, and says when no load holds
one."""

from __future__ import annotations

import errno
import json

import pytest

from clients.errors import FtraceError
from clients.identity import Identity
from ftrace.v1 import kernel_pb2
from clients.inspect_daemon import NO_SAMPLES
from tests.daemon_fixture import spawn  # noqa: F401  (fixture)
from tests.test_race_interleavings import ShellProcess
from tests.test_tracer_client import DEADLINE, SMALL, TRACING, Lines, start, wait_until
from tests.test_workload_inspect import inspect_main

LOAD_COUNT = "ftrace_update_code:before_count"
KERNEL_OPS = [
    "ID FLAGS          FILTER NOTRACE NAME       OWNER",
    " 2 ENABLED             1       1 global_ops -",
    " 3 ENABLED|GLOBAL      0       0 trace_ops  -",
]


def test_ops_and_stats_in_text_and_json(spawn, capsys):
    daemon = spawn(SMALL)
    address = ("--address", daemon.address)
    with daemon.connect(Identity(4242, "lab-script")) as client:
        client.load("uinput")
        client.write_file(f"{TRACING}/set_ftrace_filter", "uinput_release\n")
        client.write_file(f"{TRACING}/set_ftrace_notrace", "vfs_read\n")
        client.write_file(f"{TRACING}/current_tracer", "function")
        assert inspect_main(capsys, *address, "ops") == (0, "\n".join(KERNEL_OPS) + "\n", "")

        with client.attach("mine", ["vfs_read"], ["vfs_write"]):
            status, out, err = inspect_main(capsys, *address, "ops", "--hashes")
            assert (status, err) == (0, "")
            lines = out.splitlines()
            # add_ftrace_ops() puts a new ops at the list's head; the columns are as
            # wide as this listing's widest entry.
            assert [line.split() for line in lines] == [
                KERNEL_OPS[0].split(),
                ["6", "ENABLED|DYNAMIC", "1", "1", "mine", "lab-script/4242"],
                ["filter", "vfs_read"], ["notrace", "vfs_write"],
                KERNEL_OPS[1].split(), ["filter", "uinput_release", "[uinput]"],
                ["notrace", "vfs_read"], KERNEL_OPS[2].split()]

            # The hashes' functions only with --hashes, as in the text: without it, no
            # empty list that reads as an empty hash next to its count.
            fields = {f.name for f in kernel_pb2.OpsInfo.DESCRIPTOR.fields}
            status, out, err = inspect_main(capsys, *address, "ops", "--json")
            listed = json.loads(out)
            assert [ops["name"] for ops in listed] == ["mine", "global_ops", "trace_ops"]
            assert listed[0]["filter_count"] == 1
            assert set(listed[0]) == fields - {"filter", "notrace", "hashes_truncated"}
            status, out, err = inspect_main(capsys, *address, "ops", "--hashes", "--json")
            listed = json.loads(out)
            assert (listed[0]["filter"], listed[0]["notrace"]) == (["vfs_read"], ["vfs_write"])
            assert set(listed[0]) == fields

        status, out, err = inspect_main(capsys, *address, "stats")
        assert (status, err) == (0, "")
        stats = dict(line.split(" ", 1) for line in out.splitlines())
        plain = [f.name for f in kernel_pb2.KernelStats.DESCRIPTOR.fields if f.name != "rpc_counts"]
        assert [name for name in stats if not name.startswith("rpc_counts.")] == plain
        assert (stats["ops"], stats["modules"], stats["current_tracer"], stats["open_files"],
                stats["ftrace_disabled"]) == ("1", "1", "function", "0", "false")
        assert int(stats["rpc_counts./ftrace.v1.Tracer/Attach"]) == 1

        status, out, err = inspect_main(capsys, *address, "stats", "--json")
        as_json = json.loads(out)
        assert list(as_json) == [f.name for f in kernel_pb2.KernelStats.DESCRIPTOR.fields]
        assert as_json["streams"] == 0 and as_json["ftrace_enabled"] is True

        with pytest.raises(SystemExit) as usage:
            inspect_main(capsys, *address, "--namespace", "ftsim.1.0", "ops")
        assert usage.value.code == 2
        assert "--namespace and --no-symbols are not for ops" in capsys.readouterr().err


def test_a_killed_tracer_leaves_the_ops_listing_as_it_found_it(spawn, capsys):
    daemon = spawn(SMALL)
    address = ("--address", daemon.address)
    _, before, _ = inspect_main(capsys, *address, "ops")
    tracer = start("clients.tracer", *address, "--name", "victim", "-f", "vfs_read")
    Lines(tracer.stderr).wait_for("ops victim registered")
    _, during, _ = inspect_main(capsys, *address, "ops")
    assert "victim" in during and "victim" not in before
    tracer.kill()
    tracer.communicate()

    def listing() -> str:
        return inspect_main(capsys, *address, "ops")[1]

    assert wait_until(lambda: listing() == before)
    stats = json.loads(inspect_main(capsys, *address, "stats", "--json")[1])
    assert (stats["streams"], stats["open_files"], stats["ops"]) == (0, 0, 0)


@pytest.mark.parametrize("name", ["two words", "tab\there", "new\nline", "a,b", "caf\u00e9",
                                  "nul\0"])
def test_an_ops_name_that_is_not_one_word_is_einval_and_nothing_registers(spawn, name):
    """A name is one field of the listings (ops, records --expected's comma-joined OPS,
    dmesg lines): the daemon refuses any other, as a kernel interface refuses a name it
    cannot hold."""
    daemon = spawn(SMALL)
    with daemon.connect() as client:
        before = client.list_ops()
        with pytest.raises(FtraceError) as refused:
            client.attach(name, ["vfs_read"])
        assert refused.value.errno == errno.EINVAL
        assert "printable ASCII only, no space or comma" in refused.value.message
        assert client.list_ops() == before


def test_the_owner_is_the_rest_of_an_ops_line_as_ps_prints_its_command(spawn, capsys):
    """A comm may hold spaces: the owner comes last, so `read id flags filter notrace
    name owner` takes each line apart (its comm whole)."""
    daemon = spawn(SMALL)
    with daemon.connect(Identity(4242, "lab script")) as client:
        client.write_file(f"{TRACING}/current_tracer", "function")
        with client.attach("mine", ["vfs_read"]):
            status, out, err = inspect_main(capsys, "--address", daemon.address, "ops")
    assert (status, err) == (0, "")
    rows = [line.split(None, 5) for line in out.splitlines()]
    assert rows[0] == ["ID", "FLAGS", "FILTER", "NOTRACE", "NAME", "OWNER"]
    assert rows[1][4:] == ["mine", "lab script/4242"]
    assert [row[4:] for row in rows[2:]] == [["global_ops", "-"], ["trace_ops", "-"]]


def test_ops_samples_show_what_a_paused_load_counts_from_beside_the_ops_now(spawn, capsys):
    """The load-count window as README "Stepping an interleaving" steps it, with a filter
    write as the racing step: the function tracer traces every function when the load
    samples the ops, the write narrows global_ops' filter to vfs_read meanwhile, and the
    view shows the sample's empty filter beside the new entry. The load then counts its
    records from the sample, as the view said it would: a reference the filter no longer
    gives each of them (the leak `check --locked` reports)."""
    daemon = spawn(SMALL + ["--race", "load-count"])
    address = ("--address", daemon.address)
    with daemon.connect() as client:
        client.write_file(f"{TRACING}/current_tracer", "function")
        client.set_failpoint(LOAD_COUNT, "1*pause")
        loading = ShellProcess(daemon.address, "modprobe uinput")
        client.wait_failpoint(LOAD_COUNT, timeout=DEADLINE)
        client.write_file(f"{TRACING}/set_ftrace_filter", "vfs_read\n")
        status, out, err = inspect_main(capsys, *address, "ops", "--samples")
        assert (status, err) == (0, "")
        assert out.splitlines() == [
            f"module uinput: loading by bash/{loading.proc.pid}, paused at {LOAD_COUNT}",
            "  sampled without ftrace_lock (its new records' counts come from these):",
            "    ID FLAGS   FILTER NOTRACE NAME       OWNER",
            "     2 ENABLED      0       0 global_ops -",
            "  enabled now (what ftrace_update_code() reads under ftrace_lock):",
            "    ID FLAGS   FILTER NOTRACE NAME       OWNER",
            "     2 ENABLED      1       0 global_ops -",
            "        filter  vfs_read",
            "  changed since the sample, lost to its counts:",
            "    global_ops (2): filter +vfs_read (was empty: every function, now 1 function)"]
        status, out, err = inspect_main(capsys, *address, "ops", "--samples", "--json")
        answer = json.loads(out)
        [sample] = answer["load_samples"]
        assert (sample["module"], sample["task"], sample["paused"]) == (
            "uinput", {"pid": loading.proc.pid, "comm": "bash"}, True)
        assert [(ops["name"], ops["filter"]) for ops in sample["ops"]] == [("global_ops", [])]
        assert [(ops["name"], ops["filter"]) for ops in answer["enabled_ops"]] == [
            ("global_ops", ["vfs_read"])]

        client.release_failpoint(LOAD_COUNT)
        loading.finish()
        assert inspect_main(capsys, *address, "ops", "--samples") == (0, NO_SAMPLES + "\n", "")
        report = client.check_consistency()
        assert {(a.kind, a.module) for a in report.anomalies} == {
            (kernel_pb2.ANOMALY_KIND_LEAKED_REFERENCE, "uinput")}


def test_ops_samples_without_a_load_in_the_window_and_its_usage_errors(spawn, capsys):
    """On 3.6's locking (no --race) a load holds no sample: the view says so, after the
    load as before it; and it refuses what it cannot do with a usage error."""
    daemon = spawn(SMALL)
    address = ("--address", daemon.address)
    with daemon.connect() as client:
        assert inspect_main(capsys, *address, "ops", "--samples") == (0, NO_SAMPLES + "\n", "")
        client.load("uinput")
        status, out, err = inspect_main(capsys, *address, "ops", "--samples", "--json")
        assert (status, json.loads(out), err) == (
            0, {"load_samples": [], "enabled_ops": []}, "")
    for args, message in (
            (["--samples", "--hashes"], "argument --hashes: not allowed with argument --samples"),
            (["--samples", "uinput"], "unrecognized arguments: uinput")):
        with pytest.raises(SystemExit) as usage:
            inspect_main(capsys, *address, "ops", *args)
        assert usage.value.code == 2
        assert message in capsys.readouterr().err
