"""verify_chain (SPEC 4.3): the first failure, its kind, where it is, and the order of the checks."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from cra import ChainVerification, TraceEvent, verify_chain
from cra.errors import InvalidRequestError
from cra.trace.event import GENESIS_HASH


def rebuilt(event: TraceEvent, **changes: Any) -> TraceEvent:
    """``event`` with some fields changed and its own hash recomputed (so only the chain can tell)."""
    wire = event.to_dict()
    wire.update(changes)
    del wire["event_hash"]
    return TraceEvent(**wire)


def forged(event: TraceEvent, **changes: Any) -> TraceEvent:
    """``event`` with some fields changed but the stale hash kept (its own hash is now wrong)."""
    wire = event.to_dict()
    wire.update(changes)
    return TraceEvent(**wire)


def as_dicts(events: list[TraceEvent]) -> list[dict[str, Any]]:
    return [event.to_dict() for event in events]


# --- valid chains ---------------------------------------------------------------------------------------


def test_empty_chain_is_valid_with_event_count_zero() -> None:
    result = verify_chain([])
    assert result == ChainVerification(valid=True, event_count=0)
    assert result.head_hash is None
    assert result.error is None
    assert result.error_at is None
    assert result.sequence is None
    assert bool(result) is True


def test_valid_chain_reports_count_and_head_hash(make_chain) -> None:
    events = make_chain(5)
    result = verify_chain(events)
    assert result.valid is True
    assert result.event_count == 5
    assert result.head_hash == events[-1].event_hash
    assert (result.error, result.error_at, result.sequence) == (None, None, None)


def test_single_genesis_event_is_a_valid_chain(make_chain) -> None:
    [event] = make_chain(1)
    assert event.sequence == 0
    assert event.previous_event_hash == GENESIS_HASH
    assert verify_chain([event]).head_hash == event.event_hash


def test_wire_dicts_and_events_verify_alike(make_chain) -> None:
    events = make_chain(4)
    assert verify_chain(as_dicts(events)) == verify_chain(events)


def test_mixed_dicts_and_events_verify(make_chain) -> None:
    events = make_chain(4)
    mixed: list[Any] = [events[0], events[1].to_dict(), events[2], events[3].to_dict()]
    assert verify_chain(mixed).valid


def test_a_generator_of_events_verifies(make_chain) -> None:
    events = make_chain(3)
    result = verify_chain(event for event in events)
    assert result.valid
    assert result.event_count == 3


def test_real_runtime_chain_verifies(runtime_events) -> None:
    result = verify_chain(runtime_events)
    assert result.valid
    assert result.event_count == len(runtime_events) >= 7
    assert result.head_hash == runtime_events[-1].event_hash


def test_to_dict_has_the_wire_keys(make_chain) -> None:
    events = make_chain(2)
    assert verify_chain(events).to_dict() == {
        "valid": True,
        "error": None,
        "error_at": None,
        "sequence": None,
        "event_count": 2,
        "head_hash": events[-1].event_hash,
    }
    bad = verify_chain([events[1]]).to_dict()
    assert bad == {
        "valid": False,
        "error": "invalid_genesis",
        "error_at": 0,
        "sequence": 1,
        "event_count": 1,
        "head_hash": None,
    }


# --- each error kind ------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 2, 4])
def test_changed_payload_is_hash_mismatch_at_that_event(make_chain, index: int) -> None:
    events = make_chain(5)
    events[index] = forged(events[index], payload={"index": index, "note": "rewritten"})
    result = verify_chain(events)
    assert (result.valid, result.error, result.error_at, result.sequence) == (
        False,
        "hash_mismatch",
        index,
        index,
    )
    assert result.event_count == index + 1  # verification stops at the first failure
    assert result.head_hash is None
    assert bool(result) is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_id", "00000000-0000-7000-8000-0000000000ff"),
        ("trace_id", "x"),
        ("span_id", "x"),
        ("parent_span_id", "x"),
        ("session_id", "other"),
        ("timestamp", "2030-01-01T00:00:00.000000Z"),
        ("event_type", "action.denied"),
        ("trace_version", "2.0"),
        ("event_hash", "0" * 64),
        ("event_hash", "A" * 64),
    ],
)
def test_any_changed_field_in_a_wire_dict_is_hash_mismatch(make_chain, field: str, value: Any) -> None:
    wire = as_dicts(make_chain(3))
    wire[1][field] = value
    result = verify_chain(wire)
    assert (result.error, result.error_at, result.sequence) == ("hash_mismatch", 1, 1)


def test_uppercased_event_hash_is_hash_mismatch(make_chain) -> None:
    wire = as_dicts(make_chain(2))
    wire[1]["event_hash"] = wire[1]["event_hash"].upper()
    assert verify_chain(wire).error == "hash_mismatch"


def test_first_event_with_nonzero_sequence_is_invalid_genesis(make_chain) -> None:
    [event] = make_chain(1)
    result = verify_chain([rebuilt(event, sequence=1)])
    assert (result.error, result.error_at, result.sequence) == ("invalid_genesis", 0, 1)


def test_first_event_with_nonzero_previous_hash_is_invalid_genesis(make_chain) -> None:
    [event] = make_chain(1)
    result = verify_chain([rebuilt(event, previous_event_hash="1" * 64)])
    assert (result.error, result.error_at, result.sequence) == ("invalid_genesis", 0, 0)


def test_chain_that_starts_mid_session_is_invalid_genesis(make_chain) -> None:
    events = make_chain(5)
    result = verify_chain(events[2:])
    assert (result.error, result.error_at, result.sequence) == ("invalid_genesis", 0, 2)


@pytest.mark.parametrize("index", [1, 3])
def test_wrong_previous_hash_with_correct_own_hash_is_chain_broken(make_chain, index: int) -> None:
    events = make_chain(5)
    events[index] = rebuilt(events[index], previous_event_hash="ab" * 32)
    result = verify_chain(events)
    assert (result.error, result.error_at, result.sequence) == ("chain_broken", index, index)
    assert result.event_count == index + 1


def test_skipped_sequence_with_correct_link_is_sequence_gap(make_chain) -> None:
    events = make_chain(4)
    events[2] = rebuilt(events[2], sequence=5)
    result = verify_chain(events[:3])
    assert (result.error, result.error_at, result.sequence) == ("sequence_gap", 2, 5)


def test_repeated_sequence_with_correct_link_is_sequence_gap(make_chain) -> None:
    events = make_chain(3)
    events[2] = rebuilt(events[2], sequence=1)
    result = verify_chain(events)
    assert (result.error, result.error_at, result.sequence) == ("sequence_gap", 2, 1)


def test_duplicated_event_is_chain_broken_at_the_copy(make_chain) -> None:
    events = make_chain(3)
    result = verify_chain([events[0], events[1], events[1], events[2]])
    assert (result.error, result.error_at, result.sequence) == ("chain_broken", 2, 1)


def test_removed_middle_event_is_chain_broken(make_chain) -> None:
    events = make_chain(4)
    result = verify_chain([events[0], events[2], events[3]])
    assert (result.error, result.error_at, result.sequence) == ("chain_broken", 1, 2)


def test_swapped_events_are_chain_broken(make_chain) -> None:
    events = make_chain(4)
    result = verify_chain([events[0], events[2], events[1], events[3]])
    assert (result.error, result.error_at, result.sequence) == ("chain_broken", 1, 2)


def test_only_the_first_of_several_failures_is_reported(make_chain) -> None:
    events = make_chain(6)
    events[4] = forged(events[4], payload={"late": True})
    events[2] = rebuilt(events[2], previous_event_hash="cd" * 32)
    result = verify_chain(events)
    assert (result.error, result.error_at) == ("chain_broken", 2)


# --- the order of the checks within one event ------------------------------------------------------------


def test_hash_is_checked_before_genesis(make_chain) -> None:
    [event] = make_chain(1)
    bad = forged(event, sequence=3, previous_event_hash="1" * 64)
    assert verify_chain([bad]).error == "hash_mismatch"


def test_first_event_reports_invalid_genesis_before_anything_else(make_chain) -> None:
    events = make_chain(3)
    # the first event is genesis-invalid *and* would look broken as a link: genesis wins
    first = rebuilt(events[0], sequence=7, previous_event_hash="2" * 64)
    assert verify_chain([first]).error == "invalid_genesis"


def test_hash_is_checked_before_link(make_chain) -> None:
    events = make_chain(3)
    events[1] = forged(events[1], previous_event_hash="ef" * 32)
    assert verify_chain(events).error == "hash_mismatch"


def test_link_is_checked_before_sequence(make_chain) -> None:
    events = make_chain(3)
    events[1] = rebuilt(events[1], previous_event_hash="ef" * 32, sequence=9)
    result = verify_chain(events)
    assert (result.error, result.error_at, result.sequence) == ("chain_broken", 1, 9)


def test_hash_is_checked_before_sequence(make_chain) -> None:
    events = make_chain(3)
    events[2] = forged(events[2], sequence=9)
    result = verify_chain(events)
    assert (result.error, result.error_at, result.sequence) == ("hash_mismatch", 2, 9)


# --- malformed input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        "trace_version",
        "event_id",
        "trace_id",
        "span_id",
        "session_id",
        "sequence",
        "timestamp",
        "event_type",
        "payload",
        "event_hash",
        "previous_event_hash",
    ],
)
@pytest.mark.parametrize("index", [0, 2])
def test_event_dict_missing_a_key_is_hash_mismatch_not_an_exception(
    make_chain, field: str, index: int
) -> None:
    wire = as_dicts(make_chain(3))
    del wire[index][field]
    result = verify_chain(wire)
    assert (result.valid, result.error, result.error_at) == (False, "hash_mismatch", index)
    assert result.sequence == (None if field == "sequence" else index)


def test_event_dict_without_parent_span_id_key_is_read_as_null(make_chain) -> None:
    wire = as_dicts(make_chain(1))
    del wire[0]["parent_span_id"]
    assert verify_chain(wire).valid


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sequence", "1"),
        ("sequence", True),
        ("sequence", 1.0),
        ("sequence", None),
        ("event_id", 5),
        ("timestamp", None),
        ("payload", "not an object"),
        ("event_hash", None),
        ("previous_event_hash", 12),
    ],
)
def test_event_dict_with_a_wrong_type_is_hash_mismatch_not_an_exception(
    make_chain, field: str, value: Any
) -> None:
    wire = as_dicts(make_chain(3))
    wire[1][field] = value
    result = verify_chain(wire)
    assert (result.valid, result.error, result.error_at) == (False, "hash_mismatch", 1)
    if field == "sequence":
        assert result.sequence is None


def test_empty_dict_is_hash_mismatch() -> None:
    result = verify_chain([{}])
    assert (result.valid, result.error, result.error_at, result.sequence) == (False, "hash_mismatch", 0, None)


def test_unencodable_payload_is_refused_not_crashed(make_chain) -> None:
    wire = as_dicts(make_chain(2))
    wire[1]["payload"] = {"x": float("nan")}
    # Either a verification failure or the documented validation error: never another exception type.
    with contextlib.suppress(InvalidRequestError):
        assert verify_chain(wire).valid is False


@pytest.mark.parametrize("item", [None, 5, "event", [1, 2]], ids=repr)
def test_non_object_item_is_hash_mismatch_not_an_exception(make_chain, item: Any) -> None:
    wire: list[Any] = as_dicts(make_chain(2))
    wire.insert(1, item)
    result = verify_chain(wire)
    assert (result.valid, result.error, result.error_at) == (False, "hash_mismatch", 1)


def test_an_expected_head_catches_a_chain_cut_short_or_extended() -> None:
    from trace_helpers import build_chain

    events = build_chain(4)
    head = events[-1].event_hash
    assert verify_chain(events, expected_head=head).valid
    cut = verify_chain(events[:-1], expected_head=head)
    assert (cut.valid, cut.error, cut.error_at, cut.sequence) == (False, "head_mismatch", 2, 2)
    assert verify_chain(events, expected_head="0" * 64).error == "head_mismatch"


def test_runtime_verify_catches_a_truncated_jsonl_store(tmp_path: Path) -> None:
    from trace_helpers import run_notes_session

    runtime, session_id = run_notes_session(f"jsonl://{tmp_path}?fsync=0")
    assert runtime.verify(session_id).valid
    path = tmp_path / f"{session_id}.trace.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]))  # drop the last event: the rest still chains perfectly
    result = runtime.verify(session_id)
    assert (result.valid, result.error) == (False, "head_mismatch")
