"""What a backend author builds on: the KV base class and its argument checks, upsert batching,
query filters, queue-backed watchers, vector checks.
"""

from __future__ import annotations

from ._filters import check_query, contains
from ._kvbase import KVBase, StoreBase, check_revision, stale_revision
from ._upserts import check_retention, check_version, newest, newest_per_key, newest_records
from ._vectors import (
    MAX_DIM,
    METRICS,
    VECTOR_TYPES,
    as_matrix,
    check_dim,
    check_ids,
    check_k,
    check_metadata,
    check_metric,
    check_vector_type,
    check_where,
    numpy,
)
from ._watching import QueueWatcher

__all__ = [
    "MAX_DIM",
    "METRICS",
    "VECTOR_TYPES",
    "KVBase",
    "QueueWatcher",
    "StoreBase",
    "as_matrix",
    "check_dim",
    "check_ids",
    "check_k",
    "check_metadata",
    "check_metric",
    "check_query",
    "check_retention",
    "check_revision",
    "check_vector_type",
    "check_version",
    "check_where",
    "contains",
    "newest",
    "newest_per_key",
    "newest_records",
    "numpy",
    "stale_revision",
]
