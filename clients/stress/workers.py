"""The clients of a stress run, one kind per class; each runs in a process of its own.

- tracer: registers an ftrace_ops with random filter and notrace patterns (a kernel
  module calling register_ftrace_function), changes them, unregisters;
- loader: modprobe / rmmod of a few catalog modules, so that modules come back at the
  address they left (first-fit placement) while hashes still name their functions;
- shell: what a user types in tracefs: ``echo P > set_ftrace_filter``, ``>>``,
  ``set_ftrace_notrace``, ``echo function|nop > current_tracer``;
- invoker: CPUs executing random functions (``Tracer.Invoke``).

Patterns lean towards module functions, so the precondition of the 8c4f3c3 bug (a hash
naming a module function while the module is reloaded) arises again and again. Every
choice comes from the worker's own generator, seeded from the run seed and its name. A
shell's and an invoker's choices depend on nothing else, so a seed repeats them whole; a
tracer's and a loader's next operation depends on the kernel's last answer too (a
refused register, as a filter naming a module not loaded gets, is followed by another
register, not by a filter change; a loader unloads what it loaded, and learns of another
loader's work from a refusal), and the answers depend on how the clients interleaved,
which the machine's scheduling decides: the same seed makes the same choices up to the
first answer that differs, and different ones after it.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any, Callable

from clients.api import Client, TracerSession
from clients.errors import FtraceError
from clients.stress.commands import TRACING_DIR
from clients.stress.history import RESULT_ERROR, RESULT_OK, RESULT_UNKNOWN, Recorder
from kernel_daemon.teardown import REBOOTED

#: A worker's exit status when the daemon stopped answering.
EXIT_DAEMON_GONE = 3
#: A worker's exit status when the kernel it was born in rebooted (:class:`KernelRebooted`).
EXIT_REBOOTED = 4


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process is told at start (sent as JSON)."""

    name: str  # "tracer0", "loader1", ...
    kind: str
    address: str
    seed: int
    history: str  # its history file
    ops: int | None  # operations to do; None: until told to stop
    modules: dict[str, list[str]]  # the modules in play and their functions
    core: list[str]  # a sample of the core kernel's functions (available_filter_functions)
    # The run's boot: every call says the worker was born in it (Identity.boot_id, the
    # boot fence), so that none changes a kernel booted after it. None: no fence.
    boot_id: int | None = None


class DaemonGone(Exception):
    """The daemon did not answer at all (not an errno of the kernel): stop."""


class KernelRebooted(Exception):
    """The kernel the worker was born in rebooted: a call met it gone (ENODEV, "the
    kernel rebooted"), and with the boot fence every later call would too. Stop, as a
    process dies with its kernel, without a word to the new one."""


class Worker:
    """One client: ``step()`` does one operation, ``finish()`` leaves nothing behind."""

    comm = "stress"

    def __init__(self, spec: WorkerSpec, client: Client, recorder: Recorder) -> None:
        self.spec = spec
        self.client = client
        self.recorder = recorder
        self.rng = random.Random(f"{spec.seed}/{spec.name}")
        self.modules = sorted(spec.modules)

    def call(self, op: str, args: dict[str, Any], fn: Callable[[], Any],
             describe: Callable[[Any], dict[str, Any]] | None = None) -> tuple[bool, Any]:
        """Run one operation, recording its invocation and its completion around it."""
        op_id = self.recorder.invoke(op, args)
        self.client.lock_acquired = ()
        try:
            result = fn()
        except FtraceError as error:
            if not error.from_kernel:
                self.recorder.complete(op_id, RESULT_UNKNOWN, error.errno_name)
                raise DaemonGone(str(error)) from error
            self.recorder.complete(op_id, RESULT_ERROR, error.errno_name,
                                   lock_ns=self.lock_acquired())
            if error.kernel_gone == REBOOTED:
                raise KernelRebooted(str(error)) from error
            return False, error
        self.recorder.complete(op_id, RESULT_OK, value=describe(result) if describe else None,
                               lock_ns=self.lock_acquired())
        return True, result

    def lock_acquired(self) -> tuple[int, ...]:
        """When the operation just done acquired ftrace_lock, as the daemon said."""
        return self.client.lock_acquired

    def step(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Called once the worker is told to stop (not after DaemonGone or KernelRebooted)."""

    def abandon(self) -> None:
        """The daemon or its kernel is gone: drop what is open without talking to it."""

    # --- argument choices ---------------------------------------------------

    def module_function(self) -> tuple[str, str]:
        module = self.rng.choice(self.modules)
        return module, self.rng.choice(self.spec.modules[module])

    def pattern(self, commands: bool) -> str:
        """A filter pattern: mostly a module's function, as a name or a glob; with
        ``commands`` (the regex files) sometimes ``:mod:M``; else a core function."""
        roll = self.rng.random()
        module, function = self.module_function()
        if roll < 0.55:
            return function
        if roll < 0.67:
            return function[: max(3, len(function) // 2)] + "*"
        if commands and roll < 0.75:
            return f":mod:{module}"
        return self.rng.choice(self.spec.core)

    def notrace_pattern(self) -> str:
        """Mostly a module function: the notrace half of 8c4f3c3 (a filter-less ops whose
        notrace names a function of a module being loaded) is only exercised so. In the
        buggy kernel that is a leak, no WARN, which ``--stop-on warning`` goes past; the
        WARN's precondition is the filter's (:meth:`pattern`), untouched by this."""
        if self.rng.random() < 0.7:
            return self.module_function()[1]
        return self.rng.choice(self.spec.core)


class TracerWorker(Worker):
    comm = "ftrace-tracer"

    def __init__(self, spec: WorkerSpec, client: Client, recorder: Recorder) -> None:
        super().__init__(spec, client, recorder)
        self.session: TracerSession | None = None
        self.sessions = 0

    def step(self) -> None:
        if self.session is None:
            self.register()
        else:
            roll = self.rng.random()
            if roll < 0.30:
                self.set_filter(reset=True, notrace=False)
            elif roll < 0.50:
                self.set_filter(reset=False, notrace=False)
            elif roll < 0.65:
                self.set_filter(reset=self.rng.random() < 0.5, notrace=True)
            else:
                self.unregister()
        if self.session is not None:
            self.session.take_hits()  # the hits themselves are not looked at

    def lock_acquired(self) -> tuple[int, ...]:
        # Its operations are requests on its session's stream, whose answers say it (a
        # register that failed left no session, and reports no time).
        return self.session.lock_acquired if self.session is not None else ()

    def register(self) -> None:
        self.sessions += 1
        name = f"{self.spec.name}.s{self.sessions}"
        # An empty filter traces everything: new module records must count it too.
        filters = [] if self.rng.random() < 0.15 else [
            self.pattern(commands=False) for _ in range(self.rng.choice((1, 1, 2)))]
        notrace = [self.notrace_pattern()] if self.rng.random() < 0.3 else []
        self.call("register", {"name": name, "filter": filters, "notrace": notrace},
                  lambda: self.attach(name, filters, notrace),
                  lambda s: {"filter_count": s.registered.filter_count,
                             "notrace_count": s.registered.notrace_count})

    def attach(self, name: str, filters: list[str], notrace: list[str]) -> TracerSession:
        # The session is this worker's before call() records the register's completion,
        # which lock_acquired() reads from it.
        self.session = self.client.attach(name, filters, notrace)
        return self.session

    def set_filter(self, reset: bool, notrace: bool) -> None:
        assert self.session is not None
        session = self.session
        if reset and self.rng.random() < 0.15:
            text = ""
        else:
            text = self.notrace_pattern() if notrace else self.pattern(commands=False)
        self.call("set_filter", {"name": f"{self.spec.name}.s{self.sessions}", "text": text,
                                 "reset": reset, "notrace": notrace},
                  lambda: session.set_filter(text, reset=reset, notrace=notrace),
                  lambda r: {"filter_count": r.filter_count, "notrace_count": r.notrace_count})

    def unregister(self) -> None:
        assert self.session is not None
        ok, _ = self.call("unregister", {"name": f"{self.spec.name}.s{self.sessions}"},
                          self.session.unregister)
        session, self.session = self.session, None
        if not ok:
            session.cancel()

    def finish(self) -> None:
        if self.session is not None:
            self.unregister()

    def abandon(self) -> None:
        if self.session is not None:
            self.session.cancel()


class LoaderWorker(Worker):
    comm = "modprobe"

    def __init__(self, spec: WorkerSpec, client: Client, recorder: Recorder) -> None:
        super().__init__(spec, client, recorder)
        # What this loader believes; other loaders change it behind its back.
        self.loaded: dict[str, bool] = {}

    def step(self) -> None:
        module = self.rng.choice(self.modules)
        if self.loaded.get(module):
            self.client.identity = dataclasses.replace(self.client.identity, comm="rmmod")
            ok, error = self.call("rmmod", {"module": module}, lambda: self.client.unload(module),
                                  module_value)
            self.loaded[module] = not ok and error.errno_name != "ENOENT"
        else:
            self.client.identity = dataclasses.replace(self.client.identity, comm="modprobe")
            ok, _ = self.call("modprobe", {"module": module},
                              lambda: self.client.load(module, if_loaded_ok=True), module_value)
            self.loaded[module] = ok


def module_value(info: Any) -> dict[str, Any]:
    return {"base": f"{info.base:#x}", "load_seq": info.load_seq,
            "already_loaded": info.already_loaded}


class ShellWorker(Worker):
    comm = "bash"

    def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.30:
            self.write("set_ftrace_filter", self.pattern(commands=True), append=False)
        elif roll < 0.42:
            negate = "!" if self.rng.random() < 0.15 else ""
            self.write("set_ftrace_filter", negate + self.pattern(commands=True), append=True)
        elif roll < 0.48:
            self.write("set_ftrace_filter", "", append=False)
        elif roll < 0.56:
            text = "" if self.rng.random() < 0.3 else self.notrace_pattern()
            self.write("set_ftrace_notrace", text, append=self.rng.random() < 0.5)
        elif roll < 0.80:
            self.write("current_tracer", "function", append=False)
        else:
            self.write("current_tracer", "nop", append=False)

    def write(self, file: str, text: str, append: bool) -> None:
        """``echo TEXT > FILE`` (``>>`` with append): open, one write, release."""
        self.call("write", {"file": file, "text": text, "append": append},
                  lambda: self.client.write_file(f"{TRACING_DIR}/{file}", text + "\n",
                                                 append=append))


class InvokerWorker(Worker):
    comm = "invoker"

    def step(self) -> None:
        repeat = self.rng.randint(1, 4)
        if self.rng.random() < 0.6:
            module, function = self.module_function()
        else:
            module, function = "", self.rng.choice(self.spec.core)
        self.call("invoke", {"function": function, "module": module, "repeat": repeat},
                  lambda: self.client.invoke(function, repeat=repeat, module=module),
                  lambda r: {"traced": r.traced})


WORKERS: dict[str, type[Worker]] = {
    "tracer": TracerWorker,
    "loader": LoaderWorker,
    "shell": ShellWorker,
    "invoker": InvokerWorker,
}
