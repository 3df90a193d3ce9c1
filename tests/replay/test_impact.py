"""The policy impact report: replaying a recorded session against a changed Atlas reports exactly the
decisions the change flips, each with the right change and the sequence of the event that recorded it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

import cra
from cra.replay import ReplayDecision, ReplayReport, replay, replay_session

from .conftest import MANIFEST, edited, manifest, rechained


@dataclass
class Recorded:
    """A session recorded by the ``runtime`` fixture: its trace and the ids the test refers to."""

    runtime: cra.Runtime
    events: list[cra.TraceEvent]
    resolutions: dict[str, str]  # name -> resolution id
    executions: dict[str, str]  # name -> execution id

    @property
    def original(self) -> cra.Atlas:
        return self.runtime.get_atlas("org.example.desk")

    def verdict_sequence(self, resolution: str, action_id: str) -> int:
        """The sequence of the policy.evaluated event of ``action_id`` in resolution ``resolution``."""
        span = next(
            e.span_id
            for e in self.events
            if e.event_type.startswith("carp.resolution.")
            and e.payload["resolution_id"] == self.resolutions[resolution]
        )
        return next(
            e.sequence
            for e in self.events
            if e.span_id == span
            and e.event_type == "policy.evaluated"
            and e.payload["action_id"] == action_id
        )

    def closing_sequence(self, resolution: str) -> int:
        return next(
            e.sequence
            for e in self.events
            if e.event_type.startswith("carp.resolution.")
            and e.payload["resolution_id"] == self.resolutions[resolution]
        )

    def ending_sequence(self, execution: str) -> int:
        """The sequence of the event that ended the execute call (its action.approved when it ran)."""
        span = next(
            e.span_id
            for e in self.events
            if e.event_type == "action.requested" and e.payload["execution_id"] == self.executions[execution]
        )
        endings = ("action.denied", "approval.requested", "action.approved", "action.failed")
        return next(e.sequence for e in self.events if e.span_id == span and e.event_type in endings)


def _boom(_parameters: dict[str, Any]) -> Any:
    raise RuntimeError("the ticket system is down")


@pytest.fixture
def recorded(runtime: cra.Runtime, clock: cra.ManualClock) -> Recorded:
    """One session that decides in most ways there are:

    r1 (partial: customer.delete denied); e1 ticket.read {} success; e2 ticket.read with parameters
    success; e3 ticket.read {} one second later success; e4 ticket.reply success; e5 customer.delete denied
    (not allowed); e6 refund.issue authorized (no handler), r2 resolved, then e6 reported by ``complete``;
    r3 resolved for the refunds capability; e7 refund.issue on r3 authorized and never reported; e8
    ticket.reply whose handler fails; the session ends (e7 then fails with SESSION_ENDED).
    """
    sid = runtime.create_session("desk-bot", "Help the customer").session_id
    res: dict[str, str] = {}
    exe: dict[str, str] = {}
    res["r1"] = runtime.resolve(sid).resolution_id
    exe["e1"] = runtime.execute(sid, res["r1"], "ticket.read", {}).execution_id
    exe["e2"] = runtime.execute(sid, res["r1"], "ticket.read", {"ticket_id": "T-1"}).execution_id
    clock.advance(1)
    exe["e3"] = runtime.execute(sid, res["r1"], "ticket.read", {}).execution_id
    exe["e4"] = runtime.execute(sid, res["r1"], "ticket.reply", {}).execution_id
    exe["e5"] = runtime.execute(sid, res["r1"], "customer.delete", {}).execution_id
    e6 = runtime.execute(sid, res["r1"], "refund.issue", {})
    assert e6.status == "authorized"
    exe["e6"] = e6.execution_id
    res["r2"] = runtime.resolve(sid).resolution_id
    runtime.complete(e6.execution_id, result={"refunded": True})
    res["r3"] = runtime.resolve(sid, required_capabilities=["refunds"]).resolution_id
    exe["e7"] = runtime.execute(sid, res["r3"], "refund.issue", {}).execution_id
    runtime.register("ticket.reply", _boom)
    e8 = runtime.execute(sid, res["r1"], "ticket.reply", {})
    assert e8.status == "error"
    exe["e8"] = e8.execution_id
    runtime.end_session(sid)
    return Recorded(runtime, runtime.get_trace(sid), res, exe)


def _changes(report: ReplayReport) -> list[tuple[int, str, str | None, str | None]]:
    return [(d.sequence, d.operation, d.action_id, d.change) for d in report.flipped]


def test_the_original_atlas_reproduces_every_decision(recorded: Recorded) -> None:
    report = replay(recorded.events, recorded.original)
    assert report.identical, [d.to_dict() for d in report.flipped]
    by_execution = {d.execution_id: d.original for d in report.decisions if d.operation == "execute"}
    assert by_execution == {
        recorded.executions["e1"]: "success",
        recorded.executions["e2"]: "success",
        recorded.executions["e3"]: "success",
        recorded.executions["e4"]: "success",
        recorded.executions["e5"]: "denied:ACTION_NOT_ALLOWED",
        recorded.executions["e6"]: "authorized",
        recorded.executions["e7"]: "authorized",
        recorded.executions["e8"]: "error",
    }
    # r1, r2: 4 verdicts and the decision each; r3: 1 verdict and the decision; 8 executions.
    assert report.unchanged == len(report.decisions) == 2 * 5 + 2 + 8
    assert report.notes == (
        "1 execution(s) recorded only a hash of their parameters: their parameters were not validated again "
        "(the original validation's verdict was kept)",
    )
    digest = recorded.original.digest
    assert (report.atlas_digest_original, report.atlas_digest_replayed) == (digest, digest)


def test_an_allow_policy_turned_into_deny(recorded: Recorded) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["policies"][0]["type"] = "deny"  # allow-tickets

    atlas = edited(edit)
    report = replay(recorded.events, atlas, atlases=[recorded.original])
    assert (report.atlas_digest_original, report.atlas_digest_replayed) == (
        recorded.original.digest,
        atlas.digest,
    )
    seq = recorded.verdict_sequence
    ending = recorded.ending_sequence
    assert _changes(report) == [
        (seq("r1", "ticket.read"), "resolve", "ticket.read", "allow→deny"),
        (seq("r1", "ticket.reply"), "resolve", "ticket.reply", "allow→deny"),
        (ending("e1"), "execute", "ticket.read", "success→denied:ACTION_NOT_ALLOWED"),
        (ending("e2"), "execute", "ticket.read", "success→denied:ACTION_NOT_ALLOWED"),
        (ending("e3"), "execute", "ticket.read", "success→denied:ACTION_NOT_ALLOWED"),
        (ending("e4"), "execute", "ticket.reply", "success→denied:ACTION_NOT_ALLOWED"),
        (seq("r2", "ticket.read"), "resolve", "ticket.read", "allow→deny"),
        (seq("r2", "ticket.reply"), "resolve", "ticket.reply", "allow→deny"),
        (ending("e8"), "execute", "ticket.reply", "error→denied:ACTION_NOT_ALLOWED"),
    ]
    first = report.flipped[0]
    assert (first.original_policy, first.replayed_policy) == ("allow-tickets", "allow-tickets")
    assert first.resolution_id == recorded.resolutions["r1"]
    assert report.changed == 9 and report.unchanged == len(report.decisions) - 9
    assert not report.identical


def test_an_added_rate_limit_denies_the_call_past_it(recorded: Recorded) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["policies"].append(
            {
                "policy_id": "read-limit",
                "type": "rate_limit",
                "actions": ["ticket.read"],
                "parameters": {"max_calls": 2, "window_seconds": 60},
            }
        )

    report = replay(recorded.events, edited(edit), atlases=[recorded.original])
    assert _changes(report) == [
        (recorded.ending_sequence("e3"), "execute", "ticket.read", "success→denied:RATE_LIMITED"),
        (recorded.verdict_sequence("r2", "ticket.read"), "resolve", "ticket.read", "allow→rate_limited"),
    ]
    # r1's verdict for ticket.read is still allow, now granted by the limit policy: not a flip.
    r1_read = next(
        d for d in report.decisions if d.sequence == recorded.verdict_sequence("r1", "ticket.read")
    )
    assert (r1_read.status, r1_read.original_policy, r1_read.replayed_policy) == (
        "unchanged",
        "allow-tickets",
        "read-limit",
    )
    assert report.flipped[0].replayed_policy == "read-limit"


def test_a_raised_risk_tier_needs_approval(recorded: Recorded) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["actions"][1]["risk_tier"] = "high"  # ticket.reply
        m["policies"].append(
            {"policy_id": "approve-high", "type": "require_approval", "conditions": {"risk_tiers": ["high"]}}
        )

    report = replay(recorded.events, edited(edit), atlases=[recorded.original])
    assert _changes(report) == [
        (
            recorded.verdict_sequence("r1", "ticket.reply"),
            "resolve",
            "ticket.reply",
            "allow→requires_approval",
        ),
        (recorded.closing_sequence("r1"), "resolve", None, "partial→requires_approval"),
        (recorded.ending_sequence("e4"), "execute", "ticket.reply", "success→pending_approval"),
        (
            recorded.verdict_sequence("r2", "ticket.reply"),
            "resolve",
            "ticket.reply",
            "allow→requires_approval",
        ),
        (recorded.closing_sequence("r2"), "resolve", None, "partial→requires_approval"),
        (recorded.ending_sequence("e8"), "execute", "ticket.reply", "error→pending_approval"),
    ]


def test_a_deny_policy_turned_into_allow(recorded: Recorded) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["policies"][2]["type"] = "allow"  # no-deletes

    report = replay(recorded.events, edited(edit), atlases=[recorded.original])
    assert _changes(report) == [
        (recorded.verdict_sequence("r1", "customer.delete"), "resolve", "customer.delete", "deny→allow"),
        (recorded.closing_sequence("r1"), "resolve", None, "partial→allow"),
        (recorded.ending_sequence("e5"), "execute", "customer.delete", "denied:ACTION_NOT_ALLOWED→success"),
        (recorded.verdict_sequence("r2", "customer.delete"), "resolve", "customer.delete", "deny→allow"),
        (recorded.closing_sequence("r2"), "resolve", None, "partial→allow"),
    ]


def test_a_new_action_is_a_candidate_only_the_replay_has(recorded: Recorded) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["actions"].append({"action_id": "ticket.close", "name": "Close", "description": "Close"})

    report = replay(recorded.events, edited(edit), atlases=[recorded.original])
    assert _changes(report) == [
        (recorded.closing_sequence("r1"), "resolve", "ticket.close", "absent→allow"),
        (recorded.closing_sequence("r2"), "resolve", "ticket.close", "absent→allow"),
    ]


def test_parameter_schemas_are_checked_where_parameters_are_known(recorded: Recorded) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["actions"][0]["parameters_schema"]["required"] = ["ticket_id"]

    report = replay(recorded.events, edited(edit), atlases=[recorded.original])
    # e1 and e3 ran with {} (its hash is recognisable): validated again, they fail now. e2's parameters were
    # recorded only as a hash: its validation keeps the original verdict.
    assert _changes(report) == [
        (recorded.ending_sequence("e1"), "execute", "ticket.read", "success→failed:INVALID_PARAMETERS"),
        (recorded.ending_sequence("e3"), "execute", "ticket.read", "success→failed:INVALID_PARAMETERS"),
    ]
    assert any("hash of their parameters" in note for note in report.notes)


def test_an_unknown_parameter_failure_keeps_its_verdict_unless_the_schema_is_gone(
    runtime: cra.Runtime,
) -> None:
    sid = runtime.create_session("desk-bot", "Help").session_id
    rid = runtime.resolve(sid).resolution_id
    with pytest.raises(cra.ValidationError):
        runtime.execute(sid, rid, "ticket.read", {"ticket": 1})
    events = runtime.get_trace(sid)
    original = runtime.get_atlas("org.example.desk")
    assert replay(events, original).identical
    changed = [d.change for d in replay(events, original).decisions if d.operation == "execute"]
    assert changed == [None]

    def drop_schema(m: dict[str, Any]) -> None:
        del m["actions"][0]["parameters_schema"]

    report = replay(events, edited(drop_schema), atlases=[original])
    assert [d.change for d in report.flipped] == ["failed:INVALID_PARAMETERS→success"]


def test_a_resolve_the_new_atlas_refuses(recorded: Recorded) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["capabilities"] = [c for c in m["capabilities"] if c["capability_id"] != "refunds"]

    report = replay(recorded.events, edited(edit), atlases=[recorded.original])
    assert _changes(report) == [
        (
            recorded.verdict_sequence("r3", "refund.issue"),
            "resolve",
            "refund.issue",
            "allow→error:UNKNOWN_CAPABILITY",
        ),
        (recorded.closing_sequence("r3"), "resolve", None, "allow→error:UNKNOWN_CAPABILITY"),
        (recorded.ending_sequence("e7"), "execute", "refund.issue", "authorized→failed:RESOLUTION_NOT_FOUND"),
    ]


def test_approvals_are_re_issued_and_flip_with_the_policy(runtime: cra.Runtime) -> None:
    runtime.load_atlas(
        manifest(
            version="2.0.0",
            policies=[
                *MANIFEST["policies"],
                {"policy_id": "approve-replies", "type": "require_approval", "actions": ["ticket.reply"]},
            ],
        )
    )
    sid = runtime.create_session("desk-bot", "Help").session_id
    resolution = runtime.resolve(sid)
    assert resolution.decision_type == "requires_approval"
    first = runtime.execute(sid, resolution.resolution_id, "ticket.reply", {})
    assert first.status == "pending_approval"
    assert first.approval_id is not None
    runtime.approve(first.approval_id, "lead")
    assert runtime.execute(sid, resolution.resolution_id, "ticket.reply", {}).status == "success"
    events = runtime.get_trace(sid)

    report = replay_session(runtime, sid)
    assert report.identical  # the approval was granted again in the replay, so the second call ran
    assert [d.original for d in report.decisions if d.operation == "execute"] == [
        "pending_approval",
        "success",
    ]

    without = cra.load_atlas(manifest(version="2.1.0"))
    impact = replay(events, without, atlases=runtime.atlases())
    assert [(d.action_id, d.change) for d in impact.flipped] == [
        ("ticket.reply", "requires_approval→allow"),
        (None, "requires_approval→partial"),
        ("ticket.reply", "pending_approval→success"),
    ]


def test_a_rejected_approval_replays_as_a_rejection(runtime: cra.Runtime) -> None:
    runtime.load_atlas(
        manifest(
            version="2.0.0",
            policies=[
                *MANIFEST["policies"],
                {"policy_id": "approve-replies", "type": "require_approval", "actions": ["ticket.reply"]},
            ],
        )
    )
    sid = runtime.create_session("desk-bot", "Help").session_id
    resolution = runtime.resolve(sid)
    assert resolution.approval_id is not None
    runtime.reject(resolution.approval_id, "lead")
    denied = runtime.execute(sid, resolution.resolution_id, "ticket.reply", {})
    assert denied.error_code == "APPROVAL_REJECTED"
    report = replay_session(runtime, sid)
    assert report.identical
    assert report.decisions[-1].original == "denied:APPROVAL_REJECTED"


def test_replay_session_replaces_the_atlas_with_its_id(recorded: Recorded) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["policies"][0]["type"] = "deny"

    session_id = recorded.events[0].session_id
    via_runtime = replay_session(recorded.runtime, session_id, edited(edit))
    direct = replay(recorded.events, edited(edit), atlases=[recorded.original])
    assert [d.to_dict() for d in via_runtime.decisions] == [d.to_dict() for d in direct.decisions]
    assert via_runtime.changed == 9


def test_a_new_version_among_the_candidates_is_used_by_its_id(recorded: Recorded) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["policies"][2]["type"] = "allow"

    report = replay(recorded.events, atlases=[edited(edit)])
    assert report.changed == 5


def test_report_to_dict(recorded: Recorded) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["policies"][2]["type"] = "allow"

    atlas = edited(edit)
    body = replay(recorded.events, atlas, atlases=[recorded.original]).to_dict()
    assert body["identical"] is False
    assert (body["changed"], body["atlas_digest_original"], body["atlas_digest_replayed"]) == (
        5,
        recorded.original.digest,
        atlas.digest,
    )
    assert body["atlases"] == [
        {"atlas_id": "org.example.desk", "original": recorded.original.digest, "replayed": atlas.digest}
    ]
    flipped = [d for d in body["decisions"] if d["status"] == "flipped"]
    assert flipped[0] == {
        "sequence": recorded.verdict_sequence("r1", "customer.delete"),
        "operation": "resolve",
        "action_id": "customer.delete",
        "original": "deny",
        "replayed": "allow",
        "status": "flipped",
        "change": "deny→allow",
        "resolution_id": recorded.resolutions["r1"],
        "execution_id": None,
        "original_policy": "no-deletes",
        "replayed_policy": "no-deletes",
    }
    assert ReplayDecision(1, "execute", "a.b", "success", "success").change is None


def test_progress_is_reported_per_operation(recorded: Recorded) -> None:
    seen: list[tuple[int, int]] = []
    replay(recorded.events, recorded.original, progress=lambda done, total: seen.append((done, total)))
    total = seen[-1][1]
    assert seen == [(n, total) for n in range(1, total + 1)]
    # start, 3 resolves, 8 executes, the outcomes recorded later (e6's complete, e7's SESSION_ENDED), end
    assert total == 1 + 3 + 8 + 2 + 1


def test_time_windows_are_evaluated_at_the_recorded_time(
    runtime: cra.Runtime, clock: cra.ManualClock
) -> None:
    sid = runtime.create_session("desk-bot", "Help").session_id
    runtime.resolve(sid)
    clock.advance(10 * 3600)  # 19:00
    runtime.resolve(sid)
    events = runtime.get_trace(sid)

    def office_hours(m: dict[str, Any]) -> None:
        m["policies"][0]["conditions"] = {"time_window": {"start": "08:00", "end": "18:00"}}

    report = replay(events, edited(office_hours), atlases=runtime.atlases())
    assert [(d.action_id, d.change) for d in report.flipped] == [
        ("ticket.read", "allow→deny"),
        ("ticket.reply", "allow→deny"),
    ]
    assert report.flipped[0].sequence > events[5].sequence  # the evening resolve, not the morning one


def test_handlers_of_the_recorded_runtime_are_not_needed(runtime: cra.Runtime) -> None:
    """The replay runs stand-in handlers in its own runtime: the recording runtime's are never called."""
    calls: list[str] = []

    def read(_parameters: dict[str, Any]) -> dict[str, bool]:
        calls.append("read")
        return {"ok": True}

    runtime.register("ticket.read", read)
    sid = runtime.create_session("desk-bot", "Help").session_id
    rid = runtime.resolve(sid).resolution_id
    runtime.execute(sid, rid, "ticket.read", {})
    assert calls == ["read"]
    assert replay_session(runtime, sid).identical
    assert calls == ["read"]


def test_an_execution_of_something_that_is_no_action_id(runtime: cra.Runtime) -> None:
    sid = runtime.create_session("desk-bot", "Help").session_id
    rid = runtime.resolve(sid).resolution_id
    assert runtime.execute(sid, rid, "Not An Action", {}).error_code == "ACTION_NOT_ALLOWED"
    report = replay_session(runtime, sid)
    assert report.identical
    assert report.decisions[-1].original == "denied:ACTION_NOT_ALLOWED"


def test_lost_events_are_noted(runtime: cra.Runtime) -> None:
    sid = runtime.create_session("desk-bot", "Help").session_id
    runtime.resolve(sid)
    events = runtime.get_trace(sid)
    gap = events[0].to_dict()
    gap.update(event_id="00000000-0000-7000-8000-00000000ffff", event_type="trace.gap")
    gap["payload"] = {"lost_events": 3, "reason": "buffer_overflow"}
    with_gap = rechained([events[0], cra.TraceEvent.from_dict(gap), *events[1:]])
    report = replay(with_gap, runtime.get_atlas("org.example.desk"))
    assert report.identical
    assert report.notes == (
        "trace.gap at sequence 1: 3 events were lost; decisions after it may replay differently",
    )
