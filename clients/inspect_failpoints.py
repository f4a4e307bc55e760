"""``ftrace-inspect failpoints``: the failpoints driven from a terminal, and what a wait
for a paused thread says while it lasts.

    ftrace-inspect failpoints list
    ftrace-inspect failpoints set NAME SPEC
    ftrace-inspect failpoints wait NAME [--count N] [--timeout S]
    ftrace-inspect failpoints release NAME [--count N]

Each subcommand is one call of :class:`~clients.api.Client`'s (``Kernel.ListFailpoints``,
``SetFailpoint``, ``WaitFailpoint``, ``ReleaseFailpoint``): what a test does to force one
interleaving (``tests/test_race_interleavings.py``), done by hand — arm ``1*pause``, start
the first command, ``wait`` until it is paused, run the racing command, ``release``.

:func:`call_noting_wait` is how ftrace-inspect makes a call that may block on a thread
paused at a failpoint (``Kernel.CheckConsistency`` takes ``ftrace_lock``): after
:data:`NOTICE_AFTER` seconds without an answer one notice on stderr says what it waits for
and which threads are paused now (:func:`paused_now`); the daemon does not say which task
holds ``ftrace_lock``, but a thread paused at a site that holds it is that task. The wait
goes on; Ctrl-C cancels the call and ends it, as it does any wait of the client library's
(:mod:`clients.interrupt`): the call is made on the main thread, only the notice waits on
a thread of its own.
"""

from __future__ import annotations

import argparse
import errno
import sys
import textwrap
import threading
from collections.abc import Callable
from typing import TypeVar

from clients.api import Client
from clients.errors import FtraceError
from clients.interrupt import SETTLE_TIMEOUT
from ftrace.v1 import kernel_pb2

T = TypeVar("T")

#: Seconds a call may block before ftrace-inspect says what it is waiting for.
NOTICE_AFTER = 1.0
#: ``failpoints wait``'s default limit, in seconds.
WAIT_TIMEOUT = 60.0
#: The largest count a request carries (its fields are uint32).
UINT32_MAX = 2**32 - 1
#: The longest ``failpoints wait --timeout``: WaitFailpointRequest.timeout_ms is a uint32.
MAX_TIMEOUT = UINT32_MAX // 1000
#: ``failpoints wait`` saw no thread pause in time: the exit status of a finding, not an error.
EXIT_NOT_PAUSED = 1

SPEC_HELP = ("'[PROB%%][COUNT*]ACTION', ACTION one of sleep(MS), yield, pause, error(ERRNO); "
             "'off' disarms (e.g. 1*pause: the next thread to get there waits for release)")


def call_noting_wait(call: Callable[[], T], notice: Callable[[], str],
                     after: float = NOTICE_AFTER) -> T:
    """``call()``'s result (or its exception); if it has not returned after ``after``
    seconds, ``notice()`` is printed to stderr once, and the wait goes on.

    ``call()`` runs here, where Ctrl-C cancels the daemon's call the library waits for
    (:mod:`clients.interrupt`); ``notice()`` runs on a timer's thread, and what it
    raises is raised here once ``call()`` returned, as if it had run here."""
    failed: list[BaseException] = []

    def say() -> None:
        try:
            print(notice(), file=sys.stderr, flush=True)
        except Exception as error:  # noqa: BLE001  (handed to the caller's thread)
            failed.append(error)

    timer = threading.Timer(after, say)
    timer.start()
    try:
        result = call()
    finally:
        timer.cancel()
        # A notice under way is printed before the caller goes on; its own call
        # (ListFailpoints) is no reason to wait for good.
        timer.join(SETTLE_TIMEOUT)
    if failed:
        raise failed[0]
    return result


def task_text(task: kernel_pb2.Task) -> str:
    return f"{task.comm}/{task.pid}"


def described(description: str) -> str:
    """A site's description as ``list`` and the notices print it: indented, wrapped."""
    return textwrap.fill(description, width=88, initial_indent="    ",
                         subsequent_indent="    ")


def paused_now(client: Client) -> str:
    """The threads paused at failpoints now, each with its site's description, and how to
    let them go on; or that none is."""
    paused = [(site, task) for site in client.list_failpoints() for task in site.paused_tasks]
    if not paused:
        return "  no thread is paused at a failpoint"
    lines = []
    for site, task in paused:
        lines += [f"  {task_text(task)} is paused at {site.name}:", described(site.description)]
    lines.append("  (`ftrace-inspect failpoints release NAME` lets it go on)")
    return "\n".join(lines)


# --- the subcommands ------------------------------------------------------------------


def add_failpoints_parser(commands: argparse._SubParsersAction,
                          parents: list[argparse.ArgumentParser]) -> None:
    """``failpoints`` and its subcommands; ``parents`` hold the options every command
    takes after its name too."""
    failpoints = commands.add_parser(
        "failpoints", parents=parents, help="list, arm, wait for and release failpoints",
        description="Drive the daemon's failpoints: the places in the core where a thread "
                    "can be paused (or delayed, or made to fail) to force one interleaving.")
    actions = failpoints.add_subparsers(dest="failpoints", required=True, metavar="ACTION")
    actions.add_parser("list", parents=parents,
                       help="every site: its spec, evaluations/triggers, the threads "
                            "paused there, and where it sits (Kernel.ListFailpoints)")
    set_ = actions.add_parser("set", parents=parents, help="arm or disarm a site "
                                                          "(Kernel.SetFailpoint)")
    set_.add_argument("name", metavar="NAME")
    set_.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    wait = actions.add_parser("wait", parents=parents,
                              help="block until threads are paused at a site "
                                   "(Kernel.WaitFailpoint); exit status 1 when none was "
                                   "within the timeout")
    wait.add_argument("name", metavar="NAME")
    wait.add_argument("--count", type=int, default=1, metavar="N",
                      help="paused threads to wait for (default 1)")
    wait.add_argument("--timeout", type=float, default=WAIT_TIMEOUT, metavar="S",
                      help=f"seconds, 0: no limit (default {WAIT_TIMEOUT:g})")
    release = actions.add_parser("release", parents=parents,
                                 help="let paused threads go on, oldest first "
                                      "(Kernel.ReleaseFailpoint); the spec stays")
    release.add_argument("name", metavar="NAME")
    release.add_argument("--count", type=int, default=0, metavar="N",
                         help="how many (default: all)")


def check_failpoints_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The usage errors argparse's types do not catch: the request's fields are uint32
    (milliseconds for the timeout)."""
    if args.failpoints in ("wait", "release"):
        least = 1 if args.failpoints == "wait" else 0
        if not least <= args.count <= UINT32_MAX:
            parser.error(f"--count must be at least {least} and at most {UINT32_MAX}")
    if args.failpoints == "wait" and not 0 <= args.timeout <= MAX_TIMEOUT:
        parser.error(f"--timeout must be at least 0 (no limit) and at most {MAX_TIMEOUT}")


def spec_text(spec: str) -> str:
    return spec or "off"


def cmd_list(client: Client) -> int:
    sites = client.list_failpoints()
    width = max(len(site.name) for site in sites)
    print(f"{'FAILPOINT':<{width}} {'SPEC':<12} {'EVALUATIONS':>11} {'TRIGGERS':>8} PAUSED")
    for site in sites:
        paused = " ".join(task_text(task) for task in site.paused_tasks) or "-"
        print(f"{site.name:<{width}} {spec_text(site.spec):<12} {site.evaluations:>11} "
              f"{site.triggers:>8} {paused}")
        print(described(site.description))
    return 0


def cmd_wait(client: Client, args: argparse.Namespace) -> int:
    site = next((s for s in client.list_failpoints() if s.name == args.name), None)
    if site is not None and not site.spec and len(site.paused_tasks) < args.count:
        print(f"ftrace-inspect: {args.name} is not armed: only a thread already on its way "
              f"there can pause (`ftrace-inspect failpoints set {args.name} 1*pause`)",
              file=sys.stderr)
    try:
        site = client.wait_failpoint(args.name, args.count, args.timeout or None)
    except FtraceError as error:
        if error.errno != errno.ETIMEDOUT:
            raise
        threads = "no thread" if args.count == 1 else f"fewer than {args.count} threads"
        print(f"ftrace-inspect: failpoints wait: {threads} paused at {args.name} within "
              f"{args.timeout:g} s", file=sys.stderr)
        return EXIT_NOT_PAUSED
    print(f"{site.name}: paused: {' '.join(map(task_text, site.paused_tasks))}")
    return 0


def run_failpoints(client: Client, args: argparse.Namespace) -> int:
    """One ``failpoints`` subcommand; a daemon's refusal (an unknown name: ENOENT, a bad
    spec: EINVAL) is raised as its :class:`~clients.errors.FtraceError`."""
    if args.failpoints == "list":
        return cmd_list(client)
    if args.failpoints == "set":
        site = client.set_failpoint(args.name, args.spec)
        print(f"{site.name}={spec_text(site.spec)}")
        return 0
    if args.failpoints == "wait":
        return cmd_wait(client, args)
    released = client.release_failpoint(args.name, args.count)
    print(f"{args.name}: released {released}")
    return 0
