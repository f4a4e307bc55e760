"""ftrace-shell's variables and their expansion, as bash 5.2 does them (variables.c,
subst.c), and the builtins that change them: export, unset, local.

The variables start as the shell's environment, as bash imports its own (names that are
not identifiers stay out), with what bash sets at start whatever the environment says:
IFS (space, tab, newline), PWD (the shell's working directory, on the daemon: the
client's own is no path there), OLDPWD (the environment's when it names a directory, on
the daemon's tree; else exported without a value, and when the environment had one that
is no directory, not listed by ``export -p`` until assigned) and SHLVL (one more than the
environment's, as bash's adjust_shell_level reads it); and what bash sets where the
environment has not: PATH (bash 5.2's DEFAULT_PATH_VALUE, as Debian builds it), TERM
(``dumb``) and SHELL (the user's login shell), none of them exported; UID and EUID (the
environment's are plain variables) and PPID (whatever the environment says), bash's
readonly integers; and the dynamic variables (clients.shell_dynamic). A command's prefix
assignments (``a=1 cmd``) live in a temporary scope for that command only, exported (bash's
temporary_env, which assign_in_env fills); a function's call makes its prefix assignments'
scope the function's own, where its ``local`` variables go too, above its caller's (bash's
push_context of the temporary_env: dynamic scoping, a variable is the innermost scope's
that has it). The shell runs no programs, so being exported changes what ``export -p``
(and ``local``) lists and nothing else.

Expansion of a word (:func:`expand_fields`): each parameter's marker is replaced by its
value (or what its operator, ``${a:-word}``..., makes of it), each command substitution's
by its command's output; what unquoted parameters and substitutions gave is split into
fields on IFS (bash's word_split: IFS whitespace runs and each other IFS character
delimit); an unquoted word that expands to nothing is removed. No pathname
expansion follows (``*`` stays as written); the parser refuses a ``~`` bash would expand.
"""

from __future__ import annotations

import os
import pwd
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Protocol

from clients.shell_dynamic import (Dynamic, FunctionName, LineNumber, NotArithmetic, Random,
                                   Seconds, Shown)
from clients.shell_dynamic import Shell as DynamicShell
from clients.shell_parser import (MARKER, QUOTED_NULL, STRING_END, ParameterSpec, is_name,
                                  parameter_spec)
from clients.shell_runtime import Invocation, command, encode, internal_getopt, legal_number

__all__ = ["Variables", "Parameters", "ExpansionError", "ReadonlyVariable", "expand_fields",
           "expand_value", "expand_pattern"]

#: IFS when it is unset, and what bash gives it at start (variables.c).
DEFAULT_IFS = " \t\n"
_IFS_WHITESPACE = frozenset(DEFAULT_IFS)
#: PATH where the environment has none: bash 5.2's DEFAULT_PATH_VALUE as Debian's bash
#: 5.2.15 has it (config-top.h's, with Debian's /usr/local/sbin and /usr/sbin).
DEFAULT_PATH = "/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin:."


@dataclass
class Variable:
    """One shell variable; ``value`` None: declared (``export a``) but unset;
    ``invisible``: bash's att_invisible of a variable imported (OLDPWD), not listed until
    assigned; ``readonly``: bash's att_readonly (the shell's are UID, EUID and PPID,
    integers too); ``dynamic``: its value computed when read, its assignments its own
    (clients.shell_dynamic); ``local``: bash's att_local, made by ``local``;
    ``temporary``: bash's att_tempvar, a prefix assignment's; ``propagate``: bash's
    att_propagate, a function's prefix assignment that ``export`` named, which outlives
    the call (push_func_var)."""

    value: str | None
    exported: bool = False
    invisible: bool = False
    readonly: bool = False
    integer: bool = False
    dynamic: Dynamic | None = None
    local: bool = False
    temporary: bool = False
    propagate: bool = False


class Variables:
    """The shell's variables: the global scope, under the scopes of the functions
    running and of the prefix assignments of the commands running (bash's
    shell_variables, its variable contexts, and temporary_env)."""

    def __init__(self, environ: Mapping[str, str], cwd: str, *,
                 is_directory: Callable[[str], bool], warn: Callable[[str], None]) -> None:
        """``is_directory``: bash's file_isdir (on the daemon's tree); ``warn``: prints
        bash's internal_warning."""
        self._scopes: list[dict[str, Variable]] = [
            {name: Variable(value, exported=True) for name, value in environ.items()
             if is_name(name)}
        ]
        #: Where the scopes of the functions running are in _scopes (bash's
        #: variable_context: how many), the innermost last.
        self._contexts: list[int] = []
        #: Where the scopes of the commands' prefix assignments are in _scopes (a
        #: function's is its scope too, in _contexts).
        self._temporaries: list[int] = []
        # bash's initialize_shell_variables, set_pwd and adjust_shell_level.
        self.assign("IFS", DEFAULT_IFS)
        self._scopes[0]["PWD"] = Variable(cwd, exported=True)
        oldpwd = environ.get("OLDPWD")
        if oldpwd is None or not is_directory(oldpwd):
            self._scopes[0]["OLDPWD"] = Variable(None, exported=True,
                                                 invisible=oldpwd is not None)
        self._scopes[0]["SHLVL"] = Variable(_shell_level(environ.get("SHLVL"), warn),
                                            exported=True)
        # bash's set_if_not()s and set_shell_var(): where the environment has none.
        for name, value in (("PATH", DEFAULT_PATH), ("TERM", "dumb"), ("SHELL", _login_shell())):
            self._scopes[0].setdefault(name, Variable(value))
        # uidset(): where the environment has none; set_ppid(): whatever it says.
        for name, value in (("UID", os.getuid()), ("EUID", os.geteuid())):
            self._scopes[0].setdefault(name, Variable(str(value), readonly=True, integer=True))
        self._scopes[0]["PPID"] = Variable(str(os.getppid()), readonly=True, integer=True)
        # initialize_dynamic_variables(): one the environment exported stays exported;
        # only SECONDS takes the environment's value; FUNCNAME from the environment stays
        # its plain variable (init_funcname_var finds it and makes no array).
        dynamics: tuple[tuple[str, Dynamic], ...] = (
            ("LINENO", LineNumber()), ("FUNCNAME", FunctionName()), ("RANDOM", Random()),
            ("SECONDS", Seconds(environ.get("SECONDS"))))
        for name, dynamic in dynamics:
            if name != "FUNCNAME" or not self.exists(name):
                self._scopes[0][name] = Variable(None, exported=name in environ,
                                                 dynamic=dynamic)

    def _lookup(self, name: str) -> Variable | None:
        """The variable ``name`` in the innermost scope that has it (bash's
        find_variable), else None."""
        return next((scope[name] for scope in reversed(self._scopes) if name in scope), None)

    def _environment(self, index: int) -> bool:
        """The scope at ``index`` holds the prefix assignments of a command that is no
        function's: bash's temporary_env, which is none of its shell_variables."""
        return index in self._temporaries and index not in self._contexts

    def _shell_variables(self) -> Iterator[tuple[int, dict[str, Variable]]]:
        """(index, scope) of the scopes but a command's prefix assignments', the innermost
        first: bash's shell_variables."""
        return ((index, self._scopes[index]) for index in reversed(range(len(self._scopes)))
                if not self._environment(index))

    def _find(self, name: str) -> Variable:
        """The variable ``name`` in the innermost scope that has it, else a new global."""
        variable = self._lookup(name)
        return self._scopes[0].setdefault(name, Variable(None)) if variable is None else variable

    def get(self, name: str) -> str | None:
        """The value of ``name`` as set (a dynamic variable's is the shell's:
        :meth:`dynamic`)."""
        variable = self._lookup(name)
        return None if variable is None else variable.value

    def dynamic(self, name: str) -> Dynamic | None:
        """What computes the value of ``name``, if it is a dynamic variable."""
        variable = self._lookup(name)
        return None if variable is None else variable.dynamic

    def readonly(self, name: str) -> bool:
        variable = self._lookup(name)
        return variable is not None and variable.readonly

    def assign(self, name: str, value: str | None) -> None:
        """bash's bind_variable (a None value: declared, unset, as bindpwd binds OLDPWD
        to an unset PWD); a dynamic variable's assign_func. Raises ReadonlyVariable, or
        ExpansionError for a value ftrace-shell cannot evaluate (an integer variable's
        expression)."""
        _bind(name, self._find(name), value)

    def export(self, name: str, exported: bool = True) -> None:
        """bash's set_var_attribute for ``export NAME`` (``export -n``: ``exported``
        False, the innermost variable's export taken away). The command's own prefix
        assignment to NAME (``a=1 export a``) is bound as an assignment would bind it,
        below that scope (bash's bind_variable: ``RANDOM=7 export RANDOM`` seeds the
        generator), and exported; outside POSIX mode it goes no further. Else the
        innermost variable (a new global one if none) is exported, and a function's
        prefix assignment so exported outlives the call (att_propagate)."""
        if not exported:
            variable = self._lookup(name)
            if variable is not None:
                variable.exported = False
            return
        top = len(self._scopes) - 1
        temporary = self._scopes[top].get(name) if self._environment(top) else None
        found = next(((index, scope[name]) for index, scope in self._shell_variables()
                      if name in scope), None)
        if temporary is not None:
            variable = found[1] if found else self._scopes[0].setdefault(name, Variable(None))
            _bind(name, variable, temporary.value)
        elif found is None:
            variable = self._scopes[0][name] = Variable(None)
        else:
            variable = found[1]
            variable.propagate = found[0] != 0
        variable.exported = True

    def exists(self, name: str) -> bool:
        """Some scope has a variable ``name`` (set or not): unbind_variable() finds one."""
        return self._lookup(name) is not None

    def unset(self, name: str) -> None:
        """bash's unbind_variable: the innermost variable goes, an outer one shows again;
        but a local of the function running stays its, unset, until the function returns
        (bash 5.2's makunbound of a variable local at the current scope, which keeps its
        export only where a prefix assignment made it)."""
        for index in reversed(range(len(self._scopes))):
            variable = self._scopes[index].get(name)
            if variable is not None:
                if variable.local and index == self._contexts[-1]:
                    self._scopes[index][name] = Variable(
                        None, exported=variable.exported and variable.temporary, local=True)
                else:
                    del self._scopes[index][name]
                return

    @property
    def in_function(self) -> bool:
        """A function is running (bash's variable_context is above 0)."""
        return bool(self._contexts)

    @contextmanager
    def function_scope(self) -> Iterator[None]:
        """A function's call: the scope of its call's prefix assignments (the innermost,
        :meth:`temporary`'s) is the function's, where its locals go (bash's push_context
        of the temporary_env), until it returns."""
        assert self._temporaries[-1] == len(self._scopes) - 1  # the call's (Shell._run)
        self._contexts.append(len(self._scopes) - 1)
        try:
            yield
        finally:
            self._contexts.pop()

    def local(self, name: str, value: str | None) -> None:
        """bash's make_local_variable for ``local NAME[=VALUE]`` in the function running,
        then the value given. One the function has made is kept (``local a; local a``);
        the function's own prefix assignment (``a=1 f``) becomes its local, value and
        export kept; else a new variable of its scope, unset (an outer one does not show
        through) unless it shadows a prefix assignment, whose value it takes, and
        exported if the variable it shadows is (bash: "We inherit the export attribute,
        but no others"). Raises ReadonlyVariable where ``name`` is (a global)."""
        context = self._scopes[self._contexts[-1]]
        old = self._lookup(name)
        if old is not None and old is context.get(name) and (old.local or old.temporary):
            variable = old
        elif old is not None and old.readonly:
            raise ReadonlyVariable(name)
        else:
            variable = context[name] = Variable(
                old.value if old is not None and old.temporary else None,
                exported=old is not None and old.exported)
        variable.local = True
        if value is not None:
            variable.value, variable.invisible = value, False

    def locals(self) -> list[tuple[str, str, str | None]]:
        """(name, attributes, value) of the function running's locals, by name, as
        ``local`` lists them (attributes: bash's letters, ``x`` or none)."""
        return sorted((name, _letters(variable), variable.value)
                      for name, variable in self._scopes[self._contexts[-1]].items()
                      if variable.local)

    def change_directory(self, cwd: str) -> None:
        """What ``cd`` sets, as bash's bindpwd: OLDPWD from PWD, PWD the new directory."""
        self.assign("OLDPWD", self.get("PWD"))
        self.assign("PWD", cwd)

    def assign_temporary(self, name: str, value: str) -> None:
        """A prefix assignment, in the scope :meth:`temporary` opened (a plain variable,
        exported, as bash's assign_in_env makes it). Raises ReadonlyVariable where
        ``name`` is readonly."""
        if self.readonly(name):
            raise ReadonlyVariable(name)
        self._scopes[-1][name] = Variable(value, exported=True, temporary=True)

    def exported(self, shell: Parameters) -> list[tuple[str, str, Shown]]:
        """(name, attributes, value) of the exported variables, by name, as ``export -p``
        lists them (attributes: bash's letters, ``ix``, ``irx``, ``ax`` or ``x``; a
        dynamic variable's value as bash keeps it, an array's a tuple): bash's
        all_shell_variables, the innermost variable of each name, where it is exported
        (a function's local that is not hides an outer one that is; the prefix
        assignments of the command running, ``a=1 export -p``, are none of them)."""
        found: dict[str, Variable] = {}
        for _, scope in self._shell_variables():
            for name, variable in scope.items():
                found.setdefault(name, variable)
        return sorted((name, _letters(variable),
                       variable.value if variable.dynamic is None
                       else variable.dynamic.shown(shell))
                      for name, variable in found.items()
                      if variable.exported and not variable.invisible)

    @property
    def ifs(self) -> str:
        ifs = self.get("IFS")
        return DEFAULT_IFS if ifs is None else ifs

    @contextmanager
    def temporary(self) -> Iterator[None]:
        """The scope of one command's prefix assignments (:meth:`assign_temporary`), a
        function's call's its scope too (:meth:`function_scope`). What ``export`` made
        to propagate (a function's prefix assignment it exported) outlives it in the
        scope of the function below, or the global one, as bash's push_func_var binds
        it there; nothing else does (bash outside POSIX mode)."""
        self._scopes.append({})
        self._temporaries.append(len(self._scopes) - 1)
        try:
            yield
        finally:
            self._temporaries.pop()
            scope = self._scopes.pop()
            below = self._contexts[-1] if self._contexts else 0
            for name, variable in scope.items():
                if variable.temporary and variable.propagate:
                    target = self._scopes[below].get(name)
                    if target is None:
                        target = self._scopes[below][name] = Variable(None)
                    _bind(name, target, variable.value)
                    # push_func_var's ``v->attributes |= var->attributes``: an export -n
                    # in the function leaves the variable unexported.
                    target.exported = target.exported or variable.exported
                    target.temporary = target.propagate = below != 0


def _bind(name: str, variable: Variable, value: str | None) -> None:
    """bash's bind_variable_internal of ``value`` to the variable found for ``name``: a
    dynamic variable's assign_func; ReadonlyVariable, or ExpansionError for a value
    ftrace-shell cannot evaluate (an integer variable's expression)."""
    if variable.readonly:
        raise ReadonlyVariable(name)
    if variable.dynamic is not None:
        try:
            variable.dynamic.assign(value or "")
        except NotArithmetic:
            raise ExpansionError(f"{name}={value}: arithmetic evaluation of an integer "
                                 "variable's value is not supported by ftrace-shell",
                                 status=2) from None
        return
    variable.value, variable.invisible = value, False


def _letters(variable: Variable) -> str:
    """A variable's attributes as ``export -p`` lists them (bash's letters)."""
    dynamic = variable.dynamic
    integer = variable.integer if dynamic is None else dynamic.integer
    return ("a" * (dynamic is not None and dynamic.array) + "i" * integer
            + "r" * variable.readonly + "x" * variable.exported)


def _login_shell() -> str:
    """bash's current_user.shell: the user's login shell, /bin/sh where the password file
    has none."""
    try:
        return pwd.getpwuid(os.getuid()).pw_shell or "/bin/sh"
    except KeyError:
        return "/bin/sh"


def _shell_level(inherited: str | None, warn: Callable[[str], None]) -> str:
    """bash's adjust_shell_level: SHLVL one more than the environment's (0 when that is
    no legal_number), as an int (a 32-bit one), at least 0, and 1 from 1000 on."""
    number = legal_number(inherited or "")
    level = ((number or 0) + 1 + 2**31) % 2**32 - 2**31
    if level >= 1000:
        warn(f"shell level ({level}) too high, resetting to 1")
        return "1"
    return str(max(level, 0))


class ExpansionError(Exception):
    """An expansion bash fails, with bash's ``message``: a bad substitution (bash's
    DISCARD: the rest of the input line goes), or ``fatal``, ``${a?}`` of an unset a
    (bash's FORCE_EOF: a non-interactive shell ends). ``top_level_cleanup``: a builtin's
    DISCARD after bash's top_level_cleanup() (its no_args(): ``break 1 2``), which leaves
    a ``-c`` command's parse_and_execute too, so that command ends with status 1."""

    def __init__(self, message: str, fatal: bool = False, status: int | None = None,
                 top_level_cleanup: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.fatal = fatal
        self.top_level_cleanup = top_level_cleanup
        #: The status bash leaves, where it is not the usual one (see Shell._expansion_failed).
        self.status = status
        #: The shell has printed the message (where the error happened).
        self.reported = False


class ReadonlyVariable(ExpansionError):
    """An assignment to a readonly variable (bash's err_readonly): an assignment
    statement's is bash's DISCARD, status 1; a prefix assignment's, a builtin's
    (``export``, ``local``, ``read``) or a for command's complaint, which they print and
    go on as bash's do."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name}: readonly variable")


class Parameters(DynamicShell, Protocol):
    """What expansion reads and assigns (the shell, clients.shell.Shell): what the
    dynamic variables read, and more."""

    variables: Variables
    #: The positional parameters ($1...).
    positional: tuple[str, ...]

    def parameter(self, name: str) -> str | None:
        """A parameter's value by name (special parameters included); None when unset."""

    def command_substitution(self, source: str, line: int) -> str:
        """What ``$(source)`` gives (its command starting on ``line``)."""


def _operand(parameter: ParameterSpec, value: str | None, shell: Parameters) -> str | None:
    """What ``${...}``'s operator makes of its parameter, whose ``value`` was read once
    (a dynamic variable's changes at each read: bash's parameter_brace_expand reads it
    once), as bash's parameter_brace_expand_rhs and parameter_brace_expand_error do: its
    word, or None where the parameter's own value stands (set, or unset under ``+``;
    ``"${@-x}"`` is then ``"$@"``). Its length is :func:`_value`'s."""
    unset = value is None or (parameter.operator.startswith(":") and not value)
    kind = parameter.operator[-1:]
    if kind == "+":
        return None if unset else parameter.word
    if not unset or not kind:
        return None
    if kind == "=":
        if not is_name(parameter.name):
            raise ExpansionError(f"${parameter.name}: cannot assign in this way")
        shell.variables.assign(parameter.name, parameter.word)
    elif kind == "?":
        empty = "parameter null or not set" if parameter.operator == ":?" else "parameter not set"
        raise ExpansionError(f"{parameter.name}: {parameter.word or empty}", fatal=True)
    return parameter.word


def _value(parameter: ParameterSpec, shell: Parameters) -> str:
    """What ``${...}`` gives as one piece: the value, its length (``${#@}``: ``$#``), or
    what its operator makes of it (:func:`_operand`); ``$@`` and ``$*`` otherwise are
    :func:`_positional`'s."""
    if parameter.length and parameter.name in ("@", "*"):
        return str(len(shell.positional))  # bash's ${#@}: $#
    value = shell.parameter(parameter.name)
    if parameter.length:
        # bash's parameter_brace_expand finds the variable, then its length reads it
        # again: a dynamic variable's value is computed twice (${#RANDOM} takes two).
        return str(len(shell.parameter(parameter.name) or ""))
    word = _operand(parameter, value, shell) if parameter.operator else None
    return (value or "") if word is None else word


#: The kinds of a word's pieces: its own text, and what a quoted or an unquoted parameter
#: or command substitution gave; where ``$@`` ends a field and starts the next (its
#: text what joins them where the word is not split); a quoted ``$@`` that gave nothing
#: (no positional parameters: bash's quoted_dollar_at with an empty list); and the end of
#: a double-quoted string (clients.shell_parser.STRING_END).
_TEXT, _QUOTED, _UNQUOTED, _BREAK = "text", "quoted", "unquoted", "break"
_NO_FIELDS, _STRING_END = "no fields", "string end"


def _positional(name: str, quoted: bool, shell: Parameters) -> Iterator[tuple[str, str]]:
    """The pieces ``$@`` or ``$*`` give (bash's param_expand and list_string): ``"$@"``
    each positional parameter a field; ``"$*"`` one field, them joined by IFS's first
    character (nothing when IFS is null, a space when unset); unquoted, them joined so
    and split, but each a field of its own when IFS is null. ``"$@"`` without any gives
    a piece of its own (:data:`_NO_FIELDS`)."""
    ifs = shell.variables.get("IFS")
    separator = " " if ifs is None else ifs[:1]
    if quoted and name == "@" and not shell.positional:
        yield "", _NO_FIELDS
        return
    if quoted and name == "*" or not quoted and ifs != "":
        yield separator.join(shell.positional), _QUOTED if quoted else _UNQUOTED
        return
    for index, value in enumerate(shell.positional):
        if index:
            yield " " if name == "@" else separator, _BREAK
        yield value, _QUOTED if quoted else _UNQUOTED


def _pieces(word: str, shell: Parameters) -> Iterator[tuple[str, str]]:
    """The word's text in pieces, (text, kind): the word's own text, or what a quoted
    or an unquoted (field split) parameter or command substitution gave, or a break
    between the fields of ``$@`` (:func:`_positional`). A quoted piece, even empty, makes
    a field; ``"$@"`` without positional parameters gives none (bash's quoted "$@"), and
    so does ``"${@+x}"`` or ``"${@-x}"`` where the parameter's own value stands
    (:func:`_operand`)."""
    position = 0
    for match in MARKER.finditer(word):
        if match.start() > position:
            yield word[position:match.start()], _TEXT
        position = match.end()
        if match.group() == QUOTED_NULL:
            yield "", _TEXT
            continue
        if match.group() == STRING_END:
            yield "", _STRING_END
            continue
        kind, spec = match.groups()
        if kind == "b":  # spec: the text bash names
            raise ExpansionError(f"{spec}: bad substitution")
        if kind in "cC":  # spec: LINE:SOURCE (clients.shell_parser.substitution_marker)
            line, _, source = spec.partition(":")
            yield shell.command_substitution(source, int(line)), _UNQUOTED if kind == "c" \
                else _QUOTED
            continue
        quoted, parameter = kind == "q", parameter_spec(spec)
        assert parameter is not None  # the lexer marks no other spec (_BAD_SUBSTITUTION)
        if parameter.name in ("@", "*") and not parameter.length:
            # Outside double quotes bash joins $* as $@ (string_list_dollar_at: a space
            # where IFS is null), so ${*:-x} of two empty parameters is not null there.
            operand = _operand(parameter, shell.parameter(
                "@" if parameter.name == "*" and not quoted else parameter.name),
                shell) if parameter.operator else None
            if operand is None:
                yield from _positional(parameter.name, quoted, shell)
                continue
            yield operand, _QUOTED if quoted else _UNQUOTED
            continue
        yield _value(parameter, shell), _QUOTED if quoted else _UNQUOTED
    if position < len(word) or not word:  # "": a literal empty word, as Command(...) may hold
        yield word[position:], _TEXT


def expand_value(word: str, shell: Parameters) -> str:
    """The word expanded without field splitting, as an assignment's value is."""
    return "".join(text for text, _ in _pieces(word, shell))


def expand_pattern(pattern: str, shell: Parameters) -> str:
    """A case pattern (:attr:`clients.shell_parser.Token.pattern`, its quoted characters
    escaped) expanded as bash's expand_word_leave_quoted() and quote_string_for_globbing()
    make it: what a quoted expansion gave escaped too, an unquoted one's characters left
    to match as pattern characters."""
    return "".join("".join("\\" + char for char in text) if kind == _QUOTED else text
                   for text, kind in _pieces(pattern, shell))


def expand_fields(word: str, shell: Parameters) -> list[str]:
    """The fields the word expands to (bash's expand_word_list without globbing). A
    double-quoted string that gave nothing is a quoted null (an empty field), but one
    with a ``"$@"`` that gave no positional parameters is nothing, as bash's
    expand_word_internal() has it (its quoted_dollar_at); a word of nothing else, with
    no text of its own, gives no field: ``"$@$x"`` with x empty, ``"${@+set}"``, where
    ``"$@""$x"`` gives an empty one."""
    ifs = shell.variables.ifs
    whitespace = {char for char in ifs if char in _IFS_WHITESPACE}
    fields: list[str] = []
    current: list[str] = []
    started = False  # the current field exists (it may be empty: a quoted null)
    after_whitespace = False  # a field just ended at IFS whitespace
    no_fields = False  # a quoted "$@" gave nothing
    holds = False  # the word has text of its own, an expansion gave some, or a quoted null
    string_null = string_dollar_at = False  # the double-quoted string's, so far
    for text, kind in _pieces(word, shell):
        holds = holds or bool(text) or kind == _TEXT
        if kind == _NO_FIELDS:
            no_fields = string_dollar_at = True
            continue
        if kind == _STRING_END:
            holds = holds or string_null and not string_dollar_at
            string_null = string_dollar_at = False
            continue
        string_null = string_null or kind == _QUOTED
        if kind == _BREAK:
            if started:
                fields.append("".join(current))
                current, started = [], False
            continue
        if kind != _UNQUOTED:
            current.append(text)
            started, after_whitespace = True, False
            continue
        for char in text:
            if char not in ifs:
                current.append(char)
                started, after_whitespace = True, False
            elif started or not (char in whitespace or after_whitespace):
                # A field ends; a non-whitespace IFS character right after another (or
                # at the start) delimits an empty one.
                fields.append("".join(current))
                current, started = [], False
                after_whitespace = char in whitespace
            else:
                after_whitespace = after_whitespace and char in whitespace
    if started and not (no_fields and not holds):
        fields.append("".join(current))
    return fields


# --- the builtins ------------------------------------------------------------------


#: How bash's ansic_quote writes the bytes it has a letter for.
_ANSIC_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                  "\t": "\\t", "\v": "\\v", "\x1b": "\\E", "\\": "\\\\", "'": "\\'"}


def _printable(byte: int) -> bool:
    """isprint() in the C locale: bytes of 0x80 and above are not."""
    return 0x20 <= byte < 0x7F


def _quote(value: str) -> str:
    """As ``export -p`` prints a value: bash's sh_double_quote, or its ansic_quote
    (``$'...'``) when a byte of it (its UTF-8, surrogate-escaped bytes as they came) is
    not printable, each such byte ``\\ooo`` unless it has a letter."""
    data = encode(value)
    if all(_printable(byte) for byte in data):
        return '"' + re.sub(r'([\\"$`])', r"\\\1", value) + '"'
    return "$'" + "".join(
        _ANSIC_ESCAPES.get(chr(byte), chr(byte) if _printable(byte) else f"\\{byte:03o}")
        for byte in data) + "'"


def _listed(value: Shown) -> str:
    """``=VALUE`` as ``export -p`` lists a variable's value: nothing for none (nor for an
    empty array), an array's elements as bash's ``([0]="a" [1]="b")``."""
    if isinstance(value, tuple):
        elements = " ".join(f"[{index}]={_quote(element)}"
                            for index, element in enumerate(value))
        return f"=({elements})" if value else ""
    return "" if value is None else f"={_quote(value)}"


_EXPORT_USAGE = "export [-fn] [name[=value] ...] or export -p"


@command("export [-n] [NAME[=VALUE]...]", "export variables (or list them: export -p)",
         builtin=True)
def cmd_export(ctx: Invocation) -> int:
    parsed = internal_getopt(ctx, "fnp", _EXPORT_USAGE)
    if isinstance(parsed, int):
        return parsed
    options, operands = parsed
    variables = ctx.shell.variables
    if not operands:
        for name, letters, value in variables.exported(ctx.shell):
            ctx.out(f"declare -{letters} {name}{_listed(value)}\n")
        return 0
    status = 0
    for operand in operands:
        name, equals, value = operand.partition("=")
        if not is_name(name):
            ctx.builtin_err(f"`{operand}': not a valid identifier")
            status = 1
        elif "f" in options:
            # Exporting a function changes nothing: the shell runs no programs.
            if name not in ctx.shell.functions:
                ctx.builtin_err(f"{name}: not a function")
                status = 1
        else:
            if equals:
                try:
                    variables.assign(name, value)
                except ReadonlyVariable as error:  # bash exports it all the same
                    ctx.err(f"{ctx.shell.prefix()}: {error.message}")
                    status = 1
            variables.export(name, "n" not in options)
            # bash's find_variable of the name: a dynamic variable's value is computed
            # (RANDOM's generator moves on).
            dynamic = variables.dynamic(name)
            if dynamic is not None:
                dynamic.value(ctx.shell)
    return status


@command("unset [-fv] [NAME...]", "unset variables (-f: functions)", builtin=True)
def cmd_unset(ctx: Invocation) -> int:
    """bash's unset_builtin: without -f or -v, a name no variable has is a function's
    (a name that is no identifier, only a function's: bash allows those outside POSIX
    mode)."""
    parsed = internal_getopt(ctx, "fvn", "unset [-f] [-v] [-n] [name ...]")
    if isinstance(parsed, int):
        return parsed
    options, operands = parsed
    variables, functions = ctx.shell.variables, ctx.shell.functions
    status = 0
    for name in operands:
        if "f" in options:
            functions.pop(name, None)
        elif variables.readonly(name):
            ctx.builtin_err(f"{name}: cannot unset: readonly variable")
            status = 1
        elif is_name(name):
            if "v" not in options and not variables.exists(name):
                functions.pop(name, None)
            variables.unset(name)
        elif "v" in options:
            ctx.builtin_err(f"`{name}': not a valid identifier")
            status = 1
        else:
            functions.pop(name, None)
    return status


_LOCAL_USAGE = "local [option] name[=value] ..."
#: The options bash's local takes (declare's, but -f, -F and -g); the shell has none.
_LOCAL_OPTIONS = "aAiIlnprtux"
#: How many times bash's local looks up a variable it makes local (cmd_local).
_LOCAL_LOOKUPS = 4


@command("local [NAME[=VALUE]...]", "a variable of the function running (or list them)",
         builtin=True)
def cmd_local(ctx: Invocation) -> int:
    """bash's local_builtin: in a function, declare_internal's NAME[=VALUE] (no
    options); outside one, its complaint."""
    variables = ctx.shell.variables
    if not variables.in_function:
        ctx.builtin_err("can only be used in a function")
        return 1
    parsed = internal_getopt(ctx, "", _LOCAL_USAGE, unsupported=_LOCAL_OPTIONS, plus=True)
    if isinstance(parsed, int):
        return parsed
    operands = parsed[1]
    if not operands:
        for name, letters, value in variables.locals():
            ctx.out(f"declare -{letters or '-'} {name}{_listed(value)}\n")
        return 0
    status = 0
    for operand in operands:
        name, equals, value = operand.partition("=")
        if not is_name(name):
            ctx.builtin_err(f"`{operand}': not a valid identifier")
            status = 1
            continue
        dynamic = variables.dynamic(name)
        if dynamic is not None:
            # bash's declare_internal looks the variable up four times before it makes
            # the local (declare_transform_name's find_variable and
            # find_variable_last_nameref, make_local_variable's find_variable_noref and
            # find_variable): its value is computed each time (RANDOM's generator moves
            # on four values).
            for _ in range(_LOCAL_LOOKUPS):
                dynamic.value(ctx.shell)
            if dynamic.noassign:
                ctx.builtin_err(f"{name}: variable may not be assigned value")
                status = 1
                continue
        try:
            variables.local(name, value if equals else None)
        except ReadonlyVariable as error:
            ctx.builtin_err(error.message)
            status = 1
    return status

