"""Reporting the outcome of an ``authorized`` execution with ``complete`` (SPEC 3.3, 4.2)."""

from __future__ import annotations

from typing import Any

import pytest

import cra
from cra.errors import (
    CompletionTimeoutError,
    ExecutionAlreadyCompletedError,
    ExecutionNotFoundError,
    InvalidRequestError,
)

from .helpers import event_types, payloads, simple_manifest, snapshot


@pytest.fixture
def setup(rt: cra.Runtime) -> tuple[cra.Runtime, str, cra.ExecuteResponse]:
    rt.load_atlas(simple_manifest("ops.restart"))
    session = rt.create_session("agent-1", "Restart the service")
    resolution = rt.resolve(session.session_id)
    authorized = rt.execute(session.session_id, resolution.resolution_id, "ops.restart", {"host": "a"})
    assert authorized.status == "authorized"
    return rt, session.session_id, authorized


def test_success_records_action_executed(setup: Any, clock: cra.ManualClock) -> None:
    rt, sid, authorized = setup
    clock.advance(1.5)
    done = rt.complete(authorized.execution_id, result={"restarted": True})
    assert (done.status, done.result, done.error, done.duration_ms) == (
        "success",
        {"restarted": True},
        None,
        1500,
    )
    assert done.execution_id == authorized.execution_id
    assert event_types(rt, sid)[-3:] == ["action.requested", "action.approved", "action.executed"]
    executed = rt.get_trace(sid)[-1]
    assert dict(executed.payload) == {
        "action_id": "ops.restart",
        "execution_id": authorized.execution_id,
        "duration_ms": 1500,
    }
    assert executed.span_id == rt.get_trace(sid)[-2].span_id  # the outcome joins the execute span
    assert rt.stats()["pending_completions"] == 0


def test_complete_with_no_result_is_a_success(setup: Any) -> None:
    rt, _, authorized = setup
    assert rt.complete(authorized.execution_id).status == "success"


def test_error_message_records_action_failed(setup: Any) -> None:
    rt, sid, authorized = setup
    done = rt.complete(authorized.execution_id, error="host unreachable")
    assert done.status == "error"
    assert done.error == {"code": "EXECUTION_FAILED", "message": "host unreachable"}
    assert payloads(rt, sid, "action.failed") == [
        {"action_id": "ops.restart", "error_code": "EXECUTION_FAILED", "error_message": "host unreachable"}
    ]


def test_error_object_records_its_code(setup: Any) -> None:
    rt, sid, authorized = setup
    done = rt.complete(authorized.execution_id, error={"code": "HOST_DOWN", "message": "down"})
    assert done.error_code == "HOST_DOWN"
    assert payloads(rt, sid, "action.failed")[-1] == {
        "action_id": "ops.restart",
        "error_code": "HOST_DOWN",
        "error_message": "down",
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"error": {"code": "lower_case", "message": "x"}},
        {"error": {"code": 5, "message": "x"}},
        {"error": 42},
        {"result": {"ok": True}, "error": "both"},
        {"result": float("nan")},
        {"result": {"s": {1, 2}}},
    ],
    ids=["lower-code", "int-code", "int-error", "both", "nan-result", "set-result"],
)
def test_malformed_outcome_is_refused_and_leaves_the_execution_pending(
    setup: Any, kwargs: dict[str, Any]
) -> None:
    rt, _, authorized = setup
    before = snapshot(rt)
    with pytest.raises(InvalidRequestError):
        rt.complete(authorized.execution_id, **kwargs)
    assert snapshot(rt) == before
    assert rt.complete(authorized.execution_id, result="fine").status == "success"


def test_unknown_execution_is_not_found(setup: Any) -> None:
    rt, _, _ = setup
    before = snapshot(rt)
    with pytest.raises(ExecutionNotFoundError) as info:
        rt.complete("00000000-0000-7000-8000-00000000beef", result=1)
    assert info.value.code == "EXECUTION_NOT_FOUND"
    assert snapshot(rt) == before


def test_completing_twice_is_a_conflict(setup: Any) -> None:
    rt, _, authorized = setup
    rt.complete(authorized.execution_id, result=1)
    before = snapshot(rt)
    for kwargs in ({"result": 1}, {"error": "late"}):
        with pytest.raises(ExecutionAlreadyCompletedError) as info:
            rt.complete(authorized.execution_id, **kwargs)
        assert info.value.code == "EXECUTION_ALREADY_COMPLETED"
    assert snapshot(rt) == before


def test_execution_that_ran_a_handler_cannot_be_completed(rt: cra.Runtime) -> None:
    rt.load_atlas(simple_manifest("ops.ping"))
    rt.register("ops.ping", lambda p: "pong")
    session = rt.create_session("agent-1", "goal")
    resolution = rt.resolve(session.session_id)
    done = rt.execute(session.session_id, resolution.resolution_id, "ops.ping")
    with pytest.raises(ExecutionAlreadyCompletedError):
        rt.complete(done.execution_id, result="again")


def test_completing_after_the_resolution_expired_records_a_timeout(
    setup: Any, clock: cra.ManualClock
) -> None:
    rt, sid, authorized = setup
    clock.advance(3600)
    with pytest.raises(CompletionTimeoutError) as info:
        rt.complete(authorized.execution_id, result={"restarted": True})
    assert (info.value.code, info.value.http_status) == ("COMPLETION_TIMEOUT", 408)
    assert event_types(rt, sid)[-1] == "action.failed"
    failed = payloads(rt, sid, "action.failed")[-1]
    assert (failed["action_id"], failed["error_code"]) == ("ops.restart", "COMPLETION_TIMEOUT")
    assert rt.stats()["pending_completions"] == 0
    with pytest.raises(ExecutionAlreadyCompletedError):
        rt.complete(authorized.execution_id, result=1)
    assert rt.verify(sid).valid


def test_another_agent_cannot_complete_an_execution(setup: Any) -> None:
    rt, _, authorized = setup
    before = snapshot(rt)
    with pytest.raises(cra.AuthError):
        rt.complete(authorized.execution_id, result=1, agent_id="agent-2")
    assert snapshot(rt) == before


def test_end_session_fails_pending_completions_before_ending(setup: Any) -> None:
    rt, sid, authorized = setup
    resolution_id = authorized.resolution_id
    second = rt.execute(sid, resolution_id, "ops.restart", {"host": "b"})
    rt.end_session(sid, reason="completed")
    events = rt.get_trace(sid)
    assert [e.event_type for e in events[-3:]] == ["action.failed", "action.failed", "session.ended"]
    failed = [dict(e.payload) for e in events[-3:-1]]
    assert all(
        p
        == {
            "action_id": "ops.restart",
            "error_code": "SESSION_ENDED",
            "error_message": p["error_message"],
        }
        for p in failed
    )
    assert {events[-3].span_id, events[-2].span_id} == {
        e.span_id for e in events if e.event_type == "action.approved"
    }
    assert rt.stats()["pending_completions"] == 0
    for execution_id in (authorized.execution_id, second.execution_id):
        with pytest.raises(ExecutionAlreadyCompletedError):
            rt.complete(execution_id, result=1)
    assert rt.verify(sid).valid
