"""A watch feed backed by a queue: what every backend's ``watch()`` hands its caller.

The backend pushes entries with :meth:`QueueWatcher.deliver` from whatever thread or loop it
receives them on; the caller reads with ``next(timeout)`` or iterates. ``on_stop`` lets the
backend release its side (unsubscribe, forget the watcher) exactly once.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from typing import Self

from msstore.records import Entry

__all__ = ["QueueWatcher"]


class QueueWatcher:
    """A :class:`~msstore.protocols.Watcher` fed through a thread-safe queue."""

    def __init__(
        self, pattern: str, *, on_stop: Callable[[QueueWatcher], None] | None = None
    ) -> None:
        self.pattern = pattern
        self._on_stop = on_stop
        self._queue: queue.SimpleQueue[Entry | None] = queue.SimpleQueue()
        self._stopped = False

    def deliver(self, entry: Entry) -> None:
        """Hand ``entry`` to the watcher's reader (the backend's feed calls this)."""
        self._queue.put(entry)

    def next(self, timeout: float | None = None) -> Entry | None:
        """The next entry, or ``None`` after ``timeout`` seconds or once stopped and drained."""
        if self._stopped and self._queue.empty():
            return None
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def __iter__(self) -> Iterator[Entry]:
        while True:
            item = self._queue.get()
            if item is None:  # the stop sentinel
                return
            yield item

    def stop(self) -> None:
        """End the watch: the reader's ``next`` returns ``None`` from now on; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._on_stop is not None:
            self._on_stop(self)
        self._queue.put(None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
