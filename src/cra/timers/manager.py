"""The timer manager (SPEC 6): the periodic duties of a runtime, scheduled on any timer backend."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol, Self

from ..errors import RuntimeClosedError
from .base import TimerBackend, delay_to_us

__all__ = ["MaintainedRuntime", "TimerManager"]

logger = logging.getLogger("cra.timers")

_SWEEP_KEYS = ("idle_timeout", "max_lifetime", "completion_timeouts", "resolutions_forgotten")


class MaintainedRuntime(Protocol):
    """What the manager calls on a runtime (``cra.Runtime`` has all three)."""

    def sweep(self) -> dict[str, int]: ...

    def heartbeat_all(self) -> int: ...

    def flush(self, timeout: float | None = None) -> bool: ...


class TimerManager:
    """Schedules a runtime's housekeeping on a timer backend::

        with TimerManager(runtime, ThreadTimers(), heartbeat_interval=30, flush_interval=1):
            ...  # sessions time out, resolutions expire, heartbeats and flushes happen

    - ``runtime.sweep()`` every ``sweep_interval`` seconds: idle timeout and maximum lifetime of sessions,
      completion timeouts of authorised executions, forgetting long-expired resolutions and approvals, and
      pruning rate-limit windows (what runs is configured on the runtime);
    - ``runtime.heartbeat_all()`` every ``heartbeat_interval`` seconds when set (``session.heartbeat``);
    - ``runtime.flush(flush_interval)`` every ``flush_interval`` seconds when set (deferred tracing).

    An exception from the runtime is caught, logged and counted (``stats()["errors"]``); it never reaches
    the backend. Once the runtime is closed (``RuntimeClosedError``) the manager stops its timers. The
    manager does not own the backend: ``stop()`` cancels its own timers and leaves the backend open.
    """

    def __init__(
        self,
        runtime: MaintainedRuntime,
        backend: TimerBackend,
        *,
        sweep_interval: float = 1.0,
        heartbeat_interval: float | None = None,
        flush_interval: float | None = None,
    ) -> None:
        delay_to_us(sweep_interval, "sweep_interval", allow_zero=False)
        for what, value in (("heartbeat_interval", heartbeat_interval), ("flush_interval", flush_interval)):
            if value is not None:
                delay_to_us(value, what, allow_zero=False)
        self.runtime = runtime
        self.backend = backend
        self.sweep_interval = sweep_interval
        self.heartbeat_interval = heartbeat_interval
        self.flush_interval = flush_interval
        self._lock = threading.Lock()
        self._timer_ids: list[str] = []
        self._started = False
        self._counts: dict[str, int] = dict.fromkeys(
            ("sweeps", "heartbeats", "flushes", "flush_timeouts", "errors", *_SWEEP_KEYS), 0
        )

    def start(self) -> Self:
        """Schedule the duties (idempotent while running; a stopped manager can be started again)."""
        with self._lock:
            if self._started:
                return self
            jobs: list[tuple[float, Callable[[], None], str]] = [
                (self.sweep_interval, self._sweep, "cra.sweep")
            ]
            if self.heartbeat_interval is not None:
                jobs.append((self.heartbeat_interval, self._heartbeat, "cra.heartbeat"))
            if self.flush_interval is not None:
                jobs.append((self.flush_interval, self._flush, "cra.flush"))
            ids: list[str] = []
            try:
                for interval, job, name in jobs:
                    ids.append(self.backend.schedule_repeating(interval, job, name=name))
            except BaseException:
                for timer_id in ids:
                    self.backend.cancel(timer_id)
                raise
            self._timer_ids = ids
            self._started = True
            return self

    def stop(self) -> None:
        """Cancel the manager's timers; idempotent. The backend stays open."""
        with self._lock:
            ids, self._timer_ids = self._timer_ids, []
            self._started = False
        for timer_id in ids:
            try:
                self.backend.cancel(timer_id)
            except Exception:  # a remote backend may fail to cancel; its callbacks are stopped locally
                logger.exception("cancelling timer %s failed", timer_id)

    close = stop

    @property
    def running(self) -> bool:
        return self._started

    def stats(self) -> dict[str, int]:
        """Runs of each duty, what the sweeps did (sessions ended per reason, completion timeouts,
        resolutions forgotten), flushes that timed out, and errors."""
        with self._lock:
            return dict(self._counts)

    # --- the duties -----------------------------------------------------------------------------------

    def _sweep(self) -> None:
        report = self._guard(self.runtime.sweep, "sweep")
        if report is not None:
            with self._lock:
                self._counts["sweeps"] += 1
                for key in _SWEEP_KEYS:
                    self._counts[key] += int(report.get(key, 0))

    def _heartbeat(self) -> None:
        if self._guard(self.runtime.heartbeat_all, "heartbeat_all") is not None:
            with self._lock:
                self._counts["heartbeats"] += 1

    def _flush(self) -> None:
        done = self._guard(lambda: self.runtime.flush(self.flush_interval), "flush")
        if done is not None:
            with self._lock:
                self._counts["flushes"] += 1
                self._counts["flush_timeouts"] += 0 if done else 1

    def _guard(self, duty: Callable[[], Any], what: str) -> Any:
        try:
            return duty()
        except RuntimeClosedError:
            with self._lock:
                self._counts["errors"] += 1
            self.stop()  # nothing left to maintain
            return None
        except Exception:
            with self._lock:
                self._counts["errors"] += 1
            logger.exception("runtime.%s failed", what)
            return None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._started else "stopped"
        return f"TimerManager({state}, backend={type(self.backend).__name__})"
