"""Apply and roll back msstore's migrations on a PostgreSQL server.

One run holds a session-level ``pg_advisory_lock``: a second process migrating at the same
time waits for it, then re-reads the history and finds nothing left to do. Each migration runs
in its own transaction together with its history row, so a failure leaves neither behind.
The history is ``migrations.applied_migrations`` (version, file checksum, when); an advisory
lock stands in for a lock table, since a crashed run cannot leave it held.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Final

import attrs
import psycopg
from psycopg import sql

from msstore import __version__
from msstore.errors import ConnectionFailed, InvalidArgument
from msstore.ops import (
    DEFAULT_PARAMETERS,
    Applied,
    Migration,
    MigrationError,
    discover,
    plan_down,
    plan_up,
    render,
)
from msstore.registry import redact_url
from msstore.spi import check_int

from ._config import check_dsn

__all__ = ["MigrationReport", "MigrationStatus", "Migrator"]

log = logging.getLogger("msstore.backends.postgres")

# The advisory lock every msstore migration run takes (any 64-bit key works; this one is
# "msstore migrations" in spirit and fixed so that all versions agree).
LOCK_KEY: Final = 0x6D7373746F72_65

HISTORY_DDL: Final = """
CREATE SCHEMA IF NOT EXISTS migrations;
CREATE TABLE IF NOT EXISTS migrations.applied_migrations (
  migration_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  version VARCHAR(20) NOT NULL UNIQUE,
  name VARCHAR(255) NOT NULL,
  description TEXT,
  migration_type VARCHAR(50) NOT NULL DEFAULT 'schema',
  sql_hash VARCHAR(64) NOT NULL,
  depends_on_version VARCHAR(20),
  rollback_sql TEXT,
  is_rollbackable BOOLEAN DEFAULT FALSE,
  applied_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
  applied_by VARCHAR(100) DEFAULT CURRENT_USER,
  execution_time_ms BIGINT,
  database_version VARCHAR(50),
  application_version VARCHAR(50),
  environment VARCHAR(50),
  CONSTRAINT valid_version CHECK (version ~ '^\\d+\\.\\d+\\.\\d+(-\\w+)?$'),
  CONSTRAINT valid_migration_type
    CHECK (migration_type IN ('schema', 'data', 'index', 'partition', 'function')),
  CONSTRAINT valid_execution_time CHECK (execution_time_ms >= 0)
);
CREATE TABLE IF NOT EXISTS migrations.validation_results (
  validation_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  migration_version VARCHAR(20) NOT NULL
    REFERENCES migrations.applied_migrations(version) ON DELETE CASCADE,
  test_name VARCHAR(255) NOT NULL,
  test_type VARCHAR(50) NOT NULL,
  status VARCHAR(20) NOT NULL,
  error_message TEXT,
  execution_time_ms BIGINT,
  created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
  CONSTRAINT valid_test_type
    CHECK (test_type IN ('unit', 'integration', 'performance', 'rollback')),
  CONSTRAINT valid_status CHECK (status IN ('passed', 'failed', 'skipped', 'error'))
);
"""


@attrs.frozen
class MigrationStatus:
    """One migration's state in a database: ``applied``, ``pending``, ``changed`` (applied, but its
    file differs now) or ``missing`` (applied, its file gone), with when it was applied."""

    version: int
    name: str
    state: str  # applied, pending, changed (applied, but the file differs), missing (no file)
    applied_at: str | None = None


@attrs.frozen
class MigrationReport:
    """What a run did (or, with ``dry_run``, would do)."""

    done: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # "label: reason"
    dry_run: bool = False


class Migrator:
    """Migrations of one database. ``files`` defaults to the ones shipped in ``msstore.schema``.

    ``embedding_dim``: the dimension of the knowledge base's embedding column (default 1536;
    384 for all-MiniLM-L6-v2), fixed when that migration is applied. ``parameters`` fill other
    ``{{name}}`` placeholders. ``lock_timeout`` bounds the wait for another run's lock, in
    seconds.
    """

    def __init__(
        self,
        dsn: str,
        *,
        files: Iterable[Path | Traversable] | None = None,
        parameters: Mapping[str, Any] | None = None,
        embedding_dim: int | None = None,
        environment: str | None = None,
        lock_timeout: float = 120.0,
        connect_timeout: float = 10.0,
    ) -> None:
        if files is None:
            from msstore.schema import migration_files  # noqa: PLC0415

            files = migration_files()
        self.dsn = check_dsn(dsn, connect_timeout=max(1, int(connect_timeout)))
        self.migrations: list[Migration] = discover(files)
        self.parameters = {
            **DEFAULT_PARAMETERS,
            **{k: str(v) for k, v in (parameters or {}).items()},
        }
        if embedding_dim is not None:
            check_int(embedding_dim, field="embedding_dim", minimum=1, maximum=16000)
            self.parameters["embedding_dim"] = str(embedding_dim)
        dim = self.parameters["embedding_dim"]
        if not dim.isdigit() or not 1 <= int(dim) <= 16000:
            raise InvalidArgument(f"embedding_dim must be an int from 1 to 16000, got {dim!r}")
        self.environment = environment
        self.lock_timeout = lock_timeout
        self.connect_timeout = connect_timeout

    def __repr__(self) -> str:
        return f"Migrator({redact_url(self.dsn)}, {len(self.migrations)} migrations)"

    # Plumbing --------------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=max(1, int(self.connect_timeout))
            )
        except psycopg.Error as err:
            raise ConnectionFailed(
                f"cannot connect to PostgreSQL at {redact_url(self.dsn)}: "
                f"{str(err).strip().splitlines()[0]}"
            ) from None

    @staticmethod
    def _applied(conn: psycopg.Connection[Any]) -> list[tuple[Applied, str]]:
        exists = conn.execute("SELECT to_regclass('migrations.applied_migrations')").fetchone()
        if exists is None or exists[0] is None:
            return []
        rows = conn.execute(
            "SELECT version, name, sql_hash, applied_at::text FROM migrations.applied_migrations"
        ).fetchall()
        return [(Applied(int(v.split(".")[0]), n, h), at) for v, n, h, at in rows]

    def _locked(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            sql.SQL("SET lock_timeout = {}").format(
                sql.Literal(f"{int(self.lock_timeout * 1000)}ms")
            )
        )
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        except psycopg.errors.LockNotAvailable:
            raise MigrationError(
                f"another migration run held the lock for over {self.lock_timeout:g}s",
                hint="wait for it, or raise lock_timeout",
            ) from None
        conn.execute(HISTORY_DDL)

    def _missing_extensions(self, conn: psycopg.Connection[Any], m: Migration) -> list[str]:
        missing = []
        for name in m.requires_extensions:
            row = conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = %s", (name,)
            ).fetchone()
            if row is None:
                missing.append(name)
        return missing

    # Operations ------------------------------------------------------------------------------

    def status(self) -> list[MigrationStatus]:
        """Every migration on disk or in the history, with its state."""
        with self._connect() as conn:
            applied = {a.version: (a, at) for a, at in self._applied(conn)}
        out = []
        for m in self.migrations:
            row = applied.pop(m.version, None)
            if row is None:
                out.append(MigrationStatus(m.version, m.name, "pending"))
            else:
                state = "applied" if row[0].checksum == m.checksum else "changed"
                out.append(MigrationStatus(m.version, m.name, state, row[1]))
        for version, (a, at) in sorted(applied.items()):
            out.append(MigrationStatus(version, a.name, "missing", at))
        return out

    def up(self, *, target: int | None = None, dry_run: bool = False) -> MigrationReport:
        """Apply the pending migrations (up to ``target``), each in its own transaction."""
        with self._connect() as conn:
            self._locked(conn)
            try:
                plan = plan_up(self.migrations, [a for a, _ in self._applied(conn)], target)
                done: list[str] = []
                skipped: list[str] = []
                server = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
                for m in plan:
                    missing = self._missing_extensions(conn, m)
                    if missing:
                        reason = (
                            f"needs the PostgreSQL extension(s) {', '.join(missing)}, "
                            "which this server does not have; it stays pending"
                        )
                        log.warning("migration %s skipped: %s", m.label, reason)
                        skipped.append(f"{m.label}: {reason}")
                        continue
                    if not dry_run:
                        self._apply(conn, m, server)
                    done.append(m.label)
                return MigrationReport(tuple(done), tuple(skipped), dry_run)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))

    def _apply(self, conn: psycopg.Connection[Any], m: Migration, server: str) -> None:
        started = time.perf_counter()
        try:
            with conn.transaction():
                conn.execute(render(m.up_sql, self.parameters).encode())
                conn.execute(
                    "INSERT INTO migrations.applied_migrations (version, name, migration_type, "
                    "sql_hash, rollback_sql, is_rollbackable, execution_time_ms, "
                    "database_version, application_version, environment) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        m.history_version,
                        m.name,
                        m.type,
                        m.checksum,
                        m.down_sql,
                        m.down_sql is not None,
                        int((time.perf_counter() - started) * 1000),
                        server,
                        __version__,
                        self.environment,
                    ),
                )
        except psycopg.Error as err:
            raise MigrationError(
                f"migration {m.label} failed and was rolled back: "
                f"{str(err).strip().splitlines()[0]}"
            ) from err
        log.info("applied migration %s", m.label)

    def down(self, *, steps: int = 1, dry_run: bool = False) -> MigrationReport:
        """Roll back the last ``steps`` applied migrations, newest first."""
        with self._connect() as conn:
            self._locked(conn)
            try:
                plan = plan_down(self.migrations, [a for a, _ in self._applied(conn)], steps)
                done = []
                for m in plan:
                    if not dry_run:
                        self._revert(conn, m)
                    done.append(m.label)
                return MigrationReport(tuple(done), (), dry_run)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))

    def _revert(self, conn: psycopg.Connection[Any], m: Migration) -> None:
        assert m.down_sql is not None
        try:
            with conn.transaction():
                conn.execute(render(m.down_sql, self.parameters).encode())
                conn.execute(
                    "DELETE FROM migrations.applied_migrations WHERE version = %s",
                    (m.history_version,),
                )
        except psycopg.Error as err:
            raise MigrationError(
                f"rolling back {m.label} failed and was undone: {str(err).strip().splitlines()[0]}"
            ) from err
        log.info("rolled back migration %s", m.label)
