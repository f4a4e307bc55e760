"""What a server's CPU does outside the GIL, from Linux ``perf``: the part of
``bench.profile`` that py-spy cannot see.

py-spy ``--gil`` splits only the time a thread holds the GIL; the rest, most of the gap
between ftraced and the echo server, is one row. ``perf record --call-graph dwarf``
samples the server's threads on a CPU, user and kernel space alike, with their native
stacks, and each sample goes to one row:

- in user space, by the shared object it is in: the interpreter (libpython), NumPy,
  gRPC's C core (cygrpc), protobuf's upb, libc, anything else;
- in the kernel, by what the thread was doing, which the nearest user-space caller says
  better than the kernel's leaf (a futex is a GIL hand-off or a Python lock wait
  according to who called it): a GIL hand-off (below ``take_gil``, ``drop_gil`` or a
  ``PyEval_*`` function), a Python lock wait (below ``PyThread_acquire_lock_timed`` or
  ``PyThread_release_lock``: ``threading``, ``queue``), socket sends and receives, epoll,
  page faults and the ``mmap``/shm file calls, anything else.

Every CPU (``--all-cpus``), and ``perf script --pid`` keeps the server's samples: events
on the server's threads alone (``-p``) saw 78% of the CPU ``/proc`` counts for ftraced
and the echo server (every CPU's: 92-95%), and not evenly: they put 48-51% of
ftraced's samples in the kernel where ``/proc`` counted 38-40% system time, and every
CPU's 35-42% where it counted 30-41%. Dwarf unwinding, not frame pointers: libpython
and libc are built without them, and frame-pointer chains lose the caller of a futex
(``take_gil`` showed in 27 of 9,933 samples of one run).

Events start disabled and are switched on and off over ``--control`` (acknowledged), so
the window is the caller's, not perf's start-up. perf shares py-spy's window rather than
taking one of its own: its part of the work there is small (its process took 0.01 s of
CPU in a 5 s window where it sampled 4.4 s of a process's), so one window gives both
tables the same CPU to split; the ``perf script`` that reads its data runs after it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

#: Nanoseconds of CPU per sample (500 a second): a few thousand samples a server and
#: scenario. A fixed period rather than a frequency, so that a sample is the same CPU time
#: on every CPU and thread.
PERIOD_NS = 2_000_000
#: Bytes of user stack copied per sample: the callers of a futex are near its top.
STACK_BYTES = 8192
KERNEL_DSO = "[kernel.kallsyms]"

INTERPRETER = "libpython: the interpreter (eval loop, objects, allocator)"
NUMPY = "NumPy"
CYGRPC = "cygrpc: gRPC C core, its Cython layer"
UPB = "protobuf upb (_message)"
LIBC = "libc (malloc, memcpy, futex wrappers)"
OTHER_USER = "other user space (libstdc++, vdso, other modules)"
GIL = "kernel: GIL hand-offs (futex, switches under take_gil/drop_gil)"
LOCKS = "kernel: Python lock waits (threading, queue)"
SOCKETS = "kernel: socket sendmsg/recvmsg"
EPOLL = "kernel: epoll"
MEMORY = "kernel: page faults, mmap and shm-file calls"
OTHER_KERNEL = "kernel: other (gRPC core's futexes, interrupts, ...)"
ROWS = (INTERPRETER, NUMPY, CYGRPC, UPB, LIBC, OTHER_USER,
        GIL, LOCKS, SOCKETS, EPOLL, MEMORY, OTHER_KERNEL)


def _libc(dso: str) -> bool:
    """Whether a shared object is glibc's libc (``libc.so.6``, ``libc-2.36.so``)."""
    return re.search(r"/libc[.-]", dso) is not None


# (row, test on a shared object's path), first match wins.
_USER_ROWS = (
    (INTERPRETER, lambda dso: "libpython" in dso or os.path.basename(dso).startswith("python3")),
    (NUMPY, lambda dso: "/numpy" in dso),
    (CYGRPC, lambda dso: "cygrpc" in dso),
    (UPB, lambda dso: "/protobuf/" in dso or "/_upb/" in dso),
    (LIBC, _libc),
)
_LOCK_CALLERS = frozenset({"PyThread_acquire_lock_timed", "PyThread_acquire_lock",
                           "PyThread_release_lock", "acquire_timed"})
_SOCKET_CALLS = frozenset({"sendmsg", "recvmsg", "sendto", "recvfrom", "sendmmsg",
                           "recvmmsg"})
_EPOLL_CALLS = frozenset({"epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl"})
_MEMORY_CALLS = frozenset({"openat", "close", "ftruncate", "fallocate", "unlink",
                           "newfstatat", "fstat", "mmap", "munmap", "mremap", "madvise",
                           "brk"})
_SYSCALL = re.compile(r"__(?:x64|ia32|do|se)_sys_(\w+)$")
_FRAME = re.compile(r"\s*[0-9a-f]+ (.*) \((.*)\)$")

Frame = tuple[str, str]  # (symbol, shared object), as perf script prints them


def samples(script: str) -> Iterator[list[Frame]]:
    """The call chains (leaf first) of ``perf script -F tid,ip,sym,dso`` output, whose
    samples are a header line and a line a frame, a blank line between two samples."""
    for block in script.split("\n\n"):
        frames = [(match[1], match[2]) for match in map(_FRAME.match, block.splitlines())
                  if match]
        if frames:
            yield frames


def _syscall(kernel: list[str], user: list[Frame]) -> str | None:
    """The system call a kernel sample is in: from the kernel's ``__x64_sys_*`` frame, or,
    on the way back to user space (rescheduled at its exit), from libc's wrapper."""
    for symbol in kernel:
        if match := _SYSCALL.match(symbol):
            return match[1]
    if user and _libc(user[0][1]):
        name = user[0][0].split("@", 1)[0].lstrip("_")
        return name.removeprefix("libc_").removesuffix("_syscall")
    return None


def _caller(user: list[Frame]) -> str:
    """The nearest user-space function of a kernel sample outside libc (whose futex and
    syscall wrappers say nothing of why)."""
    return next((symbol for symbol, dso in user if not _libc(dso)), "")


def row_of(frames: list[Frame]) -> str:
    """The row one sample's CPU goes to, from its call chain (leaf first)."""
    symbol, dso = frames[0]
    if dso != KERNEL_DSO:
        return next((row for row, matches in _USER_ROWS if matches(dso)), OTHER_USER)
    kernel = [symbol for symbol, dso in frames if dso == KERNEL_DSO]
    user = [(symbol, dso) for symbol, dso in frames if dso != KERNEL_DSO]
    if any("page_fault" in symbol for symbol in kernel):
        return MEMORY
    caller = _caller(user)
    if caller in ("take_gil", "drop_gil") or caller.startswith(("PyEval_", "PyGILState_")):
        return GIL
    if caller in _LOCK_CALLERS:
        return LOCKS
    call = _syscall(kernel, user)
    if call in _SOCKET_CALLS:
        return SOCKETS
    if call in _EPOLL_CALLS:
        return EPOLL
    if call in _MEMORY_CALLS:
        return MEMORY
    return OTHER_KERNEL


def attribute(script: str) -> Counter[str]:
    """Samples per row of ``perf script`` output."""
    return Counter(row_of(frames) for frames in samples(script))


def unavailable(directory: str) -> str | None:
    """Why perf cannot profile a server here, or None: not installed, or not allowed to
    sample every CPU and the kernel's symbols (root, or ``kernel.perf_event_paranoid``
    and ``kernel.kptr_restrict`` at 0), which a short recording of a process making
    system calls finds out."""
    perf = shutil.which("perf")
    if perf is None:
        return "perf is not installed (Linux perf: the linux-perf package)"
    usage = subprocess.run([perf, "record", "-h"], capture_output=True, text=True,
                           timeout=60)
    if "--control" not in usage.stdout + usage.stderr:
        # PerfRecord switches its events on and off over it (perf 5.9 and later).
        return "perf record has no --control (perf 5.9 or later is needed)"
    data = os.path.join(directory, "perf-probe.data")
    busy = "import os\nfor _ in range(300000): os.getppid()"
    try:
        done = subprocess.run([perf, "record", "-q", "--all-cpus", "-e", "cpu-clock",
                               "-c", str(PERIOD_NS), "-o", data, "--", sys.executable,
                               "-c", busy],
                              capture_output=True, text=True, timeout=60)
        if done.returncode:
            # perf's first lines say what is wrong; the rest explain perf_event_paranoid.
            said = " ".join(line.strip() for line in done.stderr.splitlines()[:3]
                            if line.strip())
            return f"perf record failed ({done.returncode}): {said}; run as root"
        script = subprocess.run([perf, "script", "-F", "tid,ip,sym,dso", "-i", data],
                                capture_output=True, text=True, timeout=60).stdout
    finally:
        if os.path.exists(data):
            os.unlink(data)
    if KERNEL_DSO not in script:
        return "perf records no kernel functions (kernel.perf_event_paranoid or " \
               "kernel.kptr_restrict): run as root"
    return None


class PerfRecord:
    """``perf record`` on every CPU, its events on from ``start()`` to ``stop()``, and
    the samples of one process, ``pid``, among them."""

    def __init__(self, pid: int, directory: str) -> None:
        self.pid = pid
        self.path = os.path.join(directory, f"perf-{pid}.data")
        self.process: subprocess.Popen[bytes] | None = None
        self.control = self.ack = -1  # our ends of perf's --control pipes

    def start(self) -> None:
        """Start perf with its events off, then switch them on; returns once perf has
        acknowledged, so that the window starts with the samples."""
        control_read, self.control = os.pipe()
        self.ack, ack_write = os.pipe()
        try:
            self.process = subprocess.Popen(
                ["perf", "record", "-D", "-1", "--control", f"fd:{control_read},{ack_write}",
                 "--all-cpus", "-e", "cpu-clock", "-c", str(PERIOD_NS),
                 "--call-graph", f"dwarf,{STACK_BYTES}", "-o", self.path],
                pass_fds=(control_read, ack_write),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except BaseException:
            os.close(self.control)
            os.close(self.ack)
            raise
        finally:
            # Ours closed, perf's exit closes the ack pipe for good: a read sees its end.
            os.close(control_read)
            os.close(ack_write)
        try:
            self._command(b"enable")
        except BaseException:
            self.abandon()
            raise

    def _command(self, command: bytes) -> None:
        """Send perf a control command and wait for its ``ack``; perf gone instead (end
        of file, or a broken pipe) raises with what perf said."""
        try:
            os.write(self.control, command + b"\n")
            acknowledged = os.read(self.ack, 16).startswith(b"ack")
        except BrokenPipeError:
            acknowledged = False
        if not acknowledged:
            raise RuntimeError(f"perf record on pid {self.pid} stopped:\n{self._end()}")

    def _end(self) -> str:
        """SIGINT: perf writes its data and exits; its output (once)."""
        if self.process is None:
            return ""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        output = self.process.communicate(timeout=120)[0].decode(errors="replace")
        self.process = None
        os.close(self.control)
        os.close(self.ack)
        return output

    def abandon(self) -> None:
        self._end()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def stop(self) -> Counter[str]:
        """Switch the events off, and the window's samples per row."""
        self._command(b"disable")
        output = self._end()
        if not os.path.exists(self.path):
            raise RuntimeError(f"perf record on pid {self.pid} wrote nothing:\n{output}")
        try:
            # --no-inline: looking up every frame's inlined callers (addr2line) made perf
            # script 4.5 times slower, and the rows need only the functions.
            script = subprocess.run(["perf", "script", "--no-inline", "--pid", str(self.pid),
                                     "-F", "tid,ip,sym,dso", "-i", self.path],
                                    capture_output=True, text=True, check=True,
                                    timeout=600).stdout
        finally:
            os.unlink(self.path)
        return attribute(script)
