"""SPEC 4.6 determinism: every session of every conformance case, replayed against the Atlas it ran with,
reports every recorded decision and not one flip."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import cra
from cra.conformance import runner
from cra.replay import ReplayReport, replay, replay_session

CASES = sorted((Path(__file__).parents[1] / "conformance").glob("*.json"))


class _Recorded:
    """Sessions of one case: the runtime that ran them, their traces and their replays."""

    def __init__(self, runtime: cra.Runtime) -> None:
        self.runtime = runtime
        self.traces = {s.session_id: runtime.get_trace(s.session_id) for s in runtime.sessions()}
        self.reports = {sid: replay_session(runtime, sid) for sid in self.traces}


def _run(path: Path) -> _Recorded | None:
    """Run a case through the conformance runner, keeping the runtime it made (the runner builds its
    runtime from the module's ``Runtime`` name, so a recording subclass stands in for it here)."""
    made: list[cra.Runtime] = []

    class Recording(cra.Runtime):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "Runtime", Recording)
        result = runner.run_case(orjson.loads(path.read_bytes()), path.name)
    assert result.status == "passed", result.error
    if not made:
        return None
    recorded = _Recorded(made[0])
    made[0].close()
    return recorded


@pytest.fixture(scope="module")
def recorded() -> Iterator[dict[str, _Recorded]]:
    """Every conformance case that runs a runtime, run once for this module."""
    out = {path.stem: r for path in CASES if (r := _run(path)) is not None}
    yield out


def _expected_decisions(events: list[cra.TraceEvent]) -> Counter[tuple[str, str | None, str]]:
    """What the trace itself says was decided: every verdict, every resolution, every execute ending."""
    reader_counts: Counter[tuple[str, str | None, str]] = Counter()
    results: dict[str, list[str]] = {}
    for event in events:
        payload = event.payload
        if event.event_type == "policy.evaluated":
            reader_counts["resolve", payload["action_id"], payload["result"]] += 1
            results.setdefault(event.span_id, []).append(payload["result"])
        elif event.event_type == "carp.resolution.completed":
            reader_counts["resolve", None, payload["decision_type"]] += 1
        elif event.event_type == "carp.resolution.cached":  # records no decision_type: SPEC 3.1's rule
            verdicts = results.get(event.span_id, [])
            allowed = [r for r in verdicts if r in ("allow", "requires_approval")]
            decision = (
                "deny"
                if not allowed
                else "requires_approval"
                if "requires_approval" in allowed
                else "partial"
                if len(allowed) < len(verdicts)
                else "allow"
            )
            reader_counts["resolve", None, decision] += 1
        elif event.event_type == "action.requested":
            reader_counts["execute", payload["action_id"], "*"] += 1
    return reader_counts


def _reported(report: ReplayReport) -> Counter[tuple[str, str | None, str]]:
    return Counter(
        (d.operation, d.action_id, d.original if d.operation == "resolve" else "*") for d in report.decisions
    )


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_replay_against_the_original_atlas_flips_nothing(recorded: dict[str, _Recorded], path: Path) -> None:
    case = recorded.get(path.stem)
    if case is None:
        pytest.skip("this case runs no runtime (schema, hash or diff checks only)")
    for session_id, report in case.reports.items():
        assert report.session_id == session_id
        flipped = [d.to_dict() for d in report.flipped]
        assert flipped == [], f"{path.stem} session {session_id}: {flipped}"
        assert report.identical and report.changed == 0
        # Every recorded decision was re-run: the report holds exactly what the trace says was decided.
        assert _reported(report) == _expected_decisions(case.traces[session_id])
        assert report.atlas_digest_original == report.atlas_digest_replayed
        assert all(original == replayed for _id, original, replayed in report.atlases)


def test_the_cases_cover_every_kind_of_ending(recorded: dict[str, _Recorded]) -> None:
    """The determinism test means something only if the cases decide in every way there is. (``authorized``
    is not among them: the cases report each outcome right after the execute, which reads as a handler run;
    test_impact covers it.)"""
    endings = {d.original for case in recorded.values() for r in case.reports.values() for d in r.decisions}
    assert {
        "allow",
        "deny",
        "requires_approval",
        "rate_limited",
        "budget_exceeded",
        "partial",
        "success",
        "pending_approval",
        "denied:ACTION_NOT_ALLOWED",
        "denied:RATE_LIMITED",
        "denied:BUDGET_EXCEEDED",
        "denied:APPROVAL_REJECTED",
        "failed:RESOLUTION_EXPIRED",
        "failed:INVALID_PARAMETERS",
    } <= endings
    total = sum(len(r.decisions) for case in recorded.values() for r in case.reports.values())
    assert total > 400


def test_a_jsonl_export_replays_like_the_live_trace(recorded: dict[str, _Recorded], tmp_path: Path) -> None:
    case = recorded["cra.execute.requires_confirmation"]
    ((session_id, events),) = case.traces.items()
    path = tmp_path / "session.trace.jsonl"
    cra.write_jsonl(path, events)
    atlas = case.runtime.get_atlas(events[0].payload["atlases"][0]["atlas_id"])
    report = replay(cra.read_jsonl(path), atlas)
    assert report.identical
    assert [d.to_dict() for d in report.decisions] == [
        d.to_dict() for d in case.reports[session_id].decisions
    ]


def test_shared_windows_need_the_other_sessions(recorded: dict[str, _Recorded]) -> None:
    """An agent-scope limit is filled by the agent's other sessions: replayed alone, the session's denial
    cannot be reproduced, which is why replay_session replays them alongside."""
    case = recorded["cra.scope.agent"]
    atlas = case.runtime.get_atlas("org.example.api")
    changes = {sid: [d.change for d in replay(events, atlas).flipped] for sid, events in case.traces.items()}
    assert "denied:RATE_LIMITED→success" in [c for found in changes.values() for c in found]
    assert all(report.identical for report in case.reports.values())
