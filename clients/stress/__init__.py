"""``ftrace-stress``: many concurrent clients against one ftraced, a history of every
operation, checks all along, a report, and a minimal reproducer.

Modules: ``cli`` (the command line), ``runner`` (one run), ``workers`` and ``worker`` (the
client processes), ``history`` (the JSON-lines history), ``checker`` (consistency over RPC,
shared-memory snapshots, dmesg), ``commands`` (operations as ftrace-shell commands),
``replay`` and ``minimize`` (replays on fresh daemons, delta debugging, interleavings),
``report`` (report.json, report.txt).
"""



def main(argv: list[str] | None = None) -> int:
    """The ``ftrace-stress`` console entry (imported lazily: a worker process imports this
    package too, and needs none of the orchestrator)."""
    from clients.stress.cli import main as cli_main

    return cli_main(argv)
