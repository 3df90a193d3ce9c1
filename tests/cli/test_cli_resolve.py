"""``cra resolve``: a real resolution from a throwaway runtime; exit 0 for any decision, 1, 2."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import Invoke

BASE = ("resolve", "--agent", "support-bot", "--goal", "Answer ticket T-1001")


def test_human_output_shows_decision_actions_context_and_constraints(cli: Invoke, atlas_dir: Path) -> None:
    result = cli(*BASE, "--atlas", atlas_dir)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("decision: requires_approval (Approval required before execution)")
    assert "approval_id: " in out
    assert "Allowed actions (6):" in out
    assert "Denied actions (1):" in out
    assert "Context blocks (3):" in out
    assert "Constraints (4):" in out
    lines = out.splitlines()
    search = next(line for line in lines if line.strip().startswith("ticket.search "))
    assert search.split()[:3] == ["ticket.search", "low", "no"]
    assert "30/60s, 30 left" in search
    refund = next(line for line in lines if line.strip().startswith("refund.issue "))
    assert refund.split()[:3] == ["refund.issue", "high", "yes"]
    denied = next(line for line in lines if line.strip().startswith("customer.delete "))
    assert "deny-customer-delete" in denied
    assert "privacy team" in denied
    assert any(line.strip().startswith("style-guide/context/style-guide.md ") for line in lines)
    budget = next(line for line in lines if line.strip().startswith("refund-budget "))
    assert "0/50 per 86400s" in budget
    assert "\x1b[" not in out


def test_json_output_is_the_carp_resolution(cli: Invoke, atlas_dir: Path) -> None:
    result = cli(*BASE, "--atlas", atlas_dir, "--json")
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout)
    assert res["carp_version"] == "1.0"
    assert set(res) >= {
        "resolution_id",
        "request_id",
        "timestamp",
        "decision",
        "context_blocks",
        "allowed_actions",
        "denied_actions",
        "constraints",
        "ttl_seconds",
        "trace_id",
    }
    assert res["decision"]["type"] == "requires_approval"
    assert res["decision"]["approval_id"]
    assert [a["action_id"] for a in res["allowed_actions"]] == [
        "ticket.read",
        "ticket.search",
        "customer.lookup",
        "ticket.reply",
        "ticket.close",
        "refund.issue",
    ]
    assert res["denied_actions"] == [
        {
            "action_id": "customer.delete",
            "reason": "Deleting customer data is done by the privacy team, not by agents",
            "policy_id": "deny-customer-delete",
        }
    ]
    assert res["ttl_seconds"] == 3600


def test_capability_risk_tier_and_agent_change_the_resolution(cli: Invoke, atlas_dir: Path) -> None:
    args = ("resolve", "-a", atlas_dir, "--agent", "trial-bot", "--goal", "Refund order O-77")
    result = cli(
        *args, "--capability", "billing", "--capability", "tickets.read", "--risk-tier", "high", "--json"
    )
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout)
    assert res["decision"]["type"] == "requires_approval"
    assert [d["policy_id"] for d in res["denied_actions"]] == ["deny-refunds-for-trial-agents"]
    assert all(a["requires_confirmation"] for a in res["allowed_actions"])
    assert "escalation/context/escalation.md" not in [b["block_id"] for b in res["context_blocks"]]


def test_deny_decision_still_exits_0(cli: Invoke, atlas_dir: Path) -> None:
    result = cli("resolve", "-a", atlas_dir, "--agent", "trial-bot", "--goal", "Refund", "-c", "billing")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("decision: deny (No actions are allowed)")
    assert "Allowed actions (0):" in result.stdout


def test_context_hint_forces_a_pack_in(cli: Invoke, atlas_dir: Path) -> None:
    result = cli(*BASE, "-a", atlas_dir, "--context-hint", "escalation", "--json")
    assert result.exit_code == 0, result.output
    blocks = [b["block_id"] for b in json.loads(result.stdout)["context_blocks"]]
    assert blocks[0] == "escalation/context/escalation.md"


def test_several_atlases_are_loaded(cli: Invoke, atlas_dir: Path, tmp_path: Path) -> None:
    other = {
        "atlas_version": "1.0",
        "atlas_id": "com.example.kb",
        "version": "1.0.0",
        "name": "Knowledge base",
        "description": "Search articles",
        "actions": [{"action_id": "kb.search", "name": "Search", "description": "Search articles"}],
        "policies": [{"policy_id": "allow-all", "type": "allow"}],
    }
    manifest = tmp_path / "kb.json"
    manifest.write_text(json.dumps(other), encoding="utf-8")
    result = cli(*BASE, "--atlas", atlas_dir, "--atlas", manifest, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["allowed_actions"][-1]["action_id"] == "kb.search"


def test_invalid_atlas_prints_its_problems_and_exits_1(cli: Invoke, atlas_dir: Path) -> None:
    (atlas_dir / "context" / "style-guide.md").unlink()
    result = cli(*BASE, "--atlas", atlas_dir)
    assert result.exit_code == 1
    assert result.stdout.startswith("invalid: ")
    assert "/context_packs/0/files/0: " in result.stdout
    assert "(file)" in result.stdout


def test_invalid_atlas_with_json_gives_the_error_body_on_stderr(cli: Invoke, atlas_dir: Path) -> None:
    (atlas_dir / "context" / "style-guide.md").unlink()
    result = cli(*BASE, "--atlas", atlas_dir, "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    error = json.loads(result.stderr)["error"]
    assert error["code"] == "INVALID_ATLAS"
    assert error["details"]["problems"][0]["pointer"] == "/context_packs/0/files/0"


def test_runtime_error_prints_code_and_message_and_exits_1(cli: Invoke, atlas_dir: Path) -> None:
    result = cli(*BASE, "--atlas", atlas_dir, "--capability", "nope")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: UNKNOWN_CAPABILITY: ")
    assert "Traceback" not in result.output


def test_runtime_error_with_json_is_the_spec_error_body(cli: Invoke, atlas_dir: Path) -> None:
    result = cli(*BASE, "--atlas", atlas_dir, "--capability", "nope", "--json")
    assert result.exit_code == 1
    error = json.loads(result.stderr)["error"]
    assert error["code"] == "UNKNOWN_CAPABILITY"
    assert error["category"] == "validation"


def test_same_atlas_twice_is_a_runtime_error(cli: Invoke, atlas_dir: Path) -> None:
    result = cli(*BASE, "--atlas", atlas_dir, "--atlas", atlas_dir)
    assert result.exit_code == 1
    assert "ATLAS_ALREADY_LOADED" in result.stderr


def test_usage_errors_exit_2(cli: Invoke, atlas_dir: Path, tmp_path: Path) -> None:
    assert cli("resolve", "--agent", "a", "--goal", "g").exit_code == 2  # no --atlas
    assert cli("resolve", "--atlas", atlas_dir, "--goal", "g").exit_code == 2  # no --agent
    assert cli("resolve", "--atlas", atlas_dir, "--agent", "a").exit_code == 2  # no --goal
    assert cli(*BASE, "--atlas", tmp_path / "missing").exit_code == 2
    assert cli(*BASE, "--atlas", atlas_dir, "--risk-tier", "extreme").exit_code == 2


def test_terminal_output_uses_tables(cli: Invoke, atlas_dir: Path) -> None:
    result = cli(*BASE, "--atlas", atlas_dir, terminal=True)
    assert result.exit_code == 0, result.output
    assert "Allowed actions (6)" in result.stdout
    assert "─" in result.stdout
    assert "\x1b[" in result.stdout
