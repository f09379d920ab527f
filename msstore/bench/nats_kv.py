"""NATS KV throughput: msstore's blocking calls against raw nats-py on the same server.

Starts its own ``nats-server -js`` (or uses ``NATS_SERVERS``). Each figure is the median of five
rounds; rounds of msstore and raw nats-py alternate so that machine noise hits both alike.

* ``put_per_s`` msstore ``put``; ``raw_put_per_s`` nats-py ``await kv.put()`` one at a time.
* ``put_many_per_s`` msstore ``put_many`` of 256 keys; ``raw_gather_per_s`` nats-py
  ``asyncio.gather`` of 256 ``kv.put()``.
* ``get_per_s`` msstore ``get`` (value decoded); ``raw_get_per_s`` nats-py ``await kv.get()``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from msstore.bench._servers import nats_server
from msstore.bench._timing import rate

BATCH = 256


def _value(i: int) -> dict[str, Any]:
    return {"agent": f"a{i % 50}", "step": i, "status": "running", "note": "x" * 120}


def _value_of(entry: Any) -> Any:
    return entry.value


def run(*, ops: int = 3000, rounds: int = 5) -> dict[str, Any]:
    import nats  # noqa: PLC0415
    import orjson  # noqa: PLC0415

    from msstore.backends.nats import NatsClient, NatsConfig, NatsKV  # noqa: PLC0415
    from msstore.buckets import BucketConfig  # noqa: PLC0415

    values = [_value(i) for i in range(ops)]
    raws = [orjson.dumps(v) for v in values]
    keys = [f"agent.a{i % 500}.state" for i in range(ops)]
    batches = (ops // BATCH) * BATCH or BATCH

    async def raw_round(url: str) -> tuple[float, float, float]:
        nc = await nats.connect(url)
        kv = await nc.jetstream().key_value("BENCH_RAW")
        start = time.perf_counter()
        for k, v in zip(keys, raws, strict=True):
            await kv.put(k, v)
        put = ops / (time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(0, batches, BATCH):
            await asyncio.gather(
                *(kv.put(keys[j % ops], raws[j % ops]) for j in range(i, i + BATCH))
            )
        gather = batches / (time.perf_counter() - start)
        start = time.perf_counter()
        for k in keys:
            await kv.get(k)
        get = ops / (time.perf_counter() - start)
        await nc.close()
        return put, gather, get

    async def make_raw_bucket(url: str) -> None:
        nc = await nats.connect(url)
        await nc.jetstream().create_key_value(bucket="BENCH_RAW", history=1)
        await nc.close()

    figures: dict[str, list[float]] = {
        k: [] for k in ("put", "raw_put", "put_many", "raw_gather", "get", "raw_get")
    }
    with nats_server() as url:
        asyncio.run(make_raw_bucket(url))
        client = NatsClient(NatsConfig(servers=[url]))
        kv = NatsKV.open(client, BucketConfig(name="BENCH_MSSTORE", history=1))
        pairs = list(zip(keys, values, strict=True))
        try:
            for _ in range(rounds):
                raw_put, raw_gather, raw_get = asyncio.run(raw_round(url))
                figures["raw_put"].append(raw_put)
                figures["raw_gather"].append(raw_gather)
                figures["raw_get"].append(raw_get)
                figures["put"].append(rate(ops, lambda: [kv.put(k, v) for k, v in pairs]))
                figures["put_many"].append(
                    rate(
                        batches,
                        lambda: [
                            kv.put_many([pairs[j % ops] for j in range(i, i + BATCH)])
                            for i in range(0, batches, BATCH)
                        ],
                    )
                )
                figures["get"].append(rate(ops, lambda: [_value_of(kv.get(k)) for k in keys]))
        finally:
            kv.destroy()
            kv.close()
            client.close()
    med = {k: statistics.median(v) for k, v in figures.items()}
    return {
        "ops": ops,
        "batch": BATCH,
        "value_bytes": len(raws[0]),
        "server_version": ".".join(map(str, client.server_version)),
        "put_per_s": round(med["put"]),
        "raw_put_per_s": round(med["raw_put"]),
        "put_ratio": round(med["put"] / med["raw_put"], 3),
        "put_many_per_s": round(med["put_many"]),
        "raw_gather_per_s": round(med["raw_gather"]),
        "put_many_ratio": round(med["put_many"] / med["raw_gather"], 3),
        "get_per_s": round(med["get"]),
        "raw_get_per_s": round(med["raw_get"]),
        "get_ratio": round(med["get"] / med["raw_get"], 3),
    }
