"""PgVectorIndex on the real server's pgvector: distances, types, filters, loads, bad input."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import msstore
from msstore.errors import InvalidArgument, SerializationError

np = pytest.importorskip("numpy", reason="vector tests need numpy")
pytestmark = pytest.mark.postgres


@pytest.fixture
def make(pg_state_dsn: str) -> Iterator[Callable[..., Any]]:
    from msstore.backends.postgres import PgVectorIndex

    opened: list[Any] = []

    def open_index(name: str | None = None, **options: Any) -> Any:
        index = PgVectorIndex(pg_state_dsn, name=name or f"t{uuid.uuid4().hex[:16]}", **options)
        opened.append(index)
        return index

    yield open_index
    for index in opened:
        index.drop()
        index.close()


def clustered(n: int, dim: int, seed: int = 3) -> Any:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, dim))
    return (centres[rng.integers(0, 10, n)] + 0.4 * rng.normal(size=(n, dim))).astype(np.float32)


def brute(data: Any, q: Any, metric: str) -> Any:
    if metric == "ip":
        return -(data @ q)
    if metric == "l2":
        return np.sqrt(((data - q) ** 2).sum(axis=1))
    return 1 - (data @ q) / (np.linalg.norm(data, axis=1) * np.linalg.norm(q))


@pytest.mark.parametrize("vector_type", ["vector", "halfvec"])
@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_each_distance_and_type_exact_and_hnsw(
    make: Callable[..., Any], metric: str, vector_type: str
) -> None:
    from msstore.backends.postgres import HnswParams

    data = clustered(400, 24)
    ids = [f"v{i}" for i in range(400)]
    exact = make(dim=24, metric=metric, vector_type=vector_type, hnsw=None)
    ann = make(
        dim=24, metric=metric, vector_type=vector_type, hnsw=HnswParams(m=8, ef_construction=32)
    )
    for index in (exact, ann):
        index.add(ids, data)
    # halfvec keeps ~3 significant digits: compare with the data as the server holds it.
    held = data.astype(np.float16).astype(np.float32) if vector_type == "halfvec" else data
    recalls = []
    for q in (data[:15] + 0.05).astype(np.float32):
        truth_d = brute(
            held, q.astype(np.float16).astype(np.float32) if vector_type == "halfvec" else q, metric
        )
        truth = [ids[i] for i in np.argsort(truth_d, kind="stable")[:10]]
        hits = exact.search(q, k=10)
        assert [h.distance for h in hits] == pytest.approx(sorted(truth_d)[:10], rel=1e-3, abs=1e-3)
        assert len({h.id for h in hits} & set(truth)) >= 9  # only near-ties may swap
        recalls.append(len({h.id for h in ann.search(q, k=10)} & set(truth)) / 10)
    assert sum(recalls) / len(recalls) >= 0.9
    assert exact.exact and not ann.exact
    assert ann.describe()["index_bytes"] > 0 and exact.describe()["index_bytes"] == 0


def test_filtered_search_keeps_scanning_until_k_rows(
    make: Callable[..., Any], pg_state_dsn: str
) -> None:
    import psycopg

    from msstore.backends.postgres import HnswParams

    n = 20_000
    data = clustered(n, 8)
    metas = [{"tenant": "rare" if i % 10 == 0 else "common", "i": i} for i in range(n)]
    ids = [f"v{i}" for i in range(n)]
    iterative = make(dim=8, metric="l2", hnsw=HnswParams(ef_search=10))
    iterative.add(ids, data, metas)
    table = f"knowledge.vec_{iterative.name}"
    with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
        # Without the metadata index the planner walks the graph (else it may sort the few
        # rows the GIN index finds, which is exact and proves nothing about the scans).
        conn.execute(f"DROP INDEX knowledge.vec_{iterative.name}_meta")
        plan = conn.execute(
            f'EXPLAIN SELECT id FROM {table} WHERE metadata @> \'{{"tenant": "rare"}}\' '
            f"ORDER BY embedding <-> '[{','.join(['0'] * 8)}]' LIMIT 10"
        ).fetchall()
    assert any("hnsw" in row[0] for row in plan), plan
    hits = iterative.search(data[1], k=10, where={"tenant": "rare"})
    assert len(hits) == 10 and all(h.metadata["tenant"] == "rare" for h in hits)
    # The same graph without iterative scans stops after ef_search candidates: fewer rows.
    off = HnswParams(ef_search=10, iterative_scan="off")
    plain = make(name=iterative.name, dim=8, metric="l2", hnsw=off)
    assert len(plain.search(data[1], k=10, where={"tenant": "rare"})) < 10
    rare = [i for i in range(n) if i % 10 == 0]
    d = brute(data[rare], data[1], "l2")
    truth = {f"v{rare[i]}" for i in np.argsort(d)[:10]}
    assert len({h.id for h in hits} & truth) >= 9


def test_bulk_first_load_builds_the_graph_then_merges(make: Callable[..., Any]) -> None:
    from msstore.backends.postgres._vector import BULK_BUILD_ROWS

    n = BULK_BUILD_ROWS + 100
    data = clustered(n, 8)
    index = make(dim=8, metric="cosine")
    index.add([f"v{i}" for i in range(n)], data, [{"i": i} for i in range(n)])
    assert index.count() == n and index.describe()["index_bytes"] > 0
    index.add(["v0", "new"], [data[5], data[6]], [{"i": "replaced"}, {"i": "new"}])
    assert index.count() == n + 1
    top = index.search(data[5], k=2)
    assert {h.id for h in top} == {"v0", "v5"}
    assert next(h for h in top if h.id == "v0").metadata == {"i": "replaced"}


def test_concurrent_first_loads_both_land(make: Callable[..., Any]) -> None:
    from msstore.backends.postgres._vector import BULK_BUILD_ROWS

    index = make(dim=4, metric="l2")
    errors: list[BaseException] = []

    def load(part: int) -> None:
        try:
            ids = [f"p{part}-{i}" for i in range(BULK_BUILD_ROWS)]
            index.add(ids, clustered(BULK_BUILD_ROWS, 4, seed=part))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=load, args=(p,)) for p in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and index.count() == 2 * BULK_BUILD_ROWS


def test_bad_input_is_refused_and_nothing_is_written(make: Callable[..., Any]) -> None:
    index = make(dim=4, metric="cosine", vector_type="halfvec")
    index.add(["ok"], [[1, 2, 3, 4]])
    with pytest.raises(InvalidArgument, match="halfvec"):
        index.add(["big"], [[1e6, 0, 0, 0]])
    with pytest.raises(InvalidArgument, match="dimension"):
        index.add(["a", "b"], [[1, 2, 3, 4], [1, 2, 3, 4, 5]])
    with pytest.raises(SerializationError):
        index.add(["a", "b"], [[1, 2, 3, 4]] * 2, [{"x": 1}, {"x": "nul\x00"}])
    with pytest.raises(InvalidArgument):
        index.add(["a", "b"], [[1, 2, 3, 4]] * 2, [{"x": 1}, ["not", "a", "mapping"]])
    with pytest.raises(InvalidArgument):
        index.add(["a", "a"], [[1, 2, 3, 4]] * 2)
    with pytest.raises(InvalidArgument):
        index.search([1, 2, 3, 4], k=3, where=["x"])
    assert index.count() == 1
    assert index.add([], []) is None and index.count() == 1


def test_reopening_with_other_settings_is_refused(make: Callable[..., Any]) -> None:
    name = f"t{uuid.uuid4().hex[:16]}"
    make(name=name, dim=8, metric="cosine").add(["a"], [[1.0] * 8])
    with pytest.raises(InvalidArgument, match="vector\\(8\\)"):
        make(name=name, dim=9, metric="cosine")
    with pytest.raises(InvalidArgument, match="halfvec"):
        make(name=name, dim=8, metric="cosine", vector_type="halfvec")
    with pytest.raises(InvalidArgument, match="vector_cosine_ops"):
        make(name=name, dim=8, metric="l2")
    assert make(name=name, dim=8, metric="cosine").count() == 1
    for bad in ({"name": "Bad-Name"}, {"dim": 2001}, {"metric": "dot"}, {"vector_type": "bit"}):
        with pytest.raises(InvalidArgument):
            make(**{"name": None, "dim": 8, **bad})


def test_urls_open_the_postgres_stores(pg_state_dsn: str) -> None:
    import psycopg

    params = psycopg.conninfo.conninfo_to_dict(pg_state_dsn)
    base = f"{params['user']}@{params['host']}:{params['port']}/{params['dbname']}"
    name = f"u{uuid.uuid4().hex[:12]}"
    index = msstore.open_vector(
        f"pgvector://{base}?collection={name}&dim=3&metric=l2&vector_type=halfvec&m=8"
        "&ef_construction=32&ef_search=50"
    )
    try:
        index.add(["x"], [[1, 2, 3]], [{"k": "v"}])
        assert index.search([1, 2, 3], k=1)[0].id == "x"
        assert index.metric == "l2" and index.dim == 3
    finally:
        index.drop()  # type: ignore[attr-defined]
        index.close()
    with pytest.raises(InvalidArgument, match="no option"):
        msstore.open_vector(f"pgvector://{base}?collection=x&dim=3&colour=red")
    with pytest.raises(InvalidArgument, match="collection"):
        msstore.open_vector(f"pgvector://{base}?dim=3")
    storage = msstore.open_storage(f"postgresql://{base}")
    try:
        assert storage.retrieve("never.stored") is None
    finally:
        storage.close()
