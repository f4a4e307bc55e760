"""The preemption count of the code running now (``include/linux/preempt.h``).

Only what the trace output shows of it: the depth ``preempt_disable_notrace()`` adds
around a callback, which ``trace_function()`` records as ``trace_entry.preempt_count``
and the latency format prints as the fourth irq-info character.  A ContextVar, as
``current`` (kernel_daemon.task) is: it follows the call, whichever thread runs it.
"""

from __future__ import annotations

import contextvars

_preempt_count: contextvars.ContextVar[int] = contextvars.ContextVar("preempt_count", default=0)


def preempt_count() -> int:
    """``preempt_count()``: 0 in a system call, one more per disable around it."""
    return _preempt_count.get()


def preempt_disable_notrace() -> contextvars.Token[int]:
    """``preempt_disable_notrace()``: one level deeper, until
    :func:`preempt_enable_notrace` with the token it returns."""
    return _preempt_count.set(_preempt_count.get() + 1)


def preempt_enable_notrace(token: contextvars.Token[int]) -> None:
    """``preempt_enable_notrace()``: back to the depth before the disable."""
    _preempt_count.reset(token)
