"""``VectorIndex`` on pgvector: one table per collection, an HNSW index, JSONB metadata.

A collection ``NAME`` is the table ``<schema>.vec_NAME`` (schema ``knowledge`` by default)::

    id text PRIMARY KEY, embedding vector(dim) | halfvec(dim), metadata jsonb, updated_at

with an HNSW index using the metric's operator class and a GIN index on ``metadata`` for
filters. Opening a collection creates it if missing and checks an existing one (its type,
dimension and metric must match: a mismatch is an ``InvalidArgument``, never a silent rebuild).

Writes: :meth:`PgVectorIndex.add` validates everything first (dimension, finiteness, halfvec
range, ids, metadata through the codec), then loads through binary ``COPY`` in one transaction.
A large first load into an empty collection loads the rows and then builds the HNSW graph, as
pgvector advises (much faster than growing the graph row by row); otherwise rows are staged and
merged with ``INSERT ... ON CONFLICT (id) DO UPDATE``.

Reads: ``ORDER BY embedding <op> query LIMIT k`` with ``hnsw.ef_search`` and, for filtered
queries, iterative index scans (pgvector >= 0.8) set for that query only, so a filtered top-k
returns k rows when k rows match. Distances follow pgvector: cosine distance, Euclidean
distance, negative inner product; lower is closer.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from msstore.codec import Codec, default_codec
from msstore.errors import InvalidArgument
from msstore.records import Hit
from msstore.registry import redact_url
from msstore.spi import VectorIndexBase, check_vector_type

from ._base import KNOWLEDGE_DEADLINE, Conn, PgStore
from ._config import DEFAULT_CONNECT_TIMEOUT
from ._jsonb import jsonb_text
from ._pgvector import OPERATORS, HnswParams, VectorCodec, ann_settings, ensure_pgvector, run_ann
from ._tx import classify

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

T = TypeVar("T")

__all__ = ["PgVectorIndex"]

log = logging.getLogger("msstore.backends.postgres.vector")

_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,40}")
DEFAULT_HNSW: Final = HnswParams()
BULK_BUILD_ROWS: Final = 5000  # a first load at least this big builds the graph afterwards


class PgVectorIndex(PgStore, VectorIndexBase):
    """Vectors with ids and JSON metadata in PostgreSQL, searched through pgvector's HNSW.

    ``pool`` is a ``psycopg_pool.ConnectionPool`` or a DSN (the index then owns a small pool).
    ``hnsw=None`` keeps no ANN index: every search is exact (a sequential scan), which suits
    small collections. ``build_memory`` is ``maintenance_work_mem`` while a graph is built.
    """

    def __init__(
        self,
        pool: ConnectionPool[Any] | str,
        *,
        name: str,
        dim: int,
        metric: str = "cosine",
        vector_type: str = "vector",
        hnsw: HnswParams | None = DEFAULT_HNSW,
        schema: str = "knowledge",
        build_memory: str = "512MB",
        codec: Codec | None = None,
    ) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidArgument(
                f"collection name must match {_NAME.pattern} (it names a table), got {name!r}"
            )
        if not isinstance(schema, str) or not _NAME.fullmatch(schema):
            raise InvalidArgument(f"schema must match {_NAME.pattern}, got {schema!r}")
        if hnsw is not None and not isinstance(hnsw, HnswParams):
            raise InvalidArgument(f"hnsw must be HnswParams or None, not {hnsw!r}")
        if not re.fullmatch(r"[0-9]{1,6}\s*(kB|MB|GB)", str(build_memory)):
            raise InvalidArgument(f"build_memory must look like '512MB', got {build_memory!r}")
        self._type = check_vector_type(vector_type)
        VectorIndexBase.__init__(self, dim=dim, metric=metric, half=self._type == "halfvec")
        self._hnsw = hnsw
        self._build_memory = build_memory
        self._codec_json = codec or default_codec
        self.name = name
        self._table = sql.Identifier(schema, f"vec_{name}")
        self._index_name = f"vec_{name}_hnsw"
        self._index = sql.Identifier(schema, self._index_name)
        self._adopt(
            pool,
            name=f"msstore-vec-{name}",
            connect_timeout=DEFAULT_CONNECT_TIMEOUT,
            deadline=KNOWLEDGE_DEADLINE,
        )
        self._lock = threading.Lock()
        try:
            self._vec, self._iterative = self._open(schema)
        except BaseException:
            if self._owns_pool:
                self._pool.close()
            raise
        op = sql.SQL(OPERATORS[self._metric])
        self._search_sql = {
            filtered: sql.SQL(
                "WITH hits AS MATERIALIZED (SELECT id, metadata, embedding {op} %s AS distance "
                "FROM {t} {where} ORDER BY distance LIMIT %s) "
                'SELECT id, distance, metadata FROM hits ORDER BY distance, id COLLATE "C"'
            ).format(
                op=op,
                t=self._table,
                where=sql.SQL("WHERE metadata @> %s::jsonb" if filtered else ""),
            )
            for filtered in (False, True)
        }

    def __repr__(self) -> str:
        return (
            f"PgVectorIndex({self.name!r}, {self._type}({self._dim}), metric={self._metric!r}, "
            f"{redact_url(str(self._pool.conninfo))})"
        )

    # setup -----------------------------------------------------------------------------------

    def _opclass(self) -> sql.Composable:
        return sql.SQL(f"{self._type}_{self._metric}_ops")

    def _create_hnsw(self, conn: psycopg.Connection[Any]) -> None:
        assert self._hnsw is not None
        conn.execute(
            sql.SQL("SELECT set_config('maintenance_work_mem', {}, true)").format(
                sql.Literal(self._build_memory)
            )
        )
        conn.execute(
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (embedding {}) "
                "WITH (m = {}, ef_construction = {})"
            ).format(
                sql.Identifier(self._index_name),
                self._table,
                self._opclass(),
                sql.Literal(self._hnsw.m),
                sql.Literal(self._hnsw.ef_construction),
            )
        )

    def _open(self, schema: str) -> tuple[VectorCodec, bool]:
        try:
            with self._pool.connection() as conn:
                version = ensure_pgvector(conn)
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('msstore.vector'), hashtext(%s))",
                    (f"{schema}.{self.name}",),
                )
                oid = conn.execute("SELECT %s::regtype::oid", (self._type,)).fetchone()
                assert oid is not None
                codec = VectorCodec(vector_type=self._type, dim=self._dim, oid=int(oid[0]))
                self._check_existing(conn, codec)
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                )
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY CHECK (id <> ''), "
                        "embedding {} NOT NULL, metadata jsonb NOT NULL DEFAULT '{{}}', "
                        "updated_at timestamptz NOT NULL DEFAULT now())"
                    ).format(self._table, sql.SQL(codec.cast))
                )
                conn.execute(
                    sql.SQL(
                        "CREATE INDEX IF NOT EXISTS {} ON {} USING gin (metadata jsonb_path_ops)"
                    ).format(sql.Identifier(f"vec_{self.name}_meta"), self._table)
                )
                if self._hnsw is not None:
                    self._create_hnsw(conn)
                conn.commit()
        except psycopg.Error as err:  # (PoolTimeout too: the server cannot be reached)
            raise classify(err, what=f"open vector collection {self.name!r}", ours=True) from err
        return codec, version >= (0, 8)

    def _check_existing(self, conn: psycopg.Connection[Any], codec: VectorCodec) -> None:
        row = conn.execute(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass(%s) AND a.attname = 'embedding'",
            (self._table.as_string(conn),),
        ).fetchone()
        if row is not None and row[0] != codec.cast:
            conn.rollback()
            raise InvalidArgument(
                f"vector collection {self.name!r} holds {row[0]}, not {codec.cast}",
                hint="open it with its own type and dimension, or drop() it first",
            )
        found = conn.execute(
            "SELECT o.opcname FROM pg_index i JOIN pg_opclass o ON o.oid = i.indclass[0] "
            "WHERE i.indexrelid = to_regclass(%s)",
            (self._index.as_string(conn),),
        ).fetchone()
        wanted = f"{self._type}_{self._metric}_ops"
        if found is not None and found[0] != wanted:
            conn.rollback()
            raise InvalidArgument(
                f"vector collection {self.name!r} is indexed with {found[0]}, not {wanted}",
                hint="open it with the metric it was built for, or drop() it first",
            )

    # VectorIndex -----------------------------------------------------------------------------

    @property
    def vector_type(self) -> str:
        """The column type: ``vector`` (4-byte floats) or ``halfvec`` (2-byte)."""
        return self._type

    @property
    def hnsw(self) -> HnswParams | None:
        """The HNSW index's parameters, ``None`` without one (exact search)."""
        return self._hnsw

    @property
    def exact(self) -> bool:
        """True without an HNSW index (every search scans the table), False with one (ANN)."""
        return self._hnsw is None

    def _prepare(self, conn: Conn) -> None:
        self._vec.register(conn)

    def _add(
        self, ids: list[str], matrix: npt.NDArray[np.float32], metas: list[dict[str, Any]]
    ) -> None:
        meta_fields = [
            (b"\x01" + jsonb_text(m, self._codec_json).encode(),) for m in metas
        ]  # jsonb's binary form: a version byte, then the text
        chunks = self._vec.copy_rows([i.encode() for i in ids], matrix, meta_fields)
        columns = sql.SQL("(id, embedding, metadata)")

        def copy(cur: psycopg.Cursor[Any], table: sql.Composable) -> None:
            with cur.copy(
                sql.SQL("COPY {} {} FROM STDIN (FORMAT BINARY)").format(table, columns)
            ) as out:
                for chunk in chunks:
                    out.write(chunk)

        bulk = len(ids) >= BULK_BUILD_ROWS and self._run("look at " + self.name, self._empty)

        def write(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cur:
                if bulk and self._claim_empty(cur):
                    # Load first, then build the graph: pgvector's advice for bulk loads.
                    if self._hnsw is not None:
                        cur.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(self._index))
                    copy(cur, self._table)
                    if self._hnsw is not None:
                        self._create_hnsw(conn)
                    log.debug("bulk-loaded %d vectors into %s", len(ids), self.name)
                else:
                    cur.execute(
                        sql.SQL(
                            "CREATE TEMP TABLE msstore_vec_stage (id text, embedding {}, "
                            "metadata jsonb) ON COMMIT DROP"
                        ).format(sql.SQL(self._vec.cast))
                    )
                    copy(cur, sql.Identifier("msstore_vec_stage"))
                    cur.execute(
                        sql.SQL(
                            "INSERT INTO {} AS t (id, embedding, metadata) "
                            "SELECT id, embedding, metadata FROM msstore_vec_stage "
                            "ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, "
                            "metadata = EXCLUDED.metadata, updated_at = now()"
                        ).format(self._table)
                    )
            conn.commit()

        self._run(f"add {len(ids)} vectors to {self.name!r}", write)

    def _empty(self, conn: psycopg.Connection[Any]) -> bool:
        """A first look, in its own short transaction (no lock kept)."""
        row = conn.execute(
            sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(self._table)
        ).fetchone()
        conn.rollback()
        return bool(row and row[0])

    def _claim_empty(self, cur: psycopg.Cursor[Any]) -> bool:
        """Lock the table for a bulk load if it is still empty.

        The exclusive lock comes before any read in this transaction: taking it after a read
        would upgrade a shared lock, and two loaders doing that deadlock each other.
        """
        cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(self._table))
        row = cur.execute(
            sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(self._table)
        ).fetchone()
        return bool(row and row[0])

    def _search(
        self, query: npt.NDArray[np.float32], k: int, where: Mapping[str, Any] | None
    ) -> list[Hit]:
        params: list[Any] = [self._vec.param(query)]
        if where is not None:
            params.append(jsonb_text(dict(where), self._codec_json))
        params.append(k)
        filtered = where is not None
        settings = ann_settings(self._hnsw or DEFAULT_HNSW, iterative=filtered and self._iterative)

        def read(conn: psycopg.Connection[Any]) -> list[Hit]:
            rows = run_ann(conn, settings, self._search_sql[filtered], params)
            return [Hit(r[0], float(r[1]), r[2]) for r in rows]

        result: list[Hit] = self._run(f"search {self.name!r}", read)
        return result

    def _remove(self, ids: list[str]) -> int:
        def delete(conn: psycopg.Connection[Any]) -> int:
            gone = conn.execute(
                sql.SQL("DELETE FROM {} WHERE id = ANY(%b::text[])").format(self._table), (ids,)
            ).rowcount
            conn.commit()
            return gone

        result: int = self._run(f"remove vectors from {self.name!r}", delete)
        return result

    def _count(self) -> int:
        def read(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self._table)).fetchone()
            conn.rollback()
            return int(row[0]) if row else 0

        result: int = self._run(f"count {self.name!r}", read)
        return result

    def describe(self) -> dict[str, Any]:
        """Settings and sizes: ``count``, ``dim``, ``metric``, ``vector_type``, ``hnsw``
        (None or its settings), ``table_bytes``, ``index_bytes``, ``iterative_scans``."""

        def read(conn: psycopg.Connection[Any]) -> dict[str, Any]:
            row = conn.execute(
                sql.SQL(
                    "SELECT count(*), pg_table_size(%s::regclass), "
                    "COALESCE(pg_relation_size(to_regclass(%s)), 0) FROM {}"
                ).format(self._table),
                (self._table.as_string(conn), self._index.as_string(conn)),
            ).fetchone()
            conn.rollback()
            assert row is not None
            return {
                "count": int(row[0]),
                "dim": self._dim,
                "metric": self._metric,
                "vector_type": self._type,
                "hnsw": None if self._hnsw is None else attrs.asdict(self._hnsw),
                "table_bytes": int(row[1]),
                "index_bytes": int(row[2]),
                "iterative_scans": self._iterative,
            }

        result: dict[str, Any] = self._run(f"describe {self.name!r}", read)
        return result

    def drop(self) -> None:
        """Delete the collection's table and indexes (its data is gone)."""

        def run(conn: psycopg.Connection[Any]) -> None:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._table))
            conn.commit()

        self._run(f"drop {self.name!r}", run)
