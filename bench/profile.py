"""``python -m bench.profile [--seconds S] [--out DIR]``: where a server's CPU goes, per call.

The profile behind the figures that miss their targets (RPC overhead at 16 clients,
stress throughput): for each scenario, ftraced and the bare echo server each serve the
same clients while py-spy samples the server (``--gil --nonblocking``: the thread that
holds the GIL, without stopping the process) and ``/proc`` gives its CPU time over the
same window. Per operation, the server's CPU splits into:

- Python holding the GIL, by layer: the innermost frame decides (a frame of
  ``threading``, ``queue`` or ``concurrent.futures`` is a thread handoff; any other
  standard-library frame counts for the nearest caller that is not one);
- the rest of the CPU time, outside the GIL: gRPC's C core, protobuf's C code, system
  calls.

Over the same window, ``perf record`` (``bench.perf_profile``) samples every thread of
the server with its native stack, and splits the whole of its CPU again: by shared
object in user space (the interpreter, NumPy, gRPC's C core...), by what the thread was
doing in the kernel (GIL hand-offs, lock waits, sockets...). This second table explains
the first one's row outside the GIL. Where perf is missing or may not sample the kernel,
the run says why and writes the py-spy part alone; ``--no-perf`` skips it.

Samples approximate time: a thread holding the GIL is taken to be on a CPU, and the
sampled window is the sampling rate times its length. Scenarios:

- ``read``: 16 client processes calling ``Tracefs.ReadFile`` (``cat tracing_on``)
  against the echo server's unary call, as ``bench.rpc_overhead`` measures them;
- ``session``: 16 client processes, a ``set_ftrace_filter`` session (open, write,
  close) against three round trips of the echo server's bidirectional stream;
- ``stress``: ``ftrace-stress`` with 16 client processes (4 of each kind) against
  ftraced, and 16 clients of the echo server's unary call.

Writes ``profile.json`` and ``profile.md`` into ``--out`` (default: ``bench/``); Ctrl-C or
SIGTERM stops the servers and clients first, and writes nothing. Needs
py-spy (the ``bench`` extra) and the right to ptrace the servers (root, or
``kernel.yama.ptrace_scope`` 0).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from bench import BENCH_DIR, REPO_ROOT, REPS, perf_profile, run_to_the_end
from bench.procs import Server, WorkerPool
from bench.stress_throughput import CLIENTS as STRESS_CLIENTS
from bench.stress_throughput import stress_report
from clients.procfs import process_cpu_seconds

#: Samples per second: py-spy keeps up at this rate without stopping the server.
RATE = 200
CLIENTS = 16
OUTSIDE_GIL = "outside the GIL: gRPC C core, protobuf C, system calls"
TOTAL = "total (from /proc)"
HANDOFFS = "thread handoffs (threading, queue, concurrent.futures)"
# (layer, test on a frame's file as py-spy prints it), innermost frame first.
LAYERS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("ftraced servicers (kernel_daemon/rpc)", lambda path: path.startswith("kernel_daemon/rpc/")),
    ("ftrace model (kernel_daemon)", lambda path: path.startswith("kernel_daemon/")),
    ("echo handler (bench/echo_server.py)", lambda path: path.startswith("bench/")),
    ("protobuf Python (messages, generated code)",
     lambda path: path.startswith("google/protobuf/") or path.endswith("_pb2.py")),
    ("gRPC Python (server loop, call state)", lambda path: path.startswith("grpc")),
)
_HANDOFF_FILES = ("threading.py", "queue.py", "concurrent/futures/")


def _our_module_files() -> frozenset[str]:
    """Basenames of ftraced's modules: py-spy prints some frames' files without their
    directory (those whose code objects ``kernel_daemon.unwind`` rewraps)."""
    names = set()
    for root, _, files in os.walk(os.path.join(REPO_ROOT, "kernel_daemon")):
        names.update(name for name in files if name.endswith(".py"))
    return frozenset(names)


_OURS = _our_module_files()


def frame_file(frame: str) -> str:
    """``"func (grpc/_server.py:788)"`` -> ``"grpc/_server.py"``; a bare name of one of
    ftraced's modules gets its package back."""
    path = frame.rsplit(" (", 1)[-1].rstrip(")").rsplit(":", 1)[0]
    if "/" not in path and path in _OURS:
        return "kernel_daemon/" + path
    return path


def layer_of(stack: list[str]) -> str:
    """The layer a sample's CPU goes to, from its frames (outermost first)."""
    files = [frame_file(frame) for frame in reversed(stack)]
    if files and any(files[0].startswith(name) for name in _HANDOFF_FILES):
        return HANDOFFS
    for path in files:
        for layer, matches in LAYERS:
            if matches(path):
                return layer
    return "other Python (standard library)"


def read_samples(raw: str) -> Counter[str]:
    """py-spy's raw output (``frame;frame;... COUNT`` a line) as samples per layer."""
    layers: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            layers[layer_of(stack.split(";"))] += int(count)
    return layers


@dataclass
class Profile:
    """One server's CPU over a window, split by layer (seconds), and its operations."""

    cpu: float = 0.0
    window: float = 0.0
    operations: int = 0
    layers: Counter[str] = field(default_factory=Counter)  # samples (GIL held)
    native: Counter[str] = field(default_factory=Counter)  # perf's samples, per row

    def add(self, other: "Profile") -> None:
        self.cpu += other.cpu
        self.window += other.window
        self.operations += other.operations
        self.layers.update(other.layers)
        self.native.update(other.native)

    def narrowed(self, cpu: float, operations: int) -> "Profile":
        """The same split for the ``cpu`` seconds of a narrower span within the window
        (a stress run's, from go to stop, without its start and its final checks)."""
        scale = cpu / self.cpu if self.cpu else 0.0
        # perf's rows are shares of the CPU: its samples, unscaled, split the span as well.
        return Profile(cpu, self.window, operations,
                       Counter({layer: samples * scale for layer, samples in self.layers.items()}),
                       Counter(self.native))

    def per_operation(self) -> dict[str, float]:
        """Seconds of CPU per operation: each layer's, outside the GIL, and the total."""
        ops = max(self.operations, 1)
        held = {layer: samples / RATE / ops for layer, samples in self.layers.items()}
        per_op = dict(sorted(held.items(), key=lambda item: -item[1]))
        per_op[OUTSIDE_GIL] = max(self.cpu / ops - sum(held.values()), 0.0)
        per_op[TOTAL] = self.cpu / ops
        return per_op

    def native_per_operation(self) -> dict[str, float]:
        """Seconds of CPU per operation of each of perf's rows: its share of the samples
        (perf samples CPU time, every thread's) of the CPU from ``/proc``."""
        ops, samples = max(self.operations, 1), sum(self.native.values())
        per_op = {row: self.native[row] / samples * self.cpu / ops
                  for row in perf_profile.ROWS if self.native[row]}
        per_op[TOTAL] = self.cpu / ops
        return per_op


class PySpy:
    """``py-spy record`` on one process, from ``start()`` to ``stop()``."""

    def __init__(self, pid: int, directory: str) -> None:
        self.pid = pid
        self.path = os.path.join(directory, f"pyspy-{pid}-{time.monotonic_ns()}.txt")
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.cpu_before: float | None = None
        self.first_line = b""

    def start(self) -> None:
        py_spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or "py-spy"
        self.process = subprocess.Popen(
            [py_spy, "record", "--gil", "--nonblocking", "--rate", str(RATE), "--format", "raw",
             "--output", self.path, "--pid", str(self.pid)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # Its first line ("Sampling process ...") says it has attached; the window
        # starts then, or the first samples would be missing from it.
        assert self.process.stdout is not None
        self.first_line = self.process.stdout.readline()
        self.started = time.monotonic()
        self.cpu_before = process_cpu_seconds(self.pid)

    def _end(self) -> bytes:
        """SIGINT: py-spy writes what it has and exits; its output."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        return self.first_line + self.process.communicate(timeout=60)[0]

    def abandon(self) -> None:
        self._end()

    def stop(self, operations: int) -> Profile:
        window = time.monotonic() - self.started
        cpu_after = process_cpu_seconds(self.pid)
        output = self._end()
        if not os.path.exists(self.path):
            raise RuntimeError(f"py-spy on pid {self.pid} wrote nothing "
                               f"(can it ptrace? root or ptrace_scope 0):\n{output.decode()}")
        with open(self.path, encoding="utf-8") as raw:
            layers = read_samples(raw.read())
        cpu = (cpu_after - self.cpu_before
               if cpu_after is not None and self.cpu_before is not None else 0.0)
        return Profile(cpu, window, operations, layers)


@dataclass
class Sampling:
    """Where the scenarios keep their sockets and samples, and whether perf samples the
    servers as well as py-spy."""

    directory: str
    perf: bool

    def profiled(self, pid: int, run: Callable[[], int]) -> Profile:
        """``run()`` (which returns the operations it did) while py-spy, and perf if it
        may, sample ``pid``: perf's window holds py-spy's."""
        perf = perf_profile.PerfRecord(pid, self.directory) if self.perf else None
        if perf:
            perf.start()
        try:
            spy = PySpy(pid, self.directory)
            spy.start()
            try:
                operations = run()
            except BaseException:
                spy.abandon()
                raise
            profile = spy.stop(operations)
        except BaseException:
            if perf:
                perf.abandon()
            raise
        if perf:
            profile.native = perf.stop()
        return profile


def rpc_scenario(op: str, echo_op: str, seconds: float, pool: WorkerPool,
                 sampling: Sampling) -> dict[str, Profile]:
    """``op`` against ftraced and ``echo_op`` against the echo server, in turn."""
    profiles = {"ftraced": Profile(), "echo": Profile()}
    directory = sampling.directory
    with Server("daemon", directory=directory) as daemon, \
            Server("echo", directory=directory) as echo:
        servers = {"ftraced": (daemon, op), "echo": (echo, echo_op)}
        for server, server_op in servers.values():
            pool.warm(server_op, server.address, CLIENTS)
        for _ in range(REPS):
            for name, (server, server_op) in servers.items():
                profiles[name].add(sampling.profiled(server.pid, lambda: pool.measure(
                    server_op, server.address, CLIENTS, seconds / REPS, lead=0.0).calls))
    return profiles


def stress_scenario(seconds: float, pool: WorkerPool, sampling: Sampling) -> dict[str, Profile]:
    """``ftrace-stress`` (its private daemon's options) against 16 echo clients."""
    profiles = {"ftraced": Profile(), "echo": Profile()}
    directory = sampling.directory
    with Server("echo", directory=directory) as echo:
        pool.warm("unary", echo.address, CLIENTS)
        for rep in range(REPS):
            with Server("daemon", options=["--switch-interval", "0.0005", "--seed", str(rep)],
                        directory=directory) as daemon:
                reports = []

                def stress() -> int:
                    reports.append(stress_report(seconds / REPS, rep + 1, directory,
                                                 daemon.address))
                    return 0

                whole_run = sampling.profiled(daemon.pid, stress)
                cpu = reports[0]["cpu"]
                profiles["ftraced"].add(whole_run.narrowed(cpu["seconds"]["ftraced"],
                                                           cpu["operations"]))
            profiles["echo"].add(sampling.profiled(echo.pid, lambda: pool.measure(
                "unary", echo.address, CLIENTS, seconds / REPS, lead=0.0).calls))
    return profiles


SCENARIOS: dict[str, tuple[str, Callable[[float, WorkerPool, Sampling], dict[str, Profile]]]] = {
    "read": ("cat tracing_on (Tracefs.ReadFile) against the echo unary call, 16 clients",
             lambda s, pool, sampling: rpc_scenario("read", "unary_md", s, pool, sampling)),
    "session": ("a set_ftrace_filter session (open, write, close) against 3 echo round "
                "trips on a bidirectional stream, 16 clients",
                lambda s, pool, sampling: rpc_scenario("session", "pingpong_md", s, pool,
                                                         sampling)),
    "stress": (f"ftrace-stress --variant fixed, {sum(STRESS_CLIENTS.values())} clients "
               f"({', '.join(f'{n} {kind}' for kind, n in STRESS_CLIENTS.items())}), "
               "against the echo unary call, 16 clients",
               stress_scenario),
}


def _table(heading: str, ours: dict[str, float], echo: dict[str, float],
           order: list[str]) -> Iterator[str]:
    """Seconds per operation, row by row in ``order``, ftraced's against the echo
    server's (whose rows ftraced lacks show as 0 µs)."""
    yield f"| {heading} | ftraced | echo server | difference |"
    yield "|---|---:|---:|---:|"
    for row in order:
        mine, theirs = ours.get(row, 0.0) * 1e6, echo.get(row, 0.0) * 1e6
        bold = "**" if row.startswith("total") else ""
        yield (f"| {bold}{row}{bold} | {mine:,.0f} µs | {theirs:,.0f} µs "
               f"| {mine - theirs:+,.0f} µs |")


def table(profiles: dict[str, Profile]) -> Iterator[str]:
    """py-spy's split of a scenario, then perf's where it ran."""
    ours, echo = profiles["ftraced"].per_operation(), profiles["echo"].per_operation()
    yield from _table("where the server's CPU goes, per operation (py-spy)", ours, echo, [
        *[name for name in ours if name not in (OUTSIDE_GIL, TOTAL)],
        *[name for name in echo if name not in ours], OUTSIDE_GIL, TOTAL])
    yield ""
    yield "; ".join(f"{server}: {p.operations:,} operations, {p.cpu:.2f} s of CPU "
                    f"(sampled over {p.window:.1f} s)" for server, p in profiles.items()) + "."
    if not all(p.native for p in profiles.values()):
        return
    ours = profiles["ftraced"].native_per_operation()
    echo = profiles["echo"].native_per_operation()
    yield ""
    yield from _table("the same CPU by perf: user space by library, the kernel by what "
                      "the thread was doing", ours, echo,
                      [row for row in (*perf_profile.ROWS, TOTAL)
                       if row in ours or row in echo])
    yield ""
    yield "; ".join(f"{server}: {sum(p.native.values()):,} perf samples"
                    for server, p in profiles.items()) + "."


def write(results: dict[str, dict[str, Profile]], out: str, seconds: float,
          no_perf: str | None, loads: tuple[float, float]) -> tuple[str, str]:
    """``profile.json`` and ``profile.md``; ``no_perf`` says why perf did not run, and
    ``loads`` are the machine's load averages at the run's start and end: on a shared
    machine, the figures are for comparing a table's columns, measured in turn under the
    same load, more than for comparing runs."""
    data = {name: {server: {"operations": p.operations, "cpu_s": round(p.cpu, 3),
                            "window_s": round(p.window, 2),
                            "per_operation_us": {layer: round(value * 1e6, 1)
                                                 for layer, value in p.per_operation().items()},
                            "perf": {"not_run": no_perf} if no_perf else {
                                "samples": sum(p.native.values()),
                                "per_operation_us": {
                                    row: round(value * 1e6, 1)
                                    for row, value in p.native_per_operation().items()}}}
                   for server, p in profiles.items()}
            for name, profiles in results.items()}
    os.makedirs(out, exist_ok=True)
    json_path, md_path = os.path.join(out, "profile.json"), os.path.join(out, "profile.md")
    with open(json_path, "w", encoding="utf-8") as out_file:
        json.dump(data, out_file, indent=1)
    perf = (f"perf did not run: {no_perf}." if no_perf else
            "Over the same window, `perf record --all-cpus --call-graph dwarf`, a sample "
            f"every {perf_profile.PERIOD_NS / 1e6:g} ms of CPU, splits the server's CPU "
            "again, user and kernel space (see `bench/perf_profile.py`).")
    lines = ["# Where the servers' CPU goes", "",
             f"`python -m bench.profile --seconds {seconds:g}`: py-spy `--gil` at {RATE} Hz "
             "on the server, its CPU from `/proc` (see `bench/profile.py`). " + perf +
             " Per operation of ftraced, per call of the echo server.", "",
             f"The machine: {os.cpu_count()} CPUs, a 1-minute load average of {loads[0]:.1f} "
             f"at the start and {loads[1]:.1f} at the end of the run: compare a table's "
             "columns, measured in turn under the same load, rather than runs.", ""]
    for name, profiles in results.items():
        lines += [f"## {name}: {SCENARIOS[name][0]}", "", *table(profiles), ""]
    with open(md_path, "w", encoding="utf-8") as out_file:
        out_file.write("\n".join(lines))
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    return run_to_the_end("bench.profile", lambda: run(argv))


def run(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="sampled time per server and scenario (default 10)")
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), metavar="NAME")
    parser.add_argument("--out", default=BENCH_DIR, metavar="DIR")
    parser.add_argument("--no-perf", action="store_true",
                        help="py-spy alone, without perf's native split")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, Profile]] = {}
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ftbench-profile-") as directory:
        no_perf = "left out (--no-perf)" if args.no_perf else perf_profile.unavailable(directory)
        if no_perf and not args.no_perf:
            print(f"bench.profile: {no_perf}; profiling with py-spy alone", file=sys.stderr)
        sampling = Sampling(directory, perf=not no_perf)
        pool = WorkerPool(CLIENTS, directory)
        try:
            for name in args.only or SCENARIOS:
                print(f"bench.profile: {name} ...", file=sys.stderr, flush=True)
                results[name] = SCENARIOS[name][1](args.seconds, pool, sampling)
        finally:
            pool.close()
    json_path, md_path = write(results, args.out, args.seconds, no_perf,
                               (load_at_start, os.getloadavg()[0]))
    print(f"bench.profile: wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
