"""Two parsers of written numbers against the 3.6 kernel: ``proc_dointvec()``
(kernel/sysctl.c) behind /proc/sys/kernel/ftrace_enabled, and lib/bitmap.c's
``bitmap_scnprintf()`` / ``__bitmap_parse()`` behind tracing_cpumask; as functions, through
the file tree in-process, and through a daemon."""

from __future__ import annotations

import ctypes
import errno
import os
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clients.api import Client
from clients.errors import FtraceError
from kernel_daemon.bitmap import bitmap_parse_user, bitmap_scnprintf
from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.core import ftrace_kill
from kernel_daemon.panic import TAINT_WARN
from kernel_daemon.strings import hex_to_bin, simple_strtoul
from kernel_daemon.sysctl import proc_dointvec, proc_dointvec_read
from kernel_daemon.task import Task
from kernel_daemon.tracefs.files import file_read, file_release, file_write
from kernel_daemon.tracefs.tree import mount
from tests.daemon_fixture import spawn  # noqa: F401  (a fixture)
from tests.kernel_helpers import T, booted, cat, mask_str, write

SYSCTL = "/proc/sys/kernel/ftrace_enabled"


def refused(fn, *args) -> int:
    with pytest.raises(KernelError) as exc:
        fn(*args)
    return exc.value.errno


# --- lib: simple_strtoul(cp, &endp, 0), hex_to_bin -------------------------------------

@pytest.mark.parametrize("cp, value, length", [
    (b"17", 17, 2), (b"0x1F", 31, 4), (b"0X1f", 31, 4), (b"017", 15, 3),
    (b"08", 0, 1),  # octal: the 8 ends it
    (b"0x", 0, 1), (b"0xg", 0, 1),  # no hex digit after 0x: the octal 0
    (b"18446744073709551617", 1, 20),  # no overflow check: modulo 2**64
    (b"1\0" + b"2", 1, 1), (b"x", 0, 0),
])
def test_simple_strtoul_base_0(cp, value, length):
    assert simple_strtoul(cp) == (value, length)


def test_hex_to_bin_is_ascii_only():
    assert [hex_to_bin(c) for c in b"09afAF"] == [0, 9, 10, 15, 10, 15]
    assert [c for c in range(256) if hex_to_bin(c) >= 0] == list(b"0123456789ABCDEFabcdef")


# --- kernel/sysctl.c: proc_dointvec, write side, one int ---------------------------------

@pytest.mark.parametrize("data, value, consumed", [
    (b"1\n", 1, 2), (b"0", 0, 1), (b"  1", 1, 3), (b"2", 2, 1), (b"-1", -1, 2),
    (b"\t\xa0 1 \n", 1, 6),  # isspace() before; ' ', '\t', '\n' after
    (b"0x10", 16, 4), (b"010", 8, 3), (b"-0x10\n", -16, 6),
    (b"4294967298", 2, 10), (b"2147483648", -2147483648, 10),  # cut to a C int
    (b"9" * 20, 1661992959, 20),  # 20 bytes: still read, modulo 2**64, then 2**32
    # A short write: the number and the spaces after it.
    (b"1 junk", 1, 2), (b"1\n2\n", 1, 2), (b"1\n\0", 1, 2),
    (b"", 7, 0),  # !*lenp: nothing happens
    # *lenp -= left, and left only counts the PAGE_SIZE - 1 copied bytes.
    (b"1" + b" " * 5000, 1, 5001), (b"1 x" + b" " * 5000, 1, 5003 - (4095 - 2)),
])
def test_proc_dointvec_accepts(data, value, consumed):
    assert proc_dointvec(data, 7) == (value, consumed)


@pytest.mark.parametrize("data", [
    b"abc", b"   ", b"\n", b"08", b"0x", b"1" * 21, b"-" + b"1" * 20, b"-", b"+1",
    b"1\r", b"1\xa0", b"1,2", b"1\0", b"\0" + b"1", b"1.5", b"\xb2",
])
def test_proc_dointvec_refuses(data):
    assert refused(proc_dointvec, data, 7) == errno.EINVAL


_SPACE = rb"[\t\n\v\f\r \xa0]"
_NUMBER = re.compile(rb"(-?)(?:0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))")


def dointvec_restated(data: bytes) -> tuple[int, int] | None:
    """What the 3.6 proc_dointvec does to one int, from its comments rather than its code:
    spaces, a number (decimal, 0x hex, 0 octal; shorter than 21 bytes) that a space, tab,
    newline or the end of the copied page follows, then spaces; the int is the number
    modulo 2**64, negated, as a C int.  None: EINVAL."""
    page = data[:4095]
    start = re.match(_SPACE + b"*", page).end()
    token = _NUMBER.match(page, start)
    if token is None or token.end() - start >= 21:
        return None
    if token.end() < len(page) and page[token.end()] not in b" \t\n":
        return None
    hex_digits, octal, decimal = token.group(2, 3, 4)
    number = (int(hex_digits, 16) if hex_digits is not None
              else int(octal, 8) if octal is not None else int(decimal))
    number = -number if token.group(1) else number
    rest = re.compile(_SPACE + b"*").match(page, token.end()).end()
    return ctypes.c_int32(number % 2**64).value, len(data) - (len(page) - rest)


_DOINTVEC_BYTES = st.lists(st.sampled_from(list(b"0123456789xXaAfg- \t\n\v\xa0\0,")),
                           max_size=30).map(bytes)


@given(_DOINTVEC_BYTES)
def test_proc_dointvec_matches_its_restatement(data):
    expected = dointvec_restated(data) if data else (7, 0)
    if expected is None:
        assert refused(proc_dointvec, data, 7) == errno.EINVAL
    else:
        assert proc_dointvec(data, 7) == expected


@pytest.mark.parametrize("valp, size, pos, data", [
    (1, 4096, 0, b"1\n"), (1, 2, 0, b"1\n"), (-12, 4, 0, b"-12\n"),
    (1, 1, 0, b"1"), (123, 2, 0, b"12"), (-12, 3, 0, b"-12"),  # no room for the newline
    (1, 4096, 1, b""), (1, 4096, 2, b""), (1, 0, 0, b""),  # *ppos && !write, !*lenp
])
def test_proc_dointvec_reads_only_at_offset_zero(valp, size, pos, data):
    assert proc_dointvec_read(valp, size, pos) == data


# --- /proc/sys/kernel/ftrace_enabled through the file tree -----------------------------

def test_ftrace_enabled_parses_as_proc_dointvec():
    with booted(cpus=1) as kernel:
        vfs = mount(kernel)
        for data, shown in [(b"2", "2\n"), (b"-1", "-1\n"), (b"0x10", "16\n"), (b"010", "8\n"),
                            (b"  0\n", "0\n"), (b"4294967298", "2\n")]:
            assert write(vfs, SYSCTL, data) == len(data)
            assert cat(vfs, SYSCTL) == shown
        for data in (b"08", b"abc", b"   ", b"1" * 21, b"on\n"):
            assert refused(write, vfs, SYSCTL, data) == errno.EINVAL
            assert cat(vfs, SYSCTL) == "2\n"  # unchanged
        # A short write sets the value; the rest, written again, is EINVAL.
        write(vfs, SYSCTL, b"0")
        assert write(vfs, SYSCTL, b"1 junk\n") == 2
        assert cat(vfs, SYSCTL) == "1\n" and kernel.ftrace.last_ftrace_enabled
        assert refused(write, vfs, SYSCTL, b"junk\n") == errno.EINVAL


def test_ftrace_enabled_read_byte_by_byte_ends_before_the_newline():
    """``dd bs=1``: the first read gets the digit and no room for the newline; the
    second is at offset 1, where proc_dointvec returns nothing."""
    with booted(cpus=1) as kernel:
        vfs = mount(kernel)
        f = vfs.open(SYSCTL, os.O_RDONLY)
        try:
            assert [file_read(f, 1) for _ in range(3)] == [b"1", b"", b""]
        finally:
            file_release(f)
        # A write moves the offset too: read back on the same descriptor, it is EOF.
        f = vfs.open(SYSCTL, os.O_RDWR)
        try:
            assert file_write(f, b"0\n") == 2
            assert file_read(f, 4096) == b""
        finally:
            file_release(f)
        assert cat(vfs, SYSCTL) == "0\n"


def test_ftrace_enabled_is_enodev_before_it_is_parsed_after_ftrace_kill():
    with booted(cpus=1) as kernel:
        vfs = mount(kernel)
        ftrace_kill(kernel.ftrace)
        assert refused(write, vfs, SYSCTL, b"garbage\n") == errno.ENODEV
        assert refused(write, vfs, SYSCTL, b"1\n") == errno.ENODEV
        assert refused(cat, vfs, SYSCTL) == errno.ENODEV


# --- /proc/sys/kernel/tainted: proc_taint() -------------------------------------------

TAINTED = "/proc/sys/kernel/tainted"


def test_tainted_shows_the_warn_bit_after_a_warn():
    with booted(cpus=1) as kernel:
        vfs = mount(kernel)
        assert cat(vfs, TAINTED) == "0\n"
        kernel.panic.warn_slowpath_null("kernel/trace/ftrace.c", 1529, Task(20903, "bash"),
                                        ["__ftrace_hash_rec_update"])
        assert cat(vfs, TAINTED) == f"{1 << TAINT_WARN}\n"


def test_a_write_to_tainted_only_adds_taint():
    """proc_taint(): each bit of the number written is add_taint()-ed; a 0 or a negative
    number (3.6's proc_doulongvec_minmax skips it) changes nothing, and succeeds."""
    with booted(cpus=1) as kernel:
        vfs = mount(kernel)
        for data, shown in [(b"512\n", "512\n"), (b"1", "513\n"), (b"0", "513\n"),
                            (b"-4", "513\n"), (b" 0x4 ", "517\n")]:
            assert write(vfs, TAINTED, data) == len(data)
            assert cat(vfs, TAINTED) == shown
        assert kernel.panic.print_tainted().startswith("Tainted: P S")
        for data in (b"abc", b"   ", b"1" * 21):
            assert refused(write, vfs, TAINTED, data) == errno.EINVAL
        assert write(vfs, TAINTED, b"18446744073709551615") == 20  # all 64 bits
        assert cat(vfs, TAINTED) == f"{(1 << 64) - 1}\n"


# --- lib/bitmap.c: bitmap_scnprintf, __bitmap_parse ------------------------------------

@pytest.mark.parametrize("nmaskbits, mask, text", [
    (2, 3, "3"), (2, 0, "0"), (8, 1, "01"), (8, 0xff, "ff"), (1, 1, "1"),
    (32, 1, "00000001"), (36, (1 << 36) - 1, "f,ffffffff"), (36, 1, "0,00000001"),
    (64, 1 << 63, "80000000,00000000"),
])
def test_bitmap_scnprintf_zero_pads_every_chunk(nmaskbits, mask, text):
    assert bitmap_scnprintf(mask, nmaskbits) == text


@pytest.mark.parametrize("data, nmaskbits, mask", [
    (b"1", 2, 1), (b"1\n", 2, 1), (b" 3 ", 2, 3), (b"\xa03\t", 2, 3), (b"0", 2, 0),
    (b"00000000,3", 2, 3), (b"0,0,3", 2, 3),  # leading zero chunks are skipped
    (b"000000001", 2, 1),  # leading zeros take no room in a chunk
    (b"f,ffffffff", 36, (1 << 36) - 1), (b"ffffffff,0", 64, 0xffffffff << 32),
    (b"1,", 2, 1),  # a comma ending the write starts no chunk
    (b"2\0junk", 2, 2), (b"2 \0 x", 2, 2),  # a NUL ends the text
])
def test_bitmap_parse_user_accepts(data, nmaskbits, mask):
    assert bitmap_parse_user(data, nmaskbits) == mask


@pytest.mark.parametrize("data, nmaskbits, err", [
    (b"0x3", 2, errno.EINVAL), (b"1 2", 2, errno.EINVAL), (b"1 ,2", 36, errno.EINVAL),
    (b"1, 2", 36, errno.EINVAL), (b"1,,2", 36, errno.EINVAL), (b",1", 2, errno.EINVAL),
    (b"1,\n", 36, errno.EINVAL), (b"", 2, errno.EINVAL), (b"\n", 2, errno.EINVAL),
    (b"\0", 2, errno.EINVAL), (b"1_0", 36, errno.EINVAL), (b"\xb2", 36, errno.EINVAL),
    (b"123456789", 64, errno.EOVERFLOW),  # a chunk above 32 bits
    (b"4", 2, errno.EOVERFLOW), (b"1,0", 2, errno.EOVERFLOW),  # more bits than CPUs
    (b"1f,ffffffff", 36, errno.EOVERFLOW),
    (b"123456789 x", 64, errno.EOVERFLOW),  # the first error found wins
])
def test_bitmap_parse_user_refuses(data, nmaskbits, err):
    assert refused(bitmap_parse_user, data, nmaskbits) == err


_BITMAP_SPACE = rb"[\t\n\v\f\r \xa0]*"
_BITMAP_CHUNKS = rb"([0-9a-fA-F]+(?:,[0-9a-fA-F]+)*)"


def bitmap_restated(data: bytes, nmaskbits: int) -> int | None:
    """__bitmap_parse() from its comment: hex chunks of at most 32 bits split by commas,
    spaces around the whole but not inside, a NUL ends the text (before it, or at the
    end of the write, nothing but spaces: a trailing comma only at the very end); the
    value must fit in nmaskbits.  None: refused."""
    text, nul, _ = data.partition(b"\0")
    tail = rb"" if nul else rb"(?:,|" + _BITMAP_SPACE + rb")"
    match = re.fullmatch(_BITMAP_SPACE + _BITMAP_CHUNKS + (_BITMAP_SPACE if nul else tail), text)
    if match is None:
        return None
    chunks = [int(chunk, 16) for chunk in match.group(1).split(b",")]
    if any(chunk >= 1 << 32 for chunk in chunks):
        return None
    value = 0
    for chunk in chunks:
        value = value << 32 | chunk
    return value if value.bit_length() <= nmaskbits else None


_BITMAP_BYTES = st.lists(st.sampled_from(list(b"0123456789abcdefABCDEF0000,,  \t\n\xa0\0xg")),
                         max_size=24).map(bytes)


@given(_BITMAP_BYTES, st.sampled_from([1, 2, 8, 32, 36, 64, 100]))
def test_bitmap_parse_user_matches_its_restatement(data, nmaskbits):
    expected = bitmap_restated(data, nmaskbits)
    if expected is None:
        assert refused(bitmap_parse_user, data, nmaskbits) in (errno.EINVAL, errno.EOVERFLOW)
    else:
        assert bitmap_parse_user(data, nmaskbits) == expected


# --- tracing_cpumask through the file tree ---------------------------------------------

@pytest.mark.parametrize("cpus, every_cpu, cpu0, none", [
    (2, "3\n", "1\n", "0\n"), (8, "ff\n", "01\n", "00\n"),
    (36, "f,ffffffff\n", "0,00000001\n", "0,00000000\n"),
])
def test_tracing_cpumask_prints_nr_cpumask_bits(cpus, every_cpu, cpu0, none):
    with booted(cpus=cpus) as kernel:
        vfs = mount(kernel)
        path = f"{T}/tracing_cpumask"
        assert cat(vfs, path) == mask_str(every_cpu)
        for data, shown in [(b"1\n", cpu0), (b"0", none)]:
            assert write(vfs, path, data) == len(data)
            assert cat(vfs, path) == mask_str(shown)


def test_tracing_cpumask_parses_as_bitmap_parse_user():
    with booted(cpus=2) as kernel:
        vfs = mount(kernel)
        path = f"{T}/tracing_cpumask"
        assert write(vfs, path, b" 2 ") == 3
        for data, err in [(b"0x3", errno.EINVAL), (b"1 2", errno.EINVAL),
                          (b"1,,2", errno.EINVAL), (b"", errno.EINVAL), (b"\n", errno.EINVAL),
                          (b"123456789", errno.EOVERFLOW), (b"7\n", errno.EOVERFLOW)]:
            assert refused(write, vfs, path, data) == err
            assert cat(vfs, path) == mask_str("2\n")  # unchanged
        write(vfs, path, b"00000000,3\n")
        assert cat(vfs, path) == mask_str("3\n")


# --- through a daemon: the short write of the shell's loop, and the errnos -------------

def test_short_writes_and_errnos_through_a_daemon(spawn):  # noqa: F811
    with Client(spawn(["--cpus", "2"]).address) as client:
        # echo "0 junk" > ftrace_enabled: write(2) takes "0 ", the rest is EINVAL.
        with pytest.raises(FtraceError) as exc:
            client.write_file(SYSCTL, b"0 junk\n")
        assert exc.value.errno == errno.EINVAL and exc.value.bytes_written == 2
        assert client.read_file(SYSCTL) == b"0\n" and not client.stats().ftrace_enabled
        with client.open(SYSCTL, os.O_WRONLY) as f:
            assert f.write(b"2 x") == 2
        assert client.read_file(SYSCTL) == b"2\n" and client.stats().ftrace_enabled
        assert client.write_file(SYSCTL, b"-1\n") == 3
        assert client.read_file(SYSCTL) == b"-1\n"
        cpumask = f"{T}/tracing_cpumask"
        for data, err in [(b"4\n", errno.EOVERFLOW), (b"0x3\n", errno.EINVAL)]:
            with pytest.raises(FtraceError) as exc:
                client.write_file(cpumask, data)
            assert exc.value.errno == err
        assert client.write_file(cpumask, b"2\n") == 2
        assert client.read_file(cpumask) == mask_str("2\n").encode()
