"""msstore's own counters and histograms, recorded where the work happens and read by the
Prometheus collector (:mod:`msstore.ops.metrics`) at scrape time.

Recording costs a clock read, a bisect and a lock; :func:`disable` turns every record into one
attribute read (what the flush benchmark compares). Components that report figures of their own
(``stats()``) register in :data:`TRACKED` instead and are read only when scraped; a weak set, so
tracking keeps nothing alive.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Final

__all__ = [
    "DURATION_BUCKETS",
    "LAG_BUCKETS",
    "TASK_BUCKETS",
    "TRACKED",
    "Counter",
    "Histogram",
    "counter",
    "counters",
    "disable",
    "enable",
    "enabled",
    "histogram",
    "histograms",
    "track",
    "tracked",
]

DURATION_BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
LAG_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TASK_BUCKETS: Final = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class _Switch:
    on = True


_SWITCH = _Switch()


def enabled() -> bool:
    """Whether records are kept (they are, unless :func:`disable` was called)."""
    return _SWITCH.on


def enable() -> None:
    """Keep records again."""
    _SWITCH.on = True


def disable() -> None:
    """Drop records (the counters keep what they have)."""
    _SWITCH.on = False


class Histogram:
    """Observations in fixed buckets (upper bounds, seconds), with their count and sum."""

    __slots__ = ("_lock", "bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: over every bound (+Inf)
        self.sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        """Add one observation (nothing while records are off)."""
        if not _SWITCH.on:
            return
        i = bisect.bisect_left(self.bounds, value)
        with self._lock:
            self.counts[i] += 1
            self.sum += value

    def observe_many(self, values: Sequence[float]) -> None:
        """Add several observations under one lock."""
        if not _SWITCH.on or not values:
            return
        slots = [bisect.bisect_left(self.bounds, v) for v in values]
        with self._lock:
            for i in slots:
                self.counts[i] += 1
            self.sum += sum(values)

    def snapshot(self) -> tuple[list[tuple[float, int]], int, float]:
        """Cumulative ``(bound, count)`` pairs (the last bound ``inf``), the count, the sum."""
        with self._lock:
            counts, total = list(self.counts), self.sum
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
            running += n
            out.append((bound, running))
        return out, running, total


class Counter:
    """A number that only goes up."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (nothing while records are off)."""
        if not _SWITCH.on:
            return
        with self._lock:
            self.value += amount


_lock = threading.Lock()
_histograms: dict[tuple[str, tuple[str, ...]], Histogram] = {}
_counters: dict[tuple[str, tuple[str, ...]], Counter] = {}


def histogram(name: str, *labels: str, bounds: Sequence[float] = DURATION_BUCKETS) -> Histogram:
    """The histogram ``name`` for these label values (made on first use; call sites keep it)."""
    key = (name, labels)
    found = _histograms.get(key)
    if found is None:
        with _lock:
            found = _histograms.setdefault(key, Histogram(bounds))
    return found


def counter(name: str, *labels: str) -> Counter:
    """The counter ``name`` for these label values (made on first use)."""
    key = (name, labels)
    found = _counters.get(key)
    if found is None:
        with _lock:
            found = _counters.setdefault(key, Counter())
    return found


def histograms(name: str) -> Iterator[tuple[tuple[str, ...], Histogram]]:
    """Every histogram named ``name``, by label values."""
    with _lock:
        found = [(labels, h) for (n, labels), h in _histograms.items() if n == name]
    yield from found


def counters(name: str) -> Iterator[tuple[tuple[str, ...], Counter]]:
    """Every counter named ``name``, by label values."""
    with _lock:
        found = [(labels, c) for (n, labels), c in _counters.items() if n == name]
    yield from found


TRACKED: Final[dict[str, weakref.WeakSet[object]]] = {}
"""Live components by kind (``store``, ``relay``, ``queue``, ``pools``), read when scraped."""


def track(kind: str, component: object) -> None:
    """Let the metrics collector read ``component``'s ``stats()`` while it lives."""
    with _lock:
        TRACKED.setdefault(kind, weakref.WeakSet()).add(component)


def tracked(kind: str) -> list[object]:
    """The live components of ``kind``."""
    with _lock:
        return list(TRACKED.get(kind, ()))
