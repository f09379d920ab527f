"""The write-ahead log of graph checkpoints: a KV bucket written first, the store behind it.

A put or a batch of pending writes is one KV write (one round trip, acknowledged when the
bucket has it); a flusher thread applies what was logged to the checkpoint store in batches
(at most ``batch`` entries, at most ``max_lag`` seconds after the first), in log order, and
then replaces each applied entry by an empty marker that expires (``marker_ttl``), so the
bucket holds only what is not applied yet. Every entry carries its log revision as its
``seq``, and the store keeps the newest of a row by it, so applying an entry twice, or late,
changes nothing: recovery may apply any entry any number of times.

Recovery: when the log opens, every entry in the bucket (one a dead process logged but never
applied) is applied; then, every ``recover_every`` seconds, entries older than ``settle``
seconds are (another process's, dead since).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Final

import attrs

from msstore.codec import Encoded
from msstore.errors import InvalidArgument, MsstoreError, StoreClosed
from msstore.protocols import ChangeFeed, KeyValueStore
from msstore.spi import check_int

from . import _frames as frames
from ._records import CheckpointPut, WritesPut

__all__ = ["CheckpointLog"]

log = logging.getLogger("msstore.graphs.log")

Entry = CheckpointPut | WritesPut
PREFIX: Final = "graphs"
_EMPTY: Final = Encoded(b"", exponent_floats=False)


def _positive(value: object, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise InvalidArgument(f"{name} must be a number of seconds > 0, got {value!r}")
    return float(value)


class CheckpointLog:
    """Entries logged to ``kv`` and applied by ``apply`` (see the module docstring).

    ``apply(entries)`` writes entries to the store in one transaction (raising if it cannot:
    they stay logged and pending, and are retried). ``kv`` must keep a change feed
    (``NatsKV``, ``MemoryKV``) and allow per-key TTLs.
    """

    def __init__(
        self,
        kv: KeyValueStore,
        apply: Callable[[Sequence[Entry]], object],
        *,
        max_lag: float = 0.05,
        batch: int = 256,
        marker_ttl: float = 60.0,
        recover_every: float = 30.0,
        settle: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(kv, ChangeFeed):
            raise InvalidArgument(
                f"{kv!r} keeps no change feed: a checkpoint log needs one to recover from "
                "(NatsKV, MemoryKV)"
            )
        check_int(batch, field="batch", minimum=1)
        self.kv = kv
        self._feed: ChangeFeed = kv
        self._apply = apply
        self.max_lag = _positive(max_lag, "max_lag")
        self.batch = batch
        self.marker_ttl = _positive(marker_ttl, "marker_ttl")
        self.recover_every = _positive(recover_every, "recover_every")
        self.settle = _positive(settle, "settle")
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._draining = threading.Lock()
        self._pending: collections.deque[tuple[str, Entry]] = collections.deque()
        self._closed = False
        self._failure: MsstoreError | None = None
        self.applied = 0
        self.recovered = self.recover()
        self._thread = threading.Thread(target=self._run, name="msstore-graph-log", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"CheckpointLog({self.kv!r}, pending={len(self._pending)})"

    @property
    def pending(self) -> int:
        """Entries logged by this process and not applied yet."""
        return len(self._pending)

    def append(self, entries: Sequence[Entry]) -> list[Entry]:
        """Log the entries (one KV round trip); durable when this returns. The entries with
        their log revision as ``seq``, as they will be applied."""
        if self._closed:
            raise StoreClosed("the checkpoint log is closed")
        keyed = [(f"{PREFIX}.{uuid.uuid4().hex}", e) for e in entries]
        revisions = self.kv.put_many([(k, Encoded(frames.encode(e), False)) for k, e in keyed])
        logged = [(k, attrs.evolve(e, seq=r)) for (k, e), r in zip(keyed, revisions, strict=True)]
        with self._lock:
            self._pending.extend(logged)
            if len(self._pending) >= self.batch or len(self._pending) == len(logged):
                self._wake.notify()  # (a full batch, or the first entry: its lag starts)
        return [e for _, e in logged]

    def flush(self) -> None:
        """Apply everything this process logged (raises what applying raises)."""
        while self._pending:
            self._drain()

    def _drain(self) -> None:
        """Apply the oldest batch of pending entries, then mark them applied in the log."""
        with self._draining:
            with self._lock:
                taken = list(self._pending)[: self.batch]
            if not taken:
                return
            self._apply([e for _, e in taken])
            with self._lock:
                for _ in taken:
                    self._pending.popleft()
                self.applied += len(taken)
            self._mark([k for k, _ in taken])

    def _mark(self, keys: Sequence[str]) -> None:
        """Replace applied entries by expiring markers (a failure leaves them to be applied
        again by recovery, which changes nothing)."""
        try:
            self.kv.put_many([(k, _EMPTY) for k in keys], ttl=self.marker_ttl)
        except MsstoreError as err:
            log.warning("could not mark %d applied checkpoint entries: %s", len(keys), err)

    def recover(self, *, settled: bool = False) -> int:
        """Apply every entry in the log that this process is not holding (only those older
        than ``settle`` seconds when ``settled``); how many."""
        with self._lock:
            mine = {k for k, _ in self._pending}
        cutoff = self._clock() - self.settle
        found: list[tuple[str, Entry]] = []
        after = 0
        while True:
            page = self._feed.changes(after)
            for entry in page:
                if not entry.raw or entry.key in mine or entry.is_marker:
                    continue
                if settled and entry.created > cutoff:
                    continue
                found.append((entry.key, frames.decode(entry.raw, seq=entry.revision)))
            if len(page) < 10_000:
                break
            after = page[-1].revision
        for i in range(0, len(found), self.batch):
            chunk = found[i : i + self.batch]
            self._apply([e for _, e in chunk])
            self._mark([k for k, _ in chunk])
        if found:
            log.info("applied %d checkpoint entries logged by another process", len(found))
        return len(found)

    def _run(self) -> None:
        next_recovery = self._clock() + self.recover_every
        backoff = self.max_lag
        while True:
            with self._lock:
                if not self._pending and not self._closed:
                    self._wake.wait(self.recover_every)
                # (the batch fills while the lag runs; a full one goes at once)
                deadline = time.monotonic() + self.max_lag
                while self._pending and len(self._pending) < self.batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
                if self._closed:
                    return
            try:
                while self._pending:
                    self._drain()
                if self._clock() >= next_recovery:
                    next_recovery = self._clock() + self.recover_every
                    self.recover(settled=True)
                self._failure, backoff = None, self.max_lag
            except MsstoreError as err:
                if self._failure is None:
                    log.warning("applying logged checkpoints failed, retrying: %s", err)
                self._failure = err
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def close(self, timeout: float | None = 30.0) -> None:
        """Apply what is pending, stop the flusher. What cannot be applied stays logged."""
        try:
            self.flush()
        finally:
            with self._lock:
                self._closed = True
                self._wake.notify_all()
            self._thread.join(timeout)

    def abandon(self) -> None:
        """Stop the flusher without applying anything, as a crash would: what is pending
        stays logged, for the next log opened on the bucket to apply."""
        with self._lock:
            self._closed = True
            self._pending.clear()
            self._wake.notify_all()
        self._thread.join(30.0)
