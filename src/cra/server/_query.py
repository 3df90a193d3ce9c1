"""Query-string parameters, checked: a bad value is a 400 naming the parameter, never a silent default."""

from __future__ import annotations

from starlette.requests import Request

from ..errors import InvalidRequestError

__all__ = ["query_choice", "query_int", "query_text"]


def _bad(name: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"query parameter {name}: {message}",
        details={"errors": [{"pointer": f"/query/{name}", "message": message}]},
    )


def query_int(request: Request, name: str, default: int | None, *, low: int, high: int) -> int | None:
    """An integer in ``low..high`` (``default`` when absent)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(name, "must be an integer") from None
    if not low <= value <= high:
        raise _bad(name, f"must be between {low} and {high}")
    return value


def query_text(request: Request, name: str, *, max_len: int = 255) -> str | None:
    """A non-empty string of at most ``max_len`` characters, or None when absent."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not raw or len(raw) > max_len:
        raise _bad(name, f"must be 1..{max_len} characters")
    return raw


def query_choice(request: Request, name: str, choices: tuple[str, ...]) -> str | None:
    """One of ``choices``, or None when absent."""
    raw = request.query_params.get(name)
    if raw is not None and raw not in choices:
        raise _bad(name, f"must be one of {', '.join(choices)}")
    return raw
