"""Failpoints: named places in the core where a delay, a yield, a pause or an error is
injected.

The delays and the pause have no kernel counterpart; they follow FreeBSD's ``fail(9)``
and the Rust ``fail`` crate.  They widen race windows for stress runs (``sleep``,
``yield``) and force exact interleavings in tests (``pause`` with
:meth:`Failpoints.wait_paused` and :meth:`Failpoints.release`).  The ``error`` action is
the kernel's fault injection (``lib/fault-inject.c``: ``should_fail()`` decides, with a
probability and a count of times, that a call fails): the site's caller gets the errno
back from :meth:`Failpoints.fire` and fails with it.  Only the sites that can fail in
the kernel accept it, each with the errnos its kernel function can return (the
``errors`` of :class:`Failpoints`); elsewhere it is refused.

Spec grammar::

    spec   := "" | "off" | [PROB "%"] [COUNT "*"] action
    action := "sleep(" MS ")" | "yield" | "pause" | "error(" ERRNO ")"

``PROB`` is a percentage in [0, 100] (``"20%"``, ``"0.5%"``); ``COUNT`` (>= 1) is how
many more times the action runs before the site turns itself off; ``MS`` may be
fractional; ``ERRNO`` is an errno name (``EFAULT``).  Examples: ``"20%sleep(3)"``,
``"1*pause"``, ``"50%2*sleep(1)"``, ``"1*error(EFAULT)"``.
"""

from __future__ import annotations

import dataclasses
import errno as errno_mod
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Collection, Iterable, Mapping

from kernel_daemon.errno import quoted
from kernel_daemon.task import Task, current

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_SPEC_RE = re.compile(
    rf"(?:(?P<prob>{_NUMBER})%)?(?:(?P<count>\d+)\*)?"
    rf"(?P<action>sleep\((?P<ms>{_NUMBER})\)|yield|pause|error\((?P<errno>E[A-Z0-9]+)\))"
)


@dataclasses.dataclass(frozen=True, slots=True)
class FailpointSpec:
    """A parsed, active spec (the ``off`` spec parses to ``None``)."""

    action: str  # "sleep", "yield", "pause" or "error"
    probability: float = 100.0  # percent
    count: int | None = None  # remaining firings; None = unlimited
    sleep_ms: float = 0.0
    error: int = 0  # the errno of an "error" action

    def __str__(self) -> str:
        """The canonical spec text; parses back to an equal spec."""
        prob = "" if self.probability == 100 else f"{self.probability:g}%"
        count = "" if self.count is None else f"{self.count}*"
        if self.action == "sleep":
            action = f"sleep({self.sleep_ms:g})"
        elif self.action == "error":
            action = f"error({errno_mod.errorcode[self.error]})"
        else:
            action = self.action
        return prob + count + action


def parse_spec(spec: str) -> FailpointSpec | None:
    """Parse a failpoint spec; ``None`` means off. Raises ValueError on a bad spec."""
    text = spec.strip()
    if text in ("", "off"):
        return None
    m = _SPEC_RE.fullmatch(text)
    if m is None:
        raise ValueError(
            f"bad failpoint spec {quoted(spec)}: expected 'off' or "
            "'[PROB%][COUNT*]sleep(MS)|yield|pause|error(ERRNO)', e.g. '20%sleep(3)', "
            "'1*pause' or '1*error(EFAULT)'"
        )
    probability = 100.0 if m["prob"] is None else float(m["prob"])
    if probability > 100:
        raise ValueError(f"bad failpoint spec {quoted(spec)}: probability {probability:g}% > 100%")
    count = None if m["count"] is None else int(m["count"])
    if count == 0:
        raise ValueError(f"bad failpoint spec {quoted(spec)}: count must be >= 1 (use 'off')")
    action = m["action"].partition("(")[0]
    sleep_ms = float(m["ms"]) if m["ms"] is not None else 0.0
    # time.sleep() refuses what does not fit its timeout (OverflowError, mid-path).
    if sleep_ms / 1000 > threading.TIMEOUT_MAX:
        raise ValueError(f"bad failpoint spec {quoted(spec)}: sleep longer than "
                         f"{threading.TIMEOUT_MAX * 1000:g} ms (use 'pause')")
    error = 0
    if m["errno"] is not None:
        error = getattr(errno_mod, m["errno"], 0)
        if error not in errno_mod.errorcode:
            raise ValueError(f"bad failpoint spec {quoted(spec)}: no errno {m['errno']}")
    return FailpointSpec(action, probability, count, sleep_ms, error)


def check_site_spec(name: str, spec: FailpointSpec | None,
                    errors: Collection[int] | None) -> None:
    """Refuse (ValueError) an ``error`` action at site ``name`` unless it is one of the
    ``errors`` the site can fail with (``None``: any)."""
    if spec is None or spec.action != "error" or errors is None or spec.error in errors:
        return
    if not errors:
        raise ValueError(f"failpoint {quoted(name)} cannot fail: no error action there")
    names = "|".join(sorted(errno_mod.errorcode[e] for e in errors))
    raise ValueError(f"failpoint {quoted(name)} cannot fail with {errno_mod.errorcode[spec.error]}"
                     f" (only error({names}))")


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
    waiters: int  # wait_paused() calls waiting on it now


class Failpoints:
    """The failpoint sites of one kernel instance. Thread-safe.

    A site's ``triggers`` count the times its action ran (a roll lost to the probability
    is not one); its ``evaluations`` the times execution reached it, armed or not.
    Reconfiguring a site does not wake threads paused there: only :meth:`release` and
    :meth:`release_all` do.  After :meth:`release_all` (the kernel shuts down) nothing
    pauses any more and waiters return at once.
    """

    def __init__(self, seed: int | None = None, known: Iterable[str] | None = None,
                 errors: Mapping[str, Collection[int]] | None = None) -> None:
        """``known``: the valid site names (others raise KeyError); ``None`` accepts any.
        ``errors``: the errnos each site can fail with, for the ``error`` action (a site
        not listed cannot fail); ``None`` lets any site fail with any errno."""
        self._known = None if known is None else frozenset(known)
        self._errors = errors
        # Only active sites are keys here, so fire() on an off site is one failed lookup.
        self._active: dict[str, FailpointSpec] = {}
        self._triggers: Counter[str] = Counter()
        # Every known or configured site is a key: a plain dict, so that the off path
        # counts without the lock (under the GIL, += on an existing key of a dict is not
        # interrupted: no eval-breaker check falls between its load and its store).
        self._evaluations: dict[str, int] = dict.fromkeys(self._known or (), 0)
        # The threads paused at each site, oldest first.
        self._paused: dict[str, deque[_Paused]] = {}
        self._waiters: Counter[str] = Counter()
        self._closed = False
        self._rng = random.Random(seed)
        self._cond = threading.Condition()

    def _check(self, name: str) -> None:
        if self._known is not None and name not in self._known:
            raise KeyError(f"unknown failpoint {quoted(name)}")

    def configure(self, name: str, spec: str) -> None:
        """Set the spec of site ``name`` (``"off"`` or ``""`` turns it off)."""
        self._check(name)
        parsed = parse_spec(spec)
        check_site_spec(name, parsed, None if self._errors is None else self._errors.get(name, ()))
        with self._cond:
            self._evaluations.setdefault(name, 0)  # a new site, without a known list
            if parsed is None:
                self._active.pop(name, None)
            else:
                self._active[name] = parsed

    def armed(self, name: str) -> bool:
        """Whether site ``name`` has an action on now (a caller's choice of its slow path)."""
        return name in self._active

    def passed(self, name: str, times: int = 1) -> None:
        """Count ``times`` passes of site ``name`` with no action run: the caller found
        it off (:meth:`armed`) and took a path that does not evaluate it one by one."""
        try:
            self._evaluations[name] += times
        except KeyError:  # not a site: unknown, or (no known list) never configured
            self._check(name)

    def fire(self, name: str) -> int:
        """Called by the core at site ``name``: run its action if it is on.

        Returns the errno an ``error`` action injects (the caller fails with it), else 0.
        """
        if name not in self._active:
            # The path every call of an off site takes: one lookup, one increment.
            self.passed(name)
            return 0
        with self._cond:
            self._evaluations[name] += 1
            spec = self._active.get(name)
            # Re-checked under the lock: the site may have been turned off meanwhile.
            if spec is None:
                return 0
            if spec.probability < 100 and self._rng.random() * 100 >= spec.probability:
                return 0
            if spec.count == 1:
                del self._active[name]
            elif spec.count is not None:
                self._active[name] = dataclasses.replace(spec, count=spec.count - 1)
            self._triggers[name] += 1
            if spec.action == "error":
                return spec.error
            if spec.action == "pause":
                if self._closed:  # armed on a kernel that is going away: never wait
                    return 0
                me = _Paused(current())
                self._paused.setdefault(name, deque()).append(me)
                self._cond.notify_all()
                self._cond.wait_for(lambda: me.released)
                return 0
        # Outside the lock: this is the injected delay itself, not synchronisation.
        # "yield" has sleep_ms 0, and time.sleep(0) gives the GIL away.
        time.sleep(spec.sleep_ms / 1000)
        return 0

    def fire_each(self, name: str, times: int) -> tuple[int, int] | None:
        """Site ``name`` reached ``times`` times in a row (once per record of a pass),
        stopping at the first ``error``: as many :meth:`fire` calls would, but an off
        site costs one count, whatever ``times``.  Returns (the index of the failed
        evaluation, its errno), or None when none failed.

        While the site is on, the evaluations run one by one, each with its own roll:
        that is what lets ``"1%error(EPERM)"`` fail a record in the middle of a pass.
        """
        for i in range(times):
            if name not in self._active:  # off, or turned itself off (its count ran out)
                self.passed(name, times - i)
                return None
            error = self.fire(name)
            if error:
                return i, error
        return None

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
            self._waiters[name] += 1
            try:
                self._cond.wait_for(lambda: len(self._paused.get(name, ())) >= count
                                    or self._closed
                                    or interrupted is not None and interrupted.is_set(),
                                    timeout)
            finally:
                self._waiters[name] -= 1
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
        """One site: its spec, its counters, the tasks paused at it and its waiters."""
        self._check(name)
        with self._cond:
            return FailpointState(name, str(self._active.get(name, "")),
                                  self._evaluations.get(name, 0), self._triggers[name],
                                  tuple(p.task for p in self._paused.get(name, ())),
                                  self._waiters[name])

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
