"""``/v1/traces/stream?session_id=&since_sequence=``: a session's TRACE events over a WebSocket, live and
resumable (SPEC 7; the protocol is documented in docs/streaming.md).

The stream sends every event with ``sequence > since_sequence`` in order, one JSON text message per event
(exactly the bytes of ``TraceEvent.to_json()``, the same line as the NDJSON export), then follows the session
live until ``session.ended`` has been sent (close 1000) or the client goes away. Text messages are events
only: refusals and errors are close codes with a reason, never a message, so a client can treat every
message it receives as an event.

How new events are found: polling storage. The trace is written by a background processor (or, with
PostgreSQL, by other processes) and the core has no notification hook; an idle poll is one ``storage.head()``
lookup, and events are read only when the head moved. The stream never flushes the tracer (that would break
up the processor's group commits on the hot path), so a live event arrives within the processor's flush
interval plus ``POLL_INTERVAL_SECONDS`` (about 0.1 s by default). Reading storage rather than watching this
process's tracer is also what lets the stream see events written by other ``cra serve`` workers that share
the storage.

Back-pressure: sends wait for the socket (a client that reads slowly slows its stream; nothing queues up in
this process). The events written after the client connected that it has not received yet are its lag; when
the lag exceeds ``ServerConfig.ws_backlog`` the stream closes with 1013 and a reason naming the last sequence
sent, so the client reconnects with ``since_sequence`` and catches up from storage. History that existed when
the client connected is not lag: a client may replay a long session from the start at its own pace.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Final

import anyio
from starlette.datastructures import QueryParams
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..errors import (
    AuthError,
    CRAError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    SessionNotFoundError,
    UnauthorizedError,
    UnavailableError,
    ValidationError,
)
from ..runtime import Runtime
from ..trace.event import TraceEvent
from ._endpoint import Api

__all__ = [
    "CLOSE_BAD_REQUEST",
    "CLOSE_FORBIDDEN",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_NORMAL",
    "CLOSE_NOT_FOUND",
    "CLOSE_RATE_LIMITED",
    "CLOSE_TRY_AGAIN_LATER",
    "CLOSE_UNAUTHORIZED",
    "PAGE_SIZE",
    "POLL_INTERVAL_SECONDS",
    "close_code",
    "trace_stream",
]

logger = logging.getLogger("cra.server.stream")

POLL_INTERVAL_SECONDS: float = 0.05
"""How long the stream waits before looking for new events once it has sent everything stored. Read on every
poll, so tests (and embedders) may change it on the module."""
PAGE_SIZE: int = 500
"""Most events read from storage at once; bounds this process's memory per stream whatever the session's size."""

CLOSE_NORMAL: Final = 1000
"""The session ended: ``session.ended`` was the last message."""
CLOSE_INTERNAL_ERROR: Final = 1011
"""An unexpected failure (logged on the server; the reason says no more than "internal error")."""
CLOSE_TRY_AGAIN_LATER: Final = 1013
"""The client fell more than ``ws_backlog`` events behind, or storage or the runtime is unavailable; reconnect
later with ``since_sequence`` set to the last sequence received."""
CLOSE_BAD_REQUEST: Final = 4400
"""A missing or malformed query parameter."""
CLOSE_UNAUTHORIZED: Final = 4401
"""No valid credentials in the handshake headers."""
CLOSE_FORBIDDEN: Final = 4403
"""The session belongs to another agent."""
CLOSE_NOT_FOUND: Final = 4404
"""No such session."""
CLOSE_RATE_LIMITED: Final = 4429
"""The credential's request rate limit refused the connection."""

_MAX_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes, two of them the code
_MAX_SEQUENCE = 2**62
_MAX_SESSION_ID = 255
_ENDED = "session.ended"


def close_code(exc: BaseException) -> int:
    """The close code a failure to set up or continue a stream ends with (see the ``CLOSE_*`` constants)."""
    if isinstance(exc, UnauthorizedError):
        return CLOSE_UNAUTHORIZED
    if isinstance(exc, AuthError):  # FORBIDDEN, and any other refusal of a known caller
        return CLOSE_FORBIDDEN
    if isinstance(exc, NotFoundError):
        return CLOSE_NOT_FOUND
    if isinstance(exc, ValidationError):
        return CLOSE_BAD_REQUEST
    if isinstance(exc, RateLimitError):
        return CLOSE_RATE_LIMITED
    if isinstance(exc, UnavailableError):
        return CLOSE_TRY_AGAIN_LATER
    return CLOSE_INTERNAL_ERROR


def _reason(text: str) -> str:
    """``text`` cut to what fits in a close frame, on a character boundary."""
    data = text.encode("utf-8")
    if len(data) <= _MAX_REASON_BYTES:
        return text
    return data[: _MAX_REASON_BYTES - 3].decode("utf-8", errors="ignore") + "..."


def _query(params: QueryParams) -> tuple[str, int]:
    """``session_id`` (required) and ``since_sequence`` (an integer >= -1, default -1)."""
    session_id = params.get("session_id")
    if not session_id or len(session_id) > _MAX_SESSION_ID:
        raise InvalidRequestError(f"query parameter session_id is required (1..{_MAX_SESSION_ID} characters)")
    raw = params.get("since_sequence")
    if raw is None:
        return session_id, -1
    try:
        since = int(raw)
    except ValueError:
        raise InvalidRequestError("query parameter since_sequence must be an integer") from None
    if not -1 <= since <= _MAX_SEQUENCE:
        raise InvalidRequestError("query parameter since_sequence must be -1 or more")
    return session_id, since


def _poll(
    runtime: Runtime, session_id: str, agent_id: str | None, after: int, limit: int
) -> tuple[list[TraceEvent], int]:
    """The next stored events after ``after`` (at most ``limit``) and the session's head sequence. Runs on a
    worker thread: storage may block."""
    # Checks again, on every poll, that the runtime is open and the session exists and is the caller's
    # (retention may delete a session while it is being watched).
    runtime.get_session(session_id, agent_id=agent_id)
    # Storage only, never a flush: forcing the trace processor to commit at every poll of every stream would
    # break up its group commits on the hot path. Its flush interval (50 ms by default) bounds the delay.
    storage = runtime.storage
    head = storage.head(session_id)
    if head is None:
        raise SessionNotFoundError(f"no session {session_id!r}")
    if head[0] <= after:
        return [], head[0]  # the cheap idle poll: nothing new, nothing read
    events = storage.read(session_id, since_sequence=after, limit=limit)
    return events, max(head[0], events[-1].sequence if events else -1)


def _is_end(runtime: Runtime, session_id: str, sequence: int) -> bool:
    """True when the event at ``sequence`` is ``session.ended`` (a client resuming after the last event)."""
    events = runtime.storage.read(session_id, since_sequence=sequence - 1, limit=1)
    return bool(events) and events[0].sequence == sequence and events[0].event_type == _ENDED


class _Connection:
    """One stream: the caller, the session, and how many events were sent (for the log)."""

    def __init__(self, api: Api, websocket: WebSocket) -> None:
        self.api = api
        self.websocket = websocket
        self.sent = 0

    async def serve(self) -> tuple[int, str] | None:
        """Authenticate, check the query and the session, then stream. Returns the close code and reason,
        or None when the client disconnected (there is nobody left to tell)."""
        api = self.api
        try:
            principal = api.auth.authenticate(self.websocket.headers)
            api.limiter.check(principal.credential_id)
            session_id, since = _query(self.websocket.query_params)
            await api.call(api.runtime.get_session, session_id, agent_id=principal.agent_filter)
            return await self._stream(session_id, principal.agent_filter, since)
        except WebSocketDisconnect:
            return None
        except CRAError as exc:
            if isinstance(exc, UnauthorizedError):
                api.metrics.auth_failures.inc()
            elif isinstance(exc, RateLimitError):
                api.metrics.rate_limited.inc()
            code = close_code(exc)
            if code == CLOSE_INTERNAL_ERROR:
                logger.error("trace stream failed: %r", exc)
                return code, "internal error"
            # CRA messages name only what the client sent (SPEC 5), so they are safe to send back.
            return code, exc.message
        except Exception:
            logger.exception("trace stream failed")
            return CLOSE_INTERNAL_ERROR, "internal error"

    async def _stream(self, session_id: str, agent_id: str | None, since: int) -> tuple[int, str]:
        """Send until the session ends or the client falls too far behind."""
        api = self.api
        last = since
        baseline: int | None = None
        while True:
            events, head = await api.call(_poll, api.runtime, session_id, agent_id, last, PAGE_SIZE)
            if baseline is None:
                # First poll: everything up to this head is the history the client asked for, not lag.
                if since > head:
                    raise InvalidRequestError(
                        f"since_sequence {since} is past the session's last event ({head})",
                        details={"head_sequence": head},
                    )
                if since >= 0 and since == head and await api.call(_is_end, api.runtime, session_id, since):
                    return CLOSE_NORMAL, "session ended"
                baseline = head
            lag = head - max(last, baseline)
            if lag > api.config.ws_backlog:
                return (
                    CLOSE_TRY_AGAIN_LATER,
                    f"backlog exceeded ({lag} > {api.config.ws_backlog} events); "
                    f"reconnect with since_sequence={last}",
                )
            for event in events:
                await self.websocket.send_text(event.to_json().decode("utf-8"))
                self.sent += 1
                last = event.sequence
                if event.event_type == _ENDED:
                    return CLOSE_NORMAL, "session ended"
            if len(events) < PAGE_SIZE:  # caught up with storage: wait for more
                await anyio.sleep(POLL_INTERVAL_SECONDS)


async def trace_stream(websocket: WebSocket) -> None:
    """The ``/v1/traces/stream`` WebSocket endpoint (see the module docstring and docs/streaming.md).

    Credentials come from the handshake headers only (``X-API-Key`` or ``Authorization: Bearer``), never
    from the URL, where they would end up in access logs. The handshake is always accepted, so that a refusal
    can carry a close code and reason (a WebSocket handshake rejected before ``accept`` reaches the client as
    a bare HTTP 403).
    """
    api = websocket.app.state.api
    connection = _Connection(api, websocket)
    await websocket.accept()
    api.metrics.streams_open.inc()
    try:
        outcome = await _serve_connection(websocket, connection)
    finally:
        api.metrics.streams_open.dec()
        api.metrics.stream_events.inc(connection.sent)
    api.metrics.streams_closed.labels("client_left" if outcome is None else str(outcome[0])).inc()
    if outcome is None:
        logger.debug("trace stream: the client left after %d events", connection.sent)
        return
    code, reason = outcome
    logger.debug("trace stream: closing %d (%s) after %d events", code, reason, connection.sent)
    # The client may leave while we close: then there is nobody left to tell.
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.close(code, _reason(reason))


async def _serve_connection(websocket: WebSocket, connection: _Connection) -> tuple[int, str] | None:
    outcome: tuple[int, str] | None = None
    async with anyio.create_task_group() as group:

        async def watch_client() -> None:
            # The client sends nothing we need, but its disconnect arrives as a message: without reading, a
            # stream of an idle session would poll for a client that left long ago.
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    group.cancel_scope.cancel()
                    return

        group.start_soon(watch_client)
        outcome = await connection.serve()
        group.cancel_scope.cancel()
    return outcome
