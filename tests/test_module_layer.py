"""The module layer: vmlinux, catalog, module address space, kallsyms, loader."""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable

import pytest

from kernel_daemon.failpoints import Failpoints
from kernel_daemon.ftrace.consistency import check_consistency
from kernel_daemon.module import vmlinux
from kernel_daemon.module.address_space import (
    MODULES_END,
    MODULES_VADDR,
    PAGE_SIZE,
    ModuleAddressSpace,
)
from kernel_daemon.module.catalog import (ModuleSpec, _depmod, load_catalog,
                                          module_from_function_list)
from kernel_daemon.module.kallsyms import Kallsyms
from kernel_daemon.module.loader import (
    MODULE_STATE_COMING,
    MODULE_STATE_GOING,
    MODULE_STATE_LIVE,
    Module,
    ModuleLoader,
)
from kernel_daemon.module.symbols import Symbol
from kernel_daemon.panic import TAINT_OOT_MODULE
from kernel_daemon.module.vmlinux import (
    MIN_FUNCTIONS,
    REQUIRED_FUNCTIONS,
    VMLINUX_TEXT_START,
    build_vmlinux,
)
from kernel_daemon.task import Task
from kernel_daemon.unwind import call_trace
from tests.kernel_helpers import booted, modprobe, seq_read_all
from tests.test_race_windows import Step
from tests.test_tracer_client import wait_until

# The upstream report's call trace (shared/spec/upstream-report-8c4f3c3.txt).
REPORT_TRACE = {
    0xffffffff8103e5ff: "warn_slowpath_common+0x7f/0xc0",
    0xffffffff8103e65a: "warn_slowpath_null+0x1a/0x20",
    0xffffffff810c2ee3: "__ftrace_hash_rec_update+0x1e3/0x230",
    0xffffffff810c4f28: "ftrace_hash_move+0x28/0x1d0",
    0xffffffff811401cc: "kfree+0x2c/0x110",
    0xffffffff810c68ee: "ftrace_regex_release+0x8e/0x150",
    0xffffffff81149f1e: "__fput+0xae/0x220",
    0xffffffff8114a09e: "____fput+0xe/0x10",
    0xffffffff8105fa22: "task_work_run+0x72/0x90",
    0xffffffff810028ec: "do_notify_resume+0x6c/0xc0",
    0xffffffff8126596e: "trace_hardirqs_on_thunk+0x3a/0x3c",
    0xffffffff815c0f88: "int_signal+0x12/0x17",
}
# The asm symbols the report pins at unaligned addresses.
UNALIGNED = {"trace_hardirqs_on_thunk", "int_signal", "int_restore_rest"}


@pytest.fixture(scope="module")
def core() -> list[Symbol]:
    return build_vmlinux()


@pytest.fixture
def kallsyms(core: list[Symbol]) -> Kallsyms:
    return Kallsyms(core)


@pytest.fixture
def taints() -> list[int]:
    """The flags the loader passed to ``add_taint()``, in order."""
    return []


@pytest.fixture
def logged() -> list[tuple[str, int]]:
    """What the loader printk()ed: (text, level), in order."""
    return []


@pytest.fixture
def space() -> ModuleAddressSpace:
    return ModuleAddressSpace()


@pytest.fixture
def loader(kallsyms: Kallsyms, space: ModuleAddressSpace, taints: list[int],
           logged: list[tuple[str, int]]) -> ModuleLoader:
    return ModuleLoader(kallsyms, space, taints.append,
                        lambda text, level: logged.append((text, level)), Failpoints())


def proc_modules(loader: ModuleLoader) -> str:
    """``/proc/modules`` as ``cat`` reads it."""
    return seq_read_all(loader.modules_op())


def proc_kallsyms(kallsyms: Kallsyms) -> str:
    """``/proc/kallsyms`` as ``cat`` reads it."""
    return seq_read_all(kallsyms.kallsyms_op())


def spec(name: str, *functions: str, in_tree: bool = True) -> ModuleSpec:
    return ModuleSpec(name, tuple((f, 0x40) for f in functions), in_tree, "test")


# vmlinux


def test_vmlinux_default_layout(core: list[Symbol]) -> None:
    assert len(core) == 40960
    assert core[0].addr == VMLINUX_TEXT_START
    names = [sym.name for sym in core]
    assert len(set(names)) == len(names)
    assert set(REQUIRED_FUNCTIONS) <= set(names)
    for prev, sym in zip(core, core[1:]):
        # Sorted and tiling the text: each size reaches the next symbol.
        assert prev.addr + prev.size == sym.addr
    assert all(sym.module is None and sym.type in "Tt" for sym in core)
    assert {sym.name for sym in core if sym.addr % 16} == UNALIGNED
    sizes = sorted(sym.size for sym in core)
    assert 0x20 <= sizes[len(sizes) // 2] <= 0x100


def test_vmlinux_has_the_named_functions() -> None:
    for name in ("warn_slowpath_common", "int_signal", "trace_hardirqs_on_thunk", "kfree",
                 "ftrace_startup", "ftrace_shutdown", "ftrace_update_code", "ftrace_release_mod",
                 "ftrace_module_notify", "match_records", "ftrace_stub", "tracing_set_tracer",
                 "sys_init_module", "sys_delete_module", "blocking_notifier_call_chain",
                 "notifier_call_chain", "print_modules", "add_taint", "vfs_write",
                 "system_call_fastpath", "schedule", "mutex_lock", "_raw_spin_lock",
                 "kmem_cache_alloc", "tick_sched_timer", "rcu_read_lock_held"):
        assert name in REQUIRED_FUNCTIONS


def test_vmlinux_is_deterministic() -> None:
    first = build_vmlinux(3000, seed=7)
    vmlinux._build.cache_clear()
    assert build_vmlinux(3000, seed=7) == first
    assert build_vmlinux(3000, seed=8) != first
    assert len(build_vmlinux(MIN_FUNCTIONS)) == MIN_FUNCTIONS
    with pytest.raises(ValueError, match="at least"):
        build_vmlinux(MIN_FUNCTIONS - 1)


def test_vmlinux_overflows_into_the_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    # Shrink the layout's capacity so a small build needs the tail past .irqentry.text.
    monkeypatch.setattr(vmlinux, "_MIN_MEAN_SIZE", 0x10000)
    vmlinux._build.cache_clear()
    symbols = build_vmlinux(2000, seed=1)
    vmlinux._build.cache_clear()
    assert len(symbols) == 2000 and len({sym.name for sym in symbols}) == 2000
    assert symbols[-1].addr > vmlinux._TAIL_START
    assert all(a.addr + a.size == b.addr for a, b in zip(symbols, symbols[1:]))


# catalog


def test_catalog() -> None:
    catalog = load_catalog()
    assert load_catalog() is catalog
    assert len(catalog) >= 13
    uinput = [name for name, _ in catalog["uinput"].functions]
    for name in ("uinput_open", "uinput_release", "uinput_read", "uinput_write", "uinput_poll",
                 "uinput_ioctl", "uinput_compat_ioctl", "uinput_dev_event", "uinput_create_device",
                 "uinput_destroy_device", "uinput_setup_device", "uinput_request_submit",
                 "uinput_dev_upload_effect", "uinput_dev_erase_effect", "uinput_ioctl_handler"):
        assert name in uinput
    assert catalog["uinput"].in_tree and not catalog["vboxdrv"].in_tree
    # EXPORT_SYMBOL ones only (snd_pcm_format_name is EXPORT_SYMBOL_GPL in 3.6).
    assert {"loop_register_transfer", "loop_unregister_transfer"} == catalog["loop"].exported
    assert {"snd_pcm_new", "snd_pcm_period_elapsed"} <= catalog["snd_pcm"].exported
    assert "snd_pcm_format_name" not in catalog["snd_pcm"].exported
    assert catalog["uinput"].exported == catalog["fat"].exported == frozenset()
    # fs/fat exports with EXPORT_SYMBOL_GPL only; vfat uses 17 of the 18 (not
    # fat_flush_inodes), which makes it depend on fat, and nothing on anything else.
    assert len(catalog["fat"].exported_gpl) == 18
    assert "fat_fill_super" in catalog["fat"].exported_gpl
    assert set(catalog["vfat"].imports) == catalog["fat"].exported_gpl - {"fat_flush_inodes"}
    assert {name: spec.depends for name, spec in catalog.items() if spec.depends} == {
        "vfat": ("fat",)}
    assert max(len(s.functions) for s in catalog.values()) >= 2000
    for mod in catalog.values():
        assert mod.name and mod.description
        assert all(0x20 <= size <= 0x800 for _, size in mod.functions)


def test_depmod_orders_the_dependencies_and_refuses_what_depmod_would() -> None:
    def module(name: str, exports: tuple[str, ...] = (), imports: tuple[str, ...] = ()
               ) -> ModuleSpec:
        return ModuleSpec(name, tuple((f, 0x40) for f in exports), True, "test",
                          exported_gpl=frozenset(exports), imports=imports)

    # top needs mid and base; mid needs base: base loads first, once.
    base, mid = module("base", ("b",)), module("mid", ("m",), ("b",))
    top = module("top", imports=("m", "b"))
    specs = {"top": top, "mid": mid, "base": base}
    assert _depmod(specs) == [("base", "mid"), ("base",), ()]
    with pytest.raises(ValueError, match=r"imports \['x'\], which no module exports"):
        _depmod({"top": module("top", imports=("x",))})
    with pytest.raises(ValueError, match="exports b, which base exports"):
        _depmod({"base": base, "other": module("other", ("b",))})
    cycle = {"a": module("a", ("fa",), ("fb",)), "b": module("b", ("fb",), ("fa",))}
    with pytest.raises(ValueError, match="dependency cycle: a -> b -> a"):
        _depmod(cycle)


def test_module_from_function_list() -> None:
    made = module_from_function_list("mymod", ["a_fn", "b_fn", "_c"])
    assert made == module_from_function_list("mymod", ["a_fn", "b_fn", "_c"])
    assert [f for f, _ in made.functions] == ["a_fn", "b_fn", "_c"]
    assert not made.in_tree
    assert all(0x20 <= size <= 0x800 for _, size in made.functions)
    assert len(module_from_function_list("x" * 55, ["f"] * 1).functions) == 1
    assert len(module_from_function_list("m", ["a" * 127]).functions) == 1  # KSYM_NAME_LEN - 1
    # No traceable function, and two static functions of one name, are both possible.
    assert module_from_function_list("my-mod", []).functions == ()
    assert [f for f, _ in module_from_function_list("m", ["f", "g", "f"]).functions] == [
        "f", "g", "f"]


@pytest.mark.parametrize("name, functions, message", [
    ("bad.name", ["f"], "module name"),
    ("", ["f"], "module name"),
    ("x" * 56, ["f"], "module name"),
    ("m", [f"f{i}" for i in range(65537)], 'module "m": 65537 functions, want at most 65536'),
    ("m", ["1abc"], "not a C identifier"),
    ("m", ["a b"], "not a C identifier"),
    ("m", ["a" * 128], "not a C identifier of at most 127 characters"),
    ("m", "abc", 'module "m": functions must be a list of names, not a string'),
])
def test_module_from_function_list_rejects(name: str, functions: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        module_from_function_list(name, functions)


# module address space


def test_first_fit_reuses_the_hole() -> None:
    space = ModuleAddressSpace()
    a = space.alloc(17185)
    b = space.alloc(1)
    assert a == MODULES_VADDR
    # 17185 bytes take 5 pages, then one guard page.
    assert b == a + 6 * PAGE_SIZE
    space.free(a)
    assert space.alloc(17185) == a
    assert space.alloc(PAGE_SIZE) == b + 2 * PAGE_SIZE
    with pytest.raises(KeyError):
        space.free(a + PAGE_SIZE)


def test_random_placement() -> None:
    bases = {ModuleAddressSpace("random", seed).alloc(PAGE_SIZE) for seed in range(8)}
    assert len(bases) == 8
    assert all(MODULES_VADDR <= b < MODULES_END and b % PAGE_SIZE == 0 for b in bases)
    space = ModuleAddressSpace("random", 3)
    first = [space.alloc(10000) for _ in range(20)]
    assert first == [ModuleAddressSpace("random", 3).alloc(10000)] + first[1:]
    spans = sorted((b, b + 4 * PAGE_SIZE) for b in first)
    assert all(end <= nxt for (_, end), (nxt, _) in zip(spans, spans[1:]))


class NotingLock:
    """``vmap_area_lock`` as a test watches it: a lock that notes the threads whose
    acquire found it held (and then waited for it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.waited: list[str] = []

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            self.waited.append(threading.current_thread().name)
            self._lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()


def test_an_alloc_searching_the_space_holds_vmap_area_lock() -> None:
    """alloc_vmap_area()'s search and insert are one critical section, and
    __free_vmap_area()'s erase waits for it: with the first alloc paused in its search
    for a hole, a second alloc and a free wait on vmap_area_lock, and the second alloc
    then finds the first one's area taken. Without the lock it took the same hole."""
    space = ModuleAddressSpace()
    lock = space.vmap_area_lock = NotingLock()  # type: ignore[assignment]
    old = space.alloc(1)  # one page and its guard page
    searching, go = threading.Event(), threading.Event()
    holes = space._holes

    def paused_holes(span: int) -> list[tuple[int, int]]:
        if not searching.is_set():
            searching.set()
            assert go.wait(timeout=30), "the first alloc was never let go"
        return holes(span)

    space._holes = paused_holes  # type: ignore[method-assign]
    bases: dict[str, int] = {}
    first = Step(lambda: bases.setdefault("first", space.alloc(1)))
    assert searching.wait(timeout=30), "the first alloc never searched"
    second = Step(lambda: bases.setdefault("second", space.alloc(1)))
    freeing = Step(space.free, old)
    try:
        wait_until(lambda: len(lock.waited) == 2 or not (second.is_alive()
                                                          and freeing.is_alive()))
        assert sorted(lock.waited) == sorted([second.name, freeing.name]) and not bases
    finally:
        go.set()
    for step in (first, second, freeing):
        step.finish()
    assert bases["first"] == old + 2 * PAGE_SIZE and bases["second"] != bases["first"]


def test_address_space_errors() -> None:
    with pytest.raises(ValueError):
        ModuleAddressSpace("best-fit")
    space = ModuleAddressSpace()
    with pytest.raises(MemoryError):
        space.alloc(MODULES_END - MODULES_VADDR)
    space.alloc(MODULES_END - MODULES_VADDR - PAGE_SIZE)
    with pytest.raises(MemoryError):
        space.alloc(1)


# kallsyms


def test_kallsyms_core(kallsyms: Kallsyms) -> None:
    for addr, text in REPORT_TRACE.items():
        assert kallsyms.sprint_symbol(addr) == text
    kfree = kallsyms.lookup_name("kfree")
    assert [sym.addr for sym in kfree] == [0xffffffff811401a0]
    assert kallsyms.lookup(kfree[0].addr) == (kfree[0], 0)
    assert kallsyms.sprint_symbol(kfree[0].addr) == "kfree+0x0/0x110"
    assert kallsyms.sprint_symbol_no_offset(0xffffffff811401cc) == "kfree"
    assert kallsyms.lookup(0x1000) is None
    assert kallsyms.sprint_symbol(0xffffffffa0000000) == "0xffffffffa0000000"
    assert kallsyms.sprint_symbol_no_offset(0x1000) == "0x1000"
    assert kallsyms.lookup_name("no_such_function") == []


def test_kallsyms_modules(kallsyms: Kallsyms) -> None:
    base = 0xffffffffa0000000
    kallsyms.add_module("uinput", [Symbol("uinput_open", base, 0x90, "uinput", "t"),
                                   Symbol("uinput_release", base + 0x90, 0x30, "uinput", "t")],
                        base, 0x1000)
    kallsyms.add_module("other", [Symbol("kfree", base + 0x3000, 0x40, "other", "t")],
                        base + 0x3000, 0x800)
    assert kallsyms.sprint_symbol(base + 0x9e) == "uinput_release+0xe/0x30 [uinput]"
    assert kallsyms.sprint_symbol_no_offset(base + 0x9e) == "uinput_release [uinput]"
    # Past the text, in the module's data: get_ksymbol()'s closest preceding symbol.
    assert kallsyms.sprint_symbol(base + 0xfff) == "uinput_release+0xf6f/0x30 [uinput]"
    assert kallsyms.lookup(base + 0x1000) is None
    assert kallsyms.lookup(base + 0x3800) is None
    # Core first, then modules newest first.
    assert [sym.module for sym in kallsyms.lookup_name("kfree")] == [None, "other"]
    text = proc_kallsyms(kallsyms)
    assert text.startswith(f"{VMLINUX_TEXT_START:016x} T do_one_initcall\n")
    assert "ffffffff8103e580 t warn_slowpath_common\n" in text
    assert text.endswith("ffffffffa0003000 t kfree\t[other]\n"
                         "ffffffffa0000000 t uinput_open\t[uinput]\n"
                         "ffffffffa0000090 t uinput_release\t[uinput]\n")
    kallsyms.remove_module("uinput")
    assert kallsyms.lookup(base + 0x9e) is None
    with pytest.raises(KeyError):
        kallsyms.remove_module("uinput")
    with pytest.raises(ValueError):
        kallsyms.add_module("other", [], base, 0x1000)
    with pytest.raises(ValueError):
        kallsyms.add_module("x", [Symbol("f", base, 0x10, "y", "t")], base, 0x1000)
    # A module with no function: its core has no symbol to name (get_ksymbol(): NULL).
    kallsyms.add_module("empty", [], base, 0x1000)
    assert kallsyms.sprint_symbol(base + 4) == f"{base + 4:#x}"


def test_kallsyms_readers_during_writes(kallsyms: Kallsyms) -> None:
    base = 0xffffffffa0100000
    symbols = [Symbol("churn_fn", base, 0x40, "churn", "t")]
    stop = threading.Event()
    seen: set[str] = set()
    core: set[str] = set()  # a thread's assert would only warn: the main thread checks

    def reader() -> None:
        while not stop.is_set():
            seen.add(kallsyms.sprint_symbol(base + 4))
            core.add(kallsyms.sprint_symbol(0xffffffff8103e5ff))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in range(300):
        kallsyms.add_module("churn", symbols, base, 0x1000)
        kallsyms.remove_module("churn")
    stop.set()
    for t in threads:
        t.join()
    assert seen <= {"churn_fn+0x4/0x40 [churn]", f"{base + 4:#x}"}
    assert core == {"warn_slowpath_common+0x7f/0xc0"}


# loader


def test_load_and_proc_modules(loader: ModuleLoader, kallsyms: Kallsyms) -> None:
    catalog = load_catalog()
    uinput = loader.load_module(catalog["uinput"])
    assert uinput.state == MODULE_STATE_LIVE and uinput.taints == ""
    assert uinput.module_core == MODULES_VADDR
    assert uinput.symbols[0].addr == MODULES_VADDR
    assert uinput.mcount_locs == [sym.addr for sym in uinput.symbols]
    assert all(uinput.within_module_core(ip) for ip in uinput.mcount_locs)
    assert not uinput.within_module_core(uinput.module_core + uinput.core_size)
    box = loader.load_module(catalog["vboxdrv"])
    assert loader.modules() == [box, uinput] and loader.find_module("uinput") is uinput
    assert proc_modules(loader) == (
        f"vboxdrv {box.core_size} 0 - Live 0x{box.module_core:016x} (O)\n"
        f"uinput {uinput.core_size} 0 - Live 0xffffffffa0000000\n")
    assert loader.print_modules() == "Modules linked in: vboxdrv(O) uinput"
    release = kallsyms.lookup_name("uinput_release")[0]
    assert kallsyms.sprint_symbol_no_offset(release.addr) == "uinput_release [uinput]"

    assert loader.delete_module("uinput") is uinput
    assert loader.find_module("uinput") is None and kallsyms.lookup_name("uinput_release") == []
    again = loader.load_module(catalog["uinput"])
    # The reproducer's premise: the reloaded module is at the old address.
    assert again.module_core == uinput.module_core and again is not uinput
    assert kallsyms.lookup_name("uinput_release")[0].addr == release.addr
    assert loader.print_modules() == (
        "Modules linked in: uinput vboxdrv(O) [last unloaded: uinput]")


def test_an_old_address_in_a_later_modules_core_names_its_closest_function(
        loader: ModuleLoader, kallsyms: Kallsyms) -> None:
    """uinput's last function lies, once the smaller dummy sits at the same base, in
    dummy's core past its text: module_address_lookup() takes the module whose core holds
    the address, get_ksymbol() its closest symbol below, sized to the end of the text."""
    catalog = load_catalog()
    uinput = loader.load_module(catalog["uinput"])
    ip = kallsyms.lookup_name("uinput_compat_ioctl")[0].addr
    loader.delete_module("uinput")
    dummy = loader.load_module(catalog["dummy"])
    last = dummy.symbols[-1]
    assert dummy.module_core == uinput.module_core and dummy.within_module_core(ip)
    assert last.name == "dummy_validate" and ip - last.addr > last.size
    assert kallsyms.lookup(ip) == (last, ip - last.addr)
    assert kallsyms.sprint_symbol(ip) == (
        f"dummy_validate+{ip - last.addr:#x}/{last.size:#x} [dummy]")
    assert kallsyms.sprint_symbol_no_offset(ip) == "dummy_validate [dummy]"
    assert kallsyms.lookup(dummy.module_core + dummy.core_size) is None


def test_proc_kallsyms_upper_cases_the_exported_functions(loader: ModuleLoader,
                                                          kallsyms: Kallsyms) -> None:
    """s_show(): a module's symbol is 'T' when is_exported() finds it in the module's
    EXPORT_SYMBOL table, 't' otherwise, EXPORT_SYMBOL_GPL ones included."""
    catalog = load_catalog()
    for name in ("snd_pcm", "loop", "fat", "uinput"):
        loader.load_module(catalog[name])
    letters = {}
    for line in proc_kallsyms(kallsyms).splitlines():
        head, _, module = line.partition("\t")
        if module:
            _, letter, name = head.split(" ")
            letters[name, module] = letter
    assert letters["snd_pcm_new", "[snd_pcm]"] == letters["snd_pcm_lib_ioctl", "[snd_pcm]"] == "T"
    assert letters["snd_pcm_format_name", "[snd_pcm]"] == "t"  # EXPORT_SYMBOL_GPL
    assert letters["snd_pcm_open", "[snd_pcm]"] == "t"  # static
    assert letters["loop_register_transfer", "[loop]"] == "T"
    assert letters["lo_ioctl", "[loop]"] == letters["fat_fill_super", "[fat]"] == "t"
    assert {letters[f, "[uinput]"] for f, _ in catalog["uinput"].functions} == {"t"}
    assert sum(letter == "T" for letter in letters.values()) == 2 + len(catalog["snd_pcm"].exported)


def test_a_loading_module_holds_its_init_reference(loader: ModuleLoader) -> None:
    """module_unload_init() takes a reference for init, and sys_init_module() drops it
    after the LIVE notifiers: /proc/modules' refcount column is 1 while Loading."""
    seen: list[tuple[int, str]] = []
    loader.register_module_notifier(lambda state, mod: seen.append((state, proc_modules(loader))))
    mod = loader.load_module(spec("m", "f"))
    line = f"m {mod.core_size} %d - %s 0x{mod.module_core:016x}\n"
    assert seen == [(MODULE_STATE_COMING, line % (1, "Loading")),
                    (MODULE_STATE_LIVE, line % (1, "Live"))]
    assert mod.refcnt == 0 and proc_modules(loader) == line % (0, "Live")
    loader.delete_module("m")
    assert seen[-1] == (MODULE_STATE_GOING, line % (0, "Unloading"))


def test_an_out_of_tree_module_taints_before_it_is_linked(
        loader: ModuleLoader, space: ModuleAddressSpace, taints: list[int]) -> None:
    """check_modinfo() taints in layout_and_allocate(), before the module has memory or
    is on the list: loads that fail after (ENOMEM, EEXIST) leave the kernel tainted."""
    seen: list[list[int]] = []
    loader.register_module_notifier(lambda state, mod: seen.append(list(taints)))
    loader.load_module(spec("intree", "f"))
    assert taints == []
    loader.load_module(spec("oot", "g", in_tree=False))
    assert taints == [TAINT_OOT_MODULE] and seen[2] == [TAINT_OOT_MODULE]  # at COMING
    with pytest.raises(FileExistsError):
        loader.load_module(spec("oot", "g", in_tree=False))
    last = space.alloc(1)  # a page and its guard page, after the two modules
    space.alloc(MODULES_END - last - 3 * PAGE_SIZE)  # the rest, less its guard page
    with pytest.raises(MemoryError):
        loader.load_module(spec("other", "h", in_tree=False))
    assert taints == [TAINT_OOT_MODULE] * 3
    assert [mod.name for mod in loader.modules()] == ["oot", "intree"]


def test_a_full_module_space_is_enomem_before_an_unknown_symbol_or_eexist(
        loader: ModuleLoader, space: ModuleAddressSpace,
        logged: list[tuple[str, int]]) -> None:
    """layout_and_allocate() comes before simplify_symbols() and the name's check: with
    the module space full, a load fails ENOMEM whatever else is wrong with it, and says
    nothing of its symbols."""
    loader.load_module(spec("m", "f"))
    rest = space.alloc(1)
    space.free(rest)
    space.alloc(MODULES_END - rest - PAGE_SIZE)  # up to MODULES_END, its guard page in
    with pytest.raises(MemoryError):
        loader.load_module(spec("m", "g"))  # not EEXIST
    with pytest.raises(MemoryError):
        loader.load_module(load_catalog()["vfat"])  # not ENOENT: fat is not loaded
    assert logged == [] and [mod.name for mod in loader.modules()] == ["m"]


def test_delete_module_reads_the_name_as_strncpy_from_user_does(loader: ModuleLoader) -> None:
    """sys_delete_module() copies MODULE_NAME_LEN-1 bytes at most, up to a NUL; an empty
    name is one find_module() does not find."""
    with pytest.raises(LookupError):
        loader.delete_module("")
    loader.load_module(spec("x" * 55, "f"))
    assert loader.delete_module("x" * 55 + "tail").name == "x" * 55
    loader.load_module(spec("m", "f"))
    assert loader.delete_module("m\0junk").name == "m"
    assert loader.modules() == []


def test_load_errors(loader: ModuleLoader) -> None:
    loader.load_module(spec("m", "f"))
    with pytest.raises(FileExistsError) as exc:
        loader.load_module(spec("m", "g"))
    assert exc.value.errno == errno.EEXIST
    with pytest.raises(LookupError):
        loader.delete_module("absent")
    # A reference held past LIVE (init's, until sys_init_module() drops it): 3.6's
    # try_stop_module() under rmmod's O_NONBLOCK refuses with EWOULDBLOCK, not EBUSY.
    loader.find_module("m").refcnt = 1
    with pytest.raises(BlockingIOError, match="in use") as busy:
        loader.delete_module("m")
    assert busy.value.errno == errno.EWOULDBLOCK == errno.EAGAIN
    assert loader.find_module("m").state == MODULE_STATE_LIVE


def test_notifier_order_and_states(loader: ModuleLoader) -> None:
    events: list[tuple[str, int, int]] = []
    traces: list[list[str]] = []

    def first(state: int, mod: Module) -> None:
        events.append(("first", state, mod.state))
        traces.append(call_trace())

    loader.register_module_notifier(first)
    loader.register_module_notifier(lambda state, mod: events.append(("second", state, mod.state)))
    loader.load_module(spec("m", "f"))
    loader.delete_module("m")
    assert events == [
        ("first", MODULE_STATE_COMING, MODULE_STATE_COMING),
        ("second", MODULE_STATE_COMING, MODULE_STATE_COMING),
        ("first", MODULE_STATE_LIVE, MODULE_STATE_LIVE),
        ("second", MODULE_STATE_LIVE, MODULE_STATE_LIVE),
        ("first", MODULE_STATE_GOING, MODULE_STATE_GOING),
        ("second", MODULE_STATE_GOING, MODULE_STATE_GOING),
    ]
    chain = ["notifier_call_chain", "__blocking_notifier_call_chain",
             "blocking_notifier_call_chain"]
    assert traces[0] == chain + ["sys_init_module", "system_call_fastpath"]
    assert traces[2] == chain + ["sys_delete_module", "system_call_fastpath"]


def test_coming_notifier_failure_is_undone(loader: ModuleLoader, kallsyms: Kallsyms) -> None:
    events: list[tuple[int, str]] = []

    def record(state: int, mod: Module) -> None:
        events.append((state, proc_modules(loader)))

    def fail(state: int, mod: Module) -> None:
        if state == MODULE_STATE_COMING:
            raise OSError(errno.ENOMEM, "no memory for records")

    loader.register_module_notifier(record)
    loader.register_module_notifier(fail)
    with pytest.raises(OSError, match="no memory"):
        loader.load_module(spec("m", "f"))
    assert [state for state, _ in events] == [MODULE_STATE_COMING, MODULE_STATE_GOING]
    assert events[0][1].startswith("m ") and " 1 - Loading " in events[0][1]
    # The failed init's module_put() comes before the GOING notifiers.
    assert " 0 - Unloading " in events[1][1]
    assert loader.modules() == [] and kallsyms.lookup_name("f") == []
    assert loader.print_modules() == "Modules linked in:"
    loader.module_notifiers.remove(fail)
    assert loader.load_module(spec("m", "f")).module_core == MODULES_VADDR


def test_transitions_seen_by_other_syscalls(loader: ModuleLoader) -> None:
    results: dict[str, object] = {}

    def during(state: int, mod: Module) -> None:
        if state == MODULE_STATE_COMING:
            with pytest.raises(RuntimeError, match="loading"):
                loader.delete_module(mod.name)
            results["flags"] = loader.print_modules()
        elif state == MODULE_STATE_GOING:
            with pytest.raises(FileExistsError):
                loader.load_module(spec(mod.name, "g"))
            results["proc"] = proc_modules(loader)

    loader.register_module_notifier(during)
    loader.load_module(spec("oot", "f", in_tree=False))
    loader.delete_module("oot")
    assert results["flags"] == "Modules linked in: oot(O+)"
    assert results["proc"].endswith(" Unloading 0xffffffffa0000000 (O-)\n")


def test_a_module_that_uses_another_holds_a_reference_to_it_until_it_goes(
        loader: ModuleLoader, logged: list[tuple[str, int]]) -> None:
    """vfat's imports resolve to fat's exports: ref_module() takes a reference on fat and
    links vfat into fat's users (/proc/modules' fourth column); fat cannot go before
    vfat (EWOULDBLOCK), and vfat's unload gives the reference back (module_unload_free())."""
    catalog = load_catalog()
    with pytest.raises(FileNotFoundError) as missing:
        loader.load_module(catalog["vfat"])
    assert missing.value.errno == errno.ENOENT and loader.modules() == []
    # simplify_symbols() reports every symbol before it fails: PTR_ERR(NULL) is 0.
    assert logged == [(f"vfat: Unknown symbol {name} (err 0)", 4)
                      for name in catalog["vfat"].imports]

    fat = loader.load_module(catalog["fat"])
    assert fat.module_core == MODULES_VADDR  # the failed vfat freed its area
    vfat = loader.load_module(catalog["vfat"])
    assert (fat.refcnt, fat.source_list, vfat.target_list) == (1, (vfat,), (fat,))
    assert (vfat.refcnt, vfat.source_list) == (0, ())
    assert proc_modules(loader) == (
        f"vfat {vfat.core_size} 0 - Live 0x{vfat.module_core:016x}\n"
        f"fat {fat.core_size} 1 vfat, Live 0x{fat.module_core:016x}\n")
    with pytest.raises(BlockingIOError, match='in use by "vfat"') as used:
        loader.delete_module("fat")
    assert used.value.errno == errno.EWOULDBLOCK and fat.state == MODULE_STATE_LIVE
    # A second vfat resolves (a second link and reference) before its name is refused;
    # the failed load gives them back.
    with pytest.raises(FileExistsError):
        loader.load_module(catalog["vfat"])
    assert (fat.refcnt, fat.source_list) == (1, (vfat,))

    loader.delete_module("vfat")
    assert (fat.refcnt, fat.source_list, vfat.target_list) == (0, (), ())
    assert proc_modules(loader) == f"fat {fat.core_size} 0 - Live 0x{fat.module_core:016x}\n"
    loader.delete_module("fat")
    assert loader.modules() == []


def load_vfat_during(loader: ModuleLoader, fat_state: int,
                     signal_pending: Callable[[], bool] = lambda: False) -> list[int]:
    """Have fat's notifier for ``fat_state`` load vfat (its caller's ``signal_pending``
    that given), which must fail; returns the errnos those loads failed with, filled in
    as fat goes through that state."""
    errors: list[int] = []

    def load_vfat(state: int, mod: Module) -> None:
        if state == fat_state and mod.name == "fat":
            with pytest.raises(OSError) as exc:
                loader.load_module(load_catalog()["vfat"], signal_pending=signal_pending)
            errors.append(exc.value.errno)

    loader.register_module_notifier(load_vfat)
    return errors


def test_a_module_needed_while_it_unloads_is_an_unknown_symbol(
        loader: ModuleLoader, logged: list[tuple[str, int]]) -> None:
    """find_symbol() finds an unloading module's exports, but try_module_get() refuses it:
    each symbol fails with -ENOENT."""
    catalog = load_catalog()
    errors = load_vfat_during(loader, MODULE_STATE_GOING)
    fat = loader.load_module(catalog["fat"])
    loader.delete_module("fat")
    assert errors == [errno.ENOENT] and loader.modules() == []
    assert logged == [(f"vfat: Unknown symbol {name} (err -2)", 4)
                      for name in catalog["vfat"].imports]
    assert (fat.refcnt, fat.source_list) == (0, ())


@pytest.fixture
def waiting(loader: ModuleLoader, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set once a load waits on ``module_wq`` (resolve_symbol_wait()), whose time limit
    is put out of reach: only a wake-up ends the wait."""
    monkeypatch.setattr("kernel_daemon.module.loader.RESOLVE_WAIT_SECONDS", 3600)
    waiting = threading.Event()
    wait = loader.module_wq.wait

    def noting_wait(timeout: float | None = None) -> bool:
        waiting.set()
        return wait(timeout)

    monkeypatch.setattr(loader.module_wq, "wait", noting_wait)
    return waiting


def test_a_load_waits_for_a_module_it_needs_to_finish_loading(
        loader: ModuleLoader, waiting: threading.Event) -> None:
    """strong_try_module_get() refuses a module still loading (EBUSY), and
    resolve_symbol_wait() waits on module_wq until sys_init_module() wakes it: vfat,
    loaded while fat's COMING notifiers run, loads once fat is LIVE (the wait's time
    limit is out of reach: only the wake-up ends it)."""
    catalog = load_catalog()
    loaded: list[Module] = []
    vfat = threading.Thread(target=lambda: loaded.append(loader.load_module(catalog["vfat"])),
                            daemon=True)

    def start_vfat_while_fat_loads(state: int, mod: Module) -> None:
        if state == MODULE_STATE_COMING and mod.name == "fat":
            vfat.start()
            assert waiting.wait(timeout=30), "vfat never waited for fat"

    loader.register_module_notifier(start_vfat_while_fat_loads)
    fat = loader.load_module(catalog["fat"])
    vfat.join(timeout=30)
    assert not vfat.is_alive(), "vfat was not woken when fat went LIVE"
    assert [m.name for m in loaded] == ["vfat"] and fat.source_list == tuple(loaded)


def test_a_load_waiting_for_a_symbol_holds_its_area(
        loader: ModuleLoader, waiting: threading.Event) -> None:
    """vfat allocates before it resolves fat's symbols: while it waits for fat to finish
    loading, the hole after fat is vfat's, and a module loaded meanwhile lands past it."""
    catalog = load_catalog()
    meanwhile: list[tuple[Step, Module]] = []

    def load_vfat_then_m(state: int, mod: Module) -> None:
        if state == MODULE_STATE_COMING and mod.name == "fat":
            vfat = Step(loader.load_module, catalog["vfat"])
            assert waiting.wait(timeout=30), "vfat never waited for fat"
            meanwhile.append((vfat, loader.load_module(spec("m", "f"))))

    loader.register_module_notifier(load_vfat_then_m)
    fat = loader.load_module(catalog["fat"])
    [(vfat, m)] = meanwhile
    vfat.finish()
    [vfat_mod] = fat.source_list
    assert fat.module_core < vfat_mod.module_core < m.module_core


def test_a_load_gives_up_on_a_module_that_stays_loading(
        loader: ModuleLoader, logged: list[tuple[str, int]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """resolve_symbol_wait()'s wait runs out (30 s in the kernel, none here): it says so,
    and the symbol fails with the EBUSY strong_try_module_get() gave."""
    monkeypatch.setattr("kernel_daemon.module.loader.RESOLVE_WAIT_SECONDS", 0)
    catalog = load_catalog()
    errors = load_vfat_during(loader, MODULE_STATE_COMING)
    fat = loader.load_module(catalog["fat"])
    assert errors == [errno.EBUSY] and [m.name for m in loader.modules()] == ["fat"]
    first = catalog["vfat"].imports[0]
    assert logged[:2] == [("vfat: gave up waiting for init of module fat.", 4),
                          (f"vfat: Unknown symbol {first} (err -16)", 4)]
    assert len(logged) == 2 * len(catalog["vfat"].imports)  # each symbol waits again
    assert (fat.refcnt, fat.source_list) == (0, ())


def test_a_signal_ends_the_wait_for_a_module_still_loading(
        loader: ModuleLoader, logged: list[tuple[str, int]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """wait_event_interruptible_timeout() with a signal pending (the model's: the caller
    went away): each symbol whose module is still loading gives up at once, with the
    time limit out of reach, and fails with EBUSY; vfat is not loaded."""
    monkeypatch.setattr("kernel_daemon.module.loader.RESOLVE_WAIT_SECONDS", 3600)

    def never(timeout: float | None = None) -> bool:
        raise AssertionError("waited on module_wq with a signal pending")

    monkeypatch.setattr(loader.module_wq, "wait", never)
    catalog = load_catalog()
    errors = load_vfat_during(loader, MODULE_STATE_COMING, signal_pending=lambda: True)
    fat = loader.load_module(catalog["fat"])
    assert errors == [errno.EBUSY] and [m.name for m in loader.modules()] == ["fat"]
    assert logged == [line for name in catalog["vfat"].imports for line in (
        ("vfat: gave up waiting for init of module fat.", 4),
        (f"vfat: Unknown symbol {name} (err -16)", 4))]
    assert (fat.refcnt, fat.source_list) == (0, ())


def test_concurrent_loads(loader: ModuleLoader, kallsyms: Kallsyms) -> None:
    errors: list[BaseException] = []

    def churn(i: int) -> None:
        try:
            for _ in range(20):
                loader.load_module(spec(f"mod{i}", f"fn{i}_a", f"fn{i}_b"))
                loader.delete_module(f"mod{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and loader.modules() == []
    assert proc_kallsyms(kallsyms).count("\t[") == 0


def test_a_load_that_fails_eexist_holds_its_area_until_it_fails(loader: ModuleLoader) -> None:
    """A second "m" allocates before it takes module_mutex to find the name taken: while
    it waits for the mutex (a /proc/modules read holds it), the hole after the first "m"
    is its own, and a load meanwhile lands past it; the EEXIST frees it again."""
    first = loader.load_module(spec("m", "f"))
    loader.m_start(0)
    try:
        duplicate = Step(loader.load_module, spec("m", "f"))
        assert duplicate.blocked(on=loader.module_mutex)
        other = Step(loader.load_module, spec("other", "g"))
        assert other.blocked(on=loader.module_mutex)
    finally:
        loader.m_stop(None)
    with pytest.raises(FileExistsError):
        duplicate.finish()
    other.finish()
    # "later", of the duplicate's size, takes the hole the duplicate left.
    later = loader.load_module(spec("later", "f"))
    assert first.module_core < later.module_core < loader.find_module("other").module_core


def test_free_module_frees_the_memory_with_module_mutex_dropped(
        loader: ModuleLoader, space: ModuleAddressSpace) -> None:
    """free_module() calls module_free() after it drops module_mutex: a /proc/modules read
    then does not wait for the free, and no longer lists the module."""
    free = space.free
    read: list[str] = []

    def module_free(base: int) -> None:
        reader = Step(lambda: read.append(proc_modules(loader)))
        assert not reader.blocked(on=loader.module_mutex), "module_mutex held at the free"
        reader.finish()
        free(base)

    space.free = module_free  # type: ignore[method-assign]
    loader.load_module(spec("m", "f"))
    loader.delete_module("m")
    assert read == [""]


class Interrupted(BaseException):
    """An asynchronous exception (KeyboardInterrupt, a thread's SystemExit) arriving
    in the middle of the loader's work."""


def first_free(space: ModuleAddressSpace) -> int:
    """Where the next one-page area would go (first-fit): the lowest free page."""
    base = space.alloc(1)
    space.free(base)
    return base


def test_an_exception_amid_a_load_or_an_unload_still_frees_the_area(
        loader: ModuleLoader, space: ModuleAddressSpace,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever is raised once the area is allocated, the load or unload that owns it
    frees it: it leaked when the layout (between module_alloc() and the unwinding's
    try) or module_unload_free() (before the free) raised."""

    def interrupted(*args: object) -> None:
        raise Interrupted

    monkeypatch.setattr("kernel_daemon.module.loader._layout", interrupted)
    with pytest.raises(Interrupted):
        loader.load_module(spec("m", "f"))
    monkeypatch.undo()
    assert first_free(space) == MODULES_VADDR and loader.modules() == []
    m = loader.load_module(spec("m", "f"))
    after_m = first_free(space)
    monkeypatch.setattr(loader, "_module_unload_free", interrupted)
    with pytest.raises(Interrupted):  # in the unwinding of the EEXIST
        loader.load_module(spec("m", "f"))
    assert first_free(space) == after_m
    with pytest.raises(Interrupted):  # in free_module()
        loader.delete_module("m")
    assert first_free(space) == m.module_core and loader.modules() == []


def test_a_module_whose_record_pages_cannot_be_had_fails_to_load_and_leaves_nothing(
        monkeypatch):
    """Out of file descriptors, the module's record pages cannot be made
    (ftrace_allocate_pages() failing): the load is ENOMEM (MemoryError), the module is
    unwound, and it loads once descriptors are back."""
    def no_more_files(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    with booted() as kernel:
        monkeypatch.setattr("kernel_daemon.ftrace.records.ShmSegment", no_more_files)
        with pytest.raises(MemoryError, match="FAILED to allocate memory for functions"):
            modprobe(kernel, "uinput")
        monkeypatch.undo()
        assert kernel.modules.find_module("uinput") is None
        assert check_consistency(kernel.ftrace) == []
        assert modprobe(kernel, "uinput").name == "uinput"


def test_a_load_that_finds_module_mutex_held_passes_its_contention_failpoint() -> None:
    """``module_mutex`` is a mutex of the model's (kernel_daemon.mutex): a modprobe that
    finds it held, here by a ``/proc/modules`` read between m_start() and m_stop(), passes
    ``__mutex_lock_slowpath:module_mutex`` before it sleeps, as a call that finds
    ftrace_lock held passes that lock's. No daemon call holds module_mutex at a failpoint
    (none sits inside it), so the holder here is the kernel's own read."""
    site = "__mutex_lock_slowpath:module_mutex"
    with booted() as kernel:
        kernel.failpoints.configure(site, "1*pause")
        kernel.modules.m_start(0)
        load = threading.Thread(target=modprobe, args=(kernel, "dummy"), daemon=True)
        load.start()
        try:
            assert kernel.failpoints.wait_paused(site, timeout=30)
            assert kernel.failpoints.state(site).paused == (Task(20950, "modprobe"),)
        finally:
            kernel.modules.m_stop(None)
            kernel.failpoints.release(site)
            load.join(timeout=30)
        assert not load.is_alive()
        assert kernel.modules.find_module("dummy").state == MODULE_STATE_LIVE
