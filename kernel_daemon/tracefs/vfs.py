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
from kernel_daemon.tracefs.llseek import dcache_dir_lseek
from kernel_daemon.unwind import kernel_function_named

if TYPE_CHECKING:
    from kernel_daemon.kernel import Kernel

TRACING_MOUNTS = ("/sys/kernel/debug/tracing", "/sys/kernel/tracing")
MAX_PATH = 4096  # PATH_MAX
NAME_MAX = 255
DCACHE_MAX = 4096


@dataclass(frozen=True)
class DirEntry:
    name: str
    is_dir: bool
    mode: int


class Directory(dict[str, "Directory | FileOps"]):
    """A directory: its children by name."""

    mode = 0o755


class DirectoryOpenFile(OpenFile):
    """An open directory: ``generic_read_dir`` (read(2) of a directory is EISDIR) and
    ``dcache_dir_lseek``, debugfs's (``simple_dir_operations``).  The few directories
    outside debugfs (/, /proc, /sys and those on the way) seek alike, where 3.6's
    ``default_llseek`` or ``generic_file_llseek`` there would take SEEK_END, SEEK_DATA
    and SEEK_HOLE too."""

    def __init__(self, path: str, flags: int) -> None:
        super().__init__(path, flags, dcache_dir_lseek)

    def read(self, size: int) -> bytes:
        raise KernelError(errno.EISDIR)


def build_tree(tracing: Directory, proc: Directory) -> Directory:
    root = Directory()
    sys_kernel = root.setdefault("sys", Directory()).setdefault("kernel", Directory())
    sys_kernel.setdefault("debug", Directory())["tracing"] = tracing
    sys_kernel["tracing"] = tracing
    root["proc"] = proc
    return root


def check_path(path: str) -> None:
    """What ``getname()`` and the walk refuse before looking anything up: an empty path
    (ENOENT, as ``open("")``), a NUL, a relative path (the daemon has no working
    directory to resolve it against: EINVAL), a path of PATH_MAX bytes or a component
    longer than NAME_MAX (ENAMETOOLONG)."""
    if not path:
        raise KernelError(errno.ENOENT)
    if len(path.encode()) >= MAX_PATH:
        raise KernelError(errno.ENAMETOOLONG)
    if "\0" in path:
        raise KernelError(errno.EINVAL, "a NUL byte in the path")
    if not path.startswith("/"):
        raise KernelError(errno.EINVAL, "a relative path")
    if any(len(part.encode()) > NAME_MAX for part in path.split("/")):
        raise KernelError(errno.ENAMETOOLONG)


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
        """``link_path_walk``: every component but the last must be a directory, ``..``
        included (``tracing_on/..`` is ENOTDIR, not the tracing directory), and a
        trailing ``/`` asks for a directory too."""
        check_path(path)
        names: list[str] = []
        nodes: list[Directory | FileOps] = [self.root]
        parts = path.split("/")[1:]
        for i, part in enumerate(parts):
            node = nodes[-1]
            if not part:
                if i + 1 < len(parts) or isinstance(node, Directory):
                    continue  # "//", or the trailing "/" of a directory
                raise KernelError(errno.ENOTDIR)
            if not isinstance(node, Directory):
                raise KernelError(errno.ENOTDIR)
            if part == ".":
                continue
            if part == "..":
                if names:  # ".." of "/" is "/"
                    names.pop()
                    nodes.pop()
                continue
            if part not in node:
                raise KernelError(errno.ENOENT)
            names.append(part)
            nodes.append(node[part])
        return "/" + "/".join(names), nodes[-1]

    @kernel_function_named(*SYSCALL_OPEN)
    def open(self, path: str, flags: int) -> OpenFile:
        """``do_sys_open``: a directory opens read-only only (and its reads are EISDIR:
        its listing is ListDir's, readdir's, job); a file's own open runs."""
        if flags & os.O_CREAT and path.endswith("/"):
            raise KernelError(errno.EISDIR)  # do_last(): O_CREAT of a name ending in "/"
        path, node = self.lookup(path)
        if flags & os.O_ACCMODE == os.O_ACCMODE:
            raise KernelError(errno.EINVAL)
        if isinstance(node, Directory):
            if flags & os.O_ACCMODE != os.O_RDONLY:
                raise KernelError(errno.EISDIR)
            return DirectoryOpenFile(path, flags)
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
