"""Time to detection: for each row of the outcome table, how long ftrace-stress takes to
find the anomaly, as the median over several seeds.

    python bench/time_to_detection.py [--seeds N] [--quick]

Rows: ``buggy`` (the WARN is to be found), ``fixed`` (clean: no time, the operations it
stayed clean through), ``fixed`` with each race window (an anomaly is to be found). Each
run is ``ftrace-stress`` as a user starts it (a private daemon, the default clients,
--no-minimize; ``--stop-on warning`` for the WARN row), one after the other so that runs
do not slow each other down; the time is the report's ``time_to_detection_s``: from the
moment every client started to the detection of what the row expects. Writes
``bench/time_to_detection.json`` (not committed: the figures of record are ``make bench``'s
``bench/results.json``, which runs :func:`measure` too) and prints the table.
``--quick``: a small kernel (2048 core functions) and shorter limits.

:func:`measure` is the entry point for the benchmark suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(REPO, "bench", "time_to_detection.json")
#: (variant, race window, what the row expects).
ROWS: tuple[tuple[str, str | None, str], ...] = (
    ("buggy", None, "WARN"),
    ("fixed", None, "clean"),
    ("fixed", "load-count", "anomaly"),
    ("fixed", "publish-early", "anomaly"),
    ("fixed", "unload-unlocked", "anomaly"),
)
#: Seconds a run may take to find its anomaly (and a clean run lasts), full and quick.
LIMIT = {False: 60.0, True: 30.0}
CLEAN_DURATION = {False: 20.0, True: 5.0}


def run_once(variant: str, race: str | None, seed: int, quick: bool, out: str) -> dict[str, Any]:
    """One ftrace-stress run; what its report says about detection."""
    clean = variant == "fixed" and race is None
    argv = [sys.executable, "-m", "clients.stress", "--out", out, "--seed", str(seed),
            "--variant", variant, "--no-minimize",
            "--duration", str(CLEAN_DURATION[quick] if clean else LIMIT[quick])]
    if race:
        argv += ["--race", race]
    if variant == "buggy":
        argv += ["--stop-on", "warning"]
    if quick:
        argv += ["--core-functions", "2048"]
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop("FTRACED_ADDRESS", None)
    started = time.monotonic()
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=LIMIT[quick] + 600)
    with open(os.path.join(out, "report.json"), encoding="utf-8") as report_file:
        report = json.load(report_file)
    first = next((a for a in report["anomalies"] if a["phase"] == "run"), None)
    return {
        "seed": seed,
        "exit_status": done.returncode,
        "time_s": report["time_to_detection_s"],
        "first_anomaly": first["message"] if first else None,
        "warn": any(a["kind"] == "WARNING" for a in report["anomalies"]),
        "operations": report["operations"]["in_run"],
        "wall_s": round(time.monotonic() - started, 3),
    }


def measure(seeds: int = 5, quick: bool = False) -> list[dict[str, Any]]:
    """One row per line of the outcome table: the runs and the median time to detection."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="ttd-") as scratch:
        for variant, race, expected in ROWS:
            runs = [run_once(variant, race, seed, quick,
                             os.path.join(scratch, f"{variant}-{race}-{seed}"))
                    for seed in range(1, seeds + 1)]
            times = [run["time_s"] for run in runs if run["time_s"] is not None]
            if expected == "clean":
                held = sum(run["exit_status"] == 0 for run in runs)
            elif expected == "WARN":
                held = sum(run["exit_status"] == 1 and run["warn"] for run in runs)
            else:
                held = sum(run["exit_status"] == 1 for run in runs)
            rows.append({
                "variant": variant,
                "race": race,
                "expected": expected,
                "seeds": seeds,
                "held": held,
                "median_s": round(statistics.median(times), 3) if times else None,
                "times_s": times,
                "median_operations": statistics.median(run["operations"] for run in runs),
                "runs": runs,
            })
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| kernel | expected | held | median time to detection |", "|---|---|---|---|"]
    for row in rows:
        kernel = row["variant"] + (f" --race {row['race']}" if row["race"] else "")
        expected = {"WARN": "the WARN is found", "clean": "clean",
                    "anomaly": "an anomaly is found"}[row["expected"]]
        when = (f"{row['median_s']:.2f} s" if row["median_s"] is not None
                else f"none in {row['median_operations']:.0f} operations")
        lines.append(f"| {kernel} | {expected} | {row['held']}/{row['seeds']} | {when} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per row (default 5)")
    parser.add_argument("--quick", action="store_true",
                        help="a small kernel and shorter limits")
    args = parser.parse_args(argv)
    rows = measure(args.seeds, args.quick)
    with open(OUTPUT, "w", encoding="utf-8") as out:
        json.dump({"seeds": args.seeds, "quick": args.quick, "rows": rows}, out, indent=2)
        out.write("\n")
    print(table(rows))
    return 0 if all(row["held"] == row["seeds"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
