"""Sliding-window counters for rate limits and budgets (SPEC 3.1), behind a small protocol.

A window key names one limit for one scope (``<atlas>/<policy>|s:<session>``). ``usage`` reads how much of a
window is used; ``acquire`` checks several windows and consumes all of them atomically, or none.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

from ..errors import CRAError, LimiterUnavailableError

_T = TypeVar("_T")

__all__ = ["GuardedLimiter", "LimitRequest", "Limiter", "MemoryLimiter", "open_limiter"]


class LimitRequest(NamedTuple):
    """Take ``weight`` from the window ``key`` of length ``window_us`` (None: for ever) capped at ``limit``."""

    key: str
    window_us: int | None
    limit: float
    weight: float


@runtime_checkable
class Limiter(Protocol):
    """Counters shared by every session of a runtime (or, with a shared backend, of many runtimes).

    Duties: ``acquire`` is atomic across all its requests (check every window, then consume every window, or
    consume none); a window holds what was consumed in ``(now - window, now]``. A backend that cannot answer
    raises, and the runtime refuses (fail closed).
    """

    def usage(self, key: str, window_us: int | None, now_us: int) -> float:
        """How much of the window is used at ``now_us``."""
        ...

    def acquire(self, requests: Sequence[LimitRequest], now_us: int) -> int:
        """Consume every request, or none: the index of the first request that would pass its limit, or -1
        when all were consumed."""
        ...

    def release(self, requests: Sequence[LimitRequest], now_us: int) -> None:
        """Undo an ``acquire`` made at ``now_us`` with the same requests (its authorisation could not be
        recorded, so it must not count)."""
        ...

    def prune(self, now_us: int) -> int:
        """Housekeeping: forget entries that have left their window; returns how many were dropped."""
        ...

    def close(self) -> None:
        """Release connections; idempotent."""
        ...


class _Window:
    __slots__ = ("entries", "total", "window_us")

    def __init__(self, window_us: int | None) -> None:
        self.entries: deque[tuple[int, float]] = deque()  # unbounded: a full window must refuse, not forget
        self.total = 0.0
        self.window_us = window_us

    def prune(self, window_us: int | None, now_us: int) -> int:
        if window_us is None:
            return 0
        horizon = now_us - window_us
        entries = self.entries
        dropped = 0
        while entries and entries[0][0] <= horizon:
            self.total -= entries.popleft()[1]
            dropped += 1
        if not entries:
            self.total = 0.0  # drop float residue
        return dropped


class MemoryLimiter:
    """In-process counters (``memory://``)."""

    url = "memory://"

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self.version = 0  # bumped by every change, so cached resolutions know when limits moved

    def usage(self, key: str, window_us: int | None, now_us: int) -> float:
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                return 0.0
            window.prune(window_us, now_us)
            return window.total

    def acquire(self, requests: Sequence[LimitRequest], now_us: int) -> int:
        with self._lock:
            windows = []
            for index, request in enumerate(requests):
                window = self._windows.get(request.key)
                if window is None:
                    window = self._windows[request.key] = _Window(request.window_us)
                window.prune(request.window_us, now_us)
                if window.total + request.weight > request.limit:
                    return index
                windows.append(window)
            for window, request in zip(windows, requests, strict=True):
                window.entries.append((now_us, request.weight))
                window.total += request.weight
            self.version += 1
            return -1

    def next_change(self, key: str, window_us: int | None) -> int | None:
        """When the window's usage will next drop on its own (its oldest entry leaves), or None."""
        with self._lock:
            window = self._windows.get(key)
            if window is None or not window.entries or window_us is None:
                return None
            return window.entries[0][0] + window_us

    def release(self, requests: Sequence[LimitRequest], now_us: int) -> None:
        with self._lock:
            for request in requests:
                window = self._windows.get(request.key)
                if window is None:
                    continue
                entries = window.entries
                for index in range(len(entries) - 1, -1, -1):
                    if entries[index] == (now_us, request.weight):
                        del entries[index]
                        window.total -= request.weight
                        self.version += 1
                        break

    def prune(self, now_us: int) -> int:
        with self._lock:
            dropped = 0
            for key, window in list(self._windows.items()):
                dropped += window.prune(window.window_us, now_us)
                if not window.entries:
                    del self._windows[key]
            if dropped:
                self.version += 1
            return dropped

    def snapshot(self) -> dict[str, list[tuple[int, float]]]:
        """Every window's entries (for state reconstruction and tests)."""
        with self._lock:
            return {key: list(w.entries) for key, w in self._windows.items() if w.entries}

    def close(self) -> None:
        """Nothing to release."""


class GuardedLimiter:
    """Wraps a limiter so that a backend failure becomes ``LimiterUnavailableError``: the caller refuses
    (fail closed) with a documented code instead of leaking a driver exception."""

    def __init__(self, inner: Limiter) -> None:
        self.inner = inner
        # Whether the backend can tell when its state moved: the resolution cache needs both.
        self._versioned = hasattr(inner, "version") and hasattr(inner, "next_change")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # url, snapshot, ... when the backend has them

    @property
    def version(self) -> int | None:
        """The backend's change counter, or None when it has none (then nothing limited is cached)."""
        if not self._versioned:
            return None
        version: int = self._call(getattr, self.inner, "version")
        return version

    def next_change(self, key: str, window_us: int | None) -> int | None:
        """When the window's usage next drops on its own (None: never, or the backend cannot tell)."""
        if not self._versioned:
            return None
        moment: int | None = self._call(self.inner.next_change, key, window_us)  # type: ignore[attr-defined]
        return moment

    def _call(self, method: Callable[..., _T], *args: Any) -> _T:
        try:
            return method(*args)
        except CRAError:
            raise
        except Exception as exc:
            raise LimiterUnavailableError(f"the rate-limit backend failed: {type(exc).__name__}") from exc

    def usage(self, key: str, window_us: int | None, now_us: int) -> float:
        return self._call(self.inner.usage, key, window_us, now_us)

    def acquire(self, requests: Sequence[LimitRequest], now_us: int) -> int:
        return self._call(self.inner.acquire, requests, now_us)

    def release(self, requests: Sequence[LimitRequest], now_us: int) -> None:
        self._call(self.inner.release, requests, now_us)

    def prune(self, now_us: int) -> int:
        return self._call(self.inner.prune, now_us)

    def close(self) -> None:
        self.inner.close()


def open_limiter(url: str | Limiter | None) -> Limiter:
    """The limiter a URL names (``memory://``, ``sqlite:///cra.db``); a limiter object passes through."""
    if url is None or url == "memory://":
        return MemoryLimiter()
    if not isinstance(url, str):
        return url
    if url.startswith("sqlite://"):
        from .limiter_sqlite import SqliteLimiter

        return SqliteLimiter(url)
    raise ValueError(f"unknown limiter URL {url!r}: valid schemes are memory://, sqlite://")
