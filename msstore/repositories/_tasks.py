"""The task queue's vocabulary and rules, apart from any store.

A task is enqueued ``pending``; a worker *claims* it (``running``, under a lease it renews with
heartbeats) and ends it ``completed`` or by failing it: with retries left it is ``pending``
again after a backoff, else ``failed`` and kept with its error history (a dead letter).
``paused`` tasks wait for ``resume``; ``cancelled`` ones are done. A running task whose lease
ran out (its worker died or stalled past ``max_execution_time``) is claimable again, as one more
attempt. A claim whose lease ran out is stale from that moment: the worker's ``complete``,
``fail`` and ``heartbeat`` raise :class:`~msstore.errors.StaleClaim` (a worker that wants more
time heartbeats before its lease ends).

Claims take the highest priority first, then the earliest schedule (``scheduled_at``, else
the enqueue time), then the oldest; only tasks whose dependencies all completed, that are not
expired and not scheduled in the future. Every store implements these rules the same way:
:func:`check_spec`, :func:`backoff` and :func:`find_cycle` are the shared parts, and the
conformance suite (:mod:`msstore.testing.conformance`) checks the rest.
"""

from __future__ import annotations

import builtins
import enum
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Protocol, TypedDict, runtime_checkable

import attrs

from msstore.codec import Codec, default_codec
from msstore.errors import DependencyCycle, InvalidArgument

__all__ = [
    "MAX_CLAIM",
    "TERMINAL",
    "Claim",
    "Execution",
    "Priority",
    "QueueStats",
    "Task",
    "TaskQueue",
    "TaskSpec",
    "TaskStatus",
    "backoff",
    "check_agent",
    "check_limit",
    "check_seconds",
    "check_spec",
    "check_specs",
    "check_status",
    "check_task_id",
    "check_time",
    "check_types",
    "find_cycle",
]

MAX_CLAIM: Final = 1000
MAX_TYPE_LENGTH: Final = 100
MAX_AGENT_LENGTH: Final = 255
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


class Priority(enum.IntEnum):
    """Claim order: a higher priority is claimed first (``task_priority_type``'s five levels)."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    URGENT = 3
    CRITICAL = 4


@attrs.frozen
class TaskSpec:
    """One task to enqueue (see :meth:`msstore.protocols.TaskQueue.enqueue` for each field).

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
class Task:
    """A task as the queue holds it. Times are Unix seconds."""

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


@attrs.frozen
class Claim:
    """A worker's hold on a running task: ``attempt`` is the task's claim count when taken.

    Pass it back to ``heartbeat``, ``complete`` or ``fail``; once the lease ran out and the task
    was claimed again, those raise :class:`~msstore.errors.StaleClaim`.
    """

    task: Task
    agent_id: str
    attempt: int
    lease_expires_at: float

    @property
    def task_id(self) -> uuid.UUID:
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


class QueueStats(TypedDict):
    """``TaskQueue.stats()``: ``counts`` per status (every status present, 0 when none),
    ``oldest_pending_age_s`` (age of the oldest claimable-or-waiting pending task, 0.0 when
    none) and ``total``."""

    counts: dict[str, int]
    oldest_pending_age_s: float
    total: int


def check_task_id(task_id: object, *, field: str = "task_id") -> uuid.UUID:
    if not isinstance(task_id, uuid.UUID):
        raise InvalidArgument(f"{field} must be a uuid.UUID, got {task_id!r}")
    return task_id


def check_agent(agent_id: object, *, field: str = "agent_id") -> str:
    if type(agent_id) is not str or not 0 < len(agent_id) <= MAX_AGENT_LENGTH:
        raise InvalidArgument(
            f"{field} must be a non-empty str of at most {MAX_AGENT_LENGTH} characters, "
            f"got {agent_id!r}"
        )
    if "." in agent_id or any(c.isspace() for c in agent_id):
        raise InvalidArgument(f"{field} must not contain '.' or whitespace, got {agent_id!r}")
    return agent_id


def check_seconds(value: object, *, field: str, minimum: float = 0.0) -> float:
    """A finite number of seconds > ``minimum`` (bools refused)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= minimum
    ):
        raise InvalidArgument(
            f"{field} must be a finite number of seconds > {minimum:g}, got {value!r}"
        )
    return float(value)


def check_limit(limit: object) -> int:
    if type(limit) is not int or not 1 <= limit <= MAX_CLAIM:
        raise InvalidArgument(f"limit must be an int from 1 to {MAX_CLAIM}, got {limit!r}")
    return limit


def _time(value: object, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgument(f"{field} must be Unix seconds (a finite number), got {value!r}")
    return float(value)


def _priority(value: object) -> Priority:
    if isinstance(value, Priority):
        return value
    if type(value) is int and Priority.LOW <= value <= Priority.CRITICAL:
        return Priority(value)
    raise InvalidArgument(
        f"priority must be a Priority or an int from {Priority.LOW:d} to "
        f"{Priority.CRITICAL:d}, got {value!r}"
    )


def check_spec(spec: TaskSpec, *, now: float, codec: Codec = default_codec) -> TaskSpec:
    """``spec`` with every field checked (``InvalidArgument`` naming the field otherwise) and
    normalised: the priority a :class:`Priority`, times as floats, ``depends_on`` deduplicated
    in order. The payload must encode (``SerializationError``, size limit included)."""
    if not isinstance(spec, TaskSpec):
        raise InvalidArgument(f"expected a TaskSpec, got {spec!r}")
    task_type = spec.task_type
    if type(task_type) is not str or not 0 < len(task_type) <= MAX_TYPE_LENGTH:
        raise InvalidArgument(
            f"task_type must be a non-empty str of at most {MAX_TYPE_LENGTH} characters, "
            f"got {task_type!r}"
        )
    codec.encode(spec.payload)  # raises SerializationError before anything is written
    scheduled_at = _time(spec.scheduled_at, "scheduled_at")
    expires_at = _time(spec.expires_at, "expires_at")
    if expires_at is not None and expires_at <= now:
        raise InvalidArgument(f"expires_at must be in the future, got {expires_at!r} (now {now})")
    if type(spec.max_retries) is not int or not 0 <= spec.max_retries <= MAX_RETRIES:
        raise InvalidArgument(
            f"max_retries must be an int from 0 to {MAX_RETRIES}, got {spec.max_retries!r}"
        )
    max_execution_time = check_seconds(spec.max_execution_time, field="max_execution_time")
    parent = None if spec.parent is None else check_task_id(spec.parent, field="parent")
    depends = tuple(dict.fromkeys(check_task_id(d, field="depends_on") for d in spec.depends_on))
    if spec.task_id is not None:
        check_task_id(spec.task_id)
        if spec.task_id in depends:
            raise DependencyCycle(
                f"task {spec.task_id} depends on itself", cycle=[str(spec.task_id)]
            )
        if spec.task_id == parent:
            raise InvalidArgument(f"task {spec.task_id} cannot be its own parent")
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
    return attrs.evolve(
        spec,
        priority=_priority(spec.priority),
        scheduled_at=scheduled_at,
        expires_at=expires_at,
        max_execution_time=max_execution_time,
        parent=parent,
        depends_on=depends,
        assigned_agent=assigned,
    )


def check_specs(
    specs: Iterable[TaskSpec], *, now: float, codec: Codec = default_codec
) -> list[TaskSpec]:
    """Every spec checked, each given a task id, and the batch's own dependencies free of
    cycles (``DependencyCycle``); nothing is written if any is refused."""
    checked = [check_spec(s, now=now, codec=codec) for s in specs]
    checked = [
        s if s.task_id is not None else attrs.evolve(s, task_id=uuid.uuid4()) for s in checked
    ]
    ids = [s.task_id for s in checked]
    if len(set(ids)) != len(ids):
        raise InvalidArgument("two tasks of one batch have the same task_id")
    graph = {s.task_id: s.depends_on for s in checked if s.task_id is not None}
    cycle = find_cycle(graph)
    if cycle:
        raise DependencyCycle(
            "task dependencies form a cycle: " + " -> ".join(map(str, cycle)),
            cycle=[str(t) for t in cycle],
        )
    return checked


def find_cycle(graph: Mapping[uuid.UUID, Sequence[uuid.UUID]]) -> list[uuid.UUID]:
    """A cycle in ``graph`` (task -> the tasks it depends on), as a path that ends where it
    starts, or ``[]``. Edges to tasks outside ``graph`` end a path."""
    state: dict[uuid.UUID, int] = {}  # 1: on the current path, 2: done
    for start in graph:
        if state.get(start):
            continue
        path: list[uuid.UUID] = []
        stack: list[tuple[uuid.UUID, Iterable[uuid.UUID]]] = [(start, iter(graph[start]))]
        state[start] = 1
        path.append(start)
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


def check_types(types: Sequence[str] | None) -> set[str] | None:
    """A claim's ``types`` filter: ``None`` or a non-empty sequence of task types."""
    if types is None:
        return None
    if isinstance(types, str) or not all(type(t) is str and t for t in types) or not types:
        raise InvalidArgument(f"types must be a non-empty list of task types, got {types!r}")
    return set(types)


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


def check_time(value: object, *, field: str) -> float:
    """Unix seconds (an int or float; bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{field} must be Unix seconds, got {value!r}")
    return float(value)


def backoff(retry: int) -> float:
    """Seconds before retry number ``retry`` (1, 2, ...): doubling from 1 s, capped at 1 h."""
    return float(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, retry - 1)))


@runtime_checkable
class TaskQueue(Protocol):
    """A durable queue of agent work (memory: :class:`~msstore.backends.memory.MemoryTaskQueue`,
    PostgreSQL: :class:`~msstore.backends.postgres.PostgresTaskQueue`).

    Times are Unix seconds from the queue's clock. Bad input raises ``InvalidArgument`` (or a
    subclass) naming the field and writes nothing; an unknown task id raises ``NotFound``
    (``get`` returns ``None``); acting on a claim that is no longer the worker's raises
    ``StaleClaim``; an operation the task's status does not allow raises ``TaskStateError``.
    """

    def enqueue(
        self,
        task_type: str,
        payload: Any = None,
        *,
        priority: Priority | int = Priority.NORMAL,
        scheduled_at: float | None = None,
        expires_at: float | None = None,
        max_retries: int = 3,
        max_execution_time: float = 3600.0,
        parent: uuid.UUID | None = None,
        depends_on: Sequence[uuid.UUID] = (),
        unique_key: str | None = None,
        assigned_agent: str | None = None,
        task_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Add a task; return its id. With a ``unique_key`` already held by an unfinished task,
        nothing is added and that task's id is returned. ``assigned_agent``: only that agent
        may claim it."""
        ...

    def enqueue_many(self, specs: Iterable[TaskSpec]) -> list[uuid.UUID]:
        """Add every task of ``specs`` atomically, in order; return their ids."""
        ...

    def add_dependency(self, task_id: uuid.UUID, depends_on: uuid.UUID) -> None:
        """Make pending (or paused) ``task_id`` wait for ``depends_on`` too;
        ``DependencyCycle`` if that would close a cycle."""
        ...

    def claim(
        self,
        agent_id: str,
        *,
        types: Sequence[str] | None = None,
        limit: int = 1,
        lease: float | None = None,
        wait: float | None = None,
    ) -> list[Claim]:
        """Take up to ``limit`` claimable tasks for ``agent_id`` (of ``types`` if given), each
        leased for ``lease`` seconds (default: its ``max_execution_time``). ``wait``: block up
        to that many seconds until work arrives; ``[]`` when none did."""
        ...

    def heartbeat(self, claim: Claim, *, lease: float | None = None) -> Claim:
        """Renew the claim's lease (by ``lease`` seconds from now, default as claimed)."""
        ...

    def complete(self, claim: Claim, result: Any = None) -> Task:
        """End the claimed task successfully with ``result``."""
        ...

    def fail(self, claim: Claim, error: str, *, retry: bool = True) -> Task:
        """End this attempt with ``error``: with ``retry`` and retries left, the task is pending
        again after :func:`backoff`; otherwise it is ``failed`` (kept as a dead letter)."""
        ...

    def cancel(self, task_id: uuid.UUID) -> Task:
        """Cancel a task that is not finished (a running one's worker then gets StaleClaim)."""
        ...

    def pause(self, task_id: uuid.UUID) -> Task:
        """Hold a pending task back from claims until :meth:`resume`."""
        ...

    def resume(self, task_id: uuid.UUID) -> Task:
        """Make a paused task pending again."""
        ...

    def get(self, task_id: uuid.UUID) -> Task | None:
        """The task, or ``None`` if there is none with that id."""
        ...

    def executions(self, task_id: uuid.UUID) -> list[Execution]:
        """Every attempt at the task, in order (its error history)."""
        ...

    def stats(self) -> QueueStats:
        """Counts per status and the age of the oldest pending task."""
        ...

    def purge(self, *, completed_before: float, include_failed: bool = False) -> int:
        """Delete completed and cancelled tasks (and, with ``include_failed``, dead letters)
        that finished before ``completed_before``; return how many. Tasks another unfinished
        task depends on are kept."""
        ...

    def close(self) -> None:
        """Release the queue's resources."""
        ...

    def list(
        self,
        *,
        status: TaskStatus | None = None,
        type: str | None = None,
        agent: str | None = None,
        limit: int = 100,
    ) -> builtins.list[Task]:
        """Tasks matching every filter given (``agent``: assigned to or claimed by), oldest
        first, at most ``limit``."""
        ...
