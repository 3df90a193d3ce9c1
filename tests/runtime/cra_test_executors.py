"""Importable executors for Atlas ``executor`` fields ("cra_test_executors:<name>").

conftest.py puts this directory on sys.path so the module imports under this unique name however pytest
imports the test modules themselves.
"""

from __future__ import annotations

from typing import Any

CALLS: list[dict[str, Any]] = []
NOT_CALLABLE = 42


def echo(parameters: dict[str, Any]) -> dict[str, Any]:
    """Record the call and answer with the parameters."""
    CALLS.append(dict(parameters))
    return {"echo": dict(parameters)}


def version_one(parameters: dict[str, Any]) -> str:
    return "v1"


def version_two(parameters: dict[str, Any]) -> str:
    return "v2"


class Tools:
    """A namespace, to check dotted attribute paths (``module:Tools.shout``)."""

    @staticmethod
    def shout(parameters: dict[str, Any]) -> str:
        return str(parameters.get("text", "")).upper()
