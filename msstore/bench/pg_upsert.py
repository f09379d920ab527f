"""Bulk state upsert into PostgreSQL: msstore's ``upsert_many`` against raw psycopg.

20,000 rows of ~200-byte JSON over 100 agents (so all 8 hash partitions), half updating rows
that exist (newer versions), half inserting. Each method starts from the same table (10,000
rows preloaded, untimed); figures are medians of three alternating rounds.

* ``upsert_many_per_s``: ``PostgresStateStore.upsert_many`` (validation, encoding, checksums,
  duplicate collapse; then chunks of binary COPY and version-guarded merge, the next chunk
  encoded while the server merges the last; one transaction).
* ``raw_copy_merge_per_s``: raw psycopg, values already encoded: binary COPY into a temp table
  and the same ``INSERT ... ON CONFLICT DO UPDATE ... WHERE version <``.
* ``raw_row_loop_per_s``: raw psycopg, one ``INSERT ... ON CONFLICT`` per row in one
  transaction (a flush without the version guard).

Starts its own PostgreSQL from the ``embedded`` extra, or uses ``MSSTORE_PG_DSN``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from msstore.bench._servers import database

ROWS = 20_000
AGENTS = 100


def _value(i: int, version: int) -> dict[str, Any]:
    return {
        "step": i,
        "version": version,
        "status": "running",
        "plan": ["search", "read"],
        "scores": [0.25, 0.5, 0.75],
        "note": f"agent note {i} " * 5,
    }


def run(*, rows: int = ROWS, rounds: int = 3) -> dict[str, Any]:
    import orjson  # noqa: PLC0415
    import psycopg  # noqa: PLC0415

    from msstore.backends.postgres import (  # noqa: PLC0415
        Migrator,
        PostgresStateStore,
        agent_id_for,
    )
    from msstore.backends.postgres._state import MERGE, STAGE  # noqa: PLC0415
    from msstore.records import Record  # noqa: PLC0415

    half = rows // 2
    keys = [f"agent-{i % AGENTS}.state.{i}" for i in range(rows)]
    now = time.time()
    preload = [Record(keys[i], _value(i, 1), 1, now) for i in range(half)]
    batch = [Record(keys[i], _value(i, 2), 2, now) for i in range(rows)]  # half updates
    encoded = [orjson.dumps(r.value).decode() for r in batch]
    size = round(statistics.mean(len(e) for e in encoded))

    with database() as dsn:
        Migrator(dsn).up()
        store = PostgresStateStore(dsn)

        def reset() -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("TRUNCATE agents.state")
            store.upsert_many(preload)
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE agents.state")

        def ours() -> None:
            result = store.upsert_many(batch)
            assert result.written == rows, result

        def copy_merge() -> None:
            with psycopg.connect(dsn) as conn:
                conn.execute(STAGE)
                with conn.cursor() as cur:
                    with cur.copy("COPY msstore_state_stage FROM STDIN (FORMAT BINARY)") as cp:
                        cp.set_types(
                            [
                                "uuid",
                                "text",
                                "text",
                                "int8",
                                "text",
                                "timestamptz",
                                "timestamptz",
                                "bool",
                            ]
                        )
                        for rec, text in zip(batch, encoded, strict=True):
                            cp.write_row(
                                (
                                    agent_id_for(rec.key),
                                    rec.key,
                                    text,
                                    rec.version,
                                    None,
                                    None,
                                    None,
                                    False,
                                )
                            )
                    cur.execute(MERGE)
                    assert cur.rowcount == rows

        def row_loop() -> None:
            with psycopg.connect(dsn) as conn:
                for rec, text in zip(batch, encoded, strict=True):
                    conn.execute(
                        "INSERT INTO agents.state AS s (agent_id, state_key, state_value, "
                        "version) VALUES (%s, %s, %s::jsonb, %s) ON CONFLICT (agent_id, "
                        "state_key) DO UPDATE SET state_value = EXCLUDED.state_value, "
                        "version = EXCLUDED.version WHERE s.version < EXCLUDED.version",
                        (agent_id_for(rec.key), rec.key, text, rec.version),
                    )

        def rate(body: Callable[[], None]) -> float:
            reset()
            start = time.perf_counter()
            body()
            return rows / (time.perf_counter() - start)

        figures: dict[str, list[float]] = {"ours": [], "copy": [], "loop": []}
        try:
            for _ in range(rounds):
                figures["copy"].append(rate(copy_merge))
                figures["ours"].append(rate(ours))
                figures["loop"].append(rate(row_loop))
        finally:
            store.close()
    med = {k: statistics.median(v) for k, v in figures.items()}
    return {
        "rows": rows,
        "value_bytes": size,
        "partitions": 8,
        "upsert_many_per_s": round(med["ours"]),
        "raw_copy_merge_per_s": round(med["copy"]),
        "raw_row_loop_per_s": round(med["loop"]),
        "copy_ratio": round(med["ours"] / med["copy"], 3),
        "vs_row_loop": round(med["ours"] / med["loop"], 2),
    }
