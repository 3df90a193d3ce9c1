"""Turning emitted records into chained, stored events (immediate mode).

Operations hand the tracer a batch of ``(event_type, payload)`` records for one span; the tracer assigns
sequence numbers, ids and timestamps, chains the hashes and appends the batch to storage in one call.
Emitting and chaining are kept apart (``Record`` → ``chain_records``) so a deferred processor can run the
chaining step elsewhere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ..clock import Clock, format_timestamp
from ..errors import StorageUnavailableError
from .event import GENESIS_HASH, TraceEvent
from .storage import ChainConflictError, ChainHead, TraceStorage

__all__ = ["Record", "Span", "Tracer", "chain_records"]


class Span(NamedTuple):
    """Where an operation's events belong: the session's trace, the operation's span and its parent."""

    session_id: str
    trace_id: str
    span_id: str
    parent_span_id: str | None


class Record(NamedTuple):
    """An emitted, not yet chained event."""

    event_type: str
    payload: dict[str, Any]


def chain_records(
    span: Span,
    records: Sequence[Record],
    head: ChainHead | None,
    timestamp: str,
    new_id: Callable[[], str],
) -> list[TraceEvent]:
    """Chain records onto a session's head: sequence numbers, event ids and hashes."""
    sequence, previous = (0, GENESIS_HASH) if head is None else (head[0] + 1, head[1])
    events: list[TraceEvent] = []
    for record in records:
        event = TraceEvent(
            event_id=new_id(),
            trace_id=span.trace_id,
            span_id=span.span_id,
            parent_span_id=span.parent_span_id,
            session_id=span.session_id,
            sequence=sequence,
            timestamp=timestamp,
            event_type=record.event_type,
            payload=record.payload,
            previous_event_hash=previous,
        )
        events.append(event)
        previous = event.event_hash
        sequence += 1
    return events


class Tracer:
    """Immediate tracing: events are hashed and durably stored before ``emit`` returns."""

    def __init__(self, storage: TraceStorage, clock: Clock, new_id: Callable[[], str]) -> None:
        self.storage = storage
        self._clock = clock
        self._new_id = new_id
        self._heads: dict[str, ChainHead] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock_for(self, session_id: str) -> threading.Lock:
        lock = self._locks.get(session_id)
        if lock is None:
            with self._locks_guard:
                lock = self._locks.setdefault(session_id, threading.Lock())
        return lock

    def emit(self, span: Span, records: Sequence[Record]) -> list[TraceEvent]:
        """Chain and store ``records`` in one batch; raise ``StorageUnavailableError`` if storage fails
        (the chain head is then unchanged, so nothing is half-recorded in memory)."""
        if not records:
            return []
        with self._lock_for(span.session_id):
            for _attempt in range(3):
                head = self._heads.get(span.session_id)
                if head is None:
                    head = self.storage.head(span.session_id)
                events = chain_records(
                    span, records, head, format_timestamp(self._clock.now_us()), self._new_id
                )
                try:
                    self.storage.append(events)
                except ChainConflictError:
                    self._heads.pop(span.session_id, None)  # another writer moved the head: re-read it
                    continue
                except Exception as exc:
                    raise StorageUnavailableError(
                        f"trace storage refused the write: {type(exc).__name__}"
                    ) from exc
                last = events[-1]
                self._heads[span.session_id] = (last.sequence, last.event_hash)
                return events
        raise StorageUnavailableError("trace storage kept reporting a conflicting chain head")

    def read(self, session_id: str, **filters: Any) -> list[TraceEvent]:
        """A session's stored events (immediate mode has nothing buffered to flush first)."""
        return self.storage.read(session_id, **filters)

    def forget(self, session_id: str) -> None:
        """Drop cached state for a session (after retention deleted it)."""
        self._heads.pop(session_id, None)
        self._locks.pop(session_id, None)
