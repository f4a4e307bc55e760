"""ftrace-workload, ftrace-modload and ftrace-inspect as programs against a real ftraced.

- The workload makes ``trace`` look like a live system (several tasks with stable pids,
  several CPUs, module functions with plausible parents) and survives a module unloaded
  under it.
- modload cycles modules and names same-address reloads (first-fit).
- inspect reads the records and ring buffers from shared memory: the same as
  enabled_functions and the trace file, its check flags a record caught mid-update, and
  it leaves /dev/shm as it found it.
"""

from __future__ import annotations

import collections
import glob
import os
import re
import signal
import threading

import pytest

from clients import inspect as ftrace_inspect
from clients.identity import Identity
from clients.modload import Modload
from clients.spawn import spawn_daemon
from kernel_daemon.shm import SHM_DIR, reap_stale_segments, segments_of
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.test_tracer_client import (DEADLINE, SMALL, TRACING, Lines, reload_uinput, run,
                                      start, wait_until)

# A name may be empty: 3.6's seq_print_sym_short() prints nothing for an ip no symbol
# covers, such as an unloaded module's (its events stay in the ring buffer).
TRACE_LINE = re.compile(r"^ *(?P<comm>\S+)-(?P<pid>\d+) +\[(?P<cpu>\d{3})\] \.\.\.\. +"
                        r"\d+\.\d{6}: (?P<function>\S*) <-(?P<parent>\S*)$")
# The same line with the sym-addr option: each name followed by " <%016lx>".
TRACE_LINE_SYM_ADDR = re.compile(r"^.*: (?P<function>\S*) <(?P<ip>[0-9a-f]{16})> "
                                 r"<-(?P<parent>\S*) <(?P<parent_ip>[0-9a-f]{16})>$")
DUMMY_FUNCTIONS = {"dummy_set_address", "set_multicast_list", "dummy_get_stats64", "dummy_xmit",
                   "dummy_dev_init", "dummy_dev_uninit", "dummy_setup", "dummy_validate"}


# --- ftrace-workload ----------------------------------------------------------------------


def trace_lines(client) -> list[str]:
    """The trace file's event lines (not its # header)."""
    return [line for line in client.read_file(f"{TRACING}/trace").decode().splitlines()
            if not line.startswith("#")]


def looks_live(lines: list[str]) -> bool:
    """Enough of a live system in the trace: the user tasks the test names, a ksoftirqd,
    three CPUs, the timer interrupt and calls into dummy. The workload's choices are
    random, so the test waits for them rather than for a duration a loaded machine may
    not fill."""
    events = [event for event in map(TRACE_LINE.match, lines) if event]
    comms = {event["comm"] for event in events}
    return (len(events) > 300 and {"systemd", "sshd", "Xorg", "bash"} <= comms
            and any(comm.startswith("ksoftirqd/") for comm in comms)
            and len({event["cpu"] for event in events}) >= 3
            and any(event["function"] in DUMMY_FUNCTIONS for event in events)
            and any(line.endswith("hrtimer_interrupt <-smp_apic_timer_interrupt")
                    for line in lines))


def test_workload_looks_like_a_live_system_and_survives_an_unload(spawn):
    daemon = spawn(SMALL)
    client = daemon.connect()
    client.write_file(f"{TRACING}/buffer_size_kb", "1024")
    client.write_file(f"{TRACING}/current_tracer", "function")
    uinput = client.load("uinput")
    client.load("dummy")
    uinput_functions = {line.split()[0] for line in client.read_file(
        f"{TRACING}/available_filter_functions").decode().splitlines()
        if line.endswith(" [uinput]")}
    # A refresh period longer than the run: only the fault itself can tell the workload
    # that uinput went away.
    workload = start("clients.workload", "--address", daemon.address, "--rate", "3000",
                     "--seed", "1", "--module-share", "0.6", "--refresh", "600")
    err = Lines(workload.stderr)
    err.wait_for("modules: +dummy@0x")
    # uinput's calls in the buffer before it goes, to be printed without their names.
    wait_until(lambda: any(event["function"] in uinput_functions
                           for event in map(TRACE_LINE.match, trace_lines(client)) if event))
    client.unload("uinput")
    err.wait_for("modules: -uinput (EFAULT)")
    wait_until(lambda: looks_live(trace_lines(client)))
    workload.send_signal(signal.SIGINT)
    _, rest = workload.communicate(timeout=DEADLINE)
    assert workload.returncode == 0, err.rest(rest)
    summary = err.rest(rest)
    assert re.search(r"ftrace-workload: \d+ calls \(\d+ invocations, \d+ to modules\) in "
                     r"\d+\.\d\d s; errors: EFAULT=\d+\n$", summary), summary

    lines = trace_lines(client)
    events = [TRACE_LINE.match(line) for line in lines]
    assert all(events), [line for line, event in zip(lines, events) if not event][:5]
    pids = collections.defaultdict(set)
    for event in events:
        pids[event["comm"]].add(event["pid"])
    assert all(len(p) == 1 for p in pids.values()), pids  # one pid per comm
    module_calls = [e for e in events if e["function"] in DUMMY_FUNCTIONS]
    assert all(e["parent"] in DUMMY_FUNCTIONS | {"dev_queue_xmit"} for e in module_calls)

    # The only nameless functions are uinput's, recorded before its unload: the same
    # buffer printed with each ip beside its name says where they were.
    assert any(not event["function"] for event in events)
    client.write_file(f"{TRACING}/trace_options", "sym-addr")
    addressed = [TRACE_LINE_SYM_ADDR.match(line) for line in trace_lines(client)]
    assert len(addressed) == len(events) and all(addressed)
    uinput_text = range(uinput.base, uinput.base + uinput.size)
    for event in addressed:
        for name, ip in (event["function"], event["ip"]), (event["parent"], event["parent_ip"]):
            assert bool(name) == (int(ip, 16) not in uinput_text), event.group(0)
    # A parent ip is a return address inside the caller, a module's caller's too: never
    # the caller's first byte, as a function's own ip is.
    client.write_file(f"{TRACING}/trace_options", "sym-offset")
    offsets = [line.split(": ", 1)[1] for line in trace_lines(client)]
    assert sum("<-" in line for line in offsets) == len(events)
    assert not [line for line in offsets if re.search(r"<-\S*\+0x0/", line)][:5]
    assert client.check_consistency().ok
    client.close()


# --- ftrace-modload -----------------------------------------------------------------------


def test_modload_reports_same_address_reloads_with_first_fit(spawn):
    daemon = spawn(SMALL)
    done = run("clients.modload", "--address", daemon.address, "-m", "uinput", "--count", "3")
    assert done.returncode == 0, done.stderr
    base = "0xffffffffa0000000"
    assert done.stdout.splitlines() == [
        f"modprobe uinput at {base}", "rmmod uinput",
        f"modprobe uinput at {base} (reloaded at the same address)", "rmmod uinput",
        f"modprobe uinput at {base} (reloaded at the same address)", "rmmod uinput",
    ]
    assert done.stderr == "ftrace-modload: 3 loads, 3 unloads, 0 failed\n"
    with daemon.connect() as client:
        assert client.list_modules() == []


def test_modload_several_modules_random_placement_and_unknown_module(spawn):
    daemon = spawn(SMALL)
    done = run("clients.modload", "--address", daemon.address, "-m", "uinput", "-m", "dummy",
               "--count", "8", "--seed", "5", "--placement", "random")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 16
    for load, unload in zip(lines[::2], lines[1::2]):
        # Anywhere in the module space, 0xffffffffa0000000 up to 0xffffffffff000000.
        name = re.fullmatch(r"modprobe (uinput|dummy) at 0xffffffff[a-f][0-9a-f]{7}"
                            r"(?: \(reloaded at the same address\)| \(moved from 0x[0-9a-f]+\))?",
                            load)
        assert name, load
        assert unload == f"rmmod {name[1]}"
    assert {line.split()[1] for line in lines} == {"uinput", "dummy"}

    # kmod's modprobe's words, as the shell's modprobe says them, with the program's name.
    unknown = run("clients.modload", "--address", daemon.address, "-m", "nosuch", "--count", "1")
    with daemon.connect() as client:
        release = client.config().release
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert unknown.stderr == (f"ftrace-modload: FATAL: Module nosuch not found in directory "
                              f"/lib/modules/{release}\n")


def test_modload_loads_what_a_module_depends_on_first_as_modprobe_does(spawn):
    """vfat needs fat (modules.dep): each modprobe inserts fat unless it is loaded, then
    vfat; the rmmod unloads vfat alone, so fat stays, unused, as after the real tools."""
    daemon = spawn(SMALL)
    done = run("clients.modload", "--address", daemon.address, "-m", "vfat", "--count", "2")
    assert done.returncode == 0, done.stderr
    first, unload, again, unload_again = done.stdout.splitlines()
    base = re.fullmatch(r"modprobe vfat at (0x[0-9a-f]+)", first)
    assert base, first
    assert [unload, again, unload_again] == [
        "rmmod vfat", f"modprobe vfat at {base[1]} (reloaded at the same address)",
        "rmmod vfat"]
    assert done.stderr == "ftrace-modload: 2 loads, 2 unloads, 0 failed\n"
    with daemon.connect() as client:
        assert [(m.name, m.refcount, list(m.used_by)) for m in client.list_modules()] == [
            ("fat", 0, [])]


def test_modload_whose_operations_failed_exits_3_and_leaves_a_module_it_found_loaded(spawn):
    """A run whose loads failed (a parameter loop does not take fails each) went to its
    end: status 3, not 0, so a script can tell; a module found loaded by someone else is
    taken as modprobe takes it and left loaded, as it was found (it was rmmod'ed)."""
    daemon = spawn(SMALL)
    failed = run("clients.modload", "--address", daemon.address, "-m", "loop", "foo=1",
                 "--count", "2")
    assert (failed.returncode, failed.stdout) == (3, "")
    assert failed.stderr == (
        "modprobe loop: Unknown symbol in module, or unknown parameter (see dmesg)\n" * 2
        + "ftrace-modload: 0 loads, 0 unloads, 2 failed\n")
    with daemon.connect() as client:
        base = client.load("loop").base
        found = run("clients.modload", "--address", daemon.address, "-m", "loop",
                    "--count", "2")
        assert (found.returncode, found.stdout, found.stderr) == (
            0, f"modprobe loop at {base:#x} (already loaded)\n" * 2,
            "ftrace-modload: 2 loads, 0 unloads, 0 failed\n")
        assert [module.name for module in client.list_modules()] == ["loop"]


def test_modload_forgets_a_module_someone_else_unloaded(spawn):
    """An rmmod that finds the module gone (ENOENT: someone else unloaded it) forgets it:
    loaded again by someone else, it is found loaded, theirs, and not rmmod'ed."""
    daemon = spawn(SMALL)
    with daemon.connect() as client, daemon.connect() as other:
        modload = Modload(client, None)
        assert modload.load("uinput") is True
        other.unload("uinput")
        modload.unload("uinput")
        other.load("uinput")
        assert modload.load("uinput") is False
        assert [module.name for module in other.list_modules()] == ["uinput"]


def test_modload_whose_daemon_died_says_so_in_one_line():
    """The daemon killed under a running loader: one line, that the daemon where it was
    went away and the errno, without gRPC's words for its channel's state ("Stream removed (recvmsg:Connection
    reset by peer (104))"). Not the spawn fixture's daemon: this one dies unclean, and its
    shared memory is reaped as the next boot would."""
    daemon = spawn_daemon(SMALL)
    try:
        loader = start("clients.modload", "--address", daemon.address, "-m", "uinput",
                       "--hold", "0.05")
        Lines(loader.stdout).wait_for("rmmod uinput")
        os.kill(daemon.pid, signal.SIGKILL)
        out, err = loader.communicate(timeout=DEADLINE)
    finally:
        daemon.stop()
        reap_stale_segments()
    assert not glob.glob(f"{SHM_DIR}/ftsim.{daemon.pid}.*")
    lines = err.decode().splitlines()
    assert loader.returncode == 1, lines
    assert re.fullmatch(rf"ftrace-modload: (modprobe|rmmod) uinput: ftraced at "
                        rf"{re.escape(daemon.address)} went away \([A-Z][a-z ]+\)",
                        lines[0]), lines


# --- ftrace-inspect -----------------------------------------------------------------------
# The test process is itself another process than the daemon: most runs call the program's
# main() here (a subprocess costs half a second of imports); one runs it as a program.


def inspect_main(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = ftrace_inspect.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def shm_state(namespace: str) -> dict[str, tuple[int, int]]:
    """The namespace's segments: name -> (inode, size); a recreated one would differ."""
    state = {}
    for name in segments_of(namespace):
        st = os.stat(os.path.join(SHM_DIR, name))
        state[name] = (st.st_ino, st.st_size)
    return state


def test_inspect_records_match_enabled_functions_and_leave_shm_alone(spawn, capsys):
    daemon = spawn(SMALL)
    client = daemon.connect()
    client.load("uinput")
    client.write_file(f"{TRACING}/set_ftrace_filter", "uinput_re* vfs_read\n")
    client.write_file(f"{TRACING}/current_tracer", "function")
    namespace = client.stats().shm_namespace
    before = shm_state(namespace)
    with client.attach("mine", ["vfs_*", "uinput_read"]):
        nonzero = run("clients.inspect", "--address", daemon.address, "records", "--nonzero")
        enabled = client.read_file(f"{TRACING}/enabled_functions").decode()
        _, one, _ = inspect_main(capsys, "--address", daemon.address, "records", "--module",
                                 "uinput", "--function", "*_read")
        _, raw, _ = inspect_main(capsys, "--namespace", namespace, "--no-symbols", "records",
                                 "--nonzero")
        summary = inspect_main(capsys, "--address", daemon.address, "summary")
        # summary prints no names: given the namespace, it asks no daemon for kallsyms.
        nowhere = inspect_main(capsys, "--address", "unix:/nonexistent/ftraced.sock",
                               "--namespace", namespace, "summary")
    assert nonzero.returncode == 0, nonzero.stderr
    header, *lines = nonzero.stdout.splitlines()
    assert header == "IP               FLAGS      COUNT E FUNCTION [MODULE]"
    records = [re.fullmatch(r"([0-9a-f]{16}) (0x[0-9a-f]{8}) +(\d+) ([E.]) (.+)", line)
               for line in lines]
    assert all(records), nonzero.stdout
    # enabled_functions prints "name [module] (count)" for every record with a count.
    assert [f"{r[5]} ({r[3]})" for r in records] == enabled.splitlines()
    assert all(r[4] == "E" and int(r[2], 16) == 0x40000000 | int(r[3]) for r in records)
    assert ("uinput_read [uinput] (2)" in enabled.splitlines()
            and "vfs_read (2)" in enabled.splitlines())

    assert one.splitlines()[1].split()[2:] == ["2", "E", "uinput_read", "[uinput]"]
    raw_header, *raw_lines = raw.splitlines()
    assert raw_header == "IP               FLAGS      COUNT E [MODULE]"
    assert [tuple(line.split()[:4]) for line in raw_lines] == [
        r.group(1, 2, 3, 4) for r in records]
    assert summary[0] == 0 and nowhere == summary
    assert re.search(r"^ +1 uinput +0x[0-9a-f]{16} +26 +6 +6$", summary[1], re.M), summary
    assert shm_state(namespace) == before, "the inspector must not create or unlink segments"
    client.close()


def test_inspect_trace_shows_what_the_trace_file_shows(spawn, capsys):
    daemon = spawn(SMALL)
    client = daemon.connect(Identity(4242, "bash"))
    client.load("uinput")
    client.write_file(f"{TRACING}/current_tracer", "function")
    client.invoke("uinput_release", "__fput", cpu=2, pid=3417, comm="bash")
    client.invoke("vfs_read", "sys_read", cpu=1, repeat=3, pid=0, comm="swapper/1")
    client.write_file(f"{TRACING}/trace_marker", "hello from the test")
    namespace = client.stats().shm_namespace
    before = shm_state(namespace)

    def events(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("#")]

    status, whole, _ = inspect_main(capsys, "--address", daemon.address, "trace")
    assert status == 0
    trace = client.read_file(f"{TRACING}/trace").decode()
    assert events(whole) == events(trace) and len(events(trace)) == 5
    assert "# entries-in-buffer/entries-written: 5/5   #P:4" in whole
    assert "uinput_release <-__fput" in whole
    _, cpu1, _ = inspect_main(capsys, "--address", daemon.address, "trace", "--cpu", "1")
    assert events(cpu1) == events(client.read_file(f"{TRACING}/per_cpu/cpu1/trace").decode())
    assert len(events(cpu1)) == 3
    bad = inspect_main(capsys, "--address", daemon.address, "trace", "--cpu", "9")
    assert bad == (2, "", "ftrace-inspect: no CPU 9: the ring buffer has 4\n")
    assert shm_state(namespace) == before
    client.close()


def test_inspect_trace_names_tasks_from_the_published_saved_cmdlines(spawn, capsys):
    """Like ``trace``, inspect looks each pid up in saved_cmdlines (shared memory): the
    evicted pids print <...>, a renamed task its new comm on every line."""
    daemon = spawn(SMALL)
    client = daemon.connect()
    client.write_file(f"{TRACING}/current_tracer", "function")
    for pid in range(1000, 1130):
        client.invoke("vfs_write", "sys_write", cpu=0, pid=pid, comm=f"t{pid}")
    client.invoke("vfs_write", "sys_write", cpu=0, pid=1129, comm="renamed")

    def tasks(text: str) -> list[str]:
        return [line.split(" [", 1)[0].strip() for line in text.splitlines()
                if not line.startswith("#")]

    status, out, _ = inspect_main(capsys, "--address", daemon.address, "trace")
    assert status == 0
    inspected = tasks(out)
    assert inspected == tasks(client.read_file(f"{TRACING}/trace").decode())
    assert inspected[:3] == ["<...>-1000", "<...>-1001", "t1002-1002"]
    assert inspected[-2:] == ["renamed-1129", "renamed-1129"]
    client.close()


def test_inspect_check_flags_a_record_caught_between_count_and_code_update(spawn, capsys):
    daemon = spawn(SMALL)
    client = daemon.connect()
    client.write_file(f"{TRACING}/set_ftrace_filter", "vfs_read\n")
    client.write_file(f"{TRACING}/current_tracer", "function")
    status, healthy, _ = inspect_main(capsys, "--address", daemon.address, "check",
                                      "--tracing-active")
    assert status == 0, healthy
    assert re.fullmatch(r"check: 2000 records in 1 groups, generation \d+: nothing found\n",
                        healthy)

    # Pause ftrace_hash_move after its disable pass: vfs_read's count is back to 0 but the
    # code update that unpatches it has not run.
    client.set_failpoint("ftrace_hash_move:after_disable", "1*pause")
    writer = threading.Thread(target=client.write_file,
                              args=(f"{TRACING}/set_ftrace_filter", "vfs_write\n"))
    writer.start()
    try:
        client.wait_failpoint("ftrace_hash_move:after_disable", timeout=DEADLINE)
        caught = inspect_main(capsys, "--address", daemon.address, "check")
    finally:
        client.release_failpoint("ftrace_hash_move:after_disable")
        writer.join(DEADLINE)
    assert caught[0] == 1, caught
    assert re.search(r"^[0-9a-f]{16} 0x40000000 +0 E vfs_read: ENABLED with count 0 ",
                     caught[1], re.M), caught
    settled = inspect_main(capsys, "--address", daemon.address, "check", "--tracing-active")
    assert settled[0] == 0, settled
    assert client.read_file(f"{TRACING}/enabled_functions") == b"vfs_write (1)\n"

    # With nothing registered, a count without ENABLED is only wrong if tracing is on.
    client.write_file(f"{TRACING}/current_tracer", "nop")
    assert inspect_main(capsys, "--address", daemon.address, "check")[0] == 0
    client.close()


def test_inspect_check_takes_a_module_patched_for_no_ops_for_what_3_6_leaves(spawn, capsys):
    """A module loaded while ftrace_enabled is 0 and the function tracer counts every
    record is patched by its load (if (ftrace_start_up && ref): no look at the sysctl);
    the tracer's end, the sysctl still 0, runs no update, and turning it on with nothing
    started runs none either: loop's records stay patched for no ops, which the kernel
    leaves so, and CheckConsistency does not report. The check reported each; a core
    record so is still a finding, and with --tracing-active a module's too."""
    daemon = spawn(SMALL)
    client = daemon.connect()
    sysctl = "/proc/sys/kernel/ftrace_enabled"
    client.write_file(sysctl, "0")
    client.write_file(f"{TRACING}/current_tracer", "function")
    client.load("loop")
    client.write_file(f"{TRACING}/current_tracer", "nop")
    client.write_file(sysctl, "1")
    status, out, _ = inspect_main(capsys, "--address", daemon.address, "check", "--locked")
    assert status == 0 and out.endswith(": nothing found\n"), out
    status, out, _ = inspect_main(capsys, "--address", daemon.address, "check",
                                  "--tracing-active")
    assert status == 1 and re.search(r"\[loop\]: ENABLED with count 0 ", out), out
    client.close()


def test_inspect_says_that_ftrace_is_dead_and_shows_what_the_aborted_pass_left(spawn, capsys):
    """The report's kill (buggy): the unregister's disable pass takes vfs_read's count to 0,
    then WARNs at the reloaded uinput_release and dies before the code update; vfs_read
    stays patched for no ops, and the inspector says why."""
    daemon = spawn(["--variant", "buggy", *SMALL])
    client = daemon.connect()
    base = client.load("uinput").base
    alive = inspect_main(capsys, "--address", daemon.address, "summary")
    assert alive[0] == 0 and "ftrace_disabled" not in alive[1]
    with client.attach("killer", ["vfs_read", "uinput_release"]):
        reload_uinput(client, base)
    assert client.stats().ftrace_disabled
    killed = ("ftrace_disabled: ftrace_kill() has run; the records are as the aborted "
              "update left them, until a reboot\n")
    status, out, _ = inspect_main(capsys, "--address", daemon.address, "check")
    assert status == 1
    findings = out.splitlines()[:-2]
    assert len(findings) == 1 and re.fullmatch(
        r"[0-9a-f]{16} 0x40000000 +0 E vfs_read: ENABLED with count 0 \(patched for no ops\)",
        findings[0]), out
    assert out.endswith(killed + out.splitlines()[-1] + "\n")
    # DumpRecords' only_nonzero selects what --nonzero does: a count or ENABLED.
    assert "vfs_read" in {record.function for record in client.dump_records(only_nonzero=True)}
    summary = inspect_main(capsys, "--address", daemon.address, "summary")
    assert summary[0] == 0 and summary[1].splitlines()[1] + "\n" == killed
    client.close()


def test_inspect_check_locked_adds_the_daemon_check_that_sees_the_missing_reference(
        spawn, capsys):
    """The 8c4f3c3 bug after the reload: uinput_release counted 0, not patched, while a
    filter names it. The snapshot alone looks healthy; ``--locked`` asks the daemon, which
    compares the count with the ops' hashes."""
    daemon = spawn(["--variant", "buggy", *SMALL])
    client = daemon.connect()
    base = client.load("uinput").base
    with client.attach("reloaded", ["uinput_release"]):
        reload_uinput(client, base)
        status, out, _ = inspect_main(capsys, "--address", daemon.address, "check")
        assert status == 0 and out.endswith(": nothing found\n"), out
        status, out, _ = inspect_main(capsys, "--address", daemon.address, "check", "--locked")
        messages = [a.message for a in client.check_consistency().anomalies]
        assert status == 1 and len(messages) == 1 and "uinput_release" in messages[0]
        assert out.splitlines()[0] == messages[0] and out.endswith(": 1 found\n"), out
    client.close()


def test_inspect_records_expected_shows_why_each_count_is_what_it_is(spawn, capsys):
    """The 8c4f3c3 bug after the reload: each uinput record starts with the number of
    enabled ops whose filter is empty (global_ops), notrace ignored. ``records --expected``
    shows beside each count what the ops' hashes imply and which ops: uinput_open, in
    global_ops' notrace, leaks a reference; uinput_release, also in another ops' filter,
    misses one. The expected counts are CheckConsistency's."""
    daemon = spawn(["--variant", "buggy", *SMALL])
    client = daemon.connect()
    base = client.load("uinput").base
    client.write_file(f"{TRACING}/set_ftrace_notrace", "uinput_open\n")
    client.write_file(f"{TRACING}/current_tracer", "function")
    with client.attach("reloaded", ["uinput_release"]):
        reload_uinput(client, base)
        status, out, _ = inspect_main(capsys, "--address", daemon.address, "records",
                                      "--module", "uinput", "--expected")
        anomalies = client.check_consistency().anomalies
    assert status == 0
    header, *lines = out.splitlines()
    assert header == "IP               FLAGS      COUNT EXPECT E FUNCTION [MODULE] OPS"
    rows = {}
    for line in lines:
        ip, flags, count, expected, enabled, function, module, ops = line.split()
        assert module == "[uinput]" and enabled == "E" and int(flags, 16) == 0x40000001
        rows[function] = (int(count), int(expected), ops)
    assert len(rows) == 26
    assert rows["uinput_open"] == (1, 0, "-")
    assert rows["uinput_release"] == (1, 2, "reloaded,global_ops")
    assert rows["uinput_read"] == (1, 1, "global_ops")
    assert sorted((a.function, a.actual_count, a.expected_count) for a in anomalies) == [
        ("uinput_open", 1, 0), ("uinput_release", 1, 2)]
    assert {function for function, (count, expected, _) in rows.items()
            if count != expected} == {"uinput_open", "uinput_release"}

    # The names can be left out; the filters are the shared-memory command's.
    status, out, _ = inspect_main(capsys, "--address", daemon.address, "records",
                                  "--expected", "--function", "vfs_rea?", "--nonzero")
    assert status == 0 and out.splitlines()[1].endswith(" 1      1 E vfs_read global_ops")
    status, out, _ = inspect_main(capsys, "--address", daemon.address, "--no-symbols",
                                  "records", "--expected", "--module", "")
    assert status == 0 and len(out.splitlines()) == 1 + 2000
    assert out.splitlines()[1].endswith(" 1      1 E global_ops")
    with pytest.raises(SystemExit):
        inspect_main(capsys, "--address", daemon.address, "records", "--expected", "--torn")
    assert capsys.readouterr().err.splitlines()[-1] == (
        "ftrace-inspect: error: --expected reads the records under ftrace_lock through the "
        "daemon: not with --torn or --namespace")
    client.close()


def test_inspect_into_a_pipe_its_reader_closed_ends_quietly(spawn):
    """``ftrace-inspect records | head``: EPIPE is the reader's choice, not an error."""
    daemon = spawn(SMALL)
    inspect = start("clients.inspect", "--address", daemon.address, "records")
    inspect.stdout.close()
    _, err = inspect.communicate(timeout=DEADLINE)
    assert (inspect.returncode, err) == (0, b"")


def test_inspect_records_help_names_the_columns_and_options_go_after_the_command(capsys):
    with pytest.raises(SystemExit):
        ftrace_inspect.main(["records", "--help"])
    help_text = capsys.readouterr().out
    assert "FTRACE_FL_ENABLED = 1<<30 (0x40000000)" in help_text
    assert all(f"\n  {column} " in help_text for column in ("IP", "FLAGS", "COUNT", "E"))
    # The options before the command are taken after it too, and a value given before it
    # stays when the command's own parser has none.
    parse = ftrace_inspect.parser().parse_args
    assert parse(["records"]).connect_timeout == 10.0
    assert parse(["--connect-timeout", "3", "records"]).connect_timeout == 3.0
    assert parse(["summary", "--connect-timeout", "3"]).connect_timeout == 3.0
    after = parse(["--address", "unix:/a", "check", "--address", "unix:/b", "--no-symbols"])
    assert (after.address, after.no_symbols, after.namespace) == ("unix:/b", True, None)
    assert parse(["--no-symbols", "trace"]).no_symbols
    assert parse(["failpoints", "list", "--connect-timeout", "0"]).connect_timeout == 0.0


def test_inspect_errors(capsys, monkeypatch):
    gone = inspect_main(capsys, "--namespace", "ftsim.1.999999", "--no-symbols", "summary")
    assert gone == (2, "", "ftrace-inspect: no shared memory for namespace 'ftsim.1.999999' "
                           "(is the daemon running?)\n")
    status, _, err = inspect_main(capsys, "records", "--address",
                                  "unix:/nonexistent/ftraced.sock", "--connect-timeout", "0")
    assert (status, err) == (2, "ftrace-inspect: no ftraced can listen at unix:/nonexistent/"
                                "ftraced.sock: no directory /nonexistent\n")
    # The address tried is named, $FTRACED_ADDRESS's too.
    monkeypatch.setenv("FTRACED_ADDRESS", "unix:/nonexistent/env.sock")
    status, _, err = inspect_main(capsys, "summary")
    assert (status, err) == (2, "ftrace-inspect: no ftraced can listen at unix:/nonexistent/"
                                "env.sock: no directory /nonexistent\n")
    # A namespace is a name in /dev/shm, never a path; shm_open refuses one too long.
    with pytest.raises(SystemExit) as exited:
        inspect_main(capsys, "--namespace", "../x", "--no-symbols", "summary")
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "ftrace-inspect: error: --namespace '../x': not a namespace (ftsim.<pid>.<n>)")
    long = "ftsim.1." + "9" * 300
    assert inspect_main(capsys, "--namespace", long, "--no-symbols", "summary") == (
        2, "", f"ftrace-inspect: {long}: Invalid argument\n")
