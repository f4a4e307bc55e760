"""From the history of a run to the smallest script that shows its anomaly again.

1. The target: the strongest anomaly of the run (a WARN, else a KASAN report, else the
   first anomaly), and its horizon, the moment it was seen. A missing reference and the
   WARN it turns into once its ops is disabled count as one.
2. The sequential candidates: the operations invoked before the horizon as
   ``ftrace-shell`` commands (:mod:`clients.stress.commands`), in the order they took
   effect (the daemon reports when a filter write, a modprobe, a rmmod or a tracer
   client's register, set_filter or unregister acquired ftrace_lock; an operation
   without such a time counts at its completion), then in the order they last held it
   (a filter write matches records while it writes and moves its hash in at its
   release, and a module load between the two is on one side for the matching and on
   the other for the move), then in the order they were invoked.
   Invocations and module operations that changed nothing are left out. Tracer clients'
   operations are left out too (no shell command edits their hashes); if that does not
   reproduce, the tracer sessions named by the anomaly, then those registered before
   the horizon (newest first, those of the task a WARN's ``Pid:`` line names before the
   others), are tried each on its own, mapped onto the function tracer, with the loaders'
   operations and without the shells', in the order they took effect, then in the order
   they last held ftrace_lock (a set_filter, too, matches at its first hold and moves its
   hash in at its last). A candidate whose commands an earlier one had is not replayed
   again. If none shows the run's anomaly, one that shows another (a WARN, a count
   error) is taken, and the report says so.
3. Each candidate is replayed on a fresh daemon with the run's boot options, the kernel
   looked at after every command. One that shows the target is cut after the command
   that showed it, then to the commands that can touch the anomaly's module, then
   without switches to the tracer already set (each cut kept only if it still
   reproduces), then by delta debugging (ddmin, Zeller and Hildebrandt 2002, over
   complements, one command at a time at the end) to a 1-minimal list, each test a
   replay. A script that leaves a missing reference is tried with the run's teardown
   after it (``echo nop > current_tracer``), which makes the kernel WARN.
4. The result is written as ``repro.sh`` (ending in ``dmesg | grep WARNING`` where the
   kernel reports it) and run once more by ``ftrace-shell --spawn`` to confirm it.

What the search holds is bounded whatever the length of the run (:class:`SearchInput`):
of the operations invoked before the horizon, the last :data:`SEARCH_WINDOW` (as
history.merge() streams them by), and of those before that window only the ones whose
effect the kernel may still hold when the window begins: the last load of each module
still loaded, the loads and unloads that kept writes came between (the records an
unload leaves named in a hash, 8c4f3c3's), the last switch of current_tracer, each
filter file's writes since it was last truncated and each tracer session still
registered (at most :data:`KEPT_WRITES` writes a file or a session, or load and unload
pairs a module). A run shorter than the window is searched whole; for a longer one the
report says how many operations were left out and what stood for them.

When no sequential candidate reproduces, the anomaly needs two operations to overlap: a
race. The run's race windows say which failpoint holds which operation in the window;
pairs of operations that overlapped in the run are replayed as interleavings (the held
one paused at the failpoint, the other run meanwhile), with as little sequential setup
before them as still reproduces. One that leaves the missing reference a run's WARN comes
from is tried, as a script is, with the run's teardown after the two, and is said to show
the WARN only if its replay does.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from clients.stress.checker import Anomaly, dmesg_kind
from clients.stress.commands import (CD_TRACING, STATELESS_OPS, changes_nothing,
                                     collapse_tracer_switches, command_touches, echo,
                                     op_commands, session_commands)
from clients.stress.config import RACE_SITES, BootSpec
from clients.stress.history import Op
from clients.stress.replay import (Observation, Replayer, call_trace, confirm_with_shell,
                                   warn_path)

#: How many of the operations invoked before the horizon the search holds: the last ones
#: (an Op is about 1.4 KB; 20000 of them, with their candidates' lines, some 60 MB).
SEARCH_WINDOW = 20_000
#: Writes kept of a filter file since its truncation, and of a tracer session since its
#: registration, for the operations before the window: the oldest beyond go.
KEPT_WRITES = 256
#: Tracer sessions tried one by one when the shells' and loaders' operations alone do not
#: reproduce.
MAX_SESSIONS = 3
#: Overlapping pairs tried as interleavings.
MAX_PAIRS = 4
#: dump_stack()'s first line in a WARN: the task that drove the count out of range.
_REPORTING_TASK = re.compile(r"\bPid: (\d+), comm: ")
#: Operations whose effect is a hash walk (``__ftrace_hash_rec_update``).
_HASH_OPS = frozenset({"write", "register", "set_filter", "unregister"})


@dataclass(frozen=True)
class Target:
    """The anomaly a reproducer must show again."""

    source: str
    kind: str
    module: str
    message: str
    horizon_ns: int

    @classmethod
    def of(cls, anomalies: list[Anomaly]) -> "Target":
        def rank(a: Anomaly) -> int:
            return {"WARNING": 0, "KASAN": 1}.get(a.kind, 2) if a.source == "dmesg" else 2
        best = min(anomalies, key=lambda a: (rank(a), a.seen_to_ns))
        # A WARN names no module: the one of a missing reference (what the WARN's
        # underflow comes from) before that of a leak, which never becomes a WARN; one
        # seen before ftrace_kill() before one seen after (what the aborted update left).
        named = sorted((a for a in anomalies if a.module),
                       key=lambda a: (a.after_ftrace_kill, a.kind != "missing reference",
                                      a.seen_to_ns))
        module = best.module or (named[0].module if named else "")
        return cls(best.source, best.kind, module, best.message, best.seen_to_ns)

    @classmethod
    def strongest(cls, seen: Observation, horizon_ns: int) -> "Target":
        """The strongest anomaly a replay showed: a WARN, a KASAN report, a count error."""
        module = seen.anomalies[0][1] if seen.anomalies else ""
        for kind in ("WARNING", "KASAN"):
            # Exactly: a missing reference alone "shows" the WARN it would become, but
            # there is no report of it to quote.
            if seen.shows_exactly("dmesg", kind):
                message = next(r for r in seen.reports if dmesg_kind(r) == kind)
                return cls("dmesg", kind, module, message, horizon_ns)
        (source, kind), _ = min(seen.kinds.items(), key=lambda item: item[1])
        message, module, _ = seen.anomalies[0]
        return cls(source, kind, module, message, horizon_ns)

    def seen_after(self, seen: Observation) -> int | None:
        """After how many commands of a replay it showed, or None."""
        return seen.first(self.source, self.kind)

    def describe(self) -> str:
        if self.source == "dmesg" or self.message.startswith(self.kind):
            return self.message
        return f"{self.kind}: {self.message}"

    @property
    def grep(self) -> str | None:
        """What to grep dmesg for at the script's end; None when only the check sees it."""
        return {"WARNING": "WARNING", "KASAN": "KASAN"}.get(self.kind) \
            if self.source == "dmesg" else None


@dataclass(frozen=True)
class Line:
    """A candidate command and the operation it stands for."""

    command: str
    op: Op


@dataclass
class Reproducer:
    kind: str  # "sequential", "interleaving", "none"
    target: Target
    lines: list[Line] = field(default_factory=list)
    candidates: int = 0  # commands of the candidate it was cut down from
    confirmed: bool = False
    confirmation: str = ""
    replays: int = 0
    notes: list[str] = field(default_factory=list)
    interleaving: dict[str, Any] | None = None
    script: str = ""

    @property
    def commands(self) -> list[str]:
        return [line.command for line in self.lines]


def digest(parts: Iterable[str]) -> bytes:
    """A key for a list of strings (lines of a replay), of a fixed size."""
    hashed = hashlib.blake2b(digest_size=16)
    for part in parts:
        data = part.encode()
        hashed.update(len(data).to_bytes(8, "little") + data)
    return hashed.digest()


def distinct(candidates: list[tuple[str, list[Line]]]) -> list[tuple[str, list[Line]]]:
    """The candidates with commands, each list of commands once (the first to have it):
    two orders often put the same commands in the same order, and a replay of the
    second would show what the first did."""
    seen: set[tuple[str, ...]] = set()
    kept = []
    for what, lines in candidates:
        commands = tuple(line.command for line in lines)
        if commands and commands not in seen:
            seen.add(commands)
            kept.append((what, lines))
    return kept


def took_effect(op: Op) -> bool:
    """Whether an operation may have changed the kernel: it succeeded, it never answered,
    or it wrote a filter file (whose release installs the hash even after a failed write)."""
    return (op.ok or not op.completed
            or (op.op == "write" and op.args["file"] != "current_tracer" and op.errno != "ENODEV"))


class SearchInput:
    """What the search takes of a run's history as history.merge() streams it by, in
    invocation order: the operations invoked by the horizon, the run's teardown, and
    nothing else. Of the operations before the horizon it holds the last ``window``; one
    that falls out of the window is kept only if the kernel may still hold its effect
    when the window begins: each module's last load while it is loaded, and a load and
    its unload when a write kept came between them (a filter that named the module's
    functions then still names their addresses, and a load at the same address meets
    them: 8c4f3c3's WARN), the last switch of current_tracer, a filter file's writes
    since the last one that truncated it, a registered tracer session's registration
    and filter changes (dropped by its unregistration), at most KEPT_WRITES writes a
    file or a session, or load and unload pairs a module, the oldest going first. So
    what it holds is bounded by the window, the modules, the filter files and the
    tracer clients (a session each at most), not by the length of the run. This is the
    state the window begins in as far as the history says it, not the kernel's."""

    def __init__(self, horizon_ns: int, window: int = SEARCH_WINDOW) -> None:
        self.horizon_ns = horizon_ns
        self._window: deque[Op] = deque(maxlen=window)
        self._teardown: list[Op] = []
        self.earlier = 0  # operations that fell out of the window
        self._loads: dict[str, Op] = {}  # module -> its last load, while it is loaded
        # module -> its loads and unloads that fell out of the window, in pairs
        self._cycles: dict[str, deque[tuple[Op, Op]]] = {}
        self._tracer: Op | None = None  # the last switch of current_tracer
        self._filters: dict[str, _Kept] = {}  # file -> writes since its truncation
        # A tracer client's live session (one at a time): its registration, its filter
        # changes since.
        self._sessions: dict[str, tuple[Op, _Kept]] = {}

    def add(self, op: Op) -> None:
        """The next operation of the history (they come in invocation order)."""
        if op.kind == "teardown":
            self._teardown.append(op)
        elif op.invoke_ns <= self.horizon_ns:
            if len(self._window) == self._window.maxlen:
                self._fold(self._window[0])
            self._window.append(op)

    def _fold(self, op: Op) -> None:
        """``op`` falls out of the window: keep it if the kernel may still hold its effect."""
        self.earlier += 1
        if op.op == "unregister":
            # Refused, the worker cancels its session's stream, which unregisters it too.
            self._sessions.pop(op.client, None)
            return
        if op.op in STATELESS_OPS or changes_nothing(op) or not took_effect(op):
            return
        if op.op == "modprobe":
            self._loads[op.args["module"]] = op
        elif op.op == "rmmod":
            load = self._loads.pop(op.args["module"], None)
            if load is not None:
                self._cycles.setdefault(op.args["module"], deque(maxlen=KEPT_WRITES)).append(
                    (load, op))
        elif op.op == "write" and op.args["file"] == "current_tracer":
            self._tracer = op
        elif op.op == "write":
            if not op.args["append"]:
                self._filters[op.args["file"]] = _Kept(KEPT_WRITES)
            self._filters.setdefault(op.args["file"], _Kept(KEPT_WRITES)).add(op)
        elif op.op == "register":
            self._sessions[op.client] = (op, _Kept(KEPT_WRITES - 1))
        elif op.op == "set_filter" and op.client in self._sessions:
            register, changes = self._sessions[op.client]
            if register.args["name"] == op.args["name"]:
                changes.add(op)

    @property
    def dropped(self) -> int:
        """Writes gone beyond KEPT_WRITES of a file or a session the kernel still holds."""
        return (sum(kept.dropped for kept in self._filters.values())
                + sum(changes.dropped for _, changes in self._sessions.values()))

    @property
    def ops(self) -> list[Op]:
        """What the search is handed, in the history's order (invocation time, then id)."""
        writes = [*(op for kept in self._filters.values() for op in kept.writes),
                  *(op for register, changes in self._sessions.values()
                    for op in (register, *changes.writes))]
        times = sorted(op.invoke_ns for op in writes)
        cycles = [op for pairs in self._cycles.values() for load, unload in pairs
                  if bisect.bisect_right(times, load.invoke_ns)
                  < bisect.bisect_left(times, unload.invoke_ns)
                  for op in (load, unload)]
        kept = [*self._loads.values(), *cycles, *([self._tracer] if self._tracer else []),
                *writes, *self._window, *self._teardown]
        return sorted(kept, key=lambda op: (op.invoke_ns, op.id))

    @property
    def note(self) -> str:
        """What the report says of the window, "" when the search has every operation."""
        if not self.earlier:
            return ""
        kept = len(self.ops) - len(self._window) - len(self._teardown)
        return (f"the search holds the last {len(self._window)} operations invoked before "
                f"the anomaly was seen; the {self.earlier} before them are left out but "
                f"{kept} whose effect the kernel may still hold when those begin (each "
                "module's last load, the loads and unloads those writes came between, the "
                "last switch of current_tracer, each filter file's writes since it was "
                "truncated, the live tracer sessions)"
                + (f", less {self.dropped} writes beyond the last {KEPT_WRITES} of a file "
                   "or session" if self.dropped else ""))


class _Kept:
    """The last writes of a filter file since its truncation, or of a session since its
    registration, and how many older ones went."""

    __slots__ = ("writes", "dropped")

    def __init__(self, most: int) -> None:
        self.writes: deque[Op] = deque(maxlen=most)
        self.dropped = 0

    def add(self, op: Op) -> None:
        self.dropped += len(self.writes) == self.writes.maxlen
        self.writes.append(op)


def _gives_references(op: Op) -> bool | None:
    """True for an operation that gives every traced record a reference (the function
    tracer switched on, an ops registered), False for one that takes them away (another
    tracer, an unregister), None for a filter change, which does either by its patterns,
    and for an operation the kernel refused, which did neither."""
    if op.errno is not None:
        return None
    if op.op in ("register", "unregister"):
        return op.op == "register"
    if op.op == "write" and op.args["file"] == "current_tracer":
        return op.args["text"] == "function"
    return None


# After every time: an operation that never answered takes effect last.
_LATE = 1 << 63
#: From this many commands down, ddmin removes one command at a time: the granularity
#: it would reach next costs more tests than the commands it could still remove.
ONE_BY_ONE = 16


def ddmin(items: list[Line], test: Callable[[list[Line]], bool],
          budget: Callable[[], bool]) -> list[Line]:
    """A 1-minimal sublist of ``items`` (which must pass ``test``) that still passes.

    Complements only: the target needs several commands together, which a single chunk
    of a split rarely holds, and with two chunks each complement is the other chunk.
    Stops early, with what it has, when ``budget()`` says no more tests.
    """
    n = 2
    while len(items) > ONE_BY_ONE and budget():
        size = len(items) / n
        chunks = [items[round(i * size):round((i + 1) * size)] for i in range(n)]
        for i in range(n):
            complement = [x for j, chunk in enumerate(chunks) if j != i for x in chunk]
            if not budget():
                return items
            if complement and test(complement):
                items, n = complement, max(n - 1, 2)
                break
        else:
            if n >= len(items):
                # One command a chunk and none can go: finer is no finer, and the same
                # tests again are answered from the replay cache, which no budget counts.
                break
            n = min(len(items), 2 * n)
    return one_by_one(items, test, budget)


def one_by_one(items: list[Line], test: Callable[[list[Line]], bool],
               budget: Callable[[], bool]) -> list[Line]:
    """ddmin's last round: drop each command that is not needed, in passes over the list
    until one drops nothing (every command left is then needed)."""
    dropped = True
    while dropped and budget():
        dropped = False
        i = 0
        while i < len(items) and budget():
            candidate = items[:i] + items[i + 1:]
            if test(candidate):
                items, dropped = candidate, True
            else:
                i += 1
    return items


class Minimizer:
    def __init__(self, boot: BootSpec, ops: list[Op], anomalies: list[Anomaly],
                 modules: dict[str, list[str]], out_dir: str, start_ns: int, max_replays: int,
                 log: Callable[[str], None] = lambda message: None,
                 window_note: str = "") -> None:
        """``ops``: the history up to the anomaly's horizon, and the run's teardown;
        ``window_note``: what the report says of operations left out of them
        (:attr:`SearchInput.note`)."""
        # A pause armed on the user's daemon (the run released it at its stop) would
        # hold every replay that reaches it: the replays boot without it.
        self.boot = boot.without_pauses()
        self.ops = ops
        self.anomalies = anomalies
        self.modules = modules
        self.out_dir = out_dir
        self.start_ns = start_ns
        self.max_replays = max_replays
        self.log = log
        self.window_note = window_note
        self.target = Target.of(anomalies)
        # By a digest of the lines: a key of their commands would hold every candidate.
        self._cache: dict[bytes, Observation] = {}

    # --- candidates -------------------------------------------------------------

    def _before_horizon(self) -> list[Op]:
        """Operations invoked before the target was seen, in the order they took effect:
        when they first held ftrace_lock, else when they completed (those that never
        answered last, in invocation order)."""
        return sorted((op for op in self.ops if op.invoke_ns <= self.target.horizon_ns),
                      key=lambda op: (op.effect_ns(_LATE), op.invoke_ns))

    def _plain_lines(self, ops: list[Op]) -> list[Line]:
        """The loaders', shells' and teardown's operations that may change something."""
        return [Line(command, op) for op in ops
                if op.kind != "tracer" and not changes_nothing(op)
                for command in (op_commands(op) or [])]

    def _session_lines(self, ops: list[Op], session: str) -> list[Line]:
        """One tracer session's successful operations on the function tracer, with the
        loaders' operations, in the order of ``ops``."""
        return [Line(command, op) for op in ops
                if (op.kind == "tracer" and op.args.get("name") == session and op.ok)
                or (op.op in ("modprobe", "rmmod") and not changes_nothing(op))
                for command in (session_commands(op) if op.kind == "tracer"
                                else op_commands(op) or [])]

    def _sessions(self, ops: list[Op]) -> list[str]:
        """Tracer sessions to try: those named by an anomaly, then those registered
        before the horizon, newest first; among the latter, the sessions of the task that
        printed a WARN come first (the hash walk that went below zero ran in its system
        call)."""
        known = {op.args["name"] for op in ops if op.kind == "tracer"}
        named = [name for a in self.anomalies for name in a.ops if name in known]
        reporting = {int(match.group(1)) for a in self.anomalies if a.source == "dmesg"
                     for line in a.detail if (match := _REPORTING_TASK.search(line))}
        registered = sorted((op for op in reversed(ops) if op.kind == "tracer"
                             and op.op == "register" and op.ok),
                            key=lambda op: op.pid not in reporting)
        return list(dict.fromkeys(named + [op.args["name"] for op in registered]))[
            :MAX_SESSIONS]

    # --- replays ----------------------------------------------------------------

    def _budget(self) -> bool:
        return self.replayer.replays < self.max_replays

    def _observe(self, lines: list[Line]) -> Observation:
        """Replay on a fresh daemon (once per list of lines)."""
        key = digest(line.command + "\0" + line.op.id for line in lines)
        if key not in self._cache:
            seen = self._cache[key] = self.replayer.sequential([line.command for line in lines])
            self.log(f"replay {self.replayer.replays}: {len(lines)} commands: {seen.summary()}")
        return self._cache[key]

    def _replay(self, lines: list[Line]) -> int | None:
        """After how many of the lines the target showed in a replay, or None."""
        return self.target.seen_after(self._observe(lines))

    def _reproduces(self, lines: list[Line]) -> bool:
        return self._replay(lines) is not None

    def _cut_down(self, lines: list[Line]) -> list[Line]:
        """``lines`` reproduce; what follows the step that showed the target goes, then
        what cannot touch the module of the anomaly they show and switches to the tracer
        already set (each kept only if the rest still reproduces), then ddmin."""
        step = self._replay(lines)
        lines = lines[:step]
        module = self._observe(lines).module_at(step)
        for cut in (lambda ls: self._touching(ls, module), self._without_idle_switches):
            shorter = cut(lines)
            step = (self._replay(shorter) if len(shorter) < len(lines) and self._budget()
                    else None)
            if step is not None:
                lines = shorter[:step]
        return ddmin(lines, self._reproduces, self._budget)

    def _touching(self, lines: list[Line], module: str) -> list[Line]:
        functions = self.modules.get(module)
        if functions is None:
            return lines
        return [line for line in lines if command_touches(line.command, module, functions)]

    @staticmethod
    def _without_idle_switches(lines: list[Line]) -> list[Line]:
        return [lines[i] for i in collapse_tracer_switches([line.command for line in lines])]

    # --- the whole search -------------------------------------------------------

    def run(self) -> Reproducer:
        with Replayer(self.boot) as self.replayer:
            found = self._sequential()
            if found.kind == "none":
                self._interleaving(found)
            else:
                self._settle(found)
            found.replays = self.replayer.replays
        found.script = self._script(found)
        with open(os.path.join(self.out_dir, "repro.sh"), "w", encoding="utf-8") as script:
            script.write(found.script)
        if found.kind == "sequential":
            self._confirm(found)
        return found

    def _sequential(self) -> Reproducer:
        ops = self._before_horizon()
        notes = [self.window_note] if self.window_note else []
        skipped = [op for op in ops if op.op in STATELESS_OPS or changes_nothing(op)]
        if skipped:
            notes.append(f"{len(skipped)} operations that change no record, hash or module "
                         "(invocations, refused or no-op modprobe/rmmod) are left out")
        tracer_ops = [op for op in ops if op.kind == "tracer"]
        # The daemon says when a filter write, a module load or unload, or a tracer
        # client's request held ftrace_lock; an operation that reports no time takes
        # effect somewhere between its invocation and its completion, where the
        # invocation order may be the one that replays the run.
        orders = [("in the order they took ftrace_lock", ops),
                  ("in the order they last held it",
                   sorted(ops, key=lambda op: (op.last_effect_ns(_LATE), op.invoke_ns)))]
        invoked = ("in invocation order", sorted(ops, key=lambda op: op.invoke_ns))
        candidates = [(f"the shells' and loaders' operations {order}", self._plain_lines(by))
                      for order, by in [*orders, invoked]]
        if tracer_ops:
            notes.append(f"{len(tracer_ops)} tracer-client operations have no shell command "
                         "(their ops' hashes are their own): left out of the shells' and "
                         "loaders' candidates")
            # A set_filter matches records at its first hold of ftrace_lock and moves its
            # hash in at its last, as a filter write does.
            candidates += [(f"tracer session {session} mapped onto the function tracer "
                            "(set_ftrace_filter/notrace, current_tracer), with the loaders' "
                            f"operations and without the shells', {order}",
                            self._session_lines(by, session))
                           for session in self._sessions(ops) for order, by in orders]
        tried = []
        for what, lines in distinct(candidates):
            if not self._budget():
                notes.append("replay budget spent")
                break
            seen = self._observe(lines)
            tried.append((lines, seen))
            reproduced = self.target.seen_after(seen) is not None
            notes.append(f"candidate: {what}: {len(lines)} commands: "
                         + ("reproduced" if reproduced else seen.summary()))
            if reproduced:
                return self._found(lines, notes)
        # The run's own anomaly does not recur; another one the same operations cause
        # (a WARN, a count error) is the next best thing.
        for lines, seen in tried:
            if seen.any:
                self.target = Target.strongest(seen, self.target.horizon_ns)
                notes.append(f"the run's anomaly did not recur; this reproducer shows "
                             f"another one its operations cause: {self.target.message}")
                return self._found(lines, notes)
        notes.append("no sequential reproducer: replayed one after the other on a fresh "
                     f"daemon, no candidate shows the anomaly ({self.target.kind})")
        return Reproducer("none", self.target, notes=notes)

    def _found(self, lines: list[Line], notes: list[str]) -> Reproducer:
        best = self._cut_down(lines)
        if not self._budget():
            notes.append("replay budget spent: the reproducer may not be minimal")
        return Reproducer("sequential", self.target, best, len(lines), notes=notes)

    def _settle(self, found: Reproducer) -> None:
        """What the minimal script shows at its end becomes the target: the kernel's own
        report where there is one, else the check's anomaly. A missing reference becomes
        the kernel's WARN once its ops is disabled: the run's own teardown is tried after
        it, as the run did it."""
        seen = self._observe(found.lines)
        if self.target.source == "dmesg" and seen.shows_exactly("dmesg", self.target.kind):
            return
        teardown = self._teardown()
        if teardown and self._budget():
            with_teardown = self._observe(found.lines + teardown)
            if with_teardown.shows_exactly("dmesg", "WARNING"):
                found.lines += teardown
                found.notes.append(self._teardown_note(teardown, with_teardown))
                seen = with_teardown
        self.target = found.target = Target.strongest(seen, self.target.horizon_ns)

    def _teardown_note(self, teardown: list[Line], seen: Observation) -> str:
        """What the run's teardown, added as the script's last lines, does: the script
        cut down left the missing reference; the teardown's disable WARNs. Through which
        path it WARNs, and the run's WARN did, when the two differ."""
        commands = "; ".join(line.command for line in teardown)
        note = (f"cut down, the script left the missing reference, not the WARN; its last "
                f"line{'s' * (len(teardown) > 1)}, the run's teardown ({commands}), added "
                f"by the search, make{'s' * (len(teardown) == 1)} the kernel WARN")
        warned = next((a for a in self.anomalies if a.source == "dmesg"
                       and a.kind == "WARNING"), None)
        message = next((r for r in seen.reports if dmesg_kind(r) == "WARNING"), "")
        script_path = warn_path(seen.traces.get(message, []))
        run_path = warn_path(call_trace(warned.detail[1:])) if warned else ""
        if script_path and run_path and script_path != run_path:
            note += (f" through {script_path}, where the run's WARN came through "
                     f"{run_path}")
        return note

    def _teardown(self) -> list[Line]:
        """The run's teardown (``echo nop > current_tracer``), as lines."""
        return [Line(command, op) for op in self.ops if op.kind == "teardown"
                for command in op_commands(op) or []]

    def _interleaving(self, found: Reproducer) -> None:
        """Turn ``found`` (no sequential reproducer) into an interleaving, if one fits.

        First each pair with no setup, with the tracer's state when the held operation
        started, and with the state the pair needs (:meth:`_needed`), one replay each;
        then with the operations that touch the anomaly's module and completed before the
        two met, cut down by ddmin. Each must show the run's anomaly again; when none
        does, the first that showed another is given, and says so; when none showed any,
        the first pair with the state it needs, as not verified."""
        races = self.boot.races
        if not races:
            found.notes.append("no race window was open: no interleaving to try")
            return
        pairs = [_Pair(race, held, racing, self._before_horizon())
                 for race, held, racing in self._pairs(races)[:MAX_PAIRS]]
        if not pairs:
            found.notes.append("no two overlapping operations of the run fit the open race "
                               "windows")
            return
        found.kind = "interleaving"
        other: tuple[_Pair, list[Line]] | None = None

        def reproduces(pair: _Pair, prefix: list[Line]) -> bool:
            nonlocal other
            seen = pair.observe(self, prefix)
            if seen is None or not seen.any:
                return False
            if self.target.seen_after(seen) is not None:
                return True
            other = other or (pair, prefix)
            return False

        for pair in pairs:
            for prefix in ([], self._tracer_state(pair.held.invoke_ns), self._needed(pair)):
                if self._budget() and reproduces(pair, prefix):
                    found.interleaving = self._settle_interleaving(pair, prefix, found)
                    return
        for pair in pairs:
            # Completed before the two met: a modprobe that overlapped the held operation
            # but ended before the racing one began loaded what the racing one unloads.
            met = max(pair.held.invoke_ns, pair.racing.invoke_ns)
            earlier = self._touching(self._plain_lines(
                [op for op in self._before_horizon() if op.complete_ns is not None
                 and op.complete_ns < met and op not in (pair.held, pair.racing)]),
                self.target.module)
            if self._budget() and reproduces(pair, earlier):
                prefix = ddmin(earlier, lambda lines: reproduces(pair, lines), self._budget)
                found.interleaving = self._settle_interleaving(pair, prefix, found)
                return
        if other is not None:
            found.notes.append("no interleaving tried showed the run's anomaly again: the "
                               "first that showed another one is given")
            found.interleaving = self._interleaving_json(*other, pair_seen(*other))
            return
        found.notes.append("no interleaving tried showed an anomaly: the first pair is given "
                           "with the setup the history says it needs, not verified")
        found.interleaving = self._interleaving_json(pairs[0], self._needed(pairs[0]), None)

    def _settle_interleaving(self, pair: "_Pair", prefix: list[Line],
                             found: Reproducer) -> dict[str, Any]:
        """The interleaving that showed the run's anomaly, as :meth:`_settle` does a
        script: a missing reference counts as the WARN it becomes once its ops is
        disabled, but the replay WARNed only if it shows the WARN itself. If it does not,
        the run's teardown after the two (``echo nop > current_tracer``) is tried, and
        kept as the last step if the kernel then WARNs; else the interleaving is given as
        showing the missing reference that precedes the run's WARN, not the WARN."""
        seen = pair_seen(pair, prefix)
        assert seen is not None
        if self.target.source != "dmesg" or seen.shows_exactly("dmesg", self.target.kind):
            return self._interleaving_json(pair, prefix, seen)
        teardown = [line.command for line in self._teardown()]
        if teardown and self._budget():
            with_teardown = pair.observe(self, prefix, teardown)
            if with_teardown is not None and with_teardown.shows_exactly("dmesg",
                                                                         self.target.kind):
                found.notes.append("the interleaving leaves a missing reference; the run's "
                                   f"teardown ({'; '.join(teardown)}) after it makes the "
                                   "kernel WARN")
                return self._interleaving_json(pair, prefix, with_teardown, teardown)
        found.notes.append("the interleaving leaves the missing reference the run's WARN "
                           "comes from, but no replay of it WARNed"
                           + (f", not even with the run's teardown ({'; '.join(teardown)}) "
                              "after it" if teardown else ""))
        return self._interleaving_json(pair, prefix, seen)

    def _needed(self, pair: "_Pair") -> list[Line]:
        """The state the pair needs, as the history has it: the module a racing rmmod
        unloads loaded (its last load completed before the rmmod began), and the
        tracer's state the pair's hash update changed (the last switch that took effect
        before it did); in the order they took effect. That state, not the one when the
        held operation began: a switch between the two is what the update changed (a
        load-count run leaked dummy's references with the tracer off when its modprobe
        began, then switched on and, racing it, off; replayed from the state at the
        modprobe's start, the switch off changed nothing, and the interleaving went
        unverified in 2 of some 9 whole-suite runs). Only the racing operation is a rmmod
        (:meth:`_pairs` holds a hash update for one), so the module is loaded once."""
        lines = self._tracer_state(pair.update.effect_ns(_LATE))
        rmmod = pair.racing
        if rmmod.op == "rmmod":
            loads = [o for o in self._before_horizon() if o.op == "modprobe" and o.ok
                     and not changes_nothing(o) and o.args["module"] == rmmod.args["module"]
                     and o.complete_ns is not None and o.complete_ns < rmmod.invoke_ns]
            if loads:
                lines += [Line(command, loads[-1]) for command in op_commands(loads[-1]) or []]
        return sorted(lines, key=lambda line: line.op.effect_ns(_LATE))

    def _tracer_state(self, before_ns: int) -> list[Line]:
        """``echo function > current_tracer`` if that was the last switch to take effect
        (when it held ftrace_lock) before ``before_ns``."""
        switches = [op for op in self._before_horizon() if op.op == "write" and op.ok
                    and op.args["file"] == "current_tracer" and op.completed
                    and op.effect_ns(_LATE) < before_ns]
        if switches and switches[-1].args["text"] == "function":
            return [Line(echo("function", "current_tracer"), switches[-1])]
        return []

    def _pairs(self, races: list[str]) -> list[tuple[str, Op, Op]]:
        """(race, held, racing): operations that overlapped in the run, the one to hold in
        the window first; those of the anomaly's module, then those whose racing operation
        switches the tracer (which changes every record's count), nearest the horizon
        first."""
        ops = [op for op in self._before_horizon() if took_effect(op)]
        horizon = self.target.horizon_ns
        pairs = []
        for race in races:
            if race == "unload-unlocked":
                held_ops = [op for op in ops if op.op in _HASH_OPS]
                racing_ops = [op for op in ops if op.op == "rmmod"]
            else:
                held_ops = [op for op in ops if op.op == "modprobe" and not changes_nothing(op)]
                racing_ops = [op for op in ops if op.op in _HASH_OPS]
            for held in held_ops:
                end = held.end_ns(horizon)
                for racing in racing_ops:
                    if racing is not held and racing.overlaps(held.invoke_ns, end):
                        pairs.append((race, held, racing))

        def rank(pair: tuple[str, Op, Op]) -> tuple[bool, bool, bool, int]:
            race, held, racing = pair
            module_op, update = roles(race, held, racing)
            return (module_op.args.get("module") != self.target.module,
                    race == "load-count" and self._loses_the_other_way(racing),
                    update.args.get("file") != "current_tracer", horizon - held.invoke_ns)
        return sorted(pairs, key=rank)

    def _loses_the_other_way(self, racing: Op) -> bool:
        """Under load-count a module's counts miss the update made while it loaded: an
        update that gives references (a tracer switched on, an ops registered) leaves
        them missing, one that takes them away leaves them leaked. Whether ``racing``
        is known to lose in the direction opposite to the anomaly's (a filter write
        could go either way: not known)."""
        gives = _gives_references(racing)
        if gives is None:
            return False
        return gives == (self.target.kind == "leaked reference")

    def _interleaving_json(self, pair: "_Pair", prefix: list[Line], seen: Observation | None,
                           after: list[str] | None = None) -> dict[str, Any]:
        """The interleaving for the report; ``seen``: what its replay (with ``prefix``
        before the two and ``after`` after them) showed, None when not verified.
        ``reproduces``: it showed the run's anomaly; a WARN only by showing the WARN
        (``precedes``: it showed the missing reference the WARN comes from instead)."""
        reproduces = precedes = False
        if seen is not None and self.target.seen_after(seen) is not None:
            reproduces = (self.target.source != "dmesg"
                          or seen.shows_exactly("dmesg", self.target.kind))
            precedes = not reproduces
        return {
            "race": pair.race, "failpoint": pair.site, "verified": seen is not None,
            "reproduces": reproduces, "precedes": precedes,
            "prefix": [line.command for line in prefix] + pair.setup,
            "held": self._describe(pair.held, pair.held_command),
            "racing": self._describe(pair.racing, pair.racing_command),
            "after": after or [],
            "observed": seen.summary() if seen else "",
        }

    def _describe(self, op: Op, command: str) -> dict[str, Any]:
        def at(ns: int | None) -> float | None:
            return None if ns is None else round((ns - self.start_ns) / 1e9, 6)
        return {"command": command, "op": op.id, "client": op.client,
                "invoked_s": at(op.invoke_ns), "completed_s": at(op.complete_ns)}

    # --- output -----------------------------------------------------------------

    def _script(self, found: Reproducer) -> str:
        header = [f"# {self.boot.command('ftrace-shell', '--spawn', after=('repro.sh',))}"]
        if found.kind == "sequential":
            header.append(f"# A minimal sequential reproducer found by ftrace-stress: "
                          f"{len(found.lines)} of {found.candidates} candidate commands.")
            header.append(f"# It shows: {self.target.describe()}")
            body = [CD_TRACING, *found.commands]
            if self.target.grep:
                body.append(f"dmesg | grep {self.target.grep}")
            return "\n".join(header + body) + "\n"
        header = [f"# {self.boot.command('ftraced')}",
                  "# No sequential reproducer was found (report.txt says what was tried)"
                  + (f": the interleaving below {interleaving_verdict(found.interleaving)}."
                     if found.interleaving is not None else "."),
                  f"# Anomaly: {self.target.describe()}"]
        if found.interleaving is None:
            return "\n".join(header) + "\n"
        return "\n".join(header + [f"# {step}" for step in interleaving_steps(
            found.interleaving, self.boot)]) + "\n"

    def _confirm(self, found: Reproducer) -> None:
        path = os.path.join(self.out_dir, "repro.sh")
        if self.target.grep:
            found.confirmed, output = confirm_with_shell(path, self.boot, self.target.grep)
            found.confirmation = ("ftrace-shell --spawn ran repro.sh: "
                                  + ("the anomaly recurred" if found.confirmed
                                     else "the anomaly did NOT recur"))
            found.notes.extend(line for line in output.splitlines() if self.target.grep in line)
            return
        with Replayer(self.boot) as replayer:
            seen = replayer.sequential(found.commands, each=False)
        found.confirmed = self.target.seen_after(seen) is not None
        found.confirmation = f"replayed on a fresh daemon: {seen.summary()}"


class _Pair:
    """Two operations that overlapped in the run, as commands for an interleaving: the
    one to hold at the race window's failpoint, and the one to run meanwhile."""

    def __init__(self, race: str, held: Op, racing: Op, ops: list[Op]) -> None:
        self.race, self.held, self.racing = race, held, racing
        _, self.update = roles(race, held, racing)
        self.site = RACE_SITES[race]
        held_setup, self.held_command = as_command(held, ops)
        racing_setup, self.racing_command = as_command(racing, ops)
        self.setup = held_setup + racing_setup
        self.seen: dict[bytes, Observation | None] = {}

    @staticmethod
    def key(prefix: list[Line], after: list[str] | None = None) -> bytes:
        return digest([*(line.command + "\0" + line.op.id for line in prefix), "\0after",
                       *(after or [])])

    def observe(self, minimizer: Minimizer, prefix: list[Line],
                after: list[str] | None = None) -> Observation | None:
        """Replay: ``prefix`` and the setup, then the two, then ``after`` (once each);
        None when the interleaving did not come about."""
        key = self.key(prefix, after)
        if key not in self.seen:
            seen = self.seen[key] = minimizer.replayer.interleaving(
                [line.command for line in prefix] + self.setup, self.held_command,
                self.racing_command, self.site, after or [])
            minimizer.log(f"replay {minimizer.replayer.replays}: {self.held_command!r} held, "
                          f"{self.racing_command!r} racing, {len(prefix)} before, "
                          f"{len(after or [])} after: "
                          f"{seen.summary() if seen else 'no such interleaving'}")
        return self.seen[key]


def roles(race: str, held: Op, racing: Op) -> tuple[Op, Op]:
    """(module operation, hash update) of a pair: unload-unlocked holds the update and
    races a rmmod with it, the other windows hold a modprobe and race an update."""
    return (racing, held) if race == "unload-unlocked" else (held, racing)


def pair_seen(pair: _Pair, prefix: list[Line]) -> Observation | None:
    """What the replay of ``pair`` after ``prefix`` (nothing after the two) showed."""
    return pair.seen.get(pair.key(prefix))


def as_command(op: Op, ops: list[Op]) -> tuple[list[str], str]:
    """(setup, command): one operation as a single shell command, and the commands that
    must run before it (for a tracer session: its state so far, on the function tracer)."""
    if op.kind != "tracer":
        return [], (op_commands(op) or [""])[0]
    session = [o for o in ops if o.kind == "tracer" and o.ok and o.invoke_ns < op.invoke_ns
               and o.args.get("name") == op.args["name"]]
    setup = [c for o in session for c in session_commands(o)]
    commands = session_commands(op)
    return setup + commands[:-1], commands[-1]


def interleaving_steps(found: dict[str, Any], boot: BootSpec) -> list[str]:
    """The interleaving as steps a person can follow."""
    site = found["failpoint"]
    steps = []
    if found["prefix"]:
        steps.append(f"boot: {boot.command('ftraced')}")
        steps.append("run, in ftrace-shell: " + "; ".join(found["prefix"]))
        steps.append(f"arm the failpoint {site}=1*pause: "
                     f"ftrace-inspect failpoints set {site} 1*pause")
    else:
        steps.append("boot: " + boot.with_failpoint(site, "1*pause").command("ftraced"))
    steps.append(f"in shell A run: {found['held']['command']}   (it pauses at {site}: "
                 f"ftrace-inspect failpoints wait {site} returns)")
    steps.append(f"while it is paused, in shell B run: {found['racing']['command']}")
    steps.append(f"release it: ftrace-inspect failpoints release {site}; shell A's command "
                 "completes")
    if found["after"]:
        steps.append("then, in shell B: " + "; ".join(found["after"]) + "   (the run's "
                     "teardown: the missing reference the interleaving left becomes the WARN)")
    steps.append(f"on a fresh daemon it {interleaving_outcome(found)}")
    return steps


def interleaving_verdict(found: dict[str, Any]) -> str:
    """Whether the interleaving's replay showed the run's anomaly, in a few words."""
    if not found["verified"]:
        return "was NOT verified (no replay showed an anomaly)"
    if found["precedes"]:
        return ("showed another anomaly, not the run's WARN: the missing reference it "
                "comes from")
    if not found["reproduces"]:
        return "showed another anomaly, not the run's"
    return "reproduces the anomaly"


def interleaving_outcome(found: dict[str, Any]) -> str:
    """:func:`interleaving_verdict` with what the replay showed."""
    verdict = interleaving_verdict(found)
    return f"{verdict}: {found['observed']}" if found["verified"] else verdict

