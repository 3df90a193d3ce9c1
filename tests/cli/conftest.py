"""Fixtures for the CLI tests: an in-process runner, an example Atlas, and an exported TRACE file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import cra
from cra.cli import app
from cra.cli.init import copy_template

PLAIN_ENV = {"TTY_COMPATIBLE": "0", "FORCE_COLOR": None, "NO_COLOR": None, "COLUMNS": "200"}
"""Output as when piped: rich must not treat the test's stdout as a terminal."""
TERMINAL_ENV = {"TTY_COMPATIBLE": "1", "FORCE_COLOR": None, "NO_COLOR": None, "COLUMNS": "200"}
"""Output as on a terminal (rich tables and colour)."""

Invoke = Callable[..., Result]


@pytest.fixture
def cli() -> Invoke:
    """``cli("validate", path, terminal=False)``: run the app in-process and return the result."""
    runner = CliRunner()

    def invoke(*args: str | Path, terminal: bool = False) -> Result:
        env = TERMINAL_ENV if terminal else PLAIN_ENV
        return runner.invoke(app, [str(a) for a in args], env=env)

    return invoke


@pytest.fixture
def atlas_dir(tmp_path: Path) -> Path:
    """A fresh copy of the example Atlas that ``cra init`` writes."""
    target = tmp_path / "support-atlas"
    copy_template(target)
    return target


@pytest.fixture
def trace_file(tmp_path: Path, atlas_dir: Path) -> Iterator[Path]:
    """A real session's TRACE JSONL: session start, a resolve, two executions (success and denied)."""
    path = tmp_path / "session.trace.jsonl"
    with cra.Runtime(clock=cra.ManualClock("2025-01-01T00:00:00Z"), storage="memory://") as runtime:
        runtime.load_atlas(atlas_dir)
        runtime.register("ticket.read", lambda params: {"ticket_id": params["ticket_id"], "status": "open"})
        session = runtime.create_session("support-bot", "Answer ticket T-1001")
        resolution = runtime.resolve(session.session_id)
        runtime.execute(session.session_id, resolution.resolution_id, "ticket.read", {"ticket_id": "T-1001"})
        runtime.execute(session.session_id, resolution.resolution_id, "customer.delete", {})
        runtime.end_session(session.session_id)
        runtime.export_trace(session.session_id, path)
    yield path
