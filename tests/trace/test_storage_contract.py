"""The storage contract (SPEC 4.4, storage/base.py) that MemoryStorage and JsonlStorage both keep."""

from __future__ import annotations

from pathlib import Path

import pytest
from trace_helpers import build_chain, run_notes_session

from cra import TraceStorage, verify_chain
from cra.trace.event import TraceEvent
from cra.trace.storage import ChainConflictError, JsonlStorage, MemoryStorage
from cra.trace.tracer import Record, Span, chain_records


@pytest.fixture(params=["memory", "jsonl"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> TraceStorage:
    if request.param == "memory":
        return MemoryStorage()
    return JsonlStorage(f"jsonl://{tmp_path / 'traces'}?fsync=0")


def typed_chain(session_id: str = "session-a") -> list[TraceEvent]:
    """Six events of three types, to exercise the filters."""
    types = ["session.started", "policy.evaluated", "action.requested", "policy.evaluated", "x.y", "x.y"]
    span = Span(session_id, "trace", "span", None)
    ids = iter(f"event-{i}" for i in range(100))
    events: list[TraceEvent] = []
    head = None
    for i, event_type in enumerate(types):
        [event] = chain_records(
            span, [Record(event_type, {"i": i})], head, "2025-01-01T00:00:00.000000Z", ids.__next__
        )
        events.append(event)
        head = (event.sequence, event.event_hash)
    return events


def lines(events: list[TraceEvent]) -> list[bytes]:
    return [event.to_json() for event in events]


# --- append and read --------------------------------------------------------------------------------------


def test_storage_satisfies_the_trace_storage_protocol(storage: TraceStorage) -> None:
    assert isinstance(storage, TraceStorage)
    assert isinstance(storage.url, str)


def test_unknown_session_reads_empty_and_has_no_head(storage: TraceStorage) -> None:
    assert storage.read("nobody") == []
    assert storage.head("nobody") is None
    assert storage.sessions() == []


def test_append_then_read_is_byte_identical(storage: TraceStorage) -> None:
    events = build_chain(5, payloads=[{"f": 1e-05, "s": "é😀\u2028\x01", "i": i} for i in range(5)])
    storage.append(events)
    stored = storage.read("session-a")
    assert lines(stored) == lines(events)
    assert stored == events
    assert verify_chain(stored).valid


def test_appends_in_several_batches_read_back_in_order(storage: TraceStorage) -> None:
    events = build_chain(7)
    storage.append(events[:1])
    storage.append(events[1:4])
    storage.append(events[4:])
    assert lines(storage.read("session-a")) == lines(events)


def test_empty_append_is_a_no_op(storage: TraceStorage) -> None:
    storage.append([])
    assert storage.sessions() == []


def test_real_runtime_trace_is_stored_byte_identical(storage: TraceStorage) -> None:
    runtime, session_id = run_notes_session(storage)
    stored = storage.read(session_id)
    assert lines(stored) == lines(runtime.get_trace(session_id))
    assert verify_chain(stored).valid
    assert storage.head(session_id) == (stored[-1].sequence, stored[-1].event_hash)


def test_head_is_the_last_sequence_and_hash(storage: TraceStorage) -> None:
    events = build_chain(3)
    storage.append(events[:2])
    assert storage.head("session-a") == (1, events[1].event_hash)
    storage.append(events[2:])
    assert storage.head("session-a") == (2, events[2].event_hash)


# --- filters ------------------------------------------------------------------------------------------


def test_read_since_sequence_returns_later_events_only(storage: TraceStorage) -> None:
    events = typed_chain()
    storage.append(events)
    assert [e.sequence for e in storage.read("session-a", since_sequence=2)] == [3, 4, 5]
    assert [e.sequence for e in storage.read("session-a", since_sequence=-1)] == [0, 1, 2, 3, 4, 5]
    assert storage.read("session-a", since_sequence=5) == []
    assert storage.read("session-a", since_sequence=100) == []


def test_read_limit_returns_the_first_events(storage: TraceStorage) -> None:
    storage.append(typed_chain())
    assert [e.sequence for e in storage.read("session-a", limit=2)] == [0, 1]
    assert storage.read("session-a", limit=0) == []
    assert len(storage.read("session-a", limit=100)) == 6


def test_read_event_type_filters_by_type(storage: TraceStorage) -> None:
    storage.append(typed_chain())
    assert [e.sequence for e in storage.read("session-a", event_type="policy.evaluated")] == [1, 3]
    assert storage.read("session-a", event_type="no.such.type") == []


def test_read_filters_combine(storage: TraceStorage) -> None:
    storage.append(typed_chain())
    got = storage.read("session-a", since_sequence=1, event_type="x.y", limit=1)
    assert [e.sequence for e in got] == [4]
    got = storage.read("session-a", since_sequence=1, event_type="policy.evaluated", limit=5)
    assert [e.sequence for e in got] == [3]


def test_filtered_reads_are_still_byte_identical(storage: TraceStorage) -> None:
    events = typed_chain()
    storage.append(events)
    assert lines(storage.read("session-a", event_type="x.y")) == lines(events[4:])


# --- sessions and deletion ------------------------------------------------------------------------------


def test_several_sessions_in_one_batch_are_stored_apart(storage: TraceStorage) -> None:
    a = build_chain(3, session_id="session-a")
    b = build_chain(2, session_id="session-b")
    storage.append([a[0], b[0], a[1], b[1], a[2]])
    assert lines(storage.read("session-a")) == lines(a)
    assert lines(storage.read("session-b")) == lines(b)
    assert sorted(storage.sessions()) == ["session-a", "session-b"]
    assert storage.head("session-b") == (1, b[1].event_hash)


def test_delete_session_removes_the_whole_session(storage: TraceStorage) -> None:
    storage.append(build_chain(3, session_id="session-a"))
    storage.append(build_chain(2, session_id="session-b"))
    assert storage.delete_session("session-a") is True
    assert storage.read("session-a") == []
    assert storage.head("session-a") is None
    assert storage.sessions() == ["session-b"]
    assert len(storage.read("session-b")) == 2
    assert storage.delete_session("session-a") is False
    assert storage.delete_session("never-existed") is False


def test_deleted_session_can_start_a_new_chain_at_zero(storage: TraceStorage) -> None:
    storage.append(build_chain(3))
    storage.delete_session("session-a")
    fresh = build_chain(2, payloads=[{"new": 0}, {"new": 1}])
    storage.append(fresh)
    assert lines(storage.read("session-a")) == lines(fresh)


def test_close_is_idempotent(storage: TraceStorage) -> None:
    storage.close()
    storage.close()


# --- linear chains and batch atomicity -------------------------------------------------------------------


def test_first_append_not_starting_at_zero_conflicts_and_writes_nothing(storage: TraceStorage) -> None:
    events = build_chain(3)
    with pytest.raises(ChainConflictError):
        storage.append(events[1:])
    assert storage.read("session-a") == []
    assert storage.head("session-a") is None


def test_reappending_stored_sequences_conflicts_and_changes_nothing(storage: TraceStorage) -> None:
    events = build_chain(3)
    storage.append(events)
    with pytest.raises(ChainConflictError):
        storage.append(events[2:])
    with pytest.raises(ChainConflictError):
        storage.append(events)
    assert lines(storage.read("session-a")) == lines(events)
    assert storage.head("session-a") == (2, events[2].event_hash)


def test_a_gap_inside_a_batch_conflicts_and_writes_none_of_the_batch(storage: TraceStorage) -> None:
    events = build_chain(5)
    storage.append(events[:1])
    with pytest.raises(ChainConflictError):
        storage.append([events[1], events[2], events[4]])
    assert lines(storage.read("session-a")) == lines(events[:1])
    storage.append(events[1:])  # the right continuation still goes in
    assert lines(storage.read("session-a")) == lines(events)


def test_out_of_order_batch_conflicts_and_writes_nothing(storage: TraceStorage) -> None:
    events = build_chain(2)
    with pytest.raises(ChainConflictError):
        storage.append([events[1], events[0]])
    assert storage.read("session-a") == []


def test_conflict_in_one_session_writes_nothing_for_the_other_sessions(storage: TraceStorage) -> None:
    a = build_chain(2, session_id="session-a")
    b = build_chain(3, session_id="session-b")
    with pytest.raises(ChainConflictError):
        storage.append([a[0], a[1], b[0], b[2]])
    assert storage.read("session-a") == []
    assert storage.read("session-b") == []
    assert storage.sessions() == []
    assert storage.head("session-a") is None


def test_conflict_message_names_expected_and_got(storage: TraceStorage) -> None:
    events = build_chain(3)
    storage.append(events[:1])
    with pytest.raises(ChainConflictError, match=r"expected sequence 1, got 2"):
        storage.append(events[2:])
