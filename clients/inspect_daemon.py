"""``ftrace-inspect ops`` and ``ftrace-inspect stats``: the daemon's own tables, for a
script that checks the kernel between its steps (after a client was killed: are its ops
unregistered, its files released?).

    ftrace-inspect ops [--hashes | --samples] [--json]
    ftrace-inspect stats [--json]

``ops`` walks ``ftrace_ops_list`` and ``ftrace_global_list`` (``Kernel.ListOps``), as one
would with drgn's list helpers over ``struct ftrace_ops``: a header line, then one line per
ops — its id (it stands for the struct's address), its ``FTRACE_OPS_FL_*`` flags, the
entries of its filter and notrace hashes, its name and the task that registered it
(``COMM/PID``, ``-`` for the kernel's own), last: a comm may hold spaces, so it is the
rest of the line, as ``ps`` prints its command last (``read id flags filter notrace name
owner`` in a shell); a name is one word (the daemon refuses any other with EINVAL).
``--hashes`` lists each hash's functions under its ops, in address order. ListOps takes
``ftrace_lock``; a thread paused at a failpoint may hold it, and after a second a notice on
stderr says so, as for ``check --locked``.

``ops --samples``: the race load-count window seen from outside. A module load on a kernel
booted with ``--race load-count`` reads the enabled ops without ``ftrace_lock`` and counts
its new records from that sample once it holds the lock; a change made in between (a
tracer enabled, a filter written) is not in the counts. For each load holding a sample
(paused at ``ftrace_update_code:before_count``, or on its way to the lock): the module and
the task loading it, the ops it sampled (flags and hashes as they were), the enabled ops
now (what ``ftrace_update_code()`` reads, under the lock, in 3.6), both in the ``ops``
table with their functions listed, and what changed between them: the update the load will
lose. With no load holding one, one line says so. The sample is the model's (3.6 takes the
lock first, so no load has one): ``Kernel.ListOps`` with ``include_load_samples``.

``stats``: ``Kernel.Stats``, one ``NAME VALUE`` line per field of ``ftrace.v1.KernelStats``
in the message's order, zero values included (``rpc_counts`` as ``rpc_counts.METHOD N``
lines), so ``awk '$1 == "open_files" {print $2}'`` finds one.

``--json``: the same as one JSON document on a line (``stats`` an object, ``ops`` a list of
objects), every field present, named as in the ``.proto``; an ops' ``filter``, ``notrace``
and ``hashes_truncated`` only with ``--hashes``, as the text lists the functions only then
(an empty list next to ``"filter_count": 1`` would read as an empty hash); with
``--samples`` an object of ``load_samples`` and ``enabled_ops``, every hash listed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Mapping, MutableSequence
from typing import Any

from google.protobuf.message import Message

from clients.api import Client
from clients.inspect_failpoints import call_noting_wait
from ftrace.v1 import kernel_pb2
from kernel_daemon.ftrace.module_records import BEFORE_COUNT
from kernel_daemon.ftrace.ops import ops_flag_names

OPS_HEADER = ("ID", "FLAGS", "FILTER", "NOTRACE", "NAME", "OWNER")
#: The OpsInfo fields ListOps fills only with include_hashes (``--hashes``).
OPS_HASH_FIELDS = ("filter", "notrace", "hashes_truncated")


def add_daemon_tables_parsers(commands: argparse._SubParsersAction,
                              parents: list[argparse.ArgumentParser]) -> None:
    """``ops`` and ``stats``; ``parents`` hold the options every command takes after its
    name too."""
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true",
                         help="one JSON document, every field named as in the .proto")
    ops = commands.add_parser("ops", parents=[*parents, as_json],
                              help="the registered ftrace_ops (Kernel.ListOps)",
                              description="One line per ftrace_ops on ftrace_ops_list and "
                                          "ftrace_global_list, after a header line.")
    listing = ops.add_mutually_exclusive_group()
    listing.add_argument("--hashes", action="store_true",
                         help="also each ops' filter and notrace functions, in address order")
    listing.add_argument("--samples", action="store_true",
                         help="instead, each module load holding an ops sample (race "
                              "load-count): the ops it sampled without ftrace_lock beside "
                              "the enabled ops now, and what changed between them")
    commands.add_parser("stats", parents=[*parents, as_json],
                        help="the kernel's and the daemon's counters (Kernel.Stats)",
                        description="One NAME VALUE line per field of KernelStats.")


def as_dict(message: Message) -> dict[str, Any]:
    """Every field of ``message``, zero values included, by its .proto name; nested
    messages as dicts (an unset one as None), maps as dicts, repeated fields as lists."""
    fields: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        # By the value's container, which every protobuf runtime registers with
        # collections.abc (a descriptor's `label` is gone from protobuf 7).
        if isinstance(value, Mapping):
            fields[field.name] = dict(sorted(value.items()))
        elif isinstance(value, MutableSequence):
            fields[field.name] = [as_dict(v) if isinstance(v, Message) else v for v in value]
        elif isinstance(value, Message):
            fields[field.name] = as_dict(value) if message.HasField(field.name) else None
        else:
            fields[field.name] = value
    return fields


def text_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def stats_lines(stats: dict[str, Any]) -> list[str]:
    lines = []
    for name, value in stats.items():
        if isinstance(value, dict):
            lines += [f"{name}.{key} {text_value(v)}" for key, v in value.items()]
        else:
            lines.append(f"{name} {text_value(value)}")
    return lines


def ops_dict(ops: kernel_pb2.OpsInfo, hashes: bool) -> dict[str, Any]:
    """An ops as ``--json`` gives it: :func:`as_dict`, without the hashes' fields when
    they were not asked for."""
    fields = as_dict(ops)
    if not hashes:
        for name in OPS_HASH_FIELDS:
            del fields[name]
    return fields


def ops_lines(listed: list[kernel_pb2.OpsInfo], hashes: bool) -> list[str]:
    rows = [OPS_HEADER]
    details: list[list[str]] = [[]]
    for ops in listed:
        owner = f"{ops.owner.comm}/{ops.owner.pid}" if ops.HasField("owner") else "-"
        rows.append((str(ops.id), "|".join(ops_flag_names(ops.flags)) or "0",
                     str(ops.filter_count), str(ops.notrace_count), ops.name, owner))
        listing = ([f"    filter  {name}" for name in ops.filter]
                   + [f"    notrace {name}" for name in ops.notrace]) if hashes else []
        if hashes and ops.hashes_truncated:
            listing.append(f"    ... {len(ops.filter)} of {ops.filter_count} filter and "
                           f"{len(ops.notrace)} of {ops.notrace_count} notrace entries "
                           "listed: ListOps' answer stops within a default gRPC client's 4 MiB")
        details.append(listing)
    # Whitespace-separated columns, padded: every field but the last is one word (an id,
    # flags joined by "|", counts, a name the daemon keeps to printable ASCII without
    # space or comma), so the owner, whose comm may hold spaces, is the rest of the line.
    widths = [max(len(row[column]) for row in rows) for column in range(len(OPS_HEADER) - 1)]
    lines = []
    for row, listing in zip(rows, details):
        numbers = [row[0].rjust(widths[0]), row[1].ljust(widths[1]),
                   row[2].rjust(widths[2]), row[3].rjust(widths[3]), row[4].ljust(widths[4])]
        lines.append(" ".join(numbers + [row[5]]).rstrip())
        lines += listing
    return lines


NO_SAMPLES = ("no module load holds an ops sample (only a kernel booted with --race "
              "load-count takes one, before ftrace_lock)")


def ops_table(listed: Iterable[kernel_pb2.OpsInfo]) -> list[str]:
    """:func:`ops_lines` with the hashes, indented under a heading; ``none`` for no ops."""
    lines = ops_lines(list(listed), hashes=True)
    return [f"    {line}" for line in lines] + (["    none"] if len(lines) == 1 else [])


def filter_size(names: list[str]) -> str:
    """A filter's reach: an empty one selects every function."""
    if not names:
        return "empty: every function"
    return f"{len(names)} function{'s' if len(names) > 1 else ''}"


def sample_changes(sampled: Iterable[kernel_pb2.OpsInfo],
                   now: Iterable[kernel_pb2.OpsInfo]) -> list[str]:
    """What changed from a load's sample to the enabled ops now, a line each: an ops
    enabled or disabled since, a function added to (+) or removed from (-) a hash."""
    before, after = {ops.id: ops for ops in sampled}, {ops.id: ops for ops in now}
    changes = [f"{ops.name} ({ops.id}): enabled since: the new records will not count it"
               for ops in after.values() if ops.id not in before]
    changes += [f"{ops.name} ({ops.id}): disabled since: the new records will count it"
                for ops in before.values() if ops.id not in after]
    for ops_id in before.keys() & after.keys():
        old, new = before[ops_id], after[ops_id]
        for hash_name in ("filter", "notrace"):
            was, is_now = list(getattr(old, hash_name)), list(getattr(new, hash_name))
            kept = set(was) & set(is_now)
            edits = ([f"+{name}" for name in is_now if name not in kept]
                     + [f"-{name}" for name in was if name not in kept])
            if not edits:
                continue
            if hash_name == "filter" and not (was and is_now):
                edits.append(f"(was {filter_size(was)}, now {filter_size(is_now)})")
            changes.append(f"{old.name} ({ops_id}): {hash_name} {' '.join(edits)}")
        if old.hashes_truncated or new.hashes_truncated:
            changes.append(f"{old.name} ({ops_id}): hashes listed in part (the answer's "
                           "4 MiB): compare FILTER and NOTRACE")
    return changes


def sample_lines(listed: kernel_pb2.ListOpsResponse) -> list[str]:
    """``ops --samples``: each load's sample beside the enabled ops now, and the changes."""
    if not listed.load_samples:
        return [NO_SAMPLES]
    lines = []
    for sample in listed.load_samples:
        where = (f"paused at {BEFORE_COUNT}" if sample.paused
                 else "not paused: on its way to ftrace_lock")
        lines.append(f"module {sample.module}: loading by {sample.task.comm}/"
                     f"{sample.task.pid}, {where}")
        lines.append("  sampled without ftrace_lock (its new records' counts come from these):")
        lines += ops_table(sample.ops)
        lines.append("  enabled now (what ftrace_update_code() reads under ftrace_lock):")
        lines += ops_table(listed.enabled_ops)
        changes = sample_changes(sample.ops, listed.enabled_ops)
        lines.append("  changed since the sample, lost to its counts:" if changes
                     else "  nothing changed since the sample")
        lines += [f"    {change}" for change in changes]
    return lines


def run_daemon_tables(client: Client, args: argparse.Namespace,
                      notice: Callable[[str], str]) -> int:
    """``ops`` or ``stats``; ``notice(what)`` is what to say when ListOps has waited a
    second for ``what``."""
    if args.command == "stats":
        stats = as_dict(client.stats())
        print(json.dumps(stats) if args.json else "\n".join(stats_lines(stats)))
        return 0

    def waiting() -> str:
        return notice("ftrace_lock (Kernel.ListOps takes it)")

    if args.samples:
        answer = call_noting_wait(client.list_load_samples, waiting)
        if args.json:  # the answer's `ops` are the plain listing's, without their hashes
            fields = as_dict(answer)
            print(json.dumps({name: fields[name] for name in ("load_samples", "enabled_ops")}))
        else:
            print("\n".join(sample_lines(answer)))
        return 0
    listed = call_noting_wait(lambda: client.list_ops(include_hashes=args.hashes), waiting)
    if args.json:
        print(json.dumps([ops_dict(ops, args.hashes) for ops in listed]))
    else:
        print("\n".join(ops_lines(listed, args.hashes)))
    return 0
