"""``cra trace ...``: work with TRACE audit logs (``verify`` here; ``tail`` and ``export`` in their own modules)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

import cra

from ._output import EXIT_FAILURE, Output, fail, print_json

__all__ = ["PROGRESS_MIN_EVENTS", "app", "verify_command"]

PROGRESS_MIN_EVENTS = 50_000
"""Traces with at least this many events show a progress bar while they are verified (on a terminal)."""
_PROGRESS_STEP = 5_000

app = typer.Typer(
    name="trace",
    help=(
        "Read and check TRACE audit logs.\n\n"
        "A TRACE file is hash-chained JSONL, one event per line, one file per session.\n\n"
        "\b\nExample:\n  cra trace verify session.trace.jsonl"
    ),
    no_args_is_help=True,
)


def _verify(
    events: list[cra.TraceEvent], expect_head: str | None, *, show_progress: bool
) -> cra.ChainVerification:
    if not show_progress or len(events) < PROGRESS_MIN_EVENTS:
        return cra.verify_chain(events, expected_head=expect_head)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn  # terminals only

    columns = (TextColumn("verifying"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("verify", total=len(events))

        def counted() -> Iterator[cra.TraceEvent]:
            for index, event in enumerate(events, 1):
                if index % _PROGRESS_STEP == 0:
                    progress.update(task, completed=index)
                yield event

        return cra.verify_chain(counted(), expected_head=expect_head)


@app.command("verify")
def verify_command(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            exists=True,
            dir_okay=False,
            help="A TRACE JSONL file (one event per line, as runtime.export_trace writes it).",
            show_default=False,
        ),
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the verification result as JSON.")
    ] = False,
    expect_head: Annotated[
        str | None,
        typer.Option(
            "--expect-head",
            metavar="HASH",
            help="The last event_hash recorded elsewhere: a chain cut short or extended then fails (head_mismatch).",
        ),
    ] = None,
) -> None:
    """Verify a TRACE file's hash chain.

    Checks every event's own hash, the genesis, the links and the sequence, and reports the first failure
    (hash_mismatch, invalid_genesis, chain_broken or sequence_gap) with the index of the failing event and its
    sequence number. The file must be exactly as CRA wrote it (one canonical line per event). A chain alone
    cannot show that its tail was cut off: pass --expect-head with the head hash you recorded to check that
    too. Exit 0 if the chain verifies, 1 if it does not or the file cannot be read (or holds no
    events), 2 if FILE does not exist.

    \b
    Example:
      cra trace verify ./traces/0193a5c2-7b1e-7c3a-9f10-2b9d4c1e8a77.trace.jsonl
      cra trace verify session.trace.jsonl --json
      cra trace verify session.trace.jsonl --expect-head 3f1c...e9
    """
    try:
        events = cra.read_jsonl(file)  # strict: an unfinished or edited last line is an error, not skipped
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}", code="UNREADABLE_TRACE", json_mode=json_output)
    except ValueError as exc:  # read_jsonl names the file and the line
        fail(f"not a TRACE JSONL file: {exc}", code="UNREADABLE_TRACE", json_mode=json_output)
    if not events:
        fail(f"{file} holds no TRACE events", code="EMPTY_TRACE", json_mode=json_output)
    result = _verify(events, expect_head, show_progress=not json_output and Output().rich)
    if json_output:
        print_json(result.to_dict())
    else:
        out = Output()
        if result.valid:
            out.line(("valid", "bold green"), f": {file}")
            out.line(f"events: {result.event_count}")
            out.line(f"session_id: {events[0].session_id}")
            out.line(f"head_hash: {result.head_hash}")
        else:
            out.line(("invalid", "bold red"), f": {file}")
            out.line(f"error: {result.error}")
            out.line(f"error_at: {result.error_at}")
            out.line(f"sequence: {result.sequence}")
            if result.error_at is not None:
                bad = events[result.error_at]
                out.line(f"event: {bad.event_type} ({bad.event_id})")
            out.line(f"events checked: {result.event_count} of {len(events)}")
    if not result.valid:
        raise typer.Exit(EXIT_FAILURE)
