"""Guards for JSON values that arrive through the Python API (the HTTP edge parses strictly already).

``check_json_value`` rejects what JSON cannot carry faithfully or what would make canonical JSON (and so the
trace) ambiguous: NaN and infinities, integers beyond 64 bits (they would read back as floats and fail
verification), non-string keys, non-JSON types, lone surrogates, and nesting deeper than a limit (deep
nesting is a denial-of-service vector and overflows recursive encoders).
"""

from __future__ import annotations

import math
from typing import Any

from .errors import InvalidRequestError, PayloadTooLargeError

__all__ = ["MAX_JSON_DEPTH", "check_json_value"]

MAX_JSON_DEPTH = 64
"""The deepest nesting of arrays and objects accepted in parameters, context and payloads."""

_SCALARS = (str, bool, type(None))
_MIN_INT = -(2**63)
_MAX_INT = 2**64 - 1  # orjson reads integers up to u64 back exactly; beyond that they become floats


def check_json_value(value: Any, where: str, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise ``InvalidRequestError`` (or ``PayloadTooLargeError`` for depth) unless ``value`` is plain JSON.

    ``where`` is the JSON pointer of ``value`` in the request, used in the error's details.
    """
    if _plainly_json(value, max_depth):
        return  # the common case: no pointers built; the walk below runs only to name what is wrong
    # An explicit stack, not recursion: the point is to survive hostile depth.
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                _check_utf8(item, path)
            continue
        if isinstance(item, int) and not isinstance(item, bool):
            if not _MIN_INT <= item <= _MAX_INT:
                raise InvalidRequestError(
                    f"{path or '/'}: integer outside the 64-bit range JSON readers agree on",
                    details={"errors": [{"pointer": path, "message": "integer beyond 64 bits"}]},
                )
            continue
        if isinstance(item, _SCALARS):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidRequestError(
                    f"{path or '/'}: NaN and infinities are not JSON",
                    details={"errors": [{"pointer": path, "message": "NaN and infinities are not JSON"}]},
                )
            continue
        if depth >= max_depth:
            raise PayloadTooLargeError(
                f"{where or '/'}: nested deeper than {max_depth} levels",
                details={"pointer": where, "max_depth": max_depth},
            )
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise InvalidRequestError(
                        f"{path or '/'}: object keys must be strings, got {type(key).__name__}",
                        details={"errors": [{"pointer": path, "message": "object keys must be strings"}]},
                    )
                if not key.isascii():
                    _check_utf8(key, path)
                stack.append((child, f"{path}/{_escape(key)}", depth + 1))
        elif isinstance(item, list | tuple):
            for index, child in enumerate(item):
                stack.append((child, f"{path}/{index}", depth + 1))
        else:
            raise InvalidRequestError(
                f"{path or '/'}: {type(item).__name__} is not a JSON value",
                details={"errors": [{"pointer": path, "message": "not a JSON value"}]},
            )


def _plainly_json(value: Any, max_depth: int) -> bool:
    """True when ``value`` is plain JSON within ``max_depth``: exact types only (a subclass of dict or str
    goes to the full walk, which decides and names the problem)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        kind = type(item)
        if kind is dict:
            if depth >= max_depth:
                return False
            for key, child in item.items():
                if type(key) is not str or not (key.isascii() or _encodes(key)):
                    return False
                child_kind = type(child)
                if child_kind is str:
                    if not (child.isascii() or _encodes(child)):
                        return False
                elif child_kind is dict or child_kind is list:
                    push((child, depth + 1))
                elif not _plain_scalar(child, child_kind):
                    return False
        elif kind is list:
            if depth >= max_depth:
                return False
            for child in item:
                child_kind = type(child)
                if child_kind is dict or child_kind is list:
                    push((child, depth + 1))
                elif child_kind is str:
                    if not (child.isascii() or _encodes(child)):
                        return False
                elif not _plain_scalar(child, child_kind):
                    return False
        elif kind is str:
            if not (item.isascii() or _encodes(item)):
                return False
        elif not _plain_scalar(item, kind):
            return False
    return True


def _plain_scalar(value: Any, kind: type) -> bool:
    if kind is int:
        return bool(_MIN_INT <= value <= _MAX_INT)
    if kind is float:
        return math.isfinite(value)
    return kind is bool or value is None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_utf8(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequestError(
            f"{path or '/'}: string is not valid Unicode (lone surrogate)",
            details={"errors": [{"pointer": path, "message": "lone surrogate"}]},
        ) from None


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
