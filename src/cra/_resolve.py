"""Resolving CARP requests: candidates, verdicts, context, constraints (SPEC 3.1, 3.2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._context import select_context
from ._jsonvalue import check_json_value
from ._requests import check_skew, parse_request
from ._runtime_base import _US, RuntimeBase, _string_list, _text
from ._state import ApprovalState, ResolutionPlan, ResolutionState, SessionState
from .errors import (
    DuplicateRequestError,
    ForbiddenError,
    InvalidRequestError,
    UnknownAtlasError,
    UnknownCapabilityError,
)
from .policy.conditions import RISK_RANK, RISK_TIERS, EvalContext
from .policy.engine import LimitRule, Verdict, evaluate
from .resolution import AllowedAction, ContextBlock, DeniedAction, Resolution
from .trace.canonical import canonical_json
from .trace.tracer import Record, prepared

__all__ = ["ResolveOps"]

_CACHE_PER_SESSION = 256  # distinct request shapes kept per session (cleared, not evicted, when full)
_MINUTE_US = 60_000_000
_FOREVER = 2**62


class ResolveOps(RuntimeBase):
    """Resolving CARP requests: candidates, verdicts, context, constraints (SPEC 3.1, 3.2)."""

    # --- resolve ------------------------------------------------------------------------------------------

    def resolve(
        self,
        session_id: str,
        goal: str | None = None,
        *,
        risk_tier: str = "low",
        required_capabilities: Sequence[str] | None = None,
        context_hints: Sequence[str] | None = None,
        context: Mapping[str, Any] | None = None,
        atlas_ids: Sequence[str] | None = None,
        request_id: str | None = None,
        agent_id: str | None = None,
    ) -> Resolution:
        """Decide which actions and which context this session may use for ``goal`` (SPEC 3.1, 3.2).

        ``goal`` defaults to the session's goal; ``risk_tier`` is the task's (low, medium, high,
        critical); ``required_capabilities`` narrows the candidates to those capabilities' actions;
        ``context_hints`` naming a context pack force it in; ``context`` feeds ``context_matches``
        conditions (and ``max_context_tokens`` caps injected context); ``atlas_ids`` narrows to some of the
        session's Atlases. Every decision is recorded in the trace before this returns.
        """
        state = self._session(session_id, agent_id)
        if not isinstance(risk_tier, str) or risk_tier not in RISK_RANK:
            raise InvalidRequestError(
                f"risk_tier must be one of {', '.join(RISK_TIERS)}",
                details={"errors": [{"pointer": "/task/risk_tier", "message": "unknown risk tier"}]},
            )
        if context is not None and not isinstance(context, Mapping):
            raise InvalidRequestError(
                "context must be an object",
                details={"errors": [{"pointer": "/context", "message": "object"}]},
            )
        ctx_dict: dict[str, Any] = {}
        if context:  # the common call names none of the options: nothing to check then
            ctx_dict = dict(context)
            check_json_value(ctx_dict, "/context")
        return self._resolve(
            state,
            request_id=_text(request_id, "request_id") if request_id is not None else self._new_id(),
            goal=_text(goal, "goal", max_len=10_000) if goal is not None else state.goal,
            risk_tier=risk_tier,
            capabilities=None
            if required_capabilities is None
            else _string_list(required_capabilities, "required_capabilities"),
            hints=[] if context_hints is None else (_string_list(context_hints, "context_hints") or []),
            context=ctx_dict,
            atlas_ids=None if atlas_ids is None else _string_list(atlas_ids, "atlas_ids"),
        )

    def resolve_request(self, request: Mapping[str, Any], *, agent_id: str | None = None) -> Resolution:
        """Resolve a CARP request object (spec/schemas/carp-request.schema.json, ``operation: "resolve"``).

        Checks, in order: the schema (``INVALID_REQUEST`` with every JSON pointer), the session
        (``SESSION_NOT_FOUND``, ``SESSION_ENDED``, ``FORBIDDEN`` when ``requester.agent_id`` is not its owner),
        ``request_id`` unique in the session (``DUPLICATE_REQUEST``), and the timestamp (``CLOCK_SKEW``).
        """
        req = parse_request(request, "resolve")
        requester, task = req["requester"], req["task"]
        if agent_id is not None and requester["agent_id"] != agent_id:
            raise ForbiddenError("requester.agent_id is not the authenticated agent")
        state = self._session(requester["session_id"], requester["agent_id"])
        self._check_active(state)
        if req["request_id"] in state.request_ids:
            raise DuplicateRequestError(f"request_id {req['request_id']} was already used in this session")
        check_skew(req["timestamp"], self.clock.now_us(), self.clock_skew_seconds)
        return self._resolve(
            state,
            request_id=req["request_id"],
            goal=task["goal"],
            risk_tier=task.get("risk_tier", "low"),
            capabilities=task.get("required_capabilities"),
            hints=task.get("context_hints") or [],
            context=req.get("context") or {},
            atlas_ids=req.get("atlas_ids"),
        )

    def _resolve(
        self,
        state: SessionState,
        *,
        request_id: str,
        goal: str,
        risk_tier: str,
        capabilities: list[str] | None,
        hints: list[str],
        context: dict[str, Any],
        atlas_ids: list[str] | None,
    ) -> Resolution:
        max_tokens = context.get("max_context_tokens")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0
        ):
            raise InvalidRequestError(
                "context.max_context_tokens must be a non-negative integer",
                details={"errors": [{"pointer": "/context/max_context_tokens", "message": "integer >= 0"}]},
            )
        with state.lock:
            self._check_active(state)
            if request_id in state.request_ids:
                raise DuplicateRequestError(f"request_id {request_id} was already used in this session")
            now = self.clock.now_us()
            key = (
                risk_tier,
                tuple(capabilities) if capabilities else None,
                tuple(hints),
                canonical_json(context) if context else None,
                tuple(atlas_ids) if atlas_ids is not None else None,
            )
            plan = state.resolve_cache.get(key)
            cached = plan is not None and plan.valid(now, self.limiter)
            if plan is None or not cached:
                plan = self._plan(state, now, risk_tier, capabilities, hints, context, atlas_ids, max_tokens)
                if self.resolution_cache and plan.cacheable:
                    if len(state.resolve_cache) >= _CACHE_PER_SESSION:
                        state.resolve_cache.clear()
                    state.resolve_cache[key] = plan
            return self._assemble(
                state, plan, cached, now, request_id, goal, risk_tier, capabilities, hints, context
            )

    def _assemble(
        self,
        state: SessionState,
        plan: ResolutionPlan,
        cached: bool,
        now: int,
        request_id: str,
        goal: str,
        risk_tier: str,
        capabilities: list[str] | None,
        hints: list[str],
        context: dict[str, Any],
    ) -> Resolution:
        """The per-call part of a resolution: ids, approval, records, state. Everything else is the plan's."""
        resolution_id = self._new_id()
        ttl = self.resolution_ttl_seconds
        expires = now + ttl * _US
        constraints = list(plan.constraints)
        approval: ApprovalState | None = None
        if plan.needs_approval:
            approval = ApprovalState(
                self._new_id(),
                state.session_id,
                state.agent_id,
                resolution_id,
                plan.needs_approval,
                now,
                expires,
            )
            constraints.append(
                {
                    "constraint_id": approval.approval_id,
                    "type": "require_approval",
                    "parameters": {"approval_id": approval.approval_id, "actions": list(plan.needs_approval)},
                }
            )
        received = Record(
            "carp.request.received",
            {
                "request_id": request_id,
                "operation": "resolve",
                "goal": goal,
                "atlas_ids": plan.atlas_ids,
                "risk_tier": risk_tier,
                "required_capabilities": capabilities,
                "context_hints": hints,
                "context": context,
            },
        )
        # Extension keys after the required ones (docs/decisions/0004): the approval id and the ttl make the
        # trace alone enough to rebuild the session (state reconstruction, restart on the same storage).
        if cached:
            payload: dict[str, Any] = {"resolution_id": resolution_id, "cache_hit": True, "ttl_seconds": ttl}
            if approval is not None:
                payload["approval_id"] = approval.approval_id
            closing = Record("carp.resolution.cached", payload)
        else:
            closing = Record(
                "carp.resolution.completed",
                {
                    "resolution_id": resolution_id,
                    "request_id": request_id,
                    "decision_type": plan.decision,
                    "allowed_count": len(plan.allowed),
                    "denied_count": len(plan.denied),
                    "context_block_count": len(plan.blocks),
                    "ttl_seconds": ttl,
                    **({"approval_id": approval.approval_id} if approval is not None else {}),
                },
            )
        resolution = Resolution(  # positional: this runs on every call, keywords cost here
            resolution_id,
            request_id,
            state.session_id,
            now,
            plan.decision,
            plan.reason,
            approval.approval_id if approval else None,
            expires,
            list(plan.allowed),
            list(plan.denied),
            list(plan.blocks),
            constraints,
            ttl,
            state.trace_id,
            cached,
            plan.wire,
        )
        # Record first: if storage refuses, the runtime's state is left exactly as it was.
        self._tracer.emit(state.span(self._new_id()), [received, *plan.records, closing])
        res_state = ResolutionState(
            resolution,
            state.session_id,
            state.agent_id,
            plan.task_rank,
            plan.capabilities,
            context,
            now,
            expires,
            plan.allowed_state,
            plan.denied_state,
        )
        if approval is not None:
            res_state.approvals.append(approval)
            self._approvals[approval.approval_id] = approval
        state.request_ids.add(request_id)
        state.last_activity_us = now
        state.resolutions[resolution_id] = res_state
        self._evict_oldest_resolutions(state)
        self._resolutions[resolution_id] = res_state
        return resolution

    def _plan(
        self,
        state: SessionState,
        now: int,
        risk_tier: str,
        capabilities: list[str] | None,
        hints: list[str],
        context: dict[str, Any],
        atlas_ids: list[str] | None,
        max_tokens: int | None,
    ) -> ResolutionPlan:
        """Evaluate every candidate and choose the context: the part of a resolution a cache can reuse."""
        # The limiter's version is read before any usage: a change that lands while we evaluate (another
        # thread or process) then makes this plan stale at once instead of being cached as if seen.
        version_before = getattr(self.limiter, "version", None)
        atlases = state.atlases
        if atlas_ids is not None:
            own = {c.atlas.atlas_id for c in atlases}
            unknown = [a for a in atlas_ids if a not in own]
            if unknown:
                raise UnknownAtlasError(
                    f"not an Atlas of this session: {', '.join(unknown)}", details={"atlas_ids": unknown}
                )
            wanted = set(atlas_ids)
            atlases = tuple(c for c in atlases if c.atlas.atlas_id in wanted)
        selected: frozenset[str] | None = None
        allowed_ids: set[str] | None = None
        if capabilities:  # an empty list filters nothing, like no list
            known: dict[str, set[str]] = {}
            for compiled in atlases:
                for cap_id, actions in compiled.capabilities.items():
                    known.setdefault(cap_id, set()).update(actions)
            unknown = [c for c in capabilities if c not in known]
            if unknown:
                raise UnknownCapabilityError(
                    f"unknown capability: {', '.join(unknown)}", details={"capabilities": unknown}
                )
            selected = frozenset(capabilities)
            allowed_ids = set().union(*(known[c] for c in capabilities))

        ctx = EvalContext(
            RISK_RANK[risk_tier], state.agent_id, selected or frozenset(), context, now, state.session_id
        )
        records: list[Record] = []
        allowed: list[AllowedAction] = []
        denied: list[DeniedAction] = []
        allowed_state: dict[str, tuple[Any, Verdict]] = {}
        denied_state: dict[str, DeniedAction] = {}
        needs_approval: list[str] = []
        windows: dict[str, dict[str, Any]] = {}
        consulted: dict[str, LimitRule] = {}
        time_dependent = False
        for compiled in atlases:
            time_dependent = time_dependent or compiled.time_dependent
            for plan in compiled.plans:
                action_id = plan.action.action_id
                if allowed_ids is not None and action_id not in allowed_ids:
                    continue
                for rule in plan.limit_rules:
                    consulted[rule.key(ctx)] = rule
                verdict = evaluate(plan, ctx, self.limiter)
                records.append(
                    prepared(
                        "policy.evaluated",
                        {"policy_id": verdict.policy_id, "result": verdict.result, "action_id": action_id},
                    )
                )
                if not verdict.allowed:
                    entry = DeniedAction(action_id, verdict.reason or "", verdict.policy_id)
                    denied.append(entry)
                    denied_state[action_id] = entry
                    continue
                confirm = verdict.result == "requires_approval"
                if confirm:
                    needs_approval.append(action_id)
                allowed.append(self._allowed_action(plan.wire, confirm, verdict, ctx, windows, action_id))
                allowed_state[action_id] = (plan, verdict)

        blocks: list[ContextBlock] = []
        for block, injected in select_context(atlases, ctx, selected, frozenset(hints), max_tokens):
            if injected:
                blocks.append(ContextBlock(**block))
                records.append(
                    prepared(
                        "context.injected",
                        {
                            "block_id": block["block_id"],
                            "source": block["source"],
                            "token_count": block["token_estimate"],
                        },
                    )
                )
            else:
                records.append(
                    prepared(
                        "context.redacted",
                        {"block_id": block["block_id"], "redaction_reason": "token_budget"},
                    )
                )

        if not allowed:
            decision, reason = "deny", "No actions are allowed"
        elif needs_approval:
            decision, reason = "requires_approval", "Approval required before execution"
        elif denied:
            decision, reason = "partial", "Some actions are denied by policy"
        else:
            decision, reason = "allow", None

        # When may this answer change? The next minute (time windows), the next limiter change (version),
        # or when the oldest entry of a consulted window leaves it (usage drops).
        valid_until = ((now // _MINUTE_US) + 1) * _MINUTE_US if time_dependent else _FOREVER
        limiter_version: int | None = None
        cacheable = True
        if consulted:
            limiter_version = version_before
            next_change = getattr(self.limiter, "next_change", None)
            if limiter_version is None or next_change is None:
                cacheable = False  # a limiter shared with other processes: its state can change unseen
            else:
                for key, rule in consulted.items():
                    moment = next_change(key, rule.window_us)
                    if moment is not None and moment < valid_until:
                        valid_until = moment
        return ResolutionPlan(
            atlas_ids=[c.atlas.atlas_id for c in atlases],
            records=tuple(records),
            allowed=tuple(allowed),
            denied=tuple(denied),
            blocks=tuple(blocks),
            constraints=tuple(windows.values()),
            needs_approval=tuple(needs_approval),
            allowed_state=allowed_state,
            denied_state=denied_state,
            decision=decision,
            reason=reason,
            task_rank=ctx.task_rank,
            capabilities=ctx.capabilities,
            valid_until_us=valid_until,
            limiter_version=limiter_version,
            cacheable=cacheable,
        )

    @staticmethod
    def _allowed_action(
        wire: Mapping[str, Any],
        confirm: bool,
        verdict: Verdict,
        ctx: EvalContext,
        windows: dict[str, dict[str, Any]],
        action_id: str,
    ) -> AllowedAction:
        tightest: dict[str, int] | None = None
        for rule, _weight, used in verdict.limits:
            constraint = windows.get(rule.rule_id)
            if constraint is None:
                if rule.kind == "rate":
                    params: dict[str, Any] = {
                        "max_calls": int(rule.maximum),
                        "window_seconds": rule.window_seconds,
                        "remaining": max(0, int(rule.maximum - used)),
                    }
                    ctype = "rate_limit"
                else:
                    params = {
                        "max_cost": rule.maximum,
                        "period_seconds": rule.window_seconds,
                        "spent": used,
                        "remaining": max(0.0, rule.maximum - used),
                    }
                    ctype = "budget"
                params.update({"scope": rule.scope, "policy_id": rule.policy_id, "actions": []})
                constraint = windows[rule.rule_id] = {
                    "constraint_id": rule.policy_id,
                    "type": ctype,
                    "parameters": params,
                }
            constraint["parameters"]["actions"].append(action_id)
            if rule.kind == "rate":
                remaining = max(0, int(rule.maximum - used))
                if tightest is None or remaining < tightest["remaining"]:
                    tightest = {
                        "max_calls": int(rule.maximum),
                        "window_seconds": int(rule.window_seconds or 0),
                        "remaining": remaining,
                    }
        return AllowedAction.from_wire(wire, confirm, tightest)
