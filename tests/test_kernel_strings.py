"""The kernel's parsing of written text (kernel_daemon.strings) against lib/ctype.c,
lib/string.c and lib/kstrtox.c, and the control files that use it, in-process."""

from __future__ import annotations

import errno

import pytest

from kernel_daemon.errno import KernelError
from kernel_daemon.strings import (KERNEL_SPACES, LONG_MAX, ULONG_MAX, c_string, kstrtol,
                                   kstrtoul_from_user, strim)
from kernel_daemon.tracefs.tree import mount
from tests.kernel_helpers import T, booted, cat, write

# lib/ctype.c: the bytes whose _ctype[] entry has _S.
LIB_CTYPE_SPACES = {9, 10, 11, 12, 13, 32, 160}


def test_kernel_spaces_are_lib_ctype_s_class():
    assert set(KERNEL_SPACES) == LIB_CTYPE_SPACES
    # Python's own idea differs: \x1c-\x1f and \x85 are spaces to str, not to the kernel.
    assert {c for c in range(256) if chr(c).isspace()} - LIB_CTYPE_SPACES == {
        0x1c, 0x1d, 0x1e, 0x1f, 0x85}


@pytest.mark.parametrize("data, value", [
    (b"1", 1), (b"1\n", 1), (b"+7\n", 7), (b"0", 0), (b"007", 7),
    (b"18446744073709551615", ULONG_MAX),
    (b"1\0junk", 1),  # the copy is a C string
    (b"0" * 70 + b"1", 0),  # only 66 bytes are copied
])
def test_kstrtoul_from_user_accepts(data, value):
    assert kstrtoul_from_user(data) == value


@pytest.mark.parametrize("data, err", [
    (b"", errno.EINVAL), (b"\n", errno.EINVAL), (b" 1", errno.EINVAL),
    (b"1 ", errno.EINVAL), (b"1 \n", errno.EINVAL), (b"1\n\n", errno.EINVAL),
    (b"-1", errno.EINVAL), (b"++1", errno.EINVAL), (b"0x10", errno.EINVAL),
    (b"1_0", errno.EINVAL), (b"\xb2\n", errno.EINVAL), (b"\xa01", errno.EINVAL),
    (b"18446744073709551616", errno.ERANGE),
])
def test_kstrtoul_from_user_refuses(data, err):
    with pytest.raises(KernelError) as exc:
        kstrtoul_from_user(data)
    assert exc.value.errno == err


@pytest.mark.parametrize("data, value", [
    (b"1", 1), (b"+1\n", 1), (b"-1", -1), (b"-42\n", -42), (b"0", 0), (b"007", 7),
    (b"9223372036854775807", LONG_MAX), (b"-9223372036854775808", -LONG_MAX - 1),
    (b"5\0junk", 5),
])
def test_kstrtol_accepts(data, value):
    assert kstrtol(data, 10) == value


@pytest.mark.parametrize("data, err", [
    (b"", errno.EINVAL), (b"-", errno.EINVAL), (b"+-1", errno.EINVAL), (b"-+1", errno.EINVAL),
    (b" 1", errno.EINVAL), (b"1\n\n", errno.EINVAL), (b"0x10", errno.EINVAL),
    (b"9223372036854775808", errno.ERANGE), (b"-9223372036854775809", errno.ERANGE),
    (b"18446744073709551616", errno.ERANGE),
    (b"-0", errno.ERANGE),  # 3.6's kstrtoll: (long long)(-tmp) >= 0
])
def test_kstrtol_refuses(data, err):
    with pytest.raises(KernelError) as exc:
        kstrtol(data, 10)
    assert exc.value.errno == err


def test_strim_and_c_string():
    assert strim(b" \t global\xa0\n") == b"global"
    assert strim(b"global\x1c\n") == b"global\x1c"
    assert strim(b"glo\0bal") == b"glo"
    assert c_string(b"abc") == b"abc" and c_string(b"a\0b") == b"a"
    assert c_string("a\0b") == "a" and c_string("") == ""  # a latin-1 token


def test_control_files_parse_as_the_kernel():
    with booted() as kernel:
        vfs = mount(kernel)

        def refused(path: str, data: bytes) -> int:
            with pytest.raises(KernelError) as exc:
                write(vfs, f"{T}/{path}", data)
            return exc.value.errno

        # rb_simple_write: kstrtoul_from_user.
        assert refused("tracing_on", b"\xb2\n") == errno.EINVAL
        assert refused("tracing_on", b" 0\n") == errno.EINVAL
        assert cat(vfs, f"{T}/tracing_on") == "1\n"
        write(vfs, f"{T}/tracing_on", b"+0\n")
        assert cat(vfs, f"{T}/tracing_on") == "0\n"
        # tracing_clock_write: strstrip() of fewer than 64 bytes.
        write(vfs, f"{T}/trace_clock", b" global\xa0\n")
        assert cat(vfs, f"{T}/trace_clock") == "local [global] counter\n"
        assert refused("trace_clock", b"local\x1c\n") == errno.EINVAL
        assert refused("trace_clock", b"local" + b" " * 59) == errno.EINVAL
        # tracing_set_trace_write: trailing isspace() stripped, the name ends at a NUL.
        write(vfs, f"{T}/current_tracer", b"function\xa0\n")
        assert cat(vfs, f"{T}/current_tracer") == "function\n"
        write(vfs, f"{T}/current_tracer", b"nop\0function\n")
        assert cat(vfs, f"{T}/current_tracer") == "nop\n"
        assert refused("current_tracer", b"function\x1c\n") == errno.EINVAL
        assert refused("current_tracer", b" function\n") == errno.EINVAL
