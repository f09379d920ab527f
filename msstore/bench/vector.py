"""Vector search on pgvector through msstore, against raw psycopg and numpy exact search.

100,000 x 384 float32 vectors in 100 Gaussian clusters (centres N(0, 1), spread 0.5), metadata
``{"group": i % 10}``; queries are stored vectors plus noise (0.3). Cosine distance, HNSW with
msstore's defaults (m 16, ef_construction 64, ef_search 100).

* ``load_per_s``: ``PgVectorIndex.add`` of all rows into a new collection (validation, binary
  COPY, then the HNSW build, one transaction). ``raw_copy_load_per_s``: raw psycopg into the
  same table: ``COPY ... FORMAT BINARY`` with pgvector's adapters, then ``CREATE INDEX`` with
  the same settings. ``load_ratio`` = load_per_s / raw_copy_load_per_s. The same pair without
  the graph build gives ``copy_only_per_s`` / ``raw_copy_only_per_s`` / ``copy_only_ratio``.
* ``p50_ms``: ``PgVectorIndex.search(k=10)``; ``raw_p50_ms``: the same SQL through one raw
  autocommit connection with ``hnsw.ef_search`` set once; ``latency_ratio`` = p50 / raw p50,
  each side's median over 3 x ``queries`` searches interleaved query by query.
  ``exact_numpy_p50_ms``: brute force over the matrix.
* ``recall_at_10``: HNSW results against numpy's exact top 10; ``filtered_recall_at_10`` the
  same with ``where={"group": 3}`` (10 % of the rows), exact truth among those rows.

Starts its own PostgreSQL (``embedded`` extra) or uses ``MSSTORE_PG_DSN``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from msstore.bench._servers import database

__all__ = ["run"]

K = 10
CLUSTERS = 100


def _data(n: int, dim: int, queries: int) -> tuple[Any, Any]:
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(20261130)
    centres = rng.normal(size=(CLUSTERS, dim)).astype(np.float32)
    data = (centres[rng.integers(0, CLUSTERS, n)] + 0.5 * rng.normal(size=(n, dim))).astype(
        np.float32
    )
    picks = rng.integers(0, n, queries)
    qs = (data[picks] + 0.3 * rng.normal(size=(queries, dim))).astype(np.float32)
    return data, qs


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def _timed(body: Callable[[Any], object], qs: Any) -> list[float]:
    out = []
    for q in qs:
        start = time.perf_counter()
        body(q)
        out.append(time.perf_counter() - start)
    return out


def _raw_load(dsn: str, data: Any, metas: list[dict[str, Any]], *, build: bool) -> float:
    """Raw psycopg: the same table, binary COPY with pgvector's adapters, then the graph."""
    import psycopg  # noqa: PLC0415
    from pgvector.psycopg import register_vector  # noqa: PLC0415
    from psycopg.types.json import Jsonb  # noqa: PLC0415

    dim = data.shape[1]
    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        conn.execute("DROP TABLE IF EXISTS knowledge.raw_vectors")
        conn.execute(
            f"CREATE TABLE knowledge.raw_vectors (id text PRIMARY KEY CHECK (id <> ''), "
            f"embedding vector({dim}) NOT NULL, metadata jsonb NOT NULL DEFAULT '{{}}', "
            f"updated_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(
            "CREATE INDEX raw_vectors_meta ON knowledge.raw_vectors USING gin "
            "(metadata jsonb_path_ops)"
        )
        conn.commit()
        start = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY knowledge.raw_vectors (id, embedding, metadata) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["text", "vector", "jsonb"])
            for i in range(len(data)):
                copy.write_row((f"v{i}", data[i], Jsonb(metas[i])))
        if build:
            conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
            conn.execute(
                "CREATE INDEX raw_vectors_hnsw ON knowledge.raw_vectors USING hnsw "
                "(embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
            )
        conn.commit()
        return time.perf_counter() - start


def _msstore_load(dsn: str, data: Any, metas: list[dict[str, Any]], *, build: bool) -> float:
    from msstore.backends.postgres import HnswParams, PgVectorIndex  # noqa: PLC0415

    name = "bench" if build else "bench_flat"
    with PgVectorIndex(
        dsn, name=name, dim=data.shape[1], hnsw=HnswParams() if build else None
    ) as index:
        index.drop()
    with PgVectorIndex(
        dsn, name=name, dim=data.shape[1], hnsw=HnswParams() if build else None
    ) as index:
        ids = [f"v{i}" for i in range(len(data))]
        start = time.perf_counter()
        index.add(ids, data, metas)
        return time.perf_counter() - start


def run(*, n: int = 100_000, dim: int = 384, queries: int = 200) -> dict[str, Any]:
    import numpy as np  # noqa: PLC0415
    import psycopg  # noqa: PLC0415
    from pgvector.psycopg import register_vector  # noqa: PLC0415

    from msstore.backends.postgres import HnswParams, PgVectorIndex  # noqa: PLC0415

    data, qs = _data(n, dim, queries)
    metas = [{"group": i % 10} for i in range(n)]
    with database() as dsn:
        from msstore.backends.postgres import Migrator  # noqa: PLC0415

        Migrator(dsn, parameters={"embedding_dim": dim}).up()
        copy_only = _msstore_load(dsn, data, metas, build=False)
        raw_copy_only = _raw_load(dsn, data, metas, build=False)
        load = _msstore_load(dsn, data, metas, build=True)
        raw_load = _raw_load(dsn, data, metas, build=True)

        # Exact truth (numpy) and its cost per query.
        unit = data / np.linalg.norm(data, axis=1, keepdims=True)

        def exact(q: Any, mask: Any = None) -> Any:
            dist = 1.0 - unit @ (q / np.linalg.norm(q))
            if mask is not None:
                dist = np.where(mask, dist, np.inf)
            top = np.argpartition(dist, K)[:K]
            return top[np.argsort(dist[top])]

        exact_times = _timed(exact, qs)
        truth = [set(exact(q).tolist()) for q in qs]
        group3 = np.arange(n) % 10 == 3
        ftruth = [set(exact(q, group3).tolist()) for q in qs]

        index = PgVectorIndex(dsn, name="bench", dim=dim)
        raw = psycopg.connect(dsn, autocommit=True)
        register_vector(raw)
        raw.execute(f"SET hnsw.ef_search = {HnswParams().ef_search}")
        raw_sql = (
            "WITH hits AS MATERIALIZED (SELECT id, metadata, embedding <=> %s AS distance "
            "FROM knowledge.vec_bench ORDER BY distance LIMIT %s) "
            'SELECT id, distance, metadata FROM hits ORDER BY distance, id COLLATE "C"'
        )
        try:
            for q in qs[:50]:  # warm both paths (plans, caches) before timing
                index.search(q, k=K)
                raw.execute(raw_sql, (q, K)).fetchall()
            # Interleaved query by query, the order flipping each time: drift in the machine's
            # load hits both sides alike.
            ours: list[float] = []
            theirs: list[float] = []

            def ask_msstore(q: Any) -> object:
                return index.search(q, k=K)

            def ask_raw(q: Any) -> object:
                return raw.execute(raw_sql, (q, K)).fetchall()

            sides: list[tuple[list[float], Callable[[Any], object]]] = [
                (ours, ask_msstore),
                (theirs, ask_raw),
            ]
            for rnd in range(3):
                for i, q in enumerate(qs):
                    for out, body in sides if (i + rnd) % 2 else sides[::-1]:
                        start = time.perf_counter()
                        body(q)
                        out.append(time.perf_counter() - start)
            recall = [
                len({int(h.id[1:]) for h in index.search(q, k=K)} & t) / K
                for q, t in zip(qs, truth, strict=True)
            ]
            start = time.perf_counter()
            filtered = [index.search(q, k=K, where={"group": 3}) for q in qs]
            filtered_s = time.perf_counter() - start
            frecall = [
                len({int(h.id[1:]) for h in hits} & t) / K
                for hits, t in zip(filtered, ftruth, strict=True)
            ]
            full = sum(len(h) == K for h in filtered) / len(filtered)
        finally:
            raw.close()
            index.close()

    p50, raw_p50 = _median_ms(ours), _median_ms(theirs)
    return {
        "n": n,
        "dim": dim,
        "queries": queries,
        "ef_search": HnswParams().ef_search,
        "recall_at_10": round(sum(recall) / len(recall), 4),
        "p50_ms": p50,
        "raw_p50_ms": raw_p50,
        "latency_ratio": round(p50 / raw_p50, 3),
        "exact_numpy_p50_ms": _median_ms(exact_times),
        "load_per_s": round(n / load),
        "raw_copy_load_per_s": round(n / raw_load),
        "load_ratio": round(raw_load / load, 3),
        "copy_only_per_s": round(n / copy_only),
        "raw_copy_only_per_s": round(n / raw_copy_only),
        "copy_only_ratio": round(raw_copy_only / copy_only, 3),
        "filtered_recall_at_10": round(sum(frecall) / len(frecall), 4),
        "filtered_full_k_share": round(full, 4),
        "filtered_mean_ms": round(filtered_s / len(filtered) * 1000, 3),
    }
