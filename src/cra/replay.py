"""Replay and state reconstruction (SPEC 4.6).

``replay(trace, atlas)`` re-runs every resolve and execute decision of one session's trace in a fresh
in-memory runtime, against the Atlas the session ran with (found by the digest its trace records) or a
proposed new version of it, with the recorded clock and the recorded limiter history, and reports per
decision whether it is unchanged or flipped. Against the original Atlas nothing may flip: that is the
determinism test. Against a new version it is the policy impact report::

    report = cra.replay(cra.read_jsonl("session.trace.jsonl"), cra.load_atlas("atlas-v2/"))
    for decision in report.decisions:
        if decision.status == "flipped":
            print(decision.sequence, decision.operation, decision.action_id, decision.change)

``reconstruct_state(trace)`` rebuilds a session's state (resolutions, executions, approvals, and, given the
Atlases, limiter counts) from its trace alone.

Limitations (docs/replay.md has the full list):

- **Parameters are hashed.** The trace records ``parameters_hash``, not the parameters. An execution whose
  parameters are empty (the hash of ``{}``) or carried in the payload is re-issued with them and validated
  again; for any other, only the policy decision path is re-run: the replay keeps the verdict the original
  parameter validation reached (valid, or ``INVALID_PARAMETERS``) instead of validating against the
  replayed Atlas's ``parameters_schema``. ``ReplayReport.notes`` says how many executions this concerns.
- **Handlers are stand-ins.** An execution that ran a handler (``success``) is re-run with one returning
  ``{"ok": true}``, a failed one with one that raises, an ``authorized`` one with none, and the outcome the
  caller reported later is reported again with ``complete``. Results are not compared; decisions are.
- **Shared windows need the other sessions.** Limits with ``scope`` ``agent`` or ``global`` are filled by
  other sessions too: pass their traces as ``others`` (``replay_session`` does), or the replay sees only
  this session's share. Operations of different sessions are ordered by time, then by event id, which is
  exact for the UUIDv7 ids one runtime process writes.
- **Recorded time is the time of recording**, a few microseconds after the decision with a system clock; a
  decision within microseconds of a window's edge may replay differently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._replay_run import ReplayDecision, Replayer, SessionPlan
from ._replay_state import (
    ReconstructedApproval,
    ReconstructedExecution,
    ReconstructedLimit,
    ReconstructedResolution,
    ReconstructedState,
    reconstruct,
)
from ._replay_trace import checked_trace, recorded_atlases
from .atlas import Atlas
from .clock import parse_timestamp
from .errors import AtlasNotFoundError, CRAError, InvalidRequestError, UnknownAtlasError
from .trace.event import TraceEvent

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = [
    "ReconstructedApproval",
    "ReconstructedExecution",
    "ReconstructedLimit",
    "ReconstructedResolution",
    "ReconstructedState",
    "ReplayDecision",
    "ReplayReport",
    "reconstruct_state",
    "replay",
    "replay_session",
]

Progress = Callable[[int, int], None]
"""``progress(done, total)``: called after each re-issued operation."""


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay found: every re-run decision (``ReplayDecision``), how many ``changed`` (flipped) and
    stayed ``unchanged``, and which Atlas was replayed against which.

    ``atlas_digest_original`` / ``atlas_digest_replayed`` name the Atlas under test: the one ``atlas``
    replaced (or, without ``atlas``, the session's first). ``atlases`` lists every Atlas of the session as
    ``(atlas_id, original digest, replayed digest)``. ``notes`` states what the replay could not re-run
    exactly (unrecoverable parameters, lost events).
    """

    decisions: tuple[ReplayDecision, ...]
    changed: int
    unchanged: int
    atlas_digest_original: str
    atlas_digest_replayed: str
    session_id: str
    atlases: tuple[tuple[str, str, str], ...]
    notes: tuple[str, ...] = ()

    @property
    def identical(self) -> bool:
        """True when no decision flipped."""
        return self.changed == 0

    @property
    def flipped(self) -> tuple[ReplayDecision, ...]:
        """The decisions that changed, in trace order."""
        return tuple(d for d in self.decisions if d.status == "flipped")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``cra replay --json``, ``POST /v1/replay``)."""
        return {
            "session_id": self.session_id,
            "identical": self.identical,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "atlas_digest_original": self.atlas_digest_original,
            "atlas_digest_replayed": self.atlas_digest_replayed,
            "atlases": [
                {"atlas_id": atlas_id, "original": original, "replayed": replayed}
                for atlas_id, original, replayed in self.atlases
            ],
            "notes": list(self.notes),
            "decisions": [d.to_dict() for d in self.decisions],
        }


def replay(
    events: Sequence[TraceEvent],
    atlas: Atlas | None = None,
    *,
    atlases: Sequence[Atlas] | None = None,
    others: Sequence[Sequence[TraceEvent]] = (),
    progress: Progress | None = None,
) -> ReplayReport:
    """Re-run every resolve and execute decision of one session's trace and report what changed.

    ``events`` is one whole session's trace (``runtime.get_trace``, ``cra.read_jsonl``). The Atlases the
    session ran with are chosen, per ``atlas_id`` the trace records: ``atlas`` when it has that id (the
    original or a proposed new version); else the Atlas in ``atlases`` with the recorded digest (the
    original); else the one in ``atlases`` with that id (a new version). ``others`` are traces of other
    sessions that share ``agent`` or ``global`` limit windows with this one: they are re-run alongside, in
    recorded order, so those windows fill as they did; only this session's decisions are reported.

    The replay runs in a fresh in-memory runtime with a manual clock set to each recorded operation's time
    and immediate tracing; what it writes is compared with what was recorded (see the module docstring for
    what cannot be re-run exactly).

    Raises ``InvalidRequestError`` (INVALID_REQUEST) for an empty trace, a trace of several sessions, one
    whose chain does not verify (tampered, cut or reordered), or one that does not record its Atlas digests;
    ``UnknownAtlasError`` (UNKNOWN_ATLAS) when ``atlas`` is not an Atlas of the session; and
    ``AtlasNotFoundError`` (ATLAS_NOT_FOUND) when an Atlas the session ran with was not given.
    """
    primary = checked_trace(events)
    session_ids = [entry["atlas_id"] for entry in recorded_atlases(primary)]
    if atlas is not None and atlas.atlas_id not in session_ids:
        raise UnknownAtlasError(
            f"Atlas {atlas.atlas_id} is not an Atlas of session {primary[0].session_id} "
            f"(it ran with {', '.join(session_ids) or 'none'})",
            details={"atlas_id": atlas.atlas_id, "session_atlas_ids": session_ids},
        )
    candidates = [*(atlases or ()), *([atlas] if atlas is not None else [])]
    primary_atlases = _choose(primary, atlas, candidates)
    plans = [SessionPlan(primary, primary_atlases, True)]
    seen = {primary[0].session_id}
    for index, other in enumerate(others):
        checked = checked_trace(other, f"others[{index}]")
        if checked[0].session_id not in seen:
            seen.add(checked[0].session_id)
            plans.append(SessionPlan(checked, _choose(checked, atlas, candidates), False))
    replayer = Replayer(plans)
    replayer.run(progress)
    session = replayer.sessions[0]
    decisions = tuple(sorted(session.decisions, key=lambda d: d.sequence))  # stable: resolution entry last
    changed = sum(1 for d in decisions if d.status == "flipped")
    pairs = tuple(
        (entry["atlas_id"], entry["digest"], chosen.digest)
        for entry, chosen in zip(recorded_atlases(primary), primary_atlases, strict=True)
    )
    under_test = next(
        (p for p in pairs if atlas is not None and p[0] == atlas.atlas_id), pairs[0] if pairs else None
    )
    return ReplayReport(
        decisions=decisions,
        changed=changed,
        unchanged=len(decisions) - changed,
        atlas_digest_original=under_test[1] if under_test else "",
        atlas_digest_replayed=under_test[2] if under_test else "",
        session_id=primary[0].session_id,
        atlases=pairs,
        notes=_notes(session.original.gaps, session.unknown_parameters, session.orphans),
    )


def _choose(
    events: Sequence[TraceEvent], atlas: Atlas | None, candidates: Sequence[Atlas]
) -> tuple[Atlas, ...]:
    by_digest = {candidate.digest: candidate for candidate in candidates}
    chosen: list[Atlas] = []
    for entry in recorded_atlases(events):
        atlas_id, digest = entry["atlas_id"], entry["digest"]
        if atlas is not None and atlas.atlas_id == atlas_id:
            chosen.append(atlas)
            continue
        found = by_digest.get(digest)
        if found is None:
            versions = {c.digest: c for c in candidates if c.atlas_id == atlas_id}
            if len(versions) > 1:
                raise InvalidRequestError(
                    f"several versions of Atlas {atlas_id} were given and none is the one the session ran "
                    "with: pass the one to replay against as atlas",
                    details={"atlas_id": atlas_id, "digests": sorted(versions)},
                )
            found = next(iter(versions.values()), None)
        if found is None:
            raise AtlasNotFoundError(
                f"session {events[0].session_id} ran with Atlas {atlas_id} {entry.get('version', '')} "
                f"(digest {digest}), which was not given",
                details={"atlas_id": atlas_id, "digest": digest},
            )
        chosen.append(found)
    return tuple(chosen)


def _notes(gaps: Sequence[tuple[int, int]], unknown_parameters: int, orphans: int) -> tuple[str, ...]:
    notes = [
        f"trace.gap at sequence {sequence}: {lost} events were lost; decisions after it may replay differently"
        for sequence, lost in gaps
    ]
    if unknown_parameters:
        notes.append(
            f"{unknown_parameters} execution(s) recorded only a hash of their parameters: their parameters were "
            "not validated again (the original validation's verdict was kept)"
        )
    if orphans:
        notes.append(
            f"{orphans} execution(s) name a resolution the trace does not hold and were not replayed"
        )
    return tuple(notes)


def replay_session(
    runtime: Runtime,
    session_id: str,
    atlas: Atlas | None = None,
    *,
    agent_id: str | None = None,
    progress: Progress | None = None,
) -> ReplayReport:
    """Replay one of ``runtime``'s sessions (``replay`` on ``runtime.get_trace(session_id)``).

    The Atlases the session ran with are found by digest in the runtime (loaded, or kept in its state
    store); ``atlas`` replaces the one with its id. When the session's Atlases have ``agent`` or ``global``
    limits, the runtime's other sessions of those Atlases that started before this session's last event are
    replayed alongside, so shared windows fill as they did. ``agent_id`` restricts to that agent's session
    (``ForbiddenError`` otherwise), as ``get_trace`` does.
    """
    events = runtime.get_trace(session_id, agent_id=agent_id)
    checked = checked_trace(events)
    recorded = recorded_atlases(checked)
    atlas_ids = {entry["atlas_id"] for entry in recorded}
    others: list[list[TraceEvent]] = []
    involved = [*(_original_atlas(runtime, entry["digest"]) for entry in recorded), atlas]
    if any(a is not None and _has_shared_windows(a) for a in involved):
        last = parse_timestamp(checked[-1].timestamp)
        for other in runtime.sessions():
            if (
                other.session_id != session_id
                and atlas_ids.intersection(other.atlas_ids)
                and parse_timestamp(other.created_at) <= last
            ):
                others.append(runtime.get_trace(other.session_id))
    digests = {entry["digest"] for entry in recorded}
    for trace in others:
        digests.update(entry.get("digest") for entry in trace[0].payload.get("atlases", ()) if trace)
    candidates = [
        found for digest in sorted(digests) if (found := _original_atlas(runtime, digest)) is not None
    ]
    return replay(events, atlas, atlases=candidates, others=others, progress=progress)


def _original_atlas(runtime: Runtime, digest: str) -> Atlas | None:
    """The Atlas with this digest as the runtime knows it (read-only use of its digest index)."""
    compiled = runtime._compiled_by_digest.get(digest)
    if compiled is not None:
        return compiled.atlas
    try:
        return runtime._atlas_by_digest(digest).atlas  # kept in the state store (a restarted runtime)
    except CRAError:
        return None


def _has_shared_windows(atlas: Atlas) -> bool:
    """Whether any limit of the Atlas is shared between sessions (``scope`` agent or global)."""
    for policy in atlas.policies:
        if policy.type in ("rate_limit", "budget"):
            parameters: Mapping[str, Any] = policy.parameters
            if parameters.get("scope", "session") != "session":
                return True
    return False


def reconstruct_state(
    events: Sequence[TraceEvent], *, atlases: Sequence[Atlas] | None = None
) -> ReconstructedState:
    """Rebuild a session's state from its trace (SPEC 4.6): agent, goal, status; every resolution (decision,
    allowed and denied ids, expiry), execution (how the call ended and where it stands now) and approval
    (status, approver, actions that ran on it); and, when the session's ``atlases`` are given (matched by
    the digests the trace records), the limiter windows it filled, per window key.

    Refuses what ``replay`` refuses (``InvalidRequestError`` for an empty, mixed or tampered trace;
    ``AtlasNotFoundError`` when ``atlases`` lack one the session ran with).
    """
    return reconstruct(events, atlases)
