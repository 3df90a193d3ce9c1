"""One SQLite file shared by everything a runtime keeps there (SPEC 4.4, 11, 13).

Trace events (``trace/storage/sqlite.py``), limiter windows (``policy/limiter_sqlite.py``) and runtime state
all live in one file, opened once per process::

    db = open_database("sqlite:////var/lib/cra/cra.db")
    db.migrate("state", 1, ["CREATE TABLE IF NOT EXISTS ..."])
    with db.write() as conn:          # BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an exception)
        conn.execute("INSERT ...")
    rows = db.read().execute("SELECT ...").fetchall()
    db.close()

Connections and pragmas:

- ``journal_mode=WAL``: readers never block the writer nor the writer the readers.
- ``synchronous=NORMAL`` (default): a commit is in the WAL (the operating system's page cache) when it
  returns, so it survives a crash of the process, ``kill -9`` included, but not a power loss or a kernel
  crash, which may lose the last commits (never corrupt the file). ``?synchronous=full`` in the URL fsyncs the
  WAL on every commit and survives power loss too, at the price of one fsync per transaction.
- ``busy_timeout=5000``: a writer waits up to 5 s for another process's write transaction.
- ``foreign_keys=ON``.

One writer connection per file and process, guarded by a lock, so threads of a process take turns; every
write transaction starts with ``BEGIN IMMEDIATE``, which takes SQLite's write lock at once, so processes
sharing the file take turns as well and a transaction never fails half-way for a lock. Readers get one
connection per thread (``query_only``). A process-wide registry keyed by the file's absolute path makes
every ``open_database`` of one file in one process share the writer (reference counted: the last ``close``
closes the connections).

After ``os.fork`` the child never touches the parent's connections (SQLite forbids it): they are abandoned
(not closed, which could disturb the parent's locks) and the child opens its own on first use.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["BUSY_TIMEOUT_MS", "SqliteDatabase", "open_database", "parse_sqlite_url"]

BUSY_TIMEOUT_MS = 5000
_SYNCHRONOUS = {"normal": 1, "full": 2}  # PRAGMA synchronous levels allowed in a URL
_SCHEMA_TABLE = (
    "CREATE TABLE IF NOT EXISTS cra_schema "
    "(component TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID"
)


def parse_sqlite_url(url_or_path: str | os.PathLike[str]) -> tuple[Path, str]:
    """``(absolute path, synchronous)`` of a ``sqlite:///relative.db`` / ``sqlite:////abs/path.db`` URL or a
    plain file path. ``ValueError`` for an in-memory database, a host part or an unknown option."""
    synchronous = "normal"
    if isinstance(url_or_path, str) and "://" in url_or_path:
        parts = urlsplit(url_or_path)
        if parts.scheme != "sqlite":
            raise ValueError(f"not a sqlite:// URL: {url_or_path!r}")
        if parts.netloc:
            raise ValueError(
                f"a sqlite URL names a local file, not a host: {url_or_path!r} "
                "(sqlite:///relative.db or sqlite:////absolute/path.db)"
            )
        raw = unquote(parts.path)
        raw = raw[1:] if raw.startswith("/") else raw  # sqlite:/// + relative, sqlite://// + /absolute
        for name, values in parse_qs(parts.query, keep_blank_values=True).items():
            if name != "synchronous":
                raise ValueError(f"unknown sqlite URL option {name!r}: the only option is synchronous")
            synchronous = values[-1].lower()
            if synchronous not in _SYNCHRONOUS:
                raise ValueError(f"synchronous must be normal or full, not {values[-1]!r}")
    else:
        raw = os.fspath(url_or_path)
    if not raw:
        raise ValueError(
            f"a sqlite URL needs a file: {url_or_path!r} (sqlite:///relative.db or sqlite:////abs/path.db)"
        )
    if raw == ":memory:":  # (the path is never read as a "file:" URI, so that is the only in-memory name)
        raise ValueError(
            "an in-memory SQLite database is not allowed: sessions, limits and traces must survive a restart "
            "(use memory:// for throwaway runs, or a file)"
        )
    return Path(os.path.abspath(raw)), synchronous


class _Reader:
    """A reader connection of one thread (a weak-referenceable holder: when its thread ends the holder and
    its connection are collected; ``close`` finds the live ones through a WeakSet)."""

    __slots__ = ("__weakref__", "conn", "pid")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.pid = os.getpid()


_ABANDONED: list[sqlite3.Connection] = []
"""Connections inherited through ``fork``: kept referenced so that garbage collection never closes them in
the child (closing could release or break locks the parent still relies on)."""


class _Shared:
    """The connections of one file in one process, shared by every handle on it."""

    def __init__(self, path: Path, synchronous: str) -> None:
        self.path = path
        self.synchronous = synchronous
        self.refs = 0
        self.pid = os.getpid()
        self.write_lock = threading.Lock()
        self.writing: int | None = None  # thread id inside write(): a nested write() would deadlock
        self.writer: sqlite3.Connection | None = None
        self.local = threading.local()
        self.readers: weakref.WeakSet[_Reader] = weakref.WeakSet()
        self.readers_lock = threading.Lock()
        self.closed = False

    def connect(self, *, reader: bool) -> sqlite3.Connection:
        # check_same_thread=False: each connection is used by one thread at a time (the writer under the
        # lock, a reader by its own thread), but close() may run on another thread.
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if reader:
                conn.execute("PRAGMA query_only = ON")
            else:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise sqlite3.OperationalError(f"{self.path}: cannot use WAL journal mode (got {mode})")
            conn.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[self.synchronous]}")
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def check_process(self) -> None:
        if self.pid != os.getpid():
            self.after_fork()

    def after_fork(self) -> None:
        """In a forked child: abandon the parent's connections and lock; new ones are made on first use."""
        if self.writer is not None:
            _ABANDONED.append(self.writer)
        _ABANDONED.extend(reader.conn for reader in list(self.readers))
        self.writer = None
        self.write_lock = threading.Lock()
        self.writing = None
        self.local = threading.local()
        self.readers = weakref.WeakSet()
        self.readers_lock = threading.Lock()
        self.pid = os.getpid()

    def writer_connection(self) -> sqlite3.Connection:
        """The writer; call with ``write_lock`` held."""
        if self.writer is None:
            self.writer = self.connect(reader=False)
        return self.writer

    def reader_connection(self) -> sqlite3.Connection:
        holder: _Reader | None = getattr(self.local, "reader", None)
        if holder is None or holder.pid != os.getpid():
            holder = _Reader(self.connect(reader=True))
            self.local.reader = holder
            with self.readers_lock:
                self.readers.add(holder)
        return holder.conn

    def set_synchronous(self, synchronous: str) -> None:
        """Raise the durability level (a later opener asked for ``full``)."""
        if _SYNCHRONOUS[synchronous] <= _SYNCHRONOUS[self.synchronous]:
            return
        with self.write_lock:
            self.synchronous = synchronous
            if self.writer is not None:
                self.writer.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[synchronous]}")

    def close(self) -> None:
        self.closed = True
        with self.write_lock:
            if self.writer is not None:
                self.writer.close()
                self.writer = None
        with self.readers_lock:
            holders = list(self.readers)
            self.readers = weakref.WeakSet()
        for holder in holders:
            holder.conn.close()
        self.local = threading.local()


_REGISTRY: dict[str, _Shared] = {}
_REGISTRY_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    global _REGISTRY_LOCK
    _REGISTRY_LOCK = threading.Lock()  # it may have been held by another thread at fork time
    for shared in _REGISTRY.values():
        shared.after_fork()


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


class SqliteDatabase:
    """A handle on one SQLite file; handles on the same file in one process share its connections.

    ``close`` releases this handle (idempotent); the connections close with the last handle.
    """

    def __init__(self, shared: _Shared, url: str) -> None:
        self._shared = shared
        self.url = url
        self.path = shared.path
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def synchronous(self) -> str:
        """``"normal"`` or ``"full"``: the level of the shared writer (the strictest any opener asked for)."""
        return self._shared.synchronous

    def _live(self) -> _Shared:
        if self._closed:
            raise sqlite3.ProgrammingError(f"{self.path}: the database handle is closed")
        shared = self._shared
        shared.check_process()
        return shared

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the shared writer: ``BEGIN IMMEDIATE`` … ``COMMIT``, ``ROLLBACK`` if the
        block raises. Threads of this process and other processes on the file wait their turn (other
        processes up to ``busy_timeout``, then ``sqlite3.OperationalError: database is locked``).

        Do not nest (``RuntimeError``), and do not call ``commit``/``rollback``/``executescript`` inside.
        """
        shared = self._live()
        me = threading.get_ident()
        if shared.writing == me:
            raise RuntimeError("nested SqliteDatabase.write(): one write transaction at a time per thread")
        with shared.write_lock:
            shared.writing = me
            try:
                conn = shared.writer_connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            finally:
                shared.writing = None

    def read(self) -> sqlite3.Connection:
        """This thread's reader connection (autocommit, ``query_only``): each statement sees the latest
        committed data. Fetch results fully (``fetchall``): an open cursor holds its snapshot. For several
        statements that must agree, use ``snapshot()``."""
        return self._live().reader_connection()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """This thread's reader inside one read transaction: every statement sees the same committed state."""
        conn = self.read()
        if conn.in_transaction:
            raise RuntimeError("nested SqliteDatabase.snapshot()")
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def schema_version(self, component: str) -> int:
        """The schema version ``migrate`` recorded for ``component`` (0: never migrated)."""
        row = (
            self.read().execute("SELECT version FROM cra_schema WHERE component = ?", (component,)).fetchone()
        )
        return 0 if row is None else int(row[0])

    def migrate(self, component: str, version: int, statements: Sequence[str]) -> bool:
        """Bring ``component`` to schema ``version``: if its recorded version is lower, run ``statements``
        (one SQL statement each) and record ``version``, all in one write transaction; True if it ran.

        Components migrate independently. Call the steps in order (1, 2, ...) at every open: a step already
        recorded is skipped, and concurrent processes serialise on the write lock, so each step runs once.
        """
        if version < 1:
            raise ValueError("schema versions start at 1")
        with self.write() as conn:
            row = conn.execute("SELECT version FROM cra_schema WHERE component = ?", (component,)).fetchone()
            if row is not None and int(row[0]) >= version:
                return False
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO cra_schema (component, version) VALUES (?, ?) "
                "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (component, version),
            )
            return True

    def close(self) -> None:
        """Release this handle (idempotent); the last handle of the file closes its connections."""
        if self._closed:
            return
        self._closed = True
        shared = self._shared
        with _REGISTRY_LOCK:
            shared.refs -= 1
            if shared.refs > 0:
                return
            key = str(shared.path)
            if _REGISTRY.get(key) is shared:
                del _REGISTRY[key]
        if shared.pid == os.getpid():
            shared.close()
        # else: inherited through fork and never used here; its connections are the parent's, leave them.

    def __enter__(self) -> SqliteDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"SqliteDatabase({str(self.path)!r}, synchronous={self.synchronous}, {state})"


def open_database(url_or_path: str | os.PathLike[str]) -> SqliteDatabase:
    """A handle on the SQLite file a ``sqlite:///relative.db`` / ``sqlite:////abs/path.db`` URL (or a path)
    names, creating the file and its directory if needed. Every handle on one file in one process shares one
    writer connection; ``?synchronous=full`` asks for power-loss durability (the strictest request wins).
    """
    path, synchronous = parse_sqlite_url(url_or_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(path)
    url = url_or_path if isinstance(url_or_path, str) else os.fspath(url_or_path)
    with _REGISTRY_LOCK:
        shared = _REGISTRY.get(key)
        if shared is None or shared.closed or shared.pid != os.getpid():
            shared = _Shared(Path(key), synchronous)
            try:
                with shared.write_lock:  # connect now, so that a bad path fails here and not on first use
                    conn = shared.writer_connection()
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        conn.execute(_SCHEMA_TABLE)
                        conn.execute("COMMIT")
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
            except BaseException:
                shared.close()
                raise
            _REGISTRY[key] = shared
        else:
            shared.set_synchronous(synchronous)
        shared.refs += 1
    return SqliteDatabase(shared, url)
