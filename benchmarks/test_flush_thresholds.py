"""The flush-threshold sweep: hybrid writes at thresholds 1, 10, 50, 200 and 1000, on memory
backends and on NATS + PostgreSQL, beside their ceilings measured the same way: the raw KV
(nats-py puts, no SQL) and the raw dual store (nats-py puts, one psycopg upsert per threshold
writes). Each round is ``WRITES`` writes to the end of their flush; the groups of the table are
the thresholds, so each row compares with the others of its threshold.

The rounds are :mod:`msstore.bench.flush_thresholds`'s, which ``msstore bench flush-thresholds
--json`` runs with more writes and rounds and reports as ratios.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from msstore.bench.flush_thresholds import (
    THRESHOLDS,
    msstore_round,
    raw_dual_round,
    raw_kv_round,
    workload,
)
from msstore.buckets import BucketConfig
from msstore.state import FlushPolicy, HybridStateManager

WRITES = 1000
ROUNDS = 3
WRITERS = ("msstore-memory", "msstore-nats+postgres", "raw-dual", "raw-kv")
KEYS, VALUES = workload(WRITES)


@pytest.fixture(scope="module")
def servers(msstore_nats_url: str, bench_dsn: str) -> Iterator[tuple[str, str, Any, Any]]:
    """(NATS URL, DSN, a NATS KV bucket, the PostgreSQL state store) for the module."""
    from msstore.backends.nats import NatsClient, NatsConfig, NatsKV
    from msstore.backends.postgres import PostgresStateStore

    client = NatsClient(NatsConfig(servers=[msstore_nats_url]))
    kv = NatsKV.open(client, BucketConfig(name="BENCH_SWEEP", history=1))
    storage = PostgresStateStore(bench_dsn)
    yield msstore_nats_url, bench_dsn, kv, storage
    kv.destroy()
    kv.close()
    storage.close()
    client.close()


_bases = itertools.count(1)  # each raw dual round writes versions above the last one's


def _round(writer: str, threshold: int, request: pytest.FixtureRequest) -> Callable[[], object]:
    policy = FlushPolicy(threshold=threshold, reconcile_every=0)
    if writer == "msstore-memory":
        from msstore.backends.memory import MemoryKV, MemoryTable

        def memory() -> object:
            kv, table = MemoryKV(BucketConfig(name="sweep", history=1)), MemoryTable()
            with HybridStateManager(kv, table, policy=policy, recover=False) as m:
                return msstore_round(m, KEYS, VALUES)

        return memory
    url, dsn, kv, storage = request.getfixturevalue("servers")
    if writer == "raw-kv":
        return lambda: raw_kv_round(url, KEYS, VALUES)
    if writer == "raw-dual":
        return lambda: raw_dual_round(
            url=url,
            dsn=dsn,
            keys=KEYS,
            values=VALUES,
            threshold=threshold,
            base=next(_bases) * 10**9,
        )

    def on_servers() -> object:
        with HybridStateManager(kv, storage, policy=policy, recover=False) as m:
            return msstore_round(m, KEYS, VALUES)

    return on_servers


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_writes_through_to_sql(
    benchmark: Any, request: pytest.FixtureRequest, threshold: int, writer: str
) -> None:
    benchmark.group = f"flush threshold {threshold:>4}: {WRITES} writes"
    benchmark.extra_info.update(writes=WRITES, threshold=threshold, writer=writer)
    benchmark.pedantic(_round(writer, threshold, request), rounds=ROUNDS, iterations=1)
