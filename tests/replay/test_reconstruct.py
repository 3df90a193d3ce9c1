"""State reconstruction (SPEC 4.6): what the trace alone rebuilds matches what the live runtime holds."""

from __future__ import annotations

from typing import Any

import pytest

import cra
from cra.replay import reconstruct_state

from .conftest import MANIFEST, manifest

POLICIES: list[dict[str, Any]] = [
    *MANIFEST["policies"],
    {"policy_id": "approve-replies", "type": "require_approval", "actions": ["ticket.reply"]},
    {
        "policy_id": "read-limit",
        "type": "rate_limit",
        "actions": ["ticket.read"],
        "parameters": {"max_calls": 3, "window_seconds": 60},
    },
    {
        "policy_id": "refund-budget",
        "type": "budget",
        "actions": ["refund.*"],
        "parameters": {"max_cost": 100, "costs": {"refund.*": 30}, "scope": "agent"},
    },
]


def _live(runtime: cra.Runtime, clock: cra.ManualClock) -> dict[str, Any]:
    """Drive a session through every kind of state, keeping what the live runtime answered."""
    atlas = runtime.load_atlas(manifest(version="2.0.0", policies=POLICIES))
    sid = runtime.create_session("desk-bot", "Help the customer").session_id
    r1 = runtime.resolve(sid)
    responses = [
        runtime.execute(sid, r1.resolution_id, "ticket.read", {}),
        runtime.execute(sid, r1.resolution_id, "ticket.read", {"ticket_id": "T-1"}),
    ]
    clock.advance(5)
    pending = runtime.execute(sid, r1.resolution_id, "ticket.reply", {})
    responses.append(pending)
    assert pending.approval_id is not None
    runtime.approve(pending.approval_id, "lead", "fine")
    responses.append(runtime.execute(sid, r1.resolution_id, "ticket.reply", {}))
    responses.append(runtime.execute(sid, r1.resolution_id, "customer.delete", {}))
    refund = runtime.execute(sid, r1.resolution_id, "refund.issue", {}, idempotency_key="refund-1")
    responses.append(refund)
    clock.advance(1)
    r2 = runtime.resolve(sid, risk_tier="medium")
    later = runtime.execute(sid, r2.resolution_id, "refund.issue", {})
    responses.append(later)
    completed = runtime.complete(refund.execution_id, error={"code": "BANK_DOWN", "message": "try later"})
    responses.append(runtime.execute(sid, r2.resolution_id, "ticket.read", {}))
    responses.append(runtime.execute(sid, r2.resolution_id, "ticket.read", {}))  # the fourth: rate limited
    return {
        "atlas": atlas,
        "session_id": sid,
        "resolutions": [r1, r2],
        "responses": responses,
        "completed": {refund.execution_id: completed},
    }


def test_reconstructed_state_matches_the_live_runtime(runtime: cra.Runtime, clock: cra.ManualClock) -> None:
    live = _live(runtime, clock)
    sid = live["session_id"]
    state = reconstruct_state(runtime.get_trace(sid), atlases=[live["atlas"]])
    session = runtime.get_session(sid)
    assert (state.session_id, state.agent_id, state.goal, state.status) == (
        session.session_id,
        session.agent_id,
        session.goal,
        session.status,
    )
    assert state.created_at == session.created_at
    assert [dict(a) for a in state.atlases] == session.atlases

    assert [
        (
            r.resolution_id,
            r.request_id,
            r.decision,
            list(r.allowed),
            list(r.denied),
            r.approval_id,
            r.expires_at,
        )
        for r in state.resolutions
    ] == [
        (
            r.resolution_id,
            r.request_id,
            r.decision_type,
            r.allowed_ids,
            r.denied_ids,
            r.approval_id,
            r.expires_at,
        )
        for r in live["resolutions"]
    ]
    assert [list(r.requires_confirmation) for r in state.resolutions] == [
        [a.action_id for a in r.allowed_actions if a.requires_confirmation] for r in live["resolutions"]
    ]

    def live_status(response: cra.ExecuteResponse) -> tuple[str, str | None]:
        final = live["completed"].get(response.execution_id, response)
        return final.status, final.error_code

    assert [
        (e.execution_id, e.resolution_id, e.action_id, e.status, e.error_code) for e in state.executions
    ] == [(r.execution_id, r.resolution_id, r.action_id, *live_status(r)) for r in live["responses"]]
    assert [e.decision for e in state.executions] == [
        "success",
        "success",
        "pending_approval",
        "success",
        "denied:ACTION_NOT_ALLOWED",
        "authorized",
        "authorized",
        "success",
        "denied:RATE_LIMITED",
    ]
    assert state.executions[5].idempotency_key == "refund-1"
    assert [e.execution_id for e in state.pending] == [live["responses"][6].execution_id]
    assert len(state.pending) == runtime.stats()["pending_completions"]

    assert [
        (a.approval_id, a.resolution_id, list(a.action_ids), a.status, a.approver, a.expires_at)
        for a in state.approvals
    ] == [
        (a.approval_id, a.resolution_id, a.action_ids, a.status, a.approver, a.expires_at)
        for a in runtime.approvals(sid, status=None)
    ]
    assert [list(a.used) for a in state.approvals] == [["ticket.reply"], []]  # r1 ran on it; r2 did not

    # Limiter windows, key by key and entry by entry, as the live limiter holds them.
    assert state.limits is not None
    assert {limit.key: list(limit.entries) for limit in state.limits} == runtime.limiter.snapshot()
    by_policy = {limit.policy_id: limit for limit in state.limits}
    assert (by_policy["read-limit"].count, by_policy["read-limit"].total) == (3, 3.0)
    assert (by_policy["refund-budget"].count, by_policy["refund-budget"].total) == (2, 60.0)
    assert by_policy["refund-budget"].key.endswith("|a:desk-bot")


def test_an_ended_session_and_its_reason(runtime: cra.Runtime, clock: cra.ManualClock) -> None:
    live = _live(runtime, clock)
    sid = live["session_id"]
    clock.advance(2)
    ended = runtime.end_session(sid, reason="handed_over")
    state = reconstruct_state(runtime.get_trace(sid))
    assert (state.status, state.end_reason, state.ended_at) == ("ended", "handed_over", ended.ended_at)
    # The execution still awaiting its outcome was failed by the end (SESSION_ENDED): nothing is pending.
    assert state.pending == ()
    assert state.executions[6].status == "error"
    assert state.executions[6].error_code == "SESSION_ENDED"
    assert state.limits is None  # no Atlases given: the windows an execution filled are not known


def test_to_dict_is_json(runtime: cra.Runtime, clock: cra.ManualClock) -> None:
    live = _live(runtime, clock)
    state = reconstruct_state(runtime.get_trace(live["session_id"]), atlases=[live["atlas"]])
    body = state.to_dict()
    assert body["event_count"] == len(runtime.get_trace(live["session_id"]))
    assert body["executions"][0] == {
        "execution_id": live["responses"][0].execution_id,
        "resolution_id": live["resolutions"][0].resolution_id,
        "action_id": "ticket.read",
        "decision": "success",
        "status": "success",
        "error_code": None,
        "idempotency_key": None,
    }
    budget = next(limit for limit in body["limits"] if limit["policy_id"] == "refund-budget")
    assert budget["entries"] == [["2025-01-01T09:00:05.000000Z", 30.0], ["2025-01-01T09:00:06.000000Z", 30.0]]
    assert cra.canonical_json(body)  # every value is JSON


def test_limits_need_the_atlas_the_session_ran_with(runtime: cra.Runtime, clock: cra.ManualClock) -> None:
    live = _live(runtime, clock)
    other = cra.load_atlas(manifest(version="9.0.0"))
    with pytest.raises(cra.NotFoundError) as raised:
        reconstruct_state(runtime.get_trace(live["session_id"]), atlases=[other])
    assert raised.value.code == "ATLAS_NOT_FOUND"
