"""The records of a saga's durable log, and the :class:`SagaLog` seam a backend implements.

A saga's log is one row per saga (:class:`SagaState`: status, the step it is at, its context,
the process holding it and until when) and one row per step outcome (:class:`StepRecord`).
The engine (:mod:`msstore.coordination._sagas`) decides every transition; a log stores them,
guarded by the lease, and answers reads. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import attrs

__all__ = [
    "Phase",
    "SagaLog",
    "SagaState",
    "SagaStatus",
    "StepRecord",
    "StepState",
]

T = TypeVar("T")


class SagaStatus(enum.Enum):
    """Where a saga is: running forward, compensating, or ended one of three ways."""

    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    COMPENSATION_FAILED = "compensation_failed"

    @property
    def ended(self) -> bool:
        """Whether nothing more will happen to the saga without a person."""
        return self in (
            SagaStatus.COMPLETED,
            SagaStatus.ROLLED_BACK,
            SagaStatus.COMPENSATION_FAILED,
        )


class Phase(enum.Enum):
    """Which half of a step an outcome belongs to."""

    ACTION = "action"
    COMPENSATION = "compensation"


class StepState(enum.Enum):
    """A step half's outcome: about to run (``STARTED``, its intent recorded), done, failed,
    or (compensations only) left alone because someone else wrote after the step."""

    STARTED = "started"
    DONE = "done"
    FAILED = "failed"
    CONFLICT = "conflict"


@attrs.frozen
class StepRecord:
    """One outcome of one step half, as the log keeps it. ``detail``: what the step needs to
    be compensated or recognised after a crash (for a KV step: the key, the revision it
    found and the one it wrote); ``error``: why it failed."""

    index: int
    name: str
    phase: Phase
    state: StepState
    detail: Mapping[str, Any] = attrs.field(factory=dict)
    error: str | None = None
    at: float = 0.0


@attrs.frozen
class SagaState:
    """A saga's row in the log."""

    saga_id: str
    name: str
    idempotency_key: str | None
    status: SagaStatus
    step: int
    context: Mapping[str, Any]
    owner: str | None
    lease_expires_at: float | None
    reason: str | None
    created_at: float
    updated_at: float


class SagaLog(Protocol):
    """Where sagas record their progress: a memory log for tests, a PostgreSQL one for work.

    Every write but :meth:`start` names the ``owner`` that holds the saga's lease and changes
    nothing (returns ``False``) when another process holds it now: a process that lost its
    lease while it was paused cannot overwrite the one that took over.
    """

    def start(self, state: SagaState, records: Sequence[StepRecord] = ()) -> SagaState:
        """Record a new saga with its first ``records`` (the intents of its first steps) in one
        atomic write; if one with the same ``idempotency_key`` exists, record nothing and
        return that one instead."""
        ...

    def append(
        self,
        saga_id: str,
        owner: str,
        records: Sequence[StepRecord],
        *,
        status: SagaStatus,
        step: int,
        reason: str | None,
        lease_expires_at: float | None,
        now: float,
    ) -> bool:
        """Add ``records`` (in order) and move the saga to ``status`` at ``step`` in one atomic
        write (``lease_expires_at`` None: release the lease); ``False``: ``owner`` no longer
        holds it, nothing written."""
        ...

    def atomic(
        self,
        saga_id: str,
        owner: str,
        records: Sequence[StepRecord],
        fn: Callable[[Any], T],
        *,
        status: SagaStatus,
        step: int,
        reason: str | None,
        lease_expires_at: float | None,
        now: float,
        isolation: str,
        timeout: float | None = None,
    ) -> tuple[bool, T | None]:
        """Run ``fn(conn)`` and :meth:`append` ``records`` in the same transaction at
        ``isolation``: both happen or neither (``records`` are read after ``fn`` returns: a
        detail may hold what ``fn`` filled in). ``(False, None)``: ``owner`` no longer holds
        the saga, nothing run. ``fn``'s errors propagate, nothing recorded. ``timeout``:
        seconds ``fn``'s statements may take (the server cancels them past it), if the log can
        enforce it."""
        ...

    def load(self, saga_id: str) -> tuple[SagaState, Sequence[StepRecord]] | None:
        """The saga and its step records in the order they were written; None if unknown."""
        ...

    def by_key(self, idempotency_key: str) -> SagaState | None:
        """The saga started with this idempotency key, if any."""
        ...

    def take_over(self, saga_id: str, owner: str, lease_expires_at: float, now: float) -> bool:
        """Give ``owner`` the lease of a saga that is not completed or rolled back and whose
        lease ran out (or was released) before ``now``; ``False`` if it is held or over. A
        saga in ``COMPENSATION_FAILED`` is reopened as ``COMPENSATING`` (a person retries)."""
        ...

    def sagas(
        self, statuses: Sequence[SagaStatus] | None = None, *, limit: int = 100
    ) -> list[SagaState]:
        """Sagas, oldest first, of the given statuses (None: all)."""
        ...
