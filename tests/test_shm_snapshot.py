"""The record pages seen from another process, and the shared memory's life cycle."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.records import ftrace_rec_count
from kernel_daemon.shm import reap_stale_segments, segments_of
from kernel_daemon.ftrace.snapshot import RecordsReader, SnapshotRetry
from tests.kernel_helpers import booted, echo, modprobe

READER = """
import json, sys
from kernel_daemon.ftrace.snapshot import RecordsReader
snap = RecordsReader(sys.argv[1]).snapshot()
print(json.dumps([[g.module, g.ips.tolist(), g.counts.tolist(), g.enabled.tolist()]
                  for g in snap.groups]))
"""


def read_in_child(namespace: str) -> list:
    out = subprocess.run([sys.executable, "-c", READER, namespace], check=True,
                         capture_output=True, text=True, cwd=os.getcwd(), timeout=60)
    return json.loads(out.stdout)


def test_second_process_sees_the_kernels_counts_and_leaves_the_segments_alone():
    with booted(variant="fixed") as kernel:
        modprobe(kernel, "uinput")
        echo(kernel, "uinput_*", "set_ftrace_filter")
        echo(kernel, "function", "current_tracer")
        before = segments_of(kernel.namespace)
        child = read_in_child(kernel.namespace)
        assert segments_of(kernel.namespace) == before, "the reader must not unlink anything"
        groups = kernel.ftrace.pages.groups
        assert [g[0] for g in child] == [pg.module_name for pg in groups]
        for (module, ips, counts, enabled), pg in zip(child, groups):
            assert ips == pg.ips.tolist()
            assert counts == ftrace_rec_count(pg.flags).tolist()
        uinput = child[-1]
        assert sum(uinput[2]) == len(uinput[1]) and all(uinput[3])
        namespace = kernel.namespace
    assert segments_of(namespace) == []


def test_in_process_reader_matches_and_follows_unload():
    with booted() as kernel:
        reader = RecordsReader(kernel.namespace)
        modprobe(kernel, "dummy")
        snap = reader.snapshot()
        assert [g.module for g in snap.groups] == ["", "dummy"]
        kernel.modules.delete_module("dummy")
        assert [g.module for g in reader.snapshot().groups] == [""]
        assert np.array_equal(snap.groups[0].ips, kernel.ftrace.pages.groups[0].ips)


def test_quiet_state_moves_when_a_group_is_linked_before_its_counts_are_written():
    """A module's pages are linked, counts still 0, before ftrace_update_code writes them;
    the generation does not move then, so a checker bracket must see the group list move."""
    with booted() as kernel:
        reader = RecordsReader(kernel.namespace)
        state = reader.quiet_state()
        assert state is not None and reader.snapshot().state() == state
        pages = kernel.ftrace.pages
        core = pages.groups[0]
        group = pages.allocate(object(), "late", core.ips[:4] + np.uint64(1), core.names[:4])
        pages.link(group)
        assert reader.quiet_state()[0] == state[0]  # the same generation...
        assert reader.quiet_state() != state  # ...but not the same state
        assert reader.snapshot().state() != state
        pages.unlink(group)
        pages.free(group)


def test_a_write_begun_and_ended_during_the_copy_makes_the_snapshot_retry(monkeypatch):
    """``read_seqretry()``: a copy is good only if the sequence count after it is the one
    before it (and even). A writer that began and ended its update while the copy was
    being made leaves no writer behind, but has moved the generation twice: the copy may
    hold half its update, and try_snapshot must give it up."""
    with booted() as kernel:
        reader = RecordsReader(kernel.namespace)
        pages = kernel.ftrace.pages
        copy_group = reader._group
        writes: list[int] = []

        def group_copied_around_a_write(slot: int):
            group = copy_group(slot)
            if not writes:
                pages.write_begin()
                pages.write_end()
                writes.append(slot)
            return group

        monkeypatch.setattr(reader, "_group", group_copied_around_a_write)
        with pytest.raises(SnapshotRetry):
            reader.try_snapshot()
        assert writes == [0]
        # Nothing writes during the next copy: it holds.
        assert reader.try_snapshot().state() == reader.quiet_state()


def test_shutdown_unlinks_pages_not_yet_linked_and_refuses_new_ones():
    """A module load allocates its pages before it links them: a shutdown in between
    (a reboot) still unlinks them, and a load that gets there after it finds ENODEV."""
    with booted() as kernel:
        pages = kernel.ftrace.pages
        core = pages.groups[0]
        group = pages.allocate(object(), "late", core.ips[:4] + np.uint64(1), core.names[:4])
        assert group.segment.name in segments_of(kernel.namespace)
        kernel.shutdown()
        assert segments_of(kernel.namespace) == []
        with pytest.raises(KernelError) as exc:
            pages.allocate(object(), "later", core.ips[:4] + np.uint64(2), core.names[:4])
        assert exc.value.errno == errno.ENODEV
        assert segments_of(kernel.namespace) == []


def test_segments_of_a_killed_daemon_are_reaped_at_the_next_boot(tmp_path):
    code = ("from kernel_daemon.kernel import BootOptions, Kernel; import os, sys;"
            "from kernel_daemon.module.vmlinux import MIN_FUNCTIONS;"
            "k = Kernel(BootOptions(core_functions=MIN_FUNCTIONS));"
            "print(k.namespace, flush=True);"
            "sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    namespace = child.stdout.readline().strip()
    assert segments_of(namespace)
    child.send_signal(signal.SIGKILL)
    # Dead but not yet waited for (a zombie, which kill(pid, 0) still finds): its
    # segments are stale all the same, and the next boot reaps them (it left them; a
    # boot on another test worker may have been first).
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    try:
        # Any boot reaps them, this one or one on another test worker: they are gone.
        reap_stale_segments()
        assert segments_of(namespace) == []
    finally:
        child.wait(timeout=30)


def test_a_boot_interrupted_half_way_unlinks_what_it_created(monkeypatch):
    """Ctrl-C (or SIGTERM made KeyboardInterrupt, as the benchmarks make it) after the
    record pages were created and before the boot returned: no kernel object is left to
    shut down, so the boot itself unlinks its namespace's segments."""
    from kernel_daemon import kernel as kernel_module

    created: list[str] = []

    def interrupted(namespace: str, *args: object) -> None:
        created.append(namespace)
        assert segments_of(namespace), "the record pages come first"
        raise KeyboardInterrupt

    monkeypatch.setattr(kernel_module, "RingBuffer", interrupted)
    with pytest.raises(KeyboardInterrupt):
        kernel_module.Kernel(kernel_module.BootOptions(core_functions=512))
    [namespace] = created
    assert segments_of(namespace) == []
