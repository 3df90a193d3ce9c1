"""Clocks: the one place CRA reads time from (SPEC 6).

A clock is injected into the runtime the way httpx injects a transport, so tests and the conformance runner
drive time by hand and never sleep. Time is integer microseconds since the Unix epoch: integers keep
sliding windows, TTLs and timestamps exact (floats drift at microsecond resolution).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock", "format_timestamp", "parse_timestamp"]

_US = 1_000_000


@runtime_checkable
class Clock(Protocol):
    """What the runtime needs from time: the current instant in microseconds since the epoch (UTC)."""

    def now_us(self) -> int:
        """Microseconds since 1970-01-01T00:00:00Z."""
        ...


class SystemClock:
    """The machine's wall clock."""

    __slots__ = ()

    def now_us(self) -> int:
        return time.time_ns() // 1000

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that moves only when told to: for tests, replays and the conformance runner.

    ``ManualClock("2025-01-01T00:00:00Z")`` starts there; ``advance(seconds)`` moves it forward.
    Thread-safe: several threads may read it while one advances it.
    """

    __slots__ = ("_lock", "_now_us")

    def __init__(self, start: str | datetime | float | int = "2025-01-01T00:00:00Z") -> None:
        self._lock = threading.Lock()
        if isinstance(start, str):
            self._now_us = parse_timestamp(start)
        elif isinstance(start, datetime):
            self._now_us = _datetime_to_us(start)
        else:
            self._now_us = round(start * _US)

    def now_us(self) -> int:
        return self._now_us

    def advance(self, seconds: float) -> None:
        """Move the clock forward (a negative value is refused: time never runs backwards here)."""
        if seconds < 0:
            raise ValueError("ManualClock.advance() takes a non-negative number of seconds")
        with self._lock:
            self._now_us += round(seconds * _US)

    def set(self, when: str | datetime) -> None:
        """Jump to an instant that is not before the current one."""
        target = parse_timestamp(when) if isinstance(when, str) else _datetime_to_us(when)
        with self._lock:
            if target < self._now_us:
                raise ValueError("ManualClock.set() cannot move the clock backwards")
            self._now_us = target

    def __repr__(self) -> str:
        return f"ManualClock({format_timestamp(self._now_us)!r})"


def _datetime_to_us(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("a naive datetime has no time zone; pass an aware one (UTC)")
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * _US + delta.microseconds


def parse_timestamp(text: str) -> int:
    """Parse an ISO 8601 timestamp with a time zone (``Z`` or an offset) into epoch microseconds."""
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not an ISO 8601 timestamp: {text!r}") from exc
    return _datetime_to_us(parsed)


# Formatting a timestamp with datetime costs about a microsecond; the date-and-seconds prefix changes once a
# second, so it is cached and only the six microsecond digits are formatted per call.
_prefix_cache: tuple[int, str] = (-1, "")


def format_timestamp(us: int) -> str:
    """Epoch microseconds as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (SPEC 4.1), always six digits and ``Z``."""
    global _prefix_cache
    seconds, micros = divmod(us, _US)
    cached_second, prefix = _prefix_cache
    if cached_second != seconds:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(seconds))
        _prefix_cache = (seconds, prefix)
    return f"{prefix}{micros:06d}Z"
