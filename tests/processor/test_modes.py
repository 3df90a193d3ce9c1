"""Immediate and deferred tracing produce identical chains for the same operations (SPEC 4.5)."""

from __future__ import annotations

from typing import Any

import pytest

import cra
from cra.trace.event import TraceEvent

from .helpers import START, assert_chain, normalise, shop_runtime

MODES = ("immediate", "deferred")


def run_script(tracing: str, **options: Any) -> tuple[list[TraceEvent], dict[str, Any]]:
    """create_session, resolve twice (the second cached), execute: success, denied, pending approval,
    approved and run, authorized then completed; end_session. Returns the chain and the responses."""
    clock = cra.ManualClock(START)
    runtime = shop_runtime(clock=clock, tracing=tracing, **options)

    def slow_read(params: dict[str, Any]) -> dict[str, Any]:
        clock.advance(0.25)  # a handler that takes 250 ms
        return {"item": params["item"]}

    runtime.register("shop.read", slow_read)
    out: dict[str, Any] = {}
    try:
        sid = runtime.create_session("agent-1", "Buy things ✓", metadata={"k": "v"}).session_id
        clock.advance(1)
        first = runtime.resolve(sid, context={"user": "ann"})
        clock.advance(1)
        second = runtime.resolve(sid, context={"user": "ann"})
        assert second.resolution_id != first.resolution_id
        rid = first.resolution_id
        clock.advance(1)
        out["success"] = runtime.execute(sid, rid, "shop.read", {"item": "apple"}).status
        clock.advance(1)
        out["denied"] = runtime.execute(sid, rid, "shop.delete").status
        clock.advance(1)
        pending = runtime.execute(sid, rid, "shop.transfer", {"amount": 5})
        out["pending"] = pending.status
        clock.advance(1)
        runtime.approve(pending.approval_id, "boss", "fine")
        clock.advance(1)
        out["approved"] = runtime.execute(sid, rid, "shop.transfer", {"amount": 5}).status
        clock.advance(1)
        authorized = runtime.execute(sid, rid, "shop.ship", {"to": "home"}, idempotency_key="ship-1")
        out["authorized"] = authorized.status
        clock.advance(2)
        out["completed"] = runtime.complete(authorized.execution_id, result={"shipped": True}).status
        clock.advance(1)
        runtime.end_session(sid)
        events = runtime.get_trace(sid)
        out["verify"] = runtime.verify(sid).valid
        out["stats"] = runtime.trace_stats()
        return events, out
    finally:
        runtime.close()


@pytest.fixture(scope="module")
def chains() -> dict[str, tuple[list[TraceEvent], dict[str, Any]]]:
    return {mode: run_script(mode) for mode in MODES}


def test_the_script_covers_every_outcome(chains: dict) -> None:
    for events, out in chains.values():
        assert {k: v for k, v in out.items() if k not in ("stats", "verify")} == {
            "success": "success",
            "denied": "denied",
            "pending": "pending_approval",
            "approved": "success",
            "authorized": "authorized",
            "completed": "success",
        }
        types = [e.event_type for e in events]
        for kind in (
            "session.started",
            "carp.resolution.completed",
            "carp.resolution.cached",
            "policy.violated",
            "action.denied",
            "approval.requested",
            "approval.granted",
            "action.executed",
            "session.ended",
        ):
            assert kind in types, kind
        assert types.count("action.executed") == 3


def test_both_chains_verify(chains: dict) -> None:
    for events, out in chains.values():
        assert out["verify"] is True
        assert_chain(events)
    assert chains["immediate"][1]["stats"]["mode"] == "immediate"
    assert chains["deferred"][1]["stats"]["mode"] == "deferred"


def test_event_types_sequences_and_timestamps_are_identical(chains: dict) -> None:
    a, b = chains["immediate"][0], chains["deferred"][0]
    assert [e.event_type for e in a] == [e.event_type for e in b]
    assert [e.sequence for e in a] == [e.sequence for e in b]
    assert [e.timestamp for e in a] == [e.timestamp for e in b]
    assert len({e.timestamp for e in a}) > 5  # the clock moved: timestamps are really compared


def test_payloads_and_span_structure_are_identical_up_to_generated_ids(chains: dict) -> None:
    a, b = (normalise(chains[mode][0]) for mode in MODES)
    assert a == b
    spans = {e["span_id"] for e in a}
    assert len(spans) > 5  # several spans, each operation its own
    root = a[0]["span_id"]
    assert a[0]["parent_span_id"] is None
    assert all(e["parent_span_id"] == root for e in a if e["span_id"] != root)
    by_type = {e["event_type"]: e for e in a}
    assert by_type["action.executed"]["payload"]["duration_ms"] in (0, 250, 2000)


def test_the_execute_span_holds_its_request_and_its_ending(chains: dict) -> None:
    for events, _out in chains.values():
        for requested in (e for e in events if e.event_type == "action.requested"):
            same_span = [e.event_type for e in events if e.span_id == requested.span_id]
            assert same_span[0] == "action.requested"
            assert same_span[-1] in (
                "action.executed",
                "action.denied",
                "approval.requested",
                "action.failed",
            )


def test_diff_traces_finds_them_identical(chains: dict) -> None:
    a, b = chains["immediate"][0], chains["deferred"][0]
    diff = cra.diff_traces(a, b)
    assert diff.verdict == "identical", diff


def test_a_tiny_deferred_buffer_gives_the_same_chain(chains: dict) -> None:
    tiny, out = run_script("deferred", trace_buffer=4)  # producers wait and commit inline all along
    assert out["verify"] is True
    assert out["stats"]["dropped"] == 0
    assert normalise(tiny) == normalise(chains["immediate"][0])
    assert cra.diff_traces(chains["immediate"][0], tiny).verdict == "identical"
