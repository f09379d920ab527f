"""The outbox and an event stream in process memory: the relay's two seams with the semantics
of ``messages.outbox`` and of JetStream (subjects captured by streams, ``Nats-Msg-Id``
deduplication inside a window), on a clock the caller can drive."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import orjson

from msstore.coordination._outbox import (
    BatchReport,
    Failed,
    OutboxEvent,
    OutboxStats,
    Outcome,
    Publish,
    Published,
    Retry,
    check_subject,
    subject_matches,
    summarize,
)
from msstore.errors import InvalidArgument, StoreClosed

__all__ = ["MemoryEventStream", "MemoryOutbox", "StoredEvent"]


@attrs.define(kw_only=True)
class _Row:
    event: OutboxEvent
    published_at: float | None = None
    failed_at: float | None = None
    reason: str | None = None
    attempts: int = 0
    last_error: str | None = None

    @property
    def waiting(self) -> bool:
        return self.published_at is None and self.failed_at is None


class MemoryOutbox:
    """``OutboxSource`` in memory (thread-safe). Rows a relay is publishing stay claimed until
    its pass ends, as ``FOR UPDATE SKIP LOCKED`` keeps them; ``keep_published``: seconds a
    published row is kept (0: deleted when published)."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, keep_published: float = 3600.0
    ) -> None:
        if (
            isinstance(keep_published, bool)
            or not isinstance(keep_published, (int, float))
            or (keep_published < 0)
        ):
            raise InvalidArgument(f"keep_published must be seconds >= 0, got {keep_published!r}")
        self._clock = clock
        self.keep_published = float(keep_published)
        self._rows: dict[int, _Row] = {}
        self._claimed: set[int] = set()
        self._next_id = 1
        self._cond = threading.Condition()
        self._closed = False

    def add(self, subject: str, payload: Any) -> OutboxEvent:
        """Append an event (``payload``: JSON-able, or JSON bytes); its subject is checked."""
        check_subject(subject)
        return self._append(subject, payload)

    def _append(self, subject: str, payload: Any) -> OutboxEvent:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        with self._cond:
            self._check_open()
            outbox_id = self._next_id
            self._next_id += 1
            event = OutboxEvent(
                outbox_id=outbox_id,
                msg_id=f"memory-{id(self):x}-{outbox_id}",
                subject=subject,
                payload=data,
                created_at=self._clock(),
            )
            self._rows[outbox_id] = _Row(event=event)
            self._cond.notify_all()
        return event

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the memory outbox is closed")

    def relay_batch(self, limit: int, publish: Publish) -> BatchReport:
        batch, sendable = self._claim(limit)
        try:
            outcomes = list(publish(sendable)) if sendable else []
            if len(outcomes) != len(sendable):
                raise InvalidArgument(
                    f"publish returned {len(outcomes)} outcomes for {len(sendable)} events"
                )
        except BaseException:
            with self._cond:
                self._claimed.difference_update(e.outbox_id for e in batch)
            raise
        with self._cond:
            self._apply(sendable, outcomes)
            self._claimed.difference_update(e.outbox_id for e in batch)
            self._cond.notify_all()
        return summarize(len(batch), outcomes, held_back=len(batch) - len(sendable))

    def _claim(self, limit: int) -> tuple[list[OutboxEvent], list[OutboxEvent]]:
        """The first ``limit`` waiting rows no relay holds, claimed; and those of them no
        earlier row of their subject (held by another relay) blocks."""
        with self._cond:
            self._check_open()
            batch: list[OutboxEvent] = []
            sendable: list[OutboxEvent] = []
            blocked: set[str] = set()  # subjects with an earlier row held by another relay
            for outbox_id in sorted(self._rows):
                row = self._rows[outbox_id]
                if not row.waiting:
                    continue
                if outbox_id in self._claimed:
                    blocked.add(row.event.subject)
                    continue
                if len(batch) >= limit:
                    break
                self._claimed.add(outbox_id)  # claimed (as SKIP LOCKED would), sent or not
                batch.append(row.event)
                if row.event.subject not in blocked:
                    sendable.append(row.event)
            return batch, sendable

    def _apply(self, events: Sequence[OutboxEvent], outcomes: Sequence[Outcome]) -> None:
        now = self._clock()
        for event, outcome in zip(events, outcomes, strict=True):
            row = self._rows[event.outbox_id]
            if isinstance(outcome, Published):
                if self.keep_published == 0:
                    del self._rows[event.outbox_id]
                else:
                    row.published_at = now
            elif isinstance(outcome, Failed):
                row.failed_at, row.reason = now, outcome.reason
            else:
                row.attempts += 1
                row.last_error = outcome.reason

    def stats(self) -> OutboxStats:
        with self._cond:
            self._check_open()
            waiting = [r.event for r in self._rows.values() if r.waiting]
            return OutboxStats(
                depth=len(waiting),
                oldest_created_at=min((e.created_at for e in waiting), default=None),
                failed=sum(r.failed_at is not None for r in self._rows.values()),
            )

    def failures(self, limit: int = 100) -> list[tuple[OutboxEvent, str]]:
        with self._cond:
            failed = [
                (r.event, r.reason or "")
                for _, r in sorted(self._rows.items())
                if r.failed_at is not None
            ]
        return failed[:limit]

    def purge_published(self) -> int:
        with self._cond:
            cutoff = self._clock() - self.keep_published
            old = [
                i
                for i, r in self._rows.items()
                if r.published_at is not None and r.published_at <= cutoff
            ]
            for outbox_id in old:
                del self._rows[outbox_id]
            return len(old)

    def wait(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: (
                    self._closed
                    or any(r.waiting for i, r in self._rows.items() if i not in self._claimed)
                ),
                timeout,
            )

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@attrs.frozen(kw_only=True)
class StoredEvent:
    """An event as a stream keeps it."""

    stream: str
    seq: int
    subject: str
    msg_id: str
    outbox_id: int
    payload: bytes
    stored_at: float


class MemoryEventStream:
    """``EventSink`` in memory: named streams capturing subject patterns, each deduplicating by
    ``msg_id`` inside ``duplicate_window`` seconds, as JetStream does. ``down = True`` makes
    every publish a :class:`Retry` (a server away); a subject no stream captures fails."""

    def __init__(
        self,
        streams: Mapping[str, Sequence[str]],
        *,
        duplicate_window: float = 120.0,
        max_payload: int = 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._streams = {name: tuple(subjects) for name, subjects in streams.items()}
        self.duplicate_window = float(duplicate_window)
        self._max_payload = max_payload
        self._clock = clock
        self._lock = threading.Lock()
        self._events: dict[str, list[StoredEvent]] = {name: [] for name in self._streams}
        self._seen: dict[tuple[str, str], tuple[int, float]] = {}
        self.down = False

    @property
    def max_payload(self) -> int:
        return self._max_payload

    def _stream_for(self, subject: str) -> str | None:
        for name, patterns in self._streams.items():
            if any(subject_matches(p, subject) for p in patterns):
                return name
        return None

    def publish_batch(self, events: Sequence[OutboxEvent]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        with self._lock:
            now = self._clock()
            for event in events:
                if self.down:
                    outcomes.append(Retry("the stream server is unreachable"))
                    continue
                stream = self._stream_for(event.subject)
                if stream is None:
                    outcomes.append(Failed(f"no stream captures subject {event.subject}"))
                    continue
                seen = self._seen.get((stream, event.msg_id))
                if seen is not None and now - seen[1] < self.duplicate_window:
                    outcomes.append(Published(stream, seen[0], duplicate=True))
                    continue
                stored = self._events[stream]
                seq = len(stored) + 1
                stored.append(
                    StoredEvent(
                        stream=stream,
                        seq=seq,
                        subject=event.subject,
                        msg_id=event.msg_id,
                        outbox_id=event.outbox_id,
                        payload=event.payload,
                        stored_at=now,
                    )
                )
                self._seen[(stream, event.msg_id)] = (seq, now)
                outcomes.append(Published(stream, seq))
        return outcomes

    def events(self, stream: str) -> list[StoredEvent]:
        with self._lock:
            return list(self._events[stream])

    def reachable(self) -> bool:
        return not self.down

    def close(self) -> None:
        """Nothing to release."""
