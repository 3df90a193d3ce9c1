"""Many threads on a deferred runtime (SPEC 4.5): every session keeps one gapless chain that verifies, and
each execution's events sit together, in order, in its span."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import cra
from cra.trace.event import TraceEvent

from .helpers import assert_chain, make_tracer, rec, shop_runtime, span

ROUNDS = 5


def run_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(n)`` on ``count`` threads released together; re-raise the first failure."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def main(n: int) -> None:
        try:
            barrier.wait(10)
            results[n] = work(n)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=main, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    if errors:
        raise errors[0]
    return results


def resolve_and_execute(runtime: cra.Runtime, sid: str, tag: str) -> list[str]:
    executions = []
    for r in range(ROUNDS):
        rid = runtime.resolve(sid).resolution_id
        response = runtime.execute(sid, rid, "shop.read", {"item": f"{tag}-{r}"})
        assert response.status == "success"
        executions.append(response.execution_id)
    return executions


def check_executions(events: list[TraceEvent], executions: list[str]) -> None:
    requested = {e.payload["execution_id"]: e for e in events if e.event_type == "action.requested"}
    assert sorted(requested) == sorted(executions)
    for execution_id in executions:
        span_id = requested[execution_id].span_id
        assert [e.event_type for e in events if e.span_id == span_id] == [
            "action.requested",
            "action.approved",
            "action.executed",
        ]
        executed = [
            e
            for e in events
            if e.event_type == "action.executed" and e.payload["execution_id"] == execution_id
        ]
        assert len(executed) == 1


@pytest.mark.parametrize("trace_buffer", [65_536, 8], ids=["roomy", "tiny-buffer"])
def test_eight_threads_on_one_session_make_one_gapless_chain(trace_buffer: int) -> None:
    runtime = shop_runtime(tracing="deferred", trace_buffer=trace_buffer, resolution_cache=False)
    try:
        sid = runtime.create_session("agent-1", "Shop").session_id
        results = run_threads(8, lambda n: resolve_and_execute(runtime, sid, f"t{n}"))
        executions = [x for result in results for x in result]
        assert len(set(executions)) == 8 * ROUNDS
        events = runtime.get_trace(sid)
        assert_chain(events)
        assert runtime.verify(sid).valid
        types = [e.event_type for e in events]
        assert types[0] == "session.started"
        assert types.count("carp.request.received") == 8 * ROUNDS
        assert types.count("carp.resolution.completed") == 8 * ROUNDS
        check_executions(events, executions)
        stats = runtime.trace_stats()
        assert (stats["dropped"], stats["buffered"], stats["written"]) == (0, 0, len(events))
    finally:
        runtime.close()


def test_four_threads_on_four_sessions_make_four_gapless_chains() -> None:
    runtime = shop_runtime(tracing="deferred", trace_buffer=16)
    try:
        sids = [runtime.create_session(f"agent-{n}", "Shop").session_id for n in range(4)]
        results = run_threads(4, lambda n: resolve_and_execute(runtime, sids[n], f"s{n}"))
        total = 0
        for sid, executions in zip(sids, results, strict=True):
            events = runtime.get_trace(sid)
            assert_chain(events)
            assert runtime.verify(sid).valid
            assert {e.session_id for e in events} == {sid}
            assert len({e.trace_id for e in events}) == 1
            check_executions(events, executions)
            total += len(events)
        assert runtime.trace_stats()["written"] == total
    finally:
        runtime.close()


def test_concurrent_emitters_and_flushers_on_the_processor() -> None:
    tracer = make_tracer(start=True, max_buffered=32, batch_size=8, chunk_size=4)
    try:

        def work(n: int) -> None:
            for i in range(100):
                tracer.emit(span(f"s{n % 3}", f"op-{n}-{i}"), [rec(n * 1000 + i)], durable=i % 10 == 0)
                if i % 25 == 0:
                    assert tracer.flush(timeout=30) is True

        run_threads(6, work)
        assert tracer.flush() is True
        seen = []
        for s in range(3):
            events = tracer.storage.read(f"s{s}")
            assert_chain(events)
            seen += [e.payload["index"] for e in events]
        assert sorted(seen) == sorted(n * 1000 + i for n in range(6) for i in range(100))
        for n in range(6):  # each emitter's own records keep their order
            mine = [x for x in seen if x // 1000 == n]
            assert mine == sorted(mine)
    finally:
        tracer.close()
