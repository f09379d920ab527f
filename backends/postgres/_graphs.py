"""``CheckpointStore`` on graphs.* (0026): a checkpoint and its new values in one statement,
every write guarded by its thread's fence row (locked first, read at its newest)."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any, Final

import orjson
from psycopg_pool import ConnectionPool

from msstore.graphs import (
    DELTA_COUNTERS,
    MAX_CHAIN,
    Blob,
    CheckpointPut,
    CheckpointStore,
    Head,
    Outcome,
    StoredCheckpoint,
    StoredTuple,
    StoredWrite,
    WritesPut,
    delta_channels,
)

from ._base import Conn, PgStore
from ._config import DEFAULT_CONNECT_TIMEOUT
from ._jsonb import jsonb_text

__all__ = ["PostgresCheckpointStore"]

PAGE = 100
# The thread's row, locked and read at its newest version (an update): a delete that
# committed while this waited is seen, and one that comes later waits for this to commit.
# (touched_at -1: deleted or expired, not to be expired again until written.)
_FENCE: Final = """
f AS (
  INSERT INTO graphs.threads AS g (thread_id, touched_at) VALUES (%(t)s, %(at)s)
  ON CONFLICT (thread_id) DO UPDATE SET touched_at = GREATEST(g.touched_at, EXCLUDED.touched_at)
  RETURNING fence
), ok AS (SELECT 1 FROM f WHERE f.fence < %(id)s)
"""
# A delta's base is locked (KEY SHARE) so that no prune deletes it before this commits; one
# deleted since (not found) makes the put store nothing, and the caller stores it whole.
PUT: Final = f"""
WITH {_FENCE}, based AS (
  SELECT x.channel FROM graphs.blobs x
  JOIN unnest(%(channels)s::text[], %(bases)s::text[]) AS r(c, base)
    ON (x.channel, x.version) = (r.c, r.base)
  WHERE x.thread_id = %(t)s AND x.ns = %(ns)s
  FOR KEY SHARE OF x
), whole AS (SELECT 1 FROM ok WHERE (SELECT count(*) FROM based) = %(nbases)s), b AS (
  INSERT INTO graphs.blobs (thread_id, ns, channel, version, type, data, base)
  SELECT %(t)s, %(ns)s, r.c, r.v, r.ty, r.d, r.base
  FROM whole, unnest(%(channels)s::text[], %(versions)s::text[], %(types)s::text[],
    %(datas)s::bytea[], %(bases)s::text[]) AS r(c, v, ty, d, base)
  ON CONFLICT DO NOTHING
), c AS (
  INSERT INTO graphs.checkpoints AS o (thread_id, ns, checkpoint_id, parent_id, body_type, body,
    metadata, versions, seq)
  SELECT %(t)s, %(ns)s, %(id)s, %(parent)s, %(body_type)s, %(body)s, %(metadata)s::jsonb,
    %(cv)s::jsonb, %(seq)s
  FROM whole
  ON CONFLICT (thread_id, ns, checkpoint_id) DO UPDATE SET parent_id = EXCLUDED.parent_id,
    body_type = EXCLUDED.body_type, body = EXCLUDED.body, metadata = EXCLUDED.metadata,
    versions = EXCLUDED.versions, seq = EXCLUDED.seq
  WHERE o.seq <= EXCLUDED.seq
)
SELECT (SELECT count(*) FROM ok), (SELECT count(*) FROM whole)
"""
_WRITE_ROWS: Final = """
  SELECT %(t)s, %(ns)s, %(id)s, r.task, r.idx, r.c, r.ty, r.d, r.path, %(seq)s
  FROM ok, unnest(%(tasks)s::text[], %(idxs)s::int[], %(channels)s::text[], %(types)s::text[],
    %(datas)s::bytea[], %(paths)s::text[], %(replace)s::bool[]) AS r(task, idx, c, ty, d, path, rep)
"""
# A write replayed out of order keeps the outcome of the in-order one: a kept write is the
# one with the lowest seq (the first), a replaced write the one with the highest (the last).
PUT_WRITES: Final = f"""
WITH {_FENCE}, kept AS (
  INSERT INTO graphs.writes AS o (thread_id, ns, checkpoint_id, task_id, idx, channel, type,
    data, task_path, seq)
  {_WRITE_ROWS} WHERE NOT r.rep
  ON CONFLICT (thread_id, ns, checkpoint_id, task_id, idx) DO UPDATE SET
    channel = EXCLUDED.channel, type = EXCLUDED.type, data = EXCLUDED.data,
    task_path = EXCLUDED.task_path, seq = EXCLUDED.seq
  WHERE EXCLUDED.seq < o.seq
), replaced AS (
  INSERT INTO graphs.writes AS o (thread_id, ns, checkpoint_id, task_id, idx, channel, type,
    data, task_path, seq)
  {_WRITE_ROWS} WHERE r.rep
  ON CONFLICT (thread_id, ns, checkpoint_id, task_id, idx) DO UPDATE SET
    channel = EXCLUDED.channel, type = EXCLUDED.type, data = EXCLUDED.data,
    task_path = EXCLUDED.task_path, seq = EXCLUDED.seq
  WHERE o.seq <= EXCLUDED.seq
)
SELECT count(*), count(*) FROM ok
"""
COLUMNS: Final = "thread_id, ns, checkpoint_id, parent_id, body_type, body, metadata, versions"
# Checkpoints (chosen by WHERE ... ORDER BY ... LIMIT, spliced in) with their blobs and writes,
# in one statement: each checkpoint's blobs and writes come as parallel arrays.
WHOLE: Final = """
SELECT c.thread_id, c.ns, c.checkpoint_id, c.parent_id, c.body_type, c.body, c.metadata,
  c.versions, bl.channels, bl.vs, bl.types, bl.datas, bl.bases, wr.tasks, wr.idxs,
  wr.channels, wr.types, wr.datas, wr.paths
FROM (SELECT * FROM graphs.checkpoints {where}) c
LEFT JOIN LATERAL (
  WITH RECURSIVE chain AS (
    SELECT b.channel, b.version, b.type, b.data, b.base, 1 AS depth
    FROM jsonb_each_text(c.versions) AS v(ch, ver)
    JOIN graphs.blobs b
      ON (b.thread_id, b.ns, b.channel, b.version) = (c.thread_id, c.ns, v.ch, v.ver)
    UNION ALL
    SELECT b.channel, b.version, b.type, b.data, b.base, chain.depth + 1
    FROM chain JOIN graphs.blobs b
      ON (b.thread_id, b.ns, b.channel, b.version) = (c.thread_id, c.ns, chain.channel,
        chain.base)
    WHERE chain.depth <= %(max_chain)s
  )
  SELECT array_agg(channel) AS channels, array_agg(version) AS vs, array_agg(type) AS types,
    array_agg(data) AS datas, array_agg(base) AS bases
  FROM chain
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
INSERT INTO graphs.threads AS g (thread_id, fence, touched_at) VALUES (%(t)s, %(fence)s, -1)
ON CONFLICT (thread_id) DO UPDATE SET fence = GREATEST(g.fence, EXCLUDED.fence), touched_at = -1
"""
# Threads untouched since the cutoff, fenced at their newest checkpoint; a thread a write holds
# locked is being touched, and skipped.
EXPIRE: Final = """
WITH stale AS (
  SELECT thread_id FROM graphs.threads
  WHERE touched_at >= 0 AND touched_at < %(before)s
  ORDER BY thread_id FOR UPDATE SKIP LOCKED
)
UPDATE graphs.threads g SET touched_at = -1, fence = GREATEST(g.fence, COALESCE(
  (SELECT max(c.checkpoint_id) FROM graphs.checkpoints c WHERE c.thread_id = g.thread_id),
  g.fence))
FROM stale WHERE g.thread_id = stale.thread_id
RETURNING g.thread_id
"""
# Values no checkpoint of the threads points at any more, directly or down a delta's bases.
ORPHAN_BLOBS: Final = """
WITH RECURSIVE live AS (
  SELECT b.thread_id, b.ns, b.channel, b.version, b.base
  FROM graphs.checkpoints c
  CROSS JOIN LATERAL jsonb_each_text(c.versions) AS v(ch, ver)
  JOIN graphs.blobs b
    ON (b.thread_id, b.ns, b.channel, b.version) = (c.thread_id, c.ns, v.ch, v.ver)
  WHERE c.thread_id = ANY(%(ts)s)
  UNION
  SELECT b.thread_id, b.ns, b.channel, b.version, b.base
  FROM live JOIN graphs.blobs b
    ON (b.thread_id, b.ns, b.channel, b.version) = (live.thread_id, live.ns, live.channel,
      live.base)
)
DELETE FROM graphs.blobs b WHERE b.thread_id = ANY(%(ts)s) AND NOT EXISTS (
  SELECT 1 FROM live l
  WHERE (l.thread_id, l.ns, l.channel, l.version) = (b.thread_id, b.ns, b.channel, b.version))
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

    def write(self, entries: Sequence[CheckpointPut | WritesPut]) -> list[Outcome]:
        """See :meth:`msstore.graphs.CheckpointStore.write`: one statement for one entry;
        several in one transaction, pipelined, their threads locked in thread order."""
        statements = [_statement(e) for e in entries]
        if len(statements) == 1:
            one = statements[0]
            return [self._run_statement("store a checkpoint", lambda c: _outcome(c, *one))]
        order = sorted(range(len(entries)), key=lambda i: entries[i].thread_id)

        def apply(c: Conn) -> list[Outcome]:
            with c.pipeline():
                cursors = [(i, c.execute(*statements[i])) for i in order]
            done = [Outcome.FENCED] * len(entries)
            for i, cursor in cursors:
                done[i] = _answer(cursor.fetchone())
            return done

        return self._run_transaction("store checkpoints", apply)

    def get(self, thread_id: str, ns: str, checkpoint_id: str | None) -> StoredTuple | None:
        """See :meth:`msstore.graphs.CheckpointStore.get` (one statement)."""
        statement = LATEST if checkpoint_id is None else ONE
        params = {"t": thread_id, "ns": ns, "id": checkpoint_id, "max_chain": MAX_CHAIN}
        row = self._run("read a checkpoint", lambda c: c.execute(statement, params).fetchone())
        return None if row is None else _whole(row)

    def list(
        self, thread_id: str | None, ns: str | None, *, before: str | None
    ) -> Iterator[StoredTuple]:
        """See :meth:`msstore.graphs.CheckpointStore.list` (a page of 100 per statement)."""
        cursor = before
        while True:
            params = {
                "t": thread_id,
                "ns": ns,
                "before": cursor,
                "page": PAGE,
                "max_chain": MAX_CHAIN,
            }
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
                "INSERT INTO graphs.blobs (thread_id, ns, channel, version, type, data, base) "
                "SELECT %(target)s, ns, channel, version, type, data, base "
                "FROM graphs.blobs WHERE thread_id = %(source)s ON CONFLICT DO NOTHING",
                {"source": source, "target": target},
            )
            c.execute(
                "INSERT INTO graphs.writes (thread_id, ns, checkpoint_id, task_id, idx, channel, "
                "type, data, task_path, seq) SELECT %(target)s, ns, checkpoint_id, task_id, idx, "
                "channel, type, data, task_path, seq FROM graphs.writes "
                "WHERE thread_id = %(source)s ON CONFLICT DO NOTHING",
                {"source": source, "target": target},
            )

        self._run_transaction("copy a thread", copy)

    def heads(self, thread_ids: Sequence[str]) -> Sequence[Head]:
        """See :meth:`msstore.graphs.CheckpointStore.heads`."""
        rows = self._run(
            "read checkpoint heads",
            lambda c: c.execute(
                "SELECT thread_id, ns, checkpoint_id, parent_id, "
                f"metadata -> '{DELTA_COUNTERS}' FROM graphs.checkpoints "
                "WHERE thread_id = ANY(%s)",
                (list(thread_ids),),
            ).fetchall(),
        )
        return [
            Head(t, ns, i, parent, delta_channels({DELTA_COUNTERS: counters}))
            for t, ns, i, parent, counters in rows
        ]

    def delete_checkpoints(self, thread_id: str, refs: Sequence[tuple[str, str]]) -> None:
        """See :meth:`msstore.graphs.CheckpointStore.delete_checkpoints`."""
        params = {"ts": [thread_id], "ns": [n for n, _ in refs], "ids": [i for _, i in refs]}

        def delete(c: Conn) -> None:
            # (the thread's row first, as a put locks it: a put's delta base is not pruned
            # while it commits, and this sees what it stored)
            c.execute("SELECT 1 FROM graphs.threads WHERE thread_id = %s FOR UPDATE", (thread_id,))
            for table in ("writes", "checkpoints"):
                c.execute(
                    f"DELETE FROM graphs.{table} WHERE thread_id = (%(ts)s::text[])[1] AND (ns, "
                    "checkpoint_id) IN (SELECT * FROM unnest(%(ns)s::text[], %(ids)s::text[]))",
                    params,
                )
            c.execute(ORPHAN_BLOBS, params)

        self._run_transaction("delete checkpoints", delete)

    def expire(self, before: float) -> Sequence[str]:
        """See :meth:`msstore.graphs.CheckpointStore.expire`."""

        def expire(c: Conn) -> list[str]:
            gone = [r[0] for r in c.execute(EXPIRE, {"before": before}).fetchall()]
            if gone:
                for table in ("writes", "blobs", "checkpoints"):
                    c.execute(f"DELETE FROM graphs.{table} WHERE thread_id = ANY(%s)", (gone,))
            return gone

        return self._run_transaction("expire threads", expire)


def _statement(entry: CheckpointPut | WritesPut) -> tuple[str, dict[str, Any]]:
    """The statement (:data:`PUT` or :data:`PUT_WRITES`) and parameters of an entry."""
    if isinstance(entry, CheckpointPut):
        cp, blobs = entry.checkpoint, entry.blobs
        return PUT, {
            "t": cp.thread_id,
            "ns": cp.ns,
            "id": cp.checkpoint_id,
            "at": entry.at,
            "seq": entry.seq,
            "parent": cp.parent_id,
            "body_type": cp.body_type,
            "body": cp.body,
            "metadata": jsonb_text(dict(cp.metadata)),
            "cv": orjson.dumps(dict(cp.versions)).decode(),
            "channels": [b.channel for b in blobs],
            "versions": [b.version for b in blobs],
            "types": [b.type for b in blobs],
            "datas": [b.data for b in blobs],
            "bases": [b.base for b in blobs],
            "nbases": sum(b.base is not None for b in blobs),
        }
    writes = entry.writes
    return PUT_WRITES, {
        "t": entry.thread_id,
        "ns": entry.ns,
        "id": entry.checkpoint_id,
        "at": entry.at,
        "seq": entry.seq,
        "tasks": [w.task_id for w, _ in writes],
        "idxs": [w.idx for w, _ in writes],
        "channels": [w.channel for w, _ in writes],
        "types": [w.type for w, _ in writes],
        "datas": [w.data for w, _ in writes],
        "paths": [w.task_path for w, _ in writes],
        "replace": [r for _, r in writes],
    }


def _page(c: Conn, *, params: dict[str, Any]) -> list[Any]:
    return c.execute(PAGE_OF, params).fetchall()


def _whole(row: Sequence[Any]) -> StoredTuple:
    """A row of :data:`WHOLE`."""
    cp = _checkpoint(row)
    blobs = tuple(
        Blob(cp.thread_id, cp.ns, ch, v, ty, bytes(d), base)
        for ch, v, ty, d, base in zip(*(row[i] or () for i in range(8, 13)), strict=True)
    )
    writes = tuple(
        StoredWrite(task, idx, ch, ty, bytes(d), path)
        for task, idx, ch, ty, d, path in zip(*(row[i] or () for i in range(13, 19)), strict=True)
    )
    return StoredTuple(cp, blobs, writes)


def _outcome(c: Conn, statement: str, params: dict[str, Any]) -> Outcome:
    """Run :data:`PUT` or :data:`PUT_WRITES`."""
    return _answer(c.execute(statement, params).fetchone())


def _answer(row: Sequence[Any] | None) -> Outcome:
    """What a row of (past the fence, stored) says."""
    if row is None or not row[0]:
        return Outcome.FENCED
    return Outcome.STORED if row[1] else Outcome.BASE_GONE
