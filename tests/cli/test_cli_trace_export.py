"""``cra trace export``: TRACE JSONL from trace storage (SQLite, JSONL) or from a real ``cra serve``, exactly as
stored, with ``--verify`` and meaningful exit codes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

import cra
from cra.cli import trace, trace_export

from .test_cli_execute import APPROVAL_ATLAS, Live, Run, live_server, make_runner, unused_port_url

trace_app = typer.Typer(rich_markup_mode=None)
trace_app.command("export")(trace_export.export_command)
trace_app.command("verify")(trace.verify_command)
app = typer.Typer(rich_markup_mode=None)
app.add_typer(trace_app, name="trace")


@pytest.fixture
def run() -> Run:
    return make_runner(app)


def record(runtime: cra.Runtime, executions: int = 3) -> str:
    """A session with a resolution and some executions (authorized, denied, pending); its id."""
    session_id = runtime.create_session("agent-1", "help").session_id
    resolution = runtime.resolve(session_id).resolution_id
    for action in ["ticket.read", "ticket.delete", "ticket.close"][:executions]:
        runtime.execute(session_id, resolution, action, {"id": "T-1"})
    return session_id


def stored(url: str, executions: int = 3) -> tuple[str, list[cra.TraceEvent]]:
    """Record a session into the storage at ``url``; (session_id, its events as stored)."""
    with cra.Runtime(storage=url) as runtime:
        runtime.load_atlas(APPROVAL_ATLAS)
        session_id = record(runtime, executions)
    storage = cra.open_storage(url)
    try:
        return session_id, storage.read(session_id)
    finally:
        storage.close()


def jsonl_bytes(events: list[cra.TraceEvent]) -> bytes:
    return b"".join(e.to_json() + b"\n" for e in events)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cra.db'}"


@pytest.fixture
def server() -> Iterator[Live]:
    with live_server() as live:
        yield live


# --- from storage -----------------------------------------------------------------------------------------


def test_export_from_sqlite_to_a_file_then_verify(run: Run, sqlite_url: str, tmp_path: Path) -> None:
    session_id, events = stored(sqlite_url)
    out = tmp_path / "session.trace.jsonl"
    result = run("trace", "export", "--session", session_id, "--storage", sqlite_url, "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    expected = tmp_path / "expected.trace.jsonl"
    cra.write_jsonl(expected, events)
    assert out.read_bytes() == expected.read_bytes()
    head = events[-1].event_hash
    assert result.stderr == (f"exported {len(events)} events of session {session_id} to {out}; head {head}\n")
    verified = run("trace", "verify", out)
    assert verified.exit_code == 0, verified.output
    assert f"head_hash: {head}" in verified.stdout


def test_export_to_stdout_is_exactly_the_stored_lines(run: Run, sqlite_url: str) -> None:
    session_id, events = stored(sqlite_url)
    result = run("trace", "export", "--session", session_id, "--storage", sqlite_url)
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == jsonl_bytes(events)
    assert "to stdout" in result.stderr
    dash = run("trace", "export", "--session", session_id, "--storage", sqlite_url, "-o", "-")
    assert dash.stdout_bytes == jsonl_bytes(events)


def test_verify_passes_on_an_intact_chain(run: Run, sqlite_url: str) -> None:
    session_id, events = stored(sqlite_url)
    result = run("trace", "export", "--session", session_id, "--storage", sqlite_url, "--verify")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-1] == f"verified: the chain of {len(events)} events verifies"


def test_export_from_jsonl_storage_and_verify_a_tampered_chain(run: Run, tmp_path: Path) -> None:
    directory = tmp_path / "traces"
    url = f"jsonl://{directory}"
    session_id, events = stored(url)
    good = run("trace", "export", "--session", session_id, "--storage", url, "--verify")
    assert good.exit_code == 0, good.output
    assert good.stdout_bytes == jsonl_bytes(events)

    path = directory / f"{session_id}.trace.jsonl"
    first, rest = path.read_bytes().split(b"\n", 1)
    assert b'"goal":"help"' in first  # session.started
    path.write_bytes(first.replace(b'"goal":"help"', b'"goal":"HELP"') + b"\n" + rest)
    out = tmp_path / "tampered.trace.jsonl"
    bad = run("trace", "export", "--session", session_id, "--storage", url, "--verify", "-o", out)
    assert bad.exit_code == 1, bad.output
    assert (
        bad.stderr.splitlines()[-1]
        == f"invalid: hash_mismatch at index 0 (sequence 0); 1 of {len(events)} events checked"
    )
    assert out.exists()  # written all the same: the broken chain is the evidence
    without_verify = run("trace", "export", "--session", session_id, "--storage", url)
    assert without_verify.exit_code == 0


def test_large_trace_is_read_page_by_page(run: Run, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    session_id, events = stored(sqlite_url)
    reads: list[tuple[int | None, int | None]] = []
    original = cra.open_storage

    def counting(url: str) -> cra.TraceStorage:
        storage = original(url)
        read = storage.read

        def spy(
            session_id: str,
            *,
            since_sequence: int | None = None,
            limit: int | None = None,
            event_type: str | None = None,
        ) -> list[cra.TraceEvent]:
            reads.append((since_sequence, limit))
            return read(session_id, since_sequence=since_sequence, limit=limit, event_type=event_type)

        storage.read = spy  # type: ignore[method-assign]
        return storage

    monkeypatch.setattr(cra, "open_storage", counting)  # trace_export calls cra.open_storage
    monkeypatch.setattr(trace_export, "PAGE_SIZE", 4)
    # On a terminal: the progress bar (stderr) must not end up in the exported lines (stdout).
    result = run(
        "trace", "export", "--session", session_id, "--storage", sqlite_url, "--verify", terminal=True
    )
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == jsonl_bytes(events)
    assert len(reads) == -(-len(events) // 4)
    assert reads[0] == (None, 4)
    assert reads[1] == (3, 4)
    assert "reading events" in result.stderr  # the progress bar, on stderr only
    assert "verified" in result.stderr


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("sqlite:///{tmp}/missing.db", "missing.db does not exist"),
        ("jsonl://{tmp}/missing-dir", "missing-dir does not exist"),
        ("memory://", "nothing to export"),
        ("nosuch://x", "unknown storage URL"),
    ],
)
def test_bad_storage_is_a_usage_error(run: Run, tmp_path: Path, storage: str, message: str) -> None:
    result = run("trace", "export", "--session", "s", "--storage", storage.format(tmp=tmp_path))
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())
    assert not (tmp_path / "missing.db").exists()
    assert not (tmp_path / "missing-dir").exists()


def test_unknown_session_in_storage_exits_1(run: Run, sqlite_url: str) -> None:
    stored(sqlite_url)
    result = run("trace", "export", "--session", "no-such-session", "--storage", sqlite_url)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: SESSION_NOT_FOUND: no events for session 'no-such-session'")


def test_a_file_that_is_not_a_database_exits_1(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "not.db"
    path.write_bytes(b"definitely not sqlite" * 100)
    result = run("trace", "export", "--session", "s", "--storage", f"sqlite:///{path}")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: STORAGE_UNAVAILABLE: ")


def test_unwritable_output_exits_1(run: Run, sqlite_url: str, tmp_path: Path) -> None:
    session_id, _ = stored(sqlite_url)
    target = tmp_path / "no" / "such" / "dir" / "t.jsonl"
    result = run("trace", "export", "--session", session_id, "--storage", sqlite_url, "-o", target)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: WRITE_FAILED: cannot write {target}")


# --- from a server ----------------------------------------------------------------------------------------


def test_export_from_the_server(run: Run, server: Live, tmp_path: Path) -> None:
    session_id = record(server.runtime)
    events = server.runtime.get_trace(session_id)
    out = tmp_path / "t.jsonl"
    result = run("trace", "export", "--session", session_id, "--url", server.url, "-o", out, "--verify")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == jsonl_bytes(events)
    assert f"exported {len(events)} events of session {session_id}" in result.stderr
    assert "verified" in result.stderr


def test_export_from_the_server_in_pages(run: Run, server: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    session_id = record(server.runtime)
    events = server.runtime.get_trace(session_id)
    monkeypatch.setattr(trace_export, "PAGE_SIZE", 5)
    result = run("trace", "export", "--session", session_id, "--verify", env={"CRA_URL": server.url})
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == jsonl_bytes(events)


def test_unknown_session_on_the_server_exits_1(run: Run, server: Live) -> None:
    result = run("trace", "export", "--session", "no-such-session", "--url", server.url)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: SESSION_NOT_FOUND: ")


def test_unreachable_server_exits_1(run: Run) -> None:
    result = run("trace", "export", "--session", "s", "--url", unused_port_url())
    assert result.exit_code == 1
    assert result.stderr.startswith("error: SERVER_UNREACHABLE: ")


# --- usage ------------------------------------------------------------------------------------------------


def test_no_source_is_exit_2_naming_both_options(run: Run) -> None:
    result = run("trace", "export", "--session", "s")
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "--url URL (or CRA_URL)" in message
    assert "--storage URL" in message


def test_two_sources_is_exit_2(run: Run, sqlite_url: str) -> None:
    result = run("trace", "export", "--session", "s", "--storage", sqlite_url, "--url", "http://127.0.0.1:1")
    assert result.exit_code == 2
    assert "not both" in result.stderr


def test_session_is_required_and_help_has_examples(run: Run) -> None:
    assert run("trace", "export", "--storage", "sqlite:///x.db").exit_code == 2
    result = run("trace", "export", "--help")
    assert result.exit_code == 0
    assert "Example:" in result.stdout
    assert "cra trace export --session" in result.stdout


def test_a_source_that_ignores_since_sequence_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with cra.Runtime() as runtime:
        runtime.load_atlas(APPROVAL_ATLAS)
        events = runtime.get_trace(record(runtime))
    first_page = events[:4]
    with pytest.raises(typer.Exit) as exit_info:
        trace_export._read_all(lambda since, limit: first_page, page_size=4, total=None, last=None)
    assert exit_info.value.exit_code == 1
    assert capsys.readouterr().err.startswith("error: BAD_RESPONSE: ")
