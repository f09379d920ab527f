"""Consistency lag between the KV tier and the SQL tier.

A write's lag runs from its KV acknowledgement to the SQL commit that made it durable in
PostgreSQL. :class:`ConsistencyMonitor` keeps the most recent lags in a bounded window and counts,
over its whole life, the writes whose lag exceeded the consistency window (200 ms by default).
Pure bookkeeping: the flusher feeds it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable

from msstore.errors import InvalidArgument
from msstore.records import HealthStatus

from ._stats import ConsistencyStats

__all__ = ["ConsistencyMonitor", "HealthStatus", "percentile"]


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of already sorted values, nearest-rank; 0.0 if empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class ConsistencyMonitor:
    """Lag percentiles and window violations for the writes a flusher commits (thread-safe).

    ``window`` is the consistency window in seconds; ``sample_size`` how many recent lags the
    percentiles are computed over. ``stats()`` returns a plain dict (keys documented there);
    ``health()`` is DEGRADED when p95 exceeds the window, UNHEALTHY when the oldest write still
    waiting for SQL is older than ``unhealthy_after`` seconds (SQL unreachable, say).
    """

    def __init__(
        self, *, window: float = 0.2, sample_size: int = 10_000, unhealthy_after: float = 30.0
    ) -> None:
        if window <= 0 or sample_size < 1 or unhealthy_after <= 0:
            raise InvalidArgument(
                "window, sample_size and unhealthy_after must be positive, got "
                f"{window!r}, {sample_size!r}, {unhealthy_after!r}"
            )
        self.window = window
        self.unhealthy_after = unhealthy_after
        self._lags: deque[float] = deque(maxlen=sample_size)
        self._lock = threading.Lock()
        self._writes = 0
        self._violations = 0
        self._max = 0.0
        self._oldest_pending: float | None = None

    def record(self, lags: Iterable[float]) -> None:
        """Add committed writes' lags, in seconds."""
        lags = list(lags)
        with self._lock:
            self._lags.extend(lags)
            self._writes += len(lags)
            over = [lag for lag in lags if lag > self.window]
            self._violations += len(over)
            if lags:
                self._max = max(self._max, *lags)

    def pending_since(self, first_at: float | None) -> None:
        """Tell the monitor when the oldest uncommitted write happened (``time.monotonic()``)."""
        self._oldest_pending = first_at

    def stats(self) -> ConsistencyStats:
        """``writes`` and ``violations`` (since start), ``window_ms``, over the recent sample
        ``p50_ms`` / ``p95_ms`` / ``p99_ms``, ``max_ms`` (since start), ``oldest_pending_ms``
        (age of the oldest write not yet in SQL, 0 if none) and ``status``."""
        with self._lock:
            ordered = sorted(self._lags)
            writes, violations, worst = self._writes, self._violations, self._max
        oldest = self._oldest_pending
        pending_ms = 0.0 if oldest is None else (time.monotonic() - oldest) * 1000
        p95 = percentile(ordered, 95) * 1000
        return ConsistencyStats(
            writes=writes,
            violations=violations,
            window_ms=self.window * 1000,
            p50_ms=percentile(ordered, 50) * 1000,
            p95_ms=p95,
            p99_ms=percentile(ordered, 99) * 1000,
            max_ms=worst * 1000,
            oldest_pending_ms=pending_ms,
            status=self._status(p95, pending_ms).value,
        )

    def _status(self, p95_ms: float, pending_ms: float) -> HealthStatus:
        if pending_ms > self.unhealthy_after * 1000:
            return HealthStatus.UNHEALTHY
        if p95_ms > self.window * 1000 or pending_ms > self.window * 1000:
            return HealthStatus.DEGRADED
        return HealthStatus.HEALTHY

    def health(self) -> HealthStatus:
        """HEALTHY, DEGRADED (p95 lag or the oldest pending write past the window) or UNHEALTHY
        (past 30 s), as :meth:`stats` reports."""
        stats = self.stats()
        return HealthStatus(stats["status"])

    def reset(self) -> None:
        """Forget the sample and the counters (benchmarks between runs)."""
        with self._lock:
            self._lags.clear()
            self._writes = self._violations = 0
            self._max = 0.0
