"""ManualTimers: the backend contract on a manual clock (order, no drift, cancel, errors, close)."""

from __future__ import annotations

import logging

import pytest

import cra
from cra.timers import ManualTimers, TimerBackend, TimersClosedError

START_US = cra.parse_timestamp("2025-01-01T00:00:00Z")


@pytest.fixture
def clock() -> cra.ManualClock:
    return cra.ManualClock("2025-01-01T00:00:00Z")


@pytest.fixture
def timers(clock: cra.ManualClock) -> ManualTimers:
    return ManualTimers(clock)


def elapsed(clock: cra.ManualClock) -> float:
    return (clock.now_us() - START_US) / 1_000_000


def test_it_implements_the_backend_protocol(timers: ManualTimers) -> None:
    assert isinstance(timers, TimerBackend)


def test_nothing_runs_until_the_clock_is_advanced(timers: ManualTimers, clock: cra.ManualClock) -> None:
    ran: list[str] = []
    timers.schedule_once(0, lambda: ran.append("now"))
    timers.schedule_once(1, lambda: ran.append("later"))
    assert ran == []
    assert timers.run_due() == 1
    assert ran == ["now"]
    assert timers.advance(1) == 1
    assert ran == ["now", "later"]
    assert elapsed(clock) == 1


def test_callbacks_run_in_due_order_then_scheduling_order_with_the_clock_at_their_due_time(
    timers: ManualTimers, clock: cra.ManualClock
) -> None:
    ran: list[tuple[str, float]] = []

    def record(label: str) -> None:
        ran.append((label, elapsed(clock)))

    timers.schedule_once(3, lambda: record("c"))
    timers.schedule_once(1, lambda: record("a1"))
    timers.schedule_once(2, lambda: record("b"))
    timers.schedule_once(1, lambda: record("a2"))
    timers.advance(10)
    assert ran == [("a1", 1.0), ("a2", 1.0), ("b", 2.0), ("c", 3.0)]
    assert elapsed(clock) == 10


def test_repeats_inside_the_span_all_run_on_a_fixed_grid(
    timers: ManualTimers, clock: cra.ManualClock
) -> None:
    seen: list[float] = []

    def slow() -> None:
        seen.append(elapsed(clock))
        clock.advance(0.4)  # the callback "takes" 0.4 s: the next run is still due on the grid

    timers.schedule_repeating(1.5, slow)
    timers.advance(10)
    assert seen == [1.5, 3.0, 4.5, 6.0, 7.5, 9.0]
    assert timers.stats()["missed"] == 0


def test_a_late_run_due_runs_a_repeat_once_and_skips_missed_intervals(
    timers: ManualTimers, clock: cra.ManualClock
) -> None:
    seen: list[float] = []
    timers.schedule_repeating(1.5, lambda: seen.append(elapsed(clock)))
    clock.advance(10)  # moved behind the backend's back
    assert timers.run_due() == 1
    assert timers.stats()["missed"] == 5  # 3.0, 4.5, 6.0, 7.5 and 9.0
    assert timers.next_due_in() == 0.5  # the grid continues at 10.5
    timers.advance(0.5)
    assert seen == [10.0, 10.5]


def test_a_callback_may_schedule_timers_that_run_in_the_same_advance(
    timers: ManualTimers, clock: cra.ManualClock
) -> None:
    seen: list[tuple[str, float]] = []

    def first() -> None:
        seen.append(("first", elapsed(clock)))
        timers.schedule_once(2, lambda: seen.append(("second", elapsed(clock))))

    timers.schedule_once(1, first)
    timers.advance(5)
    assert seen == [("first", 1.0), ("second", 3.0)]


def test_cancel_is_idempotent(timers: ManualTimers) -> None:
    ran: list[str] = []
    once = timers.schedule_once(1, lambda: ran.append("once"))
    assert timers.cancel(once) is True
    assert timers.cancel(once) is False
    assert timers.cancel("no-such-timer") is False
    timers.advance(2)
    assert ran == []
    done = timers.schedule_once(1, lambda: ran.append("done"))
    timers.advance(1)
    assert ran == ["done"]
    assert timers.cancel(done) is False  # already ran
    assert timers.stats()["cancelled"] == 1


def test_a_repeating_timer_can_cancel_itself(timers: ManualTimers) -> None:
    runs: list[int] = []
    timer_id = ""

    def tick() -> None:
        runs.append(1)
        if len(runs) == 3:
            assert timers.cancel(timer_id) is True

    timer_id = timers.schedule_repeating(1, tick)
    timers.advance(10)
    assert len(runs) == 3
    assert timers.cancel(timer_id) is False


def test_an_exception_is_counted_and_stops_nothing(
    timers: ManualTimers, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    timers.schedule_repeating(1, boom, name="boom")
    timers.schedule_once(2, lambda: ran.append("after"))
    with caplog.at_level(logging.ERROR, logger="cra.timers"):
        timers.advance(3)
    assert ran == ["after"]
    stats = timers.stats()
    assert (stats["errors"], stats["fired"], stats["scheduled"]) == (3, 4, 1)
    assert "boom" in caplog.text


def test_close_cancels_everything_and_refuses_new_timers(timers: ManualTimers) -> None:
    ran: list[str] = []
    timers.schedule_once(1, lambda: ran.append("x"))
    timers.schedule_repeating(1, lambda: ran.append("y"))
    timers.close()
    timers.close()
    assert timers.advance(5) == 0
    assert ran == []
    assert timers.stats()["scheduled"] == 0
    with pytest.raises(TimersClosedError) as info:
        timers.schedule_once(1, lambda: None)
    assert isinstance(info.value, cra.UnavailableError)
    assert info.value.code == "TIMERS_CLOSED"


def test_close_from_a_callback_stops_the_rest(timers: ManualTimers) -> None:
    ran: list[str] = []
    timers.schedule_once(1, timers.close)
    timers.schedule_once(1, lambda: ran.append("never"))
    timers.advance(2)
    assert ran == []


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda t: t.schedule_once(-1, lambda: None), ValueError),
        (lambda t: t.schedule_once(float("nan"), lambda: None), ValueError),
        (lambda t: t.schedule_once(float("inf"), lambda: None), ValueError),
        (lambda t: t.schedule_repeating(0, lambda: None), ValueError),
        (lambda t: t.schedule_once(True, lambda: None), TypeError),
        (lambda t: t.schedule_once("1", lambda: None), TypeError),
        (lambda t: t.schedule_once(1, "not callable"), TypeError),
        (lambda t: t.advance(-1), ValueError),
    ],
)
def test_bad_arguments_are_refused(timers: ManualTimers, call, error) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error):
        call(timers)
    assert timers.stats()["scheduled"] == 0


def test_it_needs_a_manual_clock() -> None:
    with pytest.raises(TypeError, match="ManualClock"):
        ManualTimers(cra.SystemClock())  # type: ignore[arg-type]
