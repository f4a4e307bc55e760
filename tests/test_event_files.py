"""The files of 3.6's trace_events.c over the model's events, in-process through the file
tree: available_events, set_event, the enable files and the ftrace system's formats; and
trace_printk.c's printk_formats.  Every event the model has is the ftrace system's, which
trace_export.c marks TRACE_EVENT_FL_IGNORE_ENABLE, so none can be enabled: each name
written to set_event and each value written to an enable file is EINVAL, after the ring
buffer was expanded."""

from __future__ import annotations

import errno
import os

import pytest

from kernel_daemon.errno import KernelError
from kernel_daemon.tracefs.files import file_release, file_write
from kernel_daemon.tracefs.tree import mount
from tests.kernel_helpers import COMMON_FORMAT, T, booted, cat, write, write_errno

UNEXPANDED = "7 (expanded: 1408)\n"
# ftrace_set_clr_event()'s forms: system:event, system:*, system:, *:event, :event,
# *:*, a bare event or system name, each also with '!' to clear; and names of nothing.
NAMES = [b"ftrace:function", b"ftrace:*", b"ftrace:", b"*:function", b":function", b"*:*",
         b"function", b"ftrace", b"print", b"nosuch", b"sched:sched_switch"]


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


STACK_FMT = (
    r'print fmt: "\t=> (" "%016lx" ")\n\t=> (" "%016lx" ")\n\t=> (" "%016lx" ")\n" '
    r'"\t=> (" "%016lx" ")\n\t=> (" "%016lx" ")\n\t=> (" "%016lx" ")\n" '
    r'"\t=> (" "%016lx" ")\n\t=> (" "%016lx" ")\n", REC->caller[0], REC->caller[1], '
    "REC->caller[2], REC->caller[3], REC->caller[4], REC->caller[5], REC->caller[6], "
    "REC->caller[7]\n")
# Each FTRACE_ENTRY of 3.6's trace_entries.h as trace_export.c defines its fields on
# x86_64 (offsetof, sizeof, is_signed_type(); an __array's "type[len]" printed by f_show()
# as "type name[len]"; a __dynamic_array of size 0), and __stringify of its F_printk().
FORMATS = {
    "funcgraph_entry": (
        "ID: 11\n",
        "\tfield:unsigned long func;\toffset:16;\tsize:8;\tsigned:0;\n"
        "\tfield:int depth;\toffset:24;\tsize:4;\tsigned:1;\n",
        'print fmt: "--> %lx (%d)", REC->func, REC->depth\n'),
    "funcgraph_exit": (
        "ID: 10\n",
        "\tfield:unsigned long func;\toffset:16;\tsize:8;\tsigned:0;\n"
        "\tfield:unsigned long long calltime;\toffset:24;\tsize:8;\tsigned:0;\n"
        "\tfield:unsigned long long rettime;\toffset:32;\tsize:8;\tsigned:0;\n"
        "\tfield:unsigned long overrun;\toffset:40;\tsize:8;\tsigned:0;\n"
        "\tfield:int depth;\toffset:48;\tsize:4;\tsigned:1;\n",
        'print fmt: "<-- %lx (%d) (start: %llx  end: %llx) over: %d", REC->func, '
        "REC->depth, REC->calltime, REC->rettime, REC->depth\n"),
    "context_switch": (
        "ID: 2\n",
        "\tfield:unsigned int prev_pid;\toffset:12;\tsize:4;\tsigned:0;\n"
        "\tfield:unsigned int next_pid;\toffset:16;\tsize:4;\tsigned:0;\n"
        "\tfield:unsigned int next_cpu;\toffset:20;\tsize:4;\tsigned:0;\n"
        "\tfield:unsigned char prev_prio;\toffset:24;\tsize:1;\tsigned:0;\n"
        "\tfield:unsigned char prev_state;\toffset:25;\tsize:1;\tsigned:0;\n"
        "\tfield:unsigned char next_prio;\toffset:26;\tsize:1;\tsigned:0;\n"
        "\tfield:unsigned char next_state;\toffset:27;\tsize:1;\tsigned:0;\n",
        'print fmt: "%u:%u:%u  ==> %u:%u:%u [%03u]", REC->prev_pid, REC->prev_prio, '
        "REC->prev_state, REC->next_pid, REC->next_prio, REC->next_state, REC->next_cpu\n"),
    "kernel_stack": (
        "ID: 4\n",
        "\tfield:int size;\toffset:12;\tsize:4;\tsigned:1;\n"
        "\tfield:unsigned long caller;\toffset:16;\tsize:0;\tsigned:0;\n",
        STACK_FMT),
    "user_stack": (
        "ID: 12\n",
        "\tfield:unsigned int tgid;\toffset:12;\tsize:4;\tsigned:0;\n"
        "\tfield:unsigned long caller[8];\toffset:16;\tsize:64;\tsigned:0;\n",
        STACK_FMT),
    "bprint": (
        "ID: 6\n",
        "\tfield:unsigned long ip;\toffset:16;\tsize:8;\tsigned:0;\n"
        "\tfield:const char * fmt;\toffset:24;\tsize:8;\tsigned:0;\n"
        "\tfield:u32 buf;\toffset:32;\tsize:0;\tsigned:0;\n",
        'print fmt: "%08lx fmt:%p", REC->ip, REC->fmt\n'),
    "mmiotrace_rw": (
        "ID: 7\n",
        "\tfield:resource_size_t phys;\toffset:16;\tsize:8;\tsigned:0;\n"
        "\tfield:unsigned long value;\toffset:24;\tsize:8;\tsigned:0;\n"
        "\tfield:unsigned long pc;\toffset:32;\tsize:8;\tsigned:0;\n"
        "\tfield:int map_id;\toffset:40;\tsize:4;\tsigned:1;\n"
        "\tfield:unsigned char opcode;\toffset:44;\tsize:1;\tsigned:0;\n"
        "\tfield:unsigned char width;\toffset:45;\tsize:1;\tsigned:0;\n",
        'print fmt: "%lx %lx %lx %d %x %x", (unsigned long)REC->phys, REC->value, REC->pc, '
        "REC->map_id, REC->opcode, REC->width\n"),
    "mmiotrace_map": (
        "ID: 8\n",
        "\tfield:resource_size_t phys;\toffset:16;\tsize:8;\tsigned:0;\n"
        "\tfield:unsigned long virt;\toffset:24;\tsize:8;\tsigned:0;\n"
        "\tfield:unsigned long len;\toffset:32;\tsize:8;\tsigned:0;\n"
        "\tfield:int map_id;\toffset:40;\tsize:4;\tsigned:1;\n"
        "\tfield:unsigned char opcode;\toffset:44;\tsize:1;\tsigned:0;\n",
        'print fmt: "%lx %lx %lx %d %x", (unsigned long)REC->phys, REC->virt, REC->len, '
        "REC->map_id, REC->opcode\n"),
    "branch": (
        "ID: 9\n",
        "\tfield:unsigned int line;\toffset:12;\tsize:4;\tsigned:0;\n"
        "\tfield:char func[31];\toffset:16;\tsize:31;\tsigned:1;\n"
        "\tfield:char file[21];\toffset:47;\tsize:21;\tsigned:1;\n"
        "\tfield:char correct;\toffset:68;\tsize:1;\tsigned:1;\n",
        'print fmt: "%u:%s:%s (%u)", REC->line, REC->func, REC->file, REC->correct\n'),
}


def test_events_ftrace_has_a_directory_for_each_ftrace_entry_and_the_system_s_enable():
    """event_trace_init() adds every call of the _ftrace_events section: one per
    FTRACE_ENTRY of trace_entries.h; event_subsystem_dir() gives the system an enable."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        assert sorted(e.name for e in vfs.list_dir(f"{T}/events/ftrace")) == [
            "bprint", "branch", "context_switch", "enable", "funcgraph_entry",
            "funcgraph_exit", "function", "kernel_stack", "mmiotrace_map", "mmiotrace_rw",
            "print", "user_stack", "wakeup"]
        for name in FORMATS:  # no reg method: no id; IGNORE_ENABLE: no enable
            assert [e.name for e in vfs.list_dir(f"{T}/events/ftrace/{name}")] == ["format"]


@pytest.mark.parametrize("name", sorted(FORMATS) + ["wakeup"])
def test_each_ftrace_entry_s_format_is_3_6_s(name):
    with booted(cpus=1) as k:
        vfs = mount(k)
        id_line, fields, print_fmt = FORMATS["context_switch" if name == "wakeup" else name]
        if name == "wakeup":  # FTRACE_ENTRY_DUP of ctx_switch_entry
            id_line, print_fmt = "ID: 3\n", print_fmt.replace("==>", "==+")
        assert cat(vfs, f"{T}/events/ftrace/{name}/format") == (
            f"name: {name}\n" + id_line + COMMON_FORMAT + fields + "\n" + print_fmt)


def test_the_ftrace_system_s_enable_reads_0_and_refuses_0_and_1_after_expanding():
    """system_enable_read() of the ftrace system: function, its one call with reg, is
    disabled; system_enable_write(): __ftrace_set_clr_event(NULL, "ftrace", NULL, val)
    skips every call (TRACE_EVENT_FL_IGNORE_ENABLE): EINVAL."""
    with booted(cpus=1) as k:
        vfs = mount(k)
        assert {e.name: e.mode for e in vfs.list_dir(f"{T}/events/ftrace")}["enable"] == 0o644
        assert cat(vfs, f"{T}/events/ftrace/enable") == "0\n"
        assert write_errno(vfs, f"{T}/events/ftrace/enable", b"1\n") == errno.EINVAL
        assert cat(vfs, f"{T}/buffer_size_kb") == "1408\n"
        assert write_errno(vfs, f"{T}/events/ftrace/enable", b"0\n") == errno.EINVAL
        assert cat(vfs, f"{T}/events/ftrace/enable") == "0\n"
