"""The outbox relay under faults, on real servers: relays SIGKILLed at random and NATS restarted
(down until the relay has retried a few times) while 10,000 state and task changes commit; two
relays in separate processes.

What must hold: every outbox event is in its stream exactly once (ids and counts checked), each
subject's events are in outbox order, a consumer running throughout sees each event once, and
the outbox ends with everything published.
"""

from __future__ import annotations

import collections
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from msstore.backends.nats import NatsClient, NatsConfig, provision
from msstore.backends.postgres import PostgresStateStore, PostgresTaskQueue
from msstore.coordination import Event, subscribe
from msstore.coordination._provisioning import DEFAULT
from msstore.records import Record
from msstore.servers import EmbeddedNats
from msstore.testing import eventually
from msstore.work import TaskSpec

from ._streams import keep_everything, stream_events

pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.slow]

AGENTS = 20
ROUNDS = 50
PER_ROUND = 50  # tasks (3 events each) and state writes (1 event each) per round
RETRIES_DURING_OUTAGE = 3  # the server stays away until the relay met it away this often


@pytest.fixture
def servers(pg_state_dsn: str) -> Iterator[tuple[str, EmbeddedNats]]:
    with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM agents.state")  # (its DELETE events go with the TRUNCATE)
        conn.execute("TRUNCATE tasks.queue, tasks.executions, messages.outbox CASCADE")
    with EmbeddedNats() as server:
        server.start()
        client = NatsClient(NatsConfig(servers=[server.url]))
        provision(client, DEFAULT)
        client.close()
        keep_everything(server.url, "TASK_EXECUTION")
        yield pg_state_dsn, server


def relay_process(
    dsn: str, url: str, *, report: bool = False, batch_size: int = 100
) -> subprocess.Popen[str]:
    """``msstore relay run``; with ``report``, its closing line can be read from stderr."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "msstore",
            "relay",
            "run",
            "--dsn",
            dsn,
            "--nats",
            url,
            "--poll-interval",
            "0.2",
            "--batch-size",
            str(batch_size),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if report else subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def listeners(dsn: str) -> int:
    """Connections listening for outbox notifications (one per running relay)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query ILIKE 'LISTEN%%'"
        ).fetchone()
    return int(row[0]) if row else 0


# A row of task events (subject tasks.>) holds one event per task; any other row one event.
EVENTS_OF_ROW = (
    "CASE WHEN subject = 'tasks.>' THEN jsonb_array_length(payload->'task_id') ELSE 1 END"
)


def outbox_counts(dsn: str) -> tuple[int, int, int]:
    """Events in the outbox: (all, published, failed)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            f"SELECT COALESCE(sum({EVENTS_OF_ROW}), 0), "
            f"COALESCE(sum({EVENTS_OF_ROW}) FILTER (WHERE published_at IS NOT NULL), 0), "
            f"COALESCE(sum({EVENTS_OF_ROW}) FILTER (WHERE failed_at IS NOT NULL), 0) "
            "FROM messages.outbox"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def retries(dsn: str) -> int:
    """Publish attempts the relays gave up on and left waiting (the outbox counts them)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT COALESCE(sum(attempts), 0) FROM messages.outbox").fetchone()
    assert row is not None
    return int(row[0])


def produce(dsn: str, done: threading.Event) -> None:
    """ROUNDS rounds of: PER_ROUND tasks enqueued, claimed and completed (created, started,
    completed events), and PER_ROUND state writes spread over AGENTS agents."""
    version = collections.Counter[str]()
    with PostgresTaskQueue(dsn) as queue, PostgresStateStore(dsn) as state:
        for r in range(ROUNDS):
            queue.enqueue_many([TaskSpec("fault", {"r": r, "i": i}) for i in range(PER_ROUND)])
            for claim in queue.claim("worker", limit=PER_ROUND):
                queue.complete(claim, {"r": r})
            for i in range(PER_ROUND):
                key = f"agent-{i % AGENTS}.k{i // AGENTS}"
                version[key] += 1
                state.upsert_many([Record(key, {"r": r}, version[key], time.time())])
    done.set()


def test_every_event_reaches_its_stream_once_through_kills_and_a_nats_restart(
    servers: tuple[str, EmbeddedNats],
) -> None:
    dsn, server = servers
    rng = random.Random(16)
    expected = ROUNDS * PER_ROUND * 4
    # The three kills and the restart happen once this many events are published.
    kill_at = sorted(rng.sample(range(500, expected - 1500), 3))
    restart_at = rng.randrange(kill_at[0], kill_at[2])

    seen: list[str] = []
    seen_lock = threading.Lock()

    def watch(event: Event) -> None:
        with seen_lock:
            seen.append(event.msg_id or "")

    client = NatsClient(NatsConfig(servers=[server.url], request_timeout=3))
    watcher = subscribe(
        client, watch, stream="AGENT_STATE", subject="agents.state.>", durable="fault-watch"
    )
    try:
        _run_faults(dsn, server, kill_at, restart_at, seen)
    finally:
        watcher.stop()
        client.close()


def _run_faults(
    dsn: str, server: EmbeddedNats, kill_at: list[int], restart_at: int, seen: list[str]
) -> None:
    expected = ROUNDS * PER_ROUND * 4
    done = threading.Event()
    producer = threading.Thread(target=produce, args=(dsn, done), daemon=True)
    producer.start()
    relay = relay_process(dsn, server.url)
    started_at = 0  # (events published when the running relay started)
    # The faults, in the order their moment comes: (events published by then, what happens).
    faults = sorted([*((at, "kill") for at in kill_at), (restart_at, "restart")])
    try:
        for at, fault in faults:

            def reached(at: int = at) -> bool:
                assert producer.is_alive() or done.is_set(), "the producer died"
                return outbox_counts(dsn)[1] >= at

            eventually(reached, timeout=300, what=f"{at} events published")
            if fault == "kill":
                relay.send_signal(signal.SIGKILL)  # no clean-up: mid-batch, maybe mid-publish
                relay.wait()
                started_at = outbox_counts(dsn)[1]
                relay = relay_process(dsn, server.url)
            else:
                # (a relay that cannot reach NATS when it starts exits, as it should: on a busy
                # machine a relay started just before may still be connecting, so the outage
                # waits until it has published)
                eventually(
                    lambda: outbox_counts(dsn)[1] > started_at,  # noqa: B023
                    timeout=120,
                    what="the running relay publishing",
                )
                wanted = retries(dsn) + RETRIES_DURING_OUTAGE
                server.stop()  # away until the relay has met it away a few times
                eventually(
                    lambda: retries(dsn) >= wanted,  # noqa: B023 - (called before the loop moves)
                    timeout=120,
                    what="the relay retrying while NATS is away",
                )
                server.start()
        producer.join(120)
        assert done.is_set()
        eventually(
            lambda: outbox_counts(dsn)[1] == outbox_counts(dsn)[0], timeout=120, what="the relay"
        )
    finally:
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(30) == 0

    rows, published, failed = outbox_counts(dsn)
    assert rows == expected and published == rows and failed == 0
    with psycopg.connect(dsn) as conn:
        outbox: dict[str, int] = dict(
            conn.execute(  # each event's Nats-Msg-Id: the row's, with .<n> in a batch row
                "SELECT CASE WHEN subject = 'tasks.>' THEN msg_id::text || '.' || (n - 1) "
                f"ELSE msg_id::text END, outbox_id FROM messages.outbox, "
                f"generate_series(1, {EVENTS_OF_ROW}) AS n"
            ).fetchall()
        )
    events = stream_events(server.url, "AGENT_STATE") + stream_events(server.url, "TASK_EXECUTION")
    ids = [e.msg_id for e in events]
    assert len(ids) == len(set(ids)) == rows  # nothing twice, nothing missing
    assert set(ids) == set(outbox)
    assert all(outbox[e.msg_id] == e.outbox_id for e in events)
    by_subject: dict[str, list[int]] = collections.defaultdict(list)
    for e in sorted(events, key=lambda e: (e.subject.split(".")[0], e.seq)):
        by_subject[e.subject].append(e.outbox_id)
    assert all(line == sorted(line) for line in by_subject.values())  # outbox order per subject

    state_events = sum(1 for e in events if e.subject.startswith("agents.state."))
    eventually(lambda: len(seen) >= state_events, timeout=60, what="the consumer")
    assert len(seen) == len(set(seen)) == state_events  # the consumer saw each event once


def test_two_relay_processes_share_the_work_and_publish_nothing_twice(
    servers: tuple[str, EmbeddedNats],
) -> None:
    dsn, server = servers
    from msstore.backends.postgres import PostgresOutbox

    # Both relays are up and listening before the first row arrives, and the work comes in
    # 200 small batches, so that neither can drain it all before the other wakes, even on a
    # machine busy enough to start one process seconds after the other.
    relays = [relay_process(dsn, server.url, report=True, batch_size=20) for _ in range(2)]
    try:
        eventually(lambda: listeners(dsn) >= 2, timeout=120, what="both relays listening")
        with PostgresOutbox(dsn) as outbox:
            for chunk in range(40):
                outbox.add_many(
                    [(f"agents.state.{uuid.uuid4()}", {"c": chunk, "i": i}) for i in range(100)]
                )
        eventually(lambda: outbox_counts(dsn)[1] >= 4000, timeout=120, what="the relays")
    finally:
        for relay in relays:
            relay.send_signal(signal.SIGTERM)
        closing = [relay.communicate(timeout=30)[1] for relay in relays]
    assert [relay.returncode for relay in relays] == [0, 0], closing
    assert outbox_counts(dsn) == (4000, 4000, 0)
    events = stream_events(server.url, "AGENT_STATE")
    assert len(events) == len({e.msg_id for e in events}) == 4000
    done = [re.search(r"published (\d+) \(duplicates (\d+)\)", text) for text in closing]
    assert all(done), closing
    counts = [(int(m.group(1)), int(m.group(2))) for m in done if m]
    assert sum(n for n, _ in counts) == 4000 and all(d == 0 for _, d in counts)
    assert all(n > 0 for n, _ in counts), counts  # both did work
