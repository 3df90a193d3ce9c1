"""Resolve (SPEC 3.1): candidates, policy conditions and steps, decisions, constraints, ttl, and the events
a resolve records (SPEC 4.2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import cra
from cra.errors import UnknownAtlasError, UnknownCapabilityError

from .helpers import action, carp, manifest, new_runtime, payloads, policy, simple_manifest, snapshot


def one_action(*policies: dict[str, Any], risk_tier: str = "low", **fields: Any) -> dict[str, Any]:
    return manifest(actions=[action("shop.act", risk_tier=risk_tier, **fields)], policies=list(policies))


def verdict(
    runtime: cra.Runtime, session: cra.Session, action_id: str = "shop.act", **kw: Any
) -> tuple[str, str]:
    """("allowed" | "denied", policy_id) of one action in a fresh resolution."""
    resolution = runtime.resolve(session.session_id, **kw)
    for denied in resolution.denied_actions:
        if denied.action_id == action_id:
            return "denied", denied.policy_id
    assert resolution.allowed(action_id) is not None, resolution
    evaluated = [
        e.payload
        for e in runtime.get_trace(session.session_id, event_type="policy.evaluated")
        if e.payload["action_id"] == action_id
    ]
    return "allowed", evaluated[-1]["policy_id"]


def loaded(atlas: dict[str, Any], agent_id: str = "agent-1", **kw: Any) -> tuple[cra.Runtime, cra.Session]:
    runtime = new_runtime(**kw)
    runtime.load_atlas(atlas)
    return runtime, runtime.create_session(agent_id, "goal")


# --- conditions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action_risk", "task_risk", "expected"),
    [
        ("low", "low", "denied"),
        ("low", "medium", "allowed"),
        ("medium", "low", "allowed"),
        ("high", "low", "denied"),
        ("high", "medium", "denied"),
        ("low", "critical", "denied"),
    ],
)
def test_risk_tiers_condition_uses_the_higher_of_task_and_action_risk(
    action_risk: str, task_risk: str, expected: str
) -> None:
    atlas = one_action(
        policy("medium-only", "allow", conditions={"risk_tiers": ["medium"]}), risk_tier=action_risk
    )
    runtime, session = loaded(atlas)
    assert verdict(runtime, session, risk_tier=task_risk)[0] == expected


def test_risk_tier_of_the_task_defaults_to_low() -> None:
    atlas = one_action(policy("low-only", "allow", conditions={"risk_tiers": ["low"]}))
    runtime, session = loaded(atlas)
    assert verdict(runtime, session) == ("allowed", "low-only")
    assert verdict(runtime, session, risk_tier="high") == ("denied", "cra.default-deny")


@pytest.mark.parametrize(
    ("agent_id", "expected"),
    [
        ("bot-7", "denied"),
        ("bot-", "denied"),
        ("bot-x.y.z", "denied"),
        ("Bot-7", "allowed"),
        ("robot-7", "allowed"),
        ("agent-1", "denied"),
        ("agent-12", "allowed"),
        ("human", "allowed"),
    ],
)
def test_agents_condition_matches_agent_id_globs(agent_id: str, expected: str) -> None:
    atlas = one_action(
        policy("no-bots", "deny", conditions={"agents": ["bot-*", "agent-?"]}),
        policy("allow-all", "allow"),
    )
    runtime, session = loaded(atlas, agent_id=agent_id)
    assert verdict(runtime, session)[0] == expected


def test_capabilities_condition_holds_only_when_the_request_names_one() -> None:
    atlas = manifest(
        actions=[action("shop.act"), action("shop.other")],
        capabilities=[
            {"capability_id": "shop.buy", "name": "Buy", "actions": ["shop.act"]},
            {"capability_id": "shop.all", "name": "All", "actions": ["shop.act", "shop.other"]},
        ],
        policies=[policy("buyers", "allow", conditions={"capabilities": ["shop.buy"]})],
    )
    runtime, session = loaded(atlas)
    assert verdict(runtime, session) == ("denied", "cra.default-deny")
    assert verdict(runtime, session, required_capabilities=["shop.all"]) == ("denied", "cra.default-deny")
    assert verdict(runtime, session, required_capabilities=["shop.buy"]) == ("allowed", "buyers")
    assert verdict(runtime, session, required_capabilities=["shop.all", "shop.buy"]) == ("allowed", "buyers")


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"env": "prod", "tier": 3, "vip": True}, "allowed"),
        ({"env": "prod", "tier": "3", "vip": "true"}, "allowed"),
        ({"env": "prod", "tier": 3, "vip": True, "extra": "ignored"}, "allowed"),
        ({"env": "prod", "tier": 3, "vip": False}, "denied"),
        ({"env": "prod", "tier": 4, "vip": True}, "denied"),
        ({"env": "Prod", "tier": 3, "vip": True}, "denied"),
        ({"env": "prod", "tier": 3.0, "vip": True}, "denied"),
        ({"env": "prod", "vip": True}, "denied"),
        ({}, "denied"),
    ],
)
def test_context_matches_compares_every_key_as_a_string(context: dict[str, Any], expected: str) -> None:
    atlas = one_action(
        policy(
            "prod-vip", "allow", conditions={"context_matches": {"env": "prod", "tier": "3", "vip": "true"}}
        )
    )
    runtime, session = loaded(atlas)
    assert verdict(runtime, session, context=context)[0] == expected


def test_context_matches_also_reads_the_context_of_a_carp_request() -> None:
    atlas = one_action(policy("prod", "allow", conditions={"context_matches": {"env": "prod", "n": "7"}}))
    runtime, session = loaded(atlas)
    resolution = runtime.resolve_request(carp(runtime, session, context={"env": "prod", "n": 7}))
    assert resolution.allowed_ids == ["shop.act"]
    resolution = runtime.resolve_request(carp(runtime, session, context={"env": "dev", "n": 7}))
    assert resolution.denied_ids == ["shop.act"]


def test_time_window_in_new_york_on_weekdays() -> None:
    window = {"start": "09:00", "end": "17:00", "timezone": "America/New_York", "days": list(WEEKDAYS)}
    runtime, session = loaded(one_action(policy("office-hours", "allow", conditions={"time_window": window})))
    clock = runtime.clock
    assert isinstance(clock, cra.ManualClock)
    checks = [
        ("2025-01-01T00:00:00Z", "denied"),  # Tue 19:00 in New York
        ("2025-01-01T13:59:00Z", "denied"),  # Wed 08:59
        ("2025-01-01T14:00:00Z", "allowed"),  # Wed 09:00: start is inclusive
        ("2025-01-01T21:59:59Z", "allowed"),  # Wed 16:59:59
        ("2025-01-01T22:00:00Z", "denied"),  # Wed 17:00: end is exclusive
        ("2025-01-04T15:00:00Z", "denied"),  # Sat 10:00
        ("2025-01-06T14:30:00Z", "allowed"),  # Mon 09:30
        ("2025-07-02T13:30:00Z", "allowed"),  # Wed 09:30 EDT (UTC-4): daylight saving is followed
        ("2025-07-02T21:30:00Z", "denied"),  # Wed 17:30 EDT
    ]
    for when, expected in checks:
        clock.set(when)
        assert verdict(runtime, session)[0] == expected, when


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")


def test_time_window_wrapping_past_midnight_belongs_to_the_day_it_starts() -> None:
    window = {"start": "22:00", "end": "06:00", "timezone": "America/New_York", "days": ["fri"]}
    atlas = one_action(
        policy("friday-night-freeze", "deny", conditions={"time_window": window}),
        policy("allow-all", "allow"),
    )
    runtime, session = loaded(atlas)
    clock = runtime.clock
    assert isinstance(clock, cra.ManualClock)
    checks = [
        ("2025-01-03T04:00:00Z", "allowed"),  # Thu 23:00 New York: Thursday is not listed
        ("2025-01-03T07:00:00Z", "allowed"),  # Fri 02:00: the night that started on Thursday
        ("2025-01-04T02:59:00Z", "allowed"),  # Fri 21:59
        ("2025-01-04T03:00:00Z", "denied"),  # Fri 22:00
        ("2025-01-04T04:00:00Z", "denied"),  # Fri 23:00
        ("2025-01-04T05:00:00Z", "denied"),  # Sat 00:00, still Friday night
        ("2025-01-04T10:59:00Z", "denied"),  # Sat 05:59
        ("2025-01-04T11:00:00Z", "allowed"),  # Sat 06:00
        ("2025-01-05T04:00:00Z", "allowed"),  # Sat 23:00: Saturday is not listed
    ]
    for when, expected in checks:
        clock.set(when)
        assert verdict(runtime, session)[0] == expected, when


def test_time_window_without_timezone_is_utc_and_without_days_is_every_day(clock: cra.ManualClock) -> None:
    runtime, session = loaded(one_action(policy("night", "allow", conditions={"time_window": NIGHT})))
    clock = runtime.clock
    assert isinstance(clock, cra.ManualClock)
    for when, expected in [
        ("2025-01-01T00:30:00Z", "allowed"),
        ("2025-01-01T02:00:00Z", "denied"),
        ("2025-01-04T00:59:00Z", "allowed"),
        ("2025-01-05T23:00:00Z", "allowed"),
    ]:
        clock.set(when)
        assert verdict(runtime, session)[0] == expected, when


NIGHT = {"start": "23:00", "end": "01:00"}


def test_all_conditions_of_a_policy_must_hold() -> None:
    conditions = {"agents": ["agent-*"], "risk_tiers": ["high"], "context_matches": {"env": "prod"}}
    runtime, session = loaded(one_action(policy("strict", "allow", conditions=conditions)))
    assert verdict(runtime, session, risk_tier="high", context={"env": "prod"})[0] == "allowed"
    assert verdict(runtime, session, risk_tier="low", context={"env": "prod"})[0] == "denied"
    assert verdict(runtime, session, risk_tier="high", context={"env": "dev"})[0] == "denied"


# --- steps and priority -------------------------------------------------------------------------------


def test_no_matching_policy_is_the_default_deny() -> None:
    runtime, session = loaded(one_action(policy("other", "allow", conditions={"agents": ["nobody"]})))
    resolution = runtime.resolve(session.session_id)
    assert [d.to_dict() for d in resolution.denied_actions] == [
        {"action_id": "shop.act", "reason": "No policy allows this action", "policy_id": "cra.default-deny"}
    ]


def test_deny_wins_over_every_other_step_whatever_the_priorities() -> None:
    atlas = one_action(
        policy("allow", "allow", priority=1000),
        policy("approve", "require_approval", priority=1000),
        policy("limit", "rate_limit", parameters={"max_calls": 5, "window_seconds": 60}, priority=1000),
        policy("deny", "deny", priority=-5),
    )
    runtime, session = loaded(atlas)
    assert verdict(runtime, session) == ("denied", "deny")


def test_require_approval_wins_over_limits_and_allow() -> None:
    atlas = one_action(
        policy("allow", "allow", priority=100),
        policy("limit", "rate_limit", parameters={"max_calls": 5, "window_seconds": 60}, priority=100),
        policy("approve", "require_approval"),
    )
    runtime, session = loaded(atlas)
    resolution = runtime.resolve(session.session_id)
    allowed = resolution.allowed("shop.act")
    assert allowed is not None and allowed.requires_confirmation
    assert payloads(runtime, session.session_id, "policy.evaluated")[-1] == {
        "policy_id": "approve",
        "result": "requires_approval",
        "action_id": "shop.act",
    }


def test_a_rate_limit_policy_is_a_permission_reported_before_allow() -> None:
    atlas = one_action(
        policy("allow", "allow", priority=100),
        policy("limit", "rate_limit", parameters={"max_calls": 5, "window_seconds": 60}),
    )
    runtime, session = loaded(atlas)
    assert verdict(runtime, session) == ("allowed", "limit")
    runtime2, session2 = loaded(
        one_action(policy("limit", "rate_limit", parameters={"max_calls": 5, "window_seconds": 60}))
    )
    assert verdict(runtime2, session2) == ("allowed", "limit")


def test_within_a_step_higher_priority_is_reported_then_manifest_order() -> None:
    atlas = one_action(
        policy("deny-a", "deny", priority=5),
        policy("deny-b", "deny", priority=50),
        policy("deny-c", "deny", priority=50),
    )
    runtime, session = loaded(atlas)
    assert verdict(runtime, session) == ("denied", "deny-b")
    atlas = one_action(policy("allow-a", "allow"), policy("allow-b", "allow"))
    runtime, session = loaded(atlas)
    assert verdict(runtime, session) == ("allowed", "allow-a")


def test_a_policy_that_does_not_match_is_skipped_for_the_next_one() -> None:
    atlas = one_action(
        policy("deny-bots", "deny", priority=100, conditions={"agents": ["bot-*"]}),
        policy("deny-prod", "deny", priority=10, conditions={"context_matches": {"env": "prod"}}),
        policy("allow-all", "allow"),
    )
    runtime, session = loaded(atlas)
    assert verdict(runtime, session, context={"env": "prod"}) == ("denied", "deny-prod")
    assert verdict(runtime, session, context={"env": "dev"}) == ("allowed", "allow-all")


def test_policy_actions_are_globs_and_a_policy_without_actions_covers_all() -> None:
    atlas = manifest(
        actions=[action("shop.read"), action("shop.orders.read"), action("shop.write"), action("crm.read")],
        policies=[
            policy("deny-shop-reads", "deny", ["shop.*.read", "shop.rea?"]),
            policy("allow-all", "allow"),
        ],
    )
    runtime, session = loaded(atlas)
    resolution = runtime.resolve(session.session_id)
    assert resolution.denied_ids == ["shop.read", "shop.orders.read"]
    assert resolution.allowed_ids == ["shop.write", "crm.read"]


def test_deny_reason_is_the_policy_reason_or_names_the_policy() -> None:
    atlas = manifest(
        actions=[action("shop.read"), action("shop.delete")],
        policies=[
            policy("no-read", "deny", ["shop.read"]),
            policy("no-delete", "deny", ["shop.delete"], parameters={"reason": "Deleting is off"}),
        ],
    )
    runtime, session = loaded(atlas)
    resolution = runtime.resolve(session.session_id)
    assert [d.to_dict() for d in resolution.denied_actions] == [
        {"action_id": "shop.read", "reason": "Denied by policy no-read", "policy_id": "no-read"},
        {"action_id": "shop.delete", "reason": "Deleting is off", "policy_id": "no-delete"},
    ]


def test_policies_govern_only_the_actions_of_their_own_atlas(rt: cra.Runtime) -> None:
    rt.load_atlas(
        manifest(
            "org.example.open",
            actions=[action("open.read")],
            policies=[policy("allow-all", "allow"), policy("allow-glob", "allow", ["*"])],
        )
    )
    rt.load_atlas(
        manifest(
            "org.example.closed",
            actions=[action("closed.read"), action("open.write")],
            policies=[policy("deny-everything", "deny", ["*"])],
        )
    )
    session = rt.create_session("agent-1", "goal")
    resolution = rt.resolve(session.session_id)
    assert resolution.allowed_ids == ["open.read"]
    assert [(d.action_id, d.policy_id) for d in resolution.denied_actions] == [
        ("closed.read", "deny-everything"),
        ("open.write", "deny-everything"),
    ]
    rt.load_atlas(manifest("org.example.bare", actions=[action("bare.read")]))
    other = rt.create_session("agent-1", "goal")
    denied = {d.action_id: d.policy_id for d in rt.resolve(other.session_id).denied_actions}
    assert denied["bare.read"] == "cra.default-deny"


def test_policy_of_type_scope_grants_nothing() -> None:
    runtime, session = loaded(one_action(policy("scoped", "scope")))
    assert verdict(runtime, session) == ("denied", "cra.default-deny")


# --- candidates ---------------------------------------------------------------------------------------


@pytest.fixture
def two_atlases(rt: cra.Runtime) -> cra.Runtime:
    rt.load_atlas(
        manifest(
            "org.example.shop",
            actions=[action("shop.read"), action("shop.write"), action("shop.delete")],
            capabilities=[
                {"capability_id": "shop.view", "name": "View", "actions": ["shop.read"]},
                {"capability_id": "shop.edit", "name": "Edit", "actions": ["shop.write", "shop.delete"]},
            ],
            policies=[policy("allow-all", "allow")],
        )
    )
    rt.load_atlas(
        manifest(
            "org.example.crm",
            actions=[action("crm.read"), action("crm.write")],
            capabilities=[{"capability_id": "crm.view", "name": "View", "actions": ["crm.read"]}],
            policies=[policy("allow-all", "allow")],
        )
    )
    rt.load_atlas(simple_manifest("mail.send", atlas_id="org.example.mail"))
    return rt


def test_candidates_are_in_atlas_order_then_action_order(two_atlases: cra.Runtime) -> None:
    session = two_atlases.create_session("agent-1", "goal", atlas_ids=["org.example.crm", "org.example.shop"])
    resolution = two_atlases.resolve(session.session_id)
    assert resolution.allowed_ids == ["crm.read", "crm.write", "shop.read", "shop.write", "shop.delete"]
    evaluated = [p["action_id"] for p in payloads(two_atlases, session.session_id, "policy.evaluated")]
    assert evaluated == resolution.allowed_ids


def test_atlas_ids_narrow_the_candidates_to_a_subset(two_atlases: cra.Runtime) -> None:
    session = two_atlases.create_session("agent-1", "goal")
    resolution = two_atlases.resolve(session.session_id, atlas_ids=["org.example.mail", "org.example.crm"])
    assert resolution.allowed_ids == ["crm.read", "crm.write", "mail.send"]
    received = payloads(two_atlases, session.session_id, "carp.request.received")[-1]
    assert received["atlas_ids"] == ["org.example.crm", "org.example.mail"]


def test_atlas_ids_outside_the_session_are_unknown(two_atlases: cra.Runtime) -> None:
    session = two_atlases.create_session("agent-1", "goal", atlas_ids=["org.example.shop"])
    before = snapshot(two_atlases)
    for atlas_ids in (["org.example.crm"], ["org.example.shop", "org.example.ghost"]):
        with pytest.raises(UnknownAtlasError) as info:
            two_atlases.resolve(session.session_id, atlas_ids=atlas_ids)
        assert info.value.code == "UNKNOWN_ATLAS"
    assert snapshot(two_atlases) == before


def test_required_capabilities_filter_the_candidates(two_atlases: cra.Runtime) -> None:
    session = two_atlases.create_session("agent-1", "goal")
    sid = session.session_id
    assert two_atlases.resolve(sid, required_capabilities=["shop.edit"]).allowed_ids == [
        "shop.write",
        "shop.delete",
    ]
    assert two_atlases.resolve(sid, required_capabilities=["crm.view", "shop.view"]).allowed_ids == [
        "shop.read",
        "crm.read",
    ]


def test_unknown_capability_is_an_error_and_changes_nothing(two_atlases: cra.Runtime) -> None:
    session = two_atlases.create_session("agent-1", "goal", atlas_ids=["org.example.shop"])
    before = snapshot(two_atlases)
    for capabilities in (["shop.fly"], ["shop.view", "shop.fly"], ["crm.view"]):
        with pytest.raises(UnknownCapabilityError) as info:
            two_atlases.resolve(session.session_id, required_capabilities=capabilities)
        assert info.value.code == "UNKNOWN_CAPABILITY"
    assert snapshot(two_atlases) == before


# --- decision, ttl, events ----------------------------------------------------------------------------


def decision_atlas() -> dict[str, Any]:
    return manifest(
        actions=[action("shop.read"), action("shop.refund"), action("shop.delete")],
        policies=[
            policy("allow-read", "allow", ["shop.read"]),
            policy("approve-refund", "require_approval", ["shop.refund"], conditions={"agents": ["agent-1"]}),
            policy("allow-refund", "allow", ["shop.refund"]),
            policy("no-delete", "deny", ["shop.delete"], conditions={"agents": ["agent-1", "agent-2"]}),
            policy("allow-delete", "allow", ["shop.delete"]),
            policy("deny-all", "deny", conditions={"agents": ["agent-4"]}),
        ],
    )


@pytest.mark.parametrize(
    ("agent_id", "decision", "reason"),
    [
        ("agent-1", "requires_approval", "Approval required before execution"),
        ("agent-2", "partial", "Some actions are denied by policy"),
        ("agent-3", "allow", None),
        ("agent-4", "deny", "No actions are allowed"),
    ],
)
def test_decision_type_and_exact_reason(agent_id: str, decision: str, reason: str | None) -> None:
    runtime, session = loaded(decision_atlas(), agent_id=agent_id)
    resolution = runtime.resolve(session.session_id)
    assert (resolution.decision_type, resolution.decision_reason) == (decision, reason)
    wire = resolution.to_dict()["decision"]
    assert (wire["type"], wire["reason"]) == (decision, reason)
    if decision == "requires_approval":
        assert resolution.approval_id is not None and wire["approval_id"] == resolution.approval_id
    else:
        assert resolution.approval_id is None and wire["approval_id"] is None


def test_requires_approval_wins_over_partial_and_marks_only_its_actions() -> None:
    runtime, session = loaded(decision_atlas(), agent_id="agent-1")
    resolution = runtime.resolve(session.session_id)
    assert resolution.denied_ids == ["shop.delete"]
    flags = {a.action_id: a.requires_confirmation for a in resolution.allowed_actions}
    assert flags == {"shop.read": False, "shop.refund": True}
    approval = [c for c in resolution.constraints if c["type"] == "require_approval"]
    assert approval == [
        {
            "constraint_id": resolution.approval_id,
            "type": "require_approval",
            "parameters": {"approval_id": resolution.approval_id, "actions": ["shop.refund"]},
        }
    ]


def test_action_requires_confirmation_field_makes_it_need_approval() -> None:
    atlas = manifest(
        actions=[action("shop.read"), action("shop.wire", requires_confirmation=True)],
        policies=[policy("allow-all", "allow")],
    )
    runtime, session = loaded(atlas)
    resolution = runtime.resolve(session.session_id)
    assert resolution.decision_type == "requires_approval"
    wire = resolution.allowed("shop.wire")
    assert wire is not None and wire.requires_confirmation
    assert [c["type"] for c in resolution.constraints] == ["require_approval"]


def test_allowed_actions_carry_their_definition() -> None:
    schema = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}
    returns = {"type": "object"}
    atlas = manifest(
        actions=[
            action(
                "shop.read",
                name="Read",
                description="Read an order",
                parameters_schema=schema,
                returns_schema=returns,
                risk_tier="medium",
                idempotent=True,
            )
        ],
        policies=[policy("allow-all", "allow")],
    )
    runtime, session = loaded(atlas)
    (allowed,) = runtime.resolve(session.session_id).to_dict()["allowed_actions"]
    assert allowed == {
        "action_id": "shop.read",
        "name": "Read",
        "description": "Read an order",
        "parameters_schema": schema,
        "returns_schema": returns,
        "risk_tier": "medium",
        "requires_confirmation": False,
        "idempotent": True,
    }


def test_ttl_defaults_to_an_hour_and_is_configurable(clock: cra.ManualClock) -> None:
    runtime, session = loaded(simple_manifest("shop.read"))
    resolution = runtime.resolve(session.session_id)
    assert resolution.ttl_seconds == 3600
    assert (resolution.timestamp, resolution.expires_at) == (
        "2025-01-01T00:00:00.000000Z",
        "2025-01-01T01:00:00.000000Z",
    )
    assert resolution.to_dict()["ttl_seconds"] == 3600
    short, session2 = loaded(simple_manifest("shop.read"), resolution_ttl_seconds=90)
    resolution2 = short.resolve(session2.session_id)
    assert resolution2.ttl_seconds == 90 and resolution2.expires_at == "2025-01-01T00:01:30.000000Z"
    assert payloads(short, session2.session_id, "carp.resolution.completed")[-1]["ttl_seconds"] == 90


def test_resolve_records_request_evaluations_and_completion_in_order(two_atlases: cra.Runtime) -> None:
    session = two_atlases.create_session("agent-1", "Sell things", atlas_ids=["org.example.shop"])
    resolution = two_atlases.resolve(session.session_id, goal="Refund order 7", request_id="req-1")
    events = two_atlases.get_trace(session.session_id)[1:]
    assert [e.event_type for e in events] == [
        "carp.request.received",
        "policy.evaluated",
        "policy.evaluated",
        "policy.evaluated",
        "carp.resolution.completed",
    ]
    received = events[0].payload
    assert (received["request_id"], received["operation"], received["goal"], received["atlas_ids"]) == (
        "req-1",
        "resolve",
        "Refund order 7",
        ["org.example.shop"],
    )
    assert [dict(e.payload) for e in events[1:4]] == [
        {"policy_id": "allow-all", "result": "allow", "action_id": a}
        for a in ("shop.read", "shop.write", "shop.delete")
    ]
    completed = dict(events[4].payload)
    assert {k: completed[k] for k in list(completed)[:7]} == {
        "resolution_id": resolution.resolution_id,
        "request_id": "req-1",
        "decision_type": "allow",
        "allowed_count": 3,
        "denied_count": 0,
        "context_block_count": 0,
        "ttl_seconds": 3600,
    }
    assert len({e.span_id for e in events}) == 1
    assert resolution.trace_id == session.trace_id


def test_goal_defaults_to_the_session_goal(rt: cra.Runtime) -> None:
    rt.load_atlas(simple_manifest("shop.read"))
    session = rt.create_session("agent-1", "The session goal")
    rt.resolve(session.session_id)
    assert payloads(rt, session.session_id, "carp.request.received")[0]["goal"] == "The session goal"


def test_policy_evaluated_results_name_each_verdict() -> None:
    atlas = manifest(
        actions=[
            action("a.allow"),
            action("a.deny"),
            action("a.approve"),
            action("a.rate"),
            action("a.budget"),
        ],
        policies=[
            policy("allow", "allow", ["a.allow"]),
            policy("deny", "deny", ["a.deny"]),
            policy("approve", "require_approval", ["a.approve"]),
            policy("rate", "rate_limit", ["a.rate"], parameters={"max_calls": 1, "window_seconds": 60}),
            policy("budget", "budget", ["a.budget"], parameters={"max_cost": 1}),
        ],
    )
    runtime, session = loaded(atlas)
    runtime.register("a.rate", lambda p: None)
    runtime.register("a.budget", lambda p: None)
    first = runtime.resolve(session.session_id)
    runtime.execute(session.session_id, first.resolution_id, "a.rate")
    runtime.execute(session.session_id, first.resolution_id, "a.budget")
    runtime.resolve(session.session_id)
    results = {p["action_id"]: p["result"] for p in payloads(runtime, session.session_id, "policy.evaluated")}
    assert results == {
        "a.allow": "allow",
        "a.deny": "deny",
        "a.approve": "requires_approval",
        "a.rate": "rate_limited",
        "a.budget": "budget_exceeded",
    }


def test_resolve_is_deterministic_apart_from_ids_and_timestamps(rt: cra.Runtime) -> None:
    rt.load_atlas(decision_atlas())
    session = rt.create_session("agent-1", "goal")

    def stripped(resolution: cra.Resolution) -> dict[str, Any]:
        wire = resolution.to_dict()
        for key in ("resolution_id", "request_id", "timestamp", "trace_id"):
            wire.pop(key)
        wire["decision"].pop("approval_id")
        wire["constraints"] = [{**c, "constraint_id": None, "parameters": {}} for c in wire["constraints"]]
        return wire

    assert stripped(rt.resolve(session.session_id)) == stripped(rt.resolve(session.session_id))


def test_resolve_request_uses_the_request_id_and_task_of_the_carp_request(rt: cra.Runtime) -> None:
    rt.load_atlas(decision_atlas())
    session = rt.create_session("agent-1", "goal")
    request = carp(rt, session, goal="Delete order 9", task={"risk_tier": "high"})
    resolution = rt.resolve_request(request)
    assert resolution.request_id == request["request_id"]
    received = payloads(rt, session.session_id, "carp.request.received")[0]
    assert (received["request_id"], received["goal"]) == (request["request_id"], "Delete order 9")
    assert resolution.decision_type == "requires_approval"


def test_to_json_is_the_wire_document_for_fresh_and_cached_resolutions(tmp_path: Path) -> None:
    import orjson

    from cra.cli.init import copy_template

    copy_template(tmp_path / "atlas")
    runtime = cra.Runtime()
    runtime.load_atlas(tmp_path / "atlas")
    session = runtime.create_session("support-bot", "Answer ticket T-1001")
    fresh = runtime.resolve(session.session_id)
    cached = runtime.resolve(session.session_id)
    assert runtime.get_trace(session.session_id)[-1].event_type == "carp.resolution.cached"
    for resolution in (fresh, cached, fresh):  # the second render of a plan reuses the first
        assert orjson.loads(resolution.to_json()) == resolution.to_dict()
    assert orjson.loads(cached.to_json())["resolution_id"] == cached.resolution_id != fresh.resolution_id


def test_a_session_keeps_its_latest_resolutions_only() -> None:
    runtime = new_runtime(max_resolutions_per_session=3)
    runtime.load_atlas(simple_manifest("shop.order"))
    session = runtime.create_session("agent-1", "loop")
    made = [runtime.resolve(session.session_id) for _ in range(5)]
    for old in made[:2]:
        with pytest.raises(cra.NotFoundError, match="keeps its latest 3"):
            runtime.execute(session.session_id, old.resolution_id, made[0].allowed_ids[0], {})
    response = runtime.execute(session.session_id, made[-1].resolution_id, made[-1].allowed_ids[0], {})
    assert response.ok
    # Nothing is lost from the record: every resolution is in the trace.
    closing = [
        e for e in runtime.get_trace(session.session_id) if e.event_type.startswith("carp.resolution.")
    ]
    assert len(closing) == 5
    assert runtime.verify(session.session_id).valid


def test_max_resolutions_per_session_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_resolutions_per_session"):
        cra.Runtime(max_resolutions_per_session=0)
