"""``CheckpointStore`` on graphs.* (0026): a checkpoint and its new values in one statement,
every write guarded by its thread's fence row (locked first, read at its newest)."""

from __future__ import annotations

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
BLOBS: Final = """
SELECT b.thread_id, b.ns, b.channel, b.version, b.type, b.data
FROM graphs.blobs b JOIN unnest(%s::text[], %s::text[], %s::text[], %s::text[])
  AS k(t, n, c, v) ON (b.thread_id, b.ns, b.channel, b.version) = (k.t, k.n, k.c, k.v)
"""
WRITES: Final = """
SELECT w.thread_id, w.ns, w.checkpoint_id, w.task_id, w.idx, w.channel, w.type, w.data,
  w.task_path
FROM graphs.writes w JOIN unnest(%s::text[], %s::text[], %s::text[]) AS k(t, n, i)
  ON (w.thread_id, w.ns, w.checkpoint_id) = (k.t, k.n, k.i)
"""
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

    def _complete(self, c: Conn, checkpoints: list[StoredCheckpoint]) -> list[StoredTuple]:
        """The checkpoints with their blobs and writes (two statements for all of them)."""
        if not checkpoints:
            return []
        keys = [(cp.thread_id, cp.ns, ch, v) for cp in checkpoints for ch, v in cp.versions.items()]
        blobs: dict[tuple[str, str, str, str], Blob] = {}
        if keys:
            for r in c.execute(BLOBS, [list(k) for k in zip(*keys, strict=True)]):
                blobs[r[0], r[1], r[2], r[3]] = Blob(r[0], r[1], r[2], r[3], r[4], bytes(r[5]))
        writes: dict[tuple[str, str, str], list[StoredWrite]] = {}
        ids = [[cp.thread_id for cp in checkpoints], [cp.ns for cp in checkpoints]]
        ids.append([cp.checkpoint_id for cp in checkpoints])
        for r in c.execute(WRITES, ids):
            writes.setdefault((r[0], r[1], r[2]), []).append(
                StoredWrite(r[3], r[4], r[5], r[6], bytes(r[7]), r[8])
            )
        return [
            StoredTuple(
                cp,
                tuple(
                    b
                    for ch, v in cp.versions.items()
                    if (b := blobs.get((cp.thread_id, cp.ns, ch, v))) is not None
                ),
                tuple(writes.get((cp.thread_id, cp.ns, cp.checkpoint_id), ())),
            )
            for cp in checkpoints
        ]

    def get(self, thread_id: str, ns: str, checkpoint_id: str | None) -> StoredTuple | None:
        """See :meth:`msstore.graphs.CheckpointStore.get`."""

        def read(c: Conn) -> StoredTuple | None:
            if checkpoint_id is None:
                row = c.execute(
                    f"SELECT {COLUMNS} FROM graphs.checkpoints WHERE thread_id = %s AND ns = %s "
                    "ORDER BY checkpoint_id DESC LIMIT 1",
                    (thread_id, ns),
                ).fetchone()
            else:
                row = c.execute(
                    f"SELECT {COLUMNS} FROM graphs.checkpoints "
                    "WHERE thread_id = %s AND ns = %s AND checkpoint_id = %s",
                    (thread_id, ns, checkpoint_id),
                ).fetchone()
            if row is None:
                return None
            return self._complete(c, [_checkpoint(row)])[0]

        return self._run_transaction("read a checkpoint", read, write=False)

    def list(
        self, thread_id: str | None, ns: str | None, *, before: str | None
    ) -> Iterator[StoredTuple]:
        """See :meth:`msstore.graphs.CheckpointStore.list` (read a page of 100 at a time)."""
        cursor = before
        while True:

            def page(c: Conn, cursor: str | None = cursor) -> list[StoredTuple]:
                rows = c.execute(
                    f"SELECT {COLUMNS} FROM graphs.checkpoints "
                    "WHERE (%(t)s::text IS NULL OR thread_id = %(t)s) "
                    "AND (%(ns)s::text IS NULL OR ns = %(ns)s) "
                    "AND (%(before)s::text IS NULL OR checkpoint_id < %(before)s) "
                    "ORDER BY checkpoint_id DESC, thread_id, ns LIMIT %(page)s",
                    {"t": thread_id, "ns": ns, "before": cursor, "page": PAGE},
                ).fetchall()
                return self._complete(c, [_checkpoint(r) for r in rows])

            found = self._run_transaction("list checkpoints", page, write=False)
            yield from found
            if len(found) < PAGE:
                return
            cursor = found[-1].checkpoint.checkpoint_id
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


def _counted(c: Conn, statement: str, params: dict[str, Any]) -> bool:
    row = c.execute(statement, params).fetchone()
    return row is not None and row[0] > 0
