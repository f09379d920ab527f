"""`msstore health` against real servers: healthy, PostgreSQL stopped, a slow PostgreSQL, NATS
away, and a JetStream bucket that is missing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

import msstore
from msstore.cli import main
from msstore.servers import EmbeddedPostgres, free_port
from msstore.testing.proxy import TcpProxy
from tests.conftest import migrated_database

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

# A server that is down must fail the check within the connect timeout, not after a pool's
# 30 s: this bound tells the two apart on a busy machine without timing anything finer.
POOL_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def health_dsn(msstore_postgres_dsn: str) -> Iterator[str]:
    with migrated_database(msstore_postgres_dsn, "msstore_health") as dsn:
        yield dsn


def health(*args: str) -> tuple[int, Any, float]:
    start = time.monotonic()
    result = CliRunner().invoke(main, ["health", *args], catch_exceptions=False)
    took = time.monotonic() - start
    report = json.loads(result.stdout) if "--json" in args else result.stdout
    return result.exit_code, report, took


def checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


def test_healthy_servers_exit_0(
    health_dsn: str, msstore_nats_url: str, msstore_unique_name: str
) -> None:
    kv = msstore.open_kv(f"{msstore_nats_url}/{msstore_unique_name}")
    kv.put("a.k", 1)
    try:
        code, report, _ = health(
            "--json", "--dsn", health_dsn, "--nats", msstore_nats_url,
            "--bucket", msstore_unique_name,
        )  # fmt: skip
    finally:
        kv.close()
    assert code == 0, report
    assert report["status"] == "HEALTHY"
    got = checks(report)
    assert {"postgres.primary", "nats", "jetstream", "relay", "tasks"} <= set(got)
    bucket = got[f"jetstream.KV_{msstore_unique_name}"]
    assert bucket["details"]["messages"] == 1 and bucket["details"]["current"] == 1
    assert got["postgres.primary"]["latency_ms"] > 0
    assert got["tasks"]["details"]["stuck_leases"] == 0


def test_human_view_is_one_line_per_check(health_dsn: str, msstore_nats_url: str) -> None:
    code, text, _ = health("--dsn", health_dsn, "--nats", msstore_nats_url, "--stream", "NONE")
    lines = text.splitlines()
    assert code == 2  # a stream that is not there
    assert lines[-1] == "overall: UNHEALTHY"
    assert any(
        line.startswith("UNHEALTHY jetstream.NONE") and "msstore provision" in line
        for line in lines
    )
    assert sum(line.startswith("HEALTHY") for line in lines) >= 4


def test_stopped_postgres_is_unhealthy_within_the_connect_timeout(tmp_path: Any) -> None:
    with EmbeddedPostgres(base_dir=tmp_path) as server:
        dsn = server.dsn
        _, report, _ = health("--json", "--dsn", dsn)
        assert checks(report)["postgres.primary"]["status"] == "HEALTHY", report
        assert "msstore migrate up" in checks(report)["tasks"]["reason"]  # a new database
    code, report, took = health("--json", "--dsn", dsn, "--timeout", "2")
    print(f"stopped server reported in {took:.2f} s")
    assert code == 2
    got = checks(report)
    assert got["postgres.primary"]["status"] == "UNHEALTHY"
    assert "cannot connect to PostgreSQL at" in got["postgres.primary"]["reason"]
    assert got["relay"]["reason"] == got["tasks"]["reason"] == "PostgreSQL unreachable"
    assert took < POOL_TIMEOUT
    code, text, _ = health("--dsn", dsn, "--timeout", "2")
    assert code == 2 and "UNHEALTHY postgres.primary" in text


def test_a_hung_postgres_fails_at_the_connect_timeout(health_dsn: str) -> None:
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(health_dsn)
    with TcpProxy(str(info.get("host", "127.0.0.1")), int(str(info.get("port", 5432)))) as proxy:
        proxy.blackhole()
        dsn = psycopg.conninfo.make_conninfo(health_dsn, host="127.0.0.1", port=proxy.port)
        code, report, took = health("--json", "--dsn", dsn, "--timeout", "2")
    print(f"hung server reported in {took:.2f} s")
    assert code == 2
    reason = checks(report)["postgres.primary"]["reason"]
    assert "timeout" in reason.lower() and str(proxy.port) in reason
    assert took < POOL_TIMEOUT


def test_a_slow_postgres_is_degraded(health_dsn: str) -> None:
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(health_dsn)
    with TcpProxy(str(info.get("host", "127.0.0.1")), int(str(info.get("port", 5432)))) as proxy:
        proxy.slow(0.02)  # every round trip: >= 40 ms, between the 10 and 100 ms limits
        dsn = psycopg.conninfo.make_conninfo(health_dsn, host="127.0.0.1", port=proxy.port)
        code, report, _ = health("--json", "--dsn", dsn)
    assert code == 1, report
    primary = checks(report)["postgres.primary"]
    assert primary["status"] == "DEGRADED" and primary["latency_ms"] >= 40
    assert "healthy under 10 ms" in primary["reason"]


def test_nats_away_is_unhealthy_and_so_is_the_relay(health_dsn: str) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    code, report, took = health("--json", "--dsn", health_dsn, "--nats", url, "--timeout", "2")
    assert code == 2
    got = checks(report)
    assert (
        got["nats"]["status"] == "UNHEALTHY" and "cannot connect to NATS" in got["nats"]["reason"]
    )
    assert got["relay"]["status"] == "UNHEALTHY"
    assert got["postgres.primary"]["status"] == "HEALTHY"
    assert took < POOL_TIMEOUT


def test_no_server_named_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MSSTORE_PG_DSN", "NATS_SERVERS", "PG_HOST", "PG_DATABASE", "PG_USER"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(main, ["health"])
    assert result.exit_code == 2 and "--dsn" in result.output and "--nats" in result.output
    result = CliRunner().invoke(main, ["health", "--dsn", "mysql://x"])
    assert result.exit_code == 2 and "not a PostgreSQL DSN" in result.output
    assert "Traceback" not in result.output


def test_the_role_pools_answer_the_postgres_checks(health_dsn: str) -> None:
    from msstore import ops
    from msstore.backends.postgres import Pools, PoolSettings

    small = PoolSettings(
        min_size=1, max_size=2, acquire_timeout=5, idle_timeout=60, max_lifetime=60
    )
    with Pools(health_dsn, settings={"primary": small}) as pools:
        report = ops.health(postgres=pools)
    (check,) = report.checks  # background and analytics share the primary's server
    assert check.name == "postgres.primary" and check.status.value == "HEALTHY", check
    assert check.details["pool_size"] in (1, 2)  # min_size 1, max_size 2


def test_a_replica_behind_makes_its_bucket_degraded() -> None:
    from msstore import ops
    from msstore.backends.nats import NatsClient, NatsConfig, NatsKV
    from msstore.buckets import BucketConfig
    from msstore.errors import ConnectionFailed, DeadlineExceeded
    from msstore.servers import EmbeddedNatsCluster
    from msstore.testing import eventually

    def bucket_check(client: NatsClient, status: str) -> ops.Check:
        report = ops.health(nats=client, buckets=["R3HEALTH"], streams=[])
        checks = {c.name: c for c in report.checks}
        # (while a node goes away, the client may be reconnecting: the ping fails, no stream
        # is checked)
        assert "jetstream.KV_R3HEALTH" in checks, report.lines()
        check = checks["jetstream.KV_R3HEALTH"]
        assert check.status.value == status, check
        return check

    with EmbeddedNatsCluster() as cluster:
        cluster.start()
        client = NatsClient(NatsConfig(servers=cluster.urls, request_timeout=3))
        kv = NatsKV.open(client, BucketConfig(name="R3HEALTH", replicas=3))
        kv.put("agent.a.state", 1)
        healthy = eventually(
            lambda: bucket_check(client, "HEALTHY"),
            timeout=60,
            what="all three replicas current",
        )
        assert healthy.details["replicas"] == 3 and healthy.details["current"] == 3
        info = client.run(lambda c: c.js.stream_info("KV_R3HEALTH"), write=False, what="info")
        assert info.cluster is not None
        follower = next(
            n for n in cluster.nodes if str(info.cluster.leader) not in " ".join(n.extra_args)
        )
        follower.stop()
        degraded = eventually(
            lambda: bucket_check(client, "DEGRADED"),
            timeout=60,
            interval=0.2,
            what="a replica reported behind",
            retry_on=(ConnectionFailed, DeadlineExceeded),
        )
        assert degraded.reason == "only 2 of 3 replicas current"
        follower.start()
        kv.close()
        client.close()
