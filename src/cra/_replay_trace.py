"""A session's trace read back as the operations that produced it (SPEC 4.2), for replay and state
reconstruction (SPEC 4.6). Nothing here needs a runtime or an Atlas: it reads events only.

Each operation opens a span, so the events of one call are the events of one span (an execute's span also
receives its outcome later, when the caller reports it with ``complete`` or the session ends). Two readings
here are inferences, because the trace does not spell them out:

- *who ran an action*: an ``action.executed``/``action.failed`` right after its ``action.approved`` (the next
  event of the session, same span) was written by the runtime's own handler call; anything later was
  reported with ``complete``. An outcome reported by ``complete`` with no other event in between therefore
  reads as a handler run; both mean "authorised and it ran".
- *which error code a denial carried*: ``action.denied`` records the reason and policy, not the code. The
  code follows from what the runtime writes: ``policy.violated`` first means ``ACTION_NOT_ALLOWED``, the
  reasons ``rate_limit_exceeded`` / ``budget_exceeded`` mean ``RATE_LIMITED`` / ``BUDGET_EXCEEDED``,
  ``approval <id> was rejected`` means ``APPROVAL_REJECTED``, anything else ``POLICY_DENIED``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .clock import parse_timestamp
from .errors import InvalidRequestError
from .trace.canonical import canonical_json
from .trace.event import TraceEvent
from .trace.verify import verify_chain

__all__ = [
    "CLOSING_EVENTS",
    "EMPTY_PARAMETERS_HASH",
    "CompleteOp",
    "DecideOp",
    "EndOp",
    "ExecuteOp",
    "Op",
    "RecordedVerdict",
    "ResolveOp",
    "StartOp",
    "TraceReader",
    "checked_trace",
    "derive_decision",
    "known_parameters",
    "recorded_atlases",
]

CLOSING_EVENTS = ("carp.resolution.completed", "carp.resolution.cached")
EMPTY_PARAMETERS_HASH = hashlib.sha256(canonical_json({})).hexdigest()
_ALLOWED_RESULTS = ("allow", "requires_approval")
_REJECTED = re.compile(r"^approval \S+ was rejected$")


@dataclass(slots=True)
class Op:
    """One recorded operation: where it starts in the session's chain and when."""

    sequence: int
    at: int  # epoch microseconds of its first event
    event_id: str  # of its first event: orders operations of different sessions recorded at the same instant

    @property
    def key(self) -> tuple[int, str]:
        """The order of operations across sessions: time, then the (time-ordered, UUIDv7) event id."""
        return (self.at, self.event_id)


@dataclass(slots=True)
class StartOp(Op):
    """``session.started``: who, for what, with which Atlases."""

    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RecordedVerdict:
    """One ``policy.evaluated`` event."""

    sequence: int
    action_id: str
    result: str
    policy_id: str


@dataclass(slots=True)
class ResolveOp(Op):
    """A resolve: the request as ``carp.request.received`` recorded it, every verdict, and its closing event."""

    span: str = ""
    request: Mapping[str, Any] = field(default_factory=dict)
    verdicts: list[RecordedVerdict] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)  # injected context block ids, in order
    closing: Mapping[str, Any] | None = None
    closing_sequence: int | None = None

    @property
    def resolution_id(self) -> str | None:
        """The resolution's id (None if the trace ends before the resolve closed)."""
        return None if self.closing is None else str(self.closing["resolution_id"])

    @property
    def approval_id(self) -> str | None:
        """The batch approval the resolution created, if any (an extension key of the closing event)."""
        value = None if self.closing is None else self.closing.get("approval_id")
        return value if isinstance(value, str) else None

    @property
    def ttl_seconds(self) -> int | None:
        """The resolution's ttl as recorded (None when the closing event does not say)."""
        value = None if self.closing is None else self.closing.get("ttl_seconds")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def decision(self) -> str:
        """``decision_type`` as recorded; a cached resolution does not record it, so it is derived from the
        verdicts, by SPEC 3.1's rule."""
        recorded = None if self.closing is None else self.closing.get("decision_type")
        return recorded if isinstance(recorded, str) else derive_decision(v.result for v in self.verdicts)


@dataclass(slots=True)
class ExecuteOp(Op):
    """An execute call: ``action.requested`` and the ending written by the same call."""

    span: str = ""
    requested: Mapping[str, Any] = field(default_factory=dict)
    violated: bool = False
    outcome: str | None = None  # success, error, authorized, denied, pending_approval, failed
    code: str | None = None  # the error code of denied, failed and error
    message: str | None = None  # the recorded error message (failed, error)
    policy_id: str | None = None
    decisive_sequence: int | None = None  # the ending (for a run: its action.approved)
    approval_id: str | None = None  # from approval.requested
    approved_sequence: int | None = None
    completion: CompleteOp | None = None  # the outcome reported later for an ``authorized`` execution

    @property
    def execution_id(self) -> str:
        """The execution's id as recorded in ``action.requested``."""
        return str(self.requested["execution_id"])

    @property
    def action_id(self) -> str:
        """The action the call asked for."""
        return str(self.requested["action_id"])

    @property
    def resolution_id(self) -> str:
        """The resolution the call named."""
        return str(self.requested["resolution_id"])

    @property
    def label(self) -> str:
        """The ending as one string: ``success``, ``authorized``, ``error``, ``pending_approval``,
        ``denied:<CODE>`` or ``failed:<CODE>`` (``unrecorded`` if the trace holds no ending)."""
        if self.outcome in ("denied", "failed"):
            return f"{self.outcome}:{self.code}"
        return self.outcome or "unrecorded"


@dataclass(slots=True)
class CompleteOp(Op):
    """The outcome of an ``authorized`` execution, reported after the call (``complete``, session end,
    completion timeout)."""

    execution: ExecuteOp | None = None
    error_code: str | None = None  # None: action.executed
    error_message: str | None = None


@dataclass(slots=True)
class DecideOp(Op):
    """``approval.granted`` or ``approval.rejected``."""

    approval_id: str = ""
    approver: str = ""
    granted: bool = True


@dataclass(slots=True)
class EndOp(Op):
    """``session.ended``."""

    reason: str = "completed"


def derive_decision(results: Iterable[str]) -> str:
    """A resolution's decision type from its verdicts (SPEC 3.1)."""
    allowed = approval = denied = False
    for result in results:
        if result in _ALLOWED_RESULTS:
            allowed = True
            approval = approval or result == "requires_approval"
        else:
            denied = True
    if not allowed:
        return "deny"
    if approval:
        return "requires_approval"
    return "partial" if denied else "allow"


def known_parameters(requested: Mapping[str, Any]) -> dict[str, Any] | None:
    """The parameters of a recorded execution when they can be known: carried in the payload with a matching
    hash, or empty (the hash of ``{}``). Otherwise None: the trace holds only their hash."""
    recorded = requested.get("parameters_hash")
    carried = requested.get("parameters")
    if isinstance(carried, dict) and hashlib.sha256(canonical_json(carried)).hexdigest() == recorded:
        return dict(carried)
    if recorded == EMPTY_PARAMETERS_HASH:
        return {}
    return None


def _denial_code(violated: bool, reason: str) -> str:
    if violated:
        return "ACTION_NOT_ALLOWED"
    if reason == "rate_limit_exceeded":
        return "RATE_LIMITED"
    if reason == "budget_exceeded":
        return "BUDGET_EXCEEDED"
    if _REJECTED.match(reason):
        return "APPROVAL_REJECTED"
    return "POLICY_DENIED"


class TraceReader:
    """Reads one session's events, in sequence order, into ``ops``. ``feed`` may be called as events arrive
    (replay feeds what its runtime writes after each call)."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.gaps: list[tuple[int, int]] = []  # (sequence, lost events) of trace.gap events
        self._resolves: dict[str, ResolveOp] = {}
        self._executions: dict[str, ExecuteOp] = {}  # by span
        self._by_execution_id: dict[str, ExecuteOp] = {}
        self._previous: TraceEvent | None = None

    @classmethod
    def read(cls, events: Iterable[TraceEvent]) -> TraceReader:
        """A reader that has read every event."""
        reader = cls()
        for event in events:
            reader.feed(event)
        return reader

    def execution(self, execution_id: str) -> ExecuteOp | None:
        """The execute operation that recorded this execution id."""
        return self._by_execution_id.get(execution_id)

    def feed(self, event: TraceEvent) -> None:
        """Take the next event of the session."""
        kind, payload, span, seq = event.event_type, event.payload, event.span_id, event.sequence
        at = parse_timestamp(event.timestamp)
        previous, self._previous = self._previous, event
        if kind == "session.started":
            self.ops.append(StartOp(seq, at, event.event_id, payload))
        elif kind == "carp.request.received":
            resolve = ResolveOp(seq, at, event.event_id, span, payload)
            self._resolves[span] = resolve
            self.ops.append(resolve)
        elif kind == "policy.evaluated":
            open_resolve = self._resolves.get(span)
            if open_resolve is not None:
                open_resolve.verdicts.append(
                    RecordedVerdict(
                        seq, str(payload["action_id"]), str(payload["result"]), str(payload["policy_id"])
                    )
                )
        elif kind == "context.injected":
            open_resolve = self._resolves.get(span)
            if open_resolve is not None:
                open_resolve.blocks.append(str(payload["block_id"]))
        elif kind in CLOSING_EVENTS:
            closed = self._resolves.pop(span, None)
            if closed is not None:
                closed.closing, closed.closing_sequence = payload, seq
        elif kind == "action.requested":
            execute = ExecuteOp(seq, at, event.event_id, span, payload)
            self._executions[span] = execute
            self._by_execution_id[execute.execution_id] = execute
            self.ops.append(execute)
        elif kind == "trace.gap":
            self.gaps.append((seq, int(payload.get("lost_events", 0))))
        elif kind in ("approval.granted", "approval.rejected"):
            self.ops.append(
                DecideOp(
                    seq,
                    at,
                    event.event_id,
                    str(payload["approval_id"]),
                    str(payload.get("approver", "")),
                    kind == "approval.granted",
                )
            )
        elif kind == "session.ended":
            self.ops.append(EndOp(seq, at, event.event_id, str(payload.get("reason", "completed"))))
        else:
            execute_op = self._executions.get(span)
            if execute_op is not None:
                self._execution_event(execute_op, event, previous, at)

    def _execution_event(
        self, op: ExecuteOp, event: TraceEvent, previous: TraceEvent | None, at: int
    ) -> None:
        kind, payload, seq = event.event_type, event.payload, event.sequence
        if kind == "policy.violated":
            op.violated = True
            return
        if op.outcome is None:  # the call's own ending
            if kind == "action.denied":
                reason = str(payload.get("reason", ""))
                op.outcome, op.code = "denied", _denial_code(op.violated, reason)
                op.policy_id, op.message = payload.get("policy_id"), reason
            elif kind == "approval.requested":
                op.outcome, op.approval_id = "pending_approval", str(payload["approval_id"])
            elif kind == "action.approved":
                op.outcome, op.approved_sequence = "authorized", seq
            elif kind == "action.failed":
                op.outcome, op.code = "failed", str(payload.get("error_code"))
                op.message = str(payload.get("error_message", ""))
            else:
                return
            op.decisive_sequence = seq
            return
        if op.outcome != "authorized" or op.completion is not None:
            return
        if kind not in ("action.executed", "action.failed"):
            return
        failed = kind == "action.failed"
        adjacent = (
            previous is not None
            and previous.span_id == op.span
            and previous.sequence == op.approved_sequence
            and previous.event_type == "action.approved"
        )
        if adjacent:  # written by the runtime's handler call: part of the execute itself
            op.outcome = "error" if failed else "success"
            if failed:
                op.code, op.message = str(payload.get("error_code")), str(payload.get("error_message", ""))
            return
        completion = CompleteOp(
            seq,
            at,
            event.event_id,
            op,
            str(payload.get("error_code")) if failed else None,
            str(payload.get("error_message", "")) if failed else None,
        )
        op.completion = completion
        self.ops.append(completion)


def checked_trace(events: Iterable[TraceEvent], what: str = "the trace") -> list[TraceEvent]:
    """One whole session's events, verified, or ``InvalidRequestError`` saying why not: replaying or
    rebuilding from a tampered, partial or mixed trace would report decisions nobody made."""
    checked = list(events)
    if not checked:
        raise InvalidRequestError(f"{what} is empty: there is no session to read")
    if not all(isinstance(event, TraceEvent) for event in checked):
        raise InvalidRequestError(f"{what} must be a list of TraceEvent objects (cra.read_jsonl reads them)")
    sessions = sorted({event.session_id for event in checked})
    if len(sessions) > 1:
        raise InvalidRequestError(
            f"{what} holds events of {len(sessions)} sessions; give one session's trace",
            details={"session_ids": sessions[:20]},
        )
    verification = verify_chain(checked)
    if not verification.valid:
        raise InvalidRequestError(
            f"{what} does not verify ({verification.error} at sequence {verification.sequence}): "
            "a tampered or incomplete trace is not replayed",
            details={"verification": verification.to_dict()},
        )
    first = checked[0]
    recorded = first.payload.get("atlases")
    if (
        first.event_type != "session.started"
        or not isinstance(recorded, list)
        or not all(
            isinstance(entry, Mapping)
            and isinstance(entry.get("atlas_id"), str)
            and isinstance(entry.get("digest"), str)
            for entry in recorded
        )
    ):
        raise InvalidRequestError(
            f"{what} does not record the Atlas digests its session started with (session.started.atlases)"
        )
    return checked


def recorded_atlases(events: Sequence[TraceEvent]) -> list[Mapping[str, Any]]:
    """``session.started``'s ``atlases`` entries ({atlas_id, version, digest}) of a checked trace."""
    return list(events[0].payload["atlases"])
