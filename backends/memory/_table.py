"""An in-process table store with the SQL tier's semantics (version-guarded JSON rows)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, NamedTuple

import attrs

from msstore import keys as keygrammar
from msstore.capabilities import Capability, require
from msstore.codec import Codec, default_codec
from msstore.errors import VersionConflict
from msstore.protocols import CheckpointStore, DataStorage, FlushLedger
from msstore.records import Checkpoint, FlushFailure, Query, Record, UpsertResult
from msstore.spi import (
    StoreBase,
    check_query,
    check_retention,
    check_ttl,
    check_version,
    contains,
    newest_per_key,
)

__all__ = ["MemoryTable"]

CAPABILITIES: Final = frozenset(
    {
        Capability.SEARCH,
        Capability.TRANSACTIONS,
        Capability.BATCH,
        Capability.NUL_IN_STRINGS,
        Capability.ENCODED_VALUES,
    }
)


class _Row(NamedTuple):
    raw: bytes
    version: int
    updated_at: float
    expires_at: float | None
    deleted: bool = False


class MemoryTable(StoreBase, DataStorage, CheckpointStore, FlushLedger):
    """A thread-safe ``DataStorage`` in memory: what the PostgreSQL state store does, minus I/O.

    Values are stored encoded, so a caller mutating what it stored or retrieved changes nothing
    here. ``clock`` returns Unix seconds.
    """

    def __init__(
        self,
        *,
        name: str = "memory",
        codec: Codec | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._codec = codec or default_codec
        self._clock = clock
        self._lock = threading.RLock()
        self._rows: dict[str, _Row] = {}
        self._feeds: dict[str, tuple[str, int, int]] = {}
        self._failures: dict[tuple[str, int], FlushFailure] = {}
        self._checkpoints: list[tuple[Checkpoint, bytes]] = []

    def __repr__(self) -> str:
        return f"MemoryTable(name={self.name!r})"

    @property
    def capabilities(self) -> frozenset[Capability]:
        return CAPABILITIES

    def _record(self, key: str, row: _Row) -> Record:
        return Record(key, self._codec.decode(row.raw), row.version, row.updated_at, row.expires_at)

    def _alive(self, key: str, now: float) -> _Row | None:
        row = self._rows.get(key)
        if row is None or row.deleted or (row.expires_at is not None and row.expires_at <= now):
            return None
        return row

    def store(
        self, key: str, value: Any, *, version: int | None = None, ttl: float | None = None
    ) -> Record:
        keygrammar.check_key(key)
        raw = self._codec.encode(value)
        if version is not None:
            check_version(version)
        seconds = check_ttl(ttl)
        self._check_open()
        with self._lock:
            now = self._clock()
            current = self._rows.get(key)
            if version is None:
                version = 1 if current is None else current.version + 1
            elif current is not None and version <= current.version:
                raise VersionConflict(
                    f"{key!r} is stored at version {current.version}; version {version} is not "
                    "newer",
                    key=key,
                    expected=version,
                    current=current.version,
                    hint="store a higher version, or omit version to take the next one",
                )
            row = _Row(raw, version, now, None if seconds is None else now + seconds)
            self._rows[key] = row
            return self._record(key, row)

    def retrieve(self, key: str) -> Record | None:
        keygrammar.check_key(key)
        self._check_open()
        with self._lock:
            row = self._alive(key, self._clock())
        return None if row is None else self._record(key, row)

    def remove(self, key: str, *, below_version: int | None = None) -> bool:
        keygrammar.check_key(key)
        if below_version is not None:
            check_version(below_version)
        self._check_open()
        with self._lock:
            row = self._rows.get(key)
            if below_version is None:
                self._rows.pop(key, None)
                return row is not None and not row.deleted
            if row is not None and row.version >= below_version:
                return False
            # A tombstone at the delete's version: older writes of the key stay refused.
            self._rows[key] = _Row(b"null", below_version, self._clock(), None, True)
            return row is not None and not row.deleted

    # CheckpointStore ---------------------------------------------------------------------------

    def save_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        raw = self._codec.encode(checkpoint.values)  # a copy: later changes do not leak in
        self._check_open()
        saved = attrs.evolve(checkpoint, checkpoint_id=str(uuid.uuid4()))
        with self._lock:
            self._checkpoints.append((saved, raw))
        return saved

    def _decoded(self, checkpoint: Checkpoint, raw: bytes) -> Checkpoint:
        return attrs.evolve(checkpoint, values=self._codec.decode(raw))

    def load_checkpoint(self, agent: str, checkpoint_id: str) -> Checkpoint | None:
        self._check_open()
        with self._lock:
            for cp, raw in self._checkpoints:
                if cp.agent == agent and cp.checkpoint_id == checkpoint_id:
                    return self._decoded(cp, raw)
        return None

    def list_checkpoints(self, agent: str) -> list[Checkpoint]:
        self._check_open()
        with self._lock:
            found = [self._decoded(cp, raw) for cp, raw in self._checkpoints if cp.agent == agent]
        return found[::-1]

    # FlushLedger -----------------------------------------------------------------------------

    def claim_feed(self, bucket: str, incarnation: str) -> tuple[int, int]:
        self._check_open()
        with self._lock:
            claimed = self._feeds.get(bucket)
            if claimed is None or claimed[0] != incarnation:
                offset = max((row.version for row in self._rows.values()), default=0)
                claimed = self._feeds[bucket] = (incarnation, offset, 0)
            return claimed[1], claimed[2]

    def advance_feed(self, bucket: str, incarnation: str, watermark: int) -> None:
        self._check_open()
        with self._lock:
            claimed = self._feeds.get(bucket)
            if claimed is not None and claimed[0] == incarnation and watermark > claimed[2]:
                self._feeds[bucket] = (incarnation, claimed[1], watermark)

    def record_failures(self, failures: Sequence[FlushFailure]) -> None:
        self._check_open()
        with self._lock:
            for failure in failures:
                self._failures[(failure.bucket, failure.revision)] = attrs.evolve(
                    failure, seen_at=failure.seen_at or self._clock()
                )

    def flush_failures(self, bucket: str) -> list[FlushFailure]:
        self._check_open()
        with self._lock:
            return sorted(
                (f for f in self._failures.values() if f.bucket == bucket),
                key=lambda f: f.revision,
            )

    def sweep(self, *, tombstone_retention: float) -> int:
        check_retention(tombstone_retention)
        self._check_open()
        with self._lock:
            now = self._clock()
            covered = min(
                (offset + watermark for _, offset, watermark in self._feeds.values()), default=0
            )
            before = now - tombstone_retention
            gone = [
                key
                for key, row in self._rows.items()
                if row.version <= covered
                and (
                    (row.deleted and row.updated_at <= before)
                    or (row.expires_at is not None and row.expires_at <= before)
                )
            ]
            for key in gone:
                del self._rows[key]
            return len(gone)

    def search(self, query: Query | str) -> list[Record]:
        query = check_query(query)
        if query.text is not None:
            require(self.capabilities, Capability.SEARCH_TEXT, backend=repr(self))
        self._check_open()
        with self._lock:
            now = self._clock()
            candidates = sorted(
                (k, row)
                for k in self._rows
                if (query.prefix is None or k.startswith(query.prefix))
                and (row := self._alive(k, now)) is not None
            )
        found = []
        for key, row in candidates:
            record = self._record(key, row)
            if query.where is None or contains(record.value, query.where):
                found.append(record)
                if len(found) == query.limit:
                    break
        return found

    def upsert_many(self, records: Iterable[Record]) -> UpsertResult:
        newest, total = newest_per_key(records, self._codec.encode)
        self._check_open()
        written = 0
        with self._lock:
            for key, (rec, raw) in newest.items():
                current = self._rows.get(key)
                if current is not None and rec.version <= current.version:
                    continue
                self._rows[key] = _Row(
                    raw, rec.version, rec.updated_at, rec.expires_at, rec.deleted
                )
                written += 1
        return UpsertResult(written=written, skipped=total - written)
