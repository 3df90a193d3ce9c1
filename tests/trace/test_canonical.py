"""canonical_json (SPEC 4.3) must give exactly the bytes of the stdlib definition, for every JSON value."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cra import canonical_json
from cra.errors import InvalidRequestError


def stdlib_canonical(value: Any) -> bytes:
    """The SPEC's definition of canonical JSON."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


# --- strategies -------------------------------------------------------------------------------------------

SPECIAL_FLOATS = [
    0.0,
    -0.0,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    1e-9,
    1.5e-7,
    1e-5,
    -1e-5,
    9.999999999999999e-5,
    1e-4,
    0.1,
    0.30000000000000004,
    1.0,
    -1.0,
    123456789.123,
    1e15,
    1e16,
    -1e16,
    1.2345678901234567e16,
    1e17,
    1e20,
    1e21,
    1e22,
    1.7976931348623157e308,
    -1.7976931348623157e308,
]

# Strings that look like risky number / null tokens once embedded in JSON (they must not fool a fast path).
TOKEN_LIKE_STRINGS = [
    ":1.5,",
    ",1e5]",
    "[-0.5",
    ":null",
    ",null}",
    '":1.0,"',
    "1e-05",
    "null",
    "-0.0",
    "\\u0000",
    '"',
    "\\",
]

SPECIAL_CHARS = (
    "\x00\x01\x07\x08\x09\x0a\x0b\x0c\x0d\x1b\x1f\x20\x22\x2f\x5c\x7f\x80\x9f\xa0\xad"
    "\u2028\u2029\ufeff\ufffd\uffff\u00e9\u65e5\U0001f600\U0001f468\u200d\U0001f469\U0010ffff"
)

floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e-9, max_value=1e-4, exclude_max=True),
    st.floats(min_value=-1e-4, max_value=-1e-9, exclude_min=True),
    st.floats(min_value=1e15, max_value=1e22),
    st.sampled_from(SPECIAL_FLOATS),
)

integers = st.one_of(
    st.integers(),
    st.integers(min_value=2**53 - 2, max_value=2**53 + 2),
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.integers(min_value=-(2**64) - 2, max_value=-(2**63) + 2),
    st.integers(min_value=2**64, max_value=2**256),
    st.integers(min_value=-(2**256), max_value=-(2**64)),
)

texts = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.text(alphabet=st.sampled_from(SPECIAL_CHARS), max_size=12),
    st.sampled_from(TOKEN_LIKE_STRINGS),
)

scalars = st.one_of(st.none(), st.booleans(), integers, floats, texts)

json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(texts, children, max_size=4),
    ),
    max_leaves=12,
)

json_objects = st.dictionaries(texts, json_values, max_size=4)

NON_FINITE = [math.nan, math.inf, -math.inf]


def _embed(leaf_strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A JSON value that holds a leaf from ``leaf_strategy`` somewhere inside, among ordinary siblings."""

    def wrap(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        in_list = st.tuples(children, st.lists(scalars, max_size=3), st.integers(0, 3)).map(
            lambda t: [*t[1][: t[2]], t[0], *t[1][t[2] :]]
        )
        in_dict = st.tuples(children, texts, st.dictionaries(texts, scalars, max_size=3)).map(
            lambda t: {**t[2], t[1]: t[0]}
        )
        return st.one_of(in_list, in_dict)

    return st.recursive(leaf_strategy, wrap, max_leaves=6)


# --- equality with the stdlib ----------------------------------------------------------------------------


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_canonical_json_equals_stdlib_bytes_for_arbitrary_json_values(value: Any) -> None:
    assert canonical_json(value) == stdlib_canonical(value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_objects)
def test_canonical_json_equals_stdlib_bytes_for_arbitrary_objects(value: dict[str, Any]) -> None:
    # Payloads are objects: this exercises the fast path that top-level scalars never reach.
    assert canonical_json(value) == stdlib_canonical(value)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(floats, min_size=1, max_size=8))
def test_canonical_json_equals_stdlib_bytes_for_floats_of_every_magnitude(values: list[float]) -> None:
    assert canonical_json({"f": values}) == stdlib_canonical({"f": values})
    assert canonical_json(values) == stdlib_canonical(values)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(integers, min_size=1, max_size=8))
def test_canonical_json_equals_stdlib_bytes_for_integers_beyond_64_bits(values: list[int]) -> None:
    assert canonical_json({"i": values}) == stdlib_canonical({"i": values})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(texts, texts, max_size=6))
def test_canonical_json_equals_stdlib_bytes_for_unicode_keys_and_strings(value: dict[str, str]) -> None:
    assert canonical_json(value) == stdlib_canonical(value)


@pytest.mark.parametrize("value", SPECIAL_FLOATS, ids=repr)
def test_canonical_json_writes_each_special_float_like_stdlib(value: float) -> None:
    assert canonical_json({"v": value}) == stdlib_canonical({"v": value})
    assert canonical_json([value]) == stdlib_canonical([value])
    assert canonical_json(value) == stdlib_canonical(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"f": 1.0}, b'{"f":1.0}'),
        ({"f": 1e-05}, b'{"f":1e-05}'),
        ({"f": 1.5e-07}, b'{"f":1.5e-07}'),
        ({"f": 1e16}, b'{"f":1e+16}'),
        ({"f": 1e20}, b'{"f":1e+20}'),
        ({"f": -0.0}, b'{"f":-0.0}'),
        ({"f": 5e-324}, b'{"f":5e-324}'),
        ({"i": 2**70}, b'{"i":1180591620717411303424}'),
        ({"b": 2, "a": 1, "B": 0, "\u00e9": 3}, b'{"B":0,"a":1,"b":2,"\xc3\xa9":3}'),
        ({"s": "\u00e9\U0001f600"}, '{"s":"\u00e9\U0001f600"}'.encode()),
        ({"s": "\x01\x1f\x7f\u2028"}, b'{"s":"\\u0001\\u001f\x7f\xe2\x80\xa8"}'),
        ({"s": '\b\f\n\r\t"\\/'}, b'{"s":"\\b\\f\\n\\r\\t\\"\\\\/"}'),
        ({"n": None, "t": True, "f": False}, b'{"f":false,"n":null,"t":true}'),
        ({"a": ":1.5,"}, b'{"a":":1.5,"}'),
        ({}, b"{}"),
        ([], b"[]"),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_canonical_json_known_bytes(value: Any, expected: bytes) -> None:
    assert canonical_json(value) == expected
    assert stdlib_canonical(value) == expected


def test_canonical_json_of_a_float_looking_string_is_the_exact_stdlib_bytes() -> None:
    value = {"a": ":1.5,", "b": [",null", "[1e5"], "c": {"d": '":-0.5,"'}}
    assert canonical_json(value) == stdlib_canonical(value)


def test_canonical_json_does_not_depend_on_key_insertion_order() -> None:
    forward = {"a": 1, "b": {"x": 1, "y": 2}, "c": [1, 2]}
    backward = {"c": [1, 2], "b": {"y": 2, "x": 1}, "a": 1}
    assert canonical_json(forward) == canonical_json(backward)


def test_canonical_json_sorts_keys_by_code_point_not_by_utf16() -> None:
    # U+FF5E sorts before U+1F600 by code point; UTF-16 order would put the emoji's surrogate first.
    value = {"\U0001f600": 1, "\uff5e": 2, "a": 3}
    assert canonical_json(value) == '{"a":3,"\uff5e":2,"\U0001f600":1}'.encode()


@pytest.mark.parametrize("depth", [254, 255, 256, 300])
def test_canonical_json_of_deep_nesting_equals_stdlib(depth: int) -> None:
    nested_list: Any = []
    nested_dict: Any = {}
    for _ in range(depth):
        nested_list = [nested_list]
        nested_dict = {"k": nested_dict}
    assert canonical_json(nested_list) == stdlib_canonical(nested_list)
    assert canonical_json(nested_dict) == stdlib_canonical(nested_dict)


def test_canonical_json_of_pathologically_deep_nesting_raises_invalid_request() -> None:
    value: Any = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(InvalidRequestError):
        canonical_json(value)


# --- rejected values -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", NON_FINITE, ids=repr)
@pytest.mark.parametrize(
    "where",
    [
        lambda x: x,
        lambda x: [x],
        lambda x: {"a": x},
        lambda x: {"a": [1, {"b": [None, x]}]},
        lambda x: [{"ok": 1.5}, {"deep": {"er": [x]}}],
    ],
    ids=["top", "list", "object", "nested", "sibling-of-float"],
)
def test_canonical_json_rejects_nan_and_infinities_anywhere(bad: float, where: Any) -> None:
    with pytest.raises(InvalidRequestError):
        canonical_json(where(bad))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_embed(st.sampled_from(NON_FINITE)))
def test_canonical_json_rejects_a_non_finite_float_hidden_anywhere(value: Any) -> None:
    with pytest.raises(InvalidRequestError):
        canonical_json(value)


@pytest.mark.parametrize(
    "value",
    ["\ud800", "x\udfffy", {"a": "\udc00"}, {"\ud83d": 1}, ["ok", {"k": ["\ud800\ud800"]}]],
    ids=repr,
)
def test_canonical_json_rejects_lone_surrogates(value: Any) -> None:
    with pytest.raises(InvalidRequestError):
        canonical_json(value)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_embed(st.sampled_from(["\ud800", "a\udbff", "\udfffz", "\udc00\ud800"])))
def test_canonical_json_rejects_a_lone_surrogate_hidden_anywhere(value: Any) -> None:
    with pytest.raises(InvalidRequestError):
        canonical_json(value)


def test_canonical_json_accepts_a_valid_surrogate_pair_written_as_one_code_point() -> None:
    assert canonical_json({"e": "\U0001f600"}) == '{"e":"\U0001f600"}'.encode()


@pytest.mark.parametrize("value", [{1, 2}, object(), b"bytes", {"a": object()}], ids=repr)
def test_canonical_json_rejects_values_that_are_not_json(value: Any) -> None:
    with pytest.raises(InvalidRequestError):
        canonical_json(value)
