"""Records shared by every backend: KV entries, stored rows, bucket settings, vector hits."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from msstore.codec import default_codec

__all__ = [
    "Checkpoint",
    "Entry",
    "FeedState",
    "FlushFailure",
    "HealthStatus",
    "Hit",
    "Operation",
    "Query",
    "Record",
    "UpsertResult",
]

_UNDECODED: Any = object()


class HealthStatus(enum.Enum):
    """What every health report says: the dual store's consistency monitor, the PostgreSQL
    pools, and each later capability's ``health()``."""

    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    UNHEALTHY = "UNHEALTHY"


class Operation(enum.Enum):
    """What a KV revision did to its key (JetStream's KV-Operation header)."""

    PUT = "PUT"
    DEL = "DEL"
    PURGE = "PURGE"


# Not frozen: a frozen attrs class takes three times as long to build, and every read builds one.
# Treat entries as read-only all the same.
@attrs.define(repr=False)
class Entry:
    """One revision of one key in a KV bucket (read-only by convention).

    ``raw`` holds the stored bytes; ``value`` decodes them on first access (each ``get`` hands
    out its own Entry, so the decoded value is the caller's to mutate). Delete and purge markers
    have ``operation`` DEL / PURGE and ``value`` ``None``. Times are Unix seconds.
    ``expires_at`` is when the KV drops this revision (its own TTL, else the bucket's); ``ttl`` is
    the revision's own TTL in seconds, ``None`` when only the bucket's applies: a value with a
    ``ttl`` expires for good, while the bucket TTL only ends its time in the hot tier.
    """

    bucket: str
    key: str
    raw: bytes
    revision: int
    created: float
    operation: Operation = Operation.PUT
    expires_at: float | None = None
    ttl: float | None = None
    _value: Any = attrs.field(init=False, default=_UNDECODED, eq=False)

    @property
    def value(self) -> Any:
        """The decoded value (decoded once, on first access); ``None`` for markers."""
        value = self._value
        if value is _UNDECODED:
            value = None if self.operation is not Operation.PUT else default_codec.decode(self.raw)
            self._value = value
        return value

    @property
    def is_marker(self) -> bool:
        """True for delete and purge markers."""
        return self.operation is not Operation.PUT

    def __repr__(self) -> str:
        return (
            f"Entry(bucket={self.bucket!r}, key={self.key!r}, revision={self.revision}, "
            f"operation={self.operation.value}, size={len(self.raw)})"
        )


@attrs.frozen
class Record:
    """One row of a table store (the SQL tier): a key's latest durable value and its version.

    ``version`` only grows; stores refuse to replace a row with an older or equal version.
    ``expires_at`` (Unix seconds) is the value's own expiry, after which no read returns it.
    ``deleted`` marks a tombstone: the key was deleted at ``version`` (``value`` is ``None``),
    and the version guard keeps refusing older writes of it until the tombstone is swept.
    """

    key: str
    value: Any
    version: int
    updated_at: float
    expires_at: float | None = None
    deleted: bool = False


@attrs.frozen
class UpsertResult:
    """What a bulk, version-guarded upsert did.

    ``written`` rows were stored; ``skipped`` input rows were not: older duplicates within the
    batch and rows whose version was not newer than the stored one.
    """

    written: int
    skipped: int


@attrs.frozen
class Query:
    """A search over a table store or knowledge base.

    ``prefix`` restricts keys; ``where`` keeps values that contain it (JSON containment, as
    PostgreSQL's ``@>``); ``text`` asks for text or semantic search, which only stores with the
    ``search_text`` capability provide.
    """

    prefix: str | None = None
    where: Mapping[str, Any] | None = None
    text: str | None = None
    limit: int = 100


@attrs.frozen
class Hit:
    """A vector-search result.

    ``distance`` follows pgvector's operators, lower is closer: cosine distance (``<=>``,
    1 - cosine similarity), Euclidean distance (``<->``), negative inner product (``<#>``).
    """

    id: str
    distance: float
    metadata: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class FeedState:
    """Where a KV bucket's change feed stands.

    ``incarnation`` names this life of the bucket: it changes when the bucket is deleted and
    made again (its revisions then start over). ``last_revision`` is the newest revision
    written (0 for a bucket never written to).
    """

    incarnation: str
    last_revision: int


@attrs.frozen(kw_only=True)
class Checkpoint:
    """A snapshot of one agent's state: ``values`` by state name (the key without the agent
    token), taken at KV revision ``kv_revision``."""

    checkpoint_id: str
    agent: str
    values: dict[str, Any]
    kv_revision: int
    created_at: float
    name: str | None = None
    trigger: str | None = None


@attrs.frozen
class FlushFailure:
    """A KV entry the SQL tier could not take: bytes msstore cannot decode, or a value the
    store refuses. Set aside (logged, listed in ``stats()``, kept by the flush ledger) so that
    the entries around it are stored and the watermark moves past it."""

    bucket: str
    key: str
    revision: int
    reason: str
    seen_at: float = 0.0
