"""``memory://`` storage specifics and ``open_storage`` dispatch (SPEC 4.4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from trace_helpers import build_chain

from cra import open_storage
from cra.trace.storage import JsonlStorage, MemoryStorage


def test_open_storage_memory_url_gives_a_memory_storage() -> None:
    storage = open_storage("memory://")
    assert isinstance(storage, MemoryStorage)
    assert storage.url == "memory://"


def test_open_storage_jsonl_url_gives_a_jsonl_storage_in_that_directory(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    storage = open_storage(f"jsonl://{directory}")
    assert isinstance(storage, JsonlStorage)
    assert storage.directory == directory
    assert directory.is_dir()


@pytest.mark.parametrize("url", ["redis://localhost", "ftp://x", "memory", "", "/tmp/x"])
def test_open_storage_unknown_scheme_raises_value_error_listing_valid_schemes(url: str) -> None:
    with pytest.raises(ValueError, match="unknown storage URL") as info:
        open_storage(url)
    assert "jsonl://" in str(info.value)
    assert "memory://" in str(info.value)


def test_open_storage_passes_a_storage_object_through(tmp_path: Path) -> None:
    memory = MemoryStorage()
    assert open_storage(memory) is memory
    jsonl = JsonlStorage(f"jsonl://{tmp_path}")
    assert open_storage(jsonl) is jsonl


def test_memory_storages_share_nothing() -> None:
    first, second = MemoryStorage(), MemoryStorage()
    first.append(build_chain(2))
    assert second.read("session-a") == []
    assert second.sessions() == []


def test_memory_storage_keeps_the_event_objects_it_was_given() -> None:
    events = build_chain(3)
    storage = MemoryStorage()
    storage.append(events)
    assert all(a is b for a, b in zip(storage.read("session-a"), events, strict=True))


def test_memory_storage_read_returns_a_new_list_each_time() -> None:
    storage = MemoryStorage()
    storage.append(build_chain(2))
    first = storage.read("session-a")
    first.clear()
    assert len(storage.read("session-a")) == 2


def test_memory_storage_repr_names_its_url() -> None:
    assert repr(MemoryStorage()) == "MemoryStorage('memory://')"
