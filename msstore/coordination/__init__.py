"""Coordination across the two servers: the transactional outbox relayed to JetStream, and the
consumers that read it.

* :class:`OutboxRelay` moves committed ``messages.outbox`` events (state, task and message
  changes, and your own, added in your transaction) to their JetStream stream, exactly once
  inside the stream's deduplication window, in outbox order per subject.
* :class:`SagaRunner` runs a :class:`Saga` (KV steps whose compensation msstore derives, SQL
  steps that commit once, your own functions) with its progress in a :class:`SagaLog`, and
  resumes or compensates the sagas of a process that stopped.
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
from ._saga_log import Phase, SagaLog, SagaState, SagaStatus, StepRecord, StepState
from ._saga_steps import (
    Compensated,
    FunctionStep,
    KvCreate,
    KvDelete,
    KvPut,
    KvUpdate,
    KvUpdateWith,
    SqlStep,
    Step,
    StepInput,
)
from ._sagas import Saga, SagaResult, SagaRunner, Strategy

__all__ = [
    "DEAD_LETTER_PREFIX",
    "MAX_BATCH",
    "PRESETS",
    "TASK_EVENTS",
    "BatchReport",
    "ClaimedRows",
    "Compensated",
    "ConsumerPlan",
    "Event",
    "EventSink",
    "EventSinkBase",
    "EventSource",
    "Failed",
    "FunctionStep",
    "Handler",
    "KvCreate",
    "KvDelete",
    "KvPut",
    "KvUpdate",
    "KvUpdateWith",
    "OutboxEvent",
    "OutboxRelay",
    "OutboxSource",
    "OutboxSourceBase",
    "OutboxStats",
    "Outcome",
    "Phase",
    "Preset",
    "Published",
    "Retry",
    "Saga",
    "SagaLog",
    "SagaResult",
    "SagaRunner",
    "SagaState",
    "SagaStatus",
    "SqlStep",
    "Step",
    "StepInput",
    "StepRecord",
    "StepState",
    "Strategy",
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
