"""``python -m bench.profile``: samples go to the right layer, and a short run works.

No figure is asserted: what the profile says belongs to ``bench/profile.md``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.profile import HANDOFFS, OUTSIDE_GIL, Profile, layer_of, read_samples
from tests.children import REPO, child_env

SERVE = "_serve (grpc/_server.py:1100)"
CALL = "_call_behavior (grpc/_server.py:608)"
COUNTED = "counted.<locals>.counting (kernel_daemon/rpc/registration.py:104)"


def test_a_sample_goes_to_its_innermost_known_layer():
    assert layer_of([SERVE]) == "gRPC Python (server loop, call state)"
    assert layer_of([SERVE, CALL, COUNTED]) == "ftraced servicers (kernel_daemon/rpc)"
    # py-spy prints some of ftraced's files without their directory.
    assert layer_of([CALL, COUNTED, "ftrace_init_module (module_records.py:159)"]) == \
        "ftrace model (kernel_daemon)"
    # The standard library counts for its caller, unless it is a thread handoff.
    assert layer_of([CALL, COUNTED, "_GeneratorContextManager.__exit__ (contextlib.py:144)"]) \
        == "ftraced servicers (kernel_daemon/rpc)"
    assert layer_of([CALL, "Condition.notify (threading.py:382)"]) == HANDOFFS
    assert layer_of([SERVE, "ThreadPoolExecutor.submit (concurrent/futures/thread.py:176)"]) \
        == HANDOFFS
    assert layer_of([CALL, "unary (bench/echo_server.py:34)"]) == \
        "echo handler (bench/echo_server.py)"
    assert layer_of([CALL, "FromString (ftrace/v1/tracefs_pb2.py:12)"]) == \
        "protobuf Python (messages, generated code)"
    assert layer_of(["run (threading.py:982)", "main (selectors.py:10)"]) == \
        "other Python (standard library)"


def test_raw_lines_add_up_per_layer_and_the_rest_of_the_cpu_is_outside_the_gil():
    raw = f"{SERVE} 30\n{SERVE};{CALL};{COUNTED} 10\n{SERVE};{CALL};{COUNTED} 10\n\n"
    layers = read_samples(raw)
    assert layers == {"gRPC Python (server loop, call state)": 30,
                      "ftraced servicers (kernel_daemon/rpc)": 20}
    # 50 samples at 200 Hz are 0.25 s with the GIL, of 1 s of CPU, over 100 operations.
    per_op = Profile(cpu=1.0, window=2.0, operations=100, layers=layers).per_operation()
    assert per_op[OUTSIDE_GIL] == pytest.approx(0.0075)
    assert per_op["total (from /proc)"] == pytest.approx(0.01)
    assert sum(v for k, v in per_op.items() if not k.startswith("total")) == \
        pytest.approx(0.01)
    # A stress run's go-to-stop span keeps the window's split.
    narrowed = Profile(1.0, 2.0, 100, layers).narrowed(0.5, 40).per_operation()
    assert narrowed["total (from /proc)"] == pytest.approx(0.0125)
    assert narrowed[OUTSIDE_GIL] == pytest.approx(0.0125 * 0.75)


def test_a_short_profile_of_readfile_against_echo(tmp_path):
    # Without perf (its part: tests/test_bench_perf_profile.py), which the run says.
    no_perf = child_env(PATH=os.path.dirname(sys.executable))
    done = subprocess.run([sys.executable, "-m", "bench.profile", "--seconds", "1",
                           "--only", "read", "--out", str(tmp_path)],
                          cwd=REPO, env=no_perf, capture_output=True, text=True, timeout=240)
    if done.returncode and "can it ptrace" in done.stderr:
        pytest.skip("py-spy may not ptrace the servers here")
    assert done.returncode == 0, done.stderr[-4000:]
    profile = json.loads((tmp_path / "profile.json").read_text())["read"]
    for server in ("ftraced", "echo"):
        assert profile[server]["operations"] > 0 and profile[server]["cpu_s"] > 0
        per_op = profile[server]["per_operation_us"]
        assert per_op["total (from /proc)"] > 0
        assert "gRPC Python (server loop, call state)" in per_op, per_op
        assert "perf is not installed" in profile[server]["perf"]["not_run"]
    assert "bench.profile: perf is not installed" in done.stderr
    assert "profiling with py-spy alone" in done.stderr
    markdown = (tmp_path / "profile.md").read_text()
    assert "## read:" in markdown and "perf did not run: perf is not installed" in markdown
