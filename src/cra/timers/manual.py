"""A timer backend driven by a ``ManualClock``: nothing runs until the test says so, and nothing sleeps."""

from __future__ import annotations

import threading
from typing import Self

from ..clock import ManualClock, format_timestamp
from ._heap import HeapScheduling, TimerHeap, run_callback
from .base import TimerCallback, delay_to_us
from .errors import TimersClosedError

__all__ = ["ManualTimers"]


class ManualTimers(HeapScheduling):
    """Timers on a ``ManualClock``, for tests and replays::

        clock = ManualClock()
        timers = ManualTimers(clock)
        timers.schedule_repeating(1.0, tick)
        timers.advance(3)  # tick runs three times, at +1 s, +2 s and +3 s, with the clock at each instant

    ``advance(seconds)`` moves the clock forward one due time at a time and runs what is due at each, so a
    callback sees the clock at its own due time and repeats inside the span all run. ``run_due()`` runs what
    is due at the clock's current time (after the clock was moved by other means). Callbacks run on the
    calling thread. Thread-safe; one driver at a time.
    """

    def __init__(self, clock: ManualClock) -> None:
        if not isinstance(clock, ManualClock):
            raise TypeError("ManualTimers needs a cra.ManualClock (use ThreadTimers for real time)")
        self.clock = clock
        self._lock = threading.Lock()  # guards the heap and _closed
        self._drive = threading.RLock()  # one driver at a time; held while callbacks run
        self._heap = TimerHeap()
        self._closed = False

    # --- TimerBackend ---------------------------------------------------------------------------------

    def cancel(self, timer_id: str) -> bool:
        with self._lock:
            return self._heap.cancel(timer_id)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._heap.clear()
        # wait for a driver that is running a callback (re-entrant: fine from inside a callback)
        with self._drive:
            pass

    def stats(self) -> dict[str, int]:
        with self._lock:
            return self._heap.stats()

    # --- driving --------------------------------------------------------------------------------------

    def advance(self, seconds: float) -> int:
        """Move the clock forward by ``seconds``, stopping at every due time on the way to run what is due
        there; returns how many callbacks ran."""
        span = delay_to_us(seconds, "seconds", allow_zero=True)
        ran = 0
        with self._drive:
            target = self.clock.now_us() + span
            while True:
                with self._lock:
                    due = None if self._closed else self._heap.next_due()
                if due is None or due > target:
                    break
                self._move_to(due)
                ran += self.run_due()
            self._move_to(target)
        return ran

    def run_due(self) -> int:
        """Run every timer due at the clock's current time, in due order; returns how many ran."""
        ran = 0
        with self._drive:
            while True:
                with self._lock:
                    timer = None if self._closed else self._heap.pop_due(self.clock.now_us())
                if timer is None:
                    return ran
                run_callback(self._heap, timer)
                ran += 1

    def next_due_in(self) -> float | None:
        """Seconds until the next timer is due (0 if overdue), or None when nothing is scheduled."""
        with self._lock:
            due = self._heap.next_due()
        return None if due is None else max(0, due - self.clock.now_us()) / 1_000_000

    # --- internals ------------------------------------------------------------------------------------

    def _add(self, delay_us: int, callback: TimerCallback, interval_us: int | None, name: str) -> str:
        with self._lock:
            if self._closed:
                raise TimersClosedError("the timer backend is closed")
            return self._heap.add(self.clock.now_us() + delay_us, callback, interval_us, name).timer_id

    def _move_to(self, when_us: int) -> None:
        # set() to an exact instant: advance(float seconds) could round away a microsecond
        if when_us > self.clock.now_us():
            self.clock.set(format_timestamp(when_us))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ManualTimers({self.clock!r}, scheduled={len(self._heap)})"
