"""A failing trace storage (SPEC 4.5): the processor retries, keeps what it could not write and writes it
once storage recovers: in order, exactly once, on a chain that verifies. Nothing is lost because storage
hiccuped."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from cra.errors import StorageUnavailableError
from cra.trace import processor
from cra.trace.storage.memory import MemoryStorage

from .helpers import (
    FlakyStorage,
    assert_chain,
    indexes,
    make_tracer,
    rec,
    shop_runtime,
    span,
)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The processor's retries without their back-off waits (the retries themselves still happen)."""
    monkeypatch.setattr(
        processor, "time", SimpleNamespace(sleep=lambda _seconds: None, monotonic=time.monotonic)
    )


def test_inline_commit_retries_a_few_refusals_and_stores_everything_once() -> None:
    storage = FlakyStorage(failures=3)
    tracer = make_tracer(storage)
    for i in range(10):
        tracer.emit(span(), [rec(i)])
    tracer.emit(span("session-a", "exec"), [rec(10), rec(11)], durable=True)  # retried inline
    assert storage.refused == 3
    events = storage.read("session-a")
    assert indexes(events) == list(range(12))
    assert_chain(events)
    stats = tracer.stats()
    assert (stats["buffered"], stats["written"], stats["failing"]) == (0, 12, False)
    tracer.close()


def test_background_thread_retries_and_stores_everything_once() -> None:
    storage = FlakyStorage(failures=4, target=30)
    tracer = make_tracer(storage, start=True, flush_interval=0.01, batch_size=8, chunk_size=4)
    for i in range(30):
        tracer.emit(span(f"s{i % 2}", f"op{i}"), [rec(i)])
    assert storage.reached.wait(10), "the background thread never stored the events"
    assert storage.refused == 4
    for n in (0, 1):
        events = storage.read(f"s{n}")
        assert indexes(events) == list(range(n, 30, 2))
        assert_chain(events)
    assert tracer.stats()["written"] == 30
    tracer.close()


def test_storage_that_keeps_failing_keeps_the_records_until_it_recovers(fast_retries: None) -> None:
    storage = FlakyStorage(failures=-1)  # refuses until healed
    tracer = make_tracer(storage)
    for i in range(3):
        tracer.emit(span(), [rec(i)])
    with pytest.raises(StorageUnavailableError) as caught:  # retained: work that already happened
        tracer.emit(span("session-a", "exec"), [rec(3)], durable=True, retain=True)
    assert caught.value.code == "STORAGE_UNAVAILABLE"
    assert isinstance(caught.value.__cause__, OSError)
    stats = tracer.stats()
    assert stats["buffered"] == 4 and stats["failing"] is True
    assert (stats["written"], stats["dropped"]) == (0, 0)
    assert storage.read("session-a") == []

    tracer.emit(span(), [rec(4)])  # still accepted into the buffer meanwhile
    storage.heal()
    assert tracer.flush() is True
    events = storage.read("session-a")
    assert indexes(events) == list(range(5))  # once each, in emit order
    assert_chain(events)
    stats = tracer.stats()
    assert (stats["buffered"], stats["failing"], stats["written"]) == (0, False, 5)
    tracer.emit(span(), [rec(5)], durable=True)
    assert indexes(storage.read("session-a")) == list(range(6))
    assert_chain(storage.read("session-a"))
    tracer.close()


def test_a_refused_durable_emit_that_is_not_retained_is_withdrawn(fast_retries: None) -> None:
    # The caller was told the operation failed (its state did not change): writing it later would record
    # something that did not happen, and a retry would record it twice.
    storage = FlakyStorage(failures=-1)
    tracer = make_tracer(storage)
    tracer.emit(span(), [rec(0)])
    with pytest.raises(StorageUnavailableError):
        tracer.emit(span(), [rec(1)], durable=True)
    assert tracer.stats()["buffered"] == 1
    storage.heal()
    tracer.emit(span(), [rec(2)], durable=True)
    assert indexes(storage.read("session-a")) == [0, 2]
    assert_chain(storage.read("session-a"))
    tracer.close()


def test_a_deferred_runtime_on_a_flaky_storage_loses_nothing() -> None:
    storage = FlakyStorage()
    runtime = shop_runtime(tracing="deferred", storage=storage)
    try:
        sid = runtime.create_session("agent-1", "Shop").session_id
        rid = runtime.resolve(sid).resolution_id
        storage.failures = 2
        assert runtime.execute(sid, rid, "shop.read", {"item": "pear"}).status == "success"
        storage.failures = 3
        runtime.resolve(sid)
        assert runtime.flush() is True
        assert storage.refused == 5
        events = storage.read(sid)
        assert_chain(events)
        types = [e.event_type for e in events]
        assert types[0] == "session.started"
        assert types.count("carp.request.received") == 2
        for kind in ("action.requested", "action.approved", "action.executed"):
            assert types.count(kind) == 1
        reference = shop_runtime()  # the same operations, immediate mode, good storage
        try:
            ref_sid = reference.create_session("agent-1", "Shop").session_id
            ref_rid = reference.resolve(ref_sid).resolution_id
            reference.execute(ref_sid, ref_rid, "shop.read", {"item": "pear"})
            reference.resolve(ref_sid)
            assert types == [e.event_type for e in reference.get_trace(ref_sid)]
        finally:
            reference.close()
    finally:
        runtime.close()


def test_an_execute_refused_for_storage_leaves_the_same_chain_in_both_modes(fast_retries: None) -> None:
    chains = {}
    for tracing in ("immediate", "deferred"):
        storage = FlakyStorage()
        runtime = shop_runtime(tracing=tracing, storage=storage)
        try:
            sid = runtime.create_session("agent-1", "Shop").session_id
            rid = runtime.resolve(sid).resolution_id
            assert runtime.flush() is True
            storage.failures = -1
            with pytest.raises(StorageUnavailableError):
                runtime.execute(sid, rid, "shop.read", {"item": "never"})
            storage.heal()
            assert runtime.execute(sid, rid, "shop.read", {"item": "pear"}).status == "success"
            events = runtime.get_trace(sid)
            assert_chain(events)
            chains[tracing] = [e.event_type for e in events]
        finally:
            runtime.close()
    # The refused execution is recorded honestly once storage is back: authorised, then failed because the
    # trace could not be written (it never ran), followed by the successful one; the same in both modes.
    assert chains["immediate"][-6:] == [
        "action.requested",
        "action.approved",
        "action.failed",
        "action.requested",
        "action.approved",
        "action.executed",
    ]
    assert chains["deferred"] == chains["immediate"]


def test_flaky_storage_helper_refuses_then_accepts() -> None:
    storage = FlakyStorage(failures=1)
    with pytest.raises(OSError):
        storage.append([])
    storage.append([])
    assert (storage.refused, storage.accepted) == (1, 1)
    assert isinstance(storage, MemoryStorage)


def test_a_refused_approval_or_session_end_retried_is_recorded_once(fast_retries: None) -> None:
    storage = FlakyStorage()
    runtime = shop_runtime(tracing="deferred", storage=storage)
    try:
        sid = runtime.create_session("agent-1", "Shop").session_id
        res = runtime.resolve(sid)
        pending = runtime.execute(sid, res.resolution_id, "shop.transfer", {"amount": 5})
        assert pending.status == "pending_approval" and pending.approval_id
        storage.failures = -1
        with pytest.raises(StorageUnavailableError):
            runtime.approve(pending.approval_id, "alice")
        with pytest.raises(StorageUnavailableError):
            runtime.end_session(sid)
        storage.heal()
        assert runtime.approve(pending.approval_id, "alice").status == "approved"
        runtime.end_session(sid)
        types = [e.event_type for e in runtime.get_trace(sid)]
        assert types.count("approval.granted") == 1 and types.count("session.ended") == 1
        assert types[-1] == "session.ended"
        assert_chain(runtime.get_trace(sid))
    finally:
        runtime.close()
