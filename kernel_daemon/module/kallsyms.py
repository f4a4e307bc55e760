"""Address ⇄ symbol lookups over vmlinux and the loaded modules.

Model of ``kernel/kallsyms.c`` (3.6) together with the per-module symbol tables of
``kernel/module.c`` (``get_ksymbol()``, ``module_get_kallsym()``): ``%pS`` and ``%ps``
text, ``kallsyms_lookup_name()`` and ``/proc/kallsyms``.

Readers never lock.  The modules' tables are published as one immutable snapshot,
replaced whole on every load and unload (the model's stand-in for the RCU-protected
module list); a reader that took the old snapshot finishes with it.
"""

from __future__ import annotations

import bisect
import threading
import zlib
from dataclasses import dataclass
from functools import cached_property

from kernel_daemon.errno import quoted
from kernel_daemon.module.symbols import Symbol
from kernel_daemon.tracefs.seq_file import SeqOperations, SeqRecords

#: The return addresses of the upstream report's call trace (8c4f3c3fa968's message:
#: 3.6.11+, the WARN at kernel/trace/ftrace.c:1529 under ``echo ... > set_ftrace_filter``),
#: as offsets into their callers, by call edge (caller, callee): a stack with the report's
#: edges prints the report's frames. Its ``? kfree+0x2c/0x110`` and ``?
#: trace_hardirqs_on_thunk+0x3a/0x3c`` lines are stale words the unwinder found on the
#: stack, not calls (the ``?``), which the model's stack does not have. The two WARN
#: sites of __ftrace_hash_rec_update (the count's overflow and underflow) share the
#: underflow's, the report's, return address: the model has one call edge per pair.
REPORTED_RETURN_OFFSETS: dict[tuple[str, str], int] = {
    ("warn_slowpath_common", "dump_stack"): 0x7f,
    ("warn_slowpath_null", "warn_slowpath_common"): 0x1a,
    ("__ftrace_hash_rec_update", "warn_slowpath_null"): 0x1e3,
    ("ftrace_hash_move", "__ftrace_hash_rec_update"): 0x28,
    ("ftrace_regex_release", "ftrace_hash_move"): 0x8e,
    ("__fput", "ftrace_regex_release"): 0xae,
    ("____fput", "__fput"): 0xe,
    ("task_work_run", "____fput"): 0x72,
    ("do_notify_resume", "task_work_run"): 0x6c,
    ("int_signal", "do_notify_resume"): 0x12,
}


def return_address_in(caller: Symbol, callee: str) -> int:
    """A return address inside ``caller`` just after its call to ``callee``: what a
    call trace prints for the frame, and what ``ftrace_caller`` hands the tracer as
    ``parent_ip`` (the traced function's own return address, read from its frame).

    The report's, for the call edges its trace shows (:data:`REPORTED_RETURN_OFFSETS`).
    Otherwise no real code runs, so the offset is synthesised: stable across runs and
    processes (crc32, not ``hash()``), distinct per call edge, and strictly inside the
    function (never +0, which would read as a call to its first byte).
    """
    reported = REPORTED_RETURN_OFFSETS.get((caller.name, callee))
    if reported is not None:
        return caller.addr + reported
    if caller.size < 2:
        return caller.addr
    edge = zlib.crc32(f"{caller.name}<-{callee}".encode())
    return caller.addr + 1 + edge % (caller.size - 1)


@dataclass(frozen=True)
class _Table:
    """One symbol table sorted by address, answering for the addresses ``[start, end)``."""

    module: str | None
    start: int
    end: int
    addrs: tuple[int, ...]
    symbols: tuple[Symbol, ...]
    by_name: dict[str, tuple[Symbol, ...]]

    @classmethod
    def build(cls, module: str | None, symbols: list[Symbol], start: int, end: int) -> _Table:
        ordered = tuple(sorted(symbols, key=lambda sym: sym.addr))
        by_name: dict[str, tuple[Symbol, ...]] = {}
        for sym in ordered:
            by_name[sym.name] = by_name.get(sym.name, ()) + (sym,)
        return cls(module, start, end, tuple(sym.addr for sym in ordered), ordered, by_name)

    def lookup(self, addr: int) -> tuple[Symbol, int] | None:
        """The closest symbol at or below ``addr`` and the offset into it, which may pass
        its size (``get_ksymbol()``); None below the first symbol."""
        i = bisect.bisect_right(self.addrs, addr) - 1
        if i < 0:
            return None
        sym = self.symbols[i]
        return sym, addr - sym.addr

    @cached_property
    def records(self) -> SeqRecords:
        """What ``s_show()`` prints for each of the table's positions, with
        ``kptr_restrict`` 0: ``"%pK %c %s\\n"`` for the core's symbols; for a module's,
        ``"%pK %c %s\\t[%s]\\n"`` after an empty record for the null symbol that
        ``add_kallsyms()`` keeps at ``core_symtab[0]`` (``module_get_kallsym()`` counts it;
        ``s_show()`` prints nothing for a symbol without a name).  Printed at the first
        read that reaches the table, then kept: a table never changes."""
        if self.module is None:
            return SeqRecords.joined(f"{sym.addr:016x} {sym.type} {sym.name}\n".encode()
                                     for sym in self.symbols)
        return SeqRecords.joined([b"", *(
            f"{sym.addr:016x} {sym.type} {sym.name}\t[{self.module}]\n".encode()
            for sym in self.symbols)])


#: A position of ``/proc/kallsyms``: the records of the symbol table it is in, and its
#: index there.
KallsymPos = tuple[SeqRecords, int]


@dataclass(frozen=True)
class _Modules:
    """A published state of the module tables: newest first, and by start address."""

    newest_first: tuple[_Table, ...] = ()
    starts: tuple[int, ...] = ()
    by_start: tuple[_Table, ...] = ()


class Kallsyms:
    """The kernel's symbol tables: vmlinux's, fixed at boot, and one per loaded module."""

    def __init__(self, vmlinux: list[Symbol]) -> None:
        # _stext to _etext: the core's symbols tile the text, so every address in it has
        # the symbol whose range holds it.
        start = min(sym.addr for sym in vmlinux)
        end = max(sym.addr + sym.size for sym in vmlinux)
        self._core = _Table.build(None, vmlinux, start, end)
        self._modules = _Modules()
        # Serialises writers only; each publishes a new _Modules.
        self._write_lock = threading.Lock()

    def _publish(self, newest_first: tuple[_Table, ...]) -> None:
        by_start = tuple(sorted(newest_first, key=lambda table: table.start))
        self._modules = _Modules(newest_first, tuple(t.start for t in by_start), by_start)

    def add_module(self, name: str, symbols: list[Symbol], module_core: int,
                   core_size: int) -> None:
        """Make a module's symbols visible (``list_add_rcu(&mod->list, &modules)``).

        ``symbols`` are its text's, each sized to the next one or, for the last, to the
        end of the text (``core_text_size``); lookups answer for the whole core,
        ``[module_core, module_core + core_size)``, data included.
        """
        if any(sym.module != name for sym in symbols):
            raise ValueError(f"module {quoted(name)}: symbols must carry module={name!r}")
        table = _Table.build(name, symbols, module_core, module_core + core_size)
        with self._write_lock:
            if any(t.module == name for t in self._modules.newest_first):
                raise ValueError(f"module {quoted(name)} already has symbols")
            self._publish((table,) + self._modules.newest_first)

    def remove_module(self, name: str) -> None:
        """Drop a module's symbols (``list_del_rcu()``); KeyError if it has none."""
        with self._write_lock:
            tables = self._modules.newest_first
            if all(t.module != name for t in tables):
                raise KeyError(name)
            self._publish(tuple(t for t in tables if t.module != name))

    def lookup(self, addr: int) -> tuple[Symbol, int] | None:
        """``kallsyms_lookup()``: the symbol ``addr`` belongs to and the offset into it.

        In the core kernel's text that is the symbol containing it.  In a module's core
        it is ``module_address_lookup()``'s answer: the module whose core holds
        ``addr`` (``within_module_core()``), then the closest of its symbols at or below
        ``addr`` (``get_ksymbol()``), whose size ends at the next symbol or the end of
        the text and which the offset may pass (an address in the module's data).
        """
        if self._core.start <= addr < self._core.end:
            return self._core.lookup(addr)
        modules = self._modules
        i = bisect.bisect_right(modules.starts, addr) - 1
        if i < 0 or addr >= modules.by_start[i].end:
            return None
        return modules.by_start[i].lookup(addr)

    def lookup_name(self, name: str) -> list[Symbol]:
        """Every symbol called ``name``: vmlinux's, then the modules' newest first.

        ``kallsyms_lookup_name()`` returns the first of these.
        """
        found = list(self._core.by_name.get(name, ()))
        for table in self._modules.newest_first:
            found += table.by_name.get(name, ())
        return found

    def return_address(self, caller: str, callee: str) -> int | None:
        """:func:`return_address_in` the function ``kallsyms_lookup_name(caller)`` finds;
        None when there is none."""
        symbols = self.lookup_name(caller)
        return return_address_in(symbols[0], callee) if symbols else None

    def sprint_symbol(self, addr: int) -> str:
        """``%pS``: ``name+0xoff/0xsize``, then `` [module]`` for a module's symbol.

        An address no symbol covers prints as ``0x%lx``.  Linux's ``%#lx`` writes a
        zero offset as ``0x0``, unlike C's.
        """
        found = self.lookup(addr)
        if found is None:
            return f"0x{addr:x}"
        sym, offset = found
        text = f"{sym.name}+{offset:#x}/{sym.size:#x}"
        return f"{text} [{sym.module}]" if sym.module else text

    def sprint_symbol_no_offset(self, addr: int) -> str:
        """``%ps`` (3.6): ``name``, then `` [module]`` for a module's symbol, or ``0x%lx``."""
        found = self.lookup(addr)
        if found is None:
            return f"0x{addr:x}"
        sym = found[0]
        return f"{sym.name} [{sym.module}]" if sym.module else sym.name

    def module_get_kallsym(self, symnum: int) -> KallsymPos | None:
        """``module_get_kallsym()``: the module symbol at index ``symnum`` of all of them,
        counted down the module list as it is now, newest first: its module's records
        and its index in them; None past the last."""
        for table in self._modules.newest_first:
            records = table.records
            if symnum < len(records):
                return records, symnum
            symnum -= len(records)
        return None

    # -- /proc/kallsyms: kallsyms_op ----------------------------------------------------
    # 3.6's struct kallsym_iter only saves a name lookup when a read goes on where the
    # last stopped; a position here is found at once, so the model keeps none.

    def update_iter(self, pos: int) -> KallsymPos | None:
        """``update_iter()``: the core symbol ``pos`` below ``kallsyms_num_syms``, else
        ``get_ksymbol_mod()``'s module symbol ``pos - kallsyms_num_syms``, looked up
        afresh, so a module loaded or unloaded between two reads moves the module symbols
        the second read shows; None past the last."""
        core = self._core.records
        if pos < len(core):
            return core, pos
        return self.module_get_kallsym(pos - len(core))

    def s_start(self, pos: int) -> KallsymPos | None:
        """``s_start()``."""
        return self.update_iter(pos)

    def s_next(self, v: KallsymPos, pos: int) -> tuple[KallsymPos | None, int]:
        """``s_next()``."""
        pos += 1
        return self.update_iter(pos), pos

    def s_stop(self, v: KallsymPos | None) -> None:
        """``s_stop()``: no lock to drop, the module list being read as published."""

    def s_show(self, v: KallsymPos) -> bytes:
        """``s_show()``: the symbol's line (nothing for a module's null symbol)."""
        records, i = v
        return records[i]

    def s_run(self, v: KallsymPos, pos: int, count: int, size: int,
              m_size: int) -> tuple[bytes, KallsymPos, int]:
        """The symbols after ``v`` in its table that fit in the page, as ``s_next()`` and
        ``s_show()`` give them (``SeqOperations.run``): one slice of the table's records;
        the next table is left to those calls."""
        records, i = v
        chunk, n = records.run(i, count, size, m_size)
        return chunk, (records, i + n), pos + n

    def kallsyms_op(self) -> SeqOperations:
        """``kallsyms_op``, which ``kallsyms_open()`` gives ``/proc/kallsyms``."""
        return SeqOperations(self.s_start, self.s_next, self.s_stop, self.s_show, self.s_run)
