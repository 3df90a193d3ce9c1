"""The runtime's in-memory state: sessions, resolutions, approvals, idempotency records, pending outcomes.

Every mutable object here is guarded by its session's ``lock``; the lock is taken before the tracer's own
per-session lock, never after it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from .clock import format_timestamp
from .execution import ExecuteResponse
from .policy.conditions import EvalContext
from .policy.engine import ActionPlan, CompiledAtlas, Verdict
from .resolution import AllowedAction, ContextBlock, DeniedAction, Resolution
from .session import Approval, Session
from .trace.tracer import Record, Span

__all__ = [
    "ApprovalState",
    "IdempotencyRecord",
    "PendingExecution",
    "ResolutionPlan",
    "ResolutionState",
    "SessionState",
]


@dataclass(eq=False, slots=True)
class ApprovalState:
    approval_id: str
    session_id: str
    agent_id: str
    resolution_id: str
    action_ids: tuple[str, ...]
    created_us: int
    expires_us: int
    status: str = "pending"
    used: set[str] = field(default_factory=set)
    approver: str | None = None
    note: str | None = None
    decided_us: int | None = None

    def current_status(self, now_us: int) -> str:
        if self.status == "pending" and now_us >= self.expires_us:
            return "expired"
        return self.status

    def public(self, now_us: int) -> Approval:
        return Approval(
            approval_id=self.approval_id,
            session_id=self.session_id,
            agent_id=self.agent_id,
            resolution_id=self.resolution_id,
            action_ids=list(self.action_ids),
            status=self.current_status(now_us),
            created_at=format_timestamp(self.created_us),
            expires_at=format_timestamp(self.expires_us),
            approver=self.approver,
            note=self.note,
            decided_at=format_timestamp(self.decided_us) if self.decided_us is not None else None,
        )


@dataclass(eq=False, slots=True)
class ResolutionState:
    resolution: Resolution
    session_id: str
    agent_id: str
    task_rank: int
    capabilities: frozenset[str]
    context: dict[str, Any]
    created_us: int
    expires_us: int
    allowed: dict[str, tuple[ActionPlan, Verdict]]
    denied: dict[str, DeniedAction]
    approvals: list[ApprovalState] = field(default_factory=list)

    def context_at(self, now_us: int) -> EvalContext:
        return EvalContext(
            self.task_rank, self.agent_id, self.capabilities, self.context, now_us, self.session_id
        )

    def approval_for(self, action_id: str) -> ApprovalState | None:
        """The newest approval covering the action."""
        for approval in reversed(self.approvals):
            if action_id in approval.action_ids:
                return approval
        return None


@dataclass(eq=False, slots=True)
class ResolutionPlan:
    """The reusable part of a resolution, cached per session and request shape (SPEC 3.1: same Atlas, request,
    limiter state and clock give the same resolution). Shared pieces are never mutated after creation."""

    atlas_ids: list[str]
    records: tuple[Record, ...]
    allowed: tuple[AllowedAction, ...]
    denied: tuple[DeniedAction, ...]
    blocks: tuple[ContextBlock, ...]
    constraints: tuple[dict[str, Any], ...]
    needs_approval: tuple[str, ...]
    allowed_state: dict[str, tuple[ActionPlan, Verdict]]
    denied_state: dict[str, DeniedAction]
    decision: str
    reason: str | None
    task_rank: int
    capabilities: frozenset[str]
    valid_until_us: int
    limiter_version: int | None
    cacheable: bool
    wire: dict[str, Any] = field(default_factory=dict)
    """The JSON of the plan's allowed, denied and context lists, rendered once on first use (``to_json``)."""

    def valid(self, now_us: int, limiter: Any) -> bool:
        """Still the answer at ``now_us``: before its expiry moment and with the limiter unchanged."""
        if now_us >= self.valid_until_us:
            return False
        return self.limiter_version is None or getattr(limiter, "version", None) == self.limiter_version


_RECORD_LOCK = threading.Lock()
_FINISHED = threading.Event()
_FINISHED.set()


@dataclass(eq=False, slots=True)
class IdempotencyRecord:
    action_id: str
    resolution_id: str
    parameters_hash: str
    response: ExecuteResponse | None = None
    done: threading.Event | None = None  # made only when a concurrent replay has to wait

    def finish(self) -> None:
        """Wake anyone waiting for this record's response."""
        with _RECORD_LOCK:
            event = self.done
            self.done = _FINISHED
        if event is not None and event is not _FINISHED:
            event.set()

    def wait(self) -> None:
        """Block until the first request with this key has finished."""
        with _RECORD_LOCK:
            if self.done is _FINISHED:
                return
            if self.done is None:
                self.done = threading.Event()
            event = self.done
        event.wait()


@dataclass(eq=False, slots=True)
class PendingExecution:
    execution_id: str
    session_id: str
    resolution_id: str
    action_id: str
    span_id: str
    started_us: int
    expires_us: int
    idempotency_key: str | None


@dataclass(eq=False, slots=True)
class SessionState:
    session_id: str
    agent_id: str
    goal: str
    metadata: dict[str, Any]
    atlases: tuple[CompiledAtlas, ...]
    trace_id: str
    root_span_id: str
    created_us: int
    last_activity_us: int = 0
    status: str = "active"
    ended_us: int | None = None
    end_reason: str | None = None
    request_ids: set[str] = field(default_factory=set)
    resolutions: dict[str, ResolutionState] = field(default_factory=dict)
    idempotency: dict[str, IdempotencyRecord] = field(default_factory=dict)
    pending: dict[str, PendingExecution] = field(default_factory=dict)
    completed: set[str] = field(default_factory=set)
    resolve_cache: dict[tuple[Any, ...], ResolutionPlan] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def span(self, span_id: str) -> Span:
        return Span(self.session_id, self.trace_id, span_id, self.root_span_id)

    def public(self) -> Session:
        return Session(
            session_id=self.session_id,
            agent_id=self.agent_id,
            goal=self.goal,
            atlas_ids=[c.atlas.atlas_id for c in self.atlases],
            atlases=[
                {"atlas_id": c.atlas.atlas_id, "version": c.atlas.version, "digest": c.atlas.digest}
                for c in self.atlases
            ],
            status=self.status,
            created_at=format_timestamp(self.created_us),
            trace_id=self.trace_id,
            metadata=dict(self.metadata),
            ended_at=format_timestamp(self.ended_us) if self.ended_us is not None else None,
            end_reason=self.end_reason,
        )
