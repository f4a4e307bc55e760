"""Tests for task, unwind, printk and panic: the dmesg side of a WARN, byte for byte."""

from __future__ import annotations

import contextvars
import threading

import pytest

from kernel_daemon.module.kallsyms import Kallsyms
from kernel_daemon.module.symbols import Symbol
from kernel_daemon.panic import (
    TAINT_OOT_MODULE,
    TAINT_PROPRIETARY_MODULE,
    TAINT_WARN,
    TNTS,
    Panic,
)
from kernel_daemon.printk import LOG_LINE_MAX, LogRecord, Printk
from kernel_daemon.task import IDLE_TASK, Task, current, running_as
from kernel_daemon.unwind import (
    call_trace,
    kernel_frames,
    kernel_function,
    kernel_function_named,
)

# Start addresses chosen so the report's return addresses fall inside; sizes as in the report.
SYMS: dict[str, tuple[int, int]] = {
    "warn_slowpath_common": (0xFFFFFFFF8103E580, 0xC0),
    "warn_slowpath_null": (0xFFFFFFFF8103E640, 0x20),
    "warn_slowpath_fmt": (0xFFFFFFFF8103E660, 0x50),
    "tracing_ctrl_write": (0xFFFFFFFF810CB8E0, 0x120),
    "vfs_write": (0xFFFFFFFF81149250, 0x60),
    "__ftrace_hash_rec_update": (0xFFFFFFFF810C2D00, 0x230),
    "ftrace_hash_move": (0xFFFFFFFF810C4F00, 0x1D0),
    "ftrace_regex_release": (0xFFFFFFFF810C6860, 0x150),
    "__fput": (0xFFFFFFFF81149E70, 0x220),
    "____fput": (0xFFFFFFFF8114A090, 0x10),
    "task_work_run": (0xFFFFFFFF8105F9B0, 0x90),
    "do_notify_resume": (0xFFFFFFFF81002880, 0xC0),
    "int_signal": (0xFFFFFFFF815C0F76, 0x17),
}

REPORT_FRAMES = [
    "__ftrace_hash_rec_update",
    "ftrace_hash_move",
    "ftrace_regex_release",
    "__fput",
    "____fput",
    "task_work_run",
    "do_notify_resume",
    "int_signal",
]

# The report's WARN as the model prints it: the format is the kernel's byte for byte, and
# so are the return addresses (kallsyms.REPORTED_RETURN_OFFSETS), but for the report's two
# "?" lines, stale stack words the model's stack does not have.
EXPECTED_WARN = """\
[ 7433.123456] ------------[ cut here ]------------
[ 7433.123456] WARNING: at kernel/trace/ftrace.c:1529 __ftrace_hash_rec_update+0x1e3/0x230()
[ 7433.123456] Modules linked in: uinput
[ 7433.123456] Pid: 20903, comm: bash Tainted: G           O 3.6.11+ #38405.trunk
[ 7433.123456] Call Trace:
[ 7433.123456]  [<ffffffff8103e5ff>] warn_slowpath_common+0x7f/0xc0
[ 7433.123456]  [<ffffffff8103e65a>] warn_slowpath_null+0x1a/0x20
[ 7433.123456]  [<ffffffff810c2ee3>] __ftrace_hash_rec_update+0x1e3/0x230
[ 7433.123456]  [<ffffffff810c4f28>] ftrace_hash_move+0x28/0x1d0
[ 7433.123456]  [<ffffffff810c68ee>] ftrace_regex_release+0x8e/0x150
[ 7433.123456]  [<ffffffff81149f1e>] __fput+0xae/0x220
[ 7433.123456]  [<ffffffff8114a09e>] ____fput+0xe/0x10
[ 7433.123456]  [<ffffffff8105fa22>] task_work_run+0x72/0x90
[ 7433.123456]  [<ffffffff810028ec>] do_notify_resume+0x6c/0xc0
[ 7433.123456]  [<ffffffff815c0f88>] int_signal+0x12/0x17
[ 7433.123456] ---[ end trace 793179526ee09b2c ]---
"""


# The symbols as kallsyms holds them: the WARN's return addresses are the ones the
# daemon's trace shows for the same call edges (kallsyms.return_address).
KALLSYMS = Kallsyms([Symbol(name, start, size, None, "t")
                     for name, (start, size) in SYMS.items()])


def make_kernel(clock_ns: int = 7433_123_456_789) -> tuple[Printk, Panic]:
    printk = Printk(lambda: clock_ns)
    panic = Panic(
        printk,
        KALLSYMS.sprint_symbol,
        KALLSYMS.return_address,
        lambda: "Modules linked in: uinput",
        version="#38405.trunk SMP Fri Dec 14",
        boot_oops_id=0x793179526EE09B2B,
    )
    return printk, panic


# --- task -----------------------------------------------------------------------------


def test_task_comm_truncated_like_task_comm_len() -> None:
    assert Task(1, "a" * 20).comm == "a" * 15
    assert Task(1, "bash").comm == "bash"


def test_current_defaults_to_idle_and_running_as_restores() -> None:
    assert current() == IDLE_TASK == Task(0, "swapper/0")
    bash = Task(20903, "bash")
    with running_as(bash) as task:
        assert task is bash and current() == bash
        with pytest.raises(RuntimeError), running_as(Task(7, "modprobe")):
            assert current().comm == "modprobe"
            raise RuntimeError
        assert current() == bash
    assert current() == IDLE_TASK


def test_current_is_per_thread() -> None:
    seen: list[Task] = []
    with running_as(Task(5, "tracer")):
        thread = threading.Thread(target=lambda: seen.append(current()))
        thread.start()
        thread.join(5)
    assert seen == [IDLE_TASK]


# --- unwind ---------------------------------------------------------------------------


@kernel_function
def ftrace_hash_move() -> list[str]:
    return inner()


@kernel_function_named("__ftrace_hash_rec_update")
def inner() -> list[str]:
    return call_trace()


@kernel_function
def failing() -> None:
    raise ValueError("boom")


def test_call_trace_innermost_first_with_synthetic_frames() -> None:
    assert call_trace() == []
    with kernel_frames("int_signal", "do_notify_resume", "task_work_run", "____fput", "__fput"):
        trace = ftrace_hash_move()
    assert trace == [
        "__ftrace_hash_rec_update",
        "ftrace_hash_move",
        "__fput",
        "____fput",
        "task_work_run",
        "do_notify_resume",
        "int_signal",
    ]
    assert call_trace() == []
    assert ftrace_hash_move.__name__ == "ftrace_hash_move"


def test_frames_popped_when_exception_propagates() -> None:
    with kernel_frames("system_call_fastpath", "sys_write"):
        with pytest.raises(ValueError):
            failing()
        assert call_trace() == ["sys_write", "system_call_fastpath"]
    assert call_trace() == []


def test_stacks_are_per_thread_and_per_context() -> None:
    inside = threading.Barrier(2, timeout=5)
    seen: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        with kernel_frames(name):
            inside.wait()  # both threads hold a frame at the same time
            seen[name] = call_trace()

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("sys_read", "sys_write")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert seen == {"sys_read": ["sys_read"], "sys_write": ["sys_write"]}

    # A copied context sees the frames of the moment of the copy, and its pushes stay its own.
    with kernel_frames("vfs_write"):
        ctx = contextvars.copy_context()
    assert ctx.run(lambda: call_trace()) == ["vfs_write"]
    assert call_trace() == []


# --- printk ---------------------------------------------------------------------------


def test_dmesg_timestamp_format() -> None:
    now = [1_234_567_890]
    log = Printk(lambda: now[0])
    log.printk("first line\nsecond line\n")
    now[0] = 12_345_000_999_999
    log.printk("late")
    assert log.read() == (
        "[    1.234567] first line\n"
        "[    1.234567] second line\n"
        "[12345.000999] late\n"
    )


def test_long_line_cut_at_log_line_max() -> None:
    log = Printk(lambda: 0)
    log.printk("x" * (LOG_LINE_MAX + 10))
    assert log.read() == "[    0.000000] " + "x" * LOG_LINE_MAX + "\n"


def test_bad_level_rejected() -> None:
    with pytest.raises(ValueError):
        Printk(lambda: 0).printk("x", level=8)


def test_oldest_records_dropped_when_full() -> None:
    # Each 8-char line is a 16-byte header + 8 bytes: 24 bytes; three fit in 72.
    log = Printk(lambda: 0, capacity_bytes=72)
    for i in range(5):
        log.printk(f"record {i}")
    assert log.read() == "".join(f"[    0.000000] record {i}\n" for i in (2, 3, 4))
    records, next_seq = log.records_since(0, timeout=0)
    assert records[0].text == "record 2" and records[0].seq == 2 and next_seq == 5


def test_clear_hides_old_records_from_dmesg_but_not_from_followers() -> None:
    log = Printk(lambda: 0)
    log.printk("before")
    assert log.read(clear=True) == "[    0.000000] before\n"
    assert log.read() == ""
    log.printk("after")
    log.clear()
    log.printk("last")
    assert log.read() == "[    0.000000] last\n"
    records, next_seq = log.records_since(0, timeout=0)
    assert [record.text for record in records] == ["before", "after", "last"]
    assert next_seq == 3


def test_follow_times_out_empty() -> None:
    log = Printk(lambda: 0)
    assert log.records_since(0, timeout=0.01) == ([], 0)


def test_follow_wakes_on_new_record() -> None:
    log = Printk(lambda: 2_000_000)
    got: list[tuple[list[LogRecord], int]] = []
    follower = threading.Thread(target=lambda: got.append(log.records_since(0, timeout=10)))
    follower.start()
    log.printk("hello", level=6)
    follower.join(5)
    assert not follower.is_alive()
    assert got == [([LogRecord(0, 2_000_000, 6, "hello")], 1)]
    assert got[0][0][0].format() == "[    0.002000] hello"
    assert log.records_since(1, timeout=0) == ([], 1)


def test_follow_returns_promptly_on_close() -> None:
    log = Printk(lambda: 0)
    got: list[tuple[list[LogRecord], int]] = []
    follower = threading.Thread(target=lambda: got.append(log.records_since(0, timeout=None)))
    follower.start()
    log.close()
    follower.join(5)
    assert not follower.is_alive()
    assert got == [([], 0)] and log.closed


# --- panic ----------------------------------------------------------------------------


def test_print_tainted_matches_tnts() -> None:
    _, panic = make_kernel()
    assert panic.print_tainted() == "Not tainted"
    assert [(bit, on) for bit, on, _ in TNTS][:2] == [(0, "P"), (1, "F")]
    assert len(TNTS) == 13 and TNTS[-1] == (TAINT_OOT_MODULE, "O", " ")
    panic.add_taint(TAINT_OOT_MODULE)
    assert panic.print_tainted() == "Tainted: G           O"
    panic.add_taint(TAINT_WARN)
    assert panic.print_tainted() == "Tainted: G        W  O"
    panic.add_taint(TAINT_PROPRIETARY_MODULE)
    assert panic.print_tainted() == "Tainted: P        W  O"
    assert panic.tainted_mask == (1 << 12) | (1 << 9) | 1


def test_warn_block_byte_exact_for_the_report() -> None:
    printk, panic = make_kernel()
    panic.add_taint(TAINT_OOT_MODULE)
    panic.warn_slowpath_null("kernel/trace/ftrace.c", 1529, Task(20903, "bash"), REPORT_FRAMES)
    assert printk.read() == EXPECTED_WARN
    # The WARN taints only after the block is printed, as warn_slowpath_common() does.
    assert panic.print_tainted() == "Tainted: G        W  O"


def test_warn_with_a_message_prints_it_after_the_warning_line() -> None:
    """``WARN_ONCE(1, fmt)``: ``warn_slowpath_fmt()``, its text a line of its own (the
    ``Modules linked in:`` after it starts a new record), and in the Call Trace."""
    printk, panic = make_kernel()
    panic.warn_slowpath_fmt("kernel/trace/trace.c", 2969, Task(20903, "bash"),
                            ["tracing_ctrl_write", "vfs_write"],
                            "tracing_enabled is deprecated. Use tracing_on")
    assert printk.read() == """\
[ 7433.123456] ------------[ cut here ]------------
[ 7433.123456] WARNING: at kernel/trace/trace.c:2969 tracing_ctrl_write+0xfc/0x120()
[ 7433.123456] tracing_enabled is deprecated. Use tracing_on
[ 7433.123456] Modules linked in: uinput
[ 7433.123456] Pid: 20903, comm: bash Not tainted 3.6.11+ #38405.trunk
[ 7433.123456] Call Trace:
[ 7433.123456]  [<ffffffff8103e5ff>] warn_slowpath_common+0x7f/0xc0
[ 7433.123456]  [<ffffffff8103e697>] warn_slowpath_fmt+0x37/0x50
[ 7433.123456]  [<ffffffff810cb9dc>] tracing_ctrl_write+0xfc/0x120
[ 7433.123456]  [<ffffffff811492a7>] vfs_write+0x57/0x60
[ 7433.123456] ---[ end trace 793179526ee09b2c ]---
"""
    assert panic.print_tainted() == "Tainted: G        W   "


def test_warn_return_addresses_are_consistent_and_inside_functions() -> None:
    printk, panic = make_kernel()
    panic.warn_slowpath_null("kernel/trace/ftrace.c", 1529, Task(1, "sh"), REPORT_FRAMES)
    lines = [line[15:] for line in printk.read().splitlines()]
    header = lines[1].removeprefix("WARNING: at kernel/trace/ftrace.c:1529 ").removesuffix("()")
    trace = [line.split("] ", 1)[1] for line in lines if line.startswith(" [<")]
    # The WARNING line's caller is the return address into the function with the WARN.
    assert trace[2] == header
    for line in lines:
        if line.startswith(" [<"):
            addr = int(line[3:19], 16)
            name = line.split("] ", 1)[1].split("+", 1)[0]
            start, size = SYMS[name]
            assert start < addr < start + size
    assert "Pid: 1, comm: sh Not tainted 3.6.11+ #38405.trunk" in lines


def test_unknown_frames_skipped_and_oops_id_counts_up() -> None:
    printk, panic = make_kernel()
    frames = ["__ftrace_hash_rec_update", "not_in_kallsyms", "int_signal"]
    panic.warn_slowpath_null("kernel/trace/ftrace.c", 1529, Task(2, "sh"), frames)
    panic.warn_slowpath_null("kernel/trace/ftrace.c", 1529, Task(2, "sh"), frames)
    text = printk.read()
    assert "not_in_kallsyms" not in text
    assert text.count(" [<") == 2 * 4
    assert "---[ end trace 793179526ee09b2c ]---" in text
    assert "---[ end trace 793179526ee09b2d ]---" in text
    # The second WARN already shows the W taint from the first.
    assert "Pid: 2, comm: sh Tainted: G        W    3.6.11+ #38405.trunk" in text


def test_warn_without_known_caller_prints_null() -> None:
    printk, panic = make_kernel()
    panic.warn_slowpath_null("kernel/foo.c", 7, Task(3, "sh"), [])
    assert "WARNING: at kernel/foo.c:7 (null)()" in printk.read()


def test_random_oops_id_per_kernel() -> None:
    ids = set()
    for _ in range(2):
        printk = Printk(lambda: 0)
        panic = Panic(printk, KALLSYMS.sprint_symbol, KALLSYMS.return_address,
                      lambda: "Modules linked in:")
        panic.warn_slowpath_null("f.c", 1, Task(1, "sh"), ["int_signal"])
        ids.add(printk.read().splitlines()[-1])
    assert len(ids) == 2


def test_concurrent_warns_stay_contiguous() -> None:
    printk, panic = make_kernel()
    start = threading.Barrier(8, timeout=5)

    def warn(pid: int) -> None:
        start.wait()
        panic.warn_slowpath_null("kernel/trace/ftrace.c", 1529, Task(pid, "sh"), REPORT_FRAMES)

    threads = [threading.Thread(target=warn, args=(pid,)) for pid in range(100, 108)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    lines = printk.read().splitlines()
    block = len(EXPECTED_WARN.splitlines())
    assert len(lines) == 8 * block
    ends = []
    for i in range(0, len(lines), block):
        chunk = lines[i : i + block]
        assert chunk[0].endswith("------------[ cut here ]------------")
        assert chunk[-1].startswith("[ 7433.123456] ---[ end trace ")
        ends.append(int(chunk[-1].split()[-2], 16))
    assert ends == [0x793179526EE09B2C + k for k in range(8)]
