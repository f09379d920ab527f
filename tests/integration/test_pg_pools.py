"""Role pools on the real PostgreSQL: settings, round-robin reads with fallback, stats, health."""

from __future__ import annotations

import pytest

pytest.importorskip("psycopg", reason="needs msstore[postgres]")

from msstore.backends.postgres import (
    Pools,
    PoolSettings,
    latency_status,
    recommend_pool_size,
)
from msstore.errors import InvalidArgument
from msstore.records import HealthStatus
from msstore.servers import free_port

pytestmark = pytest.mark.postgres
SMALL = PoolSettings(min_size=1, max_size=2, acquire_timeout=2, idle_timeout=60, max_lifetime=600)
TINY = {role: SMALL for role in ("primary", "replica", "background", "analytics")}


def test_roles_sessions_and_round_robin_reads(msstore_postgres_dsn: str) -> None:
    dsn = msstore_postgres_dsn
    with Pools(dsn, replicas=[dsn, dsn], settings=TINY, open_now=False).open() as pools:
        with pools.connection() as conn:
            timeout, idle, app = conn.execute(  # type: ignore[misc]
                "SELECT current_setting('statement_timeout'), "
                "current_setting('idle_in_transaction_session_timeout'), "
                "current_setting('application_name')"
            ).fetchone()
        assert (timeout, idle, app) == ("30s", "1min", "msstore-primary")
        seen = []
        for _ in range(4):
            with pools.reader() as conn:
                seen.append(conn.execute("SHOW application_name").fetchone()[0])  # type: ignore[index]
        assert seen == ["msstore-replica0", "msstore-replica1"] * 2
        with pools.connection("background") as conn:
            assert conn.execute("SHOW application_name").fetchone()[0] == "msstore-background"  # type: ignore[index]
        stats = pools.get_stats()
        assert set(stats) == {"primary", "background", "analytics", "replica0", "replica1"}
        assert stats["primary"]["pool_max"] == 2 and "requests_num" in stats["replica0"]


def test_reads_fall_back_to_the_primary(msstore_postgres_dsn: str) -> None:
    dead = f"postgresql://app:s3cret@127.0.0.1:{free_port()}/postgres"
    pools = Pools(msstore_postgres_dsn, replicas=[dead], settings=TINY, open_now=False)
    try:
        pools.pool("primary").open(wait=True)
        with pools.reader(timeout=1) as conn:
            assert conn.execute("SHOW application_name").fetchone()[0] == "msstore-primary"  # type: ignore[index]
        assert "s3cret" not in repr(pools) and "***" in repr(pools)
    finally:
        pools.close()


def test_health_reports_a_measured_latency_classed_by_its_thresholds(
    msstore_postgres_dsn: str,
) -> None:
    with Pools(msstore_postgres_dsn, settings=TINY) as pools:
        health = pools.health()
        # How fast the machine answers is not the claim (a busy machine is slow); that the
        # report classes what it measured by the thresholds is.
        assert health.latency_ms is not None and "primary" in health.pools
        assert health.status == latency_status(health.latency_ms)


def test_latency_thresholds_and_an_unreachable_server() -> None:
    assert [latency_status(x) for x in (0.5, 9.99, 10, 99.9, 100, None)] == [
        HealthStatus.HEALTHY,
        HealthStatus.HEALTHY,
        HealthStatus.DEGRADED,
        HealthStatus.DEGRADED,
        HealthStatus.UNHEALTHY,
        HealthStatus.UNHEALTHY,
    ]
    dead = Pools(
        f"postgresql://x@127.0.0.1:{free_port()}/x",
        settings={
            **TINY,
            "primary": PoolSettings(
                min_size=0, max_size=1, acquire_timeout=1, idle_timeout=60, max_lifetime=600
            ),
        },
    )
    try:
        report = dead.health()
        assert report.status is HealthStatus.UNHEALTHY and report.error
    finally:
        dead.close()


def test_from_env_and_bad_settings(msstore_postgres_dsn: str) -> None:
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(msstore_postgres_dsn)
    env = {
        "PG_HOST": str(info["host"]),
        "PG_PORT": str(info["port"]),
        "PG_DATABASE": str(info["dbname"]),
        "PG_USER": str(info["user"]),
        "PG_MIN_CONNECTIONS": "1",
        "PG_MAX_CONNECTIONS": "3",
        "PG_APP_NAME": "agents",
        "PG_STATEMENT_TIMEOUT": "5000",
    }
    with Pools.from_env(
        env, settings={r: SMALL for r in ("background", "analytics")}, open_now=False
    ).open() as pools:
        assert pools.get_stats()["primary"]["pool_max"] == 3
        with pools.connection() as conn:
            assert conn.execute("SHOW application_name").fetchone()[0] == "agents-primary"  # type: ignore[index]
    with pytest.raises(InvalidArgument):
        PoolSettings(min_size=3, max_size=2, acquire_timeout=1, idle_timeout=1, max_lifetime=1)
    with pytest.raises(InvalidArgument):
        Pools(msstore_postgres_dsn, settings={"writer": SMALL}, open_now=False)
    with pytest.raises(InvalidArgument, match=r"settings\['primary'\] must be a PoolSettings"):
        Pools(msstore_postgres_dsn, settings={"primary": {"max_size": 2}}, open_now=False)  # type: ignore[dict-item]
    with pytest.raises(InvalidArgument):
        Pools.from_env({"PG_HOST": "h", "PG_MAX_CONNECTIONS": "lots"})


@pytest.mark.parametrize(
    ("agents", "ops", "duration", "size"),
    [
        (4, 100, 0.01, 2),  # Little's law 1.25, raised to the floor of 2
        (10, 200, 0.05, 10),  # 12.5 x 0.8 = 10
        (100, 1000, 0.05, 38),  # 62.5 x 0.6 = 37.5, rounded up
        (40, 10_000, 0.1, 50),  # capped at 50
    ],
)
def test_pool_sizing_helper(agents: int, ops: float, duration: float, size: int) -> None:
    rec = recommend_pool_size(agents, ops, duration)
    assert rec.recommended_size == size == rec.max_connections
    assert rec.min_connections == -(-size * 2 // 10)
