"""lseek(2) on the tracing files through the client library and a real ftraced: each file
seeks with the ``.llseek`` its 3.6 ``file_operations`` name (kernel_daemon/tracefs/llseek.py),
and its errno reaches the client as lseek(2)'s."""

from __future__ import annotations

import errno
import os

import pytest

from clients.api import Client, FileSession
from clients.errors import FtraceError
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)

T = "/sys/kernel/debug/tracing"
LLONG_MAX = (1 << 63) - 1
# debugfs's s_maxbytes (MAX_NON_LFS) is 2 GiB - 1: generic_file_llseek() stops there.
TWO_GB = 1 << 31


@pytest.fixture
def client(daemon):
    with Client(daemon.address) as c:
        yield c


def lseek_error(f: FileSession, offset: int, whence: int = os.SEEK_SET) -> FtraceError:
    """The error of an lseek that must fail; the file stays open."""
    with pytest.raises(FtraceError) as exc:
        f.seek(offset, whence)
    assert exc.value.syscall == "lseek" and exc.value.from_kernel
    return exc.value


def test_generic_file_llseek_counts_from_i_size_0_and_stops_at_s_maxbytes(client):
    """current_tracer and trace_marker (``generic_file_llseek``): SEEK_END counts from
    i_size, 0 for a debugfs file; SEEK_DATA finds no data at or past it and SEEK_HOLE goes
    to the hole at 0 from before it; positions stop at debugfs's s_maxbytes."""
    with client.open(f"{T}/current_tracer", os.O_RDWR) as f:
        assert f.seek(1, os.SEEK_END) == 1
        assert f.read() == b"op\n"
        assert f.seek(0, os.SEEK_CUR) == 4
        assert f.seek(-5, os.SEEK_HOLE) == 0
        err = lseek_error(f, 0, os.SEEK_DATA)
        assert (err.errno_name, err.strerror) == ("ENXIO", "No such device or address")
        assert lseek_error(f, 3, os.SEEK_HOLE).errno == errno.ENXIO
        assert lseek_error(f, -1, os.SEEK_DATA).errno == errno.EINVAL
        assert f.seek(TWO_GB - 1) == TWO_GB - 1
        assert lseek_error(f, TWO_GB).errno == errno.EINVAL
        assert lseek_error(f, 1, os.SEEK_CUR).errno == errno.EINVAL
        assert f.seek(0, os.SEEK_CUR) == TWO_GB - 1
    with client.open(f"{T}/trace_marker", os.O_WRONLY) as f:
        assert f.seek(7, os.SEEK_END) == 7


@pytest.mark.parametrize("path", [f"{T}/tracing_on", f"{T}/function_profile_enabled",
                                  f"{T}/events/header_page", "/proc/sys/kernel/ftrace_enabled"])
def test_default_llseek_is_bounded_by_loff_t_alone(client, path):
    """rb_simple_fops, ftrace_profile_fops, ftrace_show_header_fops and
    proc_sys_file_operations (``default_llseek``): as ``generic_file_llseek`` with i_size
    0, but any position up to LLONG_MAX."""
    with client.open(path) as f:
        assert f.seek(2, os.SEEK_END) == 2
        assert lseek_error(f, 0, os.SEEK_DATA).errno == errno.ENXIO
        assert f.seek(-1, os.SEEK_HOLE) == 0
        assert f.seek(TWO_GB) == TWO_GB
        assert f.seek(LLONG_MAX - TWO_GB, os.SEEK_CUR) == LLONG_MAX
        assert lseek_error(f, 1, os.SEEK_CUR).errno == errno.EINVAL
        assert f.seek(0, os.SEEK_CUR) == LLONG_MAX


def test_seq_lseek_does_not_store_the_position_the_reading_stopped_at(client):
    """available_tracers (``seq_lseek``): SEEK_SET and SEEK_CUR only.  3.6 answers a seek
    to ``m->read_pos``, where the seq_file's reading stopped (a pread moved it), without
    storing it in ``f_pos``: the next read starts where the position still is."""
    with client.open(f"{T}/available_tracers") as f:
        assert f.read(4, offset=9) == b"nop\n"
        assert f.seek(13) == 13
        assert f.read(8) == b"function"
        assert f.seek(4, os.SEEK_CUR) == 12  # elsewhere: traverse() to it
        assert f.read() == b"\n"
        for whence in (os.SEEK_END, os.SEEK_DATA, os.SEEK_HOLE):
            assert lseek_error(f, 0, whence).errno == errno.EINVAL


def test_trace_open_only_for_writing_seeks_to_0_whatever_is_asked(client):
    """``tracing_seek()``: without FMODE_READ ``trace`` has no seq_file, and every lseek
    returns 0; with it, ``seq_lseek()``."""
    with client.open(f"{T}/trace", os.O_WRONLY) as f:
        assert [f.seek(5), f.seek(-1), f.seek(3, os.SEEK_END), f.seek(0, os.SEEK_DATA),
                f.seek(9, os.SEEK_CUR)] == [0] * 5
        assert f.write(b"ignored") == 7  # tracing_write_stub(): the position stays 0
        assert f.seek(0, os.SEEK_CUR) == 0
    with client.open(f"{T}/per_cpu/cpu0/trace") as f:
        assert lseek_error(f, 0, os.SEEK_END).errno == errno.EINVAL
        assert f.seek(2) == 2
        assert f.read(6) == b"tracer"


def test_no_llseek_is_espipe_after_sys_lseek_checks_the_whence(client):
    """free_buffer's fops have no ``.llseek`` and trace_pipe's is ``no_llseek``: ESPIPE
    for every whence, where ``sys_lseek()`` has refused one past SEEK_HOLE (or negative:
    an unsigned int) with EINVAL.  free_buffer is not opened nonseekable: pwrite works."""
    with client.open(f"{T}/free_buffer", os.O_WRONLY) as f:
        for whence in (os.SEEK_SET, os.SEEK_CUR, os.SEEK_END, os.SEEK_DATA, os.SEEK_HOLE):
            err = lseek_error(f, 0, whence)
            assert (err.errno_name, err.strerror) == ("ESPIPE", "Illegal seek")
        assert f.write(b"1", offset=0) == 1
    with client.open(f"{T}/trace_pipe", os.O_RDONLY | os.O_NONBLOCK) as f:
        assert lseek_error(f, 0, os.SEEK_CUR).errno == errno.ESPIPE
        assert lseek_error(f, 0, os.SEEK_HOLE + 1).errno == errno.EINVAL
        assert lseek_error(f, 0, -1).errno == errno.EINVAL
