"""The shapes of the dual store's ``stats()``: typed dictionaries, one key per figure."""

from __future__ import annotations

from typing import TypedDict

__all__ = [
    "CacheStats",
    "ConsistencyStats",
    "FailureInfo",
    "FlushStats",
    "ManagerStats",
    "RecoveryStats",
]


class FailureInfo(TypedDict):
    """A write the SQL tier could not take (:class:`~msstore.records.FlushFailure` as a dict)."""

    bucket: str
    key: str
    revision: int
    reason: str
    seen_at: float


class FlushStats(TypedDict):
    """The flusher's counters since it started."""

    batches: int  #: upsert batches written
    rows_written: int  #: rows the SQL tier stored
    rows_skipped: int  #: rows the version guard refused (SQL had newer)
    rows_removed: int  #: tombstones written
    retries: int  #: failed batches retried
    failed: int  #: writes the SQL tier refused for good
    reconciles: int  #: periodic recovery passes
    pending: int  #: dirty keys now
    failures: list[FailureInfo]  #: the last 100 refused writes
    last_error: str | None  #: the error of the last failed batch, if the next did not succeed


class CacheStats(TypedDict):
    """The tiered cache's hits and misses per tier."""

    l1_hits: int
    l1_misses: int
    kv_hits: int
    kv_misses: int
    sql_hits: int
    sql_misses: int
    hydrated: int  #: keys copied from SQL into KV
    invalidations: int
    l1_size: int
    l1_evictions: int
    l1_hit_ratio: float


class ConsistencyStats(TypedDict):
    """Lag from the KV acknowledgement to the SQL commit."""

    writes: int  #: since start
    violations: int  #: writes over the window, since start
    window_ms: float
    p50_ms: float  #: over the recent sample
    p95_ms: float
    p99_ms: float
    max_ms: float  #: since start
    oldest_pending_ms: float  #: age of the oldest write not in SQL yet (0 if none)
    status: str  #: a HealthStatus value


class RecoveryStats(TypedDict):
    """``HybridStateManager.stats()["recovery"]``."""

    watermark: int | None  #: every KV revision up to it is in SQL (None: no recovery)
    failures: list[FailureInfo]  #: entries recovery set aside (the last 100)


class ManagerStats(TypedDict):
    """``HybridStateManager.stats()``."""

    flush: FlushStats
    cache: CacheStats
    consistency: ConsistencyStats
    recovery: RecoveryStats
