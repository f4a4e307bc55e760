"""The seq_file listings of ftrace.c (``t_start`` / ``t_next`` / ``t_show``, 3.6.5).

Listings are driven by records, in page order, never by hash entries: a stale entry
is not printed (spec §3.3.8).  Names print as ``%ps``, which in 3.6 is
``sprint_symbol_no_offset()``: ``name`` or ``name [module]``.  ``set_ftrace_filter``
(FTRACE_ITER_DO_HASH) then lists the function probes (``t_hash_show``).
"""

from __future__ import annotations

import enum
import errno

import numpy as np

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.core import Ftrace
from kernel_daemon.ftrace.probe import t_hash_show
from kernel_daemon.ftrace.records import FtracePageGroup, ftrace_rec_count


class Listing(enum.Enum):
    AVAILABLE = "available_filter_functions"
    ENABLED = "enabled_functions"
    FILTER = "set_ftrace_filter"
    NOTRACE = "set_ftrace_notrace"


ALL_FUNCTIONS_BANNER = "#### all functions enabled ####\n"


def sprint_names(pg: FtracePageGroup, mask: np.ndarray) -> np.ndarray:
    names = pg.names[mask]
    if pg.mod is None:
        return names
    return np.strings.add(names, f" [{pg.module_name}]")


def ftrace_avail_open(ft: Ftrace, which: Listing) -> None:
    """The open checks: ``available_filter_functions`` and ``enabled_functions``
    refuse with ENODEV once ftrace is dead; the filter files check in their own open."""
    if ft.ftrace_disabled and which in (Listing.AVAILABLE, Listing.ENABLED):
        raise KernelError(errno.ENODEV)


def t_show_all(ft: Ftrace, which: Listing) -> str:
    """The whole listing as one read would see it; empty once ftrace is disabled."""
    with ft.ftrace_lock:
        if ft.ftrace_disabled:
            return ""
        ops = ft.global_ops
        if which is Listing.FILTER and ops.filter_hash.empty():
            return ALL_FUNCTIONS_BANNER + t_hash_show(ft)
        hash = ops.filter_hash if which is Listing.FILTER else ops.notrace_hash
        out: list[str] = []
        for pg in ft.pages.groups:
            if which is Listing.AVAILABLE:
                mask = np.ones(len(pg.ips), dtype=bool)
            elif which is Listing.ENABLED:
                counts = ftrace_rec_count(pg.flags)
                mask = counts > 0
                if mask.any():
                    names = sprint_names(pg, mask)
                    out.extend(f"{n} ({c})\n" for n, c in zip(names.tolist(), counts[mask].tolist()))
                continue
            else:
                mask = hash.contains(pg.ips)
            if mask.any():
                out.append("\n".join(sprint_names(pg, mask).tolist()) + "\n")
        if which is Listing.FILTER:
            out.append(t_hash_show(ft))
        return "".join(out)
