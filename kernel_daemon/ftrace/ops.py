"""``struct ftrace_ops`` and its flags, as in ``include/linux/ftrace.h`` (3.6)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from kernel_daemon.ftrace.hash import FtraceHash
from kernel_daemon.task import Task

FTRACE_OPS_FL_ENABLED = 1 << 0
FTRACE_OPS_FL_GLOBAL = 1 << 1
FTRACE_OPS_FL_DYNAMIC = 1 << 2
FTRACE_OPS_FL_CONTROL = 1 << 3

_FLAG_NAMES = {FTRACE_OPS_FL_ENABLED: "ENABLED", FTRACE_OPS_FL_GLOBAL: "GLOBAL",
               FTRACE_OPS_FL_DYNAMIC: "DYNAMIC", FTRACE_OPS_FL_CONTROL: "CONTROL"}


def ops_flag_names(flags: int) -> list[str]:
    """The FTRACE_OPS_FL_* set in ``flags``, by name, lowest bit first."""
    return [name for bit, name in _FLAG_NAMES.items() if flags & bit]


# ftrace_func_t is (ip, parent_ip, op).  The model adds ``count``: the same call made
# that many times in a row on this CPU, so a batch of invocations is one call.
FtraceFunc = Callable[[int, int, "FtraceOps | None", int], None]


#: The ops' ids: the kernel tells ops apart by their addresses; Python's id() of a freed
#: ops is given to the next one, so a client comparing ids would take two for one.
_ops_ids = itertools.count(1)


def ftrace_stub(ip: int, parent_ip: int, op: FtraceOps | None, count: int = 1) -> None:
    """``ftrace_stub``: the trampoline target when nothing traces."""


@dataclass(eq=False)
class FtraceOps:
    """``struct ftrace_ops``.

    ``name`` is the model's label for reports (the kernel would print the ops'
    symbol, e.g. ``trace_ops`` or ``global_ops``); ``core_data`` says whether the
    struct lives in core kernel data, which decides FTRACE_OPS_FL_DYNAMIC at
    registration (``core_kernel_data((unsigned long)ops)``); ``id`` stands for its
    address, never given to another ops while the daemon runs.
    """

    name: str
    func: FtraceFunc = ftrace_stub
    flags: int = 0
    filter_hash: FtraceHash = field(default_factory=FtraceHash)
    notrace_hash: FtraceHash = field(default_factory=FtraceHash)
    core_data: bool = False
    owner: Task | None = None  # who registered it (a tracer client); None for the kernel's
    id: int = field(default_factory=lambda: next(_ops_ids), init=False)

    @property
    def enabled(self) -> bool:
        return bool(self.flags & FTRACE_OPS_FL_ENABLED)

    def __repr__(self) -> str:
        return f"<ftrace_ops {self.name} {'|'.join(ops_flag_names(self.flags)) or '0'}>"


def ftrace_ops_test(ops: FtraceOps, ip: int) -> bool:
    """``ftrace_ops_test()``: does this ops trace ``ip``, by its hashes, at call time."""
    return ((ops.filter_hash.empty() or ops.filter_hash.lookup_ip(ip))
            and not ops.notrace_hash.lookup_ip(ip))
