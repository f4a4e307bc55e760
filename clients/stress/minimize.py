"""From the history of a run to the smallest script that shows its anomaly again.

1. The target: the strongest anomaly of the run (a WARN, else a KASAN report, else the
   first anomaly), and its horizon, the moment it was seen.
2. The sequential candidates: the operations invoked before the horizon, in the order
   they completed, as ``ftrace-shell`` commands (:mod:`clients.stress.commands`).
   Invocations and module operations that changed nothing are left out. Tracer clients'
   operations are left out of the first candidate (no shell command edits their hashes);
   if it does not reproduce, each tracer session named by the anomaly (or active at the
   horizon) is tried on its own, mapped onto the function tracer, with the loaders'
   operations and without the shells'.
3. Each candidate is replayed on a fresh daemon with the run's boot options; one that
   shows the target is cut down, first to the operations that can touch the anomaly's
   module (kept only if that still reproduces), then by delta debugging (ddmin, Zeller
   and Hildebrandt 2002, over complements) to a 1-minimal list, each step a replay.
4. The result is written as ``repro.sh`` and run once more by ``ftrace-shell --spawn``.

When no sequential candidate reproduces, the anomaly needs two operations to overlap: a
race. The run's race windows say which failpoint holds which operation in the window;
pairs of operations that overlapped in the run are replayed as interleavings (the held
one paused at the failpoint, the other run meanwhile), with as little sequential setup
before them as still reproduces.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clients.stress.checker import Anomaly
from clients.stress.commands import (CD_TRACING, STATELESS_OPS, changes_nothing, op_commands,
                                     session_commands, touches_module)
from clients.stress.config import RACE_SITES, BootSpec
from clients.stress.history import Op
from clients.stress.replay import Observation, Replayer, confirm_with_shell

#: Tracer sessions tried one by one when the shells' and loaders' operations alone do not
#: reproduce.
MAX_SESSIONS = 3
#: Overlapping pairs tried as interleavings.
MAX_PAIRS = 4
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
        module = best.module or next((a.module for a in anomalies if a.module), "")
        return cls(best.source, best.kind, module, best.message, best.seen_to_ns)

    def shown_by(self, seen: Observation) -> bool:
        return seen.shows(self.source, self.kind)

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


def ddmin(items: list[Line], test: Callable[[list[Line]], bool],
          budget: Callable[[], bool]) -> list[Line]:
    """A 1-minimal sublist of ``items`` (which must pass ``test``) that still passes.

    Complements only: the target needs several commands together, which a single chunk
    of a split rarely holds, and with two chunks each complement is the other chunk.
    Stops early, with what it has, when ``budget()`` says no more tests.
    """
    n = 2
    while len(items) >= 2 and budget():
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
                return items
            n = min(len(items), 2 * n)
    return items


class Minimizer:
    def __init__(self, boot: BootSpec, ops: list[Op], anomalies: list[Anomaly],
                 modules: dict[str, list[str]], out_dir: str, start_ns: int, max_replays: int,
                 log: Callable[[str], None] = lambda message: None) -> None:
        self.boot = boot
        self.ops = ops
        self.anomalies = anomalies
        self.modules = modules
        self.out_dir = out_dir
        self.start_ns = start_ns
        self.max_replays = max_replays
        self.log = log
        self.target = Target.of(anomalies)
        self._cache: dict[tuple[str, ...], bool] = {}

    # --- candidates -------------------------------------------------------------

    def _before_horizon(self) -> list[Op]:
        """Operations invoked before the target was seen, in completion order (those
        that never answered last, in invocation order)."""
        late = float("inf")
        return sorted((op for op in self.ops if op.invoke_ns <= self.target.horizon_ns),
                      key=lambda op: (op.complete_ns if op.completed else late, op.invoke_ns))

    def _plain_lines(self, ops: list[Op], loaders_only: bool = False) -> list[Line]:
        return [Line(command, op) for op in ops
                if op.kind != "tracer" and not changes_nothing(op)
                and not (loaders_only and op.op not in ("modprobe", "rmmod"))
                for command in (op_commands(op) or [])]

    def _session_lines(self, ops: list[Op], session: str) -> list[Line]:
        """One tracer session's successful operations on the function tracer, with the
        loaders' operations, in completion order."""
        return [Line(command, op) for op in ops
                if (op.kind == "tracer" and op.args.get("name") == session and op.ok)
                or (op.op in ("modprobe", "rmmod") and not changes_nothing(op))
                for command in (session_commands(op) if op.kind == "tracer"
                                else op_commands(op) or [])]

    def _sessions(self, ops: list[Op]) -> list[str]:
        """Tracer sessions to try: named by an anomaly, else active at the horizon."""
        known = {op.args["name"] for op in ops if op.kind == "tracer"}
        named = [name for a in self.anomalies for name in a.ops if name in known]
        active = [op.args["name"] for op in reversed(ops) if op.kind == "tracer"
                  and op.op == "register" and op.ok]
        return list(dict.fromkeys(named + active))[:MAX_SESSIONS]

    # --- replays ----------------------------------------------------------------

    def _budget(self) -> bool:
        return self.replayer.replays < self.max_replays

    def _reproduces(self, lines: list[Line]) -> bool:
        key = tuple(line.command + "\0" + line.op.id for line in lines)
        if key not in self._cache:
            seen = self.replayer.sequential([line.command for line in lines])
            self._cache[key] = self.target.shown_by(seen)
            self.log(f"replay {self.replayer.replays}: {len(lines)} commands: {seen.summary()}")
        return self._cache[key]

    def _cut_down(self, lines: list[Line]) -> list[Line]:
        if self.target.module in self.modules:
            functions = self.modules[self.target.module]
            sliced = [line for line in lines if touches_module(line.op, self.target.module,
                                                               functions)]
            if len(sliced) < len(lines) and self._reproduces(sliced):
                lines = sliced
        return ddmin(lines, self._reproduces, self._budget)

    # --- the whole search -------------------------------------------------------

    def run(self) -> Reproducer:
        with Replayer(self.boot) as self.replayer:
            found = self._sequential()
            if found.kind == "none":
                self._interleaving(found)
            found.replays = self.replayer.replays
        found.script = self._script(found)
        with open(os.path.join(self.out_dir, "repro.sh"), "w", encoding="utf-8") as script:
            script.write(found.script)
        if found.kind == "sequential":
            self._confirm(found)
        return found

    def _sequential(self) -> Reproducer:
        ops = self._before_horizon()
        notes = []
        skipped = [op for op in ops if op.op in STATELESS_OPS or changes_nothing(op)]
        if skipped:
            notes.append(f"{len(skipped)} operations that change no record, hash or module "
                         "(invocations, refused or no-op modprobe/rmmod) are left out")
        tracer_ops = [op for op in ops if op.kind == "tracer"]
        candidates = [self._plain_lines(ops)]
        if tracer_ops:
            notes.append(f"{len(tracer_ops)} tracer-client operations have no shell command "
                         "(their ops' hashes are their own) and are left out of the first "
                         "candidate")
            for session in self._sessions(ops):
                notes.append(f"then tried: tracer session {session} mapped onto the function "
                             "tracer's filter (set_ftrace_filter/notrace, current_tracer), "
                             "with the loaders' operations and without the shells'")
                candidates.append(self._session_lines(ops, session))
        for lines in candidates:
            if not self._budget():
                notes.append("replay budget spent")
                break
            if lines and self._reproduces(lines):
                best = self._cut_down(lines)
                if not self._budget():
                    notes.append("replay budget spent: the reproducer may not be minimal")
                return Reproducer("sequential", self.target, best, len(lines), notes=notes)
        notes.append(f"no sequential reproducer: the {len(candidates[0])} commands of the "
                     "run, replayed one after the other on a fresh daemon, do not show "
                     f"the anomaly ({self.target.kind})")
        return Reproducer("none", self.target, notes=notes)

    def _interleaving(self, found: Reproducer) -> None:
        """Turn ``found`` (no sequential reproducer) into an interleaving, if one fits."""
        races = self.boot.races
        if not races:
            found.notes.append("no race window was open: no interleaving to try")
            return
        tried = 0
        best: dict[str, Any] | None = None
        for race, held, racing in self._pairs(races):
            if tried >= MAX_PAIRS or not self._budget():
                break
            tried += 1
            attempt = self._try_pair(race, held, racing)
            best = best or attempt
            if attempt["verified"]:
                best = attempt
                break
        if best is None:
            found.notes.append("no two overlapping operations of the run fit the open race "
                               "windows")
            return
        found.kind = "interleaving"
        found.interleaving = best

    def _pairs(self, races: list[str]) -> list[tuple[str, Op, Op]]:
        """(race, held, racing): operations that overlapped in the run, the one to hold in
        the window first; those of the anomaly's module and nearest the horizon first."""
        ops = [op for op in self._before_horizon() if op.ok or not op.completed]
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

        def rank(pair: tuple[str, Op, Op]) -> tuple[bool, int]:
            race, held, racing = pair
            module_op = racing if race == "unload-unlocked" else held
            return module_op.args.get("module") != self.target.module, horizon - held.invoke_ns
        return sorted(pairs, key=rank)

    def _as_command(self, op: Op, ops: list[Op]) -> tuple[list[str], str]:
        """(setup, command): one operation as a single shell command, and the commands
        that must run before it (for a tracer session: its state so far)."""
        if op.kind != "tracer":
            return [], (op_commands(op) or [""])[0]
        session = [o for o in ops if o.kind == "tracer" and o.ok and o.invoke_ns < op.invoke_ns
                   and o.args.get("name") == op.args["name"]]
        setup = [c for o in session for c in session_commands(o)]
        commands = session_commands(op)
        return setup + commands[:-1], commands[-1]

    def _try_pair(self, race: str, held: Op, racing: Op) -> dict[str, Any]:
        ops = self._before_horizon()
        site = RACE_SITES[race]
        held_setup, held_command = self._as_command(held, ops)
        racing_setup, racing_command = self._as_command(racing, ops)
        setup = held_setup + racing_setup
        earlier = self._plain_lines([op for op in ops if op.complete_ns is not None
                                     and op.complete_ns < held.invoke_ns])
        module = self.target.module
        if module in self.modules:
            earlier = [line for line in earlier
                       if touches_module(line.op, module, self.modules[module])]
        outcome: dict[str, Observation | None] = {}

        def reproduces(prefix: list[Line]) -> bool:
            seen = self.replayer.interleaving([line.command for line in prefix] + setup,
                                              held_command, racing_command, site)
            self.log(f"replay {self.replayer.replays}: interleaving {held_command!r} held, "
                     f"{racing_command!r} racing, {len(prefix)} before: "
                     f"{seen.summary() if seen else 'no such interleaving'}")
            outcome["seen"] = seen
            return seen is not None and seen.any

        prefix: list[Line] = []
        verified = reproduces(prefix)
        if not verified and earlier and self._budget():
            verified = reproduces(earlier)
            if verified:
                prefix = ddmin(earlier, reproduces, self._budget)
                reproduces(prefix)  # the observation of the final one
        seen = outcome.get("seen")
        return {
            "race": race, "failpoint": site, "verified": verified,
            "prefix": [line.command for line in prefix] + setup,
            "held": self._describe(held, held_command),
            "racing": self._describe(racing, racing_command),
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
            header.append(f"# It shows: {self.target.kind}: {self.target.message}")
            body = [CD_TRACING, *found.commands]
            if self.target.grep:
                body.append(f"dmesg | grep {self.target.grep}")
            return "\n".join(header + body) + "\n"
        header = [f"# {self.boot.command('ftraced')}",
                  "# No sequential reproducer: the anomaly needs two operations to overlap.",
                  f"# Anomaly: {self.target.kind}: {self.target.message}"]
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
            seen = replayer.sequential(found.commands)
        found.confirmed = self.target.shown_by(seen)
        found.confirmation = f"replayed on a fresh daemon: {seen.summary()}"


def interleaving_steps(found: dict[str, Any], boot: BootSpec) -> list[str]:
    """The interleaving as steps a person can follow."""
    site = found["failpoint"]
    steps = []
    if found["prefix"]:
        steps.append(f"boot: {boot.command('ftraced')}")
        steps.append("run, in ftrace-shell: " + "; ".join(found["prefix"]))
        steps.append(f"arm the failpoint {site}=1*pause (Kernel.SetFailpoint)")
    else:
        steps.append("boot: " + boot.with_failpoint(site, "1*pause").command("ftraced"))
    steps.append(f"in shell A run: {found['held']['command']}   (it pauses at {site})")
    steps.append(f"while it is paused, in shell B run: {found['racing']['command']}")
    steps.append(f"release {site} (Kernel.ReleaseFailpoint); shell A's command completes")
    steps.append("verified on a fresh daemon: " + (found["observed"] if found["verified"]
                                                   else "NOT verified (replays did not show it)"))
    return steps

