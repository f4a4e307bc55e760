"""Stress throughput: operations per second of ``ftrace-stress`` with 16 client processes.

``python -m clients.stress --variant fixed --duration 5 --tracers 4 --loaders 4 --shells 4
--invokers 4 --no-minimize --seed S --out DIR`` (a private daemon, the stress tool's own
defaults otherwise); the figure is ``operations.per_second`` of its ``report.json``.
A run of a set duration, not of a set number of operations: the clients are all busy
until the stop, as the echo clients are over their window, where with ``--ops`` the
last ones to finish run on alone. Baseline: the bare gRPC echo server's unary rate with
16 client processes, measured between the stress runs, each time on another of several
echo server processes (as each stress run boots a daemon of its own; see
``bench.procs.Servers``).

Beside the rate, where the CPU goes (rows without a target): each party's CPU per
operation, from the run's report (``cpu``: ftraced, the client processes, ftrace-stress
itself), against what the echo server and its client processes spend per call, read
from ``/proc`` around each echo window.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from bench import REPO_ROOT, REPS, Entry, Stats, alternate, entry
from bench.procs import Servers, Window, WorkerPool

CLIENTS = {"tracers": 4, "loaders": 4, "shells": 4, "invokers": 4}
SECONDS = 5.0
TARGET = 0.8
TIMEOUT = 180


class StressUnavailable(RuntimeError):
    pass


def stress_report(seconds: float, seed: int, directory: str,
                  address: str | None = None) -> dict[str, Any]:
    """The report of one run of ``seconds``: on a private daemon of the fixed variant,
    or on the daemon at ``address`` (started with the private daemon's options)."""
    out = os.path.join(directory, f"stress-{seed}")
    daemon = ["--variant", "fixed"] if address is None else ["--address", address]
    argv = [sys.executable, "-m", "clients.stress", *daemon, "--duration", str(seconds),
            "--no-minimize", "--seed", str(seed), "--out", out]
    for kind, count in CLIENTS.items():
        argv += [f"--{kind}", str(count)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (REPO_ROOT, env.get("PYTHONPATH"))))
    done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    report_path = os.path.join(out, "report.json")
    if not os.path.exists(report_path):
        raise StressUnavailable(f"ftrace-stress exited {done.returncode} without a report:\n"
                                f"{(done.stderr or done.stdout)[-2000:]}")
    with open(report_path) as report_file:
        report = json.load(report_file)
    if report.get("outcome") not in (None, "clean", "ok", "passed"):
        raise StressUnavailable(f"ftrace-stress ended {report.get('outcome')!r} "
                                f"(status {done.returncode}) on the fixed variant")
    return report


def run(quick: bool = False, seed: int = 1, pool: WorkerPool | None = None) -> list[Entry]:
    window = 0.25 if quick else 0.8
    clients = sum(CLIENTS.values())
    baseline = f"echo unary call, {clients} clients"
    what = (f"ftrace-stress --variant fixed --duration {SECONDS:g}, "
            + ", ".join(f"{n} {kind}" for kind, n in CLIENTS.items()))
    if quick:
        # Each run boots a daemon and 16 clients and checks to the end: too long here.
        return [Entry("stress/ops_per_s", "ops/s", None, baseline, None, TARGET,
                      group="Stress throughput", note=f"{what}: not run in quick mode")]
    with tempfile.TemporaryDirectory(prefix="ftbench-stress-") as directory:
        own_pool = pool is None
        pool = pool or WorkerPool(clients, directory)
        try:
            with Servers(REPS, "echo", "unix", directory=directory) as echo:
                for address in echo.addresses:
                    pool.warm("unary", address, clients)
                seeds = iter(range(seed, seed + 1000))
                echoes = itertools.cycle(echo.servers)
                cpu = CpuSamples()

                def ours() -> float:
                    report = stress_report(SECONDS, next(seeds), directory)
                    cpu.add_stress(report["cpu"]["ms_per_operation"])
                    return float(report["operations"]["per_second"])

                def echo_rate() -> float:
                    server = next(echoes)
                    measured = pool.measure("unary", server.address, clients, window,
                                            server_pid=server.pid)
                    cpu.add_echo(measured)
                    return measured.rate

                try:
                    stats = alternate({"ours": ours, "echo": echo_rate}, REPS)
                except (StressUnavailable, subprocess.TimeoutExpired) as error:
                    return [Entry("stress/ops_per_s", "ops/s", None, baseline, None, TARGET,
                                  group="Stress throughput", note=f"{what}: not measured: {error}")]
        finally:
            if own_pool:
                pool.close()
    return [entry("stress/ops_per_s", "ops/s", stats["ours"], baseline, stats["echo"], TARGET,
                  group="Stress throughput", note=what),
            *cpu.entries(clients)]


class CpuSamples:
    """CPU per operation of each stress run (its report's ``cpu`` section) and per call
    of each echo window: where the time goes, beside the rate."""

    # The report's parties that are not a kind of client process.
    NOT_CLIENTS = ("ftraced", "ftrace-stress", "total")

    def __init__(self) -> None:
        self.stress: dict[str, list[float]] = {}  # party -> seconds per operation
        self.kinds: dict[str, list[float]] = {}  # client kind -> seconds per operation
        self.echo_server: list[float] = []  # seconds per call
        self.echo_clients: list[float] = []

    def add_stress(self, ms_per_operation: dict[str, float]) -> None:
        clients = 0.0
        for party, ms in ms_per_operation.items():
            if party in self.NOT_CLIENTS:
                self.stress.setdefault(party, []).append(ms / 1e3)
            else:
                self.kinds.setdefault(party, []).append(ms / 1e3)
                clients += ms / 1e3
        self.stress.setdefault("clients", []).append(clients)

    def add_echo(self, measured: Window) -> None:
        if measured.server_cpu_per_call is not None:
            self.echo_server.append(measured.server_cpu_per_call)
            self.echo_clients.append(measured.client_cpu_per_call)

    def entries(self, clients: int) -> list[Entry]:
        """Informational rows (no target): each party's CPU per operation against what
        the echo's party spends per call; the ratio is echo's cost / ours."""
        if "total" not in self.stress or not self.echo_server:
            return []
        echo_total = [s + c for s, c in zip(self.echo_server, self.echo_clients)]
        kinds = ", ".join(f"{kind} {Stats(samples).median * 1e3:.2f} ms"
                          for kind, samples in self.kinds.items())
        rows = (
            ("ftraced", "ftraced", "echo server", self.echo_server, ""),
            ("clients", f"the {clients} client processes", f"the {clients} echo client processes",
             self.echo_clients, f"; by kind: {kinds}"),
            ("ftrace-stress", "ftrace-stress itself (the orchestrator and its checker)",
             None, None, ""),
            ("total", "every process", "echo server and clients", echo_total,
             f"; {TARGET:g} of echo's rate on the same CPUs needs at most "
             f"1/{TARGET:g} of echo's total per operation"),
        )
        out = []
        for party, ours, base, base_samples, extra in rows:
            if party not in self.stress:
                continue
            out.append(entry(
                f"stress/cpu/{party}", "s", Stats(self.stress[party]),
                f"{base}, CPU per call" if base else None,
                Stats(base_samples) if base_samples else None, None, higher_is_better=False,
                group="Stress throughput",
                note=f"ftrace-stress as above, CPU per operation: {ours}{extra}"))
        return out


__all__ = ["run", "stress_report", "Stats"]
