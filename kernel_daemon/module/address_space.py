"""Where modules live: the x86_64 module mapping space.

Model of ``arch/x86/kernel/module.c:module_alloc()`` (3.6), which is
``__vmalloc_node_range(size, 1, MODULES_VADDR, MODULES_END, ...)``: a page-aligned
range between ``MODULES_VADDR`` and ``MODULES_END``, followed by vmalloc's unmapped
guard page.  ``alloc_vmap_area()`` takes the lowest hole that fits, so a module
reloaded after an unload lands at its old address unless something took the hole;
that is how the upstream reproducer gets "the same address" on reload.  The space is
serialised by vmalloc's own ``vmap_area_lock``, not ``module_mutex``: 3.6's
``load_module()`` allocates before it takes that mutex, and ``free_module()`` frees
after it has dropped it.

Where the model differs: ``vfree()`` releases vmap areas lazily
(``free_vmap_area_noflush()`` batches them until ``lazy_max_pages()``), so a real
reload does not always get its old address back, and the report says to retry; here a
freed range is reusable at once.  The ``random`` policy is the
model's, to spread loads over the space (3.6 had no module address randomisation).
"""

from __future__ import annotations

import bisect
import itertools
import random
import threading

MODULES_VADDR = 0xffffffffa0000000
MODULES_END = 0xffffffffff000000
PAGE_SIZE = 4096

_POLICIES = ("first-fit", "random")


def _check_policy(policy: str) -> None:
    if policy not in _POLICIES:
        raise ValueError(f"placement policy {policy!r}: want one of {', '.join(_POLICIES)}")


class ModuleAddressSpace:
    """Allocated ranges of the module space; :meth:`alloc` and :meth:`free` may run
    concurrently from many threads."""

    def __init__(self, policy: str = "first-fit", seed: int = 0) -> None:
        _check_policy(policy)
        self._policy = policy
        self._rng = random.Random(seed)
        # vmap_area_lock: a spinlock around alloc_vmap_area()'s search and insert and
        # __free_vmap_area()'s erase; it guards the areas and the random policy's draws.
        self.vmap_area_lock = threading.Lock()
        # Sorted bases of the allocated areas, and each area's span (guard page included).
        self._bases: list[int] = []
        self._spans: dict[int, int] = {}

    def _holes(self, span: int) -> list[tuple[int, int]]:
        """The free ranges ``(start, end)`` at least ``span`` bytes long, lowest first."""
        holes = []
        start = MODULES_VADDR
        for base in self._bases + [MODULES_END]:
            if base - start >= span:
                holes.append((start, base))
            if base != MODULES_END:
                start = base + self._spans[base]
        return holes

    def alloc(self, size: int, policy: str | None = None) -> int:
        """Reserve ``size`` bytes, rounded up to pages, plus a guard page; return the base.

        ``policy`` places this one area ("first-fit" or "random"); None takes the
        space's own. Raises MemoryError when no hole fits (``module_alloc()`` returns
        NULL and ``init_module`` fails with -ENOMEM).
        """
        policy = policy or self._policy
        _check_policy(policy)
        if size <= 0:
            raise ValueError(f"module_alloc of {size} bytes")
        span = -(-size // PAGE_SIZE) * PAGE_SIZE + PAGE_SIZE
        with self.vmap_area_lock:
            holes = self._holes(span)
            if not holes:
                raise MemoryError(f"no room for {size} bytes in the module space")
            if policy == "first-fit":
                return self._reserve(holes[0][0], span)
            # Uniform over every page-aligned position where the area fits: number the
            # positions hole by hole and draw one.
            ends = list(itertools.accumulate((end - start - span) // PAGE_SIZE + 1
                                             for start, end in holes))
            pick = self._rng.randrange(ends[-1])
            hole = bisect.bisect_right(ends, pick)
            first = ends[hole - 1] if hole else 0
            return self._reserve(holes[hole][0] + (pick - first) * PAGE_SIZE, span)

    def _reserve(self, base: int, span: int) -> int:
        """``__insert_vmap_area()``, under ``vmap_area_lock``."""
        bisect.insort(self._bases, base)
        self._spans[base] = span
        return base

    def free(self, base: int) -> None:
        """``module_free()``: release the area at ``base`` (``free_vmap_area()``, under
        ``vmap_area_lock``); KeyError if none is allocated there."""
        with self.vmap_area_lock:
            del self._spans[base]
            self._bases.remove(base)
