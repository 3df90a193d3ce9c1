"""Every error CRA raises, one class per code (SPEC section 5).

The hierarchy, by category (each category has one HTTP status unless a code says otherwise)::

    CRAError
    ├── ValidationError        validation   400   INVALID_REQUEST, INVALID_PARAMETERS, INVALID_ATLAS,
    │                                             CLOCK_SKEW, UNKNOWN_CAPABILITY, UNKNOWN_ATLAS,
    │                                             PAYLOAD_TOO_LARGE (413), METHOD_NOT_ALLOWED (405)
    ├── AuthError              auth       401/403 UNAUTHORIZED (401), FORBIDDEN (403)
    ├── NotFoundError          not_found  404   NOT_FOUND, SESSION_NOT_FOUND, RESOLUTION_NOT_FOUND, APPROVAL_NOT_FOUND,
    │                                             EXECUTION_NOT_FOUND, ATLAS_NOT_FOUND
    ├── ConflictError          conflict   409   DUPLICATE_REQUEST, SESSION_ENDED, ATLAS_ALREADY_LOADED,
    │                                             IDEMPOTENCY_CONFLICT, APPROVAL_ALREADY_DECIDED,
    │                                             EXECUTION_ALREADY_COMPLETED
    ├── PolicyError            policy     403   ACTION_NOT_ALLOWED, POLICY_DENIED, APPROVAL_REQUIRED,
    │                                             APPROVAL_REJECTED
    ├── RateLimitError         rate_limit 429   RATE_LIMITED, BUDGET_EXCEEDED
    ├── ExpiredError           timeout    410   RESOLUTION_EXPIRED, APPROVAL_EXPIRED, COMPLETION_TIMEOUT (408)
    ├── UnavailableError       unavailable 503  STORAGE_UNAVAILABLE, TRACE_BACKPRESSURE, LIMITER_UNAVAILABLE,
    │                                             RUNTIME_CLOSED, REQUEST_TIMEOUT
    └── InternalError          internal   500   INTERNAL_ERROR, HANDLER_ERROR

Governance refusals at execute (denied, pending approval) are *responses*, not exceptions: their codes
(ACTION_NOT_ALLOWED, RATE_LIMITED, ...) appear in ``ExecuteResponse.error``. The policy and rate-limit
classes exist so that callers who prefer exceptions can raise ``response.raise_for_status()``.

``to_dict()`` gives the wire body's ``error`` object. Messages never contain stack traces or paths outside
the data the caller sent.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ActionNotAllowedError",
    "ApprovalAlreadyDecidedError",
    "ApprovalExpiredError",
    "ApprovalNotFoundError",
    "ApprovalRejectedError",
    "ApprovalRequiredError",
    "AtlasAlreadyLoadedError",
    "AtlasNotFoundError",
    "AuthError",
    "BudgetExceededError",
    "CRAError",
    "ClockSkewError",
    "CompletionTimeoutError",
    "ConflictError",
    "DuplicateRequestError",
    "ExecutionAlreadyCompletedError",
    "ExecutionNotFoundError",
    "ExpiredError",
    "ForbiddenError",
    "HandlerError",
    "IdempotencyConflictError",
    "InternalError",
    "InvalidAtlasError",
    "InvalidParametersError",
    "InvalidRequestError",
    "MethodNotAllowedError",
    "LimiterUnavailableError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PolicyDeniedError",
    "PolicyError",
    "RateLimitError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ResolutionExpiredError",
    "ResolutionNotFoundError",
    "RuntimeClosedError",
    "SessionEndedError",
    "SessionNotFoundError",
    "StorageUnavailableError",
    "TraceBackpressureError",
    "UnauthorizedError",
    "UnavailableError",
    "UnknownAtlasError",
    "UnknownCapabilityError",
    "ValidationError",
    "error_class",
]


class CRAError(Exception):
    """Base of every CRA error: a code, a category, a message, and an HTTP status."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    category: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    recoverable: ClassVar[bool] = False

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The wire form: ``{"code", "category", "message", "recoverable", "details"?}``."""
        body: dict[str, Any] = {
            "code": self.code,
            "category": self.category,
            "message": self.message,
            "recoverable": self.recoverable,
        }
        if self.details is not None:
            body["details"] = self.details
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}: {self.message!r})"


# --- categories -------------------------------------------------------------------------------------------


class ValidationError(CRAError):
    """The input is malformed or breaks a documented rule; nothing was changed."""

    code = "INVALID_REQUEST"
    category = "validation"
    http_status = 400


class AuthError(CRAError):
    """The caller is not who it must be, or may not do this."""

    code = "UNAUTHORIZED"
    category = "auth"
    http_status = 401


class NotFoundError(CRAError):
    """An id names nothing the caller can see."""

    code = "NOT_FOUND"
    category = "not_found"
    http_status = 404


class ConflictError(CRAError):
    """The request contradicts the current state (already done, already ended, reused id)."""

    code = "CONFLICT"
    category = "conflict"
    http_status = 409


class PolicyError(CRAError):
    """A policy refused the action."""

    code = "POLICY_DENIED"
    category = "policy"
    http_status = 403


class RateLimitError(CRAError):
    """A rate limit or budget is exhausted; retrying later may succeed."""

    code = "RATE_LIMITED"
    category = "rate_limit"
    http_status = 429
    recoverable = True


class ExpiredError(CRAError):
    """Something time-bound (a resolution, an approval, a pending completion) ran out of time."""

    code = "EXPIRED"
    category = "timeout"
    http_status = 410


class UnavailableError(CRAError):
    """A dependency (storage, trace buffer) cannot take the request now; nothing was decided."""

    code = "UNAVAILABLE"
    category = "unavailable"
    http_status = 503
    recoverable = True


class InternalError(CRAError):
    """A bug or an unexpected failure inside CRA; the request was refused (fail closed)."""

    code = "INTERNAL_ERROR"
    category = "internal"
    http_status = 500


# --- codes ------------------------------------------------------------------------------------------------


class InvalidRequestError(ValidationError):
    """A request that does not match its schema (details.errors lists every JSON pointer)."""

    code = "INVALID_REQUEST"


class InvalidParametersError(ValidationError):
    """Execute parameters that fail the action's ``parameters_schema`` (details.errors: every pointer)."""

    code = "INVALID_PARAMETERS"


class InvalidAtlasError(ValidationError):
    """An Atlas that fails validation; details.problems lists every problem with its JSON pointer."""

    code = "INVALID_ATLAS"


class ClockSkewError(ValidationError):
    """A request timestamp too far from the runtime clock."""

    code = "CLOCK_SKEW"


class UnknownCapabilityError(ValidationError):
    """``required_capabilities`` names a capability no Atlas of the session defines."""

    code = "UNKNOWN_CAPABILITY"


class UnknownAtlasError(ValidationError):
    """``atlas_ids`` names an Atlas that is not loaded, or not one of the session's."""

    code = "UNKNOWN_ATLAS"


class PayloadTooLargeError(ValidationError):
    """A body, document or value larger or deeper than the configured limit."""

    code = "PAYLOAD_TOO_LARGE"
    http_status = 413


class MethodNotAllowedError(ValidationError):
    """The HTTP method is not one the route accepts (the ``Allow`` header lists those it does)."""

    code = "METHOD_NOT_ALLOWED"
    http_status = 405


class UnauthorizedError(AuthError):
    """No valid credentials."""

    code = "UNAUTHORIZED"
    http_status = 401


class ForbiddenError(AuthError):
    """Valid credentials, but the resource belongs to another agent or needs another scope."""

    code = "FORBIDDEN"
    http_status = 403


class SessionNotFoundError(NotFoundError):
    """No session with this id."""

    code = "SESSION_NOT_FOUND"


class ResolutionNotFoundError(NotFoundError):
    """No resolution with this id in this session."""

    code = "RESOLUTION_NOT_FOUND"


class ApprovalNotFoundError(NotFoundError):
    """No approval with this id."""

    code = "APPROVAL_NOT_FOUND"


class ExecutionNotFoundError(NotFoundError):
    """No authorised execution with this id awaits completion."""

    code = "EXECUTION_NOT_FOUND"


class AtlasNotFoundError(NotFoundError):
    """No Atlas with this id is loaded."""

    code = "ATLAS_NOT_FOUND"


class DuplicateRequestError(ConflictError):
    """A ``request_id`` already used in this session."""

    code = "DUPLICATE_REQUEST"


class SessionEndedError(ConflictError):
    """The session has ended; it accepts no more requests."""

    code = "SESSION_ENDED"


class AtlasAlreadyLoadedError(ConflictError):
    """This exact Atlas id and version is already loaded."""

    code = "ATLAS_ALREADY_LOADED"


class IdempotencyConflictError(ConflictError):
    """An idempotency key reused with another action or other parameters."""

    code = "IDEMPOTENCY_CONFLICT"


class ApprovalAlreadyDecidedError(ConflictError):
    """The approval was already granted or rejected."""

    code = "APPROVAL_ALREADY_DECIDED"


class ExecutionAlreadyCompletedError(ConflictError):
    """``complete`` was already called for this execution."""

    code = "EXECUTION_ALREADY_COMPLETED"


class ActionNotAllowedError(PolicyError):
    """The action is not among the resolution's allowed actions."""

    code = "ACTION_NOT_ALLOWED"


class PolicyDeniedError(PolicyError):
    """A deny policy (or the default deny) refused the action at execution time."""

    code = "POLICY_DENIED"


class ApprovalRequiredError(PolicyError):
    """The action needs an approval that has not been granted yet."""

    code = "APPROVAL_REQUIRED"


class ApprovalRejectedError(PolicyError):
    """The approval covering this action was rejected."""

    code = "APPROVAL_REJECTED"


class RateLimitedError(RateLimitError):
    """A rate-limit window is full."""

    code = "RATE_LIMITED"


class BudgetExceededError(RateLimitError):
    """The execution would take a budget past its ``max_cost``."""

    code = "BUDGET_EXCEEDED"


class ResolutionExpiredError(ExpiredError):
    """The resolution's ``ttl_seconds`` have passed."""

    code = "RESOLUTION_EXPIRED"


class ApprovalExpiredError(ExpiredError):
    """The approval expired with its resolution."""

    code = "APPROVAL_EXPIRED"


class CompletionTimeoutError(ExpiredError):
    """The outcome of an authorised execution was reported after its resolution expired."""

    code = "COMPLETION_TIMEOUT"
    http_status = 408


class StorageUnavailableError(UnavailableError):
    """The trace or state storage failed; the operation was refused."""

    code = "STORAGE_UNAVAILABLE"


class TraceBackpressureError(UnavailableError):
    """The trace buffer is full and the runtime is configured to refuse rather than wait."""

    code = "TRACE_BACKPRESSURE"


class LimiterUnavailableError(UnavailableError):
    """The rate-limit backend failed; the runtime refused rather than allow without counting."""

    code = "LIMITER_UNAVAILABLE"


class RuntimeClosedError(UnavailableError):
    """The runtime was closed."""

    code = "RUNTIME_CLOSED"
    recoverable = False


class RequestTimeoutError(UnavailableError):
    """The server gave up waiting for the runtime (a slow handler or storage) within its request timeout."""

    code = "REQUEST_TIMEOUT"


class HandlerError(InternalError):
    """A registered handler raised; used as the ``error.code`` of an ``error`` execute response."""

    code = "HANDLER_ERROR"


def _all_codes() -> dict[str, type[CRAError]]:
    found: dict[str, type[CRAError]] = {}
    stack: list[type[CRAError]] = [CRAError]
    while stack:
        cls = stack.pop()
        found[cls.code] = cls  # parents come first, so the most specific class wins
        stack.extend(cls.__subclasses__())
    return found


def error_class(code: str) -> type[CRAError]:
    """The exception class for an error code (``CRAError`` itself for an unknown code). Classes defined in
    other modules (``cra.timers.errors``, ...) are found too, once imported."""
    return _all_codes().get(code, CRAError)
