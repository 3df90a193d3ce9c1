"""``/v1/resolve``, ``/v1/execute``, ``/v1/validate`` and ``/v1/executions/{id}/complete`` (SPEC 3)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...errors import InvalidRequestError
from .._endpoint import Api, read_json, read_object
from ..auth import Principal
from ..responses import MEDIA_JSON, json_response

__all__ = ["complete", "execute", "resolve", "validate"]


async def resolve(api: Api, request: Request, principal: Principal) -> Response:
    """A CARP resolve request -> the resolution (200)."""
    body = await read_object(request, api)
    # Resolve never blocks (deferred tracing only appends to the buffer): no worker-thread hop, which would
    # cost more than the resolve itself. In immediate mode it writes inline, so it takes the thread then.
    if api.runtime.tracing == "deferred":
        resolution = api.runtime.resolve_request(body, agent_id=principal.agent_filter)
    else:
        resolution = await api.call(api.runtime.resolve_request, body, agent_id=principal.agent_filter)
    api.metrics.observe_decision("resolve", resolution.decision_type)
    return Response(resolution.to_json(), media_type=MEDIA_JSON)


async def execute(api: Api, request: Request, principal: Principal) -> Response:
    """A CARP execute request -> the execute response: 200 success/authorized/error, 403 denied,
    202 pending_approval. Answered only once its ``action.*`` events are durable."""
    body = await read_object(request, api)
    response = await api.call(api.runtime.execute_request, body, agent_id=principal.agent_filter)
    api.metrics.observe_decision("execute", response.status)
    return json_response(response.to_dict(), response.http_status)


async def validate(api: Api, request: Request, principal: Principal) -> Response:
    """Check a request without side effects -> ``{valid, errors: [{pointer, message}]}`` (always 200 for
    JSON; malformed JSON is still a 400)."""
    body = await read_json(request, api.config.max_body_bytes)
    return json_response(api.runtime.validate_request(body).to_dict())


async def complete(api: Api, request: Request, principal: Principal) -> Response:
    """Report the outcome of an ``authorized`` execution: ``{result}`` or ``{error: message | {code,
    message}}`` -> the final execute response."""
    body = await read_object(request, api)
    unknown = sorted(set(body) - {"result", "error"})
    if unknown:
        raise InvalidRequestError(f"unknown fields: {', '.join(unknown)}")
    error: Any = body.get("error")
    response = await api.call(
        api.runtime.complete,
        request.path_params["execution_id"],
        result=body.get("result"),
        error=error,
        agent_id=principal.agent_filter,
    )
    api.metrics.observe_decision("complete", response.status)
    return json_response(response.to_dict(), response.http_status)
