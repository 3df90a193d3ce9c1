"""The timer heap the local backends share: due times in integer microseconds, ties broken by scheduling
order, lazy deletion of cancelled entries. Not thread-safe: each backend guards it with its own lock and
runs the callbacks it pops outside that lock."""

from __future__ import annotations

import abc
import heapq
import itertools
import logging
from dataclasses import dataclass, field

from .base import TimerCallback, check_callback, delay_to_us

__all__ = ["HeapScheduling", "Timer", "TimerHeap", "run_callback"]

logger = logging.getLogger("cra.timers")


@dataclass(slots=True, eq=False)
class Timer:
    timer_id: str
    name: str
    callback: TimerCallback
    due_us: int
    interval_us: int | None  # None: a one-shot timer
    cancelled: bool = False


@dataclass(slots=True)
class TimerHeap:
    """Live timers by id plus a heap of ``(due_us, seq, timer)``; a cancelled timer stays in the heap
    until it reaches the top (or until a compaction when cancelled entries outnumber live ones)."""

    _heap: list[tuple[int, int, Timer]] = field(default_factory=list)
    _live: dict[str, Timer] = field(default_factory=dict)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    fired: int = 0
    errors: int = 0
    cancelled: int = 0
    missed: int = 0

    def add(self, due_us: int, callback: TimerCallback, interval_us: int | None, name: str) -> Timer:
        check_callback(callback)
        if not isinstance(name, str):
            raise TypeError("name must be a string")
        timer = Timer(f"timer-{next(self._ids)}", name, callback, due_us, interval_us)
        self._live[timer.timer_id] = timer
        heapq.heappush(self._heap, (due_us, next(self._seq), timer))
        return timer

    def cancel(self, timer_id: str) -> bool:
        timer = self._live.pop(timer_id, None) if isinstance(timer_id, str) else None
        if timer is None:
            return False
        timer.cancelled = True
        self.cancelled += 1
        if len(self._heap) > 64 and len(self._heap) > 2 * len(self._live):
            self._heap = [item for item in self._heap if not item[2].cancelled]
            heapq.heapify(self._heap)
        return True

    def next_due(self) -> int | None:
        """The earliest due time of a live timer, or None when there is none."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now_us: int) -> Timer | None:
        """Take the earliest timer due at ``now_us``. A one-shot timer leaves the live set (cancelling it
        now returns False); a repeating one is put back at its next due time before its callback runs, so
        the callback may cancel it."""
        due = self.next_due()
        if due is None or due > now_us:
            return None
        _, _, timer = heapq.heappop(self._heap)
        if timer.interval_us is None:
            del self._live[timer.timer_id]
            return timer
        following = timer.due_us + timer.interval_us  # from the due time, not from now: no drift
        if following <= now_us:  # woke up late by a whole interval or more: skip, do not burst
            skipped = (now_us - following) // timer.interval_us + 1
            self.missed += skipped
            following += skipped * timer.interval_us
        fired_at = timer.due_us
        timer.due_us = following
        heapq.heappush(self._heap, (following, next(self._seq), timer))
        # the caller runs a snapshot: the live timer already carries its next due time
        return Timer(timer.timer_id, timer.name, timer.callback, fired_at, timer.interval_us)

    def clear(self) -> None:
        self.cancelled += len(self._live)
        for timer in self._live.values():
            timer.cancelled = True
        self._live.clear()
        self._heap.clear()

    def __len__(self) -> int:
        return len(self._live)

    def stats(self) -> dict[str, int]:
        return {
            "scheduled": len(self._live),
            "fired": self.fired,
            "errors": self.errors,
            "cancelled": self.cancelled,
            "missed": self.missed,
        }


def run_callback(heap: TimerHeap, timer: Timer) -> None:
    """Run one callback, containing (logging and counting) whatever it raises."""
    try:
        timer.callback()
    except Exception:
        heap.errors += 1
        logger.exception("timer %s (%s) raised", timer.timer_id, timer.name or "unnamed")
    finally:
        heap.fired += 1


class HeapScheduling(abc.ABC):
    """``schedule_once`` / ``schedule_repeating`` for the heap backends: the argument checks are shared, each
    backend adds the timer to its heap under its own locking in ``_add``."""

    def schedule_once(self, delay_seconds: float, callback: TimerCallback, *, name: str = "") -> str:
        delay = delay_to_us(delay_seconds, "delay_seconds", allow_zero=True)
        return self._add(delay, callback, None, name)

    def schedule_repeating(self, interval_seconds: float, callback: TimerCallback, *, name: str = "") -> str:
        interval = delay_to_us(interval_seconds, "interval_seconds", allow_zero=False)
        return self._add(interval, callback, interval, name)

    @abc.abstractmethod
    def _add(self, delay_us: int, callback: TimerCallback, interval_us: int | None, name: str) -> str:
        """Put a timer due ``delay_us`` from now on the heap (repeating every ``interval_us``); its id."""
