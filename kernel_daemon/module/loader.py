"""Loading and unloading modules, with the 3.6 module notifier chain.

Model of ``kernel/module.c`` (3.6): ``sys_init_module()`` → ``load_module()``,
``sys_delete_module()``, ``free_module()``, ``/proc/modules`` (``modules_op``) and
``print_modules()``.  The order is the kernel's, since ftrace's races live in it:

* load: taint the kernel for an out-of-tree module (``check_modinfo()``, whatever fails
  after); allocate its memory (``layout_and_allocate()``: ``module_alloc()``, under
  vmalloc's ``vmap_area_lock``, not ``module_mutex``), ENOMEM if the module space is
  full; resolve the symbols it imports (``simplify_symbols()``), each under
  ``module_mutex``: the module exporting one gets a reference and a ``module_use`` link
  to the new one, which is on no list yet; then under ``module_mutex``, reject a
  duplicate name (even one still unloading), link the module at the head of the list
  in state COMING with the reference init holds (kallsyms sees it from here), drop the
  mutex; then its parameters (``parse_args()`` of the ``uargs`` string: one that fails
  takes the module off the list again, with no notifier called, so ftrace never sees
  it); then the COMING notifiers (ftrace creates the module's records here, without
  ``module_mutex``), then LIVE, the LIVE notifiers, and the init reference dropped.  A
  load that fails after the allocation (an unknown symbol, EEXIST) has held its area
  all along, and frees it last (``module_deallocate()``).
* unload: under ``module_mutex``, refuse a module that others use, that is not LIVE or
  that is in use, mark it GOING, drop the mutex; then the GOING notifiers
  (``ftrace_release_mod()``), then ``free_module()`` unlinks it under ``module_mutex``,
  drops the references it took on the modules it used (``module_unload_free()``, which
  takes the mutex again), and frees its memory (``module_free()``) with the mutex
  dropped.

A module that others use answers ``delete_module`` EWOULDBLOCK ("Other modules depend on
us: get rid of them first."), and so does a LIVE one that still holds references, as
3.6's ``try_stop_module()`` does under the ``O_NONBLOCK`` that ``rmmod`` and ``modprobe
-r`` always pass (the unload that waits for the references, without it, is not modelled).
A symbol whose module is still loading is waited for (``resolve_symbol_wait()``), up to
30 s or until a signal (the model's: the caller went away); one still not resolved then
fails the load (EBUSY), one whose module is unloading, or that no module exports, too
(ENOENT), after a ``Unknown symbol`` line in the kernel log for each.

Where the model differs: no ELF, relocation or init function (so no parameter is
used, and none is refused by a module's init, as nbd's ``max_part=-1`` is); a failing
COMING notifier (which cannot happen in the kernel, whose notifiers return codes) is
handled like a failing ``mod->init``: GOING notifiers, free, and the error re-raised.
"""

from __future__ import annotations

import errno
import functools
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kernel_daemon.errno import quoted
from kernel_daemon.failpoints import Failpoints
from kernel_daemon.module.address_space import ModuleAddressSpace
from kernel_daemon.module.catalog import ModuleSpec
from kernel_daemon.module.kallsyms import Kallsyms
from kernel_daemon.module.params import ddebug_dyndbg_module_param_cb, parse_args
from kernel_daemon.module.symbols import Symbol
from kernel_daemon.mutex import Mutex
from kernel_daemon.panic import TAINT_OOT_MODULE
from kernel_daemon.printk import KERN_WARNING
from kernel_daemon.tracefs.seq_file import SeqOperations
from kernel_daemon.unwind import kernel_frames, kernel_function_named

# include/linux/module.h (3.6) enum module_state.
MODULE_STATE_LIVE = 0
MODULE_STATE_COMING = 1
MODULE_STATE_GOING = 2

# include/linux/module.h: 64 - sizeof(unsigned long), the name buffer's size with its NUL.
MODULE_NAME_LEN = 64 - 8
# resolve_symbol_wait(): how long a load waits for a module it needs to finish loading.
RESOLVE_WAIT_SECONDS = 30

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
# signal_pending(current): has the calling task been signalled?
SignalPending = Callable[[], bool]


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
    # mod->syms and mod->gpl_syms: the names find_symbol() finds in this module.
    syms: frozenset[str] = frozenset()
    gpl_syms: frozenset[str] = frozenset()
    # The struct module_use links, each newest first (list_add()), replaced whole under
    # module_mutex: source_list, the modules using this one (each holds a reference to
    # it); target_list, the modules this one uses.
    source_list: tuple[Module, ...] = ()
    target_list: tuple[Module, ...] = ()

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


def _ref_module(a: Module, b: Module) -> int:
    """``ref_module()``, under ``module_mutex``: ``a`` uses ``b``.  Unless it already
    does (``already_uses()``), take a reference to ``b`` (``strong_try_module_get()``:
    EBUSY while ``b`` is loading, ENOENT once it is unloading) and link the two at the
    head of ``b``'s users and ``a``'s targets (``add_module_usage()``).  Returns the errno,
    or 0."""
    if a in b.source_list:
        return 0
    if b.state == MODULE_STATE_COMING:
        return errno.EBUSY
    if b.state == MODULE_STATE_GOING:  # try_module_get(): not module_is_live()
        return errno.ENOENT
    b.refcnt += 1
    b.source_list = (a,) + b.source_list
    a.target_list = (b,) + a.target_list
    return 0


class ModuleLoader:
    """The module list and the syscalls that change it.

    ``load_module`` and ``delete_module`` may run concurrently from many threads;
    readers (``find_module``, ``modules``, ``print_modules``) read a published tuple and
    never wait for them; ``/proc/modules`` (``modules_op``) reads it under
    ``module_mutex``, as 3.6 does.
    """

    def __init__(self, kallsyms: Kallsyms, address_space: ModuleAddressSpace,
                 add_taint: Callable[[int], None], printk: Callable[..., None],
                 failpoints: Failpoints) -> None:
        """``add_taint(flag)`` is the kernel's ``add_taint()``, ``printk(text, level=)``
        its ``printk()``; ``failpoints`` the kernel's, for ``module_mutex``'s."""
        self._kallsyms = kallsyms
        self._address_space = address_space
        self._add_taint = add_taint
        self._printk = printk
        # A DEFINE_MUTEX: contending for it passes __mutex_lock_slowpath:module_mutex.
        self.module_mutex = Mutex(slowpath=functools.partial(
            failpoints.fire, "__mutex_lock_slowpath:module_mutex"))
        # module_wq: loads waiting for a module they need to finish loading.
        self.module_wq = threading.Condition()
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
    def _link_module(self, spec: ModuleSpec, placement: str | None,
                     signal_pending: SignalPending, args: bytes) -> Module:
        """``load_module()``: allocate the module's memory and lay it out, resolve its
        imports, put it on the list, then parse ``args`` (``mod->args``) against its
        parameters.

        3.6's order: ``layout_and_allocate()`` first, without ``module_mutex``, so with
        the module space full ENOMEM comes before an unknown symbol or EEXIST; a load
        that waits for a symbol, or then fails EEXIST, holds its area meanwhile (a module
        loaded in between lands elsewhere); each failure after the allocation drops the
        module's references (``free_unload``) and then frees the area (``free_module``:
        ``module_deallocate()``), as ``load_module()``'s error labels do.
        """
        if not spec.in_tree:
            # check_modinfo(): add_taint_module(mod, TAINT_OOT_MODULE) when modinfo lacks
            # "intree", first thing in layout_and_allocate(), so a load that then fails
            # (ENOMEM, EEXIST) leaves the kernel tainted all the same.
            self._add_taint(TAINT_OOT_MODULE)
        # refcnt 1: module_unload_init() holds a reference during initialization.
        mod = Module(spec.name, 0, _core_size(spec), MODULE_STATE_COMING, (),
                     "" if spec.in_tree else "O", refcnt=1, syms=spec.exported,
                     gpl_syms=spec.exported_gpl)
        # move_module(): module_alloc(); a MemoryError (-ENOMEM) leaves nothing to undo.
        # (3.6's module_alloc_update_bounds() then takes module_mutex to widen
        # module_addr_min/max, bounds the model does not keep.)
        mod.module_core = self._address_space.alloc(mod.core_size, placement)
        try:
            mod.symbols = _layout(spec, mod.module_core)
            self._simplify_symbols(mod, spec.imports, signal_pending)
            with self.module_mutex:
                if self.find_module(spec.name) is not None:
                    raise FileExistsError(errno.EEXIST, f"module {quoted(spec.name)} is already loaded")
                mod.load_seq = next(self._load_seqs)
                self._kallsyms.add_module(mod.name, list(mod.symbols), mod.module_core,
                                          mod.core_size)
                self._modules = (mod,) + self._modules
        except BaseException:
            # The area is freed whatever stops the unwinding (an asynchronous exception
            # in module_unload_free() included): nothing else knows it is allocated.
            try:
                self._module_unload_free(mod)  # load_module()'s free_unload
            finally:
                self._address_space.free(mod.module_core)  # free_module: module_deallocate()
            raise
        # "Module is ready to execute: parsing args may do that."
        try:
            parse_args(mod.name, args, spec.params, ddebug_dyndbg_module_param_cb,
                       self._printk)
        except BaseException:
            # load_module()'s unlink: the steps of free_module(), and, as there, no
            # wake_up(&module_wq) for a load waiting on this module's symbols.
            self._unlink_and_free(mod)
            raise
        return mod

    def _simplify_symbols(self, mod: Module, imports: tuple[str, ...],
                          signal_pending: SignalPending) -> None:
        """``simplify_symbols()`` for the undefined symbols other modules export: resolve
        each; report each that does not resolve, and then fail with the last one's error
        (ENOENT when no module exports it); the caller drops the references the others
        took (``load_module()``'s ``free_unload``)."""
        error = 0
        for name in imports:
            err = self._resolve_symbol_wait(mod, name, signal_pending)
            if err == 0:
                continue
            # PTR_ERR(ksym): 0 for a symbol not found, -errno for one refused.
            self._printk(f"{mod.name}: Unknown symbol {name} (err {-(err or 0)})",
                         level=KERN_WARNING)
            error = err or errno.ENOENT
        if error:
            raise OSError(error, f"module {quoted(mod.name)} needs symbols no loaded module gives")

    def _resolve_symbol_wait(self, mod: Module, name: str,
                             signal_pending: SignalPending) -> int | None:
        """``resolve_symbol_wait()``: :meth:`_resolve_symbol`, again each time a module
        finishes loading (``wake_up(&module_wq)``), while the owner is still loading
        (EBUSY), for 30 s at most (``wait_event_interruptible_timeout()``).  A pending
        signal ends the wait, or skips it, leaving the EBUSY: the condition is looked at
        first, then the signal, so a symbol that resolves still resolves."""
        deadline = time.monotonic() + RESOLVE_WAIT_SECONDS
        with self.module_wq:
            while (resolved := self._resolve_symbol(mod, name))[0] == errno.EBUSY:
                remaining = deadline - time.monotonic()
                # Under module_wq's lock, as signal_wake_up() takes it: a signal that
                # comes after this look wakes the wait below.
                if remaining <= 0 or signal_pending():
                    self._printk(f"{mod.name}: gave up waiting for init of module "
                                 f"{resolved[1]}.", level=KERN_WARNING)
                    break
                self.module_wq.wait(remaining)
        return resolved[0]

    def _resolve_symbol(self, mod: Module, name: str) -> tuple[int | None, str]:
        """``resolve_symbol()``: under ``module_mutex``, the loaded module that exports
        ``name`` (``find_symbol()``, in every state), and ``mod``'s use of it recorded
        (``ref_module()``).  Returns (0 or ref_module()'s errno, the owner's name), or
        (None, "") when no module exports it."""
        with self.module_mutex:
            owner = next((m for m in self._modules if name in m.syms or name in m.gpl_syms),
                         None)
            if owner is None:
                return None, ""
            return _ref_module(mod, owner), owner.name

    def _module_unload_free(self, mod: Module) -> None:
        """``module_unload_free()``: drop the references ``mod`` holds on the modules it
        uses, and the links."""
        with self.module_mutex:
            for target in mod.target_list:
                target.refcnt -= 1  # module_put()
                target.source_list = tuple(m for m in target.source_list if m is not mod)
            mod.target_list = ()

    def _wake_up_module_wq(self) -> None:
        """``wake_up(&module_wq)``: a module finished loading, or failed to."""
        with self.module_wq:
            self.module_wq.notify_all()

    def signal_wake_up(self) -> None:
        """``signal_wake_up()`` for loads asleep in ``resolve_symbol_wait()``: a caller was
        signalled (went away).  Every waiter wakes and looks at its own
        ``signal_pending``; the others sleep again."""
        self._wake_up_module_wq()

    @kernel_function_named("free_module")
    def _free_module(self, mod: Module) -> None:
        """``free_module()``: :meth:`_unlink_and_free`, under the name a call trace
        from inside it gives."""
        self._unlink_and_free(mod)

    def _unlink_and_free(self, mod: Module) -> None:
        """Unlink the module, drop its uses of others, free its memory: ``free_module()``,
        and ``load_module()`` for a module whose parameters failed.

        3.6's steps: unlink under ``module_mutex`` (``__unlink_module()``), then
        ``module_unload_free()``, which takes it again, then ``module_free()`` with it
        dropped (``vfree()``, under vmalloc's own lock).  A load can run between the
        unlink and the free: its name is free, its area not yet."""
        with self.module_mutex:
            self._modules = tuple(m for m in self._modules if m is not mod)
            self._kallsyms.remove_module(mod.name)
        try:
            self._module_unload_free(mod)
        finally:  # unlinked, the area is known to no one else: freed in any case
            self._address_space.free(mod.module_core)

    def load_module(self, spec: ModuleSpec, placement: str | None = None,
                    signal_pending: SignalPending = lambda: False,
                    args: bytes = b"") -> Module:
        """``sys_init_module()``: load ``spec`` with the parameters ``args`` (``uargs``,
        e.g. ``b"max_loop=8"``) and return the LIVE module.

        ``placement`` ("first-fit", "random") overrides the address space's policy for
        this module.  ``signal_pending`` is the caller's ``signal_pending(current)``;
        whoever makes it true calls :meth:`signal_wake_up`.  Raises OSError for imports
        that do not resolve: ENOENT (no module exports one, or its module is
        unloading), EBUSY (its module still loading after 30 s, or when a signal came);
        FileExistsError (-EEXIST) if a module of that name is on the list,
        MemoryError (-ENOMEM) if the module space is full, and
        :func:`~kernel_daemon.module.params.parse_args`' KernelError for a parameter
        it does not take (ENOENT) or a bad value (EINVAL, ERANGE, ENOSPC).
        """
        with kernel_frames("system_call_fastpath", "sys_init_module"):
            mod = self._link_module(spec, placement, signal_pending, args)
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
                    self._wake_up_module_wq()
                raise
            mod.state = MODULE_STATE_LIVE
            self._wake_up_module_wq()
            self._module_notify(MODULE_STATE_LIVE, mod)
            with self.module_mutex:
                mod.refcnt -= 1  # "Drop initial reference."
            return mod

    def delete_module(self, name: str) -> Module:
        """``sys_delete_module()``: unload the module ``name`` and return it, now unlinked.

        ``name`` is read as ``strncpy_from_user(name, name_user, MODULE_NAME_LEN-1)``
        reads it: up to a NUL, and no more than 55 bytes.  Raises LookupError (-ENOENT)
        if no such module is loaded (an empty name never is), BlockingIOError
        (-EWOULDBLOCK) if other modules use it, RuntimeError (-EBUSY) if it is still
        loading or already unloading, BlockingIOError again if it holds references.
        """
        name = name.encode()[:MODULE_NAME_LEN - 1].split(b"\0", 1)[0].decode(errors="replace")
        with kernel_frames("system_call_fastpath", "sys_delete_module"):
            with self.module_mutex:
                mod = self.find_module(name)
                if mod is None:
                    raise LookupError(f"module {quoted(name)} is not loaded")
                if mod.source_list:
                    # "Other modules depend on us: get rid of them first."
                    users = ", ".join(quoted(user.name) for user in mod.source_list)
                    raise BlockingIOError(errno.EWOULDBLOCK, f"module {quoted(name)} is in use by {users}")
                if mod.state != MODULE_STATE_LIVE:
                    raise RuntimeError(f"module {quoted(name)} is {_STATE_NAMES[mod.state].lower()}")
                if mod.refcnt:
                    # try_stop_module() under O_NONBLOCK: __try_stop_module()'s -EWOULDBLOCK.
                    raise BlockingIOError(errno.EWOULDBLOCK, f"module {quoted(name)} is in use")
                mod.state = MODULE_STATE_GOING
            try:
                self._module_notify(MODULE_STATE_GOING, mod)
            finally:
                self._last_unloaded = mod.name
                self._free_module(mod)
            return mod

    # -- /proc/modules: modules_op --------------------------------------------------------

    def m_start(self, pos: int) -> int | None:
        """``m_start()``: ``module_mutex`` taken, ``seq_list_start(&modules, *pos)``, the
        module at index ``pos`` of the list as it is now (newest first), None past the
        last; a module loaded or unloaded between two reads moves what the second shows."""
        self.module_mutex.acquire()
        return pos if pos < len(self._modules) else None

    def m_next(self, v: int, pos: int) -> tuple[int | None, int]:
        """``m_next()``: ``seq_list_next()``, the next module on the list (which
        ``module_mutex`` keeps as it is until ``m_stop()``)."""
        pos += 1
        return (v + 1 if v + 1 < len(self._modules) else None), pos

    def m_stop(self, v: int | None) -> None:
        """``m_stop()``: ``module_mutex`` dropped."""
        self.module_mutex.release()

    def m_show(self, v: int) -> bytes:
        """``m_show()``'s line, e.g. ``uinput 17185 0 - Live 0xffffffffa0000000`` or
        ``fat 67293 1 vfat, Live 0xffffffffa0000000``."""
        mod = self._modules[v]
        # print_unload_info(): the users, each with a trailing comma, else "-" (none
        # of the model's modules is [permanent]: none has an init without an exit).
        users = "".join(f"{user.name}," for user in mod.source_list) or "-"
        line = (f"{mod.name} {mod.core_size} {mod.refcnt} {users} "
                f"{_STATE_NAMES[mod.state]} 0x{mod.module_core:016x}")
        # m_show() prints module_flags() only for a tainted module.
        return (f"{line} {_module_flags(mod)}\n" if mod.taints else f"{line}\n").encode()

    def modules_op(self) -> SeqOperations:
        """``modules_op``, which ``modules_open()`` gives ``/proc/modules``."""
        return SeqOperations(self.m_start, self.m_next, self.m_stop, self.m_show)

    def print_modules(self) -> str:
        """``print_modules()``'s line, e.g. ``Modules linked in: uinput vboxdrv(O)
        [last unloaded: uinput]``."""
        names = "".join(f" {mod.name}{_module_flags(mod)}" for mod in self._modules)
        last = f" [last unloaded: {self._last_unloaded}]" if self._last_unloaded else ""
        return f"Modules linked in:{names}{last}"
