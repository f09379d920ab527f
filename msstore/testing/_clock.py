"""A clock that moves only when a test moves it."""

from __future__ import annotations

import math
import threading
from typing import Final

__all__ = ["T0", "FakeClock"]

T0: Final = 1_900_000_000.0
"""FakeClock's default start (Unix seconds, later than any real data)."""


class FakeClock:
    """Unix seconds that move only when told (thread-safe).

    Pass it wherever a store takes ``clock=``: leases, schedules, expiries and backoffs then
    follow :meth:`advance` instead of the wall clock, so a test of a one-hour lease takes no
    time and cannot race the machine.

    >>> clock = FakeClock(start=100.0)
    >>> clock.advance(5)
    105.0
    >>> clock()
    105.0
    """

    def __init__(self, start: float = T0) -> None:
        self._now = _seconds(start, "start")
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FakeClock({self._now!r})"

    def __call__(self) -> float:
        """The current time (Unix seconds)."""
        with self._lock:
            return self._now

    @property
    def now(self) -> float:
        """The current time, as :meth:`__call__` returns it."""
        return self()

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (>= 0); return the new time."""
        step = _seconds(seconds, "seconds")
        if step < 0:
            raise ValueError(f"a clock only moves forward; got {seconds!r} seconds")
        with self._lock:
            self._now += step
            return self._now


def _seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    return float(value)
