"""One event-loop timer serving many deadlines.

A timer per call costs a heap push, a cancel and the loop's clean-up of cancelled handles (each
a comparison of Python ``TimerHandle`` objects): more than the rest of a fast call. Deadlines
that mostly come later than the one already armed need no new timer: :class:`EarliestTimer`
moves its one timer only when a deadline is earlier than it, and its callback re-arms it for
whatever deadline is still open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["EarliestTimer"]


class EarliestTimer:
    """Calls ``callback()`` no later than the earliest deadline it was given (loop time)."""

    __slots__ = ("_callback", "_handle")

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None

    def at_most(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        """Make sure the callback runs by ``when`` (a ``loop.time()`` value)."""
        handle = self._handle
        if handle is None or handle.when() > when:
            if handle is not None:
                handle.cancel()
            self._handle = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._callback()
