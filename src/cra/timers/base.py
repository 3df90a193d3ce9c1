"""The timer backend contract (SPEC 6): the whole interface every backend implements.

A backend is passed to whatever needs timers (``TimerManager(runtime, backend)``) the way httpx passes a
transport to its client; tests pass ``ManualTimers`` and move time by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["TimerBackend", "TimerCallback"]

TimerCallback = Callable[[], None]
"""What a timer runs: a callable without arguments. Its return value is ignored."""

_US = 1_000_000


@runtime_checkable
class TimerBackend(Protocol):
    """Runs callbacks later, once or repeatedly.

    Duties of every backend:

    - **One at a time, in due order.** A backend runs its callbacks one after another, never two at once;
      timers due at the same instant run in the order they were scheduled. A callback may schedule and
      cancel timers (on this backend too) without deadlocking.
    - **Errors are contained.** An exception raised by a callback is caught, logged on the ``cra.timers``
      logger and counted (``stats()["errors"]``); it never stops the backend or other timers, and a repeating
      timer keeps repeating.
    - **No drift.** A repeating timer's next run is due ``interval`` after the previous *due* time, not after
      the callback finished, so slow callbacks do not shift the schedule. A backend that wakes later than
      one whole interval runs the timer once and skips the missed runs (``stats()["missed"]``) instead of
      bursting to catch up.
    - **Cancel is idempotent.** ``cancel`` returns True when it stopped a timer whose callback had not
      started (for a repeating timer: stopped future runs), False for an unknown id or a one-shot timer that
      already ran or was already cancelled.
    - **Close is final.** ``close`` is idempotent, cancels every timer, and once it returns no callback runs
      (it waits for a callback already running, unless called from that callback). Scheduling on a closed
      backend raises ``TimersClosedError``.

    Delays and intervals are seconds (floats allowed). A delay may be 0 ("as soon as possible") on local
    backends; intervals must be positive.
    """

    def schedule_once(self, delay_seconds: float, callback: TimerCallback, *, name: str = "") -> str:
        """Run ``callback`` once, ``delay_seconds`` from now; returns the timer id."""
        ...

    def schedule_repeating(self, interval_seconds: float, callback: TimerCallback, *, name: str = "") -> str:
        """Run ``callback`` every ``interval_seconds``, the first time one interval from now; returns the
        timer id."""
        ...

    def cancel(self, timer_id: str) -> bool:
        """Stop a timer; False if the id is unknown or the timer is already done."""
        ...

    def close(self) -> None:
        """Cancel every timer and stop; idempotent. No callback runs after this returns."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters: at least ``scheduled`` (live timers), ``fired`` (callbacks run), ``errors``
        (callbacks that raised), ``cancelled`` and ``missed`` (repeats skipped after a late wake-up)."""
        ...


def delay_to_us(value: float, what: str, *, allow_zero: bool) -> int:
    """Seconds as integer microseconds, refusing what a timer cannot mean (negative, NaN, infinite)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{what} must be a finite, {bound} number of seconds, not {value!r}")
    us = round(value * _US)
    if us == 0 and not allow_zero:
        us = 1  # a positive interval shorter than a microsecond still has to move forward
    return us


def check_callback(callback: object) -> None:
    if not callable(callback):
        raise TypeError("callback must be callable")
