"""Fixtures for the runtime tests: a manual clock, a runtime on it, and importable executors."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import cra

from .helpers import START

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)  # makes "cra_test_executors:<fn>" importable as an Atlas executor


@pytest.fixture
def clock() -> cra.ManualClock:
    return cra.ManualClock(START)


@pytest.fixture
def rt(clock: cra.ManualClock) -> Iterator[cra.Runtime]:
    runtime = cra.Runtime(clock=clock, ids=cra.SequentialIds())
    yield runtime
    runtime.close()
