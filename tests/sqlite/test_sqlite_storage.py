"""``sqlite://`` trace storage beyond the shared contract: persistence, linear chains across storage objects
and processes, crash safety, retention (SPEC 4.4, 13)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from trace_helpers import build_chain

from cra import SequentialIds, open_storage, parse_timestamp, verify_chain
from cra.trace.event import TraceEvent
from cra.trace.storage import ChainConflictError, SqliteStorage, TraceStorage
from cra.trace.tracer import Record, Span, chain_records

from . import workers

SPAWN = multiprocessing.get_context("spawn")
HOUR_US = 3600 * 1_000_000
DAY_US = 24 * HOUR_US


def lines(events: list[TraceEvent]) -> list[bytes]:
    return [event.to_json() for event in events]


# --- URLs ----------------------------------------------------------------------------------------------


def test_open_storage_sqlite_url_gives_a_sqlite_storage(db_url: str, no_open_databases: None) -> None:
    storage = open_storage(db_url)
    assert isinstance(storage, SqliteStorage)
    assert isinstance(storage, TraceStorage)
    assert storage.url == db_url
    storage.close()


def test_relative_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage = SqliteStorage("sqlite:///sub/relative.db")
    storage.append(build_chain(1))
    storage.close()
    assert (tmp_path / "sub" / "relative.db").is_file()


def test_in_memory_database_is_refused_because_state_must_survive() -> None:
    with pytest.raises(ValueError, match="in-memory SQLite database is not allowed"):
        SqliteStorage("sqlite:///:memory:")


def test_unknown_option_and_host_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown sqlite URL option 'fsync'"):
        SqliteStorage(f"sqlite:///{tmp_path}/a.db?fsync=0")
    with pytest.raises(ValueError, match="not a host"):
        SqliteStorage("sqlite://host/a.db")
    with pytest.raises(ValueError, match="synchronous must be normal or full"):
        SqliteStorage(f"sqlite:///{tmp_path}/a.db?synchronous=off")


# --- storage specifics --------------------------------------------------------------------------------


def test_a_batch_is_one_row_holding_exactly_the_event_json_lines(db_url: str) -> None:
    storage = SqliteStorage(db_url)
    events = build_chain(3, payloads=[{"f": 1e-05, "s": "é😀\u2028\x01", "i": i} for i in range(3)])
    storage.append(events)
    rows = (
        storage.database.read()
        .execute("SELECT first_sequence, last_sequence, lines FROM trace_chunks ORDER BY first_sequence")
        .fetchall()
    )
    assert [(r[0], r[1], bytes(r[2])) for r in rows] == [(0, 2, b"\n".join(e.to_json() for e in events))]
    head = storage.database.read().execute("SELECT head_sequence, head_hash FROM trace_sessions").fetchone()
    assert tuple(head) == (2, events[2].event_hash)
    storage.close()


def test_events_survive_closing_and_reopening(db_url: str, no_open_databases: None) -> None:
    events = build_chain(4)
    storage = SqliteStorage(db_url)
    storage.append(events)
    storage.close()
    reopened = SqliteStorage(db_url)
    assert lines(reopened.read("session-a")) == lines(events)
    assert reopened.head("session-a") == (3, events[3].event_hash)
    assert reopened.sessions() == ["session-a"]
    reopened.close()


def test_two_storage_objects_on_one_file_never_fork_a_chain(db_url: str) -> None:
    first, second = SqliteStorage(db_url), SqliteStorage(db_url)
    base = build_chain(2)
    first.append(base[:1])
    # Both saw head 0; each chains its own event 1 onto it. The first to append wins.
    mine = build_chain(2)
    theirs = build_chain(2, payloads=[{"index": 0, "note": "event 0"}, {"other": True}])
    assert mine[0] == theirs[0] == base[0]
    first.append(mine[1:])
    with pytest.raises(ChainConflictError, match="expected sequence 2, got 1"):
        second.append(theirs[1:])
    assert lines(second.read("session-a")) == lines(mine)
    first.close()
    second.close()


def test_right_sequence_on_a_different_head_conflicts(db_url: str) -> None:
    """A writer holding a stale head (the session was deleted and restarted meanwhile) cannot splice on."""
    storage = SqliteStorage(db_url)
    old = build_chain(3)
    new = build_chain(3, payloads=[{"new": i} for i in range(3)])
    storage.append(new[:2])
    with pytest.raises(ChainConflictError, match="does not continue the stored head"):
        storage.append(old[2:])
    assert lines(storage.read("session-a")) == lines(new[:2])
    storage.close()


def test_a_failing_batch_leaves_nothing_behind(db_url: str) -> None:
    """Atomicity does not rest on the pre-check alone: an error half-way through the insert rolls it back."""
    storage = SqliteStorage(db_url)
    events = build_chain(4)
    storage.append(events[:1])
    with storage.database.write() as conn:  # a trigger that fails the insert of sequence 2 only
        conn.execute(
            "CREATE TRIGGER fail_two BEFORE INSERT ON trace_chunks WHEN NEW.last_sequence >= 2 "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    with pytest.raises(sqlite3.IntegrityError, match="disk on fire"):
        storage.append(events[1:])
    assert lines(storage.read("session-a")) == lines(events[:1])
    assert storage.sessions() == ["session-a"]
    with storage.database.write() as conn:
        conn.execute("DROP TRIGGER fail_two")
    storage.append(events[1:])
    assert lines(storage.read("session-a")) == lines(events)
    storage.close()


def test_schema_version_is_recorded(db_url: str) -> None:
    storage = SqliteStorage(db_url)
    assert storage.database.schema_version("trace") == 1
    again = SqliteStorage(db_url)  # migrating again is a no-op
    assert again.database.schema_version("trace") == 1
    again.close()
    storage.close()


# --- several processes ------------------------------------------------------------------------------


def test_four_processes_appending_to_one_session_give_one_gapless_chain(db_url: str) -> None:
    SqliteStorage(db_url).close()  # create the schema once, before the race
    with ProcessPoolExecutor(max_workers=4, mp_context=SPAWN) as pool:
        futures = [pool.submit(workers.emit_events, db_url, "shared", worker, 200) for worker in range(4)]
        for future in futures:
            future.result(timeout=120)
    storage = SqliteStorage(db_url)
    events = storage.read("shared")
    storage.close()
    assert [e.sequence for e in events] == list(range(800))
    result = verify_chain(events)
    assert result.valid, result
    per_worker = [sum(1 for e in events if e.payload["worker"] == w) for w in range(4)]
    assert per_worker == [200, 200, 200, 200]
    for worker in range(4):  # each worker's events keep their emission order
        assert [e.payload["i"] for e in events if e.payload["worker"] == worker] == list(range(200))


def test_kill_9_loses_no_acknowledged_append(db_url: str) -> None:
    SqliteStorage(db_url).close()
    receiver, sender = SPAWN.Pipe(duplex=False)
    child = SPAWN.Process(target=workers.append_until_killed, args=(db_url, "crash", sender, 25))
    child.start()
    sender.close()
    acks: list[int] = []
    try:
        while len(acks) < 40:
            assert receiver.poll(60), "the child stopped acknowledging appends"
            acks.append(receiver.recv())
    finally:
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(60)
    while True:  # acknowledgements sent before the kill
        try:
            acks.append(receiver.recv())
        except EOFError:
            break
    assert child.exitcode == -signal.SIGKILL
    storage = SqliteStorage(db_url)
    events = storage.read("crash")
    head = storage.head("crash")
    storage.close()
    assert head is not None
    assert acks == sorted(acks)
    assert acks[-1] <= head[0]
    assert {e.sequence for e in events} >= set(acks)
    assert [e.sequence for e in events] == list(range(head[0] + 1))
    assert verify_chain(events).valid


# --- retention -------------------------------------------------------------------------------------------


def _stamped_chain(session_id: str, count: int, timestamp: str) -> list[TraceEvent]:
    span = Span(session_id, "trace", "span", None)
    return chain_records(
        span, [Record("x", {"i": i}) for i in range(count)], None, timestamp, SequentialIds()
    )


def test_retention_refuses_a_cutoff_younger_than_24_hours(db_url: str) -> None:
    storage = SqliteStorage(db_url)
    now = parse_timestamp("2025-06-01T00:00:00Z")
    storage.append(_stamped_chain("s", 2, "2025-05-31T23:00:00.000000Z"))
    for cutoff in (now, now - DAY_US + 1, now - HOUR_US):
        with pytest.raises(ValueError, match="kept at least"):
            storage.delete_sessions_before(cutoff, now_us=now)
    with pytest.raises(ValueError, match="kept at least"):
        storage.delete_sessions_before(now - 2 * DAY_US, now_us=now, min_age_seconds=3 * 24 * 3600)
    with pytest.raises(ValueError):  # the default "now" is the system clock
        storage.delete_sessions_before(parse_timestamp("2999-01-01T00:00:00Z"))
    assert storage.sessions() == ["s"]
    assert storage.delete_sessions_before(now - DAY_US, now_us=now) == 0  # exactly 24 h is allowed
    assert storage.sessions() == ["s"]
    storage.close()


def test_retention_deletes_only_whole_sessions_older_than_the_cutoff(db_url: str) -> None:
    storage = SqliteStorage(db_url)
    now = parse_timestamp("2025-06-10T00:00:00Z")
    storage.append(_stamped_chain("old-1", 3, "2025-06-01T00:00:00.000000Z"))
    storage.append(_stamped_chain("old-2", 1, "2025-06-02T00:00:00.000000Z"))
    storage.append(_stamped_chain("recent", 2, "2025-06-09T12:00:00.000000Z"))
    # Started long ago but still active: its newest event is recent, so nothing of it goes.
    mixed = _stamped_chain("mixed", 2, "2025-06-01T00:00:00.000000Z")
    [late] = chain_records(
        Span("mixed", "trace", "span", None),
        [Record("x", {"late": True})],
        (mixed[-1].sequence, mixed[-1].event_hash),
        "2025-06-09T23:00:00.000000Z",
        lambda: "late-id",
    )
    storage.append([*mixed, late])
    cutoff = parse_timestamp("2025-06-05T00:00:00Z")
    assert storage.delete_sessions_before(cutoff, now_us=now) == 2
    assert sorted(storage.sessions()) == ["mixed", "recent"]
    assert storage.read("old-1") == [] and storage.head("old-2") is None
    assert len(storage.read("mixed")) == 3 and verify_chain(storage.read("mixed")).valid
    assert storage.delete_sessions_before(cutoff, now_us=now) == 0
    storage.close()


def test_retention_handles_more_sessions_than_one_chunk(db_url: str) -> None:
    storage = SqliteStorage(db_url)
    batch = []
    for n in range(250):
        batch.extend(_stamped_chain(f"s{n:03d}", 2, "2025-01-01T00:00:00.000000Z"))
    storage.append(batch)
    now = parse_timestamp("2025-02-01T00:00:00Z")
    assert storage.delete_sessions_before(now - DAY_US, now_us=now) == 250
    assert storage.sessions() == []
    assert storage.database.read().execute("SELECT count(*) FROM trace_chunks").fetchone()[0] == 0
    storage.close()


def test_the_primary_key_refuses_a_duplicate_even_if_the_head_check_were_wrong(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cra.trace.storage import sqlite as module

    storage = SqliteStorage(db_url)
    events = build_chain(2)
    storage.append(events)
    # Pretend the head check passed ("a fresh session"): the primary keys still refuse the second write.
    monkeypatch.setattr(module, "_HEAD", module._HEAD.replace("WHERE", "WHERE 0 AND"))
    monkeypatch.setattr(module, "_NEW_SESSION", module._NEW_SESSION.replace("INSERT", "INSERT OR IGNORE"))
    with pytest.raises(ChainConflictError, match="written again"):
        storage.append(events)
    monkeypatch.undo()
    assert lines(storage.read("session-a")) == lines(events)
    storage.close()


def test_a_runtime_keeps_traces_and_limits_in_one_file(db_url: str, no_open_databases: None) -> None:
    from trace_helpers import NOTES_ATLAS

    import cra

    runtime = cra.Runtime(clock=cra.ManualClock("2025-01-01T00:00:00Z"), storage=db_url, limiter=db_url)
    runtime.load_atlas(NOTES_ATLAS)
    runtime.register("notes.get", lambda params: {"text": "note"})
    session = runtime.create_session("agent-1", "Read notes")
    resolution = runtime.resolve(session.session_id)
    response = runtime.execute(session.session_id, resolution.resolution_id, "notes.get", {"note_id": "n1"})
    assert response.status == "success"
    written = [e.to_json() for e in runtime.get_trace(session.session_id)]
    runtime.close()
    storage = SqliteStorage(db_url)
    assert [e.to_json() for e in storage.read(session.session_id)] == written
    assert verify_chain(storage.read(session.session_id)).valid
    assert storage.database.schema_version("limiter") == 1
    storage.close()
