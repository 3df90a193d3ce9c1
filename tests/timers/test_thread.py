"""ThreadTimers on the system clock: waits on events with generous timeouts, never sleeps, asserts no
timings."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from cra.timers import ThreadTimers, TimerBackend, TimersClosedError

WAIT = 5.0  # generous: a 10 ms timer only has to fire at all


@pytest.fixture
def timers() -> Iterator[ThreadTimers]:
    backend = ThreadTimers(thread_name="cra-timers-test")
    yield backend
    backend.close()


def test_it_implements_the_backend_protocol(timers: ThreadTimers) -> None:
    assert isinstance(timers, TimerBackend)


def test_a_10ms_timer_fires(timers: ThreadTimers) -> None:
    fired = threading.Event()
    timers.schedule_once(0.01, fired.set)
    assert fired.wait(WAIT)


def test_timers_run_in_due_order_on_one_thread(timers: ThreadTimers) -> None:
    ran: list[tuple[str, str]] = []
    done = threading.Event()

    def record(label: str) -> None:
        ran.append((label, threading.current_thread().name))
        if len(ran) == 4:
            done.set()

    timers.schedule_once(0.04, lambda: record("d"))
    timers.schedule_once(0.02, lambda: record("b"))
    timers.schedule_once(0.01, lambda: record("a"))
    timers.schedule_once(0.03, lambda: record("c"))
    assert done.wait(WAIT)
    assert [label for label, _ in ran] == ["a", "b", "c", "d"]
    assert {name for _, name in ran} == {"cra-timers-test"}


def test_many_timers_share_one_scheduler_thread(timers: ThreadTimers) -> None:
    for _ in range(50):
        timers.schedule_once(60, lambda: None)
    schedulers = [t for t in threading.enumerate() if t.name == "cra-timers-test"]
    assert len(schedulers) == 1


def test_a_repeating_timer_repeats_until_cancelled(timers: ThreadTimers) -> None:
    runs: list[int] = []
    three = threading.Event()
    timer_id = ""

    def tick() -> None:
        runs.append(1)
        if len(runs) == 3:
            assert timers.cancel(timer_id) is True
            three.set()

    timer_id = timers.schedule_repeating(0.01, tick)
    assert three.wait(WAIT)
    timers.close()  # joins the thread: nothing more can run
    assert len(runs) == 3
    assert timers.cancel(timer_id) is False


def test_cancel_is_idempotent_and_a_cancelled_timer_never_runs(timers: ThreadTimers) -> None:
    ran: list[str] = []
    timer_id = timers.schedule_once(60, lambda: ran.append("x"))
    assert timers.cancel(timer_id) is True
    assert timers.cancel(timer_id) is False
    assert timers.cancel("unknown") is False
    timers.close()
    assert ran == []


def test_an_exception_is_counted_and_the_thread_carries_on(timers: ThreadTimers) -> None:
    after = threading.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    timers.schedule_once(0.01, boom)
    timers.schedule_once(0.02, after.set)
    assert after.wait(WAIT)
    assert timers.stats()["errors"] == 1


def test_close_waits_for_a_running_callback(timers: ThreadTimers) -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    observed: list[bool] = []

    def slow() -> None:
        started.set()
        release.wait(WAIT)
        finished.set()

    timers.schedule_once(0.01, slow)
    assert started.wait(WAIT)

    def close_it() -> None:
        timers.close()
        observed.append(finished.is_set())

    closer = threading.Thread(target=close_it)
    closer.start()
    release.set()
    closer.join(WAIT)
    assert observed == [True]


def test_close_from_a_callback_does_not_deadlock(timers: ThreadTimers) -> None:
    closed = threading.Event()

    def close_it() -> None:
        timers.close()
        closed.set()

    timers.schedule_once(0.01, close_it)
    assert closed.wait(WAIT)
    with pytest.raises(TimersClosedError):
        timers.schedule_once(1, lambda: None)


def test_a_callback_can_schedule_another(timers: ThreadTimers) -> None:
    second = threading.Event()

    def first() -> None:
        timers.schedule_once(0.01, second.set)

    timers.schedule_once(0.01, first)
    assert second.wait(WAIT)


def test_no_thread_is_started_before_the_first_timer() -> None:
    backend = ThreadTimers(thread_name="cra-timers-idle")
    try:
        assert not [t for t in threading.enumerate() if t.name == "cra-timers-idle"]
    finally:
        backend.close()
