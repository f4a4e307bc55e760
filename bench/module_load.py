"""Module load accounting: the counts ``ftrace_update_code`` gives a new module's records.

A 2,000-function module is loaded into a 60,000-function kernel (variant ``fixed``) while
1 or 8 ops are registered, each holding a filter that names 50 of the module's functions
and 50 of the core kernel's; every other ops also has a notrace hash of 10 of the
module's functions (the situation of the upstream report: filters that outlived an
unload, met by the reload).  Measured: ``ftrace_update_code(mod)`` on the module's record
pages, under ``ftrace_lock`` as the kernel runs it (sampling the enabled ops, counting
each record's references with ``referenced_filters``, setting the counts and patching),
with the booted kernel frozen out of the cyclic collector as in ftraced.

Baseline: the kernel's loop in plain Python, over the new records as a list, with the
ops' hashes as Python sets: for each record, the count of ops tracing every function,
plus each ops whose filter references it and whose notrace does not, then the flags.
The two results are checked equal before timing.
"""

from __future__ import annotations

import random

from bench import REPS, Entry, alternate, booted_kernel, entry, time_per_call

MODULE_FUNCTIONS = 2_000
CORE_FUNCTIONS = 60_000
QUICK_CORE_FUNCTIONS = 8_192
OPS_COUNTS = (1, 8)
FILTER_MODULE = 50
FILTER_CORE = 50
NOTRACE_MODULE = 10
FTRACE_FL_ENABLED = 1 << 30


def py_update_code(ips: list[int], ops_list: list[tuple[set[int], set[int]]],
                   start_up: bool) -> list[int]:
    """``ftrace_update_code`` (fixed variant) as a Python loop: the new flags."""
    ref = sum(1 for filter, notrace in ops_list if not filter and not notrace)
    testing = [(filter, notrace) for filter, notrace in ops_list if filter or notrace]
    flags = []
    for ip in ips:
        cnt = ref
        for filter, notrace in testing:
            if (not filter or ip in filter) and ip not in notrace:
                cnt += 1
        flags.append(cnt | FTRACE_FL_ENABLED if start_up and cnt else cnt)
    return flags


def run(quick: bool = False, seed: int = 1) -> list[Entry]:
    from kernel_daemon.ftrace.hash import FtraceHash
    from kernel_daemon.ftrace.module_records import ftrace_update_code
    from kernel_daemon.ftrace.ops import FtraceOps
    from kernel_daemon.ftrace.register import register_ftrace_function, unregister_ftrace_function
    from kernel_daemon.module.catalog import module_from_function_list

    entries = []
    kernel = booted_kernel(core_functions=QUICK_CORE_FUNCTIONS if quick else CORE_FUNCTIONS,
                           seed=seed)
    try:
        ft = kernel.ftrace
        mod = kernel.modules.load_module(module_from_function_list(
            "benchmod", [f"benchmod_fn_{i}" for i in range(MODULE_FUNCTIONS)]))
        group = next(pg for pg in ft.pages.groups if pg.mod is mod)
        module_ips = group.ips.tolist()
        core_ips = ft.pages.groups[0].ips.tolist()
        ips_list = group.ips.tolist()
        rng = random.Random(seed)
        for n_ops in OPS_COUNTS:
            registered = []
            for i in range(n_ops):
                filter = set(rng.sample(module_ips, FILTER_MODULE)
                             + rng.sample(core_ips, FILTER_CORE))
                notrace = set(rng.sample(module_ips, NOTRACE_MODULE)) if i % 2 else set()
                ops = FtraceOps(f"bench_ops{i}", filter_hash=FtraceHash(filter),
                                notrace_hash=FtraceHash(notrace))
                register_ftrace_function(ft, ops)
                registered.append((ops, filter, notrace))
            ops_sets = [(filter, notrace) for _, filter, notrace in registered]

            def ours() -> None:
                with ft.ftrace_lock:
                    ftrace_update_code(ft, mod, group, None)

            def python() -> None:
                py_update_code(ips_list, ops_sets, bool(ft.ftrace_start_up))

            ours()
            expected = py_update_code(ips_list, ops_sets, bool(ft.ftrace_start_up))
            if group.flags.tolist() != expected:
                raise AssertionError(f"ftrace_update_code and the Python loop differ ({n_ops} ops)")
            calls_ours = 50 if quick else 400
            calls_py = 5 if quick else 40
            stats = alternate({"ours": lambda: time_per_call(ours, calls_ours),
                               "python": lambda: time_per_call(python, calls_py)}, REPS)
            for ops, _, _ in registered:
                unregister_ftrace_function(ft, ops)
            entries.append(entry(
                f"module_load/ops={n_ops}", "s", stats["ours"], "plain-Python loop",
                stats["python"], 5.0, higher_is_better=False,
                group="Module load accounting",
                note=f"ftrace_update_code for a {MODULE_FUNCTIONS:,}-function module, "
                     f"{n_ops} enabled ops holding filters"))
    finally:
        kernel.shutdown()
    return entries
