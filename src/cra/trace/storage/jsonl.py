"""``jsonl:///dir``: one ``<session_id>.trace.jsonl`` file per session (application/vnd.cra.trace+jsonl).

Each line is one event exactly as ``TraceEvent.to_json()`` wrote it. Appends are written with one
``write`` per file and, unless ``?fsync=0`` is in the URL, ``fsync``-ed before ``append`` returns.
A torn last line (a crash mid-write) is ignored on read and overwritten by the next append.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..event import TraceEvent
from .base import ChainConflictError, ChainHead
from .memory import _select

__all__ = ["JsonlStorage", "read_jsonl", "write_jsonl"]

SUFFIX = ".trace.jsonl"
MEDIA_TYPE = "application/vnd.cra.trace+jsonl"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def read_jsonl(
    path: str | os.PathLike[str], *, allow_torn_tail: bool = False, strict: bool = True
) -> list[TraceEvent]:
    """Read a TRACE JSONL file (as ``export_trace`` writes it); a bad line raises ``ValueError`` naming its
    line number.

    ``strict`` (the default) also requires the exact bytes CRA writes: every line is the canonical
    serialisation of the event it holds (no extra fields, whitespace or other spellings of a number, which
    the hashes alone would not see), no blank lines, and a final newline. ``allow_torn_tail=True`` skips an
    unparsable last line without a newline (what a crash mid-write leaves); storage uses it, verification of
    an exported file does not, so an edited last line cannot slip through unnoticed.
    """
    raw = Path(path).read_bytes()
    events: list[TraceEvent] = []
    lines = raw.split(b"\n")
    last = len(lines)
    for number, line in enumerate(lines, start=1):
        torn = number == last and line != b""
        if number == last and line == b"":
            break  # the newline that ends the file
        if not strict and not line.strip():
            continue
        try:
            if not line.strip():
                raise ValueError("blank line")
            event = TraceEvent.from_json(line)
            if strict and event.to_json() != line:
                raise ValueError("not the canonical serialisation of its event (edited formatting or fields)")
            if strict and torn:
                raise ValueError("the file does not end with a newline")
        except ValueError as exc:
            if allow_torn_tail and torn:
                break  # torn tail: the write that made it never completed
            raise ValueError(f"{path}:{number}: {exc}") from None
        events.append(event)
    return events


def write_jsonl(path: str | os.PathLike[str], events: Sequence[TraceEvent]) -> None:
    """Write events as TRACE JSONL (one line each, in the given order)."""
    Path(path).write_bytes(b"".join(event.to_json() + b"\n" for event in events))


class JsonlStorage:
    """Files under a directory, one per session."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "jsonl":
            raise ValueError(f"not a jsonl:// URL: {url!r}")
        directory = (parts.netloc + parts.path) if parts.netloc else parts.path
        if not directory:
            raise ValueError("jsonl:// needs a directory, e.g. jsonl:///var/lib/cra/traces")
        options = parse_qs(parts.query)
        self.url = url
        self.fsync = options.get("fsync", ["1"])[-1] not in ("0", "false", "no")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._heads: dict[str, ChainHead] = {}
        self._sizes: dict[
            str, int
        ] = {}  # file size after our last write: a different size means another writer

    def _path(self, session_id: str) -> Path:
        if not isinstance(session_id, str) or not _SAFE_ID.fullmatch(session_id):
            raise ValueError(f"unsafe session id for a file name: {session_id!r}")
        return self.directory / f"{session_id}{SUFFIX}"

    def append(self, events: Sequence[TraceEvent]) -> None:
        by_session: dict[str, list[TraceEvent]] = {}
        for event in events:
            by_session.setdefault(event.session_id, []).append(event)
        with self._lock:
            for session_id, batch in by_session.items():
                head = self._head_locked(session_id)
                nxt = 0 if head is None else head[0] + 1
                for offset, event in enumerate(batch):
                    if event.sequence != nxt + offset:
                        raise ChainConflictError(
                            f"session {session_id}: expected sequence {nxt + offset}, got {event.sequence}"
                        )
            written: list[tuple[Path, int]] = []
            try:
                for session_id, batch in by_session.items():
                    path = self._path(session_id)
                    data = b"".join(event.to_json() + b"\n" for event in batch)
                    with open(path, "ab") as handle:
                        start = handle.seek(0, os.SEEK_END)
                        written.append((path, start))
                        handle.write(data)
                        handle.flush()
                        if self.fsync:
                            os.fsync(handle.fileno())
                    self._sizes[session_id] = start + len(data)
            except BaseException:
                # Nothing of a failed batch may stay visible: cut every file back to where it was.
                for path, start in written:
                    with contextlib.suppress(OSError), open(path, "r+b") as handle:
                        handle.truncate(start)
                for session_id in by_session:
                    self._heads.pop(session_id, None)
                    self._sizes.pop(session_id, None)
                raise
            for session_id, batch in by_session.items():
                last = batch[-1]
                self._heads[session_id] = (last.sequence, last.event_hash)

    def _head_locked(self, session_id: str) -> ChainHead | None:
        path = self._path(session_id)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            self._heads.pop(session_id, None)
            return None
        if session_id in self._heads and self._sizes.get(session_id) == size:
            return self._heads[session_id]
        # First look, or another writer (process or storage object) grew the file: read the real head.
        events = read_jsonl(path, allow_torn_tail=True, strict=False)
        self._truncate_torn_tail(path)
        self._sizes[session_id] = path.stat().st_size
        if not events:
            self._heads.pop(session_id, None)
            return None
        head = (events[-1].sequence, events[-1].event_hash)
        self._heads[session_id] = head
        return head

    @staticmethod
    def _truncate_torn_tail(path: Path) -> None:
        raw = path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            keep = raw.rfind(b"\n") + 1
            with open(path, "r+b") as handle:
                handle.truncate(keep)

    def read(
        self,
        session_id: str,
        *,
        since_sequence: int | None = None,
        limit: int | None = None,
        event_type: str | None = None,
    ) -> list[TraceEvent]:
        path = self._path(session_id)
        with self._lock:
            if not path.exists():
                return []
            events = read_jsonl(path, allow_torn_tail=True, strict=False)
        return _select(events, since_sequence, limit, event_type)

    def head(self, session_id: str) -> ChainHead | None:
        with self._lock:
            return self._head_locked(session_id)

    def sessions(self) -> list[str]:
        return sorted(p.name[: -len(SUFFIX)] for p in self.directory.glob(f"*{SUFFIX}"))

    def delete_session(self, session_id: str) -> bool:
        path = self._path(session_id)
        with self._lock:
            self._heads.pop(session_id, None)
            self._sizes.pop(session_id, None)
            if path.exists():
                path.unlink()
                return True
            return False

    def close(self) -> None:
        """Files are opened per append; nothing stays open."""

    def __repr__(self) -> str:
        return f"JsonlStorage({self.url!r})"
