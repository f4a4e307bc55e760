"""Taint and the WARN slow path.

Model of ``kernel/panic.c`` (3.6): ``tainted_mask``, ``add_taint()``, ``print_tainted()``,
``warn_slowpath_null()`` and ``warn_slowpath_fmt()`` → ``warn_slowpath_common()``,
``print_oops_end_marker()``, plus the x86 ``dump_stack()`` it calls
(``arch/x86/kernel/dumpstack.c``).

The 3.6 WARN block (spec §5.1), which is what the upstream report quotes::

    ------------[ cut here ]------------
    WARNING: at kernel/trace/ftrace.c:1529 __ftrace_hash_rec_update+0x1e3/0x230()
    Modules linked in: uinput
    Pid: 20903, comm: bash Tainted: G           O 3.6.11+ #38405.trunk
    Call Trace:
     [<ffffffff8103e5ff>] warn_slowpath_common+0x7f/0xc0
     ...
    ---[ end trace 793179526ee09b2c ]---

Modern kernels (3.12+ / 4.x) differ: the header is ``WARNING: CPU: %d PID: %d at
%s:%d %pS`` with no ``()``, the task line is ``CPU: %d PID: %d Comm: %.20s %s %.*s
%s`` with ``Hardware name:`` after it, call-trace lines carry no address, and the end
marker's id is 0.  The model prints the 3.6 form only.

Where the model differs from the kernel: there is no DMI, so no ``Hardware name:``
line; there is no lockdep, so ``add_taint()`` never prints "Disabling lock debugging";
and return addresses are synthesised (``kernel_daemon.module.kallsyms.return_address_in``),
since no real code runs, but for the call edges of the report's trace, which keep its
offsets.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable

from kernel_daemon.printk import Printk
from kernel_daemon.task import Task

# include/linux/kernel.h (3.6) taint bits.
TAINT_PROPRIETARY_MODULE = 0
TAINT_FORCED_MODULE = 1
TAINT_UNSAFE_SMP = 2
TAINT_FORCED_RMMOD = 3
TAINT_MACHINE_CHECK = 4
TAINT_BAD_PAGE = 5
TAINT_USER = 6
TAINT_DIE = 7
TAINT_OVERRIDDEN_ACPI_TABLE = 8
TAINT_WARN = 9
TAINT_CRAP = 10
TAINT_FIRMWARE_WORKAROUND = 11
TAINT_OOT_MODULE = 12

# kernel/panic.c (3.6) tnts[]: (bit, char when set, char when clear), in print order.
TNTS: tuple[tuple[int, str, str], ...] = (
    (TAINT_PROPRIETARY_MODULE, "P", "G"),
    (TAINT_FORCED_MODULE, "F", " "),
    (TAINT_UNSAFE_SMP, "S", " "),
    (TAINT_FORCED_RMMOD, "R", " "),
    (TAINT_MACHINE_CHECK, "M", " "),
    (TAINT_BAD_PAGE, "B", " "),
    (TAINT_USER, "U", " "),
    (TAINT_DIE, "D", " "),
    (TAINT_OVERRIDDEN_ACPI_TABLE, "A", " "),
    (TAINT_WARN, "W", " "),
    (TAINT_CRAP, "C", " "),
    (TAINT_FIRMWARE_WORKAROUND, "I", " "),
    (TAINT_OOT_MODULE, "O", " "),
)

_U64 = (1 << 64) - 1


def _get_random_u64() -> int:
    """``get_random_bytes(&oops_id, sizeof(oops_id))``."""
    return int.from_bytes(secrets.token_bytes(8), "little")


class Panic:
    """One kernel's taint state and WARN printer. Thread-safe."""

    def __init__(
        self,
        printk: Printk,
        symbolize: Callable[[int], str],
        return_address: Callable[[str, str], int | None],
        modules_linked_in: Callable[[], str],
        release: str = "3.6.11+",
        version: str = "#1 SMP ftrace-sim",
        boot_oops_id: int | None = None,
    ) -> None:
        """``symbolize(addr)`` gives the ``%pS`` text ("name+0xoff/0xsize [mod]"),
        ``return_address(caller, callee)`` the address in ``caller`` just after its call
        to ``callee`` (``Kallsyms.return_address``; None for an unknown ``caller``),
        ``modules_linked_in()`` the whole line ``print_modules()`` prints.

        ``boot_oops_id`` is the value ``late_initcall(init_oops_id)`` drew at boot
        (random when ``None``); tests fix it to get byte-exact output.
        """
        self._printk = printk
        self._symbolize = symbolize
        self._return_address = return_address
        self._modules_linked_in = modules_linked_in
        self._release = release
        self._version = version
        self._tainted_mask = 0
        self._oops_id = _get_random_u64() if boot_oops_id is None else boot_oops_id & _U64
        # WARNs printed since boot (what later kernels keep as warn_count, 6.2's
        # /sys/kernel/warn_count); unlike the lines in dmesg, dmesg -c does not reset it.
        self.warn_count = 0
        # Serialises whole WARN blocks so end-trace ids appear in dmesg in order.
        self._lock = threading.Lock()

    def _init_oops_id(self) -> None:
        """``init_oops_id()``: draw a random id while it is 0, else count up by one per trace."""
        if not self._oops_id:
            self._oops_id = _get_random_u64()
        else:
            self._oops_id = (self._oops_id + 1) & _U64

    @property
    def tainted_mask(self) -> int:
        """``tainted_mask``."""
        return self._tainted_mask

    def add_taint(self, flag: int) -> None:
        """``add_taint()``: set bit ``flag`` of ``tainted_mask``."""
        with self._lock:
            self._tainted_mask |= 1 << flag

    def print_tainted(self) -> str:
        """``print_tainted()``: "Not tainted", or "Tainted: " and one char per ``tnts[]`` entry."""
        mask = self._tainted_mask
        if not mask:
            return "Not tainted"
        return "Tainted: " + "".join(on if mask >> bit & 1 else off for bit, on, off in TNTS)

    def warn_slowpath_null(self, file: str, line: int, task: Task, frames: list[str]) -> None:
        """``WARN_ON()``'s ``warn_slowpath_null()`` → ``warn_slowpath_common()``.

        ``frames`` is the kernel stack innermost first (``unwind.call_trace()``);
        ``frames[0]`` is the function containing the WARN.
        """
        self.warn_slowpath_common(file, line, task, frames, "warn_slowpath_null")

    def warn_slowpath_fmt(self, file: str, line: int, task: Task, frames: list[str],
                          message: str) -> None:
        """``WARN()`` / ``WARN_ONCE()``'s ``warn_slowpath_fmt()`` → ``warn_slowpath_common()``,
        which prints ``message`` (``vprintk(args->fmt, args->args)``), a line of text
        without its newline, after the WARNING line.  3.6's WARN texts end without one;
        the line ends anyway, as the ``Modules linked in:`` printk after it carries a
        level, which starts a new record."""
        self.warn_slowpath_common(file, line, task, frames, "warn_slowpath_fmt", message)

    def warn_slowpath_common(self, file: str, line: int, task: Task, frames: list[str],
                             slowpath: str, message: str | None = None) -> None:
        """``warn_slowpath_common()``, entered from ``slowpath`` (``warn_slowpath_null`` or
        ``warn_slowpath_fmt``), whose return address in ``frames[0]`` the WARNING names.

        The whole block goes out in one ``printk`` so its lines share a timestamp and stay
        together under concurrency, then the kernel is tainted with ``TAINT_WARN``.
        """
        # The stack innermost first, from dump_stack() (not printed: the unwinder starts
        # at its caller's return address) out to the entry path.
        chain = ["dump_stack", "warn_slowpath_common", slowpath, *frames]
        with self._lock:
            # The slow path passes __builtin_return_address(0): the return into frames[0].
            caller = self._return_address(frames[0], slowpath) if frames else None
            out = [
                "------------[ cut here ]------------",
                # %pS of NULL prints "(null)" (vsprintf.c pointer()).
                f"WARNING: at {file}:{line} "
                f"{'(null)' if caller is None else self._symbolize(caller)}()",
                *([] if message is None else [message]),
                self._modules_linked_in(),
                # dump_stack(): "Pid: %d, comm: %.20s %s %s %.*s"
                f"Pid: {task.pid}, comm: {task.comm[:20]} {self.print_tainted()} "
                f"{self._release} {self._version.split(' ', 1)[0]}",
                "Call Trace:",
            ]
            for callee, fn in zip(chain, chain[1:]):
                addr = self._return_address(fn, callee)
                # The unwinder only prints addresses that are kernel text.
                if addr is not None:
                    # printk_address(): " [<%p>] %s%pB"; every model frame is reliable.
                    out.append(f" [<{addr:016x}>] {self._symbolize(addr)}")
            # print_oops_end_marker()
            self._init_oops_id()
            out.append(f"---[ end trace {self._oops_id:016x} ]---")
            self._printk.printk("\n".join(out), level=4)
            # add_taint(TAINT_WARN), inline because self._lock is already held.
            self._tainted_mask |= 1 << TAINT_WARN
            self.warn_count += 1
