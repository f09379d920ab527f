"""The outbox relay on real servers: state, task and message changes reach their JetStream
streams once each; rows that can never go out are set aside without blocking the rest."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import orjson
import psycopg
import pytest

from msstore.backends.nats import JetStreamSink, NatsClient, NatsConfig, provision
from msstore.backends.postgres import PostgresOutbox, PostgresTaskQueue
from msstore.coordination import BatchReport, Event, OutboxRelay, subscribe
from msstore.coordination._provisioning import DEFAULT
from msstore.ops import ProvisionConfig, StreamSpec
from msstore.records import HealthStatus
from msstore.servers import EmbeddedNats
from msstore.testing import eventually
from msstore.work import TaskSpec

from ._streams import keep_everything, purge, stream_events

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

SMALL = StreamSpec(name="SMALL", subjects=("small.>",), max_msg_size=1024)


@pytest.fixture(scope="module")
def nats_url() -> Iterator[str]:
    with EmbeddedNats() as server:
        server.start()
        client = NatsClient(NatsConfig(servers=[server.url]))
        provision(client, DEFAULT)
        provision(client, ProvisionConfig(streams=(SMALL,)))
        client.close()
        keep_everything(server.url, "TASK_EXECUTION")
        yield server.url


@pytest.fixture
def outbox_dsn(pg_state_dsn: str, nats_url: str) -> str:
    with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE tasks.queue, tasks.executions, messages.outbox CASCADE")
    purge(nats_url, "AGENT_STATE", "TASK_EXECUTION", "AGENT_MESSAGES", "SMALL", "DEAD_LETTERS")
    return pg_state_dsn


@pytest.fixture
def relay(outbox_dsn: str, nats_url: str) -> Iterator[OutboxRelay]:
    client = NatsClient(NatsConfig(servers=[nats_url]))
    with OutboxRelay(PostgresOutbox(outbox_dsn), JetStreamSink(client), owns=True) as r:
        yield r
    client.close()


def test_task_events_reach_the_stream_once_in_order(
    relay: OutboxRelay, outbox_dsn: str, nats_url: str
) -> None:
    with PostgresTaskQueue(outbox_dsn) as queue:
        task = queue.enqueue("summarise", {"doc": 1})
        (claim,) = queue.claim("agent-a")
        queue.complete(claim, {"ok": True})
    assert relay.drain() == 3
    events = stream_events(nats_url, "TASK_EXECUTION")
    assert [e.subject for e in events] == [
        f"tasks.created.{task}",
        f"tasks.started.{task}",
        f"tasks.completed.{task}",
    ]
    assert [orjson.loads(e.data)["status"] for e in events] == ["pending", "running", "completed"]
    assert sorted(e.outbox_id for e in events) == [e.outbox_id for e in events]
    with psycopg.connect(outbox_dsn) as conn:
        rows = conn.execute(
            "SELECT msg_id::text FROM messages.outbox WHERE published_at IS NOT NULL "
            "ORDER BY outbox_id"
        ).fetchall()
    # One batch row per statement; each task's event is deduplicated by the row's id and its place.
    assert [f"{r[0]}.0" for r in rows] == [e.msg_id for e in events]
    assert relay.run_once().claimed == 0  # nothing left, nothing sent twice
    assert len(stream_events(nats_url, "TASK_EXECUTION")) == 3


def test_a_republished_batch_is_dropped_by_the_dedup_window(
    relay: OutboxRelay, outbox_dsn: str, nats_url: str
) -> None:
    outbox = relay.source
    assert isinstance(outbox, PostgresOutbox)
    outbox.add_many([(f"agents.state.{uuid.uuid4()}", {"n": i}) for i in range(5)])

    class Killed(Exception):
        pass

    def publish_then_die(events):  # type: ignore[no-untyped-def]
        relay.sink.publish_batch(events)
        raise Killed  # killed between the publish and the mark: the transaction rolls back

    with pytest.raises(Killed):
        outbox.relay_batch(100, publish_then_die)
    assert outbox.stats().depth == 5
    report = relay.run_once()
    assert (report.published, report.duplicates) == (5, 5)
    assert len(stream_events(nats_url, "AGENT_STATE")) == 5
    assert outbox.stats().depth == 0


def test_rows_that_cannot_go_out_fail_without_blocking_the_rest(
    relay: OutboxRelay, outbox_dsn: str, nats_url: str
) -> None:
    outbox = relay.source
    assert isinstance(outbox, PostgresOutbox)
    with psycopg.connect(outbox_dsn) as conn:  # rows no msstore call would write
        conn.execute(
            "INSERT INTO messages.outbox (subject, payload) VALUES "
            "('bad subject', '{}'), ('agents.state.>', '{}'), ('agents..state', '{}')"
        )
    outbox.add("small.big", {"blob": "x" * 2000})  # over SMALL's 1 KiB max_msg_size
    outbox.add("nowhere.at.all", {"n": 1})  # no stream captures it
    outbox.add(f"agents.state.{uuid.uuid4()}", {"n": 2})
    report = relay.run_once()
    assert (report.published, report.failed, report.retried) == (1, 5, 0)
    reasons = [reason for _, reason in outbox.failures()]
    assert "whitespace" in reasons[0] and "wildcard" in reasons[1] and "empty token" in reasons[2]
    assert "10054" in reasons[3] or "size" in reasons[3]
    assert reasons[4].startswith("no stream captures subject nowhere.at.all")
    assert "run `msstore provision`" in reasons[4]
    stats = relay.stats()
    assert (stats["depth"], stats["failed_rows"]) == (0, 5)
    assert len(stream_events(nats_url, "AGENT_STATE")) == 1


class Recorder:
    """A handler that records events, fails the first ``fail`` attempts of each, and lets a
    test wait for a number of calls."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.calls: list[Event] = []
        self._cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._cond:
            self.calls.append(event)
            self._cond.notify_all()
        if event.delivered <= self.fail:
            raise RuntimeError(f"attempt {event.delivered} refused")

    def wait_for(self, n: int, timeout: float = 30.0) -> list[Event]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.calls) >= n, timeout), self.calls
            return list(self.calls)


def test_the_task_processor_preset_sees_each_started_task_once(
    relay: OutboxRelay, outbox_dsn: str, nats_url: str
) -> None:
    client = NatsClient(NatsConfig(servers=[nats_url]))
    recorder = Recorder()
    with PostgresTaskQueue(outbox_dsn) as queue:
        ids = queue.enqueue_many([TaskSpec("crawl", {"n": i}) for i in range(20)])
        claims = queue.claim("agent-a", limit=20)
    relay.drain()
    with subscribe(client, recorder, preset="task-processor", durable="tp-test"):
        events = recorder.wait_for(20)
    assert sorted(e.json()["task_id"] for e in events) == sorted(str(i) for i in ids)
    assert all(e.subject.startswith("tasks.started.") and e.outbox_id for e in events)
    assert len({e.msg_id for e in events}) == 20 == len(claims)
    client.close()


def test_a_failing_handler_is_retried_with_backoff_then_dead_lettered(
    relay: OutboxRelay, outbox_dsn: str, nats_url: str
) -> None:
    outbox = relay.source
    assert isinstance(outbox, PostgresOutbox)
    agent = uuid.uuid4()
    outbox.add(f"agents.state.{agent}", {"n": "flaky"})
    outbox.add(f"agents.state.{agent}", {"n": "poison"})
    relay.drain()
    client = NatsClient(NatsConfig(servers=[nats_url]))
    flaky, poison = Recorder(fail=2), Recorder(fail=99)
    with subscribe(
        client,
        lambda e: flaky(e) if e.json()["n"] == "flaky" else poison(e),
        stream="AGENT_STATE",
        subject=f"agents.state.{agent}",
        durable="retry-test",
        max_deliver=3,
        backoff=(0.05, 0.1),
    ) as sub:
        assert [e.delivered for e in flaky.wait_for(3)] == [1, 2, 3]
        assert [e.delivered for e in poison.wait_for(3)] == [1, 2, 3]
        assert sub.wait_idle(30)
    dead = [e for e in stream_events(nats_url, "DEAD_LETTERS") if e.subject.endswith("retry-test")]
    assert len(dead) == 1 and orjson.loads(dead[0].data) == {"n": "poison"}
    assert sub.stats()["dead_lettered"] == 1 and sub.stats()["handled"] == 1
    client.close()


def test_a_second_relay_holds_back_a_subject_whose_head_the_first_holds(outbox_dsn: str) -> None:
    from msstore.backends.memory import MemoryEventStream

    stream = MemoryEventStream({"AGENT_STATE": ["agents.>"]})
    with PostgresOutbox(outbox_dsn) as outbox:
        outbox.add_many([("agents.state.a", {"n": n}) for n in range(4)])
        outbox.add("agents.state.b", {"n": 4})
        first, second = (OutboxRelay(outbox, stream, batch_size=2) for _ in range(2))
        inner: list[BatchReport] = []

        def publish(events):  # type: ignore[no-untyped-def]
            inner.append(second.run_once())  # while the first holds rows 0 and 1
            return first.sink.publish_batch(events)

        outbox.relay_batch(2, publish)
        assert (inner[0].claimed, inner[0].held_back, inner[0].published) == (2, 2, 0)
        while first.run_once().claimed:
            pass
    numbers = [orjson.loads(e.payload)["n"] for e in stream.events("AGENT_STATE")]
    assert numbers == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_nats_away_makes_the_relay_unhealthy_and_rows_wait(outbox_dsn: str) -> None:
    with EmbeddedNats() as server:
        server.start()
        client = NatsClient(NatsConfig(servers=[server.url], request_timeout=1))
        provision(client, DEFAULT)
        keep_everything(server.url, "TASK_EXECUTION")
        with OutboxRelay(PostgresOutbox(outbox_dsn), JetStreamSink(client), owns=True) as relay:
            outbox = relay.source
            assert isinstance(outbox, PostgresOutbox)
            agent = uuid.uuid4()
            outbox.add_many([(f"agents.state.{agent}", {"n": n}) for n in range(3)])
            assert relay.run_once().published == 3
            server.stop()
            outbox.add_many([(f"agents.state.{agent}", {"n": n}) for n in range(3, 6)])
            report = relay.run_once()
            assert (report.published, report.retried) == (0, 3)
            assert relay.health()[0] is HealthStatus.UNHEALTHY
            assert relay.stats()["depth"] == 3
            server.start()
            eventually(relay.sink.reachable, timeout=30, what="NATS coming back")
            eventually(
                lambda: relay.run_once() and relay.stats()["depth"] == 0,
                timeout=30,
                what="the waiting rows going out",
            )
            assert relay.health()[0] is HealthStatus.HEALTHY
        events = stream_events(server.url, "AGENT_STATE")
        assert [orjson.loads(e.data)["n"] for e in events] == list(range(6))
        client.close()


def test_logged_messages_are_announced_without_their_payload(
    relay: OutboxRelay, outbox_dsn: str, nats_url: str
) -> None:
    from msstore.backends.postgres import PostgresMessageLog, agent_id_for

    suffix = uuid.uuid4().hex[:8]
    with PostgresMessageLog(outbox_dsn) as log:
        team = log.create_channel(f"team-{suffix}", "broadcast")
        inbox = log.create_channel(f"inbox-{suffix}", "direct")
        direct = log.send(
            inbox.name,
            from_agent="planner",
            subject="do",
            to_agent="worker-1",
            message_type="command",
            payload={"secret": "s3cr3t"},
        )
        broadcast = log.send(team.name, from_agent="planner", subject="q", message_type="query")
    relay.drain()
    events = {e.subject: orjson.loads(e.data) for e in stream_events(nats_url, "AGENT_MESSAGES")}
    worker = agent_id_for("worker-1")
    assert set(events) == {f"messages.direct.{worker}", f"messages.broadcast.{team.channel_id}"}
    sent = events[f"messages.direct.{worker}"]
    assert sent["message_id"] == str(direct.message_id) and sent["message_type"] == "command"
    assert sent["from_agent_id"] == str(agent_id_for("planner")) and "payload" not in sent
    assert "s3cr3t" not in str(events)
    assert events[f"messages.broadcast.{team.channel_id}"]["message_id"] == str(
        broadcast.message_id
    )


def test_the_monitoring_preset_reads_the_whole_stream_from_its_last_event(
    relay: OutboxRelay, outbox_dsn: str, nats_url: str
) -> None:
    outbox = relay.source
    assert isinstance(outbox, PostgresOutbox)
    agent = uuid.uuid4()
    outbox.add_many([(f"agents.state.{agent}", {"n": n}) for n in range(3)])
    relay.drain()
    client = NatsClient(NatsConfig(servers=[nats_url]))
    recorder = Recorder()
    with subscribe(client, recorder, preset="monitoring"):
        (last,) = recorder.wait_for(1)
        outbox.add(f"agents.heartbeat.{agent}", {"n": 3})  # another subject of the stream
        relay.drain()
        events = recorder.wait_for(2)
    assert [e.json()["n"] for e in events] == [2, 3] and last.msg_id is not None
    client.close()
