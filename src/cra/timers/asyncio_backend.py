"""A timer backend on an asyncio event loop: the loop's own timer (``call_at``) wakes it, no thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Self

from ._heap import HeapScheduling, TimerHeap, run_callback
from .base import TimerCallback
from .errors import TimersClosedError

__all__ = ["AsyncioTimers"]

_US = 1_000_000


class AsyncioTimers(HeapScheduling):
    """Timers whose callbacks run on an event loop, one at a time, in due order.

    Create it inside a running loop (``AsyncioTimers()``) or pass the loop (``AsyncioTimers(loop)``). Due
    times follow the loop's monotonic clock (``loop.time()``). The backend keeps its own heap and arms one
    ``loop.call_at`` handle for the earliest due time. Scheduling and cancelling are thread-safe: from
    another thread the handle is re-armed through ``loop.call_soon_threadsafe``.

    Callbacks are plain functions called on the loop; they must not block. For async work, start a task
    from the callback (``asyncio.get_running_loop().create_task(...)``).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(
                    "AsyncioTimers() without a loop must be created inside a running event loop; "
                    "pass loop= otherwise"
                ) from None
        self.loop = loop
        self._lock = threading.Lock()  # guards the heap, the armed handle and _closed
        self._running = threading.Lock()  # held on the loop while callbacks run; close() waits on it
        self._heap = TimerHeap()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_due = 0
        self._closed = False

    # --- TimerBackend ---------------------------------------------------------------------------------

    def cancel(self, timer_id: str) -> bool:
        # the armed handle may now point at a cancelled timer; _fire then finds nothing due and re-arms
        with self._lock:
            return self._heap.cancel(timer_id)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._heap.clear()
            handle, self._handle = self._handle, None
        if handle is not None:
            if self._on_loop():
                handle.cancel()
            else:
                with contextlib.suppress(RuntimeError):  # a closed loop runs nothing any more
                    self.loop.call_soon_threadsafe(handle.cancel)
        if not self._on_loop():
            with self._running:  # a callback running on the loop thread finishes first
                pass

    def stats(self) -> dict[str, int]:
        with self._lock:
            return self._heap.stats()

    # --- internals ------------------------------------------------------------------------------------

    def _now_us(self) -> int:
        return round(self.loop.time() * _US)

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def _add(self, delay_us: int, callback: TimerCallback, interval_us: int | None, name: str) -> str:
        with self._lock:
            if self._closed:
                raise TimersClosedError("the timer backend is closed")
            timer = self._heap.add(self._now_us() + delay_us, callback, interval_us, name)
        if self._on_loop():
            self._arm()
        else:
            self.loop.call_soon_threadsafe(self._arm)
        return timer.timer_id

    def _arm(self) -> None:
        """(On the loop.) Make the armed handle match the earliest due time."""
        with self._lock:
            due = None if self._closed else self._heap.next_due()
            if self._handle is not None:
                if due is not None and due == self._armed_due:
                    return
                self._handle.cancel()
                self._handle = None
            if due is not None:
                self._armed_due = due
                self._handle = self.loop.call_at(due / _US, self._fire)

    def _fire(self) -> None:
        """(On the loop.) Run everything due, then re-arm."""
        with self._lock:
            self._handle = None
            # the loop may wake a clock-resolution early: the armed due time counts as reached
            now = max(self._now_us(), self._armed_due)
        with self._running:
            while True:
                with self._lock:
                    timer = None if self._closed else self._heap.pop_due(now)
                if timer is None:
                    break
                run_callback(self._heap, timer)
        self._arm()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AsyncioTimers(scheduled={len(self._heap)})"
