"""``ftrace-inspect``: the kernel's ftrace memory read straight from shared memory.

    ftrace-inspect [--address A | --namespace NS] [--no-symbols] COMMAND
        records [--module M] [--nonzero] [--function GLOB]
        summary
        trace [--cpu N]
        check [--tracing-active]

What ``crash`` or ``drgn`` do with ``/proc/kcore``: the record pages
(:class:`~kernel_daemon.ftrace.snapshot.RecordsReader`) and the trace ring buffers
(:class:`~kernel_daemon.trace.reader.RingBufferReader`) are mapped read-only and copied
under their seqlocks, without ``ftrace_lock`` and without any RPC into the kernel's
ftrace code. The segments are found by the boot's namespace: ``Kernel.Stats.shm_namespace``
asked over gRPC, or ``--namespace NS`` (``ftsim.<pid>.<n>``) given directly. Nothing is
created or unlinked in ``/dev/shm``.

Names: the shared memory holds addresses only (and each record group's module name). To
print function names, ``/proc/kallsyms`` is read once over gRPC (``Tracefs.ReadFile``) —
the debugger's ``System.map`` — and an address resolves to the symbol starting at or
below it. The read and the snapshot are not one atomic step: a module unloaded in between
leaves its records nameless. ``--no-symbols`` prints addresses only and, with
``--namespace``, makes no RPC at all; nor does ``summary``, which prints no names.

Commands:

``records``  one line per record, in record order: ip, flags (hex), count, ``E`` when
             FTRACE_FL_ENABLED is set (``.`` otherwise), name and ``[module]``.
             ``--nonzero``: count > 0 or ENABLED (what DumpRecords' only_nonzero selects);
             ``--module M``: that module's records; ``--function GLOB``: names matching
             a shell glob.
``summary``  the page directory's generation, each record group (module, page address,
             records, non-zero counts, ENABLED), and the totals.
``trace``    the ring buffers' events (all CPUs merged, or ``--cpu N``), formatted as the
             ``trace`` file prints them with the default options, after its
             ``# entries-in-buffer`` line. The task names come from the kernel's
             ``saved_cmdlines``, read from shared memory too, as ``trace`` looks them up:
             a pid whose slot was reused since shows ``<...>``.
``check``    a lock-free consistency heuristic on one snapshot. Always: record ips sorted
             and unique within a group and across groups, and no record ENABLED with a
             count of 0 (a site patched for no ops). With ``--tracing-active`` (you know
             some ops is registered and ftrace_enabled is 1): no record with a count but
             not ENABLED either — together, ENABLED ⇔ count > 0. What it cannot know
             without the ops' hashes: whether a count is *right* — the 8c4f3c3 bug's
             reloaded record (count 0, not patched, yet named by a filter) looks healthy
             here; ``Kernel.CheckConsistency`` (under ftrace_lock) sees it. And a snapshot
             can catch a record between its count update and the code update
             (ftrace_hash_move runs before ftrace_run_update_code), which this reports
             although the kernel will set it right: check again, or ask CheckConsistency.
             After ``ftrace_kill()`` (``ftrace_disabled``), ``summary`` and ``check``
             say so: the findings are then what the aborted update left, for good.
             ``--locked``: ask ``Kernel.CheckConsistency`` too, and print its anomalies
             first (a missing or leaked reference, a patch mismatch, a freed page read).

Exit status: 0; 1 when ``check`` found something; 2 on errors, no daemon answering within
``--connect-timeout`` among them (as for every client).
"""

from __future__ import annotations

import argparse
import bisect
import fnmatch
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from clients.api import Client
from clients.cli import (add_connect_timeout, address_argument, check_address_env, error_text,
                         no_daemon_text)
from clients.connection import resolve_address
from clients.errors import FtraceError
from clients.identity import Identity
from kernel_daemon.ftrace.snapshot import GroupSnapshot, RecordsReader, RecordsSnapshot
from kernel_daemon.shm import NAMESPACE_RE
from kernel_daemon.trace.reader import RingBufferReader
from kernel_daemon.trace.saved_cmdlines import SavedCmdlinesReader
from kernel_daemon.trace.trace_output import format_events, trace_bytes

PROG = "ftrace-inspect"
EXIT_FOUND, EXIT_ERROR = 1, 2


class InspectError(Exception):
    """Reported as ``ftrace-inspect: MESSAGE``, exit status 2."""


class Symbols:
    """``/proc/kallsyms`` as text: address -> (name, module)."""

    def __init__(self, kallsyms: str) -> None:
        entries = []
        for line in kallsyms.splitlines():
            head, _, module = line.partition("\t")
            address, _, name = head.split(" ", 2)
            entries.append((int(address, 16), name, module.strip("[]")))
        entries.sort()
        self._addresses = [entry[0] for entry in entries]
        self._entries = entries

    def lookup(self, ip: int) -> tuple[str, str] | None:
        """The symbol at or below ``ip`` (kallsyms has no sizes: an address past a
        module's last function still names that function)."""
        i = bisect.bisect_right(self._addresses, ip) - 1
        if i < 0:
            return None
        _, name, module = self._entries[i]
        return name, module

    def bare_name(self, ip: int) -> str:
        """What a trace line prints: the name alone, or the address as the kernel does."""
        found = self.lookup(ip)
        return found[0] if found else f"0x{ip:08x}"


def no_symbols(ip: int) -> str:
    return f"0x{ip:08x}"


@dataclass(frozen=True)
class Record:
    ip: int
    flags: int
    count: int
    enabled: bool
    name: str  # "" when unresolved
    module: str  # "" for the core kernel

    def line(self, note: str = "") -> str:
        fields = [f"{self.ip:016x}", f"{self.flags:#010x}", f"{self.count:5d}",
                  "E" if self.enabled else "."]
        fields += filter(None, (self.name, f"[{self.module}]" if self.module else ""))
        return " ".join(fields) + note


def records_of(group: GroupSnapshot, symbols: Symbols | None) -> Iterator[Record]:
    counts, enabled = group.counts.tolist(), group.enabled.tolist()
    for ip, flags, count, on in zip(group.ips.tolist(), group.flags.tolist(), counts, enabled):
        found = symbols.lookup(ip) if symbols else None
        yield Record(ip, flags, count, on, found[0] if found else "", group.module)


# --- commands -----------------------------------------------------------------------


def cmd_records(snapshot: RecordsSnapshot, symbols: Symbols | None,
                args: argparse.Namespace) -> int:
    lines = []
    for group in snapshot.groups:
        if args.module is not None and group.module != args.module:
            continue
        for record in records_of(group, symbols):
            if args.nonzero and not (record.count or record.enabled):
                continue
            if args.function and not fnmatch.fnmatchcase(record.name, args.function):
                continue
            lines.append(record.line() + "\n")
    sys.stdout.write("".join(lines))
    return 0


def print_if_killed(snapshot: RecordsSnapshot) -> None:
    """After ``ftrace_kill()`` nothing updates a record again until a reboot: what the
    records show is what the pass that died left (3.6 does not unpatch the sites)."""
    if snapshot.ftrace_disabled:
        print("ftrace_disabled: ftrace_kill() has run; the records are as the aborted "
              "update left them, until a reboot")


def cmd_summary(snapshot: RecordsSnapshot, args: argparse.Namespace) -> int:
    print(f"namespace {args.namespace}  generation {snapshot.generation}")
    print_if_killed(snapshot)
    print(f"{'group':>5} {'module':<24} {'pages at':<18} {'records':>8} {'nonzero':>8} "
          f"{'enabled':>8}")
    totals = [0, 0, 0]
    for group in snapshot.groups:
        row = [len(group.ips), int((group.counts > 0).sum()), int(group.enabled.sum())]
        totals = [t + r for t, r in zip(totals, row)]
        print(f"{group.group_id:>5} {group.module or '[core]':<24} {group.page_addr:#018x} "
              f"{row[0]:>8} {row[1]:>8} {row[2]:>8}")
    print(f"{'total':>5} {len(snapshot.groups):<24} {'':<18} {totals[0]:>8} {totals[1]:>8} "
          f"{totals[2]:>8}")
    return 0


def cmd_trace(namespace: str, symbols: Symbols | None, args: argparse.Namespace) -> int:
    reader = RingBufferReader(namespace)
    if args.cpu is not None and not 0 <= args.cpu < reader.nr_cpus:
        raise InspectError(f"no CPU {args.cpu}: the ring buffer has {reader.nr_cpus}")
    snap = reader.snapshot(args.cpu)
    # Second: the kernel saves a task's comm just after recording its event.
    cmdlines = SavedCmdlinesReader(namespace).trace_find_cmdline_table()
    # The trace file annotates once events were overwritten (entries-written counts them).
    text = format_events(snap.events, symbols.bare_name if symbols else no_symbols, cmdlines,
                         annotate=snap.entries_written > snap.entries_in_buffer)
    sys.stdout.flush()
    sys.stdout.buffer.write(trace_bytes(
        f"# entries-in-buffer/entries-written: {snap.entries_in_buffer}/"
        f"{snap.entries_written}   #P:{reader.nr_cpus}\n#\n" + text))
    return 0


def cmd_check(snapshot: RecordsSnapshot, symbols: Symbols | None,
              args: argparse.Namespace, locked: list[str]) -> int:
    """The snapshot's findings after ``locked``, those of Kernel.CheckConsistency."""
    findings = list(locked)
    owner: dict[int, str] = {}
    for group in snapshot.groups:
        previous = None
        for record in records_of(group, symbols):
            if previous is not None and record.ip <= previous:
                findings.append(record.line(": not sorted after the previous record"))
            previous = record.ip
            if record.ip in owner:
                findings.append(record.line(f": also a record of {owner[record.ip]}"))
            owner[record.ip] = group.module or "the core kernel"
            if record.enabled and not record.count:
                findings.append(record.line(": ENABLED with count 0 (patched for no ops)"))
            elif args.tracing_active and record.count and not record.enabled:
                findings.append(record.line(": count > 0 but not ENABLED while tracing"))
    for finding in findings:
        print(finding)
    print_if_killed(snapshot)
    records = sum(len(group.ips) for group in snapshot.groups)
    print(f"check: {records} records in {len(snapshot.groups)} groups, generation "
          f"{snapshot.generation}: {len(findings) or 'nothing'} found")
    return EXIT_FOUND if findings else 0


# --- the program --------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG,
                                description="Read ftrace's records and ring buffers from "
                                            "shared memory.")
    p.add_argument("--address", metavar="A", type=address_argument,
                   help="daemon address (default: $FTRACED_ADDRESS, else the user's socket)")
    p.add_argument("--namespace", metavar="NS",
                   help="the shared-memory namespace (ftsim.<pid>.<n>) instead of asking "
                        "the daemon")
    p.add_argument("--no-symbols", action="store_true",
                   help="no names (no /proc/kallsyms read): addresses only")
    add_connect_timeout(p)
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    records = commands.add_parser("records", help="one line per dyn_ftrace record")
    records.add_argument("--module", metavar="M", help="only module M's records")
    records.add_argument("--nonzero", action="store_true",
                         help="only records with a count or FTRACE_FL_ENABLED")
    records.add_argument("--function", metavar="GLOB", help="only names matching GLOB")
    commands.add_parser("summary", help="record groups and totals")
    trace = commands.add_parser("trace", help="the ring buffers' events as `trace` prints "
                                                  "them, without its header")
    trace.add_argument("--cpu", type=int, metavar="N", help="only CPU N's buffer")
    check = commands.add_parser("check", help="lock-free consistency heuristic")
    check.add_argument("--tracing-active", action="store_true",
                       help="an ops is registered and ftrace_enabled is 1: require "
                            "ENABLED <=> count > 0")
    check.add_argument("--locked", action="store_true",
                       help="also ask the daemon's Kernel.CheckConsistency, which compares "
                            "each count with the ops' hashes under ftrace_lock")
    return p


def wants_symbols(args: argparse.Namespace) -> bool:
    """Whether the command prints names: ``summary`` prints none."""
    return args.command != "summary" and not args.no_symbols


def asks_daemon(args: argparse.Namespace) -> bool:
    """Whether the daemon is asked: for the namespace, the names, or its own check."""
    return args.namespace is None or wants_symbols(args) or getattr(args, "locked", False)


def run(args: argparse.Namespace) -> int:
    symbols = None
    locked: list[str] = []
    if asks_daemon(args):
        identity = Identity(os.getpid(), PROG)
        try:
            client = Client.connect(args.address, identity, wait=args.connect_timeout)
        except FtraceError as error:
            where = resolve_address(args.address)
            raise InspectError(no_daemon_text(where, error)) from error
        with client:
            try:
                if args.namespace is None:
                    args.namespace = client.stats().shm_namespace
                if wants_symbols(args):
                    symbols = Symbols(client.read_file("/proc/kallsyms").decode())
                if getattr(args, "locked", False):
                    locked = [anomaly.message
                              for anomaly in client.check_consistency().anomalies]
            except FtraceError as error:
                raise InspectError(error_text(error, client)) from error
    if args.command == "trace":
        return cmd_trace(args.namespace, symbols, args)
    snapshot = RecordsReader(args.namespace).snapshot()
    if args.command == "records":
        return cmd_records(snapshot, symbols, args)
    if args.command == "summary":
        return cmd_summary(snapshot, args)
    return cmd_check(snapshot, symbols, args, locked)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.no_symbols and getattr(args, "function", None):
        p.error("--function needs names: drop --no-symbols")
    if args.namespace is not None and not NAMESPACE_RE.fullmatch(args.namespace):
        p.error(f"--namespace {args.namespace!r}: not a namespace (ftsim.<pid>.<n>)")
    if asks_daemon(args) and not args.address:
        check_address_env(p)
    try:
        return run(args)
    except InspectError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
    except FileNotFoundError:
        print(f"{PROG}: no shared memory for namespace {args.namespace!r} "
              "(is the daemon running?)", file=sys.stderr)
    except (ValueError, TimeoutError) as error:
        print(f"{PROG}: {args.namespace}: {error}", file=sys.stderr)
    except BrokenPipeError:  # the reader went (| head): before OSError, its base class
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:  # shm_open's other failures: a name too long, not ours...
        print(f"{PROG}: {args.namespace}: {error.strerror}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
