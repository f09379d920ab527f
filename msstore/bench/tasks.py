"""The PostgreSQL task queue against the same workload written as raw psycopg SQL.

Starts its own PostgreSQL from the ``embedded`` extra (or uses ``MSSTORE_PG_DSN``), applies the
migrations, and alternates msstore and raw rounds (five each, which goes first alternating);
figures are medians, ratios the medians of the per-round ratios (``claim_ratio_rounds`` lists
them).

* ``enqueue_per_s``: ``PostgresTaskQueue.enqueue_many`` in batches of ``BATCH`` (500) tasks;
  ``raw_enqueue_per_s``: one ``INSERT ... SELECT FROM unnest(...)`` per batch (same columns)
  plus the ``NOTIFY``; ``enqueue_ratio``.
* ``claim_complete_per_s``: 4 worker threads, each claiming ``CLAIM_LIMIT`` (10) tasks at a
  time and completing each; ``raw_claim_complete_per_s``: the same with raw psycopg, one
  connection per thread: a ``FOR UPDATE SKIP LOCKED`` CTE claim of the same batch size that
  marks the tasks running and inserts their execution rows, then one statement per task that
  completes it and its execution row; ``claim_ratio``.
* ``wake_latency_p50_ms`` / ``wake_latency_p95_ms``: a worker waiting in ``claim(wait=...)``,
  from the enqueue's return to the worker's claim returning it, over ``WAKES`` (50) enqueues.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from msstore.bench._servers import database

TASKS = 4000
BATCH = 500
WORKERS = 4
CLAIM_LIMIT = 10
ROUNDS = 5
WAKES = 50

RAW_INSERT = """
INSERT INTO tasks.queue (task_id, task_type, payload, priority, max_retries,
  max_execution_time, created_at, updated_at, status)
SELECT id, 'bench', p::jsonb, 'normal', 3, interval '1 hour', now(), now(), 'pending'
FROM unnest(%b::uuid[], %b::text[]) AS a(id, p)
"""
RAW_CLAIM = """
WITH picked AS (
  SELECT q.task_id FROM tasks.queue q
  WHERE q.status = 'pending' AND (q.scheduled_at IS NULL OR q.scheduled_at <= now())
    AND (q.expires_at IS NULL OR q.expires_at > now())
    AND NOT EXISTS (
      SELECT 1 FROM tasks.dependencies d JOIN tasks.queue p ON p.task_id = d.depends_on_task_id
      WHERE d.task_id = q.task_id AND p.status <> 'completed')
  ORDER BY q.priority DESC, COALESCE(q.scheduled_at, q.created_at), q.created_at, q.task_id
  LIMIT %s
  FOR UPDATE OF q SKIP LOCKED
),
claimed AS (
  UPDATE tasks.queue q SET status = 'running', attempts = q.attempts + 1, claimed_by = %s,
    started_at = now(), updated_at = now(), lease_expires_at = now() + q.max_execution_time
  FROM picked WHERE q.task_id = picked.task_id
  RETURNING q.task_id, q.attempts, q.payload
),
runs AS (
  INSERT INTO tasks.executions (task_id, agent_id, execution_attempt, started_at, status)
  SELECT task_id, %s, attempts, now(), 'running' FROM claimed
)
SELECT task_id, attempts, payload FROM claimed
"""
RAW_COMPLETE = """
WITH done AS (
  UPDATE tasks.queue SET status = 'completed', completed_at = now(), updated_at = now(),
    result = %s::jsonb, lease_expires_at = NULL
  WHERE task_id = %s AND status = 'running' AND attempts = %s AND claimed_by = %s
  RETURNING task_id, attempts
)
UPDATE tasks.executions e SET status = 'completed', completed_at = now(), result = %s::jsonb
FROM done WHERE e.task_id = done.task_id AND e.execution_attempt = done.attempts
  AND e.status = 'running'
"""


def _payloads(n: int) -> list[dict[str, Any]]:
    return [{"job": i, "input": "x" * 64} for i in range(n)]


def _reset(dsn: str) -> None:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE tasks.queue, tasks.executions, messages.outbox CASCADE")


def msstore_round(dsn: str) -> tuple[float, float]:
    """``PostgresTaskQueue`` through the workload; (enqueue, claim + complete) tasks per second."""
    from msstore.backends.postgres import PostgresTaskQueue  # noqa: PLC0415
    from msstore.work import TaskSpec  # noqa: PLC0415

    _reset(dsn)
    payloads = _payloads(TASKS)
    with PostgresTaskQueue(dsn) as queue:
        start = time.perf_counter()
        for i in range(0, TASKS, BATCH):
            queue.enqueue_many([TaskSpec("bench", p) for p in payloads[i : i + BATCH]])
        enqueue = TASKS / (time.perf_counter() - start)
        for w in range(WORKERS):  # register the workers (once per agent) outside the timing
            queue.claim(f"w{w}", types=["none"])

        def work(w: int) -> int:
            done = 0
            while claims := queue.claim(f"w{w}", limit=CLAIM_LIMIT):
                for claim in claims:
                    queue.complete(claim, {"ok": True})
                    done += 1
            return done

        claimed = _workers(work)
    return enqueue, claimed


def raw_round(dsn: str) -> tuple[float, float]:
    """The same workload in hand-written psycopg; (enqueue, claim + complete) per second."""
    import orjson  # noqa: PLC0415
    import psycopg  # noqa: PLC0415

    from msstore.backends.postgres._agents import ENSURE_AGENTS, agent_of_token  # noqa: PLC0415

    _reset(dsn)
    payloads = _payloads(TASKS)
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.perf_counter()
        for i in range(0, TASKS, BATCH):
            chunk = payloads[i : i + BATCH]
            with conn.transaction():
                conn.execute(
                    RAW_INSERT,
                    [[uuid.uuid4() for _ in chunk], [orjson.dumps(p).decode() for p in chunk]],
                )
                conn.execute("SELECT pg_notify('msstore_tasks', 'enqueued')")
        enqueue = TASKS / (time.perf_counter() - start)
        names = [f"raw{w}" for w in range(WORKERS)]
        conn.execute(ENSURE_AGENTS, ([agent_of_token(n) for n in names], names))
    result = orjson.dumps({"ok": True}).decode()

    def work(w: int) -> int:
        name = f"raw{w}"
        agent = agent_of_token(name)
        done = 0
        with psycopg.connect(dsn, autocommit=True) as c:
            while rows := c.execute(RAW_CLAIM, [CLAIM_LIMIT, name, agent]).fetchall():
                for task_id, attempt, _payload in rows:
                    c.execute(RAW_COMPLETE, [result, task_id, attempt, name, result])
                    done += 1
        return done

    return enqueue, _workers(work)


def _workers(work: Callable[[int], int]) -> float:
    """``work(w)`` on ``WORKERS`` threads at once, each returning the tasks it completed; the
    tasks completed per second, all of them."""
    done = [0] * WORKERS

    def run(w: int) -> None:
        done[w] = work(w)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(WORKERS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rate = sum(done) / (time.perf_counter() - start)
    assert sum(done) == TASKS, done
    return rate


def _wake_latencies(dsn: str) -> list[float]:
    """Enqueue-to-claim times (ms) with a worker already waiting."""
    from msstore.backends.postgres import PostgresTaskQueue  # noqa: PLC0415

    _reset(dsn)
    latencies: list[float] = []
    with PostgresTaskQueue(dsn, poll=5.0) as producer, PostgresTaskQueue(dsn, poll=5.0) as worker:
        worker.claim("waiter", types=["none"])  # registered, connected: not part of the timing
        for _ in range(WAKES):
            ready = threading.Event()
            got: list[float] = []

            def wait(ready: threading.Event = ready, got: list[float] = got) -> None:
                ready.set()
                claims = worker.claim("waiter", wait=10)
                got.append(time.perf_counter())
                for claim in claims:
                    worker.complete(claim)

            thread = threading.Thread(target=wait)
            thread.start()
            ready.wait()
            time.sleep(0.02)  # the worker's first claim has found nothing and it now waits
            producer.enqueue("wake", {})
            sent = time.perf_counter()
            thread.join()
            latencies.append((got[0] - sent) * 1000)
    return latencies


def run() -> dict[str, Any]:
    from msstore.backends.postgres import Migrator  # noqa: PLC0415

    with database() as dsn:
        Migrator(dsn).up()
        ours: list[tuple[float, float]] = []
        raw: list[tuple[float, float]] = []
        msstore_round(dsn)  # warm-up: plans, connections, caches
        raw_round(dsn)
        for r in range(ROUNDS):  # which goes first alternates, so order effects cancel
            if r % 2:
                raw.append(raw_round(dsn))
                ours.append(msstore_round(dsn))
            else:
                ours.append(msstore_round(dsn))
                raw.append(raw_round(dsn))
        wakes = sorted(_wake_latencies(dsn))
    enqueue = statistics.median(e for e, _ in ours)
    raw_enqueue = statistics.median(e for e, _ in raw)
    claim = statistics.median(c for _, c in ours)
    raw_claim = statistics.median(c for _, c in raw)
    return {
        "tasks": TASKS,
        "batch": BATCH,
        "workers": WORKERS,
        "claim_limit": CLAIM_LIMIT,
        "enqueue_per_s": round(enqueue),
        "raw_enqueue_per_s": round(raw_enqueue),
        "enqueue_ratio": round(
            statistics.median(o[0] / r[0] for o, r in zip(ours, raw, strict=True)), 3
        ),
        "claim_complete_per_s": round(claim),
        "raw_claim_complete_per_s": round(raw_claim),
        "claim_ratio": round(
            statistics.median(o[1] / r[1] for o, r in zip(ours, raw, strict=True)), 3
        ),
        "claim_ratio_rounds": [round(o[1] / r[1], 3) for o, r in zip(ours, raw, strict=True)],
        "wake_latency_p50_ms": round(statistics.median(wakes), 2),
        "wake_latency_p95_ms": round(wakes[int(0.95 * (len(wakes) - 1))], 2),
    }
