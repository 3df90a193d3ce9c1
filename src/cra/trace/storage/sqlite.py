"""``sqlite:///cra.db``: events in a SQLite file shared with the runtime's other state (SPEC 4.4).

Each appended batch is stored as one row per session (``trace_chunks``): the events' exact
``TraceEvent.to_json()`` lines, newline-separated, with the batch's first and last sequence. Per-row costs
(B-tree inserts, statement overhead) are then paid once per batch instead of once per event, which is what
lets chain + write reach ~100k events/s. A batch is one write transaction (group commit).

Each session's head (last sequence and hash) lives in ``trace_sessions`` and is moved by compare-and-set inside
that transaction, under SQLite's write lock: the batch must continue the stored head (next sequence, previous
hash) or ``ChainConflictError`` is raised and nothing is written; the primary key ``(session_id,
first_sequence)`` is a second guard. So appends from several threads, storage objects or processes never fork
a chain. See ``cra._sqlite`` for pragmas and durability.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

import orjson

from ..._sqlite import SqliteDatabase, open_database
from ...clock import format_timestamp
from ..event import GENESIS_HASH, TraceEvent
from .base import ChainConflictError, ChainHead

__all__ = ["MIN_RETENTION_SECONDS", "SqliteStorage"]

MIN_RETENTION_SECONDS = 24 * 3600
"""SPEC 4.4: retention keeps at least 24 hours."""

_RETENTION_CHUNK = 100  # sessions deleted per write transaction, so retention never blocks writers for long

SCHEMA_V1 = [
    """CREATE TABLE IF NOT EXISTS trace_chunks (
        session_id TEXT NOT NULL,
        first_sequence INTEGER NOT NULL,
        last_sequence INTEGER NOT NULL,
        lines BLOB NOT NULL,
        PRIMARY KEY (session_id, first_sequence)
    )""",
    # One row per session: its chain head, and its newest timestamp (for listing and retention).
    """CREATE TABLE IF NOT EXISTS trace_sessions (
        session_id TEXT PRIMARY KEY,
        head_sequence INTEGER NOT NULL,
        head_hash TEXT NOT NULL,
        last_timestamp TEXT NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS trace_sessions_by_time ON trace_sessions (last_timestamp)",
]

_INSERT = "INSERT INTO trace_chunks (session_id, first_sequence, last_sequence, lines) VALUES (?, ?, ?, ?)"
_NEW_SESSION = (
    "INSERT INTO trace_sessions (session_id, head_sequence, head_hash, last_timestamp) VALUES (?, ?, ?, ?)"
)
_MOVE_HEAD = (
    "UPDATE trace_sessions SET head_sequence = ?, head_hash = ?, last_timestamp = max(last_timestamp, ?) "
    "WHERE session_id = ? AND head_sequence = ? AND head_hash = ?"
)
_DUPLICATE_KEY = ("SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE")
_HEAD = "SELECT head_sequence, head_hash FROM trace_sessions WHERE session_id = ?"


class SqliteStorage:
    """Trace events in the ``trace_chunks`` table of a runtime's SQLite file (heads in ``trace_sessions``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.database: SqliteDatabase = open_database(url)
        try:
            self.database.migrate("trace", 1, SCHEMA_V1)
        except BaseException:
            self.database.close()
            raise

    def append(self, events: Sequence[TraceEvent]) -> None:
        if not events:
            return
        batches: dict[str, list[TraceEvent]] = {}
        for event in events:
            batches.setdefault(event.session_id, []).append(event)
        rows = []
        for session_id, batch in batches.items():
            for offset, event in enumerate(batch[1:], start=1):
                if event.sequence != batch[0].sequence + offset:
                    raise ChainConflictError(
                        f"session {session_id}: the batch's sequences are not consecutive"
                    )
            rows.append((session_id, batch, b"\n".join(e.to_json() for e in batch)))
        with self.database.write() as conn:
            # Under the write lock: every session's batch must continue its stored head, or nothing is written.
            for session_id, batch, lines in rows:
                first, last = batch[0], batch[-1]
                stamp = max(e.timestamp for e in batch)
                stored = conn.execute(_HEAD, (session_id,)).fetchone()
                if stored is None:
                    if first.sequence != 0 or first.previous_event_hash != GENESIS_HASH:
                        raise ChainConflictError(
                            f"session {session_id}: expected sequence 0, got {first.sequence}"
                        )
                    conn.execute(_NEW_SESSION, (session_id, last.sequence, last.event_hash, stamp))
                else:
                    head_sequence, head_hash = stored
                    if first.sequence == head_sequence + 1 and first.previous_event_hash != head_hash:
                        raise ChainConflictError(
                            f"session {session_id}: event {first.sequence} does not continue the stored head "
                            f"(previous_event_hash {first.previous_event_hash[:12]}…, head {head_hash[:12]}…)"
                        )
                    if first.sequence != head_sequence + 1:
                        raise ChainConflictError(
                            f"session {session_id}: expected sequence {head_sequence + 1}, got {first.sequence}"
                        )
                    moved = conn.execute(
                        _MOVE_HEAD,
                        (last.sequence, last.event_hash, stamp, session_id, head_sequence, head_hash),
                    ).rowcount
                    if moved != 1:
                        raise ChainConflictError(f"session {session_id}: the head moved during the append")
                try:
                    conn.execute(_INSERT, (session_id, first.sequence, last.sequence, lines))
                except sqlite3.IntegrityError as exc:
                    if exc.sqlite_errorname in _DUPLICATE_KEY:
                        raise ChainConflictError(f"a stored sequence was written again: {exc}") from exc
                    raise

    def read(
        self,
        session_id: str,
        *,
        since_sequence: int | None = None,
        limit: int | None = None,
        event_type: str | None = None,
    ) -> list[TraceEvent]:
        after = -1 if since_sequence is None else since_sequence
        rows = (
            self.database.read()
            .execute(
                "SELECT first_sequence, lines FROM trace_chunks WHERE session_id = ? AND last_sequence > ? "
                "ORDER BY first_sequence",
                (session_id, after),
            )
            .fetchall()
        )
        wanted = None if event_type is None else b'"event_type":' + orjson.dumps(event_type) + b","
        budget = None if limit is None else max(limit, 0)
        from_json = TraceEvent.from_json
        events: list[TraceEvent] = []
        for first_sequence, lines in rows:
            for offset, line in enumerate(bytes(lines).split(b"\n")):
                if first_sequence + offset <= after or (wanted is not None and wanted not in line):
                    continue
                if budget is not None and len(events) >= budget:
                    return events
                event = from_json(line)
                if event_type is None or event.event_type == event_type:
                    events.append(event)
        return events

    def head(self, session_id: str) -> ChainHead | None:
        row = self.database.read().execute(_HEAD, (session_id,)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def sessions(self) -> list[str]:
        rows = self.database.read().execute("SELECT session_id FROM trace_sessions ORDER BY session_id")
        return [row[0] for row in rows.fetchall()]

    def delete_session(self, session_id: str) -> bool:
        with self.database.write() as conn:
            deleted = conn.execute("DELETE FROM trace_sessions WHERE session_id = ?", (session_id,)).rowcount
            conn.execute("DELETE FROM trace_chunks WHERE session_id = ?", (session_id,))
        return deleted > 0

    def delete_sessions_before(
        self, cutoff_us: int, *, min_age_seconds: int = MIN_RETENTION_SECONDS, now_us: int | None = None
    ) -> int:
        """Retention: delete every whole session whose newest event is older than ``cutoff_us`` (epoch
        microseconds); returns how many sessions went.

        A cutoff less than ``min_age_seconds`` (default 24 h, the SPEC 4.4 minimum) before ``now_us``
        (default: the system clock) raises ``ValueError`` and deletes nothing.
        """
        now = time.time_ns() // 1000 if now_us is None else now_us
        if cutoff_us > now - min_age_seconds * 1_000_000:
            raise ValueError(
                f"retention cutoff is less than {min_age_seconds} s old: traces are kept at least that long"
            )
        cutoff = format_timestamp(cutoff_us)
        total = 0
        while True:
            with self.database.write() as conn:
                # Selected inside the transaction: a session that just got a new event is no longer old.
                rows = conn.execute(
                    "SELECT session_id FROM trace_sessions WHERE last_timestamp < ? LIMIT ?",
                    (cutoff, _RETENTION_CHUNK),
                ).fetchall()
                conn.executemany("DELETE FROM trace_chunks WHERE session_id = ?", rows)
                conn.executemany("DELETE FROM trace_sessions WHERE session_id = ?", rows)
            total += len(rows)
            if len(rows) < _RETENTION_CHUNK:
                return total

    def close(self) -> None:
        """Release this storage's handle on the database; idempotent."""
        self.database.close()

    def __repr__(self) -> str:
        return f"SqliteStorage({self.url!r})"
