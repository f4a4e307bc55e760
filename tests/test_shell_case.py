"""ftrace-shell's ``case WORD in [(]PATTERN[|PATTERN]...) LIST ;; ... esac`` against bash
5.2's, byte for byte: its grammar and syntax errors, ``;;``, ``;&`` and ``;;&``, the
status, and the patterns matched as bash's strmatch() matches them (``*``, ``?``,
``[...]``, quoting making characters literal). No daemon needed."""

from __future__ import annotations

import pytest

from clients.shell_parser import CaseCommand, PatternList, parse
from clients.shell_pattern import strmatch
from tests.test_shell_parser import assert_as_bash


def test_a_case_command_parses_into_bashs_nodes():
    (node,) = parse("case $x in a|'b*') echo 1;; (c) ;& *) esac")
    (case,) = node.first.commands
    assert isinstance(case, CaseCommand)
    assert case.word == "\0ux\0" and case.line == 1
    assert [(clause.patterns, clause.terminator) for clause in case.clauses] == [
        (("a", "\\b\\*"), ";;"), (("c",), ";&"), (("*",), "")]
    assert case.clauses[0].action == tuple(parse("echo 1"))
    assert case.clauses[1:] == (PatternList(("c",), (), ";&"), PatternList(("*",), (), ""))


@pytest.mark.parametrize("text", [
    # The grammar: newlines, "(" before a pattern, the last ";;" left out, no clause.
    "case x in x) echo 1;; esac",
    "case x in\n x)\n echo 1\n ;;\n y) echo 2\nesac",
    "case x\nin (x) echo 1; esac; echo $?",
    "case x in esac; echo $?",
    "case x in y) echo no;; esac; echo $?",
    "false; case x in x) ;; esac; echo $?",
    "false; case x in y) ;; esac; echo $?",
    "case x in x) false;; esac; echo $?",
    "case in in in) echo y;; esac",
    "case x in if|then|esac) echo r;; x) echo x;; esac",
    "case esac in (esac) echo e;; esac",
    "case x in x) echo a; ;; esac",
    # ;& runs the next list untested, ;;& tests the next patterns.
    "case x in x) echo 1;& y) echo 2;& z) echo 3;; *) echo 4;; esac",
    "case x in x) echo 1;;& y) echo 2;;& *) echo 3;;& x) echo 4;; *) echo 5;; esac",
    "case x in x) echo 1;& y) echo 2;;& *) echo 3;; esac",
    "case x in y) echo 1;; x) echo 2;&\nesac; echo $?",
    # The word and patterns expanded: once, as they are reached; quoting makes literal.
    'x="a b"; case $x in "a b") echo quoted;; esac',
    'x="a*"; case abc in "$x") echo q;; $x) echo u;; esac',
    'x="a*"; case "a*" in "$x") echo q;; $x) echo u;; esac',
    "x='[ab]'; case b in $x) echo u;; esac; case '[ab]' in \"$x\") echo q;; esac",
    "x='\\*'; case '*' in $x) echo star;; esac; case 'a' in $x) echo a;; *) echo no;; esac",
    "case x in $(echo x >&2; echo y)) echo 1;; $(echo z >&2; echo x)) echo 2;;"
    " $(echo never >&2)) echo 3;; esac",
    "case $(echo x; exit 3) in x) echo $?;; esac",
    'case "" in "") echo empty;; esac; case $nosuch in "") echo unset;; esac',
    "case a in '') echo empty;; *) echo other;; esac",
    "case ${u?not set} in *) echo never;; esac; echo $?",
    # Inside loops, with break and continue, and redirections after it.
    "for i in a b c d; do case $i in b) continue;; d) break;; esac; echo $i; done",
    "for i in 1 2; do case $i in 1) echo one;; *) echo other;; esac; done > /dev/stderr",
    "case x in x) echo out; echo err >&2;; esac 2>&1 >/dev/null",
    "while :; do case x in x) break;& y) echo never;; esac; done; echo $?",
    # Syntax errors as bash's.
    "case x in a) echo;; b esac", "case x in a) echo; esac b", "case x in (a|b echo;; esac",
    "case x in a) echo;; ; esac", "case\nx in a) ;; esac", "case x in a)", "case x in\na) echo;;\n",
    "case x; in a) ;; esac", "case x in a|) ;; esac", "case x in |a) ;; esac",
    "case x in a b) ;; esac", "case x in ) ;; esac", "case x in a) echo; ;; ;; esac",
    "echo a ;& echo b", "echo a;;& echo b", "case x in a) echo b ;; esac)", "case",
    "case x", "case x in", "esac",
    # A number before < or > is a redirection's (bash's NUMBER), no word or pattern.
    "case 2>x in 2) echo y;; esac", "case x in 2>x) echo y;; esac",
    "case x in a|2>x) echo y;; esac", "for i in 1 2>x; do echo $i; done",
    "for 2>x in a; do :; done", "function 2>x { :; }", "echo a > 2>x",
    # In a command substitution: a pattern's ")" is the case command's (bash 5.2's
    # parse_comsub parses on), and its errors are bash's.
    "echo a\necho $(case x in x) echo in;; esac)",
    'x=$(if :; then case x in (x) echo y;; esac; fi); echo "$x"',
    'echo "$(case a in a) echo 1;& b) echo 2;; esac)" $(case b in a) ;; esac)',
    "echo $(echo case; fi); echo $?", "echo $(a &&); echo $?",
    "echo $(case x in x) echo a; esac", "echo $(case x in x) echo a;;",
])
def test_case_as_bash(text):
    assert_as_bash(text)


_WORDS = ["", "a", "b", "abc", "ab", ".a", "a/b", "]", "-", "*", "\\", "[", "[a", "a[", "^",
          "!", "é", "A", "5", "_", " ", "a b"]
_PATTERNS = [
    "*", "?", "??", "a*", "*c", "a?c", "*b*", "*?", "?*", "**", "a**c", "*a*b*c*",
    "[abc]", "[!abc]", "[^abc]", "[a-c]", "[c-a]", "[c-ab]", "[]]", "[]a]", "[!]]", "[a-]",
    "[-a]", "[\\]]", "[\\-a]", "[\\a-c]", "[a-\\c]", "[[:alpha:]]", "[[:digit:]]*",
    "[[:foo:]]", "[[:alpha:]", "[[:alpha:]b]", "[[:upper:][:punct:]]", "[[:space:]]",
    "[[:word:]]", "[=a=]", "[[=a=]]", "[[.a.]]", "[[.-.]]", "[[.].]]", "[[.a.]-c]", "[[.ab.]]",
    "[[.a]", "[", "[a", "a[", "[[]", "[!",
    "\\*", "\\?", "\\[a]", "\\a", "'*'", "\"*\"", "\"a\"*", "'[a]'", "[\"]\"a]", "a|b",
    "\"\"", "''", "x|[ab]|?c", "\\\\", "[\\\\]", "*\\\\", "??*",
    "[[=a=]b]", "[![:alpha:]]", "[a-[.c.]]", "[[:alpha:]-z]", "[z-a]*", "[\\", "[a\\",
    "[[:al", "[!a", "*[", "a*[", "[*]", "[?]", "[[]a]", "[]-a]", "[a-]]", "*]", "[[=]", "[[:]",
]


@pytest.mark.parametrize("pattern", _PATTERNS)
def test_patterns_match_as_bashs(pattern):
    """Each word against the pattern: one line per word, as bash prints them."""
    script = "".join(f"case '{word}' in {pattern}) echo y;; *) echo n;; esac\n"
                     for word in _WORDS)
    assert_as_bash(script)


@pytest.mark.parametrize("value", ["a*", "\\", "a\\", "[", "[a", "\\*", "*\\", "[\\]]", "?\\"])
@pytest.mark.parametrize("quoted", [False, True])
def test_patterns_from_expansions_match_as_bashs(value, quoted):
    """An unquoted expansion's characters are pattern characters (a backslash in it
    escapes, a lone one at the end matches itself); a quoted one's are literal."""
    word = '"$p"' if quoted else "$p"
    script = f"p='{value}'\n" + "".join(
        f"case '{w}' in {word}) echo y;; *) echo n;; esac\n"
        for w in ["a*", "ab", "\\", "a\\", "[", "[a", "*", "*\\", "]", "\\]", "a", "?\\", "x\\"])
    assert_as_bash(script)


def test_strmatch_matches_bytes_as_the_c_locale():
    """A multibyte character is several bytes to ``?`` and to a bracket expression."""
    word = "é".encode()
    assert (strmatch("??", word), strmatch("?", word), strmatch("[é]?", word)) == (
        True, False, True)
