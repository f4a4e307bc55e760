"""``trace_options``, ``options/`` and the other trace.c files of 3.6 beside them
(``tracing_thresh``, ``tracing_max_latency``, ``saved_cmdlines``, ``README``,
``free_buffer``), in-process through the file tree and once through a daemon."""

from __future__ import annotations

import errno
import os

import pytest

from clients.api import Client
from clients.errors import FtraceError
from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.consistency import check_consistency
from kernel_daemon.shm import new_namespace, segments_of
from kernel_daemon.task import Task
from kernel_daemon.trace.saved_cmdlines import SavedCmdlines, SavedCmdlinesReader
from kernel_daemon.trace.trace_options import TRACE_OPTIONS, TRACE_OPTIONS_BUF
from kernel_daemon.tracefs.files import file_llseek, file_read, file_release, file_write
from kernel_daemon.tracefs.tree import mount
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.kernel_helpers import (T, booted, cat, invoke, modprobe, record,
                                  reproducer_until_reload, warnings, write)

DEFAULT_OPTIONS = (
    "print-parent\nnosym-offset\nnosym-addr\nnoverbose\nnoraw\nnohex\nnobin\nnoblock\n"
    "nostacktrace\ntrace_printk\nnoftrace_preempt\nnobranch\nannotate\nnouserstacktrace\n"
    "nosym-userobj\nnoprintk-msg-only\ncontext-info\nnolatency-format\nsleep-time\n"
    "graph-time\nrecord-cmd\noverwrite\nnodisable_on_free\nirq-info\n"
    "notest_nop_accept\nnotest_nop_refuse\n")  # nop's own options (trace_nop.c)
NOP_OPTIONS = ("test_nop_accept", "test_nop_refuse")
HELP = ("#           TASK-PID   CPU#      TIMESTAMP  FUNCTION\n"
        "#              | |       |          |         |\n")


def errno_of(vfs, path: str, data: bytes) -> int:
    with pytest.raises(KernelError) as exc:
        write(vfs, path, data)
    return exc.value.errno


def events(vfs) -> list[str]:
    return cat(vfs, f"{T}/trace").splitlines(keepends=True)[11:]


def test_trace_options_defaults_and_writes():
    with booted(cpus=2) as k:
        vfs = mount(k)
        assert cat(vfs, f"{T}/trace_options") == DEFAULT_OPTIONS
        assert write(vfs, f"{T}/trace_options", b"  nooverwrite \n") == 15  # strstrip()
        assert write(vfs, f"{T}/trace_options", b"sym-offset") == 10
        text = cat(vfs, f"{T}/trace_options")
        assert "\nnooverwrite\n" in text and "\nsym-offset\n" in text
        assert cat(vfs, f"{T}/options/overwrite") == "0\n"
        for bad in (b"nosuch\n", b"sym-offse\n", b"no\n", b"print-parent-x\n",
                    b"func_stack_trace\n",  # the function tracer's, not nop's
                    b"test_nop_refuse\n",  # nop_set_flag() refuses it
                    b"x" * 63 + b"\n"):  # cnt >= sizeof(buf): EINVAL before any parsing
            assert errno_of(vfs, f"{T}/trace_options", bad) == errno.EINVAL
        # cnt >= sizeof(buf) is refused whatever it says: 64 bytes of an option 63 would set.
        option = b"nosym-offset"
        assert errno_of(vfs, f"{T}/trace_options",
                        option.ljust(TRACE_OPTIONS_BUF - 1) + b"\n") == errno.EINVAL
        assert "\nsym-offset\n" in cat(vfs, f"{T}/trace_options")
        assert write(vfs, f"{T}/trace_options",
                     option.ljust(TRACE_OPTIONS_BUF - 2) + b"\n") == TRACE_OPTIONS_BUF - 1
        assert "\nnosym-offset\n" in cat(vfs, f"{T}/trace_options")
        write(vfs, f"{T}/trace_options", b"sym-offset\n")
        assert cat(vfs, f"{T}/trace_options").count("\n") == len(TRACE_OPTIONS) + 2
        write(vfs, f"{T}/trace_options", b"test_nop_accept\n")
        assert cat(vfs, f"{T}/trace_options").endswith("\ntest_nop_accept\nnotest_nop_refuse\n")
        assert ("nop_test_accept flag set to 1: we accept. Now cat trace_options to see the"
                " result") in k.printk.read()
        assert "nop_test_refuse flag set to 1: we refuse.Now cat" in k.printk.read()


def test_options_directory():
    with booted(cpus=2) as k:
        vfs = mount(k)
        assert [e.name for e in vfs.list_dir(f"{T}/options")] == sorted(TRACE_OPTIONS)
        assert all(e.mode == 0o644 for e in vfs.list_dir(f"{T}/options"))
        assert cat(vfs, f"{T}/options/print-parent") == "1\n"
        assert cat(vfs, f"{T}/options/verbose") == "0\n"
        assert write(vfs, f"{T}/options/verbose", b"1\n") == 2
        assert "\nverbose\n" in cat(vfs, f"{T}/trace_options")
        for bad, err in ((b"2\n", errno.EINVAL), (b"yes\n", errno.EINVAL),
                         (b"-1\n", errno.EINVAL), (b"99999999999999999999\n", errno.ERANGE)):
            assert errno_of(vfs, f"{T}/options/verbose", bad) == err
        # The function tracer's own option comes and goes with the tracer.
        assert "func_stack_trace" not in {e.name for e in vfs.list_dir(f"{T}/options")}
        write(vfs, f"{T}/current_tracer", b"function\n")
        assert cat(vfs, f"{T}/options/func_stack_trace") == "0\n"
        assert cat(vfs, f"{T}/trace_options").endswith("\nirq-info\nnofunc_stack_trace\n")
        assert not {e.name for e in vfs.list_dir(f"{T}/options")} & set(NOP_OPTIONS)
        write(vfs, f"{T}/trace_options", b"func_stack_trace\n")
        assert cat(vfs, f"{T}/options/func_stack_trace") == "1\n"
        write(vfs, f"{T}/options/func_stack_trace", b"0\n")
        assert cat(vfs, f"{T}/trace_options").endswith("\nnofunc_stack_trace\n")
        write(vfs, f"{T}/current_tracer", b"nop\n")
        with pytest.raises(KernelError) as exc:
            cat(vfs, f"{T}/options/func_stack_trace")
        assert exc.value.errno == errno.ENOENT
        assert cat(vfs, f"{T}/trace_options") == DEFAULT_OPTIONS.replace("noverbose", "verbose")


def test_a_tracer_s_option_files_come_only_with_a_switch_to_it():
    """3.6 creates a tracer's options/ files in tracing_set_tracer() alone, past its
    ``t == current_trace`` test; the boot's nop is set directly, so its files are not
    there until a switch to nop from another tracer.  trace_options lists them anyway."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        for _ in range(2):  # at boot, and after the no-op `echo nop > current_tracer`
            assert {e.name for e in vfs.list_dir(f"{T}/options")} == set(TRACE_OPTIONS)
            for name in NOP_OPTIONS:
                with pytest.raises(KernelError) as exc:
                    cat(vfs, f"{T}/options/{name}")
                assert exc.value.errno == errno.ENOENT
            assert cat(vfs, f"{T}/trace_options").endswith(
                "\nnotest_nop_accept\nnotest_nop_refuse\n")
            write(vfs, f"{T}/current_tracer", b"nop\n")
        write(vfs, f"{T}/current_tracer", b"function\n")
        assert cat(vfs, f"{T}/options/func_stack_trace") == "0\n"
        write(vfs, f"{T}/current_tracer", b"nop\n")
        names = {e.name for e in vfs.list_dir(f"{T}/options")}
        assert names == set(TRACE_OPTIONS + NOP_OPTIONS)
        # function's own files went with it, though a path to one was looked up (and
        # they stayed found: the path stayed in the dcache).
        with pytest.raises(KernelError) as exc:
            vfs.stat(f"{T}/options/func_stack_trace")
        assert exc.value.errno == errno.ENOENT
        assert cat(vfs, f"{T}/options/test_nop_accept") == "0\n"
        # `echo 1 > FILE` opens with O_CREAT, which finds the tracer's files as the
        # core ones (it failed EACCES); O_EXCL is EEXIST for both, as for any file there.
        write(vfs, f"{T}/options/test_nop_accept", b"1\n",
              os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        for name in ("test_nop_refuse", "sym-offset"):
            with pytest.raises(KernelError) as exc:
                vfs.open(f"{T}/options/{name}", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            assert exc.value.errno == errno.EEXIST
        assert cat(vfs, f"{T}/trace_options").endswith("\ntest_nop_accept\nnotest_nop_refuse\n")


def test_an_option_file_kept_open_across_a_switch_works_on_its_tracer_s_flags():
    """trace_options_write() passes the file's topt->flags and topt->opt (freed by the
    switch in 3.6, read here as if untouched) with the *current* tracer: nop's
    set_flag judges bit 0x1 (it prints its accept line), and the function tracer's
    func_stack_trace is what gets set, to take effect when the tracer comes back."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        write(vfs, f"{T}/current_tracer", b"function\n")
        f = vfs.open(f"{T}/options/func_stack_trace", os.O_RDWR)
        try:
            write(vfs, f"{T}/current_tracer", b"nop\n")
            assert file_write(f, b"1\n") == 2
            assert "nop_test_accept flag set to 1: we accept." in k.printk.read()
            assert file_read(f, 64) == b""  # *ppos += cnt: past the "1\n"
            assert file_llseek(f, 0, os.SEEK_SET) == 0 and file_read(f, 64) == b"1\n"
        finally:
            file_release(f)
        assert cat(vfs, f"{T}/trace_options").endswith("\nnotest_nop_accept\nnotest_nop_refuse\n")
        assert [ops.name for ops in k.ftrace.ftrace_global_list] == []
        write(vfs, f"{T}/current_tracer", b"function\n")
        assert cat(vfs, f"{T}/options/func_stack_trace") == "1\n"
        assert [ops.name for ops in k.ftrace.ftrace_global_list] == ["trace_stack_ops"]


def test_func_set_flag_accepts_the_pstore_bit_of_a_stale_nop_file():
    """The other way round: nop's test_nop_refuse (bit 0x2) written while the function
    tracer is current reaches func_set_flag(), whose TRACE_FUNC_OPT_PSTORE case (0x2)
    accepts it; nop's flag is set."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        write(vfs, f"{T}/current_tracer", b"function\n")
        write(vfs, f"{T}/current_tracer", b"nop\n")
        f = vfs.open(f"{T}/options/test_nop_refuse", os.O_WRONLY)
        try:
            write(vfs, f"{T}/current_tracer", b"function\n")
            assert file_write(f, b"1\n") == 2
        finally:
            file_release(f)
        assert [ops.name for ops in k.ftrace.ftrace_global_list] == ["trace_ops"]
        write(vfs, f"{T}/current_tracer", b"nop\n")
        assert cat(vfs, f"{T}/trace_options").endswith("\nnotest_nop_accept\ntest_nop_refuse\n")


def test_print_parent_sym_offset_sym_addr():
    with booted(cpus=2) as k:
        vfs = mount(k)
        write(vfs, f"{T}/current_tracer", b"function\n")
        modprobe(k, "uinput")
        invoke(k, "uinput_release", "__fput", cpu=1)
        [line] = events(vfs)
        head = line[:line.index(": ") + 2]
        assert line == head + "uinput_release <-__fput\n"
        write(vfs, f"{T}/trace_options", b"sym-offset\n")
        fn = k.kallsyms.lookup_name("uinput_release")[0]
        parent = k.kallsyms.lookup_name("__fput")[0]
        # The function's own ip is its record's, the symbol's start; the parent's is the
        # return address inside __fput, never its first byte.
        parent_ip = k.kallsyms.return_address("__fput", "uinput_release")
        assert parent.addr < parent_ip < parent.addr + parent.size
        fn_text = f"uinput_release+0x0/{fn.size:#x} [uinput]"
        parent_text = f"__fput+{parent_ip - parent.addr:#x}/{parent.size:#x}"
        assert events(vfs) == [f"{head}{fn_text} <-{parent_text}\n"]
        write(vfs, f"{T}/trace_options", b"sym-addr\n")
        assert events(vfs) == [f"{head}{fn_text} <{fn.addr:016x}> <-{parent_text} "
                               f"<{parent_ip:016x}>\n"]
        write(vfs, f"{T}/trace_options", b"nosym-offset\n")
        write(vfs, f"{T}/options/print-parent", b"0\n")
        assert events(vfs) == [f"{head}uinput_release <{fn.addr:016x}>\n"]


def test_irq_info_context_info_verbose_raw():
    with booted(cpus=2) as k:
        vfs = mount(k)
        write(vfs, f"{T}/current_tracer", b"function\n")
        invoke(k, "vfs_read", "sys_read", cpu=1)
        [line] = events(vfs)
        assert line.startswith("            bash-20903 [001] .... ")
        write(vfs, f"{T}/trace_options", b"noirq-info\n")
        text = cat(vfs, f"{T}/trace")
        assert text.splitlines(keepends=True)[4:6] == HELP.splitlines(keepends=True)
        [line] = text.splitlines(keepends=True)[6:]
        assert line.startswith("            bash-20903 [001]   ")
        assert line.endswith(": vfs_read <-sys_read\n")
        # No context-info: trace_default_header() prints nothing, the lines no prefix.
        write(vfs, f"{T}/trace_options", b"nocontext-info\n")
        assert cat(vfs, f"{T}/trace") == "# tracer: function\n#\nvfs_read <-sys_read\n"
        write(vfs, f"{T}/trace_options", b"context-info\n")
        write(vfs, f"{T}/trace_options", b"verbose\n")
        assert cat(vfs, f"{T}/trace").startswith("# tracer: function\n#\n            bash-")
        write(vfs, f"{T}/trace_options", b"noverbose\n")
        write(vfs, f"{T}/trace_options", b"raw\n")
        ev = k.ring_buffer.snapshot().events[0]
        fn = k.kallsyms.lookup_name("vfs_read")[0].addr
        parent = k.kallsyms.return_address("sys_read", "vfs_read")  # inside sys_read
        assert cat(vfs, f"{T}/trace").endswith(f"\n20903 1 {ev.ts} {fn:x} {parent:x}\n")
        assert cat(vfs, f"{T}/trace_pipe", os.O_RDONLY | os.O_NONBLOCK) == (
            f"20903 1 {ev.ts} {fn:x} {parent:x}\n")


def test_printk_msg_only_and_no_markers_option():
    """3.6's trace_options[] ends at irq-info: no ``markers`` (a later kernel's), so
    ``nomarkers`` is EINVAL and tracing_mark_write() takes every write."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        assert len(TRACE_OPTIONS) == 24 and TRACE_OPTIONS[-1] == "irq-info"
        write(vfs, f"{T}/trace_options", b"printk-msg-only\n")
        write(vfs, f"{T}/trace_marker", b"hello\n")
        assert cat(vfs, f"{T}/trace").endswith("#              | |       |   ||||       |"
                                               "         |\nhello\n")
        for name in (b"nomarkers\n", b"markers\n"):
            assert errno_of(vfs, f"{T}/trace_options", name) == errno.EINVAL
        with pytest.raises(KernelError) as exc:
            cat(vfs, f"{T}/options/markers")
        assert exc.value.errno == errno.ENOENT
        assert write(vfs, f"{T}/trace_marker", b"again\n") == 6
        assert k.ring_buffer.snapshot().entries_written == 2


def test_nooverwrite_keeps_the_oldest_events_and_drops_the_new_uncounted():
    """set_tracer_flags() hands the option to ring_buffer_change_overwrite(): a full
    buffer then loses new events (3.6 counts them nowhere), and a task whose events are
    lost still has its comm saved (the sched_switch probe does not look at the buffer)."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        write(vfs, f"{T}/current_tracer", b"function\n")
        write(vfs, f"{T}/buffer_size_kb", b"8\n")
        capacity = k.ring_buffer.counters(0).capacity
        write(vfs, f"{T}/options/overwrite", b"0\n")
        invoke(k, "vfs_write", "sys_write", count=capacity)
        invoke(k, "vfs_read", "sys_read", count=100)
        invoke(k, "vfs_read", "sys_read", task=Task(31, "kworker/0:1"))
        lines = cat(vfs, f"{T}/trace").splitlines()
        assert lines[2] == f"# entries-in-buffer/entries-written: {capacity}/{capacity}   #P:1"
        assert len(lines[11:]) == capacity
        assert all(line.endswith(": vfs_write <-sys_write") for line in lines[11:])
        assert cat(vfs, f"{T}/saved_cmdlines") == "20903 bash\n31 kworker/0:1\n"
        pipe = cat(vfs, f"{T}/trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        assert "LOST" not in pipe and "vfs_read" not in pipe
        # Back to overwrite: the oldest go, and count as overruns.
        write(vfs, f"{T}/trace_options", b"overwrite\n")
        unread = k.ring_buffer.counters(0).entries_in_buffer
        invoke(k, "vfs_read", "sys_read", count=capacity + 5)
        assert k.ring_buffer.overruns() == unread + 5


def test_norecord_cmd_leaves_the_function_tracer_saving_comms():
    """record-cmd goes to trace_event_enable_cmd_record(), which only touches enabled
    trace events; function_trace_init()'s tracing_start_cmdline_record() ignores it."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        write(vfs, f"{T}/trace_options", b"norecord-cmd\n")
        write(vfs, f"{T}/current_tracer", b"function\n")
        invoke(k, "vfs_read", "sys_read", task=Task(31, "kworker/0:1"))
        assert cat(vfs, f"{T}/saved_cmdlines") == "31 kworker/0:1\n"
        assert cat(vfs, f"{T}/options/record-cmd") == "0\n"


def test_max_latency_thresh_readme_saved_cmdlines():
    with booted(cpus=1) as k:
        vfs = mount(k)
        for name in ("tracing_thresh", "tracing_max_latency"):
            assert cat(vfs, f"{T}/{name}") == "0\n"
            assert write(vfs, f"{T}/{name}", b"150\n") == 4
            assert cat(vfs, f"{T}/{name}") == "150\n"
            assert errno_of(vfs, f"{T}/{name}", b"1.5\n") == errno.EINVAL
        assert k.tracing.tracing_thresh == 150_000
        # 18446744073709551 us * 1000 wraps to ULONG_MAX - 384; -1 reads as -1.
        write(vfs, f"{T}/tracing_thresh", b"18446744073709551\n")
        assert cat(vfs, f"{T}/tracing_thresh") == f"{((1 << 64) - 1 - 384) // 1000}\n"
        k.tracing.tracing_max_latency = (1 << 64) - 1
        assert cat(vfs, f"{T}/tracing_max_latency") == "-1\n"
        readme = cat(vfs, f"{T}/README")
        assert readme.startswith("tracing mini-HOWTO:\n\n# mount -t debugfs nodev")
        assert readme.endswith("# echo 0 > /sys/kernel/debug/tracing/tracing_on\n")
        assert cat(vfs, f"{T}/saved_cmdlines") == ""
        write(vfs, f"{T}/current_tracer", b"function\n")
        invoke(k, "vfs_read", "sys_read")
        invoke(k, "vfs_read", "sys_read", task=Task(0, "swapper/0"))  # pid 0: not saved
        invoke(k, "vfs_read", "sys_read", task=Task(31, "kworker/0:1"))
        invoke(k, "vfs_read", "sys_read", task=Task(40000, "big"))  # > PID_MAX_DEFAULT
        assert cat(vfs, f"{T}/saved_cmdlines") == "20903 bash\n31 kworker/0:1\n"
        # 128 slots, round robin from slot 1 (bash) and 2: 128 more pids evict both.
        for pid in range(1000, 1128):
            invoke(k, "vfs_read", "sys_read", task=Task(pid, "t"))
        lines = cat(vfs, f"{T}/saved_cmdlines").splitlines()
        assert lines[:4] == ["1125 t", "1126 t", "1127 t", "1000 t"] and len(lines) == 128


def test_format_options_take_effect_through_options_files():
    with booted(cpus=1) as k:
        vfs = mount(k)
        write(vfs, f"{T}/current_tracer", b"function\n")
        invoke(k, "vfs_read", "sys_read")
        [event] = k.ring_buffer.snapshot().events
        last = {"default": cat(vfs, f"{T}/trace").splitlines()[-1]}
        for name in ("raw", "hex", "latency-format"):
            write(vfs, f"{T}/options/{name}", b"1\n")
            assert f"\n{name}\n" in cat(vfs, f"{T}/trace_options")
            last[name] = cat(vfs, f"{T}/trace").splitlines()[-1]
            write(vfs, f"{T}/options/{name}", b"0\n")
        assert last["default"].startswith("            bash-20903 [000] .... ")
        assert last["raw"] == f"20903 0 {event.ts} {event.ip:x} {event.parent_ip:x}"
        assert last["hex"] == (f"000051a7 00000000 {event.ts:016x} {event.ip:016x} "
                               f"{event.parent_ip:016x} ")
        assert last["latency-format"].startswith("    bash-20903   0.... ")


def test_saved_cmdlines_published_for_another_process():
    """The table in shared memory, read under its sequence count: a copy is kept only
    when no save is being written."""
    namespace = new_namespace()
    table = SavedCmdlines(namespace, lambda: 1, lambda: True)
    try:
        reader = SavedCmdlinesReader(namespace)
        table.tracing_start_cmdline_record()
        for pid in range(1000, 1130):
            table.tracing_record_cmdline(pid, f"t{pid}")
        table.tracing_record_cmdline(1129, "renamed")
        assert reader.trace_find_cmdline_table() == table.trace_find_cmdline_table()
        assert len(table.trace_find_cmdline_table()) == 128
        assert reader.trace_find_cmdline_table()[1129] == "renamed"
        assert 1000 not in reader.trace_find_cmdline_table()
        table._published["sequence"] += 1  # a save under way
        with pytest.raises(TimeoutError):
            reader.trace_find_cmdline_table(timeout=0.05)
        table._published["sequence"] += 1
        assert reader.trace_find_cmdline_table()[1002] == "t1002"
    finally:
        table.destroy()
    assert segments_of(namespace) == []


@pytest.mark.parametrize("disable_on_free", [False, True])
def test_free_buffer(disable_on_free):
    with booted(cpus=2) as k:
        vfs = mount(k)
        write(vfs, f"{T}/current_tracer", b"function\n")
        if disable_on_free:
            write(vfs, f"{T}/options/disable_on_free", b"1\n")
        assert vfs.stat(f"{T}/free_buffer").mode == 0o644
        assert write(vfs, f"{T}/free_buffer", b"\n") == 1
        assert cat(vfs, f"{T}/buffer_size_kb") == "0\n"
        assert cat(vfs, f"{T}/tracing_on") == ("0\n" if disable_on_free else "1\n")
        with pytest.raises(KernelError) as exc:
            cat(vfs, f"{T}/free_buffer")
        assert exc.value.errno == errno.EINVAL


def test_options_through_the_daemon(daemon):
    with Client(daemon.address) as c:
        assert c.read_file(f"{T}/trace_options") == DEFAULT_OPTIONS.encode()
        c.write_file(f"{T}/current_tracer", b"function\n")
        c.write_file(f"{T}/trace_options", b"noirq-info\n")
        c.write_file(f"{T}/options/context-info", b"0\n")
        assert c.read_file(f"{T}/options/irq-info") == b"0\n"
        assert c.read_file(f"{T}/options/func_stack_trace") == b"0\n"
        c.write_file(f"{T}/options/func_stack_trace", b"1\n")  # as `echo 1 > FILE`
        assert c.read_file(f"{T}/options/func_stack_trace") == b"1\n"
        c.write_file(f"{T}/options/func_stack_trace", b"0\n")
        c.invoke("vfs_read", "sys_read", cpu=0)
        assert c.read_file(f"{T}/trace").endswith(b"#\nvfs_read <-sys_read\n")
        with pytest.raises(FtraceError) as exc:
            c.write_file(f"{T}/trace_options", b"nosuch\n")
        assert (exc.value.errno, exc.value.syscall) == (errno.EINVAL, "write")
        assert c.read_file(f"{T}/tracing_thresh") == b"0\n"
        assert b"tracing mini-HOWTO" in c.read_file(f"{T}/README")
        assert c.read_file(f"{T}/saved_cmdlines").endswith(b"\n")


@pytest.mark.parametrize("variant", ["buggy", "fixed"])
def test_func_stack_trace_swaps_the_tracer_ops_as_3_6_does(variant):
    """func_set_flag() unregisters trace_ops and registers trace_stack_ops (and back):
    after the report's reload, the buggy kernel's disable pass WARNs there, as
    `echo nop > current_tracer` would; the fixed one counts the new ops."""
    with booted(variant=variant) as k:
        vfs = mount(k)
        reproducer_until_reload(k)
        write(vfs, f"{T}/options/func_stack_trace", b"1\n")
        if variant == "buggy":
            assert "ftrace.c:1529" in warnings(k)[0]
            assert "func_set_flag+" in warnings(k)[0]
            assert k.ftrace.ftrace_disabled
            return
        assert warnings(k) == []
        assert [ops.name for ops in k.ftrace.ftrace_global_list] == ["trace_stack_ops"]
        assert record(k.ftrace, "uinput_release") == (1, True)
        assert cat(vfs, f"{T}/trace_options").endswith("func_stack_trace\n")
        write(vfs, f"{T}/options/func_stack_trace", b"0\n")
        assert [ops.name for ops in k.ftrace.ftrace_global_list] == ["trace_ops"]
        assert record(k.ftrace, "uinput_release") == (1, True)
        assert warnings(k) == [] and not check_consistency(k.ftrace)
