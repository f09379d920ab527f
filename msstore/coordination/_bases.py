"""The base classes of the relay's two seams: what every outbox source and every event sink
does, written once; an implementation supplies the storage or the server.

* :class:`OutboxSourceBase`: adding events (subjects checked, payloads encoded once), one relay
  pass (claim, publish, verdicts applied, all or nothing), retention, failures, retries.
* :class:`EventSinkBase`: what can never be published fails here (a subject NATS refuses, a
  payload over the server's limit), the rest goes to the server in one call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from msstore.codec import Codec, default_codec
from msstore.errors import InvalidArgument
from msstore.registry import open_store, redact_url
from msstore.spi import StoreBase, check_int, check_many, check_pairs, check_seconds

from ._outbox import (
    MAX_BATCH,
    BatchReport,
    EventSink,
    Failed,
    OutboxEvent,
    OutboxSource,
    OutboxStats,
    Outcome,
    Publish,
    Published,
    Retry,
    check_subject,
    combine,
    expand,
    subject_problem,
    summarize,
)

__all__ = [
    "ClaimedRows",
    "EventSinkBase",
    "OutboxSourceBase",
    "Verdicts",
    "open_event_sink",
    "open_outbox",
    "payload_problem",
]


@attrs.frozen(kw_only=True)
class Verdicts:
    """What a relay pass decided for the rows it claimed, for the source to apply in the pass's
    transaction: ``published`` rows are marked (or deleted, ``delete_published``), ``failed``
    ones set aside with their reason, ``retried`` ones left waiting with their attempt counted.
    ``claimed``: rows the pass claimed; ``held_back``: those it did not send (an earlier row of
    their subject was in another pass's hands)."""

    claimed: int
    held_back: int
    outcomes: tuple[Outcome, ...]
    published: tuple[int, ...]
    failed: tuple[tuple[int, str], ...]
    retried: tuple[tuple[int, str], ...]
    delete_published: bool


# A pass's claimed rows, in outbox order: (event, held back).
ClaimedRows = Sequence[tuple[OutboxEvent, bool]]
"""Claimed events, each with whether it is held back (an earlier event of its subject is held by
another relay)."""


class OutboxSourceBase(StoreBase, OutboxSource):
    """Everything an :class:`~msstore.coordination.OutboxSource` does but storing rows.

    ``keep_published``: seconds a published row is kept before :meth:`purge_published`
    deletes it (0: deleted in the pass that published it). ``codec``: payloads to JSON.

    **Implementing a source.** Subclass this and supply, each atomic:

    * :meth:`_insert`: append events.
    * :meth:`_relay`: one pass in one transaction: claim, let the base decide, apply.
    * :meth:`_stats`, :meth:`_failures`: reads.
    * :meth:`_requeue`, :meth:`_purge`: housekeeping.
    * :meth:`_wait`: block until events may have been added.
    * :meth:`_release` (from :class:`~msstore.spi.StoreBase`): free resources.
    """

    def __init__(self, *, keep_published: float = 3600.0, codec: Codec | None = None) -> None:
        self.keep_published = check_seconds(keep_published, field="keep_published", inclusive=True)
        self._codec = codec or default_codec

    def add(self, subject: str, payload: Any) -> OutboxEvent:
        """Append one event (``payload``: JSON-able, or JSON bytes); see :meth:`add_many`."""
        return self.add_many([(subject, payload)])[0]

    def add_many(self, events: Iterable[tuple[str, Any]], *, conn: Any = None) -> list[OutboxEvent]:
        """Append events (subject, JSON-able payload or JSON bytes), in order. Subjects and
        payloads are checked first: nothing is written if one is refused. ``conn``: a
        connection whose transaction the events join, on stores that have them (ignored
        here)."""
        return self._add(events, self._insert)

    def _add(
        self,
        events: Iterable[tuple[str, Any]],
        insert: Callable[[Sequence[str], Sequence[bytes]], list[OutboxEvent]],
    ) -> list[OutboxEvent]:
        """:meth:`add_many` through ``insert`` (a store may insert another way, e.g. on the
        caller's connection)."""
        self._check_open()
        subjects: list[str] = []
        payloads: list[bytes] = []
        for subject, payload in check_pairs(events, field="events", of="(subject, payload) pairs"):
            subjects.append(check_subject(subject))
            if isinstance(payload, bytes):
                self._codec.decode(payload)  # JSON text, or SerializationError
                payloads.append(payload)
            else:
                payloads.append(self._codec.encode(payload))
        return insert(subjects, payloads) if subjects else []

    def relay_batch(self, limit: int, publish: Publish) -> BatchReport:
        """Claim up to ``limit`` waiting events (skipping rows another pass holds, and holding
        back rows with an earlier waiting row of their subject held elsewhere), call
        ``publish`` once with the rest in outbox order, apply its outcomes (one per event, in
        order) and commit, all in one transaction. If ``publish`` raises, or returns a wrong
        number of outcomes, nothing is applied and the error propagates."""
        check_int(limit, field="limit", minimum=1, maximum=MAX_BATCH)
        self._check_open()

        def decide(claimed: ClaimedRows) -> Verdicts:
            sendable = [event for event, held in claimed if not held]
            # A row may carry several events (a batch of task events): each is published; the
            # row's verdict combines theirs.
            rows: list[list[OutboxEvent] | Failed] = []
            for event in sendable:
                try:
                    rows.append(expand(event, self._codec))
                except ValueError as err:
                    rows.append(Failed(str(err)))
            events = [e for row in rows if not isinstance(row, Failed) for e in row]
            outcomes = tuple(publish(events)) if events else ()
            if len(outcomes) != len(events):
                raise InvalidArgument(
                    f"publish returned {len(outcomes)} outcomes for {len(events)} events"
                )
            published: list[int] = []
            failed: list[tuple[int, str]] = []
            retried: list[tuple[int, str]] = []
            reported: list[Outcome] = []
            start = 0
            for event, row in zip(sendable, rows, strict=True):
                if isinstance(row, Failed):
                    outcome: Outcome = row
                    reported.append(row)
                else:
                    mine = outcomes[start : start + len(row)]
                    start += len(row)
                    outcome = combine(mine)
                    reported.extend(mine)
                if isinstance(outcome, Published):
                    published.append(event.outbox_id)
                elif isinstance(outcome, Failed):
                    failed.append((event.outbox_id, outcome.reason))
                else:
                    retried.append((event.outbox_id, outcome.reason))
            return Verdicts(
                claimed=len(claimed),
                held_back=len(claimed) - len(sendable),
                outcomes=tuple(reported),
                published=tuple(published),
                failed=tuple(failed),
                retried=tuple(retried),
                delete_published=self.keep_published == 0,
            )

        verdicts = self._relay(limit, decide)
        return summarize(verdicts.claimed, verdicts.outcomes, held_back=verdicts.held_back)

    def stats(self) -> OutboxStats:
        self._check_open()
        return self._stats()

    def failures(self, limit: int = 100) -> list[tuple[OutboxEvent, str]]:
        """Rows set aside as failed, oldest first, with their reasons (at most ``limit``)."""
        check_int(limit, field="limit", minimum=1, maximum=MAX_BATCH)
        self._check_open()
        return self._failures(limit)

    def retry_failed(self, outbox_ids: Sequence[int] | None = None) -> int:
        """Put failed rows (all, or those of ``outbox_ids``) back in line, e.g. after adding
        the stream their subject lacked; how many."""
        ids = None
        if outbox_ids is not None:
            ids = [
                check_int(i, field="outbox_ids", minimum=1)
                for i in check_many(outbox_ids, field="outbox_ids", of="ints")
            ]
        self._check_open()
        return self._requeue(ids)

    def purge_published(self) -> int:
        """Delete the published rows kept longer than ``keep_published``; how many."""
        self._check_open()
        return self._purge(self.keep_published)

    def wait(self, timeout: float) -> bool:
        """Return True as soon as new events may have been committed since this thread's last
        :meth:`relay_batch` (a spurious early True is allowed), False after ``timeout``
        seconds without."""
        seconds = check_seconds(timeout, field="timeout", inclusive=True)
        self._check_open()
        return self._wait(seconds)

    # The primitives --------------------------------------------------------------------------

    def _insert(self, subjects: Sequence[str], payloads: Sequence[bytes]) -> list[OutboxEvent]:
        """Append the events (checked, payloads JSON) at the end of the outbox; wake waiters."""
        raise NotImplementedError

    def _relay(self, limit: int, decide: Callable[[ClaimedRows], Verdicts]) -> Verdicts:
        """In one transaction: claim the first ``limit`` waiting rows no other pass holds (in
        outbox order), each flagged held back when an earlier waiting row of its subject is
        held by another pass; ``verdicts = decide(claimed)`` (if it raises, roll back and let
        it propagate); apply the verdicts; commit; return them."""
        raise NotImplementedError

    def _stats(self) -> OutboxStats:
        raise NotImplementedError

    def _failures(self, limit: int) -> list[tuple[OutboxEvent, str]]:
        raise NotImplementedError

    def _requeue(self, outbox_ids: Sequence[int] | None) -> int:
        """Clear the failure of failed rows (all, or those of ``outbox_ids``); wake waiters;
        how many."""
        raise NotImplementedError

    def _purge(self, older_than: float) -> int:
        """Delete rows published more than ``older_than`` seconds ago; how many."""
        raise NotImplementedError

    def _wait(self, timeout: float) -> bool:
        raise NotImplementedError


def payload_problem(event: OutboxEvent, max_payload: int) -> str | None:
    """Why ``event`` can never be published to a server taking at most ``max_payload`` bytes
    (``None`` when it can)."""
    problem = subject_problem(event.subject)
    if problem is None and len(event.payload) > max_payload:
        problem = (
            f"the payload is {len(event.payload):,} bytes, over the server's "
            f"{max_payload:,}-byte limit"
        )
    return problem


class EventSinkBase(StoreBase, EventSink):
    """Everything an :class:`~msstore.coordination.EventSink` does but talking to its server.

    **Implementing a sink.** Subclass this and supply :attr:`max_payload`, :meth:`_publish`
    (publish events that can be published, deduplicating by ``msg_id``, one outcome each, in
    order; never raise for one event's problem), :meth:`_reachable`, and :meth:`_release`.
    """

    @property
    def max_payload(self) -> int:
        """The largest payload the sink accepts, in bytes."""
        raise NotImplementedError

    def publish_batch(self, events: Sequence[OutboxEvent]) -> list[Outcome]:
        """Publish every event (deduplicated by ``msg_id``), awaiting each acknowledgement; one
        outcome per event, in order. An event that can never go out (a subject the server
        refuses, a payload over :attr:`max_payload`) is :class:`~msstore.coordination.Failed`
        without reaching the server."""
        self._check_open()
        limit = self.max_payload
        outcomes: list[Outcome | None] = [None] * len(events)
        sendable: list[OutboxEvent] = []
        where: list[int] = []
        for i, event in enumerate(events):
            problem = payload_problem(event, limit)
            if problem is None:
                sendable.append(event)
                where.append(i)
            else:
                outcomes[i] = Failed(problem)
        if sendable:
            for i, outcome in zip(where, self._publish(sendable), strict=True):
                outcomes[i] = outcome
        return [o if o is not None else Retry("not published") for o in outcomes]

    def reachable(self) -> bool:
        """Whether the sink's server answers now (``False`` once the sink is closed)."""
        return not self._closed and self._reachable()

    def _publish(self, events: Sequence[OutboxEvent]) -> list[Outcome]:
        raise NotImplementedError

    def _reachable(self) -> bool:
        raise NotImplementedError


def open_outbox(dsn: str, **options: Any) -> OutboxSource:
    """The outbox ``dsn`` names, through the backend registry: a ``postgresql://`` URL (or a
    libpq ``key=value`` connection string), or ``memory://``. ``options``: the store's settings
    (PostgreSQL: ``keep_published``, ``deadline``, ``connect_timeout``)."""
    if type(dsn) is not str:
        raise InvalidArgument(f"dsn must be a str, got {dsn!r}")
    if "://" not in dsn:  # a libpq connection string: the postgresql backend takes it whole
        options = {**options, "dsn": dsn}
        dsn = "postgresql://"
    source = open_store("outbox", dsn, **options)
    if not isinstance(source, OutboxSource):
        raise InvalidArgument(f"{redact_url(dsn)} opened {source!r}, which is not an outbox")
    return source


def open_event_sink(url: str, **options: Any) -> EventSink:
    """The event sink ``url`` names, through the backend registry (``nats://host:4222``; the
    ``NATS_*`` variables fill in credentials and TLS). ``options``: the sink's settings
    (NATS: ``request_timeout``, ``connect_timeout``)."""
    sink = open_store("event_sink", url, **options)
    if not isinstance(sink, EventSink):
        raise InvalidArgument(f"{redact_url(url)} opened {sink!r}, which is not an event sink")
    return sink
