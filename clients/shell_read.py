"""ftrace-shell's ``read`` builtin: bash 5.2's read_builtin (builtins/read.def) with
``-r`` and its names, byte for byte.

The line is read from file descriptor 0 as bash reads it: a byte at a time where the
descriptor cannot seek (a pipe, ``trace_pipe``), so that nothing past the line is taken
from the next reader; a buffer at a time where it can (a regular file, a tracefs file),
the offset then set back to the end of the line (zreadc() and zsyncfd()). Without ``-r`` a
backslash quotes the next byte (which is then no field separator) and a backslash-newline
is removed. The line is then split as bash splits it: the names but the last take a field
each (get_word_from_string() over $IFS), the last takes the rest, with its trailing IFS
white space removed unless it is a single field; no name: REPLY takes the line whole.
The status is 1 at the end of the input (a partial line still assigned).

bash marks a quoted byte in the line with CTLESC (and quotes CTLESC and CTLNUL bytes of
the input so), and removes the marks after splitting (dequote_string()); so does this.
"""

from __future__ import annotations

import errno
import os

from clients.errors import FtraceError
from clients.shell_parser import is_name
from clients.shell_regex import CLASSES
from clients.shell_runtime import Invocation, command, encode, internal_getopt
from clients.shell_variables import DEFAULT_IFS, ReadonlyVariable

__all__: list[str] = []  # the command registers itself in COMMANDS

_USAGE = ("read [-ers] [-a array] [-d delim] [-i text] [-n nchars] [-N nchars] [-p prompt]"
          " [-t timeout] [-u fd] [name ...]")
#: The options bash's read has (internal_getopt's "ersa:d:i:n:p:t:u:N:") but -r: refused.
_UNSUPPORTED = "esadinptuN"
#: bash's quoting marks in a string being split (shell.h).
CTLESC, CTLNUL = 0x01, 0x7F
#: zread.c's ZBUFSIZ: what zreadc() reads at once where it can seek back.
_ZBUFSIZ = 4096
#: The IFS white space of sh (and of an IFS that is only that), as bytes.
_SPACE_TAB_NEWLINE = frozenset(encode(DEFAULT_IFS))


def _read_line(ctx: Invocation, raw: bool, skip_ctlesc: bool,
               skip_ctlnul: bool) -> tuple[bytes, bool, bool]:
    """read_builtin()'s loop: (the line with its CTLESC marks, whether it saw an
    escape, whether the input ended before a newline). Raises FtraceError for a failed
    read(2)."""
    try:
        ctx.stdin_lseek(0, os.SEEK_CUR)
        buffered = True
    except FtraceError as error:
        buffered = error.errno != errno.ESPIPE  # input_is_pipe: a byte at a time
    line = bytearray()
    saw_escape = pass_next = eof = False
    data, index = b"", 0
    while True:
        if index == len(data):
            data, index = ctx.stdin.read(ctx.shell.stage, _ZBUFSIZ if buffered else 1), 0
            if not data:
                eof = True
                break
        byte = data[index]
        index += 1
        if pass_next:
            pass_next = False
            if byte == ord("\n"):  # a backslash-newline is removed, its CTLESC too
                if not skip_ctlesc and line:
                    line.pop()
                continue
        elif byte == ord("\\") and not raw:
            pass_next = True
            if not skip_ctlesc:
                saw_escape = True
                line.append(CTLESC)
            continue
        elif byte == ord("\n"):
            break
        elif byte == 0:
            continue  # NUL bytes are skipped
        elif not skip_ctlesc and byte == CTLESC or not skip_ctlnul and byte == CTLNUL:
            saw_escape = True
            line.append(CTLESC)
        line.append(byte)
    if buffered and index < len(data):
        try:  # zsyncfd(): the offset back to just after the line
            ctx.stdin_lseek(index - len(data), os.SEEK_CUR)
        except FtraceError:
            pass
    # A quoted NUL ends the C string.
    return bytes(line).split(b"\0", 1)[0], saw_escape, eof


def _dequote(text: bytes) -> bytes:
    """dequote_string(): the CTLESC marks removed (a lone one is kept)."""
    if text == bytes([CTLESC]):
        return text
    result = bytearray()
    index = 0
    while index < len(text):
        if text[index] == CTLESC:
            index += 1
            if index == len(text):
                break
        result.append(text[index])
        index += 1
    return bytes(result)


class _Splitter:
    """The field splitting of read's line over ``ifs``, byte by byte as in the C locale
    (subst.c's get_word_from_string() and strip_trailing_ifs_whitespace())."""

    def __init__(self, ifs: bytes, saw_escape: bool) -> None:
        self.ifs = ifs
        self.saw_escape = saw_escape
        sh_style = ifs == encode(DEFAULT_IFS)
        #: IFS white space that separates fields "adjacent" to another separator.
        white = _SPACE_TAB_NEWLINE if sh_style else CLASSES["space"]
        #: The bytes of IFS white space: those of ``white``, and of space, tab and
        #: newline, that IFS holds.
        self.white = frozenset(byte for byte in ifs if byte in white)
        self.space_tab_newline = frozenset(byte for byte in ifs if byte in _SPACE_TAB_NEWLINE)
        #: string_extract_verbatim()'s SX_NOCTLESC and SX_NOESCCTLNUL.
        self.no_ctlesc = CTLESC in ifs
        self.no_escctlnul = CTLNUL in ifs

    @staticmethod
    def skip(text: bytes, index: int, white: frozenset[int]) -> int:
        """Past the bytes of ``white`` from ``index``: where the rest starts."""
        while index < len(text) and text[index] in white:
            index += 1
        return index

    def word(self, text: bytes, start: int) -> tuple[bytes | None, int]:
        """get_word_from_string() at ``start``: (the word, None when only IFS white
        space is left; where the rest starts)."""
        index = self.skip(text, start, self.white)
        if index == len(text):
            return None, index
        end = self._verbatim_end(text, index)
        word = text[index:end]
        whitesep = end < len(text) and text[end] in self.white
        if end < len(text):
            end += 1
        end = self.skip(text, end, self.space_tab_newline)
        if end < len(text) and whitesep and text[end] in self.ifs and text[end] not in self.white:
            end = self.skip(text, end + 1, self.white)
        return word, end

    def _verbatim_end(self, text: bytes, index: int) -> int:
        """string_extract_verbatim(): where the word from ``index`` ends, at an IFS
        byte not quoted by CTLESC (the end of ``text`` when IFS is empty)."""
        if not self.ifs:
            return len(text)
        while index < len(text):
            byte = text[index]
            if byte == CTLESC and (not self.no_ctlesc or not self.no_escctlnul
                                   and text[index + 1:index + 2] == bytes([CTLNUL])):
                index = min(index + 2, len(text))
                continue
            if byte in self.ifs:
                break
            index += 1
        return index

    def strip_trailing(self, text: bytes) -> bytes:
        """strip_trailing_ifs_whitespace(): IFS space, tab and newline off the end (and
        a CTLESC before one), the first byte kept."""
        end = len(text) - 1
        while end > 0 and (text[end] in self.space_tab_newline
                           or self.saw_escape and text[end] == CTLESC
                           and text[end + 1:end + 2] in (b" ", b"\t", b"\n")):
            end -= 1
        return text[:end + 1]


@command("read [-r] [NAME...]", "read a line into NAMEs, split on $IFS (none: REPLY)",
         builtin=True)
def cmd_read(ctx: Invocation) -> int:
    parsed = internal_getopt(ctx, "r", _USAGE, unsupported=_UNSUPPORTED)
    if isinstance(parsed, int):
        return parsed
    options, names = parsed
    raw = "r" in options
    if names and not is_name(names[0]):  # checked before reading, as bash does
        ctx.builtin_err(f"`{names[0]}': not a valid identifier")
        return 1
    variables = ctx.shell.variables
    ifs = encode(variables.ifs)
    try:
        text, saw_escape, eof = _read_line(ctx, raw, CTLESC in ifs, CTLNUL in ifs)
    except FtraceError as error:
        ctx.builtin_err(f"read error: 0: {ctx.shell.reason(error)}")
        return 1
    status = 1 if eof else 0

    def assign(name: str, value: bytes) -> None:
        # bash dequotes a value that is not empty, where the line had an escape.
        value = _dequote(value) if saw_escape and value else value
        variables.assign(name, value.decode("utf-8", "surrogateescape"))

    try:
        if not names:
            assign("REPLY", text)
            return status
        splitter = _Splitter(ifs, saw_escape)
        index = splitter.skip(text, 0, splitter.space_tab_newline)  # IFS white space off the start
        for name in names[:-1]:
            if not is_name(name):
                ctx.builtin_err(f"`{name}': not a valid identifier")
                return 1
            word: bytes | None = None
            if index < len(text):
                word, index = splitter.word(text, index)
            assign(name, word or b"")
        last = names[-1]
        if not is_name(last):
            ctx.builtin_err(f"`{last}': not a valid identifier")
            return 1
        rest: bytes | None = text[index:]
        if rest:
            word, end = splitter.word(text, index)
            rest = word if end == len(text) else splitter.strip_trailing(rest)
        assign(last, rest or b"")
    except ReadonlyVariable as error:  # bash's read stops there: the names after keep theirs
        ctx.err(f"{ctx.shell.prefix()}: {error.message}")
        return 1
    return status
