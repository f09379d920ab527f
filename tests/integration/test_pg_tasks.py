"""The PostgreSQL task queue under real concurrency: threads and processes claiming one queue,
a worker killed mid-task, enqueues inside a caller's transaction, the wake-up."""

from __future__ import annotations

import collections
import os
import queue as queue_module
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from msstore.backends.postgres import PostgresTaskQueue, transaction
from msstore.errors import StaleClaim
from msstore.testing import eventually
from msstore.work import TaskSpec, TaskStatus

pytestmark = pytest.mark.postgres

WORKER = Path(__file__).with_name("task_worker.py")
S = TaskStatus


@pytest.fixture
def tasks_dsn(pg_state_dsn: str) -> str:
    return pg_state_dsn


@pytest.fixture
def queue(tasks_dsn: str) -> Iterator[PostgresTaskQueue]:
    with psycopg.connect(tasks_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE tasks.queue, tasks.executions, messages.outbox CASCADE")
    with PostgresTaskQueue(tasks_dsn, poll=0.2) as q:
        yield q


def completions(dsn: str) -> collections.Counter[uuid.UUID]:
    """Executions (attempts) per task, as PostgreSQL recorded them; all must be completed."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT task_id, status::text FROM tasks.executions").fetchall()
    assert {status for _, status in rows} <= {"completed"}
    return collections.Counter(r[0] for r in rows)


def test_eight_threads_complete_5000_tasks_exactly_once(
    queue: PostgresTaskQueue, tasks_dsn: str
) -> None:
    ids = []
    for start in range(0, 5000, 500):
        ids += queue.enqueue_many([TaskSpec("job", {"i": i}) for i in range(start, start + 500)])
    done: list[uuid.UUID] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            while claims := queue.claim(name, limit=10):
                for claim in claims:
                    queue.complete(claim, name)
                    with lock:
                        done.append(claim.task_id)
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(done) == sorted(ids)  # none lost, none twice
    assert completions(tasks_dsn) == collections.Counter(ids)
    assert queue.stats()["counts"]["completed"] == 5000
    assert len({t.claimed_by for t in queue.list(status=S.COMPLETED, limit=1000)}) > 1


def test_four_processes_complete_5000_tasks_exactly_once(
    queue: PostgresTaskQueue, tasks_dsn: str
) -> None:
    ids = []
    for start in range(0, 5000, 1000):
        ids += queue.enqueue_many([TaskSpec("job", {"i": i}) for i in range(start, start + 1000)])
    children = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "work", tasks_dsn, f"p{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    done: list[uuid.UUID] = []
    per_child = []
    for child in children:
        out, err = child.communicate(timeout=600)
        assert child.returncode == 0, err
        lines = out.split()
        assert lines[-1] == "DONE"
        per_child.append(len(lines) - 1)
        done += [uuid.UUID(x) for x in lines[:-1]]
    assert sorted(done) == sorted(ids)
    assert completions(tasks_dsn) == collections.Counter(ids)
    assert sum(1 for n in per_child if n > 0) >= 2  # the work was shared


def test_a_worker_killed_mid_task_has_its_task_completed_by_another(
    queue: PostgresTaskQueue, tasks_dsn: str
) -> None:
    task_id = queue.enqueue("job", {"n": 1}, max_retries=2)
    child = subprocess.Popen(
        [sys.executable, str(WORKER), "hang", tasks_dsn, "doomed"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert uuid.UUID(child.stdout.readline().strip()) == task_id
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    # The lease is 1 s; a waiting claim gets the task once the lease has run out.
    (claim,) = eventually(
        lambda: queue.claim("rescuer", wait=2), timeout=60, what="the rescued task"
    )
    assert claim.task_id == task_id and claim.attempt == 2
    queue.complete(claim, "rescued")
    runs = queue.executions(task_id)
    assert [(r.agent_id, r.status, r.error) for r in runs] == [
        ("doomed", S.FAILED, "lease expired"),
        ("rescuer", S.COMPLETED, None),
    ]
    task = queue.get(task_id)
    assert task is not None and task.status is S.COMPLETED and task.retry_count == 1


def test_chains_drain_exactly_once_while_workers_are_killed_again_and_again(
    queue: PostgresTaskQueue, tasks_dsn: str
) -> None:
    """40 chains of 10 tasks (each waits for the one before it) drained by three worker
    processes settling batches through work(); a worker is SIGKILLed once it has settled two
    batches and a fresh one takes its place, eight times. Every task completes exactly once
    (one completed execution row), and never before the task it depends on completed."""
    specs: list[TaskSpec] = []
    edges: list[tuple[uuid.UUID, uuid.UUID]] = []
    for _ in range(40):
        before: uuid.UUID | None = None
        for step in range(10):
            task_id = uuid.uuid4()
            deps = () if before is None else (before,)
            specs.append(
                TaskSpec("chain", {"step": step}, max_retries=100, depends_on=deps, task_id=task_id)
            )
            if before is not None:
                edges.append((task_id, before))
            before = task_id
    ids = queue.enqueue_many(specs)

    def start(name: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(WORKER), "chew", tasks_dsn, name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    lines: queue_module.Queue[tuple[subprocess.Popen[str], str]] = queue_module.Queue()

    def launch(name: str) -> subprocess.Popen[str]:
        child = start(name)

        def read() -> None:
            assert child.stdout is not None
            for line in child.stdout:
                lines.put((child, line.strip()))
            lines.put((child, "EOF"))

        threading.Thread(target=read, daemon=True).start()
        return child

    running = {launch(f"c{i}") for i in range(3)}
    batches: collections.Counter[subprocess.Popen[str]] = collections.Counter()
    kills = 0
    while running:
        child, line = lines.get(timeout=600)
        if line == "EOF":
            _, err = child.communicate(timeout=60)
            if child.returncode != -signal.SIGKILL:
                assert child.returncode == 0, err
            running.discard(child)
        elif line.startswith("BATCH"):
            batches[child] += 1
            if batches[child] == 2 and kills < 8:  # mid-stream: it has settled two batches
                os.kill(child.pid, signal.SIGKILL)
                kills += 1
                running.add(launch(f"r{kills}"))
    assert kills == 8

    with psycopg.connect(tasks_dsn) as conn:
        done: dict[uuid.UUID, int] = dict(
            conn.execute(
                "SELECT task_id, count(*) FROM tasks.executions WHERE status = 'completed' "
                "GROUP BY task_id"
            ).fetchall()
        )
        order = conn.execute(
            "SELECT count(*) FROM unnest(%s::uuid[], %s::uuid[]) AS e(t, d) "
            "JOIN tasks.executions x ON x.task_id = e.t AND x.status = 'completed' "
            "JOIN tasks.queue p ON p.task_id = e.d "
            "WHERE x.started_at < p.completed_at",
            [[t for t, _ in edges], [d for _, d in edges]],
        ).fetchone()
    assert done == dict.fromkeys(ids, 1)  # every task completed, each exactly once
    assert order == (0,)  # no task started before the one it depends on completed
    assert queue.stats()["counts"]["completed"] == len(ids)


def test_a_stale_worker_cannot_complete_after_its_lease_was_taken(
    queue: PostgresTaskQueue,
) -> None:
    task_id = queue.enqueue("job")
    (stale,) = queue.claim("slow", lease=0.2)
    fresh = eventually(lambda: queue.claim("fast", wait=1), timeout=60, what="the task again")
    with pytest.raises(StaleClaim):
        queue.complete(stale, "late")
    queue.complete(fresh[0], "on time")
    task = queue.get(task_id)
    assert task is not None and task.result == "on time"


def test_enqueue_commits_with_the_callers_transaction_or_not_at_all(
    queue: PostgresTaskQueue, tasks_dsn: str
) -> None:
    from psycopg_pool import ConnectionPool

    with ConnectionPool(tasks_dsn, min_size=1, max_size=2) as pool:

        def committed(conn: psycopg.Connection[object]) -> uuid.UUID:
            conn.execute("CREATE TABLE IF NOT EXISTS public.orders (id int PRIMARY KEY)")
            conn.execute("INSERT INTO public.orders VALUES (1) ON CONFLICT DO NOTHING")
            return queue.enqueue_many([TaskSpec("ship", {"order": 1})], conn=conn)[0]

        kept = transaction(pool, committed)
        assert queue.get(kept) is not None

        class Abort(Exception):
            pass

        seen: list[uuid.UUID] = []

        def rolled_back(conn: psycopg.Connection[object]) -> None:
            seen.extend(queue.enqueue_many([TaskSpec("ship", {"order": 2})], conn=conn))
            raise Abort

        with pytest.raises(Abort):
            transaction(pool, rolled_back)
        assert queue.get(seen[0]) is None
    assert queue.stats()["total"] == 1


def test_a_waiting_worker_wakes_on_notify_well_before_its_poll(tasks_dsn: str) -> None:
    """The poll is 60 s here, and the LISTEN connection is up before the worker waits: only the
    enqueue's notification can wake the worker in time."""
    with psycopg.connect(tasks_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE tasks.queue, tasks.executions, messages.outbox CASCADE")
    with PostgresTaskQueue(tasks_dsn, poll=60) as queue:
        assert queue.claim("w", wait=0.01) == []  # starts the wake-up connection
        eventually(lambda: queue.listening, what="the queue's LISTEN connection")
        got: list[uuid.UUID] = []
        thread = threading.Thread(
            target=lambda: got.extend(c.task_id for c in queue.claim("w", wait=50))
        )
        thread.start()
        eventually(lambda: queue.waiting == 1, what="the worker waiting in claim()")
        task_id = queue.enqueue("job")
        thread.join(40)
        assert not thread.is_alive(), "the notification did not wake the worker"
        assert got == [task_id]


def test_big_integers_in_payloads_and_results_come_back_exact(queue: PostgresTaskQueue) -> None:
    payload = {"big": 2**100, "neg": -(10**20), "f": 1.5, "text": "1234567890123456789"}
    task_id = queue.enqueue("exact", payload)
    (claim,) = queue.claim("w")
    assert claim.task.payload == payload and type(claim.task.payload["big"]) is int
    done = queue.complete(claim, {"sum": 2**70})
    stored = queue.get(task_id)
    assert stored is not None and stored.result == {"sum": 2**70} == done.result
