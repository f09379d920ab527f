"""``SagaLog`` on sagas.log and sagas.steps (0024): every write guarded by the saga's lease
owner, a SQL step's function and its outcome row in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import orjson
from psycopg import sql
from psycopg_pool import ConnectionPool

from msstore.coordination import Phase, SagaState, SagaStatus, StepRecord, StepState

from ._base import Conn, PgStore, timestamp
from ._config import DEFAULT_CONNECT_TIMEOUT
from ._jsonb import jsonb_text

__all__ = ["PostgresSagaLog"]

T = TypeVar("T")

_ENDED: Final = ("completed", "rolled_back", "compensation_failed")
SAGA_COLUMNS: Final = """
  l.saga_id::text, l.name, l.idempotency_key, l.status, l.step, l.context, l.owner,
  extract(epoch FROM l.lease_expires_at)::float8, l.reason,
  extract(epoch FROM l.created_at)::float8, extract(epoch FROM l.updated_at)::float8
"""
INSERT: Final = f"""
WITH ins AS (
  INSERT INTO sagas.log AS l (saga_id, name, idempotency_key, status, step, context, owner,
    lease_expires_at, reason, created_at, updated_at)
  VALUES (%(id)s, %(name)s, %(key)s, %(status)s, %(step)s, %(context)s::jsonb, %(owner)s,
    %(lease)s, NULL, %(now)s, %(now)s)
  ON CONFLICT (idempotency_key) DO NOTHING
  RETURNING {SAGA_COLUMNS}
)
SELECT * FROM ins
UNION ALL
SELECT {SAGA_COLUMNS} FROM sagas.log l
WHERE l.idempotency_key = %(key)s AND NOT EXISTS (SELECT 1 FROM ins)
"""
# The owner holds the saga: the condition of every write after the start.
HELD: Final = f"""
SELECT status, reason FROM sagas.log WHERE saga_id = %(id)s AND owner = %(owner)s
  AND status NOT IN {_ENDED} FOR UPDATE
"""
APPEND: Final = f"""
WITH held AS (
  UPDATE sagas.log SET status = %(status)s, step = %(step)s, reason = %(reason)s,
    lease_expires_at = %(lease)s,
    owner = CASE WHEN %(lease)s::timestamptz IS NULL THEN NULL ELSE owner END,
    updated_at = %(now)s
  WHERE saga_id = %(id)s AND owner = %(owner)s AND status NOT IN {_ENDED}
  RETURNING saga_id
)
INSERT INTO sagas.steps (saga_id, step_index, name, phase, state, detail, error, at)
SELECT saga_id, %(index)s, %(step_name)s, %(phase)s, %(state)s, %(detail)s::jsonb, %(error)s,
  %(at)s
FROM held
RETURNING 1
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

    def start(self, state: SagaState) -> SagaState:
        """See :meth:`msstore.coordination.SagaLog.start`."""
        params = {
            "id": uuid.UUID(state.saga_id),
            "name": state.name,
            "key": state.idempotency_key,
            "status": state.status.value,
            "step": state.step,
            "context": jsonb_text(dict(state.context)),
            "owner": state.owner,
            "lease": timestamp(state.lease_expires_at),
            "now": timestamp(state.created_at),
        }

        def write(c: Conn) -> SagaState:
            row = c.execute(INSERT, params).fetchone()
            if row is None:  # (a key taken by a saga whose row is not visible yet: retry)
                row = c.execute(INSERT, params).fetchone()
            assert row is not None
            return _state(row)

        return self._run_statement("start a saga", write)

    @staticmethod
    def _append_params(  # noqa: PLR0917 - the columns of one APPEND
        saga_id: str,
        owner: str,
        record: StepRecord,
        status: SagaStatus | str,
        step: int,
        reason: str | None,
        lease: float | None,
        now: float,
    ) -> dict[str, Any]:
        """The parameters of :data:`APPEND`."""
        return {
            "id": uuid.UUID(saga_id),
            "owner": owner,
            "status": SagaStatus(status).value,
            "step": step,
            "reason": reason,
            "lease": timestamp(lease),
            "now": timestamp(now),
            "index": record.index,
            "step_name": record.name,
            "phase": record.phase.value,
            "state": record.state.value,
            "detail": orjson.dumps(dict(record.detail)).decode(),
            "error": record.error,
            "at": timestamp(record.at or now),
        }

    def append(
        self,
        saga_id: str,
        owner: str,
        record: StepRecord,
        *,
        status: SagaStatus,
        step: int,
        reason: str | None,
        lease_expires_at: float | None,
        now: float,
    ) -> bool:
        """See :meth:`msstore.coordination.SagaLog.append`."""
        params = self._append_params(
            saga_id, owner, record, status, step, reason, lease_expires_at, now
        )
        return self._run_statement(
            "record a saga step", lambda c: c.execute(APPEND, params).fetchone() is not None
        )

    def atomic(
        self,
        saga_id: str,
        owner: str,
        record: StepRecord,
        fn: Callable[[Any], T],
        *,
        step: int,
        lease_expires_at: float,
        now: float,
        isolation: str,
    ) -> tuple[bool, T | None]:
        """See :meth:`msstore.coordination.SagaLog.atomic`; ``fn`` gets the psycopg
        connection, inside the transaction."""
        level = sql.SQL("SET TRANSACTION ISOLATION LEVEL {}").format(sql.SQL(isolation))

        def run(c: Conn) -> tuple[bool, T | None]:
            c.execute(level)
            held = c.execute(HELD, {"id": uuid.UUID(saga_id), "owner": owner}).fetchone()
            if held is None:
                return False, None
            out = fn(c)
            status, reason = held  # (unchanged: the step's outcome keeps the saga's status)
            params = self._append_params(
                saga_id, owner, record, status, step, reason, lease_expires_at, now
            )
            c.execute(APPEND, params)
            return True, out

        return self._run_transaction("run a saga's SQL step", run)

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
