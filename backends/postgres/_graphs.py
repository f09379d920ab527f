"""``CheckpointStore`` on graphs.* (0026): a checkpoint and its new values in one statement,
every write guarded by its thread's fence row (locked first, read at its newest)."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any, Final

import orjson
from psycopg_pool import ConnectionPool

from msstore.graphs import Blob, CheckpointStore, StoredCheckpoint, StoredTuple, StoredWrite

from ._base import Conn, PgStore
from ._config import DEFAULT_CONNECT_TIMEOUT
from ._jsonb import jsonb_text

__all__ = ["PostgresCheckpointStore"]

PAGE = 100
# The thread's row, locked and read at its newest version (a no-op update): a delete that
# committed while this waited is seen, and one that comes later waits for this to commit.
_FENCE: Final = """
f AS (
  INSERT INTO graphs.threads AS g (thread_id) VALUES (%(t)s)
  ON CONFLICT (thread_id) DO UPDATE SET fence = g.fence
  RETURNING fence
), ok AS (SELECT 1 FROM f WHERE f.fence < %(id)s)
"""
PUT: Final = f"""
WITH {_FENCE}, b AS (
  INSERT INTO graphs.blobs (thread_id, ns, channel, version, type, data)
  SELECT %(t)s, %(ns)s, r.c, r.v, r.ty, r.d
  FROM ok, unnest(%(channels)s::text[], %(versions)s::text[], %(types)s::text[],
    %(datas)s::bytea[]) AS r(c, v, ty, d)
  ON CONFLICT DO NOTHING
), c AS (
  INSERT INTO graphs.checkpoints (thread_id, ns, checkpoint_id, parent_id, body_type, body,
    metadata, versions)
  SELECT %(t)s, %(ns)s, %(id)s, %(parent)s, %(body_type)s, %(body)s, %(metadata)s::jsonb,
    %(cv)s::jsonb
  FROM ok
  ON CONFLICT (thread_id, ns, checkpoint_id) DO UPDATE SET parent_id = EXCLUDED.parent_id,
    body_type = EXCLUDED.body_type, body = EXCLUDED.body, metadata = EXCLUDED.metadata,
    versions = EXCLUDED.versions
)
SELECT count(*) FROM ok
"""
_WRITE_ROWS: Final = """
  SELECT %(t)s, %(ns)s, %(id)s, r.task, r.idx, r.c, r.ty, r.d, r.path
  FROM ok, unnest(%(tasks)s::text[], %(idxs)s::int[], %(channels)s::text[], %(types)s::text[],
    %(datas)s::bytea[], %(paths)s::text[], %(replace)s::bool[]) AS r(task, idx, c, ty, d, path, rep)
"""
PUT_WRITES: Final = f"""
WITH {_FENCE}, kept AS (
  INSERT INTO graphs.writes (thread_id, ns, checkpoint_id, task_id, idx, channel, type, data,
    task_path)
  {_WRITE_ROWS} WHERE NOT r.rep
  ON CONFLICT DO NOTHING
), replaced AS (
  INSERT INTO graphs.writes (thread_id, ns, checkpoint_id, task_id, idx, channel, type, data,
    task_path)
  {_WRITE_ROWS} WHERE r.rep
  ON CONFLICT (thread_id, ns, checkpoint_id, task_id, idx) DO UPDATE SET
    channel = EXCLUDED.channel, type = EXCLUDED.type, data = EXCLUDED.data,
    task_path = EXCLUDED.task_path
)
SELECT count(*) FROM ok
"""
COLUMNS: Final = "thread_id, ns, checkpoint_id, parent_id, body_type, body, metadata, versions"
# Checkpoints (chosen by WHERE ... ORDER BY ... LIMIT, spliced in) with their blobs and writes,
# in one statement: each checkpoint's blobs and writes come as parallel arrays.
WHOLE: Final = """
SELECT c.thread_id, c.ns, c.checkpoint_id, c.parent_id, c.body_type, c.body, c.metadata,
  c.versions, bl.channels, bl.vs, bl.types, bl.datas, wr.tasks, wr.idxs, wr.channels,
  wr.types, wr.datas, wr.paths
FROM (SELECT * FROM graphs.checkpoints {where}) c
LEFT JOIN LATERAL (
  SELECT array_agg(b.channel) AS channels, array_agg(b.version) AS vs,
    array_agg(b.type) AS types, array_agg(b.data) AS datas
  FROM jsonb_each_text(c.versions) AS v(ch, ver)
  JOIN graphs.blobs b
    ON (b.thread_id, b.ns, b.channel, b.version) = (c.thread_id, c.ns, v.ch, v.ver)
) bl ON true
LEFT JOIN LATERAL (
  SELECT array_agg(w.task_id) AS tasks, array_agg(w.idx) AS idxs,
    array_agg(w.channel) AS channels, array_agg(w.type) AS types, array_agg(w.data) AS datas,
    array_agg(w.task_path) AS paths
  FROM graphs.writes w
  WHERE (w.thread_id, w.ns, w.checkpoint_id) = (c.thread_id, c.ns, c.checkpoint_id)
) wr ON true
ORDER BY c.checkpoint_id DESC, c.thread_id, c.ns
"""
LATEST: Final = WHOLE.format(
    where="WHERE thread_id = %(t)s AND ns = %(ns)s ORDER BY checkpoint_id DESC LIMIT 1"
)
ONE: Final = WHOLE.format(
    where="WHERE thread_id = %(t)s AND ns = %(ns)s AND checkpoint_id = %(id)s"
)
PAGE_OF: Final = WHOLE.format(
    where="WHERE (%(t)s::text IS NULL OR thread_id = %(t)s) "
    "AND (%(ns)s::text IS NULL OR ns = %(ns)s) "
    "AND (%(before)s::text IS NULL OR checkpoint_id < %(before)s) "
    "ORDER BY checkpoint_id DESC, thread_id, ns LIMIT %(page)s"
)
SET_FENCE: Final = """
INSERT INTO graphs.threads AS g (thread_id, fence) VALUES (%(t)s, %(fence)s)
ON CONFLICT (thread_id) DO UPDATE SET fence = GREATEST(g.fence, EXCLUDED.fence)
"""
# Values no checkpoint of the thread points at any more.
ORPHAN_BLOBS: Final = """
DELETE FROM graphs.blobs b WHERE b.thread_id = ANY(%(ts)s) AND NOT EXISTS (
  SELECT 1 FROM graphs.checkpoints c
  WHERE c.thread_id = b.thread_id AND c.ns = b.ns AND c.versions ->> b.channel = b.version)
"""


def _checkpoint(row: Sequence[Any]) -> StoredCheckpoint:
    return StoredCheckpoint(
        thread_id=row[0],
        ns=row[1],
        checkpoint_id=row[2],
        parent_id=row[3],
        body_type=row[4],
        body=bytes(row[5]),
        metadata=row[6],
        versions=row[7],
    )


class PostgresCheckpointStore(PgStore, CheckpointStore):
    """Graph checkpoints in PostgreSQL (needs the migrations: ``msstore migrate up``).
    ``pool``: a ``psycopg_pool.ConnectionPool`` or a DSN (a small pool of its own then)."""

    def __init__(
        self,
        pool: ConnectionPool[Any] | str,
        *,
        deadline: float | None = 30.0,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        super().__init__()
        self._adopt(
            pool,
            name="msstore-graphs",
            connect_timeout=connect_timeout,
            deadline=deadline,
            autocommit=True,
        )

    def put(self, checkpoint: StoredCheckpoint, blobs: Sequence[Blob]) -> bool:
        """See :meth:`msstore.graphs.CheckpointStore.put`."""
        params = {
            "t": checkpoint.thread_id,
            "ns": checkpoint.ns,
            "id": checkpoint.checkpoint_id,
            "parent": checkpoint.parent_id,
            "body_type": checkpoint.body_type,
            "body": checkpoint.body,
            "metadata": jsonb_text(dict(checkpoint.metadata)),
            "cv": orjson.dumps(dict(checkpoint.versions)).decode(),
            "channels": [b.channel for b in blobs],
            "versions": [b.version for b in blobs],
            "types": [b.type for b in blobs],
            "datas": [b.data for b in blobs],
        }
        return self._run_statement("store a checkpoint", lambda c: _counted(c, PUT, params))

    def put_writes(
        self,
        thread_id: str,
        ns: str,
        checkpoint_id: str,
        writes: Sequence[tuple[StoredWrite, bool]],
    ) -> bool:
        """See :meth:`msstore.graphs.CheckpointStore.put_writes`."""
        params = {
            "t": thread_id,
            "ns": ns,
            "id": checkpoint_id,
            "tasks": [w.task_id for w, _ in writes],
            "idxs": [w.idx for w, _ in writes],
            "channels": [w.channel for w, _ in writes],
            "types": [w.type for w, _ in writes],
            "datas": [w.data for w, _ in writes],
            "paths": [w.task_path for w, _ in writes],
            "replace": [r for _, r in writes],
        }
        return self._run_statement(
            "store pending writes", lambda c: _counted(c, PUT_WRITES, params)
        )

    def get(self, thread_id: str, ns: str, checkpoint_id: str | None) -> StoredTuple | None:
        """See :meth:`msstore.graphs.CheckpointStore.get` (one statement)."""
        statement = LATEST if checkpoint_id is None else ONE
        params = {"t": thread_id, "ns": ns, "id": checkpoint_id}
        row = self._run("read a checkpoint", lambda c: c.execute(statement, params).fetchone())
        return None if row is None else _whole(row)

    def list(
        self, thread_id: str | None, ns: str | None, *, before: str | None
    ) -> Iterator[StoredTuple]:
        """See :meth:`msstore.graphs.CheckpointStore.list` (a page of 100 per statement)."""
        cursor = before
        while True:
            params = {"t": thread_id, "ns": ns, "before": cursor, "page": PAGE}
            rows = self._run("list checkpoints", functools.partial(_page, params=params))
            yield from (_whole(r) for r in rows)
            if len(rows) < PAGE:
                return
            cursor = rows[-1][2]
            # (ids are unique per thread and namespace; across them, one id on a page's edge
            # shared by two threads is rare, and the next page starts below it)

    def delete_thread(self, thread_id: str, fence: str) -> None:
        """See :meth:`msstore.graphs.CheckpointStore.delete_thread`."""

        def delete(c: Conn) -> None:
            c.execute(SET_FENCE, {"t": thread_id, "fence": fence})  # (waits for a write)
            for table in ("writes", "blobs", "checkpoints"):  # (a new snapshot: sees it)
                c.execute(f"DELETE FROM graphs.{table} WHERE thread_id = %s", (thread_id,))

        self._run_transaction("delete a thread", delete)

    def delete_runs(self, run_ids: Sequence[str]) -> None:
        """See :meth:`msstore.graphs.CheckpointStore.delete_runs`."""

        def delete(c: Conn) -> None:
            c.execute(
                "WITH gone AS (DELETE FROM graphs.checkpoints WHERE run_id = ANY(%s) "
                "RETURNING thread_id, ns, checkpoint_id) "
                "DELETE FROM graphs.writes w USING gone g WHERE (w.thread_id, w.ns, "
                "w.checkpoint_id) = (g.thread_id, g.ns, g.checkpoint_id)",
                (list(run_ids),),
            )

        self._run_transaction("delete runs' checkpoints", delete)

    def copy_thread(self, source: str, target: str) -> None:
        """See :meth:`msstore.graphs.CheckpointStore.copy_thread`."""

        def copy(c: Conn) -> None:
            c.execute(
                f"INSERT INTO graphs.checkpoints ({COLUMNS}) SELECT %(target)s, ns, "
                "checkpoint_id, parent_id, body_type, body, metadata, versions "
                "FROM graphs.checkpoints WHERE thread_id = %(source)s ON CONFLICT DO NOTHING",
                {"source": source, "target": target},
            )
            c.execute(
                "INSERT INTO graphs.blobs SELECT %(target)s, ns, channel, version, type, data "
                "FROM graphs.blobs WHERE thread_id = %(source)s ON CONFLICT DO NOTHING",
                {"source": source, "target": target},
            )
            c.execute(
                "INSERT INTO graphs.writes SELECT %(target)s, ns, checkpoint_id, task_id, idx, "
                "channel, type, data, task_path FROM graphs.writes "
                "WHERE thread_id = %(source)s ON CONFLICT DO NOTHING",
                {"source": source, "target": target},
            )

        self._run_transaction("copy a thread", copy)

    def prune(self, thread_ids: Sequence[str], *, keep_latest: bool) -> None:
        """See :meth:`msstore.graphs.CheckpointStore.prune`."""
        ts = list(thread_ids)

        def prune(c: Conn) -> None:
            c.execute(
                "WITH gone AS (DELETE FROM graphs.checkpoints c WHERE c.thread_id = ANY(%(ts)s) "
                "AND (NOT %(keep)s OR c.checkpoint_id < (SELECT max(n.checkpoint_id) FROM "
                "graphs.checkpoints n WHERE n.thread_id = c.thread_id AND n.ns = c.ns)) "
                "RETURNING thread_id, ns, checkpoint_id) "
                "DELETE FROM graphs.writes w USING gone g WHERE (w.thread_id, w.ns, "
                "w.checkpoint_id) = (g.thread_id, g.ns, g.checkpoint_id)",
                {"ts": ts, "keep": keep_latest},
            )
            c.execute(ORPHAN_BLOBS, {"ts": ts})

        self._run_transaction("prune threads", prune)


def _page(c: Conn, *, params: dict[str, Any]) -> list[Any]:
    return c.execute(PAGE_OF, params).fetchall()


def _whole(row: Sequence[Any]) -> StoredTuple:
    """A row of :data:`WHOLE`."""
    cp = _checkpoint(row)
    blobs = tuple(
        Blob(cp.thread_id, cp.ns, ch, v, ty, bytes(d))
        for ch, v, ty, d in zip(*(row[i] or () for i in range(8, 12)), strict=True)
    )
    writes = tuple(
        StoredWrite(task, idx, ch, ty, bytes(d), path)
        for task, idx, ch, ty, d, path in zip(*(row[i] or () for i in range(12, 18)), strict=True)
    )
    return StoredTuple(cp, blobs, writes)


def _counted(c: Conn, statement: str, params: dict[str, Any]) -> bool:
    row = c.execute(statement, params).fetchone()
    return row is not None and row[0] > 0
