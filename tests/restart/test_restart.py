"""A new Runtime on the same SQLite file continues every session (SPEC 4.4, 13): chains continue, limits hold,
approvals, idempotency keys, pending outcomes and request ids still work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import cra
from cra.errors import DuplicateRequestError, SessionEndedError

ATLAS: dict[str, Any] = {
    "atlas_version": "1.0",
    "atlas_id": "org.example.api",
    "version": "1.0.0",
    "name": "API",
    "description": "An API behind a rate limit, with one action that needs approval",
    "policies": [
        {
            "policy_id": "rl",
            "type": "rate_limit",
            "actions": ["api.*"],
            "parameters": {"max_calls": 4, "window_seconds": 600},
        },
        {"policy_id": "approve-drop", "type": "require_approval", "actions": ["api.drop"]},
    ],
    "actions": [
        {"action_id": "api.call", "name": "Call", "description": "Call the API"},
        {"action_id": "api.drop", "name": "Drop", "description": "Drop a table"},
        {"action_id": "api.report", "name": "Report", "description": "Run by the caller, reported later"},
    ],
}


class Handler:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, params: dict[str, Any]) -> dict[str, int]:
        self.calls += 1
        return {"n": self.calls}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cra.db"


def runtime(url: str, clock: cra.ManualClock, handler: Handler, *, load: bool = True) -> cra.Runtime:
    rt = cra.Runtime(clock=clock, storage=url)
    if load:
        rt.load_atlas(ATLAS)
    rt.register("api.call", handler)
    rt.register("api.drop", handler)
    return rt


def test_a_second_runtime_continues_the_session_where_the_first_stopped(url: str) -> None:
    clock, handler = cra.ManualClock(), Handler()
    first = runtime(url, clock, handler)
    sid = first.create_session("agent-1", "Maintain the API").session_id
    res = first.resolve(sid, request_id="00000000-0000-7000-8000-0000000000aa")
    assert first.execute(sid, res.resolution_id, "api.call", {}, idempotency_key="k1").status == "success"
    pending = first.execute(sid, res.resolution_id, "api.drop", {})
    reported = first.execute(sid, res.resolution_id, "api.report", {})
    assert (pending.status, reported.status) == ("pending_approval", "authorized")
    first.close()

    second = runtime(url, clock, handler, load=False)  # the Atlas comes back from the file, by digest
    replay = second.execute(sid, res.resolution_id, "api.call", {}, idempotency_key="k1")
    assert (replay.status, replay.replayed, replay.result, handler.calls) == ("success", True, {"n": 1}, 1)
    with pytest.raises(DuplicateRequestError):
        second.resolve(sid, request_id="00000000-0000-7000-8000-0000000000aa")
    assert second.approve(pending.approval_id or "", "alice").status == "approved"
    assert second.execute(sid, res.resolution_id, "api.drop", {}).status == "success"
    assert second.complete(reported.execution_id, result={"rows": 3}).status == "success"
    # 4 authorised calls in the window so far (call, report, drop... and this one): the limit still holds
    assert second.execute(sid, res.resolution_id, "api.call", {}).status == "success"
    denied = second.execute(sid, res.resolution_id, "api.call", {})
    assert (denied.status, denied.error_code) == ("denied", "RATE_LIMITED")
    verification = second.verify(sid)
    assert verification.valid, verification
    types = [e.event_type for e in second.get_trace(sid)]
    assert types.count("session.started") == 1 and types[-1] == "action.denied"
    second.close()


def test_an_ended_session_stays_ended_after_a_restart(url: str) -> None:
    clock, handler = cra.ManualClock(), Handler()
    first = runtime(url, clock, handler)
    sid = first.create_session("agent-1", "Short").session_id
    first.end_session(sid)
    first.close()
    second = runtime(url, clock, handler)
    with pytest.raises(SessionEndedError):
        second.resolve(sid)
    assert second.get_session(sid).end_reason == "completed"
    second.close()


def test_an_execution_whose_outcome_never_came_times_out_after_a_restart(url: str) -> None:
    clock, handler = cra.ManualClock(), Handler()
    first = runtime(url, clock, handler)
    sid = first.create_session("agent-1", "Report").session_id
    res = first.resolve(sid)
    assert first.execute(sid, res.resolution_id, "api.report", {}).status == "authorized"
    first.close()
    second = runtime(url, clock, handler)
    second.get_session(sid)  # restored
    clock.advance(3601)
    assert second.sweep()["completion_timeouts"] == 1
    last = second.get_trace(sid)[-1]
    assert (last.event_type, last.payload["error_code"]) == ("action.failed", "COMPLETION_TIMEOUT")
    assert second.verify(sid).valid
    second.close()


def test_rebuilt_state_matches_the_live_state(url: str) -> None:
    clock, handler = cra.ManualClock(), Handler()
    live = runtime(url, clock, handler)
    sid = live.create_session("agent-1", "Compare").session_id
    res = live.resolve(sid)
    live.resolve(sid)  # a cached answer
    live.execute(sid, res.resolution_id, "api.call", {})
    live.execute(sid, res.resolution_id, "api.drop", {})
    live_state = live._sessions[sid]
    rebuilt = runtime(url, clock, handler, load=False)._session(sid)
    assert rebuilt.request_ids == live_state.request_ids
    assert set(rebuilt.resolutions) == set(live_state.resolutions)
    for rid, state in live_state.resolutions.items():
        again = rebuilt.resolutions[rid]
        assert set(again.allowed) == set(state.allowed) and set(again.denied) == set(state.denied)
        assert again.expires_us == state.expires_us
        assert [a.approval_id for a in again.approvals] == [a.approval_id for a in state.approvals]
    live.close()


@pytest.mark.parametrize("storage", ["memory://", "sqlite"])
def test_sweep_forgets_ended_sessions_from_memory_and_storage_brings_them_back(
    url: str, storage: str
) -> None:
    clock = cra.ManualClock()
    rt = cra.Runtime(
        clock=clock, storage=url if storage == "sqlite" else storage, resolution_retention_seconds=60
    )
    rt.load_atlas(ATLAS)
    sid = rt.create_session("agent-1", "Short").session_id
    res = rt.resolve(sid)
    rt.end_session(sid)
    assert rt.sweep()["sessions_forgotten"] == 0  # not before the retention period
    clock.advance(61)
    assert rt.sweep()["sessions_forgotten"] == 1
    assert sid not in rt._sessions and res.resolution_id not in rt._resolutions
    assert rt.get_session(sid).status == "ended"  # rebuilt from its trace on demand
    assert rt.verify(sid).valid
    rt.close()


def test_an_approval_or_outcome_from_before_a_restart_is_found_by_its_id_alone(url: str) -> None:
    clock, handler = cra.ManualClock(), Handler()
    first = runtime(url, clock, handler)
    sid = first.create_session("agent-1", "Ids only").session_id
    res = first.resolve(sid)
    pending = first.execute(sid, res.resolution_id, "api.drop", {})
    reported = first.execute(sid, res.resolution_id, "api.report", {})
    first.close()
    second = runtime(url, clock, handler, load=False)  # nothing but the ids: the sessions are found by them
    assert second.approve(pending.approval_id or "", "alice").status == "approved"
    third = runtime(url, clock, handler, load=False)
    assert third.complete(reported.execution_id, result={"ok": True}).status == "success"
    assert third.verify(sid).valid
    second.close()
    third.close()


def test_session_limits_hold_across_a_restart_with_jsonl_storage_and_an_in_memory_limiter(
    tmp_path: Path,
) -> None:
    # The in-memory limiter forgets with its process; the session's authorised executions in the trace
    # take the session-scope windows again when the session is rebuilt.
    url = f"jsonl://{tmp_path}/traces?fsync=0"
    clock, handler = cra.ManualClock(), Handler()
    first = cra.Runtime(clock=clock, storage=url)
    first.load_atlas(ATLAS)
    first.register("api.call", handler)
    sid = first.create_session("agent-1", "Call").session_id
    res = first.resolve(sid)
    for _ in range(3):
        assert first.execute(sid, res.resolution_id, "api.call", {}).status == "success"
    first.close()
    second = cra.Runtime(clock=clock, storage=url)
    second.load_atlas(ATLAS)  # JSONL keeps no Atlas content: the same Atlas (same digest) is loaded again
    second.register("api.call", handler)
    assert second.execute(sid, res.resolution_id, "api.call", {}).status == "success"  # the 4th of 4
    denied = second.execute(sid, res.resolution_id, "api.call", {})
    assert (denied.status, denied.error_code) == ("denied", "RATE_LIMITED")
    clock.advance(601)  # the window has passed for all of them, including those taken before the restart
    assert second.resolve(sid).allowed_ids[0] == "api.call"
    second.close()


def test_an_agent_cannot_read_another_agents_trace_from_an_earlier_process(url: str) -> None:
    clock, handler = cra.ManualClock(), Handler()
    first = runtime(url, clock, handler)
    sid = first.create_session("agent-1", "Private").session_id
    first.close()
    second = runtime(url, clock, handler, load=False)  # has never seen the session: it is only in storage
    with pytest.raises(cra.AuthError):
        second.get_trace(sid, agent_id="agent-2")
    with pytest.raises(cra.AuthError):
        second.verify(sid, agent_id="agent-2")
    assert [e.event_type for e in second.get_trace(sid, agent_id="agent-1")] == ["session.started"]
    second.close()
