"""The option and bookkeeping files of ``kernel/trace/trace.c`` (3.6): ``trace_options``
(``tracing_iter_fops``), ``options/`` (``create_trace_options_dir()`` and the current
tracer's ``create_trace_option_files()``), ``tracing_thresh`` and ``tracing_max_latency``
(``tracing_max_lat_fops``), ``saved_cmdlines``, ``README`` and ``free_buffer``.
"""

from __future__ import annotations

import errno
from collections.abc import ItemsView
from typing import TYPE_CHECKING

from kernel_daemon.errno import KernelError
from kernel_daemon.strings import ULONG_MAX, kstrtoul_from_user
from kernel_daemon.trace.trace_options import (TRACE_ITER_STOP_ON_FREE, TRACE_OPTIONS,
                                               TracerOpt, trace_options_core_read,
                                               trace_options_core_write, trace_options_read,
                                               trace_options_write,
                                               tracing_trace_options_show,
                                               tracing_trace_options_write)
from kernel_daemon.tracefs.files import (FileOps, OpenFile, SimpleFile, SimpleOpenFile,
                                         ppos_add_count, ppos_untouched)
from kernel_daemon.tracefs.llseek import generic_file_llseek
from kernel_daemon.tracefs.trace_files import SingleFile
from kernel_daemon.tracefs.vfs import Directory
from kernel_daemon.uaccess import UserBuffer

if TYPE_CHECKING:
    from kernel_daemon.kernel import Kernel
    from kernel_daemon.trace.tracers import Tracer

# readme_msg, as the 3.4/3.5-era trace.c has it (see the commit message for the source).
README_MSG = (
    "tracing mini-HOWTO:\n\n"
    "# mount -t debugfs nodev /sys/kernel/debug\n\n"
    "# cat /sys/kernel/debug/tracing/available_tracers\n"
    "wakeup wakeup_rt preemptirqsoff preemptoff irqsoff function nop\n\n"
    "# cat /sys/kernel/debug/tracing/current_tracer\n"
    "nop\n"
    "# echo wakeup > /sys/kernel/debug/tracing/current_tracer\n"
    "# cat /sys/kernel/debug/tracing/current_tracer\n"
    "wakeup\n"
    "# cat /sys/kernel/debug/tracing/trace_options\n"
    "noprint-parent nosym-offset nosym-addr noverbose\n"
    "# echo print-parent > /sys/kernel/debug/tracing/trace_options\n"
    "# echo 1 > /sys/kernel/debug/tracing/tracing_on\n"
    "# cat /sys/kernel/debug/tracing/trace > /tmp/trace.txt\n"
    "# echo 0 > /sys/kernel/debug/tracing/tracing_on\n"
)


def trace_options_file() -> SingleFile:
    """``trace_options``: the flags, one per line; a write sets or clears one."""
    return SingleFile(lambda k: tracing_trace_options_show(k.tracing),
                      lambda k, data: tracing_trace_options_write(k.tracing, data),
                      ppos_update=ppos_add_count)


def trace_options_core_file(index: int) -> SimpleFile:
    """``options/<trace_options[index]>``: ``"0\\n"`` or ``"1\\n"``; writes 0 or 1."""
    return SimpleFile(lambda k: trace_options_core_read(k.tracing, index),
                      lambda k, data: trace_options_core_write(k.tracing, index, data),
                      ppos_update=ppos_add_count, llseek=generic_file_llseek)


class TracerOptionFile(FileOps):
    """``trace_options_fops``: one option of one tracer, created when
    ``tracing_set_tracer()`` switches to the tracer and removed when it switches away;
    opening it after that (a path resolved before) finds no file, as a removed dentry
    does.  An open file keeps working on its tracer's flags (see ``trace_options_write``)."""

    mode = 0o644

    def __init__(self, tracer: Tracer, opt: TracerOpt) -> None:
        self.tracer, self.opt = tracer, opt

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        if kernel.tracing.topts is not self.tracer:
            raise KernelError(errno.ENOENT)
        tracer_flags = self.tracer.flags
        return SimpleOpenFile(
            path, flags, lambda: trace_options_read(tracer_flags, self.opt),
            lambda data: trace_options_write(kernel.tracing, tracer_flags, self.opt, data),
            ppos_add_count, generic_file_llseek)


class OptionsDirectory(Directory):
    """``options/``: a file per core flag, made at boot (``create_trace_options_dir()``),
    and the option files of ``topts``, the tracer ``tracing_set_tracer()`` last switched
    to (``destroy_trace_option_files()`` / ``create_trace_option_files()``): none at
    boot, whose nop is set without a switch.  Looked up at each access."""

    changes = True  # the tracer's files come and go with the tracer

    def __init__(self, kernel: Kernel) -> None:
        super().__init__((name, trace_options_core_file(i))
                         for i, name in enumerate(TRACE_OPTIONS))
        self.kernel = kernel
        self._tracer_files: dict[int, dict[str, FileOps]] = {}

    def tracer_files(self) -> dict[str, FileOps]:
        tracer = self.kernel.tracing.topts
        if tracer is None:
            return {}
        files = self._tracer_files.get(id(tracer))
        if files is None:
            files = self._tracer_files[id(tracer)] = {
                opt.name: TracerOptionFile(tracer, opt) for opt in tracer.flags.opts}
        return files

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name) or name in self.tracer_files()

    def __getitem__(self, name: str) -> Directory | FileOps:
        if super().__contains__(name):
            return super().__getitem__(name)
        return self.tracer_files()[name]

    def get(self, name: str,
            default: Directory | FileOps | None = None) -> Directory | FileOps | None:
        # An open with O_CREAT looks its last name up with get(): dict's own would miss
        # the tracer's files, and `echo 1 > options/func_stack_trace` failed EACCES.
        return self[name] if name in self else default

    def items(self) -> ItemsView[str, Directory | FileOps]:
        return {**self, **self.tracer_files()}.items()


def tracing_max_lat_read(nsecs: int) -> str:
    """``tracing_max_lat_read()``: ``"%ld\\n"`` of the value in microseconds, -1 as -1."""
    return "-1\n" if nsecs == ULONG_MAX else f"{nsecs // 1000}\n"


def tracing_max_lat_file(attr: str) -> SimpleFile:
    """``tracing_max_lat_fops`` over ``Tracing.<attr>`` (ns): writes are microseconds,
    ``kstrtoul_from_user()``, stored times 1000 in an unsigned long."""

    def store(kernel: Kernel, data: bytes) -> None:
        setattr(kernel.tracing, attr, kstrtoul_from_user(data) * 1000 & ULONG_MAX)

    return SimpleFile(lambda k: tracing_max_lat_read(getattr(k.tracing, attr)), store,
                      ppos_update=ppos_untouched, llseek=generic_file_llseek)


class FreeBufferOpenFile(OpenFile):
    """An open ``free_buffer``: writes are taken and ignored, the release frees."""

    def __init__(self, kernel: Kernel, path: str, flags: int) -> None:
        super().__init__(path, flags)
        self.kernel = kernel

    def write(self, data: UserBuffer) -> int:
        # tracing_free_buffer_write(): only there so that "echo > free_buffer" succeeds.
        self.pos += len(data)
        return len(data)

    def release(self) -> None:
        """``tracing_free_buffer_release()``: with ``disable_on_free`` tracing goes off,
        then ``tracing_resize_ring_buffer(0)`` shrinks the buffer to its two-page minimum
        (``buffer_size_kb`` then reads 0).  Every release does it, also of a read open."""
        if self.kernel.tracing.trace_flags & TRACE_ITER_STOP_ON_FREE:
            self.kernel.tracing.tracing_off()
        self.kernel.tracing.tracing_resize_ring_buffer(0)


class FreeBufferFile(FileOps):
    """``tracing_free_buffer_fops``: no open (so no ENODEV check), no read (EINVAL) and no
    ``.llseek`` (``vfs_llseek()`` calls ``no_llseek()``: ESPIPE, though pwrite works).
    Created 0644 by the 3.4/3.5-era trace.c read; later kernels make it 0200."""

    mode = 0o644

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        return FreeBufferOpenFile(kernel, path, flags)
