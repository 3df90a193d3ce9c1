"""``sqlite:///cra.db``: sliding-window counters in the runtime's SQLite file (SPEC 3.1, 4.4, 13).

Every consumption is one row ``(key, t_us, weight, window_us)``. ``acquire`` runs in one write transaction
(``BEGIN IMMEDIATE``: SQLite's write lock, so threads and processes sharing the file take turns): it sums
each window, and inserts a row for every request only if none would pass its limit. Limits therefore hold
across every process on the file and survive a restart.

A one-row ``limiter_version`` counter moves in the same transaction as every change, so ``version`` tells
any process on the file whether limits moved since it last looked (the resolution cache relies on it).

Sums are computed by SQLite, so a total may differ from ``MemoryLimiter``'s running float total in the last
bit for weights that are not exact binary fractions.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._sqlite import SqliteDatabase, open_database
from .limiter import LimitRequest

__all__ = ["SqliteLimiter"]

SCHEMA_V1 = [
    """CREATE TABLE IF NOT EXISTS limiter_entries (
        key TEXT NOT NULL,
        t_us INTEGER NOT NULL,
        weight REAL NOT NULL,
        window_us INTEGER
    )""",
    "CREATE INDEX IF NOT EXISTS limiter_entries_by_key ON limiter_entries (key, t_us)",
]

SCHEMA_V2 = [
    "CREATE TABLE IF NOT EXISTS limiter_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO limiter_version (id, version) VALUES (1, 0)",
]

_VERSION = "SELECT version FROM limiter_version WHERE id = 1"
_BUMP = "UPDATE limiter_version SET version = version + 1 WHERE id = 1"
_OLDEST = "SELECT min(t_us) FROM limiter_entries WHERE key = ?"
_SUM_WINDOW = "SELECT total(weight) FROM limiter_entries WHERE key = ? AND t_us > ?"
_SUM_FOREVER = "SELECT total(weight) FROM limiter_entries WHERE key = ?"
_INSERT = "INSERT INTO limiter_entries (key, t_us, weight, window_us) VALUES (?, ?, ?, ?)"
_RELEASE = (
    "DELETE FROM limiter_entries WHERE rowid = (SELECT rowid FROM limiter_entries "
    "WHERE key = ? AND t_us = ? AND weight = ? ORDER BY rowid DESC LIMIT 1)"
)


class SqliteLimiter:
    """Counters in the ``limiter_entries`` table, shared by every process using the file."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.database: SqliteDatabase = open_database(url)
        try:
            self.database.migrate("limiter", 1, SCHEMA_V1)
            self.database.migrate("limiter", 2, SCHEMA_V2)
        except BaseException:
            self.database.close()
            raise

    @property
    def version(self) -> int:
        """Moves with every change of any window, by any process on the file."""
        row = self.database.read().execute(_VERSION).fetchone()
        return int(row[0])

    def next_change(self, key: str, window_us: int | None) -> int | None:
        """When the window's usage will next drop on its own (its oldest entry leaves), or None."""
        if window_us is None:
            return None
        row = self.database.read().execute(_OLDEST, (key,)).fetchone()
        return None if row[0] is None else int(row[0]) + window_us

    def usage(self, key: str, window_us: int | None, now_us: int) -> float:
        conn = self.database.read()
        if window_us is None:
            row = conn.execute(_SUM_FOREVER, (key,)).fetchone()
        else:
            row = conn.execute(_SUM_WINDOW, (key, now_us - window_us)).fetchone()
        return float(row[0])

    def acquire(self, requests: Sequence[LimitRequest], now_us: int) -> int:
        if not requests:
            return -1
        with self.database.write() as conn:
            for index, request in enumerate(requests):
                if request.window_us is None:
                    row = conn.execute(_SUM_FOREVER, (request.key,)).fetchone()
                else:
                    row = conn.execute(_SUM_WINDOW, (request.key, now_us - request.window_us)).fetchone()
                if float(row[0]) + request.weight > request.limit:
                    return index  # nothing written: the transaction commits empty
            conn.executemany(_INSERT, [(r.key, now_us, float(r.weight), r.window_us) for r in requests])
            conn.execute(_BUMP)
        return -1

    def release(self, requests: Sequence[LimitRequest], now_us: int) -> None:
        if not requests:
            return
        with self.database.write() as conn:
            conn.executemany(_RELEASE, [(r.key, now_us, float(r.weight)) for r in requests])
            conn.execute(_BUMP)

    def prune(self, now_us: int) -> int:
        with self.database.write() as conn:
            cursor = conn.execute(
                "DELETE FROM limiter_entries WHERE window_us IS NOT NULL AND t_us <= ? - window_us", (now_us,)
            )
            if cursor.rowcount:
                conn.execute(_BUMP)
            return cursor.rowcount

    def snapshot(self) -> dict[str, list[tuple[int, float]]]:
        """Every window's entries, oldest first (as ``MemoryLimiter.snapshot``)."""
        rows = (
            self.database.read()
            .execute("SELECT key, t_us, weight FROM limiter_entries ORDER BY key, t_us, rowid")
            .fetchall()
        )
        result: dict[str, list[tuple[int, float]]] = {}
        for key, t_us, weight in rows:
            result.setdefault(key, []).append((int(t_us), float(weight)))
        return result

    def close(self) -> None:
        """Release this limiter's handle on the database; idempotent."""
        self.database.close()

    def __repr__(self) -> str:
        return f"SqliteLimiter({self.url!r})"
