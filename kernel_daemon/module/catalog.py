"""The modules ``modprobe`` can load: what is on the model's disk.

Model of ``/lib/modules/$(uname -r)``: each entry stands for one ``.ko``, reduced to
what the kernel's loader and ftrace see of it, the functions of its ``.text`` in link
order with their sizes.  Every one of those has an mcount call site.  ``static
inline`` helpers folded into their callers, and ``__init``/``__exit`` code (in
``.init.text``/``.exit.text``, which ``recordmcount`` does not scan), are left out, so
``uinput`` lists ``uinput_release`` but not ``uinput_init``.

``catalog.json`` holds in-tree modules of a 3.6 x86_64 build with their real function
names (the ``xfs`` list is completed with generated ``xfs_*``/``xlog_*`` names to reach
XFS's size), plus one out-of-tree module, ``vboxdrv``, which taints the kernel with
``O`` like the reporter's.  Each entry is ``{"in_tree": bool, "description": str,
"functions": [[name, size], ...]}`` and, optionally, ``"exported": [name, ...]``: the
functions its source exports with plain ``EXPORT_SYMBOL`` (the module's ``__ksymtab``),
which ``/proc/kallsyms`` prints as ``T`` where it prints the others ``t``, and
``"exported_gpl"``, those exported with ``EXPORT_SYMBOL_GPL`` (``__ksymtab_gpl``, which
``is_exported()`` does not look at).  Only exports checked against the 3.6 source are
listed, and an entry without the fields exports nothing.

``"params"`` lists the module's parameters as its 3.6 source declares them,
``[name, type]`` for ``module_param(name, type, perm)`` and ``[name, "string", len]``
for ``module_param_string(name, string, len, perm)`` (``kernel_daemon.module.params``):
``dummy``'s ``numdummies``, ``loop``'s ``max_loop`` and ``max_part``, ``nbd``'s
``nbds_max``, ``max_part`` and ``debugflags``, ``snd_pcm``'s ``preallocate_dma`` and
``maximum_substreams`` (pcm_memory.c), ``usb_storage``'s ``delay_use`` and ``quirks``
(usb.c), ``swi_tru_install`` (sierra_ms.c) and ``option_zero_cd`` (option_ms.c), and
``e1000``'s ``copybreak`` and ``debug`` (e1000_main.c; the per-board arrays of
e1000_param.c, ``TxDescriptors`` and the rest, are not listed).  An entry without the
field takes none.

A module that calls another's exports lists them in ``"imports"``: its undefined symbols
that a module, not vmlinux, exports (vmlinux's always resolve, so they are left out).
``load_module()`` resolves them against the loaded modules, and ``depmod`` computes
``modules.dep`` from them (:attr:`ModuleSpec.depends`).  Of the catalog only ``vfat``
imports (17 of ``fat``'s 18 exports, from 3.6's ``fs/fat/namei_vfat.c``, in the order
the source first uses them: the order of a real ``.ko``'s symbol table, which its
``Unknown symbol`` messages follow, comes from the build).  The modules that
``bridge`` (``stp``, ``llc``) and ``snd_pcm`` (``snd``, ``snd_timer``,
``snd_page_alloc``) need in a distribution's 3.6 are not in the catalog, so those two
load alone.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import re
from dataclasses import dataclass
from importlib import resources

from kernel_daemon.errno import quoted
from kernel_daemon.module.params import PARAM_OPS, KernelParam

# MODULE_NAME_LEN (64 - sizeof(unsigned long)) includes the NUL.
_MODULE_NAME = re.compile(r"[A-Za-z0-9_-]{1,55}")
# A C identifier that fits KSYM_NAME_LEN (128, NUL included) uncut.
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,126}")
_MAX_FUNCTIONS = 65536


@dataclass(frozen=True)
class ModuleSpec:
    """One module file: its name and its functions ``(name, size in bytes)`` in link order;
    ``exported`` and ``exported_gpl`` name those of them in its ``EXPORT_SYMBOL`` and
    ``EXPORT_SYMBOL_GPL`` tables; ``imports`` the other modules' exports it uses, and
    ``depends`` its ``modules.dep`` line: the modules that export them, and theirs, in
    the order ``modprobe`` loads them; ``params`` its ``__param`` table (``mod->kp``)."""

    name: str
    functions: tuple[tuple[str, int], ...]
    in_tree: bool
    description: str
    exported: frozenset[str] = frozenset()
    exported_gpl: frozenset[str] = frozenset()
    imports: tuple[str, ...] = ()
    depends: tuple[str, ...] = ()
    params: tuple[KernelParam, ...] = ()


def _validate(name: str, functions: list[str]) -> None:
    """ValueError for a bad module name, a function name that is not a C identifier, or
    too many functions. A module may have no traceable function at all (no
    ``__mcount_loc`` entries), and two of the same name (static functions in different
    files)."""
    if not isinstance(name, str) or not _MODULE_NAME.fullmatch(name):
        raise ValueError(f"module name {quoted(name)}: want 1..55 characters of [A-Za-z0-9_-]")
    if len(functions) > _MAX_FUNCTIONS:
        raise ValueError(f"module {quoted(name)}: {len(functions)} functions, want at most "
                         f"{_MAX_FUNCTIONS}")
    for function in functions:
        if not isinstance(function, str) or not _FUNCTION_NAME.fullmatch(function):
            raise ValueError(f"module {quoted(name)}: function name {quoted(function)} is not a C identifier "
                             f"of at most 127 characters")


@functools.cache
def load_catalog() -> dict[str, ModuleSpec]:
    """The catalog, by module name, read once from the package's ``catalog.json``.

    Callers share the returned dict and must not change it.
    """
    text = resources.files(__package__).joinpath("catalog.json").read_text(encoding="utf-8")
    catalog: dict[str, ModuleSpec] = {}
    for name, entry in json.loads(text).items():
        functions = tuple((function, size) for function, size in entry["functions"])
        names = [function for function, _ in functions]
        _validate(name, names)
        exported = frozenset(entry.get("exported", ()))
        exported_gpl = frozenset(entry.get("exported_gpl", ()))
        # is_exported() matches name and address: an export is one function of the module.
        if unknown := sorted(f for f in exported | exported_gpl if names.count(f) != 1):
            raise ValueError(f"module {name}: exported {unknown} are not functions of it "
                             f"(or not one each)")
        catalog[name] = ModuleSpec(name, functions, entry["in_tree"], entry["description"],
                                   exported, exported_gpl, tuple(entry.get("imports", ())),
                                   params=_params(name, entry.get("params", ())))
    return {name: dataclasses.replace(spec, depends=depends)
            for (name, spec), depends in zip(catalog.items(), _depmod(catalog))}


def _params(module: str, entries: list[list]) -> tuple[KernelParam, ...]:
    """The ``"params"`` of ``module``'s entry; ValueError for a type the model has no
    ``ops`` for, or a string parameter without its buffer's size."""
    params = tuple(KernelParam(*entry) for entry in entries)
    for kp in params:
        if kp.type not in PARAM_OPS or (kp.type == "string") != (kp.maxlen > 0):
            raise ValueError(f"module {module}: parameter {kp.name}: want one of "
                             f"{tuple(PARAM_OPS)}, a string's with its size")
    return params


def _depmod(catalog: dict[str, ModuleSpec]) -> list[tuple[str, ...]]:
    """``depmod``: each module's ``modules.dep`` dependencies, in the catalog's order.

    A module depends on the modules that export what it imports, and on theirs; they
    come in load order, each after those it needs.  ValueError for an import no module
    exports (depmod's "needs unknown symbol"), a symbol two modules export (the second
    could never load: ``verify_export_symbols()``), or modules that need each other.
    """
    owners: dict[str, str] = {}
    for spec in catalog.values():
        for symbol in spec.exported | spec.exported_gpl:
            if symbol in owners:
                raise ValueError(f"module {spec.name}: exports {symbol}, which "
                                 f"{owners[symbol]} exports")
            owners[symbol] = spec.name
    needs: dict[str, list[str]] = {}
    for spec in catalog.values():
        if unknown := sorted(set(spec.imports) - owners.keys()):
            raise ValueError(f"module {spec.name}: imports {unknown}, which no module exports")
        needs[spec.name] = list(dict.fromkeys(owners[symbol] for symbol in spec.imports))

    def load_order(name: str, path: tuple[str, ...]) -> list[str]:
        order: list[str] = []
        for dep in needs[name]:
            if dep in path:
                raise ValueError(f"modules in a dependency cycle: {' -> '.join(path + (dep,))}")
            order += [m for m in load_order(dep, path + (dep,)) + [dep] if m not in order]
        return order

    return [tuple(load_order(name, (name,))) for name in catalog]


# Sizes of functions whose code the model has not seen: log-normal around 0xa0 bytes,
# clamped to the range of real small-module functions.
_SIZE_MEDIAN = 0xa0
_SIZE_SIGMA = 0.7
_SIZE_MIN, _SIZE_MAX = 0x20, 0x800


def module_from_function_list(name: str, functions: list[str]) -> ModuleSpec:
    """An out-of-tree module built from a list of function names.

    Sizes are drawn from a generator seeded with the module's name, so the same list
    gives the same module.  Raises ValueError for a bad module name, a function name
    that is not a C identifier, or more than 65536 functions.
    """
    if isinstance(functions, str):
        raise ValueError(f"module {quoted(name)}: functions must be a list of names, "
                         "not a string")
    functions = list(functions)
    _validate(name, functions)
    rng = random.Random(f"module:{name}")
    sizes = (min(max(int(rng.lognormvariate(0, _SIZE_SIGMA) * _SIZE_MEDIAN), _SIZE_MIN),
                 _SIZE_MAX) for _ in functions)
    return ModuleSpec(name, tuple(zip(functions, sizes)), False,
                      f"out-of-tree module with {len(functions)} functions")
