"""Hypothesis runs without a per-example deadline: the examples take microseconds, and a
deadline could only fail a run that a loaded machine paused in the middle of one."""

from hypothesis import settings

settings.register_profile("ftrace-sim", deadline=None)
settings.load_profile("ftrace-sim")
