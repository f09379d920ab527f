"""The outbox relay against a hand-written raw relay doing the same work.

Starts its own PostgreSQL and NATS from the ``embedded`` extra (or uses ``MSSTORE_PG_DSN`` /
``NATS_SERVERS``), applies the migrations and the default streams, and alternates msstore
and raw rounds (five each, which goes first alternating); figures are medians, the ratio the
median of the per-round ratios (``relay_ratio_rounds``).

* ``events_per_s``: ``EVENTS`` (5,000) committed outbox rows, three in four task events (one
  subject per task) and one in four state events over ``AGENTS`` (100) agents, drained by
  :class:`~msstore.coordination.OutboxRelay` (``PostgresOutbox`` + ``JetStreamSink``) in batches
  of ``BATCH`` (100): each pass claims, publishes with ``Nats-Msg-Id`` awaiting every ack, and
  marks the rows published in the claim's transaction; from the first claim to the last commit.
* ``raw_events_per_s``: the same rows drained by raw psycopg (``FOR UPDATE SKIP LOCKED`` claim
  of the same batch size, one ``UPDATE ... = ANY`` mark, commit) and raw nats-py
  (``js.publish_async`` for every event of the batch with ``Nats-Msg-Id``, so all are in flight
  at once, then every ack future awaited). The raw relay neither holds back subjects another
  relay holds nor keeps per-subject order across a lost publish; msstore does both.
* ``commit_to_ack_p50_ms`` / ``commit_to_ack_p95_ms``: a producer commits one event per
  millisecond (``RATE``, 1,000 events/s) for ``LATENCY_EVENTS`` (3,000) while the relay runs
  its loop (woken by ``NOTIFY``); from each commit's return to the return of the publish that
  JetStream acknowledged it in.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from msstore.bench._servers import database, nats_server
from msstore.coordination import OutboxRelay

EVENTS = 5_000
AGENTS = 100
BATCH = 100
ROUNDS = 5
RATE = 1_000
LATENCY_EVENTS = 3_000

PREFILL = """
INSERT INTO messages.outbox (subject, payload)
SELECT CASE WHEN i %% 4 = 0 THEN 'agents.state.' || %(agent)s || '-' || (i %% %(agents)s)
            ELSE 'tasks.' || (ARRAY['created', 'started', 'completed'])[1 + i %% 3] || '.'
                 || gen_random_uuid() END,
       jsonb_build_object('n', i, 'state_keys', jsonb_build_array('k' || i), 'versions',
                          jsonb_build_array(i), 'timestamp', extract(epoch FROM now()))
FROM generate_series(1, %(events)s) AS i
"""
RAW_CLAIM = """
SELECT outbox_id, msg_id::text, subject, payload::text FROM messages.outbox
WHERE published_at IS NULL AND failed_at IS NULL ORDER BY outbox_id LIMIT %s
FOR UPDATE SKIP LOCKED
"""
RAW_MARK = "UPDATE messages.outbox SET published_at = clock_timestamp() WHERE outbox_id = ANY(%b)"


def prepare(dsn: str, url: str) -> None:
    """Migrate ``dsn`` and create the two limits-retention streams the relay publishes to."""
    import psycopg  # noqa: PLC0415

    from msstore.backends.nats import NatsClient, NatsConfig, provision  # noqa: PLC0415
    from msstore.backends.postgres import Migrator  # noqa: PLC0415
    from msstore.ops import ProvisionConfig, StreamSpec  # noqa: PLC0415

    Migrator(dsn).up()
    with psycopg.connect(dsn, autocommit=True) as conn:  # no triggers' events in the way
        conn.execute("TRUNCATE messages.outbox")
    client = NatsClient(NatsConfig(servers=[url]))
    try:  # limits retention (an interest stream with no consumer would keep nothing)
        provision(
            client,
            ProvisionConfig(
                streams=(
                    StreamSpec(name="BENCH_STATE", subjects=("agents.state.>",)),
                    StreamSpec(name="BENCH_TASKS", subjects=("tasks.>",)),
                )
            ),
        )
    finally:
        client.close()


def fill(dsn: str, url: str, events: int) -> None:
    """An outbox of ``events`` waiting rows, and empty streams."""
    import nats  # noqa: PLC0415
    import psycopg  # noqa: PLC0415

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE messages.outbox")
        conn.execute(PREFILL, {"agent": str(uuid.uuid4()), "agents": AGENTS, "events": events})
        conn.execute("VACUUM ANALYZE messages.outbox")

    async def purge() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        for stream in ("BENCH_STATE", "BENCH_TASKS"):
            await js.purge_stream(stream)
        await nc.close()

    asyncio.run(purge())


def connect(dsn: str, url: str) -> OutboxRelay:
    """The msstore relay the benchmark measures (``OutboxRelay.connect``, batches of 100)."""
    return OutboxRelay.connect(dsn=dsn, nats_url=url, batch_size=BATCH)


def msstore_relay(dsn: str, url: str, events: int) -> float:
    """``OutboxRelay`` passes until the filled outbox is empty; events per second."""
    with connect(dsn, url) as relay:
        relay.source.stats()  # the pool's connection open before the clock starts
        start = time.perf_counter()
        published = relay.drain()
        elapsed = time.perf_counter() - start
    assert published == events, published
    return events / elapsed


def raw_relay(dsn: str, url: str, events: int) -> float:
    """The hand-written relay (psycopg SKIP LOCKED claim, nats-py ``publish_async``, mark) until
    the filled outbox is empty; events per second."""
    import nats  # noqa: PLC0415
    import psycopg  # noqa: PLC0415

    async def relay() -> float:
        nc = await nats.connect(url)
        js = nc.jetstream(timeout=5)
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT 1").fetchone()
            conn.commit()
            published = 0
            start = time.perf_counter()
            while True:
                rows = conn.execute(RAW_CLAIM, [BATCH]).fetchall()
                if not rows:
                    conn.commit()
                    break
                futures = [
                    await js.publish_async(
                        subject,
                        payload.encode(),
                        headers={"Nats-Msg-Id": msg_id, "Msstore-Outbox-Id": str(oid)},
                    )
                    for oid, msg_id, subject, payload in rows
                ]
                acks = await asyncio.gather(*futures)
                published += len(acks)
                conn.execute(RAW_MARK, [[r[0] for r in rows]])
                conn.commit()
            elapsed = time.perf_counter() - start
        await nc.close()
        assert published == events, published
        return events / elapsed

    return asyncio.run(relay())


def _latencies(dsn: str, url: str, count: int) -> list[float]:
    """Commit-to-ack milliseconds of ``count`` events committed at RATE per second."""
    import psycopg  # noqa: PLC0415

    from msstore.coordination import OutboxEvent, OutboxRelay, Outcome  # noqa: PLC0415

    fill(dsn, url, 0)
    acked: dict[int, float] = {}
    committed: dict[int, float] = {}
    done = threading.Event()
    with OutboxRelay.connect(dsn=dsn, nats_url=url, batch_size=BATCH, poll_interval=0.5) as relay:
        sink = relay.sink
        publish = sink.publish_batch

        def timed(events: Sequence[OutboxEvent]) -> list[Outcome]:
            outcomes = publish(events)
            now = time.perf_counter()
            for event in events:
                acked[event.outbox_id] = now
            if len(acked) >= count:
                done.set()
            return outcomes

        sink.publish_batch = timed  # type: ignore[method-assign]
        relay.source.stats()
        relay.start()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT 1")
            start = time.perf_counter()
            for i in range(count):
                due = start + i / RATE
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)  # the producer's pace, not a wait for a result
                row = conn.execute(
                    "WITH e AS (INSERT INTO messages.outbox (subject, payload) "
                    "VALUES (%s, '{}') RETURNING outbox_id) "
                    "SELECT outbox_id, pg_notify('msstore_outbox', 'bench') FROM e",
                    [f"agents.state.{i % AGENTS}"],
                ).fetchone()
                committed[row[0] if row else -1] = time.perf_counter()
        done.wait(60)
        relay.stop()
    return sorted((acked[k] - t) * 1000 for k, t in committed.items() if k in acked)


def _msstore_round(dsn: str, url: str, events: int) -> float:
    fill(dsn, url, events)
    return msstore_relay(dsn, url, events)


def _raw_round(dsn: str, url: str, events: int) -> float:
    fill(dsn, url, events)
    return raw_relay(dsn, url, events)


def run(
    *, events: int = EVENTS, rounds: int = ROUNDS, latency_events: int = LATENCY_EVENTS
) -> dict[str, Any]:
    with database() as dsn, nats_server() as url:
        prepare(dsn, url)
        ours: list[float] = []
        raw: list[float] = []
        _msstore_round(dsn, url, events)  # warm-up: plans, connections, caches
        _raw_round(dsn, url, events)
        for r in range(rounds):  # which goes first alternates, so order effects cancel
            if r % 2:
                raw.append(_raw_round(dsn, url, events))
                ours.append(_msstore_round(dsn, url, events))
            else:
                ours.append(_msstore_round(dsn, url, events))
                raw.append(_raw_round(dsn, url, events))
        latencies = _latencies(dsn, url, latency_events)
    ratios = [o / r for o, r in zip(ours, raw, strict=True)]
    return {
        "events": events,
        "batch": BATCH,
        "events_per_s": round(statistics.median(ours)),
        "raw_events_per_s": round(statistics.median(raw)),
        "relay_ratio": round(statistics.median(ratios), 3),
        "relay_ratio_rounds": [round(x, 3) for x in ratios],
        "latency_events": len(latencies),
        "latency_rate_per_s": RATE,
        "commit_to_ack_p50_ms": round(statistics.median(latencies), 2),
        "commit_to_ack_p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
    }
