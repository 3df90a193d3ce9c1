"""The MINOOTS wire: timestamps and durations as the service writes and takes them, a small REST client
(urllib, retries, auth errors), and a webhook receiver (http.server). ``MinootsTimers`` builds on these."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from http.client import HTTPException
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..clock import parse_timestamp
from .base import delay_to_us
from .errors import TimerServiceAuthError, TimerServiceError, TimerServiceUnavailableError

__all__ = [
    "FIRED_STATUSES",
    "MAX_DURATION_MS",
    "WEBHOOK_PATH",
    "MinootsClient",
    "duration_ms",
    "parse_minoots_timestamp",
    "start_webhook_server",
    "stop_http_server",
]

MAX_DURATION_MS = 30 * 24 * 3600 * 1000
"""The longest duration MINOOTS accepts (30 days)."""

FIRED_STATUSES = frozenset({"fired", "settled"})
WEBHOOK_PATH = "/minoots/webhook"
_MAX_WEBHOOK_BYTES = 1 << 20


def parse_minoots_timestamp(text: str) -> int:
    """A MINOOTS timestamp as epoch microseconds. The service writes ``Z`` or ``+00:00`` with up to nine
    fraction digits; digits past the microsecond are dropped. ``ValueError`` for anything without a zone."""
    return parse_timestamp(text)


def duration_ms(seconds: float, what: str = "delay_seconds") -> int:
    """Seconds as the positive whole milliseconds MINOOTS takes (rounded up, so a timer never fires early);
    ``ValueError`` for zero, negative, non-finite or more than 30 days (the service would answer 500)."""
    ms = -(-delay_to_us(seconds, what, allow_zero=False) // 1000)
    if ms > MAX_DURATION_MS:
        raise ValueError(f"{what} must be at most 30 days for MINOOTS, not {seconds!r} seconds")
    return ms


class MinootsClient:
    """The REST calls ``MinootsTimers`` makes, with ``x-api-key`` and ``x-tenant-id`` on every one.

    5xx answers and network errors are retried ``retries`` times, waiting ``backoff * 2**attempt`` seconds
    on ``stop`` (so closing interrupts the waits and ends the retries), then raise
    ``TimerServiceUnavailableError``; 401/403 raise ``TimerServiceAuthError`` at once.
    """

    def __init__(
        self,
        base_url: str,
        *,
        tenant_id: str,
        api_key: str,
        requested_by: str,
        timeout: float,
        retries: int,
        backoff: float,
        stop: threading.Event,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        if retries < 0 or backoff < 0 or not timeout > 0:
            raise ValueError("retries and backoff must not be negative, timeout must be positive")
        self.base_url = base_url.rstrip("/")
        self.tenant_id = tenant_id
        self.requested_by = requested_by
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._api_key = api_key
        self._stop = stop
        # environment proxies apply, except to loopback (a local MINOOTS or the test fake)
        loopback = parsed.hostname in ("127.0.0.1", "localhost", "::1")
        self._opener = urllib.request.build_opener(*([urllib.request.ProxyHandler({})] if loopback else []))
        self._lock = threading.Lock()
        self.requests = 0
        self.retried = 0

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /timers``: the created timer, checked to carry an id and a readable ``fireAt``."""
        status, data = self.call("POST", "/timers", {"tenantId": self.tenant_id, **body})
        if status not in (200, 201) or not isinstance(data, dict):
            raise TimerServiceError(f"MINOOTS refused the timer ({status}): {_message(data)}")
        try:
            if not isinstance(data["id"], str) or not data["id"]:
                raise ValueError("no id")
            parse_minoots_timestamp(data["fireAt"])
        except (KeyError, ValueError) as exc:
            raise TimerServiceError(
                f"MINOOTS answered a timer without a usable id or fireAt: {exc}"
            ) from None
        return data

    def get(self, minoots_id: str) -> tuple[int, Any]:
        """``GET /timers/{id}``: (status, timer or error document)."""
        return self.call("GET", f"/timers/{urllib.parse.quote(minoots_id, safe='')}")

    def cancel(self, minoots_id: str, reason: str = "cancelled by CRA") -> int:
        """``POST /timers/{id}/cancel``: 200 (cancelled now or before, or already fired) or 404."""
        body = {"tenantId": self.tenant_id, "requestedBy": self.requested_by, "reason": reason}
        status, data = self.call("POST", f"/timers/{urllib.parse.quote(minoots_id, safe='')}/cancel", body)
        if status not in (200, 404):
            raise TimerServiceError(
                f"MINOOTS refused to cancel timer {minoots_id} ({status}): {_message(data)}"
            )
        return status

    def healthy(self) -> bool:
        """True when ``GET /healthz`` answers ``{"status": "ok"}`` (one attempt, no exception)."""
        request = urllib.request.Request(self.base_url + "/healthz", headers=self._headers())
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                document = _decode(response.read())
        except (urllib.error.URLError, HTTPException, OSError):
            return False
        return isinstance(document, dict) and document.get("status") == "ok"

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request with retries: (status, decoded JSON or None) for any status below 500 but 401/403."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = self._headers()
        if data is not None:
            headers["content-type"] = "application/json"
        failure = ""
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
            with self._lock:
                self.requests += 1
            status: int | None = None
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    status, raw = response.status, response.read()
            except urllib.error.HTTPError as exc:
                status, raw = exc.code, exc.read()
                exc.close()
            except (urllib.error.URLError, HTTPException, OSError) as exc:
                failure = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            if status is not None:
                decoded = _decode(raw)
                if status in (401, 403):
                    raise TimerServiceAuthError(
                        f"MINOOTS refused the API key ({status}: {_message(decoded)}); "
                        f"check api_key and its role for tenant {self.tenant_id!r}"
                    )
                if status < 500:
                    return status, decoded
                failure = f"HTTP {status}: {_message(decoded)}"
            if attempt == self.retries or self._stop.wait(self.backoff * 2**attempt):
                break
            with self._lock:
                self.retried += 1
        raise TimerServiceUnavailableError(f"MINOOTS {method} {path} failed: {failure}")

    def _headers(self) -> dict[str, str]:
        # both on every call: newer builds authenticate by key, every build scopes reads by tenant
        return {"x-api-key": self._api_key, "x-tenant-id": self.tenant_id, "accept": "application/json"}


def start_webhook_server(
    handle: Callable[[Mapping[str, str], bytes], int], host: str, port: int
) -> tuple[ThreadingHTTPServer, str]:
    """Serve ``POST /minoots/webhook`` on a daemon thread, answering with ``handle(headers, body)``'s status;
    returns the server (``shutdown()`` + ``server_close()`` stop it) and the webhook URL."""

    class _WebhookHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if urllib.parse.urlsplit(self.path).path != WEBHOOK_PATH:
                self._answer(404)
                return
            try:
                length = int(self.headers.get("content-length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= _MAX_WEBHOOK_BYTES:
                self._answer(413 if length > _MAX_WEBHOOK_BYTES else 400)
                return
            self._answer(handle(dict(self.headers.items()), self.rfile.read(length)))

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), _WebhookHandler)
    server.daemon_threads = True  # a handler thread may close the backend: server_close must not join it
    threading.Thread(target=server.serve_forever, name="cra-minoots-webhooks", daemon=True).start()
    return server, f"http://{host}:{server.server_port}{WEBHOOK_PATH}"


def stop_http_server(server: ThreadingHTTPServer) -> None:
    """Stop a server started with ``serve_forever`` on another thread, promptly: ``shutdown()`` alone waits
    for the loop's next poll (up to half a second), so a loopback connection wakes the loop until it has
    stopped."""
    stopper = threading.Thread(target=server.shutdown, name="http-server-stop", daemon=True)
    stopper.start()
    address = server.server_address[:2]
    while stopper.is_alive():
        with contextlib.suppress(OSError):
            socket.create_connection(address, timeout=1).close()  # type: ignore[arg-type]
        stopper.join(0.05)
    server.server_close()


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _message(document: Any) -> str:
    if isinstance(document, dict) and isinstance(document.get("message"), str):
        return str(document["message"])
    return "no message"
