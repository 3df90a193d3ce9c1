"""The OpenAPI document at ``/openapi.json``: valid OpenAPI 3.1, exactly the server's routes, and a
schemathesis run against the in-process app that finds nothing.

The run uses every default check; ``positive_data_acceptance`` is wrapped to let through precisely the 400s
no schema can foresee (``SEMANTIC_REFUSALS``) and nothing else. The three server bugs an earlier run found
(an incomplete ``Allow`` header, integral-float sequences refused, non-text Atlas files accepted) are fixed
and each has a test below. Fuzzing rarely gets past made-up ids, so the happy paths are walked too and every
real response is checked against the document.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import hypothesis
import jsonschema_rs
import pytest
import schemathesis
from schemathesis.core.transport import Response
from schemathesis.generation.case import Case
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    positive_data_acceptance,
)
from starlette.applications import Starlette

import cra
from cra.errors import CRAError
from cra.server.app import ROUTES, create_app
from cra.server.auth import ApiKeyStore, Authenticator
from cra.server.config import ServerConfig
from cra.server.openapi import build_openapi

EXAMPLE_ATLAS = Path(cra.__file__).parent / "cli" / "example_atlas"


# --- the document -------------------------------------------------------------------------------------------


def test_document_is_valid_openapi_3_1() -> None:
    validator = pytest.importorskip(
        "openapi_spec_validator", reason="in the dev extra: openapi-spec-validator"
    )
    document = build_openapi()
    # Checks the structure and every schema in it, and more than the meta-schema can (path parameters
    # declared, operation ids unique, references resolvable).
    errors = [
        f"{list(e.absolute_path)}: {e.message}"
        for e in validator.OpenAPIV31SpecValidator(document).iter_errors()
    ]
    assert errors == []


def test_document_matches_the_openapi_3_1_meta_schema() -> None:
    # The official 3.1 meta-schema as schemathesis ships it (offline, and a second implementation).
    import jsonschema_rs
    from schemathesis.specs.openapi.definitions import OPENAPI_31

    document = build_openapi()
    assert [e.message for e in jsonschema_rs.validator_for(OPENAPI_31).iter_errors(document)] == []
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "CRA"
    assert document["info"]["version"] == cra.__version__


def test_document_routes_match_route_table() -> None:
    document = build_openapi()
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    routed = {(path, method) for path, methods, _fn, _access in ROUTES for method in methods}
    assert documented == routed | {("/openapi.json", "GET")}


def test_a_route_without_a_description_is_refused() -> None:
    async def new_endpoint(*_: Any) -> Any:
        raise AssertionError("never called")

    with pytest.raises(LookupError, match=r"routes without a description: \['GET /v1/new'\]"):
        build_openapi([*ROUTES, ("/v1/new", ("GET",), new_endpoint, "any")])


def test_a_description_without_a_route_is_refused() -> None:
    with pytest.raises(LookupError, match=r"descriptions without a route: \['GET /metrics'\]"):
        build_openapi([r for r in ROUTES if r[0] != "/metrics"])


def test_security_follows_route_access() -> None:
    document = build_openapi()
    assert document["security"] == [{"ApiKeyAuth": []}, {"BearerAuth": []}]
    assert document["paths"]["/v1/health"]["get"]["security"] == []
    assert document["paths"]["/openapi.json"]["get"]["security"] == []
    for path, methods, _fn, access in ROUTES:
        for method in methods:
            operation = document["paths"][path][method.lower()]
            if access == "public":
                assert "401" not in operation["responses"]
            else:
                assert "security" not in operation, f"{method} {path} inherits the document's security"
                assert {"401", "429", "503"} <= set(operation["responses"]), f"{method} {path}"
                assert operation["x-cra-access"] == access


def test_every_documented_error_code_exists() -> None:
    codes = build_openapi()["components"]["schemas"]["ErrorCode"]["enum"]
    assert {"INVALID_REQUEST", "METHOD_NOT_ALLOWED", "RATE_LIMITED", "SESSION_NOT_FOUND"} <= set(codes)
    assert codes == sorted(set(codes))
    assert CRAError.code in codes


def test_rate_limit_documents_retry_after() -> None:
    responses = build_openapi()["components"]["responses"]
    assert responses["TooManyRequests"]["headers"]["Retry-After"]["required"] is True


def test_trace_offers_ndjson() -> None:
    content = build_openapi()["paths"]["/v1/traces/{session_id}"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"application/json", "application/x-ndjson"}


def test_websocket_stream_is_described() -> None:
    stream = build_openapi()["x-websocket"]["/v1/traces/stream"]
    assert [p["name"] for p in stream["parameters"]] == ["session_id", "since_sequence"]
    assert stream["message"] == {"$ref": "#/components/schemas/TraceEvent"}
    assert {"1000", "1013", "4401", "4404"} <= set(stream["close_codes"])


def test_packaged_schemas_are_embedded_without_dangling_references() -> None:
    document = build_openapi()
    schemas = document["components"]["schemas"]
    text = json.dumps(document)
    assert "#/$defs/" not in text
    assert '"$id"' not in text
    for name in ("CarpRequest", "CarpResolution", "TraceEvent", "AtlasManifest"):
        assert name in schemas
    assert schemas["CarpRequest"]["properties"]["task"] == {"$ref": "#/components/schemas/CarpRequestTask"}


# --- the served document ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def admin_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ApiKeyStore]:
    store = ApiKeyStore(tmp_path_factory.mktemp("keys") / "keys.json")
    key, _record = store.create("admin", name="openapi-tests")
    return key, store


class _AppUnderTest:
    """The ASGI app the schema's requests go to: the module fixture's app, bound when the fixture builds it.

    The schema is loaded when the module is imported (schemathesis's lazy fixture loader does not work with
    pytest 9), before any app exists; its own requests and the probes its checks send all go through the
    schema's app, so the schema gets this stand-in.
    """

    def __init__(self) -> None:
        self.app: Starlette | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.app is not None, "the app fixture binds the app before any request"
        await self.app(scope, receive, send)


APP = _AppUnderTest()


@pytest.fixture(scope="module")
def app(admin_key: tuple[str, ApiKeyStore]) -> Iterator[Starlette]:
    runtime = cra.Runtime()
    runtime.load_atlas(str(EXAMPLE_ATLAS))
    runtime.create_session("support-bot", "answer ticket T-1001")
    try:
        APP.app = create_app(runtime, ServerConfig(), Authenticator(api_keys=admin_key[1]), timers=False)
        yield APP.app
    finally:
        shutdown_lifespans()
        APP.app = None
        runtime.close()


def _request(app: Starlette, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request to ``app`` in process (httpx's ASGI transport; Starlette's TestClient warns on httpx)."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.request(method, path, **kwargs)

    return anyio.run(send)


def test_served_document_is_the_built_one(app: Starlette) -> None:
    response = _request(app, "GET", "/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == build_openapi()


# --- the schemathesis run -----------------------------------------------------------------------------------

AnyCase = Case[Any]

# 400s that no JSON Schema can foresee: they depend on the server's state (which Atlases are loaded, the
# clock) or on rules across a document (an Atlas's cross-references, a trace's hash chain), and SPEC 5 makes
# them validation errors. The document lists them; schema-valid data may meet them, and nothing else.
SEMANTIC_REFUSALS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "POST /v1/sessions": lambda e: e.get("code") == "UNKNOWN_ATLAS",
    "POST /v1/resolve": lambda e: e.get("code") in {"CLOCK_SKEW", "UNKNOWN_ATLAS", "UNKNOWN_CAPABILITY"},
    "POST /v1/execute": lambda e: e.get("code") in {"CLOCK_SKEW", "INVALID_PARAMETERS"},
    "POST /v1/atlases": lambda e: e.get("code") == "INVALID_ATLAS",
    "POST /v1/replay": lambda e: (
        e.get("code") in {"INVALID_ATLAS", "UNKNOWN_ATLAS"}
        or (e.get("code") == "INVALID_REQUEST" and str(e.get("message", "")).startswith("the trace "))
    ),
}


def _error_of(response: Response) -> dict[str, Any]:
    """The SPEC 5 ``error`` object of a response, or {}."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _body(case: AnyCase) -> dict[str, Any]:
    return case.body if isinstance(case.body, dict) else {}


def positive_data_acceptance_with_semantic_refusals(
    ctx: Any, response: Response, case: AnyCase
) -> bool | None:
    """schemathesis's ``positive_data_acceptance``, letting through only SEMANTIC_REFUSALS."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        error = _error_of(response)
        accepted = SEMANTIC_REFUSALS.get(case.operation.label)
        if response.status_code == 400 and accepted is not None and accepted(error):
            return None
        raise


CONFIG = schemathesis.Config.from_dict(
    {
        # Reproducible: a fixed seed, derandomized generation and no example database carried between runs.
        "seed": 20_240_601,
        "generation": {
            "max-examples": 20,
            "deterministic": True,
            "database": "none",
            # The admin key is sent with every request (below); generated X-API-Key values would replace it
            # and turn most requests into 401s that test nothing past authentication.
            "with-security-parameters": False,
        },
        "operations": [
            # An Atlas manifest is the largest body: its coverage cases alone take seconds, so these two
            # fuzz less to keep the whole run under a minute.
            {"include-name": ["POST /v1/atlases", "POST /v1/replay"], "generation": {"max-examples": 8}}
        ],
    }
)
schema = schemathesis.openapi.from_dict(build_openapi(), config=CONFIG)
schema.app = APP


@schema.parametrize()
@hypothesis.settings(deadline=None)
def test_schemathesis_finds_nothing(
    case: AnyCase, app: Starlette, admin_key: tuple[str, ApiKeyStore]
) -> None:
    # Every default check runs; positive_data_acceptance is swapped for the wrapper above, which differs only
    # in the semantic refusals it lets through. ignored_auth still probes each operation without and with a
    # wrong key.
    case.call_and_validate(
        headers={"X-API-Key": admin_key[0]},
        excluded_checks=[positive_data_acceptance],
        additional_checks=[positive_data_acceptance_with_semantic_refusals],
    )


def test_allow_header_names_every_method_of_the_path(
    app: Starlette, admin_key: tuple[str, ApiKeyStore]
) -> None:
    response = _request(app, "OPTIONS", "/v1/sessions", headers={"X-API-Key": admin_key[0]})
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "POST"}


def test_inline_event_with_integral_float_sequence_is_accepted(
    app: Starlette, admin_key: tuple[str, ApiKeyStore]
) -> None:
    runtime: cra.Runtime = app.state.api.runtime
    session = runtime.create_session("support-bot", "a trace to compare")
    event = runtime.get_trace(session.session_id)[0].to_dict()
    as_float = {**event, "sequence": float(event["sequence"])}
    body = {"a": [event], "b": [as_float]}
    response = _request(app, "POST", "/v1/diff", json=body, headers={"X-API-Key": admin_key[0]})
    assert response.status_code == 200, response.text


def test_atlas_file_that_is_not_text_is_refused(app: Starlette, admin_key: tuple[str, ApiKeyStore]) -> None:
    manifest = {
        "atlas_version": "1.0",
        "atlas_id": "org.example.not-text",
        "version": "1.0.0",
        "name": "Not text",
        "description": "A file entry that is not text.",
    }
    body = {"manifest": manifest, "files": {"unused.md": {}}}
    response = _request(app, "POST", "/v1/atlases", json=body, headers={"X-API-Key": admin_key[0]})
    assert response.status_code == 400, response.text


# --- real responses against the document --------------------------------------------------------------------
# Fuzzing rarely gets past a 404 with ids it made up; these walk the API's happy paths (and 401, 429) and check
# every response against what the document says for its operation, status and media type.


def _documented(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """``node``, or the component its ``$ref`` names."""
    while "$ref" in node:
        _, *parts = node["$ref"].split("/")
        node = document
        for part in parts:
            node = node[part]
    return node


def _check(document: dict[str, Any], path: str, response: httpx.Response) -> None:
    """Fail unless ``response`` is what the document says ``path`` answers with its status."""
    method = response.request.method.lower()
    label = f"{method.upper()} {path} -> {response.status_code}"
    entry = document["paths"][path][method]["responses"].get(str(response.status_code))
    assert entry is not None, f"{label} is not documented: {response.text}"
    entry = _documented(document, entry)
    for name, header in entry.get("headers", {}).items():
        assert not header.get("required") or name in response.headers, f"{label} lacks {name}"
    if "content" not in entry:
        assert response.content == b"", label
        return
    media_type = response.headers["content-type"].split(";")[0]
    assert media_type in entry["content"], f"{label}: {media_type} is not documented"
    content = entry["content"][media_type]
    if media_type == "application/x-ndjson":
        values = [json.loads(line) for line in response.text.splitlines()]
        schema = content["x-item-schema"]
    elif media_type == "application/json":
        values, schema = [response.json()], content["schema"]
    else:
        assert content["schema"] == {"type": "string"}, label
        return
    validator = jsonschema_rs.Draft202012Validator(
        {**schema, "components": document["components"]}, validate_formats=True
    )
    for value in values:
        errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(value)]
        assert errors == [], f"{label}: {errors}"


def _carp(session_id: str, operation: str, **fields: Any) -> dict[str, Any]:
    return {
        "carp_version": "1.0",
        "request_id": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat(),
        "operation": operation,
        "requester": {"agent_id": "support-bot", "session_id": session_id},
        "task": {"goal": "answer ticket T-1001"},
        **fields,
    }


def test_happy_paths_answer_as_documented(app: Starlette, admin_key: tuple[str, ApiKeyStore]) -> None:
    document = build_openapi()
    auth = {"X-API-Key": admin_key[0]}

    def call(method: str, path: str, template: str | None = None, **kwargs: Any) -> httpx.Response:
        response = _request(app, method, path, headers={**auth, **kwargs.pop("headers", {})}, **kwargs)
        _check(document, template or path, response)
        return response

    session = call("POST", "/v1/sessions", json={"agent_id": "support-bot", "goal": "answer T-1001"}).json()
    sid = session["session_id"]
    call("GET", "/v1/sessions", params={"status": "active", "limit": 5})
    call("GET", f"/v1/sessions/{sid}", "/v1/sessions/{session_id}")

    # allowed (authorized, then completed), denied, and pending approval (then approved)
    resolution = call("POST", "/v1/resolve", json=_carp(sid, "resolve")).json()
    assert resolution["decision"]["type"] == "requires_approval"  # refund.issue is high risk

    def execute(action_id: str, parameters: dict[str, Any]) -> httpx.Response:
        execution = {
            "resolution_id": resolution["resolution_id"],
            "action_id": action_id,
            "parameters": parameters,
        }
        return call("POST", "/v1/execute", json=_carp(sid, "execute", execution=execution))

    authorized = execute("ticket.read", {"ticket_id": "T-1001"}).json()
    assert authorized["status"] == "authorized"
    complete = f"/v1/executions/{authorized['execution_id']}/complete"
    call("POST", complete, "/v1/executions/{execution_id}/complete", json={"result": {"subject": "Hi"}})
    assert execute("customer.delete", {"customer_id": "C-1", "confirm": True}).status_code == 403
    refund = {
        "ticket_id": "T-1",
        "order_id": "O-1",
        "amount": 5,
        "currency": "EUR",
        "reason": "damaged parcel",
    }
    assert execute("refund.issue", refund).status_code == 202
    approval_id = resolution["decision"]["approval_id"]
    call("GET", "/v1/approvals", params={"session_id": sid, "status": "all"})
    call("GET", f"/v1/approvals/{approval_id}", "/v1/approvals/{approval_id}")
    decision = {"approver": "openapi-tests", "note": "ok"}
    approve = f"/v1/approvals/{approval_id}/approve"
    assert (
        call("POST", approve, "/v1/approvals/{approval_id}/approve", json=decision).json()["status"]
        == "approved"
    )
    again = call("POST", approve, "/v1/approvals/{approval_id}/approve", json=decision)
    assert again.json()["error"]["code"] == "APPROVAL_ALREADY_DECIDED"
    call("POST", "/v1/validate", json=_carp(sid, "validate"))

    trace = f"/v1/traces/{sid}"
    call("GET", trace, "/v1/traces/{session_id}", params={"limit": 100})
    ndjson = call("GET", trace, "/v1/traces/{session_id}", headers={"Accept": "application/x-ndjson"})
    assert ndjson.headers["content-type"].startswith("application/x-ndjson")
    call("GET", f"{trace}/verify", "/v1/traces/{session_id}/verify")
    call("POST", f"{trace}/verify", "/v1/traces/{session_id}/verify", json={"expected_head": "0" * 64})
    call("POST", "/v1/diff", json={"a": sid, "b": sid})
    call("POST", "/v1/replay", json={"session_id": sid})

    call("GET", "/v1/atlases")
    call("GET", "/v1/atlases/com.example.support", "/v1/atlases/{atlas_id}")
    call("GET", "/v1/health")
    call("GET", "/metrics")
    call("DELETE", f"/v1/sessions/{sid}", "/v1/sessions/{session_id}")
    ended = call("DELETE", f"/v1/sessions/{sid}", "/v1/sessions/{session_id}")
    assert ended.json()["error"]["code"] == "SESSION_ENDED"

    _check(document, "/v1/sessions", _request(app, "GET", "/v1/sessions"))  # 401, with WWW-Authenticate


def test_rate_limit_answers_as_documented(admin_key: tuple[str, ApiKeyStore]) -> None:
    runtime = cra.Runtime()
    try:
        config = ServerConfig(rate_limit_per_second=0.001, rate_limit_burst=1)
        limited = create_app(runtime, config, Authenticator(api_keys=admin_key[1]), timers=False)
        statuses = []
        for _ in range(2):
            response = _request(limited, "GET", "/v1/atlases", headers={"X-API-Key": admin_key[0]})
            _check(build_openapi(), "/v1/atlases", response)
            statuses.append(response.status_code)
        assert statuses == [200, 429]
        assert int(response.headers["Retry-After"]) >= 1
    finally:
        runtime.close()
