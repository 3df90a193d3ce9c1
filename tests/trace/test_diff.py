"""diff_traces (SPEC 4.6): event-by-event comparison ignoring ids, timestamps and hashes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from trace_helpers import build_chain, run_notes_session

from cra import Difference, TraceDiff, TraceEvent, diff_traces


def wire(events: list[TraceEvent]) -> list[dict[str, Any]]:
    return [event.to_dict() for event in events]


def two_events(payload_a: dict[str, Any], payload_b: dict[str, Any], event_type: str = "x.y") -> tuple:
    a = build_chain(1, payloads=[payload_a], event_type=event_type)
    b = build_chain(1, payloads=[payload_b], event_type=event_type)
    return a, b


@pytest.fixture(scope="module")
def run_a() -> list[dict[str, Any]]:
    runtime, session_id = run_notes_session()
    return wire(runtime.get_trace(session_id))


@pytest.fixture(scope="module")
def run_b() -> list[dict[str, Any]]:
    """The same operations with other ids, another session and another clock."""
    runtime, session_id = run_notes_session(ids_start=9000, start="2026-06-01T12:30:00Z")
    return wire(runtime.get_trace(session_id))


def index_of(trace: list[dict[str, Any]], event_type: str) -> int:
    return next(i for i, event in enumerate(trace) if event["event_type"] == event_type)


# --- identical -----------------------------------------------------------------------------------------


def test_a_trace_is_identical_to_itself(run_a) -> None:
    result = diff_traces(run_a, run_a)
    assert result == TraceDiff("identical", [])
    assert result.to_dict() == {"verdict": "identical", "differences": []}


def test_empty_traces_are_identical() -> None:
    assert diff_traces([], []).verdict == "identical"


def test_two_runs_with_other_ids_timestamps_and_hashes_are_identical(run_a, run_b) -> None:
    assert run_a[0]["session_id"] != run_b[0]["session_id"]
    assert run_a[0]["timestamp"] != run_b[0]["timestamp"]
    assert run_a[-1]["event_hash"] != run_b[-1]["event_hash"]
    assert diff_traces(run_a, run_b) == TraceDiff("identical", [])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_id", "other"),
        ("trace_id", "other"),
        ("span_id", "other"),
        ("parent_span_id", "other"),
        ("session_id", "other"),
        ("sequence", 99),
        ("timestamp", "2030-01-01T00:00:00.000000Z"),
        ("event_hash", "f" * 64),
        ("previous_event_hash", "e" * 64),
        ("trace_version", "9.9"),
    ],
)
def test_envelope_fields_are_ignored(run_a, field: str, value: Any) -> None:
    b = copy.deepcopy(run_a)
    b[2][field] = value
    assert diff_traces(run_a, b).verdict == "identical"


@pytest.mark.parametrize("key", ["execution_id", "resolution_id", "request_id", "approval_id"])
def test_generated_id_keys_in_payloads_are_ignored(key: str) -> None:
    a, b = two_events({key: "id-1", "action_id": "notes.get"}, {key: "id-2", "action_id": "notes.get"})
    assert diff_traces(a, b).verdict == "identical"


@pytest.mark.parametrize("key", ["execution_id", "resolution_id", "request_id", "approval_id"])
def test_generated_id_key_present_on_one_side_only_is_ignored(key: str) -> None:
    a, b = two_events({key: "id-1", "x": 1}, {"x": 1})
    assert diff_traces(a, b).verdict == "identical"
    assert diff_traces(b, a).verdict == "identical"


def test_generated_id_keys_nested_in_payloads_are_ignored() -> None:
    a, b = two_events({"outer": {"request_id": "r1"}}, {"outer": {"request_id": "r2"}})
    assert diff_traces(a, b).verdict == "identical"


# --- semantically equivalent (only timing differs) --------------------------------------------------------


def test_changed_duration_ms_is_minor_and_semantically_equivalent(run_a) -> None:
    b = copy.deepcopy(run_a)
    i = index_of(b, "action.executed")
    b[i]["payload"]["duration_ms"] = 1234
    result = diff_traces(run_a, b)
    assert result.verdict == "semantically_equivalent"
    assert result.differences == [Difference(f"/{i}/payload/duration_ms", "value_changed", "minor", 0, 1234)]
    assert result.to_dict()["differences"] == [
        {
            "path": f"/{i}/payload/duration_ms",
            "type": "value_changed",
            "significance": "minor",
            "a": 0,
            "b": 1234,
        }
    ]


@pytest.mark.parametrize("key", ["duration_ms", "uptime_ms", "evaluation_ms", "lag_ms"])
def test_every_timing_key_is_minor(key: str) -> None:
    a, b = two_events({key: 1, "k": "v"}, {key: 2, "k": "v"})
    result = diff_traces(a, b)
    assert result.verdict == "semantically_equivalent"
    assert [(d.path, d.significance) for d in result.differences] == [(f"/0/payload/{key}", "minor")]


def test_timing_key_added_or_removed_is_minor() -> None:
    a, b = two_events({"k": 1}, {"k": 1, "duration_ms": 5})
    added = diff_traces(a, b)
    assert added.verdict == "semantically_equivalent"
    assert added.differences == [Difference("/0/payload/duration_ms", "added", "minor", None, 5)]
    removed = diff_traces(b, a)
    assert removed.differences == [Difference("/0/payload/duration_ms", "removed", "minor", 5, None)]


def test_list_items_under_a_timing_key_stay_minor() -> None:
    a, b = two_events({"duration_ms": [1, 2]}, {"duration_ms": [1, 3, 4]})
    result = diff_traces(a, b)
    assert result.verdict == "semantically_equivalent"
    assert result.differences == [
        Difference("/0/payload/duration_ms/1", "value_changed", "minor", 2, 3),
        Difference("/0/payload/duration_ms/2", "added", "minor", None, 4),
    ]


# --- different --------------------------------------------------------------------------------------------


def test_changed_action_id_is_major_and_different(run_a) -> None:
    b = copy.deepcopy(run_a)
    i = index_of(b, "action.requested")
    b[i]["payload"]["action_id"] = "notes.delete"
    result = diff_traces(run_a, b)
    assert result.verdict == "different"
    assert result.differences == [
        Difference(f"/{i}/payload/action_id", "value_changed", "major", "notes.get", "notes.delete")
    ]


def test_changed_event_type_is_major(run_a) -> None:
    b = copy.deepcopy(run_a)
    i = index_of(b, "action.executed")
    b[i]["event_type"] = "action.failed"
    result = diff_traces(run_a, b)
    assert result.verdict == "different"
    assert Difference(f"/{i}/event_type", "value_changed", "major", "action.executed", "action.failed") in (
        result.differences
    )


def test_changed_decision_is_major(run_a) -> None:
    b = copy.deepcopy(run_a)
    i = index_of(b, "policy.evaluated")
    b[i]["payload"]["result"] = "deny"
    result = diff_traces(run_a, b)
    assert result.verdict == "different"
    assert [(d.path, d.type, d.significance) for d in result.differences] == [
        (f"/{i}/payload/result", "value_changed", "major")
    ]


def test_event_added_at_the_end_is_major(run_a) -> None:
    extra = dict(copy.deepcopy(run_a[-1]), event_type="session.ended")
    result = diff_traces(run_a, [*run_a, extra])
    assert result.verdict == "different"
    assert result.differences == [Difference(f"/{len(run_a)}", "added", "major", None, "session.ended")]


def test_event_removed_from_the_end_is_major(run_a) -> None:
    result = diff_traces(run_a, run_a[:-1])
    assert result.verdict == "different"
    assert result.differences == [
        Difference(f"/{len(run_a) - 1}", "removed", "major", run_a[-1]["event_type"], None)
    ]


def test_event_removed_from_the_middle_shifts_and_differs(run_a) -> None:
    b = run_a[:2] + run_a[3:]
    result = diff_traces(run_a, b)
    assert result.verdict == "different"
    assert result.differences[-1] == Difference(
        f"/{len(run_a) - 1}", "removed", "major", run_a[-1]["event_type"], None
    )


def test_minor_and_major_together_are_different(run_a) -> None:
    b = copy.deepcopy(run_a)
    b[index_of(b, "action.executed")]["payload"]["duration_ms"] = 7
    b[index_of(b, "action.requested")]["payload"]["parameters_hash"] = "0" * 64
    result = diff_traces(run_a, b)
    assert result.verdict == "different"
    assert sorted(d.significance for d in result.differences) == ["major", "minor"]


def test_payload_key_added_and_removed_are_major() -> None:
    a, b = two_events({"keep": 1, "gone": 2}, {"keep": 1, "new": 3})
    result = diff_traces(a, b)
    assert result.verdict == "different"
    assert result.differences == [
        Difference("/0/payload/gone", "removed", "major", 2, None),
        Difference("/0/payload/new", "added", "major", None, 3),
    ]


@pytest.mark.parametrize(("old", "new"), [(1, True), (0, False), (1, 1.0), (None, 0), ("1", 1), ([], {})])
def test_same_looking_values_of_another_type_are_value_changed(old: Any, new: Any) -> None:
    a, b = two_events({"v": old}, {"v": new})
    result = diff_traces(a, b)
    assert result.verdict == "different"
    assert result.differences == [Difference("/0/payload/v", "value_changed", "major", old, new)]


# --- paths ------------------------------------------------------------------------------------------------


def test_nested_difference_has_a_json_pointer_path() -> None:
    a, b = two_events({"a": {"b": {"c": [1, 2, {"d": "x"}]}}}, {"a": {"b": {"c": [1, 2, {"d": "y"}]}}})
    assert diff_traces(a, b).differences == [
        Difference("/0/payload/a/b/c/2/d", "value_changed", "major", "x", "y")
    ]


def test_pointer_escapes_slash_and_tilde_in_keys() -> None:
    a, b = two_events({"a/b": {"~c": 1}}, {"a/b": {"~c": 2}})
    assert [d.path for d in diff_traces(a, b).differences] == ["/0/payload/a~1b/~0c"]


def test_list_growth_and_shrink_report_indexes() -> None:
    a, b = two_events({"l": [1, 2]}, {"l": [1, 2, 3, 4]})
    assert diff_traces(a, b).differences == [
        Difference("/0/payload/l/2", "added", "major", None, 3),
        Difference("/0/payload/l/3", "added", "major", None, 4),
    ]
    assert diff_traces(b, a).differences == [
        Difference("/0/payload/l/2", "removed", "major", 3, None),
        Difference("/0/payload/l/3", "removed", "major", 4, None),
    ]


def test_difference_in_a_later_event_names_its_index() -> None:
    a = build_chain(3, payloads=[{"i": 0}, {"i": 1}, {"i": 2}])
    b = build_chain(3, payloads=[{"i": 0}, {"i": 1}, {"i": 20}])
    assert [d.path for d in diff_traces(a, b).differences] == ["/2/payload/i"]


# --- input forms -----------------------------------------------------------------------------------------


def test_trace_events_and_dicts_give_the_same_diff(run_a, run_b) -> None:
    events_a = [TraceEvent.from_dict(e) for e in run_a]
    b = copy.deepcopy(run_b)
    b[index_of(b, "action.executed")]["payload"]["duration_ms"] = 3
    events_b = [TraceEvent.from_dict(e) for e in b]
    expected = diff_traces(run_a, b)
    assert expected.verdict == "semantically_equivalent"
    assert diff_traces(events_a, events_b) == expected
    assert diff_traces(events_a, b) == expected
    assert diff_traces(run_a, events_b) == expected


def test_events_without_payload_compare_as_empty_payloads() -> None:
    assert diff_traces([{"event_type": "x"}], [{"event_type": "x", "payload": {}}]).verdict == "identical"
