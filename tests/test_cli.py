from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from click.testing import CliRunner

from msstore import __version__
from msstore.bench.memory_kv import run as bench_memory_kv
from msstore.cli import main


def test_help_and_version() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0 and "demo" in result.output and "bench" in result.output
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_demo_prints_a_summary_on_memory() -> None:
    result = CliRunner().invoke(main, ["demo", "--backend", "memory"])
    assert result.exit_code == 0, result.output
    for expected in (
        "20 agents x 50 state writes on memory backends",
        "wrote 1000 states",
        "flushed to SQL in",
        "lag KV -> SQL p50",
        "read back 20/20",
        "a00.scratch (ttl 1 s) expired in every tier: True",
        "CAS conflict on shared.tasks",
        "shared.tasks = 4 after 1 CAS conflict",
        "failed at its last step (step 'notify agent-b' failed: RuntimeError: agent-b is "
        "offline) and was rolled back: owner agent-a, handoffs 7, handoff rows 0; all "
        "restored: True",
    ):
        assert expected in result.output


def test_demo_json_figures() -> None:
    result = CliRunner().invoke(
        main, ["demo", "--json", "--backend", "memory", "--agents", "3", "--writes", "4"]
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["writes"] == 12 and figures["reads_ok"] == 3
    assert figures["expired_everywhere"] is True
    assert figures["cas_conflicts"] == 1 and figures["shared_tasks"] == 4
    assert figures["shared_tasks_in_sql"] is True
    assert figures["tasks_completed"] == 5 and figures["tasks_in_order"] is True
    assert figures["reports"] == 5 and figures["broadcast_heard"] == 3
    assert figures["saga_status"] == "rolled_back" and figures["saga_restored"] is True


@pytest.mark.postgres
@pytest.mark.nats
def test_demo_runs_on_embedded_servers() -> None:
    result = CliRunner().invoke(main, ["demo", "--json", "--backend", "embedded"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["writes"] == 1000 and figures["reads_ok"] == 20
    assert figures["flushed"] >= 20 and figures["lag_p95_ms"] > 0
    assert figures["expired_everywhere"] is True
    assert figures["tasks_completed"] == 5 and figures["tasks_in_order"] is True
    assert figures["reports"] == 5 and figures["broadcast_heard"] == 3
    assert figures["shared_tasks"] == 4 and figures["shared_tasks_in_sql"] is True
    assert figures["saga_status"] == "rolled_back" and figures["saga_restored"] is True


def test_bad_cli_input_is_refused() -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["demo", "--agents", "0"]).exit_code == 2
    assert runner.invoke(main, ["bench", "no-such-bench"]).exit_code == 2


def test_memory_kv_bench_reports_ratios() -> None:
    figures = bench_memory_kv(ops=2000)
    assert set(figures) >= {
        "put_per_s",
        "get_per_s",
        "cas_per_s",
        "raw_put_per_s",
        "raw_get_per_s",
        "put_ratio",
        "get_ratio",
        "value_bytes",
    }
    assert 1000 <= figures["value_bytes"] <= 1100
    assert all(figures[k] > 0 for k in ("put_per_s", "get_per_s", "cas_per_s"))


def test_console_script_bench_json() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "msstore", "bench", "memory-kv", "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert json.loads(out)["put_per_s"] > 0


def test_resolvers_bench_reports_every_crdt() -> None:
    from msstore.bench.resolvers import run

    figures = run(n=200)
    for name in ("gcounter", "pncounter", "orset", "lwwmap", "lwwregister", "mvregister"):
        assert figures[f"{name}_merges_per_s"] > 0
    assert figures["orset_merge_10k_ms"] > figures["raw_set_union_10k_ms"] > 0


def test_pg_upsert_bench_reports_ratios(msstore_postgres_dsn: str, monkeypatch: Any) -> None:
    from msstore.bench.pg_upsert import run

    monkeypatch.setenv("MSSTORE_PG_DSN", msstore_postgres_dsn)
    figures = run(rows=2000, rounds=1)
    assert figures["rows"] == 2000 and 150 <= figures["value_bytes"] <= 250
    for key in ("upsert_many_per_s", "raw_copy_merge_per_s", "raw_row_loop_per_s"):
        assert figures[key] > 0
    assert figures["copy_ratio"] > 0 and figures["vs_row_loop"] > 0


@pytest.mark.parametrize("dsn", ["garbage", "mysql://u@h/db"])
def test_migrate_with_a_bad_dsn_prints_one_line_and_exits_2(dsn: str) -> None:
    result = CliRunner().invoke(main, ["migrate", "up", "--dsn", dsn])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert "PostgreSQL DSN" in result.output


def test_relay_bench_reports_ratios(
    msstore_postgres_dsn: str, msstore_nats_url: str, monkeypatch: Any
) -> None:
    from msstore.bench.relay import run

    monkeypatch.setenv("MSSTORE_PG_DSN", msstore_postgres_dsn)
    monkeypatch.setenv("NATS_SERVERS", msstore_nats_url)
    figures = run(events=300, rounds=1, latency_events=50)
    assert figures["events"] == 300 and figures["latency_events"] == 50
    assert figures["events_per_s"] > 0 and figures["raw_events_per_s"] > 0
    assert figures["relay_ratio"] > 0
    assert 0 < figures["commit_to_ack_p50_ms"] <= figures["commit_to_ack_p95_ms"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["relay", "run", "--nats", "nats://x", "--batch-size", "0"], "batch-size"),
        (["relay", "run", "--dsn", "garbage", "--nats", "nats://x", "--once"], "PostgreSQL DSN"),
        (["relay", "status", "--dsn", "garbage"], "PostgreSQL DSN"),
        (["relay", "run", "--nats", "nats://x", "--keep-published", "-1"], "keep-published"),
    ],
)
def test_relay_bad_input_prints_one_line_and_exits_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and message in result.output


@pytest.mark.postgres
@pytest.mark.nats
def test_relay_once_publishes_and_status_reports(pg_state_dsn: str, msstore_nats_url: str) -> None:
    import psycopg

    from msstore.backends.nats import NatsClient, NatsConfig, provision
    from msstore.backends.postgres import PostgresOutbox
    from msstore.ops import ProvisionConfig, StreamSpec

    client = NatsClient(NatsConfig(servers=[msstore_nats_url]))
    provision(client, ProvisionConfig(streams=(StreamSpec(name="CLI", subjects=("cli.>",)),)))
    client.close()
    with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE messages.outbox")
        conn.execute("INSERT INTO messages.outbox (subject, payload) VALUES ('cli..x', '{}')")
    with PostgresOutbox(pg_state_dsn) as outbox:
        outbox.add_many([(f"cli.event.{i}", {"i": i}) for i in range(250)])
    runner = CliRunner()
    status = runner.invoke(main, ["relay", "status", "--dsn", pg_state_dsn, "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["depth"] == 251
    ran = runner.invoke(
        main, ["relay", "run", "--dsn", pg_state_dsn, "--nats", msstore_nats_url, "--once"]
    )
    assert ran.exit_code == 1, ran.output  # a script must notice the event that did not go
    assert "published 250 event(s); 1 set aside as failed" in ran.output
    assert "empty token" in ran.output and "Traceback" not in ran.output
    status = runner.invoke(
        main, ["relay", "status", "--dsn", pg_state_dsn, "--nats", msstore_nats_url]
    )
    assert status.exit_code == 0, status.output
    assert "waiting      0" in status.output and "failed rows  1" in status.output
    assert "health       DEGRADED (1 event(s) set aside as failed" in status.output
    assert "empty token" in status.output


@pytest.mark.postgres
@pytest.mark.nats
def test_events_relayed_before_provisioning_say_so_and_can_be_retried(
    pg_state_dsn: str, msstore_nats_url: str, msstore_unique_name: str
) -> None:
    import psycopg

    from msstore.backends.nats import NatsClient, NatsConfig, provision
    from msstore.backends.postgres import PostgresOutbox
    from msstore.ops import ProvisionConfig, StreamSpec

    subject = f"{msstore_unique_name.lower()}.event"
    with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE messages.outbox")
    with PostgresOutbox(pg_state_dsn) as outbox:
        outbox.add_many([(f"{subject}.{i}", {"i": i}) for i in range(15)])
    runner = CliRunner()
    common = ["--dsn", pg_state_dsn, "--nats", msstore_nats_url]
    ran = runner.invoke(main, ["relay", "run", *common, "--once"])
    assert ran.exit_code == 1, ran.output
    assert "15 set aside as failed" in ran.output and "msstore provision" in ran.output
    status = runner.invoke(main, ["relay", "status", *common])
    assert "health       DEGRADED" in status.output and "retry-failed" in status.output
    client = NatsClient(NatsConfig(servers=[msstore_nats_url]))
    stream = StreamSpec(name=msstore_unique_name.upper(), subjects=(f"{subject}.>",))
    provision(client, ProvisionConfig(streams=(stream,)))
    client.close()
    retried = runner.invoke(main, ["relay", "retry-failed", "--dsn", pg_state_dsn])
    assert retried.exit_code == 0 and "15 failed event(s) back in line" in retried.output
    ran = runner.invoke(main, ["relay", "run", *common, "--once"])
    assert ran.exit_code == 0 and "published 15 event(s); 0 set aside" in ran.output
    status = runner.invoke(main, ["relay", "status", *common])
    assert "health       HEALTHY" in status.output, status.output


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["migrate", "status"], ("--dsn", "MSSTORE_PG_DSN", "PG_HOST")),
        (["relay", "status"], ("--dsn", "MSSTORE_PG_DSN")),
        (["relay", "retry-failed"], ("--dsn", "MSSTORE_PG_DSN")),
        (["relay", "run", "--dsn", "postgresql://u@127.0.0.1:1/x"], ("--nats", "NATS_SERVERS")),
        (["provision"], ("--nats", "NATS_SERVERS")),
    ],
)
def test_a_command_without_its_server_names_its_option_and_variable(
    args: list[str], names: tuple[str, ...], monkeypatch: Any
) -> None:
    for var in ("MSSTORE_PG_DSN", "PG_HOST", "PG_DATABASE", "PG_USER", "NATS_SERVERS"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert all(name in result.output for name in names), result.output
    assert "Traceback" not in result.output


@pytest.mark.postgres
def test_relay_once_with_nats_away_fails_in_one_line(pg_state_dsn: str) -> None:
    from msstore.servers import free_port

    result = CliRunner().invoke(
        main,
        [
            "relay",
            "run",
            "--dsn",
            pg_state_dsn,
            "--nats",
            f"nats://127.0.0.1:{free_port()}",
            "--once",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "cannot connect to NATS" in result.output and "Traceback" not in result.output
    status = CliRunner().invoke(
        main,
        ["relay", "status", "--dsn", pg_state_dsn, "--nats", f"nats://127.0.0.1:{free_port()}"],
    )
    assert status.exit_code == 1, status.output
    assert "health       UNHEALTHY (NATS is unreachable" in status.output


def test_a_plot_without_matplotlib_fails_at_once_in_one_line(monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    result = CliRunner().invoke(main, ["bench", "flush-thresholds", "--plot", "x.png"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: --plot needs matplotlib; pip install 'msstore[plot]'"


def test_servers_runs_both_servers_until_interrupted() -> None:
    import os
    import signal

    import psycopg

    from msstore.backends.nats import NatsClient, NatsConfig

    proc = subprocess.Popen(
        [sys.executable, "-m", "msstore", "servers"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline(), proc.stdout.readline()]  # blocks until they are up
        env = dict(line.removeprefix("export ").strip().split("=", 1) for line in lines)
        dsn, url = env["MSSTORE_PG_DSN"].strip("'"), env["NATS_SERVERS"].strip("'")
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            assert (
                conn.execute(
                    "SELECT version FROM pg_available_extension_versions WHERE name = 'vector'"
                ).fetchone()
                is not None
            )
        client = NatsClient(NatsConfig(servers=[url]))
        assert client.server_version[0] >= 2
        client.close()
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "servers stopped" in err and "Traceback" not in err
