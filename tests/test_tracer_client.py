"""Tracer clients and trace_pipe readers against a real ftraced.

- A tracer's hits equal, call for call, the invocations of its filtered functions, across a
  module reload: in `fixed` the reloaded function is traced again; in `buggy` it is not,
  and the consistency check names the missing reference. As a separate process
  (``python -m clients.tracer``) and through the library (``Client.attach``).
- A tracer killed with SIGKILL leaves no ops and no count behind.
- The program's text format, stdin commands, --count/--duration/--output, and errors.
- Two concurrent trace_pipe readers (separate processes) get each event exactly once.

The helpers at the top (starting programs, reading their output with deadlines) are
shared with ``test_workload_inspect.py``.
"""

from __future__ import annotations

import collections
import errno
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from clients import cli
from clients.api import ATTACH_READER_THREAD, Client
from clients.errors import FtraceError
from clients.identity import Identity
from ftrace.v1 import kernel_pb2, modules_pb2
from tests.children import REPO, child_env
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)

TRACING = "/sys/kernel/debug/tracing"
#: A small core kernel keeps each daemon's boot quick.
SMALL = ["--core-functions", "2000"]
DEADLINE = 20.0


def start(module: str, *args: str, stdin: bool = False) -> subprocess.Popen:
    """``python -m MODULE ARGS`` from the repository, stdout and stderr piped."""
    return start_argv([sys.executable, "-m", module, *args], stdin=stdin)


def start_argv(argv: list[str], stdin: bool = False) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=REPO, env=child_env(),
                            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    process = start(module, *args)
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, out.decode(),
                                       err.decode())


class Lines:
    """A child's pipe read line by line with a deadline (select on the raw descriptor,
    never the file object, so ``communicate`` can take the rest: see :meth:`rest`)."""

    def __init__(self, pipe: Any) -> None:
        self.fd = pipe.fileno()
        self.buffer = b""
        self.seen: list[str] = []

    def wait_for(self, text: str, timeout: float = DEADLINE) -> str:
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                self.seen.append(line.decode())
                if text in self.seen[-1]:
                    return self.seen[-1]
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0.0, remaining))
            data = os.read(self.fd, 65536) if ready else b""
            if not data:
                raise AssertionError(f"no line with {text!r} "
                                     f"({'timeout' if not ready else 'EOF'}); saw {self.seen}")
            self.buffer += data

    def rest(self, more: bytes) -> str:
        """What was buffered past the last line returned, then ``more``."""
        return (self.buffer + more).decode()


def wait_until(condition: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    """Poll ``condition`` until it is true or the deadline passes (then fail)."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.02)
    return result


def invoke_all(client: Client, function: str, parent: str, repeats: list[int], **task: Any) -> int:
    """Invoke ``function`` once per entry of ``repeats`` (its repeat count); total calls."""
    for repeat in repeats:
        client.invoke(function, parent, repeat=repeat, **task)
    return sum(repeats)


def reload_uinput(client: Client, base: int) -> None:
    client.unload("uinput")
    assert client.load("uinput").base == base, "first-fit reloads at the same address"


def calls_by_function(hits: list[dict]) -> collections.Counter[str]:
    calls: collections.Counter[str] = collections.Counter()
    for hit in hits:
        calls[hit["function"]] += hit["count"]
    return calls


def missing_reference(report: kernel_pb2.ConsistencyReport) -> list[tuple[str, str, int, int]]:
    return [(a.function, a.module, a.expected_count, a.actual_count) for a in report.anomalies
            if a.kind == kernel_pb2.ANOMALY_KIND_MISSING_REFERENCE]


# --- hits == invocations, across a reload -----------------------------------------------


@pytest.mark.parametrize("variant, stop", [("fixed", signal.SIGTERM), ("buggy", signal.SIGINT)])
def test_tracer_process_hits_equal_invocations_across_reload(spawn, variant, stop):
    daemon = spawn(["--variant", variant, *SMALL])
    client = daemon.connect(Identity.current("bash"))
    base = client.load("uinput").base
    tracer = start("clients.tracer", "--json", "--address", daemon.address, "--name", "rt",
                   "-f", "uinput_read", "-f", "vfs_read")
    err = Lines(tracer.stderr)
    err.wait_for("ops rt registered: 2 in filter, 0 in notrace")
    before = invoke_all(client, "uinput_read", "vfs_read", [1, 3, 5], pid=2210, comm="Xorg")
    core = invoke_all(client, "vfs_read", "sys_read", [4])
    reload_uinput(client, base)
    after = invoke_all(client, "uinput_read", "vfs_read", [2, 7], pid=2210, comm="Xorg")
    core += invoke_all(client, "vfs_read", "sys_read", [2])
    report = client.check_consistency()

    tracer.send_signal(stop)
    out, rest = tracer.communicate(timeout=DEADLINE)
    assert tracer.returncode == 0, err.rest(rest)
    calls = calls_by_function([json.loads(line) for line in out.decode().splitlines()])
    traced = before + after if variant == "fixed" else before
    assert calls == {"uinput_read": traced, "vfs_read": core}
    assert f"ops rt unregistered: {traced + core} hits, 0 dropped" in err.rest(rest)
    if variant == "fixed":
        assert report.ok
        assert client.list_ops() == []
        assert client.check_consistency().ok
    else:
        # The reloaded record started at 0: the ops' reference is missing, so the calls
        # after the reload were never traced, and the unregister took the count below 0.
        assert missing_reference(report) == [("uinput_read", "uinput", 1, 0)]
        assert "WARNING: at kernel/trace/ftrace.c:1529" in client.dmesg()
    client.close()


@pytest.mark.parametrize("variant", ["fixed", "buggy"])
def test_library_tracer_hits_equal_invocations_across_reload(spawn, variant):
    daemon = spawn(["--variant", variant, *SMALL])
    with daemon.connect() as client:
        base = client.load("uinput").base
        with client.attach("lib", ["uinput_read", "sys_read"]) as session:
            before = invoke_all(client, "uinput_read", "vfs_read", [1, 2, 10])
            core = invoke_all(client, "sys_read", "system_call_fastpath", [3])
            session.flush()
            assert calls_by_function([{"function": h.function, "count": h.count}
                                      for h in session.take_hits()]) == {
                "uinput_read": before, "sys_read": core}
            reload_uinput(client, base)
            after = invoke_all(client, "uinput_read", "vfs_read", [4, 1])
            flushed = session.flush()
            hits = session.take_hits()
            report = client.check_consistency()
        traced = after if variant == "fixed" else 0
        assert sum(h.count for h in hits) == traced
        assert all((h.function, h.module, h.parent) == ("uinput_read", "uinput", "vfs_read")
                   for h in hits)
        assert flushed.hits == before + core + traced
        if variant == "fixed":
            assert report.ok
            assert client.list_ops() == [] and client.check_consistency().ok
            assert "WARNING" not in client.dmesg()
        else:
            assert missing_reference(report) == [("uinput_read", "uinput", 1, 0)]
            assert report.anomalies[0].ops == ["lib"]
            assert client.stats().ftrace_disabled  # the unregister WARNed


def test_an_unregister_once_ftrace_is_dead_fails_with_enodev_and_the_ops_stays(spawn):
    """``unregister_ftrace_function()`` after ftrace_kill: ``__unregister_ftrace_function()``
    returns -ENODEV and the ops stays on ``ftrace_ops_list``, ENABLED (3.6 ftrace.c). The
    session is told so; it used to be told ``unregistered``."""
    daemon = spawn(["--variant", "buggy", *SMALL])
    with daemon.connect() as client:
        base = client.load("uinput").base
        with client.attach("bystander", ["vfs_read"]) as bystander:
            # Kill ftrace the report's way: reload under a filter, then unregister.
            with client.attach("killer", ["uinput_release"]):
                reload_uinput(client, base)
            assert client.stats().ftrace_disabled
            with pytest.raises(FtraceError) as refused:
                bystander.unregister()
        assert refused.value.errno == errno.ENODEV
        assert [(ops.name, ops.enabled) for ops in client.list_ops()] == [("bystander", True)]


def test_the_daemon_queues_the_calls_of_a_hit_that_fit_and_drops_the_rest(spawn):
    """queue_limit counts calls: a hit of more calls than there is room for (an Invoke's
    repeat above the limit, into an empty queue too) keeps what fits, its count cut, and
    the rest are counted dropped. Such a hit was dropped whole, however empty the queue."""
    daemon = spawn(SMALL)
    # No batch goes out before a flush: under load one could leave between the invokes.
    with daemon.connect() as client, client.attach("limited", ["vfs_read"], queue_limit=10,
                                                   max_delay_ms=600_000) as session:
        client.invoke("vfs_read", "sys_read", repeat=12)  # into the empty queue
        client.invoke("vfs_read", "sys_read", repeat=3)  # into a full one
        flushed = session.flush()
        assert [hit.count for hit in session.take_hits()] == [10]
        assert (flushed.hits, flushed.dropped) == (10, 2 + 3)
        client.invoke("vfs_read", "sys_read", repeat=4)  # room again once sent
        assert session.flush().hits == 14
        assert [hit.count for hit in session.take_hits()] == [4]


def test_a_session_keeps_at_most_max_kept_hits_and_counts_the_rest(spawn):
    """The hits not yet taken are bounded, as the daemon's queue is: past ``max_kept``
    new hits are dropped and their calls counted in ``dropped_here``; the oldest stay,
    the daemon's totals count all it sent, and taking the hits makes room again."""
    daemon = spawn(SMALL)
    with daemon.connect() as client, client.attach("kept", ["vfs_read"],
                                                   max_kept=4) as session:
        for pid in range(4100, 4106):
            client.invoke("vfs_read", "sys_read", pid=pid)
        client.invoke("vfs_read", "sys_read", pid=4106, repeat=5)
        flushed = session.flush()
        assert [hit.pid for hit in session.take_hits()] == [4100, 4101, 4102, 4103]
        assert (session.dropped_here, session.dropped, flushed.hits) == (2 + 5, 0, 11)
        client.invoke("vfs_read", "sys_read", pid=4107)
        session.flush()
        assert [hit.pid for hit in session.take_hits()] == [4107]
        assert session.dropped_here == 7
        with pytest.raises(ValueError, match="max_kept must be at least 1"):
            client.attach("none", max_kept=0)


def test_a_process_sessions_read_their_events_on_threads_kept_for_the_next(spawn,
                                                                         monkeypatch):
    """A session's events are read on a thread kept, once the session ended, for the next
    session of the process (``clients.api._ATTACH_READERS``): two sessions open at once
    each get their own hits, and a third after them takes a kept thread. A thread was
    started per session, one of three an attach started."""
    started: list[str] = []
    start = threading.Thread.start

    def counted(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    daemon = spawn(SMALL)
    with daemon.connect() as client:
        monkeypatch.setattr(threading.Thread, "start", counted)
        with client.attach("one", ["vfs_read"]) as one, client.attach("two", ["sys_read"]) as two:
            client.invoke("vfs_read", "sys_read", repeat=2)
            client.invoke("sys_read", "system_call_fastpath", repeat=3)
            one.flush()
            two.flush()
            assert [(hit.function, hit.count) for hit in one.take_hits()] == [("vfs_read", 2)]
            assert [(hit.function, hit.count) for hit in two.take_hits()] == [("sys_read", 3)]
        # Two at most (none when earlier tests of this process left readers idle).
        assert started.count(ATTACH_READER_THREAD) <= 2
        kept = len(started)
        with client.attach("three", ["vfs_read"]) as three:
            client.invoke("vfs_read", "sys_read")
            assert three.flush().hits == 1
            assert [hit.count for hit in three.take_hits()] == [1]
        # Leaving a session's block waits until its reader is idle: the third takes one.
        assert ATTACH_READER_THREAD not in started[kept:]


def test_tracer_answers_report_when_they_held_ftrace_lock(spawn):
    """TracerEvent.lock_acquired_ns (common.proto "LOCK ORDER"): a set_filter paused with
    ftrace_lock held and a rmmod that entered delete_module meanwhile report acquisitions
    in the order the kernel ran them, as Client.lock_acquired does for the rmmod. Without
    them ftrace-stress's reproducer could only order the set_filter by its completion."""
    daemon = spawn(SMALL)
    site = "ftrace_hash_move:after_disable"
    with daemon.connect() as client, daemon.connect() as loader:
        loader.load("dummy")
        before = time.monotonic_ns()
        session = client.attach("order", ["vfs_read"])
        # One pattern's match and install, then register_ftrace_function: first and last.
        registered = session.lock_acquired
        client.set_failpoint(site, "1*pause")
        answers: dict[str, Any] = {}

        def in_thread(name: str, fn: Callable[[], Any]) -> threading.Thread:
            def run() -> None:
                try:
                    answers[name] = fn()
                except BaseException as error:  # reported by the assertions below
                    answers[name] = error
            thread = threading.Thread(target=run)
            thread.start()
            return thread

        filtering = in_thread("filter", lambda: session.set_filter("dummy_validate",
                                                                   reset=True))
        client.wait_failpoint(site, 1, timeout=DEADLINE)
        unloading = in_thread("rmmod", lambda: loader.unload("dummy"))
        # Past module_mutex, the GOING notifier waits for ftrace_lock (ftrace_release_mod).
        wait_until(lambda: [m.state for m in client.list_modules() if m.name == "dummy"]
                   == [modules_pb2.MODULE_STATE_GOING])
        client.release_failpoint(site)
        filtering.join(timeout=DEADLINE)
        unloading.join(timeout=DEADLINE)
        assert answers["filter"].filter_count == 1, answers
        assert answers["rmmod"].name == "dummy", answers
        matched, installed = session.lock_acquired
        (unloaded,) = loader.lock_acquired
        assert before < registered[0] < registered[1] < matched < installed < unloaded

        with pytest.raises(FtraceError) as refused:  # matched nothing: the match's time
            session.set_filter("no_such_function")
        assert refused.value.errno_name == "EINVAL" and len(session.lock_acquired) == 1
        assert unloaded < session.lock_acquired[0]
        session.flush()
        assert session.lock_acquired == ()
        session.unregister()
        (unregistered,) = session.lock_acquired
        assert unloaded < unregistered < time.monotonic_ns()


# --- a killed tracer ----------------------------------------------------------------------


def test_tracer_killed_with_sigkill_leaves_no_ops_and_no_count(spawn):
    daemon = spawn(SMALL)
    client = daemon.connect()
    client.write_file(f"{TRACING}/set_ftrace_filter", "sys_read\n")
    client.write_file(f"{TRACING}/current_tracer", "function")
    tracer = start("clients.tracer", "--address", daemon.address, "--name", "victim",
                   "-f", "vfs_*", "-f", "sys_read")
    Lines(tracer.stderr).wait_for("ops victim registered")
    assert {ops.name for ops in client.list_ops()} == {"victim", "global_ops", "trace_ops"}
    assert "sys_read (2)\n" in client.read_file(f"{TRACING}/enabled_functions").decode()
    client.invoke("vfs_read", "sys_read", repeat=5)  # hits the tracer will never read

    tracer.kill()
    tracer.communicate(timeout=DEADLINE)
    # The daemon notices the stream's end on its own; wait for the unregister.
    wait_until(lambda: "victim" not in {ops.name for ops in client.list_ops()})
    assert {ops.name for ops in client.list_ops()} == {"global_ops", "trace_ops"}
    assert client.read_file(f"{TRACING}/enabled_functions") == b"sys_read (1)\n"
    report = client.check_consistency()
    assert report.ok, [a.message for a in report.anomalies]
    assert "WARNING" not in client.dmesg()
    client.close()


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, -signal.SIGTERM),
                                             (signal.SIGINT, 130)])
def test_tracer_waiting_to_register_ends_on_a_signal(spawn, signum, status):
    """register_ftrace_function waits for ftrace_lock, which a load paused at a failpoint
    holds as long as it is paused: SIGTERM (``timeout(1)``) and Ctrl-C end that wait as
    they end any program's, and the daemon, once it gets the lock, leaves no ops behind.
    They were only noted for the tracing loop, which had not begun: the tracer waited for
    good."""
    daemon = spawn(SMALL)
    site = "ftrace_update_code:before_count"
    with daemon.connect() as client, daemon.connect() as loader:
        client.set_failpoint(site, "1*pause")
        loading = threading.Thread(target=loader.load, args=("uinput",))
        loading.start()
        client.wait_failpoint(site, 1, timeout=DEADLINE)
        streams = client.stats().streams
        tracer = start("clients.tracer", "--address", daemon.address, "-f", "vfs_read")
        wait_until(lambda: client.stats().streams > streams)  # Attach: waiting for the lock
        tracer.send_signal(signum)
        out, err = tracer.communicate(timeout=DEADLINE)
        assert (tracer.returncode, out) == (status, b""), err
        if signum == signal.SIGINT:
            assert err == b"ftrace-tracer: interrupted while registering\n"
        client.release_failpoint(site)
        loading.join(timeout=DEADLINE)
        wait_until(lambda: client.stats().streams == streams)
        assert client.list_ops() == []
        assert client.check_consistency().ok


# --- the program's output, commands and errors ----------------------------------------------

LINE = re.compile(r"^ *(?P<comm>\S+)-(?P<pid>\d+) +\[(?P<cpu>\d{3})\]  +\d+\.\d{6}: "
                  r"(?P<function>\w+) <-(?P<parent>\w+)(?: x(?P<count>\d+))?$")


def test_tracer_text_output_stdin_commands_count_and_output_file(spawn, tmp_path):
    daemon = spawn(SMALL)
    client = daemon.connect()
    output = tmp_path / "hits.txt"
    tracer = start("clients.tracer", "--address", daemon.address, "-f", "vfs_read",
                   "--stdin-commands", "--count", "7", "--output", str(output), stdin=True)
    err = Lines(tracer.stderr)
    err.wait_for("registered: 1 in filter, 0 in notrace")
    client.invoke("vfs_read", "sys_read", cpu=1, repeat=3, pid=3417, comm="bash")

    tracer.stdin.write(b"filter vfs_write\nnotrace vfs_read\n# a comment\n\n"
                       b"filter nosuch_function\nfrobnicate\n")
    tracer.stdin.flush()
    err.wait_for("filter vfs_write: 2 in filter, 0 in notrace")
    err.wait_for("notrace vfs_read: 2 in filter, 1 in notrace")
    err.wait_for("filter nosuch_function: Invalid argument")
    err.wait_for("unknown command 'frobnicate'")
    client.invoke("vfs_read", "sys_read", pid=3417, comm="bash")  # notrace: not traced
    client.invoke("vfs_write", "sys_write", cpu=2, pid=2210, comm="Xorg")

    tracer.stdin.write(b"reset\n")
    tracer.stdin.close()  # end of input: the tracer goes on
    err.wait_for("reset: 0 in filter, 0 in notrace")
    client.invoke("vfs_read", "sys_read", cpu=0, repeat=2, pid=0, comm="swapper/0")
    client.invoke("sys_read", "system_call_fastpath", cpu=3, pid=1, comm="systemd")  # the 7th
    client.invoke("vfs_write", "sys_write", pid=1, comm="systemd")  # past --count
    tracer.wait(timeout=DEADLINE)  # little output: the pipes cannot fill up
    out, rest = tracer.stdout.read(), tracer.stderr.read()
    # Tracing went on past the two failed commands; the status says they failed.
    assert (tracer.returncode, out) == (1, b""), err.rest(rest)
    assert rest.decode().endswith("ftrace-tracer: 2 command(s) from standard input failed\n")
    lines = output.read_text().splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert [(m["comm"], int(m["pid"]), int(m["cpu"]), m["function"], m["parent"],
             int(m["count"] or 1)) for m in parsed] == [
        ("bash", 3417, 1, "vfs_read", "sys_read", 3),
        ("Xorg", 2210, 2, "vfs_write", "sys_write", 1),
        ("<idle>", 0, 0, "vfs_read", "sys_read", 2),
        ("systemd", 1, 3, "sys_read", "system_call_fastpath", 1),
    ]
    assert client.list_ops() == []
    client.close()


def test_tracer_duration_and_errors(spawn):
    daemon = spawn(["--variant", "buggy", *SMALL])
    quiet = run("clients.tracer", "--address", daemon.address, "--json", "--duration", "0.2",
                "-f", "vfs_read")
    assert (quiet.returncode, quiet.stdout) == (0, "")
    assert quiet.stderr.endswith("unregistered: 0 hits, 0 dropped\n")

    nothing = run("clients.tracer", "--address", daemon.address, "-f", "nosuch_function")
    assert (nothing.returncode, nothing.stdout) == (1, "")
    assert nothing.stderr == ("ftrace-tracer: register: Invalid argument "
                              '("nosuch_function" selects no function)\n')

    # Kill ftrace the report's way (buggy): reload under a filter, then unregister.
    with daemon.connect() as client:
        base = client.load("uinput").base
        with client.attach("killer", ["uinput_release"]):
            reload_uinput(client, base)
        assert client.stats().ftrace_disabled
    dead = run("clients.tracer", "--address", daemon.address, "-f", "vfs_read")
    assert dead.returncode == 1
    assert dead.stderr == ("ftrace-tracer: register: No such device (ftrace is disabled: "
                           "ftrace_kill() ran after a WARN; Kernel.Reboot recovers)\n")

    both = run("clients.tracer", "--address", daemon.address, "--spawn")
    assert both.returncode == 2 and "--spawn and --address exclude each other" in both.stderr
    bad = run("clients.tracer", "--spawn", "--variant", "nope")
    assert bad.returncode == 2 and "ftrace-tracer --spawn: error: argument --variant" in bad.stderr


@pytest.mark.parametrize(
    "module, args, message",
    [
        ("clients.tracer", ["--duration", "-1"], "--duration must be positive and at most 9223372036"),
        ("clients.tracer", ["--duration", "nan"], "--duration must be positive and at most 9223372036"),
        ("clients.tracer", ["--duration", "inf"], "--duration must be positive and at most 9223372036"),
        ("clients.tracer", ["--count", "0"], "--count must be positive and at most 9223372036"),
        ("clients.workload", ["--duration", "-1"], "--duration must be positive and at most 9223372036"),
        ("clients.workload", ["--rate", "nan"], "--rate must be positive and at most 9223372036"),
        ("clients.modload", ["--duration", "-1"], "--duration must be positive and at most 9223372036"),
        ("clients.modload", ["--hold", "nan"], "--hold must be at least 0 and at most 9223372036"),
        ("clients.modload", ["--hold", "inf"], "--hold must be at least 0 and at most 9223372036"),
        ("clients.tracer", ["--address", "127.0.0.1:99999"],
         "argument --address: port 99999 out of range (0-65535) in address '127.0.0.1:99999'"),
    ],
)
def test_limits_and_addresses_are_checked_alike(module, args, message):
    """A usage error, before any daemon is asked (none runs at the address)."""
    done = run(module, "--address", "unix:/nonexistent/ftraced.sock", *args)
    prog = module.replace("clients.", "ftrace-")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines()[-1] == f"{prog}: error: {message}"


def test_a_wait_longer_than_select_takes_is_made_in_steps():
    """ftrace-workload's pace at ``--rate 1e-300`` is a wait of 1e300 s: select() takes at
    most about 292 years (an OverflowError, and a traceback), so the waker waits at most
    MAX_WAIT at a time and its caller looks again."""
    with cli.Waker() as waker:
        waker.wake()
        assert waker.wait(1e300) == []


def test_tracer_spawns_a_private_daemon():
    done = run("clients.tracer", "--duration", "0.1", "-f", "vfs_read", "--spawn", *SMALL,
               "--cpus", "2")
    assert done.returncode == 0, done.stderr
    assert "registered: 1 in filter" in done.stderr


# --- trace_pipe: two readers ------------------------------------------------------------

PIPE_READER = """\
import sys
from clients.api import Client
with Client(sys.argv[1]) as client:
    for data in client.trace_pipe():
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
"""
EVENT = re.compile(r"^ *\S+-(?P<pid>\d+) +\[\d{3}\] \.\.\.\. +\d+\.\d{6}: "
                   r"(?:vfs_read <-sys_read|tracing_mark_write: (?P<marker>marker-\d+))$")


def test_trace_pipe_two_concurrent_readers_get_each_event_exactly_once(spawn):
    daemon = spawn(SMALL)
    client = daemon.connect()
    client.write_file(f"{TRACING}/set_ftrace_filter", "vfs_read\n")
    client.write_file(f"{TRACING}/current_tracer", "function")
    readers = [start_argv([sys.executable, "-c", PIPE_READER, daemon.address]) for _ in range(2)]
    expected = []
    for i in range(400):
        # Every event is told apart: a marker's text, or a function call's pid.
        if i % 2:
            client.write_file(f"{TRACING}/trace_marker", f"marker-{i:04d}")
            expected.append(f"marker-{i:04d}")
        else:
            client.invoke("vfs_read", "sys_read", pid=10000 + i, comm="reader-test")
            expected.append(f"pid-{10000 + i}")

    got: list[list[str]] = [[], []]
    partial = [b"", b""]
    fds = {reader.stdout.fileno(): n for n, reader in enumerate(readers)}
    deadline = time.monotonic() + DEADLINE
    while sum(map(len, got)) < len(expected) and time.monotonic() < deadline:
        ready, _, _ = select.select(list(fds), [], [], deadline - time.monotonic())
        for fd in ready:
            n = fds[fd]
            data = os.read(fd, 65536)
            assert data, f"reader {n} ended: {readers[n].stderr.read().decode()}"
            *lines, partial[n] = (partial[n] + data).split(b"\n")
            got[n] += [line.decode() for line in lines]
    for reader in readers:
        reader.kill()
        reader.communicate(timeout=DEADLINE)

    keys = []
    for line in got[0] + got[1]:
        event = EVENT.match(line)
        assert event, line
        keys.append(event["marker"] or f"pid-{event['pid']}")
    assert sorted(keys) == sorted(expected)  # each once: nothing lost, nothing twice
    assert client.stats().trace_entries == 0  # consumed
    client.close()
