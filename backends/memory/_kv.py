"""An in-process KV bucket with JetStream KV semantics, for tests, scripts and benchmarks."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Set
from typing import Any, Final

from msstore import keys as keygrammar
from msstore.buckets import BucketConfig
from msstore.capabilities import Capability
from msstore.codec import Codec
from msstore.errors import DuplicateKey, InvalidArgument
from msstore.protocols import ChangeFeed
from msstore.records import Entry, FeedState, Operation
from msstore.spi import KV_CAPABILITIES, KVBase, QueueWatcher, check_revision, stale_revision

__all__ = ["MemoryKV"]

ALL_CAPABILITIES: Final = KV_CAPABILITIES | {Capability.PER_KEY_TTL}


class MemoryKV(KVBase, ChangeFeed):
    """A thread-safe KV bucket in this process's memory.

    Same semantics as a JetStream KV bucket: bucket-wide revisions that only grow, delete markers
    vs purge, bounded history, bucket and per-key TTL (each revision expires on its own, as
    JetStream messages do), wildcard key listing and ordered watches. ``clock`` returns Unix
    seconds; tests may pass a fake one. ``capabilities`` may be narrowed to mimic a server that
    lacks some (calls needing a missing one raise ``Unsupported``).
    """

    def __init__(
        self,
        config: BucketConfig | None = None,
        *,
        codec: Codec | None = None,
        clock: Callable[[], float] = time.time,
        capabilities: Set[Capability] | None = None,
    ) -> None:
        self.config = config or BucketConfig(name="memory")
        self._codec = codec or Codec(max_value_bytes=self.config.max_value_bytes)
        self._clock = clock
        caps = set(ALL_CAPABILITIES if capabilities is None else capabilities)
        if not self.config.per_key_ttl:
            caps.discard(Capability.PER_KEY_TTL)
        unknown = caps - ALL_CAPABILITIES
        if unknown:
            raise InvalidArgument(f"memory KV cannot declare {sorted(c.value for c in unknown)}")
        self._caps = frozenset(caps)
        self._lock = threading.RLock()
        self._seq = 0
        self._hist: dict[str, list[Entry]] = {}
        self._watchers: list[QueueWatcher] = []
        self._incarnation = f"memory:{uuid.uuid4()}"

    def __repr__(self) -> str:
        return f"MemoryKV(name={self.name!r}, history={self.config.history})"

    # Internals (hold the lock) -------------------------------------------------------------

    def _live(self, key: str, now: float) -> list[Entry]:
        """The key's unexpired revisions, oldest first; expired ones are dropped for good."""
        hist = self._hist.get(key)
        if hist is None:
            return []
        for e in hist:
            if e.expires_at is not None and e.expires_at <= now:
                break
        else:
            return hist
        alive = [e for e in hist if e.expires_at is None or e.expires_at > now]
        if alive:
            self._hist[key] = alive
        else:
            del self._hist[key]
        return alive

    def _append(self, key: str, raw: bytes, op: Operation, key_ttl: int | None) -> int:
        now = self._clock()
        self._seq += 1
        ttl = key_ttl if key_ttl is not None else self.config.ttl
        entry = Entry(
            self.config.name,
            key,
            raw,
            self._seq,
            now,
            op,
            None if ttl is None else now + ttl,
            None if key_ttl is None else float(key_ttl),
        )
        hist = self._hist.get(key)
        # A purge, or a revision with its own TTL (a roll-up, as the NATS backend writes it:
        # when it expires, no revision it overwrote shows through), replaces the history.
        if hist is None or op is Operation.PURGE or key_ttl is not None:
            self._hist[key] = [entry]
        else:
            hist.append(entry)
            if len(hist) > self.config.history:
                del hist[: len(hist) - self.config.history]
        for watcher in self._watchers:
            if keygrammar.match(watcher.pattern, key):
                watcher.deliver(entry)
        return self._seq

    def _expect(self, key: str, expected: int, now: float) -> None:
        hist = self._live(key, now)
        current = hist[-1].revision if hist else 0  # 0: no entry at all, not even a marker
        if current != expected:
            raise stale_revision(key, expected, current or None)

    # KeyValueStore ---------------------------------------------------------------------------

    def get(self, key: str, *, revision: int | None = None) -> Entry | None:
        if key not in self._hist:  # stored keys were checked when written
            keygrammar.check_key(key)
        self._check_open()
        if revision is not None:
            self._require(Capability.HISTORY)
            check_revision(revision, "revision")
        with self._lock:
            hist = self._live(key, self._clock())
            if revision is None:
                if hist and hist[-1].operation is Operation.PUT:
                    # A fresh Entry per read: the lazily decoded value belongs to this caller.
                    e = hist[-1]
                    return _copy(e)
                return None
            for e in hist:
                if e.revision == revision:
                    return _copy(e)
            return None

    def put(self, key: str, value: Any, *, ttl: float | None = None) -> int:
        raw, key_ttl = self._prepare(key, value, ttl)
        with self._lock:
            return self._append(key, raw, Operation.PUT, key_ttl)

    def _foreign_put(self, key: str, raw: bytes) -> int:
        """``raw`` as the next revision, unchecked (:func:`msstore.testing.foreign.foreign_put`)."""
        keygrammar.check_key(key)
        self._check_open()
        with self._lock:
            return self._append(key, bytes(raw), Operation.PUT, None)

    def create(self, key: str, value: Any, *, ttl: float | None = None) -> int:
        raw, key_ttl = self._prepare(key, value, ttl, cas=True)
        with self._lock:
            hist = self._live(key, self._clock())
            if hist and hist[-1].operation is Operation.PUT:
                raise DuplicateKey(
                    f"{key!r} already exists (revision {hist[-1].revision})",
                    key=key,
                    hint="use put() to overwrite or update() for CAS",
                )
            return self._append(key, raw, Operation.PUT, key_ttl)

    def update(
        self, key: str, value: Any, *, expected_revision: int, ttl: float | None = None
    ) -> int:
        raw, key_ttl = self._prepare(key, value, ttl, cas=True, expected_revision=expected_revision)
        with self._lock:
            self._expect(key, expected_revision, self._clock())
            return self._append(key, raw, Operation.PUT, key_ttl)

    def _marker(self, key: str, op: Operation, expected_revision: int | None) -> int:
        keygrammar.check_key(key)
        if expected_revision is not None:
            self._require(Capability.CAS)
            check_revision(expected_revision)
        self._check_open()
        with self._lock:
            if expected_revision is not None:
                self._expect(key, expected_revision, self._clock())
            return self._append(key, b"", op, None)

    def delete(self, key: str, *, expected_revision: int | None = None) -> int:
        return self._marker(key, Operation.DEL, expected_revision)

    def purge(self, key: str, *, expected_revision: int | None = None) -> int:
        self._require(Capability.PURGE)
        return self._marker(key, Operation.PURGE, expected_revision)

    def keys(self, pattern: str | None = None, *, prefix: str | None = None) -> list[str]:
        self._check_listing(pattern, prefix)
        with self._lock:
            now = self._clock()
            found = [
                k
                for k in list(self._hist)
                if (prefix is None or k.startswith(prefix))
                and (pattern is None or keygrammar.match(pattern, k))
                and (hist := self._live(k, now))
                and hist[-1].operation is Operation.PUT
            ]
        return sorted(found)

    def history(self, key: str) -> list[Entry]:
        self._require(Capability.HISTORY)
        keygrammar.check_key(key)
        self._check_open()
        with self._lock:
            return [_copy(e) for e in self._live(key, self._clock())]

    def watch(self, pattern: str = ">", *, include_history: bool = False) -> QueueWatcher:
        self._require(Capability.WATCH)
        keygrammar.check_pattern(pattern)
        self._check_open()
        watcher = QueueWatcher(pattern, on_stop=self._unwatch)
        with self._lock:
            now = self._clock()
            initial = []
            for key in list(self._hist):
                if keygrammar.match(pattern, key):
                    hist = self._live(key, now)
                    initial.extend(hist if include_history else hist[-1:])
            for entry in sorted(initial, key=lambda e: e.revision):
                watcher.deliver(entry)
            self._watchers.append(watcher)
        return watcher

    def _unwatch(self, watcher: QueueWatcher) -> None:
        with self._lock:
            if watcher in self._watchers:
                self._watchers.remove(watcher)

    def put_many(
        self, items: Mapping[str, Any] | Iterable[tuple[str, Any]], *, ttl: float | None = None
    ) -> list[int]:
        encoded, key_ttl = self._prepare_batch(items, ttl)
        with self._lock:
            return [self._append(k, raw, Operation.PUT, key_ttl) for k, raw in encoded]

    def get_many(self, keys: Iterable[str]) -> dict[str, Entry | None]:
        return {k: self.get(k) for k in self._check_keys(keys)}

    # ChangeFeed -------------------------------------------------------------------------------

    def feed_state(self) -> FeedState:
        self._check_open()
        with self._lock:
            return FeedState(self._incarnation, self._seq)

    def latest(self, key: str) -> Entry | None:
        keygrammar.check_key(key)
        self._check_open()
        with self._lock:
            hist = self._live(key, self._clock())
            if not hist:
                return None
            e = hist[-1]
            return _copy(e)

    def latest_many(self, keys: Iterable[str]) -> dict[str, Entry | None]:
        return {k: self.latest(k) for k in self._check_keys(keys)}

    def changes(self, after: int, *, limit: int = 10_000) -> list[Entry]:
        if type(after) is not int or after < 0 or type(limit) is not int or limit < 1:
            raise InvalidArgument(f"changes needs after >= 0 and limit >= 1, got {after}, {limit}")
        self._check_open()
        with self._lock:
            now = self._clock()
            found = [
                e for key in list(self._hist) for e in self._live(key, now) if e.revision > after
            ]
        found.sort(key=lambda e: e.revision)
        return found[:limit]

    def _release(self) -> None:
        with self._lock:
            watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            watcher.stop()


def _copy(e: Entry) -> Entry:
    """A fresh Entry per read: the lazily decoded value belongs to the caller."""
    return Entry(e.bucket, e.key, e.raw, e.revision, e.created, e.operation, e.expires_at, e.ttl)
