"""``/v1/health`` (no auth: load balancers call it) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .._endpoint import Api
from ..auth import Principal
from ..metrics import CONTENT_TYPE
from ..responses import json_response

__all__ = ["health", "metrics"]

_PRESSURE_DEGRADED = 0.9


def _checks(api: Api) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    try:
        api.runtime.storage.head("00000000-0000-0000-0000-000000000000")
        checks["storage"] = {"status": "ok", "url": api.runtime.storage.url.split("?", 1)[0]}
    except Exception as exc:  # the check reports, it never raises
        checks["storage"] = {"status": "error", "error": type(exc).__name__}
    stats = api.runtime.trace_stats()
    pressure = float(stats.get("pressure", 0.0))
    checks["buffer"] = {
        "status": "ok" if pressure < _PRESSURE_DEGRADED else "degraded",
        "buffered": stats.get("buffered", 0),
        "pressure": pressure,
        "dropped": stats.get("dropped", 0),
    }
    return checks


async def health(api: Api, request: Request, principal: Principal | None) -> Response:
    """``{status: ok|degraded|error, version, uptime_seconds, checks: {storage, buffer}}``; 503 when
    storage fails."""
    checks = await api.call(_checks, api)
    storage_ok = checks["storage"]["status"] == "ok"
    status = "error" if not storage_ok else ("ok" if checks["buffer"]["status"] == "ok" else "degraded")
    body = {
        "status": status,
        "version": api.version,
        "uptime_seconds": round(time.monotonic() - api.started, 3),
        "checks": checks,
    }
    return json_response(body, 200 if storage_ok else 503)


async def metrics(api: Api, request: Request, principal: Principal) -> Response:
    """Prometheus metrics: requests, latencies, decisions, trace buffer stats, storage errors."""
    return Response(api.metrics.render(), media_type=CONTENT_TYPE)
