"""flush / close / reads (SPEC 4.5): flush makes everything emitted before it durable, reads flush first,
close flushes and is final, and execute is acknowledged only once its ``action.*`` events are stored."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from cra.errors import InvalidParametersError, RuntimeClosedError, StorageUnavailableError
from cra.trace.storage import open_storage

from .helpers import GateStorage, assert_chain, indexes, make_tracer, rec, shop_runtime, span

# --- the processor ----------------------------------------------------------------------------------------


def test_flush_makes_everything_emitted_before_it_durable() -> None:
    tracer = make_tracer(max_buffered=100)
    for i in range(25):
        tracer.emit(span(f"s{i % 2}", f"op{i}"), [rec(i)])
    assert tracer.storage.read("s0") == [] and tracer.storage.read("s1") == []
    assert tracer.flush() is True
    assert indexes(tracer.storage.read("s0")) == list(range(0, 25, 2))
    assert indexes(tracer.storage.read("s1")) == list(range(1, 25, 2))
    assert tracer.stats()["buffered"] == 0
    assert tracer.flush() is True  # nothing left: still True
    assert tracer.flush(timeout=5) is True
    tracer.close()


def test_flush_with_a_timeout_returns_true_once_done() -> None:
    tracer = make_tracer()
    tracer.emit(span(), [rec(0), rec(1)])
    assert tracer.flush(timeout=10) is True
    assert indexes(tracer.storage.read("session-a")) == [0, 1]
    tracer.close()


def test_flush_with_a_timeout_returns_false_while_another_commit_is_stuck() -> None:
    storage = GateStorage()
    tracer = make_tracer(storage)
    stuck = threading.Thread(target=tracer.emit, args=(span(), [rec(0)]), kwargs={"durable": True})
    stuck.start()  # the commit leader, now waiting inside storage.append
    assert storage.entered.wait(10)
    tracer.emit(span(), [rec(1)])
    assert tracer.flush(timeout=0.05) is False
    storage.release.set()
    stuck.join(10)
    assert not stuck.is_alive()
    assert tracer.flush(timeout=10) is True
    assert indexes(storage.read("session-a")) == [0, 1]
    tracer.close()


def test_flush_with_a_timeout_does_not_wait_for_a_stalled_storage() -> None:
    storage = GateStorage()
    tracer = make_tracer(storage)
    tracer.emit(span(), [rec(0)])
    results: list[bool] = []
    flusher = threading.Thread(target=lambda: results.append(tracer.flush(timeout=0.05)))
    flusher.start()
    try:
        assert storage.entered.wait(10)
        flusher.join(1)  # 20 times the timeout
        assert results == [False]
    finally:
        storage.release.set()
        flusher.join(10)
        tracer.close()


def test_read_flushes_first() -> None:
    tracer = make_tracer()
    tracer.emit(span(), [rec(0), rec(1), rec(2)])
    assert indexes(tracer.read("session-a")) == [0, 1, 2]
    assert indexes(tracer.read("session-a", since_sequence=0)) == [1, 2]
    tracer.close()


def test_close_flushes_is_idempotent_and_refuses_later_emits() -> None:
    tracer = make_tracer(start=True)
    thread = tracer._thread
    assert thread is not None and thread.is_alive()
    tracer.emit(span(), [rec(i) for i in range(5)])
    tracer.close()
    assert indexes(tracer.storage.read("session-a")) == list(range(5))
    assert not thread.is_alive()  # close joins the thread
    tracer.close()  # idempotent
    tracer.close(timeout=1)
    with pytest.raises(StorageUnavailableError) as caught:
        tracer.emit(span(), [rec(5)])
    assert caught.value.code == "STORAGE_UNAVAILABLE"
    with pytest.raises(StorageUnavailableError):
        tracer.emit(span(), [rec(5)], durable=True)
    assert indexes(tracer.storage.read("session-a")) == list(range(5))
    assert tracer.flush() is True


# --- the runtime ------------------------------------------------------------------------------------------


def test_get_trace_right_after_resolve_sees_every_event() -> None:
    runtime = shop_runtime(tracing="deferred")
    try:
        sid = runtime.create_session("agent-1", "Shop").session_id
        sizes = []
        for _ in range(3):
            runtime.resolve(sid)
            events = runtime.get_trace(sid)
            sizes.append(len(events))
            assert events[-1].event_type in ("carp.resolution.completed", "carp.resolution.cached")
            assert_chain(events)
        assert [e.event_type for e in events].count("carp.request.received") == 3
        assert sizes[0] < sizes[1] < sizes[2]
        runtime.resolve(sid)
        assert runtime.verify(sid).event_count == sizes[2] + (sizes[2] - sizes[1])  # verify flushes too
    finally:
        runtime.close()


def test_runtime_flush_and_close_make_the_trace_durable(tmp_path: Path) -> None:
    url = f"jsonl://{tmp_path}"
    runtime = shop_runtime(tracing="deferred", storage=url)
    sid = runtime.create_session("agent-1", "Shop").session_id
    runtime.resolve(sid)
    assert runtime.flush() is True
    first = len(runtime.storage.read(sid))
    runtime.resolve(sid)  # cached
    assert runtime.flush(timeout=10) is True
    flushed = len(runtime.storage.read(sid))
    assert flushed == len(runtime.get_trace(sid)) > first
    runtime.resolve(sid)  # cached again: buffered only...
    runtime.close()  # ... until close flushes it
    runtime.close()
    with pytest.raises(RuntimeClosedError):
        runtime.resolve(sid)
    reopened = open_storage(url)
    try:
        events = reopened.read(sid)
    finally:
        reopened.close()
    assert len(events) == flushed + (flushed - first)
    assert events[-1].event_type == "carp.resolution.cached"
    assert_chain(events)


def test_immediate_runtime_flush_is_true() -> None:
    with shop_runtime() as runtime:
        assert runtime.flush() is True and runtime.flush(timeout=0) is True


def test_execute_returns_after_its_action_events_are_stored() -> None:
    runtime = shop_runtime(tracing="deferred")
    try:
        sid = runtime.create_session("agent-1", "Shop").session_id
        rid = runtime.resolve(sid).resolution_id

        def stored_ending(execution_id: str) -> list[str]:
            events = runtime.storage.read(sid)  # storage itself, not get_trace (which flushes)
            (requested,) = [
                e
                for e in events
                if e.event_type == "action.requested" and e.payload["execution_id"] == execution_id
            ]
            return [e.event_type for e in events if e.span_id == requested.span_id]

        ok = runtime.execute(sid, rid, "shop.read", {"item": "apple"})
        assert ok.status == "success"
        assert stored_ending(ok.execution_id) == [
            "action.requested",
            "action.approved",
            "action.executed",
        ]
        denied = runtime.execute(sid, rid, "shop.delete")
        assert denied.status == "denied"
        assert stored_ending(denied.execution_id) == [
            "action.requested",
            "policy.violated",
            "action.denied",
        ]
        pending = runtime.execute(sid, rid, "shop.transfer", {"amount": 5})
        assert pending.status == "pending_approval"
        assert stored_ending(pending.execution_id) == ["action.requested", "approval.requested"]
        runtime.approve(pending.approval_id, "boss")
        assert runtime.storage.read(sid)[-1].event_type == "approval.granted"
        authorized = runtime.execute(sid, rid, "shop.ship")
        assert authorized.status == "authorized"
        assert stored_ending(authorized.execution_id) == ["action.requested", "action.approved"]
        runtime.complete(authorized.execution_id, result={"shipped": True})
        assert stored_ending(authorized.execution_id)[-1] == "action.executed"
        with pytest.raises(InvalidParametersError):
            runtime.execute(sid, rid, "shop.read", {"item": 7})
        assert runtime.storage.read(sid)[-1].event_type == "action.failed"
        runtime.end_session(sid)
        stored = runtime.storage.read(sid)
        assert stored[-1].event_type == "session.ended"
        assert_chain(stored)
    finally:
        runtime.close()


def test_a_handler_never_runs_before_action_approved_is_stored() -> None:
    runtime = shop_runtime(tracing="deferred")
    seen: list[dict[str, Any]] = []

    def handler(params: dict[str, Any]) -> dict[str, Any]:
        sid = params["sid"]
        events = runtime.storage.read(sid)  # what is durable while the handler runs
        approved = [e for e in events if e.event_type == "action.approved"]
        seen.append(
            {
                "approved": len(approved),
                "last": events[-1].event_type,
                "executed": sum(e.event_type == "action.executed" for e in events),
            }
        )
        return {"ok": True}

    runtime.register("shop.ship", handler)
    try:
        sid = runtime.create_session("agent-1", "Shop").session_id
        rid = runtime.resolve(sid).resolution_id
        for _ in range(4):
            assert runtime.execute(sid, rid, "shop.ship", {"sid": sid}).status == "success"
        assert seen == [{"approved": n, "last": "action.approved", "executed": n - 1} for n in (1, 2, 3, 4)]
    finally:
        runtime.close()
