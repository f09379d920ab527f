"""``Strategy.EVENTUAL`` on real servers: the SQL step, its KV puts as outbox events and the
saga's log commit in one transaction; the relay then writes the puts into the JetStream KV
bucket. A failing SQL step leaves nothing behind."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
import pytest

from msstore.backends.nats import JetStreamSink, NatsKV
from msstore.backends.postgres import PostgresOutbox, PostgresSagaLog
from msstore.buckets import BucketConfig
from msstore.conflicts import RetryPolicy
from msstore.coordination import (
    KvDelete,
    KvPut,
    OutboxRelay,
    Saga,
    SagaRunner,
    SagaStatus,
    SqlStep,
    Strategy,
)
from msstore.errors import InvalidArgument, Unsupported

pytestmark = [pytest.mark.postgres, pytest.mark.nats]


@pytest.fixture
def dsn(pg_state_dsn: str) -> Iterator[str]:
    with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE sagas.log, messages.outbox CASCADE")
        conn.execute("CREATE TABLE IF NOT EXISTS public.eventual_orders (id int PRIMARY KEY)")
        conn.execute("TRUNCATE public.eventual_orders")
    yield pg_state_dsn
    with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE public.eventual_orders")


@pytest.fixture
def bucket(nats_client: Any) -> Iterator[NatsKV]:
    kv = NatsKV.open(nats_client, BucketConfig(name=f"EV_{uuid.uuid4().hex[:8].upper()}"))
    yield kv
    kv.destroy()


def waiting(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT subject FROM messages.outbox WHERE published_at IS NULL ORDER BY outbox_id"
        ).fetchall()
    return [r[0] for r in rows]


def order_rows(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM public.eventual_orders ORDER BY id")]


def test_the_relay_carries_the_puts_of_a_committed_saga(
    dsn: str, bucket: NatsKV, nats_client: Any
) -> None:
    def insert(conn: Any) -> Mapping[str, Any]:
        conn.execute("INSERT INTO public.eventual_orders VALUES (7)")
        return {"order": 7}

    saga = Saga(
        "order",
        [
            KvPut(bucket, "order.7.slot", value={"held": True, "n": [1, 2.5]}),
            SqlStep("insert", insert),
            KvPut(bucket, "order.7.owner", value="agent-b"),
        ],
    )
    with PostgresSagaLog(dsn) as log, PostgresOutbox(dsn) as outbox:
        result = SagaRunner(log, outbox=outbox).run(saga, strategy=Strategy.EVENTUAL)
        assert result.status is SagaStatus.COMPLETED
        assert order_rows(dsn) == [7]
        name = bucket.name
        assert waiting(dsn) == [f"$KV.{name}.order.7.slot", f"$KV.{name}.order.7.owner"]
        assert bucket.get("order.7.slot") is None  # (not yet: the relay carries it)
        loaded = log.load(result.saga_id)
        assert loaded is not None
        assert [(r.name, r.state.value) for r in loaded[1] if r.index >= 0] == [
            ("put order.7.slot", "done"),
            ("insert", "done"),
            ("put order.7.owner", "done"),
        ]
        with OutboxRelay(outbox, JetStreamSink(nats_client)) as relay:
            assert relay.drain() == 2
    slot, owner = bucket.get("order.7.slot"), bucket.get("order.7.owner")
    assert slot is not None and slot.value == {"held": True, "n": [1, 2.5]}
    assert owner is not None and owner.value == "agent-b"
    assert waiting(dsn) == []


def test_a_failing_sql_step_leaves_no_row_no_event_and_rolls_back(dsn: str, bucket: NatsKV) -> None:
    def insert_then_fail(conn: Any) -> Mapping[str, Any]:
        conn.execute("INSERT INTO public.eventual_orders VALUES (8)")
        raise RuntimeError("card declined")

    saga = Saga("order", [KvPut(bucket, "order.8", value=1), SqlStep("x", insert_then_fail)])
    with PostgresSagaLog(dsn) as log, PostgresOutbox(dsn) as outbox:
        runner = SagaRunner(log, outbox=outbox, policy=RetryPolicy(attempts=1))
        result = runner.run(saga, strategy=Strategy.EVENTUAL)
    assert result.status is SagaStatus.ROLLED_BACK and "card declined" in (result.reason or "")
    assert order_rows(dsn) == [] and waiting(dsn) == [] and bucket.get("order.8") is None


def test_what_the_relay_cannot_carry_is_refused_before_anything_is_written(
    dsn: str, bucket: NatsKV
) -> None:
    sql = SqlStep("x", lambda conn: {})
    with PostgresSagaLog(dsn) as log, PostgresOutbox(dsn) as outbox:
        runner = SagaRunner(log, outbox=outbox)
        with pytest.raises(Unsupported, match="KvPut"):
            runner.run(Saga("d", [KvDelete(bucket, "k"), sql]), strategy=Strategy.EVENTUAL)
        with pytest.raises(Unsupported, match="one SqlStep"):
            runner.run(Saga("p", [KvPut(bucket, "k", value=1)]), strategy=Strategy.EVENTUAL)
        with pytest.raises(InvalidArgument, match="outbox"):
            SagaRunner(log).run(Saga("o", [sql]), strategy=Strategy.EVENTUAL)
        with pytest.raises(InvalidArgument, match="strategy"):
            runner.run(Saga("o", [sql]), strategy="sometimes")
        assert log.sagas() == []
