"""``cra execute``: against a real ``cra serve`` (uvicorn on loopback) and as a local dry run.

The commands run in a local typer app (they are registered in ``cra.cli`` separately). The live-server
helpers here (``live_server``, ``RemoteRun``) are shared with the approvals and trace export tests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

import cra
from cra.cli import approvals, execute
from cra.server.app import create_app
from e2e.atlas import APPROVAL_ATLAS
from e2e.live import free_port, running

from .conftest import PLAIN_ENV, TERMINAL_ENV

"""ticket.read allowed, ticket.reply rate-limited 2/h, ticket.close needs approval, ticket.delete denied."""
EXAMPLE_ATLAS = Path(cra.__file__).parent / "cli" / "example_atlas"
AGENT = "agent-1"
PARAMS = '{"id": "T-1"}'
NO_REMOTE_ENV: dict[str, str | None] = {"CRA_URL": None, "CRA_API_KEY": None, "CRA_TOKEN": None}
"""The developer's own server settings must not leak into the tests."""

app = typer.Typer(rich_markup_mode=None)
app.command("execute")(execute.execute_command)
app.add_typer(approvals.app, name="approvals")


@dataclass
class Live:
    """A running server: its URL and the runtime behind it (to open sessions and read traces directly)."""

    url: str
    runtime: cra.Runtime

    def session(self, agent: str = AGENT, goal: str = "help") -> str:
        return self.runtime.create_session(agent, goal).session_id


@contextmanager
def live_server() -> Iterator[Live]:
    """``cra serve`` over a fresh runtime with APPROVAL_ATLAS, on a free loopback port."""
    runtime = cra.Runtime()
    runtime.load_atlas(APPROVAL_ATLAS)
    with running(create_app(runtime, timers=False, owns_runtime=True)) as url:
        yield Live(url, runtime)


Run = Callable[..., Result]


def make_runner(typer_app: typer.Typer) -> Run:
    """``run("execute", "--session", ..., env={...}, terminal=False)`` in-process, as when piped."""
    runner = CliRunner()

    def invoke(*args: str | Path, env: dict[str, str | None] | None = None, terminal: bool = False) -> Result:
        full_env = {**(TERMINAL_ENV if terminal else PLAIN_ENV), **NO_REMOTE_ENV, **(env or {})}
        return runner.invoke(typer_app, [str(a) for a in args], env=full_env)

    return invoke


@pytest.fixture
def server() -> Iterator[Live]:
    with live_server() as live:
        yield live


@pytest.fixture
def run() -> Run:
    return make_runner(app)


def remote(live: Live, session: str, action: str, *extra: str, params: str = PARAMS) -> list[str]:
    return ["execute", "--url", live.url, "--session", session, "--agent", AGENT, "--action", action,
            "--params", params, *extra]  # fmt: skip


def stderr_error(result: Result) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(result.stderr)["error"]
    return body


# --- remote -------------------------------------------------------------------------------------------------


def test_remote_authorized_resolves_first_and_shows_the_response(server: Live, run: Run) -> None:
    sid = server.session()
    result = run(*remote(server, sid, "ticket.read"))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "decision requires_approval" in out
    assert "action ticket.read: allowed" in out
    assert "status: authorized" in out
    assert f"session_id: {sid}" in out
    assert "note: no handler is registered for ticket.read" in out
    assert "\x1b[" not in out
    types = [e.event_type for e in server.runtime.get_trace(sid)]
    assert "carp.resolution.completed" in types
    assert types[-2:] == ["action.requested", "action.approved"]


def test_remote_json_is_the_execute_response(server: Live, run: Run) -> None:
    sid = server.session()
    result = run(*remote(server, sid, "ticket.read", "--json"))
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["status"] == "authorized"
    assert body["session_id"] == sid
    assert body["action_id"] == "ticket.read"
    assert body["error"] is None and body["approval_id"] is None
    requested = [e for e in server.runtime.get_trace(sid) if e.event_type == "action.requested"]
    assert requested[0].payload["execution_id"] == body["execution_id"]


def test_remote_denied_exits_1_with_the_policy_code(server: Live, run: Run) -> None:
    sid = server.session()
    result = run(*remote(server, sid, "ticket.delete"))
    assert result.exit_code == 1, result.output
    assert "action ticket.delete: denied by policy no-delete" in result.stdout
    assert "status: denied" in result.stdout
    assert "error: ACTION_NOT_ALLOWED: " in result.stdout
    as_json = run(*remote(server, sid, "ticket.delete", "--json"))
    assert as_json.exit_code == 1
    body = json.loads(as_json.stdout)
    assert body["status"] == "denied"
    assert body["error"]["code"] == "ACTION_NOT_ALLOWED"
    assert as_json.stderr == ""


def test_remote_rate_limit_under_one_resolution(server: Live, run: Run) -> None:
    sid = server.session()
    first = json.loads(run(*remote(server, sid, "ticket.reply", "--json")).stdout)
    resolution = first["resolution_id"]
    second = run(*remote(server, sid, "ticket.reply", "--resolution", resolution, "--json"))
    assert second.exit_code == 0
    third = run(*remote(server, sid, "ticket.reply", "--resolution", resolution, "--json"))
    assert third.exit_code == 1
    assert json.loads(third.stdout)["error"]["code"] == "RATE_LIMITED"


def test_pending_then_approve_then_execute_on_the_same_resolution(server: Live, run: Run) -> None:
    sid = server.session()
    pending = run(*remote(server, sid, "ticket.close"))
    assert pending.exit_code == 1, pending.output
    out = pending.stdout
    assert "action ticket.close: requires_approval" in out
    assert "status: pending_approval" in out
    approval_id = next(line.split(": ")[1] for line in out.splitlines() if line.startswith("approval_id: "))
    resolution = next(line.split(": ")[1] for line in out.splitlines() if line.startswith("resolution_id: "))
    assert f"next: cra approvals approve {approval_id}" in out
    assert f"--resolution {resolution}" in out

    approved = run("approvals", "approve", approval_id, "--url", server.url, "--note", "checked", "--json")
    assert approved.exit_code == 0, approved.output
    assert json.loads(approved.stdout)["status"] == "approved"

    done = run(*remote(server, sid, "ticket.close", "--resolution", resolution, "--json"))
    assert done.exit_code == 0, done.output
    body = json.loads(done.stdout)
    assert body["status"] == "authorized"  # no handler is registered on the server
    assert body["resolution_id"] == resolution
    types = [e.event_type for e in server.runtime.get_trace(sid)]
    assert types[-3:] == ["approval.granted", "action.requested", "action.approved"]


def test_idempotency_key_returns_the_first_response(server: Live, run: Run) -> None:
    sid = server.session()
    first = json.loads(run(*remote(server, sid, "ticket.read", "--idempotency-key", "k-1", "--json")).stdout)
    again = run(
        *remote(
            server, sid, "ticket.read", "--resolution", first["resolution_id"], "--idempotency-key", "k-1"
        )
    )
    assert again.exit_code == 0, again.output
    assert f"execution_id: {first['execution_id']}" in again.stdout
    assert "status: authorized (replayed)" in again.stdout
    assert "idempotency_key: k-1" in again.stdout


def test_params_from_a_file(server: Live, run: Run, tmp_path: Path) -> None:
    sid = server.session()
    path = tmp_path / "params.json"
    path.write_text('{"id": "T-42"}', encoding="utf-8")
    result = run(*remote(server, sid, "ticket.read", params=f"@{path}"))
    assert result.exit_code == 0, result.output
    requested = [e for e in server.runtime.get_trace(sid) if e.event_type == "action.requested"]
    canonical = json.dumps({"id": "T-42"}, sort_keys=True, separators=(",", ":")).encode()  # SPEC 4.2
    assert requested[0].payload["parameters_hash"] == hashlib.sha256(canonical).hexdigest()


def test_runtime_errors_exit_1_with_their_code(server: Live, run: Run) -> None:
    sid = server.session()
    bad = run(*remote(server, sid, "ticket.read", params='{"id": 5}'))
    assert bad.exit_code == 1
    assert bad.stderr.startswith("error: INVALID_PARAMETERS: ")
    assert bad.stdout == ""
    as_json = run(*remote(server, sid, "ticket.read", "--json", params='{"id": 5}'))
    assert as_json.exit_code == 1
    body = stderr_error(as_json)
    assert body["code"] == "INVALID_PARAMETERS"
    assert body["details"]["errors"][0]["pointer"] == "/parameters/id"
    unknown = run(*remote(server, "no-such-session", "ticket.read"))
    assert unknown.exit_code == 1
    assert "SESSION_NOT_FOUND" in unknown.stderr
    stale = run(*remote(server, sid, "ticket.read", "--resolution", "00000000-0000-7000-8000-000000000001"))
    assert stale.exit_code == 1
    assert "RESOLUTION_NOT_FOUND" in stale.stderr


def test_url_from_the_environment(server: Live, run: Run) -> None:
    sid = server.session()
    args = ["execute", "--session", sid, "--agent", AGENT, "--action", "ticket.read", "--params", PARAMS]
    result = run(*args, env={"CRA_URL": server.url})
    assert result.exit_code == 0, result.output
    assert "status: authorized" in result.stdout


def test_terminal_output_is_coloured(server: Live, run: Run) -> None:
    sid = server.session()
    result = run(*remote(server, sid, "ticket.delete"), terminal=True)
    assert result.exit_code == 1
    assert "\x1b[" in result.stdout
    assert "denied" in result.stdout


def unused_port_url() -> str:
    port: int = free_port()
    return f"http://127.0.0.1:{port}"


def test_unreachable_server_exits_1(run: Run) -> None:
    url = unused_port_url()
    args = ["execute", "--url", url, "--session", "s", "--agent", AGENT, "--action", "ticket.read"]
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"error: SERVER_UNREACHABLE: cannot reach the CRA server at {url}")
    assert "Traceback" not in result.output
    as_json = run(*args, "--json")
    assert as_json.exit_code == 1
    assert stderr_error(as_json)["code"] == "SERVER_UNREACHABLE"
    assert as_json.stdout == ""


def test_url_without_scheme_is_a_usage_error(run: Run) -> None:
    result = run("execute", "--url", "localhost:8420", "--session", "s", "--agent", AGENT, "--action", "x")
    assert result.exit_code == 2
    assert "BAD_URL" in result.stderr


# --- usage errors (no server needed: they are caught before connecting) ------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"a": NaN}', "not valid JSON"),
        ("@/no/such/params.json", "cannot read /no/such/params.json"),
    ],
)
def test_bad_params_exit_2(run: Run, params: str, message: str) -> None:
    url = unused_port_url()  # never contacted: the options are checked first
    result = run(
        "execute", "--url", url, "--session", "s", "--agent", AGENT, "--action", "a", "--params", params
    )
    assert result.exit_code == 2, result.output
    assert "--params" in result.stderr
    assert message in result.stderr
    assert "SERVER_UNREACHABLE" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --session ID"),
        (["--session", "s", "--atlas", str(EXAMPLE_ATLAS), "--goal", "g"], "not both"),
        (["--session", "s", "--storage", "sqlite:///x.db"], "--storage is for the local dry run"),
        (["--session", "s", "--resolution", "r", "--risk-tier", "high"], "not with --resolution"),
        (["--atlas", str(EXAMPLE_ATLAS)], "needs --goal"),
        (
            ["--atlas", str(EXAMPLE_ATLAS), "--goal", "g", "--resolution", "r"],
            "--resolution is for --session",
        ),
        (["--atlas", str(EXAMPLE_ATLAS), "--goal", "g", "--url", "http://x"], "--url is for --session"),
        (["--atlas", "/no/such/atlas", "--goal", "g"], "does not exist"),
    ],
)
def test_mode_errors_exit_2(run: Run, args: list[str], message: str) -> None:
    result = run("execute", "--agent", AGENT, "--action", "ticket.read", *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())


def test_help_has_examples(run: Run) -> None:
    result = run("execute", "--help")
    assert result.exit_code == 0
    assert "Example:" in result.stdout
    assert "cra execute --atlas support-atlas" in result.stdout
    assert "CRA_URL" in result.stdout


# --- local dry run ------------------------------------------------------------------------------------------

LOCAL = ("execute", "--atlas", EXAMPLE_ATLAS, "--agent", "support-bot", "--goal", "Answer ticket T-1001")


def test_local_dry_run_allowed_action_is_authorized(run: Run) -> None:
    result = run(*LOCAL, "--action", "ticket.read", "--params", '{"ticket_id": "T-1001"}')
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "decision requires_approval (Approval required before execution)" in out
    assert "action ticket.read: allowed" in out
    assert "status: authorized" in out
    assert "nothing ran (dry run)" in out


def test_local_dry_run_denied_action_names_the_policy(run: Run) -> None:
    result = run(*LOCAL, "--action", "customer.delete", "--params", '{"customer_id": "C-1", "confirm": true}')
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert "action customer.delete: denied by policy deny-customer-delete: Deleting customer data" in out
    assert "status: denied" in out
    assert "error: ACTION_NOT_ALLOWED" in out


def test_local_dry_run_json(run: Run) -> None:
    refund = {
        "ticket_id": "T-1001",
        "order_id": "O-7",
        "amount": 20,
        "currency": "EUR",
        "reason": "damaged item",
    }
    result = run(*LOCAL, "--action", "refund.issue", "--params", json.dumps(refund), "--json")
    assert result.exit_code == 1, result.output  # pending_approval: the call may not go ahead yet
    body = json.loads(result.stdout)
    assert set(body) == {"execution", "action", "resolution"}
    assert body["execution"]["status"] == "pending_approval"
    assert body["action"]["verdict"] == "requires_approval"
    assert body["action"]["approval_id"] == body["execution"]["approval_id"]
    assert body["resolution"]["decision"]["type"] == "requires_approval"
    assert body["resolution"]["resolution_id"] == body["execution"]["resolution_id"]


def test_local_dry_run_action_outside_the_resolution(run: Run) -> None:
    result = run(*LOCAL, "--action", "ticket.read", "-c", "billing", "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["action"]["verdict"] == "not_offered"
    assert body["execution"]["error"]["code"] == "ACTION_NOT_ALLOWED"


def test_local_dry_run_invalid_parameters_exit_1(run: Run) -> None:
    result = run(*LOCAL, "--action", "ticket.read", "--params", '{"ticket_id": "nope"}')
    assert result.exit_code == 1
    assert result.stderr.startswith("error: INVALID_PARAMETERS: ")


def test_local_dry_run_keeps_the_trace_with_storage(run: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cra.db'}"
    result = run(*LOCAL, "--action", "ticket.read", "--params", '{"ticket_id": "T-1001"}', "--storage", url)
    assert result.exit_code == 0, result.output
    sid = next(line.split(": ")[1] for line in result.stdout.splitlines() if line.startswith("session_id: "))
    assert f"cra trace export --storage {url} --session {sid}" in result.stdout
    storage = cra.open_storage(url)
    try:
        events = storage.read(sid)
    finally:
        storage.close()
    assert cra.verify_chain(events).valid
    assert events[-1].event_type == "session.ended"
    assert "action.requested" in [e.event_type for e in events]


def test_local_dry_run_bad_storage_url_exit_2(run: Run) -> None:
    result = run(*LOCAL, "--action", "ticket.read", "--storage", "nosuch://x")
    assert result.exit_code == 2
    assert "--storage" in result.stderr


def test_local_dry_run_invalid_atlas_exit_1(run: Run, tmp_path: Path) -> None:
    (tmp_path / "atlas.json").write_text('{"atlas_version": "1.0"}', encoding="utf-8")
    result = run("execute", "--atlas", tmp_path, "--agent", "a", "--goal", "g", "--action", "ticket.read")
    assert result.exit_code == 1
    assert result.stdout.startswith("invalid: ")
