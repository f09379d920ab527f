"""The task queue: ``PostgresTaskQueue`` against the same workload in raw psycopg (4,000 tasks
enqueued in batches of 500, then claimed 10 at a time and completed one by one by 4 worker
threads). The rounds are :mod:`msstore.bench.tasks`'s; ``msstore bench tasks --json`` runs them
alternating and reports ``claim_ratio``."""

from __future__ import annotations

from typing import Any

import pytest

from msstore.bench.tasks import TASKS, msstore_round, raw_round


@pytest.mark.parametrize("worker", ["msstore", "raw-psycopg"])
def test_enqueue_claim_and_complete(benchmark: Any, bench_dsn: str, worker: str) -> None:
    benchmark.group = f"task queue: {TASKS} tasks, 4 workers"
    benchmark.extra_info["tasks"] = TASKS
    round_ = msstore_round if worker == "msstore" else raw_round
    benchmark.pedantic(round_, args=(bench_dsn,), rounds=3, iterations=1, warmup_rounds=1)
