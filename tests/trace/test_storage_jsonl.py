"""``jsonl:///dir`` storage specifics (SPEC 4.4): files, torn tails, fsync, safe ids, persistence."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
from trace_helpers import build_chain

import cra.trace.storage.jsonl as jsonl_module
from cra import ManualClock, SequentialIds, read_jsonl, verify_chain, write_jsonl
from cra.errors import StorageUnavailableError
from cra.trace.event import TraceEvent
from cra.trace.storage import ChainConflictError, JsonlStorage
from cra.trace.tracer import Record, Span, Tracer


def file_bytes(events: list[TraceEvent]) -> bytes:
    return b"".join(event.to_json() + b"\n" for event in events)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "traces"


@pytest.fixture
def storage(directory: Path) -> JsonlStorage:
    return JsonlStorage(f"jsonl://{directory}?fsync=0")


# --- layout ---------------------------------------------------------------------------------------------


def test_each_session_is_one_trace_jsonl_file(storage: JsonlStorage, directory: Path) -> None:
    a = build_chain(3, session_id="session-a")
    b = build_chain(2, session_id="session-b")
    storage.append([*a, *b])
    assert sorted(p.name for p in directory.iterdir()) == ["session-a.trace.jsonl", "session-b.trace.jsonl"]
    assert (directory / "session-a.trace.jsonl").read_bytes() == file_bytes(a)
    assert (directory / "session-b.trace.jsonl").read_bytes() == file_bytes(b)


def test_appends_add_lines_to_the_session_file(storage: JsonlStorage, directory: Path) -> None:
    events = build_chain(4)
    storage.append(events[:2])
    storage.append(events[2:])
    assert (directory / "session-a.trace.jsonl").read_bytes() == file_bytes(events)


def test_media_type_and_suffix() -> None:
    assert jsonl_module.MEDIA_TYPE == "application/vnd.cra.trace+jsonl"
    assert jsonl_module.SUFFIX == ".trace.jsonl"


def test_sessions_lists_only_trace_files(storage: JsonlStorage, directory: Path) -> None:
    storage.append(build_chain(1, session_id="s1"))
    (directory / "notes.txt").write_text("not a trace")
    (directory / "other.jsonl").write_text("{}\n")
    assert storage.sessions() == ["s1"]


def test_the_directory_is_created(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "dir"
    JsonlStorage(f"jsonl://{target}")
    assert target.is_dir()


@pytest.mark.parametrize("url", ["memory://", "file:///tmp/x", "jsonl://", "jsonl://?fsync=0"])
def test_bad_jsonl_urls_raise_value_error(url: str) -> None:
    with pytest.raises(ValueError):
        JsonlStorage(url)


def test_repr_names_the_url(directory: Path) -> None:
    url = f"jsonl://{directory}"
    assert repr(JsonlStorage(url)) == f"JsonlStorage({url!r})"


# --- fsync option --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [("", True), ("?fsync=1", True), ("?fsync=0", False), ("?fsync=false", False), ("?fsync=no", False)],
)
def test_fsync_option_is_parsed(directory: Path, query: str, expected: bool) -> None:
    storage = JsonlStorage(f"jsonl://{directory}{query}")
    assert storage.fsync is expected
    assert storage.directory == directory  # the query is not part of the path


@pytest.mark.parametrize(("query", "calls"), [("", 2), ("?fsync=0", 0)])
def test_fsync_is_called_per_session_file_unless_disabled(
    directory: Path, monkeypatch: pytest.MonkeyPatch, query: str, calls: int
) -> None:
    seen: list[int] = []
    monkeypatch.setattr(jsonl_module.os, "fsync", seen.append)
    storage = JsonlStorage(f"jsonl://{directory}{query}")
    storage.append([*build_chain(2, session_id="s1"), *build_chain(3, session_id="s2")])
    assert len(seen) == calls


# --- unsafe ids ----------------------------------------------------------------------------------------


UNSAFE_IDS = ["../escape", "a/b", "a\\b", "", "x" * 129, "with space", "é", "a\x00b", "/abs", "a\n"]


@pytest.mark.parametrize("session_id", UNSAFE_IDS, ids=repr)
def test_unsafe_session_ids_are_rejected_everywhere(storage: JsonlStorage, session_id: str) -> None:
    with pytest.raises(ValueError, match="unsafe session id"):
        storage.append(build_chain(1, session_id=session_id))
    with pytest.raises(ValueError, match="unsafe session id"):
        storage.read(session_id)
    with pytest.raises(ValueError, match="unsafe session id"):
        storage.head(session_id)
    with pytest.raises(ValueError, match="unsafe session id"):
        storage.delete_session(session_id)


def test_unsafe_id_in_a_batch_writes_nothing_at_all(storage: JsonlStorage, directory: Path) -> None:
    good = build_chain(1, session_id="good")
    bad = build_chain(1, session_id="../bad")
    with pytest.raises(ValueError):
        storage.append([*good, *bad])
    assert list(directory.iterdir()) == []
    assert not (directory.parent / "bad.trace.jsonl").exists()


@pytest.mark.parametrize("session_id", ["0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "a.b_c-D9", "x" * 128])
def test_uuid_and_plain_ids_are_accepted(storage: JsonlStorage, session_id: str) -> None:
    storage.append(build_chain(1, session_id=session_id))
    assert storage.sessions() == [session_id]


# --- persistence ---------------------------------------------------------------------------------------


def test_a_new_storage_on_the_same_directory_continues_the_heads(directory: Path) -> None:
    events = build_chain(5)
    JsonlStorage(f"jsonl://{directory}?fsync=0").append(events[:3])
    reopened = JsonlStorage(f"jsonl://{directory}?fsync=0")
    assert reopened.head("session-a") == (2, events[2].event_hash)
    assert reopened.sessions() == ["session-a"]
    with pytest.raises(ChainConflictError):
        reopened.append(events[4:])
    with pytest.raises(ChainConflictError):
        reopened.append(events[:1])
    reopened.append(events[3:])
    assert reopened.read("session-a") == events
    assert verify_chain(reopened.read("session-a")).valid


def test_a_new_storage_first_append_checks_the_files_head(directory: Path) -> None:
    events = build_chain(3)
    JsonlStorage(f"jsonl://{directory}?fsync=0").append(events[:2])
    reopened = JsonlStorage(f"jsonl://{directory}?fsync=0")
    reopened.append(events[2:])  # no head() call first: append must read the file's head itself
    assert reopened.read("session-a") == events


# --- torn tails -----------------------------------------------------------------------------------------


def tear(path: Path, event: TraceEvent, keep: int) -> None:
    """Simulate a crash mid-write: the first ``keep`` bytes of the event's line, no newline."""
    with open(path, "ab") as handle:
        handle.write(event.to_json()[:keep])


@pytest.mark.parametrize("keep", [1, 40, -1])
def test_torn_last_line_is_skipped_on_read(directory: Path, keep: int) -> None:
    events = build_chain(4)
    JsonlStorage(f"jsonl://{directory}?fsync=0").append(events[:3])
    path = directory / "session-a.trace.jsonl"
    tear(path, events[3], keep if keep > 0 else len(events[3].to_json()) - 1)
    reopened = JsonlStorage(f"jsonl://{directory}?fsync=0")
    assert reopened.read("session-a") == events[:3]
    assert read_jsonl(path, allow_torn_tail=True) == events[:3]


def test_read_jsonl_refuses_a_torn_last_line_unless_allowed(directory: Path) -> None:
    events = build_chain(3)
    JsonlStorage(f"jsonl://{directory}?fsync=0").append(events[:2])
    path = directory / "session-a.trace.jsonl"
    tear(path, events[2], 30)
    with pytest.raises(ValueError, match=r"session-a\.trace\.jsonl:3"):
        read_jsonl(path)  # an exported file is verified strictly: an edited last line must not slip through
    assert read_jsonl(path, allow_torn_tail=True) == events[:2]


def test_torn_last_line_is_truncated_before_the_next_append(directory: Path) -> None:
    events = build_chain(5)
    JsonlStorage(f"jsonl://{directory}?fsync=0").append(events[:3])
    path = directory / "session-a.trace.jsonl"
    tear(path, events[3], 57)
    reopened = JsonlStorage(f"jsonl://{directory}?fsync=0")  # the process restarted after the crash
    assert reopened.head("session-a") == (2, events[2].event_hash)
    assert path.read_bytes() == file_bytes(events[:3])  # torn bytes gone
    reopened.append(events[3:])
    assert path.read_bytes() == file_bytes(events)
    assert verify_chain(read_jsonl(path)).valid


def test_torn_tail_is_truncated_even_when_append_is_the_first_call(directory: Path) -> None:
    events = build_chain(4)
    JsonlStorage(f"jsonl://{directory}?fsync=0").append(events[:2])
    path = directory / "session-a.trace.jsonl"
    tear(path, events[2], 10)
    reopened = JsonlStorage(f"jsonl://{directory}?fsync=0")
    reopened.append(events[2:])
    assert path.read_bytes() == file_bytes(events)


def test_a_file_holding_only_a_torn_line_is_an_empty_session(directory: Path) -> None:
    events = build_chain(2)
    directory.mkdir()
    path = directory / "session-a.trace.jsonl"
    tear(path, events[0], 20)
    storage = JsonlStorage(f"jsonl://{directory}?fsync=0")
    assert storage.read("session-a") == []
    assert storage.head("session-a") is None
    storage.append(events)
    assert path.read_bytes() == file_bytes(events)


def test_a_tracer_continues_the_chain_after_a_crash_left_a_torn_line(directory: Path) -> None:
    span = Span("session-a", "trace", "span", None)
    Tracer(
        JsonlStorage(f"jsonl://{directory}?fsync=0"), ManualClock("2025-01-01T00:00:00Z"), SequentialIds()
    ).emit(span, [Record("a", {"i": 0}), Record("a", {"i": 1})])
    path = directory / "session-a.trace.jsonl"
    with open(path, "ab") as handle:
        handle.write(b'{"trace_version":"1.0","event_id":"torn')
    tracer = Tracer(
        JsonlStorage(f"jsonl://{directory}?fsync=0"), ManualClock("2025-01-01T00:00:00Z"), SequentialIds(100)
    )
    tracer.emit(span, [Record("a", {"i": 2})])
    stored = read_jsonl(path)
    assert [e.sequence for e in stored] == [0, 1, 2]
    assert verify_chain(stored).valid


def test_a_corrupt_line_before_the_last_raises_value_error_naming_the_line(directory: Path) -> None:
    events = build_chain(3)
    directory.mkdir()
    path = directory / "session-a.trace.jsonl"
    path.write_bytes(events[0].to_json() + b"\n" + b"{garbage}\n" + events[2].to_json() + b"\n")
    with pytest.raises(ValueError, match=r"session-a\.trace\.jsonl:2"):
        read_jsonl(path)
    with pytest.raises(ValueError):
        JsonlStorage(f"jsonl://{directory}").read("session-a")


def test_a_complete_last_line_without_newline_is_refused_strictly_and_read_leniently(directory: Path) -> None:
    events = build_chain(2)
    directory.mkdir()
    path = directory / "session-a.trace.jsonl"
    path.write_bytes(file_bytes(events)[:-1])
    with pytest.raises(ValueError, match="newline"):
        read_jsonl(path)
    assert read_jsonl(path, strict=False) == events


# --- read_jsonl / write_jsonl -------------------------------------------------------------------------


def test_write_jsonl_then_read_jsonl_round_trips(tmp_path: Path) -> None:
    events = build_chain(4, payloads=[{"f": 1e-07, "u": "日本"}, {}, {"n": None}, {"l": [1, [2]]}])
    path = tmp_path / "export.trace.jsonl"
    write_jsonl(path, events)
    assert path.read_bytes() == file_bytes(events)
    assert read_jsonl(path) == events
    assert read_jsonl(str(path)) == events


def test_read_jsonl_refuses_blank_lines_strictly_and_skips_them_leniently(tmp_path: Path) -> None:
    events = build_chain(2)
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"\n" + events[0].to_json() + b"\n\n" + events[1].to_json() + b"\n\n")
    with pytest.raises(ValueError, match="blank line"):
        read_jsonl(path)
    assert read_jsonl(path, strict=False) == events


def test_read_jsonl_of_an_empty_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert read_jsonl(path) == []


@pytest.mark.parametrize("line", [b"[1, 2]", b'{"trace_version": "1.0"}', b"null"])
def test_read_jsonl_rejects_a_line_that_is_not_a_trace_event(tmp_path: Path, line: bytes) -> None:
    events = build_chain(1)
    path = tmp_path / "x.jsonl"
    path.write_bytes(line + b"\n" + events[0].to_json() + b"\n")
    with pytest.raises(ValueError, match=":1:"):
        read_jsonl(path)


# --- failed writes (the contract: "if append raises, none of the batch may be visible") -------------------


class _FailingHandle:
    """A file handle whose write stores only the first third of the data, then fails (disk full)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def __enter__(self) -> _FailingHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def write(self, data: bytes) -> int:
        self._handle.write(data[: len(data) // 3])
        self._handle.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def test_an_append_whose_fsync_fails_leaves_no_visible_events(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = JsonlStorage(f"jsonl://{directory}")
    tracer = Tracer(storage, ManualClock("2025-01-01T00:00:00Z"), SequentialIds())
    span = Span("session-a", "trace", "span", None)
    tracer.emit(span, [Record("a", {"i": 0})])

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(jsonl_module.os, "fsync", failing_fsync)
    with pytest.raises(StorageUnavailableError):
        tracer.emit(span, [Record("a", {"i": 1})])
    monkeypatch.undo()
    tracer.emit(span, [Record("a", {"i": 2})])
    stored = storage.read("session-a")
    assert [e.payload["i"] for e in stored] == [0, 2]
    assert verify_chain(stored).valid


def test_an_append_that_fails_half_way_does_not_corrupt_the_next_append(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = JsonlStorage(f"jsonl://{directory}?fsync=0")
    tracer = Tracer(storage, ManualClock("2025-01-01T00:00:00Z"), SequentialIds())
    span = Span("session-a", "trace", "span", None)
    tracer.emit(span, [Record("a", {"i": 0})])
    real_open = open

    def half_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        return _FailingHandle(real_open(path, mode, *args, **kwargs))

    monkeypatch.setattr(jsonl_module, "open", half_open, raising=False)
    with pytest.raises(StorageUnavailableError):
        tracer.emit(span, [Record("a", {"i": 1}), Record("a", {"i": 2})])
    monkeypatch.delattr(jsonl_module, "open")
    tracer.emit(span, [Record("a", {"i": 3})])
    stored = read_jsonl(directory / "session-a.trace.jsonl")
    assert [e.payload["i"] for e in stored] == [0, 3]
    assert verify_chain(stored).valid


def test_two_storages_on_one_directory_never_fork_a_chain(directory: Path) -> None:
    first = JsonlStorage(f"jsonl://{directory}?fsync=0")
    second = JsonlStorage(f"jsonl://{directory}?fsync=0")
    events = build_chain(2)
    first.append(events[:1])
    assert second.head("session-a") == (0, events[0].event_hash)
    first.append(events[1:])
    rival = build_chain(2, payloads=[{"index": 0, "note": "event 0"}, {"rival": True}])
    with pytest.raises(ChainConflictError):
        second.append(rival[1:])
    assert verify_chain(read_jsonl(directory / "session-a.trace.jsonl")).valid


def test_a_failed_multi_session_batch_leaves_no_session_written(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = JsonlStorage(f"jsonl://{directory}?fsync=0")
    real_open = open
    opened: list[str] = []

    def second_open_fails(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        handle = real_open(path, mode, *args, **kwargs)
        return _FailingHandle(handle) if len(opened) == 2 else handle

    monkeypatch.setattr(jsonl_module, "open", second_open_fails, raising=False)
    with pytest.raises(OSError):
        storage.append([*build_chain(2, session_id="s1"), *build_chain(2, session_id="s2")])
    monkeypatch.delattr(jsonl_module, "open")
    assert JsonlStorage(f"jsonl://{directory}").read("s1") == []
    assert storage.head("s1") is None


def test_a_huge_integer_in_a_resolve_context_is_refused_before_anything_is_recorded(directory: Path) -> None:
    from trace_helpers import run_notes_session

    from cra.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError):
        run_notes_session(f"jsonl://{directory}?fsync=0", context={"n": 2**70})
