"""ftrace-shell's kernel commands: modprobe, insmod, rmmod, lsmod (kmod's messages),
dmesg (util-linux's options), and invoke (the model's "run this function" for a CPU)."""

from __future__ import annotations

import errno
import os

from clients.errors import FtraceError
from clients.shell_runtime import COMMANDS, Invocation, command, parse_options

__all__: list[str] = []  # the commands register themselves in COMMANDS


def _module_name(arg: str) -> str:
    """insmod/rmmod take a file or a name: ``/lib/.../uinput.ko`` and ``uinput`` name uinput."""
    base = os.path.basename(arg)
    return base[: -len(".ko")] if base.endswith(".ko") else base


@command("modprobe [-rq] MODULE...", "load modules (-r: unload); a loaded one is fine")
def cmd_modprobe(ctx: Invocation) -> int:
    parsed = parse_options(ctx, "rq")
    if parsed is None:
        return 1
    options, names = parsed
    if not names:
        ctx.err("modprobe: ERROR: missing parameters. See -h.")
        return 1
    client = ctx.shell.client
    quiet = "q" in options
    for name in names:
        try:
            if "r" not in options:
                client.load(name, if_loaded_ok=True)
            else:
                # A module of the catalog ("on disk") that is not loaded: nothing to do.
                # Any other name must be loaded (an explicit module), else it is not found.
                known = name in {module.name for module in client.catalog()}
                client.unload(name, if_absent_ok=known)
        except FtraceError as error:
            if not quiet:
                ctx.err(_modprobe_error(ctx, name, "r" in options, error))
            return 1
    return 0


def _modprobe_error(ctx: Invocation, name: str, remove: bool, error: FtraceError) -> str:
    if error.errno == errno.ENOENT and remove:
        return f"modprobe: FATAL: Module {name} not found."
    if error.errno == errno.ENOENT:
        release = ctx.shell.client.config().release
        return f"modprobe: FATAL: Module {name} not found in directory /lib/modules/{release}"
    verb = "remove" if remove else "insert"
    return f"modprobe: ERROR: could not {verb} '{name}': {error.strerror}"


@command("insmod MODULE[.ko]", "load a catalog module (File exists if loaded)")
def cmd_insmod(ctx: Invocation) -> int:
    if not ctx.args:
        ctx.err("insmod: ERROR: missing filename.")
        return 1
    arg = ctx.args[0]  # the rest would be module parameters, which the model has none of
    shown = arg if arg.endswith(".ko") else arg + ".ko"
    try:
        ctx.shell.client.load(_module_name(arg))
    except FtraceError as error:
        if error.errno == errno.ENOENT:
            ctx.err(f"insmod: ERROR: could not load module {shown}: No such file or directory")
        else:
            ctx.err(f"insmod: ERROR: could not insert module {shown}: {error.strerror}")
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
            ctx.err(f"rmmod: ERROR: could not remove module {arg}: {error.strerror}")
        status = 1
    return status


def _check_module_inuse(ctx: Invocation, name: str) -> bool:
    """kmod's ``check_module_inuse()``, which rmmod runs before ``delete_module``: False,
    reported, for a module that is not loaded or that holds references, which a loading
    one does (its init's).  kmod reads them in /sys/module/NAME; here they come from the
    module list.  An unloading module holds none: the kernel refuses it (EBUSY), and
    that is reported as any failed ``delete_module`` is."""
    loaded = next((mod for mod in ctx.shell.client.list_modules() if mod.name == name), None)
    if loaded is None:
        ctx.err(f"rmmod: ERROR: Module {name} is not currently loaded")
        return False
    if loaded.refcount > 0:
        ctx.err(f"rmmod: ERROR: Module {name} is in use")
        return False
    return True


@command("lsmod", "list loaded modules (from /proc/modules)")
def cmd_lsmod(ctx: Invocation) -> int:
    try:
        text = ctx.shell.client.read_file("/proc/modules").decode("utf-8", "replace")
    except FtraceError as error:
        ctx.err(f"lsmod: ERROR: could not open '/proc/modules': {error.strerror}")
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
        with client.dmesg_follow(replay=True) as lines:  # until Ctrl-C
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


@command("invoke FUNCTION [PARENT] [-c COUNT] [-C CPU] [-m MODULE]",
         "run a kernel function as this shell's task")
def cmd_invoke(ctx: Invocation) -> int:
    parsed = parse_options(ctx, "", valued="cCm")
    if parsed is None:
        return 2
    options, operands = parsed
    if not 1 <= len(operands) <= 2:
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
        )
    except FtraceError as error:
        ctx.err(f"invoke: {function}: {error.strerror}")
        return 1
    return 0
