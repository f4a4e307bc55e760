"""Command-line plumbing shared by ftrace-tracer, ftrace-workload and ftrace-modload.

- :func:`add_daemon_arguments` / :func:`parse_args`: ``--address A`` or
  ``--spawn [DAEMON-OPTION ...]`` (a private daemon booted with ftraced's own options,
  parsed by ``kernel_daemon.__main__.add_boot_arguments``; ``--spawn`` takes the rest of
  the command line, so a client's ``--seed`` and the daemon's ``--seed`` never clash),
  ``--comm`` (the task the kernel sees) and ``--connect-timeout``.
- :func:`daemon_client`: the :class:`~clients.api.Client` those arguments name, with the
  private daemon started first and stopped at the end.
- :func:`no_daemon_text` and :data:`EXIT_NO_DAEMON`: what every client says, and the
  status it exits with, when no daemon answers at its address; :func:`gone_text`, what
  it says when the daemon it had went away (killed, stopped).
- :class:`Waker`: where a program's main thread waits — for a deadline, a readable file
  descriptor, another thread's wake-up, or SIGINT/SIGTERM, which only note the signal, so
  the program stops at a point of its choosing (after unregistering its ops, say).
- :func:`error_text`: an :class:`~clients.errors.FtraceError` as a one-line diagnostic.
- :func:`sigterm_interrupts`: SIGTERM ends a long run as Ctrl-C does, cleaning up.
- :func:`check_limits`: the usage error for a limit (``--duration``...) not above zero, or
  longer than a wait can be; :func:`add_connect_timeout`: every client's
  ``--connect-timeout``, checked the same way.
- :func:`address_argument`: the argparse type of every client's ``--address``;
  :func:`check_address_env`: the same check of ``$FTRACED_ADDRESS``;
  :func:`check_daemon_options` and :func:`identity_argument`: the checks of a ``--spawn``
  daemon's options and of ``--comm``, which ftrace-shell, whose options are its own, shares.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import select
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from types import FrameType

import grpc

from clients.api import Client
from clients.connection import (ADDRESS_ENV, ADDRESS_FORMS, DaemonLost, default_address,
                                grpc_target, resolve_address, socket_listener,
                                socket_obstacle)
from clients.errors import FtraceError
from clients.identity import Identity
from clients.spawn import SpawnError, spawn_daemon

__all__ = [
    "ADDRESS_HELP",
    "EXIT_NO_DAEMON",
    "ConnectError",
    "Waker",
    "add_connect_timeout",
    "add_daemon_arguments",
    "address_argument",
    "check_address_env",
    "check_daemon_options",
    "check_limits",
    "daemon_client",
    "daemon_lost",
    "error_text",
    "gone_text",
    "identity_argument",
    "no_daemon_text",
    "parse_args",
    "sigterm_interrupts",
]

#: Every client's ``--address`` help; its default address as ``ftraced --help`` names it
#: (read when the module is loaded, before any argument is parsed).
ADDRESS_HELP = (f"daemon address: {ADDRESS_FORMS} (default: $FTRACED_ADDRESS, else "
                f"{default_address()})")
#: The longest single wait of a client's loop: a longer timeout overflows select() and
#: epoll; waking earlier only looks again.
MAX_WAIT = 3600.0
#: The exit status of every client whose daemon does not answer (or whose private daemon
#: did not start): not 1, which says what ftrace-inspect and ftrace-stress found.
EXIT_NO_DAEMON = 2


class ConnectError(Exception):
    """The private daemon did not start, or the daemon did not answer; the text is the
    diagnostic, without the program's name."""


def gone_text(address: str, error: FtraceError) -> str:
    """The one diagnostic of a daemon that went away: a connection to it was up (or
    accepted) and is refused now, ``error`` saying how (ECONNREFUSED: killed, its socket
    left behind; ENOENT: stopped, its socket removed). No advice to start one: it was
    there, and something ended it."""
    return f"ftraced at {address} went away ({error.strerror})"


def no_daemon_text(address: str, error: FtraceError, timeout: float,
                   alternative: str | None = None) -> str:
    """The one diagnostic of a client no daemon answers at ``address``, after its
    connect timeout (``timeout``, ``--connect-timeout``; ``error``: the last
    connection's). The program's name goes before it, as before its others. Advice to
    start one (and ``alternative``, another way: ``"use --spawn"``) only where a daemon
    started would answer: no socket yet in a directory that exists, or one nobody listens
    on. Not a path no daemon could listen at (said at once:
    :func:`clients.connection.socket_obstacle`), nor a socket that takes connections
    without answering them (ETIMEDOUT: :func:`_unanswered_text`; a connect that timed out,
    ``syscall`` "connect", is said as such). A daemon that went away while the client
    waited for its answer (:class:`DaemonLost`, said at once) is :func:`gone_text`."""
    if isinstance(error, DaemonLost):
        return gone_text(address, error)
    if (obstacle := socket_obstacle(address)) is not None:
        return f"no ftraced can listen at {address}: {obstacle}"
    text = f"no ftraced answers at {address} ({error.strerror})"
    if error.errno == errno.ECONNRESET:
        return (f"{text}: it closed every connection as it accepted it, as ftraced does "
                "past its --max-connections")
    if error.errno == errno.ETIMEDOUT and error.syscall != "connect":
        return f"{text}: {_unanswered_text(address, timeout)}"
    if error.errno not in (errno.ENOENT, errno.ECONNREFUSED):
        return text
    text += "; start one with `ftraced`"
    return f"{text}, or {alternative}" if alternative else text


def _unanswered_text(address: str, timeout: float) -> str:
    """Why a socket that takes connections did not answer them in ``timeout`` seconds,
    as far as the system tells (:func:`clients.connection.socket_listener`): its
    listener stopped (SIGSTOP; a daemon started there would find the address in use), or
    running, which ftraced is while it boots its kernel (it listens first) or is too busy
    to answer; both where no listener can be named (a TCP address)."""
    waited = f"has not answered in the {timeout:g} s of --connect-timeout"
    listener = socket_listener(address)
    if listener is None:
        return (f"it takes connections and {waited}: stopped, or still starting (booting "
                "its kernel) or too busy, which a longer --connect-timeout waits for")
    if listener.stopped:
        return (f"it takes connections and does not answer them: {listener} is "
                f"{listener.stopped}")
    return (f"{listener} takes connections and {waited}: still starting (booting its "
            "kernel) or too busy; a longer --connect-timeout waits for it")


def address_argument(text: str) -> str:
    """``--address`` as argparse takes it: checked as a connection checks it (a port above
    65535, a socket path too long...), so that a bad one is a usage error."""
    try:
        grpc_target(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def check_address_env(parser: argparse.ArgumentParser) -> None:
    """The usage error of a malformed ``$FTRACED_ADDRESS``, for a client given no
    ``--address``: checked as ``--address`` is, before any wait for a daemon."""
    address = os.environ.get(ADDRESS_ENV, "").strip()
    if address:
        try:
            grpc_target(address)
        except ValueError as error:
            parser.error(f"{ADDRESS_ENV}: {error}")


def add_daemon_arguments(parser: argparse.ArgumentParser, comm: str) -> None:
    """``--address``, ``--comm`` (default ``comm``), ``--connect-timeout``, ``-v`` and
    ``--spawn``. ``--spawn`` must come last: what follows it is the daemon's options."""
    group = parser.add_argument_group("daemon")
    group.add_argument("--address", metavar="A", type=address_argument,
                       help=ADDRESS_HELP)
    group.add_argument("--comm", default=comm,
                       help=f"the comm the kernel sees for this process (default {comm})")
    add_connect_timeout(group)
    group.add_argument("-v", "--verbose", action="store_true",
                       help="with --spawn: the daemon's log goes to stderr")
    group.add_argument("--spawn", nargs=argparse.REMAINDER, metavar="DAEMON-OPTION",
                       help="start a private daemon for this run, with ftraced's boot options "
                            "(--variant, --core-functions, --cpus, ...); must come last")


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args`` plus the daemon arguments' checks: ``--spawn`` excludes
    ``--address``, and its options are validated as ftraced would, before anything starts;
    without either, ``$FTRACED_ADDRESS`` is checked."""
    args = parser.parse_args(argv)
    if args.spawn is None and not args.address:
        check_address_env(parser)
    if args.spawn is not None:
        if args.address:
            parser.error("--spawn and --address exclude each other")
        check_daemon_options(parser, args.spawn)
    args.identity = identity_argument(parser, args.comm)
    return args


def check_daemon_options(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """The usage error ftraced would give for the boot options ``argv`` of a ``--spawn``
    daemon, before anything starts."""
    # Imported only here: the daemon's modules take longer to load than a client runs.
    from kernel_daemon.__main__ import add_boot_arguments, boot_options_from

    daemon_parser = argparse.ArgumentParser(prog=f"{parser.prog} --spawn", add_help=False)
    add_boot_arguments(daemon_parser)
    try:
        boot_options_from(daemon_parser.parse_args(argv)).validate()
    except ValueError as error:
        daemon_parser.error(str(error))


def identity_argument(parser: argparse.ArgumentParser, comm: str) -> Identity:
    """This process as the kernel sees it, ``--comm`` a usage error when it cannot be."""
    try:
        return Identity(os.getpid(), comm)
    except ValueError as error:
        parser.error(str(error))


def _limit_error(value: float, zero_ok: bool) -> str | None:
    """Why ``value`` is no limit: not above zero (with ``zero_ok``, below zero), or above
    the longest wait Python can make (``threading.TIMEOUT_MAX`` seconds, about 292 years;
    counts and rates share the bound, far past any use). A negative duration would end a
    run before it starts, NaN, which compares false with everything, would never end it,
    and a longer one overflows the wait for it."""
    if (0 <= value if zero_ok else 0 < value) and value <= threading.TIMEOUT_MAX:
        return None
    return (f"must be {'at least 0' if zero_ok else 'positive'} "
            f"and at most {threading.TIMEOUT_MAX:.0f}")


def check_limits(parser: argparse.ArgumentParser, *options: tuple[str, float | None],
                 zero_ok: bool = False) -> None:
    """A usage error (exit status 2) for the first ``(option, value)`` given a value that
    is no limit (:func:`_limit_error`)."""
    for option, value in options:
        if value is not None and (why := _limit_error(value, zero_ok)) is not None:
            parser.error(f"{option} {why}")


def _wait_seconds(text: str) -> float:
    """``--connect-timeout`` as argparse takes it: seconds, 0 or more (0: one attempt)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if (why := _limit_error(value, zero_ok=True)) is not None:
        raise argparse.ArgumentTypeError(why)
    return value


def add_connect_timeout(container: argparse._ActionsContainer, again: bool = False) -> None:
    """Every client's ``--connect-timeout``. ``again``: a second place for it, after a
    subcommand's name: argparse copies a subcommand's defaults over what was parsed before
    it, so there it has none, and a value given before the subcommand stays."""
    container.add_argument("--connect-timeout", type=_wait_seconds,
                           default=argparse.SUPPRESS if again else 10.0, metavar="S",
                           help="how long to wait for the daemon to answer, one still "
                                "starting included (default 10)")


@contextlib.contextmanager
def daemon_client(args: argparse.Namespace) -> Iterator[Client]:
    """A connected client of the daemon ``args`` name; a ``--spawn`` daemon lives as long
    as the ``with`` block. Raises :class:`ConnectError` when there is no daemon to talk to."""
    spawned = None
    try:
        if args.spawn is not None:
            spawned = spawn_daemon(args.spawn, verbose=args.verbose)
        client = Client(spawned.address if spawned else args.address, args.identity,
                        wait=args.connect_timeout)
    except SpawnError as error:
        raise ConnectError(str(error)) from error
    except FtraceError as error:
        if spawned:
            spawned.stop()
            raise ConnectError(f"no ftraced answers at {spawned.address} "
                               f"({error.strerror}), the daemon it started") from error
        where = resolve_address(args.address)
        raise ConnectError(no_daemon_text(where, error, args.connect_timeout,
                                          "use --spawn")) from error
    try:
        with client:
            yield client
    finally:
        if spawned:
            spawned.stop()


def daemon_lost(error: FtraceError) -> bool:
    """Whether ``error`` is a connection lost (UNAVAILABLE, not the kernel's errno) or a
    call the daemon cancelled (CANCELLED: at its stop ftraced cancels the file sessions
    waiting for their client's next request; a client's own cancel ends as the
    KeyboardInterrupt that caused it, clients.interrupt): on a client that had its
    answers, the daemon went away."""
    return not error.from_kernel and error.code in (grpc.StatusCode.UNAVAILABLE,
                                                    grpc.StatusCode.CANCELLED)


def error_text(error: FtraceError, client: Client | None = None) -> str:
    """``strerror``, the daemon's context when it gave some, and where the daemon is when
    the error did not come from it (it is not answering); a connection lost
    (UNAVAILABLE) is the daemon gone: :func:`gone_text`."""
    # gRPC's words for a lost or refused connection (its channel's and subchannel's
    # state: "failed to connect to all addresses; last error: ...", "Socket closed") say
    # nothing beyond the errno and where the daemon is, which gone_text says.
    lost = daemon_lost(error)
    if lost and client is not None:
        return gone_text(client.address, error)
    text = error.strerror
    if error.message and error.message != error.strerror and not lost:
        text += f" ({error.message})"
    if not error.from_kernel and client is not None:
        text += f" (ftraced at {client.address})"
    return text


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def sigterm_interrupts() -> None:
    """From now on SIGTERM ends the program as Ctrl-C does: KeyboardInterrupt, with the
    signal's name as its argument, unwinds the ``finally`` blocks and ``with``
    statements that stop what the program started (daemons and worker processes; an
    in-process kernel's shutdown, which unlinks its ``/dev/shm`` segments). SIGTERM's
    default action ends the process where it stands and leaves all that behind. For a
    program that runs long on its own (ftrace-stress, the benchmarks); one that waits on
    a :class:`Waker` notes the signal instead (main thread only)."""
    signal.signal(signal.SIGTERM, _interrupt)


class Waker:
    """The main thread's one place to wait.

    ``wait(timeout, fds)`` returns when the timeout passes, one of ``fds`` is readable,
    another thread called :meth:`wake`, or SIGINT/SIGTERM arrived (after
    :meth:`catch_signals`). A signal only sets :attr:`signal`: no exception is raised in
    the middle of an RPC, so the program can end its streams properly.

    A self-pipe: ``signal.set_wakeup_fd`` makes the C-level handler write the signal's
    number into it, which also closes the race between testing ``stopped`` and blocking
    in ``select``; :meth:`wake` writes a zero byte.
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        for fd in (self._read_fd, self._write_fd):
            os.set_blocking(fd, False)
        self.signal: int | None = None
        self._saved: dict[int, object] = {}
        self._saved_wakeup_fd: int | None = None

    def catch_signals(self) -> None:
        """From now on SIGINT and SIGTERM set :attr:`signal` (main thread only)."""
        for signum in self._SIGNALS:
            self._saved[signum] = signal.signal(signum, self._note)
        self._saved_wakeup_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum

    @property
    def stopped(self) -> bool:
        return self.signal is not None

    def wake(self) -> None:
        """Make the main thread's wait return (callable from any thread)."""
        try:
            os.write(self._write_fd, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: a wake-up is pending anyway

    def wait(self, timeout: float | None, fds: Iterable[int] = ()) -> list[int]:
        """Block until something happens (see the class); returns the readable ``fds``."""
        watched = [self._read_fd, *fds]
        if timeout is not None:
            timeout = min(max(0.0, timeout), MAX_WAIT)
        ready, _, _ = select.select(watched, [], [], timeout)
        if self._read_fd in ready:
            self._drain()
        return [fd for fd in ready if fd != self._read_fd]

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._read_fd, 512)
            except BlockingIOError:
                return
            # Non-zero bytes are signal numbers: note them even if the Python-level handler
            # has not run yet.
            for byte in data:
                if byte:
                    self.signal = byte

    def sleep_until(self, deadline: float) -> bool:
        """Wait until ``time.monotonic()`` reaches ``deadline``; False if a signal came first."""
        while not self.stopped:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            self.wait(remaining)
        return False

    def restore_signals(self) -> None:
        """SIGINT and SIGTERM act as before :meth:`catch_signals` again."""
        if self._saved_wakeup_fd is not None:
            signal.set_wakeup_fd(self._saved_wakeup_fd)
            for signum, handler in self._saved.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]
            self._saved_wakeup_fd = None

    def close(self) -> None:
        self.restore_signals()
        os.close(self._read_fd)
        os.close(self._write_fd)

    def __enter__(self) -> "Waker":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
