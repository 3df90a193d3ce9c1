"""``cra validate DIR [--json]``: every problem with its pointer and stage; exit 0 / 1 / 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import Invoke


@pytest.fixture
def broken_atlas(atlas_dir: Path) -> Path:
    """The example Atlas with four problems (schema, semantic, file) and one warning."""
    manifest_path = atlas_dir / "atlas.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["actions"][1]["action_id"] = "Ticket.Search"  # schema; also breaks two references
    manifest["policies"][2]["parameters"] = {"window_seconds": 60}  # rate_limit without max_calls
    manifest["context_packs"][0]["files"].append("../outside.md")  # leaves the Atlas
    manifest["policies"].append({"policy_id": "allow-nothing", "type": "allow", "actions": ["nothing.*"]})
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    return atlas_dir


def test_valid_atlas_exits_0_and_says_so(cli: Invoke, atlas_dir: Path) -> None:
    result = cli("validate", atlas_dir)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("valid: com.example.support 1.0.0")
    assert "digest: " in result.stdout


def test_a_manifest_file_can_be_validated_directly(cli: Invoke, atlas_dir: Path) -> None:
    # Without its directory the extra policy file is not merged, but the manifest alone is valid.
    assert cli("validate", atlas_dir / "atlas.json").exit_code == 0


def test_valid_atlas_json_is_the_report(cli: Invoke, atlas_dir: Path) -> None:
    result = cli("validate", atlas_dir, "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["valid"] is True
    assert report["atlas_id"] == "com.example.support"
    assert len(report["digest"]) == 64
    assert report["problems"] == [] and report["warnings"] == []


def test_invalid_atlas_lists_every_problem_plainly_and_exits_1(cli: Invoke, broken_atlas: Path) -> None:
    result = cli("validate", broken_atlas)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("invalid: ") and "problems" in lines[0]
    assert any(line.startswith("/actions/1/action_id: ") and line.endswith("(schema)") for line in lines)
    assert any(line.startswith("/policies/2/parameters/max_calls: ") for line in lines)
    assert any(line.startswith("/context_packs/0/files/1: ") and line.endswith("(file)") for line in lines)
    assert any(line.startswith("warning: ") and "nothing.*" in line for line in lines)
    assert "\x1b[" not in result.stdout  # no colour when piped
    assert "─" not in result.stdout  # no boxes when piped


def test_invalid_atlas_json_has_pointers_and_stages(cli: Invoke, broken_atlas: Path) -> None:
    result = cli("validate", broken_atlas, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert report["digest"] is None
    pointers = {p["pointer"]: p["stage"] for p in report["problems"]}
    assert pointers["/actions/1/action_id"] == "schema"
    assert pointers["/policies/2/parameters/max_calls"] == "semantic"
    assert pointers["/context_packs/0/files/1"] == "file"
    assert all(set(p) >= {"pointer", "message", "stage"} for p in report["problems"])
    assert len(report["warnings"]) == 1


def test_problem_in_an_extra_policy_file_names_the_file(cli: Invoke, atlas_dir: Path) -> None:
    (atlas_dir / "policies" / "more.json").write_text(
        json.dumps([{"policy_id": "limit", "type": "rate_limit", "actions": ["ticket.read"]}]),
        encoding="utf-8",
    )
    result = cli("validate", atlas_dir)
    assert result.exit_code == 1
    assert "in policies/more.json" in result.stdout


def test_problems_render_as_a_table_on_a_terminal(cli: Invoke, broken_atlas: Path) -> None:
    result = cli("validate", broken_atlas, terminal=True)
    assert result.exit_code == 1
    assert "Problems (" in result.stdout
    assert "─" in result.stdout
    assert "\x1b[" in result.stdout


def test_directory_without_manifest_is_invalid_not_a_crash(cli: Invoke, tmp_path: Path) -> None:
    result = cli("validate", tmp_path)
    assert result.exit_code == 1
    assert "atlas.json" in result.stdout


def test_manifest_that_is_not_json_is_invalid(cli: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "atlas.json"
    path.write_text("{not json", encoding="utf-8")
    result = cli("validate", path, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["valid"] is False


def test_nonexistent_path_is_a_usage_error(cli: Invoke, tmp_path: Path) -> None:
    result = cli("validate", tmp_path / "missing")
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_unknown_option_is_a_usage_error(cli: Invoke, atlas_dir: Path) -> None:
    assert cli("validate", atlas_dir, "--yaml").exit_code == 2
