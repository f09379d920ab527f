"""``TaskQueue`` on tasks.queue, tasks.dependencies and tasks.executions (0004, 0017).

* **Claims** are one statement: a CTE picks claimable tasks in claim order ``FOR UPDATE SKIP
  LOCKED`` (no two workers ever hold one task; a worker never waits on another's lock), marks
  them running under a lease and inserts each attempt's ``tasks.executions`` row.
* **Expired leases** are rescued by one ``UPDATE`` before a claim, at most every
  ``rescue_interval`` seconds of the queue's clock: a task with retries left is pending again
  (its open execution failed with "lease expired"), one without is failed (a dead letter).
* **Wake-ups**: an enqueue sends ``NOTIFY msstore_tasks`` with its commit; workers blocked in
  ``claim(wait=...)`` share one ``LISTEN`` connection per queue and try again when a
  notification comes, or every ``poll`` seconds (what a lost notification leaves).
* **Time** is the queue's ``clock`` when one is given (tests drive it), else the server's
  ``clock_timestamp()``: every comparison of leases, schedules and expiries uses one of them.
* ``enqueue(..., conn=c)`` writes on the caller's connection inside its transaction (see
  :func:`~msstore.backends.postgres.transaction`): the task exists exactly when the caller's
  other writes commit.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import attrs
import psycopg
from psycopg_pool import ConnectionPool

from msstore.codec import Codec, default_codec
from msstore.errors import (
    DependencyCycle,
    InvalidArgument,
    NotFound,
    StaleClaim,
    TaskStateError,
)
from msstore.registry import redact_url
from msstore.repositories._tasks import (
    Claim,
    Execution,
    Priority,
    QueueStats,
    Task,
    TaskSpec,
    TaskStatus,
    backoff,
    check_agent,
    check_limit,
    check_seconds,
    check_specs,
    check_status,
    check_task_id,
    check_time,
    check_types,
)
from msstore.spi import StoreBase

from ._agents import AgentRegistrar, agent_of_token
from ._base import NOW, Conn, PgStore, timestamp
from ._config import DEFAULT_CONNECT_TIMEOUT
from ._jsonb import jsonb_text
from ._listen import Listener
from ._tx import classify

__all__ = ["CHANNEL", "PostgresTaskQueue"]

log = logging.getLogger("msstore.postgres")

CHANNEL: Final = "msstore_tasks"
PRIORITY_LABELS: Final = ("low", "normal", "high", "urgent", "critical")

TASK_COLUMNS: Final = """
  q.task_id, q.task_type, q.payload, q.status::text, q.priority::text,
  extract(epoch FROM q.created_at)::float8, extract(epoch FROM q.scheduled_at)::float8,
  extract(epoch FROM q.expires_at)::float8, q.max_retries,
  extract(epoch FROM q.max_execution_time)::float8, q.retry_count, q.attempts, q.parent_task_id,
  ARRAY(SELECT d.depends_on_task_id FROM tasks.dependencies d WHERE d.task_id = q.task_id
        ORDER BY d.created_at, d.depends_on_task_id),
  q.unique_key, q.assigned_agent, q.claimed_by, extract(epoch FROM q.lease_expires_at)::float8,
  extract(epoch FROM q.started_at)::float8, extract(epoch FROM q.completed_at)::float8,
  q.result, q.last_error
"""
INSERT_TASKS: Final = f"""
WITH now AS (SELECT {NOW} AS t)
INSERT INTO tasks.queue AS q (task_id, task_type, payload, priority, scheduled_at, expires_at,
  max_retries, max_execution_time, parent_task_id, unique_key, assigned_agent,
  assigned_agent_id, created_at, updated_at, status)
SELECT a.id, a.type, a.payload::jsonb, a.priority::task_priority_type, a.scheduled,
  a.expires, a.retries, a.exec_s * interval '1 second', a.parent, a.ukey, a.agent, a.agent_id,
  now.t, now.t, 'pending'
FROM now, unnest(%(ids)s::uuid[], %(types)s::text[], %(payloads)s::text[],
  %(priorities)s::text[], %(scheduled)s::timestamptz[], %(expires)s::timestamptz[],
  %(retries)s::int[], %(exec_s)s::float8[], %(parents)s::uuid[], %(ukeys)s::text[],
  %(agents)s::text[], %(agent_ids)s::uuid[])
  AS a(id, type, payload, priority, scheduled, expires, retries, exec_s, parent, ukey, agent,
       agent_id)
ON CONFLICT (unique_key)
  WHERE unique_key IS NOT NULL AND status NOT IN ('completed', 'failed', 'cancelled')
  DO NOTHING
RETURNING q.task_id
"""
INSERT_DEPENDENCIES: Final = """
INSERT INTO tasks.dependencies (task_id, depends_on_task_id)
SELECT t, d FROM unnest(%b::uuid[], %b::uuid[]) AS x(t, d)
"""
RESCUE: Final = f"""
WITH now AS (SELECT {NOW} AS t),
expired AS (
  UPDATE tasks.queue q SET
    status = CASE WHEN q.retry_count < q.max_retries THEN 'pending'::task_status_type
                  ELSE 'failed'::task_status_type END,
    retry_count = LEAST(q.retry_count + 1, q.max_retries),
    completed_at = CASE WHEN q.retry_count < q.max_retries THEN NULL ELSE now.t END,
    claimed_by = NULL, lease_expires_at = NULL, last_error = 'lease expired', updated_at = now.t
  FROM now
  WHERE q.status = 'running' AND q.lease_expires_at <= now.t
  RETURNING q.task_id
)
UPDATE tasks.executions e SET status = 'failed', completed_at = now.t,
  error_message = 'lease expired'
FROM expired, now
WHERE e.task_id = expired.task_id AND e.status = 'running'
"""
CLAIM: Final = f"""
WITH now AS (SELECT {NOW} AS t),
picked AS (
  SELECT q.task_id FROM tasks.queue q, now
  WHERE q.status = 'pending'
    AND (q.scheduled_at IS NULL OR q.scheduled_at <= now.t)
    AND (q.expires_at IS NULL OR q.expires_at > now.t)
    AND (%(types)s::text[] IS NULL OR q.task_type = ANY(%(types)s::text[]))
    AND (q.assigned_agent IS NULL OR q.assigned_agent = %(agent)s)
    AND NOT EXISTS (
      SELECT 1 FROM tasks.dependencies d JOIN tasks.queue p ON p.task_id = d.depends_on_task_id
      WHERE d.task_id = q.task_id AND p.status <> 'completed')
  ORDER BY q.priority DESC, COALESCE(q.scheduled_at, q.created_at), q.created_at, q.task_id
  LIMIT %(limit)s
  FOR UPDATE OF q SKIP LOCKED
),
claimed AS (
  UPDATE tasks.queue q SET status = 'running', attempts = q.attempts + 1,
    claimed_by = %(agent)s, started_at = now.t, updated_at = now.t,
    lease_expires_at = now.t + COALESCE(%(lease)s::float8 * interval '1 second',
                                        q.max_execution_time)
  FROM picked, now WHERE q.task_id = picked.task_id
  RETURNING q.*
),
runs AS (
  INSERT INTO tasks.executions (task_id, agent_id, execution_attempt, started_at, status)
  SELECT c.task_id, %(agent_id)s, c.attempts, now.t, 'running' FROM claimed c, now
)
SELECT {TASK_COLUMNS}
FROM claimed q
"""
COMPLETE: Final = f"""
WITH now AS (SELECT {NOW} AS t),
done AS (
  UPDATE tasks.queue q SET status = 'completed', completed_at = now.t, updated_at = now.t,
    result = %(result)s::jsonb, lease_expires_at = NULL
  FROM now
  WHERE q.task_id = %(task_id)s AND q.status = 'running' AND q.attempts = %(attempt)s
    AND q.claimed_by = %(agent)s AND q.lease_expires_at > now.t
  RETURNING q.task_id, q.attempts, q.completed_at
),
run AS (
  UPDATE tasks.executions e SET status = 'completed', completed_at = now.t,
    result = %(result)s::jsonb
  FROM done, now
  WHERE e.task_id = done.task_id AND e.execution_attempt = done.attempts AND e.status = 'running'
)
SELECT extract(epoch FROM q.completed_at)::float8,
  (SELECT count(pg_notify('{CHANNEL}', 'completed')) FROM tasks.dependencies d
   WHERE d.depends_on_task_id = q.task_id)
FROM done q
"""
SELECT_TASK: Final = f"SELECT {TASK_COLUMNS} FROM tasks.queue q WHERE q.task_id = %s"
CURRENT: Final = f"""
SELECT q.status::text, q.attempts, q.claimed_by, q.lease_expires_at > {NOW}
FROM tasks.queue q WHERE q.task_id = %(task_id)s
FOR UPDATE
"""
END_RUN: Final = f"""
UPDATE tasks.executions SET status = %(status)s::task_status_type, completed_at = {NOW},
  result = %(result)s::jsonb, error_message = %(error)s
WHERE task_id = %(task_id)s AND execution_attempt = %(attempt)s AND status = 'running'
"""


_TASK_FIELDS: Final = tuple(a.name for a in attrs.fields(Task))


def _completed(task: Task, at: float, result: Any) -> Task:
    """``task`` completed at ``at`` with ``result`` (``attrs.evolve``, without its per-call
    field introspection: this is on every completion's path)."""
    values = {name: getattr(task, name) for name in _TASK_FIELDS}
    values.update(status=TaskStatus.COMPLETED, completed_at=at, result=result)
    values["lease_expires_at"] = None
    return Task(**values)


def _claim_order(task: Task) -> tuple[int, float, float, str]:
    when = task.scheduled_at if task.scheduled_at is not None else task.created_at
    return (-task.priority, when, task.created_at, str(task.task_id))


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
    )


class PostgresTaskQueue(PgStore, StoreBase):
    """``TaskQueue`` on PostgreSQL (migrations 0004 and 0017). ``pool``: a
    ``psycopg_pool.ConnectionPool`` or a DSN (the queue then opens a small pool of its own).

    ``clock``: Unix seconds for every time the queue compares (default: the server's clock).
    ``poll``: how often a waiting ``claim`` looks again without a notification.
    ``rescue_interval``: how often (queue clock seconds) a claim first rescues expired leases.
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
        self._poll = check_seconds(poll, field="poll")
        self._rescue_interval = check_seconds(rescue_interval, field="rescue_interval")
        if deadline is not None:
            check_seconds(deadline, field="deadline")
        # Autocommit connections: claims and completions are single statements; the
        # multi-statement calls open their own transaction (conn.transaction()).
        self._adopt(
            pool,
            name="msstore-tasks",
            connect_timeout=connect_timeout,
            deadline=deadline,
            autocommit=True,
        )
        self._clock = clock
        self._codec = codec or default_codec
        self._registrar = AgentRegistrar()
        self._last_rescue: float | None = None
        self._rescue_lock = threading.Lock()
        self._waker: Listener | None = None
        self._waker_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresTaskQueue({redact_url(self._dsn)})"

    def _agents(self, tokens: Iterable[str | None]) -> None:
        """Register the agents a write is about to reference (committed before it)."""
        self._registrar.ensure(lambda fn: self._run_statement("register agents", fn), tokens)

    # Enqueue ---------------------------------------------------------------------------------

    def enqueue(
        self,
        task_type: str,
        payload: Any = None,
        *,
        priority: Priority | int = Priority.NORMAL,
        scheduled_at: float | None = None,
        expires_at: float | None = None,
        max_retries: int = 3,
        max_execution_time: float = 3600.0,
        parent: uuid.UUID | None = None,
        depends_on: Sequence[uuid.UUID] = (),
        unique_key: str | None = None,
        assigned_agent: str | None = None,
        task_id: uuid.UUID | None = None,
        conn: Conn | None = None,
    ) -> uuid.UUID:
        """:meth:`TaskQueue.enqueue`; ``conn``: write on that connection, in its transaction."""
        spec = TaskSpec(
            task_type,
            {} if payload is None else payload,
            priority,  # type: ignore[arg-type]  # checked by check_spec
            scheduled_at,
            expires_at,
            max_retries,
            max_execution_time,
            parent,
            tuple(depends_on),
            unique_key,
            assigned_agent,
            task_id,
        )
        return self.enqueue_many([spec], conn=conn)[0]

    def enqueue_many(
        self, specs: Iterable[TaskSpec], *, conn: Conn | None = None
    ) -> list[uuid.UUID]:
        """:meth:`TaskQueue.enqueue_many`; ``conn`` as for :meth:`enqueue`."""
        self._check_open()
        checked = check_specs(specs, now=self._now_seconds(), codec=self._codec)
        if not checked:
            return []
        # One task per unique key in the batch: later ones resolve to the first.
        first: dict[str, uuid.UUID] = {}
        rows = []
        for spec in checked:
            assert spec.task_id is not None
            if spec.unique_key is not None and spec.unique_key in first:
                continue
            if spec.unique_key is not None:
                first[spec.unique_key] = spec.task_id
            rows.append(spec)
        params = {
            "now": self._now(),
            "ids": [s.task_id for s in rows],
            "types": [s.task_type for s in rows],
            "payloads": [jsonb_text(s.payload, self._codec) for s in rows],
            "priorities": [PRIORITY_LABELS[s.priority] for s in rows],
            "scheduled": [timestamp(s.scheduled_at) for s in rows],
            "expires": [timestamp(s.expires_at) for s in rows],
            "retries": [s.max_retries for s in rows],
            "exec_s": [s.max_execution_time for s in rows],
            "parents": [s.parent for s in rows],
            "ukeys": [s.unique_key for s in rows],
            "agents": [s.assigned_agent for s in rows],
            "agent_ids": [
                None if s.assigned_agent is None else agent_of_token(s.assigned_agent) for s in rows
            ],
        }
        batch_ids = {s.task_id for s in checked}
        self._agents(s.assigned_agent for s in rows)

        def write(c: Conn) -> list[uuid.UUID]:
            self._check_references(c, checked, batch_ids)
            inserted = {r[0] for r in c.execute(INSERT_TASKS, params).fetchall()}
            held: dict[str, uuid.UUID] = {}
            clashes = [s.unique_key for s in rows if s.task_id not in inserted and s.unique_key]
            if clashes:
                held = dict(
                    c.execute(
                        "SELECT unique_key, task_id FROM tasks.queue WHERE unique_key = ANY(%s)"
                        " AND status NOT IN ('completed', 'failed', 'cancelled')",
                        [clashes],
                    ).fetchall()
                )
            deps = [(s.task_id, d) for s in rows if s.task_id in inserted for d in s.depends_on]
            if deps:
                c.execute(INSERT_DEPENDENCIES, [[t for t, _ in deps], [d for _, d in deps]])
            c.execute("SELECT pg_notify(%s, %s)", [CHANNEL, "enqueued"])
            out = []
            for spec in checked:
                assert spec.task_id is not None
                if spec.task_id in inserted:
                    out.append(spec.task_id)
                elif spec.unique_key is not None:
                    out.append(held.get(spec.unique_key) or first[spec.unique_key])
            return out

        if conn is not None:
            try:
                with conn.transaction():  # a savepoint inside the caller's transaction
                    return write(conn)
            except psycopg.Error as err:
                raise classify(err, what="enqueue") from err
        result: list[uuid.UUID] = self._run_transaction("enqueue", write)
        return result

    def _check_references(self, c: Conn, specs: list[TaskSpec], batch: set[Any]) -> None:
        outside = {d for s in specs for d in s.depends_on if d not in batch}
        outside |= {s.parent for s in specs if s.parent is not None and s.parent not in batch}
        if not outside:
            return
        found = {
            r[0]
            for r in c.execute(
                "SELECT task_id FROM tasks.queue WHERE task_id = ANY(%s)", [list(outside)]
            ).fetchall()
        }
        missing = sorted(outside - found, key=str)
        if missing:
            raise NotFound(f"depends_on/parent: no task {missing[0]}", task_id=str(missing[0]))

    def add_dependency(self, task_id: uuid.UUID, depends_on: uuid.UUID) -> None:
        """Make pending ``task_id`` wait for ``depends_on`` too (``DependencyCycle`` if that
        closes a cycle, checked with the graph locked)."""
        check_task_id(task_id)
        check_task_id(depends_on, field="depends_on")

        def add(c: Conn) -> None:
            c.execute("LOCK TABLE tasks.dependencies IN SHARE ROW EXCLUSIVE MODE")
            row = c.execute(
                "SELECT status::text FROM tasks.queue WHERE task_id = %s FOR UPDATE", [task_id]
            ).fetchone()
            if row is None:
                raise NotFound(f"no task {task_id}", task_id=str(task_id))
            if (
                c.execute("SELECT 1 FROM tasks.queue WHERE task_id = %s", [depends_on]).fetchone()
                is None
            ):
                raise NotFound(f"depends_on: no task {depends_on}", task_id=str(depends_on))
            if row[0] not in ("pending", "paused"):
                raise TaskStateError(
                    f"task {task_id} is {row[0]}; only a pending or paused task can gain a "
                    "dependency",
                    task_id=str(task_id),
                    status=row[0],
                )
            reaches = c.execute(
                """
                WITH RECURSIVE up(id) AS (
                  SELECT %s::uuid
                  UNION SELECT d.depends_on_task_id FROM tasks.dependencies d JOIN up
                    ON d.task_id = up.id)
                SELECT 1 FROM up WHERE id = %s LIMIT 1
                """,
                [depends_on, task_id],
            ).fetchone()
            if reaches is not None or task_id == depends_on:
                raise DependencyCycle(
                    f"task {task_id} depending on {depends_on} would form a cycle",
                    cycle=[str(task_id), str(depends_on), str(task_id)],
                )
            c.execute(
                "INSERT INTO tasks.dependencies (task_id, depends_on_task_id) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                [task_id, depends_on],
            )

        self._run_transaction("add dependency", add)

    # Claims ----------------------------------------------------------------------------------

    def _rescue(self) -> None:
        now = self._now_seconds()
        with self._rescue_lock:
            if self._last_rescue is not None and now - self._last_rescue < self._rescue_interval:
                return
            self._last_rescue = now
        params = {"now": self._now()}

        def rescue(c: Conn) -> None:
            c.execute(RESCUE, params)

        self._run_statement("rescue expired leases", rescue)

    def _take(
        self, agent: str, types: set[str] | None, limit: int, lease: float | None
    ) -> list[Claim]:
        self._rescue()
        self._agents([agent])  # (a statement only the first time an agent claims)
        params = {
            "now": self._now(),
            "types": None if types is None else sorted(types),
            "agent": agent,
            "agent_id": agent_of_token(agent),
            "limit": limit,
            "lease": lease,
        }

        def claim(c: Conn) -> list[Task]:
            return [_task(r) for r in c.execute(CLAIM, params).fetchall()]

        tasks: list[Task] = self._run_statement("claim", claim)
        tasks.sort(key=_claim_order)  # (the statement's rows come in no particular order)
        return [Claim(t, agent, t.attempts, t.lease_expires_at or 0.0) for t in tasks]

    def claim(
        self,
        agent_id: str,
        *,
        types: Sequence[str] | None = None,
        limit: int = 1,
        lease: float | None = None,
        wait: float | None = None,
    ) -> list[Claim]:
        agent = check_agent(agent_id)
        wanted = check_types(types)
        limit = check_limit(limit)
        seconds = None if lease is None else check_seconds(lease, field="lease")
        until = None if wait is None else time.monotonic() + check_seconds(wait, field="wait")
        self._check_open()
        waker = None if until is None else self._get_waker()
        while True:
            seen = waker.generation if waker is not None else 0
            claims = self._take(agent, wanted, limit, seconds)
            if claims or until is None or waker is None:
                return claims
            left = until - time.monotonic()
            if left <= 0:
                return []
            waker.wait(seen, min(left, self._poll))
            self._check_open()

    def _get_waker(self) -> Listener:
        with self._waker_lock:
            if self._waker is None:
                self._waker = Listener(self._pool, CHANNEL, name="msstore-task-waker")
            return self._waker

    def _settle(
        self,
        claim: Claim,
        what: str,
        change: Callable[[Conn, dict[str, Any]], Task],
    ) -> Task:
        if not isinstance(claim, Claim):
            raise InvalidArgument(f"expected a Claim, got {claim!r}")
        self._check_open()

        def settle(c: Conn) -> Task:
            row = c.execute(CURRENT, {"task_id": claim.task_id, "now": self._now()}).fetchone()
            stale = _stale(claim, row)
            if stale is not None:
                raise stale
            return change(
                c, {"task_id": claim.task_id, "attempt": claim.attempt, "now": self._now()}
            )

        result: Task = self._run_transaction(what, settle)
        return result

    def heartbeat(self, claim: Claim, *, lease: float | None = None) -> Claim:
        seconds = (
            claim.lease_expires_at - (claim.task.started_at or claim.lease_expires_at)
            if lease is None
            else check_seconds(lease, field="lease")
        )

        def renew(c: Conn, p: dict[str, Any]) -> Task:
            c.execute(
                f"UPDATE tasks.queue SET lease_expires_at = {NOW} + %(s)s * interval '1 second', "
                f"updated_at = {NOW} WHERE task_id = %(task_id)s",
                {**p, "s": seconds},
            )
            return self._read(c, claim.task_id)

        task = self._settle(claim, "heartbeat", renew)
        return Claim(task, claim.agent_id, claim.attempt, task.lease_expires_at or 0.0)

    def complete(self, claim: Claim, result: Any = None) -> Task:
        if not isinstance(claim, Claim):
            raise InvalidArgument(f"expected a Claim, got {claim!r}")
        encoded = self._codec.encode_canonical(result)  # once: for the row and the copy
        self._check_open()
        params = {
            "now": self._now(),
            "task_id": claim.task_id,
            "attempt": claim.attempt,
            "agent": claim.agent_id,
            "result": jsonb_text(encoded, self._codec),
        }

        def done(c: Conn) -> float | None:
            row = c.execute(COMPLETE, params).fetchone()
            return None if row is None else float(row[0])

        completed_at: float | None = self._run_statement("complete", done)
        if completed_at is not None:
            # While the claim was current nothing else could change the task (every other
            # change makes the claim stale), so the claim's copy is the task but for this.
            return _completed(claim.task, completed_at, self._codec.decode(encoded.data))
        # Not (or no longer) this claim's task: say why.
        status = {"task_id": claim.task_id, "now": self._now()}
        row = self._run("task status", lambda c: c.execute(CURRENT, status).fetchone())
        raise _stale(claim, row) or StaleClaim(
            f"task {claim.task_id}: attempt {claim.attempt} is no longer current",
            task_id=str(claim.task_id),
            attempt=claim.attempt,
        )

    def fail(self, claim: Claim, error: str, *, retry: bool = True) -> Task:
        if type(error) is not str or not error:
            raise InvalidArgument(f"error must be a non-empty str, got {error!r}")
        if type(retry) is not bool:
            raise InvalidArgument(f"retry must be a bool, got {retry!r}")

        def failed(c: Conn, p: dict[str, Any]) -> Task:
            c.execute(END_RUN, {**p, "status": "failed", "result": None, "error": error})
            row = c.execute(
                "SELECT retry_count, max_retries FROM tasks.queue WHERE task_id = %s",
                [claim.task_id],
            ).fetchone()
            assert row is not None
            if retry and row[0] < row[1]:
                c.execute(
                    f"UPDATE tasks.queue SET status = 'pending', retry_count = retry_count + 1, "
                    f"scheduled_at = {NOW} + %(wait)s * interval '1 second', claimed_by = NULL, "
                    f"lease_expires_at = NULL, last_error = %(error)s, updated_at = {NOW} "
                    "WHERE task_id = %(task_id)s",
                    {**p, "wait": backoff(row[0] + 1), "error": error},
                )
            else:
                c.execute(
                    f"UPDATE tasks.queue SET status = 'failed', completed_at = {NOW}, "
                    f"lease_expires_at = NULL, last_error = %(error)s, updated_at = {NOW} "
                    "WHERE task_id = %(task_id)s",
                    {**p, "error": error},
                )
            return self._read(c, claim.task_id)

        return self._settle(claim, "fail", failed)

    # Control ---------------------------------------------------------------------------------

    def _read(self, c: Conn, task_id: uuid.UUID) -> Task:
        row = c.execute(SELECT_TASK, [task_id]).fetchone()
        if row is None:
            raise NotFound(f"no task {task_id}", task_id=str(task_id))
        return _task(row)

    def _move(self, task_id: uuid.UUID, allowed: set[str], to: str, verb: str) -> Task:
        check_task_id(task_id)
        self._check_open()
        params = {"task_id": task_id, "now": self._now(), "to": to}

        def move(c: Conn) -> Task:
            row = c.execute(
                "SELECT status::text, attempts FROM tasks.queue WHERE task_id = %s FOR UPDATE",
                [task_id],
            ).fetchone()
            if row is None:
                raise NotFound(f"no task {task_id}", task_id=str(task_id))
            if row[0] not in allowed:
                raise TaskStateError(
                    f"cannot {verb} task {task_id}: it is {row[0]}",
                    task_id=str(task_id),
                    status=row[0],
                )
            if row[0] == "running":
                c.execute(
                    END_RUN,
                    {
                        **params,
                        "attempt": row[1],
                        "status": "failed",
                        "result": None,
                        "error": "cancelled",
                    },
                )
            finished = to in ("completed", "failed", "cancelled")
            c.execute(
                f"UPDATE tasks.queue SET status = %(to)s::task_status_type, updated_at = {NOW}, "
                "lease_expires_at = NULL"
                + (f", completed_at = {NOW}" if finished else "")
                + " WHERE task_id = %(task_id)s",
                params,
            )
            if to == "pending":
                c.execute("SELECT pg_notify(%s, %s)", [CHANNEL, "resumed"])
            return self._read(c, task_id)

        result: Task = self._run_transaction(verb, move)
        return result

    def cancel(self, task_id: uuid.UUID) -> Task:
        return self._move(task_id, {"pending", "paused", "running"}, "cancelled", "cancel")

    def pause(self, task_id: uuid.UUID) -> Task:
        return self._move(task_id, {"pending"}, "paused", "pause")

    def resume(self, task_id: uuid.UUID) -> Task:
        return self._move(task_id, {"paused"}, "pending", "resume")

    # Reading ---------------------------------------------------------------------------------

    def get(self, task_id: uuid.UUID) -> Task | None:
        check_task_id(task_id)
        self._check_open()

        def read(c: Conn) -> Task | None:
            row = c.execute(SELECT_TASK, [task_id]).fetchone()
            c.rollback()
            return None if row is None else _task(row)

        result: Task | None = self._run("get task", read)
        return result

    def executions(self, task_id: uuid.UUID) -> list[Execution]:
        check_task_id(task_id)
        self._check_open()

        def read(c: Conn) -> list[Execution]:
            if (
                c.execute("SELECT 1 FROM tasks.queue WHERE task_id = %s", [task_id]).fetchone()
                is None
            ):
                raise NotFound(f"no task {task_id}", task_id=str(task_id))
            rows = c.execute(
                "SELECT e.execution_attempt, r.agent_name, e.status::text, "
                "extract(epoch FROM e.started_at)::float8, "
                "extract(epoch FROM e.completed_at)::float8, e.result, e.error_message "
                "FROM tasks.executions e JOIN agents.registry r ON r.agent_id = e.agent_id "
                "WHERE e.task_id = %s ORDER BY e.execution_attempt",
                [task_id],
            ).fetchall()
            c.rollback()
            return [
                Execution(task_id, a, agent, TaskStatus(s), start, end, res, err)
                for a, agent, s, start, end, res, err in rows
            ]

        result: list[Execution] = self._run("task executions", read)
        return result

    def stats(self) -> QueueStats:
        self._check_open()
        params = {"now": self._now()}

        def read(c: Conn) -> QueueStats:
            counts = {s.value: 0 for s in TaskStatus}
            for status, n in c.execute(
                "SELECT status::text, count(*) FROM tasks.queue GROUP BY status"
            ).fetchall():
                counts[status] = n
            row = c.execute(
                f"SELECT extract(epoch FROM {NOW} - min(created_at))::float8 FROM tasks.queue "
                "WHERE status = 'pending'",
                params,
            ).fetchone()
            c.rollback()
            oldest = 0.0 if row is None or row[0] is None else max(0.0, row[0])
            return QueueStats(
                counts=counts, oldest_pending_age_s=oldest, total=sum(counts.values())
            )

        result: QueueStats = self._run("queue stats", read)
        return result

    def purge(self, *, completed_before: float, include_failed: bool = False) -> int:
        before = timestamp(check_time(completed_before, field="completed_before"))
        if type(include_failed) is not bool:
            raise InvalidArgument(f"include_failed must be a bool, got {include_failed!r}")
        statuses = ["completed", "cancelled"] + (["failed"] if include_failed else [])
        self._check_open()

        def purge(c: Conn) -> int:
            return c.execute(
                """
                DELETE FROM tasks.queue q
                WHERE q.status::text = ANY(%s) AND q.completed_at < %s
                  AND NOT EXISTS (
                    SELECT 1 FROM tasks.dependencies d JOIN tasks.queue w ON w.task_id = d.task_id
                    WHERE d.depends_on_task_id = q.task_id
                      AND w.status NOT IN ('completed', 'failed', 'cancelled'))
                  AND NOT EXISTS (SELECT 1 FROM tasks.queue ch WHERE ch.parent_task_id = q.task_id)
                """,
                [statuses, before],
            ).rowcount

        result: int = self._run_transaction("purge tasks", purge)
        return result

    def list(
        self,
        *,
        status: TaskStatus | None = None,
        type: str | None = None,
        agent: str | None = None,
        limit: int = 100,
    ) -> builtins.list[Task]:
        wanted = check_status(status)
        check_limit(limit)
        self._check_open()
        params = {
            "status": None if wanted is None else wanted.value,
            "type": type,
            "agent": agent,
            "limit": limit,
        }

        def read(c: Conn) -> builtins.list[Task]:
            rows = c.execute(
                f"SELECT {TASK_COLUMNS} FROM tasks.queue q "
                "WHERE (%(status)s::text IS NULL OR q.status::text = %(status)s) "
                "AND (%(type)s::text IS NULL OR q.task_type = %(type)s) "
                "AND (%(agent)s::text IS NULL OR %(agent)s IN (q.assigned_agent, q.claimed_by)) "
                "ORDER BY q.created_at, q.task_id LIMIT %(limit)s",
                params,
            ).fetchall()
            c.rollback()
            return [_task(r) for r in rows]

        result: builtins.list[Task] = self._run("list tasks", read)
        return result

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        with self._waker_lock:
            if self._waker is not None:
                self._waker.close()
        if self._owns_pool:
            self._pool.close()


def _stale(claim: Claim, row: Sequence[Any] | None) -> StaleClaim | None:
    """The error for ``claim`` given its task's (status, attempts, claimed_by, lease live)
    row, or ``None`` when the claim is current."""
    if row is not None and tuple(row[:3]) == ("running", claim.attempt, claim.agent_id) and row[3]:
        return None
    status = "deleted" if row is None else row[0]
    return StaleClaim(
        f"task {claim.task_id}: attempt {claim.attempt} by {claim.agent_id!r} is no longer "
        f"current (the task is {status}; a lease that ran out is lost)",
        task_id=str(claim.task_id),
        attempt=claim.attempt,
    )
