"""The trace pipeline's counters (SPEC 4.5): buffered, capacity, pressure (0..1), processed, written,
dropped, lag, failing, overflow; the same keys in both modes."""

from __future__ import annotations

import contextlib

import cra
from cra.errors import TraceBackpressureError

from .helpers import START, make_tracer, rec, shop_runtime, span

KEYS = {
    "mode",
    "buffered",
    "capacity",
    "pressure",
    "processed",
    "written",
    "dropped",
    "lag_ms",
    "failing",
    "overflow",
}


def test_a_fresh_processor_reports_every_key() -> None:
    tracer = make_tracer(max_buffered=10, overflow="drop")
    assert tracer.stats() == {
        "mode": "deferred",
        "buffered": 0,
        "capacity": 10,
        "pressure": 0.0,
        "processed": 0,
        "written": 0,
        "dropped": 0,
        "lag_ms": 0.0,
        "failing": False,
        "overflow": "drop",
    }
    tracer.close()


def test_counters_follow_the_buffer() -> None:
    clock = cra.ManualClock(START)
    tracer = make_tracer(max_buffered=10, clock=clock)
    pressures = []
    for i in range(4):
        tracer.emit(span(), [rec(i)])
        pressures.append(tracer.stats()["pressure"])
    assert pressures == [0.1, 0.2, 0.3, 0.4]
    clock.advance(1.5)
    stats = tracer.stats()
    assert (stats["buffered"], stats["processed"], stats["written"]) == (4, 0, 0)
    assert stats["lag_ms"] == 1500.0  # age of the oldest buffered record, on the runtime's clock

    tracer.flush()
    stats = tracer.stats()
    assert (stats["buffered"], stats["pressure"], stats["lag_ms"]) == (0, 0.0, 0.0)
    assert (stats["processed"], stats["written"]) == (4, 4)

    tracer.emit(span(), [rec(4), rec(5)], durable=True)
    stats = tracer.stats()
    assert (stats["processed"], stats["written"], stats["buffered"]) == (6, 6, 0)
    for i in range(10):
        tracer.emit(span(), [rec(10 + i)])
    assert tracer.stats()["pressure"] == 1.0
    tracer.close()
    assert tracer.stats()["written"] == 16


def test_pressure_stays_within_0_and_1_under_every_policy() -> None:
    for overflow in ("block", "raise", "drop"):
        tracer = make_tracer(max_buffered=5, overflow=overflow)
        for i in range(12):
            with contextlib.suppress(TraceBackpressureError):
                tracer.emit(span(), [rec(i)])
            assert 0.0 <= tracer.stats()["pressure"] <= 1.0
        tracer.close()


def test_pressure_stays_within_0_and_1_for_a_batch_larger_than_the_buffer() -> None:
    tracer = make_tracer(max_buffered=3, overflow="block")
    tracer.emit(span(), [rec(i) for i in range(5)])
    try:
        assert tracer.stats()["pressure"] <= 1.0
    finally:
        tracer.close()


def test_runtime_trace_stats_in_both_modes() -> None:
    for tracing in ("immediate", "deferred"):
        runtime = shop_runtime(tracing=tracing, trace_buffer=100, trace_overflow="raise")
        try:
            stats = runtime.trace_stats()
            assert set(stats) == KEYS
            assert stats["mode"] == tracing
            sid = runtime.create_session("agent-1", "Shop").session_id
            rid = runtime.resolve(sid).resolution_id
            runtime.execute(sid, rid, "shop.read", {"item": "fig"})
            runtime.flush()
            stats = runtime.trace_stats()
            count = len(runtime.get_trace(sid))
            assert stats["processed"] == stats["written"] == count
            assert (stats["buffered"], stats["dropped"], stats["failing"]) == (0, 0, False)
            assert 0.0 <= stats["pressure"] <= 1.0 and stats["lag_ms"] >= 0.0
            if tracing == "deferred":
                assert (stats["capacity"], stats["overflow"]) == (100, "raise")
        finally:
            runtime.close()


def test_counters_only_grow() -> None:
    runtime = shop_runtime(tracing="deferred")
    try:
        sid = runtime.create_session("agent-1", "Shop").session_id
        before = runtime.trace_stats()
        for _ in range(3):
            runtime.resolve(sid)
            runtime.flush()
            after = runtime.trace_stats()
            assert after["processed"] > before["processed"]
            assert after["written"] > before["written"]
            before = after
    finally:
        runtime.close()
