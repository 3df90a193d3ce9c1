"""The Starlette application: routes, error bodies for unknown routes and methods, and the lifespan that runs
the runtime's timers and flushes the trace on shutdown.

``create_app(runtime, config)`` serves a runtime you built (tests, embedding the API in your own process);
``build_app(config)`` builds the runtime from the configuration and owns it (``cra serve``).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from ..errors import CRAError, MethodNotAllowedError, NotFoundError
from ..runtime import Runtime
from ..timers.manager import TimerManager
from ..timers.thread import ThreadTimers
from ._endpoint import Api, Endpoint, endpoint
from .auth import Authenticator
from .config import ServerConfig
from .metrics import ServerMetrics
from .ratelimit import RequestRateLimiter
from .responses import error_response
from .routes import analysis, approvals, atlases, carp, health, sessions, traces
from .stream import trace_stream

__all__ = ["ROUTES", "build_app", "build_runtime", "create_app"]

logger = logging.getLogger("cra.server")

# A request leaves tens of container objects behind (resolution, approval, trace records) that live until
# their TTL: with the default threshold (700) the young generation is collected every few requests and the
# older ones, whose cost grows with every live resolution, far too often for the tail latency.
_GC_THRESHOLDS = (50_000, 20, 100)

ROUTES: tuple[tuple[str, tuple[str, ...], Endpoint, str], ...] = (
    # (path, methods, endpoint, access: "public" | "any" | "admin")
    ("/v1/health", ("GET",), health.health, "public"),
    ("/v1/sessions", ("POST",), sessions.create_session, "any"),
    ("/v1/sessions", ("GET",), sessions.list_sessions, "any"),
    ("/v1/sessions/{session_id}", ("GET",), sessions.get_session, "any"),
    ("/v1/sessions/{session_id}", ("DELETE",), sessions.end_session, "any"),
    ("/v1/resolve", ("POST",), carp.resolve, "any"),
    ("/v1/execute", ("POST",), carp.execute, "any"),
    ("/v1/executions/{execution_id}/complete", ("POST",), carp.complete, "any"),
    ("/v1/validate", ("POST",), carp.validate, "any"),
    ("/v1/approvals", ("GET",), approvals.list_approvals, "any"),
    ("/v1/approvals/{approval_id}", ("GET",), approvals.get_approval, "any"),
    ("/v1/approvals/{approval_id}/approve", ("POST",), approvals.approve, "admin"),
    ("/v1/approvals/{approval_id}/reject", ("POST",), approvals.reject, "admin"),
    ("/v1/traces/{session_id}", ("GET",), traces.get_trace, "any"),
    ("/v1/traces/{session_id}/verify", ("GET", "POST"), traces.verify_trace, "any"),
    ("/v1/atlases", ("GET",), atlases.list_atlases, "any"),
    ("/v1/atlases", ("POST",), atlases.load_atlas, "admin"),
    ("/v1/atlases/{atlas_id}", ("GET",), atlases.get_atlas, "any"),
    ("/v1/atlases/{atlas_id}", ("DELETE",), atlases.unload_atlas, "admin"),
    ("/v1/replay", ("POST",), analysis.replay, "any"),
    ("/v1/diff", ("POST",), analysis.diff, "any"),
    ("/metrics", ("GET",), health.metrics, "admin"),
)
"""Every HTTP route (the OpenAPI document is checked against this table)."""


async def _http_error(request: Request, exc: Exception) -> Response:
    # Unknown routes and methods come here as Starlette's HTTPException; give them SPEC 5 bodies too.
    if isinstance(exc, HTTPException):
        if exc.status_code == 405:
            allow = _allowed_methods(request)
            return error_response(
                MethodNotAllowedError(f"{request.method} is not allowed here; allowed: {allow}"),
                {"Allow": allow},
            )
        if exc.status_code == 404:
            return error_response(NotFoundError(f"no route {request.url.path}"))
        err = CRAError(str(exc.detail))
        response = error_response(err)
        response.status_code = exc.status_code
        return response
    return error_response(exc)


def _allowed_methods(request: Request) -> str:
    """Every method served at this path: Starlette names only the first matching route's, but ROUTES has one
    route per method and path."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.path_regex.match(request.url.path) and route.methods:
            methods |= route.methods
    return ", ".join(sorted(methods))


def _routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    for path, methods, fn, access in ROUTES:
        handler = endpoint(path, fn, admin=access == "admin", public=access == "public")
        routes.append(Route(path, handler, methods=list(methods), name=f"{fn.__name__}"))
    # Mounted before the /v1/traces/{session_id} routes would be matched only by path; WebSocket routes
    # match WebSocket scopes only, so the order does not matter.
    routes.append(WebSocketRoute("/v1/traces/stream", trace_stream))
    from .openapi import openapi_endpoint

    routes.append(Route("/openapi.json", openapi_endpoint, methods=["GET"], name="openapi"))
    return routes


class CraApp(Starlette):
    """Starlette, with a shortcut for routes without path parameters (``/v1/resolve``, ``/v1/execute``,
    ...): an exact (method, path) lookup calls the endpoint directly, skipping the router's scan of every
    pattern and the error middlewares, which the endpoint wrapper makes redundant (it answers every
    exception itself). Everything else goes through Starlette as usual."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direct: dict[tuple[str, str], Any] = {}
        for route in self.routes:
            if isinstance(route, Route) and not route.param_convertors and route.methods:
                for method in route.methods:
                    self._direct.setdefault((method, route.path), route.app)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            target = self._direct.get((scope["method"], scope["path"]))
            if target is not None:
                scope["app"] = self
                await target(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    runtime: Runtime,
    config: ServerConfig | None = None,
    authenticator: Authenticator | None = None,
    *,
    owns_runtime: bool = False,
    timers: bool = True,
    rate_clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """The ASGI app serving ``runtime``.

    ``authenticator`` defaults to none (auth off: only valid on loopback, which ``ServerConfig.check``
    enforces for ``cra serve``). With ``timers`` the app runs the runtime's housekeeping (session timeouts,
    expiry, heartbeats) on a scheduler thread while it is up. With ``owns_runtime`` shutdown closes the
    runtime (flushing the trace); otherwise shutdown only flushes.
    """
    config = config if config is not None else ServerConfig()
    auth = authenticator if authenticator is not None else Authenticator()
    api = Api(
        runtime=runtime,
        config=config,
        auth=auth,
        limiter=RequestRateLimiter(config.rate_limit_per_second, config.rate_limit_burst, now=rate_clock),
        metrics=ServerMetrics(runtime.trace_stats),
        started=time.monotonic(),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        manager: TimerManager | None = None
        backend: ThreadTimers | None = None
        if timers:
            backend = ThreadTimers(runtime.clock, thread_name="cra-server-timers")
            manager = TimerManager(
                runtime,
                backend,
                sweep_interval=config.sweep_interval_seconds,
                heartbeat_interval=config.heartbeat_interval_seconds,
            ).start()
        # Everything loaded so far lives as long as the process: keep it out of full collections (p99.9).
        gc.collect()
        gc.freeze()
        gc.set_threshold(*_GC_THRESHOLDS)
        try:
            yield
        finally:
            if manager is not None:
                manager.stop()
            if backend is not None:
                backend.close()
            if owns_runtime:
                runtime.close()
            else:
                runtime.flush()

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPException: _http_error,
        Exception: _http_error,
    }
    app = CraApp(routes=_routes(), exception_handlers=handlers, lifespan=lifespan)
    app.state.api = api
    return app


def build_runtime(config: ServerConfig) -> Runtime:
    """The runtime ``cra serve`` runs: the configured storage, timeouts and Atlases (an Atlas that fails to
    load stops the start: the server never runs with part of its policy missing)."""
    runtime = Runtime(
        storage=config.storage,
        session_idle_timeout_seconds=config.session_idle_timeout_seconds,
        session_max_lifetime_seconds=config.session_max_lifetime_seconds,
        max_resolutions_per_session=config.max_resolutions_per_session,
    )
    try:
        for source in config.atlas:
            runtime.load_atlas(source)
    except BaseException:
        runtime.close()
        raise
    return runtime


def build_app(config: ServerConfig, authenticator: Authenticator) -> Starlette:
    """Runtime and app from the configuration (what ``cra serve`` runs in each worker)."""
    return create_app(build_runtime(config), config, authenticator, owns_runtime=True)
