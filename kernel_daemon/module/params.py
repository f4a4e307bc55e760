"""Module parameters: 3.6's ``kernel/params.c`` as ``load_module()`` uses it.

``load_module()`` copies ``init_module(2)``'s ``uargs`` into ``mod->args`` and, once the
module is on the list, calls ``parse_args(mod->name, mod->args, mod->kp, mod->num_kp,
-32768, 32767, &ddebug_dyndbg_module_param_cb)``: words apart by spaces, each ``name``
or ``name=value``, ``"`` around a value with spaces (``next_arg()``); each name looked up
in the module's ``__param`` table, ``-`` and ``_`` alike (``parse_one()``), and its
``kernel_param_ops->set`` run; a name not there goes to the callback, which takes
``dyndbg`` and refuses the rest (ENOENT).  The first failure ends the parse: one
``pr_err`` line, and its errno fails the load.

The model keeps no values: its modules have no code that reads them, and it has no
``/sys/module/NAME/parameters`` to show them (``mod_sysfs_setup()``), so the setters only
check a value as 3.6's do.  Only the ``ops`` the catalog's modules declare are modelled.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kernel_daemon.errno import KernelError
from kernel_daemon.printk import KERN_ERR
from kernel_daemon.strings import KERNEL_SPACES, c_string, kstrtol, kstrtoul, skip_spaces

#: The range of ``int`` and ``unsigned int``: ``(type)l != l`` outside it.
_TYPE_RANGES = {"int": (-(1 << 31), (1 << 31) - 1), "uint": (0, (1 << 32) - 1)}

#: ``parse_args()``'s ``unknown``: (param, val or None, the module's name) -> None, or
#: KernelError.
UnknownParam = Callable[[bytes, bytes | None, str], None]


@dataclass(frozen=True)
class KernelParam:
    """``struct kernel_param``, the parts the model uses: its ``name`` and the ``type`` its
    ``ops`` stand for (:data:`PARAM_OPS`); ``maxlen`` is a ``module_param_string()``'s
    buffer size, its NUL included (``struct kparam_string``)."""

    name: str
    type: str
    maxlen: int = 0


def _dash2underscore(name: bytes) -> bytes:
    return name.replace(b"-", b"_")


def parameq(a: bytes, b: bytes) -> bool:
    """``parameq()``: the same name, ``-`` and ``_`` taken as one."""
    return _dash2underscore(a) == _dash2underscore(b)


def _param_set_number(val: bytes, kp: KernelParam) -> None:
    """``STANDARD_PARAM_DEF(int, ...)`` and ``(uint, ...)``'s ``param_set_##name``:
    ``strict_strtol``/``strict_strtoul`` in base 0 (``0x`` hex, ``0`` octal), their
    error (EINVAL, ERANGE beyond ``long``), then EINVAL for a value the type cannot hold."""
    value = kstrtol(val, 0) if kp.type == "int" else kstrtoul(val, 0)
    low, high = _TYPE_RANGES[kp.type]
    if not low <= value <= high:
        raise KernelError(errno.EINVAL)


def param_set_int(val: bytes, kp: KernelParam, printk: Callable[..., None]) -> None:
    """``param_set_int()``."""
    _param_set_number(val, kp)


def param_set_uint(val: bytes, kp: KernelParam, printk: Callable[..., None]) -> None:
    """``param_set_uint()``."""
    _param_set_number(val, kp)


def param_set_copystring(val: bytes, kp: KernelParam, printk: Callable[..., None]) -> None:
    """``param_set_copystring()``: ENOSPC, said, for a string its buffer cannot hold."""
    if len(val) + 1 > kp.maxlen:
        printk(f"{kp.name}: string doesn't fit in {kp.maxlen - 1} chars.", level=KERN_ERR)
        raise KernelError(errno.ENOSPC)


#: The ``ops->set`` of ``module_param(name, type, perm)``'s types, and of
#: ``module_param_string()``'s (``param_ops_string``).
PARAM_OPS: dict[str, Callable[[bytes, KernelParam, Callable[..., None]], None]] = {
    "int": param_set_int, "uint": param_set_uint, "string": param_set_copystring}


def parse_one(param: bytes, val: bytes | None, doing: str, params: Sequence[KernelParam],
              unknown: UnknownParam, printk: Callable[..., None]) -> None:
    """``parse_one()``: run the setter of ``params``' entry named ``param``, or ``unknown``.
    A parameter given no value (no ``=``) is EINVAL, for every ``ops`` the model has (only
    ``bool``'s and ``bint``'s take none)."""
    kp = next((kp for kp in params if parameq(param, kp.name.encode())), None)
    if kp is None:
        unknown(param, val, doing)
        return
    if val is None:
        raise KernelError(errno.EINVAL)
    PARAM_OPS[kp.type](val, kp, printk)


def next_arg(args: bytes, start: int) -> tuple[bytes, bytes | None, int]:
    """``next_arg()`` on the word at ``args[start:]``: (param, val or None when it has no
    ``=``, where the next word starts).

    A port of the kernel's, quirks kept: a ``"`` opening the word quotes it up to the
    next ``"``; the quotes come off the value only (``"a=b c"`` gives ``a``, ``b c``;
    ``"flag"`` gives ``flag"``), and an ``=`` in first place is part of the name.
    """
    buf = bytearray(args[start:]) + b"\0"  # the string, and the NUL that ends it
    pos = 0
    in_quote = quoted = buf[0] == ord('"')
    if quoted:
        pos = 1
    i = equals = 0
    while buf[pos + i]:
        if buf[pos + i] in KERNEL_SPACES and not in_quote:
            break
        if equals == 0 and buf[pos + i] == ord("="):
            equals = i
        if buf[pos + i] == ord('"'):
            in_quote = not in_quote
        i += 1
    val_at: int | None = None
    if equals:
        buf[pos + equals] = 0
        val_at = pos + equals + 1
        # "Don't include quotes in value."
        if buf[val_at] == ord('"'):
            val_at += 1
            if buf[pos + i - 1] == ord('"'):
                buf[pos + i - 1] = 0
        if quoted and buf[pos + i - 1] == ord('"'):
            buf[pos + i - 1] = 0
    end = pos + i
    following = end + 1 if buf[end] else end
    buf[end] = 0

    def string_at(at: int) -> bytes:
        return bytes(buf[at:buf.index(0, at)])

    following += skip_spaces(bytes(buf[following:-1]))
    return string_at(pos), None if val_at is None else string_at(val_at), start + following


def parse_args(doing: str, args: bytes, params: Sequence[KernelParam], unknown: UnknownParam,
               printk: Callable[..., None]) -> None:
    """``parse_args()``: each word of the C string ``args`` to :func:`parse_one`, in order.
    The first that fails is logged (``pr_err``: unknown, too large, or invalid) and its
    errno raised with the logged line as its message (the caller of init_module(2) sees
    only the errno; the model's caller gets the reason too); the parameters before it
    stay set."""
    args = c_string(args)
    pos = skip_spaces(args)
    while pos < len(args):
        param, val, pos = next_arg(args, pos)
        try:
            parse_one(param, val, doing, params, unknown, printk)
        except KernelError as error:
            shown_param = param.decode(errors="replace")
            shown_val = (val or b"").decode(errors="replace")
            if error.errno == errno.ENOENT:
                text = f"{doing}: Unknown parameter `{shown_param}'"
            elif error.errno == errno.ENOSPC:
                text = f"{doing}: `{shown_val}' too large for parameter `{shown_param}'"
            else:
                text = f"{doing}: `{shown_val}' invalid for parameter `{shown_param}'"
            printk(text, level=KERN_ERR)
            raise KernelError(error.errno, text) from None


def ddebug_dyndbg_module_param_cb(param: bytes, val: bytes | None, module: str) -> None:
    """lib/dynamic_debug.c's ``ddebug_dyndbg_module_param_cb()``: ``dyndbg`` (or
    ``OTHER.dyndbg``) is the module's dynamic-debug query, anything else ENOENT.

    3.6 runs the query, ``val`` or ``+p``, through ``ddebug_exec_queries()``; the model's
    modules have no ``pr_debug()`` call sites to change, and a query that does not parse
    (which 3.6 reports in ``pr_err`` lines of its own) does not fail the load either, so
    the model runs none.
    """
    # ddebug_dyndbg_param_cb(): a "." splits off a module name (a boot parameter's).
    if param.split(b".", 1)[-1] != b"dyndbg":
        raise KernelError(errno.ENOENT)
