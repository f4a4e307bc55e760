"""vmlinux's symbol table as ``make`` writes it, and a boot's use of it."""

from __future__ import annotations

import marshal
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_daemon.module import vmlinux, vmlinux_table
from kernel_daemon.module.symbols import Symbol
from kernel_daemon.module.vmlinux import (
    DEFAULT_FUNCTIONS,
    DEFAULT_SEED,
    MIN_FUNCTIONS,
    build_vmlinux,
    generate_vmlinux,
)
from kernel_daemon.module.vmlinux_table import read_table, write_table
from tests.children import child_env

ROOT = Path(__file__).resolve().parent.parent
SMALL = MIN_FUNCTIONS + 500


def test_a_table_reads_back_as_the_symbols_generated(tmp_path: Path) -> None:
    path = tmp_path / "vmlinux.kallsyms"
    generated = generate_vmlinux(SMALL, 7)
    write_table(generated, SMALL, 7, path)
    assert read_table(SMALL, 7, path) == generated
    assert [p.name for p in tmp_path.iterdir()] == ["vmlinux.kallsyms"]


def test_a_table_of_another_configuration_is_passed_over(tmp_path: Path) -> None:
    path = tmp_path / "vmlinux.kallsyms"
    write_table(generate_vmlinux(SMALL, 7), SMALL, 7, path)
    assert read_table(SMALL, 8, path) is None
    assert read_table(SMALL + 1, 7, path) is None


def test_a_table_from_another_generator_is_passed_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "vmlinux.kallsyms"
    write_table(generate_vmlinux(SMALL, 7), SMALL, 7, path)
    monkeypatch.setattr(vmlinux_table, "generator_digest", lambda: "0" * 64)
    assert read_table(SMALL, 7, path) is None


@pytest.mark.parametrize("damage", ["missing", "empty", "truncated", "not marshal", "a list"])
def test_a_table_that_cannot_be_read_is_passed_over(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "vmlinux.kallsyms"
    write_table(generate_vmlinux(SMALL, 7), SMALL, 7, path)
    whole = path.read_bytes()
    match damage:
        case "missing":
            path.unlink()
        case "empty":
            path.write_bytes(b"")
        case "truncated":
            path.write_bytes(whole[:len(whole) // 2])
        case "not marshal":
            path.write_bytes(b"\xff" * 64)
        case "a list":
            path.write_bytes(marshal.dumps([1, 2, 3]))
    assert read_table(SMALL, 7, path) is None


def test_makes_step_writes_the_default_boots_table(tmp_path: Path) -> None:
    path = tmp_path / "vmlinux.kallsyms"
    subprocess.run([sys.executable, "-m", "kernel_daemon.module.vmlinux_table", str(path)],
                   cwd=ROOT, check=True, timeout=120)
    assert read_table(DEFAULT_FUNCTIONS, DEFAULT_SEED, path) == generate_vmlinux(
        DEFAULT_FUNCTIONS, DEFAULT_SEED)


def test_makes_step_answers_help_and_writes_nothing(tmp_path: Path) -> None:
    """``--help`` is no path to write a table to: usage, in a directory left empty."""
    run = subprocess.run([sys.executable, "-m", "kernel_daemon.module.vmlinux_table", "--help"],
                         cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                         timeout=120)
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.startswith("usage: python -m kernel_daemon.module.vmlinux_table [-h] [PATH]")
    assert "kernel_daemon/module/vmlinux.kallsyms" in " ".join(run.stdout.split())
    assert list(tmp_path.iterdir()) == []


def test_the_default_boot_gets_the_generated_symbols_table_or_not() -> None:
    """Whatever table this checkout holds, a boot of the default configuration gets
    exactly what the generator makes."""
    assert build_vmlinux() == list(generate_vmlinux(DEFAULT_FUNCTIONS, DEFAULT_SEED))


def test_the_default_boot_reads_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The table is what a default boot uses: one whose first symbol is renamed shows."""
    generated = generate_vmlinux(DEFAULT_FUNCTIONS, DEFAULT_SEED)
    first = generated[0]
    marked = (Symbol("marked_by_the_table", first.addr, first.size, None, first.type),
              *generated[1:])
    monkeypatch.setattr(vmlinux_table, "TABLE", tmp_path / "vmlinux.kallsyms")
    write_table(marked, DEFAULT_FUNCTIONS, DEFAULT_SEED, vmlinux_table.TABLE)
    vmlinux._build.cache_clear()
    try:
        assert build_vmlinux()[0].name == "marked_by_the_table"
        assert build_vmlinux(DEFAULT_FUNCTIONS + 1)[0].name == first.name
    finally:
        vmlinux._build.cache_clear()
