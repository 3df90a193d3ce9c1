"""A runtime on SQLite caches resolutions too, and a limit consumed by another runtime on the same file (another
`cra serve` worker) invalidates the cached answer at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cra import ManualClock, Runtime

ATLAS: dict[str, Any] = {
    "atlas_version": "1.0",
    "atlas_id": "org.example.limits",
    "version": "1.0.0",
    "name": "Limits",
    "description": "One globally limited action",
    "policies": [
        {
            "policy_id": "one-call-overall",
            "type": "rate_limit",
            "actions": ["api.call"],
            "parameters": {"max_calls": 1, "window_seconds": 3600, "scope": "global"},
        }
    ],
    "actions": [{"action_id": "api.call", "name": "api.call", "description": "call the API"}],
}


def _closing_event(runtime: Runtime, session_id: str) -> str:
    return runtime.get_trace(session_id)[-1].event_type


def test_cached_until_another_runtime_on_the_file_consumes_the_limit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cra.db"
    clock = ManualClock()
    first = Runtime(clock=clock, storage=url)
    second = Runtime(clock=clock, storage=url)
    try:
        for runtime in (first, second):
            runtime.load_atlas(ATLAS)
        mine = first.create_session("agent-1", "call once")
        assert first.resolve(mine.session_id).allowed_ids == ["api.call"]
        assert _closing_event(first, mine.session_id) == "carp.resolution.completed"
        assert first.resolve(mine.session_id).allowed_ids == ["api.call"]
        assert _closing_event(first, mine.session_id) == "carp.resolution.cached"

        theirs = second.create_session("agent-2", "call once")
        resolution = second.resolve(theirs.session_id)
        assert (
            second.execute(theirs.session_id, resolution.resolution_id, "api.call", {}).status == "authorized"
        )

        # The global window is now full: the first runtime must see it, not serve its cached answer.
        after = first.resolve(mine.session_id)
        assert after.allowed_ids == [] and [d.action_id for d in after.denied_actions] == ["api.call"]
        assert _closing_event(first, mine.session_id) == "carp.resolution.completed"
    finally:
        first.close()
        second.close()
