"""One worker process of a stress run: ``python -m clients.stress.worker``.

The conversation with the orchestrator, one line at a time:

1. the orchestrator writes the :class:`~clients.stress.workers.WorkerSpec` as JSON on
   standard input;
2. the worker connects to the daemon and writes ``ready`` on standard output;
3. the orchestrator writes ``go`` once every worker is ready, so that all of them start
   together (starting a Python process takes a while, and not all at the same pace);
4. ``hold`` holds the worker after the operation in progress, until ``go`` again (the
   checker's snapshot of the kernel at work, ``Run.hold_writers``); anything else on
   standard input, or its end (the orchestrator died), tells the worker to stop after
   the operation in progress.

The exit status says how it ended: 0 stopped as told or its operations done,
:data:`~clients.stress.workers.EXIT_DAEMON_GONE` the daemon stopped answering,
:data:`~clients.stress.workers.EXIT_REBOOTED` the kernel it was born in (the spec's
``boot_id``, which every call of it carries: the boot fence) rebooted.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from clients.api import Client
from clients.connection import connect
from clients.errors import FtraceError
from clients.identity import Identity
from clients.stress.history import Recorder
from clients.stress.workers import (EXIT_DAEMON_GONE, EXIT_REBOOTED, WORKERS, DaemonGone,
                                    KernelRebooted, WorkerSpec)

#: How long a worker waits for the daemon to accept its connection.
CONNECT_TIMEOUT = 60.0


def _watch_stdin(stop: threading.Event, running: threading.Event) -> None:
    """Step 4 of the module docstring: ``running`` is cleared while held; a stop sets
    both, so that a held worker stops too."""
    while (word := sys.stdin.readline().strip()) in ("hold", "go"):
        if word == "hold":
            running.clear()
        else:
            running.set()
    stop.set()
    running.set()


def _wait_while_held(running: threading.Event, recorder: Recorder) -> bool:
    """``running.wait()``, the hold in the history when there is one (``held`` as the
    worker parks, ``go`` as it goes on): where a test of the checker's hold sees it."""
    if not running.is_set():
        recorder.held()
        running.wait()
        recorder.went()
    return True


def run(spec: WorkerSpec, stop: threading.Event) -> int:
    worker_class = WORKERS[spec.kind]
    recorder = Recorder(spec.history, spec.name, spec.kind)
    try:
        # The run's daemon answered the orchestrator: a refusal is the daemon gone, said
        # at once, not waited for as one still starting.
        identity = Identity(os.getpid(), worker_class.comm, spec.boot_id)
        client = Client(connection=connect(spec.address, identity, wait=CONNECT_TIMEOUT,
                                           answered=True))
    except FtraceError:
        recorder.close()
        return EXIT_DAEMON_GONE
    worker = worker_class(spec, client, recorder)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        stop.set()
    cpu_at_go = time.process_time()
    running = threading.Event()
    running.set()
    threading.Thread(target=_watch_stdin, args=(stop, running), daemon=True,
                     name="stop").start()
    try:
        done = 0
        while (_wait_while_held(running, recorder) and not stop.is_set()
               and (spec.ops is None or done < spec.ops)):
            worker.step()
            done += 1
        recorder.closing()
        worker.finish()
        return 0
    except DaemonGone:
        worker.abandon()
        return EXIT_DAEMON_GONE
    except KernelRebooted:
        worker.abandon()
        return EXIT_REBOOTED
    finally:
        recorder.close(cpu_s=round(time.process_time() - cpu_at_go, 6))
        client.close()


def main() -> int:
    spec = WorkerSpec(**json.loads(sys.stdin.readline()))
    return run(spec, threading.Event())


if __name__ == "__main__":
    sys.exit(main())
