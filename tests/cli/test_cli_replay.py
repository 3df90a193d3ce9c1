"""``cra replay TRACE --atlas DIR`` and ``cra diff A B``, on a local app that registers the two commands the
way ``cra.cli`` does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

import cra
from cra.cli import replay as replay_cli
from cra.replay import replay

from .conftest import PLAIN_ENV, TERMINAL_ENV

app = typer.Typer(add_completion=False, rich_markup_mode=None)
app.command("replay")(replay_cli.replay_command)
app.command("diff")(replay_cli.diff_command)


def run(*args: str | Path, terminal: bool = False) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], env=TERMINAL_ENV if terminal else PLAIN_ENV)


def _edited_atlas(source: Path, target: Path, edit: Any) -> Path:
    shutil.copytree(source, target)
    manifest = json.loads((target / "atlas.json").read_text())
    manifest["version"] = "1.1.0"
    edit(manifest)
    (target / "atlas.json").write_text(json.dumps(manifest))
    return target


def _deny_reading(manifest: dict[str, Any]) -> None:
    for policy in manifest["policies"]:
        if policy["policy_id"] == "allow-read":
            policy["type"] = "deny"


@pytest.fixture
def stricter_atlas(tmp_path: Path, atlas_dir: Path) -> Path:
    """The example Atlas with its allow-read policy turned into a deny."""
    return _edited_atlas(atlas_dir, tmp_path / "stricter", _deny_reading)


def _recorded(trace_file: Path) -> list[cra.TraceEvent]:
    return cra.read_jsonl(trace_file)


def test_replay_against_the_original_changes_nothing(trace_file: Path, atlas_dir: Path) -> None:
    result = run("replay", trace_file, "--atlas", atlas_dir)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("session ")
    assert "Decisions (" in result.stdout
    assert any("execute" in line and "ticket.read" in line and "success" in line for line in lines)
    assert not [line for line in lines if line.rstrip().endswith("flipped")]
    assert sum(1 for line in lines if line.rstrip().endswith("unchanged")) > 5
    assert lines[-1].startswith("unchanged: no decision flipped")


def test_replay_json_lists_every_decision(trace_file: Path, atlas_dir: Path) -> None:
    result = run("replay", trace_file, "--atlas", atlas_dir, "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert (body["identical"], body["changed"]) == (True, 0)
    (report,) = body["reports"]
    events = _recorded(trace_file)
    verdicts = sum(1 for e in events if e.event_type == "policy.evaluated")
    executes = sum(1 for e in events if e.event_type == "action.requested")
    assert body["unchanged"] == len(report["decisions"]) == verdicts + 1 + executes
    assert report["session_id"] == events[0].session_id
    assert [d["original"] for d in report["decisions"] if d["operation"] == "execute"] == [
        "success",
        "denied:ACTION_NOT_ALLOWED",
    ]


def test_a_stricter_atlas_flips_decisions_and_exits_1(trace_file: Path, stricter_atlas: Path) -> None:
    result = run("replay", trace_file, "--atlas", stricter_atlas, "--json")
    assert result.exit_code == 1, result.output
    body = json.loads(result.stdout)
    flipped = [
        (d["operation"], d["action_id"], d["change"])
        for d in body["reports"][0]["decisions"]
        if d["status"] == "flipped"
    ]
    assert flipped == [
        ("resolve", "ticket.read", "allow→deny"),
        ("resolve", "ticket.search", "allow→deny"),
        ("resolve", "customer.lookup", "allow→deny"),
        ("execute", "ticket.read", "success→denied:ACTION_NOT_ALLOWED"),
    ]
    assert body["changed"] == 4
    assert body["reports"][0]["atlas_digest_replayed"] == cra.load_atlas(stricter_atlas).digest

    plain = run("replay", trace_file, "--atlas", stricter_atlas)
    assert plain.exit_code == 1
    flipped_rows = [line for line in plain.stdout.splitlines() if line.rstrip().endswith("flipped")]
    assert len(flipped_rows) == 4
    assert "allow" in flipped_rows[0] and "deny" in flipped_rows[0]
    assert plain.stdout.splitlines()[-1].startswith("flipped: 4 of ")


def test_changed_only_lists_the_flipped_decisions(trace_file: Path, stricter_atlas: Path) -> None:
    result = run("replay", trace_file, "--atlas", stricter_atlas, "--changed-only")
    assert result.exit_code == 1
    assert "Flipped decisions (4):" in result.stdout
    assert "unchanged" not in result.stdout.replace("unchanged:", "")
    rows = [line for line in result.stdout.splitlines() if line.startswith("  ") and "SEQ" not in line]
    assert len(rows) == 4


def test_terminal_output_is_a_table(trace_file: Path, stricter_atlas: Path) -> None:
    result = run("replay", trace_file, "--atlas", stricter_atlas, terminal=True)
    assert result.exit_code == 1, result.output
    assert "Decisions" in result.stdout
    assert "\x1b[" in result.stdout  # colour: flipped rows are highlighted
    assert "success→" not in result.stdout  # the table shows original and replayed in their own columns


def test_a_long_trace_shows_progress_on_a_terminal(
    trace_file: Path, atlas_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        seen.append(1 if kwargs.get("progress") is not None else 0)
        return replay(*args, **kwargs)

    monkeypatch.setattr(replay_cli, "PROGRESS_THRESHOLD", 3)
    monkeypatch.setattr(replay_cli, "replay", counting)
    assert run("replay", trace_file, "--atlas", atlas_dir, terminal=True).exit_code == 0
    assert run("replay", trace_file, "--atlas", atlas_dir).exit_code == 0  # piped: no bar
    assert seen == [1, 0]


def test_every_session_of_a_file_is_replayed(tmp_path: Path, atlas_dir: Path) -> None:
    path = tmp_path / "two.trace.jsonl"
    with cra.Runtime(clock=cra.ManualClock("2025-01-01T00:00:00Z"), storage="memory://") as runtime:
        runtime.load_atlas(atlas_dir)
        events: list[cra.TraceEvent] = []
        for agent in ("bot-1", "bot-2"):
            sid = runtime.create_session(agent, "Answer").session_id
            runtime.resolve(sid)
            events += runtime.get_trace(sid)
        cra.write_jsonl(path, events)
    result = run("replay", path, "--atlas", atlas_dir, "--json")
    assert result.exit_code == 0, result.output
    assert [r["session_id"] for r in json.loads(result.stdout)["reports"]] == list(
        dict.fromkeys(e.session_id for e in events)
    )


def test_an_atlas_of_another_id_is_a_usage_error(trace_file: Path, tmp_path: Path, atlas_dir: Path) -> None:
    def rename(manifest: dict[str, Any]) -> None:
        manifest["atlas_id"] = "com.example.other"

    other = _edited_atlas(atlas_dir, tmp_path / "other", rename)
    result = run("replay", trace_file, "--atlas", other)
    assert result.exit_code == 2
    assert "error: UNKNOWN_ATLAS: Atlas com.example.other is not an Atlas of session" in result.stderr

    both = run("replay", trace_file, "--atlas", atlas_dir, "--atlas", other, "--json")
    assert both.exit_code == 2
    assert json.loads(both.stderr)["error"]["code"] == "UNKNOWN_ATLAS"


def test_a_tampered_trace_is_a_usage_error(trace_file: Path, atlas_dir: Path) -> None:
    lines = trace_file.read_bytes().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if b'"event_type":"policy.evaluated"' in line)
    lines[index] = lines[index].replace(b'"result":"allow"', b'"result":"deny"', 1)
    trace_file.write_bytes(b"".join(lines))
    result = run("replay", trace_file, "--atlas", atlas_dir, "--json")
    assert result.exit_code == 2
    error = json.loads(result.stderr)["error"]
    assert error["code"] == "INVALID_REQUEST"
    assert error["details"]["verification"]["error"] == "hash_mismatch"


def test_unreadable_inputs_are_usage_errors(tmp_path: Path, atlas_dir: Path) -> None:
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("not json\n")
    result = run("replay", garbage, "--atlas", atlas_dir)
    assert (result.exit_code, "UNREADABLE_TRACE" in result.stderr) == (2, True)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = run("replay", empty, "--atlas", atlas_dir)
    assert (result.exit_code, "EMPTY_TRACE" in result.stderr) == (2, True)
    assert run("replay", garbage).exit_code == 2  # --atlas is required
    assert run("replay", tmp_path / "missing.jsonl", "--atlas", atlas_dir).exit_code == 2


def test_an_invalid_atlas_is_a_usage_error(trace_file: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken-atlas"
    broken.mkdir()
    (broken / "atlas.json").write_text("{}")
    result = run("replay", trace_file, "--atlas", broken)
    assert result.exit_code == 2
    assert "error: INVALID_ATLAS" in result.stderr


# --- diff -------------------------------------------------------------------------------------------------


def _write(path: Path, events: list[dict[str, Any]]) -> Path:
    cra.write_jsonl(path, [cra.TraceEvent.from_dict(e) for e in events])
    return path


def test_diff_of_a_trace_with_itself_is_identical(trace_file: Path) -> None:
    result = run("diff", trace_file, trace_file)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "verdict: identical"
    assert "Differences" not in result.stdout


def test_diff_of_timing_only_is_semantically_equivalent(trace_file: Path, tmp_path: Path) -> None:
    events = [e.to_dict() for e in cra.read_jsonl(trace_file)]
    index = next(i for i, e in enumerate(events) if e["event_type"] == "action.executed")
    events[index]["payload"]["duration_ms"] += 7
    other = _write(tmp_path / "slower.jsonl", events)
    result = run("diff", trace_file, other)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "verdict: semantically_equivalent"
    assert f"/{index}/payload/duration_ms  value_changed  minor" in result.stdout

    body = json.loads(run("diff", trace_file, other, "--json").stdout)
    assert body["verdict"] == "semantically_equivalent"
    assert body["differences"] == [
        {
            "path": f"/{index}/payload/duration_ms",
            "type": "value_changed",
            "significance": "minor",
            "a": events[index]["payload"]["duration_ms"] - 7,
            "b": events[index]["payload"]["duration_ms"],
        }
    ]


def test_diff_of_a_changed_decision_is_different(trace_file: Path, tmp_path: Path) -> None:
    events = [e.to_dict() for e in cra.read_jsonl(trace_file)]
    index = next(i for i, e in enumerate(events) if e["event_type"] == "policy.evaluated")
    events[index]["payload"]["result"] = "deny"
    shorter = _write(tmp_path / "other.jsonl", events[:-1])
    result = run("diff", trace_file, shorter)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == "verdict: different"
    assert f"/{index}/payload/result  value_changed  major" in result.stdout
    assert f"/{len(events) - 1}" in result.stdout and "removed" in result.stdout
    assert run("diff", trace_file, shorter, terminal=True).exit_code == 1


def test_diff_of_an_unreadable_file_is_a_usage_error(trace_file: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("{")
    result = run("diff", trace_file, garbage, "--json")
    assert result.exit_code == 2
    assert json.loads(result.stderr)["error"]["code"] == "UNREADABLE_TRACE"


def test_help_shows_examples() -> None:
    for command in ("replay", "diff"):
        result = run(command, "--help")
        assert result.exit_code == 0
        assert "Example:" in result.stdout
        assert f"cra {command} " in result.stdout
