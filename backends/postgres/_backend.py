"""The ``postgresql://`` and ``pgvector://`` URL schemes.

* ``postgresql://user@host:5432/db`` opens :class:`PostgresStateStore` (``open_storage``).
* ``open_outbox("postgresql://...")`` (:mod:`msstore.coordination`) opens
  :class:`PostgresOutbox`.
* ``pgvector://user@host:5432/db?collection=NAME&dim=384&metric=cosine`` opens
  :class:`PgVectorIndex`; further options: ``vector_type`` (vector, halfvec), ``schema``,
  ``m``, ``ef_construction``, ``ef_search``, ``iterative_scan``, ``max_scan_tuples``,
  ``hnsw=false`` (exact scans, no ANN index). ``postgresql://`` accepts the same for vectors.
* libpq's own parameters stay in the connection string:
  ``postgresql://u:pw@db:5432/app?sslmode=verify-full&sslrootcert=/etc/ca.pem``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, urlencode, urlunsplit

from msstore.errors import InvalidArgument, Unsupported
from msstore.registry import Backend
from msstore.spi import check_known, opt_bool, opt_float, opt_int

from ._config import DEFAULT_CONNECT_TIMEOUT
from ._outbox import PostgresOutbox
from ._pgvector import HnswParams
from ._state import DEFAULT_DEADLINE, PostgresStateStore
from ._vector import PgVectorIndex

__all__ = ["PostgresBackend"]

_VECTOR_OPTIONS = {
    "collection",
    "dim",
    "metric",
    "vector_type",
    "schema",
    "hnsw",
    "m",
    "ef_construction",
    "ef_search",
    "iterative_scan",
    "max_scan_tuples",
}


@functools.cache
def _libpq_keys() -> frozenset[str]:
    """The connection parameters libpq knows (sslmode, sslrootcert, application_name ...)."""
    from psycopg import pq  # noqa: PLC0415

    return frozenset(o.keyword.decode() for o in pq.Conninfo.get_defaults())


def _dsn(url: SplitResult, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The URL as a DSN keeping its libpq parameters (``?sslmode=verify-full&sslrootcert=..``),
    and the options left for the store (``connect_timeout`` is msstore's, and goes in the DSN
    from there)."""
    keys = _libpq_keys() - {"connect_timeout"}
    libpq = {k: str(v) for k, v in options.items() if k in keys}
    rest = {k: v for k, v in options.items() if k not in libpq}
    query = urlencode(libpq)
    return urlunsplit(url._replace(scheme="postgresql", query=query, fragment="")), rest


def _connect_timeout(options: Mapping[str, Any]) -> int:
    seconds = opt_int(options, "connect_timeout", DEFAULT_CONNECT_TIMEOUT, minimum=1, maximum=3600)
    assert seconds is not None
    return seconds


class PostgresBackend(Backend):
    """Opens msstore's PostgreSQL stores by URL (see the module docstring)."""

    def open_kv(self, url: SplitResult, options: Mapping[str, Any]) -> Any:
        raise Unsupported("PostgreSQL has no KV bucket here; use nats:// or memory://")

    def open_storage(self, url: SplitResult, options: Mapping[str, Any]) -> PostgresStateStore:
        dsn, options = _dsn(url, options)
        check_known(options, {"deadline", "connect_timeout"}, backend="PostgreSQL state store")
        return PostgresStateStore(
            dsn,
            deadline=opt_float(options, "deadline", DEFAULT_DEADLINE, maximum=86_400.0),
            connect_timeout=_connect_timeout(options),
        )

    def open_outbox(self, url: SplitResult, options: Mapping[str, Any]) -> PostgresOutbox:
        """``messages.outbox`` (options ``keep_published``, ``deadline``, ``connect_timeout``,
        and ``dsn``: a libpq connection string used instead of the URL)."""
        dsn, options = _dsn(url, options)
        check_known(
            options, {"keep_published", "deadline", "connect_timeout", "dsn"}, backend="outbox"
        )
        return PostgresOutbox(
            str(options["dsn"]) if "dsn" in options else dsn,
            keep_published=opt_float(options, "keep_published", 3600.0, inclusive=True),
            deadline=opt_float(options, "deadline", 60.0, maximum=86_400.0),
            connect_timeout=_connect_timeout(options),
        )

    def open_vector(self, url: SplitResult, options: Mapping[str, Any]) -> PgVectorIndex:
        dsn, options = _dsn(url, options)
        check_known(options, _VECTOR_OPTIONS, backend="pgvector index")
        dim = opt_int(options, "dim", None)
        collection = options.get("collection")
        if dim is None or not collection:
            raise InvalidArgument("a pgvector URL needs collection=NAME and dim=N")
        hnsw: HnswParams | None = None
        if opt_bool(options, "hnsw", True):
            defaults = HnswParams()
            hnsw = HnswParams(  # (HnswParams checks the ranges; nothing is changed here)
                m=opt_int(options, "m", defaults.m),  # type: ignore[arg-type]
                ef_construction=opt_int(  # type: ignore[arg-type]
                    options, "ef_construction", defaults.ef_construction
                ),
                ef_search=opt_int(options, "ef_search", defaults.ef_search),  # type: ignore[arg-type]
                iterative_scan=str(options.get("iterative_scan", defaults.iterative_scan)),
                max_scan_tuples=opt_int(options, "max_scan_tuples", None),
            )
        return PgVectorIndex(
            dsn,
            name=str(collection),
            dim=dim,
            metric=str(options.get("metric", "cosine")),
            vector_type=str(options.get("vector_type", "vector")),
            hnsw=hnsw,
            schema=str(options.get("schema", "knowledge")),
        )
