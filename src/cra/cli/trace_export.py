"""``cra trace export``: write one session's TRACE as JSONL, read from a server or from trace storage.

Example::

    cra trace export --session 01a2... --url http://127.0.0.1:8420 -o session.trace.jsonl
    cra trace export --session 01a2... --storage sqlite:///cra.db --verify > session.trace.jsonl
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.text import Text

import cra

from ._output import EXIT_FAILURE, fail
from ._remote import ApiKeyOption, OptionalUrlOption, TokenOption, connect

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["export_command", "PAGE_SIZE"]

PAGE_SIZE = 10_000
"""Events fetched per request (or storage read). A trace of a full page or more shows a progress bar when
stderr is a terminal; smaller ones are read in one go and never flash a bar."""

Fetch = Callable[[int | None, int | None], list[cra.TraceEvent]]
"""``fetch(since_sequence, limit)``: the events after ``since_sequence`` (all from the start for None), at
most ``limit`` (all for None)."""

_STORAGE = "'--storage'"


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _say(*parts: str | tuple[str, str]) -> None:
    """One line on stderr (coloured on a terminal): stdout may be carrying the trace itself."""
    console = _err()
    if console.is_terminal:
        console.print(Text.assemble(*parts), soft_wrap=True)
    else:
        sys.stderr.write("".join(p if isinstance(p, str) else p[0] for p in parts) + "\n")


class _Bar:
    """A progress bar on stderr, started only once a trace proves to fill at least one page."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.enabled = _err().is_terminal
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def advance(self, done: int) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn  # terminals only

            self._progress = Progress(
                TextColumn("reading events"),
                BarColumn(),
                MofNCompleteColumn(),
                console=_err(),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("read", total=self.total)
        assert self._task is not None
        self._progress.update(self._task, completed=done)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def _read_all(
    fetch: Fetch, *, page_size: int | None, total: int | None, last: int | None
) -> list[cra.TraceEvent]:
    """Every event, page by page; with ``last`` (the head's sequence when reading started) stop there, so
    events appended meanwhile do not make the export differ from the head it is checked against."""
    events = fetch(None, page_size)
    if page_size is None or len(events) < page_size:
        return [e for e in events if last is None or e.sequence <= last]
    bar = _Bar(total)
    try:
        while True:
            bar.advance(len(events))
            if last is not None and events[-1].sequence >= last:
                break
            page = fetch(events[-1].sequence, page_size)
            if page and page[0].sequence <= events[-1].sequence:
                # A source that ignores since_sequence would otherwise be paged through forever.
                fail(
                    "the source sent events it had already sent (since_sequence ignored)", code="BAD_RESPONSE"
                )
            events.extend(page)
            if len(page) < page_size:
                break
    finally:
        bar.close()
    return [e for e in events if last is None or e.sequence <= last]


def _storage_location(url: str) -> Path | None:
    """The file or directory a storage URL names (None for schemes without one), so that a typo is an
    error instead of a freshly created, empty store."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "sqlite":
        from cra._sqlite import parse_sqlite_url  # the storage's own reading of its URL

        return parse_sqlite_url(url)[0]
    if scheme == "jsonl":
        parts = urlsplit(url)
        return Path(parts.netloc + parts.path if parts.netloc else parts.path)
    return None


def _from_storage(url: str, session_id: str) -> tuple[list[cra.TraceEvent], str]:
    """(events, the head hash the storage recorded) read from trace storage."""
    if url.startswith("memory:"):
        raise typer.BadParameter(
            "memory:// storage lives and dies with one process: there is nothing to export from it",
            param_hint=_STORAGE,
        )
    try:
        location = _storage_location(url)
        if location is not None and not location.exists():
            raise typer.BadParameter(f"{location} does not exist", param_hint=_STORAGE)
        storage = cra.open_storage(url)
    except ValueError as exc:  # an unknown scheme, a malformed URL
        raise typer.BadParameter(str(exc), param_hint=_STORAGE) from None
    except (OSError, sqlite3.Error, cra.CRAError) as exc:  # unreadable, locked, not a database
        fail(f"cannot open storage {url}: {exc}", code="STORAGE_UNAVAILABLE")
    try:
        head = storage.head(session_id)
        if head is None:
            fail(f"no events for session {session_id!r} in {url}", code="SESSION_NOT_FOUND")
        last, head_hash = head
        # jsonl:// parses the whole file on every read, so paging would read it once per page.
        page_size = None if url.startswith("jsonl:") else PAGE_SIZE

        def fetch(since: int | None, limit: int | None) -> list[cra.TraceEvent]:
            return storage.read(session_id, since_sequence=since, limit=limit)

        return _read_all(fetch, page_size=page_size, total=last + 1, last=last), head_hash
    except (ValueError, OSError, sqlite3.Error) as exc:  # an unsafe session id, an unreadable line or file
        fail(f"cannot read session {session_id!r} from {url}: {exc}", code="UNREADABLE_TRACE")
    finally:
        storage.close()


def _from_server(url: str, api_key: str | None, token: str | None, session_id: str) -> list[cra.TraceEvent]:
    with connect(url, api_key, token, json_mode=False) as client:

        def fetch(since: int | None, limit: int | None) -> list[cra.TraceEvent]:
            return client.get_trace(session_id, since_sequence=since, limit=limit)

        return _read_all(fetch, page_size=PAGE_SIZE, total=None, last=None)


def _write(events: list[cra.TraceEvent], output: Path | None) -> None:
    if output is None:
        # Raw bytes: a text layer could re-encode non-ASCII payloads, and the hashes cover the exact bytes.
        sys.stdout.flush()
        stream = sys.stdout.buffer
        for start in range(0, len(events), PAGE_SIZE):
            stream.write(b"".join(e.to_json() + b"\n" for e in events[start : start + PAGE_SIZE]))
        stream.flush()
        return
    try:
        cra.write_jsonl(output, events)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}", code="WRITE_FAILED")


def export_command(
    session: Annotated[
        str, typer.Option("--session", metavar="ID", help="The session to export.", show_default=False)
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            dir_okay=False,
            help="Write here instead of stdout ('-' is stdout).",
            show_default=False,
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            metavar="URL",
            help="Read from trace storage: sqlite:///cra.db, jsonl:///dir.",
            show_default=False,
        ),
    ] = None,
    url: OptionalUrlOption = None,
    api_key: ApiKeyOption = None,
    token: TokenOption = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Also verify the hash chain; exit 1 if it does not verify.")
    ] = False,
) -> None:
    """Export a session's TRACE as JSONL (one event per line, exactly as stored).

    Reads from a `cra serve` server (--url, or CRA_URL) or straight from trace storage (--storage, e.g. the
    sqlite file `cra serve` or `cra execute --storage` wrote); give exactly one. Writes to stdout or -o FILE,
    in the format `cra trace verify` reads. A summary (events written, head hash) goes to stderr, with a
    progress bar there for large traces when stderr is a terminal. --verify also checks the chain (against
    the storage's recorded head too, so a cut-off read is caught); the trace is written either way.

    Exit 0 when written (and verified), 1 if the session has no events, the source cannot be read or the
    chain does not verify, 2 for usage errors (no source, both sources, a storage path that does not exist).

    \b
    Example:
      cra trace export --session 01a2010b-e68a-75b6-b20b-045fb182f2e5 -o session.trace.jsonl
      cra trace export --session 01a2... --storage sqlite:///cra.db --verify > session.trace.jsonl
      CRA_URL=http://cra.internal:8420 cra trace export --session 01a2... --api-key "$KEY" | gzip > t.jsonl.gz
    """
    if url is None and storage is None:
        raise typer.BadParameter(
            "give the source: --url URL (or CRA_URL) to read from a `cra serve` server, or --storage URL "
            "(sqlite:///cra.db, jsonl:///dir) to read trace storage directly",
            param_hint="'--url' / '--storage'",
        )
    if url is not None and storage is not None:
        raise typer.BadParameter(
            "give one source: --url (a server) or --storage (trace storage), not both "
            "(is CRA_URL set in the environment?)",
            param_hint="'--url' / '--storage'",
        )
    if output is not None and str(output) == "-":
        output = None
    expected_head: str | None = None
    if storage is not None:
        events, expected_head = _from_storage(storage, session)
    else:
        assert url is not None
        events = _from_server(url, api_key, token, session)
    if not events:
        fail(f"session {session!r} has no TRACE events", code="EMPTY_TRACE")
    result = cra.verify_chain(events, expected_head=expected_head) if verify else None
    _write(events, output)
    head = events[-1].event_hash
    where = "stdout" if output is None else str(output)
    _say(("exported", "bold green"), f" {len(events)} events of session {session} to {where}; head {head}")
    if result is None:
        return
    if result.valid:
        _say(("verified", "bold green"), f": the chain of {result.event_count} events verifies")
        return
    _say(
        ("invalid", "bold red"),
        f": {result.error} at index {result.error_at} (sequence {result.sequence}); "
        f"{result.event_count} of {len(events)} events checked",
    )
    raise typer.Exit(EXIT_FAILURE)
