"""The ``traceon`` / ``traceoff`` commands of set_ftrace_filter in-process (spec §3.3.5,
§3.3.8 item 3): syntax and errors, the probe table and its listing, trace_probe_ops in
every record's count, and the probes acting when their function runs."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel_daemon.ftrace.consistency import check_consistency
from kernel_daemon.ftrace.core import ftrace_kill
from kernel_daemon.ftrace.listing import ALL_FUNCTIONS_BANNER, Listing
from kernel_daemon.ftrace.probe import FTRACE_HASH_BITS, hash_long
from kernel_daemon.tracefs.tree import mount
from tests.kernel_helpers import (T, booted, cat, echo, invoke, modprobe, record, rmmod, t_show_all,
                                  warnings, write)

BANNER = ALL_FUNCTIONS_BANNER.decode()


@pytest.fixture
def kernel():
    with booted(variant="fixed") as k:
        modprobe(k, "uinput")
        yield k


def filter_file(kernel) -> str:
    return t_show_all(kernel.ftrace, Listing.FILTER)


def enabled(kernel) -> list[str]:
    return t_show_all(kernel.ftrace, Listing.ENABLED).splitlines()


def tracing_on(kernel) -> bool:
    return kernel.tracing.tracing_is_on()


def ops_names(kernel) -> list[str]:
    return [ops.name for ops in kernel.ftrace.ftrace_ops_list]


def test_commands_register_probes_listed_after_the_functions(kernel):
    assert echo(kernel, "uinput_open:traceoff", "set_ftrace_filter") == []
    assert echo(kernel, "uinput_open:traceon:5", "set_ftrace_filter", append=True) == []
    # One ip, one bucket: the newest probe first.
    assert filter_file(kernel) == (BANNER + "uinput_open [uinput]:traceon:count=5\n"
                                   "uinput_open [uinput]:traceoff:unlimited\n")
    assert echo(kernel, "vfs_write", "set_ftrace_filter", append=True) == []
    assert filter_file(kernel) == ("vfs_write\nuinput_open [uinput]:traceon:count=5\n"
                                   "uinput_open [uinput]:traceoff:unlimited\n")
    # A glob probes every function it names; the same function twice is two probes.
    assert echo(kernel, "uinput_open*:traceoff:2", "set_ftrace_filter", append=True) == []
    assert filter_file(kernel).count("uinput_open [uinput]:traceoff") == 2
    # The notrace file lists no probes.
    assert t_show_all(kernel.ftrace, Listing.NOTRACE) == ""
    assert check_consistency(kernel.ftrace) == []


@pytest.mark.parametrize("param, listed", [
    ("", "unlimited"),  # uinput_open:traceoff: (an empty count)
    (":7", "count=7"),
    (":0x10", "count=16"),  # base 0: the prefix picks the base
    (":010", "count=8"),
    (":+3", "count=3"),
    (":0", "count=0"),
    (":4:ignored", "count=4"),  # anything after a further ':' is not read
    (":18446744073709551615", "unlimited"),  # ULONG_MAX is the long -1
    (":9223372036854775808", "count=-9223372036854775808"),
])
def test_count_is_read_with_base_0(kernel, param, listed):
    assert echo(kernel, f"uinput_open:traceoff{param}", "set_ftrace_filter") == []
    assert filter_file(kernel) == BANNER + f"uinput_open [uinput]:traceoff:{listed}\n"


@pytest.mark.parametrize("param, error", [
    (":x", errno.EINVAL), (":5x", errno.EINVAL), (":-1", errno.EINVAL), (":08", errno.EINVAL),
    (":0x", errno.EINVAL), (":18446744073709551616", errno.ERANGE),
])
def test_bad_count_fails_the_write_and_registers_nothing(kernel, param, error):
    assert echo(kernel, f"uinput_open:traceoff{param}", "set_ftrace_filter") == [error]
    assert filter_file(kernel) == BANNER
    assert ops_names(kernel) == []


def test_no_match_succeeds_and_notrace_refuses_the_commands(kernel):
    assert echo(kernel, "nosuchfn:traceoff", "set_ftrace_filter") == []
    assert echo(kernel, "nosuchfn:traceon:3", "set_ftrace_filter") == []
    assert filter_file(kernel) == BANNER
    assert ops_names(kernel) == [] and enabled(kernel) == []
    for token in ("uinput_open:traceoff", "uinput_open:traceon:1", "!uinput_open:traceoff"):
        assert echo(kernel, token, "set_ftrace_notrace") == [errno.EINVAL]
    assert ops_names(kernel) == []
    # Not a command at all.
    assert echo(kernel, "uinput_open:traceof", "set_ftrace_filter") == [errno.EINVAL]


def test_unregister_with_bang(kernel):
    echo(kernel, "uinput_*:traceoff", "set_ftrace_filter")
    echo(kernel, "uinput_open:traceon", "set_ftrace_filter", append=True)
    probes = filter_file(kernel).splitlines()[1:]
    # '!' takes only its own command's probes, always succeeds, and needs no match.
    assert echo(kernel, "!uinput_open:traceoff", "set_ftrace_filter", append=True) == []
    assert echo(kernel, "!nosuchfn:traceoff", "set_ftrace_filter", append=True) == []
    assert filter_file(kernel).splitlines()[1:] == [
        p for p in probes if p != "uinput_open [uinput]:traceoff:unlimited"]
    # The unregister walk matches with the whole glob: in 3.6 "*foo" and "*foo*" keep
    # their '*' and name nothing, where "foo*" works.
    for glob in ("*_open", "*open*"):
        assert echo(kernel, f"!{glob}:traceon", "set_ftrace_filter", append=True) == []
        assert "uinput_open [uinput]:traceon:unlimited\n" in filter_file(kernel)
    assert echo(kernel, "!uinput_o*:traceon", "set_ftrace_filter", append=True) == []
    assert ":traceon" not in filter_file(kernel)
    # "!*" (or "!" alone) takes all of the command's probes; the last one takes
    # trace_probe_ops away.
    assert ops_names(kernel) == ["trace_probe_ops"]
    assert echo(kernel, "!*:traceoff", "set_ftrace_filter", append=True) == []
    assert filter_file(kernel) == BANNER
    assert ops_names(kernel) == [] and enabled(kernel) == []
    assert check_consistency(kernel.ftrace) == []


def test_double_bang_warns_without_killing_ftrace(kernel):
    echo(kernel, "uinput_open:traceoff", "set_ftrace_filter")
    assert echo(kernel, "!!uinput_open:traceoff", "set_ftrace_filter", append=True) == []
    [warn] = warnings(kernel)
    # The WARN_ON(not) of 3.6.0's __unregister_ftrace_function_probe, ftrace.c:2980.
    assert warn.splitlines()[1].startswith(
        "WARNING: at kernel/trace/ftrace.c:2980 __unregister_ftrace_function_probe+0x")
    trace = [line.split("] ", 1)[1].split("+")[0] for line in warn.splitlines()[5:-1]]
    assert trace[2:7] == ["__unregister_ftrace_function_probe",
                          "unregister_ftrace_function_probe_func", "ftrace_trace_onoff_unreg",
                          "ftrace_trace_onoff_callback", "ftrace_process_regex"]
    assert not kernel.ftrace.ftrace_disabled
    assert filter_file(kernel) == BANNER + "uinput_open [uinput]:traceoff:unlimited\n"


def test_trace_probe_ops_counts_in_every_record(kernel):
    ft = kernel.ftrace
    every = len(t_show_all(ft, Listing.AVAILABLE).splitlines())
    echo(kernel, "vfs_write", "set_ftrace_filter")
    echo(kernel, "function", "current_tracer")
    assert enabled(kernel) == ["vfs_write (1)"]
    echo(kernel, "uinput_open:traceoff", "set_ftrace_filter", append=True)
    # No filter hash: the first probe adds one to every record and patches every site.
    lines = enabled(kernel)
    assert len(lines) == every
    assert "vfs_write (2)" in lines and "uinput_open [uinput] (1)" in lines
    assert record(ft, "vfs_read") == (1, True)
    assert ops_names(kernel) == ["trace_probe_ops", "global_ops"]
    assert check_consistency(ft) == []
    # More probes add nothing; the last one gone takes the +1 back.
    echo(kernel, "vfs_read:traceon", "set_ftrace_filter", append=True)
    assert "vfs_write (2)" in enabled(kernel)
    echo(kernel, "!uinput_open:traceoff", "set_ftrace_filter", append=True)
    echo(kernel, "!vfs_read:traceon", "set_ftrace_filter", append=True)
    assert enabled(kernel) == ["vfs_write (1)"]
    assert record(ft, "vfs_read") == (0, False)
    assert check_consistency(ft) == []


def test_truncating_open_clears_the_function_filter(kernel):
    echo(kernel, "vfs_write", "set_ftrace_filter")
    echo(kernel, "uinput_open:traceoff", "set_ftrace_filter", append=True)
    assert filter_file(kernel) == "vfs_write\nuinput_open [uinput]:traceoff:unlimited\n"
    # '>' opens with O_TRUNC: the filter copy starts empty, and the close installs it.
    echo(kernel, "vfs_read:traceon", "set_ftrace_filter")
    banner, *probes = filter_file(kernel).splitlines(keepends=True)
    assert banner == BANNER
    # Listed bucket by bucket (hash_long of the ip), not in the order they came.
    assert sorted(probes) == ["uinput_open [uinput]:traceoff:unlimited\n",
                              "vfs_read:traceon:unlimited\n"]


def test_traceoff_and_traceon_act_when_their_function_runs(kernel):
    """With the nop tracer: trace_probe_ops alone patches the sites."""
    vfs = mount(kernel)
    echo(kernel, "uinput_open:traceoff:2", "set_ftrace_filter")
    echo(kernel, "uinput_release:traceon", "set_ftrace_filter", append=True)
    assert cat(vfs, f"{T}/current_tracer") == "nop\n"
    assert invoke(kernel, "vfs_write")  # patched, but no probe there
    assert tracing_on(kernel)
    assert invoke(kernel, "uinput_open")
    assert cat(vfs, f"{T}/tracing_on") == "0\n"
    assert "uinput_open [uinput]:traceoff:count=1\n" in filter_file(kernel)
    invoke(kernel, "uinput_open")  # already off: the count is kept
    assert "uinput_open [uinput]:traceoff:count=1\n" in filter_file(kernel)
    invoke(kernel, "uinput_release")
    assert tracing_on(kernel)
    assert "uinput_release [uinput]:traceon:unlimited\n" in filter_file(kernel)
    invoke(kernel, "uinput_open", count=3)  # a batch: the probe acts once
    assert not tracing_on(kernel)
    assert "uinput_open [uinput]:traceoff:count=0\n" in filter_file(kernel)
    write(vfs, f"{T}/tracing_on", b"1\n")
    invoke(kernel, "uinput_open")  # spent
    assert tracing_on(kernel)


def test_a_count_above_long_max_goes_down_by_one_per_hit(kernel):
    """3.6's ``ftrace_traceoff()`` (and ``ftrace_traceon()``) read the probe's data as
    ``long *count`` and test only ``!*count`` (spent) and ``*count != -1`` (unlimited):
    0x8000000000000005, stored by ``strict_strtoul()``, is a negative long
    (``ftrace_trace_onoff_print()``'s ``%ld`` lists it so), a count like any other that
    goes down by one each time the probe acts."""
    echo(kernel, "uinput_open:traceoff:0x8000000000000005", "set_ftrace_filter")
    listed = "uinput_open [uinput]:traceoff:count={}\n"
    assert filter_file(kernel) == BANNER + listed.format(-(1 << 63) + 5)
    for left in (4, 3):
        kernel.tracing.tracing_on()
        invoke(kernel, "uinput_open")
        assert not tracing_on(kernel)
        assert filter_file(kernel) == BANNER + listed.format(-(1 << 63) + left)


def test_a_batch_of_calls_sees_each_probe_act_in_turn(kernel):
    """Two probes on one function: each call runs both, newest first."""
    echo(kernel, "uinput_open:traceon:2", "set_ftrace_filter")
    echo(kernel, "uinput_open:traceoff:3", "set_ftrace_filter", append=True)
    invoke(kernel, "uinput_open", count=10)
    # Calls 1-2: off, then on again; call 3: off, and traceon has nothing left.
    assert not tracing_on(kernel)
    assert filter_file(kernel) == (BANNER + "uinput_open [uinput]:traceoff:count=0\n"
                                   "uinput_open [uinput]:traceon:count=0\n")


@pytest.mark.parametrize("probe_first, traced", [(True, 1), (False, 0)])
def test_the_function_tracer_records_what_ran_before_traceoff(kernel, probe_first, traced):
    """ftrace_ops_list_func calls the ops newest first: a tracer registered after the
    probe records the call that turned tracing off, one registered before does not."""
    vfs = mount(kernel)
    steps = [("uinput_open:traceoff", "set_ftrace_filter"), ("function", "current_tracer")]
    for text, path in steps if probe_first else reversed(steps):
        echo(kernel, text, path, append=path == "set_ftrace_filter")
    invoke(kernel, "uinput_open", count=3)
    assert not tracing_on(kernel)
    assert f"entries-in-buffer/entries-written: {traced}/{traced}" in cat(vfs, f"{T}/trace")


def test_probes_outlive_the_module_and_find_it_again(kernel):
    ft = kernel.ftrace
    echo(kernel, "uinput_open:traceoff", "set_ftrace_filter")
    ip = kernel.kallsyms.lookup_name("uinput_open")[0].addr
    rmmod(kernel, "uinput")
    # Keyed by ip, the probe stays; with no symbol there it prints as an address.
    assert filter_file(kernel) == BANNER + f"0x{ip:x}:traceoff:unlimited\n"
    # Its name is gone too, so '!' by name leaves it.
    echo(kernel, "!uinput_open:traceoff", "set_ftrace_filter", append=True)
    assert filter_file(kernel) == BANNER + f"0x{ip:x}:traceoff:unlimited\n"
    # Reloaded at the same address: trace_probe_ops counts in the new records at load,
    # and the probe acts on the function again.
    modprobe(kernel, "uinput")
    assert kernel.kallsyms.lookup_name("uinput_open")[0].addr == ip
    assert filter_file(kernel) == BANNER + "uinput_open [uinput]:traceoff:unlimited\n"
    assert record(ft, "uinput_open") == (1, True)
    assert check_consistency(ft) == []
    invoke(kernel, "uinput_open")
    assert not tracing_on(kernel)
    echo(kernel, "!:traceoff", "set_ftrace_filter", append=True)
    assert filter_file(kernel) == BANNER and ops_names(kernel) == []


def test_a_stale_ip_in_a_later_modules_core_takes_its_closest_functions_name(kernel):
    """The review's reproducer: uinput goes, the smaller dummy comes at the same base,
    and uinput_compat_ioctl's old ip lies in dummy's core past its text.  kallsyms gives
    dummy_validate there (module_address_lookup() / get_ksymbol()): the probe lists by
    that name and '!' of it removes the probe, and an old trace entry prints it."""
    vfs = mount(kernel)
    ip = kernel.kallsyms.lookup_name("uinput_compat_ioctl")[0].addr
    echo(kernel, "function", "current_tracer")
    invoke(kernel, "uinput_compat_ioctl")
    echo(kernel, "uinput_compat_ioctl:traceon", "set_ftrace_filter", append=True)
    rmmod(kernel, "uinput")
    assert filter_file(kernel) == BANNER + f"0x{ip:x}:traceon:unlimited\n"
    dummy = modprobe(kernel, "dummy")
    validate = kernel.kallsyms.lookup_name("dummy_validate")[0]
    assert dummy.within_module_core(ip) and ip > validate.addr + validate.size
    assert filter_file(kernel) == BANNER + "dummy_validate [dummy]:traceon:unlimited\n"
    assert cat(vfs, f"{T}/trace").splitlines()[-1].endswith(": dummy_validate <-__fput")
    echo(kernel, "!dummy_validate:traceon", "set_ftrace_filter", append=True)
    assert filter_file(kernel) == BANNER and kernel.ftrace.probes.empty()


def test_dead_ftrace_runs_no_probe(kernel):
    echo(kernel, "uinput_open:traceoff", "set_ftrace_filter")
    ftrace_kill(kernel.ftrace)
    # The site stays patched, but the trampoline calls the stub (spec §2.11).
    assert not invoke(kernel, "uinput_open")
    assert tracing_on(kernel)


@given(ip=st.integers(0, 2**64 - 1))
def test_hash_long_is_the_kernels_shift_and_add(ip):
    """3.6 include/linux/hash.h hash_64(), as written there."""
    mask = 2**64 - 1
    hash = n = ip
    for shift, sign in ((18, -1), (33, -1), (3, 1), (3, -1), (4, 1), (2, 1)):
        n = (n << shift) & mask
        hash = (hash + sign * n) & mask
    assert hash_long(ip, FTRACE_HASH_BITS) == hash >> (64 - FTRACE_HASH_BITS)


def test_a_probe_puts_the_function_tracer_behind_the_list_function_at_preempt_depth_1(kernel):
    """With trace_ops alone, ftrace_caller calls function_trace_call() directly: its
    lines show ``....``.  A probe's ops makes two on ftrace_ops_list, so the calls go
    through ftrace_ops_list_func(), which disables preemption around the callbacks:
    ``...1`` (function_trace_call() records ``pc = preempt_count()``)."""
    vfs = mount(kernel)
    assert echo(kernel, "vfs_write", "set_ftrace_filter") == []
    assert echo(kernel, "function", "current_tracer") == []
    invoke(kernel, "vfs_write", "sys_write")
    assert echo(kernel, "do_exit:traceon", "set_ftrace_filter", append=True) == []
    invoke(kernel, "vfs_write", "sys_write", count=2)
    assert echo(kernel, "!do_exit:traceon", "set_ftrace_filter", append=True) == []
    invoke(kernel, "vfs_write", "sys_write")
    lines = [line for line in cat(vfs, f"{T}/trace").splitlines() if "vfs_write" in line]
    assert [line.split()[2] for line in lines] == ["....", "...1", "...1", "...."]
