"""Sagas against the same three operations done by hand, and against DBOS, on one server pair.

Starts its own PostgreSQL and NATS (or uses ``MSSTORE_PG_DSN`` / ``NATS_SERVERS``), applies the
migrations, and runs ``ROUNDS`` (5) rounds of each contender, alternating which goes first;
figures are medians, each ratio the median of its per-round ratios. A saga here is an order:
two KV writes (``order.<n>.slot`` and ``order.<n>.hold``, JSON values) and one SQL transaction
inserting a row into ``bench_orders``; ``SAGAS`` (300) of them per round, one after another.

* ``sagas_per_s``: :class:`~msstore.coordination.SagaRunner` on a
  :class:`~msstore.backends.postgres.PostgresSagaLog` and a JetStream KV bucket (``NatsKV``):
  ``KvPut``, ``KvPut``, ``SqlStep``, each saga logged from its start to its end.
* ``raw_per_s``: the same work by hand, with nothing logged: nats-py ``await kv.put()`` twice
  and a psycopg transaction (``BEGIN``, ``INSERT``, ``COMMIT``). ``saga_overhead_ratio`` is
  ``sagas_per_s / raw_per_s``.
* ``raw_msstore_kv_per_s``: the same by hand, but the two puts through msstore's blocking
  ``NatsKV.put`` (what a sync program pays for crossing to nats-py's event loop);
  ``saga_vs_raw_msstore_kv`` is the saga rate over it.
* ``dbos_per_s`` (when the ``dbos`` package is installed): a DBOS workflow of three
  ``@DBOS.step()`` functions doing the same two puts (``NatsKV.put``) and transaction, with
  DBOS's system database on the same PostgreSQL; ``vs_dbos`` is ``sagas_per_s / dbos_per_s``.
* ``log_writes_per_saga``: rows a saga adds to ``sagas.steps``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

from msstore.bench._servers import database, nats_server
from msstore.bench._timing import rate

SAGAS = 300
ROUNDS = 5
BUCKET = "BENCH_SAGA"
TABLE = "CREATE TABLE IF NOT EXISTS bench_orders (id bigint PRIMARY KEY, note text NOT NULL)"
INSERT = "INSERT INTO bench_orders (id, note) VALUES (%s, %s)"


def _value(n: int, what: str) -> dict[str, Any]:
    return {"order": n, "what": what, "agent": f"a{n % 50}", "note": "x" * 64}


def run(*, sagas: int = SAGAS, rounds: int = ROUNDS) -> dict[str, Any]:  # noqa: PLR0915 - one workload's set-up, rounds and figures
    """The figures of the module docstring."""
    import nats  # noqa: PLC0415
    import orjson  # noqa: PLC0415
    import psycopg  # noqa: PLC0415

    from msstore.backends.nats import NatsClient, NatsConfig, NatsKV  # noqa: PLC0415
    from msstore.backends.postgres import Migrator, PostgresSagaLog  # noqa: PLC0415
    from msstore.buckets import BucketConfig  # noqa: PLC0415
    from msstore.coordination import KvPut, Saga, SagaRunner, SagaStatus, SqlStep  # noqa: PLC0415

    numbers = iter(range(1, 10**9))

    with database() as dsn, nats_server() as url:
        Migrator(dsn).up()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(TABLE)
        client = NatsClient(NatsConfig(servers=[url]))
        kv = NatsKV.open(client, BucketConfig(name=BUCKET, history=5))
        log = PostgresSagaLog(dsn)
        runner = SagaRunner(log)

        def order(n: int) -> Saga:
            def insert(conn: Any) -> dict[str, Any]:
                conn.execute(INSERT, (n, "saga"))
                return {"order": n}

            return Saga(
                "order",
                [
                    KvPut(kv, f"order.{n}.slot", value=_value(n, "slot")),
                    KvPut(kv, f"order.{n}.hold", value=_value(n, "hold")),
                    SqlStep("insert", insert),
                ],
            )

        def saga_round() -> float:
            batch = [next(numbers) for _ in range(sagas)]

            def body() -> None:
                for n in batch:
                    if runner.run(order(n)).status is not SagaStatus.COMPLETED:
                        raise RuntimeError(f"saga {n} did not complete")

            return rate(sagas, body)

        async def raw_async_round() -> float:
            batch = [next(numbers) for _ in range(sagas)]
            nc = await nats.connect(url)
            raw_kv = await nc.jetstream().key_value(BUCKET)
            with psycopg.connect(dsn, autocommit=True) as conn:
                start = time.perf_counter()
                for n in batch:
                    await raw_kv.put(f"order.{n}.slot", orjson.dumps(_value(n, "slot")))
                    await raw_kv.put(f"order.{n}.hold", orjson.dumps(_value(n, "hold")))
                    with conn.transaction():
                        conn.execute(INSERT, (n, "raw"))
                elapsed = time.perf_counter() - start
            await nc.close()
            return sagas / elapsed

        def raw_msstore_kv_round() -> float:
            batch = [next(numbers) for _ in range(sagas)]
            with psycopg.connect(dsn, autocommit=True) as conn:

                def body() -> None:
                    for n in batch:
                        kv.put(f"order.{n}.slot", _value(n, "slot"))
                        kv.put(f"order.{n}.hold", _value(n, "hold"))
                        with conn.transaction():
                            conn.execute(INSERT, (n, "raw-kv"))

                return rate(sagas, body)

        contenders: dict[str, Callable[[], float]] = {
            "saga": saga_round,
            "raw": lambda: asyncio.run(raw_async_round()),
            "raw_msstore_kv": raw_msstore_kv_round,
        }
        with _dbos(dsn, kv, numbers, sagas) as dbos_round:
            if dbos_round is not None:
                contenders["dbos"] = dbos_round
            for contender in contenders.values():  # (warm up: connections, plans, buckets)
                contender()
            figures: dict[str, list[float]] = {name: [] for name in contenders}
            names = list(contenders)
            for r in range(rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    figures[name].append(contenders[name]())
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*)::float8 / (SELECT count(*) FROM sagas.log) FROM sagas.steps"
            ).fetchone()
        log.close()
        kv.close()
        client.close()

    def per_round(a: str, b: str) -> float:
        return round(
            statistics.median(x / y for x, y in zip(figures[a], figures[b], strict=True)), 3
        )

    result: dict[str, Any] = {
        "sagas": sagas,
        "rounds": rounds,
        "sagas_per_s": round(statistics.median(figures["saga"])),
        "raw_per_s": round(statistics.median(figures["raw"])),
        "saga_overhead_ratio": per_round("saga", "raw"),
        "saga_overhead_ratio_rounds": [
            round(x / y, 3) for x, y in zip(figures["saga"], figures["raw"], strict=True)
        ],
        "raw_msstore_kv_per_s": round(statistics.median(figures["raw_msstore_kv"])),
        "saga_vs_raw_msstore_kv": per_round("saga", "raw_msstore_kv"),
        "log_writes_per_saga": round(row[0], 2) if row and row[0] is not None else None,
    }
    if "dbos" in figures:
        result["dbos_per_s"] = round(statistics.median(figures["dbos"]))
        result["vs_dbos"] = per_round("saga", "dbos")
    else:
        result["dbos"] = "not installed (pip install 'msstore[bench]')"
    return result


class _dbos:
    """DBOS, launched on ``dsn``'s server with the order workflow registered, as a round
    function (None when the package is not installed); destroyed on exit."""

    def __init__(self, dsn: str, kv: Any, numbers: Iterator[int], sagas: int) -> None:
        self.dsn, self.kv, self.numbers, self.sagas = dsn, kv, numbers, sagas
        self.launched = False

    def __enter__(self) -> Callable[[], float] | None:
        if importlib.util.find_spec("dbos") is None:
            return None
        import psycopg  # noqa: PLC0415
        from dbos import DBOS, DBOSConfig  # noqa: PLC0415

        kv, dsn = self.kv, self.dsn
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        url = (
            f"postgresql://{info.get('user', 'postgres')}:{info.get('password', '')}@"
            f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info['dbname']}"
        )
        conn = psycopg.connect(dsn, autocommit=True)
        self.conn = conn

        @DBOS.step()
        def put(key: str, value: dict[str, Any]) -> int:
            return kv.put(key, value)  # type: ignore[no-any-return]

        @DBOS.step()
        def insert(n: int) -> None:
            with conn.transaction():
                conn.execute(INSERT, (n, "dbos"))

        @DBOS.workflow()
        def order(n: int) -> None:
            put(f"order.{n}.slot", _value(n, "slot"))
            put(f"order.{n}.hold", _value(n, "hold"))
            insert(n)

        config: DBOSConfig = {
            "name": "msstore-bench-saga",
            "system_database_url": url,
            "log_level": "WARNING",
        }
        DBOS(config=config)
        DBOS.launch()
        self.launched = True

        def dbos_round() -> float:
            batch = [next(self.numbers) for _ in range(self.sagas)]
            return rate(self.sagas, lambda: [order(n) for n in batch])

        return dbos_round

    def __exit__(self, *exc: object) -> None:
        if self.launched:
            from dbos import DBOS  # noqa: PLC0415

            DBOS.destroy(destroy_registry=True)
            self.conn.close()
