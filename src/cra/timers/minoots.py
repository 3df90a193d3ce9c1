"""A timer backend that keeps CRA's timers in an external MINOOTS timer service (SPEC 6, 10).

The service's contract is summarised in docs/timers.md. In short: ``POST /timers`` creates a one-shot
timer (duration in milliseconds, at most 30 days) and the service assigns its id; a firing reaches CRA as a
webhook (at most once: no retry, no signature) and is confirmed by polling ``GET /timers/{id}``; there are
no repeating timers, so a repeat is a chain of one-shots on a fixed grid.

Only the standard library is used for HTTP (``urllib.request`` out, ``http.server`` in).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any, Self

from ..clock import Clock, SystemClock
from ._minoots_api import (
    FIRED_STATUSES,
    MAX_DURATION_MS,
    MinootsClient,
    duration_ms,
    parse_minoots_timestamp,
    start_webhook_server,
    stop_http_server,
)
from .base import TimerCallback, check_callback
from .errors import TimersClosedError, TimerServiceError, TimerServiceUnavailableError

__all__ = ["MAX_DURATION_MS", "MinootsTimers", "duration_ms", "parse_minoots_timestamp"]

logger = logging.getLogger("cra.timers")

_FINISHED_MEMORY = 10_000  # MINOOTS ids remembered after firing or cancel, to answer duplicates with 200


@dataclass(slots=True, eq=False)
class _Remote:
    """One CRA timer; a repeating one moves from MINOOTS id to MINOOTS id as its one-shots fire."""

    cra_id: str
    name: str
    callback: TimerCallback
    interval_us: int | None
    minoots_id: str | None = None  # None while a repeat's next one-shot is being (or failed to be) created
    target_us: int = 0  # the grid instant this one-shot stands for (repeats advance it by the interval)
    poll_after_us: int = 0  # the fireAt MINOOTS reported: reconcile polls from then on
    cancelled: bool = False
    arming: bool = False


class MinootsTimers:
    """Timers kept in MINOOTS::

        timers = MinootsTimers("http://minoots:4000", tenant_id="acme", api_key=KEY)
        timers.serve_webhooks(host="0.0.0.0", port=8421)  # or webhook_url= of your own server
        TimerManager(runtime, timers, sweep_interval=5).start()

    - **Scheduling** creates a one-shot timer (``POST /timers``, duration in whole milliseconds, validated
      here: MINOOTS answers 500 to a bad one). CRA's own timer id and name travel in ``metadata`` and
      ``labels``; the backend maps CRA ids to MINOOTS ids. 401/403 raise ``TimerServiceAuthError``; 5xx and
      network errors are retried ``retries`` times with exponential ``backoff`` and then raise
      ``TimerServiceUnavailableError``.
    - **Firing** arrives by webhook when ``webhook_url`` is set: pass the request to ``handle_webhook``
      (``serve_webhooks`` runs a small server that does). Webhooks are at most once, so a poller calls
      ``reconcile()`` every ``poll_interval`` seconds (None: only when you call it): every timer past its
      ``fireAt`` on ``clock`` is read back and fired if MINOOTS says ``fired`` or ``settled``. A MINOOTS timer
      runs its callback at most once, whichever path sees it first.
    - **Repeating** timers are emulated: when one fires, the next one-shot is created for the previous due
      instant + interval (a fixed grid: no drift; whole missed intervals are skipped), before the callback
      runs. If that fails, ``reconcile()`` retries it.
    - **Cancel** suppresses the callback locally at once and cancels in MINOOTS; True unless the id is
      unknown here, already done, or unknown to MINOOTS (404). A failed remote cancel is counted in
      ``stats()["errors"]``; the callback stays suppressed.

    Callbacks run on the thread that delivered the firing (a webhook request or the poller), one at a time.
    Ordering across timers is the order in which firings reach CRA. Resolution is one millisecond.
    """

    def __init__(
        self,
        base_url: str,
        *,
        tenant_id: str,
        api_key: str,
        requested_by: str = "cra",
        webhook_url: str | None = None,
        poll_interval: float | None = 5.0,
        clock: Clock | None = None,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.2,
    ) -> None:
        for what, value in (("tenant_id", tenant_id), ("api_key", api_key), ("requested_by", requested_by)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{what} must be a non-empty string")
        if poll_interval is not None and not poll_interval > 0:
            raise ValueError("poll_interval must be positive (or None: reconcile only when called)")
        self._stop = threading.Event()
        self.client = MinootsClient(
            base_url,
            tenant_id=tenant_id,
            api_key=api_key,
            requested_by=requested_by,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            stop=self._stop,
        )
        self.base_url = self.client.base_url
        self.tenant_id = tenant_id
        self.requested_by = requested_by
        self.webhook_url = webhook_url
        self.poll_interval = poll_interval
        self.clock: Clock = clock if clock is not None else SystemClock()
        # Lock order: _create_lock, then _lock. _run_lock is never taken while holding either.
        self._lock = threading.Lock()  # the maps, the counters and _closed
        self._create_lock = threading.Lock()  # held across POST /timers until the new id is registered
        self._run_lock = threading.Lock()  # callbacks run one at a time
        self._local = threading.local()  # marks the thread that is running a callback
        self._timers: dict[str, _Remote] = {}  # CRA id -> timer
        self._by_minoots: dict[str, _Remote] = {}  # MINOOTS id -> timer, for live one-shots
        self._finished: OrderedDict[str, None] = OrderedDict()  # MINOOTS ids fired or cancelled
        self._closed = False
        self._poller: threading.Thread | None = None
        self._server: ThreadingHTTPServer | None = None
        self._counts = dict.fromkeys(
            (
                "fired",
                "errors",
                "cancelled",
                "missed",
                "webhooks",
                "duplicates",
                "reconciled",
                "lost",
            ),
            0,
        )

    # --- TimerBackend ---------------------------------------------------------------------------------

    def schedule_once(self, delay_seconds: float, callback: TimerCallback, *, name: str = "") -> str:
        """Create a one-shot MINOOTS timer; the returned id is CRA's (a UUID)."""
        ms = duration_ms(delay_seconds, "delay_seconds")
        return self._schedule(ms, callback, None, name)

    def schedule_repeating(self, interval_seconds: float, callback: TimerCallback, *, name: str = "") -> str:
        """Create the first one-shot of a repeating timer (the interval is rounded up to milliseconds)."""
        ms = duration_ms(interval_seconds, "interval_seconds")
        return self._schedule(ms, callback, ms * 1000, name)

    def cancel(self, timer_id: str) -> bool:
        with self._lock:
            entry = self._timers.pop(timer_id, None) if isinstance(timer_id, str) else None
            if entry is None:
                return False
            entry.cancelled = True
            minoots_id, entry.minoots_id = entry.minoots_id, None
            if minoots_id is not None:
                self._by_minoots.pop(minoots_id, None)
                self._remember_finished(minoots_id)
            self._counts["cancelled"] += 1
        if minoots_id is None:
            return True
        try:
            status = self.client.cancel(minoots_id)
        except TimerServiceError:
            self._count("errors")
            logger.exception("cancelling MINOOTS timer %s failed; its callback stays suppressed", minoots_id)
            return True
        return status != 404

    def close(self) -> None:
        """Stop the poller and the webhook server, cancel every timer here and in MINOOTS (one attempt each;
        after the service proves unavailable the rest are left to fire into the void), wait for a running
        callback."""
        with self._lock:
            already = self._closed
            self._closed = True
            entries = list(self._timers.values())
            self._timers.clear()
            self._by_minoots.clear()
            for entry in entries:
                entry.cancelled = True
            self._counts["cancelled"] += len(entries)
        self._stop.set()
        in_callback = getattr(self._local, "in_callback", False)
        if not already:
            poller = self._poller
            # from a callback, the poller may be waiting for this callback to end: do not wait for it
            if poller is not None and poller is not threading.current_thread() and not in_callback:
                poller.join()
            for entry in entries:
                if entry.minoots_id is None:
                    continue
                try:
                    self.client.cancel(entry.minoots_id)
                except TimerServiceUnavailableError:
                    self._count("errors")
                    break
                except TimerServiceError:
                    self._count("errors")
            server, self._server = self._server, None
            if server is not None:
                stop_http_server(server)
        if not in_callback:
            with self._run_lock:
                pass

    def stats(self) -> dict[str, int]:
        """``scheduled``, ``fired``, ``errors``, ``cancelled``, ``missed``, and for MINOOTS: ``webhooks``
        received, ``duplicates`` ignored, ``reconciled`` (fired by polling), ``lost`` (unknown to MINOOTS
        or cancelled there), ``requests`` made and ``retries``."""
        with self._lock:
            counts = {"scheduled": len(self._timers), **self._counts}
        return {**counts, "requests": self.client.requests, "retries": self.client.retried}

    # --- firing ---------------------------------------------------------------------------------------

    def handle_webhook(self, headers: Mapping[str, str], body: bytes) -> int:
        """Handle a MINOOTS webhook; returns the HTTP status to answer with: 204 the callback ran (or was
        due and raised), 200 a duplicate or a timer cancelled here, 400 a body that is not a MINOOTS
        webhook, 404 a timer this backend does not know (another tenant, another process, or closed)."""
        lowered = {str(k).lower(): v for k, v in headers.items()}
        try:
            document = json.loads(body)
        except (ValueError, TypeError):
            return 400
        timer = document.get("timer") if isinstance(document, dict) else None
        minoots_id = timer.get("id") if isinstance(timer, dict) else None
        if not isinstance(timer, dict) or not isinstance(minoots_id, str) or not minoots_id:
            return 400
        header_id = lowered.get("x-minoots-timer-id")
        if header_id is not None and header_id != minoots_id:
            return 400
        tenant = lowered.get("x-minoots-tenant-id", timer.get("tenantId"))
        if tenant is not None and tenant != self.tenant_id:
            return 404
        self._count("webhooks")
        if timer.get("status") == "cancelled":
            return 200
        return self._fire(minoots_id)

    def reconcile(self) -> int:
        """Poll MINOOTS for every timer past its ``fireAt``: fire those it reports ``fired``/``settled``
        whose webhook did not arrive, forget those it cancelled or does not know, and retry creating the
        next one-shot of repeats where that failed. Returns how many callbacks ran."""
        now = self.clock.now_us()
        with self._lock:
            if self._closed:
                return 0
            overdue = sorted(
                ((e.target_us, mid, e) for mid, e in self._by_minoots.items() if e.poll_after_us <= now),
                key=lambda item: item[:2],
            )
            stalled = [
                e
                for e in self._timers.values()
                if e.interval_us is not None and e.minoots_id is None and not e.arming
            ]
            for entry in stalled:
                entry.arming = True  # claimed for this call: a concurrent reconcile leaves it alone
        for entry in stalled:
            self._arm_next(entry, entry.target_us)
        ran = 0
        for _, minoots_id, entry in overdue:
            try:
                status, data = self.client.get(minoots_id)
            except TimerServiceError:
                self._count("errors")
                logger.exception("polling MINOOTS timer %s failed", minoots_id)
                continue
            remote = data.get("status") if status == 200 and isinstance(data, dict) else None
            if remote in FIRED_STATUSES:
                if self._fire(minoots_id) == 204:
                    ran += 1
                    self._count("reconciled")
            elif status == 404 or remote == "cancelled":
                self._lose(entry, minoots_id)
            elif status != 200:
                self._count("errors")
        return ran

    def _fire(self, minoots_id: str) -> int:
        with self._lock:
            claimed = self._claim(minoots_id)
        if claimed is None and self._create_lock.acquire(timeout=self.client.timeout):
            # a webhook can overtake the answer to its own POST /timers: the id is registered before the
            # create lock is released. Bounded wait: should the service hold that answer until the webhook
            # is answered, this gives up (404) and reconcile() fires the timer later.
            try:
                with self._lock:
                    claimed = self._claim(minoots_id)
            finally:
                self._create_lock.release()
        if isinstance(claimed, int):
            return claimed
        if claimed is None:
            return 404
        entry, due_us = claimed
        if entry.interval_us is not None:
            self._arm_next(entry, due_us + entry.interval_us)
        self._run(entry)
        return 204

    def _claim(self, minoots_id: str) -> tuple[_Remote, int] | int | None:
        """(Holding _lock.) Take a live MINOOTS timer for firing: the timer and its due instant; 200 for
        one already fired or cancelled; None when unknown."""
        if self._closed:
            return 404
        if minoots_id in self._finished:
            self._counts["duplicates"] += 1
            return 200
        entry = self._by_minoots.pop(minoots_id, None)
        if entry is None:
            return None
        self._remember_finished(minoots_id)
        entry.minoots_id = None
        if entry.interval_us is None:
            self._timers.pop(entry.cra_id, None)
        else:
            entry.arming = True
        return entry, entry.target_us

    def _run(self, entry: _Remote) -> None:
        with self._run_lock:
            with self._lock:
                if self._closed or entry.cancelled:
                    return
            self._local.in_callback = True
            try:
                entry.callback()
            except Exception:
                self._count("errors")
                logger.exception("timer %s (%s) raised", entry.cra_id, entry.name or "unnamed")
            finally:
                self._local.in_callback = False
                self._count("fired")

    def _lose(self, entry: _Remote, minoots_id: str) -> None:
        """MINOOTS cancelled the timer or forgot it: a one-shot is gone; a repeat re-arms on its grid."""
        with self._lock:
            if self._by_minoots.get(minoots_id) is not entry:
                return
            del self._by_minoots[minoots_id]
            self._remember_finished(minoots_id)
            self._counts["lost"] += 1
            entry.minoots_id = None
            if entry.interval_us is None:
                self._timers.pop(entry.cra_id, None)
                return
            entry.arming = True
        self._arm_next(entry, entry.target_us + entry.interval_us)

    # --- scheduling in MINOOTS ------------------------------------------------------------------------

    def _schedule(self, ms: int, callback: TimerCallback, interval_us: int | None, name: str) -> str:
        check_callback(callback)
        if not isinstance(name, str):
            raise TypeError("name must be a string")
        if self._closed:
            raise TimersClosedError("the timer backend is closed")
        entry = _Remote(str(uuid.uuid4()), name, callback, interval_us)
        with self._create_lock:
            timer = self._create(entry, ms)
            with self._lock:
                closed = self._closed
                if not closed:
                    self._register(entry, timer, None)
        if closed:
            with contextlib.suppress(TimerServiceError):
                self.client.cancel(timer["id"])
            raise TimersClosedError("the timer backend was closed while the timer was being created")
        self._start_poller()
        return entry.cra_id

    def _arm_next(self, entry: _Remote, target_us: int) -> None:
        """Create the next one-shot of a repeating timer for the grid instant ``target_us`` (or the first
        grid instant still ahead). On failure the timer stays unarmed and ``reconcile`` retries."""
        assert entry.interval_us is not None
        now = self.clock.now_us()
        if target_us <= now:
            skipped = (now - target_us) // entry.interval_us + 1
            target_us += skipped * entry.interval_us
            self._count("missed", skipped)
        entry.arming = True
        try:
            with self._create_lock:
                timer = self._create(entry, max(1, -(-(target_us - now) // 1000)))
                with self._lock:
                    stale = entry.cancelled or self._closed
                    if not stale:
                        self._register(entry, timer, target_us)
        except TimerServiceError:
            with self._lock:
                entry.target_us, entry.arming = target_us, False
                self._counts["errors"] += 1
            logger.exception("re-arming repeating timer %s failed; reconcile() retries", entry.cra_id)
            return
        if stale:
            try:
                self.client.cancel(timer["id"])
            except TimerServiceError:
                self._count("errors")

    def _register(self, entry: _Remote, timer: dict[str, Any], target_us: int | None) -> None:
        """(Holding _lock.) Record a created MINOOTS timer for ``entry``."""
        fire_at = parse_minoots_timestamp(timer["fireAt"])
        entry.minoots_id = timer["id"]
        entry.target_us = fire_at if target_us is None else target_us
        entry.poll_after_us = fire_at
        entry.arming = False
        self._timers[entry.cra_id] = entry
        self._by_minoots[timer["id"]] = entry

    def _create(self, entry: _Remote, ms: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "requestedBy": self.requested_by,
            "name": entry.name or "cra-timer",
            "duration": ms,
            "metadata": {
                "craTimerId": entry.cra_id,
                "craTimerName": entry.name,
                **({} if entry.interval_us is None else {"craIntervalMs": entry.interval_us // 1000}),
            },
            "labels": {"app": "cra", "cra-timer-id": entry.cra_id, "cra-timer-name": entry.name},
        }
        if self.webhook_url is not None:
            action = {
                "id": "cb",
                "kind": "webhook",
                "parameters": {"url": self.webhook_url, "method": "POST"},
            }
            body["actionBundle"] = {"actions": [action]}
        return self.client.create(body)

    def healthy(self) -> bool:
        """True when MINOOTS answers ``GET /healthz`` with ``{"status": "ok"}``."""
        return self.client.healthy()

    def serve_webhooks(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start a small HTTP server (a daemon thread) that passes ``POST /minoots/webhook`` to
        ``handle_webhook``; returns its URL and uses it as ``webhook_url`` if none was set. Call it before
        scheduling: timers created earlier carry the previous webhook URL (or none). Stopped by ``close()``."""
        with self._lock:
            if self._closed:
                raise TimersClosedError("the timer backend is closed")
            if self._server is not None:
                raise RuntimeError("serve_webhooks() was already called")
            self._server, url = start_webhook_server(self.handle_webhook, host, port)
        if self.webhook_url is None:
            self.webhook_url = url
        return url

    # --- internals ------------------------------------------------------------------------------------

    def _start_poller(self) -> None:
        if self.poll_interval is None or self._poller is not None:
            return
        with self._lock:
            if self._poller is not None or self._closed:
                return
            self._poller = threading.Thread(target=self._poll, name="cra-minoots-poller", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        assert self.poll_interval is not None
        while not self._stop.wait(self.poll_interval):
            try:
                self.reconcile()
            except Exception:
                self._count("errors")
                logger.exception("reconciling MINOOTS timers failed")

    def _remember_finished(self, minoots_id: str) -> None:
        self._finished[minoots_id] = None
        if len(self._finished) > _FINISHED_MEMORY:
            self._finished.popitem(last=False)

    def _count(self, key: str, by: int = 1) -> None:
        with self._lock:
            self._counts[key] += by

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"MinootsTimers({self.base_url!r}, tenant_id={self.tenant_id!r}, scheduled={len(self._timers)})"
        )
