"""The trace storage contract, shared by every backend (SPEC 4.4)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..event import TraceEvent

__all__ = ["ChainConflictError", "ChainHead", "TraceStorage"]

ChainHead = tuple[int, str]
"""The last stored ``(sequence, event_hash)`` of a session's chain."""


@runtime_checkable
class TraceStorage(Protocol):
    """Where hash-chained events live.

    Duties of every backend:

    - **Append-only, in order.** ``append`` receives events already chained, in sequence order per session;
      the backend stores them exactly (``read`` returns events whose ``to_json()`` is byte-identical) and
      never edits or reorders a stored event.
    - **Durable on return.** When ``append`` returns, the events survive a crash of this process (as far as
      the medium allows: ``memory://`` survives nothing). If it raises, none of the batch may be visible.
    - **Linear chains.** A backend shared by several processes must refuse an append whose sequence is not
      the next one of that session (raise ``ChainConflictError``) instead of forking the chain.
    - **Whole sessions only.** ``delete_session`` (retention) removes a whole session; nothing removes part
      of one.
    """

    url: str

    def append(self, events: Sequence[TraceEvent]) -> None:
        """Store a batch of chained events (possibly of several sessions) atomically and durably."""
        ...

    def read(
        self,
        session_id: str,
        *,
        since_sequence: int | None = None,
        limit: int | None = None,
        event_type: str | None = None,
    ) -> list[TraceEvent]:
        """A session's events in sequence order, optionally those after ``since_sequence``, of one type, at
        most ``limit``. An unknown session gives an empty list."""
        ...

    def head(self, session_id: str) -> ChainHead | None:
        """The last stored event's ``(sequence, event_hash)``, or None for a session with no events."""
        ...

    def sessions(self) -> list[str]:
        """Every session id with stored events."""
        ...

    def delete_session(self, session_id: str) -> bool:
        """Remove a whole session (retention); True if it existed."""
        ...

    def close(self) -> None:
        """Release files and connections; idempotent."""
        ...


class ChainConflictError(Exception):
    """An append whose sequence does not continue the stored chain (another writer got there first)."""
