"""``/v1/sessions``: open, list, read and end sessions."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...errors import InvalidRequestError
from .._endpoint import Api, read_object, require_own_agent
from .._query import query_choice, query_int, query_text
from ..auth import Principal
from ..responses import json_response

__all__ = ["create_session", "end_session", "get_session", "list_sessions"]

_CREATE_KEYS = {"agent_id", "goal", "atlas_ids", "metadata"}


async def create_session(api: Api, request: Request, principal: Principal) -> Response:
    """Open a session: ``{agent_id, goal, atlas_ids?, metadata?}`` -> 201 Session. An agent credential
    opens sessions for itself only (``agent_id`` may be left out)."""
    body = await read_object(request, api)
    unknown = sorted(set(body) - _CREATE_KEYS)
    if unknown:
        raise InvalidRequestError(
            f"unknown fields: {', '.join(unknown)}",
            details={"errors": [{"pointer": f"/{k}", "message": "unknown field"} for k in unknown]},
        )
    agent_id: Any = body.get("agent_id", principal.agent_filter)
    require_own_agent(principal, agent_id)
    session = await api.call(
        api.runtime.create_session, agent_id, body.get("goal"), body.get("atlas_ids"), body.get("metadata")
    )
    return json_response(session.to_dict(), 201, {"Location": f"/v1/sessions/{session.session_id}"})


async def list_sessions(api: Api, request: Request, principal: Principal) -> Response:
    """Sessions this caller may see, oldest first: ``?status=active|ended&agent_id=&limit=&offset=``."""
    status = query_choice(request, "status", ("active", "ended"))
    limit = query_int(request, "limit", 100, low=1, high=1000) or 100
    offset = query_int(request, "offset", 0, low=0, high=10**9) or 0
    agent_id = query_text(request, "agent_id")
    if principal.agent_filter is not None:
        require_own_agent(principal, agent_id if agent_id is not None else principal.agent_filter)
        agent_id = principal.agent_filter
    sessions = api.runtime.sessions(status, agent_id=agent_id)
    page = sessions[offset : offset + limit]
    return json_response(
        {"sessions": [s.to_dict() for s in page], "total": len(sessions), "limit": limit, "offset": offset}
    )


async def get_session(api: Api, request: Request, principal: Principal) -> Response:
    """One session (404 if unknown; 403 if another agent's)."""
    session_id = request.path_params["session_id"]
    session = await api.call(api.runtime.get_session, session_id, agent_id=principal.agent_filter)
    return json_response(session.to_dict())


async def end_session(api: Api, request: Request, principal: Principal) -> Response:
    """End a session (``?reason=``, default ``completed``) -> 204; 409 ``SESSION_ENDED`` if it already ended."""
    session_id = request.path_params["session_id"]
    reason = query_text(request, "reason", max_len=64) or "completed"
    await api.call(api.runtime.end_session, session_id, reason, agent_id=principal.agent_filter)
    return Response(status_code=204)
