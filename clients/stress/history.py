"""The history of a run: every operation a client invoked, when, and how it ended.

Each client process appends to a file of its own (``DIR/clients/NAME.jsonl``), one JSON
object a line, written and flushed line by line, so whatever happens to the daemon or
to the process, what was written stays readable: at most the line being written when a
process is killed is cut short, and the merge skips it. Events::

    {"ev": "start", "client": "shell0", "kind": "shell", "pid": 4242, "t": NS, "wall": S}
    {"ev": "invoke", "id": "shell0#17", "op": "write", "args": {...}, "t": NS, "wall": S}
    {"ev": "complete", "id": "shell0#17", "result": "ok", "errno": null, "value": {...},
     "lock_ns": [NS, ...], "t": NS, "wall": S}
    {"ev": "held", "t": NS, "wall": S}
    {"ev": "go", "t": NS, "wall": S}
    {"ev": "closing", "t": NS, "wall": S}
    {"ev": "end", "cpu_s": S, "t": NS, "wall": S}

``t`` is CLOCK_MONOTONIC in nanoseconds (one clock for every process of the machine, so
times of different clients compare), ``wall`` the Unix time. ``result`` is ``ok``,
``error`` (the kernel refused it: ``errno`` names the errno) or ``unknown`` (no answer:
the daemon went away mid-call). ``cpu_s`` of the end: the process's CPU time (every
thread) from the go to that line, so that what it spent on its operations is not
mixed with its exit (a Python process's teardown costs more than a hundred calls).
``held`` and ``go``: the worker parked between two operations while the checker held the
record writers for a snapshot, and went on (the merge passes them by). ``closing``: the
worker is done with its operations (told to stop, or its share of ``--ops`` done); what
it invokes after, a tracer's unregister of the ops it still has, is its leaving, not one
of the run's operations (:attr:`Op.closing`).
``lock_ns``: when the daemon says the operation acquired
ftrace_lock (filter writes, modprobe, rmmod, a tracer's register, set_filter and
unregister; empty for the others), on the same clock:
where operations overlapped, the order in which they took effect. An invoke without a
complete was in flight when its process died. :func:`merge` joins the files into
``DIR/history.jsonl``: one line per operation, ordered by invocation time (the fields of
:class:`Op`); once the report is written, the client files go (:func:`remove_client_files`).
"""

from __future__ import annotations

import glob
import heapq
import json
import os
import time
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterator

# One encoder for every line: json.dumps() with separators builds a new one per call.
_COMPACT = json.JSONEncoder(separators=(",", ":"))

RESULT_OK = "ok"
RESULT_ERROR = "error"
RESULT_UNKNOWN = "unknown"


@dataclass(slots=True)
class Op:
    """One operation of the merged history."""

    id: str
    client: str
    kind: str  # the client's kind: tracer, loader, shell, invoker, teardown
    pid: int
    op: str  # register, set_filter, unregister, modprobe, rmmod, write, invoke
    args: dict[str, Any]
    invoke_ns: int
    invoke_wall: float
    complete_ns: int | None = None  # None: no answer was recorded (still in flight)
    complete_wall: float | None = None
    result: str = RESULT_UNKNOWN
    errno: str | None = None
    value: dict[str, Any] | None = None
    lock_ns: list[int] = field(default_factory=list)  # ftrace_lock acquisitions
    closing: bool = False  # invoked as its client left (after its "closing" event)

    @property
    def ok(self) -> bool:
        return self.result == RESULT_OK

    @property
    def completed(self) -> bool:
        return self.complete_ns is not None

    def end_ns(self, horizon: int) -> int:
        """When it ended, or ``horizon`` for an operation that never answered."""
        return self.complete_ns if self.complete_ns is not None else horizon

    def effect_ns(self, horizon: int) -> int:
        """When it took effect, as far as the history tells: its first acquisition of
        ftrace_lock, else its end (``horizon`` for one that never answered)."""
        return self.lock_ns[0] if self.lock_ns else self.end_ns(horizon)

    def last_effect_ns(self, horizon: int) -> int:
        """When it last held ftrace_lock, else its end: a filter write matches records
        while it writes and moves its new hash in at its release, the last time."""
        return self.lock_ns[-1] if self.lock_ns else self.end_ns(horizon)

    def overlaps(self, start_ns: int, end_ns: int) -> bool:
        return self.invoke_ns <= end_ns and self.end_ns(end_ns) >= start_ns

    def to_json(self) -> str:
        # Not asdict(): it deep-copies every value, most of the merge's time.
        return _COMPACT.encode({name: getattr(self, name) for name in _OP_FIELDS})


_OP_FIELDS = tuple(f.name for f in fields(Op))


class Recorder:
    """Writes one client's events; every line reaches the file before the next operation."""

    def __init__(self, path: str, client: str, kind: str) -> None:
        self.client = client
        # Line buffering: each event is one write(2) of one whole line.
        self._file = open(path, "a", buffering=1, encoding="utf-8")
        self._seq = 0
        self._event({"ev": "start", "client": client, "kind": kind, "pid": os.getpid()})

    def _event(self, event: dict[str, Any]) -> None:
        event["t"] = time.monotonic_ns()
        event["wall"] = time.time()
        self._file.write(_COMPACT.encode(event) + "\n")

    def invoke(self, op: str, args: dict[str, Any]) -> str:
        self._seq += 1
        op_id = f"{self.client}#{self._seq}"
        self._event({"ev": "invoke", "id": op_id, "op": op, "args": args})
        return op_id

    def complete(self, op_id: str, result: str, errno: str | None = None,
                 value: dict[str, Any] | None = None, lock_ns: tuple[int, ...] = ()) -> None:
        self._event({"ev": "complete", "id": op_id, "result": result, "errno": errno,
                     "value": value, "lock_ns": list(lock_ns)})

    def held(self) -> None:
        self._event({"ev": "held"})

    def went(self) -> None:
        self._event({"ev": "go"})

    def closing(self) -> None:
        self._event({"ev": "closing"})

    def close(self, cpu_s: float | None = None) -> None:
        self._event({"ev": "end", "cpu_s": cpu_s})
        self._file.close()


def read_events(path: str) -> Iterator[dict[str, Any]]:
    """The events of one client file; a line cut short by a kill is skipped."""
    with open(path, encoding="utf-8", errors="replace") as events:
        for line in events:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


@dataclass
class ClientLog:
    """What one client file says about its process (its operations go by, not kept)."""

    client: str
    kind: str
    pid: int
    operations: int = 0  # how many it invoked
    ended_ns: int | None = None  # when it wrote its "end" event
    cpu_s: float | None = None  # its CPU from the go to its end event

    @property
    def ended(self) -> bool:
        """It wrote its "end" event: it stopped on its own."""
        return self.ended_ns is not None


def client_ops(path: str, logs: list[ClientLog]) -> Iterator[Op]:
    """One client file's operations in the order it invoked them, each once its complete
    event is read (or the file ends: it was in flight when its process died); its
    ClientLog is appended to ``logs`` at its start event and filled in as the file is
    read. A client does one operation at a time, so what is held is one operation, not
    the file."""
    log: ClientLog | None = None
    pending: deque[Op] = deque()  # invoked, not yet given, in invocation order
    by_id: dict[str, Op] = {}
    closing = False
    for event in read_events(path):
        kind = event.get("ev")
        if kind == "start":
            log = ClientLog(event["client"], event["kind"], event["pid"])
            logs.append(log)
        elif log is None:
            continue
        elif kind == "invoke":
            op = Op(event["id"], log.client, log.kind, log.pid, event["op"], event["args"],
                    event["t"], event["wall"], closing=closing)
            by_id[op.id] = op
            pending.append(op)
            log.operations += 1
        elif kind == "complete" and event["id"] in by_id:
            op = by_id.pop(event["id"])
            op.complete_ns, op.complete_wall = event["t"], event["wall"]
            op.result, op.errno, op.value = event["result"], event["errno"], event["value"]
            op.lock_ns = event.get("lock_ns") or []
            while pending and pending[0].completed:
                yield pending.popleft()
        elif kind == "closing":
            closing = True
        elif kind == "end":
            log.ended_ns, log.cpu_s = event["t"], event.get("cpu_s")
    yield from pending


def client_files(out_dir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(out_dir, "clients", "*.jsonl")))


def merge(out_dir: str, consume: Callable[[Op], None]) -> list[ClientLog]:
    """Join the client files into ``DIR/history.jsonl``, ordered by invocation time, and
    hand each operation to ``consume`` in that order; returns each client's log. Each
    file is in its client's invocation order already: a k-way merge of the files read
    side by side, holding an operation a client, not the history."""
    logs: list[ClientLog] = []
    streams = [client_ops(path, logs) for path in client_files(out_dir)]
    path = os.path.join(out_dir, "history.jsonl")
    with open(path + ".tmp", "w", encoding="utf-8") as history:
        for op in heapq.merge(*streams, key=lambda op: (op.invoke_ns, op.id)):
            history.write(op.to_json() + "\n")
            consume(op)
    os.replace(path + ".tmp", path)
    return logs


def remove_client_files(out_dir: str) -> None:
    """The client files, once :func:`merge` has written what they say into history.jsonl
    (and the report has their ends and CPU): two copies of every operation would double
    what a run leaves on disk."""
    for path in client_files(out_dir):
        os.unlink(path)
