"""Coordination across the two servers: the transactional outbox relayed to JetStream, and the
consumers that read it.

* :class:`OutboxRelay` moves committed ``messages.outbox`` events (state, task and message
  changes, and your own, added in your transaction) to their JetStream stream, exactly once
  inside the stream's deduplication window, in outbox order per subject.
* :func:`subscribe` runs a handler over a stream's events with explicit acks, redelivery with
  backoff, and a dead-letter subject; :data:`PRESETS` are the reference design's consumers.

The seams are :class:`OutboxSource` (PostgreSQL's ``PostgresOutbox``, or ``MemoryOutbox``)
and :class:`EventSink` (NATS's ``JetStreamSink``, or ``MemoryEventStream``).
"""

from __future__ import annotations

from ._consumers import (
    DEAD_LETTER_PREFIX,
    PRESETS,
    Event,
    Handler,
    Preset,
    Subscription,
    redelivery_delay,
    subscribe,
)
from ._outbox import (
    MAX_BATCH,
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
    relay_health,
    subject_matches,
)
from ._relay import OutboxRelay

__all__ = [
    "DEAD_LETTER_PREFIX",
    "MAX_BATCH",
    "PRESETS",
    "BatchReport",
    "Event",
    "EventSink",
    "Failed",
    "Handler",
    "OutboxEvent",
    "OutboxRelay",
    "OutboxSource",
    "OutboxStats",
    "Outcome",
    "Preset",
    "Published",
    "Retry",
    "Subscription",
    "check_subject",
    "redelivery_delay",
    "relay_health",
    "subject_matches",
    "subscribe",
]
