"""Fixtures shared by the graph checkpoint tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from msstore.graphs import CheckpointStore


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "postgres":  # (the suite's server, not one more)
        monkeypatch.setenv("MSSTORE_TEST_PG_DSN", request.getfixturevalue("msstore_postgres_dsn"))
    return str(request.param)


@pytest.fixture
def store(kind: str, request: pytest.FixtureRequest) -> Iterator[CheckpointStore]:
    if kind == "memory":
        from msstore.backends.memory import MemoryCheckpointStore

        yield MemoryCheckpointStore()
        return
    from msstore.backends.postgres import PostgresCheckpointStore

    with PostgresCheckpointStore(request.getfixturevalue("pg_state_dsn")) as pg:
        yield pg
