"""The files of 3.6's trace_events.c over the model's events, in-process through the file
tree: available_events, set_event and events/enable; and trace_printk.c's printk_formats.  Every event the model has is the
ftrace system's, which trace_export.c marks TRACE_EVENT_FL_IGNORE_ENABLE, so none can be
enabled: each name written to set_event and each value written to an enable file is
EINVAL, after the ring buffer was expanded."""

from __future__ import annotations

import errno
import os

import pytest

from kernel_daemon.errno import KernelError
from kernel_daemon.tracefs.files import file_release, file_write
from kernel_daemon.tracefs.tree import mount
from tests.kernel_helpers import T, booted, cat, write

UNEXPANDED = "7 (expanded: 1408)\n"
# ftrace_set_clr_event()'s forms: system:event, system:*, system:, *:event, :event,
# *:*, a bare event or system name, each also with '!' to clear; and names of nothing.
NAMES = [b"ftrace:function", b"ftrace:*", b"ftrace:", b"*:function", b":function", b"*:*",
         b"function", b"ftrace", b"print", b"nosuch", b"sched:sched_switch"]


def write_errno(vfs, path: str, data: bytes, flags: int = os.O_WRONLY | os.O_TRUNC) -> int:
    with pytest.raises(KernelError) as exc:
        write(vfs, path, data, flags)
    return exc.value.errno


def test_event_trace_init_creates_available_events_and_set_event_with_3_6_modes():
    with booted(cpus=1) as k:
        vfs = mount(k)
        modes = {e.name: e.mode for e in vfs.list_dir(T)}
        assert (modes["available_events"], modes["set_event"]) == (0o444, 0o644)
        assert {e.name: e.mode for e in vfs.list_dir(f"{T}/events")}["enable"] == 0o644


def test_available_events_lists_the_calls_with_a_reg_method_as_system_colon_name():
    """t_next(): calls whose class has reg; of the ftrace system's, only function
    (FTRACE_ENTRY_REG's perf_ftrace_event_register).  t_show(): "ftrace:function"."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        assert cat(vfs, f"{T}/available_events") == "ftrace:function\n"
        # 0444, yet root opens it for write (O_TRUNC: ftrace_clear_events()); no write method.
        assert write_errno(vfs, f"{T}/available_events", b"function\n") == errno.EINVAL
        assert cat(vfs, f"{T}/available_events") == "ftrace:function\n"


@pytest.mark.parametrize("name", NAMES + [b"!" + n for n in NAMES] + [b"!"],
                         ids=lambda n: n.decode())
def test_every_name_written_to_set_event_is_einval_and_expands_the_buffer(name):
    """ftrace_event_write(): tracing_update_buffers() first, then
    __ftrace_set_clr_event() skips every TRACE_EVENT_FL_IGNORE_ENABLE call: -EINVAL."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        assert cat(vfs, f"{T}/buffer_size_kb") == UNEXPANDED
        assert write_errno(vfs, f"{T}/set_event", name + b"\n",
                           os.O_WRONLY | os.O_APPEND) == errno.EINVAL
        assert cat(vfs, f"{T}/buffer_size_kb") == "1408\n"
        assert cat(vfs, f"{T}/set_event") == ""


def test_set_event_takes_spaces_and_reads_empty():
    """No event is ever enabled, so s_next() finds none; a write of spaces loads no name
    and returns what trace_get_user() read; an empty write returns 0 before
    tracing_update_buffers()."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        assert cat(vfs, f"{T}/set_event") == ""
        assert write(vfs, f"{T}/set_event", b"") == 0
        assert cat(vfs, f"{T}/buffer_size_kb") == UNEXPANDED
        assert write(vfs, f"{T}/set_event", b"\n") == 1  # echo > set_event
        assert write(vfs, f"{T}/set_event", b" \t \n") == 4
        assert cat(vfs, f"{T}/buffer_size_kb") == "1408\n"
        assert cat(vfs, f"{T}/set_event") == ""


def test_set_event_moves_the_position_past_a_name_before_refusing_it():
    """trace_get_user() adds what it read to *ppos; a name longer than EVENT_BUF_SIZE
    fails inside it, the position unmoved."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        f = vfs.open(f"{T}/set_event", os.O_RDWR)
        try:
            with pytest.raises(KernelError) as exc:
                file_write(f, b"  ftrace:function other\n")
            assert exc.value.errno == errno.EINVAL and f.pos == 18
            with pytest.raises(KernelError) as exc:
                file_write(f, b"x" * 128 + b"\n")
            assert exc.value.errno == errno.EINVAL and f.pos == 18
            assert file_write(f, b"  ") == 2 and f.pos == 20
        finally:
            file_release(f)


@pytest.mark.parametrize("value", [b"0\n", b"1\n", b"1", b"2\n"])
def test_events_enable_expands_the_buffer_then_refuses_every_value(value):
    """system_enable_write(): kstrtoul_from_user(), tracing_update_buffers(), EINVAL for
    a value not 0 or 1, and for 0 or 1 __ftrace_set_clr_event() matches no call: EINVAL
    (after *ppos += cnt)."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        assert cat(vfs, f"{T}/events/enable") == "0\n"
        assert write_errno(vfs, f"{T}/events/enable", value) == errno.EINVAL
        assert cat(vfs, f"{T}/buffer_size_kb") == "1408\n"
        assert cat(vfs, f"{T}/events/enable") == "0\n"


def test_events_enable_refuses_a_number_it_cannot_parse_before_expanding():
    with booted(cpus=1) as k:
        vfs = mount(k)
        for data in (b"x\n", b"\n", b"-1\n"):
            assert write_errno(vfs, f"{T}/events/enable", data) == errno.EINVAL
        assert cat(vfs, f"{T}/buffer_size_kb") == UNEXPANDED


def test_printk_formats_is_an_empty_seq_file_without_trace_printk_formats():
    """trace_printk.c's printk_formats (0444, seq_read): find_next() finds no format in
    the core kernel's __trace_printk_fmt section and none on trace_bprintk_fmt_list."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        assert {e.name: e.mode for e in vfs.list_dir(T)}["printk_formats"] == 0o444
        assert cat(vfs, f"{T}/printk_formats") == ""
        assert write_errno(vfs, f"{T}/printk_formats", b"x\n") == errno.EINVAL
