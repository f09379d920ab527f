"""The outbox and an event stream in process memory: the relay's two seams with the semantics
of ``messages.outbox`` and of JetStream (subjects captured by streams, ``Nats-Msg-Id``
deduplication inside a window), on a clock the caller can drive."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

import attrs

from msstore.coordination import (
    ClaimedRows,
    EventSinkBase,
    OutboxEvent,
    OutboxSourceBase,
    OutboxStats,
    Outcome,
    Published,
    Retry,
    Verdicts,
    subject_matches,
    uncaptured,
)

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


class MemoryOutbox(OutboxSourceBase):
    """``OutboxSource`` in memory (thread-safe). Rows a relay is publishing stay claimed until
    its pass ends, as ``FOR UPDATE SKIP LOCKED`` keeps them; ``keep_published``: seconds a
    published row is kept (0: deleted when published)."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, keep_published: float = 3600.0
    ) -> None:
        super().__init__(keep_published=keep_published)
        self._clock = clock
        self._rows: dict[int, _Row] = {}
        self._claimed: set[int] = set()
        self._next_id = 1
        self._cond = threading.Condition()

    def __repr__(self) -> str:
        return f"MemoryOutbox({len(self._rows)} rows)"

    def _insert(self, subjects: Sequence[str], payloads: Sequence[bytes]) -> list[OutboxEvent]:
        with self._cond:
            added = []
            for subject, data in zip(subjects, payloads, strict=True):
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
                added.append(event)
            self._cond.notify_all()
            return added

    def _relay(self, limit: int, decide: Callable[[ClaimedRows], Verdicts]) -> Verdicts:
        claimed = self._claim(limit)
        ids = [event.outbox_id for event, _ in claimed]
        try:
            verdicts = decide(claimed)
        except BaseException:  # nothing applied; the pass's rows are free again
            with self._cond:
                self._claimed.difference_update(ids)
                self._cond.notify_all()
            raise
        with self._cond:
            self._apply(verdicts)
            self._claimed.difference_update(ids)
            self._cond.notify_all()
        return verdicts

    def _claim(self, limit: int) -> list[tuple[OutboxEvent, bool]]:
        """The first ``limit`` waiting rows no pass holds, claimed, each flagged held back
        when an earlier waiting row of its subject is held by another pass."""
        with self._cond:
            claimed: list[tuple[OutboxEvent, bool]] = []
            blocked: set[str] = set()  # subjects with an earlier row held by another pass
            for outbox_id in sorted(self._rows):
                row = self._rows[outbox_id]
                if not row.waiting:
                    continue
                if outbox_id in self._claimed:
                    blocked.add(row.event.subject)
                    continue
                if len(claimed) >= limit:
                    break
                self._claimed.add(outbox_id)  # claimed (as SKIP LOCKED would), sent or not
                claimed.append((row.event, row.event.subject in blocked))
            return claimed

    def _apply(self, verdicts: Verdicts) -> None:
        now = self._clock()
        for outbox_id in verdicts.published:
            if verdicts.delete_published:
                del self._rows[outbox_id]
            else:
                self._rows[outbox_id].published_at = now
        for outbox_id, reason in verdicts.failed:
            row = self._rows[outbox_id]
            row.failed_at, row.reason = now, reason
        for outbox_id, reason in verdicts.retried:
            row = self._rows[outbox_id]
            row.attempts += 1
            row.last_error = reason

    def _stats(self) -> OutboxStats:
        with self._cond:
            waiting = [r.event for r in self._rows.values() if r.waiting]
            return OutboxStats(
                depth=len(waiting),
                oldest_created_at=min((e.created_at for e in waiting), default=None),
                failed=sum(r.failed_at is not None for r in self._rows.values()),
            )

    def _failures(self, limit: int) -> list[tuple[OutboxEvent, str]]:
        with self._cond:
            failed = [
                (r.event, r.reason or "")
                for _, r in sorted(self._rows.items())
                if r.failed_at is not None
            ]
        return failed[:limit]

    def _requeue(self, outbox_ids: Sequence[int] | None) -> int:
        with self._cond:
            wanted = None if outbox_ids is None else set(outbox_ids)
            count = 0
            for outbox_id, row in self._rows.items():
                if row.failed_at is not None and (wanted is None or outbox_id in wanted):
                    row.failed_at = row.reason = None
                    count += 1
            self._cond.notify_all()
            return count

    def _purge(self, older_than: float) -> int:
        with self._cond:
            cutoff = self._clock() - older_than
            old = [
                i
                for i, r in self._rows.items()
                if r.published_at is not None and r.published_at <= cutoff
            ]
            for outbox_id in old:
                del self._rows[outbox_id]
            return len(old)

    def _wait(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: (
                    self._closed
                    or any(r.waiting for i, r in self._rows.items() if i not in self._claimed)
                ),
                timeout,
            )

    def _release(self) -> None:
        with self._cond:
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


class MemoryEventStream(EventSinkBase):
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

    def __repr__(self) -> str:
        return f"MemoryEventStream({', '.join(self._streams)})"

    @property
    def max_payload(self) -> int:
        return self._max_payload

    def _stream_for(self, subject: str) -> str | None:
        for name, patterns in self._streams.items():
            if any(subject_matches(p, subject) for p in patterns):
                return name
        return None

    def _publish(self, events: Sequence[OutboxEvent]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        with self._lock:
            now = self._clock()
            for event in events:
                if self.down:
                    outcomes.append(Retry("the stream server is unreachable"))
                    continue
                stream = self._stream_for(event.subject)
                if stream is None:
                    outcomes.append(uncaptured(event.subject))
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
        """What ``stream`` holds, in stream order."""
        with self._lock:
            return list(self._events[stream])

    def _reachable(self) -> bool:
        return not self.down
