"""A Python client for ``cra serve`` with the embedded runtime's method names and return types::

    from cra.client import Client

    with Client("http://127.0.0.1:8420", api_key="cra_...") as cra:
        session = cra.create_session("support-bot", "Answer ticket T-1001")
        resolution = cra.resolve(session.session_id, agent_id="support-bot")
        response = cra.execute(session.session_id, resolution.resolution_id, "ticket.read", {"id": "T-1"},
                               agent_id="support-bot")

An error body from the server is raised as the matching ``cra.CRAError`` subclass (same code, message and
details as embedded). Execute outcomes that are governance decisions (``denied``, ``pending_approval``) are
responses, exactly as embedded. Needs the server extra (``pip install 'cra[server]'``: httpx).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import httpx
import orjson

from ._ids import uuid7_ids
from ._requests import ValidationReport
from .clock import SystemClock, format_timestamp
from .errors import CRAError, error_class
from .execution import ExecuteResponse
from .resolution import Resolution
from .session import Approval, Session
from .trace.event import TraceEvent
from .trace.verify import ChainVerification

__all__ = ["DEFAULT_URL", "Client", "error_from_body"]

DEFAULT_URL = "http://127.0.0.1:8420"


def error_from_body(status: int, body: bytes) -> CRAError:
    """The ``CRAError`` a server answered with (its SPEC 5 body), or a generic one naming the status."""
    try:
        error = orjson.loads(body)["error"]
        return error_class(str(error["code"]))(str(error["message"]), details=error.get("details"))
    except (ValueError, KeyError, TypeError):
        return CRAError(f"the server answered HTTP {status} without a CRA error body")


def _raise_for(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise error_from_body(response.status_code, response.content)


class Client:
    """A synchronous client. ``api_key`` is sent as ``X-API-Key``, ``token`` as a JWT bearer token;
    ``transport`` is an httpx transport (for tests: ``httpx.ASGITransport`` is async, so use a live server
    or ``httpx.MockTransport``)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json"}
        if api_key:
            headers["X-API-Key"] = api_key
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # Loading the CA bundle costs ~0.1 s; plain http:// never uses it (loopback, or behind a TLS proxy).
        verify = base_url.startswith("https:")
        self.http = httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport, verify=verify
        )
        self._clock = SystemClock()

    # --- plumbing -------------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; raises the CRA error the server answered with (4xx/5xx with an error body)."""
        response = self.http.request(method, path, **kwargs)
        _raise_for(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def _carp(self, operation: str, session_id: str, agent_id: str, **fields: Any) -> dict[str, Any]:
        return {
            "carp_version": "1.0",
            "request_id": uuid7_ids(),
            "timestamp": format_timestamp(self._clock.now_us()),
            "operation": operation,
            "requester": {"agent_id": agent_id, "session_id": session_id},
            **fields,
        }

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- sessions -------------------------------------------------------------------------------------

    def create_session(
        self,
        agent_id: str,
        goal: str,
        atlas_ids: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Session:
        """Open a session (``POST /v1/sessions``)."""
        body: dict[str, Any] = {"agent_id": agent_id, "goal": goal}
        if atlas_ids is not None:
            body["atlas_ids"] = list(atlas_ids)
        if metadata is not None:
            body["metadata"] = dict(metadata)
        return Session.from_dict(self._json("POST", "/v1/sessions", json=body))

    def get_session(self, session_id: str) -> Session:
        """One session."""
        return Session.from_dict(self._json("GET", f"/v1/sessions/{session_id}"))

    def sessions(self, status: str | None = None, *, limit: int = 100, offset: int = 0) -> list[Session]:
        """Sessions the credential may see."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = status
        body = self._json("GET", "/v1/sessions", params=params)
        return [Session.from_dict(s) for s in body["sessions"]]

    def end_session(self, session_id: str, reason: str = "completed") -> None:
        """End a session."""
        self.request("DELETE", f"/v1/sessions/{session_id}", params={"reason": reason})

    # --- CARP -----------------------------------------------------------------------------------------

    def resolve_request(self, request: Mapping[str, Any]) -> Resolution:
        """Send a whole CARP resolve request."""
        session_id = str(request.get("requester", {}).get("session_id", ""))
        return Resolution.from_dict(self._json("POST", "/v1/resolve", json=request), session_id)

    def resolve(self, session_id: str, *, agent_id: str, goal: str | None = None, **task: Any) -> Resolution:
        """Resolve with a fresh request id and the current time; ``task`` keys (risk_tier,
        required_capabilities, context_hints) go into ``task``."""
        goal = goal if goal is not None else self.get_session(session_id).goal
        return self.resolve_request(self._carp("resolve", session_id, agent_id, task={"goal": goal, **task}))

    def execute_request(self, request: Mapping[str, Any]) -> ExecuteResponse:
        """Send a whole CARP execute request; denied (403) and pending (202) come back as responses."""
        response = self.http.post("/v1/execute", json=request)
        if response.status_code in (200, 202, 403):
            body = response.json()
            if "execution_id" in body:
                return ExecuteResponse.from_dict(body)
        _raise_for(response)
        raise CRAError(f"unexpected HTTP {response.status_code} from /v1/execute")

    def execute(
        self,
        session_id: str,
        resolution_id: str,
        action_id: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        agent_id: str,
        goal: str = "execute",
        idempotency_key: str | None = None,
    ) -> ExecuteResponse:
        """Execute an action of a resolution."""
        execution: dict[str, Any] = {
            "resolution_id": resolution_id,
            "action_id": action_id,
            "parameters": dict(parameters or {}),
        }
        if idempotency_key is not None:
            execution["idempotency_key"] = idempotency_key
        return self.execute_request(
            self._carp("execute", session_id, agent_id, task={"goal": goal}, execution=execution)
        )

    def complete(self, execution_id: str, *, result: Any = None, error: Any = None) -> ExecuteResponse:
        """Report the outcome of an ``authorized`` execution."""
        body: dict[str, Any] = {"error": error} if error is not None else {"result": result}
        data = self._json("POST", f"/v1/executions/{execution_id}/complete", json=body)
        return ExecuteResponse.from_dict(data)

    def validate_request(self, request: Any) -> ValidationReport:
        """Check a request without side effects."""
        body = self._json("POST", "/v1/validate", json=request)
        return ValidationReport(body["valid"], list(body["errors"]))

    # --- approvals ------------------------------------------------------------------------------------

    def approvals(self, session_id: str | None = None, *, status: str | None = "pending") -> list[Approval]:
        """Approvals the credential may see (pending by default; ``status=None`` for all)."""
        params = {"status": status or "all"}
        if session_id is not None:
            params["session_id"] = session_id
        body = self._json("GET", "/v1/approvals", params=params)
        return [Approval.from_dict(a) for a in body["approvals"]]

    def get_approval(self, approval_id: str) -> Approval:
        """One approval."""
        return Approval.from_dict(self._json("GET", f"/v1/approvals/{approval_id}"))

    def _decide(self, verb: str, approval_id: str, approver: str | None, note: str | None) -> Approval:
        body = {k: v for k, v in (("approver", approver), ("note", note)) if v is not None}
        return Approval.from_dict(self._json("POST", f"/v1/approvals/{approval_id}/{verb}", json=body))

    def approve(self, approval_id: str, approver: str | None = None, note: str | None = None) -> Approval:
        """Grant an approval (admin credential)."""
        return self._decide("approve", approval_id, approver, note)

    def reject(self, approval_id: str, approver: str | None = None, note: str | None = None) -> Approval:
        """Reject an approval (admin credential)."""
        return self._decide("reject", approval_id, approver, note)

    # --- traces ---------------------------------------------------------------------------------------

    def get_trace(
        self,
        session_id: str,
        *,
        since_sequence: int | None = None,
        event_type: str | None = None,
        limit: int | None = None,
    ) -> list[TraceEvent]:
        """A session's events (read as NDJSON: the stored bytes, so hashes verify exactly)."""
        params = {
            k: v
            for k, v in (("since_sequence", since_sequence), ("event_type", event_type), ("limit", limit))
            if v is not None
        }
        response = self.request(
            "GET", f"/v1/traces/{session_id}", params=params, headers={"Accept": "application/x-ndjson"}
        )
        return [TraceEvent.from_json(line) for line in response.content.splitlines() if line]

    def verify(self, session_id: str, *, expected_head: str | None = None) -> ChainVerification:
        """Verify a session's chain on the server."""
        if expected_head is None:
            body = self._json("GET", f"/v1/traces/{session_id}/verify")
        else:
            body = self._json(
                "POST", f"/v1/traces/{session_id}/verify", json={"expected_head": expected_head}
            )
        return ChainVerification(**body)

    # --- atlases, analysis, health ----------------------------------------------------------------------

    def atlases(self) -> list[dict[str, Any]]:
        """Summaries of the loaded Atlases."""
        return list(self._json("GET", "/v1/atlases")["atlases"])

    def load_atlas(
        self, manifest: Mapping[str, Any], files: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Load an Atlas (admin credential); returns its summary."""
        body = {"manifest": dict(manifest), "files": dict(files or {})}
        return dict(self._json("POST", "/v1/atlases", json=body))

    def unload_atlas(self, atlas_id: str) -> None:
        """Unload an Atlas (admin credential)."""
        self.request("DELETE", f"/v1/atlases/{atlas_id}")

    def replay(self, session_id: str, atlas: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Replay a session's decisions (against ``{manifest, files}`` when given)."""
        body: dict[str, Any] = {"session_id": session_id}
        if atlas is not None:
            body["atlas"] = dict(atlas)
        return dict(self._json("POST", "/v1/replay", json=body))

    def diff(self, a: str | list[dict[str, Any]], b: str | list[dict[str, Any]]) -> dict[str, Any]:
        """Compare two traces (session ids or event lists)."""
        return dict(self._json("POST", "/v1/diff", json={"a": a, "b": b}))

    def health(self) -> dict[str, Any]:
        """The server's health report (raises ``CRAError`` when it answers 503 without a report)."""
        response = self.http.get("/v1/health")
        if response.status_code in (200, 503):
            return dict(response.json())
        _raise_for(response)
        return {}
