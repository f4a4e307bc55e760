"""Failpoints: named places in the core where a delay, a yield or a pause is injected.

The kernel has no such thing (its nearest relative is fault injection,
``lib/fault-inject.c``, which makes calls fail rather than wait); the model follows
FreeBSD's ``fail(9)`` and the Rust ``fail`` crate.  They widen race windows for
stress runs (``sleep``, ``yield``) and force exact interleavings in tests (``pause``
with :meth:`Failpoints.wait_paused` and :meth:`Failpoints.release`).

Spec grammar::

    spec   := "" | "off" | [PROB "%"] [COUNT "*"] action
    action := "sleep(" MS ")" | "yield" | "pause"

``PROB`` is a percentage in [0, 100] (``"20%"``, ``"0.5%"``); ``COUNT`` (>= 1) is how
many more times the action runs before the site turns itself off; ``MS`` may be
fractional.  Examples: ``"20%sleep(3)"``, ``"1*pause"``, ``"50%2*sleep(1)"``.
"""

from __future__ import annotations

import dataclasses
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable

from kernel_daemon.task import Task, current

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_SPEC_RE = re.compile(
    rf"(?:(?P<prob>{_NUMBER})%)?(?:(?P<count>\d+)\*)?"
    rf"(?P<action>sleep\((?P<ms>{_NUMBER})\)|yield|pause)"
)


@dataclasses.dataclass(frozen=True, slots=True)
class FailpointSpec:
    """A parsed, active spec (the ``off`` spec parses to ``None``)."""

    action: str  # "sleep", "yield" or "pause"
    probability: float = 100.0  # percent
    count: int | None = None  # remaining firings; None = unlimited
    sleep_ms: float = 0.0

    def __str__(self) -> str:
        """The canonical spec text; parses back to an equal spec."""
        prob = "" if self.probability == 100 else f"{self.probability:g}%"
        count = "" if self.count is None else f"{self.count}*"
        action = f"sleep({self.sleep_ms:g})" if self.action == "sleep" else self.action
        return prob + count + action


def parse_spec(spec: str) -> FailpointSpec | None:
    """Parse a failpoint spec; ``None`` means off. Raises ValueError on a bad spec."""
    text = spec.strip()
    if text in ("", "off"):
        return None
    m = _SPEC_RE.fullmatch(text)
    if m is None:
        raise ValueError(
            f"bad failpoint spec {spec!r}: expected 'off' or "
            "'[PROB%][COUNT*]sleep(MS)|yield|pause', e.g. '20%sleep(3)' or '1*pause'"
        )
    probability = 100.0 if m["prob"] is None else float(m["prob"])
    if probability > 100:
        raise ValueError(f"bad failpoint spec {spec!r}: probability {probability:g}% > 100%")
    count = None if m["count"] is None else int(m["count"])
    if count == 0:
        raise ValueError(f"bad failpoint spec {spec!r}: count must be >= 1 (use 'off')")
    action = m["action"].partition("(")[0]
    sleep_ms = float(m["ms"]) if m["ms"] is not None else 0.0
    return FailpointSpec(action, probability, count, sleep_ms)


@dataclasses.dataclass(eq=False, slots=True)
class _Paused:
    """One thread paused at a site: who it runs as, and whether it was let go."""

    task: Task
    released: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class FailpointState:
    """A site as :meth:`Failpoints.state` reports it."""

    name: str
    spec: str  # the canonical armed spec, "" when off
    evaluations: int  # times execution reached the site
    triggers: int  # times its action ran
    paused: tuple[Task, ...]  # the tasks paused there now, oldest first


class Failpoints:
    """The failpoint sites of one kernel instance. Thread-safe.

    A site's ``triggers`` count the times its action ran (a roll lost to the probability
    is not one); its ``evaluations`` the times execution reached it, armed or not.
    Reconfiguring a site does not wake threads paused there: only :meth:`release` and
    :meth:`release_all` do.  After :meth:`release_all` (the kernel shuts down) nothing
    pauses any more and waiters return at once.
    """

    def __init__(self, seed: int | None = None, known: Iterable[str] | None = None) -> None:
        """``known``: the valid site names (others raise KeyError); ``None`` accepts any."""
        self._known = None if known is None else frozenset(known)
        # Only active sites are keys here, so fire() on an off site is one failed lookup.
        self._active: dict[str, FailpointSpec] = {}
        self._triggers: Counter[str] = Counter()
        # Every known or configured site is a key: a plain dict, so that the off path
        # counts without the lock (under the GIL, += on an existing key of a dict is not
        # interrupted: no eval-breaker check falls between its load and its store).
        self._evaluations: dict[str, int] = dict.fromkeys(self._known or (), 0)
        # The threads paused at each site, oldest first.
        self._paused: dict[str, deque[_Paused]] = {}
        self._closed = False
        self._rng = random.Random(seed)
        self._cond = threading.Condition()

    def _check(self, name: str) -> None:
        if self._known is not None and name not in self._known:
            raise KeyError(f"unknown failpoint {name!r}")

    def configure(self, name: str, spec: str) -> None:
        """Set the spec of site ``name`` (``"off"`` or ``""`` turns it off)."""
        self._check(name)
        parsed = parse_spec(spec)
        with self._cond:
            self._evaluations.setdefault(name, 0)  # a new site, without a known list
            if parsed is None:
                self._active.pop(name, None)
            else:
                self._active[name] = parsed

    def fire(self, name: str) -> None:
        """Called by the core at site ``name``: run its action if it is on."""
        if name not in self._active:
            # The path every call of an off site takes: one lookup, one increment.
            try:
                self._evaluations[name] += 1
            except KeyError:  # not a site: unknown, or (no known list) never configured
                self._check(name)
            return
        with self._cond:
            self._evaluations[name] += 1
            spec = self._active.get(name)
            # Re-checked under the lock: the site may have been turned off meanwhile.
            if spec is None:
                return
            if spec.probability < 100 and self._rng.random() * 100 >= spec.probability:
                return
            if spec.count == 1:
                del self._active[name]
            elif spec.count is not None:
                self._active[name] = dataclasses.replace(spec, count=spec.count - 1)
            self._triggers[name] += 1
            if spec.action == "pause":
                if self._closed:  # armed on a kernel that is going away: never wait
                    return
                me = _Paused(current())
                self._paused.setdefault(name, deque()).append(me)
                self._cond.notify_all()
                self._cond.wait_for(lambda: me.released)
                return
        # Outside the lock: this is the injected delay itself, not synchronisation.
        # "yield" has sleep_ms 0, and time.sleep(0) gives the GIL away.
        time.sleep(spec.sleep_ms / 1000)

    def release(self, name: str, count: int = 0) -> int:
        """Wake up to ``count`` (0: all) of the threads paused at ``name``, oldest first;
        returns how many. The spec stays."""
        self._check(name)
        with self._cond:
            waiting = self._paused.get(name, deque())
            released = len(waiting) if count <= 0 else min(count, len(waiting))
            for _ in range(released):
                waiting.popleft().released = True
            self._cond.notify_all()
            return released

    def wait_paused(self, name: str, count: int = 1, timeout: float | None = 10.0,
                    interrupted: threading.Event | None = None) -> bool:
        """Block until at least ``count`` threads are paused at ``name``; False when
        ``timeout`` seconds (None: no limit) pass first, when ``interrupted`` is set
        (and :meth:`wake_waiters` called), or when the failpoints are shut down
        (:attr:`closed`)."""
        self._check(name)
        with self._cond:
            self._cond.wait_for(lambda: len(self._paused.get(name, ())) >= count
                                or self._closed
                                or interrupted is not None and interrupted.is_set(), timeout)
            return len(self._paused.get(name, ())) >= count

    def wake_waiters(self) -> None:
        """Make every :meth:`wait_paused` look at its condition again (one was
        interrupted)."""
        with self._cond:
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True once :meth:`release_all` ran: the kernel is shutting down."""
        return self._closed

    def list(self) -> dict[str, str]:
        """Every known or configured site and its current spec ("" when off)."""
        with self._cond:
            return {name: str(self._active.get(name, "")) for name in sorted(self._evaluations)}

    def state(self, name: str) -> FailpointState:
        """One site: its spec, its counters and the tasks paused at it."""
        self._check(name)
        with self._cond:
            return FailpointState(name, str(self._active.get(name, "")),
                                  self._evaluations.get(name, 0), self._triggers[name],
                                  tuple(p.task for p in self._paused.get(name, ())))

    def release_all(self) -> None:
        """Shutdown: turn every site off, wake every paused thread and every waiter, so
        nothing hangs; from now on nothing pauses."""
        with self._cond:
            self._closed = True
            self._active.clear()
            for waiting in self._paused.values():
                for paused in waiting:
                    paused.released = True
            self._paused.clear()
            self._cond.notify_all()
