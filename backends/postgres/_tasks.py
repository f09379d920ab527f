"""``TaskQueue`` on tasks.queue, tasks.dependencies and tasks.executions (0004, 0017, 0020-0023):
:class:`~msstore.work.TaskQueueBase`'s primitives, each one statement or one transaction.

* **Claims** are one statement, ``tasks.claim()``: it picks claimable tasks in claim order
  ``FOR UPDATE SKIP LOCKED`` (no two workers ever hold one task; a worker never waits on
  another's lock) and marks them running under a lease. It is a function so that its plan is
  the claim-order index walk even when the statistics say the queue is empty.
* **Settling** (complete, fail, a lapsed lease) is one statement for a batch of attempts: the
  base class's settlements as arrays, applied where each claim still holds.
* **Wake-ups**: an enqueue sends ``NOTIFY msstore_tasks`` with its commit; workers blocked in
  ``claim(wait=...)`` share one ``LISTEN`` connection per queue and try again when a
  notification comes, or every ``poll`` seconds (what a lost notification leaves).
* **Time** is the queue's ``clock`` when one is given (tests drive it), else the server's
  ``clock_timestamp()``: every comparison of leases, schedules and expiries uses one of them.
* ``enqueue_many(..., conn=c)`` writes on the caller's connection inside its transaction (see
  :func:`~msstore.backends.postgres.transaction`): the tasks exist exactly when the caller's
  other writes commit.
"""

from __future__ import annotations

import builtins
import functools
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import psycopg
from psycopg_pool import ConnectionPool

from msstore.codec import Codec
from msstore.work import (
    RUN_CANCELLED,
    Claim,
    Execution,
    LinkCheck,
    Move,
    NewTask,
    Priority,
    Settlement,
    Task,
    TaskQueueBase,
    TaskSpec,
    TaskStatus,
    no_task,
    task_id_taken,
)

from ._agents import AgentRegistrar, agent_of_token
from ._base import NOW, Conn, PgStore, timestamp
from ._config import DEFAULT_CONNECT_TIMEOUT
from ._jsonb import jsonb_text
from ._listen import Listener
from ._tx import classify

__all__ = ["CHANNEL", "PostgresTaskQueue"]

CHANNEL: Final = "msstore_tasks"
PRIORITY_LABELS: Final = ("low", "normal", "high", "urgent", "critical")
_TAKEN: Final = re.compile(r"\(task_id\)=\(([0-9a-f-]{36})\)")

TASK_COLUMNS: Final = """
  q.task_id, q.task_type, q.payload, q.status::text, q.priority::text,
  extract(epoch FROM q.created_at)::float8, extract(epoch FROM q.scheduled_at)::float8,
  extract(epoch FROM q.expires_at)::float8, q.max_retries,
  extract(epoch FROM q.max_execution_time)::float8, q.retry_count, q.attempts, q.parent_task_id,
  ARRAY(SELECT d.depends_on_task_id::uuid FROM tasks.dependencies d WHERE d.task_id = q.task_id
        ORDER BY d.created_at, d.depends_on_task_id),
  q.unique_key, q.assigned_agent, q.claimed_by, extract(epoch FROM q.lease_expires_at)::float8,
  extract(epoch FROM q.started_at)::float8, extract(epoch FROM q.completed_at)::float8,
  q.result, q.last_error, q.enqueue_seq
"""


def _claim_holds(task_id: str, attempt: str, agent: str, lapsed: str) -> str:
    """The SQL form of :func:`msstore.work.holds` for the row ``q`` at ``now.t``: the task
    running, at the claim's attempt, by its agent, its lease not run out (``lapsed`` true: run
    out). The arguments are the SQL expressions of the claim's fields."""
    return f"""
  q.task_id = {task_id} AND q.status = 'running' AND q.attempts = {attempt}
  AND q.claimed_by = {agent} AND (q.lease_expires_at > now.t) <> {lapsed}
"""


# The columns an enqueue writes: (parameter, element type, the SELECT expression of a value v).
# A column whose values are all equal in a batch (its type, priority, limits; unset options) is
# bound once as a scalar instead of an array of copies.
TASK_PARAMS: Final = (
    ("ids", "uuid", "{}"),
    ("types", "text", "{}"),
    ("payloads", "text", "{}::jsonb"),
    ("priorities", "text", "{}::task_priority_type"),
    ("scheduled", "timestamptz", "{}"),
    ("expires", "timestamptz", "{}"),
    ("retries", "int", "{}"),
    ("exec_s", "float8", "{} * interval '1 second'"),
    ("parents", "uuid", "{}"),
    ("ukeys", "text", "{}"),
    ("agents", "text", "{}"),
    ("agent_ids", "uuid", "{}"),
)


@functools.cache
def insert_statement(scalars: frozenset[str], *, wake: bool) -> str:
    """The enqueue's INSERT: ``scalars`` names the parameters bound as one value for every
    row, the others are arrays unnested in step; ``wake``: the statement also sends the
    wake-up ``NOTIFY`` (when it commits on its own) and returns only how many rows it wrote
    (every one: such a batch has no unique keys; the ids are the caller's)."""
    arrays = [(name, kind) for name, kind, _ in TASK_PARAMS if name not in scalars]
    values = [
        expr.format(f"%({name})s::{kind}" if name in scalars else f"a.{name}")
        for name, kind, expr in TASK_PARAMS
    ]
    unnest = ", ".join(f"%({name})b::{kind}[]" for name, kind in arrays)
    columns = ", ".join(name for name, _ in arrays)
    woke = f", woke AS (SELECT pg_notify('{CHANNEL}', 'enqueued'))" if wake else ""
    return f"""
WITH now AS (SELECT {NOW} AS t),
ins AS (
  INSERT INTO tasks.queue AS q (task_id, task_type, payload, priority, scheduled_at,
    expires_at, max_retries, max_execution_time, parent_task_id, unique_key, assigned_agent,
    assigned_agent_id, created_at, updated_at, status)
  SELECT {", ".join(values)}, now.t, now.t, 'pending'
  FROM now, unnest({unnest}) AS a({columns})
  ON CONFLICT (unique_key)
    WHERE unique_key IS NOT NULL AND status NOT IN ('completed', 'failed', 'cancelled')
    DO NOTHING
  RETURNING q.task_id
){woke}
{"SELECT count(*) FROM ins, woke" if wake else "SELECT ins.task_id FROM ins"}
"""


INSERT_DEPENDENCIES: Final = """
INSERT INTO tasks.dependencies (task_id, depends_on_task_id)
SELECT t, d FROM unnest(%b::uuid[], %b::uuid[]) AS x(t, d)
"""
# The claim is tasks.claim() (0022): the one statement, planned so that it walks the claim-order
# index whatever the statistics say.
TAKE: Final = f"""
SELECT {TASK_COLUMNS}
FROM tasks.claim(%(now)s, %(types)s::text[], %(agent)s, %(limit)s, %(lease)s) q
"""
LAPSED: Final = f"""
SELECT {TASK_COLUMNS} FROM tasks.queue q
WHERE q.status = 'running' AND q.lease_expires_at <= {NOW}
ORDER BY q.lease_expires_at LIMIT 1000
"""
# One attempt (SETTLE_ONE) or many (SETTLE_MANY) settled: the settlements' columns, decided by
# the base.
SETTLE_ONE: Final = """
SELECT %(id)s::uuid AS task_id, %(attempt)s::int AS attempt, %(agent)s::text AS agent,
  %(agent_id)s::uuid AS agent_id,
  %(status)s::task_status_type AS status, %(run)s::task_status_type AS run,
  %(result)s::jsonb AS result, %(error)s::text AS error, %(retry_in)s::float8 AS retry_in,
  %(retried)s::bool AS retried, %(finished)s::bool AS finished, %(lapsed)s::bool AS lapsed
"""
SETTLE_MANY: Final = """
SELECT * FROM unnest(%(id)b::uuid[], %(attempt)b::int[], %(agent)b::text[],
  %(agent_id)b::uuid[], %(status)b::task_status_type[], %(run)b::task_status_type[],
  %(result)b::jsonb[], %(error)b::text[], %(retry_in)b::float8[], %(retried)b::bool[],
  %(finished)b::bool[], %(lapsed)b::bool[])
  AS x(task_id, attempt, agent, agent_id, status, run, result, error, retry_in, retried,
       finished, lapsed)
"""
SETTLE: Final = f"""
WITH now AS (SELECT {NOW} AS t),
s AS ({{source}}),
done AS (
  UPDATE tasks.queue q SET status = s.status, retry_count = q.retry_count + s.retried::int,
    scheduled_at = COALESCE(now.t + s.retry_in * interval '1 second', q.scheduled_at),
    claimed_by = CASE WHEN s.retried THEN NULL ELSE q.claimed_by END,
    completed_at = CASE WHEN s.finished THEN now.t END,
    result = COALESCE(s.result, q.result), last_error = COALESCE(s.error, q.last_error),
    lease_expires_at = NULL, updated_at = now.t
  FROM s, now
  WHERE {_claim_holds("s.task_id", "s.attempt", "s.agent", "s.lapsed")}
  RETURNING q.task_id, q.attempts, q.started_at, s.agent_id, s.run, s.result, s.error
),
runs AS (
  INSERT INTO tasks.executions (task_id, agent_id, execution_attempt, started_at,
    completed_at, status, result, error_message)
  SELECT d.task_id, d.agent_id, d.attempts, d.started_at, now.t, d.run, d.result, d.error
  FROM done d, now
)
SELECT d.task_id, d.attempts, extract(epoch FROM now.t)::float8,
  (SELECT count(pg_notify('{CHANNEL}', 'settled')) FROM tasks.dependencies x
   WHERE x.depends_on_task_id = d.task_id AND d.run = 'completed')
FROM done d, now
"""
SETTLE_ONE_STATEMENT: Final = SETTLE.format(source=SETTLE_ONE)
SETTLE_MANY_STATEMENT: Final = SETTLE.format(source=SETTLE_MANY)
# Completions, the most frequent settlement, have the statement that writes just what a
# completion changes (SETTLE does the same for them, with every column's case in the plan).
COMPLETE_MANY: Final = """
SELECT * FROM unnest(%(id)b::uuid[], %(attempt)b::int[], %(agent)b::text[],
  %(agent_id)b::uuid[], %(result)b::jsonb[]) AS x(task_id, attempt, agent, agent_id, result)
"""
COMPLETE: Final = f"""
WITH now AS (SELECT {NOW} AS t),
s AS ({{source}}),
done AS (
  UPDATE tasks.queue q SET status = 'completed', completed_at = now.t, result = s.result,
    lease_expires_at = NULL, updated_at = now.t
  FROM s, now
  WHERE {_claim_holds("s.task_id", "s.attempt", "s.agent", "false")}
  RETURNING q.task_id, q.attempts, q.started_at, s.agent_id, s.result
),
runs AS (
  INSERT INTO tasks.executions (task_id, agent_id, execution_attempt, started_at,
    completed_at, status, result)
  SELECT d.task_id, d.agent_id, d.attempts, d.started_at, now.t, 'completed', d.result
  FROM done d, now
)
SELECT d.task_id, d.attempts, extract(epoch FROM now.t)::float8,
  (SELECT count(pg_notify('{CHANNEL}', 'settled')) FROM tasks.dependencies x
   WHERE x.depends_on_task_id = d.task_id)
FROM done d, now
"""
COMPLETE_ONE_STATEMENT: Final = COMPLETE.format(
    source="SELECT %(id)s::uuid AS task_id, %(attempt)s::int AS attempt, "
    "%(agent)s::text AS agent, %(agent_id)s::uuid AS agent_id, %(result)s::jsonb AS result"
)
COMPLETE_MANY_STATEMENT: Final = COMPLETE.format(source=COMPLETE_MANY)
RENEW: Final = f"""
WITH now AS (SELECT {NOW} AS t)
UPDATE tasks.queue q SET lease_expires_at = now.t + %(seconds)s * interval '1 second',
  updated_at = now.t
FROM now
WHERE {_claim_holds("%(id)s", "%(attempt)s", "%(agent)s", "false")}
RETURNING extract(epoch FROM q.lease_expires_at)::float8
"""
END_RUN: Final = f"""
INSERT INTO tasks.executions (task_id, agent_id, execution_attempt, started_at, completed_at,
  status, error_message)
SELECT %(id)s, %(agent_id)s, %(attempt)s, q.started_at, {NOW}, 'failed', %(error)s
FROM tasks.queue q WHERE q.task_id = %(id)s
"""
MOVE: Final = f"""
UPDATE tasks.queue q SET status = %(to)s::task_status_type, lease_expires_at = NULL,
  completed_at = CASE WHEN %(finished)s THEN {NOW} ELSE q.completed_at END, updated_at = {NOW}
WHERE q.task_id = %(id)s
RETURNING {TASK_COLUMNS}
"""
REACHABLE_EDGES: Final = """
WITH RECURSIVE up(id) AS (
  SELECT %s::uuid
  UNION SELECT d.depends_on_task_id FROM tasks.dependencies d JOIN up ON d.task_id = up.id)
SELECT d.task_id, d.depends_on_task_id FROM tasks.dependencies d JOIN up ON d.task_id = up.id
"""
SELECT_TASK: Final = f"SELECT {TASK_COLUMNS} FROM tasks.queue q WHERE q.task_id = %s"
DELETE_FINISHED: Final = """
DELETE FROM tasks.queue q
WHERE q.status::text = ANY(%s) AND q.completed_at < %s
  AND NOT EXISTS (
    SELECT 1 FROM tasks.dependencies d JOIN tasks.queue w ON w.task_id = d.task_id
    WHERE d.depends_on_task_id = q.task_id
      AND w.status NOT IN ('completed', 'failed', 'cancelled'))
  AND NOT EXISTS (SELECT 1 FROM tasks.queue ch WHERE ch.parent_task_id = q.task_id)
"""


def _task(row: Sequence[Any]) -> Task:
    return Task(
        task_id=row[0],
        task_type=row[1],
        payload=row[2],
        status=TaskStatus(row[3]),
        priority=Priority(PRIORITY_LABELS.index(row[4])),
        created_at=row[5],
        scheduled_at=row[6],
        expires_at=row[7],
        max_retries=row[8],
        max_execution_time=row[9],
        retry_count=row[10],
        attempts=row[11],
        parent=row[12],
        depends_on=tuple(row[13]),
        unique_key=row[14],
        assigned_agent=row[15],
        claimed_by=row[16],
        lease_expires_at=row[17],
        started_at=row[18],
        completed_at=row[19],
        result=row[20],
        last_error=row[21],
        seq=row[22],
    )


class PostgresTaskQueue(PgStore, TaskQueueBase):
    """``TaskQueue`` on PostgreSQL (migrations 0004, 0017, 0020 to 0023). ``pool``: a
    ``psycopg_pool.ConnectionPool`` or a DSN (the queue then opens a small pool of its own).

    ``clock``: Unix seconds for every time the queue compares (default: the server's clock).
    ``poll``: how often a waiting ``claim`` looks again without a notification.
    ``rescue_interval``: how often (queue clock seconds) a claim first rescues expired leases.
    ``deadline``: seconds a call may wait for the server (``None``: no limit).
    """

    def __init__(
        self,
        pool: ConnectionPool[Any] | str,
        *,
        clock: Callable[[], float] | None = None,
        codec: Codec | None = None,
        poll: float = 0.5,
        rescue_interval: float = 1.0,
        deadline: float | None = 15.0,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        TaskQueueBase.__init__(self, codec=codec, poll=poll, rescue_interval=rescue_interval)
        # Autocommit connections: claims and settlements are single statements; the
        # multi-statement calls open their own transaction (conn.transaction()).
        self._adopt(
            pool,
            name="msstore-tasks",
            connect_timeout=connect_timeout,
            deadline=deadline,
            autocommit=True,
        )
        self._clock = clock
        self._registrar = AgentRegistrar()
        self._waker: Listener | None = None
        self._waker_lock = threading.Lock()

    def _agents(self, tokens: Iterable[str | None]) -> None:
        """Register the agents a write is about to reference (committed before it)."""
        self._registrar.ensure(lambda fn: self._run_statement("register agents", fn), tokens)

    # Enqueue ---------------------------------------------------------------------------------

    def enqueue_many(
        self, specs: Iterable[TaskSpec], *, conn: Conn | None = None
    ) -> list[uuid.UUID]:
        """Add every task of ``specs`` atomically, in order; return their ids. ``conn``:
        write on that connection, inside its transaction (the tasks exist exactly when the
        caller's other writes commit)."""
        return self._enqueue(specs, functools.partial(self._insert, conn=conn))

    def enqueue_batch(
        self,
        task_type: str,
        payloads: Iterable[Any],
        *,
        priority: Priority | int = Priority.NORMAL,
        scheduled_at: float | None = None,
        expires_at: float | None = None,
        max_retries: int = 3,
        max_execution_time: float = 3600.0,
        parent: uuid.UUID | None = None,
        assigned_agent: str | None = None,
        conn: Conn | None = None,
    ) -> list[uuid.UUID]:
        """Add one task of ``task_type`` per payload, all with the same options, atomically
        and in order; return their ids (see :meth:`msstore.work.TaskQueue.enqueue_batch`).
        ``conn``: write on that connection, inside its transaction."""
        template = TaskSpec(
            task_type,
            None,
            priority,  # type: ignore[arg-type]  # checked by check_batch
            scheduled_at,
            expires_at,
            max_retries,
            max_execution_time,
            parent,
            (),
            None,
            assigned_agent,
        )
        return self._enqueue_batch(template, payloads, functools.partial(self._insert, conn=conn))

    def _insert(
        self, tasks: Sequence[NewTask], now: float, *, conn: Conn | None = None
    ) -> list[uuid.UUID]:
        specs = [t.spec for t in tasks]
        # (The tasks of enqueue_batch share one spec: its columns are read once.)
        shared = all(spec is specs[0] for spec in specs)
        distinct = specs[:1] if shared else specs
        columns: dict[str, list[Any]] = {
            "types": [s.task_type for s in distinct],
            "priorities": [PRIORITY_LABELS[s.priority] for s in distinct],
            "scheduled": [timestamp(s.scheduled_at) for s in distinct],
            "expires": [timestamp(s.expires_at) for s in distinct],
            "retries": [s.max_retries for s in distinct],
            "exec_s": [s.max_execution_time for s in distinct],
            "parents": [s.parent for s in distinct],
            "ukeys": [s.unique_key for s in distinct],
            "agents": [s.assigned_agent for s in distinct],
            "agent_ids": [
                None if s.assigned_agent is None else agent_of_token(s.assigned_agent)
                for s in distinct
            ],
        }
        scalars = frozenset(
            name for name, values in columns.items() if values.count(values[0]) == len(values)
        )
        params: dict[str, Any] = {
            name: values[0] if name in scalars else values for name, values in columns.items()
        }
        params["ids"] = [t.task_id for t in tasks]
        params["payloads"] = [jsonb_text(t.payload, self._codec) for t in tasks]
        params["now"] = self._now_param()
        self._agents(s.assigned_agent for s in distinct)
        # Tasks without links or unique keys (the bulk of most queues) go in one statement
        # that commits on its own; the others need the checks and writes around it.
        alone = conn is None and not any(
            s.depends_on or s.parent is not None or s.unique_key is not None for s in distinct
        )
        statement = insert_statement(scalars, wake=alone)

        def insert(c: Conn) -> set[uuid.UUID]:
            try:
                rows = c.execute(statement, params).fetchall()
                if alone:
                    if rows[0][0] != len(tasks):  # (cannot happen: nothing to conflict on)
                        raise AssertionError(f"enqueued {rows[0][0]} of {len(tasks)} tasks")
                    return set()
                return {r[0] for r in rows}
            except psycopg.errors.UniqueViolation as err:
                if err.diag.constraint_name == "queue_pkey":  # (the transaction is aborted)
                    found = _TAKEN.search(err.diag.message_detail or "")
                    raise task_id_taken(
                        uuid.UUID(found[1]) if found else tasks[0].task_id
                    ) from None
                raise

        if alone:
            self._run_statement("enqueue", insert)
            return [t.task_id for t in tasks]

        def write(c: Conn) -> list[uuid.UUID]:
            self._check_references(c, tasks)
            inserted = insert(c)
            held: dict[str, uuid.UUID] = {}
            clashes = [
                s.unique_key
                for t, s in zip(tasks, specs, strict=True)
                if t.task_id not in inserted and s.unique_key
            ]
            if clashes:
                held = dict(
                    c.execute(
                        "SELECT unique_key, task_id FROM tasks.queue WHERE unique_key = ANY(%s)"
                        " AND status NOT IN ('completed', 'failed', 'cancelled')",
                        [clashes],
                    ).fetchall()
                )
            deps = [
                (t.task_id, d) for t in tasks if t.task_id in inserted for d in t.spec.depends_on
            ]
            if deps:
                c.execute(INSERT_DEPENDENCIES, [[t for t, _ in deps], [d for _, d in deps]])
            c.execute("SELECT pg_notify(%s, %s)", [CHANNEL, "enqueued"])
            return [
                t.task_id if t.task_id in inserted else held[t.spec.unique_key or ""] for t in tasks
            ]

        if conn is not None:
            try:
                with conn.transaction():  # a savepoint inside the caller's transaction
                    return write(conn)
            except psycopg.Error as err:
                raise classify(err, what="enqueue", ours=True) from err
        result: list[uuid.UUID] = self._run_transaction("enqueue", write)
        return result

    @staticmethod
    def _check_references(c: Conn, tasks: Sequence[NewTask]) -> None:
        batch = {t.task_id for t in tasks}
        named = {(d, "depends_on") for t in tasks for d in t.spec.depends_on if d not in batch}
        named |= {
            (t.spec.parent, "parent")
            for t in tasks
            if t.spec.parent is not None and t.spec.parent not in batch
        }
        if not named:
            return
        found = {
            r[0]
            for r in c.execute(
                "SELECT task_id FROM tasks.queue WHERE task_id = ANY(%s)",
                [[task_id for task_id, _ in named]],
            ).fetchall()
        }
        missing = sorted((t, f) for t, f in named if t not in found)
        if missing:
            task_id, field = missing[0]
            raise no_task(task_id, field=field)

    def _link(self, task_id: uuid.UUID, depends_on: uuid.UUID, check: LinkCheck) -> None:
        def add(c: Conn) -> None:
            c.execute("LOCK TABLE tasks.dependencies IN SHARE ROW EXCLUSIVE MODE")
            row = c.execute(
                "SELECT status::text FROM tasks.queue WHERE task_id = %s FOR UPDATE", [task_id]
            ).fetchone()
            exists = (
                c.execute("SELECT 1 FROM tasks.queue WHERE task_id = %s", [depends_on]).fetchone()
                is not None
            )
            graph: dict[uuid.UUID, list[uuid.UUID]] = {}
            for source, target in c.execute(REACHABLE_EDGES, [depends_on]).fetchall():
                graph.setdefault(source, []).append(target)
            check(None if row is None else TaskStatus(row[0]), exists, graph)
            c.execute(
                "INSERT INTO tasks.dependencies (task_id, depends_on_task_id) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                [task_id, depends_on],
            )

        self._run_transaction("add dependency", add)

    # Claims and settlements ------------------------------------------------------------------

    def _take(
        self, agent: str, types: frozenset[str] | None, limit: int, lease: float | None, now: float
    ) -> list[Task]:
        self._agents([agent])  # (a statement only the first time an agent claims)
        params = {
            "now": self._now_param(),
            "types": None if types is None else sorted(types),
            "agent": agent,
            "limit": limit,
            "lease": lease,
        }

        def take(c: Conn) -> list[Task]:
            return [_task(r) for r in c.execute(TAKE, params).fetchall()]

        result: list[Task] = self._run_statement("claim", take)
        return result

    def _lapsed(self, now: float) -> list[Task]:
        params = {"now": self._now_param()}
        result: list[Task] = self._run_statement(
            "find expired leases",
            lambda c: [_task(r) for r in c.execute(LAPSED, params).fetchall()],
            write=False,
        )
        return result

    def _settle(self, settlements: Sequence[Settlement]) -> list[float | None]:
        completes = all(s.status is TaskStatus.COMPLETED and not s.lapsed for s in settlements)
        if len(settlements) == 1:  # (every complete and fail: no arrays to build)
            statement = COMPLETE_ONE_STATEMENT if completes else SETTLE_ONE_STATEMENT
            params = _settlement_params(settlements[0], self._codec)
        else:
            statement = COMPLETE_MANY_STATEMENT if completes else SETTLE_MANY_STATEMENT
            params = _settlement_columns(settlements, self._codec)
        params["now"] = self._now_param()

        def settle(c: Conn) -> dict[tuple[uuid.UUID, int], float]:
            return {(r[0], r[1]): r[2] for r in c.execute(statement, params).fetchall()}

        # (A batch may hold a task's stale claim beside its current one: keyed by attempt.)
        done: dict[tuple[uuid.UUID, int], float] = self._run_statement("settle tasks", settle)
        return [done.get((s.claim.task_id, s.claim.attempt)) for s in settlements]

    def _renew(self, claim: Claim, seconds: float) -> float | None:
        params = {
            "now": self._now_param(),
            "id": claim.task_id,
            "attempt": claim.attempt,
            "agent": claim.agent_id,
            "seconds": seconds,
        }

        def renew(c: Conn) -> float | None:
            row = c.execute(RENEW, params).fetchone()
            return None if row is None else float(row[0])

        result: float | None = self._run_statement("heartbeat", renew)
        return result

    def _change(self, task_id: uuid.UUID, decide: Callable[[Task], Move]) -> Task:
        def change(c: Conn) -> Task:
            row = c.execute(SELECT_TASK + " FOR UPDATE OF q", [task_id]).fetchone()
            if row is None:
                raise no_task(task_id)
            task = _task(row)
            move = decide(task)
            params = {"now": self._now_param(), "id": task_id}
            if move.ends_run:
                c.execute(
                    END_RUN,
                    {
                        **params,
                        "attempt": task.attempts,
                        "agent_id": agent_of_token(task.claimed_by or ""),
                        "error": RUN_CANCELLED,
                    },
                )
            changed = c.execute(
                MOVE, {**params, "to": move.to.value, "finished": move.finished}
            ).fetchone()
            assert changed is not None
            if move.wakes:
                c.execute("SELECT pg_notify(%s, %s)", [CHANNEL, move.verb])
            return _task(changed)

        result: Task = self._run_transaction("change task", change)
        return result

    def _delete_finished(self, statuses: frozenset[TaskStatus], before: float) -> int:
        params = [[s.value for s in statuses], timestamp(before)]
        result: int = self._run_transaction(
            "purge tasks", lambda c: c.execute(DELETE_FINISHED, params).rowcount
        )
        return result

    # Reads -----------------------------------------------------------------------------------

    def _get(self, task_id: uuid.UUID) -> Task | None:
        def read(c: Conn) -> Task | None:
            row = c.execute(SELECT_TASK, [task_id]).fetchone()
            return None if row is None else _task(row)

        result: Task | None = self._run_statement("get task", read, write=False)
        return result

    def _executions(self, task_id: uuid.UUID) -> builtins.list[Execution] | None:
        def read(c: Conn) -> builtins.list[Execution] | None:
            task = c.execute(
                "SELECT status::text, attempts, claimed_by, "
                "extract(epoch FROM started_at)::float8 FROM tasks.queue WHERE task_id = %s",
                [task_id],
            ).fetchone()
            if task is None:
                return None
            rows = c.execute(
                "SELECT e.execution_attempt, r.agent_name, e.status::text, "
                "extract(epoch FROM e.started_at)::float8, "
                "extract(epoch FROM e.completed_at)::float8, e.result, e.error_message "
                "FROM tasks.executions e JOIN agents.registry r ON r.agent_id = e.agent_id "
                "WHERE e.task_id = %s ORDER BY e.execution_attempt",
                [task_id],
            ).fetchall()
            runs = [
                Execution(task_id, a, agent, TaskStatus(s), start, end, res, err)
                for a, agent, s, start, end, res, err in rows
            ]
            status, attempts, claimed_by, started_at = task
            if status == TaskStatus.RUNNING.value:  # the attempt under way has no row yet
                runs.append(
                    Execution(task_id, attempts, claimed_by, TaskStatus.RUNNING, started_at)
                )
            return runs

        result: builtins.list[Execution] | None = self._run_transaction(
            "task executions", read, write=False
        )
        return result

    def _counts(self) -> tuple[Mapping[TaskStatus, int], float | None, float]:
        params = {"now": self._now_param()}

        def read(c: Conn) -> tuple[dict[TaskStatus, int], float | None, float]:
            counts = {
                TaskStatus(status): n
                for status, n in c.execute(
                    "SELECT status::text, count(*) FROM tasks.queue GROUP BY status"
                ).fetchall()
            }
            row = c.execute(
                f"SELECT extract(epoch FROM min(created_at))::float8, "
                f"extract(epoch FROM {NOW})::float8 FROM tasks.queue WHERE status = 'pending'",
                params,
            ).fetchone()
            assert row is not None
            return counts, row[0], row[1]

        result: tuple[dict[TaskStatus, int], float | None, float] = self._run_transaction(
            "queue stats", read, write=False
        )
        return result

    def _select(
        self, status: TaskStatus | None, task_type: str | None, agent: str | None, limit: int
    ) -> builtins.list[Task]:
        params = {
            "status": None if status is None else status.value,
            "type": task_type,
            "agent": agent,
            "limit": limit,
        }

        def read(c: Conn) -> builtins.list[Task]:
            rows = c.execute(
                f"SELECT {TASK_COLUMNS} FROM tasks.queue q "
                "WHERE (%(status)s::text IS NULL OR q.status::text = %(status)s) "
                "AND (%(type)s::text IS NULL OR q.task_type = %(type)s) "
                "AND (%(agent)s::text IS NULL OR %(agent)s IN (q.assigned_agent, q.claimed_by)) "
                "ORDER BY q.enqueue_seq LIMIT %(limit)s",
                params,
            ).fetchall()
            return [_task(r) for r in rows]

        result: builtins.list[Task] = self._run_statement("list tasks", read, write=False)
        return result

    # Waiting and closing ---------------------------------------------------------------------

    def _get_waker(self) -> Listener:
        with self._waker_lock:
            if self._waker is None:
                self._waker = Listener(self._pool, CHANNEL, name="msstore-task-waker")
            return self._waker

    @property
    def listening(self) -> bool:
        """Whether the queue's wake-up connection (``LISTEN msstore_tasks``) is up: started by
        the first ``claim(wait=...)``; while it is down, waiting claims look every ``poll``."""
        waker = self._waker
        return waker is not None and waker.listening.is_set()

    def _wake_mark(self) -> object:
        return self._get_waker().generation

    def _wait_for_work(self, mark: object, timeout: float) -> bool:
        assert isinstance(mark, int)
        return self._get_waker().wait(mark, timeout)

    def _release(self) -> None:
        with self._waker_lock:
            if self._waker is not None:
                self._waker.close()
        super()._release()


def _settlement_params(s: Settlement, codec: Codec) -> dict[str, Any]:
    """One settlement as the SETTLE statement's parameters."""
    return {
        "id": s.claim.task_id,
        "attempt": s.claim.attempt,
        "agent": s.claim.agent_id,
        "agent_id": agent_of_token(s.claim.agent_id),
        "status": s.status.value,
        "run": s.run_status.value,
        "result": None if s.result is None else jsonb_text(s.result, codec),
        "error": s.error,
        "retry_in": s.retry_in,
        "retried": s.retried,
        "finished": s.finished,
        "lapsed": s.lapsed,
    }


def _settlement_columns(settlements: Sequence[Settlement], codec: Codec) -> dict[str, Any]:
    """Settlements as the SETTLE statement's arrays (one value per settlement, per name)."""
    rows = [_settlement_params(s, codec) for s in settlements]
    return {name: [row[name] for row in rows] for name in rows[0]}
