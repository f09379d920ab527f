"""The SQL state store: ``DataStorage`` on ``agents.state`` (migration 0002).

Keys map to rows as ``(agent_id, state_key)`` (:mod:`._agents`); values are JSONB text from
their one canonical encoding (:mod:`._jsonb`). A delete is a tombstone row at its version
(migration 0016), so the version guard refuses older writes of a deleted key.

Writes are version-guarded: a row is replaced only by a strictly newer version, so an old flush
never overwrites newer data. :meth:`PostgresStateStore.upsert_many` is the flusher's path: rows
collapsed to the newest version per key, then ``INSERT ... ON CONFLICT DO UPDATE ... WHERE
version < EXCLUDED.version`` from binary arrays (small batches, one statement) or from a temp
table filled by binary ``COPY`` chunk by chunk (large ones, one transaction).
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, TypeVar

import attrs
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from msstore import keys as keygrammar
from msstore.capabilities import Capability, require
from msstore.codec import Codec, default_codec
from msstore.errors import (
    InvalidArgument,
    VersionConflict,
)
from msstore.protocols import CheckpointStore, DataStorage, FlushLedger
from msstore.records import Checkpoint, FlushFailure, Query, Record, UpsertResult
from msstore.spi import (
    check_query,
    check_retention,
    check_ttl,
    check_version,
    newest_records,
)

from ._agents import ENSURE_AGENTS, agent_id_for, agent_of_token
from ._base import Conn, PgStore, timestamp
from ._config import DEFAULT_CONNECT_TIMEOUT
from ._jsonb import jsonb_row, jsonb_text

__all__ = ["PostgresStateStore"]

T = TypeVar("T")

CAPABILITIES: Final = frozenset(
    {Capability.SEARCH, Capability.TRANSACTIONS, Capability.BATCH, Capability.ENCODED_VALUES}
)

STAGE: Final = """
CREATE TEMP TABLE IF NOT EXISTS msstore_state_stage (
  agent_id uuid, state_key text, state_value text, version bigint, checksum text,
  updated_at timestamptz, expires_at timestamptz, deleted boolean
) ON COMMIT DELETE ROWS
"""
MERGE: Final = """
INSERT INTO agents.state AS s
  (agent_id, state_key, state_value, version, checksum, updated_at, expires_at, deleted)
SELECT agent_id, state_key, state_value::jsonb, version, checksum, updated_at, expires_at,
       deleted
FROM msstore_state_stage ORDER BY state_key COLLATE "C"
ON CONFLICT (agent_id, state_key) DO UPDATE SET
  state_value = EXCLUDED.state_value, version = EXCLUDED.version,
  checksum = EXCLUDED.checksum, updated_at = EXCLUDED.updated_at,
  expires_at = EXCLUDED.expires_at, deleted = EXCLUDED.deleted
WHERE s.version < EXCLUDED.version
"""
# Small batches (the flusher's usual 50 rows) skip the temp table: one statement over
# binary-bound arrays costs one round trip where staging + COPY + merge cost four.
UNNEST_MERGE: Final = """
{}INSERT INTO agents.state AS s
  (agent_id, state_key, state_value, version, checksum, updated_at, expires_at, deleted)
SELECT * FROM unnest(%b::uuid[], %b::text[], %b::text[]::jsonb[], %b::int8[], %b::text[],
                     %b::timestamptz[], %b::timestamptz[], %b::bool[]) AS u(a, k, v, n, c, t, e, d)
ORDER BY k COLLATE "C"
ON CONFLICT (agent_id, state_key) DO UPDATE SET
  state_value = EXCLUDED.state_value, version = EXCLUDED.version,
  checksum = EXCLUDED.checksum, updated_at = EXCLUDED.updated_at,
  expires_at = EXCLUDED.expires_at, deleted = EXCLUDED.deleted
WHERE s.version < EXCLUDED.version
"""
# The same statement registering unknown agents first (a data-modifying CTE: still one
# statement, so one round trip in autocommit, and the foreign key check at its end sees them).
WITH_AGENTS: Final = """WITH registered AS (
  INSERT INTO agents.registry (agent_id, agent_type, agent_name)
  SELECT id, 'msstore', name FROM unnest(%b::uuid[], %b::text[]) AS a(id, name)
  ON CONFLICT (agent_id) DO NOTHING
)
"""
MERGE_ROWS: Final = UNNEST_MERGE.format("")
MERGE_ROWS_AND_AGENTS: Final = UNNEST_MERGE.format(WITH_AGENTS)
SMALL_BATCH: Final = 256
CHUNK: Final = 4096
STAGE_TYPES: Final = ["uuid", "text", "text", "int8", "text", "timestamptz", "timestamptz", "bool"]
DEFAULT_DEADLINE: Final = 15.0  # seconds a call may wait for PostgreSQL, on the client
LIVE: Final = "NOT deleted AND (expires_at IS NULL OR expires_at > now())"
TOMBSTONE: Final = """
INSERT INTO agents.state AS s (agent_id, state_key, state_value, version, updated_at, deleted)
VALUES (%s, %s, 'null', %s, now(), true)
ON CONFLICT (agent_id, state_key) DO UPDATE SET
  state_value = 'null', version = EXCLUDED.version, checksum = NULL, updated_at = now(),
  expires_at = NULL, deleted = true
WHERE s.version < EXCLUDED.version
RETURNING (SELECT NOT o.deleted FROM agents.state o
           WHERE o.agent_id = %s AND o.state_key = %s)
"""
SWEEP: Final = """
WITH covered AS (
  SELECT COALESCE(min(version_offset + watermark), 0) AS version FROM agents.flush_progress
)
DELETE FROM agents.state s USING covered
WHERE s.version <= covered.version
  AND ((s.deleted AND s.updated_at <= now() - make_interval(secs => %s))
       OR s.expires_at <= now() - make_interval(secs => %s))
"""


class PostgresStateStore(PgStore, DataStorage, CheckpointStore, FlushLedger):
    """``DataStorage`` on ``agents.state``; needs migrations 0001-0002 applied.

    ``pool`` is a ``psycopg_pool.ConnectionPool`` (``Pools.pool("primary")``) or a DSN, for
    which the store opens a small pool of its own.
    """

    def __init__(
        self,
        pool: ConnectionPool[Any] | str,
        *,
        codec: Codec | None = None,
        deadline: float | None = DEFAULT_DEADLINE,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self._adopt(pool, name="msstore-state", connect_timeout=connect_timeout, deadline=deadline)
        self._codec = codec or default_codec
        self._known_agents: set[str] = set()  # agent tokens (first key tokens) registered

    @property
    def capabilities(self) -> frozenset[Capability]:
        return CAPABILITIES

    def _unknown_agents(self, keys: Iterable[str]) -> dict[uuid.UUID, str]:
        """The agents of ``keys`` this store has not registered yet: id -> token (its name)."""
        return self._unknown_tokens({keygrammar.agent_of(key) for key in keys})

    def _unknown_tokens(self, tokens: set[str]) -> dict[uuid.UUID, str]:
        wanted = {agent_of_token(t): t for t in tokens.difference(self._known_agents)}
        return dict(sorted(wanted.items()))  # in one order everywhere: no deadlock between two

    def _register(self, conn: psycopg.Connection[Any], wanted: dict[uuid.UUID, str]) -> None:
        conn.execute(ENSURE_AGENTS, (list(wanted), [t[:255] for t in wanted.values()]))
        self._known_agents.update(wanted.values())

    def _ensure_agents(self, conn: psycopg.Connection[Any], keys: Iterable[str]) -> None:
        wanted = self._unknown_agents(keys)
        if wanted:
            self._register(conn, wanted)

    def _run(self, what: str, fn: Callable[[Conn], T], *, write: bool = False) -> T:
        """:meth:`PgStore._run`, once more on a new connection when a registry row went away
        under a write (a foreign key violation), forgetting the agents it believed registered."""
        self._check_open()
        try:
            try:
                return super()._run(what, fn, write=write)
            except InvalidArgument as err:
                if err.sqlstate != "23503":
                    raise
                self._known_agents.clear()
                return super()._run(what, fn, write=write)
        except BaseException:
            self._known_agents.clear()  # rolled back, with any registry rows it had added
            raise

    # DataStorage -----------------------------------------------------------------------------

    def store(
        self, key: str, value: Any, *, version: int | None = None, ttl: float | None = None
    ) -> Record:
        keygrammar.check_key(key)
        text, checksum = jsonb_row(value, self._codec)
        if version is not None:
            check_version(version)
        seconds = check_ttl(ttl)

        def write(conn: psycopg.Connection[Any]) -> Record:
            self._ensure_agents(conn, [key])
            row = conn.execute(
                "INSERT INTO agents.state AS s (agent_id, state_key, state_value, version, "
                "checksum, updated_at, expires_at) VALUES (%s, %s, %s::jsonb, COALESCE(%s, 1), "
                "%s, now(), now() + make_interval(secs => %s)) "
                "ON CONFLICT (agent_id, state_key) DO UPDATE SET "
                "state_value = EXCLUDED.state_value, checksum = EXCLUDED.checksum, "
                "updated_at = EXCLUDED.updated_at, expires_at = EXCLUDED.expires_at, "
                "deleted = false, version = CASE WHEN %s::bigint IS NULL THEN s.version + 1 "
                "ELSE EXCLUDED.version END "
                "WHERE %s::bigint IS NULL OR s.version < EXCLUDED.version "
                "RETURNING version, extract(epoch FROM updated_at)::float8, "
                "extract(epoch FROM expires_at)::float8",
                (agent_id_for(key), key, text, version, checksum, seconds, version, version),
            ).fetchone()
            if row is None:
                current = conn.execute(
                    "SELECT version FROM agents.state WHERE agent_id = %s AND state_key = %s",
                    (agent_id_for(key), key),
                ).fetchone()
                conn.rollback()
                raise VersionConflict(
                    f"{key!r} is stored at version {current[0] if current else None}; version "
                    f"{version} is not newer",
                    key=key,
                    expected=version,
                    current=current[0] if current else None,
                    hint="store a higher version, or omit version to take the next one",
                )
            conn.commit()
            return Record(key, json.loads(text), row[0], row[1], row[2])

        result: Record = self._run(f"store {key!r}", write, write=True)
        return result

    def retrieve(self, key: str) -> Record | None:
        keygrammar.check_key(key)

        def read(conn: psycopg.Connection[Any]) -> Record | None:
            row = conn.execute(
                "SELECT state_value, version, extract(epoch FROM updated_at)::float8, "
                f"extract(epoch FROM expires_at)::float8 FROM agents.state "
                f"WHERE agent_id = %s AND state_key = %s AND {LIVE}",
                (agent_id_for(key), key),
            ).fetchone()
            conn.rollback()
            return None if row is None else Record(key, row[0], row[1], row[2], row[3])

        result: Record | None = self._run(f"retrieve {key!r}", read)
        return result

    def remove(self, key: str, *, below_version: int | None = None) -> bool:
        keygrammar.check_key(key)
        if below_version is not None:
            check_version(below_version)

        agent = agent_id_for(key)

        def delete(conn: psycopg.Connection[Any]) -> bool:
            if below_version is None:
                gone = conn.execute(
                    "DELETE FROM agents.state WHERE agent_id = %s AND state_key = %s "
                    "RETURNING NOT deleted",
                    (agent, key),
                ).fetchone()
            else:  # a tombstone at the delete's version (migration 0016)
                self._ensure_agents(conn, [key])
                gone = conn.execute(TOMBSTONE, (agent, key, below_version, agent, key)).fetchone()
            conn.commit()
            return bool(gone and gone[0])

        result: bool = self._run(f"remove {key!r}", delete, write=True)
        return result

    def search(self, query: Query | str) -> list[Record]:
        query = check_query(query)
        if query.text is not None:
            require(self.capabilities, Capability.SEARCH_TEXT, backend=repr(self))
        where = [sql.SQL(LIVE)]
        params: list[Any] = []
        if query.prefix:
            where.append(sql.SQL("state_key LIKE %s"))
            params.append(re.sub(r"([\\%_])", r"\\\1", query.prefix) + "%")
        if query.where is not None:
            where.append(sql.SQL("state_value @> %s::jsonb"))
            params.append(jsonb_text(dict(query.where), self._codec))
        statement = sql.SQL(
            "SELECT state_key, state_value, version, extract(epoch FROM updated_at)::float8, "
            "extract(epoch FROM expires_at)::float8 FROM agents.state WHERE {} "
            'ORDER BY state_key COLLATE "C" LIMIT {}'
        ).format(sql.SQL(" AND ").join(where), sql.Literal(query.limit))

        def read(conn: psycopg.Connection[Any]) -> list[Record]:
            rows = conn.execute(statement, params).fetchall()
            conn.rollback()
            return [Record(*row) for row in rows]

        result: list[Record] = self._run("search", read)
        return result

    def upsert_many(self, records: Iterable[Record]) -> UpsertResult:
        """Version-guarded bulk upsert, all or nothing.

        Up to ``SMALL_BATCH`` rows: every value encoded first, then one statement over binary
        arrays, in autocommit (a statement is atomic; one round trip). Larger batches go in
        chunks of ``CHUNK`` rows in one transaction: binary ``COPY`` of a chunk into a temp
        table, then its merge is sent (pipeline mode) and the next chunk is encoded while
        PostgreSQL merges, so the client's encoding overlaps the server's work. A value that
        cannot be stored raises ``SerializationError`` and rolls the transaction back: nothing
        is written either way.
        """
        newest, total = newest_records(records, self._codec.encode)
        if not newest:
            return UpsertResult(written=0, skipped=total)
        # Rows are written in key order (byte order, as COLLATE "C"), so that two concurrent
        # upserts of overlapping keys lock them in the same order and cannot deadlock.
        items = sorted(newest.items())
        if len(items) <= SMALL_BATCH:
            columns, tokens = self._columns(items)  # raises before writing

            def write_small(conn: psycopg.Connection[Any]) -> int:
                # One statement is its own transaction: one round trip, where BEGIN, the
                # statement and COMMIT would cost three (most of a small flush's time).
                agents = self._unknown_tokens(tokens)
                if agents:
                    names = [t[:255] for t in agents.values()]
                    params = [list(agents), names, *columns]
                    written = conn.execute(MERGE_ROWS_AND_AGENTS, params).rowcount
                    self._known_agents.update(agents.values())
                else:
                    written = conn.execute(MERGE_ROWS, columns).rowcount
                return written

            written: int = self._run_statement(f"upsert {len(items)} rows", write_small)
        else:
            written = self._run(
                f"upsert {len(items)} rows", lambda c: self._merge(c, items), write=True
            )
        return UpsertResult(written=written, skipped=total - written)

    def _columns(self, items: list[tuple[str, Record]]) -> tuple[list[list[Any]], set[str]]:
        """The statement's eight array parameters for ``items`` (what :meth:`_row` makes, by
        column), and the agent tokens of their keys."""
        columns: list[list[Any]] = [[] for _ in range(8)]
        agents, keys, texts, versions, sums, updated, expires, deleted = columns
        tokens: set[str] = set()
        codec = self._codec
        fromtimestamp, UTC = datetime.datetime.fromtimestamp, datetime.UTC
        for key, rec in items:
            token = keygrammar.agent_of(key)
            tokens.add(token)
            agents.append(agent_of_token(token))
            keys.append(key)
            if rec.deleted:
                texts.append("null")
                sums.append(None)
            else:
                text, checksum = jsonb_row(rec.value, codec)
                texts.append(text)
                sums.append(checksum)
            versions.append(rec.version)
            updated.append(fromtimestamp(rec.updated_at, UTC))
            expires.append(None if rec.expires_at is None else fromtimestamp(rec.expires_at, UTC))
            deleted.append(rec.deleted)
        return columns, tokens

    def _row(self, key: str, rec: Record) -> tuple[Any, ...]:
        if rec.deleted:
            text, checksum = "null", None
        else:
            text, checksum = jsonb_row(rec.value, self._codec)
        return (
            agent_id_for(key),
            key,
            text,
            rec.version,
            checksum,
            timestamp(rec.updated_at),
            timestamp(rec.expires_at),
            rec.deleted,
        )

    def _merge(self, conn: psycopg.Connection[Any], items: list[tuple[str, Record]]) -> int:
        self._ensure_agents(conn, (key for key, _ in items))
        conn.execute(STAGE)
        pending = iter(items)

        def chunk() -> list[tuple[Any, ...]]:
            return [self._row(key, rec) for key, rec in itertools.islice(pending, CHUNK)]

        written = 0
        rows = chunk()
        with conn.cursor() as cur, conn.cursor() as merge:
            while rows:
                with cur.copy("COPY msstore_state_stage FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(STAGE_TYPES)
                    for row in rows:
                        copy.write_row(row)
                with conn.pipeline():  # sent now; results read when the block ends
                    merge.execute(MERGE)
                    cur.execute("TRUNCATE msstore_state_stage")
                    rows = chunk()  # meanwhile, the server merges
                written += merge.rowcount
        conn.commit()
        return written

    # CheckpointStore (agents.checkpoints) -----------------------------------------------------

    def save_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        text = jsonb_text(checkpoint.values, self._codec)
        agent_key = checkpoint.agent + ".checkpoint"
        keygrammar.check_key(agent_key)

        def save(conn: psycopg.Connection[Any]) -> Checkpoint:
            self._ensure_agents(conn, [agent_key])
            row = conn.execute(
                "INSERT INTO agents.checkpoints (agent_id, checkpoint_name, state_snapshot, "
                "kv_revision, trigger_event, created_at) VALUES (%s, %s, %s::jsonb, %s, %s, %s) "
                "RETURNING checkpoint_id",
                (
                    agent_id_for(agent_key),
                    checkpoint.name,
                    text,
                    checkpoint.kv_revision,
                    checkpoint.trigger,
                    timestamp(checkpoint.created_at),
                ),
            ).fetchone()
            conn.commit()
            assert row is not None
            return attrs.evolve(checkpoint, checkpoint_id=str(row[0]))

        result: Checkpoint = self._run(f"checkpoint agent {checkpoint.agent!r}", save, write=True)
        return result

    def _checkpoints(self, agent: str, checkpoint_id: str | None) -> list[Checkpoint]:
        agent_key = agent + ".checkpoint"
        keygrammar.check_key(agent_key)
        try:
            wanted = None if checkpoint_id is None else uuid.UUID(checkpoint_id)
        except ValueError:
            return []

        def read(conn: psycopg.Connection[Any]) -> list[Checkpoint]:
            rows = conn.execute(
                "SELECT checkpoint_id, checkpoint_name, state_snapshot, kv_revision, "
                "trigger_event, extract(epoch FROM created_at)::float8 FROM agents.checkpoints "
                "WHERE agent_id = %s AND (%s::uuid IS NULL OR checkpoint_id = %s::uuid) "
                "ORDER BY created_at DESC, checkpoint_id",
                (agent_id_for(agent_key), wanted, wanted),
            ).fetchall()
            conn.rollback()
            return [
                Checkpoint(
                    checkpoint_id=str(r[0]),
                    agent=agent,
                    name=r[1],
                    values=r[2],
                    kv_revision=r[3] or 0,
                    trigger=r[4],
                    created_at=r[5],
                )
                for r in rows
            ]

        result: list[Checkpoint] = self._run(f"read checkpoints of {agent!r}", read)
        return result

    def load_checkpoint(self, agent: str, checkpoint_id: str) -> Checkpoint | None:
        found = self._checkpoints(agent, checkpoint_id)
        return found[0] if found else None

    def list_checkpoints(self, agent: str) -> list[Checkpoint]:
        return self._checkpoints(agent, None)

    # FlushLedger (migration 0011) -------------------------------------------------------------

    def claim_feed(self, bucket: str, incarnation: str) -> tuple[int, int]:
        def claim(conn: psycopg.Connection[Any]) -> tuple[int, int]:
            # Serialised per bucket: two processes meeting a new incarnation agree on one offset.
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('msstore.flush_progress'), hashtext(%s))",
                (bucket,),
            )
            row = conn.execute(
                "SELECT incarnation, version_offset, watermark FROM agents.flush_progress "
                "WHERE bucket = %s",
                (bucket,),
            ).fetchone()
            if row is not None and row[0] == incarnation:
                conn.rollback()
                return int(row[1]), int(row[2])
            top = conn.execute("SELECT COALESCE(max(version), 0) FROM agents.state").fetchone()
            offset = int(top[0]) if top else 0
            conn.execute(
                "INSERT INTO agents.flush_progress (bucket, incarnation, version_offset) "
                "VALUES (%s, %s, %s) ON CONFLICT (bucket) DO UPDATE SET "
                "incarnation = EXCLUDED.incarnation, version_offset = EXCLUDED.version_offset, "
                "watermark = 0, updated_at = now()",
                (bucket, incarnation, offset),
            )
            conn.commit()
            return offset, 0

        result: tuple[int, int] = self._run(f"claim flush progress of {bucket}", claim, write=True)
        return result

    def advance_feed(self, bucket: str, incarnation: str, watermark: int) -> None:
        def advance(conn: psycopg.Connection[Any]) -> None:
            conn.execute(
                "UPDATE agents.flush_progress SET watermark = %s, updated_at = now() "
                "WHERE bucket = %s AND incarnation = %s AND watermark < %s",
                (watermark, bucket, incarnation, watermark),
            )
            conn.commit()

        self._run(f"advance flush progress of {bucket}", advance, write=True)

    def record_failures(self, failures: Sequence[FlushFailure]) -> None:
        if not failures:
            return
        columns = (
            [f.bucket for f in failures],
            [f.key for f in failures],
            [f.revision for f in failures],
            [f.reason[:2000] for f in failures],
        )

        def record(conn: psycopg.Connection[Any]) -> None:
            conn.execute(
                "INSERT INTO agents.flush_failures (bucket, state_key, revision, reason) "
                "SELECT * FROM unnest(%b::text[], %b::text[], %b::int8[], %b::text[]) "
                "ON CONFLICT (bucket, revision) DO NOTHING",
                columns,
            )
            conn.commit()

        self._run(f"record {len(failures)} flush failures", record, write=True)

    def flush_failures(self, bucket: str) -> list[FlushFailure]:
        def read(conn: psycopg.Connection[Any]) -> list[FlushFailure]:
            rows = conn.execute(
                "SELECT bucket, state_key, revision, reason, extract(epoch FROM seen_at)::float8 "
                "FROM agents.flush_failures WHERE bucket = %s ORDER BY revision",
                (bucket,),
            ).fetchall()
            conn.rollback()
            return [FlushFailure(*row) for row in rows]

        result: list[FlushFailure] = self._run(f"read flush failures of {bucket}", read)
        return result

    def sweep(self, *, tombstone_retention: float) -> int:
        seconds = check_retention(tombstone_retention)

        def sweep(conn: psycopg.Connection[Any]) -> int:
            gone = conn.execute(SWEEP, (seconds, seconds)).rowcount
            conn.commit()
            return gone

        result: int = self._run("sweep expired rows and old tombstones", sweep, write=True)
        return result
