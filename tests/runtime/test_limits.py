"""Rate limits and budgets (SPEC 3.1, 3.3): sliding windows, scopes, shared windows, costs, periods, and
how they show in resolutions."""

from __future__ import annotations

from typing import Any

import pytest

import cra

from .helpers import action, manifest, payloads, policy, snapshot


def limited(rt: cra.Runtime, *policies: dict[str, Any], actions: list[dict[str, Any]] | None = None) -> None:
    rt.load_atlas(
        manifest(actions=actions or [action("api.call"), action("api.status")], policies=list(policies))
    )
    for a in rt.atlases()[0].actions:
        rt.register(a.action_id, lambda p: "ok")


def rate(max_calls: int, window: int = 60, actions: list[str] | None = None, **params: Any) -> dict[str, Any]:
    return policy(
        "rate", "rate_limit", actions, parameters={"max_calls": max_calls, "window_seconds": window, **params}
    )


class Agent:
    """One session that resolves once and executes under that resolution."""

    def __init__(self, rt: cra.Runtime, agent_id: str = "agent-1") -> None:
        self.rt = rt
        self.session = rt.create_session(agent_id, "goal")
        self.resolution = rt.resolve(self.session.session_id)

    def run(self, action_id: str = "api.call", **kw: Any) -> str:
        response = self.rt.execute(self.session.session_id, self.resolution.resolution_id, action_id, **kw)
        return response.status if response.status != "denied" else str(response.error_code)

    def resolve(self, **kw: Any) -> cra.Resolution:
        return self.rt.resolve(self.session.session_id, **kw)


def test_rate_limit_window_is_sliding(rt: cra.Runtime, clock: cra.ManualClock) -> None:
    limited(rt, rate(2, 60))
    agent = Agent(rt)
    outcomes = []
    for step in (0, 30, 29, 1, 1, 29):  # t = 0, 30, 59, 60, 61, 90
        clock.advance(step)
        outcomes.append(agent.run())
    assert outcomes == ["success", "success", "RATE_LIMITED", "success", "RATE_LIMITED", "success"]


def test_rate_limited_execution_is_recorded_as_denied(rt: cra.Runtime) -> None:
    limited(rt, rate(1))
    agent = Agent(rt)
    agent.run()
    response = rt.execute(agent.session.session_id, agent.resolution.resolution_id, "api.call")
    assert (response.status, response.http_status, response.error_code) == ("denied", 403, "RATE_LIMITED")
    assert (
        response.error is not None
        and response.error["category"] == "rate_limit"
        and response.error["recoverable"]
    )
    assert payloads(rt, agent.session.session_id, "action.denied")[-1] == {
        "action_id": "api.call",
        "reason": "rate_limit_exceeded",
        "policy_id": "rate",
    }


def test_exhausted_rate_limit_denies_at_resolve(rt: cra.Runtime) -> None:
    limited(rt, rate(1, actions=["api.call"]), policy("allow", "allow"))
    agent = Agent(rt)
    agent.run()
    resolution = agent.resolve()
    assert [d.to_dict() for d in resolution.denied_actions] == [
        {"action_id": "api.call", "reason": "rate_limit_exceeded", "policy_id": "rate"}
    ]
    assert resolution.allowed_ids == ["api.status"]
    assert resolution.decision_type == "partial"
    assert payloads(rt, agent.session.session_id, "policy.evaluated")[-2]["result"] == "rate_limited"


def test_resolving_does_not_consume_a_limit(rt: cra.Runtime) -> None:
    limited(rt, rate(1))
    agent = Agent(rt)
    for _ in range(5):
        agent.resolve()
    assert agent.run() == "success"


def test_allowed_actions_show_the_remaining_calls(rt: cra.Runtime) -> None:
    limited(rt, rate(3, 60))
    agent = Agent(rt)
    assert agent.resolution.allowed("api.call").rate_limit == {  # type: ignore[union-attr]
        "max_calls": 3,
        "window_seconds": 60,
        "remaining": 3,
    }
    agent.run("api.call")
    agent.run("api.status")
    resolution = agent.resolve()
    for action_id in ("api.call", "api.status"):
        allowed = resolution.allowed(action_id)
        assert allowed is not None and allowed.rate_limit == {
            "max_calls": 3,
            "window_seconds": 60,
            "remaining": 1,
        }
    assert resolution.to_dict()["allowed_actions"][0]["rate_limit"]["remaining"] == 1


def test_one_constraint_per_window_listing_the_actions_it_binds(rt: cra.Runtime) -> None:
    limited(
        rt,
        rate(5, 60, ["api.*"]),
        actions=[action("api.call", rate_limit={"max_calls": 2, "window_seconds": 10}), action("api.status")],
    )
    resolution = Agent(rt).resolution
    constraints = {c["constraint_id"]: c for c in resolution.constraints}
    assert [c["type"] for c in resolution.constraints] == ["rate_limit", "rate_limit"]
    assert constraints["rate"]["parameters"]["actions"] == ["api.call", "api.status"]
    assert constraints["rate"]["parameters"]["max_calls"] == 5
    own = [c for cid, c in constraints.items() if cid != "rate"]
    assert len(own) == 1 and own[0]["parameters"]["actions"] == ["api.call"]
    # The tightest window is what the allowed action shows.
    assert resolution.allowed("api.call").rate_limit == {  # type: ignore[union-attr]
        "max_calls": 2,
        "window_seconds": 10,
        "remaining": 2,
    }


def test_one_policy_window_is_shared_by_every_action_it_matches(rt: cra.Runtime) -> None:
    limited(rt, rate(2, 60, ["api.*"]))
    agent = Agent(rt)
    assert [
        agent.run("api.call"),
        agent.run("api.status"),
        agent.run("api.call"),
        agent.run("api.status"),
    ] == [
        "success",
        "success",
        "RATE_LIMITED",
        "RATE_LIMITED",
    ]


def test_action_rate_limit_keeps_a_window_for_that_action_alone(
    rt: cra.Runtime, clock: cra.ManualClock
) -> None:
    limited(
        rt,
        policy("allow", "allow"),
        actions=[action("api.call", rate_limit={"max_calls": 1, "window_seconds": 30}), action("api.status")],
    )
    agent = Agent(rt)
    assert [
        agent.run("api.call"),
        agent.run("api.call"),
        agent.run("api.status"),
        agent.run("api.status"),
    ] == [
        "success",
        "RATE_LIMITED",
        "success",
        "success",
    ]
    clock.advance(30)
    assert agent.run("api.call") == "success"


def test_action_rate_limit_alone_does_not_allow_the_action(rt: cra.Runtime) -> None:
    limited(rt, actions=[action("api.call", rate_limit={"max_calls": 1, "window_seconds": 30})])
    assert Agent(rt).resolution.denied_ids == ["api.call"]


def test_rate_limits_are_per_session_by_default(rt: cra.Runtime) -> None:
    limited(rt, rate(1))
    one, two = Agent(rt), Agent(rt)
    assert [one.run(), one.run(), two.run()] == ["success", "RATE_LIMITED", "success"]


def test_agent_scope_is_shared_by_the_sessions_of_one_agent(rt: cra.Runtime) -> None:
    limited(rt, rate(2, scope="agent"))
    first, second, stranger = Agent(rt), Agent(rt), Agent(rt, "agent-2")
    assert [first.run(), second.run(), second.run(), first.run()] == [
        "success",
        "success",
        "RATE_LIMITED",
        "RATE_LIMITED",
    ]
    assert stranger.run() == "success"


def test_global_scope_is_shared_by_every_session_and_agent(rt: cra.Runtime) -> None:
    limited(rt, rate(2, scope="global"))
    a, b, c = Agent(rt, "agent-1"), Agent(rt, "agent-2"), Agent(rt, "agent-3")
    assert [a.run(), b.run(), c.run()] == ["success", "success", "RATE_LIMITED"]
    assert c.resolve().denied_ids == ["api.call", "api.status"]


def test_limits_count_only_authorised_executions(rt: cra.Runtime) -> None:
    limited(
        rt,
        rate(2),
        actions=[
            action("api.call", parameters_schema={"type": "object", "required": ["q"]}),
            action("api.status"),
        ],
    )
    rt.register("api.status", lambda p: (_ for _ in ()).throw(RuntimeError("down")))
    agent = Agent(rt)
    before = snapshot(rt)["limiter"]
    with pytest.raises(cra.ValidationError):
        agent.run("api.call", parameters={})
    assert agent.run("api.teleport") == "ACTION_NOT_ALLOWED"
    assert snapshot(rt)["limiter"] == before
    assert agent.run("api.status") == "error"  # authorised, then the handler failed: it counts
    assert agent.run("api.call", parameters={"q": 1}) == "success"
    assert agent.run("api.call", parameters={"q": 1}) == "RATE_LIMITED"


def budget(max_cost: float, **params: Any) -> dict[str, Any]:
    return policy("budget", "budget", ["llm.*"], parameters={"max_cost": max_cost, **params})


def test_budget_sums_costs_of_the_first_matching_glob(rt: cra.Runtime) -> None:
    limited(
        rt,
        budget(10, costs={"llm.big": 4, "llm.*": 1}),
        actions=[action("llm.big"), action("llm.small")],
    )
    agent = Agent(rt)
    assert [agent.run("llm.big"), agent.run("llm.big"), agent.run("llm.big")] == [
        "success",
        "success",
        "BUDGET_EXCEEDED",
    ]
    assert [agent.run("llm.small"), agent.run("llm.small"), agent.run("llm.small")] == [
        "success",
        "success",
        "BUDGET_EXCEEDED",
    ]
    response = rt.execute(agent.session.session_id, agent.resolution.resolution_id, "llm.small")
    assert response.error is not None and response.error["category"] == "rate_limit"
    assert payloads(rt, agent.session.session_id, "action.denied")[-1] == {
        "action_id": "llm.small",
        "reason": "budget_exceeded",
        "policy_id": "budget",
    }


def test_budget_cost_defaults_to_one(rt: cra.Runtime) -> None:
    limited(rt, budget(2, costs={"llm.big": 5}), actions=[action("llm.small")])
    agent = Agent(rt)
    assert [agent.run("llm.small") for _ in range(3)] == ["success", "success", "BUDGET_EXCEEDED"]


def test_budget_that_one_execution_would_exceed_is_denied_at_resolve(rt: cra.Runtime) -> None:
    limited(rt, budget(5, costs={"llm.big": 4}), actions=[action("llm.big"), action("llm.small")])
    agent = Agent(rt)
    assert agent.run("llm.big") == "success"
    resolution = agent.resolve()
    assert resolution.allowed_ids == ["llm.small"]
    assert [d.to_dict() for d in resolution.denied_actions] == [
        {"action_id": "llm.big", "reason": "budget_exceeded", "policy_id": "budget"}
    ]
    (constraint,) = resolution.constraints
    assert constraint["type"] == "budget"
    assert constraint["parameters"]["max_cost"] == 5 and constraint["parameters"]["remaining"] == 1
    assert payloads(rt, agent.session.session_id, "policy.evaluated")[-2]["result"] == "budget_exceeded"


def test_budget_with_a_period_renews(rt: cra.Runtime, clock: cra.ManualClock) -> None:
    limited(rt, budget(1, period_seconds=3600), actions=[action("llm.small")])
    agent = Agent(rt)
    assert [agent.run("llm.small"), agent.run("llm.small")] == ["success", "BUDGET_EXCEEDED"]
    clock.advance(3599)
    assert agent.resolve().denied_ids == ["llm.small"]
    clock.advance(1)
    agent.resolution = agent.resolve()
    assert agent.resolution.allowed_ids == ["llm.small"]
    assert agent.run("llm.small") == "success"


def test_budget_without_a_period_lasts_the_session(rt: cra.Runtime, clock: cra.ManualClock) -> None:
    limited(rt, budget(1), actions=[action("llm.small")])
    agent = Agent(rt)
    assert agent.run("llm.small") == "success"
    clock.advance(30 * 86_400)
    agent.resolution = agent.resolve()
    assert agent.resolution.denied_ids == ["llm.small"]
    assert Agent(rt).run("llm.small") == "success"  # another session has its own budget


def test_budget_with_agent_scope_is_shared_across_sessions(rt: cra.Runtime) -> None:
    limited(rt, budget(3, scope="agent", costs={"llm.*": 2}), actions=[action("llm.small")])
    first, second = Agent(rt), Agent(rt)
    assert first.run("llm.small") == "success"
    assert second.run("llm.small") == "BUDGET_EXCEEDED"
    assert Agent(rt).resolution.denied_ids == ["llm.small"]
    assert Agent(rt, "agent-2").run("llm.small") == "success"


def test_fractional_costs_are_summed_exactly_enough(rt: cra.Runtime) -> None:
    limited(rt, budget(1, costs={"llm.*": 0.1}), actions=[action("llm.small")])
    agent = Agent(rt)
    outcomes = [agent.run("llm.small") for _ in range(11)]
    assert outcomes.count("success") in (9, 10)  # float sums of 0.1 may land just over 1.0
    assert outcomes[-1] == "BUDGET_EXCEEDED"
