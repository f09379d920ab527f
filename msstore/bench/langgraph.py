"""LangGraph checkpointing: ``MsstoreSaver`` on NATS + PostgreSQL against LangGraph's own
``PostgresSaver`` (langgraph-checkpoint-postgres, in ``msstore[bench]``) on the same server.

Starts its own PostgreSQL and nats-server (or uses ``MSSTORE_PG_DSN`` / ``NATS_SERVERS``); each
saver gets a database of its own. ``ours`` is ``MsstoreSaver`` with a JetStream KV bucket as its
log (a put is one KV write; batches reach PostgreSQL within 50 ms); ``direct`` is the same saver
without the log (each put one statement on PostgreSQL). The graph is a chat loop: one node
appends one message (~200 bytes) to a ``messages`` list (``Annotated[list, operator.add]``) per
step, ``STEPS`` (50) steps per thread. ``ROUNDS`` (5) rounds, the savers' order rotating;
latencies are medians over every call of a round, ratios the median of the per-round ratios.

* ``put_p50_ms`` / ``direct_put_p50_ms`` / ``theirs_put_p50_ms``: each saver's ``put`` while
  the graph runs; ``put_latency_ratio`` is theirs over ours (``direct_put_latency_ratio``:
  theirs over direct).
* ``get_tuple_p50_ms`` (and ``direct_...``, ``theirs_...``): ``get_tuple`` of a finished
  thread's newest checkpoint (200 calls); ``get_tuple_ratio`` theirs over ours.
* ``bytes_per_step_50`` / ``bytes_per_step_200`` (and ``theirs_...``): growth of the saver's
  tables (``pg_total_relation_size``, TOAST and indexes included; ours once its log is
  applied) per step, over a thread of 50 and of 200 steps; ``bytes_per_step_ratio`` theirs
  over ours at 50 steps. ``live_bytes_200`` / ``live_bytes_200_keep_10``: the bytes of the
  rows ours keeps for a 200-step thread, without and with ``Retention(keep_latest=10)``.
* ``kv_put_floor_p50_ms`` / ``sql_insert_floor_p50_ms``: the cheapest durable write each tier
  takes on these servers (one bare KV ``put``, one bare ``INSERT``, 6 kB each): a put through
  the log cannot take less than the first, one straight to SQL less than the second.
"""

from __future__ import annotations

import contextlib
import operator
import statistics
import time
import uuid
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

from msstore.bench._servers import database, nats_server
from msstore.graphs import Retention

STEPS = 50
LONG = 200
ROUNDS = 5
GETS = 200
FLOOR_BYTES = 6_000  # (a put's frame at 25 messages, the middle of a 50-step thread)
OURS = ("graphs.checkpoints", "graphs.blobs", "graphs.writes", "graphs.threads")
THEIRS = ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "checkpoint_migrations")


class Chat(TypedDict):
    messages: Annotated[list[dict[str, Any]], operator.add]
    step: int


def _graph(checkpointer: Any, steps: int) -> Any:
    from langgraph.graph import END, START, StateGraph  # noqa: PLC0415

    def agent(state: Chat) -> dict[str, Any]:
        n = state["step"]
        text = f"message {n}: " + "lorem ipsum dolor sit amet " * 6
        return {"messages": [{"role": "assistant", "content": text, "n": n}], "step": n + 1}

    builder = StateGraph(Chat)
    builder.add_node("agent", agent)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", lambda s: END if s["step"] >= steps else "agent")
    return builder.compile(checkpointer=checkpointer)


def _timed(saver: Any, name: str, into: list[float]) -> None:
    """Time every call of ``saver.<name>`` into ``into`` (seconds)."""
    method = getattr(saver, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - start)

    setattr(saver, name, timed)


def _size(dsn: str, tables: tuple[str, ...]) -> int:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT sum(pg_total_relation_size(t::regclass))::bigint FROM unnest(%s::text[]) t",
            (list(tables),),
        ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _run_thread(saver: Any, steps: int) -> dict[str, Any]:
    thread = {"configurable": {"thread_id": str(uuid.uuid4())}, "recursion_limit": steps + 10}
    out = _graph(saver, steps).invoke({"messages": [], "step": 0}, thread, durability="sync")
    if len(out["messages"]) != steps:
        raise RuntimeError(f"the graph ran {len(out['messages'])} steps, not {steps}")
    return thread


@contextlib.contextmanager
def _savers(dsns: dict[str, str], nats_url: str) -> Iterator[dict[str, Any]]:
    from langgraph.checkpoint.postgres import PostgresSaver  # noqa: PLC0415

    from msstore.backends.nats import NatsClient, NatsConfig, NatsKV  # noqa: PLC0415
    from msstore.backends.postgres import Migrator, PostgresCheckpointStore  # noqa: PLC0415
    from msstore.buckets import BucketConfig  # noqa: PLC0415
    from msstore.integrations.langgraph import MsstoreSaver  # noqa: PLC0415

    for who in ("ours", "direct", "kept"):
        Migrator(dsns[who]).up()
    client = NatsClient(NatsConfig(servers=[nats_url]))
    kv = NatsKV.open(client, BucketConfig(name="BENCH_LANGGRAPH_LOG", history=1))
    with (
        PostgresCheckpointStore(dsns["ours"]) as ours,
        PostgresCheckpointStore(dsns["direct"]) as direct,
        PostgresCheckpointStore(dsns["kept"]) as kept,
        PostgresSaver.from_conn_string(dsns["theirs"]) as theirs,
    ):
        theirs.setup()
        logged = MsstoreSaver(ours, log=kv)
        try:
            yield {
                "ours": logged,
                "direct": MsstoreSaver(direct),
                "theirs": theirs,
                "kept": MsstoreSaver(kept, retention=Retention(keep_latest=10)),
                "kv": kv,
            }
        finally:
            logged.close()
            kv.destroy()
            kv.close()
            client.close()


def run(*, steps: int = STEPS, long: int = LONG, rounds: int = ROUNDS) -> dict[str, Any]:
    """The figures of the module docstring."""
    with database() as dsn, nats_server() as nats_url:
        import psycopg  # noqa: PLC0415

        names = {who: f"msstore_bench_lg_{who}" for who in ("ours", "direct", "theirs", "kept")}
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name in names.values():
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {name}")
        dsns = {k: psycopg.conninfo.make_conninfo(dsn, dbname=v) for k, v in names.items()}
        try:
            with _savers(dsns, nats_url) as savers:
                return _measure(savers, dsns, steps, long, rounds)
        finally:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for name in names.values():
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _grown(saver: Any, dsn: str, tables: tuple[str, ...], steps: int) -> tuple[float, str]:
    """Bytes the saver's tables grew by per step over a thread of ``steps`` steps, and the
    thread's id."""
    before = _size(dsn, tables)
    thread = _run_thread(saver, steps)
    if hasattr(saver, "flush"):  # (ours: its log applied)
        saver.flush()
    return (_size(dsn, tables) - before) / steps, thread["configurable"]["thread_id"]


def _live(dsn: str, thread_id: str) -> int:
    """Bytes of the rows msstore keeps for a thread (what a trim frees for reuse; the table's
    size only shrinks once vacuumed)."""
    import psycopg  # noqa: PLC0415

    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT coalesce(sum(pg_column_size(c.*)), 0) FROM graphs.checkpoints c "
            "WHERE thread_id = %(t)s) + (SELECT coalesce(sum(pg_column_size(b.*)), 0) FROM "
            "graphs.blobs b WHERE thread_id = %(t)s) + (SELECT coalesce(sum(pg_column_size(w.*)),"
            " 0) FROM graphs.writes w WHERE thread_id = %(t)s)",
            {"t": thread_id},
        ).fetchone()
    return int(row[0]) if row else 0


def _measure(
    savers: dict[str, Any], dsns: dict[str, str], steps: int, long: int, rounds: int
) -> dict[str, Any]:
    timed = ("ours", "direct", "theirs")
    puts: dict[str, list[float]] = {who: [] for who in timed}
    gets: dict[str, list[float]] = {who: [] for who in timed}
    for who in timed:  # (warm up: connections, plans)
        _run_thread(savers[who], 5)
    for r in range(rounds):
        for who in timed[r % 3 :] + timed[: r % 3]:
            saver = savers[who]
            calls: list[float] = []
            _timed(saver, "put", calls)
            try:
                thread = _run_thread(saver, steps)
            finally:
                del saver.put  # (the class's method again)
            puts[who].append(statistics.median(calls))
            reads: list[float] = []
            for _ in range(GETS):
                start = time.perf_counter()
                saver.get_tuple(thread)
                reads.append(time.perf_counter() - start)
            gets[who].append(statistics.median(reads))
    grown = {
        (who, n): _grown(savers[who], dsns[who], THEIRS if who == "theirs" else OURS, n)
        for who in ("ours", "theirs")
        for n in (steps, long)
    }
    growth = {k: v for k, (v, _) in grown.items()}
    _, kept_thread = _grown(savers["kept"], dsns["kept"], OURS, long)
    kv_floor, sql_floor = _floors(savers["kv"], dsns["theirs"])

    def ratio(figures: dict[str, list[float]], who: str) -> float:
        pairs = zip(figures["theirs"], figures[who], strict=True)
        return round(statistics.median(t / o for t, o in pairs), 2)

    def ms(values: list[float]) -> float:
        return round(statistics.median(values) * 1000, 3)

    return {
        "steps": steps,
        "rounds": rounds,
        "put_p50_ms": ms(puts["ours"]),
        "direct_put_p50_ms": ms(puts["direct"]),
        "theirs_put_p50_ms": ms(puts["theirs"]),
        "put_latency_ratio": ratio(puts, "ours"),
        "direct_put_latency_ratio": ratio(puts, "direct"),
        "get_tuple_p50_ms": ms(gets["ours"]),
        "direct_get_tuple_p50_ms": ms(gets["direct"]),
        "theirs_get_tuple_p50_ms": ms(gets["theirs"]),
        "get_tuple_ratio": ratio(gets, "ours"),
        "bytes_per_step_50": round(growth["ours", steps]),
        "theirs_bytes_per_step_50": round(growth["theirs", steps]),
        "bytes_per_step_200": round(growth["ours", long]),
        "theirs_bytes_per_step_200": round(growth["theirs", long]),
        "bytes_per_step_ratio": round(growth["theirs", steps] / growth["ours", steps], 2),
        "live_bytes_200": _live(dsns["ours"], grown["ours", long][1]),
        "live_bytes_200_keep_10": _live(dsns["kept"], kept_thread),
        "kv_put_floor_p50_ms": round(kv_floor * 1000, 3),
        "sql_insert_floor_p50_ms": round(sql_floor * 1000, 3),
    }


def _floors(kv: Any, dsn: str, size: int = FLOOR_BYTES, calls: int = GETS) -> tuple[float, float]:
    """The cheapest durable write of ``size`` bytes each tier takes, p50 seconds: one bare
    ``put`` to the log's KV bucket, and one bare ``INSERT`` in autocommit on the server."""
    import psycopg  # noqa: PLC0415

    from msstore.codec import Encoded  # noqa: PLC0415

    data = b"x" * size
    kv_calls: list[float] = []
    for i in range(calls):
        start = time.perf_counter()
        kv.put(f"floor.k{i}", Encoded(data, False))
        kv_calls.append(time.perf_counter() - start)
    sql_calls: list[float] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE floor (k int PRIMARY KEY, v bytea)")
        for i in range(calls):
            start = time.perf_counter()
            conn.execute("INSERT INTO floor VALUES (%s, %s)", (i, data))
            sql_calls.append(time.perf_counter() - start)
    return statistics.median(kv_calls), statistics.median(sql_calls)
