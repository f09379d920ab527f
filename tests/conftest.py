"""Backend factories for the conformance suites, parametrised by backend id.

``memory`` runs in process; ``nats`` runs on the real JetStream server the msstore plugin starts
(or ``MSSTORE_TEST_NATS_URL``), one fresh bucket per case, deleted afterwards.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings

from msstore.buckets import BucketConfig
from msstore.protocols import DataStorage, KeyValueStore, VectorIndex
from msstore.work import MessageLog, SessionStore, TaskQueue

pytest_plugins = ["pytester"]

# Property tests: 200 examples each in CI ("ci", the default); HYPOTHESIS_PROFILE=thorough runs
# 2,000. Neither has a deadline: timing on a shared 2-core machine is not a property.
settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def nats_client(msstore_nats_url: str) -> Iterator[Any]:
    from msstore.backends.nats import NatsClient, NatsConfig

    client = NatsClient(NatsConfig(servers=[msstore_nats_url]))
    yield client
    client.close()


@pytest.fixture(scope="session")
def nats_shared_client(msstore_nats_url: str) -> Iterator[Any]:
    """The prescribed bridge path: one connection on the process's bridge thread."""
    from msstore.backends.nats import NatsClient, NatsConfig

    client = NatsClient(NatsConfig(servers=[msstore_nats_url], loop="shared"))
    yield client
    client.close()


@pytest.fixture(scope="session")
def nats_cluster_client(msstore_nats_cluster: Any) -> Iterator[Any]:
    from msstore.backends.nats import NatsClient, NatsConfig

    urls = (
        msstore_nats_cluster
        if isinstance(msstore_nats_cluster, list)
        else msstore_nats_cluster.urls
    )
    client = NatsClient(NatsConfig(servers=urls))
    yield client
    client.close()


@pytest.fixture(
    params=[
        "memory",
        pytest.param("nats", marks=pytest.mark.nats),
        pytest.param("nats-shared", marks=pytest.mark.nats),
        pytest.param("nats-r3", marks=[pytest.mark.nats, pytest.mark.cluster]),
    ]
)
def kv_factory(request: pytest.FixtureRequest) -> Iterator[Callable[[BucketConfig], KeyValueStore]]:
    if request.param == "memory":
        from msstore.backends.memory import MemoryKV

        yield MemoryKV
        return
    import attrs

    from msstore.backends.nats import NatsKV

    r3 = request.param == "nats-r3"
    client = request.getfixturevalue(
        {
            "nats": "nats_client",
            "nats-shared": "nats_shared_client",
            "nats-r3": "nats_cluster_client",
        }[request.param]
    )
    opened: list[NatsKV] = []

    def make(config: BucketConfig) -> KeyValueStore:
        store = NatsKV.open(client, attrs.evolve(config, replicas=3) if r3 else config)
        assert store.config.replicas == (3 if r3 else 1)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.destroy()


@contextlib.contextmanager
def fresh_database(server: str, name: str) -> Iterator[str]:
    """A new, empty database ``name`` on ``server``; dropped after."""
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield psycopg.conninfo.make_conninfo(server, dbname=name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def migrated_database(server: str, name: str, **parameters: Any) -> Iterator[str]:
    """A new database ``name`` on ``server`` with msstore's migrations applied; dropped after."""
    from msstore.backends.postgres import Migrator

    with fresh_database(server, name) as dsn:
        Migrator(dsn, parameters=parameters).up()
        yield dsn


@pytest.fixture(scope="session")
def empty_pg_dsn(msstore_postgres_dsn: str) -> Iterator[str]:
    """A database msstore never migrated."""
    with fresh_database(msstore_postgres_dsn, "msstore_never_migrated") as dsn:
        yield dsn


@pytest.fixture(scope="session")
def pg_state_dsn(msstore_postgres_dsn: str) -> Iterator[str]:
    """A database with msstore's migrations applied, shared by the postgres storage cases."""
    with migrated_database(msstore_postgres_dsn, "msstore_conformance") as dsn:
        yield dsn


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_factory(request: pytest.FixtureRequest) -> Callable[[], DataStorage]:
    if request.param == "memory":
        from msstore.backends.memory import MemoryTable

        return MemoryTable
    import psycopg

    from msstore.backends.postgres import PostgresStateStore

    dsn = request.getfixturevalue("pg_state_dsn")
    with psycopg.connect(dsn, autocommit=True) as conn:  # each case starts empty
        conn.execute("TRUNCATE agents.state, agents.registry, agents.flush_progress CASCADE")
    return lambda: PostgresStateStore(dsn)


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def queue_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., TaskQueue]]:
    """``make(clock)``: a fresh, empty task queue reading time from ``clock``."""
    if request.param == "memory":
        from msstore.backends.memory import MemoryTaskQueue

        yield lambda clock: MemoryTaskQueue(clock=clock, poll=0.01)
        return
    import psycopg

    from msstore.backends.postgres import PostgresTaskQueue

    dsn = request.getfixturevalue("pg_state_dsn")
    with psycopg.connect(dsn, autocommit=True) as conn:  # each case starts empty
        conn.execute("TRUNCATE tasks.queue, tasks.executions, messages.outbox CASCADE")
    opened: list[PostgresTaskQueue] = []

    def make(clock: Callable[[], float]) -> TaskQueue:
        queue = PostgresTaskQueue(dsn, clock=clock, poll=0.05)
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        queue.close()


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def messages_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., MessageLog]]:
    """``make(clock)``: a fresh, empty message log reading time from ``clock``."""
    if request.param == "memory":
        from msstore.backends.memory import MemoryMessageLog

        yield lambda clock: MemoryMessageLog(clock=clock)
        return
    import psycopg

    from msstore.backends.postgres import PostgresMessageLog

    dsn = request.getfixturevalue("pg_state_dsn")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE messages.log, messages.subscriptions, messages.channels, "
            "messages.cursors CASCADE"
        )
    opened: list[PostgresMessageLog] = []

    def make(clock: Callable[[], float]) -> MessageLog:
        log = PostgresMessageLog(dsn, clock=clock)
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close()


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def sessions_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., SessionStore]]:
    """``make(clock)``: a fresh, empty session store reading time from ``clock``."""
    if request.param == "memory":
        from msstore.backends.memory import MemorySessionStore

        yield lambda clock: MemorySessionStore(clock=clock)
        return
    import psycopg

    from msstore.backends.postgres import PostgresSessionStore

    dsn = request.getfixturevalue("pg_state_dsn")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE sessions.active")
    opened: list[PostgresSessionStore] = []

    def make(clock: Callable[[], float]) -> SessionStore:
        store = PostgresSessionStore(dsn, clock=clock)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture(
    params=[
        "memory",
        pytest.param("pgvector", marks=pytest.mark.postgres),
        pytest.param("pgvector-exact", marks=pytest.mark.postgres),
    ]
)
def vector_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., VectorIndex]]:
    """``make(dim=, metric=, **options)``: a fresh index. ``pgvector`` is HNSW (ANN, held to a
    recall threshold); ``pgvector-exact`` keeps no ANN index, so its search is exact."""
    if request.param == "memory":
        from msstore.backends.memory import MemoryVectorIndex

        yield MemoryVectorIndex
        return
    from msstore.backends.postgres import PgVectorIndex

    dsn = request.getfixturevalue("pg_state_dsn")
    opened: list[PgVectorIndex] = []

    def make(**options: Any) -> VectorIndex:
        if request.param == "pgvector-exact":
            options.setdefault("hnsw", None)
        index = PgVectorIndex(dsn, name=f"t{uuid.uuid4().hex[:16]}", **options)
        opened.append(index)
        return index

    yield make
    for index in opened:
        if index.closed:  # (a case closed it: drop its table without it)
            import psycopg

            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"DROP TABLE IF EXISTS knowledge.vec_{index.name}")
            continue
        index.drop()
        index.close()


@pytest.fixture(
    params=[
        "memory+memory",
        pytest.param("memory+postgres", marks=pytest.mark.postgres),
        pytest.param("nats+postgres", marks=[pytest.mark.postgres, pytest.mark.nats]),
    ]
)
def hybrid_stores(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., tuple[KeyValueStore, DataStorage]]]:
    """Makes ``(kv, storage)`` pairs for the hybrid manager: the three compositions.

    ``make(ttl=None, name="AGENT_STATE")`` returns a fresh KV bucket (same name -> the same
    bucket on NATS; a new bucket in memory) and a table store over one shared SQL tier.
    """
    kv_kind, sql_kind = request.param.split("+")
    made: list[Any] = []
    if sql_kind == "memory":
        from msstore.backends.memory import MemoryTable

        table = MemoryTable()

        def storage() -> DataStorage:
            return table

    else:
        import psycopg

        from msstore.backends.postgres import PostgresStateStore

        dsn = request.getfixturevalue("pg_state_dsn")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE agents.state, agents.registry, agents.flush_progress CASCADE")

        def storage() -> DataStorage:
            store = PostgresStateStore(dsn)
            made.append(store)
            return store

    unique = request.getfixturevalue("msstore_unique_name")

    def make(*, ttl: int | None = None, name: str = "state") -> tuple[KeyValueStore, DataStorage]:
        config = BucketConfig(name=f"{unique}_{name}", ttl=ttl, history=5)
        if kv_kind == "memory":
            from msstore.backends.memory import MemoryKV

            kv: KeyValueStore = MemoryKV(config)
        else:
            from msstore.backends.nats import NatsKV

            kv = NatsKV.open(request.getfixturevalue("nats_client"), config)
            made.append(kv)
        return kv, storage()

    yield make
    for thing in reversed(made):
        if hasattr(thing, "destroy"):
            with contextlib.suppress(Exception):  # already gone is fine
                thing.destroy()
        thing.close()


_REPORTS = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def crash_reports(request: pytest.FixtureRequest) -> list[str]:
    """Lines printed in the terminal summary (acknowledged vs persisted counts)."""
    return request.config.stash.setdefault(_REPORTS, [])


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    reports = config.stash.get(_REPORTS, [])
    if reports:
        terminalreporter.section("msstore crash recovery")
        for line in reports:
            terminalreporter.write_line(line)


KNOWLEDGE_DIM = 256


@pytest.fixture(scope="session")
def pg_knowledge_dsn(msstore_postgres_dsn: str) -> Iterator[str]:
    """A database migrated with ``embedding_dim=256`` for the knowledge-base cases."""
    with migrated_database(
        msstore_postgres_dsn, "msstore_knowledge", embedding_dim=KNOWLEDGE_DIM
    ) as dsn:
        yield dsn


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def fact_store_factory(request: pytest.FixtureRequest) -> Iterator[Callable[[], Any]]:
    """``make()``: an empty fact store of dimension ``KNOWLEDGE_DIM`` (memory, or PostgreSQL +
    pgvector with the knowledge tables emptied first)."""
    opened: list[Any] = []
    if request.param == "memory":
        from msstore.backends.memory import MemoryFactStore

        def make() -> Any:
            return MemoryFactStore(dim=KNOWLEDGE_DIM)

        yield make
        return
    import psycopg

    from msstore.backends.postgres import PostgresFactStore

    dsn = request.getfixturevalue("pg_knowledge_dsn")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE knowledge.facts CASCADE")

    def make_pg() -> Any:
        store = PostgresFactStore(dsn)
        opened.append(store)
        return store

    yield make_pg
    for store in opened:
        store.close()


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def outbox_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``make(keep_published=3600.0)``: an outbox source with nothing in it."""
    opened: list[Any] = []
    if request.param == "memory":
        from msstore.backends.memory import MemoryOutbox

        def make(keep_published: float = 3600.0) -> Any:
            return MemoryOutbox(keep_published=keep_published)

        yield make
        return
    import psycopg

    from msstore.backends.postgres import PostgresOutbox

    dsn = request.getfixturevalue("pg_state_dsn")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE messages.outbox")

    def make_pg(keep_published: float = 3600.0) -> Any:
        outbox = PostgresOutbox(dsn, keep_published=keep_published)
        opened.append(outbox)
        return outbox

    yield make_pg
    for outbox in opened:
        outbox.close()


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def saga_log_factory(request: pytest.FixtureRequest) -> Iterator[Callable[[], Any]]:
    """``make()``: an empty saga log (memory, or PostgreSQL with the saga tables emptied)."""
    if request.param == "memory":
        from msstore.backends.memory import MemorySagaLog

        yield MemorySagaLog
        return
    import psycopg

    from msstore.backends.postgres import PostgresSagaLog

    dsn = request.getfixturevalue("pg_state_dsn")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE sagas.log CASCADE")
    opened: list[Any] = []

    def make_pg() -> Any:
        log = PostgresSagaLog(dsn)
        opened.append(log)
        return log

    yield make_pg
    for log in opened:
        log.close()


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.nats)])
def event_sink_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``make(streams)``: an event sink whose server has each stream (name -> subjects)."""
    if request.param == "memory":
        from msstore.backends.memory import MemoryEventStream

        yield MemoryEventStream
        return
    import asyncio

    import nats

    from msstore.backends.nats import JetStreamSink, NatsClient, NatsConfig

    url = request.getfixturevalue("msstore_nats_url")
    created: list[str] = []
    opened: list[Any] = []

    async def add_streams(streams: Any) -> None:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream(timeout=10)
            for name, subjects in streams.items():
                await js.add_stream(name=name, subjects=list(subjects), duplicate_window=120)
        finally:
            await nc.close()

    def make(streams: Any) -> Any:
        asyncio.run(add_streams(streams))
        created.extend(streams)
        sink = JetStreamSink(NatsClient(NatsConfig(servers=[url])), owns_client=True)
        opened.append(sink)
        return sink

    yield make
    for sink in opened:
        sink.close()

    async def drop() -> None:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream(timeout=10)
            for name in created:
                with contextlib.suppress(Exception):
                    await js.delete_stream(name)
        finally:
            await nc.close()

    asyncio.run(drop())
