"""Behaviour specific to the memory backends (the shared cases are in the conformance suite)."""

from __future__ import annotations

import threading

import pytest

from msstore.backends.memory import MemoryKV, MemoryTable, MemoryVectorIndex
from msstore.buckets import BucketConfig
from msstore.capabilities import Capability
from msstore.errors import InvalidArgument, MsstoreError, Unsupported
from msstore.records import Operation


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_expiry_uses_the_injected_clock() -> None:
    clock = FakeClock()
    kv = MemoryKV(BucketConfig(name="b", ttl=60), clock=clock)
    kv.put("bucket.ttl", 1)
    kv.put("key.ttl", 1, ttl=5)
    clock.now += 5
    assert kv.get("key.ttl") is None and kv.get("bucket.ttl") is not None
    clock.now += 55
    assert kv.get("bucket.ttl") is None and kv.keys() == []


def test_an_expired_revision_with_its_own_ttl_leaves_nothing_behind() -> None:
    clock = FakeClock()
    kv = MemoryKV(BucketConfig(name="b", history=5), clock=clock)
    kv.put("k", "durable")
    kv.put("k", "short", ttl=2)  # rolls up the history, as the NATS backend writes it
    clock.now += 3
    assert kv.get("k") is None and kv.latest("k") is None  # "durable" does not come back
    assert kv.history("k") == []


def test_an_expired_revision_drops_out_of_history_like_jetstream() -> None:
    clock = FakeClock()
    kv = MemoryKV(BucketConfig(name="b", history=5, ttl=10), clock=clock)
    kv.put("k", "old")
    clock.now += 6
    kv.put("k", "new")
    clock.now += 6  # "old" aged out with the bucket TTL; "new" has 4 s left
    assert [e.value for e in kv.history("k")] == ["new"]


def test_narrowed_capabilities_raise_unsupported() -> None:
    kv = MemoryKV(
        BucketConfig(name="b", per_key_ttl=False), capabilities={Capability.TTL, Capability.BATCH}
    )
    for call in (
        lambda: kv.put("k", 1, ttl=5),
        lambda: kv.create("k", 1),
        lambda: kv.update("k", 1, expected_revision=1),
        lambda: kv.history("k"),
        kv.watch,
        lambda: kv.purge("k"),
        lambda: kv.get("k", revision=1),
        lambda: kv.delete("k", expected_revision=1),
    ):
        with pytest.raises(Unsupported) as info:
            call()
        assert info.value.capability
    assert kv.keys() == []
    with pytest.raises(InvalidArgument):
        MemoryKV(capabilities={Capability.SEARCH_TEXT})


def test_watch_with_history_and_stop() -> None:
    kv = MemoryKV(BucketConfig(name="b", history=3))
    for i in range(3):
        kv.put("k", i)
    watcher = kv.watch("k", include_history=True)
    assert [watcher.next(timeout=1).value for _ in range(3)] == [0, 1, 2]  # type: ignore[union-attr]
    got: list[int] = []
    reader = threading.Thread(target=lambda: got.extend(e.value for e in watcher))
    reader.start()
    kv.put("k", 3)
    kv.put("k", 4)
    while len(got) < 2:
        reader.join(0.01)
    watcher.stop()
    reader.join(2)
    assert not reader.is_alive() and got == [3, 4]
    assert watcher.next(timeout=0.01) is None


def test_closed_stores_refuse_work() -> None:
    kv = MemoryKV()
    watcher = kv.watch()
    kv.close()
    assert watcher.next(timeout=0.01) is None
    with pytest.raises(MsstoreError, match="closed"):
        kv.put("k", 1)
    table = MemoryTable()
    table.close()
    with pytest.raises(MsstoreError, match="closed"):
        table.retrieve("k")


def test_purge_marker_keeps_a_revision() -> None:
    kv = MemoryKV(BucketConfig(name="b", history=5))
    kv.put("k", 1)
    rev = kv.purge("k")
    assert [(e.operation, e.revision) for e in kv.history("k")] == [(Operation.PURGE, rev)]


def test_vector_index_validation() -> None:
    with pytest.raises(InvalidArgument):
        MemoryVectorIndex(dim=0)
    with pytest.raises(InvalidArgument):
        MemoryVectorIndex(dim=3, metric="manhattan")
    index = MemoryVectorIndex(dim=2)
    with pytest.raises(InvalidArgument):
        index.add(["a", "a"], [[1, 0], [0, 1]])
    with pytest.raises(InvalidArgument):
        index.add([""], [[1, 0]])
    with pytest.raises(InvalidArgument):
        index.add(["a"], [["x", "y"]])
    assert index.search([1, 0]) == [] and index.count() == 0


def test_vector_ties_break_by_insertion_order() -> None:
    index = MemoryVectorIndex(dim=2, metric="l2")
    index.add(["b", "a", "c"], [[1, 1], [1, 1], [1, 1]])
    assert [h.id for h in index.search([0, 0], k=3)] == ["b", "a", "c"]
