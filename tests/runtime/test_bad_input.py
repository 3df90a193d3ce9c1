"""Bad input gets its documented error and changes nothing (SPEC 13).

Every case runs against a runtime that already holds sessions, resolutions, a pending approval, a pending
completion, an idempotency record and a used rate-limit window, and asserts the error code AND that the
whole observable state (stats, every stored trace byte, sessions, atlases, approvals, limiter windows) is
exactly as before. The exceptions of SPEC 4.2 (invalid parameters and an expired resolution are recorded as a
failed attempt) are tested at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import cra
from cra.errors import InvalidParametersError, ResolutionExpiredError

from .helpers import action, carp, deep, manifest, policy, snapshot

SCHEMA = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}
GHOST = "00000000-0000-7000-8000-00000000dead"


@dataclass
class World:
    rt: cra.Runtime
    clock: cra.ManualClock
    session: cra.Session  # agent-1, active
    resolution: cra.Resolution
    other: cra.Session  # agent-2, active
    other_resolution: cra.Resolution
    ended: cra.Session  # agent-1, ended
    ended_resolution: cra.Resolution
    used_request_id: str
    pending_execution_id: str

    @property
    def sid(self) -> str:
        return self.session.session_id

    def request(self, **kw: Any) -> dict[str, Any]:
        return carp(self.rt, self.session, **kw)

    def execute_request(self, execution: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        body = {
            "resolution_id": self.resolution.resolution_id,
            "action_id": "shop.read",
            "parameters": {"id": "1"},
        }
        body.update(execution or {})
        return carp(self.rt, self.session, operation="execute", execution=body, **kw)

    def execute(self, action_id: str = "shop.read", parameters: Any = None, **kw: Any) -> cra.ExecuteResponse:
        params = {"id": "1"} if parameters is None else parameters
        return self.rt.execute(self.sid, self.resolution.resolution_id, action_id, params, **kw)


def shop_atlas() -> dict[str, Any]:
    return manifest(
        actions=[
            action("shop.read", parameters_schema=SCHEMA),
            action("shop.note"),
            action("shop.refund"),
            action("shop.delete"),
        ],
        capabilities=[{"capability_id": "shop.view", "name": "View", "actions": ["shop.read"]}],
        policies=[
            policy("no-delete", "deny", ["shop.delete"]),
            policy("approve-refund", "require_approval", ["shop.refund"]),
            policy("limit", "rate_limit", ["shop.read"], parameters={"max_calls": 100, "window_seconds": 60}),
            policy("allow-all", "allow"),
        ],
    )


@pytest.fixture
def world(rt: cra.Runtime, clock: cra.ManualClock) -> World:
    rt.load_atlas(shop_atlas())
    rt.register("shop.read", lambda params: {"id": params["id"]})
    session = rt.create_session("agent-1", "Help")
    used = carp(rt, session)
    resolution = rt.resolve_request(used)
    assert resolution.decision_type == "requires_approval"
    rt.execute(session.session_id, resolution.resolution_id, "shop.read", {"id": "1"}, idempotency_key="k-1")
    pending = rt.execute(session.session_id, resolution.resolution_id, "shop.note")
    assert pending.status == "authorized"
    other = rt.create_session("agent-2", "Help")
    ended = rt.create_session("agent-1", "Help")
    ended_resolution = rt.resolve(ended.session_id)
    rt.end_session(ended.session_id)
    return World(
        rt,
        clock,
        session,
        resolution,
        other,
        rt.resolve(other.session_id),
        ended,
        ended_resolution,
        used["request_id"],
        pending.execution_id,
    )


def without(mapping: dict[str, Any], *path: str) -> dict[str, Any]:
    target = mapping
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return mapping


def setting(mapping: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    target = mapping
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return mapping


def skewed(w: World, seconds: int) -> str:
    return cra.format_timestamp(w.clock.now_us() + seconds * 1_000_000)


Case = Callable[[World], Any]

CASES: list[Any] = [
    # --- CARP resolve requests -------------------------------------------------------------------------
    pytest.param(
        lambda w: w.rt.resolve_request(without(w.request(), "task")), "INVALID_REQUEST", id="missing-task"
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(without(w.request(), "requester")),
        "INVALID_REQUEST",
        id="missing-requester",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(without(w.request(), "requester", "session_id")),
        "INVALID_REQUEST",
        id="missing-session-id",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(without(w.request(), "timestamp")),
        "INVALID_REQUEST",
        id="missing-timestamp",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(setting(w.request(), 5, "task", "goal")),
        "INVALID_REQUEST",
        id="goal-int",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(setting(w.request(), "", "task", "goal")),
        "INVALID_REQUEST",
        id="goal-empty",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(setting(w.request(), "x", "task", "required_capabilities")),
        "INVALID_REQUEST",
        id="capabilities-string",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(setting(w.request(), [], "context")),
        "INVALID_REQUEST",
        id="context-list",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(setting(w.request(), "extreme", "task", "risk_tier")),
        "INVALID_REQUEST",
        id="risk-tier-unknown",
    ),
    pytest.param(lambda w: w.rt.resolve_request(w.request(extra=1)), "INVALID_REQUEST", id="unknown-field"),
    pytest.param(
        lambda w: w.rt.resolve_request(setting(w.request(), "x", "task", "priority")),
        "INVALID_REQUEST",
        id="unknown-task-field",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(setting(w.request(), "x", "requester", "role")),
        "INVALID_REQUEST",
        id="unknown-requester-field",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(setting(w.request(), "2.0", "carp_version")),
        "INVALID_REQUEST",
        id="carp-version-2",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(setting(w.request(), 1.0, "carp_version")),
        "INVALID_REQUEST",
        id="carp-version-number",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(w.request(request_id="not-a-uuid")),
        "INVALID_REQUEST",
        id="request-id-not-uuid",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(setting(w.request(), "abc", "requester", "session_id")),
        "INVALID_REQUEST",
        id="session-id-not-uuid",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(setting(w.request(), "explode", "operation")),
        "INVALID_REQUEST",
        id="operation-unknown",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(setting(w.request(), "execute", "operation")),
        "INVALID_REQUEST",
        id="execute-without-execution",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(w.request(timestamp="yesterday")),
        "INVALID_REQUEST",
        id="timestamp-garbage",
    ),
    pytest.param(lambda w: w.rt.resolve_request([w.request()]), "INVALID_REQUEST", id="request-is-a-list"),  # type: ignore[arg-type]
    pytest.param(lambda w: w.rt.resolve_request("{}"), "INVALID_REQUEST", id="request-is-a-string"),  # type: ignore[arg-type]
    pytest.param(
        lambda w: w.rt.resolve_request(w.request(context={"x": float("nan")})),
        "INVALID_REQUEST",
        id="context-nan",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(w.request(context={"x": [float("-inf")]})),
        "INVALID_REQUEST",
        id="context-inf",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(w.request(context={"x": deep(200)})),
        "PAYLOAD_TOO_LARGE",
        id="context-deep",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(w.request(context={1: "x"})), "INVALID_REQUEST", id="context-int-key"
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(w.request(goal="x" * 10_001)), "INVALID_REQUEST", id="goal-huge"
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(w.request(goal="a\ud800b")), "INVALID_REQUEST", id="goal-surrogate"
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(w.request(context={"k\udfff": 1})),
        "INVALID_REQUEST",
        id="context-key-surrogate",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(setting(w.request(), GHOST, "requester", "session_id")),
        "SESSION_NOT_FOUND",
        id="unknown-session",
    ),
    pytest.param(lambda w: w.rt.resolve_request(carp(w.rt, w.ended)), "SESSION_ENDED", id="ended-session"),
    pytest.param(
        lambda w: w.rt.resolve_request(w.request(agent_id="agent-2")), "FORBIDDEN", id="wrong-agent"
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(w.request(), agent_id="agent-2"),
        "FORBIDDEN",
        id="authenticated-other-agent",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(w.request(request_id=w.used_request_id)),
        "DUPLICATE_REQUEST",
        id="duplicate-request-id",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(w.request(timestamp=skewed(w, 301))),
        "CLOCK_SKEW",
        id="clock-skew-ahead",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(w.request(timestamp=skewed(w, -301))),
        "CLOCK_SKEW",
        id="clock-skew-behind",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(w.request(task={"required_capabilities": ["shop.fly"]})),
        "UNKNOWN_CAPABILITY",
        id="unknown-capability",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(w.request(atlas_ids=["org.example.ghost"])),
        "UNKNOWN_ATLAS",
        id="unknown-atlas",
    ),
    pytest.param(
        lambda w: w.rt.resolve_request(w.request(context={"max_context_tokens": -5})),
        "INVALID_REQUEST",
        id="max-context-tokens-negative",
    ),
    # --- CARP execute requests -------------------------------------------------------------------------
    pytest.param(
        lambda w: w.rt.execute_request(without(w.execute_request(), "execution")),
        "INVALID_REQUEST",
        id="execute-missing-execution",
    ),
    pytest.param(
        lambda w: w.rt.execute_request(without(w.execute_request(), "execution", "parameters")),
        "INVALID_REQUEST",
        id="execute-missing-parameters",
    ),
    pytest.param(
        lambda w: w.rt.execute_request(w.execute_request({"parameters": {"id": float("nan")}})),
        "INVALID_REQUEST",
        id="execute-parameters-nan",
    ),
    pytest.param(
        lambda w: w.rt.execute_request(w.execute_request({"parameters": {"id": deep(200)}})),
        "PAYLOAD_TOO_LARGE",
        id="execute-parameters-deep",
    ),
    pytest.param(
        lambda w: w.rt.execute_request(w.execute_request({"action_id": "Shop Read"})),
        "INVALID_REQUEST",
        id="execute-bad-action-id",
    ),
    pytest.param(
        lambda w: w.rt.execute_request(w.execute_request({"resolution_id": "r-1"})),
        "INVALID_REQUEST",
        id="execute-resolution-id-not-uuid",
    ),
    pytest.param(
        lambda w: w.rt.execute_request(w.execute_request({"extra": True})),
        "INVALID_REQUEST",
        id="execute-unknown-field",
    ),
    pytest.param(
        lambda w: w.rt.execute_request(w.execute_request({"resolution_id": GHOST})),
        "RESOLUTION_NOT_FOUND",
        id="execute-unknown-resolution",
    ),
    pytest.param(
        lambda w: w.rt.execute_request(
            w.execute_request({"resolution_id": w.other_resolution.resolution_id})
        ),
        "RESOLUTION_NOT_FOUND",
        id="execute-resolution-of-another-session",
    ),
    pytest.param(
        lambda w: w.rt.execute_request(w.execute_request(request_id=w.used_request_id)),
        "DUPLICATE_REQUEST",
        id="execute-duplicate-request-id",
    ),
    pytest.param(
        lambda w: w.rt.execute_request(w.execute_request(timestamp=skewed(w, 301))),
        "CLOCK_SKEW",
        id="execute-clock-skew",
    ),
    pytest.param(
        lambda w: w.rt.execute_request(w.execute_request(agent_id="agent-2")),
        "FORBIDDEN",
        id="execute-wrong-agent",
    ),
    pytest.param(
        lambda w: w.rt.execute_request(
            carp(
                w.rt,
                w.ended,
                operation="execute",
                execution={
                    "resolution_id": w.ended_resolution.resolution_id,
                    "action_id": "shop.read",
                    "parameters": {"id": "1"},
                },
            )
        ),
        "SESSION_ENDED",
        id="execute-ended-session",
    ),
    pytest.param(
        lambda w: w.rt.execute_request(
            w.execute_request({"idempotency_key": "k-1", "parameters": {"id": "2"}})
        ),
        "IDEMPOTENCY_CONFLICT",
        id="execute-idempotency-conflict",
    ),
    # --- Python execute --------------------------------------------------------------------------------
    pytest.param(
        lambda w: w.execute(parameters={"id": float("nan")}), "INVALID_REQUEST", id="parameters-nan"
    ),
    pytest.param(
        lambda w: w.execute(parameters={"id": float("inf")}), "INVALID_REQUEST", id="parameters-inf"
    ),
    pytest.param(
        lambda w: w.execute(parameters={"id": deep(200)}), "PAYLOAD_TOO_LARGE", id="parameters-deep"
    ),
    pytest.param(lambda w: w.execute(parameters={1: "x"}), "INVALID_REQUEST", id="parameters-int-key"),
    pytest.param(
        lambda w: w.execute(parameters={"id": "\ud800"}), "INVALID_REQUEST", id="parameters-surrogate"
    ),
    pytest.param(
        lambda w: w.execute(parameters={"\udc00": "x"}), "INVALID_REQUEST", id="parameters-key-surrogate"
    ),
    pytest.param(lambda w: w.execute(parameters={"id": {1, 2}}), "INVALID_REQUEST", id="parameters-set"),
    pytest.param(lambda w: w.execute(parameters=["id"]), "INVALID_REQUEST", id="parameters-list"),
    pytest.param(lambda w: w.execute(action_id=""), "INVALID_REQUEST", id="action-id-empty"),
    pytest.param(lambda w: w.execute(action_id=7), "INVALID_REQUEST", id="action-id-int"),
    pytest.param(lambda w: w.execute(idempotency_key=""), "INVALID_REQUEST", id="idempotency-key-empty"),
    pytest.param(lambda w: w.execute(idempotency_key=5), "INVALID_REQUEST", id="idempotency-key-int"),
    pytest.param(
        lambda w: w.execute(parameters={"id": "2"}, idempotency_key="k-1"),
        "IDEMPOTENCY_CONFLICT",
        id="idempotency-conflict",
    ),
    pytest.param(
        lambda w: w.rt.execute(GHOST, w.resolution.resolution_id, "shop.read", {"id": "1"}),
        "SESSION_NOT_FOUND",
        id="execute-unknown-session",
    ),
    pytest.param(
        lambda w: w.rt.execute(w.sid, GHOST, "shop.read", {"id": "1"}),
        "RESOLUTION_NOT_FOUND",
        id="unknown-resolution",
    ),
    pytest.param(
        lambda w: w.rt.execute(w.sid, w.other_resolution.resolution_id, "shop.read", {"id": "1"}),
        "RESOLUTION_NOT_FOUND",
        id="resolution-of-another-session",
    ),
    pytest.param(
        lambda w: w.rt.execute(
            w.ended.session_id, w.ended_resolution.resolution_id, "shop.read", {"id": "1"}
        ),
        "SESSION_ENDED",
        id="execute-in-ended-session",
    ),
    pytest.param(
        lambda w: w.rt.execute(
            w.sid, w.resolution.resolution_id, "shop.read", {"id": "1"}, agent_id="agent-2"
        ),
        "FORBIDDEN",
        id="execute-as-another-agent",
    ),
    # --- Python resolve --------------------------------------------------------------------------------
    pytest.param(lambda w: w.rt.resolve(w.sid, goal="x" * 10_001), "INVALID_REQUEST", id="resolve-goal-huge"),
    pytest.param(lambda w: w.rt.resolve(w.sid, goal=""), "INVALID_REQUEST", id="resolve-goal-empty"),
    pytest.param(
        lambda w: w.rt.resolve(w.sid, goal="\ud800"), "INVALID_REQUEST", id="resolve-goal-surrogate"
    ),
    pytest.param(
        lambda w: w.rt.resolve(w.sid, context={"x": float("nan")}),
        "INVALID_REQUEST",
        id="resolve-context-nan",
    ),
    pytest.param(
        lambda w: w.rt.resolve(w.sid, context={2: 1}), "INVALID_REQUEST", id="resolve-context-int-key"
    ),
    pytest.param(
        lambda w: w.rt.resolve(w.sid, context={"x": deep(200)}),
        "PAYLOAD_TOO_LARGE",
        id="resolve-context-deep",
    ),
    pytest.param(lambda w: w.rt.resolve(w.sid, context=[1]), "INVALID_REQUEST", id="resolve-context-list"),
    pytest.param(
        lambda w: w.rt.resolve(w.sid, risk_tier="extreme"), "INVALID_REQUEST", id="resolve-risk-tier"
    ),
    pytest.param(
        lambda w: w.rt.resolve(w.sid, risk_tier=["high"]),
        "INVALID_REQUEST",
        id="resolve-risk-tier-list",
    ),
    pytest.param(
        lambda w: w.rt.resolve(w.sid, request_id=["r"]),
        "INVALID_REQUEST",
        id="resolve-request-id-list",
    ),
    pytest.param(
        lambda w: w.rt.resolve(w.sid, request_id=5),
        "INVALID_REQUEST",
        id="resolve-request-id-int",
    ),
    pytest.param(
        lambda w: w.rt.resolve(w.sid, required_capabilities="shop.view"),
        "INVALID_REQUEST",
        id="resolve-capabilities-string",
    ),
    pytest.param(
        lambda w: w.rt.resolve(w.sid, context_hints=[1]), "INVALID_REQUEST", id="resolve-context-hints-ints"
    ),
    pytest.param(
        lambda w: w.rt.resolve(w.sid, required_capabilities=["shop.fly"]),
        "UNKNOWN_CAPABILITY",
        id="resolve-unknown-capability",
    ),
    pytest.param(
        lambda w: w.rt.resolve(w.sid, atlas_ids=["org.example.ghost"]),
        "UNKNOWN_ATLAS",
        id="resolve-unknown-atlas",
    ),
    pytest.param(
        lambda w: w.rt.resolve(w.sid, request_id=w.used_request_id),
        "DUPLICATE_REQUEST",
        id="resolve-duplicate-request-id",
    ),
    pytest.param(lambda w: w.rt.resolve(GHOST), "SESSION_NOT_FOUND", id="resolve-unknown-session"),
    pytest.param(lambda w: w.rt.resolve(None), "SESSION_NOT_FOUND", id="resolve-session-none"),
    pytest.param(lambda w: w.rt.resolve(w.ended.session_id), "SESSION_ENDED", id="resolve-ended-session"),
    pytest.param(
        lambda w: w.rt.resolve(w.sid, agent_id="agent-2"), "FORBIDDEN", id="resolve-as-another-agent"
    ),
    # --- sessions ------------------------------------------------------------------------------------------
    pytest.param(lambda w: w.rt.create_session("", "goal"), "INVALID_REQUEST", id="session-agent-empty"),
    pytest.param(
        lambda w: w.rt.create_session("a" * 256, "goal"), "INVALID_REQUEST", id="session-agent-long"
    ),
    pytest.param(lambda w: w.rt.create_session(None, "goal"), "INVALID_REQUEST", id="session-agent-none"),
    pytest.param(
        lambda w: w.rt.create_session("agent-1", "x" * 10_001), "INVALID_REQUEST", id="session-goal-huge"
    ),
    pytest.param(
        lambda w: w.rt.create_session("agent-1", "\ud800"), "INVALID_REQUEST", id="session-goal-surrogate"
    ),
    pytest.param(
        lambda w: w.rt.create_session("\udfff", "goal"), "INVALID_REQUEST", id="session-agent-surrogate"
    ),
    pytest.param(
        lambda w: w.rt.create_session("agent-1", "goal", metadata={"x": float("nan")}),
        "INVALID_REQUEST",
        id="session-metadata-nan",
    ),
    pytest.param(
        lambda w: w.rt.create_session("agent-1", "goal", metadata={"x": deep(200)}),
        "PAYLOAD_TOO_LARGE",
        id="session-metadata-deep",
    ),
    pytest.param(
        lambda w: w.rt.create_session("agent-1", "goal", metadata=[1, 2]),
        "INVALID_REQUEST",
        id="session-metadata-list",
    ),
    pytest.param(
        lambda w: w.rt.create_session("agent-1", "goal", metadata="ab"),
        "INVALID_REQUEST",
        id="session-metadata-string",
    ),
    pytest.param(
        lambda w: w.rt.create_session("agent-1", "goal", atlas_ids="org.example.shop"),
        "INVALID_REQUEST",
        id="session-atlas-ids-string",
    ),
    pytest.param(
        lambda w: w.rt.create_session("agent-1", "goal", atlas_ids=["org.example.ghost"]),
        "UNKNOWN_ATLAS",
        id="session-unknown-atlas",
    ),
    pytest.param(lambda w: w.rt.end_session(GHOST), "SESSION_NOT_FOUND", id="end-unknown-session"),
    pytest.param(lambda w: w.rt.end_session(w.ended.session_id), "SESSION_ENDED", id="end-ended-session"),
    pytest.param(lambda w: w.rt.end_session(w.sid, reason=""), "INVALID_REQUEST", id="end-reason-empty"),
    pytest.param(lambda w: w.rt.end_session(w.sid, reason="x" * 65), "INVALID_REQUEST", id="end-reason-long"),
    pytest.param(
        lambda w: w.rt.end_session(w.sid, reason="\ud800"),
        "INVALID_REQUEST",
        id="end-reason-surrogate",
    ),
    pytest.param(
        lambda w: w.rt.end_session(w.sid, agent_id="agent-2"), "FORBIDDEN", id="end-as-another-agent"
    ),
    # --- approvals and completions -------------------------------------------------------------------------
    pytest.param(lambda w: w.rt.approve(GHOST, "alice"), "APPROVAL_NOT_FOUND", id="approve-unknown"),
    pytest.param(
        lambda w: w.rt.approve(w.resolution.approval_id, ""), "INVALID_REQUEST", id="approve-no-approver"
    ),
    pytest.param(
        lambda w: w.rt.approve(w.resolution.approval_id, "alice", note=5),
        "INVALID_REQUEST",
        id="approve-note-int",
    ),
    pytest.param(
        lambda w: w.rt.approve(w.resolution.approval_id, "\ud800"),
        "INVALID_REQUEST",
        id="approve-approver-surrogate",
    ),
    pytest.param(
        lambda w: w.rt.reject(w.resolution.approval_id, "alice", agent_id="agent-2"),
        "APPROVAL_NOT_FOUND",
        id="reject-as-another-agent",
    ),
    pytest.param(lambda w: w.rt.complete(GHOST, result=1), "EXECUTION_NOT_FOUND", id="complete-unknown"),
    pytest.param(lambda w: w.rt.complete(""), "INVALID_REQUEST", id="complete-empty-id"),
    pytest.param(
        lambda w: w.rt.complete(w.pending_execution_id, result=float("nan")),
        "INVALID_REQUEST",
        id="complete-nan",
    ),
    pytest.param(
        lambda w: w.rt.complete(w.pending_execution_id, error="\ud800"),
        "INVALID_REQUEST",
        id="complete-surrogate",
    ),
    pytest.param(
        lambda w: w.rt.complete(w.pending_execution_id, result=1, agent_id="agent-2"),
        "FORBIDDEN",
        id="complete-as-another-agent",
    ),
    # --- atlases -------------------------------------------------------------------------------------------
    pytest.param(
        lambda w: w.rt.load_atlas(
            manifest("org.example.new", actions=[action("a.b")], policies=[policy("p", "allow", ["a.c"])])
        ),
        "INVALID_ATLAS",
        id="atlas-unknown-action",
    ),
    pytest.param(
        lambda w: w.rt.load_atlas(
            manifest(
                "org.example.new",
                actions=[action("a.b")],
                context_packs=[{"pack_id": "p", "name": "p", "files": ["../etc/passwd"]}],
            ),
            files={"../etc/passwd": "root"},
        ),
        "INVALID_ATLAS",
        id="atlas-path-traversal-in-files",
    ),
    pytest.param(
        lambda w: w.rt.load_atlas({**shop_atlas(), "version": "2.0.0", "unknown": 1}),
        "INVALID_ATLAS",
        id="atlas-new-version-invalid",
    ),
    pytest.param(
        lambda w: w.rt.load_atlas({**shop_atlas(), "metadata": {"x": deep(200)}}),
        "INVALID_ATLAS",
        id="atlas-deep",
    ),
    pytest.param(
        lambda w: w.rt.load_atlas([1, 2]),  # type: ignore[arg-type]
        "INVALID_ATLAS",
        id="atlas-json-array",
    ),
    pytest.param(lambda w: w.rt.load_atlas(shop_atlas()), "ATLAS_ALREADY_LOADED", id="atlas-already-loaded"),
    pytest.param(
        lambda w: w.rt.unload_atlas("org.example.ghost"), "ATLAS_NOT_FOUND", id="atlas-unload-unknown"
    ),
]


@pytest.mark.parametrize(("call", "code"), CASES)
def test_bad_input_gets_its_error_and_changes_nothing(world: World, call: Case, code: str) -> None:
    before = snapshot(world.rt)
    trace_length = len(world.rt.get_trace(world.sid))
    stats = world.rt.stats()
    atlases = world.rt.atlases()
    with pytest.raises(cra.CRAError) as info:
        call(world)
    assert info.value.code == code, info.value
    assert len(world.rt.get_trace(world.sid)) == trace_length
    assert world.rt.stats() == stats
    assert world.rt.atlases() == atlases
    assert snapshot(world.rt) == before
    body = info.value.to_dict()
    assert "Traceback" not in body["message"] and "/src/cra/" not in body["message"]


def test_invalid_request_lists_every_problem_with_its_pointer(world: World) -> None:
    request = world.request(extra=1, request_id="nope")
    request["task"]["goal"] = ""
    request["carp_version"] = "2.0"
    with pytest.raises(cra.ValidationError) as info:
        world.rt.resolve_request(request)
    pointers = [e["pointer"] for e in info.value.details["errors"]]  # type: ignore[index]
    assert {"/carp_version", "/request_id", "/task/goal", "/extra"} <= set(pointers)


def test_clock_skew_of_exactly_the_limit_is_accepted(world: World) -> None:
    for seconds in (300, -300):
        resolution = world.rt.resolve_request(world.request(timestamp=skewed(world, seconds)))
        assert resolution.decision_type == "requires_approval"


def test_clock_skew_limit_is_configurable() -> None:
    from .helpers import new_runtime, simple_manifest

    runtime = new_runtime(clock_skew_seconds=10)
    runtime.load_atlas(simple_manifest("shop.read"))
    session = runtime.create_session("agent-1", "goal")
    clock = runtime.clock
    ahead = cra.format_timestamp(clock.now_us() + 11_000_000)
    with pytest.raises(cra.ValidationError) as info:
        runtime.resolve_request(carp(runtime, session, timestamp=ahead))
    assert info.value.code == "CLOCK_SKEW"


def test_a_refused_request_id_can_be_used_later(world: World) -> None:
    request = world.request(task={"required_capabilities": ["shop.fly"]})
    with pytest.raises(cra.ValidationError):
        world.rt.resolve_request(request)
    del request["task"]["required_capabilities"]
    assert world.rt.resolve_request(request).request_id == request["request_id"]
    with pytest.raises(cra.ConflictError):
        world.rt.resolve_request(request)


def test_request_ids_are_unique_across_resolve_and_execute(world: World) -> None:
    execute = world.execute_request(request_id=world.used_request_id)
    with pytest.raises(cra.ConflictError) as info:
        world.rt.execute_request(execute)
    assert info.value.code == "DUPLICATE_REQUEST"
    fresh = world.execute_request()
    assert world.rt.execute_request(fresh).status == "success"
    with pytest.raises(cra.ConflictError):
        world.rt.resolve_request(world.request(request_id=fresh["request_id"]))


def test_validate_request_reports_problems_without_side_effects(world: World) -> None:
    before = snapshot(world.rt)
    good = world.rt.validate_request(world.request())
    assert good.valid and good.errors == []
    bad = world.rt.validate_request(world.request(carp_version="2.0", context={"x": float("nan")}))
    assert not bad.valid and bad.error_paths
    params = world.rt.validate_request(world.execute_request({"parameters": {"id": 5}}))
    assert not params.valid and params.error_paths == ["/execution/parameters/id"]
    assert world.rt.validate_request([]).error_paths == [""]
    assert snapshot(world.rt) == before


# --- the recorded exceptions (SPEC 4.2) -------------------------------------------------------------------


def test_invalid_parameters_on_a_valid_resolution_are_recorded_as_a_failed_attempt(world: World) -> None:
    before = snapshot(world.rt)
    with pytest.raises(InvalidParametersError) as info:
        world.execute(parameters={"id": 5})
    assert info.value.code == "INVALID_PARAMETERS"
    new = world.rt.get_trace(world.sid)[len(before["traces"][world.sid]) :]
    assert [e.event_type for e in new] == ["action.requested", "action.failed"]
    assert (new[1].payload["action_id"], new[1].payload["error_code"]) == ("shop.read", "INVALID_PARAMETERS")
    after = snapshot(world.rt)
    assert after["stats"] == before["stats"] and after["limiter"] == before["limiter"]
    assert {k: v for k, v in after["traces"].items() if k != world.sid} == {
        k: v for k, v in before["traces"].items() if k != world.sid
    }
    assert world.rt.verify(world.sid).valid


def test_invalid_parameters_in_an_execute_request_are_recorded_too(world: World) -> None:
    length = len(world.rt.get_trace(world.sid))
    with pytest.raises(InvalidParametersError):
        world.rt.execute_request(world.execute_request({"parameters": {}}))
    assert [e.event_type for e in world.rt.get_trace(world.sid)[length:]] == [
        "action.requested",
        "action.failed",
    ]


def test_expired_resolution_is_recorded_as_a_failed_attempt(world: World) -> None:
    world.clock.advance(3600)
    before = snapshot(world.rt)
    with pytest.raises(ResolutionExpiredError):
        world.execute()
    new = world.rt.get_trace(world.sid)[len(before["traces"][world.sid]) :]
    assert [e.event_type for e in new] == ["action.requested", "action.failed"]
    assert new[1].payload["error_code"] == "RESOLUTION_EXPIRED"
    assert snapshot(world.rt)["stats"] == before["stats"]
