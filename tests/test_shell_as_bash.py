"""ftrace-shell against bash 5.2 where reviews found them apart, over a real ftraced: the
variables bash sets at start where the environment has none (PATH, TERM, SHELL), its
readonly ones (UID, EUID, PPID) and its dynamic ones (RANDOM=N seeds, SECONDS=N offsets,
unset ends them, local RANDOM looks it up); local's export, and export of a prefix
assignment (``RANDOM=7 export RANDOM`` seeds); what is no assignment (``a[0]+=1``
refused as arrays are, ``echo x=(1)`` bash's syntax error) and where braces are literal
(a case command's word and patterns) or expanded (``for i in a={x,y}``: refused); help
for every builtin of bash's; GNU cat's close of a closed standard input; a ``-c``
command's last program exec'd as bash's (SIGPIPE kills the shell), and an exec whose
redirection fails, which does not; exec of a program the shell has not (kill), refused;
an interactive shell's ``exit``, ``exec nosuch``, and Ctrl-C in a program exec'd, at a
terminal. Each is compared with bash's own output where bash has one."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.children import REPO
from tests.daemon_fixture import daemon, spawn  # noqa: F401  (fixtures)
from tests.real_bash import GREP_ENVIRONMENT, bash_path, run_bash
from tests.test_shell_streams import run_with

TRACING = "/sys/kernel/debug/tracing"
#: What both shells' environments hold (bash's too, so that ``export -p`` lists the same):
#: no PATH, TERM, SHELL or HOME unless a test gives them.
_ENVIRONMENT = {"LC_ALL": "C", "PYTHONPATH": REPO}


def _shell(daemon, text: str, environ: dict[str, str], stdin: str = ""
           ) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clients.shell", "--address", daemon.address, "-c", text],
        env=environ, cwd="/", input=stdin, capture_output=True,
        text=True, timeout=60)


def assert_as_bash(daemon, text: str, environ: dict[str, str] = _ENVIRONMENT,
                   stdin: str = "") -> None:
    """``ftrace-shell -c TEXT`` and ``bash -c TEXT`` with only ``environ`` in their
    environments: status, stdout and stderr the same."""
    shell = _shell(daemon, text, environ, stdin)
    assert (shell.returncode, shell.stdout, shell.stderr) == run_bash(text, environ,
                                                                      stdin=stdin)


# --- the variables bash sets ----------------------------------------------------------


@pytest.mark.parametrize("environ", [
    # bash's defaults where the environment has none (they expanded to nothing).
    _ENVIRONMENT,
    # The environment's, empty too.
    {**_ENVIRONMENT, "PATH": "/nonexistent", "TERM": "", "SHELL": "/bin/x"},
])
def test_path_term_and_shell_as_bash_sets_them(daemon, environ):
    """Not exported unless the environment's."""
    assert_as_bash(daemon, 'echo "[$PATH|$TERM|$SHELL]"; export -p', environ)


#: Both shells' environment with GNU grep and cat.
_GREP = {**GREP_ENVIRONMENT, **_ENVIRONMENT}


@pytest.mark.parametrize("text", [
    # bash's DISCARD: the rest of the line goes, status 1; the next line runs.
    "UID=1; echo no\necho $? $UID",
    "x=1 EUID=1 y=2; echo no\necho $? \"[$x$y]\"",
    "PPID=1\necho $?",
    # A prefix assignment's complaint; the command runs.
    "UID=1 true; echo $?",
    # The builtins' and the for command's.
    "export UID=5 y=1; echo $? $y; export -p | grep UID",
    "unset x UID y; echo $?",
    "for UID in 1; do echo in; done; echo $?",
    "f() { local a UID=3 b=2; echo $? \"[$b]\"; }; f",
    "read a UID b; echo $? \"[$a][$b]\"",
    # In a subshell: its own end.
    "x=$(UID=1; echo in); echo \"[$x] $?\"",
])
def test_uid_euid_and_ppid_are_readonly_as_bashs(daemon, text):
    assert_as_bash(daemon, text, _GREP, stdin="1 2 3\n")


def test_uid_and_euid_from_the_environment_are_plain_variables(daemon):
    assert_as_bash(daemon, "echo $UID $EUID; UID=8; echo $UID; unset EUID; echo \"[$EUID]\"",
                   {**_ENVIRONMENT, "UID": "7", "EUID": "9"})


@pytest.mark.parametrize("text", [
    # bash's generator, seeded (a 32-bit seed; 0 is its own; blanks and a sign taken).
    "RANDOM=5; echo $RANDOM $RANDOM $RANDOM; RANDOM=-1; echo $RANDOM; RANDOM=4294967301; "
    "echo $RANDOM; RANDOM=' 5 '; echo $RANDOM; RANDOM=0; echo $RANDOM ${RANDOM:-x} ${#RANDOM}",
    # Seeded in a subshell: the subshell's.
    "x=$(RANDOM=5; echo $RANDOM); echo $x",
    # SECONDS: nothing is 0; the largest intmax_t.
    "SECONDS=; echo $SECONDS; SECONDS=9223372036854775807; echo $SECONDS",
    # unset ends them: ordinary variables after.
    "unset RANDOM SECONDS LINENO; echo \"[$RANDOM$SECONDS$LINENO]\"; RANDOM=3; echo $RANDOM",
])
def test_random_and_seconds_as_bashs(daemon, text):
    assert_as_bash(daemon, text)


@pytest.mark.parametrize("seconds", ["010", " 7 ", "1+1", "x", "99999999999999999999", ""])
def test_seconds_from_the_environment_as_bashs(daemon, seconds):
    """bash's init_seconds_var reads it as legal_number() does (010 is 10, an expression
    0); the shell took 010 for octal, and counted from 0."""
    assert_as_bash(daemon, "echo $SECONDS", {**_ENVIRONMENT, "SECONDS": seconds})


def test_seconds_counts_from_what_was_assigned(daemon):
    """Bounded by the seconds the run took, as bash's count of the wall clock's."""
    started = time.time()
    shell = _shell(daemon, "SECONDS=-1000; echo $SECONDS", _ENVIRONMENT)
    took = time.time() - started
    assert shell.returncode == 0 and -1000 <= int(shell.stdout) <= -1000 + took + 1


def test_an_integer_variables_expression_is_refused(daemon):
    """bash evaluates what is assigned to RANDOM, or to SECONDS once read (get_seconds
    makes it an integer variable), as arithmetic (RANDOM=1+1 seeds 2); the shell does
    no arithmetic, and refuses it."""
    text = ("RANDOM=1+1; echo no\n: $SECONDS; SECONDS=010; echo no\n"
            "SECONDS=9223372036854775808\necho $?")
    shell = _shell(daemon, text, _ENVIRONMENT)
    refusal = ("bash: line {}: {}: arithmetic evaluation of an integer variable's value is "
               "not supported by ftrace-shell\n")
    assert (shell.returncode, shell.stdout, shell.stderr) == (
        0, "2\n", refusal.format(1, "RANDOM=1+1") + refusal.format(2, "SECONDS=010")
        + refusal.format(3, "SECONDS=9223372036854775808"))


@pytest.mark.parametrize("text", [
    # Before its first read SECONDS is no integer variable: legal_number()'s.
    "SECONDS=010; echo $SECONDS",
    "SECONDS=1+1; echo $SECONDS",
    # export -p lists bash's value_cell: the value last read or assigned, none before.
    "export RANDOM SECONDS LINENO FUNCNAME; RANDOM=5; SECONDS=20; export -p",
    # export looks the variable up: RANDOM's generator moves on.
    "RANDOM=5; export RANDOM; export -p; echo $RANDOM",
    "export RANDOM=5; export -n RANDOM; echo $RANDOM",
    "echo $LINENO\nexport LINENO; export -p",
    # FUNCNAME's array: the functions running.
    "f() { export -p; }; export FUNCNAME; g() { f; }; g; export -p",
    # A prefix assignment looks the variable up (RANDOM moves on); the command sees a
    # plain variable.
    "RANDOM=5; RANDOM=9 true; echo $RANDOM",
    "f() { echo $RANDOM; }; RANDOM=5; RANDOM=1+1 f; echo $RANDOM",
    "RANDOM=5; RANDOM=9 nosuch; echo $RANDOM",
    # FUNCNAME is bash's noassign.
    "f() { local a FUNCNAME=3 b; echo $? $FUNCNAME; local; }; f",
    # ...and a prefix assignment to it is dropped (the function still sees its name).
    'f() { echo "$FUNCNAME"; }; FUNCNAME=3 f; g() { FUNCNAME=3 f; echo "[$FUNCNAME]"; }; g',
])
def test_dynamic_variables_listed_and_looked_up_as_bashs(daemon, text):
    assert_as_bash(daemon, text)


@pytest.mark.parametrize("text", [
    # local RANDOM looks RANDOM up four times (declare_transform_name's two lookups,
    # make_local_variable's two): the generator moves on four values, as bash's does.
    'RANDOM=5; f() { local RANDOM; echo "[$RANDOM]"; local; }; f; echo $RANDOM',
    # An assignment too; a local already made is no lookup of RANDOM's.
    "RANDOM=5; f() { local a RANDOM=3 b; local RANDOM; echo $RANDOM; }; f; echo $RANDOM",
    # Under a function's local RANDOM, none.
    "RANDOM=5; g() { local RANDOM; }; f() { local RANDOM; g; }; f; echo $RANDOM",
    # Listed: the value last computed.
    "export RANDOM=5; f() { local RANDOM; export -p; }; f; export -p; echo $RANDOM",
])
def test_local_of_a_dynamic_variable_looks_it_up_as_bashs(daemon, text):
    assert_as_bash(daemon, text)


@pytest.mark.parametrize("text", [
    # bash's set_var_attribute binds the prefix assignment's value as an assignment
    # does (assign_random seeds the generator with 7), and exports that variable; the
    # shell made RANDOM a plain 7.
    "RANDOM=7 export RANDOM; echo $RANDOM $RANDOM; export -p",
    "RANDOM=5; RANDOM=7 export RANDOM; export -p; echo $RANDOM",
    # SECONDS looked up by the prefix assignment: an integer from then on.
    "SECONDS=5 export SECONDS; export -p",
    # Bound where the variable is, a global outside any local: it outlives the function.
    'f() { X=1 export X; }; f; echo "[$X]"; export -p',
    'X=0; f() { local X; X=1 export X; export -p; }; f; echo "[$X]"',
    # A function's prefix assignment it exports outlives the call (att_propagate), down
    # to the global scope.
    'f() { export X; }; g() { X=1 f; echo "[$X]"; local; }; g; echo "[$X]"; export -p',
])
def test_export_of_a_prefix_assignment_as_bashs(daemon, text):
    assert_as_bash(daemon, text)


@pytest.mark.parametrize("text", [
    # bash's make_local_variable: "We inherit the export attribute, but no others".
    "export X=1; f() { local X=2; export -p; local; }; f; export -p",
    # Unset (invisible), listed by name; assigned, with its value.
    'export X=1; f() { local X; echo "[$X]"; local; export -p; X=3; export -p; }; f',
    # A local not exported hides an exported outer one from export -p (all_shell_variables
    # lists the innermost of each name), in a function it calls too.
    "export X=1; f() { local X=2; export -n X; export -p; g; }; g() { local X; local; "
    "export -p; }; f",
    # A function's prefix assignment is exported (assign_in_env), in its scope: export
    # -p lists it, and local keeps its value and export.
    'f() { export -p; local X; echo "[$X]"; local; }; X=1 f',
    # A local over a prefix assignment takes its value.
    'g() { X=3 local X; local; }; X=2 g',
    # unset keeps the export of a local a prefix assignment made only.
    'f() { local X; export X; unset X; local; }; X=1 f; g() { local Y=1; export Y; unset Y; '
    "local; }; g",
    # A prefix assignment the function exported, then un-exported, outlives the call
    # unexported (push_func_var ors the attributes), in a calling function too.
    'f() { export X; export -n X; }; X=1 f; echo "[$X]"; export -p',
    'h() { X=1 f; echo "h[$X]"; export -p; }; f() { export X; export -n X; }; h',
])
def test_local_inherits_the_export_attribute_as_bashs(daemon, text):
    assert_as_bash(daemon, text)


def test_funcname_from_the_environment_is_a_plain_variable_as_bashs(daemon):
    """bash's init_funcname_var keeps the environment's (the shell made it its array)."""
    assert_as_bash(daemon, 'echo "[$FUNCNAME]"; f() { echo $FUNCNAME; export -p; }; f',
                   {**_ENVIRONMENT, "FUNCNAME": "x"})


@pytest.mark.parametrize("seconds", ["7", " 07 "])
def test_seconds_from_the_environment_listed_as_bashs(daemon, seconds):
    """As the environment had it, no integer until read."""
    assert_as_bash(daemon, "export -p; echo $SECONDS; export -p",
                   {**_ENVIRONMENT, "SECONDS": seconds})


# --- words --------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    # The "(" after a word that is no assignment: bash's syntax error, not an array's.
    "echo x=(1 2)",
    "echo a[0]+=1 x=\\(",
    # Braces bash leaves as they are: a case command's word and patterns, a name.
    "case a in {a,b}) echo yes;; *) echo no;; esac",
    "case {a,b} in {a,b}) echo yes;; esac",
    "for {a,b} in 1; do :; done",
    "{a,b}() { echo f; }; '{a,b}'",
])
def test_words_as_bash_reads_them(daemon, text):
    assert_as_bash(daemon, text)


@pytest.mark.parametrize("text, refusal", [
    # Was "a[0]+=1: command not found".
    ("a[0]+=1", "an array element's assignment (`a[0]+=')"),
    # Ran unexpanded: bash's for gives a=x, then a=y.
    ("for i in a={x,y}; do echo $i; done", "brace expansion (`{x,y}')"),
])
def test_what_bash_would_assign_or_expand_is_refused(daemon, text, refusal):
    shell = _shell(daemon, text, _ENVIRONMENT)
    assert (shell.returncode, shell.stdout, shell.stderr) == (
        2, "", f"bash: -c: line 1: {refusal} is not supported by ftrace-shell\n"
        f"bash: -c: line 1: `{text}'\n")


# --- builtins -----------------------------------------------------------------------


def test_help_knows_every_builtin_and_reserved_word_bashs_does(daemon):
    """``help NAME`` succeeds where bash's does: every builtin (those the shell refuses
    say so) and the reserved words with a topic; the others are bash's complaint."""
    names = subprocess.run(["bash", "-c", "compgen -b; compgen -k"], executable=bash_path(),
                           capture_output=True, text=True, check=True).stdout.split()
    names.remove("in")  # the start of the shell's insmod and invoke, which bash has not
    quoted = " ".join(f"'{name}'" for name in names)
    assert_as_bash(daemon, f'for n in {quoted}; do help "$n" > /dev/null; echo "$n $?"; done '
                   "2>&1 | grep -v -e ' 0$' -e 'no help topics match'")
    shell = _shell(daemon, "help eval '[['", _ENVIRONMENT)
    assert shell.stdout == (f"  {'eval':<26}(bash's: not supported by ftrace-shell)\n"
                            f"  {'[[ ... ]]':<26}(bash's: not supported by ftrace-shell)\n")


@pytest.mark.parametrize("pattern", ["read", "rea", "re*", "fo", "(", "{", "%", "variables"])
def test_help_matches_its_topics_as_bashs(daemon, pattern):
    """bash 5.2's help matches names that start with the pattern only where the pattern
    matched none (``help read`` is read alone; the shell listed readarray and readonly
    too); ``%`` and ``variables`` are topics of bash's too (the shell's status was 1)."""
    real = subprocess.run(["bash", "-c", 'help -s "$1"', "bash", pattern], executable=bash_path(),
                          env=_ENVIRONMENT, capture_output=True, text=True, timeout=60)
    topics = [line for line in real.stdout.splitlines()
              if ": " in line and not line.startswith("Shell commands matching")]
    shell = _shell(daemon, f"help '{pattern}'", _ENVIRONMENT)
    # A topic a line, its summary on the next where its usage is long (indented further).
    lines = [line for line in shell.stdout.splitlines() if not line.startswith("   ")]
    assert (shell.returncode, len(lines)) == (real.returncode, len(topics))


@pytest.mark.parametrize("text", [
    # GNU cat closes standard input when it read it: closed, its second complaint.
    "cat <&-; echo $?",
    "cat - /dev/null <&-; echo $?",
    "cat /dev/null <&-; echo $?",
    # Open, for writing only: the read fails, not the close.
    "cat 0>/dev/null; echo $?",
])
def test_cat_of_a_closed_standard_input_as_gnus(daemon, text):
    assert_as_bash(daemon, text, _GREP)


# --- processes ----------------------------------------------------------------------


#: Where bash 5.2 execs the last command of a -c string, so that a SIGPIPE kills the shell
#: (-13), and where it forks (141): the status is the same either way, but not how the
#: shell ended. {f}: a file for cat.
_EXEC_CASES = ["cat {f}", "cat {f}\n", "cat {f}\n\n", "cat {f} # c", "true && true; cat {f}",
               "false || cat {f}", "true; true && cat {f}", "! cat {f}", "x=1 cat {f}",
               "cat {f} 2>/dev/null", "{{ cat {f}; }}", "cat {f}; :", "exec cat {f}; :",
               "f() {{ cat {f}; }}; f"]


def test_a_dash_c_commands_last_program_is_execd_as_bashs(daemon, tmp_path):
    """Into a pipe nobody reads: bash execs a lone simple command ending the string (its
    should_suppress_fork()), and the program's SIGPIPE is the shell's; the shell exited
    141 instead. ``exec cat`` anywhere is the shell's own death too."""
    bash_path()
    (tmp_path / "file").write_text("x\n")
    bash_ends = [run_with(daemon, text.format(f=tmp_path / "file"), 1, closed=False,
                          program=["bash"])[0] for text in _EXEC_CASES]
    shell_ends = [run_with(daemon, text.format(f=f"{TRACING}/README"), 1, closed=False)[0]
                  for text in _EXEC_CASES]
    assert shell_ends == bash_ends
    assert bash_ends[:2] == [-signal.SIGPIPE] * 2 and bash_ends[2] == 141


@pytest.mark.parametrize("text", [
    "exec nosuch >/nonexistent/x; echo $?",
    "exec cat /dev/null </nonexistent/x; echo $?",
])
def test_execs_failed_redirection_is_its_failure_as_bashs(daemon, text):
    """bash's exec builtin fails (1) and the shell goes on; the shell exited 1."""
    assert_as_bash(daemon, text)


@pytest.mark.parametrize("text", [
    "echo() { :; }; exec echo hi",
    "cat() { echo function; }; exec cat /dev/null; echo after",
])
def test_exec_runs_the_program_not_a_function_of_its_name_as_bashs(daemon, text):
    """exec looks for a program, past a function of the same name (it ran the function)."""
    assert_as_bash(daemon, text)


def test_exec_of_a_program_the_shell_has_not_is_refused(daemon):
    """bash's ``exec kill -l`` runs procps's kill (its list, not the builtin's table);
    the shell has no such program: exec refuses it, as it refuses its options, and the
    shell goes on (it ran the refusal of bash's builtin kill, and exited 2)."""
    if shutil.which("kill"):  # procps's, which bash execs: not on every machine
        builtin, program = (run_bash(text, _ENVIRONMENT) for text in ("kill -l", "exec kill -l"))
        assert program[0] == 0 and program[1] and program[1] != builtin[1]
    shell = _shell(daemon, "exec kill -l; echo $?; exec printf x; echo $?", _ENVIRONMENT)
    refusal = "bash: line 1: exec: {}: {} program is not supported by ftrace-shell\n"
    assert (shell.returncode, shell.stdout, shell.stderr) == (
        0, "2\n2\n", refusal.format("kill", "procps's")
        + refusal.format("printf", "GNU coreutils'"))


# --- at a terminal -------------------------------------------------------------------


class _Terminal:
    """A program on a pseudo-terminal of its own (stdin, stdout and stderr, and its
    session's controlling terminal, so that Ctrl-C typed is its SIGINT), read until a
    text appears, with a deadline: no sleeping."""

    def __init__(self, argv: list[str], environ: dict[str, str], cwd: str) -> None:
        setsid = shutil.which("setsid") or pytest.skip("no setsid(1) (util-linux)")
        self.master, slave = os.openpty()
        try:
            # setsid(1) execs the program, a session leader with the terminal as its own
            # (it forks only for a process group's leader, which the child of this one
            # is not).
            self.process = subprocess.Popen([setsid, "--ctty", *argv], stdin=slave,
                                            stdout=slave, stderr=slave, env=environ, cwd=cwd)
        except BaseException:
            os.close(self.master)
            raise
        finally:
            os.close(slave)
        self._buffer = b""

    def until(self, text: bytes, seconds: float = 60) -> bytes:
        """What came up to ``text`` (taken), or, with ``text`` empty, up to the end."""
        deadline = time.monotonic() + seconds
        while not text or text not in self._buffer:
            ready, _, _ = select.select([self.master], [], [],
                                        max(0, deadline - time.monotonic()))
            assert ready, f"waited for {text!r}: {self._buffer!r}"
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the other side closed
                chunk = b""
            if not chunk:
                assert not text, f"ended before {text!r}: {self._buffer!r}"
                break
            self._buffer += chunk
        end = self._buffer.index(text) + len(text) if text else len(self._buffer)
        taken, self._buffer = self._buffer[:end], self._buffer[end:]
        return taken

    def close(self) -> int:
        """The program's status; one still running after its terminal hung up is
        killed, with its process group."""
        os.close(self.master)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()


def _session(argv: list[str], environ: dict[str, str], cwd: str, prompt: bytes,
             lines: list[str]) -> tuple[list[bytes], int]:
    """Type ``lines`` at the prompt, each after the one before gave the prompt again;
    the last ends the program: (what each line gave, the prompt cut off; the status)."""
    terminal = _Terminal(argv, environ, cwd)
    try:
        terminal.until(prompt)
        gave = []
        for line in lines[:-1]:
            os.write(terminal.master, line.encode() + b"\n")
            gave.append(terminal.until(prompt).removesuffix(prompt))
        os.write(terminal.master, lines[-1].encode() + b"\n")
        gave.append(terminal.until(b""))
    finally:
        status = terminal.close()
    return gave, status


def test_interactive_exit_and_exec_of_no_program_as_bashs(daemon, tmp_path):
    """``exec nosuch`` at a prompt: bash's error, 127, and the shell goes on; ``exit``
    says so on stderr (not a subshell's); both against bash -i's."""
    lines = ["exec nosuch", "echo $?", "x=$(exit 4); echo $? | grep 4", "exit 3"]
    environ = {"HOME": str(tmp_path), "TERM": "dumb", "PATH": "/usr/bin:/bin"}
    prompt = "root@ftrace-sim:/# "  # the shell's, bash's PS1
    shell = _session([sys.executable, "-m", "clients.shell", "--address", daemon.address],
                     {**environ, "PYTHONPATH": REPO}, str(tmp_path), prompt.encode(), lines)
    real = _session([bash_path(), "--norc", "--noprofile", "-i"], {**environ, "PS1": prompt},
                    str(tmp_path), prompt.encode(), lines)
    assert shell == real
    assert shell == ([b"exec nosuch\r\nbash: exec: nosuch: not found\r\n", b"echo $?\r\n127\r\n",
                      b"x=$(exit 4); echo $? | grep 4\r\n4\r\n", b"exit 3\r\nexit\r\n"], 3)


def _ctrl_c_in_an_execd_program(argv: list[str], environ: dict[str, str], cwd: str,
                                prompt: bytes) -> tuple[bytes, int]:
    """``exec cat`` at the prompt, a line for it to copy, then Ctrl-C and ``exit 5``
    typed together: (what came after the copy; the status)."""
    terminal = _Terminal(argv, environ, cwd)
    try:
        terminal.until(prompt)
        os.write(terminal.master, b"exec cat\nhello\n")
        terminal.until(b"hello\r\n")  # cat's copy: it runs
        os.write(terminal.master, b"\x03exit 5\n")
        gave = terminal.until(b"")
    finally:
        status = terminal.close()
    return gave, status


def test_interactive_exec_then_ctrl_c_kills_the_shell_as_bashs(daemon, tmp_path):
    """The program exec'd is the shell: Ctrl-C kills it (bash -i dies of SIGINT, and no
    prompt reads the ``exit 5`` typed after); the shell took it as at its prompt."""
    environ = {"HOME": str(tmp_path), "TERM": "dumb", "PATH": "/usr/bin:/bin"}
    prompt = "root@ftrace-sim:/# "
    shell = _ctrl_c_in_an_execd_program(
        [sys.executable, "-m", "clients.shell", "--address", daemon.address],
        {**environ, "PYTHONPATH": REPO}, str(tmp_path), prompt.encode())
    real = _ctrl_c_in_an_execd_program([bash_path(), "--norc", "--noprofile", "-i"],
                                       {**environ, "PS1": prompt}, str(tmp_path),
                                       prompt.encode())
    assert shell == real == (b"^Cexit 5\r\n", -signal.SIGINT)


def _ctrl_c_in_a_substitution_s_exec(argv: list[str], environ: dict[str, str],
                                     cwd: str) -> int:
    """``-c`` whose substitution execs cat, Ctrl-C once it reads the terminal (its
    complaint of the file before says it runs): the status."""
    terminal = _Terminal(argv + ["-c", 'x=$(exec cat /nosuch -); echo "after $?"'],
                         environ, cwd)
    try:
        terminal.until(b"cat: /nosuch: No such file or directory\r\n")
        os.write(terminal.master, b"\x03")
        gave = terminal.until(b"")
    finally:
        status = terminal.close()
    assert b"after" not in gave, gave
    return status


def test_ctrl_c_in_a_substitution_s_exec_kills_the_calling_shell_as_bashs(daemon, tmp_path):
    """The substitution's subshell is not the shell at its prompt: Ctrl-C reaches the
    calling shell too, which dies of it, as bash does (it took 130 and went on)."""
    environ = {"HOME": str(tmp_path), "TERM": "dumb", "PATH": "/usr/bin:/bin"}
    shell = _ctrl_c_in_a_substitution_s_exec(
        [sys.executable, "-m", "clients.shell", "--address", daemon.address],
        {**environ, "PYTHONPATH": REPO}, str(tmp_path))
    real = _ctrl_c_in_a_substitution_s_exec([bash_path()], environ, str(tmp_path))
    assert shell == real == -signal.SIGINT
