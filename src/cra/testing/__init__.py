"""Test doubles shipped with CRA, so tests of code built on it never patch time and never sleep::

    from cra.testing import FakeMinoots, ManualClock, ManualTimers

- ``ManualClock``: a clock that moves only when told (also ``cra.ManualClock``);
- ``ManualTimers``: a timer backend driven by that clock (also ``cra.timers.ManualTimers``);
- ``FakeMinoots``: an in-process fake of the MINOOTS timer service on loopback, for ``MinootsTimers``.
"""

from ..clock import ManualClock
from ..timers.manual import ManualTimers
from .minoots_fake import Delivery, FakeMinoots

__all__ = ["Delivery", "FakeMinoots", "ManualClock", "ManualTimers"]
