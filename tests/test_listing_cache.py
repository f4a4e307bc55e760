"""What enabled_functions' iterator keeps between two reads (the records it selected, found
again only when ``Ftrace.rec_counts_gen`` or the page groups say they may have changed) never
shows in what it prints: each read sees the counts as they are then, as 3.6's ``t_start()``
walking the live records does."""

from __future__ import annotations

import os

from kernel_daemon.ftrace.listing import Listing
from kernel_daemon.tracefs.files import file_read, file_release
from kernel_daemon.tracefs.tree import mount
from tests.kernel_helpers import T, booted, echo, modprobe, t_show_all
from tests.test_race_windows import Step

ENABLED = f"{T}/enabled_functions"


def read_to_end(f) -> bytes:
    out = []
    while chunk := file_read(f, 1 << 16):
        out.append(chunk)
    return b"".join(out)


def test_records_whose_counts_went_to_zero_are_not_shown_by_the_next_read():
    """Every function traced, one page read; the tracer goes (the "all" pass of
    __ftrace_hash_rec_update() takes every count to 0): the next read finds no record."""
    with booted() as k:
        echo(k, "function", "current_tracer")
        f = mount(k).open(ENABLED, os.O_RDONLY)
        try:
            first = file_read(f, 1 << 16)
            assert first.endswith(b" (1)\n")
            echo(k, "nop", "current_tracer")
            assert read_to_end(f) == b""
        finally:
            file_release(f)


def test_records_counted_after_a_read_saw_them_uncounted_show_at_the_next():
    """publish-early: uinput's pages are on the list with count 0 while ftrace_lock is
    dropped, and a reader reaches the end of the list there; once ftrace_update_code()
    writes their counts, the reader's next read lists them."""
    site = "ftrace_update_code:before_publish"
    with booted(races=("publish-early",), failpoints=((site, "1*pause"),)) as k:
        echo(k, "function", "current_tracer")
        f = mount(k).open(ENABLED, os.O_RDONLY)
        try:
            load = Step(modprobe, k, "uinput")
            assert k.failpoints.wait_paused(site, 1, timeout=10)
            before = read_to_end(f)
            k.failpoints.release(site)
            load.finish()
            rest = read_to_end(f)
        finally:
            file_release(f)
        assert b"[uinput]" not in before
        now = t_show_all(k.ftrace, Listing.ENABLED).encode()
        assert before + rest == now
        assert rest and rest.count(b"[uinput] (1)\n") == rest.count(b"\n")
