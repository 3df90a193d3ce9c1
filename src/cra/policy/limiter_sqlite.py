"""``sqlite:///cra.db``: sliding-window counters in the runtime's SQLite file (SPEC 3.1, 4.4, 13).

Every consumption is one row ``(key, t_us, weight, window_us)``. ``acquire`` runs in one write transaction
(``BEGIN IMMEDIATE``: SQLite's write lock, so threads and processes sharing the file take turns): it sums
each window, and inserts a row for every request only if none would pass its limit. Limits therefore hold
across every process on the file and survive a restart.

``version`` tells any process on the file whether limits moved since it last looked (the resolution cache
relies on it). It is a 64-bit counter in a small memory-mapped file beside the database (``<db>-limits``),
not a table: reading it is a memory load, where a query per resolve released the GIL to the trace
processor and cost ~300 µs at the tail. Every change bumps it inside its write transaction and again after
the commit, so a reader that evaluates between the two sees the second bump; only a crash exactly between
commit and the second bump can leave another process's cached resolution stale, and execute re-checks every
limit in a write transaction anyway.

Sums are computed by SQLite, so a total may differ from ``MemoryLimiter``'s running float total in the last
bit for weights that are not exact binary fractions.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path

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

_OLDEST = "SELECT min(t_us) FROM limiter_entries WHERE key = ?"
_SUM_WINDOW = "SELECT total(weight) FROM limiter_entries WHERE key = ? AND t_us > ?"
_SUM_FOREVER = "SELECT total(weight) FROM limiter_entries WHERE key = ?"
_INSERT = "INSERT INTO limiter_entries (key, t_us, weight, window_us) VALUES (?, ?, ?, ?)"
_RELEASE = (
    "DELETE FROM limiter_entries WHERE rowid = (SELECT rowid FROM limiter_entries "
    "WHERE key = ? AND t_us = ? AND weight = ? ORDER BY rowid DESC LIMIT 1)"
)


_COUNTER = struct.Struct("<Q")
_COUNTERS: weakref.WeakSet[ChangeCounter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A thread of the parent may have held a counter's lock at fork time; in the child nobody will release it.
    for counter in list(_COUNTERS):
        counter._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


class ChangeCounter:
    """A 64-bit counter shared by every process that maps the same file (``MAP_SHARED``).

    Reads are a plain memory load. Bumps take an exclusive ``flock`` on the file (and a thread lock), so
    increments from several processes never interleave and the value only ever grows: a reader can never
    see a value again after it moved past it.
    """

    def __init__(self, path: Path) -> None:
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(self._fd).st_size < _COUNTER.size:
                os.ftruncate(self._fd, _COUNTER.size)
            self._map: mmap.mmap | None = mmap.mmap(self._fd, _COUNTER.size)
        except BaseException:
            os.close(self._fd)
            raise
        self._lock = threading.Lock()
        _COUNTERS.add(self)

    def read(self) -> int:
        """The current value (0 for a new file)."""
        if self._map is None:
            raise ValueError("the change counter is closed")
        value: int = _COUNTER.unpack_from(self._map)[0]
        return value

    def bump(self) -> None:
        """Add one (wrapping at 2**64, which no deployment reaches)."""
        with self._lock:
            if self._map is None or self._fd is None:
                raise ValueError("the change counter is closed")
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                _COUNTER.pack_into(self._map, 0, (self.read() + 1) % (1 << 64))
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Unmap and close the file; idempotent."""
        with self._lock:
            if self._map is not None:
                self._map.close()
                self._map = None
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class SqliteLimiter:
    """Counters in the ``limiter_entries`` table, shared by every process using the file."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.database: SqliteDatabase = open_database(url)
        try:
            self.database.migrate("limiter", 1, SCHEMA_V1)
            self._changes = ChangeCounter(Path(f"{self.database.path}-limits"))
        except BaseException:
            self.database.close()
            raise

    @property
    def version(self) -> int:
        """Moves with every change of any window, by any process on the file."""
        return self._changes.read()

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
            self._changes.bump()
        self._changes.bump()
        return -1

    def release(self, requests: Sequence[LimitRequest], now_us: int) -> None:
        if not requests:
            return
        with self.database.write() as conn:
            conn.executemany(_RELEASE, [(r.key, now_us, float(r.weight)) for r in requests])
            self._changes.bump()
        self._changes.bump()

    def prune(self, now_us: int) -> int:
        with self.database.write() as conn:
            cursor = conn.execute(
                "DELETE FROM limiter_entries WHERE window_us IS NOT NULL AND t_us <= ? - window_us", (now_us,)
            )
            if cursor.rowcount:
                self._changes.bump()
        if cursor.rowcount:
            self._changes.bump()
        return int(cursor.rowcount)

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
        self._changes.close()

    def __repr__(self) -> str:
        return f"SqliteLimiter({self.url!r})"
