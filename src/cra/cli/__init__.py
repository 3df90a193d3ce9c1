"""The ``cra`` command line (SPEC 8), built on typer and rich.

This package is an outer layer: it imports the core (``cra``), never the other way round. Human output uses
tables and colour on a terminal and plain text when piped; ``--json`` gives machine output; exit codes are
0 (ok), 1 (a failure was found) and 2 (usage error).
"""

from __future__ import annotations

from typing import Annotated

import typer

from .._version import __version__
from . import approvals, bench, conformance, execute, init, keys, replay, resolve, serve, trace, validate
from .trace_export import export_command
from .trace_tail import tail_command

__all__ = ["app", "main"]

app = typer.Typer(
    name="cra",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    # Plain click help everywhere: it keeps the docstrings' example blocks intact on a terminal too.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"cra {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """CRA: a governance runtime for AI agents.

    Validate Atlases, resolve what an agent may do, serve the HTTP API, verify and replay TRACE audit logs,
    and run the conformance suite. Exit codes: 0 ok, 1 a failure was found, 2 usage error.

    \b
    Example:
      cra init support-atlas
      cra resolve --atlas support-atlas --agent support-bot --goal "Answer ticket T-1001"
      cra serve --atlas support-atlas
    """


app.command("init")(init.init_command)
app.command("validate")(validate.validate_command)
app.command("resolve")(resolve.resolve_command)
app.add_typer(trace.app, name="trace")
app.command("conformance")(conformance.conformance_command)
app.command("bench")(bench.bench_command)
app.command("serve")(serve.serve_command)
app.command("execute")(execute.execute_command)
app.add_typer(approvals.app, name="approvals")
trace.app.command("export")(export_command)
trace.app.command("tail")(tail_command)
app.add_typer(keys.app, name="keys")
app.command("replay")(replay.replay_command)
app.command("diff")(replay.diff_command)


def main() -> None:
    """Entry point of the ``cra`` console script."""
    app(prog_name="cra")
