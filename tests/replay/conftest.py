"""Fixtures of the replay tests: a small Atlas to edit, and a runtime driven by a manual clock."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

import cra
from cra.trace.event import GENESIS_HASH

START = "2025-01-01T09:00:00Z"  # a Wednesday, inside office hours

MANIFEST: dict[str, Any] = {
    "atlas_version": "1.0",
    "atlas_id": "org.example.desk",
    "version": "1.0.0",
    "name": "Help desk",
    "description": "The Atlas the replay tests edit",
    "capabilities": [
        {
            "capability_id": "tickets",
            "name": "Tickets",
            "description": "tickets",
            "actions": ["ticket.read", "ticket.reply"],
        },
        {
            "capability_id": "refunds",
            "name": "Refunds",
            "description": "refunds",
            "actions": ["refund.issue"],
        },
    ],
    "actions": [
        {
            "action_id": "ticket.read",
            "name": "Read",
            "description": "Read a ticket",
            "risk_tier": "low",
            "parameters_schema": {
                "type": "object",
                "properties": {"ticket_id": {"type": "string"}},
                "additionalProperties": False,
            },
        },
        {"action_id": "ticket.reply", "name": "Reply", "description": "Reply", "risk_tier": "medium"},
        {"action_id": "refund.issue", "name": "Refund", "description": "Refund", "risk_tier": "medium"},
        {"action_id": "customer.delete", "name": "Delete", "description": "Delete", "risk_tier": "low"},
    ],
    "policies": [
        {"policy_id": "allow-tickets", "type": "allow", "actions": ["ticket.*"]},
        {"policy_id": "allow-refunds", "type": "allow", "actions": ["refund.*"]},
        {
            "policy_id": "no-deletes",
            "type": "deny",
            "actions": ["customer.*"],
            "parameters": {"reason": "Deletes go through privacy"},
        },
    ],
}


def manifest(**changes: Any) -> dict[str, Any]:
    """A deep copy of ``MANIFEST`` with top-level keys replaced."""
    out = copy.deepcopy(MANIFEST)
    out.update(changes)
    return out


def edited(edit: Any, version: str = "1.1.0") -> cra.Atlas:
    """A new version of the test Atlas: ``edit(manifest_dict)`` changes a copy in place."""
    out = manifest(version=version)
    edit(out)
    return cra.load_atlas(out)


def rechained(events: list[cra.TraceEvent]) -> list[cra.TraceEvent]:
    """The events with sequences and hashes made consistent again: a trace as a writer could have written it
    (for traces a test composes; the replay must accept them as it accepts any valid chain)."""
    out: list[cra.TraceEvent] = []
    previous = GENESIS_HASH
    for sequence, event in enumerate(events):
        made = cra.TraceEvent(
            event_id=event.event_id,
            trace_id=event.trace_id,
            span_id=event.span_id,
            parent_span_id=event.parent_span_id,
            session_id=event.session_id,
            sequence=sequence,
            timestamp=event.timestamp,
            event_type=event.event_type,
            payload=dict(event.payload),
            previous_event_hash=previous,
        )
        out.append(made)
        previous = made.event_hash
    return out


def ok(_parameters: dict[str, Any]) -> dict[str, bool]:
    """A handler that succeeds."""
    return {"ok": True}


@pytest.fixture
def clock() -> cra.ManualClock:
    """The manual clock every test runtime reads."""
    return cra.ManualClock(START)


@pytest.fixture
def runtime(clock: cra.ManualClock) -> Iterator[cra.Runtime]:
    """A runtime with the test Atlas loaded and a handler for every ticket action."""
    with cra.Runtime(clock=clock, storage="memory://", tracing="immediate") as rt:
        rt.load_atlas(manifest())
        rt.register("ticket.read", ok)
        rt.register("ticket.reply", ok)
        yield rt
