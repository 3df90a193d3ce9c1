"""``cra trace verify FILE [--json]``: a real exported chain verifies; any tampering is found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cra

from .conftest import Invoke


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_exported_trace_verifies(cli: Invoke, trace_file: Path) -> None:
    result = cli("trace", "verify", trace_file)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"valid: {trace_file}")
    count = len(_lines(trace_file))
    assert f"events: {count}" in result.stdout
    assert "head_hash: " in result.stdout


def test_exported_trace_json_is_the_chain_verification(cli: Invoke, trace_file: Path) -> None:
    result = cli("trace", "verify", trace_file, "--json")
    assert result.exit_code == 0
    body = json.loads(result.stdout)
    assert body == {
        "valid": True,
        "error": None,
        "error_at": None,
        "sequence": None,
        "event_count": len(_lines(trace_file)),
        "head_hash": body["head_hash"],
    }
    last = json.loads(_lines(trace_file)[-1])
    assert body["head_hash"] == last["event_hash"]


def test_one_flipped_byte_in_a_payload_is_a_hash_mismatch(cli: Invoke, trace_file: Path) -> None:
    lines = _lines(trace_file)
    index = next(i for i, line in enumerate(lines) if b'"event_type":"action.executed"' in line)
    line = bytearray(lines[index])
    at = line.index(b'"action_id":"ticket.read"') + len(b'"action_id":"ticket.')
    line[at] ^= 0x01  # "read" -> "sead": still valid JSON, different payload
    lines[index] = bytes(line)
    trace_file.write_bytes(b"".join(lines))

    result = cli("trace", "verify", trace_file)
    assert result.exit_code == 1
    assert result.stdout.startswith(f"invalid: {trace_file}")
    assert "error: hash_mismatch" in result.stdout
    assert f"error_at: {index}" in result.stdout
    assert f"sequence: {index}" in result.stdout
    assert "event: action.executed" in result.stdout

    body = json.loads(cli("trace", "verify", trace_file, "--json").stdout)
    assert body["valid"] is False
    assert (body["error"], body["error_at"], body["sequence"]) == ("hash_mismatch", index, index)


def test_a_removed_event_breaks_the_chain(cli: Invoke, trace_file: Path) -> None:
    lines = _lines(trace_file)
    del lines[3]
    trace_file.write_bytes(b"".join(lines))
    result = cli("trace", "verify", trace_file, "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert (body["error"], body["error_at"]) == ("chain_broken", 3)


def test_a_missing_first_event_is_an_invalid_genesis(cli: Invoke, trace_file: Path) -> None:
    trace_file.write_bytes(b"".join(_lines(trace_file)[1:]))
    result = cli("trace", "verify", trace_file, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"] == "invalid_genesis"


def test_a_line_that_is_not_json_is_unreadable_not_a_traceback(cli: Invoke, trace_file: Path) -> None:
    lines = _lines(trace_file)
    lines[2] = b"{broken\n"
    trace_file.write_bytes(b"".join(lines))
    result = cli("trace", "verify", trace_file)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: UNREADABLE_TRACE: ")
    assert ":3:" in result.stderr  # the line number
    assert "Traceback" not in result.output

    result = cli("trace", "verify", trace_file, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stderr)["error"]["code"] == "UNREADABLE_TRACE"


def test_an_empty_file_proves_nothing(cli: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "empty.trace.jsonl"
    path.write_bytes(b"")
    result = cli("trace", "verify", path)
    assert result.exit_code == 1
    assert "EMPTY_TRACE" in result.stderr


def test_an_unfinished_last_line_fails_verification_rather_than_being_skipped(
    cli: Invoke, trace_file: Path
) -> None:
    # Skipping it would let an edited last event (newline removed) pass unnoticed.
    with trace_file.open("ab") as handle:
        handle.write(b'{"trace_version":"1.0","event_id":')
    result = cli("trace", "verify", trace_file)
    assert result.exit_code == 1
    assert "UNREADABLE_TRACE" in result.stderr


def test_usage_errors_exit_2(cli: Invoke, tmp_path: Path) -> None:
    assert cli("trace", "verify", tmp_path / "missing.jsonl").exit_code == 2
    assert cli("trace", "verify", tmp_path).exit_code == 2  # a directory
    assert cli("trace", "verify").exit_code == 2
    assert cli("trace", "nope").exit_code == 2


def test_terminal_output_is_coloured(cli: Invoke, trace_file: Path) -> None:
    result = cli("trace", "verify", trace_file, terminal=True)
    assert result.exit_code == 0
    assert "\x1b[" in result.stdout


def test_expect_head_catches_a_trace_cut_short(cli: Invoke, trace_file: Path) -> None:
    lines = trace_file.read_bytes().splitlines(keepends=True)
    head = cra.TraceEvent.from_json(lines[-1]).event_hash
    assert cli("trace", "verify", trace_file, "--expect-head", head).exit_code == 0
    trace_file.write_bytes(b"".join(lines[:-1]))
    assert cli("trace", "verify", trace_file).exit_code == 0  # the chain alone cannot tell
    result = cli("trace", "verify", trace_file, "--expect-head", head)
    assert result.exit_code == 1
    assert "head_mismatch" in result.output


def test_a_long_trace_shows_progress_on_a_terminal_and_gives_the_same_answer(
    cli: Invoke, trace_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cra.cli import trace as trace_cli

    monkeypatch.setattr(trace_cli, "PROGRESS_MIN_EVENTS", 2)
    monkeypatch.setattr(trace_cli, "_PROGRESS_STEP", 1)
    result = cli("trace", "verify", trace_file, terminal=True)
    assert result.exit_code == 0, result.output
    assert "valid" in result.output and "head_hash" in result.output
    lines = trace_file.read_text(encoding="utf-8").splitlines(keepends=True)
    del lines[3]  # the generic (progress) path must find the same break as the fast path
    trace_file.write_text("".join(lines), encoding="utf-8")
    broken = cli("trace", "verify", trace_file, terminal=True)
    assert broken.exit_code == 1 and "chain_broken" in broken.output
