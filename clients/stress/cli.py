"""The ``ftrace-stress`` command line."""

from __future__ import annotations

import argparse
import os
import random
import sys

from clients.cli import (EXIT_NO_DAEMON, ConnectError, add_connect_timeout, address_argument,
                         check_limits, sigterm_interrupts)
from clients.stress.config import (AUTO_FAILPOINTS, DEFAULT_MODULES, DEFAULT_STALL_TIMEOUT,
                                   DEFAULT_SWITCH_INTERVAL, STOP_ON_KINDS, WORKER_KINDS,
                                   BootSpec, RunConfig)
from clients.stress.minimize import interleaving_verdict
from clients.stress.report import (headline, killed_text, lost_text, ran_text, reboot_text,
                                   stall_text)
from clients.stress.runner import Progress, Run, connect, make_run_dir
from kernel_daemon.__main__ import add_boot_arguments, boot_options_from
from kernel_daemon.failpoints import parse_spec
from kernel_daemon.module.catalog import load_catalog

#: The run's length when neither --duration nor --ops is given.
DEFAULT_DURATION = 10.0
#: The boot options' destinations (--seed is the run's too, so it may go with --address).
_BOOT_DESTS = ("variant", "race", "failpoint", "core_functions", "module_placement", "cpus",
               "switch_interval")

EPILOG = f"""\
Many clients, each a process of its own, against one daemon: tracers (own ftrace_ops with
random filters), loaders (modprobe/rmmod), shells (set_ftrace_filter, set_ftrace_notrace,
current_tracer) and invokers (functions executing). Every operation is recorded in
DIR/history.jsonl; the kernel is checked all along (CheckConsistency over RPC, the record
pages from shared memory, dmesg for WARNING and KASAN). The run stops at the first anomaly
(of a --stop-on kind when given; never with --keep-going), or once ftrace is killed (a
WARN's ftrace_kill(): every change is refused from then on, nothing new can be found;
with --keep-going too), turns the function tracer off,
checks once more, and writes DIR/report.json and DIR/report.txt; with an anomaly,
DIR/repro.sh: a minimal ftrace-shell script found by delta debugging, each candidate
replayed on a fresh daemon booted the same way, or, for a race, the interleaving that
reproduces it.

Defaults for a private daemon: --switch-interval {DEFAULT_SWITCH_INTERVAL} (threads in the
daemon preempted more often); with a --race and no --failpoint, each open race window is
widened by a failpoint:
""" + "".join(f"  --race {race:<16} --failpoint {site}={spec}\n"
              for race, (site, spec) in AUTO_FAILPOINTS.items()) + """\
(with --address the same failpoints are armed over RPC, unless the daemon has some armed,
at boot or since by SetFailpoint; the replays' daemons boot with those the run ran with,
which report.txt's kernel: line shows. Those the run armed it disarms at its end, and on
SIGINT or SIGTERM).

Nothing in DIR is removed or overwritten when the run cannot start (DIR and its clients/
are made first, so that an unwritable one is said before a daemon boots): the daemon at --address
must answer within --connect-timeout, a private one must boot.

Only what the kernel shows after the run starts is the run's. What a daemon at --address
showed before (a WARNING or BUG report already in its log, one dmesg -c cleared too, as
the ring and the kernel's taint keep it; count errors already there; ftrace already
killed) is reported apart, as found before the run; on a kernel whose
ftrace is dead already the run does not start (every change would fail with ENODEV).
The run leaves that daemon as its clients left it, the failpoints it armed aside: the
function tracer off (its teardown), the loaders' modules loaded or not,
set_ftrace_filter and set_ftrace_notrace as the shells last wrote them.

A client that makes no progress for --stall-timeout (stuck in a call, or stopped) ends
the run; one held at a failpoint's pause when the run stops (on a daemon of yours: a
private one refuses pause, which nothing in a run releases) is released then, for the
teardown needs the locks it holds; one that does not stop in time is killed. Each makes
the run STALLED: it is not the run that was asked for, and a held lock is no clean run.
A client that dies on its way (killed by a signal the run did not send, or exited with
an error) makes it INCOMPLETE, for the same reason; report.txt says whether the run
went on without it, or ended because no client was left.

A Kernel.Reboot of the daemon during the run (someone else's: the run reboots none)
ends it: the kernel it judged is gone, so it is an ERROR, unless it found an anomaly
before, which stands (exit status 1, the reboot said beside it). The clients change
nothing on the new kernel: every call of theirs says it was born in the run's boot
(x-ftrace-boot-id), so their first call after the reboot fails, and they stop.

Exit status: 0 clean, 1 the run found an anomaly, 2 error (the daemon died or rebooted
under the run, could not start, did not answer...), 3 tainted: the run found no
anomaly, but the kernel had some before it started, or its ftrace was dead already;
4 stalled: the run found no anomaly, but a client was stuck (above); 5 incomplete: the
run found no anomaly, but a client died on its way (above).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftrace-stress", description="Stress ftraced with concurrent clients; find "
        "anomalies and a minimal reproducer.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter, conflict_handler="resolve")
    parser.add_argument("--address", metavar="ADDR", type=address_argument,
                        help="use this daemon (default: start a private one with the daemon "
                        "options)")
    add_connect_timeout(parser)
    limit = parser.add_mutually_exclusive_group()
    limit.add_argument("--duration", type=float, metavar="SECONDS",
                       help=f"run this long (default {DEFAULT_DURATION:g} s)")
    limit.add_argument("--ops", type=int, metavar="N",
                       help="run N operations in all (shared among the clients)")
    parser.add_argument("--stall-timeout", type=float, default=DEFAULT_STALL_TIMEOUT,
                        metavar="SECONDS", help="end the run when a client has made no "
                        "progress for this long (stopped, or stuck in a call: the run is "
                        "then STALLED; default %(default)g s)")
    for kind in WORKER_KINDS:
        parser.add_argument(f"--{kind}s", type=int, default=2, metavar="N",
                            help=f"{kind} processes (default 2)")
    parser.add_argument("--modules", default=",".join(DEFAULT_MODULES), metavar="M,M,...",
                        help="catalog modules the loaders cycle through (default %(default)s)")
    parser.add_argument("--out", default="stress-out", metavar="DIR",
                        help="where the report, history and reproducer go, replacing an earlier "
                             "run's (default %(default)s)")
    parser.add_argument("--keep-going", action="store_true",
                        help="do not stop at the first anomaly (a run still ends once "
                             "ftrace_kill() ran: nothing new can be found)")
    parser.add_argument("--stop-on", action="append", choices=STOP_ON_KINDS, default=[],
                        metavar="KIND", help="stop only at an anomaly of this kind, or "
                        "once ftrace_kill() ran (repeatable; default: any): "
                        + ", ".join(STOP_ON_KINDS))
    parser.add_argument("--no-minimize", dest="minimize", action="store_false",
                        help="do not search for a reproducer")
    parser.add_argument("--max-replays", type=int, default=150, metavar="N",
                        help="fresh-daemon replays the reproducer search may use "
                        "(default %(default)s)")
    parser.add_argument("--check-interval", type=float, default=0.05, metavar="SECONDS",
                        help="a consistency check over RPC begins every SECONDS, start to "
                        "start (one waiting long for ftrace_lock delays the next; report.txt "
                        "says the rate achieved); the shared-memory snapshots come as often, "
                        "and while tracing is started are retried at once until one holds "
                        "(default %(default)s)")
    daemon = parser.add_argument_group("daemon options (for the private daemon)")
    add_boot_arguments(daemon)  # type: ignore[arg-type]  (a group takes arguments alike)
    # Re-declared: the run's seed is the daemon's; resolved below when not given.
    daemon.add_argument("--seed", type=int, metavar="N",
                        help="seed of the clients' choices (a tracer's and a loader's "
                        "also follow the kernel's answers) and of the daemon's "
                        "(default: random, reported)")
    daemon.set_defaults(switch_interval=None)
    return parser


def config_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> RunConfig:
    if args.address is not None:
        given = [dest for dest in _BOOT_DESTS if getattr(args, dest) != parser.get_default(dest)]
        if given:
            parser.error("daemon options ("
                         + ", ".join("--" + d.replace("_", "-") for d in given)
                         + ") are for a private daemon; not with --address")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    if args.switch_interval is None:
        args.switch_interval = DEFAULT_SWITCH_INTERVAL
    auto = []
    if args.race and not args.failpoint and args.address is None:
        auto = [AUTO_FAILPOINTS[race] for race in dict.fromkeys(args.race)]
        args.failpoint = list(auto)
    try:
        boot_options_from(args).validate()
    except ValueError as error:
        parser.error(str(error))
    # A pause holds the thread that reaches it until Kernel.ReleaseFailpoint, which no
    # client of a run calls: it would hold its lock, and the clients behind it, to the end.
    for site, spec in args.failpoint:
        parsed = parse_spec(spec)
        if parsed is not None and parsed.action == "pause":
            parser.error(f"--failpoint {site}={spec}: 'pause' holds a thread until "
                         "Kernel.ReleaseFailpoint releases it, and nothing in a run does "
                         "(the clients behind it would stall); to widen a race window "
                         f"sleep instead, e.g. --failpoint '{site}=1*sleep(3000)'; to force "
                         "an interleaving, pause on a daemon of your own (ftraced) and "
                         "release it there (ftrace-inspect failpoints release)")
    check_limits(parser, ("--duration", args.duration), ("--ops", args.ops),
                   ("--check-interval", args.check_interval),
                   ("--stall-timeout", args.stall_timeout))
    if args.max_replays < 0:
        parser.error("--max-replays must not be negative")
    workers = {kind: getattr(args, f"{kind}s") for kind in WORKER_KINDS}
    if any(n < 0 for n in workers.values()) or not sum(workers.values()):
        parser.error("need at least one client, and no negative counts")
    modules = tuple(dict.fromkeys(m for m in args.modules.split(",") if m))
    if not modules:
        parser.error("--modules names no module")
    # The daemon's catalog is the program's own: an unknown name is a usage error, found
    # before a daemon boots (a daemon at --address is asked again when the run starts).
    unknown = [m for m in modules if m not in load_catalog()]
    if unknown:
        parser.error(f"--modules: not in the module catalog: {', '.join(unknown)}")
    boot = BootSpec((("--variant", args.variant),
                     *(("--race", race) for race in dict.fromkeys(args.race)),
                     *(("--failpoint", f"{site}={spec}") for site, spec in args.failpoint),
                     ("--core-functions", str(args.core_functions)),
                     ("--module-placement", args.module_placement),
                     ("--cpus", str(args.cpus)), ("--seed", str(args.seed)),
                     ("--switch-interval", repr(args.switch_interval))))
    return RunConfig(
        seed=args.seed, out_dir=os.path.abspath(args.out), boot=boot, address=args.address,
        workers=workers,
        duration=args.duration if args.duration or args.ops else DEFAULT_DURATION,
        ops=args.ops, modules=modules,
        keep_going=args.keep_going,
        stop_on=frozenset(STOP_ON_KINDS[kind] for kind in args.stop_on),
        minimize=args.minimize, max_replays=args.max_replays,
        check_interval=args.check_interval, stall_timeout=args.stall_timeout,
        auto_failpoints=tuple(auto))


def summary(report: dict, out_dir: str) -> str:
    lines = [f"ftrace-stress: {report['outcome'].upper()} (seed {report['seed']}, "
             f"{ran_text(report)})"]
    if report["error"]:
        lines.append(f"  error: {report['error']}")
    lines += [f"  rebooted: {line}" for line in reboot_text(report)]
    lines += [f"  stalled: {line}" for line in stall_text(report)]
    lines += [f"  lost: {line}" for line in lost_text(report)]
    lines += [f"  killed: {line}" for line in killed_text(report)]
    for anomaly in report["anomalies"][:3]:
        lines.append(f"  {anomaly['seen_s']:.3f} s {headline(anomaly)}")
    for anomaly in report["before_run"][:3]:
        lines.append(f"  before the run: {headline(anomaly)}")
    if report["outcome"] == "tainted" and report["ran_s"] is not None:
        lines.append("  the run found no anomaly of its own")
    repro = report["reproducer"]
    if repro and repro["kind"] == "sequential":
        lines.append(f"  reproducer: {os.path.join(out_dir, 'repro.sh')} "
                     f"({repro['command_count']} commands, "
                     f"{'confirmed' if repro['confirmed'] else 'NOT confirmed'})")
    elif repro:
        found = (f"; an interleaving that {interleaving_verdict(repro['interleaving'])} in"
                 if repro["interleaving"] else " found; see")
        lines.append(f"  no sequential reproducer{found} {os.path.join(out_dir, 'report.txt')}")
    lines.append(f"  report: {os.path.join(out_dir, 'report.txt')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    config = config_from(args, parser)
    try:
        make_run_dir(config.out_dir)
    except OSError as error:
        print(f"ftrace-stress: --out {args.out}: {error.strerror}", file=sys.stderr)
        return 2
    sigterm_interrupts()  # a run SIGTERM ends writes its report, as after Ctrl-C
    try:
        daemon = connect(config, args.connect_timeout)
    except ConnectError as error:
        print(f"ftrace-stress: {error}", file=sys.stderr)
        return EXIT_NO_DAEMON
    except KeyboardInterrupt:
        print("ftrace-stress: interrupted before the run started", file=sys.stderr)
        return 2
    progress = Progress(sys.stderr) if sys.stderr.isatty() else None
    result = Run(config, ["ftrace-stress", *argv], progress, daemon).execute()
    print(summary(result.report, config.out_dir))
    return result.exit_status
