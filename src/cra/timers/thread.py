"""A timer backend on one scheduler thread and a heap (SPEC 6): not a thread per timer."""

from __future__ import annotations

import threading
from typing import Self

from ..clock import Clock, SystemClock
from ._heap import HeapScheduling, TimerHeap, run_callback
from .base import TimerCallback
from .errors import TimersClosedError

__all__ = ["ThreadTimers"]

_US = 1_000_000


class ThreadTimers(HeapScheduling):
    """Timers run by one daemon thread, started at the first schedule.

    Due times are read from the injected clock (``now_us``, the wall clock by default); between due times
    the thread sleeps in ``Condition.wait(timeout)`` and is woken early by every schedule, cancel and close,
    then re-reads the clock. A wall-clock jump is therefore noticed at the next wake-up. Callbacks run on
    the scheduler thread, one at a time; a slow callback delays the timers due after it (they then run
    late, and repeating ones skip whole missed intervals).

    ``close()`` waits for a callback that is running (unless called from one) and joins the thread.
    """

    def __init__(self, clock: Clock | None = None, *, thread_name: str = "cra-timers") -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._thread_name = thread_name
        self._cond = threading.Condition(threading.Lock())  # guards the heap, _closed and _thread
        self._heap = TimerHeap()
        self._closed = False
        self._thread: threading.Thread | None = None

    # --- TimerBackend ---------------------------------------------------------------------------------

    def cancel(self, timer_id: str) -> bool:
        with self._cond:
            cancelled = self._heap.cancel(timer_id)
            if cancelled:
                self._cond.notify()
            return cancelled

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            thread = self._thread
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join()  # waits for a running callback: none runs after close returns

    def stats(self) -> dict[str, int]:
        with self._cond:
            return self._heap.stats()

    # --- the scheduler thread -------------------------------------------------------------------------

    def _add(self, delay_us: int, callback: TimerCallback, interval_us: int | None, name: str) -> str:
        with self._cond:
            if self._closed:
                raise TimersClosedError("the timer backend is closed")
            timer = self._heap.add(self.clock.now_us() + delay_us, callback, interval_us, name)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
                self._thread.start()
            else:
                self._cond.notify()
            return timer.timer_id

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    now = self.clock.now_us()
                    timer = self._heap.pop_due(now)
                    if timer is not None:
                        break
                    due = self._heap.next_due()
                    self._cond.wait(None if due is None else (due - now) / _US)
            run_callback(self._heap, timer)  # outside the lock: callbacks may schedule and cancel

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ThreadTimers({self.clock!r}, scheduled={len(self._heap)})"
