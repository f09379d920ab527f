"""In-process backends with the same semantics as the servers: for tests, scripts and benchmarks.

* :class:`MemoryKV` - a KV bucket with JetStream KV semantics (``memory://bucket``).
* :class:`MemoryTable` - a version-guarded table store with the SQL tier's semantics.
* :class:`MemoryVectorIndex` - an exact vector index on numpy (needs ``msstore[vector]``).
* :class:`MemoryFactStore` - the knowledge base's fact store: exact vectors, BM25 text search.
* :class:`MemoryTaskQueue`, :class:`MemoryMessageLog`, :class:`MemorySessionStore` - agent work
  (tasks, messages, sessions), with a clock tests can drive.
* :class:`MemoryCheckpointStore` - graph checkpoints (LangGraph's, through
  ``msstore.integrations.langgraph``).

URL options: ``memory://NAME?history=5&ttl=1800&max_value_bytes=1048576&per_key_ttl=true`` for
KV; ``memory://NAME?dim=384&metric=cosine`` for vectors. Each ``open_*`` call makes a new,
empty store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult

from msstore.buckets import BUCKET_OPTIONS, BucketConfig
from msstore.errors import InvalidArgument
from msstore.registry import Backend
from msstore.spi import check_known, opt_float, opt_int

from ._facts import MemoryFactStore
from ._graphs import MemoryCheckpointStore
from ._kv import MemoryKV
from ._messages import MemoryMessageLog
from ._outbox import MemoryEventStream, MemoryOutbox
from ._sagas import MemorySagaLog
from ._sessions import MemorySessionStore
from ._table import MemoryTable
from ._tasks import MemoryTaskQueue
from ._vector import MemoryVectorIndex

__all__ = [
    "MemoryBackend",
    "MemoryCheckpointStore",
    "MemoryEventStream",
    "MemoryFactStore",
    "MemoryKV",
    "MemoryMessageLog",
    "MemoryOutbox",
    "MemorySagaLog",
    "MemorySessionStore",
    "MemoryTable",
    "MemoryTaskQueue",
    "MemoryVectorIndex",
]


def _name(url: SplitResult, default: str) -> str:
    return (url.netloc or url.path.strip("/") or default).split("/")[0]


class MemoryBackend(Backend):
    """The ``memory://`` scheme."""

    def open_kv(self, url: SplitResult, options: Mapping[str, Any]) -> MemoryKV:
        # The same bucket options as nats://, read by the same code: the memory KV refuses
        # exactly what the NATS one refuses (storage, replicas, compression change nothing here).
        check_known(options, set(BUCKET_OPTIONS), backend="memory KV")
        return MemoryKV(BucketConfig.from_options(_name(url, "memory"), options))

    def open_storage(self, url: SplitResult, options: Mapping[str, Any]) -> MemoryTable:
        check_known(options, set(), backend="memory table")
        return MemoryTable(name=_name(url, "memory"))

    def open_vector(self, url: SplitResult, options: Mapping[str, Any]) -> MemoryVectorIndex:
        check_known(options, {"dim", "metric"}, backend="memory vector index")
        dim = opt_int(options, "dim", None)
        if dim is None:
            raise InvalidArgument("memory vector index needs dim=N")
        return MemoryVectorIndex(dim=dim, metric=str(options.get("metric", "cosine")))

    def open_outbox(self, url: SplitResult, options: Mapping[str, Any]) -> MemoryOutbox:
        """A new, empty outbox (option ``keep_published``)."""
        check_known(options, {"keep_published"}, backend="memory outbox")
        return MemoryOutbox(
            keep_published=opt_float(options, "keep_published", 3600.0, inclusive=True)
        )
