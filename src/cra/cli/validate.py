"""``cra validate DIR``: check an Atlas (schema, semantics, files) and list every problem."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

import cra

from ._output import EXIT_FAILURE, Output, fail, print_json

__all__ = ["plural", "print_problems", "validate_command"]


def plural(count: int, noun: str) -> str:
    """``1 problem``, ``3 problems``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def print_problems(out: Output, problems: Sequence[Mapping[str, Any]], warnings: Sequence[str]) -> None:
    """Every problem (pointer, stage, message, source file) and then every warning."""
    if problems:
        with_source = any(p.get("source") for p in problems)
        if out.rich:
            columns = ["Pointer", "Stage", "Message"] + (["Source"] if with_source else [])
            rows = [
                [p.get("pointer") or "/", p.get("stage"), p.get("message")]
                + ([p.get("source")] if with_source else [])
                for p in problems
            ]
            out.table(f"Problems ({len(problems)})", columns, rows, styles={0: "cyan", 1: "magenta"})
        else:
            for p in problems:
                where = f", in {p['source']}" if p.get("source") else ""
                out.line(f"{p.get('pointer') or '/'}: {p.get('message')} ({p.get('stage')}{where})")
    for warning in warnings:
        out.line(("warning: ", "yellow"), warning)


def validate_command(
    atlas: Annotated[
        Path,
        typer.Argument(
            metavar="DIR",
            exists=True,
            help="An Atlas directory (holding atlas.json) or a manifest file.",
            show_default=False,
        ),
    ],
    json_output: Annotated[bool, typer.Option("--json", help="Print the validation report as JSON.")] = False,
) -> None:
    """Validate an Atlas and list every problem.

    Checks the manifest schema, then semantics, then context files. Every problem is listed with its JSON
    pointer and stage. Exit 0 if the Atlas is valid, 1 if not, 2 if DIR does not exist.

    \b
    Example:
      cra validate support-atlas
      cra validate support-atlas/atlas.json --json
    """
    try:
        report = cra.validate_atlas(atlas)
    except OSError as exc:
        fail(f"cannot read {atlas}: {exc.strerror or exc}", code="UNREADABLE_ATLAS", json_mode=json_output)
    if json_output:
        print_json(report.to_dict())
    else:
        out = Output()
        if report.valid:
            out.line(
                ("valid", "bold green"),
                f": {report.atlas_id} {report.version} ({atlas})",
            )
            out.line(f"digest: {report.digest}")
        else:
            out.line(("invalid", "bold red"), f": {atlas} has {plural(len(report.problems), 'problem')}")
        print_problems(out, [p.to_dict() for p in report.problems], report.warnings)
    if not report.valid:
        raise typer.Exit(EXIT_FAILURE)
