"""``/v1/traces/stream``: a real server, a real WebSocket client. History then live events, exact resume, the
end of a session, and every refusal's close code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

import cra
from cra.server import stream
from cra.server.auth import ApiKeyStore, Authenticator
from cra.server.config import ServerConfig

from .conftest import LiveServer

AGENT = "support-bot"
TIMEOUT = 10.0  # generous: only ever waited out when a test is about to fail


def stream_url(base: str, **query: Any) -> str:
    return base.replace("http://", "ws://", 1) + "/v1/traces/stream?" + urlencode(query)


@contextmanager
def open_stream(
    base: str, headers: dict[str, str] | None = None, /, **query: Any
) -> Iterator[ClientConnection]:
    with connect(
        stream_url(base, **query),
        additional_headers=headers,
        proxy=None,
        open_timeout=TIMEOUT,
        max_queue=None,  # never stop reading the socket: a test that leaves early still closes at once
    ) as ws:
        yield ws


def receive(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    """The next ``count`` messages, each a JSON event."""
    events = []
    for _ in range(count):
        message = ws.recv(timeout=TIMEOUT)
        assert isinstance(message, str), "events are text messages"
        events.append(json.loads(message))
    return events


def closed_with(ws: ClientConnection) -> tuple[int, str, list[dict[str, Any]]]:
    """Read until the server closes: (code, reason, the events received on the way)."""
    events: list[dict[str, Any]] = []
    while True:
        try:
            message = ws.recv(timeout=TIMEOUT)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None, "the server closed without a close frame"
            return exc.rcvd.code, exc.rcvd.reason, events
        events.append(json.loads(message))


def wire(runtime: cra.Runtime, session_id: str, since: int = -1) -> list[dict[str, Any]]:
    return [json.loads(e.to_json()) for e in runtime.get_trace(session_id, since_sequence=since)]


def assert_contiguous(events: list[dict[str, Any]], first: int) -> None:
    assert [e["sequence"] for e in events] == list(range(first, first + len(events)))


@pytest.fixture
def session_id(example_runtime: cra.Runtime) -> str:
    """A session with some history: started, then one resolve."""
    session = example_runtime.create_session(AGENT, "Answer ticket T-1001")
    example_runtime.resolve(session.session_id)
    return session.session_id


# --- streaming -------------------------------------------------------------------------------------------


def test_streams_the_history_then_live_events(
    live_server: LiveServer, example_runtime: cra.Runtime, session_id: str
) -> None:
    base = live_server(example_runtime)
    history = wire(example_runtime, session_id)
    assert len(history) > 3
    with open_stream(base, session_id=session_id) as ws:
        got = receive(ws, len(history))
        assert got == history  # byte-for-byte the stored events, in order, from sequence 0
        example_runtime.resolve(session_id)  # written while the client is connected
        live = wire(example_runtime, session_id, since=history[-1]["sequence"])
        assert receive(ws, len(live)) == live
    assert_contiguous(got + live, 0)


def test_each_message_is_the_events_canonical_line(
    live_server: LiveServer, example_runtime: cra.Runtime, session_id: str
) -> None:
    base = live_server(example_runtime)
    stored = example_runtime.get_trace(session_id)
    with open_stream(base, session_id=session_id) as ws:
        for event in stored:
            assert ws.recv(timeout=TIMEOUT) == event.to_json().decode()


def test_since_sequence_starts_after_it(
    live_server: LiveServer, example_runtime: cra.Runtime, session_id: str
) -> None:
    base = live_server(example_runtime)
    expected = wire(example_runtime, session_id, since=1)
    with open_stream(base, session_id=session_id, since_sequence=1) as ws:
        got = receive(ws, len(expected))
    assert got == expected
    assert_contiguous(got, 2)


def test_resume_after_disconnect_has_no_gap_and_no_duplicate(
    live_server: LiveServer, example_runtime: cra.Runtime, session_id: str
) -> None:
    base = live_server(example_runtime)
    received: list[dict[str, Any]] = []
    with open_stream(base, session_id=session_id) as ws:
        received += receive(ws, 3)  # leave in the middle of the history
    for _ in range(3):
        example_runtime.resolve(session_id)  # written while nobody is connected
        with open_stream(base, session_id=session_id, since_sequence=received[-1]["sequence"]) as ws:
            received += receive(ws, 2)
    example_runtime.end_session(session_id)
    with open_stream(base, session_id=session_id, since_sequence=received[-1]["sequence"]) as ws:
        code, _reason, rest = closed_with(ws)
    received += rest
    assert code == 1000
    assert received == wire(example_runtime, session_id)
    assert_contiguous(received, 0)
    assert received[-1]["event_type"] == "session.ended"


def test_session_end_sends_session_ended_then_closes_1000(
    live_server: LiveServer, example_runtime: cra.Runtime, session_id: str
) -> None:
    base = live_server(example_runtime)
    history = wire(example_runtime, session_id)
    with open_stream(base, session_id=session_id) as ws:
        receive(ws, len(history))
        response = httpx.delete(f"{base}/v1/sessions/{session_id}", timeout=TIMEOUT)
        assert response.status_code == 204
        code, reason, rest = closed_with(ws)
    assert (code, reason) == (1000, "session ended")
    assert [e["event_type"] for e in rest] == ["session.ended"]
    assert rest[0]["sequence"] == history[-1]["sequence"] + 1


def test_an_ended_session_streams_its_history_and_closes(
    live_server: LiveServer, example_runtime: cra.Runtime, session_id: str
) -> None:
    example_runtime.end_session(session_id)
    base = live_server(example_runtime)
    with open_stream(base, session_id=session_id) as ws:
        code, _reason, events = closed_with(ws)
    assert code == 1000
    assert events == wire(example_runtime, session_id)
    # Resuming after the last event: nothing more will ever come, so the stream closes at once.
    with open_stream(base, session_id=session_id, since_sequence=events[-1]["sequence"]) as ws:
        assert closed_with(ws) == (1000, "session ended", [])


def test_history_is_not_backlog(
    live_server: LiveServer, example_runtime: cra.Runtime, session_id: str
) -> None:
    # A long history replays at the client's pace, whatever ws_backlog says: it existed before it connected.
    base = live_server(example_runtime, ServerConfig(ws_backlog=1))
    history = wire(example_runtime, session_id)
    with open_stream(base, session_id=session_id) as ws:
        assert receive(ws, len(history)) == history


def test_a_client_too_far_behind_is_closed_1013_and_resumes(
    live_server: LiveServer, example_runtime: cra.Runtime, session_id: str
) -> None:
    base = live_server(example_runtime, ServerConfig(ws_backlog=2))
    history = wire(example_runtime, session_id)
    last = history[-1]["sequence"]
    with open_stream(base, session_id=session_id) as ws:
        receive(ws, len(history))  # the server has sent all of it: the stream is live
        example_runtime.resolve(session_id)  # one resolve writes more than 2 events at once
        burst = wire(example_runtime, session_id, since=last)
        assert len(burst) > 2
        code, reason, rest = closed_with(ws)
    assert code == 1013
    assert reason.startswith("backlog exceeded")
    assert reason.endswith(f"reconnect with since_sequence={last}")
    assert rest == []
    with open_stream(base, session_id=session_id, since_sequence=last) as ws:
        assert receive(ws, len(burst)) == burst


# --- refusals --------------------------------------------------------------------------------------------


def test_unknown_session_is_4404(live_server: LiveServer, example_runtime: cra.Runtime) -> None:
    base = live_server(example_runtime)
    with open_stream(base, session_id="no-such-session") as ws:
        code, reason, events = closed_with(ws)
    assert (code, events) == (4404, [])
    assert "no-such-session" in reason


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"session_id": ""},
        {"session_id": "SID", "since_sequence": "abc"},
        {"session_id": "SID", "since_sequence": "-2"},
        {"session_id": "SID", "since_sequence": "1.5"},
        {
            "session_id": "SID",
            "since_sequence": "9999",
        },  # past the last event: the client cannot have seen it
    ],
    ids=["no-session-id", "empty-session-id", "not-an-integer", "below-minus-one", "float", "past-the-head"],
)
def test_bad_query_is_4400(
    live_server: LiveServer, example_runtime: cra.Runtime, session_id: str, query: dict[str, str]
) -> None:
    base = live_server(example_runtime)
    query = {name: session_id if value == "SID" else value for name, value in query.items()}
    with open_stream(base, **query) as ws:
        code, reason, events = closed_with(ws)
    assert (code, events) == (4400, [])
    assert reason


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Authenticator, dict[str, str]]:
    """API keys for two agents and an admin, and the authenticator that knows them."""
    store = ApiKeyStore(tmp_path / "keys.json")
    plain = {
        AGENT: store.create("agent", agent_id=AGENT)[0],
        "other-bot": store.create("agent", agent_id="other-bot")[0],
        "admin": store.create("admin")[0],
    }
    return Authenticator(api_keys=store), plain


def test_auth_agents_see_only_their_own_sessions(
    live_server: LiveServer,
    example_runtime: cra.Runtime,
    session_id: str,
    keys: tuple[Authenticator, dict[str, str]],
) -> None:
    authenticator, plain = keys
    base = live_server(example_runtime, authenticator=authenticator)
    history = wire(example_runtime, session_id)
    for who in (AGENT, "admin"):
        with open_stream(base, {"X-API-Key": plain[who]}, session_id=session_id) as ws:
            assert receive(ws, len(history)) == history
    with open_stream(base, {"X-API-Key": plain["other-bot"]}, session_id=session_id) as ws:
        code, _reason, events = closed_with(ws)
    assert (code, events) == (4403, [])


@pytest.mark.parametrize("credential", ["none", "unknown-key", "key-in-url"])
def test_auth_missing_or_bad_credentials_are_4401(
    live_server: LiveServer,
    example_runtime: cra.Runtime,
    session_id: str,
    keys: tuple[Authenticator, dict[str, str]],
    credential: str,
) -> None:
    authenticator, plain = keys
    base = live_server(example_runtime, authenticator=authenticator)
    headers: dict[str, str] = {}
    query = {"session_id": session_id}
    if credential == "unknown-key":
        headers["X-API-Key"] = "cra_" + "0" * 16 + "_" + "0" * 64
    elif credential == "key-in-url":
        query["api_key"] = plain[AGENT]  # secrets in URLs end up in logs: never accepted
    with open_stream(base, headers, **query) as ws:
        code, _reason, events = closed_with(ws)
    assert (code, events) == (4401, [])


def test_the_per_credential_rate_limit_applies_to_connections(
    live_server: LiveServer, example_runtime: cra.Runtime, session_id: str
) -> None:
    base = live_server(example_runtime, ServerConfig(rate_limit_per_second=0.001, rate_limit_burst=1))
    with open_stream(base, session_id=session_id) as ws:
        receive(ws, 1)
    with open_stream(base, session_id=session_id) as ws:
        code, _reason, events = closed_with(ws)
    assert (code, events) == (4429, [])


def test_close_reasons_fit_in_a_close_frame() -> None:
    assert stream._reason("x" * 500).encode() == b"x" * 120 + b"..."
    long = "é" * 100  # two bytes each: the cut must not split one
    assert len(stream._reason(long).encode()) <= 123
    assert stream._reason("short") == "short"
