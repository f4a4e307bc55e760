"""``ftraced``: the daemon that holds one model kernel and serves it over gRPC."""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import platform
import shutil
import sys
import threading

from clients.cli import Waker
from clients.connection import ADDRESS_FORMS, default_address, resolve_address, socket_obstacle
from kernel_daemon.ftrace.core import FAILPOINT_SITES, Race, Variant
from kernel_daemon.kernel import BootOptions
from kernel_daemon.rpc.server import MAX_CONNECTIONS, STOP_GRACE, Daemon
from kernel_daemon.rpc.state import DaemonState

log = logging.getLogger("ftraced")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: glibc's mallopt() parameter (malloc.h), and the arenas the daemon's malloc keeps.
M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def limit_malloc_arenas() -> None:
    """Let glibc's malloc keep at most :data:`MALLOC_ARENAS` arenas in the daemon, as
    ``MALLOC_ARENA_MAX=2`` in its environment would; a MALLOC_ARENA_MAX or a
    ``glibc.malloc.arena_max`` in GLIBC_TUNABLES set there is left to rule, and a libc
    other than glibc is left alone.

    Why: glibc gives a thread that allocates while the others' arenas are busy an arena
    of its own, up to 8 per core, and the daemon's 25-30 threads (gRPC's and its own)
    allocate and free gRPC's and protobuf's buffers in all of them; what is freed stays
    in its arena, in pieces too small to give back. In a 240 s ftrace-stress campaign
    (8 clients, 105,167 operations) the daemon's resident memory went from 85.8 MB idle
    to 163 MB, still rising ~95 B per call at the end, while the memory glibc had handed
    out stayed at 23.5 MB and Python's (31 obmalloc arenas, 32.5 MB) did not move: the
    arenas (16 on 2 cores) held 83 MB, 60 MB of it free. malloc_trim(0) every 5 s gave none of it back
    (181 MB at the end). With 2 arenas the same campaign held 111-118 MB from its first
    20 s to its end, the arenas 31-37 MB with no trend; the RPC rate against a daemon
    with glibc's default, window for window, was unchanged within the noise (ratios
    0.79-1.54, median 1.03; the daemon's CPU per call 0.81-1.13 of the default's).

    glibc takes the limit into account when a thread needs an arena and none is free:
    arenas already made stay. :func:`main` sets it before gRPC's threads are made.
    """
    if ("MALLOC_ARENA_MAX" in os.environ
            or "glibc.malloc.arena_max" in os.environ.get("GLIBC_TUNABLES", "")
            or platform.libc_ver()[0] != "glibc"):
        return
    ctypes.CDLL(None).mallopt(M_ARENA_MAX, MALLOC_ARENAS)


def failpoint_arg(text: str) -> tuple[str, str]:
    name, sep, spec = text.partition("=")
    if not sep or name not in FAILPOINT_SITES:
        raise argparse.ArgumentTypeError(
            f"expected NAME=SPEC with NAME one of: {', '.join(FAILPOINT_SITES)}")
    return name, spec


def add_boot_arguments(parser: argparse.ArgumentParser) -> None:
    """The boot options, shared with every client that can spawn a private daemon."""
    parser.add_argument("--variant", choices=[v.value for v in Variant], default="fixed",
                        help="buggy: 3.6 before 8c4f3c3fa968; fixed: with it (default)")
    parser.add_argument("--race", action="append", default=[], choices=[r.value for r in Race],
                        help="open a race window (repeatable)")
    parser.add_argument("--failpoint", action="append", default=[], type=failpoint_arg,
                        metavar="NAME=SPEC",
                        help='e.g. ftrace_hash_move:after_disable="1*sleep(3000)", '
                             'add_breakpoints="1*error(EFAULT)"')
    parser.add_argument("--core-functions", type=int, default=BootOptions.core_functions,
                        metavar="N", help="functions in the core kernel (default %(default)s)")
    parser.add_argument("--module-placement", choices=["first-fit", "random"],
                        default=BootOptions.module_placement,
                        help="where a module is loaded in the module space: first-fit, the "
                             "lowest free range that fits (an unloaded module's range is "
                             "reused: reloaded at the same address), or random (seeded by "
                             "--seed); default %(default)s")
    parser.add_argument("--cpus", type=int, default=BootOptions.cpus, metavar="N",
                        help="simulated CPUs: per-CPU ring buffers and per_cpu/cpuN "
                             "directories, 1..256 (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, metavar="N",
                        help="seed of the kernel's random choices (module placement, failpoint "
                             "probabilities, workload); default %(default)s: the same choices every "
                             "run (Kernel.Reboot without a seed picks a random one)")
    parser.add_argument("--switch-interval", type=float, default=0.0, metavar="SECONDS",
                        help="sys.setswitchinterval() for the daemon (smaller: more "
                             "preemption); default 0: Python's own, 0.005")


def boot_options_from(args: argparse.Namespace) -> BootOptions:
    return BootOptions(variant=args.variant, races=tuple(args.race),
                       failpoints=tuple(args.failpoint), core_functions=args.core_functions,
                       module_placement=args.module_placement, cpus=args.cpus, seed=args.seed,
                       switch_interval=args.switch_interval)


def wait_for_stop(waker: Waker, lifeline: int | None) -> bool:
    """Until SIGTERM or SIGINT, or the end of the lifeline: True for that, the process that
    started the daemon has ended (every copy of the pipe's write end is closed), however
    it ended.

    The lifeline is a pipe rather than prctl(PR_SET_PDEATHSIG), which signals when the
    *thread* that forked the daemon ends (a client may start it from a thread that ends
    before the client does), and exists on Linux only. The wait is the Waker's select,
    not a blocked lock: a signal delivered to another of the daemon's threads (gRPC's)
    would not interrupt that, and the daemon would never stop.
    """
    fds = [] if lifeline is None else [lifeline]
    while not waker.stopped:
        for fd in waker.wait(None, fds):
            if not os.read(fd, 512):  # nobody writes to it: only its end matters
                return True
    return False


def main(argv: list[str] | None = None) -> int:
    limit_malloc_arenas()
    parser = argparse.ArgumentParser(prog="ftraced", description=__doc__)
    parser.add_argument("--listen", default=None, metavar="ADDRESS",
                        help=f"where to serve: {ADDRESS_FORMS}; port 0: a free port, "
                             "which the log's 'serving' line names; the addresses the "
                             "clients' --address takes (default $FTRACED_ADDRESS or "
                             f"{default_address()})")
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                        help="log this level and above on standard error (any case; "
                             "default %(default)s)")
    parser.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS,
                        metavar="N",
                        help="client connections served at once; one more is closed as it "
                             f"is accepted (default {MAX_CONNECTIONS}, fewer when the "
                             "open-file limit leaves less)")
    parser.add_argument("--stop-grace", type=float, default=STOP_GRACE, metavar="SECONDS",
                        help="on SIGTERM or SIGINT, how long the calls still running may "
                             "take to finish before they are cancelled; what waits in "
                             f"the kernel ends at once (default {STOP_GRACE:g})")
    parser.add_argument("--lifeline", type=int, metavar="FD",
                        help="the read end of a pipe whose write end the starting process "
                             "holds: the daemon shuts down when that process ends (a "
                             "client's --spawn daemon)")
    parser.add_argument("--lifeline-dir", metavar="DIR",
                        help="with --lifeline: a directory of that process's (the spawned "
                             "daemon's socket directory), removed when it ended first")
    add_boot_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level,
                        format="ftraced[%(process)d]: %(message)s")
    try:
        options = boot_options_from(args)
        options.validate()
    except ValueError as exc:
        parser.error(str(exc))
    if args.max_connections < 1:
        parser.error(f"--max-connections must be at least 1, not {args.max_connections}")
    if not 0 <= args.stop_grace <= threading.TIMEOUT_MAX:
        parser.error(f"--stop-grace must be a number of seconds, not {args.stop_grace}")
    if args.lifeline_dir is not None and args.lifeline is None:
        parser.error("--lifeline-dir needs --lifeline")
    if args.lifeline is not None:
        try:
            os.fstat(args.lifeline)
        except OSError as error:
            parser.error(f"--lifeline {args.lifeline}: {error.strerror}")
    address = resolve_address(args.listen)
    with Waker() as waker:
        waker.catch_signals()  # from now on SIGTERM and SIGINT only stop the daemon
        try:
            daemon = Daemon(address, args.max_connections)
        except ValueError as error:
            parser.error(f"--listen: {error}")
        except OSError as error:
            # A path no daemon could listen at is said as the clients say it (a regular
            # file is EADDRINUSE here: ours to refuse, not to replace).
            reason = socket_obstacle(address) or error.strerror
            print(f"ftraced: cannot listen on {address}: {reason}", file=sys.stderr)
            return 1
        try:
            state = DaemonState(options)
            daemon.start(state)
            log.info("serving %s (variant %s, %d core functions, shm %s)", daemon.address,
                     options.variant, options.core_functions, state.boot.kernel.namespace)
            orphaned = wait_for_stop(waker, args.lifeline)
            log.info("shutting down%s",
                     " (the process that started it has ended)" if orphaned else "")
        finally:
            daemon.stop(args.stop_grace)
    if orphaned and args.lifeline_dir is not None:
        shutil.rmtree(args.lifeline_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
