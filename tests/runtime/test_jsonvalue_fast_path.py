"""check_json_value's fast path (no pointers) must accept exactly what the full walk accepts."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cra._jsonvalue import MAX_JSON_DEPTH, _plainly_json, check_json_value
from cra.errors import CRAError

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF)),  # lone surrogates included
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.one_of(st.text(), st.integers()), children, max_size=4),
    ),
    max_leaves=20,
)


def _full_walk_accepts(value: Any, depth: int) -> bool:
    try:
        check_json_value(value, "", max_depth=depth)
    except CRAError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(values, st.integers(min_value=0, max_value=4))
def test_the_fast_path_never_accepts_what_the_full_walk_refuses(value: Any, depth: int) -> None:
    if _plainly_json(value, depth):
        assert _full_walk_accepts(value, depth)


def test_the_fast_path_refuses_each_kind_of_problem() -> None:
    deep: Any = 1
    for _ in range(MAX_JSON_DEPTH + 1):
        deep = [deep]
    for bad in (
        math.nan,
        math.inf,
        2**64,
        -(2**63) - 1,
        b"\\ud800".decode("unicode_escape"),
        {1: 2},
        {"a": object()},
        deep,
        {"x": [math.nan]},
    ):
        assert not _plainly_json(bad, MAX_JSON_DEPTH)
        assert not _full_walk_accepts(bad, MAX_JSON_DEPTH)
    assert _plainly_json({"a": [1, 2.5, "é", None, True, {"b": []}]}, MAX_JSON_DEPTH)
