"""The seams of msstore: what the core calls and what a backend implements.

Conventions every implementation follows (the conformance suite checks them):

* **A missing key reads as ``None``.** ``get``, ``retrieve`` and ``find`` return ``None`` for a
  key that is absent, deleted, purged or expired; they never raise ``NotFound`` for a key.
  ``NotFound`` is for missing containers (a bucket, a table). Writes that need a key to exist
  (``update`` with an expected revision) raise ``VersionConflict`` instead.
* Keys follow :mod:`msstore.keys`; values follow :mod:`msstore.codec`. Bad input raises a typed
  error before anything is written, in single and batch calls alike.
* An operation whose :class:`~msstore.capabilities.Capability` a backend does not declare raises
  :class:`~msstore.errors.Unsupported`.
* Calls block. Each takes the backend's configured timeout; a write that times out raises
  ``OutcomeUnknown``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

from msstore.capabilities import Capability
from msstore.records import (
    Checkpoint,
    Entry,
    FeedState,
    FlushFailure,
    Hit,
    Query,
    Record,
    UpsertResult,
)

__all__ = [
    "ChangeFeed",
    "CheckpointStore",
    "ConflictResolver",
    "DataStorage",
    "Embedder",
    "FlushLedger",
    "KeyValueStore",
    "Repository",
    "Store",
    "VectorIndex",
    "Watcher",
]

T = TypeVar("T")
ID_contra = TypeVar("ID_contra", contravariant=True)


@runtime_checkable
class Watcher(Protocol):
    """A live feed of a bucket's changes: current values first, then updates in order."""

    def next(self, timeout: float | None = None) -> Entry | None:
        """The next entry, or ``None`` if none arrives within ``timeout`` seconds."""
        ...

    def __iter__(self) -> Iterator[Entry]: ...

    def stop(self) -> None:
        """Stop the feed; iteration ends. Idempotent."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class Store(Protocol):
    """What every store shares (built on :class:`msstore.spi.StoreBase`): ``close()`` releases
    it, ``closed`` says so, a ``with`` block closes it, and a closed store raises
    ``StoreClosed``."""

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        ...

    def close(self) -> None:
        """Release the store's resources; idempotent."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class KeyValueStore(Store, Protocol):
    """A revisioned key-value bucket with JetStream KV semantics.

    Revisions are bucket-wide, strictly increasing and never reused. A delete writes a marker
    (history kept); a purge writes a marker and drops the key's earlier history. ``ttl`` is in
    whole seconds (see :mod:`msstore._internal.ttl`); a write without ``ttl`` falls back to the
    bucket's.
    A write with its own ``ttl`` drops the key's earlier history too (a roll-up), so that when
    it expires no value it overwrote shows through.
    """

    @property
    def name(self) -> str:
        """The bucket's name."""
        ...

    @property
    def capabilities(self) -> Set[Capability]:
        """What this store supports; a call needing anything else raises ``Unsupported``."""
        ...

    def get(self, key: str, *, revision: int | None = None) -> Entry | None:
        """The key's live value (or the given revision of it), ``None`` if there is none."""
        ...

    def put(self, key: str, value: Any, *, ttl: float | None = None) -> int:
        """Write unconditionally; return the new revision."""
        ...

    def create(self, key: str, value: Any, *, ttl: float | None = None) -> int:
        """Write only if the key has no live value; else raise ``DuplicateKey``."""
        ...

    def update(
        self, key: str, value: Any, *, expected_revision: int, ttl: float | None = None
    ) -> int:
        """Write only if the key's latest revision is ``expected_revision``.

        Else raise ``VersionConflict`` and change nothing. ``expected_revision=0`` writes only
        if the key has no retained entry at all, not even a delete marker (``create`` writes
        over a marker): what a copy from the SQL tier uses, so it never revives a delete.
        """
        ...

    def delete(self, key: str, *, expected_revision: int | None = None) -> int:
        """Write a delete marker (idempotent); return its revision."""
        ...

    def purge(self, key: str, *, expected_revision: int | None = None) -> int:
        """Write a purge marker and drop the key's earlier revisions; return its revision."""
        ...

    def keys(self, pattern: str | None = None, *, prefix: str | None = None) -> list[str]:
        """Sorted keys with a live value, filtered by wildcard ``pattern`` and/or ``prefix``."""
        ...

    def history(self, key: str) -> list[Entry]:
        """The key's retained revisions, oldest first, markers included; ``[]`` if none."""
        ...

    def watch(self, pattern: str = ">", *, include_history: bool = False) -> Watcher:
        """Feed of the matching keys: their current entries, then every later change."""
        ...

    def put_many(
        self, items: Mapping[str, Any] | Iterable[tuple[str, Any]], *, ttl: float | None = None
    ) -> list[int]:
        """Write several keys in one round trip; return their revisions in input order.

        Every key and value is validated first: bad input raises with nothing written.
        """
        ...

    def get_many(self, keys: Iterable[str]) -> dict[str, Entry | None]:
        """Read several keys in one round trip."""
        ...


@runtime_checkable
class ChangeFeed(Protocol):
    """A KV bucket whose writes can be replayed in revision order (JetStream: its stream).

    The hybrid manager's crash recovery reads it: every write after a watermark is replayed into
    the SQL tier, so a write acknowledged by the KV reaches SQL even if its writer died.
    """

    def feed_state(self) -> FeedState:
        """The bucket's incarnation and newest revision."""
        ...

    def latest(self, key: str) -> Entry | None:
        """The key's newest retained entry, delete and purge markers included (``get`` hides
        them): a reader that finds a marker knows the key was deleted, not expired."""
        ...

    def latest_many(self, keys: Iterable[str]) -> dict[str, Entry | None]:
        """:meth:`latest` of several keys in one round trip."""
        ...

    def changes(self, after: int, *, limit: int = 10_000) -> list[Entry]:
        """Retained entries with a revision above ``after``, oldest first, at most ``limit``.

        Markers included; superseded or expired revisions the bucket no longer keeps are not.
        """
        ...


@runtime_checkable
class DataStorage(Store, Protocol):
    """A durable table of keyed JSON documents with monotonic versions (the SQL tier).

    A row is replaced only by a strictly newer version: an old flush never overwrites new data.
    """

    @property
    def capabilities(self) -> Set[Capability]:
        """What this store supports; a call needing anything else raises ``Unsupported``."""
        ...

    def store(
        self, key: str, value: Any, *, version: int | None = None, ttl: float | None = None
    ) -> Record:
        """Write ``value``; with ``version=None`` the next version is taken.

        An explicit ``version`` not above the stored one raises ``VersionConflict``.
        """
        ...

    def retrieve(self, key: str) -> Record | None:
        """The row for ``key``, ``None`` if absent or expired."""
        ...

    def remove(self, key: str, *, below_version: int | None = None) -> bool:
        """Delete the row; ``True`` if there was a live one. Idempotent.

        With ``below_version`` (the delete's own version) the row is replaced by a tombstone at
        that version, only if its version is lower: a delete that raced a newer write leaves
        the newer row in place, and a write older than the delete is refused afterwards.
        """
        ...

    def search(self, query: Query | str) -> list[Record]:
        """Rows matching ``query`` (a ``str`` is a key prefix), ordered by key."""
        ...

    def upsert_many(self, records: Iterable[Record]) -> UpsertResult:
        """Bulk, version-guarded upsert in one transaction (the flusher's path).

        Duplicate keys collapse to their newest version; rows whose version is not newer
        than the stored one (a row or a tombstone) are skipped. A record with ``deleted`` set
        writes a tombstone. Nothing is written if any row is invalid.
        """
        ...


@runtime_checkable
class CheckpointStore(Protocol):
    """Where checkpoints are kept (the table store: ``agents.checkpoints`` in PostgreSQL)."""

    def save_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        """Store ``checkpoint`` (its snapshot and KV revision); return it as stored."""
        ...

    def load_checkpoint(self, agent: str, checkpoint_id: str) -> Checkpoint | None:
        """The agent's checkpoint of that id, ``None`` if there is none."""
        ...

    def list_checkpoints(self, agent: str) -> list[Checkpoint]:
        """The agent's checkpoints, newest first."""
        ...


@runtime_checkable
class FlushLedger(Protocol):
    """Durable flush progress per KV bucket, kept next to the rows it describes.

    A table store that implements it lets the hybrid manager recover writes whose process died
    before flushing them (see :mod:`msstore.state._recovery`).
    """

    def claim_feed(self, bucket: str, incarnation: str) -> tuple[int, int]:
        """``(version_offset, watermark)`` for this life of ``bucket``.

        The first claim of a new incarnation sets the offset above every stored version and
        the watermark to 0; later claims of the same incarnation return what is stored.
        """
        ...

    def advance_feed(self, bucket: str, incarnation: str, watermark: int) -> None:
        """Record that every revision up to ``watermark`` is stored (never moves back)."""
        ...

    def record_failures(self, failures: Sequence[FlushFailure]) -> None:
        """Keep entries that could not be stored, for an operator (idempotent per revision)."""
        ...

    def flush_failures(self, bucket: str) -> list[FlushFailure]:
        """The bucket's recorded failures, oldest revision first."""
        ...

    def sweep(self, *, tombstone_retention: float) -> int:
        """Drop tombstones and expired rows older than ``tombstone_retention`` seconds whose
        version every bucket's watermark has passed; return how many rows went. (An expired row
        guards its version as a tombstone does, so it is kept as long.)"""
        ...


@runtime_checkable
class Repository(Protocol[T, ID_contra]):
    """Typed records saved and found by id."""

    def save(self, entity: T) -> T:
        """Store ``entity`` (new or not); return it with its stored version."""
        ...

    def find(self, id: ID_contra) -> T | None:
        """The entity of ``id``, ``None`` if there is none."""
        ...

    def update(self, entity: T) -> T:
        """Store ``entity`` only if it is still at the version it was read at; else raise
        ``VersionConflict``."""
        ...

    def delete(self, id: ID_contra) -> bool:
        """Delete the entity of ``id``; ``True`` if there was one."""
        ...


@runtime_checkable
class VectorIndex(Store, Protocol):
    """Vectors with ids and metadata, searched by nearest neighbour."""

    @property
    def dim(self) -> int:
        """The vectors' dimension."""
        ...

    @property
    def metric(self) -> str:
        """``"cosine"``, ``"l2"`` or ``"ip"``."""
        ...

    @property
    def capabilities(self) -> Set[Capability]:
        """What this index supports (``vector_filter``: ``where`` in :meth:`search`)."""
        ...

    def add(
        self, ids: Sequence[str], vectors: Any, metadata: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Insert or replace vectors; a wrong dimension raises ``InvalidArgument``."""
        ...

    def search(
        self, vector: Any, k: int = 10, *, where: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """The ``k`` nearest ids, closest first, among those whose metadata matches ``where``."""
        ...

    def remove(self, ids: Sequence[str]) -> int:
        """Remove the vectors of ``ids`` (ids with none are skipped); how many went."""
        ...

    def count(self) -> int:
        """How many vectors the index holds."""
        ...


@runtime_checkable
class ConflictResolver(Protocol):
    """Settles a compare-and-set conflict: given our proposed value and the value now stored,
    return the value to write in its place."""

    def resolve(self, key: str, ours: Any, theirs: Any) -> Any:
        """The value to write at ``key`` in place of ``theirs`` (stored now), given ``ours``
        (the value we meant to write)."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of a fixed dimension, a batch at a time.

    ``model`` and ``version`` label the vectors it makes: stores reuse a stored vector for the
    same text only when both match (see :mod:`msstore.knowledge._embedding`).
    """

    @property
    def dim(self) -> int:
        """The dimension of the vectors it makes."""
        ...

    @property
    def model(self) -> str:
        """The model's name, stored with each vector."""
        ...

    @property
    def version(self) -> str:
        """The model's version, stored with each vector."""
        ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector of ``dim`` floats per text, in order; empty texts are refused."""
        ...
