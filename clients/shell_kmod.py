"""ftrace-shell's kernel commands: modprobe, insmod, rmmod, lsmod (kmod's messages),
dmesg (util-linux's options), and invoke (the model's "run this function" for a CPU)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from clients.errors import FtraceError
from clients.kmod import (insert_failure, module_not_found, modprobe_insert, modules_dep,
                          options_from_array)
from clients.shell_runtime import COMMANDS, Invocation, command, parse_options
from ftrace.v1.modules_pb2 import ModuleInfo

__all__: list[str] = []  # the commands register themselves in COMMANDS


def _module_name(arg: str) -> str:
    """insmod/rmmod take a file or a name: ``/lib/.../uinput.ko`` and ``uinput`` name uinput."""
    base = os.path.basename(arg)
    return base[: -len(".ko")] if base.endswith(".ko") else base


class _Fatal(Exception):
    """kmod's ``log_printf()`` at FATAL level: it ends the program (status 1)."""


#: kmod's log_printf() callback: (level, text), the text without the "modprobe: " prefix.
_Log = Callable[[str, str], None]


@command("modprobe [-arq] MODULE [PARAM=VALUE]... | -a MODULE... | -r MODULE...",
         "load a module with its parameters, each after those it needs "
         "(-a: load them all; -r: unload them, and those left unused)")
def cmd_modprobe(ctx: Invocation) -> int:
    parsed = parse_options(ctx, "arq")
    if parsed is None:
        return 1
    options, names = parsed
    if not names:
        ctx.err("modprobe: ERROR: missing parameters. See -h.")
        return 1
    quiet = "q" in options
    # LOG(): FATAL, which ends modprobe, unless -a made it a WARNING; ERR(): ERROR.
    # -q prints none of them, and a FATAL it keeps quiet does not end modprobe either
    # (log_printf() returns before its exit()).
    log_level = "WARNING" if "a" in options else "FATAL"

    def log(level: str, text: str) -> None:
        if quiet:
            return
        ctx.err(f"modprobe: {level}: {text}")
        if level == "FATAL":
            raise _Fatal

    depends = modules_dep(ctx.shell.client)
    try:
        if "r" in options or "a" in options:
            # rmmod_all() (-r takes every name as a module, -a or not) and insmod_all():
            # each name tried, a failure does not stop the others, any makes the status 1.
            step = _modprobe_remove if "r" in options else _modprobe_insert
            results = [step(ctx, log, log_level, name, depends) for name in names]
            return 0 if all(results) else 1
        # Without -a the words after the module are its parameters (options_from_array()).
        return 0 if _modprobe_insert(ctx, log, log_level, names[0], depends,
                                     options_from_array(names[1:])) else 1
    except _Fatal:
        return 1


def _modprobe_insert(ctx: Invocation, log: _Log, log_level: str, name: str,
                     depends: dict[str, list[str]], parameters: str = "") -> bool:
    """kmod's modprobe (:func:`modprobe_insert`); a failure names the module asked for,
    as kmod's ``insmod()`` reports ``kmod_module_probe_insert_module()``."""
    if name not in depends:
        log(log_level, module_not_found(ctx.shell.client, name))
        return False
    try:
        modprobe_insert(ctx.shell.client, name, depends, options=parameters)
    except FtraceError as error:
        log("ERROR", f"could not insert '{name}': {ctx.shell.reason(error, insert_failure)}")
        return False
    return True


def _modprobe_remove(ctx: Invocation, log: _Log, log_level: str, name: str,
                     depends: dict[str, list[str]]) -> bool:
    """kmod's modprobe -r (``rmmod_do_module()``): nothing to do for a module on disk
    that is not loaded; one that holds references is "in use", with no call; else
    ``delete_module``, then (``rmmod_do_remove_module()``) each of its modules.dep
    dependencies that no longer holds a reference, those loaded last first, whose
    failures do not change the status."""
    loaded = _loaded_module(ctx, name)
    if loaded is None:
        if name in depends:
            return True
        log(log_level, f"Module {name} not found.")
        return False
    if loaded.refcount > 0:
        log(log_level, f"Module {name} is in use.")
        return False
    removed = _remove_module(ctx, log, name)
    for dependency in reversed(depends.get(name, [])):
        left = _loaded_module(ctx, dependency)
        if left is not None and left.refcount == 0:
            _remove_module(ctx, log, dependency)
    return removed


def _remove_module(ctx: Invocation, log: _Log, name: str) -> bool:
    """libkmod's ``kmod_module_remove_module()``, which logs a failed ``delete_module``."""
    try:
        ctx.shell.client.unload(name)
    except FtraceError as error:
        log("ERROR", f"could not remove '{name}': {ctx.shell.reason(error)}")
        return False
    return True


def _loaded_module(ctx: Invocation, name: str) -> ModuleInfo | None:
    """The module ``name`` as the kernel lists it (kmod reads /sys/module/NAME), or None."""
    return next((mod for mod in ctx.shell.client.list_modules() if mod.name == name), None)


#: insmod's ``mod_strerror()``: init_module's errors in insmod's words, else strerror().
_INSMOD_STRERROR = {
    errno.ENOEXEC: "Invalid module format",
    errno.ENOENT: "Unknown symbol in module",
    errno.ESRCH: "Module has wrong symbol version",
    errno.EINVAL: "Invalid parameters",
}


@command("insmod MODULE[.ko] [PARAM=VALUE]...",
         "load a catalog module with its parameters (File exists if loaded)")
def cmd_insmod(ctx: Invocation) -> int:
    if not ctx.args:
        ctx.err("insmod: ERROR: missing filename.")
        return 1
    arg = ctx.args[0]
    shown = arg if arg.endswith(".ko") else arg + ".ko"
    name = _module_name(arg)
    # kmod_module_new_from_path(): the file must exist; the catalog is the model's disk.
    if name not in {module.name for module in ctx.shell.client.catalog()}:
        ctx.err(f"insmod: ERROR: could not load module {shown}: No such file or directory")
        return 1
    try:
        # The words after the file, joined by spaces as they are: insmod quotes nothing.
        ctx.shell.client.load(name, args=" ".join(ctx.args[1:]))
    except FtraceError as error:
        reason = ctx.shell.reason(
            error, lambda error: _INSMOD_STRERROR.get(error.errno, error.strerror))
        ctx.err(f"insmod: ERROR: could not insert module {shown}: {reason}")
        return 1
    return 0


@command("rmmod MODULE...", "unload modules")
def cmd_rmmod(ctx: Invocation) -> int:
    # Options are parsed so that none is taken for a module; the model has none of kmod's
    # (-f: it cannot force the unload of a module in use).
    parsed = parse_options(ctx, "")
    if parsed is None:
        return 1
    _, operands = parsed
    if not operands:
        ctx.err("rmmod: ERROR: missing module name.")
        return 1
    status = 0
    for arg in operands:
        name = _module_name(arg)
        try:
            if _check_module_inuse(ctx, name):
                ctx.shell.client.unload(name)
                continue
        except FtraceError as error:
            # kmod names the argument as given here, where its other messages name the module.
            ctx.err(f"rmmod: ERROR: could not remove module {arg}: {ctx.shell.reason(error)}")
        status = 1
    return status


def _check_module_inuse(ctx: Invocation, name: str) -> bool:
    """kmod's ``check_module_inuse()``, which rmmod runs before ``delete_module``: False,
    reported, for a module that is not loaded, that other modules use (its holders), or
    that holds references, which a loading one does (its init's).  kmod reads them in
    /sys/module/NAME, its holders in directory order; here they come from the module
    list, most recent user first (the same while only vfat uses another module).  An
    unloading module holds none: the kernel refuses it (EBUSY), and that is reported as
    any failed ``delete_module`` is."""
    loaded = _loaded_module(ctx, name)
    if loaded is None:
        ctx.err(f"rmmod: ERROR: Module {name} is not currently loaded")
        return False
    if loaded.used_by:
        ctx.err(f"rmmod: ERROR: Module {name} is in use by: {' '.join(loaded.used_by)}")
        return False
    if loaded.refcount > 0:
        ctx.err(f"rmmod: ERROR: Module {name} is in use")
        return False
    return True


@command("lsmod", "list loaded modules (from /proc/modules)")
def cmd_lsmod(ctx: Invocation) -> int:
    if ctx.args:  # kmod's lsmod takes no argument
        ctx.err("Usage: lsmod")
        return 1
    try:
        text = ctx.shell.client.read_file("/proc/modules").decode("utf-8", "replace")
    except FtraceError as error:
        ctx.err(f"lsmod: ERROR: could not open '/proc/modules': {ctx.shell.reason(error)}")
        return 1
    rows = ["Module                  Size  Used by\n"]
    # /proc/modules: "name size refcount users state address [(taints)]"; users "-" or "a,b,".
    for fields in (line.split() for line in text.splitlines()):
        if len(fields) < 4:
            continue
        name, size, refcount, users = fields[:4]
        used_by = refcount if users == "-" else f"{refcount} {users.rstrip(',')}"
        rows.append(f"{name:<19} {size:>8}  {used_by}\n")
    ctx.out("".join(rows))
    return 0


@command("dmesg [-c|-C|-w]", "print the kernel log (-c/-C: clear it, -w: follow)")
def cmd_dmesg(ctx: Invocation) -> int:
    parsed = parse_options(ctx, "cCw")
    if parsed is None:
        return 1
    options, _ = parsed
    client = ctx.shell.client
    if "w" in options:
        with ctx.shell.stage.hold(client.dmesg_follow(replay=True)) as lines:  # to Ctrl-C
            for line in lines:
                ctx.out(line.text + "\n")
        return 0
    text = client.dmesg(clear="c" in options or "C" in options)
    if "C" not in options:
        ctx.out(text)
    return 0


#: invoke's numeric options: what each is, and the range its field of the request holds
#: (the count a uint64 from 1, the CPU a uint32; the daemon refuses what it cannot run).
_INVOKE_NUMBERS = {"c": ("count", 1, 2**64 - 1), "C": ("CPU", 0, 2**32 - 1)}


@command("invoke FUNCTION [PARENT [CALLER...]] [-c COUNT] [-C CPU] [-m MODULE]",
         "run a kernel function as this shell's task")
def cmd_invoke(ctx: Invocation) -> int:
    parsed = parse_options(ctx, "", valued="cCm")
    if parsed is None:
        return 2
    options, operands = parsed
    if not operands:
        ctx.err(f"Usage: {COMMANDS['invoke'].usage}")
        return 2
    numbers: dict[str, int] = {}
    for letter, (what, low, high) in _INVOKE_NUMBERS.items():
        text = options.get(letter)
        if text is None:
            continue
        if not (text.isascii() and text.isdigit() and low <= int(text) <= high):
            ctx.err(f"invoke: invalid {what}: '{text}'")
            return 2
        numbers[letter] = int(text)
    function = operands[0]
    try:
        ctx.shell.client.invoke(
            function,
            parent=operands[1] if len(operands) > 1 else None,
            cpu=numbers.get("C"),
            repeat=numbers.get("c", 1),
            module=options.get("m", ""),
            callers=operands[2:],
        )
    except FtraceError as error:
        ctx.err(f"invoke: {function}: {ctx.shell.reason(error)}")
        return 1
    return 0
