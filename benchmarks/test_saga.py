"""Sagas: one order saga (two KV puts and a SQL insert, logged in ``sagas.*``) against the same
three operations by hand with nothing logged (msstore's blocking KV puts and a psycopg
transaction). ``msstore bench saga --json`` reports the ratio against raw nats-py and DBOS."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from msstore.backends.nats import NatsClient, NatsConfig, NatsKV
from msstore.backends.postgres import PostgresSagaLog
from msstore.bench.saga import INSERT, TABLE
from msstore.buckets import BucketConfig
from msstore.coordination import KvPut, Saga, SagaRunner, SagaStatus, SqlStep

numbers = itertools.count(1)


@pytest.fixture(scope="module")
def parts(bench_dsn: str, msstore_nats_url: str) -> Iterator[tuple[str, NatsKV]]:
    with psycopg.connect(bench_dsn, autocommit=True) as conn:
        conn.execute(TABLE)
    client = NatsClient(NatsConfig(servers=[msstore_nats_url]))
    kv = NatsKV.open(client, BucketConfig(name="BENCH_SAGA_SUITE", history=5))
    try:
        yield bench_dsn, kv
    finally:
        kv.destroy()
        kv.close()
        client.close()


def test_an_order_saga(benchmark: Any, parts: tuple[str, NatsKV]) -> None:
    dsn, kv = parts
    benchmark.group = "an order: two KV puts and one SQL insert"
    with PostgresSagaLog(dsn) as log:
        runner = SagaRunner(log)

        def saga() -> SagaStatus:
            n = next(numbers)

            def insert(conn: Any) -> dict[str, Any]:
                conn.execute(INSERT, (n, "saga"))
                return {}

            steps = [KvPut(kv, f"s.{n}.a", value=n), KvPut(kv, f"s.{n}.b", value=n)]
            return runner.run(Saga("order", [*steps, SqlStep("insert", insert)])).status

        assert benchmark(saga) is SagaStatus.COMPLETED


def test_the_same_by_hand(benchmark: Any, parts: tuple[str, NatsKV]) -> None:
    dsn, kv = parts
    benchmark.group = "an order: two KV puts and one SQL insert"
    with psycopg.connect(dsn, autocommit=True) as conn:

        def by_hand() -> None:
            n = next(numbers)
            kv.put(f"r.{n}.a", n)
            kv.put(f"r.{n}.b", n)
            with conn.transaction():
                conn.execute(INSERT, (n, "raw"))

        benchmark(by_hand)
