"""Errors of the timer backends. They extend ``cra.errors`` without changing it::

    UnavailableError                       unavailable 503
    ├── TimersClosedError                  TIMERS_CLOSED              scheduling on a closed backend
    └── TimerServiceError                  TIMER_SERVICE_ERROR        MINOOTS answered something unexpected
        ├── TimerServiceUnavailableError   TIMER_SERVICE_UNAVAILABLE  5xx or no connection, after retries
        └── TimerServiceAuthError          TIMER_SERVICE_AUTH         401/403: the API key is missing or wrong
                                                                      (also a ``PermissionError``)

They are ``unavailable`` errors because, seen from a CRA caller, a dependency of the runtime failed; a
refused API key is CRA's configuration problem, never the caller's credentials, so it is not an ``AuthError``.
``cra.errors.error_class`` does not know these codes (its table is built from ``cra.errors`` alone).
"""

from __future__ import annotations

from ..errors import UnavailableError

__all__ = [
    "TimersClosedError",
    "TimerServiceAuthError",
    "TimerServiceError",
    "TimerServiceUnavailableError",
]


class TimersClosedError(UnavailableError):
    """The timer backend was closed; it schedules nothing more."""

    code = "TIMERS_CLOSED"
    recoverable = False


class TimerServiceError(UnavailableError):
    """The MINOOTS timer service answered with an unexpected status or body."""

    code = "TIMER_SERVICE_ERROR"
    recoverable = False


class TimerServiceUnavailableError(TimerServiceError):
    """The MINOOTS timer service could not be reached or kept failing (5xx) after the retries."""

    code = "TIMER_SERVICE_UNAVAILABLE"
    recoverable = True


class TimerServiceAuthError(TimerServiceError, PermissionError):
    """The MINOOTS timer service refused CRA's API key (401: none sent, 403: wrong key or role)."""

    code = "TIMER_SERVICE_AUTH"
    recoverable = False
