"""Servers for the benchmark suite: msstore's pytest plugin starts PostgreSQL 18 and NATS (or
uses ``MSSTORE_TEST_PG_DSN`` / ``MSSTORE_TEST_NATS_URL``); each module gets a migrated database
of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def bench_dsn(msstore_postgres_dsn: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new database with msstore's migrations applied, dropped after the module."""
    import psycopg

    from msstore.backends.postgres import Migrator

    name = f"msstore_bench_{request.module.__name__.rsplit('.', 1)[-1].removeprefix('test_')}"
    with psycopg.connect(msstore_postgres_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    dsn = psycopg.conninfo.make_conninfo(msstore_postgres_dsn, dbname=name)
    Migrator(dsn).up()
    try:
        yield dsn
    finally:
        with psycopg.connect(msstore_postgres_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
