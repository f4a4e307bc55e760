"""In-process helpers for the core tests: a kernel and the shell-level steps of the report.

Each helper does what the kernel does for the shell command it is named after,
including the entry frames (a write system call, a deferred ``__fput``), so a WARN's
call trace is the one the real path prints.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.core import Ftrace
from kernel_daemon.ftrace.dispatch import execute_function, on_cpu
from kernel_daemon.ftrace.listing import FtraceListIterator, Listing
from kernel_daemon.ftrace.regex_file import (ftrace_regex_open, ftrace_regex_release,
                                             ftrace_regex_write)
from kernel_daemon.ftrace.records import ftrace_rec_count, FTRACE_FL_ENABLED
from kernel_daemon.kernel import BootOptions, Kernel
from kernel_daemon.module.catalog import load_catalog
from kernel_daemon.task import Task, running_as
from kernel_daemon.tracefs.files import (DEFERRED_FPUT, SYSCALL_WRITE, file_read,
                                         file_release, file_write)
from kernel_daemon.tracefs.seq_file import PAGE_SIZE, SeqFile, SeqOperations, seq_read
from kernel_daemon.tracefs.trace_files import NR_CPUS
from kernel_daemon.tracefs.vfs import Vfs
from kernel_daemon.unwind import kernel_frames

BASH = Task(20903, "bash")
T = "/sys/kernel/debug/tracing"


@contextlib.contextmanager
def booted(**options: object) -> Iterator[Kernel]:
    options.setdefault("core_functions", 4096)
    kernel = Kernel(BootOptions(**options))  # type: ignore[arg-type]
    try:
        yield kernel
    finally:
        kernel.shutdown()


def echo(kernel: Kernel, text: str, path: str, append: bool = False) -> list[int]:
    """``echo TEXT > path`` on set_ftrace_filter / set_ftrace_notrace / current_tracer.

    Returns the errno of each failed write (a shell reports the first).
    """
    data = (text + "\n").encode()
    errors: list[int] = []
    with running_as(BASH):
        if path == "current_tracer":
            with kernel_frames(*SYSCALL_WRITE):
                kernel.tracing.tracing_set_trace_write(data)
            return errors
        ft = kernel.ftrace
        iter = ftrace_regex_open(ft, ft.global_ops, path == "set_ftrace_filter", not append)
        ppos = SimpleNamespace(pos=0)
        while data:
            with kernel_frames(*SYSCALL_WRITE):
                try:
                    data = data[ftrace_regex_write(ft, iter, data, ppos):]
                except Exception as exc:  # a failed write(2): bash reports, the fd stays open
                    errors.append(exc.errno)  # type: ignore[attr-defined]
                    break
        with kernel_frames(*DEFERRED_FPUT):
            ftrace_regex_release(ft, iter)
    return errors


def cat(vfs: Vfs, path: str, flags: int = os.O_RDONLY) -> str:
    """``cat PATH`` through the file tree: read to EOF (one read with O_NONBLOCK)."""
    return cat_bytes(vfs, path, flags).decode()


def cat_bytes(vfs: Vfs, path: str, flags: int = os.O_RDONLY) -> bytes:
    """:func:`cat`'s bytes, for a file that is not text (``trace`` with ``bin``)."""
    f = vfs.open(path, flags)
    try:
        out = []
        while chunk := file_read(f, 1 << 20):
            out.append(chunk)
            if flags & os.O_NONBLOCK:
                break
        return b"".join(out)
    finally:
        file_release(f)


def mask_str(text: str) -> str:
    """What a whole read of tracing_cpumask returns for the mask ``text`` (with its
    newline): all of ``tracing_cpumask_read()``'s ``mask_str[NR_CPUS + 1]``, NULs after."""
    return text.ljust(NR_CPUS + 1, "\0")


def write(vfs: Vfs, path: str, data: bytes, flags: int = os.O_WRONLY | os.O_TRUNC) -> int:
    """One write(2) of ``data`` to PATH, opened with ``flags``; returns what it took."""
    f = vfs.open(path, flags)
    try:
        return file_write(f, data)
    finally:
        file_release(f)


def write_errno(vfs: Vfs, path: str, data: bytes,
                flags: int = os.O_WRONLY | os.O_TRUNC) -> int:
    """The errno of one write(2) of ``data`` to PATH that must fail."""
    with pytest.raises(KernelError) as exc:
        write(vfs, path, data, flags)
    return exc.value.errno


#: The ``format:`` head and ``struct trace_entry``'s fields, as every event's format file
#: of 3.6 on x86_64 starts (``trace_define_common_fields()``).
COMMON_FORMAT = (
    "format:\n"
    "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
    "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
    "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
    "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n"
    "\tfield:int common_padding;\toffset:8;\tsize:4;\tsigned:1;\n"
    "\n")


def modprobe(kernel: Kernel, name: str):
    with running_as(Task(20950, "modprobe")):
        return kernel.modules.load_module(load_catalog()[name])


def rmmod(kernel: Kernel, name: str):
    with running_as(Task(20951, "rmmod")):
        return kernel.modules.delete_module(name)


def invoke(kernel: Kernel, name: str, parent: str = "__fput", count: int = 1, cpu: int = 0,
           task: Task = BASH) -> bool:
    """``count`` calls of ``name`` from ``parent`` by ``task`` on ``cpu``; True when the
    call site was patched. The tracer is handed the return address into ``parent``, as
    ``Tracer.Invoke`` hands it for a parent named."""
    ip = kernel.kallsyms.lookup_name(name)[0].addr
    parent_ip = (kernel.kallsyms.return_address(parent, name) or 0) if parent else 0
    with running_as(task), on_cpu(cpu):
        return execute_function(kernel.ftrace, ip, parent_ip, count)


def record(ft: Ftrace, name: str, module: str | None = None) -> tuple[int, bool]:
    """(count, patched) of the live record of ``name``."""
    for pg in ft.pages.groups:
        if module is not None and pg.module_name != module:
            continue
        hits = (pg.names == name).nonzero()[0]
        if len(hits):
            flags = int(pg.flags[hits[0]])
            return int(ftrace_rec_count(pg.flags[hits[0]])), bool(flags & FTRACE_FL_ENABLED)
    raise LookupError(name)


def dmesg(kernel: Kernel) -> str:
    """The kernel log, timestamps stripped."""
    return re.sub(r"^\[[ \d.]+\] ", "", kernel.printk.read(), flags=re.M)


def warnings(kernel: Kernel) -> list[str]:
    """The WARN blocks in dmesg, timestamps stripped."""
    return re.findall(r"------------\[ cut here \]------------\n.*?---\[ end trace [0-9a-f]{16} \]---",
                      dmesg(kernel), flags=re.S)


def reproducer_until_reload(kernel: Kernel) -> tuple[int, int]:
    """Steps 1-5 of the report (up to the reload); returns uinput's two load addresses."""
    first = modprobe(kernel, "uinput").module_core
    assert echo(kernel, "uinput_release", "set_ftrace_filter") == []
    echo(kernel, "function", "current_tracer")
    assert record(kernel.ftrace, "uinput_release") == (1, True)
    rmmod(kernel, "uinput")
    second = modprobe(kernel, "uinput").module_core
    return first, second


def seq_read_all(op: SeqOperations) -> str:
    """A seq_file's whole text as ``cat`` of a fresh open reads it: ``seq_read()`` to the
    end."""
    m = SeqFile(op)
    out: list[bytes] = []
    while chunk := seq_read(m, PAGE_SIZE, m.read_pos):
        out.append(chunk)
    return b"".join(out).decode()


def t_show_all(ft: Ftrace, which: Listing) -> str:
    """The whole listing as ``cat`` of a fresh open reads it."""
    return seq_read_all(FtraceListIterator(ft, which).show_ftrace_seq_ops())
