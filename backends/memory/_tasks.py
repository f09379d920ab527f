"""The task queue in process memory: the rules of :mod:`msstore.repositories._tasks`, with a
clock the caller can drive (leases, schedules, backoff and expiry all read it)."""

from __future__ import annotations

import builtins
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from msstore.codec import Codec, default_codec
from msstore.errors import (
    DependencyCycle,
    InvalidArgument,
    NotFound,
    StaleClaim,
    StoreClosed,
    TaskStateError,
)
from msstore.repositories._tasks import (
    TERMINAL,
    Claim,
    Execution,
    Priority,
    QueueStats,
    Task,
    TaskSpec,
    TaskStatus,
    backoff,
    check_agent,
    check_limit,
    check_seconds,
    check_specs,
    check_status,
    check_task_id,
    check_time,
    check_types,
    find_cycle,
)

__all__ = ["MemoryTaskQueue"]

S = TaskStatus


class MemoryTaskQueue:
    """``TaskQueue`` in memory (thread-safe). ``clock`` returns Unix seconds (``time.time``);
    a test passes its own and advances it to expire leases or reach schedules. ``claim(wait=)``
    waits on the real clock for an enqueue (or ``poll`` seconds, to see the test clock move)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        codec: Codec | None = None,
        poll: float = 0.05,
    ) -> None:
        self._clock = clock
        self._codec = codec or default_codec
        self._poll = check_seconds(poll, field="poll")
        self._cond = threading.Condition(threading.Lock())
        self._tasks: dict[uuid.UUID, Task] = {}
        self._executions: dict[uuid.UUID, list[Execution]] = {}
        self._order: dict[uuid.UUID, int] = {}  # enqueue order, the last tie-break
        self._seq = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryTaskQueue({len(self._tasks)} tasks)"

    # Writing ---------------------------------------------------------------------------------

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
        spec = TaskSpec(
            task_type,
            {} if payload is None else payload,
            priority,  # type: ignore[arg-type]  # checked by check_spec
            scheduled_at,
            expires_at,
            max_retries,
            max_execution_time,
            parent,
            tuple(depends_on),
            unique_key,
            assigned_agent,
            task_id,
        )
        return self.enqueue_many([spec])[0]

    def enqueue_many(self, specs: Iterable[TaskSpec]) -> list[uuid.UUID]:
        now = self._clock()
        checked = check_specs(specs, now=now, codec=self._codec)
        with self._cond:
            self._check_open()
            batch = {s.task_id for s in checked}
            for spec in checked:
                assert spec.task_id is not None
                if spec.task_id in self._tasks:
                    raise InvalidArgument(f"task_id {spec.task_id} is taken")
                for dep in spec.depends_on:
                    if dep not in self._tasks and dep not in batch:
                        raise NotFound(f"depends_on: no task {dep}", task_id=str(dep))
                if (
                    spec.parent is not None
                    and spec.parent not in self._tasks
                    and spec.parent not in batch
                ):
                    raise NotFound(f"parent: no task {spec.parent}", task_id=str(spec.parent))
            ids: list[uuid.UUID] = []
            added: list[Task] = []
            held = {
                t.unique_key: t.task_id
                for t in self._tasks.values()
                if t.unique_key and t.status not in TERMINAL
            }
            for spec in checked:
                assert spec.task_id is not None
                if spec.unique_key is not None and spec.unique_key in held:
                    ids.append(held[spec.unique_key])
                    continue
                task = Task(
                    task_id=spec.task_id,
                    task_type=spec.task_type,
                    payload=self._codec.decode(self._codec.encode(spec.payload)),
                    status=S.PENDING,
                    priority=spec.priority,
                    created_at=now,
                    scheduled_at=spec.scheduled_at,
                    expires_at=spec.expires_at,
                    max_retries=spec.max_retries,
                    max_execution_time=spec.max_execution_time,
                    parent=spec.parent,
                    depends_on=spec.depends_on,
                    unique_key=spec.unique_key,
                    assigned_agent=spec.assigned_agent,
                )
                if spec.unique_key is not None:
                    held[spec.unique_key] = task.task_id
                added.append(task)
                ids.append(task.task_id)
            for task in added:
                self._seq += 1
                self._tasks[task.task_id] = task
                self._order[task.task_id] = self._seq
                self._executions[task.task_id] = []
            if added:
                self._cond.notify_all()
            return ids

    def add_dependency(self, task_id: uuid.UUID, depends_on: uuid.UUID) -> None:
        """Make pending ``task_id`` wait for ``depends_on`` too (``DependencyCycle`` if that
        closes a cycle)."""
        check_task_id(task_id)
        check_task_id(depends_on, field="depends_on")
        with self._cond:
            task = self._task(task_id)
            self._task(depends_on)
            if task.status is not S.PENDING and task.status is not S.PAUSED:
                raise TaskStateError(
                    f"task {task_id} is {task.status.value}; only a pending or paused task "
                    "can gain a dependency",
                    task_id=str(task_id),
                    status=task.status.value,
                )
            graph = {t.task_id: t.depends_on for t in self._tasks.values()}
            graph[task_id] = (*task.depends_on, depends_on)
            cycle = find_cycle(graph)
            if cycle:
                raise DependencyCycle(
                    "task dependencies would form a cycle: " + " -> ".join(map(str, cycle)),
                    cycle=[str(t) for t in cycle],
                )
            if depends_on not in task.depends_on:
                self._tasks[task_id] = attrs.evolve(task, depends_on=graph[task_id])

    # Claiming --------------------------------------------------------------------------------

    def _claimable(self, task: Task, now: float, agent: str, types: set[str] | None) -> bool:
        if (
            task.status is not S.PENDING
            or (types is not None and task.task_type not in types)
            or (task.assigned_agent is not None and task.assigned_agent != agent)
            or (task.expires_at is not None and task.expires_at <= now)
            or (task.scheduled_at is not None and task.scheduled_at > now)
        ):
            return False
        return all(
            (dep := self._tasks.get(d)) is not None and dep.status is S.COMPLETED
            for d in task.depends_on
        )

    def _sort_key(self, task: Task) -> tuple[int, float, float, int]:
        when = task.scheduled_at if task.scheduled_at is not None else task.created_at
        return (-int(task.priority), when, task.created_at, self._order[task.task_id])

    def _rescue(self, now: float) -> None:
        """Running tasks whose lease ran out: pending again with a retry left (that attempt
        failed with "lease expired"), else failed."""
        for task in list(self._tasks.values()):
            lease = task.lease_expires_at
            if task.status is not S.RUNNING or lease is None or lease > now:
                continue
            self._end_run(task.task_id, S.FAILED, now, error="lease expired")
            common: dict[str, Any] = {
                "claimed_by": None,
                "lease_expires_at": None,
                "last_error": "lease expired",
            }
            if task.retry_count < task.max_retries:
                changed = attrs.evolve(
                    task, status=S.PENDING, retry_count=task.retry_count + 1, **common
                )
            else:
                changed = attrs.evolve(task, status=S.FAILED, completed_at=now, **common)
            self._tasks[task.task_id] = changed

    def _take(
        self, agent: str, types: set[str] | None, limit: int, lease: float | None
    ) -> list[Claim]:
        now = self._clock()
        self._rescue(now)
        found = sorted(
            (t for t in self._tasks.values() if self._claimable(t, now, agent, types)),
            key=self._sort_key,
        )[:limit]
        claims = []
        for task in found:
            seconds = task.max_execution_time if lease is None else lease
            claimed = attrs.evolve(
                task,
                status=S.RUNNING,
                attempts=task.attempts + 1,
                claimed_by=agent,
                lease_expires_at=now + seconds,
                started_at=now,
            )
            self._tasks[task.task_id] = claimed
            self._executions[task.task_id].append(
                Execution(task.task_id, claimed.attempts, agent, S.RUNNING, now)
            )
            claims.append(Claim(claimed, agent, claimed.attempts, now + seconds))
        return claims

    def claim(
        self,
        agent_id: str,
        *,
        types: Sequence[str] | None = None,
        limit: int = 1,
        lease: float | None = None,
        wait: float | None = None,
    ) -> list[Claim]:
        agent = check_agent(agent_id)
        wanted = check_types(types)
        limit = check_limit(limit)
        seconds = None if lease is None else check_seconds(lease, field="lease")
        until = None if wait is None else time.monotonic() + check_seconds(wait, field="wait")
        with self._cond:
            while True:
                self._check_open()
                claims = self._take(agent, wanted, limit, seconds)
                if claims or until is None:
                    return claims
                left = until - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(min(left, self._poll))

    def _current(self, claim: Claim) -> Task:
        if not isinstance(claim, Claim):
            raise InvalidArgument(f"expected a Claim, got {claim!r}")
        task = self._tasks.get(claim.task_id)
        if (
            task is None
            or task.status is not S.RUNNING
            or task.attempts != claim.attempt
            or task.claimed_by != claim.agent_id
            or task.lease_expires_at is None
            or task.lease_expires_at <= self._clock()
        ):
            status = "deleted" if task is None else task.status.value
            raise StaleClaim(
                f"task {claim.task_id}: attempt {claim.attempt} by {claim.agent_id!r} is no "
                f"longer current (the task is {status}"
                + (f", at attempt {task.attempts}; leases end when they run out)" if task else ")"),
                task_id=str(claim.task_id),
                attempt=claim.attempt,
            )
        return task

    def heartbeat(self, claim: Claim, *, lease: float | None = None) -> Claim:
        with self._cond:
            self._check_open()
            task = self._current(claim)
            now = self._clock()
            seconds = (
                claim.lease_expires_at - (task.started_at or now)
                if lease is None
                else check_seconds(lease, field="lease")
            )
            task = attrs.evolve(task, lease_expires_at=now + seconds)
            self._tasks[task.task_id] = task
            return Claim(task, claim.agent_id, claim.attempt, now + seconds)

    def complete(self, claim: Claim, result: Any = None) -> Task:
        raw = self._codec.encode(result)
        with self._cond:
            self._check_open()
            task = self._current(claim)
            now = self._clock()
            task = attrs.evolve(
                task,
                status=S.COMPLETED,
                completed_at=now,
                result=self._codec.decode(raw),
                lease_expires_at=None,
            )
            self._tasks[task.task_id] = task
            self._end_run(task.task_id, S.COMPLETED, now, result=task.result)
            self._cond.notify_all()  # tasks waiting on this one may be claimable now
            return task

    def fail(self, claim: Claim, error: str, *, retry: bool = True) -> Task:
        if type(error) is not str or not error:
            raise InvalidArgument(f"error must be a non-empty str, got {error!r}")
        if type(retry) is not bool:
            raise InvalidArgument(f"retry must be a bool, got {retry!r}")
        with self._cond:
            self._check_open()
            task = self._current(claim)
            now = self._clock()
            self._end_run(task.task_id, S.FAILED, now, error=error)
            if retry and task.retry_count < task.max_retries:
                retries = task.retry_count + 1
                task = attrs.evolve(
                    task,
                    status=S.PENDING,
                    retry_count=retries,
                    scheduled_at=now + backoff(retries),
                    claimed_by=None,
                    lease_expires_at=None,
                    last_error=error,
                )
            else:
                task = attrs.evolve(
                    task,
                    status=S.FAILED,
                    completed_at=now,
                    lease_expires_at=None,
                    last_error=error,
                )
            self._tasks[task.task_id] = task
            return task

    def _end_run(
        self,
        task_id: uuid.UUID,
        status: TaskStatus,
        now: float,
        *,
        result: Any = None,
        error: str | None = None,
    ) -> None:
        runs = self._executions[task_id]
        if runs and runs[-1].status is S.RUNNING:
            runs[-1] = attrs.evolve(
                runs[-1], status=status, completed_at=now, result=result, error=error
            )

    # Control ---------------------------------------------------------------------------------

    def _task(self, task_id: uuid.UUID) -> Task:
        task = self._tasks.get(check_task_id(task_id))
        if task is None:
            raise NotFound(f"no task {task_id}", task_id=str(task_id))
        return task

    def _move(
        self, task_id: uuid.UUID, allowed: set[TaskStatus], to: TaskStatus, verb: str
    ) -> Task:
        with self._cond:
            self._check_open()
            task = self._task(task_id)
            if task.status not in allowed:
                raise TaskStateError(
                    f"cannot {verb} task {task_id}: it is {task.status.value}",
                    task_id=str(task_id),
                    status=task.status.value,
                )
            now = self._clock()
            if task.status is S.RUNNING:
                self._end_run(task_id, S.FAILED, now, error="cancelled")
            changes: dict[str, Any] = {"status": to, "lease_expires_at": None}
            if to in TERMINAL:
                changes["completed_at"] = now
            task = attrs.evolve(task, **changes)
            self._tasks[task_id] = task
            self._cond.notify_all()
            return task

    def cancel(self, task_id: uuid.UUID) -> Task:
        return self._move(task_id, {S.PENDING, S.PAUSED, S.RUNNING}, S.CANCELLED, "cancel")

    def pause(self, task_id: uuid.UUID) -> Task:
        return self._move(task_id, {S.PENDING}, S.PAUSED, "pause")

    def resume(self, task_id: uuid.UUID) -> Task:
        return self._move(task_id, {S.PAUSED}, S.PENDING, "resume")

    # Reading ---------------------------------------------------------------------------------

    def get(self, task_id: uuid.UUID) -> Task | None:
        with self._cond:
            return self._tasks.get(check_task_id(task_id))

    def executions(self, task_id: uuid.UUID) -> list[Execution]:
        with self._cond:
            self._task(task_id)
            return list(self._executions[task_id])

    def stats(self) -> QueueStats:
        with self._cond:
            now = self._clock()
            counts = {s.value: 0 for s in S}
            oldest: float | None = None
            for task in self._tasks.values():
                counts[task.status.value] += 1
                if task.status is S.PENDING and (oldest is None or task.created_at < oldest):
                    oldest = task.created_at
            return QueueStats(
                counts=counts,
                oldest_pending_age_s=0.0 if oldest is None else max(0.0, now - oldest),
                total=len(self._tasks),
            )

    def purge(self, *, completed_before: float, include_failed: bool = False) -> int:
        before = check_time(completed_before, field="completed_before")
        if type(include_failed) is not bool:
            raise InvalidArgument(f"include_failed must be a bool, got {include_failed!r}")
        done = {S.COMPLETED, S.CANCELLED} | ({S.FAILED} if include_failed else set())
        with self._cond:
            self._check_open()
            needed = {
                d for t in self._tasks.values() if t.status not in TERMINAL for d in t.depends_on
            }
            parents = {t.parent for t in self._tasks.values() if t.parent is not None}
            gone = [
                t.task_id
                for t in self._tasks.values()
                if t.status in done
                and t.completed_at is not None
                and t.completed_at < before
                and t.task_id not in needed
                and t.task_id not in parents
            ]
            for task_id in gone:
                del self._tasks[task_id]
                del self._executions[task_id]
                del self._order[task_id]
            return len(gone)

    def list(
        self,
        *,
        status: TaskStatus | None = None,
        type: str | None = None,
        agent: str | None = None,
        limit: int = 100,
    ) -> builtins.list[Task]:
        wanted = check_status(status)
        check_limit(limit)
        with self._cond:
            found = [
                t
                for t in self._tasks.values()
                if (wanted is None or t.status is wanted)
                and (type is None or t.task_type == type)
                and (agent is None or agent in (t.assigned_agent, t.claimed_by))
            ]
            found.sort(key=lambda t: (t.created_at, self._order[t.task_id]))
            return found[:limit]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("this task queue is closed", hint="open a new one")
