"""Trace storage backends, chosen by URL: ``open_storage("jsonl:///var/lib/cra")``."""

from __future__ import annotations

from collections.abc import Callable

from .base import ChainConflictError, ChainHead, TraceStorage
from .jsonl import JsonlStorage, read_jsonl, write_jsonl
from .memory import MemoryStorage
from .sqlite import SqliteStorage

__all__ = [
    "ChainConflictError",
    "ChainHead",
    "JsonlStorage",
    "MemoryStorage",
    "SqliteStorage",
    "TraceStorage",
    "open_storage",
    "read_jsonl",
    "write_jsonl",
]

_BACKENDS: dict[str, Callable[[str], TraceStorage]] = {
    "memory": MemoryStorage,
    "jsonl": JsonlStorage,
    "sqlite": SqliteStorage,
}


def open_storage(url: str | TraceStorage) -> TraceStorage:
    """Open the storage a URL names (``memory://``, ``jsonl:///dir``); a storage object passes through.

    An unknown scheme raises ``ValueError`` listing the valid ones.
    """
    if not isinstance(url, str):
        return url
    scheme = url.split("://", 1)[0] if "://" in url else ""
    factory = _BACKENDS.get(scheme)
    if factory is None:
        valid = ", ".join(f"{name}://" for name in sorted(_BACKENDS))
        raise ValueError(f"unknown storage URL {url!r}: valid schemes are {valid}")
    return factory(url)
