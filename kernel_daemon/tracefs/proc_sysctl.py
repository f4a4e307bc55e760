"""The ``/proc/sys`` files: ``proc_sys_file_operations`` of fs/proc/proc_sysctl.c (3.6).

``proc_sys_write()`` goes through ``proc_sys_call_handler()``, which calls the table's
``proc_handler`` with ``*lenp`` set to the count and returns what the handler left in
``*lenp``: a handler that consumed only part of a write (``proc_dointvec`` stops after
its number) makes a short write, and the writer writes the rest again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kernel_daemon.tracefs.files import FileOps, OpenFile, SeqText

if TYPE_CHECKING:
    from kernel_daemon.kernel import Kernel

#: A ``proc_handler``'s read: the file's text.
ProcRead = Callable[["Kernel"], str]
#: A ``proc_handler``'s write: the bytes it consumed (``*lenp``), or a KernelError.
ProcWrite = Callable[["Kernel", bytes], int]


class ProcSysOpenFile(SeqText):
    """An open ``/proc/sys`` file."""

    def __init__(self, path: str, flags: int, read: Callable[[], str],
                 write: Callable[[bytes], int]) -> None:
        super().__init__(path, flags, read)
        self.handler_write = write

    def write(self, data: bytes) -> int:
        """``proc_sys_write()``: the handler's ``*lenp``, not ``len(data)``."""
        return self.handler_write(data)


class ProcSysFile(FileOps):
    """A ``ctl_table`` entry of mode 0644 and its ``proc_handler``."""

    mode = 0o644

    def __init__(self, read: ProcRead, write: ProcWrite) -> None:
        self.read, self.write = read, write

    def open(self, kernel: Kernel, path: str, flags: int) -> OpenFile:
        return ProcSysOpenFile(path, flags, lambda: self.read(kernel),
                               lambda data: self.write(kernel, data))
