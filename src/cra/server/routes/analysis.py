"""``/v1/replay`` (the policy impact report, SPEC 4.6) and ``/v1/diff`` (semantic trace comparison)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...atlas import Atlas, load_atlas
from ...errors import InvalidRequestError
from ...trace.diff import diff_traces
from ...trace.event import TraceEvent
from .._endpoint import Api, read_object
from ..auth import Principal
from ..responses import json_response
from .atlases import manifest_and_files

__all__ = ["diff", "replay"]

_MAX_INLINE_EVENTS = 100_000


def _events(api: Api, value: Any, name: str, principal: Principal) -> list[TraceEvent]:
    """A trace named by session id (read with the caller's rights) or given inline as a list of events."""
    if isinstance(value, str):
        return api.runtime.get_trace(value, agent_id=principal.agent_filter)
    if isinstance(value, list) and len(value) <= _MAX_INLINE_EVENTS:
        try:
            return [TraceEvent.from_dict(e) for e in value]
        except (TypeError, ValueError, KeyError) as exc:
            raise InvalidRequestError(
                f"{name} is not a list of trace events: {exc}",
                details={"errors": [{"pointer": f"/{name}", "message": "not a list of trace events"}]},
            ) from None
    raise InvalidRequestError(
        f"{name} must be a session id or a list of at most {_MAX_INLINE_EVENTS} trace events",
        details={"errors": [{"pointer": f"/{name}", "message": "session id or list of events"}]},
    )


def _atlas(value: Any) -> Atlas | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequestError("atlas must be {manifest, files?} or a bare manifest")
    manifest, files = manifest_and_files(value, "atlas manifest and files")
    return load_atlas(manifest, files=files)


def _replay(api: Api, body: dict[str, Any], principal: Principal) -> dict[str, Any]:
    from ...replay import replay as replay_events
    from ...replay import replay_session

    atlas = _atlas(body.get("atlas"))
    if "session_id" in body:
        session_id = body["session_id"]
        if not isinstance(session_id, str):
            raise InvalidRequestError("session_id must be a string")
        report = replay_session(api.runtime, session_id, atlas, agent_id=principal.agent_filter)
    else:
        events = _events(api, body.get("events"), "events", principal)
        report = replay_events(events, atlas, atlases=api.runtime.atlases())
    return report.to_dict()


async def replay(api: Api, request: Request, principal: Principal) -> Response:
    """Re-run a session's decisions against an Atlas: ``{session_id | events, atlas?: {manifest, files?}}``.
    Without ``atlas`` the original (by digest) is used and every decision must come out unchanged; with a
    proposed version, each flipped decision is listed (allow→deny, ...)."""
    body = await read_object(request, api)
    if set(body) - {"session_id", "events", "atlas"} or ("session_id" in body) == ("events" in body):
        raise InvalidRequestError("the body is {session_id | events, atlas?}")
    return json_response(await api.call(_replay, api, body, principal))


def _diff(api: Api, body: dict[str, Any], principal: Principal) -> dict[str, Any]:
    a = _events(api, body.get("a"), "a", principal)
    b = _events(api, body.get("b"), "b", principal)
    return diff_traces(a, b).to_dict()


async def diff(api: Api, request: Request, principal: Principal) -> Response:
    """Compare two traces event by event, ignoring ids, timestamps and hashes: ``{a, b}``, each a session id
    or a list of events -> ``{verdict, differences: [{path, type, significance, a, b}]}``."""
    body = await read_object(request, api)
    if set(body) != {"a", "b"}:
        raise InvalidRequestError("the body is {a, b}")
    return json_response(await api.call(_diff, api, body, principal))
