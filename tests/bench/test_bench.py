"""``cra.bench`` and ``cra bench``: the report's shape, never its timings (SPEC 12: performance is measured
by benchmarks, not asserted by unit tests)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cra import bench
from cra.bench import METRICS, run_bench
from cra.cli import app
from cra.cli import bench as bench_cli

REPO = Path(__file__).resolve().parents[2]
PLAIN_ENV = {"TTY_COMPATIBLE": "0", "FORCE_COLOR": None, "NO_COLOR": None, "COLUMNS": "200"}
SCALE = 0.01  # a few hundred calls per figure: enough to exercise every path, fast enough for a unit test


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_bench(quick=True, scale=SCALE, storage_dir=str(tmp_path_factory.mktemp("bench")))


@pytest.fixture
def small_bench(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Make the CLI's run_bench a scaled-down one; returns the keyword arguments of each call."""
    calls: list[dict[str, Any]] = []

    def fake(**kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        return run_bench(**kwargs, scale=SCALE)

    monkeypatch.setattr(bench_cli, "run_bench", fake)
    return calls


def test_report_has_every_metric_as_a_positive_number(report: dict[str, Any]) -> None:
    metrics = report["metrics"]
    assert set(metrics) == {*METRICS, "chain_write_backend"}
    for key in METRICS:
        assert isinstance(metrics[key], int | float) and not isinstance(metrics[key], bool), key
        assert metrics[key] > 0, key
    assert metrics["chain_write_backend"] in ("sqlite", "jsonl")


def test_report_shape_targets_and_met(report: dict[str, Any]) -> None:
    assert set(report) >= {"version", "python", "machine", "metrics", "targets", "met"}
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu"]
    assert set(report["targets"]) == set(METRICS) == set(report["met"])
    assert report["targets"]["resolve_p50_us"] == {"max": 5.0}
    assert report["targets"]["chain_write_events_per_s"] == {"min": 100_000.0}
    assert all(isinstance(value, bool) for value in report["met"].values())
    assert json.loads(json.dumps(report)) == report


def test_chain_run_leaves_nothing_in_the_storage_dir(tmp_path: Path) -> None:
    run_bench(quick=True, scale=SCALE, storage_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_scale_must_be_positive() -> None:
    with pytest.raises(ValueError, match="scale"):
        run_bench(quick=True, scale=0)


def test_embedded_atlas_is_the_conformance_case() -> None:
    case = json.loads((REPO / "tests" / "conformance" / "resolve.partial.json").read_text(encoding="utf-8"))
    assert bench.partial_manifest() == case["atlas"]


def test_generated_atlas_matches_the_benchmarks_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    atlases = pytest.importorskip("atlases")
    assert bench.generated_manifest() == atlases.generated_atlas()
    sys.modules.pop("atlases", None)


def test_cli_json_parses(small_bench: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(app, ["bench", "--quick", "--json"], env=PLAIN_ENV)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert set(body) >= {"version", "python", "metrics", "targets", "met"}
    assert set(body["metrics"]) == {*METRICS, "chain_write_backend"}
    assert small_bench[0]["quick"] is True


def test_cli_plain_table(small_bench: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(app, ["bench"], env=PLAIN_ENV)
    assert result.exit_code == 0, result.output
    assert "METRIC" in result.stdout and "TARGET" in result.stdout
    for label in ("resolve p99", "execute p50", "verify", "peak RSS", "≤ 5 µs", "≥ 300,000 events/s"):
        assert label in result.stdout
    assert "targets met" in result.stdout
    assert "\x1b[" not in result.stdout  # plain when piped
    assert small_bench[0]["quick"] is False


def test_cli_crash_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**_kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(bench_cli, "run_bench", broken)
    result = CliRunner().invoke(app, ["bench", "--json"], env=PLAIN_ENV)
    assert result.exit_code == 1
    assert json.loads(result.stderr)["error"]["code"] == "BENCH_FAILED"
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("key", "target", "text"),
    [
        ("resolve_p50_us", {"max": 5.0}, "≤ 5 µs"),
        ("emit_p50_us", {"max": 0.5}, "≤ 0.5 µs"),
        ("chain_write_events_per_s", {"min": 100_000.0}, "≥ 100,000 events/s"),
        ("rss_mb", {"max_bytes_per_event": 2048.0}, "≤ 2 KiB per stored event"),
    ],
)
def test_format_target(key: str, target: dict[str, float], text: str) -> None:
    assert bench_cli.format_target(key, target) == text


def test_measure_paces_calls() -> None:
    calls: list[int] = []
    result = bench.measure(lambda: calls.append(1), 50, rate=1_000_000, warmup=3)
    assert len(calls) == 53
    assert result["count"] == 50 and result["p50_us"] <= result["p99_us"] <= result["max_us"]
