"""``cra trace tail``: local storage (a SQLite file a Runtime wrote) and a real server (HTTP without -f, the
WebSocket stream with -f). The command is registered on a local typer app, as ``cra trace`` will."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

import cra
from cra.cli import trace_tail
from cra.server.auth import ApiKeyStore, Authenticator
from cra.server.config import ServerConfig
from server.conftest import EXAMPLE_ATLAS, LiveServer, example_runtime, live_server  # noqa: F401

from .conftest import PLAIN_ENV, TERMINAL_ENV

AGENT = "support-bot"
LINE = re.compile(r"^\s*(\d+)  (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)  (\S+)\s*(.*)$")

Run = Callable[..., Result]


@pytest.fixture
def tail() -> Run:
    """``tail("--session", sid, ..., terminal=False, env={})``: the command on a local app, in-process."""
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """A group, so that ``tail`` is a sub-command as under ``cra trace``."""

    app.command("tail")(trace_tail.tail_command)
    runner = CliRunner()

    def run(*args: str, terminal: bool = False, env: dict[str, str | None] | None = None) -> Result:
        base: dict[str, str | None] = {**(TERMINAL_ENV if terminal else PLAIN_ENV), "CRA_URL": None}
        base["CRA_API_KEY"] = None
        return runner.invoke(app, ["tail", *args], env={**base, **(env or {})})

    return run


def lines_of(result: Result) -> list[str]:
    return result.stdout.splitlines()


def ndjson(events: list[cra.TraceEvent]) -> list[str]:
    return [e.to_json().decode() for e in events]


# --- local storage -------------------------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[cra.Runtime, str, str]]:
    """(runtime, session id, storage URL): a SQLite file with one active session that has resolved once."""
    url = f"sqlite:///{tmp_path / 'cra.db'}"
    runtime = cra.Runtime(storage=url)
    try:
        runtime.load_atlas(EXAMPLE_ATLAS)
        session = runtime.create_session(AGENT, "Answer ticket T-1001")
        runtime.resolve(session.session_id)
        runtime.flush()
        yield runtime, session.session_id, url
    finally:
        runtime.close()


def test_storage_prints_one_line_per_event(tail: Run, db: tuple[cra.Runtime, str, str]) -> None:
    runtime, sid, url = db
    result = tail("--session", sid, "--storage", url)
    assert result.exit_code == 0, result.output
    events = runtime.get_trace(sid)
    lines = lines_of(result)
    assert len(lines) == len(events)
    for line, event in zip(lines, events, strict=True):
        match = LINE.match(line)
        assert match is not None, line
        assert match.groups()[:3] == (str(event.sequence), event.timestamp, event.event_type)
    assert "agent_id=support-bot" in lines[0]
    assert 'goal="Answer ticket T-1001"' in lines[0]
    assert "\x1b[" not in result.stdout  # plain when piped


def test_storage_on_a_terminal_is_coloured(tail: Run, db: tuple[cra.Runtime, str, str]) -> None:
    _runtime, sid, url = db
    result = tail("-s", sid, "--storage", url, terminal=True)
    assert result.exit_code == 0, result.output
    assert "\x1b[" in result.stdout
    assert "session.started" in result.stdout


def test_storage_json_is_the_stored_lines(tail: Run, db: tuple[cra.Runtime, str, str]) -> None:
    runtime, sid, url = db
    result = tail("-s", sid, "--storage", url, "--json")
    assert result.exit_code == 0, result.output
    assert lines_of(result) == ndjson(runtime.get_trace(sid))


def test_storage_type_filter_and_globs(tail: Run, db: tuple[cra.Runtime, str, str]) -> None:
    runtime, sid, url = db
    events = runtime.get_trace(sid)
    result = tail("-s", sid, "--storage", url, "--json", "--type", "policy.evaluated")
    assert lines_of(result) == ndjson([e for e in events if e.event_type == "policy.evaluated"])
    result = tail("-s", sid, "--storage", url, "--json", "-t", "carp.*", "-t", "session.started")
    expected = [e for e in events if e.event_type.startswith("carp.") or e.event_type == "session.started"]
    assert lines_of(result) == ndjson(expected)
    assert len(expected) >= 3


def test_storage_since(tail: Run, db: tuple[cra.Runtime, str, str]) -> None:
    runtime, sid, url = db
    result = tail("-s", sid, "--storage", url, "--json", "--since", "2")
    assert result.exit_code == 0, result.output
    assert lines_of(result) == ndjson(runtime.get_trace(sid, since_sequence=2))


def test_storage_follow_prints_new_events_until_the_session_ends(
    tail: Run, db: tuple[cra.Runtime, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, sid, url = db
    before = len(runtime.get_trace(sid))
    waits: list[float] = []

    def wait(seconds: float) -> None:
        # The first wait means the command has printed everything stored and is polling: the session goes
        # on now, and ends.
        waits.append(seconds)
        if len(waits) == 1:
            runtime.resolve(sid)
            runtime.end_session(sid)

    monkeypatch.setattr(trace_tail, "_wait", wait)
    result = tail("-s", sid, "--storage", url, "--json", "-f")
    assert result.exit_code == 0, result.output
    printed = [json.loads(line) for line in lines_of(result)]
    assert lines_of(result) == ndjson(runtime.get_trace(sid))
    assert len(printed) > before + 1
    assert [e["sequence"] for e in printed] == list(range(len(printed)))
    assert printed[-1]["event_type"] == "session.ended"
    assert waits == [trace_tail.POLL_INTERVAL_SECONDS]


def test_storage_follow_of_an_ended_session_stops_at_its_end(
    tail: Run, db: tuple[cra.Runtime, str, str]
) -> None:
    runtime, sid, url = db
    runtime.end_session(sid)
    last = runtime.get_trace(sid)[-1].sequence
    result = tail("-s", sid, "--storage", url, "-f", "--since", str(last))
    assert (result.exit_code, result.stdout) == (0, "")
    result = tail("-s", sid, "--storage", url, "-f", "--json")
    assert lines_of(result) == ndjson(runtime.get_trace(sid))


def test_jsonl_storage(tail: Run, tmp_path: Path) -> None:
    url = f"jsonl://{tmp_path / 'traces'}"
    with cra.Runtime(storage=url) as runtime:
        session = runtime.create_session(AGENT, "Answer ticket T-1001")
        runtime.end_session(session.session_id)
        expected = ndjson(runtime.get_trace(session.session_id))
    result = tail("-s", session.session_id, "--storage", url, "--json")
    assert (result.exit_code, lines_of(result)) == (0, expected)


def test_storage_unknown_session_is_exit_1(tail: Run, db: tuple[cra.Runtime, str, str]) -> None:
    _runtime, _sid, url = db
    result = tail("-s", "no-such-session", "--storage", url)
    assert result.exit_code == 1
    assert "SESSION_NOT_FOUND" in result.stderr
    result = tail("-s", "no-such-session", "--storage", url, "--json")
    assert json.loads(result.stderr)["error"]["code"] == "SESSION_NOT_FOUND"


def test_storage_since_past_the_end_is_exit_1(tail: Run, db: tuple[cra.Runtime, str, str]) -> None:
    _runtime, sid, url = db
    result = tail("-s", sid, "--storage", url, "--since", "999")
    assert result.exit_code == 1
    assert "past the session's last event" in result.stderr


def test_a_missing_sqlite_file_is_exit_1_and_not_created(tail: Run, tmp_path: Path) -> None:
    path = tmp_path / "nothing.db"
    result = tail("-s", "x", "--storage", f"sqlite:///{path}")
    assert result.exit_code == 1
    assert "STORAGE_NOT_FOUND" in result.stderr
    assert not path.exists()


@pytest.mark.parametrize(
    "args",
    [
        [],  # --session is required
        ["-s", "x", "--url", "http://127.0.0.1:1", "--storage", "sqlite:///cra.db"],
        ["-s", "x", "--storage", "memory://"],
        ["-s", "x", "--storage", "nosuch://x"],
        ["-s", "x", "--url", "ftp://example.com"],
        ["-s", "x", "--since", "-2"],
    ],
    ids=[
        "no-session",
        "url-and-storage",
        "memory-storage",
        "unknown-scheme",
        "bad-url",
        "since-below-minus-one",
    ],
)
def test_usage_errors_are_exit_2(tail: Run, args: list[str]) -> None:
    result = tail(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""


# --- a server ------------------------------------------------------------------------------------------------


@pytest.fixture
def served(live_server: LiveServer, example_runtime: cra.Runtime) -> tuple[cra.Runtime, str, str]:  # noqa: F811
    """(runtime, session id, base URL): a server without auth and a session that has resolved once."""
    session = example_runtime.create_session(AGENT, "Answer ticket T-1001")
    example_runtime.resolve(session.session_id)
    return example_runtime, session.session_id, live_server(example_runtime)


def test_url_without_follow_prints_what_is_stored(tail: Run, served: tuple[cra.Runtime, str, str]) -> None:
    runtime, sid, base = served
    result = tail("-s", sid, "--url", base, "--json")
    assert result.exit_code == 0, result.output
    assert lines_of(result) == ndjson(runtime.get_trace(sid))
    result = tail("-s", sid, "--since", "1", "--json", env={"CRA_URL": base})  # the URL from the environment
    assert lines_of(result) == ndjson(runtime.get_trace(sid, since_sequence=1))


def follow_while(
    monkeypatch: pytest.MonkeyPatch, action: Callable[[], Any]
) -> Callable[[], threading.Thread | None]:
    """Run ``action`` on a thread once the command has printed its first event (so it is connected and
    what ``action`` writes arrives live). Returns a getter of that thread, to join it."""
    started: list[threading.Thread] = []
    emit = trace_tail._Printer.emit

    def emit_then_act(self: trace_tail._Printer, line: str, event: dict[str, Any]) -> None:
        emit(self, line, event)
        if not started:
            started.append(threading.Thread(target=action))
            started[0].start()

    monkeypatch.setattr(trace_tail._Printer, "emit", emit_then_act)
    return lambda: started[0] if started else None


def test_url_follow_streams_live_until_the_session_ends(
    tail: Run, served: tuple[cra.Runtime, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, sid, base = served

    def go_on() -> None:
        runtime.resolve(sid)
        runtime.end_session(sid)

    thread = follow_while(monkeypatch, go_on)
    result = tail("-s", sid, "--url", base, "-f", "--json")
    worker = thread()
    assert worker is not None
    worker.join()
    assert result.exit_code == 0, result.output
    assert lines_of(result) == ndjson(runtime.get_trace(sid))
    assert json.loads(lines_of(result)[-1])["event_type"] == "session.ended"


def test_url_follow_reconnects_when_it_falls_behind(
    tail: Run,
    live_server: LiveServer,  # noqa: F811
    example_runtime: cra.Runtime,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = example_runtime
    base = live_server(runtime, ServerConfig(ws_backlog=2))
    sid = runtime.create_session(AGENT, "Answer ticket T-1001").session_id
    waits: list[float] = []
    monkeypatch.setattr(trace_tail, "_wait", waits.append)

    def burst() -> None:
        runtime.resolve(sid)  # more than ws_backlog events at once: the server closes with 1013
        runtime.end_session(sid)

    thread = follow_while(monkeypatch, burst)
    result = tail("-s", sid, "--url", base, "-f", "--json")
    worker = thread()
    assert worker is not None
    worker.join()
    assert result.exit_code == 0, result.output
    assert lines_of(result) == ndjson(runtime.get_trace(sid))  # every event once, in order
    assert len(waits) == 1  # one reconnection


def test_url_unknown_session_is_exit_1(tail: Run, served: tuple[cra.Runtime, str, str]) -> None:
    _runtime, _sid, base = served
    for follow in ([], ["-f"]):
        result = tail("-s", "no-such-session", "--url", base, "--json", *follow)
        assert result.exit_code == 1, result.output
        assert json.loads(result.stderr)["error"]["code"] in {"SESSION_NOT_FOUND", "NOT_FOUND"}


def test_url_api_keys(
    tail: Run,
    live_server: LiveServer,  # noqa: F811
    example_runtime: cra.Runtime,  # noqa: F811
    tmp_path: Path,
) -> None:
    store = ApiKeyStore(tmp_path / "keys.json")
    own, _ = store.create("agent", agent_id=AGENT)
    other, _ = store.create("agent", agent_id="other-bot")
    base = live_server(example_runtime, authenticator=Authenticator(api_keys=store))
    sid = example_runtime.create_session(AGENT, "Answer ticket T-1001").session_id
    example_runtime.end_session(sid)
    expected = ndjson(example_runtime.get_trace(sid))
    for follow in ([], ["-f"]):
        result = tail("-s", sid, "--url", base, "--json", "--api-key", own, *follow)
        assert (result.exit_code, lines_of(result)) == (0, expected), result.output
        result = tail("-s", sid, "--url", base, "--json", *follow, env={"CRA_API_KEY": own})
        assert (result.exit_code, lines_of(result)) == (0, expected), result.output
        result = tail("-s", sid, "--url", base, "--json", *follow)
        assert result.exit_code == 1
        assert json.loads(result.stderr)["error"]["code"] == "UNAUTHORIZED"
        result = tail("-s", sid, "--url", base, "--json", "--api-key", other, *follow)
        assert result.exit_code == 1
        assert json.loads(result.stderr)["error"]["code"] == "FORBIDDEN"


def test_an_unreachable_server_is_exit_1(tail: Run) -> None:
    for follow in ([], ["-f"]):
        result = tail("-s", "x", "--url", "http://127.0.0.1:1", *follow)
        assert result.exit_code == 1
        assert "CONNECTION_FAILED" in result.stderr


# --- reconnection, against a scripted connection -------------------------------------------------------------


class ScriptedConnection:
    """Stands in for a websockets client connection: yields its messages, then ends as scripted."""

    def __init__(self, messages: list[str], end: Exception) -> None:
        self.messages = messages
        self.end = end

    def __enter__(self) -> ScriptedConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def recv(self) -> str:
        if self.messages:
            return self.messages.pop(0)
        raise self.end


def scripted(monkeypatch: pytest.MonkeyPatch, script: list[Exception | ScriptedConnection]) -> list[str]:
    """Replace ``connect`` with one that plays ``script`` (a connection, or an exception connect raises);
    returns the URLs it was called with."""
    import websockets.sync.client

    urls: list[str] = []

    def connect(url: str, **_kwargs: Any) -> ScriptedConnection:
        urls.append(url)
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    monkeypatch.setattr(websockets.sync.client, "connect", connect)
    monkeypatch.setattr(trace_tail, "_wait", lambda _seconds: None)
    return urls


def closed(code: int | None, reason: str = "") -> ConnectionClosed:
    return ConnectionClosed(None if code is None else Close(code, reason), None)


def test_follow_resumes_after_a_restart_or_a_drop(
    tail: Run, monkeypatch: pytest.MonkeyPatch, db: tuple[cra.Runtime, str, str]
) -> None:
    runtime, sid, _url = db
    runtime.end_session(sid)
    lines = ndjson(runtime.get_trace(sid))
    urls = scripted(
        monkeypatch,
        [
            ScriptedConnection(lines[:2], closed(1012, "service restart")),
            ConnectionRefusedError("refused"),  # still restarting
            ScriptedConnection(lines[2:3], closed(None)),  # dropped without a close frame
            ScriptedConnection(lines[3:], closed(1000, "session ended")),
        ],
    )
    result = tail("-s", sid, "--url", "http://cra.test", "-f", "--json")
    assert result.exit_code == 0, result.output
    assert lines_of(result) == lines
    assert [u.rsplit("since_sequence=", 1)[1] for u in urls] == ["-1", "1", "1", "2"]


def test_follow_gives_up_after_repeated_failures(tail: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    first = ScriptedConnection([], closed(1013, "backlog exceeded"))
    again = [
        ScriptedConnection([], closed(1013, "storage unavailable"))
        for _ in range(trace_tail.RECONNECT_ATTEMPTS)
    ]
    urls = scripted(monkeypatch, [first, *again])
    result = tail("-s", "x", "--url", "http://cra.test", "-f", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stderr)["error"] == {
        "code": "UNAVAILABLE",
        "category": "unavailable",
        "message": "storage unavailable",
        "recoverable": True,
    }
    assert len(urls) == trace_tail.RECONNECT_ATTEMPTS + 1


def test_follow_reports_refusals_without_retrying(tail: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    urls = scripted(monkeypatch, [ScriptedConnection([], closed(4404, "no session 'x'"))])
    result = tail("-s", "x", "--url", "http://cra.test", "-f")
    assert result.exit_code == 1
    assert "NOT_FOUND: no session 'x'" in result.stderr
    assert len(urls) == 1
