"""The function tracer's ``func_stack_trace`` option: after each call's function event, a
stack event, as 3.6's ``function_stack_trace_call()`` records with ``__trace_stack()``.

The model has no stack to walk: an Invoke's ``callers`` describe it (the parent's return
address, then the return address inside each caller, innermost first). The stack event
prints as ``trace_stack_print()`` does in ``trace`` and ``trace_pipe``, as
``trace_nop_print()`` in the raw, hex and bin formats, and ``trace_pipe_raw`` lays it out
as ``struct stack_entry`` (``events/ftrace/kernel_stack/format``).
"""

from __future__ import annotations

import errno
import os
import re
import signal
import threading

import pytest

from clients.api import Client
from clients.errors import FtraceError
from clients.workload import CORE_CALLS
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.test_shell_integration import run_shell
from tests.test_return_address import SMALL, SYM
from tests.test_trace_pipe_raw import PAGE_SIZE, decode_page, load_formats
from tests.test_tracer_client import DEADLINE, TRACING, Lines, start, wait_until

T = "/sys/kernel/debug/tracing"
READ_STACK = ("vfs_read", "sys_read", "system_call_fastpath")
CONTEXT = r"^ +(?P<comm>\S+)-(?P<pid>\d+) +\[(?P<cpu>\d{3})\] \.\.\.\. +\d+\.\d{6}: "
ULONG_MAX = (1 << 64) - 1


def stack_tracer(client: Client) -> None:
    client.write_file(f"{T}/current_tracer", "function\n")
    client.write_file(f"{T}/options/func_stack_trace", "1\n")


def entries(text: str) -> list[str]:
    """The trace's entries, each a function line or a stack with its `` => `` lines,
    without their context."""
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.startswith("#"):
            continue
        if line.startswith(" => "):
            out[-1] += line
        else:
            out.append(re.sub(CONTEXT, "", line))
    return out


def read_entries(client: Client, path: str = f"{T}/trace") -> list[str]:
    return entries(client.read_file(path, nonblock=True).decode())


def stack(*frames: str) -> str:
    return "<stack trace>\n" + "".join(f" => {frame}\n" for frame in frames)


def find_get_page(client: Client, repeat: int = 1) -> int:
    """find_get_page called from generic_file_aio_read, on a read(2)'s path."""
    return client.invoke("find_get_page", "generic_file_aio_read", cpu=1, repeat=repeat,
                         callers=READ_STACK).traced


def test_each_call_is_followed_by_its_stack_from_the_parent_outward(daemon):
    with Client(daemon.address) as client:
        stack_tracer(client)
        assert find_get_page(client) == 2  # the function event and the stack
        text = client.read_file(f"{T}/trace").decode()
        lines = [line for line in text.splitlines() if not line.startswith("#")]
        assert re.match(CONTEXT + "find_get_page <-generic_file_aio_read$", lines[0])
        assert re.match(CONTEXT + "<stack trace>$", lines[1])
        assert lines[2:] == [" => generic_file_aio_read", " => vfs_read", " => sys_read",
                             " => system_call_fastpath"]
        # The default header counts entries: the stack is one.
        assert "# entries-in-buffer/entries-written: 2/2   #P:4" in text


def test_sym_offset_and_sym_addr_print_each_frame_as_a_return_address(daemon):
    """``seq_print_ip_sym()`` for each frame: the first is the parent's return address,
    the one the function line's ``<-`` names; each caller's is inside it, never +0."""
    with Client(daemon.address) as client:
        stack_tracer(client)
        find_get_page(client)
        client.write_file(f"{T}/trace_options", "sym-offset\n")
        client.write_file(f"{T}/trace_options", "sym-addr\n")
        call, trace = read_entries(client)
        # print-parent is the function line's: the stack prints every frame without it.
        client.write_file(f"{T}/trace_options", "noprint-parent\n")
        bare_call, bare_trace = read_entries(client)
    parent = re.search(rf"<-{SYM.format('p')}$", call.rstrip("\n"))
    frames = [re.fullmatch(" => " + SYM.format("f"), line) for line in trace.splitlines()[1:]]
    assert parent and all(frames), trace
    assert frames[0].group(0)[4:] == parent.group(0)[2:]
    assert [f["f"] for f in frames] == ["generic_file_aio_read", *READ_STACK]
    for f in frames:
        assert 0 < int(f["f_off"], 16) < int(f["f_size"], 16)
    assert "<-" not in bare_call and bare_trace == trace


def test_a_parent_in_a_module_prints_its_module(spawn):
    with Client(spawn(SMALL).address) as client:
        client.load("uinput")
        stack_tracer(client)
        client.invoke("uinput_read", "uinput_release", module="uinput",
                      parent_module="uinput", cpu=0, callers=("__fput", "____fput"))
        client.write_file(f"{T}/trace_options", "sym-offset\n")
        [_, trace] = read_entries(client)
    lines = trace.splitlines()
    assert lines[0] == "<stack trace>"
    assert re.fullmatch(r" => uinput_release\+0x[0-9a-f]+/0x[0-9a-f]+ \[uinput\]", lines[1])
    assert [re.sub(r"\+0x[0-9a-f]+/0x[0-9a-f]+$", "", line) for line in lines[2:]] == [
        " => __fput", " => ____fput"]


def test_repeated_calls_interleave_their_events_and_stacks(daemon):
    with Client(daemon.address) as client:
        stack_tracer(client)
        assert find_get_page(client, repeat=3) == 6
        call = "find_get_page <-generic_file_aio_read\n"
        expected = [call, stack("generic_file_aio_read", *READ_STACK)] * 3
        assert read_entries(client) == expected
        stats = client.read_file(f"{T}/per_cpu/cpu1/stats").decode()
        assert "entries: 6\n" in stats and "overrun: 0\n" in stats
        # trace_pipe consumes them, a stack with its frames, and the buffer is empty.
        assert read_entries(client, f"{T}/trace_pipe") == expected
        assert read_entries(client) == []
        assert "entries: 0\n" in client.read_file(f"{T}/per_cpu/cpu1/stats").decode()


def test_no_parent_is_an_empty_stack_and_callers_need_one(daemon):
    """Without a parent the stack has no frame: ``save_stack_trace()``'s ULONG_MAX
    alone, so ``<stack trace>`` and nothing after it."""
    with Client(daemon.address) as client:
        stack_tracer(client)
        client.invoke("schedule", cpu=0)
        assert read_entries(client) == ["schedule\n", "<stack trace>\n"]
        with pytest.raises(FtraceError) as no_parent:
            client.invoke("schedule", callers=["do_exit"])
        assert no_parent.value.errno == errno.EINVAL


def test_unknown_callers_too_many_and_a_parent_in_no_function(daemon):
    with Client(daemon.address) as client:
        stack_tracer(client)
        with pytest.raises(FtraceError) as unknown:
            client.invoke("vfs_read", "sys_read", callers=["system_call_fastpath", "nosuch"])
        assert unknown.value.errno == errno.ENOENT
        assert 'no function "nosuch"' in str(unknown.value)
        # 512 frames at most, the parent's one of them (FTRACE_STACK_MAX_ENTRIES).
        with pytest.raises(FtraceError) as too_many:
            client.invoke("vfs_read", "sys_read", callers=["sys_read"] * 512)
        assert too_many.value.errno == errno.EINVAL
        # A parent given as an address the callers' first call must be from a function.
        with pytest.raises(FtraceError) as nowhere:
            client.invoke("vfs_read", parent_ip=0x10, callers=["sys_read"])
        assert nowhere.value.errno == errno.EFAULT
        assert read_entries(client) == []  # none of them ran
        # 511 are taken, but an entry of more than 506 frames is over what a ring buffer
        # event holds (BUF_MAX_DATA_SIZE, 4072 bytes): the reserve fails, no stack.
        for callers, traced in ((511, 1), (506, 1), (505, 2)):
            assert client.invoke("vfs_read", "sys_read", cpu=1,
                                 callers=["sys_read"] * callers).traced == traced
        *calls, last = read_entries(client)
        assert [entry.count(" => ") for entry in calls] == [0, 0, 0]
        # 506 frames are over a page of text: `trace` shows what fits; the entry has all.
        assert 0 < last.count(" => ") < 506
        formats = load_formats(lambda path: client.read_file(f"{T}/{path}").decode(),
                               ("function", "print", "kernel_stack"))
        with client.open(f"{T}/per_cpu/cpu1/trace_pipe_raw") as f:
            pages = [decode_page(f.read(PAGE_SIZE), formats) for _ in range(2)]
    events = [e for page in pages for e in page.events]
    assert [e.name for e in events] == ["function"] * 3 + ["kernel_stack"]
    assert events[-1].fields["size"] == 507  # and ULONG_MAX


def test_raw_hex_and_bin_print_a_stack_as_trace_nop_print(daemon):
    """kernel_stack has only a trace function: ``register_ftrace_event()`` gave it
    ``trace_nop_print()`` for the others, after the format's context as for any entry
    (hex adds its newline). The stack's timestamp is the nanosecond after its call's."""
    with Client(daemon.address) as client:
        stack_tracer(client)
        find_get_page(client)
        client.write_file(f"{T}/trace_options", "raw\n")
        raw = client.read_file(f"{T}/trace").decode()
        client.write_file(f"{T}/trace_options", "hex\n")
        hex_ = client.read_file(f"{T}/trace").decode()
        client.write_file(f"{T}/trace_options", "bin\n")
        bin_ = client.read_file(f"{T}/trace")
    call, stack_line = raw.splitlines(keepends=True)[-2:]  # after the header
    pid, cpu, ts = map(int, call.split()[:3])
    assert stack_line == f"{pid} 1 {ts + 1} type: 4\n" and cpu == 1
    assert hex_.endswith(f" \n{pid:08x} 00000001 {ts + 1:016x} type: 4\n\n")
    # The stack's context, native fields without separators, then the text.
    assert bin_.endswith(pid.to_bytes(4, "little") + (1).to_bytes(4, "little")
                         + (ts + 1).to_bytes(8, "little") + b"type: 4\n")


def test_trace_pipe_raw_lays_the_stack_out_as_struct_stack_entry(daemon):
    """``__ftrace_trace_stack()``'s entry: ``size`` is ``nr_entries`` (the frames and the
    ULONG_MAX after them), and at least FTRACE_STACK_ENTRIES (8) callers, zeroed after
    the marker; the offsets are the format file's."""
    with Client(daemon.address) as client:
        formats = load_formats(lambda path: client.read_file(f"{T}/{path}").decode(),
                               ("function", "print", "kernel_stack"))
        stack_tracer(client)
        find_get_page(client)
        client.invoke("vfs_read", "sys_read", cpu=1, callers=["sys_read"] * 10)
        client.write_file(f"{T}/trace_options", "sym-addr\n")
        shown = [[int(ip, 16) for ip in re.findall(r"<([0-9a-f]{16})>", entry)]
                 for entry in read_entries(client)[1::2]]
        with client.open(f"{T}/per_cpu/cpu1/trace_pipe_raw") as f:
            page = decode_page(f.read(PAGE_SIZE), formats)
    assert [e.name for e in page.events] == ["function", "kernel_stack"] * 2
    small, large = page.events[1], page.events[3]
    assert small.fields["size"] == 5
    assert to_words(small.fields["caller"]) == [*shown[0], ULONG_MAX, 0, 0, 0]
    assert large.fields["size"] == 12
    assert to_words(large.fields["caller"]) == [*shown[1], ULONG_MAX]
    # 16 bytes of header and 8 callers, 80: small; 16 + 12 * 8, 112: the largest small.
    assert page.length == 2 * (4 + 32) + (4 + 80) + (4 + 112)
    assert small.ts == page.events[0].ts + 1


def test_a_frame_of_ulong_max_ends_the_printed_stack_not_the_entry(daemon):
    """``trace_stack_print()`` stops at the first ULONG_MAX among the callers, a frame's
    own as well as the one ``save_stack_trace()`` puts after the last: a parent_ip of
    ULONG_MAX prints no frame; ``trace_pipe_raw`` has the entry as it was recorded."""
    with Client(daemon.address) as client:
        formats = load_formats(lambda path: client.read_file(f"{T}/{path}").decode(),
                               ("function", "print", "kernel_stack"))
        stack_tracer(client)
        client.invoke("vfs_read", parent_ip=ULONG_MAX, cpu=1)
        assert read_entries(client)[1] == "<stack trace>\n"
        client.write_file(f"{T}/trace_options", "sym-offset\n")
        assert read_entries(client)[1] == "<stack trace>\n"
        with client.open(f"{T}/per_cpu/cpu1/trace_pipe_raw") as f:
            page = decode_page(f.read(PAGE_SIZE), formats)
    entry = page.events[1]
    assert entry.fields["size"] == 2
    assert to_words(entry.fields["caller"]) == [ULONG_MAX, ULONG_MAX] + [0] * 6


def to_words(data: bytes) -> list[int]:
    return [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)]


def test_overwrite_drops_a_stack_whole_and_counts_it_once(daemon):
    """A 4 KB buffer holds 127 records; a call with 13 frames takes 4 (its event, the
    stack's head and two records of frames), so 40 calls keep the last 31 whole and,
    in the 3 records left, the stack of the call before them: 63 of 80 events."""
    with Client(daemon.address) as client:
        stack_tracer(client)
        client.write_file(f"{T}/per_cpu/cpu1/buffer_size_kb", "4\n")
        frames = ["sys_read"] * 12
        assert client.invoke("vfs_read", "sys_read", cpu=1, repeat=40,
                             callers=frames).traced == 80
        stats = client.read_file(f"{T}/per_cpu/cpu1/stats").decode()
        assert "entries: 63\n" in stats and "overrun: 17\n" in stats
        kept = read_entries(client)
        assert len(kept) == 63
        assert kept[0] == stack(*["sys_read"] * 13)
        assert kept[1:3] == ["vfs_read <-sys_read\n", stack(*["sys_read"] * 13)]
        # One more call's 4 records drop the oldest stack and the next call's event,
        # whose stack is the oldest entry then.
        client.invoke("vfs_read", "sys_read", cpu=1, callers=frames)
        assert "overrun: 19\n" in client.read_file(f"{T}/per_cpu/cpu1/stats").decode()
        assert read_entries(client)[:2] == [stack(*["sys_read"] * 13), "vfs_read <-sys_read\n"]


def test_the_option_off_again_records_no_stacks(daemon):
    with Client(daemon.address) as client:
        stack_tracer(client)
        find_get_page(client)
        client.write_file(f"{T}/options/func_stack_trace", "0\n")
        assert find_get_page(client) == 1  # callers are taken, and ignored
        assert read_entries(client) == [
            "find_get_page <-generic_file_aio_read\n",
            stack("generic_file_aio_read", *READ_STACK),
            "find_get_page <-generic_file_aio_read\n"]


def test_the_shell_invokes_with_callers_after_the_parent(daemon, tmp_path):
    script = (f"cd {T}; echo function > current_tracer; echo 1 > options/func_stack_trace; "
              "invoke find_get_page generic_file_aio_read vfs_read sys_read "
              "system_call_fastpath -C 1; grep -A4 '<stack trace>' trace; "
              "invoke schedule '' do_exit")
    shell = run_shell(tmp_path, ["--address", daemon.address, "-c", script])
    assert (shell.returncode, shell.err) == (1, "invoke: schedule: Invalid argument\n")
    assert shell.out.split(": ", 1)[1] == stack("generic_file_aio_read", *READ_STACK)


def test_the_workload_records_its_chains_stacks(spawn):
    """Each stack of ``ftrace-workload`` starts at the line's parent and goes out along
    the chain that called it: every two frames in a row are a call of the workload's."""
    daemon = spawn(SMALL)
    with daemon.connect() as client:
        client.write_file(f"{TRACING}/buffer_size_kb", "1024")
        stack_tracer(client)
        workload = start("clients.workload", "--address", daemon.address, "--rate", "2000",
                         "--seed", "1", "--module-share", "0")
        err = Lines(workload.stderr)

        def stacks() -> list[tuple[str, list[str]]]:
            found = read_entries(client)
            return [(call, trace.splitlines()[1:]) for call, trace in zip(found, found[1:])
                    if "<-" in call and trace.startswith("<stack trace>")]

        wait_until(lambda: any(frames[-1:] == [" => system_call_fastpath"]
                               and len(frames) >= 4 for _, frames in stacks()))
        workload.send_signal(signal.SIGINT)
        _, rest = workload.communicate(timeout=DEADLINE)
        assert workload.returncode == 0, err.rest(rest)
        calls = {(call.function, call.parent) for chain in CORE_CALLS.values()
                 for call in chain}
        found = stacks()
    assert found
    for call, frames in found:
        names = [frame.removeprefix(" => ") for frame in frames]
        function, parent = call.rstrip("\n").split(" <-")
        assert names[0] == parent, (call, frames)
        assert all(pair in calls for pair in zip(names, names[1:])), (call, frames)


# Callers that make a stack's text longer than a page with the default options.
OVER_A_PAGE = 310
BIG_STACK = ["sys_read", *["system_call_fastpath"] * OVER_A_PAGE]


def trace_seq_cut(prefix: str, frames: list[str]) -> str:
    """What 3.6's trace_seq (a page) holds of a stack printed after ``prefix`` (ASCII):
    ``trace_stack_print()``'s pieces, each written only if it fits (``trace_seq_puts()``
    up to byte 4095, ``trace_seq_printf()``, a frame's symbol, up to 4094), none after
    the first that does not."""
    text = prefix
    pieces = [("<stack trace>\n", 4095)]
    for frame in frames:
        pieces += [(" => ", 4095), (frame, 4094), ("\n", 4095)]
    for piece, last_byte in pieces:
        if len(text) + len(piece) > last_byte:
            break
        text += piece
    return text


def call_with_a_big_stack(client: Client) -> None:
    """vfs_read with a stack over a page, then schedule with a small one."""
    stack_tracer(client)
    client.invoke("vfs_read", "sys_read", cpu=0, callers=BIG_STACK[1:])
    client.invoke("schedule", "do_exit", cpu=0)


def test_trace_prints_what_a_page_holds_of_a_stack_over_it(daemon):
    """``s_show()`` prints ``iter->seq`` whatever ``print_trace_line()`` returned: of a
    stack over a page, the pieces that fitted, here up to a `` => `` whose symbol did
    not, and the next entry goes on on that line (3.6 has no ``[LINE TOO BIG]`` there)."""
    with Client(daemon.address) as client:
        call_with_a_big_stack(client)
        text = client.read_file(f"{T}/per_cpu/cpu0/trace").decode()
    body = text[text.index("\n", text.rindex("#")) + 1:]
    call, rest = body.split("\n", 1)
    assert re.fullmatch(CONTEXT + "vfs_read <-sys_read", call)
    cut = trace_seq_cut(rest[:rest.index("<stack trace>")], BIG_STACK)
    assert rest.startswith(cut) and cut.endswith("\n => ") and len(cut) <= 4095
    after = rest[len(cut):].splitlines(keepends=True)
    assert re.fullmatch(CONTEXT + "schedule <-do_exit\n", after[0])
    assert re.fullmatch(CONTEXT + "<stack trace>\n", after[1]) and after[2:] == [" => do_exit\n"]


@pytest.mark.parametrize("flags", [os.O_RDONLY, os.O_RDONLY | os.O_NONBLOCK],
                         ids=["blocking", "nonblock"])
def test_trace_pipe_reads_a_stack_over_a_page_as_line_too_big_and_goes_on(daemon, flags):
    """3.6's ``tracing_read_pipe()`` loops forever on an entry that does not fit an empty
    trace_seq; the model reads it as upstream's c1ac03af6ed4 does: what fitted, then
    ``[LINE TOO BIG]``, the entry consumed, and the next read goes on after it."""
    with Client(daemon.address) as client:
        call_with_a_big_stack(client)
        reads: list[str] = []

        def reader() -> None:
            with client.open(f"{T}/per_cpu/cpu0/trace_pipe", flags) as pipe:
                reads.extend(pipe.read(4096).decode() for _ in range(3))

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        thread.join(DEADLINE)
        assert not thread.is_alive(), "a trace_pipe read never returned"
        assert client.read_file(f"{T}/per_cpu/cpu0/trace", nonblock=True).decode().endswith(
            "#              | |       |   ||||       |         |\n")
    call, stack_read, after = reads
    assert re.fullmatch(CONTEXT + "vfs_read <-sys_read\n", call)
    cut = trace_seq_cut(stack_read[:stack_read.index("<stack trace>")], BIG_STACK)
    assert len(cut) + len("[LINE TOO BIG]\n") <= 4095
    assert stack_read == cut + "[LINE TOO BIG]\n"
    lines = after.splitlines(keepends=True)
    assert re.fullmatch(CONTEXT + "schedule <-do_exit\n", lines[0])
    assert re.fullmatch(CONTEXT + "<stack trace>\n", lines[1]) and lines[2:] == [" => do_exit\n"]
