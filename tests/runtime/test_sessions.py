"""Sessions (SPEC 2) and the shape of their trace (SPEC 4.1)."""

from __future__ import annotations

import re
import uuid

import pytest

import cra
from cra.errors import ForbiddenError, SessionEndedError, SessionNotFoundError, UnknownAtlasError

from .helpers import ZERO_HASH, event_types, simple_manifest, snapshot

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


@pytest.fixture
def shop(rt: cra.Runtime) -> cra.Runtime:
    rt.load_atlas(simple_manifest("shop.read", "shop.write"))
    rt.load_atlas(simple_manifest("crm.read", atlas_id="org.example.crm"))
    return rt


def test_session_ids_are_uuid7_by_default() -> None:
    runtime = cra.Runtime(clock=cra.ManualClock("2025-01-01T00:00:00Z"))
    first = runtime.create_session("agent-1", "goal")
    second = runtime.create_session("agent-1", "goal")
    for session in (first, second):
        assert uuid.UUID(session.session_id).version == 7
        assert uuid.UUID(session.trace_id).version == 7
    assert first.session_id != second.session_id


def test_create_session_returns_an_active_snapshot(shop: cra.Runtime) -> None:
    session = shop.create_session("agent-1", "Answer ticket T-1", metadata={"ticket": "T-1"})
    assert session.active and session.status == "active"
    assert (session.agent_id, session.goal) == ("agent-1", "Answer ticket T-1")
    assert session.metadata == {"ticket": "T-1"}
    assert session.created_at == "2025-01-01T00:00:00.000000Z"
    assert session.ended_at is None and session.end_reason is None
    assert shop.get_session(session.session_id) == session


def test_session_without_atlas_ids_sees_every_loaded_atlas(shop: cra.Runtime) -> None:
    session = shop.create_session("agent-1", "goal")
    assert session.atlas_ids == ["org.example.shop", "org.example.crm"]
    assert shop.resolve(session.session_id).allowed_ids == ["shop.read", "shop.write", "crm.read"]


def test_session_with_atlas_ids_sees_exactly_those(shop: cra.Runtime) -> None:
    session = shop.create_session("agent-1", "goal", atlas_ids=["org.example.crm"])
    assert session.atlas_ids == ["org.example.crm"]
    assert shop.resolve(session.session_id).allowed_ids == ["crm.read"]


def test_session_with_an_unknown_atlas_is_refused_and_nothing_changes(shop: cra.Runtime) -> None:
    before = snapshot(shop)
    with pytest.raises(UnknownAtlasError) as info:
        shop.create_session("agent-1", "goal", atlas_ids=["org.example.crm", "org.example.ghost"])
    assert info.value.code == "UNKNOWN_ATLAS"
    assert snapshot(shop) == before


def test_first_event_is_session_started_at_the_genesis_of_the_chain(shop: cra.Runtime) -> None:
    session = shop.create_session("agent-1", "goal")
    (event,) = shop.get_trace(session.session_id)
    assert event.event_type == "session.started"
    assert (event.sequence, event.previous_event_hash, event.parent_span_id) == (0, ZERO_HASH, None)
    assert event.payload["agent_id"] == "agent-1" and event.payload["goal"] == "goal"
    assert event.trace_id == session.trace_id and event.session_id == session.session_id
    assert event.trace_version == "1.0"


def test_every_operation_opens_a_span_under_the_root_span(shop: cra.Runtime) -> None:
    session = shop.create_session("agent-1", "goal")
    sid = session.session_id
    resolution = shop.resolve(sid)
    shop.execute(sid, resolution.resolution_id, "shop.read")
    shop.resolve(sid)
    shop.end_session(sid)
    events = shop.get_trace(sid)
    root = events[0].span_id
    assert all(e.parent_span_id == root for e in events[1:])
    assert {e.trace_id for e in events} == {session.trace_id}
    spans = [e.span_id for e in events[1:]]
    assert len(set(spans)) == 4  # resolve, execute, resolve, end
    assert root not in spans
    assert all(TIMESTAMP.match(e.timestamp) for e in events)
    assert len({e.event_id for e in events}) == len(events)


def test_end_session_records_session_ended_with_reason_and_duration(
    shop: cra.Runtime, clock: cra.ManualClock
) -> None:
    session = shop.create_session("agent-1", "goal")
    clock.advance(2.5)
    ended = shop.end_session(session.session_id, reason="user_cancelled")
    assert (ended.status, ended.end_reason) == ("ended", "user_cancelled")
    assert ended.ended_at == "2025-01-01T00:00:02.500000Z"
    last = shop.get_trace(session.session_id)[-1]
    assert last.event_type == "session.ended"
    assert dict(last.payload) == {"reason": "user_cancelled", "duration_ms": 2500}
    assert shop.verify(session.session_id).valid


def test_end_session_reason_defaults_to_completed(shop: cra.Runtime) -> None:
    session = shop.create_session("agent-1", "goal")
    assert shop.end_session(session.session_id).end_reason == "completed"


def test_ended_session_refuses_every_operation(shop: cra.Runtime) -> None:
    session = shop.create_session("agent-1", "goal")
    resolution = shop.resolve(session.session_id)
    shop.end_session(session.session_id)
    before = snapshot(shop)
    with pytest.raises(SessionEndedError):
        shop.resolve(session.session_id)
    with pytest.raises(SessionEndedError):
        shop.execute(session.session_id, resolution.resolution_id, "shop.read")
    with pytest.raises(SessionEndedError) as info:
        shop.end_session(session.session_id)
    assert info.value.code == "SESSION_ENDED"
    assert snapshot(shop) == before
    assert shop.get_session(session.session_id).status == "ended"
    assert shop.verify(session.session_id).valid


def test_unknown_session_is_not_found_everywhere(shop: cra.Runtime) -> None:
    ghost = "00000000-0000-7000-8000-0000000fffff"
    before = snapshot(shop)
    for call in (
        lambda: shop.get_session(ghost),
        lambda: shop.resolve(ghost),
        lambda: shop.execute(ghost, ghost, "shop.read"),
        lambda: shop.end_session(ghost),
        lambda: shop.get_trace(ghost),
        lambda: shop.verify(ghost),
    ):
        with pytest.raises(SessionNotFoundError) as info:
            call()
        assert info.value.code == "SESSION_NOT_FOUND"
    assert snapshot(shop) == before


def test_another_agent_cannot_read_or_use_a_session(shop: cra.Runtime) -> None:
    session = shop.create_session("agent-1", "goal")
    before = snapshot(shop)
    with pytest.raises(ForbiddenError):
        shop.get_session(session.session_id, agent_id="agent-2")
    with pytest.raises(ForbiddenError):
        shop.resolve(session.session_id, agent_id="agent-2")
    with pytest.raises(ForbiddenError):
        shop.get_trace(session.session_id, agent_id="agent-2")
    with pytest.raises(ForbiddenError):
        shop.end_session(session.session_id, agent_id="agent-2")
    assert snapshot(shop) == before


def test_sessions_can_be_listed_by_status_and_agent(shop: cra.Runtime) -> None:
    a = shop.create_session("agent-1", "goal")
    b = shop.create_session("agent-2", "goal")
    shop.end_session(a.session_id)
    assert [s.session_id for s in shop.sessions()] == [a.session_id, b.session_id]
    assert [s.session_id for s in shop.sessions("active")] == [b.session_id]
    assert [s.session_id for s in shop.sessions("ended")] == [a.session_id]
    assert [s.session_id for s in shop.sessions(agent_id="agent-1")] == [a.session_id]
    stats = shop.stats()
    assert (stats["sessions"], stats["active_sessions"]) == (2, 1)


def test_session_metadata_is_a_copy(shop: cra.Runtime) -> None:
    metadata = {"ticket": "T-1"}
    session = shop.create_session("agent-1", "goal", metadata=metadata)
    metadata["ticket"] = "T-2"
    session.metadata["ticket"] = "T-3"
    assert shop.get_session(session.session_id).metadata == {"ticket": "T-1"}


def test_closed_runtime_refuses_new_work(shop: cra.Runtime) -> None:
    session = shop.create_session("agent-1", "goal")
    shop.close()
    shop.close()  # idempotent
    with pytest.raises(cra.UnavailableError) as info:
        shop.resolve(session.session_id)
    assert info.value.code == "RUNTIME_CLOSED"
    with pytest.raises(cra.UnavailableError):
        shop.create_session("agent-1", "goal")


def test_trace_events_of_a_session_are_in_sequence_order_and_filterable(shop: cra.Runtime) -> None:
    session = shop.create_session("agent-1", "goal")
    shop.resolve(session.session_id)
    events = shop.get_trace(session.session_id)
    assert [e.sequence for e in events] == list(range(len(events)))
    assert event_types(shop, session.session_id)[:2] == ["session.started", "carp.request.received"]
    assert [e.sequence for e in shop.get_trace(session.session_id, since_sequence=2)] == list(
        range(3, len(events))
    )
    assert len(shop.get_trace(session.session_id, event_type="policy.evaluated")) == 3
    assert len(shop.get_trace(session.session_id, limit=2)) == 2


def test_execution_in_flight_when_the_session_ends_still_records_its_outcome(shop: cra.Runtime) -> None:
    session = shop.create_session("agent-1", "goal")
    resolution = shop.resolve(session.session_id)
    shop.register("shop.read", lambda params: shop.end_session(session.session_id).status)
    response = shop.execute(session.session_id, resolution.resolution_id, "shop.read")
    assert (response.status, response.result) == ("success", "ended")
    types = event_types(shop, session.session_id)
    assert "session.ended" in types and "action.executed" in types  # nothing that happened is lost
    assert shop.verify(session.session_id).valid
