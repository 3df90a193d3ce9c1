"""Code run in child processes (started with the "spawn" context, so it must be importable by name)."""

from __future__ import annotations

import os
from multiprocessing.connection import Connection

from cra import SequentialIds, SystemClock
from cra._ids import uuid7_ids
from cra.errors import StorageUnavailableError
from cra.policy.limiter import LimitRequest
from cra.policy.limiter_sqlite import SqliteLimiter
from cra.trace.storage import SqliteStorage
from cra.trace.tracer import Record, Span, Tracer, chain_records

TIMESTAMP = "2025-01-01T00:00:00.000000Z"


def emit_events(url: str, session_id: str, worker: int, count: int) -> int:
    """Emit ``count`` events one by one into a session other processes write too; returns the retries."""
    storage = SqliteStorage(url)
    tracer = Tracer(storage, SystemClock(), uuid7_ids)
    span = Span(session_id, "trace-1", f"span-{worker}", "root-span")
    retries = 0
    try:
        for i in range(count):
            for _attempt in range(10_000):
                try:
                    tracer.emit(span, [Record("test.event", {"worker": worker, "i": i})])
                    break
                except StorageUnavailableError:  # the tracer's own 3 attempts all met a moved head
                    retries += 1
            else:
                raise RuntimeError("could not append after 10000 attempts")
    finally:
        storage.close()
    return retries


def append_until_killed(url: str, session_id: str, acks: Connection, batch: int) -> None:
    """Append batches for ever; after each acknowledged append, report its last sequence."""
    storage = SqliteStorage(url)
    ids = SequentialIds()
    span = Span(session_id, "trace-1", "span-1", None)
    head = storage.head(session_id)
    n = 0
    while True:
        records = [Record("test.event", {"n": n + i, "pid": os.getpid()}) for i in range(batch)]
        n += batch
        events = chain_records(span, records, head, TIMESTAMP, ids)
        storage.append(events)
        head = (events[-1].sequence, events[-1].event_hash)
        acks.send(head[0])


def acquire_many(url: str, key: str, limit: float, attempts: int) -> int:
    """Try ``attempts`` unit acquisitions of ``key`` capped at ``limit``; returns how many succeeded."""
    limiter = SqliteLimiter(url)
    try:
        granted = 0
        for t in range(attempts):
            if limiter.acquire([LimitRequest(key, None, limit, 1.0)], 1_000 + t) == -1:
                granted += 1
        return granted
    finally:
        limiter.close()


def acquire_once(url: str, key: str, now_us: int) -> int:
    """One acquire of one unit of ``key`` (limit 10, 10 s window) from another process."""
    limiter = SqliteLimiter(url)
    try:
        return limiter.acquire([LimitRequest(key, 10_000_000, 10, 1.0)], now_us)
    finally:
        limiter.close()


def bump_counter(path: str, times: int) -> int:
    """Bump a limiter change counter ``times`` times from another process; returns the value it last saw."""
    from pathlib import Path

    from cra.policy.limiter_sqlite import ChangeCounter

    counter = ChangeCounter(Path(path))
    try:
        for _ in range(times):
            counter.bump()
        return counter.read()
    finally:
        counter.close()
