"""Helpers shared by the TRACE tests: hand-built chains and a real chain produced by ``cra.Runtime``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cra
from cra.trace.event import TraceEvent
from cra.trace.tracer import Record, Span, chain_records

TIMESTAMP = "2025-01-01T00:00:00.000000Z"

NOTES_ATLAS: dict[str, Any] = {
    "atlas_version": "1.0",
    "atlas_id": "org.example.notes",
    "version": "1.0.0",
    "name": "Notes",
    "description": "Read notes",
    "capabilities": [{"capability_id": "notes.read", "name": "Read", "actions": ["notes.get"]}],
    "policies": [{"policy_id": "allow-get", "type": "allow", "actions": ["notes.get"]}],
    "actions": [
        {
            "action_id": "notes.get",
            "name": "Get",
            "description": "Get a note",
            "risk_tier": "low",
            "parameters_schema": {
                "type": "object",
                "properties": {"note_id": {"type": "string"}},
                "required": ["note_id"],
            },
        }
    ],
}


def build_chain(
    count: int,
    *,
    session_id: str = "session-a",
    payloads: Sequence[dict[str, Any]] | None = None,
    event_type: str = "test.event",
) -> list[TraceEvent]:
    """``count`` chained events of one session, one span per event (the first is the root span)."""
    ids = cra.SequentialIds()
    trace_id = ids()
    root = ids()
    events: list[TraceEvent] = []
    head = None
    for i in range(count):
        span = Span(session_id, trace_id, root if i == 0 else ids(), None if i == 0 else root)
        payload = payloads[i] if payloads is not None else {"index": i, "note": f"event {i}"}
        [event] = chain_records(span, [Record(event_type, payload)], head, TIMESTAMP, ids)
        events.append(event)
        head = (event.sequence, event.event_hash)
    return events


def run_notes_session(
    storage: str | cra.TraceStorage = "memory://",
    *,
    context: dict[str, Any] | None = None,
    ids_start: int = 1,
    start: str = "2025-01-01T00:00:00Z",
) -> tuple[cra.Runtime, str]:
    """A real session: create_session, resolve, execute (allowed, handler runs); returns (runtime, session_id)."""
    runtime = cra.Runtime(clock=cra.ManualClock(start), ids=cra.SequentialIds(ids_start), storage=storage)
    runtime.load_atlas(NOTES_ATLAS)
    runtime.register("notes.get", lambda params: {"text": f"note {params['note_id']}"})
    session = runtime.create_session("agent-1", "Read notes ✓ 日本語")
    resolution = runtime.resolve(session.session_id, context=context)
    response = runtime.execute(session.session_id, resolution.resolution_id, "notes.get", {"note_id": "n1"})
    assert response.status == "success"
    return runtime, session.session_id
