"""TimerManager + ManualTimers + a real Runtime on one ManualClock: every time-based duty, without sleeping."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import cra
from cra.errors import ResolutionExpiredError, ResolutionNotFoundError
from cra.timers import ManualTimers, TimerManager

START = "2025-01-01T00:00:00Z"
MANIFEST: dict[str, Any] = {
    "atlas_version": "1.0",
    "atlas_id": "org.example.ops",
    "version": "1.0.0",
    "name": "Ops",
    "description": "An Atlas for the timer tests",
    "actions": [{"action_id": "ops.restart", "name": "Restart", "description": "Restart a host"}],
    "policies": [{"policy_id": "allow-all", "type": "allow"}],
}


@pytest.fixture
def clock() -> cra.ManualClock:
    return cra.ManualClock(START)


@pytest.fixture
def timers(clock: cra.ManualClock) -> Iterator[ManualTimers]:
    backend = ManualTimers(clock)
    yield backend
    backend.close()


def make_runtime(clock: cra.ManualClock, **kw: Any) -> cra.Runtime:
    runtime = cra.Runtime(clock=clock, ids=cra.SequentialIds(), **kw)
    runtime.load_atlas(MANIFEST)
    return runtime


def types(runtime: cra.Runtime, session_id: str) -> list[str]:
    return [e.event_type for e in runtime.get_trace(session_id)]


def test_an_idle_session_is_ended_with_reason_idle_timeout(
    clock: cra.ManualClock, timers: ManualTimers
) -> None:
    runtime = make_runtime(clock, session_idle_timeout_seconds=60)
    session = runtime.create_session("agent-1", "Restart the web tier")
    with TimerManager(runtime, timers, sweep_interval=1) as manager:
        timers.advance(59)
        assert runtime.get_session(session.session_id).status == "active"
        timers.advance(2)
        ended = runtime.get_session(session.session_id)
        assert (ended.status, ended.end_reason) == ("ended", "idle_timeout")
        last = runtime.get_trace(session.session_id)[-1]
        assert last.event_type == "session.ended"
        assert dict(last.payload) == {"reason": "idle_timeout", "duration_ms": 60_000}  # the sweep at +60 s
        assert manager.stats()["idle_timeout"] == 1
        assert manager.stats()["sweeps"] == 61
    assert runtime.verify(session.session_id).valid


def test_activity_postpones_the_idle_timeout(clock: cra.ManualClock, timers: ManualTimers) -> None:
    runtime = make_runtime(clock, session_idle_timeout_seconds=60)
    session = runtime.create_session("agent-1", "Keep busy")
    with TimerManager(runtime, timers):
        for _ in range(4):
            timers.advance(45)
            runtime.resolve(session.session_id)
        assert runtime.get_session(session.session_id).status == "active"
        timers.advance(61)
        assert runtime.get_session(session.session_id).end_reason == "idle_timeout"


def test_a_session_is_ended_at_its_maximum_lifetime(clock: cra.ManualClock, timers: ManualTimers) -> None:
    runtime = make_runtime(clock, session_idle_timeout_seconds=60, session_max_lifetime_seconds=120)
    session = runtime.create_session("agent-1", "Busy but bounded")
    with TimerManager(runtime, timers, sweep_interval=1) as manager:
        for _ in range(5):
            timers.advance(30)  # activity keeps the idle timeout away
            if runtime.get_session(session.session_id).status == "active":
                runtime.resolve(session.session_id)
        ended = runtime.get_session(session.session_id)
        assert ended.end_reason == "max_lifetime"
        assert runtime.get_trace(session.session_id, event_type="session.ended")[0].payload == {
            "reason": "max_lifetime",
            "duration_ms": 120_000,
        }
        assert manager.stats()["max_lifetime"] == 1


def test_resolutions_expire_then_are_forgotten(clock: cra.ManualClock, timers: ManualTimers) -> None:
    runtime = make_runtime(clock, resolution_ttl_seconds=30, resolution_retention_seconds=60)
    session = runtime.create_session("agent-1", "Restart")
    resolution = runtime.resolve(session.session_id)
    with TimerManager(runtime, timers, sweep_interval=1) as manager:
        timers.advance(31)
        with pytest.raises(ResolutionExpiredError):
            runtime.execute(session.session_id, resolution.resolution_id, "ops.restart", {})
        timers.advance(60)  # expired at +30 s, forgotten 60 s later by a sweep
        with pytest.raises(ResolutionNotFoundError):
            runtime.execute(session.session_id, resolution.resolution_id, "ops.restart", {})
        assert manager.stats()["resolutions_forgotten"] == 1


def test_an_authorised_execution_never_completed_gets_completion_timeout(
    clock: cra.ManualClock, timers: ManualTimers
) -> None:
    runtime = make_runtime(clock, resolution_ttl_seconds=30)
    session = runtime.create_session("agent-1", "Restart")
    resolution = runtime.resolve(session.session_id)
    response = runtime.execute(session.session_id, resolution.resolution_id, "ops.restart", {"host": "a"})
    assert response.status == "authorized"
    with TimerManager(runtime, timers, sweep_interval=1) as manager:
        timers.advance(29)
        assert "action.failed" not in types(runtime, session.session_id)
        timers.advance(2)
        failed = runtime.get_trace(session.session_id, event_type="action.failed")
        assert [dict(e.payload) for e in failed] == [
            {
                "action_id": "ops.restart",
                "error_code": "COMPLETION_TIMEOUT",
                "error_message": "the outcome was not reported before the resolution expired",
            }
        ]
        assert manager.stats()["completion_timeouts"] == 1
        timers.advance(10)
        assert len(runtime.get_trace(session.session_id, event_type="action.failed")) == 1  # recorded once
    assert runtime.verify(session.session_id).valid


def test_heartbeats_are_recorded_at_the_interval(clock: cra.ManualClock, timers: ManualTimers) -> None:
    runtime = make_runtime(clock, session_idle_timeout_seconds=60)
    session = runtime.create_session("agent-1", "Long task")
    with TimerManager(runtime, timers, sweep_interval=1, heartbeat_interval=10) as manager:
        timers.advance(35)
        beats = runtime.get_trace(session.session_id, event_type="session.heartbeat")
        assert [e.payload["uptime_ms"] for e in beats] == [10_000, 20_000, 30_000]
        assert [e.timestamp for e in beats] == [
            "2025-01-01T00:00:10.000000Z",
            "2025-01-01T00:00:20.000000Z",
            "2025-01-01T00:00:30.000000Z",
        ]
        assert manager.stats()["heartbeats"] == 3
        timers.advance(30)  # idle timeout at +60 s: no heartbeat for an ended session
        assert runtime.get_session(session.session_id).end_reason == "idle_timeout"
        assert len(runtime.get_trace(session.session_id, event_type="session.heartbeat")) == 5  # 40, 50 s
        assert types(runtime, session.session_id)[-1] == "session.ended"


def test_the_trace_is_flushed_at_the_flush_interval(clock: cra.ManualClock, timers: ManualTimers) -> None:
    runtime = make_runtime(clock, tracing="deferred")
    try:
        session = runtime.create_session("agent-1", "Deferred")
        with TimerManager(runtime, timers, flush_interval=5) as manager:
            timers.advance(10)
            assert manager.stats()["flushes"] == 2
            assert manager.stats()["flush_timeouts"] == 0
            assert runtime.trace_stats()["buffered"] == 0
            assert types(runtime, session.session_id) == ["session.started"]
    finally:
        runtime.close()


def test_a_closed_runtime_is_counted_and_stops_the_manager(
    clock: cra.ManualClock, timers: ManualTimers
) -> None:
    runtime = make_runtime(clock)
    manager = TimerManager(runtime, timers, sweep_interval=1, heartbeat_interval=1).start()
    runtime.close()
    timers.advance(5)
    assert manager.stats()["errors"] == 1  # the first duty to notice stops the rest
    assert not manager.running
    assert timers.stats()["errors"] == 0  # nothing reached the backend
    assert timers.stats()["scheduled"] == 0


class FlakyRuntime:
    """A runtime whose sweep fails every other time."""

    def __init__(self) -> None:
        self.calls = 0

    def sweep(self) -> dict[str, int]:
        self.calls += 1
        if self.calls % 2:
            raise OSError("disk hiccup")
        return {"idle_timeout": 1}

    def heartbeat_all(self) -> int:
        return 0

    def flush(self, timeout: float | None = None) -> bool:
        return False


def test_runtime_exceptions_are_counted_and_the_duties_go_on(
    clock: cra.ManualClock, timers: ManualTimers
) -> None:
    runtime = FlakyRuntime()
    with TimerManager(runtime, timers, sweep_interval=1, flush_interval=2) as manager:
        timers.advance(4)
    assert runtime.calls == 4
    stats = manager.stats()
    assert (stats["errors"], stats["sweeps"], stats["idle_timeout"]) == (2, 2, 2)
    assert (stats["flushes"], stats["flush_timeouts"]) == (2, 2)
    assert timers.stats()["errors"] == 0


def test_start_and_stop_are_idempotent_and_leave_the_backend_open(
    clock: cra.ManualClock, timers: ManualTimers
) -> None:
    runtime = FlakyRuntime()
    manager = TimerManager(runtime, timers, sweep_interval=1, heartbeat_interval=2, flush_interval=3)
    assert manager.start() is manager.start()
    assert timers.stats()["scheduled"] == 3
    manager.stop()
    manager.close()
    assert timers.stats()["scheduled"] == 0
    timers.advance(5)
    assert runtime.calls == 0
    manager.start()  # a stopped manager starts again
    timers.advance(1)
    assert runtime.calls == 1
    manager.stop()


@pytest.mark.parametrize("field", ["sweep_interval", "heartbeat_interval", "flush_interval"])
@pytest.mark.parametrize("value", [0, -1, float("nan")])
def test_bad_intervals_are_refused(timers: ManualTimers, field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        TimerManager(FlakyRuntime(), timers, **{field: value})


def test_the_manager_drives_a_thread_backend() -> None:
    import threading

    from cra.timers import ThreadTimers

    swept = threading.Event()

    class Runtime(FlakyRuntime):
        def sweep(self) -> dict[str, int]:
            swept.set()
            return {}

    with ThreadTimers() as backend, TimerManager(Runtime(), backend, sweep_interval=0.01):
        assert swept.wait(5)
