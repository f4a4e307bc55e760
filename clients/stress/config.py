"""What one stress run is: its workers, its limits, and the daemon it runs against.

The boot options travel as the daemon's own command-line options (``--variant buggy
--race load-count ...``): the private daemon of the run is started with them, every
replay of the minimizer starts a fresh daemon with them, and the reproducer's header
names them, so all three boot the same kernel.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from ftrace.v1 import kernel_pb2, modules_pb2
from kernel_daemon.failpoints import parse_spec
from kernel_daemon.kernel import BootOptions

#: The failpoint that widens each race window when the user arms none (``--help``).
#: A short sleep inside the window, often enough that an update of another client lands
#: in it within seconds, rarely enough that the run is not slowed to a crawl.
AUTO_FAILPOINTS: dict[str, tuple[str, str]] = {
    "load-count": ("ftrace_update_code:before_count", "50%sleep(3)"),
    "publish-early": ("ftrace_update_code:before_publish", "50%sleep(3)"),
    "unload-unlocked": ("__ftrace_hash_rec_update:next_page", "5%sleep(2)"),
}
#: The site where each race window's bad interleaving is forced with a pause: the
#: operation that reaches it first is the one held in the window.
RACE_SITES: dict[str, str] = {race: site for race, (site, _) in AUTO_FAILPOINTS.items()}
#: sys.setswitchinterval() of a private daemon unless --switch-interval is given: threads
#: inside the daemon are preempted every 0.5 ms instead of every 5 ms.
DEFAULT_SWITCH_INTERVAL = 0.0005
#: The catalog modules the loaders cycle through when --modules is not given.
DEFAULT_MODULES = ("uinput", "dummy", "loop")
#: What ``--stop-on`` accepts, and the anomaly kind each names (checker.Anomaly.kind).
STOP_ON_KINDS: dict[str, str] = {
    "missing-reference": "missing reference",
    "leaked-reference": "leaked reference",
    "patch-mismatch": "patch mismatch",
    "freed-page-access": "freed-page access",
    "warning": "WARNING",
    "kasan": "KASAN",
}
#: How long a worker may record nothing before the run ends, stalled (``--stall-timeout``).
#: Far above the longest operation: a failpoint that widens a race window sleeps 3 ms,
#: and one that holds ftrace_lock holds up every client that needs it.
DEFAULT_STALL_TIMEOUT = 30.0
#: Worker kinds, in the order their processes are started.
WORKER_KINDS = ("tracer", "loader", "shell", "invoker")
#: What the daemon defaults to; a reproducer's header leaves out what equals these.
_DAEMON_DEFAULTS = {"--variant": BootOptions.variant,
                    "--module-placement": BootOptions.module_placement,
                    "--core-functions": str(BootOptions.core_functions),
                    "--cpus": str(BootOptions.cpus)}


@dataclass(frozen=True)
class BootSpec:
    """The daemon's boot options, as option name/value pairs (``--race`` may repeat)."""

    pairs: tuple[tuple[str, str], ...]

    @property
    def argv(self) -> list[str]:
        return [item for pair in self.pairs for item in pair]

    def values(self, option: str) -> list[str]:
        return [value for name, value in self.pairs if name == option]

    @property
    def variant(self) -> str:
        return (self.values("--variant") or ["fixed"])[-1]

    @property
    def races(self) -> list[str]:
        return self.values("--race")

    def failpoints(self) -> dict[str, str]:
        return dict(pair.split("=", 1) for pair in self.values("--failpoint"))

    def with_failpoint(self, site: str, spec: str) -> "BootSpec":
        """The same options with ``site`` set to ``spec`` (replacing what it had)."""
        kept = tuple(p for p in self.pairs
                     if not (p[0] == "--failpoint" and p[1].split("=", 1)[0] == site))
        return BootSpec(kept + (("--failpoint", f"{site}={spec}"),))

    def without_pauses(self) -> "BootSpec":
        """The same options without the failpoints that ``pause``: on a fresh daemon of a
        replay nothing would release them (an interleaving arms its own pause, and
        releases it)."""
        return BootSpec(tuple(
            (name, value) for name, value in self.pairs
            if not (name == "--failpoint" and (spec := parse_spec(value.split("=", 1)[1]))
                    and spec.action == "pause")))

    def command(self, *program: str, after: tuple[str, ...] = ()) -> str:
        """A shell command line booting these options: ``program``, the options (the
        variant always, the others where they differ from the daemon's defaults), ``after``."""
        shown = [item for name, value in self.pairs if _DAEMON_DEFAULTS.get(name) != value
                 for item in (name, value)]
        if "--variant" not in shown:
            shown = ["--variant", self.variant, *shown]
        return shlex.join([*program, *shown, *after])

    @classmethod
    def from_config(cls, config: kernel_pb2.BootConfig,
                    failpoints: list[kernel_pb2.Failpoint]) -> "BootSpec":
        """The options of a running daemon (``Kernel.GetConfig``), to boot its twin, with
        the failpoints armed now (``Kernel.ListFailpoints``): those of its boot options
        may have been disarmed or used up since, others armed by ``SetFailpoint``."""
        variant = kernel_pb2.Variant.Name(config.variant).removeprefix("VARIANT_").lower()
        placement = modules_pb2.ModulePlacement.Name(config.module_placement)
        pairs = [("--variant", variant),
                 *(("--race", kernel_pb2.Race.Name(r).removeprefix("RACE_").lower()
                    .replace("_", "-")) for r in config.races),
                 *(("--failpoint", f"{point.name}={point.spec}")
                   for point in sorted(failpoints, key=lambda point: point.name) if point.spec),
                 ("--core-functions", str(config.core_functions)),
                 ("--module-placement",
                  placement.removeprefix("MODULE_PLACEMENT_").lower().replace("_", "-")),
                 ("--cpus", str(config.cpus)), ("--seed", str(config.seed))]
        if config.switch_interval:
            pairs.append(("--switch-interval", repr(config.switch_interval)))
        return cls(tuple(pairs))


@dataclass(frozen=True)
class RunConfig:
    """One ``ftrace-stress`` run."""

    seed: int
    out_dir: str
    boot: BootSpec
    # None: start a private daemon with ``boot``; else the daemon to use.
    address: str | None = None
    workers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WORKER_KINDS, 2))
    duration: float | None = None  # seconds; None with ``ops`` set
    ops: int | None = None  # total operations over all workers
    modules: tuple[str, ...] = DEFAULT_MODULES
    keep_going: bool = False
    # The anomaly kinds that end the run (``--stop-on``); empty: any anomaly. The others
    # are reported and the run goes on: a buggy kernel's leaked reference never becomes
    # the WARN, a missing one does when its ops is next disabled.
    stop_on: frozenset[str] = frozenset()
    minimize: bool = True
    # Replays the minimizer may spend (each one boots a fresh daemon).
    max_replays: int = 150
    check_interval: float = 0.05
    # The run ends, stalled, when a worker has recorded nothing for this long.
    stall_timeout: float = DEFAULT_STALL_TIMEOUT
    # Failpoints armed because a race window was open and the user armed none.
    auto_failpoints: tuple[tuple[str, str], ...] = ()

    def stops(self, kind: str) -> bool:
        """Whether an anomaly of this kind ends the run (keep_going aside)."""
        return not self.stop_on or kind in self.stop_on
