"""The file position of the tracing files through the client library and a real ftraced,
as 3.6 moves and uses it: each write handler's own ``*ppos`` update, seen by ``lseek(fd,
0, SEEK_CUR)`` and by a read on the same O_RDWR descriptor; the reads of
``simple_read_from_buffer()``, which print afresh and copy from the position."""

from __future__ import annotations

import errno
import os

import pytest

from clients.api import Client
from clients.errors import FtraceError
from ftrace.v1 import tracefs_pb2
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)

T = "/sys/kernel/debug/tracing"
DEADLINE = 30
ACCMODE = {os.O_RDONLY: "r", os.O_WRONLY: "w", os.O_RDWR: "rw"}


@pytest.fixture
def client(daemon):
    with Client(daemon.address) as c:
        yield c


def errno_of(syscall: str, call, *args, **kwargs) -> int:
    """The errno of a system call that must fail, the kernel's and the call's own; the
    file stays open."""
    with pytest.raises(FtraceError) as exc:
        call(*args, **kwargs)
    assert exc.value.syscall == syscall and exc.value.from_kernel
    return exc.value.errno


def write_error(f, data: bytes) -> int:
    return errno_of("write", f.write, data)


# Each write handler's *ppos update, a write of ``data`` at a time: the position after one.
WRITE_POSITIONS = [
    # *ppos += cnt: tracing_set_trace_write(), tracing_clock_write(),
    # tracing_trace_options_write(), trace_options_core_write(), tracing_entries_write(),
    # tracing_ctrl_write(), ftrace_profile_write();
    # *fpos += written: tracing_mark_write(); trace_get_user()'s *ppos += read;
    # proc_dointvec()'s *ppos += *lenp.
    ("current_tracer", os.O_RDWR, b"nop\n", 4),
    ("trace_clock", os.O_RDWR, b"global\n", 7),
    ("trace_options", os.O_RDWR, b"sym-offset\n", 11),
    ("options/sym-offset", os.O_RDWR, b"0\n", 2),
    ("buffer_size_kb", os.O_RDWR, b"1408\n", 5),
    ("per_cpu/cpu1/buffer_size_kb", os.O_RDWR, b"1408\n", 5),
    ("tracing_enabled", os.O_RDWR, b"1\n", 2),
    ("function_profile_enabled", os.O_RDWR, b"0\n", 2),
    ("trace_marker", os.O_WRONLY, b"hello\n", 6),
    ("set_ftrace_filter", os.O_RDWR, b"schedule\n", 9),
    ("/proc/sys/kernel/ftrace_enabled", os.O_RDWR, b"1\n", 2),
    # (*ppos)++: rb_simple_write(), whatever the count.
    ("tracing_on", os.O_RDWR, b"0001\n", 1),
    # return cnt, *ppos untouched: tracing_cpumask_write(), tracing_max_lat_write(),
    # ftrace_pid_write(), tracing_write_stub().
    ("tracing_cpumask", os.O_RDWR, b"f\n", 0),
    ("tracing_thresh", os.O_RDWR, b"100\n", 0),
    ("tracing_max_latency", os.O_RDWR, b"0\n", 0),
    ("set_ftrace_pid", os.O_RDWR, b"0\n", 0),
    ("trace", os.O_RDWR, b"ignored", 0),
]


@pytest.mark.parametrize("path, flags, data, moved", WRITE_POSITIONS,
                         ids=[f"{p}-{n}" for p, _, _, n in WRITE_POSITIONS])
def test_each_write_moves_the_position_as_its_3_6_handler_does(client, path, flags, data,
                                                               moved):
    path = path if path.startswith("/") else f"{T}/{path}"
    with client.open(path, flags) as f:
        assert f.write(data) == len(data)
        assert f.seek(0, os.SEEK_CUR) == moved
        assert f.write(data) == len(data)
        assert f.seek(0, os.SEEK_CUR) == 2 * moved


def test_a_read_after_a_write_goes_on_from_where_the_write_left_the_position(client):
    """On an O_RDWR descriptor: a seq_file (trace_clock) reads its text again from the
    position, ``simple_read_from_buffer()`` files (current_tracer, tracing_on) copy from
    it."""
    with client.open(f"{T}/trace_clock", os.O_RDWR) as f:
        assert f.write(b"global\n") == 7
        assert f.read() == b"global] counter\n"  # "local [global] counter\n" from 7
    with client.open(f"{T}/current_tracer", os.O_RDWR) as f:
        assert f.write(b"nop") == 3
        assert f.read() == b"\n"
    with client.open(f"{T}/tracing_on", os.O_RDWR) as f:
        assert f.write(b"0\n") == 2  # (*ppos)++: at 1
        assert f.read() == b"\n"
        assert f.seek(0) == 0 and f.read() == b"0\n"


def test_a_failed_write_leaves_the_position_except_a_name_matching_nothing(client):
    """Handlers return their errno before touching ``*ppos``; ``ftrace_regex_write()``'s
    ``trace_get_user()`` moved it past the token before the token was matched."""
    with client.open(f"{T}/tracing_on", os.O_RDWR) as f:
        assert write_error(f, b"x\n") == errno.EINVAL
        assert f.seek(0, os.SEEK_CUR) == 0
        assert f.write(b"1\n") == 2
        assert write_error(f, b"-\n") == errno.EINVAL
        assert f.seek(0, os.SEEK_CUR) == 1
    for path, data in (("current_tracer", b"nosuch\n"), ("trace_clock", b"bogus\n"),
                       ("options/sym-offset", b"2\n"), ("buffer_size_kb", b"0\n")):
        with client.open(f"{T}/{path}", os.O_RDWR) as f:
            assert write_error(f, data) == errno.EINVAL
            assert f.seek(0, os.SEEK_CUR) == 0
    with client.open(f"{T}/set_ftrace_filter", os.O_RDWR) as f:
        assert write_error(f, b"nosuchfn\n") == errno.EINVAL
        assert f.seek(0, os.SEEK_CUR) == 9
        assert write_error(f, b"x" * 300) == errno.EINVAL  # too long: trace_get_user fails
        assert f.seek(0, os.SEEK_CUR) == 9
    # ftrace_event_write()'s trace_get_user() too; system_enable_write() refuses a value
    # other than 0 or 1 before *ppos += cnt, and 0 or 1 (no event takes it) after.
    with client.open(f"{T}/set_event", os.O_RDWR) as f:
        assert write_error(f, b"ftrace:function\n") == errno.EINVAL
        assert f.seek(0, os.SEEK_CUR) == 16
    with client.open(f"{T}/events/enable", os.O_RDWR) as f:
        assert write_error(f, b"2\n") == errno.EINVAL
        assert f.seek(0, os.SEEK_CUR) == 0
        assert write_error(f, b"0\n") == errno.EINVAL
        assert f.seek(0, os.SEEK_CUR) == 2


def test_free_buffer_s_write_moves_a_position_no_lseek_can_see(client):
    """tracing_free_buffer_write(): ``*ppos += cnt``.  free_buffer has no ``.llseek``
    (ESPIPE); the position shows in what each write answers (``pos:`` in
    /proc/self/fdinfo on a real system)."""
    requests = [tracefs_pb2.FileRequest(open=tracefs_pb2.OpenRequest(
                    path=f"{T}/free_buffer", flags=os.O_WRONLY)),
                tracefs_pb2.FileRequest(write=tracefs_pb2.WriteRequest(data=b"1\n")),
                tracefs_pb2.FileRequest(write=tracefs_pb2.WriteRequest(data=b"abc")),
                tracefs_pb2.FileRequest(write=tracefs_pb2.WriteRequest(data=b"x", offset=0)),
                tracefs_pb2.FileRequest(close=tracefs_pb2.CloseRequest())]
    answers = list(client.connection.tracefs.Session(iter(requests), timeout=DEADLINE))
    assert [a.write.offset for a in answers[1:4]] == [2, 5, 5]  # pwrite: its own position


def read_error(f, size: int) -> int:
    return errno_of("read", f.read, size)


# A simple_read_from_buffer() file, a setting, and a change to it between two reads.
REREAD = [
    ("current_tracer", ("current_tracer", b"function\n"), ("current_tracer", b"nop\n")),  # "op\n"
    ("buffer_size_kb", None, ("buffer_size_kb", b"2816\n")),
    ("buffer_total_size_kb", None, ("buffer_size_kb", b"2816\n")),
    ("tracing_thresh", None, ("tracing_thresh", b"12345\n")),
    ("tracing_max_latency", None, ("tracing_max_latency", b"678\n")),
]


@pytest.mark.parametrize("path, setup, change", REREAD, ids=[p for p, _, _ in REREAD])
def test_a_simple_read_from_buffer_file_prints_afresh_at_every_read(client, path, setup,
                                                                    change):
    """tracing_set_trace_read(), tracing_entries_read(), tracing_total_entries_read(),
    tracing_max_lat_read() print into a buffer at each read(2) and copy from the position:
    a change between two reads shows in the second, from where the first stopped (1 byte
    of "function\\n", a switch to nop: "op\\n")."""
    if setup is not None:
        client.write_file(f"{T}/{setup[0]}", setup[1])
    before = client.read_file(f"{T}/{path}")
    with client.open(f"{T}/{path}") as f:
        assert f.read(1) == before[:1]
        client.write_file(f"{T}/{change[0]}", change[1])
        rest = f.read()
    now = client.read_file(f"{T}/{path}")
    assert now[1:] != before[1:] and rest == now[1:]


def test_a_seq_file_goes_on_with_what_seq_read_printed(client):
    """trace_clock (single_open(), seq_read()): the first read printed the record into
    the seq_file's buffer; the next one copies the rest of it, the clock as it was."""
    with client.open(f"{T}/trace_clock") as f:
        assert f.read(1) == b"["
        client.write_file(f"{T}/trace_clock", b"global\n")
        assert f.read() == b"local] global counter\n"


def test_tracing_cpumask_reads_need_room_for_the_mask_its_newline_and_a_nul(client):
    """tracing_cpumask_read(): ``cpumask_scnprintf()`` into the read's count, EINVAL when
    ``count - len < 2``: with 4 CPUs the mask is "f", and a read of 2 bytes is refused."""
    with client.open(f"{T}/tracing_cpumask") as f:
        assert read_error(f, 1) == errno.EINVAL
        assert read_error(f, 2) == errno.EINVAL
        assert f.seek(0, os.SEEK_CUR) == 0
        assert f.read(3) == b"f\n\0"  # mask_str[NR_CPUS + 1]: NULs after the newline
        assert read_error(f, 2) == errno.EINVAL  # whatever the position


def pwrite_error(f, data: bytes, offset: int) -> int:
    return errno_of("pwrite64", f.write, data, offset=offset)


def pread_error(f, offset: int) -> int:
    return errno_of("pread64", f.read, 10, offset=offset)


# Files whose open calls seq_open() (single_open(), __seq_open_private()), which clears
# FMODE_PWRITE: pwrite is ESPIPE before vfs_write looks at the mode or the write method.
SEQ_OPENED = [
    ("trace_clock", os.O_RDWR), ("trace_clock", os.O_WRONLY), ("trace_clock", os.O_RDONLY),
    ("trace_options", os.O_RDWR), ("set_ftrace_filter", os.O_RDWR),
    ("set_ftrace_notrace", os.O_RDWR), ("set_ftrace_pid", os.O_RDWR), ("trace", os.O_RDWR),
    ("available_tracers", os.O_RDWR), ("available_filter_functions", os.O_RDONLY),
    ("enabled_functions", os.O_RDWR), ("trace_stat/function0", os.O_RDWR),
    ("events/ftrace/function/format", os.O_RDWR), ("available_events", os.O_RDONLY),
    ("set_event", os.O_RDWR), ("set_event", os.O_WRONLY), ("printk_formats", os.O_RDONLY),
    ("/proc/modules", os.O_RDONLY),
    ("/proc/kallsyms", os.O_RDWR),
]


@pytest.mark.parametrize("path, flags", SEQ_OPENED,
                         ids=[f"{p}-{ACCMODE[f]}" for p, f in SEQ_OPENED])
def test_pwrite_is_espipe_on_a_file_whose_open_did_seq_open(client, path, flags):
    """seq_open() clears FMODE_PWRITE; sys_pwrite64() is ESPIPE without it.  pread stays
    (FMODE_PREAD), then vfs_read's own checks."""
    path = path if path.startswith("/") else f"{T}/{path}"
    with client.open(path, flags) as f:
        err = pwrite_error(f, b"0\n", 0)
        assert err == errno.ESPIPE
        if flags == os.O_WRONLY:
            assert pread_error(f, 0) == errno.EBADF  # vfs_read(): no FMODE_READ
        else:
            assert f.read(1, offset=0) == client.read_file(path)[:1]
        assert f.seek(0, os.SEEK_CUR) == 0


# The same fops opened only for writing (their open calls seq_open() only with
# FMODE_READ), and tracing_open_generic() files: pwrite writes at its own position.
# A file whose open leaves FMODE_PWRITE, a pwrite that changes what it (or ``trace``)
# shows, and the position after it: the pwrite's own, so 0, but write-only
# set_ftrace_filter seeks to 1 whatever is asked (ftrace_regex_lseek()).
PWRITABLE = [
    ("set_ftrace_filter", os.O_WRONLY, b"schedule\n", 1, "set_ftrace_filter", b"schedule\n"),
    ("set_ftrace_pid", os.O_WRONLY, b"0\n", 0, "set_ftrace_pid", b"swapper tasks\n"),
    ("trace", os.O_WRONLY, b"ignored", 0, None, None),  # tracing_write_stub()
    ("tracing_on", os.O_RDWR, b"0\n", 0, "tracing_on", b"0\n"),
    ("current_tracer", os.O_RDWR, b"function\n", 0, "current_tracer", b"function\n"),
    ("options/sym-offset", os.O_RDWR, b"1\n", 0, "options/sym-offset", b"1\n"),
    ("trace_marker", os.O_WRONLY, b"hello\n", 0, "trace", b"tracing_mark_write: hello\n"),
    ("/proc/sys/kernel/ftrace_enabled", os.O_RDWR, b"0\n", 0,
     "/proc/sys/kernel/ftrace_enabled", b"0\n"),
]


@pytest.mark.parametrize("path, flags, data, position, shows, shown", PWRITABLE,
                         ids=[f"{row[0]}-{ACCMODE[row[1]]}" for row in PWRITABLE])
def test_pwrite_writes_where_no_seq_open_cleared_fmode_pwrite(client, path, flags, data,
                                                              position, shows, shown):
    def absolute(name: str) -> str:
        return name if name.startswith("/") else f"{T}/{name}"

    with client.open(absolute(path), flags) as f:
        assert f.write(data, offset=0) == len(data)
        assert f.seek(0, os.SEEK_CUR) == position
    if shows is not None:
        assert shown in client.read_file(absolute(shows))


def test_nonseekable_open_clears_fmode_pread_and_fmode_pwrite(client):
    """trace_pipe and trace_pipe_raw: pread and pwrite are ESPIPE before vfs_read's and
    vfs_write's checks (EBADF, EINVAL: no write method)."""
    for path in (f"{T}/trace_pipe", f"{T}/per_cpu/cpu0/trace_pipe_raw"):
        with client.open(path, os.O_RDONLY | os.O_NONBLOCK) as f:
            assert pread_error(f, 0) == errno.ESPIPE
            assert pwrite_error(f, b"x", 0) == errno.ESPIPE


def test_a_negative_offset_is_einval_before_espipe(client):
    """sys_pread64() / sys_pwrite64(): ``pos < 0`` is EINVAL before the file's mode is
    looked at."""
    negative = 1 << 63  # as an loff_t
    with client.open(f"{T}/trace_pipe", os.O_RDONLY | os.O_NONBLOCK) as f:
        assert pread_error(f, negative) == errno.EINVAL
        assert pwrite_error(f, b"x", negative) == errno.EINVAL
    with client.open(f"{T}/trace_clock", os.O_RDWR) as f:
        assert pwrite_error(f, b"local\n", negative) == errno.EINVAL


LLONG_MAX = (1 << 63) - 1


def test_rw_verify_area_refuses_a_count_that_would_carry_the_position_past_loff_t(client):
    """vfs_read()/vfs_write()'s rw_verify_area(): ``pos + count`` past LLONG_MAX is
    EINVAL before the handler; tracing_on's default_llseek() goes up to LLONG_MAX."""
    with client.open(f"{T}/tracing_on", os.O_RDWR) as f:
        assert f.seek(LLONG_MAX) == LLONG_MAX
        assert write_error(f, b"0") == errno.EINVAL
        assert read_error(f, 1) == errno.EINVAL
        assert client.read_file(f"{T}/tracing_on") == b"1\n"  # the handler never ran
        assert f.seek(LLONG_MAX - 2) == LLONG_MAX - 2
        assert f.write(b"0\n") == 2  # up to LLONG_MAX: (*ppos)++
        assert f.seek(0, os.SEEK_CUR) == LLONG_MAX - 1
        assert f.read(1) == b""  # simple_read_from_buffer() past the text
        assert pread_error(f, LLONG_MAX) == errno.EINVAL
    assert client.read_file(f"{T}/tracing_on") == b"0\n"


def test_a_refused_profiler_enable_leaves_a_position_lseek_reads_as_its_errno(spawn):
    """ftrace_profile_write() puts register_ftrace_function()'s -ENODEV (ftrace killed by
    the report's WARN) in cnt, and ``*ppos += cnt``: the position is -19, which
    lseek(fd, 0, SEEK_CUR) returns and user space reads as ENODEV; rw_verify_area()
    refuses reads and writes there, and a pread elsewhere answers with the position
    still at -19 (an loff_t: the answer's offset is signed)."""
    daemon = spawn(["--variant", "buggy", "--core-functions", "2000"])
    with Client(daemon.address) as client:
        client.load("uinput")
        client.write_file(f"{T}/set_ftrace_filter", "uinput_release\n")
        client.write_file(f"{T}/current_tracer", "function\n")
        client.unload("uinput")
        client.load("uinput")
        client.write_file(f"{T}/current_tracer", "nop\n")  # the WARN: ftrace_kill()
        with client.open(f"{T}/function_profile_enabled", os.O_RDWR) as f:
            assert write_error(f, b"1\n") == errno.ENODEV
            with pytest.raises(FtraceError) as exc:
                f.seek(0, os.SEEK_CUR)
            assert (exc.value.syscall, exc.value.errno) == ("lseek", errno.ENODEV)
            assert write_error(f, b"0\n") == errno.EINVAL
            assert read_error(f, 10) == errno.EINVAL
            assert f.read(10, offset=0) == b"0\n"  # a pread leaves the position at -19
            assert f.seek(0) == 0 and f.read() == b"0\n"
