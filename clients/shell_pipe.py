"""A pipeline's processes and the pipes between them, for ftrace-shell.

bash forks a process for each command of ``a | b | c`` and joins them with pipe(2)s;
they run at once, so ``cat trace_pipe | grep x`` prints each match as the event comes.
Here each command runs on a thread of its own (:class:`Stage`), over a :class:`Pipe` that
behaves as the kernel's (``fs/pipe.c``): a reader waits for data or for the last writer
to go (end of file), a writer waits for room (``PIPE_DEF_BUFFERS`` pages), and a write
with no reader left gets SIGPIPE. What a signal does to a process, ending it wherever it
is, is :class:`KilledBySignal` raised in the stage at its next pipe operation, output,
command or sleep; its blocking calls to the daemon are cancelled, and its waits for the
shell's own standard input woken, so it gets there.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import threading
import weakref
from typing import TYPE_CHECKING, Protocol, TypeVar

from clients.api import READ_CHUNK
from clients.errors import FtraceError

if TYPE_CHECKING:
    from clients.shell_runtime import Output


class Cancellable(Protocol):
    """A call to the daemon a stage waits on: a FileSession, a ServerStream."""

    def cancel(self) -> None: ...


C = TypeVar("C", bound=Cancellable)

__all__ = ["KilledBySignal", "Pipe", "PipeReader", "PipeWriter", "Stage", "StageOutput",
           "write_by"]

#: PIPE_DEF_BUFFERS (16) pages of 4 KiB: what a pipe holds before a writer waits.
PIPE_CAPACITY = 16 * 4096
#: The longest the shell's main thread waits at once (seconds). A process-directed SIGINT
#: goes to any thread that does not block it (signal(7); ``complete_signal()`` prefers
#: the main thread, but not always), and CPython runs the handler only in the main thread
#: once it runs bytecode again: a wait on a lock or in poll(2) that the signal did not
#: interrupt would outlast Ctrl-C for good. Cut into slices, it sees the signal within
#: one, as ``grpc._common.wait`` does for the same reason.
SIGNAL_SLICE = 0.1


class KilledBySignal(BaseException):
    """The stage's process died of ``signo``; its status is 128 + ``signo``, as bash's
    for a child a signal ended. A BaseException: nothing in a command may go on after it."""

    def __init__(self, signo: int) -> None:
        super().__init__(signal.Signals(signo).name)
        self.signo = signo

    @property
    def status(self) -> int:
        return 128 + self.signo


class Stage:
    """One process of a pipeline: the signal that killed it, the daemon's files it holds
    open, and the pipelines it runs in turn (a signal to the process group reaches
    them). The shell's own process is a stage nothing kills but Ctrl-C, which Python
    delivers to the main thread as KeyboardInterrupt."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._killed = threading.Event()
        self.signo: int | None = None
        # What it holds goes with the object: a closed session is no longer held.
        self._calls: weakref.WeakSet[Cancellable] = weakref.WeakSet()
        self._children: list[Stage] = []
        self._pipes: list[Pipe] = []
        # The eventfds of its waits in wait_readable(), written by kill().
        self._wakeups: set[int] = set()

    def check(self) -> None:
        """Where a process dead of a signal stops: raise its KilledBySignal."""
        if self.signo is not None:
            raise KilledBySignal(self.signo)

    def kill(self, signo: int) -> None:
        """Deliver ``signo`` (the first one delivered is the one it dies of): cancel the
        daemon calls it waits on, wake its pipe operations and sleeps, kill the stages of
        its own pipelines."""
        with self._lock:
            if self.signo is None:
                self.signo = signo
            calls, children, pipes = list(self._calls), list(self._children), list(self._pipes)
            # Under the lock: a wait that has ended closes its eventfd, and the number
            # could be another file's by now.
            for wakeup in self._wakeups:
                os.eventfd_write(wakeup, 1)
        self._killed.set()
        for call in calls:
            call.cancel()
        for pipe in pipes:
            pipe.wake()
        for child in children:
            child.kill(signo)

    def hold(self, call: C) -> C:
        """A call the stage made to the daemon (a file it opened, a stream it follows):
        cancelled if it is killed, at once if it was killed while the call was on its
        way."""
        with self._lock:
            if self.signo is None:
                self._calls.add(call)
                return call
        call.cancel()
        raise KilledBySignal(self.signo)

    def spawn(self) -> Stage:
        """A stage of a pipeline this one runs: killed with it."""
        child = Stage()
        with self._lock:
            self._children.append(child)
            killed = self.signo
        if killed is not None:
            child.kill(killed)
        return child

    def reap(self, child: Stage) -> None:
        with self._lock:
            self._children.remove(child)

    def attach(self, pipe: Pipe) -> None:
        """A pipe the stage reads or writes: a kill wakes it there."""
        with self._lock:
            self._pipes.append(pipe)

    def wait_readable(self, fd: int) -> None:
        """A blocking read(2)'s wait for ``fd`` (a terminal, a pipe) to have data or its
        end of file, which a signal ends, as ``n_tty_read()`` and ``pipe_read()`` leave
        their wait with -ERESTARTSYS once ``signal_pending(current)``: the read is not
        made, and the stage dies (KilledBySignal). A thread blocked in read(2) itself
        could not be woken, so it polls ``fd`` with an eventfd that :meth:`kill` writes.
        On the main thread Ctrl-C ends the poll as KeyboardInterrupt, as it ends any
        system call there, within a :data:`SIGNAL_SLICE` when another thread took it."""
        wakeup = os.eventfd(0, os.EFD_CLOEXEC)
        try:
            with self._lock:
                if self.signo is None:
                    self._wakeups.add(wakeup)
            self.check()
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            poller.register(wakeup, select.POLLIN)
            while not poller.poll(SIGNAL_SLICE * 1000):
                pass
            self.check()
        finally:
            with self._lock:
                self._wakeups.discard(wakeup)
            os.close(wakeup)

    def sleep(self, seconds: float) -> None:
        """sleep(3), which a signal ends."""
        self._killed.wait(seconds)
        self.check()

    def sigpipe(self) -> None:
        """A write(2) of this process found no reader (a pipe's, or the shell's own
        standard output or error into a pipe whose reader went): ``send_sig(SIGPIPE,
        current, 0)``, whose default action ends the process."""
        self.kill(signal.SIGPIPE)
        self.check()


class Pipe:
    """``struct pipe_inode_info``: the bytes written and not yet read, and whether its
    read and write ends are still open. Both ends wait on one condition, as on the
    pipe's ``wait`` queue."""

    def __init__(self, capacity: int = PIPE_CAPACITY) -> None:
        self.capacity = capacity
        self._wait = threading.Condition()
        self._buffer = bytearray()
        self._readers = 1
        self._writers = 1

    def wake(self) -> None:
        with self._wait:
            self._wait.notify_all()

    def pipe_read(self, stage: Stage, size: int) -> bytes:
        """``pipe_read()``: up to ``size`` bytes of what is buffered, waiting while the
        pipe is empty and has a writer; b"" at end of file."""
        with self._wait:
            while not self._buffer and self._writers:
                stage.check()
                self._wait.wait()
            stage.check()
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
            self._wait.notify_all()
            return data

    def pipe_write(self, data: bytes, stage: Stage) -> None:
        """``pipe_write()`` by the process ``stage``: all of ``data``, waiting for room as
        the reader takes it; SIGPIPE to that process (``send_sig(SIGPIPE, current, 0)``)
        once there is no reader, before or while it waits."""
        view = memoryview(data)
        with self._wait:
            while view and self._readers:
                stage.check()
                room = self.capacity - len(self._buffer)
                if room <= 0:
                    self._wait.wait()
                    continue
                self._buffer += view[:room]
                view = view[room:]
                self._wait.notify_all()
        if view:
            stage.sigpipe()

    def release(self, *, reader: bool) -> None:
        """``pipe_release()``: one end closed; the other side's waits wake to see it."""
        with self._wait:
            if reader:
                self._readers -= 1
            else:
                self._writers -= 1
            self._wait.notify_all()


class PipeReader:
    """A stage's standard input from the pipe before it."""

    readable, writable = True, False

    def __init__(self, pipe: Pipe, stage: Stage) -> None:
        self._pipe = pipe
        self._stage = stage
        self._open = True
        stage.attach(pipe)

    def read(self, stage: Stage, size: int = READ_CHUNK) -> bytes:
        """A read(2) by ``stage``'s process (the one this end is): b"" at end of file."""
        return self._pipe.pipe_read(stage, size) if self._open else b""

    def lseek(self, offset: int, whence: int) -> int:
        """A pipe's llseek (``no_llseek``): it cannot seek. Raises FtraceError (ESPIPE)."""
        raise FtraceError(errno.ESPIPE, syscall="lseek")

    def close(self) -> None:
        if self._open:
            self._open = False
            self._pipe.release(reader=True)


class PipeWriter:
    """A stage's standard output into the pipe after it (an Output)."""

    readable, writable = False, True

    def __init__(self, pipe: Pipe, stage: Stage) -> None:
        self._pipe = pipe
        self._stage = stage
        self._open = True
        stage.attach(pipe)

    def write(self, data: bytes) -> None:
        self.write_by(data, self._stage)

    def write_by(self, data: bytes, stage: Stage) -> None:
        """A write by ``stage``, the process that inherited this end (a pipeline's last
        command inside the stage's ``{ ...; }``): SIGPIPE is that process's."""
        self._pipe.pipe_write(data, stage)

    def close(self) -> None:
        """Not a redirection's to close: the stage's end goes when the stage does."""

    def release(self) -> None:
        if self._open:
            self._open = False
            self._pipe.release(reader=False)


def write_by(output: Output, data: bytes, stage: Stage) -> None:
    """A write into ``output`` by the process ``stage``: where the output can find no
    reader (a pipe, the shell's own streams), the SIGPIPE is that process's."""
    by = getattr(output, "write_by", None)
    if by is None:
        output.write(data)
    else:
        by(data, stage)


class StageOutput:
    """The shell's stdout or stderr (or a descriptor it inherited) as a stage writes it:
    a process dead of a signal writes nothing more."""

    readable, writable = False, True

    def __init__(self, output: Output, stage: Stage) -> None:
        self._output = output
        self._stage = stage

    def write(self, data: bytes) -> None:
        self.write_by(data, self._stage)

    def write_by(self, data: bytes, stage: Stage) -> None:
        """A write by ``stage``, a process this stage started (a command it forked)."""
        stage.check()
        write_by(self._output, data, stage)

    def close(self) -> None:
        """The shell's streams outlive the stage."""
