"""State reconstruction (SPEC 4.6): a session's state as its trace tells it; ``cra.reconstruct_state`` is the
front door.

Sessions, resolutions, executions and approvals come from the trace alone. Limiter counts need the
session's Atlases as well, because which windows an execution fills is decided by policies the trace does
not copy: given them, the windows are computed the way the runtime's own restart does it
(``_restore.rebuild_session`` and the policy engine), per window key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._replay_trace import (
    DecideOp,
    EndOp,
    ExecuteOp,
    ResolveOp,
    StartOp,
    TraceReader,
    checked_trace,
    recorded_atlases,
)
from ._restore import rebuild_session
from .atlas import Atlas
from .clock import format_timestamp
from .errors import AtlasNotFoundError
from .policy.engine import CompiledAtlas, compile_atlas
from .trace.event import TraceEvent

__all__ = [
    "ReconstructedApproval",
    "ReconstructedExecution",
    "ReconstructedLimit",
    "ReconstructedResolution",
    "ReconstructedState",
    "reconstruct",
]

_US = 1_000_000
_DEFAULT_TTL = 3600  # the runtime's default; used only when a closing event does not record its ttl


@dataclass(frozen=True, slots=True)
class ReconstructedResolution:
    """A resolution: its decision type, allowed, denied and approval-needing action ids, and its lifetime."""

    resolution_id: str
    request_id: str | None
    decision: str
    allowed: tuple[str, ...]
    denied: tuple[str, ...]
    requires_confirmation: tuple[str, ...]
    approval_id: str | None
    created_at: str
    expires_at: str
    cached: bool

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "resolution_id": self.resolution_id,
            "request_id": self.request_id,
            "decision": self.decision,
            "allowed": list(self.allowed),
            "denied": list(self.denied),
            "requires_confirmation": list(self.requires_confirmation),
            "approval_id": self.approval_id,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "cached": self.cached,
        }


@dataclass(frozen=True, slots=True)
class ReconstructedExecution:
    """An execution. ``decision`` is how the execute call ended (success, authorized, error,
    pending_approval, ``denied:<CODE>``, ``failed:<CODE>``); ``status`` is where it stands now: the same,
    except that an ``authorized`` execution whose outcome was reported later is ``success`` or ``error``."""

    execution_id: str
    resolution_id: str
    action_id: str
    decision: str
    status: str
    error_code: str | None
    idempotency_key: str | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "execution_id": self.execution_id,
            "resolution_id": self.resolution_id,
            "action_id": self.action_id,
            "decision": self.decision,
            "status": self.status,
            "error_code": self.error_code,
            "idempotency_key": self.idempotency_key,
        }


@dataclass(frozen=True, slots=True)
class ReconstructedApproval:
    """An approval as recorded: ``pending``, ``approved`` or ``rejected`` (it expires with its resolution at
    ``expires_at``), its approver, and the actions that already ran on it."""

    approval_id: str
    resolution_id: str
    action_ids: tuple[str, ...]
    status: str
    approver: str | None
    used: tuple[str, ...]
    expires_at: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "approval_id": self.approval_id,
            "resolution_id": self.resolution_id,
            "action_ids": list(self.action_ids),
            "status": self.status,
            "approver": self.approver,
            "used": list(self.used),
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True, slots=True)
class ReconstructedLimit:
    """One limiter window this session filled: its key (as the runtime's limiter names it), the policy, the
    number of authorised executions counted in it and their total weight (calls, or cost for a budget), and
    each entry's time (epoch microseconds) and weight. For ``agent`` and ``global`` scope this is the
    session's own share of a window that other sessions may fill too."""

    key: str
    policy_id: str
    kind: str
    scope: str
    window_seconds: int | None
    count: int
    total: float
    entries: tuple[tuple[int, float], ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (entry times as TRACE timestamps)."""
        return {
            "key": self.key,
            "policy_id": self.policy_id,
            "kind": self.kind,
            "scope": self.scope,
            "window_seconds": self.window_seconds,
            "count": self.count,
            "total": self.total,
            "entries": [[format_timestamp(at), weight] for at, weight in self.entries],
        }


@dataclass(frozen=True, slots=True)
class ReconstructedState:
    """A session's state rebuilt from its trace (SPEC 4.6). ``limits`` is None when no Atlases were given
    (the trace alone cannot say which windows an execution filled)."""

    session_id: str
    agent_id: str
    goal: str
    status: str
    end_reason: str | None
    created_at: str
    ended_at: str | None
    atlases: tuple[Mapping[str, Any], ...]
    resolutions: tuple[ReconstructedResolution, ...]
    executions: tuple[ReconstructedExecution, ...]
    approvals: tuple[ReconstructedApproval, ...]
    limits: tuple[ReconstructedLimit, ...] | None
    event_count: int

    @property
    def pending(self) -> tuple[ReconstructedExecution, ...]:
        """Executions authorised for the caller to run whose outcome was never reported."""
        return tuple(e for e in self.executions if e.status == "authorized")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "session_id": self.session_id,
            "agent_id": self.agent_id,
            "goal": self.goal,
            "status": self.status,
            "end_reason": self.end_reason,
            "created_at": self.created_at,
            "ended_at": self.ended_at,
            "atlases": [dict(a) for a in self.atlases],
            "resolutions": [r.to_dict() for r in self.resolutions],
            "executions": [e.to_dict() for e in self.executions],
            "approvals": [a.to_dict() for a in self.approvals],
            "limits": None if self.limits is None else [limit.to_dict() for limit in self.limits],
            "event_count": self.event_count,
        }


class _Approval:
    """An approval being rebuilt (mutable until the walk ends)."""

    __slots__ = ("action_ids", "approval_id", "approver", "expires_us", "resolution_id", "status", "used")

    def __init__(self, approval_id: str, resolution_id: str, action_ids: tuple[str, ...], expires_us: int):
        self.approval_id, self.resolution_id, self.action_ids = approval_id, resolution_id, action_ids
        self.expires_us = expires_us
        self.status = "pending"
        self.approver: str | None = None
        self.used: list[str] = []

    def frozen(self) -> ReconstructedApproval:
        return ReconstructedApproval(
            self.approval_id,
            self.resolution_id,
            self.action_ids,
            self.status,
            self.approver,
            tuple(self.used),
            format_timestamp(self.expires_us),
        )


def reconstruct(events: Sequence[TraceEvent], atlases: Sequence[Atlas] | None) -> ReconstructedState:
    """See ``cra.reconstruct_state``."""
    checked = checked_trace(events)
    reader = TraceReader.read(checked)
    start = reader.ops[0]
    assert isinstance(start, StartOp)  # checked_trace: the first event is session.started
    status, end_reason, ended_at = "active", None, None
    resolutions: list[ReconstructedResolution] = []
    expires: dict[str, int] = {}  # resolution id -> expiry
    approvals: dict[str, _Approval] = {}
    executions: list[ExecuteOp] = []
    for op in reader.ops:
        if isinstance(op, ResolveOp) and op.closing is not None and op.resolution_id is not None:
            ttl = op.ttl_seconds if op.ttl_seconds is not None else _DEFAULT_TTL
            expires[op.resolution_id] = op.at + ttl * _US
            confirm = tuple(v.action_id for v in op.verdicts if v.result == "requires_approval")
            request_id = op.request.get("request_id")
            resolutions.append(
                ReconstructedResolution(
                    op.resolution_id,
                    request_id if isinstance(request_id, str) else None,
                    op.decision,
                    tuple(v.action_id for v in op.verdicts if v.result in ("allow", "requires_approval")),
                    tuple(v.action_id for v in op.verdicts if v.result not in ("allow", "requires_approval")),
                    confirm,
                    op.approval_id,
                    format_timestamp(op.at),
                    format_timestamp(expires[op.resolution_id]),
                    op.closing.get("cache_hit") is True,
                )
            )
            if op.approval_id is not None and confirm:
                approvals[op.approval_id] = _Approval(
                    op.approval_id, op.resolution_id, confirm, expires[op.resolution_id]
                )
        elif isinstance(op, ExecuteOp):
            executions.append(op)
            _execution_approvals(op, approvals, expires)
        elif isinstance(op, DecideOp) and op.approval_id in approvals:
            decided = approvals[op.approval_id]
            decided.status = "approved" if op.granted else "rejected"
            decided.approver = op.approver
        elif isinstance(op, EndOp):
            status, end_reason, ended_at = "ended", op.reason, format_timestamp(op.at)
        # A CompleteOp is read through its execution (``_execution``).
    return ReconstructedState(
        session_id=checked[0].session_id,
        agent_id=str(start.payload["agent_id"]),
        goal=str(start.payload["goal"]),
        status=status,
        end_reason=end_reason,
        created_at=format_timestamp(start.at),
        ended_at=ended_at,
        atlases=tuple(dict(entry) for entry in recorded_atlases(checked)),
        resolutions=tuple(resolutions),
        executions=tuple(_execution(op) for op in executions),
        approvals=tuple(a.frozen() for a in approvals.values()),
        limits=None if atlases is None else _limits(checked, atlases),
        event_count=len(checked),
    )


def _execution_approvals(op: ExecuteOp, approvals: dict[str, _Approval], expires: Mapping[str, int]) -> None:
    """An execute asked for an approval (a new one for its action, or the resolution's), or ran on one."""
    if op.outcome == "pending_approval" and op.approval_id is not None and op.approval_id not in approvals:
        approvals[op.approval_id] = _Approval(
            op.approval_id, op.resolution_id, (op.action_id,), expires.get(op.resolution_id, op.at)
        )
    elif op.outcome in ("authorized", "success", "error"):
        # As the runtime does: a run that needed approval used the newest approval covering the action.
        for approval in reversed(list(approvals.values())):
            if approval.resolution_id == op.resolution_id and op.action_id in approval.action_ids:
                if approval.status == "approved" and op.action_id not in approval.used:
                    approval.used.append(op.action_id)
                return


def _execution(op: ExecuteOp) -> ReconstructedExecution:
    status, code = op.outcome or "unrecorded", op.code
    if op.outcome == "authorized" and op.completion is not None:
        status = "success" if op.completion.error_code is None else "error"
        code = op.completion.error_code
    key = op.requested.get("idempotency_key")
    return ReconstructedExecution(
        op.execution_id,
        op.resolution_id,
        op.action_id,
        op.label,
        status,
        code,
        key if isinstance(key, str) else None,
    )


def _limits(events: Sequence[TraceEvent], atlases: Sequence[Atlas]) -> tuple[ReconstructedLimit, ...]:
    by_digest = {atlas.digest: atlas for atlas in atlases}

    def atlas_for(digest: str) -> CompiledAtlas:
        atlas = by_digest.get(digest)
        if atlas is None:
            raise AtlasNotFoundError(
                f"the session ran with Atlas digest {digest}, which was not given", details={"digest": digest}
            )
        return compile_atlas(atlas)

    rebuilt = rebuild_session(events, atlas_for, {}, _DEFAULT_TTL)
    found: dict[str, tuple[Any, list[tuple[int, float]]]] = {}
    for rule, key, weight, at in rebuilt.consumed_windows():
        found.setdefault(key, (rule, []))[1].append((at, weight))
    return tuple(
        ReconstructedLimit(
            key,
            rule.policy_id,
            rule.kind,
            rule.scope,
            rule.window_seconds,
            len(entries),
            sum(weight for _at, weight in entries),
            tuple(entries),
        )
        for key, (rule, entries) in found.items()
    )
