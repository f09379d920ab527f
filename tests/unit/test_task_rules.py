"""The task queue's state machine as pure functions (msstore.work._task_rules)."""

from __future__ import annotations

import uuid

import pytest

from msstore.codec import default_codec
from msstore.errors import DependencyCycle, NotFound, TaskStateError
from msstore.work import (
    LEASE_EXPIRED,
    Claim,
    Priority,
    Task,
    TaskSpec,
    TaskStatus,
    backoff,
    claim_order,
    claimable,
    holds,
    moved,
    settled,
)
from msstore.work._task_rules import (
    check_link,
    completion,
    decide_move,
    default_lease,
    failure,
    first_per_unique_key,
    lease_lost,
    taken,
)
from msstore.work._tasks import check_specs

S = TaskStatus
NOW = 1_000.0


def task(**changes: object) -> Task:
    values: dict[str, object] = {
        "task_id": uuid.uuid4(),
        "task_type": "t",
        "payload": {},
        "status": S.PENDING,
        "priority": Priority.NORMAL,
        "created_at": NOW,
        "seq": 1,
    }
    values.update(changes)
    return Task(**values)  # type: ignore[arg-type]


def running(**changes: object) -> Task:
    return taken(task(**changes), "w", NOW, 30.0)


def test_claim_order_is_priority_then_time_then_enqueue_order() -> None:
    tasks = [
        task(seq=3),
        task(seq=2),
        task(seq=9, priority=Priority.HIGH),
        task(seq=1, scheduled_at=NOW + 5),
        task(seq=4, created_at=NOW - 1),
    ]
    assert [t.seq for t in sorted(tasks, key=claim_order)] == [9, 4, 2, 3, 1]


@pytest.mark.parametrize(
    ("changes", "ok"),
    [
        ({}, True),
        ({"status": S.PAUSED}, False),
        ({"assigned_agent": "someone"}, False),
        ({"assigned_agent": "w"}, True),
        ({"expires_at": NOW}, False),
        ({"scheduled_at": NOW + 1}, False),
        ({"scheduled_at": NOW}, True),
    ],
)
def test_what_an_agent_may_claim(changes: dict[str, object], ok: bool) -> None:
    candidate = task(**changes)
    assert claimable(candidate, now=NOW, agent="w", types=None, completed=lambda _: True) is ok
    if ok:
        assert not claimable(
            candidate, now=NOW, agent="w", types=frozenset({"x"}), completed=lambda _: True
        )


def test_a_task_waits_for_every_dependency() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    waiting = task(depends_on=(a, b))
    assert not claimable(waiting, now=NOW, agent="w", types=None, completed=lambda d: d == a)
    assert claimable(waiting, now=NOW, agent="w", types=None, completed=lambda d: True)


def test_a_claim_holds_while_its_lease_runs_and_lapses_after() -> None:
    held = running()
    claim = Claim(held, "w", held.attempts, held.lease_expires_at or 0.0)
    assert holds(held, claim, NOW + 29)
    assert not holds(held, claim, NOW + 30) and holds(held, claim, NOW + 30, lapsed=True)
    assert not holds(None, claim, NOW)
    assert not holds(held, Claim(held, "other", held.attempts, 0.0), NOW)
    assert default_lease(claim) == 30.0


def test_failure_retries_with_backoff_until_the_retries_run_out() -> None:
    held = running(max_retries=1)
    claim = Claim(held, "w", 1, NOW + 30)
    retry = failure(claim, "boom", retry=True)
    assert (retry.status, retry.retry_in, retry.retried, retry.finished) == (
        S.PENDING,
        backoff(1),
        True,
        False,
    )
    after = settled(held, retry, NOW + 1, None)
    assert (after.status, after.retry_count, after.claimed_by, after.scheduled_at) == (
        S.PENDING,
        1,
        None,
        NOW + 1 + backoff(1),
    )
    assert failure(claim, "boom", retry=False).status is S.FAILED
    spent = Claim(running(max_retries=1, retry_count=1), "w", 1, NOW + 30)
    dead = failure(spent, "boom", retry=True)
    assert dead.status is S.FAILED and dead.finished and dead.run_status is S.FAILED


def test_a_lost_lease_is_retried_at_once_keeping_the_schedule() -> None:
    held = running(scheduled_at=NOW - 5)
    lost = lease_lost(held)
    assert (lost.status, lost.error, lost.lapsed, lost.retry_in) == (
        S.PENDING,
        LEASE_EXPIRED,
        True,
        None,
    )
    assert settled(held, lost, NOW + 40, None).scheduled_at == NOW - 5
    assert lease_lost(running(max_retries=0)).status is S.FAILED


def test_completion_keeps_the_result() -> None:
    held = running()
    done = completion(Claim(held, "w", 1, NOW + 30), default_codec.encode_canonical({"a": 1}))
    after = settled(held, done, NOW + 2, {"a": 1})
    assert (after.status, after.result, after.completed_at, after.lease_expires_at) == (
        S.COMPLETED,
        {"a": 1},
        NOW + 2,
        None,
    )
    assert done.run_status is S.COMPLETED and not done.retried


@pytest.mark.parametrize(
    ("status", "verb", "to"),
    [
        (S.PENDING, "pause", S.PAUSED),
        (S.PAUSED, "resume", S.PENDING),
        (S.RUNNING, "cancel", S.CANCELLED),
        (S.PAUSED, "cancel", S.CANCELLED),
    ],
)
def test_control_moves(status: TaskStatus, verb: str, to: TaskStatus) -> None:
    move = decide_move(task(status=status), verb)
    assert move.to is to and move.ends_run is (status is S.RUNNING)
    after = moved(task(status=status), move, NOW)
    assert after.status is to and (after.completed_at == NOW) is move.finished


@pytest.mark.parametrize(
    ("status", "verb"),
    [(S.RUNNING, "pause"), (S.PENDING, "resume"), (S.COMPLETED, "cancel"), (S.FAILED, "pause")],
)
def test_moves_a_status_does_not_allow_are_refused(status: TaskStatus, verb: str) -> None:
    with pytest.raises(TaskStateError) as info:
        decide_move(task(status=status), verb)
    assert info.value.status == status.value


def test_a_link_is_refused_when_it_would_close_a_cycle() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    graph = {b: [c], c: [a]}  # b -> c -> a
    with pytest.raises(DependencyCycle) as info:
        check_link(a, b, status=S.PENDING, target_exists=True, graph=graph)
    assert info.value.cycle == [str(a), str(b), str(c), str(a)]
    with pytest.raises(DependencyCycle):
        check_link(a, a, status=S.PENDING, target_exists=True, graph={})
    check_link(c, b, status=S.PAUSED, target_exists=True, graph={b: [a]})
    with pytest.raises(NotFound):
        check_link(a, b, status=None, target_exists=True, graph={})
    with pytest.raises(NotFound, match="depends_on"):
        check_link(a, b, status=S.PENDING, target_exists=False, graph={})
    with pytest.raises(TaskStateError):
        check_link(a, b, status=S.RUNNING, target_exists=True, graph={})


def test_one_task_per_unique_key_in_a_batch() -> None:
    tasks = check_specs(
        [TaskSpec("t", unique_key="k"), TaskSpec("t"), TaskSpec("t", unique_key="k")], now=NOW
    )
    rows, same_as = first_per_unique_key(tasks)
    assert [r.task_id for r in rows] == [tasks[0].task_id, tasks[1].task_id]
    assert same_as == [0, 1, 0]
