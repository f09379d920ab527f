"""The task queue's vocabulary: statuses, priorities, what is enqueued, what is stored, and the
checks a task passes before any store sees it."""

from __future__ import annotations

import enum
import math
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TypedDict

import attrs

from msstore.codec import Codec, Encoded, default_codec
from msstore.errors import DependencyCycle, InvalidArgument
from msstore.spi import check_int, check_many, check_seconds

from ._checks import check_agent, check_task_id, check_time

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "MAX_RETRIES",
    "TERMINAL",
    "Claim",
    "Execution",
    "NewTask",
    "Priority",
    "QueueStats",
    "Task",
    "TaskSpec",
    "TaskStatus",
    "backoff",
    "check_batch",
    "check_spec",
    "check_specs",
    "check_status",
    "check_types",
    "dependency_path",
    "find_cycle",
    "new_task_ids",
]

MAX_TYPE_LENGTH: Final = 100
MAX_UNIQUE_KEY_LENGTH: Final = 255
MAX_RETRIES: Final = 100
BACKOFF_BASE: Final = 1.0  # seconds before the first retry
BACKOFF_CAP: Final = 3600.0


class TaskStatus(enum.StrEnum):
    """A task's state (the values of PostgreSQL's ``task_status_type``)."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL: Final = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
"""The statuses a task does not leave."""


class Priority(enum.IntEnum):
    """Claim order: a higher priority is claimed first (``task_priority_type``'s five levels)."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    URGENT = 3
    CRITICAL = 4


@attrs.frozen
class TaskSpec:
    """One task to enqueue (see :meth:`TaskQueue.enqueue` for each field).

    ``task_id`` may be chosen by the caller (a UUID), so that tasks of one batch can depend on
    each other; ``depends_on`` names tasks that exist already or come earlier or later in the
    same batch.
    """

    task_type: str
    payload: Any = attrs.field(factory=dict)
    priority: Priority = Priority.NORMAL
    scheduled_at: float | None = None
    expires_at: float | None = None
    max_retries: int = 3
    max_execution_time: float = 3600.0
    parent: uuid.UUID | None = None
    depends_on: tuple[uuid.UUID, ...] = ()
    unique_key: str | None = None
    assigned_agent: str | None = None
    task_id: uuid.UUID | None = None


@attrs.frozen
class NewTask:
    """A checked :class:`TaskSpec` on its way into a store: its id chosen, its payload
    encoded once (for every tier alike). ``task_id`` is the task's id (``spec.task_id`` may be
    unset: the tasks of :meth:`~msstore.work.TaskQueue.enqueue_batch` share one spec)."""

    task_id: uuid.UUID
    spec: TaskSpec
    payload: Encoded


@attrs.frozen
class Task:
    """A task as the queue holds it. Times are Unix seconds; ``seq`` is its place in enqueue
    order (the last tie-break of the claim order)."""

    task_id: uuid.UUID
    task_type: str
    payload: Any
    status: TaskStatus
    priority: Priority
    created_at: float
    scheduled_at: float | None = None
    expires_at: float | None = None
    max_retries: int = 3
    max_execution_time: float = 3600.0
    retry_count: int = 0
    attempts: int = 0
    parent: uuid.UUID | None = None
    depends_on: tuple[uuid.UUID, ...] = ()
    unique_key: str | None = None
    assigned_agent: str | None = None
    claimed_by: str | None = None
    lease_expires_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    result: Any = None
    last_error: str | None = None
    seq: int = 0


@attrs.frozen
class Claim:
    """A worker's hold on a running task: ``attempt`` is the task's claim count when taken.

    Pass it back to ``heartbeat``, ``complete`` or ``fail``; once the lease ran out (or the
    task was cancelled), those raise :class:`~msstore.errors.StaleClaim`.
    """

    task: Task
    agent_id: str
    attempt: int
    lease_expires_at: float

    @property
    def task_id(self) -> uuid.UUID:
        """The claimed task's id."""
        return self.task.task_id


@attrs.frozen
class Execution:
    """One attempt at a task (a ``tasks.executions`` row): who ran it, how it ended."""

    task_id: uuid.UUID
    attempt: int
    agent_id: str
    status: TaskStatus
    started_at: float
    completed_at: float | None = None
    result: Any = None
    error: str | None = None


@attrs.frozen
class WorkReport:
    """What one :meth:`~msstore.work.TaskQueue.work` call did: tasks ``claimed``, then
    ``completed`` and ``failed`` by their handlers, and ``stale`` (settled too late: the lease
    ran out or the task was cancelled meanwhile, so nothing was written for it)."""

    claimed: int
    completed: int
    failed: int
    stale: int


class QueueStats(TypedDict):
    """``TaskQueue.stats()``: ``counts`` per status (every status present, 0 when none),
    ``oldest_pending_age_s`` (age of the oldest pending task, 0.0 when none) and ``total``."""

    counts: dict[str, int]
    oldest_pending_age_s: float
    total: int


def _priority(value: object) -> Priority:
    if isinstance(value, Priority):
        return value
    if type(value) is int and Priority.LOW <= value <= Priority.CRITICAL:
        return Priority(value)
    raise InvalidArgument(
        f"priority must be a Priority or an int from {Priority.LOW:d} to "
        f"{Priority.CRITICAL:d}, got {value!r}"
    )


def _depends(value: object) -> tuple[uuid.UUID, ...]:
    if isinstance(value, (str, bytes, uuid.UUID)) or not isinstance(value, Iterable):
        raise InvalidArgument(
            f"depends_on must be a list of task ids (uuid.UUID), got {value!r}",
            hint="depends_on=[task_id], even for one task",
        )
    return tuple(dict.fromkeys(check_task_id(d, field="depends_on") for d in value))


def new_task_ids(n: int) -> list[uuid.UUID]:
    """``n`` random (version 4) task ids, from one ``os.urandom`` call."""
    raw = os.urandom(16 * n)
    return [uuid.UUID(bytes=raw[i : i + 16], version=4) for i in range(0, 16 * n, 16)]


def _check_times(spec: TaskSpec, now: float) -> tuple[float | None, float | None, float]:
    """``spec``'s schedule, expiry and lease as floats, ``max_retries`` checked. (The common
    values - no schedule, no expiry, the default limits - are accepted without the checks'
    calls: a batch of thousands spends its time here otherwise.)"""
    scheduled_at = spec.scheduled_at
    if scheduled_at is not None:
        scheduled_at = check_time(scheduled_at, field="scheduled_at")
    expires_at = spec.expires_at
    if expires_at is not None:
        expires_at = check_time(expires_at, field="expires_at")
        if expires_at is not None and expires_at <= now:
            raise InvalidArgument(
                f"expires_at must be in the future, got {expires_at!r} (now {now})"
            )
    if type(spec.max_retries) is not int or not 0 <= spec.max_retries <= MAX_RETRIES:
        check_int(spec.max_retries, field="max_retries", minimum=0, maximum=MAX_RETRIES)
    max_execution_time = spec.max_execution_time
    if type(max_execution_time) is not float or not 0.0 < max_execution_time < math.inf:
        max_execution_time = check_seconds(max_execution_time, field="max_execution_time")
    return scheduled_at, expires_at, max_execution_time


def check_spec(
    spec: TaskSpec,
    *,
    now: float,
    codec: Codec = default_codec,
    new_id: uuid.UUID | None = None,
) -> NewTask:
    """``spec`` checked field by field (``InvalidArgument`` naming the field, nothing
    written) and normalised: the priority a :class:`Priority`, times floats, ``depends_on``
    deduplicated in order, the payload encoded (``SerializationError``, size limit included),
    a task id chosen when the spec names none (``new_id``, else a random one)."""
    if not isinstance(spec, TaskSpec):
        raise InvalidArgument(f"expected a TaskSpec, got {spec!r}")
    task_type = spec.task_type
    if type(task_type) is not str or not 0 < len(task_type) <= MAX_TYPE_LENGTH:
        raise InvalidArgument(
            f"task_type must be a non-empty str of at most {MAX_TYPE_LENGTH} characters, "
            f"got {task_type!r}"
        )
    payload = codec.encode_canonical({} if spec.payload is None else spec.payload)
    scheduled_at, expires_at, max_execution_time = _check_times(spec, now)
    parent = None if spec.parent is None else check_task_id(spec.parent, field="parent")
    depends = spec.depends_on
    if type(depends) is not tuple or depends:
        depends = _depends(depends)
    if spec.task_id is not None:
        task_id = check_task_id(spec.task_id)
    else:
        task_id = uuid.uuid4() if new_id is None else new_id
    if task_id in depends:
        raise DependencyCycle(f"task {task_id} depends on itself", cycle=[str(task_id)] * 2)
    if task_id == parent:
        raise InvalidArgument(f"task {task_id} cannot be its own parent")
    unique_key = spec.unique_key
    if unique_key is not None and (
        type(unique_key) is not str or not 0 < len(unique_key) <= MAX_UNIQUE_KEY_LENGTH
    ):
        raise InvalidArgument(
            f"unique_key must be a non-empty str of at most {MAX_UNIQUE_KEY_LENGTH} "
            f"characters or None, got {unique_key!r}"
        )
    assigned = None
    if spec.assigned_agent is not None:
        assigned = check_agent(spec.assigned_agent, field="assigned_agent")
    checked = TaskSpec(
        task_type=task_type,
        payload=spec.payload,
        priority=_priority(spec.priority),
        scheduled_at=scheduled_at,
        expires_at=expires_at,
        max_retries=spec.max_retries,
        max_execution_time=max_execution_time,
        parent=parent,
        depends_on=depends,
        unique_key=unique_key,
        assigned_agent=assigned,
        task_id=task_id,
    )
    return NewTask(task_id, checked, payload)


def check_specs(
    specs: Iterable[TaskSpec], *, now: float, codec: Codec = default_codec
) -> list[NewTask]:
    """Every spec checked (:func:`check_spec`), ids distinct, and the batch's own
    dependencies free of cycles (``DependencyCycle``); nothing is written if any is refused."""
    if isinstance(specs, (str, bytes, Mapping)) or not isinstance(specs, Iterable):
        raise InvalidArgument(f"specs must be a list of TaskSpec, got {specs!r}")
    specs = list(specs)
    ids = new_task_ids(len(specs))
    checked = [
        check_spec(s, now=now, codec=codec, new_id=i) for s, i in zip(specs, ids, strict=True)
    ]
    ids = [t.task_id for t in checked]
    if len(set(ids)) != len(ids):
        raise InvalidArgument("two tasks of one batch have the same task_id")
    cycle = (
        find_cycle({t.task_id: t.spec.depends_on for t in checked})
        if any(t.spec.depends_on for t in checked)
        else []
    )
    if cycle:
        raise DependencyCycle(
            "task dependencies form a cycle: " + " -> ".join(map(str, cycle)),
            cycle=[str(t) for t in cycle],
        )
    return checked


def check_batch(
    template: TaskSpec, payloads: object, *, now: float, codec: Codec = default_codec
) -> list[NewTask]:
    """One task per payload of ``payloads`` (a list), each with ``template``'s type and options,
    checked once (:func:`check_spec`); each payload encoded (``SerializationError``, nothing
    written). ``template`` names no payload, dependencies, unique key or task id."""
    values = check_many(payloads, field="payloads", of="payloads (one per task)")
    checked = check_spec(template, now=now, codec=codec).spec
    spec = attrs.evolve(checked, task_id=None)  # (each task's id is its NewTask's)
    ids = new_task_ids(len(values))
    encode = codec.encode_canonical
    return [
        NewTask(i, spec, encode({} if p is None else p)) for i, p in zip(ids, values, strict=True)
    ]


def find_cycle(graph: Mapping[uuid.UUID, Sequence[uuid.UUID]]) -> list[uuid.UUID]:
    """A cycle in ``graph`` (task -> the tasks it depends on), as a path that ends where it
    starts, or ``[]``. Edges to tasks outside ``graph`` end a path."""
    state: dict[uuid.UUID, int] = {}  # 1: on the current path, 2: done
    for start in graph:
        if state.get(start):
            continue
        path: list[uuid.UUID] = [start]
        stack: list[tuple[uuid.UUID, Iterable[uuid.UUID]]] = [(start, iter(graph[start]))]
        state[start] = 1
        while stack:
            node, edges = stack[-1]
            nxt = next(iter(edges), None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            if nxt not in graph or state.get(nxt) == 2:
                continue
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            state[nxt] = 1
            path.append(nxt)
            stack.append((nxt, iter(graph[nxt])))
    return []


def dependency_path(
    graph: Mapping[uuid.UUID, Sequence[uuid.UUID]], start: uuid.UUID, goal: uuid.UUID
) -> list[uuid.UUID]:
    """The shortest chain of dependencies from ``start`` to ``goal`` (both included), or
    ``[]`` when ``start`` does not (transitively) depend on ``goal``."""
    came: dict[uuid.UUID, uuid.UUID | None] = {start: None}
    frontier = [start]
    while frontier:
        following: list[uuid.UUID] = []
        for node in frontier:
            if node == goal:
                path = [node]
                while (prev := came[path[-1]]) is not None:
                    path.append(prev)
                return path[::-1]
            for nxt in graph.get(node, ()):
                if nxt not in came:
                    came[nxt] = node
                    following.append(nxt)
        frontier = following
    return []


def check_types(types: Sequence[str] | None) -> frozenset[str] | None:
    """A claim's ``types`` filter: ``None`` or a non-empty sequence of task types."""
    if types is None:
        return None
    if isinstance(types, str) or not types or not all(type(t) is str and t for t in types):
        raise InvalidArgument(f"types must be a non-empty list of task types, got {types!r}")
    return frozenset(types)


def check_status(status: object) -> TaskStatus | None:
    """A ``list`` filter: ``None`` or a :class:`TaskStatus` (or its value)."""
    if status is None:
        return None
    try:
        return TaskStatus(status)  # type: ignore[arg-type]  # refused below if not one
    except ValueError:
        raise InvalidArgument(
            f"status must be one of {', '.join(s.value for s in TaskStatus)}, got {status!r}"
        ) from None


def backoff(retry: int) -> float:
    """Seconds before retry number ``retry`` (1, 2, ...): doubling from 1 s, capped at 1 h."""
    return float(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, retry - 1)))
