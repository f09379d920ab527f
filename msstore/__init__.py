"""msstore: sync-first persistence for AI agent state.

Short-term state lives in NATS JetStream KV, long-term state in PostgreSQL, knowledge in pgvector;
every tier sits behind a protocol with an in-memory implementation. Importing this package loads
no database driver: backends are imported when a URL first names them.

>>> import msstore
>>> kv = msstore.open_kv("memory://agents?history=5")
>>> rev = kv.put("agent.a1.state", {"step": 1})
>>> kv.get("agent.a1.state").value
{'step': 1}
"""

import logging as _logging

from msstore.buckets import BucketConfig
from msstore.capabilities import Capability
from msstore.codec import Codec
from msstore.errors import (
    ConnectionFailed,
    ConsistencyViolation,
    DeadlineExceeded,
    DuplicateKey,
    FlushError,
    InvalidArgument,
    InvalidKey,
    MsstoreError,
    NotFound,
    OutcomeUnknown,
    SerializationError,
    StoreClosed,
    TTLExpired,
    Unsupported,
    VersionConflict,
)
from msstore.keys import quote_token, unquote_token
from msstore.protocols import (
    ConflictResolver,
    DataStorage,
    Embedder,
    KeyValueStore,
    Repository,
    VectorIndex,
    Watcher,
)
from msstore.records import Entry, HealthStatus, Hit, Operation, Query, Record, UpsertResult
from msstore.registry import open_kv, open_storage, open_vector, register_backend
from msstore.state import DataRouter, DataType, Route, StorageLayer

__version__ = "0.1.0"
"""msstore's version."""

# Quiet by default: an application that configures logging sees msstore's records; one that does
# not gets nothing on stderr (not even warnings through logging's last-resort handler).
_logging.getLogger("msstore").addHandler(_logging.NullHandler())

__all__ = [
    "BucketConfig",
    "Capability",
    "Codec",
    "ConflictResolver",
    "ConnectionFailed",
    "ConsistencyViolation",
    "DataRouter",
    "DataStorage",
    "DataType",
    "DeadlineExceeded",
    "DuplicateKey",
    "Embedder",
    "Entry",
    "FlushError",
    "HealthStatus",
    "Hit",
    "InvalidArgument",
    "InvalidKey",
    "KeyValueStore",
    "MsstoreError",
    "NotFound",
    "Operation",
    "OutcomeUnknown",
    "Query",
    "Record",
    "Repository",
    "Route",
    "SerializationError",
    "StorageLayer",
    "StoreClosed",
    "TTLExpired",
    "Unsupported",
    "UpsertResult",
    "VectorIndex",
    "VersionConflict",
    "Watcher",
    "__version__",
    "open_kv",
    "open_storage",
    "open_vector",
    "quote_token",
    "register_backend",
    "unquote_token",
]
