"""ftrace-shell at a terminal: a bash-like prompt, readline line editing, history in
``~/.ftrace_shell_history``, and Tab completion of command names and daemon paths."""

from __future__ import annotations

import os
import posixpath
import readline
import sys
from typing import TYPE_CHECKING

from clients.errors import FtraceError
from clients.shell_runtime import COMMANDS

if TYPE_CHECKING:
    from clients.shell import Shell

__all__ = ["run_interactive", "HISTORY_FILE"]

HISTORY_FILE = os.path.join(os.path.expanduser("~"), ".ftrace_shell_history")
HISTORY_LENGTH = 1000
#: Word breaks for completion: not "/", "-", "." or ":", which occur inside paths.
_COMPLETER_DELIMS = " \t\n;|&<>"


def _prompt(shell: "Shell") -> str:
    return "> " if shell.pending else f"root@ftrace-sim:{shell.cwd}# "


class _Completer:
    """Tab completion: the first word from the commands, later words from the daemon's
    directory listings (a directory completes with a trailing "/")."""

    def __init__(self, shell: "Shell") -> None:
        self._shell = shell
        self._matches: list[str] = []

    def __call__(self, text: str, state: int) -> str | None:
        if state == 0:
            before = readline.get_line_buffer()[: readline.get_begidx()]
            self._matches = self._paths(text) if before.strip() else sorted(
                name + " " for name in COMMANDS if name.startswith(text)
            )
        return self._matches[state] if state < len(self._matches) else None

    def _paths(self, text: str) -> list[str]:
        directory, partial = posixpath.split(text)
        try:
            entries = self._shell.client.list_dir(self._shell.resolve(directory or "."))
        except FtraceError:
            return []
        return [
            posixpath.join(directory, entry.name) + ("/" if entry.is_dir else " ")
            for entry in entries
            if entry.name.startswith(partial)
        ]


def run_interactive(shell: "Shell") -> None:
    """Read and run commands until ``exit`` or end of input (Ctrl-D)."""
    try:
        readline.read_history_file(HISTORY_FILE)
    except OSError:
        pass  # no history yet
    readline.set_history_length(HISTORY_LENGTH)
    readline.set_completer_delims(_COMPLETER_DELIMS)
    readline.set_completer(_Completer(shell))
    readline.parse_and_bind("tab: complete")
    try:
        while True:
            try:
                line = input(_prompt(shell))
            except EOFError:
                print("exit", file=sys.stderr)
                shell.finish()
                return
            except KeyboardInterrupt:
                # bash: Ctrl-C at the prompt drops the line and sets $? to 130.
                print()
                shell.discard()
                shell.status = 130
                continue
            try:
                shell.feed(line)
            except KeyboardInterrupt:
                print()
                shell.status = 130
    finally:
        try:
            readline.write_history_file(HISTORY_FILE)
        except OSError:
            pass  # a read-only home is no reason to fail
