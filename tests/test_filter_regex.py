"""set_ftrace_filter semantics in-process: tokens, globs, ``!``, ``:mod:``, release (spec §3.3)."""

from __future__ import annotations

import errno
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kernel_daemon.errno import KernelError
from kernel_daemon.ftrace.filter import ftrace_match_record
from kernel_daemon.ftrace.listing import ALL_FUNCTIONS_BANNER, Listing
from kernel_daemon.ftrace.regex import MatchType, filter_parse_regex, ftrace_match
from kernel_daemon.ftrace.regex_file import (FTRACE_BUFF_MAX, TraceParser, ftrace_regex_open,
                                             ftrace_regex_release, ftrace_regex_write,
                                             trace_get_user)
from kernel_daemon.mutex import Acquisitions
from tests.kernel_helpers import booted, echo, modprobe, rmmod, t_show_all
from tests.test_race_windows import Step


@pytest.fixture(scope="module")
def kernel():
    with booted(variant="fixed") as k:
        modprobe(k, "uinput")
        yield k


def filter_names(kernel) -> list[str]:
    return t_show_all(kernel.ftrace, Listing.FILTER).splitlines()


@pytest.mark.parametrize("pattern, search, type_", [
    ("foo", "foo", MatchType.MATCH_FULL),
    ("foo*", "foo", MatchType.MATCH_FRONT_ONLY),
    ("*foo", "foo", MatchType.MATCH_END_ONLY),
    ("*foo*", "foo", MatchType.MATCH_MIDDLE_ONLY),
    ("*", "", MatchType.MATCH_END_ONLY),
    ("foo*bar", "foo", MatchType.MATCH_FRONT_ONLY),  # the documented 3.x quirk
    ("*foo*bar", "foo", MatchType.MATCH_MIDDLE_ONLY),
    # The first '*' after position 0 ends the pattern: later ones are not looked at.
    ("foo*bar*", "foo", MatchType.MATCH_FRONT_ONLY),
    ("*foo*x*", "foo", MatchType.MATCH_MIDDLE_ONLY),
    ("fo?[o]", "fo?[o]", MatchType.MATCH_FULL),  # ? and [ are literal
    # A NUL ends the C string compared, but the '*' scan runs over all `len` chars.
    ("foo\0bar", "foo", MatchType.MATCH_FULL),
    ("foo\0*", "foo", MatchType.MATCH_FRONT_ONLY),
    ("*foo\0bar*", "foo", MatchType.MATCH_MIDDLE_ONLY),
    ("\0*", "", MatchType.MATCH_FRONT_ONLY),
])
def test_filter_parse_regex(pattern, search, type_):
    regex = filter_parse_regex(pattern)
    assert (regex.search, regex.type, regex.negate) == (search, type_, False)
    assert filter_parse_regex("!" + pattern).negate


@settings(max_examples=300, deadline=None)
@given(data=st.data(), form=st.sampled_from(["{}", "{}*", "*{}", "*{}*", "{}*x"]))
def test_name_index_finds_what_a_walk_over_every_name_finds(kernel, data, form):
    """The name index (exact names and ``foo*``) against ``strcmp``/``ftrace_match`` over
    every record of the core kernel and of uinput: the same records, in record order."""
    for pg in kernel.ftrace.pages.groups:
        name = data.draw(st.sampled_from(pg.names.tolist()))
        cut = data.draw(st.integers(0, len(name)))
        search = name[:cut] + data.draw(st.sampled_from(["", "_", "a", "~"]))
        regex = filter_parse_regex(form.format(search))
        walk = (pg.names == regex.search if regex.type is MatchType.MATCH_FULL
                else ftrace_match(pg.names, regex))
        assert ftrace_match_record(pg, regex, None).tolist() == np.flatnonzero(walk).tolist()


@pytest.mark.parametrize("pattern", ["*" + "a" * 200_000, "a" * 200_000 + "*",
                                     "*" + "a" * 200_000 + "*", "a" * 200_000])
def test_a_search_longer_than_every_name_is_answered_without_comparing(kernel, pattern,
                                                                       monkeypatch):
    """No name holds it, and NumPy would widen every name to its length to compare them:
    the match answers before any comparison."""
    def compared(*args: object) -> None:
        raise AssertionError("the names were compared with the search")

    monkeypatch.setattr("kernel_daemon.ftrace.filter.ftrace_match", compared)
    for pg in kernel.ftrace.pages.groups:
        monkeypatch.setattr(pg, "records_named", compared)
        monkeypatch.setattr(pg, "records_prefixed", compared)
        assert len(ftrace_match_record(pg, filter_parse_regex(pattern), None)) == 0


def test_one_token_per_write_and_continuation(kernel):
    ft = kernel.ftrace
    it = ftrace_regex_open(ft, ft.global_ops, True, True)
    ppos = SimpleNamespace(pos=0)
    for data, read in ((b"uinput_open uinput_read\n", len("uinput_open ")),
                       (b"uinput_read\n", len("uinput_read\n")),
                       (b"   \n", 4),  # only whitespace
                       (b"", 0),
                       (b"uinput_po", 9),  # continued
                       (b"ll", 2)):
        pos = ppos.pos
        assert ftrace_regex_write(ft, it, data, ppos) == read
        assert ppos.pos == pos + read  # trace_get_user(): *ppos += read
    # Nothing is live until release; the unterminated token is matched there.
    assert filter_names(kernel) == [ALL_FUNCTIONS_BANNER.decode().strip()]
    ftrace_regex_release(ft, it)
    # Listed in record (address) order, which is uinput.c's order.
    assert filter_names(kernel) == ["uinput_open [uinput]", "uinput_read [uinput]",
                                    "uinput_poll [uinput]"]
    echo(kernel, "", "set_ftrace_filter")


def test_nonmatching_token_fails_the_write_but_release_installs_the_copy(kernel):
    echo(kernel, "uinput_open", "set_ftrace_filter")
    assert echo(kernel, "nosuchfn", "set_ftrace_filter") == [errno.EINVAL]
    assert filter_names(kernel) == [ALL_FUNCTIONS_BANNER.decode().strip()]
    echo(kernel, "uinput_open", "set_ftrace_filter")
    assert echo(kernel, "uinput_read nosuchfn uinput_poll", "set_ftrace_filter", append=True) \
        == [errno.EINVAL]
    # The failing token stops the shell's write loop; earlier tokens stay.
    assert filter_names(kernel) == ["uinput_open [uinput]", "uinput_read [uinput]"]
    echo(kernel, "", "set_ftrace_filter")


def test_negation_globs_and_mod_command(kernel):
    echo(kernel, "*:mod:uinput", "set_ftrace_filter")
    names = filter_names(kernel)
    assert len(names) == len(kernel.modules.find_module("uinput").symbols)
    assert all(n.endswith(" [uinput]") for n in names)
    # strsep(&param, ":"): the module name ends at a further ':', the rest is ignored.
    assert echo(kernel, "*:mod:uinput:junk", "set_ftrace_filter") == []
    assert filter_names(kernel) == names
    assert echo(kernel, "!uinput_dev_*", "set_ftrace_filter", append=True) == []
    assert not any(n.startswith("uinput_dev_") for n in filter_names(kernel))
    assert echo(kernel, "!:mod:uinput", "set_ftrace_filter", append=True) == []
    assert filter_names(kernel) == [ALL_FUNCTIONS_BANNER.decode().strip()]
    assert echo(kernel, "uinput_open:mod:nosuchmod", "set_ftrace_filter") == [errno.EINVAL]
    assert echo(kernel, "uinput_open:mod:", "set_ftrace_filter") == [errno.EINVAL]
    assert echo(kernel, "uinput_open:nosuchcmd", "set_ftrace_filter") == [errno.EINVAL]
    # traceoff is a command: a probe, listed after the functions (test_function_probes.py).
    assert echo(kernel, "uinput_open:traceoff", "set_ftrace_filter") == []
    assert filter_names(kernel) == [ALL_FUNCTIONS_BANNER.decode().strip(),
                                    "uinput_open [uinput]:traceoff:unlimited"]
    assert echo(kernel, "!uinput_open:traceoff", "set_ftrace_filter") == []
    assert echo(kernel, "!", "set_ftrace_filter") == [errno.EINVAL]
    assert echo(kernel, "vfs_write*bogus", "set_ftrace_filter") == []  # prefix "vfs_write"
    assert filter_names(kernel)[0].startswith("vfs_write")
    prefix = filter_names(kernel)
    assert echo(kernel, "vfs_write*bogus*", "set_ftrace_filter") == []
    assert filter_names(kernel) == prefix
    assert echo(kernel, "uinput_open", "set_ftrace_notrace") == []
    assert t_show_all(kernel.ftrace, Listing.NOTRACE) == "uinput_open [uinput]\n"
    echo(kernel, "", "set_ftrace_notrace")
    assert t_show_all(kernel.ftrace, Listing.NOTRACE) == ""
    echo(kernel, "", "set_ftrace_filter")


def test_a_nul_in_a_token_ends_its_c_string(kernel):
    """trace_get_user() keeps a NUL byte in the token; ftrace_process_regex()'s strsep()
    and the name match see the C string before it."""
    assert echo(kernel, "uinput_open\0junk", "set_ftrace_filter") == []
    assert filter_names(kernel) == ["uinput_open [uinput]"]
    # No ':' before the NUL: a name, not a command (no probe), and it is selected.
    assert echo(kernel, "uinput_read\0:traceoff", "set_ftrace_filter") == []
    assert filter_names(kernel) == ["uinput_read [uinput]"]
    assert not kernel.ftrace.probes.ftrace_probe_registered
    # The '*' after the NUL still makes a prefix match of the C string before it.
    assert echo(kernel, "uinput_dev_\0*", "set_ftrace_filter") == []
    assert filter_names(kernel) and all(
        n.startswith("uinput_dev_") for n in filter_names(kernel))
    # After a ':', the command and its parameter end at the NUL too.
    assert echo(kernel, "uinput_open:mod\0:uinput", "set_ftrace_filter") == [errno.EINVAL]
    assert echo(kernel, "uinput_open\0x", "set_ftrace_notrace") == []
    assert t_show_all(kernel.ftrace, Listing.NOTRACE) == "uinput_open [uinput]\n"
    echo(kernel, "", "set_ftrace_notrace")
    echo(kernel, "", "set_ftrace_filter")


def isspace(ch: int) -> bool:
    """lib/ctype.c: tab, newline, vertical tab, form feed, return, space and 0xA0 are _S."""
    return 9 <= ch <= 13 or ch in (32, 160)


def kernel_trace_get_user(parser: TraceParser, data: bytes, pos: int) -> int:
    """kernel/trace/trace.c:trace_get_user() of 3.6 as written there, a byte at a time:
    only the bytes stored inside the token loop are checked against the size."""
    if pos == 0:
        parser.clear()
    ch, read = data[0], 1
    if not parser.cont:
        while read < len(data) and isspace(ch):
            ch, read = data[read], read + 1
        if isspace(ch):
            return read
        parser.buffer.clear()
    while read < len(data) and not isspace(ch):
        if len(parser.buffer) < parser.size - 1:
            parser.buffer.append(ch)
        else:
            raise KernelError(errno.EINVAL)
        ch, read = data[read], read + 1
    if isspace(ch):
        parser.cont = False
    else:
        parser.cont = True
        parser.buffer.append(ch)  # unchecked
    return read


@settings(max_examples=300, deadline=None)
@example(size=FTRACE_BUFF_MAX, writes=[(b"a\xa0b", False), (b"\xa0\x1cc\x85 ", False)])
@given(size=st.sampled_from([3, 8, FTRACE_BUFF_MAX]),
       writes=st.lists(st.tuples(st.binary(min_size=1, max_size=12), st.booleans()),
                       min_size=1, max_size=5))
def test_trace_get_user_consumes_as_the_kernels_byte_loop(size, writes):
    ours, reference = TraceParser(size=size), TraceParser(size=size)
    pos = 0
    for data, rewind in writes:
        pos = 0 if rewind else pos
        outcomes = []
        for parser, get_user in ((ours, trace_get_user), (reference, kernel_trace_get_user)):
            try:
                outcomes.append(get_user(parser, data, pos))
            except KernelError as err:
                outcomes.append(-err.errno)
        assert outcomes[0] == outcomes[1]
        assert (ours.buffer, ours.cont) == (reference.buffer, reference.cont)
        pos += max(outcomes[0], 0)


def test_token_too_long(kernel):
    """A token ended by a space holds FTRACE_BUFF_MAX - 1 bytes at most; one that ends a
    write holds a byte more, the one 3.6 stores after its loop without a check."""
    ft = kernel.ftrace
    for data in (b"x" * FTRACE_BUFF_MAX + b"\n", b"x" * (FTRACE_BUFF_MAX + 1)):
        it = ftrace_regex_open(ft, ft.global_ops, True, True)
        ppos = SimpleNamespace(pos=0)
        with pytest.raises(KernelError) as exc:
            ftrace_regex_write(ft, it, data, ppos)
        assert exc.value.errno == errno.EINVAL and ppos.pos == 0  # trace_get_user() failed
        ftrace_regex_release(ft, it)
    it = ftrace_regex_open(ft, ft.global_ops, True, True)
    ppos = SimpleNamespace(pos=0)
    assert ftrace_regex_write(ft, it, b"x" * FTRACE_BUFF_MAX, ppos) == FTRACE_BUFF_MAX
    ftrace_regex_release(ft, it)  # names nothing: no error, an empty filter
    assert ft.global_ops.filter_hash.count == 0
    it = ftrace_regex_open(ft, ft.global_ops, True, True)
    ppos = SimpleNamespace(pos=0)
    assert ftrace_regex_write(ft, it, b"x" * 200, ppos) == 200
    assert ftrace_regex_write(ft, it, b"x" * 43, ppos) == 43
    # One byte at a time goes on past the buffer; a longer write is checked.
    assert [ftrace_regex_write(ft, it, b"x", ppos) for _ in range(3)] == [1, 1, 1]
    assert len(it.parser.buffer) == FTRACE_BUFF_MAX + 3 and ppos.pos == 246
    with pytest.raises(KernelError) as exc:
        ftrace_regex_write(ft, it, b"xx", ppos)
    assert exc.value.errno == errno.EINVAL and ppos.pos == 246
    ftrace_regex_release(ft, it)


def test_stale_entries_are_not_listed_but_keep_the_filter_nonempty():
    with booted(variant="fixed") as kernel:
        modprobe(kernel, "uinput")
        echo(kernel, "uinput_release", "set_ftrace_filter")
        rmmod(kernel, "uinput")
        assert t_show_all(kernel.ftrace, Listing.FILTER) == ""
        assert kernel.ftrace.global_ops.filter_hash.count == 1
        modprobe(kernel, "uinput")  # same address: the entry is visible again
        assert t_show_all(kernel.ftrace, Listing.FILTER) == "uinput_release [uinput]\n"


def test_an_o_trunc_open_empties_its_copy_under_ftrace_lock():
    """ftrace_filter_reset() takes ftrace_lock, inside ftrace_regex_lock: an O_TRUNC open
    that has copied the hash (under ftrace_lock, noted) and then waited for another
    writer's ftrace_regex_lock goes on to wait for ftrace_lock, held by a third task by
    then; let go, it opens with an empty copy."""
    with booted() as k:
        ft = k.ftrace
        echo(k, "vfs_read", "set_ftrace_filter")
        noted = Acquisitions()
        opened = []

        def open_truncating() -> None:
            with noted:
                opened.append(ftrace_regex_open(ft, ft.global_ops, True, True))

        with ft.ftrace_regex_lock:
            opening = Step(open_truncating)
            assert opening.blocked(on=ft.ftrace_regex_lock)
            assert len(noted.times) == 1  # its copy's
            ft.ftrace_lock.acquire()
        try:
            assert opening.blocked(on=ft.ftrace_lock)
        finally:
            ft.ftrace_lock.release()
        opening.finish()
        [iter] = opened
        assert len(noted.times) == 2 and not iter.hash
        ftrace_regex_release(ft, iter)
        assert filter_names(k) == [ALL_FUNCTIONS_BANNER.decode().strip()]
