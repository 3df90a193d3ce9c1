"""A full trace buffer (SPEC 4.5): the producer waits (``block``), refuses (``raise``, TRACE_BACKPRESSURE) or
drops and records a ``trace.gap`` (``drop``). Nothing is lost silently; durable emits are never dropped.

The tracers here run without their background thread, so the test decides when the buffer drains."""

from __future__ import annotations

import pytest

import cra
from cra.errors import TraceBackpressureError

from .helpers import assert_chain, indexes, make_tracer, rec, span

CAPACITY = 10


def gaps(events: list) -> list[dict]:
    return [e.payload for e in events if e.event_type == "trace.gap"]


def test_unknown_policy_and_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="overflow"):
        make_tracer(overflow="spill")
    with pytest.raises(ValueError, match="positive"):
        make_tracer(max_buffered=0)
    tracer = make_tracer()
    assert tracer.stats()["overflow"] == "block"  # waiting is the default
    tracer.close()
    runtime = cra.Runtime(tracing="deferred")
    try:
        assert runtime.trace_stats()["overflow"] == "block"
    finally:
        runtime.close()
    with pytest.raises(ValueError, match="overflow"):
        cra.Runtime(tracing="deferred", trace_overflow="spill")


# --- block ------------------------------------------------------------------------------------------------


def test_block_makes_room_by_committing_and_keeps_every_record_in_order() -> None:
    tracer = make_tracer(max_buffered=CAPACITY, overflow="block")
    for i in range(CAPACITY):
        tracer.emit(span(), [rec(i)])
    assert tracer.storage.read("session-a") == []  # no thread: still buffered
    assert tracer.stats()["buffered"] == CAPACITY

    for i in range(CAPACITY, 3 * CAPACITY + 5):  # every emit past capacity drains the buffer inline
        tracer.emit(span(), [rec(i)])
        assert tracer.stats()["buffered"] <= CAPACITY
    assert len(tracer.storage.read("session-a")) >= 2 * CAPACITY  # the producer committed (it was full)

    assert tracer.flush() is True
    events = tracer.storage.read("session-a")
    assert indexes(events) == list(range(3 * CAPACITY + 5))
    assert gaps(events) == []
    assert_chain(events)
    stats = tracer.stats()
    assert (stats["dropped"], stats["buffered"], stats["written"]) == (0, 0, 3 * CAPACITY + 5)
    tracer.close()


def test_block_with_several_sessions_keeps_each_chain_whole() -> None:
    tracer = make_tracer(max_buffered=CAPACITY, overflow="block")
    for i in range(40):
        tracer.emit(span(f"s{i % 3}", f"span-{i}"), [rec(i), rec(i + 1000)])
    tracer.close()
    for n in range(3):
        events = tracer.storage.read(f"s{n}")
        expected = [i for i in range(40) if i % 3 == n]
        assert indexes(events) == [x for i in expected for x in (i, i + 1000)]
        assert_chain(events)


def test_block_accepts_a_batch_larger_than_the_whole_buffer() -> None:
    tracer = make_tracer(max_buffered=3, overflow="block")
    tracer.emit(span(), [rec(0)])
    tracer.emit(span(), [rec(i) for i in range(1, 8)])  # 7 records > capacity 3
    tracer.emit(span(), [rec(8)])
    tracer.close()
    events = tracer.storage.read("session-a")
    assert indexes(events) == list(range(9))
    assert_chain(events)


# --- raise ------------------------------------------------------------------------------------------------


def test_raise_refuses_the_emit_that_does_not_fit_and_keeps_the_earlier_ones() -> None:
    tracer = make_tracer(max_buffered=CAPACITY, overflow="raise")
    for i in range(CAPACITY - 1):
        tracer.emit(span(), [rec(i)])
    with pytest.raises(TraceBackpressureError) as caught:
        tracer.emit(span("session-a", "op"), [rec(100), rec(101)])  # 9 + 2 > 10: all or nothing
    assert caught.value.code == "TRACE_BACKPRESSURE"
    assert caught.value.details == {"buffered": CAPACITY - 1, "max_buffered": CAPACITY}
    tracer.emit(span(), [rec(CAPACITY - 1)])  # one more still fits
    with pytest.raises(TraceBackpressureError):
        tracer.emit(span(), [rec(200)])
    assert tracer.stats()["buffered"] == CAPACITY

    assert tracer.flush() is True
    tracer.emit(span(), [rec(CAPACITY)])  # room again after the flush
    tracer.close()
    events = tracer.storage.read("session-a")
    assert indexes(events) == list(range(CAPACITY + 1))  # nothing of the refused emits
    assert gaps(events) == []
    assert tracer.stats()["dropped"] == 0  # refused, not dropped: the caller was told
    assert_chain(events)


def test_raise_never_refuses_a_durable_emit() -> None:
    tracer = make_tracer(max_buffered=CAPACITY, overflow="raise")
    for i in range(CAPACITY):
        tracer.emit(span(), [rec(i)])
    tracer.emit(span(), [rec(CAPACITY)], durable=True)
    events = tracer.storage.read("session-a")  # durable: stored on return, earlier records with it
    assert indexes(events) == list(range(CAPACITY + 1))
    assert_chain(events)
    tracer.close()


# --- drop -------------------------------------------------------------------------------------------------


def test_drop_counts_the_loss_and_records_a_gap_before_the_next_events() -> None:
    tracer = make_tracer(max_buffered=CAPACITY, overflow="drop")
    emitted = 0
    for i in range(CAPACITY + 7):  # 7 past capacity are dropped
        tracer.emit(span(), [rec(i)])
        emitted += 1
    stats = tracer.stats()
    assert (stats["buffered"], stats["dropped"], stats["pressure"]) == (CAPACITY, 7, 1.0)

    tracer.flush()
    for i in range(100, 103):  # the session's next events
        tracer.emit(span(), [rec(i)])
        emitted += 1
    assert tracer.flush() is True
    events = tracer.storage.read("session-a")
    assert gaps(events) == [{"lost_events": 7, "reason": "buffer_overflow"}]
    gap_at = next(n for n, e in enumerate(events) if e.event_type == "trace.gap")
    assert gap_at < next(n for n, e in enumerate(events) if e.payload.get("index") == 100)
    stored = indexes(events)
    assert stored == [*range(CAPACITY), 100, 101, 102]
    assert len(stored) + tracer.stats()["dropped"] == emitted
    assert tracer.stats()["written"] == len(stored) + 1  # the gap is an event too
    assert_chain(events)
    tracer.close()


def test_drop_places_the_gap_where_the_loss_happened() -> None:
    tracer = make_tracer(max_buffered=CAPACITY, overflow="drop")
    for i in range(CAPACITY + 5):  # 0..9 buffered, 10..14 dropped
        tracer.emit(span(), [rec(i)])
    tracer.emit(span(), [rec(100)], durable=True)  # the session's next event
    events = tracer.storage.read("session-a")
    assert [e.event_type for e in events][CAPACITY] == "trace.gap"  # after 0..9, before 100
    assert indexes(events) == [*range(CAPACITY), 100]
    tracer.close()


def test_drop_is_recorded_by_flush_even_without_later_events() -> None:
    tracer = make_tracer(max_buffered=CAPACITY, overflow="drop")
    tracer.emit(span("quiet"), [rec(0)])
    tracer.flush()
    for i in range(CAPACITY):  # another session fills the buffer
        tracer.emit(span("busy"), [rec(i)])
    tracer.emit(span("quiet", "op"), [rec(1), rec(2)])  # dropped
    assert tracer.stats()["dropped"] == 2
    tracer.flush()
    tracer.close()
    events = tracer.storage.read("quiet")
    assert gaps(events) == [{"lost_events": 2, "reason": "buffer_overflow"}]
    assert_chain(events)


def test_drop_keeps_losses_of_each_session_apart() -> None:
    tracer = make_tracer(max_buffered=4, overflow="drop")
    tracer.emit(span("a"), [rec(0), rec(1)])
    tracer.emit(span("b"), [rec(0), rec(1)])
    tracer.emit(span("a"), [rec(2)])  # dropped (a)
    tracer.emit(span("b"), [rec(2), rec(3), rec(4)])  # dropped (b)
    tracer.emit(span("b"), [rec(5)])  # dropped (b)
    assert tracer.stats()["dropped"] == 5
    tracer.flush()
    tracer.emit(span("a"), [rec(3)])
    tracer.emit(span("b"), [rec(6)])
    tracer.close()
    a, b = tracer.storage.read("a"), tracer.storage.read("b")
    assert gaps(a) == [{"lost_events": 1, "reason": "buffer_overflow"}]
    assert gaps(b) == [{"lost_events": 4, "reason": "buffer_overflow"}]
    assert indexes(a) == [0, 1, 3]
    assert indexes(b) == [0, 1, 6]
    emitted = (2 + 1 + 1) + (2 + 3 + 1 + 1)
    assert len(indexes(a)) + len(indexes(b)) + tracer.stats()["dropped"] == emitted
    assert_chain(a)
    assert_chain(b)


def test_drop_never_drops_a_durable_emit() -> None:
    tracer = make_tracer(max_buffered=CAPACITY, overflow="drop")
    for i in range(CAPACITY):
        tracer.emit(span(), [rec(i)])
    tracer.emit(span("session-a", "exec"), [rec(50), rec(51)], durable=True)  # full, yet stored
    assert indexes(tracer.storage.read("session-a")) == [*range(CAPACITY), 50, 51]
    assert tracer.stats()["dropped"] == 0
    for i in range(CAPACITY):
        tracer.emit(span(), [rec(60 + i)])
    tracer.emit(span(), [rec(99)])  # dropped: the buffer is full again
    tracer.emit(span(), [rec(70)], durable=True)
    events = tracer.storage.read("session-a")
    assert indexes(events)[-1] == 70
    assert 99 not in indexes(events)
    assert gaps(events) == [{"lost_events": 1, "reason": "buffer_overflow"}]
    assert tracer.stats()["dropped"] == 1
    assert_chain(events)
    tracer.close()
