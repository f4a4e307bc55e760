"""``python -m bench [--quick] [--out DIR] [--only NAME ...] [--skip NAME ...]``.

Runs the benchmarks in turn (see ``bench/__init__.py``) and writes ``results.json`` and
``results.md`` into ``--out`` (default: the ``bench`` directory, whose files are the
committed figures; ``bench/quick`` with ``--quick``, so that a smoke run leaves them
alone).  A benchmark that fails is recorded as an entry without a figure, with the error
in its note, and the others still run.  ``--quick`` (``make bench QUICK=1``) uses small
sizes and short windows: it shows that everything runs, in well under a minute, not how
fast.  Ctrl-C or SIGTERM ends the run, writing nothing, after the benchmark in progress
stopped what it started (:func:`bench.run_to_the_end`): its in-process kernel shut down,
its ``/dev/shm`` segments unlinked, its daemons and worker processes stopped.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable

from bench import BENCH_DIR, Entry, Stats, entry, run_to_the_end
from bench import results as results_mod

BENCHMARKS = ("core_filter", "module_load", "invoke", "memory", "rpc_overhead",
              "stress_throughput", "time_to_detection")
#: Seeds per row of the time-to-detection table.
TTD_SEEDS = 5


def _failed(name: str, error: BaseException) -> Entry:
    detail = "".join(traceback.format_exception_only(type(error), error)).strip()
    return Entry(f"{name}/failed", "", None, group=name, note=f"{name} failed: {detail}")


def ttd_entry(row: dict) -> Entry:
    """An entry from one row of ``bench.time_to_detection.measure()``."""
    kernel = row["variant"] + (f" --race {row['race']}" if row.get("race") else "")
    name = "time_to_detection/" + row["variant"] + (f"/{row['race']}" if row.get("race") else "")
    times = [t for t in row.get("times_s") or [] if t is not None]
    expected = {"WARN": "the WARN is found", "clean": "stays clean",
                "anomaly": "an anomaly is found"}.get(row.get("expected"), row.get("expected"))
    note = (f"ftrace-stress --variant {kernel}: {expected} in {row.get('held')} of "
            f"{row.get('seeds')} seeds")
    if not times:
        note += f" (median {row.get('median_operations', 0):.0f} operations)"
    stats = Stats(times) if times else None
    return entry(name, "s", stats, None, None, None, higher_is_better=False,
                 group="Time to detection (median over seeds)", note=note)


def _ttd_entries(quick: bool) -> list[Entry]:
    """bench/time_to_detection.py's ``measure(seeds, quick)``, when the module is there."""
    group = "Time to detection (median over seeds)"
    if quick:
        return [Entry("time_to_detection", "s", None, group=group,
                      note="not run in quick mode (each seed is a full ftrace-stress run)")]
    if importlib.util.find_spec("bench.time_to_detection") is None:
        return [Entry("time_to_detection", "s", None, group=group,
                      note="bench/time_to_detection.py is not there yet: not measured")]
    module = importlib.import_module("bench.time_to_detection")
    return [ttd_entry(row) for row in module.measure(TTD_SEEDS, quick)]


def main(argv: list[str] | None = None) -> int:
    return run_to_the_end("bench", lambda: run(argv))


def run(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, short windows")
    parser.add_argument("--out", metavar="DIR",
                        help="where results.json and results.md go (default: bench/, "
                             "bench/quick/ with --quick)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, metavar="NAME",
                        help=f"run only these ({', '.join(BENCHMARKS)})")
    parser.add_argument("--skip", nargs="+", choices=BENCHMARKS, default=[], metavar="NAME")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    selected = [name for name in (args.only or BENCHMARKS) if name not in args.skip]
    quick, seed = args.quick, args.seed
    started = time.monotonic()
    entries: list[Entry] = []

    from bench.procs import WorkerPool

    with tempfile.TemporaryDirectory(prefix="ftbench-") as directory:
        pool: WorkerPool | None = None

        def shared_pool() -> WorkerPool:
            nonlocal pool
            if pool is None:
                pool = WorkerPool(4 if quick else 16, directory)
            return pool

        runners: dict[str, Callable[[], list[Entry]]] = {
            "core_filter": lambda: importlib.import_module("bench.core_filter").run(quick, seed),
            "module_load": lambda: importlib.import_module("bench.module_load").run(quick, seed),
            "invoke": lambda: importlib.import_module("bench.invoke").run(quick, seed),
            "memory": lambda: importlib.import_module("bench.memory").run(quick, seed),
            "rpc_overhead": lambda: importlib.import_module("bench.rpc_overhead").run(
                quick, seed, pool=shared_pool(), directory=directory),
            "stress_throughput": lambda: importlib.import_module("bench.stress_throughput").run(
                quick, seed, pool=shared_pool()),
            "time_to_detection": lambda: _ttd_entries(quick),
        }
        try:
            for name in selected:
                began = time.monotonic()
                print(f"bench: {name} ...", file=sys.stderr, flush=True)
                try:
                    produced = runners[name]()
                    results_mod.validate([entry.as_dict() for entry in produced])
                except Exception as error:  # recorded; the other benchmarks still run
                    traceback.print_exc()
                    produced = [_failed(name, error)]
                entries += produced
                print(f"bench: {name} done in {time.monotonic() - began:.1f} s "
                      f"({sum(e.met is True for e in produced)} of "
                      f"{sum(e.met is not None for e in produced)} targets met)",
                      file=sys.stderr, flush=True)
        finally:
            if pool is not None:
                pool.close()
    out = args.out or (os.path.join(BENCH_DIR, "quick") if quick else BENCH_DIR)
    json_path, md_path = results_mod.write(entries, out, quick, time.monotonic() - started)
    print(f"bench: wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
