"""Memory KV throughput, single thread, 1 KiB JSON documents encoded as stored.

Figures: ``put_per_s``, ``get_per_s`` (the read includes decoding the value), ``cas_per_s``
(``update`` with the expected revision), and the same operations on a plain dict with orjson
(``raw_*``) as the ceiling, with ``*_ratio`` = msstore / raw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from msstore.registry import open_kv

KEYS = 1000


def document(i: int) -> dict[str, Any]:
    """A ~1 KiB agent-state document."""
    return {
        "agent_id": f"agent-{i % 97}",
        "step": i,
        "status": "running",
        "tags": ["planner", "tool-use", "long-horizon"],
        "scratch": [
            {"role": "assistant", "content": f"thought {i}-{j} " * 7, "score": j / 7}
            for j in range(6)
        ],
        "counters": {"tokens": 1234 + i, "calls": 17, "errors": 0},
        "done": False,
    }


def _rate(n: int, body: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for i in range(n):
        body(i)
    return n / (time.perf_counter() - start)


def run(*, ops: int = 100_000) -> dict[str, Any]:
    docs = [document(i) for i in range(100)]
    size = len(orjson.dumps(docs[0]))
    keys = [f"agent.a{i}.state" for i in range(KEYS)]
    kv = open_kv("memory://bench", history=1)
    put = _rate(ops, lambda i: kv.put(keys[i % KEYS], docs[i % 100]))
    get = _rate(ops, lambda i: kv.get(keys[i % KEYS]).value)  # type: ignore[union-attr]
    revs = {k: kv.get(k).revision for k in keys}  # type: ignore[union-attr]

    def cas(i: int) -> None:
        key = keys[i % KEYS]
        revs[key] = kv.update(key, docs[i % 100], expected_revision=revs[key])

    cas_rate = _rate(ops, cas)
    raw: dict[str, bytes] = {}
    raw_put = _rate(ops, lambda i: raw.__setitem__(keys[i % KEYS], orjson.dumps(docs[i % 100])))
    raw_get = _rate(ops, lambda i: orjson.loads(raw[keys[i % KEYS]]))
    return {
        "ops": ops,
        "value_bytes": size,
        "put_per_s": round(put),
        "get_per_s": round(get),
        "cas_per_s": round(cas_rate),
        "raw_put_per_s": round(raw_put),
        "raw_get_per_s": round(raw_get),
        "put_ratio": round(put / raw_put, 3),
        "get_ratio": round(get / raw_get, 3),
    }
