"""``results.json`` and ``results.md``: the figures of one run of the benchmarks.

``results.json`` is a list of entries, each ``{name, unit, value, baseline_name,
baseline_value, ratio, target_ratio, met}`` plus ``value_min``/``value_max``,
``baseline_min``/``baseline_max`` (over the repetitions), ``reps``, ``higher_is_better``
(the ratio is ours / baseline when true, baseline / ours when false), ``group`` and
``note``.  ``results.md`` is the same as a markdown table, with a header saying how and
where the run was made.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Iterable, Sequence
from typing import Any

from bench import Entry, fmt_si

REQUIRED_KEYS = ("name", "unit", "value", "baseline_name", "baseline_value", "ratio",
                 "target_ratio", "met")


def validate(entries: Sequence[dict[str, Any]]) -> None:
    """Raise ValueError unless ``entries`` is a well-formed results.json list."""
    if not isinstance(entries, list) or not entries:
        raise ValueError("results must be a non-empty list")
    names = set()
    for item in entries:
        missing = [key for key in REQUIRED_KEYS if key not in item]
        if missing:
            raise ValueError(f"{item.get('name')!r} lacks {missing}")
        if item["name"] in names:
            raise ValueError(f"duplicate entry {item['name']!r}")
        names.add(item["name"])
        for key in ("value", "baseline_value", "ratio", "target_ratio", "value_min",
                    "value_max", "baseline_min", "baseline_max"):
            value = item.get(key)
            if value is not None and (not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise ValueError(f"{item['name']}: {key} is {value!r}")
        if item["met"] is not None and not isinstance(item["met"], bool):
            raise ValueError(f"{item['name']}: met is {item['met']!r}")
        if item["target_ratio"] is not None and item["ratio"] is not None:
            if item["met"] != (item["ratio"] >= item["target_ratio"]):
                raise ValueError(f"{item['name']}: met disagrees with ratio and target")
        if item["value"] is not None and item.get("value_min") is not None:
            if not item["value_min"] <= item["value"] <= item["value_max"]:
                raise ValueError(f"{item['name']}: value outside [min, max]")


def _fmt_ratio(entry: Entry) -> str:
    if entry.ratio is None:
        return "—"
    return f"{entry.ratio:.3g}×" if entry.ratio < 100 else f"{entry.ratio:,.0f}×"


def _fmt_value(value: float | None, low: float | None, high: float | None, unit: str) -> str:
    if value is None:
        return "—"
    text = fmt_si(value, unit)
    if low is not None and high is not None and low != high:
        text += f" <sub>({fmt_si(low, unit)} – {fmt_si(high, unit)})</sub>"
    return text


def markdown(entries: Iterable[Entry], header: str = "") -> str:
    lines = [header] if header else []
    group = None
    for entry in entries:
        if entry.group != group:
            group = entry.group
            lines += ["", f"### {group or 'Other'}", "",
                      "| figure | ours (median, min – max) | baseline | baseline figure | ratio "
                      "| target | met |",
                      "|---|---|---|---|---|---|---|"]
        target = f"≥ {entry.target_ratio:g}×" if entry.target_ratio is not None else "—"
        met = {True: "yes", False: "**no**", None: "—"}[entry.met]
        what = entry.note or entry.name
        ours = _fmt_value(entry.value, entry.value_min, entry.value_max, entry.unit)
        base = _fmt_value(entry.baseline_value, entry.baseline_min, entry.baseline_max,
                          entry.unit)
        lines.append(f"| {what} | {ours} | {entry.baseline_name or '—'} | {base} "
                     f"| {_fmt_ratio(entry)} | {target} | {met} |")
    return "\n".join(lines) + "\n"


def header(quick: bool, seconds: float) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        import grpc
        grpc_version = grpc.__version__
    except ImportError:  # pragma: no cover
        grpc_version = "?"
    return (
        "# ftrace-sim benchmarks\n\n"
        f"`python -m bench{' --quick' if quick else ''}` "
        f"(`make bench{' QUICK=1' if quick else ''}`)"
        f", {seconds:.0f} s, on {os.cpu_count()} CPUs ({cpu}), Python "
        f"{platform.python_version()}, grpcio {grpc_version}."
        + (" **Quick mode: small sizes and short windows; the figures only show that "
           "the benchmarks run.**" if quick else "")
        + "\n\nEach figure is the median of its repetitions (min – max in small print); "
        "each repetition runs the measured code and its baselines back to back. Ratio: "
        "ours / baseline for rates, baseline / ours for times and sizes, so above 1 is "
        "better than the baseline.\n")


def write(entries: Sequence[Entry], out_dir: str, quick: bool, seconds: float) -> tuple[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    items = [entry.as_dict() for entry in entries]
    validate(items)
    json_path = os.path.join(out_dir, "results.json")
    md_path = os.path.join(out_dir, "results.md")
    with open(json_path, "w") as out:
        json.dump(items, out, indent=2)
        out.write("\n")
    with open(md_path, "w") as out:
        out.write(markdown(entries, header(quick, seconds)))
    return json_path, md_path
