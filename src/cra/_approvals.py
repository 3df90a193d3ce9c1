"""Granting and rejecting approvals (SPEC 3.3)."""

from __future__ import annotations

from typing import Any

from ._runtime_base import RuntimeBase, _text
from ._state import ApprovalState
from .errors import (
    ApprovalAlreadyDecidedError,
    ApprovalExpiredError,
    ApprovalNotFoundError,
    InvalidRequestError,
)
from .session import Approval
from .trace.tracer import Record


class ApprovalOps(RuntimeBase):
    """Granting and rejecting approvals (SPEC 3.3)."""

    # --- approvals ----------------------------------------------------------------------------------------

    def _approval(self, approval_id: Any, agent_id: str | None) -> ApprovalState:
        self._open()
        approval = self._approvals.get(approval_id) if isinstance(approval_id, str) else None
        if approval is None and isinstance(approval_id, str):
            self._restore_owner_of(approval_id)
            approval = self._approvals.get(approval_id)
        if approval is None or (agent_id is not None and approval.agent_id != agent_id):
            raise ApprovalNotFoundError(f"no approval {approval_id!r}")
        return approval

    def _decide(
        self, approval_id: str, approver: str, note: str | None, granted: bool, agent_id: str | None
    ) -> Approval:
        approval = self._approval(approval_id, agent_id)
        _text(approver, "approver")
        if note is not None and (not isinstance(note, str) or len(note) > 10_000):
            raise InvalidRequestError("note must be a string of at most 10000 characters")
        state = self._session(approval.session_id)
        with state.lock:
            now = self.clock.now_us()
            status = approval.current_status(now)
            if status == "expired":
                raise ApprovalExpiredError(f"approval {approval_id} expired with its resolution")
            if status != "pending":
                raise ApprovalAlreadyDecidedError(f"approval {approval_id} is already {status}")
            self._check_active(state)
            event = "approval.granted" if granted else "approval.rejected"
            self._record_durably(
                state.span(self._new_id()),
                [Record(event, {"approval_id": approval_id, "approver": approver})],
            )
            approval.status = "approved" if granted else "rejected"
            approval.approver, approval.note, approval.decided_us = approver, note, now
            return approval.public(now)

    def approve(
        self, approval_id: str, approver: str, note: str | None = None, *, agent_id: str | None = None
    ) -> Approval:
        """Grant an approval: each covered action may then run once on its resolution."""
        return self._decide(approval_id, approver, note, True, agent_id)

    def reject(
        self, approval_id: str, approver: str, note: str | None = None, *, agent_id: str | None = None
    ) -> Approval:
        """Reject an approval: executing a covered action is then ``denied`` with ``APPROVAL_REJECTED``."""
        return self._decide(approval_id, approver, note, False, agent_id)

    def get_approval(self, approval_id: str, *, agent_id: str | None = None) -> Approval:
        """One approval (``ApprovalNotFoundError`` if unknown or another agent's)."""
        return self._approval(approval_id, agent_id).public(self.clock.now_us())

    def approvals(
        self, session_id: str | None = None, *, status: str | None = "pending", agent_id: str | None = None
    ) -> list[Approval]:
        """Approvals, pending ones by default: of one session, of one agent, or all (for admins)."""
        now = self.clock.now_us()
        out = []
        for approval in list(self._approvals.values()):
            if session_id is not None and approval.session_id != session_id:
                continue
            if agent_id is not None and approval.agent_id != agent_id:
                continue
            public = approval.public(now)
            if status is None or public.status == status:
                out.append(public)
        return out
