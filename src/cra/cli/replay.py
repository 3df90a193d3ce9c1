"""``cra replay TRACE --atlas DIR`` (the policy impact report) and ``cra diff A B`` (SPEC 4.6)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich import box
from rich.table import Table
from rich.text import Text

import cra
from cra.replay import ReplayReport, replay

from ._output import EXIT_FAILURE, EXIT_USAGE, Output, fail, print_json
from .validate import plural

__all__ = ["diff_command", "replay_command"]

PROGRESS_THRESHOLD = 10_000
"""Traces with more events than this show a progress bar on a terminal."""

_FLIPPED = "bold red"
_VERDICT_STYLE = {
    "identical": "bold green",
    "semantically_equivalent": "bold yellow",
    "different": "bold red",
}


def _read(path: Path, json_mode: bool) -> list[cra.TraceEvent]:
    try:
        events = cra.read_jsonl(path)  # strict: an unfinished or edited line is an error, not skipped
    except OSError as exc:
        fail(
            f"cannot read {path}: {exc.strerror or exc}",
            code="UNREADABLE_TRACE",
            json_mode=json_mode,
            exit_code=EXIT_USAGE,
        )
    except ValueError as exc:  # read_jsonl names the file and the line
        fail(
            f"not a TRACE JSONL file: {exc}",
            code="UNREADABLE_TRACE",
            json_mode=json_mode,
            exit_code=EXIT_USAGE,
        )
    return events


def _refuse(exc: cra.CRAError, json_mode: bool) -> NoReturn:
    """A replay that cannot run is a usage error (exit 2): exit 1 means decisions flipped."""
    fail(exc.message, code=exc.code, json_mode=json_mode, details=exc.details, exit_code=EXIT_USAGE)


def _by_session(events: Sequence[cra.TraceEvent]) -> list[list[cra.TraceEvent]]:
    sessions: dict[str, list[cra.TraceEvent]] = {}
    for event in events:
        sessions.setdefault(event.session_id, []).append(event)
    return list(sessions.values())


def _replay_all(
    sessions: list[list[cra.TraceEvent]], atlases: list[cra.Atlas], out: Output | None
) -> list[ReplayReport]:
    """Replay each session, the others alongside (they may share agent or global limit windows)."""
    single = atlases[0] if len(atlases) == 1 else None

    def run(index: int, progress: Any = None) -> ReplayReport:
        others = sessions[:index] + sessions[index + 1 :]
        return replay(sessions[index], single, atlases=atlases, others=others, progress=progress)

    total_events = sum(len(s) for s in sessions)
    if out is None or not out.rich or total_events <= PROGRESS_THRESHOLD:
        return [run(index) for index in range(len(sessions))]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn  # terminals only

    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn())
    reports = []
    with Progress(*columns, console=out.console, transient=True) as bar:
        for index in range(len(sessions)):
            task = bar.add_task(f"replay {index + 1}/{len(sessions)}", total=None)
            reports.append(
                run(index, lambda done, total, task=task: bar.update(task, completed=done, total=total))
            )
    return reports


def _print_report(out: Output, report: ReplayReport, changed_only: bool) -> None:
    pairs = ", ".join(
        f"{atlas_id} {original[:12]}" + ("" if original == replayed else f" → {replayed[:12]}")
        for atlas_id, original, replayed in report.atlases
    )
    out.heading(f"session {report.session_id} ({pairs})")
    shown = report.flipped if changed_only else report.decisions
    columns = ["Seq", "Operation", "Action", "Original", "Replayed", "Status"]
    rows: list[list[str | int | None]] = [
        [d.sequence, d.operation, d.action_id or "(resolution)", d.original, d.replayed, d.status]
        for d in shown
    ]
    title = f"Decisions ({len(shown)})" if not changed_only else f"Flipped decisions ({len(shown)})"
    if out.rich:
        table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD)
        for name in columns:
            table.add_column(name, overflow="fold")
        for decision, row in zip(shown, rows, strict=True):
            style = _FLIPPED if decision.status == "flipped" else None
            table.add_row(*(Text("-" if v is None else str(v)) for v in row), style=style)
        out.console.print(table)
    else:
        out.table(title, columns, rows)
    for note in report.notes:
        out.line(("note: ", "yellow"), note)
    if report.identical:
        out.line(
            ("unchanged", "bold green"), f": no decision flipped ({plural(report.unchanged, 'decision')})"
        )
    else:
        out.line(
            ("flipped", _FLIPPED),
            f": {report.changed} of {plural(len(report.decisions), 'decision')} changed",
        )


def replay_command(
    trace: Annotated[
        Path,
        typer.Argument(
            metavar="TRACE",
            exists=True,
            dir_okay=False,
            help="A TRACE JSONL file (runtime.export_trace, cra trace export): one session, or several.",
            show_default=False,
        ),
    ],
    atlas: Annotated[
        list[Path],
        typer.Option(
            "--atlas",
            "-a",
            metavar="DIR",
            exists=True,
            help="The Atlas to replay against: the original (matched by digest) or a new version of it. "
            "Repeat for sessions with several Atlases.",
            show_default=False,
        ),
    ],
    json_output: Annotated[bool, typer.Option("--json", help="Print the replay report as JSON.")] = False,
    changed_only: Annotated[
        bool, typer.Option("--changed-only", help="List only the decisions that flipped.")
    ] = False,
) -> None:
    """Replay a trace's decisions against an Atlas: the policy impact report.

    Re-runs every resolve and execute decision of the trace in a fresh runtime, with the recorded clock and
    limiter history, and lists each decision as unchanged or flipped (allow→deny, success→denied:RATE_LIMITED,
    ...). Against the Atlas the session ran with nothing may flip; against a new version the flipped decisions
    are what the change would have done. A file with several sessions replays each, the others alongside (they
    may share agent or global limits). Only a hash of execution parameters is recorded: where parameters are
    not recoverable, their validation is not re-run. Exit 0 if no decision flipped, 1 if any did, 2 if the
    trace or the Atlas cannot be read, the chain does not verify, or the Atlas is not one the session ran
    with.

    \b
    Example:
      cra replay session.trace.jsonl --atlas support-atlas
      cra replay session.trace.jsonl --atlas support-atlas-v2 --changed-only
      cra replay session.trace.jsonl --atlas support-atlas-v2 --json > impact.json
    """
    events = _read(trace, json_output)
    if not events:
        fail(
            f"{trace} holds no TRACE events", code="EMPTY_TRACE", json_mode=json_output, exit_code=EXIT_USAGE
        )
    loaded: list[cra.Atlas] = []
    for path in atlas:
        try:
            loaded.append(cra.load_atlas(path))
        except cra.CRAError as exc:
            _refuse(exc, json_output)
        except OSError as exc:
            fail(
                f"cannot read {path}: {exc.strerror or exc}",
                code="UNREADABLE_ATLAS",
                json_mode=json_output,
                exit_code=EXIT_USAGE,
            )
    sessions = _by_session(events)
    recorded = {
        entry.get("atlas_id") for s in sessions for entry in (s[0].payload.get("atlases") or []) if entry
    }
    unused = [a.atlas_id for a in loaded if a.atlas_id not in recorded]
    if unused and len(loaded) > 1:  # a single Atlas is checked by replay itself (UNKNOWN_ATLAS)
        fail(
            f"not an Atlas of the trace's sessions: {', '.join(unused)}",
            code="UNKNOWN_ATLAS",
            json_mode=json_output,
            exit_code=EXIT_USAGE,
        )
    try:
        reports = _replay_all(sessions, loaded, None if json_output else Output())
    except cra.CRAError as exc:
        _refuse(exc, json_output)
    changed = sum(r.changed for r in reports)
    if json_output:
        print_json(
            {
                "identical": changed == 0,
                "changed": changed,
                "unchanged": sum(r.unchanged for r in reports),
                "reports": [r.to_dict() for r in reports],
            }
        )
    else:
        out = Output()
        for report in reports:
            _print_report(out, report, changed_only)
    if changed:
        raise typer.Exit(EXIT_FAILURE)


def _value(value: Any) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def diff_command(
    a: Annotated[
        Path,
        typer.Argument(
            metavar="A", exists=True, dir_okay=False, help="A TRACE JSONL file.", show_default=False
        ),
    ],
    b: Annotated[
        Path,
        typer.Argument(
            metavar="B",
            exists=True,
            dir_okay=False,
            help="The TRACE JSONL file to compare with A.",
            show_default=False,
        ),
    ],
    json_output: Annotated[bool, typer.Option("--json", help="Print the diff as JSON.")] = False,
) -> None:
    """Compare two traces event by event.

    Ids, timestamps and hashes are ignored. Every difference is listed with its JSON pointer into the event
    list, its type (added, removed, value_changed) and its significance: timing fields such as duration_ms are
    minor; decisions, action ids and event types are major. The verdict is identical, semantically_equivalent
    (minor differences only) or different. Exit 0 if identical or semantically equivalent, 1 if different, 2
    if a file cannot be read.

    \b
    Example:
      cra diff before.trace.jsonl after.trace.jsonl
      cra diff before.trace.jsonl after.trace.jsonl --json
    """
    first, second = _read(a, json_output), _read(b, json_output)
    result = cra.diff_traces(first, second)
    if json_output:
        print_json(result.to_dict())
    else:
        out = Output()
        out.line(("verdict: ", "bold"), (result.verdict, _VERDICT_STYLE.get(result.verdict, "bold")))
        out.line(f"events: {len(first)} in A, {len(second)} in B")
        if result.differences:
            rows = [[d.path, d.type, d.significance, _value(d.a), _value(d.b)] for d in result.differences]
            out.table(
                f"Differences ({len(rows)})",
                ["Path", "Type", "Significance", "A", "B"],
                rows,
                styles={0: "cyan", 2: "magenta"},
            )
    if result.verdict == "different":
        raise typer.Exit(EXIT_FAILURE)
