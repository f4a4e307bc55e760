"""Filter patterns: ``filter_parse_regex()`` and ``ftrace_match()`` as in 3.6.

Only the 3.x forms exist (spec §3.3.3): ``foo``, ``foo*``, ``*foo``, ``*foo*`` and
``*``.  The first ``*`` at a position other than 0 ends the pattern, so ``foo*bar``
is the prefix match ``foo`` (the documented quirk); ``?``, ``[`` and ``\\`` are
literal.  Matching is vectorised over one page group's names.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from kernel_daemon.strings import c_string


class MatchType(enum.IntEnum):
    """``enum regex_type`` of kernel/trace/trace.h."""

    MATCH_FULL = 0
    MATCH_FRONT_ONLY = 1
    MATCH_MIDDLE_ONLY = 2
    MATCH_END_ONLY = 3


@dataclass(frozen=True)
class Regex:
    search: str
    type: MatchType
    negate: bool


def filter_parse_regex(buff: str) -> Regex:
    """``filter_parse_regex(buff, len, &search, &not)`` of kernel/trace/trace_events_filter.c
    (3.6), ``len`` being the whole of ``buff``.

    It scans all ``len`` chars for a ``*``, past a NUL too, and writes a NUL over the
    first ``*`` after position 0; the callers then compare the C string at ``search``
    (``strlen``, ``strcmp``), so the search ends at the first NUL.
    """
    negate = buff.startswith("!")
    if negate:
        buff = buff[1:]
    start, end = 0, len(buff)
    type_ = MatchType.MATCH_FULL
    for i, ch in enumerate(buff):
        if ch != "*":
            continue
        if i == 0:
            start = 1
            type_ = MatchType.MATCH_END_ONLY
        else:
            type_ = (MatchType.MATCH_MIDDLE_ONLY if type_ == MatchType.MATCH_END_ONLY
                     else MatchType.MATCH_FRONT_ONLY)
            end = i  # buff[i] = 0: the pattern ends at this '*', the rest is ignored.
            break
    return Regex(c_string(buff[start:end]), type_, negate)


def ftrace_match(names: np.ndarray, regex: Regex) -> np.ndarray:
    """``ftrace_match()`` of the glob forms over an array of symbol names: a boolean
    mask.  ``filter.ftrace_match_record`` answers MATCH_FULL and MATCH_FRONT_ONLY from a
    page group's name index instead of comparing every name."""
    if not regex.search:
        return np.ones(len(names), dtype=bool)
    if regex.type == MatchType.MATCH_FRONT_ONLY:
        return np.strings.startswith(names, regex.search)
    if regex.type == MatchType.MATCH_END_ONLY:
        return np.strings.endswith(names, regex.search)
    return np.strings.find(names, regex.search) >= 0
