"""The file tree the daemon serves: the tracing directory (at both of its mount points)
and the few ``/proc`` files beside it.

Path lookup is the model's ``path_lookupat``: ``.`` and ``..`` resolve as in any
path (``..`` of ``/`` is ``/``), so no path leaves the tree; a name that is not in it
is ENOENT, a file used as a directory ENOTDIR. An open is ``path_openat``: the walk to
the last component's directory, then ``do_last()``'s checks in its order; none of the
directories can create a file, so O_CREAT of a name not in one fails (EACCES, or the
ENOENT of a directory whose lookup refuses the name first).
"""

from __future__ import annotations

import errno
import os
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kernel_daemon.errno import KernelError
from kernel_daemon.tracefs.files import FileOps, OpenFile, SYSCALL_OPEN, file_release
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
    """A directory: its children by name. This class is debugfs's
    (``simple_dir_inode_operations``): its ``simple_lookup()`` leaves a name not in it a
    negative dentry, and it has no ``->create``, so O_CREAT of such a name fails in
    ``vfs_create()`` with EACCES ("shouldn't it be ENOSYS?")."""

    mode = 0o755
    # Whether its entries can change after boot (options/, whose tracer's files come and
    # go with the tracer): a path walked through it is not kept in the Vfs's dcache.
    changes = False

    def lookup_missing(self, name: str) -> None:
        """The directory's ``->lookup`` of a name not in it: it makes a negative dentry
        (the walk then fails ENOENT, a create goes on to ``vfs_create()``), or fails
        itself. ``simple_lookup()`` refuses a name longer than NAME_MAX with
        ENAMETOOLONG. (3.6's walk has no length check of its own: each file system's
        lookup has one, or none.)"""
        if len(name.encode()) > NAME_MAX:
            raise KernelError(errno.ENAMETOOLONG)


class NoNegativeDentryDirectory(Directory):
    """A directory whose ``->lookup`` fails a name not in it with ENOENT itself, whatever
    its length, so that O_CREAT of the name never reaches ``vfs_create()``: sysfs's
    ``sysfs_lookup()`` (/sys, /sys/kernel), procfs's ``proc_root_lookup()`` (/proc:
    ``proc_lookup_de()``, "Don't create negative dentries here", then
    ``proc_pid_lookup()``) and ``proc_sys_lookup()`` (/proc/sys/...)."""

    def lookup_missing(self, name: str) -> None:
        raise KernelError(errno.ENOENT)


class RootDirectory(NoNegativeDentryDirectory):
    """The model's /, standing in for a root file system it does not have: its lookup
    refuses a name longer than NAME_MAX as a disk file system's does (``ext4_lookup()``:
    ENAMETOOLONG), and any other name not in it with ENOENT (a real root's ``->create``
    would make the file; this one has nothing to make it from)."""

    def lookup_missing(self, name: str) -> None:
        Directory.lookup_missing(self, name)
        super().lookup_missing(name)


class ReadOnlyDirectory(NoNegativeDentryDirectory):
    """A directory that is S_IFDIR | S_IRUGO | S_IXUGO, 0555, as created: procfs's (the
    root, ``proc_mkdir()``'s, ``proc_sys_make_inode()``'s) and sysfs's root
    (``sysfs_root``). Their lookups refuse a name not in them, as its parent's do."""

    mode = 0o555


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
    """/ with /sys/kernel/debug (debugfs's root) and its tracing directory, the same
    directory again at /sys/kernel/tracing, and /proc."""
    root = RootDirectory()
    sys_kernel = (root.setdefault("sys", ReadOnlyDirectory())
                  .setdefault("kernel", NoNegativeDentryDirectory()))
    sys_kernel.setdefault("debug", Directory())["tracing"] = tracing
    sys_kernel["tracing"] = tracing
    root["proc"] = proc
    return root


def check_path(path: str) -> None:
    """What ``getname()`` and the walk refuse before looking anything up: an empty path
    (ENOENT, as ``open("")``), a NUL, a relative path (the daemon has no working
    directory to resolve it against: EINVAL), a path of PATH_MAX bytes (ENAMETOOLONG:
    ``strncpy_from_user()`` filled the buffer)."""
    if not path:
        raise KernelError(errno.ENOENT)
    if len(path.encode()) >= MAX_PATH:
        raise KernelError(errno.ENAMETOOLONG)
    if "\0" in path:
        raise KernelError(errno.EINVAL, "a NUL byte in the path")
    if not path.startswith("/"):
        raise KernelError(errno.EINVAL, "a relative path")


#: What ``do_dentry_open()`` clears from ``f_flags`` once the file is open.
_OPEN_ONLY_FLAGS = os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_TRUNC


def build_open_flags(flags: int) -> tuple[int, bool]:
    """``build_open_flags()`` (fs/open.c): the flags the open goes on with, and whether
    the access ``may_open()`` checks has MAY_WRITE: O_PATH keeps only O_DIRECTORY,
    O_NOFOLLOW and itself and asks for no access; otherwise ``ACC_MODE()`` of the access
    mode (O_WRONLY, O_RDWR and 3 ask MAY_WRITE) and O_TRUNC's MAY_WRITE. (The caller is
    root: no other bit of it can refuse these files.)"""
    if flags & os.O_PATH:
        return flags & (os.O_DIRECTORY | os.O_NOFOLLOW | os.O_PATH), False
    return flags, bool(flags & os.O_ACCMODE or flags & os.O_TRUNC)


class Vfs:
    """Lookups and opens over one booted kernel's tree."""

    def __init__(self, kernel: Kernel, root: Directory) -> None:
        self.kernel = kernel
        self.root = root
        # The tree hardly changes after boot, so a resolved path stays resolved (the
        # dcache), unless it went through a directory that changes (Directory.changes: a
        # tracer's option file stayed found after a switch away from its tracer); failed
        # lookups are not remembered, so bad paths cannot fill it.
        self._dcache: dict[str, tuple[str, Directory | FileOps]] = {}

    def lookup(self, path: str) -> tuple[str, Directory | FileOps]:
        cached = self._dcache.get(path)
        if cached is not None:
            return cached
        resolved, lasting = self._walk(path)
        if lasting and len(self._dcache) < DCACHE_MAX:
            self._dcache[path] = resolved
        return resolved

    def _walk(self, path: str) -> tuple[tuple[str, Directory | FileOps], bool]:
        """``link_path_walk``: every component but the last must be a directory, ``..``
        included (``tracing_on/..`` is ENOTDIR, not the tracing directory), and a
        trailing ``/`` asks for a directory too. Also whether the answer lasts: no name
        was looked up in a directory that changes."""
        check_path(path)
        lasting = True
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
                node.lookup_missing(part)
                raise KernelError(errno.ENOENT)
            lasting = lasting and not node.changes
            names.append(part)
            nodes.append(node[part])
        return ("/" + "/".join(names), nodes[-1]), lasting

    @kernel_function_named(*SYSCALL_OPEN)
    def open(self, path: str, flags: int) -> OpenFile:
        """``do_sys_open()``: ``build_open_flags()``, the walk, then ``do_last()``'s
        checks in its order (the first failing one's errno wins): with O_CREAT those of
        :meth:`_lookup_create`; ENOTDIR for O_DIRECTORY and a file; ``may_open()``'s
        EISDIR for a directory with MAY_WRITE asked. Then ``do_dentry_open()``: for
        O_PATH an empty file (its own open does not run); a directory opens (its reads
        are EISDIR: its listing is ListDir's, readdir's, job), a file's own open runs.
        Last ``open_check_o_direct()``: none of these files has a ``direct_IO``, so
        O_DIRECT fails with EINVAL after the open, whose file is released."""
        flags, may_write = build_open_flags(flags)
        path, node = self._lookup_create(path, flags) if flags & os.O_CREAT else self.lookup(path)
        is_dir = isinstance(node, Directory)
        if flags & os.O_DIRECTORY and not is_dir:
            raise KernelError(errno.ENOTDIR)
        if may_write and is_dir:
            raise KernelError(errno.EISDIR)
        if flags & os.O_PATH:
            return OpenFile(path, flags)
        file = DirectoryOpenFile(path, flags) if is_dir else node.open(self.kernel, path, flags)
        # do_dentry_open(), after the file's own open: the creation flags have done their
        # work, and F_GETFL (OpenResult.flags) no longer shows them.
        file.flags &= ~_OPEN_ONLY_FLAGS
        if flags & os.O_DIRECT:
            file_release(file)
            raise KernelError(errno.EINVAL)
        return file

    def _lookup_create(self, path: str, flags: int) -> tuple[str, Directory | FileOps]:
        """``do_last()``'s create side: the walk to the last component's directory
        (ENOENT, ENOTDIR), then EISDIR for a last component that is / . or .. or is
        followed by "/", before it is looked up; ``lookup_open()``: a name not in the
        directory fails in the directory's lookup (:meth:`~Directory.lookup_missing`), else
        in ``vfs_create()`` (EACCES: no directory here has a ``->create``); one that is
        there, EEXIST with O_EXCL, then EISDIR for a directory."""
        check_path(path)
        head, _, last = path.rstrip("/").rpartition("/")
        dir_path, parent = self.lookup(head or "/")
        if not isinstance(parent, Directory):
            raise KernelError(errno.ENOTDIR)
        if last in ("", ".", "..") or path.endswith("/"):
            raise KernelError(errno.EISDIR)
        node = parent.get(last)
        if node is None:
            parent.lookup_missing(last)
            raise KernelError(errno.EACCES)
        if flags & os.O_EXCL:
            raise KernelError(errno.EEXIST)
        if isinstance(node, Directory):
            raise KernelError(errno.EISDIR)
        return posixpath.join(dir_path, last), node

    def list_dir(self, path: str) -> list[DirEntry]:
        path, node = self.lookup(path)
        if not isinstance(node, Directory):
            raise KernelError(errno.ENOTDIR)
        return [DirEntry(name, isinstance(child, Directory), child.mode)
                for name, child in sorted(node.items())]

    def stat(self, path: str) -> DirEntry:
        path, node = self.lookup(path)
        return DirEntry(posixpath.basename(path) or "/", isinstance(node, Directory), node.mode)
