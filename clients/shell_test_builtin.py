"""ftrace-shell's ``test`` and ``[`` builtins: bash 5.2's test.c (posixtest() for up to
four arguments, else its recursive expr()), with its diagnostics and statuses: 0 true,
1 false, 2 for bash's test_syntax_error (``bash: [: missing `]'``).

The files are the daemon's tree, stat'ed through the client as ``ls`` and ``cd`` do. The
shell is root there, so a file that exists is readable and writable (access(2) as root),
executable when a mode has an x bit or it is a directory; tracefs holds only directories
and regular files, so the other file types (``-b -c -p -S -h -L``, set-id bits) are
false; ``-s`` is st_size > 0 (0 for tracefs files, as in the kernel). The model keeps no
file times: two files that exist are taken as made at once (tracefs makes its files at
boot), so ``-nt`` and ``-ot`` tell only one that exists from one that does not; ``-ef``
compares canonical paths, so the same file under both tracefs mounts is two.
"""

from __future__ import annotations

from clients.errors import FtraceError
from clients.shell_runtime import Invocation, command, encode, legal_number
from ftrace.v1.tracefs_pb2 import StatResponse

__all__: list[str] = []  # the commands register themselves in COMMANDS

#: bash's test_unop: the unary operators.
_UNARY = frozenset("abcdefghknoprstuvwxzGLOSNR")
#: bash's test_binop: the binary operators (``=~`` is one, though only ``[[`` runs it).
_BINARY = frozenset(("=", "==", "!=", "<", ">", "=~", "!~", "-nt", "-ot", "-ef",
                     "-eq", "-ne", "-lt", "-le", "-gt", "-ge"))
_INTEGER = {"-eq": int.__eq__, "-ne": int.__ne__, "-lt": int.__lt__, "-le": int.__le__,
            "-gt": int.__gt__, "-ge": int.__ge__}
# "<" and ">": strcmp() of the bytes, as in the C locale.
_STRING = {"=": str.__eq__, "==": str.__eq__, "!=": str.__ne__,
           "<": lambda a, b: encode(a) < encode(b), ">": lambda a, b: encode(a) > encode(b)}


class _SyntaxError(Exception):
    """bash's test_syntax_error: the message; the builtin's status is 2."""


def _unop(op: str) -> bool:
    return len(op) == 2 and op[0] == "-" and op[1] in _UNARY


class _Test:
    """One evaluation (bash's argv, argc and pos)."""

    def __init__(self, ctx: Invocation, args: list[str], closing: str | None) -> None:
        """``closing``: the "]" of ``[``, taken off ``args``."""
        self.ctx = ctx
        self.argv = args
        self.closing = closing
        self.pos = 0

    @property
    def argc(self) -> int:
        return len(self.argv)

    def advance(self, check: bool) -> None:
        self.pos += 1
        if check and self.pos >= self.argc:
            raise _SyntaxError("argument expected")

    def stat(self, path: str) -> StatResponse | None:
        """stat(2) of ``path`` on the daemon's tree (its canonical path and entry), None
        if it fails."""
        shell = self.ctx.shell
        try:
            resolved = shell.resolve(path)  # fails for "" before asking the daemon
            return shell.client.stat(resolved)
        except FtraceError:
            return None

    def unary_test(self, op: str, arg: str) -> bool:
        """bash's unary_test."""
        if op == "-n":
            return arg != ""
        if op == "-z":
            return arg == ""
        if op == "-v":
            return self.ctx.shell.parameter(arg) is not None
        if op in ("-o", "-t"):
            return False  # no shell options; the shell's output is no terminal here
        response = self.stat(arg)
        if response is None:
            return False
        entry = response.entry
        if op == "-d":
            return entry.is_dir
        if op == "-f":
            return not entry.is_dir
        if op == "-s":
            return entry.size > 0
        if op == "-x":
            return entry.is_dir or bool(entry.mode & 0o111)
        return op in ("-a", "-e", "-r", "-w", "-O", "-G")

    def filecomp(self, left: str, right: str, op: str) -> bool:
        """bash's filecomp: a file that exists is newer than one that does not, and of
        two that exist neither (see the module's docstring); -ef: the same file."""
        first, second = self.stat(left), self.stat(right)
        if op == "-ef":
            return first is not None and second is not None and first.path == second.path
        if op == "-nt":
            return first is not None and second is None
        return first is None and second is not None

    def binary_operator(self) -> bool:
        """bash's binary_operator: the operator at pos + 1, its operands around it."""
        left, op, right = self.argv[self.pos:self.pos + 3]
        self.pos += 3
        if op in _STRING:
            return _STRING[op](left, right)
        if op in ("-nt", "-ot", "-ef"):
            return self.filecomp(left, right, op)
        if op not in _INTEGER:
            raise _SyntaxError(f"{op}: binary operator expected")
        numbers = []
        for operand in (left, right):
            number = legal_number(operand)
            if number is None:
                raise _SyntaxError(f"{operand}: integer expression expected")
            numbers.append(number)
        return _INTEGER[op](*numbers)

    def unary_operator(self) -> bool:
        """bash's unary_operator (``-t`` without an operand tests fd 1)."""
        op = self.argv[self.pos]
        if op == "-t":
            self.advance(False)
            if self.pos < self.argc:
                if legal_number(self.argv[self.pos]) is None:
                    return False
                self.advance(False)
            return False
        if self.pos + 1 >= self.argc:
            raise _SyntaxError("argument expected")
        self.pos += 2
        return self.unary_test(op, self.argv[self.pos - 1])

    def two_arguments(self) -> bool:
        first, second = self.argv[self.pos], self.argv[self.pos + 1]
        if first == "!":
            return second == ""
        if _unop(first):
            return self.unary_operator()
        raise _SyntaxError(f"{first}: unary operator expected")

    def three_arguments(self) -> bool:
        first, middle, last = self.argv[self.pos:self.pos + 3]
        if middle in _BINARY:
            value = self.binary_operator()
        elif middle in ("-a", "-o"):
            value = (first != "" and last != "") if middle == "-a" else (first != "" or last != "")
        elif first == "!":
            self.advance(True)
            value = not self.two_arguments()
        elif first == "(" and last == ")":
            value = middle != ""
        else:
            raise _SyntaxError(f"{middle}: binary operator expected")
        self.pos = self.argc
        return value

    def posixtest(self) -> bool:
        count = self.argc - self.pos
        if count == 0:
            return False
        if count == 1:
            self.pos = self.argc
            return self.argv[self.pos - 1] != ""
        if count == 2:
            value = self.two_arguments()
            self.pos = self.argc
            return value
        if count == 3:
            return self.three_arguments()
        if count == 4:
            if self.argv[self.pos] == "!":
                self.advance(True)
                value = not self.three_arguments()
                self.pos = self.argc
                return value
            if self.argv[self.pos] == "(" and self.argv[-1] == ")":
                self.advance(True)
                value = self.two_arguments()
                self.pos = self.argc
                return value
        return self.expr()

    def expr(self) -> bool:
        if self.pos >= self.argc:
            raise _SyntaxError("argument expected")
        return self.or_()

    def or_(self) -> bool:
        value = self.and_()
        if self.pos < self.argc and self.argv[self.pos] == "-o":
            self.advance(False)
            return self.or_() or value
        return value

    def and_(self) -> bool:
        value = self.term()
        if self.pos < self.argc and self.argv[self.pos] == "-a":
            self.advance(False)
            return self.and_() and value
        return value

    def term(self) -> bool:
        if self.pos >= self.argc:
            raise _SyntaxError("argument expected")
        if self.argv[self.pos] == "!":
            negate = False
            while self.pos < self.argc and self.argv[self.pos] == "!":
                self.advance(True)
                negate = not negate
            return self.term() != negate
        if self.argv[self.pos] == "(":
            self.advance(True)
            value = self.expr()
            # bash's argv ends with NULL; for "[" the "]" it took off is still before it.
            found = self.argv[self.pos] if self.pos < self.argc else self.closing
            if found is None:
                raise _SyntaxError("`)' expected")
            if found != ")":
                raise _SyntaxError(f"`)' expected, found {found}")
            self.advance(False)
            return value
        if self.pos + 3 <= self.argc and self.argv[self.pos + 1] in _BINARY:
            return self.binary_operator()
        if self.pos + 2 <= self.argc and _unop(self.argv[self.pos]):
            return self.unary_operator()
        value = self.argv[self.pos] != ""
        self.advance(False)
        return value


def _test_command(ctx: Invocation) -> int:
    """bash's test_command: ``[`` needs its ``]``; arguments left over after posixtest()
    are a syntax error."""
    args = list(ctx.args)
    try:
        if ctx.name == "[":
            if not args or args[-1] != "]":
                raise _SyntaxError("missing `]'")
            args.pop()
        test = _Test(ctx, args, "]" if ctx.name == "[" else None)
        value = test.posixtest()
        if test.pos < test.argc:
            if test.argv[test.pos].startswith("-"):
                raise _SyntaxError(f"syntax error: `{test.argv[test.pos]}' unexpected")
            raise _SyntaxError("too many arguments")
    except _SyntaxError as error:
        ctx.builtin_err(str(error))
        return 2
    return 0 if value else 1


command("test EXPR", "status 0 if EXPR is true (-e -f -d -n -z = != -eq -lt..., ! -a -o)",
        builtin=True)(_test_command)
command("[ EXPR ]", "the same as test, with a closing ]", builtin=True)(_test_command)
