"""Every conformance case (the shared ones and ours) as its own test, and the shared copies kept in sync."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from cra.conformance import run_case

HERE = Path(__file__).parent / "conformance"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "conformance"
CASES = sorted(HERE.glob("*.json"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_conformance_case_passes(path: Path) -> None:
    result = run_case(orjson.loads(path.read_bytes()), path.name)
    assert result.status == "passed", result.error


def test_there_are_the_shared_cases_and_at_least_twenty_of_our_own() -> None:
    ours = [p for p in CASES if p.name.startswith("cra.")]
    assert len(CASES) - len(ours) >= 24
    assert len(ours) >= 20


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/conformance is not beside this checkout")
def test_shared_cases_are_byte_identical_copies() -> None:
    for shared in sorted(SHARED.glob("*.json")):
        copy = HERE / shared.name
        assert copy.exists(), f"tests/conformance/{shared.name} is missing"
        assert copy.read_bytes() == shared.read_bytes(), f"tests/conformance/{shared.name} differs"
