"""Pure logic of the dual store: dirty set, monitor, L1, flush policy, recovery records,
lifecycle transitions, and the flusher's retry and isolation over a failing table store."""

from __future__ import annotations

import time

import pytest

from msstore.state import (
    ConsistencyMonitor,
    HealthStatus,
    percentile,
)


def test_monitor_percentiles_violations_and_health() -> None:
    assert percentile([], 95) == 0.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    monitor = ConsistencyMonitor(window=0.2)
    monitor.record([0.01] * 95)
    assert monitor.health() is HealthStatus.HEALTHY
    monitor.record([0.5] * 10)
    stats = monitor.stats()
    assert stats["violations"] == 10 and stats["writes"] == 105
    assert stats["p95_ms"] == 500.0 and stats["status"] == "DEGRADED"
    monitor.pending_since(time.monotonic() - 60)
    assert monitor.health() is HealthStatus.UNHEALTHY
    monitor.pending_since(None)
    monitor.reset()
    assert monitor.stats()["writes"] == 0
    with pytest.raises(ValueError, match="positive"):
        ConsistencyMonitor(window=0)
