"""The task queue against a small sequential model (Hypothesis stateful testing).

The model holds, per task: status, priority, enqueue order, dependencies, retries left, the
claim (worker, attempt, lease end) and its backoff. Rules enqueue (one task with dependencies
on earlier tasks, or a batch of like tasks), claim for one of three workers, complete, fail
(with and without retry), heartbeat, cancel, pause and resume, advance the queue's clock (leases
run out, backoffs end), crash a worker (its claims are forgotten, to be rescued when their
leases end) and, on PostgreSQL, restart the queue (a new queue object over the same tables).
After every step the queue must agree with the model: each task's status, attempts and
retries, and no task held by two claims. A claim must hand out exactly the tasks the model
says, in its order.

A claim whose lease has run out is stale: ``complete``, ``fail`` and ``heartbeat`` refuse it
with ``StaleClaim`` whether or not another worker claimed the task since; the task itself goes
back to pending (or to failed) at the next claim.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import attrs
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from msstore.errors import StaleClaim, TaskStateError
from msstore.testing import FakeClock
from msstore.work import Claim, Priority, TaskQueue, TaskStatus, backoff

from ._models import THOROUGH, run_model

S = TaskStatus
WORKERS = ("w0", "w1", "w2")


@attrs.define
class Model:
    task_id: uuid.UUID
    order: int
    created: float
    priority: int
    max_retries: int
    depends_on: tuple[uuid.UUID, ...]
    status: TaskStatus = S.PENDING
    retry_count: int = 0
    attempts: int = 0
    scheduled: float | None = None
    holder: str | None = None
    lease_end: float | None = None


Make = Callable[[FakeClock, bool], TaskQueue]  # (clock, fresh: start from empty tables)


class TaskQueueModel(RuleBasedStateMachine):
    make_queue: Make
    reopen: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.queue = type(self).make_queue(self.clock, True)
        self.tasks: dict[uuid.UUID, Model] = {}
        self.claims: dict[str, list[Claim]] = {w: [] for w in WORKERS}
        self.stale: list[Claim] = []
        self.order = 0

    def teardown(self) -> None:
        self.queue.close()

    # Model rules -----------------------------------------------------------------------------

    def rescue(self) -> None:
        now = self.clock()
        for t in self.tasks.values():
            if t.status is S.RUNNING and t.lease_end is not None and t.lease_end <= now:
                t.holder, t.lease_end = None, None
                if t.retry_count < t.max_retries:
                    t.status, t.retry_count = S.PENDING, t.retry_count + 1
                else:
                    t.status = S.FAILED

    def claimable(self) -> list[Model]:
        now = self.clock()
        ready = [
            t
            for t in self.tasks.values()
            if t.status is S.PENDING
            and (t.scheduled is None or t.scheduled <= now)
            and all(self.tasks[d].status is S.COMPLETED for d in t.depends_on)
        ]
        return sorted(
            ready,
            key=lambda t: (
                -t.priority,
                t.scheduled if t.scheduled is not None else t.created,
                t.created,
                t.order,
            ),
        )

    # Rules -----------------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        pass

    @rule(
        priority=st.sampled_from(list(Priority)),
        retries=st.integers(0, 2),
        deps=st.lists(st.integers(0, 30), max_size=2, unique=True),
    )
    def enqueue(self, priority: Priority, retries: int, deps: list[int]) -> None:
        self.clock.advance(0.001)  # distinct enqueue times: the claim order is the model's
        known = list(self.tasks)
        depends = tuple(known[d] for d in deps if d < len(known))
        task_id = self.queue.enqueue(
            "job", {"n": self.order}, priority=priority, max_retries=retries, depends_on=depends
        )
        self.order += 1
        self.tasks[task_id] = Model(
            task_id, self.order, self.clock(), int(priority), retries, depends
        )

    @rule(
        priority=st.sampled_from(list(Priority)),
        retries=st.integers(0, 2),
        n=st.integers(1, 4),
    )
    def enqueue_batch(self, priority: Priority, retries: int, n: int) -> None:
        # A burst of like tasks, enqueued at one instant: claimed in enqueue order.
        self.clock.advance(0.001)
        ids = self.queue.enqueue_batch(
            "job",
            [{"n": self.order + i} for i in range(n)],
            priority=priority,
            max_retries=retries,
        )
        for task_id in ids:
            self.order += 1
            self.tasks[task_id] = Model(
                task_id, self.order, self.clock(), int(priority), retries, ()
            )

    @rule(worker=st.sampled_from(WORKERS), limit=st.integers(1, 3), lease=st.sampled_from([5, 30]))
    def claim(self, worker: str, limit: int, lease: int) -> None:
        self.rescue()
        expected = [t.task_id for t in self.claimable()[:limit]]
        got = self.queue.claim(worker, limit=limit, lease=lease)
        assert [c.task_id for c in got] == expected
        for claim in got:
            t = self.tasks[claim.task_id]
            t.status, t.holder = S.RUNNING, worker
            t.attempts += 1
            t.lease_end = self.clock() + lease
            assert claim.attempt == t.attempts
        self.claims[worker].extend(got)

    def _held(self, worker: str, i: int) -> Claim | None:
        mine = self.claims[worker]
        return mine.pop(i % len(mine)) if mine else None

    def _current(self, claim: Claim) -> bool:
        """The claim is the task's latest and its lease has not run out."""
        t = self.tasks[claim.task_id]
        return (
            t.status is S.RUNNING
            and t.holder == claim.agent_id
            and t.attempts == claim.attempt
            and t.lease_end is not None
            and t.lease_end > self.clock()
        )

    @rule(worker=st.sampled_from(WORKERS), i=st.integers(0, 5))
    def complete(self, worker: str, i: int) -> None:
        claim = self._held(worker, i)
        if claim is None:
            return
        if not self._current(claim):
            with pytest.raises(StaleClaim):
                self.queue.complete(claim, "late")
            return
        assert self.queue.complete(claim, worker).status is S.COMPLETED
        t = self.tasks[claim.task_id]
        t.status, t.holder, t.lease_end = S.COMPLETED, None, None

    @rule(worker=st.sampled_from(WORKERS), i=st.integers(0, 5), retry=st.booleans())
    def fail(self, worker: str, i: int, retry: bool) -> None:
        claim = self._held(worker, i)
        if claim is None:
            return
        if not self._current(claim):
            with pytest.raises(StaleClaim):
                self.queue.fail(claim, "boom", retry=retry)
            return
        self.queue.fail(claim, "boom", retry=retry)
        self._failed(claim, retry)

    def _failed(self, claim: Claim, retry: bool) -> None:
        """The model after a current claim failed: retried after backoff, or a dead letter."""
        t = self.tasks[claim.task_id]
        t.holder, t.lease_end = None, None
        if retry and t.retry_count < t.max_retries:
            t.retry_count += 1
            t.status, t.scheduled = S.PENDING, self.clock() + backoff(t.retry_count)
        else:
            t.status = S.FAILED

    @rule(
        worker=st.sampled_from(WORKERS),
        n=st.integers(1, 4),
        fail=st.booleans(),
        retry=st.booleans(),
    )
    def settle_batch(self, worker: str, n: int, fail: bool, retry: bool) -> None:
        """complete_many / fail_many over a worker's claims, current and stale mixed."""
        mine = self.claims[worker]
        batch, self.claims[worker] = mine[:n], mine[n:]
        if not batch:
            return
        current = [self._current(c) for c in batch]
        if fail:
            outcomes = self.queue.fail_many([(c, "boom") for c in batch], retry=retry)
        else:
            outcomes = self.queue.complete_many([(c, worker) for c in batch])
        for claim, ok, outcome in zip(batch, current, outcomes, strict=True):
            assert isinstance(outcome, StaleClaim) is not ok, (claim, outcome)
            if not ok:
                continue
            if fail:
                self._failed(claim, retry)
                continue
            t = self.tasks[claim.task_id]
            t.status, t.holder, t.lease_end = S.COMPLETED, None, None

    @rule(worker=st.sampled_from(WORKERS), i=st.integers(0, 5))
    def heartbeat(self, worker: str, i: int) -> None:
        mine = self.claims[worker]
        if not mine:
            return
        claim = mine[i % len(mine)]
        if not self._current(claim):
            with pytest.raises(StaleClaim):
                self.queue.heartbeat(claim, lease=10)
            mine.remove(claim)
            return
        renewed = self.queue.heartbeat(claim, lease=10)
        mine[mine.index(claim)] = renewed
        self.tasks[claim.task_id].lease_end = self.clock() + 10

    @rule(worker=st.sampled_from(WORKERS))
    def crash(self, worker: str) -> None:
        self.claims[worker] = []  # the process is gone; its leases run out on their own

    @rule(seconds=st.sampled_from([1, 4, 6, 11, 31]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: self.tasks)
    @rule(i=st.integers(0, 30), op=st.sampled_from(["cancel", "pause", "resume"]))
    def control(self, i: int, op: str) -> None:
        t = list(self.tasks.values())[i % len(self.tasks)]
        allowed = {
            "cancel": {S.PENDING, S.PAUSED, S.RUNNING},
            "pause": {S.PENDING},
            "resume": {S.PAUSED},
        }[op]
        if t.status not in allowed:
            with pytest.raises(TaskStateError):
                getattr(self.queue, op)(t.task_id)
            return
        getattr(self.queue, op)(t.task_id)
        t.status = {"cancel": S.CANCELLED, "pause": S.PAUSED, "resume": S.PENDING}[op]
        t.holder, t.lease_end = None, None

    @precondition(lambda self: self.reopen)
    @rule()
    def restart(self) -> None:
        self.queue.close()
        self.queue = type(self).make_queue(self.clock, False)

    # Invariants ------------------------------------------------------------------------------

    @invariant()
    def agrees_with_the_model(self) -> None:
        for t in self.tasks.values():
            got = self.queue.get(t.task_id)
            assert got is not None
            if got.status is S.RUNNING and t.status is S.RUNNING:
                assert got.claimed_by == t.holder and got.attempts == t.attempts
            # A lease that ran out is rescued at the next claim: until then the queue may still
            # call the task running.
            lapsed = (
                t.status is S.RUNNING and t.lease_end is not None and t.lease_end <= self.clock()
            )
            if not lapsed:
                assert got.status is t.status, (t, got)
                assert got.retry_count == t.retry_count
            # One execution row per attempt: written once, when the attempt ends (the one under
            # way is the task itself).
            runs = self.queue.executions(t.task_id)
            assert [r.attempt for r in runs] == list(range(1, t.attempts + 1)), (t, runs)
        holders = [c.task_id for claims in self.claims.values() for c in claims if self._current(c)]
        assert len(holders) == len(set(holders))  # no task held by two claims


def _run(make: Make, *, reopen: bool, examples: int, steps: int) -> None:
    TaskQueueModel.make_queue = staticmethod(make)
    TaskQueueModel.reopen = reopen
    run_model(TaskQueueModel, examples=examples, steps=steps)


def test_the_memory_queue_matches_its_model() -> None:
    from msstore.backends.memory import MemoryTaskQueue

    _run(
        lambda clock, fresh: MemoryTaskQueue(clock=clock),
        reopen=False,
        examples=1000 if THOROUGH else 150,
        steps=40,
    )


@pytest.mark.postgres
def test_the_postgres_queue_matches_its_model(pg_state_dsn: str) -> None:
    import psycopg

    from msstore.backends.postgres import PostgresTaskQueue

    def make(clock: FakeClock, fresh: bool) -> TaskQueue:
        if fresh:  # each example starts from empty tables; a restart reopens over its rows
            with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
                conn.execute("TRUNCATE tasks.queue, tasks.executions, messages.outbox CASCADE")
        return PostgresTaskQueue(pg_state_dsn, clock=clock, rescue_interval=1e-6)

    _run(make, reopen=True, examples=60 if THOROUGH else 10, steps=30)
