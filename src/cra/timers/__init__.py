"""Timers (SPEC 6): one small backend interface, four backends, and the manager that drives a runtime's
housekeeping with them::

    from cra.timers import ThreadTimers, TimerManager

    with ThreadTimers() as timers, TimerManager(runtime, timers, heartbeat_interval=30):
        serve()

Backends: ``ManualTimers`` (a ``ManualClock``, for tests), ``ThreadTimers`` (one scheduler thread),
``AsyncioTimers`` (an event loop) and ``MinootsTimers`` (an external MINOOTS timer service). See
docs/timers.md.
"""

from .asyncio_backend import AsyncioTimers
from .base import TimerBackend, TimerCallback
from .errors import TimersClosedError, TimerServiceAuthError, TimerServiceError, TimerServiceUnavailableError
from .manager import MaintainedRuntime, TimerManager
from .manual import ManualTimers
from .minoots import MinootsTimers, parse_minoots_timestamp
from .thread import ThreadTimers

__all__ = [
    "AsyncioTimers",
    "MaintainedRuntime",
    "ManualTimers",
    "MinootsTimers",
    "parse_minoots_timestamp",
    "ThreadTimers",
    "TimerBackend",
    "TimerCallback",
    "TimerManager",
    "TimersClosedError",
    "TimerServiceAuthError",
    "TimerServiceError",
    "TimerServiceUnavailableError",
]
