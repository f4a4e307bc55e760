"""ftrace-shell's command language: a subset of bash's, tokenized and parsed by hand.

Supported: words with '...', "..." and backslash quoting (backslash-newline continues a
line); comments (``#`` starting a word, to the end of the line); ``;`` and newlines;
``&&`` and ``||`` (left to right, as bash); pipelines ``a | b`` (the shell runs only
pipelines into ``grep``) and ``! PIPELINE``; redirections ``> FILE``, ``>> FILE``, ``>|
FILE``, ``N> FILE``, ``N>> FILE``, ``< FILE``, ``N< FILE``, ``N>&M`` and ``N<&M`` (also
written without a space: ``>file``, ``2>/dev/null``, ``<&3``), ``N>&-`` and ``N<&-``
(close N); ``>&WORD`` (a file) and ``N<&M-`` (a move) are refused. bash's compound
commands, with their redirections after them (``done > FILE``, ``done < FILE``; the
descriptors they make, 3 and up too, are those of the commands inside): ``if
LIST; then LIST; [elif LIST; then LIST;]... [else LIST;] fi``, ``while LIST; do LIST;
done``, ``until LIST; do LIST; done``, ``for NAME [in WORDS]; do LIST; done``, ``case WORD
in [(]PATTERN[|PATTERN]...) LIST ;; ... esac`` (a clause ended by ``;;``, ``;&`` or
``;;&``; its patterns kept with their quoted characters escaped, :attr:`Token.pattern`)
and ``{ LIST; }``, parsed into nodes named as bash's command.h names them
(:class:`IfCommand`, :class:`CaseCommand` and its :class:`PatternList` clauses...).
Function definitions, ``NAME() COMPOUND [REDIRECTIONS]`` and ``function NAME [()]
COMPOUND [REDIRECTIONS]`` (newlines may come before the body; a body that is no compound
command is bash's syntax error, a subshell, ``((`` or ``[[`` one refused), into
:class:`FunctionDef`.
Parameters, unquoted or in double quotes: ``$NAME``, ``${NAME}``, ``${#NAME}`` (its
length), the special ``$?``, ``$$``, ``$#``, ``$0``, ``$1``..., ``${10}``, ``$@`` and
``$*``; command substitution ``$(...)``, parsed as it is read, as bash's parse_comsub does
(a ``)`` ends it where the command before it is complete: a case pattern's is the
command's), and run when the word is expanded. Each is kept in the word as a marker
(:func:`parameter_marker`, :func:`substitution_marker`) that
:mod:`clients.shell_variables` expands, splits and removes as bash does when the command
runs. A word ``NAME=value`` before a command's name (unquoted ``NAME``) is an assignment
(:attr:`Command.assignments`). ``${NAME`` without its ``}`` is bash's unexpected EOF. Of
the ``${...}`` operators, ``-``, ``=``, ``?`` and ``+`` (and with ``:``:
``${a:-word}``...) are read, with a plain-text word (on ``$@`` and ``$*`` too:
``"${@-word}"`` is ``"$@"`` where there are positional parameters, ``"${@+set}"`` no field
where there are none, as bash's); the others (``${a%x}``, ``${!a}``...), a word with
quotes or expansions (``${a:-"x"}``, ``${a:-$b}``), ``$-``, ``$!`` and ``$'...'`` are
refused; ``$"..."`` is ``"..."`` (no message catalogs). An unquoted ``~`` where bash would
expand it (a word's start; after the ``=`` or a ``:`` of an assignment) is refused, and so
is a brace expression where bash would expand it (``{1..3}``, ``a{b,c}``, ``for i in
a={x,y}``; not in an assignment, ``a={x,y}``, nor in a case command's word or pattern),
and an assignment ``a+=x``, ``a[0]=x``, ``a[0]+=x`` or ``a=(x y)`` (``echo a=(x)``: bash's
syntax error). No globbing (pathname expansion), subshells, backquotes, arithmetic,
background jobs, here-documents or here-strings: ``$`` not starting a parameter and ``*``
are ordinary characters outside a case pattern (``echo uinput* > set_ftrace_filter``
writes the glob itself, as bash does when nothing in the current directory matches);
``)``, ``;;``, ``;&`` and ``;;&`` outside a case command and a ``(`` after a command's
words are syntax errors; ``<<``, ``<<<``, ``<>``, ``&``, ``&>``, ``&>>``, ``|&``, a ``(``
starting a command, ``$((`` and a backquote are refused. bash's reserved words are read
where bash reads them, as a command's first word, unquoted (``esac``: also where a case
clause's first pattern would be): those of a compound command the shell does not run
(``select``, ``[[``, ``coproc``...) are refused, and those that only continue or close one
(``then``, ``fi``, ``}``, ...) are bash's syntax error where no open compound command
waits for them; anywhere else (``echo fi``, ``'if'``, a case pattern ``if)``) they are
words.

:func:`parse` turns complete input into a list of :class:`AndOr`; input that needs more
lines (an open quote, a trailing ``&&``, ``||``, ``|`` or backslash-newline, a compound
command without its ``fi``, ``done``, ``esac`` or ``}``) raises :class:`Incomplete`, so a
reader can append the next line and try again, as bash's parser asks for more input. At the end of
all input (``at_eof``) a final backslash-newline continues onto nothing, as in bash; a
backslash that is the input's very last character (a ``-c`` command's: bash ends any other
input with a newline) is a plain character.
"""

from __future__ import annotations

import re
import dataclasses
from dataclasses import dataclass, field
from typing import Callable

__all__ = [
    "ShellSyntaxError",
    "Incomplete",
    "Token",
    "Redirect",
    "Command",
    "Pipeline",
    "AndOr",
    "IfCommand",
    "WhileCommand",
    "ForCommand",
    "CaseCommand",
    "PatternList",
    "GroupCommand",
    "CompoundCommand",
    "FunctionDef",
    "tokenize",
    "parse",
    "is_name",
    "parameter_marker",
    "substitution_marker",
    "parameter_spec",
    "ParameterSpec",
    "PARAMETER_MARKER",
    "QUOTED_NULL",
    "STRING_END",
    "MARKER",
    "fd_number",
]

#: Operators, longest first so that ">>" wins over ">".
_OPERATORS = ("<<<", ";;&", "&>>", "&&", "&>", "||", "|&", ";;", ";&", ">>", ">&", ">|", "<<",
              "<&", "<>", ";", "|", ">", "<", "&", "(", ")")
#: What ends a case command's clause: bash's SEMI_SEMI, SEMI_AND (fall through to the next
#: clause's list) and SEMI_SEMI_AND (go on testing the next clauses' patterns).
_CASE_TERMINATORS = frozenset((";;", ";&", ";;&"))
_OPERATOR_CHARS = frozenset("".join(_OPERATORS))
#: What this shell does not run: bash would, so it is refused, not misread. The operators
#: of _REFUSED_OPERATORS wherever they come; "(" where it starts a command, and "( )" after
#: a command's first word (elsewhere bash refuses them too); "$((" and "`" in a word,
#: unquoted or in double quotes.
_NOT_SUPPORTED = {
    "<<": "a here-document",
    "<<<": "a here-string",
    "<>": "opening a file for reading and writing",
    "&": "a background job",
    "&>": "redirecting stdout and stderr at once",
    "&>>": "redirecting stdout and stderr at once",
    "|&": "piping stdout and stderr at once",
    "(": "a subshell",
    "$((": "arithmetic expansion",
    "`": "command substitution",
    # bash's reserved words that start a command the shell does not run (parse.y's
    # reserved_words; the others are read below).
    "time": "a timed pipeline",
    "select": "a select command",
    "for ((": "an arithmetic for loop",
    # A command substitution ends at its first ")" outside a word (bash's parser finds
    # its end), so a case clause's ")" would end it.
    "((": "an arithmetic command",
    "[[": "a conditional command",
    "coproc": "a coprocess",
    # Parameters (the key is what follows the "$").
    "${op}": "a parameter expansion operator",
    "${op word}": "quoting or an expansion in a parameter expansion's word",
    "${!": "an indirect expansion",
    "$-": "the special parameter",
    "$!": "the special parameter",
    "$'": "ANSI-C quoting",
    "~": "tilde expansion",
    # The key is no text; the brace expression is shown.
    "{,}": "brace expansion",
    "+=": "an appending assignment",
    "[]=": "an array element's assignment",
    "=(": "an array assignment",
}
#: A brace expression bash expands (braces.c's brace_expand): an unquoted "{...}" with an
#: unquoted "," in it, or a sequence ``{X..Y[..INCR]}`` of numbers or of letters. Quoted
#: or expanded text is "\0" here; a "$" is never the start of one (``${a}``).
#: The assignments bash's assignment() takes that the shell does not make: ``NAME+=``
#: and ``NAME[SUBSCRIPT]=`` (the text before the "=", the word's unquoted text).
_APPENDING = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+")
_ELEMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\[[^\]]*\]\+?")
_BRACE_EXPRESSION = re.compile(r"\{([^{}]*)\}")
_BRACE_SEQUENCE = re.compile(r"[-+]?[0-9]+\.\.[-+]?[0-9]+(\.\.[-+]?[0-9]+)?|"
                             r"[A-Za-z]\.\.[A-Za-z](\.\.[-+]?[0-9]+)?")
_REFUSED_OPERATORS = frozenset(("<<", "<<<", "<>", "&", "&>", "&>>", "|&"))
#: The redirection operators the shell makes, and the file descriptor each is of when no
#: number comes before it.
_REDIRECTIONS = {">": 1, ">>": 1, ">|": 1, ">&": 1, "<": 0, "<&": 0}
#: bash's other reserved words: each continues or closes a compound command, so where a
#: command starts bash reports it as an unexpected token.
_CLOSING_RESERVED_WORDS = frozenset(("then", "else", "elif", "fi", "do", "done", "in", "esac",
                                     "}", "]]"))
#: The reserved words that open a compound command the shell runs, and "!".
_OPENING_RESERVED_WORDS = frozenset(("if", "while", "until", "for", "case", "{", "!",
                                     "function"))
_RESERVED_WORDS = _CLOSING_RESERVED_WORDS | _OPENING_RESERVED_WORDS
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: The target of a redirection that moves a descriptor (``<&3-``).
_MOVE = re.compile(r"[0-9]+-")
#: The builtins whose assignment-shaped arguments bash expands as assignments (no field
#: splitting): parse.y's W_ASSIGNARG after a declaration builtin.
_DECLARATION_BUILTINS = frozenset(("export", "local", "declare", "typeset", "readonly"))
_BLANKS = " \t"
#: What a "$" starts without braces: a name, a digit or one of these special parameters.
_SPECIAL_PARAMETERS = "?$#@*"
#: What ends the parameter of a "${...}" and starts an operator (bash's parameter_brace_expand).
_BRACE_OPERATORS = ":-=?+#%/^,@["
#: The operators the shell expands: ${a-word} ${a=word} ${a?word} ${a+word}, and with ":"
#: (an empty value counts as unset).
_DEFAULT_OPERATOR = re.compile(r":?[-=?+]")
#: What their word may hold: plain text (the shell does no expansion inside it).
_LITERAL_WORD = re.compile(r"[^'\"\\$`~]*")
_LENGTH_OF_ELEMENT = re.compile(r"#[A-Za-z_0-9]+\[")
#: A parameter's marker in a word, PARAMETER_MARKER{u|q}SPEC PARAMETER_MARKER: NUL cannot
#: occur in a shell word (the shell drops it from its input, as bash does). SPEC is what
#: "${...}" holds; "q": in double quotes.
PARAMETER_MARKER = "\0"
#: The marker of '' or "" (a quoted null): its own kind, which no ``${...}`` makes.
QUOTED_NULL = f"{PARAMETER_MARKER}n{PARAMETER_MARKER}"
#: The marker ending a double-quoted string that has expansions: bash expands each such
#: string on its own, and one that gave nothing is a quoted null unless a ``"$@"`` in it
#: gave no positional parameters (``"$@$x"`` gives no field, ``"$@""$x"`` an empty one).
STRING_END = f"{PARAMETER_MARKER}e{PARAMETER_MARKER}"
#: Any marker in a word: its kind and its spec.
MARKER = re.compile(f"{PARAMETER_MARKER}([uqnbcCe])([^{PARAMETER_MARKER}]*){PARAMETER_MARKER}")
#: The marker of a ``${...}`` that names no parameter (``${}``, ``${1a}``): "b", then what
#: bash's "bad substitution" names, filled in where that is known (:func:`_name_bad`): the
#: word as written, or the double-quoted string's text, or an assignment's value.
_BAD_SUBSTITUTION = f"{PARAMETER_MARKER}b{PARAMETER_MARKER}"
#: Backslash escapes these inside double quotes (bash); before anything else it stays.
_DQUOTE_ESCAPABLE = frozenset('$`"\\\n')

# INT_MAX: bash reads a redirection's fd as an int; a longer number is a word.
_FD_MAX = 2**31 - 1


def fd_number(text: str) -> int | None:
    """The file descriptor ``text`` names before a redirection (ASCII digits, at most
    INT_MAX), else None: bash takes ``²>`` or a 5000-digit ``N>`` as a word."""
    if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > 10:
        return None
    fd = int(text)
    return fd if fd <= _FD_MAX else None


def is_name(text: str) -> bool:
    """bash's legal_identifier: what a variable may be called."""
    return _NAME.fullmatch(text) is not None


def parameter_marker(spec: str, quoted: bool) -> str:
    """The marker of ``${spec}`` in a word (see PARAMETER_MARKER)."""
    return f"{PARAMETER_MARKER}{'q' if quoted else 'u'}{spec}{PARAMETER_MARKER}"


def substitution_marker(source: str, line: int, quoted: bool) -> str:
    """The marker of ``$(source)`` in a word, ``source`` starting on ``line``: "c"
    (unquoted) or "C" (in double quotes), then ``LINE:SOURCE``."""
    return f"{PARAMETER_MARKER}{'C' if quoted else 'c'}{line}:{source}{PARAMETER_MARKER}"


class ShellSyntaxError(Exception):
    """Input that is not a command; ``message`` is bash's wording, ``line`` where;
    ``substitution``: inside a command substitution (bash -c exits with 127 then)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.substitution = False


class Incomplete(ShellSyntaxError):
    """The input ends inside a command; the message is bash's if no more input comes.
    ``closing``: the quote (or ``}`` of ``${``, ``)`` of ``$(``) that must come before
    the input can end the command (None when any line may); ``closing_word``: the
    reserved word that must close the outermost compound command left open (``fi``,
    ``done``, ``}``) before it can end, where that is all that is missing."""

    def __init__(self, message: str, line: int, closing: str | None = None,
                 closing_word: str | None = None) -> None:
        super().__init__(message, line)
        self.closing = closing
        self.closing_word = closing_word


@dataclass(frozen=True)
class Token:
    """``kind``: "word", "op", "io" (the fd number of a redirection) or "newline";
    ``quoted``: a word with quoting in it, never a reserved word (``'if'``, ``\\fi``);
    ``assignment``: a word ``NAME=...`` with ``NAME`` unquoted; ``source``: the word as
    written (bash names it so in "ambiguous redirect"); ``pattern``: a word's text with
    each quoted character escaped by a backslash, as a case pattern is matched (bash's
    quote_string_for_globbing of a word expanded with its quoting left); ``end_line``:
    the line the token ends on (after the backslash-newlines and quoted newlines in
    it)."""

    kind: str
    text: str
    line: int
    quoted: bool = False
    assignment: bool = False
    source: str = field(default="", compare=False)
    pattern: str = field(default="", compare=False)
    end_line: int = field(default=0, compare=False)
    #: The word's brace expression (``{x,y}``), refused where bash expands it: a simple
    #: command's word that is no assignment (``echo a={x,y}``, ``export a={x,y}``), a
    #: for command's word, a redirection's target; not an assignment's value (``a={x,y}``),
    #: a case command's word or pattern, a name.
    brace: str = field(default="", compare=False)
    #: A word shaped as an assignment the shell does not make (``a+=x``, ``a[0]=x``,
    #: ``a[0]+=x``, ``a=(x y)``): its _NOT_SUPPORTED key and text, refused where bash would
    #: assign (elsewhere ``echo a=(x)``'s "(" is bash's syntax error).
    refused_assignment: tuple[str, str] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Redirect:
    """``fd op target``: op ">" (truncate), ">>" (append), "<" (read), or ">&" or "<&"
    (duplicate: target is an fd, or "-" to close ``fd``); ``source``: the target as
    written."""

    fd: int
    op: str
    target: str
    source: str = field(default="", compare=False)


@dataclass(frozen=True)
class Command:
    """A simple command: ``assignments`` (NAME, value) come before its name;
    ``assignment_args``: the indexes of the words a declaration builtin (``export``...)
    takes as assignments, which are not split."""

    words: tuple[str, ...]
    redirects: tuple[Redirect, ...]
    line: int
    assignments: tuple[tuple[str, str], ...] = ()
    assignment_args: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Pipeline:
    """``[!] command [| command]...``; ``negated``: bash's CMD_INVERT_RETURN."""

    commands: tuple[Command | CompoundCommand | FunctionDef, ...]
    negated: bool = False


@dataclass(frozen=True)
class AndOr:
    """``first [&&|| pipeline]...``: each later pipeline runs if its operator allows."""

    first: Pipeline
    rest: tuple[tuple[str, Pipeline], ...] = ()


#: A list of commands (bash's compound_list): what a compound command runs.
CommandList = tuple[AndOr, ...]


@dataclass(frozen=True)
class IfCommand:
    """bash's if_com: ``if test; then true_case; else false_case; fi``; an ``elif`` is
    a false_case holding one more IfCommand, as bash's parser builds it."""

    test: CommandList
    true_case: CommandList
    false_case: CommandList | None
    line: int
    redirects: tuple[Redirect, ...] = ()


@dataclass(frozen=True)
class WhileCommand:
    """bash's while_com: ``while test; do action; done`` (CMD_WHILE), or with ``until``
    (CMD_UNTIL) ``until test; do action; done``."""

    test: CommandList
    action: CommandList
    until: bool
    line: int
    redirects: tuple[Redirect, ...] = ()


@dataclass(frozen=True)
class ForCommand:
    """bash's for_com: ``for name in map_list; do action; done``; ``map_list`` None:
    ``for name; do``, over the positional parameters ("$@")."""

    name: str
    map_list: tuple[str, ...] | None
    action: CommandList
    line: int
    redirects: tuple[Redirect, ...] = ()


@dataclass(frozen=True)
class PatternList:
    """bash's pattern_list, a clause of a case command: ``patterns) action`` and what
    ends it, ``terminator``: ``;;`` (or "", none: the last clause, before ``esac``), ``;&``
    (bash's CASEPAT_FALLTHROUGH) or ``;;&`` (CASEPAT_TESTNEXT). The patterns are kept as
    :attr:`Token.pattern` makes them."""

    patterns: tuple[str, ...]
    action: CommandList
    terminator: str


@dataclass(frozen=True)
class CaseCommand:
    """bash's case_com: ``case word in clauses esac``."""

    word: str
    clauses: tuple[PatternList, ...]
    line: int
    redirects: tuple[Redirect, ...] = ()


@dataclass(frozen=True)
class GroupCommand:
    """bash's group_com: ``{ command; }``."""

    command: CommandList
    line: int
    redirects: tuple[Redirect, ...] = ()


CompoundCommand = IfCommand | WhileCommand | ForCommand | CaseCommand | GroupCommand


@dataclass(frozen=True)
class FunctionDef:
    """bash's function_def: ``name() command`` or ``function name [()] command``, whose
    running defines the function ``name`` (as written) with the body ``command``, a
    compound command that carries the redirections after it (each call makes them);
    ``identifier``: bash's check_identifier(name, 0) passes (the name has no quoting and
    no ``$``), else running it is bash's "not a valid identifier"."""

    name: str
    command: CompoundCommand
    line: int
    identifier: bool


class _Lexer:
    def __init__(self, text: str, line: int, at_eof: bool, pos: int = 0,
                 comsub: bool = False) -> None:
        """``comsub``: the text from ``pos`` is a command substitution's, which the first
        ``)`` outside its words ends (:attr:`closed`)."""
        self.text = text
        self.pos = pos
        self.line = line
        self.at_eof = at_eof
        self.comsub = comsub
        self.closed = False
        self.tokens: list[Token] = []

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ""

    def take(self) -> str:
        char = self.text[self.pos]
        self.pos += 1
        if char == "\n":
            self.line += 1
        return char

    def run(self) -> list[Token]:
        while self.pos < len(self.text) and not self.closed:
            char = self.peek()
            if char in _BLANKS:
                self.take()
            elif char == "\n":
                self.tokens.append(Token("newline", "\n", self.line, end_line=self.line))
                self.take()
            elif char == "#":
                while self.pos < len(self.text) and self.peek() != "\n":
                    self.take()
            elif char == "\\" and self.peek(1) == "\n":
                self.take(), self.take()  # line continuation between words
                self.need_more_at_end()
            elif char in _OPERATOR_CHARS:
                self.operator()
            else:
                self.word()
        return self.tokens

    def need_more_at_end(self) -> None:
        # A backslash-newline ending the input continues onto a line not yet read (at the
        # end of all input, onto nothing).
        if self.pos >= len(self.text) and not self.at_eof:
            raise Incomplete("syntax error: unexpected end of file", self.line)

    def operator(self) -> None:
        for op in _OPERATORS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                # The ")" of a function definition's "()" does not end it.
                if op == ")" and self.comsub and not (
                        self.tokens and (self.tokens[-1].kind, self.tokens[-1].text) == ("op", "(")):
                    self.closed = True
                else:
                    self.tokens.append(Token("op", op, self.line, end_line=self.line))
                return

    def word(self) -> None:
        line, start = self.line, self.pos
        parts: list[str] = []
        pattern: list[str] = []  # the parts with their quoted characters escaped
        plain: list[str] = []  # the unquoted characters as written, the rest "\0"
        quoted = assignment = False
        # NAME+= or NAME[...]=: (its _NOT_SUPPORTED key, the text to show).
        refused_assignment: tuple[str, str] | None = None
        while self.pos < len(self.text):
            char = self.peek()
            if char in _BLANKS or char == "\n" or char in _OPERATOR_CHARS:
                break
            self.take()
            plain.append(char if char not in "\\'\"$" else "\0")
            if char == "\\":
                # The input's last character: it escapes nothing and stays.
                escaped = self.take() if self.pos < len(self.text) else "\\"
                if escaped == "\n":  # backslash-newline inside a word joins the lines
                    self.need_more_at_end()
                else:
                    parts.append(escaped)
                    pattern.append(_glob_quoted(escaped))
                    quoted = True
            elif char in "'\"":
                body = self.single_quoted(line) if char == "'" else self.double_quoted(line)
                if char == '"' and PARAMETER_MARKER in body:
                    body += STRING_END
                parts.append(body or QUOTED_NULL)
                pattern.append(_glob_quoted(body) or QUOTED_NULL)
                quoted = True
            elif char == "`":
                raise _refused(char, self.line)
            elif char == "$":
                parts.append(self.parameter(quoted=False))
                pattern.append(parts[-1])
            elif char == "~" and (not parts or assignment and parts[-1] in ("=", ":")):
                # Where bash expands a tilde: a word's start, and in an assignment (or an
                # argument shaped like one) after the "=" or a ":".
                raise _refused(char, self.line)
            else:
                # bash's assignment(): an unquoted name before the first "=".
                if char == "=" and not quoted and not assignment and not refused_assignment:
                    before = "".join(plain[:-1]).replace("\0", "...")
                    assignment = is_name(before)
                    if _APPENDING.fullmatch(before):
                        refused_assignment = ("+=", before + "=")
                    elif _ELEMENT.fullmatch(before):
                        refused_assignment = ("[]=", before + "=")
                parts.append(char)
                pattern.append(char)
        text = "".join(parts)
        if assignment and text.endswith("=") and self.peek() == "(":  # a=(1 2)
            refused_assignment = ("=(", text + "(")
        # Where a brace expression is expanded, the parser decides.
        brace = self.brace_expression("".join(plain))
        is_fd = not quoted and fd_number(text) is not None and self.peek() in ("<", ">")
        self.tokens.append(Token("io" if is_fd else "word", text, line, quoted, assignment,
                                 self.text[start:self.pos], "".join(pattern), self.line,
                                 brace, refused_assignment))

    @staticmethod
    def brace_expression(plain: str) -> str:
        """The first brace expression bash expands (``{1..3}``, ``a{b,c}``; not ``{}``
        nor ``{a}``) in a word whose unquoted text is ``plain``, as written (quoted
        text "..."); "" if none."""
        for found in _BRACE_EXPRESSION.finditer(plain):
            inside = found.group(1)
            if "," in inside or _BRACE_SEQUENCE.fullmatch(inside):
                return found.group().replace("\0", "...")
        return ""

    def parameter(self, quoted: bool) -> str:
        """After a "$": the marker of the parameter it starts, "" for the "$" of
        ``$"..."``, else the "$" itself. Raises ShellSyntaxError for what the shell
        refuses (arithmetic expansion, ``$-``, ``$!``, ``$'...'``)."""
        char = self.peek()
        if char == "(":
            if self.peek(1) == "(":
                raise _refused("$((", self.line)
            self.take()
            return self.command_substitution(quoted)
        if char == "{":
            self.take()
            return self.braced_parameter(quoted)
        if char and "$" + char in _NOT_SUPPORTED and not (char == "'" and quoted):
            raise _refused("$" + char, self.line)
        if char == '"' and not quoted:
            return ""  # $"...": bash's translated string, "..." without a message catalog
        spec = self.text[self.pos:self.pos + _leading_parameter(self.text[self.pos:])]
        if char.isascii() and char.isdigit():
            spec = char  # $10 is ${1}0
        self.pos += len(spec)  # a parameter has no newline in it
        return parameter_marker(spec, quoted) if spec else "$"

    def command_substitution(self, quoted: bool) -> str:
        """After a "$(": the marker of the command substitution, to its ")". As bash's
        parse_comsub, the command is parsed now, so that its syntax errors are the
        input's; it is kept as written and run when the word is expanded."""
        line, start = self.line, self.pos
        inner = _Lexer(self.text, line, self.at_eof, self.pos, comsub=True)
        while not self._comsub_ends(inner):
            pass
        self.pos, self.line = inner.pos, inner.line
        return substitution_marker(self.text[start:inner.pos - 1], line, quoted)

    def _comsub_ends(self, inner: "_Lexer") -> bool:
        """Whether the next ``)`` ``inner`` finds ends the command substitution: as in
        bash 5.2's parse_comsub, which parses on until a ``)`` comes where the command
        can end, it does where the command before it is complete; where the grammar
        takes a ``)`` there (a case pattern's), it is the command's, taken as a token,
        and False. Raises ShellSyntaxError for a ``)`` where neither can be (``$(a &&)``)
        or the command's own error, Incomplete at the end of the input."""
        tokens = inner.run()
        if not inner.closed:
            # bash names the line after the input's last one.
            raise Incomplete("unexpected EOF while looking for matching `)'",
                             inner.line + (0 if self.text.endswith("\n") else 1), ")")
        try:
            try:
                _Parser(tokens, inner.line).program()
                return True
            except Incomplete:
                closing = Token("op", ")", inner.line, end_line=inner.line)
                try:
                    _Parser([*tokens, closing], inner.line).program()
                except Incomplete:
                    tokens.append(closing)
                    inner.closed = False
                    return False
                except ShellSyntaxError:
                    pass
                raise ShellSyntaxError("syntax error near unexpected token `)'",
                                       inner.line) from None
        except ShellSyntaxError as error:
            error.substitution = True
            raise

    def braced_parameter(self, quoted: bool) -> str:
        """After a "${": the marker of what it asks for (see :func:`parameter_spec`), to
        the "}"; a ``${spec}`` naming no parameter becomes bash's "bad substitution" when
        it is expanded (_BAD_SUBSTITUTION). Other operators, and quoting or expansions in
        an operator's word, are refused."""
        end = self.text.find("}", self.pos)
        if end < 0:
            raise Incomplete("unexpected EOF while looking for matching `}'", self.line, "}")
        spec = self.text[self.pos:end]
        self.line += spec.count("\n")
        self.pos = end + 1
        source = "${" + spec + "}"
        parsed = parameter_spec(spec)
        if parsed is not None and parsed.name in ("-", "!"):
            raise _refused("$" + parsed.name, self.line)
        if spec.startswith("!"):
            raise _refused("${!", self.line, source)
        if parsed is not None and not _LITERAL_WORD.fullmatch(parsed.word):
            raise _refused("${op word}", self.line, source)
        # With "#" first only a subscript is one (${#a[0]}); ${#a:-x} is a bad substitution.
        length = _leading_parameter(spec)
        if parsed is None and (0 < length < len(spec) and spec[length] in _BRACE_OPERATORS
                               or _LENGTH_OF_ELEMENT.match(spec)):
            raise _refused("${op}", self.line, source)
        return _BAD_SUBSTITUTION if parsed is None else parameter_marker(spec, quoted)

    def single_quoted(self, line: int) -> str:
        end = self.text.find("'", self.pos)
        if end < 0:
            raise Incomplete("unexpected EOF while looking for matching `''", line, "'")
        body = self.text[self.pos:end]
        self.line += body.count("\n")
        self.pos = end + 1
        return body

    def double_quoted(self, line: int) -> str:
        parts: list[str] = []
        start = self.pos
        while True:
            if self.pos >= len(self.text):
                raise Incomplete("unexpected EOF while looking for matching `\"'", line, '"')
            char = self.take()
            if char == '"':
                return _name_bad("".join(parts), self.text[start:self.pos - 1])
            if char == "\\" and self.peek() in _DQUOTE_ESCAPABLE:
                escaped = self.take()
                if escaped != "\n":
                    parts.append(escaped)
            elif char == "`":
                raise _refused(char, self.line)
            else:
                parts.append(self.parameter(quoted=True) if char == "$" else char)


def _glob_quoted(text: str) -> str:
    """``text`` (quoted in a word) as a pattern matches it: each character a backslash
    escapes, the markers of its expansions kept (they quote their values when the
    pattern is expanded)."""
    parts: list[str] = []
    position = 0
    for match in MARKER.finditer(text):
        parts.extend("\\" + char for char in text[position:match.start()])
        parts.append(match.group())
        position = match.end()
    parts.extend("\\" + char for char in text[position:])
    return "".join(parts)


def _name_bad(text: str, source: str) -> str:
    """``text`` with its bad substitutions' markers naming ``source`` (as written), as
    bash's "bad substitution" names the string it was expanding. Only markers are
    replaced: a ``b`` of text between two of them (``"$1b$2"``) reads as one."""
    named = f"{PARAMETER_MARKER}b{source}{PARAMETER_MARKER}"
    return MARKER.sub(lambda match: named if match.group() == _BAD_SUBSTITUTION
                      else match.group(), text)


def _leading_parameter(text: str) -> int:
    """How long the parameter starting ``text`` is: a name, a number, or one of the
    special parameters (0: none)."""
    match = _NAME.match(text) or re.match(r"[0-9]+", text)
    if match:
        return match.end()
    return 1 if text[:1] and text[0] in _SPECIAL_PARAMETERS + "-!" else 0


@dataclass(frozen=True)
class ParameterSpec:
    """What a ``${...}`` asks for: ``name``'s value, its ``length`` (``${#a}``), or what
    ``operator`` (``:-``, ``=``...) makes of it and ``word``."""

    name: str
    length: bool = False
    operator: str = ""
    word: str = ""


def parameter_spec(spec: str) -> ParameterSpec | None:
    """What ``${spec}`` asks for; None when it names no parameter, or an operator the
    shell does not expand: bash's "bad substitution" (or a refusal, see the lexer).
    As in bash, ``${#-x}`` is ``$#`` with the operator ``-``."""
    if spec.startswith("#") and len(spec) > 1 and _leading_parameter(spec[1:]) == len(spec) - 1:
        return ParameterSpec(spec[1:], length=True)
    end = _leading_parameter(spec)
    if end == 0:
        return None
    if end == len(spec):
        return ParameterSpec(spec)
    operator = _DEFAULT_OPERATOR.match(spec, end)
    if operator is None:
        return None
    return ParameterSpec(spec[:end], operator=operator.group(), word=spec[operator.end():])


def tokenize(text: str, line: int = 1, *, at_eof: bool = False) -> list[Token]:
    """The tokens of ``text`` (whose first line is ``line``), quotes removed from words;
    ``at_eof``: no more input follows (see the module docstring)."""
    return _Lexer(text, line, at_eof).run()


def _refused(key: str, line: int, shown: str | None = None) -> ShellSyntaxError:
    """What ``key`` of _NOT_SUPPORTED is, refused; ``shown``: the text to quote, if not
    the key."""
    return ShellSyntaxError(
        f"{_NOT_SUPPORTED[key]} (`{shown or key}') is not supported by ftrace-shell", line)


class _Parser:
    def __init__(self, tokens: list[Token], end_line: int, last_line: int | None = None) -> None:
        """``end_line``: the input's last line; ``last_line``: the lexer's line at the
        end of the input, past a final backslash-newline's continuation (default
        ``end_line``)."""
        self.tokens = tokens
        self.pos = 0
        self.end_line = end_line
        self.last_line = end_line if last_line is None else last_line
        #: The reserved words that close the compound commands being parsed, outermost
        #: first.
        self.open: list[str] = []

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def unexpected(self, token: Token | None) -> ShellSyntaxError:
        if token is None:
            return ShellSyntaxError("syntax error near unexpected token `newline'", self.end_line)
        text = "newline" if token.kind == "newline" else token.text
        return ShellSyntaxError(f"syntax error near unexpected token `{text}'", token.line)

    def skip_newlines_or_need_more(self) -> None:
        # After && || |, bash reads on: blank lines are skipped, end of input asks for more.
        while (token := self.peek()) is not None and token.kind == "newline":
            self.pos += 1
        if self.peek() is None:
            raise self.end_of_file()

    def following_is(self, operator: str) -> bool:
        """The token after the next one is the operator ``operator``."""
        following = self.tokens[self.pos + 1] if self.pos + 1 < len(self.tokens) else None
        return following is not None and (following.kind, following.text) == ("op", operator)

    def operator(self) -> str | None:
        """The operator the next token is, if it is one."""
        token = self.peek()
        return token.text if token is not None and token.kind == "op" else None

    def reserved(self) -> str | None:
        """The reserved word the next token is where a command starts (unquoted), if any."""
        token = self.peek()
        if token is None or token.kind != "word" or token.quoted:
            return None
        return token.text if token.text in _RESERVED_WORDS else None

    def end_of_file(self) -> Incomplete:
        return Incomplete("syntax error: unexpected end of file", self.end_line + 1,
                          closing_word=self.open[0] if self.open else None)

    def compound(self, closing_word: str, parse: Callable[[], CompoundCommand]) -> CompoundCommand:
        """``parse`` a compound command that ``closing_word`` ends."""
        self.open.append(closing_word)
        compound = parse()
        self.open.pop()
        return compound

    def program(self) -> list[AndOr]:
        """The whole input: its commands."""
        return list(self.command_list(frozenset()))

    def command_list(self, terminators: frozenset[str],
                     operators: frozenset[str] = frozenset()) -> CommandList:
        """bash's compound_list: and-or lists, each ended by ``;`` or a newline, up to one
        of the reserved words ``terminators`` where a command starts, or one of the
        ``operators`` (a case clause's ``;;``), neither taken; with no terminators (the
        input itself), up to the end of the tokens. A compound command may be followed
        by the terminator directly (``{ { a; } }``)."""
        result: list[AndOr] = []
        while True:
            token = self.peek()
            if token is None:
                if terminators:
                    raise self.end_of_file()
                return tuple(result)
            if token.kind == "newline":
                self.pos += 1
                continue
            if result and (self.reserved() in terminators or self.operator() in operators):
                return tuple(result)
            result.append(self.and_or())
            token = self.peek()
            if token is not None and (token.kind == "newline"
                                      or token.kind == "op" and token.text == ";"):
                self.pos += 1
            elif token is not None and self.reserved() not in terminators \
                    and self.operator() not in operators:
                raise self.unexpected(token)

    def expect(self, word: str) -> None:
        """Take the reserved word ``word``; anything else is bash's syntax error."""
        if self.reserved() != word:
            raise self.end_of_file() if self.peek() is None else self.unexpected(self.peek())
        self.pos += 1

    def and_or(self) -> AndOr:
        first = self.pipeline()
        rest: list[tuple[str, Pipeline]] = []
        while (token := self.peek()) is not None and token.kind == "op" and token.text in ("&&", "||"):
            self.pos += 1
            self.skip_newlines_or_need_more()
            rest.append((token.text, self.pipeline()))
        return AndOr(first, tuple(rest))

    def pipeline(self) -> Pipeline:
        negated = False
        while self.reserved() == "!":  # bash's "BANG pipeline_command", which may repeat
            line = self.tokens[self.pos].line
            self.pos += 1
            negated = not negated
            token = self.peek()
            if token is None or token.kind == "newline" or (token.kind, token.text) == ("op", ";"):
                # bash's "BANG list_terminator": a null command, negated.
                return Pipeline((Command((), (), line),), negated)
        commands = [self.command()]
        while (token := self.peek()) is not None and token.kind == "op" and token.text == "|":
            self.pos += 1
            self.skip_newlines_or_need_more()
            commands.append(self.command())
        return Pipeline(tuple(commands), negated)

    def command(self) -> Command | CompoundCommand | FunctionDef:
        """A simple command, a compound command with the redirections after it, or a
        function definition."""
        if self.reserved() == "function":
            return self.function_def()
        compound = self.compound_command()
        if compound is not None:
            return compound
        if self.reserved() == "!":  # only a pipeline starts with one
            raise self.unexpected(self.peek())
        return self.simple_command()

    def compound_command(self) -> CompoundCommand | None:
        """bash's shell_command with the redirections after it, if one starts here."""
        opening = {"if": ("fi", self.if_command), "while": ("done", self.while_command),
                   "until": ("done", self.while_command), "for": ("done", self.for_command),
                   "case": ("esac", self.case_command),
                   "{": ("}", self.group_command)}.get(self.reserved() or "")
        if opening is None:
            return None
        compound = self.compound(*opening)
        redirects: list[Redirect] = []
        while (token := self.peek()) is not None and (
                token.kind == "io" or token.kind == "op" and token.text in _REDIRECTIONS):
            redirects.append(self.redirect())
        if (token := self.peek()) is not None and token.kind == "op" \
                and token.text in _REFUSED_OPERATORS:
            raise _refused(token.text, token.line)
        return dataclasses.replace(compound, redirects=tuple(redirects))

    def function_def(self) -> FunctionDef:
        """``function NAME [()] BODY``: bash's FUNCTION WORD ['(' ')'] newline_list
        function_body (without the ``()``, a newline may come before the body too; a
        ``(`` without its ``)`` at once is the body's, a subshell)."""
        self.pos += 1
        name = self.peek()
        if name is None or name.kind != "word":
            raise self.unexpected(name)
        self.pos += 1
        if self.operator() == "(" and self.following_is(")"):
            self.pos += 2
        return self.function_body(name)  # a "(" not closed at once starts a subshell

    def function_body(self, name: Token) -> FunctionDef:
        """After ``NAME ()`` (or ``function NAME``): newlines, then the body, a compound
        command (bash's function_body: a shell_command and its redirections)."""
        self.skip_newlines_or_need_more()
        token = self.peek()
        assert token is not None  # skip_newlines_or_need_more() asks for more first
        if token.kind == "op" and token.text == "(":
            raise _refused("((" if self.following_is("(") else "(", token.line)
        if token.kind == "word" and not token.quoted and token.text in _NOT_SUPPORTED:
            raise _refused(token.text, token.line)
        body = self.compound_command()
        if body is None:
            raise self.unexpected(token)
        return FunctionDef(name.source, body, name.line,
                           not name.quoted and "$" not in name.source)

    def if_command(self) -> IfCommand:
        """``if`` (or ``elif``) ``LIST; then LIST; [elif ...|else LIST;] fi``, the
        ``fi`` taken."""
        line = self.tokens[self.pos].line
        self.pos += 1
        test = self.command_list(frozenset(("then",)))
        self.expect("then")
        true_case = self.command_list(frozenset(("elif", "else", "fi")))
        false_case: CommandList | None = None
        if self.reserved() == "elif":
            false_case = (AndOr(Pipeline((self.if_command(),))),)
        elif self.reserved() == "else":
            self.pos += 1
            false_case = self.command_list(frozenset(("fi",)))
            self.expect("fi")
        else:
            self.expect("fi")
        return IfCommand(test, true_case, false_case, line)

    def while_command(self) -> WhileCommand:
        """``while LIST; do LIST; done`` or ``until LIST; do LIST; done``."""
        token = self.tokens[self.pos]
        self.pos += 1
        test = self.command_list(frozenset(("do",)))
        self.expect("do")
        action = self.command_list(frozenset(("done",)))
        self.expect("done")
        return WhileCommand(test, action, token.text == "until", token.line)

    def for_command(self) -> ForCommand:
        """``for NAME [in WORDS]; do LIST; done``: newlines may come before ``in`` and
        ``do``, and ``;`` or a newline must end the words (bash's for_command rules)."""
        line = self.tokens[self.pos].line
        self.pos += 1
        name = self.peek()
        if name is not None and name.kind == "op" and name.text == "(":
            raise _refused("for ((", name.line)
        if name is None or name.kind != "word":
            raise self.unexpected(name)
        self.pos += 1
        self.skip_newlines_or_need_more()
        map_list: list[str] | None = None
        if self.reserved() == "in":
            self.pos += 1
            map_list = []
            while (token := self.peek()) is not None and token.kind == "word":
                if token.brace:  # bash expands it: a={x,y} is a=x a=y
                    raise _refused("{,}", token.line, token.brace)
                map_list.append(_name_bad(token.text, token.source))
                self.pos += 1
            if token is None:
                raise self.end_of_file()
            if not (token.kind == "newline" or token.kind == "op" and token.text == ";"):
                raise self.unexpected(token)
            self.pos += 1
        elif (token := self.peek()) is not None and token.kind == "op" and token.text == ";":
            self.pos += 1
        self.skip_newlines_or_need_more()
        self.expect("do")
        action = self.command_list(frozenset(("done",)))
        self.expect("done")
        # bash checks the name as written: `for 'i' in` and `for $x in` name none.
        return ForCommand(name.source,
                          None if map_list is None else tuple(map_list), action, line)

    def case_command(self) -> CaseCommand:
        """``case WORD in [[(]PATTERN[|PATTERN]...) LIST ;;]... esac`` (bash's
        case_command): newlines may come before ``in``, around the clauses and in them; the
        last clause's ``;;`` may be left out; ``esac`` is a reserved word where a
        clause's first pattern would be."""
        line = self.tokens[self.pos].line
        self.pos += 1
        word = self.peek()
        if word is None or word.kind != "word":
            raise self.unexpected(word)
        self.pos += 1
        self.skip_newlines_or_need_more()
        self.expect("in")
        clauses: list[PatternList] = []
        while True:
            self.skip_newlines_or_need_more()
            if self.reserved() == "esac":
                break
            clause = self.pattern_list()
            clauses.append(clause)
            if not clause.terminator:
                break
        self.expect("esac")
        return CaseCommand(_name_bad(word.text, word.source), tuple(clauses), line)

    def pattern_list(self) -> PatternList:
        """A case clause, ``[(]PATTERN[|PATTERN]...) LIST`` and its ``;;``, ``;&`` or
        ``;;&`` if it has one (its terminator, else "")."""
        if self.operator() == "(":
            self.pos += 1
        patterns: list[str] = []
        while True:
            token = self.peek()
            if token is None or token.kind != "word":
                raise self.end_of_file() if token is None else self.unexpected(token)
            patterns.append(_name_bad(token.pattern, token.source))
            self.pos += 1
            if self.operator() != "|":
                break
            self.pos += 1
        if self.operator() != ")":
            raise self.end_of_file() if self.peek() is None else self.unexpected(self.peek())
        self.pos += 1
        self.skip_newlines_or_need_more()
        action: CommandList = ()
        if self.operator() not in _CASE_TERMINATORS and self.reserved() != "esac":
            action = self.command_list(frozenset(("esac",)), _CASE_TERMINATORS)
        terminator = self.operator()
        if terminator not in _CASE_TERMINATORS:
            return PatternList(tuple(patterns), action, "")
        self.pos += 1
        return PatternList(tuple(patterns), action, terminator)

    def group_command(self) -> GroupCommand:
        """``{ LIST; }``."""
        line = self.tokens[self.pos].line
        self.pos += 1
        body = self.command_list(frozenset(("}",)))
        self.expect("}")
        return GroupCommand(body, line)

    def simple_command(self) -> Command | FunctionDef:
        words: list[str] = []
        redirects: list[Redirect] = []
        assignments: list[tuple[str, str]] = []
        assignment_args: set[int] = set()
        first = self.peek()
        if first is not None and first.kind == "op" and first.text == "(":
            raise _refused("((" if self.following_is("(") else "(", first.line)
        # Only a command's first word is a reserved word: not after an assignment or a
        # redirection ("a=1 fi", ">f if": commands named fi and if), nor quoted.
        if first is not None and first.kind == "word" and not first.quoted:
            if first.text in _CLOSING_RESERVED_WORDS:
                raise self.unexpected(first)
            if first.text in _NOT_SUPPORTED:  # of its keys, only reserved words are words
                raise _refused(first.text, first.line)
        start = self.pos
        while (token := self.peek()) is not None:
            if token.kind == "op" and token.text == "(" and self.pos == start + 1:
                if assignments:  # no function name: bash blames the "("
                    raise self.unexpected(token)
                # "name (" starts a function definition, "name ( )": bash blames what
                # follows the "(" unless it is the ")".
                self.pos += 1
                closing = self.peek()
                if closing is None or closing.kind != "op" or closing.text != ")":
                    raise self.unexpected(closing)
                self.pos += 1
                assert first is not None
                return self.function_body(first)
            if token.kind == "word" and token.refused_assignment is not None and (
                    not words or words[0] in _DECLARATION_BUILTINS):
                raise _refused(*token.refused_assignment[:1], token.line,
                               token.refused_assignment[1])
            if token.kind == "word" and token.assignment and not words:
                name, _, value = token.text.partition("=")
                assignments.append((name, _name_bad(value, token.source.partition("=")[2])))
                self.pos += 1
            elif token.kind == "word":
                # Not a function's name: "{a,b}() ..." defines the function {a,b}.
                if token.brace and not (self.pos == start and self.following_is("(")):
                    raise _refused("{,}", token.line, token.brace)
                if token.assignment and words[0] in _DECLARATION_BUILTINS:
                    assignment_args.add(len(words))
                words.append(_name_bad(token.text, token.source))
                self.pos += 1
            elif token.kind == "io" or (token.kind == "op" and token.text in _REDIRECTIONS):
                redirects.append(self.redirect())
            elif token.kind == "op" and token.text in _REFUSED_OPERATORS:
                raise _refused(token.text, token.line)
            else:
                break
        if not words and not redirects and not assignments:
            raise self.unexpected(first)
        return Command(tuple(words), tuple(redirects), self.simple_command_line(start),
                       tuple(assignments), frozenset(assignment_args))

    def simple_command_line(self, start: int) -> int:
        """The line of the simple command whose first token is ``start``, as bash's: the
        parser's line_number when it made the command of its first element (parse.y's
        make_simple_command), which, after a WORD, it does only once it has read the
        next token (a ``(`` would make a function definition of it), so the line where
        that token ends (``nosuch \\`` NEWLINE ``a``: line 2), or where the input ends
        when none follows (a final backslash-newline continues onto the next line); after
        an assignment or a redirection, the line where that ends."""
        first = self.tokens[start]
        if first.kind == "word" and not first.assignment:
            following = self.tokens[start + 1] if start + 1 < len(self.tokens) else None
            return self.last_line if following is None else following.end_line
        # A redirection: [N] OPERATOR WORD.
        end = start + {"io": 2, "op": 1}.get(first.kind, 0)
        return self.tokens[min(end, len(self.tokens) - 1)].end_line

    def redirect(self) -> Redirect:
        token = self.tokens[self.pos]
        fd: int | None = None
        if token.kind == "io":
            fd = fd_number(token.text)
            self.pos += 1
            token = self.tokens[self.pos]  # the lexer made an io token only before < or >
            if token.text in _REFUSED_OPERATORS:
                raise _refused(token.text, token.line)
        self.pos += 1
        target = self.peek()
        if target is None or target.kind != "word":
            raise self.unexpected(target)
        if target.brace:  # bash expands it (a second word: its "ambiguous redirect")
            raise _refused("{,}", target.line, target.brace)
        self.pos += 1
        op = ">" if token.text == ">|" else token.text
        # bash's >&WORD sends stdout and stderr to a file, and N>&M- moves a descriptor;
        # <&WORD is its "ambiguous redirect" when WORD expands to no number.
        if op == ">&" and not (target.text == "-" or target.text.isascii()
                               and target.text.isdigit()) \
                or op == "<&" and _MOVE.fullmatch(target.source):
            raise ShellSyntaxError(
                f"`{op}{target.source}': only {op}N (a file descriptor) and {op}- are"
                " supported by ftrace-shell", target.line)
        return Redirect(_REDIRECTIONS[token.text] if fd is None else fd, op,
                        _name_bad(target.text, target.source), target.source)


def parse(text: str, line: int = 1, *, at_eof: bool = False) -> list[AndOr]:
    """Parse complete input whose first line is ``line``; ``at_eof``: no more follows.

    Raises :class:`Incomplete` when more input could complete it (at the end of all
    input: what is missing, in bash's words), and :class:`ShellSyntaxError` when no input
    could.
    """
    lexer = _Lexer(text, line, at_eof)
    tokens = lexer.run()
    end_line = line + text.count("\n") - (1 if text.endswith("\n") else 0)
    return _Parser(tokens, end_line, lexer.line).program()
