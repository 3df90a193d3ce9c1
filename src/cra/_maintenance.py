"""Housekeeping the timers drive (SPEC 6): session timeouts, completion timeouts, heartbeats, forgetting
expired resolutions, pruning limiter windows. Each call is safe to run at any time and from any thread."""

from __future__ import annotations

from typing import Any

from ._runtime_base import RuntimeBase
from .trace.tracer import Record

__all__ = ["MaintenanceOps"]


class MaintenanceOps(RuntimeBase):
    """Periodic work: ``sweep`` and ``heartbeat`` (called by a ``cra.timers.TimerManager``, or by hand)."""

    def sweep(self) -> dict[str, int]:
        """Do every time-based duty that is due now and say what was done.

        - end active sessions idle longer than ``session_idle_timeout_seconds`` (reason ``idle_timeout``) or
          older than ``session_max_lifetime_seconds`` (reason ``max_lifetime``);
        - record ``action.failed`` with ``COMPLETION_TIMEOUT`` for authorised executions whose resolution
          expired before the caller reported the outcome;
        - forget resolutions (and their approvals) ``resolution_retention_seconds`` after they expired, so a
          long-running runtime does not grow without bound (until then a late call gets
          ``RESOLUTION_EXPIRED``, afterwards ``RESOLUTION_NOT_FOUND``);
        - forget ended sessions from memory ``resolution_retention_seconds`` after they ended (their trace
          stays in storage, and a later call rebuilds them from it);
        - drop limiter entries that have left their window.
        """
        self._open()
        now = self.clock.now_us()
        report = {
            "idle_timeout": 0,
            "max_lifetime": 0,
            "completion_timeouts": 0,
            "resolutions_forgotten": 0,
            "sessions_forgotten": 0,
            "limiter_entries_pruned": 0,
        }
        for state in list(self._sessions.values()):
            with state.lock:
                if state.status == "active":
                    reason = self._expiry_reason(state, now)
                    if reason is not None:
                        self._end_locked(state, reason, now)
                        report[reason] += 1
                for pending in list(state.pending.values()):
                    if now < pending.expires_us:
                        continue
                    self._record_durably(
                        state.span(pending.span_id),
                        [
                            Record(
                                "action.failed",
                                {
                                    "action_id": pending.action_id,
                                    "error_code": "COMPLETION_TIMEOUT",
                                    "error_message": "the outcome was not reported before the resolution expired",
                                },
                            )
                        ],
                    )
                    state.pending.pop(pending.execution_id, None)
                    self._pending.pop(pending.execution_id, None)
                    state.completed.add(pending.execution_id)
                    report["completion_timeouts"] += 1
                for resolution_id, res in list(state.resolutions.items()):
                    if now < res.expires_us + self.resolution_retention_us:
                        continue
                    if any(p.resolution_id == resolution_id for p in state.pending.values()):
                        continue
                    self._drop_resolution(state, resolution_id)
                    report["resolutions_forgotten"] += 1
        for state in list(self._sessions.values()):
            with state.lock:
                if state.status != "ended" or state.ended_us is None or state.pending:
                    continue
                if now < state.ended_us + self.resolution_retention_us:
                    continue
                self._forget_session(state)
                report["sessions_forgotten"] += 1
        report["limiter_entries_pruned"] = self.limiter.prune(now)
        return report

    def _forget_session(self, state: Any) -> None:
        """Drop an ended session's state from memory (caller holds its lock); storage keeps its trace."""
        for resolution_id, res in state.resolutions.items():
            self._resolutions.pop(resolution_id, None)
            for approval in res.approvals:
                self._approvals.pop(approval.approval_id, None)
        self._sessions.pop(state.session_id, None)
        self._tracer.forget(state.session_id)

    def heartbeat(self, session_id: str) -> dict[str, Any]:
        """Record ``session.heartbeat {uptime_ms, event_count}`` for an active session and return the payload
        (``event_count``: events in the chain before the heartbeat)."""
        state = self._session(session_id)
        with state.lock:
            self._check_active(state)
            self._tracer.flush()
            head = self.storage.head(session_id)
            payload = {
                "uptime_ms": max(0, (self.clock.now_us() - state.created_us) // 1000),
                "event_count": 0 if head is None else head[0] + 1,
            }
            self._tracer.emit(state.span(self._new_id()), [Record("session.heartbeat", payload)])
        return payload

    def heartbeat_all(self) -> int:
        """A heartbeat for every active session; returns how many were recorded."""
        count = 0
        for state in list(self._sessions.values()):
            if state.status != "active" or self._expiry_reason(state, self.clock.now_us()) is not None:
                continue
            self.heartbeat(state.session_id)
            count += 1
        return count
