"""Factories for LangGraph's checkpointer conformance kit (``langgraph-checkpoint-conformance``),
in the kit's own shape: async generator functions yielding a fresh saver. Register one with the
kit and run it::

    from langgraph.checkpoint.conformance import checkpointer_test, validate
    from msstore.testing.langgraph import memory_saver

    report = await validate(checkpointer_test(name="msstore-memory")(memory_saver))

``server_saver`` runs on NATS + PostgreSQL: ``MSSTORE_TEST_PG_DSN``'s and
``MSSTORE_TEST_NATS_URL``'s servers, or an embedded PostgreSQL and nats-server this module
starts on first use (stopped when the process exits). Each saver gets a database of its own,
made from a migrated template, and a JetStream KV bucket of its own as its write-ahead log.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import uuid
from collections.abc import AsyncGenerator, Callable
from typing import Any

from msstore.integrations.langgraph import MsstoreSaver

__all__ = ["memory_saver", "server_saver"]

TEMPLATE = "msstore_langgraph_template"
_server: dict[str, Any] = {}
_lock = threading.Lock()


async def memory_saver() -> AsyncGenerator[MsstoreSaver, None]:
    """A saver on a new, empty ``MemoryCheckpointStore``."""
    from msstore.backends.memory import MemoryCheckpointStore  # noqa: PLC0415

    yield MsstoreSaver(MemoryCheckpointStore())


async def server_saver() -> AsyncGenerator[MsstoreSaver, None]:
    """A saver on ``PostgresCheckpointStore`` in a new, migrated database, with a new
    JetStream KV bucket as its log (both dropped after)."""
    from msstore.backends.nats import NatsClient, NatsConfig, NatsKV  # noqa: PLC0415
    from msstore.backends.postgres import PostgresCheckpointStore  # noqa: PLC0415
    from msstore.buckets import BucketConfig  # noqa: PLC0415

    server, dsn = await asyncio.to_thread(_fresh_database)
    url = await asyncio.to_thread(_nats_url)
    store = PostgresCheckpointStore(dsn)
    client = await asyncio.to_thread(NatsClient, NatsConfig(servers=[url]))
    bucket = f"LG_{uuid.uuid4().hex[:12].upper()}"
    kv = await asyncio.to_thread(NatsKV.open, client, BucketConfig(name=bucket, history=1))
    saver = await asyncio.to_thread(MsstoreSaver, store, log=kv)
    try:
        yield saver
    finally:
        await asyncio.to_thread(saver.close)
        await asyncio.to_thread(kv.destroy)
        await asyncio.to_thread(kv.close)
        await asyncio.to_thread(client.close)
        store.close()
        await asyncio.to_thread(_drop, server, dsn)


def _nats_url() -> str:
    """``MSSTORE_TEST_NATS_URL``, or an embedded nats-server started once."""
    return _address("nats", "MSSTORE_TEST_NATS_URL", lambda s: str(s.url))


def _address(key: str, env: str, address: Callable[[Any], str]) -> str:
    """``env``'s value, or the address of an embedded server (``EmbeddedNats`` for key
    ``nats``, else ``EmbeddedPostgres``) started once and stopped when the process exits."""
    with _lock:
        if key not in _server:
            found = os.environ.get(env)
            if not found:
                from msstore.servers import EmbeddedNats, EmbeddedPostgres  # noqa: PLC0415

                started = (EmbeddedNats if key == "nats" else EmbeddedPostgres)().start()
                atexit.register(started.close)
                found = address(started)
            _server[key] = found
        return str(_server[key])


def _server_dsn() -> str:
    """The server's DSN: ``MSSTORE_TEST_PG_DSN``, or an embedded one started once, with the
    template database migrated."""
    import psycopg  # noqa: PLC0415

    from msstore.backends.postgres import Migrator  # noqa: PLC0415

    dsn = _address("postgres", "MSSTORE_TEST_PG_DSN", lambda s: str(s.dsn))
    with _lock:
        if "dsn" not in _server:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {TEMPLATE}")
            Migrator(psycopg.conninfo.make_conninfo(dsn, dbname=TEMPLATE)).up()
            _server["dsn"] = dsn
        return str(_server["dsn"])


def _fresh_database() -> tuple[str, str]:
    import psycopg  # noqa: PLC0415

    server = _server_dsn()
    name = f"msstore_lg_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn, _lock:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    return server, psycopg.conninfo.make_conninfo(server, dbname=name)


def _drop(server: str, dsn: str) -> None:
    import psycopg  # noqa: PLC0415

    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
