"""What ``resolve`` returns (SPEC 3.1, spec/schemas/carp-resolution.schema.json)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from .clock import format_timestamp

__all__ = ["AllowedAction", "ContextBlock", "DeniedAction", "Resolution"]


@dataclass(frozen=True, slots=True)
class AllowedAction:
    """An action the agent may execute under this resolution (read-only)."""

    action_id: str
    name: str
    description: str
    risk_tier: str
    requires_confirmation: bool
    idempotent: bool
    parameters_schema: dict[str, Any] | None = None
    returns_schema: dict[str, Any] | None = None
    rate_limit: dict[str, int] | None = None

    @classmethod
    def from_wire(
        cls, wire: Mapping[str, Any], confirm: bool, rate_limit: dict[str, int] | None = None
    ) -> AllowedAction:
        """An allowed action from an action's wire form (``ActionPlan.wire``)."""
        return cls(
            action_id=wire["action_id"],
            name=wire["name"],
            description=wire["description"],
            risk_tier=wire["risk_tier"],
            requires_confirmation=confirm,
            idempotent=wire["idempotent"],
            parameters_schema=wire.get("parameters_schema"),
            returns_schema=wire.get("returns_schema"),
            rate_limit=rate_limit,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action_id": self.action_id,
            "name": self.name,
            "description": self.description,
        }
        if self.parameters_schema is not None:
            out["parameters_schema"] = self.parameters_schema
        if self.returns_schema is not None:
            out["returns_schema"] = self.returns_schema
        out["risk_tier"] = self.risk_tier
        out["requires_confirmation"] = self.requires_confirmation
        out["idempotent"] = self.idempotent
        if self.rate_limit is not None:
            out["rate_limit"] = dict(self.rate_limit)
        return out


@dataclass(frozen=True, slots=True)
class DeniedAction:
    """An action refused by policy, with the reason and the policy that refused it (read-only)."""

    action_id: str
    reason: str
    policy_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"action_id": self.action_id, "reason": self.reason, "policy_id": self.policy_id}


@dataclass(frozen=True, slots=True)
class ContextBlock:
    """One context document injected into the agent's context (read-only)."""

    block_id: str
    source: str
    content_type: str
    content: str
    priority: int
    token_estimate: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "block_id": self.block_id,
            "source": self.source,
            "content_type": self.content_type,
            "content": self.content,
            "priority": self.priority,
            "token_estimate": self.token_estimate,
        }


@dataclass(slots=True)
class Resolution:
    """A CARP resolution: which actions are allowed or denied, the context to inject, the constraints, and
    when it expires. ``to_dict()`` is the wire JSON. Read-only."""

    resolution_id: str
    request_id: str
    session_id: str
    created_us: int
    decision_type: str
    decision_reason: str | None
    approval_id: str | None
    expires_us: int
    allowed_actions: list[AllowedAction]
    denied_actions: list[DeniedAction]
    context_blocks: list[ContextBlock]
    constraints: list[dict[str, Any]]
    ttl_seconds: int
    trace_id: str
    cached: bool = False
    _wire: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    # The runtime's shared rendering of the lists, which are the same for every resolution of one plan.

    @property
    def timestamp(self) -> str:
        """When the resolution was made (``YYYY-MM-DDTHH:MM:SS.ffffffZ``)."""
        return format_timestamp(self.created_us)

    @property
    def expires_at(self) -> str:
        """When it expires (``timestamp`` + ``ttl_seconds``)."""
        return format_timestamp(self.expires_us)

    @property
    def allowed_ids(self) -> list[str]:
        """The allowed action ids, in order."""
        return [a.action_id for a in self.allowed_actions]

    @property
    def denied_ids(self) -> list[str]:
        """The denied action ids, in order."""
        return [d.action_id for d in self.denied_actions]

    def allowed(self, action_id: str) -> AllowedAction | None:
        """The allowed action with this id, or None."""
        for action in self.allowed_actions:
            if action.action_id == action_id:
                return action
        return None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], session_id: str = "") -> Resolution:
        """A resolution from its wire form (what ``cra serve`` returns); the wire form does not carry the
        session id, so pass it when you know it."""
        from .clock import parse_timestamp

        decision = data["decision"]
        return cls(
            resolution_id=data["resolution_id"],
            request_id=data["request_id"],
            session_id=session_id,
            created_us=parse_timestamp(data["timestamp"]),
            decision_type=decision["type"],
            decision_reason=decision.get("reason"),
            approval_id=decision.get("approval_id"),
            expires_us=parse_timestamp(decision["expires_at"]),
            allowed_actions=[
                AllowedAction.from_wire(a, a["requires_confirmation"], a.get("rate_limit"))
                for a in data["allowed_actions"]
            ],
            denied_actions=[DeniedAction(**d) for d in data["denied_actions"]],
            context_blocks=[ContextBlock(**b) for b in data["context_blocks"]],
            constraints=[dict(c) for c in data["constraints"]],
            ttl_seconds=data["ttl_seconds"],
            trace_id=data["trace_id"],
        )

    def to_json(self) -> bytes:
        """The wire JSON (the same document as ``to_dict()``). Resolutions made from one cached plan share
        the rendering of their allowed, denied and context lists, so only the per-call fields are encoded
        each time (a resolution carrying its context documents is mostly those lists)."""
        wire = self._wire
        if wire is None:
            return orjson.dumps(self.to_dict())
        if not wire:  # first use of this plan: render once (a race renders twice, identically)
            wire["allowed"] = orjson.Fragment(orjson.dumps([a.to_dict() for a in self.allowed_actions]))
            wire["denied"] = orjson.Fragment(orjson.dumps([d.to_dict() for d in self.denied_actions]))
            wire["blocks"] = orjson.Fragment(orjson.dumps([b.to_dict() for b in self.context_blocks]))
        # The constraints go in as they are: orjson only reads them, so the defensive copy is not needed.
        return orjson.dumps(self._document(wire["blocks"], wire["allowed"], wire["denied"], self.constraints))

    def to_dict(self) -> dict[str, Any]:
        return self._document(
            [b.to_dict() for b in self.context_blocks],
            [a.to_dict() for a in self.allowed_actions],
            [d.to_dict() for d in self.denied_actions],
            [_copy(c) for c in self.constraints],
        )

    def _document(self, blocks: Any, allowed: Any, denied: Any, constraints: Any) -> dict[str, Any]:
        return {
            "carp_version": "1.0",
            "resolution_id": self.resolution_id,
            "request_id": self.request_id,
            "timestamp": self.timestamp,
            "decision": {
                "type": self.decision_type,
                "reason": self.decision_reason,
                "approval_id": self.approval_id,
                "expires_at": self.expires_at,
            },
            "context_blocks": blocks,
            "allowed_actions": allowed,
            "denied_actions": denied,
            "constraints": constraints,
            "ttl_seconds": self.ttl_seconds,
            "trace_id": self.trace_id,
        }


def _copy(value: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
        for k, v in value.items()
    }
