"""What a runtime keeps besides the trace so that a new process continues where the last one stopped.

Almost all runtime state is rebuilt from the trace itself (``_restore.py``): the trace is the record. Two
things are not in it, by design, and live here:

- **Atlas content by digest**: sessions name the Atlas versions they started with by digest; after a restart
  the runtime needs their content even if a newer version is loaded now.
- **Idempotency responses**: the first response to an idempotency key includes the handler's result, which
  the trace never holds (it records a hash of the parameters and the duration, not the data).

And one lookup: which session an approval or execution id belongs to, so ``approve`` and ``complete`` work
for sessions this process has not touched yet. ``MemoryStateStore`` serves in-process storage;
``SqliteStateStore`` keeps these in the same SQLite file as the trace.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import orjson

from .atlas.model import Atlas
from .errors import StorageUnavailableError

__all__ = ["MemoryStateStore", "SqliteStateStore", "StateStore", "open_state_store"]

_T = TypeVar("_T")
IdempotencyRow = tuple[str, str, str, dict[str, Any]]  # action_id, resolution_id, parameters_hash, response


class StateStore(Protocol):
    """Durable side state of a runtime (see the module docstring). Writes are durable on return."""

    def save_atlas(self, atlas: Atlas) -> None:
        """Keep an Atlas's manifest and files under its digest (idempotent)."""
        ...

    def load_atlas(self, digest: str) -> tuple[dict[str, Any], dict[str, str]] | None:
        """The manifest and context files of the Atlas with this digest, or None."""
        ...

    def save_idempotency(self, session_id: str, key: str, row: IdempotencyRow) -> None:
        """Keep the first response to an idempotency key of a session."""
        ...

    def load_idempotency(self, session_id: str) -> dict[str, IdempotencyRow]:
        """Every stored idempotency response of a session, by key."""
        ...

    def find_session(self, some_id: str) -> str | None:
        """The session whose trace mentions an approval or execution id, or None."""
        ...

    def close(self) -> None:
        """Release resources; idempotent."""
        ...


class MemoryStateStore:
    """For in-process storage: nothing outlives the process, so the runtime's own memory is enough."""

    def __init__(self) -> None:
        self._atlases: dict[str, tuple[dict[str, Any], dict[str, str]]] = {}
        self._idempotency: dict[str, dict[str, IdempotencyRow]] = {}
        self._lock = threading.Lock()

    def save_atlas(self, atlas: Atlas) -> None:
        with self._lock:
            self._atlases.setdefault(atlas.digest, (atlas.manifest, dict(atlas.files)))

    def load_atlas(self, digest: str) -> tuple[dict[str, Any], dict[str, str]] | None:
        with self._lock:
            return self._atlases.get(digest)

    def save_idempotency(self, session_id: str, key: str, row: IdempotencyRow) -> None:
        with self._lock:
            self._idempotency.setdefault(session_id, {}).setdefault(key, row)

    def load_idempotency(self, session_id: str) -> dict[str, IdempotencyRow]:
        with self._lock:
            return dict(self._idempotency.get(session_id, {}))

    def find_session(self, some_id: str) -> str | None:
        return None  # everything in this process is already in memory

    def close(self) -> None:
        """Nothing to release."""


_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS cra_atlases (digest TEXT PRIMARY KEY, atlas_id TEXT NOT NULL, "
    "version TEXT NOT NULL, manifest BLOB NOT NULL, files BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS cra_idempotency (session_id TEXT NOT NULL, key TEXT NOT NULL, "
    "action_id TEXT NOT NULL, resolution_id TEXT NOT NULL, parameters_hash TEXT NOT NULL, "
    "response BLOB NOT NULL, PRIMARY KEY (session_id, key)) WITHOUT ROWID",
]


def _unavailable(method: Callable[..., _T]) -> Callable[..., _T]:
    """A database failure is ``STORAGE_UNAVAILABLE`` (the operation is refused), not a driver exception."""

    @functools.wraps(method)
    def guarded(*args: Any, **kwargs: Any) -> _T:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            raise StorageUnavailableError(f"the runtime's state store failed: {type(exc).__name__}") from exc

    return guarded


class SqliteStateStore:
    """The side state in the runtime's SQLite file (shared with its trace storage)."""

    def __init__(self, database: Any) -> None:
        self.database = database
        database.migrate("state", 1, _SCHEMA)
        self._saved: set[str] = set()

    @_unavailable
    def save_atlas(self, atlas: Atlas) -> None:
        if atlas.digest in self._saved:
            return
        with self.database.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO cra_atlases VALUES (?, ?, ?, ?, ?)",
                (
                    atlas.digest,
                    atlas.atlas_id,
                    atlas.version,
                    orjson.dumps(atlas.manifest),
                    orjson.dumps(dict(atlas.files)),
                ),
            )
        self._saved.add(atlas.digest)

    @_unavailable
    def load_atlas(self, digest: str) -> tuple[dict[str, Any], dict[str, str]] | None:
        row = (
            self.database.read()
            .execute("SELECT manifest, files FROM cra_atlases WHERE digest = ?", (digest,))
            .fetchone()
        )
        if row is None:
            return None
        return orjson.loads(row[0]), orjson.loads(row[1])

    @_unavailable
    def save_idempotency(self, session_id: str, key: str, row: IdempotencyRow) -> None:
        action_id, resolution_id, parameters_hash, response = row
        with self.database.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO cra_idempotency VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, key, action_id, resolution_id, parameters_hash, orjson.dumps(response)),
            )

    @_unavailable
    def load_idempotency(self, session_id: str) -> dict[str, IdempotencyRow]:
        rows = (
            self.database.read()
            .execute(
                "SELECT key, action_id, resolution_id, parameters_hash, response FROM cra_idempotency "
                "WHERE session_id = ?",
                (session_id,),
            )
            .fetchall()
        )
        return {
            key: (action, resolution, params, orjson.loads(resp))
            for key, action, resolution, params, resp in rows
        }

    @_unavailable
    def find_session(self, some_id: str) -> str | None:
        # Rare (an id from before a restart): a scan of the stored lines for the quoted id.
        row = (
            self.database.read()
            .execute(
                "SELECT session_id FROM trace_chunks WHERE instr(lines, ?) > 0 LIMIT 1",
                (f'"{some_id}"'.encode(),),
            )
            .fetchone()
        )
        return None if row is None else str(row[0])

    def close(self) -> None:
        """The database belongs to the trace storage, which closes it."""


def open_state_store(storage: Any) -> StateStore:
    """The state store that goes with a trace storage: SQLite storage keeps it in the same file."""
    database = getattr(storage, "database", None)
    if database is not None and hasattr(database, "migrate"):
        return SqliteStateStore(database)
    return MemoryStateStore()
