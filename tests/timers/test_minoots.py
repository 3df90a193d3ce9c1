"""MinootsTimers against FakeMinoots on loopback: real HTTP both ways, time on the fake's ManualClock."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

import cra
from cra.testing import FakeMinoots
from cra.timers import (
    MinootsTimers,
    TimerBackend,
    TimerManager,
    TimersClosedError,
    TimerServiceAuthError,
    TimerServiceUnavailableError,
    parse_minoots_timestamp,
)

T0 = parse_minoots_timestamp("2025-01-01T00:00:00Z")
KEY = "test-key"


@pytest.fixture
def fake() -> Iterator[FakeMinoots]:
    with FakeMinoots() as server:
        yield server


def client(fake: FakeMinoots, **kw: Any) -> MinootsTimers:
    kw.setdefault("tenant_id", "tenant-a")
    kw.setdefault("api_key", KEY)
    kw.setdefault("poll_interval", None)
    kw.setdefault("backoff", 0)
    return MinootsTimers(fake.url, clock=fake.clock, **kw)


@pytest.fixture
def timers(fake: FakeMinoots) -> Iterator[MinootsTimers]:
    backend = client(fake)
    backend.serve_webhooks()
    yield backend
    backend.close()


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        exc.close()
        return exc.code, json.loads(raw) if raw else None


def auth(tenant: str = "tenant-a") -> dict[str, str]:
    return {"x-api-key": KEY, "x-tenant-id": tenant, "content-type": "application/json"}


def only_timer(fake: FakeMinoots) -> dict[str, Any]:
    (timer,) = fake.timers()
    return timer


# --- scheduling and firing ----------------------------------------------------------------------------


def test_it_implements_the_backend_protocol(timers: MinootsTimers) -> None:
    assert isinstance(timers, TimerBackend)


def test_a_timer_is_created_in_minoots_with_cras_id_in_metadata_and_labels(
    fake: FakeMinoots, timers: MinootsTimers
) -> None:
    cra_id = timers.schedule_once(10, lambda: None, name="cra.sweep")
    timer = only_timer(fake)
    assert timer["status"] == "scheduled"
    assert timer["durationMs"] == 10_000
    assert timer["tenantId"] == "tenant-a"
    assert timer["requestedBy"] == "cra"
    assert timer["name"] == "cra.sweep"
    assert parse_minoots_timestamp(timer["fireAt"]) == T0 + 10_000_000
    assert timer["metadata"] == {"craTimerId": cra_id, "craTimerName": "cra.sweep"}
    assert timer["labels"]["cra-timer-id"] == cra_id
    assert timer["id"] != cra_id  # MINOOTS assigns its own id


def test_schedule_fire_webhook_runs_the_callback_once(fake: FakeMinoots, timers: MinootsTimers) -> None:
    calls: list[str] = []
    timers.schedule_once(10, lambda: calls.append("fired"))
    assert fake.advance(9.999) == []
    assert calls == []
    (fired,) = fake.advance(0.001)
    assert calls == ["fired"]  # the webhook was handled before fire_due returned
    assert [(d.timer_id, d.status) for d in fake.webhooks] == [(fired, 204)]
    assert fake.timer(fired)["status"] == "fired"
    stats = timers.stats()
    assert (stats["fired"], stats["webhooks"], stats["scheduled"]) == (1, 1, 0)


def test_a_duplicate_webhook_does_not_run_the_callback_twice(
    fake: FakeMinoots, timers: MinootsTimers
) -> None:
    calls: list[str] = []
    timers.schedule_once(1, lambda: calls.append("fired"))
    (fired,) = fake.advance(1)
    body = {"timer": fake.timer(fired), "event": "webhook"}
    headers = {"x-minoots-timer-id": fired, "x-minoots-tenant-id": "tenant-a"}
    assert timers.webhook_url is not None
    assert http("POST", timers.webhook_url, body, {**headers, "content-type": "application/json"})[0] == 200
    assert timers.handle_webhook(headers, json.dumps(body).encode()) == 200
    assert calls == ["fired"]
    assert timers.stats()["duplicates"] == 2


def test_a_lost_webhook_is_reconciled_by_polling(fake: FakeMinoots, timers: MinootsTimers) -> None:
    calls: list[str] = []
    timers.schedule_once(5, lambda: calls.append("fired"))
    mid = only_timer(fake)["id"]
    fake.drop.add(mid)
    assert timers.reconcile() == 0  # not due yet: nothing polled
    assert ("GET", f"/timers/{mid}") not in fake.requests
    fake.advance(5)
    assert fake.webhooks == []
    assert calls == []
    assert timers.reconcile() == 1
    assert calls == ["fired"]
    assert timers.reconcile() == 0
    late = {"timer": fake.timer(mid), "event": "webhook"}
    assert timers.handle_webhook({"x-minoots-timer-id": mid}, json.dumps(late).encode()) == 200  # came late
    assert calls == ["fired"]
    assert timers.stats()["reconciled"] == 1


def test_reconcile_sees_settled_timers_of_newer_builds() -> None:
    with FakeMinoots(lifecycle="armed", drop_webhooks=True) as fake:
        timers = client(fake)
        try:
            calls: list[int] = []
            timers.schedule_once(1, lambda: calls.append(1))
            assert only_timer(fake)["status"] == "armed"
            fake.advance(1)
            assert only_timer(fake)["status"] == "settled"
            assert timers.reconcile() == 1
            assert calls == [1]
        finally:
            timers.close()


def test_the_poller_reconciles_without_being_called() -> None:
    with FakeMinoots(drop_webhooks=True) as fake:
        timers = client(fake, poll_interval=0.01)
        try:
            fired = threading.Event()
            timers.schedule_once(1, fired.set)
            fake.advance(1)
            assert fired.wait(5)
        finally:
            timers.close()


def test_a_webhook_that_overtakes_the_create_answer_still_fires(
    fake: FakeMinoots, timers: MinootsTimers
) -> None:
    real = fake.dispatch
    senders: list[threading.Thread] = []

    def fire_before_answering(method: str, target: str, headers: Any, body: bytes) -> tuple[int, Any]:
        answer = real(method, target, headers, body)
        if (method, target) == ("POST", "/timers"):
            fake.clock.advance(0.001)  # type: ignore[attr-defined]
            sender = threading.Thread(target=fake.fire_due)  # the webhook races the 201 below
            sender.start()
            senders.append(sender)
        return answer

    fake.dispatch = fire_before_answering  # type: ignore[method-assign]
    fired = threading.Event()
    timers.schedule_once(0.001, fired.set)
    assert fired.wait(5)
    for sender in senders:
        sender.join(5)
    assert [d.status for d in fake.webhooks] == [204]


def test_a_callback_error_is_counted_and_the_webhook_still_answered(
    fake: FakeMinoots, timers: MinootsTimers
) -> None:
    def boom() -> None:
        raise RuntimeError("boom")

    timers.schedule_once(1, boom)
    fake.advance(1)
    assert [d.status for d in fake.webhooks] == [204]
    assert timers.stats()["errors"] == 1


# --- repeating emulation ------------------------------------------------------------------------------


def test_a_repeat_schedules_the_next_one_shot_from_the_previous_fire_at(
    fake: FakeMinoots, timers: MinootsTimers
) -> None:
    calls: list[int] = []
    timers.schedule_repeating(10, lambda: calls.append(fake.clock.now_us()))
    fake.advance(12)  # fires at +12 s, 2 s late: the next is still due at +20 s, not +22 s
    assert len(calls) == 1
    live = [t for t in fake.timers() if t["status"] == "scheduled"]
    assert [parse_minoots_timestamp(t["fireAt"]) - T0 for t in live] == [20_000_000]
    assert live[0]["durationMs"] == 8_000
    assert live[0]["metadata"]["craIntervalMs"] == 10_000
    fake.advance(8)
    fake.advance(10)
    assert len(calls) == 3
    fire_ats = [parse_minoots_timestamp(t["fireAt"]) - T0 for t in fake.timers()]
    assert fire_ats == [10_000_000, 20_000_000, 30_000_000, 40_000_000]


def test_a_repeat_skips_whole_missed_intervals(fake: FakeMinoots, timers: MinootsTimers) -> None:
    calls: list[int] = []
    timers.schedule_repeating(10, lambda: calls.append(1))
    fake.advance(35)
    assert calls == [1]
    assert timers.stats()["missed"] == 2  # +20 s and +30 s
    (live,) = [t for t in fake.timers() if t["status"] == "scheduled"]
    assert parse_minoots_timestamp(live["fireAt"]) == T0 + 40_000_000


def test_cancelling_a_repeat_cancels_its_current_one_shot(fake: FakeMinoots, timers: MinootsTimers) -> None:
    calls: list[int] = []
    timer_id = timers.schedule_repeating(10, lambda: calls.append(1))
    fake.advance(10)
    assert timers.cancel(timer_id) is True
    assert [t["status"] for t in fake.timers()] == ["fired", "cancelled"]
    fake.advance(30)
    assert calls == [1]


def test_a_lost_repeat_is_re_armed_on_its_grid(fake: FakeMinoots, timers: MinootsTimers) -> None:
    calls: list[int] = []
    timers.schedule_repeating(10, lambda: calls.append(1))
    fake.forget(only_timer(fake)["id"])  # the service lost it
    fake.clock.advance(10)  # type: ignore[attr-defined]
    assert timers.reconcile() == 0
    assert timers.stats()["lost"] == 1
    (live,) = fake.timers()
    assert parse_minoots_timestamp(live["fireAt"]) == T0 + 20_000_000
    fake.advance(10)
    assert calls == [1]


# --- cancel -------------------------------------------------------------------------------------------


def test_cancel_is_idempotent(fake: FakeMinoots, timers: MinootsTimers) -> None:
    calls: list[int] = []
    timer_id = timers.schedule_once(10, lambda: calls.append(1))
    assert timers.cancel(timer_id) is True
    timer = only_timer(fake)
    assert (timer["status"], timer["cancelReason"], timer["cancelledBy"]) == (
        "cancelled",
        "cancelled by CRA",
        "cra",
    )
    requests = len(fake.requests)
    assert timers.cancel(timer_id) is False
    assert timers.cancel("unknown") is False
    assert len(fake.requests) == requests  # answered locally
    fake.advance(10)
    assert calls == []


def test_the_fake_cancel_endpoint_is_idempotent(fake: FakeMinoots, timers: MinootsTimers) -> None:
    timers.schedule_once(10, lambda: None)
    mid = only_timer(fake)["id"]
    url = f"{fake.url}/timers/{mid}/cancel"
    body = {"tenantId": "tenant-a", "requestedBy": "ops", "reason": "no longer needed"}
    first = http("POST", url, body, auth())
    fake.clock.advance(1)  # type: ignore[attr-defined]
    second = http("POST", url, {**body, "reason": "again"}, auth())
    assert first == second
    assert (
        first[0] == 200
        and first[1]["status"] == "cancelled"
        and first[1]["cancelReason"] == "no longer needed"
    )
    assert http("POST", f"{fake.url}/timers/nope/cancel", body, auth()) == (
        404,
        {"message": "Timer not found"},
    )


def test_a_fired_timer_comes_back_unchanged_from_cancel(fake: FakeMinoots, timers: MinootsTimers) -> None:
    timer_id = timers.schedule_once(1, lambda: None)
    (mid,) = fake.advance(1)
    assert timers.cancel(timer_id) is False  # already done
    status, timer = http("POST", f"{fake.url}/timers/{mid}/cancel", {"tenantId": "tenant-a"}, auth())
    assert (status, timer["status"]) == (200, "fired")
    assert "cancelledAt" not in timer


def test_cancel_answers_false_when_minoots_does_not_know_the_timer(
    fake: FakeMinoots, timers: MinootsTimers
) -> None:
    timer_id = timers.schedule_once(10, lambda: None)
    fake.forget(only_timer(fake)["id"])
    assert timers.cancel(timer_id) is False


# --- 404, 400, 500, auth ------------------------------------------------------------------------------


def test_unknown_timers_are_404(fake: FakeMinoots, timers: MinootsTimers) -> None:
    timers.schedule_once(10, lambda: None)
    mid = only_timer(fake)["id"]
    assert http("GET", f"{fake.url}/timers/nope", headers=auth()) == (404, {"message": "Timer not found"})
    assert http("GET", f"{fake.url}/timers/{mid}", headers=auth("tenant-b")) == (
        404,
        {"message": "Timer not found"},
    )
    assert http("GET", f"{fake.url}/timers/{mid}", headers=auth())[1]["id"] == mid
    unknown = {"timer": {"id": "nope", "tenantId": "tenant-a", "status": "fired"}, "event": "webhook"}
    assert timers.handle_webhook({}, json.dumps(unknown).encode()) == 404
    other_tenant = {"timer": {"id": mid, "tenantId": "tenant-b", "status": "fired"}, "event": "webhook"}
    assert timers.handle_webhook({}, json.dumps(other_tenant).encode()) == 404


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, b"not json"),
        ({}, b"[]"),
        ({}, b'{"event": "webhook"}'),
        ({}, b'{"timer": {"id": 7}}'),
        ({"x-minoots-timer-id": "other"}, b'{"timer": {"id": "this"}}'),
    ],
)
def test_a_malformed_webhook_is_400(timers: MinootsTimers, headers: dict[str, str], body: bytes) -> None:
    assert timers.handle_webhook(headers, body) == 400


def test_the_webhook_server_answers_404_off_its_path(timers: MinootsTimers) -> None:
    assert timers.webhook_url is not None
    other = timers.webhook_url.replace("/minoots/webhook", "/elsewhere")
    assert http("POST", other, {"timer": {"id": "x"}})[0] == 404


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"duration": "10x"}, 500),
        ({"duration": "0s"}, 500),
        ({"duration": 0}, 500),
        ({"duration": 30 * 86_400_000 + 1}, 500),
        ({"fireAt": "2024-12-31T23:59:59Z"}, 500),
        ({"fireAt": "yesterday"}, 500),
        ({}, 400),
        ({"duration": 1000, "requestedBy": None}, 400),
        ({"duration": 1000, "tenantId": ""}, 400),
        ({"duration": "10s"}, 201),
        ({"duration": 30 * 86_400_000}, 201),
        ({"fireAt": "2025-01-01T00:01:00.000000000+00:00"}, 201),
    ],
)
def test_the_fake_validates_creation_like_the_service(
    fake: FakeMinoots, body: dict[str, Any], status: int
) -> None:
    document = {"tenantId": "tenant-a", "requestedBy": "tests", **body}
    document = {k: v for k, v in document.items() if v is not None}
    answer, timer = http("POST", f"{fake.url}/timers", document, auth())
    assert answer == status
    if status == 201:
        assert timer["status"] == "scheduled"
        assert timer["durationMs"] in (10_000, 60_000, 30 * 86_400_000)
    else:
        assert isinstance(timer["message"], str)


@pytest.mark.parametrize("delay", [0, -1, 30 * 86_400 + 0.001, float("nan"), float("inf")])
def test_the_client_validates_durations_before_sending(
    fake: FakeMinoots, timers: MinootsTimers, delay: float
) -> None:
    before = list(fake.requests)
    with pytest.raises(ValueError):
        timers.schedule_once(delay, lambda: None)
    with pytest.raises(ValueError):
        timers.schedule_repeating(delay, lambda: None)
    assert fake.requests == before


def test_the_longest_duration_is_accepted_and_sub_millisecond_delays_round_up(
    fake: FakeMinoots, timers: MinootsTimers
) -> None:
    timers.schedule_once(30 * 86_400, lambda: None)
    timers.schedule_once(0.0001, lambda: None)
    assert sorted(t["durationMs"] for t in fake.timers()) == [1, 30 * 86_400_000]


def test_a_missing_api_key_is_401_and_a_wrong_one_403(fake: FakeMinoots) -> None:
    assert http("GET", f"{fake.url}/timers?tenantId=tenant-a") == (401, {"message": "API key required"})
    status, _ = http("GET", f"{fake.url}/timers?tenantId=tenant-a", headers={"x-api-key": "wrong"})
    assert status == 403
    timers = client(fake, api_key="wrong")
    try:
        with pytest.raises(TimerServiceAuthError) as info:
            timers.schedule_once(1, lambda: None)
        assert isinstance(info.value, PermissionError)
        assert "403" in info.value.message and "api_key" in info.value.message
        assert fake.timers() == []
        assert timers.stats()["requests"] == 1  # not retried
    finally:
        timers.close()
    with pytest.raises(ValueError, match="api_key"):
        MinootsTimers(fake.url, tenant_id="tenant-a", api_key="")


def test_an_unreachable_service_is_retried_then_unavailable() -> None:
    with FakeMinoots() as fake:
        url = fake.url
    timers = MinootsTimers(url, tenant_id="tenant-a", api_key=KEY, poll_interval=None, retries=2, backoff=0)
    try:
        with pytest.raises(TimerServiceUnavailableError) as info:
            timers.schedule_once(1, lambda: None)
        assert isinstance(info.value, cra.UnavailableError)
        assert info.value.code == "TIMER_SERVICE_UNAVAILABLE"
        assert (timers.stats()["requests"], timers.stats()["retries"]) == (3, 2)
        assert timers.healthy() is False
    finally:
        timers.close()


def test_5xx_answers_are_retried(fake: FakeMinoots, timers: MinootsTimers) -> None:
    real = fake.dispatch
    failures = [503, 502]

    def flaky(method: str, target: str, headers: Any, body: bytes) -> tuple[int, Any]:
        if failures:
            return failures.pop(0), {"message": "try again"}
        return real(method, target, headers, body)

    fake.dispatch = flaky  # type: ignore[method-assign]
    timers.schedule_once(1, lambda: None)
    assert timers.stats()["retries"] == 2
    assert len(fake.timers()) == 1


# --- timestamps, lists, health ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-01T00:00:10Z", T0 + 10_000_000),
        ("2025-01-01T00:00:10.5Z", T0 + 10_500_000),
        ("2025-01-01T00:00:10.123Z", T0 + 10_123_000),
        ("2025-01-01T00:00:10.123456+00:00", T0 + 10_123_456),
        ("2025-01-01T00:00:10.123456789Z", T0 + 10_123_456),
        ("2025-01-01T00:00:10.123456789+00:00", T0 + 10_123_456),
        ("2025-01-01T02:00:10+02:00", T0 + 10_000_000),
    ],
)
def test_timestamps_parse_with_z_offsets_and_nanoseconds(text: str, expected: int) -> None:
    assert parse_minoots_timestamp(text) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2025-01-01", "2025-01-01T00:00:10"])
def test_bad_timestamps_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_minoots_timestamp(text)


@pytest.mark.parametrize("style", ["offset", "nanos"])
def test_the_whole_flow_works_with_other_timestamp_styles(style: str) -> None:
    with FakeMinoots(timestamps=style) as fake:
        timers = client(fake)
        timers.serve_webhooks()
        try:
            calls: list[int] = []
            timers.schedule_repeating(1.5, lambda: calls.append(1))
            suffix = "+00:00" if style == "offset" else "000Z"
            assert only_timer(fake)["fireAt"].endswith(suffix)
            for _ in range(4):
                fake.advance(1.5)
            assert len(calls) == 4
        finally:
            timers.close()


def test_the_list_is_per_tenant_and_sorted_by_fire_at(fake: FakeMinoots) -> None:
    for tenant, duration in (("tenant-a", 3000), ("tenant-b", 1000), ("tenant-a", 2000)):
        body = {"tenantId": tenant, "requestedBy": "tests", "duration": duration}
        assert http("POST", f"{fake.url}/timers", body, auth(tenant))[0] == 201
    status, listed = http("GET", f"{fake.url}/timers?tenantId=tenant-a", headers=auth())
    assert status == 200
    assert [t["durationMs"] for t in listed] == [2000, 3000]
    assert http("GET", f"{fake.url}/timers", headers=auth())[0] == 400


def test_health(fake: FakeMinoots, timers: MinootsTimers) -> None:
    assert http("GET", f"{fake.url}/healthz") == (200, {"status": "ok", "service": "minoots-control-plane"})
    assert timers.healthy() is True


# --- close and the manager ----------------------------------------------------------------------------


def test_close_cancels_remote_timers_and_refuses_more(fake: FakeMinoots) -> None:
    timers = client(fake)
    timers.serve_webhooks()
    calls: list[int] = []
    timers.schedule_once(5, lambda: calls.append(1))
    timers.schedule_repeating(5, lambda: calls.append(2))
    timers.close()
    timers.close()
    assert [t["status"] for t in fake.timers()] == ["cancelled", "cancelled"]
    with pytest.raises(TimersClosedError):
        timers.schedule_once(1, lambda: None)
    fake.advance(10)
    assert calls == []
    assert timers.handle_webhook({}, b'{"timer": {"id": "x"}}') == 404


def test_close_from_a_callback_while_the_poller_waits_does_not_deadlock() -> None:
    with FakeMinoots() as fake:
        own_clock = cra.ManualClock("2025-01-01T00:00:00Z")  # the poller sees nothing due until it moves
        timers = MinootsTimers(fake.url, tenant_id="t", api_key=KEY, clock=own_clock, poll_interval=0.01)
        timers.serve_webhooks()
        claimed_by_poller, closed = threading.Event(), threading.Event()
        ran: list[str] = []
        real_claim = timers._claim

        def watch_claim(minoots_id: str) -> Any:
            result = real_claim(minoots_id)
            if minoots_id == second and isinstance(result, tuple):
                claimed_by_poller.set()  # the poller goes on to wait for the running callback
            return result

        def close_it() -> None:  # runs in the webhook thread
            ran.append("first")
            own_clock.advance(2)
            assert claimed_by_poller.wait(5)
            timers.close()
            closed.set()

        timers.schedule_once(1, close_it)
        timers.schedule_once(2, lambda: ran.append("second"))
        second = fake.timers()[1]["id"]
        fake.drop.add(second)  # only the poller can find the second
        timers._claim = watch_claim  # type: ignore[method-assign]
        fake.clock.advance(2)  # type: ignore[attr-defined]
        sender = threading.Thread(target=fake.fire_due)
        sender.start()
        assert closed.wait(5)
        sender.join(5)
        assert ran == ["first"]  # the poller's claim ran nothing after close


def test_a_timer_manager_runs_on_minoots(fake: FakeMinoots, timers: MinootsTimers) -> None:
    assert isinstance(fake.clock, cra.ManualClock)
    runtime = cra.Runtime(clock=fake.clock, session_idle_timeout_seconds=25)
    session = runtime.create_session("agent-1", "Timed by MINOOTS")
    with TimerManager(runtime, timers, sweep_interval=5, heartbeat_interval=10):
        for _ in range(6):
            fake.advance(5)
    beats = runtime.get_trace(session.session_id, event_type="session.heartbeat")
    assert [e.payload["uptime_ms"] for e in beats] == [10_000, 20_000]
    assert runtime.get_session(session.session_id).end_reason == "idle_timeout"
    assert all(t["status"] in ("fired", "cancelled") for t in fake.timers())
    runtime.close()
