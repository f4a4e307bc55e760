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

A stress operation is not always one unary call, so a second baseline, for information
(no target), makes the calls the stress clients make: 16 echo client processes, each
playing one kind as a stress client does (``SAME_CALLS``), on the same echo servers, in
turn with the other two measures. What each kind of operation sends ftraced, read from
``clients/stress/workers.py`` and ``clients/api.py`` and counted (``Kernel.Stats``
``rpc_counts`` before and after three runs of the fixed variant, seeds 1 to 3, against
their ``report.json`` operations by kind):

==========================  ==========================================  ================
operation (report kind)     gRPC calls                                  measured
==========================  ==========================================  ================
tracer register             a ``Tracer.Attach`` stream, one round trip  1,482 Attach for
                            (register / registered); refused (EINVAL:   1,482; 637 of
                            no function matches): the client cancels    them refused
tracer set_filter           one round trip on that stream               1.86 a session
tracer unregister           one round trip, then the half-close         1 a session
modprobe                    one unary ``Modules.Load``                  2,228 for 2,228
rmmod                       one unary ``Modules.Unload``                2,771 for 2,767
echo > / >> FILE (shell)    one unary ``Tracefs.WriteFile``             3,290 for 3,289
                            (``Client.write_file``; not a ``Session``)
invoke                      one unary ``Tracer.Invoke``                 5,696 for 5,696
==========================  ==========================================  ================

(the few more Unloads and WriteFiles are the orchestrator's, restoring the kernel at
the end). So a loader, shell or invoker operation is one unary call (``unary_md``), a
tracer's one round trip on a stream it keeps open across its session: 2.63 operations a
stream here (1.86 set_filters a registered session, the code's 0.65 / 0.35; 43% of the
registers refused, each a stream of that one round trip), which ``attach_md`` plays
(``bench.rpc_worker``). Both carry the caller identity as metadata, as the stress
clients' calls do (theirs add the boot id, one more header). Not played: what ftraced
does behind each call, and the calls ftrace-stress's checker makes meanwhile (about 65
``Kernel.Stats``, 65 ``Kernel.ListOps`` and 28 ``Kernel.CheckConsistency`` a second:
2,385 calls in the three runs, 13% of the clients' 17,879 operations), which ftraced
answers too.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from bench import REPO_ROOT, REPS, Entry, Stats, alternate, entry
from bench.procs import Servers, Window, WorkerPool

CLIENTS = {"tracers": 4, "loaders": 4, "shells": 4, "invokers": 4}
#: The echo client op making the calls of each kind of stress client (module docstring).
SAME_CALLS = {"tracers": "attach_md", "loaders": "unary_md", "shells": "unary_md",
              "invokers": "unary_md"}
#: The echo baselines whose CPU :class:`CpuSamples` keeps: the unary call, the same calls.
UNARY, SAME = "unary", "same calls"
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


def same_calls(clients: dict[str, int]) -> list[str]:
    """The echo client ops making the calls of ``clients`` (kind -> processes), one per
    process."""
    return [SAME_CALLS[kind] for kind, count in clients.items() for _ in range(count)]


def run(quick: bool = False, seed: int = 1, pool: WorkerPool | None = None) -> list[Entry]:
    window = 0.25 if quick else 0.8
    clients = sum(CLIENTS.values())
    baseline = f"echo unary call, {clients} clients"
    what = (f"ftrace-stress --variant fixed --duration {SECONDS:g}, "
            + ", ".join(f"{n} {kind}" for kind, n in CLIENTS.items()))
    # Each stress run boots a daemon and 16 clients and checks to the end: too long in
    # quick mode, where only the echo clients making the same calls run, one per kind.
    mix = {kind: 1 for kind in CLIENTS} if quick else CLIENTS
    mix_ops = same_calls(mix)
    same = ("echo clients making the same calls: "
            + ", ".join(f"{n} {kind}" for kind, n in mix.items()))
    same_what = "ftrace-stress against echo clients making the same calls"
    with tempfile.TemporaryDirectory(prefix="ftbench-stress-") as directory:
        own_pool = pool is None
        pool = pool or WorkerPool(len(mix_ops) if quick else clients, directory)
        try:
            with Servers(1 if quick else REPS, "echo", "unix", directory=directory) as echo:
                for address in echo.addresses:
                    if not quick:
                        pool.warm("unary", address, clients)
                    pool.warm(mix_ops, address, len(mix_ops))
                seeds = iter(range(seed, seed + 1000))
                cpu = CpuSamples()

                def ours() -> float:
                    report = stress_report(SECONDS, next(seeds), directory)
                    cpu.add_stress(report["cpu"]["ms_per_operation"])
                    return float(report["operations"]["per_second"])

                def echo_rate(ops: list[str], baseline: str) -> Callable[[], float]:
                    echoes = itertools.cycle(echo.servers)  # each repetition on the next

                    def measure() -> float:
                        server = next(echoes)
                        measured = pool.measure(ops, server.address, len(ops), window,
                                                server_pid=server.pid)
                        cpu.add_echo(measured, baseline)
                        return measured.rate
                    return measure

                if quick:
                    return [Entry("stress/ops_per_s", "ops/s", None, baseline, None, TARGET,
                                  group="Stress throughput",
                                  note=f"{what}: not run in quick mode"),
                            entry("stress/same_calls", "ops/s", None, same,
                                  Stats([echo_rate(mix_ops, SAME)()]), None,
                                  group="Stress throughput",
                                  note=f"{same_what}: not run in quick mode")]
                try:
                    stats = alternate({"ours": ours, "echo": echo_rate(["unary"] * clients, UNARY),
                                       "same": echo_rate(mix_ops, SAME)}, REPS)
                except (StressUnavailable, subprocess.TimeoutExpired) as error:
                    return [Entry("stress/ops_per_s", "ops/s", None, baseline, None, TARGET,
                                  group="Stress throughput", note=f"{what}: not measured: {error}")]
        finally:
            if own_pool:
                pool.close()
    return [entry("stress/ops_per_s", "ops/s", stats["ours"], baseline, stats["echo"], TARGET,
                  group="Stress throughput", note=what),
            entry("stress/same_calls", "ops/s", stats["ours"], same, stats["same"], None,
                  group="Stress throughput", note=same_what),
            *cpu.entries(clients)]


class CpuSamples:
    """CPU per operation of each stress run (its report's ``cpu`` section) and per call
    of each echo window (per operation of the echo clients making the same calls): where
    the time goes, beside the rate."""

    # The report's parties that are not a kind of client process.
    NOT_CLIENTS = ("ftraced", "ftrace-stress", "total")

    def __init__(self) -> None:
        self.stress: dict[str, list[float]] = {}  # party -> seconds per operation
        self.kinds: dict[str, list[float]] = {}  # client kind -> seconds per operation
        # UNARY or SAME -> (the echo server's, its clients') seconds per call
        self.echo: dict[str, tuple[list[float], list[float]]] = {}

    def add_stress(self, ms_per_operation: dict[str, float]) -> None:
        clients = 0.0
        for party, ms in ms_per_operation.items():
            if party in self.NOT_CLIENTS:
                self.stress.setdefault(party, []).append(ms / 1e3)
            else:
                self.kinds.setdefault(party, []).append(ms / 1e3)
                clients += ms / 1e3
        self.stress.setdefault("clients", []).append(clients)

    def add_echo(self, measured: Window, baseline: str) -> None:
        if measured.server_cpu_per_call is not None:
            server, clients = self.echo.setdefault(baseline, ([], []))
            server.append(measured.server_cpu_per_call)
            clients.append(measured.client_cpu_per_call)

    def entries(self, clients: int) -> list[Entry]:
        """Informational rows (no target): each party's CPU per operation against what
        the echo's party spends per call, then per operation of the echo clients making
        the same calls; the ratio is echo's cost / ours."""
        if "total" not in self.stress or UNARY not in self.echo:
            return []
        kinds = ", ".join(f"{kind} {Stats(samples).median * 1e3:.2f} ms"
                          for kind, samples in self.kinds.items())
        parties = (
            ("ftraced", "ftraced", "echo server", ""),
            ("clients", f"the {clients} client processes", f"the {clients} echo client processes",
             f"; by kind: {kinds}"),
            ("ftrace-stress", "ftrace-stress itself (the orchestrator and its checker)",
             None, ""),
            ("total", "every process", "echo server and clients",
             f"; {TARGET:g} of echo's rate on the same CPUs needs at most "
             f"1/{TARGET:g} of echo's total per operation"),
        )
        out = []
        for baseline, suffix, per in ((UNARY, "", "call"), (SAME, "/same_calls", "operation")):
            if baseline not in self.echo:
                continue
            server, echo_clients = self.echo[baseline]
            samples = {"ftraced": server, "clients": echo_clients,
                       "total": [s + c for s, c in zip(server, echo_clients)]}
            for party, ours, base, extra in parties:
                if party not in self.stress or (suffix and base is None):
                    continue
                if suffix:  # the rows above said the rest
                    base, extra = f"{base} making the same calls", ""
                out.append(entry(
                    f"stress/cpu/{party}{suffix}", "s", Stats(self.stress[party]),
                    f"{base}, CPU per {per}" if base else None,
                    Stats(samples[party]) if base else None, None, higher_is_better=False,
                    group="Stress throughput",
                    note=f"ftrace-stress as above, CPU per operation: {ours}{extra}"))
        return out


__all__ = ["run", "stress_report", "Stats"]
