"""msstore provision on real, fresh NATS servers: reference values read back from the server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from msstore.cli import main
from msstore.servers import EmbeddedNats

pytestmark = pytest.mark.nats
NS = 1_000_000_000


@pytest.fixture
def fresh_nats() -> Iterator[str]:
    with EmbeddedNats() as server:
        server.start()
        yield server.url


def server_state(url: str) -> dict[str, Any]:
    import nats

    async def main_() -> dict[str, Any]:
        nc = await nats.connect(url)
        try:
            out: dict[str, Any] = {}
            for name in (
                "KV_SESSION_DATA",
                "KV_AGENT_STATE",
                "KV_AGENT_CONFIG",
                "KV_QUERY_CACHE",
                "AGENT_STATE",
                "TASK_EXECUTION",
                "AGENT_MESSAGES",
            ):
                msg = await nc.request(f"$JS.API.STREAM.INFO.{name}", b"", timeout=5)
                out[name] = __import__("json").loads(msg.data)["config"]
            for stream, consumer in (
                ("TASK_EXECUTION", "task-processor"),
                ("AGENT_MESSAGES", "message-batch-processor"),
            ):
                msg = await nc.request(f"$JS.API.CONSUMER.INFO.{stream}.{consumer}", b"", timeout=5)
                out[consumer] = __import__("json").loads(msg.data)["config"]
            return out
        finally:
            await nc.close()

    return asyncio.run(main_())


def test_provision_creates_the_reference_resources_then_is_a_no_op(fresh_nats: str) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["provision", "--nats", fresh_nats])
    assert first.exit_code == 0, first.output
    assert sum(line.startswith("created") for line in first.output.splitlines()) == 10

    state = server_state(fresh_nats)
    buckets = {
        n: state[f"KV_{n}"] for n in ("SESSION_DATA", "AGENT_STATE", "AGENT_CONFIG", "QUERY_CACHE")
    }
    assert {
        n: (c["max_age"] // NS, c["max_msgs_per_subject"], c["storage"]) for n, c in buckets.items()
    } == {
        "SESSION_DATA": (3600, 1, "file"),
        "AGENT_STATE": (1800, 5, "file"),
        "AGENT_CONFIG": (0, 10, "file"),
        "QUERY_CACHE": (300, 1, "memory"),
    }
    assert buckets["AGENT_STATE"]["compression"] == "s2"
    assert all(c["num_replicas"] == 1 for c in buckets.values())  # R3 capped on one server

    agent = state["AGENT_STATE"]
    assert agent["subjects"] == ["agents.state.>", "agents.lifecycle.>", "agents.heartbeat.>"]
    assert (
        agent["storage"],
        agent["retention"],
        agent["max_age"] // NS,
        agent["max_msgs"],
        agent["max_bytes"],
        agent["max_msg_size"],
        agent["discard"],
        agent["duplicate_window"] // NS,
        agent["allow_rollup_hdrs"],
    ) == ("file", "limits", 1800, 1_000_000, 1024**3, 1024**2, "old", 300, True)
    tasks = state["TASK_EXECUTION"]
    assert len(tasks["subjects"]) == 6 and tasks["retention"] == "interest"
    assert (
        tasks["max_age"] // NS,
        tasks["max_msgs"],
        tasks["max_bytes"],
        tasks["max_msg_size"],
    ) == (86400, 10_000_000, 10 * 1024**3, 5 * 1024**2)
    messages = state["AGENT_MESSAGES"]
    assert (
        messages["storage"],
        messages["max_age"] // NS,
        messages["max_msgs"],
        messages["max_bytes"],
        messages["max_msg_size"],
    ) == ("memory", 300, 100_000, 100 * 1024**2, 256 * 1024)

    proc = state["task-processor"]
    assert (
        proc["durable_name"],
        proc["ack_policy"],
        proc["max_deliver"],
        proc["ack_wait"] // NS,
        proc["max_ack_pending"],
        proc["filter_subject"],
    ) == ("task-processor", "explicit", 3, 30, 100, "tasks.started.>")
    batch = state["message-batch-processor"]
    assert (
        batch["ack_wait"] // NS,
        batch["max_deliver"],
        batch["max_batch"],
        batch["max_expires"] // NS,
        batch["max_bytes"],
    ) == (60, 5, 100, 30, 1024**2)

    second = runner.invoke(main, ["provision", "--nats", fresh_nats])
    assert second.exit_code == 0, second.output
    assert not any(line.startswith("created") for line in second.output.splitlines())
    assert second.output.count("unchanged") == 10
    assert "nothing to change" in second.output


def test_dry_run_changes_nothing(fresh_nats: str) -> None:
    result = CliRunner().invoke(main, ["provision", "--nats", fresh_nats, "--dry-run"])
    assert result.exit_code == 0 and result.output.count("would create") == 10
    again = CliRunner().invoke(main, ["provision", "--nats", fresh_nats, "--dry-run"])
    assert again.output.count("would create") == 10  # still nothing on the server


def test_existing_resource_with_other_settings_is_reported_not_clobbered(
    fresh_nats: str, tmp_path: Path
) -> None:
    config = tmp_path / "nats.toml"
    config.write_text('[[buckets]]\nname = "CACHE"\nttl = 60\nhistory = 2\n')
    assert (
        CliRunner()
        .invoke(main, ["provision", "--nats", fresh_nats, "--config", str(config)])
        .exit_code
        == 0
    )
    config.write_text('[[buckets]]\nname = "CACHE"\nttl = 120\nhistory = 4\n')
    result = CliRunner().invoke(main, ["provision", "--nats", fresh_nats, "--config", str(config)])
    assert result.exit_code == 0
    assert "differs" in result.output and "history 2 (wanted 4)" in result.output
    assert "left as they are" in result.output
    import nats

    async def history() -> int:
        nc = await nats.connect(fresh_nats)
        info = await nc.jetstream().stream_info("KV_CACHE")
        await nc.close()
        return int(info.config.max_msgs_per_subject)

    assert asyncio.run(history()) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[buckets]]\nname = "bad name"\n', "invalid bucket name"),
        ('[[buckets]]\nname = "B"\nhistory = 100\n', "history"),
        ('[[streams]]\nname = "S"\nsubjects = []\n', "subjects"),
        ('[[consumers]]\nstream = "NOPE"\nname = "c"\n', "does not define"),
        ('[[buckets]]\nname = "B"\ncolour = "red"\n', "unknown setting"),
        ("[widgets]\n", "unknown section"),
        ("not toml at all [", "not valid TOML"),
    ],
)
def test_bad_configs_are_refused_before_touching_the_server(
    fresh_nats: str, tmp_path: Path, text: str, message: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    result = CliRunner().invoke(main, ["provision", "--nats", fresh_nats, "--config", str(config)])
    assert result.exit_code == 2 and message in result.output  # bad input: one line, exit 2
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


def test_json_config_and_python_objects(fresh_nats: str, tmp_path: Path) -> None:
    from msstore.backends.nats import NatsClient, NatsConfig, provision
    from msstore.buckets import BucketConfig
    from msstore.ops import ConsumerSpec, ProvisionConfig, StreamSpec, load

    path = tmp_path / "c.json"
    path.write_text('{"streams": [{"name": "EV", "subjects": ["ev.>"], "max_age": 60}]}')
    assert load(path).streams[0].max_age == 60
    config = ProvisionConfig(
        buckets=(BucketConfig(name="B1", history=2),),
        streams=(StreamSpec(name="EV", subjects=("ev.>",), max_age=60),),
        consumers=(ConsumerSpec(stream="EV", name="worker", kind="push"),),
    )
    client = NatsClient(NatsConfig(servers=[fresh_nats]))
    try:
        assert [c.action for c in provision(client, config)] == ["created"] * 3
        assert [c.action for c in provision(client, config)] == ["unchanged"] * 3
    finally:
        client.close()
