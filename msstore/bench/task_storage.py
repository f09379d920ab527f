"""What the task queue's tables hold after ``TOTAL`` (100,000) tasks went through it.

Enqueues and completes ``TOTAL`` tasks in ``STEPS`` steps (through ``PostgresTaskQueue.work``,
4 workers, batches of 10), and after each step reports the bytes of each table the queue
writes: the table itself (heap, TOAST) and its indexes, from ``pg_total_relation_size`` and
``pg_indexes_size`` (summed over partitions) after ``VACUUM`` (what a running system's
autovacuum leaves). A lean queue keeps its hot table small while its history grows; the
figures show which tables grow.

The raw baseline: PgQueuer's tables after the same tasks, when the ``bench`` extra installed it
(its queue table, where finished jobs are deleted, and its log).
"""

from __future__ import annotations

import threading
from typing import Any

from msstore.bench._servers import database

TOTAL = 100_000
STEPS = 4
BATCH = 1000
WORKERS = 4
TABLES = ("tasks.queue", "tasks.executions", "tasks.dependencies", "messages.outbox")
PEER_TABLES = ("pgqueuer", "pgqueuer_log")


def _sizes(dsn: str, tables: tuple[str, ...]) -> dict[str, dict[str, int]]:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(dsn, autocommit=True) as conn:
        out: dict[str, dict[str, int]] = {}
        for table in tables:
            conn.execute(f"VACUUM {table}")
            leaves = [  # (a partitioned table: the sum of its partitions)
                r[0]
                for r in conn.execute(
                    "SELECT relid::text FROM pg_partition_tree(%s::regclass) WHERE isleaf",
                    [table],
                ).fetchall()
            ] or [table]
            row = conn.execute(
                "SELECT sum(pg_total_relation_size(t::regclass))::bigint, "
                "sum(pg_indexes_size(t::regclass))::bigint, "
                f"(SELECT count(*) FROM {table}) FROM unnest(%s::text[]) AS t",
                [leaves],
            ).fetchone()
            assert row is not None
            total, indexes, rows = row
            out[table] = {"rows": rows, "table_bytes": total - indexes, "index_bytes": indexes}
        return out


def _drain(dsn: str) -> None:
    from msstore.backends.postgres import PostgresTaskQueue  # noqa: PLC0415

    with PostgresTaskQueue(dsn) as queue:

        def work(w: int) -> None:
            while queue.work(f"w{w}", lambda task: {"ok": True}, limit=10).claimed:
                pass

        threads = [threading.Thread(target=work, args=(w,)) for w in range(WORKERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def _msstore(dsn: str) -> list[dict[str, Any]]:
    from msstore.backends.postgres import PostgresTaskQueue  # noqa: PLC0415
    from msstore.work import TaskSpec  # noqa: PLC0415

    steps = []
    with PostgresTaskQueue(dsn) as queue:
        for step in range(STEPS):
            for i in range(0, TOTAL // STEPS, BATCH):
                queue.enqueue_many([TaskSpec("bench", {"job": i, "input": "x" * 64})] * BATCH)
            _drain(dsn)
            done = (step + 1) * (TOTAL // STEPS)
            steps.append({"completed": done, **_sizes(dsn, TABLES)})
    return steps


def _pgqueuer(dsn: str) -> list[dict[str, Any]]:
    from msstore.bench import tasks  # noqa: PLC0415

    tasks.pgqueuer_install(dsn)
    steps = []
    done = 0
    for step in range(STEPS):
        while done < (step + 1) * (TOTAL // STEPS):
            tasks.pgqueuer_round(dsn, keep=True)
            done += tasks.TASKS
        steps.append({"completed": done, **_sizes(dsn, PEER_TABLES)})
    return steps


def run() -> dict[str, Any]:
    from msstore.backends.postgres import Migrator  # noqa: PLC0415
    from msstore.bench.tasks import pgqueuer_installed  # noqa: PLC0415

    with database() as dsn:
        Migrator(dsn).up()
        ours = _msstore(dsn)
        theirs = _pgqueuer(dsn) if pgqueuer_installed() else []
    last = ours[-1]
    hot = last["tasks.queue"]
    figures: dict[str, Any] = {
        "tasks": TOTAL,
        "hot_table_rows": hot["rows"],
        "hot_table_bytes": hot["table_bytes"] + hot["index_bytes"],
        "bytes_per_task": round(
            sum(v["table_bytes"] + v["index_bytes"] for k, v in last.items() if k in TABLES) / TOTAL
        ),
        "steps": ours,
    }
    if theirs:
        peer = theirs[-1]
        figures["pgqueuer_bytes_per_task"] = round(
            sum(v["table_bytes"] + v["index_bytes"] for k, v in peer.items() if k in PEER_TABLES)
            / peer["completed"]
        )
        figures["pgqueuer_steps"] = theirs
    return figures
