"""``cra trace tail``: print a session's TRACE events, and with ``-f`` follow it live until it ends.

Two sources, one output:

- a server (``--url`` or ``CRA_URL``): ``-f`` follows the WebSocket stream ``/v1/traces/stream``
  (docs/streaming.md), resuming after the last event when the server asks it to (1013), restarts (1012) or
  the connection drops; without ``-f`` one ``GET /v1/traces/{session_id}`` (NDJSON) returns what is stored
  now. The API key (``--api-key`` or ``CRA_API_KEY``) goes in the ``X-API-Key`` header;
- local storage (``--storage``, default ``sqlite:///cra.db``): read directly, and polled with ``-f``. Reading
  a SQLite file a running ``cra serve`` writes is safe (WAL: readers never block the writer).

Human output is one line per event (sequence, timestamp, event type, the payload in short), coloured on a
terminal; ``--json`` prints each event's canonical JSON line, exactly as stored (NDJSON).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import sys
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import typer

import cra
from cra.errors import (
    CRAError,
    ForbiddenError,
    InternalError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    SessionNotFoundError,
    UnauthorizedError,
    UnavailableError,
)

from ._output import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Output, fail, fail_cra
from ._remote import ApiKeyOption

__all__ = ["DEFAULT_STORAGE", "ENV_URL", "tail_command"]

DEFAULT_STORAGE = "sqlite:///cra.db"
"""What ``cra serve`` writes by default, in the working directory."""
ENV_URL = "CRA_URL"
"""The server's base URL when ``--url`` is not given (and ``--storage`` is not either)."""

POLL_INTERVAL_SECONDS = 0.2
"""How often ``-f`` on local storage looks for new events."""
PAGE_SIZE = 1000
"""Most events read from local storage at once (a long session is printed in pages, not loaded whole)."""
RECONNECT_ATTEMPTS = 10
"""Reconnections in a row, without receiving an event in between, before ``-f`` gives up (on a server that
keeps answering "try again later", or stays down after a restart): about 25 s of trying."""
_RETRY_CODES = frozenset({1012, 1013})  # service restart, try again later: resume from the last event
_RECONNECT_DELAY = (0.1, 5.0)  # first and largest wait before reconnecting (doubling in between)
_HTTP_TIMEOUT = 30.0
_PAYLOAD_WIDTH = 160  # characters of payload summary on a human line
_VALUE_WIDTH = 48  # characters of one payload value in that summary
_ENDED = "session.ended"
_NDJSON = "application/x-ndjson"

Event = tuple[str, dict[str, Any]]
"""One event as a source yields it: its canonical JSON line and the parsed object."""


class _TailError(Exception):
    """A failure that is not the runtime's (a usage error, a missing file, an unreachable server): reported
    with its own code and exit status."""

    def __init__(self, message: str, code: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.exit_code = exit_code


def _usage(message: str) -> _TailError:
    return _TailError(message, "USAGE", EXIT_USAGE)


def _unreachable(message: str) -> _TailError:
    return _TailError(message, "CONNECTION_FAILED")


def _missing_extra() -> _TailError:
    return _TailError("--url needs the server extra: pip install 'cra[server]'", "MISSING_DEPENDENCY")


def _wait(seconds: float) -> None:
    """Sleep between polls and reconnections (a seam for the tests)."""
    time.sleep(seconds)


# --- local storage ------------------------------------------------------------------------------------------


def _check_storage_url(url: str) -> None:
    """Refuse storage that cannot hold another process's trace, and a file or directory that does not exist
    (opening it would quietly create an empty one and report an unknown session)."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "memory":
        raise _usage("memory:// storage lives inside one process; give the server's storage or --url")
    if scheme == "sqlite":
        from .._sqlite import parse_sqlite_url

        try:
            path, _sync = parse_sqlite_url(url)
        except ValueError as exc:
            raise _usage(str(exc)) from None
        if not path.is_file():
            raise _TailError(f"no SQLite file at {path}", "STORAGE_NOT_FOUND")
    elif scheme == "jsonl":
        parts = urlsplit(url)
        directory = Path(parts.netloc + parts.path)
        if not directory.is_dir():
            raise _TailError(f"no trace directory at {directory}", "STORAGE_NOT_FOUND")


def _ended_at(storage: cra.TraceStorage, session_id: str, sequence: int) -> bool:
    """True when the event at ``sequence`` is ``session.ended`` (following from there would wait forever)."""
    events = storage.read(session_id, since_sequence=sequence - 1, limit=1)
    return bool(events) and events[0].sequence == sequence and events[0].event_type == _ENDED


def storage_events(url: str, session_id: str, since: int, *, follow: bool) -> Generator[Event, None, None]:
    """Events after ``since`` from local storage; with ``follow``, then new ones until ``session.ended``."""
    try:
        storage = cra.open_storage(url)
    except ValueError as exc:  # an unknown scheme or a malformed URL
        raise _usage(f"--storage: {exc}") from None
    try:
        try:
            head = storage.head(session_id)
        except ValueError as exc:  # a session id no file name can hold (jsonl)
            raise InvalidRequestError(str(exc)) from None
        if head is None:
            raise SessionNotFoundError(f"no session {session_id!r} in {url}")
        if since > head[0]:
            raise InvalidRequestError(f"--since {since} is past the session's last event ({head[0]})")
        if follow and since >= 0 and _ended_at(storage, session_id, since):
            return
        last = since
        while True:
            events = storage.read(session_id, since_sequence=last, limit=PAGE_SIZE)
            for event in events:
                yield event.to_json().decode("utf-8"), event.to_dict()
                last = event.sequence
                if event.event_type == _ENDED:
                    return
            if len(events) < PAGE_SIZE:
                if not follow:
                    return
                _wait(POLL_INTERVAL_SECONDS)
    finally:
        storage.close()


# --- a server -----------------------------------------------------------------------------------------------


def _base_url(url: str) -> tuple[str, str]:
    """The server's base URL as (http form, ws form), without a trailing slash."""
    parts = urlsplit(url)
    pairs = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    if parts.scheme not in pairs or not parts.netloc:
        raise _usage(f"--url must be http(s)://host[:port], not {url!r}")
    path = parts.path.rstrip("/")
    http_scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    http = urlunsplit((http_scheme, parts.netloc, path, "", ""))
    ws = urlunsplit((pairs[parts.scheme], parts.netloc, path, "", ""))
    return http, ws


def _headers(api_key: str | None) -> dict[str, str]:
    return {"X-API-Key": api_key} if api_key else {}


def http_events(url: str, session_id: str, since: int, api_key: str | None) -> Generator[Event, None, None]:
    """What a server has stored now for the session, after ``since`` (one NDJSON ``GET``)."""
    try:
        import httpx

        from cra.client import error_from_body
    except ImportError:
        raise _missing_extra() from None

    base, _ws = _base_url(url)
    target = f"{base}/v1/traces/{quote(session_id, safe='')}"
    headers = {**_headers(api_key), "Accept": _NDJSON}
    try:
        with (
            httpx.Client(timeout=_HTTP_TIMEOUT, headers=headers) as client,
            client.stream("GET", target, params={"since_sequence": since}) as response,
        ):
            if response.status_code != 200:
                raise error_from_body(response.status_code, response.read())
            for line in response.iter_lines():
                if line:
                    yield line, json.loads(line)
    except httpx.HTTPError as exc:
        raise _unreachable(f"cannot read {target}: {exc}") from None


def _close_error(code: int, reason: str) -> CRAError:
    """The CRA error a stream's close code stands for (docs/streaming.md)."""
    kinds: dict[int, Callable[[str], CRAError]] = {
        4400: InvalidRequestError,
        4401: UnauthorizedError,
        4403: ForbiddenError,
        4404: NotFoundError,
        4429: RateLimitedError,
        1013: UnavailableError,
        1011: InternalError,
    }
    kind = kinds.get(code)
    if kind is None:
        return CRAError(f"the server closed the stream (code {code}{': ' + reason if reason else ''})")
    return kind(reason or f"the server closed the stream (code {code})")


def websocket_events(
    url: str, session_id: str, since: int, api_key: str | None
) -> Generator[Event, None, None]:
    """Events after ``since`` over the WebSocket stream, live, until ``session.ended``.

    When the server says "try again later" (1013: this client fell behind, or its storage is busy), restarts
    (1012), or the connection drops, the stream is resumed after the last event received, so nothing is missed
    and nothing printed twice; the wait doubles each time no event came in between, and after
    ``RECONNECT_ATTEMPTS`` such tries the error is reported. A server that cannot be reached at all the first
    time is an error at once (a wrong URL should not look like a hang).
    """
    try:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
        from websockets.sync.client import connect
    except ImportError:
        raise _missing_extra() from None

    _http, base = _base_url(url)
    last = since
    failures = 0
    connected = False
    while True:
        target = f"{base}/v1/traces/stream?{urlencode({'session_id': session_id, 'since_sequence': last})}"
        problem: Exception
        try:
            # close_timeout: on Ctrl-C, do not wait long for the server's goodbye.
            with connect(target, additional_headers=_headers(api_key), close_timeout=2) as ws:
                connected = True
                while True:
                    message = ws.recv()
                    text = message if isinstance(message, str) else message.decode("utf-8")
                    event = json.loads(text)
                    yield text, event
                    last = event["sequence"]
                    failures = 0
        except ConnectionClosed as exc:
            if exc.rcvd is None:
                problem = _unreachable(f"the connection to {base} was lost")
            elif exc.rcvd.code == 1000:
                return  # the session ended
            elif exc.rcvd.code in _RETRY_CODES:
                problem = _close_error(exc.rcvd.code, exc.rcvd.reason)
            else:
                raise _close_error(exc.rcvd.code, exc.rcvd.reason) from None
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            if not connected or isinstance(exc, InvalidURI):
                raise _unreachable(f"cannot connect to {base}: {exc}") from None
            problem = _unreachable(f"cannot reconnect to {base}: {exc}")  # e.g. while it restarts
        if failures >= RECONNECT_ATTEMPTS:
            raise problem
        _wait(min(_RECONNECT_DELAY[0] * 2**failures, _RECONNECT_DELAY[1]))
        failures += 1


# --- output -------------------------------------------------------------------------------------------------


def _style(event_type: str) -> str:
    """The colour of an event type on a terminal: refusals red, successes green, what needs a look yellow."""
    last = event_type.rsplit(".", 1)[-1]
    if event_type == "trace.gap" or last in {"denied", "violated", "failed", "rejected"}:
        return "bold red"
    if last in {"approved", "executed", "granted", "completed", "cached"}:
        return "green"
    if last in {"requested", "redacted"}:
        return "yellow"
    if event_type.startswith("session."):
        return "bold cyan"
    return "blue"


def _value(value: Any) -> str:
    """One payload value, short: long nested values become a count, long strings are cut."""
    if isinstance(value, str) and value and not any(c.isspace() or c in '"=' for c in value):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if len(text) <= _VALUE_WIDTH:
        return text
    if isinstance(value, list):
        return f"[{len(value)} items]"
    if isinstance(value, dict):
        return f"{{{len(value)} keys}}"
    return text[: _VALUE_WIDTH - 3] + "..."


def summary(payload: dict[str, Any], width: int = _PAYLOAD_WIDTH) -> str:
    """A payload in one short line: ``key=value`` pairs, strings bare when they can be, cut at ``width``."""
    text = " ".join(f"{key}={_value(value)}" for key, value in payload.items())
    return text if len(text) <= width else text[: width - 3] + "..."


class _Printer:
    """Writes the events that pass the ``--type`` filter, one line each, flushed (``| grep`` sees them live)."""

    def __init__(self, *, json_mode: bool, types: Sequence[str]) -> None:
        self.json_mode = json_mode
        self.types = tuple(types)
        self.out = None if json_mode else Output()
        self.printed = 0

    def wanted(self, event_type: str) -> bool:
        return not self.types or any(fnmatch.fnmatchcase(event_type, t) for t in self.types)

    def emit(self, line: str, event: dict[str, Any]) -> None:
        event_type = str(event.get("event_type", ""))
        if not self.wanted(event_type):
            return
        if self.out is None:
            sys.stdout.write(line + "\n")
        else:
            payload = event.get("payload")
            self.out.line(
                (f"{event.get('sequence', '?'):>6}", "dim"),
                "  ",
                (str(event.get("timestamp", "")), "dim"),
                "  ",
                (f"{event_type:<26}", _style(event_type)),
                "  ",
                summary(payload) if isinstance(payload, dict) else "",
            )
        sys.stdout.flush()
        self.printed += 1


def _source(
    session: str, *, follow: bool, url: str | None, storage: str | None, api_key: str | None, since: int
) -> Generator[Event, None, None]:
    """Where the events come from, by the options and the environment (``_TailError`` for bad usage)."""
    if url is not None and storage is not None:
        raise _usage("give --url or --storage, not both")
    if url is None and storage is None:
        url = os.environ.get(ENV_URL) or None  # an explicit --storage wins over the environment
    if url is not None:
        _base_url(url)  # a malformed URL is a usage error, found before anything is printed
        return (
            websocket_events(url, session, since, api_key)
            if follow
            else http_events(url, session, since, api_key)
        )
    location = storage or DEFAULT_STORAGE
    _check_storage_url(location)
    return storage_events(location, session, since, follow=follow)


def _quiet_stdout() -> None:
    """After a broken pipe (``| head``): point stdout at /dev/null so the interpreter's final flush does not
    print a second error."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


# --- the command --------------------------------------------------------------------------------------------


def tail_command(
    session: Annotated[
        str,
        typer.Option(
            "--session", "-s", metavar="ID", help="The session whose events to print.", show_default=False
        ),
    ],
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep printing new events until the session ends (or Ctrl-C)."),
    ] = False,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            "-t",
            metavar="TYPE",
            help="Only events of this type; a glob works (action.*). Repeat for several.",
            show_default=False,
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            metavar="URL",
            help=f"A cra serve base URL (http://host:port); default ${ENV_URL}. Not with --storage.",
            show_default=False,
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            metavar="URL",
            help=f"Local trace storage to read instead of a server (default {DEFAULT_STORAGE}).",
            show_default=False,
        ),
    ] = None,
    api_key: ApiKeyOption = None,
    since: Annotated[
        int,
        typer.Option(
            "--since", metavar="N", min=-1, help="Start after this sequence number (-1: from the start)."
        ),
    ] = -1,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON event per line (NDJSON), exactly as stored.")
    ] = False,
) -> None:
    """Print a session's TRACE events; with -f, follow it live until it ends.

    Reads a server (--url or $CRA_URL; -f uses the WebSocket stream and resumes by itself if the server
    asks it to reconnect) or local storage (--storage, default sqlite:///cra.db; -f polls it). One line per
    event: sequence, timestamp, event type and the payload in short; --json prints each event's JSON line
    exactly as stored. Exit 0 when done (or on Ctrl-C), 1 on an error (unknown session, refused credentials,
    server unreachable), 2 on a usage error.

    \b
    Example:
      cra trace tail -s 0193a5c2-7b1e-7c3a-9f10-2b9d4c1e8a77
      cra trace tail -f -s 0193a5c2-... --url http://127.0.0.1:8420 --type 'action.*'
      CRA_API_KEY=cra_... cra trace tail -f -s 0193a5c2-... --url https://cra.example.com --json
    """
    printer = _Printer(json_mode=json_output, types=types or ())
    try:
        events = _source(session, follow=follow, url=url, storage=storage, api_key=api_key, since=since)
    except _TailError as exc:
        fail(exc.message, code=exc.code, json_mode=json_output, exit_code=exc.exit_code)
    try:
        for line, event in events:
            printer.emit(line, event)
    except CRAError as exc:
        fail_cra(exc, json_mode=json_output)
    except _TailError as exc:
        fail(exc.message, code=exc.code, json_mode=json_output, exit_code=exc.exit_code)
    except ValueError as exc:  # a line that is not JSON: not a CRA server, or a damaged file
        fail(f"not a TRACE event: {exc}", code="BAD_EVENT", json_mode=json_output)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_OK) from None  # Ctrl-C is how a follow normally stops
    except BrokenPipeError:
        _quiet_stdout()
        raise typer.Exit(EXIT_OK) from None
    finally:
        events.close()  # release the storage or the connection now, even when stopped early
