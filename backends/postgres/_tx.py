"""Transactions with an isolation level, ``SET LOCAL`` settings and classified retries.

:func:`transaction` runs ``fn(conn)`` inside one transaction taken from a
``psycopg_pool.ConnectionPool`` and retries it as a whole when
PostgreSQL says the same work can succeed on another try:

* serialization failures (40001) and deadlocks (40P01): retried with exponential backoff and
  jitter (:class:`~msstore.conflicts.RetryPolicy`), surfaced as ``TransactionConflict`` at the
  end;
* a lost connection (class 08, admin shutdown): retried on a new connection from the pool,
  surfaced as ``ConnectionFailed``;
* a unique violation (23505): ``DuplicateKey``, not retried;
* any other constraint violation (class 23): ``InvalidArgument``, not retried (the data is wrong,
  not the timing).

``fn`` must be safe to run again: it sees a fresh transaction each time.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from msstore.conflicts.update import RetryPolicy
from msstore.errors import (
    ConnectionFailed,
    DuplicateKey,
    InvalidArgument,
    MsstoreError,
    NotFound,
    TransactionConflict,
)

__all__ = ["Isolation", "classify", "transaction"]

T = TypeVar("T")

_RETRY_CONFLICT = {"40001", "40P01"}
_CONNECTION_LOST = {"57P01", "57P02", "57P03"}
# undefined table, schema, column, function, type: what an unmigrated database lacks
_MISSING = {"42P01", "3F000", "42703", "42883", "42704"}


class Isolation(enum.Enum):
    """A transaction isolation level for :func:`transaction`."""

    READ_COMMITTED = "READ COMMITTED"
    REPEATABLE_READ = "REPEATABLE READ"
    SERIALIZABLE = "SERIALIZABLE"


def classify(err: psycopg.Error, *, what: str, ours: bool = False) -> MsstoreError:  # noqa: PLR0911
    """A psycopg error as the msstore error a caller should see (see the module docstring).
    ``ours``: the statement was msstore's, so a missing table, column, type or function means
    the database was not migrated (or not to this version): ``NotFound`` saying how to."""
    state = err.sqlstate or ""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if ours and state in _MISSING:
        return NotFound(
            f"{what}: {first}",
            sqlstate=state,
            hint="the database lacks msstore's schema, or this version's migrations: run "
            "`msstore migrate up` (or Migrator(dsn).up() from msstore.backends.postgres)",
        )
    if state in _RETRY_CONFLICT:
        kind = "deadlock" if state == "40P01" else "serialization failure"
        return TransactionConflict(
            f"{what}: {kind} ({state}): {first}", sqlstate=state, hint="retry the whole transaction"
        )
    if state == "23505":
        return DuplicateKey(f"{what}: {first}", sqlstate=state)
    if state.startswith("23"):
        return InvalidArgument(f"{what}: constraint violated ({state}): {first}", sqlstate=state)
    if isinstance(err, PoolTimeout):
        return ConnectionFailed(
            f"{what}: no connection to PostgreSQL: {first}",
            hint="the server is unreachable or every pooled connection is busy",
        )
    if (
        state.startswith("08")
        or state in _CONNECTION_LOST
        or (isinstance(err, psycopg.OperationalError) and not state)
    ):
        return ConnectionFailed(
            f"{what}: connection lost: {first}", sqlstate=state, hint="retried on a new connection"
        )
    return MsstoreError(f"{what}: {first}", sqlstate=state)


def transaction(
    pool: ConnectionPool[Any],
    fn: Callable[[psycopg.Connection[Any]], T],
    *,
    isolation: Isolation = Isolation.READ_COMMITTED,
    read_only: bool = False,
    settings: Mapping[str, str] | None = None,
    policy: RetryPolicy | None = None,
    what: str = "transaction",
) -> T:
    """Run ``fn(conn)`` in one transaction at ``isolation``, retrying what can succeed later.

    ``settings`` become ``SET LOCAL name = value`` inside the transaction (e.g.
    ``{"statement_timeout": "5s", "lock_timeout": "1s"}``), so they end with it.
    """
    if not isinstance(isolation, Isolation):
        raise InvalidArgument(f"isolation must be an Isolation, not {isolation!r}")
    policy = policy or RetryPolicy()
    mode = sql.SQL("BEGIN ISOLATION LEVEL {} {}").format(
        sql.SQL(isolation.value), sql.SQL("READ ONLY" if read_only else "READ WRITE")
    )
    sets = [
        sql.SQL("SET LOCAL {} = {}").format(sql.Identifier(name), sql.Literal(str(value)))
        for name, value in (settings or {}).items()
    ]

    def attempt() -> T:
        try:
            with pool.connection() as conn:
                conn.autocommit = True  # BEGIN/COMMIT are ours, with the isolation level
                conn.execute(mode)
                try:
                    for statement in sets:
                        conn.execute(statement)
                    result = fn(conn)
                    conn.execute("COMMIT")
                    return result
                except BaseException:
                    if not conn.closed:
                        with contextlib.suppress(psycopg.Error):  # the original error matters
                            conn.execute("ROLLBACK")
                    raise
        except psycopg.Error as err:
            raise classify(err, what=what) from err

    result: T = policy.retrying()(attempt)
    return result
