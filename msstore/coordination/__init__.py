"""Coordination across the two servers: the transactional outbox relayed to JetStream, and the
consumers that read it.

* :class:`OutboxRelay` moves committed ``messages.outbox`` events (state, task and message
  changes, and your own, added in your transaction) to their JetStream stream, exactly once
  inside the stream's deduplication window, in outbox order per subject.
* :func:`subscribe` runs a handler over a stream's events with explicit acks, redelivery with
  backoff, and a dead-letter subject; :data:`PRESETS` are the consumers ``msstore provision``
  creates.

The seams are :class:`OutboxSource` (PostgreSQL's ``PostgresOutbox``, or ``MemoryOutbox``)
and :class:`EventSink` (NATS's ``JetStreamSink``, or ``MemoryEventStream``).
"""

from __future__ import annotations

from ._bases import (
    ClaimedRows,
    EventSinkBase,
    OutboxSourceBase,
    Verdicts,
    open_event_sink,
    open_outbox,
    payload_problem,
)
from ._consumers import (
    DEAD_LETTER_PREFIX,
    PRESETS,
    ConsumerPlan,
    Event,
    EventSource,
    Handler,
    Preset,
    Subscription,
    redelivery_delay,
    subscribe,
)
from ._outbox import (
    MAX_BATCH,
    TASK_EVENTS,
    BatchReport,
    EventSink,
    Failed,
    OutboxEvent,
    OutboxSource,
    OutboxStats,
    Outcome,
    Published,
    Retry,
    check_subject,
    combine,
    expand,
    relay_health,
    subject_matches,
    task_verb,
    uncaptured,
)
from ._relay import OutboxRelay

__all__ = [
    "DEAD_LETTER_PREFIX",
    "MAX_BATCH",
    "PRESETS",
    "TASK_EVENTS",
    "BatchReport",
    "ClaimedRows",
    "ConsumerPlan",
    "Event",
    "EventSink",
    "EventSinkBase",
    "EventSource",
    "Failed",
    "Handler",
    "OutboxEvent",
    "OutboxRelay",
    "OutboxSource",
    "OutboxSourceBase",
    "OutboxStats",
    "Outcome",
    "Preset",
    "Published",
    "Retry",
    "Subscription",
    "Verdicts",
    "check_subject",
    "combine",
    "expand",
    "open_event_sink",
    "open_outbox",
    "payload_problem",
    "redelivery_delay",
    "relay_health",
    "subject_matches",
    "subscribe",
    "task_verb",
    "uncaptured",
]
