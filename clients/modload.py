"""``ftrace-modload``: load and unload modules in a loop.

    ftrace-modload [--address A] [-m MODULE [PARAM=VALUE]...]... [--count N | --duration S]
                   [--seed N] [--hold SECONDS] [--placement first-fit|random] [--comm COMM]
                   [--spawn DAEMON-OPTION...]

Each cycle picks one of the ``-m`` modules (catalog names; default ``uinput``; several are
picked at random, seeded by ``--seed``), loads it (``modprobe``: the modules it depends on
first, and an already loaded module is taken as is), keeps it ``--hold`` seconds, and
unloads it (``rmmod``) if this run loaded it. What follows ``-m`` is read as modprobe reads its words: the
module, then its parameters (``-m loop max_loop=8 max_part=15``), joined into the
module's parameter string as modprobe joins them. One line per operation, on stdout::

    modprobe uinput at 0xffffffffa0000000
    rmmod uinput
    modprobe uinput at 0xffffffffa0000000 (reloaded at the same address)

A reload names where the module went compared with its previous load in this run: the
same address — the premise of the 8c4f3c3 report, which first-fit placement gives — or
``(moved from 0x...)``. ``(already loaded)`` marks a module found loaded: one someone
else had loaded is left loaded, as it was found (no ``rmmod`` of it); one this run's
unload failed to remove is unloaded again.

It runs ``--count`` cycles, for ``--duration`` seconds, or until SIGINT/SIGTERM; a cycle
under way is finished, so no module this program loaded is left behind (a dependency
modprobe loaded for one stays, as after ``modprobe vfat; rmmod vfat``), except one whose
last unload failed (EBUSY, EAGAIN: in use), which no later cycle picked. Exit status 0
when every operation succeeded; 3 when the run went to its end with operations that
failed (the last line on stderr counts them); 1 when an error ended it (below); 2 when
no daemon answers within ``--connect-timeout``, as for every client.
A concurrent loader or unloader of the same modules makes an operation fail (EEXIST;
ENOENT: not loaded, or for a load a module it needs gone meanwhile; EBUSY; EAGAIN for
an unload that meets the reference its load still holds, or a module another module
uses, as fat while vfat is loaded): that is reported on stderr as modprobe/rmmod print
it, and the loop goes on; so is a parameter the module does not take, whose ENOENT
modprobe cannot tell from a missing symbol's, and which fails every load of it. A module
not in the catalog (kmod's ``FATAL: Module M not found in directory
/lib/modules/RELEASE``), a parameter value the module refuses (EINVAL, ERANGE, ENOSPC),
a full module address space, or a daemon that stops answering ends the run with
status 1.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from clients import cli
from clients.api import Client
from clients.errors import FtraceError
from clients.kmod import (insert_failure, modprobe_insert, module_not_found, modules_dep,
                          options_from_array)

PROG = "ftrace-modload"
#: The exit status of a run that went to its end with operations that failed.
EXIT_FAILED_OPERATIONS = 3
#: Failures a concurrent modprobe/rmmod of the same module causes: reported, not fatal.
RACES = ("EEXIST", "ENOENT", "EBUSY", "EAGAIN")


class Fatal(Exception):
    """An error that ends the run (already reported)."""


def say(line: str) -> None:
    print(line, flush=True)


def complain(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Modload:
    def __init__(self, client: Client, placement: str | None) -> None:
        self.client = client
        self.placement = placement
        self.depends = modules_dep(client)
        self.last_base: dict[str, int] = {}
        #: The modules this run loaded and has not unloaded (an unload that failed).
        self.ours: set[str] = set()
        self.loads = self.unloads = self.failures = 0

    def load(self, name: str, options: str = "") -> bool | None:
        """modprobe NAME, with the parameters ``options``: True when this run loaded the
        module (to unload), False when it found it loaded by someone else (to leave as
        it is), None when the load failed."""
        if name not in self.depends:
            complain(f"{PROG}: FATAL: {module_not_found(self.client, name)}")
            raise Fatal
        try:
            info = modprobe_insert(self.client, name, self.depends, self.placement, options)
        except FtraceError as error:
            if error.errno_name in RACES and error.from_kernel:
                self.failures += 1
                text = (insert_failure(error) if error.errno_name == "ENOENT"
                        else cli.error_text(error))
                complain(f"modprobe {name}: {text}")
                return None
            complain(f"{PROG}: modprobe {name}: {cli.error_text(error, self.client)}")
            raise Fatal from error
        note = ""
        loaded = not info.already_loaded or name in self.ours
        if info.already_loaded:
            note = " (already loaded)"
        elif name in self.last_base:
            previous = self.last_base[name]
            note = (" (reloaded at the same address)" if info.base == previous
                    else f" (moved from {previous:#x})")
        self.last_base[name] = info.base
        self.loads += 1
        say(f"modprobe {name} at {info.base:#x}{note}")
        if loaded:
            self.ours.add(name)
        return loaded

    def unload(self, name: str) -> None:
        try:
            self.client.unload(name)
        except FtraceError as error:
            if error.errno_name in RACES and error.from_kernel:
                self.failures += 1
                if error.errno_name == "ENOENT":
                    # Someone else unloaded it: a module of that name loaded later is
                    # theirs, not this run's to rmmod.
                    self.ours.discard(name)
                    text = f"ERROR: Module {name} is not currently loaded"
                else:
                    text = cli.error_text(error)
                complain(f"rmmod {name}: {text}")
                return
            complain(f"{PROG}: rmmod {name}: {cli.error_text(error, self.client)}")
            raise Fatal from error
        self.ours.discard(name)
        self.unloads += 1
        say(f"rmmod {name}")


def run(modload: Modload, args: argparse.Namespace, waker: cli.Waker) -> None:
    rng = random.Random(args.seed)
    end = None if args.duration is None else time.monotonic() + args.duration
    cycles = 0
    while not waker.stopped and (args.count is None or cycles < args.count):
        if end is not None and time.monotonic() >= end:
            break
        name, *parameters = rng.choice(args.module)
        loaded = modload.load(name, options_from_array(parameters))
        if loaded is not None:
            # The hold is pacing, cut short by a signal; the unload of what this run
            # loaded always follows.
            waker.sleep_until(time.monotonic() + args.hold)
            if loaded:
                modload.unload(name)
        cycles += 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Load and unload modules in a loop.",
        epilog=f"Exit status: 0 when every load and unload succeeded, "
               f"{EXIT_FAILED_OPERATIONS} when some failed (a concurrent loader, a parameter "
               f"the module does not take...), 1 when an error ended the run, "
               f"{cli.EXIT_NO_DAEMON} when no daemon answers.")
    p.add_argument("-m", "--module", action="append", nargs="+",
                   metavar=("MODULE", "PARAM=VALUE"),
                   help="a catalog module to cycle, with its parameters as modprobe takes "
                        "them (repeatable; default uinput)")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--count", type=int, metavar="N", help="load/unload cycles to run")
    stop.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--seed", type=int, help="seed for the choice of module (default: fresh)")
    p.add_argument("--hold", type=float, default=0.0, metavar="SECONDS",
                   help="how long each module stays loaded (default 0)")
    p.add_argument("--placement", choices=("first-fit", "random"),
                   help="where modules go (default: the daemon's boot option)")
    cli.add_daemon_arguments(p, comm=PROG)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = cli.parse_args(p, argv)
    args.module = args.module or [["uinput"]]
    if args.count is not None and args.count < 0:
        p.error("--count must not be negative")
    cli.check_limits(p, ("--duration", args.duration))
    cli.check_limits(p, ("--hold", args.hold), zero_ok=True)
    with cli.Waker() as waker:
        waker.catch_signals()
        try:
            with cli.daemon_client(args) as client:
                try:
                    modload = Modload(client, args.placement)
                except FtraceError as error:  # the catalog (modules.dep) could not be read
                    complain(f"{PROG}: {cli.error_text(error, client)}")
                    return 1
                try:
                    run(modload, args, waker)
                except Fatal:
                    return 1
        except cli.ConnectError as error:
            complain(f"{PROG}: {error}")
            return cli.EXIT_NO_DAEMON
    complain(f"{PROG}: {modload.loads} loads, {modload.unloads} unloads, "
             f"{modload.failures} failed")
    return EXIT_FAILED_OPERATIONS if modload.failures else 0


if __name__ == "__main__":
    sys.exit(main())
