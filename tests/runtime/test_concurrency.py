"""Real threads against one runtime (SPEC 13): one gapless chain per session, idempotency and limits that
hold under contention, decisions taken exactly once. Threads start together on a barrier; nothing sleeps."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from typing import Any

import cra
from cra.errors import (
    ApprovalAlreadyDecidedError,
    AtlasAlreadyLoadedError,
    ExecutionAlreadyCompletedError,
    SessionEndedError,
)

from .helpers import action, manifest, policy, run_threads, simple_manifest

THREADS = 8


def assert_one_gapless_verified_chain(rt: cra.Runtime, session_id: str) -> list[cra.TraceEvent]:
    events = rt.get_trace(session_id)
    assert [e.sequence for e in events] == list(range(len(events)))
    for previous, event in itertools.pairwise(events):
        assert event.previous_event_hash == previous.event_hash
    result = rt.verify(session_id)
    assert result.valid, result
    assert result.event_count == len(events)
    return events


def test_threads_resolving_and_executing_on_one_session_make_one_gapless_chain(rt: cra.Runtime) -> None:
    rt.load_atlas(simple_manifest("shop.read"))
    counter = Counter[int]()
    lock = threading.Lock()

    def handler(params: dict[str, Any]) -> dict[str, Any]:
        with lock:
            counter[params["thread"]] += 1
        return {"thread": params["thread"], "n": params["n"]}

    rt.register("shop.read", handler)
    session = rt.create_session("agent-1", "goal")
    rounds = 10

    def work(index: int) -> list[str]:
        statuses = []
        for n in range(rounds):
            resolution = rt.resolve(session.session_id)
            response = rt.execute(
                session.session_id, resolution.resolution_id, "shop.read", {"thread": index, "n": n}
            )
            assert response.result == {"thread": index, "n": n}
            statuses.append(response.status)
        return statuses

    results = run_threads(THREADS, work)
    assert results == [["success"] * rounds] * THREADS
    assert counter == dict.fromkeys(range(THREADS), rounds)

    events = assert_one_gapless_verified_chain(rt, session.session_id)
    operations = THREADS * rounds
    assert len(events) == 1 + operations * 3 + operations * 3
    types = Counter(e.event_type for e in events)
    # identical requests may be answered from the resolution cache (carp.resolution.cached)
    closings = types["carp.resolution.completed"] + types["carp.resolution.cached"]
    assert closings == types["action.executed"] == operations
    # Every execute span holds its own events, in order, whatever the interleaving.
    by_span: dict[str, list[str]] = {}
    for event in events[1:]:
        by_span.setdefault(event.span_id, []).append(event.event_type)
    resolve_span = ["carp.request.received", "policy.evaluated", "carp.resolution.<closing>"]
    normalised = [
        [t.replace("completed", "<closing>").replace("cached", "<closing>") for t in span]
        for span in by_span.values()
    ]
    assert sorted(normalised) == sorted(
        [resolve_span] * operations
        + [["action.requested", "action.approved", "action.executed"]] * operations
    )
    assert len({e.event_id for e in events}) == len(events)


def test_threads_sharing_an_idempotency_key_run_the_handler_once(rt: cra.Runtime) -> None:
    rt.load_atlas(simple_manifest("pay.charge"))
    calls: list[dict[str, Any]] = []
    lock = threading.Lock()

    def charge(params: dict[str, Any]) -> dict[str, str]:
        with lock:
            calls.append(params)
        return {"charged": params["amount"]}

    rt.register("pay.charge", charge)
    session = rt.create_session("agent-1", "goal")
    resolution = rt.resolve(session.session_id)

    def work(index: int) -> cra.ExecuteResponse:
        return rt.execute(
            session.session_id,
            resolution.resolution_id,
            "pay.charge",
            {"amount": "10"},
            idempotency_key="charge-1",
        )

    responses = run_threads(THREADS, work)
    assert all(isinstance(r, cra.ExecuteResponse) for r in responses), responses
    assert len(calls) == 1
    assert {r.execution_id for r in responses} == {responses[0].execution_id}
    assert {r.status for r in responses} == {"success"}
    assert sorted(r.replayed for r in responses) == [False] + [True] * (THREADS - 1)
    events = assert_one_gapless_verified_chain(rt, session.session_id)
    assert [e.event_type for e in events].count("action.requested") == 1


def test_threads_against_a_rate_limit_of_five_get_exactly_five_successes(rt: cra.Runtime) -> None:
    rt.load_atlas(
        manifest(
            actions=[action("api.call")],
            policies=[policy("limit", "rate_limit", parameters={"max_calls": 5, "window_seconds": 60})],
        )
    )
    rt.register("api.call", lambda params: "ok")
    session = rt.create_session("agent-1", "goal")
    resolution = rt.resolve(session.session_id)

    def work(index: int) -> str:
        response = rt.execute(session.session_id, resolution.resolution_id, "api.call", {"i": index})
        return response.status if response.status != "denied" else str(response.error_code)

    outcomes = Counter(run_threads(THREADS, work))
    assert outcomes == {"success": 5, "RATE_LIMITED": THREADS - 5}
    assert_one_gapless_verified_chain(rt, session.session_id)


def test_a_global_limit_holds_across_threads_on_different_sessions(rt: cra.Runtime) -> None:
    rt.load_atlas(
        manifest(
            actions=[action("api.call")],
            policies=[
                policy(
                    "limit",
                    "rate_limit",
                    parameters={"max_calls": 5, "window_seconds": 60, "scope": "global"},
                )
            ],
        )
    )
    rt.register("api.call", lambda params: "ok")
    sessions = [rt.create_session(f"agent-{i}", "goal") for i in range(THREADS)]
    resolutions = [rt.resolve(s.session_id) for s in sessions]

    def work(index: int) -> str:
        response = rt.execute(sessions[index].session_id, resolutions[index].resolution_id, "api.call")
        return response.status

    assert Counter(run_threads(THREADS, work)) == {"success": 5, "denied": THREADS - 5}
    for session in sessions:
        assert_one_gapless_verified_chain(rt, session.session_id)


def test_threads_approving_one_approval_decide_it_once(rt: cra.Runtime) -> None:
    rt.load_atlas(manifest(actions=[action("bank.wire")], policies=[policy("approve", "require_approval")]))
    session = rt.create_session("agent-1", "goal")
    resolution = rt.resolve(session.session_id)
    approval_id = resolution.approval_id
    assert approval_id is not None

    def work(index: int) -> str:
        decide = rt.approve if index % 2 == 0 else rt.reject
        return decide(approval_id, f"approver-{index}").status

    results = run_threads(THREADS, work)
    decided = [r for r in results if isinstance(r, str)]
    conflicts = [r for r in results if isinstance(r, ApprovalAlreadyDecidedError)]
    assert len(decided) == 1 and len(conflicts) == THREADS - 1
    events = assert_one_gapless_verified_chain(rt, session.session_id)
    assert sum(e.event_type in ("approval.granted", "approval.rejected") for e in events) == 1


def test_threads_completing_one_execution_complete_it_once(rt: cra.Runtime) -> None:
    rt.load_atlas(simple_manifest("ops.restart"))
    session = rt.create_session("agent-1", "goal")
    resolution = rt.resolve(session.session_id)
    authorized = rt.execute(session.session_id, resolution.resolution_id, "ops.restart")

    def work(index: int) -> str:
        return rt.complete(authorized.execution_id, result={"by": index}).status

    results = run_threads(THREADS, work)
    assert results.count("success") == 1
    assert sum(isinstance(r, ExecutionAlreadyCompletedError) for r in results) == THREADS - 1
    events = assert_one_gapless_verified_chain(rt, session.session_id)
    assert [e.event_type for e in events].count("action.executed") == 1


def test_threads_ending_one_session_end_it_once(rt: cra.Runtime) -> None:
    rt.load_atlas(simple_manifest("ops.restart"))
    session = rt.create_session("agent-1", "goal")

    def work(index: int) -> str:
        return rt.end_session(session.session_id, reason=f"reason-{index}").status

    results = run_threads(THREADS, work)
    assert results.count("ended") == 1
    assert sum(isinstance(r, SessionEndedError) for r in results) == THREADS - 1
    events = assert_one_gapless_verified_chain(rt, session.session_id)
    assert [e.event_type for e in events] == ["session.started", "session.ended"]


def test_threads_loading_one_atlas_load_it_once(rt: cra.Runtime) -> None:
    def work(index: int) -> str:
        return rt.load_atlas(simple_manifest("shop.read")).digest

    results = run_threads(THREADS, work)
    assert sum(isinstance(r, str) for r in results) == 1
    assert sum(isinstance(r, AtlasAlreadyLoadedError) for r in results) == THREADS - 1
    assert len(rt.atlases()) == 1


def test_threads_on_separate_sessions_keep_separate_chains(rt: cra.Runtime) -> None:
    rt.load_atlas(simple_manifest("shop.read"))
    rt.register("shop.read", lambda params: params)

    def work(index: int) -> str:
        session = rt.create_session(f"agent-{index}", "goal")
        for n in range(5):
            resolution = rt.resolve(session.session_id)
            rt.execute(session.session_id, resolution.resolution_id, "shop.read", {"n": n})
        rt.end_session(session.session_id)
        return session.session_id

    session_ids = run_threads(THREADS, work)
    assert len(set(session_ids)) == THREADS
    for session_id in session_ids:
        events = assert_one_gapless_verified_chain(rt, session_id)
        assert len(events) == 1 + 5 * 6 + 1
        assert {e.session_id for e in events} == {session_id}
        assert events[-1].event_type == "session.ended"
