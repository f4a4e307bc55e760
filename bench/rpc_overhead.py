"""RPC overhead: ftraced's lightest calls against a bare gRPC echo server.

Two servers run side by side on the same transport: ftraced (ephemeral daemons, default
boot options) and ``bench.echo_server``, built by the same ``new_grpc_server()`` (same
thread pool, same options) but with nothing behind its calls; five processes of each,
taken in turn, since one process of a server can be a fifth faster or slower than
another for its whole life (``bench.procs.Servers``).  1, 4 and 16 client processes
(``bench.rpc_worker``, started once and reused) call as fast as they can for a fixed
window (0.3 s, after 0.15 s of warm-up); the figure is completed operations per second,
summed over the clients: the median of 15 windows, those of ftraced and of the echo
server alternating.

- ``cat tracing_on``: one ``Tracefs.ReadFile`` against the echo server's unary call;
- ``echo schedule > set_ftrace_filter`` as a file session (``Tracefs.Session``: open,
  one write, close) against the echo server's bidirectional stream with as many round
  trips (three, then the half-close).

The clients call both servers through the same plain gRPC client code, with the same
call metadata (the caller identity ftraced's protocol asks for; the echo server ignores
it), so that only the server differs.  For information, on the unix socket:
``*/bare_echo`` rows compare with echo calls without metadata, ``*/api`` rows make
ftraced's calls through the client library (``clients.api.Client``).  ``*/server_cpu``
rows: the server process's CPU per call (from ``/proc``, over each window and its
warm-up), ftraced's against the echo server's; their difference is what ftraced's
handlers cost in place, under the load of that row.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable

from bench import REPS, Entry, Stats, alternate, entry
from bench.procs import Servers, WorkerPool

CONCURRENCY = (1, 4, 16)
TRANSPORTS = ("unix", "tcp")
# (measured op, echo op with the same metadata, bare echo op, client-library op, what,
# what the echo does)
OPERATIONS = (
    ("read", "unary_md", "unary", "read_api", "cat tracing_on (ReadFile)", "echo unary call"),
    ("session", "pingpong_md", "pingpong", "session_api",
     "echo schedule > set_ftrace_filter (Session: open, write, close)",
     "echo bidi stream, 3 round trips"),
)
TARGET = 0.9
# Short windows, many of them: a busy machine's swings hit both servers alike more often,
# and the ratios, near the target, move by up to 0.1 between runs with 7 of them.
RPC_REPS = 15
# Processes of each server, taken in turn (bench.procs.Servers): 3 windows on each.
INSTANCES = 5


def run(quick: bool = False, seed: int = 1, pool: WorkerPool | None = None,
        directory: str | None = None) -> list[Entry]:
    window, lead = (0.15, 0.1) if quick else (0.3, 0.15)
    instances = 1 if quick else INSTANCES
    concurrency = (1,) if quick else CONCURRENCY
    transports = ("unix",) if quick else TRANSPORTS
    entries: list[Entry] = []
    with tempfile.TemporaryDirectory(prefix="ftbench-rpc-") as tmp:
        directory = directory or tmp
        own_pool = pool is None
        pool = pool or WorkerPool(max(concurrency), directory)
        try:
            for transport in transports:
                with Servers(instances, "echo", transport, directory=directory) as echo, \
                        Servers(instances, "daemon", transport, ["--seed", str(seed)],
                                directory=directory) as daemon:
                    extra = transport == "unix" and not quick
                    for op, echo_op, bare_op, api_op, _, _ in OPERATIONS:
                        warm = [(op, daemon), (echo_op, echo)]
                        warm += [(bare_op, echo), (api_op, daemon)] if extra else []
                        for warm_op, servers in warm:
                            for address in servers.addresses:
                                pool.warm(warm_op, address, max(concurrency))
                    for clients in concurrency:
                        for op, echo_op, bare_op, api_op, what, echo_what in OPERATIONS:
                            server_cpu: dict[str, list[float]] = {"ours": [], "echo": []}

                            def rate(op: str, servers: Servers,
                                     cpu: list[float] | None = None) -> Callable[[], float]:
                                # Each repetition on the next process of the kind.
                                turn = itertools.cycle(servers.servers)

                                def measure() -> float:
                                    server = next(turn)
                                    measured = pool.measure(op, server.address, clients, window,
                                                            lead, server_pid=server.pid)
                                    if cpu is not None and measured.server_cpu is not None:
                                        cpu.append(measured.server_cpu_per_call)
                                    return measured.rate
                                return measure

                            measures = {"ours": rate(op, daemon, server_cpu["ours"]),
                                        "echo": rate(echo_op, echo, server_cpu["echo"])}
                            if extra:
                                measures["bare"] = rate(bare_op, echo)
                                measures["api"] = rate(api_op, daemon)
                            stats = alternate(measures, REPS if quick else RPC_REPS)
                            name = f"rpc/{op}/{transport}/clients={clients}"
                            group = "RPC overhead"
                            note = f"{what}, {clients} client process(es), {transport}"
                            entries.append(entry(
                                name, "ops/s", stats["ours"], f"{echo_what}, same metadata",
                                stats["echo"], TARGET, group=group, note=note))
                            if server_cpu["ours"] and server_cpu["echo"]:
                                entries.append(entry(
                                    f"{name}/server_cpu", "s", Stats(server_cpu["ours"]),
                                    f"{echo_what}, same metadata: the echo server's CPU",
                                    Stats(server_cpu["echo"]), None, higher_is_better=False,
                                    group=group, note=f"{note}: ftraced's CPU per call"))
                            if "bare" in stats:
                                entries.append(entry(
                                    f"{name}/bare_echo", "ops/s", stats["ours"],
                                    f"{echo_what}, no metadata", stats["bare"], None,
                                    group=group, note=note))
                                entries.append(entry(
                                    f"{name}/api", "ops/s", stats["api"],
                                    f"{echo_what}, same metadata", stats["echo"], None,
                                    group=group, note=f"{note}, through clients.api.Client"))
        finally:
            if own_pool:
                pool.close()
    return entries
