"""The PostgreSQL state store beyond the shared suite: injection battery, bulk path details."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg", reason="needs msstore[postgres]")

import orjson  # noqa: E402

from msstore.backends.postgres import PostgresStateStore, agent_id_for  # noqa: E402
from msstore.codec import default_codec  # noqa: E402
from msstore.coordination import TASK_EVENTS, OutboxEvent, expand  # noqa: E402
from msstore.errors import InvalidKey, SerializationError  # noqa: E402
from msstore.records import Query, Record  # noqa: E402

pytestmark = pytest.mark.postgres


@pytest.fixture
def store(pg_state_dsn: str) -> Iterator[PostgresStateStore]:
    with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE agents.state, agents.registry CASCADE")
    s = PostgresStateStore(pg_state_dsn)
    yield s
    s.close()


def rows(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(  # type: ignore[no-any-return]
            "SELECT state_key, state_value, version FROM agents.state ORDER BY state_key"
        ).fetchall()


HOSTILE_VALUES = [
    "'; DROP TABLE agents.state; --",
    'quote " and \\ backslash',
    "semi;colon -- comment",
    "$$ dollar $$",
    "ünïcødé ✓ 🚀 \u202e rtl",
    "x" * 200_000,
    {"'k'": "v; --"},
    ["a", "'", '"', "\\", "%", "_"],
    {"nested": {"sql": "1 OR 1=1", "$1": "param"}},
]


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=lambda v: repr(v)[:24])
def test_hostile_values_round_trip_exactly(
    store: PostgresStateStore, pg_state_dsn: str, value: Any
) -> None:
    store.store("agent-x.v", value)
    rec = store.retrieve("agent-x.v")
    assert rec is not None and rec.value == value
    store.upsert_many([Record("agent-x.w", value, 1, time.time())])
    again = store.retrieve("agent-x.w")
    assert again is not None and again.value == value
    assert len(rows(pg_state_dsn)) == 2  # nothing else appeared, nothing dropped


@pytest.mark.parametrize(
    "key",
    ["a'b", "a;b", "a\x00b", "ünï", "a b", "k" * 1025, "x'); DROP TABLE agents.state; --"],
)
def test_hostile_keys_are_refused_and_nothing_changes(
    store: PostgresStateStore, pg_state_dsn: str, key: str
) -> None:
    store.store("agent-x.keep", 1)
    with pytest.raises(InvalidKey):
        store.store(key, 1)
    with pytest.raises(InvalidKey):
        store.upsert_many([Record("agent-x.fine", 1, 1, time.time()), Record(key, 1, 1, 0.0)])
    assert [r[0] for r in rows(pg_state_dsn)] == ["agent-x.keep"]


def test_grammar_keys_that_look_like_sql_are_stored_verbatim(store: PostgresStateStore) -> None:
    for key in ("agent-x.a--b", "agent-x.drop=table/x", "agent-x.or_1=1"):
        store.store(key, key)
        rec = store.retrieve(key)
        assert rec is not None and rec.value == key


def test_nul_is_refused_before_anything_is_written(
    store: PostgresStateStore, pg_state_dsn: str
) -> None:
    with pytest.raises(SerializationError, match="U\\+0000"):
        store.upsert_many(
            [Record("agent-x.ok", "fine", 1, 0.0), Record("agent-x.bad", {"s": "a\x00b"}, 1, 0.0)]
        )
    assert rows(pg_state_dsn) == []


def test_like_wildcards_in_prefixes_are_literal(store: PostgresStateStore) -> None:
    store.store("agent_1.a", 1)
    store.store("agentX1.a", 2)
    assert [r.key for r in store.search("agent_1.")] == ["agent_1.a"]
    assert [r.key for r in store.search(Query(where={"'": "--"}))] == []


def test_huge_floats_stay_floats_and_big_ints_stay_exact(store: PostgresStateStore) -> None:
    value = {"f": 1.7976931348623157e308, "g": 1e16, "h": -2.5e-300, "i": 2**100, "j": 10**20}
    store.upsert_many([Record("agent-x.n", value, 1, time.time())])
    rec = store.retrieve("agent-x.n")
    assert rec is not None and rec.value == value
    assert all(type(rec.value[k]) is type(value[k]) for k in value)


def test_bulk_upsert_details(store: PostgresStateStore, pg_state_dsn: str) -> None:
    now = time.time()
    result = store.upsert_many(
        [Record(f"agent-{i % 7}.k{i}", {"i": i, "b": [True, None]}, 1, now) for i in range(500)]
        + [
            Record("agent-0.k0", {"i": "newest"}, 3, now),
            Record("agent-0.k0", "older", 2, now),
            Record("agent-1.ttl", "gone", 1, now - 100, now - 50),
        ]
    )
    assert (result.written, result.skipped) == (501, 2)
    with psycopg.connect(pg_state_dsn) as conn:
        checksum, version = conn.execute(
            "SELECT checksum, version FROM agents.state WHERE state_key = 'agent-0.k0'"
        ).fetchone()
        partitions = conn.execute("SELECT count(DISTINCT tableoid) FROM agents.state").fetchone()[0]
        hydrated = conn.execute(
            "SELECT count(*) FROM agents.hydrate_agent_state(%s)", (agent_id_for("agent-1.x"),)
        ).fetchone()[0]
    canonical = json.dumps({"i": "newest"}, sort_keys=True, separators=(",", ":"))
    assert checksum == hashlib.sha256(canonical.encode()).hexdigest() and version == 3
    assert partitions > 1  # seven agents spread over the hash partitions
    assert hydrated == 500 // 7 + 1  # agent-1's live rows; the expired one is left out
    assert store.retrieve("agent-1.ttl") is None  # flushed after its TTL: stored, reads absent
    stale = store.upsert_many([Record("agent-0.k0", "stale", 2, now)])
    assert (stale.written, stale.skipped) == (0, 1)


def test_a_small_batch_is_one_statement_that_registers_its_agents(
    store: PostgresStateStore, pg_state_dsn: str
) -> None:
    now = time.time()
    assert store.upsert_many([Record(f"agent-s{i}.k", i, 1, now) for i in range(3)]).written == 3
    with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
        names = conn.execute("SELECT agent_name FROM agents.registry ORDER BY 1").fetchall()
        assert names == [("agent-s0",), ("agent-s1",), ("agent-s2",)]
        conn.execute("DELETE FROM agents.registry WHERE agent_name = 'agent-s1'")  # cascades
    # The store still believes agent-s1 registered: the foreign key refuses, it registers anew.
    assert store.upsert_many([Record("agent-s1.k", "again", 2, now)]).written == 1
    assert store.retrieve("agent-s1.k").value == "again"  # type: ignore[union-attr]
    with store._pool.connection() as conn:  # the pooled connection is back out of autocommit
        assert conn.autocommit is False


@pytest.mark.parametrize("size", [200, 5000], ids=["one-statement", "chunked"])
def test_concurrent_upserts_of_the_same_keys_in_opposite_orders_do_not_deadlock(
    store: PostgresStateStore, pg_state_dsn: str, size: int
) -> None:
    import threading

    keys = [f"agent-d{i % 5}.k{i:05}" for i in range(size)]
    errors: list[BaseException] = []

    def write(order: list[str], offset: int) -> None:
        other = PostgresStateStore(pg_state_dsn)
        try:
            for round_ in range(1, 9 if size < 1000 else 4):
                version = 2 * round_ + offset
                other.upsert_many([Record(k, version, version, time.time()) for k in order])
        except BaseException as err:
            errors.append(err)
        finally:
            other.close()

    threads = [
        threading.Thread(target=write, args=(keys, 0)),
        threading.Thread(target=write, args=(keys[::-1], 1)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []  # both lock rows in key order, whatever order they were given in
    assert {v for _, v, _ in rows(pg_state_dsn)} == {17 if size < 1000 else 7}


def test_large_batches_go_in_chunks_and_a_bad_value_late_in_one_writes_nothing(
    store: PostgresStateStore, pg_state_dsn: str
) -> None:
    from msstore.backends.postgres._state import CHUNK

    def snapshot() -> tuple[Any, ...]:
        with psycopg.connect(pg_state_dsn) as conn:
            return (
                rows(pg_state_dsn),
                conn.execute("SELECT count(*) FROM agents.registry").fetchone()[0],
                conn.execute("SELECT count(*) FROM messages.outbox").fetchone()[0],
            )

    now = time.time()
    n = 2 * CHUNK + 100  # three chunks
    first = [Record(f"agent-c{i % 3}.k{i:05}", {"i": i, "f": 1e16}, 2, now) for i in range(n)]
    assert store.upsert_many(first).written == n
    second = [Record(r.key, {"i": -r.value["i"], "f": 2.5e20}, 3, now) for r in first]
    second[7] = Record(first[7].key, "stale", 1, now)  # older than stored: skipped
    second += [Record(f"agent-new.k{i}", i, 1, now) for i in range(10)]
    before = snapshot()
    for bad in ({"t": "nul\x00"}, float("nan"), {1, 2}):
        poisoned = [*second[: 2 * CHUNK + 50], Record("agent-c0.bad", bad, 1, now)]
        with pytest.raises(SerializationError):  # in the third chunk: two were merged already
            store.upsert_many([*poisoned, *second[2 * CHUNK + 50 :]])
        assert snapshot() == before  # no row, no registry row, no event
    with pytest.raises(SerializationError):  # a bad value that a newer version replaces
        store.upsert_many([*second, Record("agent-c0.k00000", {1}, 1, now)])
    assert snapshot() == before
    result = store.upsert_many(second)
    assert (result.written, result.skipped) == (n - 1 + 10, 1)
    got = {key: (value, version) for key, value, version in rows(pg_state_dsn)}
    assert got[first[7].key] == ({"i": 7, "f": 1e16}, 2)
    assert got[first[-1].key] == ({"i": -(n - 1), "f": 2.5e20}, 3)
    assert type(store.retrieve(first[0].key).value["f"]) is float  # type: ignore[union-attr]
    assert got["agent-new.k9"] == (9, 1)  # its registry row was made anew


def test_changes_land_in_the_outbox_in_the_same_transaction(
    store: PostgresStateStore, pg_state_dsn: str
) -> None:
    with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE messages.outbox")
    now = time.time()
    batch = [Record(f"agent-o.k{i:04}", {"i": i}, 1, now) for i in range(1200)]
    store.upsert_many([*batch, Record("agent-p.k", 1, 7, now)])
    store.store("agent-o.k0000", {"i": "changed"})
    store.remove("agent-o.k0001")
    with pytest.raises(SerializationError):  # refused before the transaction: no event
        store.store("agent-o.k0002", "nul\x00")
    with psycopg.connect(pg_state_dsn) as conn:
        events = conn.execute(
            "SELECT subject, payload FROM messages.outbox ORDER BY outbox_id"
        ).fetchall()
        ids = conn.execute("SELECT count(DISTINCT msg_id) FROM messages.outbox").fetchone()[0]
    o, p = (str(agent_id_for(f"{a}.x")) for a in ("agent-o", "agent-p"))
    assert ids == len(events) == 6  # one de-duplication id per event
    inserts = [e for e in events if e[1]["operation"] == "INSERT"]
    # One event per agent and statement, at most 500 keys each, in key order.
    assert sorted((s, len(e["state_keys"])) for s, e in inserts) == sorted(
        [(f"agents.state.{o}", n) for n in (500, 500, 200)] + [(f"agents.state.{p}", 1)]
    )
    keys = sorted(k for _, e in inserts for k in e["state_keys"])
    assert keys == sorted([r.key for r in batch] + ["agent-p.k"])
    by_key = {k: v for _, e in inserts for k, v in zip(e["state_keys"], e["versions"], strict=True)}
    assert by_key["agent-p.k"] == 7 and by_key["agent-o.k0042"] == 1
    assert all(e["agent_id"] == s.rsplit(".", 1)[1] for s, e in inserts)
    assert all(e["state_keys"] == sorted(e["state_keys"]) for _, e in inserts)
    assert [(e[0], e[1]["operation"], e[1]["state_keys"]) for e in events[-2:]] == [
        (f"agents.state.{o}", "UPDATE", ["agent-o.k0000"]),
        (f"agents.state.{o}", "DELETE", ["agent-o.k0001"]),
    ]


def test_task_events_and_monitoring(pg_state_dsn: str) -> None:
    with psycopg.connect(pg_state_dsn) as conn:
        conn.execute("TRUNCATE messages.outbox")
        task = conn.execute(
            "INSERT INTO tasks.queue (task_type) VALUES ('search') RETURNING task_id"
        ).fetchone()[0]
        conn.execute("UPDATE tasks.queue SET status = 'running' WHERE task_id = %s", (task,))
        rows = conn.execute(
            "SELECT outbox_id, msg_id::text, subject, payload::text, 0.0 FROM messages.outbox "
            "ORDER BY outbox_id"
        ).fetchall()
        assert [r[2] for r in rows] == [TASK_EVENTS, TASK_EVENTS]  # one row per statement
        events = [
            e
            for r in rows
            for e in expand(
                OutboxEvent(
                    outbox_id=r[0], msg_id=r[1], subject=r[2], payload=r[3].encode(), created_at=0
                ),
                default_codec,
            )
        ]
        assert [e.subject for e in events] == [f"tasks.created.{task}", f"tasks.started.{task}"]
        assert [orjson.loads(e.payload)["previous_status"] for e in events] == [None, "pending"]
        health = conn.execute(
            "SELECT pool_name, health_status, total_connections >= 1 "
            "FROM monitoring.check_connection_pool_health()"
        ).fetchone()
        assert health == ("application_pool", "healthy", True)
        assert conn.execute("SELECT count(*) FROM monitoring.connection_stats").fetchone()[0] >= 1
        conn.rollback()


def test_a_callers_pool_gets_its_connections_back_clean(
    store: PostgresStateStore, pg_state_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """On a pool of the caller's (not in autocommit), what a call left open is committed and
    what a failed call left is rolled back: the next user of the connection starts clean and the
    pool has nothing to roll back (it warns when it must)."""
    from psycopg.pq import TransactionStatus
    from psycopg_pool import ConnectionPool

    caplog.set_level("WARNING", logger="psycopg")
    with ConnectionPool(pg_state_dsn, min_size=1, max_size=1) as pool:
        theirs = PostgresStateStore(pool)
        theirs.store("agent-p.k", {"n": 1})
        theirs._run(  # a write left open by the code it runs: committed
            "update", lambda conn: conn.execute("UPDATE agents.state SET version = 2"), write=True
        )
        with pool.connection() as conn:
            assert conn.info.transaction_status is TransactionStatus.IDLE
        rec = theirs.retrieve("agent-p.k")
        assert rec is not None and rec.value == {"n": 1} and rec.version == 2

        def write_then_fail(conn: Any) -> None:
            conn.execute("UPDATE agents.state SET version = 99 WHERE state_key = 'agent-p.k'")
            raise RuntimeError("the caller's code failed")

        with pytest.raises(RuntimeError):
            theirs._run("fail", write_then_fail, write=True)
        with pool.connection() as conn:
            assert conn.info.transaction_status is TransactionStatus.IDLE
        again = theirs.retrieve("agent-p.k")
        assert again is not None and again.version == 2  # the failed call's update is gone
    assert [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")] == []
