"""Settings of the whole test run.

- Hypothesis runs without a per-example deadline: the examples take microseconds, and a
  deadline could only fail a run that a loaded machine paused in the middle of one.
- SIGINT acts as it does at a terminal, however the run was started. A shell without job
  control starts a background command (``make test &``) with SIGINT ignored (POSIX,
  asynchronous lists), and an ignored signal stays ignored across exec: every program the
  tests start and then interrupt (Ctrl-C in a shell, a tracer, a blocking call) would
  ignore it, and the tests of Ctrl-C fail for want of one. A handler is reset to the
  default at exec, so this also gives the programs started from here their default.
- Every Python program the tests start (daemons, clients, and what those start) has
  faulthandler on: one that dies of a fatal signal (SIGABRT, SIGSEGV, SIGBUS) prints its
  threads' Python stacks on stderr, which the test's failure message then shows. Session
  21's rare SIGABRT of a test's child had left nothing but "status -6".
"""

import os
import signal

from hypothesis import settings

settings.register_profile("ftrace-sim", deadline=None)
settings.load_profile("ftrace-sim")

os.environ.setdefault("PYTHONFAULTHANDLER", "1")

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
