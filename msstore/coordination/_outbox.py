"""The outbox's vocabulary: events, what publishing one came to, the two seams a relay joins
(an :class:`OutboxSource` of committed events, an :class:`EventSink` that stores them), and the
pure checks and health rule the relay applies.

A source hands the relay a claimed batch inside its own transaction and applies the relay's
verdicts in that same transaction: rows published (marked, or deleted), rows failed (set aside
with their reason), rows to retry (left waiting, their attempt counted). A relay killed before
the source commits leaves every row of its batch waiting: a later relay publishes them again and
the sink's deduplication (JetStream's ``Nats-Msg-Id`` window) drops the copies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Protocol, runtime_checkable

import attrs

from msstore.codec import Codec
from msstore.errors import InvalidArgument, SerializationError
from msstore.protocols import Store
from msstore.records import HealthStatus

__all__ = [
    "MAX_BATCH",
    "MAX_SUBJECT_BYTES",
    "TASK_EVENTS",
    "BatchReport",
    "EventSink",
    "Failed",
    "OutboxEvent",
    "OutboxSource",
    "OutboxStats",
    "Outcome",
    "Published",
    "Retry",
    "check_subject",
    "combine",
    "expand",
    "relay_health",
    "subject_matches",
    "subject_problem",
    "summarize",
    "task_verb",
    "uncaptured",
]

MAX_BATCH: Final = 10_000
"""The most events one relay pass claims."""
TASK_EVENTS: Final = "tasks.>"
"""The subject of an outbox row that carries a batch of task events (a statement's changed
tasks, column by column; see :func:`expand`). A wildcard: nothing is published under it, and
:meth:`~msstore.coordination.OutboxSource.add` refuses it."""
TASK_EVENT_FIELDS: Final = (
    "task_id",
    "task_type",
    "status",
    "previous_status",
    "assigned_agent_id",
    "priority",
)
# A status change into one of these is announced under its own verb; any other change (a retry
# back to pending, a renewed lease) is "updated".
_TASK_VERBS: Final = {
    "running": "started",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}
# NATS caps a protocol line (PUB <subject> <reply> <size>) at 4 KiB by default; the reply
# inbox and sizes take the rest.
MAX_SUBJECT_BYTES: Final = 3_000


@attrs.frozen(kw_only=True)
class OutboxEvent:
    """One committed outbox row. ``payload`` is its JSON as stored (published as is);
    ``msg_id`` is the deduplication id (``Nats-Msg-Id``); ``created_at`` Unix seconds."""

    outbox_id: int
    msg_id: str
    subject: str
    payload: bytes
    created_at: float


@attrs.frozen
class Published:
    """The sink stored the event (``duplicate``: it already had it, inside its window)."""

    stream: str
    seq: int
    duplicate: bool = False


@attrs.frozen
class Failed:
    """The event can never be published as it is (its row is set aside with ``reason``)."""

    reason: str


def uncaptured(subject: str) -> Failed:
    """The outcome of an event whose subject no stream captures, saying what to do."""
    return Failed(
        f"no stream captures subject {subject}: run `msstore provision` (or add a stream for "
        "it), then `msstore relay retry-failed`"
    )


@attrs.frozen
class Retry:
    """Publishing did not happen or was not confirmed (``reason``); the row waits."""

    reason: str


Outcome = Published | Failed | Retry
"""What publishing one event came to."""


@attrs.frozen(kw_only=True)
class BatchReport:
    """What one relay pass did: rows published, set aside as failed, left to retry, and held
    back (an earlier row of their subject was still in another relay's hands)."""

    claimed: int = 0
    published: int = 0
    duplicates: int = 0
    failed: int = 0
    retried: int = 0
    held_back: int = 0
    retry_reason: str | None = None


@attrs.frozen(kw_only=True)
class OutboxStats:
    """The outbox as its source sees it: rows waiting (``depth``), the creation time of the
    oldest (Unix seconds, ``None`` when empty), and rows set aside as failed."""

    depth: int
    oldest_created_at: float | None
    failed: int

    def oldest_age(self, now: float) -> float | None:
        """Seconds the oldest waiting row has waited at Unix time ``now`` (``None`` when
        none waits; never below 0, whatever the clocks say)."""
        return None if self.oldest_created_at is None else max(0.0, now - self.oldest_created_at)


Publish = Callable[[Sequence[OutboxEvent]], Sequence[Outcome]]


@runtime_checkable
class OutboxSource(Store, Protocol):
    """Committed events, claimed in outbox order by one relay at a time per row (memory:
    ``MemoryOutbox``, PostgreSQL: ``PostgresOutbox``; both build on
    :class:`~msstore.coordination.OutboxSourceBase`)."""

    def add(self, subject: str, payload: Any) -> OutboxEvent:
        """Append one event (``payload``: JSON-able, or JSON bytes)."""
        ...

    def add_many(self, events: Iterable[tuple[str, Any]], *, conn: Any = None) -> list[OutboxEvent]:
        """Append events in order, all or none. ``conn``: a connection of the same database
        whose transaction the events join, so that they commit with the caller's change
        (PostgreSQL; a memory outbox writes at once)."""
        ...

    def relay_batch(self, limit: int, publish: Publish) -> BatchReport:
        """Claim up to ``limit`` waiting events (skipping rows another relay holds, and rows
        with an earlier waiting row of their subject held elsewhere), call ``publish`` once with
        them in outbox order, apply its outcomes (one per event, in order) and commit, all in
        one transaction. If ``publish`` raises, nothing is applied and the error propagates."""
        ...

    def stats(self) -> OutboxStats:
        """Rows waiting, the creation time of the oldest, rows set aside as failed."""

    def failures(self, limit: int = 100) -> list[tuple[OutboxEvent, str]]:
        """Rows set aside as failed, oldest first, with their reasons."""
        ...

    def retry_failed(self, outbox_ids: Sequence[int] | None = None) -> int:
        """Put failed rows (all, or those of ``outbox_ids``) back in line; how many."""
        ...

    def purge_published(self) -> int:
        """Delete the published rows kept longer than the source's retention; how many."""
        ...

    def wait(self, timeout: float) -> bool:
        """Return True as soon as new events may have been committed since this thread's last
        :meth:`relay_batch`, False after ``timeout`` seconds without."""
        ...


@runtime_checkable
class EventSink(Store, Protocol):
    """Where events go (JetStream's ``JetStreamSink``, or ``MemoryEventStream`` for tests;
    both build on :class:`~msstore.coordination.EventSinkBase`)."""

    @property
    def max_payload(self) -> int:
        """The largest payload the sink accepts, in bytes."""
        ...

    def publish_batch(self, events: Sequence[OutboxEvent]) -> list[Outcome]:
        """Publish every event (deduplicated by ``msg_id``), awaiting each acknowledgement;
        one outcome per event, in order. Never raises for one event's problem."""
        ...

    def reachable(self) -> bool:
        """Whether the sink's server answers now."""
        ...


def subject_problem(subject: str) -> str | None:
    """Why ``subject`` cannot be published to (``None`` when it can): NATS subjects are
    dot-separated non-empty tokens without whitespace or wildcards."""
    if not subject:
        return "the subject is empty"
    if len(subject.encode()) > MAX_SUBJECT_BYTES:
        return f"the subject is longer than {MAX_SUBJECT_BYTES:,} bytes"
    if any(c.isspace() or ord(c) < 32 for c in subject):
        return "the subject contains whitespace or control characters"
    for token in subject.split("."):
        if not token:
            return "the subject has an empty token (leading, trailing or doubled '.')"
        if token in ("*", ">"):
            return "the subject contains a wildcard token ('*' or '>')"
    return None


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether ``subject`` is one of the subjects ``pattern`` names (NATS wildcards: ``*`` one
    token, ``>`` one or more trailing tokens)."""
    want = pattern.split(".")
    have = subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(have) == len(want)


def check_subject(subject: object) -> str:
    """``subject`` if it can be published to, else ``InvalidArgument`` saying why."""
    if type(subject) is not str:
        raise InvalidArgument(f"subject must be a str, got {subject!r}")
    problem = subject_problem(subject)
    if problem is not None:
        raise InvalidArgument(f"subject {subject[:80]!r}: {problem}")
    return subject


def relay_health(
    *, oldest_age: float | None, reachable: bool, window: float, failed: int = 0
) -> tuple[HealthStatus, str]:
    """UNHEALTHY when the sink cannot be reached (events wait in the outbox, nothing is
    lost); DEGRADED when the oldest waiting event is older than ``window`` seconds, or while
    ``failed`` events sit set aside; else HEALTHY. Returns the status and a one-line reason."""
    if not reachable:
        return HealthStatus.UNHEALTHY, "NATS is unreachable; events wait in the outbox"
    if oldest_age is not None and oldest_age > window:
        return (
            HealthStatus.DEGRADED,
            f"the oldest unpublished event is {oldest_age:.3g} s old (window {window:g} s)",
        )
    if failed:
        return (
            HealthStatus.DEGRADED,
            f"{failed} event(s) set aside as failed: fix what their reasons say, then "
            "`msstore relay retry-failed`",
        )
    return HealthStatus.HEALTHY, "publishing within the window"


def task_verb(op: str, status: str | None, previous: str | None) -> str:
    """The verb of a task event: ``created`` for an insert; for an update, the new status's
    verb when the status changed into running, completed, failed or cancelled, else
    ``updated``."""
    if op == "INSERT":
        return "created"
    if status != previous and status in _TASK_VERBS:
        return _TASK_VERBS[status]
    return "updated"


def expand(event: OutboxEvent, codec: Codec) -> list[OutboxEvent]:
    """The events an outbox row publishes: itself, or for a batch of task events (subject
    :data:`TASK_EVENTS`) one event per task, on ``tasks.<verb>.<task_id>`` with
    ``{"task_id", "task_type", "status", "previous_status", "assigned_agent_id", "priority",
    "timestamp", "metadata"}``, its ``msg_id`` the row's with ``.<n>`` appended (so a row
    published again is deduplicated event by event). ``ValueError`` for a batch row that does
    not hold what a batch holds."""
    if event.subject != TASK_EVENTS:
        return [event]
    try:
        batch = codec.decode(event.payload)
        op, stamp, ids = batch["op"], batch["timestamp"], batch["task_id"]
        n = len(ids)
        columns = {
            name: batch[name] if batch.get(name) is not None else [None] * n
            for name in (*TASK_EVENT_FIELDS[1:], "metadata")
        }
        if any(len(column) != n for column in columns.values()):
            raise ValueError("columns of different lengths")
    except (KeyError, TypeError, ValueError, SerializationError) as err:
        raise ValueError(f"a task event batch that cannot be read ({err})") from None
    parts = []
    for i, task_id in enumerate(ids):
        payload = {"task_id": task_id, **{name: columns[name][i] for name in TASK_EVENT_FIELDS[1:]}}
        payload["timestamp"] = stamp
        payload["metadata"] = columns["metadata"][i]
        verb = task_verb(op, payload["status"], payload["previous_status"])
        parts.append(
            OutboxEvent(
                outbox_id=event.outbox_id,
                msg_id=f"{event.msg_id}.{i}",
                subject=f"tasks.{verb}.{task_id}",
                payload=codec.encode(payload),
                created_at=event.created_at,
            )
        )
    return parts


def combine(outcomes: Sequence[Outcome]) -> Outcome:
    """What a row came to from the outcomes of the events it published: failed if one failed
    (the first reason), else to retry if one was not confirmed, else published (a duplicate
    only if every event was). A row with no events is published."""
    retry: Retry | None = None
    published: list[Published] = []
    for outcome in outcomes:
        if isinstance(outcome, Failed):
            return outcome
        if isinstance(outcome, Retry):
            retry = retry or outcome
        else:
            published.append(outcome)
    if retry is not None:
        return retry
    if len(published) == 1:
        return published[0]
    if not published:
        return Published(stream="", seq=0)
    return Published(published[0].stream, published[-1].seq, all(p.duplicate for p in published))


def summarize(claimed: int, outcomes: Sequence[Outcome], *, held_back: int) -> BatchReport:
    """The report of a pass that claimed ``claimed`` rows and got ``outcomes``."""
    published = duplicates = failed = retried = 0
    reason: str | None = None
    for outcome in outcomes:
        if isinstance(outcome, Published):
            published += 1
            duplicates += outcome.duplicate
        elif isinstance(outcome, Failed):
            failed += 1
        else:
            retried += 1
            reason = reason or outcome.reason
    return BatchReport(
        claimed=claimed,
        published=published,
        duplicates=duplicates,
        failed=failed,
        retried=retried,
        held_back=held_back,
        retry_reason=reason,
    )
