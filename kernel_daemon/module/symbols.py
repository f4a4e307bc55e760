"""A kernel text symbol, as ``/proc/kallsyms`` lists it.

Model of one entry of the kernel's symbol tables: vmlinux's compressed
``kallsyms_*`` arrays (``scripts/kallsyms.c``) or a module's ``Elf64_Sym`` core
symtab (``kernel/module.c:add_kallsyms()``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Symbol:
    """One function symbol.

    ``size`` is what ``kallsyms_lookup_size_offset()`` reports: the distance to the
    next symbol, alignment padding included, so consecutive symbols tile the text
    with no holes. ``module`` is None for vmlinux. ``type`` is the letter
    ``/proc/kallsyms`` prints: for vmlinux the ``nm`` letter (``'T'`` global text,
    ``'t'`` local), for a module ``'T'`` when the module exports the function with
    ``EXPORT_SYMBOL`` and ``'t'`` otherwise (``s_show()``).
    """

    name: str
    addr: int
    size: int
    module: str | None
    type: str
