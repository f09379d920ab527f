"""Sagas on PostgreSQL and memory KV: a SQL step's writes and its outcome commit together."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg", reason="needs msstore[postgres]")

from msstore.backends.memory import MemoryKV  # noqa: E402
from msstore.backends.postgres import PostgresSagaLog  # noqa: E402
from msstore.conflicts import RetryPolicy  # noqa: E402
from msstore.coordination import (  # noqa: E402
    KvPut,
    Saga,
    SagaRunner,
    SagaStatus,
    SqlStep,
)
from msstore.testing import FakeClock  # noqa: E402

pytestmark = pytest.mark.postgres


@pytest.fixture
def saga_db(pg_state_dsn: str) -> Iterator[str]:
    with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE sagas.log CASCADE")
        conn.execute("CREATE TABLE IF NOT EXISTS public.saga_orders (id int PRIMARY KEY)")
        conn.execute("TRUNCATE public.saga_orders")
    yield pg_state_dsn
    with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE public.saga_orders")


def orders(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM public.saga_orders ORDER BY id")]


def test_a_sql_step_that_fails_after_writing_leaves_neither_its_rows_nor_an_outcome(
    saga_db: str,
) -> None:
    clock = FakeClock()
    kv = MemoryKV(clock=clock)
    kv.put("slot", "free")

    def insert_then_fail(conn: Any) -> Mapping[str, Any]:
        conn.execute("INSERT INTO public.saga_orders VALUES (1)")
        raise RuntimeError("card declined")

    def insert(conn: Any) -> Mapping[str, Any]:
        conn.execute("INSERT INTO public.saga_orders VALUES (2)")
        return {"order": 2}

    def delete(conn: Any, detail: Mapping[str, Any]) -> None:
        conn.execute("DELETE FROM public.saga_orders WHERE id = %s", (detail["order"],))

    with PostgresSagaLog(saga_db) as log:
        runner = SagaRunner(log, policy=RetryPolicy(attempts=1), clock=clock)
        failed = runner.run(
            Saga("a", [KvPut(kv, "slot", value="held"), SqlStep("order", insert_then_fail)])
        )
        assert failed.status is SagaStatus.ROLLED_BACK and "card declined" in (failed.reason or "")
        assert orders(saga_db) == [] and kv.get("slot").value == "free"  # type: ignore[union-attr]
        loaded = log.load(failed.saga_id)
        assert loaded is not None
        assert [(r.name, r.state.value) for r in loaded[1] if r.name == "order"] == [
            ("order", "failed"),  # (a SQL step logs no intent: its outcome is atomic with it)
        ]
        clock.advance(1)
        done = runner.run(
            Saga(
                "b",
                [
                    KvPut(kv, "slot", value="held"),
                    SqlStep("order", insert, delete, isolation="SERIALIZABLE"),
                ],
            )
        )
        assert done.status is SagaStatus.COMPLETED and orders(saga_db) == [2]
        assert [s.status for s in log.sagas()] == [SagaStatus.ROLLED_BACK, SagaStatus.COMPLETED]


def test_a_sql_step_past_its_timeout_is_cancelled_by_the_server_and_rolled_back(
    saga_db: str,
) -> None:
    clock = FakeClock()
    kv = MemoryKV(clock=clock)

    def slow(conn: Any) -> Mapping[str, Any]:
        conn.execute("INSERT INTO public.saga_orders VALUES (3)")
        conn.execute("SELECT pg_sleep(30)")
        return {}

    with PostgresSagaLog(saga_db) as log:
        runner = SagaRunner(log, policy=RetryPolicy(attempts=1), clock=clock)
        result = runner.run(
            Saga("slow", [KvPut(kv, "slot", value="held"), SqlStep("order", slow, timeout=0.2)])
        )
    assert result.status is SagaStatus.ROLLED_BACK
    assert "statement timeout" in (result.reason or "") and orders(saga_db) == []
    assert kv.get("slot") is None
