"""The task queue in process memory: :class:`~msstore.work.TaskQueueBase`'s primitives over
dictionaries, with a clock the caller can drive (leases, schedules, backoff and expiry all
read it)."""

from __future__ import annotations

import builtins
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs

from msstore.codec import Codec
from msstore.work import (
    RUN_CANCELLED,
    TERMINAL,
    Claim,
    Execution,
    LinkCheck,
    Move,
    NewTask,
    Settlement,
    Task,
    TaskQueueBase,
    TaskStatus,
    claim_order,
    claimable,
    ended,
    holds,
    moved,
    no_task,
    settled,
    taken,
    task_id_taken,
)

__all__ = ["MemoryTaskQueue"]

S = TaskStatus


class MemoryTaskQueue(TaskQueueBase):
    """``TaskQueue`` in memory (thread-safe). ``clock`` returns Unix seconds (``time.time``);
    a test passes a :class:`~msstore.testing.FakeClock` and advances it to expire leases or
    reach schedules. ``claim(wait=)`` waits on the real clock for a wake-up, looking again
    every ``poll`` seconds (to see a test clock move)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        codec: Codec | None = None,
        poll: float = 0.05,
    ) -> None:
        super().__init__(codec=codec, poll=poll)
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._tasks: dict[uuid.UUID, Task] = {}
        self._runs: dict[uuid.UUID, list[Execution]] = {}
        self._seq = 0
        self._generation = 0

    def __repr__(self) -> str:
        return f"MemoryTaskQueue({len(self._tasks)} tasks)"

    def _now(self) -> float:
        return self._clock()

    def _wake(self) -> None:
        """(Under the lock.) Waiting claims look again."""
        self._generation += 1
        self._cond.notify_all()

    # Writes ----------------------------------------------------------------------------------

    def _insert(self, tasks: Sequence[NewTask], now: float) -> list[uuid.UUID]:
        with self._cond:
            batch = {t.task_id for t in tasks}
            for new in tasks:
                if new.task_id in self._tasks:
                    raise task_id_taken(new.task_id)
                for dep in new.spec.depends_on:
                    if dep not in self._tasks and dep not in batch:
                        raise no_task(dep, field="depends_on")
                parent = new.spec.parent
                if parent is not None and parent not in self._tasks and parent not in batch:
                    raise no_task(parent, field="parent")
            held = {
                t.unique_key: t.task_id
                for t in self._tasks.values()
                if t.unique_key is not None and t.status not in TERMINAL
            }
            ids: list[uuid.UUID] = []
            for new in tasks:
                spec = new.spec
                if spec.unique_key is not None and spec.unique_key in held:
                    ids.append(held[spec.unique_key])
                    continue
                self._seq += 1
                self._tasks[new.task_id] = Task(
                    task_id=new.task_id,
                    task_type=spec.task_type,
                    payload=self._codec.decode(new.payload.data),
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
                    seq=self._seq,
                )
                self._runs[new.task_id] = []
                ids.append(new.task_id)
            self._wake()
            return ids

    def _take(
        self, agent: str, types: frozenset[str] | None, limit: int, lease: float | None, now: float
    ) -> list[Task]:
        with self._cond:

            def completed(task_id: uuid.UUID) -> bool:
                dep = self._tasks.get(task_id)
                return dep is not None and dep.status is S.COMPLETED

            found = sorted(
                (
                    t
                    for t in self._tasks.values()
                    if claimable(t, now=now, agent=agent, types=types, completed=completed)
                ),
                key=claim_order,
            )[:limit]
            out = []
            for task in found:
                claimed = taken(task, agent, now, lease)
                self._tasks[task.task_id] = claimed
                self._runs[task.task_id].append(
                    Execution(task.task_id, claimed.attempts, agent, S.RUNNING, now)
                )
                out.append(claimed)
            return out

    def _lapsed(self, now: float) -> list[Task]:
        with self._cond:
            return [
                t
                for t in self._tasks.values()
                if t.status is S.RUNNING
                and t.lease_expires_at is not None
                and t.lease_expires_at <= now
            ][:1000]

    def _settle(self, settlements: Sequence[Settlement]) -> list[float | None]:
        with self._cond:
            now = self._clock()
            out: list[float | None] = []
            for settlement in settlements:
                claim = settlement.claim
                task = self._tasks.get(claim.task_id)
                if task is None or not holds(task, claim, now, lapsed=settlement.lapsed):
                    out.append(None)
                    continue
                result = (
                    None
                    if settlement.result is None
                    else self._codec.decode(settlement.result.data)
                )
                self._tasks[task.task_id] = settled(task, settlement, now, result)
                self._close_run(
                    task.task_id, settlement.run_status, now, result=result, error=settlement.error
                )
                out.append(now)
            self._wake()  # completions may free dependents; lapsed tasks are claimable again
            return out

    def _close_run(
        self,
        task_id: uuid.UUID,
        status: TaskStatus,
        now: float,
        *,
        result: object,
        error: str | None,
    ) -> None:
        runs = self._runs[task_id]
        if runs and runs[-1].status is S.RUNNING:
            runs[-1] = ended(runs[-1], status, now, result=result, error=error)

    def _renew(self, claim: Claim, seconds: float) -> float | None:
        with self._cond:
            now = self._clock()
            task = self._tasks.get(claim.task_id)
            if task is None or not holds(task, claim, now):
                return None
            self._tasks[task.task_id] = attrs.evolve(task, lease_expires_at=now + seconds)
            return now + seconds

    def _change(self, task_id: uuid.UUID, decide: Callable[[Task], Move]) -> Task:
        with self._cond:
            task = self._tasks.get(task_id)
            if task is None:
                raise no_task(task_id)
            move = decide(task)
            now = self._clock()
            if move.ends_run:
                self._close_run(task_id, S.FAILED, now, result=None, error=RUN_CANCELLED)
            changed = moved(task, move, now)
            self._tasks[task_id] = changed
            if move.wakes:
                self._wake()
            return changed

    def _link(self, task_id: uuid.UUID, depends_on: uuid.UUID, check: LinkCheck) -> None:
        with self._cond:
            task = self._tasks.get(task_id)
            graph = {t.task_id: t.depends_on for t in self._tasks.values()}
            check(None if task is None else task.status, depends_on in self._tasks, graph)
            assert task is not None  # (check raised otherwise)
            if depends_on not in task.depends_on:
                self._tasks[task_id] = attrs.evolve(task, depends_on=(*task.depends_on, depends_on))

    def _delete_finished(self, statuses: frozenset[TaskStatus], before: float) -> int:
        with self._cond:
            needed = {
                d for t in self._tasks.values() if t.status not in TERMINAL for d in t.depends_on
            }
            parents = {t.parent for t in self._tasks.values() if t.parent is not None}
            gone = [
                t.task_id
                for t in self._tasks.values()
                if t.status in statuses
                and t.completed_at is not None
                and t.completed_at < before
                and t.task_id not in needed
                and t.task_id not in parents
            ]
            for task_id in gone:
                del self._tasks[task_id]
                del self._runs[task_id]
            return len(gone)

    # Reads -----------------------------------------------------------------------------------

    def _get(self, task_id: uuid.UUID) -> Task | None:
        with self._cond:
            return self._tasks.get(task_id)

    def _executions(self, task_id: uuid.UUID) -> builtins.list[Execution] | None:
        with self._cond:
            runs = self._runs.get(task_id)
            return None if runs is None else list(runs)

    def _counts(self) -> tuple[Mapping[TaskStatus, int], float | None, float]:
        with self._cond:
            counts: dict[TaskStatus, int] = {}
            oldest: float | None = None
            for task in self._tasks.values():
                counts[task.status] = counts.get(task.status, 0) + 1
                if task.status is S.PENDING and (oldest is None or task.created_at < oldest):
                    oldest = task.created_at
            return counts, oldest, self._clock()

    def _select(
        self, status: TaskStatus | None, task_type: str | None, agent: str | None, limit: int
    ) -> builtins.list[Task]:
        with self._cond:
            found: Iterable[Task] = (
                t
                for t in self._tasks.values()
                if (status is None or t.status is status)
                and (task_type is None or t.task_type == task_type)
                and (agent is None or agent in (t.assigned_agent, t.claimed_by))
            )
            return sorted(found, key=lambda t: t.seq)[:limit]

    # Waiting and closing ---------------------------------------------------------------------

    def _wake_mark(self) -> object:
        return self._generation

    def _wait_for_work(self, mark: object, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._generation != mark or self._closed, timeout)

    def _release(self) -> None:
        with self._cond:
            self._wake()
