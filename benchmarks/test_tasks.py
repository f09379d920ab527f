"""The task queue: ``PostgresTaskQueue`` against PgQueuer (with the ``bench`` extra) and the
same workload in raw psycopg (4,000 tasks enqueued in batches of 500, then drained 10 at a time
by 4 workers). The rounds are :mod:`msstore.bench.tasks`'s; ``msstore bench tasks --json`` runs
them in rotation and reports ``claim_vs_pgqueuer`` and ``claim_ratio``."""

from __future__ import annotations

from typing import Any

import pytest

from msstore.bench.tasks import (
    TASKS,
    msstore_round,
    pgqueuer_install,
    pgqueuer_installed,
    pgqueuer_round,
    raw_round,
)


@pytest.mark.parametrize("worker", ["msstore", "raw-psycopg", "pgqueuer"])
def test_enqueue_claim_and_complete(benchmark: Any, bench_dsn: str, worker: str) -> None:
    benchmark.group = f"task queue: {TASKS} tasks, 4 workers"
    benchmark.extra_info["tasks"] = TASKS
    if worker == "pgqueuer":
        if not pgqueuer_installed():
            pytest.skip("PgQueuer is not installed: pip install 'msstore[bench]'")
        pgqueuer_install(bench_dsn)
    rounds = {"msstore": msstore_round, "raw-psycopg": raw_round, "pgqueuer": pgqueuer_round}
    benchmark.pedantic(rounds[worker], args=(bench_dsn,), rounds=3, iterations=1, warmup_rounds=1)
