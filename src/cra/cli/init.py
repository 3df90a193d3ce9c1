"""``cra init DIR``: write a working example Atlas (customer support) to start from."""

from __future__ import annotations

import json
import shlex
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated

import typer

from ._output import Output, fail, print_json

__all__ = ["TEMPLATE", "copy_template", "init_command"]

TEMPLATE = "example_atlas"
"""The folder, inside this package, holding the example Atlas."""


def _copy(source: Traversable, target: Path, prefix: str, written: list[str]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(source.iterdir(), key=lambda e: e.name):
        if entry.name.startswith((".", "__")):
            continue  # caches and hidden files are not part of the template
        relative = f"{prefix}{entry.name}"
        if entry.is_dir():
            _copy(entry, target / entry.name, f"{relative}/", written)
        else:
            (target / entry.name).write_bytes(entry.read_bytes())
            written.append(relative)


def copy_template(directory: Path) -> list[str]:
    """Copy the example Atlas into ``directory`` (created if needed); returns the files written, relative."""
    written: list[str] = []
    _copy(resources.files("cra.cli").joinpath(TEMPLATE), directory, "", written)
    return written


def init_command(
    directory: Annotated[
        Path,
        typer.Argument(
            metavar="DIR",
            help="Where to write the Atlas: a new directory, or an empty one.",
            show_default=False,
        ),
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print {directory, atlas_id, version, files} as JSON.")
    ] = False,
) -> None:
    """Write a working example Atlas into DIR.

    The example is a customer-support Atlas (com.example.support 1.0.0). It has seven actions, four
    capabilities, three context packs (a style guide, a refund policy, an escalation procedure), a policy of
    every type and an extra policy file in policies/. Refuses to touch a DIR that exists and is not empty.

    \b
    Example:
      cra init support-atlas
      cra validate support-atlas
      cra resolve --atlas support-atlas --agent support-bot --goal "Answer ticket T-1001"
    """
    if directory.exists():
        if not directory.is_dir():
            raise typer.BadParameter(f"{directory} exists and is not a directory", param_hint="'DIR'")
        if any(directory.iterdir()):
            raise typer.BadParameter(
                f"{directory} is not empty; give a new or empty directory", param_hint="'DIR'"
            )
    try:
        written = copy_template(directory)
    except OSError as exc:
        fail(f"cannot write {directory}: {exc.strerror or exc}", code="WRITE_FAILED", json_mode=json_output)

    manifest = json.loads((directory / "atlas.json").read_text(encoding="utf-8"))
    if json_output:
        print_json(
            {
                "directory": str(directory),
                "atlas_id": manifest["atlas_id"],
                "version": manifest["version"],
                "files": written,
            }
        )
        return
    out = Output()
    out.line(
        "Created example Atlas ",
        (f"{manifest['atlas_id']} {manifest['version']}", "bold green"),
        f" in {directory}",
    )
    for name in written:
        out.line(f"  {name}")
    where = shlex.quote(str(directory))
    out.line("")
    out.line("Next:")
    out.line(f"  cra validate {where}")
    out.line(f'  cra resolve --atlas {where} --agent support-bot --goal "Answer ticket T-1001"')
