"""``cra conformance DIR [--json]``: the SPEC 9 report, one line per case, and meaningful exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import Invoke

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"

PASSING = {
    "test_id": "cli.passing",
    "description": "a session can be created",
    "atlas": {
        "atlas_version": "1.0",
        "atlas_id": "org.example.cli",
        "version": "1.0.0",
        "name": "CLI",
        "description": "CLI test",
        "actions": [{"action_id": "thing.read", "name": "Read", "description": "Read a thing"}],
        "policies": [{"policy_id": "allow-all", "type": "allow"}],
    },
    "steps": [
        {"op": "create_session", "agent_id": "a", "goal": "g", "as": "s"},
        {"op": "resolve", "session": "s", "expect": {"decision": "allow", "allowed": ["thing.read"]}},
    ],
}


@pytest.fixture
def cases(tmp_path: Path) -> Path:
    """One passing, one failing, one skipped case, and a file that is not a case."""
    folder = tmp_path / "cases"
    folder.mkdir()
    failing = json.loads(json.dumps(PASSING))
    failing["test_id"] = "cli.failing"
    failing["steps"][1]["expect"]["decision"] = "deny"
    skipped = dict(PASSING, test_id="cli.skipped", skip="not implemented here")
    for name, case in [("a.json", PASSING), ("b.json", failing), ("c.json", skipped)]:
        (folder / name).write_text(json.dumps(case), encoding="utf-8")
    (folder / "d.json").write_text("[not a case", encoding="utf-8")
    (folder / "notes.txt").write_text("ignored", encoding="utf-8")
    return folder


def test_project_conformance_suite_passes_as_json(cli: Invoke) -> None:
    result = cli("conformance", CONFORMANCE, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"implementation", "version", "test_run", "results"}
    run = report["test_run"]
    assert set(run) == {"total", "passed", "failed", "skipped", "duration_ms"}
    assert run["total"] == len(list(CONFORMANCE.glob("*.json"))) > 0
    assert run["failed"] == 0
    assert run["passed"] + run["skipped"] == run["total"]
    for entry in report["results"]:
        assert set(entry) <= {"test_id", "status", "duration_ms", "error"}
        assert entry["status"] in ("passed", "skipped")


def test_human_output_has_one_line_per_case_and_the_summary(cli: Invoke) -> None:
    result = cli("conformance", CONFORMANCE)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    total = len(list(CONFORMANCE.glob("*.json")))
    assert sum(1 for line in lines if line.startswith(("PASS  ", "SKIP  "))) == total
    assert any(line.startswith("PASS  resolve.allow  ") and line.endswith(" ms") for line in lines)
    assert f"{total} passed, 0 failed" in lines[-1]
    assert "\x1b[" not in result.stdout


def test_failures_are_listed_and_exit_1(cli: Invoke, cases: Path) -> None:
    result = cli("conformance", cases)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("PASS  cli.passing  ")
    assert lines[1].startswith("FAIL  cli.failing  ")
    assert "decision" in lines[1]  # the failure's explanation is on the line
    assert lines[2].startswith("SKIP  cli.skipped  ")
    assert lines[3].startswith("FAIL  d  ")
    assert lines[-1].startswith("1 passed, 2 failed, 1 skipped")


def test_failures_in_json(cli: Invoke, cases: Path) -> None:
    result = cli("conformance", cases, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["test_run"]["total"] == 4
    assert (report["test_run"]["passed"], report["test_run"]["failed"], report["test_run"]["skipped"]) == (
        1,
        2,
        1,
    )
    by_id = {r["test_id"]: r for r in report["results"]}
    assert by_id["cli.failing"]["status"] == "failed"
    assert by_id["cli.failing"]["error"]
    assert "error" not in by_id["cli.passing"]


def test_terminal_run_shows_coloured_results(cli: Invoke, cases: Path) -> None:
    result = cli("conformance", cases, terminal=True)
    assert result.exit_code == 1
    assert "\x1b[" in result.stdout
    assert "1 passed, 2 failed" in result.stdout


def test_missing_or_empty_directory_is_a_usage_error(cli: Invoke, tmp_path: Path) -> None:
    assert cli("conformance", tmp_path / "missing").exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("conformance", empty)
    assert result.exit_code == 2
    assert "no conformance cases" in result.output
    file = tmp_path / "case.json"
    file.write_text("{}", encoding="utf-8")
    assert cli("conformance", file).exit_code == 2  # a file, not a directory
