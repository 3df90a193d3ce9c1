"""Rebuilding a session's state from its trace (SPEC 4.6 "state reconstruction"; SPEC 4.4 restart).

The trace records every decision with what it needs to be understood later: the Atlas digests a session
started with, each request's task and context, every verdict, approvals and every execution's outcome. So a
process that opens an existing store rebuilds a session the first time it is asked for it: resolutions
(with their expiry), approvals (pending, granted, rejected, and which actions used them), request ids (for
duplicate detection), executions still awaiting an outcome, and whether the session has ended. Idempotency
responses come from the state store, since results are never written to the trace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._state import ApprovalState, IdempotencyRecord, PendingExecution, ResolutionState, SessionState
from .clock import parse_timestamp
from .execution import ExecuteResponse
from .policy.conditions import RISK_RANK
from .policy.engine import ActionPlan, CompiledAtlas, LimitRule, Verdict, evaluate
from .resolution import AllowedAction, DeniedAction, Resolution
from .trace.event import TraceEvent

__all__ = ["RebuiltSession", "rebuild_session"]

_US = 1_000_000
_ALLOWED = ("allow", "requires_approval")


@dataclass(slots=True)
class RebuiltSession:
    """A session's state as its trace tells it, plus the ids the runtime indexes globally."""

    state: SessionState
    resolutions: dict[str, ResolutionState] = field(default_factory=dict)
    approvals: dict[str, ApprovalState] = field(default_factory=dict)
    pending: dict[str, PendingExecution] = field(default_factory=dict)
    authorised: list[tuple[str, str, int]] = field(
        default_factory=list
    )  # (resolution, action, time) in order

    def consumed_windows(self) -> Iterator[tuple[LimitRule, str, float, int]]:
        """``(rule, window key, weight, time)`` of every limit window the session's authorised executions
        took, in order: what the verdict bound at that instant (recomputed without a limiter: this counts
        what was taken, it does not check it again)."""
        for resolution_id, action_id, at in self.authorised:
            res = self.resolutions.get(resolution_id)
            entry = res.allowed.get(action_id) if res is not None else None
            if res is None or entry is None:
                continue
            ctx = res.context_at(at)
            for rule, weight, _used in evaluate(entry[0], ctx, None).limits:
                yield rule, rule.key(ctx), weight, at


def rebuild_session(
    events: Sequence[TraceEvent],
    atlas_for: Callable[[str], CompiledAtlas],
    idempotency: Mapping[str, tuple[str, str, str, dict[str, Any]]],
    default_ttl_seconds: int,
) -> RebuiltSession:
    """Rebuild one session from its events (in sequence order). ``atlas_for(digest)`` returns the compiled
    Atlas a session started with; ``idempotency`` holds the stored first responses by key."""
    first = events[0]
    if first.event_type != "session.started":
        raise ValueError(f"session {first.session_id} does not start with session.started")
    started = first.payload
    atlases = tuple(atlas_for(entry["digest"]) for entry in started.get("atlases", []))
    created = parse_timestamp(first.timestamp)
    state = SessionState(
        first.session_id,
        started["agent_id"],
        started["goal"],
        {},
        atlases,
        first.trace_id,
        first.span_id,
        created,
        created,
    )
    plans: dict[str, ActionPlan] = {}
    for compiled in atlases:
        for plan in compiled.plans:
            plans.setdefault(plan.action.action_id, plan)
    out = RebuiltSession(state)
    requests: dict[str, Mapping[str, Any]] = {}  # span -> carp.request.received payload
    verdicts: dict[str, list[Mapping[str, Any]]] = {}  # span -> policy.evaluated payloads
    executions: dict[str, dict[str, Any]] = {}  # span -> what an execute recorded so far

    for event in events[1:]:
        kind, payload, span = event.event_type, event.payload, event.span_id
        at = parse_timestamp(event.timestamp)
        if kind == "carp.request.received":
            requests[span] = payload
            verdicts[span] = []
            state.request_ids.add(payload["request_id"])
            state.last_activity_us = at
        elif kind == "policy.evaluated" and span in verdicts:
            verdicts[span].append(payload)
        elif kind in ("carp.resolution.completed", "carp.resolution.cached"):
            _rebuild_resolution(
                out, plans, requests.get(span, {}), verdicts.get(span, []), payload, at, default_ttl_seconds
            )
        elif kind == "action.requested":
            executions[span] = {"payload": payload, "at": at}
            state.last_activity_us = at
            if "request_id" in payload:
                state.request_ids.add(payload["request_id"])
        elif kind == "approval.requested":
            execution = executions.get(span)
            res = out.resolutions.get(execution["payload"]["resolution_id"]) if execution else None
            if res is not None and payload["approval_id"] not in out.approvals:
                approval = ApprovalState(
                    payload["approval_id"],
                    state.session_id,
                    state.agent_id,
                    res.resolution.resolution_id,
                    (payload["action_id"],),
                    at,
                    res.expires_us,
                )
                res.approvals.append(approval)
                out.approvals[approval.approval_id] = approval
        elif kind in ("approval.granted", "approval.rejected"):
            decided = out.approvals.get(payload["approval_id"])
            if decided is not None:
                decided.status = "approved" if kind == "approval.granted" else "rejected"
                decided.approver, decided.decided_us = payload.get("approver"), at
        elif kind == "action.approved":
            execution = executions.get(span)
            if execution is not None:
                execution["approved"] = True
                _use_approval(out, execution["payload"])
                out.authorised.append(
                    (execution["payload"]["resolution_id"], execution["payload"]["action_id"], at)
                )
        elif kind in ("action.executed", "action.failed"):
            execution = executions.get(span)
            if execution is not None:
                execution["ended"] = True
                state.completed.add(execution["payload"]["execution_id"])
        elif kind == "session.ended":
            state.status, state.ended_us, state.end_reason = "ended", at, payload.get("reason")

    for span, execution in executions.items():
        if execution.get("approved") and not execution.get("ended"):
            # Authorised, outcome never recorded (reported later by the caller, or the process died while the
            # handler ran): it waits for `complete` or for the sweep to record COMPLETION_TIMEOUT.
            requested = execution["payload"]
            res = out.resolutions.get(requested["resolution_id"])
            pending = PendingExecution(
                requested["execution_id"],
                state.session_id,
                requested["resolution_id"],
                requested["action_id"],
                span,
                execution["at"],
                res.expires_us if res else execution["at"],
                requested.get("idempotency_key"),
            )
            state.pending[pending.execution_id] = pending
            out.pending[pending.execution_id] = pending
    for key, (action_id, resolution_id, params_hash, response) in idempotency.items():
        record = IdempotencyRecord(action_id, resolution_id, params_hash, ExecuteResponse(**response))
        record.finish()
        state.idempotency[key] = record
    state.resolutions.update(out.resolutions)
    return out


def _rebuild_resolution(
    out: RebuiltSession,
    plans: Mapping[str, ActionPlan],
    request: Mapping[str, Any],
    evaluated: list[Mapping[str, Any]],
    closing: Mapping[str, Any],
    at: int,
    default_ttl_seconds: int,
) -> None:
    state = out.state
    resolution_id = closing["resolution_id"]
    ttl = int(closing.get("ttl_seconds", default_ttl_seconds))
    expires = at + ttl * _US
    allowed: list[AllowedAction] = []
    denied: list[DeniedAction] = []
    allowed_state: dict[str, tuple[ActionPlan, Verdict]] = {}
    denied_state: dict[str, DeniedAction] = {}
    needs_approval: list[str] = []
    for verdict in evaluated:
        action_id, result, policy_id = verdict["action_id"], verdict["result"], verdict["policy_id"]
        plan = plans.get(action_id)
        if result in _ALLOWED and plan is not None:
            confirm = result == "requires_approval"
            if confirm:
                needs_approval.append(action_id)
            allowed.append(AllowedAction.from_wire(plan.wire, confirm))
            allowed_state[action_id] = (plan, Verdict(result, policy_id, None))
        else:
            entry = DeniedAction(action_id, "", policy_id)
            denied.append(entry)
            denied_state[action_id] = entry
    capabilities = request.get("required_capabilities") or []
    context = request.get("context") or {}
    decision = (
        "deny" if not allowed else "requires_approval" if needs_approval else "partial" if denied else "allow"
    )
    approval_id = closing.get("approval_id")
    resolution = Resolution(
        resolution_id=resolution_id,
        request_id=str(request.get("request_id", "")),
        session_id=state.session_id,
        created_us=at,
        decision_type=decision,
        decision_reason=None,
        approval_id=approval_id,
        expires_us=expires,
        allowed_actions=allowed,
        denied_actions=denied,
        context_blocks=[],
        constraints=[],
        ttl_seconds=ttl,
        trace_id=state.trace_id,
        cached=closing.get("cache_hit", False) is True,
    )
    res = ResolutionState(
        resolution,
        state.session_id,
        state.agent_id,
        RISK_RANK.get(str(request.get("risk_tier", "low")), 0),
        frozenset(capabilities),
        dict(context),
        at,
        expires,
        allowed_state,
        denied_state,
    )
    if approval_id is not None and needs_approval:
        approval = ApprovalState(
            approval_id, state.session_id, state.agent_id, resolution_id, tuple(needs_approval), at, expires
        )
        res.approvals.append(approval)
        out.approvals[approval_id] = approval
    out.resolutions[resolution_id] = res


def _use_approval(out: RebuiltSession, requested: Mapping[str, Any]) -> None:
    """An authorised execution of an action that needed approval used the newest granted approval for it."""
    res = out.resolutions.get(requested["resolution_id"])
    if res is None:
        return
    action_id = requested["action_id"]
    for approval in reversed(res.approvals):
        if action_id in approval.action_ids:
            if approval.status == "approved" and action_id not in approval.used:
                approval.used.add(action_id)
            return
