"""What the PostgreSQL stores share: one typed way to run work on a pooled connection.

:meth:`PgStore._run` takes a connection from the store's pool, runs ``fn(conn)`` under the
store's client-side deadline (:mod:`._deadline`), and translates what psycopg raises into the
msstore error a caller should see (:func:`._tx.classify`; a call cut off at its deadline is
``DeadlineExceeded`` for a read and ``OutcomeUnknown`` for a write, both naming the limit).
What ``fn`` leaves open is committed, or rolled back when ``fn`` raised (the work of the pool's
``connection()`` block, done here without its two context managers: this is on every call).
Subclasses set ``_pool`` and ``_deadline`` and may prepare each connection
(:meth:`PgStore._prepare`, e.g. to register the vector types).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

import orjson
import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool

from msstore.errors import DeadlineExceeded, MsstoreError, OutcomeUnknown
from msstore.registry import redact_url
from msstore.spi import StoreBase, check_int, check_seconds

from ._config import check_dsn
from ._deadline import guard
from ._tx import classify

__all__ = ["KNOWLEDGE_DEADLINE", "NOW", "Conn", "PgStore", "own_pool", "timestamp"]

# The knowledge stores load and index in bulk (a first load of many thousands of vectors builds
# its HNSW graph in one statement), so their calls get a longer deadline than the state store's.
KNOWLEDGE_DEADLINE = 300.0

T = TypeVar("T")
Conn = psycopg.Connection[Any]


_LONG_NUMBER: Final = re.compile(r"[0-9]{19}")


def _loads(data: str | bytes) -> Any:
    """JSON from PostgreSQL: orjson, but the standard library for a document with a number of
    19 digits or more (orjson reads an integer past 64 bits as a float; JSONB keeps it
    exact, and so must msstore)."""
    text = data if isinstance(data, str) else data.decode()
    if _LONG_NUMBER.search(text) is not None:
        return json.loads(text)
    return orjson.loads(text)


def configure(conn: Conn) -> None:
    """Prepare a new connection of a store's pool: JSON and JSONB read with :func:`_loads`."""
    set_json_loads(_loads, conn)


# psycopg_pool logs every failed connection attempt as a warning; msstore reports an unreachable
# server as ConnectionFailed to the caller, so by default those lines go nowhere (a program that
# configures logging still receives them).
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())


def own_pool(
    dsn: str, *, connect_timeout: int, name: str, max_size: int = 4, autocommit: bool = False
) -> ConnectionPool[Any]:
    """The small pool a store opens for itself when given a DSN. An unreachable server fails a
    call within the connect timeout (the pool keeps trying to connect meanwhile), not after the
    pool's default 30 s."""
    return ConnectionPool(
        check_dsn(dsn, connect_timeout=connect_timeout),
        min_size=1,
        max_size=max_size,
        name=name,
        timeout=connect_timeout,
        kwargs={"autocommit": True} if autocommit else None,
        configure=configure,
        open=True,
    )


# "Now" in a statement of a store with an injectable clock: the ``now`` parameter (the store's
# clock, see PgStore._now) or, when that is NULL, the server's clock.
NOW: Final = "COALESCE(%(now)s::timestamptz, clock_timestamp())"


def timestamp(seconds: float | None) -> datetime.datetime | None:
    """Unix seconds as an aware UTC datetime (``None`` stays ``None``), for timestamptz."""
    return None if seconds is None else datetime.datetime.fromtimestamp(seconds, datetime.UTC)


_IDLE: Final = TransactionStatus.IDLE


def _roll_back(conn: Conn) -> None:
    """End what a failed ``fn`` left open, so that the connection goes back to the pool clean
    (a broken one is discarded by the pool)."""
    if not conn.closed and conn.pgconn.transaction_status != _IDLE:
        with contextlib.suppress(psycopg.Error):
            conn.rollback()


class _CutOff(Exception):
    """A call whose connection the deadline watchdog cut (internal)."""


class PgStore(StoreBase):
    """The shared run-on-a-connection of the PostgreSQL stores (see the module docstring),
    and their lifecycle: ``close()`` closes the pool the store opened for itself."""

    _pool: ConnectionPool[Any]
    _deadline: float | None = None
    _owns_pool: bool = False
    _dsn: str = ""
    _clock: Callable[[], float] | None = None

    def _now_param(self) -> datetime.datetime | None:
        """The ``now`` parameter of :data:`NOW`: the store's clock, or ``None`` (the server's)."""
        return None if self._clock is None else timestamp(self._clock())

    def _now(self) -> float:
        """The store's clock, or this host's (Unix seconds), for checks made before SQL."""
        return time.time() if self._clock is None else self._clock()

    def _prepare(self, conn: Conn) -> None:
        """Called on each connection before ``fn`` (nothing by default)."""

    def _adopt(
        self,
        pool: ConnectionPool[Any] | str,
        *,
        name: str,
        connect_timeout: int,
        deadline: float | None,
        autocommit: bool = False,
    ) -> None:
        """Take ``pool``, or open a small one of the store's own for a DSN (closed with it).
        ``deadline``: seconds a call may wait for the server (``None``: no limit);
        ``connect_timeout``: whole seconds, 1 to 3600."""
        if deadline is not None:
            check_seconds(deadline, field="deadline")
        check_int(connect_timeout, field="connect_timeout", minimum=1, maximum=3600)
        self._owns_pool = isinstance(pool, str)
        if isinstance(pool, str):
            self._dsn = pool
            pool = own_pool(pool, connect_timeout=connect_timeout, name=name, autocommit=autocommit)
        else:
            self._dsn = str(pool.conninfo)
        self._pool = pool
        self._deadline = None if deadline is None else float(deadline)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact_url(self._dsn)})"

    def _release(self) -> None:
        if self._owns_pool:
            self._pool.close()

    def _run(self, what: str, fn: Callable[[Conn], T], *, write: bool = False) -> T:
        """``fn(conn)`` on a pooled connection; errors as msstore errors (module docstring).
        ``StoreClosed`` once the store is closed."""
        self._check_open()
        pool = self._pool
        try:
            conn = pool.getconn()
            try:
                with guard(conn, self._deadline) as deadline:
                    try:
                        self._prepare(conn)
                        result = fn(conn)
                        if conn.pgconn.transaction_status != _IDLE:
                            conn.commit()  # what fn left open (a pool without autocommit)
                        return result
                    except BaseException as err:
                        _roll_back(conn)
                        if isinstance(err, psycopg.Error) and deadline and deadline.fired:
                            raise _CutOff() from err
                        raise
            finally:
                pool.putconn(conn)
        except _CutOff as cut:
            raise self._cut_off(what, write) from cut.__cause__
        except psycopg.Error as err:
            raise classify(err, what=what, ours=True) from err

    def _run_transaction(self, what: str, fn: Callable[[Conn], T], *, write: bool = True) -> T:
        """:meth:`_run` with ``fn`` inside ``conn.transaction()`` (explicit on autocommit
        connections too)."""

        def run(conn: Conn) -> T:
            with conn.transaction():
                return fn(conn)

        return self._run(what, run, write=write)

    def _run_statement(self, what: str, fn: Callable[[Conn], T], *, write: bool = True) -> T:
        """:meth:`_run` in autocommit: for ``fn`` that issues one statement (atomic by itself),
        one round trip where BEGIN, the statement and COMMIT would take three."""

        def run(conn: Conn) -> T:
            if conn.autocommit:  # a pool of autocommit connections (own_pool(autocommit=True))
                return fn(conn)
            conn.autocommit = True
            try:
                return fn(conn)
            finally:
                if not conn.closed:  # (a lost connection's error is the one to raise)
                    conn.autocommit = False

        return self._run(what, run, write=write)

    def _cut_off(self, what: str, write: bool) -> MsstoreError:
        limit = self._deadline
        text = f"{what}: no answer from PostgreSQL within the {limit:g} s deadline"
        hint = "the connection was dropped; the call can be repeated"
        if write:
            return OutcomeUnknown(
                text + "; the write may or may not have been committed", limit=limit, hint=hint
            )
        return DeadlineExceeded(text, limit=limit, hint=hint)
