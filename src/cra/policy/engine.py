"""Compiled policy plans and the verdict for one candidate action (SPEC 3.1).

At Atlas load every action gets an ``ActionPlan``: the policies that can ever match it (globs are matched
here, once), split by step and sorted by priority then manifest order, plus its limit rules and budget
costs. A verdict at resolve time is then a walk over short, pre-sorted lists.

Order of steps: ``deny`` → ``require_approval`` → limits (``rate_limit`` and ``budget`` policies, and the
action's own ``rate_limit``) → ``allow`` → default deny. Two deliberate readings of SPEC 3.1, both
fail-closed (docs/decisions/0003-policy-semantics.md):

- limits bind every action that is otherwise allowed, including one allowed with confirmation: an exhausted
  window denies it at resolve (it would be refused at execute anyway);
- an action's own ``rate_limit`` limits it but never grants it; a ``rate_limit``/``budget`` *policy* that
  matches is a permission with a limit, as SPEC says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import jsonschema_rs

from ..atlas.model import Action, Atlas, ContextPack, Policy, thaw
from .conditions import RISK_RANK, CompiledConditions, EvalContext, compile_conditions
from .glob import compile_glob, compile_globs
from .limiter import Limiter, LimitRequest

__all__ = [
    "DEFAULT_DENY_POLICY",
    "CompiledAtlas",
    "CompiledPack",
    "LimitRule",
    "PlannedPolicy",
    "Verdict",
    "compile_atlas",
    "evaluate",
    "limit_requests",
]

DEFAULT_DENY_POLICY = "cra.default-deny"
DEFAULT_DENY_REASON = "No policy allows this action"
CONFIRMATION_POLICY = "cra.action-requires-confirmation"
RATE_LIMIT_REASON = "rate_limit_exceeded"
BUDGET_REASON = "budget_exceeded"
_US = 1_000_000


@dataclass(frozen=True, slots=True)
class LimitRule:
    """One sliding window: a rate limit (``kind == "rate"``, weight 1 per call) or a budget (weights are
    costs). ``rule_id`` is stable across Atlas versions (atlas id + policy id), so limits survive upgrades."""

    rule_id: str
    kind: str
    policy_id: str
    maximum: float
    window_seconds: int | None
    scope: str

    @property
    def window_us(self) -> int | None:
        return None if self.window_seconds is None else self.window_seconds * _US

    def key(self, ctx: EvalContext) -> str:
        if self.scope == "global":
            return f"{self.rule_id}|g"
        if self.scope == "agent":
            return f"{self.rule_id}|a:{ctx.agent_id}"
        return f"{self.rule_id}|s:{ctx.session_id}"


@dataclass(frozen=True, slots=True)
class PlannedPolicy:
    """A policy as a plan step sees it."""

    policy_id: str
    conditions: CompiledConditions | None
    reason: str
    limit: LimitRule | None

    def matches(self, ctx: EvalContext, risk_rank: int) -> bool:
        return self.conditions is None or self.conditions.holds(ctx, risk_rank)


class Verdict(NamedTuple):
    """The decision for one action: ``result`` is allow, deny, requires_approval, rate_limited or
    budget_exceeded; ``limits`` are the windows (with this action's weight) that bind an allowed action."""

    result: str
    policy_id: str
    reason: str | None
    limits: tuple[tuple[LimitRule, float, float], ...] = ()  # (window, weight, used at evaluation)

    @property
    def allowed(self) -> bool:
        return self.result in ("allow", "requires_approval")


@dataclass(frozen=True, slots=True)
class ActionPlan:
    """Everything needed to decide on one action, prepared at load."""

    action: Action
    atlas_id: str
    atlas_digest: str
    risk_rank: int
    deny: tuple[PlannedPolicy, ...]
    approval: tuple[PlannedPolicy, ...]
    rate: tuple[PlannedPolicy, ...]
    budget: tuple[tuple[PlannedPolicy, float], ...]
    allow: tuple[PlannedPolicy, ...]
    own_limit: LimitRule | None
    validator: jsonschema_rs.Validator | None
    wire: Mapping[str, Any]
    time_dependent: bool
    limit_rules: tuple[LimitRule, ...] = ()


@dataclass(frozen=True, slots=True)
class CompiledPack:
    """A context pack with its blocks prepared (content type and token estimate computed once)."""

    pack: ContextPack
    atlas_id: str
    order: int
    conditions: CompiledConditions | None
    blocks: tuple[dict[str, Any], ...]
    capability_ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class CompiledAtlas:
    """An Atlas with its per-action plans, capability index and context packs."""

    atlas: Atlas
    plans: tuple[ActionPlan, ...]
    plan_by_id: Mapping[str, ActionPlan]
    capabilities: Mapping[str, frozenset[str]]
    packs: tuple[CompiledPack, ...]
    time_dependent: bool


def _reason(policy: Policy) -> str:
    reason = policy.parameters.get("reason")
    return reason if isinstance(reason, str) else f"Denied by policy {policy.policy_id}"


def _limit_rule(atlas_id: str, policy: Policy) -> LimitRule:
    params = policy.parameters
    scope = params.get("scope", "session")
    if policy.type == "rate_limit":
        return LimitRule(
            f"{atlas_id}/{policy.policy_id}",
            "rate",
            policy.policy_id,
            float(params["max_calls"]),
            int(params["window_seconds"]),
            scope,
        )
    period = params.get("period_seconds")
    return LimitRule(
        f"{atlas_id}/{policy.policy_id}",
        "budget",
        policy.policy_id,
        float(params["max_cost"]),
        int(period) if period is not None else None,
        scope,
    )


def _cost(policy: Policy, action_id: str) -> float:
    costs = policy.parameters.get("costs") or {}
    for pattern, cost in costs.items():
        if compile_glob(pattern)(action_id):
            return float(cost)
    return 1.0


_CONTENT_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".json": "application/json"}


def _content_type(path: str) -> str:
    dot = path.rfind(".")
    return _CONTENT_TYPES.get(path[dot:].lower(), "text/plain") if dot >= 0 else "text/plain"


def _wire_action(action: Action) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "action_id": action.action_id,
        "name": action.name,
        "description": action.description,
    }
    if action.parameters_schema is not None:
        wire["parameters_schema"] = thaw(action.parameters_schema)
    if action.returns_schema is not None:
        wire["returns_schema"] = thaw(action.returns_schema)
    wire["risk_tier"] = action.risk_tier
    wire["idempotent"] = action.idempotent
    return wire


def compile_atlas(atlas: Atlas) -> CompiledAtlas:
    """Prepare an Atlas for fast resolution: globs matched once, policies sorted, schemas compiled."""
    ordered = sorted(enumerate(atlas.policies), key=lambda item: (-item[1].priority, item[0]))
    compiled = []
    for _index, policy in ordered:
        if policy.type == "scope":
            continue  # accepted for schema compatibility, never evaluated (it cannot grant anything)
        matcher = compile_globs(policy.actions) if policy.actions is not None else None
        limit = _limit_rule(atlas.atlas_id, policy) if policy.type in ("rate_limit", "budget") else None
        planned = PlannedPolicy(
            policy.policy_id, compile_conditions(policy.conditions), _reason(policy), limit
        )
        compiled.append((policy, matcher, planned))

    plans = []
    any_time = False
    for action in atlas.actions:
        steps: dict[str, list[PlannedPolicy]] = {
            "deny": [],
            "require_approval": [],
            "rate_limit": [],
            "allow": [],
        }
        budget: list[tuple[PlannedPolicy, float]] = []
        time_dependent = False
        for policy, matcher, planned in compiled:
            if matcher is not None and not matcher(action.action_id):
                continue
            if planned.conditions is not None and planned.conditions.time_dependent:
                time_dependent = True
            if policy.type == "budget":
                budget.append((planned, _cost(policy, action.action_id)))
            else:
                steps[policy.type].append(planned)
        own = action.rate_limit
        own_limit = (
            LimitRule(
                f"{atlas.atlas_id}/action:{action.action_id}",
                "rate",
                f"action:{action.action_id}",
                float(own.max_calls),
                own.window_seconds,
                "session",
            )
            if own is not None
            else None
        )
        schema = action.parameters_schema
        validator = (
            jsonschema_rs.Draft202012Validator(thaw(schema), validate_formats=True, offline=True)
            if schema is not None
            else None
        )
        any_time = any_time or time_dependent
        plans.append(
            ActionPlan(
                action=action,
                atlas_id=atlas.atlas_id,
                atlas_digest=atlas.digest,
                risk_rank=RISK_RANK[action.risk_tier],
                deny=tuple(steps["deny"]),
                approval=tuple(steps["require_approval"]),
                rate=tuple(steps["rate_limit"]),
                budget=tuple(budget),
                allow=tuple(steps["allow"]),
                own_limit=own_limit,
                validator=validator,
                wire=_wire_action(action),
                time_dependent=time_dependent,
                limit_rules=tuple(
                    [p.limit for p in steps["rate_limit"] if p.limit is not None]
                    + [p.limit for p, _cost in budget if p.limit is not None]
                    + ([own_limit] if own_limit is not None else [])
                ),
            )
        )

    capabilities = {cap.capability_id: frozenset(cap.actions) for cap in atlas.capabilities}
    listed_by: dict[str, set[str]] = {}
    for cap in atlas.capabilities:
        for pack_id in cap.context_packs:
            listed_by.setdefault(pack_id, set()).add(cap.capability_id)
    packs = []
    for order, pack in enumerate(atlas.context_packs):
        conditions = compile_conditions(pack.conditions)
        any_time = any_time or bool(conditions and conditions.time_dependent)
        blocks = tuple(
            {
                "block_id": f"{pack.pack_id}/{path}",
                "source": atlas.atlas_id,
                "content_type": _content_type(path),
                "content": atlas.files[path],
                "priority": pack.priority,
                "token_estimate": -(-len(atlas.files[path]) // 4),
            }
            for path in pack.files
        )
        packs.append(
            CompiledPack(
                pack, atlas.atlas_id, order, conditions, blocks, frozenset(listed_by.get(pack.pack_id, ()))
            )
        )
    return CompiledAtlas(
        atlas=atlas,
        plans=tuple(plans),
        plan_by_id={plan.action.action_id: plan for plan in plans},
        capabilities=capabilities,
        packs=tuple(packs),
        time_dependent=any_time,
    )


def evaluate(plan: ActionPlan, ctx: EvalContext, limiter: Limiter | None) -> Verdict:
    """Decide one action for one request. With ``limiter=None`` windows are not consulted (used when the
    caller checks them itself, atomically)."""
    risk = ctx.task_rank if ctx.task_rank > plan.risk_rank else plan.risk_rank
    for policy in plan.deny:
        if policy.matches(ctx, risk):
            return Verdict("deny", policy.policy_id, policy.reason)

    limits: list[tuple[LimitRule, float]] = []
    granting: str | None = None
    for policy in plan.rate:
        if policy.matches(ctx, risk):
            assert policy.limit is not None
            limits.append((policy.limit, 1.0))
            granting = granting or policy.policy_id
    for policy, cost in plan.budget:
        if policy.matches(ctx, risk):
            assert policy.limit is not None
            limits.append((policy.limit, cost))
            granting = granting or policy.policy_id
    if plan.own_limit is not None:
        limits.append((plan.own_limit, 1.0))

    result = "allow"
    policy_id: str | None = None
    for policy in plan.approval:
        if policy.matches(ctx, risk):
            result, policy_id = "requires_approval", policy.policy_id
            break
    if policy_id is None:
        if granting is not None:
            policy_id = granting
        else:
            for policy in plan.allow:
                if policy.matches(ctx, risk):
                    policy_id = policy.policy_id
                    break
    if policy_id is None:
        return Verdict("deny", DEFAULT_DENY_POLICY, DEFAULT_DENY_REASON)
    if result == "allow" and plan.action.requires_confirmation:
        result, policy_id = "requires_approval", CONFIRMATION_POLICY

    bound: list[tuple[LimitRule, float, float]] = []
    for rule, weight in limits:
        used = limiter.usage(rule.key(ctx), rule.window_us, ctx.now_us) if limiter is not None else 0.0
        if used + weight > rule.maximum:
            if rule.kind == "rate":
                return Verdict("rate_limited", rule.policy_id, RATE_LIMIT_REASON)
            return Verdict("budget_exceeded", rule.policy_id, BUDGET_REASON)
        bound.append((rule, weight, used))
    return Verdict(result, policy_id, None, tuple(bound))


def limit_requests(verdict: Verdict, ctx: EvalContext) -> list[LimitRequest]:
    """The windows an authorised execution consumes."""
    return [
        LimitRequest(rule.key(ctx), rule.window_us, rule.maximum, weight)
        for rule, weight, _used in verdict.limits
    ]
