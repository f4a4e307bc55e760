"""``ftrace-workload``: simulated CPUs running a plausible mix of kernel code.

    ftrace-workload [--address A] [--rate CALLS_PER_SECOND] [--duration S] [--seed N]
                    [--module-share F] [--refresh S] [--comm COMM] [--spawn DAEMON-OPTION...]

Each step picks a task — a user process (``systemd``, ``rsyslogd``, ``dbus-daemon``,
``sshd``, ``Xorg``, ``bash``) or a per-CPU kernel thread (``ksoftirqd/N``, ``kworker/N:1``,
the idle task ``swapper/N``), each with a fixed pid — and runs one of its activities as a
chain of ``Tracer.Invoke`` calls on the task's CPU, caller before callee::

    sys_close <-system_call_fastpath, filp_close <-sys_close, fput <-filp_close,
    task_work_run <-do_notify_resume, ____fput <-task_work_run, __fput <-____fput, ...

A share of the steps (``--module-share``) calls a function of a loaded module from the
core entry point its name suggests (``*_release`` from ``__fput``, ``*_read``/``*_poll``
from ``vfs_read``, ``*_ioctl`` from ``do_vfs_ioctl``, ``*_xmit`` from ``dev_queue_xmit``,
...), reached through that entry point's own chain; a function no rule matches is called
by the nearest following function of its module that one does (helpers come before
their callers in C). Some calls repeat (a loop: one
``Invoke`` with a repeat count), so ``cat trace`` with the function tracer on looks like a
live system.

Modules come and go: the module list (``Modules.List``) is read every ``--refresh``
seconds, and ``/proc/kallsyms`` when it changed (module functions are invoked by address,
as a CPU runs code). An address that faults (EFAULT: its module was unloaded) drops that
module at once and refreshes; a core function that is missing (ENOENT/EFAULT) is dropped
from the mix. The workload never stops for those.

Pacing is deadline-based: the n-th call is due at ``start + n / rate``; after a stall
longer than a second the debt is forgiven rather than paid in a burst. It runs until
SIGINT/SIGTERM or ``--duration``, then prints a summary on stderr and exits 0 (2 when no
daemon answers within ``--connect-timeout``, as for every client; 1 when the daemon fails
a call later).
"""

from __future__ import annotations

import argparse
import bisect
import collections
import random
import sys
import time
from dataclasses import dataclass, field, replace

from clients import cli
from clients.api import Client
from clients.errors import FtraceError
from ftrace.v1 import modules_pb2

PROG = "ftrace-workload"

# --- what the tasks run -------------------------------------------------------------

#: Activities: (function, parent) chains through the core kernel's named functions.
CHAINS: dict[str, tuple[tuple[str, str], ...]] = {
    "read": (("sys_read", "system_call_fastpath"), ("vfs_read", "sys_read"),
             ("generic_file_aio_read", "vfs_read"), ("find_get_page", "generic_file_aio_read")),
    "tty_read": (("sys_read", "system_call_fastpath"), ("vfs_read", "sys_read"),
                 ("n_tty_read", "vfs_read"), ("_raw_spin_lock_irqsave", "n_tty_read"),
                 ("_raw_spin_unlock_irqrestore", "n_tty_read")),
    "tty_write": (("sys_write", "system_call_fastpath"), ("vfs_write", "sys_write"),
                  ("tty_write", "vfs_write"), ("n_tty_write", "tty_write"),
                  ("mutex_lock", "n_tty_write"), ("mutex_unlock", "n_tty_write")),
    "open": (("sys_open", "system_call_fastpath"), ("do_sys_open", "sys_open"),
             ("do_filp_open", "do_sys_open"), ("path_openat", "do_filp_open"),
             ("kmem_cache_alloc", "path_openat")),
    # close(2) in 3.6: the last fput is deferred to task_work, run on the way back out.
    "close": (("sys_close", "system_call_fastpath"), ("filp_close", "sys_close"),
              ("fput", "filp_close"), ("task_work_run", "do_notify_resume"),
              ("____fput", "task_work_run"), ("__fput", "____fput"),
              ("kmem_cache_free", "__fput")),
    "ioctl": (("sys_ioctl", "system_call_fastpath"), ("do_vfs_ioctl", "sys_ioctl")),
    "sendto": (("sys_sendto", "system_call_fastpath"), ("sock_sendmsg", "sys_sendto"),
               ("tcp_sendmsg", "sock_sendmsg"), ("__alloc_skb", "tcp_sendmsg"),
               ("kmem_cache_alloc", "__alloc_skb"), ("ip_output", "tcp_sendmsg"),
               ("dev_queue_xmit", "ip_output")),
    "recvfrom": (("sys_recvfrom", "system_call_fastpath"), ("_raw_spin_lock_bh", "sys_recvfrom"),
                 ("kfree_skb", "sys_recvfrom"), ("__kfree_skb", "kfree_skb")),
    "sleep": (("sys_nanosleep", "system_call_fastpath"), ("do_nanosleep", "sys_nanosleep"),
              ("hrtimer_start", "do_nanosleep"), ("schedule", "do_nanosleep"),
              ("__schedule", "schedule")),
    "fork": (("sys_clone", "stub_clone"), ("do_fork", "sys_clone"), ("copy_process", "do_fork"),
             ("kmem_cache_alloc", "copy_process"), ("wake_up_process", "do_fork"),
             ("try_to_wake_up", "wake_up_process")),
    "page_fault": (("do_page_fault", "page_fault"), ("handle_mm_fault", "do_page_fault"),
                   ("__alloc_pages_nodemask", "handle_mm_fault")),
    "timer_irq": (("smp_apic_timer_interrupt", "apic_timer_interrupt"),
                  ("hrtimer_interrupt", "smp_apic_timer_interrupt"),
                  ("__run_hrtimer", "hrtimer_interrupt"), ("tick_sched_timer", "__run_hrtimer"),
                  ("update_process_times", "tick_sched_timer"),
                  ("rcu_check_callbacks", "update_process_times"),
                  ("scheduler_tick", "update_process_times"),
                  ("irq_exit", "smp_apic_timer_interrupt")),
    "softirq": (("__do_softirq", "do_softirq"), ("run_timer_softirq", "__do_softirq"),
                ("_raw_spin_lock_irq", "run_timer_softirq")),
    "net_rx": (("__do_softirq", "do_softirq"), ("netif_receive_skb", "__do_softirq"),
               ("__netif_receive_skb", "netif_receive_skb"), ("ip_rcv", "__netif_receive_skb"),
               ("tcp_v4_rcv", "ip_rcv")),
    "work": (("process_one_work", "worker_thread"), ("mutex_lock", "process_one_work"),
             ("mutex_unlock", "process_one_work")),
    "block_io": (("process_one_work", "worker_thread"), ("submit_bio", "process_one_work"),
                 ("generic_make_request", "submit_bio"), ("blk_queue_bio", "generic_make_request")),
}

#: A module function's caller, by its name: (word prefixes, core entry point, the chain
#: that reaches the entry point). A rule matches when a word of the name (split at "_")
#: starts with one of its prefixes — so "loop_thread" is a thread, not a read. First
#: match wins.
ENTRY_RULES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("release", "close"), "__fput", "close"),
    (("open",), "path_openat", "open"),
    (("ioctl",), "do_vfs_ioctl", "ioctl"),
    (("xmit", "send"), "dev_queue_xmit", "sendto"),
    (("rcv", "recv", "receive", "rx"), "netif_receive_skb", "net_rx"),
    (("read", "poll", "show"), "vfs_read", "read"),
    (("write", "store"), "vfs_write", "tty_write"),
    (("bio", "bmap", "blk"), "generic_make_request", "block_io"),
    (("timer", "timeout"), "run_timer_softirq", "softirq"),
    (("work", "thread"), "process_one_work", "work"),
)
#: The entry for a module none of whose functions matches a rule: drivers' catch-all.
DEFAULT_ENTRY = ("do_vfs_ioctl", "ioctl")

#: User processes: comm, pid, activities with weights. The timer interrupt lands anywhere.
USER_TASKS: tuple[tuple[str, int, dict[str, int]], ...] = (
    ("systemd", 1, {"sleep": 3, "read": 2, "open": 1, "close": 1, "ioctl": 1, "timer_irq": 1}),
    ("rsyslogd", 1534, {"read": 3, "tty_write": 2, "recvfrom": 2, "sleep": 1, "timer_irq": 1}),
    ("dbus-daemon", 1601, {"recvfrom": 2, "sendto": 2, "sleep": 1, "timer_irq": 1}),
    ("sshd", 1873, {"recvfrom": 3, "sendto": 3, "tty_read": 1, "tty_write": 1, "sleep": 1,
                    "timer_irq": 1}),
    ("Xorg", 2210, {"ioctl": 4, "read": 3, "sleep": 1, "page_fault": 1, "close": 1,
                    "timer_irq": 1}),
    ("bash", 3417, {"tty_read": 3, "tty_write": 3, "fork": 1, "open": 1, "close": 1,
                    "page_fault": 1, "timer_irq": 1}),
)
#: A user task runs on its home CPU (pid modulo the CPUs) but for this share of steps.
MIGRATE = 0.1
#: Share of calls that repeat (a loop), and the longest repeat.
REPEAT_SHARE, REPEAT_MAX = 0.15, 16
#: A stall longer than this is forgiven rather than caught up with in a burst.
MAX_LAG = 1.0


@dataclass(frozen=True)
class Call:
    """One Invoke: a core function by name, or a module function by address."""

    function: str
    parent: str
    address: int = 0  # a module function's start
    parent_module: str = ""  # the caller's module, when a module function calls it
    # The parent's callers, innermost first: its ancestors in the chain (with_callers).
    callers: tuple[str, ...] = ()


def with_callers(calls: tuple[Call, ...]) -> tuple[Call, ...]:
    """``calls`` (caller before callee), each with its parent's callers: the chain's
    latest earlier call of the parent was from its caller, and so on outward, so the
    stack ``func_stack_trace`` records is the chain's."""
    done: list[Call] = []
    callers_of: dict[str, tuple[str, ...]] = {}  # a function called so far: its stack
    for call in calls:
        callers = callers_of.get(call.parent, ())
        done.append(replace(call, callers=callers))
        callers_of[call.function] = (call.parent, *callers)
    return tuple(done)


#: The activities as calls.
CORE_CALLS: dict[str, tuple[Call, ...]] = {
    name: with_callers(tuple(Call(function, parent) for function, parent in chain))
    for name, chain in CHAINS.items()}


@dataclass(frozen=True)
class Task:
    comm: str
    pid: int
    cpu: int | None  # a per-CPU kernel thread's CPU; None: the scheduler's choice
    activities: tuple[str, ...]
    weights: tuple[int, ...]


def make_tasks(cpus: int) -> list[Task]:
    """The user processes and, for every CPU, its idle task, ksoftirqd and a kworker."""
    tasks = [Task(comm, pid, None, tuple(acts), tuple(acts.values()))
             for comm, pid, acts in USER_TASKS]
    for n in range(cpus):
        # Kernel threads' pids as 3.x boots create them, four per CPU.
        tasks += [Task(f"swapper/{n}", 0, n, ("timer_irq",), (1,)),
                  Task(f"ksoftirqd/{n}", 3 + 4 * n, n, ("softirq", "net_rx", "timer_irq"), (3, 2, 1)),
                  Task(f"kworker/{n}:1", 4 + 4 * n, n, ("work", "block_io", "timer_irq"), (3, 1, 1))]
    return tasks


# --- modules ------------------------------------------------------------------------


@dataclass(frozen=True)
class ModuleFunction:
    module: str
    name: str
    address: int
    calls: tuple[Call, ...]  # the core chain to the entry point, then the module hops
    via: str  # the CHAINS activity that reaches the entry point (picks the task)


def module_symbols(kallsyms: str) -> dict[str, list[tuple[int, str]]]:
    """Module name -> its functions (address, name) in address order, from /proc/kallsyms.

    The core's symbols come first there; the module part starts at the first
    ``\\t[module]`` line.
    """
    first = kallsyms.find("\t[")
    out: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
    if first < 0:
        return out
    for line in kallsyms[kallsyms.rfind("\n", 0, first) + 1:].splitlines():
        head, _, module = line.partition("\t")
        address, kind, name = head.split(" ", 2)
        if kind in "tT":
            out[module.strip("[]")].append((int(address, 16), name))
    for functions in out.values():
        functions.sort()
    return out


def plan_module(module: str, functions: list[tuple[int, str]]) -> list[ModuleFunction]:
    """Give each function of a module a caller (see the module docstring)."""
    entries: dict[int, tuple[str, str]] = {}
    for i, (_, name) in enumerate(functions):
        words = name.split("_")
        for prefixes, entry, chain in ENTRY_RULES:
            if any(word.startswith(prefixes) for word in words):
                entries[i] = (entry, chain)
                break
    matched = sorted(entries)
    planned = []
    for i, (address, name) in enumerate(functions):
        if i in entries:
            entry, via = entries[i]
            hops: tuple[Call, ...] = (Call(name, entry, address),)
        elif matched:
            # A static helper: C defines helpers before their callers, so the caller is the
            # nearest entry function after it (before it, at the end of the module).
            after = bisect.bisect_right(matched, i)
            caller = matched[after] if after < len(matched) else matched[-1]
            entry, via = entries[caller]
            caller_address, caller_name = functions[caller]
            hops = (Call(caller_name, entry, caller_address),
                    Call(name, caller_name, address, module))
        else:
            entry, via = DEFAULT_ENTRY
            hops = (Call(name, entry, address),)
        chain = CORE_CALLS[via]
        reach = next(k for k, call in enumerate(chain) if call.function == entry)
        planned.append(ModuleFunction(module, name, address,
                                      with_callers(chain[:reach + 1] + hops), via))
    return planned


class ModuleTracker:
    """The live modules' functions, kept up to date from Modules.List and /proc/kallsyms."""

    def __init__(self, client: Client, interval: float) -> None:
        self.client = client
        self.interval = interval
        self.next_refresh = 0.0
        self.loaded: dict[str, int] = {}  # name -> load_seq of the live modules known
        self.functions: dict[str, list[ModuleFunction]] = {}  # by module

    def refresh(self, now: float, force: bool = False) -> None:
        if not force and now < self.next_refresh:
            return
        self.next_refresh = now + self.interval
        live = {m.name: m.load_seq for m in self.client.list_modules()
                if m.state == modules_pb2.MODULE_STATE_LIVE}
        if live == self.loaded:
            return
        symbols = module_symbols(self.client.read_file("/proc/kallsyms").decode())
        gone = sorted(name for name in self.loaded if name not in live)
        came = sorted(name for name, seq in live.items() if self.loaded.get(name) != seq)
        self.loaded = live
        self.functions = {name: planned for name in live
                          if (planned := plan_module(name, symbols.get(name, [])))}
        notes = [f"-{name}" for name in gone] + [
            f"+{name}" + (f"@{symbols[name][0][0]:#x}" if symbols.get(name) else "")
            for name in came]
        if notes:
            print(f"{PROG}: modules: {' '.join(notes)}", file=sys.stderr, flush=True)

    def forget(self, module: str, why: str, now: float) -> None:
        """A call into ``module`` failed (``why``): it is gone; look again now. It counts as
        not loaded, so if it is live again (reloaded) its functions are learned afresh."""
        if self.functions.pop(module, None) is not None:
            print(f"{PROG}: modules: -{module} ({why})", file=sys.stderr, flush=True)
        self.loaded.pop(module, None)
        self.refresh(now, force=True)


# --- the run ------------------------------------------------------------------------


@dataclass
class Stats:
    calls: int = 0
    invocations: int = 0
    module_calls: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)

    def summary(self, elapsed: float) -> str:
        errors = " ".join(f"{name}={n}" for name, n in sorted(self.errors.items())) or "none"
        return (f"{self.calls} calls ({self.invocations} invocations, {self.module_calls} to "
                f"modules) in {elapsed:.2f} s; errors: {errors}")


class Workload:
    def __init__(self, client: Client, rng: random.Random, module_share: float,
                 refresh: float) -> None:
        self.client = client
        self.rng = rng
        self.module_share = module_share
        self.modules = ModuleTracker(client, refresh)
        self.stats = Stats()
        self.missing: set[Call] = set()  # core calls that fail: not in this kernel
        self.set_cpus(client.config().cpus)

    def set_cpus(self, cpus: int) -> None:
        self.cpus = cpus
        self.tasks = make_tasks(cpus)
        self.by_activity = {name: [t for t in self.tasks if name in t.activities]
                            for name in CHAINS}

    def cpu_of(self, task: Task) -> int:
        if task.cpu is not None:
            return task.cpu
        if self.rng.random() < MIGRATE:
            return self.rng.randrange(self.cpus)
        return task.pid % self.cpus

    def repeat(self) -> int:
        return self.rng.randint(2, REPEAT_MAX) if self.rng.random() < REPEAT_SHARE else 1

    def step(self) -> int:
        """One activity of one task: a chain of invocations. Returns the calls attempted."""
        now = time.monotonic()
        self.modules.refresh(now)
        if self.modules.functions and self.rng.random() < self.module_share:
            # A module, then one of its functions: big modules do not crowd out small ones.
            functions = self.modules.functions[self.rng.choice(list(self.modules.functions))]
            target = self.rng.choice(functions)
            task = self.rng.choice(self.by_activity[target.via])
            calls, module = target.calls, target.module
        else:
            task = self.rng.choice(self.tasks)
            calls, module = CORE_CALLS[self.rng.choices(task.activities, task.weights)[0]], ""
        cpu = self.cpu_of(task)
        attempted = 0
        for call in calls:
            if call in self.missing:
                continue
            repeat = self.repeat()
            attempted += repeat
            if not self.invoke(task, cpu, call, repeat, module):
                break
        return attempted

    def invoke(self, task: Task, cpu: int, call: Call, repeat: int, module: str) -> bool:
        """One Invoke; False when the rest of the chain should be skipped."""
        try:
            if call.address:
                # A module function goes by address, its module caller by name in that
                # module (the name may be another module's too): the trace shows the
                # return address into the caller, as for a core one.
                self.client.invoke(address=call.address, parent=call.parent,
                                   parent_module=call.parent_module, cpu=cpu,
                                   repeat=repeat, pid=task.pid, comm=task.comm,
                                   callers=call.callers)
            else:
                self.client.invoke(call.function, call.parent, cpu, repeat,
                                   pid=task.pid, comm=task.comm, callers=call.callers)
        except FtraceError as error:
            if not error.from_kernel:
                raise  # the daemon is gone: nothing to follow
            self.stats.errors[error.errno_name] += 1
            if error.errno_name in ("EFAULT", "ENOENT"):
                if call.address:
                    # Unloaded under us.
                    self.modules.forget(module, error.errno_name, time.monotonic())
                else:
                    self.missing.add(call)
            elif error.errno_name == "EINVAL":
                self.set_cpus(self.client.config().cpus)  # rebooted with fewer CPUs
            return False
        self.stats.calls += repeat
        self.stats.invocations += 1
        if call.address:
            self.stats.module_calls += repeat
        return True

    def run(self, rate: float, duration: float | None, waker: cli.Waker) -> float:
        """Steps paced at ``rate`` calls per second; returns the seconds it ran.

        Failed calls count against the rate too, and a step that attempted nothing counts
        as one call: a kernel that refuses everything is not hammered in a tight loop.
        """
        start = time.monotonic()
        end = None if duration is None else start + duration
        origin, paced = start, 0
        while not waker.stopped:
            due = origin + paced / rate
            now = time.monotonic()
            if now - due > MAX_LAG:
                origin, due = now - paced / rate, now
            if end is not None and max(due, now) >= end:
                waker.sleep_until(end)
                break
            if not waker.sleep_until(due):
                break
            paced += max(1, self.step())
        return time.monotonic() - start


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Keep the simulated CPUs calling kernel and module functions.")
    p.add_argument("--rate", type=float, default=500.0, metavar="CALLS_PER_SECOND",
                   help="function calls per second (default 500)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--seed", type=int, help="random seed (default: a fresh one)")
    p.add_argument("--module-share", type=float, default=0.3, metavar="F",
                   help="share of steps that call a module function (default 0.3)")
    p.add_argument("--refresh", type=float, default=1.0, metavar="S",
                   help="how often to re-read the module list (default 1 s)")
    cli.add_daemon_arguments(p, comm=PROG)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = cli.parse_args(p, argv)
    cli.check_limits(p, ("--rate", args.rate), ("--duration", args.duration))
    if not 0 <= args.module_share <= 1:
        p.error("--module-share must be between 0 and 1")
    cli.check_limits(p, ("--refresh", args.refresh))
    with cli.Waker() as waker:
        waker.catch_signals()
        try:
            with cli.daemon_client(args) as client:
                try:
                    workload = Workload(client, random.Random(args.seed), args.module_share,
                                        args.refresh)
                    elapsed = workload.run(args.rate, args.duration, waker)
                except FtraceError as error:
                    print(f"{PROG}: {cli.error_text(error, client)}", file=sys.stderr)
                    return 1
        except cli.ConnectError as error:
            print(f"{PROG}: {error}", file=sys.stderr)
            return cli.EXIT_NO_DAEMON
    print(f"{PROG}: {workload.stats.summary(elapsed)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
