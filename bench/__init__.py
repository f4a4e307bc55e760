"""Benchmarks of ftrace-sim, reported as ratios against baselines measured in the same run.

``python -m bench [--quick] [--out DIR] [--only NAME ...]`` (``make bench``, ``make bench
QUICK=1``) runs every module below and writes ``results.json`` and ``results.md`` (into
``bench/`` unless ``--out`` says otherwise):

- ``rpc_overhead``: ``cat tracing_on`` (``ReadFile``) and a ``set_ftrace_filter`` write
  session against a bare gRPC echo server, 1/4/16 client processes, unix socket and TCP;
- ``core_filter``: ``ftrace_hash_move`` against a C reference of the kernel's full-scan
  loop (``bench/c/full_scan.c``, built with gcc at run time) and a plain-Python loop;
- ``module_load``: the counts of a 2,000-function module's records, against a Python loop;
- ``invoke``: traced invocations per second through one batched ``Invoke``, against a
  plain-Python per-event loop;
- ``stress_throughput``: ``ftrace-stress`` operations per second against the echo rate,
  and against echo clients making the stress clients' calls;
- ``time_to_detection``: from ``bench/time_to_detection.py`` when it is there;
- ``memory``: shared memory per record, the daemon's resident memory.

Every figure is the median of at least 5 repetitions, each repetition timing the measured
code and then its baselines, back to back, so that a machine that slows down slows both;
min and max are kept.  Nothing here is a test assertion.
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kernel_daemon.kernel import Kernel

#: Where the results go by default, and the repository they measure.
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
#: Repetitions of every figure (the issue asks for at least 5).
REPS = 5


@dataclass
class Stats:
    """The samples of one figure: median, min, max."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)


@dataclass
class Entry:
    """One row of results.json.

    ``ratio`` is ours / baseline when ``higher_is_better`` (rates), baseline / ours when
    not (times, bytes), so a ratio above 1 always means "better than the baseline";
    ``met`` is ``ratio >= target_ratio`` (None when there is no target or no figure).
    """

    name: str
    unit: str
    value: float | None
    baseline_name: str | None = None
    baseline_value: float | None = None
    target_ratio: float | None = None
    higher_is_better: bool = True
    value_min: float | None = None
    value_max: float | None = None
    baseline_min: float | None = None
    baseline_max: float | None = None
    reps: int = 0
    group: str = ""
    note: str = ""
    ratio: float | None = field(default=None)
    met: bool | None = field(default=None)

    def __post_init__(self) -> None:
        if self.ratio is None and self.value and self.baseline_value:
            self.ratio = (self.value / self.baseline_value if self.higher_is_better
                          else self.baseline_value / self.value)
        if self.met is None and self.target_ratio is not None and self.ratio is not None:
            self.met = self.ratio >= self.target_ratio

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def entry(name: str, unit: str, ours: Stats | None, baseline_name: str | None = None,
          baseline: Stats | None = None, target_ratio: float | None = None,
          higher_is_better: bool = True, group: str = "", note: str = "") -> Entry:
    """An Entry from the samples of the measured code and of its baseline."""
    return Entry(
        name=name, unit=unit, value=ours.median if ours else None,
        baseline_name=baseline_name, baseline_value=baseline.median if baseline else None,
        target_ratio=target_ratio, higher_is_better=higher_is_better,
        value_min=ours.min if ours else None, value_max=ours.max if ours else None,
        baseline_min=baseline.min if baseline else None,
        baseline_max=baseline.max if baseline else None,
        reps=len(ours.samples) if ours else 0, group=group, note=note)


def alternate(measures: dict[str, Callable[[], float]], reps: int = REPS) -> dict[str, Stats]:
    """Run each measure once per repetition, in turn; the order of the first two is
    swapped every other repetition, so neither always runs first."""
    samples: dict[str, list[float]] = {name: [] for name in measures}
    names = list(measures)
    for rep in range(reps):
        order = names if rep % 2 == 0 else names[1:2] + names[:1] + names[2:]
        for name in order:
            samples[name].append(measures[name]())
    return {name: Stats(values) for name, values in samples.items()}


def run_to_the_end(prog: str, run: Callable[[], int]) -> int:
    """``run()``'s exit status, or, after Ctrl-C or SIGTERM (which ends the run as Ctrl-C
    does: :func:`clients.cli.sigterm_interrupts`), ``PROG: interrupted by SIGNAL`` and
    128 + its number, once the KeyboardInterrupt has unwound every ``finally`` and
    ``with`` of the run: its in-process kernels shut down (their ``/dev/shm`` segments
    unlinked), its daemons and worker processes stopped."""
    from clients.cli import sigterm_interrupts
    from kernel_daemon.shm import NAME_PREFIX, unlink_namespace

    sigterm_interrupts()
    try:
        return run()
    except KeyboardInterrupt as interrupt:
        # A signal taken as Kernel() returned, before booted_kernel held the kernel, was
        # raised outside every `try` that would shut it down: its segments are this
        # process's, and no kernel of it runs any more.
        unlink_namespace(f"{NAME_PREFIX}.{os.getpid()}")
        name = interrupt.args[0] if interrupt.args else "SIGINT"
        print(f"{prog}: interrupted by {name}", file=sys.stderr)
        return 128 + signal.Signals[name]


def booted_kernel(**options: Any) -> Kernel:
    """A model kernel booted with ``BootOptions(**options)``, in this process, as ftraced
    keeps it: frozen out of the cyclic collector after boot, or a full collection walking
    its objects would land in one repetition or another, ours or the baseline's."""
    from kernel_daemon.kernel import BootOptions, Kernel
    from kernel_daemon.rpc.state import freeze_booted_kernel

    kernel = Kernel(BootOptions(**options))
    try:
        freeze_booted_kernel()
    except BaseException:  # Ctrl-C, SIGTERM: the caller's `finally` has no kernel yet
        kernel.shutdown()
        raise
    return kernel


def time_per_call(fn: Callable[[], Any], calls: int) -> float:
    """Seconds per call of ``fn`` over ``calls`` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def fmt_si(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s" and value < 1:
        for scale, suffix in ((1e-6, "µs"), (1e-3, "ms")):
            if value < scale * 1000:
                return f"{value / scale:.3g} {suffix}"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.3g} M{unit}"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.3g} k{unit}"
    return f"{value:.4g} {unit}"
