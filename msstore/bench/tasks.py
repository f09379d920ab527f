"""The PostgreSQL task queue against PgQueuer (the peer a user would pick instead) and against
the same workload written as raw psycopg SQL on msstore's tables.

Starts its own PostgreSQL from the ``embedded`` extra (or uses ``MSSTORE_PG_DSN``), applies the
migrations (and PgQueuer's schema, when the ``bench`` extra installed ``pgqueuer``), and runs
five rounds of each, the order rotating every round; figures are medians, ratios the medians
of the per-round ratios (``*_rounds`` list them). Every round: ``TASKS`` (4,000) tasks, the same
payloads, enqueued in batches of ``BATCH``, then drained by 4 workers taking 10 at a time.

* ``enqueue_per_s``: ``PostgresTaskQueue.enqueue_batch`` (one task type, one payload per task,
  as PgQueuer's ``enqueue`` takes them) in batches of ``BATCH`` (500) tasks;
  ``enqueue_many_per_s``: ``enqueue_many`` with a ``TaskSpec`` per task, the same batches;
  ``raw_enqueue_per_s``: one ``INSERT ... SELECT FROM unnest(...)`` of ids and payloads per
  batch plus the ``NOTIFY``; ``enqueue_ratio`` (``enqueue_per_s`` over raw).
* ``claim_complete_per_s``: 4 worker threads, each calling ``PostgresTaskQueue.work`` with
  ``limit=CLAIM_LIMIT`` (10): claim a batch, run the handler per task, complete the batch in
  one statement; ``raw_claim_complete_per_s``: the same with raw psycopg, one
  connection per thread: a ``FOR UPDATE SKIP LOCKED`` CTE claim of the same batch size that
  marks the tasks running and inserts their execution rows, then one statement per task that
  completes it and its execution row; ``claim_ratio``.
* ``pgqueuer_enqueue_per_s`` / ``pgqueuer_claim_complete_per_s``: PgQueuer (asyncpg driver)
  on the same server: ``Queries.enqueue`` with lists of ``BATCH`` jobs; four
  ``QueueManager`` objects, each on its own connection, ``batch_size=10``, draining the queue.
  ``enqueue_vs_pgqueuer``, ``enqueue_many_vs_pgqueuer`` and ``claim_vs_pgqueuer``: msstore's
  rate over PgQueuer's, per round.
* ``wake_latency_p50_ms`` / ``wake_latency_p95_ms``: a worker waiting in ``claim(wait=...)``,
  from the enqueue's return to the worker's claim returning it, over ``WAKES`` (50) enqueues.
"""

from __future__ import annotations

import statistics
import threading
import time
import urllib.parse
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
        conn.execute("VACUUM ANALYZE tasks.queue")


def msstore_round(dsn: str) -> tuple[float, float, float]:
    """``PostgresTaskQueue`` through the workload; (enqueue with ``enqueue_batch``, claim +
    complete, enqueue with ``enqueue_many``) tasks per second."""
    from msstore.backends.postgres import PostgresTaskQueue  # noqa: PLC0415
    from msstore.work import TaskSpec  # noqa: PLC0415

    payloads = _payloads(TASKS)
    with PostgresTaskQueue(dsn) as queue:
        # Outside the timing, as PgQueuer's connections are opened before its: the pool's
        # connection, and the workers' registration (once per agent).
        for w in range(WORKERS):
            queue.claim(f"w{w}", types=["none"])
        _reset(dsn)
        start = time.perf_counter()
        for i in range(0, TASKS, BATCH):
            queue.enqueue_many([TaskSpec("bench", p) for p in payloads[i : i + BATCH]])
        many = TASKS / (time.perf_counter() - start)
        _reset(dsn)
        start = time.perf_counter()
        for i in range(0, TASKS, BATCH):
            queue.enqueue_batch("bench", payloads[i : i + BATCH])
        enqueue = TASKS / (time.perf_counter() - start)

        def work(w: int) -> int:
            done = 0
            while (report := queue.work(f"w{w}", _handle, limit=CLAIM_LIMIT)).claimed:
                done += report.completed
            return done

        claimed = _workers(work)
    return enqueue, claimed, many


def _handle(task: Any) -> Any:
    return {"ok": True}


def pgqueuer_installed() -> bool:
    """Whether the ``bench`` extra's PgQueuer (and its asyncpg driver) can be imported."""
    import importlib.util  # noqa: PLC0415

    return all(importlib.util.find_spec(m) is not None for m in ("pgqueuer", "asyncpg"))


def _asyncpg_dsn(dsn: str) -> str:
    import psycopg  # noqa: PLC0415

    info = psycopg.conninfo.conninfo_to_dict(dsn)
    user, host = info.get("user", ""), info.get("host", "127.0.0.1")
    password = (
        f":{urllib.parse.quote(str(info['password']), safe='')}" if info.get("password") else ""
    )
    return f"postgresql://{user}{password}@{host}:{info.get('port', 5432)}/{info.get('dbname')}"


def pgqueuer_install(dsn: str) -> None:
    """PgQueuer's own schema, installed by PgQueuer."""
    import asyncio  # noqa: PLC0415

    import asyncpg  # noqa: PLC0415
    from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver  # noqa: PLC0415
    from pgqueuer.queries import Queries  # noqa: PLC0415

    async def install() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(dsn))
        try:
            await Queries(AsyncpgDriver(conn)).install()
        finally:
            await conn.close()

    asyncio.run(install())


def pgqueuer_round(dsn: str, *, keep: bool = False) -> tuple[float, float]:
    """PgQueuer through the workload; (enqueue, claim + complete) jobs per second. ``keep``:
    leave its log from earlier rounds in place."""
    import asyncio  # noqa: PLC0415
    from datetime import timedelta  # noqa: PLC0415

    import asyncpg  # noqa: PLC0415
    import orjson  # noqa: PLC0415
    from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver  # noqa: PLC0415
    from pgqueuer.core.qm import QueueManager  # noqa: PLC0415
    from pgqueuer.queries import Queries  # noqa: PLC0415
    from pgqueuer.types import QueueExecutionMode  # noqa: PLC0415

    url = _asyncpg_dsn(dsn)
    payloads = _payloads(TASKS)

    async def main() -> tuple[float, float]:
        conn = await asyncpg.connect(url)
        try:
            if not keep:
                await conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")
            queries = Queries(AsyncpgDriver(conn))
            start = time.perf_counter()
            for i in range(0, TASKS, BATCH):
                # (JSON-encoded here, as msstore encodes its payloads inside its timing)
                chunk: list[bytes | None] = [orjson.dumps(p) for p in payloads[i : i + BATCH]]
                await queries.enqueue(["bench"] * len(chunk), chunk, [0] * len(chunk))
            enqueue = TASKS / (time.perf_counter() - start)
        finally:
            await conn.close()
        done = [0]

        async def job(job: Any) -> None:
            done[0] += 1

        workers = [await asyncpg.connect(url) for _ in range(WORKERS)]
        try:
            managers = []
            for c in workers:
                manager = QueueManager(Queries(AsyncpgDriver(c)))
                manager.entrypoint("bench")(job)  # (a decorator, applied by hand)
                managers.append(manager)
            start = time.perf_counter()
            await asyncio.gather(
                *(
                    m.run(
                        batch_size=CLAIM_LIMIT,
                        mode=QueueExecutionMode.drain,
                        log_aggregation_interval=timedelta(0),
                    )
                    for m in managers
                )
            )
            claimed = done[0] / (time.perf_counter() - start)
        finally:
            for c in workers:
                await c.close()
        assert done[0] == TASKS, done
        return enqueue, claimed

    return asyncio.run(main())


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


def _ratio(
    ours: list[tuple[float, ...]], other: list[tuple[float, ...]], i: int, j: int | None = None
) -> float:
    """The median over rounds of our figure ``i`` over the other's figure ``j`` (default
    ``i``)."""
    j = i if j is None else j
    return round(statistics.median(o[i] / r[j] for o, r in zip(ours, other, strict=True)), 3)


def run() -> dict[str, Any]:
    from msstore.backends.postgres import Migrator  # noqa: PLC0415

    contenders: dict[str, Callable[[str], tuple[float, ...]]] = {
        "msstore": msstore_round,
        "raw": raw_round,
    }
    if pgqueuer_installed():
        contenders["pgqueuer"] = pgqueuer_round
    rounds: dict[str, list[tuple[float, ...]]] = {name: [] for name in contenders}
    with database() as dsn:
        Migrator(dsn).up()
        if "pgqueuer" in contenders:
            pgqueuer_install(dsn)
        names = list(contenders)
        for name in names:  # warm-up: plans, connections, caches
            contenders[name](dsn)
        for r in range(ROUNDS):  # the order rotates, so order effects cancel
            for name in names[r % len(names) :] + names[: r % len(names)]:
                rounds[name].append(contenders[name](dsn))
        wakes = sorted(_wake_latencies(dsn))
    ours, raw = rounds["msstore"], rounds["raw"]
    enqueue = statistics.median(r[0] for r in ours)
    raw_enqueue = statistics.median(r[0] for r in raw)
    claim = statistics.median(r[1] for r in ours)
    raw_claim = statistics.median(r[1] for r in raw)
    peer: dict[str, Any] = {"pgqueuer": "not installed (pip install 'msstore[bench]')"}
    if "pgqueuer" in rounds:
        theirs = rounds["pgqueuer"]
        peer = {
            "pgqueuer_enqueue_per_s": round(statistics.median(r[0] for r in theirs)),
            "pgqueuer_claim_complete_per_s": round(statistics.median(r[1] for r in theirs)),
            "enqueue_vs_pgqueuer": _ratio(ours, theirs, 0),
            "enqueue_many_vs_pgqueuer": _ratio(ours, theirs, 2, 0),
            "claim_vs_pgqueuer": _ratio(ours, theirs, 1),
            "claim_vs_pgqueuer_rounds": [
                round(o[1] / t[1], 3) for o, t in zip(ours, theirs, strict=True)
            ],
        }
    return {
        "tasks": TASKS,
        "batch": BATCH,
        "workers": WORKERS,
        "claim_limit": CLAIM_LIMIT,
        "enqueue_per_s": round(enqueue),
        "raw_enqueue_per_s": round(raw_enqueue),
        "enqueue_ratio": _ratio(ours, raw, 0),
        "enqueue_many_per_s": round(statistics.median(r[2] for r in ours)),
        "claim_complete_per_s": round(claim),
        "raw_claim_complete_per_s": round(raw_claim),
        "claim_ratio": _ratio(ours, raw, 1),
        "claim_ratio_rounds": [round(o[1] / r[1], 3) for o, r in zip(ours, raw, strict=True)],
        "wake_latency_p50_ms": round(statistics.median(wakes), 2),
        "wake_latency_p95_ms": round(wakes[int(0.95 * (len(wakes) - 1))], 2),
        **peer,
    }
