"""``SagaLog`` on sagas.log and sagas.steps (0024): every write guarded by the saga's lease
owner, a SQL step's function and its outcome row in one transaction."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import orjson
import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from msstore.coordination import Phase, SagaState, SagaStatus, StepRecord, StepState
from msstore.errors import InvalidArgument

from ._base import Conn, PgStore, timestamp
from ._config import DEFAULT_CONNECT_TIMEOUT
from ._jsonb import jsonb_text

__all__ = ["PostgresSagaLog"]

T = TypeVar("T")

_ISOLATION: Final = ("READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE")
_ENDED: Final = ("completed", "rolled_back", "compensation_failed")
SAGA_COLUMNS: Final = """
  l.saga_id::text, l.name, l.idempotency_key, l.status, l.step, l.context, l.owner,
  extract(epoch FROM l.lease_expires_at)::float8, l.reason,
  extract(epoch FROM l.created_at)::float8, extract(epoch FROM l.updated_at)::float8
"""
# The step rows of one write, from one JSON array (encoded once), in the order given.
_RECORDS: Final = """
  SELECT r.i, r.n, r.p, r.s, r.d, r.e, to_timestamp(r.a)
  FROM ROWS FROM (jsonb_to_recordset(%(records)s::jsonb)
    AS (i int, n text, p text, s text, d jsonb, e text, a float8))
    WITH ORDINALITY AS r(i, n, p, s, d, e, a, o)
  ORDER BY r.o
"""
INSERT: Final = f"""
WITH ins AS (
  INSERT INTO sagas.log (saga_id, name, idempotency_key, status, step, context, owner,
    lease_expires_at, reason, created_at, updated_at)
  VALUES (%(id)s, %(name)s, %(key)s, %(status)s, %(step)s, %(context)s::jsonb, %(owner)s,
    to_timestamp(%(lease)s), NULL, to_timestamp(%(now)s), to_timestamp(%(now)s))
  ON CONFLICT (idempotency_key) DO NOTHING
  RETURNING saga_id
), steps AS (
  INSERT INTO sagas.steps (saga_id, step_index, name, phase, state, detail, error, at)
  SELECT ins.saga_id, r.* FROM ins, ({_RECORDS}) r
)
SELECT saga_id::text FROM ins
UNION ALL
SELECT l.saga_id::text FROM sagas.log l
WHERE l.idempotency_key = %(key)s AND NOT EXISTS (SELECT 1 FROM ins)
"""
# The owner holds the saga (locked until the transaction ends): the start of a SQL step.
HELD: Final = "SELECT sagas.hold(%(id)s, %(owner)s)"
# Every write after the start (0025); ``strict``: raise, not return false, if not held.
APPEND: Final = """
SELECT sagas.append(%(id)s, %(owner)s, %(status)s, %(step)s, %(reason)s, %(lease)s, %(now)s,
  %(records)s::jsonb, %(strict)s)
"""
TAKE_OVER: Final = """
UPDATE sagas.log SET owner = %(owner)s, lease_expires_at = %(lease)s, updated_at = %(now)s,
  status = CASE WHEN status = 'compensation_failed' THEN 'compensating' ELSE status END
WHERE saga_id = %(id)s AND status NOT IN ('completed', 'rolled_back')
  AND (owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= %(now)s)
RETURNING 1
"""


def _state(row: Sequence[Any]) -> SagaState:
    return SagaState(
        saga_id=row[0],
        name=row[1],
        idempotency_key=row[2],
        status=SagaStatus(row[3]),
        step=row[4],
        context=row[5],
        owner=row[6],
        lease_expires_at=row[7],
        reason=row[8],
        created_at=row[9],
        updated_at=row[10],
    )


def _true(row: Sequence[Any] | None) -> bool:
    """A one-boolean row's value."""
    return row is not None and bool(row[0])


def _records(records: Sequence[StepRecord], now: float) -> bytes:
    """The JSON array :data:`_RECORDS` reads."""
    return orjson.dumps(
        [
            {
                "i": r.index,
                "n": r.name,
                "p": r.phase.value,
                "s": r.state.value,
                "d": r.detail,
                "e": r.error,
                "a": r.at or now,
            }
            for r in records
        ]
    )


def _append_params(  # noqa: PLR0917 - the columns of one APPEND
    saga_id: str,
    owner: str,
    records: Sequence[StepRecord],
    status: SagaStatus,
    step: int,
    reason: str | None,
    lease: float | None,
    now: float,
) -> dict[str, Any]:
    """The parameters of :data:`APPEND`."""
    return {
        "id": uuid.UUID(saga_id),
        "owner": owner,
        "status": status.value,
        "step": step,
        "reason": reason,
        "lease": lease,
        "now": now,
        "records": _records(records, now).decode(),
        "strict": False,
    }


class PostgresSagaLog(PgStore):
    """The saga log in PostgreSQL (needs the migrations: ``msstore migrate up``). ``pool``: a
    ``psycopg_pool.ConnectionPool`` or a DSN (the log then opens and closes its own);
    ``deadline``: seconds a call may wait for the server."""

    def __init__(
        self,
        pool: ConnectionPool[Any] | str,
        *,
        deadline: float | None = 15.0,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        super().__init__()
        self._adopt(
            pool,
            name="msstore-sagas",
            connect_timeout=connect_timeout,
            deadline=deadline,
            autocommit=True,
        )

    def start(self, state: SagaState, records: Sequence[StepRecord] = ()) -> SagaState:
        """See :meth:`msstore.coordination.SagaLog.start`."""
        params = {
            "id": uuid.UUID(state.saga_id),
            "name": state.name,
            "key": state.idempotency_key,
            "status": state.status.value,
            "step": state.step,
            "context": jsonb_text(dict(state.context)),
            "owner": state.owner,
            "lease": state.lease_expires_at,
            "now": state.created_at,
            "records": _records(records, state.created_at).decode(),
        }

        def write(c: Conn) -> str:
            row = c.execute(INSERT, params).fetchone()
            if row is None:  # (a key taken by a saga whose row is not visible yet: retry)
                row = c.execute(INSERT, params).fetchone()
            assert row is not None
            return str(row[0])

        saga_id = self._run_statement("start a saga", write)
        if saga_id == state.saga_id:
            return state
        found = self.by_key(state.idempotency_key or "")  # (it started first with the key)
        assert found is not None
        return found

    def append(
        self,
        saga_id: str,
        owner: str,
        records: Sequence[StepRecord],
        *,
        status: SagaStatus,
        step: int,
        reason: str | None,
        lease_expires_at: float | None,
        now: float,
    ) -> bool:
        """See :meth:`msstore.coordination.SagaLog.append`."""
        params = _append_params(
            saga_id, owner, records, status, step, reason, lease_expires_at, now
        )
        return self._run_statement(
            "record a saga step", lambda c: _true(c.execute(APPEND, params).fetchone())
        )

    def atomic(
        self,
        saga_id: str,
        owner: str,
        records: Sequence[StepRecord],
        fn: Callable[[Any], T],
        *,
        status: SagaStatus,
        step: int,
        reason: str | None,
        lease_expires_at: float | None,
        now: float,
        isolation: str,
        timeout: float | None = None,
    ) -> tuple[bool, T | None]:
        """See :meth:`msstore.coordination.SagaLog.atomic`; ``fn`` gets the psycopg
        connection, inside the transaction (``timeout`` is its ``statement_timeout``)."""
        if isolation not in _ISOLATION:
            raise InvalidArgument(f"isolation must be one of {_ISOLATION}, got {isolation!r}")
        settings, leading = f"BEGIN ISOLATION LEVEL {isolation};", 1
        if timeout is not None:
            ms = max(1, round(timeout * 1000))
            settings, leading = f"{settings} SET LOCAL statement_timeout = {ms};", 2

        def run(c: Conn) -> tuple[bool, T | None]:
            # BEGIN, the settings and the lock in one round trip, the outcome and COMMIT in
            # another (parameters inlined by psycopg's client-side binding, since one round
            # trip of several statements takes none): a SQL step costs what the same
            # transaction done by hand costs, plus the outcome's write.
            bind = psycopg.ClientCursor(c)
            own = c.autocommit
            c.autocommit = True  # (the transaction is ours to begin)
            try:
                cur = c.execute(
                    settings + bind.mogrify(HELD, {"id": uuid.UUID(saga_id), "owner": owner})
                )
                for _ in range(leading):  # (BEGIN's and SET's results come first)
                    cur.nextset()
                if not _true(cur.fetchone()):
                    c.execute("ROLLBACK")
                    return False, None
                out = fn(c)
                params = _append_params(  # (after fn: a record's detail may be fn's result)
                    saga_id, owner, records, status, step, reason, lease_expires_at, now
                )
                params["strict"] = True  # (COMMIT follows in the same round trip)
                c.execute(bind.mogrify(APPEND, params) + "; COMMIT")
                return True, out
            except BaseException:
                if not c.closed and c.pgconn.transaction_status != TransactionStatus.IDLE:
                    with contextlib.suppress(psycopg.Error):
                        c.execute("ROLLBACK")
                raise
            finally:
                if not c.closed and c.pgconn.transaction_status == TransactionStatus.IDLE:
                    c.autocommit = own

        return self._run("run a saga's SQL step", run, write=True)

    def load(self, saga_id: str) -> tuple[SagaState, Sequence[StepRecord]] | None:
        """See :meth:`msstore.coordination.SagaLog.load`."""
        try:
            key = uuid.UUID(saga_id)
        except ValueError:
            return None

        def read(c: Conn) -> tuple[SagaState, Sequence[StepRecord]] | None:
            row = c.execute(
                f"SELECT {SAGA_COLUMNS} FROM sagas.log l WHERE l.saga_id = %s", (key,)
            ).fetchone()
            if row is None:
                return None
            steps = c.execute(
                "SELECT step_index, name, phase, state, detail, error, "
                "extract(epoch FROM at)::float8 FROM sagas.steps WHERE saga_id = %s ORDER BY seq",
                (key,),
            ).fetchall()
            records = [
                StepRecord(r[0], r[1], Phase(r[2]), StepState(r[3]), r[4], r[5], r[6])
                for r in steps
            ]
            return _state(row), records

        return self._run_transaction("read a saga", read, write=False)

    def by_key(self, idempotency_key: str) -> SagaState | None:
        """See :meth:`msstore.coordination.SagaLog.by_key`."""
        row = self._run(
            "find a saga",
            lambda c: c.execute(
                f"SELECT {SAGA_COLUMNS} FROM sagas.log l WHERE l.idempotency_key = %s",
                (idempotency_key,),
            ).fetchone(),
        )
        return None if row is None else _state(row)

    def take_over(self, saga_id: str, owner: str, lease_expires_at: float, now: float) -> bool:
        """See :meth:`msstore.coordination.SagaLog.take_over`."""
        params = {
            "id": uuid.UUID(saga_id),
            "owner": owner,
            "lease": timestamp(lease_expires_at),
            "now": timestamp(now),
        }
        return self._run_statement(
            "take over a saga", lambda c: c.execute(TAKE_OVER, params).fetchone() is not None
        )

    def sagas(
        self, statuses: Sequence[SagaStatus] | None = None, *, limit: int = 100
    ) -> list[SagaState]:
        """See :meth:`msstore.coordination.SagaLog.sagas`."""
        wanted = None if statuses is None else [s.value for s in statuses]
        rows = self._run(
            "list sagas",
            lambda c: c.execute(
                f"SELECT {SAGA_COLUMNS} FROM sagas.log l "
                "WHERE %(s)s::text[] IS NULL OR l.status = ANY(%(s)s::text[]) "
                "ORDER BY l.created_at, l.saga_id LIMIT %(limit)s",
                {"s": wanted, "limit": limit},
            ).fetchall(),
        )
        return [_state(r) for r in rows]
