"""The operations of the OpenAPI document (:mod:`cra.server.openapi`), by (path, method), each written by hand
from its endpoint's code in ``cra.server.routes``: parameters with their ranges, the request body, and every
status the endpoint can answer with its body and headers.

The responses every authenticated operation shares (401, 429, 500, 503) are added by
:func:`cra.server.openapi.build_openapi` from the route's access; only what is particular to an operation is
written here.
"""

from __future__ import annotations

from ._openapi_schemas import ID_TEXT, JSON, NDJSON, Json, error_response, ref
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

OPENAPI_PATH = "/openapi.json"
"""Where the document is served (no authentication: it describes the API, it grants nothing)."""


def _query(name: str, schema: Json, description: str) -> Json:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path(name: str, description: str) -> Json:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


def _json_body(schema: Json, description: str, *, required: bool = True) -> Json:
    return {"description": description, "required": required, "content": {JSON: {"schema": schema}}}


def _ok(description: str, schema: Json | None = None, *, headers: Json | None = None) -> Json:
    response: Json = {"description": description}
    if schema is not None:
        response["content"] = {JSON: {"schema": schema}}
    if headers:
        response["headers"] = headers
    return response


def shared_response(name: str) -> Json:
    """A reference to the response component ``name`` (``Unauthorized``, ``PayloadTooLarge``, ...)."""
    return {"$ref": f"#/components/responses/{name}"}


_SESSION_ID = _path("session_id", "A session id.")
_NOT_FOUND_SESSION = error_response("`SESSION_NOT_FOUND`.")
_NOT_OWNER = "`FORBIDDEN`: the session belongs to another agent."
_LOCATION = {"Location": {"description": "The new resource.", "required": True, "schema": {"type": "string"}}}


def operations() -> dict[tuple[str, str], Json]:
    """Every operation, by (path, method), written from the endpoint's code."""
    session_query = _query("session_id", ID_TEXT, "Only this session's.")
    decide_errors = {
        "400": error_response("`INVALID_REQUEST`: not `{approver?, note?}`, or a bad approver or note."),
        "403": error_response(
            "`FORBIDDEN`: needs the admin scope, or `approver` is not the authenticated caller."
        ),
        "404": error_response("`APPROVAL_NOT_FOUND`."),
        "409": error_response("`APPROVAL_ALREADY_DECIDED`, or `SESSION_ENDED`."),
        "410": error_response("`APPROVAL_EXPIRED`: it expired with its resolution."),
        "413": shared_response("PayloadTooLarge"),
    }
    verify_ok = {"200": _ok("The verification result (SPEC 4.3).", ref("ChainVerification"))}
    return {
        ("/v1/health", "get"): {
            "operationId": "health",
            "summary": "Liveness and readiness",
            "description": "Storage and trace-buffer checks; no authentication (load balancers call it).",
            "responses": {
                "200": _ok("Storage works (`status` is `ok` or `degraded`).", ref("Health")),
                "503": {
                    "description": "Storage fails (`status: error`), or the checks did not finish within "
                    "`request_timeout_seconds` (an error body).",
                    "content": {JSON: {"schema": {"oneOf": [ref("Health"), ref("Error")]}}},
                },
            },
        },
        ("/v1/sessions", "post"): {
            "operationId": "create_session",
            "summary": "Open a session",
            "requestBody": _json_body(ref("CreateSession"), "Who, for what, over which Atlases."),
            "responses": {
                "201": _ok("The new session.", ref("Session"), headers=_LOCATION),
                "400": error_response("`INVALID_REQUEST` (unknown fields, bad values) or `UNKNOWN_ATLAS`."),
                "403": error_response("`FORBIDDEN`: an agent credential named another agent."),
                "413": shared_response("PayloadTooLarge"),
            },
        },
        ("/v1/sessions", "get"): {
            "operationId": "list_sessions",
            "summary": "List sessions",
            "description": "Sessions the caller may see, oldest first; an agent sees its own only.",
            "parameters": [
                _query(
                    "status", {"type": "string", "enum": ["active", "ended"]}, "Only sessions in this state."
                ),
                _query("agent_id", ID_TEXT, "Only this agent's (an agent credential may name only itself)."),
                _query(
                    "limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "Page size."
                ),
                _query("offset", {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0}, "Skip."),
            ],
            "responses": {
                "200": _ok("A page of sessions.", ref("SessionList")),
                "400": error_response("`INVALID_REQUEST`: a query parameter out of range (details name it)."),
                "403": error_response("`FORBIDDEN`: an agent credential asked for another agent's sessions."),
            },
        },
        ("/v1/sessions/{session_id}", "get"): {
            "operationId": "get_session",
            "summary": "Read a session",
            "parameters": [_SESSION_ID],
            "responses": {
                "200": _ok("The session.", ref("Session")),
                "403": error_response(_NOT_OWNER),
                "404": _NOT_FOUND_SESSION,
            },
        },
        ("/v1/sessions/{session_id}", "delete"): {
            "operationId": "end_session",
            "summary": "End a session",
            "description": "Records `session.ended`; executions still awaiting `complete` are recorded as "
            "failed first. The session refuses every later request (409 `SESSION_ENDED`).",
            "parameters": [
                _SESSION_ID,
                _query(
                    "reason",
                    {"type": "string", "minLength": 1, "maxLength": 64, "default": "completed"},
                    "Recorded in `session.ended`.",
                ),
            ],
            "responses": {
                "204": _ok("Ended."),
                "400": error_response("`INVALID_REQUEST`: `reason` is not 1..64 characters."),
                "403": error_response(_NOT_OWNER),
                "404": _NOT_FOUND_SESSION,
                "409": error_response("`SESSION_ENDED`: it had already ended."),
            },
        },
        ("/v1/resolve", "post"): {
            "operationId": "resolve",
            "summary": "Resolve a CARP request",
            "description": "Which actions the agent may take, under which constraints, with which context "
            "(SPEC 3.1, 3.2). Checks, in order: the schema, the session (exists, active, belongs to "
            "`requester.agent_id`), `request_id` unused in the session, the timestamp within the allowed "
            "clock skew.",
            "requestBody": _json_body(ref("ResolveRequest"), "The CARP request."),
            "responses": {
                "200": _ok("The resolution.", ref("CarpResolution")),
                "400": error_response(
                    "`INVALID_REQUEST` (every schema error in `details.errors`), `CLOCK_SKEW`, "
                    "`UNKNOWN_CAPABILITY` or `UNKNOWN_ATLAS`."
                ),
                "403": error_response(
                    "`FORBIDDEN`: `requester.agent_id` is not the session's (or the caller's) agent."
                ),
                "404": _NOT_FOUND_SESSION,
                "409": error_response("`DUPLICATE_REQUEST` or `SESSION_ENDED`."),
                "413": shared_response("PayloadTooLarge"),
            },
        },
        ("/v1/execute", "post"): {
            "operationId": "execute",
            "summary": "Execute an action under a resolution",
            "description": "Checks (SPEC 3.3): the request and session as for resolve, then the resolution "
            "(404, 410), that the action is allowed by it, its parameters (400 `INVALID_PARAMETERS`), and "
            "the policies again. Governance decisions are execute responses, not errors. Answered only once "
            "the `action.*` events are durable.",
            "requestBody": _json_body(ref("ExecuteRequest"), "The CARP request with its `execution`."),
            "responses": {
                "200": _ok("`success`, `authorized` or `error`.", ref("ExecuteResponse")),
                "202": _ok("`pending_approval`: approve `approval_id` first.", ref("ExecuteResponse")),
                "400": error_response("`INVALID_REQUEST`, `INVALID_PARAMETERS` or `CLOCK_SKEW`."),
                "403": {
                    "description": "A `denied` execute response (a policy refused: `error.code` says which), "
                    "or an error body with `FORBIDDEN` (another agent's session).",
                    "content": {JSON: {"schema": {"oneOf": [ref("ExecuteResponse"), ref("Error")]}}},
                },
                "404": error_response("`SESSION_NOT_FOUND` or `RESOLUTION_NOT_FOUND`."),
                "409": error_response("`DUPLICATE_REQUEST`, `SESSION_ENDED` or `IDEMPOTENCY_CONFLICT`."),
                "410": error_response("`RESOLUTION_EXPIRED`."),
                "413": shared_response("PayloadTooLarge"),
            },
        },
        ("/v1/executions/{execution_id}/complete", "post"): {
            "operationId": "complete",
            "summary": "Report the outcome of an authorized execution",
            "parameters": [_path("execution_id", "From the `authorized` execute response.")],
            "requestBody": _json_body(ref("Complete"), "`{result}` or `{error}`."),
            "responses": {
                "200": _ok("The final execute response (`success` or `error`).", ref("ExecuteResponse")),
                "400": error_response(
                    "`INVALID_REQUEST`: unknown fields, both result and error, a bad error."
                ),
                "403": error_response("`FORBIDDEN`: another agent's execution."),
                "404": error_response("`EXECUTION_NOT_FOUND`."),
                "408": error_response(
                    "`COMPLETION_TIMEOUT`: its resolution expired first (recorded as failed)."
                ),
                "409": error_response("`EXECUTION_ALREADY_COMPLETED` or `SESSION_ENDED`."),
                "413": shared_response("PayloadTooLarge"),
            },
        },
        ("/v1/validate", "post"): {
            "operationId": "validate",
            "summary": "Validate a CARP request without side effects",
            "description": "Any JSON value is checked as a CARP request (SPEC 3.4); with `execution` whose "
            "resolution is known, its parameters too. Always 200 for JSON.",
            "requestBody": _json_body({}, "A CARP request (any JSON value is reported on)."),
            "responses": {
                "200": _ok("`valid` and every error with its JSON pointer.", ref("ValidationReport")),
                "400": error_response("`INVALID_REQUEST`: the body is empty or not JSON."),
                "413": shared_response("PayloadTooLarge"),
            },
        },
        ("/v1/approvals", "get"): {
            "operationId": "list_approvals",
            "summary": "List approvals",
            "description": "Approvals the caller may see (an agent: its own).",
            "parameters": [
                session_query,
                _query(
                    "status",
                    {
                        "type": "string",
                        "enum": ["pending", "approved", "rejected", "expired", "all"],
                        "default": "pending",
                    },
                    "Only approvals in this state.",
                ),
            ],
            "responses": {
                "200": _ok("The approvals.", ref("ApprovalList")),
                "400": error_response("`INVALID_REQUEST`: a query parameter out of range."),
            },
        },
        ("/v1/approvals/{approval_id}", "get"): {
            "operationId": "get_approval",
            "summary": "Read an approval",
            "parameters": [_path("approval_id", "From a resolution's `decision.approval_id`.")],
            "responses": {
                "200": _ok("The approval.", ref("Approval")),
                "404": error_response("`APPROVAL_NOT_FOUND` (also for another agent's)."),
            },
        },
        ("/v1/approvals/{approval_id}/approve", "post"): {
            "operationId": "approve",
            "summary": "Grant an approval (admin)",
            "description": "Each covered action may then run once on its resolution.",
            "parameters": [_path("approval_id", "The approval.")],
            "requestBody": _json_body(ref("ApprovalDecision"), "Optional.", required=False),
            "responses": {"200": _ok("The approval, now `approved`.", ref("Approval")), **decide_errors},
        },
        ("/v1/approvals/{approval_id}/reject", "post"): {
            "operationId": "reject",
            "summary": "Reject an approval (admin)",
            "description": "Executing a covered action is then `denied` with `APPROVAL_REJECTED`.",
            "parameters": [_path("approval_id", "The approval.")],
            "requestBody": _json_body(ref("ApprovalDecision"), "Optional.", required=False),
            "responses": {"200": _ok("The approval, now `rejected`.", ref("Approval")), **decide_errors},
        },
        ("/v1/traces/{session_id}", "get"): {
            "operationId": "get_trace",
            "summary": "Read a session's trace",
            "description": "Events in sequence order, as JSON, or as NDJSON (one event per line, the exact "
            f"stored bytes) with `Accept: {NDJSON}`.",
            "parameters": [
                _SESSION_ID,
                _query("event_type", {"type": "string", "minLength": 1, "maxLength": 128}, "Only this type."),
                _query(
                    "since_sequence",
                    {"type": "integer", "minimum": -1, "maximum": 2**62},
                    "Only events with a greater sequence.",
                ),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 100_000}, "At most this many."),
            ],
            "responses": {
                "200": {
                    "description": "The events.",
                    "content": {
                        JSON: {"schema": ref("TracePage")},
                        NDJSON: {
                            "schema": {
                                "type": "string",
                                "description": "One TraceEvent JSON object per line.",
                            },
                            "x-item-schema": ref("TraceEvent"),
                        },
                    },
                },
                "400": error_response("`INVALID_REQUEST`: a query parameter out of range."),
                "403": error_response(_NOT_OWNER),
                "404": _NOT_FOUND_SESSION,
            },
        },
        ("/v1/traces/{session_id}/verify", "get"): {
            "operationId": "verify_trace",
            "summary": "Verify a session's hash chain",
            "description": "When this server wrote the session, the chain must also end at the head it wrote.",
            "parameters": [_SESSION_ID],
            "responses": {
                **verify_ok,
                "403": error_response(_NOT_OWNER),
                "404": _NOT_FOUND_SESSION,
            },
        },
        ("/v1/traces/{session_id}/verify", "post"): {
            "operationId": "verify_trace_against_head",
            "summary": "Verify a session's hash chain against a head recorded elsewhere",
            "description": "With `expected_head`, a cut-off or extended tail is caught as `head_mismatch`.",
            "parameters": [_SESSION_ID],
            "requestBody": _json_body(ref("VerifyRequest"), "Optional.", required=False),
            "responses": {
                **verify_ok,
                "400": error_response("`INVALID_REQUEST`: not `{expected_head?}`, or not 64 characters."),
                "403": error_response(_NOT_OWNER),
                "404": _NOT_FOUND_SESSION,
                "413": shared_response("PayloadTooLarge"),
            },
        },
        ("/v1/atlases", "get"): {
            "operationId": "list_atlases",
            "summary": "List loaded Atlases",
            "description": "The versions new sessions get.",
            "responses": {"200": _ok("The loaded Atlases, in load order.", ref("AtlasList"))},
        },
        ("/v1/atlases", "post"): {
            "operationId": "load_atlas",
            "summary": "Load an Atlas (admin)",
            "description": "Another version of a loaded id replaces it for new sessions; existing sessions "
            "keep theirs.",
            "requestBody": _json_body(ref("LoadAtlas"), "`{manifest, files?}` or a bare manifest."),
            "responses": {
                "201": _ok("Loaded.", ref("AtlasSummary"), headers=_LOCATION),
                "400": error_response(
                    "`INVALID_ATLAS` (every problem with its JSON pointer) or `INVALID_REQUEST`."
                ),
                "403": error_response("`FORBIDDEN`: needs the admin scope."),
                "409": error_response("`ATLAS_ALREADY_LOADED`: this id and version are loaded."),
                "413": shared_response("PayloadTooLarge"),
            },
        },
        ("/v1/atlases/{atlas_id}", "get"): {
            "operationId": "get_atlas",
            "summary": "Read a loaded Atlas with its manifest",
            "parameters": [_path("atlas_id", "A loaded Atlas id.")],
            "responses": {
                "200": _ok("The Atlas.", ref("AtlasDetail")),
                "404": error_response("`ATLAS_NOT_FOUND`."),
            },
        },
        ("/v1/atlases/{atlas_id}", "delete"): {
            "operationId": "unload_atlas",
            "summary": "Unload an Atlas (admin)",
            "description": "New sessions no longer get it; sessions that use it keep it.",
            "parameters": [_path("atlas_id", "A loaded Atlas id.")],
            "responses": {
                "204": _ok("Unloaded."),
                "403": error_response("`FORBIDDEN`: needs the admin scope."),
                "404": error_response("`ATLAS_NOT_FOUND`."),
            },
        },
        ("/v1/replay", "post"): {
            "operationId": "replay",
            "summary": "Replay a trace's decisions against an Atlas",
            "description": "Without `atlas` every decision must come out unchanged (the determinism check); "
            "with a proposed version, each flipped decision is listed (the policy impact report, SPEC 4.6).",
            "requestBody": _json_body(ref("ReplayRequest"), "`{session_id | events, atlas?}`."),
            "responses": {
                "200": _ok("The replay report.", ref("ReplayReport")),
                "400": error_response("`INVALID_REQUEST` (bad body or events) or `INVALID_ATLAS`."),
                "403": error_response(_NOT_OWNER),
                "404": _NOT_FOUND_SESSION,
                "413": shared_response("PayloadTooLarge"),
            },
        },
        ("/v1/diff", "post"): {
            "operationId": "diff",
            "summary": "Compare two traces",
            "description": "Event by event, ignoring ids, timestamps and hashes (SPEC 4.6).",
            "requestBody": _json_body(ref("DiffRequest"), "Each side a session id or a list of events."),
            "responses": {
                "200": _ok("The verdict and every difference.", ref("TraceDiff")),
                "400": error_response(
                    "`INVALID_REQUEST`: not `{a, b}`, or a side is not a list of trace events."
                ),
                "403": error_response(_NOT_OWNER),
                "404": _NOT_FOUND_SESSION,
                "413": shared_response("PayloadTooLarge"),
            },
        },
        ("/metrics", "get"): {
            "operationId": "metrics",
            "summary": "Prometheus metrics (admin)",
            "description": "Requests and latencies by route, decisions, trace buffer stats, storage errors.",
            "responses": {
                "200": {
                    "description": "The Prometheus text exposition format.",
                    "content": {METRICS_CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}},
                },
                "403": error_response("`FORBIDDEN`: needs the admin scope."),
            },
        },
        (OPENAPI_PATH, "get"): {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {"200": _ok("The OpenAPI 3.1 document.", {"type": "object"})},
        },
    }
