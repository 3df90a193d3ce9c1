"""CARP requests on the wire (SPEC 3): schema checks with JSON pointers, clock skew, and the validation
report of ``operation: "validate"``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._jsonvalue import check_json_value
from ._schema_errors import schema_problems
from .clock import parse_timestamp
from .errors import ClockSkewError, CRAError, InvalidRequestError, PayloadTooLargeError
from .schemas import validator

__all__ = ["ValidationReport", "check_skew", "parse_request", "request_problems"]


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """The outcome of validating a request: ``valid`` and every error as ``{pointer, message}``."""

    valid: bool
    errors: list[dict[str, str]] = field(default_factory=list)

    @property
    def error_paths(self) -> list[str]:
        return [e["pointer"] for e in self.errors]

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "errors": [dict(e) for e in self.errors]}


def request_problems(request: Any, *, raise_too_deep: bool = False) -> list[dict[str, str]]:
    """Every problem of a CARP request: not-JSON values first (NaN, depth), then schema errors. With
    ``raise_too_deep``, nesting past the limit raises ``PayloadTooLargeError`` instead of being listed."""
    if not isinstance(request, dict):
        return [{"pointer": "", "message": "a CARP request must be a JSON object"}]
    try:
        check_json_value(request, "")
    except CRAError as exc:
        if raise_too_deep and isinstance(exc, PayloadTooLargeError):
            raise
        errors = (exc.details or {}).get("errors") or [
            {"pointer": (exc.details or {}).get("pointer", ""), "message": exc.message}
        ]
        return [dict(e) for e in errors]
    return schema_problems(validator("carp-request"), request)


def parse_request(request: Any, operation: str) -> dict[str, Any]:
    """Check a CARP request for ``operation``; raise ``InvalidRequestError`` listing every problem
    (``PayloadTooLargeError`` when it nests deeper than the limit, as the Python API does)."""
    problems = request_problems(request, raise_too_deep=True)
    if not problems and request["operation"] != operation:
        problems = [{"pointer": "/operation", "message": f"expected operation {operation!r}"}]
    if problems:
        raise InvalidRequestError(
            f"invalid CARP request: {problems[0]['pointer'] or '/'}: {problems[0]['message']}"
            + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""),
            details={"errors": problems},
        )
    assert isinstance(request, dict)
    return request


def check_skew(timestamp: str, now_us: int, max_skew_seconds: float) -> None:
    """Raise ``ClockSkewError`` when a request's timestamp is further than allowed from the runtime clock."""
    try:
        sent = parse_timestamp(timestamp)
    except ValueError:
        raise InvalidRequestError(
            f"/timestamp: not an ISO 8601 timestamp: {timestamp!r}",
            details={"errors": [{"pointer": "/timestamp", "message": "not an ISO 8601 timestamp"}]},
        ) from None
    skew = abs(sent - now_us) / 1_000_000
    if skew > max_skew_seconds:
        raise ClockSkewError(
            f"request timestamp is {skew:.0f} s from the runtime clock (at most {max_skew_seconds:g} s)",
            details={"skew_seconds": skew, "max_skew_seconds": max_skew_seconds},
        )
