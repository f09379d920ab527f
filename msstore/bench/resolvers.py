"""CRDT merge throughput on 1,000-element states, and a 10,000-element OR-Set merge.

Each merge joins two replicas that share half their history and diverge on the rest (both
sides added, removed or counted on their own). ``*_merges_per_s`` are merges of such a pair per
second; ``orset_merge_10k_ms`` merges two 10,000-element OR-Sets (target <= 50 ms), beside
``raw_set_union_10k_ms``, a plain Python set union of the same elements, as the floor.
MV-Register states are two siblings with 64-writer clocks (the default clock bound), since a
register of 1,000 siblings is not a state anyone keeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from msstore.conflicts import GCounter, LWWMap, LWWRegister, MVRegister, ORSet, PNCounter, Stamp


def _per_second(fn: Callable[[], Any], *, min_seconds: float = 0.3) -> float:
    count, start = 0, time.perf_counter()
    while True:
        fn()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return count / elapsed


def _best_ms(fn: Callable[[], Any], repeat: int = 7) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def _orsets(n: int) -> tuple[ORSet, ORSet]:
    shared = ORSet().add_all("base", range(n // 2))
    left = shared.add_all("left", range(n // 2, n))
    right = shared.add_all("right", range(n // 2, n))
    for i in range(0, n // 2, 10):
        right = right.remove(i)
    return left, right


def run(*, n: int = 1000) -> dict[str, Any]:
    nodes = [f"w{i}" for i in range(n)]
    g1 = GCounter({w: i for i, w in enumerate(nodes)})
    g2 = GCounter({w: (i * 7) % n for i, w in enumerate(nodes)})
    p1 = PNCounter(g1, g2)
    p2 = PNCounter(g2, g1)
    s1, s2 = _orsets(n)
    m1, m2 = LWWMap(), LWWMap()
    for i in range(n):
        m1 = m1.set(f"k{i}", {"i": i}, Stamp(i, 0, "a"))
        m2 = m2.set(f"k{i}", {"i": -i}, Stamp(n - i, 0, "b"))
    r1 = LWWRegister({"x": 1}, Stamp(5, 0, "a"))
    r2 = LWWRegister({"x": 2}, Stamp(5, 1, "b"))
    base = MVRegister()
    for w in nodes[:63]:
        base = base.assign(w, 0)
    v1, v2 = base.assign("left", "L"), base.assign("right", "R")
    big1, big2 = _orsets(10_000)
    elems1, elems2 = set(big1.value), set(big2.value)
    return {
        "elements": n,
        "gcounter_merges_per_s": round(_per_second(lambda: g1.merge(g2))),
        "pncounter_merges_per_s": round(_per_second(lambda: p1.merge(p2))),
        "orset_merges_per_s": round(_per_second(lambda: s1.merge(s2))),
        "lwwmap_merges_per_s": round(_per_second(lambda: m1.merge(m2))),
        "lwwregister_merges_per_s": round(_per_second(lambda: r1.merge(r2))),
        "mvregister_merges_per_s": round(_per_second(lambda: v1.merge(v2))),
        "orset_merge_10k_ms": round(_best_ms(lambda: big1.merge(big2)), 2),
        "raw_set_union_10k_ms": round(_best_ms(lambda: elems1 | elems2), 3),
    }
