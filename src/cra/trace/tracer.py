"""Turning emitted records into chained, stored events (immediate mode).

Operations hand the tracer a batch of ``(event_type, payload)`` records for one span; the tracer assigns
sequence numbers, ids and timestamps, chains the hashes and appends the batch to storage in one call.
Emitting and chaining are kept apart (``Record`` → ``chain_records``) so a deferred processor can run the
chaining step elsewhere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from ..clock import Clock, format_timestamp
from ..errors import StorageUnavailableError
from .canonical import canonical_json
from .event import GENESIS_HASH, TraceEvent, chain_events
from .storage import ChainConflictError, ChainHead, TraceStorage

__all__ = ["Record", "Span", "TraceSink", "Tracer", "chain_records", "prepared"]


class Span(NamedTuple):
    """Where an operation's events belong: the session's trace, the operation's span and its parent."""

    session_id: str
    trace_id: str
    span_id: str
    parent_span_id: str | None


class Record(NamedTuple):
    """An emitted, not yet chained event. ``payload_json`` may carry the payload's canonical JSON when it is
    already known (records a cached resolution re-emits), so chaining does not encode it again."""

    event_type: str
    payload: dict[str, Any]
    payload_json: bytes | None = None


def prepared(event_type: str, payload: dict[str, Any]) -> Record:
    """A record whose canonical payload is computed now, for records emitted many times."""
    return Record(event_type, payload, canonical_json(payload, trusted=True))


class TraceSink(Protocol):
    """Where operations send their records: ``Tracer`` (immediate) or ``DeferredTracer`` (background)."""

    storage: TraceStorage

    def emit(
        self, span: Span, records: Sequence[Record], *, durable: bool = False, retain: bool = False
    ) -> Any:
        """Record events for one span; with ``durable=True`` they are stored when this returns; with
        ``retain=True`` they are kept and written later if storage fails now."""
        ...

    def read(self, session_id: str, **filters: Any) -> list[TraceEvent]:
        """A session's events, including everything emitted before the call."""
        ...

    def flush(self, timeout: float | None = None) -> bool:
        """Make everything emitted so far durable; False if the timeout ran out first."""
        ...

    def close(self, timeout: float | None = None) -> None:
        """Flush and stop; idempotent."""
        ...

    def forget(self, session_id: str) -> None:
        """Drop cached state of a deleted session."""
        ...

    def known_head(self, session_id: str) -> str | None:
        """The last event hash this sink wrote for the session, if it wrote any."""
        ...

    def stats(self) -> dict[str, Any]:
        """Buffer and throughput counters."""
        ...


def chain_records(
    span: Span,
    records: Sequence[Record],
    head: ChainHead | None,
    timestamp: str,
    new_id: Callable[[], str],
) -> list[TraceEvent]:
    """Chain records onto a session's head: sequence numbers, event ids and hashes."""
    sequence, previous = (0, GENESIS_HASH) if head is None else (head[0] + 1, head[1])
    return chain_events(
        span.trace_id,
        span.span_id,
        span.parent_span_id,
        span.session_id,
        sequence,
        timestamp,
        previous,
        records,
        new_id,
    )


class Tracer:
    """Immediate tracing: events are hashed and durably stored before ``emit`` returns."""

    def __init__(self, storage: TraceStorage, clock: Clock, new_id: Callable[[], str]) -> None:
        self.storage = storage
        self._clock = clock
        self._new_id = new_id
        self._heads: dict[str, ChainHead] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._written = 0
        self._backlog: dict[str, list[tuple[Span, list[Record], int]]] = {}  # retained after a failed write

    def _lock_for(self, session_id: str) -> threading.Lock:
        lock = self._locks.get(session_id)
        if lock is None:
            with self._locks_guard:
                lock = self._locks.setdefault(session_id, threading.Lock())
        return lock

    def emit(
        self, span: Span, records: Sequence[Record], *, durable: bool = False, retain: bool = False
    ) -> list[TraceEvent]:
        """Chain and store ``records`` in one batch (always durable on return, whatever ``durable`` says).

        If storage fails, ``StorageUnavailableError`` is raised and the chain head is unchanged. With
        ``retain=True`` (outcomes of work already done, which must not be lost) the records are kept and
        written, in order and with their original timestamps, before the session's next events.
        """
        if not records:
            return []
        item = (span, list(records), self._clock.now_us())
        with self._lock_for(span.session_id):
            events = self._write(span.session_id, [*self._backlog.get(span.session_id, []), item], retain)
        return events[-len(records) :]

    def _write(
        self, session_id: str, items: list[tuple[Span, list[Record], int]], retain: bool
    ) -> list[TraceEvent]:
        """Chain and append items (with their own timestamps) onto the session's head; caller holds its lock.
        On failure the items become the session's backlog when ``retain`` is set."""
        for _attempt in range(3):
            head = self._heads.get(session_id)
            if head is None:
                head = self.storage.head(session_id)
            events: list[TraceEvent] = []
            for item_span, item_records, time_us in items:
                chained = chain_records(
                    item_span, item_records, head, format_timestamp(time_us), self._new_id
                )
                events.extend(chained)
                head = (chained[-1].sequence, chained[-1].event_hash)
            try:
                self.storage.append(events)
            except ChainConflictError:
                self._heads.pop(session_id, None)  # another writer moved the head: re-read it
                continue
            except Exception as exc:
                if retain:
                    self._backlog[session_id] = items
                raise StorageUnavailableError(
                    f"trace storage refused the write: {type(exc).__name__}"
                ) from exc
            self._backlog.pop(session_id, None)
            last = events[-1]
            self._heads[session_id] = (last.sequence, last.event_hash)
            self._written += len(events)
            return events
        raise StorageUnavailableError("trace storage kept reporting a conflicting chain head")

    def read(self, session_id: str, **filters: Any) -> list[TraceEvent]:
        """A session's stored events (immediate mode has nothing buffered to flush first)."""
        return self.storage.read(session_id, **filters)

    def flush(self, timeout: float | None = None) -> bool:
        """Write retained records (outcomes whose first write failed); True when none are left."""
        for session_id in list(self._backlog):
            with self._lock_for(session_id):
                items = self._backlog.get(session_id)
                if not items:
                    continue
                try:
                    self._write(session_id, list(items), retain=True)  # original timestamps kept
                except StorageUnavailableError:
                    return False
        return not self._backlog

    def close(self, timeout: float | None = None) -> None:
        """Write outcomes retained after a storage failure; raise ``StorageUnavailableError`` if some could
        not be written (nothing else is ever buffered in immediate mode)."""
        if self._backlog and not self.flush(timeout):
            raise StorageUnavailableError("retained trace records could not be written before closing")

    def stats(self) -> dict[str, Any]:
        """The same keys as the deferred processor's, all zero but ``processed``/``written``."""
        return {
            "mode": "immediate",
            "buffered": 0,
            "capacity": 0,
            "pressure": 0.0,
            "processed": self._written,
            "written": self._written,
            "dropped": 0,
            "lag_ms": 0.0,
            "failing": False,
            "overflow": "none",
        }

    def forget(self, session_id: str) -> None:
        """Drop cached state for a session (after retention deleted it)."""
        self._heads.pop(session_id, None)
        self._locks.pop(session_id, None)

    def known_head(self, session_id: str) -> str | None:
        """The last event hash this tracer wrote for the session (None if it wrote none)."""
        head = self._heads.get(session_id)
        return head[1] if head is not None else None
