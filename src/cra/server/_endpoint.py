"""What every endpoint shares: the server's state, authentication, the per-key rate limit, body parsing,
error mapping, metrics, and the hop to a worker thread for calls that may block."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response

from .._version import __version__
from ..errors import (
    CRAError,
    ForbiddenError,
    InvalidRequestError,
    PayloadTooLargeError,
    RateLimitedError,
    RequestTimeoutError,
    StorageUnavailableError,
    UnauthorizedError,
)
from ..runtime import Runtime
from .auth import Authenticator, Principal
from .config import ServerConfig
from .metrics import ServerMetrics
from .ratelimit import RequestRateLimiter
from .responses import error_response

__all__ = [
    "Api",
    "Endpoint",
    "endpoint",
    "read_json",
    "read_object",
    "read_optional_object",
    "require_own_agent",
]

T = TypeVar("T")

Endpoint = Callable[["Api", Request, Principal], Awaitable[Response]]


@dataclass(slots=True)
class Api:
    """The state one app serves from (one per process)."""

    runtime: Runtime
    config: ServerConfig
    auth: Authenticator
    limiter: RequestRateLimiter
    metrics: ServerMetrics
    started: float
    version: str = __version__

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a runtime call that may block (durable writes, handlers, flushes) on a worker thread, so
        the event loop keeps serving.

        After the request timeout the client gets ``REQUEST_TIMEOUT`` while the call itself runs to its end
        on its thread (a thread cannot be stopped safely): whatever it does is still traced, and a retry
        with the same idempotency key returns its response.
        """
        with anyio.move_on_after(self.config.request_timeout_seconds):
            return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs), abandon_on_cancel=True)
        raise RequestTimeoutError(
            f"the runtime did not answer within {self.config.request_timeout_seconds:g} s"
        )


async def read_json(request: Request, max_bytes: int, *, optional: bool = False) -> Any:
    """The request body as JSON, refusing bodies over ``max_bytes`` (413) and malformed JSON, invalid
    UTF-8, NaN or an empty body (400; with ``optional`` an empty body is None). Nothing is read past the
    limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLargeError(
            f"request body of {declared} bytes is over the limit of {max_bytes}",
            details={"max_body_bytes": max_bytes},
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLargeError(
                f"request body is over the limit of {max_bytes} bytes", details={"max_body_bytes": max_bytes}
            )
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        if optional:
            return None
        raise InvalidRequestError("the request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson's message names the position only: it never echoes the body back.
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from None


async def read_object(request: Request, api: Api) -> dict[str, Any]:
    """The request body, which must be a JSON object."""
    value = await read_json(request, api.config.max_body_bytes)
    if not isinstance(value, dict):
        raise InvalidRequestError(
            "the request body must be a JSON object",
            details={"errors": [{"pointer": "", "message": "must be an object"}]},
        )
    return value


async def read_optional_object(request: Request, api: Api, keys: set[str], message: str) -> dict[str, Any]:
    """An optional body: nothing (``{}``) or an object with only ``keys`` (else 400 with ``message``), read
    under the same size limit as every body."""
    value = await read_json(request, api.config.max_body_bytes, optional=True)
    if value is None:
        return {}
    if not isinstance(value, dict) or set(value) - keys:
        raise InvalidRequestError(message)
    return value


def endpoint(
    route: str, fn: Endpoint, *, admin: bool = False, public: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap ``fn`` as a Starlette endpoint for ``route`` (the path template, used as the metrics label).

    Authenticates (unless ``public``), requires the admin scope when ``admin``, applies the per-credential
    rate limit, turns every exception into the SPEC 5 error body, and records metrics.
    """

    async def handle(request: Request) -> Response:
        api: Api = request.app.state.api
        started = time.perf_counter()
        headers: dict[str, str] | None = None  # WWW-Authenticate on 401, Retry-After on 429
        try:
            principal = api.auth.authenticate(request.headers) if not public else None
            if principal is not None:
                if admin:
                    api.auth.require_admin(principal)
                api.limiter.check(principal.credential_id)
            response = await fn(api, request, principal)  # type: ignore[arg-type]
        except CRAError as exc:
            if isinstance(exc, UnauthorizedError):
                api.metrics.auth_failures.inc()
                headers = {"WWW-Authenticate": 'Bearer realm="cra", X-API-Key'}
            elif isinstance(exc, RateLimitedError) and exc.details and "retry_after_seconds" in exc.details:
                api.metrics.rate_limited.inc()
                headers = {"Retry-After": str(exc.details["retry_after_seconds"])}
            elif isinstance(exc, StorageUnavailableError):
                api.metrics.storage_errors.inc()
            response = error_response(exc, headers)
        except Exception as exc:  # every other failure is an internal error without a stack trace
            response = error_response(exc)
        api.metrics.observe_request(
            route, request.method, response.status_code, time.perf_counter() - started
        )
        return response

    handle.__name__ = getattr(fn, "__name__", "endpoint")
    handle.__doc__ = fn.__doc__
    return handle


def require_own_agent(principal: Principal, agent_id: Any) -> None:
    """An agent-scoped caller may act only as itself."""
    if principal.agent_filter is not None and agent_id != principal.agent_filter:
        raise ForbiddenError("an agent credential may act only for its own agent_id")
