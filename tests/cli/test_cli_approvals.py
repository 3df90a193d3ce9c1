"""``cra approvals list|show|approve|reject`` against a real ``cra serve`` (uvicorn on loopback)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import typer

from cra.cli import approvals

from .test_cli_execute import AGENT, Live, Run, live_server, make_runner, unused_port_url

app = typer.Typer(rich_markup_mode=None)
app.add_typer(approvals.app, name="approvals")

MISSING = "00000000-0000-7000-8000-000000000001"


@pytest.fixture
def server() -> Iterator[Live]:
    with live_server() as live:
        yield live


@pytest.fixture
def run() -> Run:
    return make_runner(app)


def pending(live: Live, agent: str = AGENT) -> tuple[str, str, str]:
    """(session_id, resolution_id, approval_id): a resolution of APPROVAL_ATLAS asks approval for
    ticket.close."""
    session_id = live.session(agent)
    resolution = live.runtime.resolve(session_id)
    assert resolution.approval_id is not None
    return session_id, resolution.resolution_id, resolution.approval_id


def test_list_shows_pending_approvals_as_a_table(server: Live, run: Run) -> None:
    sid, _, approval_id = pending(server)
    result = run("approvals", "list", "--url", server.url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Approvals (1, pending):"
    assert lines[1].split() == ["APPROVAL", "SESSION", "AGENT", "ACTIONS", "STATUS", "EXPIRES"]
    row = lines[2].split()
    assert row[:5] == [approval_id, sid, AGENT, "ticket.close", "pending"]
    assert row[5].endswith("Z")


def test_list_filters_by_session_and_status(server: Live, run: Run) -> None:
    sid_a, _, approval_a = pending(server)
    _, _, approval_b = pending(server, "agent-2")
    server.runtime.approve(approval_b, "ops", None)

    def ids(*args: str) -> list[str]:
        result = run("approvals", "list", "--url", server.url, "--json", *args)
        assert result.exit_code == 0, result.output
        body = json.loads(result.stdout)
        assert body["total"] == len(body["approvals"])
        return [a["approval_id"] for a in body["approvals"]]

    assert ids() == [approval_a]
    assert ids("--status", "approved") == [approval_b]
    assert ids("--status", "rejected") == []
    assert sorted(ids("--status", "all")) == sorted([approval_a, approval_b])
    assert ids("--session", sid_a, "--status", "ALL") == [approval_a]


def test_list_empty_is_exit_0(server: Live, run: Run) -> None:
    result = run("approvals", "list", "--url", server.url)
    assert result.exit_code == 0
    assert result.stdout == "Approvals (0, pending):\n"


def test_show_prints_one_approval(server: Live, run: Run) -> None:
    sid, resolution_id, approval_id = pending(server)
    result = run("approvals", "show", approval_id, "--url", server.url)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"approval_id: {approval_id}\nstatus: pending\n")
    assert f"session_id: {sid}" in out
    assert f"resolution_id: {resolution_id}" in out
    assert "actions: ticket.close" in out
    assert "decided_at" not in out
    as_json = json.loads(run("approvals", "show", approval_id, "--url", server.url, "--json").stdout)
    assert as_json["approval_id"] == approval_id
    assert as_json["action_ids"] == ["ticket.close"]


def test_approve_records_approver_and_note(server: Live, run: Run) -> None:
    sid, _, approval_id = pending(server)
    result = run(
        "approvals", "approve", approval_id, "--url", server.url, "--note", "ok", "--approver", "alice"
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "status: approved" in out
    assert "approver: alice" in out
    assert "note: ok" in out
    assert "decided_at: " in out
    granted = [e for e in server.runtime.get_trace(sid) if e.event_type == "approval.granted"]
    assert granted[0].payload["approval_id"] == approval_id
    assert granted[0].payload["approver"] == "alice"


def test_reject_then_execute_is_denied(server: Live, run: Run) -> None:
    sid, resolution_id, approval_id = pending(server)
    result = run("approvals", "reject", approval_id, "--url", server.url, "--note", "no", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["status"] == "rejected"
    assert body["note"] == "no"
    response = server.runtime.execute(sid, resolution_id, "ticket.close", {"id": "T-1"})
    assert response.status == "denied"
    assert response.error_code == "APPROVAL_REJECTED"


def test_deciding_twice_is_a_conflict(server: Live, run: Run) -> None:
    _, _, approval_id = pending(server)
    assert run("approvals", "approve", approval_id, "--url", server.url).exit_code == 0
    again = run("approvals", "reject", approval_id, "--url", server.url)
    assert again.exit_code == 1
    assert again.stderr.startswith("error: APPROVAL_ALREADY_DECIDED: ")


@pytest.mark.parametrize("command", ["show", "approve", "reject"])
def test_unknown_approval_is_404_exit_1(server: Live, run: Run, command: str) -> None:
    result = run("approvals", command, MISSING, "--url", server.url)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: APPROVAL_NOT_FOUND: ")
    assert result.stdout == ""
    as_json = run("approvals", command, MISSING, "--url", server.url, "--json")
    assert as_json.exit_code == 1
    error = json.loads(as_json.stderr)["error"]
    assert error["code"] == "APPROVAL_NOT_FOUND"
    assert error["category"] == "not_found"


def test_unreachable_server(run: Run) -> None:
    url = unused_port_url()
    result = run("approvals", "list", "--url", url)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: SERVER_UNREACHABLE: ")


def test_usage_errors_exit_2(run: Run) -> None:
    assert run("approvals", "list", "--status", "maybe").exit_code == 2
    assert run("approvals", "approve").exit_code == 2
    bare = run("approvals")
    assert bare.exit_code in (0, 2)  # no_args_is_help
    assert "list" in bare.output and "approve" in bare.output


def test_help_has_examples(run: Run) -> None:
    for command in ("list", "show", "approve", "reject"):
        result = run("approvals", command, "--help")
        assert result.exit_code == 0
        assert "Example:" in result.stdout
        assert f"cra approvals {command}" in result.stdout
