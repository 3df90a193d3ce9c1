"""Fixtures of the SQLite tests: a fresh database file per test; the TRACE test helpers made importable."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TRACE_TESTS = str(Path(__file__).resolve().parent.parent / "trace")
if _TRACE_TESTS not in sys.path:
    sys.path.append(_TRACE_TESTS)  # trace_helpers and the shared storage contract


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """``sqlite:////<tmp>/cra.db`` (four slashes: an absolute path)."""
    return f"sqlite:///{tmp_path / 'cra.db'}"


@pytest.fixture
def no_open_databases() -> Iterator[None]:
    """Fails the test if it leaves a database handle open in this process."""
    from cra import _sqlite

    before = set(_sqlite._REGISTRY)
    yield
    assert set(_sqlite._REGISTRY) == before
