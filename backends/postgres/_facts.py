"""``FactStore`` on knowledge.facts + knowledge.embeddings (migrations 0006, 0007, 0012, 0013).

* Inserts run in one transaction: same-key writers are serialised by advisory locks (sorted,
  so two batches cannot deadlock), vectors to reuse are locked ``FOR SHARE`` (a concurrent
  delete cannot take them away mid-insert), facts go in through one ``unnest`` statement of
  ``%b``-bound arrays, new vectors through binary ``COPY``, reused ones are copied server-side.
* Vector search: the HNSW cosine index of 0007, with ``hnsw.ef_search`` and iterative scans set
  for that query only, so filters on the joined facts still yield ``k`` rows.
* Text search: ``to_tsvector('english', text_content)`` (GIN index of 0013) against the query's
  words OR-ed together, ranked by ``ts_rank``.
* The embedding dimension is the column's (``msstore migrate --embedding-dim``, default 1536).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from msstore.codec import Codec, default_codec
from msstore.errors import InvalidArgument, NotFound
from msstore.knowledge import (
    Fact,
    FactBatch,
    FactFilter,
    FactStoreBase,
    content_hash,
    next_version,
    object_type,
    vectors_gone,
)
from msstore.spi import as_matrix

from ._agents import ENSURE_AGENTS, agent_of_token
from ._base import KNOWLEDGE_DEADLINE, Conn, PgStore, timestamp
from ._config import DEFAULT_CONNECT_TIMEOUT
from ._jsonb import jsonb_text
from ._pgvector import HnswParams, VectorCodec, ann_settings, ensure_pgvector, run_ann
from ._tx import classify

__all__ = ["PostgresFactStore"]

FACT_COLUMNS: Final = (
    "f.fact_id, f.entity_type, f.entity_id, f.predicate, f.object_value, "
    "f.confidence_score::float8, extract(epoch FROM f.valid_from)::float8, "
    "extract(epoch FROM f.valid_until)::float8, r.agent_name, f.evidence, f.fact_key, f.version, "
    "extract(epoch FROM f.created_at)::float8, "
    "(SELECT x.text_content FROM knowledge.embeddings x WHERE x.fact_id = f.fact_id LIMIT 1)"
)
FROM_FACTS: Final = (
    "knowledge.facts f LEFT JOIN agents.registry r ON r.agent_id = f.source_agent_id"
)
INSERT_FACTS: Final = """
INSERT INTO knowledge.facts (fact_id, entity_type, entity_id, predicate, object_value,
  object_type, source_agent_id, confidence_score, evidence, valid_from, valid_until, fact_key,
  version)
SELECT * FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::text[], %b::text[]::jsonb[],
  %b::text[], %b::uuid[], %b::float8[]::numeric[], %b::text[]::jsonb[], %b::timestamptz[],
  %b::timestamptz[], %b::text[], %b::int8[])
RETURNING fact_id, extract(epoch FROM created_at)::float8
"""
COPY_REUSED: Final = """
INSERT INTO knowledge.embeddings (fact_id, embedding_model, embedding_version, embedding_vector,
  text_content, content_hash)
SELECT n.id, e.embedding_model, e.embedding_version, e.embedding_vector, n.text, e.content_hash
FROM unnest(%b::uuid[], %b::uuid[], %b::text[]) AS n(id, src, text)
JOIN knowledge.embeddings e ON e.embedding_id = n.src
"""
TSQUERY: Final = "replace(plainto_tsquery('english', %s)::text, ' & ', ' | ')::tsquery"
DEFAULT_SEARCH: Final = HnswParams()


def _fact(row: Sequence[Any]) -> Fact:
    return Fact(
        fact_id=str(row[0]),
        entity_type=row[1],
        entity_id=row[2],
        predicate=row[3],
        value=row[4],
        confidence=row[5],
        valid_from=row[6],
        valid_until=row[7],
        source_agent=row[8],
        evidence=row[9] or {},
        key=row[10],
        version=row[11],
        created_at=row[12],
        text=row[13],
    )


class _InsertPlan:
    """An insert's client-side work, done once before the transaction (and its retries)."""

    def __init__(self, batch: FactBatch, *, dim: int, codec: Codec) -> None:
        facts = batch.facts
        self.facts = facts
        self.texts = [f.content for f in facts]
        self.hashes = [content_hash(t) for t in self.texts]
        self.values = [jsonb_text(f.value, codec) for f in facts]
        self.evidence = [jsonb_text(dict(f.evidence), codec) for f in facts]
        fresh = [h for h in dict.fromkeys(self.hashes) if h in batch.vectors]
        self.matrix = as_matrix([batch.vectors[h] for h in fresh], dim=dim, rows=len(fresh))
        self.fresh = {h: n for n, h in enumerate(fresh)}

    def fact_columns(
        self, keep: Sequence[int], ids: Sequence[uuid.UUID], versions: Sequence[int]
    ) -> list[list[Any]]:
        kept = [self.facts[i] for i in keep]
        agents = [None if f.source_agent is None else agent_of_token(f.source_agent) for f in kept]
        return [
            list(ids),
            [f.entity_type for f in kept],
            [f.entity_id for f in kept],
            [f.predicate for f in kept],
            [self.values[i] for i in keep],
            [object_type(f.value) for f in kept],
            agents,
            [f.confidence for f in kept],
            [self.evidence[i] for i in keep],
            [timestamp(f.valid_from) for f in kept],
            [timestamp(f.valid_until) for f in kept],
            [f.key for f in kept],
            list(versions),
        ]


class PostgresFactStore(PgStore, FactStoreBase):
    """Facts and their vectors in PostgreSQL with pgvector (see the module docstring).

    ``pool`` is a ``psycopg_pool.ConnectionPool`` or a DSN. ``search`` tunes the HNSW scans
    (``ef_search``, iterative scans); the index itself was built by migration 0007.
    """

    def __init__(
        self,
        pool: ConnectionPool[Any] | str,
        *,
        search: HnswParams = DEFAULT_SEARCH,
        codec: Codec | None = None,
    ) -> None:
        self._adopt(
            pool,
            name="msstore-facts",
            connect_timeout=DEFAULT_CONNECT_TIMEOUT,
            deadline=KNOWLEDGE_DEADLINE,
        )
        self._json = codec or default_codec
        try:
            self._vec, iterative = self._open()
        except BaseException:
            if self._owns_pool:
                self._pool.close()
            raise
        self._dim = self._vec.dim
        self._settings = ann_settings(search, iterative=iterative)

    def _open(self) -> tuple[VectorCodec, bool]:
        try:
            with self._pool.connection() as conn:
                version = ensure_pgvector(conn)
                row = conn.execute(
                    "SELECT format_type(a.atttypid, a.atttypmod), a.atttypid FROM pg_attribute a "
                    "WHERE a.attrelid = to_regclass('knowledge.embeddings') "
                    "AND a.attname = 'embedding_vector'"
                ).fetchone()
                keyed = conn.execute(
                    "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('knowledge.facts') "
                    "AND attname = 'fact_key'"
                ).fetchone()
                conn.rollback()
        except psycopg.Error as err:  # (PoolTimeout too: the server cannot be reached)
            raise classify(err, what="open the knowledge store", ours=True) from err
        if row is None or keyed is None:
            raise NotFound(
                "knowledge.facts / knowledge.embeddings are missing or out of date",
                hint="apply msstore's migrations: msstore migrate up (0006, 0007, 0012, 0013)",
            )
        found = re.fullmatch(r"(vector|halfvec)\((\d+)\)", str(row[0]))
        if found is None:
            raise InvalidArgument(f"knowledge.embeddings.embedding_vector is {row[0]}")
        codec = VectorCodec(vector_type=found[1], dim=int(found[2]), oid=int(row[1]))
        return codec, version >= (0, 8)

    def _prepare(self, conn: Conn) -> None:
        self._vec.register(conn)

    # writes ----------------------------------------------------------------------------------

    def _known_hashes(self, hashes: list[str], model: str, version: str) -> set[str]:
        def read(conn: psycopg.Connection[Any]) -> set[str]:
            rows = conn.execute(
                "SELECT DISTINCT content_hash FROM knowledge.embeddings WHERE embedding_model = %s "
                "AND embedding_version = %s AND content_hash = ANY(%b::text[])",
                (model, version, hashes),
            ).fetchall()
            conn.rollback()
            return {r[0] for r in rows}

        result: set[str] = self._run("look up stored vectors", read)
        return result

    def _insert(self, batch: FactBatch) -> list[Fact]:
        # Everything client-side is computed before the transaction opens.
        plan = _InsertPlan(batch, dim=self.dim, codec=self._json)
        facts, model, version = batch.facts, batch.model, batch.version

        def write(conn: psycopg.Connection[Any]) -> list[Fact]:
            keep, versions, replaced = self._versions(conn, facts, skip_stale=batch.skip_stale)
            if not keep:
                conn.rollback()
                return []
            source = self._reusable(conn, plan, keep, model=model, version=version)
            if replaced:
                conn.execute(
                    "DELETE FROM knowledge.facts WHERE fact_id = ANY(%b::uuid[])", (replaced,)
                )
            kept = [facts[i] for i in keep]
            agents = {
                agent_of_token(f.source_agent): f.source_agent[:255]
                for f in kept
                if f.source_agent is not None
            }
            if agents:
                conn.execute(ENSURE_AGENTS, (list(agents), list(agents.values())))
            ids = [uuid.uuid4() for _ in keep]
            rows = conn.execute(INSERT_FACTS, plan.fact_columns(keep, ids, versions)).fetchall()
            created = {r[0]: r[1] for r in rows}
            self._insert_vectors(conn, plan, keep, ids, source, model=model, version=version)
            conn.commit()
            return [
                attrs.evolve(
                    f,
                    fact_id=str(ids[n]),
                    version=versions[n],
                    created_at=created[ids[n]],
                    text=plan.texts[keep[n]],
                )
                for n, f in enumerate(kept)
            ]

        result: list[Fact] = self._run(f"add {len(facts)} facts", write)
        return result

    @staticmethod
    def _versions(
        conn: psycopg.Connection[Any], facts: Sequence[Fact], *, skip_stale: bool
    ) -> tuple[list[int], list[int], list[uuid.UUID]]:
        """Which facts to write, their versions, and the stored facts they replace."""
        keys = sorted({f.key for f in facts if f.key is not None})
        stored: dict[str, tuple[int, uuid.UUID]] = {}
        if keys:
            # Same-key writers queue here; sorted, so two batches cannot deadlock.
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('msstore.fact_key'), hashtext(k)) "
                "FROM unnest(%b::text[]) AS k ORDER BY k",
                (keys,),
            )
            for key, ver, fid in conn.execute(
                "SELECT fact_key, version, fact_id FROM knowledge.facts "
                "WHERE fact_key = ANY(%b::text[])",
                (keys,),
            ):
                stored[key] = (ver, fid)
        keep: list[int] = []
        versions: list[int] = []
        replaced: list[uuid.UUID] = []
        for i, fact in enumerate(facts):
            current = stored.get(fact.key) if fact.key is not None else None
            version = next_version(
                fact, None if current is None else current[0], skip_stale=skip_stale
            )
            if version is None:
                continue
            keep.append(i)
            versions.append(version)
            if current is not None:
                replaced.append(current[1])
        return keep, versions, replaced

    @staticmethod
    def _reusable(
        conn: psycopg.Connection[Any],
        plan: _InsertPlan,
        keep: Sequence[int],
        *,
        model: str,
        version: str,
    ) -> dict[str, uuid.UUID]:
        """A stored embedding per reused hash, locked until commit (``StaleVectors`` if gone)."""
        wanted = sorted({plan.hashes[i] for i in keep if plan.hashes[i] not in plan.fresh})
        source: dict[str, uuid.UUID] = {}
        if not wanted:
            return source
        for h, eid in conn.execute(
            "SELECT content_hash, embedding_id FROM knowledge.embeddings "
            "WHERE embedding_model = %s AND embedding_version = %s "
            "AND content_hash = ANY(%b::text[]) FOR SHARE",
            (model, version, wanted),
        ):
            source.setdefault(h, eid)
        missing = [h for h in wanted if h not in source]
        if missing:
            conn.rollback()
            raise vectors_gone(missing)
        return source

    def _insert_vectors(
        self,
        conn: psycopg.Connection[Any],
        plan: _InsertPlan,
        keep: Sequence[int],
        ids: Sequence[uuid.UUID],
        source: Mapping[str, uuid.UUID],
        *,
        model: str,
        version: str,
    ) -> None:
        """New vectors through binary COPY; reused ones copied server-side."""
        new = [(n, i) for n, i in enumerate(keep) if plan.hashes[i] in plan.fresh]
        if new:
            chunks = self._vec.copy_rows(
                [plan.hashes[i].encode() for _, i in new],
                plan.matrix[[plan.fresh[plan.hashes[i]] for _, i in new]],
                [
                    (ids[n].bytes, model.encode(), version.encode(), plan.texts[i].encode())
                    for n, i in new
                ],
            )
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY knowledge.embeddings (content_hash, embedding_vector, fact_id, "
                    "embedding_model, embedding_version, text_content) FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                for chunk in chunks:
                    copy.write(chunk)
        reused = [
            (ids[n], source[plan.hashes[i]], plan.texts[i])
            for n, i in enumerate(keep)
            if plan.hashes[i] in source
        ]
        if reused:
            conn.execute(COPY_REUSED, [list(c) for c in zip(*reused, strict=True)])

    def _remove(self, fact_ids: list[str]) -> int:
        ids = []
        for fid in fact_ids:
            try:
                ids.append(uuid.UUID(fid))
            except ValueError:
                continue

        def delete(conn: psycopg.Connection[Any]) -> int:
            gone = conn.execute(
                "DELETE FROM knowledge.facts WHERE fact_id = ANY(%b::uuid[])", (ids,)
            ).rowcount
            conn.commit()
            return gone

        result: int = self._run("remove facts", delete)
        return result

    def _remove_key(self, key: str, below_version: int | None) -> bool:
        def delete(conn: psycopg.Connection[Any]) -> bool:
            gone = conn.execute(
                "DELETE FROM knowledge.facts WHERE fact_key = %s "
                "AND (%s::bigint IS NULL OR version < %s::bigint)",
                (key, below_version, below_version),
            ).rowcount
            conn.commit()
            return gone > 0

        result: bool = self._run(f"remove fact {key!r}", delete)
        return result

    # reads -----------------------------------------------------------------------------------

    def _filters(self, flt: FactFilter) -> tuple[list[sql.Composable], list[Any]]:
        where: list[sql.Composable] = []
        params: list[Any] = []
        for column, value in (
            ("f.entity_type", flt.entity_type),
            ("f.entity_id", flt.entity_id),
            ("f.predicate", flt.predicate),
        ):
            if value is not None:
                where.append(sql.SQL(f"{column} = %s"))
                params.append(value)
        if flt.min_confidence is not None:
            where.append(sql.SQL("f.confidence_score >= %s"))
            params.append(flt.min_confidence)
        if flt.valid_at is not None:
            where.append(
                sql.SQL("f.valid_from <= %s AND (f.valid_until IS NULL OR f.valid_until > %s)")
            )
            params += [timestamp(flt.valid_at)] * 2
        if flt.source_agent is not None:
            where.append(sql.SQL("f.source_agent_id = %s"))
            params.append(agent_of_token(flt.source_agent))
        if flt.key_prefix is not None:
            where.append(sql.SQL("f.fact_key LIKE %s"))
            params.append(re.sub(r"([\\%_])", r"\\\1", flt.key_prefix) + "%")
        if flt.where is not None:
            where.append(sql.SQL("f.object_value @> %s::jsonb"))
            params.append(jsonb_text(dict(flt.where), self._json))
        return where, params

    def _vector_search(
        self, query: Any, k: int, flt: FactFilter, model: str, version: str
    ) -> list[tuple[Fact, float]]:
        where, params = self._filters(flt)
        statement = sql.SQL(
            "WITH hits AS MATERIALIZED (SELECT e.fact_id, e.embedding_vector <=> %s AS distance "
            "FROM knowledge.embeddings e JOIN knowledge.facts f ON f.fact_id = e.fact_id "
            "WHERE e.embedding_model = %s AND e.embedding_version = %s {} "
            "ORDER BY distance LIMIT %s) "
            "SELECT {}, h.distance FROM hits h JOIN {} ON f.fact_id = h.fact_id "
            "ORDER BY h.distance, f.fact_id"
        ).format(
            sql.SQL("").join(sql.SQL(" AND ") + w for w in where),
            sql.SQL(FACT_COLUMNS),
            sql.SQL(FROM_FACTS),
        )
        args = [self._vec.param(query), model, version, *params, k]

        def read(conn: psycopg.Connection[Any]) -> list[tuple[Fact, float]]:
            return [
                (_fact(r), float(r[-1])) for r in run_ann(conn, self._settings, statement, args)
            ]

        result: list[tuple[Fact, float]] = self._run("vector search over facts", read)
        return result

    def _text_search(
        self, text: str, k: int, flt: FactFilter, model: str, version: str
    ) -> list[tuple[Fact, float]]:
        where, params = self._filters(flt)
        statement = sql.SQL(
            "SELECT {}, ts_rank(to_tsvector('english', e.text_content), q.q) AS rank "
            "FROM knowledge.embeddings e JOIN {} ON f.fact_id = e.fact_id, "
            "(SELECT " + TSQUERY + " AS q) q "
            "WHERE e.embedding_model = %s AND e.embedding_version = %s "
            "AND to_tsvector('english', e.text_content) @@ q.q {} "
            "ORDER BY rank DESC, f.fact_id LIMIT %s"
        ).format(
            sql.SQL(FACT_COLUMNS),
            sql.SQL(FROM_FACTS),
            sql.SQL("").join(sql.SQL(" AND ") + w for w in where),
        )

        def read(conn: psycopg.Connection[Any]) -> list[tuple[Fact, float]]:
            rows = conn.execute(statement, [text, model, version, *params, k]).fetchall()
            conn.rollback()
            return [(_fact(r), float(r[-1])) for r in rows]

        result: list[tuple[Fact, float]] = self._run("text search over facts", read)
        return result

    def _select(self, what: str, condition: sql.Composable, params: Sequence[Any]) -> list[Fact]:
        statement = sql.SQL("SELECT {} FROM {} WHERE {}").format(
            sql.SQL(FACT_COLUMNS), sql.SQL(FROM_FACTS), condition
        )

        def read(conn: psycopg.Connection[Any]) -> list[Fact]:
            rows = conn.execute(statement, params).fetchall()
            conn.rollback()
            return [_fact(r) for r in rows]

        result: list[Fact] = self._run(what, read)
        return result

    def _get(self, fact_id: str) -> Fact | None:
        try:
            wanted = uuid.UUID(fact_id)
        except ValueError:
            return None
        found = self._select("read a fact", sql.SQL("f.fact_id = %s"), [wanted])
        return found[0] if found else None

    def _get_key(self, key: str) -> Fact | None:
        found = self._select("read a fact", sql.SQL("f.fact_key = %s"), [key])
        return found[0] if found else None

    def _scan(self, flt: FactFilter, limit: int) -> list[Fact]:
        where, params = self._filters(flt)
        condition = sql.SQL(" AND ").join([sql.SQL("f.fact_key IS NOT NULL"), *where])
        return self._select(
            "list facts",
            condition
            + sql.SQL(' ORDER BY f.fact_key COLLATE "C" LIMIT {}').format(sql.Literal(limit)),
            params,
        )

    def _count(self) -> int:
        def read(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute("SELECT count(*) FROM knowledge.facts").fetchone()
            conn.rollback()
            return int(row[0]) if row else 0

        result: int = self._run("count facts", read)
        return result
