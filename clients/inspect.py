"""``ftrace-inspect``: the kernel's ftrace memory read straight from shared memory.

    ftrace-inspect [--address A | --namespace NS] [--no-symbols] COMMAND
        records [--module M] [--nonzero] [--function GLOB] [--torn | --expected]
        summary [--torn]
        trace [--cpu N]
        check [--tracing-active] [--locked] [--torn]
        failpoints list | set NAME SPEC | wait NAME | release NAME
        ops [--hashes | --samples] [--json]
        stats [--json]

The options before COMMAND are taken after it too (``records --connect-timeout 3``).

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

``records``  a header line (``IP FLAGS COUNT E FUNCTION [MODULE]``, always, as ``ps``
             prints one), then one line per record, in record order: ip, flags (hex:
             the count in the low bits, FTRACE_FL_ENABLED = 1<<30), count, ``E`` when
             FTRACE_FL_ENABLED is set (``.`` otherwise), name and ``[module]``.
             ``--nonzero``: count > 0 or ENABLED (what DumpRecords' only_nonzero selects);
             ``--module M``: that module's records; ``--function GLOB``: names matching
             a shell glob. ``--expected``: each record's count beside the count the
             enabled ops' hashes imply and those ops' names (why the count is what it
             is), asked of ``Kernel.DumpRecords``, which reads the records and the
             hashes under ``ftrace_lock`` at one instant (a snapshot of the pages and
             a separate ``ListOps`` could straddle a filter write); it waits for the
             lock as ``check --locked`` does.
``summary``  the page directory's generation, each record group (module, page address,
             records, non-zero counts, ENABLED), and the totals.
``trace``    the ring buffers' events (all CPUs merged, or ``--cpu N``), formatted as the
             ``trace`` file prints them with the default options, after its
             ``# entries-in-buffer`` line. The task names come from the kernel's
             ``saved_cmdlines``, read from shared memory too, as ``trace`` looks them up:
             a pid whose slot was reused since shows ``<...>``.
``check``    a lock-free consistency heuristic on one snapshot. Always: record ips sorted
             and unique within a group and across groups, and no core-kernel record
             ENABLED with a count of 0 (a site patched for no ops; a module's may be,
             where ftrace_enabled was 0: its load patches by count without looking at
             the sysctl, and no update follows the count down, as
             ``records.patch_mismatches`` says). With ``--tracing-active`` (you know
             some ops is registered and ftrace_enabled is 1): no record, a module's
             too, ENABLED with a count of 0 or with a count but not ENABLED —
             ENABLED ⇔ count > 0. What it cannot know
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
             It waits for ftrace_lock as long as it takes (a thread paused at a failpoint
             may hold it); after a second it says so on stderr, with the threads paused
             at failpoints now. Its answer stops within a default gRPC client's 4 MiB
             (some 20,000 anomalies): a line then says how many more it counted.
``failpoints``  list, arm, wait for and release the daemon's failpoints (see
             :mod:`clients.inspect_failpoints`): a race window stepped by hand.
``ops``, ``stats``  the registered ftrace_ops and the kernel's counters, asked of the
             daemon (see :mod:`clients.inspect_daemon`): a script's check between steps;
             ``ops --samples``, the ops sample each module load in the load-count window
             holds, beside the enabled ops now.

The record commands copy the pages under their seqlock (a reader's retry): while a writer
is in them (a thread paused in ``__ftrace_hash_rec_update``), no copy is consistent; after
a second they say so on stderr, after :data:`SNAPSHOT_TIMEOUT` seconds they give up.
``--torn`` reads the pages as they are instead, as ``crash`` does, and says so
(``torn: ...``, on stdout for ``summary`` and ``check``, on stderr for ``records``).

Exit status: 0; 1 when ``check`` found something, or ``failpoints wait`` saw no thread
pause in time; 2 on errors, no daemon answering within ``--connect-timeout`` among them
(as for every client), a daemon that went away during a wait too (said at once:
``ftraced at A went away (Connection refused)``), an unknown failpoint or a bad spec
too; 130 after Ctrl-C.
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
from clients.cli import (ADDRESS_HELP, add_connect_timeout, address_argument, check_address_env,
                         error_text, no_daemon_text)
from clients.connection import resolve_address
from clients.errors import FtraceError
from clients.identity import Identity
from clients.inspect_daemon import add_daemon_tables_parsers, run_daemon_tables
from clients.inspect_failpoints import (NOTICE_AFTER, add_failpoints_parser,
                                        call_noting_wait, check_failpoints_args, paused_now,
                                        run_failpoints)
from ftrace.v1 import kernel_pb2
from kernel_daemon.ftrace.snapshot import (GroupSnapshot, RecordsReader, RecordsSnapshot,
                                           SnapshotRetry)
from kernel_daemon.shm import NAMESPACE_RE
from kernel_daemon.trace.reader import RingBufferReader
from kernel_daemon.trace.saved_cmdlines import SavedCmdlinesReader
from kernel_daemon.trace.trace_output import format_events, trace_bytes

PROG = "ftrace-inspect"
EXIT_FOUND, EXIT_ERROR = 1, 2
#: 128 + SIGINT, as a shell reports a command Ctrl-C ended.
EXIT_INTERRUPTED = 130
#: The commands that read the daemon's tables over gRPC only, no shared memory.
DAEMON_COMMANDS = ("failpoints", "ops", "stats")
#: How long a consistent snapshot of the records is waited for.
SNAPSHOT_TIMEOUT = 5.0
TORN = ("torn: read while a writer was in the record pages (no consistent snapshot): "
        "counts and flags may be half-updated")


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
    # With --expected: the count the enabled ops imply, and their names.
    expected: int | None = None
    ops: tuple[str, ...] = ()

    @staticmethod
    def header(names: bool, expected: bool = False) -> str:
        """The column names over :meth:`line`s (``names``: a FUNCTION column;
        ``expected``: EXPECT and OPS columns)."""
        return (f"{'IP':<16} {'FLAGS':<10} {'COUNT':>5}" + (" EXPECT" if expected else "")
                + " E" + (" FUNCTION [MODULE]" if names else " [MODULE]")
                + (" OPS" if expected else ""))

    @classmethod
    def dumped(cls, record: kernel_pb2.Record, names: bool) -> Record:
        """A record as Kernel.DumpRecords gave it, with its expected count."""
        return cls(record.ip, record.flags, record.count, record.enabled,
                   record.function if names else "", record.module,
                   record.expected_count, tuple(record.ops))

    def line(self, note: str = "") -> str:
        fields = [f"{self.ip:016x}", f"{self.flags:#010x}", f"{self.count:5d}"]
        if self.expected is not None:
            fields.append(f"{self.expected:6d}")
        fields.append("E" if self.enabled else ".")
        fields += filter(None, (self.name, f"[{self.module}]" if self.module else ""))
        if self.expected is not None:
            fields.append(",".join(self.ops) or "-")
        return " ".join(fields) + note


def records_of(group: GroupSnapshot, symbols: Symbols | None) -> Iterator[Record]:
    counts, enabled = group.counts.tolist(), group.enabled.tolist()
    for ip, flags, count, on in zip(group.ips.tolist(), group.flags.tolist(), counts, enabled):
        found = symbols.lookup(ip) if symbols else None
        yield Record(ip, flags, count, on, found[0] if found else "", group.module)


# --- commands -----------------------------------------------------------------------


def cmd_records(snapshot: RecordsSnapshot, symbols: Symbols | None,
                args: argparse.Namespace, torn: bool) -> int:
    if torn:  # on stderr: stdout stays the table
        print(f"{PROG}: {TORN}", file=sys.stderr)
    lines = [Record.header(symbols is not None) + "\n"]
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


def cmd_records_expected(client: Client, args: argparse.Namespace) -> int:
    """``records --expected``: the records and the counts the ops imply, read under
    ftrace_lock by Kernel.DumpRecords (waited for as ``check --locked`` waits)."""
    dumped = call_noting_wait(
        lambda: client.dump_records(module=args.module or "", core_only=args.module == "",
                                    function_glob=args.function or "",
                                    only_nonzero=args.nonzero, include_expected=True),
        lambda: waiting_notice("ftrace_lock (Kernel.DumpRecords takes it)", client))
    names = not args.no_symbols
    lines = [Record.header(names, expected=True)]
    lines += (Record.dumped(record, names).line() for record in dumped)
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


def print_if_killed(snapshot: RecordsSnapshot) -> None:
    """After ``ftrace_kill()`` nothing updates a record again until a reboot: what the
    records show is what the pass that died left (3.6 does not unpatch the sites)."""
    if snapshot.ftrace_disabled:
        print("ftrace_disabled: ftrace_kill() has run; the records are as the aborted "
              "update left them, until a reboot")


def print_if_torn(torn: bool) -> None:
    if torn:
        print(TORN)


def cmd_summary(snapshot: RecordsSnapshot, args: argparse.Namespace, torn: bool) -> int:
    print(f"namespace {args.namespace}  generation {snapshot.generation}")
    print_if_torn(torn)
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


def locked_findings(report: kernel_pb2.ConsistencyReport) -> tuple[list[str], int]:
    """Kernel.CheckConsistency's anomalies as lines, the last saying how many more it
    counted than its answer could list; and how many it counted."""
    lines = [anomaly.message for anomaly in report.anomalies]
    if report.anomalies_truncated:
        lines.append(f"... and {report.anomaly_count - len(report.anomalies)} more anomalies: "
                     "Kernel.CheckConsistency's answer stops within a default gRPC "
                     "client's 4 MiB")
    return lines, report.anomaly_count


def cmd_check(snapshot: RecordsSnapshot, symbols: Symbols | None,
              args: argparse.Namespace, locked: tuple[list[str], int], torn: bool) -> int:
    """The snapshot's findings after ``locked``, those of Kernel.CheckConsistency (its
    lines and how many anomalies it counted)."""
    locked_lines, locked_count = locked
    findings: list[str] = []
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
            if record.enabled and not record.count and (args.tracing_active or not group.module):
                findings.append(record.line(": ENABLED with count 0 (patched for no ops)"))
            elif args.tracing_active and record.count and not record.enabled:
                findings.append(record.line(": count > 0 but not ENABLED while tracing"))
    for finding in locked_lines + findings:
        print(finding)
    print_if_torn(torn)
    print_if_killed(snapshot)
    records = sum(len(group.ips) for group in snapshot.groups)
    found = locked_count + len(findings)
    print(f"check: {records} records in {len(snapshot.groups)} groups, generation "
          f"{snapshot.generation}: {found or 'nothing'} found")
    return EXIT_FOUND if found else 0


# --- the program --------------------------------------------------------------------


RECORDS_COLUMNS = """\
columns (the first line names them):
  IP        rec->ip: the call site's address
  FLAGS     rec->flags: the reference count in the low 30 bits (FTRACE_FL_MASK is the
            top two), FTRACE_FL_ENABLED = 1<<30 (0x40000000) while the site is patched
            to call the tracer
  COUNT     the reference count (rec->flags & ~FTRACE_FL_MASK): how many enabled
            ftrace_ops select the function
  E         E when FTRACE_FL_ENABLED is set, . otherwise
  FUNCTION  the name (from /proc/kallsyms; with --expected, the daemon's) and [module];
            with --no-symbols, [module] only
with --expected, after COUNT and at the end:
  EXPECT    the count the enabled ops imply, as __ftrace_hash_rec_update keeps it: how
            many ops (FTRACE_OPS_FL_ENABLED, on ftrace_ops_list) have an empty filter
            or one naming the function, and a notrace not naming it
  OPS       those ops' names, comma-separated (- for none); COUNT != EXPECT is a
            missing or leaked reference
"""


def daemon_options(container: argparse._ActionsContainer, again: bool) -> None:
    """``--address`` and ``--connect-timeout``, which every command takes before its name
    and ``again`` after it (with no defaults there: see :func:`add_connect_timeout`)."""
    container.add_argument("--address", metavar="A", type=address_argument,
                           default=argparse.SUPPRESS if again else None,
                           help=ADDRESS_HELP)
    add_connect_timeout(container, again)


def memory_options(container: argparse._ActionsContainer, again: bool) -> None:
    """``--namespace`` and ``--no-symbols``, the shared-memory commands' (as
    :func:`daemon_options`)."""
    container.add_argument("--namespace", metavar="NS",
                           default=argparse.SUPPRESS if again else None,
                           help="the shared-memory namespace (ftsim.<pid>.<n>) instead of "
                                "asking the daemon")
    container.add_argument("--no-symbols", action="store_true",
                           default=argparse.SUPPRESS if again else False,
                           help="no names (no /proc/kallsyms read): addresses only")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG,
                                description="Read ftrace's records and ring buffers from "
                                            "shared memory; drive the failpoints.",
                                epilog=f"Exit status: 0; {EXIT_FOUND} when check found "
                                       "something, or failpoints wait saw no thread pause "
                                       f"in time; {EXIT_ERROR} on errors, a usage error or "
                                       "no daemon answering within --connect-timeout among "
                                       f"them; {EXIT_INTERRUPTED} after Ctrl-C.")
    daemon_options(p, again=False)
    memory_options(p, again=False)
    daemon_again = argparse.ArgumentParser(add_help=False)
    daemon_options(daemon_again, again=True)
    memory_again = argparse.ArgumentParser(add_help=False, parents=[daemon_again])
    memory_options(memory_again, again=True)
    torn = argparse.ArgumentParser(add_help=False)
    torn.add_argument("--torn", action="store_true",
                      help="while a writer is in the record pages (a thread paused in a "
                           "count update), read them as they are, labelled torn, instead "
                           "of waiting for a consistent snapshot")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    records = commands.add_parser("records", parents=[memory_again, torn],
                                  help="one line per dyn_ftrace record",
                                  description="One line per dyn_ftrace record, in record "
                                              "order, after a header line.",
                                  epilog=RECORDS_COLUMNS,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    records.add_argument("--module", metavar="M", help="only module M's records")
    records.add_argument("--nonzero", action="store_true",
                         help="only records with a count or FTRACE_FL_ENABLED")
    records.add_argument("--function", metavar="GLOB", help="only names matching GLOB")
    records.add_argument("--expected", action="store_true",
                         help="also the count the enabled ops' hashes imply (EXPECT) and "
                              "those ops (OPS): records and hashes read by the daemon under "
                              "ftrace_lock (it waits for the lock, saying so after a second), "
                              "not from shared memory")
    commands.add_parser("summary", parents=[memory_again, torn],
                        help="record groups and totals")
    trace = commands.add_parser("trace", parents=[memory_again],
                                help="the ring buffers' events as `trace` prints them, after "
                                     "its entries-in-buffer line (the tracer's and the "
                                     "columns' lines left out)")
    trace.add_argument("--cpu", type=int, metavar="N", help="only CPU N's buffer")
    check = commands.add_parser("check", parents=[memory_again, torn],
                                help="lock-free consistency heuristic",
                                description="A finding is a record's line (the columns of "
                                            "`records`) and what is wrong with it.")
    check.add_argument("--tracing-active", action="store_true",
                       help="an ops is registered and ftrace_enabled is 1: require "
                            "ENABLED <=> count > 0")
    check.add_argument("--locked", action="store_true",
                       help="also ask the daemon's Kernel.CheckConsistency, which compares "
                            "each count with the ops' hashes under ftrace_lock (it waits "
                            "for the lock, saying so after a second)")
    add_failpoints_parser(commands, [daemon_again])
    add_daemon_tables_parsers(commands, [daemon_again])
    return p


def wants_symbols(args: argparse.Namespace) -> bool:
    """Whether the command prints names: ``summary`` prints none."""
    return args.command != "summary" and not args.no_symbols


def asks_daemon(args: argparse.Namespace) -> bool:
    """Whether the daemon is asked: for the failpoints, the namespace, the names, its own
    check or the records with their expected counts."""
    return (args.command in DAEMON_COMMANDS or args.namespace is None or wants_symbols(args)
            or getattr(args, "locked", False) or getattr(args, "expected", False))


def connect(args: argparse.Namespace) -> Client:
    """The daemon's client, waited for up to ``--connect-timeout``."""
    try:
        return Client.connect(args.address, Identity(os.getpid(), PROG),
                              wait=args.connect_timeout)
    except FtraceError as error:
        raise InspectError(no_daemon_text(resolve_address(args.address), error,
                                          args.connect_timeout)) from error


def waiting_notice(what: str, client: Client | None) -> str:
    """What ftrace-inspect says on stderr when it has waited a second for ``what``: with
    the threads paused at failpoints now, when it talks to the daemon."""
    if client is None:
        return f"{PROG}: waiting for {what}"
    return f"{PROG}: waiting for {what}; the threads paused at failpoints now:\n" + \
        paused_now(client)


def read_records(args: argparse.Namespace, client: Client | None) -> tuple[RecordsSnapshot,
                                                                           bool]:
    """The records, and whether the copy is torn (``--torn``, and a writer was in). A
    consistent one is waited for up to :data:`SNAPSHOT_TIMEOUT`, saying after a second
    what is in the way (the paused threads, when the daemon is asked)."""
    reader = RecordsReader(args.namespace)
    if args.torn:
        try:
            return reader.try_snapshot(), False
        except SnapshotRetry:
            return reader.torn_snapshot(), True
    try:
        return reader.snapshot(timeout=NOTICE_AFTER), False
    except TimeoutError:
        print(waiting_notice("a consistent snapshot: a writer is in the record pages",
                             client), file=sys.stderr, flush=True)
    try:
        return reader.snapshot(timeout=SNAPSHOT_TIMEOUT - NOTICE_AFTER), False
    except TimeoutError:
        raise InspectError(f"{args.namespace}: no consistent snapshot in "
                           f"{SNAPSHOT_TIMEOUT:g} s: a writer stayed in the record pages "
                           f"(`{args.command} --torn` reads them as they are)") from None


def read_memory(args: argparse.Namespace, client: Client | None, symbols: Symbols | None,
                locked: tuple[list[str], int]) -> int:
    """The shared-memory commands, after what the daemon was asked."""
    if args.command == "trace":
        return cmd_trace(args.namespace, symbols, args)
    snapshot, torn = read_records(args, client)
    if args.command == "records":
        return cmd_records(snapshot, symbols, args, torn)
    if args.command == "summary":
        return cmd_summary(snapshot, args, torn)
    return cmd_check(snapshot, symbols, args, locked, torn)


def run(args: argparse.Namespace) -> int:
    if not asks_daemon(args):
        return read_memory(args, None, None, ([], 0))
    client = connect(args)
    with client:
        try:
            if args.command == "failpoints":
                return run_failpoints(client, args)
            if args.command in DAEMON_COMMANDS:
                return run_daemon_tables(client, args,
                                         lambda what: waiting_notice(what, client))
            if getattr(args, "expected", False):
                return cmd_records_expected(client, args)
            if args.namespace is None:
                args.namespace = client.stats().shm_namespace
            symbols = None
            if wants_symbols(args):
                symbols = Symbols(client.read_file("/proc/kallsyms").decode())
            locked: tuple[list[str], int] = ([], 0)
            if getattr(args, "locked", False):
                locked = locked_findings(call_noting_wait(
                    client.check_consistency, lambda: waiting_notice(
                        "ftrace_lock (Kernel.CheckConsistency takes it)", client)))
            return read_memory(args, client, symbols, locked)
        except FtraceError as error:
            raise InspectError(error_text(error, client)) from error


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.command in DAEMON_COMMANDS:
        if args.namespace is not None or args.no_symbols:
            p.error(f"--namespace and --no-symbols are not for {args.command}")
    if args.command == "failpoints":
        check_failpoints_args(p, args)
    if args.no_symbols and getattr(args, "function", None):
        p.error("--function needs names: drop --no-symbols")
    if getattr(args, "expected", False) and (args.torn or args.namespace is not None):
        p.error("--expected reads the records under ftrace_lock through the daemon: "
                "not with --torn or --namespace")
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
    except KeyboardInterrupt:  # Ctrl-C in a wait: the program's end, not an error of it
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went (| head): before OSError, its base class
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:  # shm_open's other failures: a name too long, not ours...
        print(f"{PROG}: {args.namespace}: {error.strerror}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
