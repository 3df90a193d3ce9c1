"""JSON responses and the SPEC 5 error body (``{"error": {...}}``) for every refusal the server makes."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.responses import Response

from ..errors import CRAError, InternalError

__all__ = ["JSONResponse", "error_response", "json_response"]

logger = logging.getLogger("cra.server")

MEDIA_JSON = "application/json"


class JSONResponse(Response):
    """A JSON response rendered by orjson (several times faster than the stdlib for resolution bodies)."""

    media_type = MEDIA_JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json_response(
    content: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    """``content`` as a JSON response."""
    return JSONResponse(content, status_code=status_code, headers=headers)


def error_response(exc: BaseException, headers: dict[str, str] | None = None) -> JSONResponse:
    """The SPEC 5 body and status for any exception. A ``CRAError`` speaks for itself; anything else is
    logged here and reaches the client only as ``INTERNAL_ERROR`` (no stack trace, no path)."""
    if not isinstance(exc, CRAError):
        logger.exception("unexpected error while serving a request", exc_info=exc)
        exc = InternalError("internal error; the server log has the details")
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status, headers=headers)
