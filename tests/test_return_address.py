"""A parent ip is a return address inside the caller, never its first byte.

3.6's function tracer is handed, as ``parent_ip``, the traced function's own return
address (``ftrace_caller`` reads it from the frame), and a ``trace_marker`` entry's ip
is ``_THIS_IP_`` inside ``tracing_mark_write()``: with ``sym-offset`` neither prints
``+0x0``.  The model synthesises these addresses (``kallsyms.return_address``) the
same way on every boot, so traces of the same calls compare across daemons.
"""

from __future__ import annotations

import errno
import re

import pytest

from clients.api import Client
from clients.errors import FtraceError
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)

T = "/sys/kernel/debug/tracing"
SMALL = ["--core-functions", "2000"]
# "name+0xoff/0xsize <addr>" as sym-offset and sym-addr print an ip.
SYM = r"(?P<{0}>\w+)\+0x(?P<{0}_off>[0-9a-f]+)/0x(?P<{0}_size>[0-9a-f]+) <(?P<{0}_ip>[0-9a-f]{{16}})>"
FUNCTION_LINE = re.compile(rf": {SYM.format('fn')} <-{SYM.format('parent')}$")
MARKER_LINE = re.compile(rf": {SYM.format('mark')}: (?P<text>.*)$")


def traced(client: Client) -> list[str]:
    """The trace's event lines, ip and parent with offset and address."""
    client.write_file(f"{T}/trace_options", "sym-offset\n")
    client.write_file(f"{T}/trace_options", "sym-addr\n")
    return [line for line in client.read_file(f"{T}/trace").decode().splitlines()
            if not line.startswith("#")]


def vfs_read_and_a_marker(client: Client) -> list[str]:
    """vfs_read called from sys_read, then a trace_marker write, as the trace shows them."""
    client.write_file(f"{T}/current_tracer", "function\n")
    client.invoke("vfs_read", "sys_read", cpu=1)
    client.write_file(f"{T}/trace_marker", "hello\n")
    return traced(client)


def test_sym_offset_shows_the_parent_and_the_marker_inside_their_functions(daemon):
    """The default kernel's vmlinux, pinned: the offsets are the crc32 of the call edge
    within the caller's size, the same on every boot and every machine."""
    with Client(daemon.address) as client:
        lines = vfs_read_and_a_marker(client)
    assert [line.split(": ", 1)[1] for line in lines] == [
        "vfs_read+0x0/0xe0 <ffffffff81148620> <-sys_read+0x61/0xb0 <ffffffff81149611>",
        "tracing_mark_write+0x4d/0xb0 <ffffffff810cee7d>: hello",
    ]


def test_return_addresses_are_inside_and_the_same_on_every_daemon(spawn):
    texts = []
    for _ in range(2):
        with Client(spawn(SMALL).address) as client:
            lines = vfs_read_and_a_marker(client)
        call = FUNCTION_LINE.search(lines[0])
        mark = MARKER_LINE.search(lines[1])
        assert call and mark, lines
        assert (call["fn"], call["fn_off"], call["parent"]) == ("vfs_read", "0", "sys_read")
        assert 0 < int(call["parent_off"], 16) < int(call["parent_size"], 16)
        assert (mark["mark"], mark["text"]) == ("tracing_mark_write", "hello")
        assert 0 < int(mark["mark_off"], 16) < int(mark["mark_size"], 16)
        texts.append([line.split(": ", 1)[1] for line in lines])
    assert texts[0] == texts[1]


def test_a_hit_names_the_parent_at_the_return_address_the_trace_shows(daemon):
    with Client(daemon.address) as client:
        client.write_file(f"{T}/current_tracer", "function\n")
        with client.attach("edge", ["vfs_read"]) as session:
            client.invoke("vfs_read", "sys_read", cpu=1)
            session.flush()
            [hit] = session.take_hits()
        call = FUNCTION_LINE.search(traced(client)[0])
    assert call, "no function line"
    assert (hit.function, hit.parent) == ("vfs_read", "sys_read")
    assert (hit.ip, hit.parent_ip) == (int(call["fn_ip"], 16), int(call["parent_ip"], 16))
    start = int(call["parent_ip"], 16) - int(call["parent_off"], 16)
    assert start < hit.parent_ip < start + int(call["parent_size"], 16)


@pytest.mark.parametrize("offset", [0, 0x10])
def test_a_parent_given_as_an_address_is_kept(spawn, offset):
    """An address is the caller's own account of where it calls from: recorded as it
    is, even at a function's first byte."""
    with Client(spawn(SMALL).address) as client:
        sys_read = int(re.search(r"^([0-9a-f]+) T sys_read$",
                                 client.read_file("/proc/kallsyms").decode(), re.M)[1], 16)
        client.write_file(f"{T}/current_tracer", "function\n")
        with client.attach("given", ["vfs_read"]) as session:
            client.invoke("vfs_read", parent="ignored", parent_ip=sys_read + offset, cpu=1)
            session.flush()
            [hit] = session.take_hits()
        call = FUNCTION_LINE.search(traced(client)[0])
    assert call
    assert (hit.parent, hit.parent_ip) == ("sys_read", sys_read + offset)
    assert (call["parent"], int(call["parent_off"], 16)) == ("sys_read", offset)


def test_a_module_caller_named_in_its_module(spawn):
    """``parent_module`` picks the caller among modules, as ``module`` picks the
    function: the return address is inside that module's function; a name the module
    does not have is ENOENT, and once the module is gone its function's code faults
    first (EFAULT), whatever became of the caller."""
    with Client(spawn(SMALL).address) as client:
        uinput = client.load("uinput")
        client.write_file(f"{T}/current_tracer", "function\n")
        with client.attach("module", ["uinput_read"]) as session:
            done = client.invoke("uinput_read", "uinput_release", module="uinput",
                                 parent_module="uinput", cpu=1)
            session.flush()
            [hit] = session.take_hits()
        assert (hit.function, hit.parent) == ("uinput_read", "uinput_release")
        assert uinput.base <= hit.parent_ip < uinput.base + uinput.size
        line = traced(client)[0].split(": ", 1)[1]
        offset = re.search(r"<-uinput_release\+0x([0-9a-f]+)/0x[0-9a-f]+ \[uinput\]", line)
        assert offset and int(offset[1], 16) > 0, line
        with pytest.raises(FtraceError) as missing:
            client.invoke("uinput_read", "uinput_release", module="uinput",
                          parent_module="dummy")
        assert missing.value.errno == errno.ENOENT
        # Which lookup failed: the caller's, in the module named.
        assert 'no function "uinput_release" in module "dummy"' in str(missing.value)
        client.unload("uinput")
        with pytest.raises(FtraceError) as gone:
            client.invoke(address=done.ip, parent="uinput_release", parent_module="uinput")
        assert gone.value.errno == errno.EFAULT
        # The request's own checks come first: a CPU the kernel lacks is EINVAL, with a
        # parent named or not (it was EFAULT from the caller's lookup).
        for parent in ("", "uinput_release"):
            with pytest.raises(FtraceError) as bad_cpu:
                client.invoke(address=done.ip, parent=parent or None, cpu=99)
            assert bad_cpu.value.errno == errno.EINVAL, parent
