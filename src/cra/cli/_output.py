"""How the CLI writes: rich tables and colour on a terminal, plain aligned text when piped, JSON for scripts.

Whether stdout is a terminal is rich's answer, so the usual switches work: ``TTY_COMPATIBLE=1`` or
``FORCE_COLOR=1`` force terminal output, ``TTY_COMPATIBLE=0`` forces plain text, ``NO_COLOR`` drops colour.
Errors and warnings go to stderr; the command's result goes to stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cra import CRAError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "Output",
    "fail",
    "fail_cra",
    "print_json",
    "warn",
]

EXIT_OK = 0
"""Success: the Atlas is valid, the chain verifies, every case passed, a resolution was made."""
EXIT_FAILURE = 1
"""Something was found wrong: an invalid Atlas or trace, a failed case, an error from the runtime."""
EXIT_USAGE = 2
"""The command was called wrongly (unknown option, missing path, ...)."""

Cell = str | int | float | None


def print_json(value: Any) -> None:
    """Write one JSON document to stdout (indented, UTF-8, nothing else)."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _cell(value: Cell) -> str:
    if value is None or value == "":
        return "-"
    return str(value)


class Output:
    """A command's human output: rich on a terminal, plain lines (no colour, no boxes) otherwise."""

    def __init__(self) -> None:
        self.console = Console(highlight=False)
        self.rich = self.console.is_terminal

    def line(self, *parts: str | tuple[str, str]) -> None:
        """Print one line made of parts; a ``(text, style)`` part is coloured on a terminal only."""
        if self.rich:
            self.console.print(Text.assemble(*parts), soft_wrap=True)
        else:
            sys.stdout.write("".join(p if isinstance(p, str) else p[0] for p in parts) + "\n")

    def heading(self, text: str) -> None:
        """A section title (bold on a terminal, ``text:`` in plain mode)."""
        if self.rich:
            self.console.print(Text(text, style="bold"))
        else:
            sys.stdout.write(f"{text}:\n")

    def table(
        self,
        title: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Cell]],
        *,
        styles: Mapping[int, str] | None = None,
    ) -> None:
        """A titled table; in plain mode, an indented block of columns separated by two spaces."""
        cells = [[_cell(value) for value in row] for row in rows]
        if self.rich:
            table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD)
            for index, name in enumerate(columns):
                table.add_column(name, style=(styles or {}).get(index), overflow="fold")
            for row in cells:
                table.add_row(*(Text(value) for value in row))
            self.console.print(table)
            return
        sys.stdout.write(f"{title}:\n")
        if not cells:
            return
        header = [name.upper() for name in columns]
        widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(columns))]
        for row in [header, *cells]:
            padded = [value.ljust(widths[i]) for i, value in enumerate(row[:-1])] + [row[-1]]
            sys.stdout.write("  " + "  ".join(padded).rstrip() + "\n")


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def warn(message: str) -> None:
    """A warning on stderr (yellow on a terminal)."""
    console = _stderr()
    if console.is_terminal:
        console.print(Text.assemble(("warning: ", "bold yellow"), message), soft_wrap=True)
    else:
        sys.stderr.write(f"warning: {message}\n")


def fail(
    message: str,
    *,
    code: str = "CLI_ERROR",
    json_mode: bool = False,
    details: Mapping[str, Any] | None = None,
    exit_code: int = EXIT_FAILURE,
) -> NoReturn:
    """Report an error on stderr and exit: ``error: CODE: message``, or with ``--json`` the SPEC 5 body
    ``{"error": {"code", "message", "details"?}}``."""
    if json_mode:
        body: dict[str, Any] = {"code": code, "message": message}
        if details is not None:
            body["details"] = dict(details)
        sys.stderr.write(json.dumps({"error": body}, indent=2, ensure_ascii=False) + "\n")
    else:
        console = _stderr()
        if console.is_terminal:
            console.print(Text.assemble(("error: ", "bold red"), f"{code}: {message}"), soft_wrap=True)
        else:
            sys.stderr.write(f"error: {code}: {message}\n")
    raise typer.Exit(exit_code)


def fail_cra(exc: CRAError, *, json_mode: bool = False) -> NoReturn:
    """Report a ``CRAError`` (its code and message; with ``--json`` its whole wire form) and exit 1."""
    if json_mode:
        sys.stderr.write(json.dumps({"error": exc.to_dict()}, indent=2, ensure_ascii=False) + "\n")
        raise typer.Exit(EXIT_FAILURE)
    fail(exc.message, code=exc.code)
