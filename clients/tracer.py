"""``ftrace-tracer``: an ftrace_ops of one's own, printing what it traces.

    ftrace-tracer [--address A] [--name NAME] [-f PATTERN]... [-n PATTERN]... [--json]
                  [--count N | --duration S] [--output FILE] [--stdin-commands]
                  [--comm COMM] [--spawn DAEMON-OPTION...]

The program is a kernel module that owns an ``ftrace_ops`` (``Tracer.Attach``, through
:class:`clients.api.TracerSession`): the ``-f`` patterns go to ``ftrace_set_filter`` and the
``-n`` patterns to ``ftrace_set_notrace`` (globs: ``foo``, ``foo*``, ``*foo``, ``*foo*``,
``!foo``; no ``-f`` traces every function), then ``register_ftrace_function``. Each hit —
a call of a selected function on a patched site — is printed on one line, as the ``trace``
file prints 3.6's function events without the irq-info columns::

            bash-2417  [001]    52.104227: uinput_release <-__fput
            Xorg-1187  [003]    52.104310: uinput_read <-vfs_read x12

``xN``: one hit standing for N calls in a row (an ``Invoke`` with a repeat count). With
``--json`` each hit is a JSON object on a line of its own (the fields of ``ftrace.v1.Hit``).

It runs until SIGINT or SIGTERM, ``--count`` calls, or ``--duration`` seconds; then it
unregisters the ops and exits 0. The stream's end unregisters the ops in the daemon
whatever happens, even if this process is killed. Until the ops is registered (which
waits for ``ftrace_lock``, held as long as its holder likes: a thread paused at a
failpoint holds it until released), SIGINT and SIGTERM act as for any program: Ctrl-C
ends the wait (exit 130), SIGTERM ends the process, so ``timeout(1)`` bounds it.

``--stdin-commands``: lines read from standard input change the filters while tracing,
with ``ftrace_set_filter`` semantics (a pattern naming nothing is EINVAL and changes
nothing): ``filter PATTERN`` adds to the filter hash, ``notrace PATTERN`` to the notrace
hash (``!PATTERN`` removes), ``reset`` empties both. End of input leaves tracing running.
A command that failed makes the exit status 1 at the end, as a failed write in a shell
script would be seen, even though tracing went on after it.

Standard error gets status lines: ``ftrace-tracer: ops NAME registered: F in filter, N in
notrace`` once the ops is live, one line per command, and the totals at the end. Errors
exit 1 with a diagnostic such as ``ftrace-tracer: register: No such device``, a daemon
that went away meanwhile too, said at once (``ftrace-tracer: NAME: ftraced at A went away
(Connection refused)``); no daemon answering within ``--connect-timeout`` (or a
``--spawn`` daemon not starting) exits 2,
as every client does. A second SIGINT while the daemon answers the unregister gives up
waiting (exit 130).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TextIO

from clients import cli
from clients.api import Client, TracerSession
from clients.errors import FtraceError
from ftrace.v1 import tracer_pb2
from kernel_daemon.trace.trace_output import trace_find_cmdline, trace_print_context

PROG = "ftrace-tracer"
COMMANDS = "filter PATTERN | notrace PATTERN | reset"


def hit_line(hit: tracer_pb2.Hit) -> str:
    """The text form: the trace file's line without irq-info, plus `` xN`` for N calls."""
    # The hit carries current->comm, which a tracer's callback can read: its own table.
    context = trace_print_context(trace_find_cmdline(hit.pid, {hit.pid: hit.comm}), hit.pid,
                                  hit.cpu, hit.timestamp_ns, irq_flags=None)
    parent = ""
    if hit.parent_ip:
        parent = f" <-{hit.parent or f'0x{hit.parent_ip:x}'}"
    repeat = f" x{hit.count}" if hit.count > 1 else ""
    return f"{context}{hit.function or f'0x{hit.ip:x}'}{parent}{repeat}\n"


def hit_json(hit: tracer_pb2.Hit) -> str:
    return json.dumps({
        "function": hit.function, "module": hit.module, "parent": hit.parent,
        "ip": hit.ip, "parent_ip": hit.parent_ip, "cpu": hit.cpu, "pid": hit.pid,
        "comm": hit.comm, "timestamp_ns": hit.timestamp_ns, "count": hit.count or 1,
    }) + "\n"


class HitWriter:
    """Writes hits until ``limit`` calls have been written (None: no limit)."""

    def __init__(self, out: TextIO, as_json: bool, limit: int | None) -> None:
        self.out = out
        self.format = hit_json if as_json else hit_line
        self.limit = limit
        self.calls = 0

    @property
    def full(self) -> bool:
        return self.limit is not None and self.calls >= self.limit

    def write(self, hits: list[tracer_pb2.Hit]) -> None:
        lines = []
        for hit in hits:
            if self.full:
                break
            lines.append(self.format(hit))
            self.calls += hit.count or 1
        if lines:
            self.out.write("".join(lines))
            self.out.flush()


def status(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def counts_text(filter_count: int, notrace_count: int) -> str:
    return f"{filter_count} in filter, {notrace_count} in notrace"


class CommandReader:
    """Lines from a file descriptor, read only when ``select`` says it is readable."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.eof = False
        self._partial = b""

    def read_lines(self) -> list[str]:
        data = os.read(self.fd, 65536)
        if not data:
            self.eof = True
            data = b"\n" if self._partial else b""  # ends an unterminated last line
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [line.decode("utf-8", "replace").strip() for line in lines]


def apply_command(session: TracerSession, line: str) -> bool:
    """One stdin command; its outcome goes to stderr. False if it failed."""
    if not line or line.startswith("#"):
        return True
    verb, _, pattern = line.partition(" ")
    pattern = pattern.strip()
    try:
        if verb in ("filter", "notrace") and pattern:
            result = session.set_filter(pattern, notrace=verb == "notrace")
        elif verb == "reset" and not pattern:
            session.set_filter("", reset=True)
            result = session.set_filter("", reset=True, notrace=True)
        else:
            status(f"unknown command {line!r} ({COMMANDS})")
            return False
    except FtraceError as error:
        status(f"{line}: {cli.error_text(error)}")
        return False
    status(f"{line}: {counts_text(result.filter_count, result.notrace_count)}")
    return True


def trace(client: Client, args: argparse.Namespace, out: TextIO, waker: cli.Waker) -> int:
    try:
        session = client.attach(args.name, args.filter, args.notrace, on_event=waker.wake)
    except FtraceError as error:
        status(f"register: {cli.error_text(error, client)}")
        return 1
    except KeyboardInterrupt:  # the attach cancelled its stream: nothing was registered
        status("interrupted while registering")
        return 130
    # From here on a signal only ends the loop below, which unregisters the ops properly.
    waker.catch_signals()
    name = session.registered.name
    status(f"ops {name} registered: "
           f"{counts_text(session.registered.filter_count, session.registered.notrace_count)}")
    writer = HitWriter(out, args.json, args.count)
    commands = CommandReader(sys.stdin.fileno()) if args.stdin_commands else None
    deadline = None if args.duration is None else time.monotonic() + args.duration
    dropped = 0
    failed_commands = 0
    try:
        while not (waker.stopped or writer.full or session.ended):
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                break
            watched = [commands.fd] if commands and not commands.eof else []
            readable = waker.wait(timeout, watched)
            writer.write(session.take_hits())
            # The daemon's drops and the session's (hits it could not keep): both are
            # hits the output was too slow for.
            lost = session.dropped + session.dropped_here
            if lost != dropped:
                status(f"{lost - dropped} hits dropped (output too slow)")
                dropped = lost
            if readable:
                for line in commands.read_lines():
                    failed_commands += not apply_command(session, line)
    except BrokenPipeError:
        # Nobody reads the hits any more (`| head`): as good as an interrupt.
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    # A second Ctrl-C while the daemon answers gives up waiting (KeyboardInterrupt); the
    # daemon still unregisters the ops when it sees the stream end.
    waker.restore_signals()
    try:
        totals = session.unregister()
    except KeyboardInterrupt:
        session.cancel()
        status(f"ops {name}: interrupted while unregistering")
        return 130
    except FtraceError as error:
        writer.write(session.take_hits())
        status(f"{name}: {cli.error_text(error, client)}")
        return 1
    writer.write(session.take_hits())
    # totals.hits counts the hits the session received and could not keep, too.
    not_kept = f" ({session.dropped_here} not kept here)" if session.dropped_here else ""
    status(f"ops {name} unregistered: {totals.hits} hits{not_kept}, {totals.dropped} dropped")
    if failed_commands:
        status(f"{failed_commands} command(s) from standard input failed")
        return 1
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Register an ftrace_ops with filters and print its hits.")
    p.add_argument("--name", default="",
                   help="the ops' name: one word of printable ASCII, no comma, at most 63 "
                        "bytes (default: the daemon's choice, tracer-PID)")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="PATTERN",
                   help="ftrace_set_filter pattern (repeatable; none: all functions)")
    p.add_argument("-n", "--notrace", action="append", default=[], metavar="PATTERN",
                   help="ftrace_set_notrace pattern (repeatable)")
    p.add_argument("--json", action="store_true", help="one JSON object per hit")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--count", type=int, metavar="N",
                      help="stop once N traced calls have been seen (a hit of a batched "
                           "invocation counts all its calls, and is not split)")
    stop.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("-o", "--output", metavar="FILE", help="write hits to FILE, not stdout")
    p.add_argument("--stdin-commands", action="store_true",
                   help=f"change filters from stdin lines: {COMMANDS}; at end of input "
                        "it traces on until --count, --duration or SIGINT/SIGTERM")
    cli.add_daemon_arguments(p, comm=PROG)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = cli.parse_args(p, argv)
    cli.check_limits(p, ("--count", args.count), ("--duration", args.duration))
    try:
        out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    except OSError as error:
        p.error(f"{args.output}: {error.strerror}")
    try:
        with cli.Waker() as waker:
            with cli.daemon_client(args) as client:
                return trace(client, args, out, waker)
    except cli.ConnectError as error:
        status(str(error))
        return cli.EXIT_NO_DAEMON
    except KeyboardInterrupt:  # Ctrl-C while connecting
        status("interrupted")
        return 130
    finally:
        if out is not sys.stdout:
            out.close()


if __name__ == "__main__":
    sys.exit(main())
