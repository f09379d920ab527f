"""The outbox relay: committed outbox events to their stream, exactly once inside the stream's
deduplication window.

One pass (:meth:`OutboxRelay.run_once`) claims a batch from the :class:`OutboxSource` in its
transaction, sets aside the events that can never be published (a subject NATS refuses, a payload
over the sink's limit), publishes the rest with one call to the :class:`EventSink` (for JetStream:
one bridge crossing, every publish in flight at once, each acknowledgement awaited), and lets the
source mark what was stored, in the same transaction. The loop (:meth:`run`, or :meth:`start` on
a thread) runs passes back to back while batches come full, waits for the source's wake-up
(``NOTIFY msstore_outbox``) or the poll interval otherwise, and backs off (exponentially, to
``max_backoff``) while the sink is unreachable: events wait in the outbox, nothing is lost, and
they go out in outbox order once the sink is back.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Self

from msstore._internal import telemetry
from msstore.errors import InvalidArgument, MsstoreError
from msstore.records import HealthStatus
from msstore.spi import check_seconds

from ._bases import open_event_sink, open_outbox
from ._outbox import MAX_BATCH, BatchReport, EventSink, OutboxSource, relay_health

__all__ = ["OutboxRelay"]

log = logging.getLogger("msstore.coordination.relay")

# What the metrics report of relaying: events by outcome, over every relay of the process.
_EVENTS: Final = {
    o: telemetry.counter("outbox_events", o)
    for o in ("published", "duplicates", "failed", "retried")
}
RATE_WINDOW: Final = 10.0  # seconds over which publish_rate is measured
STOP_SLICE: Final = 0.2  # the longest a stopped loop keeps waiting


class OutboxRelay:
    """Moves outbox events from ``source`` to ``sink`` (see the module docstring).

    ``batch_size``: events per pass (1-10,000); ``poll_interval``: the longest wait between
    passes when no wake-up comes; ``lag_window``: how old the oldest waiting event may be before
    :meth:`health` says DEGRADED; ``purge_interval``: how often the loop deletes published rows
    past the source's retention; ``clock``: Unix seconds (for ages and rates).
    """

    def __init__(
        self,
        source: OutboxSource,
        sink: EventSink,
        *,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        lag_window: float = 1.0,
        max_backoff: float = 2.0,
        purge_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
        owns: bool = False,
    ) -> None:
        if type(batch_size) is not int or not 1 <= batch_size <= MAX_BATCH:
            raise InvalidArgument(
                f"batch_size must be an int from 1 to {MAX_BATCH:,}, got {batch_size!r}"
            )
        self.source = source
        self.sink = sink
        self.batch_size = batch_size
        self.poll_interval = check_seconds(poll_interval, field="poll_interval")
        self.lag_window = check_seconds(lag_window, field="lag_window")
        self.max_backoff = check_seconds(max_backoff, field="max_backoff")
        self.purge_interval = check_seconds(purge_interval, field="purge_interval")
        self._clock = clock
        self._owns = owns
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._recent: collections.deque[tuple[float, int]] = collections.deque()
        self._totals = {
            "published": 0,
            "duplicates": 0,
            "failed": 0,
            "retried": 0,
            "batches": 0,
            "errors": 0,
        }
        self._last_error: str | None = None
        self._next_purge = 0.0
        telemetry.track("relay", self)

    @classmethod
    def connect(
        cls,
        *,
        dsn: str,
        nats_url: str,
        keep_published: float = 3600.0,
        request_timeout: float = 5.0,
        **options: Any,
    ) -> OutboxRelay:
        """A relay from the outbox at ``dsn`` (:func:`~msstore.coordination.open_outbox`) to
        the event sink at ``nats_url`` (:func:`~msstore.coordination.open_event_sink`; the
        ``NATS_*`` variables fill in credentials and TLS); it owns both. ``options``: the
        constructor's settings."""
        source = open_outbox(dsn, keep_published=keep_published)
        try:
            sink = open_event_sink(nats_url, request_timeout=request_timeout)
        except BaseException:
            source.close()
            raise
        return cls(source, sink, owns=True, **options)

    # -- one pass ---------------------------------------------------------------------------

    def run_once(self) -> BatchReport:
        """One pass (see the module docstring); errors of the source propagate."""
        report = self.source.relay_batch(self.batch_size, self.sink.publish_batch)
        self._count(report)
        return report

    def drain(self) -> int:
        """Pass after pass until one claims nothing (everything committed so far is relayed or
        set aside); return the events published. For scripts, shutdown and tests."""
        published = 0
        while True:
            report = self.run_once()
            published += report.published
            if report.claimed == 0:
                return published

    def _count(self, report: BatchReport) -> None:
        with self._lock:
            totals = self._totals
            totals["published"] += report.published
            totals["duplicates"] += report.duplicates
            totals["failed"] += report.failed
            totals["retried"] += report.retried
            totals["batches"] += 1
            for outcome in ("published", "duplicates", "failed", "retried"):
                if getattr(report, outcome):
                    _EVENTS[outcome].inc(getattr(report, outcome))
            if report.retry_reason is not None:
                self._last_error = report.retry_reason
            if report.published:
                now = self._clock()
                self._recent.append((now, report.published))
                self._trim(now)

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - RATE_WINDOW:
            self._recent.popleft()

    # -- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Relay until ``stop`` (or :meth:`stop`) is set (see the module docstring)."""
        stop = stop or self._stop
        delay = 0.0
        while not stop.is_set() and not self._stop.is_set():
            try:
                report = self.run_once()
                self._maybe_purge()
            except MsstoreError as err:
                with self._lock:
                    self._totals["errors"] += 1
                    self._last_error = str(err)
                log.warning("outbox relay: %s", err)
                delay = min(max(delay * 2, 0.05), self.max_backoff)
                stop.wait(delay)
                continue
            if report.retried:
                delay = min(max(delay * 2, 0.05), self.max_backoff)
                log.info("outbox relay: %d event(s) wait: %s", report.retried, report.retry_reason)
                stop.wait(delay)
            elif report.claimed >= self.batch_size or report.held_back:
                delay = 0.0
                if report.held_back and report.claimed == report.held_back:
                    stop.wait(0.01)  # another relay holds the head of these subjects
            else:
                delay = 0.0
                self._idle(stop)

    def _idle(self, stop: threading.Event) -> None:
        """Wait for the source's wake-up, at most ``poll_interval``, in slices short enough
        for :meth:`stop` to be prompt."""
        deadline = time.monotonic() + self.poll_interval
        while not stop.is_set() and not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self.source.wait(min(left, STOP_SLICE)):
                return

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now >= self._next_purge:
            self._next_purge = now + self.purge_interval
            purged = self.source.purge_published()
            if purged:
                log.debug("outbox relay: purged %d published row(s)", purged)

    def start(self) -> Self:
        """Run the loop on a daemon thread (``msstore-outbox-relay``) until :meth:`stop`."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self.run, name="msstore-outbox-relay", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop after its current pass (which commits or rolls back whole)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        """True while the relay's thread (from :meth:`start`) runs."""
        return self._thread is not None and self._thread.is_alive()

    # -- observing --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Outbox depth, the oldest waiting event's age, the publish rate (events/s over the
        last 10 s), totals of this relay, and its last error."""
        outbox = self.source.stats()
        now = self._clock()
        with self._lock:
            self._trim(now)
            recent = sum(n for _, n in self._recent)
            totals = dict(self._totals)
            last_error = self._last_error
        return {
            "depth": outbox.depth,
            "oldest_age_s": outbox.oldest_age(now),
            "failed_rows": outbox.failed,
            "publish_rate": recent / RATE_WINDOW,
            **totals,
            "last_error": last_error,
            "running": self.running,
        }

    def health(self) -> tuple[HealthStatus, str]:
        """HEALTHY, DEGRADED (the oldest waiting event is older than ``lag_window``, or events
        sit set aside as failed) or UNHEALTHY (NATS cannot be reached: events wait, nothing is
        lost; or the outbox cannot be read), with the reason."""
        try:
            outbox = self.source.stats()
        except MsstoreError as err:  # the outbox cannot be read: nothing moves
            return HealthStatus.UNHEALTHY, f"the outbox cannot be read: {err}"
        return relay_health(
            oldest_age=outbox.oldest_age(self._clock()),
            reachable=self.sink.reachable(),
            window=self.lag_window,
            failed=outbox.failed,
        )

    def close(self) -> None:
        """Stop the loop and, for a relay made by :meth:`connect`, close both ends."""
        self.stop()
        if self._owns:
            self.source.close()
            self.sink.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
