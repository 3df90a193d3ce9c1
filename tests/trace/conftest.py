"""Fixtures of the TRACE tests (helpers live in trace_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from trace_helpers import build_chain, run_notes_session

from cra.trace.event import TraceEvent

ChainFactory = Callable[..., list[TraceEvent]]


@pytest.fixture
def make_chain() -> ChainFactory:
    """``make_chain(n, session_id=..., payloads=..., event_type=...)``: a valid hand-built chain."""
    return build_chain


@pytest.fixture(scope="session")
def runtime_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[TraceEvent], bytes]:
    """A real create_session / resolve / execute run: its events and its ``export_trace`` JSONL bytes."""
    runtime, session_id = run_notes_session()
    path = tmp_path_factory.mktemp("export") / "session.trace.jsonl"
    assert runtime.export_trace(session_id, path) == len(runtime.get_trace(session_id))
    events = runtime.get_trace(session_id)
    runtime.close()
    return events, path.read_bytes()


@pytest.fixture(scope="session")
def runtime_events(runtime_export: tuple[list[TraceEvent], bytes]) -> list[TraceEvent]:
    """The events of the real run (shared: do not mutate the list)."""
    return runtime_export[0]


@pytest.fixture(scope="session")
def runtime_jsonl(runtime_export: tuple[list[TraceEvent], bytes]) -> bytes:
    """The real run exported as TRACE JSONL bytes."""
    return runtime_export[1]
