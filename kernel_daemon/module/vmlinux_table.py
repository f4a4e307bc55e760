"""vmlinux's symbol table as the build leaves it: what a boot reads instead of generating.

The kernel's counterpart is the last step of linking vmlinux: ``scripts/kallsyms`` turns
the linked image's symbols into the ``kallsyms_*`` arrays (``.tmp_kallsyms2.S``) once, at
``make`` time, and every boot reads them.  The model generates its vmlinux from a seed
(:mod:`kernel_daemon.module.vmlinux`), which at the default 40,960 functions costs
about 0.2 s of CPU against 0.07-0.09 s to read the table: some 0.1 s of the 0.5-0.7 s
of CPU a default daemon takes to answer its first call, paid by every daemon a test, a
client's ``--spawn`` or a benchmark starts.  So ``make`` writes the default
configuration's table here (``python -m kernel_daemon.module.vmlinux_table``), and a boot
with that configuration reads it instead.

The table is a cache and nothing more: it holds the generator's own output and a digest of
the generator's source and of the Python that ran it, and one that is missing, unreadable,
of another configuration, or written by another version of the generator or of Python is
passed over, so the boot generates the same symbols itself.
"""

from __future__ import annotations

import argparse
import hashlib
import marshal
import os
import sys
from itertools import repeat
from pathlib import Path

from kernel_daemon.module.symbols import Symbol

#: Where ``make`` writes the table, beside the generator (ignored by git).
TABLE = Path(__file__).with_name("vmlinux.kallsyms")
_FORMAT = "ftrace-sim vmlinux kallsyms 1"


def generator_digest() -> str:
    """The generator's source, which decides every name, address, size and type, and the
    Python that ran it (whose ``random`` draws them)."""
    source = Path(__file__).with_name("vmlinux.py").read_bytes()
    return hashlib.sha256(source + sys.version.encode()).hexdigest()


def read_table(nr_functions: int, seed: int,
               path: Path | None = None) -> tuple[Symbol, ...] | None:
    """The symbols ``build_vmlinux(nr_functions, seed)`` generates, if ``path`` (by
    default :data:`TABLE`) holds them; None if it holds anything else or cannot be read."""
    try:
        data = marshal.loads((path or TABLE).read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not (isinstance(data, tuple) and len(data) == 8 and data[:4] == (
            _FORMAT, generator_digest(), nr_functions, seed)):
        return None
    names, addrs, sizes, types = data[4:]
    return tuple(map(Symbol, names, addrs, sizes, repeat(None), types))


def write_table(symbols: tuple[Symbol, ...], nr_functions: int, seed: int,
                path: Path) -> None:
    """Write ``symbols`` as the table of ``(nr_functions, seed)``, replacing ``path``
    whole: a boot that reads it meanwhile finds the old table or the new one."""
    data = marshal.dumps((
        _FORMAT, generator_digest(), nr_functions, seed,
        [sym.name for sym in symbols], [sym.addr for sym in symbols],
        [sym.size for sym in symbols], "".join(sym.type for sym in symbols)))
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """``make``'s step: generate the default configuration's vmlinux and write its table."""
    from kernel_daemon.module.vmlinux import DEFAULT_FUNCTIONS, DEFAULT_SEED, generate_vmlinux

    parser = argparse.ArgumentParser(
        prog="python -m kernel_daemon.module.vmlinux_table",
        description="Generate the default boot's vmlinux "
                    f"({DEFAULT_FUNCTIONS} functions, seed {DEFAULT_SEED}) and write its "
                    "symbol table, which a boot of that configuration reads instead of "
                    "generating it (make gen's step).")
    parser.add_argument("path", nargs="?", type=Path, default=TABLE, metavar="PATH",
                        help="where to write it (default: the one a boot reads, "
                             f"{TABLE.relative_to(TABLE.parents[2])})")
    args = parser.parse_args(argv)
    write_table(generate_vmlinux(DEFAULT_FUNCTIONS, DEFAULT_SEED), DEFAULT_FUNCTIONS,
                DEFAULT_SEED, args.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
