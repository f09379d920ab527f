"""A worker process for the task queue tests (run as a script, not collected).

``python task_worker.py work DSN NAME``: claims (up to 10 at a time, waiting up to 2 s for
more) and completes tasks until the queue has nothing pending or running for it; prints the
ids it completed, one per line, then ``DONE``.
``python task_worker.py chew DSN NAME``: the same through ``work()`` (batches of 5, 1 s leases),
printing ``BATCH n`` after each batch it settled (a parent kills it between two of them).
``python task_worker.py hang DSN NAME``: claims one task under a 1 s lease, prints its id, then
sleeps until it is killed (a worker that dies mid-task).
"""

from __future__ import annotations

import sys
import time

from msstore.backends.postgres import PostgresTaskQueue
from msstore.errors import StaleClaim


def work(queue: PostgresTaskQueue, name: str) -> None:
    idle = 0
    while idle < 3:
        claims = queue.claim(name, limit=10, wait=2)
        if not claims:
            stats = queue.stats()["counts"]
            idle = idle + 1 if stats["pending"] == 0 and stats["running"] == 0 else 0
            continue
        idle = 0
        for claim in claims:
            try:
                queue.complete(claim, {"by": name})
            except StaleClaim:
                continue
            print(claim.task_id, flush=True)
    print("DONE", flush=True)


def chew(queue: PostgresTaskQueue, name: str) -> None:
    idle = 0
    while idle < 3:
        report = queue.work(name, lambda task: {"by": name}, limit=5, lease=1, wait=1)
        if not report.claimed:
            stats = queue.stats()["counts"]
            idle = idle + 1 if stats["pending"] == 0 and stats["running"] == 0 else 0
            continue
        idle = 0
        print("BATCH", report.completed, flush=True)
    print("DONE", flush=True)


def hang(queue: PostgresTaskQueue, name: str) -> None:
    (claim,) = queue.claim(name, lease=1, wait=30)
    print(claim.task_id, flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    mode, dsn, name = sys.argv[1:4]
    with PostgresTaskQueue(dsn, poll=0.2) as queue:
        {"work": work, "chew": chew, "hang": hang}[mode](queue, name)
