"""One worker process of a stress run: ``python -m clients.stress.worker``.

The orchestrator writes the :class:`~clients.stress.workers.WorkerSpec` as one JSON line
on the worker's standard input and keeps the pipe open; anything more on it, or its end
(the orchestrator died), tells the worker to stop after the operation in progress. The
exit status says how it ended: 0 stopped as told or its operations done,
:data:`EXIT_DAEMON_GONE` the daemon stopped answering.
"""

from __future__ import annotations

import json
import os
import sys
import threading

from clients.api import Client
from clients.identity import Identity
from clients.stress.history import Recorder
from clients.stress.workers import WORKERS, DaemonGone, WorkerSpec

EXIT_DAEMON_GONE = 3


def _watch_stdin(stop: threading.Event) -> None:
    sys.stdin.readline()  # a line or end of file: either way, stop
    stop.set()


def run(spec: WorkerSpec, stop: threading.Event) -> int:
    recorder = Recorder(spec.history, spec.name, spec.kind)
    worker_class = WORKERS[spec.kind]
    client = Client(spec.address, Identity(os.getpid(), worker_class.comm))
    worker = worker_class(spec, client, recorder)
    try:
        done = 0
        while not stop.is_set() and (spec.ops is None or done < spec.ops):
            worker.step()
            done += 1
        worker.finish()
        return 0
    except DaemonGone:
        worker.abandon()
        return EXIT_DAEMON_GONE
    finally:
        recorder.close()
        client.close()


def main() -> int:
    spec = WorkerSpec(**json.loads(sys.stdin.readline()))
    stop = threading.Event()
    threading.Thread(target=_watch_stdin, args=(stop,), daemon=True, name="stop").start()
    return run(spec, stop)


if __name__ == "__main__":
    sys.exit(main())
