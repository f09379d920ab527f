"""Transactions on the real PostgreSQL: a provoked serialization failure is retried and wins."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg", reason="needs msstore[postgres]")
from psycopg_pool import ConnectionPool  # noqa: E402

from msstore.backends.postgres import Isolation, transaction  # noqa: E402
from msstore.conflicts import RetryPolicy  # noqa: E402
from msstore.errors import (  # noqa: E402
    ConnectionFailed,
    DuplicateKey,
    InvalidArgument,
    TransactionConflict,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def pool(msstore_postgres_dsn: str, msstore_pg_schema: str) -> Iterator[ConnectionPool[Any]]:
    with ConnectionPool(
        msstore_postgres_dsn,
        min_size=2,
        max_size=4,
        open=True,
        kwargs={"options": f"-c search_path={msstore_pg_schema}"},
    ) as p:
        with p.connection() as conn:
            conn.execute(
                "CREATE TABLE doctors (name text PRIMARY KEY, on_call bool NOT NULL, "
                "shift int CHECK (shift >= 0))"
            )
            conn.execute("INSERT INTO doctors VALUES ('alice', true, 1), ('bob', true, 1)")
        yield p


def test_serialization_failure_is_retried_and_the_invariant_holds(pool: Any) -> None:
    """Write skew: each transaction checks that someone else stays on call, then leaves.

    Run serially, the second sees only one doctor on call and stays. Run concurrently at
    SERIALIZABLE, PostgreSQL aborts one with 40001; the retry sees the first's commit.
    """
    both_read = threading.Barrier(2)
    attempts: dict[str, int] = {"alice": 0, "bob": 0}

    def go_off_call(name: str) -> Any:
        def body(conn: Any) -> bool:
            attempts[name] += 1
            on_call = conn.execute("SELECT count(*) FROM doctors WHERE on_call").fetchone()[0]
            if attempts[name] == 1:
                both_read.wait(5)  # both have read before either writes: the skew
            if on_call < 2:
                return False
            conn.execute("UPDATE doctors SET on_call = false WHERE name = %s", (name,))
            return True

        return transaction(
            pool,
            body,
            isolation=Isolation.SERIALIZABLE,
            policy=RetryPolicy(attempts=5, base=0.01, jitter=0.01),
        )

    results: dict[str, bool] = {}
    threads = [
        threading.Thread(target=lambda n=n: results.__setitem__(n, go_off_call(n)))
        for n in ("alice", "bob")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == [False, True]  # exactly one went off call
    assert sorted(attempts.values()) == [1, 2]  # the loser was aborted once, then retried
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM doctors WHERE on_call").fetchone()[0] == 1


def test_unique_and_other_constraint_violations_are_permanent(pool: Any) -> None:
    calls = 0

    def insert_dup(conn: Any) -> None:
        nonlocal calls
        calls += 1
        conn.execute("INSERT INTO doctors VALUES ('alice', true, 1)")

    with pytest.raises(DuplicateKey):
        transaction(pool, insert_dup, policy=RetryPolicy(attempts=5, base=0))
    assert calls == 1
    with pytest.raises(InvalidArgument, match="constraint violated"):
        transaction(pool, lambda c: c.execute("UPDATE doctors SET shift = -1"))


def test_set_local_settings_and_read_only(pool: Any) -> None:
    def settings(conn: Any) -> tuple[str, str]:
        timeout = conn.execute("SHOW statement_timeout").fetchone()[0]
        level = conn.execute("SHOW transaction_isolation").fetchone()[0]
        return timeout, level

    assert transaction(
        pool,
        settings,
        isolation=Isolation.REPEATABLE_READ,
        settings={"statement_timeout": "1500ms"},
    ) == ("1500ms", "repeatable read")
    with pool.connection() as conn:  # SET LOCAL ended with the transaction
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "0"
    with pytest.raises(Exception, match="read-only"):
        transaction(pool, lambda c: c.execute("DELETE FROM doctors"), read_only=True)
    with pytest.raises(TransactionConflict, match="deadlock"):
        # a statement timeout is not a conflict; a deadlock is: provoke one directly
        _deadlock(pool)


def _deadlock(pool: Any) -> None:
    both = threading.Barrier(2)
    errors: list[BaseException] = []

    def lock(first: str, second: str) -> None:
        def body(conn: Any) -> None:
            conn.execute("UPDATE doctors SET shift = shift + 1 WHERE name = %s", (first,))
            both.wait(5)
            conn.execute("UPDATE doctors SET shift = shift + 1 WHERE name = %s", (second,))

        try:
            transaction(pool, body, policy=RetryPolicy(attempts=1))
        except BaseException as err:
            errors.append(err)

    threads = [
        threading.Thread(target=lock, args=pair) for pair in (("alice", "bob"), ("bob", "alice"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    raise next(e for e in errors if isinstance(e, TransactionConflict))


def test_lost_connection_is_retried_on_a_new_one(pool: Any) -> None:
    attempts = 0

    def body(conn: Any) -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:  # the server ends this session mid-transaction
            with pool.connection() as other:
                other.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
            conn.execute("SELECT 1")
        return int(conn.execute("SELECT count(*) FROM doctors").fetchone()[0])

    assert transaction(pool, body, policy=RetryPolicy(attempts=3, base=0.01)) == 2
    assert attempts == 2
    with pytest.raises(ConnectionFailed):
        transaction(
            pool,
            lambda c: c.execute("SELECT pg_terminate_backend(pg_backend_pid())"),
            policy=RetryPolicy(attempts=1),
        )
