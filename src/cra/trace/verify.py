"""Chain verification (SPEC 4.3): walk a session's events and report the first failure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import CRAError
from .event import GENESIS_HASH, TraceEvent, _hash_parts, event_hash

__all__ = ["ChainVerification", "verify_chain"]


@dataclass(frozen=True, slots=True)
class ChainVerification:
    """The result of verifying a chain.

    ``error`` is one of ``hash_mismatch`` (the event's own hash is wrong), ``invalid_genesis`` (the first event
    is not sequence 0 with a zero previous hash), ``chain_broken`` (``previous_event_hash`` differs from the
    prior event's hash), ``sequence_gap``, or ``head_mismatch`` (the chain verifies but does not end at the
    head that was expected); ``error_at`` is the index of the failing event in the list and
    ``sequence`` its sequence number.
    """

    valid: bool
    event_count: int
    error: str | None = None
    error_at: int | None = None
    sequence: int | None = None
    head_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The wire form: ``{valid, error, error_at, sequence, event_count, head_hash}``."""
        return {
            "valid": self.valid,
            "error": self.error,
            "error_at": self.error_at,
            "sequence": self.sequence,
            "event_count": self.event_count,
            "head_hash": self.head_hash,
        }

    def __bool__(self) -> bool:
        return self.valid


def _own_hash_ok(event: Mapping[str, Any] | TraceEvent) -> bool:
    try:
        claimed = event.event_hash if isinstance(event, TraceEvent) else event["event_hash"]
        return bool(claimed == event_hash(event))
    except (KeyError, TypeError, ValueError, AttributeError, CRAError):
        return False  # a malformed event cannot be the one that was hashed


def _field(event: Any, name: str) -> Any:
    if isinstance(event, TraceEvent):
        return getattr(event, name)
    return event.get(name) if isinstance(event, Mapping) else None


def verify_chain(
    events: Iterable[Mapping[str, Any] | TraceEvent], *, expected_head: str | None = None
) -> ChainVerification:
    """Verify a session's events in order; checks per event: hash, genesis, link, sequence (in that order).

    A hash chain alone cannot see its tail cut off or extended. Give ``expected_head`` (the last
    ``event_hash`` recorded elsewhere) and a chain that verifies but ends elsewhere fails with
    ``head_mismatch`` at its last index.
    """
    if isinstance(events, list) and all(type(e) is TraceEvent for e in events):
        return _verify_events(events, expected_head)
    previous_hash: str | None = None
    previous_sequence: int | None = None
    count = 0
    for index, event in enumerate(events):
        count += 1
        sequence = _field(event, "sequence")
        seq_out = sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else None
        if not _own_hash_ok(event):
            return ChainVerification(False, count, "hash_mismatch", index, seq_out)
        prev = _field(event, "previous_event_hash")
        if index == 0:
            if sequence != 0 or prev != GENESIS_HASH:
                return ChainVerification(False, count, "invalid_genesis", index, seq_out)
        else:
            if prev != previous_hash:
                return ChainVerification(False, count, "chain_broken", index, seq_out)
            if previous_sequence is None or sequence != previous_sequence + 1:
                return ChainVerification(False, count, "sequence_gap", index, seq_out)
        previous_hash = _field(event, "event_hash")
        previous_sequence = seq_out
    if expected_head is not None and previous_hash != expected_head:
        return ChainVerification(
            False, count, "head_mismatch", max(count - 1, 0), previous_sequence, previous_hash
        )
    return ChainVerification(True, count, head_hash=previous_hash)


def _verify_events(events: list[TraceEvent], expected_head: str | None) -> ChainVerification:
    """The same checks, in the same order, for events already parsed (the common case): no per-field
    helpers, one hash per event."""
    previous_hash = GENESIS_HASH
    previous_sequence = -1
    for index, event in enumerate(events):
        sequence = event.sequence
        if event.event_hash != _hash_parts(*event[:9], event.payload_json, event.previous_event_hash):
            return ChainVerification(False, index + 1, "hash_mismatch", index, sequence)
        if index == 0:
            if sequence != 0 or event.previous_event_hash != GENESIS_HASH:
                return ChainVerification(False, 1, "invalid_genesis", 0, sequence)
        else:
            if event.previous_event_hash != previous_hash:
                return ChainVerification(False, index + 1, "chain_broken", index, sequence)
            if sequence != previous_sequence + 1:
                return ChainVerification(False, index + 1, "sequence_gap", index, sequence)
        previous_hash, previous_sequence = event.event_hash, sequence
    count = len(events)
    head = events[-1].event_hash if events else None
    if expected_head is not None and head != expected_head:
        return ChainVerification(
            False, count, "head_mismatch", max(count - 1, 0), events[-1].sequence if events else None, head
        )
    return ChainVerification(True, count, head_hash=head)
