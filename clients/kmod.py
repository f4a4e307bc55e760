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


def options_from_array(words: Sequence[str]) -> str:
    """modprobe's ``options_from_array()``: the words after the module name, its
    parameters, joined by spaces into ``init_module``'s string; a value holding a space,
    and not already starting with a quote, goes in double quotes (``a=x y`` ->
    ``a="x y"``), so the kernel's ``next_arg()`` reads it as one."""
    options = []
    for word in words:
        key, equals, value = word.partition("=")
        if equals and value[:1] not in ('"', "'") and " " in value:
            word = f'{key}="{value}"'
        options.append(word)
    return " ".join(options)


def modprobe_insert(client: Client, name: str, depends: Mapping[str, Sequence[str]],
                    placement: str | None = None, options: str = "") -> ModuleInfo:
    """``kmod_module_probe_insert_module()``: ``name``'s modules.dep dependencies in
    order, each inserted unless it is there already (in any state), then ``name`` the
    same way, with the parameters ``options`` (modprobe's ``extra_options``, for ``name``
    alone; unused if it is there already); returns ``name`` as loaded, or found loaded.
    Raises the FtraceError of the first insertion that fails; ``name`` must be in
    ``depends``."""
    for module in depends[name]:
        client.load(module, if_loaded_ok=True, placement=placement)
    return client.load(name, if_loaded_ok=True, placement=placement, args=options)


def module_not_found(client: Client, name: str) -> str:
    """kmod's modprobe for a ``name`` no modules.dep line has: ``insmod()``'s "Module %s
    not found in directory %s", a ``LOG()`` line (FATAL, or WARNING under ``-a``); the
    directory is the running kernel's, /lib/modules/RELEASE."""
    release = client.config().release
    return f"Module {name} not found in directory /lib/modules/{release}"


def insert_failure(error: FtraceError) -> str:
    """modprobe's ``mod_strerror()`` for a failed ``init_module``: its ENOENT is a symbol
    no module gives."""
    if error.errno == errno.ENOENT:
        return "Unknown symbol in module, or unknown parameter (see dmesg)"
    return error.strerror
