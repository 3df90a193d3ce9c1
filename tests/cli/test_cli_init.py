"""``cra init DIR``: the example Atlas it writes is complete, valid and behaves as documented."""

from __future__ import annotations

import json
from pathlib import Path

import cra

from .conftest import Invoke

EXPECTED_FILES = {
    "README.md",
    "atlas.json",
    "context/escalation.md",
    "context/refund-limits.json",
    "context/refund-policy.md",
    "context/style-guide.md",
    "policies/extra.json",
}


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_init_writes_the_example_atlas_and_it_validates_without_problems(cli: Invoke, tmp_path: Path) -> None:
    target = tmp_path / "support"
    result = cli("init", target)
    assert result.exit_code == 0, result.output
    assert "com.example.support 1.0.0" in result.stdout
    assert f"cra validate {target}" in result.stdout
    assert _files(target) == EXPECTED_FILES
    report = cra.validate_atlas(target)
    assert report.valid, report.to_dict()
    assert report.problems == []
    assert report.warnings == []
    assert (report.atlas_id, report.version) == ("com.example.support", "1.0.0")


def test_init_into_an_existing_empty_directory_is_allowed(cli: Invoke, tmp_path: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    assert cli("init", target).exit_code == 0
    assert cra.validate_atlas(target).valid


def test_init_refuses_a_directory_that_is_not_empty(cli: Invoke, tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine", encoding="utf-8")
    result = cli("init", target)
    assert result.exit_code == 2
    assert "not empty" in result.output
    assert _files(target) == {"notes.txt"}  # nothing was written


def test_init_refuses_a_path_that_is_a_file(cli: Invoke, tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x", encoding="utf-8")
    result = cli("init", target)
    assert result.exit_code == 2
    assert "not a directory" in result.output


def test_init_without_dir_is_a_usage_error(cli: Invoke) -> None:
    assert cli("init").exit_code == 2


def test_example_manifest_has_every_feature_the_template_promises(atlas_dir: Path) -> None:
    manifest = json.loads((atlas_dir / "atlas.json").read_text(encoding="utf-8"))
    assert manifest["atlas_id"] == "com.example.support"
    assert manifest["version"] == "1.0.0"
    actions = manifest["actions"]
    assert 5 <= len(actions) <= 8
    assert all("parameters_schema" in a for a in actions)
    assert any("rate_limit" in a for a in actions)
    assert {"tickets.read", "tickets.write", "billing"} <= {
        c["capability_id"] for c in manifest["capabilities"]
    }
    packs = {p["pack_id"]: p for p in manifest["context_packs"]}
    assert packs["escalation"]["conditions"]["risk_tiers"] == ["high", "critical"]
    for pack in packs.values():
        for name in pack["files"]:
            assert (atlas_dir / name).is_file()
    policies = {p["policy_id"]: p for p in manifest["policies"]}
    assert {p["type"] for p in policies.values()} == {
        "allow",
        "deny",
        "require_approval",
        "rate_limit",
        "budget",
    }
    assert all("reason" in p["parameters"] for p in policies.values() if p["type"] == "deny")
    assert policies["approve-high-risk"]["conditions"]["risk_tiers"] == ["high", "critical"]
    assert {"max_calls", "window_seconds"} <= policies["limit-replies"]["parameters"].keys()
    assert policies["refund-budget"]["parameters"]["costs"] == {"refund.*": 10}
    extra = json.loads((atlas_dir / "policies" / "extra.json").read_text(encoding="utf-8"))
    assert len(extra["policies"]) == 1


def test_example_atlas_loads_with_its_extra_policy(atlas_dir: Path) -> None:
    atlas = cra.load_atlas(atlas_dir)
    assert "deny-refunds-for-trial-agents" in {p.policy_id for p in atlas.policies}
    # The example names no Python executor, so a default runtime (which imports executors) loads it too.
    with cra.Runtime(clock=cra.ManualClock("2025-01-01T00:00:00Z")) as runtime:
        runtime.load_atlas(atlas_dir)


def test_example_atlas_decisions_match_its_readme(atlas_dir: Path) -> None:
    with cra.Runtime(clock=cra.ManualClock("2025-01-01T00:00:00Z")) as runtime:
        runtime.load_atlas(atlas_dir)
        session = runtime.create_session("support-bot", "Answer ticket T-1001")
        res = runtime.resolve(session.session_id)
        assert res.decision_type == "requires_approval"
        assert res.denied_ids == ["customer.delete"]
        assert [a.action_id for a in res.allowed_actions if a.requires_confirmation] == ["refund.issue"]
        assert {c["type"] for c in res.constraints} == {"rate_limit", "budget", "require_approval"}
        assert [b.block_id for b in res.context_blocks] == [
            "style-guide/context/style-guide.md",
            "refund-policy/context/refund-policy.md",
            "refund-policy/context/refund-limits.json",
        ]

        trial = runtime.create_session("trial-bot", "Refund order O-77")
        res = runtime.resolve(trial.session_id, required_capabilities=["billing"])
        assert res.decision_type == "deny"
        assert [(d.action_id, d.policy_id) for d in res.denied_actions] == [
            ("refund.issue", "deny-refunds-for-trial-agents")
        ]

        risky = runtime.create_session("support-bot", "Customer threatens legal action")
        res = runtime.resolve(risky.session_id, risk_tier="high")
        assert res.context_blocks[0].block_id == "escalation/context/escalation.md"
        assert all(a.requires_confirmation for a in res.allowed_actions)


def test_json_names_the_atlas_and_every_file(cli: Invoke, tmp_path: Path) -> None:
    result = cli("init", tmp_path / "atlas", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["atlas_id"] == "com.example.support" and body["directory"] == str(tmp_path / "atlas")
    assert "atlas.json" in body["files"] and all((tmp_path / "atlas" / f).is_file() for f in body["files"])
