"""Builders for manifests and CARP requests, and a snapshot of everything a runtime holds."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cra

START = "2025-01-01T00:00:00Z"  # a Wednesday
ZERO_HASH = "0" * 64


def action(action_id: str, **fields: Any) -> dict[str, Any]:
    """An action object with the required fields filled in."""
    return {"action_id": action_id, "name": action_id, "description": f"The {action_id} action", **fields}


def policy(policy_id: str, type_: str, actions: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    """A policy object; ``actions=None`` leaves the field out (the policy then covers every action)."""
    out: dict[str, Any] = {"policy_id": policy_id, "type": type_}
    if actions is not None:
        out["actions"] = actions
    out.update(fields)
    return out


def manifest(
    atlas_id: str = "org.example.shop",
    version: str = "1.0.0",
    *,
    actions: list[dict[str, Any]] | None = None,
    policies: list[dict[str, Any]] | None = None,
    capabilities: list[dict[str, Any]] | None = None,
    context_packs: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A manifest; every list is left out when not given."""
    out: dict[str, Any] = {
        "atlas_version": "1.0",
        "atlas_id": atlas_id,
        "version": version,
        "name": f"Atlas {atlas_id}",
        "description": "An Atlas built by the runtime tests",
    }
    for key, value in (
        ("capabilities", capabilities),
        ("context_packs", context_packs),
        ("policies", policies),
        ("actions", actions),
    ):
        if value is not None:
            out[key] = value
    out.update(extra)
    return out


def simple_manifest(*action_ids: str, atlas_id: str = "org.example.shop", **kw: Any) -> dict[str, Any]:
    """Actions that one allow-everything policy allows."""
    return manifest(
        atlas_id,
        actions=[action(a) for a in action_ids],
        policies=[policy("allow-all", "allow")],
        **kw,
    )


def write_atlas(
    root: Path,
    manifest_: Mapping[str, Any] | str | bytes,
    files: Mapping[str, str | bytes] | None = None,
) -> Path:
    """Write an Atlas directory: ``atlas.json`` plus any other files (text, bytes or JSON-able objects)."""
    root.mkdir(parents=True, exist_ok=True)
    write_file(root / "atlas.json", manifest_)
    for rel, content in (files or {}).items():
        write_file(root / rel, content)
    return root


def write_file(path: Path, content: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(json.dumps(content, indent=2), encoding="utf-8")


def new_runtime(**kw: Any) -> cra.Runtime:
    """A runtime on a manual clock at START with sequential ids."""
    kw.setdefault("clock", cra.ManualClock(START))
    kw.setdefault("ids", cra.SequentialIds())
    return cra.Runtime(**kw)


def carp(
    runtime: cra.Runtime,
    session: cra.Session,
    *,
    operation: str = "resolve",
    goal: str = "Help the customer",
    request_id: str | None = None,
    agent_id: str | None = None,
    timestamp: str | None = None,
    execution: dict[str, Any] | None = None,
    task: Mapping[str, Any] | None = None,
    **top: Any,
) -> dict[str, Any]:
    """A valid CARP request for ``session`` at the runtime's clock (``top`` adds top-level members)."""
    request: dict[str, Any] = {
        "carp_version": "1.0",
        "request_id": request_id or str(uuid.uuid4()),
        "timestamp": timestamp or cra.format_timestamp(runtime.clock.now_us()),
        "operation": operation,
        "requester": {"agent_id": agent_id or session.agent_id, "session_id": session.session_id},
        "task": {"goal": goal, **(task or {})},
    }
    if execution is not None:
        request["execution"] = execution
    request.update(top)
    return request


def event_types(runtime: cra.Runtime, session_id: str) -> list[str]:
    return [e.event_type for e in runtime.get_trace(session_id)]


def payloads(runtime: cra.Runtime, session_id: str, event_type: str) -> list[dict[str, Any]]:
    return [dict(e.payload) for e in runtime.get_trace(session_id, event_type=event_type)]


def params_hash(parameters: Mapping[str, Any]) -> str:
    text = json.dumps(parameters, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def snapshot(runtime: cra.Runtime) -> dict[str, Any]:
    """Everything observable about a runtime's state: stats, sessions, every stored trace byte, atlases,
    approvals and limiter windows. Two equal snapshots mean nothing changed."""
    sessions = runtime.sessions()
    limiter = runtime.limiter
    return {
        "stats": runtime.stats(),
        "sessions": [s.to_dict() for s in sessions],
        "traces": {s.session_id: [e.to_json() for e in runtime.get_trace(s.session_id)] for s in sessions},
        "atlases": [(a.atlas_id, a.version, a.digest) for a in runtime.atlases()],
        "approvals": [a.to_dict() for a in runtime.approvals(status=None)],
        "limiter": limiter.snapshot() if hasattr(limiter, "snapshot") else None,
    }


def deep(levels: int, leaf: Any = 1) -> Any:
    """A value nested ``levels`` lists deep."""
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


def run_threads(count: int, target: Callable[[int], Any]) -> list[Any]:
    """Run ``target(i)`` in ``count`` real threads that start together; return each result (or the
    exception it raised), in thread order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def worker(index: int) -> None:
        try:
            barrier.wait()
            results[index] = target(index)
        except BaseException as exc:  # collected and asserted on by the test
            results[index] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a worker thread hung"
    return results
