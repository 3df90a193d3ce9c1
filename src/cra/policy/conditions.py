"""Policy and context-pack conditions (SPEC 3.1), compiled once per Atlas.

A condition set holds when every condition in it holds: ``risk_tiers`` (the effective risk is listed),
``agents`` (a glob matches the agent), ``capabilities`` (the request named one), ``context_matches`` (each
key equals the request's context value as a string) and ``time_window`` (the clock is inside the window on
one of its days, in its time zone).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..trace.canonical import canonical_json
from .glob import Matcher, compile_globs

__all__ = [
    "RISK_RANK",
    "RISK_TIERS",
    "CompiledConditions",
    "EvalContext",
    "TimeWindow",
    "compile_conditions",
    "context_value_as_string",
]

RISK_TIERS = ("low", "medium", "high", "critical")
RISK_RANK = {tier: rank for rank, tier in enumerate(RISK_TIERS)}
_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


@dataclass(slots=True)
class EvalContext:
    """What a request brings to policy evaluation."""

    task_rank: int
    agent_id: str
    capabilities: frozenset[str]
    context: Mapping[str, Any]
    now_us: int
    session_id: str


def context_value_as_string(value: Any) -> str:
    """How a request context value compares with a ``context_matches`` string: strings as they are, other
    JSON values as their canonical JSON (``true``, ``3``, ``1.5``, ``null``)."""
    if isinstance(value, str):
        return value
    return canonical_json(value).decode("utf-8")


class TimeWindow:
    """``start``..``end`` (HH:MM, start inclusive, end exclusive; a window whose end is not after its start
    wraps past midnight and belongs to the day it started; equal start and end mean the whole day) on
    ``days`` (all days when absent) in ``timezone`` (IANA, default UTC)."""

    __slots__ = ("_cache", "days", "end", "start", "tz")

    def __init__(self, start: str, end: str, timezone: str = "UTC", days: tuple[str, ...] = ()) -> None:
        self.start = parse_hhmm(start)
        self.end = parse_hhmm(end)
        self.tz = ZoneInfo(timezone)
        self.days = frozenset(_DAYS[d] for d in days) if days else frozenset(range(7))
        self._cache: tuple[int, int, int] = (-1, 0, 0)

    def _local(self, now_us: int) -> tuple[int, int]:
        minute = now_us // 60_000_000
        cached_minute, weekday, minute_of_day = self._cache
        if cached_minute != minute:
            local = datetime.fromtimestamp(minute * 60, self.tz)
            weekday, minute_of_day = local.weekday(), local.hour * 60 + local.minute
            self._cache = (minute, weekday, minute_of_day)
        return weekday, minute_of_day

    def contains(self, now_us: int) -> bool:
        weekday, m = self._local(now_us)
        if self.start == self.end:
            return weekday in self.days
        if self.start < self.end:
            return weekday in self.days and self.start <= m < self.end
        if m >= self.start:
            return weekday in self.days
        return m < self.end and (weekday - 1) % 7 in self.days


def parse_hhmm(text: str) -> int:
    """``"HH:MM"`` (or ``"HH:MM:SS"``) as minutes after midnight; ``ValueError`` if malformed."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise ValueError(f"time must be HH:MM, got {text!r}")
    hours, minutes = int(parts[0]), int(parts[1])
    if hours > 23 or minutes > 59 or (len(parts) == 3 and int(parts[2]) > 59):
        raise ValueError(f"time out of range: {text!r}")
    return hours * 60 + minutes


class CompiledConditions:
    """A condition set ready to evaluate: globs compiled, sets built, the time zone loaded."""

    __slots__ = (
        "_agent_cache",
        "agents",
        "capabilities",
        "context_matches",
        "risk_ranks",
        "time_dependent",
        "time_window",
    )

    def __init__(self, raw: Mapping[str, Any]) -> None:
        tiers = raw.get("risk_tiers")
        self.risk_ranks = frozenset(RISK_RANK[t] for t in tiers) if tiers is not None else None
        agents = raw.get("agents")
        self.agents: Matcher | None = compile_globs(agents) if agents is not None else None
        # Agents are few and stable (one per session), so each verdict is cached instead of re-matched.
        self._agent_cache: dict[str, bool] = {}
        caps = raw.get("capabilities")
        self.capabilities = frozenset(caps) if caps is not None else None
        matches = raw.get("context_matches")
        self.context_matches = tuple(matches.items()) if matches else None
        window = raw.get("time_window")
        self.time_window = (
            TimeWindow(
                window.get("start", "00:00"),
                window.get("end", "00:00"),
                window.get("timezone", "UTC"),
                tuple(window.get("days", ())),
            )
            if window is not None
            else None
        )
        self.time_dependent = self.time_window is not None

    def holds(self, ctx: EvalContext, risk_rank: int) -> bool:
        if self.risk_ranks is not None and risk_rank not in self.risk_ranks:
            return False
        if self.agents is not None:
            hit = self._agent_cache.get(ctx.agent_id)
            if hit is None:
                hit = self.agents(ctx.agent_id)
                if len(self._agent_cache) < 4096:
                    self._agent_cache[ctx.agent_id] = hit
            if not hit:
                return False
        if self.capabilities is not None and self.capabilities.isdisjoint(ctx.capabilities):
            return False
        if self.context_matches is not None:
            context = ctx.context
            for key, expected in self.context_matches:
                if key not in context or context_value_as_string(context[key]) != expected:
                    return False
        return self.time_window is None or self.time_window.contains(ctx.now_us)


def compile_conditions(raw: Mapping[str, Any] | None) -> CompiledConditions | None:
    """Compile a ``conditions`` object; None (or an empty object) means "always holds"."""
    if not raw:
        return None
    return CompiledConditions(raw)
