"""ftrace-shell: a small bash over ftraced, enough to run the 8c4f3c3 report's reproducer
as written::

    ftrace-shell --spawn --variant buggy repro.sh      # a private daemon for the run
    ftrace-shell --address unix:/run/user/0/ftraced.sock
    echo 'cat /proc/modules' | ftrace-shell

Interactive (a prompt, readline editing and history) when no script is given and standard
input is a terminal; otherwise it runs the script file, the ``-c`` command or standard
input. The exit status is the last command's, as bash's.

Diagnostics are bash's, byte for byte: ``bash: echo: write error: Invalid argument`` (a
failed write(2)), ``bash: set_ftrace_filter: No such device`` (a redirection whose open(2)
failed), ``bash: foo: command not found``. Those are the interactive forms; running a
``-c`` command or standard input they read ``bash: line N: ...``, and running a script
file ``SCRIPT: line N: ...``, as bash's do. ``--name`` changes "bash"; ``--comm`` changes
the comm the daemon sees (also "bash", so dmesg's WARN shows ``comm: bash``); the pid is
the shell's own. ``-c COMMAND NAME`` makes NAME the ``$0`` and the diagnostics' name, as
bash does; the arguments after NAME, or after a script's name, or all of them after the
options with ``-s`` (standard input), are the positional parameters ``$1``..., as bash's
(an option there is one of them; the options end at ``-``, ``--``, the first argument
that is none, or ``-c COMMAND``). The shell's variables start as its environment
(clients.shell_variables).
"""

from __future__ import annotations

import argparse
import copy
import errno
import os
import posixpath
import signal
import sys
import threading
import time
from contextlib import contextmanager
from types import MappingProxyType
from typing import Callable, Iterable, Iterator, Mapping, TextIO

import clients.shell_builtins  # noqa: F401  (registers the commands)
import clients.shell_grep  # noqa: F401  (registers the command)
import clients.shell_kmod  # noqa: F401  (registers the commands)
import clients.shell_read  # noqa: F401  (registers the command)
import clients.shell_test_builtin  # noqa: F401  (registers the commands)
import clients.shell_variables  # noqa: F401  (registers the commands)
from clients.api import Client, FileSession
from clients.cli import (ADDRESS_HELP, EXIT_NO_DAEMON, ConnectError, add_connect_timeout,
                         address_argument, check_address_env, check_daemon_options,
                         daemon_client, error_text, identity_argument)
from clients.errors import FtraceError
from clients.interrupt import sigint_noted
from clients.shell_parser import (
    AndOr,
    CaseCommand,
    Command,
    CommandList,
    CompoundCommand,
    ForCommand,
    FunctionDef,
    GroupCommand,
    IfCommand,
    Incomplete,
    Pipeline,
    Redirect,
    ShellSyntaxError,
    WhileCommand,
    fd_number,
    is_name,
    parse,
)
from clients.shell_pipe import (
    KilledBySignal,
    Pipe,
    PipeReader,
    PipeWriter,
    SIGNAL_SLICE,
    Stage,
    StageOutput,
)
from clients.shell_runtime import (
    BAD_DESCRIPTOR,
    COMMANDS,
    BufferOutput,
    Descriptor,
    FileInput,
    FileOutput,
    FunctionReturn,
    Input,
    InputError,
    Invocation,
    NullInput,
    NullOutput,
    Output,
    ShellExit,
    StandardInput,
    StreamOutput,
    WriteError,
    as_input,
    as_output,
    encode,
    hold_closed,
    legal_number,
)
from clients.shell_pattern import strmatch
from clients.shell_variables import (ExpansionError, ReadonlyVariable, Variables,
                                     expand_fields, expand_pattern, expand_value)
from clients.spawn import daemon_argv

__all__ = ["Shell", "main"]

#: How the shell reads its commands; it decides the diagnostics' prefix, as in bash.
MODES = ("interactive", "script", "command", "stdin")
#: What bash passes: O_CREAT of a name not in the tracing directory is EACCES (debugfs
#: cannot create files), not ENOENT.
_TRUNCATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND
#: How long an interrupted pipeline's processes get to die before the shell goes on
#: without them (one stuck in a call to an unanswering daemon).
_REAP_SECONDS = 5.0
#: A pipeline's command, the copy of the variables it runs with, and its expanded words
#: (an ExpansionError; None for a compound command or a function definition).
_Element = tuple[Command | CompoundCommand | FunctionDef, Variables,
                 list[str] | ExpansionError | None]
#: Where bash says a function was defined (its BASH_SOURCE, which its diagnostics name)
#: when the shell was not reading a script: at start (a -c command) or later.
_FUNCTION_SOURCE = {"command": "environment", "stdin": "main"}
#: bash's automatic variables the shell does not give (``compgen -v`` of a bash with no
#: environment, less those it has): their expansion is refused where the user has not set
#: them, never an empty value bash would not give. (BASH_VERSION: no bash's version is
#: this shell's.)
_REFUSED_VARIABLES = frozenset((
    "_", "PS4", "BASH", "BASHOPTS", "BASH_ALIASES", "BASH_ARGC", "BASH_ARGV", "BASH_ARGV0",
    "BASH_CMDS", "BASH_COMMAND", "BASH_EXECUTION_STRING", "BASH_LINENO", "BASH_LOADABLES_PATH",
    "BASH_SOURCE", "BASH_SUBSHELL", "BASH_VERSINFO", "BASH_VERSION", "COMP_WORDBREAKS",
    "DIRSTACK", "EPOCHREALTIME", "EPOCHSECONDS", "GROUPS", "HISTCMD", "HOSTNAME", "HOSTTYPE",
    "MACHTYPE", "OPTERR", "OPTIND", "OSTYPE", "SHELLOPTS", "SRANDOM", "PIPESTATUS",
    # A pipeline's stage is a thread of the shell's process, no process of its own.
    "BASHPID"))
#: The bash builtins a Linux system also has as programs (coreutils'), which exec runs
#: as programs: the shell's builtin is the program too.
_BUILTINS_ALSO_PROGRAMS = frozenset({"echo", "pwd", "test", "[", "true", "false"})
#: Those the shell refuses as builtins (clients.shell_builtins.REFUSED_BUILTINS), whose
#: program exec would run (bash's ``exec kill -l`` is procps's list, not its builtin's
#: table): the shell has none, and exec refuses it, never "not found".
_PROGRAMS_REFUSED = {"kill": "procps's", "printf": "GNU coreutils'"}
#: A failed write's exit status where it is not 1: GNU grep's EXIT_TROUBLE, ls's
#: LS_FAILURE ("serious trouble").
_WRITE_ERROR_STATUS = {"grep": 2, "ls": 2}
#: How deep function calls may nest where FUNCNEST sets no lower limit: bash's have none
#: but its stack; the shell's calls nest on Python's, whose recursion limit the shell
#: raises to fit (up to _FRAMES_PER_CALL frames each: a call inside a dozen nested
#: compound commands), and a deeper call fails as one beyond FUNCNEST does.
_FUNCNEST_MAX = 2000
_FRAMES_PER_CALL = 100


def _oneshot(program: list[AndOr]) -> Command | None:
    """The simple command ending a ``-c`` command string that bash execs rather than forks
    (builtins/evalstring.c's should_suppress_fork() and can_optimize_connection(), bash
    5.2), so that a program it runs is bash's own process, and what kills it kills the
    shell: the last command of the string's last line, alone or after ``;``, ``&&`` or
    ``||`` (but not a second and-or list's, ``a; b && c``), neither in a pipeline nor
    negated, without redirections."""
    last = program[-1] if program else None
    if last is None or len(program) > 1 and last.rest:
        return None
    pipeline = last.rest[-1][1] if last.rest else last.first
    command = pipeline.commands[0]
    if len(pipeline.commands) > 1 or pipeline.negated or not isinstance(command, Command) \
            or command.redirects:
        return None
    return command


def _compound_name(command: CompoundCommand | FunctionDef) -> str:
    """A compound command's reserved word (a function definition's name), as the shell
    names one where it cannot run it."""
    if isinstance(command, FunctionDef):
        return command.name
    if isinstance(command, WhileCommand):
        return "until" if command.until else "while"
    return {IfCommand: "if", ForCommand: "for", CaseCommand: "case",
            GroupCommand: "{"}[type(command)]


class Shell:
    """The shell's state (working directory, last status, variables) and its executor.

    Feed it input line by line with :meth:`feed` (it runs each command as soon as it is
    complete, as bash does) and call :meth:`finish` at the end of input. ``exit`` raises
    :class:`ShellExit`; so does a syntax error outside interactive mode.
    """

    def __init__(
        self,
        client: Client,
        *,
        name: str = "bash",
        mode: str = "stdin",
        script: str | None = None,
        stdout: Output | None = None,
        stderr: Output | None = None,
        standard_input: StandardInput | None = None,
        echo_input: bool = False,
        environ: Mapping[str, str] = MappingProxyType({}),
        invoked_as: str | None = None,
        positional: Iterable[str] = (),
    ) -> None:
        """``name``: what diagnostics start with and ``$0`` (``-c COMMAND NAME``: NAME);
        ``invoked_as``: bash's shell_name, its warnings' (default: ``name``);
        ``positional``: the shell's positional parameters (``-c COMMAND NAME ARG...``);
        ``environ``: the environment the variables start as (the program passes its
        own; at start an OLDPWD in it is looked up on the daemon, as bash's file_isdir)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.client = client
        self.name = name
        self.mode = mode
        #: bash's ``interactive``: reading commands from a terminal, and not a subshell
        #: (a pipeline's process, a command substitution), which is not.
        self.interactive = mode == "interactive"
        self.script = script
        self.cwd = "/"
        self.status = 0
        #: The line of the command running now (for "SCRIPT: line N:").
        self.line = 0
        #: The process this shell is: the shell's own, or a pipeline's (see _fork).
        self.stage = Stage()
        self.stdout: Output = stdout or self._stream(sys.stdout)
        self.stderr: Output = stderr or self._stream(sys.stderr)
        #: File descriptor 0 as the shell started with it, which the shell (in stdin
        #: mode) and its commands read.
        self.standard_input = standard_input or StandardInput()
        #: File descriptor 0 of the commands running now: the standard input, or what a
        #: compound command's redirection made it (``done < FILE``).
        self.stdin: Input = self.standard_input
        #: File descriptors 3 and up of the commands running now, as the redirections of
        #: the compound commands running them made them (``{ cat <&3; } 3< FILE``): bash's
        #: are the shell process's own, which every command inside inherits.
        self.descriptors: dict[int, Descriptor] = {}
        #: The shell's variables (clients.shell_variables).
        self.variables = Variables(
            environ, self.cwd, is_directory=self._is_directory,
            warn=lambda message: self._say(self.stderr,
                                           f"{invoked_as or name}: warning: {message}"))
        #: bash -v: print each input line to stderr as it is read.
        self.echo_input = echo_input
        self._pending: list[str] = []
        # The quote an unfinished command waits for (Incomplete.closing).
        self._awaiting: str | None = None
        self._pending_start = 1
        self._next_line = 1
        #: bash's loop_level, breaking and continuing: how many loops run the command
        #: running now, and how many of them ``break N`` / ``continue N`` leave.
        self.loop_level = 0
        self.breaking = 0
        self.continuing = 0
        #: bash's last_command_subst_status: the status of the last command substitution
        #: of the command expanding now (None: it had none), a command without a name's.
        self.substitution_status: int | None = None
        #: How many compound commands (function bodies too) run the command running now.
        self.compound_level = 0
        #: The files ``exec`` redirections opened that a descriptor of the shell still is.
        self._exec_files: list[Descriptor] = []
        #: The shell's functions by name (bash's shell_functions); a subshell's copy is
        #: its own.
        self.functions: dict[str, FunctionDef] = {}
        #: bash's funcnest: how many function calls run the command running now.
        self.funcnest = 0
        #: bash's FUNCNAME array: the functions running, innermost first, and ``main``
        #: under them running a script (its first element is $FUNCNAME).
        self.function_names: tuple[str, ...] = ()
        #: The positional parameters, $1...: those of the function running, else the
        #: shell's own (``set --`` and ``shift`` change them).
        self.positional: tuple[str, ...] = tuple(positional)
        #: The -c command's last line is being read: what runs now ends the command
        #: string (bash's ``*bash_input.location.string == '\0'``).
        self._command_ends = False
        #: The simple command bash -c would exec rather than fork (:func:`_oneshot`).
        self._oneshot: Command | None = None

    def _stream(self, stream: TextIO | None) -> Output:
        """The shell's stdout or stderr; one that was closed when it started (Python's
        None) is bash's closed descriptor: a write fails with EBADF."""
        return BAD_DESCRIPTOR if stream is None else StreamOutput(stream.buffer, self.stage)

    # --- paths and diagnostics ----------------------------------------------

    def prefix(self) -> str:
        """What a shell diagnostic starts with, as in bash: ``bash`` when interactive, else
        where the command is: ``SCRIPT: line N``, or ``bash: line N`` (-c, standard input)."""
        if self.mode == "interactive":
            return self.name
        if self.mode == "script":
            return f"{self.script}: line {self.line}"
        # In a function, bash names where it was defined (get_name_for_error()'s
        # BASH_SOURCE).
        return f"{_FUNCTION_SOURCE[self.mode] if self.funcnest else self.name}: line {self.line}"

    def resolve(self, path: str) -> str:
        """The absolute, normalized daemon path for ``path`` (relative to the cwd)."""
        if not path:
            # open("")'s ENOENT (getname()'s), the kernel's errno said without asking.
            raise FtraceError(errno.ENOENT, "empty path")
        resolved = posixpath.normpath(posixpath.join(self.cwd, path))
        return "/" + resolved.lstrip("/")  # normpath keeps a leading "//"

    def open(self, path: str, flags: int) -> FileSession:
        """open(2) of a tracefs file, held by this process (a signal cancels it)."""
        return self.stage.hold(self.client.open(self.resolve(path), flags))

    def reason(self, error: FtraceError,
               kernel_text: Callable[[FtraceError], str] = lambda error: error.strerror) -> str:
        """What a command's diagnostic says after its own words for a failed call: the
        kernel's errno as ``kernel_text`` words it (``strerror``; kmod's own words for
        insmod's and modprobe's); an error that did not come from the kernel as every
        client words it (:func:`clients.cli.error_text`: a daemon that went away during
        the call is said so, not as the refusal's errno alone, which would read as the
        kernel's)."""
        return kernel_text(error) if error.from_kernel else error_text(error, self.client)

    def _is_directory(self, path: str) -> bool:
        """bash's file_isdir, on the daemon's tree."""
        try:
            return self.client.stat(self.resolve(path)).entry.is_dir
        except FtraceError:
            return False

    def _say(self, stream: Output, message: str) -> None:
        try:
            stream.write(encode(message + "\n"))
        except WriteError:
            pass

    # --- input --------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """Input of an unfinished command is waiting for more lines."""
        return bool(self._pending)

    def feed(self, line: str, *, newline: bool = True) -> None:
        """One more line of input; runs what it completes. ``newline`` False: the input's
        last line, which does not end with one (see :meth:`feed_command`)."""
        if not self._pending:
            self._pending_start = self._next_line
        line = line.replace("\0", "")  # bash drops NUL bytes from its input
        line = line if line.endswith("\n") or not newline else line + "\n"
        if self.echo_input:
            self._say(self.stderr, line.removesuffix("\n"))
        self._pending.append(line)
        self._next_line += 1
        # Inside a quote, only a line with that quote can end the command; inside a
        # compound command, only one with its closing word: parsing again at every line
        # would take time quadratic in their length.
        if self._awaiting is not None and self._awaiting not in line:
            return
        self._awaiting = None
        text = "".join(self._pending)
        try:
            program = parse(text, self._pending_start)
        except Incomplete as error:
            # Interactively bash reports a syntax error inside a compound command as soon
            # as its line is read, so each line is parsed there.
            self._awaiting = error.closing or (
                error.closing_word if self.mode != "interactive" else None)
            return
        except ShellSyntaxError as error:
            self._pending = []
            self._syntax_error(error, text)
            return
        self._pending = []
        self.execute(program)

    def feed_all(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.feed(line)
        self.finish()

    def feed_command(self, command: str) -> None:
        """A ``-c`` command, to the end. bash ends a file's or standard input's last line
        with a newline, but not a -c command's: there a final backslash stays."""
        *lines, last = command.splitlines() or [""]
        for line in lines:
            self.feed(line)
        self._command_ends = True
        self.feed(last, newline=command.endswith("\n"))
        self.finish()

    def discard(self) -> None:
        """Forget an unfinished command (Ctrl-C at the continuation prompt)."""
        self._pending = []
        self._awaiting = None

    def finish(self) -> None:
        """End of input: an unfinished command runs if the end completes it (a final
        backslash-newline continues onto nothing, as in bash), else it is a syntax error."""
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending, self._awaiting = [], None
        try:
            program = parse(text, self._pending_start, at_eof=True)
        except ShellSyntaxError as error:
            self._syntax_error(error, text)
            return
        self.execute(program)

    def _syntax_error(self, error: ShellSyntaxError, text: str) -> None:
        self.status = 2
        self.line = error.line
        prefix = f"{self.name}: -c: line {error.line}" if self.mode == "command" else self.prefix()
        self._say(self.stderr, f"{prefix}: {error.message}")
        if self.mode == "interactive":
            return
        if not isinstance(error, Incomplete):
            lines = text.splitlines() or [""]
            index = min(max(error.line - self._pending_start, 0), len(lines) - 1)
            self._say(self.stderr, f"{prefix}: `{lines[index]}'")
        raise ShellExit(127 if error.substitution and self.mode == "command" else 2)

    # --- expansion ----------------------------------------------------------

    def parameter(self, name: str) -> str | None:
        """The value of the parameter ``name`` (bash's special parameters: ``$?``, ``$$``,
        ``$0``, ``$#``; the positional ones, a function's arguments; ``$@`` and ``$*``
        joined as an assignment joins them, None without any), None when unset."""
        special = {"?": str(self.status), "$": str(os.getpid()), "#": str(len(self.positional)),
                   "0": self.script if self.mode == "script" else self.name}
        if name in special:
            return special[name]
        if name in ("@", "*"):
            if not self.positional:
                return None
            ifs = self.variables.get("IFS")
            return (" " if name == "@" or ifs is None else ifs[:1]).join(self.positional)
        if name.isdigit():
            index = int(name)
            return self.positional[index - 1] if 0 < index <= len(self.positional) else None
        dynamic = self.variables.dynamic(name)
        if dynamic is not None:
            return dynamic.value(self)
        if name in _REFUSED_VARIABLES and not self.variables.exists(name):
            raise ExpansionError(f"${name}: bash's variable is not supported by ftrace-shell",
                                 status=2)
        return self.variables.get(name)

    def fields(self, word: str) -> list[str]:
        """What ``word`` expands to: its fields (none, one or several)."""
        return expand_fields(word, self)

    def expand_words(self, command: Command) -> list[str]:
        """The command's words expanded; a declaration builtin's assignment arguments
        (``export a=$b``) are not split, as bash's W_ASSIGNARG words are not."""
        words: list[str] = []
        for index, word in enumerate(command.words):
            if index in command.assignment_args:
                words.append(expand_value(word, self))
            else:
                words.extend(self.fields(word))
        return words

    # --- execution ----------------------------------------------------------

    def execute(self, program: list[AndOr]) -> None:
        """Run what was parsed: one line of input (with the lines an unfinished command
        took in). An expansion error abandons the rest of it, and the shell goes on with
        the next line, as bash's DISCARD; a fatal one (``${a?}``) ends a non-interactive
        shell, as bash's FORCE_EOF, and one after bash's top_level_cleanup() (``break 1
        2``) a ``-c`` command (run_one_command's DISCARD: status 1)."""
        self._oneshot = _oneshot(program) if self._command_ends else None
        try:
            for node in program:
                self.run_and_or(node)
        except ExpansionError as error:
            self.status = self._expansion_failed(error)
            if error.fatal and self.mode != "interactive" or (
                    error.top_level_cleanup and self.mode == "command"):
                raise ShellExit(self.status) from None

    def _expansion_failed(self, error: ExpansionError) -> int:
        """Report the error; the status bash leaves: the error's own if it has one, else 1,
        but 127 for a fatal one under -c (its FORCE_EOF out of parse_and_execute), also as
        a pipeline's subshell's."""
        self._report(error)
        if error.status is not None:
            return error.status
        return 127 if error.fatal and self.mode == "command" else 1

    def _report(self, error: ExpansionError) -> None:
        """Print the error's message once: where it happened, inside a compound command
        whose redirections may send stderr elsewhere (``done 2>/dev/null``)."""
        if not error.reported:
            self._say(self.stderr, f"{self.prefix()}: {error.message}")
            error.reported = True

    def run_and_or(self, node: AndOr) -> int:
        status = self.run_pipeline(node.first)
        for operator, pipeline in node.rest:
            if (operator == "&&") == (status == 0):
                status = self.run_pipeline(pipeline)
        return status

    def run_list(self, commands: CommandList) -> int:
        """A compound command's list: its last command's status."""
        for node in commands:
            self.run_and_or(node)
        return self.status

    def run_pipeline(self, pipeline: Pipeline) -> int:
        """Run the pipeline and make its status ``$?`` (inverted by ``!``). While a
        ``break`` or ``continue`` leaves loops, nothing runs, as bash's
        execute_command_internal returns at once then."""
        self.stage.check()
        if self.breaking or self.continuing:
            return self.status
        status = self._pipeline(pipeline.commands)
        self.status = int(not status) if pipeline.negated else status
        return self.status

    def _pipeline(self, commands: tuple[Command | CompoundCommand | FunctionDef, ...]) -> int:
        """Run a command, or ``a | grep ... [| grep ...]`` (a's output becomes grep's
        input as a writes it; a may be a compound command). A later command must be grep
        (or expand to no name); the words are expanded once, before any command runs, so
        that what is refused runs nothing."""
        if len(commands) == 1:
            return self.run_command(commands[0], self.stdin, self.stdout)
        elements: list[_Element] = []
        for command in commands:
            variables = copy.deepcopy(self.variables)
            words: list[str] | ExpansionError | None = None  # a compound command's: none
            if isinstance(command, Command):
                with self._subshell(variables):
                    self.line = command.line
                    try:
                        words = self.expand_words(command)
                    except ExpansionError as error:
                        words = error
            elements.append((command, variables, words))
        for command, _, words in elements[1:]:
            # bash: "" is a command not found, no name runs nothing.
            name = _compound_name(command) if words is None else (
                words[0] if isinstance(words, list) and words[:1] not in ([], ["grep"], [""])
                else None)
            if name is not None:
                self.line = command.line
                # head's first lines are what grep -m gives (tail's last lines, none).
                hint = (" (grep -m N '' gives head -n N)" if posixpath.basename(name) == "head"
                        else "")
                self._say(self.stderr,
                          f"{self.prefix()}: {name}: ftrace-shell pipes only into grep{hint}")
                return 1
        return self._run_stages(elements)

    def _run_stages(self, elements: list[_Element]) -> int:
        """bash's execute_pipeline: each command in a process of its own (a thread with a
        copy of the shell, :meth:`_fork`), the pipes between them, all running at once;
        then wait for them all (bash's wait_for, a waitpid(2) for each): the pipeline is
        over when every thread it started has ended. The status is the last one's.
        Ctrl-C (KeyboardInterrupt, in the main thread, which only waits here) kills every
        one of them, as SIGINT does the pipeline's process group, and the shell is
        interrupted after them."""
        stages = [self.stage.spawn() for _ in elements]
        pipes = [Pipe() for _ in elements[1:]]
        statuses = [0] * len(elements)
        threads = []
        for index, ((command, variables, words), stage) in enumerate(zip(elements, stages)):
            stdin: Input = PipeReader(pipes[index - 1], stage) if index else self.stdin
            stdout: Output = (PipeWriter(pipes[index], stage) if index < len(pipes)
                              else StageOutput(self.stdout, stage))
            child = self._fork(stage, variables, stdout)
            threads.append(threading.Thread(
                target=child._run_stage, args=(command, words, stdin, statuses, index),
                daemon=True, name=f"pipeline stage {index}"))
        started: list[threading.Thread] = []
        try:
            # Ctrl-C noted while the stages start: raised inside a Thread.start() (a busy
            # machine, the first stage's call under way before the next thread ran), it
            # left that stage running but not counted as started, so not waited for.
            with sigint_noted() as noted:
                for thread in threads:
                    thread.start()
                    started.append(thread)
            if noted.interrupted or self._join_stages(started):
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            self._kill_stages(stages, started)
            raise
        finally:
            for stage in stages:
                self.stage.reap(stage)
        return statuses[-1]

    @staticmethod
    def _join_stages(threads: list[threading.Thread], deadline: float | None = None) -> bool:
        """Wait until every one of ``threads`` (a pipeline's stages) has ended, or until
        ``deadline`` (``time.monotonic()``) when one is given; True if Ctrl-C came
        meanwhile, which ends the wait.

        Joined with SIGINT only noted: 3.11's Thread.join() interrupted by
        KeyboardInterrupt takes the thread for ended (bpo-45274's handler releases the
        lock the running thread holds) and a later join returns at once. In slices of
        SIGNAL_SLICE: a SIGINT that another thread took runs its handler only once this
        one runs bytecode again."""
        with sigint_noted() as noted:
            for thread in threads:
                while thread.is_alive() and not noted.interrupted:
                    left = SIGNAL_SLICE if deadline is None else deadline - time.monotonic()
                    if left <= 0:
                        return False
                    thread.join(min(left, SIGNAL_SLICE))
        return noted.interrupted

    @classmethod
    def _kill_stages(cls, stages: list[Stage], started: list[threading.Thread]) -> None:
        """SIGINT to every stage, then a wait for the started ones to end, up to
        _REAP_SECONDS (one stuck in a call to an unanswering daemon is left behind);
        another Ctrl-C meanwhile cuts the wait short, never the kills."""
        for stage in stages:
            stage.kill(signal.SIGINT)
        cls._join_stages(started, time.monotonic() + _REAP_SECONDS)

    def _fork(self, stage: Stage, variables: Variables, stdout: Output) -> Shell:
        """A pipeline's process: a copy of the shell (bash's subshell: what it assigns,
        exports or unsets, its ``cd``, its ``exit`` and its ``break`` stay in it) that
        ``stage`` is, writing ``stdout``."""
        child = copy.copy(self)
        child.stage, child.variables, child.interactive = stage, variables, False
        child.functions = dict(self.functions)
        child.stdout = stdout
        child.stderr = StageOutput(self.stderr, stage)
        child._exec_files = []  # those of the shell's exec are the shell's to close
        return child

    def _run_stage(self, command: Command | CompoundCommand | FunctionDef,
                   words: list[str] | ExpansionError | None,
                   stdin: Input, statuses: list[int], index: int) -> None:
        """A pipeline's process from start to exit: its status goes to
        ``statuses[index]``, 128 + the signal's number when one killed it; its ends of
        the pipes close as it exits."""
        stdout = self.stdout  # its pipe end, whatever its exec makes its stdout
        try:
            statuses[index] = self._run_element(command, words, stdin, stdout)
        except KilledBySignal as death:
            statuses[index] = death.status
        except BaseException:
            # A fault of the shell's own: its traceback (threading's excepthook), and
            # the process's failure, not a success.
            statuses[index] = 1
            raise
        finally:
            if isinstance(stdin, PipeReader):
                stdin.close()
            if isinstance(stdout, PipeWriter):
                stdout.release()
            for file in self._exec_files:  # its exec's files, closed as it exits
                file.close()

    @contextmanager
    def _subshell(self, variables: Variables) -> Iterator[None]:
        """bash's subshell: it runs with ``variables`` (a copy of the shell's); they, its
        working directory, its functions, its positional parameters (``shift``), its
        descriptors (``exec 2>&1``) and a ``break`` or ``continue`` in it are not given
        back."""
        saved = (self.variables, self.cwd, self.breaking, self.continuing, self.functions,
                 self.positional, self.stdin, self.stdout, self.stderr, self.descriptors,
                 self._exec_files, self.interactive)
        self.variables, self.functions = variables, dict(self.functions)
        self.interactive = False
        self._exec_files = []  # the shell's exec's files are the shell's to close, as _fork's
        try:
            yield
        finally:
            for file in self._exec_files:  # its own exec's, closed as it exits
                file.close()
            (self.variables, self.cwd, self.breaking, self.continuing, self.functions,
             self.positional, self.stdin, self.stdout, self.stderr, self.descriptors,
             self._exec_files, self.interactive) = saved

    def _run_element(self, command: Command | CompoundCommand | FunctionDef,
                     words: list[str] | ExpansionError | None,
                     stdin: Input, stdout: Output) -> int:
        """One command of a pipeline, in its subshell: its status, also when it exits or
        an expansion fails."""
        self.line = command.line
        if isinstance(words, ExpansionError):
            return self._expansion_failed(words)
        try:
            return self.run_command(command, stdin, stdout, words)
        except ExpansionError as error:
            return self._expansion_failed(error)
        except (ShellExit, FunctionReturn) as done:
            return done.status

    def command_substitution(self, source: str, line: int) -> str:
        """bash's command_substitute: ``source`` (starting on ``line``) run in a
        subshell, its output with the trailing newlines removed (NUL bytes dropped, with
        bash's warning); its status becomes ``$?`` and :attr:`substitution_status`. An
        expansion error ends the subshell with status 1, a fatal one too."""
        output = BufferOutput()
        saved = self.stdout, self.line
        with self._subshell(copy.deepcopy(self.variables)):
            self.stdout = output
            try:
                for node in parse(source, line, at_eof=True):
                    self.run_and_or(node)
                status = self.status
            except ExpansionError as error:
                self._report(error)
                status = 1
            except (ShellExit, FunctionReturn, KilledBySignal) as done:
                # KilledBySignal: the program the subshell exec'd died of a signal.
                status = done.status
            finally:
                self.stdout, self.line = saved
        self.status = self.substitution_status = status
        data = output.getvalue()
        if b"\0" in data:
            self._say(self.stderr,
                      f"{self.prefix()}: warning: command substitution: ignored null byte in input")
            data = data.replace(b"\0", b"")
        return data.decode("utf-8", "surrogateescape").rstrip("\n")

    @contextmanager
    def _redirections(self, redirects: tuple[Redirect, ...], stdin: Input, stdout: Output,
                      kept: list[Descriptor] | None = None
                      ) -> Iterator[dict[int, Descriptor] | None]:
        """Apply the redirections left to right over ``stdin``, ``stdout`` and the
        shell's stderr: the file descriptors they make, or None when one failed (after
        bash's diagnostic: the command does not run); what they opened is released
        after, in the order opened, unless they were all made and ``kept`` is given
        (exec's, which stay the shell's): it goes there."""
        fds: dict[int, Descriptor] = {**self.descriptors, 0: stdin, 1: stdout, 2: self.stderr}
        opened: list[Descriptor] = []
        try:
            made = self._redirect(redirects, fds, opened)
            if made and kept is not None:
                kept.extend(opened)
                opened = []
            yield fds if made else None
        finally:
            for descriptor in opened:
                descriptor.close()

    def _redirect(self, redirects: tuple[Redirect, ...], fds: dict[int, Descriptor],
                  opened: list[Descriptor]) -> bool:
        """bash's do_redirections: each redirection made in turn, the first that fails
        reported (on the standard error as the ones before it left it) and the rest not
        made."""
        for redirect in redirects:
            targets = self.fields(redirect.target)
            # bash names the word as expanded where it expanded to one, else as written.
            target = targets[0] if len(targets) == 1 else None
            named = target or redirect.source
            duplicate = redirect.op in (">&", "<&")
            if target is None or duplicate and target not in ("", "-") and not (
                    target.isascii() and target.isdigit()):
                self._say(as_output(fds[2]), f"{self.prefix()}: {named}: ambiguous redirect")
                return False
            if duplicate:
                if target == "-":  # close(2), which bash does not check
                    fds[redirect.fd] = BAD_DESCRIPTOR
                    continue
                fd = fd_number(target)  # None: "", or beyond an int: no descriptor
                if fd == redirect.fd:  # bash makes no dup2(N, N), so no EBADF either
                    continue
                if fd is None or fds.get(fd, BAD_DESCRIPTOR) is BAD_DESCRIPTOR:  # dup2's EBADF
                    self._say(as_output(fds[2]), f"{self.prefix()}: {named}: Bad file descriptor")
                    return False
                fds[redirect.fd] = fds[fd]
                continue
            descriptor = self._open_redirection(redirect.op, target, fds)
            if descriptor is None:
                return False
            fds[redirect.fd] = descriptor
            if isinstance(descriptor, (FileInput, FileOutput)):
                opened.append(descriptor)
        return True

    def _open_redirection(self, op: str, target: str,
                          fds: dict[int, Descriptor]) -> Descriptor | None:
        """What ``op target`` opens (``< FILE`` as cat opens FILE: O_RDONLY, each read(2)
        the session's), or the descriptor ``/dev/null``, ``/dev/stdout`` or
        ``/dev/stderr``, ``/dev/stdin`` names; None when the open failed, after bash's
        diagnostic."""
        special: dict[str, Descriptor] = {"/dev/null": NullInput() if op == "<" else NullOutput(),
                                          "/dev/stdin": fds[0], "/dev/stdout": fds[1],
                                          "/dev/stderr": fds[2]}
        if target in special:
            return special[target]
        flags = {"<": os.O_RDONLY, ">>": _APPEND}.get(op, _TRUNCATE)
        try:
            session = self.open(target, flags)
        except FtraceError as error:
            # bash: the open failed, so the command does not run.
            self._say(as_output(fds[2]), f"{self.prefix()}: {target}: {self.reason(error)}")
            return None
        return FileInput(session) if op == "<" else FileOutput(session)

    def run_command(self, command: Command | CompoundCommand | FunctionDef, stdin: Input,
                    stdout: Output, words: list[str] | None = None, *,
                    no_fork: bool = False) -> int:
        """Expand the words (unless ``words`` gives them), apply the redirections left to
        right, run the command (or make its assignments: the status is then the last
        command substitution's, as bash's), release what the redirections opened. A
        compound command runs with its redirections' output as the shell's; a function
        definition defines it. Raises ExpansionError for an expansion bash fails (see
        :meth:`execute`). ``no_fork`` (or the command being :attr:`_oneshot`): a program
        it runs is the shell's process itself, as bash's exec makes it (see :meth:`_run`)."""
        self.line = command.line
        if isinstance(command, FunctionDef):
            return self.execute_intern_function(command)
        if not isinstance(command, Command):
            return self.run_compound(command, stdin, stdout)
        self.substitution_status = None
        words = self.expand_words(command) if words is None else words
        if words[:1] == ["exec"] and "exec" not in self.functions:
            return self.execute_exec(command, words[1:], stdin, stdout)
        with self._redirections(command.redirects, stdin, stdout) as fds:
            if fds is None:
                return 1
            if not words:
                self._assign(command, self.variables.assign)
                return self.substitution_status or 0
            with self.variables.temporary():
                self._assign(command, self._assign_temporary)
                return self._run(words, fds, no_fork or command is self._oneshot)

    def execute_exec(self, command: Command, args: list[str], stdin: Input,
                     stdout: Output) -> int:
        """bash's exec_builtin: with a command, the shell becomes it (runs it as the
        shell's own process, so that a signal that kills it kills the shell, then ends
        with its status; one it cannot find is bash's "not found", 127, which ends it
        too; a failed redirection is exec's failure, 1, and the shell goes on); without,
        the redirections stay the shell's own. Its options, a program the shell has not
        (:data:`_PROGRAMS_REFUSED`), and its redirections inside a compound command or a
        function (bash's would outlive them), are refused: nothing is exec'd, and the
        shell goes on."""
        if args[:1] == ["--"]:
            args = args[1:]
        refusal = None
        if args and args[0].startswith("-") and args[0] != "-":
            refusal = f"option '{args[0][:2]}' is not supported by ftrace-shell"
        elif args and args[0] in _PROGRAMS_REFUSED:
            refusal = (f"{args[0]}: {_PROGRAMS_REFUSED[args[0]]} program is not supported "
                       "by ftrace-shell")
        elif not args and self.compound_level:
            refusal = ("its redirections inside a compound command or a function are not "
                       "supported by ftrace-shell")
        if refusal is not None:
            self._say(self.stderr, f"{self.prefix()}: exec: {refusal}")
            return 2
        if args:
            with self._redirections(command.redirects, stdin, stdout) as fds:
                if fds is None:
                    return 1  # the redirection's failure is exec's: the shell goes on
                # exec looks for a program: not a function, nor a builtin coreutils and
                # procps do not also install as one (/bin/echo, /bin/kill...: exec cd is
                # not found, exec echo runs).
                spec = COMMANDS.get(args[0])
                if spec is None or spec.builtin and args[0] not in _BUILTINS_ALSO_PROGRAMS:
                    self._say(as_output(fds[2]), f"{self.prefix()}: exec: {args[0]}: not found")
                    if self.interactive:  # bash -i goes on (no execfail needed)
                        return 127
                    raise ShellExit(127)
                with self.variables.temporary():
                    self._assign(command, self._assign_temporary)
                    status = self._run_command(args, fds, no_fork=True)
            raise ShellExit(status)
        opened: list[Descriptor] = []
        with self._redirections(command.redirects, stdin, stdout, opened) as fds:
            if fds is None:
                return 1
            self._take_descriptors(fds)
            # What an earlier exec opened and no descriptor is any more: closed, as
            # dup2(2) over its last descriptor closes a file.
            held = [*self._exec_files, *opened]
            self._exec_files = [file for file in held if any(file is d for d in fds.values())]
        for file in held:
            if not any(file is kept for kept in self._exec_files):
                file.close()
        return 0  # ``a=1 exec``: bash keeps no assignment

    def _take_descriptors(self, fds: dict[int, Descriptor]) -> None:
        """Make ``fds`` the shell's descriptors: its stdin, stdout, stderr and those from 3
        up, which the commands it runs inherit."""
        self.stdin, self.stdout, self.stderr = (
            as_input(fds[0]), as_output(fds[1]), as_output(fds[2]))
        self.descriptors = {fd: descriptor for fd, descriptor in fds.items() if fd > 2}

    def run_compound(self, command: CompoundCommand, stdin: Input, stdout: Output) -> int:
        """bash's execute_command_internal for a compound command: its redirections
        made, it runs with their descriptors as the shell's (stdin, stdout, stderr and
        those from 3 up)."""
        with self._redirections(command.redirects, stdin, stdout) as fds:
            if fds is None:
                return 1
            saved = self.stdin, self.stdout, self.stderr, self.descriptors
            self._take_descriptors(fds)
            self.compound_level += 1
            try:
                if isinstance(command, IfCommand):
                    return self.execute_if_command(command)
                if isinstance(command, WhileCommand):
                    return self.execute_while_or_until(command)
                if isinstance(command, ForCommand):
                    return self.execute_for_command(command)
                if isinstance(command, CaseCommand):
                    return self.execute_case_command(command)
                return self.run_list(command.command)
            except ExpansionError as error:
                self._report(error)
                raise
            finally:
                self.compound_level -= 1
                self.stdin, self.stdout, self.stderr, self.descriptors = saved

    def execute_intern_function(self, definition: FunctionDef) -> int:
        """bash's execute_intern_function: the function defined (or defined anew), unless
        its name is quoted or has a ``$`` (check_identifier)."""
        if not definition.identifier:
            self._say(self.stderr, f"{self.prefix()}: `{definition.name}': not a valid identifier")
            return 1
        self.functions[definition.name] = definition
        return 0

    def execute_function(self, function: FunctionDef, args: list[str],
                         fds: dict[int, Descriptor]) -> int:
        """bash's execute_function: the body run with the call's descriptors as the
        shell's, ``args`` as the positional parameters (``$0`` stays), a scope of its own
        for ``local`` (bash's dynamic scoping: what it calls sees its locals), outside
        any loop (``break`` in it breaks none of the caller's); ``return`` ends it. Beyond
        $FUNCNEST calls deep (when set to a number above 0), bash's error and its DISCARD."""
        limit = legal_number(self.variables.get("FUNCNEST") or "")
        limit = _FUNCNEST_MAX if limit is None or not 0 < limit < _FUNCNEST_MAX else limit
        if self.funcnest >= limit:
            raise ExpansionError(f"{function.name}: maximum function nesting level exceeded"
                                 f" ({self.funcnest})")
        saved = (self.positional, self.loop_level, self.stderr, self.descriptors,
                 self.function_names, self.funcnest)
        self.positional, self.loop_level = tuple(args), 0
        self.function_names = (function.name, *(
            self.function_names or (("main",) if self.mode == "script" else ())))
        self.stderr = as_output(fds[2])
        self.descriptors = {fd: descriptor for fd, descriptor in fds.items() if fd > 2}
        self.funcnest += 1
        if sys.getrecursionlimit() < _FUNCNEST_MAX * _FRAMES_PER_CALL:
            sys.setrecursionlimit(_FUNCNEST_MAX * _FRAMES_PER_CALL)
        try:
            with self.variables.function_scope():
                return self.run_compound(function.command, as_input(fds[0]), as_output(fds[1]))
        except FunctionReturn as done:
            return done.status
        except RecursionError:
            # Deeper than _FRAMES_PER_CALL frames a call: given up where the outermost
            # call was made, which has the stack to report it.
            if saved[-1]:
                raise
            raise ExpansionError(f"{function.name}: maximum function nesting level exceeded"
                                 " (the shell's stack)") from None
        finally:
            (self.positional, self.loop_level, self.stderr, self.descriptors,
             self.function_names, self.funcnest) = saved

    def execute_if_command(self, command: IfCommand) -> int:
        """bash's execute_if_command: 0 when the test fails and there is no else."""
        if self.run_list(command.test) == 0:
            return self.run_list(command.true_case)
        return 0 if command.false_case is None else self.run_list(command.false_case)

    def execute_while_or_until(self, command: WhileCommand) -> int:
        """bash's execute_while_or_until: the body's last status (0 if it never ran);
        ``break`` and ``continue`` as its breaking and continuing counters say."""
        body_status = 0
        self.loop_level += 1
        try:
            while True:
                test_status = self.run_list(command.test)
                if (test_status == 0) == command.until:
                    self.breaking = max(self.breaking - 1, 0)
                    self.continuing = max(self.continuing - 1, 0)
                    break
                body_status = self.run_list(command.action)
                if self._loop_ends():
                    break
        finally:
            self.loop_level -= 1
        return body_status

    def execute_for_command(self, command: ForCommand) -> int:
        """bash's execute_for_command: NAME takes each word's fields in turn (``for NAME;
        do``: each positional parameter); the body's last status."""
        if not is_name(command.name):
            self._say(self.stderr, f"{self.prefix()}: `{command.name}': not a valid identifier")
            return 1
        words = list(self.positional) if command.map_list is None else [
            field for word in command.map_list for field in self.fields(word)]
        status = 0
        self.loop_level += 1
        try:
            for word in words:
                try:
                    self.variables.assign(command.name, word)
                except ReadonlyVariable as error:  # bash's for command ends, status 1
                    self._report(error)
                    return 1
                status = self.run_list(command.action)
                if self._loop_ends():
                    break
        finally:
            self.loop_level -= 1
        return status

    def execute_case_command(self, command: CaseCommand) -> int:
        """bash's execute_case_command: the word expanded (not split), then each clause's
        patterns in turn, each expanded when it is tried; the first that matches runs its
        clause's list, and with ``;&`` the next clause's, untested, and so on; after a
        ``;;&`` the clauses after it are tried too. The status is the last list's, 0 when
        none ran (or it was empty)."""
        word = encode(expand_value(command.word, self))
        status = 0
        clauses = iter(enumerate(command.clauses))
        for index, clause in clauses:
            if not any(strmatch(expand_pattern(pattern, self), word)
                       for pattern in clause.patterns):
                continue
            while True:
                status = self.run_list(clause.action) if clause.action else 0
                if clause.terminator != ";&" or index + 1 == len(command.clauses):
                    break
                index, clause = next(clauses)
            if clause.terminator != ";;&":
                break
        return status

    def _loop_ends(self) -> bool:
        """After a loop's body, as bash's: a ``break`` ends this loop (and its count goes
        down by one); a ``continue`` of more than this loop ends it too."""
        if self.breaking:
            self.breaking -= 1
            return True
        if self.continuing:
            self.continuing -= 1
            return self.continuing > 0
        return False

    def _assign(self, command: Command, bind: Callable[[str, str], None]) -> None:
        """The command's assignments, each expanded after the one before is made (bash:
        ``a=1 b=$a`` sets b to 1)."""
        for name, value in command.assignments:
            bind(name, expand_value(value, self))

    def _assign_temporary(self, name: str, value: str) -> None:
        """A prefix assignment; one to a readonly variable is bash's complaint, and the
        command runs without it; one to a noassign variable (FUNCNAME) is dropped."""
        dynamic = self.variables.dynamic(name)
        if dynamic is not None:
            # bash's assign_in_env looks the variable up (find_variable): its value is
            # computed (RANDOM's generator moves on), though the command sees a plain one.
            dynamic.value(self)
            if dynamic.noassign:
                return
        try:
            self.variables.assign_temporary(name, value)
        except ReadonlyVariable as error:
            self._report(error)

    def _run(self, words: list[str], fds: dict[int, Descriptor], no_fork: bool = False) -> int:
        """The command ``words`` names: a function (bash looks them up before its
        builtins), else a command the shell knows (:meth:`_run_command`)."""
        function = self.functions.get(words[0])
        if function is not None:
            return self.execute_function(function, words[1:], fds)
        return self._run_command(words, fds, no_fork)

    def _run_command(self, words: list[str], fds: dict[int, Descriptor],
                     no_fork: bool = False) -> int:
        """The builtin or program ``words`` names, no function looked up (what ``exec``
        runs). ``no_fork``: a program runs as the shell's process itself (bash's
        CMD_NO_FORK: exec'd), so that a signal that kills it (SIGPIPE) kills the shell,
        KilledBySignal out of here."""
        name = words[0]
        known = COMMANDS.get(name)
        stderr = as_output(fds[2])
        if known is None:
            self._say(stderr, f"{self.prefix()}: {name}: command not found")
            return 127
        stdout = as_output(fds[1])
        if known.builtin:
            return self._invoke(Invocation(self, name, words[1:], as_input(fds[0]), stdout,
                                           stderr), f"{self.prefix()}: {name}")
        # bash forks a process for it: what kills it (SIGPIPE at a write into a pipe that
        # lost its reader) ends that process, whose status (128 + the signal) the shell
        # goes on with.
        process = self.stage.spawn()
        shell = copy.copy(self)
        shell.stage = process
        ctx = Invocation(shell, name, words[1:], as_input(fds[0]),
                         StageOutput(stdout, process), StageOutput(stderr, process))
        try:
            return self._invoke(ctx, name)
        except KilledBySignal as death:
            if no_fork:
                raise
            return death.status
        except KeyboardInterrupt:
            # Ctrl-C killed the program; exec'd at the prompt, it was the shell, which
            # dies of SIGINT where its prompt would take Ctrl-C (bash -i). Anywhere else
            # (a substitution's exec) Ctrl-C goes on up, as the calling shell has it too.
            if no_fork and self.interactive:
                raise KilledBySignal(signal.SIGINT) from None
            raise
        finally:
            self.stage.reap(process)

    def _invoke(self, ctx: Invocation, who: str) -> int:
        """Run the command ``ctx`` names; its failures that it does not report itself
        reported as ``who`` (bash's prefix for a builtin, the program's name else)."""
        known = COMMANDS[ctx.name]
        try:
            return known.run(ctx)
        except WriteError as error:
            why = os.strerror(error.errno) if error.cause is None else self.reason(error.cause)
            ctx.err(f"{who}: write error: {why}")
            return _WRITE_ERROR_STATUS.get(ctx.name, 1)
        except FtraceError as error:
            # A failure the command has no message of its own for.
            ctx.err(f"{who}: {self.reason(error)}")
            return 1


# --- the program -------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftrace-shell",
        description="A small bash over ftraced: cd, ls, cat, echo > FILE, modprobe, rmmod, "
        "lsmod, dmesg, grep... Type `help` for the commands.",
    )
    parser.add_argument("--address", type=address_argument, help=ADDRESS_HELP)
    parser.add_argument("--spawn", action="store_true",
                        help="start a private daemon (with the daemon options) for this run")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="with --spawn: show the daemon's log on stderr")
    parser.add_argument("--comm", default="bash", help="the comm the kernel sees (default bash)")
    parser.add_argument("--name", default="bash",
                        help="the name diagnostics start with (default bash)")
    add_connect_timeout(parser)
    parser.add_argument("-c", dest="command", metavar="COMMAND", help="run COMMAND and exit")
    parser.add_argument("-s", dest="read_stdin", action="store_true",
                        help="read the commands from standard input, the arguments after the "
                        "options being $1... (bash -s)")
    parser.add_argument("-V", "--echo-input", action="store_true",
                        help="print input lines as they are read (bash -v)")
    # Read by split_arguments(), as bash reads them: listed here for --help.
    parser.add_argument("script", nargs="?", metavar="SCRIPT",
                        help="script file to run (default: standard input; - or -- before "
                        "it ends the options); after -c COMMAND: its $0, as bash's")
    parser.add_argument("args", nargs="*", metavar="ARG",
                        help="the positional parameters $1... (after SCRIPT, or -c COMMAND "
                        "NAME, an option too, as bash takes them)")
    # Passed through to ftraced, which checks them (its usage error is shown if it refuses).
    daemon = parser.add_argument_group("daemon options (with --spawn; see ftraced --help)")
    daemon.add_argument("--variant", metavar="buggy|fixed")
    daemon.add_argument("--failpoint", action="append", metavar="NAME=SPEC")
    daemon.add_argument("--core-functions", type=int, metavar="N")
    daemon.add_argument("--module-placement", metavar="first-fit|random")
    daemon.add_argument("--cpus", type=int, metavar="N")
    daemon.add_argument("--race", action="append", metavar="NAME")
    daemon.add_argument("--seed", type=int, metavar="N")
    daemon.add_argument("--switch-interval", type=float, metavar="S")
    return parser


_DAEMON_OPTIONS = ("variant", "failpoint", "core_functions", "module_placement", "cpus",
                   "race", "seed", "switch_interval")


#: How much of a script bash reads to tell a binary file (open_shell_script's sample[80]).
_BINARY_SAMPLE = 80


def check_binary_file(sample: bytes) -> bool:
    """bash's check_binary_file (general.c): an ELF header, or a NUL in the first line of
    ``sample`` (in the first two when it starts with ``#!``)."""
    if sample.startswith(b"\x7fELF"):
        return True
    lines = 2 if sample.startswith(b"#!") else 1
    return b"\0" in b"".join(sample.split(b"\n", lines)[:lines])


def complain(message: str) -> None:
    """A diagnostic of the program's own on its standard error, unless that is closed
    (print's file=None would be stdout)."""
    if sys.stderr is not None:
        print(message, file=sys.stderr)


def _run_input(shell: Shell, args: argparse.Namespace) -> int:
    try:
        if shell.mode == "command":
            shell.feed_command(args.command)
        elif shell.mode == "script":
            try:
                script = open(args.script, "rb")
            except IsADirectoryError:
                # bash names the script twice, as its $0 has become the script already.
                complain(f"{args.script}: {args.script}: Is a directory")
                return 126
            except OSError as error:
                complain(f"{shell.name}: {args.script}: {error.strerror}")
                return 127 if error.errno == errno.ENOENT else 126
            with script:
                # bash looks only where it can seek back (not in a pipe, nor a tty), then
                # rewinds (open_shell_script()).
                if script.seekable():
                    if check_binary_file(script.read(_BINARY_SAMPLE)):
                        complain(f"{args.script}: {args.script}: cannot execute binary file")
                        return 126  # EX_BINARY_FILE
                    script.seek(0)
                # Line by line as it comes, as bash reads a script: a fifo's or a
                # process substitution's commands run before its writer is done.
                shell.feed_all(line.decode("utf-8", "surrogateescape") for line in script)
        elif shell.mode == "interactive":
            from clients.shell_interactive import run_interactive

            run_interactive(shell)
        else:
            shell.feed_all(line.decode("utf-8", "surrogateescape")
                           for line in shell.standard_input.lines())
    except InputError as error:
        # bash's, whatever ran before: the unfinished line is dropped, the status is 2.
        complain(f"{shell.name}: error reading input file: {os.strerror(error.errno)}")
        return 2
    except ShellExit as done:
        return done.status
    except KeyboardInterrupt:
        # After its commands' cleanup, the shell dies of SIGINT as bash does (a shell
        # waiting for it, in a loop, sees the signal and stops too); an interactive
        # shell's prompt took Ctrl-C before it got here.
        raise KilledBySignal(signal.SIGINT) from None
    return shell.status


def _is_dash_c(parser: argparse.ArgumentParser, arg: str) -> bool:
    """``arg`` is ``-c``, or short options without values clustered before its ``c``
    (``-Vc``, as bash's ``-vc``)."""
    actions = parser._option_string_actions
    return (arg.startswith("-") and not arg.startswith("--") and arg.endswith("c") and all(
                f"-{letter}" in actions and actions[f"-{letter}"].nargs == 0
                for letter in arg[1:-1]))


def split_arguments(parser: argparse.ArgumentParser,
                    argv: list[str]) -> tuple[list[str], list[str]]:
    """The shell's own options, and what follows them, as bash's: its operands start at
    the first argument that is no option (the script's name), after ``-`` or ``--``
    (which end the options), or after ``-c COMMAND``, whose first is then ``$0``, even an
    option or ``--`` (``ftrace-shell -c 'echo $0 $1' -x y`` prints ``-x y``)."""
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in ("-", "--"):
            return argv[:index], argv[index + 1:]
        if not arg.startswith("-"):
            return argv[:index], argv[index:]
        if _is_dash_c(parser, arg):
            return argv[:index + 2], argv[index + 2:]
        name = arg.partition("=")[0]
        names = [option for option in parser._option_string_actions
                 if option == name or name.startswith("--") and option.startswith(name)]
        action = parser._option_string_actions[names[0]] if len(names) == 1 else None
        # An option with its value in the next argument skips that too; an unknown or
        # ambiguous one is argparse's to report.
        takes = action is not None and action.nargs != 0 and "=" not in arg
        index += 2 if takes else 1
    return argv, []


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    options, operands = split_arguments(parser, sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(options)
    if args.read_stdin and args.command is None:
        args.script, args.args = None, operands
    else:
        args.script, args.args = (operands[0], operands[1:]) if operands else (None, [])
    options = {key: getattr(args, key) for key in _DAEMON_OPTIONS}
    if not args.spawn and any(value is not None for value in options.values()):
        parser.error("daemon options need --spawn")
    if args.spawn and args.address:
        parser.error("--spawn and --address exclude each other")
    if not args.spawn and not args.address:
        check_address_env(parser)
    # The other clients' daemon arguments, from the shell's own spelling of them (its
    # daemon options stand apart, before a script's name, where theirs follow --spawn).
    args.spawn = daemon_argv(options) if args.spawn else None
    if args.spawn is not None:
        check_daemon_options(parser, args.spawn)
    args.identity = identity_argument(parser, args.comm)
    if args.command is not None:
        mode = "command"
    elif args.script is not None:
        mode = "script"
    else:
        # Python leaves sys.stdin None when descriptor 0 is closed.
        mode = "interactive" if sys.stdin is not None and sys.stdin.isatty() else "stdin"
    standard_input = StandardInput()  # before the daemon's socket can take a closed 0
    for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
        if stream is None:  # closed when Python started
            hold_closed(fd)
    try:
        with daemon_client(args) as client:
            # bash -c COMMAND NAME: NAME is $0 and what diagnostics start with.
            name = args.script if mode == "command" and args.script is not None else args.name
            shell = Shell(client, name=name, mode=mode, script=args.script,
                          standard_input=standard_input, echo_input=args.echo_input,
                          invoked_as=args.name, environ=os.environ, positional=args.args)
            return _run_input(shell, args)
    except ConnectError as error:
        complain(f"ftrace-shell: {error}")
        return EXIT_NO_DAEMON
    except KilledBySignal as death:
        # After the daemon's connection (and a --spawn daemon) is closed.
        return die_of(death.signo)
    finally:
        try:
            if sys.stdout is not None:
                sys.stdout.flush()
        except BrokenPipeError:
            # Nobody reads our output any more; keep the interpreter's exit quiet.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def die_of(signo: int) -> int:
    """End the process by ``signo``'s default action, as bash dies of a signal, so that
    whoever waits for it sees the signal (a calling shell's loop stops at Ctrl-C; a
    pipeline's writer shows 141 in PIPESTATUS): its handler reset (Python ignores
    SIGPIPE and catches SIGINT), the signal sent to itself. The status 128 + ``signo`` in
    case it returns (a blocked signal)."""
    signal.signal(signo, signal.SIG_DFL)
    os.kill(os.getpid(), signo)
    return 128 + signo


if __name__ == "__main__":
    sys.exit(main())
