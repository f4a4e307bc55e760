"""Memory: shared memory per function record, and the daemon's resident memory.

An ephemeral daemon boots a 60,000-function kernel and loads 10 modules of the catalog.
Measured:

- **shared memory per record**: the size of the record page segments and the page
  directory in ``/dev/shm`` (``ftsim.<pid>.*.pg*``, ``*.pagedir``), over the number of
  records; against ``sizeof(struct dyn_ftrace)`` on x86_64, 16 bytes (ratio = 16 / ours:
  what the pages' rounding and the directory add);
- **resident memory**: ``VmRSS`` of the daemon; against the bare gRPC echo server's (a
  Python process with grpcio and nothing else), for scale.

Each figure is taken from 5 daemons booted one after the other (one daemon, sampled 5
times, in quick mode).
"""

from __future__ import annotations

import glob
import os
import tempfile

from bench import REPS, Entry, Stats, entry
from bench.procs import Server, rss_bytes

CORE_FUNCTIONS = 60_000
MODULES = 10
QUICK_CORE_FUNCTIONS, QUICK_MODULES = 4_096, 3
DYN_FTRACE_SIZE = 16


def _record_shm(pid: int) -> tuple[int, int]:
    """(bytes of the record pages and page directory, records) of the daemon ``pid``, the
    records counted from the page directory, as ftrace-inspect reads it."""
    from kernel_daemon.ftrace.records import DIR_ENTRY, DIR_HEADER

    directories = glob.glob(f"/dev/shm/ftsim.{pid}.*.pagedir")
    if len(directories) != 1:
        raise RuntimeError(f"expected one page directory of pid {pid}, found {directories}")
    with open(directories[0], "rb") as directory:
        data = directory.read()
    nr_groups = DIR_HEADER.unpack_from(data, 0)[3]
    records = sum(DIR_ENTRY.unpack_from(data, DIR_HEADER.size + slot * DIR_ENTRY.size)[2]
                  for slot in range(nr_groups))
    paths = directories + glob.glob(directories[0][:-len("pagedir")] + "pg*")
    return sum(os.stat(path).st_size for path in paths), records


def _measure(daemon: Server, modules: int) -> tuple[float, float, int]:
    from clients.api import Client
    from clients.identity import Identity

    with Client(daemon.address, Identity.current("bench")) as client:
        catalog = sorted(module.name for module in client.catalog())
        for name in catalog[:modules]:
            client.load(name, if_loaded_ok=True)
    shm, records = _record_shm(daemon.pid)
    return shm / records, float(rss_bytes(daemon.pid)), records


def run(quick: bool = False, seed: int = 1) -> list[Entry]:
    per_record: list[float] = []
    rss: list[float] = []
    echo_rss: list[float] = []
    records = 0
    functions, modules = ((QUICK_CORE_FUNCTIONS, QUICK_MODULES) if quick
                          else (CORE_FUNCTIONS, MODULES))
    options = ["--core-functions", str(functions), "--seed", str(seed)]
    with tempfile.TemporaryDirectory(prefix="ftbench-mem-") as directory:
        with Server("echo", "unix", directory=directory) as echo:
            if quick:
                with Server("daemon", "unix", options, directory=directory) as daemon:
                    for _ in range(REPS):
                        shm, resident, records = _measure(daemon, modules)
                        per_record.append(shm)
                        rss.append(resident)
                        echo_rss.append(float(rss_bytes(echo.pid)))
            else:
                for _ in range(REPS):
                    with Server("daemon", "unix", options, directory=directory) as daemon:
                        shm, resident, records = _measure(daemon, modules)
                    per_record.append(shm)
                    rss.append(resident)
                    echo_rss.append(float(rss_bytes(echo.pid)))
    what = f"{functions:,}-function kernel and {modules} modules ({records:,} records)"
    return [
        entry("memory/shm_bytes_per_record", "B", Stats(per_record),
              "sizeof(struct dyn_ftrace), x86_64", Stats([float(DYN_FTRACE_SIZE)]), None,
              higher_is_better=False, group="Memory",
              note=f"record pages and page directory in /dev/shm, {what}"),
        entry("memory/daemon_rss", "B", Stats(rss), "bare gRPC echo server", Stats(echo_rss),
              None, higher_is_better=False, group="Memory", note=f"ftraced VmRSS, {what}"),
    ]
