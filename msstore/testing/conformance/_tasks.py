"""The cases every :class:`~msstore.work.TaskQueue` passes."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from msstore.errors import (
    DependencyCycle,
    DuplicateKey,
    InvalidArgument,
    NotFound,
    SerializationError,
    StaleClaim,
    TaskStateError,
)
from msstore.testing._clock import FakeClock
from msstore.work import Priority, TaskQueue, TaskSpec, TaskStatus, backoff

from ._closing import check_closing

__all__ = ["TaskQueueConformance"]

S = TaskStatus


class TaskQueueConformance:
    """Cases for :class:`~msstore.work.TaskQueue`. Needs fixture ``queue_factory``: a
    callable taking a clock (``() -> Unix seconds``) and returning a fresh, empty queue that
    reads time from it."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        """Fixture: the fake clock the queue is made with."""
        return FakeClock()

    @pytest.fixture
    def queue(
        self, queue_factory: Callable[[Callable[[], float]], TaskQueue], clock: FakeClock
    ) -> Iterator[TaskQueue]:
        """Fixture: a fresh queue from ``queue_factory(clock)``, closed after the case."""
        q = queue_factory(clock)
        yield q
        q.close()

    # Enqueue and claim ---------------------------------------------------------------------

    def test_an_enqueued_task_reads_back_pending(self, queue: TaskQueue, clock: FakeClock) -> None:
        task_id = queue.enqueue("email", {"to": "a@b.c", "n": [1, 2]}, priority=Priority.HIGH)
        task = queue.get(task_id)
        assert task is not None
        assert (task.task_type, task.payload, task.status) == (
            "email",
            {"to": "a@b.c", "n": [1, 2]},
            S.PENDING,
        )
        assert task.priority is Priority.HIGH and task.created_at == clock()
        assert queue.get(uuid.uuid4()) is None

    def test_claim_takes_priority_then_schedule_then_age(
        self, queue: TaskQueue, clock: FakeClock
    ) -> None:
        low = queue.enqueue("t", {"n": "low"}, priority=Priority.LOW)
        clock.advance(1)
        old = queue.enqueue("t", {"n": "old"})
        clock.advance(1)
        young = queue.enqueue("t", {"n": "young"})
        early = queue.enqueue("t", {"n": "early"}, scheduled_at=clock() - 100)
        urgent = queue.enqueue("t", {"n": "urgent"}, priority=Priority.URGENT)
        order = [c.task_id for c in queue.claim("w1", limit=10)]
        assert order == [urgent, early, old, young, low]

    def test_a_claimed_task_is_running_under_a_lease_with_an_execution_row(
        self, queue: TaskQueue, clock: FakeClock
    ) -> None:
        task_id = queue.enqueue("t")
        (claim,) = queue.claim("w1", lease=30)
        assert claim.task_id == task_id and claim.attempt == 1 and claim.agent_id == "w1"
        assert claim.lease_expires_at == clock() + 30
        task = queue.get(task_id)
        assert task is not None and task.status is S.RUNNING and task.claimed_by == "w1"
        (run,) = queue.executions(task_id)
        assert (run.attempt, run.agent_id, run.status) == (1, "w1", S.RUNNING)
        assert queue.claim("w2") == []  # nobody else holds it while the lease runs

    def test_tasks_enqueued_at_one_instant_are_claimed_in_enqueue_order(
        self, queue: TaskQueue
    ) -> None:
        batch = queue.enqueue_many([TaskSpec("t", {"i": i}) for i in range(12)])
        singles = [queue.enqueue("t", {"i": 100 + i}) for i in range(4)]
        claimed = [c.task_id for c in queue.claim("w", limit=20)]
        assert claimed == batch + singles

    def test_list_returns_tasks_in_enqueue_order(self, queue: TaskQueue) -> None:
        ids = queue.enqueue_many([TaskSpec("t", {"i": i}) for i in range(8)])
        ids.append(queue.enqueue("t"))
        assert [t.task_id for t in queue.list()] == ids

    def test_claim_filters_by_type_and_honours_the_limit(self, queue: TaskQueue) -> None:
        for i in range(5):
            queue.enqueue("a", {"i": i})
        queue.enqueue("b")
        assert [c.task.task_type for c in queue.claim("w", types=["b"], limit=5)] == ["b"]
        assert len(queue.claim("w", types=["a"], limit=3)) == 3
        assert len(queue.claim("w", limit=10)) == 2

    def test_a_task_scheduled_later_waits_for_its_time(
        self, queue: TaskQueue, clock: FakeClock
    ) -> None:
        task_id = queue.enqueue("t", scheduled_at=clock() + 60)
        assert queue.claim("w") == []
        clock.advance(61)
        assert [c.task_id for c in queue.claim("w")] == [task_id]

    def test_an_expired_task_is_never_claimed(self, queue: TaskQueue, clock: FakeClock) -> None:
        queue.enqueue("t", expires_at=clock() + 10)
        clock.advance(11)
        assert queue.claim("w") == []

    def test_an_assigned_task_goes_only_to_its_agent(self, queue: TaskQueue) -> None:
        task_id = queue.enqueue("t", assigned_agent="alice")
        assert queue.claim("bob") == []
        assert [c.task_id for c in queue.claim("alice")] == [task_id]

    def test_a_unique_key_holds_one_unfinished_task(self, queue: TaskQueue) -> None:
        first = queue.enqueue("t", {"v": 1}, unique_key="job-7")
        assert queue.enqueue("t", {"v": 2}, unique_key="job-7") == first
        assert queue.stats()["total"] == 1
        (claim,) = queue.claim("w")
        queue.complete(claim, "done")
        again = queue.enqueue("t", {"v": 3}, unique_key="job-7")  # the first one finished
        assert again != first

    def test_enqueue_many_is_all_or_nothing(self, queue: TaskQueue) -> None:
        ids = queue.enqueue_many([TaskSpec("t", {"i": i}) for i in range(3)])
        assert len(set(ids)) == 3
        with pytest.raises(InvalidArgument, match="task_type"):
            queue.enqueue_many([TaskSpec("t"), TaskSpec("")])
        assert queue.stats()["total"] == 3

    def test_enqueue_batch_adds_one_task_per_payload_with_the_options(
        self, queue: TaskQueue, clock: FakeClock
    ) -> None:
        parent = queue.enqueue("plan")
        ids = queue.enqueue_batch(
            "crawl",
            [{"url": "a"}, None, [1, 2]],
            priority=Priority.HIGH,
            scheduled_at=clock() + 5,
            max_retries=1,
            max_execution_time=60,
            parent=parent,
            assigned_agent="w",
        )
        assert len(set(ids)) == 3 and parent not in ids
        tasks = [queue.get(i) for i in ids]
        assert [t.payload for t in tasks if t] == [{"url": "a"}, {}, [1, 2]]
        for task in tasks:
            assert task is not None
            assert (task.task_type, task.status, task.priority) == ("crawl", S.PENDING, 2)
            assert (task.scheduled_at, task.max_retries, task.max_execution_time) == (
                clock() + 5,
                1,
                60.0,
            )
            assert (task.parent, task.assigned_agent, task.depends_on) == (parent, "w", ())
        assert queue.claim("w", types=["crawl"]) == []  # scheduled later
        clock.advance(5)
        assert [c.task_id for c in queue.claim("w", types=["crawl"], limit=5)] == ids
        assert queue.enqueue_batch("crawl", []) == []

    @pytest.mark.parametrize(
        ("payloads", "kwargs", "error", "field"),
        [
            ({"url": "a"}, {}, InvalidArgument, "payloads"),
            ("abc", {}, InvalidArgument, "payloads"),
            ([{"ok": 1}, {"bad": object()}], {}, SerializationError, "JSON"),
            ([{"ok": 1}], {"priority": 9}, InvalidArgument, "priority"),
            ([{"ok": 1}], {"max_retries": -1}, InvalidArgument, "max_retries"),
            ([{"ok": 1}], {"expires_at": 1.0}, InvalidArgument, "expires_at"),
        ],
        ids=["a-dict", "a-str", "a-bad-payload", "priority", "max_retries", "expires_at"],
    )
    def test_a_bad_enqueue_batch_is_refused_and_nothing_written(
        self, queue: TaskQueue, payloads: Any, kwargs: dict[str, Any], error: type, field: str
    ) -> None:
        with pytest.raises(error, match=field):
            queue.enqueue_batch("t", payloads, **kwargs)
        assert queue.stats()["total"] == 0

    def test_enqueue_batch_under_a_missing_parent_is_refused(self, queue: TaskQueue) -> None:
        with pytest.raises(NotFound):
            queue.enqueue_batch("t", [1, 2], parent=uuid.uuid4())
        assert queue.stats()["total"] == 0

    # Completion, failure, retries ----------------------------------------------------------

    def test_complete_keeps_the_result(self, queue: TaskQueue) -> None:
        task_id = queue.enqueue("t")
        (claim,) = queue.claim("w")
        task = queue.complete(claim, {"answer": 42})
        assert task.status is S.COMPLETED and task.result == {"answer": 42}
        stored = queue.get(task_id)
        assert stored is not None and stored.result == {"answer": 42}
        assert [r.status for r in queue.executions(task_id)] == [S.COMPLETED]

    def test_a_second_complete_is_refused(self, queue: TaskQueue) -> None:
        queue.enqueue("t")
        (claim,) = queue.claim("w")
        queue.complete(claim, 1)
        with pytest.raises(StaleClaim):
            queue.complete(claim, 2)
        task = queue.get(claim.task_id)
        assert task is not None and task.result == 1

    def test_fail_retries_with_backoff_then_keeps_a_dead_letter(
        self, queue: TaskQueue, clock: FakeClock
    ) -> None:
        task_id = queue.enqueue("t", max_retries=2)
        for attempt in (1, 2):
            (claim,) = queue.claim("w")
            task = queue.fail(claim, f"boom {attempt}")
            assert task.status is S.PENDING and task.retry_count == attempt
            assert queue.claim("w") == []  # backing off
            clock.advance(backoff(attempt))
        (claim,) = queue.claim("w")
        task = queue.fail(claim, "boom 3")
        assert task.status is S.FAILED and task.last_error == "boom 3"
        runs = queue.executions(task_id)
        assert [(r.attempt, r.status, r.error) for r in runs] == [
            (1, S.FAILED, "boom 1"),
            (2, S.FAILED, "boom 2"),
            (3, S.FAILED, "boom 3"),
        ]
        clock.advance(3600)
        assert queue.claim("w") == []

    def test_fail_without_retry_is_final(self, queue: TaskQueue) -> None:
        queue.enqueue("t", max_retries=5)
        (claim,) = queue.claim("w")
        assert queue.fail(claim, "bad input", retry=False).status is S.FAILED

    # Batches and the worker helper -------------------------------------------------------

    def test_complete_many_settles_a_batch_and_reports_stale_claims(
        self, queue: TaskQueue, clock: FakeClock
    ) -> None:
        ids = queue.enqueue_many([TaskSpec("t", {"n": i}) for i in range(4)])
        claims = queue.claim("w", limit=4, lease=10)
        queue.complete(claims[1], "early")  # already done: stale in the batch
        queue.cancel(claims[2].task_id)  # cancelled: stale in the batch
        outcomes = queue.complete_many([(c, {"done": c.task.payload["n"]}) for c in claims])
        assert [type(o).__name__ for o in outcomes] == ["Task", "StaleClaim", "StaleClaim", "Task"]
        for i in (0, 3):
            task = queue.get(ids[i])
            assert task is not None and task.status is S.COMPLETED
            assert task.result == {"done": i} and outcomes[i] == task
            assert [r.status for r in queue.executions(ids[i])] == [S.COMPLETED]
        early = queue.get(ids[1])
        assert early is not None and early.result == "early"
        assert queue.complete_many([]) == []

    def test_fail_many_retries_and_keeps_each_error(
        self, queue: TaskQueue, clock: FakeClock
    ) -> None:
        ids = queue.enqueue_many([TaskSpec("t", max_retries=1), TaskSpec("t", max_retries=0)])
        claims = queue.claim("w", limit=2)
        outcomes = queue.fail_many([(claims[0], "boom a"), (claims[1], "boom b")])
        assert [o.status for o in outcomes if not isinstance(o, StaleClaim)] == [
            S.PENDING,
            S.FAILED,
        ]
        assert [r.error for r in queue.executions(ids[0])] == ["boom a"]
        assert [r.error for r in queue.executions(ids[1])] == ["boom b"]
        clock.advance(backoff(1))
        (again,) = queue.claim("w")
        (dead,) = queue.fail_many([(again, "boom c")], retry=True)
        assert not isinstance(dead, StaleClaim) and dead.status is S.FAILED

    @pytest.mark.parametrize(
        "batch",
        [
            pytest.param("not pairs", id="a str"),
            pytest.param([("claim", 1)], id="not a claim"),
            pytest.param(None, id="None"),
        ],
    )
    def test_a_bad_batch_is_refused_and_nothing_written(self, queue: TaskQueue, batch: Any) -> None:
        queue.enqueue("t")
        (claim,) = queue.claim("w")
        with pytest.raises(InvalidArgument):
            queue.complete_many(batch)
        with pytest.raises(InvalidArgument, match="twice"):
            queue.complete_many([(claim, 1), (claim, 2)])
        with pytest.raises(InvalidArgument, match="error"):
            queue.fail_many([(claim, "")])
        with pytest.raises(InvalidArgument):
            queue.complete_many([(claim, object())])
        task = queue.get(claim.task_id)
        assert task is not None and task.status is S.RUNNING

    def test_work_runs_a_handler_per_task_and_settles_the_batch(
        self, queue: TaskQueue, clock: FakeClock
    ) -> None:
        ids = queue.enqueue_many([TaskSpec("t", {"n": i}, max_retries=1) for i in range(5)])
        seen: list[int] = []

        def handler(task: Any) -> Any:
            seen.append(task.payload["n"])
            if task.payload["n"] == 3:
                raise ValueError("no threes")
            return {"twice": task.payload["n"] * 2}

        report = queue.work("w", handler, limit=10)
        assert (report.claimed, report.completed, report.failed, report.stale) == (5, 4, 1, 0)
        assert seen == [0, 1, 2, 3, 4]  # claim order
        done = queue.get(ids[4])
        assert done is not None and done.status is S.COMPLETED and done.result == {"twice": 8}
        retried = queue.get(ids[3])
        assert retried is not None and retried.status is S.PENDING
        assert retried.last_error == "ValueError: no threes"
        assert queue.work("w", handler).claimed == 0  # the failed one is backing off
        clock.advance(backoff(1))
        assert queue.work("w", handler).failed == 1
        dead = queue.get(ids[3])
        assert dead is not None and dead.status is S.FAILED
        assert [r.error for r in queue.executions(ids[3])] == ["ValueError: no threes"] * 2

    def test_work_counts_a_task_lost_while_its_handler_ran_as_stale(
        self, queue: TaskQueue, clock: FakeClock
    ) -> None:
        task_id = queue.enqueue("t")

        def slow(task: Any) -> Any:
            clock.advance(20)  # the handler outlives its lease
            return "late"

        report = queue.work("w", slow, lease=10)
        assert (report.claimed, report.completed, report.stale) == (1, 0, 1)
        task = queue.get(task_id)
        assert task is not None and task.status is S.RUNNING and task.result is None

    def test_work_fails_a_result_that_is_not_json_without_retry(self, queue: TaskQueue) -> None:
        task_id = queue.enqueue("t", max_retries=3)
        report = queue.work("w", lambda task: object())
        assert report.failed == 1
        task = queue.get(task_id)
        assert task is not None and task.status is S.FAILED
        assert task.last_error is not None and "JSON" in task.last_error

    # Leases --------------------------------------------------------------------------------

    def test_an_expired_lease_makes_the_task_claimable_and_the_old_claim_stale(
        self, queue: TaskQueue, clock: FakeClock
    ) -> None:
        task_id = queue.enqueue("t")
        (stale,) = queue.claim("w1", lease=10)
        clock.advance(11)
        (fresh,) = queue.claim("w2", lease=10)
        assert fresh.task_id == task_id and fresh.attempt == 2
        with pytest.raises(StaleClaim):
            queue.complete(stale, "late")
        with pytest.raises(StaleClaim):
            queue.heartbeat(stale)
        queue.complete(fresh, "on time")
        task = queue.get(task_id)
        assert task is not None and task.result == "on time"
        runs = queue.executions(task_id)
        assert [(r.agent_id, r.status) for r in runs] == [("w1", S.FAILED), ("w2", S.COMPLETED)]

    def test_a_claim_whose_lease_ran_out_is_stale_before_anyone_else_claims(
        self, queue: TaskQueue, clock: FakeClock
    ) -> None:
        task_id = queue.enqueue("t")
        (claim,) = queue.claim("w1", lease=10)
        clock.advance(10)
        for act in (lambda: queue.complete(claim), lambda: queue.heartbeat(claim)):
            with pytest.raises(StaleClaim):
                act()
        (again,) = queue.claim("w1")
        assert again.task_id == task_id and again.attempt == 2

    def test_a_heartbeat_extends_the_lease(self, queue: TaskQueue, clock: FakeClock) -> None:
        queue.enqueue("t")
        (claim,) = queue.claim("w1", lease=10)
        clock.advance(8)
        renewed = queue.heartbeat(claim, lease=10)
        assert renewed.lease_expires_at == clock() + 10
        clock.advance(8)
        assert queue.claim("w2") == []  # still held
        queue.complete(renewed)

    def test_the_default_lease_is_the_max_execution_time(
        self, queue: TaskQueue, clock: FakeClock
    ) -> None:
        queue.enqueue("t", max_execution_time=5)
        (claim,) = queue.claim("w1")
        assert claim.lease_expires_at == clock() + 5
        clock.advance(6)
        assert len(queue.claim("w2")) == 1

    def test_expired_leases_count_against_max_retries(
        self, queue: TaskQueue, clock: FakeClock
    ) -> None:
        task_id = queue.enqueue("t", max_retries=1)
        queue.claim("w1", lease=1)
        clock.advance(2)
        assert len(queue.claim("w2", lease=1)) == 1  # the one retry
        clock.advance(2)
        assert queue.claim("w3") == []  # no retries left: a dead letter, not handed out again
        task = queue.get(task_id)
        assert task is not None and task.status is S.FAILED
        assert task.last_error == "lease expired"
        runs = queue.executions(task_id)
        assert [(r.agent_id, r.status, r.error) for r in runs] == [
            ("w1", S.FAILED, "lease expired"),
            ("w2", S.FAILED, "lease expired"),
        ]

    # Dependencies --------------------------------------------------------------------------

    def test_a_chain_runs_in_order(self, queue: TaskQueue) -> None:
        a = queue.enqueue("t", {"n": "a"})
        b = queue.enqueue("t", {"n": "b"}, depends_on=[a])
        c = queue.enqueue("t", {"n": "c"}, depends_on=[b])
        assert [t.depends_on for t in map(queue.get, (a, b, c)) if t] == [(), (a,), (b,)]
        done: list[uuid.UUID] = []
        while claims := queue.claim("w", limit=10):
            for claim in claims:
                assert claim.task.depends_on == (() if claim.task_id == a else (done[-1],))
                done.append(claim.task_id)
                queue.complete(claim)
        assert done == [a, b, c]

    def test_a_diamond_waits_for_both_branches(self, queue: TaskQueue) -> None:
        top = uuid.uuid4()
        left, right, bottom = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        queue.enqueue_many(
            [
                TaskSpec("t", task_id=bottom, depends_on=(left, right)),
                TaskSpec("t", task_id=left, depends_on=(top,)),
                TaskSpec("t", task_id=right, depends_on=(top,)),
                TaskSpec("t", task_id=top),
            ]
        )
        rounds = []
        while claims := queue.claim("w", limit=10):
            rounds.append({c.task_id for c in claims})
            for claim in claims:
                queue.complete(claim)
        assert rounds == [{top}, {left, right}, {bottom}]

    def test_a_cycle_is_refused_and_nothing_written(self, queue: TaskQueue) -> None:
        a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        with pytest.raises(DependencyCycle):
            queue.enqueue_many(
                [
                    TaskSpec("t", task_id=a, depends_on=(c,)),
                    TaskSpec("t", task_id=b, depends_on=(a,)),
                    TaskSpec("t", task_id=c, depends_on=(b,)),
                ]
            )
        with pytest.raises(DependencyCycle):
            queue.enqueue("t", task_id=a, depends_on=[a])
        assert queue.stats()["total"] == 0

    def test_a_dependency_added_later_holds_the_task_back_and_a_cycle_is_refused(
        self, queue: TaskQueue
    ) -> None:
        a = queue.enqueue("t", {"n": "a"}, priority=Priority.LOW)
        b = queue.enqueue("t", {"n": "b"}, priority=Priority.HIGH)
        c = queue.enqueue("t", {"n": "c"}, priority=Priority.LOW, depends_on=[b])
        queue.add_dependency(b, a)  # b now waits for a, though it has the higher priority
        with pytest.raises(DependencyCycle):
            queue.add_dependency(a, c)  # a -> c -> b -> a
        with pytest.raises(DependencyCycle):
            queue.add_dependency(a, a)
        with pytest.raises(NotFound):
            queue.add_dependency(a, uuid.uuid4())
        order = []
        while claims := queue.claim("w", limit=10):
            for claim in claims:
                order.append(claim.task_id)
                queue.complete(claim)
        assert order == [a, b, c]
        with pytest.raises(TaskStateError):
            queue.add_dependency(c, a)  # finished tasks gain no dependencies

    def test_a_task_id_already_taken_is_refused_and_nothing_written(self, queue: TaskQueue) -> None:
        taken = queue.enqueue("t")
        with pytest.raises(DuplicateKey) as info:
            queue.enqueue_many([TaskSpec("t"), TaskSpec("t", task_id=taken)])
        assert info.value.key == str(taken)
        assert queue.stats()["total"] == 1

    def test_a_dependency_on_a_missing_task_is_refused(self, queue: TaskQueue) -> None:
        with pytest.raises(NotFound):
            queue.enqueue("t", depends_on=[uuid.uuid4()])
        assert queue.stats()["total"] == 0

    # Control -------------------------------------------------------------------------------

    def test_pause_and_resume(self, queue: TaskQueue) -> None:
        task_id = queue.enqueue("t")
        assert queue.pause(task_id).status is S.PAUSED
        assert queue.claim("w") == []
        with pytest.raises(TaskStateError):
            queue.pause(task_id)
        assert queue.resume(task_id).status is S.PENDING
        assert [c.task_id for c in queue.claim("w")] == [task_id]

    def test_cancel_ends_a_task_and_its_worker_gets_a_stale_claim(self, queue: TaskQueue) -> None:
        waiting = queue.enqueue("t", priority=Priority.LOW)
        running = queue.enqueue("t")
        (claim,) = queue.claim("w")
        assert queue.cancel(running).status is S.CANCELLED
        with pytest.raises(StaleClaim):
            queue.complete(claim)
        assert queue.cancel(waiting).status is S.CANCELLED
        assert queue.claim("w") == []
        with pytest.raises(TaskStateError):
            queue.cancel(running)  # finished already

    def test_an_unknown_task_is_not_found(self, queue: TaskQueue) -> None:
        for op in (queue.cancel, queue.pause, queue.resume, queue.executions):
            with pytest.raises(NotFound):
                op(uuid.uuid4())

    # Reading -------------------------------------------------------------------------------

    def test_list_filters_by_status_type_and_agent(self, queue: TaskQueue) -> None:
        a = queue.enqueue("x")
        b = queue.enqueue("y", assigned_agent="alice")
        queue.enqueue("x", priority=Priority.LOW)
        (claim,) = queue.claim("bob", types=["x"])
        assert claim.task_id == a
        assert [t.task_id for t in queue.list(status=S.RUNNING)] == [a]
        assert [t.task_id for t in queue.list(type="y")] == [b]
        assert [t.task_id for t in queue.list(agent="alice")] == [b]
        assert [t.task_id for t in queue.list(agent="bob")] == [a]
        assert len(queue.list(limit=2)) == 2

    def test_stats_count_every_status_and_the_oldest_pending_age(
        self, queue: TaskQueue, clock: FakeClock
    ) -> None:
        queue.enqueue("t")
        clock.advance(30)
        queue.enqueue("t")
        done = queue.enqueue("t", priority=Priority.URGENT)
        (claim,) = queue.claim("w")
        assert claim.task_id == done
        queue.complete(claim)
        clock.advance(10)
        stats = queue.stats()
        assert stats["counts"]["pending"] == 2 and stats["counts"]["completed"] == 1
        assert set(stats["counts"]) == {s.value for s in S}
        assert stats["oldest_pending_age_s"] == pytest.approx(40)
        assert stats["total"] == 3

    def test_purge_drops_finished_tasks_before_a_time(
        self, queue: TaskQueue, clock: FakeClock
    ) -> None:
        first = queue.enqueue("t")
        (claim,) = queue.claim("w")
        queue.complete(claim)
        clock.advance(100)
        queue.enqueue("t", max_retries=0)
        (claim,) = queue.claim("w")
        queue.fail(claim, "x")
        kept = queue.enqueue("t")
        assert queue.purge(completed_before=clock() - 50) == 1
        assert queue.get(first) is None
        assert queue.purge(completed_before=clock() + 1) == 0  # dead letters are kept ...
        assert queue.purge(completed_before=clock() + 1, include_failed=True) == 1  # ... unless
        assert queue.get(kept) is not None

    # Bad input -----------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"priority": -1}, "priority"),
            ({"priority": 9}, "priority"),
            ({"priority": True}, "priority"),
            ({"max_retries": -1}, "max_retries"),
            ({"max_execution_time": 0}, "max_execution_time"),
            ({"scheduled_at": "soon"}, "scheduled_at"),
            ({"expires_at": 1.0}, "expires_at"),
            ({"unique_key": ""}, "unique_key"),
            ({"assigned_agent": "a.b"}, "assigned_agent"),
            ({"depends_on": ["not-a-uuid"]}, "depends_on"),
        ],
        ids=lambda v: v if isinstance(v, str) else None,
    )
    def test_bad_enqueue_input_names_the_field_and_writes_nothing(
        self, queue: TaskQueue, kwargs: dict[str, Any], field: str
    ) -> None:
        with pytest.raises(InvalidArgument, match=field):
            queue.enqueue("t", **kwargs)
        assert queue.stats()["total"] == 0

    def test_an_oversize_or_non_json_payload_is_refused(self, queue: TaskQueue) -> None:
        with pytest.raises(SerializationError):
            queue.enqueue("t", {"blob": "x" * (2 * 1024 * 1024)})
        with pytest.raises(SerializationError):
            queue.enqueue("t", {"when": object()})
        assert queue.stats()["total"] == 0

    @pytest.mark.parametrize(
        "kwargs",
        [{"limit": 0}, {"limit": 1001}, {"lease": 0}, {"types": []}, {"types": "a"}, {"wait": -1}],
        ids=repr,
    )
    def test_bad_claim_input_is_refused(self, queue: TaskQueue, kwargs: dict[str, Any]) -> None:
        queue.enqueue("t")
        with pytest.raises(InvalidArgument):
            queue.claim("w", **kwargs)
        assert queue.stats()["counts"]["pending"] == 1

    def test_a_bad_agent_id_is_refused(self, queue: TaskQueue) -> None:
        queue.enqueue("t")
        for agent in ("", "a b", "x" * 300, 7):
            with pytest.raises(InvalidArgument, match="agent_id"):
                queue.claim(agent)  # type: ignore[arg-type]

    # Lifecycle ---------------------------------------------------------------------------------

    def test_a_queue_is_a_context_manager_and_refuses_work_once_closed(
        self, queue_factory: Callable[[Callable[[], float]], TaskQueue], clock: FakeClock
    ) -> None:
        check_closing(lambda: queue_factory(clock), lambda q: q.enqueue("t"))

    # Waiting -------------------------------------------------------------------------------

    def test_a_waiting_claim_wakes_when_work_arrives(self, queue: TaskQueue) -> None:
        got: list[Any] = []
        started = threading.Event()

        def worker() -> None:
            started.set()
            got.extend(queue.claim("w", wait=30))

        thread = threading.Thread(target=worker)
        thread.start()
        started.wait()
        task_id = queue.enqueue("t")
        thread.join(60)
        assert not thread.is_alive()
        assert [c.task_id for c in got] == [task_id]

    def test_a_waiting_claim_returns_empty_when_nothing_arrives(self, queue: TaskQueue) -> None:
        assert queue.claim("w", wait=0.05) == []
