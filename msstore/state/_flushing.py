"""The background flusher: moves the dirty set into the SQL tier in version-guarded batches.

One thread per hybrid manager. It sleeps on the dirty set and wakes when the set reaches the
threshold, when its oldest write is ``max_lag`` old, when someone calls :meth:`Flusher.flush`,
and every ``reconcile_every`` seconds for a recovery pass (:mod:`msstore.state._recovery`). A batch
is one ``upsert_many`` (one transaction) through :func:`msstore.state.write_batch`, deletes
included as tombstones (so the version guard refuses any older write of a deleted key).

A batch that fails with a retryable error (PostgreSQL down, a lost connection) goes back into
the dirty set and is retried after an exponential backoff with full jitter, for as long as it
takes: nothing acknowledged is dropped, and the
writes stay in KV meanwhile. A batch that fails permanently (a row the SQL tier refuses) is split
in halves until the refused rows are isolated; those are logged at ERROR, counted in
``stats()["failed"]``, kept in :attr:`Flusher.failed` and the ledger's failure table, raised by
the next ``flush()`` as :class:`~msstore.errors.FlushError`, and not retried.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import attrs

from msstore._internal import telemetry
from msstore.capabilities import Capability
from msstore.codec import Encoded, default_codec
from msstore.errors import FlushError, InvalidArgument, MsstoreError, OutcomeUnknown
from msstore.protocols import DataStorage
from msstore.records import FlushFailure, Record
from msstore.spi import check_int, check_retention, check_seconds

from ._batching import set_aside, write_batch
from ._consistency import ConsistencyMonitor
from ._dirty import DirtySet, Pending
from ._stats import FailureInfo, FlushStats

__all__ = ["FlushPolicy", "Flusher"]

log = logging.getLogger("msstore.state.flush")

# What the metrics report of flushing (msstore.ops.metrics).
_BATCH_SECONDS: Final = telemetry.histogram("flush_duration_seconds")
_BATCH_ROWS: Final = telemetry.histogram(
    "flush_batch_rows", bounds=(1, 5, 10, 25, 50, 100, 200, 500, 1000, 2500, 5000)
)
_LAG: Final = telemetry.histogram("flush_lag_seconds", bounds=telemetry.LAG_BUCKETS)
_ROWS: Final = {
    o: telemetry.counter("flush_rows", o) for o in ("written", "skipped", "removed", "refused")
}
_RETRIES: Final = telemetry.counter("flush_retries")


@attrs.frozen(kw_only=True)
class FlushPolicy:
    """When the flusher runs (defaults: 50 dirty keys, or 100 ms after the oldest write).

    ``threshold``: flush when this many keys are dirty. ``max_lag``: flush when the oldest
    dirty write is this many seconds old. ``reconcile_every``: seconds between recovery passes
    (0 disables the periodic pass; the one at open still runs). ``retry_initial`` /
    ``retry_max``: backoff bounds in seconds after a failed batch. ``tombstone_retention``:
    seconds a delete's tombstone stays in SQL at least (one day; it must exceed the bucket TTL,
    which bounds how long a delete marker stays in KV, and any flush outage you mean to ride
    out, or a write older than the delete could land after the tombstone is gone).
    """

    threshold: int = 50
    max_lag: float = 0.1
    reconcile_every: float = 30.0
    retry_initial: float = 0.05
    retry_max: float = 2.0
    tombstone_retention: float = 86_400.0

    def __attrs_post_init__(self) -> None:
        check_int(self.threshold, field="threshold", minimum=1)
        for name in ("max_lag", "retry_initial", "retry_max"):
            check_seconds(getattr(self, name), field=name)
        check_seconds(self.reconcile_every, field="reconcile_every", inclusive=True)
        if self.retry_max < self.retry_initial:
            raise InvalidArgument(
                f"retry_max must be >= retry_initial ({self.retry_initial:g}), "
                f"got {self.retry_max!r}"
            )
        check_retention(self.tombstone_retention)


def _encoded(p: Pending) -> Encoded:
    return p.encoded if p.encoded is not None else Encoded.canonical_bytes(p.raw)


def _decoded(p: Pending) -> Any:
    return default_codec.decode(p.raw)


def _flush_error(failed: list[FlushFailure]) -> FlushError:
    return FlushError(
        f"{len(failed)} writes could not be stored in SQL: "
        + ", ".join(f"{f.key!r} ({f.reason})" for f in failed[:5])
        + (" ..." if len(failed) > 5 else ""),
        failures=failed,
        hint="they stay in KV; see stats()['flush']['failures']",
    )


class Flusher:
    """Runs the flush loop on a daemon thread; see the module docstring.

    ``version_of`` maps a KV revision to the SQL version; ``reconcile`` runs a recovery pass
    (or is ``None`` when the stores cannot recover).
    """

    def __init__(
        self,
        *,
        name: str,
        dirty: DirtySet,
        storage: DataStorage,
        policy: FlushPolicy,
        monitor: ConsistencyMonitor,
        version_of: Callable[[int], int],
        reconcile: Callable[[], object] | None = None,
    ) -> None:
        self._dirty = dirty
        self._storage = storage
        self._policy = policy
        self._monitor = monitor
        self._version_of = version_of
        self._reconcile = reconcile
        # The manager's one encoding goes through as it is where the store takes it.
        self._value: Callable[[Pending], Any] = (
            _encoded if Capability.ENCODED_VALUES in storage.capabilities else _decoded
        )
        self._stop = False
        self._wanted = 0  # flush() asked for every write up to this seq
        self._last_error: Exception | None = None
        self._name = name
        self._failures: list[tuple[int, FlushFailure]] = []  # (seq of the write, failure)
        self._reported = 0  # failures up to here were raised by a flush() already
        self._stats = {
            "batches": 0,
            "rows_written": 0,
            "rows_skipped": 0,
            "rows_removed": 0,
            "retries": 0,
            "failed": 0,
            "reconciles": 0,
        }
        self._thread = threading.Thread(
            target=self._loop, name=f"msstore-flush-{name}", daemon=True
        )
        self._thread.start()

    # The loop ---------------------------------------------------------------------------------

    def _due(self, now: float) -> float | None:
        """Seconds until the next flush is due: 0 now, ``None`` when nothing is waiting."""
        dirty = self._dirty
        if not len(dirty):
            return None
        if len(dirty) >= dirty.threshold or self._stop:
            return 0.0
        lowest = dirty.lowest_seq()
        if lowest is not None and lowest <= self._wanted:
            return 0.0
        oldest = dirty.oldest()
        return 0.0 if oldest is None else max(0.0, oldest + self._policy.max_lag - now)

    def _loop(self) -> None:
        every = self._policy.reconcile_every
        next_reconcile = time.monotonic() + every if every else float("inf")
        attempt = 0
        while True:
            with self._dirty:
                while True:
                    now = time.monotonic()
                    due = self._due(now)
                    if due == 0.0:
                        break
                    if self._stop:
                        return
                    if now >= next_reconcile:
                        break
                    timeout = (
                        next_reconcile - now if due is None else min(due, next_reconcile - now)
                    )
                    self._dirty.wait(None if timeout == float("inf") else timeout)
                batch = self._dirty.take() if due == 0.0 else []
            if now >= next_reconcile and self._reconcile is not None:
                self._run_reconcile()
                next_reconcile = time.monotonic() + every
            if not batch:
                continue
            try:
                self._write(batch)
            except Exception as err:
                attempt += 1
                self._stats["retries"] += 1
                _RETRIES.inc()
                self._last_error = err
                pause = self._wait_for(attempt)
                log.warning(
                    "flush of %d keys failed (%r); retry %d in %.2fs",
                    len(batch),
                    err,
                    attempt,
                    pause,
                )
                with self._dirty:
                    self._dirty.restore(batch)
                    self._monitor.pending_since(self._dirty.oldest())
                    if self._stop:  # close() already waited its timeout for this
                        return
                    self._dirty.wait(pause)
            else:
                attempt = 0
                self._last_error = None
                with self._dirty:
                    self._dirty.done()
                    self._monitor.pending_since(self._dirty.oldest())

    def _wait_for(self, attempt: int) -> float:
        # Full jitter: spread the retries of every process that lost PostgreSQL at once.
        ceiling = min(self._policy.retry_max, self._policy.retry_initial * 2**attempt)
        return random.uniform(self._policy.retry_initial, max(ceiling, self._policy.retry_initial))

    def _run_reconcile(self) -> None:
        assert self._reconcile is not None
        try:
            self._reconcile()
            self._stats["reconciles"] += 1
        except MsstoreError as err:
            log.warning("periodic reconcile failed (%s); next pass will retry", err)

    def _write(self, batch: list[Pending]) -> list[FlushFailure]:
        """One batch through the shared batch writer: writes and tombstones in one upsert;
        the records the store refuses are set aside (see :meth:`_set_aside`)."""
        version_of = self._version_of
        value = self._value
        records = [
            Record(p.key, None, version_of(p.revision), p.wall, deleted=True)
            if p.deleted
            else Record(p.key, value(p), version_of(p.revision), p.wall, p.expires_at)
            for p in batch
        ]
        start = time.perf_counter()
        outcome = write_batch(self._storage, records)
        _BATCH_SECONDS.observe(time.perf_counter() - start)
        _BATCH_ROWS.observe(len(records))
        removed = sum(p.deleted for p in batch)
        self._stats["rows_written"] += outcome.written
        self._stats["rows_skipped"] += outcome.skipped
        self._stats["rows_removed"] += removed
        _ROWS["written"].inc(outcome.written)
        _ROWS["skipped"].inc(outcome.skipped)
        _ROWS["removed"].inc(removed)
        failures = []
        if outcome.refused:
            refused = {r.key: str(err) for r, err in outcome.refused}
            failures = self._set_aside([(p, refused[p.key]) for p in batch if p.key in refused])
        done = time.monotonic()
        self._stats["batches"] += 1
        lags = [done - p.first_at for p in batch]
        self._monitor.record(lags)
        _LAG.observe_many(lags)
        return failures

    def write_now(self, batch: list[Pending]) -> None:
        """Write ``batch`` on the caller's thread, now (the manager's write-through of values
        with their own TTL). Raises what the store raised, or ``FlushError`` for refused rows;
        those are not reported again by ``flush()``."""
        failures = self._write(batch)
        if failures:
            raise _flush_error(failures)

    def _set_aside(self, refused: list[tuple[Pending, str]]) -> list[FlushFailure]:
        """Writes the SQL tier refused for good: logged, kept for ``flush()`` to report and in
        the ledger for an operator, and not retried (they stay in KV)."""
        now = time.time()
        failures = [FlushFailure(self._name, p.key, p.revision, why, now) for p, why in refused]
        with self._dirty:
            self._failures.extend((p.seq, f) for (p, _), f in zip(refused, failures, strict=True))
        self._stats["failed"] += len(failures)
        _ROWS["refused"].inc(len(failures))
        try:
            set_aside(self._storage, failures, log)
        except MsstoreError as err:  # they are kept here and raised by flush() all the same
            log.warning("could not record %d flush failures: %s", len(failures), err)
        return failures

    # Control ---------------------------------------------------------------------------------

    def flush(self, timeout: float | None = 30.0) -> None:
        """Block until every write recorded before this call is committed to SQL.

        Raises ``OutcomeUnknown`` (with the last flush error) if that takes longer than
        ``timeout``; the writes are still in KV and still pending.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._dirty:
            target = self._dirty.last_seq
            self._wanted = max(self._wanted, target)
            self._dirty.notify_all()
            while True:
                lowest = self._dirty.lowest_seq()
                if lowest is None or lowest > target:
                    # (seq -1: a write-through, whose own call raised already)
                    failed = [
                        f for seq, f in self._failures[self._reported :] if 0 <= seq <= target
                    ]
                    self._reported = len(self._failures)
                    if failed:
                        raise _flush_error(failed)
                    return
                if not self._thread.is_alive():
                    raise OutcomeUnknown("the flusher thread is not running", hint="reopen")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise OutcomeUnknown(
                        f"{len(self._dirty)} writes not flushed to SQL within {timeout}s"
                        + (f"; last error: {self._last_error}" if self._last_error else ""),
                        hint="they are in KV and stay pending; the flusher keeps retrying",
                    )
                self._dirty.wait(remaining if remaining is not None else 1.0)

    def reconcile_now(self) -> None:
        """Run a recovery pass now (when the flusher has one), instead of waiting for its
        interval."""
        if self._reconcile is not None:
            self._run_reconcile()

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush what is pending (up to ``timeout``), then stop the thread."""
        try:
            if self._thread.is_alive():
                self.flush(timeout)
        finally:
            with self._dirty:
                self._stop = True
                self._dirty.notify_all()
            self._thread.join(5.0)

    @property
    def failed(self) -> list[FlushFailure]:
        """Every write the SQL tier refused, oldest first."""
        with self._dirty:
            return [f for _, f in self._failures]

    def abandon(self) -> list[Pending]:
        """Stop as a killed process would: drop the pending writes (returned) and stop the
        thread without flushing them. They stay in KV, where recovery finds them."""
        with self._dirty:
            dropped = self._dirty.take()
            self._dirty.done()
            self._stop = True
            self._dirty.notify_all()
        self._thread.join(5.0)
        return dropped

    def stats(self) -> FlushStats:
        """``batches``, ``rows_written``, ``rows_skipped`` (older than SQL), ``rows_removed``
        (tombstones written), ``retries``, ``failed`` (refused rows), ``reconciles``,
        ``pending`` (dirty keys), ``failures`` (the last 100 refused writes: key, revision,
        reason) and ``last_error``."""
        counts = self._stats
        return FlushStats(
            batches=counts["batches"],
            rows_written=counts["rows_written"],
            rows_skipped=counts["rows_skipped"],
            rows_removed=counts["rows_removed"],
            retries=counts["retries"],
            failed=counts["failed"],
            reconciles=counts["reconciles"],
            pending=len(self._dirty),
            failures=[failure_info(f) for f in self.failed[-100:]],
            last_error=None if self._last_error is None else repr(self._last_error),
        )


def failure_info(failure: FlushFailure) -> FailureInfo:
    return FailureInfo(
        bucket=failure.bucket,
        key=failure.key,
        revision=failure.revision,
        reason=failure.reason,
        seen_at=failure.seen_at,
    )
