"""The TRACE event (SPEC 4.1) and its hash (SPEC 4.3)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, Protocol

import orjson

from .canonical import canonical_json

__all__ = [
    "GENESIS_HASH",
    "TRACE_VERSION",
    "ChainRecord",
    "TraceEvent",
    "chain_events",
    "event_hash",
]

TRACE_VERSION = "1.0"
_VERSION_BYTES = TRACE_VERSION.encode()
GENESIS_HASH = "0" * 64
"""The ``previous_event_hash`` of a session's first event."""

_FIELDS = (
    "trace_version",
    "event_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "session_id",
    "sequence",
    "timestamp",
    "event_type",
    "payload",
    "event_hash",
    "previous_event_hash",
)


def _hash_parts(
    trace_version: str,
    event_id: str,
    trace_id: str,
    span_id: str,
    parent_span_id: str | None,
    session_id: str,
    sequence: int,
    timestamp: str,
    event_type: str,
    payload_json: bytes,
    previous_event_hash: str,
) -> str:
    head = "".join(
        (
            trace_version,
            event_id,
            trace_id,
            span_id,
            parent_span_id or "",
            session_id,
            str(sequence),
            timestamp,
            event_type,
        )
    )
    digest = hashlib.sha256(head.encode("utf-8"))
    digest.update(payload_json)
    digest.update(previous_event_hash.encode("utf-8"))
    return digest.hexdigest()


def event_hash(event: Mapping[str, Any] | TraceEvent) -> str:
    """The SHA-256 hex ``event_hash`` of an event (a ``TraceEvent`` or its wire dict), per SPEC 4.3.

    The event's own ``event_hash`` field is ignored, so this answers what the hash *should* be.
    """
    if isinstance(event, TraceEvent):
        return event.compute_hash()
    sequence = event["sequence"]
    if isinstance(sequence, bool) or not isinstance(sequence, int):
        raise TypeError("sequence must be an integer")
    return _hash_parts(
        event["trace_version"],
        event["event_id"],
        event["trace_id"],
        event["span_id"],
        event.get("parent_span_id"),
        event["session_id"],
        sequence,
        event["timestamp"],
        event["event_type"],
        canonical_json(event["payload"]),
        event["previous_event_hash"],
    )


class _EventFields(NamedTuple):
    trace_version: str
    event_id: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    session_id: str
    sequence: int
    timestamp: str
    event_type: str
    payload: Mapping[str, Any]
    event_hash: str
    previous_event_hash: str
    payload_json: bytes


class TraceEvent(_EventFields):
    """One hash-chained TRACE event. Immutable (a tuple underneath, so building one is cheap: the chain
    builds thousands per second); ``to_dict()`` gives the wire JSON object.

    ``payload_json`` keeps the canonical JSON of the payload that was hashed, so storage writes exactly the
    bytes the hash covers and never re-encodes them.
    """

    __slots__ = ()

    def __new__(
        cls,
        *,
        event_id: str,
        trace_id: str,
        span_id: str,
        parent_span_id: str | None,
        session_id: str,
        sequence: int,
        timestamp: str,
        event_type: str,
        payload: Mapping[str, Any],
        previous_event_hash: str,
        event_hash: str | None = None,
        payload_json: bytes | None = None,
        trace_version: str = TRACE_VERSION,
    ) -> TraceEvent:
        if payload_json is None:
            payload_json = canonical_json(payload)
        if event_hash is None:
            event_hash = _hash_parts(
                trace_version,
                event_id,
                trace_id,
                span_id,
                parent_span_id,
                session_id,
                sequence,
                timestamp,
                event_type,
                payload_json,
                previous_event_hash,
            )
        return _new_event(
            cls,
            (
                trace_version,
                event_id,
                trace_id,
                span_id,
                parent_span_id,
                session_id,
                sequence,
                timestamp,
                event_type,
                payload,
                event_hash,
                previous_event_hash,
                payload_json,
            ),
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (tuple(self),))

    def compute_hash(self) -> str:
        """Recompute the hash from the fields (what ``event_hash`` must equal for an untampered event)."""
        return _hash_parts(
            self.trace_version,
            self.event_id,
            self.trace_id,
            self.span_id,
            self.parent_span_id,
            self.session_id,
            self.sequence,
            self.timestamp,
            self.event_type,
            self.payload_json,
            self.previous_event_hash,
        )

    def to_dict(self) -> dict[str, Any]:
        """The wire object, keys in schema order; the payload is a fresh copy."""
        return {
            "trace_version": self.trace_version,
            "event_id": self.event_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "session_id": self.session_id,
            "sequence": self.sequence,
            "timestamp": self.timestamp,
            "event_type": self.event_type,
            "payload": orjson.loads(self.payload_json),
            "event_hash": self.event_hash,
            "previous_event_hash": self.previous_event_hash,
        }

    def to_json(self) -> bytes:
        """One JSON line (no newline): the payload is embedded as the exact canonical bytes that were hashed."""
        return orjson.dumps(
            {
                "trace_version": self.trace_version,
                "event_id": self.event_id,
                "trace_id": self.trace_id,
                "span_id": self.span_id,
                "parent_span_id": self.parent_span_id,
                "session_id": self.session_id,
                "sequence": self.sequence,
                "timestamp": self.timestamp,
                "event_type": self.event_type,
                "payload": orjson.Fragment(self.payload_json),
                "event_hash": self.event_hash,
                "previous_event_hash": self.previous_event_hash,
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TraceEvent:
        """Build an event from its wire object, keeping the stored ``event_hash`` (verify checks it).

        Raises ``ValueError`` naming the first missing or mistyped field.
        """
        for name in _FIELDS:
            if name not in data and name != "parent_span_id":
                raise ValueError(f"trace event is missing {name!r}")
        for name in (
            "trace_version",
            "event_id",
            "trace_id",
            "span_id",
            "session_id",
            "timestamp",
            "event_type",
            "event_hash",
            "previous_event_hash",
        ):
            if not isinstance(data[name], str):
                raise ValueError(f"trace event field {name!r} must be a string")
        sequence = data["sequence"]
        if isinstance(sequence, float) and sequence.is_integer():
            sequence = int(sequence)  # JSON has one number type: 7.0 is the integer 7 (JSON Schema agrees)
        if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
            raise ValueError("trace event field 'sequence' must be a non-negative integer")
        parent = data.get("parent_span_id")
        if parent is not None and not isinstance(parent, str):
            raise ValueError("trace event field 'parent_span_id' must be a string or null")
        payload = data["payload"]
        if not isinstance(payload, dict):
            raise ValueError("trace event field 'payload' must be an object")
        return cls(
            trace_version=data["trace_version"],
            event_id=data["event_id"],
            trace_id=data["trace_id"],
            span_id=data["span_id"],
            parent_span_id=parent,
            session_id=data["session_id"],
            sequence=sequence,
            timestamp=data["timestamp"],
            event_type=data["event_type"],
            payload=payload,
            previous_event_hash=data["previous_event_hash"],
            event_hash=data["event_hash"],
        )

    @classmethod
    def from_json(cls, line: bytes | str) -> TraceEvent:
        """Parse one JSON line written by ``to_json`` (or any wire event object)."""
        data = orjson.loads(line)
        if not isinstance(data, dict):
            raise ValueError("a trace event line must hold a JSON object")
        return cls.from_dict(data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TraceEvent) and self.to_json() == other.to_json()

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self.event_hash)

    def __repr__(self) -> str:
        return f"TraceEvent(#{self.sequence} {self.event_type} {self.event_hash[:12]})"


_new_event = tuple.__new__


def _rebuild(fields: tuple[Any, ...]) -> TraceEvent:
    event: TraceEvent = _new_event(TraceEvent, fields)
    return event


class ChainRecord(Protocol):
    """What ``chain_events`` reads of a record (``cra.trace.tracer.Record`` has it)."""

    @property
    def event_type(self) -> str: ...

    @property
    def payload(self) -> Mapping[str, Any]: ...

    @property
    def payload_json(self) -> bytes | None: ...


def chain_events(
    trace_id: str,
    span_id: str,
    parent_span_id: str | None,
    session_id: str,
    sequence: int,
    timestamp: str,
    previous_event_hash: str,
    records: Iterable[ChainRecord],
    new_id: Callable[[], str],
) -> list[TraceEvent]:
    """Chain records of one span written at one time: the hash of SPEC 4.3 per event (as ``event_hash``), with
    the span's fields encoded once for the whole batch (UTF-8 of a concatenation is the concatenation of the
    UTF-8 encodings, so hashing the parts in order is hashing the SPEC 4.3 string)."""
    middle = "".join((trace_id, span_id, parent_span_id or "", session_id)).encode()
    stamp = timestamp.encode()
    sha256, join, new = hashlib.sha256, b"".join, _new_event
    events: list[TraceEvent] = []
    previous = previous_event_hash
    for record in records:
        event_id = new_id()
        event_type = record.event_type
        payload_json = record.payload_json
        if payload_json is None:
            payload_json = canonical_json(record.payload, trusted=True)  # records carry checked values only
        event_hash = sha256(
            join(
                (
                    _VERSION_BYTES,
                    event_id.encode(),
                    middle,
                    b"%d" % sequence,
                    stamp,
                    event_type.encode(),
                    payload_json,
                    previous.encode(),
                )
            )
        ).hexdigest()
        events.append(
            new(
                TraceEvent,
                (
                    TRACE_VERSION,
                    event_id,
                    trace_id,
                    span_id,
                    parent_span_id,
                    session_id,
                    sequence,
                    timestamp,
                    event_type,
                    record.payload,
                    event_hash,
                    previous,
                    payload_json,
                ),
            )
        )
        previous = event_hash
        sequence += 1
    return events
