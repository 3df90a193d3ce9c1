"""Canonical JSON (SPEC 4.3): byte-for-byte what the stdlib writes, at orjson speed where that is safe.

The definition is ``json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
allow_nan=False)`` encoded as UTF-8. orjson agrees with it on strings, integers up to 64 bits, booleans, null,
lists and objects with string keys, but not on floats (``1e-05`` vs ``0.00001``), NaN (orjson writes
``null``), integers beyond 64 bits, non-string keys or lone surrogates. So orjson runs first, and its output is
kept only when a conservative scan proves no float or null token is in it; otherwise the stdlib writes it.
The scan may send a float-free value to the slow path (a string that looks like ``:1.5``), never the reverse.
Property tests in tests/trace/test_canonical.py prove equality over arbitrary JSON values.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from ..errors import InvalidRequestError

__all__ = ["canonical_json"]

_SORT = orjson.OPT_SORT_KEYS
# A number token that has a fraction or exponent, or a null token, in value position.
_RISKY = re.compile(rb"[:,\[](?:-?[0-9]+[.eE]|null)")
# Without null: for values already checked at the API edge (no NaN/inf), where orjson's null is a real null.
_RISKY_TRUSTED = re.compile(rb"[:,\[]-?[0-9]+[.eE]")
_encode_stdlib = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def canonical_json(value: Any, *, trusted: bool = False) -> bytes:
    """The canonical JSON bytes of ``value``; raises ``InvalidRequestError`` for NaN, infinities and
    strings that cannot be UTF-8 (lone surrogates).

    ``trusted=True`` is for values already checked by ``check_json_value`` (no NaN or infinities can be in
    them), which lets a ``null`` stay on the fast path.
    """
    try:
        fast = orjson.dumps(value, option=_SORT)
    except (TypeError, orjson.JSONEncodeError):
        fast = None
    risky = _RISKY_TRUSTED if trusted else _RISKY
    if fast is not None and fast[:1] in (b"{", b"[", b'"') and risky.search(fast) is None:
        # orjson's result carries spare capacity (~4 KiB); a stored payload keeps an exact-size copy.
        return bytes(memoryview(fast))
    try:
        return _encode_stdlib(value).encode("utf-8")
    except (ValueError, UnicodeEncodeError, TypeError, RecursionError) as exc:
        raise InvalidRequestError(f"value is not canonical JSON: {exc}") from None
