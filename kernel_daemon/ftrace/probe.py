"""Function probes: the ``<glob>:<command>`` triggers of ``set_ftrace_filter`` (3.6.5).

``register_ftrace_function_probe`` gives every function whose name matches a
``struct ftrace_func_probe`` in ``ftrace_func_hash``, a table of its own beside the
filter hashes (spec §3.3.5), and the first probe registers ``trace_probe_ops``.  That
ops has no filter hash: it counts in every record (the "all" pass) and every call site
is patched, and ``function_trace_probe_call`` picks the probes of an ip at call time.
Unregistering the last probe takes ``trace_probe_ops`` away again.  Both happen under
``ftrace_lock``, like any other ops' registration.

Entries hold a plain ip, as hash entries do: a module's unload leaves its functions'
probes in the table (listed as ``0x<ip>``), and a module reloaded at the same address
finds them again.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.core import WARN_ON, Ftrace
from kernel_daemon.ftrace.filter import ftrace_match_record
from kernel_daemon.ftrace.ops import FtraceOps
from kernel_daemon.ftrace.regex import MatchType, Regex, filter_parse_regex
from kernel_daemon.ftrace.register import (__register_ftrace_function,
                                           __unregister_ftrace_function, ftrace_shutdown,
                                           ftrace_startup)
from kernel_daemon.unwind import kernel_function

FTRACE_HASH_BITS = 7
FTRACE_FUNC_HASHSIZE = 1 << FTRACE_HASH_BITS
# include/linux/hash.h (3.6): 2^63 + 2^61 - 2^57 + 2^54 - 2^51 - 2^18 + 1.
GOLDEN_RATIO_PRIME_64 = 0x9E37FFFFFFFC0001
_U64 = (1 << 64) - 1
# The line of ``WARN_ON(not)`` in __unregister_ftrace_function_probe(), in
# kernel/trace/ftrace.c (which tree: core.py's docstring; 2961 is where the function's
# definition starts).
LINE_UNREGISTER_PROBE_NOT = 2980

# How many probes acted on this thread of execution (a ContextVar, like ``current``):
# execute_function runs a batch of calls one at a time while the calls' probes act.
probes_acted: contextvars.ContextVar[int] = contextvars.ContextVar("probes_acted", default=0)


def hash_long(val: int, bits: int) -> int:
    """``hash_long()`` on x86_64 (3.6's ``hash_64``, shifts and adds that multiply by
    GOLDEN_RATIO_PRIME_64): the top ``bits`` of the product."""
    return (val * GOLDEN_RATIO_PRIME_64 & _U64) >> (64 - bits)


@dataclass(frozen=True, eq=False)
class FtraceProbeOps:
    """``struct ftrace_probe_ops``: what a probe does when hit and how it lists itself.

    ``func(ip, parent_ip, entry)`` is the kernel's ``func(ip, parent_ip, &entry->data)``;
    the model's returns whether the probe acted, which the kernel's (void) does not say.
    ``print(ip, ops, data)`` returns the listing's line.  The ``callback`` and ``free``
    hooks are left out: traceon and traceoff, the only probes here, have neither.
    """

    func: Callable[[int, int, FtraceFuncProbe], bool]
    print: Callable[[int, FtraceProbeOps, int], str]


@dataclass(eq=False)
class FtraceFuncProbe:
    """``struct ftrace_func_probe``: one probe on one function."""

    ip: int
    ops: FtraceProbeOps
    data: int  # the ops' ``void *data``: traceon/traceoff keep a signed counter in it


class FtraceProbes:
    """ftrace.c's statics for probes: ``ftrace_func_hash``, ``trace_probe_ops`` and
    ``ftrace_probe_registered``."""

    def __init__(self) -> None:
        # FTRACE_FUNC_HASHSIZE hlist heads.  A bucket is a tuple, replaced whole under
        # ftrace_lock and read without it: the model's RCU list.
        self.ftrace_func_hash: list[tuple[FtraceFuncProbe, ...]] = [()] * FTRACE_FUNC_HASHSIZE
        # Static in ftrace.c, so core kernel data: not DYNAMIC, and when it is the only
        # ops the trampoline calls function_trace_probe_call directly.
        self.trace_probe_ops = FtraceOps("trace_probe_ops", func=self.function_trace_probe_call,
                                         core_data=True)
        self.ftrace_probe_registered = False

    def entries(self) -> Iterator[FtraceFuncProbe]:
        """Every probe in the order the listing walks them: bucket by bucket, each
        bucket newest first."""
        for bucket in self.ftrace_func_hash:
            yield from bucket

    def empty(self) -> bool:
        return not any(self.ftrace_func_hash)

    def probes_at(self, ip: int) -> list[FtraceFuncProbe]:
        return [entry for entry in self.ftrace_func_hash[hash_long(ip, FTRACE_HASH_BITS)]
                if entry.ip == ip]

    def function_trace_probe_call(self, ip: int, parent_ip: int, op: FtraceOps | None,
                                  count: int = 1) -> None:
        """``function_trace_probe_call()``: trace_probe_ops' func, run for every traced
        call; the probes whose ip it is act.

        ``count`` calls in a row run a round of the probes each, until a round in which
        none acts: from then on each round finds the same state (tracing on or off,
        the same counters) and would do nothing either.
        """
        probes = self.probes_at(ip)
        if not probes:
            return
        acted = 0
        for _ in range(count):
            round_acted = sum(entry.ops.func(ip, parent_ip, entry) for entry in probes)
            if not round_acted:
                break
            acted += round_acted
        if acted:
            probes_acted.set(probes_acted.get() + acted)


@kernel_function
def __enable_ftrace_function_probe(ft: Ftrace) -> None:
    """``__enable_ftrace_function_probe()``: the first probe registers trace_probe_ops,
    whose empty filter counts it in every record; ftrace_lock held."""
    probes = ft.probes
    if probes.ftrace_probe_registered or probes.empty():
        return
    try:
        __register_ftrace_function(ft, probes.trace_probe_ops)
        ftrace_startup(ft, probes.trace_probe_ops, 0)
    except KernelError:
        pass  # 3.6 marks the probes registered whatever these return
    probes.ftrace_probe_registered = True


@kernel_function
def __disable_ftrace_function_probe(ft: Ftrace) -> None:
    """``__disable_ftrace_function_probe()``: the last probe gone, trace_probe_ops
    unregisters (every record -1); ftrace_lock held."""
    probes = ft.probes
    if not probes.ftrace_probe_registered or not probes.empty():
        return
    try:
        __unregister_ftrace_function(ft, probes.trace_probe_ops)
        ftrace_shutdown(ft, probes.trace_probe_ops, 0)
    except KernelError:
        pass  # e.g. ENODEV after ftrace_kill: 3.6 forgets the registration all the same
    probes.ftrace_probe_registered = False


@kernel_function
def register_ftrace_function_probe(ft: Ftrace, glob: str, ops: FtraceProbeOps,
                                   data: int) -> int:
    """``register_ftrace_function_probe()``: a probe with ``data`` on every function
    whose name matches ``glob``; returns how many.  None is no error (3.x).

    The same function probed twice has two entries.  The commands take a leading ``!``
    off to unregister, so ``glob`` never has one here (3.6 would WARN and refuse it).
    """
    regex = filter_parse_regex(glob)
    probes = ft.probes
    count = 0
    with ft.ftrace_lock:
        if ft.ftrace_disabled:
            return 0
        added: dict[int, list[FtraceFuncProbe]] = {}
        for pg in ft.pages.groups:
            for ip in pg.ips[ftrace_match_record(pg, regex, None)].tolist():
                entry = FtraceFuncProbe(ip, ops, data)
                added.setdefault(hash_long(ip, FTRACE_HASH_BITS), []).append(entry)
                count += 1
        # hlist_add_head_rcu() record by record: each bucket gains its new entries
        # last-matched first, ahead of the old ones.
        for key, entries in added.items():
            probes.ftrace_func_hash[key] = (*reversed(entries), *probes.ftrace_func_hash[key])
        __enable_ftrace_function_probe(ft)
    return count


def probe_glob_match(name: str, glob: str, regex: Regex) -> bool:
    """``ftrace_match(str, glob, strlen(search), type)`` as the unregister walk calls it.

    It passes the glob as ``filter_parse_regex`` left it (cut at a ``*`` after the
    first character), not the search string: ``*foo`` and ``*foo*`` keep their leading
    ``*`` and so match no function's name in 3.6.
    """
    cut = glob.find("*", 1)
    text = glob if cut < 0 else glob[:cut]
    length = len(regex.search)
    if regex.type is MatchType.MATCH_FULL:
        return name == text
    if regex.type is MatchType.MATCH_FRONT_ONLY:
        return name[:length] == text[:length]
    if regex.type is MatchType.MATCH_MIDDLE_ONLY:
        return text in name
    return len(name) >= length and name[len(name) - length:] == text[:length]


@kernel_function
def __unregister_ftrace_function_probe(ft: Ftrace, glob: str, ops: FtraceProbeOps) -> None:
    """``__unregister_ftrace_function_probe(glob, ops, NULL, PROBE_TEST_FUNC)``: drop
    the probes of ``ops`` on functions ``glob`` names (all of them for ``""`` or ``*``).

    A probe's function is named by ``kallsyms_lookup()`` of its ip, so the probes a
    module's unload left behind go only with all of them (no symbol: an empty name),
    unless a module loaded since holds the ip in its core: then they go by the name of
    its function at or below the ip.
    3.6 can also test the data, or take every ops; only the ``_func`` form has a caller.
    """
    regex = None  # a NULL glob: every function
    if glob not in ("", "*"):
        regex = filter_parse_regex(glob)
        if regex.negate:
            WARN_ON(ft, LINE_UNREGISTER_PROBE_NOT)  # "we do not support '!' for function probes"
            return
    probes = ft.probes
    with ft.ftrace_lock:
        for key, bucket in enumerate(probes.ftrace_func_hash):
            keep = tuple(entry for entry in bucket if entry.ops is not ops or not (
                regex is None or probe_glob_match(ft.kallsyms_lookup(entry.ip), glob, regex)))
            if len(keep) != len(bucket):
                probes.ftrace_func_hash[key] = keep  # hlist_del(), then call_rcu() frees
        __disable_ftrace_function_probe(ft)


@kernel_function
def unregister_ftrace_function_probe_func(ft: Ftrace, glob: str, ops: FtraceProbeOps) -> None:
    """``unregister_ftrace_function_probe_func()``: every probe of ``ops`` on ``glob``,
    whatever its data."""
    __unregister_ftrace_function_probe(ft, glob, ops)
