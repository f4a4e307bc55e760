"""The file tree the daemon serves: the tracing directory (at both of its mount points)
and the few ``/proc`` files beside it.

Path lookup is the model's ``path_lookupat``: ``.`` and ``..`` resolve as in any
path (``..`` of ``/`` is ``/``), so no path leaves the tree; a name that is not in it
is ENOENT, a file used as a directory ENOTDIR.
"""

from __future__ import annotations

import errno
import os
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kernel_daemon.errno import KernelError
from kernel_daemon.tracefs.files import FileOps, OpenFile, SYSCALL_OPEN
from kernel_daemon.unwind import kernel_function_named

if TYPE_CHECKING:
    from kernel_daemon.kernel import Kernel

TRACING_MOUNTS = ("/sys/kernel/debug/tracing", "/sys/kernel/tracing")
MAX_PATH = 4096  # PATH_MAX
DCACHE_MAX = 4096


@dataclass(frozen=True)
class DirEntry:
    name: str
    is_dir: bool
    mode: int


class Directory(dict[str, "Directory | FileOps"]):
    """A directory: its children by name."""

    mode = 0o755


def build_tree(tracing: Directory, proc: Directory) -> Directory:
    root = Directory()
    sys_kernel = root.setdefault("sys", Directory()).setdefault("kernel", Directory())
    sys_kernel.setdefault("debug", Directory())["tracing"] = tracing
    sys_kernel["tracing"] = tracing
    root["proc"] = proc
    return root


def normalize(path: str) -> str:
    if not path:
        raise KernelError(errno.ENOENT)
    if len(path) >= MAX_PATH:
        raise KernelError(errno.ENAMETOOLONG)
    if "\0" in path:
        raise KernelError(errno.EINVAL)
    if not path.startswith("/"):
        path = "/" + path
    return posixpath.normpath(path).replace("//", "/")


class Vfs:
    """Lookups and opens over one booted kernel's tree."""

    def __init__(self, kernel: Kernel, root: Directory) -> None:
        self.kernel = kernel
        self.root = root
        # The tree does not change after boot, so a resolved path stays resolved (the
        # dcache); failed lookups are not remembered, so bad paths cannot fill it.
        self._dcache: dict[str, tuple[str, Directory | FileOps]] = {}

    def lookup(self, path: str) -> tuple[str, Directory | FileOps]:
        cached = self._dcache.get(path)
        if cached is not None:
            return cached
        resolved = self._walk(path)
        if len(self._dcache) < DCACHE_MAX:
            self._dcache[path] = resolved
        return resolved

    def _walk(self, path: str) -> tuple[str, Directory | FileOps]:
        path = normalize(path)
        node: Directory | FileOps = self.root
        for part in filter(None, path.split("/")):
            if not isinstance(node, Directory):
                raise KernelError(errno.ENOTDIR)
            if part not in node:
                raise KernelError(errno.ENOENT)
            node = node[part]
        return path, node

    @kernel_function_named(*SYSCALL_OPEN)
    def open(self, path: str, flags: int) -> OpenFile:
        """``do_sys_open``: directories open read-only only; the file's own open runs."""
        path, node = self.lookup(path)
        if isinstance(node, Directory):
            # A directory's listing is ListDir's (readdir's) job, not read(2)'s.
            raise KernelError(errno.EISDIR)
        if flags & os.O_ACCMODE == os.O_ACCMODE:
            raise KernelError(errno.EINVAL)
        return node.open(self.kernel, path, flags)

    def list_dir(self, path: str) -> list[DirEntry]:
        path, node = self.lookup(path)
        if not isinstance(node, Directory):
            raise KernelError(errno.ENOTDIR)
        return [DirEntry(name, isinstance(child, Directory), child.mode)
                for name, child in sorted(node.items())]

    def stat(self, path: str) -> DirEntry:
        path, node = self.lookup(path)
        return DirEntry(posixpath.basename(path) or "/", isinstance(node, Directory), node.mode)
