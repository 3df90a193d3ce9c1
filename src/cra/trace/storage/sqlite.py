"""``sqlite:///cra.db``: events in a SQLite file shared with the runtime's other state (SPEC 4.4).

Each event is one row holding exactly ``TraceEvent.to_json()``; a batch is one write transaction (group
commit). The chain check runs inside that transaction, under SQLite's write lock: the first event of each
session in a batch must continue the stored head (next sequence, previous hash), and the primary key
``(session_id, sequence)`` refuses a second writer of any sequence, so appends from several threads,
storage objects or processes never fork a chain. See ``cra._sqlite`` for pragmas and durability.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from ..._sqlite import SqliteDatabase, open_database
from ...clock import format_timestamp
from ..event import GENESIS_HASH, TraceEvent
from .base import ChainConflictError, ChainHead

__all__ = ["MIN_RETENTION_SECONDS", "SqliteStorage"]

MIN_RETENTION_SECONDS = 24 * 3600
"""SPEC 4.4: retention keeps at least 24 hours."""

_RETENTION_CHUNK = 100  # sessions deleted per write transaction, so retention never blocks writers for long

SCHEMA_V1 = [
    """CREATE TABLE IF NOT EXISTS trace_events (
        session_id TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        event_type TEXT NOT NULL,
        line BLOB NOT NULL,
        event_hash TEXT NOT NULL,
        PRIMARY KEY (session_id, sequence)
    ) WITHOUT ROWID""",
    # One row per session: lists sessions without scanning events, and finds old ones for retention.
    """CREATE TABLE IF NOT EXISTS trace_sessions (
        session_id TEXT PRIMARY KEY,
        last_timestamp TEXT NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS trace_sessions_by_time ON trace_sessions (last_timestamp)",
]

_INSERT = (
    "INSERT INTO trace_events (session_id, sequence, event_type, line, event_hash) VALUES (?, ?, ?, ?, ?)"
)
_TOUCH = (
    "INSERT INTO trace_sessions (session_id, last_timestamp) VALUES (?, ?) "
    "ON CONFLICT (session_id) DO UPDATE SET last_timestamp = max(last_timestamp, excluded.last_timestamp)"
)
_DUPLICATE_KEY = ("SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE")
_HEAD = "SELECT sequence, event_hash FROM trace_events WHERE session_id = ? ORDER BY sequence DESC LIMIT 1"


class SqliteStorage:
    """Trace events in the ``trace_events`` table of a runtime's SQLite file."""

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
        rows = [(e.session_id, e.sequence, e.event_type, e.to_json(), e.event_hash) for e in events]
        latest: dict[str, str] = {}
        for event in events:
            stamp = latest.get(event.session_id)
            if stamp is None or event.timestamp > stamp:
                latest[event.session_id] = event.timestamp
        with self.database.write() as conn:
            # Under the write lock: check the whole batch against the stored heads before writing any of it.
            expected: dict[str, int] = {}
            for event in events:
                session_id = event.session_id
                nxt = expected.get(session_id)
                if nxt is None:
                    row = conn.execute(_HEAD, (session_id,)).fetchone()
                    nxt, previous = (0, GENESIS_HASH) if row is None else (row[0] + 1, row[1])
                    if event.sequence == nxt and event.previous_event_hash != previous:
                        raise ChainConflictError(
                            f"session {session_id}: event {event.sequence} does not continue the stored "
                            f"head (previous_event_hash {event.previous_event_hash[:12]}…, stored "
                            f"{previous[:12]}…)"
                        )
                if event.sequence != nxt:
                    raise ChainConflictError(
                        f"session {session_id}: expected sequence {nxt}, got {event.sequence}"
                    )
                expected[session_id] = nxt + 1
            try:
                conn.executemany(_INSERT, rows)
            except sqlite3.IntegrityError as exc:
                # The check above should make this impossible; the primary key is the second guard.
                if exc.sqlite_errorname in _DUPLICATE_KEY:
                    raise ChainConflictError(f"a stored sequence was written again: {exc}") from exc
                raise
            conn.executemany(_TOUCH, latest.items())

    def read(
        self,
        session_id: str,
        *,
        since_sequence: int | None = None,
        limit: int | None = None,
        event_type: str | None = None,
    ) -> list[TraceEvent]:
        sql = "SELECT line FROM trace_events WHERE session_id = ?"
        params: list[object] = [session_id]
        if since_sequence is not None:
            sql += " AND sequence > ?"
            params.append(since_sequence)
        if event_type is not None:
            sql += " AND event_type = ?"
            params.append(event_type)
        sql += " ORDER BY sequence"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(limit, 0))
        rows = self.database.read().execute(sql, params).fetchall()
        from_json = TraceEvent.from_json
        return [from_json(row[0]) for row in rows]

    def head(self, session_id: str) -> ChainHead | None:
        row = self.database.read().execute(_HEAD, (session_id,)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def sessions(self) -> list[str]:
        rows = self.database.read().execute("SELECT session_id FROM trace_sessions ORDER BY session_id")
        return [row[0] for row in rows.fetchall()]

    def delete_session(self, session_id: str) -> bool:
        with self.database.write() as conn:
            deleted = conn.execute("DELETE FROM trace_events WHERE session_id = ?", (session_id,)).rowcount
            conn.execute("DELETE FROM trace_sessions WHERE session_id = ?", (session_id,))
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
                conn.executemany("DELETE FROM trace_events WHERE session_id = ?", rows)
                conn.executemany("DELETE FROM trace_sessions WHERE session_id = ?", rows)
            total += len(rows)
            if len(rows) < _RETENTION_CHUNK:
                return total

    def close(self) -> None:
        """Release this storage's handle on the database; idempotent."""
        self.database.close()

    def __repr__(self) -> str:
        return f"SqliteStorage({self.url!r})"
