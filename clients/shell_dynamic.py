"""bash 5.2's dynamic variables that ftrace-shell gives (variables.c's
initialize_dynamic_variables): a value computed when the variable is read (bash's
dynamic_value) and an assignment that does what its assign_func does. ``LINENO`` and
``FUNCNAME`` read the shell's line and functions (an assignment changes nothing);
``RANDOM`` is bash's generator, an assignment seeding it (assign_random), and a
subshell's copy reseeded before its first value unless the subshell seeds it itself
(get_random_number: bash's subshell is another process); ``SECONDS`` counts the wall
clock's seconds since the shell started, or since an assignment, from the value
assigned (assign_seconds). ``unset`` ends a dynamic variable (clients.shell_variables).

What ``export -p`` shows of one is bash's value_cell (:attr:`Dynamic.cell`): the value
last read or assigned, which listing it does not compute again; FUNCNAME's is the array
of the functions running.

RANDOM is bash's integer variable, and SECONDS becomes one at its first read
(get_seconds sets att_integer): what is assigned to them is then an arithmetic
expression, which ftrace-shell does not evaluate. A decimal number that fits bash's
intmax_t (blanks around it, a sign), which bash's arithmetic reads as the number, and
nothing (0) are taken; anything else (``1+1``, ``010``, ``0x10``, a name, a number
beyond 64 bits) is refused (:class:`NotArithmetic`), never taken for some other number.
Before that, an assignment to SECONDS is read as bash's legal_number() reads it (``010``
is 10, anything that is no number 0).
"""

from __future__ import annotations

import copy
import random
import re
import time
from typing import Protocol

from clients.shell_runtime import legal_number

__all__ = ["Dynamic", "LineNumber", "FunctionName", "Random", "Seconds", "NotArithmetic",
           "Shown"]

#: What ``export -p`` lists as a variable's value: a string, an array's elements, or none.
Shown = str | tuple[str, ...] | None

#: What an integer variable's value may be here: a decimal number with no leading zero
#: (bash's arithmetic reads 010 as octal), blanks around it; or only blanks.
_DECIMAL = re.compile(r"[ \t\n]*(?:([+-]?(?:0|[1-9][0-9]*))[ \t\n]*)?")


class NotArithmetic(ValueError):
    """A value bash evaluates as an arithmetic expression, which ftrace-shell does not."""


class Shell(Protocol):
    """What a dynamic value reads of the shell (clients.shell.Shell)."""

    #: The line of the command running ($LINENO).
    line: int
    #: bash's FUNCNAME array: the functions running, innermost first (and ``main``
    #: under them, running a script); empty outside any.
    function_names: tuple[str, ...]


def _intmax(number: int) -> int:
    """``number`` as bash's intmax_t arithmetic leaves it: wrapped to 64 bits."""
    return (number + 2**63) % 2**64 - 2**63


def integer_value(value: str) -> int:
    """What bash's arithmetic makes of an integer variable's new ``value`` (evalexp), for
    the values the shell takes (see the module's docstring); NotArithmetic for others."""
    match = _DECIMAL.fullmatch(value)
    number = int(match.group(1) or 0) if match else None
    if number is None or number != _intmax(number):
        raise NotArithmetic(value)
    return number


class Dynamic:
    """A dynamic variable; an assignment changes nothing unless a subclass says (bash's
    null_assign, and LINENO's, whose line the next command sets again)."""

    #: bash's att_integer (``export -p`` lists it as ``declare -ix``).
    integer = False
    #: bash's att_array (``declare -ax``).
    array = False
    #: bash's att_noassign: ``local`` refuses it.
    noassign = False

    def __init__(self) -> None:
        #: bash's value_cell: the value last read (or assigned), None before any.
        self.cell: str | None = None

    def value(self, shell: Shell) -> str | None:
        """bash's dynamic_value, which it calls wherever it looks the variable up
        (find_variable), keeping what it gives as the variable's value_cell."""
        self.cell = self.compute(shell)
        return self.cell

    def compute(self, shell: Shell) -> str | None:
        raise NotImplementedError

    def shown(self, shell: Shell) -> Shown:
        """What ``export -p`` lists as the value (the variable is not read)."""
        return self.cell

    def assign(self, value: str) -> None:
        pass


class LineNumber(Dynamic):
    """``$LINENO``: bash's get_lineno."""

    def compute(self, shell: Shell) -> str | None:
        return str(shell.line)


class FunctionName(Dynamic):
    """``$FUNCNAME``: the function running (bash's get_funcname, its first element);
    listed, the array of them."""

    array = True
    noassign = True

    def compute(self, shell: Shell) -> str | None:
        return shell.function_names[0] if shell.function_names else None

    def shown(self, shell: Shell) -> Shown:
        return shell.function_names


#: bash's BASH_RAND_MAX.
_RAND_MAX = 0x7FFF


class Random(Dynamic):
    """``$RANDOM``: bash 5.2's generator (variables.c: intrand32(), the Park-Miller
    minimal standard, and brand(), its value's halves xored, at the compatibility level
    of 5.1 and later), a value never the same as the one before (get_random_number)."""

    integer = True

    def __init__(self) -> None:
        super().__init__()
        self._seed(random.getrandbits(32))

    def _seed(self, seed: int) -> None:
        """bash's sbrand: the seed as an unsigned 32-bit int; and, unlike the shell's
        start (seedrand), no value before."""
        self._rseed = seed % 2**32
        self._last = 0
        self._reseed = False

    def compute(self, shell: Shell) -> str | None:
        if self._reseed:  # a subshell's first value: seedrand() in the new process
            self._seed(random.getrandbits(32))
        while True:
            self._rseed = _intrand32(self._rseed)
            value = ((self._rseed >> 16) ^ (self._rseed & 0xFFFF)) & _RAND_MAX
            if value != self._last:
                self._last = value
                return str(value)

    def assign(self, value: str) -> None:
        """bash's assign_random: the value seeds the generator."""
        seed = integer_value(value)
        self._seed(seed)
        self.cell = str(seed)

    def __deepcopy__(self, memo: dict[int, object]) -> Random:
        """A subshell's copy (the variables are deep-copied only for a subshell): bash
        reseeds a subshell's generator at its first value, unless it seeded it."""
        twin = copy.copy(self)
        twin._reseed = True
        return twin


def _intrand32(last: int) -> int:
    """bash's intrand32: x(n+1) = 16807 * x(n) mod (2**31 - 1), Schrage's way, as its
    32-bit arithmetic does it (a seed of 0 is 123459876)."""
    seed = last or 123459876
    high, low = divmod(seed, 127773)
    step = 16807 * low - 2836 * high
    return step + 0x7FFFFFFF if step < 0 else step


class Seconds(Dynamic):
    """``$SECONDS``: bash's get_seconds, the value assigned plus the wall clock's whole
    seconds since then (since the shell started, where nothing was)."""

    def __init__(self, value: str | None = None) -> None:
        """``value``: the environment's, which bash's init_seconds_var reads as
        legal_number() does, not as arithmetic (``010`` is 10; ``1+1``, like anything
        that is no number, counts from 0), and keeps as the value listed."""
        super().__init__()
        #: bash's att_integer, which get_seconds sets (SECONDS starts without).
        self.integer = False
        self.assign(value or "0")
        self.cell = value

    def compute(self, shell: Shell) -> str | None:
        self.integer = True
        return str(_intmax(self._assigned + int(time.time()) - self._start))

    def assign(self, value: str) -> None:
        """bash's assign_seconds: counting starts again from ``value``, arithmetic's once
        SECONDS is an integer variable, else legal_number()'s."""
        self._assigned = integer_value(value) if self.integer else legal_number(value) or 0
        self._start = int(time.time())
        self.cell = str(self._assigned)
