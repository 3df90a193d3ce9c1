"""Re-running recorded sessions in a fresh runtime (SPEC 4.6 replay); ``cra.replay`` is the front door.

A ``Replayer`` owns one in-memory runtime with a manual clock and immediate tracing. It re-issues every
recorded operation of one or more sessions, in the order they were recorded, each at its recorded time:
session start, resolve, execute, the outcome reported later (``complete``), approvals and the session end.
Limiter windows therefore fill exactly as they did, because the same executions are authorised at the same
instants. What the runtime writes is read back with the same reader as the original (``_replay_trace``), so
both sides are classified by one rule and compared like with like.
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import jsonschema_rs

from ._ids import SequentialIds
from ._replay_trace import (
    CompleteOp,
    DecideOp,
    EndOp,
    ExecuteOp,
    Op,
    ResolveOp,
    StartOp,
    TraceReader,
    known_parameters,
)
from .atlas import Atlas
from .clock import ManualClock, format_timestamp
from .errors import AtlasNotFoundError, CRAError
from .execution import ExecuteResponse
from .policy.engine import CompiledAtlas, compile_atlas
from .runtime import Runtime
from .trace.event import TraceEvent
from .trace.storage.memory import MemoryStorage

__all__ = ["ReplayDecision", "Replayer", "SessionPlan"]

Progress = Callable[[int, int], None]

_ALWAYS_INVALID = jsonschema_rs.Draft202012Validator(False)


@dataclass(frozen=True, slots=True)
class ReplayDecision:
    """One re-run decision of the replayed session.

    ``operation`` is ``resolve`` or ``execute``. For a resolve there is one decision per candidate action
    (its ``policy.evaluated`` result: allow, deny, requires_approval, rate_limited, budget_exceeded, or
    ``absent`` when the action is a candidate on one side only) and one for the resolution as a whole
    (``action_id`` None, the decision type: allow, partial, deny, requires_approval). For an execute it is
    the ending: success, authorized, error, pending_approval, ``denied:<CODE>`` or ``failed:<CODE>``. A
    resolve that the replaying runtime refused reads ``error:<CODE>``. ``sequence`` is the recorded event
    that carried the decision; ``change`` reads ``allow→deny`` when ``status`` is ``flipped``.
    """

    sequence: int
    operation: str
    action_id: str | None
    original: str
    replayed: str
    resolution_id: str | None = None
    execution_id: str | None = None
    original_policy: str | None = None
    replayed_policy: str | None = None

    @property
    def status(self) -> str:
        """``unchanged`` or ``flipped``."""
        return "unchanged" if self.original == self.replayed else "flipped"

    @property
    def change(self) -> str | None:
        """``original→replayed`` for a flipped decision, None for an unchanged one."""
        return None if self.original == self.replayed else f"{self.original}→{self.replayed}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every field plus ``status`` and ``change``."""
        return {
            "sequence": self.sequence,
            "operation": self.operation,
            "action_id": self.action_id,
            "original": self.original,
            "replayed": self.replayed,
            "status": self.status,
            "change": self.change,
            "resolution_id": self.resolution_id,
            "execution_id": self.execution_id,
            "original_policy": self.original_policy,
            "replayed_policy": self.replayed_policy,
        }


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """A session to re-run: its events (checked), the Atlases it runs against (in recorded order), and
    whether its decisions are reported (the other sessions only fill shared limiter windows)."""

    events: Sequence[TraceEvent]
    atlases: tuple[Atlas, ...]
    reported: bool


class _Gate:
    """How the replaying runtime checks parameters for the execution being re-issued: ``check`` (they are
    known: validate them for real), ``pass`` or ``fail`` (only their hash was recorded: keep the verdict
    the original validation reached, since the values cannot be checked again)."""

    __slots__ = ("mode",)

    def __init__(self) -> None:
        self.mode = "check"


class _GatedValidator:
    """Stands in for an action's compiled parameter schema in the replaying runtime (see ``_Gate``)."""

    __slots__ = ("_gate", "_real")

    def __init__(self, real: jsonschema_rs.Validator, gate: _Gate) -> None:
        self._real, self._gate = real, gate

    def iter_errors(self, instance: Any) -> Iterator[jsonschema_rs.ValidationError]:
        """The real validator's errors, none, or one, as the gate says."""
        if self._gate.mode == "check":
            return iter(self._real.iter_errors(instance))
        if self._gate.mode == "pass":
            return iter(())
        return iter(_ALWAYS_INVALID.iter_errors(instance))


def _gated(compiled: CompiledAtlas, gate: _Gate) -> CompiledAtlas:
    plans = tuple(
        plan
        if plan.validator is None
        else replace(plan, validator=cast(Any, _GatedValidator(plan.validator, gate)))
        for plan in compiled.plans
    )
    return replace(compiled, plans=plans, plan_by_id={plan.action.action_id: plan for plan in plans})


class _CapturingStorage(MemoryStorage):
    """``memory://`` that also hands every appended event to the replayer, so reading what an operation
    wrote costs nothing (re-reading a growing session after every call would be quadratic)."""

    def __init__(self) -> None:
        super().__init__("memory://")
        self.appended: list[TraceEvent] = []

    def append(self, events: Sequence[TraceEvent]) -> None:
        super().append(events)
        self.appended.extend(events)


def _ok_handler(_parameters: dict[str, Any]) -> dict[str, bool]:
    return {"ok": True}


def _failing_handler(message: str) -> Callable[[dict[str, Any]], Any]:
    def handler(_parameters: dict[str, Any]) -> Any:
        raise RuntimeError(message)

    return handler


def _response_label(response: ExecuteResponse) -> str:
    if response.status == "denied":
        return f"denied:{response.error_code}"
    return response.status


class _Session:
    """One recorded session and its counterpart in the replaying runtime."""

    def __init__(self, plan: SessionPlan) -> None:
        self.plan = plan
        self.original = TraceReader.read(plan.events)
        self.replayed = TraceReader()
        self.session_id: str | None = None  # in the replaying runtime
        self.resolutions: dict[str, str] = {}  # original id -> replayed id
        self.resolve_errors: dict[str, str] = {}  # original resolution id -> error code of its replay
        self.approvals: dict[str, str] = {}
        self.executions: dict[str, str] = {}
        self.decisions: list[ReplayDecision] = []
        self.unknown_parameters = 0
        self.orphans = 0  # executions of resolutions the trace does not hold


class Replayer:
    """Re-runs sessions together in one fresh runtime, interleaved in recorded order."""

    def __init__(self, plans: Sequence[SessionPlan]) -> None:
        self.sessions = [_Session(plan) for plan in plans]
        self.gate = _Gate()
        self.storage = _CapturingStorage()
        first = min((s.original.ops[0].at for s in self.sessions if s.original.ops), default=0)
        self.clock = ManualClock(format_timestamp(first))
        self.runtime = Runtime(
            clock=self.clock,
            storage=self.storage,
            tracing="immediate",
            import_executors=False,  # handlers follow what the trace shows, never the Atlas's executors
            resolution_cache=False,  # every decision is evaluated again, none served from a cache
            ids=SequentialIds(),
        )
        # Every plan carries its parameter check through the gate (see _Gate). The runtime takes a compiled
        # Atlas it already holds for a digest instead of compiling it again, so these are the ones it uses.
        for session in self.sessions:
            for atlas in session.plan.atlases:
                if atlas.digest not in self.runtime._compiled_by_digest:
                    self.runtime._compiled_by_digest[atlas.digest] = _gated(compile_atlas(atlas), self.gate)
        self._by_replayed_id: dict[str, _Session] = {}

    def run(self, progress: Progress | None = None) -> None:
        """Re-issue every operation of every session, in recorded order (time, then event id)."""
        # A merge, not a sort: each session's operations stay in their chain's order whatever their keys.
        queue = heapq.merge(
            *([(op, session) for op in session.original.ops] for session in self.sessions),
            key=lambda item: item[0].key,
        )
        total = sum(len(session.original.ops) for session in self.sessions)
        try:
            for done, (op, session) in enumerate(queue, 1):
                if op.at > self.clock.now_us():  # never backwards: equal instants keep recorded order
                    self.clock.set(format_timestamp(op.at))
                self._apply(session, op)
                self._catch_up()
                if progress is not None:
                    progress(done, total)
        finally:
            self.runtime.close()

    # --- reading what the runtime wrote -------------------------------------------------------------------

    def _catch_up(self) -> None:
        appended, self.storage.appended = self.storage.appended, []
        for event in appended:
            session = self._by_replayed_id.get(event.session_id)
            if session is not None:
                session.replayed.feed(event)

    def _new_ops(self, session: _Session, before: int) -> list[Op]:
        self._catch_up()
        return session.replayed.ops[before:]

    # --- operations ---------------------------------------------------------------------------------------

    def _apply(self, session: _Session, op: Op) -> None:
        if isinstance(op, StartOp):
            self._start(session, op)
        elif session.session_id is None:
            return  # no session.started was re-issued (a guard: checked traces always start with one)
        elif isinstance(op, ResolveOp):
            self._resolve(session, op)
        elif isinstance(op, ExecuteOp):
            self._execute(session, op)
        elif isinstance(op, CompleteOp):
            self._complete(session, op)
        elif isinstance(op, DecideOp):
            replayed = session.approvals.get(op.approval_id)
            if replayed is not None:  # else the replayed resolution asked for no approval
                decide = self.runtime.approve if op.granted else self.runtime.reject
                # Refused (e.g. expired in the replay): the executions that follow will show it.
                with contextlib.suppress(CRAError):
                    decide(replayed, op.approver or "replay")
        elif isinstance(op, EndOp):
            with contextlib.suppress(CRAError):  # e.g. ended already by an operation that flipped
                self.runtime.end_session(session.session_id, op.reason)

    def _start(self, session: _Session, op: StartOp) -> None:
        for atlas in session.plan.atlases:
            try:
                current: Atlas | None = self.runtime.get_atlas(atlas.atlas_id)
            except AtlasNotFoundError:
                current = None
            if current is None or current.digest != atlas.digest:
                if current is not None:
                    self.runtime.unload_atlas(atlas.atlas_id)  # sessions already started keep theirs
                self.runtime.load_atlas(atlas)
        started = self.runtime.create_session(
            str(op.payload["agent_id"]),
            str(op.payload["goal"]),
            [atlas.atlas_id for atlas in session.plan.atlases],
        )
        session.session_id = started.session_id
        self._by_replayed_id[started.session_id] = session

    def _resolve(self, session: _Session, op: ResolveOp) -> None:
        request = op.request
        context = request.get("context")
        if op.ttl_seconds is not None and 1 <= op.ttl_seconds <= 86_400:
            self.runtime.resolution_ttl_seconds = op.ttl_seconds  # as the recording runtime was configured
        before = len(session.replayed.ops)
        error: str | None = None
        assert session.session_id is not None
        try:
            self.runtime.resolve(
                session.session_id,
                _optional_str(request.get("goal")),
                risk_tier=str(request.get("risk_tier", "low")),
                required_capabilities=_optional_list(request.get("required_capabilities")),
                context_hints=_optional_list(request.get("context_hints")),
                context=context if isinstance(context, Mapping) else None,
                atlas_ids=_optional_list(request.get("atlas_ids")),
                request_id=_optional_str(request.get("request_id")),
            )
        except CRAError as exc:
            error = exc.code
        replayed = next((o for o in self._new_ops(session, before) if isinstance(o, ResolveOp)), None)
        original_id = op.resolution_id
        if original_id is None:
            return  # the trace ends inside this resolve: nothing to compare
        if replayed is not None and replayed.resolution_id is not None:
            session.resolutions[original_id] = replayed.resolution_id
            if op.approval_id is not None and replayed.approval_id is not None:
                session.approvals[op.approval_id] = replayed.approval_id
        else:
            error = error or "NOT_RECORDED"
            session.resolve_errors[original_id] = error
        if session.plan.reported:
            self._compare_resolve(session, op, replayed if error is None else None, error)

    def _compare_resolve(
        self, session: _Session, op: ResolveOp, replayed: ResolveOp | None, error: str | None
    ) -> None:
        closing = op.closing_sequence if op.closing_sequence is not None else op.sequence
        add = session.decisions.append
        theirs = {v.action_id: v for v in replayed.verdicts} if replayed is not None else {}
        for verdict in op.verdicts:
            mine = theirs.pop(verdict.action_id, None)
            add(
                ReplayDecision(
                    verdict.sequence,
                    "resolve",
                    verdict.action_id,
                    verdict.result,
                    f"error:{error}" if error else (mine.result if mine else "absent"),
                    op.resolution_id,
                    original_policy=verdict.policy_id,
                    replayed_policy=mine.policy_id if mine else None,
                )
            )
        for extra in theirs.values():  # a candidate only the replayed Atlas has
            add(
                ReplayDecision(
                    closing,
                    "resolve",
                    extra.action_id,
                    "absent",
                    extra.result,
                    op.resolution_id,
                    replayed_policy=extra.policy_id,
                )
            )
        add(
            ReplayDecision(
                closing,
                "resolve",
                None,
                op.decision,
                f"error:{error}" if error else (replayed.decision if replayed else "absent"),
                op.resolution_id,
            )
        )

    def _execute(self, session: _Session, op: ExecuteOp) -> None:
        assert session.session_id is not None
        replayed_resolution = session.resolutions.get(op.resolution_id)
        response: ExecuteResponse | None = None
        raised: str | None = None
        replayed: ExecuteOp | None = None
        if replayed_resolution is None:
            if op.resolution_id not in session.resolve_errors:
                session.orphans += 1  # its resolve is not in the trace (lost to a trace.gap)
                return
            raised = "RESOLUTION_NOT_FOUND"  # the replayed resolve was refused: there is nothing to execute
        else:
            parameters = known_parameters(op.requested)
            if parameters is None:
                session.unknown_parameters += 1
                self.gate.mode = "fail" if op.label == "failed:INVALID_PARAMETERS" else "pass"
            # The handler mirrors what the trace shows: the runtime ran one (success, error), or the caller
            # ran the action and reported later (authorized). Any other ending had no handler run, so an
            # execution the replay now authorises runs the conformance runner's handler.
            with contextlib.suppress(CRAError):  # not an action id at all: no Atlas has it, no handler needed
                if op.outcome == "authorized":
                    self.runtime.unregister(op.action_id)
                elif op.outcome == "error":
                    self.runtime.register(op.action_id, _failing_handler(op.message or "handler failed"))
                else:
                    self.runtime.register(op.action_id, _ok_handler)
            key = op.requested.get("idempotency_key")
            before = len(session.replayed.ops)
            try:
                response = self.runtime.execute(
                    session.session_id,
                    replayed_resolution,
                    op.action_id,
                    parameters if parameters is not None else {},
                    idempotency_key=key if isinstance(key, str) else None,
                )
            except CRAError as exc:
                raised = exc.code
            finally:
                self.gate.mode = "check"
            replayed = next((o for o in self._new_ops(session, before) if isinstance(o, ExecuteOp)), None)
        if replayed is not None:
            label = replayed.label
            session.executions[op.execution_id] = replayed.execution_id
            if op.approval_id is not None and replayed.approval_id is not None:
                session.approvals[op.approval_id] = replayed.approval_id
        elif response is not None:  # an idempotent answer: the runtime wrote nothing new
            label = _response_label(response)
        else:
            label = f"failed:{raised}"
        if session.plan.reported:
            session.decisions.append(
                ReplayDecision(
                    op.decisive_sequence if op.decisive_sequence is not None else op.sequence,
                    "execute",
                    op.action_id,
                    op.label,
                    label,
                    op.resolution_id,
                    op.execution_id,
                    op.policy_id,
                    replayed.policy_id if replayed is not None else None,
                )
            )

    def _complete(self, session: _Session, op: CompleteOp) -> None:
        if op.error_code == "SESSION_ENDED" or op.execution is None:
            return  # written by the session's end, which the replay re-issues itself
        replayed_id = session.executions.get(op.execution.execution_id)
        replayed = session.replayed.execution(replayed_id) if replayed_id is not None else None
        if replayed_id is None or replayed is None or replayed.outcome != "authorized" or replayed.completion:
            return  # the replay did not leave this execution waiting for an outcome
        error = None if op.error_code is None else {"code": op.error_code, "message": op.error_message or ""}
        with contextlib.suppress(
            CRAError
        ):  # COMPLETION_TIMEOUT is raised after it is recorded, as originally
            self.runtime.complete(replayed_id, error=error)


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _optional_list(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None
