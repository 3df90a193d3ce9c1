"""``/v1/approvals``: list pending approvals, read one, approve or reject (admins decide)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ...errors import ForbiddenError
from .._endpoint import Api, read_optional_object
from .._query import query_choice, query_text
from ..auth import Principal
from ..responses import json_response

__all__ = ["approve", "get_approval", "list_approvals", "reject"]

_STATUSES = ("pending", "approved", "rejected", "expired", "all")


async def list_approvals(api: Api, request: Request, principal: Principal) -> Response:
    """Approvals this caller may see: ``?session_id=&status=pending|approved|rejected|expired|all``
    (pending by default). An agent sees its own only."""
    status = query_choice(request, "status", _STATUSES) or "pending"
    session_id = query_text(request, "session_id")
    approvals = api.runtime.approvals(
        session_id, status=None if status == "all" else status, agent_id=principal.agent_filter
    )
    return json_response({"approvals": [a.to_dict() for a in approvals], "total": len(approvals)})


async def get_approval(api: Api, request: Request, principal: Principal) -> Response:
    """One approval (404 if unknown or another agent's)."""
    approval = api.runtime.get_approval(request.path_params["approval_id"], agent_id=principal.agent_filter)
    return json_response(approval.to_dict())


async def _decide(api: Api, request: Request, principal: Principal, granted: bool) -> Response:
    body = await read_optional_object(
        request, api, {"approver", "note"}, "the body must be an object with optional approver and note"
    )
    approver = body.get("approver", principal.subject)
    # With auth on, the approver recorded in the trace is the authenticated admin: nobody signs for another.
    if api.auth.enabled and approver != principal.subject:
        raise ForbiddenError("approver must be the authenticated caller")
    decide = api.runtime.approve if granted else api.runtime.reject
    approval = await api.call(decide, request.path_params["approval_id"], approver, body.get("note"))
    return json_response(approval.to_dict())


async def approve(api: Api, request: Request, principal: Principal) -> Response:
    """Grant an approval (admin): ``{approver?, note?}`` -> the approval; 409 if already decided."""
    return await _decide(api, request, principal, True)


async def reject(api: Api, request: Request, principal: Principal) -> Response:
    """Reject an approval (admin): ``{approver?, note?}`` -> the approval; 409 if already decided."""
    return await _decide(api, request, principal, False)
