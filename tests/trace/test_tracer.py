"""The immediate Tracer: chaining onto stored heads, storage failures, conflicts, and many threads."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from trace_helpers import NOTES_ATLAS, build_chain

from cra import ManualClock, Runtime, SequentialIds, read_jsonl, verify_chain
from cra.errors import StorageUnavailableError
from cra.trace.event import GENESIS_HASH, TraceEvent
from cra.trace.storage import ChainConflictError, ChainHead, JsonlStorage, MemoryStorage, TraceStorage
from cra.trace.tracer import Record, Span, Tracer, chain_records

SPAN = Span("session-a", "trace-1", "span-root", None)
CHILD = Span("session-a", "trace-1", "span-child", "span-root")


class RecordingStorage:
    """Delegates to a real storage, counting calls; ``failures`` are raised by the next appends, in order."""

    def __init__(self, inner: TraceStorage) -> None:
        self.inner = inner
        self.url = inner.url
        self.appends = 0
        self.head_reads = 0
        self.failures: list[BaseException] = []

    def append(self, events: Sequence[TraceEvent]) -> None:
        self.appends += 1
        if self.failures:
            raise self.failures.pop(0)
        self.inner.append(events)

    def read(self, session_id: str, **filters: Any) -> list[TraceEvent]:
        return self.inner.read(session_id, **filters)

    def head(self, session_id: str) -> ChainHead | None:
        self.head_reads += 1
        return self.inner.head(session_id)

    def sessions(self) -> list[str]:
        return self.inner.sessions()

    def delete_session(self, session_id: str) -> bool:
        return self.inner.delete_session(session_id)

    def close(self) -> None:
        self.inner.close()


def make_tracer(storage: Any, start: int = 1) -> Tracer:
    return Tracer(storage, ManualClock("2025-01-01T00:00:00Z"), SequentialIds(start))


def records(*numbers: int) -> list[Record]:
    return [Record("test.event", {"n": n}) for n in numbers]


def numbers(events: Sequence[TraceEvent]) -> list[int]:
    return [event.payload["n"] for event in events]


# --- chaining -----------------------------------------------------------------------------------------


def test_first_emit_starts_the_chain_at_genesis() -> None:
    storage = MemoryStorage()
    events = make_tracer(storage).emit(SPAN, records(0, 1))
    assert [e.sequence for e in events] == [0, 1]
    assert events[0].previous_event_hash == GENESIS_HASH
    assert events[1].previous_event_hash == events[0].event_hash
    assert storage.read("session-a") == events
    assert verify_chain(events).valid


def test_emitted_events_carry_the_span_clock_and_fresh_ids() -> None:
    clock = ManualClock("2025-03-04T05:06:07.123456Z")
    tracer = Tracer(MemoryStorage(), clock, SequentialIds())
    events = tracer.emit(CHILD, records(0, 1, 2))
    assert {(e.session_id, e.trace_id, e.span_id, e.parent_span_id) for e in events} == {
        ("session-a", "trace-1", "span-child", "span-root")
    }
    assert {e.timestamp for e in events} == {"2025-03-04T05:06:07.123456Z"}
    assert len({e.event_id for e in events}) == 3
    assert [e.event_type for e in events] == ["test.event"] * 3
    clock.advance(1.5)
    [later] = tracer.emit(CHILD, records(3))
    assert later.timestamp == "2025-03-04T05:06:08.623456Z"


def test_emitting_nothing_stores_nothing() -> None:
    storage = RecordingStorage(MemoryStorage())
    assert make_tracer(storage).emit(SPAN, []) == []
    assert (storage.appends, storage.head_reads) == (0, 0)


def test_consecutive_emits_form_one_chain() -> None:
    storage = MemoryStorage()
    tracer = make_tracer(storage)
    for n in range(5):
        tracer.emit(SPAN if n == 0 else CHILD, records(n))
    stored = storage.read("session-a")
    assert [e.sequence for e in stored] == [0, 1, 2, 3, 4]
    assert verify_chain(stored).valid


def test_the_head_is_read_from_storage_once_then_cached() -> None:
    storage = RecordingStorage(MemoryStorage())
    tracer = make_tracer(storage)
    for n in range(4):
        tracer.emit(SPAN, records(n))
    assert storage.head_reads == 1
    assert storage.appends == 4


def test_emit_chains_onto_an_existing_storage_head() -> None:
    storage = MemoryStorage()
    earlier = build_chain(3)
    storage.append(earlier)
    events = make_tracer(storage, start=500).emit(
        Span("session-a", earlier[0].trace_id, "s", earlier[0].span_id), records(3)
    )
    assert events[0].sequence == 3
    assert events[0].previous_event_hash == earlier[-1].event_hash
    assert verify_chain(storage.read("session-a")).valid


def test_sessions_are_chained_independently() -> None:
    storage = MemoryStorage()
    tracer = make_tracer(storage)
    tracer.emit(SPAN, records(0))
    tracer.emit(Span("session-b", "t2", "s2", None), records(0, 1))
    tracer.emit(SPAN, records(1))
    assert [e.sequence for e in storage.read("session-a")] == [0, 1]
    assert [e.sequence for e in storage.read("session-b")] == [0, 1]


def test_a_second_tracer_on_the_same_jsonl_directory_continues_gaplessly(tmp_path: Path) -> None:
    url = f"jsonl://{tmp_path}?fsync=0"
    make_tracer(JsonlStorage(url)).emit(SPAN, records(0, 1, 2))
    make_tracer(JsonlStorage(url), start=1000).emit(CHILD, records(3, 4))
    make_tracer(JsonlStorage(url), start=2000).emit(CHILD, records(5))
    stored = read_jsonl(tmp_path / "session-a.trace.jsonl")
    assert [e.sequence for e in stored] == [0, 1, 2, 3, 4, 5]
    assert numbers(stored) == [0, 1, 2, 3, 4, 5]
    assert verify_chain(stored).valid


def test_read_passes_filters_to_storage() -> None:
    tracer = make_tracer(MemoryStorage())
    tracer.emit(SPAN, records(0, 1, 2, 3))
    assert numbers(tracer.read("session-a", since_sequence=1, limit=2)) == [2, 3]
    assert tracer.read("session-a", event_type="other") == []


def test_forget_drops_the_cached_head() -> None:
    storage = RecordingStorage(MemoryStorage())
    tracer = make_tracer(storage)
    tracer.emit(SPAN, records(0))
    storage.delete_session("session-a")
    tracer.forget("session-a")
    [event] = tracer.emit(SPAN, records(0))
    assert (event.sequence, event.previous_event_hash) == (0, GENESIS_HASH)
    assert storage.head_reads == 2


def test_chain_records_starts_at_genesis_or_continues_a_head() -> None:
    ids = SequentialIds()
    fresh = chain_records(SPAN, records(0, 1), None, "2025-01-01T00:00:00.000000Z", ids)
    assert [(e.sequence, e.previous_event_hash) for e in fresh] == [
        (0, GENESIS_HASH),
        (1, fresh[0].event_hash),
    ]
    more = chain_records(SPAN, records(2), (1, fresh[1].event_hash), "2025-01-01T00:00:00.000000Z", ids)
    assert (more[0].sequence, more[0].previous_event_hash) == (2, fresh[1].event_hash)
    assert verify_chain([*fresh, *more]).valid


# --- storage failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), PermissionError("read-only")])
def test_storage_os_error_raises_storage_unavailable_and_keeps_the_head(error: OSError) -> None:
    storage = RecordingStorage(MemoryStorage())
    tracer = make_tracer(storage)
    tracer.emit(SPAN, records(0, 1))
    storage.failures.append(error)
    with pytest.raises(StorageUnavailableError) as info:
        tracer.emit(SPAN, records(99))
    assert info.value.__cause__ is error
    assert info.value.code == "STORAGE_UNAVAILABLE"
    assert numbers(storage.read("session-a")) == [0, 1]
    # the cached head is unchanged: the next emit continues from sequence 2 without re-reading storage
    [event] = tracer.emit(SPAN, records(2))
    assert event.sequence == 2
    assert storage.head_reads == 1
    stored = storage.read("session-a")
    assert numbers(stored) == [0, 1, 2]
    assert verify_chain(stored).valid


def test_storage_error_on_the_very_first_emit_leaves_no_head_behind() -> None:
    storage = RecordingStorage(MemoryStorage())
    tracer = make_tracer(storage)
    storage.failures.append(OSError("disk gone"))
    with pytest.raises(StorageUnavailableError):
        tracer.emit(SPAN, records(0))
    [event] = tracer.emit(SPAN, records(0))
    assert (event.sequence, event.previous_event_hash) == (0, GENESIS_HASH)
    assert verify_chain(storage.read("session-a")).valid


def test_storage_error_message_names_no_path_or_detail() -> None:
    storage = RecordingStorage(MemoryStorage())
    storage.failures.append(OSError(13, "Permission denied", "/secret/dir/file"))
    with pytest.raises(StorageUnavailableError) as info:
        make_tracer(storage).emit(SPAN, records(0))
    assert "/secret" not in info.value.message


def test_several_failures_in_a_row_never_skip_a_sequence() -> None:
    storage = RecordingStorage(MemoryStorage())
    tracer = make_tracer(storage)
    expected = []
    for n in range(6):
        if n % 2:
            storage.failures.append(OSError("flaky"))
            with pytest.raises(StorageUnavailableError):
                tracer.emit(SPAN, records(100 + n))
        tracer.emit(SPAN, records(n))
        expected.append(n)
    stored = storage.read("session-a")
    assert numbers(stored) == expected
    assert [e.sequence for e in stored] == list(range(len(expected)))
    assert verify_chain(stored).valid


# --- conflicts ------------------------------------------------------------------------------------------


def test_chain_conflict_is_retried_by_rereading_the_head() -> None:
    shared = MemoryStorage()
    storage_a = RecordingStorage(shared)
    tracer_a = make_tracer(storage_a, start=1)
    tracer_b = make_tracer(shared, start=1000)  # another writer (another process)
    tracer_a.emit(SPAN, records(0))
    tracer_b.emit(SPAN, records(1))  # moves the head behind tracer_a's back
    [event] = tracer_a.emit(SPAN, records(2))
    assert event.sequence == 2
    assert storage_a.appends == 3  # first emit, the conflicting attempt, the retry
    assert storage_a.head_reads == 2
    stored = shared.read("session-a")
    assert numbers(stored) == [0, 1, 2]
    assert verify_chain(stored).valid


def test_a_conflict_that_persists_raises_storage_unavailable_and_stores_nothing() -> None:
    storage = RecordingStorage(MemoryStorage())
    tracer = make_tracer(storage)
    tracer.emit(SPAN, records(0))
    storage.failures.extend(ChainConflictError("moved") for _ in range(10))
    with pytest.raises(StorageUnavailableError):
        tracer.emit(SPAN, records(1))
    assert numbers(storage.read("session-a")) == [0]
    storage.failures.clear()
    [event] = tracer.emit(SPAN, records(1))
    assert event.sequence == 1
    assert verify_chain(storage.read("session-a")).valid


def test_two_tracers_alternating_on_one_storage_keep_one_chain() -> None:
    shared = MemoryStorage()
    tracers = [make_tracer(shared, start=1), make_tracer(shared, start=10_000)]
    for n in range(10):
        tracers[n % 2].emit(SPAN, records(n))
    stored = shared.read("session-a")
    assert numbers(stored) == list(range(10))
    assert verify_chain(stored).valid


# --- concurrency ----------------------------------------------------------------------------------------

THREADS = 8
EMITS_PER_THREAD = 40


def _hammer(tracer: Tracer, span: Span) -> list[BaseException]:
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def worker(thread: int) -> None:
        try:
            barrier.wait()
            for i in range(EMITS_PER_THREAD):
                size = 1 + (thread + i) % 3
                tracer.emit(span, [Record("test.event", {"t": thread, "i": i, "k": k}) for k in range(size)])
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def _expected_count() -> int:
    return sum(1 + (t + i) % 3 for t in range(THREADS) for i in range(EMITS_PER_THREAD))


def _assert_one_gapless_chain(stored: list[TraceEvent]) -> None:
    assert len(stored) == _expected_count()
    assert [e.sequence for e in stored] == list(range(len(stored)))
    result = verify_chain(stored)
    assert result.valid, result
    # every batch is contiguous and each thread's batches are in its own order
    for thread in range(THREADS):
        mine = [(e.payload["i"], e.payload["k"]) for e in stored if e.payload["t"] == thread]
        assert mine == sorted(mine)
    runs = [key for key, _ in itertools.groupby(stored, key=lambda e: (e.payload["t"], e.payload["i"]))]
    assert len(runs) == len(set(runs)) == THREADS * EMITS_PER_THREAD  # no batch was split by another
    assert all(
        e.payload["k"] == 0 or e.payload["k"] == p.payload["k"] + 1 for p, e in itertools.pairwise(stored)
    )


@pytest.mark.parametrize("backend", ["memory", "jsonl"])
def test_eight_threads_on_one_session_give_one_gapless_valid_chain(backend: str, tmp_path: Path) -> None:
    storage: TraceStorage = (
        MemoryStorage() if backend == "memory" else JsonlStorage(f"jsonl://{tmp_path}?fsync=0")
    )
    tracer = make_tracer(storage)
    assert _hammer(tracer, SPAN) == []
    _assert_one_gapless_chain(storage.read("session-a"))
    if backend == "jsonl":
        _assert_one_gapless_chain(read_jsonl(tmp_path / "session-a.trace.jsonl"))


def test_eight_threads_resolving_on_one_runtime_session_give_one_valid_chain() -> None:
    runtime = Runtime(clock=ManualClock(), ids=SequentialIds())
    runtime.load_atlas(NOTES_ATLAS)
    session = runtime.create_session("agent-1", "concurrent")
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            for _ in range(10):
                runtime.resolve(session.session_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    trace = runtime.get_trace(session.session_id)
    result = runtime.verify(session.session_id)
    assert result.valid, result
    assert result.event_count == len(trace)
    closings = ("carp.resolution.completed", "carp.resolution.cached")  # repeats may come from the cache
    assert sum(e.event_type in closings for e in trace) == THREADS * 10
    # each resolve's events stay together: request, evaluations, completion
    for i, event in enumerate(trace):
        if event.event_type == "carp.request.received":
            assert trace[i + 1].event_type == "policy.evaluated"
            assert trace[i + 1].span_id == event.span_id
