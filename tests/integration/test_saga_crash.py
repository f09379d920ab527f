"""Sagas SIGKILLed on real NATS and PostgreSQL, 20 runs: a process running orders (see
``_saga_crash_worker.py``) dies before, inside or after a SQL step's transaction, at a random
moment inside it, right after a KV write landed (before its outcome is logged), or in the
middle of a compensation; another process resumes what it left.
Afterwards every order is completed with all of its effects or rolled back with none (KV values
and revisions, SQL rows), and no step with a recorded outcome ran twice."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from msstore.backends.nats import NatsKV
from msstore.backends.postgres import PostgresSagaLog
from msstore.buckets import BucketConfig
from msstore.coordination import SagaStatus
from msstore.records import Operation

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

WORKER = Path(__file__).with_name("_saga_crash_worker.py")
RUNS = 20
ORDERS = 10
# Where the first process dies, and which orders can get there (n % 4: 0 completes, 1 is
# refused before the SQL step, 2 after it, 3 by it).
POINTS = {
    "after_kv_put": (0, 1, 2, 3),
    "after_kv_create": (0, 1, 2, 3),
    "before_sql": (0, 2, 3),
    "in_sql": (0, 2, 3),
    "after_commit": (0, 2),
    "sql_random": (0, 2, 3),
    "in_kv_compensation": (1, 2, 3),
    "in_sql_compensation": (2,),
}


@pytest.fixture(scope="module")
def tables(pg_state_dsn: str) -> Iterator[str]:
    with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS crash_orders (run text, n int, PRIMARY KEY (run, n))"
        )
        conn.execute("CREATE TABLE IF NOT EXISTS crash_effects (run text, n int, what text)")
    yield pg_state_dsn
    with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE crash_orders, crash_effects")


def worker(mode: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(WORKER), mode, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("run", range(RUNS))
def test_a_killed_process_leaves_no_half_applied_saga(
    run: int, tables: str, nats_client: Any, msstore_nats_url: str
) -> None:
    dsn = tables
    rng = random.Random(run)
    point = list(POINTS)[run % len(POINTS)]
    kill_at = rng.choice([n for n in range(ORDERS) if n % 4 in POINTS[point]])
    prefix = f"r{run}x{uuid.uuid4().hex[:6]}"
    bucket = f"CRASH_{prefix.upper()}"
    kv = NatsKV.open(nats_client, BucketConfig(name=bucket, history=10))
    try:
        initial = {n: kv.put(f"{prefix}.a.{n}", {"initial": n}) for n in range(ORDERS)}
        args = [dsn, msstore_nats_url, bucket, prefix, str(ORDERS), point, str(kill_at)]
        first = worker("run", *args)
        assert first.returncode == -signal.SIGKILL, (point, kill_at, first.stdout, first.stderr)
        second = worker("resume", *args)
        assert second.returncode == 0, second.stderr
        check(dsn, kv, prefix, initial, point, kill_at)
    finally:
        kv.destroy()


def check(
    dsn: str, kv: NatsKV, prefix: str, initial: dict[int, int], point: str, kill_at: int
) -> None:
    with PostgresSagaLog(dsn) as log:
        states = {s.name: s for s in log.sagas(limit=10_000) if s.name.startswith(prefix)}
    with psycopg.connect(dsn) as conn:
        rows = {r[0] for r in conn.execute("SELECT n FROM crash_orders WHERE run = %s", (prefix,))}
        effects = conn.execute(
            "SELECT n, what, count(*) FROM crash_effects WHERE run = %s GROUP BY n, what",
            (prefix,),
        ).fetchall()
    done = {(n, what): count for n, what, count in effects}
    where = (point, kill_at)
    # Orders after the dead one never started (a random kill may land in the next order).
    assert sorted(states) == sorted(f"{prefix}-order-{n}" for n in range(len(states))), where
    assert len(states) == kill_at + 1 or (point == "sql_random" and len(states) == kill_at + 2)
    for n in range(ORDERS):
        state = states.get(f"{prefix}-order-{n}")
        a, b = kv.get(f"{prefix}.a.{n}"), kv.get(f"{prefix}.b.{n}")
        a_writes = [e for e in kv.history(f"{prefix}.a.{n}") if _ours(e, "a")]
        b_writes = [e for e in kv.history(f"{prefix}.b.{n}") if _ours(e, "b")]
        assert len(a_writes) <= 1 and len(b_writes) <= 1, (where, n)  # never written twice
        assert done.get((n, "do"), 0) <= 1, (where, n)  # the SQL step committed at most once
        if state is None:
            assert a is not None and a.revision == initial[n] and b is None, (where, n)
            assert n not in rows and (n, "do") not in done, (where, n)
            continue
        assert state.status.ended, (where, n, state)
        if n == kill_at and n % 4 == 0:  # forward only past a committed SQL step
            committed = point in ("after_commit", "in_sql_compensation") or (
                point == "sql_random" and done.get((n, "do")) == 1  # (it committed)
            )
            want = SagaStatus.COMPLETED if committed else SagaStatus.ROLLED_BACK
            assert state.status is want, (where, n, state)
        if state.status is SagaStatus.COMPLETED:
            assert n % 4 == 0, (where, n)
            assert a is not None and a.value == {"order": n, "what": "a", "run": prefix}
            assert b is not None and b.value == {"order": n, "what": "b", "run": prefix}
            assert n in rows and done.get((n, "do")) == 1 and (n, "undo") not in done
        else:
            assert state.status is SagaStatus.ROLLED_BACK, (where, n, state)
            assert n % 4 != 0 or n >= kill_at, (where, n)  # (stopped before its SQL step)
            assert a is not None and a.value == {"initial": n}, (where, n, a)
            assert b is None and n not in rows, (where, n)
            assert done.get((n, "do"), 0) == done.get((n, "undo"), 0), (where, n, done)


def _ours(entry: Any, what: str) -> bool:
    return entry.operation is Operation.PUT and entry.value.get("what") == what
