"""What ftrace-stress tells its user, where a wrong answer would go unnoticed: the
observers' verdicts on a real daemon (an anomaly that is none, a report that is lost),
the outcome and exit status table, and the reproducer search's delta debugging.
"""

from __future__ import annotations

from collections.abc import Callable

from clients.stress.minimize import ddmin


# --- delta debugging (minimize.ddmin) --------------------------------------------------


def counting(needed: set[int]) -> tuple[Callable[[list[int]], bool],
                                        list[tuple[int, ...]]]:
    """A test that passes when every ``needed`` item is kept, and the lists it was asked
    about (an endless search fails instead of hanging the test)."""
    asked: list[tuple[int, ...]] = []

    def test(items: list[int]) -> bool:
        asked.append(tuple(items))
        assert len(asked) < 10_000, "ddmin does not end"
        return needed <= set(items)
    return test, asked


def test_ddmin_ends_when_every_command_of_a_long_list_is_needed():
    """More commands than ddmin removes one at a time (ONE_BY_ONE), none removable: at one
    command a chunk it cannot split finer and must stop. It went round again, asking
    the same lists, which the minimizer answers from its replay cache and no replay
    budget counts: ftrace-stress hung after the run."""
    test, _ = counting(set(range(17)))
    assert ddmin(list(range(17)), test, lambda: True) == list(range(17))
