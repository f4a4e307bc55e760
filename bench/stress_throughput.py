"""Stress throughput: operations per second of ``ftrace-stress`` with 16 client processes.

``python -m clients.stress --variant fixed --ops N --tracers 4 --loaders 4 --shells 4
--invokers 4 --no-minimize --seed S --out DIR`` (a private daemon, the stress tool's own
defaults otherwise); the figure is ``operations.per_second`` of its ``report.json``.
Baseline: the bare gRPC echo server's unary rate with 16 client processes, measured
between the stress runs, each time on another of several echo server processes (as each
stress run boots a daemon of its own; see ``bench.procs.Servers``).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile

from bench import REPS, Entry, Stats, alternate, entry
from bench.procs import REPO_ROOT, Servers, WorkerPool

CLIENTS = {"tracers": 4, "loaders": 4, "shells": 4, "invokers": 4}
OPS = 2500
TARGET = 0.8
TIMEOUT = 180


class StressUnavailable(RuntimeError):
    pass


def stress_rate(ops: int, seed: int, directory: str) -> float:
    out = os.path.join(directory, f"stress-{seed}")
    argv = [sys.executable, "-m", "clients.stress", "--variant", "fixed", "--ops", str(ops),
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
    return float(report["operations"]["per_second"])


def run(quick: bool = False, seed: int = 1, pool: WorkerPool | None = None) -> list[Entry]:
    ops = OPS
    window = 0.25 if quick else 0.8
    clients = sum(CLIENTS.values())
    what = (f"ftrace-stress --variant fixed --ops {ops}, "
            + ", ".join(f"{n} {kind}" for kind, n in CLIENTS.items()))
    if quick:
        # Each run boots a daemon and 16 clients and checks to the end: too long here.
        return [Entry("stress/ops_per_s", "ops/s", None, f"echo unary call, {clients} clients",
                      None, TARGET, group="Stress throughput",
                      note=f"{what}: not run in quick mode")]
    with tempfile.TemporaryDirectory(prefix="ftbench-stress-") as directory:
        own_pool = pool is None
        pool = pool or WorkerPool(clients, directory)
        try:
            with Servers(REPS, "echo", "unix", directory=directory) as echo:
                for address in echo.addresses:
                    pool.warm("unary", address, clients)
                seeds = iter(range(seed, seed + 1000))
                echoes = itertools.cycle(echo.addresses)
                try:
                    stats = alternate({
                        "ours": lambda: stress_rate(ops, next(seeds), directory),
                        "echo": lambda: pool.rate("unary", next(echoes), clients, window),
                    }, REPS)
                except (StressUnavailable, subprocess.TimeoutExpired) as error:
                    return [Entry("stress/ops_per_s", "ops/s", None,
                                  f"echo unary call, {clients} clients", None, TARGET,
                                  group="Stress throughput", note=f"{what}: not measured: {error}")]
        finally:
            if own_pool:
                pool.close()
    return [entry("stress/ops_per_s", "ops/s", stats["ours"], f"echo unary call, {clients} clients",
                  stats["echo"], TARGET, group="Stress throughput", note=what)]


__all__ = ["run", "stress_rate", "Stats"]
