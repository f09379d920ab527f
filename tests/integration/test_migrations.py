"""The migration runner on real PostgreSQL 18 (embedded, with pgvector) and 15 (Debian's)."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from msstore.cli import main

psycopg = pytest.importorskip("psycopg", reason="needs msstore[postgres]")

from msstore.backends.postgres import Migrator  # noqa: E402
from msstore.ops import MigrationError  # noqa: E402

pytestmark = pytest.mark.postgres
SHIPPED = Path(__file__).parents[2] / "schema"


@pytest.fixture(params=["pg18", "pg15"])
def db(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database on PostgreSQL 18 or 15; dropped afterwards."""
    server = request.getfixturevalue(
        "msstore_postgres_dsn" if request.param == "pg18" else "msstore_pg15_dsn"
    )
    name = f"m_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield psycopg.conninfo.make_conninfo(server, dbname=name)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def scalar(dsn: str, query: str) -> object:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
        return None if row is None else row[0]


def without_vector(dsn: str) -> set[str]:
    """Migrations that stay pending on this server: the vector ones where pgvector is absent."""
    has = scalar(dsn, "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'")
    return set() if has else {"knowledge_vectors", "knowledge_search"}


def copy_migrations(tmp_path: Path, extra: dict[str, str] | None = None) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(SHIPPED, target, ignore=shutil.ignore_patterns("*.py", "*.md", "__pycache__"))
    for name, text in (extra or {}).items():
        (target / name).write_text(text)
    return target


def test_up_applies_everything_once(db: str) -> None:
    first = Migrator(db).up()
    assert first.done and first.done[0] == "0001_schemas"
    assert Migrator(db).up().done == ()  # the second run applies nothing
    states = {row.name: row.state for row in Migrator(db).status()}
    assert {n for n, state in states.items() if state == "pending"} == without_vector(db)
    assert len(first.done) == len(states) - len(without_vector(db))
    tables = [
        "agents.registry",
        "agents.state",
        "agents.checkpoints",
        "agents.lifecycle_events",
        "tasks.queue",
        "tasks.dependencies",
        "tasks.executions",
        "messages.channels",
        "messages.subscriptions",
        "messages.log",
        "sessions.active",
        "knowledge.facts",
    ]
    if not without_vector(db):
        tables.append("knowledge.embeddings")
    for table in tables:
        assert scalar(db, f"SELECT to_regclass('{table}') IS NOT NULL") is True, table
    assert (
        scalar(
            db,
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name "
            "IN ('agents', 'tasks', 'messages', 'knowledge')",
        )
        == 4
    )
    assert (
        scalar(
            db,
            "SELECT version || ' ' || length(sql_hash) || ' ' || is_rollbackable "
            "FROM migrations.applied_migrations WHERE name = 'schemas'",
        )
        == "1.0.0 64 true"
    )


def test_down_then_up_round_trips(db: str) -> None:
    migrator = Migrator(db)
    migrator.up()
    applied = [r.version for r in migrator.status() if r.state == "applied"]
    assert migrator.down(steps=len(applied)).done[-1] == "0001_schemas"
    assert {r.state for r in migrator.status()} == {"pending"}
    assert (
        scalar(db, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'agents'")
        == 0
    )
    assert migrator.up().done[0] == "0001_schemas"
    pending = {r.name for r in migrator.status() if r.state == "pending"}
    assert pending == without_vector(db)


def test_a_changed_applied_file_is_refused(db: str, tmp_path: Path) -> None:
    files = copy_migrations(tmp_path)
    Migrator(db, files=files.iterdir()).up()
    shipped = files / "0001_schemas.sql"
    shipped.write_text(shipped.read_text() + "\nCREATE SCHEMA sneaky;\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        Migrator(db, files=files.iterdir()).up()
    assert Migrator(db, files=files.iterdir()).status()[0].state == "changed"
    assert (
        scalar(db, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'sneaky'")
        == 0
    )


def test_dry_run_changes_nothing(db: str) -> None:
    report = Migrator(db).up(dry_run=True)
    assert report.dry_run and report.done[0] == "0001_schemas"
    assert {r.state for r in Migrator(db).status()} == {"pending"}


def test_a_failing_migration_is_rolled_back_whole(db: str, tmp_path: Path) -> None:
    files = copy_migrations(
        tmp_path, {"0900_broken.sql": "CREATE TABLE agents.half_done (id int);\nSELECT 1/0;\n"}
    )
    with pytest.raises(MigrationError, match="0900_broken failed and was rolled back"):
        Migrator(db, files=files.iterdir()).up()
    assert scalar(db, "SELECT to_regclass('agents.half_done')") is None
    states = {r.name: r.state for r in Migrator(db, files=files.iterdir()).status()}
    assert states["schemas"] == "applied" and states["broken"] == "pending"


def test_two_runs_at_once_apply_each_migration_once(db: str, tmp_path: Path) -> None:
    files = copy_migrations(
        tmp_path, {"0900_slow.sql": "SELECT pg_sleep(1);\nCREATE TABLE agents.slow (id int);\n"}
    )
    reports = []

    def run() -> None:
        reports.append(Migrator(db, files=sorted(files.iterdir())).up())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = sorted(len(r.done) for r in reports)
    assert done[0] == 0 and done[1] >= 2  # one applied everything, the other waited: nothing
    assert scalar(db, "SELECT count(*) FROM migrations.applied_migrations WHERE name = 'slow'") == 1


def test_migrations_needing_an_absent_extension_wait(db: str, tmp_path: Path) -> None:
    files = copy_migrations(
        tmp_path,
        {
            "0900_exotic.sql": "-- msstore: requires-extension no_such_extension_here\n"
            "CREATE EXTENSION no_such_extension_here;\n",
            "0901_vectors.sql": "-- msstore: requires-extension vector\n"
            "CREATE EXTENSION IF NOT EXISTS vector;\n"
            "CREATE TABLE knowledge.probe (e vector({{embedding_dim}}));\n",
        },
    )
    report = Migrator(db, files=files.iterdir(), parameters={"embedding_dim": 384}).up()
    assert any(
        "0900_exotic: needs the PostgreSQL extension(s) no_such_extension_here" in s
        for s in report.skipped
    )
    has_vector = (
        scalar(db, "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'") == 1
    )
    assert ("0901_vectors" in report.done) is has_vector
    if has_vector:
        assert (
            scalar(
                db,
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'knowledge.probe'::regclass AND attname = 'e'",
            )
            == "vector(384)"
        )
    states = {r.name: r.state for r in Migrator(db, files=files.iterdir()).status()}
    assert states["exotic"] == "pending"


def test_cli_migrate(db: str) -> None:
    runner = CliRunner()
    status = runner.invoke(main, ["migrate", "status", "--dsn", db])
    assert status.exit_code == 0 and "pending" in status.output
    up = runner.invoke(main, ["migrate", "up", "--dsn", db])
    assert up.exit_code == 0 and "applied: 0001_schemas" in up.output
    again = runner.invoke(main, ["migrate", "up", "--dsn", db])
    assert "applied:" not in again.output
    assert ("nothing to do" in again.output) is not bool(without_vector(db))
    down = runner.invoke(main, ["migrate", "down", "--dsn", db, "--dry-run"])
    assert down.exit_code == 0 and "would be rolled back" in down.output


def test_unreachable_server_is_a_clear_error() -> None:
    from msstore.servers import free_port

    result = CliRunner().invoke(
        main, ["migrate", "up", "--dsn", f"postgresql://app:s3cret@127.0.0.1:{free_port()}/x"]
    )
    assert result.exit_code == 1 and "cannot connect to PostgreSQL" in result.output
    assert "s3cret" not in result.output


def test_every_table_takes_a_minimal_valid_row(db: str) -> None:
    """Catches schema defects that only show on insert (like a NOT NULL domain on an optional
    column, or a CHECK that rejects its own default)."""
    Migrator(db, parameters={"embedding_dim": 3}).up()
    with psycopg.connect(db) as conn:
        agent = conn.execute(
            "INSERT INTO agents.registry (agent_type, agent_name) "
            "VALUES ('planner', 'p1') RETURNING agent_id"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO agents.state (agent_id, state_key, state_value) VALUES (%s, 'k', '{}')",
            (agent,),
        )
        conn.execute(
            "INSERT INTO agents.checkpoints (agent_id, state_snapshot, kv_revision) "
            "VALUES (%s, '{}', 7)",
            (agent,),
        )
        conn.execute(
            "INSERT INTO agents.lifecycle_events (agent_id, event_type, new_status) "
            "VALUES (%s, 'started', 'active')",
            (agent,),
        )
        task = conn.execute(
            "INSERT INTO tasks.queue (task_type, assigned_agent_id) "
            "VALUES ('search', %s) RETURNING task_id",
            (agent,),
        ).fetchone()[0]
        child = conn.execute(
            "INSERT INTO tasks.queue (task_type, parent_task_id) "
            "VALUES ('read', %s) RETURNING task_id",
            (task,),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO tasks.dependencies (task_id, depends_on_task_id) VALUES (%s, %s)",
            (child, task),
        )
        conn.execute(
            "INSERT INTO tasks.executions (task_id, agent_id) VALUES (%s, %s)", (task, agent)
        )
        channel = conn.execute(
            "INSERT INTO messages.channels (channel_name, channel_type) "
            "VALUES ('ops', 'topic') RETURNING channel_id"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO messages.subscriptions (agent_id, channel_id) VALUES (%s, %s)",
            (agent, channel),
        )
        conn.execute(
            "INSERT INTO messages.log (from_agent_id, broadcast_to_type, message_type) "
            "VALUES (%s, 'all', 'notification')",
            (agent,),
        )
        conn.execute(
            "INSERT INTO sessions.active (session_token, expires_at) "
            "VALUES (repeat('t', 32), now() + interval '1 hour')"
        )
        fact = conn.execute(
            "INSERT INTO knowledge.facts (entity_type, entity_id, predicate, "
            "object_value, object_type, confidence_score) VALUES "
            "('agent', 'p1', 'likes', '\"tea\"', 'string', 0.9) "
            "RETURNING fact_id"
        ).fetchone()[0]
        if not without_vector(db):
            conn.execute(
                "INSERT INTO knowledge.embeddings (fact_id, embedding_model, "
                "embedding_version, embedding_vector, text_content, content_hash) "
                "VALUES (%s, 'm', '1', '[1,0,0]', 'p1 likes tea', repeat('a', 64))",
                (fact,),
            )
        rows = conn.execute(
            "SELECT count(*) FROM agents.hydrate_agent_state(%s)", (agent,)
        ).fetchone()[0]
        assert rows == 1


def test_time_partitions_are_created_filled_and_retired(db: str) -> None:
    Migrator(db).up()
    with psycopg.connect(db, autocommit=True) as conn:
        agent = conn.execute(
            "INSERT INTO agents.registry (agent_type, agent_name) "
            "VALUES ('t', 't') RETURNING agent_id"
        ).fetchone()[0]
        # a row far in the future lands in the DEFAULT partition ...
        conn.execute(
            "INSERT INTO agents.lifecycle_events (agent_id, event_type, new_status, created_at) "
            "VALUES (%s, 'later', 'idle', CURRENT_DATE + 20)",
            (agent,),
        )
        # ... and moves into its dated partition when that is created
        name = conn.execute(
            "SELECT partitions.create_time_partition('agents.lifecycle_events', CURRENT_DATE + 20)"
        ).fetchone()[0]
        assert name.startswith("agents.lifecycle_events_")
        assert conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] == 1
        assert (
            conn.execute("SELECT count(*) FROM agents.lifecycle_events_default").fetchone()[0] == 0
        )
        assert (
            conn.execute(
                "SELECT partitions.create_time_partition("
                "'agents.lifecycle_events', CURRENT_DATE + 20)"
            ).fetchone()[0]
            is None
        )
        conn.execute(
            "SELECT partitions.create_time_partition('tasks.executions', CURRENT_DATE - 40)"
        )
        changed = conn.execute(
            "SELECT partitions.manage_time_partitions('tasks.executions', 30, 3)"
        ).fetchone()[0]
        assert changed == 3  # +2, +3 days created (yesterday to tomorrow existed); -40 dropped
        old = conn.execute(
            "SELECT to_regclass('tasks.executions_' || to_char(CURRENT_DATE - 40, 'YYYY_MM_DD'))"
        ).fetchone()[0]
        assert old is None
        with pytest.raises(psycopg.errors.RaiseException, match="not partitioned by range"):
            conn.execute("SELECT partitions.create_time_partition('agents.registry', CURRENT_DATE)")
