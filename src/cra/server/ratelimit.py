"""Per-credential request rate limiting for the HTTP API (SPEC 7 "Limits"): a token bucket per key.

This protects the server, not a policy: governance rate limits live in Atlas policies and are counted at
execute. Buckets are in memory and per process; a refused request gets 429 with ``Retry-After``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from ..errors import RateLimitedError

__all__ = ["RequestRateLimiter"]

_MAX_BUCKETS = 100_000  # credentials are bounded by the key file; JWT subjects are not, so cap the table


class RequestRateLimiter:
    """``rate`` requests per second per credential with bursts up to ``burst``; ``rate == 0`` turns it off.

    ``now`` is a monotonic clock in seconds (injected so tests never sleep).
    """

    def __init__(self, rate: float, burst: int, *, now: Callable[[], float] = time.monotonic) -> None:
        if rate < 0 or burst < 1:
            raise ValueError("rate must be >= 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._now = now
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Take one token for ``key`` or raise ``RateLimitedError`` with ``retry_after_seconds``."""
        if self.rate == 0:
            return
        now = self._now()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                retry = max(1, math.ceil((1.0 - tokens) / self.rate))
                raise RateLimitedError(
                    f"more than {self.rate:g} requests per second for this credential",
                    details={"limit": "requests_per_second", "retry_after_seconds": retry},
                )
            if len(self._buckets) >= _MAX_BUCKETS and key not in self._buckets:
                # Forget buckets that have refilled completely: they carry no state worth keeping.
                full = [k for k, (t, a) in self._buckets.items() if t + (now - a) * self.rate >= self.burst]
                for k in full:
                    del self._buckets[k]
            self._buckets[key] = (tokens - 1.0, now)
