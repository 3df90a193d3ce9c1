"""Approvals (SPEC 3.3): pending, granted once per action, rejected, decided once, expiring with their
resolution, and their events."""

from __future__ import annotations

import pytest

import cra
from cra.errors import (
    ApprovalAlreadyDecidedError,
    ApprovalExpiredError,
    ApprovalNotFoundError,
    SessionEndedError,
)

from .helpers import action, event_types, manifest, payloads, policy, snapshot


@pytest.fixture
def bank(rt: cra.Runtime) -> cra.Runtime:
    rt.load_atlas(
        manifest(
            actions=[
                action("bank.balance"),
                action("bank.transfer"),
                action("bank.refund"),
                action("bank.close", requires_confirmation=True),
            ],
            policies=[
                policy("approve-money", "require_approval", ["bank.transfer", "bank.refund"]),
                policy("allow-all", "allow"),
            ],
        )
    )
    for action_id in ("bank.balance", "bank.transfer", "bank.refund", "bank.close"):
        rt.register(action_id, lambda params, a=action_id: {"done": a})
    return rt


def start(rt: cra.Runtime, agent_id: str = "agent-1") -> tuple[str, cra.Resolution]:
    session = rt.create_session(agent_id, "Move money")
    return session.session_id, rt.resolve(session.session_id)


def test_resolution_carries_one_approval_for_every_action_that_needs_it(bank: cra.Runtime) -> None:
    sid, resolution = start(bank)
    assert resolution.decision_type == "requires_approval"
    confirm = [a.action_id for a in resolution.allowed_actions if a.requires_confirmation]
    assert confirm == ["bank.transfer", "bank.refund", "bank.close"]
    (pending,) = bank.approvals(sid)
    assert pending.approval_id == resolution.approval_id
    assert (pending.status, pending.action_ids, pending.resolution_id) == (
        "pending",
        ["bank.transfer", "bank.refund", "bank.close"],
        resolution.resolution_id,
    )
    assert pending.expires_at == resolution.expires_at
    assert bank.stats()["pending_approvals"] == 1


def test_executing_before_approval_is_pending_and_records_approval_requested(bank: cra.Runtime) -> None:
    sid, resolution = start(bank)
    response = bank.execute(sid, resolution.resolution_id, "bank.transfer", {"amount": 5})
    assert (response.status, response.http_status, response.approval_id) == (
        "pending_approval",
        202,
        resolution.approval_id,
    )
    assert response.result is None and not response.ok
    assert event_types(bank, sid)[-2:] == ["action.requested", "approval.requested"]
    assert payloads(bank, sid, "approval.requested") == [
        {"approval_id": resolution.approval_id, "action_id": "bank.transfer"}
    ]
    assert "action.approved" not in event_types(bank, sid)


def test_actions_without_confirmation_run_without_approval(bank: cra.Runtime) -> None:
    sid, resolution = start(bank)
    assert bank.execute(sid, resolution.resolution_id, "bank.balance").status == "success"


def test_approval_lets_each_covered_action_run_once(bank: cra.Runtime) -> None:
    sid, resolution = start(bank)
    approval = bank.approve(resolution.approval_id, "alice", "looks fine")  # type: ignore[arg-type]
    assert (approval.status, approval.approver, approval.note) == ("approved", "alice", "looks fine")
    assert approval.decided_at == "2025-01-01T00:00:00.000000Z"
    assert payloads(bank, sid, "approval.granted") == [
        {"approval_id": resolution.approval_id, "approver": "alice"}
    ]
    assert bank.approvals(sid) == []

    first = bank.execute(sid, resolution.resolution_id, "bank.transfer", {"amount": 5})
    assert (first.status, first.result) == ("success", {"done": "bank.transfer"})
    assert bank.execute(sid, resolution.resolution_id, "bank.refund").status == "success"
    assert bank.execute(sid, resolution.resolution_id, "bank.close").status == "success"

    second = bank.execute(sid, resolution.resolution_id, "bank.transfer", {"amount": 5})
    assert second.status == "pending_approval"
    assert second.approval_id not in (None, resolution.approval_id)
    (fresh,) = bank.approvals(sid)
    assert (fresh.approval_id, fresh.action_ids) == (second.approval_id, ["bank.transfer"])
    bank.approve(second.approval_id, "bob")  # type: ignore[arg-type]
    assert bank.execute(sid, resolution.resolution_id, "bank.transfer", {"amount": 5}).status == "success"
    assert bank.verify(sid).valid


def test_pending_execution_then_approval_then_retry_succeeds(bank: cra.Runtime) -> None:
    sid, resolution = start(bank)
    pending = bank.execute(sid, resolution.resolution_id, "bank.refund")
    again = bank.execute(sid, resolution.resolution_id, "bank.refund")
    assert again.approval_id == pending.approval_id  # still the same pending approval
    bank.approve(pending.approval_id, "alice")  # type: ignore[arg-type]
    done = bank.execute(sid, resolution.resolution_id, "bank.refund")
    assert done.status == "success"
    assert event_types(bank, sid)[-3:] == ["action.requested", "action.approved", "action.executed"]


def test_reject_denies_the_covered_actions(bank: cra.Runtime) -> None:
    sid, resolution = start(bank)
    rejected = bank.reject(resolution.approval_id, "carol", "no")  # type: ignore[arg-type]
    assert rejected.status == "rejected"
    assert payloads(bank, sid, "approval.rejected") == [
        {"approval_id": resolution.approval_id, "approver": "carol"}
    ]
    for _ in range(2):
        response = bank.execute(sid, resolution.resolution_id, "bank.transfer")
        assert (response.status, response.http_status, response.error_code) == (
            "denied",
            403,
            "APPROVAL_REJECTED",
        )
        assert event_types(bank, sid)[-2:] == ["action.requested", "action.denied"]
    assert payloads(bank, sid, "action.denied")[-1]["policy_id"] == "approve-money"
    with pytest.raises(cra.PolicyError):
        bank.execute(sid, resolution.resolution_id, "bank.refund").raise_for_status()
    assert bank.execute(sid, resolution.resolution_id, "bank.balance").status == "success"


def test_a_decided_approval_cannot_be_decided_again(bank: cra.Runtime) -> None:
    _, resolution = start(bank)
    bank.approve(resolution.approval_id, "alice")  # type: ignore[arg-type]
    before = snapshot(bank)
    with pytest.raises(ApprovalAlreadyDecidedError) as info:
        bank.approve(resolution.approval_id, "alice")  # type: ignore[arg-type]
    assert info.value.code == "APPROVAL_ALREADY_DECIDED"
    with pytest.raises(ApprovalAlreadyDecidedError):
        bank.reject(resolution.approval_id, "bob")  # type: ignore[arg-type]
    assert snapshot(bank) == before


def test_approving_after_the_resolution_expired_fails(bank: cra.Runtime, clock: cra.ManualClock) -> None:
    sid, resolution = start(bank)
    clock.advance(3600)
    before = snapshot(bank)
    with pytest.raises(ApprovalExpiredError) as info:
        bank.approve(resolution.approval_id, "alice")  # type: ignore[arg-type]
    assert info.value.code == "APPROVAL_EXPIRED"
    with pytest.raises(ApprovalExpiredError):
        bank.reject(resolution.approval_id, "alice")  # type: ignore[arg-type]
    assert snapshot(bank) == before
    assert bank.approvals(sid) == []
    assert bank.get_approval(resolution.approval_id).status == "expired"  # type: ignore[arg-type]
    assert [a.status for a in bank.approvals(sid, status=None)] == ["expired"]


def test_approval_can_be_granted_until_just_before_expiry(bank: cra.Runtime, clock: cra.ManualClock) -> None:
    sid, resolution = start(bank)
    clock.advance(3599)
    bank.approve(resolution.approval_id, "alice")  # type: ignore[arg-type]
    assert bank.execute(sid, resolution.resolution_id, "bank.transfer").status == "success"


def test_unknown_approval_is_not_found(bank: cra.Runtime) -> None:
    before = snapshot(bank)
    for call in (bank.approve, bank.reject):
        with pytest.raises(ApprovalNotFoundError) as info:
            call("00000000-0000-7000-8000-00000000abcd", "alice")
        assert info.value.code == "APPROVAL_NOT_FOUND"
    with pytest.raises(ApprovalNotFoundError):
        bank.get_approval("nope")
    assert snapshot(bank) == before


def test_another_agent_cannot_see_or_decide_an_approval(bank: cra.Runtime) -> None:
    _, resolution = start(bank)
    with pytest.raises(ApprovalNotFoundError):
        bank.approve(resolution.approval_id, "mallory", agent_id="agent-2")  # type: ignore[arg-type]
    assert bank.approvals(agent_id="agent-2") == []
    assert len(bank.approvals(agent_id="agent-1")) == 1


def test_approvals_are_listed_per_session_and_globally(bank: cra.Runtime) -> None:
    sid1, r1 = start(bank)
    sid2, r2 = start(bank, "agent-2")
    assert [a.approval_id for a in bank.approvals(sid1)] == [r1.approval_id]
    assert [a.approval_id for a in bank.approvals(sid2)] == [r2.approval_id]
    assert [a.approval_id for a in bank.approvals()] == [r1.approval_id, r2.approval_id]
    bank.approve(r1.approval_id, "alice")  # type: ignore[arg-type]
    assert [a.approval_id for a in bank.approvals()] == [r2.approval_id]
    assert [a.approval_id for a in bank.approvals(status="approved")] == [r1.approval_id]


def test_approval_of_an_ended_session_cannot_be_decided(bank: cra.Runtime) -> None:
    sid, resolution = start(bank)
    bank.end_session(sid)
    before = snapshot(bank)
    with pytest.raises(SessionEndedError):
        bank.approve(resolution.approval_id, "alice")  # type: ignore[arg-type]
    assert snapshot(bank) == before


def test_approval_events_are_in_the_chain_in_order(bank: cra.Runtime) -> None:
    sid, resolution = start(bank)
    pending = bank.execute(sid, resolution.resolution_id, "bank.transfer")
    bank.approve(pending.approval_id, "alice")  # type: ignore[arg-type]
    bank.execute(sid, resolution.resolution_id, "bank.transfer")
    second = bank.execute(sid, resolution.resolution_id, "bank.transfer")
    bank.reject(second.approval_id, "bob")  # type: ignore[arg-type]
    bank.execute(sid, resolution.resolution_id, "bank.transfer")
    types = [t for t in event_types(bank, sid) if t.startswith(("approval.", "action."))]
    assert types == [
        "action.requested",
        "approval.requested",
        "approval.granted",
        "action.requested",
        "action.approved",
        "action.executed",
        "action.requested",
        "approval.requested",
        "approval.rejected",
        "action.requested",
        "action.denied",
    ]
    assert bank.verify(sid).valid


def test_pending_approval_does_not_consume_a_rate_limit(rt: cra.Runtime) -> None:
    rt.load_atlas(
        manifest(
            actions=[action("bank.transfer", requires_confirmation=True)],
            policies=[policy("limit", "rate_limit", parameters={"max_calls": 1, "window_seconds": 60})],
        )
    )
    rt.register("bank.transfer", lambda p: "sent")
    sid, resolution = start(rt)
    for _ in range(3):
        assert rt.execute(sid, resolution.resolution_id, "bank.transfer").status == "pending_approval"
    rt.approve(resolution.approval_id, "alice")  # type: ignore[arg-type]
    assert rt.execute(sid, resolution.resolution_id, "bank.transfer").status == "success"


def test_action_requires_confirmation_field_needs_an_approval_to_execute(bank: cra.Runtime) -> None:
    sid, resolution = start(bank)
    pending = bank.execute(sid, resolution.resolution_id, "bank.close")
    assert (pending.status, pending.approval_id) == ("pending_approval", resolution.approval_id)
    assert payloads(bank, sid, "approval.requested") == [
        {"approval_id": resolution.approval_id, "action_id": "bank.close"}
    ]
    bank.approve(resolution.approval_id, "alice")  # type: ignore[arg-type]
    assert bank.execute(sid, resolution.resolution_id, "bank.close").result == {"done": "bank.close"}
    assert bank.execute(sid, resolution.resolution_id, "bank.close").status == "pending_approval"
