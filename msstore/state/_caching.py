"""The read path: L1 in process -> KV -> SQL, with promotion and invalidation.

:class:`L1Cache` is a bounded LRU with a per-entry time to live, holding encoded values with
their KV revision (each hit decodes its own copy, so a caller mutating what it read cannot change
the cache). It never goes backwards: an entry is replaced only by a newer revision, and an
invalidation leaves a marker with the revision it saw, so a slow reader cannot put back a value
older than one already seen.

:class:`TieredCache` reads through the tiers. A KV hit is promoted to L1. A SQL hit hydrates:
the row is copied into KV with ``update(expected_revision=0)``, which JetStream refuses when the
key has any entry, a newer value or a delete marker (``create`` would write over a marker and
bring a deleted value back), together with the agent's other rows (the key's first token names
the agent), and promoted to L1. A row with its own expiry goes to KV with what remains of its
TTL, or is served from SQL without a KV copy when the KV cannot expire single keys. KV entries
and L1 entries are never served past their own TTL.
Writes made through the hybrid manager refresh L1 in process; with ``watch=True`` a KV watch
invalidates L1 entries that other processes overwrite.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from msstore import keys as keygrammar
from msstore._internal import telemetry
from msstore.capabilities import Capability
from msstore.codec import Codec, default_codec
from msstore.errors import DuplicateKey, MsstoreError, VersionConflict
from msstore.protocols import ChangeFeed, DataStorage, KeyValueStore
from msstore.records import Entry, Query, Record
from msstore.spi import check_int, check_many, check_seconds

from ._stats import CacheStats

__all__ = ["L1Cache", "TieredCache"]

log = logging.getLogger("msstore.state.cache")

# What the metrics report of reads: lookups per tier and result, over every cache of the process.
_LOOKUPS: Final = {
    f"{tier}_{counted}": telemetry.counter("cache_lookups", tier, result)
    for tier in ("l1", "kv", "sql")
    for counted, result in (("hits", "hit"), ("misses", "miss"))
}

_TIERS = ("l1", "kv", "sql")


class L1Cache:
    """A thread-safe LRU of ``key -> (raw, revision)`` with a time to live (seconds)."""

    def __init__(
        self,
        *,
        max_size: int = 10_000,
        ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_size = check_int(max_size, field="max_size", minimum=0)
        self.ttl = check_seconds(ttl, field="ttl")
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (raw or None for an invalidation marker, revision, expires)
        self._items: collections.OrderedDict[str, tuple[bytes | None, int, float]] = (
            collections.OrderedDict()
        )
        self.evictions = 0

    def get(self, key: str) -> tuple[bytes, int] | None:
        """The cached encoded value and its KV revision, ``None`` if absent, invalidated or
        expired."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            raw, revision, expires = item
            if expires <= self._clock():
                del self._items[key]
                return None
            if raw is None:
                return None
            self._items.move_to_end(key)
            return raw, revision

    def put(
        self, key: str, raw: bytes | None, revision: int, *, lifetime: float | None = None
    ) -> None:
        """Cache ``raw`` at ``revision`` unless a newer revision was seen; ``raw=None`` marks the
        key as changed at ``revision`` without a value (an invalidation). ``lifetime`` (seconds)
        is what remains of the value's own TTL: it is not cached past it."""
        if not self.max_size:
            return
        with self._lock:
            item = self._items.get(key)
            now = self._clock()
            if item is not None and item[1] > revision and item[2] > now:
                return
            ttl = self.ttl if lifetime is None else min(self.ttl, lifetime)
            if ttl <= 0:
                self._items.pop(key, None)
                return
            self._items[key] = (raw, revision, now + ttl)
            self._items.move_to_end(key)
            while len(self._items) > self.max_size:
                self._items.popitem(last=False)
                self.evictions += 1

    def discard(self, key: str) -> None:
        """Forget ``key``."""
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class TieredCache:
    """Reads ``key`` from L1, then ``kv``, then ``storage``; see the module docstring.

    ``hydrate_agent`` loads the agent's other rows into KV on a SQL hit (up to
    ``hydrate_limit`` rows). ``stats()`` counts hits and misses per tier.
    """

    def __init__(
        self,
        kv: KeyValueStore,
        storage: DataStorage,
        *,
        l1: L1Cache | None = None,
        watch: bool = False,
        hydrate_agent: bool = True,
        hydrate_limit: int = 1_000,
        codec: Codec | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.kv = kv
        self.storage = storage
        self.l1 = l1 if l1 is not None else L1Cache()
        self._codec = codec or default_codec
        self._hydrate_agent = hydrate_agent
        self._hydrate_limit = hydrate_limit
        self._wall = wall
        self._lock = threading.Lock()
        self._stats = {f"{tier}_{kind}": 0 for tier in _TIERS for kind in ("hits", "misses")}
        self._stats["hydrated"] = 0
        self._stats["invalidations"] = 0
        self._watcher: Any = None
        self._watch_thread: threading.Thread | None = None
        if watch and Capability.WATCH in kv.capabilities:
            self._start_watch()

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._stats[name] += n
        if name in _LOOKUPS:
            _LOOKUPS[name].inc(n)

    # Reading -----------------------------------------------------------------------------------

    def get(self, key: str) -> Any:
        """The value of ``key`` from the nearest tier that has it, ``None`` if none has."""
        found = self.get_with_revision(key)
        return None if found is None else found[0]

    def get_with_revision(self, key: str) -> tuple[Any, int, str] | None:
        """``(value, revision, tier)``; ``revision`` is the KV revision (after hydration for a
        SQL hit) and ``tier`` one of ``"l1"``, ``"kv"``, ``"sql"``."""
        cached = self.l1.get(key)
        if cached is not None:
            self._count("l1_hits")
            return self._codec.decode(cached[0]), cached[1], "l1"
        self._count("l1_misses")
        return self.load(key)

    def load(self, key: str) -> tuple[Any, int, str] | None:
        """Like :meth:`get_with_revision` without L1: KV, else SQL (hydrating KV)."""
        entry = self._latest(key)
        if entry is not None:
            self._count("kv_hits")
            return self._from_kv(key, entry)
        self._count("kv_misses")
        record = self.storage.retrieve(key)
        if record is None:
            self._count("sql_misses")
            return None
        self._count("sql_hits")
        revision = self._hydrate(key, record)
        if revision is not None:
            return record.value, revision, "sql"
        entry = self._latest(key)  # someone wrote the key meanwhile, or it stays out of KV
        return (record.value, 0, "sql") if entry is None else self._from_kv(key, entry)

    def _from_kv(self, key: str, entry: Entry) -> tuple[Any, int, str] | None:
        """What KV's newest ``entry`` of ``key`` reads as: nothing for a delete marker (SQL's
        row is on its way out) or a value past its own TTL; else its value, cached in L1."""
        left = self._lifetime(entry)
        if entry.is_marker or (left is not None and left <= 0):
            self.l1.put(key, None, entry.revision)
            return None
        self.l1.put(key, entry.raw, entry.revision, lifetime=left)
        return entry.value, entry.revision, "kv"

    def _lifetime(self, entry: Entry) -> float | None:
        """What remains of ``entry``'s own TTL (seconds), ``None`` when it has none."""
        if entry.ttl is None:
            return None
        return entry.created + entry.ttl - self._wall()

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Several keys; KV is read in one batch for the L1 misses."""
        wanted = list(dict.fromkeys(check_many(keys, field="keys", of="keys")))
        out: dict[str, Any] = {}
        missing = []
        for key in wanted:
            cached = self.l1.get(key)
            if cached is None:
                missing.append(key)
            else:
                out[key] = self._codec.decode(cached[0])
        self._count("l1_hits", len(wanted) - len(missing))
        self._count("l1_misses", len(missing))
        if missing:
            for key, entry in self.kv.get_many(missing).items():
                if entry is not None:
                    self._count("kv_hits")
                    found = self._from_kv(key, entry)
                else:  # absent, expired or deleted: the single-key path tells which
                    found = self.load(key)
                out[key] = None if found is None else found[0]
        return {k: out.get(k) for k in wanted}

    def _latest(self, key: str) -> Entry | None:
        if isinstance(self.kv, ChangeFeed):
            return self.kv.latest(key)
        return self.kv.get(key)

    def copy_to_kv(self, record: Record) -> int | None:
        """Write a SQL row into KV only where KV has no entry for its key at all (not even a
        delete marker: ``expected_revision=0``), with what remains of its TTL; the new revision,
        or ``None`` if KV has an entry or the row cannot carry its expiry there."""
        ttl = None
        left = None if record.expires_at is None else record.expires_at - self._wall()
        if left is not None:
            # Whole seconds, rounded down: the copy expires no later than the value (SQL has
            # the exact expiry and serves the value until then).
            ttl = math.floor(left)
            if ttl < 1 or Capability.PER_KEY_TTL not in self.kv.capabilities:
                return None  # served from SQL; a KV copy would outlive the value
        encoded = self._codec.encode_canonical(record.value)  # once, for KV and L1 alike
        value = encoded if Capability.ENCODED_VALUES in self.kv.capabilities else record.value
        try:
            revision = self.kv.update(record.key, value, expected_revision=0, ttl=ttl)
        except (VersionConflict, DuplicateKey):
            return None
        self._count("hydrated")
        self.l1.put(record.key, encoded.data, revision, lifetime=left)
        return revision

    def _hydrate(self, key: str, record: Record) -> int | None:
        """Copy ``record`` (and its agent's other rows) into KV; the key's new revision, or
        ``None`` if it was not copied (see :meth:`copy_to_kv`)."""
        revision = self.copy_to_kv(record)
        if self._hydrate_agent and "." in key:
            agent = keygrammar.agent_of(key) + "."
            try:
                rows = self.storage.search(Query(prefix=agent, limit=self._hydrate_limit))
                for row in rows:
                    if row.key != key:
                        self.copy_to_kv(row)
            except MsstoreError as err:  # the key itself is served; its neighbours can wait
                log.warning("hydrating agent %s into KV failed: %s", agent[:-1], err)
        return revision

    # Writing and invalidation -----------------------------------------------------------------

    def wrote(self, key: str, raw: bytes, revision: int, *, lifetime: float | None = None) -> None:
        """This process wrote ``key`` (with ``lifetime`` seconds to live): L1 now holds it."""
        self.l1.put(key, raw, revision, lifetime=lifetime)

    def invalidate(self, key: str, revision: int | None = None) -> None:
        """Drop ``key`` from L1 (remembering ``revision`` so older reads are not cached)."""
        if revision is None:
            self.l1.discard(key)
        else:
            self.l1.put(key, None, revision)
        self._count("invalidations")

    def _start_watch(self) -> None:
        self._watcher = self.kv.watch(">")
        self._watch_thread = threading.Thread(
            target=self._watch_loop, name=f"msstore-l1-watch-{self.kv.name}", daemon=True
        )
        self._watch_thread.start()

    def _watch_loop(self) -> None:
        for entry in self._watcher:
            cached = self.l1.get(entry.key)
            if cached is None or cached[1] < entry.revision:
                self.invalidate(entry.key, entry.revision)

    # Reporting and closing ---------------------------------------------------------------------

    def stats(self) -> CacheStats:
        """Hits and misses per tier, hydrated keys, invalidations, L1 size, evictions and hit
        ratio (see :class:`~msstore.state.CacheStats`)."""
        with self._lock:
            n = dict(self._stats)
        lookups = n["l1_hits"] + n["l1_misses"]
        return CacheStats(
            l1_hits=n["l1_hits"],
            l1_misses=n["l1_misses"],
            kv_hits=n["kv_hits"],
            kv_misses=n["kv_misses"],
            sql_hits=n["sql_hits"],
            sql_misses=n["sql_misses"],
            hydrated=n["hydrated"],
            invalidations=n["invalidations"],
            l1_size=len(self.l1),
            l1_evictions=self.l1.evictions,
            l1_hit_ratio=n["l1_hits"] / lookups if lookups else 0.0,
        )

    def close(self) -> None:
        """Stop the KV watch that invalidates the cache (when there is one)."""
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._watch_thread is not None:
            self._watch_thread.join(5.0)
            self._watch_thread = None
