"""Hybrid writes on NATS + PostgreSQL across flush thresholds, against raw nats-py puts.

Starts its own servers from the ``embedded`` extra (or uses ``NATS_SERVERS`` / ``MSSTORE_PG_DSN``).
For each threshold (1, 10, 50, 200, 1000) a raw KV round (:func:`raw_kv_round`: nats-py
``await kv.put()`` one at a time, on its own event loop), a raw dual round (below) and a msstore
round (:func:`msstore_round`: ``HybridStateManager.put`` one at a time, the flusher running)
alternate, ``rounds`` times (5), so that machine noise hits all alike; each figure is the median
over the rounds, each ratio the median of the per-round ratios (msstore's round over the raw
rounds beside it). ``raw_put_per_s`` is the median raw KV round over every threshold,
``raw_kv_writes_per_s`` each threshold's. The pytest-benchmark suite
(``benchmarks/test_flush_thresholds.py``) times the same three rounds.

* ``writes_per_s``: acknowledged ``put`` calls per second (the flush continues in the background).
* ``lag_p50_ms`` / ``lag_p95_ms``: KV acknowledgement to SQL commit, from the consistency monitor.
* ``tx_per_1k_writes``: SQL transactions (batches) per 1,000 writes.
* ``paced_1k_lag_p95_ms``: lag p95 at the default policy when writes arrive at 1,000/s.
* ``metrics_overhead_pct``: at the default threshold (50), how much slower msstore's round runs
  with metrics recorded than with them off (:func:`msstore.ops.metrics.disable`), the two
  rounds alternating, their order swapped every round; ``metrics_cpu_overhead_pct`` the same
  for CPU time per write. Negative: within noise. The servers' noise is larger than the cost,
  so ``metrics_memory_put_us`` and ``metrics_memory_overhead_pct`` also time ``put`` on the
  in-memory backends (no network: where recording weighs most), on and off alternating.

Raw nats-py alone pays nothing for PostgreSQL, so each threshold also runs a hand-written raw
*dual* store in the same run: awaited nats-py puts on one asyncio loop (each value encoded with
orjson in the loop), and every ``threshold`` writes one psycopg upsert of those rows (same
table, columns, checksum and version guard, autocommit, one statement, the agents registered
beforehand) handed through a queue to a second thread, as msstore's flusher works:

* ``raw_dual_writes_per_s`` and ``write_ratio_vs_raw_dual``: msstore's rate over it;
* ``writer_cpu_us_per_write`` and ``raw_dual_writer_cpu_us_per_write``: CPU time of the writing
  process (every thread: the writer and the SQL thread alike) per write, during the timed puts;
  ``cpu_ratio_vs_raw_dual`` the one over the other.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import queue
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from msstore.bench._servers import database, nats_server

THRESHOLDS = (1, 10, 50, 200, 1000)


def _value(i: int) -> dict[str, Any]:
    return {"agent": f"a{i % 100}", "step": i, "status": "running", "note": "x" * 120}


def workload(writes: int) -> tuple[list[str], list[dict[str, Any]]]:
    """The keys (100 agents) and values every round writes, in order."""
    return [f"a{i % 100}.k{i}" for i in range(writes)], [_value(i) for i in range(writes)]


def raw_kv_round(url: str, keys: list[str], values: list[Any]) -> float:
    """The raw KV baseline: awaited nats-py puts, one at a time, on one event loop (each value
    encoded with orjson before the clock starts); puts per second."""
    import nats  # noqa: PLC0415
    import orjson  # noqa: PLC0415

    raws = [orjson.dumps(v) for v in values]

    async def puts() -> float:
        nc = await nats.connect(url)
        kv = await nc.jetstream().create_key_value(bucket="BENCH_RAW_FLUSH", history=1)
        start = time.perf_counter()
        for k, raw in zip(keys, raws, strict=True):
            await kv.put(k, raw)
        rate = len(keys) / (time.perf_counter() - start)
        await nc.close()
        return rate

    return asyncio.run(puts())


@contextmanager
def _servers() -> Iterator[tuple[str, str]]:
    from msstore.backends.postgres import Migrator  # noqa: PLC0415

    with nats_server() as url, database() as dsn:
        Migrator(dsn).up()
        yield url, dsn


Batch = list[tuple[str, bytes, int]]  # (key, JSON bytes, KV revision) of acknowledged puts


def _dual_upserts(dsn: str, batches: queue.Queue[Batch | None], base: int) -> None:
    """The raw dual store's SQL thread: one upsert statement per batch, as msstore's flusher
    writes a small batch (the same statement, so the same table, checksum and version guard)."""
    import psycopg  # noqa: PLC0415

    from msstore.backends.postgres._agents import agent_id_for  # noqa: PLC0415
    from msstore.backends.postgres._state import MERGE_ROWS  # noqa: PLC0415

    with psycopg.connect(dsn, autocommit=True) as conn:
        while (batch := batches.get()) is not None:
            if not batch:
                continue
            when = datetime.datetime.now(datetime.UTC)
            rows = [
                (
                    agent_id_for(k),
                    k,
                    raw.decode(),
                    base + rev,
                    hashlib.sha256(raw).hexdigest(),
                    when,
                    None,
                    False,
                )
                for k, raw, rev in batch
            ]
            conn.execute(MERGE_ROWS, [list(c) for c in zip(*rows, strict=True)])


def _register(dsn: str, keys: list[str]) -> None:
    import psycopg  # noqa: PLC0415

    from msstore.backends.postgres._agents import agent_id_for  # noqa: PLC0415

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO agents.registry (agent_id, agent_type, agent_name) "
            "SELECT id, 'bench', 'raw-dual' FROM unnest(%b::uuid[]) AS a(id) "
            "ON CONFLICT DO NOTHING",
            [sorted({agent_id_for(k) for k in keys})],
        )


def raw_dual_round(
    *, url: str, dsn: str, keys: list[str], values: list[Any], threshold: int, base: int
) -> tuple[float, float]:
    """The raw dual store (module docstring): its put rate and process CPU us per write."""
    import nats  # noqa: PLC0415
    import orjson  # noqa: PLC0415

    dual_keys = ["r" + k for k in keys]
    _register(dsn, dual_keys)
    batches: queue.Queue[Batch | None] = queue.Queue()
    failed: list[BaseException] = []

    def sql() -> None:
        try:
            _dual_upserts(dsn, batches, base)
        except BaseException as err:  # surfaced after the round
            failed.append(err)
            while batches.get() is not None:
                pass

    async def puts() -> tuple[float, float]:
        nc = await nats.connect(url)
        kv = await nc.jetstream().create_key_value(bucket="BENCH_RAW_DUAL", history=1)
        pending: Batch = []
        cpu, start = time.process_time(), time.perf_counter()
        for k, v in zip(dual_keys, values, strict=True):
            raw = orjson.dumps(v)
            pending.append((k, raw, await kv.put(k, raw)))
            if len(pending) >= threshold:
                batches.put(pending)
                pending = []
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        batches.put(pending)
        await nc.close()
        return len(keys) / elapsed, cpu / len(keys) * 1e6

    thread = threading.Thread(target=sql, name="raw-dual-sql")
    thread.start()
    try:
        result = asyncio.run(puts())
    finally:
        batches.put(None)
        thread.join()
    if failed:
        raise failed[0]
    return result


def msstore_round(
    m: Any, keys: list[str], values: list[Any]
) -> tuple[float, float, dict[str, Any], int]:
    """Timed ``put`` calls through a manager: rate, process CPU us per write, lag, batches."""
    m.put("warm.up", 0)
    m.flush()
    m.monitor.reset()
    batches = m.flusher.stats()["batches"]
    cpu, start = time.process_time(), time.perf_counter()
    for k, v in zip(keys, values, strict=True):
        m.put(k, v)
    rate = len(keys) / (time.perf_counter() - start)
    cpu_us = (time.process_time() - cpu) / len(keys) * 1e6
    m.flush()
    return rate, cpu_us, m.monitor.stats(), m.flusher.stats()["batches"] - batches


METRICS_THRESHOLD = 50  # the default policy's: where the metrics' cost is measured


def _metrics_pair(
    kv: Any, storage: Any, policy: Any, keys: list[str], values: list[Any], *, first_on: bool
) -> tuple[float, float]:
    """One msstore round with metrics on and one with them off (which first alternates):
    the percent by which the rate drops and the CPU per write grows with them on."""
    from msstore.ops import metrics  # noqa: PLC0415
    from msstore.state import HybridStateManager  # noqa: PLC0415

    found = {}
    for on in (True, False) if first_on else (False, True):
        (metrics.enable if on else metrics.disable)()
        try:
            with HybridStateManager(kv, storage, policy=policy, recover=False) as m:
                found[on] = msstore_round(m, keys, values)
        finally:
            metrics.enable()
    (rate_on, cpu_on, *_), (rate_off, cpu_off, *_) = found[True], found[False]
    return (rate_off / rate_on - 1) * 100, (cpu_on / cpu_off - 1) * 100


def metrics_memory_cost(keys: list[str], values: list[Any], rounds: int = 7) -> dict[str, float]:
    """``put`` on the in-memory backends with metrics on and off (alternating, order swapped
    each round): the median microseconds per put of each, and the overhead in percent."""
    from msstore.backends.memory import MemoryKV, MemoryTable  # noqa: PLC0415
    from msstore.ops import metrics  # noqa: PLC0415
    from msstore.state import FlushPolicy, HybridStateManager  # noqa: PLC0415

    times: dict[bool, list[float]] = {True: [], False: []}
    policy = FlushPolicy(threshold=METRICS_THRESHOLD, reconcile_every=0)
    for n in range(rounds):
        for on in (True, False) if n % 2 else (False, True):
            (metrics.enable if on else metrics.disable)()
            try:
                with HybridStateManager(MemoryKV(), MemoryTable(), policy=policy) as m:
                    start = time.perf_counter()
                    for k, v in zip(keys, values, strict=True):
                        m.put(k, v)
                    times[on].append((time.perf_counter() - start) / len(keys) * 1e6)
            finally:
                metrics.enable()
    on_us, off_us = statistics.median(times[True]), statistics.median(times[False])
    return {
        "metrics_memory_put_us_on": round(on_us, 2),
        "metrics_memory_put_us_off": round(off_us, 2),
        "metrics_memory_overhead_pct": round((on_us / off_us - 1) * 100, 2),
    }


# Decimal places per figure (the rest: one).
_DIGITS = {
    "writes_per_s": 0,
    "raw_kv_writes_per_s": 0,
    "raw_dual_writes_per_s": 0,
    "write_ratio": 3,
    "write_ratio_vs_raw_dual": 3,
    "cpu_ratio_vs_raw_dual": 3,
    "lag_p50_ms": 2,
    "lag_p95_ms": 2,
}


def run(
    *,
    writes: int = 3000,
    rounds: int = 5,
    paced_seconds: float = 3.0,
    plot: str | None = None,
) -> dict[str, Any]:
    import orjson  # noqa: PLC0415

    from msstore.backends.nats import NatsClient, NatsConfig, NatsKV  # noqa: PLC0415
    from msstore.backends.postgres import PostgresStateStore  # noqa: PLC0415
    from msstore.buckets import BucketConfig  # noqa: PLC0415
    from msstore.state import FlushPolicy, HybridStateManager  # noqa: PLC0415

    if plot:
        _pyplot()  # before minutes of measuring: refuse at once if it cannot draw
    keys, values = workload(writes)

    rows: list[dict[str, Any]] = []
    raw_rates: list[float] = []
    overheads: list[tuple[float, float]] = []
    with _servers() as (url, dsn):
        client = NatsClient(NatsConfig(servers=[url]))
        kv = NatsKV.open(client, BucketConfig(name="BENCH_FLUSH", history=1))
        storage = PostgresStateStore(dsn)
        try:
            for n, threshold in enumerate(THRESHOLDS):
                per: dict[str, list[float]] = {}
                policy = FlushPolicy(threshold=threshold, reconcile_every=0)
                for r in range(rounds):
                    raw = raw_kv_round(url, keys, values)
                    raw_rates.append(raw)
                    dual, dual_cpu = raw_dual_round(
                        url=url,
                        dsn=dsn,
                        keys=keys,
                        values=values,
                        threshold=threshold,
                        base=(n * rounds + r + 1) * 10**9,
                    )
                    with HybridStateManager(kv, storage, policy=policy, recover=False) as m:
                        rate, cpu_us, lag, tx = msstore_round(m, keys, values)
                    if threshold == METRICS_THRESHOLD:
                        overheads.append(
                            _metrics_pair(kv, storage, policy, keys, values, first_on=r % 2 == 1)
                        )
                    for name, figure in (
                        ("writes_per_s", rate),
                        ("raw_kv_writes_per_s", raw),
                        ("write_ratio", rate / raw),
                        ("lag_p50_ms", lag["p50_ms"]),
                        ("lag_p95_ms", lag["p95_ms"]),
                        ("tx_per_1k_writes", tx * 1000 / writes),
                        ("raw_dual_writes_per_s", dual),
                        ("write_ratio_vs_raw_dual", rate / dual),
                        ("writer_cpu_us_per_write", cpu_us),
                        ("raw_dual_writer_cpu_us_per_write", dual_cpu),
                        ("cpu_ratio_vs_raw_dual", cpu_us / dual_cpu),
                    ):
                        per.setdefault(name, []).append(figure)
                row: dict[str, Any] = {"threshold": threshold}
                for name, found in per.items():
                    row[name] = round(statistics.median(found), _DIGITS.get(name, 1))
                rows.append(row)
            with HybridStateManager(kv, storage, recover=False) as m:  # the default policy
                paced_rate, paced = _paced(m, keys, values, paced_seconds)
        finally:
            kv.destroy()
            kv.close()
            storage.close()
            client.close()
    figures: dict[str, Any] = {
        "writes": writes,
        "rounds": rounds,
        "value_bytes": len(orjson.dumps(values[0])),
        "raw_put_per_s": round(statistics.median(raw_rates)),
        "thresholds": rows,
        "paced_rate_per_s": round(paced_rate),
        "paced_1k_lag_p50_ms": round(paced["p50_ms"], 2),
        "paced_1k_lag_p95_ms": round(paced["p95_ms"], 2),
        "metrics_overhead_pct": round(statistics.median(o[0] for o in overheads), 2),
        "metrics_cpu_overhead_pct": round(statistics.median(o[1] for o in overheads), 2),
        **metrics_memory_cost(keys, values),
    }
    if plot:
        _plot(rows, plot)
        return {**figures, "plot": plot}
    return figures


def _paced(
    m: Any, keys: list[str], values: list[Any], seconds: float
) -> tuple[float, dict[str, Any]]:
    """Writes at 1,000/s for ``seconds``; the achieved rate and the monitor's stats."""
    m.monitor.reset()
    interval = 0.001
    n = int(seconds / interval)
    start = time.perf_counter()
    for i in range(n):
        pause = start + i * interval - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        m.put(keys[i % len(keys)], values[i % len(values)])
    rate = n / (time.perf_counter() - start)
    m.flush()
    stats: dict[str, Any] = m.monitor.stats()
    return rate, stats


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or ``Unsupported`` saying what to install."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        from msstore.errors import Unsupported  # noqa: PLC0415

        raise Unsupported(
            "--plot needs matplotlib", capability="plot", hint="pip install 'msstore[plot]'"
        ) from None
    return plt


# The rate lines of the plot: msstore's and its two ceilings (figure, style, colour, label).
_RATE_LINES = (
    ("writes_per_s", "o-", "tab:blue", "msstore"),
    ("raw_kv_writes_per_s", "o:", "tab:gray", "raw KV (nats-py puts, no SQL)"),
    ("raw_dual_writes_per_s", "o--", "tab:green", "raw dual store (nats-py + psycopg)"),
)


def _plot(rows: list[dict[str, Any]], path: str) -> None:
    plt = _pyplot()
    thresholds = [r["threshold"] for r in rows]
    fig, left = plt.subplots(figsize=(8, 4.5))
    left.set_xscale("log")
    left.set_xlabel("flush threshold (dirty keys)")
    for figure, style, color, label in _RATE_LINES:
        left.plot(thresholds, [r[figure] for r in rows], style, color=color, label=label)
    left.set_ylabel("writes/s")
    left.set_ylim(bottom=0)
    left.legend(loc="lower right", fontsize="small")
    right = left.twinx()
    right.plot(thresholds, [r["lag_p95_ms"] for r in rows], "s--", color="tab:red", label="p95")
    right.plot(thresholds, [r["lag_p50_ms"] for r in rows], "^:", color="tab:orange", label="p50")
    right.set_ylabel("msstore KV -> SQL lag (ms)", color="tab:red")
    right.legend(loc="upper center", fontsize="small")
    left.set_title("Hybrid writes against flush threshold, beside their ceilings")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
