"""The embedded runtime: load Atlases, open sessions, resolve, execute, approve, and read the trace.

``Runtime`` is the front door of the core. It is synchronous and thread-safe; the server, CLI and MCP layers
call it and it imports none of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._approvals import ApprovalOps
from ._atlases import AtlasOps
from ._execute import ExecuteOps
from ._maintenance import MaintenanceOps
from ._resolve import ResolveOps
from ._runtime_base import Handler
from ._sessions import SessionOps
from .errors import (
    SessionNotFoundError,
)
from .trace.event import TraceEvent
from .trace.storage import write_jsonl
from .trace.verify import ChainVerification, verify_chain

__all__ = ["Handler", "Runtime"]


class Runtime(AtlasOps, SessionOps, ResolveOps, ExecuteOps, ApprovalOps, MaintenanceOps):
    """A CRA runtime embedded in this process.

    ``clock`` defaults to the system clock (pass ``cra.ManualClock()`` in tests); ``storage`` is a URL
    (``memory://``, ``jsonl:///dir``) or a storage object; ``limiter`` a URL (``memory://``) or limiter
    object; ``ids`` a callable returning fresh ids (UUIDv7 by default).

    Tracing is *deferred* by default: an operation appends its records to a bounded buffer and a background
    processor hashes and stores them in batches; reads flush first, and ``execute`` returns only once its
    ``action.*`` events are stored. ``tracing="immediate"`` hashes and stores inside every call instead.
    Other options: ``trace_buffer`` (records), ``trace_overflow`` (``block`` | ``raise`` | ``drop``),
    ``session_idle_timeout_seconds``, ``session_max_lifetime_seconds``, ``resolution_retention_seconds``,
    ``max_resolutions_per_session`` (10,000: older ones are forgotten, their trace stays),
    ``resolution_cache``. ``close()`` (or ``with Runtime() as rt:``) flushes; so does interpreter exit.
    """

    # --- trace --------------------------------------------------------------------------------------------

    def get_trace(
        self,
        session_id: str,
        *,
        since_sequence: int | None = None,
        event_type: str | None = None,
        limit: int | None = None,
        agent_id: str | None = None,
    ) -> list[TraceEvent]:
        """A session's events in sequence order (optionally after ``since_sequence``, of one type, at most
        ``limit``). Sessions of earlier processes are read from storage. With ``agent_id`` the session must be
        that agent's (``FORBIDDEN``), wherever it is held: one this process has not seen is rebuilt to check."""
        self._open()
        if agent_id is not None or session_id in self._sessions:
            self._session(session_id, agent_id)
        events = self._tracer.read(
            session_id, since_sequence=since_sequence, event_type=event_type, limit=limit
        )
        if not events and session_id not in self._sessions and self.storage.head(session_id) is None:
            raise SessionNotFoundError(f"no session {session_id!r}")
        return events

    def verify(self, session_id: str, *, agent_id: str | None = None) -> ChainVerification:
        """Verify a session's whole chain (SPEC 4.3). When this runtime wrote the session, the chain must
        also end at the head it wrote, so a truncated or extended store is caught too."""
        events = self.get_trace(session_id, agent_id=agent_id)
        return verify_chain(events, expected_head=self._tracer.known_head(session_id))

    def export_trace(self, session_id: str, path: str | Path, *, agent_id: str | None = None) -> int:
        """Write a session's trace as TRACE JSONL; returns the number of events written."""
        events = self.get_trace(session_id, agent_id=agent_id)
        write_jsonl(path, events)
        return len(events)

    def stats(self) -> dict[str, Any]:
        """Counts of what the runtime holds (sessions, resolutions, approvals, pending completions)."""
        return {
            "atlases": len(self._atlases),
            "sessions": len(self._sessions),
            "active_sessions": sum(1 for s in list(self._sessions.values()) if s.status == "active"),
            "resolutions": len(self._resolutions),
            "pending_approvals": len(self.approvals()),
            "pending_completions": len(self._pending),
            "storage": self.storage.url,
        }

    def __repr__(self) -> str:
        return f"Runtime(storage={self.storage.url!r}, atlases={list(self._atlases)})"
