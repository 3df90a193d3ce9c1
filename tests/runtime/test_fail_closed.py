"""A limiter backend that fails makes the runtime refuse with a documented code, never allow (SPEC 13)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

import cra
from cra.errors import LimiterUnavailableError
from cra.policy.limiter import LimitRequest, MemoryLimiter

ATLAS: dict[str, Any] = {
    "atlas_version": "1.0",
    "atlas_id": "org.example.limited",
    "version": "1.0.0",
    "name": "Limited",
    "description": "One rate-limited action",
    "policies": [
        {
            "policy_id": "rl",
            "type": "rate_limit",
            "actions": ["api.*"],
            "parameters": {"max_calls": 5, "window_seconds": 60},
        }
    ],
    "actions": [{"action_id": "api.call", "name": "Call", "description": "Call"}],
}


class BrokenLimiter(MemoryLimiter):
    """Works until ``broken`` is set, then fails like a backend whose server went away."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False

    def usage(self, key: str, window_us: int | None, now_us: int) -> float:
        if self.broken:
            raise ConnectionError("limiter backend is down")
        return super().usage(key, window_us, now_us)

    def acquire(self, requests: Sequence[LimitRequest], now_us: int) -> int:
        if self.broken:
            raise ConnectionError("limiter backend is down")
        return super().acquire(requests, now_us)


def test_a_failing_limiter_refuses_resolve_and_execute_with_limiter_unavailable() -> None:
    limiter = BrokenLimiter()
    runtime = cra.Runtime(clock=cra.ManualClock(), limiter=limiter, resolution_cache=False)
    runtime.load_atlas(ATLAS)
    calls: list[int] = []
    runtime.register("api.call", lambda params: calls.append(1) or {"ok": True})
    sid = runtime.create_session("agent-1", "Call").session_id
    resolution = runtime.resolve(sid)
    limiter.broken = True
    with pytest.raises(LimiterUnavailableError) as caught:
        runtime.resolve(sid)
    assert (caught.value.code, caught.value.http_status) == ("LIMITER_UNAVAILABLE", 503)
    with pytest.raises(LimiterUnavailableError):
        runtime.execute(sid, resolution.resolution_id, "api.call", {})
    assert calls == []  # nothing ran without being counted
    assert runtime.verify(sid).valid
    runtime.close()
