"""LangGraph checkpointing: ``MsstoreSaver`` on PostgreSQL against LangGraph's own
``PostgresSaver`` (langgraph-checkpoint-postgres, in ``msstore[bench]``) on the same server.

Starts its own PostgreSQL (or uses ``MSSTORE_PG_DSN``); each saver gets a database of its own on
it. The graph is a chat loop: one node appends one message (~200 bytes) to a ``messages`` list
(``Annotated[list, operator.add]``) per step, ``STEPS`` (50) steps per thread. ``ROUNDS`` (3)
rounds, which saver goes first alternating; latencies are medians over every call of a round,
ratios the median of the per-round ratios.

* ``put_p50_ms`` / ``theirs_put_p50_ms``: each saver's ``put`` while the graph runs;
  ``put_latency_ratio`` is theirs over ours.
* ``get_tuple_p50_ms`` / ``theirs_get_tuple_p50_ms``: ``get_tuple`` of a finished thread's
  newest checkpoint (200 calls); ``get_tuple_ratio`` theirs over ours.
* ``bytes_per_step_50`` / ``bytes_per_step_200`` (and ``theirs_...``): growth of the saver's
  tables (``pg_total_relation_size``, TOAST and indexes included) per step, over a thread of 50
  and of 200 steps; ``bytes_per_step_ratio`` theirs over ours at 50 steps.
"""

from __future__ import annotations

import contextlib
import operator
import statistics
import time
import uuid
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

from msstore.bench._servers import database

STEPS = 50
LONG = 200
ROUNDS = 3
GETS = 200
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
    out = _graph(saver, steps).invoke({"messages": [], "step": 0}, thread)
    if len(out["messages"]) != steps:
        raise RuntimeError(f"the graph ran {len(out['messages'])} steps, not {steps}")
    return thread


@contextlib.contextmanager
def _savers(ours_dsn: str, theirs_dsn: str) -> Iterator[dict[str, Any]]:
    from langgraph.checkpoint.postgres import PostgresSaver  # noqa: PLC0415

    from msstore.backends.postgres import Migrator, PostgresCheckpointStore  # noqa: PLC0415
    from msstore.integrations.langgraph import MsstoreSaver  # noqa: PLC0415

    Migrator(ours_dsn).up()
    with (
        PostgresCheckpointStore(ours_dsn) as store,
        PostgresSaver.from_conn_string(theirs_dsn) as theirs,
    ):
        theirs.setup()
        yield {"ours": MsstoreSaver(store), "theirs": theirs}


def run(*, steps: int = STEPS, long: int = LONG, rounds: int = ROUNDS) -> dict[str, Any]:
    """The figures of the module docstring."""
    with database() as dsn:
        import psycopg  # noqa: PLC0415

        names = {"ours": "msstore_bench_lg_ours", "theirs": "msstore_bench_lg_theirs"}
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name in names.values():
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {name}")
        dsns = {k: psycopg.conninfo.make_conninfo(dsn, dbname=v) for k, v in names.items()}
        tables: dict[str, tuple[str, ...]] = {"ours": OURS, "theirs": THEIRS}
        try:
            return _measure(dsns, tables, steps, long, rounds)
        finally:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for name in names.values():
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _measure(
    dsns: dict[str, str],
    tables: dict[str, tuple[str, ...]],
    steps: int,
    long: int,
    rounds: int,
) -> dict[str, Any]:
    puts: dict[str, list[float]] = {"ours": [], "theirs": []}
    gets: dict[str, list[float]] = {"ours": [], "theirs": []}
    growth: dict[str, dict[int, float]] = {"ours": {}, "theirs": {}}
    with _savers(dsns["ours"], dsns["theirs"]) as savers:
        for saver in savers.values():  # (warm up: connections, plans)
            _run_thread(saver, 5)
        order = list(savers)
        for r in range(rounds):
            for who in order[r % 2 :] + order[: r % 2]:
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
        for who, saver in savers.items():
            for n in (steps, long):
                before = _size(dsns[who], tables[who])
                _run_thread(saver, n)
                growth[who][n] = (_size(dsns[who], tables[who]) - before) / n

    def ratio(figures: dict[str, list[float]]) -> float:
        pairs = zip(figures["theirs"], figures["ours"], strict=True)
        return round(statistics.median(t / o for t, o in pairs), 2)

    def ms(values: list[float]) -> float:
        return round(statistics.median(values) * 1000, 3)

    return {
        "steps": steps,
        "rounds": rounds,
        "put_p50_ms": ms(puts["ours"]),
        "theirs_put_p50_ms": ms(puts["theirs"]),
        "put_latency_ratio": ratio(puts),
        "get_tuple_p50_ms": ms(gets["ours"]),
        "theirs_get_tuple_p50_ms": ms(gets["theirs"]),
        "get_tuple_ratio": ratio(gets),
        "bytes_per_step_50": round(growth["ours"][steps]),
        "theirs_bytes_per_step_50": round(growth["theirs"][steps]),
        "bytes_per_step_200": round(growth["ours"][long]),
        "theirs_bytes_per_step_200": round(growth["theirs"][long]),
        "bytes_per_step_ratio": round(growth["theirs"][steps] / growth["ours"][steps], 2),
    }
