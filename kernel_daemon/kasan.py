"""Use-after-free reports for freed record pages, in the format of KASAN.

3.6 had no KASAN (it came in 4.0); a 3.6 kernel would read the slab poison and
misbehave silently.  The model poisons freed pages (``records.free``) and, when a
walk reaches one, prints what ``mm/kasan/report.c`` prints today and records the
access for the consistency check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kernel_daemon import task as task_mod
from kernel_daemon import unwind

if TYPE_CHECKING:
    from kernel_daemon.ftrace.core import Ftrace
    from kernel_daemon.ftrace.records import FtracePageGroup

BANNER = "=" * 66


@dataclass(frozen=True)
class FreedPageAccess:
    """A walk that reached a freed record page."""

    function: str
    page_addr: int
    module: str
    task: task_mod.Task


def kasan_report_freed_page(ft: Ftrace, pg: FtracePageGroup) -> None:
    current = task_mod.current()
    frames = unwind.call_trace()
    lines = [
        BANNER,
        f"BUG: KASAN: use-after-free in {frames[0] if frames else '?'}",
        f"Read of size 8 at addr {pg.page_addr:016x} by task {current.comm}/{current.pid}",
        "",
        f"The buggy address belongs to the record page of module {pg.module_name}",
        "freed by ftrace_release_mod()",
        "",
        "Call Trace:",
        *(f" {name}" for name in frames),
        BANNER,
    ]
    ft.printk.printk("\n".join(lines), level=3)
    ft.freed_page_accesses.append(
        FreedPageAccess(frames[0] if frames else "?", pg.page_addr, pg.module_name, current))
