"""``cra conformance DIR``: run the SPEC 9 conformance cases and report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cra.conformance import CaseResult, ConformanceReport, run_directory

from ._output import EXIT_FAILURE, Output, print_json

__all__ = ["conformance_command"]

_LABELS = {"passed": ("PASS", "bold green"), "failed": ("FAIL", "bold red"), "skipped": ("SKIP", "yellow")}


def _print_result(out: Output, result: CaseResult) -> None:
    label, style = _LABELS.get(result.status, (result.status.upper(), "bold"))
    error = "  " + " ".join(result.error.split()) if result.error else ""  # one line per case, always
    out.line((label, style), f"  {result.test_id}  {result.duration_ms:.1f} ms{error}")


def _run(directory: Path, out: Output, total: int) -> ConformanceReport:
    if not out.rich:
        return run_directory(directory, on_result=lambda result: _print_result(out, result))
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn  # terminals only

    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=out.console, transient=True) as progress:
        task = progress.add_task("conformance", total=total)

        def on_result(result: CaseResult) -> None:
            _print_result(out, result)
            progress.advance(task)

        return run_directory(directory, on_result=on_result)


def conformance_command(
    directory: Annotated[
        Path,
        typer.Argument(
            metavar="DIR",
            exists=True,
            file_okay=False,
            help="A folder of conformance cases (*.json).",
            show_default=False,
        ),
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the SPEC 9 JSON report and nothing else.")
    ] = False,
) -> None:
    """Run the conformance cases in DIR.

    Every *.json case runs on a fresh runtime with a manual clock. Prints one line per case (PASS, FAIL or
    SKIP, test id, milliseconds, the failure) and a summary "N passed, N failed". Exit 0 if no case failed, 1
    if any did, 2 if DIR does not exist or holds no cases.

    \b
    Example:
      cra conformance tests/conformance
      cra conformance tests/conformance --json > report.json
    """
    total = sum(1 for _ in directory.glob("*.json"))
    if total == 0:
        raise typer.BadParameter(f"no conformance cases (*.json) in {directory}", param_hint="'DIR'")
    if json_output:
        report = run_directory(directory)
        print_json(report.to_dict())
    else:
        out = Output()
        report = _run(directory, out, total)
        passed, failed, skipped = report.count("passed"), report.count("failed"), report.count("skipped")
        summary = f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")
        out.line((summary, "bold red" if failed else "bold green"), f" ({report.duration_ms:.0f} ms)")
    if not report.ok:
        raise typer.Exit(EXIT_FAILURE)
