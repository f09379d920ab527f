"""pytest-benchmark suite for CRDT merges (``msstore bench resolvers --json`` prints the same)."""

from __future__ import annotations

from typing import Any

from msstore.bench.resolvers import _orsets
from msstore.conflicts import GCounter


def test_orset_merge_10k(benchmark: Any) -> None:
    left, right = _orsets(10_000)
    benchmark(left.merge, right)


def test_raw_set_union_10k(benchmark: Any) -> None:
    left, right = _orsets(10_000)
    a, b = set(left.value), set(right.value)
    benchmark(lambda: a | b)


def test_gcounter_merge_1k(benchmark: Any) -> None:
    a = GCounter({f"w{i}": i for i in range(1000)})
    b = GCounter({f"w{i}": 1000 - i for i in range(1000)})
    benchmark(a.merge, b)
