"""Builders for the deferred-tracing tests (SPEC 4.5): tracers, spans, storages that fail or stall, an
Atlas exercising every execute outcome, and a normaliser that compares chains across tracing modes."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

import cra
from cra.trace.event import TraceEvent
from cra.trace.processor import DeferredTracer
from cra.trace.storage.memory import MemoryStorage
from cra.trace.tracer import Record, Span

START = "2025-01-01T00:00:00Z"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def span(session_id: str = "session-a", span_id: str | None = None) -> Span:
    """A span of ``session_id`` (the root span unless ``span_id`` is given)."""
    root = f"{session_id}-root"
    if span_id is None:
        return Span(session_id, f"{session_id}-trace", root, None)
    return Span(session_id, f"{session_id}-trace", span_id, root)


def rec(index: int, event_type: str = "test.event") -> Record:
    return Record(event_type, {"index": index})


def make_tracer(storage: Any = None, **options: Any) -> DeferredTracer:
    """A tracer without its background thread (the test decides when work is drained), unless
    ``start=True`` is passed."""
    options.setdefault("start", False)
    return DeferredTracer(
        storage if storage is not None else MemoryStorage(),
        options.pop("clock", None) or cra.ManualClock(START),
        cra.SequentialIds(),
        **options,
    )


def indexes(events: Sequence[TraceEvent]) -> list[int]:
    """The ``index`` payloads of the ``test.event`` events, in chain order."""
    return [e.payload["index"] for e in events if e.event_type == "test.event"]


def assert_chain(events: Sequence[TraceEvent]) -> None:
    """Gapless sequences from 0, unique event ids, and a chain that verifies."""
    assert [e.sequence for e in events] == list(range(len(events)))
    assert len({e.event_id for e in events}) == len(events)
    result = cra.verify_chain(events)
    assert result.valid, result


class FlakyStorage(MemoryStorage):
    """Memory storage whose ``append`` raises ``OSError`` the next ``failures`` times (``failures=-1``:
    until ``heal()``). A refused batch is not stored at all, as the storage contract demands. ``reached``
    is set once ``target`` events are stored."""

    def __init__(self, failures: int = 0, target: int | None = None) -> None:
        super().__init__("memory://flaky")
        self.failures = failures
        self.refused = 0
        self.accepted = 0
        self.stored = 0
        self.target = target
        self.reached = threading.Event()
        self._guard = threading.Lock()

    def heal(self) -> None:
        with self._guard:
            self.failures = 0

    def append(self, events: Sequence[TraceEvent]) -> None:
        with self._guard:
            if self.failures:
                if self.failures > 0:
                    self.failures -= 1
                self.refused += 1
                raise OSError("disk on fire")
        super().append(events)
        with self._guard:
            self.accepted += 1
            self.stored += len(events)
            if self.target is not None and self.stored >= self.target:
                self.reached.set()


class GateStorage(MemoryStorage):
    """Memory storage whose ``append`` waits until ``release`` is set (a stalled disk); ``entered`` is set
    once an append is waiting."""

    def __init__(self) -> None:
        super().__init__("memory://gate")
        self.entered = threading.Event()
        self.release = threading.Event()

    def append(self, events: Sequence[TraceEvent]) -> None:
        self.entered.set()
        assert self.release.wait(10), "the test never released the storage"
        super().append(events)


# --- an Atlas with every execute outcome ------------------------------------------------------------------


def _action(action_id: str, **fields: Any) -> dict[str, Any]:
    return {"action_id": action_id, "name": action_id, "description": f"The {action_id} action", **fields}


SHOP_ATLAS: dict[str, Any] = {
    "atlas_version": "1.0",
    "atlas_id": "org.example.shop",
    "version": "1.0.0",
    "name": "Shop",
    "description": "An Atlas for the deferred-tracing tests",
    "capabilities": [
        {
            "capability_id": "shop.all",
            "name": "Everything",
            "actions": ["shop.read", "shop.transfer", "shop.ship", "shop.delete"],
        }
    ],
    "policies": [
        {"policy_id": "no-delete", "type": "deny", "actions": ["shop.delete"]},
        {"policy_id": "approve-money", "type": "require_approval", "actions": ["shop.transfer"]},
        {"policy_id": "allow-all", "type": "allow"},
    ],
    "actions": [
        _action(
            "shop.read",
            parameters_schema={
                "type": "object",
                "properties": {"item": {"type": "string"}},
                "required": ["item"],
            },
        ),
        _action("shop.transfer"),
        _action("shop.ship"),  # no handler: the caller runs it and reports with complete()
        _action("shop.delete"),
    ],
}


def shop_runtime(**options: Any) -> cra.Runtime:
    """A runtime with the shop Atlas and handlers for ``shop.read`` and ``shop.transfer``."""
    options.setdefault("clock", cra.ManualClock(START))
    options.setdefault("ids", cra.SequentialIds())
    runtime = cra.Runtime(**options)
    runtime.load_atlas(SHOP_ATLAS)
    runtime.register("shop.read", lambda params: {"item": params["item"], "stock": 3})
    runtime.register("shop.transfer", lambda params: {"moved": params.get("amount", 0)})
    return runtime


def normalise(events: Sequence[TraceEvent]) -> list[dict[str, Any]]:
    """Events with every generated id (event, trace, span, session and ids inside payloads) renamed by order
    of first appearance, hashes left out: equal results mean the same event types, payloads, sequences,
    timestamps and span structure (which events share a span, which span is whose parent)."""
    names: dict[str, str] = {}

    def rename(value: Any) -> Any:
        if isinstance(value, str):
            return UUID.sub(lambda m: names.setdefault(m.group(0), f"<id{len(names)}>"), value)
        if isinstance(value, dict):
            return {k: rename(v) for k, v in sorted(value.items())}
        if isinstance(value, list):
            return [rename(v) for v in value]
        return value

    out = []
    for e in events:
        out.append(
            {
                "event_id": rename(e.event_id),
                "session_id": rename(e.session_id),
                "trace_id": rename(e.trace_id),
                "span_id": rename(e.span_id),
                "parent_span_id": rename(e.parent_span_id),
                "sequence": e.sequence,
                "timestamp": e.timestamp,
                "event_type": e.event_type,
                "payload": rename(e.payload),
            }
        )
    return out
