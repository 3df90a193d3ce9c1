"""The TRACE event (SPEC 4.1) and its hash (SPEC 4.3): vectors, wire form, parsing, immutability."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cra import TraceEvent, canonical_json, event_hash
from cra.trace.event import GENESIS_HASH, TRACE_VERSION

DATA = Path(__file__).parent / "data" / "hash-vectors.json"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "spec" / "hash-vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(DATA.read_text(encoding="utf-8"))["vectors"]

STRING_FIELDS = [
    "trace_version",
    "event_id",
    "trace_id",
    "span_id",
    "session_id",
    "timestamp",
    "event_type",
    "event_hash",
    "previous_event_hash",
]
REQUIRED_FIELDS = [*STRING_FIELDS, "sequence", "payload"]


def spec_hash(event: dict[str, Any]) -> str:
    """SPEC 4.3 written out independently: SHA-256 of the separator-free concatenation."""
    payload = json.dumps(
        event["payload"], sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    text = "".join(
        [
            event["trace_version"],
            event["event_id"],
            event["trace_id"],
            event["span_id"],
            event["parent_span_id"] or "",
            event["session_id"],
            str(event["sequence"]),
            event["timestamp"],
            event["event_type"],
            payload,
            event["previous_event_hash"],
        ]
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sample_event(**overrides: Any) -> TraceEvent:
    fields: dict[str, Any] = {
        "event_id": "00000000-0000-7000-8000-000000000004",
        "trace_id": "00000000-0000-7000-8000-000000000002",
        "span_id": "00000000-0000-7000-8000-000000000003",
        "parent_span_id": None,
        "session_id": "00000000-0000-7000-8000-000000000001",
        "sequence": 0,
        "timestamp": "2025-01-01T00:00:00.000000Z",
        "event_type": "session.started",
        "payload": {"goal": "Résumé 😀", "agent_id": "agent-1", "f": 1e-05, "big": 1e20},
        "previous_event_hash": GENESIS_HASH,
    }
    fields.update(overrides)
    return TraceEvent(**fields)


# --- vectors -------------------------------------------------------------------------------------------


def test_vector_copy_matches_the_shared_spec_file() -> None:
    if not SHARED.exists():
        pytest.skip(f"{SHARED} is not available here")
    assert json.loads(DATA.read_text(encoding="utf-8")) == json.loads(SHARED.read_text(encoding="utf-8"))


def test_vector_file_is_not_empty() -> None:
    assert len(VECTORS) >= 8
    assert len({v["name"] for v in VECTORS}) == len(VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_event_hash_of_vector_dict_matches_expected(vector: dict[str, Any]) -> None:
    assert event_hash(vector["event"]) == vector["event"]["event_hash"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_compute_hash_of_vector_event_matches_expected(vector: dict[str, Any]) -> None:
    event = TraceEvent.from_dict(vector["event"])
    assert event.compute_hash() == vector["event"]["event_hash"]
    assert event.event_hash == vector["event"]["event_hash"]
    assert event_hash(event) == vector["event"]["event_hash"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_canonical_payload_of_vector_matches_expected(vector: dict[str, Any]) -> None:
    expected = vector["canonical_payload"].encode("utf-8")
    assert canonical_json(vector["event"]["payload"]) == expected
    assert TraceEvent.from_dict(vector["event"]).payload_json == expected


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_independent_spec_formula_agrees_with_vector(vector: dict[str, Any]) -> None:
    assert spec_hash(vector["event"]) == vector["event"]["event_hash"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_constructing_vector_event_without_hash_computes_expected_hash(vector: dict[str, Any]) -> None:
    fields = {k: v for k, v in vector["event"].items() if k != "event_hash"}
    assert TraceEvent(**fields).event_hash == vector["event"]["event_hash"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_event_survives_to_json_from_json_round_trip(vector: dict[str, Any]) -> None:
    event = TraceEvent.from_dict(vector["event"])
    again = TraceEvent.from_json(event.to_json())
    assert again == event
    assert again.compute_hash() == vector["event"]["event_hash"]


def test_event_hash_ignores_the_claimed_event_hash_field() -> None:
    event = copy.deepcopy(VECTORS[0]["event"])
    expected = event["event_hash"]
    event["event_hash"] = "f" * 64
    assert event_hash(event) == expected
    assert TraceEvent.from_dict(event).compute_hash() == expected
    assert TraceEvent.from_dict(event).event_hash == "f" * 64  # the stored claim is kept for verify


def test_event_hash_rejects_a_boolean_sequence_in_a_dict() -> None:
    event = copy.deepcopy(VECTORS[0]["event"])
    event["sequence"] = False
    with pytest.raises(TypeError):
        event_hash(event)


# --- what the hash covers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trace_version", "1.1"),
        ("event_id", "00000000-0000-7000-8000-0000000000ff"),
        ("trace_id", "00000000-0000-7000-8000-0000000000ff"),
        ("span_id", "00000000-0000-7000-8000-0000000000ff"),
        ("parent_span_id", "00000000-0000-7000-8000-0000000000ff"),
        ("session_id", "00000000-0000-7000-8000-0000000000ff"),
        ("sequence", 1),
        ("timestamp", "2025-01-01T00:00:00.000001Z"),
        ("event_type", "session.ended"),
        ("payload", {"goal": "Résumé 😀", "agent_id": "agent-2", "f": 1e-05, "big": 1e20}),
        ("previous_event_hash", "1" * 64),
    ],
)
def test_every_hashed_field_changes_the_hash(field: str, value: Any) -> None:
    assert sample_event(**{field: value}).event_hash != sample_event().event_hash


def test_null_parent_span_id_hashes_as_the_empty_string() -> None:
    assert sample_event(parent_span_id=None).event_hash == sample_event(parent_span_id="").event_hash


def test_sequence_is_hashed_as_its_decimal_string() -> None:
    event = sample_event(sequence=1234567890123)
    assert event.event_hash == spec_hash(event.to_dict())


def test_timestamp_is_hashed_exactly_as_stored() -> None:
    a = sample_event(timestamp="2025-01-01T00:00:00.000000Z")
    b = sample_event(timestamp="2025-01-01T00:00:00Z")
    assert a.event_hash != b.event_hash
    assert b.event_hash == spec_hash(b.to_dict())


def test_payload_key_order_does_not_change_the_hash() -> None:
    a = sample_event(payload={"a": 1, "b": 2})
    b = sample_event(payload={"b": 2, "a": 1})
    assert a.event_hash == b.event_hash
    assert a.payload_json == b.payload_json == b'{"a":1,"b":2}'


def test_default_trace_version_is_1_0() -> None:
    assert TRACE_VERSION == "1.0"
    assert sample_event().trace_version == "1.0"
    assert GENESIS_HASH == "0" * 64


# --- wire form -----------------------------------------------------------------------------------------


def test_to_json_embeds_the_payload_as_exactly_the_canonical_bytes() -> None:
    event = sample_event()
    line = event.to_json()
    canonical = canonical_json(event.payload)
    assert canonical == event.payload_json
    assert b'"payload":' + canonical + b',"event_hash":' in line
    # orjson would write 1e-5 / 1e20; the canonical bytes say 1e-05 / 1e+20
    assert b"1e-05" in line
    assert b"1e+20" in line
    assert "Résumé 😀".encode() in line  # raw UTF-8, not \u escapes


def test_to_json_is_one_compact_line_in_schema_key_order() -> None:
    line = sample_event().to_json()
    assert b"\n" not in line
    assert list(orjson.loads(line)) == [
        "trace_version",
        "event_id",
        "trace_id",
        "span_id",
        "parent_span_id",
        "session_id",
        "sequence",
        "timestamp",
        "event_type",
        "payload",
        "event_hash",
        "previous_event_hash",
    ]


def test_to_json_parses_to_to_dict() -> None:
    event = sample_event(parent_span_id="00000000-0000-7000-8000-000000000009", sequence=7)
    assert orjson.loads(event.to_json()) == event.to_dict()


def test_to_dict_round_trips_through_from_dict() -> None:
    event = sample_event()
    again = TraceEvent.from_dict(event.to_dict())
    assert again == event
    assert again.to_json() == event.to_json()
    assert again.event_hash == event.event_hash
    assert again.to_dict() == event.to_dict()


def test_to_dict_returns_a_fresh_payload_copy() -> None:
    event = sample_event(payload={"nested": {"x": [1, 2]}})
    wire = event.to_dict()
    wire["payload"]["nested"]["x"].append(3)
    assert event.to_dict()["payload"] == {"nested": {"x": [1, 2]}}
    assert event.compute_hash() == event.event_hash


def test_mutating_the_callers_payload_dict_does_not_change_the_wire_form() -> None:
    payload = {"a": [1]}
    event = sample_event(payload=payload)
    before = event.to_json()
    payload["a"].append(2)
    payload["b"] = 3
    assert event.to_json() == before
    assert event.compute_hash() == event.event_hash


def test_from_json_accepts_str_and_bytes() -> None:
    event = sample_event()
    assert TraceEvent.from_json(event.to_json()) == event
    assert TraceEvent.from_json(event.to_json().decode("utf-8")) == event


def test_from_dict_accepts_a_missing_parent_span_id_as_null() -> None:
    wire = sample_event().to_dict()
    del wire["parent_span_id"]  # optional in trace-event.schema.json
    assert TraceEvent.from_dict(wire).parent_span_id is None


# --- parse errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_from_dict_rejects_a_missing_required_field(field: str) -> None:
    wire = sample_event().to_dict()
    del wire[field]
    with pytest.raises(ValueError, match=field):
        TraceEvent.from_dict(wire)


@pytest.mark.parametrize("field", STRING_FIELDS)
@pytest.mark.parametrize("value", [None, 1, 1.5, True, [], {}], ids=repr)
def test_from_dict_rejects_a_non_string_string_field(field: str, value: Any) -> None:
    wire = sample_event().to_dict()
    wire[field] = value
    with pytest.raises(ValueError, match=field):
        TraceEvent.from_dict(wire)


@pytest.mark.parametrize("value", [True, False, "0", "1", -1, 1.5, -1.0, None, [0], {}], ids=repr)
def test_from_dict_rejects_a_sequence_that_is_not_a_non_negative_integer(value: Any) -> None:
    wire = sample_event().to_dict()
    wire["sequence"] = value
    with pytest.raises(ValueError, match="sequence"):
        TraceEvent.from_dict(wire)


def test_from_dict_reads_an_integral_float_sequence_as_the_integer() -> None:
    # JSON has one number type: 3.0 is the integer 3 (JSON Schema's `integer` agrees), and the hash is the same.
    event = sample_event()
    wire = event.to_dict()
    wire["sequence"] = float(event.sequence)
    again = TraceEvent.from_dict(wire)
    assert again.sequence == event.sequence and type(again.sequence) is int
    assert again.compute_hash() == event.event_hash


@pytest.mark.parametrize("value", [1, True, [], {}], ids=repr)
def test_from_dict_rejects_a_parent_span_id_that_is_neither_string_nor_null(value: Any) -> None:
    wire = sample_event().to_dict()
    wire["parent_span_id"] = value
    with pytest.raises(ValueError, match="parent_span_id"):
        TraceEvent.from_dict(wire)


@pytest.mark.parametrize("value", [None, [], [1, 2], "text", 1, 1.5, True], ids=repr)
def test_from_dict_rejects_a_non_object_payload(value: Any) -> None:
    wire = sample_event().to_dict()
    wire["payload"] = value
    with pytest.raises(ValueError, match="payload"):
        TraceEvent.from_dict(wire)


@pytest.mark.parametrize("line", [b"[]", b"1", b'"x"', b"null", b"[{}]"], ids=repr)
def test_from_json_rejects_a_line_that_is_not_an_object(line: bytes) -> None:
    with pytest.raises(ValueError):
        TraceEvent.from_json(line)


@pytest.mark.parametrize("line", [b"", b"{", b"{'a': 1}", b'{"a":1}x', b"\xff\xfe", b"NaN"], ids=repr)
def test_from_json_rejects_invalid_json_with_value_error(line: bytes) -> None:
    with pytest.raises(ValueError):
        TraceEvent.from_json(line)


def test_from_json_of_a_torn_line_raises_value_error() -> None:
    line = sample_event().to_json()
    with pytest.raises(ValueError):
        TraceEvent.from_json(line[: len(line) // 2])


# --- immutability, equality -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["event_hash", "sequence", "payload", "payload_json", "previous_event_hash", "event_type"]
)
def test_setting_an_attribute_raises(field: str) -> None:
    event = sample_event()
    with pytest.raises(AttributeError):
        setattr(event, field, "x")
    assert event.compute_hash() == event.event_hash


def test_adding_a_new_attribute_raises() -> None:
    event = sample_event()
    with pytest.raises(AttributeError):
        event.extra = 1  # type: ignore[attr-defined]


def test_deleting_an_attribute_raises() -> None:
    event = sample_event()
    with pytest.raises(AttributeError):
        del event.event_hash


def test_events_with_the_same_fields_are_equal_and_hash_alike() -> None:
    a, b = sample_event(), sample_event()
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != sample_event(sequence=1)
    assert a != a.to_dict()


def test_repr_names_sequence_type_and_hash_prefix() -> None:
    event = sample_event(sequence=3)
    assert repr(event) == f"TraceEvent(#3 session.started {event.event_hash[:12]})"


# --- payloads whose numbers the JSON parser could change -------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"f": 5e-324},
        {"f": -0.0},
        {"f": 1e-05},
        {"f": 1.7976931348623157e308},
        {"i": 2**63 - 1},
        {"i": -(2**63)},
        {"i": 2**64 - 1},
    ],
    ids=repr,
)
def test_payload_numbers_survive_to_json_from_json(payload: dict[str, Any]) -> None:
    event = sample_event(payload=payload)
    again = TraceEvent.from_json(event.to_json())
    assert again.to_json() == event.to_json()
    assert again.compute_hash() == event.event_hash


@pytest.mark.parametrize("payload", [{"i": 2**64}, {"i": 2**70}, {"i": -(2**63) - 1}], ids=repr)
def test_integers_beyond_64_bits_are_refused_at_the_api_edge(payload: dict[str, Any]) -> None:
    # JSON readers (orjson included) turn them into floats, so a trace holding one could never verify
    # after a round trip: the runtime refuses them before anything is recorded.
    from cra._jsonvalue import check_json_value
    from cra.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError):
        check_json_value(payload, "/context")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(min_size=1, max_size=12), min_size=4, max_size=4),
    st.one_of(st.none(), st.text(max_size=12)),
    st.integers(min_value=0, max_value=2**40),
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=20),
            # Within 64 bits, as the API edge admits (beyond, a JSON reader turns them into floats).
            st.dictionaries(st.text(max_size=5), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
        ),
        max_size=5,
    ),
)
def test_chain_events_hashes_exactly_as_spec_4_3(
    ids: list[str], parent: str | None, sequence: int, records: list[tuple[str, dict[str, int]]]
) -> None:
    # Parts are encoded one by one there and joined here: equal for any text, non-ASCII included.
    from cra.trace.event import chain_events
    from cra.trace.tracer import Record

    counter = iter(f"event-{i}-é" for i in range(100))
    trace_id, span_id, session_id, stamp = ids
    chained = chain_events(
        trace_id,
        span_id,
        parent,
        session_id,
        sequence,
        stamp,
        "0" * 64,
        [Record(kind, payload) for kind, payload in records],
        lambda: next(counter),
    )
    previous = "0" * 64
    for offset, event in enumerate(chained):
        assert event.sequence == sequence + offset and event.previous_event_hash == previous
        assert event.event_hash == event.compute_hash() == event_hash(event.to_dict())
        previous = event.event_hash
