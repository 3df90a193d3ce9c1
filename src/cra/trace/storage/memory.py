"""``memory://``: events in this process only; for tests and throwaway runs."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ..event import TraceEvent
from .base import ChainConflictError, ChainHead

__all__ = ["MemoryStorage"]


class MemoryStorage:
    """Keeps every event in a per-session list. Nothing survives the process."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._events: dict[str, list[TraceEvent]] = {}
        self._lock = threading.Lock()

    def append(self, events: Sequence[TraceEvent]) -> None:
        with self._lock:
            # Check the whole batch first so that a conflict leaves nothing half-written.
            expected: dict[str, int] = {}
            for event in events:
                stored = self._events.get(event.session_id)
                nxt = expected.get(event.session_id, len(stored) if stored else 0)
                if event.sequence != nxt:
                    raise ChainConflictError(
                        f"session {event.session_id}: expected sequence {nxt}, got {event.sequence}"
                    )
                expected[event.session_id] = nxt + 1
            for event in events:
                self._events.setdefault(event.session_id, []).append(event)

    def read(
        self,
        session_id: str,
        *,
        since_sequence: int | None = None,
        limit: int | None = None,
        event_type: str | None = None,
    ) -> list[TraceEvent]:
        with self._lock:
            events = list(self._events.get(session_id, ()))
        return _select(events, since_sequence, limit, event_type)

    def head(self, session_id: str) -> ChainHead | None:
        with self._lock:
            events = self._events.get(session_id)
            if not events:
                return None
            last = events[-1]
            return last.sequence, last.event_hash

    def sessions(self) -> list[str]:
        with self._lock:
            return list(self._events)

    def delete_session(self, session_id: str) -> bool:
        with self._lock:
            return self._events.pop(session_id, None) is not None

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"MemoryStorage({self.url!r})"


def _select(
    events: list[TraceEvent], since_sequence: int | None, limit: int | None, event_type: str | None
) -> list[TraceEvent]:
    if since_sequence is not None:
        events = [e for e in events if e.sequence > since_sequence]
    if event_type is not None:
        events = [e for e in events if e.event_type == event_type]
    if limit is not None:
        events = events[: max(limit, 0)]
    return events
