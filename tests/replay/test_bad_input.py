"""Replay and reconstruction refuse what they cannot stand behind, with a CRA error that says why."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import cra
from cra.replay import reconstruct_state, replay, replay_session

from .conftest import edited, manifest, rechained


@pytest.fixture
def events(runtime: cra.Runtime) -> list[cra.TraceEvent]:
    sid = runtime.create_session("desk-bot", "Help").session_id
    rid = runtime.resolve(sid).resolution_id
    runtime.execute(sid, rid, "ticket.read", {})
    return runtime.get_trace(sid)


@pytest.fixture
def original(runtime: cra.Runtime) -> cra.Atlas:
    return runtime.get_atlas("org.example.desk")


def _tampered(events: list[cra.TraceEvent], index: int, payload: dict[str, Any]) -> list[cra.TraceEvent]:
    """The events with one payload replaced, the event's own fields (hashes included) left as they were."""
    raw = events[index].to_dict()
    raw["payload"] = payload
    return [*events[:index], cra.TraceEvent.from_dict(raw), *events[index + 1 :]]


Refusal = Callable[[list[Any]], object]
REFUSALS: list[tuple[str, Refusal]] = [
    ("replay", lambda evs: replay(evs, edited(lambda m: None))),
    ("reconstruct_state", reconstruct_state),
]


@pytest.mark.parametrize(("name", "call"), REFUSALS, ids=[n for n, _ in REFUSALS])
def test_an_empty_trace_is_refused(name: str, call: Refusal) -> None:
    with pytest.raises(cra.ValidationError) as raised:
        call([])
    assert raised.value.code == "INVALID_REQUEST"
    assert "empty" in raised.value.message


@pytest.mark.parametrize(("name", "call"), REFUSALS, ids=[n for n, _ in REFUSALS])
def test_a_tampered_verdict_is_refused(name: str, call: Refusal, events: list[cra.TraceEvent]) -> None:
    index = next(i for i, e in enumerate(events) if e.event_type == "policy.evaluated")
    forged = _tampered(events, index, {**events[index].payload, "result": "deny"})
    with pytest.raises(cra.ValidationError) as raised:
        call(forged)
    assert raised.value.code == "INVALID_REQUEST"
    assert raised.value.details is not None
    assert raised.value.details["verification"]["error"] == "hash_mismatch"
    assert raised.value.details["verification"]["sequence"] == events[index].sequence


@pytest.mark.parametrize(("name", "call"), REFUSALS, ids=[n for n, _ in REFUSALS])
def test_a_removed_event_is_refused(name: str, call: Refusal, events: list[cra.TraceEvent]) -> None:
    with pytest.raises(cra.ValidationError, match="does not verify"):
        call([*events[:3], *events[4:]])


@pytest.mark.parametrize(("name", "call"), REFUSALS, ids=[n for n, _ in REFUSALS])
def test_a_trace_without_its_start_is_refused(name: str, call: Refusal, events: list[cra.TraceEvent]) -> None:
    with pytest.raises(cra.ValidationError, match="invalid_genesis"):
        call(events[1:])


def test_events_of_two_sessions_are_refused(runtime: cra.Runtime, events: list[cra.TraceEvent]) -> None:
    other = runtime.create_session("desk-bot", "Other").session_id
    with pytest.raises(cra.ValidationError, match="2 sessions") as raised:
        replay([*events, *runtime.get_trace(other)], runtime.get_atlas("org.example.desk"))
    assert raised.value.code == "INVALID_REQUEST"


def test_dicts_instead_of_events_are_refused(events: list[cra.TraceEvent], original: cra.Atlas) -> None:
    with pytest.raises(cra.ValidationError, match="TraceEvent"):
        replay([e.to_dict() for e in events], original)  # type: ignore[misc]


def test_an_atlas_of_another_id_is_refused(events: list[cra.TraceEvent]) -> None:
    stranger = cra.load_atlas(manifest(atlas_id="org.example.other"))
    with pytest.raises(cra.ValidationError) as raised:
        replay(events, stranger)
    assert raised.value.code == "UNKNOWN_ATLAS"
    assert raised.value.details == {
        "atlas_id": "org.example.other",
        "session_atlas_ids": ["org.example.desk"],
    }


def test_a_missing_original_atlas_is_refused(events: list[cra.TraceEvent]) -> None:
    for given in ([], [cra.load_atlas(manifest(atlas_id="org.example.other"))]):
        with pytest.raises(cra.NotFoundError) as raised:
            replay(events, atlases=given)
        assert raised.value.code == "ATLAS_NOT_FOUND"
        assert raised.value.details is not None
        assert raised.value.details["digest"] == events[0].payload["atlases"][0]["digest"]


def test_two_candidate_versions_and_neither_the_original_are_refused(events: list[cra.TraceEvent]) -> None:
    def deny_tickets(m: dict[str, Any]) -> None:
        m["policies"][0]["type"] = "deny"

    first, second = edited(lambda m: None, version="1.1.0"), edited(deny_tickets, version="1.2.0")
    with pytest.raises(cra.ValidationError, match="several versions"):
        replay(events, atlases=[first, second])
    # Naming the one to replay against settles it.
    assert replay(events, second, atlases=[first]).changed > 0


def test_a_trace_that_does_not_record_its_atlases_is_refused(events: list[cra.TraceEvent]) -> None:
    started = events[0].to_dict()
    del started["payload"]["atlases"]
    # Re-chained, so only the missing digests are wrong (a foreign implementation's trace, say).
    chained = rechained([cra.TraceEvent.from_dict(started), *events[1:]])
    assert cra.verify_chain(chained).valid
    with pytest.raises(cra.ValidationError, match="Atlas digests"):
        replay(chained, atlases=[])


def test_replay_session_of_an_unknown_session(runtime: cra.Runtime) -> None:
    with pytest.raises(cra.NotFoundError) as raised:
        replay_session(runtime, "no-such-session")
    assert raised.value.code == "SESSION_NOT_FOUND"


def test_replay_session_of_another_agent(runtime: cra.Runtime, events: list[cra.TraceEvent]) -> None:
    with pytest.raises(cra.AuthError) as raised:
        replay_session(runtime, events[0].session_id, agent_id="someone-else")
    assert raised.value.code == "FORBIDDEN"
