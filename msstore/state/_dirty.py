"""The dirty set: writes the KV acknowledged that the SQL tier has not committed yet.

Pure bookkeeping, no I/O: the hybrid manager adds to it after every acknowledged KV write, the
flusher takes batches from it and puts a batch back when its transaction failed. One pending
write per key is kept (the newest revision); an older one it replaces is covered by it.

It doubles as the flusher's condition variable: writers notify it when the set becomes
non-empty (so the flusher starts its max-lag clock) and when it reaches the threshold, and not
on every write, which keeps a write's cost to a dict store under a lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import attrs

from msstore.codec import Encoded

__all__ = ["DirtySet", "Pending"]


@attrs.define(slots=True)
class Pending:
    """One acknowledged write (or delete, ``deleted=True``) waiting for the SQL tier.

    ``revision`` is the KV revision; ``first_at`` is when the oldest write to the key that this
    one covers happened (``time.monotonic()``), the start of its consistency lag; ``wall`` is
    the write's Unix time; ``seq`` orders writes within this process and ``first_seq`` is the
    ``seq`` of the oldest write it covers; ``expires_at`` is the value's own expiry (Unix
    seconds; a write with a ``ttl``).
    """

    key: str
    raw: bytes
    revision: int
    first_at: float
    wall: float
    seq: int
    first_seq: int
    deleted: bool = False
    expires_at: float | None = None
    encoded: Encoded | None = None
    """``raw`` as the manager's codec returned it (saves the flusher building it again)."""


class DirtySet(threading.Condition):
    """Pending writes by key, with the counters the flush policy reads (thread-safe)."""

    def __init__(self, *, threshold: int, wall: Callable[[], float] = time.time) -> None:
        super().__init__(threading.Lock())
        self._wall = wall
        self.threshold = threshold
        self._items: dict[str, Pending] = {}
        self._seq = 0
        self._inflight: list[Pending] = []

    def add(
        self,
        key: str,
        raw: bytes,
        revision: int,
        *,
        deleted: bool = False,
        expires_at: float | None = None,
        encoded: Encoded | None = None,
    ) -> Pending:
        """Record an acknowledged write; wakes the flusher when it has work to start or do."""
        now = time.monotonic()
        with self:
            self._seq += 1
            old = self._items.get(key)
            if old is not None and old.revision > revision:
                return old  # a newer write of the key got here first
            pending = Pending(
                key,
                raw,
                revision,
                old.first_at if old else now,
                self._wall(),
                self._seq,
                old.first_seq if old else self._seq,
                deleted,
                expires_at,
                encoded,
            )
            self._items[key] = pending
            count = len(self._items)
            if count in (1, self.threshold):
                self.notify_all()
            return pending

    def __len__(self) -> int:
        return len(self._items)

    def oldest(self) -> float | None:
        """``first_at`` of the oldest pending write, ``None`` when there is none (hold the lock)."""
        return min((p.first_at for p in self._items.values()), default=None)

    def take(self) -> list[Pending]:
        """Everything pending, now in flight (hold the lock)."""
        batch = list(self._items.values())
        self._items.clear()
        self._inflight = batch
        return batch

    def done(self) -> None:
        """The in-flight batch was committed (hold the lock)."""
        self._inflight = []
        self.notify_all()

    def restore(self, batch: Iterable[Pending]) -> None:
        """Put a failed batch back, except keys written again meanwhile (hold the lock)."""
        for pending in batch:
            newer = self._items.get(pending.key)
            if newer is None:
                self._items[pending.key] = pending
            else:
                newer.first_at = min(newer.first_at, pending.first_at)
                newer.first_seq = min(newer.first_seq, pending.first_seq)
        self._inflight = []
        self.notify_all()

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest write recorded."""
        return self._seq

    def lowest_seq(self) -> int | None:
        """The oldest write not yet committed, pending or in flight (hold the lock)."""
        seqs = [p.first_seq for p in self._items.values()]
        seqs.extend(p.first_seq for p in self._inflight)
        return min(seqs, default=None)

    def pending_keys(self) -> list[str]:
        """The keys waiting to be flushed, sorted."""
        with self:
            return sorted(self._items)
