"""kmod's modprobe logic that ftrace-shell's ``modprobe`` and ``ftrace-modload`` share."""

from __future__ import annotations

import errno
from collections.abc import Mapping, Sequence

from clients.api import Client
from clients.errors import FtraceError
from ftrace.v1.modules_pb2 import ModuleInfo


def modules_dep(client: Client) -> dict[str, list[str]]:
    """modules.dep: the modules on the model's disk (its catalog), and what each needs
    loaded first, in load order."""
    return {module.name: list(module.depends) for module in client.catalog()}


def modprobe_insert(client: Client, name: str, depends: Mapping[str, Sequence[str]],
                    placement: str | None = None) -> ModuleInfo:
    """``kmod_module_probe_insert_module()``: ``name``'s modules.dep dependencies in
    order, each inserted unless it is there already (in any state), then ``name`` the
    same way; returns ``name`` as loaded, or found loaded. Raises the FtraceError of the
    first insertion that fails; ``name`` must be in ``depends``."""
    for module in depends[name]:
        client.load(module, if_loaded_ok=True, placement=placement)
    return client.load(name, if_loaded_ok=True, placement=placement)


def module_not_found(client: Client, prog: str, name: str) -> str:
    """kmod's modprobe for a ``name`` no modules.dep line has (``insmod()``'s "Module %s
    not found in directory %s", at FATAL level), said by ``prog``: the directory is the
    running kernel's, /lib/modules/RELEASE."""
    release = client.config().release
    return f"{prog}: FATAL: Module {name} not found in directory /lib/modules/{release}"


def insert_failure(error: FtraceError) -> str:
    """modprobe's ``mod_strerror()`` for a failed ``init_module``: its ENOENT is a symbol
    no module gives."""
    if error.errno == errno.ENOENT:
        return "Unknown symbol in module, or unknown parameter (see dmesg)"
    return error.strerror
