"""The ``components/schemas`` of the OpenAPI document (:mod:`cra.server.openapi`): the error body, every
request and response body, and the packaged wire schemas, plus the small builders the operations share.

Each body is written from the code that reads or writes it (``to_dict()`` of ``Session``, ``Approval``,
``ExecuteResponse``, ...). Wire bodies that have a packaged JSON Schema (CARP request and resolution, TRACE
event, Atlas manifest) are not retyped: they are embedded (Draft 2020-12 is OpenAPI 3.1's own schema
dialect), with their ``$defs`` hoisted next to them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from ..errors import CRAError
from ..schemas import load_schema

JSON = "application/json"
NDJSON = "application/x-ndjson"

Json = dict[str, Any]
"""A JSON object of the document."""


def ref(name: str) -> Json:
    """A reference to the schema component ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Json) -> Json:
    """``schema`` or JSON null."""
    return {"anyOf": [schema, {"type": "null"}]}


UUID: Json = {"type": "string", "format": "uuid"}
TIMESTAMP: Json = {
    "type": "string",
    "format": "date-time",
    "description": "UTC, exactly `YYYY-MM-DDTHH:MM:SS.ffffffZ`.",
}
ID_TEXT: Json = {"type": "string", "minLength": 1, "maxLength": 255}
HASH: Json = {"type": "string", "pattern": "^[a-f0-9]{64}$"}


# --- the packaged wire schemas ------------------------------------------------------------------------------

_PACKAGED = {
    "carp-request": "CarpRequest",
    "carp-resolution": "CarpResolution",
    "trace-event": "TraceEvent",
    "atlas-manifest": "AtlasManifest",
}


def _rewrite_refs(node: Any, prefix: str, used: set[str]) -> Any:
    """``node`` with every ``#/$defs/X`` reference pointing at the hoisted ``#/components/schemas/<prefix>X``
    (the packaged schemas use no other kind of reference)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                name = value.removeprefix("#/$defs/")
                used.add(name)
                out[key] = f"#/components/schemas/{prefix}{name}"
            else:
                out[key] = _rewrite_refs(value, prefix, used)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, prefix, used) for v in node]
    return node


def packaged_components() -> dict[str, Json]:
    """The packaged schemas as components: each root under its name and each ``$defs`` entry it reaches as
    ``<name><Def>``. ``$schema`` and ``$id`` are dropped: the document's dialect is already Draft 2020-12, and
    an ``$id`` would move the base URI that the rewritten references are resolved against. Definitions no
    root reaches (the shared schema's per-event payload sketches, which SPEC 4.2 supersedes) are left out."""
    components: dict[str, Json] = {}
    for schema_name, prefix in _PACKAGED.items():
        document = copy.deepcopy(load_schema(schema_name))
        document.pop("$schema", None)
        document.pop("$id", None)
        defs: dict[str, Any] = document.pop("$defs", {})
        used: set[str] = set()
        components[prefix] = _rewrite_refs(document, prefix, used)
        done: set[str] = set()
        while used - done:
            name = min(used - done)
            done.add(name)
            components[prefix + name] = _rewrite_refs(defs[name], prefix, used)
    return components


# --- errors -------------------------------------------------------------------------------------------------


def _error_codes() -> list[str]:
    """Every error code a ``CRAError`` subclass carries, found by walking the hierarchy (so a new error class
    is in the enum without editing this file). ``cra.timers.errors`` is imported first: its classes exist
    only once imported, and the document must not depend on what else happened to be imported."""
    from ..timers import errors as _timer_errors  # noqa: F401  (imported for its subclasses)

    codes: set[str] = set()
    stack: list[type[CRAError]] = [CRAError]
    while stack:
        cls = stack.pop()
        codes.add(cls.code)
        stack.extend(cls.__subclasses__())
    return sorted(codes)


def error_components() -> dict[str, Json]:
    """``Error`` (the SPEC 5 body), ``ErrorDetail`` and ``ErrorCode`` (every code, as an enum)."""
    return {
        "ErrorCode": {
            "type": "string",
            "enum": _error_codes(),
            "description": "Every error code CRA defines (SPEC 5); `cra.errors` documents each one.",
        },
        "ErrorDetail": {
            "type": "object",
            "required": ["code", "category", "message", "recoverable"],
            "properties": {
                "code": ref("ErrorCode"),
                "category": {
                    "type": "string",
                    "enum": [
                        "validation",
                        "auth",
                        "not_found",
                        "conflict",
                        "policy",
                        "rate_limit",
                        "timeout",
                        "unavailable",
                        "internal",
                    ],
                },
                "message": {
                    "type": "string",
                    "description": "For people; never a stack trace or a server path.",
                },
                "recoverable": {"type": "boolean", "description": "Whether retrying later may succeed."},
                "details": {
                    "type": "object",
                    "description": "Machine-readable specifics, e.g. `errors: [{pointer, message}]` for an "
                    "invalid request, `retry_after_seconds` for a rate limit.",
                },
            },
            "additionalProperties": False,
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": ref("ErrorDetail")},
            "additionalProperties": False,
            "description": "The body of every refusal (SPEC 5).",
        },
    }


def error_response(description: str, *, headers: Json | None = None) -> Json:
    """A response whose body is the SPEC 5 error; ``description`` names the codes it can carry."""
    response: Json = {"description": description, "content": {JSON: {"schema": ref("Error")}}}
    if headers:
        response["headers"] = headers
    return response


# --- response bodies ----------------------------------------------------------------------------------------


def obj(properties: Json, required: Iterable[str] | None = None, *, description: str = "") -> Json:
    """A closed object schema (the server writes exactly these keys); every property is required unless
    ``required`` says otherwise."""
    schema: Json = {
        "type": "object",
        "required": list(properties) if required is None else list(required),
        "properties": properties,
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


def body_components() -> dict[str, Json]:
    """Every request and response body the endpoints read and write, by component name."""
    atlas_summary = {
        "atlas_id": {"type": "string"},
        "version": {"type": "string"},
        "name": {"type": "string"},
        "description": {"type": "string"},
        "digest": {**HASH, "description": "SHA-256 of the canonical manifest and its context files."},
        "action_count": {"type": "integer", "minimum": 0},
        "policy_count": {"type": "integer", "minimum": 0},
        "context_pack_count": {"type": "integer", "minimum": 0},
    }
    trace_reference: Json = {
        "oneOf": [
            {**ID_TEXT, "description": "A session id: its trace, read with the caller's rights."},
            {"type": "array", "items": ref("TraceEvent"), "maxItems": 100_000},
        ]
    }
    atlas_upload: Json = {
        "oneOf": [
            obj(
                {
                    "manifest": ref("AtlasManifest"),
                    "files": nullable(
                        {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                            "description": "Context files by the relative path the manifest names.",
                        }
                    ),
                },
                ["manifest"],
            ),
            {**ref("AtlasManifest"), "description": "A bare manifest (no context files)."},
        ]
    }
    return {
        "Health": obj(
            {
                "status": {
                    "type": "string",
                    "enum": ["ok", "degraded", "error"],
                    "description": "`error` when storage fails (HTTP 503); `degraded` when the trace buffer "
                    "is over 90 % full.",
                },
                "version": {"type": "string"},
                "uptime_seconds": {"type": "number", "minimum": 0},
                "checks": obj(
                    {
                        "storage": obj(
                            {
                                "status": {"type": "string", "enum": ["ok", "error"]},
                                "url": {"type": "string", "description": "Without its query string."},
                                "error": {"type": "string", "description": "The failure's class name."},
                            },
                            ["status"],
                        ),
                        "buffer": obj(
                            {
                                "status": {"type": "string", "enum": ["ok", "degraded"]},
                                "buffered": {"type": "integer", "minimum": 0},
                                "pressure": {"type": "number", "minimum": 0},
                                "dropped": {"type": "integer", "minimum": 0},
                            }
                        ),
                    }
                ),
            }
        ),
        "CreateSession": obj(
            {
                "agent_id": {
                    **ID_TEXT,
                    "description": "Who the session is for. An agent-scoped credential may leave it out (it "
                    "defaults to the credential's agent) and may name no other agent (403).",
                },
                "goal": {"type": "string", "minLength": 1, "maxLength": 10_000},
                "atlas_ids": nullable(
                    {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Each must be loaded (400 `UNKNOWN_ATLAS`); absent or null: every "
                        "Atlas loaded now.",
                    }
                ),
                "metadata": nullable({"type": "object"}),
            },
            ["agent_id", "goal"],
        ),
        "Session": obj(
            {
                "session_id": UUID,
                "agent_id": {"type": "string"},
                "goal": {"type": "string"},
                "atlas_ids": {"type": "array", "items": {"type": "string"}},
                "atlases": {
                    "type": "array",
                    "items": obj(
                        {"atlas_id": {"type": "string"}, "version": {"type": "string"}, "digest": HASH}
                    ),
                    "description": "The Atlas versions the session uses for its whole life.",
                },
                "status": {"type": "string", "enum": ["active", "ended"]},
                "created_at": TIMESTAMP,
                "ended_at": nullable(TIMESTAMP),
                "end_reason": {
                    "type": ["string", "null"],
                    "description": "`completed`, `idle_timeout`, `max_lifetime`, or what `DELETE` was given.",
                },
                "trace_id": UUID,
                "metadata": {"type": "object"},
            }
        ),
        "SessionList": obj(
            {
                "sessions": {"type": "array", "items": ref("Session")},
                "total": {"type": "integer", "minimum": 0, "description": "Matching sessions, all pages."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
                "offset": {"type": "integer", "minimum": 0},
            }
        ),
        "ResolveRequest": {
            "allOf": [
                ref("CarpRequest"),
                {
                    "properties": {
                        "operation": {"const": "resolve"},
                        "context": {
                            "properties": {"max_context_tokens": {"type": "integer", "minimum": 0}},
                        },
                    }
                },
            ],
            "description": "A CARP request with `operation: resolve`.",
        },
        "ExecuteRequest": {
            "allOf": [
                ref("CarpRequest"),
                {"required": ["execution"], "properties": {"operation": {"const": "execute"}}},
            ],
            "description": "A CARP request with `operation: execute` and its `execution`.",
        },
        "ExecuteError": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {
                    "type": "string",
                    "description": "`denied`: ACTION_NOT_ALLOWED, POLICY_DENIED, RATE_LIMITED, BUDGET_EXCEEDED "
                    "or APPROVAL_REJECTED; `error`: HANDLER_ERROR, or the code reported to `complete`.",
                },
                "category": {"type": "string"},
                "message": {"type": "string"},
                "recoverable": {"type": "boolean"},
                "details": {"type": "object"},
            },
            "additionalProperties": False,
        },
        "ExecuteResponse": obj(
            {
                "carp_version": {"const": "1.0"},
                "execution_id": UUID,
                "session_id": UUID,
                "resolution_id": UUID,
                "action_id": {"type": "string"},
                "status": {
                    "type": "string",
                    "enum": ["success", "authorized", "error", "denied", "pending_approval"],
                    "description": "`success`/`authorized`/`error`: HTTP 200; `denied`: 403; "
                    "`pending_approval`: 202. `authorized`: no handler is registered, run the action "
                    "yourself and report with `POST /v1/executions/{execution_id}/complete`.",
                },
                "result": {"description": "The handler's (or `complete`'s) JSON result; null otherwise."},
                "error": nullable(ref("ExecuteError")),
                "approval_id": {"type": ["string", "null"]},
                "duration_ms": {"type": ["integer", "null"], "minimum": 0},
                "timestamp": TIMESTAMP,
                "trace_id": UUID,
                "idempotency_key": {"type": "string"},
                "replayed": {
                    "const": True,
                    "description": "Present on the answer to a reused idempotency key.",
                },
            },
            [
                "carp_version",
                "execution_id",
                "session_id",
                "resolution_id",
                "action_id",
                "status",
                "result",
                "error",
                "approval_id",
                "duration_ms",
                "timestamp",
                "trace_id",
            ],
        ),
        "Complete": obj(
            {
                "result": {"description": "The action's JSON result (success)."},
                "error": {
                    "description": "Failure: a message, or `{code?, message?}` with an UPPER_SNAKE code "
                    "(default `EXECUTION_FAILED`). Not together with a non-null `result` (400).",
                    "anyOf": [
                        {"type": "string"},
                        {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]{0,63}$"},
                                "message": {"type": "string"},
                            },
                        },
                        {"type": "null"},
                    ],
                },
            },
            [],
        ),
        "ValidationReport": obj(
            {
                "valid": {"type": "boolean"},
                "errors": {
                    "type": "array",
                    "items": obj({"pointer": {"type": "string"}, "message": {"type": "string"}}),
                    "description": "Every problem with its JSON pointer.",
                },
            }
        ),
        "Approval": obj(
            {
                "approval_id": {"type": "string"},
                "session_id": UUID,
                "agent_id": {"type": "string"},
                "resolution_id": UUID,
                "action_ids": {"type": "array", "items": {"type": "string"}},
                "status": {"type": "string", "enum": ["pending", "approved", "rejected", "expired"]},
                "created_at": TIMESTAMP,
                "expires_at": TIMESTAMP,
                "approver": {"type": ["string", "null"]},
                "note": {"type": ["string", "null"]},
                "decided_at": nullable(TIMESTAMP),
            }
        ),
        "ApprovalList": obj(
            {
                "approvals": {"type": "array", "items": ref("Approval")},
                "total": {"type": "integer", "minimum": 0},
            }
        ),
        "ApprovalDecision": obj(
            {
                "approver": {
                    **ID_TEXT,
                    "description": "Who decides; defaults to the caller. With auth on it must be the "
                    "authenticated caller (403 otherwise).",
                },
                "note": {"type": ["string", "null"], "maxLength": 10_000},
            },
            [],
        ),
        "TracePage": obj(
            {
                "session_id": {"type": "string"},
                "events": {"type": "array", "items": ref("TraceEvent")},
                "count": {"type": "integer", "minimum": 0},
            }
        ),
        "VerifyRequest": obj(
            {
                "expected_head": {
                    "type": ["string", "null"],
                    "minLength": 64,
                    "maxLength": 64,
                    "description": "The last `event_hash` recorded elsewhere: a chain that verifies but ends "
                    "anywhere else fails with `head_mismatch`.",
                }
            },
            [],
        ),
        "ChainVerification": obj(
            {
                "valid": {"type": "boolean"},
                "error": {
                    "enum": [
                        "hash_mismatch",
                        "invalid_genesis",
                        "chain_broken",
                        "sequence_gap",
                        "head_mismatch",
                        None,
                    ]
                },
                "error_at": {"type": ["integer", "null"], "minimum": 0, "description": "Index of the event."},
                "sequence": {"type": ["integer", "null"]},
                "event_count": {"type": "integer", "minimum": 0},
                "head_hash": {"type": ["string", "null"]},
            }
        ),
        "AtlasSummary": obj(atlas_summary),
        "AtlasDetail": obj(
            {
                **atlas_summary,
                "manifest": {"type": "object", "description": "The merged manifest as loaded."},
                "files": {"type": "array", "items": {"type": "string"}, "description": "Context file names."},
                "warnings": {"type": "array", "items": {"type": "string"}},
            }
        ),
        "AtlasList": obj({"atlases": {"type": "array", "items": ref("AtlasSummary")}}),
        "LoadAtlas": atlas_upload,
        "ReplayRequest": {
            "type": "object",
            "properties": {
                "session_id": {"type": "string", "description": "Replay this session's recorded trace."},
                "events": {
                    "type": "array",
                    "items": ref("TraceEvent"),
                    "minItems": 1,
                    "maxItems": 100_000,
                    "description": "One whole session's trace, as recorded: it must verify (SPEC 4.3) and "
                    "start with `session.started`.",
                },
                "atlas": {
                    "anyOf": [atlas_upload, {"type": "null"}],
                    "description": "The Atlas to replay against; absent or null: the original, by digest.",
                },
            },
            "oneOf": [{"required": ["session_id"]}, {"required": ["events"]}],
            "additionalProperties": False,
        },
        "ReplayDecision": obj(
            {
                "sequence": {"type": "integer", "minimum": 0, "description": "The event that carried it."},
                "operation": {"type": "string", "enum": ["resolve", "execute"]},
                "action_id": {
                    "type": ["string", "null"],
                    "description": "Null for a resolution as a whole (its decision type).",
                },
                "original": {"type": "string", "description": "E.g. `allow`, `deny`, `denied:RATE_LIMITED`."},
                "replayed": {"type": "string"},
                "status": {"type": "string", "enum": ["unchanged", "flipped"]},
                "change": {"type": ["string", "null"], "description": "`original→replayed` when flipped."},
                "resolution_id": {"type": ["string", "null"]},
                "execution_id": {"type": ["string", "null"]},
                "original_policy": {"type": ["string", "null"]},
                "replayed_policy": {"type": ["string", "null"]},
            }
        ),
        "ReplayReport": obj(
            {
                "session_id": {"type": "string"},
                "identical": {"type": "boolean", "description": "No decision flipped."},
                "changed": {"type": "integer", "minimum": 0},
                "unchanged": {"type": "integer", "minimum": 0},
                "atlas_digest_original": {"type": "string"},
                "atlas_digest_replayed": {"type": "string"},
                "atlases": {
                    "type": "array",
                    "items": obj(
                        {
                            "atlas_id": {"type": "string"},
                            "original": {"type": "string"},
                            "replayed": {"type": "string"},
                        }
                    ),
                },
                "notes": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "What could not be re-run exactly (hashed parameters, lost events).",
                },
                "decisions": {"type": "array", "items": ref("ReplayDecision")},
            },
            description="Per recorded decision, unchanged or flipped against the Atlas (SPEC 4.6).",
        ),
        "DiffRequest": obj({"a": trace_reference, "b": trace_reference}),
        "TraceDiff": obj(
            {
                "verdict": {"type": "string", "enum": ["identical", "semantically_equivalent", "different"]},
                "differences": {
                    "type": "array",
                    "items": obj(
                        {
                            "path": {"type": "string", "description": "JSON pointer into the event list."},
                            "type": {"type": "string", "enum": ["added", "removed", "value_changed"]},
                            "significance": {"type": "string", "enum": ["minor", "major"]},
                            "a": {},
                            "b": {},
                        }
                    ),
                },
            }
        ),
    }
