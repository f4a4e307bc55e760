"""bash's pattern matching (``case WORD in PATTERN)``): lib/glob/sm_loop.c's GMATCH and
BRACKMATCH as strmatch() runs them for a case command, in the C locale (a byte is a
character; ranges by byte value, as bash's globasciiranges, on by default), without
extglob or nocasematch (off by default).

``*`` matches any string, ``?`` any byte, ``[...]`` one byte of a bracket expression
(``!`` or ``^`` first negates it; ranges ``a-z``; classes ``[:alpha:]``; ``[=c=]`` and
``[.c.]`` name a byte (``[.hyphen.]``, a POSIX name, names none here: see
:meth:`_Matcher.collsym`); a ``]`` first is a member; a ``[`` with no ``]`` after it is an
ordinary character); a backslash makes the next character ordinary. The pattern is one
:func:`clients.shell_variables.expand_pattern` made: its quoted characters escaped.
"""

from __future__ import annotations

from clients.shell_regex import CLASSES, WORD
from clients.shell_runtime import encode

__all__ = ["strmatch"]

_BACKSLASH, _STAR, _QUESTION, _OPEN, _CLOSE = b"\\*?[]"
_BANG, _CARET, _DASH, _EQUALS, _COLON, _PERIOD = b"!^-=:."
#: COLLSYM()'s answer for a collating symbol it does not know: no byte is it.
_INVALID = -1

#: The character classes of the C locale (is_cclass()): regcomp()'s, and bash's own
#: ``ascii`` and ``word``.
_CLASSES: dict[bytes, frozenset[int]] = {
    **{name.encode(): members for name, members in CLASSES.items()},
    b"ascii": frozenset(range(0x80)),
    b"word": WORD,
}


def strmatch(pattern: str, string: bytes) -> bool:
    """Whether ``string`` (a case command's word, encoded once for all its patterns)
    matches ``pattern`` (its UTF-8 bytes, as the shell reads it)."""
    return _Matcher(encode(pattern)).gmatch(string, 0, 0, None)


class _Matcher:
    def __init__(self, pattern: bytes) -> None:
        self.pattern = pattern

    def at(self, index: int) -> int:
        """The pattern's byte at ``index``; past its end the C string's NUL."""
        return self.pattern[index] if index < len(self.pattern) else 0

    def gmatch(self, string: bytes, n: int, p: int, ends: list[int] | None) -> bool:
        """GMATCH(): whether ``string[n:]`` matches the pattern from ``p``. With ``ends``
        (a recursion from a ``*``), a later ``*`` reached stops there, its place (pattern,
        string) put in ``ends``: the caller goes on from it instead of backtracking."""
        pattern, pe, se = self.pattern, len(self.pattern), len(string)
        while p < pe:
            c = pattern[p]
            p += 1
            sc = string[n] if n < se else 0
            if c == _QUESTION:
                if n == se:
                    return False
            elif c == _BACKSLASH:
                if not (p == pe and sc == _BACKSLASH and n + 1 == se):
                    if p == pe:
                        return False
                    c = pattern[p]
                    p += 1
                    if sc != c:
                        return False
            elif c == _STAR:
                if ends is not None:
                    ends[:] = [p - 1, n]
                    return True
                if p == pe:
                    return True
                # Collapse the *s and ?s that follow, each ? taking one byte.
                c = pattern[p]
                p += 1
                while c in (_QUESTION, _STAR):
                    if c == _QUESTION:
                        if n == se:
                            return False
                        n += 1
                    if p == pe:
                        break
                    c = pattern[p]
                    p += 1
                if p == pe and c in (_QUESTION, _STAR):
                    return True
                first = self.at(p) if c == _BACKSLASH else c
                p -= 1
                end: list[int] = []
                while n < se:
                    if c == _OPEN or string[n] == first:
                        if self.gmatch(string, n, p, end):
                            if not end:
                                return True
                            break
                    n += 1
                if not end:
                    return False
                p, n = end
                continue
            elif c == _OPEN:
                if n == se:
                    return False
                after = self.brackmatch(p, sc)
                if after is None:
                    return False
                p = after
            elif c != sc:
                return False
            n += 1
        return n == se

    def collsym(self, p: int) -> tuple[int, int]:
        """PARSE_COLLSYM() at the ``.`` after a ``[``: (the byte the collating symbol
        names, or _INVALID; where the pattern goes on). Without its ``.]`` it takes the
        rest of the pattern. COLLSYM() knows a one-byte name only: bash's table of POSIX
        names (``[.hyphen.]``) is not kept, so such a name names no byte, as an unknown
        one does in bash."""
        p += 1
        end = self.pattern.find(b".]", p)
        if end < 0:
            return _INVALID, len(self.pattern)
        name = self.pattern[p:end]
        return (name[0] if len(name) == 1 else _INVALID), end + 2

    def brackmatch(self, p: int, test: int) -> int | None:
        """BRACKMATCH(): where the pattern goes on after the bracket expression starting
        at ``p`` (after its ``[``) if ``test`` is a member, else None; a ``[`` with no
        ``]`` after it matches itself."""
        at = self.at
        unclosed = p if test == _OPEN else None  # savep: the "[" as an ordinary character
        negated = at(p) in (_BANG, _CARET)
        if negated:
            p += 1
        c = at(p)
        p += 1
        while True:
            cstart = c
            if c == _OPEN and at(p) == _EQUALS and at(p + 2) == _EQUALS and at(p + 3) == _CLOSE:
                found = test == at(p + 1)  # [=c=]: a one-byte class, COLLEQUIV()
                p += 4
                if found:
                    return self.skip_matched(p + 1, unclosed, negated)
                c = at(p)
                p += 1
                if c == 0:
                    return unclosed
                continue
            if c == _OPEN and at(p) == _COLON:
                close = self.pattern.find(b":]", p + 1)
                found = False
                if close >= 0:
                    name = self.pattern[p + 1:close].replace(b"\\", b"")
                    found = test in _CLASSES.get(name, ())
                    p = close + 2
                if found:
                    return self.skip_matched(p + 1, unclosed, negated)
                c = at(p)
                p += 1
                if c == 0:
                    return unclosed
                if c == _CLOSE:
                    break
                continue
            if c == _OPEN and at(p) == _PERIOD:
                symbol, p = self.collsym(p)
                cstart = (test + 1) & 0xFF if symbol == _INVALID else symbol
            if c == _BACKSLASH:
                if at(p) == 0:
                    return None
                cstart = at(p)
                p += 1
            if c == 0:
                return unclosed
            c = at(p)
            p += 1
            if c == 0:
                return unclosed
            cend, is_range = cstart, False
            if c == _DASH and at(p) != _CLOSE:
                cend = at(p)
                p += 1
                if cend == _BACKSLASH:
                    cend = at(p)
                    p += 1
                if cend == 0:
                    return None
                if cend == _OPEN and at(p) == _PERIOD:
                    symbol, p = self.collsym(p)
                    cend = (test - 1) & 0xFF if symbol == _INVALID else symbol
                c = at(p)
                p += 1
                if cstart > cend:  # an invalid range: no member, the rest still counts
                    if c == _CLOSE:
                        break
                    continue
                is_range = True
            if is_range and cstart <= test <= cend or not is_range and test == cstart:
                return self.skip_matched(p, unclosed, negated)
            if c == _CLOSE:
                break
        return p if negated else None

    def skip_matched(self, p: int, unclosed: int | None, negated: bool) -> int | None:
        """BRACKMATCH()'s ``matched:``: the rest of the bracket expression skipped (its
        ``[:...:]``, ``[=...=]``, ``[.x.]``, escaped bytes), from just after where the
        member was found; where the pattern goes on, unless it is negated (``unclosed``:
        the answer where it has no ``]``)."""
        at = self.at
        p -= 1
        c = at(p)
        depth, opened = 1, None  # brcnt and brchrp
        while depth > 0:
            if c == 0:
                return unclosed
            previous = c
            c = at(p)
            p += 1
            if c == _OPEN and at(p) in (_EQUALS, _COLON, _PERIOD):
                depth += 1
                opened = p
                p += 1
                c = at(p)
                if c == 0:
                    return unclosed
            elif c == _CLOSE and depth > 1 and opened is not None and previous == at(opened):
                depth -= 1
                opened = None
            elif c == _CLOSE and (opened is None or at(opened) != _PERIOD):
                depth = 0
            elif c == _BACKSLASH:
                if at(p) == 0:
                    return None
                p += 1
        return None if negated else p
