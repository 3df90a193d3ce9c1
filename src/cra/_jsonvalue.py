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
