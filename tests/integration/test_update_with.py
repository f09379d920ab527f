"""update_with over real stores: exact concurrent counts, LWW by HLC, vector-clock siblings."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from msstore.buckets import BucketConfig
from msstore.conflicts import (
    HLC,
    CRDTMerge,
    LastWriteWins,
    PNCounter,
    RetryPolicy,
    Siblings,
    VectorClockResolver,
    from_doc,
    update_with,
)
from msstore.errors import SerializationError, VersionConflict
from msstore.protocols import KeyValueStore


@pytest.fixture
def kv(
    kv_factory: Callable[[BucketConfig], KeyValueStore], msstore_unique_name: str
) -> Iterator[KeyValueStore]:
    store = kv_factory(BucketConfig(name=msstore_unique_name, history=1))
    yield store
    store.close()


def test_eight_threads_of_pncounter_increments_are_exact(kv: KeyValueStore) -> None:
    errors: list[BaseException] = []
    attempts: list[int] = []

    def worker(i: int) -> None:
        merge = CRDTMerge(PNCounter)
        try:
            for _ in range(250):
                done = update_with(
                    kv,
                    "visits",
                    lambda c, w=f"w{i}": c.increment(w),  # type: ignore[misc]
                    resolver=merge,
                    policy=RetryPolicy.hot_key(),
                )
                attempts.append(done.attempts)
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    entry = kv.get("visits")
    assert entry is not None
    counter = from_doc(entry.value)
    assert isinstance(counter, PNCounter) and counter.value == 2000
    assert counter.p.counts == {f"w{i}": 250 for i in range(8)}
    assert len(attempts) == 2000


def test_greatest_hlc_stamp_wins(kv: KeyValueStore) -> None:
    # Writer "late" runs 10 s ahead; "early" writes after it in real time but its wall clock
    # is behind, so its stamp is smaller: the later stamp, not the later call, wins.
    early = LastWriteWins("early", clock=HLC("early", wall_ms=lambda: 1_000))
    late = LastWriteWins("late", clock=HLC("late", wall_ms=lambda: 11_000))
    stale_read = kv.get("plan")
    assert stale_read is None
    update_with(kv, "plan", lambda _: "late's plan", resolver=late)
    ours = early.apply("plan", None, lambda _: "early's plan")  # built before it saw late's
    settled = early.resolve("plan", ours, kv.get("plan").value)  # type: ignore[union-attr]
    assert early.unwrap(settled) == "late's plan"
    done = update_with(kv, "plan", lambda _: "early, after reading", resolver=early)
    # Having read late's write, early's HLC moves past it: a causally later write wins.
    assert early.unwrap(kv.get("plan").value) == "early, after reading"  # type: ignore[union-attr]
    assert done.value["stamp"][0] == 11_000 and done.value["stamp"][2] == "early"


def test_lww_conflict_where_the_stored_value_wins_writes_nothing(kv: KeyValueStore) -> None:
    late = LastWriteWins("late", clock=HLC("late", wall_ms=lambda: 50_000))
    early = LastWriteWins("early", clock=HLC("early", wall_ms=lambda: 1_000))
    update_with(kv, "k", lambda _: "first", resolver=early)
    entry = kv.get("k")
    assert entry is not None
    # late commits while early is between its read and its write
    kv.update("k", late.apply("k", entry.value, lambda _: "late"), expected_revision=entry.revision)
    mine = early.apply("k", entry.value, lambda _: "early")
    assert early.unwrap(early.resolve("k", mine, kv.get("k").value)) == "late"  # type: ignore[union-attr]


def test_two_vector_clock_writers_make_siblings_then_a_merge_resolves(kv: KeyValueStore) -> None:
    a, b = VectorClockResolver("a"), VectorClockResolver("b")
    update_with(kv, "doc", lambda _: {"v": 0}, resolver=a)
    base = kv.get("doc")
    assert base is not None
    raced = False

    def b_edit(v: Any) -> Any:
        nonlocal raced
        if not raced:  # a commits between b's read and b's write
            raced = True
            kv.update(
                "doc",
                a.apply("doc", base.value, lambda w: {**w, "a": 1}),
                expected_revision=base.revision,
            )
        return {**v, "b": 1}

    done = update_with(kv, "doc", b_edit, resolver=b)
    assert done.attempts == 2  # b's first CAS failed; the resolver settled it
    stored = kv.get("doc")
    assert stored is not None
    siblings = VectorClockResolver.siblings(stored.value)
    assert sorted(siblings, key=str) == [{"v": 0, "a": 1}, {"v": 0, "b": 1}]

    # a reader with a merge function collapses the siblings into one value
    merged = VectorClockResolver("c", merge=lambda vs: {k: v for d in vs for k, v in d.items()})
    seen: list[Any] = []
    update_with(kv, "doc", lambda v: (seen.append(v), v)[1], resolver=merged)  # type: ignore[func-returns-value]
    assert seen == [{"v": 0, "a": 1, "b": 1}]
    stored = kv.get("doc")
    assert stored is not None
    assert VectorClockResolver.siblings(stored.value) == [{"v": 0, "a": 1, "b": 1}]
    # without a merge function, the next writer is handed the siblings to supersede
    handed: list[Any] = []
    a2 = VectorClockResolver("a")
    kv.put("doc2", VectorClockResolver.siblings_doc([{"x": 1}, {"y": 2}]))
    update_with(kv, "doc2", lambda v: (handed.append(v), {"z": 3})[1], resolver=a2)  # type: ignore[func-returns-value]
    assert isinstance(handed[0], Siblings) and len(handed[0]) == 2
    assert VectorClockResolver.siblings(kv.get("doc2").value) == [{"z": 3}]  # type: ignore[union-attr]


def test_plain_update_with_reapplies_fn(kv: KeyValueStore) -> None:
    assert update_with(kv, "n", lambda v: (v or 0) + 1).value == 1
    assert update_with(kv, "n", lambda v: v + 1).value == 2


def test_non_retryable_errors_surface_at_once(kv: KeyValueStore) -> None:
    calls = 0

    def bad(_: Any) -> Any:
        nonlocal calls
        calls += 1
        return {1, 2}  # not storable

    with pytest.raises(SerializationError):
        update_with(kv, "bad", bad, policy=RetryPolicy(attempts=10, base=0))
    assert calls == 1 and kv.get("bad") is None


def test_attempts_are_bounded(kv: KeyValueStore) -> None:
    kv.put("hot", 0)

    def racing(v: int) -> int:
        kv.put("hot", v + 100)  # another writer always gets in first
        return v + 1

    with pytest.raises(VersionConflict, match="changed while being updated"):
        update_with(kv, "hot", racing, policy=RetryPolicy(attempts=3, base=0, jitter=0))
