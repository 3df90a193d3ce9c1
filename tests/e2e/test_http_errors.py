"""Every status the API answers with, over a real server: each refusal has its documented code and SPEC 5
body, leaks no internals, and changes nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from cra import ManualClock, Runtime, format_timestamp
from cra.server.app import create_app
from cra.server.config import ServerConfig

from .atlas import APPROVAL_ATLAS
from .live import running


class FrozenTime:
    """The rate limiter's monotonic clock, frozen so the bucket never refills during a test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Server:
    http: httpx.Client
    runtime: Runtime
    clock: ManualClock
    rate_time: FrozenTime
    counter: list[int]

    def carp(
        self, operation: str, session_id: str, agent_id: str = "agent-1", **fields: Any
    ) -> dict[str, Any]:
        self.counter[0] += 1
        return {
            "carp_version": "1.0",
            "request_id": f"00000000-0000-7000-8000-{self.counter[0]:012x}",
            "timestamp": format_timestamp(self.clock.now_us()),
            "operation": operation,
            "requester": {"agent_id": agent_id, "session_id": session_id},
            "task": {"goal": "help"},
            **fields,
        }

    def session(self) -> str:
        response = self.http.post("/v1/sessions", json={"agent_id": "agent-1", "goal": "help"})
        assert response.status_code == 201, response.text
        assert response.headers["Location"].endswith(response.json()["session_id"])
        return str(response.json()["session_id"])

    def resolve(self, session_id: str) -> dict[str, Any]:
        response = self.http.post("/v1/resolve", json=self.carp("resolve", session_id))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def execute(self, session_id: str, resolution_id: str, action_id: str, **params: Any) -> httpx.Response:
        execution = {
            "resolution_id": resolution_id,
            "action_id": action_id,
            "parameters": params or {"id": "T-1"},
        }
        return self.http.post("/v1/execute", json=self.carp("execute", session_id, execution=execution))

    def trace_length(self, session_id: str) -> int:
        return len(self.runtime.get_trace(session_id))


@pytest.fixture
def server() -> Iterator[Server]:
    clock = ManualClock()
    runtime = Runtime(clock=clock)
    runtime.load_atlas(APPROVAL_ATLAS)
    rate_time = FrozenTime()
    config = ServerConfig(
        max_body_bytes=4096, rate_limit_per_second=5, rate_limit_burst=1000, request_timeout_seconds=0.5
    )
    app = create_app(runtime, config, timers=False, owns_runtime=True, rate_clock=rate_time)
    with running(app) as url, httpx.Client(base_url=url) as http:
        yield Server(http, runtime, clock, rate_time, [0])


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code, body
    assert set(body) >= {"code", "category", "message", "recoverable"}
    assert "Traceback" not in response.text and "/work/" not in response.text and ".py" not in response.text
    return body


def test_malformed_bodies_are_400_and_change_nothing(server: Server) -> None:
    sid = server.session()
    before = server.trace_length(sid)
    post = server.http.post
    headers = {"content-type": "application/json"}
    error(post("/v1/resolve", content=b"{not json", headers=headers), 400, "INVALID_REQUEST")
    error(post("/v1/resolve", content=b"", headers=headers), 400, "INVALID_REQUEST")
    error(post("/v1/resolve", content=b"[1, 2]", headers=headers), 400, "INVALID_REQUEST")
    error(post("/v1/resolve", content=b'{"a": "\xff\xfe"}', headers=headers), 400, "INVALID_REQUEST")
    error(post("/v1/resolve", content=b'{"a": NaN}', headers=headers), 400, "INVALID_REQUEST")
    bad = server.carp("resolve", sid)
    bad["carp_version"] = "2.0"
    bad["unexpected"] = True
    body = error(post("/v1/resolve", json=bad), 400, "INVALID_REQUEST")
    pointers = {e["pointer"] for e in body["details"]["errors"]}
    assert {"/carp_version", "/unexpected"} <= pointers or {"/carp_version", ""} <= pointers, pointers
    deep: Any = "x"
    for _ in range(80):
        deep = [deep]
    error(
        post("/v1/resolve", json={**server.carp("resolve", sid), "context": {"deep": deep}}),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    skewed = server.carp("resolve", sid)
    skewed["timestamp"] = format_timestamp(server.clock.now_us() - 3600 * 1_000_000)
    error(post("/v1/resolve", json=skewed), 400, "CLOCK_SKEW")
    error(post("/v1/sessions", json={"agent_id": "a", "goal": "g", "extra": 1}), 400, "INVALID_REQUEST")
    error(post("/v1/sessions", json={"agent_id": "", "goal": "g"}), 400, "INVALID_REQUEST")
    error(
        post("/v1/sessions", json={"agent_id": "a", "goal": "g", "atlas_ids": ["no.such"]}),
        400,
        "UNKNOWN_ATLAS",
    )
    error(server.http.get("/v1/sessions", params={"limit": "many"}), 400, "INVALID_REQUEST")
    error(server.http.get("/v1/sessions", params={"status": "sleeping"}), 400, "INVALID_REQUEST")
    error(server.http.get(f"/v1/traces/{sid}", params={"since_sequence": "x"}), 400, "INVALID_REQUEST")
    assert server.trace_length(sid) == before


def test_a_body_over_the_limit_is_413_without_reading_it_all(server: Server) -> None:
    sid = server.session()
    big = {**server.carp("resolve", sid), "context": {"blob": "x" * 10_000}}
    body = error(server.http.post("/v1/resolve", json=big), 413, "PAYLOAD_TOO_LARGE")
    assert body["details"]["max_body_bytes"] == 4096

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds on the stream too
        yield b'{"pad": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    error(server.http.post("/v1/resolve", content=chunks()), 413, "PAYLOAD_TOO_LARGE")
    # Optional bodies are read under the same limit.
    error(server.http.post(f"/v1/traces/{sid}/verify", content=chunks()), 413, "PAYLOAD_TOO_LARGE")
    missing = "0190a000-0000-7000-8000-000000000000"
    error(server.http.post(f"/v1/approvals/{missing}/approve", content=chunks()), 413, "PAYLOAD_TOO_LARGE")


def test_unknown_things_are_404(server: Server) -> None:
    missing = "0190a000-0000-7000-8000-000000000000"
    error(server.http.get("/v1/nowhere"), 404, "NOT_FOUND")
    error(server.http.get(f"/v1/sessions/{missing}"), 404, "SESSION_NOT_FOUND")
    error(server.http.get(f"/v1/traces/{missing}"), 404, "SESSION_NOT_FOUND")
    error(server.http.get(f"/v1/approvals/{missing}"), 404, "APPROVAL_NOT_FOUND")
    error(server.http.get("/v1/atlases/no.such"), 404, "ATLAS_NOT_FOUND")
    error(
        server.http.post(f"/v1/executions/{missing}/complete", json={"result": 1}), 404, "EXECUTION_NOT_FOUND"
    )
    error(server.http.post("/v1/resolve", json=server.carp("resolve", missing)), 404, "SESSION_NOT_FOUND")
    sid = server.session()
    error(server.execute(sid, missing, "ticket.read"), 404, "RESOLUTION_NOT_FOUND")


def test_a_wrong_method_is_405_with_allow(server: Server) -> None:
    response = server.http.put("/v1/resolve", json={})
    error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["Allow"] == "POST"


def test_conflicts_are_409(server: Server) -> None:
    sid = server.session()
    request = server.carp("resolve", sid)
    assert server.http.post("/v1/resolve", json=request).status_code == 200
    error(server.http.post("/v1/resolve", json=request), 409, "DUPLICATE_REQUEST")
    error(server.http.post("/v1/atlases", json=APPROVAL_ATLAS), 409, "ATLAS_ALREADY_LOADED")
    resolution = server.resolve(sid)
    pending = server.execute(sid, resolution["resolution_id"], "ticket.close")
    assert pending.status_code == 202 and pending.json()["status"] == "pending_approval"
    approval_id = pending.json()["approval_id"]
    assert (
        server.http.post(f"/v1/approvals/{approval_id}/approve", json={"approver": "ops"}).status_code == 200
    )
    error(server.http.post(f"/v1/approvals/{approval_id}/reject", json={}), 409, "APPROVAL_ALREADY_DECIDED")
    assert server.http.delete(f"/v1/sessions/{sid}").status_code == 204
    error(server.http.delete(f"/v1/sessions/{sid}"), 409, "SESSION_ENDED")
    error(server.http.post("/v1/resolve", json=server.carp("resolve", sid)), 409, "SESSION_ENDED")


def test_governance_outcomes_have_their_statuses(server: Server) -> None:
    sid = server.session()
    rid = server.resolve(sid)["resolution_id"]
    ok = server.execute(sid, rid, "ticket.read")
    assert ok.status_code == 200 and ok.json()["status"] == "authorized"
    denied = server.execute(sid, rid, "ticket.delete")
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "ACTION_NOT_ALLOWED"
    for _ in range(2):
        assert server.execute(sid, rid, "ticket.reply").status_code == 200
    limited = server.execute(sid, rid, "ticket.reply")
    assert limited.status_code == 403 and limited.json()["error"]["code"] == "RATE_LIMITED"
    error(server.execute(sid, rid, "ticket.read", id="not-a-ticket"), 400, "INVALID_PARAMETERS")
    server.clock.advance(3601)
    error(server.execute(sid, rid, "ticket.read"), 410, "RESOLUTION_EXPIRED")
    assert server.runtime.verify(sid).valid


def test_the_per_key_rate_limit_is_429_with_retry_after(server: Server) -> None:
    api = server.http
    limiter = api.get("/v1/health")  # public: not counted
    assert limiter.status_code == 200
    app_limiter_burst = 1000
    statuses = [api.get("/v1/atlases").status_code for _ in range(app_limiter_burst + 1)]
    assert statuses[:app_limiter_burst] == [200] * app_limiter_burst
    response = api.get("/v1/atlases")
    body = error(response, 429, "RATE_LIMITED")
    assert int(response.headers["Retry-After"]) >= 1
    assert body["details"]["limit"] == "requests_per_second"
    server.rate_time.now += 1.0  # five tokens come back after a second
    assert [api.get("/v1/atlases").status_code for _ in range(6)] == [200] * 5 + [429]


def test_a_runtime_that_does_not_answer_in_time_is_503(server: Server) -> None:
    release = threading.Event()
    server.runtime.register("ticket.read", lambda _params: release.wait(10))
    try:
        sid = server.session()
        rid = server.resolve(sid)["resolution_id"]
        error(server.execute(sid, rid, "ticket.read"), 503, "REQUEST_TIMEOUT")
    finally:
        release.set()
    # The call runs to its end on its thread and is traced; wait for that (bounded), without a fixed sleep.
    tick = threading.Event()
    for _ in range(500):
        if server.runtime.get_trace(sid)[-1].event_type == "action.executed":
            break
        tick.wait(0.01)
    assert server.runtime.get_trace(sid)[-1].event_type == "action.executed"


def test_health_reports_storage_and_buffer(server: Server) -> None:
    body = server.http.get("/v1/health").json()
    assert body["status"] == "ok"
    assert body["checks"]["storage"]["status"] == "ok"
    assert {"buffered", "pressure"} <= set(body["checks"]["buffer"])
    assert body["uptime_seconds"] >= 0


def test_metrics_count_requests_decisions_and_the_trace_buffer(server: Server) -> None:
    sid = server.session()
    rid = server.resolve(sid)["resolution_id"]
    assert server.execute(sid, rid, "ticket.delete").status_code == 403
    server.http.get("/v1/nowhere")
    response = server.http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'cra_http_requests_total{method="POST",route="/v1/resolve",status="200"} 1.0' in text
    assert 'cra_decisions_total{operation="execute",outcome="denied"} 1.0' in text
    assert 'cra_decisions_total{operation="resolve",outcome="requires_approval"} 1.0' in text
    assert "cra_http_request_duration_seconds_bucket" in text
    for name in ("buffered", "capacity", "pressure", "processed", "written", "dropped", "lag_ms"):
        assert f"cra_trace_{name} " in text
