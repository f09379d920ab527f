"""The hybrid state manager: KV first, SQL behind it.

Write path: the key and value are checked (a value the SQL tier could not hold is refused here,
before the KV sees it), the KV write is awaited, the key is recorded as dirty, and the KV revision
is returned. The background :class:`~msstore.state.Flusher` moves dirty keys into the SQL tier
in version-guarded batches (threshold, max lag, ``flush()``, ``close()``).

Read path: :class:`~msstore.state.TieredCache` (L1 -> KV -> SQL with hydration).

Crash safety: :mod:`msstore.state._recovery`. When the table store keeps a flush ledger
(``PostgresStateStore``, ``MemoryTable``) and the KV has a change feed (``NatsKV``, ``MemoryKV``),
opening a manager replays writes its predecessors acknowledged but never flushed, and every
manager repeats the pass periodically for the other processes sharing the bucket.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from time import perf_counter
from typing import Any, Final, Self

from msstore import keys as keygrammar
from msstore._internal import telemetry
from msstore._internal.ttl import check_ttl
from msstore.capabilities import Capability
from msstore.codec import Codec, Encoded, default_codec, has_nul
from msstore.conflicts.update import Resolver, RetryPolicy, Updated, update_with
from msstore.errors import (
    FlushError,
    MsstoreError,
    OutcomeUnknown,
    SerializationError,
    StoreClosed,
    VersionConflict,
)
from msstore.protocols import ChangeFeed, DataStorage, FlushLedger, KeyValueStore
from msstore.records import FlushFailure
from msstore.spi import StoreBase, check_pairs

from ._caching import L1Cache, TieredCache
from ._consistency import ConsistencyMonitor, HealthStatus
from ._dirty import DirtySet, Pending
from ._flushing import Flusher, FlushPolicy, failure_info
from ._recovery import FeedPosition, ReconcileReport, reconcile
from ._stats import ManagerStats, RecoveryStats

__all__ = ["HybridStateManager"]

_KEY_LOCKS: Final = 64
_RECOVERY_RETRY: Final = RetryPolicy(attempts=6, base=0.05, multiplier=2.0, cap=1.0, jitter=0.05)
log = logging.getLogger("msstore.state")

# What the metrics report of the dual store's calls (msstore.ops.metrics).
_TIMED: Final = {
    op: telemetry.histogram("kv_operation_duration_seconds", op)
    for op in ("put", "put_many", "update", "update_with", "delete", "get", "get_many")
}
_CONFLICTS: Final = {op: telemetry.counter("conflicts", op) for op in ("update", "update_with")}


class HybridStateManager:
    """Agent state written to ``kv`` and flushed to ``storage``; read through both.

    ``policy`` sets the flush threshold, max lag and reconcile interval (:class:`FlushPolicy`);
    ``monitor`` receives every committed write's lag (a :class:`ConsistencyMonitor` is made if
    none is given); ``l1`` is the in-process cache (``L1Cache(max_size=0)`` disables it);
    ``watch`` invalidates L1 when other processes write the bucket. ``recover`` runs a reconcile
    pass at open. ``owns_stores`` closes ``kv`` and ``storage`` on :meth:`close`.

    Thread-safe; a process may hold one manager per bucket and share it between threads.
    """

    def __init__(
        self,
        kv: KeyValueStore,
        storage: DataStorage,
        *,
        policy: FlushPolicy | None = None,
        monitor: ConsistencyMonitor | None = None,
        l1: L1Cache | None = None,
        watch: bool = False,
        recover: bool = True,
        owns_stores: bool = False,
        codec: Codec | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kv = kv
        self.storage = storage
        self.policy = policy or FlushPolicy()
        self.monitor = monitor or ConsistencyMonitor()
        self._codec = codec or default_codec
        self._clock = clock
        self._owns = owns_stores
        self._closables = tuple(s for s in (storage, kv) if isinstance(s, StoreBase))
        # update_with of one key from threads of this process queue here instead of fighting
        # each other through the server (striped: a bounded number of locks for any keys).
        self._key_locks = tuple(threading.Lock() for _ in range(_KEY_LOCKS))
        self.recovery_failures: list[FlushFailure] = []
        self._closed = False
        self._lock = threading.Lock()
        self._check_nul = Capability.NUL_IN_STRINGS not in storage.capabilities
        # msstore's own KV stores take a value encoded once here as it is (codec.Encoded).
        self._kv_takes_encoded = Capability.ENCODED_VALUES in kv.capabilities
        self._position: FeedPosition | None = None
        if isinstance(kv, ChangeFeed) and isinstance(storage, FlushLedger):
            self._position = FeedPosition.claim(kv, kv.name, storage)
        else:
            log.warning(
                "%r or %r cannot replay unflushed writes: a crash may lose them", kv, storage
            )
        self.dirty = DirtySet(threshold=self.policy.threshold, wall=clock)
        self.cache = TieredCache(kv, storage, l1=l1, watch=watch, codec=self._codec, wall=clock)
        self.last_recovery: ReconcileReport | None = None
        if recover and self._position is not None:
            # A transient failure (a deadlock with another process's flush, a dropped
            # connection) is retried rather than failing the manager's start.
            self.last_recovery = _RECOVERY_RETRY.retrying()(self.reconcile)
        self.flusher = Flusher(
            name=kv.name,
            dirty=self.dirty,
            storage=storage,
            policy=self.policy,
            monitor=self.monitor,
            version_of=self.version_of,
            reconcile=self._periodic_pass if self._position is not None else None,
        )
        telemetry.track("store", self)

    def __repr__(self) -> str:
        return f"HybridStateManager(kv={self.kv!r}, storage={self.storage!r})"

    def version_of(self, revision: int) -> int:
        """The SQL version of KV revision ``revision`` (see :mod:`msstore.state._recovery`)."""
        return revision + (self._position.offset if self._position is not None else 0)

    # Writing -----------------------------------------------------------------------------------

    def _encode(self, key: str, value: Any) -> Encoded:
        """The one encoding of a write: KV stores these bytes, L1 caches them, the flusher
        hands them to the SQL tier (canonical, so the SQL tier can checksum them as they are).
        """
        keygrammar.check_key(key)
        encoded = self._codec.encode_canonical(value)
        raw = encoded.data
        if self._check_nul and b"\\u0000" in raw and has_nul(value):
            raise SerializationError(
                f"{key!r}: the SQL tier cannot store U+0000 in a string",
                key=key,
                hint="strip NUL characters or encode the text (base64)",
            )
        return encoded

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"{self!r} is closed", hint="open a new manager")
        for store in self._closables:
            if store.closed:
                raise StoreClosed(
                    f"{store!r} under {self!r} was closed; nothing was written",
                    hint="close the manager and open a new one over open stores",
                )

    def _for_kv(self, encoded: Encoded, value: Any) -> Any:
        return encoded if self._kv_takes_encoded else value

    def _wrote(self, key: str, encoded: Encoded, revision: int) -> None:
        self.dirty.add(key, encoded.data, revision, encoded=encoded)
        self.cache.wrote(key, encoded.data, revision)

    def _wrote_through(self, writes: list[tuple[str, Encoded, int]], ttl: int, at: float) -> None:
        """Values with their own TTL are committed to SQL before the write returns. Were one
        to expire in KV unflushed (its process killed, and no recovery pass reading it in
        time), no tier would remember that it overwrote an older value, and the older value
        would read again from SQL: a write-through closes that window."""
        expires_at = at + ttl
        now = time.monotonic()
        batch = [
            Pending(key, e.data, revision, now, at, -1, -1, False, expires_at, e)
            for key, e, revision in writes
        ]
        for key, e, revision in writes:
            self.cache.wrote(key, e.data, revision, lifetime=ttl)
        try:
            self.flusher.write_now(batch)
        except FlushError:
            raise
        except MsstoreError as err:
            for p in batch:  # the flusher keeps at it; the values are in KV meanwhile
                self.dirty.add(p.key, p.raw, p.revision, expires_at=expires_at, encoded=p.encoded)
            raise OutcomeUnknown(
                f"{len(batch)} writes with a ttl are in KV but not yet in SQL: {err}",
                hint="they stay pending and the flusher retries; re-read before writing again",
            ) from err

    def put(self, key: str, value: Any, *, ttl: float | None = None) -> int:
        """Write ``value`` to KV and mark it for flushing; return the KV revision.

        Returns once the KV acknowledged the write. ``ttl`` (whole seconds) is the value's own
        expiry: KV drops it then, SQL keeps it as ``expires_at``, and no read returns it after
        (the bucket TTL, by contrast, only ends the value's time in the hot tier). A write with
        a ``ttl`` is committed to SQL too before ``put`` returns (see :meth:`_wrote_through`);
        if SQL cannot take it now, ``OutcomeUnknown`` is raised and the flusher keeps trying.
        """
        self._check_open()
        start = perf_counter()
        encoded = self._encode(key, value)
        if ttl is None:
            revision = self.kv.put(key, self._for_kv(encoded, value))
            self._wrote(key, encoded, revision)
            _TIMED["put"].observe(perf_counter() - start)
            return revision
        seconds = check_ttl(ttl)
        assert seconds is not None
        at = self._clock()
        revision = self.kv.put(key, self._for_kv(encoded, value), ttl=seconds)
        self._wrote_through([(key, encoded, revision)], seconds, at)
        _TIMED["put"].observe(perf_counter() - start)
        return revision

    def put_many(
        self, items: Mapping[str, Any] | Iterable[tuple[str, Any]], *, ttl: float | None = None
    ) -> list[int]:
        """Write several keys in one KV round trip; all are checked before any is written."""
        self._check_open()
        start = perf_counter()
        pairs = check_pairs(items, field="items")
        encoded = [self._encode(k, v) for k, v in pairs]
        seconds = check_ttl(ttl)
        at = self._clock()
        revisions = self.kv.put_many(
            [(k, self._for_kv(e, v)) for (k, v), e in zip(pairs, encoded, strict=True)],
            ttl=seconds,
        )
        if seconds is None:
            for (key, _), e, revision in zip(pairs, encoded, revisions, strict=True):
                self._wrote(key, e, revision)
        else:
            writes = [(k, e, r) for (k, _), e, r in zip(pairs, encoded, revisions, strict=True)]
            self._wrote_through(writes, seconds, at)
        _TIMED["put_many"].observe(perf_counter() - start)
        return revisions

    def update(self, key: str, value: Any, *, expected_revision: int) -> int:
        """Compare-and-set: write only if ``key`` is at ``expected_revision``."""
        self._check_open()
        start = perf_counter()
        encoded = self._encode(key, value)
        try:
            revision = self.kv.update(
                key, self._for_kv(encoded, value), expected_revision=expected_revision
            )
        except VersionConflict:
            _CONFLICTS["update"].inc()
            raise
        self._wrote(key, encoded, revision)
        _TIMED["update"].observe(perf_counter() - start)
        return revision

    def update_with(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        resolver: Resolver | None = None,
        policy: RetryPolicy | None = None,
    ) -> Updated:
        """Read-modify-write with conflict resolution (:func:`msstore.conflicts.update_with`).

        A key that only SQL still holds is hydrated into KV first, so ``fn`` sees its value.
        Each value is checked (and encoded once) before it is written, as ``put`` does. Calls
        for one key from threads of this process take turns; across processes, compare-and-set
        conflicts settle through ``resolver``.
        """
        self._check_open()
        keygrammar.check_key(key)
        encoded: list[Encoded] = []

        def prepare(value: Any) -> Any:
            encoded[:] = [self._encode(key, value)]
            return self._for_kv(encoded[0], value)

        start = perf_counter()
        with self._key_locks[hash(key) % _KEY_LOCKS]:
            self.cache.load(key)  # KV, else SQL with hydration: L1 may outlive the KV entry
            result = update_with(
                self.kv, key, fn, resolver=resolver, policy=policy, prepare=prepare
            )
            if result.written:
                self._wrote(key, encoded[0], result.revision)
        if result.attempts > 1:
            _CONFLICTS["update_with"].inc(result.attempts - 1)
        _TIMED["update_with"].observe(perf_counter() - start)
        return result

    def delete(self, key: str) -> int:
        """Delete ``key`` in KV now and in SQL with the next flush; return the marker revision."""
        self._check_open()
        start = perf_counter()
        keygrammar.check_key(key)
        revision = self.kv.delete(key)
        self.dirty.add(key, b"", revision, deleted=True)
        self.cache.invalidate(key, revision)
        _TIMED["delete"].observe(perf_counter() - start)
        return revision

    # Reading -----------------------------------------------------------------------------------

    def get(self, key: str) -> Any:
        """The value of ``key`` (L1, KV, then SQL with hydration); ``None`` if none has it."""
        self._check_open()
        start = perf_counter()
        value = self.cache.get(key)
        _TIMED["get"].observe(perf_counter() - start)
        return value

    def get_with_revision(self, key: str) -> tuple[Any, int, str] | None:
        """``(value, kv_revision, tier)`` or ``None``; see :meth:`TieredCache.get_with_revision`."""
        self._check_open()
        return self.cache.get_with_revision(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Several keys' values (``None`` for a missing one), read as :meth:`get` reads, the
        KV misses of the cache in one batch."""
        self._check_open()
        start = perf_counter()
        values = self.cache.get_many(keys)
        _TIMED["get_many"].observe(perf_counter() - start)
        return values

    # Flushing and recovery ---------------------------------------------------------------------

    def flush(self, timeout: float | None = 30.0) -> None:
        """Block until every write made before this call is committed to SQL.

        Raises :class:`~msstore.errors.FlushError` naming the writes the SQL tier refused
        (the others were stored), ``OutcomeUnknown`` if ``timeout`` passed first, and
        ``StoreClosed`` if a store under the manager was closed.
        """
        self._check_open()
        self.flusher.flush(timeout)

    def sweep(self) -> int:
        """Drop expired rows and tombstones past ``policy.tombstone_retention`` from the SQL
        tier (see :mod:`msstore.state._recovery`); how many rows went. The flusher runs it after
        each periodic reconcile pass."""
        if not isinstance(self.storage, FlushLedger):
            return 0
        return self.storage.sweep(tombstone_retention=self.policy.tombstone_retention)

    def reconcile(self) -> ReconcileReport:
        """Run a recovery pass now (see :mod:`msstore.state._recovery`)."""
        if self._position is None:
            return ReconcileReport(0, 0, 0, 0)
        assert isinstance(self.kv, ChangeFeed) and isinstance(self.storage, FlushLedger)
        with self._lock:  # one pass at a time per manager
            state = self.kv.feed_state()
            if state.incarnation != self._position.incarnation:
                log.warning(
                    "bucket %s was re-created (%s -> %s); SQL versions move to a new offset",
                    self.kv.name,
                    self._position.incarnation,
                    state.incarnation,
                )
                self._position = FeedPosition.claim(self.kv, self.kv.name, self.storage)
            report = reconcile(self.kv, self.storage, self.storage, self._position)
            self.recovery_failures.extend(report.failures)
            del self.recovery_failures[:-100]
            return report

    def _periodic_pass(self) -> None:
        self.reconcile()
        self.sweep()

    # Reporting and closing ---------------------------------------------------------------------

    def stats(self) -> ManagerStats:
        """``{"flush": ..., "cache": ..., "consistency": ..., "recovery": ...}``: the flusher's,
        the tiered cache's and the consistency monitor's stats dicts, and the recovery
        watermark with the entries recovery set aside (``failures``: key, revision, reason)."""
        with self.dirty:
            self.monitor.pending_since(self.dirty.oldest())
        return ManagerStats(
            flush=self.flusher.stats(),
            cache=self.cache.stats(),
            consistency=self.monitor.stats(),
            recovery=RecoveryStats(
                watermark=None if self._position is None else self._position.watermark,
                failures=[failure_info(f) for f in self.recovery_failures],
            ),
        )

    def health(self) -> HealthStatus:
        """HEALTHY, DEGRADED (lag p95 or the oldest pending write over the window) or
        UNHEALTHY (a write pending for longer than the monitor's ``unhealthy_after``)."""
        return HealthStatus(self.stats()["consistency"]["status"])

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush pending writes (up to ``timeout``), stop the flusher and the cache's watch.

        If the flush does not finish, ``OutcomeUnknown`` is raised after closing: the writes are
        in KV, and the next manager's recovery pass will move them to SQL.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self.flusher.close(timeout)
        finally:
            self.cache.close()
            if self._owns:
                self.kv.close()
                self.storage.close()

    def abandon(self) -> None:
        """Drop the manager as a killed process would (for crash tests): pending writes are
        forgotten here, not flushed; they stay in KV and the next recovery pass stores them."""
        self._closed = True
        self.flusher.abandon()
        self.cache.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
