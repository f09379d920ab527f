"""The task queue's state machine, written once: which task a claim takes, what ending an
attempt does to a task, which control moves a status allows, when a claim is stale.

Every function here is pure. :class:`~msstore.work.TaskQueueBase` applies them; a store applies
the changes they describe (:class:`Settlement`, :class:`Move`) atomically, and a store that
keeps its tasks in Python (the memory queue) uses :func:`claimable`, :func:`claim_order`,
:func:`settled` and :func:`moved` themselves, so both kinds of store agree by construction.

A task is enqueued ``pending``; a worker claims it (``running``, under a lease it renews with
heartbeats) and ends it ``completed`` or by failing it: with retries left it is ``pending``
again after :func:`~msstore.work.backoff`, else ``failed`` and kept with its error history (a
dead letter). ``paused`` tasks wait for ``resume``; ``cancelled`` ones are done. A running task
whose lease ran out is failed as ``"lease expired"`` and, with a retry left, claimable again at
once (its worker died or stalled: there is nothing to back off from).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs

from msstore.codec import Encoded
from msstore.errors import DependencyCycle, DuplicateKey, NotFound, StaleClaim, TaskStateError

from ._tasks import (
    TERMINAL,
    Claim,
    Execution,
    NewTask,
    Task,
    TaskStatus,
    WorkReport,
    backoff,
    dependency_path,
)

__all__ = [
    "LEASE_EXPIRED",
    "LINKABLE",
    "RUN_CANCELLED",
    "TRANSITIONS",
    "Move",
    "Settlement",
    "check_link",
    "claim_order",
    "claimable",
    "completion",
    "decide_move",
    "default_lease",
    "ended",
    "failure",
    "first_per_unique_key",
    "handler_error",
    "holds",
    "lease_lost",
    "moved",
    "no_task",
    "purge_statuses",
    "renewed",
    "settled",
    "stale_claim",
    "taken",
    "task_id_taken",
    "work_report",
]

S = TaskStatus
LEASE_EXPIRED: Final = "lease expired"
"""The error an attempt whose lease ran out ends with."""
RUN_CANCELLED: Final = "cancelled"
"""The error of a running attempt whose task was cancelled."""
LINKABLE: Final = frozenset({S.PENDING, S.PAUSED})  # tasks that may gain a dependency
TRANSITIONS: Final[Mapping[str, tuple[frozenset[TaskStatus], TaskStatus]]] = {
    "cancel": (frozenset({S.PENDING, S.PAUSED, S.RUNNING}), S.CANCELLED),
    "pause": (frozenset({S.PENDING}), S.PAUSED),
    "resume": (frozenset({S.PAUSED}), S.PENDING),
}
"""Verb -> (the statuses it moves from, the status it moves to), for cancel, pause and resume."""
_TASK_FIELDS: Final = tuple(a.name for a in attrs.fields(Task))


def _evolve(task: Task, **changes: Any) -> Task:
    """``attrs.evolve`` without its per-call introspection (this is on every completion)."""
    values = {name: getattr(task, name) for name in _TASK_FIELDS}
    values.update(changes)
    return Task(**values)


# Claims ------------------------------------------------------------------------------------


def claim_order(task: Task) -> tuple[int, float, int]:
    """Claims take the highest priority first, then the earliest time (``scheduled_at``, else
    ``created_at``), then the earliest enqueued (``seq``): one order on every store."""
    when = task.scheduled_at if task.scheduled_at is not None else task.created_at
    return (-task.priority, when, task.seq)


def claimable(
    task: Task,
    *,
    now: float,
    agent: str,
    types: frozenset[str] | None,
    completed: Callable[[uuid.UUID], bool],
) -> bool:
    """Whether ``agent`` may claim ``task`` at ``now``: pending, of one of ``types`` (if
    given), assigned to ``agent`` or to nobody, not expired, not scheduled later, and every
    task it depends on ``completed``."""
    return (
        task.status is S.PENDING
        and (types is None or task.task_type in types)
        and (task.assigned_agent is None or task.assigned_agent == agent)
        and (task.expires_at is None or task.expires_at > now)
        and (task.scheduled_at is None or task.scheduled_at <= now)
        and all(completed(d) for d in task.depends_on)
    )


def taken(task: Task, agent: str, now: float, lease: float | None) -> Task:
    """``task`` claimed by ``agent`` at ``now``: running, one more attempt, leased for
    ``lease`` seconds (default: its ``max_execution_time``)."""
    seconds = task.max_execution_time if lease is None else lease
    return _evolve(
        task,
        status=S.RUNNING,
        attempts=task.attempts + 1,
        claimed_by=agent,
        lease_expires_at=now + seconds,
        started_at=now,
    )


def holds(task: Task | None, claim: Claim, now: float, *, lapsed: bool = False) -> bool:
    """Whether ``claim`` still holds ``task`` at ``now``: the task is running, at the claim's
    attempt, by its agent, and its lease has not run out (``lapsed``: has run out, and nobody
    took the task since)."""
    if (
        task is None
        or task.status is not S.RUNNING
        or task.attempts != claim.attempt
        or task.claimed_by != claim.agent_id
        or task.lease_expires_at is None
    ):
        return False
    return (task.lease_expires_at <= now) if lapsed else (task.lease_expires_at > now)


def default_lease(claim: Claim) -> float:
    """A heartbeat without ``lease=`` renews the lease the task was claimed with."""
    started = claim.task.started_at
    return claim.lease_expires_at - (claim.lease_expires_at if started is None else started)


def renewed(claim: Claim, expires_at: float) -> Claim:
    """``claim`` with its lease moved to ``expires_at``."""
    return Claim(
        _evolve(claim.task, lease_expires_at=expires_at), claim.agent_id, claim.attempt, expires_at
    )


def stale_claim(claim: Claim, task: Task | None) -> StaleClaim:
    """The error for acting on ``claim`` when its task (now ``task``, or gone) moved on."""
    status = "deleted" if task is None else f"{task.status.value}, at attempt {task.attempts}"
    return StaleClaim(
        f"task {claim.task_id}: attempt {claim.attempt} by {claim.agent_id!r} is no longer "
        f"current (the task is {status}; a lease that ran out is lost)",
        task_id=str(claim.task_id),
        attempt=claim.attempt,
        hint="heartbeat before the lease ends to keep a task",
    )


# Ending an attempt -------------------------------------------------------------------------


@attrs.frozen
class Settlement:
    """How one attempt ends: what a store applies to the claimed task and its execution row,
    if and only if the claim still holds (``lapsed``: if its lease ran out and nobody took it).

    ``status``: the task's next status (``completed``, ``pending`` for a retry, ``failed``);
    ``result``: the completed task's result; ``error``: the failed attempt's error;
    ``retry_in``: a retry's delay in seconds (``None``: claimable at once, schedule kept).
    The properties say which columns change, so a store never decides it itself.
    """

    claim: Claim
    status: TaskStatus
    result: Encoded | None = None
    error: str | None = None
    retry_in: float | None = None
    lapsed: bool = False

    @property
    def run_status(self) -> TaskStatus:
        """The execution row's end: ``completed`` or ``failed``."""
        return S.COMPLETED if self.status is S.COMPLETED else S.FAILED

    @property
    def retried(self) -> bool:
        """The task is pending again: ``retry_count`` + 1, ``claimed_by`` cleared."""
        return self.status is S.PENDING

    @property
    def finished(self) -> bool:
        """The task is done: ``completed_at`` is set."""
        return self.status in TERMINAL


def completion(claim: Claim, result: Encoded) -> Settlement:
    """``complete(claim, result)``."""
    return Settlement(claim, S.COMPLETED, result=result)


def failure(claim: Claim, error: str, *, retry: bool) -> Settlement:
    """``fail(claim, error, retry=)``: with ``retry`` and retries left, pending again after
    :func:`~msstore.work.backoff`; otherwise failed for good (a dead letter)."""
    task = claim.task
    if retry and task.retry_count < task.max_retries:
        return Settlement(claim, S.PENDING, error=error, retry_in=backoff(task.retry_count + 1))
    return Settlement(claim, S.FAILED, error=error)


def lease_lost(task: Task) -> Settlement:
    """The end of a running ``task`` whose lease ran out: a failed attempt, retried at once
    while retries are left."""
    claim = Claim(task, task.claimed_by or "", task.attempts, task.lease_expires_at or 0.0)
    status = S.PENDING if task.retry_count < task.max_retries else S.FAILED
    return Settlement(claim, status, error=LEASE_EXPIRED, lapsed=True)


def settled(task: Task, settlement: Settlement, at: float, result: Any) -> Task:
    """``task`` after ``settlement`` was applied at ``at`` (``result``: the decoded result)."""
    if settlement.status is S.COMPLETED:
        return _evolve(
            task, status=S.COMPLETED, completed_at=at, result=result, lease_expires_at=None
        )
    changes: dict[str, Any] = {
        "status": settlement.status,
        "lease_expires_at": None,
        "last_error": settlement.error,
    }
    if settlement.retried:
        changes.update(retry_count=task.retry_count + 1, claimed_by=None)
        if settlement.retry_in is not None:
            changes["scheduled_at"] = at + settlement.retry_in
    if settlement.finished:
        changes["completed_at"] = at
    return _evolve(task, **changes)


def handler_error(err: BaseException) -> str:
    """The error a task fails with when its handler raised ``err``: its type and message."""
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def work_report(
    settlements: Sequence[Settlement], outcomes: Sequence[Task | StaleClaim]
) -> WorkReport:
    """What a batch of handled claims came to (``outcomes`` in the order of ``settlements``)."""
    stale = sum(isinstance(o, StaleClaim) for o in outcomes)
    completed = sum(
        s.status is S.COMPLETED and not isinstance(o, StaleClaim)
        for s, o in zip(settlements, outcomes, strict=True)
    )
    return WorkReport(
        claimed=len(settlements),
        completed=completed,
        failed=len(settlements) - completed - stale,
        stale=stale,
    )


def ended(
    run: Execution, status: TaskStatus, at: float, *, result: Any, error: str | None
) -> Execution:
    """An execution row closed at ``at``."""
    return attrs.evolve(run, status=status, completed_at=at, result=result, error=error)


# Control -----------------------------------------------------------------------------------


@attrs.frozen
class Move:
    """A control change (``cancel``, ``pause``, ``resume``) a store applies: the task's next
    status; whether its running attempt ends (failed, as :data:`RUN_CANCELLED`)."""

    verb: str
    to: TaskStatus
    ends_run: bool

    @property
    def finished(self) -> bool:
        """The task is done: ``completed_at`` is set."""
        return self.to in TERMINAL

    @property
    def wakes(self) -> bool:
        """The task may be claimable now: wake waiting claims."""
        return self.to is S.PENDING


def decide_move(task: Task, verb: str) -> Move:
    """The move ``verb`` makes of ``task`` (:data:`TRANSITIONS`), or ``TaskStateError``."""
    allowed, to = TRANSITIONS[verb]
    if task.status not in allowed:
        raise TaskStateError(
            f"cannot {verb} task {task.task_id}: it is {task.status.value}",
            task_id=str(task.task_id),
            status=task.status.value,
        )
    return Move(verb, to, ends_run=task.status is S.RUNNING)


def moved(task: Task, move: Move, at: float) -> Task:
    """``task`` after ``move`` was applied at ``at``."""
    return _evolve(
        task,
        status=move.to,
        lease_expires_at=None,
        completed_at=at if move.finished else task.completed_at,
    )


def check_link(
    task_id: uuid.UUID,
    depends_on: uuid.UUID,
    *,
    status: TaskStatus | None,
    target_exists: bool,
    graph: Mapping[uuid.UUID, Sequence[uuid.UUID]],
) -> None:
    """Whether ``task_id`` (of ``status``, ``None`` if there is none) may gain a dependency on
    ``depends_on``: both exist, the task is pending or paused, and ``graph`` (the dependencies
    reachable from ``depends_on``) does not lead back to it."""
    if status is None:
        raise no_task(task_id)
    if not target_exists:
        raise no_task(depends_on, field="depends_on")
    if status not in LINKABLE:
        raise TaskStateError(
            f"task {task_id} is {status.value}; only a pending or paused task can gain a "
            "dependency",
            task_id=str(task_id),
            status=status.value,
        )
    path = dependency_path(graph, depends_on, task_id)
    if path:
        cycle = [task_id, *path]
        raise DependencyCycle(
            "task dependencies would form a cycle: " + " -> ".join(map(str, cycle)),
            cycle=[str(t) for t in cycle],
        )


# Enqueue and purge -------------------------------------------------------------------------


def first_per_unique_key(tasks: Sequence[NewTask]) -> tuple[list[NewTask], list[int]]:
    """The tasks a store inserts (the first of each unique key in the batch, and every task
    without one), and for each task of ``tasks`` the index, among those, of the one whose id
    it gets."""
    rows: list[NewTask] = []
    first: dict[str, int] = {}
    same_as: list[int] = []
    for task in tasks:
        key = task.spec.unique_key
        if key is not None and key in first:
            same_as.append(first[key])
            continue
        if key is not None:
            first[key] = len(rows)
        same_as.append(len(rows))
        rows.append(task)
    return rows, same_as


def purge_statuses(include_failed: bool) -> frozenset[TaskStatus]:
    """The finished statuses ``purge`` deletes (dead letters only when asked)."""
    return frozenset({S.COMPLETED, S.CANCELLED} | ({S.FAILED} if include_failed else set()))


def no_task(task_id: uuid.UUID, *, field: str | None = None) -> NotFound:
    """The error for a task id that names no task (``field``: the argument that named it)."""
    return NotFound(
        f"{field + ': ' if field else ''}no task {task_id}",
        key=str(task_id),
        hint=None if field is None else f"{field} names a task that does not exist",
    )


def task_id_taken(task_id: uuid.UUID) -> DuplicateKey:
    """The error for enqueueing a task under an id another task has."""
    return DuplicateKey(
        f"task_id {task_id} is taken", key=str(task_id), hint="leave task_id out to get one"
    )
