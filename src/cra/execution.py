"""What ``execute`` and ``complete`` return (SPEC 3.3)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import error_class

__all__ = ["HTTP_STATUS", "ExecuteResponse"]

HTTP_STATUS = {"success": 200, "authorized": 200, "error": 200, "denied": 403, "pending_approval": 202}
"""The HTTP status each execute ``status`` is served with."""


@dataclass(slots=True)
class ExecuteResponse:
    """The outcome of an execute request.

    ``status`` is ``success`` (the handler ran; ``result`` holds its return value), ``authorized`` (no handler
    is registered: run the action yourself and report with ``Runtime.complete``), ``error`` (the handler
    failed; ``error`` says how), ``denied`` (a policy refused; ``error.code`` says which rule) or
    ``pending_approval`` (``approval_id`` must be approved first). Read-only.
    """

    execution_id: str
    session_id: str
    resolution_id: str
    action_id: str
    status: str
    timestamp: str
    trace_id: str
    result: Any = None
    error: dict[str, Any] | None = None
    approval_id: str | None = None
    duration_ms: int | None = None
    idempotency_key: str | None = None
    replayed: bool = False

    @property
    def ok(self) -> bool:
        """True for ``success`` and ``authorized``."""
        return self.status in ("success", "authorized")

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.status]

    @property
    def error_code(self) -> str | None:
        return None if self.error is None else str(self.error.get("code"))

    def raise_for_status(self) -> ExecuteResponse:
        """Raise the matching ``CRAError`` for ``denied``, ``error`` and ``pending_approval``; return self
        otherwise (handy for callers that prefer exceptions)."""
        if self.status in ("success", "authorized"):
            return self
        code = "APPROVAL_REQUIRED" if self.status == "pending_approval" else (self.error_code or "")
        message = self.error["message"] if self.error else f"approval {self.approval_id} is pending"
        raise error_class(code)(
            message, details={"execution_id": self.execution_id, "approval_id": self.approval_id}
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExecuteResponse:
        """A response from its wire form (what ``cra serve`` returns)."""
        return cls(
            execution_id=data["execution_id"],
            session_id=data["session_id"],
            resolution_id=data["resolution_id"],
            action_id=data["action_id"],
            status=data["status"],
            timestamp=data["timestamp"],
            trace_id=data["trace_id"],
            result=data.get("result"),
            error=data.get("error"),
            approval_id=data.get("approval_id"),
            duration_ms=data.get("duration_ms"),
            idempotency_key=data.get("idempotency_key"),
            replayed=bool(data.get("replayed", False)),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "carp_version": "1.0",
            "execution_id": self.execution_id,
            "session_id": self.session_id,
            "resolution_id": self.resolution_id,
            "action_id": self.action_id,
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "approval_id": self.approval_id,
            "duration_ms": self.duration_ms,
            "timestamp": self.timestamp,
            "trace_id": self.trace_id,
        }
        if self.idempotency_key is not None:
            out["idempotency_key"] = self.idempotency_key
        if self.replayed:
            out["replayed"] = True
        return out
