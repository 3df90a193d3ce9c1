"""Shared state and guards of the runtime; the concept modules (_atlases, _sessions, _resolve,
_execute, _approvals) add the operations."""

from __future__ import annotations

import hashlib
import importlib
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, Self

from ._ids import IdGenerator, uuid7_ids
from ._jsonvalue import check_json_value
from ._restore import RebuiltSession, rebuild_session
from ._state import ApprovalState, PendingExecution, ResolutionState, SessionState
from ._state_store import StateStore, open_state_store
from .atlas import DEFAULT_MAX_FILE_BYTES, Atlas, load_atlas
from .atlas.validate import Problem
from .clock import Clock, SystemClock
from .errors import (
    AtlasNotFoundError,
    ForbiddenError,
    InvalidAtlasError,
    InvalidRequestError,
    RuntimeClosedError,
    SessionEndedError,
    SessionNotFoundError,
)
from .policy.engine import CompiledAtlas, compile_atlas
from .policy.limiter import GuardedLimiter, Limiter, LimitRequest, open_limiter
from .trace.canonical import canonical_json
from .trace.processor import DeferredTracer
from .trace.storage import TraceStorage, open_storage
from .trace.tracer import Record, Span, Tracer, TraceSink

__all__ = ["Handler", "RuntimeBase"]

Handler = Callable[[dict[str, Any]], Any]
"""An action handler: called with the (validated) parameters, returns a JSON value or raises."""

_US = 1_000_000
_ACTION_ID = re.compile(r"^[a-z][a-z0-9]*(\.[a-z][a-z0-9]*)+$")
_EXECUTOR = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_MAX_ID = 255


def _text(value: Any, name: str, *, max_len: int = _MAX_ID, pointer: str | None = None) -> str:
    where = pointer if pointer is not None else f"/{name}"
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise InvalidRequestError(
            f"{name} must be a non-empty string of at most {max_len} characters",
            details={"errors": [{"pointer": where, "message": f"{name} must be a non-empty string"}]},
        )
    if not value.isascii():
        check_json_value(value, where)  # lone surrogates: such a string could never be recorded
    return value


def _string_list(value: Any, name: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidRequestError(
            f"{name} must be a list of strings",
            details={"errors": [{"pointer": f"/{name}", "message": "list of strings"}]},
        )
    return list(value)


def _params_hash(parameters: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(parameters)).hexdigest()


class RuntimeBase:
    """The runtime's state and the checks every operation shares."""

    def __init__(
        self,
        clock: Clock | None = None,
        storage: str | TraceStorage = "memory://",
        *,
        limiter: str | Limiter | None = None,
        ids: IdGenerator | None = None,
        resolution_ttl_seconds: int = 3600,
        clock_skew_seconds: float = 300,
        max_context_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        import_executors: bool = True,
        tracing: str = "deferred",
        session_idle_timeout_seconds: float | None = None,
        session_max_lifetime_seconds: float | None = None,
        resolution_retention_seconds: float = 3600,
        max_resolutions_per_session: int = 10_000,
        resolution_cache: bool = True,
        trace_buffer: int = 65_536,
        trace_overflow: str = "block",
    ) -> None:
        if tracing not in ("immediate", "deferred"):
            raise ValueError("tracing must be 'immediate' or 'deferred'")
        if not 1 <= resolution_ttl_seconds <= 86_400:
            raise ValueError("resolution_ttl_seconds must be between 1 and 86400")
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.storage = open_storage(storage)
        # Limits live where the state lives: with SQLite storage they survive restarts in the same file.
        if limiter is None and self.storage.url.startswith("sqlite:"):
            limiter = self.storage.url
        self.limiter = GuardedLimiter(open_limiter(limiter))
        self._new_id: IdGenerator = ids if ids is not None else uuid7_ids
        self.resolution_ttl_seconds = resolution_ttl_seconds
        self.clock_skew_seconds = clock_skew_seconds
        self.max_context_file_bytes = max_context_file_bytes
        self.import_executors = import_executors
        self._tracer: TraceSink = (
            Tracer(self.storage, self.clock, self._new_id)
            if tracing == "immediate"
            else DeferredTracer(
                self.storage, self.clock, self._new_id, max_buffered=trace_buffer, overflow=trace_overflow
            )
        )
        self.tracing = tracing
        self.resolution_cache = resolution_cache
        for name, value in (
            ("session_idle_timeout_seconds", session_idle_timeout_seconds),
            ("session_max_lifetime_seconds", session_max_lifetime_seconds),
        ):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive (or None for no limit)")
        if resolution_retention_seconds < 0:
            raise ValueError("resolution_retention_seconds must not be negative")
        if max_resolutions_per_session < 1:
            raise ValueError("max_resolutions_per_session must be at least 1")
        # An agent resolving in a loop must not grow the runtime without bound (~2 KB a resolution for its
        # TTL): beyond this many, a session's oldest resolutions are forgotten (their trace stays).
        self.max_resolutions_per_session = max_resolutions_per_session
        self.session_idle_timeout_us = (
            None if session_idle_timeout_seconds is None else round(session_idle_timeout_seconds * 1_000_000)
        )
        self.session_max_lifetime_us = (
            None if session_max_lifetime_seconds is None else round(session_max_lifetime_seconds * 1_000_000)
        )
        self.resolution_retention_us = round(resolution_retention_seconds * 1_000_000)
        self._atlases: dict[str, CompiledAtlas] = {}
        self._atlas_lock = threading.Lock()
        self._handlers: dict[str, Handler] = {}
        self._executors: dict[tuple[str, str], Handler] = {}  # (digest, action_id) -> imported executor
        self._sessions: dict[str, SessionState] = {}
        self._resolutions: dict[str, ResolutionState] = {}
        self._approvals: dict[str, ApprovalState] = {}
        self._pending: dict[str, PendingExecution] = {}
        self._state_store: StateStore = open_state_store(self.storage)
        self._compiled_by_digest: dict[str, CompiledAtlas] = {}
        self._restore_lock = threading.RLock()
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Flush the trace, then release storage and limiter; further calls raise ``RuntimeClosedError``.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._tracer.close(timeout)
        finally:  # storage and limiter are released even when the last flush fails (that error is raised)
            self.storage.close()
            self.limiter.close()

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every event emitted before this call is durable; False if ``timeout`` (seconds) ran
        out first. Immediate tracing has nothing to flush."""
        return self._tracer.flush(timeout)

    def trace_stats(self) -> dict[str, Any]:
        """The trace pipeline's counters: mode, buffered, capacity, pressure (0..1), processed, written,
        dropped, lag_ms, failing, overflow."""
        return self._tracer.stats()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _record_durably(self, span: Span, records: list[Record], *, retain: bool = False) -> None:
        """Emit and return only once stored: execute outcomes, approvals and session ends are acknowledged
        after their events are durable (SPEC 4.5). ``retain``: the work already happened, so if storage
        fails now the records are kept and written before the session's next events."""
        self._tracer.emit(span, records, durable=True, retain=retain)

    def _open(self) -> None:
        if self._closed:
            raise RuntimeClosedError("the runtime is closed")

    def _session(self, session_id: Any, agent_id: str | None = None) -> SessionState:
        self._open()
        state = self._sessions.get(session_id) if isinstance(session_id, str) else None
        if state is None and isinstance(session_id, str):
            state = self._restore(session_id)
        if state is None:
            raise SessionNotFoundError(f"no session {session_id!r}")
        if agent_id is not None and state.agent_id != agent_id:
            raise ForbiddenError("the session belongs to another agent")
        return state

    def _restore(self, session_id: str) -> SessionState | None:
        """Rebuild a session this process has not seen from its stored trace (a restart, another process)."""
        with self._restore_lock:
            state = self._sessions.get(session_id)
            if state is not None:
                return state
            self._tracer.flush()
            events = self.storage.read(session_id)
            if not events:
                return None
            rebuilt = rebuild_session(
                events,
                self._atlas_by_digest,
                self._state_store.load_idempotency(session_id),
                self.resolution_ttl_seconds,
            )
            self._resolutions.update(rebuilt.resolutions)
            self._approvals.update(rebuilt.approvals)
            self._pending.update(rebuilt.pending)
            if rebuilt.state.status == "active" and self.limiter.url.startswith("memory"):
                self._replay_session_limits(rebuilt)
            self._sessions[session_id] = rebuilt.state
            return rebuilt.state

    def _replay_session_limits(self, rebuilt: RebuiltSession) -> None:
        """An in-memory limiter forgets with the process that held it: take the session-scope windows of the
        session's authorised executions again, at their recorded times, so its limits still hold. (Agent and
        global windows span sessions; they persist only with a shared limiter such as SQLite's.)"""
        for rule, key, weight, at in rebuilt.consumed_windows():
            if rule.scope == "session":
                self.limiter.acquire([LimitRequest(key, rule.window_us, float("inf"), weight)], at)

    def _drop_resolution(self, state: SessionState, resolution_id: str) -> None:
        """Forget one resolution and its approvals (caller holds the session's lock); the trace keeps them."""
        res = state.resolutions.pop(resolution_id)
        self._resolutions.pop(resolution_id, None)
        for approval in res.approvals:
            self._approvals.pop(approval.approval_id, None)

    def _evict_oldest_resolutions(self, state: SessionState) -> None:
        """Keep at most ``max_resolutions_per_session`` (caller holds the lock); one awaiting an outcome stays."""
        excess = len(state.resolutions) - self.max_resolutions_per_session
        if excess <= 0:
            return
        awaited = {p.resolution_id for p in state.pending.values()}
        for resolution_id in [r for r in state.resolutions if r not in awaited][:excess]:
            self._drop_resolution(state, resolution_id)

    def _restore_owner_of(self, some_id: str) -> None:
        """Restore the session an approval or execution id from before a restart belongs to, if any."""
        session_id = self._state_store.find_session(some_id)
        if session_id is not None:
            self._restore(session_id)

    def _atlas_by_digest(self, digest: str) -> CompiledAtlas:
        compiled = self._compiled_by_digest.get(digest)
        if compiled is not None:
            return compiled
        stored = self._state_store.load_atlas(digest)
        if stored is None:
            raise AtlasNotFoundError(
                f"the session was started with Atlas digest {digest}, which is neither loaded nor stored",
                details={"digest": digest},
            )
        manifest, files = stored
        atlas = load_atlas(manifest, files=files, max_file_bytes=self.max_context_file_bytes)
        self._executors.update(self._import_executors(atlas))  # as load_atlas does: same Atlas, same handlers
        compiled = compile_atlas(atlas)
        self._compiled_by_digest[digest] = compiled
        return compiled

    def _import_executors(self, atlas: Atlas) -> dict[tuple[str, str], Handler]:
        found: dict[tuple[str, str], Handler] = {}
        if not self.import_executors:
            return found
        problems = []
        for index, action in enumerate(atlas.actions):
            if action.executor is None or not _EXECUTOR.match(action.executor):
                continue  # not a Python reference: the caller runs the action and reports the outcome
            module_name, _, attr = action.executor.partition(":")
            try:
                target: Any = importlib.import_module(module_name)
                for part in attr.split("."):
                    target = getattr(target, part)
            except Exception as exc:
                problems.append(
                    Problem(
                        f"/actions/{index}/executor",
                        f"cannot import executor {action.executor!r}: {type(exc).__name__}",
                        "semantic",
                    )
                )
                continue
            if not callable(target):
                problems.append(
                    Problem(
                        f"/actions/{index}/executor",
                        f"executor {action.executor!r} is not callable",
                        "semantic",
                    )
                )
                continue
            found[(atlas.digest, action.action_id)] = target
        if problems:
            raise InvalidAtlasError(
                f"Atlas has {len(problems)} executor problem(s)",
                details={"problems": [p.to_dict() for p in problems]},
            )
        return found

    def _expiry_reason(self, state: SessionState, now_us: int) -> str | None:
        """``idle_timeout`` or ``max_lifetime`` when an active session has run out of time, else None."""
        if (
            self.session_max_lifetime_us is not None
            and now_us - state.created_us >= self.session_max_lifetime_us
        ):
            return "max_lifetime"
        if (
            self.session_idle_timeout_us is not None
            and now_us - state.last_activity_us >= self.session_idle_timeout_us
        ):
            return "idle_timeout"
        return None

    def _check_active(self, state: SessionState) -> None:
        """Raise ``SessionEndedError`` unless the session is active. A session that has outlived its idle
        timeout or maximum lifetime is ended here (recorded with that reason) even if no timer ran yet."""
        if state.status == "active":
            now = self.clock.now_us()
            reason = self._expiry_reason(state, now)
            if reason is None:
                return
            with state.lock:
                if state.status == "active":
                    self._end_locked(state, reason, now)
        raise SessionEndedError(f"session {state.session_id} has ended ({state.end_reason})")

    def _end_locked(self, state: SessionState, reason: str, now: int) -> None:
        """Record the end of a session (caller holds its lock). Executions still awaiting ``complete`` are
        recorded as failed (``SESSION_ENDED``) first, so nothing is left open in the trace; the state changes
        only once everything is recorded."""
        for pending in list(state.pending.values()):
            self._record_durably(
                state.span(pending.span_id),
                [
                    Record(
                        "action.failed",
                        {
                            "action_id": pending.action_id,
                            "error_code": "SESSION_ENDED",
                            "error_message": "the session ended before the outcome was reported",
                        },
                    )
                ],
            )
        self._record_durably(
            state.span(self._new_id()),
            [
                Record(
                    "session.ended",
                    {"reason": reason, "duration_ms": max(0, (now - state.created_us) // 1000)},
                )
            ],
        )
        for pending in list(state.pending.values()):
            self._pending.pop(pending.execution_id, None)
            state.completed.add(pending.execution_id)
        state.pending.clear()
        state.status, state.ended_us, state.end_reason = "ended", now, reason
