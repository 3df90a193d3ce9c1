"""Semantic diff of two traces (SPEC 4.6): what changed, ignoring ids, timestamps and hashes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .event import TraceEvent

__all__ = ["Difference", "TraceDiff", "diff_traces"]

# Generated identifiers: they differ between any two runs and say nothing about behaviour.
_IGNORED_PAYLOAD_KEYS = frozenset(
    {
        "execution_id",
        "resolution_id",
        "request_id",
        "approval_id",
        "event_id",
        "span_id",
        "trace_id",
        "session_id",
    }
)
# Timing: differences here are expected between runs and are reported as minor.
_MINOR_KEYS = frozenset({"duration_ms", "uptime_ms", "evaluation_ms", "lag_ms"})


@dataclass(frozen=True, slots=True)
class Difference:
    """One difference: a JSON pointer into the event list, its kind and its significance."""

    path: str
    type: str  # added | removed | value_changed
    significance: str  # minor | major
    a: Any = None
    b: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "type": self.type,
            "significance": self.significance,
            "a": self.a,
            "b": self.b,
        }


@dataclass(frozen=True, slots=True)
class TraceDiff:
    """The verdict (``identical``, ``semantically_equivalent`` or ``different``) and every difference."""

    verdict: str
    differences: list[Difference] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "differences": [d.to_dict() for d in self.differences]}


def _as_mapping(event: Mapping[str, Any] | TraceEvent) -> Mapping[str, Any]:
    return event.to_dict() if isinstance(event, TraceEvent) else event


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _compare(a: Any, b: Any, path: str, key: str, out: list[Difference]) -> None:
    significance = "minor" if key in _MINOR_KEYS else "major"
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in a:
            if k in _IGNORED_PAYLOAD_KEYS:
                continue
            sub = f"{path}/{_escape(k)}"
            if k not in b:
                out.append(Difference(sub, "removed", "minor" if k in _MINOR_KEYS else "major", a[k], None))
            else:
                _compare(a[k], b[k], sub, k, out)
        for k in b:
            if k not in a and k not in _IGNORED_PAYLOAD_KEYS:
                sub = f"{path}/{_escape(k)}"
                out.append(Difference(sub, "added", "minor" if k in _MINOR_KEYS else "major", None, b[k]))
        return
    if isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            sub = f"{path}/{i}"
            if i >= len(b):
                out.append(Difference(sub, "removed", significance, a[i], None))
            elif i >= len(a):
                out.append(Difference(sub, "added", significance, None, b[i]))
            else:
                _compare(a[i], b[i], sub, key, out)
        return
    if a != b or type(a) is not type(b):
        out.append(Difference(path, "value_changed", significance, a, b))


def diff_traces(
    a: Sequence[Mapping[str, Any] | TraceEvent], b: Sequence[Mapping[str, Any] | TraceEvent]
) -> TraceDiff:
    """Compare two traces event by event.

    Only ``event_type`` and ``payload`` are compared; ids, timestamps, hashes and sequence numbers are
    ignored, as are generated ids inside payloads. Timing fields (``duration_ms``, ...) are minor; everything
    else (decisions, action ids, event types, an added or removed event) is major.
    """
    out: list[Difference] = []
    for i in range(max(len(a), len(b))):
        if i >= len(b):
            out.append(Difference(f"/{i}", "removed", "major", _as_mapping(a[i]).get("event_type"), None))
            continue
        if i >= len(a):
            out.append(Difference(f"/{i}", "added", "major", None, _as_mapping(b[i]).get("event_type")))
            continue
        ea, eb = _as_mapping(a[i]), _as_mapping(b[i])
        if ea.get("event_type") != eb.get("event_type"):
            out.append(
                Difference(
                    f"/{i}/event_type", "value_changed", "major", ea.get("event_type"), eb.get("event_type")
                )
            )
        _compare(ea.get("payload", {}), eb.get("payload", {}), f"/{i}/payload", "", out)
    if not out:
        verdict = "identical"
    elif all(d.significance == "minor" for d in out):
        verdict = "semantically_equivalent"
    else:
        verdict = "different"
    return TraceDiff(verdict, out)
