"""Operations of the history as ``ftrace-shell`` commands, for sequential reproducers.

A loader's and a shell's operations are shell commands already (``modprobe uinput``,
``echo uinput_release >> set_ftrace_filter``). A tracer client's operations are not: its
ftrace_ops has hashes of its own, which no file edits. They map onto the function
tracer, whose ops uses global_ops' hashes, when that is equivalent: a session's
registration becomes "set the global filter and notrace to the session's patterns, then
``echo function > current_tracer``", a filter change the same change of
``set_ftrace_filter``, the unregistration ``echo nop > current_tracer``. That holds only
while nothing else uses global_ops, so a mapped session is replayed without the shells'
operations and without other sessions (:mod:`clients.stress.minimize` decides).
"""

from __future__ import annotations

import fnmatch
import shlex

from clients.stress.history import Op

#: Where every reproducer starts (the report's reproducer does the same).
TRACING_DIR = "/sys/kernel/debug/tracing"
CD_TRACING = f"cd {TRACING_DIR}"
#: Operations that read or execute but change no record, hash or module.
STATELESS_OPS = frozenset({"invoke"})


def echo(text: str, file: str, append: bool = False) -> str:
    """``echo TEXT > FILE`` as bash takes it (an empty TEXT writes just a newline)."""
    words = ["echo", *([text] if text else [])]
    return f"{shlex.join(words)} {'>>' if append else '>'} {file}"


def op_commands(op: Op) -> list[str] | None:
    """The commands of a loader's, shell's or the teardown's operation; None for a tracer
    client's (see :func:`session_commands`) and for stateless ones."""
    if op.op in STATELESS_OPS or op.kind == "tracer":
        return None
    if op.op in ("modprobe", "rmmod"):
        return [f"{op.op} {op.args['module']}"]
    if op.op == "write":
        return [echo(op.args["text"], op.args["file"], op.args["append"])]
    raise ValueError(f"no shell command for operation {op.op!r}")


def changes_nothing(op: Op) -> bool:
    """A module operation the kernel refused, or a modprobe of a loaded module: no state
    changed, so it is no candidate. (A refused write still truncated the file at open.)"""
    if op.op not in ("modprobe", "rmmod") or not op.completed:
        return False
    return not op.ok or bool(op.value and op.value.get("already_loaded"))


def session_commands(op: Op) -> list[str]:
    """A tracer client's successful operation on the function tracer (module docstring)."""
    if op.op == "register":
        commands: list[str] = []
        for file, patterns in (("set_ftrace_filter", op.args["filter"]),
                               ("set_ftrace_notrace", op.args["notrace"])):
            commands += [echo(p, file, append=i > 0) for i, p in enumerate(patterns)] or [
                echo("", file)]
        return commands + [echo("function", "current_tracer")]
    if op.op == "set_filter":
        file = "set_ftrace_notrace" if op.args["notrace"] else "set_ftrace_filter"
        return [echo(op.args["text"], file, append=not op.args["reset"])]
    if op.op == "unregister":
        return [echo("nop", "current_tracer")]
    raise ValueError(f"no shell command for tracer operation {op.op!r}")


def pattern_may_select(pattern: str, module: str, functions: list[str]) -> bool:
    """Whether a filter pattern can name one of ``module``'s functions (``:mod:``,
    ``!`` and the globs of ftrace's regex files, approximated by fnmatch)."""
    text = pattern.lstrip("!")
    if ":mod:" in text:
        glob, _, mod = text.partition(":mod:")
        return mod == module
    return any(fnmatch.fnmatchcase(name, text) for name in functions)


def command_touches(command: str, module: str, functions: list[str]) -> bool:
    """Whether a reproducer command can change ``module``'s records or a hash entry for
    them: its modprobe/rmmod, a filter write whose pattern may name its functions, any
    switch of the tracer (which walks every record)."""
    words = shlex.split(command)
    if words[0] in ("modprobe", "rmmod"):
        return words[-1] == module
    file = words[-1]
    if file == "current_tracer":
        return True
    return any(pattern_may_select(word, module, functions) for word in words[1:-2])


def collapse_tracer_switches(commands: list[str]) -> list[int]:
    """Indices of the commands to keep: all but a switch of current_tracer to the tracer
    already set (the kernel does nothing then)."""
    keep, current = [], "nop"
    for i, command in enumerate(commands):
        words = shlex.split(command)
        if words[-1] == "current_tracer" and words[-2] == ">" and len(words) == 4:
            if words[1] == current:
                continue
            current = words[1]
        keep.append(i)
    return keep
