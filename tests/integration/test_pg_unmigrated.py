"""A store used on a database msstore never migrated says so, and what to run: NotFound with
"msstore migrate up", from the first call (or from opening, for stores that read the schema
when they open)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from msstore.errors import NotFound

pytestmark = pytest.mark.postgres


def _state(dsn: str) -> Any:
    from msstore.backends.postgres import PostgresStateStore

    with PostgresStateStore(dsn) as store:
        return store.retrieve("agent-1.plan")


def _tasks(dsn: str) -> Any:
    from msstore.backends.postgres import PostgresTaskQueue

    with PostgresTaskQueue(dsn) as queue:
        return queue.enqueue("crawl")


def _messages(dsn: str) -> Any:
    from msstore.backends.postgres import PostgresMessageLog

    with PostgresMessageLog(dsn) as log:
        return log.create_channel("events", "topic")


def _sessions(dsn: str) -> Any:
    from msstore.backends.postgres import PostgresSessionStore

    with PostgresSessionStore(dsn) as sessions:
        return sessions.open(agent="a", ttl=60)


def _outbox(dsn: str) -> Any:
    from msstore.backends.postgres import PostgresOutbox

    with PostgresOutbox(dsn) as outbox:
        return outbox.add("billing.changed", {"plan": "pro"})


def _facts(dsn: str) -> Any:
    from msstore.backends.postgres import PostgresFactStore

    return PostgresFactStore(dsn)


STORES: dict[str, Callable[[str], Any]] = {
    "state": _state,
    "tasks": _tasks,
    "messages": _messages,
    "sessions": _sessions,
    "outbox": _outbox,
    "facts": _facts,
}


@pytest.mark.parametrize("store", sorted(STORES))
def test_a_store_on_an_unmigrated_database_says_to_migrate(empty_pg_dsn: str, store: str) -> None:
    with pytest.raises(NotFound) as info:
        STORES[store](empty_pg_dsn)
    assert "msstore migrate up" in str(info.value)


def test_a_users_own_missing_table_is_not_blamed_on_migrations(empty_pg_dsn: str) -> None:
    from psycopg_pool import ConnectionPool

    from msstore.backends.postgres import transaction
    from msstore.errors import MsstoreError

    with (
        ConnectionPool(empty_pg_dsn, min_size=1, max_size=1) as pool,
        pytest.raises(MsstoreError) as info,
    ):
        transaction(pool, lambda conn: conn.execute("SELECT * FROM shop.orders"))
    assert "migrate" not in str(info.value)
