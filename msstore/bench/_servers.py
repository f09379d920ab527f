"""The servers a benchmark runs against: the ones the environment names (``MSSTORE_PG_DSN``,
``NATS_SERVERS``, as everywhere in msstore), else throwaway embedded ones."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["database", "nats_server"]


@contextmanager
def database() -> Iterator[str]:
    """A fresh database ``msstore_bench`` (dropped after) on ``MSSTORE_PG_DSN``'s server, or
    on an embedded PostgreSQL."""
    import psycopg  # noqa: PLC0415

    external = os.environ.get("MSSTORE_PG_DSN")
    if external:
        server, stop = external, None
    else:
        from msstore.servers import EmbeddedPostgres  # noqa: PLC0415

        stop = EmbeddedPostgres().start()
        server = stop.dsn
    try:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS msstore_bench WITH (FORCE)")
            conn.execute("CREATE DATABASE msstore_bench")
        yield psycopg.conninfo.make_conninfo(server, dbname="msstore_bench")
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS msstore_bench WITH (FORCE)")
    finally:
        if stop is not None:
            stop.close()


@contextmanager
def nats_server() -> Iterator[str]:
    """``NATS_SERVERS`` (its first URL), or an embedded ``nats-server -js``."""
    external = os.environ.get("NATS_SERVERS")
    if external:
        yield external.split(",")[0].strip()
        return
    from msstore.servers import EmbeddedNats  # noqa: PLC0415

    with EmbeddedNats().start() as server:
        yield server.url
