"""Sessions and approvals as callers see them (SPEC 2, 3.3)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Approval", "Session"]


@dataclass(slots=True)
class Session:
    """A snapshot of a session: who, for what goal, over which Atlases, and whether it is still active."""

    session_id: str
    agent_id: str
    goal: str
    atlas_ids: list[str]
    status: str
    created_at: str
    trace_id: str
    metadata: dict[str, Any] = field(default_factory=dict)
    ended_at: str | None = None
    end_reason: str | None = None
    atlases: list[dict[str, str]] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.status == "active"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Session:
        """A session from its wire form (what ``cra serve`` returns)."""
        return cls(
            session_id=data["session_id"],
            agent_id=data["agent_id"],
            goal=data["goal"],
            atlas_ids=list(data["atlas_ids"]),
            status=data["status"],
            created_at=data["created_at"],
            trace_id=data["trace_id"],
            metadata=dict(data.get("metadata") or {}),
            ended_at=data.get("ended_at"),
            end_reason=data.get("end_reason"),
            atlases=[dict(a) for a in data.get("atlases") or []],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "agent_id": self.agent_id,
            "goal": self.goal,
            "atlas_ids": list(self.atlas_ids),
            "atlases": [dict(a) for a in self.atlases],
            "status": self.status,
            "created_at": self.created_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "trace_id": self.trace_id,
            "metadata": dict(self.metadata),
        }


@dataclass(slots=True)
class Approval:
    """An approval request: which actions of which resolution it covers, and where it stands
    (``pending``, ``approved``, ``rejected``, ``expired``)."""

    approval_id: str
    session_id: str
    agent_id: str
    resolution_id: str
    action_ids: list[str]
    status: str
    created_at: str
    expires_at: str
    approver: str | None = None
    note: str | None = None
    decided_at: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Approval:
        """An approval from its wire form (what ``cra serve`` returns)."""
        return cls(
            approval_id=data["approval_id"],
            session_id=data["session_id"],
            agent_id=data["agent_id"],
            resolution_id=data["resolution_id"],
            action_ids=list(data["action_ids"]),
            status=data["status"],
            created_at=data["created_at"],
            expires_at=data["expires_at"],
            approver=data.get("approver"),
            note=data.get("note"),
            decided_at=data.get("decided_at"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "approval_id": self.approval_id,
            "session_id": self.session_id,
            "agent_id": self.agent_id,
            "resolution_id": self.resolution_id,
            "action_ids": list(self.action_ids),
            "status": self.status,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "approver": self.approver,
            "note": self.note,
            "decided_at": self.decided_at,
        }
