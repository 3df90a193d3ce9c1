"""``/v1/traces/{session_id}`` (JSON or NDJSON) and ``/v1/traces/{session_id}/verify``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...errors import InvalidRequestError
from ...trace.verify import verify_chain
from .._endpoint import Api, read_optional_object
from .._query import query_int, query_text
from ..auth import Principal
from ..responses import json_response

__all__ = ["NDJSON", "get_trace", "verify_trace"]

NDJSON = "application/x-ndjson"
_MAX_LIMIT = 100_000


async def get_trace(api: Api, request: Request, principal: Principal) -> Response:
    """A session's events in sequence order: ``?event_type=&since_sequence=&limit=``. JSON
    ``{session_id, events, count}``, or one event per line with ``Accept: application/x-ndjson``."""
    session_id = request.path_params["session_id"]
    events = await api.call(
        api.runtime.get_trace,
        session_id,
        agent_id=principal.agent_filter,
        since_sequence=query_int(request, "since_sequence", None, low=-1, high=2**62),
        event_type=query_text(request, "event_type", max_len=128),
        limit=query_int(request, "limit", None, low=1, high=_MAX_LIMIT),
    )
    if NDJSON in request.headers.get("accept", ""):
        body = b"".join(e.to_json() + b"\n" for e in events)
        return Response(body, media_type=NDJSON)
    return json_response(
        {"session_id": session_id, "events": [e.to_dict() for e in events], "count": len(events)}
    )


async def verify_trace(api: Api, request: Request, principal: Principal) -> Response:
    """Verify a session's chain (SPEC 4.3). POST may send ``{expected_head}``: the head hash recorded
    elsewhere, so a cut-off or extended tail is caught too."""
    session_id = request.path_params["session_id"]
    expected: Any = None
    if request.method == "POST":
        body = await read_optional_object(
            request, api, {"expected_head"}, "the body must be an object with an optional expected_head"
        )
        expected = body.get("expected_head")
        if expected is not None and (not isinstance(expected, str) or len(expected) != 64):
            raise InvalidRequestError("expected_head must be a 64-character SHA-256 hex string")
    if expected is None:
        result = await api.call(api.runtime.verify, session_id, agent_id=principal.agent_filter)
    else:
        events = await api.call(api.runtime.get_trace, session_id, agent_id=principal.agent_filter)
        result = verify_chain(events, expected_head=expected)
    return json_response(result.to_dict())
