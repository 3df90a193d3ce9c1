"""``cra bench``: measure SPEC 12's performance figures on this machine and show them beside the targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cra.bench import METRICS, run_bench

from ._output import Output, fail, print_json, warn

__all__ = ["bench_command", "find_peer_script", "format_target", "format_value"]

_PEER_SCRIPT = Path("benchmarks") / "peers" / "agt_compare.py"

_LABELS = {
    "resolve_p50_us": "resolve p50 (5 actions, 20k/s)",
    "resolve_p99_us": "resolve p99 (5 actions, 20k/s)",
    "resolve_200_p50_us": "resolve p50 (200 actions / 50 policies)",
    "emit_p50_us": "trace emit p50 (hot-path append)",
    "execute_p50_us": "execute p50 (validated, in-memory)",
    "chain_write_events_per_s": "chain + write",
    "verify_events_per_s": "verify",
    "rss_mb": "peak RSS",
}


def format_value(key: str, value: float) -> str:
    """A figure with its unit: ``4.21 µs``, ``123,456 events/s``, ``310.5 MB``."""
    if key.endswith("_us"):
        return f"{value:,.2f} µs"
    if key.endswith("_per_s"):
        return f"{value:,.0f} events/s"
    return f"{value:,.1f} MB"


def format_target(key: str, target: dict[str, float]) -> str:
    """A SPEC 12 target as text: ``≤ 5 µs``, ``≥ 100,000 events/s``, ``≤ 2 KiB per stored event``."""
    if "max" in target:
        return f"≤ {target['max']:,g} {format_value(key, 0).split(' ', 1)[1]}"
    if "min" in target:
        return f"≥ {format_value(key, target['min'])}"
    return f"≤ {target['max_bytes_per_event'] / 1024:g} KiB per stored event"


def find_peer_script() -> Path | None:
    """``benchmarks/peers/agt_compare.py`` under the working directory or beside this source tree."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        candidate = base / _PEER_SCRIPT
        if candidate.is_file():
            return candidate
    return None


def _run_peers(quick: bool, json_mode: bool) -> dict[str, Any] | None:
    script = find_peer_script()
    if script is None:
        warn(f"--peers: {_PEER_SCRIPT} was not found (run from a source checkout)")
        return None
    args = [sys.executable, str(script), *(["--quick"] if quick else []), *(["--json"] if json_mode else [])]
    if not json_mode:
        subprocess.run(args, check=False)  # it prints its own report
        return None
    done = subprocess.run(args, check=False, capture_output=True, text=True)
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        warn(
            f"--peers: {script.name} gave no JSON report (exit {done.returncode}): {done.stderr.strip()[-500:]}"
        )
        return None
    return report


def _print_report(out: Output, report: dict[str, Any]) -> None:
    machine = report["machine"]
    out.line(f"cra {report['version']}  {report['python']}  {machine['cpu']} x{machine['cores']}")
    metrics, targets, met = report["metrics"], report["targets"], report["met"]
    details = report.get("details", {})
    per_event = details.get("memory", {}).get("memory_bytes_per_event")
    rows = []
    for key in METRICS:
        label = _LABELS[key]
        if key == "chain_write_events_per_s":
            label = f"{label} ({metrics['chain_write_backend']})"
        value = format_value(key, metrics[key])
        if key == "rss_mb" and per_event is not None:
            value = f"{value} ({per_event:,} B/event)"
        rows.append([label, value, format_target(key, targets[key]), met[key]])
    if out.rich:
        from rich.table import Table
        from rich.text import Text

        table = Table(title="SPEC 12 figures (deferred tracing)", title_justify="left", title_style="bold")
        for name in ("Metric", "Value", "Target", "Met"):
            table.add_column(name, justify="right" if name == "Value" else "left")
        for label, value, target, ok in rows:
            table.add_row(label, value, target, Text("yes" if ok else "no", style="green" if ok else "red"))
        out.console.print(table)
    else:
        out.table(
            "SPEC 12 figures (deferred tracing)",
            ["metric", "value", "target", "met"],
            [[label, value, target, "yes" if ok else "no"] for label, value, target, ok in rows],
        )
    resolve = details.get("resolve", {})
    if resolve.get("calls_per_s") and resolve["calls_per_s"] < 0.9 * resolve.get("target_rate", 0):
        out.line(
            f"note: resolve ran at {resolve['calls_per_s']:,} of the {resolve['target_rate']:,.0f} calls/s asked "
            "for (the calls took longer than the pacing interval)"
        )
    passed = sum(1 for key in METRICS if met[key])
    out.line((f"{passed} of {len(METRICS)} targets met", "bold green" if passed == len(METRICS) else "bold"))


def bench_command(
    quick: Annotated[
        bool, typer.Option("--quick", help="Fewer calls: a few seconds instead of ~30.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    peers: Annotated[
        bool,
        typer.Option(
            "--peers", help="Also run benchmarks/peers/agt_compare.py (a peer toolkit, side by side)."
        ),
    ] = False,
    storage_dir: Annotated[
        Path | None,
        typer.Option(
            "--storage-dir",
            exists=True,
            file_okay=False,
            help="Where the chain-write run writes its SQLite file (default: the system temp directory).",
        ),
    ] = None,
) -> None:
    """Measure this build's performance figures (SPEC 12) on this machine.

    Runs the embedded runtime with deferred tracing: resolve on the 5-action conformance Atlas at 20,000
    resolves/s, resolve on a generated 200-action / 50-policy Atlas, the trace emit hot path, a validated
    execute, chain + write into SQLite, verify, and peak memory. Prints each figure beside its target.
    Timings depend on the machine and its load; nothing here is a pass/fail test. Exit 0 (1 only if the
    benchmark itself crashed).

    \b
    Example:
      cra bench --quick
      cra bench --json > bench.json
    """
    out = None if json_output else Output()
    if out is not None and out.rich:
        # A plain line, not a spinner: an animating thread would compete for the GIL with what is timed.
        out.line((f"running benchmarks (about {10 if quick else 30} s)...", "dim"))
    try:
        report = run_bench(quick=quick, storage_dir=str(storage_dir) if storage_dir else None)
    except Exception as exc:  # the benchmark itself broke: say what, exit 1
        fail(
            f"the benchmark crashed: {type(exc).__name__}: {exc}", code="BENCH_FAILED", json_mode=json_output
        )
    if out is None:
        if peers:
            report["peers"] = _run_peers(quick, json_mode=True)
        print_json(report)
        return
    _print_report(out, report)
    if peers:
        sys.stdout.flush()
        _run_peers(quick, json_mode=False)
