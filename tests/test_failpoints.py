"""Tests for failpoints: spec grammar, probability/count semantics, pause and release,
and the error action (fault injection) with its per-site errnos."""

from __future__ import annotations

import errno
import queue
import threading
import time

import pytest

from kernel_daemon.failpoints import FailpointSpec, Failpoints, parse_spec
from kernel_daemon.task import Task, running_as

SITES = ("ftrace_update_code:before_count", "ftrace_hash_move:after_disable")
SITE = SITES[0]


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("", None),
        ("off", None),
        (" off ", None),
        ("pause", FailpointSpec("pause")),
        ("yield", FailpointSpec("yield")),
        ("1*pause", FailpointSpec("pause", count=1)),
        ("5*yield", FailpointSpec("yield", count=5)),
        ("20%sleep(3)", FailpointSpec("sleep", probability=20.0, sleep_ms=3.0)),
        ("0.5%yield", FailpointSpec("yield", probability=0.5)),
        ("50%2*sleep(1)", FailpointSpec("sleep", 50.0, 2, 1.0)),
        ("sleep(0.25)", FailpointSpec("sleep", sleep_ms=0.25)),
        ("100%pause", FailpointSpec("pause")),
        ("error(EFAULT)", FailpointSpec("error", error=errno.EFAULT)),
        ("1*error(EPERM)", FailpointSpec("error", count=1, error=errno.EPERM)),
        ("2.5%3*error(EINVAL)", FailpointSpec("error", 2.5, 3, error=errno.EINVAL)),
    ],
)
def test_parse_good(spec: str, parsed: FailpointSpec | None) -> None:
    assert parse_spec(spec) == parsed
    if parsed is not None:
        assert parse_spec(str(parsed)) == parsed


@pytest.mark.parametrize(
    "spec",
    ["sleep", "sleep()", "sleep(x)", "pause(1)", "101%pause", "0*pause", "%pause",
     "-1%pause", "2*", "1*2*pause", "2*20%pause", "20 % pause", "panic", "off*pause",
     "error", "error()", "error(efault)", "error(14)", "error(ENOSUCHERRNO)", "error(EPERM",
     "sleep(99999999999999999999)"],
)
def test_parse_bad(spec: str) -> None:
    with pytest.raises(ValueError, match="bad failpoint spec"):
        parse_spec(spec)


def test_unknown_sites_and_bad_specs_rejected() -> None:
    fp = Failpoints(known=SITES)
    with pytest.raises(KeyError):
        fp.configure("nowhere", "pause")
    with pytest.raises(KeyError):
        fp.fire("nowhere")
    with pytest.raises(KeyError):
        fp.release("nowhere")
    fp.configure(SITE, "yield")
    with pytest.raises(ValueError):
        fp.configure(SITE, "sleep(")
    assert fp.list() == {SITES[1]: "", SITE: "yield"}


def test_any_name_allowed_without_known() -> None:
    fp = Failpoints()
    fp.fire("anything")
    fp.configure("x", "1*yield")
    fp.fire("x")
    assert fp.list() == {"x": ""} and fp.state("x").triggers == 1


class _NoLock:
    def __enter__(self) -> None:
        raise AssertionError("fire() on an off site took the lock")

    def __exit__(self, *exc: object) -> None:
        raise AssertionError


def test_off_site_is_fast_path() -> None:
    fp = Failpoints(known=SITES)
    fp.configure(SITE, "pause")
    fp.configure(SITE, "off")
    fp._cond = _NoLock()  # type: ignore[assignment]
    for name in SITES:
        fp.fire(name)


def test_count_turns_site_off() -> None:
    fp = Failpoints(known=SITES)
    fp.configure(SITE, "3*yield")
    fp.fire(SITE)
    assert fp.list()[SITE] == "2*yield"
    for _ in range(4):
        fp.fire(SITE)
    assert fp.list()[SITE] == ""
    assert (fp.state(SITE).triggers, fp.state(SITES[1]).triggers) == (3, 0)
    # Passing the site counts whether it is armed or not.
    assert fp.state(SITE).evaluations == 5 and fp.state(SITE).triggers == 3


def _pattern(seed: int, spec: str, n: int) -> list[int]:
    fp = Failpoints(seed=seed, known=SITES)
    fp.configure(SITE, spec)
    out = []
    for _ in range(n):
        before = fp.state(SITE).triggers
        fp.fire(SITE)
        out.append(fp.state(SITE).triggers - before)
    return out


def test_probability_is_seeded_and_roughly_right() -> None:
    a = _pattern(1234, "30%yield", 2000)
    assert a == _pattern(1234, "30%yield", 2000)
    assert a != _pattern(4321, "30%yield", 2000)
    assert 500 < sum(a) < 700
    assert sum(_pattern(1, "0%yield", 200)) == 0
    assert sum(_pattern(1, "100%yield", 200)) == 200


def test_probability_then_count() -> None:
    # The count only runs down when the roll succeeds, so exactly two of many tries fire.
    hits = _pattern(5, "50%2*sleep(0)", 100)
    assert [i for i, hit in enumerate(hits) if hit] == [6, 7]


def test_sleep_delays() -> None:
    fp = Failpoints(known=SITES)
    fp.configure(SITE, "sleep(20)")
    start = time.monotonic()
    fp.fire(SITE)
    assert time.monotonic() - start >= 0.02


def _spawn(fp: Failpoints, name: str, done: queue.Queue[int], ident: int) -> threading.Thread:
    def run() -> None:
        fp.fire(name)
        done.put(ident)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_pause_wait_and_release() -> None:
    fp = Failpoints(known=SITES)
    fp.configure(SITE, "pause")
    done: queue.Queue[int] = queue.Queue()
    thread = _spawn(fp, SITE, done, 1)
    assert fp.wait_paused(SITE, 1, timeout=5)
    assert len(fp.state(SITE).paused) == 1
    assert done.empty() and thread.is_alive()
    assert fp.release(SITE) == 1
    assert done.get(timeout=5) == 1
    thread.join(5)
    assert fp.state(SITE).paused == ()
    # The spec stays: the next thread pauses again.
    assert fp.list()[SITE] == "pause"
    second = _spawn(fp, SITE, done, 2)
    assert fp.wait_paused(SITE, 1, timeout=5)
    assert fp.release(SITE) == 1
    assert done.get(timeout=5) == 2
    second.join(5)
    assert fp.release(SITE) == 0


def test_counted_pause_lets_later_threads_through() -> None:
    fp = Failpoints(known=SITES)
    fp.configure(SITE, "2*pause")
    done: queue.Queue[int] = queue.Queue()
    threads = [_spawn(fp, SITE, done, i) for i in range(3)]
    assert fp.wait_paused(SITE, 2, timeout=5)
    first = done.get(timeout=5)  # exactly one thread found the site already off
    assert done.empty()
    assert fp.list()[SITE] == ""
    assert fp.release(SITE) == 2
    rest = {done.get(timeout=5), done.get(timeout=5)}
    assert rest | {first} == {0, 1, 2}
    for t in threads:
        t.join(5)
        assert not t.is_alive()
    assert fp.state(SITE).triggers == 2


def test_wait_paused_times_out() -> None:
    fp = Failpoints(known=SITES)
    assert fp.wait_paused(SITE, 1, timeout=0.01) is False


def test_release_all_wakes_everyone_and_disables_sites() -> None:
    fp = Failpoints(known=SITES)
    for name in SITES:
        fp.configure(name, "pause")
    done: queue.Queue[int] = queue.Queue()
    threads = [_spawn(fp, name, done, i) for i, name in enumerate(SITES)]
    for name in SITES:
        assert fp.wait_paused(name, 1, timeout=5)
    fp.release_all()
    assert {done.get(timeout=5), done.get(timeout=5)} == {0, 1}
    for t in threads:
        t.join(5)
    assert all(fp.state(name).paused == () for name in SITES)
    assert set(fp.list().values()) == {""}
    fp.fire(SITE)  # off now: returns at once


def test_release_count_lets_the_oldest_go_first() -> None:
    fp = Failpoints(known=SITES)
    fp.configure(SITE, "pause")
    done: queue.Queue[int] = queue.Queue()
    threads = []
    for i in range(3):
        # Each thread runs as a task of its own, paused after the ones before it.
        threads.append(threading.Thread(target=lambda i=i: _fire_as(fp, Task(100 + i, f"t{i}"),
                                                                      done, i), daemon=True))
        threads[-1].start()
        assert fp.wait_paused(SITE, i + 1, timeout=5)
    assert [t.pid for t in fp.state(SITE).paused] == [100, 101, 102]
    assert fp.release(SITE, 2) == 2
    assert {done.get(timeout=5), done.get(timeout=5)} == {0, 1}
    assert [t.pid for t in fp.state(SITE).paused] == [102] and done.empty()
    assert fp.release(SITE, 5) == 1
    assert done.get(timeout=5) == 2
    for t in threads:
        t.join(5)


def _fire_as(fp: Failpoints, task: Task, done: queue.Queue[int], ident: int) -> None:
    with running_as(task):
        fp.fire(SITE)
    done.put(ident)


def test_waiters_wake_when_interrupted_or_shut_down() -> None:
    fp = Failpoints(known=SITES)
    interrupted = threading.Event()
    results: queue.Queue[bool] = queue.Queue()
    waiter = threading.Thread(
        target=lambda: results.put(fp.wait_paused(SITE, 1, None, interrupted)), daemon=True)
    waiter.start()
    interrupted.set()
    fp.wake_waiters()
    assert results.get(timeout=5) is False
    waiter = threading.Thread(target=lambda: results.put(fp.wait_paused(SITE, 1, None)),
                              daemon=True)
    waiter.start()
    fp.release_all()
    assert results.get(timeout=5) is False and fp.closed
    # Armed again on a kernel that is shutting down, the site never pauses.
    fp.configure(SITE, "pause")
    fp.fire(SITE)


def test_a_site_counts_the_waiters_waiting_on_it() -> None:
    fp = Failpoints(known=SITES)
    assert fp.state(SITE).waiters == 0
    results: queue.Queue[bool] = queue.Queue()
    waiter = threading.Thread(target=lambda: results.put(fp.wait_paused(SITE, 1, None)),
                              daemon=True)
    waiter.start()
    deadline = time.monotonic() + 5
    while fp.state(SITE).waiters != 1:
        assert time.monotonic() < deadline, "the waiter was never counted"
        time.sleep(0.001)
    fp.configure(SITE, "1*pause")
    threading.Thread(target=fp.fire, args=(SITE,), daemon=True).start()
    assert results.get(timeout=5) is True
    assert fp.state(SITE).waiters == 0
    fp.release(SITE)


def test_errno_alias_parses_to_its_canonical_name() -> None:
    parsed = parse_spec("error(EWOULDBLOCK)")
    assert parsed == FailpointSpec("error", error=errno.EAGAIN)
    assert str(parsed) == "error(EAGAIN)"


def test_error_action_only_with_the_errnos_a_site_can_fail_with() -> None:
    fp = Failpoints(known=SITES, errors={SITE: {errno.EFAULT, errno.EPERM}})
    fp.configure(SITE, "1*error(EPERM)")
    only = r"cannot fail with EINVAL \(only error\(EFAULT\|EPERM\)\)"
    with pytest.raises(ValueError, match=only):
        fp.configure(SITE, "error(EINVAL)")
    assert fp.list()[SITE] == "1*error(EPERM)"  # a refused spec leaves the site as it was
    with pytest.raises(ValueError, match="cannot fail: no error action there"):
        fp.configure(SITES[1], "error(EPERM)")
    # The other actions are for every site.
    fp.configure(SITES[1], "1*pause")
    fp.configure(SITES[1], "off")


def test_error_fires_its_errno_as_counted() -> None:
    fp = Failpoints(known=SITES)
    fp.configure(SITE, "2*error(EFAULT)")
    assert [fp.fire(SITE) for _ in range(3)] == [errno.EFAULT, errno.EFAULT, 0]
    assert fp.fire(SITES[1]) == 0
    state = fp.state(SITE)
    assert (state.spec, state.evaluations, state.triggers) == ("", 3, 2)


def test_fire_each_of_an_off_site_is_one_count() -> None:
    fp = Failpoints(known=SITES)
    cond, fp._cond = fp._cond, _NoLock()  # type: ignore[assignment]
    assert fp.fire_each(SITE, 1000) is None
    assert not fp.armed(SITE)
    fp.passed(SITES[1], 7)
    fp._cond = cond
    assert [fp.state(name).evaluations for name in SITES] == [1000, 7]
    assert fp.state(SITE).triggers == 0


def test_fire_each_is_fire_called_in_a_row_until_an_error() -> None:
    # Seeded, the batch fails at the very evaluation where single calls first fail.
    singles = _pattern(99, "3%error(EPERM)", 400)
    fp = Failpoints(seed=99, known=SITES)
    fp.configure(SITE, "3%error(EPERM)")
    assert fp.fire_each(SITE, 400) == (singles.index(1), errno.EPERM)
    assert fp.state(SITE).evaluations == singles.index(1) + 1
    # A site whose count runs out mid-batch only counts the rest.
    fp.configure(SITE, "2*yield")
    before = fp.state(SITE).evaluations
    assert fp.fire_each(SITE, 50) is None
    assert fp.state(SITE).evaluations == before + 50 and fp.list()[SITE] == ""
    assert fp.fire_each(SITE, 0) is None


def test_fire_each_pauses_at_the_evaluation_that_triggers() -> None:
    fp = Failpoints(known=SITES)
    fp.configure(SITE, "1*pause")
    results: queue.Queue[object] = queue.Queue()
    thread = threading.Thread(target=lambda: results.put(fp.fire_each(SITE, 5)), daemon=True)
    thread.start()
    assert fp.wait_paused(SITE, 1, timeout=5)
    assert fp.state(SITE).evaluations == 1 and results.empty()
    assert fp.release(SITE) == 1
    assert results.get(timeout=5) is None
    thread.join(5)
    assert fp.state(SITE).evaluations == 5
