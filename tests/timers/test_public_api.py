"""The front doors of ``cra.timers`` and ``cra.testing``: complete, sorted, free of outer layers."""

from __future__ import annotations

import json
import subprocess
import sys
from types import ModuleType

import pytest

import cra.testing
import cra.timers

OUTER_LAYERS = ("starlette", "uvicorn", "typer", "rich", "mcp", "psycopg", "redis", "fastapi")


@pytest.mark.parametrize("module", [cra.timers, cra.testing], ids=lambda m: m.__name__)
def test_all_is_complete_sorted_and_unique(module: ModuleType) -> None:
    names = list(module.__all__)
    assert [n for n in names if not hasattr(module, n)] == []
    assert len(names) == len(set(names))
    assert names == sorted(names, key=str.lower)


def test_every_backend_satisfies_the_protocol() -> None:
    for name in ("ManualTimers", "ThreadTimers", "AsyncioTimers", "MinootsTimers"):
        backend = getattr(cra.timers, name)
        for method in ("schedule_once", "schedule_repeating", "cancel", "close", "stats"):
            assert callable(getattr(backend, method, None)), f"{name}.{method}"


def test_timer_errors_extend_the_cra_hierarchy() -> None:
    from cra.timers import errors

    for cls in (
        errors.TimersClosedError,
        errors.TimerServiceError,
        errors.TimerServiceUnavailableError,
        errors.TimerServiceAuthError,
    ):
        assert issubclass(cls, cra.UnavailableError)
        assert (cls.category, cls.http_status) == ("unavailable", 503)
    assert issubclass(errors.TimerServiceAuthError, PermissionError)
    assert errors.TimerServiceUnavailableError.code == "TIMER_SERVICE_UNAVAILABLE"
    assert errors.TimerServiceUnavailableError("down").to_dict()["recoverable"] is True


def test_the_timers_and_the_fake_load_no_outer_layer() -> None:
    script = f"""
import json, sys
import cra.timers, cra.testing
print(json.dumps([m for m in {OUTER_LAYERS!r} if m in sys.modules]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
