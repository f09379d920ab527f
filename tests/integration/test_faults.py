"""Faults on real servers: blackholed PostgreSQL and NATS (through msstore.testing.TcpProxy), and
a nats-server killed with SIGKILL and started again.

What must hold: every call ends within its deadline (plus 1 s of slack for a busy machine), with
a typed msstore error whose ``retryable`` flag is right; the flusher retries through a PostgreSQL
outage and nothing acknowledged is lost; after a NATS restart the first write goes through as
soon as the server is ready, in both loop modes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import pytest

from msstore.backends.memory import MemoryKV
from msstore.backends.nats import NatsClient, NatsConfig, NatsKV
from msstore.backends.postgres import PostgresStateStore
from msstore.buckets import BucketConfig
from msstore.errors import ConnectionFailed, DeadlineExceeded, MsstoreError, OutcomeUnknown
from msstore.servers import EmbeddedNats
from msstore.state import FlushPolicy, HybridStateManager
from msstore.testing.proxy import TcpProxy

pytestmark = pytest.mark.slow
T = TypeVar("T")
SLACK = 1.0  # seconds a call may outlast its deadline on a busy machine


def timed(call: Callable[[], T]) -> tuple[T | MsstoreError, float]:
    """``call()``'s result or the msstore error it raised, and how long it took. Anything that
    is not an msstore error propagates: an untyped error fails the test."""
    start = time.monotonic()
    try:
        result: T | MsstoreError = call()
    except MsstoreError as err:
        result = err
    return result, time.monotonic() - start


def proxied(dsn: str, port: int) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params.update(host="127.0.0.1", port=str(port))
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})


@pytest.mark.postgres
def test_sql_calls_stay_bounded_while_postgresql_is_blackholed(pg_state_dsn: str) -> None:
    params = psycopg.conninfo.conninfo_to_dict(pg_state_dsn)
    deadline = 1.0
    with TcpProxy(str(params.get("host", "127.0.0.1")), int(params.get("port", 5432))) as proxy:  # type: ignore[arg-type]
        store = PostgresStateStore(proxied(pg_state_dsn, proxy.port), deadline=deadline)
        policy = FlushPolicy(
            threshold=5, max_lag=0.05, retry_initial=0.05, retry_max=0.3, reconcile_every=0
        )
        m = HybridStateManager(MemoryKV(), store, policy=policy)
        store.store("fb.sql_only", "from sql")  # a key only SQL has: reads of it go to SQL
        acknowledged = {f"fb.k{i}": i for i in range(5)}
        m.put_many(acknowledged)
        m.flush()

        proxy.blackhole()
        outage_ends = time.monotonic() + 5.0
        reads: list[tuple[Any, float]] = []
        i = 5
        while time.monotonic() < outage_ends:
            m.put(f"fb.k{i}", i)  # KV answers: acknowledged, the flusher holds it
            acknowledged[f"fb.k{i}"] = i
            i += 1
            reads.append(timed(lambda: m.get("fb.sql_only")))
        retries_during = m.stats()["flush"]["retries"]
        proxy.heal()

        limit = max(deadline, 5) + SLACK  # the deadline, or the pool's connect timeout (5 s)
        for result, took in reads:
            assert took <= limit, (result, took)
            if isinstance(result, MsstoreError):
                assert isinstance(result, (DeadlineExceeded, ConnectionFailed)), repr(result)
                assert result.retryable
        assert any(isinstance(r, DeadlineExceeded) for r, _ in reads)
        assert "deadline" in str(next(r for r, _ in reads if isinstance(r, DeadlineExceeded)))
        assert retries_during > 0  # the flusher retried during the outage

        m.flush(timeout=60)
        rows = {r.key: r.value for r in store.search("fb.k")}
        assert rows == acknowledged  # nothing acknowledged was lost
        m.close()
        store.close()


@pytest.mark.nats
@pytest.mark.parametrize("loop", ["per-thread", "shared"])
def test_kv_calls_stay_bounded_while_nats_is_blackholed(msstore_nats_url: str, loop: str) -> None:
    host, port = msstore_nats_url.removeprefix("nats://").rsplit(":", 1)
    timeout = 1.0
    with TcpProxy(host, int(port)) as proxy:
        config = NatsConfig(
            servers=[f"nats://127.0.0.1:{proxy.port}"],
            request_timeout=timeout,
            loop=loop,  # type: ignore[arg-type]
        )
        client = NatsClient(config)
        kv = NatsKV.open(client, BucketConfig(name=f"BLACKHOLE_{loop.replace('-', '_')}"))
        kv.put("k0", 0)
        proxy.blackhole()
        outage_ends = time.monotonic() + 5.0
        calls: list[tuple[Any, float]] = []
        while time.monotonic() < outage_ends:
            calls.append(timed(lambda: kv.put("k", "during")))
            calls.append(timed(lambda: kv.get("k0")))
        proxy.heal()
        for result, took in calls:
            assert took <= timeout + 1.0 + SLACK, (result, took)  # request + the outer second
            if isinstance(result, MsstoreError):
                # a write may still land; a read changed nothing; or the connection failed
                assert isinstance(result, (OutcomeUnknown, DeadlineExceeded, ConnectionFailed)), (
                    repr(result)
                )
        assert all(isinstance(r, MsstoreError) for r, _ in calls[:2])
        written, _ = timed(lambda: kv.put("after", "heal"))
        assert isinstance(written, int)
        entry = kv.get("after")
        assert entry is not None and entry.value == "heal"
        kv.destroy()
        kv.close()
        client.close()


@pytest.mark.nats
@pytest.mark.parametrize("loop", ["per-thread", "shared"])
def test_the_first_write_after_a_nats_restart_succeeds_at_once(loop: str) -> None:
    with EmbeddedNats() as server:
        server.start()
        config = NatsConfig(servers=[server.url], request_timeout=2.0, loop=loop)  # type: ignore[arg-type]
        client = NatsClient(config)
        kv = NatsKV.open(client, BucketConfig(name="RESTARTED"))
        acknowledged = {f"k{i}": kv.put(f"k{i}", i) for i in range(10)}
        server.kill()  # SIGKILL: no goodbye to the clients
        down, took = timed(lambda: kv.put("down", 1))
        assert isinstance(down, (OutcomeUnknown, ConnectionFailed)), repr(down)
        assert took <= 2.0 + 1.0 + SLACK
        assert "2 s request timeout" in str(down) or "within" in str(down)
        server.start()  # same port and store dir; returns once JetStream is ready
        ready = time.monotonic()
        first, _ = timed(lambda: kv.put("after", "restart"))
        first_at = time.monotonic() - ready
        assert isinstance(first, int), repr(first)
        assert first_at <= 0.5, first_at
        for key, revision in acknowledged.items():
            entry = kv.get(key)
            assert entry is not None and entry.revision == revision
        kv.close()
        client.close()
