"""Selecting records by pattern into a hash, and the kernel's filter API (3.6.5).

``match_records`` / ``ftrace_process_regex`` / the commands and ``:mod:`` (spec
§3.3.2–§3.3.5), and ``ftrace_set_filter`` / ``ftrace_set_notrace``
(``ftrace_set_regex``), which a kernel module calls for an ops of its own.
"""

from __future__ import annotations

import errno

import numpy as np

from kernel_daemon.errno import KernelError, quoted
from kernel_daemon.ftrace.core import Ftrace, FtraceCommand, ftrace_disabled_error
from kernel_daemon.ftrace.hash import FtraceHash
from kernel_daemon.ftrace.ops import FTRACE_OPS_FL_ENABLED, FtraceOps
from kernel_daemon.ftrace.rec_update import ftrace_hash_move
from kernel_daemon.ftrace.records import FtracePageGroup
from kernel_daemon.ftrace.regex import MatchType, Regex, filter_parse_regex, ftrace_match
from kernel_daemon.ftrace.update import FTRACE_UPDATE_CALLS, ftrace_run_update_code
from kernel_daemon.strings import c_string
from kernel_daemon.unwind import kernel_function

NO_RECORDS = np.empty(0, dtype=np.intp)
# Bytes per character of a NumPy unicode (``<U``) array, whose names are at most its
# itemsize over this long.
UCS4 = 4


def ftrace_match_record(pg: FtracePageGroup, regex: Regex, mod: str | None) -> np.ndarray:
    """``ftrace_match_record()`` over one page group: the indices of the records that
    match.  An exact name and a ``foo*`` prefix are looked up in the group's name index
    (what a walk doing ``kallsyms_lookup`` and ``strcmp``/``strncmp`` finds); the other
    glob forms go through ``ftrace_match``."""
    if mod is not None:
        if pg.mod is None or pg.module_name != mod:
            return NO_RECORDS
        if not regex.search:  # a blank search matches all of the module's functions
            return np.arange(len(pg.ips))
    if len(regex.search) > pg.names.dtype.itemsize // UCS4:
        # Longer than the group's longest name: no name holds it. Answered here, as
        # NumPy would widen every name to the search's length to compare them.
        return NO_RECORDS
    if regex.type is MatchType.MATCH_FULL:
        return pg.records_named(regex.search)
    if regex.type is MatchType.MATCH_FRONT_ONLY and regex.search:
        return pg.records_prefixed(regex.search)
    return np.flatnonzero(ftrace_match(pg.names, regex))


def enter_record(hash: FtraceHash, ips: np.ndarray, negate: bool) -> None:
    """``enter_record()`` for every matched record."""
    if negate:
        hash.remove(ips.tolist())
    else:
        hash.add(ips.tolist())


@kernel_function
def match_records(ft: Ftrace, hash: FtraceHash, buff: str, mod: str | None, negate: bool) -> bool:
    """``match_records()``: add (or with ``!`` remove) every record whose name matches.

    Returns whether any record matched.  A ``mod`` restricts the walk to that
    module's records, where an empty pattern matches all of them.
    """
    # filter_parse_regex() resets `not` from the pattern; it runs only when len != 0.
    regex = filter_parse_regex(buff) if buff else Regex("", MatchType.MATCH_FULL, negate)
    negate = regex.negate
    found = False
    with ft.ftrace_lock:
        if ft.ftrace_disabled:
            return False
        for pg in ft.pages.groups:
            ips = pg.ips[ftrace_match_record(pg, regex, mod)]
            if len(ips):
                enter_record(hash, ips, negate)
                found = True
    return found


def ftrace_match_records(ft: Ftrace, hash: FtraceHash, buff: str) -> bool:
    """``ftrace_match_records()``: ``match_records()`` over every record, no module."""
    return match_records(ft, hash, buff, None, False)


def ftrace_match_module_records(ft: Ftrace, hash: FtraceHash, buff: str, mod: str) -> bool:
    """``ftrace_match_module_records()``: ``match_records()`` over ``mod``'s records;
    ``*`` is all of them, ``!`` / ``!*`` removes all of them.  3.6 writes the NUL into
    the caller's buffer; here the string is rebound."""
    negate = False
    if buff == "*":  # blank or '*' mean the same
        buff = ""
    if buff in ("!", "!*"):  # "don't filter this module"
        buff, negate = "", True
    return match_records(ft, hash, buff, mod, negate)


def ftrace_mod_callback(ft: Ftrace, hash: FtraceHash, func: str, cmd: str, param: str | None,
                        enable: bool) -> None:
    """The ``mod`` command: ``<func-glob>:mod:<module>``; anything after a further
    ``:`` is ignored."""
    mod = "" if param is None else param.split(":", 1)[0]
    if not mod:
        # The word as written: strsep() split it at its first two ':' only.
        word = ":".join((func, cmd) if param is None else (func, cmd, param))
        raise KernelError(errno.EINVAL, f"{quoted(word)} names no module")
    if not ftrace_match_module_records(ft, hash, func, mod):
        raise KernelError(errno.EINVAL,
                          f"{quoted(func)} selects no function of module {quoted(mod)}")


def register_ftrace_command(ft: Ftrace, name: str, func: FtraceCommand) -> None:
    """``register_ftrace_command()``: EBUSY for a name already taken."""
    if name in ft.ftrace_commands:
        raise KernelError(errno.EBUSY)
    ft.ftrace_commands[name] = func


def ftrace_mod_cmd_init(ft: Ftrace) -> None:
    """``ftrace_mod_cmd_init()``, an initcall: the ``mod`` command."""
    register_ftrace_command(ft, "mod", ftrace_mod_callback)


@kernel_function
def ftrace_process_regex(ft: Ftrace, hash: FtraceHash, buff: str, enable: bool) -> None:
    """``ftrace_process_regex()``: one token; EINVAL when it matches nothing.

    ``enable`` is 1 from ``set_ftrace_filter`` and 0 from ``set_ftrace_notrace``; a
    ``<func>:<command>[:<param>]`` token is the command's to judge, and an unknown
    command is EINVAL. The kernel's EINVAL is bare; the model's message names the token,
    for the caller (ErrnoDetail.message), as ftrace_set_regex()'s does.

    ``buff`` is the token as written, NUL bytes included (``trace_get_user`` keeps
    them).  ``strsep()`` looks for the ``:`` in the C string only, and the command, its
    function and its parameter are C strings.
    """
    word = c_string(buff)
    func, sep, rest = word.partition(":")
    if not sep:
        # No ':' before a NUL: the token goes whole to the matcher, with its full
        # length (parser->idx), which filter_parse_regex() scans for a '*'.
        if not ftrace_match_records(ft, hash, buff):
            raise KernelError(errno.EINVAL, f"{quoted(buff)} selects no function")
        return
    command, sep, param = rest.partition(":")
    callback = ft.ftrace_commands.get(command)
    if callback is None:
        raise KernelError(errno.EINVAL, f"{quoted(word)}: no command {quoted(command)}")
    try:
        callback(ft, hash, func, command, param if sep else None, enable)
    except KernelError as error:
        # A command's bare errno (traceon refused by set_ftrace_notrace, a count
        # kstrtoul rejects) still says which word failed.
        raise error.with_context(message=quoted(word))


def ftrace_filter_reset(ft: Ftrace, hash: FtraceHash) -> None:
    """``ftrace_filter_reset()``: empty a private copy of a hash, under ``ftrace_lock``
    (taken inside ``ftrace_regex_lock`` by both callers, ftrace_regex_open() and
    ftrace_set_regex(): the order every path takes the two in)."""
    with ft.ftrace_lock:
        hash.clear()


def install_hash(ft: Ftrace, ops: FtraceOps, enable: bool, hash: FtraceHash) -> None:
    """The common tail of ``ftrace_set_regex`` and ``ftrace_regex_release``: move the
    edited copy in place and patch if the ops is live; ftrace_lock held."""
    ftrace_hash_move(ft, ops, enable, hash)
    if ops.flags & FTRACE_OPS_FL_ENABLED and ft.ftrace_enabled:
        ftrace_run_update_code(ft, FTRACE_UPDATE_CALLS)


@kernel_function
def ftrace_set_regex(ft: Ftrace, ops: FtraceOps, buf: str | None, reset: bool, enable: bool) -> None:
    """``ftrace_set_regex()``: edit a copy of the ops' hash and install it.

    The copy is taken before ``ftrace_regex_lock``, with no lock, as in 3.6: of two calls
    on one ops at once, the one that installs last may install a copy taken before the
    other installed, and that one's change is lost.  ``buf`` None is the C's NULL (no
    pattern); ``""`` is a pattern of length 0, which no name matches: EINVAL.  (3.6 first
    sends a GLOBAL ops to ``global_ops``; no caller here passes one.)
    """
    if ft.ftrace_disabled:
        raise ftrace_disabled_error()
    hash = (ops.filter_hash if enable else ops.notrace_hash).copy()
    with ft.ftrace_regex_lock:
        if reset:
            ftrace_filter_reset(ft, hash)
        # 3.6 matches the whole buffer as one pattern, with no command parsing.
        if buf is not None and not ftrace_match_records(ft, hash, buf):
            raise KernelError(errno.EINVAL, f"{quoted(buf)} selects no function")
        with ft.ftrace_lock:
            install_hash(ft, ops, enable, hash)


def ftrace_set_filter(ft: Ftrace, ops: FtraceOps, buf: str | None, reset: bool) -> None:
    """``ftrace_set_filter(ops, buf, len, reset)``."""
    ftrace_set_regex(ft, ops, buf, reset, True)


def ftrace_set_notrace(ft: Ftrace, ops: FtraceOps, buf: str | None, reset: bool) -> None:
    """``ftrace_set_notrace(ops, buf, len, reset)``."""
    ftrace_set_regex(ft, ops, buf, reset, False)
