"""Execute (SPEC 3.3): handlers, outcomes, the checks in order, idempotency, and the events recorded."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest

import cra
from cra.errors import (
    ActionNotAllowedError,
    ApprovalRequiredError,
    BudgetExceededError,
    HandlerError,
    IdempotencyConflictError,
    InvalidParametersError,
    PolicyDeniedError,
    RateLimitedError,
    ResolutionExpiredError,
    ResolutionNotFoundError,
)

from .helpers import action, carp, event_types, manifest, params_hash, payloads, policy, snapshot

ORDER_SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "string", "minLength": 2}, "qty": {"type": "integer", "minimum": 1}},
    "required": ["id"],
    "additionalProperties": False,
}


@dataclass
class Shop:
    rt: cra.Runtime
    clock: cra.ManualClock
    session: cra.Session
    resolution: cra.Resolution
    calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sid(self) -> str:
        return self.session.session_id

    def execute(
        self, action_id: str, parameters: dict[str, Any] | None = None, **kw: Any
    ) -> cra.ExecuteResponse:
        return self.rt.execute(self.sid, self.resolution.resolution_id, action_id, parameters, **kw)

    def new_events(self, since: int) -> list[cra.TraceEvent]:
        return self.rt.get_trace(self.sid)[since:]


@pytest.fixture
def shop(rt: cra.Runtime, clock: cra.ManualClock) -> Shop:
    rt.load_atlas(
        manifest(
            actions=[
                action("shop.read", parameters_schema=ORDER_SCHEMA, idempotent=True),
                action("shop.note"),
                action("shop.fail"),
                action("shop.delete"),
                action("shop.weird"),
            ],
            policies=[
                policy("no-delete", "deny", ["shop.delete"], parameters={"reason": "Deleting is off"}),
                policy("allow-all", "allow"),
            ],
        )
    )
    session = rt.create_session("agent-1", "Handle orders")
    shop = Shop(rt, clock, session, rt.resolve(session.session_id))

    def read(params: dict[str, Any]) -> dict[str, Any]:
        shop.calls.append(params)
        return {"order": params["id"], "status": "shipped"}

    def fail(params: dict[str, Any]) -> None:
        raise ValueError("the warehouse is on fire")

    rt.register("shop.read", read)
    rt.register("shop.fail", fail)
    return shop


# --- outcomes -----------------------------------------------------------------------------------------


def test_handler_runs_with_the_parameters_and_its_result_is_returned(shop: Shop) -> None:
    before = len(shop.rt.get_trace(shop.sid))
    response = shop.execute("shop.read", {"id": "o-1", "qty": 2})
    assert (response.status, response.result, response.error) == (
        "success",
        {"order": "o-1", "status": "shipped"},
        None,
    )
    assert response.ok and response.http_status == 200
    assert shop.calls == [{"id": "o-1", "qty": 2}]
    assert (response.session_id, response.resolution_id, response.action_id) == (
        shop.sid,
        shop.resolution.resolution_id,
        "shop.read",
    )
    assert response.trace_id == shop.session.trace_id and response.duration_ms == 0
    events = shop.new_events(before)
    assert [e.event_type for e in events] == ["action.requested", "action.approved", "action.executed"]
    assert dict(events[0].payload) == {
        "action_id": "shop.read",
        "parameters_hash": params_hash({"id": "o-1", "qty": 2}),
        "execution_id": response.execution_id,
        "resolution_id": shop.resolution.resolution_id,
    }
    assert dict(events[1].payload) == {
        "action_id": "shop.read",
        "resolution_id": shop.resolution.resolution_id,
    }
    assert dict(events[2].payload) == {
        "action_id": "shop.read",
        "execution_id": response.execution_id,
        "duration_ms": 0,
    }
    assert len({e.span_id for e in events}) == 1
    assert shop.rt.verify(shop.sid).valid


def test_parameters_hash_is_the_sha256_of_canonical_json(shop: Shop) -> None:
    params = {"qty": 1, "id": "zé\n", "nested": {"b": [1.5, None, True], "a": "\u00e9"}}
    shop.execute("shop.note", params)
    requested = payloads(shop.rt, shop.sid, "action.requested")[-1]
    assert requested["parameters_hash"] == params_hash(params)


def test_handler_exception_is_an_error_response_without_a_traceback(shop: Shop) -> None:
    response = shop.execute("shop.fail")
    assert response.status == "error" and response.http_status == 200 and not response.ok
    assert response.error is not None
    assert response.error["code"] == "HANDLER_ERROR"
    assert response.error["message"] == "ValueError: the warehouse is on fire"
    assert "Traceback" not in response.error["message"] and __file__ not in str(response.error)
    failed = payloads(shop.rt, shop.sid, "action.failed")[-1]
    assert failed == {
        "action_id": "shop.fail",
        "error_code": "HANDLER_ERROR",
        "error_message": "ValueError: the warehouse is on fire",
    }
    assert event_types(shop.rt, shop.sid)[-3:] == ["action.requested", "action.approved", "action.failed"]


@pytest.mark.parametrize(
    "bad_result",
    [{1, 2}, math.nan, {"x": math.inf}, object(), {1: "int key"}, b"bytes", "\ud800"],
    ids=["set", "nan", "inf", "object", "int-key", "bytes", "lone-surrogate"],
)
def test_handler_returning_a_non_json_value_is_an_error(shop: Shop, bad_result: Any) -> None:
    shop.rt.register("shop.weird", lambda params: bad_result)
    response = shop.execute("shop.weird")
    assert response.status == "error" and response.result is None
    assert response.error_code == "HANDLER_ERROR"
    assert event_types(shop.rt, shop.sid)[-1] == "action.failed"
    assert shop.rt.verify(shop.sid).valid


def test_without_a_handler_execution_is_authorized_for_the_caller_to_run(shop: Shop) -> None:
    response = shop.execute("shop.note", {"text": "hi"})
    assert (response.status, response.result, response.http_status, response.ok) == (
        "authorized",
        None,
        200,
        True,
    )
    assert event_types(shop.rt, shop.sid)[-2:] == ["action.requested", "action.approved"]
    assert shop.rt.stats()["pending_completions"] == 1
    done = shop.rt.complete(response.execution_id, result={"saved": True})
    assert (done.status, done.result) == ("success", {"saved": True})
    assert event_types(shop.rt, shop.sid)[-1] == "action.executed"


def test_unregistering_a_handler_makes_executions_authorized(shop: Shop) -> None:
    shop.rt.unregister("shop.read")
    assert shop.execute("shop.read", {"id": "o-1"}).status == "authorized"
    assert shop.calls == []


def test_register_refuses_bad_action_ids_and_non_callables(shop: Shop) -> None:
    with pytest.raises(cra.ValidationError):
        shop.rt.register("Not An Id", lambda p: None)
    with pytest.raises(cra.ValidationError):
        shop.rt.register("shop.x", "not callable")  # type: ignore[arg-type]


def test_http_status_per_status() -> None:
    statuses = {"success": 200, "authorized": 200, "error": 200, "denied": 403, "pending_approval": 202}
    for status, code in statuses.items():
        response = cra.ExecuteResponse("e", "s", "r", "a.b", status, "t", "tr")
        assert response.http_status == code


def test_response_to_dict_has_the_wire_shape(shop: Shop) -> None:
    wire = shop.execute("shop.read", {"id": "o-1"}, idempotency_key="k-1").to_dict()
    assert set(wire) == {
        "carp_version",
        "execution_id",
        "session_id",
        "resolution_id",
        "action_id",
        "status",
        "result",
        "error",
        "approval_id",
        "duration_ms",
        "timestamp",
        "trace_id",
        "idempotency_key",
    }
    assert wire["carp_version"] == "1.0" and wire["idempotency_key"] == "k-1"


# --- raise_for_status ---------------------------------------------------------------------------------


def test_raise_for_status_returns_ok_responses(shop: Shop) -> None:
    success = shop.execute("shop.read", {"id": "o-1"})
    assert success.raise_for_status() is success
    authorized = shop.execute("shop.note")
    assert authorized.raise_for_status() is authorized


def test_raise_for_status_raises_the_matching_error(shop: Shop) -> None:
    with pytest.raises(ActionNotAllowedError) as denied:
        shop.execute("shop.delete").raise_for_status()
    assert isinstance(denied.value, cra.PolicyError) and denied.value.http_status == 403
    with pytest.raises(HandlerError):
        shop.execute("shop.fail").raise_for_status()


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        ("denied", "RATE_LIMITED", RateLimitedError),
        ("denied", "BUDGET_EXCEEDED", BudgetExceededError),
        ("denied", "POLICY_DENIED", PolicyDeniedError),
        ("pending_approval", None, ApprovalRequiredError),
    ],
)
def test_raise_for_status_maps_every_refusal(status: str, code: str | None, expected: type) -> None:
    error = None if code is None else {"code": code, "message": "no"}
    response = cra.ExecuteResponse("e", "s", "r", "a.b", status, "t", "tr", error=error, approval_id="ap")
    with pytest.raises(expected) as info:
        response.raise_for_status()
    assert info.value.details == {"execution_id": "e", "approval_id": "ap"}


# --- checks in order ----------------------------------------------------------------------------------


def test_action_not_in_the_resolution_is_denied_with_a_violation(shop: Shop) -> None:
    before = len(shop.rt.get_trace(shop.sid))
    response = shop.execute("shop.delete", {"id": "o-1"})
    assert (response.status, response.http_status, response.error_code) == (
        "denied",
        403,
        "ACTION_NOT_ALLOWED",
    )
    assert response.error is not None and response.error["category"] == "policy"
    events = shop.new_events(before)
    assert [e.event_type for e in events] == ["action.requested", "policy.violated", "action.denied"]
    violated = events[1].payload
    assert (violated["policy_id"], violated["violation_type"]) == ("no-delete", "action_not_allowed")
    assert "details" in violated
    assert dict(events[2].payload) == {
        "action_id": "shop.delete",
        "reason": response.error["message"],
        "policy_id": "no-delete",
    }


def test_action_unknown_to_every_atlas_is_not_allowed(shop: Shop) -> None:
    response = shop.execute("shop.teleport")
    assert response.error_code == "ACTION_NOT_ALLOWED"
    assert event_types(shop.rt, shop.sid)[-2:] == ["policy.violated", "action.denied"]


def test_invalid_parameters_raise_with_every_pointer_and_are_recorded(shop: Shop) -> None:
    before = snapshot(shop.rt)
    with pytest.raises(InvalidParametersError) as info:
        shop.execute("shop.read", {"id": "x", "qty": 0, "extra": True})
    assert info.value.code == "INVALID_PARAMETERS"
    pointers = sorted(e["pointer"] for e in info.value.details["errors"])  # type: ignore[index]
    assert pointers == ["/parameters/extra", "/parameters/id", "/parameters/qty"]
    assert shop.calls == []
    events = shop.rt.get_trace(shop.sid)[len(before["traces"][shop.sid]) :]
    assert [e.event_type for e in events] == ["action.requested", "action.failed"]
    assert events[1].payload["error_code"] == "INVALID_PARAMETERS"
    assert events[1].payload["action_id"] == "shop.read"
    after = snapshot(shop.rt)
    assert after["stats"] == before["stats"] and after["limiter"] == before["limiter"]


def test_missing_required_parameter_is_reported_at_its_own_pointer(shop: Shop) -> None:
    with pytest.raises(InvalidParametersError) as info:
        shop.execute("shop.read", {})
    assert [e["pointer"] for e in info.value.details["errors"]] == ["/parameters/id"]  # type: ignore[index]


def test_expired_resolution_raises_and_is_recorded(shop: Shop) -> None:
    shop.clock.advance(3599)
    assert shop.execute("shop.read", {"id": "o-1"}).status == "success"
    shop.clock.advance(1)
    before = snapshot(shop.rt)
    with pytest.raises(ResolutionExpiredError) as info:
        shop.execute("shop.read", {"id": "o-2"})
    assert info.value.code == "RESOLUTION_EXPIRED" and info.value.http_status == 410
    events = shop.rt.get_trace(shop.sid)[len(before["traces"][shop.sid]) :]
    assert [e.event_type for e in events] == ["action.requested", "action.failed"]
    assert events[1].payload["error_code"] == "RESOLUTION_EXPIRED"
    assert len(shop.calls) == 1
    assert snapshot(shop.rt)["stats"] == before["stats"]


def test_expiry_is_checked_before_whether_the_action_is_allowed(shop: Shop) -> None:
    shop.clock.advance(3600)
    with pytest.raises(ResolutionExpiredError):
        shop.execute("shop.delete")
    with pytest.raises(ResolutionExpiredError):
        shop.execute("shop.read", {"bad": "params"})


def test_not_allowed_is_checked_before_parameters(shop: Shop) -> None:
    shop.rt.load_atlas(
        manifest(
            "org.example.other",
            actions=[action("other.write", parameters_schema=ORDER_SCHEMA)],
            policies=[policy("no", "deny")],
        )
    )
    session = shop.rt.create_session("agent-1", "goal")
    resolution = shop.rt.resolve(session.session_id)
    response = shop.rt.execute(session.session_id, resolution.resolution_id, "other.write", {"bad": 1})
    assert response.error_code == "ACTION_NOT_ALLOWED"


def test_resolution_of_another_session_is_not_found(shop: Shop) -> None:
    other = shop.rt.create_session("agent-1", "goal")
    before = snapshot(shop.rt)
    with pytest.raises(ResolutionNotFoundError) as info:
        shop.rt.execute(other.session_id, shop.resolution.resolution_id, "shop.read", {"id": "o-1"})
    assert info.value.code == "RESOLUTION_NOT_FOUND"
    assert snapshot(shop.rt) == before


def test_deny_that_starts_between_resolve_and_execute_is_policy_denied(
    rt: cra.Runtime, clock: cra.ManualClock
) -> None:
    window = {"start": "00:05", "end": "06:00", "timezone": "UTC"}
    rt.load_atlas(
        manifest(
            actions=[action("ops.deploy")],
            policies=[
                policy(
                    "freeze",
                    "deny",
                    conditions={"time_window": window},
                    parameters={"reason": "Change freeze"},
                ),
                policy("allow-all", "allow"),
            ],
        )
    )
    rt.register("ops.deploy", lambda p: "deployed")
    session = rt.create_session("agent-1", "deploy")
    resolution = rt.resolve(session.session_id)
    assert resolution.allowed_ids == ["ops.deploy"]
    assert rt.execute(session.session_id, resolution.resolution_id, "ops.deploy").status == "success"
    clock.advance(5 * 60)
    response = rt.execute(session.session_id, resolution.resolution_id, "ops.deploy")
    assert (response.status, response.error_code, response.http_status) == ("denied", "POLICY_DENIED", 403)
    assert response.error is not None and response.error["message"] == "Change freeze"
    assert event_types(rt, session.session_id)[-2:] == ["action.requested", "action.denied"]
    assert payloads(rt, session.session_id, "action.denied")[-1] == {
        "action_id": "ops.deploy",
        "reason": "Change freeze",
        "policy_id": "freeze",
    }


# --- idempotency --------------------------------------------------------------------------------------


def test_same_idempotency_key_replays_the_first_response_and_runs_once(shop: Shop) -> None:
    first = shop.execute("shop.read", {"id": "o-1"}, idempotency_key="key-1")
    trace_length = len(shop.rt.get_trace(shop.sid))
    again = shop.execute("shop.read", {"id": "o-1"}, idempotency_key="key-1")
    assert again.replayed and not first.replayed
    assert (again.execution_id, again.status, again.result) == (first.execution_id, "success", first.result)
    assert again.to_dict()["replayed"] is True
    assert len(shop.calls) == 1
    assert len(shop.rt.get_trace(shop.sid)) == trace_length  # a replay emits nothing new


def test_idempotent_replay_of_an_authorized_execution_returns_it(shop: Shop) -> None:
    first = shop.execute("shop.note", {"n": 1}, idempotency_key="k")
    again = shop.execute("shop.note", {"n": 1}, idempotency_key="k")
    assert again.replayed and again.execution_id == first.execution_id and again.status == "authorized"
    assert shop.rt.stats()["pending_completions"] == 1


def test_idempotent_replay_of_a_handler_error_returns_the_error(shop: Shop) -> None:
    first = shop.execute("shop.fail", idempotency_key="k")
    again = shop.execute("shop.fail", idempotency_key="k")
    assert again.replayed and again.error == first.error and again.status == "error"


@pytest.mark.parametrize(
    ("action_id", "parameters"),
    [("shop.read", {"id": "o-2"}), ("shop.read", {"id": "o-1", "qty": 1}), ("shop.note", {"id": "o-1"})],
)
def test_same_idempotency_key_with_other_request_is_a_conflict(
    shop: Shop, action_id: str, parameters: dict[str, Any]
) -> None:
    shop.execute("shop.read", {"id": "o-1"}, idempotency_key="key-1")
    before = snapshot(shop.rt)
    with pytest.raises(IdempotencyConflictError) as info:
        shop.execute(action_id, parameters, idempotency_key="key-1")
    assert info.value.code == "IDEMPOTENCY_CONFLICT"
    assert snapshot(shop.rt) == before
    assert len(shop.calls) == 1


def test_idempotency_keys_belong_to_their_session(shop: Shop) -> None:
    shop.execute("shop.read", {"id": "o-1"}, idempotency_key="key-1")
    other = shop.rt.create_session("agent-1", "goal")
    resolution = shop.rt.resolve(other.session_id)
    response = shop.rt.execute(
        other.session_id, resolution.resolution_id, "shop.read", {"id": "o-1"}, idempotency_key="key-1"
    )
    assert not response.replayed and len(shop.calls) == 2


def test_idempotent_replay_counts_a_rate_limit_once(rt: cra.Runtime) -> None:
    rt.load_atlas(
        manifest(
            actions=[action("api.call")],
            policies=[policy("limit", "rate_limit", parameters={"max_calls": 1, "window_seconds": 60})],
        )
    )
    calls: list[int] = []
    rt.register("api.call", lambda p: calls.append(1))
    session = rt.create_session("agent-1", "goal")
    resolution = rt.resolve(session.session_id)
    for _ in range(3):
        response = rt.execute(
            session.session_id, resolution.resolution_id, "api.call", idempotency_key="once"
        )
        assert response.status == "success"
    assert calls == [1]
    other = rt.execute(session.session_id, resolution.resolution_id, "api.call", idempotency_key="twice")
    assert other.error_code == "RATE_LIMITED"


# --- execute_request ----------------------------------------------------------------------------------


def test_execute_request_runs_a_carp_execute_request(shop: Shop) -> None:
    request = carp(
        shop.rt,
        shop.session,
        operation="execute",
        execution={
            "resolution_id": shop.resolution.resolution_id,
            "action_id": "shop.read",
            "parameters": {"id": "o-9"},
            "idempotency_key": "wire-1",
        },
    )
    response = shop.rt.execute_request(request)
    assert (response.status, response.result, response.idempotency_key) == (
        "success",
        {"order": "o-9", "status": "shipped"},
        "wire-1",
    )


def test_execute_request_reports_a_handler_error_as_a_response(shop: Shop) -> None:
    request = carp(
        shop.rt,
        shop.session,
        operation="execute",
        execution={
            "resolution_id": shop.resolution.resolution_id,
            "action_id": "shop.fail",
            "parameters": {},
        },
    )
    assert shop.rt.execute_request(request).error_code == "HANDLER_ERROR"


# --- handler failures that must still end the execution ---------------------------------------------------


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("cannot describe myself")


def _raise_surrogate(params: dict[str, Any]) -> None:
    raise ValueError("bad byte \udcff from a decoder")


def _raise_unprintable(params: dict[str, Any]) -> None:
    raise _Unprintable


def test_handler_exception_with_a_lone_surrogate_is_still_an_error_response(shop: Shop) -> None:
    shop.rt.register("shop.weird", _raise_surrogate)
    response = shop.execute("shop.weird")
    assert response.status == "error" and response.error_code == "HANDLER_ERROR"
    assert event_types(shop.rt, shop.sid)[-1] == "action.failed"


def test_handler_exception_that_cannot_be_printed_is_still_an_error_response(shop: Shop) -> None:
    shop.rt.register("shop.weird", _raise_unprintable)
    response = shop.execute("shop.weird")
    assert response.status == "error" and response.error_code == "HANDLER_ERROR"
    assert event_types(shop.rt, shop.sid)[-1] == "action.failed"
