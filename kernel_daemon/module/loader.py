"""Loading and unloading modules, with the 3.6 module notifier chain.

Model of ``kernel/module.c`` (3.6): ``sys_init_module()`` → ``load_module()``,
``sys_delete_module()``, ``free_module()``, ``/proc/modules`` (``m_show()``) and
``print_modules()``.  The order is the kernel's, since ftrace's races live in it:

* load: taint the kernel for an out-of-tree module (``check_modinfo()``, whatever fails
  after); under ``module_mutex``, reject a duplicate name (even one still unloading),
  allocate, link the module at the head of the list in state COMING with the reference
  init holds (kallsyms sees it from here), drop the mutex; then the COMING notifiers
  (ftrace creates the module's records here, without ``module_mutex``), then LIVE, the
  LIVE notifiers, and the init reference dropped.
* unload: under ``module_mutex``, refuse a module that is not LIVE or is in use, mark
  it GOING, drop the mutex; then the GOING notifiers (``ftrace_release_mod()``), then
  ``free_module()`` unlinks it and frees its memory under ``module_mutex``.

A LIVE module that still holds references answers ``delete_module`` EWOULDBLOCK, as
3.6's ``try_stop_module()`` does under the ``O_NONBLOCK`` that ``rmmod`` and ``modprobe
-r`` always pass (the unload that waits for the references, without it, is not modelled).

Where the model differs: no ELF, relocation, parameters or init function; a failing
COMING notifier (which cannot happen in the kernel, whose notifiers return codes) is
handled like a failing ``mod->init``: GOING notifiers, free, and the error re-raised.
"""

from __future__ import annotations

import errno
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass

from kernel_daemon.module.address_space import ModuleAddressSpace
from kernel_daemon.module.catalog import ModuleSpec
from kernel_daemon.module.kallsyms import Kallsyms
from kernel_daemon.module.symbols import Symbol
from kernel_daemon.panic import TAINT_OOT_MODULE
from kernel_daemon.unwind import kernel_frames, kernel_function_named

# include/linux/module.h (3.6) enum module_state.
MODULE_STATE_LIVE = 0
MODULE_STATE_COMING = 1
MODULE_STATE_GOING = 2

# include/linux/module.h: 64 - sizeof(unsigned long), the name buffer's size with its NUL.
MODULE_NAME_LEN = 64 - 8

# m_show()'s words for the states.
_STATE_NAMES = {MODULE_STATE_LIVE: "Live", MODULE_STATE_COMING: "Loading",
                MODULE_STATE_GOING: "Unloading"}
# Module functions start 16-byte aligned, like vmlinux's.
_ALIGN = 16
# core_size beyond .text, estimated: about as much .rodata/.data/.bss again as text,
# struct module (.gnu.linkonce.this_module) and ops tables, and the core symtab and
# strtab that layout_symtab() keeps.  It puts uinput near its real ~17 KB.
_ELF64_SYM_SIZE = 24
_FIXED_DATA_SIZE = 0x1000

ModuleNotifier = Callable[[int, "Module"], None]


@dataclass(eq=False)
class Module:
    """``struct module``, the parts the model uses. Identity is the module instance."""

    name: str
    module_core: int
    core_size: int
    state: int
    symbols: tuple[Symbol, ...]
    taints: str
    refcnt: int = 0
    # The model's: 1 for the first module linked since boot, 2 for the next, ...
    load_seq: int = 0

    def within_module_core(self, addr: int) -> bool:
        """``within_module_core()``: is ``addr`` in ``[module_core, module_core + core_size)``?"""
        return self.module_core <= addr < self.module_core + self.core_size

    @property
    def mcount_locs(self) -> list[int]:
        """The module's ``__mcount_loc``: one call site per function, at its first byte."""
        return [sym.addr for sym in self.symbols]


def _layout(spec: ModuleSpec, base: int) -> tuple[Symbol, ...]:
    """The module's functions, placed one after another from ``base`` in link order.

    Each carries the letter ``/proc/kallsyms`` prints for it: ``s_show()`` upper-cases
    ``elf_type()``'s ``t`` for a symbol ``is_exported()`` finds in the module's
    ``__ksymtab`` (``EXPORT_SYMBOL``; ``EXPORT_SYMBOL_GPL``'s table is not looked at).
    """
    symbols = []
    addr = base
    for name, size in spec.functions:
        end = -(-(addr + size) // _ALIGN) * _ALIGN
        symbols.append(Symbol(name, addr, end - addr, spec.name,
                              "T" if name in spec.exported else "t"))
        addr = end
    return tuple(symbols)


def _core_size(spec: ModuleSpec) -> int:
    text = sum(-(-size // _ALIGN) * _ALIGN for _, size in spec.functions)
    symtab = sum(_ELF64_SYM_SIZE + len(name) + 1 for name, _ in spec.functions)
    return 2 * text + _FIXED_DATA_SIZE + symtab


def _module_flags(mod: Module) -> str:
    """``module_flags()``: ``(O)`` for taints, ``-`` while unloading, ``+`` while loading."""
    if not mod.taints and mod.state == MODULE_STATE_LIVE:
        return ""
    going = "-" if mod.state == MODULE_STATE_GOING else ""
    coming = "+" if mod.state == MODULE_STATE_COMING else ""
    return f"({mod.taints}{going}{coming})"


class ModuleLoader:
    """The module list and the syscalls that change it.

    ``load_module`` and ``delete_module`` may run concurrently from many threads;
    readers (``find_module``, ``modules``, ``proc_modules``, ``print_modules``) read a
    published tuple and never wait for them.
    """

    def __init__(self, kallsyms: Kallsyms, address_space: ModuleAddressSpace,
                 add_taint: Callable[[int], None]) -> None:
        """``add_taint(flag)`` is the kernel's ``add_taint()``."""
        self._kallsyms = kallsyms
        self._address_space = address_space
        self._add_taint = add_taint
        self.module_mutex = threading.Lock()
        # module_notify_list; every entry at priority 0, so called in registration order.
        self.module_notifiers: list[ModuleNotifier] = []
        # The kernel's `modules` list, newest first (list_add_rcu() at the head),
        # replaced whole under module_mutex.
        self._modules: tuple[Module, ...] = ()
        self._last_unloaded = ""
        self._load_seqs = itertools.count(1)

    def register_module_notifier(self, notifier: ModuleNotifier) -> None:
        """``register_module_notifier()``: ``notifier(state, mod)`` at every transition."""
        self.module_notifiers.append(notifier)

    def _module_notify(self, state: int, mod: Module) -> None:
        """``blocking_notifier_call_chain(&module_notify_list, state, mod)``."""
        with kernel_frames("blocking_notifier_call_chain", "__blocking_notifier_call_chain",
                           "notifier_call_chain"):
            # A copy, as the chain's rwsem would give: a registration does not
            # change a call in progress.
            for notifier in tuple(self.module_notifiers):
                notifier(state, mod)

    def find_module(self, name: str) -> Module | None:
        """``find_module()``: the module on the list called ``name``, in any state."""
        return next((mod for mod in self._modules if mod.name == name), None)

    def modules(self) -> list[Module]:
        """The module list, newest first."""
        return list(self._modules)

    @kernel_function_named("load_module")
    def _link_module(self, spec: ModuleSpec, placement: str | None) -> Module:
        """``load_module()``: allocate and lay out the module, then put it on the list."""
        if not spec.in_tree:
            # check_modinfo(): add_taint_module(mod, TAINT_OOT_MODULE) when modinfo lacks
            # "intree", first thing in layout_and_allocate(), so a load that then fails
            # (ENOMEM, EEXIST) leaves the kernel tainted all the same.
            self._add_taint(TAINT_OOT_MODULE)
        with self.module_mutex:
            if self.find_module(spec.name) is not None:
                raise FileExistsError(errno.EEXIST, f"module {spec.name} is already loaded")
            core_size = _core_size(spec)
            base = self._address_space.alloc(core_size, placement)
            symbols = _layout(spec, base)
            # refcnt 1: module_unload_init() holds a reference during initialization.
            mod = Module(spec.name, base, core_size, MODULE_STATE_COMING, symbols,
                         "" if spec.in_tree else "O", refcnt=1, load_seq=next(self._load_seqs))
            self._kallsyms.add_module(mod.name, list(symbols), base, core_size)
            self._modules = (mod,) + self._modules
            return mod

    @kernel_function_named("free_module")
    def _free_module(self, mod: Module) -> None:
        """``free_module()``: unlink the module and free its memory."""
        with self.module_mutex:
            self._modules = tuple(m for m in self._modules if m is not mod)
            self._kallsyms.remove_module(mod.name)
            self._address_space.free(mod.module_core)

    def load_module(self, spec: ModuleSpec, placement: str | None = None) -> Module:
        """``sys_init_module()``: load ``spec`` and return the LIVE module.

        ``placement`` ("first-fit", "random") overrides the address space's policy for
        this module. Raises FileExistsError (-EEXIST) if a module of that name is on the
        list, and MemoryError (-ENOMEM) if the module space is full.
        """
        with kernel_frames("system_call_fastpath", "sys_init_module"):
            mod = self._link_module(spec, placement)
            try:
                self._module_notify(MODULE_STATE_COMING, mod)
            except BaseException:
                # sys_init_module()'s path for a failing mod->init.
                mod.state = MODULE_STATE_GOING
                mod.refcnt -= 1  # module_put(): the init reference
                try:
                    self._module_notify(MODULE_STATE_GOING, mod)
                finally:
                    self._free_module(mod)
                raise
            mod.state = MODULE_STATE_LIVE
            self._module_notify(MODULE_STATE_LIVE, mod)
            with self.module_mutex:
                mod.refcnt -= 1  # "Drop initial reference."
            return mod

    def delete_module(self, name: str) -> Module:
        """``sys_delete_module()``: unload the module ``name`` and return it, now unlinked.

        ``name`` is read as ``strncpy_from_user(name, name_user, MODULE_NAME_LEN-1)``
        reads it: up to a NUL, and no more than 55 bytes.  Raises LookupError (-ENOENT)
        if no such module is loaded (an empty name never is), RuntimeError (-EBUSY) if
        it is still loading or already unloading, BlockingIOError (-EWOULDBLOCK) if it
        holds references.
        """
        name = name.encode()[:MODULE_NAME_LEN - 1].split(b"\0", 1)[0].decode(errors="replace")
        with kernel_frames("system_call_fastpath", "sys_delete_module"):
            with self.module_mutex:
                mod = self.find_module(name)
                if mod is None:
                    raise LookupError(f"module {name} is not loaded")
                if mod.state != MODULE_STATE_LIVE:
                    raise RuntimeError(f"module {name} is {_STATE_NAMES[mod.state].lower()}")
                if mod.refcnt:
                    # try_stop_module() under O_NONBLOCK: __try_stop_module()'s -EWOULDBLOCK.
                    raise BlockingIOError(errno.EWOULDBLOCK, f"module {name} is in use")
                mod.state = MODULE_STATE_GOING
            try:
                self._module_notify(MODULE_STATE_GOING, mod)
            finally:
                self._last_unloaded = mod.name
                self._free_module(mod)
            return mod

    def proc_modules(self) -> str:
        """``/proc/modules`` (``m_show()``), e.g. ``uinput 17185 0 - Live 0xffffffffa0000000``."""
        lines = []
        for mod in self._modules:
            # No module depends on another and none is [permanent]: the used-by column is "-".
            line = (f"{mod.name} {mod.core_size} {mod.refcnt} - {_STATE_NAMES[mod.state]} "
                    f"0x{mod.module_core:016x}")
            # m_show() prints module_flags() only for a tainted module.
            lines.append(f"{line} {_module_flags(mod)}\n" if mod.taints else f"{line}\n")
        return "".join(lines)

    def print_modules(self) -> str:
        """``print_modules()``'s line, e.g. ``Modules linked in: uinput vboxdrv(O)
        [last unloaded: uinput]``."""
        names = "".join(f" {mod.name}{_module_flags(mod)}" for mod in self._modules)
        last = f" [last unloaded: {self._last_unloaded}]" if self._last_unloaded else ""
        return f"Modules linked in:{names}{last}"
