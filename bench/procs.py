"""Processes the benchmarks start: ephemeral daemons, the echo server, client workers.

Every process started here is stopped by the object that started it (SIGTERM to its pid,
SIGKILL if it does not go), never by name.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench import REPO_ROOT
from clients.connection import grpc_target
from clients.procfs import process_cpu_seconds


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (REPO_ROOT, env.get("PYTHONPATH"))))
    return env


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def address_for(transport: str, directory: str, name: str) -> str:
    if transport == "unix":
        return "unix:" + os.path.join(directory, f"{name}.sock")
    return f"127.0.0.1:{free_tcp_port()}"


def rss_bytes(pid: int) -> int:
    """VmRSS of a process, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Process:
    """A child process in its own process group, with its output in a log file."""

    def __init__(self, argv: Sequence[str], log_path: str, stdin: int | None = None,
                 stdout_pipe: bool = False) -> None:
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.popen = subprocess.Popen(list(argv), stdin=stdin,
                                          stdout=subprocess.PIPE if stdout_pipe else log,
                                          stderr=log, env=_env(), cwd=REPO_ROOT,
                                          process_group=0)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as log:
                return log.read()
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        for pipe in (self.popen.stdin, self.popen.stdout):
            if pipe is not None:
                pipe.close()
        return self.popen.returncode


def wait_serving(address: str, process: Process, timeout: float = 180.0,
                 health: bool = True) -> None:
    """Until the server at ``address`` answers (its health service, or just connects)."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(grpc_target(address)) as channel:
        ready = grpc.channel_ready_future(channel)
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            while True:
                if process.popen.poll() is not None:
                    raise RuntimeError(f"server exited while starting:\n{process.log()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not serving after {timeout}s:\n{process.log()}")
                try:
                    ready.result(timeout=0.2)
                except grpc.FutureTimeoutError:
                    continue
                if not health:
                    return
                try:
                    answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                except grpc.RpcError:
                    time.sleep(0.05)
                    continue
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                time.sleep(0.05)
        finally:
            ready.cancel()  # stop its connectivity polling before the channel closes


class Server:
    """ftraced (``kind`` "daemon") or the echo server (``kind`` "echo") on one address."""

    def __init__(self, kind: str, transport: str = "unix", options: Sequence[str] = (),
                 directory: str | None = None, instance: int = 0) -> None:
        """``instance`` tells apart servers of one kind in one directory."""
        self._own_dir = directory is None
        self.directory = directory or tempfile.mkdtemp(prefix="ftbench-")
        self.kind = kind
        name = f"{kind}{instance}" if instance else kind
        self.address = address_for(transport, self.directory, name)
        module = "kernel_daemon" if kind == "daemon" else "bench.echo_server"
        argv = [sys.executable, "-m", module, "--listen", self.address, *options]
        self.process = Process(argv, os.path.join(self.directory, f"{name}-{transport}.log"),
                               stdin=subprocess.PIPE if kind == "echo" else None)
        try:
            wait_serving(self.address, self.process, health=kind == "daemon")
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Servers:
    """``count`` servers of one kind side by side, each a process of its own, for a
    measurement to take in turn (``itertools.cycle(servers.addresses)``).

    Two processes of the same server differ in speed by up to a fifth for as long as
    they live (seen here: two echo servers measured in alternation for 15 windows,
    1,403 against 1,170 calls/s), more than the overhead being measured; a figure taken
    in turn over several of them is not one process's luck.
    """

    def __init__(self, count: int, kind: str, transport: str = "unix",
                 options: Sequence[str] = (), directory: str | None = None) -> None:
        self.servers: list[Server] = []
        try:
            for instance in range(count):
                self.servers.append(Server(kind, transport, options, directory, instance))
        except BaseException:
            self.stop()
            raise

    @property
    def addresses(self) -> list[str]:
        return [server.address for server in self.servers]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def __enter__(self) -> "Servers":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Window:
    """What :meth:`WorkerPool.measure` saw: operations per second in the window, calls
    (operations: ``bench.rpc_worker``) made in all (the warm-up's too), and the CPU
    seconds the workers, and the server when its pid was given, spent on them (the server
    does nothing else meanwhile)."""

    rate: float
    calls: int
    client_cpu: float
    server_cpu: float | None = None

    @property
    def client_cpu_per_call(self) -> float:
        return self.client_cpu / self.calls

    @property
    def server_cpu_per_call(self) -> float | None:
        return None if self.server_cpu is None else self.server_cpu / self.calls


class WorkerPool:
    """``size`` client processes (``bench.rpc_worker``), started once and reused."""

    def __init__(self, size: int, directory: str) -> None:
        self.workers: list[Process] = []
        try:
            for i in range(size):
                self.workers.append(Process([sys.executable, "-m", "bench.rpc_worker"],
                                            os.path.join(directory, f"worker{i}.log"),
                                            stdin=subprocess.PIPE, stdout_pipe=True))
            # Every worker has started (imported grpc and the rest) before any window.
            for worker in self.workers:
                assert worker.popen.stdout is not None
                if not worker.popen.stdout.readline():
                    raise RuntimeError(f"worker {worker.pid} died starting:\n{worker.log()}")
        except BaseException:
            self.close()
            raise

    def measure(self, op: str | Sequence[str], target: str, clients: int, duration: float,
                lead: float = 0.3, server_pid: int | None = None) -> Window:
        """``clients`` workers running ``op`` (or each its own of ``clients`` ops)
        against ``target`` together for ``duration`` seconds (after ``lead`` seconds of
        warm-up): operations per second, the operations made in all and the CPU the
        workers (and the server at ``server_pid``) spent."""
        server_before = process_cpu_seconds(server_pid) if server_pid else None
        workers = self.workers[:clients]
        if len(workers) < clients:
            raise ValueError(f"the pool has {len(self.workers)} workers, not {clients}")
        ops = [op] * clients if isinstance(op, str) else list(op)
        if len(ops) != clients:
            raise ValueError(f"{len(ops)} ops for {clients} workers")
        start = time.monotonic() + lead
        for worker, worker_op in zip(workers, ops):
            assert worker.popen.stdin is not None
            worker.popen.stdin.write(json.dumps({"op": worker_op, "target": target,
                                                 "start": start, "duration": duration})
                                     .encode() + b"\n")
            worker.popen.stdin.flush()
        total = calls = 0
        cpu = 0.0
        errors = []
        for worker in workers:
            assert worker.popen.stdout is not None
            answer = worker.popen.stdout.readline()
            if not answer:
                raise RuntimeError(f"worker {worker.pid} died:\n{worker.log()}")
            result = json.loads(answer)
            if "error" in result:
                errors.append(result["error"])
            else:
                total += result["count"]
                calls += result["calls"]
                cpu += result["cpu"]
        if errors:
            raise RuntimeError(f"{op} on {target}: {errors[0]}")
        server_after = process_cpu_seconds(server_pid) if server_pid else None
        server_cpu = (server_after - server_before
                      if server_before is not None and server_after is not None else None)
        return Window(total / duration, calls, cpu, server_cpu)

    def warm(self, op: str | Sequence[str], target: str, clients: int | None = None) -> None:
        """Connect the workers to ``target`` and run ``op`` a little, untimed, so that no
        window starts with a connection being made."""
        self.measure(op, target, clients or len(self.workers), 0.05, lead=1.0)

    def close(self) -> None:
        for worker in self.workers:
            if worker.popen.stdin is not None and worker.popen.poll() is None:
                try:
                    worker.popen.stdin.write(b'{"op": "quit"}\n')
                    worker.popen.stdin.flush()
                except OSError:
                    pass
            worker.stop()
        self.workers = []
