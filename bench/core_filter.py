"""A filter change in the core: ``ftrace_hash_move`` (its disable and enable passes of
``__ftrace_hash_rec_update``) over the core kernel's records.

Measured: the model's ``ftrace_hash_move(ops, enable=1, src)`` for an enabled ops, the
filter going back and forth between two hashes of the same size (1, 100 or 10,000
functions, or empty: all functions), with a notrace hash of 0 or 100 functions, over a
kernel of 60,000 and of 600,000 functions.  Each call gets a fresh source hash, made
outside the timed region from the entries' array, as the C reference gets the array and
the Python loop a set: the conversion of Python ints into an array, which
``set_ftrace_filter`` does before its ``ftrace_hash_move``, is not part of the move.

Baselines, on the same record array (the shared-memory ``dyn_ftrace`` pages):

- **C full scan**: ``bench/c/full_scan.c``, the 3.6 kernel's loop with the kernel's hash
  (hlist buckets, ``hash_long``), built with ``gcc -O2`` into a temporary directory at run
  time and called through ctypes: the disable pass, the new hash built from the source's
  entries, the old one freed, the enable pass;
- **plain Python**: the same loop over Python lists (ips and flags copied out of the
  records beforehand) with Python sets as hashes.

Before timing, one move by the model and one by C are checked against the Python loop:
the records must end up the same.
"""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable

import numpy as np

from bench import BENCH_DIR, REPS, Entry, alternate, booted_kernel, entry

C_SOURCE = os.path.join(BENCH_DIR, "c", "full_scan.c")

FTRACE_FL_MASK = 0x3 << 30
FTRACE_REF_MAX = (1 << 30) - 1
_COUNT_MASK = ~FTRACE_FL_MASK & 0xFFFFFFFFFFFFFFFF

RECORD_COUNTS = (60_000, 600_000)
FILTER_SIZES = (1, 100, 10_000, 0)  # 0: an empty filter, all functions
NOTRACE_SIZES = (0, 100)


# -- the C reference ---------------------------------------------------------------------

class FullScan:
    """``full_scan.c`` compiled and loaded; :meth:`close` removes the build directory."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="ftbench-c-")
        library = os.path.join(self.directory, "full_scan.so")
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", library, C_SOURCE],
                       check=True, capture_output=True)
        self.lib = ctypes.CDLL(library)
        self.lib.ftrace_hash_from_ips.restype = ctypes.c_void_p
        self.lib.ftrace_hash_from_ips.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
        self.lib.free_ftrace_hash.argtypes = [ctypes.c_void_p]
        self.lib.ftrace_hash_move_filter.argtypes = [
            ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p,
            ctypes.c_void_p, ctypes.c_ulong]
        self.lib.ftrace_hash_move_filter.restype = ctypes.c_int

    def hash(self, ips: np.ndarray) -> ctypes.c_void_p:
        if not len(ips):
            return ctypes.c_void_p(None)
        table = np.ascontiguousarray(ips, dtype=np.uint64)
        return ctypes.c_void_p(self.lib.ftrace_hash_from_ips(table.ctypes.data, len(table)))

    def free(self, hash: ctypes.c_void_p) -> None:
        if hash.value:
            self.lib.free_ftrace_hash(hash)

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class CMove:
    """ftrace_hash_move in C over a record array, its filter state kept between calls."""

    def __init__(self, scan: FullScan, recs: np.ndarray, filter_ips: np.ndarray,
                 notrace_ips: np.ndarray) -> None:
        self.scan = scan
        self.recs = recs
        self.address = recs.ctypes.data  # the shared-memory pages themselves
        self.filter = scan.hash(filter_ips)
        self.notrace = scan.hash(notrace_ips)

    def move(self, src: np.ndarray) -> None:
        warn = self.scan.lib.ftrace_hash_move_filter(
            self.address, len(self.recs), ctypes.byref(self.filter), self.notrace,
            src.ctypes.data if len(src) else None, len(src))
        if warn:
            raise RuntimeError(f"the C reference WARNed ({warn})")

    def close(self) -> None:
        self.scan.free(self.filter)
        self.scan.free(self.notrace)


# -- the plain-Python reference -----------------------------------------------------------

def py_hash_rec_update(ips: list[int], flags: list[int], filter_hash: set[int],
                       notrace_hash: set[int], is_filter: bool, inc: bool) -> int:
    """``__ftrace_hash_rec_update`` as a Python loop: 0, or 1/2 where the kernel WARNs."""
    if is_filter:
        hash, other = filter_hash, notrace_hash
        all = not hash
    else:
        inc = not inc
        hash, other = notrace_hash, filter_hash
        if not hash:
            return 0
        all = False
    count = 0
    size = len(hash)
    for i, ip in enumerate(ips):
        if all:
            if other and ip in other:
                continue
        else:
            in_hash = ip in hash
            in_other = ip in other
            if is_filter:
                if not in_hash or in_other:
                    continue
            elif not in_hash or not (in_other or not other):
                continue
        value = flags[i]
        if inc:
            value += 1
            flags[i] = value
            if value & _COUNT_MASK == FTRACE_REF_MAX:
                return 1
        else:
            if value & _COUNT_MASK == 0:
                return 2
            flags[i] = value - 1
        count += 1
        if not all and count == size:
            return 0
    return 0


class PyMove:
    """ftrace_hash_move as a plain-Python loop, on its own copy of the records."""

    def __init__(self, ips: np.ndarray, flags: np.ndarray, filter_ips: set[int],
                 notrace_ips: set[int]) -> None:
        self.ips = ips.tolist()
        self.flags = flags.tolist()
        self.filter = set(filter_ips)
        self.notrace = set(notrace_ips)

    def move(self, src: set[int]) -> None:
        py_hash_rec_update(self.ips, self.flags, self.filter, self.notrace, True, False)
        self.filter = set(src)
        py_hash_rec_update(self.ips, self.flags, self.filter, self.notrace, True, True)


# -- the benchmark ------------------------------------------------------------------------

def _batch(calls: int, move: Callable[[int], None], prepare: Callable[[int], object] | None
           ) -> float:
    """Seconds per call over ``calls`` calls of ``move(i)``; ``prepare(i)`` untimed."""
    total = 0.0
    for i in range(calls):
        if prepare is not None:
            prepare(i)
        start = time.perf_counter()
        move(i)
        total += time.perf_counter() - start
    return total / calls


def _calls(seconds_per_call: float, budget: float, minimum: int = 2) -> int:
    calls = max(minimum, int(budget / max(seconds_per_call, 1e-7)))
    return calls + calls % 2  # an even number: the filter ends where it started


def run_kernel(records: int, scan: FullScan, quick: bool, seed: int) -> list[Entry]:
    from kernel_daemon.ftrace.hash import FtraceHash
    from kernel_daemon.ftrace.ops import FtraceOps
    from kernel_daemon.ftrace.rec_update import ftrace_hash_move
    from kernel_daemon.ftrace.register import register_ftrace_function, unregister_ftrace_function

    entries: list[Entry] = []
    kernel = booted_kernel(core_functions=records, seed=seed)
    try:
        ft = kernel.ftrace
        group = ft.pages.groups[0]
        all_ips = group.ips.tolist()
        rng = random.Random(seed)
        budget = 0.02 if quick else 0.15
        for size in FILTER_SIZES:
            for notrace_size in NOTRACE_SIZES:
                sets = [set(rng.sample(all_ips, size)) if size else set() for _ in range(2)]
                notrace = set(rng.sample(all_ips, notrace_size))
                arrays = [np.array(sorted(s), dtype=np.uint64) for s in sets]
                notrace_array = np.array(sorted(notrace), dtype=np.uint64)
                ops = FtraceOps(f"bench_{size}_{notrace_size}")
                ops.filter_hash = FtraceHash(sets[0])
                ops.notrace_hash = FtraceHash(notrace)
                register_ftrace_function(ft, ops)
                srcs: list[FtraceHash] = []

                def prepare(i: int) -> None:
                    srcs[:] = [FtraceHash.from_sorted(arrays[(i + 1) % 2])]

                def ours(i: int) -> None:
                    ftrace_hash_move(ft, ops, True, srcs[0])

                # Checked first, one move each, against the Python loop: the model's
                # (sets[0] -> sets[1]), then C's (back to sets[0]).
                py_move = PyMove(group.ips, group.flags, sets[0], notrace)
                with ft.ftrace_lock:
                    prepare(0)
                    ours(0)
                py_move.move(sets[1])
                if group.flags.tolist() != py_move.flags:
                    raise AssertionError(f"model and Python loop differ ({size}/{notrace_size})")
                c_move = CMove(scan, group.recs, arrays[1], notrace_array)
                try:
                    c_move.move(arrays[0])
                    py_move.move(sets[0])
                    if group.flags.tolist() != py_move.flags:
                        raise AssertionError(f"C and Python loop differ ({size}/{notrace_size})")
                    # The records are back on sets[0]: so is the model's ops, uncounted.
                    ops.filter_hash = FtraceHash(sets[0])

                    with ft.ftrace_lock:
                        t_ours = _batch(2, ours, prepare)
                    t_c = _batch(2, lambda i: c_move.move(arrays[(i + 1) % 2]), None)
                    t_py = _batch(2, lambda i: py_move.move(sets[(i + 1) % 2]), None)
                    n_ours, n_c = _calls(t_ours, budget), _calls(t_c, budget)
                    n_py = _calls(t_py, budget, minimum=2) if not quick else 2

                    def measure_ours() -> float:
                        with ft.ftrace_lock:
                            return _batch(n_ours, ours, prepare)

                    stats = alternate({
                        "ours": measure_ours,
                        "c": lambda: _batch(n_c, lambda i: c_move.move(arrays[(i + 1) % 2]), None),
                        "python": lambda: _batch(n_py, lambda i: py_move.move(sets[(i + 1) % 2]),
                                                 None),
                    }, REPS)
                finally:
                    c_move.close()
                unregister_ftrace_function(ft, ops)
                label = (f"{size:,} function{'s' if size > 1 else ''}" if size
                         else "all functions (empty filter)")
                name = f"core_filter/{records}/filter={size or 'all'}/notrace={notrace_size}"
                group_name = f"Filter change, {records:,} records"
                what = (f"ftrace_hash_move over {records:,} records: filter of {label}, "
                        f"notrace of {notrace_size}")
                target_c = 1.0 if size in (1, 100) else 0.5 if size == 0 else None
                entries.append(entry(f"{name}/vs_c", "s", stats["ours"], "C full scan (gcc -O2)",
                                     stats["c"], target_c, higher_is_better=False,
                                     group=group_name, note=what))
                entries.append(entry(f"{name}/vs_python", "s", stats["ours"], "plain-Python loop",
                                     stats["python"], 20.0, higher_is_better=False,
                                     group=group_name, note=what))
    finally:
        kernel.shutdown()
    return entries


def run(quick: bool = False, seed: int = 1) -> list[Entry]:
    if shutil.which("gcc") is None:
        return [Entry("core_filter", "s", None, note="gcc not found: no C reference")]
    scan = FullScan()
    try:
        entries = []
        for records in RECORD_COUNTS[:1] if quick else RECORD_COUNTS:
            entries += run_kernel(records, scan, quick, seed)
        return entries
    finally:
        scan.close()
