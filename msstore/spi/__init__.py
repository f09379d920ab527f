"""What a backend author builds on: the store lifecycle, argument checks, the KV base class,
upsert batching, query filters, queue-backed watchers, vector checks, URL option parsing, and
the sync bridge to asyncio drivers.

Everything a backend needs from msstore's core is public here (or in the package of the
capability it implements, such as :mod:`msstore.work` or :mod:`msstore.coordination`); a
backend imports no private core module.
"""

from __future__ import annotations

from msstore._internal.bridge import Bridge, get_bridge, timed_out
from msstore._internal.local_loops import LocalLoop, LocalLoops
from msstore._internal.options import check_known, opt_bool, opt_choice, opt_float, opt_int
from msstore._internal.telemetry import track
from msstore._internal.timers import EarliestTimer
from msstore._internal.ttl import MAX_TTL_SECONDS, check_ttl, expiry

from ._checks import (
    check_bool,
    check_int,
    check_many,
    check_mapping,
    check_pairs,
    check_seconds,
)
from ._filters import check_query, contains
from ._kvbase import KV_CAPABILITIES, KVBase, check_revision, stale_revision
from ._store import StoreBase
from ._upserts import check_retention, check_version, newest, newest_per_key, newest_records
from ._vector_base import VECTOR_CAPABILITIES, VectorIndexBase
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
    "KV_CAPABILITIES",
    "MAX_DIM",
    "MAX_TTL_SECONDS",
    "METRICS",
    "VECTOR_CAPABILITIES",
    "VECTOR_TYPES",
    "Bridge",
    "EarliestTimer",
    "KVBase",
    "LocalLoop",
    "LocalLoops",
    "QueueWatcher",
    "StoreBase",
    "VectorIndexBase",
    "as_matrix",
    "check_bool",
    "check_dim",
    "check_ids",
    "check_int",
    "check_k",
    "check_known",
    "check_many",
    "check_mapping",
    "check_metadata",
    "check_metric",
    "check_pairs",
    "check_query",
    "check_retention",
    "check_revision",
    "check_seconds",
    "check_ttl",
    "check_vector_type",
    "check_version",
    "check_where",
    "contains",
    "expiry",
    "get_bridge",
    "newest",
    "newest_per_key",
    "newest_records",
    "numpy",
    "opt_bool",
    "opt_choice",
    "opt_float",
    "opt_int",
    "stale_revision",
    "timed_out",
    "track",
]
