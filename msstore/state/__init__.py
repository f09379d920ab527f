"""The dual store: the hybrid state manager, its dirty set and flusher, the tiered cache, crash
recovery, the batch writer, the consistency monitor, lifecycle and routing.
"""

from __future__ import annotations

from ._batching import BatchOutcome, refuses_rows, write_batch
from ._caching import L1Cache, TieredCache
from ._consistency import ConsistencyMonitor, HealthStatus, percentile
from ._dirty import DirtySet, Pending
from ._flushing import Flusher, FlushPolicy
from ._lifecycle import LifecycleState, StateLifecycleManager, check_transition
from ._manager import HybridStateManager
from ._recovery import FeedPosition, ReconcileReport, reconcile, record_of, records_for
from ._routing import DEFAULT_ROUTES, DataRouter, DataType, Route, StorageLayer
from ._stats import (
    CacheStats,
    ConsistencyStats,
    FailureInfo,
    FlushStats,
    ManagerStats,
    RecoveryStats,
)

__all__ = [
    "DEFAULT_ROUTES",
    "BatchOutcome",
    "CacheStats",
    "ConsistencyMonitor",
    "ConsistencyStats",
    "DataRouter",
    "DataType",
    "DirtySet",
    "FailureInfo",
    "FeedPosition",
    "FlushPolicy",
    "FlushStats",
    "Flusher",
    "HealthStatus",
    "HybridStateManager",
    "L1Cache",
    "LifecycleState",
    "ManagerStats",
    "Pending",
    "ReconcileReport",
    "RecoveryStats",
    "Route",
    "StateLifecycleManager",
    "StorageLayer",
    "TieredCache",
    "check_transition",
    "percentile",
    "reconcile",
    "record_of",
    "records_for",
    "refuses_rows",
    "write_batch",
]
