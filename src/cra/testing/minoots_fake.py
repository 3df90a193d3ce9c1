"""An in-process fake of the MINOOTS control plane, on loopback, for testing ``MinootsTimers``.

It follows the contract in docs/timers.md (status codes and shapes included: a bad duration answers 500,
as the real service does). Time comes from a clock, a ``ManualClock`` by default, and timers fire only
when the test calls ``fire_due()`` (or ``advance(seconds)``), so nothing sleeps::

    with FakeMinoots() as fake:
        timers = MinootsTimers(fake.url, tenant_id="t1", api_key=fake.api_key, clock=fake.clock, ...)
        timers.schedule_once(10, callback)
        fake.advance(10)  # the timer fires, its webhook is POSTed before this returns

Differences from the real service: state is in memory; webhooks are POSTed synchronously by ``fire_due``
(one attempt, failures recorded in ``webhooks``); a bad or non-positive integer duration answers 500 too.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPException
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from ..clock import Clock, ManualClock, format_timestamp
from ..timers._minoots_api import MAX_DURATION_MS, parse_minoots_timestamp, stop_http_server

__all__ = ["FakeMinoots"]

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_LIVE = ("scheduled", "armed")
_TIMESTAMP_STYLES = ("ms", "offset", "nanos")

Answer = tuple[int, Any]


@dataclass(slots=True)
class _Stored:
    public: dict[str, Any]  # the timer object as the API shows it
    fire_at_us: int
    webhook_url: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook the fake tried to POST: the timer, the URL, and the HTTP status (None: no answer)."""

    timer_id: str
    url: str
    status: int | None
    error: str = ""


class FakeMinoots:
    """The fake control plane. ``api_key=None`` accepts calls without a key (like older builds).

    - ``lifecycle="classic"``: ``scheduled`` → ``fired``; ``"armed"``: ``armed`` → ``fired`` → ``settled``
      (settled once the webhook was attempted).
    - ``timestamps``: ``"ms"`` (``2025-01-01T00:00:10.000Z``, like JavaScript), ``"offset"``
      (microseconds and ``+00:00``) or ``"nanos"`` (nine digits and ``Z``).
    - ``drop_webhooks=True`` loses every webhook; adding a timer id to ``drop`` loses that one's.

    Inspect ``requests`` (every ``(method, path)`` received), ``webhooks`` (``Delivery`` records) and
    ``timer(id)``.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        api_key: str | None = "test-key",
        drop_webhooks: bool = False,
        lifecycle: str = "classic",
        timestamps: str = "ms",
        host: str = "127.0.0.1",
    ) -> None:
        if lifecycle not in ("classic", "armed"):
            raise ValueError("lifecycle must be 'classic' or 'armed'")
        if timestamps not in _TIMESTAMP_STYLES:
            raise ValueError(f"timestamps must be one of {', '.join(_TIMESTAMP_STYLES)}")
        self.clock: Clock = clock if clock is not None else ManualClock()
        self.api_key = api_key
        self.drop_webhooks = drop_webhooks
        self.drop: set[str] = set()
        self.lifecycle = lifecycle
        self.timestamps = timestamps
        self.host = host
        self.requests: list[tuple[str, str]] = []
        self.webhooks: list[Delivery] = []
        self._timers: dict[str, _Stored] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Listen on a free loopback port (idempotent)."""
        if self._server is None:
            server = ThreadingHTTPServer((self.host, 0), _handler_for(self))
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, name="fake-minoots", daemon=True).start()
            self._server = server
        return self

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (the fake must be started)."""
        if self._server is None:
            raise RuntimeError("FakeMinoots is not started; call start() or use it as a context manager")
        return f"http://{self.host}:{self._server.server_port}"

    def close(self) -> None:
        """Stop listening (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            stop_http_server(server)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- driving time ---------------------------------------------------------------------------------

    def advance(self, seconds: float) -> list[str]:
        """Move the (manual) clock forward, then ``fire_due()``."""
        if not isinstance(self.clock, ManualClock):
            raise TypeError("advance() needs the fake to run on a ManualClock")
        self.clock.advance(seconds)
        return self.fire_due()

    def fire_due(self) -> list[str]:
        """Fire every live timer whose ``fireAt`` has come, in ``fireAt`` order: mark it fired and POST its
        webhook (unless dropped). Returns the ids fired. The webhooks are sent without holding the fake's
        lock, so a webhook receiver may call the fake back."""
        now = self.clock.now_us()
        with self._lock:
            due = sorted(
                (t for t in self._timers.values() if t.public["status"] in _LIVE and t.fire_at_us <= now),
                key=lambda t: (t.fire_at_us, t.public["createdAt"]),
            )
            for stored in due:
                stored.public["status"] = "fired"
                stored.public["firedAt"] = self._format(now)
            fired = [(s, dict(s.public)) for s in due]
        for stored, snapshot in fired:
            timer_id = snapshot["id"]
            if stored.webhook_url is not None and not self.drop_webhooks and timer_id not in self.drop:
                self._deliver(stored.webhook_url, snapshot)
            if self.lifecycle == "armed":
                with self._lock:
                    stored.public["status"] = "settled"
        return [snapshot["id"] for _, snapshot in fired]

    def forget(self, timer_id: str) -> None:
        """Lose a timer, as a service that lost its state would: it no longer fires and answers 404."""
        with self._lock:
            self._timers.pop(timer_id, None)

    def timer(self, timer_id: str) -> dict[str, Any]:
        """A copy of a timer as the API shows it (KeyError if unknown)."""
        with self._lock:
            return copy.deepcopy(self._timers[timer_id].public)

    def timers(self) -> list[dict[str, Any]]:
        """Copies of every timer, by ``fireAt``."""
        with self._lock:
            ordered = sorted(self._timers.values(), key=lambda t: (t.fire_at_us, t.public["createdAt"]))
            return [copy.deepcopy(t.public) for t in ordered]

    # --- the API --------------------------------------------------------------------------------------

    def dispatch(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """Answer one request (the HTTP server calls this; tests may too): ``(status, JSON document)``."""
        split = urllib.parse.urlsplit(target)
        path = split.path.rstrip("/") or "/"
        query = urllib.parse.parse_qs(split.query)
        lowered = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            self.requests.append((method, target))
        if method == "GET" and path == "/healthz":
            return 200, {"status": "ok", "service": "minoots-control-plane"}
        if self.api_key is not None:
            key = lowered.get("x-api-key")
            if not key:
                return 401, {"message": "API key required"}
            if key != self.api_key:
                return 403, {"message": "Invalid API key"}
        parts = path.strip("/").split("/")
        if parts[0] != "timers" or len(parts) > 3:
            return 404, {"message": "Not found"}
        if len(parts) == 1:
            if method == "POST":
                return self._create(body)
            if method == "GET":
                return self._list(query)
        elif len(parts) == 2 and method == "GET":
            return self._get(parts[1], lowered)
        elif len(parts) == 3 and parts[2] == "cancel" and method == "POST":
            return self._cancel(parts[1], lowered, body)
        else:
            return 404, {"message": "Not found"}
        return 405, {"message": "Method not allowed"}

    def _create(self, body: bytes) -> Answer:
        document = _json_object(body)
        if document is None:
            return 400, {"message": "Invalid JSON body"}
        problems = [
            {"path": [field], "message": f"{field} is required"}
            for field in ("tenantId", "requestedBy")
            if not isinstance(document.get(field), str) or not document.get(field)
        ]
        if problems:
            return 400, {"message": "Validation failed", "details": problems}
        now = self.clock.now_us()
        duration = document.get("duration")
        if duration is not None:
            ms = _duration_ms(duration)
            if ms is None or ms > MAX_DURATION_MS:
                return 500, {"message": f"Invalid duration: {duration!r}"}
        elif document.get("fireAt") is not None:
            try:
                fire_at = parse_minoots_timestamp(document["fireAt"])
            except ValueError:
                return 500, {"message": "Invalid fireAt"}
            if fire_at <= now:
                return 500, {"message": "fireAt must be in the future"}
            ms = -(-(fire_at - now) // 1000)
            if ms > MAX_DURATION_MS:
                return 500, {"message": "Duration exceeds 30 days"}
        else:
            return 400, {"message": "Either duration or fireAt is required"}
        timer_id = str(uuid.uuid4())
        fire_at_us = now + ms * 1000  # recomputed as now + duration, as the service does
        public: dict[str, Any] = {
            "id": timer_id,
            "tenantId": document["tenantId"],
            "name": document.get("name") or timer_id,
            "status": "armed" if self.lifecycle == "armed" else "scheduled",
            "durationMs": ms,
            "createdAt": self._format(now),
            "fireAt": self._format(fire_at_us),
            "requestedBy": document["requestedBy"],
            "metadata": document.get("metadata") or {},
            "labels": document.get("labels") or {},
        }
        with self._lock:
            self._timers[timer_id] = _Stored(public, fire_at_us, _webhook_url(document.get("actionBundle")))
            return 201, dict(public)

    def _get(self, timer_id: str, headers: Mapping[str, str]) -> Answer:
        tenant = headers.get("x-tenant-id")
        if not tenant:
            return 400, {"message": "x-tenant-id header required"}
        with self._lock:
            stored = self._timers.get(timer_id)
            if stored is None or stored.public["tenantId"] != tenant:
                return 404, {"message": "Timer not found"}
            return 200, dict(stored.public)

    def _list(self, query: Mapping[str, list[str]]) -> Answer:
        tenant = (query.get("tenantId") or [""])[0]
        if not tenant:
            return 400, {"message": "tenantId query parameter required"}
        with self._lock:
            mine = [t for t in self._timers.values() if t.public["tenantId"] == tenant]
            mine.sort(key=lambda t: (t.fire_at_us, t.public["createdAt"]))
            return 200, [dict(t.public) for t in mine]

    def _cancel(self, timer_id: str, headers: Mapping[str, str], body: bytes) -> Answer:
        document = _json_object(body) if body else {}
        if document is None:
            return 400, {"message": "Invalid JSON body"}
        tenant = headers.get("x-tenant-id") or document.get("tenantId")
        with self._lock:
            stored = self._timers.get(timer_id)
            if stored is None or stored.public["tenantId"] != tenant:
                return 404, {"message": "Timer not found"}
            public = stored.public
            if public["status"] in _LIVE:  # cancelled or fired timers come back unchanged
                public["status"] = "cancelled"
                public["cancelledAt"] = self._format(self.clock.now_us())
                if isinstance(document.get("reason"), str):
                    public["cancelReason"] = document["reason"]
                if isinstance(document.get("requestedBy"), str):
                    public["cancelledBy"] = document["requestedBy"]
            return 200, dict(public)

    # --- internals ------------------------------------------------------------------------------------

    def _deliver(self, url: str, timer: dict[str, Any]) -> None:
        body = json.dumps({"timer": timer, "event": "webhook"}).encode("utf-8")
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "content-type": "application/json",
                "x-minoots-timer-id": timer["id"],
                "x-minoots-tenant-id": timer["tenantId"],
            },
        )
        status: int | None = None
        error = ""
        try:
            with self._opener.open(request, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except (urllib.error.URLError, HTTPException, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.webhooks.append(Delivery(timer["id"], url, status, error))

    def _format(self, us: int) -> str:
        text = format_timestamp(us)  # YYYY-MM-DDTHH:MM:SS.ffffffZ
        if self.timestamps == "ms":
            return text[:23] + "Z"
        if self.timestamps == "offset":
            return text[:-1] + "+00:00"
        return text[:-1] + "000Z"


def _duration_ms(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is not None and int(match.group(1)) > 0:
            return int(match.group(1)) * _UNIT_MS[match.group(2)]
    return None


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(body) if body else None
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _webhook_url(bundle: Any) -> str | None:
    actions = bundle.get("actions") if isinstance(bundle, dict) else None
    for action in actions if isinstance(actions, list) else []:
        if not isinstance(action, dict):
            continue
        parameters = action.get("parameters")
        if action.get("kind") == "webhook" and isinstance(parameters, dict):
            url = parameters.get("url")
            if isinstance(url, str) and url:
                return url
    return None


def _handler_for(fake: FakeMinoots) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            try:
                length = int(self.headers.get("content-length", "0"))
            except ValueError:
                length = 0
            body = self.rfile.read(length) if length > 0 else b""
            status, document = fake.dispatch(self.command, self.path, dict(self.headers.items()), body)
            payload = json.dumps(document).encode("utf-8")
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return _Handler
