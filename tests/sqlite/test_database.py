"""``cra._sqlite``: URLs, pragmas, transactions, the per-process registry, migrations, fork safety."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest
from trace_helpers import build_chain

from cra._sqlite import open_database, parse_sqlite_url
from cra.policy.limiter import LimitRequest
from cra.policy.limiter_sqlite import SqliteLimiter
from cra.trace.storage import SqliteStorage

# --- URLs ------------------------------------------------------------------------------------------------


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path = tmp_path.resolve()
    monkeypatch.chdir(tmp_path)
    assert parse_sqlite_url("sqlite:///rel.db") == (tmp_path / "rel.db", "normal")
    assert parse_sqlite_url("sqlite:///dir/rel.db") == (tmp_path / "dir" / "rel.db", "normal")
    assert parse_sqlite_url("sqlite:////abs/path.db") == (Path("/abs/path.db"), "normal")
    assert parse_sqlite_url("sqlite:////abs/path.db?synchronous=full") == (Path("/abs/path.db"), "full")
    assert parse_sqlite_url("sqlite:////abs/path.db?synchronous=NORMAL")[1] == "normal"
    assert parse_sqlite_url("sqlite:////a%20b.db") == (Path("/a b.db"), "normal")
    assert parse_sqlite_url("plain.db") == (tmp_path / "plain.db", "normal")
    assert parse_sqlite_url(tmp_path / "p.db") == (tmp_path / "p.db", "normal")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///:memory:", "in-memory"),
        (":memory:", "in-memory"),
        ("sqlite://", "needs a file"),
        ("sqlite:///", "needs a file"),
        ("sqlite://host/x.db", "not a host"),
        ("postgresql://host/db", "not a sqlite:// URL"),
        ("sqlite:///x.db?synchronous=off", "normal or full"),
        ("sqlite:///x.db?mode=ro", "unknown sqlite URL option"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_sqlite_url(url)


def test_open_creates_the_directory_and_the_file(tmp_path: Path, no_open_databases: None) -> None:
    db = open_database(f"sqlite:///{tmp_path}/a/b/cra.db")
    assert (tmp_path / "a" / "b" / "cra.db").is_file()
    assert db.path == (tmp_path / "a" / "b" / "cra.db").resolve()
    db.close()


def test_unopenable_file_fails_at_open(tmp_path: Path, no_open_databases: None) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(sqlite3.OperationalError):
        open_database(tmp_path / "dir.db")


# --- pragmas -----------------------------------------------------------------------------------------------


def _pragmas(conn: sqlite3.Connection) -> tuple[object, ...]:
    return tuple(
        conn.execute(f"PRAGMA {name}").fetchone()[0]
        for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
    )


def test_writer_and_readers_use_wal_normal_busy_timeout_and_foreign_keys(db_url: str) -> None:
    db = open_database(db_url)
    assert db.synchronous == "normal"
    assert _pragmas(db.read()) == ("wal", 1, 5000, 1)
    with db.write() as conn:
        assert _pragmas(conn) == ("wal", 1, 5000, 1)
    assert db.read().execute("PRAGMA query_only").fetchone()[0] == 1
    db.close()


def test_synchronous_full_from_the_url_and_the_strictest_opener_wins(
    db_url: str, no_open_databases: None
) -> None:
    normal = open_database(db_url)
    full = open_database(db_url + "?synchronous=full")
    assert normal.synchronous == full.synchronous == "full"
    with normal.write() as conn:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    lax = open_database(db_url)
    assert lax.synchronous == "full"  # a later, laxer opener does not lower it
    for db in (lax, full, normal):
        db.close()


# --- transactions ---------------------------------------------------------------------------------------


def test_write_commits_and_a_raising_block_rolls_back(db_url: str) -> None:
    db = open_database(db_url)
    with db.write() as conn:
        conn.execute("CREATE TABLE t (v INTEGER)")
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(KeyError), db.write() as conn:
        conn.execute("INSERT INTO t VALUES (2)")
        raise KeyError("boom")
    assert db.read().execute("SELECT v FROM t").fetchall() == [(1,)]
    with db.write() as conn:  # the writer is usable again after a rollback
        conn.execute("INSERT INTO t VALUES (3)")
    assert db.read().execute("SELECT v FROM t ORDER BY v").fetchall() == [(1,), (3,)]
    db.close()


def test_a_nested_write_is_refused_instead_of_deadlocking(db_url: str) -> None:
    db = open_database(db_url)
    with pytest.raises(RuntimeError, match="nested"), db.write(), db.write():
        pass
    with db.write() as conn:
        assert conn.in_transaction
    db.close()


def test_a_write_holds_sqlite_s_write_lock_against_other_connections(db_url: str) -> None:
    db = open_database(db_url)
    other = sqlite3.connect(db.path, timeout=0, isolation_level=None)
    with db.write(), pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")
    other.execute("COMMIT")
    other.close()
    db.close()


def test_readers_are_per_thread_and_see_committed_writes(db_url: str) -> None:
    db = open_database(db_url)
    with db.write() as conn:
        conn.execute("CREATE TABLE t (v INTEGER)")
    main_reader = db.read()
    assert db.read() is main_reader
    seen: list[object] = []

    def in_thread() -> None:
        reader = db.read()
        seen.append(reader is main_reader)
        seen.append(reader.execute("SELECT count(*) FROM t").fetchone()[0])

    with db.write() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert seen == [False, 1]
    db.close()


def test_snapshot_reads_one_consistent_state(db_url: str) -> None:
    db = open_database(db_url)
    with db.write() as conn:
        conn.execute("CREATE TABLE t (v INTEGER)")
    with db.snapshot() as snap:
        assert snap.execute("SELECT count(*) FROM t").fetchone()[0] == 0
        with db.write() as conn:
            conn.execute("INSERT INTO t VALUES (1)")
        assert snap.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    assert db.read().execute("SELECT count(*) FROM t").fetchone()[0] == 1
    db.close()


def test_concurrent_threads_serialise_their_writes(db_url: str) -> None:
    db = open_database(db_url)
    with db.write() as conn:
        conn.execute("CREATE TABLE counter (n INTEGER)")
        conn.execute("INSERT INTO counter VALUES (0)")

    def bump() -> None:
        handle = open_database(db_url)
        for _ in range(50):
            with handle.write() as conn:
                (n,) = conn.execute("SELECT n FROM counter").fetchone()
                conn.execute("UPDATE counter SET n = ?", (n + 1,))
        handle.close()

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert db.read().execute("SELECT n FROM counter").fetchone()[0] == 200
    db.close()


# --- registry -----------------------------------------------------------------------------------------------


def test_storage_and_limiter_on_one_file_share_one_writer(
    db_url: str, tmp_path: Path, no_open_databases: None
) -> None:
    storage = SqliteStorage(db_url)
    limiter = SqliteLimiter(db_url)
    with storage.database.write() as first:
        pass
    with limiter.database.write() as second:
        pass
    assert first is second
    assert storage.database.path == limiter.database.path
    assert storage.database.schema_version("trace") == 1
    assert limiter.database.schema_version("limiter") == 1
    elsewhere = open_database(tmp_path / "other.db")
    with elsewhere.write() as third:
        assert third is not first
    elsewhere.close()
    storage.close()
    storage.close()  # idempotent: it does not release the limiter's reference
    assert limiter.acquire([LimitRequest("k", None, 5, 1)], 1) == -1  # still open
    limiter.close()
    again = open_database(db_url)  # everything was closed: a new writer
    with again.write() as fourth:
        assert fourth is not first
    again.close()


def test_a_closed_handle_refuses_use_and_close_is_idempotent(db_url: str, no_open_databases: None) -> None:
    db = open_database(db_url)
    other = open_database(db_url)
    db.close()
    db.close()
    assert db.closed
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        db.read()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"), db.write():
        pass
    assert other.read().execute("SELECT 1").fetchone() == (1,)  # the other handle is unaffected
    other.close()


def test_a_closed_database_closes_every_thread_s_reader(db_url: str, no_open_databases: None) -> None:
    db = open_database(db_url)
    readers: list[sqlite3.Connection] = []
    thread = threading.Thread(target=lambda: readers.append(db.read()))
    thread.start()
    thread.join()
    readers.append(db.read())
    db.close()
    for reader in readers[1:]:  # the dead thread's reader may already be collected; the live one is closed
        with pytest.raises(sqlite3.ProgrammingError):
            reader.execute("SELECT 1")


# --- migrations -------------------------------------------------------------------------------------------


def test_migrations_run_once_per_component_and_version(db_url: str) -> None:
    db = open_database(db_url)
    assert db.schema_version("alpha") == 0
    assert db.migrate("alpha", 1, ["CREATE TABLE alpha (a INTEGER)"]) is True
    assert db.migrate("alpha", 1, ["CREATE TABLE alpha (a INTEGER)"]) is False  # would fail if run again
    assert db.migrate("beta", 1, ["CREATE TABLE beta (b INTEGER)"]) is True  # independent component
    assert db.migrate("alpha", 2, ["ALTER TABLE alpha ADD COLUMN c TEXT"]) is True
    assert db.migrate("alpha", 1, ["DROP TABLE alpha"]) is False  # older steps never run again
    assert (db.schema_version("alpha"), db.schema_version("beta")) == (2, 1)
    rows = db.read().execute("SELECT component, version FROM cra_schema ORDER BY component").fetchall()
    assert rows == [("alpha", 2), ("beta", 1)]
    with pytest.raises(ValueError):
        db.migrate("alpha", 0, [])
    db.close()


def test_a_failing_migration_changes_nothing(db_url: str) -> None:
    db = open_database(db_url)
    with pytest.raises(sqlite3.OperationalError):
        db.migrate("gamma", 1, ["CREATE TABLE gamma (g INTEGER)", "THIS IS NOT SQL"])
    assert db.schema_version("gamma") == 0
    tables = db.read().execute("SELECT name FROM sqlite_master WHERE name = 'gamma'").fetchall()
    assert tables == []
    assert db.migrate("gamma", 1, ["CREATE TABLE gamma (g INTEGER)"]) is True
    db.close()


# --- fork safety ------------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_uses_its_own_connections(db_url: str) -> None:
    storage = SqliteStorage(db_url)
    events = build_chain(6)
    storage.append(events[:2])
    parent_reader = storage.database.read()
    with storage.database.write() as parent_writer:
        pass
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            assert storage.database.read() is not parent_reader
            with storage.database.write() as child_writer:
                assert child_writer is not parent_writer
            assert storage.head("session-a") == (1, events[1].event_hash)
            storage.append(events[2:4])
            storage.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's connections still work and see the child's commits.
    assert storage.database.read() is parent_reader
    assert storage.head("session-a") == (3, events[3].event_hash)
    storage.append(events[4:])
    assert [e.to_json() for e in storage.read("session-a")] == [e.to_json() for e in events]
    storage.close()
