"""Hypothesis stateful model test of the core against the simple reference the checker is.

Random sequences of module load/unload (same-address reloads included), filter and
notrace writes, traceon/traceoff probes (trace_probe_ops, counted in every record,
comes with the first and goes with the last), the function tracer on and off, and a
private ops with its own filter.  ``fixed``: the consistency check holds after every
step and no WARN ever appears.  ``buggy``: every WARN is preceded by an anomaly the
checker reported.
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.consistency import check_consistency
from kernel_daemon.ftrace.filter import ftrace_set_filter, ftrace_set_notrace
from kernel_daemon.ftrace.ops import FtraceOps
from kernel_daemon.ftrace.register import register_ftrace_function, unregister_ftrace_function
from kernel_daemon.kernel import BootOptions, Kernel
from kernel_daemon.module.catalog import load_catalog
from kernel_daemon.module.vmlinux import MIN_FUNCTIONS
from tests.kernel_helpers import echo, modprobe, rmmod, warnings

MODULES = ("uinput", "dummy")
FUNCTIONS = sorted({name for m in MODULES for name, _ in load_catalog()[m].functions}
                   | {"vfs_write", "schedule"})
patterns = st.one_of(st.sampled_from(FUNCTIONS),
                     st.sampled_from(["uinput_*", "*_open", "dummy_*", "vfs_*"]))


class FtraceMachine(RuleBasedStateMachine):
    variant = "fixed"

    def __init__(self) -> None:
        super().__init__()
        self.kernel = Kernel(BootOptions(variant=self.variant, core_functions=MIN_FUNCTIONS))
        self.loaded: set[str] = set()
        self.ops = FtraceOps("private_ops")
        self.ops_registered = False
        self.anomaly_seen = False

    @initialize(pattern=patterns, tracer=st.booleans())
    def boot_with_modules(self, pattern: str, tracer: bool) -> None:
        """Start from the report's set-up often enough to matter: modules loaded, a
        filter naming some of their functions, maybe the tracer on."""
        for module in MODULES:
            self.load(module)
        echo(self.kernel, pattern, "set_ftrace_filter")
        self.function_tracer(tracer)

    def teardown(self) -> None:
        self.kernel.shutdown()

    @rule(module=st.sampled_from(MODULES))
    def load(self, module: str) -> None:
        if module not in self.loaded:
            modprobe(self.kernel, module)
            self.loaded.add(module)

    @rule(module=st.sampled_from(MODULES))
    def unload(self, module: str) -> None:
        if module in self.loaded:
            rmmod(self.kernel, module)
            self.loaded.discard(module)

    @rule(module=st.sampled_from(MODULES))
    def reload(self, module: str) -> None:
        """rmmod + modprobe: with first-fit, back at the same address."""
        if module in self.loaded:
            rmmod(self.kernel, module)
            modprobe(self.kernel, module)

    @rule(pattern=patterns, append=st.booleans(), notrace=st.booleans())
    def write_filter(self, pattern: str, append: bool, notrace: bool) -> None:
        if self.kernel.ftrace.ftrace_disabled:
            return
        path = "set_ftrace_notrace" if notrace else "set_ftrace_filter"
        echo(self.kernel, pattern, path, append=append)

    @rule(pattern=st.one_of(patterns, st.just("*")),
          command=st.sampled_from(["traceon", "traceoff"]), remove=st.booleans(),
          append=st.booleans())
    def write_probe(self, pattern: str, command: str, remove: bool, append: bool) -> None:
        """``echo [!]PATTERN:COMMAND >[>] set_ftrace_filter``: '>' also empties the filter;
        ``!*`` takes every probe of the command, so the last one goes often enough."""
        if self.kernel.ftrace.ftrace_disabled:
            return
        token = f"{'!' if remove else ''}{pattern}:{command}"
        echo(self.kernel, token, "set_ftrace_filter", append=append)

    @rule(on=st.booleans())
    def function_tracer(self, on: bool) -> None:
        echo(self.kernel, "function" if on else "nop", "current_tracer")

    @rule(pattern=patterns, notrace=st.booleans(), reset=st.booleans())
    def private_filter(self, pattern: str, notrace: bool, reset: bool) -> None:
        try:
            (ftrace_set_notrace if notrace else ftrace_set_filter)(
                self.kernel.ftrace, self.ops, pattern, reset)
        except KernelError:
            pass  # EINVAL for a pattern naming nothing loaded, ENODEV when dead

    @rule()
    def toggle_private_ops(self) -> None:
        try:
            if self.ops_registered:
                unregister_ftrace_function(self.kernel.ftrace, self.ops)
                self.ops_registered = False
            else:
                register_ftrace_function(self.kernel.ftrace, self.ops)
                self.ops_registered = True
        except KernelError:
            pass

    @precondition(lambda self: not self.kernel.ftrace.ftrace_disabled)
    @invariant()
    def consistent(self) -> None:
        anomalies = [a for a in check_consistency(self.kernel.ftrace)]
        warned = bool(warnings(self.kernel))
        if self.variant == "fixed":
            assert anomalies == [], [a.describe() for a in anomalies]
            assert not warned
        else:
            assert not warned or self.anomaly_seen, "a WARN with no anomaly reported before it"
            self.anomaly_seen = self.anomaly_seen or bool(anomalies)

    @invariant()
    def warn_implies_earlier_anomaly(self) -> None:
        if warnings(self.kernel):
            assert self.variant == "buggy" and self.anomaly_seen


class BuggyMachine(FtraceMachine):
    variant = "buggy"


SETTINGS = settings(max_examples=60, stateful_step_count=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
TestFixedModel = FtraceMachine.TestCase
TestFixedModel.settings = SETTINGS
TestBuggyModel = BuggyMachine.TestCase
TestBuggyModel.settings = SETTINGS
