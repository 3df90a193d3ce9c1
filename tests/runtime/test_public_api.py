"""The public surface of ``import cra``: a sorted, complete ``__all__`` and a core free of outer layers."""

from __future__ import annotations

import json
import subprocess
import sys

import cra

OUTER_LAYERS = ("starlette", "uvicorn", "typer", "rich", "mcp", "psycopg", "redis", "fastapi")


def test_every_name_in_all_exists_on_the_package() -> None:
    missing = [name for name in cra.__all__ if not hasattr(cra, name)]
    assert missing == []


def test_all_has_no_duplicates() -> None:
    assert len(cra.__all__) == len(set(cra.__all__))


def test_all_is_sorted_case_insensitively_within_capitalised_and_other_names() -> None:
    capitalised = [n for n in cra.__all__ if n[:1].isupper()]
    others = [n for n in cra.__all__ if not n[:1].isupper()]
    assert capitalised == sorted(capitalised, key=str.lower)
    assert others == sorted(others, key=str.lower)


def test_all_is_sorted_case_insensitively() -> None:
    assert list(cra.__all__) == sorted(cra.__all__, key=str.lower)


def test_version_is_a_semver_string() -> None:
    assert isinstance(cra.__version__, str)
    major, minor, rest = cra.__version__.split(".", 2)
    assert major.isdigit() and minor.isdigit() and rest[:1].isdigit()


def test_category_exceptions_are_the_ones_in_cra_errors() -> None:
    import cra.errors

    for name in ("CRAError", "ValidationError", "AuthError", "NotFoundError", "ConflictError", "PolicyError"):
        assert getattr(cra, name) is getattr(cra.errors, name)
    for name in ("RateLimitError", "ExpiredError", "UnavailableError", "InternalError"):
        assert getattr(cra, name) is getattr(cra.errors, name)


def test_importing_and_using_the_core_loads_no_outer_layer() -> None:
    script = f"""
import json, sys
import cra
runtime = cra.Runtime(clock=cra.ManualClock("2025-01-01T00:00:00Z"))
runtime.load_atlas({{
    "atlas_version": "1.0", "atlas_id": "org.example.shop", "version": "1.0.0", "name": "Shop",
    "description": "d", "actions": [{{"action_id": "shop.read", "name": "r", "description": "r"}}],
    "policies": [{{"policy_id": "allow-all", "type": "allow"}}],
}})
runtime.register("shop.read", lambda p: {{"ok": True}})
session = runtime.create_session("agent-1", "goal")
resolution = runtime.resolve(session.session_id)
runtime.execute(session.session_id, resolution.resolution_id, "shop.read", {{}})
assert runtime.verify(session.session_id).valid
outer = {OUTER_LAYERS!r}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in outer)))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
