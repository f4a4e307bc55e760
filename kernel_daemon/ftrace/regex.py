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
    """``filter_parse_regex()`` of kernel/trace/trace_events_filter.c (3.6)."""
    negate = buff.startswith("!")
    if negate:
        buff = buff[1:]
    search = buff
    type_ = MatchType.MATCH_FULL
    for i, ch in enumerate(buff):
        if ch != "*":
            continue
        if i == 0:
            search = buff[1:]
            type_ = MatchType.MATCH_END_ONLY
        else:
            type_ = (MatchType.MATCH_MIDDLE_ONLY if type_ == MatchType.MATCH_END_ONLY
                     else MatchType.MATCH_FRONT_ONLY)
            # buff[i] = 0: the pattern ends at this '*', the rest is ignored.
            search = search[: len(search) - (len(buff) - i)]
            break
    return Regex(search, type_, negate)


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
