"""``ftraced``: the daemon that holds one model kernel and serves it over gRPC."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from clients.connection import default_address, resolve_address
from kernel_daemon.ftrace.core import FAILPOINT_SITES, Race, Variant
from kernel_daemon.kernel import BootOptions
from kernel_daemon.rpc.server import Daemon
from kernel_daemon.rpc.state import DaemonState

log = logging.getLogger("ftraced")


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
                        help='e.g. ftrace_hash_move:after_disable="1*pause", '
                             'add_breakpoints="1*error(EFAULT)"')
    parser.add_argument("--core-functions", type=int, default=BootOptions.core_functions,
                        metavar="N", help="functions in the core kernel (default %(default)s)")
    parser.add_argument("--module-placement", choices=["first-fit", "random"],
                        default="first-fit")
    parser.add_argument("--cpus", type=int, default=BootOptions.cpus, metavar="N")
    parser.add_argument("--seed", type=int, default=0, metavar="N")
    parser.add_argument("--switch-interval", type=float, default=0.0, metavar="SECONDS",
                        help="sys.setswitchinterval() for the daemon (smaller: more preemption)")


def boot_options_from(args: argparse.Namespace) -> BootOptions:
    return BootOptions(variant=args.variant, races=tuple(args.race),
                       failpoints=tuple(args.failpoint), core_functions=args.core_functions,
                       module_placement=args.module_placement, cpus=args.cpus, seed=args.seed,
                       switch_interval=args.switch_interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ftraced", description=__doc__)
    parser.add_argument("--listen", default=None, metavar="unix:PATH|HOST:PORT",
                        help=f"where to serve (default $FTRACED_ADDRESS or {default_address()})")
    parser.add_argument("--log-level", default="INFO")
    add_boot_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="ftraced[%(process)d]: %(message)s")
    try:
        options = boot_options_from(args)
        options.validate()
    except ValueError as exc:
        parser.error(str(exc))
    if options.switch_interval:
        sys.setswitchinterval(options.switch_interval)
    address = resolve_address(args.listen)
    state = DaemonState(options)
    daemon = Daemon(state, address)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    daemon.start()
    log.info("serving %s (variant %s, %d core functions, shm %s)", address, options.variant,
             options.core_functions, state.boot.kernel.namespace)
    stop.wait()
    log.info("shutting down")
    daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
