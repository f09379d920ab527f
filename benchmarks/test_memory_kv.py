"""pytest-benchmark suite for the memory KV, beside its raw baseline (dict + orjson).

Run: ``pytest benchmarks --benchmark-only`` (or ``tox -e bench``); save and compare with
``--benchmark-autosave`` / ``--benchmark-compare``. ``msstore bench memory-kv --json`` prints the
same operations as throughput figures with ratios.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

from msstore.backends.memory import MemoryKV
from msstore.bench.memory_kv import KEYS, document
from msstore.buckets import BucketConfig

DOCS = [document(i) for i in range(100)]
NAMES = [f"agent.a{i}.state" for i in range(KEYS)]


@pytest.fixture
def kv() -> MemoryKV:
    store = MemoryKV(BucketConfig(name="bench", history=1))
    for i, key in enumerate(NAMES):
        store.put(key, DOCS[i % 100])
    return store


def test_put(benchmark: Any, kv: MemoryKV) -> None:
    counter = itertools.count()
    benchmark(lambda: kv.put(NAMES[(i := next(counter)) % KEYS], DOCS[i % 100]))


def test_get_and_decode(benchmark: Any, kv: MemoryKV) -> None:
    counter = itertools.count()
    benchmark(lambda: kv.get(NAMES[next(counter) % KEYS]).value)  # type: ignore[union-attr]


def test_cas_update(benchmark: Any, kv: MemoryKV) -> None:
    revs = {k: kv.get(k).revision for k in NAMES}  # type: ignore[union-attr]
    counter = itertools.count()

    def cas() -> None:
        i = next(counter)
        key = NAMES[i % KEYS]
        revs[key] = kv.update(key, DOCS[i % 100], expected_revision=revs[key])

    benchmark(cas)


def test_raw_dict_put(benchmark: Any) -> None:
    raw: dict[str, bytes] = {}
    counter = itertools.count()
    benchmark(
        lambda: raw.__setitem__(NAMES[(i := next(counter)) % KEYS], orjson.dumps(DOCS[i % 100]))
    )


def test_raw_dict_get(benchmark: Any) -> None:
    raw = {k: orjson.dumps(DOCS[i % 100]) for i, k in enumerate(NAMES)}
    counter = itertools.count()
    benchmark(lambda: orjson.loads(raw[NAMES[next(counter) % KEYS]]))
