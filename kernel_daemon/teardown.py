"""Why a booted kernel went away, and the ENODEV of a call that finds it gone.

A kernel ends in one of two ways: ``Kernel.Reboot`` boots another in its place
(:data:`REBOOTED`), or ftraced stops (:data:`SHUT_DOWN`: SIGTERM, SIGINT, its lifeline
gone). A call still on it then fails with ENODEV: one bound to it (a tracer's stream, a
failpoint waiter, a file session), one woken by its teardown (a read of ``trace_pipe``
blocked in the ring buffer), or one that needs memory the teardown unlinked (a module
load's record pages, a ring buffer resize). Its message says which way the kernel went,
so a client can tell a retry that finds a new kernel from one that finds no daemon:
:func:`kernel_gone` makes every such error, the wording kept here only.

The model's own (no kernel counterpart: a real process dies with its kernel, and learns
nothing).
"""

from __future__ import annotations

import errno

from kernel_daemon.errno import KernelError

#: Kernel.Reboot replaced the kernel.
REBOOTED = "the kernel rebooted"
#: The daemon is stopping.
SHUT_DOWN = "ftraced is shutting down"


def kernel_gone(reason: str, what: str = "") -> KernelError:
    """The ENODEV of a call whose kernel went away for ``reason`` (:data:`REBOOTED`,
    :data:`SHUT_DOWN`); ``what``, when given, names what of it the call needed."""
    return KernelError(errno.ENODEV, f"{reason}: {what}" if what else reason)
