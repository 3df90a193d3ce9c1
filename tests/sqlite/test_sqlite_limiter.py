"""``SqliteLimiter``: the same sliding-window semantics as ``MemoryLimiter`` (every case runs on both), plus
atomicity across threads and processes and persistence (SPEC 3.1, 11, 13)."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from cra.policy.limiter import Limiter, LimitRequest, MemoryLimiter, open_limiter
from cra.policy.limiter_sqlite import SqliteLimiter

from . import workers

SPAWN = multiprocessing.get_context("spawn")
S = 1_000_000  # one second in microseconds
T0 = 1_700_000_000 * S


@pytest.fixture(params=["memory", "sqlite"])
def limiter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Limiter]:
    made: Limiter = (
        MemoryLimiter() if request.param == "memory" else SqliteLimiter(f"sqlite:///{tmp_path}/l.db")
    )
    yield made
    made.close()


def req(key: str, limit: float, weight: float = 1.0, window_us: int | None = 10 * S) -> LimitRequest:
    return LimitRequest(key, window_us, limit, weight)


# --- semantics shared with MemoryLimiter -----------------------------------------------------------------


def test_limiter_satisfies_the_protocol(limiter: Limiter) -> None:
    assert isinstance(limiter, Limiter)


def test_unknown_key_has_no_usage(limiter: Limiter) -> None:
    assert limiter.usage("nobody", 10 * S, T0) == 0.0
    assert limiter.usage("nobody", None, T0) == 0.0


def test_acquire_consumes_until_the_limit(limiter: Limiter) -> None:
    assert [limiter.acquire([req("k", 3)], T0 + i) for i in range(5)] == [-1, -1, -1, 0, 0]
    assert limiter.usage("k", 10 * S, T0 + 5) == 3.0


def test_weights_count_and_a_request_that_would_pass_the_limit_is_refused_whole(limiter: Limiter) -> None:
    assert limiter.acquire([req("k", 10, weight=4)], T0) == -1
    assert limiter.acquire([req("k", 10, weight=7)], T0) == 0  # 11 > 10: nothing taken
    assert limiter.acquire([req("k", 10, weight=6)], T0) == -1  # exactly 10 fits
    assert limiter.usage("k", 10 * S, T0) == 10.0
    assert limiter.acquire([req("k", 10, weight=0.5)], T0) == 0


def test_fractional_weights(limiter: Limiter) -> None:
    for i in range(4):
        assert limiter.acquire([req("k", 1.0, weight=0.25)], T0 + i) == -1
    assert limiter.acquire([req("k", 1.0, weight=0.25)], T0 + 4) == 0
    assert limiter.usage("k", 10 * S, T0 + 4) == 1.0


def test_the_window_slides(limiter: Limiter) -> None:
    window = 10 * S
    assert limiter.acquire([req("k", 2, window_us=window)], T0) == -1
    assert limiter.acquire([req("k", 2, window_us=window)], T0 + 5 * S) == -1
    assert limiter.acquire([req("k", 2, window_us=window)], T0 + window - 1) == 0  # both still inside
    assert limiter.usage("k", window, T0 + window - 1) == 2.0
    # The window is (now - window, now]: the entry at T0 leaves exactly at T0 + window.
    assert limiter.usage("k", window, T0 + window) == 1.0
    assert limiter.acquire([req("k", 2, window_us=window)], T0 + window) == -1
    assert limiter.usage("k", window, T0 + window + 5 * S) == 1.0
    assert limiter.usage("k", window, T0 + 100 * S) == 0.0


def test_a_window_of_none_never_forgets(limiter: Limiter) -> None:
    assert limiter.acquire([req("k", 2, window_us=None)], T0) == -1
    assert limiter.acquire([req("k", 2, window_us=None)], T0 + 1000 * S) == -1
    assert limiter.acquire([req("k", 2, window_us=None)], T0 + 10**6 * S) == 0
    assert limiter.usage("k", None, T0 + 10**6 * S) == 2.0


def test_acquire_is_all_or_nothing_across_keys(limiter: Limiter) -> None:
    assert limiter.acquire([req("b", 1)], T0) == -1  # b is full
    assert limiter.acquire([req("a", 5), req("b", 1)], T0 + 1) == 1  # b refuses: a is not taken either
    assert limiter.usage("a", 10 * S, T0 + 1) == 0.0
    assert limiter.acquire([req("a", 5), req("c", 1)], T0 + 2) == -1  # both pass: both taken
    assert limiter.usage("a", 10 * S, T0 + 2) == 1.0
    assert limiter.usage("c", 10 * S, T0 + 2) == 1.0
    assert limiter.acquire([], T0 + 3) == -1


def test_first_refusing_request_is_reported(limiter: Limiter) -> None:
    limiter.acquire([req("b", 1), req("c", 1)], T0)
    assert limiter.acquire([req("a", 1), req("b", 1), req("c", 1)], T0 + 1) == 1


def test_requests_for_one_key_in_one_acquire_are_each_checked_against_the_state_before(
    limiter: Limiter,
) -> None:
    assert limiter.acquire([req("k", 1), req("k", 1)], T0) == -1
    assert limiter.usage("k", 10 * S, T0) == 2.0


def test_release_undoes_one_acquire(limiter: Limiter) -> None:
    first, second = [req("a", 5), req("b", 5, weight=2)], [req("a", 5)]
    limiter.acquire(first, T0)
    limiter.acquire(first, T0)
    limiter.acquire(second, T0 + 1)
    limiter.release(first, T0)
    assert limiter.usage("a", 10 * S, T0 + 1) == 2.0
    assert limiter.usage("b", 10 * S, T0 + 1) == 2.0
    limiter.release(first, T0 + 7)  # no entry at that time: nothing happens
    limiter.release([req("nobody", 5)], T0)
    assert limiter.usage("a", 10 * S, T0 + 1) == 2.0
    limiter.release(first, T0)
    limiter.release(second, T0 + 1)
    assert limiter.usage("a", 10 * S, T0 + 1) == 0.0
    assert limiter.usage("b", 10 * S, T0 + 1) == 0.0


def test_prune_drops_entries_that_left_their_window(limiter: Limiter) -> None:
    limiter.acquire([req("short", 10, window_us=1 * S)], T0)
    limiter.acquire([req("long", 10, window_us=100 * S)], T0)
    limiter.acquire([req("forever", 10, window_us=None)], T0)
    assert limiter.prune(T0) == 0
    assert limiter.prune(T0 + 1 * S) == 1
    assert limiter.usage("long", 100 * S, T0 + 1 * S) == 1.0
    assert limiter.prune(T0 + 1000 * S) == 1
    assert limiter.prune(T0 + 10**9 * S) == 0
    assert limiter.usage("forever", None, T0 + 10**9 * S) == 1.0


def test_close_is_idempotent(limiter: Limiter) -> None:
    limiter.close()
    limiter.close()


# --- SQLite specifics -------------------------------------------------------------------------------------


def test_open_limiter_dispatches_sqlite_urls(tmp_path: Path, no_open_databases: None) -> None:
    limiter = open_limiter(f"sqlite:///{tmp_path}/l.db")
    assert isinstance(limiter, SqliteLimiter)
    limiter.close()
    with pytest.raises(ValueError, match="sqlite://"):
        open_limiter("redis://localhost")
    with pytest.raises(ValueError, match="in-memory"):
        open_limiter("sqlite:///:memory:")


def test_windows_survive_a_restart(db_url: str, no_open_databases: None) -> None:
    limiter = SqliteLimiter(db_url)
    limiter.acquire([req("k", 2)], T0)
    limiter.acquire([req("k", 2)], T0 + 1)
    limiter.close()
    reopened = SqliteLimiter(db_url)
    assert reopened.acquire([req("k", 2)], T0 + 2) == 0
    assert reopened.snapshot() == {"k": [(T0, 1.0), (T0 + 1, 1.0)]}
    reopened.close()


def test_snapshot_matches_the_memory_limiter(db_url: str) -> None:
    memory, sqlite = MemoryLimiter(), SqliteLimiter(db_url)
    for limiter in (memory, sqlite):
        limiter.acquire([req("a", 9, weight=2), req("b", 9)], T0)
        limiter.acquire([req("a", 9)], T0 + 5)
    assert sqlite.snapshot() == memory.snapshot() == {"a": [(T0, 2.0), (T0 + 5, 1.0)], "b": [(T0, 1.0)]}
    sqlite.close()


def test_threads_and_processes_never_pass_a_shared_limit(db_url: str) -> None:
    SqliteLimiter(db_url).close()  # schema first
    granted: list[int] = []
    lock = threading.Lock()

    def thread_worker() -> None:
        count = workers.acquire_many(db_url, "shared", 10, 10)
        with lock:
            granted.append(count)

    with ProcessPoolExecutor(max_workers=2, mp_context=SPAWN) as pool:
        futures = [pool.submit(workers.acquire_many, db_url, "shared", 10, 10) for _ in range(2)]
        threads = [threading.Thread(target=thread_worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        granted.extend(future.result(timeout=120) for future in futures)
    assert len(granted) == 6
    assert sum(granted) == 10
    limiter = SqliteLimiter(db_url)
    assert limiter.usage("shared", None, T0) == 10.0
    limiter.close()


# --- change tracking (what the resolution cache relies on) ----------------------------------------------


def test_version_moves_with_every_change_and_only_then(limiter: Limiter) -> None:
    version = limiter.version  # type: ignore[attr-defined]
    assert limiter.acquire([req("k", 1)], T0) == -1
    after_acquire = limiter.version  # type: ignore[attr-defined]
    assert after_acquire != version
    assert limiter.acquire([req("k", 1)], T0) == 0  # refused: nothing changed
    assert limiter.version == after_acquire  # type: ignore[attr-defined]
    limiter.release([req("k", 1)], T0)
    after_release = limiter.version  # type: ignore[attr-defined]
    assert after_release != after_acquire
    assert limiter.prune(T0) == 0
    assert limiter.version == after_release  # type: ignore[attr-defined]
    limiter.acquire([req("k", 1)], T0)
    moved = limiter.version  # type: ignore[attr-defined]
    assert limiter.prune(T0 + 11 * S) == 1
    assert limiter.version != moved  # type: ignore[attr-defined]


def test_next_change_is_when_the_oldest_entry_leaves(limiter: Limiter) -> None:
    assert limiter.next_change("k", 10 * S) is None  # type: ignore[attr-defined]
    limiter.acquire([req("k", 5)], T0)
    limiter.acquire([req("k", 5)], T0 + 3 * S)
    assert limiter.next_change("k", 10 * S) == T0 + 10 * S  # type: ignore[attr-defined]
    assert limiter.next_change("k", None) is None  # type: ignore[attr-defined]


def test_a_change_by_another_handle_on_the_file_moves_the_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    mine = SqliteLimiter(url)
    seen = mine.version
    # Another process on the same file (a second `cra serve` worker): its change must be visible here.
    with ProcessPoolExecutor(1, mp_context=SPAWN) as pool:
        assert pool.submit(workers.acquire_once, url, "k", T0).result() == -1
    assert mine.version != seen
    mine.close()


def test_the_change_counter_loses_no_bump_across_processes(tmp_path: Path) -> None:
    from cra.policy.limiter_sqlite import ChangeCounter

    path = tmp_path / "x.db-limits"
    counter = ChangeCounter(path)
    with ProcessPoolExecutor(4, mp_context=SPAWN) as pool:
        list(pool.map(workers.bump_counter, [str(path)] * 4, [500] * 4))
    assert counter.read() == 2000  # every increment of every process, none lost to a race
    counter.close()
    counter.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        counter.read()
