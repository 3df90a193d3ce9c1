"""Opening, reading and ending sessions (SPEC 2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._jsonvalue import check_json_value
from ._runtime_base import RuntimeBase, _string_list, _text
from ._state import SessionState
from .errors import (
    InvalidRequestError,
    UnknownAtlasError,
)
from .session import Session
from .trace.tracer import Record, Span


class SessionOps(RuntimeBase):
    """Opening, reading and ending sessions (SPEC 2)."""

    # --- sessions -----------------------------------------------------------------------------------------

    def create_session(
        self,
        agent_id: str,
        goal: str,
        atlas_ids: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Session:
        """Open a session for ``agent_id`` working towards ``goal``.

        Without ``atlas_ids`` the session sees every Atlas loaded now; with them, exactly those (each must be
        loaded, else ``UnknownAtlasError``). The session keeps these Atlas versions for its whole life.
        """
        self._open()
        _text(agent_id, "agent_id")
        _text(goal, "goal", max_len=10_000)
        ids = _string_list(atlas_ids, "atlas_ids")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidRequestError("metadata must be an object")
        meta = dict(metadata) if metadata is not None else {}
        check_json_value(meta, "/metadata")
        loaded = self._atlases
        if ids is None:
            chosen = tuple(loaded.values())
        else:
            missing = [a for a in ids if a not in loaded]
            if missing:
                raise UnknownAtlasError(
                    f"Atlas not loaded: {', '.join(missing)}", details={"atlas_ids": missing}
                )
            chosen = tuple(loaded[a] for a in dict.fromkeys(ids))
        now = self.clock.now_us()
        session_id, trace_id, root = self._new_id(), self._new_id(), self._new_id()
        state = SessionState(session_id, agent_id, goal, meta, chosen, trace_id, root, now, now)
        payload = {
            "agent_id": agent_id,
            "goal": goal,
            "atlases": [
                {"atlas_id": c.atlas.atlas_id, "version": c.atlas.version, "digest": c.atlas.digest}
                for c in chosen
            ],
        }
        self._tracer.emit(
            Span(session_id, trace_id, root, None), [Record("session.started", payload)], durable=True
        )
        self._sessions[session_id] = state
        return state.public()

    def get_session(self, session_id: str, *, agent_id: str | None = None) -> Session:
        """A snapshot of a session (``SessionNotFoundError`` if unknown)."""
        return self._session(session_id, agent_id).public()

    def sessions(self, status: str | None = None, *, agent_id: str | None = None) -> list[Session]:
        """Every session (optionally only ``active`` or ``ended`` ones, or one agent's), oldest first."""
        return [
            s.public()
            for s in list(self._sessions.values())
            if (status is None or s.status == status) and (agent_id is None or s.agent_id == agent_id)
        ]

    def end_session(
        self, session_id: str, reason: str = "completed", *, agent_id: str | None = None
    ) -> Session:
        """End a session: ``session.ended`` is recorded and the session refuses further requests.

        Executions still awaiting ``complete`` are recorded as failed (``SESSION_ENDED``) first, so nothing
        is left open in the trace.
        """
        state = self._session(session_id, agent_id)
        reason = _text(reason, "reason", max_len=64)
        with state.lock:
            self._check_active(state)
            self._end_locked(state, reason, self.clock.now_us())
        return state.public()
