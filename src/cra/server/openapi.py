"""The API's own OpenAPI 3.1 document, served at ``GET /openapi.json`` (SPEC 7).

The paths come from :data:`cra.server.app.ROUTES`, so the document cannot list a route the server does not
have; everything else about an operation (parameters, bodies, every status it can answer, headers) is written
by hand from the endpoint's code (``_openapi_operations``, ``_openapi_schemas``), and :func:`build_openapi`
refuses a route that has no description (or a description of a route that no longer exists), which the
tests turn into a failure.

Wire bodies that have a packaged JSON Schema (CARP request and resolution, TRACE event, Atlas manifest) are
not retyped: the document embeds the packaged schemas (Draft 2020-12 is OpenAPI 3.1's own schema dialect)
as ``components/schemas``, with their ``$defs`` hoisted next to them.

OpenAPI has no WebSocket operations; ``/v1/traces/stream`` is described in the document's description and
in the ``x-websocket`` extension.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from .._version import __version__
from ._openapi_operations import OPENAPI_PATH, operations, shared_response
from ._openapi_schemas import (
    ID_TEXT,
    JSON,
    Json,
    body_components,
    error_components,
    error_response,
    packaged_components,
    ref,
)
from .stream import (
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    CLOSE_NOT_FOUND,
    CLOSE_RATE_LIMITED,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
)

__all__ = ["OPENAPI_PATH", "build_openapi", "openapi_endpoint"]

# --- responses every authenticated operation may give -----------------------------------------------------

_SHARED_RESPONSES: dict[str, Json] = {
    "Unauthorized": error_response(
        "`UNAUTHORIZED`: no credentials, malformed, unknown, expired or revoked ones, or both kinds at once "
        "(`details.reason` says which). Never sent while auth is off.",
        headers={
            "WWW-Authenticate": {
                "description": "The accepted schemes.",
                "required": True,
                "schema": {"type": "string"},
            }
        },
    ),
    "TooManyRequests": error_response(
        "`RATE_LIMITED`: this credential sent more requests per second than `rate_limit_per_second` allows "
        "(a token bucket of `rate_limit_burst`). This protects the server; governance rate limits are "
        "execute *responses* (403 `denied`), not this.",
        headers={
            "Retry-After": {
                "description": "Seconds to wait before the next request will be accepted.",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    ),
    "PayloadTooLarge": error_response(
        "`PAYLOAD_TOO_LARGE`: the body is larger than `max_body_bytes`, or a JSON value in it nests deeper "
        "than 64 levels."
    ),
    "Unavailable": error_response(
        "The runtime could not take the request; nothing was decided. `REQUEST_TIMEOUT` (no answer within "
        "`request_timeout_seconds`; retry with the same idempotency key), `STORAGE_UNAVAILABLE`, "
        "`TRACE_BACKPRESSURE`, `LIMITER_UNAVAILABLE`, or `RUNTIME_CLOSED` (the server is shutting down)."
    ),
    "InternalError": error_response(
        "`INTERNAL_ERROR`: a bug; the request was refused (fail closed) and the server log has the details."
    ),
}


# --- the document -------------------------------------------------------------------------------------------

_WEBSOCKET = {
    "/v1/traces/stream": {
        "summary": "A session's TRACE events, live and resumable",
        "description": "Connect with the credentials in the handshake headers (never in the URL). Every "
        "event with `sequence > since_sequence` is sent in order, one JSON text message per event (the "
        "same bytes as a NDJSON line), then the stream follows the session live until `session.ended` has "
        "been sent. Messages are events only: refusals are close codes with a reason. After a close "
        f"{CLOSE_TRY_AGAIN_LATER}, reconnect with `since_sequence` set to the last sequence received.",
        "parameters": [
            {"name": "session_id", "in": "query", "required": True, "schema": ID_TEXT},
            {
                "name": "since_sequence",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": -1, "maximum": 2**62, "default": -1},
            },
        ],
        "message": ref("TraceEvent"),
        "close_codes": {
            str(CLOSE_NORMAL): "The session ended: `session.ended` was the last message.",
            str(CLOSE_INTERNAL_ERROR): "An unexpected failure (the server log has it).",
            str(CLOSE_TRY_AGAIN_LATER): "More than `ws_backlog` events behind, or the runtime or storage is "
            "unavailable; reconnect later with `since_sequence`.",
            str(CLOSE_BAD_REQUEST): "A missing or malformed query parameter, or `since_sequence` past the "
            "session's last event.",
            str(CLOSE_UNAUTHORIZED): "No valid credentials in the handshake headers.",
            str(CLOSE_FORBIDDEN): "The session belongs to another agent.",
            str(CLOSE_NOT_FOUND): "No such session.",
            str(CLOSE_RATE_LIMITED): "The credential's request rate limit refused the connection.",
        },
    }
}

_DESCRIPTION = """\
The HTTP API of a CRA runtime (`cra serve`): sessions, CARP resolve/execute/validate, approvals, TRACE reads
and verification, Atlas management, replay and diff.

**Auth.** `X-API-Key` (API keys, stored hashed) or `Authorization: Bearer <JWT>`, one per request. Scopes:
`agent` (its own sessions, traces and approvals only) and `admin` (Atlases, approval decisions, every
session). Operations marked *(admin)* answer 403 `FORBIDDEN` to an agent credential. When the server runs
without auth (allowed only on a loopback address) no credentials are needed and every caller is an admin.

**Errors.** Every refusal has the body `{"error": {code, category, message, recoverable, details?}}`
(SPEC 5): schema `Error`. A method a path does not serve answers 405 `METHOD_NOT_ALLOWED` with an `Allow`
header; an unknown path 404 `NOT_FOUND`. Every authenticated operation may answer 401, 429 (with
`Retry-After`), 500 and 503 as described in `components/responses`.

**Streaming.** `GET /v1/traces/stream` is a WebSocket (OpenAPI has no WebSocket operations): see
`x-websocket` for its query parameters, messages and close codes.
"""

_SECURITY: list[Json] = [{"ApiKeyAuth": []}, {"BearerAuth": []}]


def build_openapi(routes: Iterable[tuple[str, Iterable[str], Any, str]] | None = None) -> Json:
    """The OpenAPI 3.1 document of the API (a fresh dict on every call; nothing is cached here).

    ``routes`` is the route table, ``(path, methods, endpoint, access)`` with access ``public``, ``any`` or
    ``admin``; by default :data:`cra.server.app.ROUTES`. ``GET /openapi.json`` itself is always included.
    Raises ``LookupError`` when a route has no hand-written operation here or an operation here has no
    route: the document must describe exactly the routes the server has.
    """
    if routes is None:
        from .app import ROUTES

        routes = ROUTES
    described = operations()
    table = [(path, [m.lower() for m in methods], access) for path, methods, _fn, access in routes]
    table.append((OPENAPI_PATH, ["get"], "public"))
    paths: dict[str, Json] = {}
    missing: list[str] = []
    for path, methods, access in table:
        for method in methods:
            operation = described.pop((path, method), None)
            if operation is None:
                missing.append(f"{method.upper()} {path}")
                continue
            operation = copy.deepcopy(operation)
            responses: Json = operation["responses"]
            if access == "public":
                operation["security"] = []
                responses.setdefault("500", shared_response("InternalError"))
            else:
                # Every authenticated request passes the credential check and the per-key rate limit, and
                # may meet a closed runtime or a timeout on its way.
                responses.setdefault("401", shared_response("Unauthorized"))
                responses.setdefault("429", shared_response("TooManyRequests"))
                responses.setdefault("500", shared_response("InternalError"))
                responses.setdefault("503", shared_response("Unavailable"))
                operation["x-cra-access"] = access
            operation["responses"] = dict(sorted(responses.items()))
            paths.setdefault(path, {})[method] = operation
    if missing or described:
        extra = [f"{m.upper()} {p}" for p, m in described]
        raise LookupError(
            "the OpenAPI document and the route table disagree: "
            f"routes without a description: {missing or 'none'}; descriptions without a route: {extra or 'none'}"
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CRA",
            "version": __version__,
            "summary": "Context & action resolution, governance and audit for AI agents.",
            "description": _DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "http://127.0.0.1:8420", "description": "`cra serve` with its defaults."}],
        "security": _SECURITY,
        "paths": paths,
        "components": {
            "schemas": {**error_components(), **body_components(), **packaged_components()},
            "responses": copy.deepcopy(_SHARED_RESPONSES),
            "securitySchemes": {
                "ApiKeyAuth": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "`cra_<key_id>_<secret>`, made by `cra keys create`.",
                },
                "BearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "Signed with the configured secret or public key; needs `exp` and `sub` "
                    "(the agent id). A `scope` claim containing `admin` or `cra:admin` makes an admin; "
                    "anything else, or none, an agent.",
                },
            },
        },
        "x-websocket": _WEBSOCKET,
    }


@functools.cache
def _rendered() -> bytes:
    # The document depends only on code, so one rendering serves the process's lifetime.
    return orjson.dumps(build_openapi())


async def openapi_endpoint(request: Request) -> Response:
    """``GET /openapi.json``: the document, rendered once per process. No authentication."""
    return Response(_rendered(), media_type=JSON)
