"""Fixtures shared by the graph checkpoint tests: a checkpoint store on memory, on PostgreSQL,
and on PostgreSQL behind a JetStream KV log (``kind`` ``"nats"``); ``saver_for`` (in
``tests.integration._graphs``) makes a saver on it, with the log when there is one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from msstore.graphs import CheckpointStore
from tests.integration._graphs import LOGS, OPEN


@pytest.fixture(
    params=[
        "memory",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("nats", marks=[pytest.mark.postgres, pytest.mark.nats]),
    ]
)
def kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param != "memory":  # (the suite's servers, not more)
        monkeypatch.setenv("MSSTORE_TEST_PG_DSN", request.getfixturevalue("msstore_postgres_dsn"))
    if request.param == "nats":
        monkeypatch.setenv("MSSTORE_TEST_NATS_URL", request.getfixturevalue("msstore_nats_url"))
    return str(request.param)


@pytest.fixture
def store(kind: str, request: pytest.FixtureRequest) -> Iterator[CheckpointStore]:
    if kind == "memory":
        from msstore.backends.memory import MemoryCheckpointStore

        yield MemoryCheckpointStore()
        return
    from msstore.backends.postgres import PostgresCheckpointStore

    with PostgresCheckpointStore(request.getfixturevalue("pg_state_dsn")) as pg:
        if kind != "nats":
            yield pg
            return
        from msstore.backends.nats import NatsClient, NatsConfig, NatsKV
        from msstore.buckets import BucketConfig

        client = NatsClient(NatsConfig(servers=[request.getfixturevalue("msstore_nats_url")]))
        bucket = f"LGT_{uuid.uuid4().hex[:10].upper()}"
        kv = NatsKV.open(client, BucketConfig(name=bucket, history=1), owns_client=True)
        LOGS[pg] = kv
        try:
            yield pg
        finally:
            while OPEN:
                OPEN.pop().close()
            kv.destroy()
            kv.close()
