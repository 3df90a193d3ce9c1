"""Executing actions and recording their outcomes (SPEC 3.3, 3.4)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from ._jsonvalue import check_json_value
from ._requests import ValidationReport, check_skew, parse_request, request_problems
from ._runtime_base import Handler, RuntimeBase, _params_hash, _text
from ._schema_errors import schema_problems
from ._state import ApprovalState, IdempotencyRecord, PendingExecution, SessionState
from .clock import format_timestamp
from .errors import (
    CompletionTimeoutError,
    CRAError,
    DuplicateRequestError,
    ExecutionAlreadyCompletedError,
    ExecutionNotFoundError,
    ForbiddenError,
    IdempotencyConflictError,
    InvalidParametersError,
    InvalidRequestError,
    ResolutionExpiredError,
    ResolutionNotFoundError,
    StorageUnavailableError,
)
from .execution import ExecuteResponse
from .policy.engine import evaluate, limit_requests
from .trace.tracer import Record


class ExecuteOps(RuntimeBase):
    """Executing actions and recording their outcomes (SPEC 3.3, 3.4)."""

    # --- execute ------------------------------------------------------------------------------------------

    def execute(
        self,
        session_id: str,
        resolution_id: str,
        action_id: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        agent_id: str | None = None,
    ) -> ExecuteResponse:
        """Execute an action under a resolution (SPEC 3.3).

        Raises for malformed input, an unknown session or resolution (nothing is recorded), an expired
        resolution (``RESOLUTION_EXPIRED``) and invalid parameters (``INVALID_PARAMETERS``, every failing
        JSON pointer in ``details["errors"]``); those two are recorded as failed attempts. Every governance
        decision is a response: ``success``, ``authorized``, ``error``, ``denied`` or ``pending_approval``.
        The same ``idempotency_key`` in a session returns the first authorised response and runs nothing
        twice (reusing it for another action or other parameters raises ``IDEMPOTENCY_CONFLICT``).
        """
        state = self._session(session_id, agent_id)
        return self._execute(state, resolution_id, action_id, parameters, idempotency_key, None)

    def execute_request(self, request: Mapping[str, Any], *, agent_id: str | None = None) -> ExecuteResponse:
        """Execute from a CARP request object (``operation: "execute"`` with ``execution``); the same
        session, request-id and clock checks as ``resolve_request`` apply first."""
        req = parse_request(request, "execute")
        requester, execution = req["requester"], req["execution"]
        if agent_id is not None and requester["agent_id"] != agent_id:
            raise ForbiddenError("requester.agent_id is not the authenticated agent")
        state = self._session(requester["session_id"], requester["agent_id"])
        self._check_active(state)
        if req["request_id"] in state.request_ids:
            raise DuplicateRequestError(f"request_id {req['request_id']} was already used in this session")
        check_skew(req["timestamp"], self.clock.now_us(), self.clock_skew_seconds)
        return self._execute(
            state,
            execution["resolution_id"],
            execution["action_id"],
            execution["parameters"],
            execution.get("idempotency_key"),
            req["request_id"],
        )

    def _execute(
        self,
        state: SessionState,
        resolution_id: Any,
        action_id: Any,
        parameters: Mapping[str, Any] | None,
        idempotency_key: str | None,
        request_id: str | None,
    ) -> ExecuteResponse:
        _text(resolution_id, "resolution_id", pointer="/execution/resolution_id")
        _text(action_id, "action_id", pointer="/execution/action_id")
        if parameters is None:
            parameters = {}
        if not isinstance(parameters, Mapping):
            raise InvalidRequestError(
                "parameters must be an object",
                details={"errors": [{"pointer": "/execution/parameters", "message": "must be an object"}]},
            )
        params = dict(parameters)
        check_json_value(params, "/execution/parameters")
        if idempotency_key is not None:
            _text(idempotency_key, "idempotency_key", pointer="/execution/idempotency_key")
        params_hash = _params_hash(params)

        record: IdempotencyRecord | None = None
        authorised: _Authorised | None = None
        with state.lock:
            self._check_active(state)
            if request_id is not None and request_id in state.request_ids:
                raise DuplicateRequestError(f"request_id {request_id} was already used in this session")
            if idempotency_key is not None:
                record = state.idempotency.get(idempotency_key)
            if record is not None and (record.action_id, record.resolution_id, record.parameters_hash) != (
                action_id,
                resolution_id,
                params_hash,
            ):
                raise IdempotencyConflictError(
                    f"idempotency key {idempotency_key!r} was used for another request",
                    details={"idempotency_key": idempotency_key},
                )
            if record is None:
                outcome = self._authorise(
                    state, resolution_id, action_id, params, params_hash, idempotency_key, request_id
                )
                if isinstance(outcome, ExecuteResponse):
                    return outcome
                authorised = outcome
        if authorised is not None:
            return self._run(state, authorised, params)
        # A replay: wait for the first call with this key to finish, then answer what it answered.
        assert record is not None
        record.wait()
        if record.response is None:
            raise IdempotencyConflictError("the first request with this idempotency key did not finish")
        return ExecuteResponse(**{**_fields(record.response), "replayed": True})

    def _authorise(
        self,
        state: SessionState,
        resolution_id: str,
        action_id: str,
        params: dict[str, Any],
        params_hash: str,
        idempotency_key: str | None,
        request_id: str | None,
    ) -> ExecuteResponse | _Authorised:
        """Every check of SPEC 3.3 under the session lock; returns a final response, or an authorised
        execution whose handler the caller runs outside the lock."""
        res = state.resolutions.get(resolution_id)
        if res is None:
            raise ResolutionNotFoundError(
                f"no resolution {resolution_id!r} in this session (a session keeps its latest "
                f"{self.max_resolutions_per_session} resolutions; make a new one)"
            )
        now = self.clock.now_us()
        state.last_activity_us = now
        execution_id = self._new_id()
        span = state.span(self._new_id())
        requested = Record(
            "action.requested",
            {
                "action_id": action_id,
                "parameters_hash": params_hash,
                "execution_id": execution_id,
                "resolution_id": resolution_id,
                **({"idempotency_key": idempotency_key} if idempotency_key is not None else {}),
                **({"request_id": request_id} if request_id is not None else {}),
            },
        )

        def respond(
            status: str,
            records: list[Record],
            error: dict[str, Any] | None = None,
            approval_id: str | None = None,
            *,
            retain: bool = False,
        ) -> ExecuteResponse:
            self._record_durably(span, [requested, *records], retain=retain)
            if request_id is not None:
                state.request_ids.add(request_id)
            return ExecuteResponse(
                execution_id,
                state.session_id,
                resolution_id,
                action_id,
                status,
                format_timestamp(now),
                state.trace_id,
                error=error,
                approval_id=approval_id,
                idempotency_key=idempotency_key,
            )

        def fail(exc: CRAError) -> None:
            self._record_durably(
                span,
                [
                    requested,
                    Record(
                        "action.failed",
                        {"action_id": action_id, "error_code": exc.code, "error_message": exc.message},
                    ),
                ],
            )
            if request_id is not None:
                state.request_ids.add(request_id)
            raise exc

        def deny(code: str, reason: str, policy_id: str, *, violated: bool = False) -> ExecuteResponse:
            records = []
            if violated:
                records.append(
                    Record(
                        "policy.violated",
                        {
                            "policy_id": policy_id,
                            "violation_type": "action_not_allowed",
                            "details": {"reason": reason, "resolution_id": resolution_id},
                        },
                    )
                )
            records.append(
                Record("action.denied", {"action_id": action_id, "reason": reason, "policy_id": policy_id})
            )
            body = {
                "code": code,
                "category": "rate_limit" if code in ("RATE_LIMITED", "BUDGET_EXCEEDED") else "policy",
                "message": reason,
                "recoverable": code in ("RATE_LIMITED", "BUDGET_EXCEEDED"),
                "details": {"policy_id": policy_id},
            }
            return respond("denied", records, body)

        if now >= res.expires_us:
            fail(
                ResolutionExpiredError(
                    f"resolution {resolution_id} expired at {format_timestamp(res.expires_us)}"
                )
            )
        entry = res.allowed.get(action_id)
        if entry is None:
            refused = res.denied.get(action_id)
            policy_id = refused.policy_id if refused else "cra.not-in-resolution"
            reason = f"{action_id} is not allowed by this resolution" + (
                f": {refused.reason}" if refused else ""
            )
            return deny("ACTION_NOT_ALLOWED", reason, policy_id, violated=True)
        plan, first_verdict = entry
        if plan.validator is not None:
            problems = schema_problems(plan.validator, params, "/parameters")
            if problems:
                fail(
                    InvalidParametersError(
                        f"parameters do not match {action_id}'s schema: "
                        + "; ".join(f"{p['pointer']}: {p['message']}" for p in problems[:3]),
                        details={"errors": problems},
                    )
                )
        ctx = res.context_at(now)
        verdict = evaluate(plan, ctx, self.limiter)
        if verdict.result == "deny":
            return deny("POLICY_DENIED", verdict.reason or "", verdict.policy_id)
        if verdict.result == "rate_limited":
            return deny("RATE_LIMITED", verdict.reason or "", verdict.policy_id)
        if verdict.result == "budget_exceeded":
            return deny("BUDGET_EXCEEDED", verdict.reason or "", verdict.policy_id)

        approval: ApprovalState | None = None
        if "requires_approval" in (verdict.result, first_verdict.result):
            approval = res.approval_for(action_id)
            if approval is None or action_id in approval.used or approval.current_status(now) == "expired":
                approval = ApprovalState(
                    self._new_id(),
                    state.session_id,
                    state.agent_id,
                    resolution_id,
                    (action_id,),
                    now,
                    res.expires_us,
                )
                res.approvals.append(approval)
                self._approvals[approval.approval_id] = approval
            if approval.status == "rejected":
                return deny(
                    "APPROVAL_REJECTED",
                    f"approval {approval.approval_id} was rejected",
                    verdict.policy_id if verdict.result == "requires_approval" else first_verdict.policy_id,
                )
            if approval.status == "pending":
                return respond(
                    "pending_approval",
                    [
                        Record(
                            "approval.requested",
                            {"approval_id": approval.approval_id, "action_id": action_id},
                        )
                    ],
                    approval_id=approval.approval_id,
                )

        taken = limit_requests(verdict, ctx)
        refused_at = self.limiter.acquire(taken, now)
        if refused_at >= 0:
            rule = verdict.limits[refused_at][0]
            if rule.kind == "rate":
                return deny("RATE_LIMITED", "rate_limit_exceeded", rule.policy_id)
            return deny("BUDGET_EXCEEDED", "budget_exceeded", rule.policy_id)
        # Authorised: the limits are taken. `action.approved` is durable before any handler runs. If storage
        # refuses it, the execution does not happen: it must not count against any limit, and the records
        # are kept (both tracing modes alike) with an ending that says so, written once storage is back.
        try:
            respond(
                "authorized",
                [Record("action.approved", {"action_id": action_id, "resolution_id": resolution_id})],
                retain=True,
            )
        except StorageUnavailableError as exc:
            self.limiter.release(taken, now)
            failed = Record(
                "action.failed",
                {
                    "action_id": action_id,
                    "error_code": exc.code,
                    "error_message": "trace storage was unavailable; the action did not run",
                },
            )
            with contextlib.suppress(StorageUnavailableError):  # kept for later, like the records above
                self._tracer.emit(span, [failed], retain=True)
            raise
        except BaseException:
            self.limiter.release(taken, now)
            raise
        if approval is not None:
            approval.used.add(action_id)
        record = IdempotencyRecord(action_id, resolution_id, params_hash)
        if idempotency_key is not None:
            state.idempotency[idempotency_key] = record
        handler = self._handlers.get(action_id) or self._executors.get((plan.atlas_digest, action_id))
        pending = PendingExecution(
            execution_id,
            state.session_id,
            resolution_id,
            action_id,
            span.span_id,
            now,
            res.expires_us,
            idempotency_key,
        )
        if handler is None:
            state.pending[execution_id] = pending
            self._pending[execution_id] = pending
            response = ExecuteResponse(
                execution_id,
                state.session_id,
                resolution_id,
                action_id,
                "authorized",
                format_timestamp(now),
                state.trace_id,
                idempotency_key=idempotency_key,
            )
            record.response = response
            record.finish()
            self._remember_idempotent(state, idempotency_key, record)
            return response
        return _Authorised(record, pending, handler)

    def _remember_idempotent(self, state: SessionState, key: str | None, record: IdempotencyRecord) -> None:
        """Keep the first response to a key durably, so a retry after a restart still runs nothing twice."""
        if key is not None and record.response is not None:
            self._state_store.save_idempotency(
                state.session_id,
                key,
                (record.action_id, record.resolution_id, record.parameters_hash, _fields(record.response)),
            )

    def _run(self, state: SessionState, authorised: _Authorised, params: dict[str, Any]) -> ExecuteResponse:
        record, pending, handler = authorised
        start = self.clock.now_us()
        try:
            try:
                result = handler(params)
                check_json_value(result, "/result")
                error: dict[str, Any] | None = None
            except Exception as exc:
                result, error = None, _handler_error(exc)
            end = self.clock.now_us()
            duration = max(0, (end - start) // 1000)
            response = ExecuteResponse(
                pending.execution_id,
                state.session_id,
                pending.resolution_id,
                pending.action_id,
                "success" if error is None else "error",
                format_timestamp(end),
                state.trace_id,
                result=result,
                error=error,
                duration_ms=duration,
                idempotency_key=pending.idempotency_key,
            )
            # The handler ran: from here on the key answers with this response and never runs it again,
            # and the outcome is retained for a later write if storage refuses it now.
            record.response = response
            with state.lock:
                state.completed.add(pending.execution_id)
            if error is None:
                ending = Record(
                    "action.executed",
                    {
                        "action_id": pending.action_id,
                        "execution_id": pending.execution_id,
                        "duration_ms": duration,
                    },
                )
            else:
                ending = Record(
                    "action.failed",
                    {
                        "action_id": pending.action_id,
                        "error_code": error["code"],
                        "error_message": error["message"],
                    },
                )
            try:
                self._record_durably(state.span(pending.span_id), [ending], retain=True)
            finally:  # the outcome is recorded (or retained) first; a failing state store cannot prevent it
                self._remember_idempotent(state, pending.idempotency_key, record)
            return response
        finally:
            if record.response is None and pending.idempotency_key is not None:
                with state.lock:
                    state.idempotency.pop(pending.idempotency_key, None)
            record.finish()

    def complete(
        self,
        execution_id: str,
        *,
        result: Any = None,
        error: str | Mapping[str, Any] | None = None,
        agent_id: str | None = None,
    ) -> ExecuteResponse:
        """Report the outcome of an ``authorized`` execution that the caller ran itself.

        Give ``result`` (a JSON value) for success or ``error`` (a message, or ``{"code", "message"}``) for
        failure. Records ``action.executed`` or ``action.failed``. After the resolution expired the outcome is
        recorded as failed with ``COMPLETION_TIMEOUT`` and ``CompletionTimeoutError`` is raised.
        """
        self._open()
        _text(execution_id, "execution_id")
        pending = self._pending.get(execution_id)
        if pending is None:
            self._restore_owner_of(execution_id)
            pending = self._pending.get(execution_id)
        if pending is None:
            for state in self._sessions.values():
                if execution_id in state.completed:
                    raise ExecutionAlreadyCompletedError(f"execution {execution_id} was already completed")
            raise ExecutionNotFoundError(f"no execution {execution_id!r} awaits an outcome")
        state = self._session(pending.session_id, agent_id)
        error_body: dict[str, Any] | None = None
        if error is not None:
            if result is not None:
                raise InvalidRequestError("give result or error, not both")
            if isinstance(error, str):
                error_body = {"code": "EXECUTION_FAILED", "message": error}
            elif isinstance(error, Mapping) and isinstance(error.get("message", ""), str):
                code = error.get("code", "EXECUTION_FAILED")
                if not isinstance(code, str) or not re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", code):
                    raise InvalidRequestError("error.code must be UPPER_SNAKE_CASE")
                error_body = {"code": code, "message": str(error.get("message", code))[:2000]}
            else:
                raise InvalidRequestError("error must be a message or {code, message}")
        check_json_value(result, "/result")
        with state.lock:
            if self._pending.get(execution_id) is not pending:
                raise ExecutionAlreadyCompletedError(f"execution {execution_id} was already completed")
            now = self.clock.now_us()
            span = state.span(pending.span_id)
            duration = max(0, (now - pending.started_us) // 1000)
            timed_out = now >= pending.expires_us
            if timed_out:
                message = "the outcome was reported after the resolution expired"
                self._record_durably(
                    span,
                    [
                        Record(
                            "action.failed",
                            {
                                "action_id": pending.action_id,
                                "error_code": "COMPLETION_TIMEOUT",
                                "error_message": message,
                            },
                        )
                    ],
                )
            elif error_body is None:
                self._record_durably(
                    span,
                    [
                        Record(
                            "action.executed",
                            {
                                "action_id": pending.action_id,
                                "execution_id": execution_id,
                                "duration_ms": duration,
                            },
                        )
                    ],
                )
            else:
                self._record_durably(
                    span,
                    [
                        Record(
                            "action.failed",
                            {
                                "action_id": pending.action_id,
                                "error_code": error_body["code"],
                                "error_message": error_body["message"],
                            },
                        )
                    ],
                )
            self._pending.pop(execution_id, None)
            state.pending.pop(execution_id, None)
            state.completed.add(execution_id)
            state.last_activity_us = now
        if timed_out:
            raise CompletionTimeoutError(message, details={"execution_id": execution_id})
        return ExecuteResponse(
            execution_id,
            state.session_id,
            pending.resolution_id,
            pending.action_id,
            "success" if error_body is None else "error",
            format_timestamp(now),
            state.trace_id,
            result=result,
            error=error_body,
            duration_ms=duration,
            idempotency_key=pending.idempotency_key,
        )

    # --- validate -----------------------------------------------------------------------------------------

    def validate_request(self, request: Any) -> ValidationReport:
        """Check a CARP request without side effects (SPEC 3.4): every schema error with its JSON pointer,
        and, for an execute request whose session and resolution are known, every parameter error."""
        problems = request_problems(request)
        if problems or request.get("operation") != "execute":
            return ValidationReport(not problems, problems)
        execution = request["execution"]
        state = self._sessions.get(request["requester"]["session_id"])
        res = state.resolutions.get(execution["resolution_id"]) if state else None
        entry = res.allowed.get(execution["action_id"]) if res else None
        if entry is not None and entry[0].validator is not None:
            problems = schema_problems(entry[0].validator, execution["parameters"], "/execution/parameters")
        return ValidationReport(not problems, problems)


__all__ = ["ExecuteOps"]


class _Authorised(NamedTuple):
    """An execution that passed every check; its handler runs outside the session lock."""

    record: IdempotencyRecord
    pending: PendingExecution
    handler: Handler


def _handler_error(exc: Exception) -> dict[str, Any]:
    # The exception's type and message only: no traceback or file paths reach the caller or the trace.
    try:
        detail = str(exc)
    except Exception:  # an exception whose __str__ fails still gets recorded
        detail = "<unprintable exception>"
    # Lone surrogates cannot be recorded as UTF-8: replace them rather than lose the outcome.
    message = f"{type(exc).__name__}: {detail}"[:2000].encode("utf-8", "replace").decode("utf-8")
    return {"code": "HANDLER_ERROR", "category": "internal", "message": message, "recoverable": False}


def _fields(response: ExecuteResponse) -> dict[str, Any]:
    return {name: getattr(response, name) for name in ExecuteResponse.__slots__}
