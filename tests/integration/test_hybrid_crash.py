"""Crash safety, several writer processes, and PostgreSQL restarts, on real NATS + PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from msstore.buckets import BucketConfig
from msstore.state import FlushPolicy, HealthStatus, HybridStateManager
from msstore.testing import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

CHILD = str(Path(__file__).with_name("hybrid_child.py"))


def _stores(nats_client: Any, dsn: str, bucket: str) -> tuple[Any, Any]:
    from msstore.backends.nats import NatsKV
    from msstore.backends.postgres import PostgresStateStore

    return NatsKV.open(nats_client, BucketConfig(name=bucket, history=1)), PostgresStateStore(dsn)


@pytest.fixture
def clean_state(pg_state_dsn: str) -> str:
    import psycopg

    with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE agents.state, agents.registry, agents.flush_progress CASCADE")
    return pg_state_dsn


@pytest.mark.parametrize("run", range(1, 6))
def test_sigkill_mid_stream_loses_no_acknowledged_write(
    run: int,
    clean_state: str,
    msstore_nats_url: str,
    nats_client: Any,
    msstore_unique_name: str,
    crash_reports: list[str],
) -> None:
    bucket = f"{msstore_unique_name}_crash"
    child = subprocess.Popen(
        [sys.executable, CHILD, "crash", msstore_nats_url, clean_state, bucket],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked: dict[str, int] = {}
    count = 0
    stop_after = 1500 + 300 * run  # kill at a different point each run
    assert child.stdout is not None
    for line in child.stdout:
        if not line.endswith("\n"):
            break  # cut off by the kill: not known to be acknowledged
        _, key, i = line.split()
        acked[key] = int(i)
        count += 1
        if count == stop_after:
            os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    errors = child.stderr.read() if child.stderr else ""
    child.stdout.close()
    if child.stderr:
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL, errors

    kv, storage = _stores(nats_client, clean_state, bucket)
    before = {r.key: r.value["i"] for r in storage.search(pytest_query(len(acked)))}
    flushed_before = sum(1 for k, i in acked.items() if before.get(k, -1) >= i)
    with HybridStateManager(kv, storage) as recovered:  # recovery runs at open
        report = recovered.last_recovery
    after = {r.key: r for r in storage.search(pytest_query(len(acked)))}
    missing = [k for k, i in acked.items() if k not in after or after[k].value["i"] < i]
    for key in acked:  # SQL holds exactly what KV holds (a write acked after the last
        entry = kv.get(key)  # printed line may be newer than it: never older)
        assert entry is not None
        assert after[key].value == entry.value
    crash_reports.append(
        f"crash run {run}: {count} writes acknowledged over {len(acked)} keys; "
        f"{flushed_before} keys already in PostgreSQL at the kill, "
        f"{len(acked) - len(missing)} after recovery (replayed {report.read if report else 0})"
    )
    assert not missing
    kv.destroy()
    kv.close()
    storage.close()


def pytest_query(limit: int) -> Any:
    from msstore.records import Query

    return Query(prefix="c", limit=limit + 10)


def test_several_processes_share_a_bucket_without_losing_or_regressing(
    clean_state: str, msstore_nats_url: str, nats_client: Any, msstore_unique_name: str
) -> None:
    bucket = f"{msstore_unique_name}_shared"
    kv, storage = _stores(nats_client, clean_state, bucket)  # creates the bucket once
    children = [
        subprocess.Popen(
            [sys.executable, CHILD, "share", msstore_nats_url, clean_state, bucket, f"w{w}", "400"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(3)
    ]
    stats = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        stats.append(json.loads(out.strip().splitlines()[-1]))
    assert all(s["batches"] > 0 and s["failed"] == 0 for s in stats)  # each flushed its share
    with HybridStateManager(kv, storage) as m:
        for j in range(50):
            entry = kv.get(f"shared.k{j}")
            record = storage.retrieve(f"shared.k{j}")
            assert entry is not None and record is not None
            assert record.value == entry.value
            assert record.version == m.version_of(entry.revision)
    kv.destroy()
    kv.close()
    storage.close()


def test_postgres_restart_mid_load_loses_nothing_and_lag_recovers(
    msstore_nats_url: str, nats_client: Any, msstore_unique_name: str, tmp_path: Path
) -> None:
    from msstore.backends.nats import NatsKV
    from msstore.backends.postgres import Migrator, PostgresStateStore
    from msstore.servers import EmbeddedPostgres

    with EmbeddedPostgres(base_dir=tmp_path) as pg:
        pg.start()
        Migrator(pg.dsn).up()
        kv = NatsKV.open(nats_client, BucketConfig(name=f"{msstore_unique_name}_pg", history=1))
        storage = PostgresStateStore(pg.dsn)
        m = HybridStateManager(
            kv, storage, policy=FlushPolicy(threshold=20, max_lag=0.05, retry_max=0.5)
        )
        last: dict[str, int] = {}
        stop = threading.Event()
        written = [0]

        def write() -> None:
            i = 0
            while not stop.is_set():
                key = f"r{i % 3}.k{i % 40}"
                m.put(key, {"i": i})
                last[key] = i
                i += 1
                written[0] = i
                time.sleep(0.002)  # pacing the writer, not waiting for anything

        def writes_after(n: int) -> bool:
            return written[0] >= n

        writer = threading.Thread(target=write)
        writer.start()
        eventually(lambda: m.stats()["flush"]["batches"] >= 3, timeout=60)  # flushing under load
        pg.stop()
        # The outage is seen: batches fail and are retried, writes pile up unflushed.
        eventually(lambda: m.stats()["flush"]["retries"] >= 2, timeout=60)
        mark = written[0]
        eventually(lambda: writes_after(mark + 100), timeout=60)  # KV keeps acknowledging meanwhile
        eventually(lambda: m.health() is not HealthStatus.HEALTHY, timeout=60)  # and health says so
        pending_during = m.stats()["flush"]["pending"]
        pg.start()
        retries = m.stats()["flush"]["retries"]
        batches = m.stats()["flush"]["batches"]
        eventually(
            lambda: m.stats()["flush"]["batches"] > batches + 3, timeout=60
        )  # flushing again
        stop.set()
        writer.join()
        m.flush(timeout=60)
        stats = m.stats()
        assert stats["flush"]["retries"] >= retries > 0
        assert stats["consistency"]["violations"] > 0  # the outage shows in the monitor
        assert pending_during > 0
        for key, i in last.items():
            record = storage.retrieve(key)
            assert record is not None and record.value == {"i": i}, key
        m.monitor.reset()  # lag recovers once PostgreSQL is back
        for i in range(200):
            m.put(f"r9.k{i % 20}", i)
        m.flush()
        assert m.health() is HealthStatus.HEALTHY
        m.close()
        kv.destroy()
        kv.close()
        storage.close()
