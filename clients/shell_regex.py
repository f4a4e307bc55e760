"""ftrace-shell grep's regular expressions: GNU grep 3.8's syntax (BRE, ERE, fixed strings)
in the C locale, read here byte by byte and written out for RE2, which matches in time
linear in the line as GNU's DFA (dfa.c) does, or for Python's re, the backtracking
matcher GNU grep also falls back to (glibc's regexec) for back-references.

GNU's extensions outside a bracket: ``\\w \\W \\s \\S`` (the C locale's word and space
characters), ``\\b \\B \\< \\>`` (word boundaries), backslash-backquote and ``\\'`` (the
line's start and end); any other escaped character stands for itself (``\\d`` is ``d``,
``\\n`` is ``n``). Inside a bracket a backslash is a character, and ``[.c.]`` and ``[=c=]``
are the character c. A repetition operator at the start of an ERE (``*a``, ``(?i)``)
repeats nothing (or the anchor before it: ``^*a``) and is warned of, as dfa.c's dfawarn()
does; in a BRE a ``*`` there is a character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

import re2

__all__ = ["RegexError", "CLASSES", "WORD", "compile_grep"]

#: glibc's RE_DUP_MAX: a larger count in an interval is GNU grep's "too big".
_DUP_MAX = 0x7FFF
_ALL = frozenset(range(256))
#: The POSIX classes in the C locale (glibc's ctype tables for bytes 0-127; none of 128-255
#: is in any class), by name: their bytes.
CLASSES = {
    name: frozenset(byte for byte in range(128) if test(chr(byte)))
    for name, test in {
        "alpha": str.isalpha, "digit": str.isdigit, "alnum": str.isalnum,
        "upper": str.isupper, "lower": str.islower,
        "space": lambda c: c in " \t\n\v\f\r", "blank": lambda c: c in " \t",
        "punct": lambda c: c.isprintable() and not c.isalnum() and c != " ",
        "print": str.isprintable, "graph": lambda c: c.isprintable() and c != " ",
        "cntrl": lambda c: not c.isprintable(), "xdigit": lambda c: c in "0123456789abcdefABCDEF",
    }.items()
}
#: The C locale's word characters (isalnum() and "_"): GNU grep's wordchar().
WORD = CLASSES["alnum"] | {ord("_")}
_NON_WORD = _ALL - WORD
#: GNU's escapes that stand for a set of characters.
_ESCAPED_SETS = {ord("w"): WORD, ord("W"): _NON_WORD, ord("s"): CLASSES["space"],
                 ord("S"): _ALL - CLASSES["space"]}
#: GNU's escapes that are positions, as (Python's re, RE2's). An empty line has no word
#: boundary, but re's \\B does not match it (before Python 3.14).
_ESCAPED_ANCHORS = {ord("b"): (b"\\b", b"\\b"), ord("B"): (b"(?:\\B|\\A\\Z)", b"\\B"),
                    ord("`"): (b"\\A", b"\\A"), ord("'"): (b"\\Z", b"\\z")}
_UNMATCHED_BRACKET = "Unmatched [, [^, [:, [., or [="


class RegexError(Exception):
    """A pattern GNU grep refuses: ``message`` is grep's (glibc's regerror() words, or,
    ``from_dfa``, dfa.c's), after the ``warnings`` dfa.c printed before it."""

    def __init__(self, message: str, warnings: list[str] | None = None,
                 from_dfa: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.warnings = warnings or []
        self.from_dfa = from_dfa


class Match(Protocol):
    def start(self) -> int: ...

    def end(self) -> int: ...


class Matcher(Protocol):
    """A compiled pattern (RE2's or Python's re): the leftmost match at or after ``pos``,
    or one that starts at ``pos``, up to ``endpos``; both see the text before ``pos``
    (RE2's also the text after ``endpos``, and its ``$`` matches at the text's end only,
    as GNU's regexec() with not_eol)."""

    def search(self, text: bytes, pos: int = 0, endpos: int = ...) -> Match | None: ...

    def match(self, text: bytes, pos: int = 0, endpos: int = ...) -> Match | None: ...


_Item = frozenset[int] | tuple[bytes, bytes] | str


@dataclass
class _Pieces:
    """The pattern read so far: each piece a byte set (one character), bytes (an operator,
    group or anchor, in Python's syntax, with RE2's beside it), or "<"/">" (\\< \\>)."""

    items: list[_Item] = field(default_factory=list)
    #: Where the last atom starts (None: none yet in this group or branch), and whether a
    #: repetition must put it in a group first: an anchor, which re refuses to repeat, or
    #: an atom already repeated ("a**").
    atom: int | None = None
    wrap: bool = False
    #: The last atom is an anchor (repeated or not), which glibc does not repeat.
    anchor: bool = False
    #: Nothing but anchors since the start, a "(" or a "|": dfa.c's laststart, where a
    #: BRE's "*" is a character and an ERE's repetition is warned of.
    at_start: bool = True
    #: Where each open group's "(" is.
    groups: list[int] = field(default_factory=list)
    has_back_reference: bool = False

    def add_atom(self, item: _Item, *, anchor: bool = False) -> None:
        """One character, a group's end, a back-reference or (``anchor``) a position."""
        self.atom, self.wrap, self.anchor = len(self.items), anchor, anchor
        self.at_start = self.at_start and anchor
        self.items.append(item)

    def add_operator(self, text: bytes) -> None:
        self.items.append((text, text))

    def repeat(self, operator: bytes) -> None:
        assert self.atom is not None
        if self.wrap:  # Python's re refuses "a**" and "^*": "(?:a*)*" means the same
            self.items.insert(self.atom, (b"(?:", b"(?:"))
            self.add_operator(b")")
        self.add_operator(operator)
        self.wrap = True

    def start_branch(self) -> None:
        self.atom, self.wrap, self.anchor, self.at_start = None, False, False, True


def _set_text(members: frozenset[int]) -> bytes:
    """A character set in the syntax Python's re and RE2 share (bytes as \\xNN)."""
    if not members:
        return b"(?:\\b\\B)"  # no character: a position that cannot be
    if len(members) == 1:
        (byte,) = members
        return bytes(members) if bytes(members).isalnum() else b"\\x%02x" % byte
    ranges, ordered = [], sorted(members)
    start = previous = ordered[0]
    for byte in ordered[1:] + [-1]:
        if byte != previous + 1:
            last = b"-\\x%02x" % previous if previous > start else b""
            ranges.append(b"\\x%02x" % start + last)
            start = byte
        previous = byte
    return b"[" + b"".join(ranges) + b"]"


class _Parser:
    """GNU grep's two readings of a BRE or ERE: glibc's regcomp() first, whose error (the
    first in the pattern) stops grep, then dfa.c's, which warns (``messages``, in the
    pattern's order) and whose own error ends the list; what matches is dfa.c's reading."""

    def __init__(self, pattern: bytes, extended: bool, ignore_case: bool = False) -> None:
        self.pattern = pattern
        self.extended = extended
        self.ignore_case = ignore_case
        self.pos = 0
        self.pieces = _Pieces()
        self.messages: list[str] = []
        self.dfa_error: str | None = None
        #: The open groups' numbers, and glibc's completed_bkref_map: the groups a
        #: back-reference may name.
        self.opened = 0
        self.numbers: list[int] = []
        self.closed: set[int] = set()
        #: glibc's own count of open groups, and whether it skipped the last token (an
        #: ERE's repetition with nothing to repeat): then a ")" is a character to it.
        self.glibc_depth = 0
        self.glibc_skipped = False

    def dfa(self, message: str, *, error: bool = False) -> None:
        if self.dfa_error is None:
            self.messages.append(message)
            if error:
                self.dfa_error = message

    def parse(self) -> _Pieces:
        pattern, pieces = self.pattern, self.pieces
        while self.pos < len(pattern):
            char = pattern[self.pos:self.pos + 1]
            escaped = char == b"\\"
            if escaped:
                if self.pos + 1 >= len(pattern):
                    raise RegexError("Trailing backslash")
                self.pos += 1
                char = pattern[self.pos:self.pos + 1]
            self.pos += 1
            skipped, self.glibc_skipped = self.glibc_skipped, False
            # An operator: "(" in an ERE, "\(" in a BRE; else, escaped or not, a
            # character or one of GNU's escapes.
            operator = char in b"(){}|+?" and escaped != self.extended
            if char == b"*" and not escaped or operator and char in b"+?{":
                self.repetition(char)
            elif operator and char == b"(":
                self.opened += 1
                self.glibc_depth += 1
                self.numbers.append(self.opened)
                pieces.groups.append(len(pieces.items))
                pieces.add_operator(b"(")
                pieces.start_branch()
            elif operator and char == b")":
                if self.glibc_depth and not skipped:
                    self.glibc_depth -= 1
                if not pieces.groups:
                    if not self.extended:
                        raise RegexError("Unmatched ) or \\)")
                    pieces.add_atom(frozenset(b")"))  # an ERE's unmatched ")" is a character
                    continue
                self.closed.add(self.numbers.pop())
                pieces.add_operator(b")")
                pieces.atom, pieces.wrap, pieces.anchor = pieces.groups.pop(), False, False
                pieces.at_start = False
            elif operator and char == b"|":
                pieces.add_operator(b"|")
                pieces.start_branch()
            elif operator:  # "}" (an ERE's, or a BRE's "\}") outside an interval
                pieces.add_atom(frozenset(char))
            elif escaped and char in b"123456789":
                if int(char) not in self.closed:
                    raise RegexError("Invalid back reference")
                pieces.has_back_reference = True
                pieces.add_atom((b"(?:\\" + char + b")", b""))
            elif escaped and char[0] in _ESCAPED_SETS:
                pieces.add_atom(_ESCAPED_SETS[char[0]])
            elif escaped and char[0] in _ESCAPED_ANCHORS:
                pieces.add_atom(_ESCAPED_ANCHORS[char[0]], anchor=True)
            elif escaped and char in b"<>":
                pieces.add_atom(char.decode(), anchor=True)
            elif not escaped and char == b"[":
                pieces.add_atom(self.bracket())
            elif not escaped and char == b".":
                pieces.add_atom(_ALL)
            elif not escaped and char == b"^" and (self.extended or self.after_open()):
                pieces.add_atom((b"^", b"^"), anchor=True)
            elif not escaped and char == b"$" and (self.extended or self.before_close()):
                pieces.add_atom((b"$", b"$"), anchor=True)
            else:
                pieces.add_atom(frozenset(char))
        if self.glibc_depth:
            raise RegexError("Unmatched ( or \\(")
        return pieces

    def repetition(self, char: bytes) -> None:
        """``*``, ``+``, ``?`` or the ``{`` of an interval (``\\+``... in a BRE)."""
        pieces = self.pieces
        if pieces.at_start and not self.extended:  # a BRE's "*", "\\{"... there: a character
            pieces.add_atom(frozenset(char))
            return
        text = char
        # glibc repeats no anchor: it skips an ERE's operator there (and at the start),
        # and a BRE's is a character to it; dfa.c reads the interval alone.
        only_dfa = pieces.atom is None or pieces.anchor
        self.glibc_skipped = only_dfa and self.extended
        pieces.anchor = pieces.anchor and self.extended
        if char == b"{":
            interval = self.dfa_interval() if only_dfa else self.interval()
            if interval is None:  # a "{" that starts no interval is a character
                pieces.add_atom(frozenset(char))
                return
            self.glibc_skipped = False  # its last token was the "}"
            text = interval
        if pieces.at_start:  # it repeats nothing, or an anchor ("^*a": any "a")
            self.dfa(f"{'{...}' if char == b'{' else char.decode()} at start of expression")
        if char == b"{" and only_dfa and int(text[1:-1].split(b",")[1] or -1) > _DUP_MAX:
            self.dfa("regular expression too big", error=True)
        if pieces.atom is not None:
            pieces.repeat(text)

    def interval(self) -> bytes | None:
        """glibc's parse_dup_op(): the interval from after its "{", in Python's syntax;
        None for an ERE's "{" that starts none (RE_INVALID_INTERVAL_ORD)."""
        opening = self.pos
        start, stop = self.number()
        end = -2
        if start == -1:
            if stop != b",":  # "{}"
                raise RegexError("Invalid content of \\{\\}")
            start = 0  # "{,N}" is "{0,N}"
        if start != -2:
            end, stop = (start, stop) if stop == b"}" else self.number()
        if start == -2 or end == -2:
            if self.extended:
                self.pos = opening
                return None
            raise RegexError("Unmatched \\{" if stop == b"" else "Invalid content of \\{\\}")
        if end != -1 and start > end or stop != b"}":
            raise RegexError("Invalid content of \\{\\}")
        if (start if end == -1 else end) > _DUP_MAX:
            raise RegexError("Regular expression too big")
        return b"{%d,%s}" % (start, b"" if end == -1 else b"%d" % end)

    def number(self) -> tuple[int, bytes]:
        """glibc's fetch_number(): the count up to a "," or the interval's end (-1: none,
        -2: not a number, or the pattern ended), and which of b",", b"}" or b"" (the
        pattern's end) stopped it."""
        close = b"}" if self.extended else b"\\}"
        number = -1
        while True:
            if self.pos >= len(self.pattern):
                return -2, b""
            if self.pattern.startswith(close, self.pos):
                self.pos += len(close)
                return number, b"}"
            length = 2 if self.pattern[self.pos:self.pos + 1] == b"\\" else 1
            token = self.pattern[self.pos:self.pos + length]
            self.pos += length
            if token == b",":
                return number, b","
            if number == -2 or not (length == 1 and token.isdigit()):
                number = -2
            else:
                number = min(_DUP_MAX + 1, max(number, 0) * 10 + int(token))

    def dfa_interval(self) -> bytes | None:
        """dfa.c's lex() of an interval from after its "{", where glibc read none, in
        Python's syntax: None (the "{" a character) for an ERE's that is not well formed,
        a BRE's its error."""
        close = b"}" if self.extended else b"\\\\}"
        body = re.compile(rb"([0-9]*)(,?)([0-9]*)" + close).match(self.pattern, self.pos)
        low, comma, high = body.groups() if body else (b"", b"", b"")
        minimum = min(int(low), _DUP_MAX + 1) if low else 0 if comma else -1
        maximum = minimum if not comma else min(int(high), _DUP_MAX + 1) if high else -1
        if body is None or minimum < 0 or 0 <= maximum < minimum:
            if not self.extended:  # glibc read a "{" character; dfa.c refuses it
                self.dfa("invalid content of \\{\\}", error=True)
            return None
        self.pos = body.end()
        return b"{%d,%s}" % (minimum, b"" if maximum < 0 else b"%d" % maximum)

    def bracket(self) -> frozenset[int]:
        """The bracket expression after its "[": its characters."""
        pattern = self.pattern
        negated = pattern[self.pos:self.pos + 1] == b"^"
        self.pos += negated
        first = self.pos
        members: set[int] = set()
        # dfa.c's colon_warning_state: "[:alpha:]" was meant as "[[:alpha:]]".
        colons = {"first": pattern[first:first + 1] == b":", "last": False, "other": False,
                  "special": False}
        while True:
            if self.pos >= len(pattern):
                # glibc: nothing in the bracket ("[", "[^") is a bad pattern, else unmatched.
                raise RegexError(_UNMATCHED_BRACKET if self.pos > first
                                 else "Invalid regular expression")
            if pattern[self.pos] == ord("]") and self.pos > first:
                break
            # glibc: a "-" that is neither first, nor last, nor a range's end is an error
            # ("[a-c-e]", "[[:alpha:]-z]").
            if (pattern[self.pos] == ord("-") and self.pos > first
                    and pattern[self.pos + 1:self.pos + 2] != b"]"):
                raise RegexError("Invalid range end")
            item_start = self.pos
            low, is_class = self.bracket_item()
            hyphen = not is_class and pattern[self.pos:self.pos + 1] == b"-"
            if hyphen and self.pos + 1 >= len(pattern):
                raise RegexError(_UNMATCHED_BRACKET)
            if hyphen and pattern[self.pos + 1] != ord("]"):
                self.pos += 1
                high, high_is_class = self.bracket_item()
                if high_is_class or max(high) < min(low):
                    raise RegexError("Invalid range end")
                members.update(range(min(low), max(high) + 1))
                colons["special"] = True
            else:
                members.update(low)
                if self.pos - item_start > 1:  # a class, "[.c.]" or "[=c=]"
                    colons["special"] = True
                colons["last"] = low == frozenset(b":")
                colons["other"] = colons["other"] or not colons["last"]
        self.pos += 1
        if colons["first"] and colons["last"] and colons["other"] and not colons["special"]:
            self.dfa("character class syntax is [[:space:]], not [:space:]", error=True)
        if self.ignore_case:
            # Folded before the complement, as regcomp() with REG_ICASE builds the set:
            # -i '[^a]' excludes A too (the matcher's folding would let A match it).
            members.update(bytes(members).swapcase())
        chosen = frozenset(members)
        return _ALL - chosen if negated else chosen

    def bracket_item(self) -> tuple[frozenset[int], bool]:
        """One item of a bracket: its characters, and whether it is a class or an
        equivalence class (no range's end)."""
        pattern, j = self.pattern, self.pos
        kind = pattern[j + 1:j + 2] if pattern[j] == ord("[") else b""
        if kind not in (b":", b".", b"="):
            self.pos += 1
            return frozenset(pattern[j:j + 1]), False
        end = pattern.find(kind + b"]", j + 2)
        if end < 0:
            raise RegexError(_UNMATCHED_BRACKET)
        name = pattern[j + 2:end].decode("latin-1")
        self.pos = end + 2
        if kind == b":":
            if name not in CLASSES:
                raise RegexError("Invalid character class name")
            return CLASSES[name], True
        if len(name) != 1:  # the C locale has no multi-character collating elements
            raise RegexError("Invalid collation character")
        return frozenset(name.encode("latin-1")), kind == b"="

    def after_open(self) -> bool:
        """A BRE's "^" is an anchor first in the pattern, a group or a branch."""
        items = self.pieces.items
        return not items or items[-1] in ((b"(", b"("), (b"|", b"|"))

    def before_close(self) -> bool:
        """A BRE's "$" is an anchor last in the pattern, a group or a branch."""
        return (self.pos == len(self.pattern)
                or self.pattern.startswith((b"\\)", b"\\|"), self.pos))


def _python_text(pieces: _Pieces) -> bytes:
    """The pattern for Python's re, whose lookaround writes \\< and \\>."""
    out = []
    for item in pieces.items:
        if isinstance(item, frozenset):
            out.append(_set_text(item))
        elif isinstance(item, tuple):
            out.append(item[0])
        else:
            out.append(b"\\b(?=\\w)" if item == "<" else b"\\b(?<=\\w)")
    return b"".join(out)


def _re2_text(pieces: _Pieces, spans: bool) -> bytes | None:
    """The pattern for RE2, which has no lookaround (``\\<`` is ``\\b`` before a word
    character): each ``\\<`` and ``\\>`` becomes ``\\b`` with what fixes its side, the
    character next to it (not repeated) kept to word or non-word characters, the line's
    start or end, or (first or last in a branch of the whole pattern) a non-word character
    taken beside it, unless the match's ``spans`` must be exact; None when none is there,
    or for a back-reference."""
    if pieces.has_back_reference:
        return None
    items = list(pieces.items)
    depth = [0] * (len(items) + 1)  # of the groups around each item
    for index, item in enumerate(items):
        step = {b"(": 1, b"(?:": 1, b")": -1}.get(item[0], 0) if isinstance(item, tuple) else 0
        depth[index + 1] = depth[index] + step

    def single(index: int) -> bool:
        """A one-character atom at ``index``, not repeated."""
        if not (0 <= index < len(items) and isinstance(items[index], frozenset)):
            return False
        after = items[index + 1] if index + 1 < len(items) else None
        return not (isinstance(after, tuple) and after[0][:1] in (b"*", b"+", b"?", b"{"))

    def outer_edge(index: int) -> bool:
        """``index`` is past the end, or a "|", of the whole pattern (not of a group)."""
        return index in (-1, len(items)) or items[index] == (b"|", b"|") and not depth[index]

    for index, item in enumerate(items):
        if not isinstance(item, str):
            continue
        start = item == "<"
        before, after = items[index - 1] if index else None, items[index + 1:index + 2]
        replacement = b"\\b"
        # \< : a non-word character (or the line's start) before, a word character after.
        if single(index + 1):
            nxt = items[index + 1]
            assert isinstance(nxt, frozenset)
            items[index + 1] = nxt & WORD if start else nxt - WORD
        elif single(index - 1):
            assert isinstance(before, frozenset)
            items[index - 1] = before - WORD if start else before & WORD
        elif before == (b"^", b"^") and start or after == [(b"$", b"$")] and not start:
            pass  # at the line's start or end, \b is \< or \>
        elif spans:
            return None
        elif start and outer_edge(index - 1):
            replacement = b"(?:^|" + _set_text(_NON_WORD) + b")\\b"
        elif not start and outer_edge(index + 1):
            replacement = b"\\b(?:$|" + _set_text(_NON_WORD) + b")"
        else:
            return None
        items[index] = (b"", replacement)
    return b"".join(_set_text(item) if isinstance(item, frozenset) else item[1]
                    for item in items if not isinstance(item, str))


#: GNU's wrappings of a pattern for -w and -x (dfasearch.c's GEAcompile(), for its DFA):
#: a match with no word character beside it, the whole line. Non-capturing, so the
#: pattern's back-references keep their numbers.
_WHOLE: dict[str, tuple[list[_Item], list[_Item]]] = {
    "w": ([(b"(?:", b"(?:"), (b"^", b"^"), (b"|", b"|"), _NON_WORD, (b")", b")"),
           (b"(?:", b"(?:")],
          [(b")", b")"), (b"(?:", b"(?:"), _NON_WORD, (b"|", b"|"), (b"$", b"$"),
           (b")", b")")]),
    "x": ([(b"^", b"^"), (b"(?:", b"(?:")], [(b")", b")"), (b"$", b"$")]),
}


def compile_grep(pattern: bytes, syntax: str, ignore_case: bool, *, whole: str = "",
                 spans: bool = False) -> tuple[Matcher, list[str]]:
    """A matcher for ``pattern`` as GNU grep -G, -E or -F (``syntax``) reads it, and the
    warnings grep prints for it; ``whole``: "w" or "x", what a line must hold for -w or -x
    (a match of the pattern with no word character beside it, or only one); ``spans``:
    the matches must be where GNU's are (-o), not only found. Matches are POSIX's, the
    leftmost then longest. RE2 matches, unless the pattern has a back-reference (GNU
    grep's DFA leaves those to regexec too), a \\< or \\> that RE2, which has no
    lookaround, cannot place (:func:`_re2_text`), or a count over RE2's 1000: then
    Python's re, which backtracks (and, for ``spans``, is asked for the longest match
    from where it finds one: :class:`_Longest`). Raises RegexError."""
    warn: list[str] = []
    if syntax == "F":
        pieces = _Pieces([frozenset((byte,)) for byte in pattern])
    else:
        parser = _Parser(pattern, syntax == "E", ignore_case)
        pieces = parser.parse()
        warn = parser.messages
        if parser.dfa_error is not None:
            raise RegexError(parser.dfa_error, warn[:-1], from_dfa=True)
    if whole:
        before, after = _WHOLE[whole]
        pieces = _Pieces(before + pieces.items + after,
                         has_back_reference=pieces.has_back_reference)
    re2_text = _re2_text(pieces, spans)
    if re2_text is not None:
        options = re2.Options()
        options.encoding = re2.Options.Encoding.LATIN1
        options.case_sensitive = not ignore_case
        options.longest_match = True
        options.log_errors = False
        try:
            return re2.compile(re2_text, options), warn
        except re2.error:  # beyond RE2's limits
            pass
    flags = re.IGNORECASE if ignore_case else 0
    try:
        matcher = re.compile(_python_text(pieces), flags)
    except re.error as error:  # none known: the pattern was read above, as glibc does
        raise RegexError("Invalid regular expression") from error
    return (_Longest(matcher) if spans else matcher), warn


class _Match:
    """Where a match is (what the -o search reads of one)."""

    def __init__(self, start: int, end: int) -> None:
        self._span = start, end

    def start(self) -> int:
        return self._span[0]

    def end(self) -> int:
        return self._span[1]


class _Longest:
    """Python's re, whose match is its first alternative's, made POSIX's: from where it
    matches, the longest match, found by asking for one that ends at each place (a
    lookahead for the bytes left after it), from the furthest."""

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self._pattern = pattern
        # One pattern for each number of bytes left, compiled once: re's own cache holds
        # 512, fewer than one line's ends can ask for.
        self._endings: dict[int, re.Pattern[bytes]] = {}

    def _ending(self, left: int) -> re.Pattern[bytes]:
        ending = self._endings.get(left)
        if ending is None:
            ending = self._endings[left] = re.compile(
                b"(?:%s)(?=[\\x00-\\xff]{%d}\\Z)" % (self._pattern.pattern, left),
                self._pattern.flags)
        return ending

    def _longest(self, text: bytes, found: re.Match[bytes] | None, endpos: int) -> _Match | None:
        if found is None:
            return None
        for end in range(endpos, found.end(), -1):
            if self._ending(endpos - end).match(text, found.start(), endpos):
                return _Match(found.start(), end)
        return _Match(found.start(), found.end())

    def search(self, text: bytes, pos: int = 0, endpos: int | None = None) -> _Match | None:
        endpos = len(text) if endpos is None else endpos
        return self._longest(text, self._pattern.search(text, pos, endpos), endpos)

    def match(self, text: bytes, pos: int = 0, endpos: int | None = None) -> _Match | None:
        endpos = len(text) if endpos is None else endpos
        return self._longest(text, self._pattern.match(text, pos, endpos), endpos)
