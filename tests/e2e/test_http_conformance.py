"""The whole conformance suite over HTTP: every case's steps go through a real uvicorn server and a real
HTTP client (``cra.client.Client``) instead of the runtime's Python API, and must give the same outcomes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
import pytest

from cra import Runtime
from cra.client import Client
from cra.conformance.runner import run_case
from cra.server.app import create_app

from .live import running

CASES = sorted((Path(__file__).parent.parent / "conformance").glob("*.json"))


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case_over_http(path: Path, stack: ExitStack) -> None:
    case: dict[str, Any] = orjson.loads(path.read_bytes())

    def over_http(runtime: Runtime) -> Client:
        url = stack.enter_context(running(create_app(runtime, timers=False)))
        return stack.enter_context(Client(url))

    result = run_case(case, path.name, api_factory=over_http)
    assert result.status == "passed", result.error
