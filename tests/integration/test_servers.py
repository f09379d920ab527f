"""Real-server smoke tests: prove that the suite has a PostgreSQL with pgvector and a JetStream.

These talk to the servers through the raw drivers only, so a failure here points at the
environment (the wheels, ports, permissions), not at msstore's backends.
"""

from __future__ import annotations

import asyncio

import pytest


@pytest.mark.postgres
def test_postgres_has_pgvector(msstore_postgres_dsn: str) -> None:
    import psycopg

    with psycopg.connect(msstore_postgres_dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
        assert row is not None
        major, minor, *_ = (int(p) for p in row[0].split("."))
        assert (major, minor) >= (0, 5), f"pgvector {row[0]} has no HNSW"
        dist = conn.execute("SELECT '[1,2,3]'::vector <-> '[1,2,4]'::vector").fetchone()
        assert dist == (1.0,)


@pytest.mark.postgres
def test_postgres_schema_fixture_isolates(
    msstore_postgres_dsn: str, msstore_pg_schema: str
) -> None:
    import psycopg

    with psycopg.connect(msstore_postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{msstore_pg_schema}".t (k text primary key, v jsonb)')
        conn.execute(
            f'INSERT INTO "{msstore_pg_schema}".t VALUES (%s, %s::jsonb)', ("k", '{"a": 1}')
        )
        row = conn.execute(f'SELECT v FROM "{msstore_pg_schema}".t').fetchone()
        assert row == ({"a": 1},)


@pytest.mark.nats
def test_jetstream_kv_put_get(msstore_nats_url: str, msstore_unique_name: str) -> None:
    import nats

    async def roundtrip() -> tuple[bytes | None, int, int]:
        nc = await nats.connect(msstore_nats_url)
        try:
            js = nc.jetstream()
            kv = await js.create_key_value(bucket=msstore_unique_name, history=2)
            rev = await kv.put("agent.a1", b'{"step":1}')
            entry = await kv.get("agent.a1")
            await js.delete_key_value(msstore_unique_name)
            assert entry.revision == rev
            return entry.value, rev, nc.connected_server_version.major
        finally:
            await nc.close()

    value, rev, major = asyncio.run(roundtrip())
    assert value == b'{"step":1}' and rev >= 1 and major >= 2


def test_entering_an_embedded_server_starts_it_and_leaving_removes_it() -> None:
    import psycopg

    from msstore.servers import EmbeddedNats, EmbeddedPostgres

    with EmbeddedPostgres() as pg, EmbeddedNats() as nats:
        assert pg.running and nats.running
        with psycopg.connect(pg.dsn, connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert nats.url.startswith("nats://127.0.0.1:")
        started = (pg.dir, nats.dir)
    assert not pg.running and not nats.running
    assert not any(path.exists() for path in started)
    with EmbeddedNats().start() as again:  # started already: entering does not start twice
        assert again.running
